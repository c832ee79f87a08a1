/* ONNX to engine nodes: elementwise activations, Softmax/LogSoftmax, LRN, and the
 * broadcasting binary operators (Add, Sub, Mul, Div, Pow, Sum, Max, Min, Mean, PRelu). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_onnx.h"

/* ---- elementwise activations --------------------------------------------------------------- */

static cn_status add_activation(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_activation act) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  int node;
  if (st == CN_OK)
    st =
        cn_onnx_add_node(x, &cn_op_activation, cn_onnx_out_name(n), NULL, &v->node, 1, &act, &node);
  if (st != CN_OK) return st;
  free(x->g->nodes[node].type);
  x->g->nodes[node].type = strdup(n->op_type);
  if (!x->g->nodes[node].type) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_onnx_alias_output(x, n, 0, v, node);
  return CN_OK;
}

static cn_status conv_relu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return add_activation(x, n, cn_act_relu());
}

static cn_status conv_leaky_relu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_activation a = cn_act_relu();
  a.negative_slope = cn_onnx_attr_float(n, "alpha", 0.01f);
  return add_activation(x, n, a);
}

static cn_status conv_sigmoid(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return add_activation(x, n, cn_act_simple(CN_ACT_SIGMOID));
}

static cn_status conv_tanh(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return add_activation(x, n, cn_act_simple(CN_ACT_TANH));
}

static cn_status conv_elu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_activation a = cn_act_simple(CN_ACT_ELU);
  a.alpha = cn_onnx_attr_float(n, "alpha", 1.0f);
  return add_activation(x, n, a);
}

static cn_status add_unary(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_unary_attrs a) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  int node;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_unary, cn_onnx_out_name(n), NULL, &v->node, 1, &a, &node);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 0, v, node);
  return st;
}

static cn_status conv_hard_sigmoid(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_unary_attrs a = {.kind = CN_UN_HARD_SIGMOID,
                      .alpha = cn_onnx_attr_float(n, "alpha", 0.2f),
                      .beta = cn_onnx_attr_float(n, "beta", 0.5f)};
  return add_unary(x, n, a);
}

/* ONNX's defaults are the constants of Klambauer et al. 2017 as float32. */
static cn_status conv_selu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_unary_attrs a = {.kind = CN_UN_SELU,
                      .alpha = cn_onnx_attr_float(n, "alpha", 1.67326319217681884765625f),
                      .beta = cn_onnx_attr_float(n, "gamma", 1.05070102214813232421875f)};
  return add_unary(x, n, a);
}

static cn_status conv_hard_swish(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return add_unary(x, n, (cn_unary_attrs){.kind = CN_UN_HARD_SWISH});
}

/* The attribute-free elementwise functions, by ONNX name. */
static const struct {
  const char *op;
  cn_unary_kind kind;
} plain_unary[] = {
    {"Exp", CN_UN_EXP},           {"Log", CN_UN_LOG}, {"Sqrt", CN_UN_SQRT},
    {"Abs", CN_UN_ABS},           {"Neg", CN_UN_NEG}, {"Reciprocal", CN_UN_RECIPROCAL},
    {"Softplus", CN_UN_SOFTPLUS}, {"Erf", CN_UN_ERF}, {"Floor", CN_UN_FLOOR},
    {"Ceil", CN_UN_CEIL},
};

static cn_status conv_plain_unary(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  for (size_t k = 0; k < sizeof plain_unary / sizeof *plain_unary; k++)
    if (strcmp(plain_unary[k].op, n->op_type) == 0)
      return add_unary(x, n, (cn_unary_attrs){.kind = plain_unary[k].kind});
  return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "not an elementwise function");
}

/* Clip's bound: an attribute before opset 11, an optional constant input after. */
static cn_status clip_bound(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, const char *attr,
                            float dflt, float *out) {
  *out = cn_onnx_attr_float(n, attr, dflt);
  cn_onnx_value *v = cn_onnx_input(x, n, k);
  if (!v) return CN_OK;
  if (v->kind != CN_ONNX_CONST || v->c.numel != 1)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "%s must be a constant scalar", attr);
  *out = (float)cn_onnx_const_get(&v->c, 0);
  return CN_OK;
}

