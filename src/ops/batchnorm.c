/* BatchNormalization over any axis, computed as Keras does:
 * inv = gamma / sqrt(variance + epsilon); y = x * inv + (beta - mean * inv),
 * with the moving statistics at inference and the batch statistics (biased variance) in a
 * training forward of a trainable node, which also moves the moving statistics by the momentum.
 * A non-trainable node always runs as at inference (Keras's frozen-BN rule).
 *
 * Reductions over batch x spatial positions are cut into at most BN_CHUNKS fixed chunks of the
 * outer dimension, summed in double and combined in chunk order, so that the results are bitwise
 * the same for any thread count. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { BN_CHUNKS = 32 };

/* x viewed as (outer, c, inner) around the channel axis. */
typedef struct bn_geom {
  int64_t outer, c, inner;
} bn_geom;

/* The node's parameters by role (gamma, beta NULL when absent) and their indices. */
typedef struct bn_params {
  float *gamma, *beta, *mean, *var;
  int gamma_k, beta_k;
} bn_params;

static cn_status batchnorm_infer(cn_graph *g, cn_node *node) {
  const cn_batchnorm_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  int axis = cn_axis_resolve(a->axis, in->rank);
  if (axis < 0)
    return cn_fail(CN_ERR_SHAPE, "%s: axis %d out of range for rank %d", node->name, a->axis,
                   in->rank + 1);
  if (!(a->epsilon >= 0.0f) || !isfinite(a->epsilon))
    return cn_fail(CN_ERR_FORMAT, "%s: bad epsilon", node->name);
  if (!(a->momentum >= 0.0f && a->momentum <= 1.0f))
    return cn_fail(CN_ERR_FORMAT, "%s: momentum must be in [0, 1]", node->name);
  node->shape = *in;
  cn_shape channels = cn_shape_make(1, &in->dim[axis]);
  cn_status st = CN_OK;
  if (a->scale) st = cn_node_add_param(node, "gamma", channels);
  if (st == CN_OK && a->center) st = cn_node_add_param(node, "beta", channels);
  if (st == CN_OK) st = cn_node_add_state(node, "moving_mean", channels);
  if (st == CN_OK) st = cn_node_add_state(node, "moving_variance", channels);
  return st;
}

static int64_t batchnorm_channels(const cn_graph *g, const cn_node *node) {
  const cn_batchnorm_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  return in->dim[cn_axis_resolve(a->axis, in->rank)];
}

static bn_geom bn_geometry(const cn_node *node, const cn_shape *x) {
  const cn_batchnorm_attrs *a = node->attrs;
  int axis = cn_axis_resolve(a->axis, x->rank - 1) + 1;
  bn_geom g = {1, x->dim[axis], 1};
  for (int i = 0; i < axis; i++) g.outer *= x->dim[i];
  for (int i = axis + 1; i < x->rank; i++) g.inner *= x->dim[i];
  return g;
}

static bn_params bn_params_of(const cn_node *node) {
  const cn_batchnorm_attrs *a = node->attrs;
  bn_params p = {.gamma_k = -1, .beta_k = -1};
  int k = 0;
  if (a->scale) p.gamma_k = k, p.gamma = node->params[k++].data;
  if (a->center) p.beta_k = k, p.beta = node->params[k++].data;
  p.mean = node->params[k].data;
  p.var = node->params[k + 1].data;
  return p;
}

static int64_t chunk_rows(const bn_geom *g) {
  return (g->outer + BN_CHUNKS - 1) / BN_CHUNKS;
}

static int64_t chunk_count(const bn_geom *g) {
  int64_t rows = chunk_rows(g);
  return rows ? (g->outer + rows - 1) / rows : 0;
}

/* What a chunk sums per channel. */
typedef enum bn_sum { SUM_X, SUM_SQDEV, SUM_GRAD } bn_sum;

