/* Winograd F(4x4, 3x3) for 3x3, stride-1, undilated, ungrouped convolutions (Lavin & Gray's
 * matrices). Each 4x4 output tile is computed from a 6x6 input tile: the 36 transform points are
 * 36 independent channel products, so a block of tiles becomes 36 small matrix products of
 * (tiles x cin) by (cin x filters), 4x fewer multiplications than im2col's GEMM. The transforms
 * run along contiguous channels (NHWC), which the compiler vectorises.
 *
 * The products use a register-blocked kernel (6 tiles x 16 filters in 12 vector accumulators)
 * on the kernel transformed once: OpenBLAS would repack the transformed kernel on every one of
 * the 36 calls per block, which cost more than the arithmetic at these sizes.
 *
 * Layouts: transformed kernel U[36][filters / 16, rounded up][cin][16] (zero-padded): each strip
 * of 16 filters that a product reads is contiguous, so it streams in order (one strip read row by
 * row across cin, 2 KB apart, missed the prefetchers: half the products' time on Intel); per
 * block of tiles (rounded up to PRODUCT_ROWS, the extra rows zero) V[36][rows][cin] and
 * M[36][rows][filters16].
 * Threads take whole blocks with their own scratch slice. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

enum { POINTS = 36, TILE = 4, SPAN = 6, ROWS = 6, COLS = 16 };
/* All workers' scratch, whatever the thread count, and each worker's block bound, so that V and M
 * stay near the core's caches. */
#ifndef CN_WINO_SLICE
#define CN_WINO_SLICE (1 << 18)
#endif
enum { WINO_BUDGET = 1 << 20, WINO_SLICE = CN_WINO_SLICE, MIN_TILES = 12 };
/* Limits of usefulness: enough tiles to amortise the transforms, enough input channels for the
 * products to dominate, and a transformed kernel (4x the weights: 36 MB for 512 -> 512
 * channels) of bounded size. */
enum { MIN_TOTAL_TILES = 24, MIN_CHANNELS = 8, MAX_KERNEL_FLOATS = 1 << 24, MAX_BLOCK_TILES = 48 };
enum { MIN_TILES_PER_WORKER = 24 };
/* Team mode (wino_team): from this size of U on, and at most this many tiles a block. */
#ifndef CN_TEAM_MAX_TILES
#define CN_TEAM_MAX_TILES 96
#endif
enum { TEAM_KERNEL_FLOATS = 1 << 21, TEAM_MAX_TILES = CN_TEAM_MAX_TILES };
/* Tiles per product micro-kernel call (block rows are a multiple of it). */
#ifdef __AVX512F__
enum { PRODUCT_ROWS = 12 };
#else
enum { PRODUCT_ROWS = ROWS };
#endif

static int64_t round_up(int64_t n, int64_t to) {
  return (n + to - 1) / to * to;
}

static int64_t tile_count(const cn_window *w) {
  return w->batch * ((w->oh + TILE - 1) / TILE) * ((w->ow + TILE - 1) / TILE);
}

/* Tiles per block for which streaming the transformed kernel (once per block) costs no more than
 * the blocks' own V and M: cin * filters / (cin + filters), at most MAX_BLOCK_TILES so that a
 * wide layer's V and M stay near the caches while U streams (each point's U, cin x filters, is
 * read once per block of 6-tile rows). Measured, batch 8, 2 threads, Zen 4: wide layers (256 and
 * 512 channels) by Winograd instead of im2col took VGG16 from 1278 to 512 ms and ResNet50 from
 * 337 to 286 ms; a cap of 64 tiles 556 and 304 ms, of 32 529 and 285. */
static int64_t block_tiles(const cn_window *w, int64_t filters) {
  int64_t ld = round_up(filters, COLS), n = w->c * ld / (w->c + ld);
  if (n > MAX_BLOCK_TILES) n = MAX_BLOCK_TILES;
  return n < MIN_TILES ? MIN_TILES : n;
}

int cn_winograd_applies(const cn_window *w, int64_t filters, int groups) {
  if (groups != 1 || w->kh != 3 || w->kw != 3 || w->sh != 1 || w->sw != 1 || w->dh != 1 ||
      w->dw != 1)
    return 0;
  if (w->c < MIN_CHANNELS || w->c * round_up(filters, COLS) > MAX_KERNEL_FLOATS / POINTS) return 0;
  return tile_count(w) >= MIN_TOTAL_TILES;
}

