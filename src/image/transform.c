/* One fixed change of an image (cn_transform): crop, affine warp, then the pixel changes of
 * transform_pixels.c. The warp follows Keras' ImageDataGenerator.apply_transform: the map from
 * output to source pixels is R(theta) T(tx, ty) Sh(shear) Z(zx, zy) about the image centre,
 * sampled as scipy.ndimage.affine_transform does with order=1 (bilinear) and its fill modes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"
#include "image/transform_internal.h"

static const char *const fill_names[CN_FILL_COUNT] = {
    [CN_FILL_NEAREST] = "nearest",
    [CN_FILL_REFLECT] = "reflect",
    [CN_FILL_CONSTANT] = "constant",
};

const char *cn_fill_name(cn_fill fill) {
  return (unsigned)fill < CN_FILL_COUNT ? fill_names[fill] : "unknown";
}

cn_status cn_fill_parse(const char *name, cn_fill *out) {
  for (int i = 0; name && i < CN_FILL_COUNT; i++) {
    if (strcmp(name, fill_names[i]) == 0) {
      *out = (cn_fill)i;
      return CN_OK;
    }
  }
  return cn_fail(CN_ERR_ARG, "unknown fill mode '%s' (nearest, reflect, constant)",
                 name ? name : "(null)");
}

cn_transform cn_transform_identity(void) {
  cn_transform t;
  memset(&t, 0, sizeof t);
  t.crop_resize = CN_RESIZE_BILINEAR;
  t.zx = t.zy = 1;
  t.brightness = t.contrast = 1;
  return t;
}

/* ---- checks ------------------------------------------------------------------------------- */

static int in_range(double v, double lo, double hi) {
  return v >= lo && v <= hi; /* false for NaN */
}

static cn_status check_crop(const cn_transform *t, int width, int height) {
  if (t->crop_width || t->crop_height) {
    int64_t right = (int64_t)t->crop_x + t->crop_width;
    int64_t bottom = (int64_t)t->crop_y + t->crop_height;
    if (t->crop_width <= 0 || t->crop_height <= 0 || t->crop_x < 0 || t->crop_y < 0 ||
        right > width || bottom > height)
      return cn_fail(CN_ERR_ARG,
                     "transform: crop box %dx%d at (%d, %d) is not inside the %dx%d image",
                     t->crop_width, t->crop_height, t->crop_x, t->crop_y, width, height);
  }
  if ((t->out_width || t->out_height) &&
      !(t->out_width > 0 && t->out_height > 0 && t->out_width <= CN_TRANSFORM_MAX_SIDE &&
        t->out_height <= CN_TRANSFORM_MAX_SIDE))
    return cn_fail(CN_ERR_ARG, "transform: output size %dx%d is not in 1..%d", t->out_width,
                   t->out_height, CN_TRANSFORM_MAX_SIDE);
  if ((unsigned)t->crop_resize >= CN_RESIZE_COUNT)
    return cn_fail(CN_ERR_ARG, "transform: unknown crop resize policy %d", (int)t->crop_resize);
  return CN_OK;
}

/* Bounds keep every source coordinate far inside what a double holds exactly enough and an
 * int64 holds at all. */
static cn_status check_geometry(const cn_transform *t) {
  if (!in_range(t->theta, -3600, 3600) || !in_range(t->shear, -89, 89))
    return cn_fail(CN_ERR_ARG, "transform: rotation %g or shear %g degrees out of range", t->theta,
                   t->shear);
  if (!in_range(t->tx, -1e7, 1e7) || !in_range(t->ty, -1e7, 1e7))
    return cn_fail(CN_ERR_ARG, "transform: shift (%g, %g) out of range", t->tx, t->ty);
  if (!in_range(t->zx, 0.01, 100) || !in_range(t->zy, 0.01, 100))
    return cn_fail(CN_ERR_ARG, "transform: zoom (%g, %g) is not in [0.01, 100]", t->zx, t->zy);
  if ((unsigned)t->fill >= CN_FILL_COUNT)
    return cn_fail(CN_ERR_ARG, "transform: unknown fill mode %d", (int)t->fill);
  if (!in_range(t->cval, 0, 255))
    return cn_fail(CN_ERR_ARG, "transform: cval %g is not in [0, 255]", t->cval);
  return CN_OK;
}

