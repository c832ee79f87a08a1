/* convnet: transfer learning. Cut a pretrained network, add a classification head, train it on
 * folders of images (one sub-folder per class), fine-tune the top of the base, and get a model
 * that carries its class names and preprocessing. */
#ifndef CONVNET_TRAIN_H
#define CONVNET_TRAIN_H

#include "convnet/core.h"
#include "convnet/dist.h"
#include "convnet/image.h"
#include "convnet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a progress callback sees: once per batch (epoch_done 0) and once per epoch with the
 * validation results (epoch_done 1). phase is "features", "head" or "fine-tune" ("train" for a
 * whole model). */
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

/* The resize and decoding a Keras model's pipeline trains with: Keras 3's
 * image_dataset_from_directory decodes with tf.io.decode_image (libjpeg's fast integer DCT, no
 * EXIF orientation) and calls tf.image.resize(method="bilinear") with TF's default
 * antialias=False: half-pixel centres, no antialiasing, float32 pixels that are never rounded.
 * Keras's load_img, and so convnet's default for predicting with a Keras model, decodes with PIL
 * and resizes nearest. `convnet train` uses these for a Keras base unless --resize / --decode
 * say otherwise (docs/training.md). */
#define CN_TRAIN_KERAS_RESIZE CN_RESIZE_TF_BILINEAR
#define CN_TRAIN_KERAS_DECODER CN_DECODE_TF

typedef struct cn_train_options {
  /* ---- data ---- */
  /* One sub-folder per class; or IDX files (MNIST's format): an images file whose labels lie
   * beside it (train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz), or a folder holding
   * train-images-idx3-ubyte[.gz] and its labels, whose t10k-* files then validate (unless
   * val_dir or val_split says otherwise). IDX labels are the classes 0 .. max, named "0", "1"...;
   * IDX values (0..255) are preprocessed as the model's input spec says (unit: x / 255). */
  const char *data_dir;
  const char *val_dir;  /* the same kinds; NULL: val_split of data_dir (NULL and 0: none) */
  float val_split;      /* fraction held out, stratified and seeded */
  int fatal_bad_images; /* 0: skip undecodable images (counted and named); 1: stop */
  int class_weights;    /* 1: weight the loss by n / (classes * count_c) */
  cn_augment augment;   /* all zero: none (then frozen features are cached) */
  /* ---- a whole model (the lecture's model.fit on an architecture of its own) ---- */
  int whole_model;  /* 1: train the model as it is, no cut and no head (its output must be a
                     * softmax over the data's classes); freeze defaults to "none" */
  int init_weights; /* 1: first draw every weight from its initializer with seed
                     * (cn_model_init_weights), as a freshly built Keras model */
  /* ---- model surgery (transfer learning; ignored with whole_model) ---- */
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
  /* Data-parallel over the processes of an mpirun job (convnet/dist.h; NULL: this process
   * alone). Every rank calls cn_train with the same options; each decodes and runs its share of
   * every global batch of `batch` images, the gradients are summed across ranks in a fixed
   * order, and all hold the same weights. Feature extraction is split across the ranks. Rank 0
   * alone writes out, the checkpoint, the best model, the cache and the log, and reports
   * progress; resume needs the checkpoint readable by every rank and the same rank count. */
  cn_group *group;
  /* Non-NULL: after training, the final model scores the validation images (cn_evaluate_files)
   * and *val_evaluation receives the result, keeping val_worst misclassified images
   * (cn_evaluate_options.worst; IDX samples are scored but not kept, having no files); NULL
   * without validation data. Free it with cn_evaluation_free. */
  struct cn_evaluation **val_evaluation;
  int val_worst;
  void (*progress)(void *ctx, const cn_train_progress *p);
  void (*message)(void *ctx, const char *line); /* warnings and notes, one line each */
  void *ctx;
} cn_train_options;

/* Trains a classifier on top of base (which is not modified) and writes o->out. *trained (may
 * be NULL) receives the trained model. */
