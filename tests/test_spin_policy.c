/* cn_prefer_passive_waiting: the spin it chooses for idle OpenMP threads. The test runs itself
 * as a child ("child" as argv[1]), which calls it and prints the GOMP_SPINCOUNT it runs with:
 * a value set by the user stays, OMP_WAIT_POLICY or valgrind leave the spin alone, otherwise the
 * long spin or the short one, and the short one while other processes keep the cores busy. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convnet/core.h"
#include "testlib.h"

static int child(char **argv) {
  cn_prefer_passive_waiting(argv);
  const char *spin = getenv("GOMP_SPINCOUNT");
  printf("%s\n", spin ? spin : "unset");
  return 0;
}

/* Runs this program as a child with `set` (NAME=VALUE or NULL) added to the environment and
 * both wait variables otherwise removed; its output's first line into out. */
static void run_child(const char *self, const char *set, char *out, size_t size) {
  int fds[2];
  out[0] = '\0';
  if (pipe(fds) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    freopen("/dev/null", "w", stderr); /* the loader's note on a preload it skips */
    unsetenv("GOMP_SPINCOUNT");
    unsetenv("OMP_WAIT_POLICY");
    if (set) putenv((char *)set);
    execl(self, self, "child", (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  if (f && !fgets(out, (int)size, f)) out[0] = '\0';
  if (f) fclose(f);
  waitpid(pid, NULL, 0);
  out[strcspn(out, "\n")] = '\0';
}

enum { BUSY = 3 };

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "child") == 0) return child(argv);
  char self[4096], out[64];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(len > 0);
  if (len <= 0) return cn_test_finish();
  self[len] = '\0';

  run_child(self, "GOMP_SPINCOUNT=123", out, sizeof out);
  CHECK(strcmp(out, "123") == 0);
  run_child(self, "OMP_WAIT_POLICY=passive", out, sizeof out);
  CHECK(strcmp(out, "unset") == 0);
  /* under valgrind (its preload, here a name the loader skips): no re-execution, which would
   * leave valgrind's tool and run the program outside it */
  run_child(self, "LD_PRELOAD=/nonexistent/vgpreload_core-amd64-linux.so", out, sizeof out);
  CHECK(strcmp(out, "unset") == 0);
  run_child(self, NULL, out, sizeof out);
  CHECK(strcmp(out, "1000000") == 0 || strcmp(out, "10000") == 0);

  pid_t busy[BUSY];
  for (int i = 0; i < BUSY; i++) {
    busy[i] = fork();
    if (busy[i] == 0)
      for (volatile unsigned long spin = 0;; spin++) {
      }
  }
  usleep(20000); /* scheduled and runnable */
  run_child(self, NULL, out, sizeof out);
  CHECK(strcmp(out, "10000") == 0);
  for (int i = 0; i < BUSY; i++) {
    kill(busy[i], SIGKILL);
    waitpid(busy[i], NULL, 0);
  }
  return cn_test_finish();
}
