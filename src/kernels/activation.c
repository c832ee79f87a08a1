/* Activation functions, elementwise on a row of values. */
#include "kernels/activation.h"

cn_activation cn_act_simple(cn_act_kind kind) {
  cn_activation a = {.kind = kind, .max_value = INFINITY, .alpha = 1.0f, .axis = -1};
  return a;
}

cn_activation cn_act_linear(void) {
  return cn_act_simple(CN_ACT_LINEAR);
}
cn_activation cn_act_relu(void) {
  return cn_act_simple(CN_ACT_RELU);
}
cn_activation cn_act_softmax(void) {
  return cn_act_simple(CN_ACT_SOFTMAX);
}

cn_activation cn_act_relu6(void) {
  cn_activation a = cn_act_simple(CN_ACT_RELU);
  a.max_value = 6.0f;
  return a;
}

/* Keras's relu(x, negative_slope, max_value, threshold): values above the threshold pass (then
 * clipped to [0, max_value] when a maximum is set), values below it get the negative slope. */
static void relu_general(const cn_activation *a, float *x, size_t n) {
  float slope = a->negative_slope, top = a->max_value, th = a->threshold;
  int clip = isfinite(top);
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    float pos = th != 0.0f ? (v > th ? v : 0.0f) : cn_maxf(v, 0.0f);
    if (clip) pos = cn_minf(cn_maxf(pos, 0.0f), top);
    float neg = th != 0.0f ? cn_maxf(th - v, 0.0f) : cn_maxf(-v, 0.0f);
    x[i] = slope != 0.0f ? pos - slope * neg : pos;
  }
}

static void relu(const cn_activation *a, float *x, size_t n) {
  if (!cn_act_is_plain_relu(a)) {
    relu_general(a, x, n);
  } else if (isfinite(a->max_value)) {
    float top = a->max_value;
    for (size_t i = 0; i < n; i++) x[i] = cn_minf(cn_maxf(x[i], 0.0f), top);
  } else {
    for (size_t i = 0; i < n; i++) x[i] = cn_maxf(x[i], 0.0f);
  }
}

void cn_act_apply(const cn_activation *act, float *x, size_t n) {
  switch (act->kind) {
  case CN_ACT_RELU:
    relu(act, x, n);
    break;
  case CN_ACT_SIGMOID:
    for (size_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
    break;
  case CN_ACT_TANH:
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
    break;
  case CN_ACT_ELU:
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : act->alpha * expm1f(x[i]);
    break;
  case CN_ACT_SWISH:
    for (size_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
    break;
  case CN_ACT_HARD_SIGMOID: /* Keras 3: relu6(x + 3) / 6 */
    for (size_t i = 0; i < n; i++) x[i] = cn_minf(cn_maxf(x[i] + 3.0f, 0.0f), 6.0f) / 6.0f;
    break;
  default:
    break; /* linear; softmax is not elementwise (cn_softmax_axis) */
  }
}
