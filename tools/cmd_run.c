/* convnet run: a model's forward pass on a .npy tensor, written as .npy. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char run_help[] =
    "usage: convnet run -m MODEL [-w WEIGHTS] [--alpha A] [--threads N] --input x.npy\n"
    "                   --output y.npy\n\n"
    "Runs the model on the NHWC float32 (or float64) tensor in x.npy, already preprocessed, and\n"
    "writes the outputs to y.npy as float32 with a batch dimension. x.npy may lack the batch\n"
    "dimension (one sample).\n\n"
    "  -m, --model MODEL    zoo name or model file (.h5 full model, .json with -w)\n"
    "  -w, --weights FILE   weights (default for a zoo model: the fetched ones in the cache)\n"
    "  --alpha A            MobileNet width multiplier\n"
    "  --threads N          threads (0: all cores)\n"
    "  --input FILE         input tensor (.npy)\n"
    "  --output FILE        output tensor (.npy), written atomically\n"
    "  -h, --help           this help\n";

/* Samples per forward call, which bounds the activation memory. */
enum { RUN_CHUNK = 16 };

/* Number of samples in x whose per-sample shape must equal the model input; -1 on mismatch. */
static int64_t batch_of(const cn_shape *x, const cn_shape *in) {
  int has_batch = x->rank == in->rank + 1;
  if (!has_batch && x->rank != in->rank) return -1;
  for (int i = 0; i < in->rank; i++)
    if (x->dim[i + has_batch] != in->dim[i]) return -1;
  return has_batch ? x->dim[0] : 1;
}

static int run_model(cn_model *model, const char *input, const char *output) {
  cn_shape xs, in = cn_model_input_shape(model), out = cn_model_output_shape(model);
  float *x = NULL;
  if (cn_npy_read(input, &xs, &x) != CN_OK) return cli_lib_error();
  int64_t batch = batch_of(&xs, &in);
  char have[96], want[96];
  if (batch < 1 || batch > (1 << 20) || out.rank >= CN_MAX_RANK) {
    free(x);
    return cli_error(input, "shape %s does not match the model input %s (with or without batch)",
                     cn_shape_format(&xs, have, sizeof have),
                     cn_shape_format(&in, want, sizeof want));
  }
  size_t out_numel = (size_t)cn_shape_numel(&out);
  float *y = malloc((size_t)batch * out_numel * sizeof *y + 1);
  int rc = CLI_OK;
  if (!y) rc = cli_error(output, "out of memory");
  size_t in_numel = (size_t)cn_shape_numel(&in);
  for (int64_t done = 0; rc == CLI_OK && done < batch; done += RUN_CHUNK) {
    int n = (int)(batch - done < RUN_CHUNK ? batch - done : RUN_CHUNK);
    if (cn_model_forward(model, n, x + done * in_numel, y + done * out_numel) != CN_OK)
      rc = cli_lib_error();
  }
  if (rc == CLI_OK) {
    cn_shape ys = {out.rank + 1, {batch}};
    memcpy(ys.dim + 1, out.dim, (size_t)out.rank * sizeof *out.dim);
    if (cn_npy_write(output, &ys, y) != CN_OK) rc = cli_lib_error();
  }
  free(x);
  free(y);
  return rc;
}

int cmd_run(int argc, char **argv) {
  static const struct option options[] = {
      {"model", required_argument, NULL, 'm'}, {"weights", required_argument, NULL, 'w'},
      {"alpha", required_argument, NULL, 'a'}, {"threads", required_argument, NULL, 't'},
      {"input", required_argument, NULL, 'i'}, {"output", required_argument, NULL, 'o'},
      {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0}};
  cli_model_args a = {.need_weights = 1};
  const char *input = NULL, *output = NULL;
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    switch (opt) {
    case 'm':
      a.model = optarg;
      break;
    case 'w':
      a.weights = optarg;
      break;
    case 'a':
      if (!cli_parse_double("run", "--alpha", optarg, 0.01, 10, &a.alpha)) return CLI_USAGE;
      break;
    case 't':
      if (!cli_set_threads("run", optarg)) return CLI_USAGE;
      break;
    case 'i':
      input = optarg;
      break;
    case 'o':
      output = optarg;
      break;
    case 'h':
      fputs(run_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("run", opt, argv);
    }
  }
  if (optind != argc) return cli_usage("run", "unexpected argument '%s'", argv[optind]);
  if (!a.model || !input || !output)
    return cli_usage("run", "-m MODEL, --input and --output are required");
  cn_model *model;
  if ((rc = cli_open_model("run", &a, &model)) != CLI_OK) return rc;
  rc = run_model(model, input, output);
  cn_model_free(model);
  return rc;
}