int64_t cn_winograd_tiles(const cn_window *w) {
  return tile_count(w);
}

size_t cn_winograd_kernel_floats(int64_t c, int64_t filters) {
  return (size_t)(POINTS * c * round_up(filters, COLS));
}

/* Floats per tile in a block, and the fixed per-worker buffers (patch, temporaries, the
 * rounding of the block to whole row groups). */
static int64_t per_tile(const cn_window *w, int64_t filters) {
  return POINTS * (w->c + round_up(filters, COLS));
}
static int64_t fixed_floats(const cn_window *w, int64_t filters) {
  return 2 * POINTS * w->c + (SPAN * TILE + TILE * TILE) * filters +
         (PRODUCT_ROWS - 1) * per_tile(w, filters);
}

/* Room for two workers' blocks of block_tiles (more threads share it and get fewer workers). */
size_t cn_winograd_scratch(const cn_window *w, int64_t filters) {
  int64_t need = 2 * (block_tiles(w, filters) * per_tile(w, filters) + fixed_floats(w, filters));
  int64_t all = tile_count(w) * per_tile(w, filters) + fixed_floats(w, filters);
  int64_t budget = need > WINO_BUDGET ? need : WINO_BUDGET;
  return (size_t)(all < budget ? all : budget);
}

/* ---- the transforms, each over n contiguous channels ----------------------------------------- */

/* Each transform maps `ni` vectors in[j * is] to `no` vectors out[i * os], 8 channels at a time
 * (explicit vectors: with run-time strides the compiler cannot prove the outputs disjoint). The
 * last partial group goes through zero-padded copies. */
#define TRANSFORM_LOOP(ni, no, ...)                                                                \
  int64_t c = 0;                                                                                   \
  for (; c + 8 <= n; c += 8) {                                                                     \
    v8f d[ni], o[no];                                                                              \
    for (int j = 0; j < ni; j++) d[j] = load8(in + j * is + c);                                    \
    __VA_ARGS__;                                                                                   \
    for (int i = 0; i < no; i++) store8(out + i * os + c, o[i]);                                   \
  }                                                                                                \
  if (c < n) {                                                                                     \
    v8f d[ni], o[no];                                                                              \
    float buf[8] = {0};                                                                            \
    for (int j = 0; j < ni; j++) {                                                                 \
      memcpy(buf, in + j * is + c, (size_t)(n - c) * sizeof(float));                               \
      d[j] = load8(buf);                                                                           \
    }                                                                                              \
    __VA_ARGS__;                                                                                   \
    for (int i = 0; i < no; i++) {                                                                 \
      store8(buf, o[i]);                                                                           \
      memcpy(out + i * os + c, buf, (size_t)(n - c) * sizeof(float));                              \
    }                                                                                              \
  }

/* B^T d */
static void input_1d(const float *in, int64_t is, float *out, int64_t os, int64_t n) {
  TRANSFORM_LOOP(6, 6, {
    o[0] = 4 * d[0] - 5 * d[2] + d[4];
    o[1] = -4 * (d[1] + d[2]) + d[3] + d[4];
    o[2] = 4 * (d[1] - d[2]) - d[3] + d[4];
    o[3] = 2 * (d[3] - d[1]) - d[2] + d[4];
    o[4] = 2 * (d[1] - d[3]) - d[2] + d[4];
    o[5] = 4 * d[1] - 5 * d[3] + d[5];
  })
}

/* A^T m */
static void output_1d(const float *in, int64_t is, float *out, int64_t os, int64_t n) {
  TRANSFORM_LOOP(6, 4, {
    v8f s12 = d[1] + d[2], d12 = d[1] - d[2], s34 = d[3] + d[4], d34 = d[3] - d[4];
    o[0] = d[0] + s12 + s34;
    o[1] = d12 + 2 * d34;
    o[2] = s12 + 4 * s34;
    o[3] = d12 + 8 * d34 + d[5];
  })
}

