/* ONNX operators to engine nodes. Activations keep ONNX's batch-first dims; 4-D ones live in the
 * engine as NHWC once a convolution or pooling has touched them, and are transposed back to ONNX
 * order only where an operator depends on the order (Reshape, Transpose, Flatten not feeding a
 * Gemm). Every operator or attribute value that has no exact engine equivalent is refused by
 * name. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx_internal.h"
#include "ops/ops_onnx.h"

/* ---- attributes ---------------------------------------------------------------------------- */

const Onnx__AttributeProto *cn_onnx_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0) return n->attribute[k];
  return NULL;
}

int64_t cn_onnx_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  return a ? a->i : dflt;
}

float cn_onnx_attr_float(const Onnx__NodeProto *n, const char *name, float dflt) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  return a ? a->f : dflt;
}

const char *cn_onnx_attr_string(const Onnx__NodeProto *n, const char *name, const char *dflt,
                                char *buf, size_t cap) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  if (!a || !a->has_s) return dflt;
  size_t len = a->s.len < cap - 1 ? a->s.len : cap - 1;
  memcpy(buf, a->s.data, len);
  buf[len] = 0;
  return buf;
}

/* ints attribute into out (at most cap values); returns the count, or -1 when absent/too long. */
static int attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int cap) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  if (!a || a->n_ints > (size_t)cap) return -1;
  for (size_t k = 0; k < a->n_ints; k++) out[k] = a->ints[k];
  return (int)a->n_ints;
}

/* ---- values -------------------------------------------------------------------------------- */

static const char *label(const Onnx__NodeProto *n) {
  if (n->name && *n->name) return n->name;
  return n->n_output ? n->output[0] : "?";
}

static const char *out_name(const Onnx__NodeProto *n) {
  return n->n_output && *n->output[0] ? n->output[0] : label(n);
}

#define FAIL(x, n, status, ...)                                                                    \
  cn_fail_context(cn_fail(status, __VA_ARGS__), "%s: node %s (%s)", (x)->file, label(n),           \
                  (n)->op_type)

/* A refusal that only the batch axis causes: the driver retries with each tensor as one sample. */
#define BATCH_FAIL(x, n, ...)                                                                      \
  ((x)->want_whole = !(x)->whole, FAIL(x, n, CN_ERR_UNSUPPORTED, __VA_ARGS__))

/* The ONNX rank of an activation. */
static int onnx_rank(const cn_onnx_ctx *x, const cn_onnx_value *v) {
  return v->rank - x->whole;
}

/* ONNX axis `axis` (negative from the end) of activation v as an index into v->dims, or -1 when
 * out of range. */
static int dims_axis(const cn_onnx_ctx *x, const cn_onnx_value *v, int64_t axis) {
  int r = onnx_rank(x, v);
  if (axis < 0) axis += r;
  return axis < 0 || axis >= r ? -1 : (int)axis + x->whole;
}

static cn_onnx_value *input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  if (k >= n->n_input || !*n->input[k]) return NULL;
  return cn_onnx_find(x, n->input[k]);
}

static const cn_onnx_const *const_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  cn_onnx_value *v = input(x, n, k);
  return v && v->kind == CN_ONNX_CONST ? &v->c : NULL;
}

/* Input k must be an activation (a computed tensor). */
static cn_status act_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, cn_onnx_value **v) {
  *v = input(x, n, k);
  if (!*v) return FAIL(x, n, CN_ERR_FORMAT, "input %zu is missing", k);
  if ((*v)->kind == CN_ONNX_NONE)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "input '%s' is an output convnet does not compute",
                (*v)->name);
  if ((*v)->kind != CN_ONNX_ACT)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "input '%s' must be computed, not a constant",
                (*v)->name);
  return CN_OK;
}

/* Input k must be a float constant (a weight). */
static cn_status weight_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                              const cn_onnx_const **c) {
  cn_onnx_value *v = input(x, n, k);
  if (!v || v->kind != CN_ONNX_CONST)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "input %zu must be a constant (initializer)", k);
  cn_status st = cn_onnx_const_to_float(&v->c, v->name);
  *c = &v->c;
  return st;
}

/* Records the output value of node n (output k) as engine node `node` stored in `layout`; the
 * ONNX dims follow from the engine shape. */
static cn_status set_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, int node,
                            cn_onnx_layout layout) {
  if (k >= n->n_output || !*n->output[k]) return CN_OK;
  cn_onnx_value *v = cn_onnx_find(x, n->output[k]);
  const cn_shape *s = &x->g->nodes[node].shape;
  v->kind = CN_ONNX_ACT;
  v->node = node;
  v->layout = layout;
  v->rank = s->rank + 1;
  v->dims[0] = x->batch;
  if (layout == CN_ONNX_NHWC) {
    v->dims[1] = s->dim[2];
    v->dims[2] = s->dim[0];
    v->dims[3] = s->dim[1];
  } else {
    for (int d = 0; d < s->rank; d++) v->dims[d + 1] = s->dim[d];
  }
  if (layout == CN_ONNX_PLAIN) v->plain_node = node;
  if (layout == CN_ONNX_NHWC) v->nhwc_node = node;
  return CN_OK;
}

/* An output that is the input, unchanged (Identity, Dropout, elementwise ops keep layouts). */
static void alias_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                         const cn_onnx_value *src, int node) {
  if (k >= n->n_output || !*n->output[k]) return;
  cn_onnx_value *v = cn_onnx_find(x, n->output[k]);
  const char *name = v->name;
  *v = *src;
  v->name = name;
  memset(&v->c, 0, sizeof v->c);
  if (node != src->node) {
    v->node = node;
    v->plain_node = src->layout == CN_ONNX_PLAIN ? node : -1;
    v->nhwc_node = src->layout == CN_ONNX_NHWC ? node : -1;
  }
}

static cn_status add_transpose(cn_onnx_ctx *x, int src, const char *suffix, int rank,
                               const int *perm, int *node) {
  cn_onnx_transpose_attrs a = {.rank = rank};
  memcpy(a.perm, perm, (size_t)rank * sizeof *perm);
  return cn_onnx_add_node(x, &cn_op_onnx_transpose, x->g->nodes[src].name, suffix, &src, 1, &a,
                          node);
}

cn_status cn_onnx_plain(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->plain_node >= 0) {
    *node = v->plain_node;
    return CN_OK;
  }
  cn_status st = CN_OK;
  if (v->layout == CN_ONNX_NHWC) {
    st = add_transpose(x, v->node, "/nchw", 3, (int[]){2, 0, 1}, node);
  } else if (v->layout == CN_ONNX_FLAT) {
    int chw;
    st = add_transpose(x, v->flat_src, "/nchw", 3, (int[]){2, 0, 1}, &chw);
    if (st == CN_OK)
      st = cn_onnx_add_node(x, &cn_op_flatten, x->g->nodes[v->node].name, "/nchw", &chw, 1, NULL,
                            node);
  } else {
    *node = v->node;
  }
  if (st == CN_OK) v->plain_node = *node;
  return st;
}

cn_status cn_onnx_nhwc(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->nhwc_node >= 0) {
    *node = v->nhwc_node;
    return CN_OK;
  }
  if (v->rank != 4 || x->whole)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: '%s' must be a 4-D (N,C,H,W) tensor with the batch first (the graph also "
                   "works across its first axis)",
                   x->file, v->name);
  int plain;
  cn_status st = cn_onnx_plain(x, v, &plain);
  if (st == CN_OK) st = add_transpose(x, plain, "/nhwc", 3, (int[]){1, 2, 0}, node);
  if (st == CN_OK) v->nhwc_node = *node;
  return st;
}

/* A float array copy of a constant's values, ready to hand to cn_onnx_set_param. */
static float *float_copy(const cn_onnx_const *c, int64_t numel) {
  float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
  if (f)
    for (int64_t k = 0; k < numel; k++) f[k] = c->f[c->numel == 1 ? 0 : k];
  return f;
}

static cn_status set_param_copy(cn_onnx_ctx *x, int node, int param, const cn_onnx_const *c,
                                int64_t numel) {
  float *f = float_copy(c, numel);
  if (!f) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", x->file);
  return cn_onnx_set_param(x, node, param, f);
}

/* ---- elementwise activations --------------------------------------------------------------- */

