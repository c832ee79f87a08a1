/* Short-patch convolution as a register-blocked product without packing: a tile of ROWS output
 * pixels times two vectors of filters (32 with AVX-512, 16 with AVX2), or with AVX-512 half the
 * pixels times four vectors (64 filters), lives in registers for the whole patch; the kernel's rows
 * are read in place (HWIO is already the (patch, filters) matrix) and the patches too when the
 * convolution is 1x1 and unpadded, otherwise they are gathered per tile into a small buffer. */
#include "kernels/conv_small.h"
#include "kernels/simd.h"

#include <string.h>

/* Pixels per register tile: ROWS x 2 accumulators of the build's widest vectors (12 x 2 of 16
 * floats fill AVX-512's 32 registers with the two kernel vectors and a broadcast, 6 x 2 of 8 AVX's
 * 16); multiply-adds below which a layer runs on one thread (waking a second one costs more than
 * it saves). */
typedef vwide tv;
enum { LANES = WIDE_LANES, ROWS = WIDE_LANES == 16 ? 12 : 6, PARALLEL_MIN_MACS = 1 << 19 };
/* Tiles per chunk at most: 96 pixels, whose gathered patches (at most 24 KB) stay in L1/L2. */
enum { CHUNK_TILES = 96 / ROWS };
/* The longest patch read in place (1x1), and the largest kernel taken by this path (512 KB, four
 * times that when the filter count is not a power of two). */
enum { DEEP_K = 512, KERNEL_FLOATS = 1 << 17 };
/* Every loop over a tile's rows unrolled, so that the accumulators stay in registers. */
#define UNROLL_ROWS _Pragma("GCC unroll 16")

static int in_place(const cn_window *w) {
  return w->kh == 1 && w->kw == 1 && w->pad_top == 0 && w->pad_left == 0;
}

int cn_conv_small_applies(const cn_window *w, int64_t filters, int groups) {
  int64_t kdim = (int64_t)w->kh * w->kw * w->c;
  /* The kernel is re-read per chunk of pixels, so it must stay in cache; its rows are `filters`
   * floats apart, and a large power of two puts them all in the same few L1 sets (measured: 1.3x
   * OpenBLAS's time for 256x1024 on 14x14 pixels, a tie for 512x1000 on 13x13). */
  if (groups != 1 || filters % 8 != 0 || filters < 8 || kdim < 1) return 0;
  int64_t floats = kdim * filters, pow2 = (filters & (filters - 1)) == 0;
  if (floats > (pow2 ? KERNEL_FLOATS : 4 * KERNEL_FLOATS)) return 0;
  return kdim <= CN_CONV_SMALL_K || (in_place(w) && kdim <= DEEP_K);
}

/* ROWS pixels x 2 * LANES filters: out[r][0..2 * LANES) = bias + sum_k rows[r][k] *
 * kernel[k][0..2 * LANES). */
static void tile2(const float *const *rows, int64_t kdim, const float *kernel, int64_t ldk,
                  const float *bias, const cn_vclamp *clamp, float *const *out) {
  tv b0 = {0}, b1 = {0};
  if (bias) b0 = loadw(bias), b1 = loadw(bias + LANES);
  tv acc0[ROWS], acc1[ROWS];
  UNROLL_ROWS
  for (int r = 0; r < ROWS; r++) acc0[r] = b0, acc1[r] = b1;
  for (int64_t k = 0; k < kdim; k++) {
    tv w0 = loadw(kernel + k * ldk), w1 = loadw(kernel + k * ldk + LANES);
    UNROLL_ROWS
    for (int r = 0; r < ROWS; r++) {
      float s = rows[r][k];
      acc0[r] += s * w0;
      acc1[r] += s * w1;
    }
  }
  UNROLL_ROWS
  for (int r = 0; r < ROWS; r++) {
    storew(out[r], cn_vclamp_apply(acc0[r], clamp));
    storew(out[r] + LANES, cn_vclamp_apply(acc1[r], clamp));
  }
}

#ifdef __AVX512F__
/* ROWS pixels x 4 * LANES filters, in two halves of ROWS / 2 pixels: each pixel's value feeds four
 * products instead of two (6 x 4 accumulators, the four kernel vectors and a broadcast). */
