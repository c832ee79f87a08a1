/* Conv2D as GEMM. A 1x1 stride-1 convolution is a plain GEMM on the NHWC buffer. Otherwise the
 * input patches are unfolded (im2col) a tile of output pixels at a time, so the scratch stays
 * bounded whatever the image size, and each tile is multiplied by the HWIO kernel, which is
 * already the (kh*kw*cin, filters) matrix GEMM wants. Groups use column slices of the kernel.
 *
 * Determinism: the tiles and the GEMM blocks are a function of the geometry only, each GEMM is a
 * single-threaded sgemm call (OpenBLAS runs on the calling thread inside an active parallel
 * region), and threads only choose which tiles or blocks they compute, so the output is bitwise
 * the same for any thread count. Large layers are cut into worker tiles: each thread unfolds its
 * own tile into its own slice of the scratch and multiplies it, so nothing waits on a serial
 * im2col or on a barrier per GEMM. Small layers, whose tiles would be too thin, are unfolded
 * whole by the team and multiplied in blocks of rows and columns (cn_gemm_plan). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"

/* im2col scratch in floats, whatever the thread count (a tile always holds at least one output
 * pixel, so a single pixel's patch can exceed it). */
#ifndef CN_IM2COL_BUDGET
#define CN_IM2COL_BUDGET (1 << 20)
#endif
/* A worker's tile (floats of unfolded patches: it stays in a core's cache between im2col and
 * GEMM), and the tiles below which a layer is not cut into worker tiles but unfolded whole and
 * multiplied by the team in blocks (cn_gemm_plan). */
enum { IM2COL_BUDGET = CN_IM2COL_BUDGET, TILE_FLOATS = 1 << 17, MIN_WORKER_TILES = 4 };
/* Pixels per im2col chunk in team mode; multiply-adds OpenBLAS always computes on the calling
 * thread (its own threshold for splitting is 4 times larger). */
enum { UNFOLD_CHUNK = 16 };
#define SERIAL_MACS 65536.0

static int is_pointwise(const cn_window *w) {
  return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pad_top == 0 &&
         w->pad_left == 0;
}

static int64_t patch_size(const cn_window *w, int groups) {
  return (int64_t)w->kh * w->kw * (w->c / groups);
}

static int short_patch(const cn_window *w);
static double padded_floats(const cn_window *w);

size_t cn_conv2d_scratch(const cn_window *w, int64_t filters, int groups) {
  if (is_pointwise(w)) return 0;
  int64_t kdim = patch_size(w, groups), pixels = w->batch * w->oh * w->ow;
  /* A hostile size saturates (the plan's allocation fails cleanly) rather than overflowing. */
  if (kdim > (int64_t)(SIZE_MAX / 16)) return SIZE_MAX / 16;
  size_t floats = pixels <= IM2COL_BUDGET / kdim ? (size_t)(pixels * kdim)
                  : kdim > IM2COL_BUDGET         ? (size_t)kdim
                                                 : IM2COL_BUDGET;
  /* A stem's padded input (3 channels) is smaller than the patches it replaces. */
  double padded = groups == 1 && short_patch(w) ? padded_floats(w) : 0;
  if (padded > (double)floats && padded < (double)(pixels * kdim)) floats = (size_t)padded;
  return floats;
}

/* How the output pixels are cut into tiles: a function of the geometry only, so that every
 * output is computed by the same GEMM call whatever the thread count. Worker mode: each tile is
 * unfolded and multiplied by one thread in its own slice of the scratch. Team mode (few tiles):
 * a tile fills the scratch and the team unfolds it, then multiplies it in cn_gemm_plan blocks. */
typedef struct tiling {
  int team;
  int64_t tile_pixels, tiles;
  int64_t workers; /* worker mode: tiles at a time, scratch / slice */
} tiling;

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

