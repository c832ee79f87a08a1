/* A few rows (Dense at small batch) against a large kernel read in place, row after row: the
 * product is bound by reading the kernel once, so it streams each kernel row's slice (4 KB,
 * contiguous) while the outputs stay in L1. OpenBLAS packed the whole kernel on every call first
 * (VGG16's fc1: 411 MB read, written and read again per forward), and packing it once ahead of
 * time (cn_panels) doubles the memory a model holds.
 *
 * Determinism: each output is one chain of fused multiply-adds over k = 0, 1, ... from zero, then
 * + bias and the activation; threads only choose which columns they compute, so the bits are the
 * same for any thread count and any row count. */
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

/* Columns [c0, c0 + cols) of every row. */
static void column_block(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw,
                         int64_t k, int64_t c0, int64_t cols, float *y, int64_t ldy) {
  for (int64_t r = 0; r < m; r++) memset(y + r * ldy + c0, 0, (size_t)cols * sizeof(float));
  for (int64_t t = 0; t < k; t += DEPTH_STEP) {
    int steps = k - t < DEPTH_STEP ? (int)(k - t) : DEPTH_STEP;
    add_steps(m, steps, x + t, ldx, w + t * ldw + c0, ldw, cols, y + c0, ldy);
  }
}

void cn_gemm_rows(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k,
                  int64_t n, const float *bias, const cn_activation *act, float *y, int64_t ldy,
                  int threads) {
  /* Blocks of whole vectors, at least two per thread where n allows. */
  int64_t cols = ceil_div(ceil_div(n, 2 * (int64_t)threads), LANES) * LANES;
  if (cols > BLOCK_COLS) cols = BLOCK_COLS;
  int64_t blocks = ceil_div(n, cols);
  cn_activation linear = cn_act_linear();
  const cn_activation *block_act = act->kind == CN_ACT_SOFTMAX ? &linear : act;
  double macs = (double)m * (double)n * (double)k;
#pragma omp parallel for num_threads(threads)                                                      \
    schedule(dynamic, 1) if (threads > 1 && macs > PARALLEL_MACS)
  for (int64_t b = 0; b < blocks; b++) {
    int64_t c0 = b * cols, nc = n - c0 < cols ? n - c0 : cols;
    column_block(m, x, ldx, w, ldw, k, c0, nc, y, ldy);
    cn_bias_act_rows(y + c0, m, nc, ldy, bias ? bias + c0 : NULL, block_act, 1);
  }
  if (act->kind == CN_ACT_SOFTMAX)
    for (int64_t r = 0; r < m; r++) cn_bias_act_row(y + r * ldy, n, NULL, act);
}