static cn_status check_pixels(const cn_transform *t) {
  for (int c = 0; c < 3; c++)
    if (!in_range(t->channel_shift[c], -255, 255))
      return cn_fail(CN_ERR_ARG, "transform: channel shift %g is not in [-255, 255]",
                     t->channel_shift[c]);
  if (!in_range(t->brightness, 0, 100) || !in_range(t->contrast, 0, 100))
    return cn_fail(CN_ERR_ARG, "transform: brightness %g or contrast %g is not in [0, 100]",
                   t->brightness, t->contrast);
  if (!in_range(t->hue, -1, 1))
    return cn_fail(CN_ERR_ARG, "transform: hue %g is not in [-1, 1] turns", t->hue);
  if (!in_range(t->blur_sigma, 0, CN_TRANSFORM_MAX_SIGMA))
    return cn_fail(CN_ERR_ARG, "transform: blur sigma %g is not in [0, %d]", t->blur_sigma,
                   CN_TRANSFORM_MAX_SIGMA);
  return CN_OK;
}

cn_status cn_transform_check(const cn_transform *t, int width, int height) {
  if (!t) return cn_fail(CN_ERR_ARG, "transform: no parameters given");
  cn_status st = check_crop(t, width, height);
  if (st == CN_OK) st = check_geometry(t);
  if (st == CN_OK) st = check_pixels(t);
  return st;
}

/* ---- crop --------------------------------------------------------------------------------- */

/* The crop box copied out (the whole image when none), resized when an output size is set. */
static cn_status crop_stage(const cn_image *src, const cn_transform *t, cn_image *out) {
  int has_box = t->crop_width > 0;
  int x = has_box ? t->crop_x : 0, y = has_box ? t->crop_y : 0;
  int w = has_box ? t->crop_width : src->width, h = has_box ? t->crop_height : src->height;
  cn_image box = {0};
  cn_status st = cn_image_alloc(&box, w, h, "transform");
  if (st != CN_OK) return st;
  for (int row = 0; row < h; row++)
    memcpy(box.pixels + (size_t)row * w * 3, src->pixels + ((size_t)(y + row) * src->width + x) * 3,
           (size_t)w * 3);
  if (!t->out_width || (t->out_width == w && t->out_height == h)) {
    *out = box;
    return CN_OK;
  }
  st = cn_image_resize(&box, t->out_width, t->out_height, t->crop_resize, out);
  cn_image_free(&box);
  return st;
}

/* ---- affine warp -------------------------------------------------------------------------- */

static int has_geometry(const cn_transform *t) {
  return t->theta != 0 || t->tx != 0 || t->ty != 0 || t->shear != 0 || t->zx != 1 || t->zy != 1;
}

/* source = m[0..1][0..1] (x - cx, y - cy) + (m[0][2], m[1][2]) for output pixel (x, y). */
typedef struct affine {
  double m[2][3];
  double cx, cy;
} affine;

/* Keras composes M = R T Sh Z, so the shift is rotated with the image; its Sh is
 * [[1, -sin s], [0, cos s]] on (x, y). */
static affine make_affine(const cn_transform *t, int width, int height) {
  const double deg = 3.14159265358979323846 / 180.0;
  double c = cos(t->theta * deg), s = sin(t->theta * deg);
  double shx = -sin(t->shear * deg), shy = cos(t->shear * deg);
  /* R Sh = [[c, c shx - s shy], [s, s shx + c shy]], then Z scales the columns */
  double l00 = c * t->zx, l01 = (c * shx - s * shy) * t->zy;
  double l10 = s * t->zx, l11 = (s * shx + c * shy) * t->zy;
  affine a;
  a.cx = (width - 1) * 0.5, a.cy = (height - 1) * 0.5;
  a.m[0][0] = l00, a.m[0][1] = l01, a.m[0][2] = c * t->tx - s * t->ty + a.cx;
  a.m[1][0] = l10, a.m[1][1] = l11, a.m[1][2] = s * t->tx + c * t->ty + a.cy;
  return a;
}

/* The two source indices and the weight of the second along one axis of n pixels, for source
 * coordinate v; 0 when the sample is the constant fill. */
typedef struct tap {
  int i0, i1;
  float f;
} tap;

