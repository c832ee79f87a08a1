/* Attribute structs <-> JSON for .cnm files, driven by one description per struct: each field's
 * name, offset, kind and valid range. The writer and the reader walk the same table, so adding a
 * field to an attrs struct means adding one line here (and nothing per op). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/native/internal.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"

typedef enum field_kind {
  F_INT,       /* int */
  F_I64,       /* int64_t */
  F_FLOAT,     /* float, finite */
  F_FLOAT_INF, /* float, finite or +-infinity (written "inf" / "-inf") */
  F_DOUBLE,    /* double, finite */
  F_ENUM,      /* an enum (int-sized), written by name */
  F_SHAPE,     /* cn_shape: an array of rank dims */
  F_INT_LIST,  /* int[CN_MAX_RANK], of the length held by the int field at count_offset */
  F_I64_LIST,  /* int64_t[CN_MAX_RANK], likewise */
  F_STRUCT,    /* a nested struct, written as an object */
  F_RUNTIME,   /* a pointer set only while a kernel runs: never written, refused when read */
} field_kind;

struct layout;

typedef struct field {
  const char *name;
  field_kind kind;
  size_t offset;
  double min, max;          /* numbers, list elements, shape dims */
  const char *const *names; /* F_ENUM: value names in value order, NULL-terminated */
  const struct layout *sub; /* F_STRUCT */
  size_t count_offset;      /* lists */
} field;

typedef struct layout {
  const char *name;
  size_t size;
  int n_fields;
  const field *fields;
} layout;

