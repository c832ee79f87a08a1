/* MaxPooling2D and AveragePooling2D. Keras semantics (TensorFlow padding; average pooling
 * excludes padded cells) run on the kernels in src/kernels/pool.c. The ONNX attributes at the end
 * of cn_pool_attrs (explicit pads, ceil_mode, count_include_pad, dilations) take a general loop
 * here instead, so that the Keras path stays exactly as it was. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { MAX_WINDOW = 1 << 16 };

/* Geometry of the ONNX-style pooling: explicit pads on every side, dilated taps. */
typedef struct pool_geom {
  int64_t ih, iw, c, oh, ow;
  int kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} pool_geom;

static int is_extended(const cn_pool_attrs *a) {
  return a->pad_top || a->pad_left || a->pad_bottom || a->pad_right || a->ceil_mode ||
         a->count_include_pad || a->dh > 1 || a->dw > 1 || a->indices;
}

/* Output length along one axis; ceil mode drops a last window that starts in the end padding,
 * as ONNX and PyTorch do. */
static int64_t pooled_size(int64_t in, int k, int s, int d, int pb, int pe, int ceil_mode) {
  int64_t span = (int64_t)(k - 1) * d + 1, room = in + pb + pe - span;
  if (room < 0) return 0;
  int64_t out = (ceil_mode ? (room + s - 1) / s : room / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + pb) out--;
  return out;
}

/* TensorFlow SAME padding split for one axis (extra at the end). */
static void same_pads(int64_t in, int k, int s, int d, int *before, int *after) {
  int64_t out = (in + s - 1) / s, total = (out - 1) * s + (int64_t)(k - 1) * d + 1 - in;
  if (total < 0) total = 0;
  *before = (int)(total / 2);
  *after = (int)(total - total / 2);
}

static pool_geom pool_geometry(const cn_pool_attrs *a, const int64_t *in /* h, w, c */) {
  pool_geom g = {
      .ih = in[0], .iw = in[1], .c = in[2], .kh = a->ph, .kw = a->pw, .sh = a->sh, .sw = a->sw};
  g.dh = a->dh > 1 ? a->dh : 1;
  g.dw = a->dw > 1 ? a->dw : 1;
  if (a->padding == CN_PAD_SAME) {
    same_pads(g.ih, g.kh, g.sh, g.dh, &g.pt, &g.pb);
    same_pads(g.iw, g.kw, g.sw, g.dw, &g.pl, &g.pr);
  } else {
    g.pt = a->pad_top, g.pl = a->pad_left, g.pb = a->pad_bottom, g.pr = a->pad_right;
  }
  g.oh = pooled_size(g.ih, g.kh, g.sh, g.dh, g.pt, g.pb, a->ceil_mode);
  g.ow = pooled_size(g.iw, g.kw, g.sw, g.dw, g.pl, g.pr, a->ceil_mode);
  return g;
}

static int in_range(int v, int lo, int hi) {
  return v >= lo && v <= hi;
}

static cn_status extended_infer(cn_graph *g, cn_node *node) {
  const cn_pool_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  char buf[96];
  if (in->rank != 3 || in->dim[0] < 1 || in->dim[1] < 1 || in->dim[2] < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(in, buf, sizeof buf));
  if (!in_range(a->ph, 1, MAX_WINDOW) || !in_range(a->pw, 1, MAX_WINDOW) ||
      !in_range(a->sh, 1, MAX_WINDOW) || !in_range(a->sw, 1, MAX_WINDOW) ||
      !in_range(a->dh, 0, MAX_WINDOW) || !in_range(a->dw, 0, MAX_WINDOW))
    return cn_fail(CN_ERR_FORMAT, "%s: bad pool size, stride or dilation", node->name);
  if (!in_range(a->pad_top, 0, MAX_WINDOW) || !in_range(a->pad_left, 0, MAX_WINDOW) ||
      !in_range(a->pad_bottom, 0, MAX_WINDOW) || !in_range(a->pad_right, 0, MAX_WINDOW))
    return cn_fail(CN_ERR_FORMAT, "%s: bad pads", node->name);
  int explicit_pads = a->pad_top || a->pad_left || a->pad_bottom || a->pad_right;
  if ((int)a->padding != CN_PAD_VALID && (int)a->padding != CN_PAD_SAME)
    return cn_fail(CN_ERR_FORMAT, "%s: unknown padding %d", node->name, (int)a->padding);
  if ((a->indices != 0 && a->indices != 1) || (a->storage_order != 0 && a->storage_order != 1))
    return cn_fail(CN_ERR_FORMAT, "%s: bad indices or storage_order", node->name);
  if (a->padding == CN_PAD_SAME && (explicit_pads || a->ceil_mode))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: SAME padding with explicit pads or ceil_mode",
                   node->name);
  pool_geom pg = pool_geometry(a, in->dim);
  if (pg.oh < 1 || pg.ow < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: window larger than the padded input %s", node->name,
                   cn_shape_format(in, buf, sizeof buf));
  node->shape = cn_shape_make(3, (int64_t[]){pg.oh, pg.ow, pg.c});
  return CN_OK;
}

