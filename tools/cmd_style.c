/* convnet style CONTENT STYLE -o OUT.png: style transfer (Gatys et al.), L-BFGS on the pixels. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char style_help[] =
    "usage: convnet style [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--size S] [--iters N]\n"
    "                     [--content-layer L] [--style-layer L[:W]]... [--content-weight C]\n"
    "                     [--style-weight S] [--tv-weight T] [--threads N] -o OUT.png\n"
    "                     CONTENT STYLE\n"
    "\n"
    "Style transfer (Gatys et al. 2016): starting from the content image, L-BFGS (liblbfgs) on\n"
    "the pixels minimises content_weight * mean((F_c(x) - F_c(content))^2) + style_weight *\n"
    "sum_l w_l * mean((G_l(x) - G_l(style))^2) + tv_weight * TV(x), F a layer's output and G its\n"
    "Gram matrix F^T F / (H W C). The style image is resized to the content's working size.\n"
    "The feature network is VGG19 (or VGG16) when its weights are cached, else\n"
    "EfficientNet-Lite0 with its fetched .pth; the output names it and the layers.\n"
    "\n"
    "  -m, --model NAME|FILE   feature network: zoo name or model file\n"
    "  -w, --weights FILE      its weights\n"
    "  --alpha A               MobileNet width multiplier\n"
    "  --size S                longest side of the working size, pixels (default 256)\n"
    "  --iters N               L-BFGS iterations (default 200)\n"
    "  --content-layer L       content layer (default: the network's, e.g. _blocks.4._bn2)\n"
    "  --style-layer L[:W]     a style layer and its weight (default 1); repeat (up to 8)\n"
    "  --content-weight C      default 1\n"
    "  --style-weight S        default 10000\n"
    "  --tv-weight T           total-variation weight (default 0)\n"
    "  --threads N             threads (default: all cores)\n"
    "  -o, --output OUT.png    the result (PNG, written atomically)\n";

typedef struct style_cmd {
  cli_model_args model;
  cn_style_options o;
  int size;
  const char *output;
  char names[CN_SYNTH_MAX_LAYERS][128];
} style_cmd;

static int style_option(void *cmd, int opt, char **argv) {
  style_cmd *c = cmd;
  double v;
  switch (opt) {
  case 'S':
    return cli_parse_int("style", "--size", optarg, 16, 4096, &c->size) ? CLI_OK : CLI_USAGE;
  case 'N':
    return cli_parse_int("style", "--iters", optarg, 0, 100000, &c->o.iterations) ? CLI_OK
                                                                                  : CLI_USAGE;
  case 'C':
    c->o.content_layer = optarg;
    return CLI_OK;
  case 'L': {
    int k = c->o.n_style_layers;
    if (k == CN_SYNTH_MAX_LAYERS)
      return cli_usage("style", "--style-layer: at most %d layers", CN_SYNTH_MAX_LAYERS);
    int rc = cli_synth_layer("style", optarg, &c->o.style_layers[k], &c->o.layer_weights[k],
                             c->names[k], sizeof c->names[k]);
    if (rc == CLI_OK) c->o.n_style_layers++;
    return rc;
  }
  case 'c':
  case 's':
  case 'T':
    if (!cli_parse_double("style",
                          opt == 'c'   ? "--content-weight"
                          : opt == 's' ? "--style-weight"
                                       : "--tv-weight",
                          optarg, 0, 1e12, &v))
      return CLI_USAGE;
    *(opt == 'c' ? &c->o.content_weight : opt == 's' ? &c->o.style_weight : &c->o.tv_weight) = v;
    return CLI_OK;
  case 't':
    return cli_set_threads("style", optarg) ? CLI_OK : CLI_USAGE;
  case 'o':
    c->output = optarg;
    return CLI_OK;
  default:
    return cli_bad_option("style", opt, argv);
  }
}

/* Returns CLI_HELP after --help. */
static int parse_style(int argc, char **argv, style_cmd *c) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"size", required_argument, NULL, 'S'},
                                          {"iters", required_argument, NULL, 'N'},
                                          {"content-layer", required_argument, NULL, 'C'},
                                          {"style-layer", required_argument, NULL, 'L'},
                                          {"content-weight", required_argument, NULL, 'c'},
                                          {"style-weight", required_argument, NULL, 's'},
                                          {"tv-weight", required_argument, NULL, 'T'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int rc = cli_parse_model_command("style", style_help, argc, argv, ":m:w:o:h", options, &c->model,
                                   style_option, c);
  if (rc != CLI_OK) return rc;
  if (argc - optind != 2) return cli_usage("style", "give CONTENT and STYLE images");
  if (!c->output) return cli_usage("style", "no output file given (-o OUT.png)");
  if ((rc = cli_check_output(c->output, 0)) != CLI_OK) return rc;
  return CLI_OK;
}

static void print_network(const cn_model *model, const cn_style_options *o, int h, int w) {
  printf("feature network: %s at %dx%d; content layer %s; style layers", cn_model_name(model), w, h,
         o->content_layer);
  for (int k = 0; k < o->n_style_layers; k++)
    printf(" %s:%g", o->style_layers[k], o->layer_weights[k]);
  printf("\n");
  fflush(stdout);
}

static int run_style(style_cmd *c, const char *content_path, const char *style_path) {
  cn_model *model = NULL;
  int h = 0, w = 0;
  int rc = cli_synth_model("style", &c->model, content_path, c->size, &model, &h, &w);
  if (rc != CLI_OK) return rc;
  const char *defaults[CN_SYNTH_MAX_LAYERS], *content_default = NULL;
  int n_default = 0;
  if ((!c->o.content_layer || c->o.n_style_layers == 0) &&
      cn_synth_default_layers(model, &content_default, defaults, &n_default) != CN_OK) {
    cn_model_free(model);
    return cli_lib_error();
  }
  if (!c->o.content_layer) c->o.content_layer = content_default;
  if (c->o.n_style_layers == 0) {
    for (int k = 0; k < n_default; k++) c->o.style_layers[k] = defaults[k];
    c->o.n_style_layers = n_default;
  }
  cn_image content = {0}, style = {0}, out = {0};
  rc = cli_synth_image(content_path, w, h, &content);
  if (rc == CLI_OK) rc = cli_synth_image(style_path, w, h, &style);
  if (rc == CLI_OK) print_network(model, &c->o, h, w);
  cn_synth_result r;
  c->o.progress = cli_synth_progress;
  if (rc == CLI_OK && cn_style_transfer(model, &content, &style, &c->o, &out, &r) != CN_OK)
    rc = cli_lib_error();
  if (isatty(fileno(stderr))) fputs("\r\033[K", stderr);
  if (rc == CLI_OK && cn_image_save_png(&out, c->output) != CN_OK) rc = cli_lib_error();
  if (rc == CLI_OK)
    printf("%s: %dx%d, %d iterations (%d evaluations): loss %.6g -> %.6g (content %.6g, style "
           "%.6g, tv %.6g)\n",
           c->output, w, h, r.iterations, r.evaluations, r.initial_loss, r.loss, r.content_loss,
           r.style_loss, r.tv_loss);
  cn_image_free(&content);
  cn_image_free(&style);
  cn_image_free(&out);
  cn_model_free(model);
  return rc;
}

int cmd_style(int argc, char **argv) {
  style_cmd c = {.o = cn_style_options_default(), .size = 256};
  int rc = parse_style(argc, argv, &c);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  return run_style(&c, argv[optind], argv[optind + 1]);
}