/* G g */
static void kernel_1d(const float *in, int64_t is, float *out, int64_t os, int64_t n) {
  TRANSFORM_LOOP(3, 6, {
    o[0] = d[0] / 4;
    o[1] = -(d[0] + d[1] + d[2]) / 6;
    o[2] = -(d[0] - d[1] + d[2]) / 6;
    o[3] = d[0] / 24 + d[1] / 12 + d[2] / 6;
    o[4] = d[0] / 24 - d[1] / 12 + d[2] / 6;
    o[5] = d[2];
  })
}

/* Where the strip of filters [f0, f0 + 16) starts within a point's U. */
static int64_t strip_offset(int64_t c, int64_t f0) {
  return f0 * c;
}

void cn_winograd_transform_kernel(const float *kernel, int64_t c, int64_t filters, float *u,
                                  int threads) {
  int64_t tap = c * filters, ld = round_up(filters, COLS); /* HWIO: a tap is (c, filters) */
  memset(u, 0, cn_winograd_kernel_floats(c, filters) * sizeof(float));
#pragma omp parallel for num_threads(threads) schedule(static) if (c * filters > 4096)
  for (int64_t ci = 0; ci < c; ci++) {
    float tmp[SPAN * 3 * COLS]; /* (G g) for one strip of filters: [6][3][16] */
    for (int64_t f0 = 0; f0 < filters; f0 += COLS) {
      int64_t nf = filters - f0 < COLS ? filters - f0 : COLS;
      const float *g = kernel + ci * filters + f0;
      float *strip = u + strip_offset(c, f0) + ci * COLS;
      for (int kx = 0; kx < 3; kx++) kernel_1d(g + kx * tap, 3 * tap, tmp + kx * nf, 3 * nf, nf);
      for (int i = 0; i < SPAN; i++)
        kernel_1d(tmp + i * 3 * nf, nf, strip + i * SPAN * c * ld, c * ld, nf);
    }
  }
}

/* ---- the products ---------------------------------------------------------------------- */

#ifdef __AVX512F__
/* With 512-bit registers (the build's CPU has AVX-512): 12 tiles x 16 filters, one register
 * each, so that the FMA units always have 12 independent sums (6 rows of 256-bit halves used
 * half of the two 512-bit FMA ports Intel's cores have). */
static void product_rows(const float *restrict v, int64_t c, const float *restrict u, int64_t ldu,
                         float *restrict m, int64_t ldm) {
  v16f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, s4 = {0}, s5 = {0};
  v16f s6 = {0}, s7 = {0}, s8 = {0}, s9 = {0}, s10 = {0}, s11 = {0};
  for (int64_t i = 0; i < c; i++, u += ldu) {
    v16f w = load16(u);
    s0 += v[i] * w, s1 += v[c + i] * w, s2 += v[2 * c + i] * w, s3 += v[3 * c + i] * w;
    s4 += v[4 * c + i] * w, s5 += v[5 * c + i] * w, s6 += v[6 * c + i] * w;
    s7 += v[7 * c + i] * w, s8 += v[8 * c + i] * w, s9 += v[9 * c + i] * w;
    s10 += v[10 * c + i] * w, s11 += v[11 * c + i] * w;
  }
  v16f all[PRODUCT_ROWS] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11};
  for (int r = 0; r < PRODUCT_ROWS; r++) memcpy(m + r * ldm, &all[r], sizeof all[r]);
}
#else
/* m[r][0..16) = sum_i v[r][i] * u[i][0..16) for 6 rows r (v rows c apart, m rows ldm apart). */
static void product_rows(const float *restrict v, int64_t c, const float *restrict u, int64_t ldu,
                         float *restrict m, int64_t ldm) {
  v8f a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0};
  v8f a3 = {0}, b3 = {0}, a4 = {0}, b4 = {0}, a5 = {0}, b5 = {0};
  for (int64_t i = 0; i < c; i++, u += ldu) {
    v8f lo = load8(u), hi = load8(u + 8);
    float x;
    x = v[i], a0 += x * lo, b0 += x * hi;
    x = v[c + i], a1 += x * lo, b1 += x * hi;
    x = v[2 * c + i], a2 += x * lo, b2 += x * hi;
    x = v[3 * c + i], a3 += x * lo, b3 += x * hi;
    x = v[4 * c + i], a4 += x * lo, b4 += x * hi;
    x = v[5 * c + i], a5 += x * lo, b5 += x * hi;
  }
  store8(m, a0), store8(m + 8, b0), m += ldm;
  store8(m, a1), store8(m + 8, b1), m += ldm;
  store8(m, a2), store8(m + 8, b2), m += ldm;
  store8(m, a3), store8(m + 8, b3), m += ldm;
  store8(m, a4), store8(m + 8, b4), m += ldm;
  store8(m, a5), store8(m + 8, b5);
}
#endif

