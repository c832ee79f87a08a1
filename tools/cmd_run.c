/* convnet run: a model's forward pass on a .npy tensor, written as .npy. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char run_help[] =
    "usage: convnet run -m MODEL [-w WEIGHTS] [--alpha A] [--precision P] [--threads N]\n"
    "                   --input x.npy\n"
    "                   [--input x2.npy ...] --output y.npy [--output y2.npy ...]\n"
    "                   [--profile N]\n\n"
    "Runs the model on the float32 (or float64) tensors in the .npy inputs, already\n"
    "preprocessed, and writes each output as float32 with a batch dimension. Inputs may lack the\n"
    "batch dimension (one sample). Tensors are in the model's own layout: NHWC for Keras and zoo\n"
    "models, NCHW (as the file says) for ONNX models. A model with several inputs or outputs\n"
    "takes --input once per graph input and --output once per graph output, in graph order.\n"
    "An ONNX input that defines a shape (Reshape's shape, Resize's roi/scales/sizes, Upsample's\n"
    "scales, Pad's pads/constant_value/axes, Dropout's ratio/training_mode; .npy of int64 or\n"
    "float) is bound to its value before the graph is planned: the model is specialised to it.\n\n"
    "  -m, --model MODEL    zoo name or model file (.h5 full model, .json with -w, .onnx)\n"
    "  -w, --weights FILE   weights (default for a zoo model: the fetched ones in the cache)\n"
    "  --alpha A            MobileNet width multiplier\n"
    "  --precision P        fp32 (default) or bf16 (docs/precision.md)\n"
    "  --threads N          threads (0: all cores)\n"
    "  --input FILE         input tensor (.npy), once per model input\n"
    "  --output FILE        output tensor (.npy), written atomically, once per model output\n"
    "  --profile N          then time every layer over N forward passes of the first (up to\n"
    "                       16) samples: ms, share, GFLOP/s and share of the CPU's fp32 peak\n"
    "                       (the layers as they run: BatchNormalization and activations folded\n"
    "                       into the convolution before them)\n"
    "  -h, --help           this help\n";

/* Samples per forward call, which bounds the activation memory. */
enum { RUN_CHUNK = 16, RUN_MAX_IO = 8 };

/* Number of samples in x whose per-sample shape must equal the model input; -1 on mismatch. */
static int64_t batch_of(const cn_shape *x, const cn_shape *in) {
  int has_batch = x->rank == in->rank + 1;
  if (!has_batch && x->rank != in->rank) return -1;
  for (int i = 0; i < in->rank; i++)
    if (x->dim[i + has_batch] != in->dim[i]) return -1;
  return has_batch ? x->dim[0] : 1;
}

typedef struct run_io {
  int n_in, n_out;
  const char *in_path[RUN_MAX_IO], *out_path[RUN_MAX_IO];
  cn_shape in[RUN_MAX_IO], out[RUN_MAX_IO];
  cn_input_value values[RUN_MAX_IO]; /* every --input as read */
  float *x[RUN_MAX_IO], *y[RUN_MAX_IO];
  int64_t batch;
  int profile; /* --profile N: forward passes timed per layer; 0: none */
} run_io;

/* Reads every --input (before the model: shape-defining ones are bound while loading it). */
static int read_files(run_io *io) {
  for (int i = 0; i < io->n_in; i++) {
    float *data;
    if (cn_npy_read(io->in_path[i], &io->values[i].shape, &data) != CN_OK) return cli_lib_error();
    io->values[i].data = io->x[i] = data;
  }
  return CLI_OK;
}

/* Drops the inputs the model bound, keeping the rest in order. */
static void drop_bound(run_io *io) {
  int kept = 0;
  for (int i = 0; i < io->n_in; i++) {
    if (io->values[i].bound) {
      free(io->x[i]);
      continue;
    }
    io->values[kept] = io->values[i];
    io->in_path[kept] = io->in_path[i];
    io->x[kept++] = io->x[i];
  }
  for (int i = kept; i < io->n_in; i++) io->x[i] = NULL;
  io->n_in = kept;
}

/* Checks the inputs against the model and that they agree on the batch size. */
static int check_inputs(cn_model *model, run_io *io) {
  char have[96], want[96];
  io->batch = -1;
  for (int i = 0; i < io->n_in; i++) {
    cn_shape xs = io->values[i].shape;
    io->in[i] = cn_model_input_shape_at(model, i);
    int64_t b = batch_of(&xs, &io->in[i]);
    if (b < 1 || b > (1 << 20))
      return cli_error(
          io->in_path[i], "shape %s does not match the model input %s (with or without batch)",
          cn_shape_format(&xs, have, sizeof have), cn_shape_format(&io->in[i], want, sizeof want));
    if (io->batch >= 0 && b != io->batch)
      return cli_error(io->in_path[i], "batch %lld differs from the first input's %lld",
                       (long long)b, (long long)io->batch);
    io->batch = b;
  }
  return CLI_OK;
}

