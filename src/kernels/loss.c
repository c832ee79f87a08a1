/* Row losses of kernels/loss.h, computed in double and stable for any logits. */
#include "kernels/loss.h"

#include <math.h>
#include <stddef.h>

int cn_loss_fn_sparse(cn_loss_fn fn) {
  return fn == CN_LOSS_FN_SPARSE_LOGITS || fn == CN_LOSS_FN_SPARSE;
}

int cn_loss_sparse_class(float target, int n) {
  if (!(target >= 0.0f) || target >= (float)n || target != floorf(target)) return -1;
  return (int)target;
}

static void add(float *g, int64_t j, double v) {
  if (g) g[j] += (float)v;
}

/* log(sum(exp(x))) without overflow: shifted by the maximum. */
static double log_sum_exp(const float *x, int64_t n) {
  double max = -INFINITY;
  for (int64_t j = 0; j < n; j++)
    if (x[j] > max) max = x[j];
  if (isinf(max)) return max; /* all -inf (or +inf present): nothing finite to shift by */
  double sum = 0.0;
  for (int64_t j = 0; j < n; j++) sum += exp((double)x[j] - max);
  return max + log(sum);
}

/* Softmax cross-entropy against a probability row: sum_j t_j * (lse - x_j). The gradient is
 * sum(t) * softmax - t (targets are not renormalised, as in Keras). */
static double categorical_logits(int64_t n, const float *x, const float *t, double scale, float *gx,
                                 float *gt) {
  double lse = log_sum_exp(x, n), loss = 0.0, t_sum = 0.0;
  for (int64_t j = 0; j < n; j++) {
    if (t[j] != 0.0f) loss += (double)t[j] * (lse - x[j]);
    t_sum += t[j];
    add(gt, j, scale * (lse - x[j]));
  }
  for (int64_t j = 0; gx && j < n; j++) add(gx, j, scale * (t_sum * exp(x[j] - lse) - t[j]));
  return loss;
}

static double sparse_logits(int64_t n, const float *x, int cls, double scale, float *gx) {
  double lse = log_sum_exp(x, n);
  for (int64_t j = 0; gx && j < n; j++) add(gx, j, scale * (exp(x[j] - lse) - (j == cls)));
  return lse - x[cls];
}

static double clip_probability(double p) {
  return fmin(fmax(p, CN_LOSS_EPSILON), 1.0 - CN_LOSS_EPSILON);
}

/* Keras on probabilities: x renormalised to sum 1, clipped to [eps, 1 - eps], then
 * -sum t_j log x_j. With q = x / s: d/dx_k = (d/dq_k) / s - sum_j (d/dq_j) x_j / s^2. `cls` >= 0
 * stands for a one-hot target. */
static double categorical_probs(int64_t n, const float *x, const float *t, int cls, double scale,
                                float *gx, float *gt) {
  double s = 0.0, loss = 0.0, dot = 0.0;
  for (int64_t j = 0; j < n; j++) s += x[j];
  for (int64_t j = 0; j < n; j++) {
    double tj = cls >= 0 ? (j == cls) : t[j], q = x[j] / s, c = clip_probability(q);
    loss -= tj * log(c);
    if (cls < 0) add(gt, j, -scale * log(c));
    if (q > CN_LOSS_EPSILON && q < 1.0 - CN_LOSS_EPSILON) dot += -tj / c * x[j];
  }
  for (int64_t j = 0; gx && j < n; j++) {
    double tj = cls >= 0 ? (j == cls) : t[j], q = x[j] / s, c = clip_probability(q);
    double dq = q > CN_LOSS_EPSILON && q < 1.0 - CN_LOSS_EPSILON ? -tj / c : 0.0;
    add(gx, j, scale * (dq / s - dot / (s * s)));
  }
  return loss;
}

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* max(x, 0) - x*z + log(1 + exp(-|x|)) never overflows. */
static double binary_logits(int64_t n, const float *x, const float *z, double scale, float *gx,
                            float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double xj = x[j], zj = z[j];
    loss += fmax(xj, 0.0) - xj * zj + log1p(exp(-fabs(xj)));
    add(gx, j, scale / n * (sigmoid(xj) - zj));
    add(gt, j, -scale / n * xj);
  }
  return loss / n;
}

