/* Elementwise loops: bias + activation epilogues, softmax along an axis, per-channel scale and
 * shift (BatchNormalization), all split across OpenMP threads. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

/* Below this many floats a loop runs on one thread: spawning costs more than it saves. */
enum { PARALLEL_MIN = 1 << 15, ACT_CHUNK = 1 << 14 };

static void softmax_line(float *x, int64_t n, int64_t stride) {
  float top = -INFINITY;
  for (int64_t i = 0; i < n; i++) top = cn_maxf(top, x[i * stride]);
  float sum = 0;
  for (int64_t i = 0; i < n; i++) {
    float e = expf(x[i * stride] - top);
    x[i * stride] = e;
    sum += e;
  }
  for (int64_t i = 0; i < n; i++) x[i * stride] /= sum;
}

void cn_softmax_axis(float *x, int64_t outer, int64_t n, int64_t inner, int threads) {
  int64_t lines = outer * inner;
#pragma omp parallel for num_threads(threads) schedule(static) if (lines * n > PARALLEL_MIN)
  for (int64_t l = 0; l < lines; l++)
    softmax_line(x + (l / inner) * n * inner + l % inner, n, inner);
}

void cn_bias_act_row(float *restrict y, int64_t n, const float *restrict bias,
                     const cn_activation *act) {
  if (bias)
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] += bias[j];
  if (act->residual) {
    const float *restrict r = act->residual + (y - act->residual_of);
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] += r[j];
  }
  if (act->kind == CN_ACT_SOFTMAX)
    softmax_line(y, n, 1);
  else if (act->kind != CN_ACT_LINEAR)
    cn_act_apply(act, y, (size_t)n);
}

void cn_bias_act_rows(float *y, int64_t rows, int64_t cols, int64_t ld, const float *bias,
                      const cn_activation *act, int threads) {
  if (!bias && cn_act_is_identity(act)) return;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * cols > PARALLEL_MIN)
  for (int64_t r = 0; r < rows; r++) cn_bias_act_row(y + r * ld, cols, bias, act);
}

void cn_act_apply_parallel(const cn_activation *act, float *x, size_t n, int threads) {
  if (act->kind == CN_ACT_LINEAR) return;
  int64_t chunks = (int64_t)((n + ACT_CHUNK - 1) / ACT_CHUNK);
#pragma omp parallel for num_threads(threads) schedule(static) if (n > PARALLEL_MIN)
  for (int64_t i = 0; i < chunks; i++) {
    size_t start = (size_t)i * ACT_CHUNK;
    size_t len = n - start < ACT_CHUNK ? n - start : ACT_CHUNK;
    cn_act_apply(act, x + start, len);
  }
}

void cn_scale_shift(const float *x, float *y, int64_t outer, int64_t c, int64_t inner,
                    const float *scale, const float *shift, int threads) {
  if (inner == 1) {
#pragma omp parallel for num_threads(threads) schedule(static) if (outer * c > PARALLEL_MIN)
    for (int64_t o = 0; o < outer; o++) {
      const float *src = x + o * c;
      float *dst = y + o * c;
#pragma omp simd
      for (int64_t j = 0; j < c; j++) dst[j] = src[j] * scale[j] + shift[j];
    }
    return;
  }
  int64_t lines = outer * c;
#pragma omp parallel for num_threads(threads) schedule(static) if (lines * inner > PARALLEL_MIN)
  for (int64_t l = 0; l < lines; l++) {
    int64_t j = l % c;
    const float *src = x + l * inner;
    float *dst = y + l * inner;
    for (int64_t i = 0; i < inner; i++) dst[i] = src[i] * scale[j] + shift[j];
  }
}