/* Clip with a bound computed at run time: max(x, min) then min(., max), broadcasting. */
static cn_status clip_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  int node, b;
  cn_status st = cn_onnx_need_whole(x, n, "bounds");
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK) st = cn_onnx_plain(x, v, &node);
  for (size_t k = 1; st == CN_OK && k <= 2; k++) {
    cn_onnx_value *bv = cn_onnx_input(x, n, k);
    int kind = k == 1 ? CN_BIN_MAX : CN_BIN_MIN;
    if (!bv) continue;
    if (bv->kind == CN_ONNX_CONST) {
      if (bv->c.numel != 1) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "non-scalar bounds");
      st = cn_onnx_scalar_op(x, n, kind, node, (float)cn_onnx_const_get(&bv->c, 0),
                             k == 1 ? "/min" : "/max", &node);
      continue;
    }
    st = cn_onnx_act_input(x, n, k, &bv);
    if (st == CN_OK) st = cn_onnx_ranked(x, n, bv, cn_onnx_rank(x, v), &b);
    if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, kind, node, b, k == 1 ? "/min" : NULL, &node);
  }
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

static int input_computed(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  cn_onnx_value *v = cn_onnx_input(x, n, k);
  return v && v->kind == CN_ONNX_ACT;
}

static cn_status conv_clip(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (input_computed(x, n, 1) || input_computed(x, n, 2)) return clip_runtime(x, n);
  float lo, hi;
  cn_status st = clip_bound(x, n, 1, "min", -INFINITY, &lo);
  if (st == CN_OK) st = clip_bound(x, n, 2, "max", INFINITY, &hi);
  if (st != CN_OK) return st;
  if (lo == 0.0f && hi >= 0.0f) { /* relu / relu6: fuses into a preceding convolution */
    cn_activation a = cn_act_relu();
    a.max_value = hi;
    return add_activation(x, n, a);
  }
  return add_unary(x, n, (cn_unary_attrs){.kind = CN_UN_CLIP, .lo = lo, .hi = hi});
}

static cn_status conv_identity(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 0, v, v->node);
  return st;
}

/* CastLike of a computed tensor (a constant one is folded): the engine computes in float and
 * holds comparisons' bools as 0 and 1, so a cast to float is the identity; other targets are
 * refused. */
static cn_status conv_cast_like(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  if (n->n_input < 2 || !*n->input[1])
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "input 1 is missing");
  int32_t to = cn_onnx_elem_type(x, n->input[1]);
  if (to != DT_FLOAT)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED,
                        "a cast of a computed tensor to element type %d (convnet computes in "
                        "float32)",
                        (int)to);
  cn_onnx_alias_output(x, n, 0, v, v->node);
  return CN_OK;
}

static cn_status conv_dropout(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  const cn_onnx_const *training = cn_onnx_const_input(x, n, 2);
  if (training && training->numel == 1 && cn_onnx_const_get(training, 0) != 0)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "training_mode is set");
  if (cn_onnx_attr_int(n, "is_test", 1) == 0 && x->opset < 7)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "is_test is 0");
  cn_status st = conv_identity(x, n);
  if (st != CN_OK || n->n_output < 2 || !*n->output[1]) return st;
  /* The mask keeps every element at inference: ones of x's shape, as x ** 0 (1 even for NaN). */
  cn_onnx_value *v = cn_onnx_input(x, n, 0);
  int node;
  st = cn_onnx_scalar_op(x, n, CN_BIN_POW, v->node, 0.0f, "/mask", &node);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 1, v, node);
  return st;
}

/* ---- softmax ------------------------------------------------------------------------------- */

/* The engine's Keras-style axis (counting the batch) for ONNX axis `axis` of value v. */
int cn_onnx_engine_axis(const cn_onnx_value *v, int axis) {
  static const int nhwc_axis[4] = {0, 3, 1, 2};
  return v->layout == CN_ONNX_NHWC ? nhwc_axis[axis] : axis;
}

