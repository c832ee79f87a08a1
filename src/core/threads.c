/* One thread count for the whole library: OpenMP loops and OpenBLAS (built on OpenMP) share it. */
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

#include "convnet/core.h"

void openblas_set_num_threads(int n);

static int thread_count;

void cn_set_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  thread_count = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cn_get_threads(void) {
  if (thread_count == 0) cn_set_threads(0);
  return thread_count;
}

void cn_prefer_passive_waiting(char **argv) {
  if (!argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 0) != 0) return;
  execv("/proc/self/exe", argv);
}