static cn_status add_activation(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_activation act) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  int node;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_activation, out_name(n), NULL, &v->node, 1, &act, &node);
  if (st != CN_OK) return st;
  free(x->g->nodes[node].type);
  x->g->nodes[node].type = strdup(n->op_type);
  if (!x->g->nodes[node].type) return cn_fail(CN_ERR_NOMEM, "out of memory");
  alias_output(x, n, 0, v, node);
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
  cn_status st = act_input(x, n, 0, &v);
  int node;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_unary, out_name(n), NULL, &v->node, 1, &a, &node);
  if (st == CN_OK) alias_output(x, n, 0, v, node);
  return st;
}

static cn_status conv_hard_sigmoid(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_unary_attrs a = {.kind = CN_UN_HARD_SIGMOID,
                      .alpha = cn_onnx_attr_float(n, "alpha", 0.2f),
                      .beta = cn_onnx_attr_float(n, "beta", 0.5f)};
  return add_unary(x, n, a);
}

static cn_status conv_hard_swish(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return add_unary(x, n, (cn_unary_attrs){.kind = CN_UN_HARD_SWISH});
}

/* Clip's bound: an attribute before opset 11, an optional constant input after. */
static cn_status clip_bound(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, const char *attr,
                            float dflt, float *out) {
  *out = cn_onnx_attr_float(n, attr, dflt);
  cn_onnx_value *v = input(x, n, k);
  if (!v) return CN_OK;
  if (v->kind != CN_ONNX_CONST || v->c.numel != 1)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "%s must be a constant scalar", attr);
  *out = (float)cn_onnx_const_get(&v->c, 0);
  return CN_OK;
}

static cn_status conv_clip(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
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
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK) alias_output(x, n, 0, v, v->node);
  return st;
}

static cn_status conv_dropout(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  const cn_onnx_const *training = const_input(x, n, 2);
  if (training && training->numel == 1 && cn_onnx_const_get(training, 0) != 0)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "training_mode is set");
  if (cn_onnx_attr_int(n, "is_test", 1) == 0 && x->opset < 7)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "is_test is 0");
  return conv_identity(x, n); /* the mask output stays uncomputed: using it fails by name */
}

/* ---- softmax ------------------------------------------------------------------------------- */

/* The engine's Keras-style axis (counting the batch) for ONNX axis `axis` of value v. */
static int engine_axis(const cn_onnx_value *v, int axis) {
  static const int nhwc_axis[4] = {0, 3, 1, 2};
  return v->layout == CN_ONNX_NHWC ? nhwc_axis[axis] : axis;
}

static cn_status softmax_like(cn_onnx_ctx *x, const Onnx__NodeProto *n, int log) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axis = dims_axis(x, v, cn_onnx_attr_int(n, "axis", x->opset >= 13 ? -1 : 1));
  if (axis < 0) return FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (axis == 0) return BATCH_FAIL(x, n, "axis 0 (the batch axis)");
  /* Before opset 13 softmax runs over all axes from `axis` on, flattened; from axis 1 that set
   * is the whole sample in any layout. */
  int flatten = x->opset < 13 && axis < v->rank - 1;
  int src = v->node, node;
  cn_onnx_value like = *v;
  if (v->layout != CN_ONNX_PLAIN && !(v->layout == CN_ONNX_NHWC && !flatten) && axis != 1) {
    st = cn_onnx_plain(x, v, &src);
    like.layout = CN_ONNX_PLAIN;
  }
  cn_softmax_attrs a = {
      .axis = flatten ? (int)axis : engine_axis(&like, (int)axis), .log = log, .flatten = flatten};
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_softmax, out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) alias_output(x, n, 0, &like, node);
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
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK && v->rank != 4) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_lrn_attrs a = {(int)cn_onnx_attr_int(n, "size", 0), cn_onnx_attr_float(n, "alpha", 1e-4f),
                    cn_onnx_attr_float(n, "beta", 0.75f), cn_onnx_attr_float(n, "bias", 1.0f)};
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_lrn, out_name(n), NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* Resize (opset 10+) and Upsample (7-9) along H and W of a 4-D tensor. */
static cn_status resize_attrs(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                              cn_resize_attrs *r) {
  int upsample = strcmp(n->op_type, "Upsample") == 0;
  char buf[40], mode_buf[16];
  const char *mode = cn_onnx_attr_string(n, "mode", "nearest", mode_buf, sizeof mode_buf);
  if (strcmp(mode, "nearest") && strcmp(mode, "linear") && strcmp(mode, "bilinear"))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "mode %s", mode);
  r->mode = mode[0] == 'n' ? CN_RESIZE_MODE_NEAREST : CN_RESIZE_MODE_LINEAR;
  const char *coord =
      upsample || x->opset < 11
          ? "asymmetric"
          : cn_onnx_attr_string(n, "coordinate_transformation_mode", "half_pixel", buf, sizeof buf);
  static const char *const coords[] = {"half_pixel",
                                       "asymmetric",
                                       "align_corners",
                                       "pytorch_half_pixel",
                                       "tf_half_pixel_for_nearest",
                                       "half_pixel_symmetric"};
  int c = 0;
  while (c < 6 && strcmp(coords[c], coord) != 0) c++;
  if (c == 6) return FAIL(x, n, CN_ERR_UNSUPPORTED, "coordinate_transformation_mode %s", coord);
  r->coord = (cn_resize_coord)c;
  const char *nm =
      upsample || x->opset < 11
          ? "floor"
          : cn_onnx_attr_string(n, "nearest_mode", "round_prefer_floor", buf, sizeof buf);
  static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  int m = 0;
  while (m < 4 && strcmp(nearest[m], nm) != 0) m++;
  if (m == 4) return FAIL(x, n, CN_ERR_UNSUPPORTED, "nearest_mode %s", nm);
  r->nearest = (cn_resize_nearest)m;
  if (cn_onnx_attr_int(n, "antialias", 0) || cn_onnx_attr_int(n, "exclude_outside", 0))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "antialias / exclude_outside");
  char kp[24];
  if (strcmp(cn_onnx_attr_string(n, "keep_aspect_ratio_policy", "stretch", kp, sizeof kp),
             "stretch") != 0)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "keep_aspect_ratio_policy %s", kp);
  (void)v;
  return CN_OK;
}

/* align_corners given scales: ONNX maps x to x * (in - 1) / (in * scale - 1), with in * scale
 * fractional when the scale does not divide evenly (cn_op_resize's align_corners uses the whole
 * output size). That is the asymmetric transform x / s with s = (in * scale - 1) / (in - 1) and
 * the output size floor(in * scale). With in == 1 or one output pixel every x maps to 0. */
static void align_corners_scales(cn_resize_attrs *r, int64_t ih, int64_t iw, double fh, double fw) {
  int64_t in[2] = {ih, iw};
  double f[2] = {fh, fw}, s[2];
  int64_t out[2];
  for (int a = 0; a < 2; a++) {
    double resized = (double)in[a] * f[a];
    out[a] = (int64_t)floor(resized);
    s[a] = in[a] > 1 && resized > 1 ? (resized - 1) / (double)(in[a] - 1) : 1.0;
  }
  r->coord = CN_COORD_ASYMMETRIC;
  r->out_h = out[0], r->out_w = out[1];
  r->scale_h = (float)s[0], r->scale_w = (float)s[1];
}

