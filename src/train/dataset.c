/* Labelled image folders: the scan (sorted so that labels and order never depend on readdir),
 * the checks training needs, stratified splits and balanced class weights. */
#include "train/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/rng.h"

struct cn_dataset {
  int nclasses;
  char **classes;
  int64_t count, cap;
  int64_t *offsets; /* into text: offsets, not pointers, because text grows by realloc */
  int *labels;
  char *text;
  size_t text_len, text_cap;
};

/* ---- storage ------------------------------------------------------------------------------ */

static cn_status dataset_new(cn_dataset **out) {
  *out = calloc(1, sizeof **out);
  return *out ? CN_OK : cn_fail(CN_ERR_NOMEM, "dataset: out of memory");
}

void cn_dataset_free(cn_dataset *ds) {
  if (!ds) return;
  for (int c = 0; c < ds->nclasses; c++) free(ds->classes[c]);
  free(ds->classes);
  free(ds->offsets);
  free(ds->labels);
  free(ds->text);
  free(ds);
}

static cn_status set_classes(cn_dataset *ds, const char *const *names, int n) {
  ds->classes = calloc((size_t)(n ? n : 1), sizeof *ds->classes);
  if (!ds->classes) return cn_fail(CN_ERR_NOMEM, "dataset: out of memory");
  for (int c = 0; c < n; c++) {
    if (!(ds->classes[c] = cn_strdup(names[c]))) return CN_ERR_NOMEM;
    ds->nclasses = c + 1;
  }
  return CN_OK;
}

static cn_status add_sample(cn_dataset *ds, const char *path, int label) {
  if (ds->count >= CN_DATASET_MAX_FILES)
    return cn_fail(CN_ERR_LIMIT, "dataset: more than %d images", CN_DATASET_MAX_FILES);
  if (ds->count == ds->cap) {
    int64_t cap = ds->cap ? ds->cap * 2 : 256;
    int64_t *offsets = realloc(ds->offsets, (size_t)cap * sizeof *offsets);
    if (offsets) ds->offsets = offsets;
    int *labels = realloc(ds->labels, (size_t)cap * sizeof *labels);
    if (labels) ds->labels = labels;
    if (!offsets || !labels) return cn_fail(CN_ERR_NOMEM, "dataset: out of memory");
    ds->cap = cap;
  }
  size_t n = strlen(path) + 1;
  if (ds->text_len + n > ds->text_cap) {
    size_t cap = ds->text_cap ? ds->text_cap * 2 : 16384;
    while (cap < ds->text_len + n) cap *= 2;
    char *text = realloc(ds->text, cap);
    if (!text) return cn_fail(CN_ERR_NOMEM, "dataset: out of memory");
    ds->text = text, ds->text_cap = cap;
  }
  memcpy(ds->text + ds->text_len, path, n);
  ds->offsets[ds->count] = (int64_t)ds->text_len;
  ds->labels[ds->count++] = label;
  ds->text_len += n;
  return CN_OK;
}

int64_t cn_dataset_count(const cn_dataset *ds) {
  return ds ? ds->count : 0;
}

int cn_dataset_class_count(const cn_dataset *ds) {
  return ds ? ds->nclasses : 0;
}

const char *cn_dataset_class_name(const cn_dataset *ds, int c) {
  return ds && c >= 0 && c < ds->nclasses ? ds->classes[c] : NULL;
}

const char *cn_dataset_path(const cn_dataset *ds, int64_t i) {
  return ds && i >= 0 && i < ds->count ? ds->text + ds->offsets[i] : NULL;
}

int cn_dataset_label(const cn_dataset *ds, int64_t i) {
  return ds && i >= 0 && i < ds->count ? ds->labels[i] : -1;
}

/* ---- sorted name lists -------------------------------------------------------------------- */

typedef struct name_list {
  char **items;
  int64_t count, cap;
} name_list;

