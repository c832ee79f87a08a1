/* Resize / Upsample of NHWC images along h and w with ONNX's coordinate transforms: nearest (four
 * rounding rules) and bilinear. Each output pixel maps to source coordinates computed in float,
 * as onnxruntime does; output rows run in parallel and the channel loop is innermost.
 *
 * Backward, for every mode the forward has: the output is a fixed linear map of the input (the
 * source pixels and weights depend on the geometry only), so d input is its adjoint: each output
 * pixel's gradient goes back to the one source pixel (nearest) or to its four taps with the
 * bilinear weights. Threads split the input rows: each input row gathers from the output rows
 * that read it, in output order, so every sum is taken in one order whatever the thread count. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

enum { MAX_OUT = 1 << 20 };

/* The output length and the scale the coordinate transform uses. */
static void axis_geometry(int64_t in, float scale, int64_t size, int64_t *out, float *used) {
  *out = size > 0 ? size : (int64_t)floor((double)in * (double)scale);
  *used = scale > 0 ? scale : (float)*out / (float)in;
}

static cn_status resize_infer(cn_graph *g, cn_node *node) {
  const cn_resize_attrs *a = node->attrs;
  char buf[96];
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank != 3 || x->dim[0] < 1 || x->dim[1] < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(x, buf, sizeof buf));
  if ((int)a->mode < CN_RESIZE_MODE_NEAREST || a->mode > CN_RESIZE_MODE_LINEAR ||
      (int)a->coord < CN_COORD_HALF_PIXEL || a->coord > CN_COORD_HALF_PIXEL_SYMMETRIC ||
      (int)a->nearest < CN_NEAREST_ROUND_PREFER_FLOOR || a->nearest > CN_NEAREST_CEIL)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown resize mode", node->name);
  int scales_ok = !(a->scale_h < 0) && !(a->scale_w < 0) && isfinite(a->scale_h) &&
                  isfinite(a->scale_w) && a->scale_h <= MAX_OUT && a->scale_w <= MAX_OUT;
  if (!scales_ok || a->out_h < 0 || a->out_w < 0 || (a->out_h == 0 && a->scale_h == 0) ||
      (a->out_w == 0 && a->scale_w == 0))
    return cn_fail(CN_ERR_FORMAT, "%s: needs positive scales or sizes", node->name);
  int64_t oh, ow;
  float sh, sw;
  axis_geometry(x->dim[0], a->scale_h, a->out_h, &oh, &sh);
  axis_geometry(x->dim[1], a->scale_w, a->out_w, &ow, &sw);
  if (oh < 1 || ow < 1 || oh > MAX_OUT || ow > MAX_OUT)
    return cn_fail(CN_ERR_SHAPE, "%s: output size %lldx%lld out of range", node->name,
                   (long long)oh, (long long)ow);
  node->shape = cn_shape_make(3, (int64_t[]){oh, ow, x->dim[2]});
  return CN_OK;
}

/* The input coordinate of output index o (ONNX coordinate_transformation_mode). */
static float source_coord(cn_resize_coord mode, int64_t o, float scale, int64_t in, int64_t out) {
  float x = (float)o;
  switch (mode) {
  case CN_COORD_ASYMMETRIC:
    return x / scale;
  case CN_COORD_ALIGN_CORNERS:
    return out == 1 ? 0.0f : x * (float)(in - 1) / (float)(out - 1);
  case CN_COORD_PYTORCH_HALF_PIXEL:
    return out > 1 ? (x + 0.5f) / scale - 0.5f : 0.0f;
  case CN_COORD_TF_HALF_PIXEL_FOR_NN:
    return (x + 0.5f) / scale;
  case CN_COORD_HALF_PIXEL_SYMMETRIC: {
    float adjust = (float)out / (scale * (float)in), center = (float)in / 2;
    return center * (1 - adjust) + (x + 0.5f) / scale - 0.5f;
  }
  default: /* half_pixel */
    return (x + 0.5f) / scale - 0.5f;
  }
}

static int64_t nearest_index(cn_resize_nearest rule, float c, int64_t in) {
  float r;
  switch (rule) {
  case CN_NEAREST_ROUND_PREFER_CEIL:
    r = floorf(c + 0.5f);
    break;
  case CN_NEAREST_FLOOR:
    r = floorf(c);
    break;
  case CN_NEAREST_CEIL:
    r = ceilf(c);
    break;
  default: /* round_prefer_floor */
    r = ceilf(c - 0.5f);
    break;
  }
  if (r < 0) return 0;
  return r > (float)(in - 1) ? in - 1 : (int64_t)r;
}

/* Two taps and the weight of the second for bilinear along one axis. */
typedef struct taps {
  int64_t i0, i1;
  float w1;
} taps;

static taps linear_taps(float c, int64_t in) {
  taps t;
  if (c < 0) c = 0;
  if (c > (float)(in - 1)) c = (float)(in - 1);
  t.i0 = (int64_t)c;
  t.i1 = t.i0 + 1 < in ? t.i0 + 1 : t.i0;
  t.w1 = c - (float)t.i0;
  return t;
}

typedef struct geometry {
  int64_t ih, iw, oh, ow, c;
  float sh, sw;
} geometry;

/* The geometry of a run from the NHWC input and output shapes (with the batch). */
static geometry run_geometry(const cn_resize_attrs *a, const cn_shape *in, const cn_shape *out) {
  geometry g = {.ih = in->dim[1], .iw = in->dim[2], .c = in->dim[3]};
  int64_t oh, ow;
  axis_geometry(g.ih, a->scale_h, a->out_h, &oh, &g.sh);
  axis_geometry(g.iw, a->scale_w, a->out_w, &ow, &g.sw);
  g.oh = out->dim[1];
  g.ow = out->dim[2];
  return g;
}