static void tile4(const float *const *rows, int64_t kdim, const float *kernel, int64_t ldk,
                  const float *bias, const cn_vclamp *clamp, float *const *out) {
  enum { HALF = ROWS / 2 };
  for (int h = 0; h < 2; h++) {
    const float *const *at = rows + h * HALF;
    tv acc[HALF][4], b[4];
    for (int j = 0; j < 4; j++) b[j] = bias ? loadw(bias + j * LANES) : (tv){0};
    UNROLL_ROWS
    for (int r = 0; r < HALF; r++)
      for (int j = 0; j < 4; j++) acc[r][j] = b[j];
    for (int64_t k = 0; k < kdim; k++) {
      tv w[4];
      for (int j = 0; j < 4; j++) w[j] = loadw(kernel + k * ldk + j * LANES);
      UNROLL_ROWS
      for (int r = 0; r < HALF; r++) {
        float v = at[r][k];
        for (int j = 0; j < 4; j++) acc[r][j] += v * w[j];
      }
    }
    UNROLL_ROWS
    for (int r = 0; r < HALF; r++)
      for (int j = 0; j < 4; j++)
        storew(out[h * HALF + r] + j * LANES, cn_vclamp_apply(acc[r][j], clamp));
  }
}
#endif

/* ROWS pixels x one vector of filters: LANES of them (the last ones when their count is not a
 * multiple of 2 * LANES) in the widest vectors, or with 16-float vectors the last 8 in an 8-float
 * one. */
#define TILE_ONE(name, vec, load, store, finish)                                                   \
  static void name(const float *const *rows, int64_t kdim, const float *kernel, int64_t ldk,       \
                   const float *bias, const cn_vclamp *clamp, float *const *out) {                 \
    vec b0 = {0};                                                                                  \
    if (bias) b0 = load(bias);                                                                     \
    vec acc[ROWS];                                                                                 \
    UNROLL_ROWS                                                                                    \
    for (int r = 0; r < ROWS; r++) acc[r] = b0;                                                    \
    for (int64_t k = 0; k < kdim; k++) {                                                           \
      vec w0 = load(kernel + k * ldk);                                                             \
      UNROLL_ROWS                                                                                  \
      for (int r = 0; r < ROWS; r++) acc[r] += rows[r][k] * w0;                                    \
    }                                                                                              \
    UNROLL_ROWS                                                                                    \
    for (int r = 0; r < ROWS; r++) store(out[r], finish(acc[r], clamp));                           \
  }
TILE_ONE(tile1, tv, loadw, storew, cn_vclamp_apply)
#ifdef __AVX512F__
TILE_ONE(tile8, v8f, load8, store8, cn_vclamp_apply8)
#else
#define tile8 tile1
#endif

/* An output pixel: its image and position. */
typedef struct pixel {
  int64_t b, oy, ox;
} pixel;

static pixel pixel_at(const cn_window *w, int64_t p) {
  return (pixel){p / (w->oh * w->ow), p / w->ow % w->oh, p % w->ow};
}

static void pixel_next(const cn_window *w, pixel *q) {
  if (++q->ox < w->ow) return;
  q->ox = 0;
  if (++q->oy == w->oh) q->oy = 0, q->b++;
}

/* A pixel's patch in the kernel's (ky, kx, c) order: a pointer into x when it is one input pixel,
 * else gathered into buf (zeros outside the image). A row of taps wholly inside the image and
 * undilated is one copy (a 3x3 stem over 3 channels: 0.55 -> 0.27 ms for MobileNet 0.25's
 * conv1 at batch 1, when every value went through the bounds check). */
static const float *patch(const cn_window *w, const float *x, pixel q, float *buf) {
  const float *image = x + q.b * w->ih * w->iw * w->c;
  if (in_place(w)) return image + (q.oy * w->sh * w->iw + q.ox * w->sw) * w->c;
  float *dst = buf;
  int64_t ix0 = q.ox * w->sw - w->pad_left, row = (int64_t)w->kw * w->c;
  int whole_rows = w->dw == 1 && ix0 >= 0 && ix0 + w->kw <= w->iw;
  for (int ky = 0; ky < w->kh; ky++) {
    int64_t iy = q.oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
    if (whole_rows && iy >= 0 && iy < w->ih) {
      memcpy(dst, image + (iy * w->iw + ix0) * w->c, (size_t)row * sizeof(float));
      dst += row;
      continue;
    }
    for (int kx = 0; kx < w->kw; kx++, dst += w->c) {
      int64_t ix = q.ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
      const float *src = image + (iy * w->iw + ix) * w->c;
      int inside = iy >= 0 && iy < w->ih && ix >= 0 && ix < w->iw;
      for (int64_t c = 0; c < w->c; c++) dst[c] = inside ? src[c] : 0.0f;
    }
  }
  return buf;
}

