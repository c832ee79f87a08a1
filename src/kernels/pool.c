/* Max and average pooling over NHWC, parallel over output rows, vectorised over channels.
 * Cells in the padding are skipped: max ignores them and average divides by the valid count,
 * as TensorFlow does, or (cn_avgpool_padded) by the cells of the window inside the padded
 * extent, as ONNX's count_include_pad does. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

/* Channels [j0, j0 + POOL_BLOCK) of one output pixel, summed (or maxed) in registers over the
 * valid taps in the order the tap loop takes them, stored once: accumulating in the output
 * loaded and stored it once per tap (InceptionV3's 3x3 average poolings at batch 8: 9.1 ms
 * against ONNX Runtime's 5.4). */
enum { POOL_VECS = 4, POOL_BLOCK = POOL_VECS * WIDE_LANES };

static void pool_block(const cn_window *w, const float *image, int64_t y0, int64_t x0, int ylo,
                       int yhi, int xlo, int xhi, int is_max, int count, float *dst) {
  vwide acc[POOL_VECS];
  for (int v = 0; v < POOL_VECS; v++) acc[v] = is_max ? (vwide){0} - INFINITY : (vwide){0};
  for (int ky = ylo; ky < yhi; ky++)
    for (int kx = xlo; kx < xhi; kx++) {
      const float *src = image + ((y0 + ky) * w->iw + x0 + kx) * w->c;
      for (int v = 0; v < POOL_VECS; v++) {
        vwide x = loadw(src + v * WIDE_LANES);
        acc[v] = is_max ? vmaxw(x, acc[v]) : acc[v] + x;
      }
    }
  int empty = ylo == yhi || xlo == xhi;
  for (int v = 0; v < POOL_VECS; v++) {
    vwide out = empty ? (vwide){0} : is_max ? acc[v] : acc[v] / (float)count;
    storew(dst + v * WIDE_LANES, out);
  }
}

/* The divisor of an average: the valid taps, or with `pad_end` (the padding after the input,
 * rows then columns) the taps inside the padded extent. */
static int pool_count(const cn_window *w, int64_t y0, int64_t x0, int ylo, int yhi, int xlo,
                      int xhi, const int *pad_end) {
  if (!pad_end) return (yhi - ylo) * (xhi - xlo);
  return cn_window_taps_before(y0, w->kh, 1, w->ih + pad_end[0]) *
         cn_window_taps_before(x0, w->kw, 1, w->iw + pad_end[1]);
}

static void pool_pixel(const cn_window *w, const float *image, int64_t oy, int64_t ox, int is_max,
                       const int *pad_end, float *restrict dst) {
  int64_t y0 = oy * w->sh - w->pad_top, x0 = ox * w->sw - w->pad_left, c = w->c;
  int ylo, yhi, xlo, xhi;
  cn_window_taps(y0, w->kh, 1, w->ih, &ylo, &yhi);
  cn_window_taps(x0, w->kw, 1, w->iw, &xlo, &xhi);
  int count = pool_count(w, y0, x0, ylo, yhi, xlo, xhi, pad_end);
  int64_t j0 = 0;
  for (; j0 + POOL_BLOCK <= c; j0 += POOL_BLOCK)
    pool_block(w, image + j0, y0, x0, ylo, yhi, xlo, xhi, is_max, count, dst + j0);
  if (j0 == c) return;
#pragma omp simd
  for (int64_t j = j0; j < c; j++) dst[j] = is_max ? -INFINITY : 0.0f;
  for (int ky = ylo; ky < yhi; ky++)
    for (int kx = xlo; kx < xhi; kx++) {
      const float *restrict src = image + ((y0 + ky) * w->iw + x0 + kx) * c;
      if (is_max)
#pragma omp simd
        for (int64_t j = j0; j < c; j++) dst[j] = cn_maxf(dst[j], src[j]);
      else
#pragma omp simd
        for (int64_t j = j0; j < c; j++) dst[j] += src[j];
    }
  if (ylo == yhi || xlo == xhi)
#pragma omp simd
    for (int64_t j = j0; j < c; j++) dst[j] = 0;
  else if (!is_max)
    for (int64_t j = j0; j < c; j++) dst[j] /= (float)count;
}

static void pool(const cn_window *w, const float *x, float *y, int is_max, const int *pad_end,
                 int threads) {
  int64_t rows = w->batch * w->oh;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / w->oh, oy = r % w->oh;
    const float *image = x + b * w->ih * w->iw * w->c;
    for (int64_t ox = 0; ox < w->ow; ox++)
      pool_pixel(w, image, oy, ox, is_max, pad_end, y + (r * w->ow + ox) * w->c);
  }
}

void cn_maxpool(const cn_window *w, const float *x, float *y, int threads) {
  pool(w, x, y, 1, NULL, threads);
}

void cn_avgpool(const cn_window *w, const float *x, float *y, int threads) {
  pool(w, x, y, 0, NULL, threads);
}

void cn_avgpool_padded(const cn_window *w, int pad_bottom, int pad_right, const float *x, float *y,
                       int threads) {
  int pad_end[2] = {pad_bottom, pad_right};
  pool(w, x, y, 0, pad_end, threads);
}
