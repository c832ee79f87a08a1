/* safetensors reading and writing (see safetensors.h for the checks made). */
#include "io/native/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/sha256.h"
#include "core/graph.h"
#include "core/mem.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes little-endian data in place"
#endif

enum { ST_DATA_ALIGN = 64 };
/* Integers in the header are JSON numbers, read as doubles: larger ones would lose precision. */
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */

static const char *const dtype_names[CN_ST_DTYPE_COUNT] = {"F32", "I64", "U8"};
static const size_t dtype_sizes[CN_ST_DTYPE_COUNT] = {4, 8, 1};

const char *cn_st_dtype_name(cn_st_dtype dtype) {
  return (unsigned)dtype < CN_ST_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

size_t cn_st_dtype_size(cn_st_dtype dtype) {
  return (unsigned)dtype < CN_ST_DTYPE_COUNT ? dtype_sizes[dtype] : 0;
}

/* numel * element size of a shape with non-negative dims, or 0 with *ok = 0 on overflow. */
static size_t shape_bytes(const cn_shape *s, cn_st_dtype dtype, int *ok) {
  size_t bytes = cn_st_dtype_size(dtype);
  *ok = s->rank >= 0 && s->rank <= CN_MAX_RANK;
  for (int i = 0; *ok && i < s->rank; i++)
    *ok = s->dim[i] >= 0 && (uint64_t)s->dim[i] <= SIZE_MAX &&
          cn_mul_size(bytes, (size_t)s->dim[i], &bytes);
  return *ok ? bytes : 0;
}

/* 1..CN_ST_MAX_NAME bytes without control characters (messages quote names on one line). */
static int is_valid_name(const char *name) {
  size_t n = 0;
  for (; name[n]; n++)
    if ((unsigned char)name[n] < 0x20 || n >= CN_ST_MAX_NAME) return 0;
  return n > 0;
}

/* ---- a growable text buffer for the header ----------------------------------------------- */

typedef struct strbuf {
  char *p;
  size_t len, cap;
  int failed;
} strbuf;

static void sb_add(strbuf *t, const char *s, size_t n) {
  if (t->failed) return;
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + n + 1) cap *= 2;
    char *p = realloc(t->p, cap);
    if (!p) {
      t->failed = 1;
      return;
    }
    t->p = p;
    t->cap = cap;
  }
  memcpy(t->p + t->len, s, n);
  t->len += n;
  t->p[t->len] = '\0';
}

static void sb_printf(strbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *t, const char *fmt, ...) {
  char buf[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < sizeof buf)
    sb_add(t, buf, (size_t)n);
  else
    t->failed = 1;
}

/* A JSON string: quotes, backslashes and control characters escaped, UTF-8 passed through. */
static void sb_json_string(strbuf *t, const char *s) {
  sb_add(t, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char)*p};
      sb_add(t, esc, 2);
    } else if (*p < 0x20) {
      sb_printf(t, "\\u%04x", *p);
    } else {
      sb_add(t, (const char *)p, 1);
    }
  }
  sb_add(t, "\"", 1);
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct write_plan {
  const cn_st_tensor *tensors;
  int n;
  int *order;    /* tensor indices in data order */
  size_t *bytes; /* per tensor */
  size_t data_size;
} write_plan;

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* NULL when the n names are unique, else one that repeats. */
static const char *find_duplicate(const char **names, int n) {
  qsort(names, (size_t)n, sizeof *names, compare_names);
  for (int i = 1; i < n; i++)
    if (strcmp(names[i - 1], names[i]) == 0) return names[i];
  return NULL;
}

static cn_status check_tensor(const char *path, const cn_st_tensor *t, size_t *bytes) {
  if (!t->name || !is_valid_name(t->name) || strcmp(t->name, CN_ST_METADATA_KEY) == 0)
    return cn_fail(CN_ERR_ARG, "%s: bad tensor name '%s'", path, t->name ? t->name : "(null)");
  if ((unsigned)t->dtype >= CN_ST_DTYPE_COUNT)
    return cn_fail(CN_ERR_ARG, "%s: %s: unknown dtype %d", path, t->name, (int)t->dtype);
  int ok;
  *bytes = shape_bytes(&t->shape, t->dtype, &ok);
  if (!ok) return cn_fail(CN_ERR_ARG, "%s: %s: bad or too large shape", path, t->name);
  if (*bytes && !t->data) return cn_fail(CN_ERR_ARG, "%s: %s: no data", path, t->name);
  return CN_OK;
}

