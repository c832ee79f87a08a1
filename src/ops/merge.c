/* Add, Subtract, Multiply, Average, Maximum, Minimum of two or more inputs of one shape. The
 * output may share the first input's buffer: each element is read before it is written. */
#include <math.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status merge_infer(cn_graph *g, cn_node *node) {
  const cn_merge_attrs *a = node->attrs;
  if ((int)a->kind < CN_MERGE_ADD || a->kind > CN_MERGE_MINIMUM)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown merge kind %d", node->name, (int)a->kind);
  if (a->kind == CN_MERGE_SUBTRACT && node->n_inputs != 2)
    return cn_fail(CN_ERR_SHAPE, "%s: wrong number of inputs (%d)", node->name, node->n_inputs);
  const cn_shape *first = &g->nodes[node->inputs[0]].shape;
  for (int i = 1; i < node->n_inputs; i++) {
    const cn_shape *other = &g->nodes[node->inputs[i]].shape;
    char buf[96], buf2[96];
    if (!cn_shape_equal(first, other))
      return cn_fail(CN_ERR_SHAPE, "%s: input shapes %s and %s differ", node->name,
                     cn_shape_format(first, buf, sizeof buf),
                     cn_shape_format(other, buf2, sizeof buf2));
  }
  node->shape = *first;
  return CN_OK;
}

static float combine(cn_merge_kind kind, float acc, float v) {
  switch (kind) {
  case CN_MERGE_SUBTRACT:
    return acc - v;
  case CN_MERGE_MULTIPLY:
    return acc * v;
  case CN_MERGE_MAXIMUM:
    return cn_maxf(acc, v);
  case CN_MERGE_MINIMUM:
    return cn_minf(acc, v);
  default:
    return acc + v; /* add, average */
  }
}

static void merge_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_merge_attrs *a = node->attrs;
  int64_t n = cn_shape_numel(&out->shape);
  int k = node->n_inputs;
  cn_merge_kind kind = a->kind;
  float *y = out->data;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; i++) {
    float acc = in[0].data[i];
    for (int j = 1; j < k; j++) acc = combine(kind, acc, in[j].data[i]);
    y[i] = kind == CN_MERGE_AVERAGE ? acc / (float)k : acc;
  }
}

/* The input that max/min picked for element i: the first of equal values, as forward keeps the
 * running value unless a later one is strictly better. */
static int winner(const cn_tensor *in, int k, int64_t i, int is_max) {
  int best = 0;
  float v = in[0].data[i];
  for (int j = 1; j < k; j++) {
    float w = in[j].data[i];
    if (is_max ? v < w : v > w) v = w, best = j;
  }
  return best;
}

/* d out / d in[j] at element i (product of the other factors for multiply). */
static float partial(cn_merge_kind kind, const cn_tensor *in, int k, int j, int64_t i) {
  switch (kind) {
  case CN_MERGE_SUBTRACT:
    return j == 0 ? 1.0f : -1.0f;
  case CN_MERGE_AVERAGE:
    return 1.0f / (float)k;
  case CN_MERGE_MULTIPLY: {
    float p = 1.0f;
    for (int m = 0; m < k; m++)
      if (m != j) p *= in[m].data[i];
    return p;
  }
  default:
    return 1.0f;
  }
}

static void merge_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex) {
  const cn_merge_attrs *a = node->attrs;
  int64_t n = cn_shape_numel(&dout->shape);
  int k = node->n_inputs;
  cn_merge_kind kind = a->kind;
  const float *dy = dout->data;
  if (kind == CN_MERGE_ADD) {
    for (int j = 0; j < k; j++)
      if (din[j].data) cn_add_into(din[j].data, dy, n, ex->threads);
    return;
  }
  int pick = kind == CN_MERGE_MAXIMUM || kind == CN_MERGE_MINIMUM;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n * k > (1 << 15))
  for (int64_t i = 0; i < n; i++) {
    int w = pick ? winner(in, k, i, kind == CN_MERGE_MAXIMUM) : -1;
    for (int j = 0; j < k; j++) {
      if (!din[j].data) continue;
      if (pick)
        din[j].data[i] += j == w ? dy[i] : 0.0f;
      else
        din[j].data[i] += dy[i] * partial(kind, in, k, j, i);
    }
  }
}

const cn_op cn_op_merge = {
    .type = "Add",
    .attrs_size = sizeof(cn_merge_attrs),
    .min_inputs = 2,
    .max_inputs = 0,
    .infer = merge_infer,
    .forward = merge_forward,
    .inplace = 1,
    .backward = merge_backward,
};
