/* Training data from IDX files (MNIST's format): the images and labels in memory, preprocessed
 * as the model's input spec says, labels 0 .. max as the classes. The lecture's
 * model.fit(x_train, y_train) on Fashion-MNIST is this with a whole model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convnet/io.h"
#include "core/error.h"
#include "core/mem.h"
#include "train/fit_internal.h"

/* Fashion-MNIST and MNIST name their files so: "<set>-images-idx3-ubyte[.gz]". */
static const char *const IMAGES_TAG = "images-idx3", *const LABELS_TAG = "labels-idx1";

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && !S_ISDIR(sb.st_mode);
}

/* dir/<set>-images-idx3-ubyte.gz, or without .gz, into buf; 0 when neither exists. */
static int set_in_folder(const char *dir, const char *set, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s-images-idx3-ubyte.gz", dir, set);
  if (is_file(buf)) return 1;
  snprintf(buf, cap, "%s/%s-images-idx3-ubyte", dir, set);
  return is_file(buf);
}

int fit_idx_wanted(const char *path) {
  char buf[4096];
  if (!path) return 0;
  if (is_dir(path)) return set_in_folder(path, "train", buf, sizeof buf);
  return strstr(path, IMAGES_TAG) != NULL;
}

/* The labels file beside an images file: the last "images-idx3" becomes "labels-idx1". */
static cn_status labels_path(const char *images, char *buf, size_t cap) {
  const char *at = NULL;
  for (const char *p = strstr(images, IMAGES_TAG); p; p = strstr(p + 1, IMAGES_TAG)) at = p;
  if (!at || strlen(images) >= cap)
    return cn_fail(CN_ERR_ARG, "%s: an IDX images file is named *%s*, its labels *%s*", images,
                   IMAGES_TAG, LABELS_TAG);
  snprintf(buf, cap, "%.*s%s%s", (int)(at - images), images, LABELS_TAG, at + strlen(IMAGES_TAG));
  return CN_OK;
}

/* Maps 0..255 values as the input spec says, for one channel or several. */
static cn_status preprocess(const cn_input_spec *spec, const char *path, float *x, int64_t n) {
  float scale = 1, shift = 0;
  switch (spec->preprocess) {
  case CN_PRE_RAW:
    return CN_OK;
  case CN_PRE_UNIT:
    scale = 1.0f / 255.0f;
    break;
  case CN_PRE_TF:
    scale = 1.0f / 127.5f, shift = -1;
    break;
  default:
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: IDX values take raw, unit or tf preprocessing, not %s (it is per RGB "
                   "channel)",
                   path, cn_preprocess_name(spec->preprocess));
  }
  for (int64_t i = 0; i < n; i++) x[i] = x[i] * scale + shift;
  return CN_OK;
}

/* Checks images against the model's input and labels against the images. */
static cn_status check_set(const char *images, const cn_shape *is, const cn_shape *ls,
                           const float *labels, int64_t dim) {
  int64_t per = is->rank < 2 ? 0 : cn_shape_numel(is) / is->dim[0];
  if (is->rank < 2 || per != dim)
    return cn_fail(CN_ERR_SHAPE, "%s: samples of %lld values, the model takes %lld", images,
                   (long long)per, (long long)dim);
  if (ls->rank != 1 || ls->dim[0] != is->dim[0])
    return cn_fail(CN_ERR_SHAPE, "%s: %lld images but its labels file has %lld values", images,
                   (long long)is->dim[0], (long long)cn_shape_numel(ls));
  for (int64_t i = 0; i < ls->dim[0]; i++)
    if (!(labels[i] >= 0 && labels[i] <= 65535 && labels[i] == (float)(int)labels[i]))
      return cn_fail(CN_ERR_FORMAT, "%s: label %lld is %g, not a class number", images,
                     (long long)i, (double)labels[i]);
  return CN_OK;
}

/* Reads one images file and the labels beside it into out (rows of dim values). */
static cn_status read_set(const fit_run *r, const char *images, int64_t dim, fit_features *out) {
  char lpath[4200];
  cn_shape is, ls;
  float *x = NULL, *labels = NULL;
  cn_status st = labels_path(images, lpath, sizeof lpath);
  if (st == CN_OK) st = cn_idx_read(images, &is, &x);
  if (st == CN_OK) st = cn_idx_read(lpath, &ls, &labels);
  if (st == CN_OK) st = check_set(images, &is, &ls, labels, dim);
  if (st == CN_OK) st = preprocess(&r->spec, images, x, cn_shape_numel(&is));
  int64_t n = st == CN_OK ? is.dim[0] : 0;
  float *aligned = st == CN_OK ? cn_alloc_aligned((size_t)(n * dim) * sizeof *aligned) : NULL;
  int *y = st == CN_OK ? malloc((size_t)n * sizeof *y) : NULL;
  if (st == CN_OK && (!aligned || !y)) st = cn_fail(CN_ERR_NOMEM, "%s: out of memory", images);
  if (st == CN_OK) {
    memcpy(aligned, x, (size_t)(n * dim) * sizeof *aligned);
    for (int64_t i = 0; i < n; i++) y[i] = (int)labels[i];
    *out = (fit_features){.n = n, .dim = dim, .cap = n, .x = aligned, .y = y};
  } else {
    cn_free_aligned(aligned);
    free(y);
  }
  free(x);
  free(labels);
  return st;
}