static cn_status softmax_like(cn_onnx_ctx *x, const Onnx__NodeProto *n, int log) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_dims_axis(x, v, cn_onnx_attr_int(n, "axis", x->opset >= 13 ? -1 : 1));
  if (axis < 0) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (axis == 0) return CN_ONNX_BATCH_FAIL(x, n, "axis 0 (the batch axis)");
  /* Before opset 13 softmax runs over all axes from `axis` on, flattened; from axis 1 that set
   * is the whole sample in any layout. */
  int flatten = x->opset < 13 && axis < v->rank - 1;
  int src = v->node, node;
  cn_onnx_value like = *v;
  if (v->layout != CN_ONNX_PLAIN && !(v->layout == CN_ONNX_NHWC && !flatten) && axis != 1) {
    st = cn_onnx_plain(x, v, &src);
    like.layout = CN_ONNX_PLAIN;
  }
  cn_softmax_attrs a = {.axis = flatten ? (int)axis : cn_onnx_engine_axis(&like, (int)axis),
                        .log = log,
                        .flatten = flatten};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_softmax, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 0, &like, node);
  return st;
}

static cn_status conv_softmax(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return softmax_like(x, n, 0);
}

static cn_status conv_log_softmax(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return softmax_like(x, n, 1);
}

static cn_status conv_lrn(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  int node;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK && v->rank != 4) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_lrn_attrs a = {(int)cn_onnx_attr_int(n, "size", 0), cn_onnx_attr_float(n, "alpha", 1e-4f),
                    cn_onnx_attr_float(n, "beta", 0.75f), cn_onnx_attr_float(n, "bias", 1.0f)};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_lrn, cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* ---- elementwise binary -------------------------------------------------------------------- */

/* The one axis of the ONNX activation dims along which constant c varies (right-aligned numpy
 * broadcasting), 0 when c is a scalar, -1 when it varies along several, or along the batch, or
 * would enlarge the activation. */
static int const_channel_axis(const cn_onnx_value *v, const cn_onnx_const *c) {
  if (c->rank > v->rank) return -1;
  int axis = 0;
  for (int k = 0; k < c->rank; k++) {
    int d = k + v->rank - c->rank;
    if (c->dims[k] == 1) continue;
    if (c->dims[k] != v->dims[d] || axis || d == 0) return -1;
    axis = d;
  }
  return axis;
}

/* y = x * scale + shift per channel, as an inference BatchNormalization with unit variance and
 * zero epsilon (exact: the engine computes x * (gamma / sqrt(1)) + beta). */
static cn_status add_scale_shift(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 int axis, float *scale, float *shift, int64_t c) {
  int src = v->node, node;
  cn_status st = CN_OK;
  cn_onnx_value copy = *v;
  if (v->layout == CN_ONNX_FLAT && axis != 0) {
    st = cn_onnx_plain(x, v, &src);
    copy.layout = CN_ONNX_PLAIN;
    copy.node = src;
  }
  int eaxis = axis ? cn_onnx_engine_axis(&copy, axis) : -1;
  cn_batchnorm_attrs a = {.epsilon = 0.0f, .center = 1, .scale = 1, .axis = eaxis, .affine = 1};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_batchnorm, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  int64_t channels = st == CN_OK ? x->g->nodes[node].params[0].shape.dim[0] : 0;
  float *p[4] = {NULL, NULL, NULL, NULL};
  for (int k = 0; st == CN_OK && k < 4; k++) {
    p[k] = malloc((size_t)channels * sizeof(float));
    if (!p[k]) st = cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; st == CN_OK && j < channels; j++)
      p[k][j] = k == 0   ? scale[c == 1 ? 0 : j]
                : k == 1 ? shift[c == 1 ? 0 : j]
                : k == 2 ? 0.f
                         : 1.f;
  }
  for (int k = 0; k < 4; k++) {
    if (st == CN_OK) {
      st = cn_onnx_set_param(x, node, k, p[k]);
      p[k] = NULL;
    }
    free(p[k]);
  }
  if (st == CN_OK) {
    free(x->g->nodes[node].type);
    x->g->nodes[node].type = strdup(n->op_type);
    cn_onnx_alias_output(x, n, 0, &copy, node);
  }
  return st;
}