CN_API cn_status cn_train(const cn_model *base, const cn_train_options *o, cn_model **trained);

/* ---- step-by-step training (Keras's compile + train_on_batch) ------------------------------ */

/* A model being trained one batch at a time, with a loss and an optimizer of its own; for
 * training loops written in C (autoencoders, GANs: two sessions in alternation). The session
 * trains a copy of the model's weights: cn_session_sync writes them back. */
typedef struct cn_session cn_session;

typedef struct cn_session_options {
  /* NULL: the model computes its own loss: its first output (one value per sample, e.g. a loss
   * layer of convnet/layers.h) is minimised as its batch mean, and no targets are given.
   * Otherwise Keras's names: "mse" / "mean_squared_error", "mae" / "mean_absolute_error",
   * "binary_crossentropy" (the model must end in a sigmoid: computed from its logits),
   * "categorical_crossentropy" and "sparse_categorical_crossentropy" (the model must end in a
   * softmax; sparse targets are class indices as floats). */
  const char *loss;
  const char *optimizer; /* "sgd", "adam" (default) or "rmsprop" */
  float lr;              /* 0: the optimizer's Keras default */
  float momentum;
  int nesterov;
  float weight_decay; /* decoupled */
  float clip_norm;
  float beta1, beta2; /* Adam; 0: Keras's 0.9, 0.999 (a DCGAN takes beta1 0.5) */
  float epsilon;      /* Adam and RMSprop; 0: Keras's 1e-7 */
  int max_batch;      /* 0: 128 */
  uint64_t seed;      /* dropout masks are drawn from (seed, step) */
  int input_grad;     /* 1: keep d loss / d input of every step (cn_session_input_grad) */
  /* Layers whose gradient d loss / d output each step keeps (cn_session_layer_grad). */
  const char *const *grad_layers;
  int n_grad_layers;
} cn_session_options;

/* The model is only read; its trainable layers train. With a loss name its first output is
 * compared with the targets; with none the model computes its own loss. A model of several inputs
 * is fed through the _inputs calls (cn_session_step and cn_session_evaluate refuse it). */
CN_API cn_status cn_session_new(const cn_model *model, const cn_session_options *o,
                                cn_session **out);
CN_API void cn_session_free(cn_session *s);
/* One step on `batch` samples: x (batch x input shape), targets y (batch x output shape; batch
 * class indices for sparse_categorical_crossentropy). Forward in training mode (dropout, batch
 * statistics), the loss, backward, one optimizer update; *loss (may be NULL) is the batch's mean
 * loss before the update. A non-finite loss fails and changes nothing. */
CN_API cn_status cn_session_step(cn_session *s, int batch, const float *x, const float *y,
                                 double *loss);
/* The loss of the current weights in inference mode, without updating; pred (may be NULL)
 * receives the model's output (batch x output shape). */
CN_API cn_status cn_session_evaluate(cn_session *s, int batch, const float *x, const float *y,
                                     double *loss, float *pred);
/* The same for a model of several inputs: inputs[k] (batch x input k's shape) feeds input k; y
 * the targets, or NULL when the model computes its own loss. */
CN_API cn_status cn_session_step_inputs(cn_session *s, int batch, const float *const *inputs,
                                        const float *y, double *loss);
CN_API cn_status cn_session_evaluate_inputs(cn_session *s, int batch, const float *const *inputs,
                                            const float *y, double *loss);
/* A forward pass alone: no loss, no backward, no update, no targets. training 1 runs it as a step
 * would (batch statistics, which also move BatchNormalization's moving statistics; dropout drawn
 * as the next step's); 0 at inference. Read the outputs with cn_session_output. A GAN's
 * generator session makes the discriminator's fake batch this way, in training mode as the
 * generator step will see it. */
CN_API cn_status cn_session_forward(cn_session *s, int batch, const float *const *inputs,
                                    int training);
/* Output k of the model (batch x its shape) as the last step or evaluation computed it (training
 * mode after a step), valid until the next call; NULL when out of range. */
