/* Random numbers that do not depend on the thread count or on call order: a counter-based
 * generator (a value is a pure function of a key and an index) for stochastic ops, and a small
 * sequential stream for shuffling, splits and initialisation whose whole state fits in a
 * checkpoint. One --seed derives every stream with cn_rng_key. */
#ifndef CN_CORE_RNG_H
#define CN_CORE_RNG_H

#include <stdint.h>

/* A well-mixed 64-bit hash (splitmix64 finaliser). */
static inline uint64_t cn_mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A key for stream `stream` (an arbitrary constant per purpose) under `seed`, optionally
 * refined by one more value (epoch, step, node index). */
static inline uint64_t cn_rng_key(uint64_t seed, uint64_t stream, uint64_t sub) {
  return cn_mix64(cn_mix64(seed ^ cn_mix64(stream)) ^ sub);
}

/* Counter-based: a uniform float in [0, 1) for element `index` under `key`. */
static inline float cn_rng_uniform_at(uint64_t key, uint64_t index) {
  return (float)(cn_mix64(key ^ cn_mix64(index)) >> 40) * (1.0f / 16777216.0f);
}

/* Counter-based: a standard normal value for element `index` under `key` (Box-Muller). */
float cn_rng_normal_at(uint64_t key, uint64_t index);

/* A sequential stream; copy the struct to save or restore it. */
typedef struct cn_rng {
  uint64_t state;
} cn_rng;

static inline cn_rng cn_rng_make(uint64_t key) {
  cn_rng r = {key};
  return r;
}
static inline uint64_t cn_rng_next(cn_rng *r) {
  r->state += 0x9e3779b97f4a7c15ULL;
  uint64_t x = r->state;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
/* Uniform in [0, 1). */
static inline float cn_rng_float(cn_rng *r) {
  return (float)(cn_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}
/* Uniform integer in [0, n), n > 0, without modulo bias. */
static inline uint64_t cn_rng_below(cn_rng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = cn_rng_next(r);
  while (x >= limit);
  return x % n;
}
/* Standard normal (Box-Muller; one value per call, for initialisers). */
float cn_rng_normal(cn_rng *r);
/* Fisher-Yates shuffle of n indices. */
void cn_rng_shuffle(cn_rng *r, int64_t *items, int64_t n);

#endif