/* A chunk of output pixels [p0, p0 + count), count <= CHUNK_TILES * ROWS: its patches stay in
 * cache while every block of 16 filters runs over all its tiles. Rows past the end repeat the
 * first patch into a sink. Each output is the same sum in the same order whatever the chunk, so
 * chunks may depend on the thread count. */
static void pixel_chunk(const cn_window *w, int64_t filters, const float *x, const float *kernel,
                        const float *bias, const cn_activation *act, float *y, int64_t p0,
                        int count) {
  float buf[CHUNK_TILES * ROWS * CN_CONV_SMALL_K], sink[4 * LANES];
  const float *rows[CHUNK_TILES * ROWS];
  int64_t kdim = (int64_t)w->kh * w->kw * w->c;
  int tiles = (count + ROWS - 1) / ROWS;
  pixel q = pixel_at(w, p0);
  for (int r = 0; r < tiles * ROWS; r++, pixel_next(w, &q))
    rows[r] = r < count ? patch(w, x, q, buf + r * kdim) : rows[0];
  /* A plain ReLU is applied in the tiles' registers before the store (MobileNetV2's 16 -> 96
   * and 24 -> 144 expansions took a pass over their outputs for the ReLU6; MobileNet 0.25's
   * 3 -> 8 stem, an 8-float tile, too). */
  int clamped = !act->residual && cn_act_is_plain_relu(act); /* every tile clamps */
  cn_vclamp clamp = clamped ? cn_vclamp_of(act) : (cn_vclamp){0, 0, 0};
  for (int64_t c0 = 0, step; c0 < filters; c0 += step) {
    const float *b = bias ? bias + c0 : NULL;
    int64_t left = filters - c0;
    step = left >= 2 * LANES ? 2 * LANES : left >= LANES ? LANES : 8;
#ifdef __AVX512F__
    if (left >= 4 * LANES) step = 4 * LANES;
#endif
    for (int t = 0; t < tiles; t++) {
      float *out[ROWS];
      for (int r = 0; r < ROWS; r++) {
        int64_t at = (int64_t)t * ROWS + r;
        out[r] = at < count ? y + (p0 + at) * filters + c0 : sink;
      }
#ifdef __AVX512F__
      if (step == 4 * LANES) {
        tile4(rows + t * ROWS, kdim, kernel + c0, filters, b, &clamp, out);
        continue;
      }
#endif
      if (step == 2 * LANES)
        tile2(rows + t * ROWS, kdim, kernel + c0, filters, b, &clamp, out);
      else if (step == LANES)
        tile1(rows + t * ROWS, kdim, kernel + c0, filters, b, &clamp, out);
      else
        tile8(rows + t * ROWS, kdim, kernel + c0, filters, b, &clamp, out);
    }
  }
  float *first = y + p0 * filters;
  if (clamped) return;
  if (act->kind == CN_ACT_SOFTMAX || act->residual)
    for (int r = 0; r < count; r++) cn_bias_act_row(first + r * filters, filters, NULL, act);
  else if (act->kind != CN_ACT_LINEAR)
    cn_act_apply(act, first, (size_t)count * (size_t)filters);
}

void cn_conv_small(const cn_window *w, int64_t filters, const float *x, const float *kernel,
                   const float *bias, const cn_activation *act, float *y, int threads) {
  int64_t pixels = w->batch * w->oh * w->ow, tiles = (pixels + ROWS - 1) / ROWS;
  double macs = (double)pixels * (double)filters * (double)(w->kh * w->kw * w->c);
  int parallel = threads > 1 && macs > PARALLEL_MIN_MACS;
  /* Chunks small enough to give every thread two of them. */
  int64_t team = parallel ? threads : 1, per_chunk = (tiles + 2 * team - 1) / (2 * team);
  if (per_chunk > CHUNK_TILES) per_chunk = CHUNK_TILES;
  if (per_chunk < 1) per_chunk = 1;
  int64_t chunk_pixels = per_chunk * ROWS, chunks = (pixels + chunk_pixels - 1) / chunk_pixels;
#pragma omp parallel for num_threads(threads) schedule(static) if (parallel)
  for (int64_t i = 0; i < chunks; i++) {
    int64_t p0 = i * chunk_pixels;
    int count = pixels - p0 < chunk_pixels ? (int)(pixels - p0) : (int)chunk_pixels;
    pixel_chunk(w, filters, x, kernel, bias, act, y, p0, count);
  }
}
