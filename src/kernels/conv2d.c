/* Conv2D as GEMM. A 1x1 stride-1 convolution is a plain GEMM on the NHWC buffer. Otherwise the
 * input patches are unfolded (im2col) a tile of output rows at a time, so the scratch stays
 * bounded whatever the image size, and each tile is multiplied by the HWIO kernel, which is
 * already the (kh*kw*cin, filters) matrix GEMM wants. Groups use column slices of the kernel. */
#include <cblas.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* im2col tile budget in floats; a tile always holds at least one output row. */
#ifndef CN_IM2COL_BUDGET
#define CN_IM2COL_BUDGET (1 << 20)
#endif
enum { IM2COL_BUDGET = CN_IM2COL_BUDGET };

static int is_pointwise(const cn_window *w) {
  return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pad_top == 0 &&
         w->pad_left == 0;
}

/* Output rows (over batch * oh) per im2col tile. */
static int64_t tile_rows(const cn_window *w, int64_t kdim) {
  int64_t per_row = w->ow * kdim;
  int64_t rows = per_row > 0 ? IM2COL_BUDGET / per_row : 1;
  if (rows < 1) rows = 1;
  if (rows > w->batch * w->oh) rows = w->batch * w->oh;
  return rows;
}

size_t cn_conv2d_scratch(const cn_window *w, int64_t filters, int groups) {
  if (is_pointwise(w)) return 0;
  int64_t kdim = (int64_t)w->kh * w->kw * (w->c / groups);
  /* One output row can exceed the budget; a hostile size then saturates (the plan's allocation
   * fails cleanly) rather than overflowing. */
  if (w->ow > (int64_t)(SIZE_MAX / 16) / kdim) return SIZE_MAX / 16;
  return (size_t)(tile_rows(w, kdim) * w->ow * kdim);
}

/* Unfolds output rows [r0, r0 + nr) (flattened over batch and height) for input channels
 * [c0, c0 + cg): one row of kh*kw*cg values per output pixel, zeros where the window is in the
 * padding. */
static void im2col(const cn_window *w, const float *x, int64_t c0, int64_t cg, int64_t r0,
                   int64_t nr, float *col, int threads) {
  int64_t kdim = (int64_t)w->kh * w->kw * cg;
  size_t bytes = (size_t)cg * sizeof(float);
#pragma omp parallel for num_threads(threads) schedule(static) if (nr > 1)
  for (int64_t r = 0; r < nr; r++) {
    int64_t b = (r0 + r) / w->oh, oy = (r0 + r) % w->oh;
    const float *image = x + b * w->ih * w->iw * w->c + c0;
    for (int64_t ox = 0; ox < w->ow; ox++) {
      float *dst = col + (r * w->ow + ox) * kdim;
      for (int ky = 0; ky < w->kh; ky++) {
        int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
        for (int kx = 0; kx < w->kw; kx++, dst += cg) {
          int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
          if (iy < 0 || iy >= w->ih || ix < 0 || ix >= w->iw)
            memset(dst, 0, bytes);
          else
            memcpy(dst, image + (iy * w->iw + ix) * w->c, bytes);
        }
      }
    }
  }
}

static void conv_pointwise(const cn_window *w, int64_t filters, int groups, const float *x,
                           const float *kernel, const float *bias, const cn_activation *act,
                           float *y, int threads) {
  int64_t m = w->batch * w->oh * w->ow, cg = w->c / groups, fg = filters / groups;
  if (groups == 1) {
    cn_gemm_bias_act(m, filters, w->c, x, w->c, kernel, filters, bias, act, y, filters, threads);
    return;
  }
  cn_activation linear = cn_act_linear();
  for (int g = 0; g < groups; g++)
    cn_gemm_bias_act(m, fg, cg, x + g * cg, w->c, kernel + g * fg, filters, NULL, &linear,
                     y + g * fg, filters, threads);
  cn_bias_act_rows(y, m, filters, filters, bias, act, threads);
}

void cn_conv2d(const cn_window *w, int64_t filters, int groups, const float *x, const float *kernel,
               const float *bias, const cn_activation *act, float *y, float *scratch, int threads) {
  if (is_pointwise(w)) {
    conv_pointwise(w, filters, groups, x, kernel, bias, act, y, threads);
    return;
  }
  int64_t cg = w->c / groups, fg = filters / groups, kdim = (int64_t)w->kh * w->kw * cg;
  int64_t total = w->batch * w->oh, step = tile_rows(w, kdim);
  for (int64_t r0 = 0; r0 < total; r0 += step) {
    int64_t nr = total - r0 < step ? total - r0 : step;
    float *out = y + r0 * w->ow * filters;
    for (int g = 0; g < groups; g++) {
      im2col(w, x, g * cg, cg, r0, nr, scratch, threads);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(nr * w->ow), (int)fg, (int)kdim,
                  1.0f, scratch, (int)kdim, kernel + g * fg, (int)filters, 0.0f, out + g * fg,
                  (int)filters);
    }
    cn_bias_act_rows(out, nr * w->ow, filters, filters, bias, act, threads);
  }
}
