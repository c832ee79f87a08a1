/* Training augmentation in the manner of Keras' ImageDataGenerator: flip, rotation, shifts, zoom
 * and brightness. Geometry is one affine map from output to source pixels, sampled bilinearly
 * with edge clamping (fill_mode "nearest"), so the whole change is a single pass over the output.
 * Without geometry the pass is an exact copy (mirrored and brightness-scaled as drawn). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "image/image_internal.h"

/* The random values of one image, drawn in a fixed order whatever is enabled, so that turning
 * one option on does not change the draws of the others. */
typedef struct draw {
  int flip;
  double angle, tx, ty, zx, zy; /* radians; pixels; scales */
  float brightness;             /* 1: unchanged */
} draw;

static double symmetric(cn_rng *r, double range) {
  return (2.0 * (double)cn_rng_float(r) - 1.0) * range;
}

static draw draw_params(const cn_augment *a, int width, int height, uint64_t seed) {
  cn_rng r = cn_rng_make(cn_mix64(seed));
  draw d;
  d.flip = cn_rng_float(&r) < 0.5f && a->horizontal_flip;
  d.angle = symmetric(&r, a->rotation_range) * (3.14159265358979323846 / 180.0);
  d.tx = symmetric(&r, a->width_shift_range) * width;
  d.ty = symmetric(&r, a->height_shift_range) * height;
  d.zx = 1.0 + symmetric(&r, a->zoom_range);
  d.zy = 1.0 + symmetric(&r, a->zoom_range);
  float u = cn_rng_float(&r);
  float lo = a->brightness_range[0], hi = a->brightness_range[1];
  d.brightness = (lo == 0 && hi == 0) ? 1.0f : lo + u * (hi - lo);
  return d;
}

static int has_geometry(const cn_augment *a) {
  return a->rotation_range != 0 || a->width_shift_range != 0 || a->height_shift_range != 0 ||
         a->zoom_range != 0;
}

int cn_augment_active(const cn_augment *a) {
  return a && (a->horizontal_flip || has_geometry(a) || a->brightness_range[0] != 0 ||
               a->brightness_range[1] != 0);
}

cn_status cn_augment_check(const cn_augment *a) {
  if (!a) return cn_fail(CN_ERR_ARG, "augment: no options given");
  if (!(a->rotation_range >= 0 && a->rotation_range <= 360))
    return cn_fail(CN_ERR_ARG, "augment: rotation range %g is not in [0, 360] degrees",
                   a->rotation_range);
  const float fractions[3] = {a->width_shift_range, a->height_shift_range, a->zoom_range};
  static const char *const names[3] = {"width shift", "height shift", "zoom"};
  for (int i = 0; i < 3; i++)
    if (!(fractions[i] >= 0 && fractions[i] < 1))
      return cn_fail(CN_ERR_ARG, "augment: %s range %g is not in [0, 1)", names[i], fractions[i]);
  float lo = a->brightness_range[0], hi = a->brightness_range[1];
  if (!(lo >= 0 && hi >= lo && hi <= 100))
    return cn_fail(CN_ERR_ARG, "augment: brightness range [%g, %g] is not 0 <= lo <= hi <= 100", lo,
                   hi);
  return CN_OK;
}

static uint8_t clamp_u8(float v) {
  return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
}

/* Flip and brightness only: every output pixel is one source pixel. */
static void copy_pass(const cn_image *src, const draw *d, cn_image *dst) {
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = clamp_u8((float)v * d->brightness);
  int w = src->width;
  for (int y = 0; y < src->height; y++) {
    const uint8_t *in = src->pixels + (size_t)y * w * 3;
    uint8_t *out = dst->pixels + (size_t)y * w * 3;
    for (int x = 0; x < w; x++) {
      const uint8_t *p = in + 3 * (size_t)(d->flip ? w - 1 - x : x);
      out[3 * x] = lut[p[0]], out[3 * x + 1] = lut[p[1]], out[3 * x + 2] = lut[p[2]];
    }
  }
}

/* Source coordinates in 16.16 fixed point: bilinear weights of 8 bits are plenty for
 * augmentation and keep the inner loop in integers. */
