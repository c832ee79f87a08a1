/* Losses fused with their output activation, as Keras computes them with from_logits=True:
 * per-sample losses reduced by "sum_over_batch_size" (sum of w_i * l_i over the batch, divided by
 * the batch), the gradient being that of the mean loss. Everything is computed in double. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "core/error.h"
#include "kernels/loss.h"
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

/* The row loss each kind computes: the cross-entropies from logits (their activation fused). */
static const cn_loss_fn row_fn[] = {
    [CN_LOSS_CATEGORICAL_CE] = CN_LOSS_FN_CCE_LOGITS,
    [CN_LOSS_SPARSE_CE] = CN_LOSS_FN_SPARSE_LOGITS,
    [CN_LOSS_BINARY_CE] = CN_LOSS_FN_BCE_LOGITS,
    [CN_LOSS_MSE] = CN_LOSS_FN_MSE,
    [CN_LOSS_MAE] = CN_LOSS_FN_MAE,
};
_Static_assert(sizeof row_fn / sizeof row_fn[0] == CN_LOSS_COUNT, "one row loss per loss");

double cn_loss(cn_loss_kind kind, int batch, int n, const float *pred, const float *target,
               const float *sample_weight, float *grad) {
  return cn_loss_of_share(kind, batch, n, pred, target, sample_weight, grad, batch) / batch;
}

double cn_loss_of_share(cn_loss_kind kind, int batch, int n, const float *pred, const float *target,
                        const float *sample_weight, float *grad, int64_t global_batch) {
  if ((unsigned)kind >= CN_LOSS_COUNT || batch <= 0 || n <= 0 || !pred || !target ||
      global_batch < batch)
    return NAN;
  if (grad) memset(grad, 0, (size_t)batch * (size_t)n * sizeof(float));
  int sparse = kind == CN_LOSS_SPARSE_CE;
  double total = 0.0;
  for (int i = 0; i < batch; i++) {
    double w = sample_weight ? sample_weight[i] : 1.0;
    const float *t = target + (size_t)i * (sparse ? 1 : (size_t)n);
    float *g = grad ? grad + (size_t)i * n : NULL;
    total += w * cn_loss_row(row_fn[kind], n, pred + (size_t)i * n, t, 0.0f,
                             w / (double)global_batch, g, NULL);
  }
  return total;
}

cn_status cn_loss_check_targets(cn_loss_kind kind, int batch, int n, const float *target) {
  if ((unsigned)kind >= CN_LOSS_COUNT || batch <= 0 || n <= 0 || !target)
    return cn_fail(CN_ERR_ARG, "%s: invalid arguments", cn_loss_name(kind));
  size_t count = kind == CN_LOSS_SPARSE_CE ? (size_t)batch : (size_t)batch * n;
  for (size_t i = 0; i < count; i++) {
    if (kind == CN_LOSS_SPARSE_CE && cn_loss_sparse_class(target[i], n) < 0)
      return cn_fail(CN_ERR_ARG, "%s: target %zu is %g, not a class index in [0, %d)",
                     cn_loss_name(kind), i, (double)target[i], n);
    if (!isfinite(target[i]))
      return cn_fail(CN_ERR_ARG, "%s: target %zu is not finite", cn_loss_name(kind), i);
  }
  return CN_OK;
}
