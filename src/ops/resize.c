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

enum { MAX_OUT = 1 << 20, MAX_TAPS = 1 << 12 };

/* The output length and the scale the coordinate transform uses. */
static void axis_geometry(int64_t in, float scale, int64_t size, int64_t *out, float *used) {
  *out = size > 0 ? size : (int64_t)floor((double)in * (double)scale);
  *used = scale > 0 ? scale : (float)*out / (float)in;
}

/* ---- the general separable form (cubic, antialias, tf_crop_and_resize) ---------------------- */

/* 1 when a takes the general path rather than the nearest / bilinear fast paths. */
static int general(const cn_resize_attrs *a) {
  return a->mode == CN_RESIZE_MODE_CUBIC || a->antialias || a->coord == CN_COORD_TF_CROP_AND_RESIZE;
}

/* The scale of an axis in double, as ONNX computes it from sizes. */
static double exact_scale(float scale, int64_t in, int64_t out) {
  return scale > 0 ? (double)scale : (double)out / (double)in;
}

/* Source indices per output index: 2 (nearest, linear), 4 (cubic), or the antialias window
 * stretched by 1 / scale when downsampling. */
static int64_t axis_taps(const cn_resize_attrs *a, double scale) {
  double s = scale < 1 ? scale : 1;
  if (!a->antialias) return a->mode == CN_RESIZE_MODE_CUBIC ? 4 : 2;
  double reach = a->mode == CN_RESIZE_MODE_CUBIC ? 2 : 1;
  double start = floor(-reach / s) + 1;
  return start < -MAX_TAPS ? MAX_TAPS + 1 : (int64_t)(2 - 2 * start);
}

/* One axis of the general form: its geometry and, per output index, taps source indices and
 * weights, or `outside` (tf_crop_and_resize beyond the image). */
typedef struct axis_map {
  int64_t in, out, taps;
  double scale, roi0, roi1;
} axis_map;

