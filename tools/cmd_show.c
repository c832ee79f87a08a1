/* convnet show filters | activations | unit: pictures of a convolution's kernels, of a layer's
 * feature maps for one image, or of an input grown to excite one unit (activation maximisation). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char show_help[] =
    "usage: convnet show filters [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--layer L]\n"
    "                            [--scale shared|per-tile] [--max N] [--max-channels N] -o F.png\n"
    "       convnet show activations [-m NAME|FILE] [-w WEIGHTS] [--alpha A] --layer L\n"
    "                            [--scale shared|per-tile] [--max N] [--resize P] -o A.png "
    "IMAGE\n"
    "       convnet show unit [-m NAME|FILE] [-w WEIGHTS] --layer L --unit U [--steps N]\n"
    "                            [--lr R] [--jitter J] [--blur-every K] [--blur-sigma S]\n"
    "                            [--decay D] [--seed S] -o U.png\n\n"
    "filters: the kernels of a convolution (Conv2D or DepthwiseConv2D; default: the model's\n"
    "first) as a grid: a layer that reads three channels (the image) draws each kernel as one\n"
    "colour tile; deeper layers one row per kernel, one grey tile per input channel.\n"
    "activations: the layer's feature maps for the image as a grid of grey tiles, numbered by\n"
    "channel.\n"
    "unit: activation maximisation. From faint seeded noise, gradient ascent on the input raises\n"
    "the mean over positions of channel U of layer L (a Dense layer: element U), with random\n"
    "shifts (jitter), a Gaussian blur every K steps, L2 decay towards mid-grey and clipping to\n"
    "the valid range; prints the activation before and after and their ratio, and draws the\n"
    "image with the model's preprocessing undone.\n\n"
    "The legend states the scale: values of both signs map to pixel = 128 + 127 * v / m (128 is\n"
    "zero), values >= 0 to pixel = 255 * v / m; m is the largest |v| over the layer (shared, the\n"
    "default) or over each tile (per-tile: one kernel, or one feature map).\n\n"
    "  -m, --model NAME|FILE  zoo name or model file (.h5, .keras, .onnx, .cnm; a zoo model\n"
    "                         with -w .pth/.h5 weights); default efficientnet_lite0\n"
    "  -w, --weights FILE     weights for a zoo model or a .json architecture\n"
    "  --alpha A              MobileNet width multiplier\n"
    "  --layer L              the layer (see convnet summary)\n"
    "  --scale S              shared (default) or per-tile\n"
    "  --max N                kernels or feature maps drawn, the first N (default 64)\n"
    "  --max-channels N       input channels drawn per kernel in grey (default 16)\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear (default: the model's)\n"
    "  --unit U               unit: the channel (0-based); several --unit: a grid\n"
    "  --steps N              unit: gradient steps (default 150)\n"
    "  --lr R                 unit: step size, a fraction of the input range (default 0.005)\n"
    "  --jitter J             unit: largest random shift in pixels (default 4)\n"
    "  --blur-every K         unit: blur every K steps, 0 never (default 4)\n"
    "  --blur-sigma S         unit: the blur's sigma in pixels (default 0.5)\n"
    "  --decay D              unit: L2 decay per step (default 0.001)\n"
    "  --seed S               unit: the starting noise and the shifts (default 1)\n"
    "  --threads N            threads (0: all cores)\n"
    "  -o, --output F.png     the picture (written whole or not at all)\n"
    "  -h, --help             this help\n";

enum { MAX_UNITS = 16 }; /* --unit given several times: a grid */

typedef struct show_cmd {
  const char *what; /* "filters" or "activations" */
  cli_model_args model;
  const char *layer, *output, *resize;
  cn_viz_grid_options grid;
  cn_unit_options unit;
  int units[MAX_UNITS], n_units;
} show_cmd;

static int parse_scale(const char *text, cn_viz_scale *scale) {
  if (strcmp(text, "shared") == 0)
    *scale = CN_VIZ_SCALE_SHARED;
  else if (strcmp(text, "per-tile") == 0 || strcmp(text, "per-kernel") == 0 ||
           strcmp(text, "per-map") == 0)
    *scale = CN_VIZ_SCALE_PER_TILE;
  else
    return cli_usage("show", "--scale: '%s' is neither shared nor per-tile", text);
  return CLI_OK;
}

static int unit_float(const char *flag, double max, float *out) {
  double v;
  if (!cli_parse_double("show", flag, optarg, 0.0, max, &v)) return CLI_USAGE;
  *out = (float)v;
  return CLI_OK;
}

