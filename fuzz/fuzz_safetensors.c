/* libFuzzer target for the safetensors reader and the .cnm model reader behind it: each input is
 * opened from memory as a safetensors file; when that succeeds, every tensor is read and the
 * file is rebuilt as a model, which runs once on zeros when its input is small. Build: cmake
 * -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF; seeds: .cnm files of small models and
 * the files tests/test_safetensors.c writes, e.g.
 *   ./fuzz_safetensors -max_len=65536 corpus/ */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/native/internal.h"
#include "io/native/safetensors.h"

/* Largest input the target runs, in floats (keeps each execution fast). */
enum { MAX_RUN_FLOATS = 1 << 14 };

static void run_once(cn_model *m) {
  cn_shape in = cn_model_input_shape(m), out = cn_model_output_shape(m);
  int64_t n_in = cn_shape_numel(&in), n_out = cn_shape_numel(&out);
  if (cn_model_input_count(m) != 1 || cn_model_output_count(m) != 1 || n_in < 1 ||
      n_in > MAX_RUN_FLOATS || n_out < 1 || n_out > 16 * MAX_RUN_FLOATS)
    return;
  float *x = calloc((size_t)n_in, sizeof *x), *y = malloc((size_t)n_out * sizeof *y);
  if (x && y) cn_model_forward(m, 1, x, y);
  free(x);
  free(y);
}

/* Touches every byte of every tensor, so ASan checks the offsets the reader accepted. */
static void read_all(const cn_safetensors *f) {
  volatile unsigned char sink = 0;
  for (int i = 0; i < cn_safetensors_count(f); i++) {
    const cn_st_tensor *t = cn_safetensors_at(f, i);
    for (size_t b = 0; b < t->bytes; b++) sink ^= ((const unsigned char *)t->data)[b];
    if (cn_safetensors_find(f, t->name) == NULL) abort();
  }
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn_safetensors *f = NULL;
  if (cn_safetensors_open_memory(data, size, "fuzz", &f) != CN_OK) return 0;
  read_all(f);
  cn_model *m = NULL;
  if (cn_native_read(f, CN_NATIVE_FORMAT, 0, &m) == CN_OK) {
    run_once(m);
    cn_model_free(m);
  }
  cn_safetensors_close(f);
  return 0;
}
