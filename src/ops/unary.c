/* Elementwise functions of one input with ONNX semantics: Clip, HardSigmoid, HardSwish, Elu,
 * Selu, LeakyRelu and the plain math functions the importer maps one to one, with their
 * derivatives. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

static cn_status unary_infer(cn_graph *g, cn_node *node) {
  const cn_unary_attrs *a = node->attrs;
  if ((int)a->kind < 0 || a->kind >= CN_UN_COUNT)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown elementwise kind %d", node->name, (int)a->kind);
  if (a->kind == CN_UN_CLIP && (isnan(a->lo) || isnan(a->hi)))
    return cn_fail(CN_ERR_FORMAT, "%s: Clip bounds are NaN", node->name);
  if (!isfinite(a->alpha) || !isfinite(a->beta))
    return cn_fail(CN_ERR_FORMAT, "%s: alpha/beta must be finite", node->name);
  node->shape = g->nodes[node->inputs[0]].shape;
  return CN_OK;
}

static inline float unary(const cn_unary_attrs *a, float x) {
  switch (a->kind) {
  case CN_UN_CLIP: /* ONNX: min(max(x, lo), hi), so hi wins when lo > hi */
    return cn_minf(cn_maxf(x, a->lo), a->hi);
  case CN_UN_HARD_SIGMOID:
    return cn_maxf(0.0f, cn_minf(1.0f, a->alpha * x + a->beta));
  case CN_UN_HARD_SWISH:
    return x * cn_maxf(0.0f, cn_minf(1.0f, x / 6.0f + 0.5f));
  case CN_UN_ELU:
    return x > 0 ? x : a->alpha * expm1f(x);
  case CN_UN_LEAKY_RELU:
    return x >= 0 ? x : a->alpha * x;
  case CN_UN_RELU:
    return cn_maxf(x, 0.0f);
  case CN_UN_SIGMOID:
    return 1.0f / (1.0f + expf(-x));
  case CN_UN_TANH:
    return tanhf(x);
  case CN_UN_SOFTPLUS: /* stable: max(x, 0) + log1p(exp(-|x|)) */
    return cn_maxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
  case CN_UN_NEG:
    return -x;
  case CN_UN_ABS:
    return fabsf(x);
  case CN_UN_SQRT:
    return sqrtf(x);
  case CN_UN_EXP:
    return expf(x);
  case CN_UN_LOG:
    return logf(x);
  case CN_UN_RECIPROCAL:
    return 1.0f / x;
  case CN_UN_FLOOR:
    return floorf(x);
  case CN_UN_CEIL:
    return ceilf(x);
  case CN_UN_ERF:
    return erff(x);
  case CN_UN_SQUARE:
    return x * x;
  case CN_UN_AFFINE:
    return a->alpha * x + a->beta;
  case CN_UN_SELU:
    return a->beta * (x > 0 ? x : a->alpha * expm1f(x));
  default:
    return x;
  }
}

static void unary_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_unary_attrs *a = node->attrs;
  int64_t n = cn_shape_numel(&out->shape);
  const float *x = in[0].data;
  float *y = out->data;
  if (a->kind == CN_UN_IDENTITY) {
    if (x != y) memmove(y, x, (size_t)n * sizeof(float));
    return;
  }
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; i++) y[i] = unary(a, x[i]);
}

/* ---- backward ------------------------------------------------------------------------------ */

/* d unary(x) / dx, with y = unary(x) (the training forward's output). At kinks the choice follows
 * TensorFlow: relu passes nothing at 0, leaky relu and ELU their negative-side slope, abs 0, Clip
 * passes only strictly inside (lo, hi), HardSigmoid and HardSwish take the slope of the flat side
 * at their corners. Floor and Ceil have zero gradient almost everywhere, and get zero. */
static inline float unary_slope(const cn_unary_attrs *a, float x, float y) {
  switch (a->kind) {
  case CN_UN_CLIP:
    return x > a->lo && x < a->hi ? 1.0f : 0.0f;
  case CN_UN_HARD_SIGMOID: {
    float v = a->alpha * x + a->beta;
    return v > 0.0f && v < 1.0f ? a->alpha : 0.0f;
  }
  case CN_UN_HARD_SWISH: {
    float t = x / 6.0f + 0.5f;
    return t <= 0.0f ? 0.0f : t >= 1.0f ? 1.0f : x / 3.0f + 0.5f;
  }
  case CN_UN_ELU:
    return x > 0 ? 1.0f : a->alpha * expf(x);
  case CN_UN_LEAKY_RELU:
    return x > 0 ? 1.0f : a->alpha;
  case CN_UN_RELU:
    return x > 0 ? 1.0f : 0.0f;
  case CN_UN_SIGMOID:
    return y * (1.0f - y);
  case CN_UN_TANH:
    return 1.0f - y * y;
  case CN_UN_SOFTPLUS: { /* the logistic function, computed without overflow */
    float e = expf(-fabsf(x));
    return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
  }
  case CN_UN_NEG:
    return -1.0f;
  case CN_UN_ABS:
    return x > 0 ? 1.0f : x < 0 ? -1.0f : 0.0f;
  case CN_UN_SQRT:
    return 0.5f / y;
  case CN_UN_EXP:
    return y;
  case CN_UN_LOG:
    return 1.0f / x;
  case CN_UN_RECIPROCAL:
    return -(y * y);
  case CN_UN_ERF: /* 2 / sqrt(pi) * exp(-x^2) */
    return 1.1283791670955126f * expf(-x * x);
  case CN_UN_SQUARE:
    return 2.0f * x;
  case CN_UN_AFFINE:
    return a->alpha;
  case CN_UN_SELU:
    return a->beta * (x > 0 ? 1.0f : a->alpha * expf(x));
  default: /* identity */
    return 1.0f;
  }
}

enum { UNARY_CHUNK = 1 << 14 };

static void unary_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex) {
  (void)dparams;
  const cn_unary_attrs *a = node->attrs;
  float *dx = din[0].data;
  if (!dx || a->kind == CN_UN_FLOOR || a->kind == CN_UN_CEIL) return;
  int64_t n = cn_shape_numel(&out->shape);
  const float *x = in[0].data, *y = out->data, *dy = dout->data;
  if (a->kind == CN_UN_IDENTITY) {
    cn_add_into(dx, dy, n, ex->threads);
    return;
  }
  if (a->kind == CN_UN_NEG) {
    cn_add_scaled_into(dx, dy, -1.0f, n, ex->threads);
    return;
  }
  /* Elementwise: every element is written by one thread, whatever the count. */
  int64_t chunks = (n + UNARY_CHUNK - 1) / UNARY_CHUNK;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > (1 << 15))
  for (int64_t c = 0; c < chunks; c++) {
    int64_t end = (c + 1) * UNARY_CHUNK < n ? (c + 1) * UNARY_CHUNK : n;
    for (int64_t i = c * UNARY_CHUNK; i < end; i++) dx[i] += dy[i] * unary_slope(a, x[i], y[i]);
  }
}

const cn_op cn_op_unary = {
    .type = "Unary",
    .attrs_size = sizeof(cn_unary_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = unary_infer,
    .forward = unary_forward,
    .inplace = 1,
    .backward = unary_backward,
};
