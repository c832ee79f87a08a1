/* PyTorch checkpoints (.pth/.pt): the zip format (torch >= 1.6: <dir>/data.pkl plus one entry
 * <dir>/data/<key> per storage) and the legacy stream format (magic number, protocol and
 * sys_info pickles, the state_dict pickle, the list of storage keys, then each storage as an
 * int64 element count and its bytes). Both end in the same place: a list of named float tensors,
 * with strides honoured, and every offset and size checked against the storage it reads. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "core/error.h"
#include "core/mem.h"
#include "model/model.h"
#include "io/pytorch/internal.h"
#include "ops/ops.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pth.c reads little-endian storages in place: add byte swapping for this host"
#endif

/* A storage: the bytes of one key, in the mapped file (legacy) or read from the zip. */
typedef struct pt_storage {
  const char *key; /* owned by the unpickler */
  cn_pt_dtype dtype;
  int64_t numel;
  const uint8_t *bytes;
  uint8_t *owned;
} pt_storage;

typedef struct pt_reader {
  const char *name;
  pk_unpickler u;
  pt_storage *st;
  size_t n_st;
  uint64_t total_bytes;
  uint64_t zip_bytes; /* size of the zip archive being read */
} pt_reader;

static int storage_cmp(const void *a, const void *b) {
  return strcmp(((const pt_storage *)a)->key, ((const pt_storage *)b)->key);
}

static pt_storage *find_storage(pt_reader *r, const char *key) {
  pt_storage probe = {.key = key};
  if (r->n_st == 0) return NULL; /* no table at all: bsearch must not see a NULL base */
  return bsearch(&probe, r->st, r->n_st, sizeof *r->st, storage_cmp);
}

/* The distinct storages the pickle refers to, sorted by key; one key must keep one type. */
static cn_status collect_storages(pt_reader *r) {
  size_t n = 0;
  for (pk_obj *o = r->u.objects; o; o = o->next_alloc) n += o->kind == PK_STORAGE;
  if (n == 0) return CN_OK;
  r->st = calloc(n, sizeof *r->st);
  if (!r->st) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", r->name);
  for (pk_obj *o = r->u.objects; o; o = o->next_alloc)
    if (o->kind == PK_STORAGE)
      r->st[r->n_st++] = (pt_storage){.key = o->s, .dtype = o->dtype, .numel = o->numel};
  qsort(r->st, r->n_st, sizeof *r->st, storage_cmp);
  size_t out = 0;
  for (size_t i = 0; i < r->n_st; i++) {
    if (out && strcmp(r->st[out - 1].key, r->st[i].key) == 0) {
      if (r->st[out - 1].dtype != r->st[i].dtype || r->st[out - 1].numel != r->st[i].numel)
        return cn_fail(CN_ERR_FORMAT, "%s: storage %s declared with two types or sizes", r->name,
                       r->st[i].key);
      continue;
    }
    r->st[out++] = r->st[i];
  }
  r->n_st = out;
  return CN_OK;
}

/* Bytes the storage's declared elements need, checked against the limits. */
static cn_status storage_need(pt_reader *r, const pt_storage *s, uint64_t *bytes) {
  size_t es = cn_pt_dtype_size(s->dtype);
  if ((uint64_t)s->numel > CN_PT_MAX_STORAGE / es)
    return cn_fail(CN_ERR_LIMIT, "%s: storage %s of %lld elements is too large", r->name, s->key,
                   (long long)s->numel);
  *bytes = (uint64_t)s->numel * es;
  r->total_bytes += *bytes;
  if (r->total_bytes > CN_PT_MAX_TOTAL)
    return cn_fail(CN_ERR_LIMIT, "%s: storages exceed %llu bytes in total", r->name,
                   (unsigned long long)CN_PT_MAX_TOTAL);
  return CN_OK;
}

/* ---- legacy format --------------------------------------------------------------------------- */

/* 0x1950a86a20f9469cfc6c, as LONG1 writes it (little-endian). */
static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