static cn_status conv_resize(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  if (v->rank != 4) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  cn_resize_attrs r = {0};
  if ((st = resize_attrs(x, n, v, &r)) != CN_OK) return st;
  int upsample = strcmp(n->op_type, "Upsample") == 0;
  size_t scales_at = upsample || x->opset < 11 ? 1 : 2;
  const cn_onnx_const *sc = const_input(x, n, scales_at),
                      *sz = upsample ? NULL : const_input(x, n, 3);
  if ((input(x, n, scales_at) && !sc) || (!upsample && input(x, n, 3) && !sz))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "scales and sizes must be constants");
  if (sc && sc->numel == 0) sc = NULL;
  int64_t axes[4] = {0, 1, 2, 3};
  int na = attr_ints(n, "axes", axes, 4);
  if (na < 0) na = 4;
  for (int k = 0; k < na; k++) axes[k] = axes[k] < 0 ? axes[k] + 4 : axes[k];
  double f[4] = {1, 1, 1, 1};
  int64_t size[4] = {v->dims[0], v->dims[1], v->dims[2], v->dims[3]};
  const Onnx__AttributeProto *sa = upsample ? cn_onnx_attr(n, "scales") : NULL;
  if (sa && sa->n_floats == 4)
    for (int k = 0; k < 4; k++) f[k] = sa->floats[k];
  else if (sc && sc->numel == na)
    for (int k = 0; k < na; k++) f[axes[k] & 3] = cn_onnx_const_get(sc, k);
  else if (sz && sz->numel == na && sz->is_int)
    for (int k = 0; k < na; k++) size[axes[k] & 3] = sz->i[k];
  else
    return FAIL(x, n, CN_ERR_FORMAT, "needs scales or sizes for its %d axes", na);
  if (f[0] != 1 || f[1] != 1 || size[0] != v->dims[0] || size[1] != v->dims[1])
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "resizing the batch or channel axis");
  if (sz) {
    r.out_h = size[2], r.out_w = size[3];
  } else if (r.coord == CN_COORD_ALIGN_CORNERS) {
    align_corners_scales(&r, v->dims[2], v->dims[3], f[2], f[3]);
  } else {
    r.scale_h = (float)f[2], r.scale_w = (float)f[3];
  }
  int node;
  st = cn_onnx_nhwc(x, v, &node);
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_resize, out_name(n), NULL, &node, 1, &r, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* Per-sample engine axis of ONNX axis a (>= 1) of a value stored in `layout`. */
static int sample_axis(cn_onnx_layout layout, int a) {
  static const int nhwc[4] = {-1, 2, 0, 1};
  return layout == CN_ONNX_NHWC ? nhwc[a] : a - 1;
}

static cn_status conv_pad(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int r = onnx_rank(x, v);
  int64_t pads[2 * CN_MAX_RANK], axes[CN_MAX_RANK];
  const cn_onnx_const *pc = const_input(x, n, 1), *vc = const_input(x, n, 2),
                      *ac = const_input(x, n, 3);
  int np = pc ? (int)pc->numel : attr_ints(n, x->opset < 11 ? "pads" : "-", pads, 2 * CN_MAX_RANK);
  if ((input(x, n, 1) && !pc) || (input(x, n, 2) && !vc) || (input(x, n, 3) && !ac))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "pads, value and axes must be constants");
  if (pc && (!pc->is_int || np > 2 * CN_MAX_RANK)) return FAIL(x, n, CN_ERR_FORMAT, "bad pads");
  for (int k = 0; pc && k < np; k++) pads[k] = pc->i[k];
  int na = ac ? (int)ac->numel : r;
  if (na > r || (ac && !ac->is_int) || np != 2 * na)
    return FAIL(x, n, CN_ERR_FORMAT, "%d pads for %d axes", np, na);
  for (int k = 0; k < na; k++) {
    axes[k] = ac ? ac->i[k] : k;
    if (axes[k] < 0) axes[k] += r;
    if (axes[k] < 0 || axes[k] >= r) return FAIL(x, n, CN_ERR_FORMAT, "bad axes");
    axes[k] += x->whole;
  }
  char buf[16];
  const char *mode = cn_onnx_attr_string(n, "mode", "constant", buf, sizeof buf);
  cn_pad_attrs a = {.mode = strcmp(mode, "reflect") == 0 ? CN_PADMODE_REFLECT
                            : strcmp(mode, "edge") == 0  ? CN_PADMODE_EDGE
                            : strcmp(mode, "wrap") == 0  ? CN_PADMODE_WRAP
                                                         : CN_PADMODE_CONSTANT,
                    .value = vc && vc->numel == 1 ? (float)cn_onnx_const_get(vc, 0)
                                                  : cn_onnx_attr_float(n, "value", 0.0f),
                    .rank = v->rank - 1};
  if (a.mode == CN_PADMODE_CONSTANT && strcmp(mode, "constant") != 0)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "mode %s", mode);
  int src;
  cn_onnx_layout layout = v->layout == CN_ONNX_NHWC ? CN_ONNX_NHWC : CN_ONNX_PLAIN;
  st = layout == CN_ONNX_NHWC ? cn_onnx_nhwc(x, v, &src) : cn_onnx_plain(x, v, &src);
  for (int k = 0; st == CN_OK && k < na; k++) {
    if (axes[k] == 0) {
      if (pads[k] || pads[k + na]) return BATCH_FAIL(x, n, "padding the batch axis");
      continue;
    }
    int e = sample_axis(layout, (int)axes[k]);
    a.begin[e] = pads[k];
    a.end[e] = pads[k + na];
  }
  int node;
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_pad, out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, layout);
  return st;
}

static cn_status reshape_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                int rank, const int64_t *dims);

/* ---- convolution and pooling --------------------------------------------------------------- */

/* Padding of one spatial axis: before and after. */
typedef struct pads2 {
  int top, bottom, left, right;
} pads2;

/* A window attribute (kernel_shape, strides, dilations: 2 values; pads: 4) into out. A 1-D
 * window (one_d) is the 2-D window of height 1 over an (N, C, 1, L) view: its values go to the
 * width axis, the height axis gets `fill` (pads: 0). Returns the 2-D count, or -1 when absent
 * or too long. */
static int window_ints(const Onnx__NodeProto *n, const char *name, int one_d, int64_t fill,
                       int64_t *out) {
  int64_t v[8];
  int count = attr_ints(n, name, v, 8);
  if (!one_d || count < 0) {
    for (int k = 0; k < count; k++) out[k] = v[k];
    return count;
  }
  if (count == 1) {
    out[0] = fill, out[1] = v[0];
    return 2;
  }
  if (count == 2 && strcmp(name, "pads") == 0) {
    out[0] = 0, out[1] = v[0], out[2] = 0, out[3] = v[1];
    return 4;
  }
  return count + 8; /* never a valid 2-D count */
}

/* The pads of a sliding window from auto_pad / pads, for input (ih, iw). */
static cn_status window_pads(cn_onnx_ctx *x, const Onnx__NodeProto *n, int64_t ih, int64_t iw,
                             const int *k, const int *s, const int *d, int one_d, pads2 *p) {
  char buf[32];
  const char *mode = cn_onnx_attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
  int64_t in[2] = {ih, iw}, before[2] = {0, 0}, after[2] = {0, 0};
  if (strcmp(mode, "SAME_UPPER") == 0 || strcmp(mode, "SAME_LOWER") == 0) {
    for (int a = 0; a < 2; a++) {
      int64_t out = (in[a] + s[a] - 1) / s[a];
      int64_t total = (out - 1) * s[a] + (int64_t)(k[a] - 1) * d[a] + 1 - in[a];
      if (total < 0) total = 0;
      before[a] = mode[5] == 'U' ? total / 2 : total - total / 2;
      after[a] = total - before[a];
    }
  } else if (strcmp(mode, "NOTSET") == 0) {
    int64_t pads[8] = {0, 0, 0, 0};
    int np = window_ints(n, "pads", one_d, 0, pads);
    if (np != -1 && np != 4) return FAIL(x, n, CN_ERR_FORMAT, "pads must have 4 values");
    before[0] = pads[0], before[1] = pads[1], after[0] = pads[2], after[1] = pads[3];
  } else if (strcmp(mode, "VALID") != 0) {
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "auto_pad %s", mode);
  }
  for (int a = 0; a < 2; a++)
    if (before[a] < 0 || after[a] < 0 || before[a] > 65536 || after[a] > 65536)
      return FAIL(x, n, CN_ERR_UNSUPPORTED, "negative or huge pads");
  *p = (pads2){(int)before[0], (int)after[0], (int)before[1], (int)after[1]};
  return CN_OK;
}