#define BIG 1073741824.0 /* 2^30: far above any real size, far below overflow */
#define INT(S, F, LO, HI)                                                                          \
  { #F, F_INT, offsetof(S, F), LO, HI, NULL, NULL, 0 }
#define I64(S, F, LO, HI)                                                                          \
  { #F, F_I64, offsetof(S, F), LO, HI, NULL, NULL, 0 }
#define FLT(S, F, LO, HI)                                                                          \
  { #F, F_FLOAT, offsetof(S, F), LO, HI, NULL, NULL, 0 }
#define FLT_INF(S, F)                                                                              \
  { #F, F_FLOAT_INF, offsetof(S, F), -INFINITY, INFINITY, NULL, NULL, 0 }
#define DBL(S, F, LO, HI)                                                                          \
  { #F, F_DOUBLE, offsetof(S, F), LO, HI, NULL, NULL, 0 }
#define ENUM(S, F, NAMES)                                                                          \
  { #F, F_ENUM, offsetof(S, F), 0, 0, NAMES, NULL, 0 }
#define SHAPE(S, F, LO, HI)                                                                        \
  { #F, F_SHAPE, offsetof(S, F), LO, HI, NULL, NULL, 0 }
#define INTS(S, F, N, LO, HI)                                                                      \
  { #F, F_INT_LIST, offsetof(S, F), LO, HI, NULL, NULL, offsetof(S, N) }
#define I64S(S, F, N, LO, HI)                                                                      \
  { #F, F_I64_LIST, offsetof(S, F), LO, HI, NULL, NULL, offsetof(S, N) }
#define SUB(S, F, L)                                                                               \
  { #F, F_STRUCT, offsetof(S, F), 0, 0, NULL, &L, 0 }
#define RUNTIME(S, F)                                                                              \
  { #F, F_RUNTIME, offsetof(S, F), 0, 0, NULL, NULL, 0 }
#define LAYOUT(S, FIELDS)                                                                          \
  { #S, sizeof(S), (int)(sizeof FIELDS / sizeof *FIELDS), FIELDS }
#define NAMES_OF(ARR) ((int)(sizeof ARR / sizeof *ARR) - 1)

/* Enums are stored as int. */
_Static_assert(sizeof(cn_act_kind) == sizeof(int) && sizeof(cn_padding) == sizeof(int) &&
                   sizeof(cn_merge_kind) == sizeof(int) && sizeof(cn_binary_kind) == sizeof(int) &&
                   sizeof(cn_unary_kind) == sizeof(int) && sizeof(cn_pad_mode) == sizeof(int) &&
                   sizeof(cn_resize_coord) == sizeof(int) && sizeof(cn_resize) == sizeof(int) &&
                   sizeof(cn_preprocess) == sizeof(int) && sizeof(cn_decoder) == sizeof(int),
               "enums are read and written as int");

/* ---- enum names (the names files hold; never renumber, only append) ---- */

static const char *const act_names[] = {"linear", "relu",  "sigmoid",      "tanh", "softmax",
                                        "elu",    "swish", "hard_sigmoid", NULL};
_Static_assert(NAMES_OF(act_names) == CN_ACT_COUNT, "act_names must name every activation");
static const char *const padding_names[] = {"valid", "same", NULL};
static const char *const merge_names[] = {"add",     "subtract", "multiply", "average",
                                          "maximum", "minimum",  NULL};
static const char *const binary_names[] = {
    "add",  "sub",        "mul",     "div",           "max",   "min",   "mean", "pow",
    "less", "less_equal", "greater", "greater_equal", "equal", "where", NULL};
_Static_assert(NAMES_OF(binary_names) == CN_BIN_COUNT, "binary_names must name every kind");
static const char *const const_operand_names[] = {"none", "last", "first", "second", NULL};
static const char *const unary_names[] = {
    "clip",     "hard_sigmoid", "hard_swish", "elu",    "leaky_relu", "relu", "sigmoid",    "tanh",
    "softplus", "neg",          "abs",        "sqrt",   "exp",        "log",  "reciprocal", "floor",
    "ceil",     "erf",          "identity",   "square", "affine",     "selu", NULL};
_Static_assert(NAMES_OF(unary_names) == CN_UN_COUNT, "unary_names must name every kind");
static const char *const pad_mode_names[] = {"constant", "reflect", "edge", "wrap", NULL};
static const char *const resize_mode_names[] = {"nearest", "linear", "cubic", NULL};
static const char *const coord_names[] = {
    "half_pixel",           "asymmetric",           "align_corners",      "pytorch_half_pixel",
    "tf_half_pixel_for_nn", "half_pixel_symmetric", "tf_crop_and_resize", NULL};
static const char *const nearest_names[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                            "ceil", NULL};
/* The command-line names (cn_resize_name, cn_preprocess_name); test_native checks they agree. */
static const char *const image_resize_names[] = {"nearest",      "bilinear",    "area",
                                                 "pil-bilinear", "tf-bilinear", NULL};
_Static_assert(NAMES_OF(image_resize_names) == CN_RESIZE_COUNT, "name every resize policy");
static const char *const preprocess_names[] = {"raw", "caffe", "tf", "torch", "unit", NULL};
static const char *const decoder_names[] = {"pil", "tf", NULL};
_Static_assert(NAMES_OF(decoder_names) == CN_DECODE_COUNT, "name every decoder");
_Static_assert(NAMES_OF(preprocess_names) == CN_PRE_COUNT, "name every preprocessing mode");

/* ---- the attrs structs ---- */

static const field activation_fields[] = {
    ENUM(cn_activation, kind, act_names), FLT(cn_activation, negative_slope, -BIG, BIG),
    FLT_INF(cn_activation, max_value),    FLT(cn_activation, threshold, -BIG, BIG),
    FLT(cn_activation, alpha, -BIG, BIG), INT(cn_activation, axis, -CN_MAX_RANK, CN_MAX_RANK),
    RUNTIME(cn_activation, residual),     RUNTIME(cn_activation, residual_of)};
static const layout activation_layout = LAYOUT(cn_activation, activation_fields);

/* zero unless an inference graph folded a ZeroPadding2D in (never in a saved model) */
static const field pads_fields[] = {
    INT(cn_conv_pads, top, 0, 65536), INT(cn_conv_pads, bottom, 0, 65536),
    INT(cn_conv_pads, left, 0, 65536), INT(cn_conv_pads, right, 0, 65536)};
static const layout pads_layout = LAYOUT(cn_conv_pads, pads_fields);

static const field input_fields[] = {SHAPE(cn_input_attrs, shape, 1, BIG)};
static const layout input_layout = LAYOUT(cn_input_attrs, input_fields);

static const field conv2d_fields[] = {
    INT(cn_conv2d_attrs, filters, 1, BIG),        INT(cn_conv2d_attrs, kh, 1, 65536),
    INT(cn_conv2d_attrs, kw, 1, 65536),           INT(cn_conv2d_attrs, sh, 1, 65536),
    INT(cn_conv2d_attrs, sw, 1, 65536),           INT(cn_conv2d_attrs, dh, 1, 65536),
    INT(cn_conv2d_attrs, dw, 1, 65536),           INT(cn_conv2d_attrs, groups, 1, BIG),
    INT(cn_conv2d_attrs, use_bias, 0, 1),         ENUM(cn_conv2d_attrs, padding, padding_names),
    SUB(cn_conv2d_attrs, act, activation_layout), SUB(cn_conv2d_attrs, pads, pads_layout)};
static const layout conv2d_layout = LAYOUT(cn_conv2d_attrs, conv2d_fields);

static const field depthwise_fields[] = {INT(cn_depthwise_attrs, kh, 1, 65536),
                                         INT(cn_depthwise_attrs, kw, 1, 65536),
                                         INT(cn_depthwise_attrs, sh, 1, 65536),
                                         INT(cn_depthwise_attrs, sw, 1, 65536),
                                         INT(cn_depthwise_attrs, dh, 1, 65536),
                                         INT(cn_depthwise_attrs, dw, 1, 65536),
                                         INT(cn_depthwise_attrs, depth_multiplier, 1, BIG),
                                         INT(cn_depthwise_attrs, use_bias, 0, 1),
                                         ENUM(cn_depthwise_attrs, padding, padding_names),
                                         SUB(cn_depthwise_attrs, act, activation_layout),
                                         SUB(cn_depthwise_attrs, pads, pads_layout)};
static const layout depthwise_layout = LAYOUT(cn_depthwise_attrs, depthwise_fields);

static const field zeropad_fields[] = {
    INT(cn_zeropad_attrs, top, 0, 65536), INT(cn_zeropad_attrs, bottom, 0, 65536),
    INT(cn_zeropad_attrs, left, 0, 65536), INT(cn_zeropad_attrs, right, 0, 65536)};
static const layout zeropad_layout = LAYOUT(cn_zeropad_attrs, zeropad_fields);

static const field pool_fields[] = {INT(cn_pool_attrs, ph, 1, 65536),
                                    INT(cn_pool_attrs, pw, 1, 65536),
                                    INT(cn_pool_attrs, sh, 1, 65536),
                                    INT(cn_pool_attrs, sw, 1, 65536),
                                    ENUM(cn_pool_attrs, padding, padding_names),
                                    INT(cn_pool_attrs, pad_top, 0, 65536),
                                    INT(cn_pool_attrs, pad_left, 0, 65536),
                                    INT(cn_pool_attrs, pad_bottom, 0, 65536),
                                    INT(cn_pool_attrs, pad_right, 0, 65536),
                                    INT(cn_pool_attrs, ceil_mode, 0, 1),
                                    INT(cn_pool_attrs, count_include_pad, 0, 1),
                                    INT(cn_pool_attrs, dh, 0, 65536),
                                    INT(cn_pool_attrs, dw, 0, 65536),
                                    INT(cn_pool_attrs, indices, 0, 1),
                                    INT(cn_pool_attrs, storage_order, 0, 1)};
static const layout pool_layout = LAYOUT(cn_pool_attrs, pool_fields);

static const field global_pool_fields[] = {INT(cn_global_pool_attrs, keepdims, 0, 1)};
static const layout global_pool_layout = LAYOUT(cn_global_pool_attrs, global_pool_fields);

static const field dense_fields[] = {INT(cn_dense_attrs, units, 1, BIG),
                                     INT(cn_dense_attrs, use_bias, 0, 1),
                                     SUB(cn_dense_attrs, act, activation_layout)};
static const layout dense_layout = LAYOUT(cn_dense_attrs, dense_fields);

static const field reshape_fields[] = {SHAPE(cn_reshape_attrs, target, -1, BIG)};
static const layout reshape_layout = LAYOUT(cn_reshape_attrs, reshape_fields);

static const field batchnorm_fields[] = {FLT(cn_batchnorm_attrs, epsilon, 0, 1e6),
                                         INT(cn_batchnorm_attrs, center, 0, 1),
                                         INT(cn_batchnorm_attrs, scale, 0, 1),
                                         INT(cn_batchnorm_attrs, axis, -CN_MAX_RANK, CN_MAX_RANK),
                                         FLT(cn_batchnorm_attrs, momentum, 0, 1),
                                         INT(cn_batchnorm_attrs, affine, 0, 1)};
static const layout batchnorm_layout = LAYOUT(cn_batchnorm_attrs, batchnorm_fields);

static const field dropout_fields[] = {FLT(cn_dropout_attrs, rate, 0, 1)};
static const layout dropout_layout = LAYOUT(cn_dropout_attrs, dropout_fields);

static const field concat_fields[] = {INT(cn_concat_attrs, axis, -CN_MAX_RANK, CN_MAX_RANK)};
static const layout concat_layout = LAYOUT(cn_concat_attrs, concat_fields);

static const field merge_fields[] = {ENUM(cn_merge_attrs, kind, merge_names)};
static const layout merge_layout = LAYOUT(cn_merge_attrs, merge_fields);

static const field transpose_fields[] = {INT(cn_transpose_attrs, rank, 0, CN_MAX_RANK),
                                         INTS(cn_transpose_attrs, perm, rank, 0, CN_MAX_RANK - 1)};
static const layout transpose_layout = LAYOUT(cn_transpose_attrs, transpose_fields);

static const field gemm_fields[] = {
    I64(cn_gemm_attrs, n, 1, BIG),        INT(cn_gemm_attrs, trans_b, 0, 1),
    FLT(cn_gemm_attrs, alpha, -BIG, BIG), FLT(cn_gemm_attrs, beta, -BIG, BIG),
    INT(cn_gemm_attrs, has_c, 0, 1),      SHAPE(cn_gemm_attrs, c_shape, 0, BIG)};
static const layout gemm_layout = LAYOUT(cn_gemm_attrs, gemm_fields);

static const field matmul_fields[] = {INT(cn_matmul_attrs, const_b, 0, 1),
                                      SHAPE(cn_matmul_attrs, b_shape, 0, BIG)};
static const layout matmul_layout = LAYOUT(cn_matmul_attrs, matmul_fields);

static const field binary_fields[] = {ENUM(cn_binary_attrs, kind, binary_names),
                                      ENUM(cn_binary_attrs, const_operand, const_operand_names),
                                      SHAPE(cn_binary_attrs, b_shape, 0, BIG)};
static const layout binary_layout = LAYOUT(cn_binary_attrs, binary_fields);

static const field unary_fields[] = {
    ENUM(cn_unary_attrs, kind, unary_names), FLT(cn_unary_attrs, alpha, -BIG, BIG),
    FLT(cn_unary_attrs, beta, -BIG, BIG), FLT_INF(cn_unary_attrs, lo), FLT_INF(cn_unary_attrs, hi)};
static const layout unary_layout = LAYOUT(cn_unary_attrs, unary_fields);

static const field prelu_fields[] = {SHAPE(cn_prelu_attrs, slope_shape, 0, BIG)};
static const layout prelu_layout = LAYOUT(cn_prelu_attrs, prelu_fields);

static const field softmax_fields[] = {INT(cn_softmax_attrs, axis, -CN_MAX_RANK, CN_MAX_RANK),
                                       INT(cn_softmax_attrs, log, 0, 1),
                                       INT(cn_softmax_attrs, flatten, 0, 1)};
static const layout softmax_layout = LAYOUT(cn_softmax_attrs, softmax_fields);

static const field lrn_fields[] = {
    INT(cn_lrn_attrs, size, 1, 65536), FLT(cn_lrn_attrs, alpha, -BIG, BIG),
    FLT(cn_lrn_attrs, beta, -BIG, BIG), FLT(cn_lrn_attrs, bias, -BIG, BIG)};
static const layout lrn_layout = LAYOUT(cn_lrn_attrs, lrn_fields);

static const field pad_fields[] = {
    ENUM(cn_pad_attrs, mode, pad_mode_names), FLT_INF(cn_pad_attrs, value),
    INT(cn_pad_attrs, rank, 0, CN_MAX_RANK), I64S(cn_pad_attrs, begin, rank, -BIG, BIG),
    I64S(cn_pad_attrs, end, rank, -BIG, BIG)};
static const layout pad_layout = LAYOUT(cn_pad_attrs, pad_fields);

static const field resize_fields[] = {ENUM(cn_resize_attrs, mode, resize_mode_names),
                                      ENUM(cn_resize_attrs, coord, coord_names),
                                      ENUM(cn_resize_attrs, nearest, nearest_names),
                                      FLT(cn_resize_attrs, scale_h, 0, 65536),
                                      FLT(cn_resize_attrs, scale_w, 0, 65536),
                                      I64(cn_resize_attrs, out_h, 0, BIG),
                                      I64(cn_resize_attrs, out_w, 0, BIG),
                                      INT(cn_resize_attrs, antialias, 0, 1),
                                      INT(cn_resize_attrs, exclude_outside, 0, 1),
                                      FLT(cn_resize_attrs, cubic_a, -BIG, BIG),
                                      FLT(cn_resize_attrs, roi_h0, -BIG, BIG),
                                      FLT(cn_resize_attrs, roi_w0, -BIG, BIG),
                                      FLT(cn_resize_attrs, roi_h1, -BIG, BIG),
                                      FLT(cn_resize_attrs, roi_w1, -BIG, BIG),
                                      FLT(cn_resize_attrs, extrapolation, -BIG, BIG)};
static const layout resize_layout = LAYOUT(cn_resize_attrs, resize_fields);

static const field conv_transpose_fields[] = {INT(cn_conv_transpose_attrs, filters, 1, BIG),
                                              INT(cn_conv_transpose_attrs, kh, 1, 65536),
                                              INT(cn_conv_transpose_attrs, kw, 1, 65536),
                                              INT(cn_conv_transpose_attrs, sh, 1, 65536),
                                              INT(cn_conv_transpose_attrs, sw, 1, 65536),
                                              INT(cn_conv_transpose_attrs, dh, 1, 65536),
                                              INT(cn_conv_transpose_attrs, dw, 1, 65536),
                                              INT(cn_conv_transpose_attrs, groups, 1, BIG),
                                              INT(cn_conv_transpose_attrs, use_bias, 0, 1),
                                              INT(cn_conv_transpose_attrs, pad_top, 0, 65536),
                                              INT(cn_conv_transpose_attrs, pad_left, 0, 65536),
                                              INT(cn_conv_transpose_attrs, pad_bottom, 0, 65536),
                                              INT(cn_conv_transpose_attrs, pad_right, 0, 65536),
                                              INT(cn_conv_transpose_attrs, out_pad_h, 0, 65536),
                                              INT(cn_conv_transpose_attrs, out_pad_w, 0, 65536)};
static const layout conv_transpose_layout = LAYOUT(cn_conv_transpose_attrs, conv_transpose_fields);
static const field conv_runtime_fields[] = {INT(cn_conv_runtime_attrs, transpose, 0, 1),
                                            INT(cn_conv_runtime_attrs, groups, 1, BIG),
                                            INT(cn_conv_runtime_attrs, kh, 1, 65536),
                                            INT(cn_conv_runtime_attrs, kw, 1, 65536),
                                            INT(cn_conv_runtime_attrs, sh, 1, 65536),
                                            INT(cn_conv_runtime_attrs, sw, 1, 65536),
                                            INT(cn_conv_runtime_attrs, dh, 1, 65536),
                                            INT(cn_conv_runtime_attrs, dw, 1, 65536),
                                            INT(cn_conv_runtime_attrs, pad_top, 0, 65536),
                                            INT(cn_conv_runtime_attrs, pad_left, 0, 65536),
                                            INT(cn_conv_runtime_attrs, pad_bottom, 0, 65536),
                                            INT(cn_conv_runtime_attrs, pad_right, 0, 65536),
                                            INT(cn_conv_runtime_attrs, out_pad_h, 0, 65536),
                                            INT(cn_conv_runtime_attrs, out_pad_w, 0, 65536)};
static const layout conv_runtime_layout = LAYOUT(cn_conv_runtime_attrs, conv_runtime_fields);

static const char *const loss_fn_names[] = {"mse",
                                            "mae",
                                            "binary_crossentropy_from_logits",
                                            "binary_crossentropy",
                                            "categorical_crossentropy_from_logits",
                                            "categorical_crossentropy",
                                            "sparse_categorical_crossentropy_from_logits",
                                            "sparse_categorical_crossentropy",
                                            "contrastive",
                                            "kl_gaussian",
                                            NULL};
_Static_assert(NAMES_OF(loss_fn_names) == CN_LOSS_FN_COUNT, "loss_fn_names must name every loss");
static const field loss_fields[] = {ENUM(cn_loss_attrs, fn, loss_fn_names),
                                    FLT(cn_loss_attrs, margin, 0, BIG)};
static const layout loss_layout = LAYOUT(cn_loss_attrs, loss_fields);

static const char *const reduce_names[] = {"sum", "mean", "max", "min", NULL};
static const field reduce_fields[] = {ENUM(cn_reduce_attrs, kind, reduce_names),
                                      INT(cn_reduce_attrs, axes, 1, (1 << CN_MAX_RANK) - 1),
                                      INT(cn_reduce_attrs, keepdims, 0, 1)};
static const layout reduce_layout = LAYOUT(cn_reduce_attrs, reduce_fields);

static const field sample_fields[] = {I64(cn_gaussian_sample_attrs, seed, 0, 9007199254740992.0)};
static const layout sample_layout = LAYOUT(cn_gaussian_sample_attrs, sample_fields);

static const field spec_fields[] = {
    INT(cn_input_spec, height, 0, 65536),     INT(cn_input_spec, width, 0, 65536),
    INT(cn_input_spec, channels, 0, 65536),   ENUM(cn_input_spec, resize, image_resize_names),
    DBL(cn_input_spec, crop, 0, 1),           ENUM(cn_input_spec, preprocess, preprocess_names),
    INT(cn_input_spec, channels_first, 0, 1), ENUM(cn_input_spec, decoder, decoder_names)};
static const layout spec_layout = LAYOUT(cn_input_spec, spec_fields);

/* Every op of cn_all_ops with attributes; an op with attrs_size 0 needs none. */
static const struct {
  const cn_op *op;
  const layout *attrs;
} op_layouts[] = {
    {&cn_op_input, &input_layout},
    {&cn_op_conv2d, &conv2d_layout},
    {&cn_op_depthwise, &depthwise_layout},
    {&cn_op_zeropad, &zeropad_layout},
    {&cn_op_maxpool, &pool_layout},
    {&cn_op_avgpool, &pool_layout},
    {&cn_op_global_avgpool, &global_pool_layout},
    {&cn_op_global_maxpool, &global_pool_layout},
    {&cn_op_dense, &dense_layout},
    {&cn_op_reshape, &reshape_layout},
    {&cn_op_dropout, &dropout_layout},
    {&cn_op_batchnorm, &batchnorm_layout},
    {&cn_op_activation, &activation_layout},
    {&cn_op_merge, &merge_layout},
    {&cn_op_concat, &concat_layout},
    {&cn_op_transpose, &transpose_layout},
    {&cn_op_binary, &binary_layout},
    {&cn_op_unary, &unary_layout},
    {&cn_op_prelu, &prelu_layout},
    {&cn_op_softmax, &softmax_layout},
    {&cn_op_lrn, &lrn_layout},
    {&cn_op_pad, &pad_layout},
    {&cn_op_gemm, &gemm_layout},
    {&cn_op_matmul, &matmul_layout},
    {&cn_op_resize, &resize_layout},
    {&cn_op_conv_transpose, &conv_transpose_layout},
    {&cn_op_loss, &loss_layout},
    {&cn_op_reduce, &reduce_layout},
    {&cn_op_gaussian_sample, &sample_layout},
    {&cn_op_conv_runtime, &conv_runtime_layout},
};

static const layout *layout_of(const cn_op *op) {
  for (size_t i = 0; i < sizeof op_layouts / sizeof *op_layouts; i++)
    if (op_layouts[i].op == op) return op_layouts[i].attrs;
  return NULL;
}

int cn_native_op_supported(const cn_op *op) {
  int registered = 0;
  for (const cn_op *const *o = cn_all_ops; *o; o++) registered |= *o == op;
  if (!registered) return 0;
  if (op->attrs_size == 0) return 1;
  const layout *l = layout_of(op);
  return l && l->size == op->attrs_size;
}

/* ---- completeness: a field added to an attrs struct but not to its table is caught ---- */

static size_t field_size(const field *f) {
  switch (f->kind) {
  case F_I64:
  case F_DOUBLE:
    return 8;
  case F_SHAPE:
    return sizeof(cn_shape);
  case F_INT_LIST:
    return CN_MAX_RANK * sizeof(int);
  case F_I64_LIST:
    return CN_MAX_RANK * sizeof(int64_t);
  case F_STRUCT:
    return f->sub->size;
  case F_RUNTIME:
    return sizeof(void *);
  default:
    return 4;
  }
}

static size_t layout_align(const layout *l);

static size_t field_align(const field *f) {
  if (f->kind == F_STRUCT) return layout_align(f->sub);
  if (f->kind == F_SHAPE) return _Alignof(cn_shape);
  if (f->kind == F_RUNTIME) return _Alignof(void *);
  return f->kind == F_I64 || f->kind == F_DOUBLE || f->kind == F_I64_LIST ? 8 : 4;
}

static size_t layout_align(const layout *l) {
  size_t align = 1;
  for (int i = 0; i < l->n_fields; i++)
    if (field_align(&l->fields[i]) > align) align = field_align(&l->fields[i]);
  return align;
}

/* Fields in offset order leave no gap that could hold a field (only alignment padding), and the
 * last one ends where the struct's tail padding begins. */
static cn_status check_layout(const layout *l) {
  size_t end = 0, align = 4;
  for (size_t at = 0; at < l->size;) {
    const field *next = NULL;
    for (int i = 0; i < l->n_fields; i++)
      if (l->fields[i].offset >= at && (!next || l->fields[i].offset < next->offset))
        next = &l->fields[i];
    if (!next) break;
    if (next->offset - end >= field_align(next))
      return cn_fail(CN_ERR_ARG, "%s: bytes %zu..%zu are not described (before '%s')", l->name, end,
                     next->offset, next->name);
    if (field_align(next) > align) align = field_align(next);
    end = next->offset + field_size(next);
    at = next->offset + 1;
  }
  if ((end + align - 1) / align * align != l->size)
    return cn_fail(CN_ERR_ARG, "%s: %zu bytes, the description covers %zu", l->name, l->size, end);
  return CN_OK;
}

cn_status cn_native_check_tables(void) {
  cn_status st = check_layout(&spec_layout);
  for (const cn_op *const *o = cn_all_ops; st == CN_OK && *o; o++) {
    if ((*o)->attrs_size == 0) continue;
    const layout *l = layout_of(*o);
    if (!l || l->size != (*o)->attrs_size)
      return cn_fail(CN_ERR_ARG, "op %s: no attrs description of its size", (*o)->type);
    st = check_layout(l);
  }
  return st;
}

/* ---- writing ---- */

static int enum_count(const field *f) {
  int n = 0;
  while (f->names[n]) n++;
  return n;
}

static cJSON *float_json(double v) {
  if (isinf(v)) return cJSON_CreateString(v > 0 ? "inf" : "-inf");
  return cJSON_CreateNumber(v);
}

static cJSON *shape_json(const cn_shape *s) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < s->rank && i < CN_MAX_RANK; i++)
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)s->dim[i]));
  return a;
}

static cJSON *list_json(const field *f, const char *base) {
  int n;
  memcpy(&n, base + f->count_offset, sizeof n);
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n && i < CN_MAX_RANK; i++) {
    double v;
    if (f->kind == F_INT_LIST) {
      int x;
      memcpy(&x, base + f->offset + i * sizeof x, sizeof x);
      v = x;
    } else {
      int64_t x;
      memcpy(&x, base + f->offset + i * sizeof x, sizeof x);
      v = (double)x;
    }
    cJSON_AddItemToArray(a, cJSON_CreateNumber(v));
  }
  return a;
}

static cJSON *struct_json(const layout *l, const void *data);

static cJSON *field_json(const field *f, const char *base) {
  const char *p = base + f->offset;
  int i;
  int64_t i64;
  float x;
  double d;
  switch (f->kind) {
  case F_INT:
    memcpy(&i, p, sizeof i);
    return cJSON_CreateNumber(i);
  case F_I64:
    memcpy(&i64, p, sizeof i64);
    return cJSON_CreateNumber((double)i64);
  case F_FLOAT:
  case F_FLOAT_INF:
    memcpy(&x, p, sizeof x);
    return float_json(x);
  case F_DOUBLE:
    memcpy(&d, p, sizeof d);
    return float_json(d);
  case F_ENUM:
    memcpy(&i, p, sizeof i);
    return i >= 0 && i < enum_count(f) ? cJSON_CreateString(f->names[i]) : NULL;
  case F_SHAPE:
    return shape_json((const cn_shape *)p);
  case F_INT_LIST:
  case F_I64_LIST:
    return list_json(f, base);
  case F_STRUCT:
    return struct_json(f->sub, p);
  case F_RUNTIME:
    return NULL;
  }
  return NULL;
}

static cJSON *struct_json(const layout *l, const void *data) {
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; o && i < l->n_fields; i++) {
    if (l->fields[i].kind == F_RUNTIME) continue;
    cJSON *v = field_json(&l->fields[i], data);
    if (!v) {
      cn_fail(CN_ERR_ARG, "%s.%s: value cannot be saved (out of range)", l->name,
              l->fields[i].name);
      cJSON_Delete(o);
      return NULL;
    }
    cJSON_AddItemToObject(o, l->fields[i].name, v);
  }
  return o;
}

cJSON *cn_native_attrs_to_json(const cn_op *op, const void *attrs) {
  if (!cn_native_op_supported(op)) {
    cn_fail(CN_ERR_UNSUPPORTED, "op %s cannot be saved in a .cnm file", op->type);
    return NULL;
  }
  if (op->attrs_size == 0) return cJSON_CreateObject();
  return struct_json(layout_of(op), attrs);
}

cJSON *cn_native_spec_to_json(const cn_input_spec *spec) {
  return struct_json(&spec_layout, spec);
}

/* ---- reading ---- */

static cn_status bad(const char *where, const char *fieldname, const char *what) {
  return cn_fail(CN_ERR_FORMAT, "%s: attribute '%s' %s", where, fieldname, what);
}

/* A number in [f->min, f->max]; for F_FLOAT_INF also "inf" / "-inf". */
static cn_status read_number(const field *f, const cJSON *v, const char *where, double *out) {
  if (f->kind == F_FLOAT_INF && cJSON_IsString(v)) {
    if (strcmp(v->valuestring, "inf") == 0) return *out = INFINITY, CN_OK;
    if (strcmp(v->valuestring, "-inf") == 0) return *out = -INFINITY, CN_OK;
  }
  if (!cJSON_IsNumber(v)) return bad(where, f->name, "is not a number");
  double d = v->valuedouble;
  if (!(d >= f->min && d <= f->max) || !isfinite(d))
    return cn_fail(CN_ERR_FORMAT, "%s: attribute '%s' = %g outside [%g, %g]", where, f->name, d,
                   f->min, f->max);
  int integral = f->kind == F_INT || f->kind == F_I64 || f->kind == F_SHAPE ||
                 f->kind == F_INT_LIST || f->kind == F_I64_LIST;
  if (integral && d != floor(d)) return bad(where, f->name, "is not a whole number");
  *out = d;
  return CN_OK;
}

static cn_status read_enum(const field *f, const cJSON *v, const char *where, int *out) {
  if (!cJSON_IsString(v)) return bad(where, f->name, "is not a name");
  for (int i = 0; f->names[i]; i++)
    if (strcmp(f->names[i], v->valuestring) == 0) return *out = i, CN_OK;
  return cn_fail(CN_ERR_FORMAT, "%s: attribute '%s': unknown value '%.64s'", where, f->name,
                 v->valuestring);
}

/* An array of at most max numbers, each checked against the field's range. */
static cn_status read_array(const field *f, const cJSON *v, const char *where, int max,
                            double *values, int *n) {
  if (!cJSON_IsArray(v)) return bad(where, f->name, "is not an array");
  *n = 0;
  for (const cJSON *e = v->child; e; e = e->next) {
    if (*n >= max) return bad(where, f->name, "has too many values");
    cn_status st = read_number(f, e, where, &values[(*n)++]);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

static cn_status read_shape(const field *f, const cJSON *v, const char *where, cn_shape *s) {
  double dims[CN_MAX_RANK];
  int n;
  cn_status st = read_array(f, v, where, CN_MAX_RANK, dims, &n);
  if (st != CN_OK) return st;
  s->rank = n;
  for (int i = 0; i < n; i++) s->dim[i] = (int64_t)dims[i];
  return CN_OK;
}

/* The list's length must equal its count field, read before it (the tables list counts first). */
static cn_status read_list(const field *f, const cJSON *v, const char *where, char *base) {
  double values[CN_MAX_RANK];
  int n, count;
  cn_status st = read_array(f, v, where, CN_MAX_RANK, values, &n);
  if (st != CN_OK) return st;
  memcpy(&count, base + f->count_offset, sizeof count);
  if (n != count) return bad(where, f->name, "does not have as many values as its count");
  for (int i = 0; i < n; i++) {
    if (f->kind == F_INT_LIST) {
      int x = (int)values[i];
      memcpy(base + f->offset + i * sizeof x, &x, sizeof x);
    } else {
      int64_t x = (int64_t)values[i];
      memcpy(base + f->offset + i * sizeof x, &x, sizeof x);
    }
  }
  return CN_OK;
}

static cn_status struct_from_json(const layout *l, const cJSON *json, const char *where,
                                  void *data);

static cn_status read_field(const field *f, const cJSON *v, const char *where, char *base) {
  char *p = base + f->offset;
  double d = 0;
  cn_status st = CN_OK;
  switch (f->kind) {
  case F_INT:
  case F_I64:
  case F_FLOAT:
  case F_FLOAT_INF:
  case F_DOUBLE:
    st = read_number(f, v, where, &d);
    if (st != CN_OK) return st;
    if (f->kind == F_INT) *(int *)p = (int)d;
    if (f->kind == F_I64) *(int64_t *)p = (int64_t)d;
    if (f->kind == F_FLOAT || f->kind == F_FLOAT_INF) *(float *)p = (float)d;
    if (f->kind == F_DOUBLE) *(double *)p = d;
    return CN_OK;
  case F_ENUM:
    return read_enum(f, v, where, (int *)p);
  case F_SHAPE:
    return read_shape(f, v, where, (cn_shape *)p);
  case F_INT_LIST:
  case F_I64_LIST:
    return read_list(f, v, where, base);
  case F_STRUCT: {
    char inner[4608];
    snprintf(inner, sizeof inner, "%s.%s", where, f->name);
    return struct_from_json(f->sub, v, inner, p);
  }
  case F_RUNTIME:
    return bad(where, f->name, "is not an attribute a file can hold");
  }
  return bad(where, f->name, "has an unknown kind");
}

static const field *find_field(const layout *l, const char *name) {
  for (int i = 0; i < l->n_fields; i++)
    if (strcmp(l->fields[i].name, name) == 0) return &l->fields[i];
  return NULL;
}

/* An absent field is 0, which must be a valid value of it. */
static cn_status check_absent(const field *f, const char *where) {
  int zero_ok = f->kind == F_ENUM || f->kind == F_SHAPE || f->kind == F_STRUCT ||
                f->kind == F_INT_LIST || f->kind == F_I64_LIST || (f->min <= 0 && f->max >= 0);
  return zero_ok ? CN_OK : bad(where, f->name, "is missing");
}

static cn_status struct_from_json(const layout *l, const cJSON *json, const char *where,
                                  void *data) {
  if (!cJSON_IsObject(json))
    return cn_fail(CN_ERR_FORMAT, "%s: attributes are not an object", where);
  for (const cJSON *v = json->child; v; v = v->next) {
    if (!find_field(l, v->string))
      return cn_fail(CN_ERR_FORMAT, "%s: unknown attribute '%.64s'", where, v->string);
    for (const cJSON *w = json->child; w != v; w = w->next)
      if (strcmp(w->string, v->string) == 0)
        return cn_fail(CN_ERR_FORMAT, "%s: attribute '%.64s' given twice", where, v->string);
  }
  memset(data, 0, l->size);
  for (int i = 0; i < l->n_fields; i++) {
    const field *f = &l->fields[i];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, f->name);
    cn_status st = v ? read_field(f, v, where, data) : check_absent(f, where);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

cn_status cn_native_attrs_from_json(const cn_op *op, const cJSON *json, const char *where,
                                    void *attrs) {
  if (!cn_native_op_supported(op))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: op %s cannot be read from a .cnm file", where,
                   op->type);
  if (op->attrs_size == 0) {
    if (json && (!cJSON_IsObject(json) || json->child))
      return cn_fail(CN_ERR_FORMAT, "%s: %s takes no attributes", where, op->type);
    return CN_OK;
  }
  static const cJSON empty = {.type = cJSON_Object};
  return struct_from_json(layout_of(op), json ? json : &empty, where, attrs);
}

cn_status cn_native_spec_from_json(const cJSON *json, const char *where, cn_input_spec *spec) {
  return struct_from_json(&spec_layout, json, where, spec);
}