static int forward_all(cn_model *model, run_io *io) {
  for (int o = 0; o < io->n_out; o++) {
    io->out[o] = cn_model_output_shape_at(model, o);
    if (io->out[o].rank >= CN_MAX_RANK) return cli_error(io->out_path[o], "output rank too high");
    io->y[o] = malloc((size_t)io->batch * (size_t)cn_shape_numel(&io->out[o]) * sizeof(float) + 1);
    if (!io->y[o]) return cli_error(io->out_path[o], "out of memory");
  }
  for (int64_t done = 0; done < io->batch; done += RUN_CHUNK) {
    int n = (int)(io->batch - done < RUN_CHUNK ? io->batch - done : RUN_CHUNK);
    const float *xs[RUN_MAX_IO];
    float *ys[RUN_MAX_IO];
    for (int i = 0; i < io->n_in; i++) xs[i] = io->x[i] + done * cn_shape_numel(&io->in[i]);
    for (int o = 0; o < io->n_out; o++) ys[o] = io->y[o] + done * cn_shape_numel(&io->out[o]);
    if (cn_model_forward_multi(model, n, xs, ys) != CN_OK) return cli_lib_error();
  }
  for (int o = 0; o < io->n_out; o++) {
    cn_shape ys = {io->out[o].rank + 1, {io->batch}};
    memcpy(ys.dim + 1, io->out[o].dim, (size_t)io->out[o].rank * sizeof *ys.dim);
    if (cn_npy_write(io->out_path[o], &ys, io->y[o]) != CN_OK) return cli_lib_error();
  }
  return CLI_OK;
}

static int run_model(cn_model *model, run_io *io) {
  int want_in = cn_model_input_count(model), want_out = cn_model_output_count(model);
  if (io->n_in != want_in || io->n_out != want_out)
    return cli_usage("run",
                     "the model has %d input(s) and %d output(s): got %d --input, %d --output",
                     want_in, want_out, io->n_in, io->n_out);
  int rc = check_inputs(model, io);
  if (rc == CLI_OK) rc = forward_all(model, io);
  if (rc == CLI_OK && io->profile) {
    int batch = (int)(io->batch < RUN_CHUNK ? io->batch : RUN_CHUNK);
    rc = cli_print_profile(model, batch, (const float *const *)io->x, io->profile);
  }
  return rc;
}

static void free_io(run_io *io) {
  for (int i = 0; i < RUN_MAX_IO; i++) {
    free(io->x[i]);
    free(io->y[i]);
  }
}

static int add_path(const char **paths, int *n, const char *path, const char *flag) {
  if (*n >= RUN_MAX_IO) return cli_usage("run", "at most %d %s", RUN_MAX_IO, flag);
  paths[(*n)++] = path;
  return CLI_OK;
}

int cmd_run(int argc, char **argv) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"threads", required_argument, NULL, 't'},
                                          {"input", required_argument, NULL, 'i'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"profile", required_argument, NULL, 'p'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  cli_model_args a = {.need_weights = 1};
  run_io io = {0};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (cli_model_option("run", opt, optarg, &a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 't':
      if (!cli_set_threads("run", optarg)) return CLI_USAGE;
      break;
    case 'i':
      if ((rc = add_path(io.in_path, &io.n_in, optarg, "--input")) != CLI_OK) return rc;
      break;
    case 'o':
      if ((rc = add_path(io.out_path, &io.n_out, optarg, "--output")) != CLI_OK) return rc;
      break;
    case 'p':
      if (!cli_parse_int("run", "--profile", optarg, 1, 100000, &io.profile)) return CLI_USAGE;
      break;
    case 'h':
      fputs(run_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("run", opt, argv);
    }
  }
  if (optind != argc) return cli_usage("run", "unexpected argument '%s'", argv[optind]);
  if (!a.model || !io.n_in || !io.n_out)
    return cli_usage("run", "-m MODEL, --input and --output are required");
  for (int k = 0; k < io.n_out; k++)
    if ((rc = cli_check_output(io.out_path[k], 0)) != CLI_OK) return rc;
  cn_model *model = NULL;
  a.values = io.values;
  a.n_values = io.n_in;
  rc = read_files(&io);
  if (rc == CLI_OK) rc = cli_open_model("run", &a, &model);
  if (rc == CLI_OK) {
    drop_bound(&io);
    rc = run_model(model, &io);
  }
  cn_model_free(model);
  free_io(&io);
  return rc;
}
