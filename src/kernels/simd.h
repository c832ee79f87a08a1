/* Eight (or sixteen) floats as one value: GCC/Clang vector extensions, so accumulators live in
 * registers (one AVX register each, or two SSE ones) whatever the -march. Loads and stores go
 * through memcpy, so they need no alignment. Shared by the hand-blocked kernels. */
#ifndef CN_KERNELS_SIMD_H
#define CN_KERNELS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/activation.h"

/* A vector type's unaligned load and store, defined once for every width. */
#define CN_VEC_LOAD_STORE(vec, load, store)                                                        \
  static inline vec load(const float *p) {                                                         \
    vec v;                                                                                         \
    memcpy(&v, p, sizeof v);                                                                       \
    return v;                                                                                      \
  }                                                                                                \
  static inline void store(float *p, vec v) {                                                      \
    memcpy(p, &v, sizeof v);                                                                       \
  }

typedef float v8f __attribute__((vector_size(32)));
CN_VEC_LOAD_STORE(v8f, load8, store8)

/* Sixteen floats: one AVX-512 register, for kernels built where the CPU has them (only there:
 * elsewhere GCC warns that returning one changes the ABI, an error under -Werror). */
#ifdef __AVX512F__
typedef float v16f __attribute__((vector_size(64)));
CN_VEC_LOAD_STORE(v16f, load16, store16)
#endif

/* The widest of the two this build has, for kernels written once for both: vwide of WIDE_LANES
 * floats, loadw / storew. */
#ifdef __AVX512F__
typedef v16f vwide;
enum { WIDE_LANES = 16 };
#define loadw load16
#define storew store16
#else
typedef v8f vwide;
enum { WIDE_LANES = 8 };
#define loadw load8
#define storew store8
#endif

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

/* A plain ReLU applied in registers (cn_act_is_plain_relu): cn_act_apply's operations,
 * cn_maxf(v, 0) then cn_minf(v, top) when clipped, so the same bits as a pass over the stored
 * values. `relu` 0: none. */
typedef struct cn_vclamp {
  int relu, clip;
  float top;
} cn_vclamp;

static inline cn_vclamp cn_vclamp_of(const cn_activation *act) {
  int relu = cn_act_is_plain_relu(act);
  return (cn_vclamp){relu, relu && isfinite(act->max_value), act->max_value};
}

static inline vwide cn_vclamp_apply(vwide v, const cn_vclamp *c) {
  if (c->relu) v = vmaxw((vwide){0}, v);
  if (c->clip) v = vminw((vwide){0} + c->top, v);
  return v;
}

/* The same on eight floats, for an 8-channel tail where vwide is 16 wide. */
typedef int32_t v8i __attribute__((vector_size(32)));
static inline v8f vselect8(v8i take_t, v8f t, v8f v) {
  return (v8f)((take_t & (v8i)t) | (~take_t & (v8i)v));
}
static inline v8f cn_vclamp_apply8(v8f v, const cn_vclamp *c) {
  if (c->relu) v = vselect8((v8f){0} > v, (v8f){0}, v);
  if (c->clip) {
    v8f top = (v8f){0} + c->top;
    v = vselect8(top < v, top, v);
  }
  return v;
}

#endif
