/* Shared by the parts of cn_train: the run's state, in-memory feature sets, the feature cache
 * and checkpoints. */
#ifndef CN_TRAIN_FIT_INTERNAL_H
#define CN_TRAIN_FIT_INTERNAL_H

#include <stdio.h>

#include "convnet/train.h"
#include "model/model.h"
#include "train/dataset.h"
#include "train/optim.h"
#include "train/trainer.h"

/* Inputs of the trained part for every usable sample of a data set: features of the frozen
 * prefix (or preprocessed images when nothing is frozen) in data-set order, bad images left out. */
typedef struct fit_features {
  int64_t n, dim, cap;
  float *x;     /* n x dim (room for cap rows) */
  int *y;       /* n labels */
  int borrowed; /* x and y belong to another set: fit_features_free only forgets them */
} fit_features;

typedef struct fit_phase {
  const char *name; /* "head" or "fine-tune" */
  int index;        /* 0 or 1 */
  int epochs;
  float lr; /* 0: the optimizer's default */
} fit_phase;

typedef struct fit_run {
  const cn_train_options *o;
  const cn_model *base;
  cn_input_spec spec;      /* the base's input pipeline, which the trained model carries */
  cn_dataset *train, *val; /* image folders; NULL with IDX data */
  /* IDX data (idx_data.c): every sample in memory, preprocessed; n == 0 for image folders */
  fit_features idx_train, idx_val;
  char **idx_class_names; /* "0", "1", ... */
  int classes;
  float *class_weight; /* NULL: all ones */
  cn_graph *full;      /* base + head: the model being trained, updated after every epoch */
  int batch;
  /* the current phase */
  cn_model *prefix; /* frozen part, run at inference; NULL when the trainer sees images */
  cn_trainer *trainer;
  cn_optimizer opt;
  cn_param_range *ranges;
  int n_ranges;
  fit_features train_x, val_x;
  cn_loader *loader; /* augmentation: images decoded per epoch instead of cached features */
  float *images;
  int *labels;
  /* progress kept in checkpoints */
  int phase, epoch; /* the phase running and the epochs it has completed */
  double best_val_accuracy, best_val_loss;
  int bad_epochs;
  int stopped_early;
  char fingerprint[65];
  FILE *log;
  char *checkpoint_path, *best_path;
  /* data-parallel (o->group): rank 0 writes files and reports */
  cn_group *group;
  int rank, ranks;
} fit_run;

void fit_message(const fit_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* features.c: the frozen prefix's outputs for a whole data set, from the cache when it holds
 * them (chunk by chunk, each written atomically as soon as it is done). */
cn_status fit_features_compute(fit_run *r, const cn_dataset *ds, const char *which,
                               fit_features *out);
void fit_features_free(fit_features *f);
/* SHA-256 of the prefix (structure, weights) and the input pipeline, as 64 hex digits. */
cn_status fit_model_fingerprint(const cn_model *prefix, char hex[65]);

/* The name of class c (the folder's, or the IDX label's number). */
const char *fit_class_name(const fit_run *r, int c);

/* idx_data.c: IDX training data (MNIST's format). */
/* 1 when the data path names IDX data: an IDX file, or a folder holding train-images-idx3-ubyte. */
int fit_idx_wanted(const char *path);
/* Reads o->data_dir (and o->val_dir, or the folder's t10k files, or o->val_split of the
 * training set) into r->idx_train / r->idx_val, sets r->classes, the class names and weights. */
cn_status fit_idx_open(fit_run *r);
/* The trained part's inputs for an IDX set: src itself (borrowed, not copied), or src through the
 * frozen prefix. */
cn_status fit_idx_features(fit_run *r, const fit_features *src, fit_features *out);
void fit_idx_free(fit_run *r);

/* checkpoint.c */
cn_status fit_checkpoint_write(const fit_run *r);
/* Restores full's weights and the progress fields; the optimizer is restored by
 * fit_checkpoint_restore_optimizer once the phase's trainer exists. */
cn_status fit_checkpoint_read(fit_run *r, const char *path);
cn_status fit_checkpoint_restore_optimizer(fit_run *r, const char *path);
/* A model (class names, input pipeline) from a copy of a graph. */
cn_status fit_make_model(const fit_run *r, cn_model **out);

#endif
