/* Activations: the elementwise functions every layer can fuse, Keras's activation names, and the
 * Activation / ReLU / LeakyReLU / ELU / Softmax layer op. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

cn_status cn_act_parse(const char *name, cn_activation *out) {
  static const struct {
    const char *name;
    cn_act_kind kind;
  } simple[] = {{"linear", CN_ACT_LINEAR},
                {"relu", CN_ACT_RELU},
                {"sigmoid", CN_ACT_SIGMOID},
                {"tanh", CN_ACT_TANH},
                {"softmax", CN_ACT_SOFTMAX},
                {"elu", CN_ACT_ELU},
                {"swish", CN_ACT_SWISH},
                {"silu", CN_ACT_SWISH},
                {"hard_sigmoid", CN_ACT_HARD_SIGMOID}};
  if (!name) return cn_fail(CN_ERR_ARG, "activation name missing");
  if (strcmp(name, "relu6") == 0) {
    *out = cn_act_relu6();
    return CN_OK;
  }
  if (strcmp(name, "leaky_relu") == 0) { /* keras.activations.leaky_relu default slope */
    *out = cn_act_relu();
    out->negative_slope = 0.2f;
    return CN_OK;
  }
  for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
    if (strcmp(name, simple[i].name) == 0) {
      *out = cn_act_simple(simple[i].kind);
      return CN_OK;
    }
  return cn_fail(CN_ERR_UNSUPPORTED, "activation '%.64s' is not supported", name);
}

int cn_axis_resolve(int axis, int sample_rank) {
  int full = sample_rank + 1;
  if (axis < 0) axis += full;
  if (axis < 1 || axis >= full) return -1;
  return axis - 1;
}

cn_status cn_act_check(const char *layer, const cn_activation *act, int sample_rank,
                       int last_axis_only) {
  if ((int)act->kind < 0 || act->kind >= CN_ACT_COUNT)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown activation kind %d", layer, (int)act->kind);
  if (act->kind == CN_ACT_RELU && (isnan(act->max_value) || act->max_value < 0))
    return cn_fail(CN_ERR_FORMAT, "%s: relu max_value must be >= 0", layer);
  if (act->kind != CN_ACT_SOFTMAX) return CN_OK;
  int axis = cn_axis_resolve(act->axis, sample_rank);
  if (axis < 0)
    return cn_fail(CN_ERR_SHAPE, "%s: softmax axis %d out of range for rank %d", layer, act->axis,
                   sample_rank + 1);
  if (last_axis_only && axis != sample_rank - 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: fused softmax must be over the last axis", layer);
  return CN_OK;
}

static cn_status activation_infer(cn_graph *g, cn_node *node) {
  node->shape = g->nodes[node->inputs[0]].shape;
  return cn_act_check(node->name, node->attrs, node->shape.rank, 0);
}

static void activation_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                               const cn_exec *ex) {
  const cn_activation *act = node->attrs;
  size_t n = (size_t)cn_shape_numel(&out->shape);
  if (out->data != in[0].data) memcpy(out->data, in[0].data, n * sizeof(float));
  if (act->kind != CN_ACT_SOFTMAX) {
    cn_act_apply_parallel(act, out->data, n, ex->threads);
    return;
  }
  int axis = cn_axis_resolve(act->axis, out->shape.rank - 1) + 1;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; i++) outer *= out->shape.dim[i];
  for (int i = axis + 1; i < out->shape.rank; i++) inner *= out->shape.dim[i];
  cn_softmax_axis(out->data, outer, out->shape.dim[axis], inner, ex->threads);
}

enum { GRAD_CHUNK = 1 << 14, GRAD_PARALLEL_MIN = 1 << 15 };

/* Softmax backward along an axis with `inner` elements after it:
 * dx += y * (dy - sum(dy * y)) on every line. */
static void softmax_axis_backward(const float *y, const float *dy, float *dx, int64_t outer,
                                  int64_t n, int64_t inner, int threads) {
  int64_t lines = outer * inner;
#pragma omp parallel for num_threads(threads) schedule(static) if (lines * n > GRAD_PARALLEL_MIN)
  for (int64_t l = 0; l < lines; l++) {
    int64_t base = (l / inner) * n * inner + l % inner;
    if (inner == 1) {
      cn_act_backward(&(cn_activation){.kind = CN_ACT_SOFTMAX}, NULL, y + base, dy + base,
                      dx + base, (size_t)n);
      continue;
    }
    float dot = 0;
    for (int64_t i = 0; i < n; i++) dot += dy[base + i * inner] * y[base + i * inner];
    for (int64_t i = 0; i < n; i++)
      dx[base + i * inner] += y[base + i * inner] * (dy[base + i * inner] - dot);
  }
}

static void activation_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                                const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                                const cn_exec *ex) {
  const cn_activation *act = node->attrs;
  size_t n = (size_t)cn_shape_numel(&out->shape);
  if (!din[0].data) return;
  if (act->kind == CN_ACT_SOFTMAX) {
    int axis = cn_axis_resolve(act->axis, out->shape.rank - 1) + 1;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= out->shape.dim[i];
    for (int i = axis + 1; i < out->shape.rank; i++) inner *= out->shape.dim[i];
    softmax_axis_backward(out->data, dout->data, din[0].data, outer, out->shape.dim[axis], inner,
                          ex->threads);
    return;
  }
  /* The pre-activation is the input, unless a caller ran the forward in place. */
  const float *pre = in[0].data != out->data ? in[0].data : NULL;
  int64_t chunks = (int64_t)((n + GRAD_CHUNK - 1) / GRAD_CHUNK);
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > GRAD_PARALLEL_MIN)
  for (int64_t i = 0; i < chunks; i++) {
    size_t start = (size_t)i * GRAD_CHUNK, len = n - start < GRAD_CHUNK ? n - start : GRAD_CHUNK;
    cn_act_backward(act, pre ? pre + start : NULL, out->data + start, dout->data + start,
                    din[0].data + start, len);
  }
}

const cn_op cn_op_activation = {
    .type = "Activation",
    .attrs_size = sizeof(cn_activation),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = activation_infer,
    .forward = activation_forward,
    .inplace = 1,
    .backward = activation_backward,
};
