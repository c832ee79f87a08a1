/* Dropout: the identity at inference and in a non-trainable node; in a training forward, inverted
 * dropout as Keras does: keep an element with probability 1 - rate and scale it by 1 / (1 - rate).
 * The keep decision for element i is cn_rng_uniform_at(seed, i) >= rate, a pure function of the
 * step's seed and the element index, so it needs no stored mask and no thread coordination:
 * backward draws the same decisions again. */
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { PARALLEL_MIN = 1 << 15 };

static cn_status dropout_infer(cn_graph *g, cn_node *node) {
  const cn_dropout_attrs *a = node->attrs;
  if (!(a->rate >= 0.0f && a->rate <= 1.0f))
    return cn_fail(CN_ERR_FORMAT, "%s: rate must be in [0, 1]", node->name);
  node->shape = g->nodes[node->inputs[0]].shape;
  return CN_OK;
}

static int dropping(const cn_node *node, const cn_exec *ex) {
  const cn_dropout_attrs *a = node->attrs;
  return ex->training && node->trainable && a->rate > 0.0f;
}

/* The factor of kept elements; rate 1 drops everything. */
static float keep_scale(const cn_dropout_attrs *a) {
  return a->rate < 1.0f ? 1.0f / (1.0f - a->rate) : 0.0f;
}

/* y[i] (+)= x[i] * scale where element i is kept, else (+)0. */
static void masked_scale(const float *x, float *y, int64_t n, float rate, float scale,
                         uint64_t seed, uint64_t first, int accumulate, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float v = cn_rng_uniform_at(seed, first + (uint64_t)i) >= rate ? x[i] * scale : 0.0f;
    y[i] = accumulate ? y[i] + v : v;
  }
}

static void dropout_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_dropout_attrs *a = node->attrs;
  int64_t n = cn_shape_numel(&out->shape);
  if (dropping(node, ex))
    masked_scale(in[0].data, out->data, n, a->rate, keep_scale(a), ex->seed,
                 cn_exec_first_element(ex, n), 0, ex->threads);
  else if (out->data != in[0].data)
    memmove(out->data, in[0].data, (size_t)n * sizeof(float));
}

static void dropout_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  const cn_dropout_attrs *a = node->attrs;
  int64_t n = cn_shape_numel(&dout->shape);
  if (!din[0].data) return;
  if (dropping(node, ex)) {
    masked_scale(dout->data, din[0].data, n, a->rate, keep_scale(a), ex->seed,
                 cn_exec_first_element(ex, n), 1, ex->threads);
    return;
  }
  cn_add_into(din[0].data, dout->data, n, ex->threads);
}

const cn_op cn_op_dropout = {
    .type = "Dropout",
    .attrs_size = sizeof(cn_dropout_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .inplace = 1,
    .backward = dropout_backward,
};