/* Channels last (inner 1): whole rows of c channels at a time, which vectorises. */
static void chunk_sum_rows(const bn_geom *g, bn_sum what, int64_t o0, int64_t o1, const float *x,
                           const float *dy, const float *mean, double *restrict a,
                           double *restrict b) {
  int64_t c = g->c;
  for (int64_t o = o0; o < o1; o++) {
    const float *restrict xr = x + o * c;
    const float *restrict dr = dy ? dy + o * c : NULL;
    if (what == SUM_X)
#pragma omp simd
      for (int64_t j = 0; j < c; j++) a[j] += xr[j];
    else if (what == SUM_SQDEV)
#pragma omp simd
      for (int64_t j = 0; j < c; j++) {
        double d = (double)xr[j] - mean[j];
        a[j] += d * d;
      }
    else
#pragma omp simd
      for (int64_t j = 0; j < c; j++) {
        a[j] += dr[j];
        b[j] += (double)dr[j] * ((double)xr[j] - mean[j]);
      }
  }
}

/* Any layout: one line of `inner` values per (row, channel). */
static void chunk_sum_lines(const bn_geom *g, bn_sum what, int64_t o0, int64_t o1, const float *x,
                            const float *dy, const float *mean, double *a, double *b) {
  int64_t c = g->c, inner = g->inner;
  for (int64_t o = o0; o < o1; o++)
    for (int64_t j = 0; j < c; j++) {
      const float *xl = x + (o * c + j) * inner;
      const float *dl = dy ? dy + (o * c + j) * inner : NULL;
      double sa = 0, sb = 0, m = mean ? mean[j] : 0;
      for (int64_t i = 0; i < inner; i++) {
        double d = (double)xl[i] - m;
        if (what == SUM_X)
          sa += xl[i];
        else if (what == SUM_SQDEV)
          sa += d * d;
        else
          sa += dl[i], sb += (double)dl[i] * d;
      }
      a[j] += sa;
      if (b) b[j] += sb;
    }
}

/* Sums of one chunk of outer rows [o0, o1) into a[c] (and b[c] for SUM_GRAD):
 * SUM_X: x; SUM_SQDEV: (x - mean)^2; SUM_GRAD: dy and dy * (x - mean) * istd. */
static void chunk_sum(const bn_geom *g, bn_sum what, int64_t o0, int64_t o1, const float *x,
                      const float *dy, const float *mean, const float *istd, double *a, double *b) {
  memset(a, 0, (size_t)g->c * sizeof *a);
  if (b) memset(b, 0, (size_t)g->c * sizeof *b);
  if (g->inner == 1)
    chunk_sum_rows(g, what, o0, o1, x, dy, mean, a, b);
  else
    chunk_sum_lines(g, what, o0, o1, x, dy, mean, a, b);
  if (b)
    for (int64_t j = 0; j < g->c; j++) b[j] *= (double)istd[j];
}

/* Per-channel totals (a, and b for SUM_GRAD) over the whole tensor, thread-invariant: every
 * chunk writes its own row of part (chunk_count * c doubles per total), then rows are added in
 * order. */
static void channel_sums(const bn_geom *g, bn_sum what, const float *x, const float *dy,
                         const float *mean, const float *istd, double *part_a, double *part_b,
                         int threads) {
  int64_t rows = chunk_rows(g), chunks = chunk_count(g), c = g->c;
#pragma omp parallel for num_threads(threads) schedule(static) if (g->outer * c * g->inner > 32768)
  for (int64_t k = 0; k < chunks; k++) {
    int64_t o0 = k * rows, o1 = o0 + rows < g->outer ? o0 + rows : g->outer;
    chunk_sum(g, what, o0, o1, x, dy, mean, istd, part_a + k * c, part_b ? part_b + k * c : NULL);
  }
  for (int64_t k = 1; k < chunks; k++)
    for (int64_t j = 0; j < c; j++) {
      part_a[j] += part_a[k * c + j];
      if (part_b) part_b[j] += part_b[k * c + j];
    }
}

static float bn_momentum(const cn_batchnorm_attrs *a) {
  return a->momentum > 0.0f ? a->momentum : 0.99f;
}

static int training_mode(const cn_node *node, const cn_exec *ex) {
  const cn_batchnorm_attrs *a = node->attrs;
  return ex->training && node->trainable && !a->affine;
}

/* Data-parallel training: the per-channel totals of this rank's share summed over every rank of
 * ex->group (part[0..c), and with count the number of values they total), so that the statistics
 * are those of the global batch. The sum's order is fixed: every rank gets the same bits. A
 * failure of the group cannot be reported from here; the trainer's next collective reports it. */
