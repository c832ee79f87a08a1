/* IDX files, the format of MNIST and Fashion-MNIST: two zero bytes, a type byte, the rank, one
 * big-endian uint32 per dimension, then the values in C order, big-endian. Plain or gzip (zlib
 * inflates; concatenated members are read in turn). Memory grows with the values actually
 * decoded, never with the count the header claims, and decompression stops one byte past the
 * values the header announces, so neither a lying header nor a gzip bomb can allocate much. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "convnet/io.h"
#include "core/error.h"
#include "core/file.h"
#include "io/io.h"

/* Most values read (1 GiB of float32), and the largest compressed file accepted. */
#define IDX_MAX_VALUES ((int64_t)1 << 28)
#define IDX_MAX_FILE ((size_t)1 << 31)

enum { CHUNK_BYTES = 1 << 16 };

/* The bytes of an IDX stream, from memory or through inflate. */
typedef struct idx_src {
  const char *name;
  const uint8_t *raw;
  size_t raw_size;
  int gz, z_open;
  z_stream z;
  size_t plain_pos;
} idx_src;

static int is_gzip(const uint8_t *p, size_t n) {
  return n >= 2 && p[0] == 0x1f && p[1] == 0x8b;
}

/* Reads up to n bytes into dst (fewer only at the end of the data). */
static cn_status src_read(idx_src *s, uint8_t *dst, size_t n, size_t *got) {
  if (!s->gz) {
    size_t left = s->raw_size - s->plain_pos;
    *got = n < left ? n : left;
    if (*got) memcpy(dst, s->raw + s->plain_pos, *got);
    s->plain_pos += *got;
    return CN_OK;
  }
  s->z.next_out = dst;
  s->z.avail_out = (uInt)n;
  while (s->z.avail_out > 0) {
    if (s->z.avail_in == 0) break;
    int rc = inflate(&s->z, Z_NO_FLUSH);
    if (rc == Z_STREAM_END) {
      /* Another gzip member may follow; anything else after the stream is damage. */
      if (s->z.avail_in == 0) break;
      if (!is_gzip(s->z.next_in, s->z.avail_in))
        return cn_fail(CN_ERR_FORMAT, "%s: data after the end of the gzip stream", s->name);
      if (inflateReset(&s->z) != Z_OK)
        return cn_fail(CN_ERR_FORMAT, "%s: bad gzip member", s->name);
    } else if (rc != Z_OK) {
      return cn_fail(CN_ERR_FORMAT, "%s: gzip data is damaged (%s)", s->name,
                     s->z.msg ? s->z.msg : "inflate failed");
    }
  }
  *got = n - s->z.avail_out;
  return CN_OK;
}

static cn_status src_open(idx_src *s, const uint8_t *data, size_t size, const char *name) {
  memset(s, 0, sizeof *s);
  s->name = name, s->raw = data, s->raw_size = size;
  s->gz = is_gzip(data, size);
  if (!s->gz) return CN_OK;
  if (size > UINT_MAX) return cn_fail(CN_ERR_LIMIT, "%s: compressed file too large", name);
  s->z.next_in = (Bytef *)data;
  s->z.avail_in = (uInt)size;
  if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
    return cn_fail(CN_ERR_NOMEM, "%s: cannot start gzip decompression", name);
  s->z_open = 1;
  return CN_OK;
}