static cn_status check_names(const char *path, const char **names, int n, const char *what) {
  const char *dup = find_duplicate(names, n);
  if (dup) return cn_fail(CN_ERR_ARG, "%s: %s '%s' given twice", path, what, dup);
  return CN_OK;
}

static cn_status check_meta(const char *path, const cn_st_meta *meta, int n_meta) {
  if (n_meta < 0 || (n_meta && !meta)) return cn_fail(CN_ERR_ARG, "%s: bad metadata", path);
  const char **keys = malloc((size_t)(n_meta ? n_meta : 1) * sizeof *keys);
  if (!keys) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  cn_status st = CN_OK;
  for (int i = 0; st == CN_OK && i < n_meta; i++) {
    keys[i] = meta[i].key;
    if (!meta[i].key || !meta[i].value || !is_valid_name(meta[i].key) ||
        strcmp(meta[i].key, CN_ST_CHECKSUM_KEY) == 0)
      st = cn_fail(CN_ERR_ARG, "%s: bad metadata key '%s'", path,
                   meta[i].key ? meta[i].key : "(null)");
  }
  if (st == CN_OK) st = check_names(path, keys, n_meta, "metadata key");
  free(keys);
  return st;
}

/* Validates the tensors and orders them by element size, largest first (stable), so that each
 * starts at a multiple of its element size. */
static cn_status plan_write(const char *path, const cn_st_tensor *tensors, int n, write_plan *p) {
  *p = (write_plan){.tensors = tensors, .n = n};
  if (n < 0 || (n && !tensors)) return cn_fail(CN_ERR_ARG, "%s: bad tensor list", path);
  size_t slots = (size_t)(n ? n : 1);
  p->order = malloc(slots * sizeof *p->order);
  p->bytes = malloc(slots * sizeof *p->bytes);
  const char **names = malloc(slots * sizeof *names);
  cn_status st =
      p->order && p->bytes && names ? CN_OK : cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  for (int i = 0; st == CN_OK && i < n; i++) {
    st = check_tensor(path, &tensors[i], &p->bytes[i]);
    names[i] = tensors[i].name;
  }
  if (st == CN_OK) st = check_names(path, names, n, "tensor name");
  free(names);
  int at = 0;
  for (int size = 8; st == CN_OK && size >= 1; size /= 2)
    for (int i = 0; i < n; i++)
      if (cn_st_dtype_size(tensors[i].dtype) == (size_t)size) p->order[at++] = i;
  for (int i = 0; st == CN_OK && i < n; i++) {
    if (p->data_size > SIZE_MAX - p->bytes[i])
      st = cn_fail(CN_ERR_LIMIT, "%s: tensors too large", path);
    else
      p->data_size += p->bytes[i];
  }
  return st;
}

static void plan_free(write_plan *p) {
  free(p->order);
  free(p->bytes);
}

static cn_status data_digest(const write_plan *p, char *hex) {
  cn_sha256 h;
  cn_status st = cn_sha256_begin(&h);
  for (int i = 0; st == CN_OK && i < p->n; i++) {
    int t = p->order[i];
    cn_sha256_add(&h, p->tensors[t].data, p->bytes[t]);
  }
  return st == CN_OK ? cn_sha256_hex(&h, hex) : st;
}

static void header_metadata(strbuf *t, const cn_st_meta *meta, int n_meta, const char *digest) {
  sb_add(t, "{\"" CN_ST_METADATA_KEY "\":{", 17);
  for (int i = 0; i < n_meta; i++) {
    sb_json_string(t, meta[i].key);
    sb_add(t, ":", 1);
    sb_json_string(t, meta[i].value);
    sb_add(t, ",", 1);
  }
  sb_printf(t, "\"%s\":\"%s\"}", CN_ST_CHECKSUM_KEY, digest);
}

static void header_tensor(strbuf *t, const cn_st_tensor *x, size_t begin, size_t end) {
  sb_add(t, ",", 1);
  sb_json_string(t, x->name);
  sb_printf(t, ":{\"dtype\":\"%s\",\"shape\":[", cn_st_dtype_name(x->dtype));
  for (int d = 0; d < x->shape.rank; d++)
    sb_printf(t, d ? ",%lld" : "%lld", (long long)x->shape.dim[d]);
  sb_printf(t, "],\"data_offsets\":[%zu,%zu]}", begin, end);
}

