/* libFuzzer target for augmentation: the bytes give a small image and a cn_transform (or a
 * cn_augment and a seed); any values must give an image or a clean CN_ERR_ARG, never a read or
 * write out of bounds. No corpus is needed:
 *   ./fuzz_transform -max_len=4096 -rss_limit_mb=1024 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/image.h"

/* Takes n bytes from the input (zeros past its end). */
static void take(const uint8_t **data, size_t *size, void *out, size_t n) {
  size_t k = n < *size ? n : *size;
  memset(out, 0, n);
  memcpy(out, *data, k);
  *data += k, *size -= k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t mode_and_size[3];
  take(&data, &size, mode_and_size, sizeof mode_and_size);
  cn_image img = {1 + mode_and_size[1] % 48, 1 + mode_and_size[2] % 48, NULL};
  img.pixels = malloc((size_t)img.width * img.height * 3);
  if (!img.pixels) return 0;
  take(&data, &size, img.pixels, (size_t)img.width * img.height * 3 / 4); /* the rest zero */
  cn_image out = {0};
  if (mode_and_size[0] & 1) {
    cn_transform t;
    take(&data, &size, &t, sizeof t);
    /* output sizes up to the library's pixel cap are valid but slow to fuzz: keep them small */
    t.out_width %= 64, t.out_height %= 64;
    if (cn_image_transform(&img, &t, &out) == CN_OK) {
      volatile uint8_t sink = out.pixels[(size_t)out.width * out.height * 3 - 1];
      (void)sink;
    }
  } else {
    cn_augment a;
    uint64_t seed;
    take(&data, &size, &a, sizeof a);
    take(&data, &size, &seed, sizeof seed);
    a.crop_width %= 64, a.crop_height %= 64;
    if (cn_image_augment(&img, &a, seed, &out) == CN_OK) {
      volatile uint8_t sink = out.pixels[(size_t)out.width * out.height * 3 - 1];
      (void)sink;
    }
  }
  cn_image_free(&out);
  free(img.pixels);
  return 0;
}
