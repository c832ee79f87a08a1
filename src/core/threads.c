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

/* About 0.2 ms of spinning (a `pause` per turn) before an idle thread sleeps: long enough to span
 * the gaps between one layer's parallel region and the next, which waking a sleeping thread
 * cost a MobileNet fine-tuning step 15-40 % (5.7-9.3 ms against 4.7-5.1), short enough that on
 * a busy machine a waiting thread gives its core back at once (libgomp's default spins 30x
 * longer, and there made ResNet50 several times slower). */
#define SPIN_COUNT "10000"

void cn_prefer_passive_waiting(char **argv) {
  if (!argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", SPIN_COUNT, 0) != 0) return;
  execv("/proc/self/exe", argv);
}
