/* The Fréchet distance of stats.h: Gaussian fits of two feature sets in double, and the trace of
 * the square root of S_a S_b through symmetric eigendecompositions (LAPACK dsyevd, which
 * OpenBLAS exports). */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/stats.h"
#include "core/error.h"

/* LAPACK's Fortran entry point; the two trailing lengths are the hidden CHARACTER arguments'. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* Beyond this many features the dim x dim matrices stop being small (and LAPACK takes int). */
enum { FRECHET_MAX_DIM = 1 << 14 };

static cn_status check_set(const char *name, const float *x, int64_t n, int64_t dim) {
  if (!x) return cn_fail(CN_ERR_ARG, "frechet distance: set %s is NULL", name);
  if (n < 2)
    return cn_fail(CN_ERR_ARG, "frechet distance: set %s has %lld samples, a covariance needs 2",
                   name, (long long)n);
  for (int64_t i = 0; i < n * dim; i++)
    if (!isfinite(x[i]))
      return cn_fail(CN_ERR_ARG, "frechet distance: set %s: sample %lld, feature %lld is %g", name,
                     (long long)(i / dim), (long long)(i % dim), (double)x[i]);
  return CN_OK;
}

/* mean (dim) and the unbiased covariance (dim x dim, full) of n rows; centred: n x dim scratch. */
static void fit_gaussian(const float *x, int64_t n, int64_t dim, double *mean, double *cov,
                         double *centred) {
  memset(mean, 0, (size_t)dim * sizeof *mean);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < dim; j++) mean[j] += x[i * dim + j];
  for (int64_t j = 0; j < dim; j++) mean[j] /= (double)n;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < dim; j++) centred[i * dim + j] = x[i * dim + j] - mean[j];
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dim, (int)n, 1.0 / (double)(n - 1),
              centred, (int)dim, 0.0, cov, (int)dim);
  for (int64_t i = 0; i < dim; i++) /* mirror the upper triangle: later products read both */
    for (int64_t j = 0; j < i; j++) cov[i * dim + j] = cov[j * dim + i];
}

/* Eigenvalues of the symmetric a (n x n, destroyed; with vectors, a holds them as columns of the
 * column-major result, i.e. rows here, which is the same matrix for a symmetric input). */
