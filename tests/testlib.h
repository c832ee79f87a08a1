/* A small test harness: CHECK macros that count, a closing "N passed, N failed" line, and helpers
 * to find the shared real data (tests that need it skip with exit code 77 when it is absent). */
#ifndef CN_TESTLIB_H
#define CN_TESTLIB_H

#include <stdio.h>

#include "convnet/core.h"
#include "convnet/dist.h"

extern int cn_test_passed, cn_test_failed;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond) {                                                                                    \
      cn_test_passed++;                                                                            \
    } else {                                                                                       \
      cn_test_failed++;                                                                            \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    cn_status st_ = (expr);                                                                        \
    if (st_ == CN_OK) {                                                                            \
      cn_test_passed++;                                                                            \
    } else {                                                                                       \
      cn_test_failed++;                                                                            \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #expr,                    \
              cn_status_name(st_), cn_last_error());                                               \
    }                                                                                              \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (fabs(a_ - b_) <= (tol)) {                                                                  \
      cn_test_passed++;                                                                            \
    } else {                                                                                       \
      cn_test_failed++;                                                                            \
      fprintf(stderr, "%s:%d: %s = %.9g, %s = %.9g, differ by more than %g\n", __FILE__, __LINE__, \
              #a, a_, #b, b_, (double)(tol));                                                      \
    }                                                                                              \
  } while (0)

/* Prints the closing line and returns the exit code for main. */
int cn_test_finish(void);
/* Path of a file under ../shared/data (CN_SHARED_DATA), or NULL when it does not exist. */
const char *cn_test_data(const char *relative);
/* "$CN_SOURCE_DIR/relative" (the source tree; "." when unset) into path: the committed inputs
 * under fuzz/, such as past fuzzer findings. */
void cn_test_source(const char *relative, char *path, size_t cap);
/* Prints "SKIP: why" and exits with 77 (ctest counts it as skipped). */
void cn_test_skip(const char *why) __attribute__((noreturn));
/* A fresh temporary directory for this test process. */
const char *cn_test_tmpdir(void);
/* A shape from its rank and that many int dimensions: cn_test_shape(3, 4, 5, 6). */
cn_shape cn_test_shape(int rank, ...);
/* Max |a - b| over n floats. */
double cn_test_max_abs_diff(const float *a, const float *b, size_t n);
/* Input(5,5,2) -> Conv2D 3x3 (4) -> BatchNormalization -> tanh -> GlobalAveragePooling2D ->
 * Dropout(0.25) -> Dense(3, softmax), node names input, conv, bn, relu, pool, drop, dense, its
 * parameters drawn from seed (variances positive). */
struct cn_graph *cn_test_small_cnn(uint64_t seed);
/* Runs fn(ctx, rank, group) on `size` threads (at most CN_TEST_MAX_RANKS), each a rank of one
 * in-process group standing in for an mpirun job: sum (floats or doubles, added in rank order),
 * broadcast and gather meet at barriers. Returns when every rank has. */
enum { CN_TEST_MAX_RANKS = 4 };
void cn_test_run_ranks(int size, void (*fn)(void *ctx, int rank, cn_group *group), void *ctx);

#endif