/* Kernel, strides and dilations (2-D, or 1-D as height 1). */
static cn_status window_geometry(cn_onnx_ctx *x, const Onnx__NodeProto *n, int *k, int *s, int *d,
                                 int need_kernel, int one_d) {
  int64_t v[8];
  int nk = window_ints(n, "kernel_shape", one_d, 1, v);
  if (nk >= 0 && nk != 2) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D windows");
  if (nk < 0 && need_kernel) return FAIL(x, n, CN_ERR_FORMAT, "kernel_shape is missing");
  for (int a = 0; a < 2; a++) k[a] = nk == 2 ? (int)v[a] : 0;
  int ns = window_ints(n, "strides", one_d, 1, v);
  if (ns >= 0 && ns != 2) return FAIL(x, n, CN_ERR_FORMAT, "strides must have 2 values");
  for (int a = 0; a < 2; a++) s[a] = ns == 2 ? (int)v[a] : 1;
  int nd = window_ints(n, "dilations", one_d, 1, v);
  if (nd >= 0 && nd != 2) return FAIL(x, n, CN_ERR_FORMAT, "dilations must have 2 values");
  for (int a = 0; a < 2; a++) d[a] = nd == 2 ? (int)v[a] : 1;
  for (int a = 0; a < 2; a++)
    if (s[a] < 1 || d[a] < 1 || s[a] > 4096 || d[a] > 4096 || k[a] < 0 || k[a] > 65536)
      return FAIL(x, n, CN_ERR_FORMAT, "bad kernel, strides or dilations");
  return CN_OK;
}

/* 1 when the pads equal TensorFlow's 'same' rule for this window (then no padding node). */
static int pads_are_same(const pads2 *p, int64_t ih, int64_t iw, const int *k, const int *s,
                         const int *d) {
  int64_t in[2] = {ih, iw};
  int before[2] = {p->top, p->left}, after[2] = {p->bottom, p->right};
  for (int a = 0; a < 2; a++) {
    int64_t out = cn_conv_out_size(in[a], k[a], s[a], d[a], CN_PAD_SAME);
    int64_t total = (out - 1) * s[a] + (int64_t)(k[a] - 1) * d[a] + 1 - in[a];
    if (total < 0) total = 0;
    if (before[a] != cn_conv_pad_before(in[a], k[a], s[a], d[a], CN_PAD_SAME) ||
        before[a] + after[a] != total)
      return 0;
  }
  return 1;
}

static int pads_zero(const pads2 *p) {
  return !p->top && !p->bottom && !p->left && !p->right;
}

/* The NHWC input of a window op, zero-padded when the pads are not TF-'same'. */
static cn_status padded_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                              const int *k, const int *s, const int *d, int *node,
                              cn_padding *padding) {
  pads2 p;
  cn_status st = cn_onnx_nhwc(x, v, node);
  if (st == CN_OK) st = window_pads(x, n, v->dims[2], v->dims[3], k, s, d, 0, &p);
  if (st != CN_OK) return st;
  *padding = CN_PAD_VALID;
  if (pads_zero(&p)) return CN_OK;
  if (pads_are_same(&p, v->dims[2], v->dims[3], k, s, d)) {
    *padding = CN_PAD_SAME;
    return CN_OK;
  }
  cn_zeropad_attrs z = {p.top, p.bottom, p.left, p.right};
  return cn_onnx_add_node(x, &cn_op_zeropad, out_name(n), "/pad", node, 1, &z, node);
}

/* OIHW weights to the engine's conv (HWIO) or depthwise (HW, C, multiplier) layout: both put
 * (y, x) first, then input channel within the group, then output channel. */
static float *conv_kernel(const cn_onnx_const *w, int depthwise) {
  int64_t o = w->dims[0], i = w->dims[1], kh = w->dims[2], kw = w->dims[3];
  float *k = malloc((size_t)w->numel * sizeof *k);
  if (!k) return NULL;
  for (int64_t m = 0; m < o; m++)
    for (int64_t c = 0; c < i; c++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++) {
          float val = w->f[((m * i + c) * kh + y) * kw + xx];
          /* depthwise: i == 1 and output m = channel * mult + j, stored (y, x, channel, j) */
          k[((y * kw + xx) * i + c) * o + m] = val;
        }
  (void)depthwise; /* the same index order: (y, x, c, m) with c = 0 and m = channel*mult+j */
  return k;
}

static cn_status conv_conv(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  const cn_onnx_const *w, *b = NULL;
  int k[2], s[2], d[2], node;
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK) st = weight_input(x, n, 1, &w);
  if (st == CN_OK && input(x, n, 2)) st = weight_input(x, n, 2, &b);
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 0, 0);
  if (st != CN_OK) return st;
  if (v->rank != 4 || w->rank != 4) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 2-D convolutions");
  int64_t group = cn_onnx_attr_int(n, "group", 1), cin = v->dims[1], filters = w->dims[0];
  if (k[0] == 0) k[0] = (int)w->dims[2], k[1] = (int)w->dims[3];
  if (k[0] != w->dims[2] || k[1] != w->dims[3] || group < 1 || cin % group ||
      w->dims[1] != cin / group || filters % group || filters > (1 << 24) ||
      (b && b->numel != filters))
    return FAIL(x, n, CN_ERR_SHAPE, "weights do not match the input, group or kernel_shape");
  cn_padding padding;
  st = padded_input(x, n, v, k, s, d, &node, &padding);
  if (st != CN_OK) return st;
  int depthwise = group == cin && group > 1;
  if (depthwise) {
    cn_depthwise_attrs a = {
        k[0],      k[1],    s[0],           s[1], d[0], d[1], (int)(filters / cin),
        b != NULL, padding, cn_act_linear()};
    st = cn_onnx_add_node(x, &cn_op_depthwise, out_name(n), NULL, &node, 1, &a, &node);
  } else {
    cn_conv2d_attrs a = {(int)filters, k[0],       k[1],      s[0],    s[1],           d[0],
                         d[1],         (int)group, b != NULL, padding, cn_act_linear()};
    st = cn_onnx_add_node(x, &cn_op_conv2d, out_name(n), NULL, &node, 1, &a, &node);
  }
  float *kernel = st == CN_OK ? conv_kernel(w, depthwise) : NULL;
  if (st == CN_OK && !kernel) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, node, 0, kernel);
  if (st == CN_OK && b) st = set_param_copy(x, node, 1, b, filters);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* A 1-D window op's input (N, C, L) as the 4-D value (N, C, 1, L) in *v4. */
static cn_status height_one_view(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 cn_onnx_value *v4) {
  int src;
  cn_status st = cn_onnx_plain(x, v, &src);
  cn_reshape_attrs a = {cn_shape_make(3, (int64_t[]){v->dims[1], 1, v->dims[2]})};
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_reshape, out_name(n), "/2d", &src, 1, &a, &src);
  if (st != CN_OK) return st;
  *v4 = *v;
  memset(&v4->c, 0, sizeof v4->c);
  v4->rank = 4;
  v4->dims[2] = 1;
  v4->dims[3] = v->dims[2];
  v4->node = v4->plain_node = src;
  v4->layout = CN_ONNX_PLAIN;
  v4->nhwc_node = -1;
  return CN_OK;
}

/* Output 0, computed as (N, C, 1, L), back to ONNX's (N, C, L). */
static cn_status drop_height(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value o = *cn_onnx_find(x, n->output[0]);
  return reshape_output(x, n, &o, 2, (int64_t[]){o.dims[1], o.dims[3]});
}

/* ConvTranspose pads: explicit, or from auto_pad / output_shape as the ONNX spec derives them. */
static cn_status deconv_pads(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                             const int *k, const int *s, const int *d, int one_d, int64_t *out_pad,
                             pads2 *p) {
  char buf[32];
  const char *mode = cn_onnx_attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
  int64_t shape[8];
  int ns = window_ints(n, "output_shape", one_d, 1, shape);
  if (ns < 0 && strncmp(mode, "SAME", 4) != 0) return window_pads(x, n, 1, 1, k, s, d, one_d, p);
  if (ns >= 0 && ns != 2) return FAIL(x, n, CN_ERR_UNSUPPORTED, "output_shape of %d values", ns);
  int before[2], after[2];
  for (int a = 0; a < 2; a++) {
    int64_t in = v->dims[2 + a], want = ns == 2 ? shape[a] : in * s[a];
    int64_t total = s[a] * (in - 1) + out_pad[a] + (int64_t)(k[a] - 1) * d[a] + 1 - want;
    if (total < 0) { /* a larger output_shape: the extra goes after, as output padding */
      out_pad[a] -= total;
      total = 0;
    }
    if (total > 65536 || out_pad[a] > 65536) return FAIL(x, n, CN_ERR_UNSUPPORTED, "output_shape");
    int lower = strcmp(mode, "SAME_LOWER") == 0;
    before[a] = (int)(lower ? total - total / 2 : total / 2);
    after[a] = (int)(total - before[a]);
  }
  *p = (pads2){before[0], after[0], before[1], after[1]};
  return CN_OK;
}

