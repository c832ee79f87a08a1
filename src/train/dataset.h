/* Training data: labelled image folders (the accessors and the lenient scan are public, in
 * convnet/image.h), train/validation splits, class weights, and a loader that decodes, augments
 * and prepares batches on worker threads with a fixed amount of memory. */
#ifndef CN_TRAIN_DATASET_H
#define CN_TRAIN_DATASET_H

#include <stdint.h>

#include "convnet/train.h"

/* Safety caps on what a folder may hold (CN_ERR_LIMIT beyond them). */
#define CN_DATASET_MAX_FILES 10000000
#define CN_DATASET_MAX_CLASSES 100000
#define CN_DATASET_MAX_PATH 4096
#define CN_DATASET_MAX_DEPTH 32

/* The strict scan for training: at least 2 classes, none empty, no two names equal but for case. */
cn_status cn_dataset_open_dir(const char *dir, cn_dataset **out);
/* A validation folder that must hold exactly these classes (any order on disk); labels follow
 * the order of classes[], so they agree with the training set's. */
cn_status cn_dataset_open_dir_classes(const char *dir, const char *const *classes, int n,
                                      cn_dataset **out);
/* Stratified split: in every class, a seeded shuffle sends round(count * val_fraction) images
 * (at most count - 1) to *val. 0 < val_fraction < 1; both parts keep the classes of all and
 * list their images in the order of all. Deterministic in (all, val_fraction, seed). */
cn_status cn_dataset_split(const cn_dataset *all, double val_fraction, uint64_t seed,
                           cn_dataset **train, cn_dataset **val);
/* Images [first, first + count) of ds as a data set of its own (same classes). */
cn_status cn_dataset_subset(const cn_dataset *ds, int64_t first, int64_t count, cn_dataset **out);
/* Keras/sklearn "balanced" weights: w[c] = count / (classes * count_c); 0 for a class without
 * images. w holds cn_dataset_class_count(ds) floats. */
void cn_dataset_class_weights(const cn_dataset *ds, float *w);

/* ---- loader ---------------------------------------------------------------------------------- */

typedef enum cn_bad_images {
  CN_BAD_IMAGES_SKIP, /* leave the image out of its batch, count it, warn once per file */
  CN_BAD_IMAGES_FATAL /* cn_loader_next fails with the decoder's message naming the file */
} cn_bad_images;

#define CN_LOADER_MAX_BATCH 4096
#define CN_LOADER_MAX_WORKERS 64
#define CN_LOADER_MAX_PREFETCH 64

typedef struct cn_loader_options {
  cn_input_spec spec;   /* the model's input: size, resize policy, crop, preprocessing */
  int batch;            /* images per batch, 1..CN_LOADER_MAX_BATCH */
  int workers;          /* decoding threads; 0: cn_get_threads() */
  int prefetch_batches; /* batches decoded ahead of the consumer; 0: 2 */
  int shuffle;          /* a new order each epoch, from (seed, epoch) only */
  uint64_t seed;        /* drives the order and the augmentation */
  cn_augment augment;   /* all zero: none */
  cn_bad_images bad_images;
  /* Called from cn_loader_next's thread, once per bad file, with a one-line message. */
  void (*warn)(void *ctx, const char *msg);
  void *warn_ctx;
  /* Data-parallel training (shard_count > 1): the epoch's order and batches are the global ones,
   * but this loader decodes and delivers only rank shard_rank's share of each batch
   * (cn_group_share of the batch's positions), and cn_loader_next returns every batch, empty
   * shares included. */
  int shard_rank, shard_count;
} cn_loader_options;

typedef struct cn_loader cn_loader;

/* The loader keeps a pointer to ds, which must outlive it. Threads start here and idle until
 * the first cn_loader_start_epoch. */
cn_status cn_loader_new(const cn_dataset *ds, const cn_loader_options *o, cn_loader **out);
/* Abandons any epoch in progress and starts decoding epoch `epoch` (0, 1, ...). */
cn_status cn_loader_start_epoch(cn_loader *l, int64_t epoch);
/* Copies the next batch: images (batch x H x W x C floats), labels and dataset indices (either
 * may be NULL), *count images. *count == 0 at the end of the epoch. The last batch may be short,
 * and so is a batch from which bad images were skipped (a batch of only bad images is passed
 * over). With CN_BAD_IMAGES_FATAL the first bad image in order fails the call. */
cn_status cn_loader_next(cn_loader *l, float *images, int *labels, int64_t *indices, int *count);
/* Batches of the epoch not yet returned by cn_loader_next. */
int64_t cn_loader_batches_left(const cn_loader *l);
/* Distinct images skipped as bad since cn_loader_new. */
int64_t cn_loader_bad_count(const cn_loader *l);
/* Floats in one image of a batch (H x W x C). */
size_t cn_loader_image_floats(const cn_loader *l);
/* Stops the workers (also mid-epoch) and frees everything. */
void cn_loader_free(cn_loader *l);

#endif
