/* The state of a cn_session (convnet/train.h), shared by the step code (session.c) and its
 * checkpoints (session_checkpoint.c). */
#ifndef CN_TRAIN_SESSION_INTERNAL_H
#define CN_TRAIN_SESSION_INTERNAL_H

#include "convnet/train.h"
#include "train/optim.h"
#include "train/trainer.h"

struct cn_session {
  cn_trainer *trainer;
  char *model_name; /* checkpoints check it on load */
  int own_loss;     /* no loss name: the model's first output is its per-sample loss */
  cn_loss_kind loss;
  cn_output_kind out_kind;
  cn_optimizer opt;
  cn_param_range *ranges;
  int n_ranges, max_batch, n; /* n: output values per sample */
  int last_batch;
  int pred_fresh; /* pred holds the last forward's activated output */
  /* The dropout draws of step k are a function of (seed, k): these two are the whole RNG state. */
  uint64_t seed, steps;
  float *pred, *dpred, *dlogits;
  int n_grad_layers;
  int *grad_nodes;
  char **grad_names;
};

#endif
