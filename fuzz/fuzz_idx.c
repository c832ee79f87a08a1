/* libFuzzer target for the IDX reader (MNIST's format, plain or gzip): any bytes must give values
 * or a clean error, with memory bounded by the bytes decoded. Seeds: the gzip files under
 * ../shared/data/mnist and ../shared/data/fashion-mnist (labels are small), and their
 * decompressed heads, e.g.
 *   mkdir corpus && cp ../shared/data/mnist/t10k-labels-idx1-ubyte.gz corpus/
 *   ./fuzz_idx -max_len=65536 -rss_limit_mb=1024 corpus/ */
#include <stdint.h>
#include <stdlib.h>

#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn_shape shape;
  float *values = NULL;
  if (cn_idx_read_memory(data, size, "fuzz.idx", &shape, &values) == CN_OK) {
    volatile float sink = values[cn_shape_numel(&shape) - 1];
    (void)sink;
  }
  free(values);
  return 0;
}