/* M[p] = V[p] * U[p] for the 36 points of a block of `rows` (a multiple of PRODUCT_ROWS) tiles. */
/* Point p's product for the strip of filters [f0, f0 + 16), over the block's `rows` tiles. */
static void strip_product(const float *v, const float *u, float *m, int64_t rows, int64_t c,
                          int64_t ld, int p, int64_t f0) {
  const float *vp = v + p * rows * c, *up = u + p * c * ld + strip_offset(c, f0);
  float *mp = m + p * rows * ld + f0;
  for (int64_t r0 = 0; r0 < rows; r0 += PRODUCT_ROWS)
    product_rows(vp + r0 * c, c, up, COLS, mp + r0 * ld, ld);
}

static void block_products(const float *v, const float *u, float *m, int64_t rows, int64_t c,
                           int64_t ld) {
  for (int p = 0; p < POINTS; p++)
    for (int64_t f0 = 0; f0 < ld; f0 += COLS) strip_product(v, u, m, rows, c, ld, p, f0);
}

/* ---- the convolution ------------------------------------------------------------------------ */

typedef struct wino_ctx {
  const cn_window *w;
  int64_t filters, ld, tiles_x, tiles_y;
  const float *x, *u, *bias;
  const cn_activation *act;
  float *y;
} wino_ctx;

/* Tile t's 6x6 input patch, zeros outside the image, transformed into V[p][slot]. Interior
 * tiles are read in place; border ones through a zero-padded copy. */
static void input_tile(const wino_ctx *cx, int64_t t, float *v, int64_t rows, int64_t slot,
                       float *patch, float *tmp) {
  const cn_window *w = cx->w;
  int64_t c = w->c, per_image = cx->tiles_x * cx->tiles_y;
  int64_t b = t / per_image, ty = t % per_image / cx->tiles_x, tx = t % cx->tiles_x;
  int64_t y0 = ty * TILE - w->pad_top, x0 = tx * TILE - w->pad_left;
  const float *image = cx->x + b * w->ih * w->iw * c, *src = patch;
  int64_t stride = SPAN * c;
  if (y0 >= 0 && x0 >= 0 && y0 + SPAN <= w->ih && x0 + SPAN <= w->iw) {
    src = image + (y0 * w->iw + x0) * c, stride = w->iw * c;
  } else {
    for (int i = 0; i < SPAN; i++) {
      int64_t iy = y0 + i, lo = x0 < 0 ? -x0 : 0, hi = w->iw - x0 < SPAN ? w->iw - x0 : SPAN;
      float *row = patch + i * SPAN * c;
      if (iy < 0 || iy >= w->ih || hi <= lo) {
        memset(row, 0, (size_t)(SPAN * c) * sizeof(float));
        continue;
      }
      if (lo > 0) memset(row, 0, (size_t)(lo * c) * sizeof(float));
      memcpy(row + lo * c, image + (iy * w->iw + x0 + lo) * c,
             (size_t)((hi - lo) * c) * sizeof(float));
      if (hi < SPAN) memset(row + hi * c, 0, (size_t)((SPAN - hi) * c) * sizeof(float));
    }
  }
  for (int j = 0; j < SPAN; j++) input_1d(src + j * c, stride, tmp + j * c, SPAN * c, c);
  for (int i = 0; i < SPAN; i++)
    input_1d(tmp + i * SPAN * c, c, v + (i * SPAN * rows + slot) * c, rows * c, c);
}