/* The header text, padded with spaces so that 8 + its length is a multiple of ST_DATA_ALIGN. */
static cn_status build_header(const char *path, const write_plan *p, const cn_st_meta *meta,
                              int n_meta, const char *digest, strbuf *t) {
  header_metadata(t, meta, n_meta, digest);
  size_t at = 0;
  for (int i = 0; i < p->n; i++) {
    int k = p->order[i];
    header_tensor(t, &p->tensors[k], at, at + p->bytes[k]);
    at += p->bytes[k];
  }
  sb_add(t, "}", 1);
  while (!t->failed && (8 + t->len) % ST_DATA_ALIGN) sb_add(t, " ", 1);
  if (t->failed) return cn_fail(CN_ERR_NOMEM, "%s: out of memory for the header", path);
  if (t->len > CN_ST_MAX_HEADER)
    return cn_fail(CN_ERR_LIMIT, "%s: header of %zu bytes (limit %zu)", path, t->len,
                   CN_ST_MAX_HEADER);
  return CN_OK;
}

static cn_status write_file(const char *path, const write_plan *p, const strbuf *header) {
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
  cn_atomic_file f;
  cn_status st = cn_atomic_open(&f, path);
  if (st != CN_OK) return st;
  st = cn_atomic_write(&f, len, sizeof len);
  if (st == CN_OK) st = cn_atomic_write(&f, header->p, header->len);
  for (int i = 0; st == CN_OK && i < p->n; i++)
    st = cn_atomic_write(&f, p->tensors[p->order[i]].data, p->bytes[p->order[i]]);
  if (st != CN_OK) {
    cn_atomic_abort(&f);
    return st;
  }
  return cn_atomic_commit(&f);
}

cn_status cn_safetensors_write(const char *path, const cn_st_tensor *tensors, int n,
                               const cn_st_meta *meta, int n_meta) {
  if (!path) return cn_fail(CN_ERR_ARG, "cn_safetensors_write: NULL path");
  write_plan p;
  char digest[CN_SHA256_HEX];
  strbuf header = {0};
  cn_status st = plan_write(path, tensors, n, &p);
  if (st == CN_OK) st = check_meta(path, meta, n_meta);
  if (st == CN_OK) st = data_digest(&p, digest);
  if (st == CN_OK) st = build_header(path, &p, meta, n_meta, digest, &header);
  if (st == CN_OK) st = write_file(path, &p, &header);
  free(header.p);
  plan_free(&p);
  return st;
}

/* ---- reading ------------------------------------------------------------------------------ */

struct cn_safetensors {
  char *path;
  void *map; /* the mapping when opened from a file */
  size_t map_size;
  const unsigned char *data; /* the data section */
  size_t data_size;
  cJSON *root;
  int n;
  cn_st_tensor *tensors;      /* by data offset */
  struct name_index *by_name; /* sorted by name */
  int n_meta;
  cn_st_meta *meta;
};

/* Tensor entries while parsing: the tensor and its offsets. */
typedef struct entry {
  cn_st_tensor t;
  uint64_t begin, end;
} entry;

static int json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= ST_MAX_JSON_INT) || d != floor(d)) return 0;
  *out = (uint64_t)d;
  return 1;
}

static cn_status parse_dtype(const char *path, const char *name, const cJSON *v, cn_st_dtype *out) {
  if (!cJSON_IsString(v))
    return cn_fail(CN_ERR_FORMAT, "%s: %s: dtype is not a string", path, name);
  for (int d = 0; d < CN_ST_DTYPE_COUNT; d++)
    if (strcmp(v->valuestring, dtype_names[d]) == 0) {
      *out = (cn_st_dtype)d;
      return CN_OK;
    }
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s: dtype '%.16s' (convnet reads F32, I64, U8)", path,
                 name, v->valuestring);
}

static cn_status parse_shape(const char *path, const char *name, const cJSON *v, cn_shape *s) {
  if (!cJSON_IsArray(v)) return cn_fail(CN_ERR_FORMAT, "%s: %s: shape is not an array", path, name);
  int rank = cJSON_GetArraySize(v);
  if (rank > CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s: rank %d (at most %d)", path, name, rank,
                   CN_MAX_RANK);
  s->rank = rank;
  int i = 0;
  for (const cJSON *d = v->child; d; d = d->next, i++) {
    uint64_t dim;
    if (!json_uint(d, &dim) || dim > INT64_MAX)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: dimension %d is not a non-negative integer", path,
                     name, i);
    s->dim[i] = (int64_t)dim;
  }
  return CN_OK;
}

