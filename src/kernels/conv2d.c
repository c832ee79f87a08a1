/* Conv2D as GEMM. A 1x1 stride-1 convolution is a plain GEMM on the NHWC buffer. Otherwise the
 * input patches are unfolded (im2col) a tile of output pixels at a time, so the scratch stays
 * bounded whatever the image size, and each tile is multiplied by the HWIO kernel, which is
 * already the (kh*kw*cin, filters) matrix GEMM wants. Groups use column slices of the kernel.
 *
 * Threads split the tiles: each unfolds its own tile into its own slice of the scratch and runs a
 * single-threaded GEMM on it (OpenBLAS runs on the calling thread inside a parallel region), so
 * nothing waits on a serial im2col or on a barrier per GEMM. Small layers, where the tiles would
 * be too thin, keep one tile at a time and let OpenBLAS split the GEMM instead. */
#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* im2col scratch in floats, whatever the thread count (a tile always holds at least one output
 * pixel, so a single pixel's patch can exceed it); each thread's tile is at most TILE_MAX. */
#ifndef CN_IM2COL_BUDGET
#define CN_IM2COL_BUDGET (1 << 20)
#endif
enum { IM2COL_BUDGET = CN_IM2COL_BUDGET, TILE_MAX = 1 << 17 };
/* Below this many output pixels per thread, the tiles are not worth splitting. */
enum { MIN_PIXELS_PER_THREAD = 96 };

static int is_pointwise(const cn_window *w) {
  return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pad_top == 0 &&
         w->pad_left == 0;
}

static int64_t patch_size(const cn_window *w, int groups) {
  return (int64_t)w->kh * w->kw * (w->c / groups);
}

size_t cn_conv2d_scratch(const cn_window *w, int64_t filters, int groups) {
  if (is_pointwise(w)) return 0;
  int64_t kdim = patch_size(w, groups), pixels = w->batch * w->oh * w->ow;
  /* A hostile size saturates (the plan's allocation fails cleanly) rather than overflowing. */
  if (kdim > (int64_t)(SIZE_MAX / 16)) return SIZE_MAX / 16;
  if (pixels <= IM2COL_BUDGET / kdim) return (size_t)(pixels * kdim);
  return kdim > IM2COL_BUDGET ? (size_t)kdim : IM2COL_BUDGET;
}

/* How the output pixels are cut into tiles and tiles shared among workers. */
typedef struct tiling {
  int workers;
  int64_t tile_pixels, tiles, slice; /* slice: scratch floats per worker */
} tiling;

static tiling plan_tiles(const cn_window *w, int64_t filters, int groups, int threads) {
  int64_t kdim = patch_size(w, groups), pixels = w->batch * w->oh * w->ow;
  int64_t scratch = (int64_t)cn_conv2d_scratch(w, filters, groups);
  int64_t workers = threads < 1 ? 1 : threads;
  if (pixels < MIN_PIXELS_PER_THREAD * workers) workers = 1;
  if (scratch / workers < kdim) workers = scratch / kdim;
  if (workers < 1) workers = 1;
  int64_t slice = scratch / workers, per_tile = slice < TILE_MAX ? slice : TILE_MAX;
  if (workers == 1) per_tile = slice; /* one big GEMM: OpenBLAS splits it */
  int64_t max_pixels = per_tile / kdim < 1 ? 1 : per_tile / kdim;
  /* Equal tiles, a multiple of the workers, so that every thread gets the same work. */
  int64_t tiles = (pixels + max_pixels - 1) / max_pixels;
  tiles = (tiles + workers - 1) / workers * workers;
  tiling t = {(int)workers, (pixels + tiles - 1) / tiles, 0, slice};
  t.tiles = (pixels + t.tile_pixels - 1) / t.tile_pixels;
  return t;
}

/* Unfolds output pixels [p0, p0 + np) (flattened over batch, height and width) for input
 * channels [c0, c0 + cg): one row of kh*kw*cg values per pixel, zeros in the padding. */
static void im2col(const cn_window *w, const float *x, int64_t c0, int64_t cg, int64_t p0,
                   int64_t np, float *col) {
  int64_t kdim = (int64_t)w->kh * w->kw * cg;
  size_t bytes = (size_t)cg * sizeof(float);
  int64_t b = p0 / (w->oh * w->ow), oy = p0 / w->ow % w->oh, ox = p0 % w->ow;
  for (int64_t p = 0; p < np; p++) {
    const float *image = x + b * w->ih * w->iw * w->c + c0;
    float *dst = col + p * kdim;
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
    if (++ox == w->ow) {
      ox = 0;
      if (++oy == w->oh) oy = 0, b++;
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

/* One tile: unfold, multiply per group, then bias and activation while the tile is in cache.
 * `threads` only matters outside a parallel region (OpenBLAS and the epilogue). */
static void conv_tile(const cn_window *w, int64_t filters, int groups, const float *x,
                      const float *kernel, const float *bias, const cn_activation *act, float *y,
                      float *col, int64_t p0, int64_t np, int threads) {
  int64_t cg = w->c / groups, fg = filters / groups, kdim = patch_size(w, groups);
  float *out = y + p0 * filters;
  for (int g = 0; g < groups; g++) {
    im2col(w, x, g * cg, cg, p0, np, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)fg, (int)kdim, 1.0f, col,
                (int)kdim, kernel + g * fg, (int)filters, 0.0f, out + g * fg, (int)filters);
  }
  cn_bias_act_rows(out, np, filters, filters, bias, act, threads);
}

void cn_conv2d(const cn_window *w, int64_t filters, int groups, const float *x, const float *kernel,
               const float *bias, const cn_activation *act, float *y, float *scratch, int threads) {
  if (is_pointwise(w)) {
    conv_pointwise(w, filters, groups, x, kernel, bias, act, y, threads);
    return;
  }
  int64_t pixels = w->batch * w->oh * w->ow;
  tiling t = plan_tiles(w, filters, groups, threads);
  if (t.workers == 1) {
    for (int64_t i = 0; i < t.tiles; i++) {
      int64_t p0 = i * t.tile_pixels,
              np = pixels - p0 < t.tile_pixels ? pixels - p0 : t.tile_pixels;
      conv_tile(w, filters, groups, x, kernel, bias, act, y, scratch, p0, np, threads);
    }
    return;
  }
#pragma omp parallel num_threads(t.workers)
  {
    float *col = scratch + omp_get_thread_num() * t.slice;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < t.tiles; i++) {
      int64_t p0 = i * t.tile_pixels,
              np = pixels - p0 < t.tile_pixels ? pixels - p0 : t.tile_pixels;
      conv_tile(w, filters, groups, x, kernel, bias, act, y, col, p0, np, 1);
    }
  }
}