static void resize_row_nearest(const cn_resize_attrs *a, const geometry *g, const float *img,
                               int64_t oy, float *dst) {
  int64_t iy = nearest_index(a->nearest, source_coord(a->coord, oy, g->sh, g->ih, g->oh), g->ih);
  for (int64_t ox = 0; ox < g->ow; ox++) {
    int64_t ix = nearest_index(a->nearest, source_coord(a->coord, ox, g->sw, g->iw, g->ow), g->iw);
    const float *src = img + (iy * g->iw + ix) * g->c;
    for (int64_t j = 0; j < g->c; j++) dst[ox * g->c + j] = src[j];
  }
}

static void resize_row_linear(const cn_resize_attrs *a, const geometry *g, const float *img,
                              int64_t oy, float *dst) {
  taps ty = linear_taps(source_coord(a->coord, oy, g->sh, g->ih, g->oh), g->ih);
  const float *r0 = img + ty.i0 * g->iw * g->c, *r1 = img + ty.i1 * g->iw * g->c;
  for (int64_t ox = 0; ox < g->ow; ox++) {
    taps tx = linear_taps(source_coord(a->coord, ox, g->sw, g->iw, g->ow), g->iw);
    const float *p00 = r0 + tx.i0 * g->c, *p01 = r0 + tx.i1 * g->c;
    const float *p10 = r1 + tx.i0 * g->c, *p11 = r1 + tx.i1 * g->c;
    float wx = tx.w1, wy = ty.w1;
    for (int64_t j = 0; j < g->c; j++) {
      float top = p00[j] + wx * (p01[j] - p00[j]);
      float bottom = p10[j] + wx * (p11[j] - p10[j]);
      dst[ox * g->c + j] = top + wy * (bottom - top);
    }
  }
}

static void resize_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_resize_attrs *a = node->attrs;
  geometry g = run_geometry(a, &in[0].shape, &out->shape);
  int64_t rows = out->shape.dim[0] * g.oh;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * g.ow * g.c > 4096)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / g.oh, oy = r % g.oh;
    const float *img = in[0].data + b * g.ih * g.iw * g.c;
    float *dst = out->data + r * g.ow * g.c;
    if (a->mode == CN_RESIZE_MODE_LINEAR)
      resize_row_linear(a, &g, img, oy, dst);
    else
      resize_row_nearest(a, &g, img, oy, dst);
  }
}

/* ---- backward ------------------------------------------------------------------------------ */

/* dst (one input row) += the nearest-mode gradient of output row grad along x. */
static void unresize_row_nearest(const cn_resize_attrs *a, const geometry *g, const float *grad,
                                 float *dst) {
  for (int64_t ox = 0; ox < g->ow; ox++) {
    int64_t ix = nearest_index(a->nearest, source_coord(a->coord, ox, g->sw, g->iw, g->ow), g->iw);
    float *d = dst + ix * g->c;
    const float *src = grad + ox * g->c;
    for (int64_t j = 0; j < g->c; j++) d[j] += src[j];
  }
}

/* dst (one input row) += wy * the bilinear gradient of output row grad along x. */
static void unresize_row_linear(const cn_resize_attrs *a, const geometry *g, const float *grad,
                                float wy, float *dst) {
  for (int64_t ox = 0; ox < g->ow; ox++) {
    taps tx = linear_taps(source_coord(a->coord, ox, g->sw, g->iw, g->ow), g->iw);
    float w1 = wy * tx.w1, w0 = wy * (1 - tx.w1);
    float *d0 = dst + tx.i0 * g->c, *d1 = dst + tx.i1 * g->c;
    const float *src = grad + ox * g->c;
    for (int64_t j = 0; j < g->c; j++) d0[j] += w0 * src[j];
    if (tx.w1 != 0)
      for (int64_t j = 0; j < g->c; j++) d1[j] += w1 * src[j];
  }
}

/* Input row iy of one sample gathers from every output row that reads it. */
static void unresize_row(const cn_resize_attrs *a, const geometry *g, const float *grad, int64_t iy,
                         float *dst) {
  for (int64_t oy = 0; oy < g->oh; oy++) {
    float c = source_coord(a->coord, oy, g->sh, g->ih, g->oh);
    const float *row = grad + oy * g->ow * g->c;
    if (a->mode != CN_RESIZE_MODE_LINEAR) {
      if (nearest_index(a->nearest, c, g->ih) == iy) unresize_row_nearest(a, g, row, dst);
      continue;
    }
    taps ty = linear_taps(c, g->ih);
    /* i1 == i0 only at the clamped end, where w1 is 0. */
    if (ty.i0 == iy) unresize_row_linear(a, g, row, 1 - ty.w1, dst);
    if (ty.i1 == iy && ty.i1 != ty.i0 && ty.w1 != 0) unresize_row_linear(a, g, row, ty.w1, dst);
  }
}

static void resize_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  (void)dparams;
  if (!din[0].data) return;
  const cn_resize_attrs *a = node->attrs;
  geometry g = run_geometry(a, &in[0].shape, &out->shape);
  int64_t batch = in[0].shape.dim[0], rows = batch * g.ih;
#pragma omp parallel for num_threads(ex->threads)                                                  \
    schedule(static) if (batch * g.oh * g.ow * g.c > 4096)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / g.ih, iy = r % g.ih;
    unresize_row(a, &g, dout->data + b * g.oh * g.ow * g.c, iy, din[0].data + r * g.iw * g.c);
  }
}

const cn_op cn_op_resize = {
    .type = "Resize",
    .attrs_size = sizeof(cn_resize_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = resize_infer,
    .forward = resize_forward,
    .backward = resize_backward,
};
