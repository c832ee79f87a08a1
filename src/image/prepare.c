/* From a decoded photo to model input: optional grey, resize (and crop), float conversion and
 * the preprocessing of the framework the weights came from, computed in float32 step by step
 * as Keras' preprocess_input does, so that the values agree to the last bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"

void cn_preprocess_apply(cn_preprocess mode, float *pixels, size_t n) {
  static const float torch_mean[3] = {0.485f, 0.456f, 0.406f};
  static const float torch_std[3] = {0.229f, 0.224f, 0.225f};
  for (size_t i = 0; i < n; i++) {
    float *p = pixels + 3 * i;
    switch (mode) {
    case CN_PRE_CAFFE: {
      float r = p[0];
      p[0] = p[2] - 103.939f;
      p[1] = p[1] - 116.779f;
      p[2] = r - 123.68f;
      break;
    }
    case CN_PRE_TF:
      for (int c = 0; c < 3; c++) {
        float v = p[c] / 127.5f;
        p[c] = v - 1.0f;
      }
      break;
    case CN_PRE_TORCH:
      for (int c = 0; c < 3; c++) {
        float v = p[c] / 255.0f;
        v = v - torch_mean[c];
        p[c] = v / torch_std[c];
      }
      break;
    case CN_PRE_UNIT:
      for (int c = 0; c < 3; c++) p[c] = p[c] / 255.0f;
      break;
    default:
      break;
    }
  }
}

/* PIL's convert("L"): ITU-R 601 weights in 16-bit fixed point, rounded. */
static uint8_t pil_luma(const uint8_t *rgb) {
  return (uint8_t)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

/* A copy with every pixel replaced by its grey value in all three channels, so that the
 * resize that follows sees what Keras resizes: the "L" image. */
static cn_status grey_copy(const cn_image *src, cn_image *dst) {
  cn_status st = cn_image_alloc(dst, src->width, src->height, "grey");
  if (st != CN_OK) return st;
  size_t n = (size_t)src->width * src->height;
  for (size_t i = 0; i < n; i++) memset(dst->pixels + 3 * i, pil_luma(src->pixels + 3 * i), 3);
  return CN_OK;
}

static cn_status check_spec(const cn_image *image, const cn_input_spec *spec, const float *out) {
  if (!image || !image->pixels || !spec || !out)
    return cn_fail(CN_ERR_ARG, "prepare: missing argument");
  if (spec->height <= 0 || spec->width <= 0)
    return cn_fail(CN_ERR_ARG, "prepare: input size %dx%d", spec->width, spec->height);
  if (spec->channels != 1 && spec->channels != 3)
    return cn_fail(CN_ERR_UNSUPPORTED, "prepare: %d channels (1 or 3 supported)", spec->channels);
  if ((unsigned)spec->resize >= CN_RESIZE_COUNT || (unsigned)spec->preprocess >= CN_PRE_COUNT)
    return cn_fail(CN_ERR_ARG, "prepare: unknown resize policy or preprocessing");
  if (!(spec->crop >= 0 && spec->crop <= 1))
    return cn_fail(CN_ERR_ARG, "prepare: crop %g is not in [0, 1]", spec->crop);
  if (spec->channels == 1 && (spec->preprocess == CN_PRE_CAFFE || spec->preprocess == CN_PRE_TORCH))
    return cn_fail(CN_ERR_UNSUPPORTED, "prepare: '%s' preprocessing needs 3 channels",
                   cn_preprocess_name(spec->preprocess));
  return CN_OK;
}

/* The size to resize to before the centre crop (spec's size without a crop). */
static cn_status resized_size(const cn_input_spec *spec, int *w, int *h) {
  if (spec->crop <= 0 || spec->crop >= 1) return *w = spec->width, *h = spec->height, CN_OK;
  double cw = lround(spec->width / spec->crop), ch = lround(spec->height / spec->crop);
  if (cw > CN_IMAGE_MAX_PIXELS || ch > CN_IMAGE_MAX_PIXELS)
    return cn_fail(CN_ERR_LIMIT, "prepare: crop %g needs a %gx%g image", spec->crop, cw, ch);
  return *w = (int)cw, *h = (int)ch, CN_OK;
}

/* Resizes (and crops) to exactly spec->width x spec->height. */
static cn_status fit(const cn_image *src, const cn_input_spec *spec, cn_image *dst) {
  int w = 0, h = 0;
  cn_status st = resized_size(spec, &w, &h);
  if (st != CN_OK) return st;
  if (w == spec->width && h == spec->height) return cn_image_resize(src, w, h, spec->resize, dst);
  cn_image resized = {0};
  st = cn_image_resize(src, w, h, spec->resize, &resized);
  if (st == CN_OK) st = cn_image_crop_center_to(&resized, spec->width, spec->height, dst);
  cn_image_free(&resized);
  return st;
}

/* TF_BILINEAR keeps float pixels (tf.image.resize returns float32): the resized (and cropped)
 * image as 3 * width * height floats in out. */
static cn_status fit_float(const cn_image *src, const cn_input_spec *spec, float *out) {
  int w = 0, h = 0;
  cn_status st = resized_size(spec, &w, &h);
  if (st != CN_OK) return st;
  if (w == spec->width && h == spec->height) return cn_image_resize_tf(src, w, h, out);
  float *full = malloc(sizeof *full * w * h * 3);
  if (!full) return cn_fail(CN_ERR_NOMEM, "prepare: no memory for %dx%d", w, h);
  st = cn_image_resize_tf(src, w, h, full);
  int left = cn_image_center_offset(w, spec->width), top = cn_image_center_offset(h, spec->height);
  for (int y = 0; st == CN_OK && y < spec->height; y++)
    memcpy(out + (size_t)y * spec->width * 3, full + ((size_t)(top + y) * w + left) * 3,
           sizeof *out * spec->width * 3);
  free(full);
  return st;
}

static void grey_preprocess(cn_preprocess mode, float *v) {
  if (mode == CN_PRE_UNIT) *v = *v / 255.0f;
  if (mode == CN_PRE_TF) {
    float t = *v / 127.5f;
    *v = t - 1.0f;
  }
}

/* HWC to CHW in place, through a copy of the n pixels. */
static cn_status to_channels_first(float *out, size_t n) {
  float *hwc = malloc(3 * n * sizeof *hwc);
  if (!hwc) return cn_fail(CN_ERR_NOMEM, "prepare: out of memory");
  memcpy(hwc, out, 3 * n * sizeof *hwc);
  for (size_t i = 0; i < n; i++)
    for (size_t c = 0; c < 3; c++) out[c * n + i] = hwc[3 * i + c];
  free(hwc);
  return CN_OK;
}

/* The resized RGB image as floats 0..255 into rgb (3 * width * height). */
static cn_status fit_rgb(const cn_image *src, const cn_input_spec *spec, float *rgb) {
  if (spec->resize == CN_RESIZE_TF_BILINEAR) return fit_float(src, spec, rgb);
  cn_image sized = {0};
  cn_status st = fit(src, spec, &sized);
  for (size_t i = 0; st == CN_OK && i < (size_t)spec->width * spec->height * 3; i++)
    rgb[i] = sized.pixels[i];
  cn_image_free(&sized);
  return st;
}

/* Grey: the "L" image resized, one channel of it kept (in place: out[i] = rgb[3 i]). */
static cn_status prepare_grey(const cn_image *image, const cn_input_spec *spec, float *out) {
  size_t n = (size_t)spec->width * spec->height;
  float *rgb = malloc(sizeof *rgb * 3 * n);
  cn_image grey = {0};
  cn_status st = rgb ? grey_copy(image, &grey) : cn_fail(CN_ERR_NOMEM, "prepare: out of memory");
  if (st == CN_OK) st = fit_rgb(&grey, spec, rgb);
  for (size_t i = 0; st == CN_OK && i < n; i++) {
    out[i] = rgb[3 * i];
    grey_preprocess(spec->preprocess, &out[i]);
  }
  cn_image_free(&grey);
  free(rgb);
  return st;
}

cn_status cn_image_prepare(const cn_image *image, const cn_input_spec *spec, float *out) {
  cn_status st = check_spec(image, spec, out);
  if (st != CN_OK) return st;
  if (spec->channels == 1) return prepare_grey(image, spec, out);
  size_t n = (size_t)spec->width * spec->height;
  st = fit_rgb(image, spec, out);
  if (st != CN_OK) return st;
  cn_preprocess_apply(spec->preprocess, out, n);
  return spec->channels_first ? to_channels_first(out, n) : CN_OK;
}

cn_status cn_preprocess_apply_channels(cn_preprocess mode, int channels, float *values, size_t n) {
  if (channels == 3) {
    cn_preprocess_apply(mode, values, n / 3);
    return CN_OK;
  }
  if (channels != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "preprocessing takes 1 or 3 channels, not %d", channels);
  if (mode == CN_PRE_CAFFE || mode == CN_PRE_TORCH) /* per RGB channel: no grey meaning */
    return cn_fail(CN_ERR_UNSUPPORTED, "grey values take raw, unit or tf preprocessing, not %s",
                   cn_preprocess_name(mode));
  for (size_t i = 0; i < n; i++) grey_preprocess(mode, &values[i]);
  return CN_OK;
}