/* ONNX (in, filters/groups, kh, kw) to the engine's (kh, kw, filters/groups, in). */
static float *deconv_kernel(const cn_onnx_const *w) {
  int64_t ci = w->dims[0], fg = w->dims[1], kh = w->dims[2], kw = w->dims[3];
  float *k = malloc((size_t)w->numel * sizeof *k);
  if (!k) return NULL;
  for (int64_t i = 0; i < ci; i++)
    for (int64_t f = 0; f < fg; f++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++)
          k[((y * kw + xx) * fg + f) * ci + i] = w->f[((i * fg + f) * kh + y) * kw + xx];
  return k;
}

static cn_status conv_conv_transpose(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *in, view, *v = &view;
  const cn_onnx_const *w3 = NULL, *b = NULL;
  int k[2], s[2], d[2], node;
  cn_status st = act_input(x, n, 0, &in);
  if (st == CN_OK) st = weight_input(x, n, 1, &w3);
  if (st == CN_OK && input(x, n, 2)) st = weight_input(x, n, 2, &b);
  int one_d = st == CN_OK && in->rank == 3 && w3->rank == 3 && !x->whole;
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 0, one_d);
  if (st != CN_OK) return st;
  if ((in->rank != 4 || w3->rank != 4) && !one_d)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D transposed convolutions");
  cn_onnx_const w4 = *w3, *w = &w4; /* a 1-D kernel (in, out, k) viewed as (in, out, 1, k) */
  if (one_d) {
    w4.rank = 4;
    w4.dims[3] = w3->dims[2];
    w4.dims[2] = 1;
    st = height_one_view(x, n, in, &view);
  } else {
    v = in;
  }
  if (st != CN_OK) return st;
  int64_t group = cn_onnx_attr_int(n, "group", 1), filters = w->dims[1] * group;
  if (k[0] == 0) k[0] = (int)w->dims[2], k[1] = (int)w->dims[3];
  if (k[0] != w->dims[2] || k[1] != w->dims[3] || group < 1 || w->dims[0] != v->dims[1] ||
      v->dims[1] % group || filters > (1 << 24) || (b && b->numel != filters))
    return FAIL(x, n, CN_ERR_SHAPE, "weights do not match the input, group or kernel_shape");
  int64_t out_pad[8] = {0, 0};
  int nop = window_ints(n, "output_padding", one_d, 0, out_pad);
  if (nop >= 0 && nop != 2) return FAIL(x, n, CN_ERR_FORMAT, "output_padding needs 2 values");
  pads2 p;
  st = deconv_pads(x, n, v, k, s, d, one_d, out_pad, &p);
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_conv_transpose_attrs a = {
      (int)filters,   k[0],      k[1],  s[0],   s[1],     d[0],    d[1],
      (int)group,     b != NULL, p.top, p.left, p.bottom, p.right, (int)out_pad[0],
      (int)out_pad[1]};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_conv_transpose, out_name(n), NULL, &node, 1, &a, &node);
  float *kernel = st == CN_OK ? deconv_kernel(w) : NULL;
  if (st == CN_OK && !kernel) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, node, 0, kernel);
  if (st == CN_OK && b) st = set_param_copy(x, node, 1, b, filters);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  if (st == CN_OK && one_d) st = drop_height(x, n);
  return st;
}

static cn_status conv_pool(cn_onnx_ctx *x, const Onnx__NodeProto *n, int is_max) {
  cn_onnx_value *in, view, *v = &view;
  int k[2], s[2], d[2], node;
  cn_status st = act_input(x, n, 0, &in);
  int one_d = st == CN_OK && in->rank == 3 && !x->whole;
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 1, one_d);
  if (st != CN_OK) return st;
  if (in->rank != 4 && !one_d) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D pooling");
  if (n->n_output > 1 && *n->output[1]) return FAIL(x, n, CN_ERR_UNSUPPORTED, "the Indices output");
  if (cn_onnx_attr_int(n, "storage_order", 0) != 0)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "storage_order 1");
  if (one_d)
    st = height_one_view(x, n, in, &view);
  else
    v = in;
  pads2 p;
  if (st == CN_OK) st = window_pads(x, n, v->dims[2], v->dims[3], k, s, d, one_d, &p);
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  if (st != CN_OK) return st;
  int include_pad = !is_max && cn_onnx_attr_int(n, "count_include_pad", 0) != 0;
  int ceil_mode = cn_onnx_attr_int(n, "ceil_mode", 0) != 0;
  cn_pool_attrs a = {.ph = k[0], .pw = k[1], .sh = s[0], .sw = s[1], .padding = CN_PAD_VALID};
  int plain_window = d[0] == 1 && d[1] == 1 && !ceil_mode;
  if (plain_window && !include_pad && !pads_zero(&p) &&
      pads_are_same(&p, v->dims[2], v->dims[3], k, s, d)) {
    a.padding = CN_PAD_SAME; /* TF's same padding ignores padded cells, as ONNX does here */
  } else if (!plain_window || !pads_zero(&p)) {
    a.pad_top = p.top, a.pad_left = p.left, a.pad_bottom = p.bottom, a.pad_right = p.right;
    a.ceil_mode = ceil_mode, a.count_include_pad = include_pad, a.dh = d[0], a.dw = d[1];
  }
  st = cn_onnx_add_node(x, is_max ? &cn_op_maxpool : &cn_op_avgpool, out_name(n), NULL, &node, 1,
                        &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  if (st == CN_OK && one_d) st = drop_height(x, n);
  return st;
}

static cn_status conv_maxpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_pool(x, n, 1);
}

static cn_status conv_avgpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_pool(x, n, 0);
}

static cn_status conv_global_pool(cn_onnx_ctx *x, const Onnx__NodeProto *n, int is_max) {
  cn_onnx_value *v;
  int node;
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK && v->rank != 4) return FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_global_pool_attrs a = {.keepdims = 1};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, is_max ? &cn_op_global_maxpool : &cn_op_global_avgpool, out_name(n),
                          NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* ReduceMean / ReduceMax over exactly the spatial axes of a 4-D tensor: a global pooling. */
static cn_status conv_reduce(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axes[8];
  int na = attr_ints(n, "axes", axes, 8);
  const cn_onnx_const *ac = const_input(x, n, 1);
  if (na < 0 && ac && ac->is_int && ac->numel <= 8)
    for (na = 0; na < (int)ac->numel; na++) axes[na] = ac->i[na];
  int spatial = v->rank == 4 && na == 2;
  for (int k = 0; spatial && k < 2; k++) {
    int64_t a = axes[k] < 0 ? axes[k] + 4 : axes[k];
    spatial = a == 2 + k || a == 3 - k;
  }
  if (!spatial || axes[0] == axes[1])
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "only over the two spatial axes of a 4-D tensor");
  int keep = cn_onnx_attr_int(n, "keepdims", 1) != 0, node;
  st = cn_onnx_nhwc(x, v, &node);
  cn_global_pool_attrs a = {.keepdims = keep};
  int is_max = strcmp(n->op_type, "ReduceMax") == 0;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, is_max ? &cn_op_global_maxpool : &cn_op_global_avgpool, out_name(n),
                          NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, keep ? CN_ONNX_NHWC : CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_global_avgpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_global_pool(x, n, 0);
}

static cn_status conv_global_maxpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_global_pool(x, n, 1);
}

/* ---- normalization ------------------------------------------------------------------------- */