static cn_status parse_offsets(const char *path, const char *name, const cJSON *v, entry *e) {
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !json_uint(v->child, &e->begin) ||
      !json_uint(v->child->next, &e->end) || e->begin > e->end)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: data_offsets is not [begin, end] with begin <= end",
                   path, name);
  return CN_OK;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry, nothing else in it. */
static cn_status parse_entry(const char *path, const cJSON *item, entry *e) {
  const char *name = item->string;
  if (!is_valid_name(name))
    return cn_fail(CN_ERR_FORMAT, "%s: a tensor name is empty, too long or has control characters",
                   path);
  if (!cJSON_IsObject(item)) return cn_fail(CN_ERR_FORMAT, "%s: %s: not an object", path, name);
  const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
  for (const cJSON *f = item->child; f; f = f->next) {
    const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                         : strcmp(f->string, "shape") == 0        ? &shape
                         : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                  : NULL;
    if (!slot || *slot)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: unexpected or repeated key '%.64s'", path, name,
                     f->string);
    *slot = f;
  }
  if (!dtype || !shape || !offsets)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: needs dtype, shape and data_offsets", path, name);
  e->t.name = name;
  cn_status st = parse_dtype(path, name, dtype, &e->t.dtype);
  if (st == CN_OK) st = parse_shape(path, name, shape, &e->t.shape);
  if (st == CN_OK) st = parse_offsets(path, name, offsets, e);
  if (st != CN_OK) return st;
  int ok;
  size_t bytes = shape_bytes(&e->t.shape, e->t.dtype, &ok);
  if (!ok || cn_shape_numel(&e->t.shape) < 0)
    return cn_fail(CN_ERR_LIMIT, "%s: %s: shape too large", path, name);
  if (bytes != e->end - e->begin)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: shape needs %zu bytes, data_offsets give %llu", path,
                   name, bytes, (unsigned long long)(e->end - e->begin));
  e->t.bytes = bytes;
  return CN_OK;
}

static cn_status parse_metadata(cn_safetensors *f, const cJSON *item) {
  if (!cJSON_IsObject(item))
    return cn_fail(CN_ERR_FORMAT, "%s: __metadata__ is not an object", f->path);
  int n = cJSON_GetArraySize(item);
  f->meta = malloc((size_t)(n ? n : 1) * sizeof *f->meta);
  if (!f->meta) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", f->path);
  for (const cJSON *m = item->child; m; m = m->next) {
    if (!is_valid_name(m->string))
      return cn_fail(CN_ERR_FORMAT,
                     "%s: a metadata key is empty, too long or has control characters", f->path);
    if (!cJSON_IsString(m))
      return cn_fail(CN_ERR_FORMAT, "%s: metadata '%.64s' is not a string", f->path, m->string);
    f->meta[f->n_meta++] = (cn_st_meta){m->string, m->valuestring};
  }
  /* Repeated keys: sort a copy of the keys (the entries keep header order). */
  const char **keys = malloc((size_t)(n ? n : 1) * sizeof *keys);
  if (!keys) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", f->path);
  for (int i = 0; i < n; i++) keys[i] = f->meta[i].key;
  const char *dup = find_duplicate(keys, n);
  cn_status st =
      dup ? cn_fail(CN_ERR_FORMAT, "%s: metadata '%.64s' given twice", f->path, dup) : CN_OK;
  free(keys);
  return st;
}

static int compare_begin(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Sorted by offset, the entries must tile [0, data_size) exactly: no gap, no overlap. */
static cn_status check_layout(cn_safetensors *f, entry *e, int n) {
  qsort(e, (size_t)n, sizeof *e, compare_begin);
  uint64_t at = 0;
  for (int i = 0; i < n; i++) {
    if (e[i].begin != at)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: data_offsets [%llu, %llu] %s", f->path, e[i].t.name,
                     (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                     e[i].begin < at ? "overlap another tensor" : "leave a gap before it");
    if (e[i].end > f->data_size)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: data_offsets end %llu beyond the %zu data bytes",
                     f->path, e[i].t.name, (unsigned long long)e[i].end, f->data_size);
    at = e[i].end;
  }
  if (at != f->data_size)
    return cn_fail(CN_ERR_FORMAT, "%s: %zu data bytes, the tensors cover %llu", f->path,
                   f->data_size, (unsigned long long)at);
  return CN_OK;
}

