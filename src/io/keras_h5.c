/* Keras HDF5 files: the public loaders and the HDF5 access they share. Every file is hostile:
 * links must be hard links inside the file, datasets must be plain floats stored in the file with a
 * size the file can hold, and HDF5's own error printing is silenced (errors go through cn_fail). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/model.h"
#include "io/keras_internal.h"

#if H5_VERSION_GE(1, 12, 0)
#define CN_H5_LINK_INFO(loc, name, info) H5Lget_info2(loc, name, info, H5P_DEFAULT)
typedef H5L_info2_t cn_h5_link_info;
#define CN_H5_RECLAIM(type, space, buf) H5Treclaim(type, space, H5P_DEFAULT, buf)
#else
#define CN_H5_LINK_INFO(loc, name, info) H5Lget_info(loc, name, info, H5P_DEFAULT)
typedef H5L_info_t cn_h5_link_info;
#define CN_H5_RECLAIM(type, space, buf) H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf)
#endif

void cn_strlist_free(cn_strlist *l) {
  for (int i = 0; i < l->n; i++) free(l->s[i]);
  free(l->s);
  l->s = NULL;
  l->n = 0;
}

static cn_status strlist_push(cn_strlist *l, const char *s, size_t len) {
  if (l->n >= CN_KERAS_MAX_NAMES)
    return cn_fail(CN_ERR_LIMIT, "more than %d names", CN_KERAS_MAX_NAMES);
  char **grown = realloc(l->s, (size_t)(l->n + 1) * sizeof *grown);
  if (!grown) return cn_fail(CN_ERR_NOMEM, "out of memory");
  l->s = grown;
  char *copy = malloc(len + 1);
  if (!copy) return cn_fail(CN_ERR_NOMEM, "out of memory");
  memcpy(copy, s, len);
  copy[len] = 0;
  l->s[l->n++] = copy;
  return CN_OK;
}

/* ---- opening ------------------------------------------------------------------------------- */

