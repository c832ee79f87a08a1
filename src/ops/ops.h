/* Operators: the op table entry every operator provides and the attribute struct of each.
 * One file per operator in src/ops/ implements infer (shape rule + parameter declaration) and
 * forward (calling the hot loops in src/kernels/). */
#ifndef CN_OPS_OPS_H
#define CN_OPS_OPS_H

#include <math.h>

#include "core/graph.h"

/* What forward gets besides its tensors. */
typedef struct cn_exec {
  int batch;
  int threads;
  float *scratch; /* op->scratch(...) floats, 64-byte aligned, contents undefined */
  /* Training (zero at inference). A training forward uses batch statistics in a trainable
   * BatchNormalization (and moves its moving statistics by its momentum) and drops units in
   * Dropout; a node whose `trainable` is 0 runs exactly as at inference. */
  int training;
  uint64_t seed; /* per step and node: stochastic ops draw from (seed, element index) only */
  float *saved;  /* op->saved(...) floats this node keeps from its training forward for backward */
} cn_exec;

typedef struct cn_op {
  const char *type;  /* Keras class name, e.g. "Conv2D" */
  size_t attrs_size; /* bytes of the attribute struct cn_graph_add copies */
  /* Sets node->shape from the inputs' per-sample shapes (g->nodes[node->inputs[i]].shape),
   * validates attributes and declares parameters with cn_node_add_param, in Keras order.
   * Failures name the layer: cn_fail(CN_ERR_SHAPE, "%s: ...", node->name). */
  cn_status (*infer)(cn_graph *g, cn_node *node);
  /* Computes out from in[0..n_inputs-1]; shapes include the batch dimension. May not fail:
   * everything that can go wrong is checked by infer. */
  void (*forward)(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex);
  /* Workspace floats forward needs for this batch (NULL: none). Keep it bounded (tile im2col)
   * so that large models fit: VGG16 at 224 must peak below weights + 150 MB. */
  size_t (*scratch)(const cn_graph *g, const cn_node *node, int batch);
  /* 1: out may be the same buffer as in[0] (elementwise ops, reshapes). */
  int inplace;
  /* Optional: drop node->cache (called when weights change and when the graph is freed). */
  void (*release)(cn_node *node);

  /* ---- training (src/train/trainer.c calls these; ops without backward cannot be trained
   * through) ---- */
  /* Accumulates (+=) gradients. in, out: the tensors of the training forward (distinct buffers);
   * dout: d loss / d out. din[i].data: where to add d loss / d in[i], or NULL when input i needs
   * none. dparams[k]: where to add d loss / d node->params[k], or NULL (frozen, or state such as
   * moving statistics). ex->saved holds what the training forward stored, ex->scratch
   * op->backward_scratch floats. Results must be bitwise identical for any ex->threads:
   * partition reductions over the batch in fixed chunks, never by thread. */
  void (*backward)(cn_node *node, const cn_tensor *in, const cn_tensor *out, const cn_tensor *dout,
                   const cn_tensor *din, float *const *dparams, const cn_exec *ex);
  /* Floats the training forward keeps for backward in ex->saved (NULL: none). */
  size_t (*saved)(const cn_graph *g, const cn_node *node, int batch);
  /* Workspace floats backward needs (NULL: none). */
  size_t (*backward_scratch)(const cn_graph *g, const cn_node *node, int batch);
} cn_op;

/* ---- attributes ---------------------------------------------------------------------------- */

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
} cn_activation;

/* Plain activations; use these rather than filling the struct by hand. */
cn_activation cn_act_linear(void);
cn_activation cn_act_relu(void);
cn_activation cn_act_relu6(void);
cn_activation cn_act_softmax(void);
cn_activation cn_act_simple(cn_act_kind kind); /* sigmoid, tanh, swish, hard_sigmoid */
/* Applies an elementwise activation in place to n values (not SOFTMAX). */
void cn_act_apply(const cn_activation *act, float *x, size_t n);
/* Parses a Keras activation name ("relu", "relu6", "softmax", "linear", ...). */
cn_status cn_act_parse(const char *name, cn_activation *out);
/* Backward of an activation (src/ops/activation_grad.c): dpre[i] += dout[i] * f'(pre[i]) for n
 * values, the derivative taken from out (= f(pre)) when that determines it, else from pre.
 * pre_or_null may be NULL unless cn_act_needs_pre(act). SOFTMAX: the n values are one softmax
 * row (call it per row): dpre += out * (dout - sum(dout * out)). dpre must not alias dout. */
void cn_act_backward(const cn_activation *act, const float *pre_or_null, const float *out,
                     const float *dout, float *dpre, size_t n);
/* 1 when f' cannot be recovered from out alone (swish, ELU with alpha < 0, ReLU with a negative
 * slope or a negative threshold without max_value): keep the pre-activation for backward. */
int cn_act_needs_pre(const cn_activation *act);

typedef enum cn_padding { CN_PAD_VALID, CN_PAD_SAME } cn_padding;

/* TensorFlow's padding rule: output size and the (asymmetric, extra at the end) leading pad. */
int64_t cn_conv_out_size(int64_t in, int k, int stride, int dilation, cn_padding pad);
int cn_conv_pad_before(int64_t in, int k, int stride, int dilation, cn_padding pad);

