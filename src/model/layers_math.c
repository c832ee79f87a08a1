/* The builder's math (convnet/layers.h): elementwise functions, reductions, the Gaussian
 * sampling node and losses as layers, and building a model from any part of a net. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "model/net.h"
#include "ops/ops.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"

static const struct {
  const char *name;
  cn_unary_kind kind;
} math_fns[] = {
    {"exp", CN_UN_EXP},
    {"log", CN_UN_LOG},
    {"sqrt", CN_UN_SQRT},
    {"square", CN_UN_SQUARE},
    {"abs", CN_UN_ABS},
    {"neg", CN_UN_NEG},
    {"reciprocal", CN_UN_RECIPROCAL},
    {"sigmoid", CN_UN_SIGMOID},
    {"tanh", CN_UN_TANH},
    {"relu", CN_UN_RELU},
    {"softplus", CN_UN_SOFTPLUS},
};

cn_sym cn_net_math(cn_net *net, cn_sym x, const char *fn, const char *name) {
  for (size_t i = 0; fn && i < sizeof math_fns / sizeof *math_fns; i++)
    if (strcmp(fn, math_fns[i].name) == 0) {
      cn_unary_attrs a = {.kind = math_fns[i].kind};
      return cn_net_add_node(net, &cn_op_unary, name, math_fns[i].name, &x, 1, &a);
    }
  if (!net || net->status != CN_OK) return (cn_sym){-1, 0};
  return cn_net_failed(net, cn_fail(CN_ERR_ARG,
                                    "%s: unknown function \"%.32s\" (exp, log, sqrt, square, abs, "
                                    "neg, reciprocal, sigmoid, tanh, relu, softplus)",
                                    name ? name : "math", fn ? fn : "(null)"));
}

cn_sym cn_net_scale(cn_net *net, cn_sym x, float scale, float shift, const char *name) {
  cn_unary_attrs a = {.kind = CN_UN_AFFINE, .alpha = scale, .beta = shift};
  return cn_net_add_node(net, &cn_op_unary, name, "rescaling", &x, 1, &a);
}

cn_sym cn_net_clip(cn_net *net, cn_sym x, float lo, float hi, const char *name) {
  cn_unary_attrs a = {.kind = CN_UN_CLIP, .lo = lo, .hi = hi};
  return cn_net_add_node(net, &cn_op_unary, name, "clip", &x, 1, &a);
}

/* Keras axes (the batch is 0, negative from the end) as a mask of per-sample axes; NULL: all. */
static cn_status axes_mask(const char *layer, const int *axes, int n_axes, int rank, int *mask) {
  *mask = 0;
  if (!axes || n_axes == 0) {
    *mask = (1 << rank) - 1;
    return CN_OK;
  }
  for (int i = 0; i < n_axes; i++) {
    int k = cn_axis_resolve(axes[i], rank);
    if (k < 0)
      return cn_fail(
          CN_ERR_ARG,
          "%s: axis %d is outside 1..%d (the batch axis 0 is reduced by the loss's mean)", layer,
          axes[i], rank);
    *mask |= 1 << k;
  }
  return CN_OK;
}

cn_sym cn_net_reduce(cn_net *net, cn_sym x, const char *how, const int *axes, int n_axes,
                     int keepdims, const char *name) {
  static const char *const hows[] = {"sum", "mean", "max", "min"};
  static const char *const bases[] = {"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"};
  if (!net || net->status != CN_OK) return (cn_sym){-1, 0};
  int kind = -1;
  for (int k = 0; how && k < 4; k++)
    if (strcmp(how, hows[k]) == 0) kind = k;
  const char *layer = name ? name : "reduce";
  if (kind < 0)
    return cn_net_failed(net,
                         cn_fail(CN_ERR_ARG, "%s: reduction must be sum, mean, max or min", layer));
  if (!cn_net_valid(net, x))
    return cn_net_add_node(net, &cn_op_reduce, name, bases[kind], &x, 1, NULL);
  int rank = net->g->nodes[x.node].shape.rank;
  if (rank == 0 && (!axes || n_axes == 0)) /* a scalar reduced over all of its no axes */
    return cn_net_scale(net, x, 1.0f, 0.0f, name);
  cn_reduce_attrs a = {.kind = (cn_reduce_kind)kind, .keepdims = keepdims != 0};
  cn_status st = axes_mask(layer, axes, n_axes, rank, &a.axes);
  if (st != CN_OK) return cn_net_failed(net, st);
  return cn_net_add_node(net, &cn_op_reduce, name, bases[kind], &x, 1, &a);
}

