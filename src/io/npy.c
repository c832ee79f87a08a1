/* NumPy .npy files: reading little-endian float32/float64 C-order arrays (format 1.0, 2.0, 3.0)
 * and writing float32 (format 1.0) atomically. The header is a Python dict literal; it is parsed
 * strictly (exact keys, exact value forms) and the data size is checked against the file size
 * before any buffer is allocated. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convnet/io.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mem.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads and writes little-endian data in place"
#endif

enum {
  NPY_MAGIC_LEN = 6,
  NPY_MAX_HEADER = 1 << 16, /* numpy itself refuses headers above 10000 bytes by default */
  NPY_HEADER_ALIGN = 64,
};
static const char npy_magic[NPY_MAGIC_LEN] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Largest array read, in bytes of the file's data (4 GiB). */
#define NPY_MAX_DATA ((int64_t)1 << 32)

/* Element kinds read; integers and booleans become floats (exact up to 2^24: shapes, indices). */
typedef enum npy_kind { NPY_FLOAT, NPY_INT, NPY_UINT } npy_kind;

typedef struct npy_header {
  npy_kind kind;
  int item_size; /* floats 4 or 8; integers 1, 2, 4 or 8 */
  int fortran;
  cn_shape shape;
  int have_descr, have_fortran, have_shape;
} npy_header;

/* ---- header parsing: a tiny cursor over "{'descr': '<f4', 'fortran_order': False, ...}" ---- */

typedef struct cursor {
  const char *p, *end;
} cursor;

static void skip_space(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n')) c->p++;
}