typedef struct name_index {
  const char *name; /* first, so that compare_names sorts these */
  int index;
} name_index;

/* Builds the name index; cJSON keeps repeated keys, so duplicates are found here. */
static cn_status index_names(cn_safetensors *f) {
  f->by_name = malloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
  if (!f->by_name) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", f->path);
  for (int i = 0; i < f->n; i++) f->by_name[i] = (name_index){f->tensors[i].name, i};
  qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, compare_names);
  for (int i = 1; i < f->n; i++)
    if (strcmp(f->by_name[i - 1].name, f->by_name[i].name) == 0)
      return cn_fail(CN_ERR_FORMAT, "%s: tensor '%.64s' given twice", f->path, f->by_name[i].name);
  return CN_OK;
}

static cn_status parse_entries(cn_safetensors *f) {
  int n = cJSON_GetArraySize(f->root);
  entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
  if (!e) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", f->path);
  cn_status st = CN_OK;
  int count = 0, have_meta = 0;
  for (const cJSON *item = f->root->child; st == CN_OK && item; item = item->next) {
    if (strcmp(item->string, CN_ST_METADATA_KEY) == 0) {
      st = have_meta++ ? cn_fail(CN_ERR_FORMAT, "%s: __metadata__ given twice", f->path)
                       : parse_metadata(f, item);
    } else {
      st = parse_entry(f->path, item, &e[count++]);
    }
  }
  if (st == CN_OK) st = check_layout(f, e, count);
  if (st == CN_OK) {
    f->tensors = malloc((size_t)(count ? count : 1) * sizeof *f->tensors);
    if (!f->tensors) st = cn_fail(CN_ERR_NOMEM, "%s: out of memory", f->path);
  }
  for (int i = 0; st == CN_OK && i < count; i++) {
    f->tensors[i] = e[i].t;
    f->tensors[i].data = f->data + e[i].begin;
  }
  if (st == CN_OK) f->n = count;
  free(e);
  return st == CN_OK ? index_names(f) : st;
}

/* The header: JSON object, then only the spaces safetensors allows as padding. */
static cn_status parse_header(cn_safetensors *f, const char *text, size_t len) {
  const char *end = NULL;
  if (len == 0 || text[0] != '{')
    return cn_fail(CN_ERR_FORMAT, "%s: the header is not a JSON object", f->path);
  f->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!f->root || !cJSON_IsObject(f->root))
    return cn_fail(CN_ERR_FORMAT, "%s: the header is not valid JSON", f->path);
  for (const char *p = end; p < text + len; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
      return cn_fail(CN_ERR_FORMAT, "%s: bytes after the header's JSON object", f->path);
  return parse_entries(f);
}

static cn_status verify_checksum(const cn_safetensors *f) {
  const char *want = cn_safetensors_meta(f, CN_ST_CHECKSUM_KEY);
  if (!want) return CN_OK;
  char hex[CN_SHA256_HEX];
  if (cn_sha256_of(f->data, f->data_size, hex) != CN_OK)
    return cn_fail(CN_ERR_NOMEM, "%s: SHA-256 failed", f->path);
  if (strcmp(hex, want) != 0)
    return cn_fail(CN_ERR_CHECKSUM,
                   "%s: data checksum mismatch (the file is damaged or was changed): sha256 %s, "
                   "header says %.64s",
                   f->path, hex, want);
  return CN_OK;
}

static cn_status parse_file(cn_safetensors *f, const unsigned char *bytes, size_t size) {
  if (size < 8) return cn_fail(CN_ERR_FORMAT, "%s: truncated safetensors header length", f->path);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)bytes[i] << (8 * i);
  if (hlen > CN_ST_MAX_HEADER)
    return cn_fail(CN_ERR_LIMIT, "%s: header of %llu bytes (limit %zu)", f->path,
                   (unsigned long long)hlen, CN_ST_MAX_HEADER);
  if (hlen > size - 8)
    return cn_fail(CN_ERR_FORMAT, "%s: header of %llu bytes in a file of %zu", f->path,
                   (unsigned long long)hlen, size);
  f->data = bytes + 8 + hlen;
  f->data_size = size - 8 - (size_t)hlen;
  cn_status st = parse_header(f, (const char *)bytes + 8, (size_t)hlen);
  return st == CN_OK ? verify_checksum(f) : st;
}

