/* The operators losses are built from: per-sample losses, reductions over axes and the seeded
 * Gaussian sampling of a variational autoencoder. Shapes are per sample, as everywhere in the
 * graph; the batch mean of a per-sample loss is what a session minimises. */
#ifndef CN_OPS_OPS_MATH_H
#define CN_OPS_OPS_MATH_H

#include "core/op.h"
#include "kernels/loss.h"

/* Loss(pred, target) -> one value per sample (per-sample rank 0). The cross-entropies reduce
 * over the last axis and average over the others; MSE, MAE, the binary cross-entropies and the
 * contrastive loss average over every element; the Gaussian KL term sums (pred: the mean,
 * target: the log-variance). Sparse targets have pred's shape without its last axis (or with it
 * 1): class indices as floats. Every other target has pred's shape. */
typedef struct cn_loss_attrs {
  cn_loss_fn fn;
  float margin; /* CONTRASTIVE; 0: 1 */
} cn_loss_attrs;

typedef enum cn_reduce_kind {
  CN_REDUCE_SUM,
  CN_REDUCE_MEAN,
  CN_REDUCE_MAX,
  CN_REDUCE_MIN
} cn_reduce_kind;

/* A reduction over a set of per-sample axes (bit k: axis k of the per-sample shape; never the
 * batch). keepdims keeps them with size 1. Max and min share the gradient equally among ties, as
 * TensorFlow and PyTorch do. */
typedef struct cn_reduce_attrs {
  cn_reduce_kind kind;
  int axes;
  int keepdims;
} cn_reduce_attrs;

/* GaussianSample(mean, log_var) = mean + exp(log_var / 2) * eps, eps ~ N(0, 1) a pure function of
 * (seed, the step's seed, element index): the reparameterisation of a VAE. It samples at
 * inference too (as Keras's Sampling layer does), with the run's seed. */
typedef struct cn_gaussian_sample_attrs {
  uint64_t seed;
} cn_gaussian_sample_attrs;

extern const cn_op cn_op_loss;            /* Loss, cn_loss_attrs */
extern const cn_op cn_op_reduce;          /* Reduce, cn_reduce_attrs */
extern const cn_op cn_op_gaussian_sample; /* GaussianSample, cn_gaussian_sample_attrs */

#endif