static cn_status pool_infer(cn_graph *g, cn_node *node) {
  const cn_pool_attrs *a = node->attrs;
  if (is_extended(a)) return extended_infer(g, node);
  cn_window w = {0};
  cn_status st = cn_window_infer(node->name, &g->nodes[node->inputs[0]].shape, a->ph, a->pw, a->sh,
                                 a->sw, 1, 1, a->padding, &w);
  if (st != CN_OK) return st;
  node->shape = cn_shape_make(3, (int64_t[]){w.oh, w.ow, w.c});
  return CN_OK;
}

static void pool_pixel(const pool_geom *g, const float *image, int64_t oy, int64_t ox, int is_max,
                       int include_pad, float *dst) {
  int64_t y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
  int ylo, yhi, xlo, xhi;
  cn_window_taps(y0, g->kh, g->dh, g->ih, &ylo, &yhi);
  cn_window_taps(x0, g->kw, g->dw, g->iw, &xlo, &xhi);
  for (int64_t j = 0; j < g->c; j++) dst[j] = is_max ? -INFINITY : 0.0f;
  for (int ky = ylo; ky < yhi; ky++)
    for (int kx = xlo; kx < xhi; kx++) {
      const float *src =
          image + ((y0 + (int64_t)ky * g->dh) * g->iw + x0 + (int64_t)kx * g->dw) * g->c;
      if (is_max)
        for (int64_t j = 0; j < g->c; j++) dst[j] = cn_maxf(dst[j], src[j]);
      else
        for (int64_t j = 0; j < g->c; j++) dst[j] += src[j];
    }
  int valid = (yhi - ylo) * (xhi - xlo);
  if (valid == 0) {
    for (int64_t j = 0; j < g->c; j++) dst[j] = 0;
    return;
  }
  if (is_max) return;
  int count = include_pad ? cn_window_taps_before(y0, g->kh, g->dh, g->ih + g->pb) *
                                cn_window_taps_before(x0, g->kw, g->dw, g->iw + g->pr)
                          : valid;
  float inv = 1.0f / (float)count;
  for (int64_t j = 0; j < g->c; j++) dst[j] *= inv;
}

/* The Indices output at one window: the ONNX flat index of the first maximum (row order), or 0
 * for a window wholly in the padding. plane is the index of image (n, c=0) in NCHW. */
static void index_pixel(const pool_geom *g, const float *image, int64_t oy, int64_t ox,
                        int64_t plane, int column_major, float *dst) {
  int64_t y0 = oy * g->sh - g->pt, x0 = ox * g->sw - g->pl;
  int ylo, yhi, xlo, xhi;
  cn_window_taps(y0, g->kh, g->dh, g->ih, &ylo, &yhi);
  cn_window_taps(x0, g->kw, g->dw, g->iw, &xlo, &xhi);
  for (int64_t j = 0; j < g->c; j++) {
    float best = 0;
    int64_t at = -1;
    for (int ky = ylo; ky < yhi; ky++)
      for (int kx = xlo; kx < xhi; kx++) {
        int64_t y = y0 + (int64_t)ky * g->dh, x = x0 + (int64_t)kx * g->dw;
        float v = image[(y * g->iw + x) * g->c + j];
        if (at < 0 || v > best) {
          best = v;
          at = column_major ? y + x * g->ih : y * g->iw + x;
        }
      }
    dst[j] = at < 0 ? 0.0f : (float)((plane + j) * g->ih * g->iw + at);
  }
}