static cn_status legacy_header(pt_reader *r, const uint8_t *data, size_t size, size_t *pos) {
  pk_obj *magic = NULL, *proto = NULL, *info = NULL;
  cn_status st = pk_load(&r->u, data, size, pos, &magic);
  if (st != CN_OK) return st;
  if (magic->kind != PK_BIGINT || magic->len != sizeof legacy_magic ||
      memcmp(magic->raw, legacy_magic, sizeof legacy_magic) != 0)
    return cn_fail(CN_ERR_FORMAT, "%s: not a PyTorch file (bad magic number)", r->name);
  if ((st = pk_load(&r->u, data, size, pos, &proto)) != CN_OK) return st;
  if (proto->kind != PK_INT || proto->i != 1001)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: legacy protocol version is not 1001", r->name);
  if ((st = pk_load(&r->u, data, size, pos, &info)) != CN_OK) return st;
  pk_obj *little = pk_dict_get(info, "little_endian");
  if (info->kind != PK_DICT || (little && (little->kind != PK_BOOL || !little->i)))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: not a little-endian checkpoint", r->name);
  return CN_OK;
}

/* After the key list: for each key, int64 element count then the bytes, in list order. */
static cn_status legacy_storages(pt_reader *r, const pk_obj *keys, const uint8_t *data, size_t size,
                                 size_t pos) {
  if (keys->kind != PK_LIST) return cn_fail(CN_ERR_FORMAT, "%s: no storage key list", r->name);
  for (size_t i = 0; i < keys->n; i++) {
    if (keys->items[i]->kind != PK_STR)
      return cn_fail(CN_ERR_FORMAT, "%s: storage key is not a string", r->name);
    pt_storage *s = find_storage(r, keys->items[i]->s);
    if (!s) return cn_fail(CN_ERR_FORMAT, "%s: storage %s is not used", r->name, keys->items[i]->s);
    if (s->bytes) return cn_fail(CN_ERR_FORMAT, "%s: storage %s listed twice", r->name, s->key);
    if (size - pos < 8)
      return cn_fail(CN_ERR_FORMAT, "%s: truncated at storage %s", r->name, s->key);
    int64_t numel;
    memcpy(&numel, data + pos, 8);
    pos += 8;
    if (numel != s->numel)
      return cn_fail(CN_ERR_FORMAT, "%s: storage %s holds %lld elements, the pickle says %lld",
                     r->name, s->key, (long long)numel, (long long)s->numel);
    uint64_t bytes = 0;
    cn_status st = storage_need(r, s, &bytes);
    if (st != CN_OK) return st;
    if (size - pos < bytes)
      return cn_fail(CN_ERR_FORMAT, "%s: truncated in storage %s", r->name, s->key);
    s->bytes = data + pos;
    pos += (size_t)bytes;
  }
  return CN_OK;
}

static cn_status read_legacy(pt_reader *r, const uint8_t *data, size_t size, pk_obj **root) {
  size_t pos = 0;
  pk_obj *keys = NULL;
  cn_status st = legacy_header(r, data, size, &pos);
  if (st == CN_OK) st = pk_load(&r->u, data, size, &pos, root);
  if (st == CN_OK) st = pk_load(&r->u, data, size, &pos, &keys);
  if (st == CN_OK) st = collect_storages(r);
  if (st == CN_OK) st = legacy_storages(r, keys, data, size, pos);
  return st;
}

/* ---- zip format ------------------------------------------------------------------------------ */

#define PT_MAX_ZIP_ENTRIES 1000000