static tiling plan_tiles(const cn_window *w, int64_t filters, int groups, int threads) {
  int64_t kdim = patch_size(w, groups), pixels = w->batch * w->oh * w->ow;
  int64_t scratch = (int64_t)cn_conv2d_scratch(w, filters, groups);
  tiling t = {0, TILE_FLOATS / kdim < 1 ? 1 : TILE_FLOATS / kdim, 0, 1};
  if (t.tile_pixels > pixels) t.tile_pixels = pixels;
  t.tiles = ceil_div(pixels, t.tile_pixels);
  if (t.tiles < MIN_WORKER_TILES) {
    t.team = 1;
    t.tile_pixels = scratch / kdim < 1 ? 1 : scratch / kdim;
    if (t.tile_pixels > pixels) t.tile_pixels = pixels;
    t.tiles = ceil_div(pixels, t.tile_pixels);
  } else {
    t.tiles += t.tiles % 2; /* an even count keeps two threads equally busy */
  }
  t.tile_pixels = ceil_div(pixels, t.tiles); /* equal tiles */
  t.tiles = ceil_div(pixels, t.tile_pixels);
  if (!t.team) {
    int64_t fit = scratch / (t.tile_pixels * kdim);
    t.workers = threads < fit ? threads : fit;
    if (t.workers > t.tiles) t.workers = t.tiles;
    if (t.workers < 1) t.workers = 1;
  }
  return t;
}

/* Unfolds output pixels [p0, p0 + np) (flattened over batch, height and width) for input
 * channels [c0, c0 + cg): one row of kh*kw*cg values per pixel, zeros in the padding. */
