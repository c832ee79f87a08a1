/* Losses fused with their output activation, as Keras computes them with from_logits=True:
 * per-sample losses reduced by "sum_over_batch_size" (sum of w_i * l_i over the batch, divided by
 * the batch), the gradient being that of the mean loss. Everything is computed in double. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/error.h"
#include "train/optim.h"

static const char *const loss_names[] = {
    [CN_LOSS_CATEGORICAL_CE] = "categorical_crossentropy",
    [CN_LOSS_SPARSE_CE] = "sparse_categorical_crossentropy",
    [CN_LOSS_BINARY_CE] = "binary_crossentropy",
    [CN_LOSS_MSE] = "mean_squared_error",
    [CN_LOSS_MAE] = "mean_absolute_error",
};
_Static_assert(sizeof loss_names / sizeof loss_names[0] == CN_LOSS_COUNT, "one name per loss");

const char *cn_loss_name(cn_loss_kind kind) {
  return (unsigned)kind < CN_LOSS_COUNT ? loss_names[kind] : "unknown";
}

cn_status cn_loss_parse(const char *name, cn_loss_kind *out) {
  static const struct {
    const char *alias;
    cn_loss_kind kind;
  } aliases[] = {{"mse", CN_LOSS_MSE}, {"mae", CN_LOSS_MAE}};
  for (size_t i = 0; name && i < sizeof aliases / sizeof *aliases; i++)
    if (strcmp(name, aliases[i].alias) == 0) return *out = aliases[i].kind, CN_OK;
  for (int k = 0; name && k < CN_LOSS_COUNT; k++)
    if (strcmp(name, loss_names[k]) == 0) return *out = (cn_loss_kind)k, CN_OK;
  return cn_fail(CN_ERR_ARG,
                 "loss must be mse, mae, binary_crossentropy, categorical_crossentropy or "
                 "sparse_categorical_crossentropy, not \"%.64s\"",
                 name ? name : "(none)");
}

/* The class index a float sparse target names, or -1 when it is not an integer in [0, n). */
static int sparse_class(float target, int n) {
  if (!(target >= 0.0f) || target >= (float)n || target != floorf(target)) return -1;
  return (int)target;
}

/* log(sum(exp(x))) without overflow: shifted by the maximum. */
static double log_sum_exp(const float *x, int n) {
  double max = -INFINITY;
  for (int j = 0; j < n; j++)
    if (x[j] > max) max = x[j];
  if (isinf(max)) return max; /* all -inf (or +inf present): nothing finite to shift by */
  double sum = 0.0;
  for (int j = 0; j < n; j++) sum += exp((double)x[j] - max);
  return max + log(sum);
}

/* softmax cross-entropy of one sample against a probability row: sum_j t_j * (lse - x_j). The
 * gradient is sum(t) * softmax - t (targets are not renormalised, as in Keras). */
static double categorical_row(int n, const float *x, const float *t, double scale, float *g) {
  double lse = log_sum_exp(x, n), loss = 0.0, t_sum = 0.0;
  for (int j = 0; j < n; j++) {
    if (t[j] != 0.0f) loss += (double)t[j] * (lse - x[j]);
    t_sum += t[j];
  }
  if (g)
    for (int j = 0; j < n; j++) g[j] = (float)(scale * (t_sum * exp(x[j] - lse) - t[j]));
  return loss;
}

/* The same for an integer class; an invalid target gives NaN and a zero gradient row. */
static double sparse_row(int n, const float *x, float target, double scale, float *g) {
  int cls = sparse_class(target, n);
  if (cls < 0) {
    if (g)
      for (int j = 0; j < n; j++) g[j] = 0.0f;
    return NAN;
  }
  double lse = log_sum_exp(x, n);
  if (g)
    for (int j = 0; j < n; j++) g[j] = (float)(scale * (exp(x[j] - lse) - (j == cls)));
  return lse - x[cls];
}

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* Sigmoid cross-entropy, mean over the row: max(x,0) - x*z + log(1 + exp(-|x|)) never overflows. */
static double binary_row(int n, const float *x, const float *z, double scale, float *g) {
  double loss = 0.0;
  for (int j = 0; j < n; j++) {
    double xj = x[j], zj = z[j];
    loss += fmax(xj, 0.0) - xj * zj + log1p(exp(-fabs(xj)));
    if (g) g[j] = (float)(scale / n * (sigmoid(xj) - zj));
  }
  return loss / n;
}

static double mse_row(int n, const float *p, const float *t, double scale, float *g) {
  double loss = 0.0;
  for (int j = 0; j < n; j++) {
    double d = (double)p[j] - t[j];
    loss += d * d;
    if (g) g[j] = (float)(scale / n * 2.0 * d);
  }
  return loss / n;
}

static double mae_row(int n, const float *p, const float *t, double scale, float *g) {
  double loss = 0.0;
  for (int j = 0; j < n; j++) {
    double d = (double)p[j] - t[j];
    loss += fabs(d);
    if (g) g[j] = (float)(scale / n * (d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0));
  }
  return loss / n;
}

double cn_loss(cn_loss_kind kind, int batch, int n, const float *pred, const float *target,
               const float *sample_weight, float *grad) {
  if ((unsigned)kind >= CN_LOSS_COUNT || batch <= 0 || n <= 0 || !pred || !target) return NAN;
  double total = 0.0;
  for (int i = 0; i < batch; i++) {
    double w = sample_weight ? sample_weight[i] : 1.0, scale = w / batch, loss = 0.0;
    const float *x = pred + (size_t)i * n;
    float *g = grad ? grad + (size_t)i * n : NULL;
    switch (kind) {
    case CN_LOSS_CATEGORICAL_CE:
      loss = categorical_row(n, x, target + (size_t)i * n, scale, g);
      break;
    case CN_LOSS_SPARSE_CE:
      loss = sparse_row(n, x, target[i], scale, g);
      break;
    case CN_LOSS_BINARY_CE:
      loss = binary_row(n, x, target + (size_t)i * n, scale, g);
      break;
    case CN_LOSS_MAE:
      loss = mae_row(n, x, target + (size_t)i * n, scale, g);
      break;
    default:
      loss = mse_row(n, x, target + (size_t)i * n, scale, g);
      break;
    }
    total += w * loss;
  }
  return total / batch;
}

cn_status cn_loss_check_targets(cn_loss_kind kind, int batch, int n, const float *target) {
  if ((unsigned)kind >= CN_LOSS_COUNT || batch <= 0 || n <= 0 || !target)
    return cn_fail(CN_ERR_ARG, "%s: invalid arguments", cn_loss_name(kind));
  size_t count = kind == CN_LOSS_SPARSE_CE ? (size_t)batch : (size_t)batch * n;
  for (size_t i = 0; i < count; i++) {
    if (kind == CN_LOSS_SPARSE_CE && sparse_class(target[i], n) < 0)
      return cn_fail(CN_ERR_ARG, "%s: target %zu is %g, not a class index in [0, %d)",
                     cn_loss_name(kind), i, (double)target[i], n);
    if (!isfinite(target[i]))
      return cn_fail(CN_ERR_ARG, "%s: target %zu is not finite", cn_loss_name(kind), i);
  }
  return CN_OK;
}
