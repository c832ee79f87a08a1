/* convnet: labels, NumPy tensors and the weight cache. */
#ifndef CONVNET_IO_H
#define CONVNET_IO_H

#include "convnet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_labels cn_labels;

/* The 1000 ImageNet classes in Keras order, built into the library. */
CN_API cn_status cn_labels_imagenet(cn_labels **out);
/* Reads synset_words.txt ("n01440764 tench, Tinca tinca"), imagenet_class_index.json
 * ({"0": ["n01440764", "tench"], ...}) or one name per line. */
CN_API cn_status cn_labels_load(const char *path, cn_labels **out);
CN_API size_t cn_labels_count(const cn_labels *labels);
CN_API const char *cn_labels_name(const cn_labels *labels, size_t index); /* NULL past the end */
CN_API const char *cn_labels_id(const cn_labels *labels, size_t index);   /* wnid, or NULL */
CN_API void cn_labels_free(cn_labels *labels);

/* Reads a little-endian float32 C-order .npy file; float64, integer (int8..int64, uint8..uint64)
 * and bool arrays are converted to float32 (integers are exact up to 2^24, enough for shapes and
 * indices). *data is allocated with malloc: release it with free(). */
CN_API cn_status cn_npy_read(const char *path, cn_shape *shape, float **data);
/* Writes a float32 .npy (format 1.0), atomically (temp file, fsync, rename). */
CN_API cn_status cn_npy_write(const char *path, const cn_shape *shape, const float *data);

/* Reads an IDX file, the format of MNIST and Fashion-MNIST (unsigned or signed bytes, 16- or
 * 32-bit integers, float32 or float64, big-endian; plain or gzip-compressed), as float32 values in
 * C order: train-images-idx3-ubyte.gz gives shape (60000, 28, 28) with values 0 to 255. *data is
 * allocated with malloc: release it with free(). At most 2^28 values. */
CN_API cn_status cn_idx_read(const char *path, cn_shape *shape, float **data);

/* Fetching official Keras weights. */
typedef struct cn_fetch_options {
  const char
      *cache_dir; /* NULL: $CONVNET_CACHE, else $XDG_CACHE_HOME/convnet, else ~/.cache/convnet */
  const char *base_url; /* NULL: $CONVNET_WEIGHTS_URL, else the published keras.applications URL */
  int no_top;           /* the _notop file */
  int offline;          /* only look in the cache */
  int quiet;            /* no progress on stderr */
} cn_fetch_options;

/* Names accepted by cn_fetch_weights (the zoo names, plus mobilenet_<alpha>_<size>). */
CN_API cn_status cn_fetch_weights(const char *name, const cn_fetch_options *options, char *path,
                                  size_t cap);

#ifdef __cplusplus
}
#endif
#endif
