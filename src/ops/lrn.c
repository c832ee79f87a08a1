/* Local response normalisation across channels (the last axis), ONNX's formula:
 * y = x / (bias + alpha / size * sum of x^2 over the window)^beta. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

static cn_status lrn_infer(cn_graph *g, cn_node *node) {
  const cn_lrn_attrs *a = node->attrs;
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank < 1) return cn_fail(CN_ERR_SHAPE, "%s: needs a channel axis", node->name);
  if (a->size < 1 || a->size > (1 << 16))
    return cn_fail(CN_ERR_FORMAT, "%s: bad size %d", node->name, a->size);
  if (!isfinite(a->alpha) || !isfinite(a->beta) || !isfinite(a->bias))
    return cn_fail(CN_ERR_FORMAT, "%s: alpha, beta and bias must be finite", node->name);
  node->shape = *x;
  return CN_OK;
}

static void lrn_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_lrn_attrs *a = node->attrs;
  int64_t c = out->shape.dim[out->shape.rank - 1];
  int64_t rows = cn_shape_numel(&out->shape) / (c ? c : 1);
  int64_t before = (a->size - 1) / 2, after = a->size - 1 - before;
  float scale = a->alpha / (float)a->size;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * c > (1 << 14))
  for (int64_t r = 0; r < rows; r++) {
    const float *x = in[0].data + r * c;
    float *y = out->data + r * c;
    for (int64_t j = 0; j < c; j++) {
      int64_t lo = j - before < 0 ? 0 : j - before, hi = j + after >= c ? c - 1 : j + after;
      float sq = 0;
      for (int64_t t = lo; t <= hi; t++) sq += x[t] * x[t];
      y[j] = x[j] / powf(a->bias + scale * sq, a->beta);
    }
  }
}

const cn_op cn_op_lrn = {
    .type = "LRN",
    .attrs_size = sizeof(cn_lrn_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = lrn_infer,
    .forward = lrn_forward,
};
