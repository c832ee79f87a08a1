/* PNG through libpng, converted to 8-bit RGB as PIL's convert("RGB") does: palette and grey are
 * expanded, alpha and tRNS are dropped, 16-bit colour keeps the high byte, and 16-bit grey
 * (PIL mode "I;16") is clipped to 255, not scaled, which is what PIL does. CN_DECODE_TF keeps the
 * high byte of 16-bit grey too, as tf.io.decode_image does. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "core/error.h"
#include "image/image_internal.h"

/* Bounds memory a hostile file can make libpng allocate for ancillary chunks. */
#define PNG_MAX_CHUNK_BYTES ((png_alloc_size_t)8 << 20)
#define PNG_MAX_CACHED_CHUNKS 128

typedef struct png_source {
  const uint8_t *data;
  size_t size, pos;
  char message[256];
} png_source;

static void source_read(png_structp png, png_bytep out, size_t n) {
  png_source *src = png_get_io_ptr(png);
  if (n > src->size - src->pos) png_error(png, "truncated file");
  memcpy(out, src->data + src->pos, n);
  src->pos += n;
}

static void trap_error(png_structp png, png_const_charp message) {
  png_source *src = png_get_error_ptr(png);
  snprintf(src->message, sizeof src->message, "%s", message);
  png_longjmp(png, 1);
}

static void ignore_warning(png_structp png, png_const_charp message) {}

/* Sets up transforms so rows come out as 8-bit RGB; returns 1 for 16-bit grey, which is read
 * as big-endian 16-bit samples and clipped by the caller. */
static int request_rgb8(png_structp png, png_infop info, cn_decoder decoder) {
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  png_set_interlace_handling(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth == 16 && decoder == CN_DECODE_PIL) return 1;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  if (color & PNG_COLOR_MASK_ALPHA || color == PNG_COLOR_TYPE_PALETTE) png_set_strip_alpha(png);
  if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  return 0;
}

static void grey16_to_rgb(const uint8_t *grey, size_t count, uint8_t *rgb) {
  for (size_t i = 0; i < count; i++, rgb += 3) {
    unsigned v = (unsigned)grey[2 * i] << 8 | grey[2 * i + 1];
    rgb[0] = rgb[1] = rgb[2] = (uint8_t)(v > 255 ? 255 : v);
  }
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Refuses oversized images from the IHDR bytes alone, before libpng reads further chunks. */
static cn_status check_ihdr_size(const uint8_t *data, size_t size, const char *name) {
  if (size < 24 || memcmp(data + 12, "IHDR", 4) != 0) return CN_OK; /* libpng will complain */
  return cn_image_check_size(be32(data + 16), be32(data + 20), name);
}

cn_status cn_decode_png(const uint8_t *data, size_t size, const char *name, cn_decoder decoder,
                        cn_image *out) {
  cn_status st = check_ihdr_size(data, size, name);
  if (st != CN_OK) return st;
  png_source src = {data, size, 0, ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, trap_error, ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return cn_fail(CN_ERR_NOMEM, "%s: cannot start the PNG decoder", name);
  }
  uint8_t *volatile pixels = NULL;
  uint8_t *volatile grey = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(grey);
    free(rows);
    return cn_fail(CN_ERR_FORMAT, "%s: PNG: %s", name, src.message);
  }
  png_set_read_fn(png, &src, source_read);
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_BYTES);
  png_set_chunk_cache_max(png, PNG_MAX_CACHED_CHUNKS);
  png_read_info(png, info);
  uint32_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  cn_image img = {0};
  st = cn_image_alloc(&img, width, height, name);
  if (st != CN_OK) {
    png_destroy_read_struct(&png, &info, NULL);
    return st;
  }
  pixels = img.pixels;
  int is_grey16 = request_rgb8(png, info, decoder);
  png_read_update_info(png, info);
  size_t row_bytes = (size_t)width * (is_grey16 ? 2 : 3);
  if (png_get_rowbytes(png, info) != row_bytes) png_error(png, "unexpected row layout");
  if (is_grey16) grey = malloc(row_bytes * height);
  rows = malloc(sizeof(png_bytep) * height);
  if (!rows || (is_grey16 && !grey)) png_error(png, "out of memory");
  uint8_t *base = is_grey16 ? grey : pixels;
  for (uint32_t y = 0; y < height; y++) rows[y] = base + y * row_bytes;
  png_read_image(png, rows);
  /* No png_read_end: like PIL, chunks after the image data are not needed. */
  if (is_grey16) grey16_to_rgb(grey, (size_t)width * height, pixels);
  png_destroy_read_struct(&png, &info, NULL);
  free(grey);
  free(rows);
  *out = img;
  return CN_OK;
}
