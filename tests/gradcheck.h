/* Finite-difference check of one operator's backward: builds Input(s) -> op, fills parameters
 * and inputs from a seed, runs the op's training forward and backward directly, and compares
 * every input and trainable-parameter gradient (or a seeded sample of at most max_checks elements
 * per tensor) with central differences of sum(out * dout) computed in double. */
#ifndef CN_TEST_GRADCHECK_H
#define CN_TEST_GRADCHECK_H

#include <stdint.h>

#include "ops/ops.h"

typedef struct cn_gradcheck_case {
  const char *label; /* printed on failure */
  const cn_op *op;
  const void *attrs;
  int n_inputs;       /* 1..4 */
  cn_shape inputs[4]; /* per-sample shapes */
  int batch;          /* 0: 2 */
  int training;       /* run the training forward (batch statistics, dropout) */
  uint64_t seed;      /* inputs, parameters, dout, and ex.seed */
  float input_scale;  /* inputs uniform in [-s, s]; 0: 1 */
  float step;         /* finite-difference step; 0: 1e-2 */
  double tolerance;   /* |analytic - numeric| <= tol * max(1, |analytic|, |numeric|); 0: 1e-3 */
  int max_checks;     /* 0: 64 elements per tensor */
  int threads;        /* ex.threads; 0: 1 */
  /* Optional: a distinct input value per element keeps max pooling and ReLU away from ties and
   * kinks: inputs are a seeded permutation of evenly spaced values instead of uniform. */
  int distinct;
} cn_gradcheck_case;

/* Returns the number of mismatching elements (0 = pass), printing each with the label. */
int cn_gradcheck(const cn_gradcheck_case *c);
/* Runs backward of the same case with threads 1 and with threads 2 and returns 1 when every
 * gradient is bitwise identical. */
int cn_gradcheck_thread_invariant(const cn_gradcheck_case *c);

#endif
