/* ONNX to engine nodes: Resize (opset 10+) and Upsample (7-9). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_onnx.h"

/* Resize (opset 10+) and Upsample (7-9) along H and W of a 4-D tensor. */
static cn_status resize_attrs(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                              cn_resize_attrs *r) {
  int upsample = strcmp(n->op_type, "Upsample") == 0;
  char buf[40], mode_buf[16];
  const char *mode = cn_onnx_attr_string(n, "mode", "nearest", mode_buf, sizeof mode_buf);
  if (strcmp(mode, "nearest") && strcmp(mode, "linear") && strcmp(mode, "bilinear"))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "mode %s", mode);
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
  if (c == 6)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "coordinate_transformation_mode %s", coord);
  r->coord = (cn_resize_coord)c;
  const char *nm =
      upsample || x->opset < 11
          ? "floor"
          : cn_onnx_attr_string(n, "nearest_mode", "round_prefer_floor", buf, sizeof buf);
  static const char *const nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  int m = 0;
  while (m < 4 && strcmp(nearest[m], nm) != 0) m++;
  if (m == 4) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "nearest_mode %s", nm);
  r->nearest = (cn_resize_nearest)m;
  if (cn_onnx_attr_int(n, "antialias", 0) || cn_onnx_attr_int(n, "exclude_outside", 0))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "antialias / exclude_outside");
  char kp[24];
  if (strcmp(cn_onnx_attr_string(n, "keep_aspect_ratio_policy", "stretch", kp, sizeof kp),
             "stretch") != 0)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "keep_aspect_ratio_policy %s", kp);
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
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  if (v->rank != 4) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  cn_resize_attrs r = {0};
  if ((st = resize_attrs(x, n, v, &r)) != CN_OK) return st;
  int upsample = strcmp(n->op_type, "Upsample") == 0;
  size_t scales_at = upsample || x->opset < 11 ? 1 : 2;
  const cn_onnx_const *sc = cn_onnx_const_input(x, n, scales_at),
                      *sz = upsample ? NULL : cn_onnx_const_input(x, n, 3);
  if ((cn_onnx_input(x, n, scales_at) && !sc) || (!upsample && cn_onnx_input(x, n, 3) && !sz))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "scales and sizes must be constants");
  if (sc && sc->numel == 0) sc = NULL;
  int64_t axes[4] = {0, 1, 2, 3};
  int na = cn_onnx_attr_ints(n, "axes", axes, 4);
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
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "needs scales or sizes for its %d axes", na);
  if (f[0] != 1 || f[1] != 1 || size[0] != v->dims[0] || size[1] != v->dims[1])
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "resizing the batch or channel axis");
  if (sz) {
    r.out_h = size[2], r.out_w = size[3];
  } else if (r.coord == CN_COORD_ALIGN_CORNERS) {
    align_corners_scales(&r, v->dims[2], v->dims[3], f[2], f[3]);
  } else {
    r.scale_h = (float)f[2], r.scale_w = (float)f[3];
  }
  int node;
  st = cn_onnx_nhwc(x, v, &node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_resize, cn_onnx_out_name(n), NULL, &node, 1, &r, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

const cn_onnx_converter cn_onnx_resize_converters[] = {
    {"Resize", conv_resize},
    {"Upsample", conv_resize},
    {NULL, NULL},
};