CN_API const float *cn_session_output(cn_session *s, int k);
/* d loss / d x of the last step (batch x input shape), with input_grad; else NULL. */
CN_API const float *cn_session_input_grad(const cn_session *s);
/* The same for input k. */
CN_API const float *cn_session_input_grad_at(const cn_session *s, int k);
/* d loss / d (output of the named layer) of the last step, for a layer of grad_layers; else
 * NULL. */
CN_API const float *cn_session_layer_grad(const cn_session *s, const char *layer);
/* Copies into dst's weights those of src's layers of the same names (the GAN step: the combined
 * model's frozen discriminator takes the discriminator session's weights); *copied may be NULL. */
CN_API cn_status cn_session_copy_weights(cn_session *dst, const cn_session *src, int *copied);
/* Writes the trained weights (and BatchNormalization statistics) into model, which must be the
 * model the session was made from. */
CN_API cn_status cn_session_sync(const cn_session *s, cn_model *model);

/* ---- checkpoints of a training loop of your own ------------------------------------------- */

/* Writes n sessions and `user_bytes` bytes of the caller's own state (epoch, its RNG state...;
 * user may be NULL when user_bytes is 0) into one safetensors file, atomically (a temporary file
 * beside path, fsync, rename): every weight of each session's model, trainable or not
 * (BatchNormalization's moving statistics), the optimizer's slots (momentum; Adam's m and v) and
 * iteration count, and the dropout draws' state (seed, steps). Sessions made again from the same
 * models and options and loaded with cn_sessions_load continue bit for bit as if never stopped. */
CN_API cn_status cn_sessions_save(const char *path, cn_session *const *sessions, int n,
                                  const void *user, size_t user_bytes);
/* Restores what cn_sessions_save wrote into n sessions (in the same order) and user. The file is
 * untrusted: it must hold exactly n sessions of the same model names, parameter names and shapes,
 * optimizer kinds and slots, and exactly user_bytes bytes of user state; otherwise (or when it
 * is truncated or corrupt) nothing changes and the call fails with CN_ERR_FORMAT (not a sessions
 * checkpoint, damaged) or CN_ERR_ARG (a mismatch), naming the file and what differs. */
CN_API cn_status cn_sessions_load(const char *path, cn_session *const *sessions, int n, void *user,
                                  size_t user_bytes);

/* ---- labelled image folders (src/train/dataset.c) ------------------------------------------ */

/* Images found in a folder with one sub-folder per class (the Keras/ImageNet layout). Classes are
 * the sub-folder names sorted byte-wise (strcmp); label i is the i-th name. Files of a class are
 * the images anywhere below its folder (extensions jpg, jpeg, png, bmp, ppm, pgm in any case),
 * sorted byte-wise by their path inside the class folder. Names starting with '.' are ignored;
 * symbolic links are followed, a link back to an enclosing folder is not. */
typedef struct cn_dataset cn_dataset;

/* Relaxations of cn_dataset_scan_dir's checks (0: the strict rules training needs). */
enum {
  CN_SCAN_ONE_CLASS = 1,   /* a single class folder is fine */
  CN_SCAN_EMPTY_CLASS = 2, /* a class folder without images is fine (it gets no samples) */
  CN_SCAN_NO_CLASSES = 4,  /* a folder without sub-folders gives an empty data set */
};
CN_API cn_status cn_dataset_scan_dir(const char *dir, unsigned flags, cn_dataset **out);
CN_API int64_t cn_dataset_count(const cn_dataset *ds);
CN_API int cn_dataset_class_count(const cn_dataset *ds);
/* NULL when c is out of range. */
CN_API const char *cn_dataset_class_name(const cn_dataset *ds, int c);
/* The path of image i as dir/class/...; NULL when i is out of range. */
CN_API const char *cn_dataset_path(const cn_dataset *ds, int64_t i);
/* The class of image i; -1 when i is out of range. */
CN_API int cn_dataset_label(const cn_dataset *ds, int64_t i);
CN_API void cn_dataset_free(cn_dataset *ds);