static int unit_option(cn_unit_options *u, int opt) {
  int seed;
  switch (opt) {
  case 'S':
    return cli_parse_int("show", "--steps", optarg, 0, 100000, &u->steps) ? CLI_OK : CLI_USAGE;
  case 'R':
    return unit_float("--lr", 1.0, &u->lr);
  case 'J':
    return cli_parse_int("show", "--jitter", optarg, 0, 64, &u->jitter) ? CLI_OK : CLI_USAGE;
  case 'K':
    return cli_parse_int("show", "--blur-every", optarg, 0, 100000, &u->blur_every) ? CLI_OK
                                                                                    : CLI_USAGE;
  case 'G':
    return unit_float("--blur-sigma", 2.5, &u->blur_sigma);
  case 'D':
    return unit_float("--decay", 0.5, &u->decay);
  default:
    if (!cli_parse_int("show", "--seed", optarg, 0, 1 << 30, &seed)) return CLI_USAGE;
    u->seed = (uint64_t)seed;
    return CLI_OK;
  }
}

static int show_option(void *cmd, int opt, char **argv) {
  show_cmd *c = cmd;
  switch (opt) {
  case 'L':
    c->layer = optarg;
    return CLI_OK;
  case 's':
    return parse_scale(optarg, &c->grid.scale);
  case 'n':
    return cli_parse_int("show", "--max", optarg, 1, 4096, &c->grid.max_tiles) ? CLI_OK : CLI_USAGE;
  case 'c':
    return cli_parse_int("show", "--max-channels", optarg, 1, 4096, &c->grid.max_channels)
               ? CLI_OK
               : CLI_USAGE;
  case 'r':
    c->resize = optarg;
    return CLI_OK;
  case 'U':
    if (c->n_units == MAX_UNITS) return cli_usage("show", "--unit: at most %d units", MAX_UNITS);
    return cli_parse_int("show", "--unit", optarg, 0, 1 << 30, &c->units[c->n_units++]) ? CLI_OK
                                                                                        : CLI_USAGE;
  case 'S':
  case 'R':
  case 'J':
  case 'K':
  case 'G':
  case 'D':
  case 'E':
    return unit_option(&c->unit, opt);
  case 't':
    return cli_set_threads("show", optarg) ? CLI_OK : CLI_USAGE;
  case 'o':
    c->output = optarg;
    return CLI_OK;
  default:
    return cli_bad_option("show", opt, argv);
  }
}

/* Returns CLI_HELP after --help. */
static int parse_show(int argc, char **argv, show_cmd *c) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"layer", required_argument, NULL, 'L'},
                                          {"scale", required_argument, NULL, 's'},
                                          {"max", required_argument, NULL, 'n'},
                                          {"max-channels", required_argument, NULL, 'c'},
                                          {"resize", required_argument, NULL, 'r'},
                                          {"unit", required_argument, NULL, 'U'},
                                          {"steps", required_argument, NULL, 'S'},
                                          {"lr", required_argument, NULL, 'R'},
                                          {"jitter", required_argument, NULL, 'J'},
                                          {"blur-every", required_argument, NULL, 'K'},
                                          {"blur-sigma", required_argument, NULL, 'G'},
                                          {"decay", required_argument, NULL, 'D'},
                                          {"seed", required_argument, NULL, 'E'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int rc = cli_parse_model_command("show", show_help, argc, argv, ":m:w:o:h", options, &c->model,
                                   show_option, c);
  if (rc != CLI_OK) return rc;
  if (!c->output) return cli_usage("show", "no output file given (-o F.png)");
  if ((rc = cli_check_output(c->output, 0)) != CLI_OK) return rc;
  cn_resize probe;
  if (c->resize && cn_resize_parse(c->resize, &probe) != CN_OK)
    return cli_usage("show", "--resize: unknown policy '%s'", c->resize);
  return CLI_OK;
}

/* The model's first Conv2D or DepthwiseConv2D. */
static const char *first_convolution(const cn_model *model) {
  for (size_t i = 0; i < cn_model_layer_count(model); i++) {
    cn_layer_info info;
    if (cn_model_layer_info(model, i, &info) == CN_OK &&
        (strcmp(info.type, "Conv2D") == 0 || strcmp(info.type, "DepthwiseConv2D") == 0))
      return info.name;
  }
  return NULL;
}

static int show_filters(cn_model *model, const show_cmd *c) {
  const char *layer = c->layer ? c->layer : first_convolution(model);
  if (!layer) return cli_error(cn_model_name(model), "no convolution layer to draw");
  if (cn_viz_filters(model, layer, &c->grid, c->output) != CN_OK) return cli_lib_error();
  printf("%s: kernels of %s\n", c->output, layer);
  return CLI_OK;
}

