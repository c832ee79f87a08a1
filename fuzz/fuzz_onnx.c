/* libFuzzer target for the ONNX importer: each input is parsed as a model from memory and, when
 * it loads, run once on zeros (small inputs only), so that shape inference and the converted
 * graph are exercised too. Build: cmake -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF;
 * run with the ONNX node tests as seeds, e.g.
 *   mkdir corpus && cp ../shared/data/onnx/node/test_* /model.onnx ... (one file per test)
 *   ./fuzz_onnx -max_len=65536 corpus/ */
#include <stdint.h>
#include <stdlib.h>

#include "convnet/model.h"
#define CN_ONNX_ENTRY_ONLY
#include "io/onnx/internal.h"

/* Largest input tensor the target runs, in floats (keeps each execution fast). */
enum { MAX_RUN_FLOATS = 1 << 16 };

static void run_once(cn_model *m) {
  int n_in = cn_model_input_count(m), n_out = cn_model_output_count(m);
  const float *xs[8] = {0};
  float *ys[8] = {0};
  int ok = n_in <= 8 && n_out <= 8;
  for (int i = 0; ok && i < n_in; i++) {
    cn_shape s = cn_model_input_shape_at(m, i);
    int64_t n = cn_shape_numel(&s);
    ok = n > 0 && n <= MAX_RUN_FLOATS && (xs[i] = calloc((size_t)n, sizeof(float)));
  }
  for (int o = 0; ok && o < n_out; o++) {
    cn_shape s = cn_model_output_shape_at(m, o);
    int64_t n = cn_shape_numel(&s);
    ok = n > 0 && n <= 16 * MAX_RUN_FLOATS && (ys[o] = malloc((size_t)n * sizeof(float)));
  }
  if (ok) cn_model_forward_multi(m, 1, xs, ys);
  for (int i = 0; i < 8; i++) {
    free((void *)xs[i]);
    free(ys[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn_model *m = NULL;
  if (cn_onnx_load_buffer(data, size, "fuzz.onnx", &m) == CN_OK) run_once(m);
  cn_model_free(m);
  return 0;
}
