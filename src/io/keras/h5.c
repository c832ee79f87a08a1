/* Keras HDF5 files: the libhdf5 calls (run in a child process by h5_guard.c unless asked
 * otherwise) and the public loaders. Every file is hostile: links must be hard links inside the
 * file, datasets must be plain floats stored in the file with a size the file can hold, string
 * attributes are bounded, and HDF5's own error printing is silenced (errors go through cn_fail). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mem.h"
#include "model/model.h"
#include "io/keras/h5_guard.h"
#include "io/keras/internal.h"

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

cn_status cn_strlist_push(cn_strlist *l, const char *s, size_t len) {
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

/* libhdf5 spells the root "." */
static const char *h5_path(const char *path) {
  return *path ? path : ".";
}
static const char *shown(const char *path) {
  return *path ? path : "/";
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

/* ---- links, groups and attributes ---------------------------------------------------------- */

static cn_status check_hard_link(hid_t file, const char *prefix, const char *fname, int *exists) {
  htri_t there = H5Lexists(file, prefix, H5P_DEFAULT);
  if (there <= 0) {
    *exists = 0;
    return CN_OK;
  }
  cn_h5_link_info info;
  if (CN_H5_LINK_INFO(file, prefix, &info) < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: unreadable link", fname, prefix);
  if (info.type != H5L_TYPE_HARD)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s is %s link; only objects inside the file are read",
                   fname, prefix,
                   info.type == H5L_TYPE_EXTERNAL ? "an external" : "a soft or user-defined");
  *exists = 1;
  return CN_OK;
}

cn_status cn_h5_exists(hid_t file, const char *path, const char *fname, int *exists) {
  *exists = 0;
  size_t len = strlen(path);
  if (len == 0) {
    *exists = 1;
    return CN_OK;
  }
  if (len > CN_H5_MAX_PATH || path[0] == '/')
    return cn_fail(CN_ERR_FORMAT, "%s: bad object name", fname);
  char prefix[CN_H5_MAX_PATH + 1];
  /* Each component in turn: H5Lexists fails on a path whose parent is missing. */
  for (size_t i = 1; i <= len; i++) {
    if (path[i] != '/' && path[i] != 0) continue;
    memcpy(prefix, path, i);
    prefix[i] = 0;
    cn_status st = check_hard_link(file, prefix, fname, exists);
    if (st != CN_OK || !*exists) return st;
  }
  return CN_OK;
}

/* Opens the group at path after checking the links on the way. */
static cn_status open_group(hid_t file, const char *path, const char *fname, hid_t *group) {
  *group = H5I_INVALID_HID;
  int exists = 0;
  cn_status st = cn_h5_exists(file, path, fname, &exists);
  if (st != CN_OK) return st;
  if (!exists) return cn_fail(CN_ERR_FORMAT, "%s: %s is missing", fname, shown(path));
  *group = H5Gopen2(file, h5_path(path), H5P_DEFAULT);
  if (*group < 0) return cn_fail(CN_ERR_FORMAT, "%s: %s is not a group", fname, shown(path));
  return CN_OK;
}

cn_status cn_h5_has_attr(hid_t file, const char *path, const char *name, const char *fname,
                         int *has) {
  *has = 0;
  hid_t g;
  cn_status st = open_group(file, path, fname, &g);
  if (st != CN_OK) return st;
  *has = H5Aexists(g, name) > 0;
  H5Gclose(g);
  return CN_OK;
}

/* Variable-length strings: HDF5 allocates each one; their total is bounded afterwards. */
static cn_status read_vlen_strings(hid_t attr, hid_t mtype, hssize_t n, const char *what,
                                   cn_strlist *out) {
  cn_status st = CN_OK;
  H5Tset_size(mtype, H5T_VARIABLE);
  char **buf = calloc((size_t)n, sizeof *buf);
  hid_t space = H5Aget_space(attr);
  if (!buf)
    st = cn_fail(CN_ERR_NOMEM, "out of memory");
  else if (space < 0 || H5Aread(attr, mtype, buf) < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
  size_t total = 0;
  for (hssize_t i = 0; st == CN_OK && i < n; i++) {
    size_t len = buf[i] ? strlen(buf[i]) : 0;
    total += len;
    if (total > CN_KERAS_MAX_JSON)
      st = cn_fail(CN_ERR_LIMIT, "%s: strings too large", what);
    else
      st = cn_strlist_push(out, buf[i] ? buf[i] : "", len);
  }
  if (buf && space >= 0) CN_H5_RECLAIM(mtype, space, buf);
  if (space >= 0) H5Sclose(space);
  free(buf);
  return st;
}

static cn_status read_fixed_strings(hid_t attr, hid_t ftype, hid_t mtype, hssize_t n,
                                    const char *what, cn_strlist *out) {
  /* One more byte than the file's strings: HDF5 keeps the last byte of a NULLTERM memory string
   * for the terminator, which would cut a NULLPAD string that fills its width. */
  size_t size = H5Tget_size(ftype) + 1;
  size_t total;
  if (size < 2 || size > CN_KERAS_MAX_JSON || !cn_mul_size(size, (size_t)n, &total) ||
      total > CN_KERAS_MAX_JSON)
    return cn_fail(CN_ERR_LIMIT, "%s: strings too large", what);
  H5Tset_size(mtype, size);
  char *buf = malloc(total);
  if (!buf) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = CN_OK;
  if (H5Aread(attr, mtype, buf) < 0) st = cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
  for (hssize_t i = 0; st == CN_OK && i < n; i++)
    st = cn_strlist_push(out, buf + (size_t)i * size, strnlen(buf + (size_t)i * size, size));
  free(buf);
  return st;
}

static cn_status read_string_values(hid_t attr, hid_t ftype, hssize_t n, const char *what,
                                    cn_strlist *out) {
  hid_t mtype = H5Tcopy(H5T_C_S1);
  if (mtype < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable", what);
  /* HDF5 converts no character sets: h5py writes UTF-8, older Keras ASCII. */
  H5Tset_cset(mtype, H5Tget_cset(ftype));
  cn_status st = H5Tis_variable_str(ftype) > 0
                     ? read_vlen_strings(attr, mtype, n, what, out)
                     : read_fixed_strings(attr, ftype, mtype, n, what, out);
  H5Tclose(mtype);
  return st;
}

/* Non-string attributes must be empty arrays (Keras 3 writes an empty float64 array for "no
 * weights"). */
static cn_status read_attr_strings(hid_t loc, const char *name, const char *what, cn_strlist *out) {
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

cn_status cn_h5_attr_strings(hid_t file, const char *path, const char *name, const char *fname,
                             cn_strlist *out) {
  out->n = 0;
  out->s = NULL;
  char what[CN_H5_MAX_PATH + 600];
  snprintf(what, sizeof what, "%s: attribute %s%s%s", fname, *path ? path : "", *path ? "/" : "",
           name);
  hid_t g;
  cn_status st = open_group(file, path, fname, &g);
  if (st != CN_OK) return st;
  if (H5Aexists(g, name) > 0) st = read_attr_strings(g, name, what, out);
  H5Gclose(g);
  if (st != CN_OK) cn_strlist_free(out);
  return st;
}

cn_status cn_h5_group_members(hid_t file, const char *path, const char *fname, cn_strlist *out) {
  out->n = 0;
  out->s = NULL;
  hid_t g;
  cn_status st = open_group(file, path, fname, &g);
  if (st != CN_OK) return st;
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: %s unreadable", fname, shown(path));
  else if (info.nlinks > CN_KERAS_MAX_NAMES)
    st = cn_fail(CN_ERR_LIMIT, "%s: %s has more than %d members", fname, shown(path),
                 CN_KERAS_MAX_NAMES);
  for (hsize_t i = 0; st == CN_OK && i < info.nlinks; i++) {
    char key[256];
    ssize_t len =
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, key, sizeof key, H5P_DEFAULT);
    if (len < 0 || (size_t)len >= sizeof key)
      st = cn_fail(CN_ERR_FORMAT, "%s: bad member name in %s", fname, shown(path));
    else
      st = cn_strlist_push(out, key, (size_t)len);
  }
  H5Gclose(g);
  if (st != CN_OK) cn_strlist_free(out);
  return st;
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

/* The dataset's dimensions, each within CN_KERAS_MAX_ELEMENTS. */
static cn_status read_dims(hid_t ds, const char *what, int *rank, hsize_t *dims) {
  hid_t space = H5Dget_space(ds);
  if (space < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable shape", what);
  *rank = H5Sget_simple_extent_ndims(space);
  cn_status st = CN_OK;
  if (*rank < 0 || *rank > CN_MAX_RANK)
    st = cn_fail(CN_ERR_FORMAT, "%s: rank %d not supported", what, *rank);
  else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: unreadable shape", what);
  H5Sclose(space);
  for (int i = 0; st == CN_OK && i < *rank; i++)
    if (dims[i] > (hsize_t)CN_KERAS_MAX_ELEMENTS)
      st = cn_fail(CN_ERR_LIMIT, "%s: dimension %llu too large", what, (unsigned long long)dims[i]);
  return st;
}

static cn_status read_extent(hid_t ds, const char *what, cn_shape *shape) {
  hsize_t dims[CN_MAX_RANK];
  int rank;
  cn_status st = read_dims(ds, what, &rank, dims);
  if (st != CN_OK) return st;
  shape->rank = rank;
  for (int i = 0; i < rank; i++) shape->dim[i] = (int64_t)dims[i];
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

cn_status cn_h5_dataset_shape(hid_t file, const char *path, const char *fname, const char *what,
                              cn_shape *shape) {
  int exists = 0;
  cn_status st = cn_h5_exists(file, path, fname, &exists);
  if (st != CN_OK) return cn_fail_context(st, "%s", what);
  if (!exists) return cn_fail(CN_ERR_FORMAT, "%s: %s: dataset %s is missing", fname, what, path);
  hid_t ds = H5Dopen2(file, h5_path(path), H5P_DEFAULT);
  if (ds < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: %s is not a readable dataset", fname, what, path);
  char full[CN_H5_MAX_PATH + 64];
  snprintf(full, sizeof full, "%s: %s", fname, what);
  int filtered = 0;
  size_t elem = 0;
  st = check_storage(ds, full, &filtered);
  if (st == CN_OK) st = check_type(ds, full, &elem);
  if (st == CN_OK) st = read_extent(ds, full, shape);
  if (st == CN_OK) st = check_size(file, shape, elem, filtered, full);
  H5Dclose(ds);
  return st;
}

/* Reads the selection start/count (n values) into *buf and passes them on; *buf becomes the
 * buffer for the next slab. */
static cn_status read_slab(hid_t ds, hid_t fspace, const hsize_t *start, const hsize_t *count,
                           hsize_t n, float **buf, const char *what, cn_h5_sink sink, void *ctx) {
  hid_t mspace = H5Screate_simple(1, &n, NULL);
  herr_t err =
      mspace < 0 ? -1 : H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
  if (err >= 0) err = H5Dread(ds, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, *buf);
  if (mspace >= 0) H5Sclose(mspace);
  if (err < 0) return cn_fail(CN_ERR_FORMAT, "%s: data unreadable (damaged file?)", what);
  *buf = sink(ctx, *buf, (size_t)n);
  return *buf ? CN_OK : CN_ERR_IO;
}

/* Walks the dataset in row-major order in slabs of at most cap values: the rows of one axis
 * whose inner block fits in cap, for each index of the axes before it. */
static cn_status read_in_slabs(hid_t ds, const char *what, int rank, const hsize_t *dims,
                               float *buf, size_t cap, cn_h5_sink sink, void *ctx) {
  int axis = rank - 1;
  hsize_t inner = 1, outer = 1, start[CN_MAX_RANK] = {0}, count[CN_MAX_RANK];
  while (axis > 0 && inner * dims[axis] <= cap) inner *= dims[axis--];
  for (int i = 0; i < rank; i++) count[i] = i < axis ? 1 : dims[i];
  for (int i = 0; i < axis; i++) outer *= dims[i];
  hsize_t step = cap / inner;
  hid_t fspace = H5Dget_space(ds);
  if (fspace < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable shape", what);
  cn_status st = CN_OK;
  for (hsize_t o = 0; st == CN_OK && o < outer; o++) {
    hsize_t left = o;
    for (int i = axis - 1; i >= 0; i--) {
      start[i] = left % dims[i];
      left /= dims[i];
    }
    for (hsize_t r = 0; st == CN_OK && r < dims[axis]; r += step) {
      start[axis] = r;
      count[axis] = dims[axis] - r < step ? dims[axis] - r : step;
      st = read_slab(ds, fspace, start, count, count[axis] * inner, &buf, what, sink, ctx);
    }
  }
  H5Sclose(fspace);
  return st;
}

cn_status cn_h5_read_floats(hid_t file, const char *path, const char *what, int64_t numel,
                            float *buf, size_t cap, cn_h5_sink sink, void *ctx) {
  hid_t ds = H5Dopen2(file, h5_path(path), H5P_DEFAULT);
  if (ds < 0) return cn_fail(CN_ERR_FORMAT, "%s: unreadable dataset", what);
  hsize_t dims[CN_MAX_RANK];
  int rank = 0;
  cn_status st = read_dims(ds, what, &rank, dims);
  int64_t have = 1;
  for (int i = 0; st == CN_OK && i < rank; i++) /* clamped: no overflow, 0 still wins */
    have = have > CN_KERAS_MAX_ELEMENTS ? have * (dims[i] != 0) : have * (int64_t)dims[i];
  /* The extent again: the file may have changed since its shape was checked. */
  if (st == CN_OK && have != numel)
    st = cn_fail(CN_ERR_FORMAT, "%s: dataset changed while reading", what);
  if (st == CN_OK && numel > 0) {
    if ((size_t)numel > cap && sink)
      st = read_in_slabs(ds, what, rank, dims, buf, cap, sink, ctx);
    else if ((size_t)numel > cap)
      st = cn_fail(CN_ERR_ARG, "%s: buffer too small", what);
    else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
      st = cn_fail(CN_ERR_FORMAT, "%s: data unreadable (damaged file?)", what);
    else if (sink && !sink(ctx, buf, (size_t)numel))
      st = CN_ERR_IO;
  }
  H5Dclose(ds);
  return st;
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
  /* several inputs or outputs (a siamese model...): run with cn_model_forward_multi */
  if (g->n_inputs > 1 || g->n_outputs > 1) return cn_model_wrap_graph(g, name, &spec, out);
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

static cn_status load_h5_model(const char *path, cn_h5src *src, cn_model **out) {
  char *json = NULL, *name = NULL;
  cn_graph *g = NULL;
  cn_status st = cn_h5src_string_attr(src, "", "model_config", &json);
  if (st == CN_OK && !json)
    return cn_fail(CN_ERR_FORMAT,
                   "%s: no model_config attribute (a weights-only file needs the architecture "
                   "first, then cn_model_load_weights)",
                   path);
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
  if (st == CN_OK) st = cn_keras_load_weights(m->graph, src);
  if (st != CN_OK) {
    cn_model_free(m);
    return st;
  }
  *out = m;
  return CN_OK;
}

cn_status cn_keras_model_load(const char *path, cn_model **out) {
  *out = NULL;
  if (looks_like_json(path)) return load_json_model(path, out);
  cn_h5src *src;
  cn_status st = cn_h5src_open(path, NULL, 0, &src);
  if (st != CN_OK) return st;
  st = load_h5_model(path, src, out);
  cn_h5src_close(src);
  return st;
}

cn_status cn_keras_model_load_weights(cn_model *model, const char *path) {
  cn_graph *g = model->graph;
  cn_h5src *src;
  cn_status st = cn_h5src_open(path, g->params, g->n_param_floats * sizeof(float), &src);
  if (st != CN_OK) return st;
  st = cn_keras_load_weights(g, src);
  cn_h5src_close(src);
  return st;
}
