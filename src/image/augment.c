/* Training augmentation: the random draw of a cn_transform from a cn_augment, then
 * cn_image_transform. Every value is drawn with a counter-based generator at a fixed index of
 * its own (draw_index), so a draw is a pure function of (seed, option, image size): the same
 * for any thread count, after a resume, and unchanged when another option is turned on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "image/image_internal.h"
#include "image/transform_internal.h"

enum { RRC_ATTEMPTS = 10 }; /* torchvision's tries at a box before its fallback */

typedef enum draw_index {
  D_HFLIP,
  D_VFLIP,
  D_ROTATION,
  D_SHIFT_X,
  D_SHIFT_Y,
  D_SHEAR,
  D_ZOOM_X,
  D_ZOOM_Y,
  D_CHANNEL_SHIFT,
  D_TINT, /* three: R, G, B */
  D_BRIGHTNESS = D_TINT + 3,
  D_CONTRAST,
  D_HUE,
  D_BLUR,
  D_CROP_X,
  D_CROP_Y,
  D_RRC /* four per attempt: area, log ratio, x, y */
} draw_index;

static double uniform(uint64_t key, uint64_t index, double lo, double hi) {
  return lo + (hi - lo) * (double)cn_rng_uniform_at(key, index);
}

/* An integer uniform in [0, n), as Keras' int(uniform(0, n)). */
static int below(uint64_t key, uint64_t index, int n) {
  int v = (int)((double)cn_rng_uniform_at(key, index) * n);
  return v < n ? v : n - 1;
}

/* ---- checks --------------------------------------------------------------------------------- */

static int in_range(float v, double lo, double hi) {
  return v >= lo && v <= hi; /* false for NaN */
}

static cn_status check_range_pair(const char *name, const float r[2], double lo, double hi) {
  if (r[0] == 0 && r[1] == 0) return CN_OK;
  if (!(in_range(r[0], lo, hi) && in_range(r[1], r[0], hi)))
    return cn_fail(CN_ERR_ARG, "augment: %s range [%g, %g] is not %g <= lo <= hi <= %g", name, r[0],
                   r[1], lo, hi);
  return CN_OK;
}

static cn_status check_geometry(const cn_augment *a) {
  if (!in_range(a->rotation_range, 0, 360))
    return cn_fail(CN_ERR_ARG, "augment: rotation range %g is not in [0, 360] degrees",
                   a->rotation_range);
  if (!in_range(a->shear_range, 0, 89))
    return cn_fail(CN_ERR_ARG, "augment: shear range %g is not in [0, 89] degrees", a->shear_range);
  const float fractions[3] = {a->width_shift_range, a->height_shift_range, a->zoom_range};
  static const char *const names[3] = {"width shift", "height shift", "zoom"};
  for (int i = 0; i < 3; i++)
    if (!(fractions[i] >= 0 && fractions[i] < 1))
      return cn_fail(CN_ERR_ARG, "augment: %s range %g is not in [0, 1)", names[i], fractions[i]);
  if ((unsigned)a->fill_mode >= CN_FILL_COUNT)
    return cn_fail(CN_ERR_ARG, "augment: unknown fill mode %d", (int)a->fill_mode);
  if (!in_range(a->cval, 0, 255))
    return cn_fail(CN_ERR_ARG, "augment: cval %g is not in [0, 255]", a->cval);
  return CN_OK;
}

static cn_status check_colour(const cn_augment *a) {
  if (!in_range(a->channel_shift_range, 0, 255) || !in_range(a->tint_range, 0, 255))
    return cn_fail(CN_ERR_ARG, "augment: channel shift %g or tint %g is not in [0, 255]",
                   a->channel_shift_range, a->tint_range);
  if (!in_range(a->hue_range, 0, 0.5))
    return cn_fail(CN_ERR_ARG, "augment: hue range %g is not in [0, 0.5] turns", a->hue_range);
  if (!in_range(a->contrast_range, 0, 1))
    return cn_fail(CN_ERR_ARG, "augment: contrast range %g is not in [0, 1]", a->contrast_range);
  cn_status st = check_range_pair("brightness", a->brightness_range, 0, 100);
  if (st == CN_OK) st = check_range_pair("blur sigma", a->blur_sigma, 0, CN_TRANSFORM_MAX_SIGMA);
  return st;
}

