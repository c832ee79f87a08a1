/* Max and average pooling over NHWC, parallel over output rows, vectorised over channels.
 * Cells in the padding are skipped: max ignores them and average divides by the valid count,
 * as TensorFlow does. */
#include <math.h>

#include "kernels/kernels.h"

/* The valid tap range [*lo, *hi) of a window starting at `start` over an axis of length n. */
static void valid_taps(int64_t start, int k, int64_t n, int *lo, int *hi) {
  *lo = start < 0 ? (int)-start : 0;
  *hi = start + k > n ? (int)(n - start) : k;
  if (*hi < *lo) *hi = *lo;
}

static void pool_pixel(const cn_window *w, const float *image, int64_t oy, int64_t ox, int is_max,
                       float *restrict dst) {
  int64_t y0 = oy * w->sh - w->pad_top, x0 = ox * w->sw - w->pad_left, c = w->c;
  int ylo, yhi, xlo, xhi;
  valid_taps(y0, w->kh, w->ih, &ylo, &yhi);
  valid_taps(x0, w->kw, w->iw, &xlo, &xhi);
#pragma omp simd
  for (int64_t j = 0; j < c; j++) dst[j] = is_max ? -INFINITY : 0.0f;
  for (int ky = ylo; ky < yhi; ky++)
    for (int kx = xlo; kx < xhi; kx++) {
      const float *restrict src = image + ((y0 + ky) * w->iw + x0 + kx) * c;
      if (is_max)
#pragma omp simd
        for (int64_t j = 0; j < c; j++) dst[j] = cn_maxf(dst[j], src[j]);
      else
#pragma omp simd
        for (int64_t j = 0; j < c; j++) dst[j] += src[j];
    }
  int count = (yhi - ylo) * (xhi - xlo);
  if (count == 0)
#pragma omp simd
    for (int64_t j = 0; j < c; j++) dst[j] = 0;
  else if (!is_max)
    for (int64_t j = 0; j < c; j++) dst[j] /= (float)count;
}

static void pool(const cn_window *w, const float *x, float *y, int is_max, int threads) {
  int64_t rows = w->batch * w->oh;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / w->oh, oy = r % w->oh;
    const float *image = x + b * w->ih * w->iw * w->c;
    for (int64_t ox = 0; ox < w->ow; ox++)
      pool_pixel(w, image, oy, ox, is_max, y + (r * w->ow + ox) * w->c);
  }
}

void cn_maxpool(const cn_window *w, const float *x, float *y, int threads) {
  pool(w, x, y, 1, threads);
}

void cn_avgpool(const cn_window *w, const float *x, float *y, int threads) {
  pool(w, x, y, 0, threads);
}