static double binary_probs(int64_t n, const float *x, const float *z, double scale, float *gx,
                           float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double p = clip_probability(x[j]), zj = z[j];
    loss -= zj * log(p) + (1.0 - zj) * log(1.0 - p);
    int inside = x[j] > CN_LOSS_EPSILON && x[j] < 1.0 - CN_LOSS_EPSILON;
    if (inside) add(gx, j, scale / n * (-zj / p + (1.0 - zj) / (1.0 - p)));
    add(gt, j, -scale / n * (log(p) - log(1.0 - p)));
  }
  return loss / n;
}

static double mse(int64_t n, const float *x, const float *t, double scale, float *gx, float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double d = (double)x[j] - t[j];
    loss += d * d;
    add(gx, j, scale / n * 2.0 * d);
    add(gt, j, -scale / n * 2.0 * d);
  }
  return loss / n;
}

static double mae(int64_t n, const float *x, const float *t, double scale, float *gx, float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double d = (double)x[j] - t[j], sign = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
    loss += fabs(d);
    add(gx, j, scale / n * sign);
    add(gt, j, -scale / n * sign);
  }
  return loss / n;
}

static double contrastive(int64_t n, const float *x, const float *t, float margin, double scale,
                          float *gx, float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double d = x[j], y = t[j], gap = fmax(margin - d, 0.0);
    loss += (1.0 - y) * d * d + y * gap * gap;
    add(gx, j, scale / n * (2.0 * (1.0 - y) * d - 2.0 * y * gap));
    add(gt, j, scale / n * (gap * gap - d * d));
  }
  return loss / n;
}

static double kl_gaussian(int64_t n, const float *mean, const float *log_var, double scale,
                          float *gx, float *gt) {
  double loss = 0.0;
  for (int64_t j = 0; j < n; j++) {
    double m = mean[j], lv = log_var[j], e = exp(lv);
    loss += -0.5 * (1.0 + lv - m * m - e);
    add(gx, j, scale * m);
    add(gt, j, scale * -0.5 * (1.0 - e));
  }
  return loss;
}

static double sparse(cn_loss_fn fn, int64_t n, const float *x, float target, double scale,
                     float *gx) {
  int cls = cn_loss_sparse_class(target, n > INT32_MAX ? INT32_MAX : (int)n);
  if (cls < 0) return NAN;
  if (fn == CN_LOSS_FN_SPARSE_LOGITS) return sparse_logits(n, x, cls, scale, gx);
  return categorical_probs(n, x, NULL, cls, scale, gx, NULL);
}

double cn_loss_row(cn_loss_fn fn, int64_t n, const float *x, const float *t, float margin,
                   double scale, float *gx, float *gt) {
  switch (fn) {
  case CN_LOSS_FN_MSE:
    return mse(n, x, t, scale, gx, gt);
  case CN_LOSS_FN_MAE:
    return mae(n, x, t, scale, gx, gt);
  case CN_LOSS_FN_BCE_LOGITS:
    return binary_logits(n, x, t, scale, gx, gt);
  case CN_LOSS_FN_BCE:
    return binary_probs(n, x, t, scale, gx, gt);
  case CN_LOSS_FN_CCE_LOGITS:
    return categorical_logits(n, x, t, scale, gx, gt);
  case CN_LOSS_FN_CCE:
    return categorical_probs(n, x, t, -1, scale, gx, gt);
  case CN_LOSS_FN_SPARSE_LOGITS:
  case CN_LOSS_FN_SPARSE:
    return sparse(fn, n, x, t[0], scale, gx);
  case CN_LOSS_FN_CONTRASTIVE:
    return contrastive(n, x, t, margin, scale, gx, gt);
  case CN_LOSS_FN_KL_GAUSSIAN:
    return kl_gaussian(n, x, t, scale, gx, gt);
  default:
    return NAN;
  }
}