static void extended_pool(const cn_node *node, const cn_tensor *in, cn_tensor *out, int is_max,
                          int threads) {
  const cn_pool_attrs *a = node->attrs;
  pool_geom g = pool_geometry(a, in->shape.dim + 1);
  int64_t rows = in->shape.dim[0] * g.oh;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * g.ow * g.c > 4096)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / g.oh, oy = r % g.oh;
    const float *image = in->data + b * g.ih * g.iw * g.c;
    for (int64_t ox = 0; ox < g.ow; ox++)
      if (a->indices)
        index_pixel(&g, image, oy, ox, b * g.c, a->storage_order,
                    out->data + (r * g.ow + ox) * g.c);
      else
        pool_pixel(&g, image, oy, ox, is_max, a->count_include_pad,
                   out->data + (r * g.ow + ox) * g.c);
  }
}

/* The ONNX attributes without dilation or indices run on the kernels too: explicit pads and
 * ceil_mode only move the windows, and count_include_pad changes the divisor (InceptionV3's
 * 3x3 average poolings at batch 1 took 2.5x ONNX Runtime's time in the general loop). */
static int dense_windows(const cn_pool_attrs *a) {
  return a->dh <= 1 && a->dw <= 1 && !a->indices;
}

static cn_window pool_window(const cn_node *node, const cn_tensor *in, const pool_geom *g) {
  const cn_pool_attrs *a = node->attrs;
  if (!is_extended(a))
    return cn_window_make(&in->shape, a->ph, a->pw, a->sh, a->sw, 1, 1, a->padding);
  cn_window w = {.batch = in->shape.dim[0], .ih = g->ih, .iw = g->iw, .c = g->c};
  w.oh = g->oh, w.ow = g->ow, w.kh = g->kh, w.kw = g->kw, w.sh = g->sh, w.sw = g->sw;
  w.dh = w.dw = 1, w.pad_top = g->pt, w.pad_left = g->pl;
  return w;
}

static void pool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                         int is_max) {
  const cn_pool_attrs *a = node->attrs;
  if (!dense_windows(a)) {
    extended_pool(node, &in[0], out, is_max, ex->threads);
    return;
  }
  pool_geom g = is_extended(a) ? pool_geometry(a, in[0].shape.dim + 1) : (pool_geom){0};
  cn_window w = pool_window(node, &in[0], &g);
  if (is_max)
    cn_maxpool(&w, in[0].data, out->data, ex->threads);
  else if (a->count_include_pad)
    cn_avgpool_padded(&w, g.pb, g.pr, in[0].data, out->data, ex->threads);
  else
    cn_avgpool(&w, in[0].data, out->data, ex->threads);
}

static void maxpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  pool_forward(node, in, out, ex, 1);
}

static void avgpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  pool_forward(node, in, out, ex, 0);
}

/* ---- backward ------------------------------------------------------------------------------
 * One loop serves both paths: the Keras geometry is the ONNX one with TensorFlow's SAME pads and
 * no extensions. Work is split into (image, block of GRAD_BLOCK channels) tasks that own disjoint
 * parts of din and scan the output in a fixed order, so the sums do not depend on threads. */

enum { GRAD_BLOCK = 64 };

/* The window of output pixel (oy, ox): first tap position and the valid tap ranges. */
typedef struct pool_taps {
  int64_t y0, x0;
  int ylo, yhi, xlo, xhi;
} pool_taps;

static pool_taps taps_of(const pool_geom *g, int64_t oy, int64_t ox) {
  pool_taps t = {.y0 = oy * g->sh - g->pt, .x0 = ox * g->sw - g->pl};
  cn_window_taps(t.y0, g->kh, g->dh, g->ih, &t.ylo, &t.yhi);
  cn_window_taps(t.x0, g->kw, g->dw, g->iw, &t.xlo, &t.xhi);
  return t;
}

static int64_t tap_offset(const pool_geom *g, const pool_taps *t, int ky, int kx) {
  return ((t->y0 + (int64_t)ky * g->dh) * g->iw + t->x0 + (int64_t)kx * g->dw) * g->c;
}