static int feature_maps_of(cn_model *model, const show_cmd *c, const char *file,
                           cn_feature_maps *maps) {
  cn_input_spec spec = cn_model_input_spec(model);
  if (c->resize) cn_resize_parse(c->resize, &spec.resize);
  size_t numel = (size_t)spec.height * spec.width * spec.channels;
  float *input = malloc(numel * sizeof *input);
  cn_image photo = {0};
  int rc = input ? CLI_OK : cli_error(file, "out of memory");
  if (rc == CLI_OK && (cn_image_load_spec(file, &spec, &photo) != CN_OK ||
                       cn_image_prepare(&photo, &spec, input) != CN_OK))
    rc = cli_lib_error();
  if (rc == CLI_OK && cn_feature_maps_compute(model, input, c->layer, maps) != CN_OK)
    rc = cli_lib_error();
  cn_image_free(&photo);
  free(input);
  return rc;
}

static int show_activations(cn_model *model, show_cmd *c, const char *file) {
  cn_feature_maps maps = {0};
  int rc = feature_maps_of(model, c, file, &maps);
  c->grid.title = file;
  if (rc == CLI_OK && cn_viz_activations(&maps, &c->grid, c->output) != CN_OK) rc = cli_lib_error();
  if (rc == CLI_OK)
    printf("%s: %d feature maps of %s (%dx%d) for %s\n", c->output, maps.channels, maps.layer,
           maps.height, maps.width, file);
  cn_feature_maps_free(&maps);
  return rc;
}

static void print_unit(const char *output, const cn_unit_result *r) {
  printf("%s: layer %s unit %d: activation %.6g -> %.6g", output, r->layer, r->unit,
         (double)r->start, (double)r->end);
  if (r->start > 0.0f)
    printf(", ratio %.2f", (double)(r->end / r->start));
  else
    printf(", ratio n/a (the start is not positive)");
  printf(" after %d steps\n", r->steps);
}

/* Every unit first, then one picture: a failing unit leaves no file. */
static int show_unit(cn_model *model, show_cmd *c) {
  cn_input_spec spec = cn_model_input_spec(model);
  size_t numel = (size_t)spec.height * spec.width * spec.channels;
  float *block = malloc((numel * (size_t)c->n_units + 1) * sizeof *block);
  const float *images[MAX_UNITS];
  cn_unit_result r[MAX_UNITS];
  int rc = block ? CLI_OK : cli_error(c->output, "out of memory");
  c->unit.layer = c->layer;
  for (int i = 0; rc == CLI_OK && i < c->n_units; i++) {
    c->unit.unit = c->units[i];
    images[i] = block + numel * (size_t)i;
    if (cn_activation_maximise(model, &c->unit, block + numel * (size_t)i, &r[i]) != CN_OK)
      rc = cli_lib_error();
  }
  if (rc == CLI_OK && cn_viz_units(model, images, r, c->n_units, c->output) != CN_OK)
    rc = cli_lib_error();
  for (int i = 0; rc == CLI_OK && i < c->n_units; i++) print_unit(c->output, &r[i]);
  free(block);
  return rc;
}

static int check_operands(const show_cmd *c, int n_images) {
  if (strcmp(c->what, "unit") == 0) {
    if (!c->layer) return cli_usage("show", "unit: no --layer given");
    if (c->n_units == 0) return cli_usage("show", "unit: no --unit given");
    if (n_images != 0) return cli_usage("show", "unit: takes no IMAGE");
    return CLI_OK;
  }
  int activations = strcmp(c->what, "activations") == 0;
  if (activations && !c->layer) return cli_usage("show", "activations: no --layer given");
  if (activations && n_images != 1)
    return cli_usage("show", "activations: give exactly one IMAGE (got %d)", n_images);
  if (!activations && n_images != 0) return cli_usage("show", "filters: takes no IMAGE");
  return CLI_OK;
}

int cmd_show(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(show_help, stdout);
    return CLI_OK;
  }
  if (argc < 2 || (strcmp(argv[1], "filters") != 0 && strcmp(argv[1], "activations") != 0 &&
                   strcmp(argv[1], "unit") != 0))
    return cli_usage("show", "say what to show: filters, activations or unit");
  show_cmd c = {.what = argv[1], .model = {.need_weights = 1}, .unit = cn_unit_options_default()};
  int rc = parse_show(argc - 1, argv + 1, &c);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  int first_image = optind + 1; /* argv + 1 was parsed */
  if ((rc = check_operands(&c, argc - first_image)) != CLI_OK) return rc;
  cn_model *model;
  if ((rc = cli_open_model("show", &c.model, &model)) != CLI_OK) return rc;
  if (strcmp(c.what, "filters") == 0)
    rc = show_filters(model, &c);
  else if (strcmp(c.what, "unit") == 0)
    rc = show_unit(model, &c);
  else
    rc = show_activations(model, &c, argv[first_image]);
  cn_model_free(model);
  return rc;
}