/* Reads entry index whole into a new buffer of exactly its stated size (at most cap bytes). */
static cn_status zip_read_entry(pt_reader *r, zip_t *z, zip_int64_t index, uint64_t cap,
                                uint8_t **out, uint64_t *size) {
  zip_stat_t zs;
  if (zip_stat_index(z, (zip_uint64_t)index, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
    return cn_fail(CN_ERR_FORMAT, "%s: zip entry %lld unreadable", r->name, (long long)index);
  if (zs.size > cap)
    return cn_fail(CN_ERR_LIMIT, "%s: zip entry %s of %llu bytes exceeds %llu", r->name, zs.name,
                   (unsigned long long)zs.size, (unsigned long long)cap);
  /* The stated size comes from the header: bound it by the bytes behind it (deflate expands at
   * most 1032:1) before allocating, so that a small file cannot ask for gigabytes. */
  if (!(zs.valid & ZIP_STAT_COMP_SIZE) || zs.comp_size > r->zip_bytes ||
      zs.size / 1032 > zs.comp_size)
    return cn_fail(CN_ERR_FORMAT, "%s: zip entry %s claims %llu bytes from %llu compressed",
                   r->name, zs.name, (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
  uint8_t *buf = malloc(zs.size ? (size_t)zs.size : 1);
  if (!buf) return cn_fail(CN_ERR_NOMEM, "%s: out of memory for %s", r->name, zs.name);
  zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)index, 0);
  zip_int64_t got = f ? zip_fread(f, buf, zs.size) : -1;
  if (f) zip_fclose(f);
  if (got < 0 || (zip_uint64_t)got != zs.size) {
    free(buf);
    return cn_fail(CN_ERR_FORMAT, "%s: zip entry %s is damaged or truncated", r->name, zs.name);
  }
  *out = buf;
  *size = zs.size;
  return CN_OK;
}

/* The entry "<dir>/data.pkl" at the top level of the archive; dir is written to prefix. */
static cn_status zip_find_pickle(pt_reader *r, zip_t *z, char *prefix, size_t cap,
                                 zip_int64_t *index) {
  zip_int64_t n = zip_get_num_entries(z, 0);
  if (n < 0 || n > PT_MAX_ZIP_ENTRIES)
    return cn_fail(CN_ERR_LIMIT, "%s: zip with %lld entries", r->name, (long long)n);
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name(z, (zip_uint64_t)i, 0);
    const char *slash = name ? strchr(name, '/') : NULL;
    if (!slash || strcmp(slash, "/data.pkl") != 0 || (size_t)(slash - name) >= cap) continue;
    memcpy(prefix, name, (size_t)(slash - name));
    prefix[slash - name] = 0;
    *index = i;
    return CN_OK;
  }
  return cn_fail(CN_ERR_FORMAT, "%s: zip file without <dir>/data.pkl (not a torch.save file)",
                 r->name);
}

static cn_status zip_check_byteorder(pt_reader *r, zip_t *z, const char *prefix) {
  char name[600];
  snprintf(name, sizeof name, "%s/byteorder", prefix);
  zip_int64_t i = zip_name_locate(z, name, 0);
  if (i < 0) return CN_OK; /* written since torch 1.12; older files are little-endian */
  uint8_t *buf = NULL;
  uint64_t size = 0;
  cn_status st = zip_read_entry(r, z, i, 16, &buf, &size);
  if (st != CN_OK) return st;
  int little = size == 6 && memcmp(buf, "little", 6) == 0;
  free(buf);
  if (!little) return cn_fail(CN_ERR_UNSUPPORTED, "%s: not a little-endian checkpoint", r->name);
  return CN_OK;
}

static cn_status zip_storages(pt_reader *r, zip_t *z, const char *prefix) {
  for (size_t i = 0; i < r->n_st; i++) {
    pt_storage *s = &r->st[i];
    char name[1200];
    snprintf(name, sizeof name, "%s/data/%s", prefix, s->key);
    zip_int64_t index = zip_name_locate(z, name, 0);
    if (index < 0) return cn_fail(CN_ERR_FORMAT, "%s: storage entry %s missing", r->name, name);
    uint64_t bytes = 0, size = 0;
    cn_status st = storage_need(r, s, &bytes);
    if (st == CN_OK) st = zip_read_entry(r, z, index, CN_PT_MAX_STORAGE, &s->owned, &size);
    if (st != CN_OK) return st;
    if (size < bytes)
      return cn_fail(CN_ERR_FORMAT, "%s: storage %s has %llu bytes, %lld elements need %llu",
                     r->name, name, (unsigned long long)size, (long long)s->numel,
                     (unsigned long long)bytes);
    s->bytes = s->owned;
  }
  return CN_OK;
}

static cn_status read_zip_archive(pt_reader *r, zip_t *z, pk_obj **root) {
  char prefix[512];
  zip_int64_t index = -1;
  uint8_t *pkl = NULL;
  uint64_t pkl_size = 0;
  cn_status st = zip_find_pickle(r, z, prefix, sizeof prefix, &index);
  if (st == CN_OK) st = zip_check_byteorder(r, z, prefix);
  if (st == CN_OK) st = zip_read_entry(r, z, index, CN_PT_MAX_PICKLE, &pkl, &pkl_size);
  if (st != CN_OK) return st;
  char name[700];
  snprintf(name, sizeof name, "%s:%s/data.pkl", r->name, prefix);
  const char *saved = r->u.name;
  r->u.name = name;
  size_t pos = 0;
  st = pk_load(&r->u, pkl, (size_t)pkl_size, &pos, root);
  r->u.name = saved;
  free(pkl);
  if (st == CN_OK) st = collect_storages(r);
  if (st == CN_OK) st = zip_storages(r, z, prefix);
  return st;
}

static cn_status read_zip(pt_reader *r, const uint8_t *data, size_t size, pk_obj **root) {
  r->zip_bytes = size;
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t *src = zip_source_buffer_create(data, size, 0, &err);
  zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err) : NULL;
  if (!z) {
    cn_status st =
        cn_fail(CN_ERR_FORMAT, "%s: damaged zip file (%s)", r->name, zip_error_strerror(&err));
    if (src) zip_source_free(src);
    zip_error_fini(&err);
    return st;
  }
  zip_error_fini(&err);
  cn_status st = read_zip_archive(r, z, root);
  zip_discard(z);
  return st;
}

