/* BMP, written here: BITMAPINFOHEADER (40 bytes) and its later versions (52, 56, 108, 124),
 * 1/4/8-bit palettes, 16/24/32-bit pixels, BI_RGB and BI_BITFIELDS, bottom-up or top-down.
 * Every offset and size is checked against the file size before it is used. */
#include <stdlib.h>
#include <inttypes.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"

enum { BI_RGB = 0, BI_BITFIELDS = 3, BI_ALPHABITFIELDS = 6, FILE_HEADER_BYTES = 14 };

typedef struct bmp_info {
  int64_t width, height, stride;
  int bottom_up, bpp;
  uint32_t compression, pixel_offset;
  uint32_t masks[3]; /* red, green, blue */
  uint8_t palette[256][3];
  int palette_count;
} bmp_info;

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}

static cn_status read_masks(const uint8_t *data, size_t size, const char *name, bmp_info *bmp) {
  if (bmp->compression == BI_RGB) {
    /* The defaults: 5-5-5 for 16-bit, 8-8-8 for 24/32-bit. */
    uint32_t defaults16[3] = {0x7c00, 0x03e0, 0x001f}, defaults32[3] = {0xff0000, 0xff00, 0xff};
    memcpy(bmp->masks, bmp->bpp == 16 ? defaults16 : defaults32, sizeof bmp->masks);
    return CN_OK;
  }
  if (bmp->bpp != 16 && bmp->bpp != 32)
    return cn_fail(CN_ERR_FORMAT, "%s: BMP bit fields with %d bits per pixel", name, bmp->bpp);
  /* With the 40-byte header the masks follow it; later headers contain them. */
  size_t at = FILE_HEADER_BYTES + 40;
  if (size < at + 12) return cn_fail(CN_ERR_FORMAT, "%s: BMP bit masks past the end", name);
  for (int c = 0; c < 3; c++) bmp->masks[c] = le32(data + at + 4 * c);
  return CN_OK;
}

static cn_status read_palette(const uint8_t *data, size_t size, uint32_t header_bytes,
                              uint32_t colours_used, const char *name, bmp_info *bmp) {
  int capacity = 1 << bmp->bpp;
  /* More entries than the pixels can index is a broken header, refused as Pillow does. */
  if (colours_used > (uint32_t)capacity)
    return cn_fail(CN_ERR_FORMAT,
                   "%s: BMP palette of %" PRIu32 " colours for %d-bit pixels (at most %d)", name,
                   colours_used, bmp->bpp, capacity);
  bmp->palette_count = colours_used ? (int)colours_used : capacity;
  size_t at = FILE_HEADER_BYTES + (size_t)header_bytes;
  if (at > size || (size - at) / 4 < (size_t)bmp->palette_count) {
    /* Some writers store fewer entries than they announce; keep what the file holds. */
    bmp->palette_count = at > size ? 0 : (int)((size - at) / 4);
    if (bmp->palette_count > capacity) bmp->palette_count = capacity;
  }
  if (bmp->palette_count == 0) return cn_fail(CN_ERR_FORMAT, "%s: BMP palette missing", name);
  memset(bmp->palette, 0, sizeof bmp->palette);
  for (int i = 0; i < bmp->palette_count; i++) {
    const uint8_t *q = data + at + 4 * (size_t)i; /* blue, green, red, reserved */
    bmp->palette[i][0] = q[2], bmp->palette[i][1] = q[1], bmp->palette[i][2] = q[0];
  }
  return CN_OK;
}

static cn_status read_header(const uint8_t *data, size_t size, const char *name, bmp_info *bmp) {
  if (size < FILE_HEADER_BYTES + 40)
    return cn_fail(CN_ERR_FORMAT, "%s: BMP header truncated", name);
  bmp->pixel_offset = le32(data + 10);
  uint32_t header_bytes = le32(data + 14);
  if (header_bytes < 40 || header_bytes > size - FILE_HEADER_BYTES)
    return cn_fail(header_bytes < 40 ? CN_ERR_UNSUPPORTED : CN_ERR_FORMAT,
                   "%s: BMP info header of %u bytes", name, header_bytes);
  bmp->width = (int32_t)le32(data + 18);
  int64_t height = (int32_t)le32(data + 22);
  bmp->bottom_up = height > 0;
  bmp->height = height < 0 ? -height : height;
  bmp->bpp = le16(data + 28);
  bmp->compression = le32(data + 30);
  cn_status st = cn_image_check_size(bmp->width, bmp->height, name);
  if (st != CN_OK) return st;
  int bpp = bmp->bpp;
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: BMP with %d bits per pixel", name, bpp);
  uint32_t comp = bmp->compression;
  if (comp != BI_RGB && comp != BI_BITFIELDS && comp != BI_ALPHABITFIELDS)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: BMP compression %u (only uncompressed)", name, comp);
  bmp->stride = (bmp->width * bpp + 31) / 32 * 4;
  if (bmp->pixel_offset > size || (int64_t)(size - bmp->pixel_offset) / bmp->stride < bmp->height)
    return cn_fail(CN_ERR_FORMAT,
                   "%s: BMP pixel data (offset %u, %lld rows of %lld bytes) "
                   "runs past the end of the %zu-byte file",
                   name, bmp->pixel_offset, (long long)bmp->height, (long long)bmp->stride, size);
  if (bpp <= 8) return read_palette(data, size, header_bytes, le32(data + 46), name, bmp);
  return read_masks(data, size, name, bmp);
}

/* Extracts one channel by its mask and scales it to 0..255. */
static uint8_t masked(uint32_t pixel, uint32_t mask) {
  if (!mask) return 0;
  int shift = __builtin_ctz(mask);
  uint32_t max = mask >> shift, v = (pixel & mask) >> shift;
  if (max == 255) return (uint8_t)v;
  return (uint8_t)(((uint64_t)v * 255 + max / 2) / max);
}

static void decode_row(const bmp_info *bmp, const uint8_t *src, uint8_t *rgb) {
  int bpp = bmp->bpp;
  for (int64_t x = 0; x < bmp->width; x++, rgb += 3) {
    if (bpp <= 8) {
      int per_byte = 8 / bpp, bit = (int)(per_byte - 1 - x % per_byte) * bpp;
      int index = (src[x / per_byte] >> bit) & ((1 << bpp) - 1);
      memcpy(rgb, bmp->palette[index], 3);
    } else if (bpp == 24) {
      rgb[0] = src[3 * x + 2], rgb[1] = src[3 * x + 1], rgb[2] = src[3 * x];
    } else {
      uint32_t pixel = bpp == 16 ? le16(src + 2 * x) : le32(src + 4 * x);
      for (int c = 0; c < 3; c++) rgb[c] = masked(pixel, bmp->masks[c]);
    }
  }
}

cn_status cn_decode_bmp(const uint8_t *data, size_t size, const char *name, cn_image *out) {
  bmp_info bmp;
  cn_status st = read_header(data, size, name, &bmp);
  if (st == CN_OK) st = cn_image_alloc(out, bmp.width, bmp.height, name);
  if (st != CN_OK) return st;
  for (int64_t y = 0; y < bmp.height; y++) {
    int64_t file_row = bmp.bottom_up ? bmp.height - 1 - y : y;
    decode_row(&bmp, data + bmp.pixel_offset + file_row * bmp.stride,
               out->pixels + y * bmp.width * 3);
  }
  return CN_OK;
}
