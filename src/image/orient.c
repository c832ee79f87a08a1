/* EXIF orientation, applied as PIL's ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip,
 * 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"

/* Source pixel (sx, sy) for destination (x, y); w, h are the source sizes. */
static void source_of(int orientation, int x, int y, int w, int h, int *sx, int *sy) {
  switch (orientation) {
  case 2:
    *sx = w - 1 - x, *sy = y;
    break;
  case 3:
    *sx = w - 1 - x, *sy = h - 1 - y;
    break;
  case 4:
    *sx = x, *sy = h - 1 - y;
    break;
  case 5:
    *sx = y, *sy = x;
    break;
  case 6:
    *sx = y, *sy = h - 1 - x;
    break;
  case 7:
    *sx = w - 1 - y, *sy = h - 1 - x;
    break;
  case 8:
    *sx = w - 1 - y, *sy = x;
    break;
  default:
    *sx = x, *sy = y;
    break;
  }
}

cn_status cn_image_orient(cn_image *image, int orientation) {
  if (orientation < 2 || orientation > 8) return CN_OK;
  int w = image->width, h = image->height;
  int swap = orientation >= 5;
  int ow = swap ? h : w, oh = swap ? w : h;
  uint8_t *rotated = malloc((size_t)w * h * 3);
  if (!rotated) return cn_fail(CN_ERR_NOMEM, "no memory to rotate a %dx%d image", w, h);
  for (int y = 0; y < oh; y++) {
    for (int x = 0; x < ow; x++) {
      int sx, sy;
      source_of(orientation, x, y, w, h, &sx, &sy);
      memcpy(rotated + ((size_t)y * ow + x) * 3, image->pixels + ((size_t)sy * w + sx) * 3, 3);
    }
  }
  free(image->pixels);
  image->pixels = rotated;
  image->width = ow;
  image->height = oh;
  return CN_OK;
}