static cn_status conv_batchnorm(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  const cn_onnx_const *p[4];
  cn_status st = act_input(x, n, 0, &v);
  for (int k = 0; st == CN_OK && k < 4; k++) st = weight_input(x, n, (size_t)k + 1, &p[k]);
  if (st != CN_OK) return st;
  if (cn_onnx_attr_int(n, "training_mode", 0) != 0 ||
      (x->opset < 7 && cn_onnx_attr_int(n, "is_test", 0) == 0 && cn_onnx_attr(n, "is_test")))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "training mode");
  if (x->opset < 9 && cn_onnx_attr_int(n, "spatial", 1) != 1)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "spatial 0");
  for (size_t k = 1; k < n->n_output; k++)
    if (*n->output[k]) return FAIL(x, n, CN_ERR_UNSUPPORTED, "running statistics outputs");
  if (onnx_rank(x, v) < 2) return FAIL(x, n, CN_ERR_UNSUPPORTED, "input without a channel axis");
  int64_t c = v->dims[1 + x->whole];
  for (int k = 0; k < 4; k++)
    if (p[k]->numel != c)
      return FAIL(x, n, CN_ERR_SHAPE, "parameters do not have %" PRId64 " values", c);
  cn_batchnorm_attrs a = {cn_onnx_attr_float(n, "epsilon", 1e-5f), 1, 1,
                          engine_axis(v, 1 + x->whole), cn_onnx_attr_float(n, "momentum", 0.9f)};
  int src = v->node, node;
  if (v->layout == CN_ONNX_FLAT) st = cn_onnx_plain(x, v, &src);
  cn_onnx_value copy = *v;
  if (v->layout == CN_ONNX_FLAT) copy.layout = CN_ONNX_PLAIN, copy.node = src;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_batchnorm, out_name(n), NULL, &src, 1, &a, &node);
  for (int k = 0; st == CN_OK && k < 4; k++) st = set_param_copy(x, node, k, p[k], c);
  if (st == CN_OK) alias_output(x, n, 0, &copy, node);
  return st;
}

static cn_status add_const_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                              const cn_onnx_const *c, const cn_op *op, void *attrs,
                              cn_shape *shape_field);
static int const_spans_batch(const cn_onnx_ctx *x, const cn_onnx_value *v, const cn_onnx_const *c);

/* Output 0 of n: v in ONNX order reshaped to the per-sample dims (rank values). */
static cn_status reshape_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                int rank, const int64_t *dims) {
  if (rank < 1 || rank > CN_MAX_RANK - 1)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "a result of rank %d", rank + 1 - x->whole);
  int src, node;
  cn_status st = cn_onnx_plain(x, v, &src);
  cn_reshape_attrs a = {cn_shape_make(rank, dims)};
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_reshape, out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* ---- matrix products ----------------------------------------------------------------------- */

/* Dense weights (in, out) from B (k, n) or B^T, scaled by alpha; rows reordered from the ONNX
 * (C,H,W) flattening to the engine's (H,W,C) when the input is a flattened NHWC tensor. */
static float *dense_kernel(const cn_onnx_const *b, int trans, float alpha, const cn_onnx_value *v) {
  int64_t kk = trans ? b->dims[1] : b->dims[0], nn = trans ? b->dims[0] : b->dims[1];
  float *w = malloc((size_t)(kk * nn > 0 ? kk * nn : 1) * sizeof *w);
  if (!w) return NULL;
  int64_t c = v->flat_chw[0], h = v->flat_chw[1], ww = v->flat_chw[2];
  for (int64_t r = 0; r < kk; r++) {
    int64_t row = r; /* engine row r holds ONNX row `row` */
    if (v->layout == CN_ONNX_FLAT) {
      int64_t ci = r % c, xi = (r / c) % ww, yi = r / (c * ww);
      row = (ci * h + yi) * ww + xi;
    }
    for (int64_t j = 0; j < nn; j++)
      w[r * nn + j] = alpha * b->f[trans ? j * kk + row : row * nn + j];
  }
  return w;
}

/* The Dense input: FLAT and PLAIN values go in as they are, NHWC ones in ONNX order. */
static cn_status dense_input(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->layout == CN_ONNX_FLAT) {
    *node = v->node;
    return CN_OK;
  }
  return cn_onnx_plain(x, v, node);
}

/* A Dense node on src (v's engine node, or v transposed) computing v * op(B) * alpha + bias;
 * bias (units values or NULL) is taken over. */
static cn_status dense_node(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                            int src, const cn_onnx_const *b, int trans, float alpha, float *bias,
                            int64_t units, int *node) {
  cn_dense_attrs a = {(int)units, bias != NULL, cn_act_linear()};
  cn_status st = cn_onnx_add_node(x, &cn_op_dense, out_name(n), NULL, &src, 1, &a, node);
  float *w = st == CN_OK ? dense_kernel(b, trans, alpha, v) : NULL;
  if (st == CN_OK && !w) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, *node, 0, w);
  if (st == CN_OK && bias) {
    st = cn_onnx_set_param(x, *node, 1, bias);
    bias = NULL;
  }
  free(bias);
  return st;
}

static cn_status add_dense(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                           const cn_onnx_const *b, int trans, float alpha, float *bias,
                           int64_t units) {
  int src, node;
  cn_status st = dense_input(x, v, &src);
  if (st == CN_OK)
    st = dense_node(x, n, v, src, b, trans, alpha, bias, units, &node);
  else
    free(bias);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* Gemm's C when it is not a per-column bias: a constant matrix or column (beta * C, which varies
 * along ONNX's first axis) or a computed tensor, added to the product already in output 0. */
static cn_status gemm_add_c(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *c,
                            float beta) {
  cn_onnx_value prod = *cn_onnx_find(x, n->output[0]);
  if (c->kind == CN_ONNX_CONST) {
    cn_onnx_const scaled = c->c;
    scaled.f = float_copy(&c->c, c->c.numel);
    if (!scaled.f) return cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < scaled.numel; k++) scaled.f[k] *= beta;
    cn_binary_attrs a = {CN_BIN_ADD, CN_CONST_LAST, {0}};
    cn_status st = add_const_op(x, n, &prod, &scaled, &cn_op_binary, &a, &a.b_shape);
    free(scaled.f);
    return st;
  }
  if (beta != 1.0f) return FAIL(x, n, CN_ERR_UNSUPPORTED, "beta with a computed C");
  if (c->rank != prod.rank) return FAIL(x, n, CN_ERR_UNSUPPORTED, "a computed C of another rank");
  int srcs[2] = {prod.node}, node;
  cn_status st = cn_onnx_plain(x, c, &srcs[1]);
  cn_binary_attrs a = {CN_BIN_ADD, CN_CONST_NONE, {0}};
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_binary, out_name(n), "/c", srcs, 2, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* Gemm's A as a Dense input: as it is, or transposed (only when each tensor is one sample). */
static cn_status gemm_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v, int trans_a,
                            int *src) {
  if (!trans_a) return dense_input(x, v, src);
  if (!x->whole) return BATCH_FAIL(x, n, "transA (moves the batch axis)");
  cn_status st = cn_onnx_plain(x, v, src);
  if (st == CN_OK) st = add_transpose(x, *src, "/T", 2, (int[]){1, 0}, src);
  return st;
}

static cn_status conv_gemm(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v, *cv = input(x, n, 2);
  const cn_onnx_const *b = NULL;
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK) st = weight_input(x, n, 1, &b);
  if (st == CN_OK && cv && cv->kind == CN_ONNX_CONST) st = cn_onnx_const_to_float(&cv->c, cv->name);
  if (st == CN_OK && cv && cv->kind == CN_ONNX_NONE)
    st = FAIL(x, n, CN_ERR_UNSUPPORTED, "input '%s' is not computed", cv->name);
  if (st != CN_OK) return st;
  int trans = cn_onnx_attr_int(n, "transB", 0) != 0;
  int trans_a = cn_onnx_attr_int(n, "transA", 0) != 0;
  float alpha = cn_onnx_attr_float(n, "alpha", 1.0f), beta = cn_onnx_attr_float(n, "beta", 1.0f);
  if (onnx_rank(x, v) != 2 || b->rank != 2 ||
      v->dims[x->whole + (trans_a ? 0 : 1)] != b->dims[trans ? 1 : 0])
    return FAIL(x, n, CN_ERR_SHAPE, "A and B do not multiply");
  int64_t units = b->dims[trans ? 0 : 1];
  const cn_onnx_const *c = cv && cv->kind == CN_ONNX_CONST ? &cv->c : NULL;
  int row_bias = c && (c->numel == 1 || (c->numel == units && c->dims[c->rank - 1] == units));
  if (c && !row_bias && !x->whole)
    return BATCH_FAIL(x, n, "C varies along the batch axis (it is not a row of %" PRId64 ")",
                      units);
  float *bias = NULL;
  if (row_bias) {
    bias = float_copy(c, units);
    if (!bias) return cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < units; j++) bias[j] *= beta;
  }
  int src, node;
  st = gemm_input(x, n, v, trans_a, &src);
  cn_onnx_value plain_a = *v;
  if (trans_a) plain_a.layout = CN_ONNX_PLAIN; /* no row permutation for the transposed A */
  if (st == CN_OK)
    st = dense_node(x, n, &plain_a, src, b, trans, alpha, bias, units, &node);
  else
    free(bias);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st == CN_OK && cv && !row_bias) st = gemm_add_c(x, n, cv, beta);
  return st;
}