/* ---- evaluation ---------------------------------------------------------------------------- */

/* Accuracy, top-k hits and a confusion matrix (rows: true class, columns: predicted) accumulated
 * over scored images. The predicted class is the first maximum score (ties go to the lower class
 * index, as numpy's argmax does); a NaN score counts as lower than any number. */
typedef struct cn_evaluation cn_evaluation;

/* An empty evaluation of `classes` classes counting top-`top_k` hits (k is capped at classes). */
CN_API cn_status cn_evaluation_new(int classes, int top_k, cn_evaluation **out);
/* Adds batch rows of scores (batch x classes) with their true classes; a label outside
 * [0, classes) is not counted. */
CN_API void cn_evaluation_add(cn_evaluation *e, int batch, const float *scores, const int *labels);
CN_API void cn_evaluation_free(cn_evaluation *e);

CN_API int cn_evaluation_class_count(const cn_evaluation *e);
CN_API int cn_evaluation_top_k(const cn_evaluation *e);      /* k as counted: min(top_k, classes) */
CN_API int64_t cn_evaluation_images(const cn_evaluation *e); /* images scored */
CN_API int64_t cn_evaluation_correct(const cn_evaluation *e); /* top-1 hits */
CN_API int64_t cn_evaluation_top_k_correct(const cn_evaluation *e);
CN_API double cn_evaluation_accuracy(const cn_evaluation *e); /* 0 without images */
CN_API double cn_evaluation_top_k_accuracy(const cn_evaluation *e);
/* Images of class `truth` predicted as `predicted`; 0 out of range. */
CN_API int64_t cn_evaluation_confusion(const cn_evaluation *e, int truth, int predicted);
CN_API int64_t cn_evaluation_samples(const cn_evaluation *e, int cls);   /* its row's sum */
CN_API int64_t cn_evaluation_predicted(const cn_evaluation *e, int cls); /* its column's sum */
CN_API double cn_evaluation_recall(const cn_evaluation *e, int cls);     /* NAN: no samples */
CN_API double cn_evaluation_precision(const cn_evaluation *e, int cls);  /* NAN: never predicted */
/* Set by cn_evaluate: images that could not be scored, and the wall time of decoding, preparing
 * and the forward passes (0 for an evaluation filled by cn_evaluation_add). */
CN_API int64_t cn_evaluation_skipped(const cn_evaluation *e);
CN_API double cn_evaluation_seconds(const cn_evaluation *e);

/* A misclassified image kept by cn_evaluate (cn_evaluate_options.worst): the scores are the
 * model's outputs (probabilities for a model ending in a softmax). */
enum { CN_EVAL_MISS_TOP = 3, CN_EVAL_MAX_WORST = 256 };
typedef struct cn_evaluation_miss {
  const char *path; /* owned by the evaluation */
  int truth;
  float truth_score;
  int top[CN_EVAL_MISS_TOP]; /* the highest-scoring classes, best first (-1: fewer classes) */
  float top_score[CN_EVAL_MISS_TOP];
} cn_evaluation_miss;
/* The kept misclassified images, the lowest truth_score first (ties: file order). */
CN_API int cn_evaluation_worst_count(const cn_evaluation *e);
CN_API const cn_evaluation_miss *cn_evaluation_worst(const cn_evaluation *e, int i);

typedef struct cn_evaluate_options {
  const cn_input_spec *spec; /* NULL: the model's (same input size; resize, crop, preprocessing
                              * may differ) */
  int batch;                 /* images per forward pass, at most 256; 0: 8 */
  int top_k;                 /* 0: 5 */
  int fatal_bad_images;      /* 1: fail at the first image that cannot be scored */
  int worst; /* keep this many misclassified images of the lowest true-class score (at most
              * CN_EVAL_MAX_WORST; 0: none) for cn_evaluation_worst */
  void (*message)(void *ctx, const char *line); /* one line per skipped image, naming it */
  void *ctx;
  /* The processes of an mpirun job (convnet/dist.h; NULL: this process alone). Every rank calls
   * with the same images and options; each decodes and scores a share of whole batches of
   * `batch` images (so every image meets the same batch companions as in one process), and
   * every rank receives the same evaluation, counted in file order: the numbers, the worst
   * images and the skipped count are those of one process (seconds: this rank's wall time).
   * message fires on the rank that met the image. When any rank fails, every rank returns the
   * status and message of the first one that did (in rank order, hence file order). */
  cn_group *group;
} cn_evaluate_options;