/* The constant c as an engine operand for activation v: its full ONNX shape right-aligned to v,
 * then permuted to NHWC when v is stored so. *data is malloc'd. */
static cn_status const_operand(cn_onnx_ctx *x, const cn_onnx_value *v, const cn_onnx_const *c,
                               cn_shape *shape, float **data) {
  if (c->rank > v->rank || c->rank > CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: constant of rank %d for a rank %d tensor", x->file,
                   c->rank, v->rank);
  *data = cn_onnx_float_copy(c, c->numel);
  if (!*data) return cn_fail(CN_ERR_NOMEM, "out of memory");
  *shape = cn_shape_make(c->rank, c->dims);
  if (v->layout != CN_ONNX_NHWC || c->rank < 3) return CN_OK;
  /* Right-aligned to (N,C,H,W): dims (n?, c, h, w) -> (n?, h, w, c). */
  int lead = c->rank - 3;
  int64_t cc = c->dims[lead], h = c->dims[lead + 1], w = c->dims[lead + 2];
  for (int64_t o = 0; o < c->numel / (cc * h * w); o++)
    for (int64_t k = 0; k < cc; k++)
      for (int64_t y = 0; y < h; y++)
        for (int64_t xx = 0; xx < w; xx++)
          (*data)[((o * h + y) * w + xx) * cc + k] = c->f[((o * cc + k) * h + y) * w + xx];
  shape->dim[lead] = h;
  shape->dim[lead + 1] = w;
  shape->dim[lead + 2] = cc;
  return CN_OK;
}

/* A constant operand through the broadcasting ops (binary, PRelu). */
cn_status cn_onnx_add_const_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                               const cn_onnx_const *c, const cn_op *op, void *attrs,
                               cn_shape *shape_field) {
  cn_onnx_value like = *v;
  int src = v->node, node;
  cn_status st = CN_OK;
  if (v->layout == CN_ONNX_FLAT && c->numel != 1) {
    st = cn_onnx_plain(x, v, &src);
    like.layout = CN_ONNX_PLAIN;
    like.node = src;
  }
  float *data = NULL;
  if (st == CN_OK) st = const_operand(x, &like, c, shape_field, &data);
  if (st == CN_OK) st = cn_onnx_add_node(x, op, cn_onnx_out_name(n), NULL, &src, 1, attrs, &node);
  if (st == CN_OK) {
    st = cn_onnx_set_param(x, node, 0, data);
    data = NULL;
  }
  free(data);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 0, &like, node);
  return st;
}

static cn_binary_kind binary_kind(const char *op) {
  static const struct {
    const char *op;
    cn_binary_kind kind;
  } kinds[] = {{"Add", CN_BIN_ADD},
               {"Sum", CN_BIN_ADD},
               {"Sub", CN_BIN_SUB},
               {"Mul", CN_BIN_MUL},
               {"Div", CN_BIN_DIV},
               {"Max", CN_BIN_MAX},
               {"Min", CN_BIN_MIN},
               {"Mean", CN_BIN_MEAN},
               {"Pow", CN_BIN_POW},
               {"Less", CN_BIN_LESS},
               {"LessOrEqual", CN_BIN_LESS_EQUAL},
               {"Greater", CN_BIN_GREATER},
               {"GreaterOrEqual", CN_BIN_GREATER_EQUAL},
               {"Equal", CN_BIN_EQUAL},
               {"Where", CN_BIN_WHERE}};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    if (strcmp(kinds[k].op, op) == 0) return kinds[k].kind;
  return CN_BIN_COUNT;
}

/* 1 when constant c, broadcast onto activation v, would differ between samples. */
int cn_onnx_const_spans_batch(const cn_onnx_ctx *x, const cn_onnx_value *v,
                              const cn_onnx_const *c) {
  return !x->whole && c->rank >= v->rank && (c->rank > v->rank || c->dims[0] != 1);
}