static double keys_cubic(double x, double A) {
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

/* The source coordinate of output index o, in double as ONNX's reference computes it. */
static double exact_coord(const cn_resize_attrs *a, const axis_map *m, int64_t o, int *outside) {
  double x = (double)o, s = m->scale, in = (double)m->in, width = s * in;
  *outside = 0;
  switch (a->coord) {
  case CN_COORD_ASYMMETRIC:
    return x / s;
  case CN_COORD_ALIGN_CORNERS:
    return width == 1 ? 0 : x * (in - 1) / (width - 1);
  case CN_COORD_PYTORCH_HALF_PIXEL:
    return width == 1 ? -0.5 : (x + 0.5) / s - 0.5;
  case CN_COORD_TF_HALF_PIXEL_FOR_NN:
    return (x + 0.5) / s;
  case CN_COORD_HALF_PIXEL_SYMMETRIC:
    return in / 2 * (1 - (double)m->out / width) + (x + 0.5) / s - 0.5;
  case CN_COORD_TF_CROP_AND_RESIZE: {
    double span = (m->roi1 - m->roi0) * (in - 1);
    double c = (width == 1 ? span / 2 : x * span / (width - 1)) + m->roi0 * (in - 1);
    *outside = c < 0 || c > in - 1;
    return c;
  }
  default:
    return (x + 0.5) / s - 0.5;
  }
}

/* The taps' coefficients for the fraction `ratio` in (0, 1] of the coordinate past its floor. */
static void coefficients(const cn_resize_attrs *a, const axis_map *m, double ratio, double *w) {
  int64_t n = m->taps;
  if (!a->antialias) {
    if (a->mode == CN_RESIZE_MODE_CUBIC) {
      for (int k = 0; k < 4; k++) w[k] = keys_cubic(ratio + 1 - k, a->cubic_a);
    } else if (a->mode == CN_RESIZE_MODE_LINEAR) {
      w[0] = 1 - ratio, w[1] = ratio;
    } else { /* nearest: the left tap only when the rounding rule says so */
      int left = ratio == 1                                   ? 0
                 : a->nearest == CN_NEAREST_ROUND_PREFER_CEIL ? ratio < 0.5
                 : a->nearest == CN_NEAREST_FLOOR             ? 1
                 : a->nearest == CN_NEAREST_CEIL              ? 0
                                                              : ratio <= 0.5;
      w[0] = left, w[1] = !left;
    }
    return;
  }
  double s = m->scale < 1 ? m->scale : 1, sum = 0;
  int64_t start = 1 - n / 2; /* the window runs from start to start + n - 1 around the floor */
  for (int64_t k = 0; k < n; k++) {
    double t = ((double)(start + k) - ratio) * s;
    w[k] = a->mode == CN_RESIZE_MODE_CUBIC ? keys_cubic(t, a->cubic_a)
                                           : fmax(0.0, fmin(1.0, 1 - fabs(t)));
    sum += w[k];
  }
  for (int64_t k = 0; k < n; k++) w[k] /= sum;
}

/* Fills the taps of output index o: idx (clamped source indices) and w; returns 0 when the
 * output is the extrapolation value. */
static int map_index(const cn_resize_attrs *a, const axis_map *m, int64_t o, int64_t *idx,
                     double *w) {
  int outside;
  double c = exact_coord(a, m, o, &outside), fl = floor(c);
  if (outside) return 0;
  coefficients(a, m, c == fl ? 1.0 : c - fl, w);
  /* The n indices nearest c, ties to the smaller: as ONNX picks them on the edge-padded axis. */
  int64_t n = m->taps, pad = (n + 1) / 2;
  double xp = c + (double)pad, p = floor(xp), frac = xp - p;
  int64_t off = n % 2 == 0 ? (frac == 0 ? -(n / 2) : -(n / 2) + 1)
                           : (frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1);
  int64_t first = (int64_t)p + off - pad;
  double sum = 0;
  for (int64_t k = 0; k < n; k++) {
    int64_t i = first + k;
    if (a->exclude_outside && (i < 0 || i >= m->in)) w[k] = 0;
    sum += w[k];
    idx[k] = i < 0 ? 0 : i >= m->in ? m->in - 1 : i;
  }
  if (a->exclude_outside && sum != 0)
    for (int64_t k = 0; k < n; k++) w[k] /= sum;
  return 1;
}

static axis_map make_axis(const cn_resize_attrs *a, int64_t in, int64_t out, float scale, float r0,
                          float r1) {
  axis_map m = {.in = in, .out = out, .scale = exact_scale(scale, in, out), .roi0 = r0, .roi1 = r1};
  m.taps = axis_taps(a, m.scale);
  return m;
}

/* Per output index of one axis: `taps` indices and weights, and whether it is inside. Built in
 * scratch floats (indices are below 2^20, exact as floats). */
typedef struct axis_table {
  int64_t taps;
  float *idx, *w, *inside;
} axis_table;

static size_t table_floats(const axis_map *m) {
  return (size_t)(m->out * (2 * m->taps + 1));
}

static axis_table build_table(const cn_resize_attrs *a, const axis_map *m, float *buf) {
  axis_table t = {m->taps, buf, buf + m->out * m->taps, buf + 2 * m->out * m->taps};
  int64_t idx[MAX_TAPS];
  double w[MAX_TAPS];
  for (int64_t o = 0; o < m->out; o++) {
    t.inside[o] = (float)map_index(a, m, o, idx, w);
    for (int64_t k = 0; k < m->taps; k++) {
      t.idx[o * m->taps + k] = t.inside[o] != 0 ? (float)idx[k] : 0;
      t.w[o * m->taps + k] = t.inside[o] != 0 ? (float)w[k] : 0;
    }
  }
  return t;
}

typedef struct general_maps {
  axis_map h, w;
} general_maps;

static general_maps general_geometry(const cn_resize_attrs *a, const cn_shape *in,
                                     const cn_shape *out) {
  general_maps g = {make_axis(a, in->dim[1], out->dim[1], a->scale_h, a->roi_h0, a->roi_h1),
                    make_axis(a, in->dim[2], out->dim[2], a->scale_w, a->roi_w0, a->roi_w1)};
  return g;
}

/* One output row of one image: sum over the taps of both axes (rows first, as ONNX resizes
 * axis by axis), in double. */
static void general_row(const cn_resize_attrs *a, const axis_table *th, const axis_table *tw,
                        int64_t iw, int64_t c, int64_t ow, const float *img, int64_t oy,
                        float *dst) {
  for (int64_t ox = 0; ox < ow; ox++)
    for (int64_t j = 0; j < c; j++) {
      if (th->inside[oy] == 0 || tw->inside[ox] == 0) {
        dst[ox * c + j] = a->extrapolation;
        continue;
      }
      double acc = 0;
      for (int64_t kx = 0; kx < tw->taps; kx++) {
        int64_t ix = (int64_t)tw->idx[ox * tw->taps + kx];
        double col = 0;
        for (int64_t ky = 0; ky < th->taps; ky++) {
          int64_t iy = (int64_t)th->idx[oy * th->taps + ky];
          col += (double)th->w[oy * th->taps + ky] * img[(iy * iw + ix) * c + j];
        }
        acc += (double)tw->w[ox * tw->taps + kx] * col;
      }
      dst[ox * c + j] = (float)acc;
    }
}

static size_t resize_scratch(const cn_graph *g, const cn_node *node, int batch) {
  (void)batch;
  const cn_resize_attrs *a = node->attrs;
  if (!general(a)) return 0;
  cn_shape in = cn_shape_batch(1, &g->nodes[node->inputs[0]].shape);
  cn_shape out = cn_shape_batch(1, &node->shape);
  general_maps m = general_geometry(a, &in, &out);
  return table_floats(&m.h) + table_floats(&m.w);
}

static void general_forward(const cn_resize_attrs *a, const cn_tensor *in, cn_tensor *out,
                            float *scratch) {
  general_maps m = general_geometry(a, &in->shape, &out->shape);
  axis_table th = build_table(a, &m.h, scratch);
  axis_table tw = build_table(a, &m.w, scratch + table_floats(&m.h));
  int64_t c = in->shape.dim[3], batch = in->shape.dim[0];
  for (int64_t b = 0; b < batch; b++)
    for (int64_t oy = 0; oy < m.h.out; oy++)
      general_row(a, &th, &tw, m.w.in, c, m.w.out, in->data + b * m.h.in * m.w.in * c, oy,
                  out->data + (b * m.h.out + oy) * m.w.out * c);
}

/* The adjoint of general_forward: every inside output spreads its gradient over its taps. One
 * thread, in output order, so the sums never depend on the thread count. */
static void general_backward(const cn_resize_attrs *a, const cn_tensor *in, const cn_tensor *out,
                             const float *dout, float *din, float *scratch) {
  general_maps m = general_geometry(a, &in->shape, &out->shape);
  axis_table th = build_table(a, &m.h, scratch);
  axis_table tw = build_table(a, &m.w, scratch + table_floats(&m.h));
  int64_t c = in->shape.dim[3], batch = in->shape.dim[0], iw = m.w.in;
  for (int64_t b = 0; b < batch; b++)
    for (int64_t oy = 0; oy < m.h.out; oy++)
      for (int64_t ox = 0; ox < m.w.out; ox++) {
        if (th.inside[oy] == 0 || tw.inside[ox] == 0) continue;
        const float *g = dout + ((b * m.h.out + oy) * m.w.out + ox) * c;
        for (int64_t ky = 0; ky < th.taps; ky++)
          for (int64_t kx = 0; kx < tw.taps; kx++) {
            int64_t iy = (int64_t)th.idx[oy * th.taps + ky],
                    ix = (int64_t)tw.idx[ox * tw.taps + kx];
            float wgt = th.w[oy * th.taps + ky] * tw.w[ox * tw.taps + kx];
            float *d = din + ((b * m.h.in + iy) * iw + ix) * c;
            for (int64_t j = 0; j < c; j++) d[j] += wgt * g[j];
          }
      }
}

/* ---- infer ---------------------------------------------------------------------------------- */

static cn_status resize_infer(cn_graph *g, cn_node *node) {
  const cn_resize_attrs *a = node->attrs;
  char buf[96];
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank != 3 || x->dim[0] < 1 || x->dim[1] < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(x, buf, sizeof buf));
  if ((int)a->mode < CN_RESIZE_MODE_NEAREST || a->mode > CN_RESIZE_MODE_CUBIC ||
      (int)a->coord < CN_COORD_HALF_PIXEL || a->coord > CN_COORD_TF_CROP_AND_RESIZE ||
      (a->antialias && a->mode == CN_RESIZE_MODE_NEAREST) ||
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
  if (general(a) && (axis_taps(a, exact_scale(a->scale_h, x->dim[0], oh)) > MAX_TAPS ||
                     axis_taps(a, exact_scale(a->scale_w, x->dim[1], ow)) > MAX_TAPS))
    return cn_fail(CN_ERR_LIMIT, "%s: antialias window too wide", node->name);
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
  if (general(a)) {
    general_forward(a, &in[0], out, ex->scratch);
    return;
  }
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
  if (general(a)) {
    general_backward(a, &in[0], out, dout->data, din[0].data, ex->scratch);
    return;
  }
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
    .scratch = resize_scratch,
    .backward = resize_backward,
    .backward_scratch = resize_scratch,
};
