/* Helpers of convnet style and convnet analogy: the feature network, images at the working
 * size, the progress bar. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int is_zoo(const char *name) {
  for (const char *const *z = cn_zoo_names(); z && *z; z++)
    if (strcmp(*z, name) == 0) return 1;
  return 0;
}

/* VGG19, then VGG16, when their (no-top) Keras weights are in the cache. */
static const char *default_network(void) {
  static const char *const vgg[] = {"vgg19", "vgg16"};
  char path[4096];
  for (int i = 0; i < 2; i++) {
    cn_fetch_options fo = {.no_top = 1, .offline = 1, .quiet = 1};
    if (cn_fetch_weights(vgg[i], &fo, path, sizeof path) == CN_OK) return vgg[i];
  }
  return "efficientnet_lite0";
}

int cli_synth_model(const char *command, cli_model_args *args, const char *reference, int max_side,
                    cn_model **model, int *height, int *width) {
  cn_image ref = {0};
  if (cn_image_load(reference, &ref) != CN_OK) return cli_lib_error();
  int w = ref.width, h = ref.height;
  cn_image_free(&ref);
  int longer = w > h ? w : h;
  if (longer > max_side) {
    double s = (double)max_side / longer;
    w = (int)lround(w * s);
    h = (int)lround(h * s);
  }
  w = w < 16 ? 16 : w;
  h = h < 16 ? 16 : h;
  if (!args->model) args->model = default_network();
  if (is_zoo(args->model)) {
    args->height = h;
    args->width = w;
    args->need_weights = 1;
    if (strncmp(args->model, "vgg", 3) == 0) args->no_top = 1;
  }
  int rc = cli_open_model(command, args, model);
  if (rc != CLI_OK) return rc;
  cn_input_spec spec = cn_model_input_spec(*model);
  if (spec.height < 1 || spec.width < 1 || spec.channels != 3 || spec.channels_first) {
    rc = cli_error(cn_model_name(*model), "the input is not a height x width x 3 image");
    cn_model_free(*model);
    *model = NULL;
    return rc;
  }
  *height = spec.height;
  *width = spec.width;
  return CLI_OK;
}

int cli_synth_image(const char *path, int width, int height, cn_image *out) {
  cn_image im = {0};
  if (cn_image_load(path, &im) != CN_OK) return cli_lib_error();
  cn_status st = cn_image_resize(&im, width, height, CN_RESIZE_PIL_BILINEAR, out);
  cn_image_free(&im);
  return st == CN_OK ? CLI_OK : cli_lib_error();
}

void cli_synth_progress(const cn_synth_progress *p, void *user) {
  (void)user;
  if (!isatty(fileno(stderr))) return;
  int width = 30,
      filled = p->iterations > 0 ? (int)((long)width * p->iteration / p->iterations) : 0;
  filled = filled > width ? width : filled;
  fprintf(stderr, "\r\033[K");
  if (p->stages > 1) fprintf(stderr, "stage %d/%d ", p->stage, p->stages);
  fprintf(stderr, "[%.*s%*s] %d/%d loss %.6g", filled,
          "==============================", width - filled, "", p->iteration, p->iterations,
          p->loss);
  if (p->iteration >= p->iterations) fputc('\n', stderr);
  fflush(stderr);
}

int cli_synth_layer(const char *command, const char *text, const char **name, double *weight,
                    char *buf, size_t cap) {
  const char *colon = strrchr(text, ':');
  *weight = 1.0;
  if (!colon) {
    *name = text;
    return CLI_OK;
  }
  size_t n = (size_t)(colon - text);
  if (n == 0 || n >= cap) return cli_usage(command, "bad layer '%s'", text);
  memcpy(buf, text, n);
  buf[n] = '\0';
  *name = buf;
  if (!cli_parse_double(command, "layer weight", colon + 1, 0, 1e12, weight)) return CLI_USAGE;
  return CLI_OK;
}
