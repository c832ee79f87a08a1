/* Derivatives of the activations of cn_act_apply, shared by the Activation op and the fused
 * activations of Conv2D, DepthwiseConv2D and Dense. The derivative is read from the output when
 * it determines it (so that the training forward need not keep the pre-activation); at kinks the
 * choice follows TensorFlow: relu passes no gradient at 0, leaky relu passes its slope. */
#include "kernels/activation.h"

int cn_act_needs_pre(const cn_activation *act) {
  switch (act->kind) {
  case CN_ACT_SWISH:
    return 1;
  case CN_ACT_ELU:
    return act->alpha < 0;
  case CN_ACT_RELU:
    /* Otherwise out > 0 means "above the threshold" and out < 0 "below it". */
    return act->negative_slope < 0 || (act->threshold < 0 && !isfinite(act->max_value));
  default:
    return 0;
  }
}

/* Keras's relu(x, negative_slope, max_value, threshold) differentiated at the input. */
static float relu_slope_at_input(const cn_activation *a, float x) {
  int clip = isfinite(a->max_value);
  int pass = x > a->threshold && (!clip || (x > 0.0f && x < a->max_value));
  return (pass ? 1.0f : 0.0f) + (x <= a->threshold ? a->negative_slope : 0.0f);
}

/* The same from the output, valid when !cn_act_needs_pre. */
static float relu_slope_at_output(const cn_activation *a, float y) {
  if (y > 0.0f) return isfinite(a->max_value) && y >= a->max_value ? 0.0f : 1.0f;
  if (y < 0.0f) return a->negative_slope;
  /* y == 0: at the threshold (slope), or clipped to 0 between a negative threshold and 0. */
  return a->threshold < 0 ? 0.0f : a->negative_slope;
}

static void relu_backward(const cn_activation *a, const float *pre, const float *out,
                          const float *dout, float *dpre, size_t n) {
  if (pre) {
    for (size_t i = 0; i < n; i++) dpre[i] += dout[i] * relu_slope_at_input(a, pre[i]);
    return;
  }
  if (cn_act_is_plain_relu(a)) { /* relu, relu6: the common case */
    float top = a->max_value;
    for (size_t i = 0; i < n; i++) dpre[i] += out[i] > 0.0f && out[i] < top ? dout[i] : 0.0f;
    return;
  }
  for (size_t i = 0; i < n; i++) dpre[i] += dout[i] * relu_slope_at_output(a, out[i]);
}

static void softmax_backward(const float *out, const float *dout, float *dpre, size_t n) {
  float dot = 0;
  for (size_t i = 0; i < n; i++) dot += dout[i] * out[i];
  for (size_t i = 0; i < n; i++) dpre[i] += out[i] * (dout[i] - dot);
}

static void elu_backward(const cn_activation *a, const float *pre, const float *out,
                         const float *dout, float *dpre, size_t n) {
  if (pre)
    for (size_t i = 0; i < n; i++)
      dpre[i] += dout[i] * (pre[i] > 0 ? 1.0f : a->alpha * expf(pre[i]));
  else
    for (size_t i = 0; i < n; i++) dpre[i] += dout[i] * (out[i] > 0 ? 1.0f : out[i] + a->alpha);
}

static void swish_backward(const float *pre, const float *dout, float *dpre, size_t n) {
  if (!pre) return; /* a caller bug (cn_act_needs_pre); never read past the buffers */
  for (size_t i = 0; i < n; i++) {
    float s = 1.0f / (1.0f + expf(-pre[i]));
    dpre[i] += dout[i] * (s + pre[i] * s * (1.0f - s));
  }
}

void cn_act_backward(const cn_activation *act, const float *pre_or_null, const float *out,
                     const float *dout, float *dpre, size_t n) {
  const float *pre = pre_or_null;
  switch (act->kind) {
  case CN_ACT_RELU:
    relu_backward(act, pre, out, dout, dpre, n);
    break;
  case CN_ACT_SIGMOID:
    for (size_t i = 0; i < n; i++) dpre[i] += dout[i] * out[i] * (1.0f - out[i]);
    break;
  case CN_ACT_TANH:
    for (size_t i = 0; i < n; i++) dpre[i] += dout[i] * (1.0f - out[i] * out[i]);
    break;
  case CN_ACT_SOFTMAX:
    softmax_backward(out, dout, dpre, n);
    break;
  case CN_ACT_ELU:
    elu_backward(act, pre, out, dout, dpre, n);
    break;
  case CN_ACT_SWISH:
    swish_backward(pre, dout, dpre, n);
    break;
  case CN_ACT_HARD_SIGMOID: /* relu6(x + 3) / 6: slope 1/6 strictly inside (0, 1) */
    for (size_t i = 0; i < n; i++)
      dpre[i] += out[i] > 0.0f && out[i] < 1.0f ? dout[i] * (1.0f / 6.0f) : 0.0f;
    break;
  default: /* linear */
    for (size_t i = 0; i < n; i++) dpre[i] += dout[i];
    break;
  }
}
