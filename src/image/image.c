/* Image files: reading, format sniffing, allocation with the pixel limit, enum names. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "image/image_internal.h"

/* Files larger than this cannot be a sane photo; refusing them bounds the read buffer. */
#define CN_IMAGE_MAX_FILE_BYTES ((int64_t)1 << 30)

cn_status cn_image_check_size(int64_t width, int64_t height, const char *name) {
  if (width <= 0 || height <= 0)
    return cn_fail(CN_ERR_FORMAT, "%s: image size %lldx%lld is empty", name, (long long)width,
                   (long long)height);
  if (width > CN_IMAGE_MAX_PIXELS || height > CN_IMAGE_MAX_PIXELS ||
      width * height > CN_IMAGE_MAX_PIXELS)
    return cn_fail(CN_ERR_LIMIT, "%s: image size %lldx%lld exceeds the limit of %lld pixels", name,
                   (long long)width, (long long)height, (long long)CN_IMAGE_MAX_PIXELS);
  return CN_OK;
}

cn_status cn_image_alloc(cn_image *out, int64_t width, int64_t height, const char *name) {
  cn_status st = cn_image_check_size(width, height, name);
  if (st != CN_OK) return st;
  out->pixels = malloc((size_t)(width * height * 3));
  if (!out->pixels)
    return cn_fail(CN_ERR_NOMEM, "%s: no memory for %lldx%lld pixels", name, (long long)width,
                   (long long)height);
  out->width = (int)width;
  out->height = (int)height;
  return CN_OK;
}

void cn_image_free(cn_image *image) {
  if (!image) return;
  free(image->pixels);
  image->pixels = NULL;
  image->width = image->height = 0;
}

static int starts_with(const uint8_t *data, size_t size, const char *magic, size_t n) {
  return size >= n && memcmp(data, magic, n) == 0;
}

cn_status cn_image_decode(const void *data, size_t size, const char *name, cn_image *out) {
  return cn_image_decode_as(data, size, name, CN_DECODE_PIL, out);
}

cn_status cn_image_decode_as(const void *data, size_t size, const char *name, cn_decoder decoder,
                             cn_image *out) {
  const uint8_t *bytes = data;
  if (!name) name = "(memory)";
  if (!out || (!data && size)) return cn_fail(CN_ERR_ARG, "%s: no image or output given", name);
  out->width = out->height = 0;
  out->pixels = NULL;
  if ((unsigned)decoder >= CN_DECODE_COUNT)
    return cn_fail(CN_ERR_ARG, "%s: unknown decoder %d", name, (int)decoder);
  if (size == 0) return cn_fail(CN_ERR_FORMAT, "%s: empty file", name);
  if (starts_with(bytes, size, "\xff\xd8\xff", 3))
    return cn_decode_jpeg(bytes, size, name, decoder, out);
  if (starts_with(bytes, size, "\x89PNG\r\n\x1a\n", 8))
    return cn_decode_png(bytes, size, name, decoder, out);
  if (starts_with(bytes, size, "BM", 2)) return cn_decode_bmp(bytes, size, name, out);
  if (starts_with(bytes, size, "P5", 2) || starts_with(bytes, size, "P6", 2))
    return cn_decode_pnm(bytes, size, name, out);
  return cn_fail(CN_ERR_FORMAT, "%s: not a JPEG, PNG, BMP or binary PPM/PGM file", name);
}

cn_status cn_image_load(const char *path, cn_image *out) {
  return cn_image_load_as(path, CN_DECODE_PIL, out);
}

cn_status cn_image_load_spec(const char *path, const cn_input_spec *spec, cn_image *out) {
  return cn_image_load_as(path, spec ? spec->decoder : CN_DECODE_PIL, out);
}

cn_status cn_image_load_as(const char *path, cn_decoder decoder, cn_image *out) {
  if (!path || !out) return cn_fail(CN_ERR_ARG, "cn_image_load: no path or output given");
  out->width = out->height = 0;
  out->pixels = NULL;
  uint8_t *data = NULL;
  size_t size = 0;
  cn_status st = cn_file_read_all(path, CN_IMAGE_MAX_FILE_BYTES, "an image", &data, &size);
  if (st != CN_OK) return st;
  st = cn_image_decode_as(data, size, path, decoder, out);
  free(data);
  return st;
}

static const char *const resize_names[CN_RESIZE_COUNT] = {
    [CN_RESIZE_NEAREST] = "nearest",
    [CN_RESIZE_BILINEAR] = "bilinear",
    [CN_RESIZE_AREA] = "area",
    [CN_RESIZE_PIL_BILINEAR] = "pil-bilinear",
    [CN_RESIZE_TF_BILINEAR] = "tf-bilinear",
};
_Static_assert(CN_RESIZE_COUNT == 5, "resize_names must name every policy");

static const char *const preprocess_names[CN_PRE_COUNT] = {
    [CN_PRE_RAW] = "raw",     [CN_PRE_CAFFE] = "caffe", [CN_PRE_TF] = "tf",
    [CN_PRE_TORCH] = "torch", [CN_PRE_UNIT] = "unit",
};
_Static_assert(CN_PRE_COUNT == 5, "preprocess_names must name every mode");

static const char *const decoder_names[CN_DECODE_COUNT] = {
    [CN_DECODE_PIL] = "pil", [CN_DECODE_TF] = "tf"};
_Static_assert(CN_DECODE_COUNT == 2, "decoder_names must name every decoder");

const char *cn_decoder_name(cn_decoder decoder) {
  return (unsigned)decoder < CN_DECODE_COUNT ? decoder_names[decoder] : "unknown";
}

cn_status cn_decoder_parse(const char *name, cn_decoder *out) {
  for (int i = 0; name && i < CN_DECODE_COUNT; i++)
    if (strcmp(name, decoder_names[i]) == 0) return *out = (cn_decoder)i, CN_OK;
  return cn_fail(CN_ERR_ARG, "unknown decoder '%s' (pil, tf)", name ? name : "(null)");
}

const char *cn_resize_name(cn_resize resize) {
  return (unsigned)resize < CN_RESIZE_COUNT ? resize_names[resize] : "unknown";
}

const char *cn_preprocess_name(cn_preprocess mode) {
  return (unsigned)mode < CN_PRE_COUNT ? preprocess_names[mode] : "unknown";
}

cn_status cn_resize_parse(const char *name, cn_resize *out) {
  for (int i = 0; name && i < CN_RESIZE_COUNT; i++) {
    if (strcmp(name, resize_names[i]) == 0) {
      *out = (cn_resize)i;
      return CN_OK;
    }
  }
  return cn_fail(CN_ERR_ARG,
                 "unknown resize policy '%s' (nearest, bilinear, area, pil-bilinear, tf-bilinear)",
                 name ? name : "(null)");
}

cn_status cn_preprocess_parse(const char *name, cn_preprocess *out) {
  for (int i = 0; name && i < CN_PRE_COUNT; i++) {
    if (strcmp(name, preprocess_names[i]) == 0) {
      *out = (cn_preprocess)i;
      return CN_OK;
    }
  }
  return cn_fail(CN_ERR_ARG, "unknown preprocessing '%s' (raw, caffe, tf, torch, unit)",
                 name ? name : "(null)");
}
