/* convnet analogy A A' B -o B'.png: image analogies, A : A' :: B : B'. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char analogy_help[] =
    "usage: convnet analogy [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--size S] [--iters N]\n"
    "                       [--layer L]... [--no-layers] [--content-layer L] [--patch P]\n"
    "                       [--linear R] [--pixel-weight W] [--feature-weight W]\n"
    "                       [--content-weight W]"
    " [--tv-weight W] [--threads N] -o B'.png A A' B\n"
    "\n"
    "Image analogy: B' relates to B as A' relates to A. Targets: each pixel of B takes the pixel\n"
    "of A' at the centre of A's best matching P x P patch (least squares on RGB, Hertzmann et\n"
    "al.); at each feature layer each position of B takes A' 's features where A's 3x3 patch\n"
    "of normalised features matches best (cosine). B' starts at the pixel target and L-BFGS\n"
    "(liblbfgs) minimises pixel_weight * mean((x - T_0)^2) + feature_weight * sum_l\n"
    "mean((F_l(x) - T_l)^2) + content_weight * mean((F_c(x) - F_c(B))^2) + tv_weight * TV(x),\n"
    "coarse to fine: stage k uses the k deepest layers. A and A' must be the same size; all\n"
    "three are resized to B's working size. The output names the feature network.\n"
    "\n"
    "  -m, --model NAME|FILE   feature network (default: VGG19/VGG16 when cached, else\n"
    "                          EfficientNet-Lite0)\n"
    "  -w, --weights FILE      its weights\n"
    "  --alpha A               MobileNet width multiplier\n"
    "  --size S                longest side of the working size, pixels (default 128; the\n"
    "                          pixel matching costs (pixels)^2 * P^2 * 6 flops)\n"
    "  --iters N               L-BFGS iterations per stage (default 30)\n"
    "  --layer L               a feature layer; repeat (up to 8; default: the network's style\n"
    "                          layers, as convnet style uses them)\n"
    "  --no-layers             pixel level only (no network run)\n"
    "  --content-layer L       content layer (default: the network's; used when the content\n"
    "                          weight > 0)\n"
    "  --patch P               pixel patch size, odd (default 3)\n"
    "  --linear R              the pixel target is L(B) + (A' - L(A)) at the matches, L the\n"
    "                          linear filter on (2R+1)^2 RGB taps best mapping A to A' (least\n"
    "                          squares); 0: A' at the matches only (default 3)\n"
    "  --pixel-weight W        default 1\n"
    "  --feature-weight W      default 0.001\n"
    "  --content-weight W      default 0\n"
    "  --tv-weight W           default 0.01\n"
    "  --threads N             threads (default: all cores)\n"
    "  -o, --output B'.png     the result (PNG, written atomically)\n";

enum { OPT_NO_LAYERS = 4000 };

typedef struct analogy_cmd {
  cli_model_args model;
  cn_analogy_options o;
  int size, no_layers;
  const char *output, *content_layer;
} analogy_cmd;

static int weight_option(int opt, analogy_cmd *c) {
  static const struct {
    int opt;
    const char *flag;
  } flags[] = {{'p', "--pixel-weight"},
               {'f', "--feature-weight"},
               {'c', "--content-weight"},
               {'T', "--tv-weight"}};
  double v;
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
    if (flags[i].opt != opt) continue;
    if (!cli_parse_double("analogy", flags[i].flag, optarg, 0, 1e12, &v)) return CLI_USAGE;
    *(opt == 'p'   ? &c->o.pixel_weight
      : opt == 'f' ? &c->o.feature_weight
      : opt == 'c' ? &c->o.content_weight
                   : &c->o.tv_weight) = v;
    return CLI_OK;
  }
  return -1;
}

static int analogy_option(void *cmd, int opt, char **argv) {
  analogy_cmd *c = cmd;
  int rc = weight_option(opt, c);
  if (rc >= 0) return rc;
  switch (opt) {
  case 'S':
    return cli_parse_int("analogy", "--size", optarg, 16, 1024, &c->size) ? CLI_OK : CLI_USAGE;
  case 'N':
    return cli_parse_int("analogy", "--iters", optarg, 0, 100000, &c->o.iterations) ? CLI_OK
                                                                                    : CLI_USAGE;
  case 'P':
    if (!cli_parse_int("analogy", "--patch", optarg, 1, 15, &c->o.patch_size)) return CLI_USAGE;
    if (c->o.patch_size % 2 == 0) return cli_usage("analogy", "--patch: must be odd");
    return CLI_OK;
  case 'R':
    return cli_parse_int("analogy", "--linear", optarg, 0, 5, &c->o.linear_radius) ? CLI_OK
                                                                                   : CLI_USAGE;
  case 'L':
    if (c->o.n_layers == CN_SYNTH_MAX_LAYERS)
      return cli_usage("analogy", "--layer: at most %d layers", CN_SYNTH_MAX_LAYERS);
    c->o.layers[c->o.n_layers++] = optarg;
    return CLI_OK;
  case 'C':
    c->content_layer = optarg;
    return CLI_OK;
  case OPT_NO_LAYERS:
    c->no_layers = 1;
    return CLI_OK;
  case 't':
    return cli_set_threads("analogy", optarg) ? CLI_OK : CLI_USAGE;
  case 'o':
    c->output = optarg;
    return CLI_OK;
  default:
    return cli_bad_option("analogy", opt, argv);
  }
}

/* Returns CLI_HELP after --help. */
static int parse_analogy(int argc, char **argv, analogy_cmd *c) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"size", required_argument, NULL, 'S'},
                                          {"iters", required_argument, NULL, 'N'},
                                          {"patch", required_argument, NULL, 'P'},
                                          {"layer", required_argument, NULL, 'L'},
                                          {"linear", required_argument, NULL, 'R'},
                                          {"no-layers", no_argument, NULL, OPT_NO_LAYERS},
                                          {"content-layer", required_argument, NULL, 'C'},
                                          {"pixel-weight", required_argument, NULL, 'p'},
                                          {"feature-weight", required_argument, NULL, 'f'},
                                          {"content-weight", required_argument, NULL, 'c'},
                                          {"tv-weight", required_argument, NULL, 'T'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int rc = cli_parse_model_command("analogy", analogy_help, argc, argv, ":m:w:o:h", options,
                                   &c->model, analogy_option, c);
  if (rc != CLI_OK) return rc;
  if (argc - optind != 3) return cli_usage("analogy", "give three images: A A' B");
  if (!c->output) return cli_usage("analogy", "no output file given (-o B'.png)");
  if ((rc = cli_check_output(c->output, 0)) != CLI_OK) return rc;
  if (c->no_layers && (c->o.n_layers || c->content_layer))
    return cli_usage("analogy", "--no-layers takes no --layer or --content-layer");
  return CLI_OK;
}

