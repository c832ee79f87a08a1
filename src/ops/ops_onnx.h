/* Operators with ONNX semantics on convnet's layout. The engine is NHWC; the ONNX importer
 * converts NCHW models once, at import, and maps each ONNX operator onto these ops. The ops are
 * layout-agnostic where possible: they take explicit axes, permutations and per-axis pads, and the
 * importer translates ONNX's NCHW axes into the engine's.
 *
 * Conventions shared by every op here:
 * - "Per-sample axes" are the axes of cn_node.shape (the batch dimension excluded), numbered from
 * 0. An ONNX axis a >= 1 on a model whose batch is ONNX's first dimension is per-sample axis a - 1.
 * - "Full shape" includes the batch dimension first (as ONNX writes shapes).
 * - Constant operands are parameters (cn_node_add_param) whose shape is given in the attributes,
 *   so that infer can declare them; the importer fills them after cn_graph_alloc_params.
 * - Per-sample ranks are at most CN_MAX_RANK - 1. */
#ifndef CN_OPS_OPS_ONNX_H
#define CN_OPS_OPS_ONNX_H

#include "ops/ops.h"

/* ---- Transpose ------------------------------------------------------------------------------ */

/* out.dim[i] = in.dim[perm[i]] over the per-sample axes (rank = the input's per-sample rank; the
 * batch stays first). An ONNX perm p over full axes needs p[0] == 0; then perm[i] = p[i+1] - 1. */
typedef struct cn_transpose_attrs {
  int rank;
  int perm[CN_MAX_RANK];
} cn_transpose_attrs;

/* ---- Gemm and MatMul ------------------------------------------------------------------------ */

/* Y = alpha * A * op(B) + beta * C, ONNX Gemm with A the activation of per-sample shape (k): the
 * batch is A's first (M) dimension. Parameters: "B" of shape (k, n), or (n, k) when trans_b (as
 * ONNX stores it); "C" when has_c, of shape c_shape (rank 0, 1 or 2) unidirectionally
 * broadcastable to (M, n): (), (1), (n), (1, 1), (1, n). transA is not supported (A's first dim is
 * the batch). Output per-sample shape (n). */
typedef struct cn_gemm_attrs {
  int64_t n;
  int trans_b;
  float alpha, beta;
  int has_c;
  cn_shape c_shape;
} cn_gemm_attrs;

/* ONNX MatMul (numpy matmul) on full shapes.
 * - const_b: one input (A, the activation) and parameter "B" of full ONNX shape b_shape (rank >=
 * 1). A of per-sample rank 1, full (N, k): rows are samples, B must be (k) or (k, n). A of
 * per-sample rank >= 2, full (N, ..., m, k): B (k) or (..., k, n) with B's leading dims
 *   broadcasting against A's (right-aligned); B may not have more dims than A, and a B dim aligned
 *   with the batch must be 1.
 * - otherwise: two activations of equal per-sample rank >= 2, (N, ..., m, k) and (N, ..., k, n);
 *   the dims between batch and the matrix dims broadcast.
 * A 1-D B drops the last output dim, as numpy does. */
typedef struct cn_matmul_attrs {
  int const_b;
  cn_shape b_shape;
} cn_matmul_attrs;

/* ---- elementwise ---------------------------------------------------------------------------- */

typedef enum cn_binary_kind {
  CN_BIN_ADD, /* Add, and Sum of n inputs */
  CN_BIN_SUB,
  CN_BIN_MUL,
  CN_BIN_DIV,
  CN_BIN_MAX,  /* Max of n inputs */
  CN_BIN_MIN,  /* Min of n inputs */
  CN_BIN_MEAN, /* Mean of n inputs */
  CN_BIN_POW,
  /* Comparisons: 1.0f where true, 0.0f where false (the engine holds ONNX's bool tensors as
   * floats); exactly two operands, zero gradient. */
  CN_BIN_LESS,
  CN_BIN_LESS_EQUAL,
  CN_BIN_GREATER,
  CN_BIN_GREATER_EQUAL,
  CN_BIN_EQUAL,
  CN_BIN_WHERE, /* ONNX Where(cond, a, b): cond != 0 ? a : b; exactly three operands */
  CN_BIN_COUNT
} cn_binary_kind;