/* Scores model on a labelled class-folder data set (cn_dataset_scan_dir). Folder classes are
 * matched BY NAME: to the model's class names when it has them (a .cnm from training), else to
 * ImageNet WordNet ids or class names. A folder that matches no class fails with CN_ERR_ARG naming
 * it; a model class without a folder simply has no samples. The evaluation's classes are the
 * model's outputs. o may be NULL. Images are decoded on cn_get_threads() threads. */
CN_API cn_status cn_evaluate(cn_model *model, const cn_dataset *ds, const cn_evaluate_options *o,
                             cn_evaluation **out);
/* The same for n image files with their true classes given as output indices. An image that fails
 * to decode, or whose label is outside the model's outputs, is skipped: named through
 * o->message and counted (or the call fails with fatal_bad_images). */
CN_API cn_status cn_evaluate_files(cn_model *model, int64_t n, const char *const *paths,
                                   const int *labels, const cn_evaluate_options *o,
                                   cn_evaluation **out);

/* ---- embeddings: a layer's output as one vector per image (convnet embed, similar) ---- */

/* The part of a model up to one layer, run at inference. A spatial (H, W, C) output is averaged
 * over its positions (global average pooling) to C values; any other output is flattened. */
typedef struct cn_embedder cn_embedder;
/* layer NULL: the features the classifier reads: when the model ends in a Dense layer (then
 * perhaps Softmax, Activation, Dropout, Reshape, Flatten), that Dense layer's input (before any
 * Dropout, Flatten or Reshape in front of it); otherwise the last spatial layer, pooled. An
 * unknown layer name fails naming it. The model is only read; the embedder keeps a copy of the
 * layers it needs, the model's input spec and its algorithm batch. */
CN_API cn_status cn_embedder_new(const cn_model *model, const char *layer, cn_embedder **out);
CN_API void cn_embedder_free(cn_embedder *e);
CN_API int64_t cn_embedder_dim(const cn_embedder *e);
CN_API const char *cn_embedder_layer(const cn_embedder *e);
/* The input spec images are prepared with (the model's); setting it changes the cache key. */
CN_API cn_input_spec cn_embedder_input_spec(const cn_embedder *e);
CN_API void cn_embedder_set_input_spec(cn_embedder *e, const cn_input_spec *spec);
/* batch prepared inputs (cn_image_prepare for the spec) to batch x dim floats. */
CN_API cn_status cn_embedder_run(cn_embedder *e, int batch, const float *input, float *out);
/* With a cache folder (made if missing), cn_embed_file keeps each image's vector in
 * DIR/<sha256>.npy, keyed by the layers' weights and names, the input spec, and the file's path,
 * size and modification time; a later call for the same file reads it back. NULL: no cache. */
CN_API cn_status cn_embedder_set_cache(cn_embedder *e, const char *dir);
/* Decodes, prepares and embeds one image file into dim floats (through the cache when set). */
CN_API cn_status cn_embed_file(cn_embedder *e, const char *path, float *out);

/* Cosine similarity of a with each of the n rows of items (dim floats each), the k most similar
 * rows first (ties: lower row first; a zero vector has similarity 0); skip: a row left out
 * (-1: none). Writes min(k, rows) indices and scores; returns that count. */
CN_API int cn_embed_nearest(const float *a, const float *items, int64_t n, int64_t dim, int k,
                            int64_t skip, int64_t *index, float *score);

#ifdef __cplusplus
}
#endif
#endif
