/* Gradient accumulation shared by the backward passes of the shape and elementwise ops. */
#include <string.h>

#include "kernels/kernels.h"

enum { PARALLEL_MIN = 1 << 15 };

void cn_add_into(float *restrict dst, const float *restrict src, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

void cn_add_scaled_into(float *restrict dst, const float *restrict src, float scale, int64_t n,
                        int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) dst[i] += src[i] * scale;
}

void cn_zero(float *x, int64_t n, int threads) {
  if (n <= 0) return;
  int64_t parts = n > PARALLEL_MIN && threads > 1 ? threads : 1, step = (n + parts - 1) / parts;
#pragma omp parallel for num_threads((int)parts) schedule(static) if (parts > 1)
  for (int64_t i = 0; i < n; i += step)
    memset(x + i, 0, (size_t)(n - i < step ? n - i : step) * sizeof(float));
}
