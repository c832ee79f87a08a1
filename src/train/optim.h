/* Losses, metrics and optimizers: flat loops over the trainer's collated buffers. */
#ifndef CN_TRAIN_OPTIM_H
#define CN_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "convnet/core.h"

/* ---- losses -------------------------------------------------------------------------------- */

typedef enum cn_loss_kind {
  CN_LOSS_CATEGORICAL_CE, /* pred: logits (softmax fused); target: batch x n probabilities */
  CN_LOSS_SPARSE_CE,      /* pred: logits (softmax fused); target: batch class indices as floats */
  CN_LOSS_BINARY_CE,      /* pred: logits (sigmoid fused); target: batch x n in [0, 1] */
  CN_LOSS_MSE,            /* pred: values; target: batch x n */
  CN_LOSS_MAE,            /* pred: values; target: batch x n (the gradient of |0| is 0) */
  CN_LOSS_COUNT
} cn_loss_kind;

const char *cn_loss_name(cn_loss_kind kind);
/* Keras's loss names ("mse" and "mean_squared_error", "mae", "binary_crossentropy", ...). */
cn_status cn_loss_parse(const char *name, cn_loss_kind *out);
/* Keras's reduction: sum over samples of weight_i * loss_i, divided by batch (the sum of weights
 * is NOT the divisor). sample_weight: NULL for all ones. grad (batch x n, may be NULL) receives
 * d loss / d pred. Computed in double, stable for any logits; the result is the mean loss. */
double cn_loss(cn_loss_kind kind, int batch, int n, const float *pred, const float *target,
               const float *sample_weight, float *grad);
/* Data-parallel training: the same for this rank's batch samples of a global batch of
 * global_batch samples; returns the share's loss total (not its mean), the gradient being that of
 * the global batch's mean loss. */
double cn_loss_of_share(cn_loss_kind kind, int batch, int n, const float *pred, const float *target,
                        const float *sample_weight, float *grad, int64_t global_batch);
/* Checks targets before cn_loss sees them (they come from files): sparse targets must be integral
 * class indices in [0, n), every target finite. cn_loss itself never reads or writes out of
 * bounds: an invalid sparse target makes the loss NaN and its gradient row zero. */
cn_status cn_loss_check_targets(cn_loss_kind kind, int batch, int n, const float *target);

/* ---- metrics ------------------------------------------------------------------------------- */

/* Accumulates predictions over an evaluation: accuracy, top-k, per-class recall, confusion. */
typedef struct cn_confusion {
  int classes;
  int64_t *counts; /* classes x classes: [true * classes + predicted] */
  int64_t total, top_k_hits, k;
} cn_confusion;

cn_status cn_confusion_init(cn_confusion *c, int classes, int k);
void cn_confusion_free(cn_confusion *c);
/* scores: batch x classes (probabilities or logits); labels: batch class indices. Ties go to the
 * lower class index, as numpy argmax does. */
void cn_confusion_add(cn_confusion *c, int batch, const float *scores, const int *labels);
/* The two halves of cn_confusion_add for one image, so that the scoring and the counting can
 * happen in different processes (evaluation across an mpirun job): the predicted class and
 * whether label is among the top k of scores (label in [0, classes)); then the counting. */
void cn_confusion_judge(const cn_confusion *c, const float *scores, int label, int *predicted,
                        int *top_k_hit);
void cn_confusion_count(cn_confusion *c, int label, int predicted, int top_k_hit);
double cn_confusion_accuracy(const cn_confusion *c);
double cn_confusion_top_k(const cn_confusion *c);
double cn_confusion_recall(const cn_confusion *c, int cls); /* NAN when the class has no samples */

/* ---- optimizers ---------------------------------------------------------------------------- */

typedef enum cn_optim_kind { CN_OPTIM_SGD, CN_OPTIM_ADAM, CN_OPTIM_RMSPROP } cn_optim_kind;
typedef enum cn_schedule_kind {
  CN_SCHEDULE_CONSTANT,
  CN_SCHEDULE_STEP,
  CN_SCHEDULE_COSINE
} cn_schedule_kind;

