/* convnet convert: writes a model (zoo, Keras, ONNX or PyTorch) in another format, chosen by the
 * output file's extension. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const char convert_help[] =
    "usage: convnet convert IN OUT [-w WEIGHTS] [--alpha A]\n\n"
    "Writes the model IN in the format OUT's extension names:\n"
    "  .onnx   ONNX (opset 13), computing in NCHW; a Keras (NHWC) model keeps its NHWC input\n"
    "          and output shapes, an ONNX or PyTorch model its NCHW ones; batch symbolic\n"
    "  .cnm    convnet's native model file (graph, weights, class names, input pipeline)\n"
    "The file is written atomically. Layers that have no form in the target format are refused\n"
    "by name.\n\n"
    "  IN                   zoo name or model file (.h5 full model, .json with -w, .onnx, .pth,\n"
    "                       .cnm)\n"
    "  -w, --weights FILE   weights (default for a zoo model: the fetched ones in the cache)\n"
    "  --alpha A            MobileNet width multiplier\n"
    "  -h, --help           this help\n";

static int has_extension(const char *path, const char *ext) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return dot && (!slash || dot > slash) && strcasecmp(dot, ext) == 0;
}

typedef cn_status (*model_writer)(cn_model *model, const char *path);

/* The writer for OUT's extension, checked before the (possibly slow) model load; NULL after
 * printing a usage error. */
static model_writer writer_for(const char *out) {
  if (has_extension(out, ".onnx")) return cn_model_save_onnx;
  if (has_extension(out, ".cnm")) return cn_model_save;
  cli_usage("convert", "%s: unknown output format (use .onnx or .cnm)", out);
  return NULL;
}

int cmd_convert(int argc, char **argv) {
  static const struct option options[] = {{"weights", required_argument, NULL, 'w'},
                                          {"alpha", required_argument, NULL, 'a'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  cli_model_args a = {.need_weights = 1};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":w:h", options, NULL)) != -1) {
    if (opt != 'm' && cli_model_option("convert", opt, optarg, &a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if (opt == 'h') {
      fputs(convert_help, stdout);
      return CLI_OK;
    }
    return cli_bad_option("convert", opt, argv);
  }
  if (argc - optind != 2)
    return cli_usage("convert", "expected IN and OUT, got %d argument(s)", argc - optind);
  a.model = argv[optind];
  const char *out = argv[optind + 1];
  model_writer write = writer_for(out);
  if (!write) return CLI_USAGE;
  if ((rc = cli_check_output(out, 0)) != CLI_OK) return rc;
  cn_model *model;
  if ((rc = cli_open_model("convert", &a, &model)) != CLI_OK) return rc;
  rc = write(model, out) == CN_OK ? CLI_OK : cli_lib_error();
  cn_model_free(model);
  return rc;
}
