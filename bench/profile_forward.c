/* Runs one model's forward pass repeatedly, for perf / callgrind and for bench/bench_onnx.py, and
 * optionally times every layer by wrapping each node's operator with a timing shim (no change to
 * the library).
 *
 *   profile_forward MODEL [--weights FILE] [--batch N] [--threads N] [--iters N] [--layers]
 *                   [--input X.npy] [--output Y.npy] [--serve] [--precision fp32|bf16]
 *                   [--algorithm-batch N]
 *
 * MODEL is a zoo name or a model file (.onnx, .h5, ...: anything cn_model_load reads). --input
 * feeds that tensor (its first dimension is the batch) instead of a fixed pseudo-random one;
 * --output writes the last forward's result. The model is loaded once; the first forward is an
 * untimed warm-up (plan, weight repacking). --serve (for bench_onnx.py, which interleaves engines)
 * prints "ready", then runs one timed forward per line read on stdin and prints its ms, until EOF.
 *
 * Built outside the main build on purpose (bench/CMakeLists.txt); see bench/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "ops/ops.h"

typedef struct options {
  const char *model, *weights, *input, *output;
  int batch, threads, iters, layers, serve;
  cn_precision precision;
  int algorithm_batch;
} options;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_options(int argc, char **argv, options *o) {
  *o = (options){.batch = 1, .threads = 2, .iters = 5};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--layers")) {
      o->layers = 1;
    } else if (!strcmp(a, "--serve")) {
      o->serve = 1;
    } else if (v && !strcmp(a, "--weights")) {
      o->weights = argv[++i];
    } else if (v && !strcmp(a, "--input")) {
      o->input = argv[++i];
    } else if (v && !strcmp(a, "--output")) {
      o->output = argv[++i];
    } else if (v && !strcmp(a, "--precision")) {
      const char *p = argv[++i];
      if (strcmp(p, "fp32") && strcmp(p, "bf16")) return 0;
      o->precision = strcmp(p, "bf16") ? CN_PRECISION_FP32 : CN_PRECISION_BF16;
    } else if (v && !strcmp(a, "--algorithm-batch")) {
      o->algorithm_batch = atoi(argv[++i]);
    } else if (v && !strcmp(a, "--batch")) {
      o->batch = atoi(argv[++i]);
    } else if (v && !strcmp(a, "--threads")) {
      o->threads = atoi(argv[++i]);
    } else if (v && !strcmp(a, "--iters")) {
      o->iters = atoi(argv[++i]);
    } else if (a[0] != '-' && !o->model) {
      o->model = a;
    } else {
      return 0;
    }
  }
  return o->model && o->batch > 0 && o->iters > 0;
}

/* ---- per-layer timing: each node's op is replaced by a copy whose forward times the original */

#define MAX_OP_KINDS 64

static const cn_op *originals[MAX_OP_KINDS];
static cn_op shims[MAX_OP_KINDS];
static int n_kinds;
static double *layer_ms; /* per node, summed over the timed iterations */
static cn_node *first_node;

static void timed_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_op *orig = originals[node->op - shims];
  double start = now_ms();
  orig->forward(node, in, out, ex);
  layer_ms[node - first_node] += now_ms() - start;
}

static int install_shims(cn_graph *g) {
  first_node = g->nodes;
  layer_ms = calloc((size_t)g->n_nodes, sizeof *layer_ms);
  if (!layer_ms) return 0;
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    if (n->op == &cn_op_input) continue; /* the graph skips inputs by identity */
    int k = 0;
    while (k < n_kinds && originals[k] != n->op) k++;
    if (k == n_kinds) {
      if (n_kinds == MAX_OP_KINDS) return 0;
      originals[k] = n->op;
      shims[k] = *n->op;
      shims[k].forward = timed_forward;
      n_kinds++;
    }
    n->op = &shims[k];
  }
  return 1;
}

static void remove_shims(cn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    if (n->op >= shims && n->op < shims + MAX_OP_KINDS) n->op = originals[n->op - shims];
  }
}

static void print_layers(const cn_graph *g, int iters, double total_ms) {
  printf("\nper operator type (ms per forward, share of the forward):\n");
  for (int k = 0; k < n_kinds; k++) {
    double ms = 0;
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++)
      if (g->nodes[i].op == &shims[k]) ms += layer_ms[i], count++;
    printf("  %-24s %4d layers %9.2f ms %5.1f%%\n", originals[k]->type, count, ms / iters,
           100 * ms / iters / total_ms);
  }
  printf("\nslowest layers (ms per forward):\n");
  for (int rank = 0; rank < 20; rank++) {
    int best = -1;
    for (int i = 0; i < g->n_nodes; i++)
      if (layer_ms[i] > 0 && (best < 0 || layer_ms[i] > layer_ms[best])) best = i;
    if (best < 0) break;
    char shape[96];
    printf("  %-28s %-20s %-18s %8.2f ms\n", g->nodes[best].name, g->nodes[best].type,
           cn_shape_format(&g->nodes[best].shape, shape, sizeof shape), layer_ms[best] / iters);
    layer_ms[best] = -layer_ms[best]; /* mark printed */
  }
}

/* ---- main --------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *filled_input(const cn_model *m, int batch, int64_t *numel_out) {
  cn_shape in = cn_model_input_shape_at(m, 0);
  int64_t n = cn_shape_numel(&in) * batch;
  float *x = malloc((size_t)n * sizeof *x);
  if (!x) return NULL;
  uint32_t s = 12345; /* fixed LCG: the same input every run */
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
  }
  *numel_out = n;
  return x;
}

