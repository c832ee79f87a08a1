/* A few rows (Dense at small batch) against a large kernel read in place: the product is bound by
 * reading the kernel once. OpenBLAS packed the whole kernel on every call first (VGG16's fc1:
 * 411 MB read, written and read again per forward), and packing it once ahead of time (cn_panels)
 * doubles the memory a model holds.
 *
 * The kernel is read in whole rows, in chunks of consecutive rows (one contiguous range each),
 * each chunk's products summed apart and the chunks' sums added in order: a thread streams its
 * chunks from memory as one sequential range, where blocks of columns read every kernel row's
 * slice, 1 to 4 KB a row apart, which the hardware prefetchers follow poorly (2 threads, Intel
 * Xeon: ResNet50's 2048 x 1000 fc from memory 0.41 -> 0.34 ms, MobileNetV2's 1280 x 1000 from L3
 * 0.164 -> 0.089 ms).
 *
 * Determinism: the chunks depend on k alone; each output is, per chunk, one chain of fused
 * multiply-adds over the chunk's k in order from zero, then the chunks' sums added in chunk
 * order, + bias and the activation. Threads only choose which chunks (and, adding them, which
 * columns) they compute, so the bits are the same for any thread count and any row count. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

typedef vwide vec;
enum { LANES = WIDE_LANES };
/* Columns per block (a kernel row's slice: one page), and the least work worth a second thread. */
enum { BLOCK_COLS = 1024, DEPTH_STEP = 8 };
#define PARALLEL_MACS 262144.0

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

/* For every row r < m: y[r][0..cols) += sum over t < steps (<= DEPTH_STEP) of x[r][t] * w[t][..],
 * in order of t, one multiply-add at a time. Each vector of w is loaded once for all the rows. */
static void add_steps(int64_t m, int steps, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, int64_t cols, float *y, int64_t ldy) {
  int64_t c = 0;
  for (; c + LANES <= cols; c += LANES) {
    vec wv[DEPTH_STEP];
    for (int t = 0; t < steps; t++) wv[t] = loadw(w + t * ldw + c);
    for (int64_t r = 0; r < m; r++) {
      const float *xr = x + r * ldx;
      vec acc = loadw(y + r * ldy + c);
      for (int t = 0; t < steps; t++) acc += xr[t] * wv[t];
      storew(y + r * ldy + c, acc);
    }
  }
  for (; c < cols; c++)
    for (int64_t r = 0; r < m; r++) {
      float acc = y[r * ldy + c];
      for (int t = 0; t < steps; t++) acc = __builtin_fmaf(x[r * ldx + t], w[t * ldw + c], acc);
      y[r * ldy + c] = acc;
    }
}

/* y's columns [c0, c0 + cols) of every row = the chunks' sums (each m x n), added in order. */
static void add_chunks(int64_t m, const float *part, int64_t chunks, int64_t n, int64_t c0,
                       int64_t cols, float *y, int64_t ldy) {
  for (int64_t r = 0; r < m; r++) {
    float *out = y + r * ldy + c0;
    memcpy(out, part + r * n + c0, (size_t)cols * sizeof(float));
    for (int64_t c = 1; c < chunks; c++) {
      const float *add = part + (c * m + r) * n + c0;
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) out[j] += add[j];
    }
  }
}

/* Columns [c0, c0 + cols) of every row. */
static void column_block(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw,
                         int64_t k, int64_t c0, int64_t cols, float *y, int64_t ldy) {
  for (int64_t r = 0; r < m; r++) memset(y + r * ldy + c0, 0, (size_t)cols * sizeof(float));
  for (int64_t t = 0; t < k; t += DEPTH_STEP) {
    int steps = k - t < DEPTH_STEP ? (int)(k - t) : DEPTH_STEP;
    add_steps(m, steps, x + t, ldx, w + t * ldw + c0, ldw, cols, y + c0, ldy);
  }
}

/* Chunks of at least CHUNK_ROWS kernel rows (a multiple of DEPTH_STEP), at most CHUNKS of them. */
enum { CHUNK_ROWS = 256, CHUNKS = 16 };

static int64_t chunk_rows(int64_t k) {
  int64_t rows = ceil_div(k, CHUNKS);
  rows = rows < CHUNK_ROWS ? CHUNK_ROWS : rows;
  return ceil_div(rows, DEPTH_STEP) * DEPTH_STEP;
}

/* Columns [c0, c0 + cols) (cols <= BLOCK_COLS) of every row, chunk after chunk in add_chunks'
 * order, a row's chunk sum at a time: the same bits without memory for the chunks' sums. */
static void column_chunks(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw,
                          int64_t k, int64_t rows, int64_t c0, int64_t cols, float *y,
                          int64_t ldy) {
  float sum[BLOCK_COLS];
  column_block(m, x, ldx, w, ldw, k < rows ? k : rows, c0, cols, y, ldy);
  for (int64_t k0 = rows; k0 < k; k0 += rows) {
    int64_t kc = k - k0 < rows ? k - k0 : rows;
    for (int64_t r = 0; r < m; r++) {
      float *out = y + r * ldy + c0;
      column_block(1, x + r * ldx + k0, ldx, w + k0 * ldw + c0, ldw, kc, 0, cols, sum, cols);
#pragma omp simd
      for (int64_t j = 0; j < cols; j++) out[j] += sum[j];
    }
  }
}

void cn_gemm_rows(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k,
                  int64_t n, const float *bias, const cn_activation *act, float *y, int64_t ldy,
                  int threads) {
  int64_t rows = chunk_rows(k), chunks = ceil_div(k, rows);
  size_t part_floats = (size_t)(chunks * m * n);
  float *part = chunks > 1 ? malloc(part_floats * sizeof(float)) : NULL;
  int by_chunk = part != NULL;
  cn_activation linear = cn_act_linear();
  const cn_activation *block_act = act->kind == CN_ACT_SOFTMAX ? &linear : act;
  /* Adding the chunks' sums, or without memory for them computing them: blocks of whole vectors
   * of columns, at least two per thread where n allows. */
  int64_t cols = ceil_div(ceil_div(n, 2 * (int64_t)threads), LANES) * LANES;
  if (cols > BLOCK_COLS) cols = BLOCK_COLS;
  int64_t blocks = ceil_div(n, cols);
  double macs = (double)m * (double)n * (double)k;
#pragma omp parallel num_threads(threads) if (threads > 1 && macs > PARALLEL_MACS)
  {
    if (by_chunk) {
#pragma omp for schedule(static)
      for (int64_t c = 0; c < chunks; c++) {
        int64_t k0 = c * rows, kc = k - k0 < rows ? k - k0 : rows;
        column_block(m, x + k0, ldx, w + k0 * ldw, ldw, kc, 0, n, part + c * m * n, n);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; b++) {
      int64_t c0 = b * cols, nc = n - c0 < cols ? n - c0 : cols;
      if (by_chunk)
        add_chunks(m, part, chunks, n, c0, nc, y, ldy);
      else
        column_chunks(m, x, ldx, w, ldw, k, rows, c0, nc, y, ldy);
      cn_bias_act_rows(y + c0, m, nc, ldy, bias ? bias + c0 : NULL, block_act, 1);
    }
  }
  free(part);
  if (act->kind == CN_ACT_SOFTMAX)
    for (int64_t r = 0; r < m; r++) cn_bias_act_row(y + r * ldy, n, NULL, act);
}
