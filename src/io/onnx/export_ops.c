/* ONNX export of each engine operator (opset 13). Spatial ops (convolutions, pooling, resize,
 * LRN) read their input in NCHW; BatchNormalization any layout with the channels at axis 1;
 * elementwise ops, Pad and Concat whatever layout their first input has (axes and constants
 * permuted to match); Flatten, Reshape, Dense, Gemm and MatMul the engine's own order, so that
 * flattening reproduces Keras's NHWC element order. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/export_internal.h"
#include "io/onnx/internal.h"
#include "kernels/kernels.h"
#include "ops/ops_math.h"

typedef cn_status (*ex_fn)(cn_ex_ctx *x, int i);

static const cn_node *node_at(cn_ex_ctx *x, int i) {
  return &x->g->nodes[i];
}

static const cn_shape *input_shape(cn_ex_ctx *x, int i, int k) {
  return &x->g->nodes[x->g->nodes[i].inputs[k]].shape;
}

/* The node just added (NULL after a failure: attribute helpers then do nothing). */
static Onnx__NodeProto *last_node(cn_ex_ctx *x) {
  return x->st == CN_OK && x->n_nodes ? x->nodes[x->n_nodes - 1] : NULL;
}

/* NCHW: the perm of a rank-4 NHWC value with channels first. */
static void nchw(int *perm) {
  cn_ex_perm_channels_first(4, 3, perm);
}

/* An image input (h, w, c) in NCHW; refuses other ranks. */
static const char *image_input(cn_ex_ctx *x, int i, int *perm) {
  if (input_shape(x, i, 0)->rank != 3) {
    cn_ex_refuse(x, i, "expects a (height, width, channels) input");
    return "";
  }
  nchw(perm);
  return cn_ex_input(x, node_at(x, i)->inputs[0], perm);
}

/* The ONNX axis of an activation's softmax on a value of full rank r held with perm. */
static int act_axis(const cn_activation *a, int r, const int *perm) {
  int axis = a->axis < 0 ? a->axis + r : a->axis;
  cn_ex_value v = {.rank = r};
  memcpy(v.perm, perm, (size_t)r * sizeof *perm);
  return cn_ex_axis(&v, axis);
}

/* ---- activations --------------------------------------------------------------------------- */

static const char *clip(cn_ex_ctx *x, const char *in, float lo, float hi, const char *base) {
  const char *ins[3] = {in, isfinite(lo) ? cn_ex_scalar(x, base, lo) : "",
                        isfinite(hi) ? cn_ex_scalar(x, base, hi) : ""};
  const char *out = cn_ex_name(x, base, "Clip");
  cn_ex_node(x, "Clip", ins, isfinite(hi) ? 3 : 2, out);
  return out;
}

/* Keras's relu(x, negative_slope, max_value, threshold), as src/ops/activation.c computes it:
 * pos = x above the threshold (else 0), clipped to [0, max]; minus slope * max(th - x, 0). */
static const char *relu(cn_ex_ctx *x, const cn_activation *a, const char *in, const char *base) {
  float slope = a->negative_slope, th = a->threshold, top = a->max_value;
  if (th == 0.0f && slope == 0.0f)
    return isfinite(top) ? clip(x, in, 0.0f, top, base) : cn_ex_unary(x, "Relu", in, base);
  if (th == 0.0f && !isfinite(top)) {
    const char *out = cn_ex_unary(x, "LeakyRelu", in, base);
    cn_ex_attr_float(x, last_node(x), "alpha", slope);
    return out;
  }
  const char *pos = cn_ex_unary(x, "Relu", in, base);
  if (th != 0.0f) {
    const char *above = cn_ex_binary(x, "Greater", in, cn_ex_scalar(x, base, th), base);
    const char *ins[3] = {above, in, cn_ex_scalar(x, base, 0.0f)};
    pos = cn_ex_name(x, base, "Where");
    cn_ex_node(x, "Where", ins, 3, pos);
  }
  if (isfinite(top)) pos = clip(x, pos, 0.0f, top, base);
  if (slope == 0.0f) return pos;
  const char *below = cn_ex_binary(x, "Sub", cn_ex_scalar(x, base, th), in, base);
  const char *neg = cn_ex_unary(x, "Relu", below, base);
  const char *scaled = cn_ex_binary(x, "Mul", neg, cn_ex_scalar(x, base, slope), base);
  return cn_ex_binary(x, "Sub", pos, scaled, base);
}

static const char *hard_sigmoid(cn_ex_ctx *x, const char *in, float alpha, float beta,
                                const char *base) {
  const char *out = cn_ex_unary(x, "HardSigmoid", in, base);
  Onnx__NodeProto *n = last_node(x);
  cn_ex_attr_float(x, n, "alpha", alpha);
  cn_ex_attr_float(x, n, "beta", beta);
  return out;
}

/* alpha * x + beta: Mul then Add. */
static const char *affine(cn_ex_ctx *x, const char *in, float alpha, float beta, const char *base) {
  const char *scaled = cn_ex_binary(x, "Mul", in, cn_ex_scalar(x, base, alpha), base);
  return cn_ex_binary(x, "Add", scaled, cn_ex_scalar(x, base, beta), base);
}

