/* A main for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput once on every file
 * of the folders (or files) given, in name order. Every build links each fuzz/fuzz_<t>.c with it
 * as replay_<t> and ctest runs it on fuzz/corpus/<t>, so the committed seeds, and the regression
 * inputs of past findings among them, are checked by gcc builds and the sanitizer build too. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Defined by the targets that need a set-up step (fuzz_sessions). */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: cannot open\n", path);
    return 0;
  }
  uint8_t *data = NULL;
  size_t size = 0, cap = 0;
  for (;;) {
    if (size == cap) {
      cap = cap ? 2 * cap : 4096;
      uint8_t *more = realloc(data, cap);
      if (!more) abort();
      data = more;
    }
    size_t got = fread(data + size, 1, cap - size, f);
    size += got;
    if (got == 0) break;
  }
  int ok = !ferror(f);
  fclose(f);
  if (ok)
    LLVMFuzzerTestOneInput(data, size);
  else
    fprintf(stderr, "replay: %s: read error\n", path);
  free(data);
  return ok;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir; the count in *n. 0 when the folder cannot be read. */
static int run_dir(const char *dir, int *n) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: %s: cannot open the folder\n", dir);
    return 0;
  }
  char **names = NULL;
  int count = 0, ok = 1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char **more = realloc(names, (size_t)(count + 1) * sizeof *names);
    if (!more || !(more[count] = malloc(strlen(dir) + strlen(e->d_name) + 2))) abort();
    names = more;
    sprintf(names[count++], "%s/%s", dir, e->d_name);
  }
  closedir(d);
  if (count) qsort(names, (size_t)count, sizeof *names, by_name);
  for (int i = 0; i < count; i++) {
    ok &= run_file(names[i]);
    free(names[i]);
  }
  free(names);
  *n += count;
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FOLDER_OR_FILE...\n", argv[0]);
    return 2;
  }
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  int ok = 1, n = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      ok &= run_dir(argv[i], &n);
    } else {
      ok &= run_file(argv[i]);
      n++;
    }
  }
  printf("replay: %d inputs, %s\n", n, ok ? "all ran" : "some could not be read");
  return ok && n > 0 ? 0 : 1;
}
