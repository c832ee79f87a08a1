/* ONNX TensorProto decoding: every tensor is hostile until its dims, element type and stored
 * byte count agree exactly. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data decoding assumes a little-endian host"
#endif

static const char *dtype_name(int t) {
  static const char *const names[] = {"undefined", "float",  "uint8",  "int8",   "uint16",
                                      "int16",     "int32",  "int64",  "string", "bool",
                                      "float16",   "double", "uint32", "uint64"};
  return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

/* Bytes per element in raw_data, 0 for types convnet does not read. */
static size_t dtype_size(int t) {
  switch (t) {
  case DT_UINT8:
  case DT_INT8:
  case DT_BOOL:
    return 1;
  case DT_UINT16:
  case DT_INT16:
    return 2;
  case DT_FLOAT:
  case DT_INT32:
  case DT_UINT32:
    return 4;
  case DT_INT64:
  case DT_DOUBLE:
    return 8;
  default:
    return 0;
  }
}

char *cn_onnx_dims_format(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t at = 0;
  if (cap == 0) return buf;
  buf[0] = 0;
  at += (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < rank && at < cap; i++)
    at += (size_t)snprintf(buf + at, cap - at, "%s%" PRId64, i ? "," : "", dims[i]);
  if (at < cap) snprintf(buf + at, cap - at, ")");
  return buf;
}

void cn_onnx_const_free(cn_onnx_const *c) {
  free(c->f);
  free(c->i);
  c->f = NULL;
  c->i = NULL;
}

cn_status cn_onnx_const_alloc(cn_onnx_const *c, int rank, const int64_t *dims, int is_int,
                              const char *what) {
  memset(c, 0, sizeof *c);
  if (rank < 0 || rank > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: rank %d is too high", what, rank);
  int64_t n = 1;
  for (int k = 0; k < rank; k++) {
    if (dims[k] < 0) return cn_fail(CN_ERR_FORMAT, "%s: negative dimension", what);
    if (dims[k] > CN_ONNX_MAX_ELEMENTS || (n *= dims[k]) > CN_ONNX_MAX_ELEMENTS) {
      char buf[128];
      return cn_fail(CN_ERR_LIMIT, "%s: shape %s has more than %" PRId64 " elements", what,
                     cn_onnx_dims_format(rank, dims, buf, sizeof buf), CN_ONNX_MAX_ELEMENTS);
    }
    c->dims[k] = dims[k];
  }
  c->rank = rank;
  c->numel = n;
  c->is_int = is_int;
  size_t bytes = (size_t)(n ? n : 1) * (is_int ? sizeof *c->i : sizeof *c->f);
  void *p = calloc(1, bytes);
  if (!p) return cn_fail(CN_ERR_NOMEM, "%s: out of memory for %" PRId64 " values", what, n);
  if (is_int)
    c->i = p;
  else
    c->f = p;
  return CN_OK;
}

double cn_onnx_const_get(const cn_onnx_const *c, int64_t k) {
  return c->is_int ? (double)c->i[k] : (double)c->f[k];
}

cn_status cn_onnx_const_to_float(cn_onnx_const *c, const char *what) {
  if (!c->is_int) return CN_OK;
  float *f = malloc((size_t)(c->numel ? c->numel : 1) * sizeof *f);
  if (!f) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", what);
  for (int64_t k = 0; k < c->numel; k++) f[k] = (float)c->i[k];
  free(c->i);
  c->i = NULL;
  c->f = f;
  c->is_int = 0;
  return CN_OK;
}

/* One little-endian element of raw data as int64 (integer types) or double (float types). */
static int64_t raw_int(const uint8_t *p, int t) {
  switch (t) {
  case DT_UINT8:
  case DT_BOOL:
    return p[0];
  case DT_INT8:
    return (int8_t)p[0];
  case DT_UINT16: {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  case DT_INT16: {
    int16_t v;
    memcpy(&v, p, 2);
    return v;
  }
  case DT_INT32: {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
  }
  case DT_UINT32: {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
  }
  default: {
    int64_t v;
    memcpy(&v, p, 8);
    return v;
  }
  }
}

static cn_status read_raw(const Onnx__TensorProto *t, const char *what, cn_onnx_const *c) {
  int dt = t->data_type;
  size_t es = dtype_size(dt);
  if ((uint64_t)t->raw_data.len / es != (uint64_t)c->numel || t->raw_data.len % es)
    return cn_fail(CN_ERR_FORMAT, "%s: raw_data has %zu bytes, shape needs %" PRId64 " x %zu", what,
                   t->raw_data.len, c->numel, es);
  const uint8_t *p = t->raw_data.data;
  if (dt == DT_FLOAT) {
    if (c->numel) memcpy(c->f, p, (size_t)c->numel * 4);
  } else if (dt == DT_DOUBLE) {
    for (int64_t k = 0; k < c->numel; k++) {
      double v;
      memcpy(&v, p + k * 8, 8);
      c->f[k] = (float)v;
    }
  } else {
    for (int64_t k = 0; k < c->numel; k++) c->i[k] = raw_int(p + (size_t)k * es, dt);
  }
  return CN_OK;
}

/* The typed repeated field a tensor of type dt stores its values in. */
static size_t typed_count(const Onnx__TensorProto *t, int dt) {
  switch (dt) {
  case DT_FLOAT:
    return t->n_float_data;
  case DT_DOUBLE:
    return t->n_double_data;
  case DT_INT64:
    return t->n_int64_data;
  default:
    return t->n_int32_data;
  }
}

static cn_status read_typed(const Onnx__TensorProto *t, const char *what, cn_onnx_const *c) {
  int dt = t->data_type;
  size_t n = typed_count(t, dt);
  if (dt == DT_UINT32 || dt == DT_UINT64) n = 0; /* stored in uint64_data, which we skip */
  if ((uint64_t)n != (uint64_t)c->numel)
    return cn_fail(CN_ERR_FORMAT, "%s: holds %zu values, shape needs %" PRId64, what, n, c->numel);
  for (int64_t k = 0; k < c->numel; k++) {
    if (dt == DT_FLOAT)
      c->f[k] = t->float_data[k];
    else if (dt == DT_DOUBLE)
      c->f[k] = (float)t->double_data[k];
    else if (dt == DT_INT64)
      c->i[k] = t->int64_data[k];
    else
      c->i[k] = t->int32_data[k];
  }
  return CN_OK;
}

cn_status cn_onnx_const_read(const Onnx__TensorProto *t, const char *what, cn_onnx_const *out) {
  memset(out, 0, sizeof *out);
  int dt = t->data_type;
  if (t->has_data_location && t->data_location == 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: external tensor data is not supported", what);
  if (dtype_size(dt) == 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: element type %s is not supported", what,
                   dtype_name(dt));
  if (t->n_dims > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: rank %zu is too high", what, t->n_dims);
  int is_int = dt != DT_FLOAT && dt != DT_DOUBLE;
  cn_status st = cn_onnx_const_alloc(out, (int)t->n_dims, t->dims, is_int, what);
  if (st != CN_OK) return st;
  if (t->has_raw_data && typed_count(t, dt) > 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: has both raw_data and typed values", what);
  else if (t->has_raw_data)
    st = read_raw(t, what, out);
  else
    st = read_typed(t, what, out);
  if (st != CN_OK) cn_onnx_const_free(out);
  return st;
}