static void src_close(idx_src *s) {
  if (s->z_open) inflateEnd(&s->z);
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The element size of an IDX type byte, 0 for an unknown type. */
static int item_size(uint8_t type) {
  switch (type) {
  case 0x08: /* unsigned byte */
  case 0x09: /* signed byte */
    return 1;
  case 0x0B: /* int16 */
    return 2;
  case 0x0C: /* int32 */
  case 0x0D: /* float32 */
    return 4;
  case 0x0E: /* float64 */
    return 8;
  default:
    return 0;
  }
}

static float value_at(const uint8_t *p, uint8_t type) {
  uint32_t u32;
  uint64_t u64;
  float f;
  double d;
  switch (type) {
  case 0x08:
    return p[0];
  case 0x09:
    return (int8_t)p[0];
  case 0x0B:
    return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
  case 0x0C:
    return (float)(int32_t)be32(p);
  case 0x0D:
    u32 = be32(p);
    memcpy(&f, &u32, 4);
    return f;
  default:
    u64 = (uint64_t)be32(p) << 32 | be32(p + 4);
    memcpy(&d, &u64, 8);
    return (float)d;
  }
}

/* Magic, type and dimensions into shape; *type and *item the values' encoding. */
static cn_status read_header(idx_src *s, cn_shape *shape, uint8_t *type, int *item) {
  uint8_t head[4 + 4 * CN_MAX_RANK];
  size_t got;
  cn_status st = src_read(s, head, 4, &got);
  if (st != CN_OK) return st;
  if (got < 4 || head[0] || head[1])
    return cn_fail(CN_ERR_FORMAT, "%s: not an IDX file (no 00 00 magic)", s->name);
  *type = head[2];
  *item = item_size(*type);
  if (!*item) return cn_fail(CN_ERR_FORMAT, "%s: unknown IDX value type 0x%02x", s->name, *type);
  int rank = head[3];
  if (rank < 1 || rank > CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: IDX rank %d (1 to %d supported)", s->name, rank,
                   CN_MAX_RANK);
  st = src_read(s, head + 4, 4 * (size_t)rank, &got);
  if (st != CN_OK) return st;
  if (got < 4 * (size_t)rank) return cn_fail(CN_ERR_FORMAT, "%s: IDX header cut short", s->name);
  shape->rank = rank;
  int64_t numel = 1;
  for (int d = 0; d < rank; d++) {
    shape->dim[d] = be32(head + 4 + 4 * d);
    if (shape->dim[d] == 0) return cn_fail(CN_ERR_FORMAT, "%s: IDX dimension %d is 0", s->name, d);
    if (shape->dim[d] > IDX_MAX_VALUES / numel)
      return cn_fail(CN_ERR_LIMIT, "%s: more than %lld values", s->name, (long long)IDX_MAX_VALUES);
    numel *= shape->dim[d];
  }
  return CN_OK;
}

/* Grows *out to hold at least need values (doubling, at most numel). */
static cn_status reserve(float **out, int64_t *cap, int64_t need, int64_t numel, const char *name) {
  if (need <= *cap) return CN_OK;
  int64_t grown = *cap ? *cap * 2 : CHUNK_BYTES;
  if (grown < need) grown = need;
  if (grown > numel) grown = numel;
  float *more = realloc(*out, (size_t)grown * sizeof *more);
  if (!more) return cn_fail(CN_ERR_NOMEM, "%s: no memory for %lld values", name, (long long)grown);
  *out = more;
  *cap = grown;
  return CN_OK;
}

/* Decodes numel values of `type` chunk by chunk, then checks that nothing follows them. */
static cn_status read_values(idx_src *s, int64_t numel, uint8_t type, int item, float **out) {
  uint8_t chunk[CHUNK_BYTES];
  int64_t done = 0, cap = 0;
  cn_status st = CN_OK;
  while (st == CN_OK && done < numel) {
    int64_t want = numel - done;
    if (want > CHUNK_BYTES / item) want = CHUNK_BYTES / item;
    size_t got;
    st = src_read(s, chunk, (size_t)want * item, &got);
    if (st == CN_OK && got < (size_t)want * item)
      st = cn_fail(CN_ERR_FORMAT, "%s: IDX data cut short: %lld of %lld values", s->name,
                   (long long)(done + (int64_t)got / item), (long long)numel);
    if (st == CN_OK) st = reserve(out, &cap, done + want, numel, s->name);
    for (int64_t k = 0; st == CN_OK && k < want; k++)
      (*out)[done + k] = value_at(chunk + k * item, type);
    done += want;
  }
  uint8_t extra;
  size_t got = 0;
  if (st == CN_OK) st = src_read(s, &extra, 1, &got);
  if (st == CN_OK && got)
    st = cn_fail(CN_ERR_FORMAT, "%s: data after the %lld values the IDX header announces", s->name,
                 (long long)numel);
  return st;
}

cn_status cn_idx_read_memory(const uint8_t *data, size_t size, const char *name, cn_shape *shape,
                             float **out) {
  if ((!data && size) || !name || !shape || !out)
    return cn_fail(CN_ERR_ARG, "cn_idx_read: NULL argument");
  *out = NULL;
  idx_src s;
  cn_status st = src_open(&s, data, size, name);
  uint8_t type = 0;
  int item = 0;
  if (st == CN_OK) st = read_header(&s, shape, &type, &item);
  if (st == CN_OK) st = read_values(&s, cn_shape_numel(shape), type, item, out);
  src_close(&s);
  if (st != CN_OK) {
    free(*out);
    *out = NULL;
  }
  return st;
}

cn_status cn_idx_read(const char *path, cn_shape *shape, float **data) {
  if (!path || !shape || !data) return cn_fail(CN_ERR_ARG, "cn_idx_read: NULL argument");
  *data = NULL;
  uint8_t *bytes;
  size_t size;
  cn_status st = cn_file_read_all(path, IDX_MAX_FILE, "an IDX file", &bytes, &size);
  if (st != CN_OK) return st;
  st = cn_idx_read_memory(bytes, size, path, shape, data);
  free(bytes);
  return st;
}
