/* Conv2D backward as GEMMs over tiles of output pixels (flattened over batch, height, width):
 *   g    = dout * act'          (the pre-activation gradient of the tile)
 *   db  += column sums of g
 *   dW  += im2col(x)^T g        (per group: the HWIO kernel is the (kh*kw*cin, filters) matrix)
 *   dx  += col2im(g W^T)
 * The tile size depends on the geometry only, and inside a tile every output element is owned
 * by one fixed block (rows of dW, columns of db, rows of g W^T, channels of col2im) whatever
 * the thread count: each sum is then taken in one order, so results are bitwise the same for
 * any number of threads. GEMMs run single-threaded inside the parallel region. A 1x1 stride-1
 * convolution (and Dense) needs no im2col: x and dx are the matrices themselves. */
#include <cblas.h>
#include <string.h>

#include "kernels/kernels.h"

/* Scratch floats for one tile (g and the unfolded patches; few tiles keep the barriers few); the
 * fewest rows of g W^T per block; channels per col2im block and columns per bias block (one
 * cache line). */
enum { TILE_BUDGET = 1 << 20, ROW_BLOCK = 32, CHAN_BLOCK = 16, ACT_ROWS = 16 };
/* The most rows of a dW block, and the number of g W^T blocks (see dw_row_block, dx_row_block). */
enum { DW_ROW_BLOCK = 192, DX_BLOCKS = 12 };
/* Below this many multiply-adds per tile, a second thread costs more than it saves. */
enum { PARALLEL_MIN_MACS = 1 << 18 };

static int is_pointwise(const cn_window *w) {
  return w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pad_top == 0 &&
         w->pad_left == 0;
}

/* Unfolded patch length per pixel and group (0 for pointwise: x itself is the matrix). */
static int64_t col_width(const cn_window *w, int groups) {
  return is_pointwise(w) ? 0 : (int64_t)w->kh * w->kw * (w->c / groups);
}

/* A thin kernel (first layers: kh*kw*c of at most SMALL_KDIM) sums its gradient in
 * register-blocked outer products, 6 rows by 16 filters: OpenBLAS's edge kernels spend most of
 * their work on such 9- or 27-row products. */
enum { SMALL_KDIM = 36, OUTER_ROWS = 6, OUTER_COLS = 16, COL_SLACK = OUTER_ROWS };

static int thin_kernel(const cn_window *w, int64_t filters, int groups) {
  return groups == 1 && !is_pointwise(w) && col_width(w, 1) <= SMALL_KDIM &&
         filters % OUTER_COLS == 0;
}

/* Floats per pixel of the unfolded tile: a thin kernel's patch ends with a 1, so that the same
 * outer products also sum the bias gradient (1 * g, exactly the plain sum). */
static int64_t col_stride(const cn_window *w, int64_t filters, int groups) {
  return col_width(w, groups) + (thin_kernel(w, filters, groups) ? 1 : 0);
}

static int64_t tile_pixels(const cn_window *w, int64_t filters, int groups) {
  int64_t pixels = w->batch * w->oh * w->ow, per = filters + col_stride(w, filters, groups);
  int64_t n = TILE_BUDGET / per;
  if (n < 1) n = 1;
  return n < pixels ? n : pixels;
}

/* ---- 3x3 stride-1 convolutions by Winograd -----------------------------------------------------
 * The input gradient of such a convolution is itself a 3x3 convolution: of g with the kernel
 * turned by 180 degrees and its channel axes swapped, padded by 2 - pad. Winograd F(4x4, 3x3)
 * computes it with a fraction of the GEMM's multiplications and no col2im; the kernel gradient
 * comes from the transposed algorithm (cn_winograd_grad_accumulate). Both run a few samples at
 * a time on the same g: each sample's dx depends on its own g only, and the kernel gradient sums
 * its tiles in order whatever the chunks, so the chunking changes no sum. */

enum { DX_CHUNK_FLOATS = 1 << 21 };

/* The dx convolution's window for `samples` samples: input g (oh, ow, filters), output dx. */
static cn_window dx_window(const cn_window *w, int64_t filters, int64_t samples) {
  cn_window d = {.batch = samples,
                 .ih = w->oh,
                 .iw = w->ow,
                 .c = filters,
                 .oh = w->ih,
                 .ow = w->iw,
                 .kh = 3,
                 .kw = 3,
                 .sh = 1,
                 .sw = 1,
                 .dh = 1,
                 .dw = 1,
                 .pad_top = 2 - w->pad_top,
                 .pad_left = 2 - w->pad_left};
  return d;
}