/* Activation (op) constant: a per-channel or scalar Add/Sub/Mul/Div becomes a scale-shift
 * (which folds into a preceding convolution); anything else broadcasts through cn_op_binary. */
static cn_status binary_with_const(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                   cn_onnx_const *c, int const_first) {
  const char *op = n->op_type;
  cn_status st = cn_onnx_const_to_float(c, n->input[const_first ? 0 : 1]);
  if (st != CN_OK) return st;
  if (cn_onnx_const_spans_batch(x, v, c))
    return CN_ONNX_BATCH_FAIL(x, n, "a constant operand that varies along the batch axis");
  int axis = const_channel_axis(v, c);
  int is_add = strcmp(op, "Add") == 0 || strcmp(op, "Sum") == 0, is_mul = strcmp(op, "Mul") == 0;
  int is_sub = strcmp(op, "Sub") == 0, is_div = strcmp(op, "Div") == 0 && !const_first;
  if (axis < 0 || !(is_add || is_mul || is_sub || is_div)) {
    cn_binary_attrs a = {binary_kind(op), const_first ? CN_CONST_FIRST : CN_CONST_LAST, {0}};
    return cn_onnx_add_const_op(x, n, v, c, &cn_op_binary, &a, &a.b_shape);
  }
  int64_t len = c->numel;
  float *scale = malloc((size_t)len * sizeof *scale), *shift = malloc((size_t)len * sizeof *shift);
  if (!scale || !shift) {
    free(scale);
    free(shift);
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  for (int64_t j = 0; j < len; j++) {
    float k = c->f[j];
    scale[j] = is_mul ? k : is_div ? 1.0f / k : is_sub && const_first ? -1.0f : 1.0f;
    shift[j] = is_add ? k : is_sub ? (const_first ? k : -k) : 0.0f;
  }
  st = add_scale_shift(x, n, v, axis, scale, shift, len);
  free(scale);
  free(shift);
  return st;
}

/* PRelu with a slope computed at run time: relu(x) + slope * min(x, 0), broadcasting. */
static cn_status prelu_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                               cn_onnx_value *s) {
  int src, pos, neg, slope, node;
  cn_activation relu = cn_act_relu();
  cn_status st = cn_onnx_need_whole(x, n, "the slope");
  if (st == CN_OK) st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_activation, cn_onnx_out_name(n), "/pos", &src, 1, &relu, &pos);
  if (st == CN_OK) st = cn_onnx_scalar_op(x, n, CN_BIN_MIN, src, 0.0f, "/neg", &neg);
  if (st == CN_OK) st = cn_onnx_ranked(x, n, s, cn_onnx_rank(x, v), &slope);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_MUL, neg, slope, "/sloped", &neg);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_ADD, pos, neg, NULL, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_prelu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v, *s = cn_onnx_input(x, n, 1);
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  if (s && s->kind == CN_ONNX_ACT) return prelu_runtime(x, n, v, s);
  if (!s || s->kind != CN_ONNX_CONST)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "the slope must be a constant");
  if ((st = cn_onnx_const_to_float(&s->c, s->name)) != CN_OK) return st;
  cn_onnx_const slope = s->c; /* shares the values */
  int r = cn_onnx_rank(x, v);
  if (x->opset < 7 && slope.rank == 1 && r > 2 && slope.numel == v->dims[1 + x->whole]) {
    /* Before opset 7 a 1-D slope is per channel (axis 1), as PyTorch exports it. */
    slope.rank = r - 1;
    for (int k = 1; k < slope.rank; k++) slope.dims[k] = 1;
  }
  if (cn_onnx_const_spans_batch(x, v, &slope))
    return CN_ONNX_BATCH_FAIL(x, n, "a slope that varies along the batch axis");
  cn_prelu_attrs a = {0};
  return cn_onnx_add_const_op(x, n, v, &slope, &cn_op_prelu, &a, &a.slope_shape);
}

/* Computed operands of different ranks: numpy aligns them right, which the engine can follow only
 * when the graph runs as one sample (a lower-rank operand has no batch axis). */
