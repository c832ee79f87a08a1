/* The parts of the random streams that are not one-liners. */
#include "core/rng.h"

#include <math.h>

float cn_rng_normal(cn_rng *r) {
  /* 1 - u keeps the logarithm finite: u is in [0, 1). */
  double u1 = 1.0 - (double)(cn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
  double u2 = (double)(cn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void cn_rng_shuffle(cn_rng *r, int64_t *items, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)cn_rng_below(r, (uint64_t)i + 1);
    int64_t t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
}

float cn_rng_normal_at(uint64_t key, uint64_t index) {
  uint64_t a = cn_mix64(key ^ cn_mix64(2 * index)), b = cn_mix64(key ^ cn_mix64(2 * index + 1));
  double u1 = 1.0 - (double)(a >> 11) * (1.0 / 9007199254740992.0);
  double u2 = (double)(b >> 11) * (1.0 / 9007199254740992.0);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