/* ---- from storages to tensors ---------------------------------------------------------------- */

/* Elements of a shape, or -1 past the limit. */
static int64_t shape_numel_limited(const cn_shape *s) {
  int64_t n = 1;
  for (int i = 0; i < s->rank; i++) {
    if (s->dim[i] == 0) return 0;
    if (s->dim[i] > CN_PT_MAX_ELEMENTS || n > CN_PT_MAX_ELEMENTS / s->dim[i]) return -1;
    n *= s->dim[i];
  }
  return n;
}

/* Checks that every element the view reads lies inside the storage. */
static cn_status check_view(pt_reader *r, const char *name, const pk_obj *t, const pt_storage *s,
                            int64_t numel) {
  if (t->dtype != s->dtype)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: storage type differs", r->name, name);
  if (numel == 0) return CN_OK;
  int64_t last = t->offset; /* index of the furthest element */
  for (int i = 0; i < t->shape.rank; i++) {
    int64_t step = t->stride.dim[i];
    if (step > ((int64_t)1 << 32) || last > INT64_MAX / 2)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: stride out of range", r->name, name);
    last += (t->shape.dim[i] - 1) * step;
  }
  if (t->offset >= s->numel || last >= s->numel)
    return cn_fail(CN_ERR_FORMAT,
                   "%s: %s: offset %lld with shape and strides reaches element %lld of a storage "
                   "of %lld",
                   r->name, name, (long long)t->offset, (long long)last, (long long)s->numel);
  return CN_OK;
}

static int is_contiguous(const pk_obj *t) {
  int64_t expect = 1;
  for (int i = t->shape.rank - 1; i >= 0; i--) {
    if (t->shape.dim[i] != 1 && t->stride.dim[i] != expect) return 0;
    expect *= t->shape.dim[i];
  }
  return 1;
}

/* Copies a strided float32 view into contiguous row-major order. */
static void gather_floats(const pk_obj *t, const uint8_t *base, float *dst, int64_t numel) {
  if (is_contiguous(t)) {
    memcpy(dst, base + (size_t)t->offset * 4, (size_t)numel * 4);
    return;
  }
  int64_t idx[CN_MAX_RANK] = {0};
  int rank = t->shape.rank;
  for (int64_t n = 0; n < numel; n++) {
    int64_t e = t->offset;
    for (int i = 0; i < rank; i++) e += idx[i] * t->stride.dim[i];
    memcpy(&dst[n], base + (size_t)e * 4, 4);
    for (int i = rank - 1; i >= 0; i--) {
      if (++idx[i] < t->shape.dim[i]) break;
      idx[i] = 0;
    }
  }
}