static cn_status binary_ranked(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value **vs) {
  if (!x->whole) return CN_ONNX_BATCH_FAIL(x, n, "operands of different ranks");
  int r = 0, srcs[64], node;
  cn_status st = CN_OK;
  for (size_t k = 0; st == CN_OK && k < n->n_input; k++) {
    if (!vs[k]) st = cn_onnx_act_input(x, n, k, &vs[k]);
    if (st == CN_OK && cn_onnx_rank(x, vs[k]) > r) r = cn_onnx_rank(x, vs[k]);
  }
  for (size_t k = 0; st == CN_OK && k < n->n_input; k++)
    st = cn_onnx_ranked(x, n, vs[k], r, &srcs[k]);
  cn_binary_attrs b = {binary_kind(n->op_type), CN_CONST_NONE, {0}};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_binary, cn_onnx_out_name(n), NULL, srcs, (int)n->n_input, &b,
                          &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* Where(cond, a, b) in ONNX order: the computed operands at one rank, at most one constant. */
static cn_status conv_where(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_input != 3) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "Where takes three inputs");
  cn_onnx_value *vs[3];
  int pos = -1, r = 0, same = 1, srcs[3], k_src = 0, node;
  cn_status st = CN_OK;
  for (int k = 0; st == CN_OK && k < 3; k++) {
    vs[k] = cn_onnx_input(x, n, (size_t)k);
    if (vs[k] && vs[k]->kind == CN_ONNX_CONST) {
      if (pos >= 0) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "more than one constant input");
      pos = k;
      st = cn_onnx_const_to_float(&vs[k]->c, vs[k]->name);
      continue;
    }
    st = cn_onnx_act_input(x, n, (size_t)k, &vs[k]);
    if (st != CN_OK) return st;
    if (r && cn_onnx_rank(x, vs[k]) != r) same = 0;
    if (cn_onnx_rank(x, vs[k]) > r) r = cn_onnx_rank(x, vs[k]);
  }
  if (st != CN_OK) return st;
  if (!same) st = cn_onnx_need_whole(x, n, "operands of different ranks");
  const cn_onnx_const *c = pos >= 0 ? &vs[pos]->c : NULL;
  cn_onnx_value *act = vs[pos == 0 ? 1 : 0];
  if (st == CN_OK && c && c->rank > r)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "a constant of higher rank than the others");
  if (st == CN_OK && c && cn_onnx_const_spans_batch(x, act, c))
    return CN_ONNX_BATCH_FAIL(x, n, "a constant operand that varies along the batch axis");
  for (int k = 0; st == CN_OK && k < 3; k++)
    if (k != pos) st = cn_onnx_ranked(x, n, vs[k], r, &srcs[k_src++]);
  static const cn_const_operand at[] = {CN_CONST_FIRST, CN_CONST_SECOND, CN_CONST_LAST};
  cn_binary_attrs a = {CN_BIN_WHERE, pos < 0 ? CN_CONST_NONE : at[pos], {0}};
  if (c) a.b_shape = cn_shape_make(c->rank, c->dims);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_binary, cn_onnx_out_name(n), NULL, srcs, k_src, &a, &node);
  if (st == CN_OK && c) st = cn_onnx_set_param_copy(x, node, 0, c, c->numel);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_binary(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_input < 1 || n->n_input > 64)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "1 to 64 inputs");
  if (cn_onnx_attr_int(n, "broadcast", 0) && cn_onnx_attr(n, "axis"))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "legacy broadcast with axis");
  cn_binary_kind kind = binary_kind(n->op_type);
  int variadic = kind == CN_BIN_ADD || kind == CN_BIN_MUL || kind == CN_BIN_MAX ||
                 kind == CN_BIN_MIN || kind == CN_BIN_MEAN;
  if (!variadic && n->n_input != 2)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "%s takes two inputs", n->op_type);
  if (n->n_input == 2) {
    cn_onnx_value *a0 = cn_onnx_input(x, n, 0), *a1 = cn_onnx_input(x, n, 1);
    if (a0 && a1 && a0->kind == CN_ONNX_ACT && a1->kind == CN_ONNX_CONST)
      return binary_with_const(x, n, a0, &a1->c, 0);
    if (a0 && a1 && a0->kind == CN_ONNX_CONST && a1->kind == CN_ONNX_ACT)
      return binary_with_const(x, n, a1, &a0->c, 1);
  }
  cn_onnx_value *vs[64] = {NULL};
  int srcs[64], nhwc = 0, flat = 1, same = 1, node;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = cn_onnx_act_input(x, n, k, &vs[k]);
    if (st != CN_OK) return st;
    if (vs[k]->rank != vs[0]->rank) return binary_ranked(x, n, vs);
    same &= memcmp(vs[k]->dims, vs[0]->dims, sizeof vs[0]->dims) == 0;
    nhwc |= vs[k]->layout == CN_ONNX_NHWC;
    flat &= vs[k]->layout == CN_ONNX_FLAT && vs[k]->flat_src == vs[0]->flat_src;
  }
  if (n->n_input == 1) {
    cn_onnx_alias_output(x, n, 0, vs[0], vs[0]->node);
    return CN_OK;
  }
  flat &= same;
  nhwc &= vs[0]->rank == 4;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = flat   ? (srcs[k] = vs[k]->node, CN_OK)
                   : nhwc ? cn_onnx_nhwc(x, vs[k], &srcs[k])
                          : cn_onnx_plain(x, vs[k], &srcs[k]);
    if (st != CN_OK) return st;
  }
  cn_binary_attrs b = {binary_kind(n->op_type), CN_CONST_NONE, {0}};
  cn_status st = cn_onnx_add_node(x, &cn_op_binary, cn_onnx_out_name(n), NULL, srcs,
                                  (int)n->n_input, &b, &node);
  if (st == CN_OK)
    st = cn_onnx_set_output(x, n, 0, node,
                            flat   ? CN_ONNX_FLAT
                            : nhwc ? CN_ONNX_NHWC
                                   : CN_ONNX_PLAIN);
  if (st == CN_OK && flat) {
    cn_onnx_value *o = cn_onnx_find(x, n->output[0]);
    o->flat_src = vs[0]->flat_src;
    memcpy(o->flat_chw, vs[0]->flat_chw, sizeof o->flat_chw);
    o->plain_node = -1;
  }
  return st;
}