static cn_status check_crop(const cn_augment *a) {
  int w = a->crop_width, h = a->crop_height;
  if ((w || h) && !(w > 0 && h > 0 && w <= CN_TRANSFORM_MAX_SIDE && h <= CN_TRANSFORM_MAX_SIDE))
    return cn_fail(CN_ERR_ARG, "augment: crop size %dx%d is not in 1..%d", w, h,
                   CN_TRANSFORM_MAX_SIDE);
  if (a->crop_scale[0] == 0 && a->crop_scale[1] == 0) {
    if (a->crop_ratio[0] != 0 || a->crop_ratio[1] != 0)
      return cn_fail(CN_ERR_ARG, "augment: a crop ratio needs a crop scale range");
    return CN_OK;
  }
  if (!(a->crop_scale[0] > 0)) return cn_fail(CN_ERR_ARG, "augment: crop scale must be > 0");
  cn_status st = check_range_pair("crop scale", a->crop_scale, 0, 1);
  if (st == CN_OK && !(a->crop_ratio[0] == 0 && a->crop_ratio[1] == 0)) {
    if (!(a->crop_ratio[0] > 0)) return cn_fail(CN_ERR_ARG, "augment: crop ratio must be > 0");
    st = check_range_pair("crop ratio", a->crop_ratio, 0.01, 100);
  }
  return st;
}

cn_status cn_augment_check(const cn_augment *a) {
  if (!a) return cn_fail(CN_ERR_ARG, "augment: no options given");
  cn_status st = check_geometry(a);
  if (st == CN_OK) st = check_colour(a);
  if (st == CN_OK) st = check_crop(a);
  return st;
}

int cn_augment_active(const cn_augment *a) {
  if (!a) return 0;
  cn_augment none;
  memset(&none, 0, sizeof none);
  /* fill mode and cval alone change nothing */
  cn_augment some = *a;
  some.fill_mode = CN_FILL_NEAREST, some.cval = 0;
  return memcmp(&some, &none, sizeof none) != 0;
}

/* ---- crops ---------------------------------------------------------------------------------- */

static void set_box(cn_transform *t, int x, int y, int w, int h) {
  t->crop_x = x, t->crop_y = y, t->crop_width = w, t->crop_height = h;
}

/* Keras RandomCrop: a random box when the image is larger on both sides. Else Keras starts at the
 * corner of the centred box of the crop's aspect ratio but cuts crop_width x crop_height from
 * there, as far as the image goes, and resizes that (bilinear, as its tf resize); so do we. */
static void draw_fixed_crop(const cn_augment *a, int width, int height, uint64_t key,
                            cn_transform *t) {
  int cw = a->crop_width, ch = a->crop_height;
  if (width > cw && height > ch) {
    set_box(t, below(key, D_CROP_X, width - cw + 1), below(key, D_CROP_Y, height - ch + 1), cw, ch);
    return;
  }
  int bh = (int)((double)width * ch / cw), bw = (int)((double)height * cw / ch);
  bh = bh > height ? height : bh < 1 ? 1 : bh;
  bw = bw > width ? width : bw < 1 ? 1 : bw;
  int left = (width - bw) / 2, top = (height - bh) / 2;
  set_box(t, left, top, cw < width - left ? cw : width - left,
          ch < height - top ? ch : height - top);
  t->out_width = cw, t->out_height = ch;
  t->crop_resize = CN_RESIZE_BILINEAR;
}

/* torchvision RandomResizedCrop: up to ten tries at a box of random area and log-uniform aspect
 * ratio that fits, else the centred box of the whole image with the ratio clamped. */
static void draw_resized_crop(const cn_augment *a, int width, int height, uint64_t key,
                              cn_transform *t) {
  double lo = a->crop_ratio[0] > 0 ? a->crop_ratio[0] : 3.0 / 4;
  double hi = a->crop_ratio[1] > 0 ? a->crop_ratio[1] : 4.0 / 3;
  double area = (double)width * height;
  int found = 0;
  for (int i = 0; i < RRC_ATTEMPTS && !found; i++) {
    uint64_t at = D_RRC + 4 * (uint64_t)i;
    double target = area * uniform(key, at, a->crop_scale[0], a->crop_scale[1]);
    double ratio = exp(uniform(key, at + 1, log(lo), log(hi)));
    int w = (int)lround(sqrt(target * ratio)), h = (int)lround(sqrt(target / ratio));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      set_box(t, below(key, at + 2, width - w + 1), below(key, at + 3, height - h + 1), w, h);
      found = 1;
    }
  }
  if (!found) {
    double in_ratio = (double)width / height;
    int w = width, h = height;
    if (in_ratio < lo) h = (int)lround(w / lo);
    if (in_ratio > hi) w = (int)lround(h * hi);
    h = h < 1 ? 1 : h > height ? height : h;
    w = w < 1 ? 1 : w > width ? width : w;
    set_box(t, (width - w) / 2, (height - h) / 2, w, h);
  }
  if (a->crop_width) t->out_width = a->crop_width, t->out_height = a->crop_height;
  t->crop_resize = CN_RESIZE_PIL_BILINEAR; /* torchvision resizes with antialiasing */
}

