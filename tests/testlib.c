#include "testlib.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cn_test_passed, cn_test_failed;

int cn_test_finish(void) {
  printf("%d passed, %d failed\n", cn_test_passed, cn_test_failed);
  return cn_test_failed ? 1 : 0;
}

const char *cn_test_data(const char *relative) {
  static char path[4096];
  const char *root = getenv("CN_SHARED_DATA");
  if (!root) root = "../shared/data";
  snprintf(path, sizeof path, "%s/%s", root, relative);
  return access(path, R_OK) == 0 ? path : NULL;
}

void cn_test_skip(const char *why) {
  printf("SKIP: %s\n", why);
  exit(77);
}

const char *cn_test_tmpdir(void) {
  static char dir[256];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/convnet-test-XXXXXX");
    if (!mkdtemp(dir)) {
      perror("mkdtemp");
      exit(1);
    }
  }
  return dir;
}

double cn_test_max_abs_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > worst || d != d) worst = d != d ? INFINITY : d;
  }
  return worst;
}

cn_shape cn_test_shape(int rank, ...) {
  cn_shape s = {.rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank && i < CN_MAX_RANK; i++) s.dim[i] = va_arg(ap, int);
  va_end(ap);
  return s;
}