/* Tile t's 4x4 outputs from M[p][slot], with bias and activation, clipped to the image. */
static void output_tile(const wino_ctx *cx, int64_t t, const float *m, int64_t rows, int64_t slot,
                        float *tmp, float *out) {
  const cn_window *w = cx->w;
  int64_t f = cx->filters, ld = cx->ld, per_image = cx->tiles_x * cx->tiles_y;
  int64_t b = t / per_image, ty = t % per_image / cx->tiles_x, tx = t % cx->tiles_x;
  for (int j = 0; j < SPAN; j++)
    output_1d(m + (j * rows + slot) * ld, SPAN * rows * ld, tmp + j * f, SPAN * f, f);
  for (int i = 0; i < TILE; i++) output_1d(tmp + i * SPAN * f, f, out + i * TILE * f, f, f);
  int64_t nh = w->oh - ty * TILE < TILE ? w->oh - ty * TILE : TILE;
  int64_t nw = w->ow - tx * TILE < TILE ? w->ow - tx * TILE : TILE;
  for (int64_t i = 0; i < nh; i++) {
    float *dst = cx->y + ((b * w->oh + ty * TILE + i) * w->ow + tx * TILE) * f;
    memcpy(dst, out + i * TILE * f, (size_t)(nw * f) * sizeof(float));
    cn_bias_act_rows(dst, nw, f, f, cx->bias, cx->act, 1);
  }
}

/* Tiles [t0, t0 + nt) through the transforms and the products; cap: the block size the worker's
 * buffers were laid out for. */
static void wino_block(const wino_ctx *cx, int64_t t0, int64_t nt, float *work, int64_t cap) {
  int64_t c = cx->w->c, f = cx->filters, ld = cx->ld, rows = round_up(nt, PRODUCT_ROWS);
  int64_t cap_rows = round_up(cap, PRODUCT_ROWS);
  float *v = work, *m = v + POINTS * cap_rows * c, *patch = m + POINTS * cap_rows * ld;
  float *tmp = patch + POINTS * c, *otmp = tmp + POINTS * c, *out = otmp + SPAN * TILE * f;
  for (int64_t s = 0; s < nt; s++) input_tile(cx, t0 + s, v, rows, s, patch, tmp);
  for (int p = 0; p < POINTS && rows > nt; p++) /* the padding rows of the last row group */
    memset(v + (p * rows + nt) * c, 0, (size_t)((rows - nt) * c) * sizeof(float));
  block_products(v, cx->u, m, rows, c, ld);
  for (int64_t s = 0; s < nt; s++) output_tile(cx, t0 + s, m, rows, s, otmp, out);
}

/* Worker mode: blocks of tiles over the workers, each worker in its slice of scratch with the
 * products' kernel streaming through its own caches. */
static void wino_workers(const wino_ctx *cx, float *scratch, int64_t scratch_floats, int threads) {
  const cn_window *w = cx->w;
  int64_t filters = cx->filters;
  int64_t tiles = tile_count(w), unit = per_tile(w, filters), fixed = fixed_floats(w, filters);
  int64_t workers = threads < 1 ? 1 : threads;
  if (tiles < MIN_TILES_PER_WORKER * workers) workers = 1;
  int64_t want = block_tiles(w, filters);
  while (workers > 1 && scratch_floats / workers < want * unit + fixed) workers--;
  int64_t slice = scratch_floats / workers;
  int64_t cap = ((slice < WINO_SLICE ? slice : WINO_SLICE) - fixed) / unit;
  if (cap < want) cap = want; /* the slice holds `want` tiles (or every tile) */
  if (cap > tiles) cap = tiles;
  /* Equal blocks, a multiple of the workers. */
  int64_t blocks = round_up((tiles + cap - 1) / cap, workers);
  int64_t nt = (tiles + blocks - 1) / blocks;
#pragma omp parallel num_threads((int)workers) if (workers > 1)
  {
    float *work = scratch + omp_get_thread_num() * slice;
#pragma omp for schedule(static)
    for (int64_t t0 = 0; t0 < tiles; t0 += nt)
      wino_block(cx, t0, tiles - t0 < nt ? tiles - t0 : nt, work, nt);
  }
}

/* Team mode, for few tiles or a large transformed kernel: every thread works on each block, the
 * transforms split by tiles and the products by (point, strip of filters), so each thread reads
 * its share of U once per block instead of all of it (a 512 -> 512 layer's U is 36 MB). */