static cn_status add_tensor(pt_reader *r, cn_pt_state *out, const char *name, const pk_obj *t) {
  if (out->n >= CN_PT_MAX_TENSORS)
    return cn_fail(CN_ERR_LIMIT, "%s: more than %d tensors", r->name, CN_PT_MAX_TENSORS);
  for (int i = 0; i < out->n; i++)
    if (strcmp(out->t[i].name, name) == 0)
      return cn_fail(CN_ERR_FORMAT, "%s: key %s appears twice", r->name, name);
  const pt_storage *s = find_storage(r, t->storage->s);
  if (!s || !s->bytes) return cn_fail(CN_ERR_FORMAT, "%s: %s: storage missing", r->name, name);
  int64_t numel = shape_numel_limited(&t->shape);
  if (numel < 0)
    return cn_fail(CN_ERR_LIMIT, "%s: %s: more than %lld elements", r->name, name,
                   (long long)CN_PT_MAX_ELEMENTS);
  cn_status st = check_view(r, name, t, s, numel);
  if (st != CN_OK) return st;
  cn_pt_tensor *slot = &out->t[out->n];
  *slot = (cn_pt_tensor){.dtype = t->dtype, .shape = t->shape};
  slot->name = cn_strdup(name);
  if (!slot->name) return CN_ERR_NOMEM;
  out->n++;
  if (t->dtype != CN_PT_FLOAT32) return CN_OK;
  slot->data = malloc(numel ? (size_t)numel * sizeof(float) : 1);
  if (!slot->data) return cn_fail(CN_ERR_NOMEM, "%s: %s: out of memory", r->name, name);
  gather_floats(t, s->bytes, slot->data, numel);
  return CN_OK;
}

static size_t count_tensors(const pk_obj *dict) {
  size_t n = 0;
  for (size_t i = 1; i < dict->n; i += 2) n += dict->items[i]->kind == PK_TENSOR;
  return n;
}

/* The state_dict itself, or the one a training checkpoint keeps under "state_dict"/"model". */
static const pk_obj *find_state_dict(const pk_obj *root) {
  if (!root || root->kind != PK_DICT) return NULL;
  if (count_tensors(root)) return root;
  static const char *const wrappers[] = {"state_dict", "model", "model_state_dict"};
  for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++) {
    const pk_obj *inner = pk_dict_get(root, wrappers[i]);
    if (inner && inner->kind == PK_DICT && count_tensors(inner)) return inner;
  }
  return root;
}