cn_status cn_h5_open(const char *path, hid_t *file) {
  *file = H5I_INVALID_HID;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  struct stat st;
  if (stat(path, &st) != 0) return cn_fail(CN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return cn_fail(CN_ERR_IO, "%s: not a regular file", path);
  if (H5Fis_hdf5(path) <= 0) return cn_fail(CN_ERR_FORMAT, "%s: not an HDF5 file", path);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  /* STRONG: closing the file closes anything an error path might have left open. */
  if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
  if (fapl >= 0) H5Pclose(fapl);
  if (*file < 0) return cn_fail(CN_ERR_FORMAT, "%s: damaged or truncated HDF5 file", path);
  return CN_OK;
}

/* ---- links and attributes ------------------------------------------------------------------ */

static cn_status check_hard_link(hid_t loc, const char *prefix, const char *file, int *exists) {
  htri_t there = H5Lexists(loc, prefix, H5P_DEFAULT);
  if (there <= 0) {
    *exists = 0;
    return CN_OK;
  }
  cn_h5_link_info info;
  if (CN_H5_LINK_INFO(loc, prefix, &info) < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: unreadable link", file, prefix);
  if (info.type != H5L_TYPE_HARD)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s is %s link; only objects inside the file are read",
                   file, prefix,
                   info.type == H5L_TYPE_EXTERNAL ? "an external" : "a soft or user-defined");
  *exists = 1;
  return CN_OK;
}

cn_status cn_h5_exists(hid_t loc, const char *path, const char *file, int *exists) {
  *exists = 0;
  size_t len = strlen(path);
  if (len == 0 || len > 4096) return cn_fail(CN_ERR_FORMAT, "%s: bad object name", file);
  char prefix[4097];
  /* Each component in turn: H5Lexists fails on a path whose parent is missing. */
  for (size_t i = 0; i <= len; i++) {
    if (path[i] != '/' && path[i] != 0) continue;
    if (i == 0) continue;
    memcpy(prefix, path, i);
    prefix[i] = 0;
    cn_status st = check_hard_link(loc, prefix, file, exists);
    if (st != CN_OK || !*exists) return st;
  }
  return CN_OK;
}

int cn_h5_has_attr(hid_t loc, const char *name) {
  return H5Aexists(loc, name) > 0;
}

/* Reads every string of an open string attribute into out. */
static cn_status read_string_values(hid_t attr, hid_t ftype, hssize_t n, const char *what,
                                    cn_strlist *out) {
  hid_t mtype = H5Tcopy(H5T_C_S1);
  cn_status st = CN_OK;
  /* HDF5 converts no character sets: h5py writes UTF-8, older Keras ASCII. */
  H5Tset_cset(mtype, H5Tget_cset(ftype));
  if (H5Tis_variable_str(ftype) > 0) {
    H5Tset_size(mtype, H5T_VARIABLE);
    char **buf = calloc((size_t)n, sizeof *buf);
    hid_t space = H5Aget_space(attr);
    if (!buf)
      st = cn_fail(CN_ERR_NOMEM, "out of memory");
    else if (H5Aread(attr, mtype, buf) < 0)
      st = cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
    for (hssize_t i = 0; st == CN_OK && i < n; i++)
      st = strlist_push(out, buf[i] ? buf[i] : "", buf[i] ? strlen(buf[i]) : 0);
    if (buf) CN_H5_RECLAIM(mtype, space, buf);
    H5Sclose(space);
    free(buf);
  } else {
    /* One more byte than the file's strings: HDF5 keeps the last byte of a NULLTERM memory
     * string for the terminator, which would cut a NULLPAD string that fills its width. */
    size_t size = H5Tget_size(ftype) + 1;
    size_t total;
    char *buf = NULL;
    if (size < 2 || size > CN_KERAS_MAX_JSON || !cn_mul_size(size, (size_t)n, &total) ||
        total > CN_KERAS_MAX_JSON)
      st = cn_fail(CN_ERR_LIMIT, "%s: strings too large", what);
    if (st == CN_OK) {
      H5Tset_size(mtype, size);
      buf = malloc(total);
      if (!buf) st = cn_fail(CN_ERR_NOMEM, "out of memory");
    }
    if (st == CN_OK && H5Aread(attr, mtype, buf) < 0)
      st = cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
    for (hssize_t i = 0; st == CN_OK && i < n; i++)
      st = strlist_push(out, buf + (size_t)i * size, strnlen(buf + (size_t)i * size, size));
    free(buf);
  }
  H5Tclose(mtype);
  return st;
}

/* Reads one attribute as a list of strings; non-string attributes must be empty arrays (Keras 3
 * writes an empty float64 array for "no weights"). */
static cn_status read_attr_strings(hid_t loc, const char *name, const char *file, cn_strlist *out) {
  char what[512];
  snprintf(what, sizeof what, "%s: attribute %s", file, name);
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
  if (attr < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
  hid_t ftype = H5Aget_type(attr), space = H5Aget_space(attr);
  cn_status st = CN_OK;
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (ftype < 0 || rank < 0 || rank > 1 || n < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: not a list of names", what);
  else if (n > CN_KERAS_MAX_NAMES)
    st = cn_fail(CN_ERR_LIMIT, "%s: more than %d names", what, CN_KERAS_MAX_NAMES);
  else if (H5Tget_class(ftype) != H5T_STRING) {
    if (n != 0) st = cn_fail(CN_ERR_FORMAT, "%s: not strings", what);
  } else if (n > 0)
    st = read_string_values(attr, ftype, n, what, out);
  if (ftype >= 0) H5Tclose(ftype);
  if (space >= 0) H5Sclose(space);
  H5Aclose(attr);
  return st;
}

cn_status cn_h5_read_string_attr(hid_t loc, const char *name, const char *file, char **out) {
  *out = NULL;
  cn_strlist l = {0};
  cn_status st = read_attr_strings(loc, name, file, &l);
  if (st == CN_OK && l.n != 1)
    st = cn_fail(CN_ERR_FORMAT, "%s: attribute %s is not one string", file, name);
  if (st == CN_OK) {
    *out = l.s[0];
    l.s[0] = NULL;
  }
  cn_strlist_free(&l);
  return st;
}

cn_status cn_h5_read_names_attr(hid_t loc, const char *name, const char *file, cn_strlist *out) {
  out->n = 0;
  out->s = NULL;
  if (cn_h5_has_attr(loc, name)) return read_attr_strings(loc, name, file, out);
  char chunk[300];
  for (int i = 0;; i++) {
    snprintf(chunk, sizeof chunk, "%s%d", name, i);
    if (!cn_h5_has_attr(loc, chunk)) break;
    cn_status st = read_attr_strings(loc, chunk, file, out);
    if (st != CN_OK) {
      cn_strlist_free(out);
      return st;
    }
  }
  return CN_OK;
}

/* ---- datasets ------------------------------------------------------------------------------ */

static cn_status check_storage(hid_t ds, const char *what, int *filtered) {
  hid_t dcpl = H5Dget_create_plist(ds);
  if (dcpl < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable dataset properties", what);
  cn_status st = CN_OK;
  H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_VIRTUAL)
    st = cn_fail(CN_ERR_UNSUPPORTED, "%s: virtual datasets are refused", what);
  else if (H5Pget_external_count(dcpl) != 0)
    st = cn_fail(CN_ERR_UNSUPPORTED, "%s: data stored in external files is refused", what);
  *filtered = H5Pget_nfilters(dcpl) != 0;
  H5Pclose(dcpl);
  return st;
}

static cn_status check_type(hid_t ds, const char *what, size_t *elem) {
  hid_t type = H5Dget_type(ds);
  if (type < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable type", what);
  H5T_class_t cls = H5Tget_class(type);
  *elem = H5Tget_size(type);
  H5Tclose(type);
  if (cls != H5T_FLOAT || (*elem != 2 && *elem != 4 && *elem != 8))
    return cn_fail(CN_ERR_FORMAT, "%s: weights must be floating point", what);
  return CN_OK;
}

static cn_status read_extent(hid_t ds, const char *what, cn_shape *shape) {
  hid_t space = H5Dget_space(ds);
  if (space < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable shape", what);
  int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[32];
  cn_status st = CN_OK;
  if (rank < 0 || rank > CN_MAX_RANK)
    st = cn_fail(CN_ERR_FORMAT, "%s: rank %d not supported", what, rank);
  else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: unreadable shape", what);
  H5Sclose(space);
  if (st != CN_OK) return st;
  shape->rank = rank;
  for (int i = 0; i < rank; i++) {
    if (dims[i] > (hsize_t)CN_KERAS_MAX_ELEMENTS)
      return cn_fail(CN_ERR_LIMIT, "%s: dimension %llu too large", what,
                     (unsigned long long)dims[i]);
    shape->dim[i] = (int64_t)dims[i];
  }
  return CN_OK;
}

static int64_t file_size_of(hid_t loc) {
  hid_t f = H5Iget_file_id(loc);
  hsize_t size = 0;
  if (f >= 0) {
    if (H5Fget_filesize(f, &size) < 0) size = 0;
    H5Fclose(f);
  }
  return (int64_t)size;
}

static cn_status check_size(hid_t loc, const cn_shape *shape, size_t elem, int filtered,
                            const char *what) {
  int64_t numel = cn_shape_numel(shape);
  if (numel < 0 || numel > CN_KERAS_MAX_ELEMENTS)
    return cn_fail(CN_ERR_LIMIT, "%s: declares an absurd number of elements", what);
  /* Uncompressed data must fit in the file; a little slack for sparse (never written) chunks. */
  int64_t bytes = numel * (int64_t)elem, limit = 4 * file_size_of(loc);
  if (!filtered && bytes > limit)
    return cn_fail(CN_ERR_LIMIT, "%s: declares %lld bytes, more than the file can hold", what,
                   (long long)bytes);
  return CN_OK;
}

cn_status cn_h5_dataset_shape(hid_t loc, const char *path, const char *file, const char *what,
                              cn_shape *shape) {
  int exists = 0;
  cn_status st = cn_h5_exists(loc, path, file, &exists);
  if (st != CN_OK) return cn_fail_context(st, "%s", what);
  if (!exists) return cn_fail(CN_ERR_FORMAT, "%s: %s: dataset %s is missing", file, what, path);
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
  if (ds < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: %s is not a readable dataset", file, what, path);
  char full[1024];
  snprintf(full, sizeof full, "%s: %s", file, what);
  int filtered = 0;
  size_t elem = 0;
  st = check_storage(ds, full, &filtered);
  if (st == CN_OK) st = check_type(ds, full, &elem);
  if (st == CN_OK) st = read_extent(ds, full, shape);
  if (st == CN_OK) st = check_size(loc, shape, elem, filtered, full);
  H5Dclose(ds);
  return st;
}

cn_status cn_h5_read_floats(hid_t loc, const char *path, const char *what, int64_t numel,
                            float *dst) {
  hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
  if (ds < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable dataset", what);
  herr_t err = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
  H5Dclose(ds);
  if (err < 0) return cn_fail(CN_ERR_FORMAT, "%s: data unreadable (damaged file?)", what);
  for (int64_t i = 0; i < numel; i++) {
    if (isnan(dst[i])) return cn_fail(CN_ERR_FORMAT, "%s: contains NaN", what);
    if (isinf(dst[i])) return cn_fail(CN_ERR_FORMAT, "%s: contains infinity", what);
  }
  return CN_OK;
}

/* ---- the public loaders -------------------------------------------------------------------- */

static cn_status read_text_file(const char *path, char **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return cn_fail(CN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  cn_status st = CN_OK;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 65536;
      char *grown = cap <= CN_KERAS_MAX_JSON + 8192 ? realloc(buf, cap) : NULL;
      if (!grown) {
        st = cap > CN_KERAS_MAX_JSON ? cn_fail(CN_ERR_LIMIT, "%s: JSON file too large", path)
                                     : cn_fail(CN_ERR_NOMEM, "out of memory");
        break;
      }
      buf = grown;
    }
    size_t got = fread(buf + len, 1, 4096, f);
    len += got;
    if (got < 4096) {
      if (ferror(f)) st = cn_fail(CN_ERR_IO, "%s: read error", path);
      break;
    }
  }
  fclose(f);
  if (st != CN_OK) {
    free(buf);
    return st;
  }
  buf[len] = 0;
  *out = buf;
  return CN_OK;
}

static int looks_like_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  int c;
  while ((c = fgetc(f)) != EOF && isspace(c)) {
  }
  fclose(f);
  return c == '{';
}

static cn_status wrap_graph(cn_graph *g, const char *name, cn_model **out) {
  const cn_shape *in = &g->nodes[g->inputs[0]].shape;
  int channels = in->rank == 3 ? (int)in->dim[2] : 0;
  cn_input_spec spec = cn_input_spec_default(in, cn_keras_guess_preprocess(name, channels));
  return cn_model_wrap(g, name, &spec, out);
}

static cn_status load_json_model(const char *path, cn_model **out) {
  char *text = NULL, *name = NULL;
  cn_graph *g = NULL;
  cn_status st = read_text_file(path, &text);
  if (st == CN_OK) st = cn_keras_build_graph(path, text, &g, &name);
  free(text);
  if (st == CN_OK)
    st = wrap_graph(g, name, out);
  else
    cn_graph_free(g);
  free(name);
  return st;
}

static cn_status load_h5_model(const char *path, hid_t file, cn_model **out) {
  if (!cn_h5_has_attr(file, "model_config"))
    return cn_fail(CN_ERR_FORMAT,
                   "%s: no model_config attribute (a weights-only file needs the architecture "
                   "first, then cn_model_load_weights)",
                   path);
  char *json = NULL, *name = NULL;
  cn_graph *g = NULL;
  cn_status st = cn_h5_read_string_attr(file, "model_config", path, &json);
  if (st == CN_OK) st = cn_keras_build_graph(path, json, &g, &name);
  free(json);
  if (st != CN_OK) {
    cn_graph_free(g);
    free(name);
    return st;
  }
  cn_model *m = NULL;
  st = wrap_graph(g, name, &m);
  free(name);
  if (st == CN_OK) st = cn_keras_load_weights(m->graph, file, path);
  if (st != CN_OK) {
    cn_model_free(m);
    return st;
  }
  *out = m;
  return CN_OK;
}

cn_status cn_model_load(const char *path, cn_model **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_model_load: NULL output");
  *out = NULL;
  if (!path) return cn_fail(CN_ERR_ARG, "cn_model_load: NULL path");
  if (looks_like_json(path)) return load_json_model(path, out);
  hid_t file;
  cn_status st = cn_h5_open(path, &file);
  if (st != CN_OK) return st;
  st = load_h5_model(path, file, out);
  H5Fclose(file);
  return st;
}

cn_status cn_model_load_weights(cn_model *model, const char *path) {
  if (!model || !path) return cn_fail(CN_ERR_ARG, "cn_model_load_weights: NULL argument");
  hid_t file;
  cn_status st = cn_h5_open(path, &file);
  if (st != CN_OK) return st;
  st = cn_keras_load_weights(model->graph, file, path);
  H5Fclose(file);
  return st;
}
