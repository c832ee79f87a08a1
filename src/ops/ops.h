/* src/ops: one file per operator (shape rule, forward, backward, parameters). Calls core/ and
 * kernels/.
 *
 * Operators: the op table entry every operator provides and the attribute struct of each.
 * One file per operator in src/ops/ implements infer (shape rule + parameter declaration) and
 * forward (calling the hot loops in src/kernels/). */
#ifndef CN_OPS_OPS_H
#define CN_OPS_OPS_H

#include <math.h>

#include "core/graph.h"
#include "core/op.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"

/* ---- attributes ---------------------------------------------------------------------------- */

/* Parses a Keras activation name ("relu", "relu6", "softmax", "linear", ...). */
cn_status cn_act_parse(const char *name, cn_activation *out);

typedef struct cn_input_attrs {
  cn_shape shape; /* per sample */
} cn_input_attrs;

/* Conv2D: kernel (kh, kw, in/groups, filters) HWIO, bias (filters). */
/* Zero padding added around a convolution's input before a VALID window: only the inference
 * graph sets it, when it folds a ZeroPadding2D into the convolution after it
 * (cn_graph_fold_padding), so that the padded copy is never made. */
typedef struct cn_conv_pads {
  int top, bottom, left, right;
} cn_conv_pads;

typedef struct cn_conv2d_attrs {
  int filters, kh, kw, sh, sw, dh, dw, groups, use_bias;
  cn_padding padding;
  cn_activation act;
  cn_conv_pads pads;
} cn_conv2d_attrs;

/* DepthwiseConv2D: depthwise_kernel (kh, kw, in, depth_multiplier), bias (in * multiplier). */
typedef struct cn_depthwise_attrs {
  int kh, kw, sh, sw, dh, dw, depth_multiplier, use_bias;
  cn_padding padding;
  cn_activation act;
  cn_conv_pads pads; /* as Conv2D's */
} cn_depthwise_attrs;

/* A DepthwiseConv2D folded into the 1x1 Conv2D (or Conv2D+Add) that reads it (inference graphs
 * only, cn_graph_fold_depthwise): the convolution's attributes first (so the node reads as a
 * Conv2D), then the depthwise layer's. Params: kernel, [bias], depthwise_kernel, [bias], and
 * with `expands` the expanding convolution's kernel, [bias]. */
typedef struct cn_dw_conv_attrs {
  cn_conv2d_attrs conv;
  cn_depthwise_attrs dw;
  /* 1 when the 1x1 Conv2D that fed the depthwise layer (expanding its input: MobileNetV2's
   * blocks) is folded in too, in fp32 graphs: its kernel and bias follow the depthwise ones. */
  int expands;
  cn_conv2d_attrs expand;
} cn_dw_conv_attrs;

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
  /* MaxPool only, ONNX's Indices output: 1 makes the node output, per window, the flat index of
   * its maximum in the ONNX (N, C, H, W) input (the engine batch is N), as floats (exact below
   * 2^24): (n * C + c) * H * W + h * W + w, or h + w * H when storage_order is 1 (column major).
   * Ties keep the first in row order; no gradient flows through indices. */
  int indices, storage_order;
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
  /* 1: a per-channel scale and shift and nothing more (the ONNX importer's Mul/Add/Sub/Div by a
   * constant): no statistics, the inference formula in training too, gamma and beta train. */
  int affine;
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

/* ---- helpers the ops share ------------------------------------------------------------------ */

/* A Keras axis (counting the batch dimension, negative from the end) as an index into the
 * per-sample shape of rank sample_rank, or -1 when it is out of range or the batch axis. */
int cn_axis_resolve(int axis, int sample_rank);
/* Validates an activation for a layer whose per-sample output has rank sample_rank. When
 * last_axis_only, softmax must run over the last axis (fused activations of Conv2D, Dense). */
cn_status cn_act_check(const char *layer, const cn_activation *act, int sample_rank,
                       int last_axis_only);
/* Validates a window's sizes and computes it for the per-sample input (h, w, c); fails naming the
 * layer when the input rank is wrong or the output would be empty. Batch is set to 1. */
cn_status cn_window_infer(const char *layer, const cn_shape *in, int kh, int kw, int sh, int sw,
                          int dh, int dw, cn_padding padding, cn_window *out);

/* The fused-activation forward of Conv2D, DepthwiseConv2D and Dense (src/ops/conv2d.c): a
 * training forward whose activation needs the pre-activation for backward runs the layer linear,
 * copies the result to ex->saved and then applies the activation (the same bits as fused). */
