/* Keras file loading, shared between the parts: HDF5 access that treats every file as hostile
 * (keras_h5.c), model_config JSON to graph (keras_config.c) and weight matching
 * (keras_weights.c). */
#ifndef CN_IO_KERAS_INTERNAL_H
#define CN_IO_KERAS_INTERNAL_H

#include <hdf5.h>

#include "convnet/image.h"
#include "core/graph.h"

/* Largest model_config / JSON file accepted, in bytes. */
#define CN_KERAS_MAX_JSON ((size_t)64 << 20)
/* Largest dataset accepted, in elements, whatever the file size. */
#define CN_KERAS_MAX_ELEMENTS ((int64_t)1 << 31)
/* Longest list of layer or weight names accepted. */
#define CN_KERAS_MAX_NAMES 100000

/* A list of owned strings. */
typedef struct cn_strlist {
  int n;
  char **s;
} cn_strlist;

void cn_strlist_free(cn_strlist *l);

/* ---- keras_h5.c ---------------------------------------------------------------------------- */

/* Opens path read-only with HDF5's error printing off. CN_ERR_IO when missing or unreadable,
 * CN_ERR_FORMAT when not HDF5 or damaged. */
cn_status cn_h5_open(const char *path, hid_t *file);
/* 1 when loc/path exists and every link on the way is a hard link; 0 when absent. Soft,
 * external and user-defined links fail with CN_ERR_UNSUPPORTED. */
cn_status cn_h5_exists(hid_t loc, const char *path, const char *file, int *exists);
/* 1 when loc has an attribute called name. */
int cn_h5_has_attr(hid_t loc, const char *name);
/* Reads a string attribute (fixed or variable length, scalar or one-element) into *out. */
cn_status cn_h5_read_string_attr(hid_t loc, const char *name, const char *file, char **out);
/* Reads a string-array attribute, or its chunks name0, name1, ... as Keras writes them when the
 * list is too long for one attribute. An absent attribute or an empty non-string array gives an
 * empty list. */
cn_status cn_h5_read_names_attr(hid_t loc, const char *name, const char *file, cn_strlist *out);
/* Checks that loc/path is a plain float dataset stored inside this file, of a believable size,
 * and returns its shape. what names it in messages ("conv1/kernel"). */
cn_status cn_h5_dataset_shape(hid_t loc, const char *path, const char *file, const char *what,
                              cn_shape *shape);
/* Reads the dataset (already checked with cn_h5_dataset_shape) as float32 into dst, which holds
 * numel(shape) floats, and refuses NaN and infinity. */
cn_status cn_h5_read_floats(hid_t loc, const char *path, const char *what, int64_t numel,
                            float *dst);

/* ---- keras_config.c ------------------------------------------------------------------------ */

/* Builds the graph of a Keras model JSON (model.to_json() or the model_config attribute).
 * Layers of a nested model are named "<model>/<layer>". *name receives the model's name. */
cn_status cn_keras_build_graph(const char *file, const char *json, cn_graph **out, char **name);
/* The preprocessing keras.applications uses for a model of this name and input channels. */
cn_preprocess cn_keras_guess_preprocess(const char *model_name, int channels);

/* ---- keras_weights.c ----------------------------------------------------------------------- */

/* Loads every parameter of g from an open Keras file (any of the three layouts). */
cn_status cn_keras_load_weights(cn_graph *g, hid_t file, const char *path);

#endif