static int64_t team_thread_floats(const cn_window *w, int64_t filters) {
  return 2 * POINTS * w->c + (SPAN * TILE + TILE * TILE) * filters;
}

/* Tiles per team block that the scratch holds (a multiple of PRODUCT_ROWS, or every tile), or 0. */
static int64_t team_block(const cn_window *w, int64_t filters, int64_t scratch_floats,
                          int threads) {
  int64_t unit = per_tile(w, filters), tiles = tile_count(w);
  int64_t room = scratch_floats - threads * team_thread_floats(w, filters);
  int64_t cap = room / unit / PRODUCT_ROWS * PRODUCT_ROWS;
  if (cap > TEAM_MAX_TILES) cap = TEAM_MAX_TILES;
  if (cap >= tiles) return round_up(tiles, PRODUCT_ROWS) * unit <= room ? tiles : cap;
  return cap;
}

static void wino_team(const wino_ctx *cx, float *scratch, int64_t cap, int threads) {
  const cn_window *w = cx->w;
  int64_t c = w->c, ld = cx->ld, tiles = tile_count(w), cap_rows = round_up(cap, PRODUCT_ROWS);
  int64_t blocks = (tiles + cap - 1) / cap, nt = (tiles + blocks - 1) / blocks;
  int64_t strips = ld / COLS, items = POINTS * strips;
  float *v = scratch, *m = v + POINTS * cap_rows * c, *mine = m + POINTS * cap_rows * ld;
#pragma omp parallel num_threads(threads)
  {
    float *patch = mine + omp_get_thread_num() * team_thread_floats(w, cx->filters);
    float *tmp = patch + POINTS * c, *otmp = tmp + POINTS * c;
    float *out = otmp + SPAN * TILE * cx->filters;
    for (int64_t t0 = 0; t0 < tiles; t0 += nt) {
      int64_t n = tiles - t0 < nt ? tiles - t0 : nt, rows = round_up(n, PRODUCT_ROWS);
#pragma omp for schedule(static)
      for (int64_t s = 0; s < rows; s++) {
        if (s < n) {
          input_tile(cx, t0 + s, v, rows, s, patch, tmp);
        } else { /* the padding rows of the last row group */
          for (int p = 0; p < POINTS; p++)
            memset(v + (p * rows + s) * c, 0, (size_t)c * sizeof(float));
        }
      }
#pragma omp for schedule(static)
      for (int64_t i = 0; i < items; i++)
        strip_product(v, cx->u, m, rows, c, ld, (int)(i / strips), i % strips * COLS);
#pragma omp for schedule(static)
      for (int64_t s = 0; s < n; s++) output_tile(cx, t0 + s, m, rows, s, otmp, out);
    }
  }
}

/* Team mode where threads would otherwise idle (too few tiles for each its own blocks) or each
 * stream a large U. */
static int use_team(const cn_window *w, int64_t filters, int threads) {
  if (threads < 2) return 0;
  const char *mode = getenv("CONVNET_WINO_TEAM");
  if (mode) return strcmp(mode, "1") == 0;
  return tile_count(w) < MIN_TILES_PER_WORKER * threads ||
         (int64_t)cn_winograd_kernel_floats(w->c, filters) > TEAM_KERNEL_FLOATS;
}

void cn_winograd_conv(const cn_window *w, int64_t filters, const float *x, const float *u,
                      const float *bias, const cn_activation *act, float *y, float *scratch,
                      int threads) {
  wino_ctx cx = {w,
                 filters,
                 round_up(filters, COLS),
                 (w->ow + TILE - 1) / TILE,
                 (w->oh + TILE - 1) / TILE,
                 x,
                 u,
                 bias,
                 act,
                 y};
  int64_t scratch_floats = (int64_t)cn_winograd_scratch(w, filters);
  int64_t cap = use_team(w, filters, threads) ? team_block(w, filters, scratch_floats, threads) : 0;
  if (cap > 0)
    wino_team(&cx, scratch, cap, threads);
  else
    wino_workers(&cx, scratch, scratch_floats, threads);
}