typedef enum cn_const_operand {
  CN_CONST_NONE,  /* every operand is an input (activation) */
  CN_CONST_LAST,  /* parameter "B" is the last operand: A op B */
  CN_CONST_FIRST, /* parameter "B" is the first operand: B op A (Sub, Div, Pow are not symmetric) */
  CN_CONST_SECOND, /* parameter "B" is the second of three operands: Where(cond, B, b) */
} cn_const_operand;

/* Elementwise ops with numpy broadcasting over full shapes (ONNX multidirectional broadcasting).
 * Activations all have the batch first, so they must have equal per-sample rank (the importer
 * inserts a Reshape when ONNX ranks differ); per-sample dims broadcast (1 against n).
 * The constant "B" has ONNX full shape b_shape, right-aligned against the activations' full shape:
 * its rank may not exceed theirs, and a dim aligned with the batch must be 1. Sub, Div, Pow and
 * the comparisons take exactly two operands (counting B), Where three; Add, Mul, Max, Min, Mean
 * fold any number left to right. Div is IEEE float division (no integer semantics). Backward:
 * Max/Min ties give the gradient to the first operand holding the value; Pow's exponent gradient
 * is 0 where the base is <= 0; Where passes it to the operand it picked, never to cond. */
typedef struct cn_binary_attrs {
  cn_binary_kind kind;
  cn_const_operand const_operand;
  cn_shape b_shape;
} cn_binary_attrs;

typedef enum cn_unary_kind {
  CN_UN_CLIP,         /* min(max(x, lo), hi); lo = -INFINITY / hi = INFINITY when absent */
  CN_UN_HARD_SIGMOID, /* max(0, min(1, alpha * x + beta)), ONNX defaults 0.2, 0.5 */
  CN_UN_HARD_SWISH,   /* x * max(0, min(1, x / 6 + 1/2)) */
  CN_UN_ELU,          /* x > 0 ? x : alpha * (exp(x) - 1) */
  CN_UN_LEAKY_RELU,   /* x >= 0 ? x : alpha * x */
  CN_UN_RELU,
  CN_UN_SIGMOID,
  CN_UN_TANH,
  CN_UN_SOFTPLUS, /* log(1 + exp(x)) */
  CN_UN_NEG,
  CN_UN_ABS,
  CN_UN_SQRT,
  CN_UN_EXP,
  CN_UN_LOG,
  CN_UN_RECIPROCAL,
  CN_UN_FLOOR,
  CN_UN_CEIL,
  CN_UN_ERF,
  CN_UN_IDENTITY,
  CN_UN_SQUARE,
  CN_UN_AFFINE, /* alpha * x + beta */
  CN_UN_SELU,   /* beta * (x > 0 ? x : alpha * (exp(x) - 1)): alpha, gamma of ONNX Selu */
  CN_UN_COUNT
} cn_unary_kind;

/* Elementwise functions of one input (any shape); out may share the input's buffer. */
typedef struct cn_unary_attrs {
  cn_unary_kind kind;
  float alpha, beta; /* HARD_SIGMOID, ELU, LEAKY_RELU, AFFINE, SELU */
  float lo, hi;      /* CLIP */
} cn_unary_attrs;

/* PRelu: x >= 0 ? x : slope * x, with parameter "slope" of ONNX full shape slope_shape broadcast
 * unidirectionally onto the input (right-aligned; a dim aligned with the batch must be 1). Per
 * channel in NHWC is slope_shape (c) or (1, 1, c); the importer converts ONNX's (c, 1, 1). At
 * x = 0 the input's gradient is the slope. */
typedef struct cn_prelu_attrs {
  cn_shape slope_shape;
} cn_prelu_attrs;