static int accept(cursor *c, char ch) {
  skip_space(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A quoted Python string without escapes into buf. */
static int parse_string(cursor *c, char *buf, size_t cap) {
  skip_space(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char quote = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != quote) {
    if (*c->p == '\\' || n + 1 >= cap) return 0;
    buf[n++] = *c->p++;
  }
  if (c->p >= c->end) return 0;
  c->p++;
  buf[n] = '\0';
  return 1;
}

static int parse_word(cursor *c, const char *word) {
  skip_space(c);
  size_t n = strlen(word);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
  c->p += n;
  return 1;
}

/* A non-negative decimal dimension of at most 18 digits. */
static int parse_dim(cursor *c, int64_t *out) {
  skip_space(c);
  int64_t v = 0;
  int digits = 0;
  while (c->p < c->end && isdigit((unsigned char)*c->p)) {
    if (++digits > 18) return 0;
    v = v * 10 + (*c->p++ - '0');
  }
  *out = v;
  return digits > 0;
}

/* "()" or "(n,)" or "(a, b, c)" with an optional trailing comma. */
static int parse_shape(cursor *c, cn_shape *shape) {
  if (!accept(c, '(')) return 0;
  shape->rank = 0;
  if (accept(c, ')')) return 1;
  for (;;) {
    if (shape->rank >= CN_MAX_RANK) return 0;
    if (!parse_dim(c, &shape->dim[shape->rank++])) return 0;
    int comma = accept(c, ',');
    if (accept(c, ')')) return shape->rank > 1 || comma; /* "(5)" is an int, not a tuple */
    if (!comma) return 0;
  }
}

/* '<f4', '<f8', '<i8', '|u1', '|b1', ...: 1 when read. Single bytes have no byte order ('|'). */
static int parse_descr(const char *d, npy_header *h) {
  if (strlen(d) != 3 || (d[0] != '<' && d[0] != '|')) return 0;
  int size = d[2] - '0';
  if (size != 1 && size != 2 && size != 4 && size != 8) return 0;
  if ((d[0] == '|') != (size == 1)) return 0;
  h->item_size = size;
  switch (d[1]) {
  case 'f':
    h->kind = NPY_FLOAT;
    return size == 4 || size == 8;
  case 'i':
    h->kind = NPY_INT;
    return 1;
  case 'u':
  case 'b':
    h->kind = NPY_UINT;
    return d[1] == 'u' || size == 1;
  default:
    return 0;
  }
}

static cn_status parse_entry(const char *path, cursor *c, npy_header *h) {
  char key[32], descr[16];
  if (!parse_string(c, key, sizeof key) || !accept(c, ':'))
    return cn_fail(CN_ERR_FORMAT, "%s: malformed .npy header", path);
  if (strcmp(key, "descr") == 0 && !h->have_descr) {
    h->have_descr = 1;
    if (!parse_string(c, descr, sizeof descr))
      return cn_fail(CN_ERR_FORMAT, "%s: malformed 'descr' in .npy header", path);
    if (!parse_descr(descr, h))
      return cn_fail(CN_ERR_UNSUPPORTED,
                     "%s: dtype '%s' (float32/64, integers and bool are read, little-endian)", path,
                     descr);
  } else if (strcmp(key, "fortran_order") == 0 && !h->have_fortran) {
    h->have_fortran = 1;
    if (parse_word(c, "True"))
      h->fortran = 1;
    else if (!parse_word(c, "False"))
      return cn_fail(CN_ERR_FORMAT, "%s: malformed 'fortran_order' in .npy header", path);
  } else if (strcmp(key, "shape") == 0 && !h->have_shape) {
    h->have_shape = 1;
    if (!parse_shape(c, &h->shape))
      return cn_fail(CN_ERR_FORMAT, "%s: malformed 'shape' in .npy header (rank at most %d)", path,
                     CN_MAX_RANK);
  } else {
    return cn_fail(CN_ERR_FORMAT, "%s: unexpected or repeated key '%s' in .npy header", path, key);
  }
  return CN_OK;
}

static cn_status parse_header(const char *path, const char *text, size_t len, npy_header *h) {
  cursor c = {text, text + len};
  memset(h, 0, sizeof *h);
  if (!accept(&c, '{')) return cn_fail(CN_ERR_FORMAT, "%s: .npy header is not a dict", path);
  while (!accept(&c, '}')) {
    cn_status st = parse_entry(path, &c, h);
    if (st != CN_OK) return st;
    if (!accept(&c, ',')) {
      if (!accept(&c, '}')) return cn_fail(CN_ERR_FORMAT, "%s: malformed .npy header", path);
      break;
    }
  }
  skip_space(&c);
  if (c.p != c.end) return cn_fail(CN_ERR_FORMAT, "%s: data after the .npy header dict", path);
  if (!h->have_descr || !h->have_fortran || !h->have_shape)
    return cn_fail(CN_ERR_FORMAT, "%s: .npy header lacks descr, fortran_order or shape", path);
  if (h->fortran)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: Fortran-order array (save it in C order)", path);
  return CN_OK;
}

/* ---- reading ---- */

static cn_status read_exact(FILE *f, const char *path, void *buf, size_t n, const char *what) {
  if (fread(buf, 1, n, f) != n)
    return cn_fail(ferror(f) ? CN_ERR_IO : CN_ERR_FORMAT, "%s: truncated %s", path, what);
  return CN_OK;
}

/* Reads magic, version and header; *data_offset is where the array starts. */
static cn_status read_header(FILE *f, const char *path, npy_header *h, long *data_offset) {
  unsigned char pre[NPY_MAGIC_LEN + 2], len_bytes[4];
  cn_status st = read_exact(f, path, pre, sizeof pre, ".npy preamble");
  if (st != CN_OK) return st;
  if (memcmp(pre, npy_magic, NPY_MAGIC_LEN) != 0)
    return cn_fail(CN_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
  int major = pre[NPY_MAGIC_LEN];
  if (major < 1 || major > 3)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: .npy format version %d.%d", path, major,
                   pre[NPY_MAGIC_LEN + 1]);
  size_t len_size = major == 1 ? 2 : 4;
  st = read_exact(f, path, len_bytes, len_size, ".npy header length");
  if (st != CN_OK) return st;
  uint32_t hlen = len_bytes[0] | (uint32_t)len_bytes[1] << 8;
  if (len_size == 4) hlen |= (uint32_t)len_bytes[2] << 16 | (uint32_t)len_bytes[3] << 24;
  if (hlen > NPY_MAX_HEADER)
    return cn_fail(CN_ERR_LIMIT, "%s: .npy header of %u bytes (limit %d)", path, hlen,
                   NPY_MAX_HEADER);
  char *text = malloc(hlen + 1);
  if (!text) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  st = read_exact(f, path, text, hlen, ".npy header");
  if (st == CN_OK) st = parse_header(path, text, hlen, h);
  free(text);
  *data_offset = (long)(sizeof pre + len_size + hlen);
  return st;
}

/* Little-endian element i of raw as a float. */
static float element(const unsigned char *raw, size_t i, const npy_header *h) {
  const unsigned char *p = raw + i * (size_t)h->item_size;
  uint64_t u = 0;
  for (int b = h->item_size - 1; b >= 0; b--) u = u << 8 | p[b];
  if (h->kind == NPY_FLOAT) {
    double d;
    memcpy(&d, &u, 8);
    return (float)d;
  }
  if (h->kind == NPY_UINT) return (float)u;
  int shift = 64 - 8 * h->item_size; /* sign-extend */
  return (float)((int64_t)(u << shift) >> shift);
}

static void widen(const unsigned char *raw, float *out, size_t n, const npy_header *h) {
  for (size_t i = 0; i < n; i++) out[i] = element(raw, i, h);
}

static cn_status read_data(FILE *f, const char *path, const npy_header *h, size_t numel,
                           float **data) {
  float *out = cn_alloc_aligned((numel ? numel : 1) * sizeof(float));
  if (!out) return cn_fail(CN_ERR_NOMEM, "%s: out of memory for %zu floats", path, numel);
  cn_status st = CN_OK;
  if (h->item_size == 4 && h->kind == NPY_FLOAT) {
    st = read_exact(f, path, out, numel * 4, ".npy data");
  } else {
    enum { CHUNK = 4096 };
    unsigned char raw[CHUNK * 8];
    for (size_t done = 0; st == CN_OK && done < numel; done += CHUNK) {
      size_t n = numel - done < CHUNK ? numel - done : CHUNK;
      st = read_exact(f, path, raw, n * (size_t)h->item_size, ".npy data");
      if (st == CN_OK) widen(raw, out + done, n, h);
    }
  }
  if (st != CN_OK) {
    cn_free_aligned(out);
    return st;
  }
  *data = out;
  return CN_OK;
}

cn_status cn_npy_read(const char *path, cn_shape *shape, float **data) {
  if (!path || !shape || !data) return cn_fail(CN_ERR_ARG, "cn_npy_read: NULL argument");
  *data = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return cn_fail(CN_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  npy_header h;
  long offset = 0;
  cn_status st = CN_OK;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
    st = cn_fail(CN_ERR_IO, "%s: not a regular file", path);
  if (st == CN_OK) st = read_header(f, path, &h, &offset);
  int64_t numel = st == CN_OK ? cn_shape_numel(&h.shape) : 0;
  if (st == CN_OK && (numel < 0 || numel > NPY_MAX_DATA / h.item_size))
    st = cn_fail(CN_ERR_LIMIT, "%s: array too large", path);
  if (st == CN_OK && (int64_t)sb.st_size - offset != numel * h.item_size)
    st = cn_fail(CN_ERR_FORMAT, "%s: shape says %lld data bytes, the file holds %lld", path,
                 (long long)(numel * h.item_size), (long long)(sb.st_size - offset));
  if (st == CN_OK) st = read_data(f, path, &h, (size_t)numel, data);
  fclose(f);
  if (st == CN_OK) *shape = h.shape;
  return st;
}

/* ---- writing ---- */

/* "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" padded with spaces and a final
 * newline so that the data starts at a multiple of NPY_HEADER_ALIGN bytes. */
static cn_status format_header(const cn_shape *shape, char *buf, size_t cap, size_t *len) {
  char dims[CN_MAX_RANK * 24 + 4] = "(";
  for (int i = 0; i < shape->rank; i++) {
    size_t at = strlen(dims);
    snprintf(dims + at, sizeof dims - at, i ? ", %lld" : "%lld", (long long)shape->dim[i]);
  }
  strcat(dims, shape->rank == 1 ? ",)" : ")");
  int n = snprintf(buf, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }", dims);
  size_t prefix = NPY_MAGIC_LEN + 2 + 2;
  size_t total =
      (prefix + (size_t)n + 1 + NPY_HEADER_ALIGN - 1) / NPY_HEADER_ALIGN * NPY_HEADER_ALIGN;
  size_t hlen = total - prefix;
  if (hlen >= cap) return cn_fail(CN_ERR_LIMIT, "npy header too long");
  memset(buf + n, ' ', hlen - 1 - (size_t)n);
  buf[hlen - 1] = '\n';
  *len = hlen;
  return CN_OK;
}

static cn_status write_npy(cn_atomic_file *f, const cn_shape *shape, const float *data,
                           size_t numel) {
  char header[512];
  size_t hlen = 0;
  cn_status st = format_header(shape, header, sizeof header, &hlen);
  if (st != CN_OK) return st;
  unsigned char pre[NPY_MAGIC_LEN + 4];
  memcpy(pre, npy_magic, NPY_MAGIC_LEN);
  pre[6] = 1;
  pre[7] = 0;
  pre[8] = (unsigned char)(hlen & 0xff);
  pre[9] = (unsigned char)(hlen >> 8);
  st = cn_atomic_write(f, pre, sizeof pre);
  if (st == CN_OK) st = cn_atomic_write(f, header, hlen);
  if (st == CN_OK) st = cn_atomic_write(f, data, numel * sizeof(float));
  return st;
}

cn_status cn_npy_write(const char *path, const cn_shape *shape, const float *data) {
  if (!path || !shape || (!data && cn_shape_numel(shape) != 0))
    return cn_fail(CN_ERR_ARG, "cn_npy_write: NULL argument");
  if (shape->rank < 0 || shape->rank > CN_MAX_RANK)
    return cn_fail(CN_ERR_ARG, "%s: rank %d", path, shape->rank);
  for (int i = 0; i < shape->rank; i++)
    if (shape->dim[i] < 0) return cn_fail(CN_ERR_ARG, "%s: negative dimension", path);
  int64_t numel = cn_shape_numel(shape);
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / sizeof(float))
    return cn_fail(CN_ERR_LIMIT, "%s: array too large", path);
  cn_atomic_file f;
  cn_status st = cn_atomic_open(&f, path);
  if (st != CN_OK) return st;
  st = write_npy(&f, shape, data, (size_t)numel);
  if (st != CN_OK) {
    cn_atomic_abort(&f);
    return st;
  }
  return cn_atomic_commit(&f);
}