/* ---- the kernel gradient: F(3x3, 4x4), the forward's algorithm transposed ---------------------
 * The forward computes each tile as y = A^T [(G w G^T) . (B^T d B)] A, so the sum over the tiles
 * of g . y is a sum over the 36 points of (A g A^T)(G w G^T)(B^T d B), and its derivative by w is
 *   dW = G^T [ sum over tiles of (A g A^T) . (B^T d B) ] G.
 * The tiles' input transforms (the forward's own) and output-gradient transforms meet in 36
 * products S[p] += V[p]^T M[p] over every tile of the batch; the 3x3 gradient is taken from S
 * once at the end. 4x fewer multiplications than im2col's GEMM, and no unfolded patches.
 *
 * Threads share each block's transforms (tiles are independent), then split the 36 points, each
 * S[p] element summing the tiles in their order: the result does not depend on the thread
 * count, nor on the blocking. Layouts: S[36][c rounded up to 6][filters rounded up to 16];
 * per block V[36][GRAD_TILES][c] (+ slack, as the last row group reads past c) and
 * M[36][GRAD_TILES][filters16]. */

enum { GRAD_TILES = 32, GRAD_WORKERS = 8, GRAD_SLACK = 8 };

static int64_t grad_rows(int64_t c) {
  return round_up(c, ROWS);
}

size_t cn_winograd_grad_floats(int64_t c, int64_t filters) {
  return (size_t)(POINTS * grad_rows(c) * round_up(filters, COLS));
}

/* One worker's buffers: the input patch and its half transform, the gradient tile's. */
static int64_t grad_worker_floats(int64_t c, int64_t filters) {
  return 2 * POINTS * c + SPAN * TILE * filters + TILE * TILE * filters;
}

size_t cn_winograd_grad_scratch(int64_t c, int64_t filters) {
  int64_t blocks = GRAD_TILES * POINTS * (c + round_up(filters, COLS)) + GRAD_SLACK;
  return (size_t)(blocks + GRAD_WORKERS * grad_worker_floats(c, filters));
}

/* A g: the 4 gradient values of a tile's row or column to the 6 points. */
static void grad_1d(const float *in, int64_t is, float *out, int64_t os, int64_t n) {
  TRANSFORM_LOOP(4, 6, {
    v8f s02 = d[0] + d[2], s13 = d[1] + d[3];
    v8f q02 = d[0] + 4 * d[2], q13 = 2 * d[1] + 8 * d[3];
    o[0] = d[0];
    o[1] = s02 + s13;
    o[2] = s02 - s13;
    o[3] = q02 + q13;
    o[4] = q02 - q13;
    o[5] = d[3];
  })
}

/* G^T s: 6 points back to the 3 kernel taps. */
static void kernel_grad_1d(const float *in, int64_t is, float *out, int64_t os, int64_t n) {
  TRANSFORM_LOOP(6, 3, {
    v8f s12 = d[1] + d[2], d21 = d[2] - d[1], s34 = d[3] + d[4], d34 = d[3] - d[4];
    o[0] = d[0] / 4 - s12 / 6 + s34 / 24;
    o[1] = d21 / 6 + d34 / 12;
    o[2] = (s34 - s12) / 6 + d[5];
  })
}

/* Tile t's 4x4 output gradients (zeros past the image) transformed into M[p][slot]. */
static void grad_tile(const wino_ctx *cx, const float *g, int64_t t, float *m, int64_t slot,
                      float *tile, float *tmp) {
  const cn_window *w = cx->w;
  int64_t f = cx->filters, ld = cx->ld, per_image = cx->tiles_x * cx->tiles_y;
  int64_t b = t / per_image, ty = t % per_image / cx->tiles_x, tx = t % cx->tiles_x;
  int64_t nh = w->oh - ty * TILE < TILE ? w->oh - ty * TILE : TILE;
  int64_t nw = w->ow - tx * TILE < TILE ? w->ow - tx * TILE : TILE;
  const float *src = g + ((b * w->oh + ty * TILE) * w->ow + tx * TILE) * f;
  int64_t stride = w->ow * f;
  if (nh < TILE || nw < TILE) {
    memset(tile, 0, (size_t)(TILE * TILE * f) * sizeof(float));
    for (int64_t i = 0; i < nh; i++)
      memcpy(tile + i * TILE * f, src + i * stride, (size_t)(nw * f) * sizeof(float));
    src = tile, stride = TILE * f;
  }
  for (int j = 0; j < TILE; j++) grad_1d(src + j * f, stride, tmp + j * f, TILE * f, f);
  for (int i = 0; i < SPAN; i++)
    grad_1d(tmp + i * TILE * f, f, m + (i * SPAN * GRAD_TILES + slot) * ld, GRAD_TILES * ld, f);
}