static int64_t chunk_samples(const cn_window *w, int64_t filters) {
  int64_t per = w->oh * w->ow * filters + w->ih * w->iw * w->c;
  int64_t n = DX_CHUNK_FLOATS / (per > 0 ? per : 1);
  if (n < 1) n = 1;
  return n < w->batch ? n : w->batch;
}

static int dx_by_winograd(const cn_window *w, int64_t filters, int groups) {
  if (groups != 1 || w->kh != 3 || w->kw != 3 || w->sh != 1 || w->sw != 1 || w->dh != 1 ||
      w->dw != 1 || w->pad_top > 2 || w->pad_left > 2)
    return 0;
  cn_window d = dx_window(w, filters, chunk_samples(w, filters));
  return cn_winograd_applies(&d, w->c, 1);
}

static int dw_by_winograd(const cn_window *w, int64_t filters, int groups) {
  return cn_winograd_applies(w, filters, groups);
}

/* Scratch of the Winograd backward: g of a chunk, then the kernel gradient's sums and blocks,
 * then dx's flipped kernel, its transform, dx of a chunk and the convolution's scratch. */
static size_t g_floats(const cn_window *w, int64_t filters) {
  return (size_t)(chunk_samples(w, filters) * w->oh * w->ow * filters);
}
static size_t dw_floats(const cn_window *w, int64_t filters, int groups) {
  if (!dw_by_winograd(w, filters, groups)) return 0;
  return cn_winograd_grad_floats(w->c, filters) + cn_winograd_grad_scratch(w->c, filters);
}
static size_t dx_floats(const cn_window *w, int64_t filters, int groups) {
  if (!dx_by_winograd(w, filters, groups)) return 0;
  int64_t s = chunk_samples(w, filters);
  cn_window d = dx_window(w, filters, s);
  return (size_t)(9 * filters * w->c) + cn_winograd_kernel_floats(filters, w->c) +
         (size_t)(s * w->ih * w->iw * w->c) + cn_winograd_scratch(&d, w->c);
}

size_t cn_conv2d_backward_scratch(const cn_window *w, int64_t filters, int groups) {
  size_t tiles =
      (size_t)(tile_pixels(w, filters, groups) * (filters + col_stride(w, filters, groups)) +
               COL_SLACK);
  size_t dx = dx_floats(w, filters, groups), dw = dw_floats(w, filters, groups);
  size_t wino = dx || dw ? g_floats(w, filters) + dw + dx : 0;
  return tiles > wino ? tiles : wino;
}

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Output pixels [p0, p0 + np) of the whole batch and one group's channels [c0, c0 + cg). */
typedef struct tile {
  int64_t p0, np;
  const float *g; /* np x filters */
  float *col;     /* np x kdim: patches, then g W^T */
} tile;

/* Unfolds the tile's patches for channels [c0, c0 + cg): one row of kh*kw*cg per pixel. */
static void unfold_pixel(const cn_window *w, const float *x, int64_t c0, int64_t cg, int64_t p,
                         float *dst) {
  int64_t b = p / (w->oh * w->ow), oy = p / w->ow % w->oh, ox = p % w->ow;
  const float *image = x + b * w->ih * w->iw * w->c + c0;
  for (int ky = 0; ky < w->kh; ky++) {
    int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
    for (int kx = 0; kx < w->kw; kx++, dst += cg) {
      int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
      if (iy < 0 || iy >= w->ih || ix < 0 || ix >= w->iw)
        memset(dst, 0, (size_t)cg * sizeof(float));
      else if (cg == 1) /* a call per float would cost more than the copy */
        *dst = image[(iy * w->iw + ix) * w->c];
      else
        memcpy(dst, image + (iy * w->iw + ix) * w->c, (size_t)cg * sizeof(float));
    }
  }
}

