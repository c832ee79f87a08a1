/* libFuzzer target for the Keras loaders: each input is written to a temporary file and given to
 * cn_model_load (a full-model .h5, or model JSON when it starts with '{') and to
 * cn_model_load_weights on a small Conv2D + BatchNormalization + Dense model.
 * Build: cmake -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF; run with a seed corpus of
 * small Keras files, e.g. ./fuzz_keras_h5 -max_len=65536 corpus/ (HDF5 files are sparse: seeds
 * matter far more than for text formats).
 * libhdf5 runs in this process (CONVNET_H5_INPROCESS=1), not in the loaders' isolated reader: the
 * target is there to find bugs in libhdf5 and in our parsing, which a child process would hide.
 * With CN_FUZZ_H5_CHILD=1 it goes through the isolated reader instead, as convnet's users do
 * (known libhdf5 bugs then end in the child; slower, one fork per load). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convnet/model.h"

static const char small_model_json[] =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"small\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 6, 6, 2], "
    "\"name\": \"in\"}},"
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv\", \"filters\": 3, "
    "\"kernel_size\": [3, 3], \"padding\": \"same\", \"activation\": \"relu\"}},"
    "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"axis\": -1}},"
    "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2}}]}}";

static char fuzz_path[64], json_path[64];
static cn_model *small_model;

static void cleanup(void) {
  unlink(fuzz_path);
  unlink(json_path);
  cn_model_free(small_model);
}

static int make_temp(char *path, const char *pattern) {
  snprintf(path, 64, "%s", pattern);
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

static int write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  size_t written = fwrite(data, 1, size, f);
  return fclose(f) == 0 && written == size;
}

static int setup(void) {
  if (small_model) return 1;
  const char *child = getenv("CN_FUZZ_H5_CHILD");
  if (!child || strcmp(child, "1") != 0) setenv("CONVNET_H5_INPROCESS", "1", 1);
  if (!make_temp(fuzz_path, "/tmp/fuzz_keras_XXXXXX") ||
      !make_temp(json_path, "/tmp/fuzz_keras_json_XXXXXX"))
    return 0;
  atexit(cleanup);
  if (!write_file(json_path, small_model_json, sizeof small_model_json - 1)) return 0;
  return cn_model_load(json_path, &small_model) == CN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!setup()) abort(); /* the harness itself is broken: say so loudly */
  if (!write_file(fuzz_path, data, size)) return 0;
  cn_model *m = NULL;
  if (cn_model_load(fuzz_path, &m) == CN_OK) cn_model_free(m);
  cn_model_load_weights(small_model, fuzz_path);
  return 0;
}
