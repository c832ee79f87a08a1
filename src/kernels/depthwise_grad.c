/* DepthwiseConv2D backward. Every gradient of input channel c (dx[..., c], the kernel's and the
 * bias's columns c * mult + m) depends on channel c alone, so threads split the channels into
 * fixed blocks and each block walks the output pixels in order: no shared sums, no partial
 * buffers, and each sum is taken in one order whatever the thread count. The output is processed
 * in bands of rows whose pre-activation gradient fits the scratch. */
#include <string.h>

#include "kernels/kernels.h"

/* Scratch floats for one band; channels per block (a cache line, so blocks do not share lines
 * when c is a multiple of 16); multiply-adds below which one thread does it all. */
enum { BAND_BUDGET = 1 << 18, CHAN_BLOCK = 16, PARALLEL_MIN_MACS = 1 << 16 };

static int64_t band_rows(const cn_window *w, int mult) {
  int64_t per_row = w->ow * w->c * mult, rows = BAND_BUDGET / per_row;
  if (rows < 1) rows = 1;
  return rows < w->batch * w->oh ? rows : w->batch * w->oh;
}

size_t cn_depthwise_backward_scratch(const cn_window *w, int mult) {
  return (size_t)(band_rows(w, mult) * w->ow * w->c * mult);
}

/* The pre-activation gradient of output rows [r0, r0 + nr) into g (one pixel row per oc). */
static void band_act_grad(const cn_window *w, int mult, const cn_conv_grad *io, int64_t r0,
                          int64_t nr, float *g) {
  int64_t oc = w->c * mult, row = w->ow * oc;
#pragma omp for schedule(static)
  for (int64_t r = 0; r < nr; r++) {
    size_t at = (size_t)((r0 + r) * row);
    float *dst = g + r * row;
    memset(dst, 0, (size_t)row * sizeof(float));
    if (io->act->kind != CN_ACT_SOFTMAX) {
      cn_act_backward(io->act, io->pre ? io->pre + at : NULL, io->out + at, io->dout + at, dst,
                      (size_t)row);
      continue;
    }
    for (int64_t p = 0; p < w->ow; p++) {
      size_t o = (size_t)(p * oc);
      cn_act_backward(io->act, io->pre ? io->pre + at + o : NULL, io->out + at + o,
                      io->dout + at + o, dst + o, (size_t)oc);
    }
  }
}

/* One tap of one output pixel, multiplier 1: contiguous channels the compiler vectorises. */
static void tap_grad(const float *restrict gp, const float *restrict k, const float *restrict x,
                     float *restrict dx, float *restrict dk, int64_t n) {
  if (dx)
    for (int64_t c = 0; c < n; c++) dx[c] += gp[c] * k[c];
  if (dk)
    for (int64_t c = 0; c < n; c++) dk[c] += gp[c] * x[c];
}

/* The same for a multiplier above 1: output channel c * mult + m reads input channel c. */
static void tap_grad_mult(const float *restrict gp, const float *restrict k,
                          const float *restrict x, float *restrict dx, float *restrict dk,
                          int64_t n, int mult) {
  for (int64_t c = 0; c < n; c++)
    for (int m = 0; m < mult; m++) {
      int64_t j = c * mult + m;
      if (dx) dx[c] += gp[j] * k[j];
      if (dk) dk[j] += gp[j] * x[c];
    }
}

/* One output pixel's contribution for input channels [c0, c1): taps inside the image only. */
static void pixel_grad(const cn_window *w, int mult, const cn_conv_grad *io, int64_t b, int64_t oy,
                       int64_t ox, const float *gp, int64_t c0, int64_t c1) {
  int64_t oc = w->c * mult, n = c1 - c0;
  const float *x = io->x + b * w->ih * w->iw * w->c + c0;
  float *dx = io->dx ? io->dx + b * w->ih * w->iw * w->c + c0 : NULL;
  gp += c0 * mult;
  if (io->dbias)
    for (int64_t j = 0; j < n * mult; j++) io->dbias[c0 * mult + j] += gp[j];
  for (int ky = 0; ky < w->kh; ky++) {
    int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
    if (iy < 0 || iy >= w->ih) continue;
    for (int kx = 0; kx < w->kw; kx++) {
      int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
      if (ix < 0 || ix >= w->iw) continue;
      int64_t tap = ((int64_t)ky * w->kw + kx) * oc + c0 * mult, at = (iy * w->iw + ix) * w->c;
      float *dk = io->dkernel ? io->dkernel + tap : NULL;
      if (mult == 1)
        tap_grad(gp, io->kernel + tap, x + at, dx ? dx + at : NULL, dk, n);
      else
        tap_grad_mult(gp, io->kernel + tap, x + at, dx ? dx + at : NULL, dk, n, mult);
    }
  }
}

/* Channels [*c0, *c1) of block `blk` of `blocks`, in whole cache lines. Each channel's sums keep
 * their order whatever the split, so the split may follow the thread count (fewer, longer
 * channel runs per tap). */
static void block_channels(int64_t c, int64_t blk, int64_t blocks, int64_t *c0, int64_t *c1) {
  int64_t lines = (c + CHAN_BLOCK - 1) / CHAN_BLOCK;
  *c0 = lines * blk / blocks * CHAN_BLOCK;
  *c1 = lines * (blk + 1) / blocks * CHAN_BLOCK;
  if (*c1 > c) *c1 = c;
}

static void backward_bands(const cn_window *w, int mult, const cn_conv_grad *io, float *scratch,
                           int64_t blocks) {
  int64_t rows = w->batch * w->oh, step = band_rows(w, mult), oc = w->c * mult;
  for (int64_t r0 = 0; r0 < rows; r0 += step) {
    int64_t nr = rows - r0 < step ? rows - r0 : step;
    const float *g = io->dout + r0 * w->ow * oc;
    if (io->act->kind != CN_ACT_LINEAR) {
      band_act_grad(w, mult, io, r0, nr, scratch);
      g = scratch;
    }
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; blk++) {
      int64_t c0, c1;
      block_channels(w->c, blk, blocks, &c0, &c1);
      for (int64_t r = 0; r < nr; r++)
        for (int64_t ox = 0; c0 < c1 && ox < w->ow; ox++)
          pixel_grad(w, mult, io, (r0 + r) / w->oh, (r0 + r) % w->oh, ox, g + (r * w->ow + ox) * oc,
                     c0, c1);
    }
  }
}

void cn_depthwise_backward(const cn_window *w, int mult, const cn_conv_grad *io, float *scratch,
                           int threads) {
  int64_t macs = w->batch * w->oh * w->ow * w->c * mult * w->kh * w->kw;
  int64_t lines = (w->c + CHAN_BLOCK - 1) / CHAN_BLOCK;
  int parallel = threads > 1 && macs >= PARALLEL_MIN_MACS && lines > 1;
  int64_t blocks = parallel ? (threads < lines ? threads : lines) : 1;
#pragma omp parallel num_threads(threads) if (parallel)
  backward_bands(w, mult, io, scratch, blocks);
}
