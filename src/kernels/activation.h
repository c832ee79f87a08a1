/* Activation functions and their derivatives: the pure math that the Activation layer and the
 * activations fused into Conv2D, DepthwiseConv2D and Dense share. */
#ifndef CN_KERNELS_ACTIVATION_H
#define CN_KERNELS_ACTIVATION_H

#include <math.h>
#include <stddef.h>

/* max/min that compile to one vector instruction (fmaxf is a libm call without -ffast-math);
 * a NaN in `a` propagates, as TensorFlow's relu does. */
static inline float cn_maxf(float a, float b) {
  return a < b ? b : a;
}
static inline float cn_minf(float a, float b) {
  return a > b ? b : a;
}

typedef enum cn_act_kind {
  CN_ACT_LINEAR,
  CN_ACT_RELU, /* with negative_slope, max_value, threshold: Keras ReLU / LeakyReLU / relu6 */
  CN_ACT_SIGMOID,
  CN_ACT_TANH,
  CN_ACT_SOFTMAX, /* over `axis` (Keras style: -1 last) */
  CN_ACT_ELU,
  CN_ACT_SWISH,
  CN_ACT_HARD_SIGMOID,
  CN_ACT_COUNT
} cn_act_kind;

typedef struct cn_activation {
  cn_act_kind kind;
  float negative_slope; /* RELU: slope below threshold (LeakyReLU alpha); 0 for plain relu */
  float max_value;      /* RELU: clamp above (6 for relu6); INFINITY for none */
  float threshold;      /* RELU: 0 normally */
  float alpha;          /* ELU alpha */
  int axis;             /* SOFTMAX axis, Keras style including batch: -1 = last */
  /* Set only for one call of a kernel (a convolution with a residual sum fused in, never in a
   * layer's attributes): before the activation, every output row y gets the matching row of
   * `residual`, a tensor of the output's shape whose start pairs with `residual_of`, the
   * output's start. */
  const float *residual, *residual_of;
} cn_activation;

/* Plain activations; use these rather than filling the struct by hand. */
/* Whether an epilogue with this activation and no bias leaves its input as it is. */
static inline int cn_act_is_identity(const cn_activation *a) {
  return a->kind == CN_ACT_LINEAR && !a->residual;
}

/* Whether it is a plain ReLU (relu, relu6: no negative slope, no threshold), which kernels may
 * apply in registers (cn_vclamp in simd.h). */
static inline int cn_act_is_plain_relu(const cn_activation *a) {
  return a->kind == CN_ACT_RELU && a->negative_slope == 0.0f && a->threshold == 0.0f;
}

cn_activation cn_act_linear(void);
cn_activation cn_act_relu(void);
cn_activation cn_act_relu6(void);
cn_activation cn_act_softmax(void);
cn_activation cn_act_simple(cn_act_kind kind); /* sigmoid, tanh, swish, hard_sigmoid */
/* Applies an elementwise activation in place to n values (not SOFTMAX). */
void cn_act_apply(const cn_activation *act, float *x, size_t n);
/* Backward of an activation (src/kernels/activation_grad.c): dpre[i] += dout[i] * f'(pre[i]) for n
 * values, the derivative taken from out (= f(pre)) when that determines it, else from pre.
 * pre_or_null may be NULL unless cn_act_needs_pre(act). SOFTMAX: the n values are one softmax
 * row (call it per row): dpre += out * (dout - sum(dout * out)). dpre must not alias dout. */
void cn_act_backward(const cn_activation *act, const float *pre_or_null, const float *out,
                     const float *dout, float *dpre, size_t n);
/* 1 when f' cannot be recovered from out alone (swish, ELU with alpha < 0, ReLU with a negative
 * slope or a negative threshold without max_value): keep the pre-activation for backward. */
int cn_act_needs_pre(const cn_activation *act);

#endif
