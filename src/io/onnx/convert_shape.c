/* ONNX to engine nodes: the shape operators (Pad, Flatten, Reshape, Transpose, Concat). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_onnx.h"

/* Per-sample engine axis of ONNX axis a (>= 1) of a value stored in `layout`. */
int cn_onnx_sample_axis(cn_onnx_layout layout, int a) {
  static const int nhwc[4] = {-1, 2, 0, 1};
  return layout == CN_ONNX_NHWC ? nhwc[a] : a - 1;
}

static cn_status conv_pad(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int r = cn_onnx_rank(x, v);
  int64_t pads[2 * CN_MAX_RANK], axes[CN_MAX_RANK];
  const cn_onnx_const *pc = cn_onnx_const_input(x, n, 1), *vc = cn_onnx_const_input(x, n, 2),
                      *ac = cn_onnx_const_input(x, n, 3);
  int np = pc ? (int)pc->numel
              : cn_onnx_attr_ints(n, x->opset < 11 ? "pads" : "-", pads, 2 * CN_MAX_RANK);
  if ((cn_onnx_input(x, n, 1) && !pc) || (cn_onnx_input(x, n, 2) && !vc) ||
      (cn_onnx_input(x, n, 3) && !ac))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "pads, value and axes must be constants");
  if (pc && (!pc->is_int || np > 2 * CN_MAX_RANK))
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "bad pads");
  for (int k = 0; pc && k < np; k++) pads[k] = pc->i[k];
  int na = ac ? (int)ac->numel : r;
  if (na > r || (ac && !ac->is_int) || np != 2 * na)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "%d pads for %d axes", np, na);
  for (int k = 0; k < na; k++) {
    axes[k] = ac ? ac->i[k] : k;
    if (axes[k] < 0) axes[k] += r;
    if (axes[k] < 0 || axes[k] >= r) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "bad axes");
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
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "mode %s", mode);
  int src;
  cn_onnx_layout layout = v->layout == CN_ONNX_NHWC ? CN_ONNX_NHWC : CN_ONNX_PLAIN;
  st = layout == CN_ONNX_NHWC ? cn_onnx_nhwc(x, v, &src) : cn_onnx_plain(x, v, &src);
  for (int k = 0; st == CN_OK && k < na; k++) {
    if (axes[k] == 0) {
      if (pads[k] || pads[k + na]) return CN_ONNX_BATCH_FAIL(x, n, "padding the batch axis");
      continue;
    }
    int e = cn_onnx_sample_axis(layout, (int)axes[k]);
    a.begin[e] = pads[k];
    a.end[e] = pads[k + na];
  }
  int node;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_pad, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, layout);
  return st;
}

/* ---- shape operators ----------------------------------------------------------------------- */

/* Flatten at an axis other than 1 mixes ONNX's first axis into the result: one sample. */
static cn_status flatten_whole(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                               int64_t axis) {
  int r = cn_onnx_rank(x, v);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (!x->whole) return CN_ONNX_BATCH_FAIL(x, n, "axis %" PRId64 " (mixes the batch axis)", axis);
  int64_t dims[2] = {1, 1};
  for (int k = 0; k < r; k++) dims[k >= axis] *= v->dims[k + 1];
  return cn_onnx_reshape_output(x, n, v, 2, dims);
}