/* MatMul with a constant B that is not a plain 2-D weight: numpy matmul through cn_op_matmul. A
 * has ONNX rank ra; with a B of higher rank, A gets leading ones (numpy broadcasting), and a 1-D
 * A's inserted row axis is dropped again from the result. */
static cn_status matmul_general(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                const cn_onnx_const *b) {
  int ra = onnx_rank(x, v), rb = b->rank;
  if (const_spans_batch(x, v, b)) return BATCH_FAIL(x, n, "B varies along the batch axis");
  if (rb > CN_MAX_RANK - 1) return FAIL(x, n, CN_ERR_UNSUPPORTED, "B of rank %d", rb);
  int src;
  cn_status st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK && rb > ra) {
    int64_t dims[CN_MAX_RANK];
    for (int k = 0; k < rb; k++) dims[k] = k < rb - ra ? 1 : v->dims[x->whole + k - (rb - ra)];
    cn_reshape_attrs r = {cn_shape_make(rb - !x->whole, dims + !x->whole)};
    st = cn_onnx_add_node(x, &cn_op_reshape, out_name(n), "/a", &src, 1, &r, &src);
  }
  cn_matmul_attrs a = {1, cn_shape_make(rb, b->dims)};
  int node;
  if (st == CN_OK) st = cn_onnx_add_node(x, &cn_op_matmul, out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = set_param_copy(x, node, 0, b, b->numel);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st != CN_OK || ra != 1 || rb < 3) return st;
  cn_onnx_value *o = cn_onnx_find(x, n->output[0]); /* (1, ..., 1, n): drop the row axis */
  int64_t dims[CN_MAX_RANK];
  int r = o->rank - 1;
  memcpy(dims, o->dims + 1, (size_t)r * sizeof *dims);
  dims[r - 2] = dims[r - 1];
  cn_onnx_value prod = *o;
  return reshape_output(x, n, &prod, r - 1, dims);
}

static cn_status conv_matmul(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  const cn_onnx_const *b = NULL;
  cn_status st = act_input(x, n, 0, &v);
  if (st == CN_OK) st = weight_input(x, n, 1, &b);
  if (st != CN_OK) return st;
  if (v->rank >= 2 && b->rank == 2 && v->dims[v->rank - 1] == b->dims[0])
    return add_dense(x, n, v, b, 0, 1.0f, NULL, b->dims[1]);
  return matmul_general(x, n, v, b);
}

/* ---- shape operators ----------------------------------------------------------------------- */

/* Flatten at an axis other than 1 mixes ONNX's first axis into the result: one sample. */
static cn_status flatten_whole(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                               int64_t axis) {
  int r = onnx_rank(x, v);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (!x->whole) return BATCH_FAIL(x, n, "axis %" PRId64 " (mixes the batch axis)", axis);
  int64_t dims[2] = {1, 1};
  for (int k = 0; k < r; k++) dims[k >= axis] *= v->dims[k + 1];
  return reshape_output(x, n, v, 2, dims);
}

static cn_status conv_flatten(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_attr_int(n, "axis", 1);
  if (axis < 0) axis += onnx_rank(x, v);
  if (axis != 1 || x->whole) return flatten_whole(x, n, v, axis);
  int node;
  if (v->layout == CN_ONNX_NHWC) {
    /* Flatten in NHWC order; Gemm/MatMul consumers permute their weights instead, any other
     * consumer gets the ONNX-order flattening through cn_onnx_plain. */
    st = cn_onnx_add_node(x, &cn_op_flatten, out_name(n), NULL, &v->node, 1, NULL, &node);
    if (st != CN_OK) return st;
    int64_t chw[3] = {v->dims[1], v->dims[2], v->dims[3]};
    int src = v->node;
    st = set_output(x, n, 0, node, CN_ONNX_FLAT);
    cn_onnx_value *o = cn_onnx_find(x, n->output[0]);
    o->flat_src = src;
    memcpy(o->flat_chw, chw, sizeof chw);
    o->plain_node = -1;
    return st;
  }
  int src;
  st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_flatten, out_name(n), NULL, &src, 1, NULL, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_reshape(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  const cn_onnx_const *shape = const_input(x, n, 1);
  cn_onnx_const attr_shape = {0};
  int64_t tmp[CN_ONNX_MAX_RANK];
  int na = attr_ints(n, "shape", tmp, CN_ONNX_MAX_RANK); /* opset < 5 */
  if (!shape && na >= 0) {
    attr_shape = (cn_onnx_const){.rank = 1, .dims = {na}, .numel = na, .is_int = 1, .i = tmp};
    shape = &attr_shape;
  }
  if (!shape) return FAIL(x, n, CN_ERR_UNSUPPORTED, "the target shape must be a constant");
  int rank;
  int64_t dims[CN_ONNX_MAX_RANK];
  st = cn_onnx_reshape_dims(label(n), onnx_rank(x, v), v->dims + x->whole, shape,
                            (int)cn_onnx_attr_int(n, "allowzero", 0), &rank, dims);
  if (st != CN_OK) return st;
  if (x->whole) return reshape_output(x, n, v, rank, dims);
  if (rank < 1 || dims[0] != v->dims[0])
    return BATCH_FAIL(x, n, "the batch axis must stay first and unchanged");
  return reshape_output(x, n, v, rank - 1, dims + 1);
}

static cn_status conv_transpose(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t perm[CN_MAX_RANK];
  int np = attr_ints(n, "perm", perm, CN_MAX_RANK);
  int r = onnx_rank(x, v);
  if (np < 0)
    for (np = 0; np < r; np++) perm[np] = r - 1 - np;
  if (np != r) return FAIL(x, n, CN_ERR_FORMAT, "perm has %d values for rank %d", np, r);
  if (x->whole) {
    for (int k = 0; k < np; k++) perm[k]++; /* the leading engine batch stays first */
    memmove(perm + 1, perm, (size_t)np * sizeof *perm);
    perm[0] = 0;
    np++;
  }
  if (perm[0] != 0) return BATCH_FAIL(x, n, "perm moves the batch axis");
  /* (N,C,H,W) stored NHWC, permuted to (N,H,W,C): the stored values already are the result. */
  if (v->layout == CN_ONNX_NHWC && perm[1] == 2 && perm[2] == 3 && perm[3] == 1)
    return set_output(x, n, 0, v->node, CN_ONNX_PLAIN);
  int p[CN_MAX_RANK], src, node;
  for (int k = 1; k < np; k++) p[k - 1] = (int)perm[k] - 1;
  st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK) st = add_transpose(x, src, NULL, np - 1, p, &node);
  if (st == CN_OK) {
    /* add_transpose names the node after its input; rename to the ONNX output for clarity */
    st = set_output(x, n, 0, node, CN_ONNX_PLAIN);
  }
  return st;
}

static cn_status conv_concat(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_input < 1 || n->n_input > 64) return FAIL(x, n, CN_ERR_UNSUPPORTED, "1 to 64 inputs");
  cn_onnx_value *vs[64] = {NULL};
  int any_nhwc = 0, srcs[64], node;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = act_input(x, n, k, &vs[k]);
    if (st != CN_OK) return st;
    if (vs[k]->rank != vs[0]->rank) return FAIL(x, n, CN_ERR_SHAPE, "ranks differ");
    any_nhwc |= vs[k]->layout == CN_ONNX_NHWC;
  }
  int64_t axis = dims_axis(x, vs[0], cn_onnx_attr_int(n, "axis", x->opset < 4 ? 1 : 0));
  if (axis < 0) return FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (axis == 0) return BATCH_FAIL(x, n, "axis 0 (the batch axis)");
  int nhwc = any_nhwc && vs[0]->rank == 4;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = nhwc ? cn_onnx_nhwc(x, vs[k], &srcs[k]) : cn_onnx_plain(x, vs[k], &srcs[k]);
    if (st != CN_OK) return st;
  }
  cn_concat_attrs a = {nhwc ? (int)(int[]){0, 3, 1, 2}[axis] : (int)axis};
  cn_status st =
      cn_onnx_add_node(x, &cn_op_concat, out_name(n), NULL, srcs, (int)n->n_input, &a, &node);
  if (st == CN_OK) st = set_output(x, n, 0, node, nhwc ? CN_ONNX_NHWC : CN_ONNX_PLAIN);
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
  int eaxis = axis ? engine_axis(&copy, axis) : -1;
  cn_batchnorm_attrs a = {0.0f, 1, 1, eaxis, 0.0f};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_batchnorm, out_name(n), NULL, &src, 1, &a, &node);
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
    alias_output(x, n, 0, &copy, node);
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
  *data = float_copy(c, c->numel);
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
static cn_status add_const_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
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
  if (st == CN_OK) st = cn_onnx_add_node(x, op, out_name(n), NULL, &src, 1, attrs, &node);
  if (st == CN_OK) {
    st = cn_onnx_set_param(x, node, 0, data);
    data = NULL;
  }
  free(data);
  if (st == CN_OK) alias_output(x, n, 0, &like, node);
  return st;
}