/* A and A' must be the same size as they are given (before resizing). */
static int check_pair(const char *a_path, const char *ap_path) {
  cn_image a = {0}, ap = {0};
  int rc = CLI_OK;
  if (cn_image_load(a_path, &a) != CN_OK || cn_image_load(ap_path, &ap) != CN_OK)
    rc = cli_lib_error();
  else if (a.width != ap.width || a.height != ap.height)
    rc = cli_error(ap_path, "is %dx%d but A (%s) is %dx%d: A and A' must be the same size",
                   ap.width, ap.height, a_path, a.width, a.height);
  cn_image_free(&a);
  cn_image_free(&ap);
  return rc;
}

static int choose_layers(cn_model *model, analogy_cmd *c) {
  if (c->no_layers) return CLI_OK;
  const char *defaults[CN_SYNTH_MAX_LAYERS], *content = NULL;
  int n = 0;
  int need = c->o.n_layers == 0 || (!c->content_layer && c->o.content_weight > 0);
  if (need && cn_synth_default_layers(model, &content, defaults, &n) != CN_OK)
    return cli_lib_error();
  if (c->o.n_layers == 0) {
    for (int k = 0; k < n; k++) c->o.layers[k] = defaults[k];
    c->o.n_layers = n;
  }
  if (c->o.content_weight > 0) c->o.content_layer = c->content_layer ? c->content_layer : content;
  return CLI_OK;
}

static void print_network(const cn_model *model, const analogy_cmd *c, int h, int w) {
  if (c->no_layers) {
    printf("pixel level only at %dx%d (no feature network)\n", w, h);
    return;
  }
  printf("feature network: %s at %dx%d; layers", cn_model_name(model), w, h);
  for (int k = 0; k < c->o.n_layers; k++) printf(" %s", c->o.layers[k]);
  if (c->o.content_layer) printf("; content layer %s", c->o.content_layer);
  printf("\n");
  fflush(stdout);
}

static int run_analogy(analogy_cmd *c, char **files) {
  cn_model *model = NULL;
  int h = 0, w = 0;
  int rc = check_pair(files[0], files[1]);
  if (rc == CLI_OK) rc = cli_synth_model("analogy", &c->model, files[2], c->size, &model, &h, &w);
  if (rc == CLI_OK) rc = choose_layers(model, c);
  cn_image a = {0}, ap = {0}, b = {0}, out = {0};
  if (rc == CLI_OK) rc = cli_synth_image(files[0], w, h, &a);
  if (rc == CLI_OK) rc = cli_synth_image(files[1], w, h, &ap);
  if (rc == CLI_OK) rc = cli_synth_image(files[2], w, h, &b);
  if (rc == CLI_OK) print_network(model, c, h, w);
  cn_synth_result r;
  c->o.progress = cli_synth_progress;
  if (rc == CLI_OK && cn_image_analogy(model, &a, &ap, &b, &c->o, &out, &r) != CN_OK)
    rc = cli_lib_error();
  if (isatty(fileno(stderr))) fputs("\r\033[K", stderr);
  if (rc == CLI_OK && cn_image_save_png(&out, c->output) != CN_OK) rc = cli_lib_error();
  if (rc == CLI_OK)
    printf("%s: %dx%d, %d iterations (%d evaluations): loss %.6g -> %.6g\n", c->output, w, h,
           r.iterations, r.evaluations, r.initial_loss, r.loss);
  cn_image_free(&a);
  cn_image_free(&ap);
  cn_image_free(&b);
  cn_image_free(&out);
  cn_model_free(model);
  return rc;
}

int cmd_analogy(int argc, char **argv) {
  analogy_cmd c = {.o = cn_analogy_options_default(), .size = 128};
  int rc = parse_analogy(argc, argv, &c);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  return run_analogy(&c, argv + optind);
}