static cn_status eigen(double *a, int n, int vectors, double *w) {
  const char *jobz = vectors ? "V" : "N";
  int lwork = -1, liwork = -1, info = 0, iw = 0;
  double wq = 0;
  dsyevd_(jobz, "U", &n, a, &n, w, &wq, &lwork, &iw, &liwork, &info, 1, 1);
  if (info != 0) return cn_fail(CN_ERR_ARG, "frechet distance: dsyevd query failed (%d)", info);
  lwork = (int)wq;
  liwork = iw;
  double *work = malloc((size_t)lwork * sizeof *work);
  int *iwork = malloc((size_t)liwork * sizeof *iwork);
  if (work && iwork) dsyevd_(jobz, "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
  free(work);
  free(iwork);
  if (!work || !iwork) return cn_fail(CN_ERR_NOMEM, "frechet distance: out of memory");
  if (info != 0)
    return cn_fail(CN_ERR_ARG, "frechet distance: the eigensolver did not converge (%d)", info);
  return CN_OK;
}

/* Square roots of the eigenvalues l (n of them, ascending) in place. Both matrices are positive
 * semi-definite, but rounding leaves the eigenvalues of a null space (every direction beyond
 * n - 1 when a set has n <= dim samples) at about +-n eps times the largest instead of 0: their
 * square roots, about sqrt(eps) of the largest's, would add noise (or NaN) to the trace. So
 * values under the usual rank tolerance n eps max(l) count as 0. */
static void sqrt_eigenvalues(double *l, int n) {
  double floor = (double)n * DBL_EPSILON * (n ? fabs(l[n - 1]) : 0);
  for (int k = 0; k < n; k++) l[k] = l[k] > floor ? sqrt(l[k]) : 0;
}

/* tr((S_a S_b)^(1/2)) = tr((R S_b R)^(1/2)) with R = S_a^(1/2) = V diag(sqrt(l)) V^T: S_a S_b is
 * similar to R S_b R, which is symmetric, so both eigensolves are of symmetric matrices. */
static cn_status trace_sqrt_product(const double *sa, const double *sb, int n, double *work,
                                    double *out) {
  size_t nn = (size_t)n * (size_t)n;
  double *v = work, *r = work + nn, *t = work + 2 * nn, *l = work + 3 * nn;
  memcpy(v, sa, nn * sizeof *v);
  cn_status st = eigen(v, n, 1, l);
  if (st != CN_OK) return st;
  /* rows of v are eigenvectors (column-major output): R = v^T diag(sqrt l) v */
  sqrt_eigenvalues(l, n);
  for (int k = 0; k < n; k++)
    for (int j = 0; j < n; j++) t[(size_t)k * n + j] = l[k] * v[(size_t)k * n + j];
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, v, n, t, n, 0.0, r, n);
  cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, n, n, 1.0, sb, n, r, n, 0.0, t, n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, r, n, t, n, 0.0, v, n);
  for (int i = 0; i < n; i++) /* symmetrise what rounding left slightly asymmetric */
    for (int j = 0; j < i; j++) {
      double m = 0.5 * (v[(size_t)i * n + j] + v[(size_t)j * n + i]);
      v[(size_t)i * n + j] = v[(size_t)j * n + i] = m;
    }
  st = eigen(v, n, 0, l);
  if (st != CN_OK) return st;
  sqrt_eigenvalues(l, n);
  double sum = 0;
  for (int k = 0; k < n; k++) sum += l[k];
  *out = sum;
  return CN_OK;
}

static double frechet_terms(const double *ma, const double *mb, const double *sa, const double *sb,
                            int64_t dim, double tr_sqrt) {
  double d = 0;
  for (int64_t j = 0; j < dim; j++) {
    double diff = ma[j] - mb[j];
    d += diff * diff + sa[j * dim + j] + sb[j * dim + j];
  }
  d -= 2 * tr_sqrt;
  return d > 0 ? d : 0; /* a distance: equal sets give 0, not -1e-13 */
}

cn_status cn_frechet_distance(const float *a, int64_t na, const float *b, int64_t nb, int64_t dim,
                              double *out) {
  if (!out) return cn_fail(CN_ERR_ARG, "frechet distance: NULL result");
  if (dim < 1 || dim > FRECHET_MAX_DIM)
    return cn_fail(CN_ERR_ARG, "frechet distance: %lld features, expected 1 to %d", (long long)dim,
                   FRECHET_MAX_DIM);
  cn_status st = check_set("a", a, na, dim);
  if (st == CN_OK) st = check_set("b", b, nb, dim);
  if (st != CN_OK) return st;
  size_t nn = (size_t)(dim * dim), rows = (size_t)(na > nb ? na : nb);
  double *mem = malloc((2 * (size_t)dim + 6 * nn + (size_t)dim + rows * (size_t)dim) * sizeof *mem);
  if (!mem)
    return cn_fail(CN_ERR_NOMEM, "frechet distance: out of memory for %lld features",
                   (long long)dim);
  double *ma = mem, *mb = ma + dim, *sa = mb + dim, *sb = sa + nn, *work = sb + nn;
  double *centred = work + 4 * nn + dim;
  fit_gaussian(a, na, dim, ma, sa, centred);
  fit_gaussian(b, nb, dim, mb, sb, centred);
  double tr_sqrt = 0;
  st = trace_sqrt_product(sa, sb, (int)dim, work, &tr_sqrt);
  if (st == CN_OK) *out = frechet_terms(ma, mb, sa, sb, dim, tr_sqrt);
  free(mem);
  return st;
}