static cn_binary_kind binary_kind(const char *op) {
  static const struct {
    const char *op;
    cn_binary_kind kind;
  } kinds[] = {{"Add", CN_BIN_ADD}, {"Sum", CN_BIN_ADD},   {"Sub", CN_BIN_SUB},
               {"Mul", CN_BIN_MUL}, {"Div", CN_BIN_DIV},   {"Max", CN_BIN_MAX},
               {"Min", CN_BIN_MIN}, {"Mean", CN_BIN_MEAN}, {"Pow", CN_BIN_POW}};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    if (strcmp(kinds[k].op, op) == 0) return kinds[k].kind;
  return CN_BIN_COUNT;
}

/* 1 when constant c, broadcast onto activation v, would differ between samples. */
static int const_spans_batch(const cn_onnx_ctx *x, const cn_onnx_value *v, const cn_onnx_const *c) {
  return !x->whole && c->rank >= v->rank && (c->rank > v->rank || c->dims[0] != 1);
}

/* Activation (op) constant: a per-channel or scalar Add/Sub/Mul/Div becomes a scale-shift
 * (which folds into a preceding convolution); anything else broadcasts through cn_op_binary. */
static cn_status binary_with_const(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                   cn_onnx_const *c, int const_first) {
  const char *op = n->op_type;
  cn_status st = cn_onnx_const_to_float(c, n->input[const_first ? 0 : 1]);
  if (st != CN_OK) return st;
  if (const_spans_batch(x, v, c))
    return BATCH_FAIL(x, n, "a constant operand that varies along the batch axis");
  int axis = const_channel_axis(v, c);
  int is_add = strcmp(op, "Add") == 0 || strcmp(op, "Sum") == 0, is_mul = strcmp(op, "Mul") == 0;
  int is_sub = strcmp(op, "Sub") == 0, is_div = strcmp(op, "Div") == 0 && !const_first;
  if (axis < 0 || !(is_add || is_mul || is_sub || is_div)) {
    cn_binary_attrs a = {binary_kind(op), const_first ? CN_CONST_FIRST : CN_CONST_LAST, {0}};
    return add_const_op(x, n, v, c, &cn_op_binary, &a, &a.b_shape);
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

static cn_status conv_prelu(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v, *s = input(x, n, 1);
  cn_status st = act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  if (!s || s->kind != CN_ONNX_CONST)
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "the slope must be a constant");
  if ((st = cn_onnx_const_to_float(&s->c, s->name)) != CN_OK) return st;
  cn_onnx_const slope = s->c; /* shares the values */
  int r = onnx_rank(x, v);
  if (x->opset < 7 && slope.rank == 1 && r > 2 && slope.numel == v->dims[1 + x->whole]) {
    /* Before opset 7 a 1-D slope is per channel (axis 1), as PyTorch exports it. */
    slope.rank = r - 1;
    for (int k = 1; k < slope.rank; k++) slope.dims[k] = 1;
  }
  if (const_spans_batch(x, v, &slope))
    return BATCH_FAIL(x, n, "a slope that varies along the batch axis");
  cn_prelu_attrs a = {0};
  return add_const_op(x, n, v, &slope, &cn_op_prelu, &a, &a.slope_shape);
}

static cn_status conv_binary(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_input < 1 || n->n_input > 64) return FAIL(x, n, CN_ERR_UNSUPPORTED, "1 to 64 inputs");
  if (cn_onnx_attr_int(n, "broadcast", 0) && cn_onnx_attr(n, "axis"))
    return FAIL(x, n, CN_ERR_UNSUPPORTED, "legacy broadcast with axis");
  if (n->n_input == 2) {
    cn_onnx_value *a0 = input(x, n, 0), *a1 = input(x, n, 1);
    if (a0 && a1 && a0->kind == CN_ONNX_ACT && a1->kind == CN_ONNX_CONST)
      return binary_with_const(x, n, a0, &a1->c, 0);
    if (a0 && a1 && a0->kind == CN_ONNX_CONST && a1->kind == CN_ONNX_ACT)
      return binary_with_const(x, n, a1, &a0->c, 1);
  }
  cn_onnx_value *vs[64] = {NULL};
  int srcs[64], nhwc = 0, flat = 1, same = 1, node;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = act_input(x, n, k, &vs[k]);
    if (st != CN_OK) return st;
    if (vs[k]->rank != vs[0]->rank)
      return FAIL(x, n, CN_ERR_UNSUPPORTED, "operands of different ranks");
    same &= memcmp(vs[k]->dims, vs[0]->dims, sizeof vs[0]->dims) == 0;
    nhwc |= vs[k]->layout == CN_ONNX_NHWC;
    flat &= vs[k]->layout == CN_ONNX_FLAT && vs[k]->flat_src == vs[0]->flat_src;
  }
  if (n->n_input == 1) {
    alias_output(x, n, 0, vs[0], vs[0]->node);
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
  cn_status st =
      cn_onnx_add_node(x, &cn_op_binary, out_name(n), NULL, srcs, (int)n->n_input, &b, &node);
  if (st == CN_OK)
    st = set_output(x, n, 0, node, flat ? CN_ONNX_FLAT : nhwc ? CN_ONNX_NHWC : CN_ONNX_PLAIN);
  if (st == CN_OK && flat) {
    cn_onnx_value *o = cn_onnx_find(x, n->output[0]);
    o->flat_src = vs[0]->flat_src;
    memcpy(o->flat_chw, vs[0]->flat_chw, sizeof o->flat_chw);
    o->plain_node = -1;
  }
  return st;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

typedef cn_status (*convert_fn)(cn_onnx_ctx *x, const Onnx__NodeProto *n);

static const struct {
  const char *op;
  convert_fn fn;
} converters[] = {
    {"Conv", conv_conv},
    {"MaxPool", conv_maxpool},
    {"AveragePool", conv_avgpool},
    {"GlobalAveragePool", conv_global_avgpool},
    {"GlobalMaxPool", conv_global_maxpool},
    {"BatchNormalization", conv_batchnorm},
    {"Gemm", conv_gemm},
    {"MatMul", conv_matmul},
    {"Add", conv_binary},
    {"Sub", conv_binary},
    {"Mul", conv_binary},
    {"Div", conv_binary},
    {"Sum", conv_binary},
    {"Max", conv_binary},
    {"Min", conv_binary},
    {"Mean", conv_binary},
    {"Concat", conv_concat},
    {"Flatten", conv_flatten},
    {"Reshape", conv_reshape},
    {"Transpose", conv_transpose},
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
    {"PRelu", conv_prelu},
    {"LRN", conv_lrn},
    {"Pad", conv_pad},
    {"Pow", conv_binary},
    {"ConvTranspose", conv_conv_transpose},
    {"ReduceMean", conv_reduce},
    {"Resize", conv_resize},
    {"Upsample", conv_resize},
    {"ReduceMax", conv_reduce},
};

cn_status cn_onnx_convert(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  for (size_t k = 0; k < sizeof converters / sizeof *converters; k++)
    if (strcmp(converters[k].op, n->op_type) == 0) {
      if (n->n_output < 1 || !*n->output[0])
        return FAIL(x, n, CN_ERR_FORMAT, "the node has no output");
      return converters[k].fn(x, n);
    }
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: node %s: operator %s is not supported", x->file, label(n),
                 n->op_type);
}
