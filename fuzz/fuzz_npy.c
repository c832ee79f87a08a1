/* libFuzzer target for cn_npy_read. The reader takes a path, so each input is written to one
 * temporary file per process first. Build: cmake -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang
 * -DCN_NATIVE=OFF; run: ./fuzz_npy -max_len=4096 corpus/ */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convnet/io.h"

/* The library is built without coverage instrumentation (only this target gets
 * -fsanitize=fuzzer), so the reader under test is compiled into the target itself; the linker
 * then takes these definitions and not the archive's npy.o. */
#include "../src/io/npy.c"

static char fuzz_path[64];

static void remove_fuzz_file(void) {
  unlink(fuzz_path);
}

static int write_input(const uint8_t *data, size_t size) {
  if (!fuzz_path[0]) {
    snprintf(fuzz_path, sizeof fuzz_path, "/tmp/fuzz_npy_XXXXXX");
    int fd = mkstemp(fuzz_path);
    if (fd < 0) return 0;
    close(fd);
    atexit(remove_fuzz_file);
  }
  FILE *f = fopen(fuzz_path, "wb");
  if (!f) return 0;
  size_t written = fwrite(data, 1, size, f);
  return fclose(f) == 0 && written == size;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!write_input(data, size)) return 0;
  cn_shape shape;
  float *values = NULL;
  if (cn_npy_read(fuzz_path, &shape, &values) == CN_OK) {
    int64_t n = cn_shape_numel(&shape);
    volatile float sink = 0;
    for (int64_t i = 0; i < n; i++) sink += values[i]; /* touch every element ASan can check */
    (void)sink;
  }
  free(values);
  return 0;
}