/* Keras's validation_split: the last fraction of the samples, before any shuffling. */
static cn_status split_tail(fit_features *all, double fraction, fit_features *val) {
  int64_t n_val = (int64_t)((double)all->n * fraction);
  if (n_val < 1 || n_val >= all->n)
    return cn_fail(CN_ERR_ARG, "a validation split of %g leaves no training or validation data",
                   fraction);
  int64_t keep = all->n - n_val;
  val->dim = all->dim;
  val->n = val->cap = n_val;
  val->x = cn_alloc_aligned((size_t)(n_val * all->dim) * sizeof(float));
  val->y = malloc((size_t)n_val * sizeof *val->y);
  if (!val->x || !val->y) return cn_fail(CN_ERR_NOMEM, "out of memory for the validation split");
  memcpy(val->x, all->x + keep * all->dim, (size_t)(n_val * all->dim) * sizeof(float));
  memcpy(val->y, all->y + keep, (size_t)n_val * sizeof *val->y);
  all->n = keep;
  return CN_OK;
}

static cn_status name_classes(fit_run *r) {
  int max = 0;
  for (int64_t i = 0; i < r->idx_train.n; i++)
    if (r->idx_train.y[i] > max) max = r->idx_train.y[i];
  r->classes = max + 1;
  if (r->classes < 2) return cn_fail(CN_ERR_ARG, "%s: one class only", r->o->data_dir);
  for (int64_t i = 0; i < r->idx_val.n; i++)
    if (r->idx_val.y[i] >= r->classes)
      return cn_fail(CN_ERR_ARG, "validation label %d is not a class of the training data (0..%d)",
                     r->idx_val.y[i], max);
  r->idx_class_names = calloc((size_t)r->classes, sizeof *r->idx_class_names);
  if (!r->idx_class_names) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int c = 0; c < r->classes; c++) {
    char name[16];
    snprintf(name, sizeof name, "%d", c);
    if (!(r->idx_class_names[c] = strdup(name))) return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  return CN_OK;
}

/* Balanced weights n / (classes * count_c), as for image folders. */
static cn_status class_weights(fit_run *r) {
  r->class_weight = calloc((size_t)r->classes, sizeof *r->class_weight);
  if (!r->class_weight) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < r->idx_train.n; i++) r->class_weight[r->idx_train.y[i]] += 1;
  for (int c = 0; c < r->classes; c++)
    if (r->class_weight[c] > 0)
      r->class_weight[c] = (float)r->idx_train.n / ((float)r->classes * r->class_weight[c]);
  return CN_OK;
}

/* An images file as given, or a folder's <set> file. */
static cn_status images_path(const char *given, const char *set, char *buf, size_t cap) {
  if (!is_dir(given)) {
    snprintf(buf, cap, "%s", given);
    return CN_OK;
  }
  if (!set_in_folder(given, set, buf, cap))
    return cn_fail(CN_ERR_IO, "%s: no %s-images-idx3-ubyte[.gz] in this folder", given, set);
  return CN_OK;
}

cn_status fit_idx_open(fit_run *r) {
  const cn_train_options *o = r->o;
  if (cn_augment_active(&o->augment))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: augmentation works on image folders, not IDX data",
                   o->data_dir);
  cn_shape in = cn_model_input_shape(r->base);
  int64_t dim = cn_shape_numel(&in);
  char path[4200];
  cn_status st = images_path(o->data_dir, "train", path, sizeof path);
  if (st == CN_OK) st = read_set(r, path, dim, &r->idx_train);
  if (st != CN_OK) return st;
  char val[4200] = "";
  if (o->val_dir) {
    st = images_path(o->val_dir, "t10k", val, sizeof val);
  } else if (o->val_split <= 0 && is_dir(o->data_dir)) {
    if (!set_in_folder(o->data_dir, "t10k", val, sizeof val)) val[0] = 0;
  }
  if (st == CN_OK && val[0]) st = read_set(r, val, dim, &r->idx_val);
  if (st == CN_OK && !val[0] && o->val_split > 0)
    st = split_tail(&r->idx_train, o->val_split, &r->idx_val);
  if (st == CN_OK) st = name_classes(r);
  if (st == CN_OK && o->class_weights) st = class_weights(r);
  return st;
}

/* src itself when nothing is frozen; else the frozen prefix run over src, batch by batch. */
cn_status fit_idx_features(fit_run *r, const fit_features *src, fit_features *out) {
  memset(out, 0, sizeof *out);
  if (src->n == 0) return CN_OK;
  if (!r->prefix) {
    *out = *src;
    out->borrowed = 1;
    return CN_OK;
  }
  cn_shape shape = cn_model_output_shape(r->prefix);
  int64_t dim = cn_shape_numel(&shape);
  out->x = cn_alloc_aligned((size_t)(src->n * dim) * sizeof(float));
  out->y = malloc((size_t)src->n * sizeof *out->y);
  if (!out->x || !out->y) {
    fit_features_free(out);
    return cn_fail(CN_ERR_NOMEM, "out of memory for %lld samples", (long long)src->n);
  }
  out->n = out->cap = src->n;
  out->dim = dim;
  memcpy(out->y, src->y, (size_t)src->n * sizeof *out->y);
  for (int64_t first = 0; first < src->n; first += r->batch) {
    int count = (int)(src->n - first < r->batch ? src->n - first : r->batch);
    cn_status st =
        cn_model_forward(r->prefix, count, src->x + first * src->dim, out->x + first * dim);
    if (st != CN_OK) {
      fit_features_free(out);
      return st;
    }
  }
  return CN_OK;
}

void fit_idx_free(fit_run *r) {
  fit_features_free(&r->idx_train);
  fit_features_free(&r->idx_val);
  if (r->idx_class_names)
    for (int c = 0; c < r->classes; c++) free(r->idx_class_names[c]);
  free(r->idx_class_names);
  r->idx_class_names = NULL;
}
