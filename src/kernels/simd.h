/* Eight (or sixteen) floats as one value: GCC/Clang vector extensions, so accumulators live in
 * registers (one AVX register each, or two SSE ones) whatever the -march. Loads and stores go
 * through memcpy, so they need no alignment. Shared by the hand-blocked kernels. */
#ifndef CN_KERNELS_SIMD_H
#define CN_KERNELS_SIMD_H

#include <string.h>

typedef float v8f __attribute__((vector_size(32)));

static inline v8f load8(const float *p) {
  v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void store8(float *p, v8f v) {
  memcpy(p, &v, sizeof v);
}

/* Sixteen floats: one AVX-512 register, for kernels built where the CPU has them (only there:
 * elsewhere GCC warns that returning one changes the ABI, an error under -Werror). */
#ifdef __AVX512F__
typedef float v16f __attribute__((vector_size(64)));

static inline v16f load16(const float *p) {
  v16f v;
  memcpy(&v, p, sizeof v);
  return v;
}
#endif

/* The widest of the two this build has, for kernels written once for both: vwide of WIDE_LANES
 * floats, loadw / storew. */
#ifdef __AVX512F__
typedef v16f vwide;
enum { WIDE_LANES = 16 };
#else
typedef v8f vwide;
enum { WIDE_LANES = 8 };
#endif

static inline vwide loadw(const float *p) {
  vwide v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void storew(float *p, vwide v) {
  memcpy(p, &v, sizeof v);
}

#endif
