/* convnet: transfer learning. Cut a pretrained network, add a classification head, train it on
 * folders of images (one sub-folder per class), fine-tune the top of the base, and get a model
 * that carries its class names and preprocessing. */
#ifndef CONVNET_TRAIN_H
#define CONVNET_TRAIN_H

#include "convnet/core.h"
#include "convnet/image.h"
#include "convnet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a progress callback sees: once per batch (epoch_done 0) and once per epoch with the
 * validation results (epoch_done 1). phase is "features", "head" or "fine-tune". */
typedef struct cn_train_progress {
  const char *phase;
  int epoch, epochs;     /* 1-based */
  int64_t step, steps;   /* batches done and batches in the epoch */
  double loss, accuracy; /* means over the epoch so far */
  int epoch_done;
  double val_loss, val_accuracy; /* NAN without validation data */
  double lr;
  double seconds; /* wall time of the epoch so far */
  double images_per_second;
} cn_train_progress;

typedef struct cn_train_options {
  /* ---- data ---- */
  const char *data_dir; /* one sub-folder per class */
  const char *val_dir;  /* NULL: val_split of data_dir (NULL and 0: no validation) */
  float val_split;      /* fraction held out, stratified and seeded */
  int fatal_bad_images; /* 0: skip undecodable images (counted and named); 1: stop */
  int class_weights;    /* 1: weight the loss by n / (classes * count_c) */
  cn_augment augment;   /* all zero: none (then frozen features are cached) */
  /* ---- model surgery ---- */
  const char *cut;    /* the base's last layer; NULL: its last spatial layer */
  const char *head;   /* "avg" (default), "max" or "flatten" */
  int dense;          /* > 0: a Dense(dense, relu) hidden layer in the head */
  float dropout;      /* > 0: Dropout before the classifier */
  const char *freeze; /* "all" (default: the whole base), "none", or a layer name (it and
                       * everything before it frozen) */
  /* ---- optimisation ---- */
  const char *optimizer; /* "sgd", "adam" (default) or "rmsprop" */
  float lr;              /* 0: the optimizer's Keras default */
  float momentum;
  int nesterov;
  float decay;        /* Keras legacy: lr / (1 + decay * iterations) */
  float weight_decay; /* decoupled (AdamW) */
  float clip_norm;
  const char *schedule; /* NULL/"constant", "cosine", or "step" (x0.1 every third epoch) */
  int epochs;           /* 0: 10 */
  int batch;            /* 0: 32 */
  int patience;         /* > 0: stop after this many epochs without a better val_loss */
  /* ---- fine-tuning after the head ---- */
  const char *fine_tune; /* layer name: everything after it becomes trainable (BatchNormalization
                          * stays frozen, in inference mode, as Keras advises) */
  float fine_tune_lr;    /* 0: lr / 10 */
  int fine_tune_epochs;  /* 0: epochs */
  /* ---- run ---- */
  uint64_t seed;
  const char *cache_dir; /* NULL: no feature cache */
  const char *out;       /* the trained model (.cnm); OUT.ckpt and OUT.best.cnm beside it */
  const char *resume;    /* a checkpoint to continue from */
  const char *log_path;  /* JSON lines, one per epoch; NULL: none */
  void (*progress)(void *ctx, const cn_train_progress *p);
  void (*message)(void *ctx, const char *line); /* warnings and notes, one line each */
  void *ctx;
} cn_train_options;

/* Trains a classifier on top of base (which is not modified) and writes o->out. *trained (may
 * be NULL) receives the trained model. */
CN_API cn_status cn_train(const cn_model *base, const cn_train_options *o, cn_model **trained);

#ifdef __cplusplus
}
#endif
#endif