enum { FIX_SHIFT = 16 };

/* Bilinear sample at fixed-point (sx, sy), both already clamped to the image, so that edge
 * pixels extend outwards (fill_mode "nearest"); lut applies the brightness. */
static void sample(const cn_image *src, int64_t sx, int64_t sy, const uint8_t *lut, uint8_t *out) {
  int x0 = (int)(sx >> FIX_SHIFT), y0 = (int)(sy >> FIX_SHIFT);
  int x1 = x0 + (x0 < src->width - 1), y1 = y0 + (y0 < src->height - 1);
  uint32_t fx = (uint32_t)(sx >> 8) & 255, fy = (uint32_t)(sy >> 8) & 255;
  size_t row0 = (size_t)y0 * src->width, row1 = (size_t)y1 * src->width;
  const uint8_t *a = src->pixels + 3 * (row0 + x0), *b = src->pixels + 3 * (row0 + x1);
  const uint8_t *c = src->pixels + 3 * (row1 + x0), *e = src->pixels + 3 * (row1 + x1);
  for (int k = 0; k < 3; k++) {
    uint32_t top = a[k] * (256 - fx) + b[k] * fx, bottom = c[k] * (256 - fx) + e[k] * fx;
    out[k] = lut[(top * (256 - fy) + bottom * fy + 32768) >> 16];
  }
}

/* Output (x, y) samples source R(angle) Z (p - centre) + centre + shift, with p mirrored first
 * when flipping (Keras flips the transformed image). */
static void warp_pass(const cn_image *src, const draw *d, cn_image *dst) {
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = clamp_u8((float)v * d->brightness);
  int w = src->width, h = src->height;
  double cx = (w - 1) * 0.5, cy = (h - 1) * 0.5, c = cos(d->angle), s = sin(d->angle);
  double mirror = d->flip ? -1.0 : 1.0, one = 1 << FIX_SHIFT;
  /* 64 bits: a 2^28-pixel-wide image shifted by 16 bits overflows 32 */
  int64_t max_x = (int64_t)(w - 1) << FIX_SHIFT, max_y = (int64_t)(h - 1) << FIX_SHIFT;
  /* source = [a00 a01; a10 a11] (x - cx, y - cy) + (cx + tx, cy + ty), x mirrored */
  double a00 = c * d->zx * mirror, a01 = -s * d->zy, a10 = s * d->zx * mirror, a11 = c * d->zy;
  for (int y = 0; y < h; y++) {
    double v = y - cy;
    double bx = a01 * v + cx + d->tx - a00 * cx, by = a11 * v + cy + d->ty - a10 * cx;
    uint8_t *out = dst->pixels + (size_t)y * w * 3;
    /* Coordinates step along the row in fixed point: the rounded step drifts by at most
     * 2^-17 pixel per pixel, a few hundredths of a pixel across a photo. */
    int64_t sx = (int64_t)llround(bx * one), sy = (int64_t)llround(by * one);
    int64_t dx = (int64_t)llround(a00 * one), dy = (int64_t)llround(a10 * one);
    for (int x = 0; x < w; x++, sx += dx, sy += dy) {
      int64_t cxf = sx <= 0 ? 0 : sx >= max_x ? max_x : sx;
      int64_t cyf = sy <= 0 ? 0 : sy >= max_y ? max_y : sy;
      sample(src, cxf, cyf, lut, out + 3 * x);
    }
  }
}

cn_status cn_image_augment(const cn_image *src, const cn_augment *a, uint64_t seed, cn_image *dst) {
  if (!src || !src->pixels || !dst) return cn_fail(CN_ERR_ARG, "augment: no image given");
  cn_status st = cn_augment_check(a);
  if (st != CN_OK) return st;
  cn_image out = {0};
  if ((st = cn_image_alloc(&out, src->width, src->height, "augment")) != CN_OK) return st;
  draw d = draw_params(a, src->width, src->height, seed);
  if (has_geometry(a))
    warp_pass(src, &d, &out);
  else
    copy_pass(src, &d, &out);
  *dst = out;
  return CN_OK;
}
