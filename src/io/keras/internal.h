/* src/io/keras: Keras HDF5 and JSON models and weights.
 *
 * Keras file loading, shared between the parts: the libhdf5 calls, which treat every file as
 * hostile (h5.c), the reader the loaders go through, which runs those calls in a child
 * process (h5_guard.c, see h5_guard.h), model_config JSON to graph (config.c) and weight
 * matching (weights.c). Only h5.c and h5_guard.c call libhdf5. */
#ifndef CN_IO_KERAS_INTERNAL_H
#define CN_IO_KERAS_INTERNAL_H

#include "io/io.h"

#include <hdf5.h>

#include "convnet/image.h"
#include "convnet/model.h"
#include "core/graph.h"

/* Largest model_config / JSON file accepted, in bytes; also the most string bytes one attribute
 * may give. */
#define CN_KERAS_MAX_JSON ((size_t)64 << 20)
/* Largest dataset accepted, in elements, whatever the file size. */
#define CN_KERAS_MAX_ELEMENTS ((int64_t)1 << 31)
/* Longest list of layer or weight names accepted. */
#define CN_KERAS_MAX_NAMES 100000
/* Longest object path or attribute name passed to libhdf5. */
#define CN_H5_MAX_PATH 4096

/* A list of owned strings. */
typedef struct cn_strlist {
  int n;
  char **s;
} cn_strlist;

void cn_strlist_free(cn_strlist *l);
/* Appends a copy of s[0..len). CN_ERR_LIMIT past CN_KERAS_MAX_NAMES strings. */
cn_status cn_strlist_push(cn_strlist *l, const char *s, size_t len);

/* ---- h5.c: libhdf5 access, in whatever process runs it --------------------------------
 * Object paths are relative to the file's root ("" is the root itself); file names the file in
 * messages. */

/* Opens path read-only with HDF5's error printing off. CN_ERR_IO when missing or unreadable,
 * CN_ERR_FORMAT when not HDF5 or damaged. */
cn_status cn_h5_open(const char *path, hid_t *file);
/* 1 when path exists and every link on the way is a hard link; 0 when absent. Soft, external and
 * user-defined links fail with CN_ERR_UNSUPPORTED. */
cn_status cn_h5_exists(hid_t file, const char *path, const char *fname, int *exists);
/* *has = 1 when the group at path has an attribute called name. */
cn_status cn_h5_has_attr(hid_t file, const char *path, const char *name, const char *fname,
                         int *has);
/* Reads one attribute of the group at path as a list of strings (fixed or variable length, scalar
 * or one-dimensional); an absent attribute, or a non-string one that is an empty array, gives an
 * empty list. */
cn_status cn_h5_attr_strings(hid_t file, const char *path, const char *name, const char *fname,
                             cn_strlist *out);
/* The names of the links in the group at path, in name order. */
cn_status cn_h5_group_members(hid_t file, const char *path, const char *fname, cn_strlist *out);
/* Checks that path is a plain float dataset stored inside this file, of a believable size, and
 * returns its shape. what names it in messages ("conv1/kernel"). */
cn_status cn_h5_dataset_shape(hid_t file, const char *path, const char *fname, const char *what,
                              cn_shape *shape);
/* Receives consecutive runs of a dataset's values (row-major order) and returns the buffer (cap
 * values) for the next run, or NULL after cn_fail. */
typedef float *(*cn_h5_sink)(void *ctx, float *values, size_t n);
/* Reads the dataset (already checked with cn_h5_dataset_shape, numel elements) as float32. With
 * sink NULL (cap >= numel) it reads straight into buf; otherwise it reads slabs of at most cap
 * values, the first into buf, and hands each to sink, so that memory stays bounded whatever the
 * dataset's size. */
cn_status cn_h5_read_floats(hid_t file, const char *path, const char *what, int64_t numel,
                            float *buf, size_t cap, cn_h5_sink sink, void *ctx);

/* ---- config.c ------------------------------------------------------------------------ */

/* Builds the graph of a Keras model JSON (model.to_json() or the model_config attribute).
 * Layers of a nested model are named "<model>/<layer>". *name receives the model's name. */
cn_status cn_keras_build_graph(const char *file, const char *json, cn_graph **out, char **name);
/* The preprocessing keras.applications uses for a model of this name and input channels. */
cn_preprocess cn_keras_guess_preprocess(const char *model_name, int channels);

/* ---- weights.c ----------------------------------------------------------------------- */

struct cn_h5src;
/* Loads every parameter of g from an open Keras file (any of the three layouts). */
cn_status cn_keras_load_weights(cn_graph *g, struct cn_h5src *src);

#endif