static void im2col(const cn_window *w, const float *x, int64_t c0, int64_t cg, int64_t p0,
                   int64_t np, float *col) {
  int64_t kdim = (int64_t)w->kh * w->kw * cg;
  size_t bytes = (size_t)cg * sizeof(float);
  int whole_rows = cg == w->c && w->dw == 1;
  int64_t b = p0 / (w->oh * w->ow), oy = p0 / w->ow % w->oh, ox = p0 % w->ow;
  for (int64_t p = 0; p < np; p++) {
    const float *image = x + b * w->ih * w->iw * w->c + c0;
    float *dst = col + p * kdim;
    for (int ky = 0; ky < w->kh; ky++) {
      int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
      int64_t ix0 = ox * w->sw - w->pad_left;
      if (whole_rows && iy >= 0 && iy < w->ih && ix0 >= 0 && ix0 + w->kw <= w->iw) {
        /* The row's taps are adjacent pixels, all inside: one copy (a 7x7 stem over 3 channels
         * copied 3 floats at a time otherwise). */
        memcpy(dst, image + (iy * w->iw + ix0) * w->c, (size_t)w->kw * bytes);
        dst += w->kw * cg;
        continue;
      }
      for (int kx = 0; kx < w->kw; kx++, dst += cg) {
        int64_t ix = ix0 + (int64_t)kx * w->dw;
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

/* One tile on one thread: unfold and multiply per group (single-threaded GEMMs), then bias and
 * activation while the tile is in cache. */
static void conv_tile(const cn_window *w, int64_t filters, int groups, const float *x,
                      const float *kernel, const float *bias, const cn_activation *act, float *y,
                      float *col, int64_t p0, int64_t np) {
  int64_t cg = w->c / groups, fg = filters / groups, kdim = patch_size(w, groups);
  float *out = y + p0 * filters;
  for (int g = 0; g < groups; g++) {
    im2col(w, x, g * cg, cg, p0, np, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)fg, (int)kdim, 1.0f, col,
                (int)kdim, kernel + g * fg, (int)filters, 0.0f, out + g * fg, (int)filters);
  }
  cn_bias_act_rows(out, np, filters, filters, bias, act, 1);
}

/* Worker mode, run by every thread of the region: thread i < workers takes tiles i, i + workers,
 * ... in its own slice. Threads beyond the workers only keep the region active (so that OpenBLAS
 * stays on the calling thread). */
static void conv_workers(const cn_window *w, int64_t filters, int groups, const float *x,
                         const float *kernel, const float *bias, const cn_activation *act, float *y,
                         float *scratch, const tiling *t) {
  int64_t pixels = w->batch * w->oh * w->ow, slice = t->tile_pixels * patch_size(w, groups);
  int64_t me = omp_get_thread_num();
  if (me >= t->workers) return;
  for (int64_t i = me; i < t->tiles; i += t->workers) {
    int64_t p0 = i * t->tile_pixels,
            np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
    conv_tile(w, filters, groups, x, kernel, bias, act, y, scratch + me * slice, p0, np);
  }
}

/* Team mode, run by every thread of the region (or serially): per tile and group, the team
 * unfolds the tile, then multiplies it in the blocks of a plan fixed by the tile's shape. */
static void conv_team(const cn_window *w, int64_t filters, int groups, const float *x,
                      const float *kernel, const float *bias, const cn_activation *act, float *y,
                      float *col, const tiling *t) {
  int64_t pixels = w->batch * w->oh * w->ow, cg = w->c / groups, fg = filters / groups;
  int64_t kdim = patch_size(w, groups);
  cn_activation linear = cn_act_linear();
  for (int64_t p0 = 0; p0 < pixels; p0 += t->tile_pixels) {
    int64_t np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
    float *out = y + p0 * filters;
    cn_gemm_plan plan = cn_gemm_plan_make(np, fg, kdim);
    for (int g = 0; g < groups; g++) {
#pragma omp for schedule(static)
      for (int64_t q = 0; q < np; q += UNFOLD_CHUNK)
        im2col(w, x, g * cg, cg, p0 + q, np - q < UNFOLD_CHUNK ? np - q : UNFOLD_CHUNK,
               col + q * kdim);
      if (groups == 1)
        cn_gemm_plan_run(&plan, col, kdim, kernel, filters, bias, act, out, filters);
      else
        cn_gemm_plan_run(&plan, col, kdim, kernel + g * fg, filters, NULL, &linear, out + g * fg,
                         filters);
    }
    if (groups > 1 && (bias || !cn_act_is_identity(act))) {
#pragma omp for schedule(static)
      for (int64_t r = 0; r < np; r++) cn_bias_act_row(out + r * filters, filters, bias, act);
    }
  }
}

void cn_conv2d(const cn_window *w, int64_t filters, int groups, const float *x, const float *kernel,
               const float *bias, const cn_activation *act, float *y, float *scratch, int threads) {
  if (is_pointwise(w)) {
    conv_pointwise(w, filters, groups, x, kernel, bias, act, y, threads);
    return;
  }
  tiling t = plan_tiles(w, filters, groups, threads);
  double macs =
      (double)(w->batch * w->oh * w->ow) * (double)filters * (double)patch_size(w, groups);
  if (!t.team) {
    /* Several tiles, or one tile too large for OpenBLAS's serial path: a team. */
    int parallel = threads > 1 && (t.workers > 1 || macs > SERIAL_MACS);
#pragma omp parallel num_threads(t.workers > 1 ? (int)t.workers : 2) if (parallel)
    conv_workers(w, filters, groups, x, kernel, bias, act, y, scratch, &t);
    return;
  }
  cn_gemm_plan plan = cn_gemm_plan_make(t.tile_pixels, filters / groups, patch_size(w, groups));
  int parallel = cn_gemm_plan_parallel(&plan, threads) || (threads > 1 && t.tiles > 1);
#pragma omp parallel num_threads(threads) if (parallel)
  conv_team(w, filters, groups, x, kernel, bias, act, y, scratch, &t);
}

/* ---- fp32 products against panels packed once: the same tiles ---------------------------------
 */

static void conv_panels_workers(const cn_window *w, int64_t filters, const float *x,
                                const cn_panels *k, const float *bias, const cn_activation *act,
                                float *y, float *scratch, const tiling *t) {
  int64_t pixels = w->batch * w->oh * w->ow, kdim = patch_size(w, 1);
  int64_t me = omp_get_thread_num(), slice = t->tile_pixels * kdim;
  if (me >= t->workers) return;
  float *col = scratch + me * slice;
  for (int64_t i = me; i < t->tiles; i += t->workers) {
    int64_t p0 = i * t->tile_pixels,
            np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
    im2col(w, x, 0, w->c, p0, np, col);
    cn_panels_gemm_serial(np, col, kdim, k, bias, act, y + p0 * filters, filters);
  }
}

static void conv_panels_team(const cn_window *w, int64_t filters, const float *x,
                             const cn_panels *k, const float *bias, const cn_activation *act,
                             float *y, float *col, const tiling *t, int threads) {
  int64_t pixels = w->batch * w->oh * w->ow, kdim = patch_size(w, 1);
  for (int64_t p0 = 0; p0 < pixels; p0 += t->tile_pixels) {
    int64_t np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < np; q += UNFOLD_CHUNK)
      im2col(w, x, 0, w->c, p0 + q, np - q < UNFOLD_CHUNK ? np - q : UNFOLD_CHUNK, col + q * kdim);
    cn_panels_gemm_team(np, col, kdim, k, bias, act, y + p0 * filters, filters, threads);
  }
}

/* ---- the patches read in place (cn_panels_conv_team): no im2col ------------------------------
 * Each tap row of a patch is kw * c contiguous values of the input (undilated columns), so the
 * micro-kernels read them where they are, from a zero-padded copy of the input when the window
 * pads: the copy is the input's size, im2col's rows kh * kw times it. Segments shorter than
 * IMPLICIT_MIN_SEG (a stem over 3 channels: 21 values for 7x7) would restart the micro-kernel
 * every few values: they are read in place only when the whole patch is one pass (short_patch),
 * else they stay with im2col. */
enum { IMPLICIT_MIN_SEG = 64 };

/* The padded input's rows and columns (the image after its leading padding, and as far as the
 * last tap reads); 1 when that differs from the input, which must then be copied. */
static int padded_size(const cn_window *w, int64_t *rows, int64_t *cols) {
  int64_t last_row = (w->oh - 1) * w->sh + (int64_t)(w->kh - 1) * w->dh + 1;
  int64_t last_col = (w->ow - 1) * w->sw + (int64_t)(w->kw - 1) * w->dw + 1;
  *rows = last_row > w->ih + w->pad_top ? last_row : w->ih + w->pad_top;
  *cols = last_col > w->iw + w->pad_left ? last_col : w->iw + w->pad_left;
  return *rows != w->ih || *cols != w->iw;
}

/* A stem's patch (7x7 over 3 channels: 147 values in 7 tap rows of 21) is read in place whole
 * by each micro-kernel call, its tap rows in turn (cn_panels_one_pass); im2col wrote every value
 * 7 times over. */
static int short_patch(const cn_window *w) {
  return w->dw == 1 && (int64_t)w->kw * w->c < IMPLICIT_MIN_SEG &&
         cn_panels_one_pass((int64_t)w->kh * w->kw * w->c);
}

/* Floats of the zero-padded copy of the input, 0 when none is needed. */
static double padded_floats(const cn_window *w) {
  int64_t rows, cols;
  return padded_size(w, &rows, &cols) ? (double)w->batch * rows * cols * w->c : 0;
}

static int implicit_applies(const cn_window *w, size_t scratch_floats) {
  int long_rows = w->dw == 1 && (int64_t)w->kw * w->c >= IMPLICIT_MIN_SEG;
  return (long_rows || short_patch(w)) && padded_floats(w) <= (double)scratch_floats;
}

/* x into xp (rows x cols per image), zeros around it; one padded row per iteration. */
static void pad_input(const cn_window *w, const float *x, float *xp, int64_t rows, int64_t cols) {
  size_t row = (size_t)(w->iw * w->c) * sizeof(float);
#pragma omp for schedule(static)
  for (int64_t r = 0; r < w->batch * rows; r++) {
    int64_t b = r / rows, iy = r % rows - w->pad_top;
    float *dst = xp + r * cols * w->c;
    if (iy < 0 || iy >= w->ih) {
      memset(dst, 0, (size_t)(cols * w->c) * sizeof(float));
      continue;
    }
    memset(dst, 0, (size_t)(w->pad_left * w->c) * sizeof(float));
    memcpy(dst + w->pad_left * w->c, x + (b * w->ih + iy) * w->iw * w->c, row);
    int64_t tail = cols - w->pad_left - w->iw;
    if (tail > 0)
      memset(dst + (w->pad_left + w->iw) * w->c, 0, (size_t)(tail * w->c) * sizeof(float));
  }
}

static void conv_implicit(const cn_window *w, const float *x, const cn_panels *k, const float *bias,
                          const cn_activation *act, float *y, float *scratch, int threads) {
  int64_t rows, cols;
  int copy = padded_size(w, &rows, &cols) && !cn_panels_conv_exact(w, k, act);
  if (!copy) rows = w->ih, cols = w->iw;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (copy) pad_input(w, x, scratch, rows, cols); /* its loop ends in a barrier */
    cn_panels_conv_team(w, copy ? scratch : x, rows, cols, k, bias, act, y, threads);
  }
}

void cn_conv2d_panels(const cn_window *w, int64_t filters, const float *x, const cn_panels *k,
                      const float *bias, const cn_activation *act, float *y, float *scratch,
                      int threads) {
  if (is_pointwise(w)) {
    cn_panels_gemm(w->batch * w->oh * w->ow, x, w->c, k, bias, act, y, filters, threads);
    return;
  }
  if (implicit_applies(w, cn_conv2d_scratch(w, filters, 1))) {
    conv_implicit(w, x, k, bias, act, y, scratch, threads);
    return;
  }
  tiling t = plan_tiles(w, filters, 1, threads);
  if (!t.team) {
#pragma omp parallel num_threads(t.workers > 1 ? (int)t.workers : 1) if (t.workers > 1)
    conv_panels_workers(w, filters, x, k, bias, act, y, scratch, &t);
    return;
  }
#pragma omp parallel num_threads(threads) if (threads > 1)
  conv_panels_team(w, filters, x, k, bias, act, y, scratch, &t, threads);
}

int cn_conv2d_panels_in_place(const cn_window *w, int64_t filters, const cn_activation *act) {
  return is_pointwise(w) && cn_panels_in_place(w->c, filters, act);
}

void cn_conv1x1_over_residual(const cn_window *w, int64_t filters, const float *x,
                              const float *kernel, const float *bias, const cn_activation *act,
                              float *y) {
  enum { CHUNK = 64 };
  cn_activation plain = *act;
  plain.residual = NULL;
  for (int64_t px = 0; px < w->batch * w->oh * w->ow; px++)
    for (int64_t j0 = 0; j0 < filters; j0 += CHUNK) {
      int64_t cols = filters - j0 < CHUNK ? filters - j0 : CHUNK;
      float sum[CHUNK] = {0}, *out = y + px * filters + j0;
      for (int64_t k = 0; k < w->c; k++)
        for (int64_t j = 0; j < cols; j++)
          sum[j] = fmaf(x[px * w->c + k], kernel[k * filters + j0 + j], sum[j]);
      for (int64_t j = 0; j < cols; j++) out[j] = (bias ? sum[j] + bias[j0 + j] : sum[j]) + out[j];
      cn_act_apply(&plain, out, (size_t)cols);
    }
}

/* ---- bf16 products (CN_PRECISION_BF16): the same tiles, unfolded straight into bf16 rows ---- */

/* im2col into bf16 rows of cn_bf16_row_len(kdim) values (half the floats of the fp32 tile, so
 * the same scratch holds it). */
static void im2col_bf16(const cn_window *w, const float *x, int64_t p0, int64_t np, uint16_t *col) {
  int64_t kdim = patch_size(w, 1), ld = cn_bf16_row_len(kdim);
  int64_t b = p0 / (w->oh * w->ow), oy = p0 / w->ow % w->oh, ox = p0 % w->ow;
  for (int64_t p = 0; p < np; p++) {
    const float *image = x + b * w->ih * w->iw * w->c;
    uint16_t *dst = col + p * ld;
    for (int ky = 0; ky < w->kh; ky++) {
      int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
      for (int kx = 0; kx < w->kw; kx++, dst += w->c) {
        int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
        if (iy < 0 || iy >= w->ih || ix < 0 || ix >= w->iw)
          memset(dst, 0, (size_t)w->c * sizeof *dst);
        else
          cn_bf16_convert(image + (iy * w->iw + ix) * w->c, w->c, dst);
      }
    }
    if (kdim % 2) *dst = 0;
    if (++ox == w->ow) {
      ox = 0;
      if (++oy == w->oh) oy = 0, b++;
    }
  }
}

/* Rows of bf16 patches per multiplication in team mode (a multiple of the micro-kernel's). */
enum { BF16_TEAM_ROWS = 48 };

static void conv_bf16_workers(const cn_window *w, int64_t filters, const float *x,
                              const cn_bf16_matrix *k, const float *bias, const cn_activation *act,
                              float *y, float *scratch, const tiling *t) {
  int64_t pixels = w->batch * w->oh * w->ow, slice = t->tile_pixels * patch_size(w, 1);
  int64_t me = omp_get_thread_num(), ld = cn_bf16_row_len(patch_size(w, 1));
  if (me >= t->workers) return;
  uint16_t *col = (uint16_t *)(scratch + me * slice);
  for (int64_t i = me; i < t->tiles; i += t->workers) {
    int64_t p0 = i * t->tile_pixels,
            np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
    im2col_bf16(w, x, p0, np, col);
    cn_bf16_gemm_rows(np, col, ld, k, bias, act, y + p0 * filters, filters);
  }
}

static void conv_bf16_team(const cn_window *w, int64_t filters, const float *x,
                           const cn_bf16_matrix *k, const float *bias, const cn_activation *act,
                           float *y, float *scratch, const tiling *t) {
  int64_t pixels = w->batch * w->oh * w->ow, ld = cn_bf16_row_len(patch_size(w, 1));
  uint16_t *col = (uint16_t *)scratch;
  for (int64_t p0 = 0; p0 < pixels; p0 += t->tile_pixels) {
    int64_t np = pixels - p0 < t->tile_pixels ? pixels - p0 : t->tile_pixels;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < np; q += UNFOLD_CHUNK)
      im2col_bf16(w, x, p0 + q, np - q < UNFOLD_CHUNK ? np - q : UNFOLD_CHUNK, col + q * ld);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < np; r += BF16_TEAM_ROWS)
      cn_bf16_gemm_rows(np - r < BF16_TEAM_ROWS ? np - r : BF16_TEAM_ROWS, col + r * ld, ld, k,
                        bias, act, y + (p0 + r) * filters, filters);
  }
}

size_t cn_conv2d_bf16_scratch(const cn_window *w, int64_t filters, int threads) {
  if (!is_pointwise(w)) return cn_conv2d_scratch(w, filters, 1);
  return (cn_bf16_gemm_scratch(w->c, threads) + 1) / 2;
}

void cn_conv2d_bf16(const cn_window *w, int64_t filters, const float *x, const cn_bf16_matrix *k,
                    const float *bias, const cn_activation *act, float *y, float *scratch,
                    int threads) {
  if (is_pointwise(w)) {
    cn_bf16_gemm(w->batch * w->oh * w->ow, x, w->c, k, bias, act, y, filters, (uint16_t *)scratch,
                 threads);
    return;
  }
  tiling t = plan_tiles(w, filters, 1, threads);
  if (!t.team) {
#pragma omp parallel num_threads(t.workers > 1 ? (int)t.workers : 1) if (t.workers > 1)
    conv_bf16_workers(w, filters, x, k, bias, act, y, scratch, &t);
    return;
  }
#pragma omp parallel num_threads(threads) if (threads > 1)
  conv_bf16_team(w, filters, x, k, bias, act, y, scratch, &t);
}
