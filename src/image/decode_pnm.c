/* Binary PGM (P5) and PPM (P6), maxval 1..65535, '#' comments in the header. Samples are scaled
 * to 0..255 as v * 255 / maxval rounded half to even, PIL's rule for 8-bit output (PIL reads
 * 16-bit PGM as mode "I" and its RGB conversion then clips; here it is scaled like PPM). */
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"

typedef struct pnm_cursor {
  const uint8_t *data;
  size_t size, pos;
} pnm_cursor;

static int is_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void skip_space_and_comments(pnm_cursor *cur) {
  while (cur->pos < cur->size) {
    uint8_t c = cur->data[cur->pos];
    if (c == '#') {
      while (cur->pos < cur->size && cur->data[cur->pos] != '\n' && cur->data[cur->pos] != '\r')
        cur->pos++;
    } else if (is_space(c)) {
      cur->pos++;
    } else {
      return;
    }
  }
}

/* A decimal header field; -1 when absent or larger than limit. */
static int64_t read_number(pnm_cursor *cur, int64_t limit) {
  skip_space_and_comments(cur);
  int64_t value = 0;
  size_t start = cur->pos;
  while (cur->pos < cur->size && cur->data[cur->pos] >= '0' && cur->data[cur->pos] <= '9') {
    value = value * 10 + (cur->data[cur->pos++] - '0');
    if (value > limit) return -1;
  }
  return cur->pos == start ? -1 : value;
}

/* v * 255 / maxval rounded half to even, as PIL does. */
static uint8_t scale_sample(uint32_t v, uint32_t maxval) {
  if (maxval == 255) return (uint8_t)v;
  uint32_t num = v * 255, q = num / maxval, r2 = 2 * (num % maxval);
  return (uint8_t)(q + (r2 > maxval || (r2 == maxval && (q & 1))));
}

cn_status cn_decode_pnm(const uint8_t *data, size_t size, const char *name, cn_image *out) {
  pnm_cursor cur = {data, size, 2};
  int channels = data[1] == '6' ? 3 : 1;
  int64_t width = read_number(&cur, CN_IMAGE_MAX_PIXELS + 1);
  int64_t height = read_number(&cur, CN_IMAGE_MAX_PIXELS + 1);
  int64_t maxval = read_number(&cur, 65536);
  if (width < 0 || height < 0 || maxval < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: PNM header is not three numbers", name);
  if (maxval < 1 || maxval > 65535)
    return cn_fail(CN_ERR_FORMAT, "%s: PNM maxval %lld outside 1..65535", name, (long long)maxval);
  cn_status st = cn_image_check_size(width, height, name);
  if (st != CN_OK) return st;
  if (cur.pos >= size || !is_space(data[cur.pos]))
    return cn_fail(CN_ERR_FORMAT, "%s: PNM header not followed by whitespace", name);
  cur.pos++;
  int sample_bytes = maxval > 255 ? 2 : 1;
  int64_t count = width * height * channels;
  if ((int64_t)(size - cur.pos) / sample_bytes < count)
    return cn_fail(CN_ERR_FORMAT, "%s: PNM pixel data truncated (%zu of %lld bytes)", name,
                   size - cur.pos, (long long)(count * sample_bytes));
  st = cn_image_alloc(out, width, height, name);
  if (st != CN_OK) return st;
  const uint8_t *src = data + cur.pos;
  for (int64_t i = 0; i < width * height; i++) {
    for (int c = 0; c < 3; c++) {
      int64_t at = i * channels + (channels == 3 ? c : 0);
      uint32_t v = sample_bytes == 2 ? (uint32_t)src[2 * at] << 8 | src[2 * at + 1] : src[at];
      if (v > maxval) v = (uint32_t)maxval;
      out->pixels[i * 3 + c] = scale_sample(v, (uint32_t)maxval);
    }
  }
  return CN_OK;
}
