/* convnet show filters | activations: pictures of a convolution's kernels or of a layer's feature
 * maps for one image. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char show_help[] =
    "usage: convnet show filters [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--layer L]\n"
    "                            [--scale shared|per-tile] [--max N] [--max-channels N] -o F.png\n"
    "       convnet show activations [-m NAME|FILE] [-w WEIGHTS] [--alpha A] --layer L\n"
    "                            [--scale shared|per-tile] [--max N] [--resize P] -o A.png "
    "IMAGE\n\n"
    "filters: the kernels of a convolution (Conv2D or DepthwiseConv2D; default: the model's\n"
    "first) as a grid: a layer that reads three channels (the image) draws each kernel as one\n"
    "colour tile; deeper layers one row per kernel, one grey tile per input channel.\n"
    "activations: the layer's feature maps for the image as a grid of grey tiles, numbered by\n"
    "channel.\n\n"
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
    "  --threads N            threads (0: all cores)\n"
    "  -o, --output F.png     the picture (written whole or not at all)\n"
    "  -h, --help             this help\n";

typedef struct show_cmd {
  const char *what; /* "filters" or "activations" */
  cli_model_args model;
  const char *layer, *output, *resize;
  cn_viz_grid_options grid;
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

static int show_option(show_cmd *c, int opt, char **argv) {
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
  case 't':
    return cli_set_threads("show", optarg) ? CLI_OK : CLI_USAGE;
  case 'o':
    c->output = optarg;
    return CLI_OK;
  default:
    return cli_bad_option("show", opt, argv);
  }
}

/* Returns -1 after --help. */
static int parse_show(int argc, char **argv, show_cmd *c) {
  static const struct option options[] = {{"model", required_argument, NULL, 'm'},
                                          {"weights", required_argument, NULL, 'w'},
                                          {"alpha", required_argument, NULL, 'a'},
                                          {"layer", required_argument, NULL, 'L'},
                                          {"scale", required_argument, NULL, 's'},
                                          {"max", required_argument, NULL, 'n'},
                                          {"max-channels", required_argument, NULL, 'c'},
                                          {"resize", required_argument, NULL, 'r'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:o:h", options, NULL)) != -1) {
    if (opt == 'h') {
      fputs(show_help, stdout);
      return -1;
    }
    if (cli_model_option("show", opt, optarg, &c->model, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if ((rc = show_option(c, opt, argv)) != CLI_OK) return rc;
  }
  if (!c->output) return cli_usage("show", "no output file given (-o F.png)");
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
  if (rc == CLI_OK &&
      (cn_image_load(file, &photo) != CN_OK || cn_image_prepare(&photo, &spec, input) != CN_OK))
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

static int check_operands(const show_cmd *c, int n_images) {
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
  if (argc < 2 || (strcmp(argv[1], "filters") != 0 && strcmp(argv[1], "activations") != 0))
    return cli_usage("show", "say what to show: filters or activations");
  show_cmd c = {.what = argv[1], .model = {.need_weights = 1}};
  int rc = parse_show(argc - 1, argv + 1, &c);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  int first_image = optind + 1; /* argv + 1 was parsed */
  if ((rc = check_operands(&c, argc - first_image)) != CLI_OK) return rc;
  cn_model *model;
  if ((rc = cli_open_model("show", &c.model, &model)) != CLI_OK) return rc;
  rc = strcmp(c.what, "filters") == 0 ? show_filters(model, &c)
                                      : show_activations(model, &c, argv[first_image]);
  cn_model_free(model);
  return rc;
}