typedef struct cn_input_attrs {
  cn_shape shape; /* per sample */
} cn_input_attrs;

/* Conv2D: kernel (kh, kw, in/groups, filters) HWIO, bias (filters). */
typedef struct cn_conv2d_attrs {
  int filters, kh, kw, sh, sw, dh, dw, groups, use_bias;
  cn_padding padding;
  cn_activation act;
} cn_conv2d_attrs;

/* DepthwiseConv2D: depthwise_kernel (kh, kw, in, depth_multiplier), bias (in * multiplier). */
typedef struct cn_depthwise_attrs {
  int kh, kw, sh, sw, dh, dw, depth_multiplier, use_bias;
  cn_padding padding;
  cn_activation act;
} cn_depthwise_attrs;

typedef struct cn_zeropad_attrs {
  int top, bottom, left, right;
} cn_zeropad_attrs;

/* MaxPooling2D / AveragePooling2D; average excludes padding, as TensorFlow does. */
typedef struct cn_pool_attrs {
  int ph, pw, sh, sw;
  cn_padding padding;
  /* ONNX extensions; all 0 keeps the Keras behaviour above. Explicit pads need CN_PAD_VALID;
   * max ignores padded cells. ceil_mode: output ceil((in + pads - span) / s) + 1, dropping a last
   * window that would start in the end padding. count_include_pad: average divides by the window
   * cells inside the padded input (not only the valid ones). dh, dw: dilations (0 means 1). */
  int pad_top, pad_left, pad_bottom, pad_right;
  int ceil_mode, count_include_pad;
  int dh, dw;
} cn_pool_attrs;

typedef struct cn_global_pool_attrs {
  int keepdims;
} cn_global_pool_attrs;

/* Dense over the last axis: kernel (in, units), bias (units). */
typedef struct cn_dense_attrs {
  int units, use_bias;
  cn_activation act;
} cn_dense_attrs;

/* Reshape to a per-sample target shape; one dimension may be -1. */
typedef struct cn_reshape_attrs {
  cn_shape target;
} cn_reshape_attrs;

/* BatchNormalization (inference): gamma if scale, beta if center, moving_mean, moving_variance. */
typedef struct cn_batchnorm_attrs {
  float epsilon;
  int center, scale;
  int axis; /* Keras style including batch: -1 = last */
  /* Training: moving = moving * momentum + batch * (1 - momentum), with the biased batch
   * variance as Keras does; 0 is read as Keras's default 0.99. */
  float momentum;
} cn_batchnorm_attrs;

typedef struct cn_dropout_attrs {
  float rate;
} cn_dropout_attrs;

typedef struct cn_concat_attrs {
  int axis; /* Keras style including batch: -1 = last */
} cn_concat_attrs;

typedef enum cn_merge_kind {
  CN_MERGE_ADD,
  CN_MERGE_SUBTRACT,
  CN_MERGE_MULTIPLY,
  CN_MERGE_AVERAGE,
  CN_MERGE_MAXIMUM,
  CN_MERGE_MINIMUM
} cn_merge_kind;

/* Add, Subtract, ... of two or more inputs of one shape. */
typedef struct cn_merge_attrs {
  cn_merge_kind kind;
} cn_merge_attrs;

/* ---- the operators ------------------------------------------------------------------------ */

extern const cn_op cn_op_input;          /* InputLayer, cn_input_attrs */
extern const cn_op cn_op_conv2d;         /* Conv2D, cn_conv2d_attrs */
extern const cn_op cn_op_depthwise;      /* DepthwiseConv2D, cn_depthwise_attrs */
extern const cn_op cn_op_zeropad;        /* ZeroPadding2D, cn_zeropad_attrs */
extern const cn_op cn_op_maxpool;        /* MaxPooling2D, cn_pool_attrs */
extern const cn_op cn_op_avgpool;        /* AveragePooling2D, cn_pool_attrs */
extern const cn_op cn_op_global_avgpool; /* GlobalAveragePooling2D, cn_global_pool_attrs */
extern const cn_op cn_op_global_maxpool; /* GlobalMaxPooling2D, cn_global_pool_attrs */
extern const cn_op cn_op_dense;          /* Dense, cn_dense_attrs */
extern const cn_op cn_op_flatten;        /* Flatten, no attrs */
extern const cn_op cn_op_reshape;        /* Reshape, cn_reshape_attrs */
extern const cn_op cn_op_dropout;        /* Dropout (identity at inference), cn_dropout_attrs */
extern const cn_op cn_op_batchnorm;      /* BatchNormalization, cn_batchnorm_attrs */
extern const cn_op cn_op_activation; /* Activation / ReLU / LeakyReLU / Softmax, cn_activation */
extern const cn_op cn_op_merge;      /* Add / Subtract / Multiply / ..., cn_merge_attrs */
extern const cn_op cn_op_concat;     /* Concatenate, cn_concat_attrs */

/* Every operator, NULL-terminated (for tests and the registry). */
extern const cn_op *const cn_all_ops[];

#endif
