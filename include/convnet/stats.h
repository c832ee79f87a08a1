/* convnet: statistics of feature sets (the Fréchet distance behind FID). */
#ifndef CONVNET_STATS_H
#define CONVNET_STATS_H

#include "convnet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Fréchet distance between Gaussians fitted to two sets of feature vectors: a holds na rows
 * and b nb rows of dim floats each (C order). With means mu and unbiased (n - 1) covariances S,
 *   d = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)),
 * the "FID" when the features are a classifier's penultimate layer. All sums are in double; the
 * trace of the matrix square root is taken as tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric
 * matrix, through LAPACK's symmetric eigensolver, so rank-deficient covariances (n <= dim) are
 * fine. Fails (CN_ERR_ARG) for fewer than 2 rows in a set, dim < 1 or a NaN or infinite value. */
CN_API cn_status cn_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb,
                                     int64_t dim, double *out);

#ifdef __cplusplus
}
#endif
#endif
