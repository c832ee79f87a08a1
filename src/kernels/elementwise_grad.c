/* Gradient accumulation shared by the backward passes of the shape and elementwise ops. */
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