typedef void (*cn_fused_run)(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                             const cn_activation *act);
void cn_fused_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                      const cn_activation *act, cn_fused_run run);
/* The cn_conv_grad of such a layer's backward: its kernel is node->params[0], its bias (when
 * use_bias) params[1], and the pre-activation what cn_fused_forward saved. */
cn_conv_grad cn_fused_grad(const cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex, const cn_activation *act, int use_bias);
/* The op->saved of such a layer: its output size when the activation needs the pre-activation. */
size_t cn_fused_saved(const cn_graph *g, const cn_node *node, int batch, const cn_activation *act);

/* Weights derived from node->params[0] (src/ops/derived.c): a Winograd transform, a bf16 packing.
 * Returns the cached `bytes` of the given kind, derived again (derive(node, ctx, dst, threads))
 * when the kernel buffer or its values changed since (values are re-checked on every run, or
 * only when the graph's weights_version moved where ex->versioned_weights); NULL when memory is
 * short (the caller then runs without). Up to two derived forms per node at a time (a third
 * replaces the older one); op->release is cn_derived_release. */
enum { CN_DERIVED_WINOGRAD = 1, CN_DERIVED_BF16, CN_DERIVED_PANELS, CN_DERIVED_PANELS_EXPAND };
typedef void (*cn_derive_fn)(const cn_node *node, const void *ctx, void *dst, int threads);
const void *cn_derived_weights(cn_node *node, int kind, size_t bytes, cn_derive_fn derive,
                               const void *ctx, const cn_exec *ex);
/* The same derived from node->params[param] (a fused node's second kernel). */
const void *cn_derived_weights_of(cn_node *node, int param, int kind, size_t bytes,
                                  cn_derive_fn derive, const void *ctx, const cn_exec *ex);
void cn_derived_release(cn_node *node);
/* Bytes of the derived weights the graph's nodes hold now. */
size_t cn_derived_bytes(const cn_graph *g);

/* The bf16 packing of a Conv2D or Dense kernel seen as a (k x n) matrix (HWIO flattened; Dense is
 * (in, units)), for CN_PRECISION_BF16; NULL when memory is short. */
const cn_bf16_matrix *cn_bf16_kernel(cn_node *node, int64_t k, int64_t n, const cn_exec *ex,
                                     cn_bf16_matrix *out);

/* The fp32 panels (cn_panels_pack) of a Conv2D or Dense kernel seen as a (k x n) matrix; NULL
 * when memory is short. */
const cn_panels *cn_panels_kernel(cn_node *node, int64_t k, int64_t n, const cn_exec *ex,
                                  cn_panels *out);
/* The same of node->params[param], cached as `kind`. */
const cn_panels *cn_panels_kernel_of(cn_node *node, int param, int kind, int64_t k, int64_t n,
                                     const cn_exec *ex, cn_panels *out);

/* ---- the operators ------------------------------------------------------------------------ */

extern const cn_op cn_op_input;      /* InputLayer, cn_input_attrs */
extern const cn_op cn_op_conv2d;     /* Conv2D, cn_conv2d_attrs */
extern const cn_op cn_op_conv2d_add; /* Conv2D + residual Add, cn_conv2d_attrs (folding only) */
extern const cn_op cn_op_depthwise;  /* DepthwiseConv2D, cn_depthwise_attrs */
extern const cn_op cn_op_dw_conv;    /* Depthwise + 1x1 Conv2D, cn_dw_conv_attrs (folding only) */
extern const cn_op cn_op_zeropad;    /* ZeroPadding2D, cn_zeropad_attrs */
extern const cn_op cn_op_maxpool;    /* MaxPooling2D, cn_pool_attrs */
extern const cn_op cn_op_avgpool;    /* AveragePooling2D, cn_pool_attrs */
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

/* Whether a 1x1 unpadded stride-1 Conv2D over `channels` runs its fp32 product on the panels or
 * conv_small's tiles (not Winograd, OpenBLAS or im2col), row by row. */
int cn_conv2d_pointwise_tiled(const cn_conv2d_attrs *a, int64_t channels);
/* A DepthwiseConv2D's window over an input of shape `in` (batch included), its pads included. */
cn_window cn_depthwise_window(const cn_depthwise_attrs *a, const cn_shape *in);

/* Every operator, NULL-terminated (for tests and the registry). */
extern const cn_op *const cn_all_ops[];

#endif