static cn_status collect_tensors(pt_reader *r, const pk_obj *root, cn_pt_state *out) {
  const pk_obj *dict = find_state_dict(root);
  if (!dict) return cn_fail(CN_ERR_FORMAT, "%s: the pickle holds no dict of tensors", r->name);
  size_t n = count_tensors(dict);
  if (n > CN_PT_MAX_TENSORS)
    return cn_fail(CN_ERR_LIMIT, "%s: more than %d tensors", r->name, CN_PT_MAX_TENSORS);
  out->t = calloc(n ? n : 1, sizeof *out->t);
  if (!out->t) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", r->name);
  for (size_t i = 0; i + 1 < dict->n; i += 2) {
    const pk_obj *key = dict->items[i], *value = dict->items[i + 1];
    if (value->kind != PK_TENSOR) continue;
    if (key->kind != PK_STR)
      return cn_fail(CN_ERR_FORMAT, "%s: a tensor key is not a string", r->name);
    cn_status st = add_tensor(r, out, key->s, value);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

void cn_pt_state_free(cn_pt_state *state) {
  if (!state) return;
  for (int i = 0; i < state->n; i++) {
    free(state->t[i].name);
    free(state->t[i].data);
  }
  free(state->t);
  state->t = NULL;
  state->n = 0;
}

const cn_pt_tensor *cn_pt_find(const cn_pt_state *state, const char *name) {
  for (int i = 0; i < state->n; i++)
    if (strcmp(state->t[i].name, name) == 0) return &state->t[i];
  return NULL;
}

cn_status cn_pt_read_memory(const void *data, size_t size, const char *name, cn_pt_state *out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_pt_read_memory: NULL output");
  *out = (cn_pt_state){0};
  if (!data && size) return cn_fail(CN_ERR_ARG, "cn_pt_read_memory: NULL data");
  pt_reader r = {.name = name ? name : "<memory>"};
  r.u.name = r.name;
  const uint8_t *p = data;
  pk_obj *root = NULL;
  cn_status st;
  if (size >= 4 && memcmp(p, "PK\x03\x04", 4) == 0)
    st = read_zip(&r, p, size, &root);
  else if (size >= 2 && p[0] == 0x80)
    st = read_legacy(&r, p, size, &root);
  else
    st = cn_fail(CN_ERR_FORMAT, "%s: not a PyTorch checkpoint (neither zip nor pickle)", r.name);
  if (st == CN_OK) st = collect_tensors(&r, root, out);
  for (size_t i = 0; i < r.n_st; i++) free(r.st[i].owned);
  free(r.st);
  pk_free(&r.u);
  if (st != CN_OK) cn_pt_state_free(out);
  return st;
}

cn_status cn_pt_read(const char *path, cn_pt_state *out) {
  if (!path || !out) return cn_fail(CN_ERR_ARG, "cn_pt_read: NULL argument");
  *out = (cn_pt_state){0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cn_fail(CN_ERR_IO, "%s: cannot open", path);
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return cn_fail(CN_ERR_IO, "%s: not a regular file", path);
  }
  if (sb.st_size == 0) {
    close(fd);
    return cn_fail(CN_ERR_FORMAT, "%s: empty file", path);
  }
  void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return cn_fail(CN_ERR_IO, "%s: cannot map", path);
  cn_status st = cn_pt_read_memory(map, (size_t)sb.st_size, path, out);
  munmap(map, (size_t)sb.st_size);
  return st;
}

/* ---- state_dict into a model ----------------------------------------------------------------- */

typedef enum pt_layout { PT_SAME, PT_CONV, PT_DEPTHWISE, PT_DENSE } pt_layout;

/* Our (layer type, parameter) to PyTorch's parameter name and layout. */
static const struct {
  const char *type, *param, *torch;
  pt_layout layout;
} param_map[] = {
    {"Conv2D", "kernel", "weight", PT_CONV},
    {"Conv2D", "bias", "bias", PT_SAME},
    {"DepthwiseConv2D", "depthwise_kernel", "weight", PT_DEPTHWISE},
    {"DepthwiseConv2D", "bias", "bias", PT_SAME},
    {"Dense", "kernel", "weight", PT_DENSE},
    {"Dense", "bias", "bias", PT_SAME},
    {"BatchNormalization", "gamma", "weight", PT_SAME},
    {"BatchNormalization", "beta", "bias", PT_SAME},
    {"BatchNormalization", "moving_mean", "running_mean", PT_SAME},
    {"BatchNormalization", "moving_variance", "running_var", PT_SAME},
};
#define PARAM_MAP_COUNT (sizeof param_map / sizeof param_map[0])

static int find_mapping(const cn_node *node, const cn_param *p) {
  for (size_t i = 0; i < PARAM_MAP_COUNT; i++)
    if (strcmp(param_map[i].type, node->op->type) == 0 && strcmp(param_map[i].param, p->name) == 0)
      return (int)i;
  return -1;
}

/* The PyTorch shape of one of our parameters. */
static cn_shape torch_shape(const cn_param *p, pt_layout layout) {
  const int64_t *d = p->shape.dim;
  cn_shape s = p->shape;
  if (layout == PT_CONV && s.rank == 4) s = (cn_shape){4, {d[3], d[2], d[0], d[1]}};
  if (layout == PT_DEPTHWISE && s.rank == 4) s = (cn_shape){4, {d[2] * d[3], 1, d[0], d[1]}};
  if (layout == PT_DENSE && s.rank == 2) s = (cn_shape){2, {d[1], d[0]}};
  return s;
}

static void convert(const cn_param *p, pt_layout layout, const float *src) {
  const int64_t *d = p->shape.dim;
  float *dst = p->data;
  if (layout == PT_CONV) { /* (O, I, kh, kw) -> (kh, kw, I, O) */
    int64_t kh = d[0], kw = d[1], ci = d[2], co = d[3];
    for (int64_t o = 0; o < co; o++)
      for (int64_t i = 0; i < ci; i++)
        for (int64_t y = 0; y < kh; y++)
          for (int64_t x = 0; x < kw; x++)
            dst[((y * kw + x) * ci + i) * co + o] = src[((o * ci + i) * kh + y) * kw + x];
  } else if (layout == PT_DEPTHWISE) { /* (C*m, 1, kh, kw) -> (kh, kw, C, m) */
    int64_t taps = d[0] * d[1], ch = d[2] * d[3];
    for (int64_t c = 0; c < ch; c++)
      for (int64_t t = 0; t < taps; t++) dst[t * ch + c] = src[c * taps + t];
  } else if (layout == PT_DENSE) { /* (out, in) -> (in, out) */
    int64_t in = d[0], units = d[1];
    for (int64_t o = 0; o < units; o++)
      for (int64_t i = 0; i < in; i++) dst[i * units + o] = src[o * in + i];
  } else {
    memcpy(dst, src, (size_t)cn_shape_numel(&p->shape) * sizeof(float));
  }
}

/* Finds and checks the tensor for one parameter. */
static cn_status match_param(const cn_node *node, const cn_param *p, const cn_pt_state *state,
                             const char *path, const cn_pt_tensor **out, pt_layout *layout) {
  int m = find_mapping(node, p);
  if (m < 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s/%s: no PyTorch name for a %s parameter", path,
                   node->name, p->name, node->op->type);
  char key[512];
  snprintf(key, sizeof key, "%s.%s", node->name, param_map[m].torch);
  const cn_pt_tensor *t = cn_pt_find(state, key);
  if (!t)
    return cn_fail(CN_ERR_FORMAT, "%s: missing key %s (for %s/%s)", path, key, node->name, p->name);
  if (t->dtype != CN_PT_FLOAT32)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s is %s (only float32 weights load)", path, key,
                   cn_pt_dtype_name(t->dtype));
  *layout = param_map[m].layout;
  cn_shape want = torch_shape(p, *layout);
  if (!cn_shape_equal(&want, &t->shape)) {
    char a[96], b[96];
    return cn_fail(CN_ERR_SHAPE, "%s: %s: expected %s, file has %s", path, key,
                   cn_shape_format(&want, a, sizeof a), cn_shape_format(&t->shape, b, sizeof b));
  }
  int64_t n = cn_shape_numel(&t->shape);
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(t->data[i]))
      return cn_fail(CN_ERR_FORMAT, "%s: %s holds NaN or infinity", path, key);
  *out = t;
  return CN_OK;
}