/* Softmax / LogSoftmax. axis counts the batch as 0 (ONNX style; negative from the end; it may
 * not be the batch). flatten = 0: opset >= 13, normalise along that one axis. flatten = 1:
 * opset < 13, normalise over all axes from `axis` to the end (the input coerced to 2-D at axis);
 * axis must then be >= 1. A set of trailing axes is layout-independent: NCHW axis 1 flattened is
 * NHWC axis 1 flattened. */
typedef struct cn_softmax_attrs {
  int axis;
  int log;
  int flatten;
} cn_softmax_attrs;

/* LRN over the last (channel) axis, ONNX formula: sq = sum of x^2 over channels
 * [c - floor((size-1)/2), c + ceil((size-1)/2)]; y = x / (bias + alpha / size * sq)^beta. */
typedef struct cn_lrn_attrs {
  int size;
  float alpha, beta, bias; /* ONNX defaults 1e-4, 0.75, 1 */
} cn_lrn_attrs;

/* ---- Pad ------------------------------------------------------------------------------------ */

typedef enum cn_pad_mode {
  CN_PADMODE_CONSTANT,
  CN_PADMODE_REFLECT, /* mirror without repeating the edge; needs pad < dim */
  CN_PADMODE_EDGE,    /* repeat the edge; needs dim > 0 */
  CN_PADMODE_WRAP     /* cyclic (opset 19) */
} cn_pad_mode;

/* Pads begin[i] before and end[i] after per-sample axis i (rank = the input's per-sample rank).
 * Negative pads crop, as ONNX allows. */
typedef struct cn_pad_attrs {
  cn_pad_mode mode;
  float value; /* CONSTANT */
  int rank;
  int64_t begin[CN_MAX_RANK], end[CN_MAX_RANK];
} cn_pad_attrs;

/* ---- Resize / Upsample ---------------------------------------------------------------------- */

typedef enum cn_resize_mode {
  CN_RESIZE_MODE_NEAREST,
  CN_RESIZE_MODE_LINEAR,
  CN_RESIZE_MODE_CUBIC /* Keys cubic with coefficient cubic_a */
} cn_resize_mode;

typedef enum cn_resize_coord {
  CN_COORD_HALF_PIXEL,
  CN_COORD_ASYMMETRIC, /* Upsample (opset 7-9) uses this */
  CN_COORD_ALIGN_CORNERS,
  CN_COORD_PYTORCH_HALF_PIXEL,
  CN_COORD_TF_HALF_PIXEL_FOR_NN,
  CN_COORD_HALF_PIXEL_SYMMETRIC,
  CN_COORD_TF_CROP_AND_RESIZE /* the roi_* box; outside the image: extrapolation */
} cn_resize_coord;

typedef enum cn_resize_nearest {
  CN_NEAREST_ROUND_PREFER_FLOOR, /* ONNX default */
  CN_NEAREST_ROUND_PREFER_CEIL,
  CN_NEAREST_FLOOR,
  CN_NEAREST_CEIL
} cn_resize_nearest;

/* Resize of an NHWC (h, w, c) input along h and w (ONNX's N and C scales must be 1).
 * Output size: out_h/out_w when > 0 (ONNX "sizes"), else floor(in * scale) (ONNX "scales").
 * The coordinate transform uses scale_h/scale_w when > 0, else out / in, as ONNX does (with
 * sizes given, ONNX derives the scale from them). Nearest and linear (bilinear, the input
 * coordinate clamped to the image) have fast paths; cubic, antialias and tf_crop_and_resize take
 * ONNX's general separable form: per axis, each output index weighs the n source indices nearest
 * its coordinate (edge-clamped; exclude_outside drops and renormalises those outside), with
 * coefficients from the mode, stretched by 1 / scale when antialias downsamples. */
typedef struct cn_resize_attrs {
  cn_resize_mode mode;
  cn_resize_coord coord;
  cn_resize_nearest nearest;
  float scale_h, scale_w;
  int64_t out_h, out_w;
  int antialias, exclude_outside;
  float cubic_a;                        /* CUBIC: ONNX cubic_coeff_a (default -0.75) */
  float roi_h0, roi_w0, roi_h1, roi_w1; /* TF_CROP_AND_RESIZE: box as fractions of (in - 1) */
  float extrapolation;                  /* TF_CROP_AND_RESIZE: value outside the image */
} cn_resize_attrs;