const char *cn_ex_activation(cn_ex_ctx *x, const cn_activation *a, const char *in, int softmax_axis,
                             const char *base) {
  Onnx__NodeProto *n;
  const char *out;
  switch (a->kind) {
  case CN_ACT_LINEAR:
    return in;
  case CN_ACT_RELU:
    return relu(x, a, in, base);
  case CN_ACT_SIGMOID:
    return cn_ex_unary(x, "Sigmoid", in, base);
  case CN_ACT_TANH:
    return cn_ex_unary(x, "Tanh", in, base);
  case CN_ACT_SOFTMAX:
    out = cn_ex_unary(x, "Softmax", in, base);
    cn_ex_attr_int(x, last_node(x), "axis", softmax_axis);
    return out;
  case CN_ACT_ELU:
    out = cn_ex_unary(x, "Elu", in, base);
    n = last_node(x);
    cn_ex_attr_float(x, n, "alpha", a->alpha);
    return out;
  case CN_ACT_SWISH:
    return cn_ex_binary(x, "Mul", in, cn_ex_unary(x, "Sigmoid", in, base), base);
  case CN_ACT_HARD_SIGMOID: /* Keras 3: relu6(x + 3) / 6 */
    return hard_sigmoid(x, in, 1.0f / 6.0f, 0.5f, base);
  default:
    if (x->st == CN_OK)
      x->st = cn_fail(CN_ERR_UNSUPPORTED, "%s: activation kind %d cannot be exported", base,
                      (int)a->kind);
    return "";
  }
}

/* ---- weights ------------------------------------------------------------------------------- */

/* (kh, kw, A, B) -> (B, A, kh, kw): HWIO -> OIHW for Conv, (kh, kw, out, in) -> (in, out, kh, kw)
 * for ConvTranspose. */
static const float *swap_kernel(cn_ex_ctx *x, const cn_param *p) {
  int64_t kh = p->shape.dim[0], kw = p->shape.dim[1], na = p->shape.dim[2], nb = p->shape.dim[3];
  float *out = cn_ex_alloc(x, (size_t)(kh * kw * na * nb) * sizeof *out);
  if (!out) return NULL;
  for (int64_t y = 0; y < kh; y++)
    for (int64_t c = 0; c < kw; c++)
      for (int64_t a = 0; a < na; a++)
        for (int64_t b = 0; b < nb; b++)
          out[((b * na + a) * kh + y) * kw + c] = p->data[((y * kw + c) * na + a) * nb + b];
  return out;
}

/* Depthwise (kh, kw, c, m) -> grouped Conv weight (c * m, 1, kh, kw). */
static const float *depthwise_kernel(cn_ex_ctx *x, const cn_param *p) {
  int64_t kh = p->shape.dim[0], kw = p->shape.dim[1], ch = p->shape.dim[2], m = p->shape.dim[3];
  float *out = cn_ex_alloc(x, (size_t)(kh * kw * ch * m) * sizeof *out);
  if (!out) return NULL;
  for (int64_t y = 0; y < kh; y++)
    for (int64_t c = 0; c < kw; c++)
      for (int64_t k = 0; k < ch; k++)
        for (int64_t j = 0; j < m; j++)
          out[((k * m + j) * kh + y) * kw + c] = p->data[((y * kw + c) * ch + k) * m + j];
  return out;
}

/* A parameter of ONNX full shape `shape` (right-aligned against rank r) padded to rank r and
 * permuted like the activation it meets (dst axis i = padded axis perm[i]). */
static const char *permuted_operand(cn_ex_ctx *x, const char *base, const cn_param *p,
                                    const cn_shape *shape, int r, const int *perm) {
  int64_t pd[CN_MAX_RANK], od[CN_MAX_RANK], stride[CN_MAX_RANK];
  int lead = r - shape->rank;
  for (int k = 0; k < r; k++) pd[k] = k < lead ? 1 : shape->dim[k - lead];
  for (int k = r - 1, s = 1; k >= 0; k--) {
    stride[k] = s;
    s *= (int)pd[k];
  }
  for (int k = 0; k < r; k++) od[k] = pd[perm[k]];
  int64_t n = cn_shape_numel(shape);
  float *out = cn_ex_alloc(x, (size_t)n * sizeof *out);
  if (!out) return "";
  int64_t idx[CN_MAX_RANK] = {0};
  for (int64_t e = 0; e < n; e++) {
    int64_t src = 0;
    for (int k = 0; k < r; k++) src += idx[k] * stride[perm[k]];
    out[e] = p->data[src];
    for (int k = r - 1; k >= 0 && ++idx[k] == od[k]; k--) idx[k] = 0;
  }
  return cn_ex_init_float(x, base, r, od, out);
}

static const char *param_init(cn_ex_ctx *x, const cn_node *n, int k) {
  const cn_param *p = &n->params[k];
  return cn_ex_init_float(x, n->name, p->shape.rank, p->shape.dim, p->data);
}

/* ---- convolutions -------------------------------------------------------------------------- */

/* TensorFlow's SAME split (extra at the end) or none. */
static void tf_pads(int64_t in, int k, int s, int d, cn_padding pad, int64_t *before,
                    int64_t *after) {
  *before = *after = 0;
  if (pad != CN_PAD_SAME) return;
  int64_t out = cn_conv_out_size(in, k, s, d, CN_PAD_SAME);
  int64_t total = (out - 1) * s + (int64_t)(k - 1) * d + 1 - in;
  if (total < 0) total = 0;
  *before = total / 2;
  *after = total - total / 2;
}

static void window_attrs(cn_ex_ctx *x, Onnx__NodeProto *c, int kh, int kw, int sh, int sw,
                         const int64_t *pads) {
  cn_ex_attr_ints(x, c, "kernel_shape", (int64_t[]){kh, kw}, 2);
  cn_ex_attr_ints(x, c, "strides", (int64_t[]){sh, sw}, 2);
  cn_ex_attr_ints(x, c, "pads", pads, 4);
}

