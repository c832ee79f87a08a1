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

/* The window of channel j: [lo, hi]. */
static void window(int64_t j, int64_t c, int64_t before, int64_t after, int64_t *lo, int64_t *hi) {
  *lo = j - before < 0 ? 0 : j - before;
  *hi = j + after >= c ? c - 1 : j + after;
}

/* bias + alpha / size * the sum of x^2 over channel j's window (in forward's order). */
static float denominator(const cn_lrn_attrs *a, const float *x, int64_t j, int64_t c) {
  int64_t before = (a->size - 1) / 2, after = a->size - 1 - before, lo, hi;
  window(j, c, before, after, &lo, &hi);
  float sq = 0;
  for (int64_t t = lo; t <= hi; t++) sq += x[t] * x[t];
  return a->bias + a->alpha / (float)a->size * sq;
}

static void lrn_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_lrn_attrs *a = node->attrs;
  int64_t c = out->shape.dim[out->shape.rank - 1];
  int64_t rows = cn_shape_numel(&out->shape) / (c ? c : 1);
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * c > (1 << 14))
  for (int64_t r = 0; r < rows; r++) {
    const float *x = in[0].data + r * c;
    float *y = out->data + r * c;
    for (int64_t j = 0; j < c; j++) y[j] = x[j] / powf(denominator(a, x, j, c), a->beta);
  }
}

/* With D_j the denominator and y_j = x_j D_j^-beta:
 * dx_i += dy_i D_i^-beta - 2 beta alpha / size * x_i * sum over the j whose window holds i of
 * dy_j y_j / D_j. The j whose window holds i are [i - after, i + before]. Rows (pixels) are
 * independent and each is one thread's, so the result does not depend on the thread count.
 * scratch: dy_j y_j / D_j for the whole batch. */
static void lrn_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                         const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                         const cn_exec *ex) {
  (void)dparams;
  const cn_lrn_attrs *a = node->attrs;
  if (!din[0].data) return;
  int64_t c = out->shape.dim[out->shape.rank - 1];
  int64_t rows = cn_shape_numel(&out->shape) / (c ? c : 1);
  int64_t before = (a->size - 1) / 2, after = a->size - 1 - before;
  float k = 2.0f * a->beta * a->alpha / (float)a->size;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * c > (1 << 14))
  for (int64_t r = 0; r < rows; r++) {
    const float *x = in[0].data + r * c, *y = out->data + r * c, *dy = dout->data + r * c;
    float *q = ex->scratch + r * c, *dx = din[0].data + r * c;
    for (int64_t j = 0; j < c; j++) q[j] = dy[j] * y[j] / denominator(a, x, j, c);
    for (int64_t i = 0; i < c; i++) {
      int64_t lo, hi;
      window(i, c, after, before, &lo, &hi); /* the j whose window holds i */
      float sum = 0;
      for (int64_t j = lo; j <= hi; j++) sum += q[j];
      dx[i] += dy[i] / powf(denominator(a, x, i, c), a->beta) - k * x[i] * sum;
    }
  }
}

static size_t lrn_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  (void)g;
  return (size_t)batch * (size_t)cn_shape_numel(&node->shape);
}

const cn_op cn_op_lrn = {
    .type = "LRN",
    .attrs_size = sizeof(cn_lrn_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = lrn_infer,
    .forward = lrn_forward,
    .backward = lrn_backward,
    .backward_scratch = lrn_backward_scratch,
};
