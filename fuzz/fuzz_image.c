/* libFuzzer target: any bytes through cn_image_decode must end in a clean status, never a crash,
 * leak or unbounded allocation. A decoded image is also resized once, small, to exercise the
 * resize paths on odd shapes. */
#include <stddef.h>
#include <stdint.h>

#include "convnet/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cn_image img;
  if (cn_image_decode(data, size, "fuzz", &img) != CN_OK) return 0;
  cn_image small;
  cn_resize policy = (cn_resize)(size % CN_RESIZE_COUNT);
  if (cn_image_resize(&img, 7, 5, policy, &small) == CN_OK) cn_image_free(&small);
  cn_image_free(&img);
  return 0;
}