/* S[p] += V[p]^T M[p] for the point p over the block's nt tiles. */
static void grad_point(const wino_ctx *cx, int p, const float *v, const float *m, int64_t nt,
                       float *s) {
  int64_t c = cx->w->c, ld = cx->ld, rows = grad_rows(c);
  const float *vp = v + p * GRAD_TILES * c, *mp = m + p * GRAD_TILES * ld;
  float *sp = s + p * rows * ld;
  for (int64_t c0 = 0; c0 < rows; c0 += ROWS)
    for (int64_t f0 = 0; f0 < ld; f0 += COLS)
      cn_outer_6x16(vp + c0, c, mp + f0, ld, nt, sp + c0 * ld + f0, ld);
}

void cn_winograd_grad_accumulate(const cn_window *w, int64_t filters, const float *x,
                                 const float *g, float *s, float *scratch, int threads) {
  wino_ctx cx = {.w = w,
                 .filters = filters,
                 .ld = round_up(filters, COLS),
                 .tiles_x = (w->ow + TILE - 1) / TILE,
                 .tiles_y = (w->oh + TILE - 1) / TILE,
                 .x = x};
  int64_t c = w->c, tiles = tile_count(w);
  float *v = scratch, *m = v + POINTS * GRAD_TILES * c + GRAD_SLACK;
  float *workers = m + POINTS * GRAD_TILES * cx.ld;
  int team = threads < 1 ? 1 : threads > GRAD_WORKERS ? GRAD_WORKERS : threads;
  /* Past the last tile of a short block and past c in the last row group: read, never summed
   * into a gradient that is used, but kept finite. */
  memset(v, 0, (size_t)(POINTS * GRAD_TILES * c + GRAD_SLACK) * sizeof(float));
  memset(m, 0, (size_t)(POINTS * GRAD_TILES * cx.ld) * sizeof(float));
#pragma omp parallel num_threads(team) if (team > 1)
  {
    float *own = workers + omp_get_thread_num() * grad_worker_floats(c, filters);
    float *patch = own, *tmp = patch + POINTS * c, *tile = tmp + POINTS * c;
    float *gtmp = tile + TILE * TILE * filters;
    for (int64_t t0 = 0; t0 < tiles; t0 += GRAD_TILES) {
      int64_t nt = tiles - t0 < GRAD_TILES ? tiles - t0 : GRAD_TILES;
#pragma omp for schedule(static)
      for (int64_t i = 0; i < nt; i++) {
        input_tile(&cx, t0 + i, v, GRAD_TILES, i, patch, tmp);
        grad_tile(&cx, g, t0 + i, m, i, tile, gtmp);
      }
#pragma omp for schedule(static)
      for (int p = 0; p < POINTS; p++) grad_point(&cx, p, v, m, nt, s);
    }
  }
}

void cn_winograd_grad_finish(const float *s, int64_t c, int64_t filters, float *dkernel) {
  int64_t ld = round_up(filters, COLS), point = grad_rows(c) * ld, tap = c * filters;
  float tmp[3 * SPAN * 512], out[3 * 3 * 512];
  for (int64_t ci = 0; ci < c; ci++)
    for (int64_t f0 = 0; f0 < filters; f0 += 512) {
      int64_t nf = filters - f0 < 512 ? filters - f0 : 512;
      const float *sc = s + ci * ld + f0;
      for (int j = 0; j < SPAN; j++)
        kernel_grad_1d(sc + j * point, SPAN * point, tmp + j * nf, SPAN * nf, nf);
      for (int ky = 0; ky < 3; ky++)
        kernel_grad_1d(tmp + ky * SPAN * nf, nf, out + ky * 3 * nf, nf, nf);
      for (int k = 0; k < 9; k++) {
        float *d = dkernel + k * tap + ci * filters + f0;
        for (int64_t f = 0; f < nf; f++) d[f] += out[k * nf + f];
      }
    }
}
