/* One thread count for the whole library: OpenMP loops and OpenBLAS (built on OpenMP) share it. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* How long an idle thread spins before it sleeps (GOMP_SPINCOUNT turns of a pause: 11 ns each
 * on the Intel Xeon of docs/bench.md, about 20 on AMD Zen 4). With nothing else runnable, long
 * (about 11 ms there): a worker that sleeps between two layers costs a wake-up, and in a virtual
 * machine under outside load the wake-ups made ResNet50 at batch 1 1.2x slower (41.4 against
 * 34.3 ms; ONNX Runtime's workers spin). With other runnable threads, short (about 0.1 ms): the
 * spinning would take the cores the working threads need (4 busy processes on 2 cores: ResNet50
 * at batch 1 145 ms at 10,000 turns, 450 ms at 100,000; libgomp's default 300,000 took seconds),
 * yet it spans the gaps between layers that sleeping at once pays for (a MobileNet fine-tuning
 * step 15-40 % slower with OMP_WAIT_POLICY=passive). */
#define IDLE_SPIN "1000000"
#define BUSY_SPIN "10000"

/* The fewest runnable threads besides the caller over up to five readings of /proc/loadavg 2 ms
 * apart (its fourth field, running/total, counts the reader), so that a process that happens to
 * run at the first reading does not count; -1 when it cannot be read. */
static int others_runnable(void) {
  int fewest = -1;
  for (int i = 0; i < 5 && fewest != 0; i++) {
    if (i > 0) usleep(2000);
    FILE *f = fopen("/proc/loadavg", "r");
    int running = 0, ok = f && fscanf(f, "%*f %*f %*f %d/", &running) == 1;
    if (f) fclose(f);
    if (!ok || running < 1) return -1;
    if (fewest < 0 || running - 1 < fewest) fewest = running - 1;
  }
  return fewest;
}

/* Whether the program runs under valgrind, whose preloaded libraries name themselves so: there
 * /proc/self/exe is valgrind's tool, and executing it would not run this program under the tool
 * again. */
static int under_valgrind(void) {
  const char *preload = getenv("LD_PRELOAD");
  return preload && strstr(preload, "/vgpreload_");
}

void cn_prefer_passive_waiting(char **argv) {
  if (!argv || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || under_valgrind()) return;
  const char *spin = others_runnable() == 0 ? IDLE_SPIN : BUSY_SPIN;
  if (setenv("GOMP_SPINCOUNT", spin, 0) != 0) return;
  execv("/proc/self/exe", argv);
}
