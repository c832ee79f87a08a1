/* Matrix products through OpenBLAS, with the bias and activation applied per block of rows while
 * the block is still in cache. */
#include <cblas.h>

#include "kernels/kernels.h"

/* Rows per GEMM call: large enough for BLAS to be efficient, small enough that the epilogue
 * finds the block in cache and that sizes fit BLAS's int. */
enum { GEMM_ROWS = 4096 };

void cn_gemm_bias_act(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy, int threads) {
  for (int64_t r0 = 0; r0 < m; r0 += GEMM_ROWS) {
    int64_t rows = m - r0 < GEMM_ROWS ? m - r0 : GEMM_ROWS;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n, (int)k, 1.0f,
                x + r0 * ldx, (int)ldx, w, (int)ldw, 0.0f, y + r0 * ldy, (int)ldy);
    cn_bias_act_rows(y + r0 * ldy, rows, n, ldy, bias, act, threads);
  }
}