static int reflect_index(int64_t i, int n) {
  /* half-sample symmetric, period 2n: -1 -> 0, n -> n - 1; the common cases without a division */
  if (i >= 0 && i < n) return (int)i;
  if (i >= n && i < 2 * (int64_t)n) return (int)(2 * (int64_t)n - 1 - i);
  if (i < 0 && i >= -(int64_t)n) return (int)(-i - 1);
  int64_t period = 2 * (int64_t)n, k = i % period;
  if (k < 0) k += period;
  return (int)(k < n ? k : period - 1 - k);
}

static int axis_tap(double v, int n, cn_fill fill, tap *t) {
  if (fill == CN_FILL_CONSTANT && !(v >= 0 && v <= n - 1)) return 0;
  if (fill != CN_FILL_REFLECT) v = v < 0 ? 0 : v > n - 1 ? n - 1 : v;
  /* |v| < 2^53 by the checks; reduce it first so that the index fits an int64 comfortably */
  if (fill == CN_FILL_REFLECT && !(v > -n && v < 2.0 * n)) v = fmod(v, 2.0 * n);
  double fl = floor(v);
  int64_t i = (int64_t)fl;
  t->f = (float)(v - fl);
  if (fill == CN_FILL_REFLECT) {
    t->i0 = reflect_index(i, n), t->i1 = reflect_index(i + 1, n);
  } else {
    t->i0 = (int)i, t->i1 = (int)(i + 1 < n ? i + 1 : n - 1);
  }
  return 1;
}

static uint8_t round_u8(float v) {
  return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
}

static void sample(const cn_image *src, const tap *tx, const tap *ty, uint8_t *out) {
  const uint8_t *r0 = src->pixels + (size_t)ty->i0 * src->width * 3;
  const uint8_t *r1 = src->pixels + (size_t)ty->i1 * src->width * 3;
  const uint8_t *a = r0 + 3 * (size_t)tx->i0, *b = r0 + 3 * (size_t)tx->i1;
  const uint8_t *c = r1 + 3 * (size_t)tx->i0, *d = r1 + 3 * (size_t)tx->i1;
  float fx = tx->f, fy = ty->f;
  for (int k = 0; k < 3; k++) {
    float top = a[k] + fx * (b[k] - a[k]), bottom = c[k] + fx * (d[k] - c[k]);
    out[k] = round_u8(top + fy * (bottom - top));
  }
}

static void warp(const cn_image *src, const cn_transform *t, cn_image *dst) {
  affine a = make_affine(t, src->width, src->height);
  uint8_t fill = round_u8((float)t->cval);
  for (int y = 0; y < dst->height; y++) {
    double v = y - a.cy;
    double bx = a.m[0][1] * v + a.m[0][2], by = a.m[1][1] * v + a.m[1][2];
    uint8_t *out = dst->pixels + (size_t)y * dst->width * 3;
    for (int x = 0; x < dst->width; x++, out += 3) {
      double u = x - a.cx;
      tap tx, ty;
      if (axis_tap(bx + a.m[0][0] * u, src->width, t->fill, &tx) &&
          axis_tap(by + a.m[1][0] * u, src->height, t->fill, &ty))
        sample(src, &tx, &ty, out);
      else
        out[0] = out[1] = out[2] = fill;
    }
  }
}

/* ---- the whole change --------------------------------------------------------------------- */

/* Replaces *cur by *next (freeing the old pixels). */
static void advance(cn_image *cur, cn_image *next) {
  cn_image_free(cur);
  *cur = *next;
  memset(next, 0, sizeof *next);
}

cn_status cn_image_transform(const cn_image *src, const cn_transform *t, cn_image *dst) {
  if (!src || !src->pixels || src->width <= 0 || src->height <= 0 || !dst)
    return cn_fail(CN_ERR_ARG, "transform: no image given");
  cn_status st = cn_transform_check(t, src->width, src->height);
  cn_image cur = {0}, next = {0};
  if (st == CN_OK) st = crop_stage(src, t, &cur);
  if (st == CN_OK && has_geometry(t)) {
    st = cn_image_alloc(&next, cur.width, cur.height, "transform");
    if (st == CN_OK) warp(&cur, t, &next), advance(&cur, &next);
  }
  if (st == CN_OK) cn_transform_pixels(&cur, t);
  if (st == CN_OK && t->blur_sigma > 0) {
    st = cn_image_blur(&cur, t->blur_sigma, &next);
    if (st == CN_OK) advance(&cur, &next);
  }
  if (st != CN_OK) {
    cn_image_free(&cur);
    return st;
  }
  *dst = cur;
  return CN_OK;
}