/* Conv with weight w (OIHW), optional bias, then the fused activation; output NCHW. */
static cn_status emit_conv(cn_ex_ctx *x, int i, const float *w, int64_t out_c, int64_t in_c, int kh,
                           int kw, int sh, int sw, int dh, int dw, int groups, cn_padding padding,
                           const cn_activation *act) {
  const cn_node *n = node_at(x, i);
  const cn_shape *s = input_shape(x, i, 0);
  int perm[4];
  const char *in = image_input(x, i, perm);
  if (x->st != CN_OK || !w) return x->st;
  int64_t pads[4];
  tf_pads(s->dim[0], kh, sh, dh, padding, &pads[0], &pads[2]);
  tf_pads(s->dim[1], kw, sw, dw, padding, &pads[1], &pads[3]);
  int64_t wd[4] = {out_c, in_c, kh, kw};
  int has_bias = n->n_params > 1;
  const char *ins[3] = {in, cn_ex_init_float(x, n->name, 4, wd, w),
                        has_bias ? param_init(x, n, 1) : ""};
  const char *out = cn_ex_name(x, n->name, "Conv");
  Onnx__NodeProto *c = cn_ex_node(x, "Conv", ins, has_bias ? 3 : 2, out);
  window_attrs(x, c, kh, kw, sh, sw, pads);
  cn_ex_attr_ints(x, c, "dilations", (int64_t[]){dh, dw}, 2);
  cn_ex_attr_int(x, c, "group", groups);
  cn_ex_set(x, i, cn_ex_activation(x, act, out, act_axis(act, 4, perm), n->name), perm);
  return x->st;
}

static cn_status ex_conv2d(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_conv2d_attrs *a = n->attrs;
  const cn_param *k = &n->params[0];
  return emit_conv(x, i, swap_kernel(x, k), k->shape.dim[3], k->shape.dim[2], a->kh, a->kw, a->sh,
                   a->sw, a->dh, a->dw, a->groups > 0 ? a->groups : 1, a->padding, &a->act);
}

static cn_status ex_depthwise(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_depthwise_attrs *a = n->attrs;
  const cn_param *k = &n->params[0];
  int64_t ch = k->shape.dim[2], m = k->shape.dim[3];
  return emit_conv(x, i, depthwise_kernel(x, k), ch * m, 1, a->kh, a->kw, a->sh, a->sw, a->dh,
                   a->dw, (int)ch, a->padding, &a->act);
}