typedef struct cn_optim_config {
  cn_optim_kind kind;
  float lr;           /* 0: the Keras default (0.01 SGD, 0.001 Adam and RMSprop) */
  float momentum;     /* SGD momentum; RMSprop momentum */
  int nesterov;       /* SGD */
  float decay;        /* Keras legacy decay: lr_t = lr / (1 + decay * iterations) */
  float beta1, beta2; /* Adam; 0: 0.9, 0.999 */
  float rho;          /* RMSprop; 0: 0.9 */
  float epsilon;      /* Adam / RMSprop; 0: 1e-7 (Keras) */
  float weight_decay; /* decoupled (AdamW, and SGDW-style for the others): p -= lr * wd * p */
  float l2;           /* coupled L2: grad += l2 * p before the update */
  float clip_norm;    /* > 0: scale all gradients together so their global L2 norm <= clip_norm */
  float clip_value;   /* > 0: clamp each gradient to [-clip_value, clip_value] */
  cn_schedule_kind schedule;
  int64_t step_every; /* STEP: multiply by step_gamma every step_every iterations */
  float step_gamma;
  int64_t total_steps; /* COSINE: lr * 0.5 * (1 + cos(pi * min(t, total) / total)) */
} cn_optim_config;

/* A run of parameters updated with one learning-rate multiplier (fine-tuning uses a second range
 * with its own rate). offset and count are in floats into the collated buffers. */
typedef struct cn_param_range {
  size_t offset, count;
  float lr_scale;
} cn_param_range;

/* State parallel to the parameters (momentum, Adam m and v) plus the iteration count: everything a
 * checkpoint needs to resume bit-identically. */
typedef struct cn_optimizer {
  cn_optim_config config;
  size_t n;       /* floats in params / grads / each slot */
  int n_slots;    /* 0, 1 (SGD momentum; RMSprop velocity) or 2 (Adam m, v; RMSprop velocity,
                     momentum when momentum > 0) */
  float *slot[2]; /* n floats each, zeroed at creation */
  int64_t iterations;
} cn_optimizer;

/* "sgd", "adam" or "rmsprop" (NULL: adam); anything else fails naming the choices. */
cn_status cn_optim_parse(const char *name, cn_optim_kind *out);
/* The learning rate lr = 0 stands for: Keras's default for the kind. */
float cn_optim_default_lr(cn_optim_kind kind);

cn_status cn_optimizer_init(cn_optimizer *o, const cn_optim_config *config, size_t n);
void cn_optimizer_free(cn_optimizer *o);
/* The learning rate the next step uses (schedule and decay applied), before lr_scale. */
double cn_optimizer_lr(const cn_optimizer *o);
/* One update of params over the given ranges from grads (both n floats, same offsets); grads may
 * be modified (clipping). Deterministic: the same inputs give the same bits for any thread count.
 * Increments iterations. */
void cn_optimizer_step(cn_optimizer *o, float *params, float *grads, const cn_param_range *ranges,
                       int n_ranges);
/* Details of cn_optimizer_step (Keras 3's order and float32 arithmetic): grads += l2 * p; global
 * norm clipping over all ranges; value clipping; then per range with lr = cn_optimizer_lr() *
 * lr_scale: p -= p * weight_decay * lr; the optimizer's update. ranges NULL (or n_ranges 0) means
 * the whole buffer at scale 1. A range outside the buffer makes the step do nothing (check them
 * once with cn_optimizer_check_ranges). Keras's l2(lambda) regularizer is l2 = 2 * lambda here
 * (this l2 is PyTorch SGD's weight_decay). */
cn_status cn_optimizer_check_ranges(const cn_optimizer *o, const cn_param_range *ranges,
                                    int n_ranges);

#endif