static void names_free(name_list *l) {
  for (int64_t i = 0; i < l->count; i++) free(l->items[i]);
  free(l->items);
  *l = (name_list){0};
}

static cn_status names_add(name_list *l, const char *name, int64_t limit, const char *dir) {
  if (l->count >= limit)
    return cn_fail(CN_ERR_LIMIT, "%s: more than %lld entries", dir, (long long)limit);
  if (l->count == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 64;
    char **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", dir);
    l->items = items, l->cap = cap;
  }
  if (!(l->items[l->count] = cn_strdup(name))) return CN_ERR_NOMEM;
  l->count++;
  return CN_OK;
}

static int by_bytes(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_case(const void *a, const void *b) {
  return strcasecmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort(name_list *l) {
  if (l->count > 1) qsort(l->items, (size_t)l->count, sizeof *l->items, by_bytes);
}

/* ---- directory walking -------------------------------------------------------------------- */

static int has_image_extension(const char *name) {
  static const char *const exts[] = {"jpg", "jpeg", "png", "bmp", "ppm", "pgm"};
  const char *dot = strrchr(name, '.');
  if (!dot) return 0;
  for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
    if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
  return 0;
}

static cn_status join_path(char *buf, const char *dir, const char *name) {
  size_t n = strlen(dir), m = strlen(name);
  if (n + m + 2 > CN_DATASET_MAX_PATH)
    return cn_fail(CN_ERR_LIMIT, "%s/%s: path longer than %d bytes", dir, name,
                   CN_DATASET_MAX_PATH - 1);
  memcpy(buf, dir, n);
  buf[n] = '/';
  memcpy(buf + n + 1, name, m + 1);
  return CN_OK;
}

typedef enum entry_kind { ENTRY_OTHER, ENTRY_FILE, ENTRY_DIR } entry_kind;

/* What path is after following links; d_type saves a stat for plain files and folders. */
static entry_kind kind_of(const struct dirent *e, const char *path) {
  if (e->d_type == DT_REG) return ENTRY_FILE;
  if (e->d_type == DT_DIR) return ENTRY_DIR;
  struct stat sb;
  if (stat(path, &sb) != 0) return ENTRY_OTHER; /* dangling link */
  return S_ISREG(sb.st_mode) ? ENTRY_FILE : S_ISDIR(sb.st_mode) ? ENTRY_DIR : ENTRY_OTHER;
}

/* Non-hidden entries of dir: sub-folders into dirs, image files (full paths) into files. Either
 * list may be NULL to ignore that kind. */
static cn_status list_dir(const char *dir, name_list *dirs, name_list *files) {
  DIR *d = opendir(dir);
  if (!d) return cn_fail(CN_ERR_IO, "%s: cannot read the folder: %s", dir, strerror(errno));
  cn_status st = CN_OK;
  char path[CN_DATASET_MAX_PATH];
  struct dirent *e;
  while (st == CN_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if ((st = join_path(path, dir, e->d_name)) != CN_OK) break;
    entry_kind kind = kind_of(e, path);
    if (kind == ENTRY_DIR && dirs)
      st = names_add(dirs, e->d_name, CN_DATASET_MAX_CLASSES, dir);
    else if (kind == ENTRY_FILE && files && has_image_extension(e->d_name))
      st = names_add(files, path, CN_DATASET_MAX_FILES, dir);
  }
  closedir(d);
  return st;
}

typedef struct dir_id {
  dev_t dev;
  ino_t ino;
} dir_id;

/* Image files anywhere below dir; ancestors[0..depth) are the folders above it, so that a link
 * back to one of them is not walked again. */
static cn_status walk_class(const char *dir, dir_id *ancestors, int depth, name_list *files) {
  struct stat sb;
  if (stat(dir, &sb) != 0) return cn_fail(CN_ERR_IO, "%s: %s", dir, strerror(errno));
  for (int i = 0; i < depth; i++)
    if (ancestors[i].dev == sb.st_dev && ancestors[i].ino == sb.st_ino) return CN_OK;
  if (depth >= CN_DATASET_MAX_DEPTH)
    return cn_fail(CN_ERR_LIMIT, "%s: folders nested deeper than %d", dir, CN_DATASET_MAX_DEPTH);
  ancestors[depth] = (dir_id){sb.st_dev, sb.st_ino};
  name_list subdirs = {0};
  cn_status st = list_dir(dir, &subdirs, files);
  char path[CN_DATASET_MAX_PATH];
  for (int64_t i = 0; st == CN_OK && i < subdirs.count; i++) {
    st = join_path(path, dir, subdirs.items[i]);
    if (st == CN_OK) st = walk_class(path, ancestors, depth + 1, files);
  }
  names_free(&subdirs);
  return st;
}

/* ---- the scan ----------------------------------------------------------------------------- */

static cn_status check_root(const char *dir) {
  struct stat sb;
  if (stat(dir, &sb) != 0) return cn_fail(CN_ERR_IO, "%s: %s", dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return cn_fail(CN_ERR_IO, "%s: not a directory", dir);
  return CN_OK;
}

/* Two class names equal but for case would merge on case-insensitive file systems. */
static cn_status check_case_collisions(const char *dir, const name_list *classes) {
  if (classes->count < 2) return CN_OK;
  char **copy = malloc((size_t)classes->count * sizeof *copy);
  if (!copy) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", dir);
  memcpy(copy, classes->items, (size_t)classes->count * sizeof *copy);
  qsort(copy, (size_t)classes->count, sizeof *copy, by_case);
  cn_status st = CN_OK;
  for (int64_t i = 1; st == CN_OK && i < classes->count; i++)
    if (strcasecmp(copy[i - 1], copy[i]) == 0)
      st = cn_fail(CN_ERR_FORMAT, "%s: class folders '%s' and '%s' differ only in case", dir,
                   copy[i - 1], copy[i]);
  free(copy);
  return st;
}

static cn_status check_class_count(const char *dir, const name_list *classes, unsigned flags) {
  if (classes->count == 0 && !(flags & CN_SCAN_NO_CLASSES))
    return cn_fail(CN_ERR_FORMAT, "%s: no class folders (want one sub-folder of images per class)",
                   dir);
  if (classes->count == 1 && !(flags & CN_SCAN_ONE_CLASS))
    return cn_fail(CN_ERR_FORMAT, "%s: needs at least 2 classes, found only '%s'", dir,
                   classes->items[0]);
  return check_case_collisions(dir, classes);
}

static cn_status add_class(cn_dataset *ds, const char *dir, int label, unsigned flags,
                           dir_id *ancestors) {
  char path[CN_DATASET_MAX_PATH];
  cn_status st = join_path(path, dir, ds->classes[label]);
  name_list files = {0};
  if (st == CN_OK) st = walk_class(path, ancestors, 1, &files);
  names_sort(&files);
  if (st == CN_OK && files.count == 0 && !(flags & CN_SCAN_EMPTY_CLASS))
    st = cn_fail(CN_ERR_FORMAT,
                 "%s: class folder '%s' has no images (jpg, jpeg, png, bmp, ppm or pgm files)", dir,
                 ds->classes[label]);
  for (int64_t i = 0; st == CN_OK && i < files.count; i++)
    st = add_sample(ds, files.items[i], label);
  names_free(&files);
  return st;
}

cn_status cn_dataset_scan_dir(const char *dir, unsigned flags, cn_dataset **out) {
  if (!dir || !out) return cn_fail(CN_ERR_ARG, "dataset: no folder or output given");
  *out = NULL;
  cn_status st = check_root(dir);
  if (st != CN_OK) return st;
  struct stat sb;
  stat(dir, &sb);
  dir_id ancestors[CN_DATASET_MAX_DEPTH + 1] = {{sb.st_dev, sb.st_ino}};
  name_list classes = {0};
  cn_dataset *ds = NULL;
  st = list_dir(dir, &classes, NULL);
  names_sort(&classes);
  if (st == CN_OK) st = check_class_count(dir, &classes, flags);
  if (st == CN_OK) st = dataset_new(&ds);
  if (st == CN_OK) st = set_classes(ds, (const char *const *)classes.items, (int)classes.count);
  for (int c = 0; st == CN_OK && c < ds->nclasses; c++)
    st = add_class(ds, dir, c, flags, ancestors);
  names_free(&classes);
  if (st == CN_OK)
    *out = ds;
  else
    cn_dataset_free(ds);
  return st;
}

cn_status cn_dataset_open_dir(const char *dir, cn_dataset **out) {
  return cn_dataset_scan_dir(dir, 0, out);
}

/* ---- validation folders ------------------------------------------------------------------- */

static int find_name(const char *const *names, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(names[i], name) == 0) return i;
  return -1;
}

/* Maps the found classes onto the expected ones; the first extra or missing one is an error. */
static cn_status match_classes(const char *dir, const cn_dataset *found, const char *const *want,
                               int n, int *map) {
  for (int c = 0; c < found->nclasses; c++) {
    map[c] = find_name(want, n, found->classes[c]);
    if (map[c] < 0)
      return cn_fail(CN_ERR_FORMAT, "%s: class folder '%s' is not one of the %d training classes",
                     dir, found->classes[c], n);
  }
  for (int i = 0; i < n; i++)
    if (find_name((const char *const *)found->classes, found->nclasses, want[i]) < 0)
      return cn_fail(CN_ERR_FORMAT, "%s: training class '%s' has no folder here", dir, want[i]);
  return CN_OK;
}

cn_status cn_dataset_open_dir_classes(const char *dir, const char *const *classes, int n,
                                      cn_dataset **out) {
  if (!dir || !out || !classes || n < 1 || n > CN_DATASET_MAX_CLASSES)
    return cn_fail(CN_ERR_ARG, "dataset: no folder, classes or output given");
  *out = NULL;
  cn_dataset *found;
  /* One class or none is allowed here so that the error names the missing training class. */
  cn_status st = cn_dataset_scan_dir(dir, CN_SCAN_ONE_CLASS | CN_SCAN_NO_CLASSES, &found);
  if (st != CN_OK) return st;
  int *map = malloc((size_t)(found->nclasses ? found->nclasses : 1) * sizeof *map);
  cn_dataset *ds = NULL;
  st = map ? match_classes(dir, found, classes, n, map) : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = dataset_new(&ds);
  if (st == CN_OK) st = set_classes(ds, classes, n);
  for (int64_t i = 0; st == CN_OK && i < found->count; i++)
    st = add_sample(ds, cn_dataset_path(found, i), map[found->labels[i]]);
  free(map);
  cn_dataset_free(found);
  if (st == CN_OK)
    *out = ds;
  else
    cn_dataset_free(ds);
  return st;
}

/* ---- split and weights -------------------------------------------------------------------- */

static const uint64_t SPLIT_STREAM = 0x53504c4954; /* "SPLIT" */

/* Marks the images that go to validation: in each class, the first round(n * fraction) of a
 * seeded shuffle of its indices (the shuffle keyed by the class, so classes are independent). */
static cn_status mark_validation(const cn_dataset *all, double fraction, uint64_t seed,
                                 char *to_val) {
  int64_t *start = calloc((size_t)all->nclasses + 1, sizeof *start);
  int64_t *items = malloc((size_t)(all->count ? all->count : 1) * sizeof *items);
  if (!start || !items) {
    free(start), free(items);
    return cn_fail(CN_ERR_NOMEM, "split: out of memory");
  }
  for (int64_t i = 0; i < all->count; i++) start[all->labels[i] + 1]++;
  for (int c = 0; c < all->nclasses; c++) start[c + 1] += start[c];
  for (int64_t i = 0, *fill = start; i < all->count; i++) items[fill[all->labels[i]]++] = i;
  /* fill advanced start[c] to the end of class c: start[c] now holds where class c + 1 begins */
  for (int c = all->nclasses; c > 0; c--) start[c] = start[c - 1];
  start[0] = 0;
  for (int c = 0; c < all->nclasses; c++) {
    int64_t n = start[c + 1] - start[c];
    cn_rng rng = cn_rng_make(cn_rng_key(seed, SPLIT_STREAM, (uint64_t)c));
    cn_rng_shuffle(&rng, items + start[c], n);
    int64_t nval = n ? (int64_t)llround((double)n * fraction) : 0;
    if (nval > n - 1) nval = n > 0 ? n - 1 : 0;
    for (int64_t k = 0; k < nval; k++) to_val[items[start[c] + k]] = 1;
  }
  free(start), free(items);
  return CN_OK;
}

cn_status cn_dataset_split(const cn_dataset *all, double val_fraction, uint64_t seed,
                           cn_dataset **train, cn_dataset **val) {
  if (!all || !train || !val) return cn_fail(CN_ERR_ARG, "split: missing argument");
  *train = *val = NULL;
  if (!(val_fraction > 0 && val_fraction < 1))
    return cn_fail(CN_ERR_ARG, "split: validation fraction %g is not in (0, 1)", val_fraction);
  char *to_val = calloc((size_t)(all->count ? all->count : 1), 1);
  cn_dataset *parts[2] = {NULL, NULL};
  cn_status st = to_val ? CN_OK : cn_fail(CN_ERR_NOMEM, "split: out of memory");
  if (st == CN_OK) st = mark_validation(all, val_fraction, seed, to_val);
  for (int p = 0; st == CN_OK && p < 2; p++) {
    st = dataset_new(&parts[p]);
    if (st == CN_OK) st = set_classes(parts[p], (const char *const *)all->classes, all->nclasses);
  }
  for (int64_t i = 0; st == CN_OK && i < all->count; i++)
    st = add_sample(parts[to_val[i] ? 1 : 0], cn_dataset_path(all, i), all->labels[i]);
  if (st == CN_OK && parts[1]->count == 0)
    st = cn_fail(CN_ERR_ARG, "split: a validation fraction of %g leaves no validation images",
                 val_fraction);
  free(to_val);
  if (st != CN_OK) {
    cn_dataset_free(parts[0]);
    cn_dataset_free(parts[1]);
    return st;
  }
  *train = parts[0], *val = parts[1];
  return CN_OK;
}

cn_status cn_dataset_subset(const cn_dataset *ds, int64_t first, int64_t count, cn_dataset **out) {
  if (!ds || !out) return cn_fail(CN_ERR_ARG, "subset: missing argument");
  *out = NULL;
  if (first < 0 || count < 0 || first > ds->count || count > ds->count - first)
    return cn_fail(CN_ERR_ARG, "subset: images %lld..%lld of %lld", (long long)first,
                   (long long)(first + count), (long long)ds->count);
  cn_dataset *part = NULL;
  cn_status st = dataset_new(&part);
  if (st == CN_OK) st = set_classes(part, (const char *const *)ds->classes, ds->nclasses);
  for (int64_t i = first; st == CN_OK && i < first + count; i++)
    st = add_sample(part, cn_dataset_path(ds, i), ds->labels[i]);
  if (st != CN_OK) {
    cn_dataset_free(part);
    return st;
  }
  *out = part;
  return CN_OK;
}

void cn_dataset_class_weights(const cn_dataset *ds, float *w) {
  if (!ds || !w) return;
  for (int c = 0; c < ds->nclasses; c++) w[c] = 0;
  for (int64_t i = 0; i < ds->count; i++) w[ds->labels[i]] += 1;
  for (int c = 0; c < ds->nclasses; c++)
    if (w[c] > 0) w[c] = (float)((double)ds->count / ((double)ds->nclasses * (double)w[c]));
}
