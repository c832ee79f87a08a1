/* convnet embed: one feature vector per image (a layer's output, pooled over positions), written
 * as a float32 .npy of shape (N, D). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static const char embed_help[] =
    "usage: convnet embed [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--layer L] [--resize P]\n"
    "                     [--crop F] [--preprocess M] [--cache DIR] [--threads N] -o E.npy\n"
    "                     IMAGE...\n\n"
    "Writes E.npy, float32 of shape (N, D): row i is image i's embedding, the output of layer L\n"
    "averaged over its positions when it is spatial (global average pooling), else flattened.\n"
    "The default layer is what the classifier reads: the input of a final Dense layer, else the\n"
    "last spatial layer (EfficientNet-Lite0: the 1280 pooled features). If any image cannot be\n"
    "read nothing is written.\n\n"
    "  -m, --model NAME|FILE  zoo name or model file, as for classify (default\n"
    "                         efficientnet_lite0)\n"
    "  -w, --weights FILE     weights for a zoo model or a .json architecture\n"
    "  --alpha A              MobileNet width multiplier\n"
    "  --layer L              the layer (see convnet summary)\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear (default: the model's)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1\n"
    "  --preprocess M         raw, caffe, tf, torch, unit (default: the model's)\n"
    "  --cache DIR            keep each image's vector in DIR (made if missing) and reuse it\n"
    "                         while the model, layer, preprocessing and file are unchanged\n"
    "  --threads N            threads (0: all cores)\n"
    "  -o, --output E.npy     the embeddings (written whole or not at all)\n"
    "  -h, --help             this help\n";

int cli_open_embedder(const char *command, cn_model *model, const cli_embed_args *a,
                      cn_embedder **out) {
  *out = NULL;
  if (cn_embedder_new(model, a->layer, out) != CN_OK) return cli_lib_error();
  cn_input_spec spec = cn_embedder_input_spec(*out);
  cli_input_apply(&a->input, &spec);
  cn_embedder_set_input_spec(*out, &spec);
  if (spec.height <= 0 || spec.width <= 0) {
    cn_embedder_free(*out);
    *out = NULL;
    return cli_error(command, "%s: the model's input is not an image", cn_model_name(model));
  }
  if (cn_embedder_set_cache(*out, a->cache_dir) != CN_OK) {
    cn_embedder_free(*out);
    *out = NULL;
    return cli_lib_error();
  }
  return CLI_OK;
}

int cli_embed_option(const char *command, int opt, const char *arg, cli_embed_args *a, int *rc) {
  *rc = CLI_OK;
  if (cli_model_option(command, opt, arg, &a->model, rc) ||
      cli_input_option(command, opt, arg, &a->input, rc))
    return 1;
  switch (opt) {
  case CLI_OPT_LAYER:
    a->layer = arg;
    return 1;
  case CLI_OPT_CACHE:
    a->cache_dir = arg;
    return 1;
  case CLI_OPT_THREADS:
    if (!cli_set_threads(command, arg)) *rc = CLI_USAGE;
    return 1;
  default:
    return 0;
  }
}

static int embed_all(cn_embedder *e, char **files, int n, const char *output) {
  int64_t dim = cn_embedder_dim(e);
  float *rows = malloc((size_t)n * (size_t)dim * sizeof *rows);
  if (!rows) return cli_error("embed", "out of memory");
  int failed = 0;
  for (int i = 0; i < n; i++)
    if (cn_embed_file(e, files[i], rows + (size_t)i * (size_t)dim) != CN_OK)
      failed += cli_lib_error();
  int rc = failed ? CLI_FAILED : CLI_OK; /* each failure named on its line; nothing written */
  if (!failed) {
    cn_shape shape = {.rank = 2, .dim = {n, dim}};
    if (cn_npy_write(output, &shape, rows) != CN_OK)
      rc = cli_lib_error();
    else
      printf("%s: %d x %lld (layer %s)\n", output, n, (long long)dim, cn_embedder_layer(e));
  }
  free(rows);
  return rc;
}

int cmd_embed(int argc, char **argv) {
  static const struct option options[] = {
      CLI_MODEL_LONG_OPTIONS,           CLI_INPUT_LONG_OPTIONS,
      CLI_EMBED_LONG_OPTIONS,           {"output", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  cli_embed_args a = {.model = {.need_weights = 1}};
  const char *output = NULL;
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:o:h", options, NULL)) != -1) {
    if (cli_embed_option("embed", opt, optarg, &a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 'o':
      output = optarg;
      break;
    case 'h':
      fputs(embed_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("embed", opt, argv);
    }
  }
  if (!output) return cli_usage("embed", "no output given: -o E.npy");
  if ((rc = cli_check_output(output, 0)) != CLI_OK) return rc;
  if (optind >= argc) return cli_usage("embed", "no IMAGE given");
  cli_file_list files = {0};
  cn_model *model = NULL;
  cn_embedder *e = NULL;
  rc = cli_expand_images(argv + optind, argc - optind, &files);
  if (rc == CLI_OK) rc = cli_open_model("embed", &a.model, &model);
  if (rc == CLI_OK) rc = cli_open_embedder("embed", model, &a, &e);
  if (rc == CLI_OK) rc = embed_all(e, files.paths, files.n, output);
  cn_embedder_free(e);
  cn_model_free(model);
  cli_file_list_free(&files);
  return rc;
}