static cn_safetensors *handle_new(const char *name) {
  cn_safetensors *f = calloc(1, sizeof *f);
  if (f) f->path = strdup(name ? name : "(memory)");
  if (!f || !f->path) {
    free(f);
    cn_fail(CN_ERR_NOMEM, "out of memory");
    return NULL;
  }
  return f;
}

cn_status cn_safetensors_open_memory(const void *bytes, size_t size, const char *name,
                                     cn_safetensors **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_safetensors_open_memory: NULL output");
  *out = NULL;
  if (!bytes && size) return cn_fail(CN_ERR_ARG, "cn_safetensors_open_memory: NULL bytes");
  cn_safetensors *f = handle_new(name);
  if (!f) return CN_ERR_NOMEM;
  cn_status st = parse_file(f, bytes, size);
  if (st != CN_OK) {
    cn_safetensors_close(f);
    return st;
  }
  *out = f;
  return CN_OK;
}

static cn_status map_file(cn_safetensors *f) {
  int fd = open(f->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cn_fail(CN_ERR_IO, "%s: %s", f->path, strerror(errno));
  struct stat sb;
  cn_status st = CN_OK;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
    st = cn_fail(CN_ERR_IO, "%s: not a regular file", f->path);
  else if ((uint64_t)sb.st_size > SIZE_MAX)
    st = cn_fail(CN_ERR_LIMIT, "%s: file too large", f->path);
  if (st == CN_OK && sb.st_size > 0) {
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
      st = cn_fail(CN_ERR_IO, "%s: mmap: %s", f->path, strerror(errno));
    else
      f->map = map, f->map_size = (size_t)sb.st_size;
  }
  close(fd);
  return st;
}

cn_status cn_safetensors_open(const char *path, cn_safetensors **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_safetensors_open: NULL output");
  *out = NULL;
  if (!path) return cn_fail(CN_ERR_ARG, "cn_safetensors_open: NULL path");
  cn_safetensors *f = handle_new(path);
  if (!f) return CN_ERR_NOMEM;
  cn_status st = map_file(f);
  if (st == CN_OK) st = parse_file(f, f->map, f->map_size);
  if (st != CN_OK) {
    cn_safetensors_close(f);
    return st;
  }
  *out = f;
  return CN_OK;
}

void cn_safetensors_close(cn_safetensors *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_size);
  cJSON_Delete(f->root);
  free(f->tensors);
  free(f->by_name);
  free(f->meta);
  free(f->path);
  free(f);
}

const char *cn_safetensors_path(const cn_safetensors *f) {
  return f->path;
}

int cn_safetensors_count(const cn_safetensors *f) {
  return f->n;
}

const cn_st_tensor *cn_safetensors_at(const cn_safetensors *f, int index) {
  return index >= 0 && index < f->n ? &f->tensors[index] : NULL;
}

const cn_st_tensor *cn_safetensors_find(const cn_safetensors *f, const char *name) {
  int lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(name, f->by_name[mid].name);
    if (c == 0) return &f->tensors[f->by_name[mid].index];
    if (c < 0)
      hi = mid - 1;
    else
      lo = mid + 1;
  }
  return NULL;
}

int cn_safetensors_meta_count(const cn_safetensors *f) {
  return f->n_meta;
}

const cn_st_meta *cn_safetensors_meta_at(const cn_safetensors *f, int index) {
  return index >= 0 && index < f->n_meta ? &f->meta[index] : NULL;
}

const char *cn_safetensors_meta(const cn_safetensors *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
  return NULL;
}

cn_status cn_safetensors_read(const cn_safetensors *f, const char *name, cn_st_dtype dtype,
                              const cn_shape *shape, void *dst) {
  const cn_st_tensor *t = cn_safetensors_find(f, name);
  if (!t) return cn_fail(CN_ERR_FORMAT, "%s: no tensor '%s'", f->path, name);
  if (t->dtype != dtype)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: expected dtype %s, file has %s", f->path, name,
                   cn_st_dtype_name(dtype), cn_st_dtype_name(t->dtype));
  if (!cn_shape_equal(&t->shape, shape)) {
    char want[96], have[96];
    return cn_fail(CN_ERR_SHAPE, "%s: %s: expected %s, file has %s", f->path, name,
                   cn_shape_format(shape, want, sizeof want),
                   cn_shape_format(&t->shape, have, sizeof have));
  }
  if (t->bytes) memcpy(dst, t->data, t->bytes);
  return CN_OK;
}
