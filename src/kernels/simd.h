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
 * builds it (the fuzzing build has no AVX). Defined once for every width. */
#define CN_VEC_MINMAX(vec, lanes, select, vmax, vmin)                                              \
  static inline vec select(lanes take_t, vec t, vec v) {                                           \
    return (vec)((take_t & (lanes)t) | (~take_t & (lanes)v));                                      \
  }                                                                                                \
  static inline vec vmax(vec t, vec v) {                                                           \
    return select(t > v, t, v);                                                                    \
  }                                                                                                \
  static inline vec vmin(vec t, vec v) {                                                           \
    return select(t < v, t, v);                                                                    \
  }

typedef int32_t wide_lanes __attribute__((vector_size(sizeof(vwide))));
CN_VEC_MINMAX(vwide, wide_lanes, vselectw, vmaxw, vminw)

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

#define CN_VCLAMP_APPLY(name, vec, vmax, vmin)                                                     \
  static inline vec name(vec v, const cn_vclamp *c) {                                              \
    if (c->relu) v = vmax((vec){0}, v);                                                            \
    if (c->clip) v = vmin((vec){0} + c->top, v);                                                   \
    return v;                                                                                      \
  }
CN_VCLAMP_APPLY(cn_vclamp_apply, vwide, vmaxw, vminw)

/* The same on eight floats, for an 8-channel tail where vwide is 16 wide. */
#ifdef __AVX512F__
typedef int32_t v8_lanes __attribute__((vector_size(32)));
CN_VEC_MINMAX(v8f, v8_lanes, vselect8, vmax8, vmin8)
CN_VCLAMP_APPLY(cn_vclamp_apply8, v8f, vmax8, vmin8)
#endif

#endif