/* ---- the draw ------------------------------------------------------------------------------- */

/* Geometry on the image as the crop leaves it, width x height. Shifts follow their names (Keras'
 * get_random_transform draws its horizontal tx from height_shift_range times the rows). */
static void draw_geometry(const cn_augment *a, int width, int height, uint64_t key,
                          cn_transform *t) {
  t->theta = uniform(key, D_ROTATION, -a->rotation_range, a->rotation_range);
  t->tx = uniform(key, D_SHIFT_X, -a->width_shift_range, a->width_shift_range) * width;
  t->ty = uniform(key, D_SHIFT_Y, -a->height_shift_range, a->height_shift_range) * height;
  t->shear = uniform(key, D_SHEAR, -a->shear_range, a->shear_range);
  t->zx = uniform(key, D_ZOOM_X, 1 - a->zoom_range, 1 + a->zoom_range);
  t->zy = uniform(key, D_ZOOM_Y, 1 - a->zoom_range, 1 + a->zoom_range);
  t->fill = a->fill_mode;
  t->cval = a->cval;
  t->flip_horizontal = a->horizontal_flip && cn_rng_uniform_at(key, D_HFLIP) < 0.5f;
  t->flip_vertical = a->vertical_flip && cn_rng_uniform_at(key, D_VFLIP) < 0.5f;
}

static void draw_colour(const cn_augment *a, uint64_t key, cn_transform *t) {
  double shared = uniform(key, D_CHANNEL_SHIFT, -a->channel_shift_range, a->channel_shift_range);
  for (int c = 0; c < 3; c++)
    t->channel_shift[c] = shared + uniform(key, D_TINT + c, -a->tint_range, a->tint_range);
  const float *b = a->brightness_range;
  t->brightness = b[0] == 0 && b[1] == 0 ? 1 : uniform(key, D_BRIGHTNESS, b[0], b[1]);
  t->contrast = uniform(key, D_CONTRAST, 1 - a->contrast_range, 1 + a->contrast_range);
  t->hue = uniform(key, D_HUE, -a->hue_range, a->hue_range);
  t->blur_sigma = uniform(key, D_BLUR, a->blur_sigma[0], a->blur_sigma[1]);
}

cn_status cn_augment_draw(const cn_augment *a, int width, int height, uint64_t seed,
                          cn_transform *out) {
  cn_status st = cn_augment_check(a);
  if (st != CN_OK) return st;
  if (!out || width <= 0 || height <= 0)
    return cn_fail(CN_ERR_ARG, "augment: no image size or output given");
  uint64_t key = cn_mix64(seed);
  cn_transform t = cn_transform_identity();
  if (a->crop_scale[1] > 0)
    draw_resized_crop(a, width, height, key, &t);
  else if (a->crop_width > 0)
    draw_fixed_crop(a, width, height, key, &t);
  int w = t.out_width ? t.out_width : t.crop_width ? t.crop_width : width;
  int h = t.out_height ? t.out_height : t.crop_height ? t.crop_height : height;
  draw_geometry(a, w, h, key, &t);
  draw_colour(a, key, &t);
  *out = t;
  return CN_OK;
}

cn_status cn_image_augment(const cn_image *src, const cn_augment *a, uint64_t seed, cn_image *dst) {
  if (!src || !src->pixels || !dst) return cn_fail(CN_ERR_ARG, "augment: no image given");
  cn_transform t;
  cn_status st = cn_augment_draw(a, src->width, src->height, seed, &t);
  if (st != CN_OK) return st;
  return cn_image_transform(src, &t, dst);
}