const cn_onnx_converter cn_onnx_elementwise_converters[] = {
    {"Add", conv_binary},
    {"Sub", conv_binary},
    {"Mul", conv_binary},
    {"Div", conv_binary},
    {"Sum", conv_binary},
    {"Max", conv_binary},
    {"Min", conv_binary},
    {"Mean", conv_binary},
    {"Identity", conv_identity},
    {"Dropout", conv_dropout},
    {"Relu", conv_relu},
    {"LeakyRelu", conv_leaky_relu},
    {"Sigmoid", conv_sigmoid},
    {"Tanh", conv_tanh},
    {"Elu", conv_elu},
    {"HardSigmoid", conv_hard_sigmoid},
    {"Clip", conv_clip},
    {"Softmax", conv_softmax},
    {"LogSoftmax", conv_log_softmax},
    {"HardSwish", conv_hard_swish},
    {"Exp", conv_plain_unary},
    {"Log", conv_plain_unary},
    {"Sqrt", conv_plain_unary},
    {"Abs", conv_plain_unary},
    {"Neg", conv_plain_unary},
    {"Reciprocal", conv_plain_unary},
    {"Softplus", conv_plain_unary},
    {"Erf", conv_plain_unary},
    {"Floor", conv_plain_unary},
    {"Ceil", conv_plain_unary},
    {"PRelu", conv_prelu},
    {"LRN", conv_lrn},
    {"Pow", conv_binary},
    {"Less", conv_binary},
    {"LessOrEqual", conv_binary},
    {"Greater", conv_binary},
    {"GreaterOrEqual", conv_binary},
    {"Equal", conv_binary},
    {"Where", conv_where},
    {"CastLike", conv_cast_like},
    {"Selu", conv_selu},
    {NULL, NULL},
};
