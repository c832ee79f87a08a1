/* DepthwiseConv2D as a direct loop: for each output pixel, the taps are accumulated over
 * contiguous channels, which the compiler vectorises; rows of output run in parallel. The HWIO
 * kernel (kh, kw, c, mult) flattened per tap is indexed exactly like the output channel
 * c * mult + m. */
#include <string.h>

#include "kernels/kernels.h"

static void accumulate_tap(float *restrict dst, const float *restrict src, const float *restrict k,
                           int64_t c, int mult) {
  if (mult == 1) {
#pragma omp simd
    for (int64_t j = 0; j < c; j++) dst[j] += src[j] * k[j];
    return;
  }
  for (int64_t j = 0; j < c; j++)
    for (int m = 0; m < mult; m++) dst[j * mult + m] += src[j] * k[j * mult + m];
}

static void depthwise_pixel(const cn_window *w, int mult, const float *image, int64_t oy,
                            int64_t ox, const float *kernel, const float *bias, float *dst) {
  int64_t oc = w->c * mult;
  if (bias)
    memcpy(dst, bias, (size_t)oc * sizeof(float));
  else
    memset(dst, 0, (size_t)oc * sizeof(float));
  for (int ky = 0; ky < w->kh; ky++) {
    int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
    if (iy < 0 || iy >= w->ih) continue;
    for (int kx = 0; kx < w->kw; kx++) {
      int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
      if (ix < 0 || ix >= w->iw) continue;
      accumulate_tap(dst, image + (iy * w->iw + ix) * w->c, kernel + (ky * w->kw + kx) * oc, w->c,
                     mult);
    }
  }
}

void cn_depthwise(const cn_window *w, int mult, const float *x, const float *kernel,
                  const float *bias, const cn_activation *act, float *y, int threads) {
  int64_t oc = w->c * mult, rows = w->batch * w->oh;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / w->oh, oy = r % w->oh;
    const float *image = x + b * w->ih * w->iw * w->c;
    float *out = y + r * w->ow * oc;
    for (int64_t ox = 0; ox < w->ow; ox++)
      depthwise_pixel(w, mult, image, oy, ox, kernel, bias, out + ox * oc);
    if (act->kind != CN_ACT_LINEAR)
      for (int64_t ox = 0; ox < w->ow; ox++) cn_bias_act_row(out + ox * oc, oc, NULL, act);
  }
}
