/* Matrix products through OpenBLAS, with the bias and activation applied per block while the block
 * is still in cache.
 *
 * Determinism: OpenBLAS's result bits depend on how a product is cut (its edge micro-kernels
 * accumulate differently) and on how many threads it splits a call over. So a product is cut into
 * a fixed grid of blocks that depends on its shape (m, n, k) only, and every block is one
 * single-threaded sgemm call; threads only decide who computes which block. OpenBLAS runs on the
 * calling thread inside an active parallel region, and, outside one, for products of at most
 * BLAS_SERIAL_MACS multiply-adds (65536 * GEMM_MULTITHREAD_THRESHOLD, 4 by default) or when the
 * library runs on one thread (cn_set_threads(1)). The result is then bitwise the same for any
 * thread count. */
#include <cblas.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

/* Rows per block at most (the epilogue finds the block in cache; sizes fit BLAS's int), rows and
 * columns per block at least once a product is split (thinner blocks repack too much), blocks
 * wanted for small products (two: both cores of the machines we measure on busy, with the least
 * repacking; 4 measured no faster on 2 threads and cost 1.4 % more instructions on one), and the
 * work below which a block is not worth splitting. */
enum { ROW_MAX = 256, ROW_MIN = 32, COL_MIN = 64, COL_ALIGN = 16, WANT_BLOCKS = 2 };
#define MIN_BLOCK_MACS 131072.0
#define BLAS_SERIAL_MACS 262144.0

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/* Equal blocks of `len` in `count` pieces, `align`ed: the piece size, and the count it needs. */
static void cut(int64_t len, int64_t count, int64_t align, int64_t *piece, int64_t *pieces) {
  *piece = ceil_div(ceil_div(len, count), align) * align;
  if (*piece > len) *piece = len;
  *pieces = ceil_div(len, *piece);
}

cn_gemm_plan cn_gemm_plan_make(int64_t m, int64_t n, int64_t k) {
  cn_gemm_plan p = {m, n, k, m, n, 1, 1};
  if (m < 1 || n < 1) /* an empty product: no block */
    return (cn_gemm_plan){m, n, k, 1, 1, 0, 0};
  double macs = (double)m * (double)n * (double)k;
  int64_t want = macs >= WANT_BLOCKS * MIN_BLOCK_MACS ? WANT_BLOCKS
                 : macs >= 2 * MIN_BLOCK_MACS         ? 2
                                                      : 1;
  int64_t rb = ceil_div(m, ROW_MAX), cb = 1;
  if (rb < want && m >= n) rb = clamp64(want, rb, m / ROW_MIN > rb ? m / ROW_MIN : rb);
  if (rb < want) cb = clamp64(ceil_div(want, rb), 1, n / COL_MIN > 1 ? n / COL_MIN : 1);
  if (rb * cb < want && rb < m / ROW_MIN) rb = clamp64(ceil_div(want, cb), rb, m / ROW_MIN);
  /* An even count of blocks keeps two threads equally busy. */
  if (rb * cb > 1 && rb * cb % 2) {
    if (cb > 1 && n / (cb + 1) >= COL_ALIGN)
      cb++;
    else if (m / (rb + 1) >= 1)
      rb++;
  }
  cut(m, rb, 1, &p.block_rows, &p.row_blocks);
  cut(n, cb, cb > 1 ? COL_ALIGN : 1, &p.block_cols, &p.col_blocks);
  return p;
}

int64_t cn_gemm_plan_blocks(const cn_gemm_plan *p) {
  return p->row_blocks * p->col_blocks;
}

int cn_gemm_plan_parallel(const cn_gemm_plan *p, int threads) {
  double macs = (double)p->m * (double)p->n * (double)p->k;
  return threads > 1 && (cn_gemm_plan_blocks(p) > 1 || macs > BLAS_SERIAL_MACS);
}

/* Block i: y = x w + bias, then the activation when it is elementwise (softmax needs whole rows
 * and runs after every block of the row is done). */
static void gemm_block(const cn_gemm_plan *p, int64_t i, const float *x, int64_t ldx,
                       const float *w, int64_t ldw, const float *bias, const cn_activation *act,
                       float *y, int64_t ldy) {
  int64_t r0 = i / p->col_blocks * p->block_rows, c0 = i % p->col_blocks * p->block_cols;
  int64_t rows = p->m - r0 < p->block_rows ? p->m - r0 : p->block_rows;
  int64_t cols = p->n - c0 < p->block_cols ? p->n - c0 : p->block_cols;
  float *out = y + r0 * ldy + c0;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)p->k, 1.0f,
              x + r0 * ldx, (int)ldx, w + c0, (int)ldw, 0.0f, out, (int)ldy);
  cn_activation linear = cn_act_linear();
  const cn_activation *block_act = act->kind == CN_ACT_SOFTMAX ? &linear : act;
  cn_bias_act_rows(out, rows, cols, ldy, bias ? bias + c0 : NULL, block_act, 1);
}

void cn_gemm_plan_run(const cn_gemm_plan *p, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy) {
  int64_t blocks = cn_gemm_plan_blocks(p);
#pragma omp for schedule(static)
  for (int64_t i = 0; i < blocks; i++) gemm_block(p, i, x, ldx, w, ldw, bias, act, y, ldy);
  if (act->kind != CN_ACT_SOFTMAX) return;
#pragma omp for schedule(static)
  for (int64_t r = 0; r < p->m; r++) cn_bias_act_row(y + r * ldy, p->n, NULL, act);
}

void cn_gemm_bias_act(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy, int threads) {
  cn_gemm_plan p = cn_gemm_plan_make(m, n, k);
  int64_t blocks = cn_gemm_plan_blocks(&p);
  int team = threads < blocks ? threads : blocks < 2 ? 2 : (int)blocks;
#pragma omp parallel num_threads(team) if (cn_gemm_plan_parallel(&p, threads))
  cn_gemm_plan_run(&p, x, ldx, w, ldw, bias, act, y, ldy);
}

void cn_outer_6x16(const float *restrict v, int64_t ldv, const float *restrict m, int64_t ldm,
                   int64_t n, float *restrict s, int64_t lds) {
  v8f a0 = load8(s), b0 = load8(s + 8), a1 = load8(s + lds), b1 = load8(s + lds + 8);
  v8f a2 = load8(s + 2 * lds), b2 = load8(s + 2 * lds + 8);
  v8f a3 = load8(s + 3 * lds), b3 = load8(s + 3 * lds + 8);
  v8f a4 = load8(s + 4 * lds), b4 = load8(s + 4 * lds + 8);
  v8f a5 = load8(s + 5 * lds), b5 = load8(s + 5 * lds + 8);
  for (int64_t t = 0; t < n; t++, v += ldv, m += ldm) {
    v8f lo = load8(m), hi = load8(m + 8);
    a0 += v[0] * lo, b0 += v[0] * hi;
    a1 += v[1] * lo, b1 += v[1] * hi;
    a2 += v[2] * lo, b2 += v[2] * hi;
    a3 += v[3] * lo, b3 += v[3] * hi;
    a4 += v[4] * lo, b4 += v[4] * hi;
    a5 += v[5] * lo, b5 += v[5] * hi;
  }
  store8(s, a0), store8(s + 8, b0), s += lds;
  store8(s, a1), store8(s + 8, b1), s += lds;
  store8(s, a2), store8(s + 8, b2), s += lds;
  store8(s, a3), store8(s + 8, b3), s += lds;
  store8(s, a4), store8(s + 8, b4), s += lds;
  store8(s, a5), store8(s + 8, b5);
}