/* Adds channels [c0, c1) of the tile's patch gradients (group channel offset gc) into dx. */
static void fold_channels(const cn_window *w, const tile *t, int64_t gc, int64_t cg, int64_t c0,
                          int64_t c1, float *dx) {
  int64_t kdim = (int64_t)w->kh * w->kw * cg;
  for (int64_t p = t->p0; p < t->p0 + t->np; p++) {
    int64_t b = p / (w->oh * w->ow), oy = p / w->ow % w->oh, ox = p % w->ow;
    float *image = dx + b * w->ih * w->iw * w->c + gc;
    const float *src = t->col + (p - t->p0) * kdim;
    for (int ky = 0; ky < w->kh; ky++) {
      int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
      for (int kx = 0; kx < w->kw; kx++, src += cg) {
        int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
        if (iy < 0 || iy >= w->ih || ix < 0 || ix >= w->iw) continue;
        float *dst = image + (iy * w->iw + ix) * w->c;
        for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
      }
    }
  }
}

/* g for the tile: dout times the activation's derivative, ACT_ROWS pixels per block. */
static void tile_act_grad(const cn_conv_grad *io, int64_t filters, int64_t p0, int64_t np,
                          float *g) {
  int softmax = io->act->kind == CN_ACT_SOFTMAX;
#pragma omp for schedule(static)
  for (int64_t r = 0; r < np; r += ACT_ROWS) {
    int64_t rows = min64(ACT_ROWS, np - r);
    size_t at = (size_t)((p0 + r) * filters), len = (size_t)(rows * filters);
    float *dst = g + r * filters;
    const float *pre = io->pre ? io->pre + at : NULL;
    memset(dst, 0, len * sizeof(float));
    if (!softmax) {
      cn_act_backward(io->act, pre, io->out + at, io->dout + at, dst, len);
      continue;
    }
    for (int64_t i = 0; i < rows; i++) {
      size_t o = (size_t)(i * filters);
      cn_act_backward(io->act, pre ? pre + o : NULL, io->out + at + o, io->dout + at + o, dst + o,
                      (size_t)filters);
    }
  }
}

static void tile_bias_grad(const tile *t, int64_t filters, float *dbias) {
#pragma omp for schedule(static)
  for (int64_t j0 = 0; j0 < filters; j0 += CHAN_BLOCK) {
    int64_t n = min64(CHAN_BLOCK, filters - j0);
    float sum[CHAN_BLOCK]; /* in registers: dbias may alias nothing, but the compiler can't know */
    memcpy(sum, dbias + j0, (size_t)n * sizeof(float));
    for (int64_t p = 0; p < t->np; p++) {
      const float *row = t->g + p * filters + j0;
      for (int64_t j = 0; j < n; j++) sum[j] += row[j];
    }
    memcpy(dbias + j0, sum, (size_t)n * sizeof(float));
  }
}

/* dW (and dbias, the sums of the patches' final 1) += patches^T g for a thin kernel, one block of
 * 16 filters per task. The rows past them (up to the next 6) read the next pixel's patch (or the
 * scratch's slack) into discarded sums. */
static void thin_kernel_grad(const cn_window *w, int64_t filters, const cn_conv_grad *io,
                             const tile *t) {
  int64_t kdim = col_width(w, 1), ld = kdim + 1, used = io->dbias ? ld : kdim;
  int64_t rows = (used + OUTER_ROWS - 1) / OUTER_ROWS * OUTER_ROWS;
#pragma omp for schedule(static)
  for (int64_t j0 = 0; j0 < filters; j0 += OUTER_COLS) {
    float sums[(SMALL_KDIM + 1 + OUTER_ROWS) * OUTER_COLS] = {0};
    for (int64_t r = 0; r < used; r++)
      memcpy(sums + r * OUTER_COLS, r < kdim ? io->dkernel + r * filters + j0 : io->dbias + j0,
             OUTER_COLS * sizeof(float));
    for (int64_t r0 = 0; r0 < rows; r0 += OUTER_ROWS)
      cn_outer_6x16(t->col + r0, ld, t->g + j0, filters, t->np, sums + r0 * OUTER_COLS, OUTER_COLS);
    for (int64_t r = 0; r < used; r++)
      memcpy(r < kdim ? io->dkernel + r * filters + j0 : io->dbias + j0, sums + r * OUTER_COLS,
             OUTER_COLS * sizeof(float));
  }
}

/* Rows of dW per block: an even number of blocks of at most DW_ROW_BLOCK rows, each a whole row
 * of dW, so that two threads share the work equally and each packs its patches once (blocks of
 * 192 rows by 64 columns left a 256-row kernel split 3:1, and packed each patch block 4 times). */
static int64_t dw_row_block(int64_t kdim) {
  int64_t blocks = 2 * ((kdim + 2 * DW_ROW_BLOCK - 1) / (2 * DW_ROW_BLOCK));
  return (kdim + blocks - 1) / blocks;
}