/* Max: dy goes to the first tap in scan order that equals the window's maximum y (the forward's
 * output): the tap the forward's running max keeps. One pass over the taps, contiguous over
 * channels and branch-free, so it vectorises; a tap that did not win adds 0. */
static void max_pixel_backward(const pool_geom *g, const pool_taps *t, const float *x,
                               const float *y, const float *dy, float *dx, int64_t c0, int64_t n) {
  int taken[GRAD_BLOCK] = {0};
  const float *restrict best = y + c0, *restrict grad = dy + c0;
  for (int ky = t->ylo; ky < t->yhi; ky++)
    for (int kx = t->xlo; kx < t->xhi; kx++) {
      int64_t off = tap_offset(g, t, ky, kx) + c0;
      const float *restrict v = x + off;
      float *restrict d = dx + off;
      for (int64_t j = 0; j < n; j++) {
        int hit = (v[j] == best[j]) & !taken[j];
        d[j] += hit ? grad[j] : 0.0f;
        taken[j] |= hit;
      }
    }
}

/* Average: each counted tap gets dy / count; padded cells take their share nowhere. */
static void avg_pixel_backward(const pool_geom *g, const pool_taps *t, int include_pad,
                               const float *dy, float *dx, int64_t c0, int64_t n) {
  int valid = (t->yhi - t->ylo) * (t->xhi - t->xlo);
  int count = include_pad ? cn_window_taps_before(t->y0, g->kh, g->dh, g->ih + g->pb) *
                                cn_window_taps_before(t->x0, g->kw, g->dw, g->iw + g->pr)
                          : valid;
  float inv = 1.0f / (float)count;
  for (int ky = t->ylo; ky < t->yhi; ky++)
    for (int kx = t->xlo; kx < t->xhi; kx++) {
      float *d = dx + tap_offset(g, t, ky, kx) + c0;
      for (int64_t j = 0; j < n; j++) d[j] += dy[c0 + j] * inv;
    }
}

static void pool_backward(const cn_node *node, const cn_tensor *in, const cn_tensor *out,
                          const cn_tensor *dout, float *dx, int is_max, int threads) {
  const cn_pool_attrs *a = node->attrs;
  pool_geom g = pool_geometry(a, in->shape.dim + 1);
  g.oh = dout->shape.dim[1], g.ow = dout->shape.dim[2];
  int64_t blocks = (g.c + GRAD_BLOCK - 1) / GRAD_BLOCK, tasks = in->shape.dim[0] * blocks;
  int64_t image = g.ih * g.iw * g.c, pixels = g.oh * g.ow;
#pragma omp parallel for num_threads(threads) schedule(static) if (tasks > 1)
  for (int64_t task = 0; task < tasks; task++) {
    int64_t b = task / blocks, c0 = task % blocks * GRAD_BLOCK;
    int64_t n = g.c - c0 < GRAD_BLOCK ? g.c - c0 : GRAD_BLOCK;
    const float *x = in->data + b * image;
    float *d = dx + b * image;
    for (int64_t p = 0; p < pixels; p++) {
      pool_taps t = taps_of(&g, p / g.ow, p % g.ow);
      const float *dy = dout->data + (b * pixels + p) * g.c;
      if (t.yhi == t.ylo || t.xhi == t.xlo) continue; /* forward wrote 0 */
      if (is_max)
        max_pixel_backward(&g, &t, x, out->data + (b * pixels + p) * g.c, dy, d, c0, n);
      else
        avg_pixel_backward(&g, &t, a->count_include_pad, dy, d, c0, n);
    }
  }
}

static void maxpool_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  const cn_pool_attrs *a = node->attrs;
  if (din[0].data && !a->indices)
    pool_backward(node, &in[0], out, dout, din[0].data, 1, ex->threads);
}

static void avgpool_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  if (din[0].data) pool_backward(node, &in[0], out, dout, din[0].data, 0, ex->threads);
}

const cn_op cn_op_maxpool = {
    .type = "MaxPooling2D",
    .attrs_size = sizeof(cn_pool_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = pool_infer,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
};

const cn_op cn_op_avgpool = {
    .type = "AveragePooling2D",
    .attrs_size = sizeof(cn_pool_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = pool_infer,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
};
