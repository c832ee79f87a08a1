/* The losses' math on one row of values, in double: what the session's fused losses (src/train)
 * and the Loss layer of a graph (src/ops/loss.c) both compute. Formulas follow Keras 3. */
#ifndef CN_KERNELS_LOSS_H
#define CN_KERNELS_LOSS_H

#include <stdint.h>

typedef enum cn_loss_fn {
  CN_LOSS_FN_MSE,           /* mean (x - t)^2 */
  CN_LOSS_FN_MAE,           /* mean |x - t| (the gradient of |0| is 0) */
  CN_LOSS_FN_BCE_LOGITS,    /* mean sigmoid cross-entropy of logits x against t in [0, 1] */
  CN_LOSS_FN_BCE,           /* the same of probabilities x, clipped to [eps, 1 - eps] */
  CN_LOSS_FN_CCE_LOGITS,    /* softmax cross-entropy of logits x against probabilities t */
  CN_LOSS_FN_CCE,           /* the same of probabilities x (renormalised, clipped, as Keras) */
  CN_LOSS_FN_SPARSE_LOGITS, /* softmax cross-entropy of logits x against class index t[0] */
  CN_LOSS_FN_SPARSE,        /* the same of probabilities x */
  CN_LOSS_FN_CONTRASTIVE,   /* mean (1 - t) x^2 + t max(margin - x, 0)^2: x a distance, t 1 for
                               a dissimilar pair (Hadsell et al. 2006, Keras's example) */
  CN_LOSS_FN_KL_GAUSSIAN,   /* -1/2 sum (1 + t - x^2 - exp(t)): KL(N(x, exp(t)) || N(0, 1)),
                               x the mean and t the log-variance */
  CN_LOSS_FN_COUNT
} cn_loss_fn;

/* Keras's epsilon for losses of probabilities. */
#define CN_LOSS_EPSILON 1e-7

/* Whether the target of fn is one class index per row rather than a row of n values. */
int cn_loss_fn_sparse(cn_loss_fn fn);

/* The class index a float sparse target names, or -1 when it is not an integer in [0, n). */
int cn_loss_sparse_class(float target, int n);

/* The loss of one row of n values x against targets t (one value for the sparse kinds). Adds
 * scale * d loss / d x into gx and scale * d loss / d t into gt (each may be NULL; the sparse
 * kinds' class index gets none). An invalid sparse target gives NaN and adds nothing. */
double cn_loss_row(cn_loss_fn fn, int64_t n, const float *x, const float *t, float margin,
                   double scale, float *gx, float *gt);

#endif