/* Pixels of g W^T per block: DX_BLOCKS blocks (every thread count up to 4, and 6, gets an equal
 * share) of at least ROW_BLOCK rows; each block packs W once, so fewer, taller blocks pack
 * less (32-row blocks packed a 256 x 256 kernel 49 times at batch 32, 7 x 7). */
static int64_t dx_row_block(int64_t np) {
  int64_t rows = (np + DX_BLOCKS - 1) / DX_BLOCKS;
  return rows > ROW_BLOCK ? rows : ROW_BLOCK;
}

/* dW[:, group] += patches^T g[:, group], in fixed blocks of whole rows of dW. The
 * patches are x itself for pointwise (ld = c), the unfolded tile otherwise. */
static void group_kernel_grad(const cn_window *w, int64_t filters, int groups, int gi,
                              const cn_conv_grad *io, const tile *t) {
  int64_t cg = w->c / groups, fg = filters / groups,
          kdim = is_pointwise(w) ? cg : col_width(w, groups);
  const float *a = is_pointwise(w) ? io->x + t->p0 * w->c + gi * cg : t->col;
  int64_t lda = is_pointwise(w) ? w->c : kdim;
  if (thin_kernel(w, filters, groups)) {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < t->np; p++) {
      float *patch = t->col + p * (kdim + 1);
      unfold_pixel(w, io->x, 0, cg, t->p0 + p, patch);
      patch[kdim] = 1.0f;
    }
    thin_kernel_grad(w, filters, io, t);
    return;
  }
  if (!is_pointwise(w)) {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < t->np; p++)
      unfold_pixel(w, io->x, gi * cg, cg, t->p0 + p, t->col + p * kdim);
  }
  int64_t block = dw_row_block(kdim);
#pragma omp for schedule(static)
  for (int64_t r0 = 0; r0 < kdim; r0 += block) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)min64(block, kdim - r0), (int)fg,
                (int)t->np, 1.0f, a + r0, (int)lda, t->g + gi * fg, (int)filters, 1.0f,
                io->dkernel + r0 * filters + gi * fg, (int)filters);
  }
}

/* dx += col2im(g[:, group] W[:, group]^T); pointwise adds the product straight into dx. */
static void group_input_grad(const cn_window *w, int64_t filters, int groups, int gi,
                             const cn_conv_grad *io, const tile *t) {
  int64_t cg = w->c / groups, fg = filters / groups;
  int point = is_pointwise(w);
  int64_t kdim = point ? cg : col_width(w, groups);
  int64_t block = dx_row_block(t->np);
#pragma omp for schedule(static)
  for (int64_t r = 0; r < t->np; r += block) {
    int64_t rows = min64(block, t->np - r);
    float *c = point ? io->dx + (t->p0 + r) * w->c + gi * cg : t->col + r * kdim;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kdim, (int)fg, 1.0f,
                t->g + r * filters + gi * fg, (int)filters, io->kernel + gi * fg, (int)filters,
                point ? 1.0f : 0.0f, c, (int)(point ? w->c : kdim));
  }
  if (point) return;
#pragma omp for schedule(static)
  for (int64_t c0 = 0; c0 < cg; c0 += CHAN_BLOCK)
    fold_channels(w, t, gi * cg, cg, c0, min64(c0 + CHAN_BLOCK, cg), io->dx);
}

/* Every thread of the region runs this; the worksharing loops inside split the blocks. */
static void backward_tiles(const cn_window *w, int64_t filters, int groups, const cn_conv_grad *io,
                           float *scratch) {
  int64_t pixels = w->batch * w->oh * w->ow, step = tile_pixels(w, filters, groups);
  int linear = io->act->kind == CN_ACT_LINEAR;
  for (int64_t p0 = 0; p0 < pixels; p0 += step) {
    tile t = {p0, min64(step, pixels - p0), NULL, scratch + step * filters};
    if (linear) {
      t.g = io->dout + p0 * filters;
    } else {
      tile_act_grad(io, filters, p0, t.np, scratch);
      t.g = scratch;
    }
    /* A thin kernel's outer products sum the bias too. */
    if (io->dbias && !(io->dkernel && thin_kernel(w, filters, groups)))
      tile_bias_grad(&t, filters, io->dbias);
    for (int gi = 0; gi < groups; gi++) {
      if (io->dkernel) group_kernel_grad(w, filters, groups, gi, io, &t);
      if (io->dx) group_input_grad(w, filters, groups, gi, io, &t);
    }
  }
}