static void global_sums(const cn_exec *ex, double *part, int64_t c, double *count) {
  if (!ex->group) return;
  if (ex->placeholder) { /* this rank has no sample in the step: it adds nothing */
    memset(part, 0, (size_t)c * sizeof *part);
    if (count) *count = 0;
  }
  if (!count) {
    cn_group_sum_f64(ex->group, part, (size_t)c);
    return;
  }
  double saved = part[c];
  part[c] = *count;
  if (cn_group_sum_f64(ex->group, part, (size_t)c + 1) == CN_OK) *count = part[c];
  part[c] = saved;
}

/* Batch mean and inverse standard deviation into saved (mean[c], istd[c]) and the moving
 * statistics moved towards them. part: chunk_count * c doubles. */
static void batch_statistics(const cn_node *node, const bn_geom *g, const float *x, float *saved,
                             double *part, const cn_exec *ex) {
  const cn_batchnorm_attrs *a = node->attrs;
  bn_params p = bn_params_of(node);
  float *mean = saved, *istd = saved + g->c;
  double count = (double)g->outer * (double)g->inner;
  channel_sums(g, SUM_X, x, NULL, NULL, NULL, part, NULL, ex->threads);
  global_sums(ex, part, g->c, &count);
  for (int64_t j = 0; j < g->c; j++) mean[j] = (float)(part[j] / count);
  channel_sums(g, SUM_SQDEV, x, NULL, mean, NULL, part, NULL, ex->threads);
  global_sums(ex, part, g->c, NULL);
  float m = bn_momentum(a);
  for (int64_t j = 0; j < g->c; j++) {
    float var = (float)(part[j] / count);
    istd[j] = 1.0f / sqrtf(var + a->epsilon);
    p.mean[j] = p.mean[j] * m + mean[j] * (1.0f - m);
    p.var[j] = p.var[j] * m + var * (1.0f - m);
  }
}

static void batchnorm_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                              const cn_exec *ex) {
  const cn_batchnorm_attrs *a = node->attrs;
  bn_geom g = bn_geometry(node, &in[0].shape);
  bn_params p = bn_params_of(node);
  double *part = (double *)ex->scratch;
  float *scale = ex->scratch + 2 * BN_CHUNKS * g.c, *shift = scale + g.c;
  const float *mean = p.mean, *istd = NULL;
  if (training_mode(node, ex)) {
    batch_statistics(node, &g, in[0].data, ex->saved, part, ex);
    mean = ex->saved, istd = ex->saved + g.c;
  }
  for (int64_t j = 0; j < g.c; j++) {
    float inv = istd ? istd[j] : 1.0f / sqrtf(p.var[j] + a->epsilon);
    if (p.gamma) inv *= p.gamma[j];
    scale[j] = inv;
    shift[j] = (p.beta ? p.beta[j] : 0.0f) - mean[j] * inv;
  }
  cn_scale_shift(in[0].data, out->data, g.outer, g.c, g.inner, scale, shift, ex->threads);
}

/* din += dy * (gamma * istd) * (1 or, in training mode, minus the parts through the batch mean
 * and variance): dx = k * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M), expanded per channel
 * into dx += A * dy + C * x + B. coef: 3 * c floats. */
static void input_gradient(const bn_geom *g, const float *x, const float *dy, const float *mean,
                           const float *istd, const float *gamma, const double *sum_dy,
                           const double *sum_dy_xhat, double count, int through_stats, float *coef,
                           float *dx, int threads) {
  int64_t c = g->c, inner = g->inner, lines = g->outer * c;
  float *A = coef, *B = coef + c, *C = coef + 2 * c;
  for (int64_t j = 0; j < c; j++) {
    double k = (double)istd[j] * (gamma ? gamma[j] : 1.0f);
    double m1 = through_stats ? sum_dy[j] / count : 0,
           m2 = through_stats ? sum_dy_xhat[j] / count : 0;
    A[j] = (float)k;
    C[j] = (float)(-k * istd[j] * m2);
    B[j] = (float)(-k * m1 + k * istd[j] * m2 * mean[j]);
  }
  if (inner == 1) {
#pragma omp parallel for num_threads(threads) schedule(static) if (lines > 32768)
    for (int64_t o = 0; o < g->outer; o++) {
      const float *restrict xr = x + o * c, *restrict dr = dy + o * c;
      float *restrict out = dx + o * c;
#pragma omp simd
      for (int64_t j = 0; j < c; j++) out[j] += A[j] * dr[j] + C[j] * xr[j] + B[j];
    }
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static) if (lines * inner > 32768)
  for (int64_t l = 0; l < lines; l++) {
    int64_t j = l % c;
    const float *xl = x + l * inner, *dl = dy + l * inner;
    float *out = dx + l * inner;
    for (int64_t i = 0; i < inner; i++) out[i] += A[j] * dl[i] + C[j] * xl[i] + B[j];
  }
}

