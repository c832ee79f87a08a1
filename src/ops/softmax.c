/* Softmax and LogSoftmax with ONNX's two meanings of axis: one axis (opset >= 13) or every axis
 * from `axis` on (older opsets coerce the input to 2-D). Numerically stable (max subtracted). */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

static cn_status softmax_infer(cn_graph *g, cn_node *node) {
  const cn_softmax_attrs *a = node->attrs;
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (cn_axis_resolve(a->axis, x->rank) < 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: axis %d is the batch or outside rank %d", node->name,
                   a->axis, x->rank + 1);
  node->shape = *x;
  return CN_OK;
}

/* Normalises `n` values `inner` apart, starting at x, into y. */
static void normalise(const float *x, float *y, int64_t n, int64_t inner, int log_mode) {
  float top = -INFINITY;
  for (int64_t i = 0; i < n; i++) top = cn_maxf(top, x[i * inner]);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i * inner] - top));
  if (log_mode) {
    float lse = (float)log(sum);
    for (int64_t i = 0; i < n; i++) y[i * inner] = x[i * inner] - top - lse;
  } else {
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) y[i * inner] = expf(x[i * inner] - top) * inv;
  }
}

/* The full shape as (outer, n, inner): lines of n values `inner` apart are normalised. */
static void softmax_geometry(const cn_softmax_attrs *a, const cn_shape *full, int64_t *outer,
                             int64_t *n, int64_t *inner) {
  int axis = cn_axis_resolve(a->axis, full->rank - 1) + 1;
  *outer = *n = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= full->dim[i];
  if (a->flatten) {
    for (int i = axis; i < full->rank; i++) *n *= full->dim[i];
  } else {
    *n = full->dim[axis];
    for (int i = axis + 1; i < full->rank; i++) *inner *= full->dim[i];
  }
}

static void softmax_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_softmax_attrs *a = node->attrs;
  int64_t outer, n, inner;
  softmax_geometry(a, &out->shape, &outer, &n, &inner);
  const float *x = in[0].data;
  float *y = out->data;
  int64_t lines = outer * inner;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (lines * n > (1 << 14))
  for (int64_t l = 0; l < lines; l++) {
    int64_t o = l / inner, j = l % inner, base = o * n * inner + j;
    normalise(x + base, y + base, n, inner, a->log);
  }
}

/* Backward of one line of n values `inner` apart, from the output y:
 * softmax: dx += y * (dy - sum(dy * y)); log-softmax: dx += dy - exp(y) * sum(dy). The sum runs
 * in double, in index order. */
static void line_backward(const float *y, const float *dy, float *dx, int64_t n, int64_t inner,
                          int log_mode) {
  double sum = 0;
  if (log_mode) {
    for (int64_t i = 0; i < n; i++) sum += dy[i * inner];
    float s = (float)sum;
    for (int64_t i = 0; i < n; i++) dx[i * inner] += dy[i * inner] - expf(y[i * inner]) * s;
  } else {
    for (int64_t i = 0; i < n; i++) sum += (double)dy[i * inner] * y[i * inner];
    float s = (float)sum;
    for (int64_t i = 0; i < n; i++) dx[i * inner] += y[i * inner] * (dy[i * inner] - s);
  }
}

/* Every line is one thread's, so the result does not depend on the thread count. */
static void softmax_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  (void)in, (void)dparams;
  const cn_softmax_attrs *a = node->attrs;
  if (!din[0].data) return;
  int64_t outer, n, inner;
  softmax_geometry(a, &out->shape, &outer, &n, &inner);
  int64_t lines = outer * inner;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (lines * n > (1 << 14))
  for (int64_t l = 0; l < lines; l++) {
    int64_t o = l / inner, j = l % inner, base = o * n * inner + j;
    line_backward(out->data + base, dout->data + base, din[0].data + base, n, inner, a->log);
  }
}

const cn_op cn_op_softmax = {
    .type = "Softmax",
    .attrs_size = sizeof(cn_softmax_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = softmax_infer,
    .forward = softmax_forward,
    .inplace = 1,
    .backward = softmax_backward,
};