cn_sym cn_net_gaussian_sample(cn_net *net, cn_sym mean, cn_sym log_var, uint64_t seed,
                              const char *name) {
  cn_gaussian_sample_attrs a = {.seed = seed};
  cn_sym xs[2] = {mean, log_var};
  return cn_net_add_node(net, &cn_op_gaussian_sample, name, "sampling", xs, 2, &a);
}

static const struct {
  const char *name;
  cn_loss_fn fn;
} loss_names[] = {
    {"mse", CN_LOSS_FN_MSE},
    {"mean_squared_error", CN_LOSS_FN_MSE},
    {"mae", CN_LOSS_FN_MAE},
    {"mean_absolute_error", CN_LOSS_FN_MAE},
    {"binary_crossentropy", CN_LOSS_FN_BCE},
    {"binary_crossentropy_from_logits", CN_LOSS_FN_BCE_LOGITS},
    {"categorical_crossentropy", CN_LOSS_FN_CCE},
    {"categorical_crossentropy_from_logits", CN_LOSS_FN_CCE_LOGITS},
    {"sparse_categorical_crossentropy", CN_LOSS_FN_SPARSE},
    {"sparse_categorical_crossentropy_from_logits", CN_LOSS_FN_SPARSE_LOGITS},
    {"contrastive", CN_LOSS_FN_CONTRASTIVE},
    {"kl_gaussian", CN_LOSS_FN_KL_GAUSSIAN},
};

static cn_sym loss_node(cn_net *net, cn_loss_fn fn, float margin, cn_sym a, cn_sym b,
                        const char *name, const char *base) {
  cn_loss_attrs attrs = {.fn = fn, .margin = margin};
  cn_sym xs[2] = {a, b};
  return cn_net_add_node(net, &cn_op_loss, name, base, xs, 2, &attrs);
}

cn_sym cn_net_loss(cn_net *net, const char *loss, cn_sym pred, cn_sym target, const char *name) {
  for (size_t i = 0; loss && i < sizeof loss_names / sizeof *loss_names; i++)
    if (strcmp(loss, loss_names[i].name) == 0)
      return loss_node(net, loss_names[i].fn, 0.0f, pred, target, name, "loss");
  if (!net || net->status != CN_OK) return (cn_sym){-1, 0};
  return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: unknown loss \"%.64s\"", name ? name : "loss",
                                    loss ? loss : "(null)"));
}

cn_sym cn_net_contrastive_loss(cn_net *net, cn_sym distance, cn_sym label, float margin,
                               const char *name) {
  if (!(margin > 0.0f) && net && net->status == CN_OK)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: the margin must be positive",
                                      name ? name : "contrastive_loss"));
  return loss_node(net, CN_LOSS_FN_CONTRASTIVE, margin, distance, label, name, "contrastive_loss");
}

cn_sym cn_net_kl_gaussian(cn_net *net, cn_sym mean, cn_sym log_var, const char *name) {
  return loss_node(net, CN_LOSS_FN_KL_GAUSSIAN, 0.0f, mean, log_var, name, "kl_loss");
}

/* weights[i] * xs[i], summed: an Affine node per weight other than 1, then one Add. */
cn_sym cn_net_weighted_sum(cn_net *net, const cn_sym *xs, const float *weights, int n,
                           const char *name) {
  if (!net || net->status != CN_OK) return (cn_sym){-1, 0};
  char auto_buf[64];
  if (!name) name = cn_auto_name(&net->names, "weighted_sum", auto_buf, sizeof auto_buf);
  const char *layer = name;
  if (!xs || n < 1 || n > MAX_MERGE)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: 1 to %d terms", layer, MAX_MERGE));
  cn_sym terms[MAX_MERGE];
  for (int i = 0; i < n; i++) {
    terms[i] = xs[i];
    if (weights && weights[i] != 1.0f) {
      char term[96];
      snprintf(term, sizeof term, "%s/term%d", layer, i);
      terms[i] = cn_net_scale(net, xs[i], weights[i], 0.0f, term);
    }
  }
  if (n == 1) return cn_net_scale(net, terms[0], 1.0f, 0.0f, name);
  cn_merge_attrs a = {.kind = CN_MERGE_ADD};
  return cn_net_add_node(net, &cn_op_merge, name, "weighted_sum", terms, n, &a);
}