static void batchnorm_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                               const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                               const cn_exec *ex) {
  const cn_batchnorm_attrs *a = node->attrs;
  bn_geom g = bn_geometry(node, &in[0].shape);
  bn_params p = bn_params_of(node);
  int train = training_mode(node, ex);
  float *dgamma = p.gamma_k >= 0 ? dparams[p.gamma_k] : NULL;
  float *dbeta = p.beta_k >= 0 ? dparams[p.beta_k] : NULL;
  int64_t chunks = chunk_count(&g);
  double *sum_dy = (double *)ex->scratch, *sum_dy_xhat = sum_dy + chunks * g.c;
  float *mean = ex->saved, *istd = ex->saved + g.c;
  float *coef = (float *)(sum_dy_xhat + chunks * g.c) + g.c;
  if (!train) { /* the moving statistics, as the forward used them */
    mean = p.mean, istd = (float *)(sum_dy_xhat + chunks * g.c);
    for (int64_t j = 0; j < g.c; j++) istd[j] = 1.0f / sqrtf(p.var[j] + a->epsilon);
  }
  double count = (double)g.outer * (double)g.inner;
  if (train || dgamma || dbeta) {
    channel_sums(&g, SUM_GRAD, in[0].data, dout->data, mean, istd, sum_dy, sum_dy_xhat,
                 ex->threads);
    /* The parameter gradients are this rank's part: the trainer sums them over the ranks. */
    for (int64_t j = 0; j < g.c; j++) {
      if (dgamma) dgamma[j] += (float)sum_dy_xhat[j];
      if (dbeta) dbeta[j] += (float)sum_dy[j];
    }
  }
  if (train && din[0].data && ex->group) {
    /* the input gradient goes through the global batch's statistics: their totals are global */
    double *both = (double *)ex->scratch + 2 * BN_CHUNKS * g.c + 2 * g.c;
    memcpy(both, sum_dy, (size_t)g.c * sizeof *both);
    memcpy(both + g.c, sum_dy_xhat, (size_t)g.c * sizeof *both);
    both[2 * g.c] = ex->placeholder ? 0 : count;
    global_sums(ex, both, 2 * g.c + 1, NULL);
    sum_dy = both, sum_dy_xhat = both + g.c, count = both[2 * g.c];
  }
  if (din[0].data)
    input_gradient(&g, in[0].data, dout->data, mean, istd, p.gamma, sum_dy, sum_dy_xhat, count,
                   train, coef, din[0].data, ex->threads);
}

/* Forward: chunk partial sums (doubles) then scale and shift. */
static size_t batchnorm_scratch(const cn_graph *g, const cn_node *node, int batch) {
  return (2 * BN_CHUNKS + 2) * (size_t)batchnorm_channels(g, node);
}

/* Backward: two sets of chunk partial sums (doubles), the inference inverse std and the three
 * per-channel coefficients of the input gradient; then, for data-parallel training, the two
 * global totals and the global count (2 c + 1 doubles). */
static size_t batchnorm_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  return (4 * BN_CHUNKS + 8) * (size_t)batchnorm_channels(g, node) + 2;
}

/* The batch mean and inverse standard deviation. */
static size_t batchnorm_saved(const cn_graph *g, const cn_node *node, int batch) {
  return 2 * (size_t)batchnorm_channels(g, node);
}

const cn_op cn_op_batchnorm = {
    .type = "BatchNormalization",
    .attrs_size = sizeof(cn_batchnorm_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = batchnorm_infer,
    .forward = batchnorm_forward,
    .scratch = batchnorm_scratch,
    .inplace = 1,
    .backward = batchnorm_backward,
    .saved = batchnorm_saved,
    .backward_scratch = batchnorm_backward_scratch,
};