/* A key whose module is one of our nodes must name one of that node's parameters. */
static cn_status check_unexpected(const cn_graph *g, const cn_pt_state *state,
                                  const unsigned char *used, const char *path) {
  for (int i = 0; i < state->n; i++) {
    if (used[i]) continue;
    const char *key = state->t[i].name, *dot = strrchr(key, '.');
    if (!dot || strcmp(dot + 1, "num_batches_tracked") == 0) continue;
    char module[512];
    size_t len = (size_t)(dot - key);
    if (len >= sizeof module) continue;
    memcpy(module, key, len);
    module[len] = 0;
    if (cn_graph_find(g, module) >= 0)
      return cn_fail(CN_ERR_FORMAT, "%s: unexpected key %s (layer %s has no such parameter)", path,
                     key, module);
  }
  return CN_OK;
}

cn_status cn_pytorch_load_state(cn_model *m, const cn_pt_state *state, const char *path) {
  if (!m || !state) return cn_fail(CN_ERR_ARG, "cn_pytorch_load_state: NULL argument");
  cn_graph *g = m->graph;
  unsigned char *used = calloc((size_t)state->n + 1, 1);
  if (!used) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = CN_OK;
  /* Check everything first so that a bad file leaves the model's weights untouched. */
  for (int pass = 0; pass < 2 && st == CN_OK; pass++) {
    for (int n = 0; n < g->n_nodes && st == CN_OK; n++) {
      cn_node *node = &g->nodes[n];
      /* a shared layer's weights are read into its first call, which the others point at */
      for (int k = 0; k < node->n_params && node->shares < 0 && st == CN_OK; k++) {
        const cn_pt_tensor *t = NULL;
        pt_layout layout = PT_SAME;
        st = match_param(node, &node->params[k], state, path, &t, &layout);
        if (st != CN_OK) break;
        used[t - state->t] = 1;
        if (pass == 1) convert(&node->params[k], layout, t->data);
      }
    }
    if (pass == 0 && st == CN_OK) st = check_unexpected(g, state, used, path);
  }
  free(used);
  if (st == CN_OK) g->weights_version++;
  return st;
}

cn_status cn_pytorch_load_weights(cn_model *m, const char *path) {
  if (!m || !path) return cn_fail(CN_ERR_ARG, "cn_pytorch_load_weights: NULL argument");
  cn_pt_state state;
  cn_status st = cn_pt_read(path, &state);
  if (st == CN_OK) st = cn_pytorch_load_state(m, &state, path);
  cn_pt_state_free(&state);
  return st;
}
