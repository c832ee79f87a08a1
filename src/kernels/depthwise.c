/* DepthwiseConv2D as a direct loop: for each output pixel, the taps are accumulated over
 * contiguous channels, which the compiler vectorises; rows of output run in parallel. The HWIO
 * kernel (kh, kw, c, mult) flattened per tap is indexed exactly like the output channel
 * c * mult + m. */
#include <string.h>

#include "kernels/kernels.h"

/* Channels accumulated in registers at a time when the multiplier is 1. */
enum { BLOCK = 16 };

/* The taps [*lo, *hi) of a window starting at `start` (step `dilation`) that land inside [0, n). */
static void valid_taps(int64_t start, int k, int dilation, int64_t n, int *lo, int *hi) {
  int64_t first = start < 0 ? (-start + dilation - 1) / dilation : 0;
  int64_t end = n - start <= 0 ? 0 : (n - start + dilation - 1) / dilation;
  *lo = (int)(first < k ? first : k);
  *hi = (int)(end < k ? end : k);
  if (*hi < *lo) *hi = *lo;
}

/* Eight floats as one value: GCC/Clang vector extensions, so the accumulators live in registers
 * (one AVX register each, or two SSE ones) whatever the -march. */
typedef float v8f __attribute__((vector_size(32)));

static inline v8f load8(const float *p) {
  v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* One block of BLOCK channels (multiplier 1) summed over the taps in registers. */
static void block_pixel(const cn_window *w, const float *image, int64_t y0, int64_t x0,
                        const int *range, const float *kernel, const float *bias, int64_t c0,
                        float *dst) {
  v8f acc0 = {0}, acc1 = {0};
  int64_t step = (int64_t)w->dw * w->c;
  if (bias) acc0 = load8(bias + c0), acc1 = load8(bias + c0 + 8);
  for (int ky = range[0]; ky < range[1]; ky++) {
    const float *src =
        image + ((y0 + (int64_t)ky * w->dh) * w->iw + x0 + range[2] * w->dw) * w->c + c0;
    const float *k = kernel + ((int64_t)ky * w->kw + range[2]) * w->c + c0;
    for (int kx = range[2]; kx < range[3]; kx++) {
      acc0 += load8(src) * load8(k);
      acc1 += load8(src + 8) * load8(k + 8);
      src += step, k += w->c;
    }
  }
  memcpy(dst + c0, &acc0, sizeof acc0);
  memcpy(dst + c0 + 8, &acc1, sizeof acc1);
}

/* Channels [c0, oc) of one pixel, any multiplier, accumulated in the output. */
static void general_pixel(const cn_window *w, int mult, const float *image, int64_t y0, int64_t x0,
                          const int *range, const float *kernel, const float *bias, int64_t c0,
                          float *restrict dst) {
  int64_t oc = w->c * mult;
  for (int64_t j = c0; j < oc; j++) dst[j] = bias ? bias[j] : 0.0f;
  for (int ky = range[0]; ky < range[1]; ky++)
    for (int kx = range[2]; kx < range[3]; kx++) {
      const float *restrict src =
          image + ((y0 + (int64_t)ky * w->dh) * w->iw + x0 + (int64_t)kx * w->dw) * w->c;
      const float *restrict k = kernel + (ky * w->kw + kx) * oc;
      for (int64_t j = c0; j < oc; j++) dst[j] += src[j / mult] * k[j];
    }
}

static void depthwise_pixel(const cn_window *w, int mult, const float *image, int64_t oy,
                            int64_t ox, const float *kernel, const float *bias, float *dst) {
  int64_t y0 = oy * w->sh - w->pad_top, x0 = ox * w->sw - w->pad_left, c0 = 0;
  int range[4];
  valid_taps(y0, w->kh, w->dh, w->ih, &range[0], &range[1]);
  valid_taps(x0, w->kw, w->dw, w->iw, &range[2], &range[3]);
  if (mult == 1)
    for (; c0 + BLOCK <= w->c; c0 += BLOCK)
      block_pixel(w, image, y0, x0, range, kernel, bias, c0, dst);
  if (c0 < w->c * mult) general_pixel(w, mult, image, y0, x0, range, kernel, bias, c0, dst);
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
    if (act->kind == CN_ACT_SOFTMAX) /* per pixel; elementwise ones over the whole row */
      for (int64_t ox = 0; ox < w->ow; ox++) cn_bias_act_row(out + ox * oc, oc, NULL, act);
    else
      cn_act_apply(act, out, (size_t)(w->ow * oc));
  }
}