/* The --input tensor, checked against the model's input shape; sets the batch from it. */
static float *read_input(const cn_model *m, const char *path, int *batch) {
  cn_shape shape, in = cn_model_input_shape_at(m, 0);
  float *x = NULL;
  if (cn_npy_read(path, &shape, &x) != CN_OK) return NULL;
  int64_t per_sample = cn_shape_numel(&in);
  if (shape.rank < 1 || shape.dim[0] < 1 || shape.dim[0] > 4096 ||
      cn_shape_numel(&shape) != per_sample * shape.dim[0]) {
    char a[96], b[96];
    fprintf(stderr, "profile_forward: %s has shape %s, the model takes (batch,)+%s\n", path,
            cn_shape_format(&shape, a, sizeof a), cn_shape_format(&in, b, sizeof b));
    free(x);
    return NULL;
  }
  *batch = (int)shape.dim[0];
  return x;
}

/* A path (it has a '/' or a '.') is loaded as a model file, anything else built from the zoo. */
static cn_status load_model(const options *o, cn_model **m) {
  cn_zoo_options zo = {.name = o->model};
  cn_status st = strchr(o->model, '/') || strchr(o->model, '.') ? cn_model_load(o->model, m)
                                                                : cn_zoo_build(&zo, m);
  if (st == CN_OK && o->weights) st = cn_model_load_weights(*m, o->weights);
  return st;
}

static cn_status forward(cn_model *m, int batch, const float *x, float *y) {
  const float *inputs[1] = {x};
  float *outputs[1] = {y};
  return cn_model_forward_multi(m, batch, inputs, outputs);
}

static int write_output(const cn_model *m, int batch, const char *path, const float *y) {
  cn_shape per = cn_model_output_shape_at(m, 0), out = {.rank = per.rank + 1, .dim = {batch}};
  if (out.rank > CN_MAX_RANK) return 0;
  for (int d = 0; d < per.rank; d++) out.dim[d + 1] = per.dim[d];
  return cn_npy_write(path, &out, y) == CN_OK;
}

static void report(const options *o, int batch, double *times, const float *y) {
  qsort(times, (size_t)o->iters, sizeof *times, cmp_double);
  printf("%s batch %d threads %d: median %.2f ms, min %.2f ms over %d runs (y[0]=%g)\n", o->model,
         batch, o->threads, times[o->iters / 2], times[0], o->iters, y[0]);
}

/* --serve: one timed forward per line of stdin, its time printed at once (the caller's clock
 * would add the pipe's latency). */
static int serve(cn_model *m, int batch, const float *x, float *y) {
  char line[64];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    double start = now_ms();
    if (forward(m, batch, x, y) != CN_OK) return 0;
    printf("%.3f\n", now_ms() - start);
    fflush(stdout);
  }
  return 1;
}

static int run(const options *o) {
  cn_set_threads(o->threads);
  cn_model *m = NULL;
  if (load_model(o, &m) != CN_OK) {
    fprintf(stderr, "profile_forward: %s\n", cn_last_error());
    cn_model_free(m);
    return 1;
  }
  if (cn_model_input_count(m) != 1 || cn_model_output_count(m) != 1) {
    fprintf(stderr, "profile_forward: %s: only one-input, one-output models\n", o->model);
    cn_model_free(m);
    return 1;
  }
  cn_model_set_precision(m, o->precision);
  cn_model_set_algorithm_batch(m, o->algorithm_batch);
  int64_t n_in = 0;
  int batch = o->batch;
  float *x = o->input ? read_input(m, o->input, &batch) : filled_input(m, batch, &n_in);
  cn_shape out_shape = cn_model_output_shape_at(m, 0);
  float *y = malloc((size_t)(cn_shape_numel(&out_shape) * batch) * sizeof *y);
  double *times = malloc((size_t)o->iters * sizeof *times);
  int ok = x && y && times;
  if (ok) ok = forward(m, batch, x, y) == CN_OK; /* warm-up: plan + weight repack */
  /* After the first forward, m->inference (when non-NULL) is the folded graph that runs. */
  cn_graph *run_graph = m->inference ? m->inference : m->graph;
  if (ok && o->layers) ok = install_shims(run_graph);
  if (ok && o->serve) ok = serve(m, batch, x, y);
  for (int i = 0; ok && !o->serve && i < o->iters; i++) {
    double start = now_ms();
    ok = forward(m, batch, x, y) == CN_OK;
    times[i] = now_ms() - start;
  }
  if (ok && o->output) ok = write_output(m, batch, o->output, y);
  if (ok && !o->serve) {
    double sum = 0;
    for (int i = 0; i < o->iters; i++) sum += times[i];
    report(o, batch, times, y);
    if (o->layers) print_layers(run_graph, o->iters, sum / o->iters);
  } else if (!ok) {
    fprintf(stderr, "profile_forward: %s\n", x && y && times ? cn_last_error() : "no input");
  }
  if (o->layers) remove_shims(run_graph);
  free(layer_ms);
  free(times);
  free(y);
  free(x);
  cn_model_free(m);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  cn_prefer_passive_waiting(argv); /* the CLI's spin policy, as bench_onnx.py compares it */
  options o;
  if (!parse_options(argc, argv, &o)) {
    fprintf(stderr, "usage: profile_forward MODEL [--weights FILE] [--batch N] [--threads N] "
                    "[--iters N] [--layers] [--input X.npy] [--output Y.npy] [--serve]\n"
                    "       [--precision fp32|bf16] [--algorithm-batch N]\n");
    return 2;
  }
  return run(&o);
}
