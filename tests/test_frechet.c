/* cn_frechet_distance: closed-form cases and the refused inputs (the scipy comparison on random
 * and rank-deficient features is tests/oracle/test_frechet_scipy.py). */
#include <math.h>
#include <string.h>

#include "convnet/stats.h"
#include "testlib.h"

/* 1-D: a = {0, 2} (mean 1, variance 2), b = {0, 4} (mean 2, variance 8):
 * d = 1 + 2 + 8 - 2 sqrt(16) = 3. */
static void test_one_dimension(void) {
  const float a[] = {0, 2}, b[] = {0, 4};
  double d = -1;
  CHECK_OK(cn_frechet_distance(a, 2, b, 2, 1, &d));
  CHECK_NEAR(d, 3.0, 1e-12);
}

/* Independent features add: feature 0 as above (3), feature 1 equal in both sets (0). */
static void test_diagonal(void) {
  const float a[] = {0, 5, 2, 7}, b[] = {0, 5, 4, 7};
  double d = -1;
  CHECK_OK(cn_frechet_distance(a, 2, b, 2, 2, &d));
  CHECK_NEAR(d, 3.0, 1e-12);
}

/* The same set: 0; a shifted copy: the squared shift; more features than samples is fine. */
static void test_identical_and_shifted(void) {
  enum { N = 3, D = 5 };
  float a[N * D], b[N * D];
  for (int i = 0; i < N * D; i++) {
    a[i] = (float)((i * 7) % 11) - 5.0f;
    b[i] = a[i] + (i % D == 2 ? 3.0f : 0.0f);
  }
  double d = -1;
  CHECK_OK(cn_frechet_distance(a, N, a, N, D, &d));
  CHECK_NEAR(d, 0.0, 1e-9);
  CHECK_OK(cn_frechet_distance(a, N, b, N, D, &d));
  CHECK_NEAR(d, 9.0, 1e-9);
}

static int fails_naming(cn_status st, const char *word) {
  return st == CN_ERR_ARG && strstr(cn_last_error(), word) != NULL;
}

static void test_refused(void) {
  const float a[] = {0, 1, 2, 3}, one[] = {1, 2};
  float bad[] = {0, 1, 2, 3};
  double d = 0;
  CHECK(fails_naming(cn_frechet_distance(one, 1, a, 2, 2, &d), "set a has 1 samples"));
  CHECK(fails_naming(cn_frechet_distance(a, 2, one, 1, 2, &d), "set b has 1 samples"));
  CHECK(fails_naming(cn_frechet_distance(a, 2, a, 2, 0, &d), "0 features"));
  CHECK(fails_naming(cn_frechet_distance(a, 2, a, 2, -3, &d), "-3 features"));
  bad[3] = NAN;
  CHECK(fails_naming(cn_frechet_distance(a, 2, bad, 2, 2, &d), "sample 1, feature 1 is nan"));
  bad[3] = INFINITY;
  CHECK(
      fails_naming(cn_frechet_distance(bad, 2, a, 2, 2, &d), "set a: sample 1, feature 1 is inf"));
  CHECK(fails_naming(cn_frechet_distance(NULL, 2, a, 2, 2, &d), "NULL"));
  CHECK(fails_naming(cn_frechet_distance(a, 2, a, 2, 2, NULL), "NULL"));
}

int main(void) {
  test_one_dimension();
  test_diagonal();
  test_identical_and_shifted();
  test_refused();
  return cn_test_finish();
}