static cn_status conv_flatten(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_attr_int(n, "axis", 1);
  if (axis < 0) axis += cn_onnx_rank(x, v);
  if (axis != 1 || x->whole) return flatten_whole(x, n, v, axis);
  int node;
  if (v->layout == CN_ONNX_NHWC) {
    /* Flatten in NHWC order; Gemm/MatMul consumers permute their weights instead, any other
     * consumer gets the ONNX-order flattening through cn_onnx_plain. */
    st = cn_onnx_add_node(x, &cn_op_flatten, cn_onnx_out_name(n), NULL, &v->node, 1, NULL, &node);
    if (st != CN_OK) return st;
    int64_t chw[3] = {v->dims[1], v->dims[2], v->dims[3]};
    int src = v->node;
    st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_FLAT);
    cn_onnx_value *o = cn_onnx_find(x, n->output[0]);
    o->flat_src = src;
    memcpy(o->flat_chw, chw, sizeof chw);
    o->plain_node = -1;
    return st;
  }
  int src;
  st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_flatten, cn_onnx_out_name(n), NULL, &src, 1, NULL, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_reshape(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  const cn_onnx_const *shape = cn_onnx_const_input(x, n, 1);
  cn_onnx_const attr_shape = {0};
  int64_t tmp[CN_ONNX_MAX_RANK];
  int na = cn_onnx_attr_ints(n, "shape", tmp, CN_ONNX_MAX_RANK); /* opset < 5 */
  if (!shape && na >= 0) {
    attr_shape = (cn_onnx_const){.rank = 1, .dims = {na}, .numel = na, .is_int = 1, .i = tmp};
    shape = &attr_shape;
  }
  if (!shape) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "the target shape must be a constant");
  int rank;
  int64_t dims[CN_ONNX_MAX_RANK];
  st = cn_onnx_reshape_dims(cn_onnx_label(n), cn_onnx_rank(x, v), v->dims + x->whole, shape,
                            (int)cn_onnx_attr_int(n, "allowzero", 0), &rank, dims);
  if (st != CN_OK) return st;
  if (x->whole) return cn_onnx_reshape_output(x, n, v, rank, dims);
  if (rank < 1 || dims[0] != v->dims[0])
    return CN_ONNX_BATCH_FAIL(x, n, "the batch axis must stay first and unchanged");
  return cn_onnx_reshape_output(x, n, v, rank - 1, dims + 1);
}

static cn_status conv_transpose(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t perm[CN_MAX_RANK];
  int np = cn_onnx_attr_ints(n, "perm", perm, CN_MAX_RANK);
  int r = cn_onnx_rank(x, v);
  if (np < 0)
    for (np = 0; np < r; np++) perm[np] = r - 1 - np;
  if (np != r) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "perm has %d values for rank %d", np, r);
  if (x->whole) {
    for (int k = 0; k < np; k++) perm[k]++; /* the leading engine batch stays first */
    memmove(perm + 1, perm, (size_t)np * sizeof *perm);
    perm[0] = 0;
    np++;
  }
  if (perm[0] != 0) return CN_ONNX_BATCH_FAIL(x, n, "perm moves the batch axis");
  /* (N,C,H,W) stored NHWC, permuted to (N,H,W,C): the stored values already are the result. */
  if (v->layout == CN_ONNX_NHWC && perm[1] == 2 && perm[2] == 3 && perm[3] == 1)
    return cn_onnx_set_output(x, n, 0, v->node, CN_ONNX_PLAIN);
  int p[CN_MAX_RANK], src, node;
  for (int k = 1; k < np; k++) p[k - 1] = (int)perm[k] - 1;
  st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK) st = cn_onnx_add_transpose(x, src, NULL, np - 1, p, &node);
  if (st == CN_OK) {
    /* add_transpose names the node after its input; rename to the ONNX output for clarity */
    st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  }
  return st;
}

static cn_status conv_concat(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_input < 1 || n->n_input > 64)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "1 to 64 inputs");
  cn_onnx_value *vs[64] = {NULL};
  int any_nhwc = 0, srcs[64], node;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = cn_onnx_act_input(x, n, k, &vs[k]);
    if (st != CN_OK) return st;
    if (vs[k]->rank != vs[0]->rank) return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "ranks differ");
    any_nhwc |= vs[k]->layout == CN_ONNX_NHWC;
  }
  int64_t axis = cn_onnx_dims_axis(x, vs[0], cn_onnx_attr_int(n, "axis", x->opset < 4 ? 1 : 0));
  if (axis < 0) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axis out of range");
  if (axis == 0) return CN_ONNX_BATCH_FAIL(x, n, "axis 0 (the batch axis)");
  int nhwc = any_nhwc && vs[0]->rank == 4;
  for (size_t k = 0; k < n->n_input; k++) {
    cn_status st = nhwc ? cn_onnx_nhwc(x, vs[k], &srcs[k]) : cn_onnx_plain(x, vs[k], &srcs[k]);
    if (st != CN_OK) return st;
  }
  cn_concat_attrs a = {nhwc ? (int)(int[]){0, 3, 1, 2}[axis] : (int)axis};
  cn_status st = cn_onnx_add_node(x, &cn_op_concat, cn_onnx_out_name(n), NULL, srcs,
                                  (int)n->n_input, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, nhwc ? CN_ONNX_NHWC : CN_ONNX_PLAIN);
  return st;
}

const cn_onnx_converter cn_onnx_shape_converters[] = {
    {"Concat", conv_concat},       {"Flatten", conv_flatten}, {"Reshape", conv_reshape},
    {"Transpose", conv_transpose}, {"Pad", conv_pad},         {NULL, NULL},
};