/* The kernel turned by 180 degrees with its channel axes swapped, transformed for the dx
 * convolution. */
static void flip_kernel(const float *kernel, int64_t c, int64_t filters, float *flipped, float *u,
                        int threads) {
  for (int k = 0; k < 9; k++) /* tap (ky, kx) of the flipped kernel reads tap 8 - k */
    for (int64_t f = 0; f < filters; f++)
      for (int64_t ci = 0; ci < c; ci++)
        flipped[(k * filters + f) * c + ci] = kernel[((8 - k) * c + ci) * filters + f];
  cn_winograd_transform_kernel(flipped, filters, c, u, threads);
}

/* g of samples [b0, b0 + n): dout itself for a linear activation, else dout * act' in g_buf;
 * and the bias gradient of those pixels. */
static const float *chunk_grad(const cn_window *w, int64_t filters, const cn_conv_grad *io,
                               int64_t b0, int64_t n, float *g_buf, int threads) {
  int64_t pixels = w->oh * w->ow;
  int linear = io->act->kind == CN_ACT_LINEAR;
  const float *g = linear ? io->dout + b0 * pixels * filters : g_buf;
  tile t = {b0 * pixels, n * pixels, g, NULL};
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    if (!linear) tile_act_grad(io, filters, t.p0, t.np, g_buf);
    if (io->dbias) tile_bias_grad(&t, filters, io->dbias);
  }
  return g;
}

/* dx, dkernel (each when `do_dx`, `do_dw`) and dbias by Winograd, chunk by chunk of samples. */
static void backward_winograd(const cn_window *w, int64_t filters, const cn_conv_grad *io,
                              int do_dx, int do_dw, float *scratch, int threads) {
  int64_t c = w->c, s = chunk_samples(w, filters), image = w->ih * w->iw * c;
  float *g_buf = scratch, *sums = g_buf + g_floats(w, filters);
  float *grad_work = sums + (do_dw ? cn_winograd_grad_floats(c, filters) : 0);
  float *flipped = grad_work + (do_dw ? cn_winograd_grad_scratch(c, filters) : 0);
  float *u = flipped + 9 * filters * c, *y = u + cn_winograd_kernel_floats(filters, c);
  float *work = y + s * image;
  if (do_dw) memset(sums, 0, cn_winograd_grad_floats(c, filters) * sizeof(float));
  if (do_dx) flip_kernel(io->kernel, c, filters, flipped, u, threads);
  cn_activation linear = cn_act_linear();
  for (int64_t b0 = 0; b0 < w->batch; b0 += s) {
    int64_t n = w->batch - b0 < s ? w->batch - b0 : s;
    const float *g = chunk_grad(w, filters, io, b0, n, g_buf, threads);
    cn_window chunk = *w;
    chunk.batch = n;
    if (do_dw)
      cn_winograd_grad_accumulate(&chunk, filters, io->x + b0 * image, g, sums, grad_work, threads);
    if (do_dx) {
      cn_window d = dx_window(w, filters, n);
      cn_winograd_conv(&d, c, g, u, NULL, &linear, y, work, threads);
      cn_add_into(io->dx + b0 * image, y, n * image, threads);
    }
  }
  if (do_dw) cn_winograd_grad_finish(sums, c, filters, io->dkernel);
}

void cn_conv2d_backward(const cn_window *w, int64_t filters, int groups, const cn_conv_grad *io,
                        float *scratch, int threads) {
  int64_t macs = tile_pixels(w, filters, groups) * filters * (w->kh * w->kw * w->c / groups);
  int parallel = threads > 1 && macs >= PARALLEL_MIN_MACS;
  int do_dx = io->dx && dx_by_winograd(w, filters, groups);
  int do_dw = io->dkernel && dw_by_winograd(w, filters, groups);
  cn_conv_grad rest = *io;
  if (do_dx) rest.dx = NULL;
  if (do_dw) rest.dkernel = NULL;
  if (do_dx || do_dw) rest.dbias = NULL; /* the Winograd pass sums it */
  if (rest.dx || rest.dkernel || rest.dbias) {
#pragma omp parallel num_threads(threads) if (parallel)
    backward_tiles(w, filters, groups, &rest, scratch);
  }
  if (do_dx || do_dw) backward_winograd(w, filters, io, do_dx, do_dw, scratch, threads);
}
