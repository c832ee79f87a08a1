/* Matrix products through OpenBLAS, with the bias and activation applied per block of rows while
 * the block is still in cache. Tall products (1x1 convolutions on large images) are split into
 * row blocks that the threads take in turn, each calling a single-threaded GEMM (OpenBLAS runs on
 * the calling thread inside a parallel region); short ones let OpenBLAS split the work. */
#include <cblas.h>

#include "kernels/kernels.h"

/* Rows per GEMM call: large enough for BLAS to be efficient, small enough that the epilogue
 * finds the block in cache and that sizes fit BLAS's int. */
enum { GEMM_ROWS = 4096, BLOCK_ROWS = 256, MIN_ROWS_PER_THREAD = 128 };

static void gemm_block(int64_t rows, int64_t n, int64_t k, const float *x, int64_t ldx,
                       const float *w, int64_t ldw, const float *bias, const cn_activation *act,
                       float *y, int64_t ldy, int threads) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)k, 1.0f, x,
              (int)ldx, w, (int)ldw, 0.0f, y, (int)ldy);
  cn_bias_act_rows(y, rows, n, ldy, bias, act, threads);
}

void cn_gemm_bias_act(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy, int threads) {
  if (threads > 1 && m >= MIN_ROWS_PER_THREAD * threads) {
    /* Equal blocks, a multiple of the thread count. */
    int64_t blocks = (m + BLOCK_ROWS - 1) / BLOCK_ROWS;
    blocks = (blocks + threads - 1) / threads * threads;
    int64_t step = (m + blocks - 1) / blocks;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r0 = 0; r0 < m; r0 += step) {
      int64_t rows = m - r0 < step ? m - r0 : step;
      gemm_block(rows, n, k, x + r0 * ldx, ldx, w, ldw, bias, act, y + r0 * ldy, ldy, 1);
    }
    return;
  }
  for (int64_t r0 = 0; r0 < m; r0 += GEMM_ROWS) {
    int64_t rows = m - r0 < GEMM_ROWS ? m - r0 : GEMM_ROWS;
    gemm_block(rows, n, k, x + r0 * ldx, ldx, w, ldw, bias, act, y + r0 * ldy, ldy, threads);
  }
}