static cn_status ex_conv_transpose(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_conv_transpose_attrs *a = n->attrs;
  if (a->pad_top < 0 || a->pad_left < 0 || a->pad_bottom < 0 || a->pad_right < 0)
    return cn_ex_refuse(x, i, "negative pads");
  int perm[4];
  const char *in = image_input(x, i, perm);
  const cn_param *k = &n->params[0];
  int64_t wd[4] = {k->shape.dim[3], k->shape.dim[2], a->kh, a->kw};
  const char *ins[3] = {in, cn_ex_init_float(x, n->name, 4, wd, swap_kernel(x, k)),
                        a->use_bias ? param_init(x, n, 1) : ""};
  const char *out = cn_ex_name(x, n->name, "ConvTranspose");
  Onnx__NodeProto *c = cn_ex_node(x, "ConvTranspose", ins, a->use_bias ? 3 : 2, out);
  int64_t pads[4] = {a->pad_top, a->pad_left, a->pad_bottom, a->pad_right};
  window_attrs(x, c, a->kh, a->kw, a->sh, a->sw, pads);
  cn_ex_attr_ints(x, c, "dilations", (int64_t[]){a->dh, a->dw}, 2);
  cn_ex_attr_int(x, c, "group", a->groups > 0 ? a->groups : 1);
  if (a->out_pad_h || a->out_pad_w)
    cn_ex_attr_ints(x, c, "output_padding", (int64_t[]){a->out_pad_h, a->out_pad_w}, 2);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

/* ---- pooling ------------------------------------------------------------------------------- */

static cn_status ex_pool(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_pool_attrs *a = n->attrs;
  int is_max = n->op == &cn_op_maxpool;
  int dh = a->dh > 1 ? a->dh : 1, dw = a->dw > 1 ? a->dw : 1;
  if (a->indices) return cn_ex_refuse(x, i, "MaxPool's Indices output has no export yet");
  if (!is_max && (dh > 1 || dw > 1))
    return cn_ex_refuse(x, i, "dilated average pooling needs opset 19");
  const cn_shape *s = input_shape(x, i, 0);
  int perm[4];
  const char *in = image_input(x, i, perm);
  if (x->st != CN_OK) return x->st;
  int64_t pads[4] = {a->pad_top, a->pad_left, a->pad_bottom, a->pad_right};
  if (a->padding == CN_PAD_SAME) {
    tf_pads(s->dim[0], a->ph, a->sh, dh, CN_PAD_SAME, &pads[0], &pads[2]);
    tf_pads(s->dim[1], a->pw, a->sw, dw, CN_PAD_SAME, &pads[1], &pads[3]);
  }
  const char *out = cn_ex_name(x, n->name, is_max ? "MaxPool" : "AveragePool");
  Onnx__NodeProto *c = cn_ex_node(x, is_max ? "MaxPool" : "AveragePool", &in, 1, out);
  window_attrs(x, c, a->ph, a->pw, a->sh, a->sw, pads);
  if (a->ceil_mode) cn_ex_attr_int(x, c, "ceil_mode", 1);
  if (is_max && (dh > 1 || dw > 1)) cn_ex_attr_ints(x, c, "dilations", (int64_t[]){dh, dw}, 2);
  /* TensorFlow's average excludes the padding, ONNX's default too. */
  if (!is_max && a->count_include_pad) cn_ex_attr_int(x, c, "count_include_pad", 1);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_global_pool(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_global_pool_attrs *a = n->attrs;
  int perm[4];
  const char *in = image_input(x, i, perm);
  const char *op = n->op == &cn_op_global_maxpool ? "GlobalMaxPool" : "GlobalAveragePool";
  const char *out = cn_ex_unary(x, op, in, n->name);
  if (a->keepdims) {
    cn_ex_set(x, i, out, perm); /* (N, C, 1, 1) is (1, 1, C) in NCHW */
    return x->st;
  }
  const char *flat = cn_ex_unary(x, "Flatten", out, n->name);
  cn_ex_attr_int(x, last_node(x), "axis", 1);
  cn_ex_set(x, i, flat, NULL);
  return x->st;
}

/* ---- dense, gemm, matmul ------------------------------------------------------------------- */

static cn_status ex_dense(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_dense_attrs *a = n->attrs;
  int r = input_shape(x, i, 0)->rank;
  const char *in = cn_ex_input_plain(x, n->inputs[0]);
  const char *kernel = param_init(x, n, 0), *out;
  if (r == 1) {
    const char *ins[3] = {in, kernel, a->use_bias ? param_init(x, n, 1) : ""};
    out = cn_ex_name(x, n->name, "Gemm");
    cn_ex_node(x, "Gemm", ins, a->use_bias ? 3 : 2, out);
  } else {
    out = cn_ex_binary(x, "MatMul", in, kernel, n->name);
    if (a->use_bias) out = cn_ex_binary(x, "Add", out, param_init(x, n, 1), n->name);
  }
  int perm[CN_MAX_RANK];
  cn_ex_perm_identity(r + 1, perm);
  cn_ex_set(x, i, cn_ex_activation(x, &a->act, out, act_axis(&a->act, r + 1, perm), n->name), NULL);
  return x->st;
}

static cn_status ex_gemm(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_gemm_attrs *a = n->attrs;
  const char *ins[3] = {cn_ex_input_plain(x, n->inputs[0]), param_init(x, n, 0),
                        a->has_c ? param_init(x, n, 1) : ""};
  const char *out = cn_ex_name(x, n->name, "Gemm");
  Onnx__NodeProto *c = cn_ex_node(x, "Gemm", ins, a->has_c ? 3 : 2, out);
  cn_ex_attr_float(x, c, "alpha", a->alpha);
  cn_ex_attr_float(x, c, "beta", a->beta);
  if (a->trans_b) cn_ex_attr_int(x, c, "transB", 1);
  cn_ex_set(x, i, out, NULL);
  return x->st;
}

static cn_status ex_matmul(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_matmul_attrs *a = n->attrs;
  const char *in = cn_ex_input_plain(x, n->inputs[0]);
  const char *b = a->const_b ? param_init(x, n, 0) : cn_ex_input_plain(x, n->inputs[1]);
  cn_ex_set(x, i, cn_ex_binary(x, "MatMul", in, b, n->name), NULL);
  return x->st;
}

/* ---- shape ops ----------------------------------------------------------------------------- */

static cn_status ex_flatten(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const char *out = cn_ex_unary(x, "Flatten", cn_ex_input_plain(x, n->inputs[0]), n->name);
  cn_ex_attr_int(x, last_node(x), "axis", 1);
  cn_ex_set(x, i, out, NULL);
  return x->st;
}

/* Reshape of a plain tensor to (batch, per-sample shape); batch_dim 0 copies the input's. */
static const char *reshape_to(cn_ex_ctx *x, const char *in, const cn_shape *s, int64_t batch_dim,
                              const char *base) {
  int64_t dims[CN_MAX_RANK + 1] = {batch_dim};
  for (int k = 0; k < s->rank; k++) dims[k + 1] = s->dim[k];
  return cn_ex_binary(x, "Reshape", in, cn_ex_init_ints(x, base, dims, s->rank + 1), base);
}

static cn_status ex_reshape(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  cn_ex_set(x, i, reshape_to(x, cn_ex_input_plain(x, n->inputs[0]), &n->shape, 0, n->name), NULL);
  return x->st;
}

/* Engine transposes only change how the ONNX tensor is read: tensor = T(engine_in, Q) and
 * engine_out = T(engine_in, P) give tensor = T(engine_out, R) with P[R[i]] = Q[i]. */
static cn_status ex_transpose(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const int *p = ((const cn_transpose_attrs *)n->attrs)->perm;
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int r = v->rank, pinv[CN_MAX_RANK], perm[CN_MAX_RANK];
  pinv[0] = 0;
  for (int k = 1; k < r; k++) pinv[p[k - 1] + 1] = k;
  for (int k = 0; k < r; k++) perm[k] = pinv[v->perm[k]];
  cn_ex_set(x, i, v->name, perm);
  return x->st;
}

static cn_status ex_alias(cn_ex_ctx *x, int i) {
  const cn_ex_value *v = &x->values[node_at(x, i)->inputs[0]];
  cn_ex_set(x, i, v->name, v->perm);
  return x->st;
}

static cn_status ex_input(cn_ex_ctx *x, int i) {
  cn_ex_set(x, i, node_at(x, i)->name, NULL);
  return x->st;
}

/* ---- pads ---------------------------------------------------------------------------------- */

/* Pad with per-engine-axis amounts (begin/end of per-sample axis k at index k), in the layout the
 * input already has. */
static cn_status emit_pad(cn_ex_ctx *x, int i, const int64_t *begin, const int64_t *end,
                          const char *mode, float value) {
  const cn_node *n = node_at(x, i);
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int r = v->rank, perm[CN_MAX_RANK];
  memcpy(perm, v->perm, sizeof perm);
  int64_t pads[2 * CN_MAX_RANK] = {0};
  for (int k = 0; k < r; k++) {
    int e = perm[k];
    pads[k] = e ? begin[e - 1] : 0;
    pads[r + k] = e ? end[e - 1] : 0;
  }
  const char *ins[3] = {v->name, cn_ex_init_ints(x, n->name, pads, 2 * r),
                        cn_ex_scalar(x, n->name, value)};
  const char *out = cn_ex_name(x, n->name, "Pad");
  Onnx__NodeProto *c = cn_ex_node(x, "Pad", ins, strcmp(mode, "constant") ? 2 : 3, out);
  cn_ex_attr_string(x, c, "mode", mode);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_zeropad(cn_ex_ctx *x, int i) {
  const cn_zeropad_attrs *a = node_at(x, i)->attrs;
  if (input_shape(x, i, 0)->rank != 3)
    return cn_ex_refuse(x, i, "expects a (height, width, channels) input");
  int64_t begin[3] = {a->top, a->left, 0}, end[3] = {a->bottom, a->right, 0};
  return emit_pad(x, i, begin, end, "constant", 0.0f);
}

static cn_status ex_pad(cn_ex_ctx *x, int i) {
  const cn_pad_attrs *a = node_at(x, i)->attrs;
  static const char *const modes[] = {"constant", "reflect", "edge"};
  if (a->mode == CN_PADMODE_WRAP || (int)a->mode < 0 || a->mode > CN_PADMODE_EDGE)
    return cn_ex_refuse(x, i, "wrap padding needs opset 19");
  return emit_pad(x, i, a->begin, a->end, modes[a->mode], a->value);
}

/* ---- normalisation ------------------------------------------------------------------------- */

/* The input with engine axis `axis` at ONNX axis 1 (kept as it is when it already is). */
static const char *channels_at_1(cn_ex_ctx *x, int i, int axis, int *perm) {
  const cn_ex_value *v = &x->values[node_at(x, i)->inputs[0]];
  if (v->perm[1] == axis) {
    memcpy(perm, v->perm, sizeof v->perm);
    return v->name;
  }
  cn_ex_perm_channels_first(v->rank, axis, perm);
  return cn_ex_input(x, node_at(x, i)->inputs[0], perm);
}

static const float *filled(cn_ex_ctx *x, int64_t n, float value) {
  float *p = cn_ex_alloc(x, (size_t)n * sizeof *p);
  for (int64_t k = 0; p && k < n; k++) p[k] = value;
  return p;
}

static cn_status ex_batchnorm(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_batchnorm_attrs *a = n->attrs;
  int axis = cn_axis_resolve(a->axis, n->shape.rank) + 1;
  int perm[CN_MAX_RANK];
  const char *in = channels_at_1(x, i, axis, perm);
  int64_t c = n->shape.dim[axis - 1];
  int k = 0;
  const char *gamma =
      a->scale ? param_init(x, n, k++) : cn_ex_init_float(x, n->name, 1, &c, filled(x, c, 1.0f));
  const char *beta =
      a->center ? param_init(x, n, k++) : cn_ex_init_float(x, n->name, 1, &c, filled(x, c, 0.0f));
  const char *ins[5] = {in, gamma, beta, param_init(x, n, k), param_init(x, n, k + 1)};
  const char *out = cn_ex_name(x, n->name, "BatchNormalization");
  Onnx__NodeProto *b = cn_ex_node(x, "BatchNormalization", ins, 5, out);
  cn_ex_attr_float(x, b, "epsilon", a->epsilon);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_lrn(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_lrn_attrs *a = n->attrs;
  if (n->shape.rank != 3) return cn_ex_refuse(x, i, "ONNX LRN needs a 4-D (NCHW) tensor");
  int perm[CN_MAX_RANK];
  const char *in = channels_at_1(x, i, 3, perm);
  const char *out = cn_ex_unary(x, "LRN", in, n->name);
  Onnx__NodeProto *c = last_node(x);
  cn_ex_attr_int(x, c, "size", a->size);
  cn_ex_attr_float(x, c, "alpha", a->alpha);
  cn_ex_attr_float(x, c, "beta", a->beta);
  cn_ex_attr_float(x, c, "bias", a->bias);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

/* ---- elementwise --------------------------------------------------------------------------- */

static cn_status ex_activation(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int perm[CN_MAX_RANK];
  memcpy(perm, v->perm, sizeof perm);
  const cn_activation *a = n->attrs;
  cn_ex_set(x, i, cn_ex_activation(x, a, v->name, act_axis(a, v->rank, perm), n->name), perm);
  return x->st;
}

/* Every input in the layout of the first; returns the count. */
static int same_layout_inputs(cn_ex_ctx *x, int i, const char **names, int *perm) {
  const cn_node *n = node_at(x, i);
  memcpy(perm, x->values[n->inputs[0]].perm, CN_MAX_RANK * sizeof *perm);
  for (int k = 0; k < n->n_inputs; k++) names[k] = cn_ex_input(x, n->inputs[k], perm);
  return n->n_inputs;
}

/* op over all operands: variadic ops take them at once, binary ones fold left to right. */
static const char *fold(cn_ex_ctx *x, const char *op, int variadic, const char **ops, int k,
                        const char *base) {
  if (variadic || k == 1) {
    const char *out = cn_ex_name(x, base, op);
    cn_ex_node(x, op, ops, k, out);
    return out;
  }
  const char *acc = ops[0];
  for (int j = 1; j < k; j++) acc = cn_ex_binary(x, op, acc, ops[j], base);
  return acc;
}

static cn_status ex_merge(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_merge_attrs *a = n->attrs;
  static const char *const ops[] = {"Sum", "Sub", "Mul", "Mean", "Max", "Min"};
  if ((int)a->kind < 0 || a->kind > CN_MERGE_MINIMUM) return cn_ex_refuse(x, i, "unknown merge");
  if (n->n_inputs > CN_MAX_GRAPH_IO * 8) return cn_ex_refuse(x, i, "too many inputs");
  const char *names[CN_MAX_GRAPH_IO * 8] = {0};
  int perm[CN_MAX_RANK];
  int k = same_layout_inputs(x, i, names, perm);
  if (a->kind == CN_MERGE_SUBTRACT && k != 2) return cn_ex_refuse(x, i, "Subtract of %d inputs", k);
  int variadic = a->kind != CN_MERGE_SUBTRACT && a->kind != CN_MERGE_MULTIPLY;
  cn_ex_set(x, i, fold(x, ops[a->kind], variadic, names, k, n->name), perm);
  return x->st;
}

/* A Cast node of `in` to ONNX element type `to` (1 float, 9 bool). */
static const char *cast_to(cn_ex_ctx *x, const char *in, int to, const char *base) {
  const char *out = cn_ex_name(x, base, to == 9 ? "bool" : "float");
  Onnx__NodeProto *c = cn_ex_node(x, "Cast", &in, 1, out);
  if (c) cn_ex_attr_int(x, c, "to", to);
  return out;
}

static cn_status ex_binary(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_binary_attrs *a = n->attrs;
  static const char *const ops[] = {"Sum",   "Sub",         "Mul",     "Div",
                                    "Max",   "Min",         "Mean",    "Pow",
                                    "Less",  "LessOrEqual", "Greater", "GreaterOrEqual",
                                    "Equal", "Where"};
  _Static_assert(sizeof ops / sizeof *ops == CN_BIN_COUNT, "an ONNX operator for every kind");
  if ((int)a->kind < 0 || a->kind >= CN_BIN_COUNT) return cn_ex_refuse(x, i, "unknown kind");
  if (n->n_inputs > CN_MAX_GRAPH_IO * 8) return cn_ex_refuse(x, i, "too many inputs");
  const char *names[CN_MAX_GRAPH_IO * 8 + 1] = {0};
  int perm[CN_MAX_RANK];
  int k = same_layout_inputs(x, i, names + 1, perm);
  const char **first = names + 1;
  if (a->const_operand != CN_CONST_NONE) {
    const char *b =
        permuted_operand(x, n->name, &n->params[0], &a->b_shape, n->shape.rank + 1, perm);
    if (a->const_operand == CN_CONST_FIRST) {
      names[0] = b;
      first = names;
    } else if (a->const_operand == CN_CONST_SECOND) {
      names[0] = names[1];
      names[1] = b;
      first = names;
    } else {
      names[k + 1] = b;
    }
    k++;
  }
  /* The engine holds bools as 0/1 floats; ONNX types them, so cast at both ends. */
  if (a->kind == CN_BIN_WHERE) first[0] = cast_to(x, first[0], 9, n->name);
  int variadic = a->kind != CN_BIN_SUB && a->kind != CN_BIN_DIV && a->kind != CN_BIN_POW &&
                 a->kind != CN_BIN_MUL && a->kind < CN_BIN_LESS;
  const char *out = a->kind == CN_BIN_WHERE ? cn_ex_name(x, n->name, "Where")
                                            : fold(x, ops[a->kind], variadic, first, k, n->name);
  if (a->kind == CN_BIN_WHERE) cn_ex_node(x, "Where", first, 3, out);
  if (a->kind >= CN_BIN_LESS && a->kind <= CN_BIN_EQUAL) out = cast_to(x, out, 1, n->name);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_unary(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_unary_attrs *a = n->attrs;
  static const char *const simple[CN_UN_COUNT] = {
      [CN_UN_RELU] = "Relu",   [CN_UN_SIGMOID] = "Sigmoid",
      [CN_UN_TANH] = "Tanh",   [CN_UN_SOFTPLUS] = "Softplus",
      [CN_UN_NEG] = "Neg",     [CN_UN_ABS] = "Abs",
      [CN_UN_SQRT] = "Sqrt",   [CN_UN_EXP] = "Exp",
      [CN_UN_LOG] = "Log",     [CN_UN_RECIPROCAL] = "Reciprocal",
      [CN_UN_FLOOR] = "Floor", [CN_UN_CEIL] = "Ceil",
      [CN_UN_ERF] = "Erf",     [CN_UN_IDENTITY] = "Identity",
      [CN_UN_ELU] = "Elu",     [CN_UN_LEAKY_RELU] = "LeakyRelu",
      [CN_UN_SELU] = "Selu"};
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int perm[CN_MAX_RANK];
  memcpy(perm, v->perm, sizeof perm);
  const char *in = v->name, *out;
  if ((int)a->kind < 0 || a->kind >= CN_UN_COUNT) return cn_ex_refuse(x, i, "unknown function");
  if (a->kind == CN_UN_CLIP) {
    out = clip(x, in, a->lo, a->hi, n->name);
  } else if (a->kind == CN_UN_HARD_SIGMOID) {
    out = hard_sigmoid(x, in, a->alpha, a->beta, n->name);
  } else if (a->kind == CN_UN_SQUARE) {
    out = cn_ex_binary(x, "Mul", in, in, n->name);
  } else if (a->kind == CN_UN_AFFINE) {
    out = affine(x, in, a->alpha, a->beta, n->name);
  } else if (a->kind == CN_UN_HARD_SWISH) { /* HardSwish itself is opset 14 */
    out = cn_ex_binary(x, "Mul", in, hard_sigmoid(x, in, 1.0f / 6.0f, 0.5f, n->name), n->name);
  } else {
    out = cn_ex_unary(x, simple[a->kind], in, n->name);
    if (a->kind == CN_UN_ELU || a->kind == CN_UN_LEAKY_RELU || a->kind == CN_UN_SELU)
      cn_ex_attr_float(x, last_node(x), "alpha", a->alpha);
    if (a->kind == CN_UN_SELU) cn_ex_attr_float(x, last_node(x), "gamma", a->beta);
  }
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_prelu(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_prelu_attrs *a = n->attrs;
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int perm[CN_MAX_RANK];
  memcpy(perm, v->perm, sizeof perm);
  const char *slope = permuted_operand(x, n->name, &n->params[0], &a->slope_shape, v->rank, perm);
  cn_ex_set(x, i, cn_ex_binary(x, "PRelu", v->name, slope, n->name), perm);
  return x->st;
}

static cn_status ex_concat(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_concat_attrs *a = n->attrs;
  if (n->n_inputs > CN_MAX_GRAPH_IO * 8) return cn_ex_refuse(x, i, "too many inputs");
  const char *names[CN_MAX_GRAPH_IO * 8] = {0};
  int perm[CN_MAX_RANK];
  int k = same_layout_inputs(x, i, names, perm);
  cn_ex_value v = {.rank = n->shape.rank + 1};
  memcpy(v.perm, perm, sizeof perm);
  const char *out = cn_ex_name(x, n->name, "Concat");
  Onnx__NodeProto *c = cn_ex_node(x, "Concat", names, k, out);
  cn_ex_attr_int(x, c, "axis", cn_ex_axis(&v, cn_axis_resolve(a->axis, n->shape.rank) + 1));
  cn_ex_set(x, i, out, perm);
  return x->st;
}

static cn_status ex_softmax(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_softmax_attrs *a = n->attrs;
  const char *op = a->log ? "LogSoftmax" : "Softmax";
  int r = n->shape.rank + 1, axis = a->axis < 0 ? a->axis + r : a->axis;
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int perm[CN_MAX_RANK];
  memcpy(perm, v->perm, sizeof perm);
  if (!a->flatten || axis == r - 1) { /* one axis, in any layout */
    const char *out = cn_ex_unary(x, op, v->name, n->name);
    cn_ex_attr_int(x, last_node(x), "axis", cn_ex_axis(v, axis));
    cn_ex_set(x, i, out, perm);
    return x->st;
  }
  /* Every axis from `axis` on: flatten them into one, normalise, restore the shape. */
  const char *flat = cn_ex_unary(x, "Flatten", cn_ex_input_plain(x, n->inputs[0]), n->name);
  cn_ex_attr_int(x, last_node(x), "axis", axis);
  const char *sm = cn_ex_unary(x, op, flat, n->name);
  cn_ex_attr_int(x, last_node(x), "axis", 1);
  cn_ex_set(x, i, reshape_to(x, sm, &n->shape, -1, n->name), NULL);
  return x->st;
}

/* ---- reductions and sampling ------------------------------------------------------------------
 */

/* Reduce over per-sample axes: in the value's own layout (axes mapped through its perm) with
 * keepdims, else in the engine's layout so that the remaining axes keep their order. Opset 13:
 * ReduceSum takes its axes as an input, the others as an attribute. */
static cn_status ex_reduce(cn_ex_ctx *x, int i) {
  static const char *const ops[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"};
  const cn_node *n = node_at(x, i);
  const cn_reduce_attrs *a = n->attrs;
  const cn_ex_value *v = &x->values[n->inputs[0]];
  int64_t axes[CN_MAX_RANK];
  int k = 0;
  for (int d = 0; d + 1 < v->rank; d++)
    if (a->axes >> d & 1) axes[k++] = a->keepdims ? cn_ex_axis(v, d + 1) : d + 1;
  const char *in = a->keepdims ? v->name : cn_ex_input_plain(x, n->inputs[0]);
  const char *out = cn_ex_name(x, n->name, ops[a->kind]);
  const char *ins[2] = {in, a->kind == CN_REDUCE_SUM ? cn_ex_init_ints(x, n->name, axes, k) : ""};
  Onnx__NodeProto *node = cn_ex_node(x, ops[a->kind], ins, a->kind == CN_REDUCE_SUM ? 2 : 1, out);
  if (node && a->kind != CN_REDUCE_SUM) cn_ex_attr_ints(x, node, "axes", axes, k);
  if (node) cn_ex_attr_int(x, node, "keepdims", a->keepdims);
  cn_ex_set(x, i, out, a->keepdims ? v->perm : NULL);
  return x->st;
}

/* mean + exp(log_var / 2) * RandomNormalLike(mean): ONNX draws its own noise, so an exported
 * model samples like convnet's but not the same values. */
static cn_status ex_gaussian_sample(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const char *mean = cn_ex_input_plain(x, n->inputs[0]);
  const char *log_var = cn_ex_input_plain(x, n->inputs[1]);
  const char *eps = cn_ex_unary(x, "RandomNormalLike", mean, n->name);
  const char *half = cn_ex_binary(x, "Mul", log_var, cn_ex_scalar(x, n->name, 0.5f), n->name);
  const char *scale = cn_ex_unary(x, "Exp", half, n->name);
  const char *out =
      cn_ex_binary(x, "Add", mean, cn_ex_binary(x, "Mul", scale, eps, n->name), n->name);
  cn_ex_set(x, i, out, NULL);
  return x->st;
}

/* ---- resize -------------------------------------------------------------------------------- */

static const char *const coord_names[] = {
    [CN_COORD_HALF_PIXEL] = "half_pixel",
    [CN_COORD_ASYMMETRIC] = "asymmetric",
    [CN_COORD_ALIGN_CORNERS] = "align_corners",
    [CN_COORD_PYTORCH_HALF_PIXEL] = "pytorch_half_pixel",
    [CN_COORD_TF_HALF_PIXEL_FOR_NN] = "tf_half_pixel_for_nn",
    [CN_COORD_HALF_PIXEL_SYMMETRIC] = NULL, /* opset 19 */
};

static const char *const nearest_names[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                            "ceil"};

/* (N, C) of the input followed by the constant (oh, ow): Resize's sizes with a symbolic batch. */
static const char *dynamic_sizes(cn_ex_ctx *x, const char *in, int64_t oh, int64_t ow,
                                 const char *base) {
  const char *shape = cn_ex_unary(x, "Shape", in, base);
  const char *ins[3] = {shape, cn_ex_init_ints(x, base, (int64_t[]){0}, 1),
                        cn_ex_init_ints(x, base, (int64_t[]){2}, 1)};
  const char *nc = cn_ex_name(x, base, "Slice");
  cn_ex_node(x, "Slice", ins, 3, nc);
  const char *cat[2] = {nc, cn_ex_init_ints(x, base, (int64_t[]){oh, ow}, 2)};
  const char *sizes = cn_ex_name(x, base, "Concat");
  cn_ex_attr_int(x, cn_ex_node(x, "Concat", cat, 2, sizes), "axis", 0);
  return sizes;
}

static cn_status ex_resize(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  const cn_resize_attrs *a = n->attrs;
  const cn_shape *s = input_shape(x, i, 0);
  if (a->mode == CN_RESIZE_MODE_CUBIC || a->antialias || a->coord == CN_COORD_TF_CROP_AND_RESIZE)
    return cn_ex_refuse(x, i, "cubic, antialias and tf_crop_and_resize have no export yet");
  if ((int)a->coord < 0 || a->coord > CN_COORD_HALF_PIXEL_SYMMETRIC || !coord_names[a->coord] ||
      (int)a->nearest < 0 || a->nearest > CN_NEAREST_CEIL)
    return cn_ex_refuse(x, i, "coordinate mode needs opset 19");
  int by_size = a->scale_h <= 0 && a->scale_w <= 0;
  int by_scale = a->scale_h > 0 && a->scale_w > 0 &&
                 (a->out_h <= 0 || a->out_h == (int64_t)floor((double)s->dim[0] * a->scale_h)) &&
                 (a->out_w <= 0 || a->out_w == (int64_t)floor((double)s->dim[1] * a->scale_w));
  if (!by_size && !by_scale) return cn_ex_refuse(x, i, "sizes that differ from the scales");
  int perm[4];
  const char *in = image_input(x, i, perm);
  const char *ins[4] = {in, "", "", ""};
  int k = 3;
  if (by_scale) {
    float *sc = cn_ex_alloc(x, 4 * sizeof *sc);
    if (sc) sc[0] = sc[1] = 1.0f, sc[2] = a->scale_h, sc[3] = a->scale_w;
    ins[2] = cn_ex_init_float(x, n->name, 1, (int64_t[]){4}, sc);
  } else {
    ins[3] = dynamic_sizes(x, in, n->shape.dim[0], n->shape.dim[1], n->name);
    k = 4;
  }
  const char *out = cn_ex_name(x, n->name, "Resize");
  Onnx__NodeProto *c = cn_ex_node(x, "Resize", ins, k, out);
  cn_ex_attr_string(x, c, "mode", a->mode == CN_RESIZE_MODE_LINEAR ? "linear" : "nearest");
  cn_ex_attr_string(x, c, "coordinate_transformation_mode", coord_names[a->coord]);
  if (a->mode == CN_RESIZE_MODE_NEAREST)
    cn_ex_attr_string(x, c, "nearest_mode", nearest_names[a->nearest]);
  cn_ex_set(x, i, out, perm);
  return x->st;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const struct {
  const cn_op *op;
  ex_fn fn;
} table[] = {
    {&cn_op_input, ex_input},
    {&cn_op_conv2d, ex_conv2d},
    {&cn_op_depthwise, ex_depthwise},
    {&cn_op_zeropad, ex_zeropad},
    {&cn_op_maxpool, ex_pool},
    {&cn_op_avgpool, ex_pool},
    {&cn_op_global_avgpool, ex_global_pool},
    {&cn_op_global_maxpool, ex_global_pool},
    {&cn_op_dense, ex_dense},
    {&cn_op_flatten, ex_flatten},
    {&cn_op_reshape, ex_reshape},
    {&cn_op_dropout, ex_alias},
    {&cn_op_batchnorm, ex_batchnorm},
    {&cn_op_activation, ex_activation},
    {&cn_op_merge, ex_merge},
    {&cn_op_concat, ex_concat},
    {&cn_op_transpose, ex_transpose},
    {&cn_op_binary, ex_binary},
    {&cn_op_unary, ex_unary},
    {&cn_op_prelu, ex_prelu},
    {&cn_op_softmax, ex_softmax},
    {&cn_op_lrn, ex_lrn},
    {&cn_op_pad, ex_pad},
    {&cn_op_gemm, ex_gemm},
    {&cn_op_matmul, ex_matmul},
    {&cn_op_resize, ex_resize},
    {&cn_op_conv_transpose, ex_conv_transpose},
    {&cn_op_reduce, ex_reduce},
    {&cn_op_gaussian_sample, ex_gaussian_sample},
};

int cn_ex_op_supported(const cn_op *op) {
  for (size_t k = 0; k < sizeof table / sizeof *table; k++)
    if (table[k].op == op) return 1;
  return 0;
}

cn_status cn_ex_convert(cn_ex_ctx *x, int i) {
  const cn_node *n = node_at(x, i);
  for (size_t k = 0; k < sizeof table / sizeof *table; k++)
    if (table[k].op == n->op) return table[k].fn(x, i);
  return cn_ex_refuse(x, i, "no ONNX form for operator %s", n->op->type);
}
