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
  if (strcmp(mode, "nearest") && strcmp(mode, "linear") && strcmp(mode, "bilinear") &&
      strcmp(mode, "cubic"))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "mode %s", mode);
  r->mode = mode[0] == 'n'   ? CN_RESIZE_MODE_NEAREST
            : mode[0] == 'c' ? CN_RESIZE_MODE_CUBIC
                             : CN_RESIZE_MODE_LINEAR;
  r->cubic_a = cn_onnx_attr_float(n, "cubic_coeff_a", -0.75f);
  r->exclude_outside = cn_onnx_attr_int(n, "exclude_outside", 0) != 0;
  r->antialias = cn_onnx_attr_int(n, "antialias", 0) != 0;
  r->extrapolation = cn_onnx_attr_float(n, "extrapolation_value", 0.0f);
  if (r->antialias && r->mode == CN_RESIZE_MODE_NEAREST)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "antialias with mode nearest");
  const char *coord =
      upsample || x->opset < 11
          ? "asymmetric"
          : cn_onnx_attr_string(n, "coordinate_transformation_mode", "half_pixel", buf, sizeof buf);
  static const char *const coords[] = {"half_pixel",
                                       "asymmetric",
                                       "align_corners",
                                       "pytorch_half_pixel",
                                       "tf_half_pixel_for_nearest",
                                       "half_pixel_symmetric",
                                       "tf_crop_and_resize"};
  int c = 0;
  while (c < 7 && strcmp(coords[c], coord) != 0) c++;
  if (c == 7)
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
  (void)v;
  return CN_OK;
}

/* tf_crop_and_resize's roi (starts then ends, for the `axes` or all four axes) into the H and W
 * box of r; the batch and channel axes must keep their whole extent. */
static cn_status crop_box(cn_onnx_ctx *x, const Onnx__NodeProto *n, const int64_t *axes, int na,
                          cn_resize_attrs *r) {
  const cn_onnx_const *roi = cn_onnx_const_input(x, n, 1);
  if (!roi || roi->numel != 2 * na)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "tf_crop_and_resize needs a constant roi of %d values",
                        2 * na);
  float *box[4][2] = {
      {NULL, NULL}, {NULL, NULL}, {&r->roi_h0, &r->roi_h1}, {&r->roi_w0, &r->roi_w1}};
  r->roi_h1 = r->roi_w1 = 1.0f;
  for (int k = 0; k < na; k++) {
    double lo = cn_onnx_const_get(roi, k), hi = cn_onnx_const_get(roi, k + na);
    int axis = (int)(axes[k] & 3);
    if (axis < 2 && (lo != 0 || hi != 1))
      return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "cropping the batch or channel axis");
    if (axis >= 2) *box[axis][0] = (float)lo, *box[axis][1] = (float)hi;
  }
  return CN_OK;
}

/* keep_aspect_ratio_policy not_larger / not_smaller: one scale for the resized axes (the least
 * or the greatest of sizes / input), sizes rounded half up from it. */
static cn_status keep_aspect(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                             const int64_t *axes, int na, int64_t *size, double *f) {
  char kp[24];
  const char *policy = cn_onnx_attr_string(n, "keep_aspect_ratio_policy", "stretch", kp, sizeof kp);
  if (strcmp(policy, "stretch") == 0) return CN_OK;
  int larger = strcmp(policy, "not_smaller") == 0;
  if (!larger && strcmp(policy, "not_larger") != 0)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "keep_aspect_ratio_policy %s", policy);
  double scale = 0;
  for (int k = 0; k < na; k++) {
    int a = (int)(axes[k] & 3);
    double s = (double)size[a] / (double)v->dims[a];
    if (k == 0 || (larger ? s > scale : s < scale)) scale = s;
  }
  for (int k = 0; k < na; k++) {
    int a = (int)(axes[k] & 3);
    size[a] = (int64_t)(scale * (double)v->dims[a] + 0.5);
    f[a] = scale;
  }
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
  if (sz) st = keep_aspect(x, n, v, axes, na, size, f);
  if (st == CN_OK && r.coord == CN_COORD_TF_CROP_AND_RESIZE) st = crop_box(x, n, axes, na, &r);
  if (st != CN_OK) return st;
  if (f[0] != 1 || f[1] != 1 || size[0] != v->dims[0] || size[1] != v->dims[1])
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "resizing the batch or channel axis");
  if (sz) {
    r.out_h = size[2], r.out_w = size[3];
    if (f[2] != 1 || f[3] != 1) r.scale_h = (float)f[2], r.scale_w = (float)f[3];
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
