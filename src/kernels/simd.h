/* Eight (or sixteen) floats as one value: GCC/Clang vector extensions, so accumulators live in
 * registers (one AVX register each, or two SSE ones) whatever the -march. Loads and stores go
 * through memcpy, so they need no alignment. Shared by the hand-blocked kernels. */
#ifndef CN_KERNELS_SIMD_H
#define CN_KERNELS_SIMD_H

#include <stdint.h>
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

/* cn_maxf(v, t) and cn_minf(v, t) per lane, (t > v ? t : v) and (t < v ? t : v), NaN in v
 * kept: vector comparisons (all ones where true) select, with no intrinsics, so any -march
 * builds it (the fuzzing build has no AVX). */
typedef int32_t wide_lanes __attribute__((vector_size(sizeof(vwide))));
static inline vwide vselectw(wide_lanes take_t, vwide t, vwide v) {
  return (vwide)((take_t & (wide_lanes)t) | (~take_t & (wide_lanes)v));
}
static inline vwide vmaxw(vwide t, vwide v) {
  return vselectw(t > v, t, v);
}
static inline vwide vminw(vwide t, vwide v) {
  return vselectw(t < v, t, v);
}

#endif