/* ---- ConvTranspose -------------------------------------------------------------------------- */

/* ConvTranspose on NHWC (h, w, in). Parameters: "kernel" of shape (kh, kw, filters/groups, in)
 * (Keras Conv2DTranspose layout; from ONNX's (in, filters/groups, kh, kw) transpose with
 * perm (2, 3, 1, 0)), and "bias" (filters) when use_bias.
 * out_h = sh * (h - 1) + out_pad_h + (kh - 1) * dh + 1 - pad_top - pad_bottom (same for w).
 * The importer resolves auto_pad and output_shape into explicit pads and output padding. */
typedef struct cn_conv_transpose_attrs {
  int filters, kh, kw, sh, sw, dh, dw, groups, use_bias;
  int pad_top, pad_left, pad_bottom, pad_right;
  int out_pad_h, out_pad_w;
} cn_conv_transpose_attrs;

/* Keras's Conv2DTranspose geometry along one axis (input length in, kernel k, stride s, dilation
 * d, padding, output_padding or -1 for none) as explicit pads before and after and output padding;
 * -1 when the output would be empty or too large. */
int cn_conv_transpose_keras_axis(int64_t in, int k, int s, int d, cn_padding padding,
                                 int output_padding, int *before, int *after, int *out_pad);

/* ---- Conv / ConvTranspose with computed weights -------------------------------------------- */

/* ONNX Conv (transpose = 0) or ConvTranspose (1) whose weights are inputs, not parameters:
 * inputs x of per-sample shape (n, c, h, w) (a graph that runs as one engine sample: the whole
 * NCHW tensor per sample), W (m, c/groups, kh, kw) for Conv or (c, m/groups, kh, kw) for
 * ConvTranspose, and optionally B (m). Output (n, m, oh, ow): Conv oh = (h + pads - ((kh - 1) *
 * dh + 1)) / sh + 1; ConvTranspose oh = sh * (h - 1) + out_pad_h + (kh - 1) * dh + 1 - pads.
 * Plain loops (the weights change every run, so nothing is repacked); no backward. */
typedef struct cn_conv_runtime_attrs {
  int transpose, groups, kh, kw, sh, sw, dh, dw;
  int pad_top, pad_left, pad_bottom, pad_right;
  int out_pad_h, out_pad_w;
} cn_conv_runtime_attrs;

/* ---- the operators -------------------------------------------------------------------------- */

extern const cn_op cn_op_transpose;      /* Transpose, cn_transpose_attrs */
extern const cn_op cn_op_gemm;           /* Gemm, cn_gemm_attrs */
extern const cn_op cn_op_matmul;         /* MatMul, cn_matmul_attrs */
extern const cn_op cn_op_binary;         /* Add/Sub/Mul/Div/Max/Min/Sum/Mean/Pow, cn_binary_attrs */
extern const cn_op cn_op_unary;          /* Clip/HardSigmoid/HardSwish/Elu/..., cn_unary_attrs */
extern const cn_op cn_op_prelu;          /* PRelu, cn_prelu_attrs */
extern const cn_op cn_op_softmax;        /* Softmax / LogSoftmax, cn_softmax_attrs */
extern const cn_op cn_op_lrn;            /* LRN, cn_lrn_attrs */
extern const cn_op cn_op_pad;            /* Pad, cn_pad_attrs */
extern const cn_op cn_op_resize;         /* Resize / Upsample, cn_resize_attrs */
extern const cn_op cn_op_conv_transpose; /* ConvTranspose, cn_conv_transpose_attrs */
extern const cn_op cn_op_conv_runtime; /* Conv/ConvTranspose on computed W, cn_conv_runtime_attrs */

/* Pooling with ONNX attributes uses cn_op_maxpool / cn_op_avgpool with the extra fields at the end
 * of cn_pool_attrs (ops.h): explicit pads, ceil_mode, count_include_pad, dilations. */

#endif
