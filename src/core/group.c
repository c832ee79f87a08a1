/* The NULL-safe front of a process group: a NULL group is one process, for which every
 * collective is the identity. */
#include "core/group.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int cn_group_rank(const cn_group *g) {
  return g ? g->rank : 0;
}

int cn_group_size(const cn_group *g) {
  return g ? g->size : 1;
}

int cn_group_local_size(const cn_group *g) {
  return g && g->local_size > 0 ? g->local_size : 1;
}

cn_status cn_group_barrier(cn_group *g) {
  return g ? g->ops->barrier(g) : CN_OK;
}

cn_status cn_group_sum_f32(cn_group *g, float *data, size_t n) {
  if (!g || n == 0) return CN_OK;
  if (!data) return cn_fail(CN_ERR_ARG, "cn_group_sum_f32: no data");
  return g->ops->sum(g, data, n, sizeof(float));
}

cn_status cn_group_sum_f64(cn_group *g, double *data, size_t n) {
  if (!g || n == 0) return CN_OK;
  if (!data) return cn_fail(CN_ERR_ARG, "cn_group_sum_f64: no data");
  return g->ops->sum(g, data, n, sizeof(double));
}

cn_status cn_group_broadcast(cn_group *g, void *data, size_t bytes, int root) {
  if (g && (root < 0 || root >= g->size))
    return cn_fail(CN_ERR_ARG, "cn_group_broadcast: rank %d is not in the group", root);
  if (!g || bytes == 0) return CN_OK;
  if (!data) return cn_fail(CN_ERR_ARG, "cn_group_broadcast: no data");
  return g->ops->broadcast(g, data, bytes, root);
}

cn_status cn_group_gather(cn_group *g, const void *data, size_t bytes, void **all, size_t *total) {
  if (!all || !total || (bytes && !data)) return cn_fail(CN_ERR_ARG, "cn_group_gather: no data");
  *all = NULL;
  *total = 0;
  if (g) return g->ops->gather(g, data, bytes, all, total);
  *all = malloc(bytes ? bytes : 1);
  if (!*all) return cn_fail(CN_ERR_NOMEM, "out of memory");
  if (bytes) memcpy(*all, data, bytes);
  *total = bytes;
  return CN_OK;
}

void cn_group_abort(cn_group *g, int code) {
  if (g) g->ops->abort(g, code);
}

void cn_group_leave(cn_group *g) {
  if (g) g->ops->leave(g);
}

void cn_group_share_batches(int64_t n, int64_t batch, int rank, int size, int64_t *first,
                            int64_t *count) {
  int64_t batches = batch > 0 ? (n + batch - 1) / batch : 0, b0, nb;
  cn_group_share(batches, rank, size, &b0, &nb);
  int64_t lo = b0 * batch < n ? b0 * batch : n, hi = (b0 + nb) * batch < n ? (b0 + nb) * batch : n;
  *first = lo;
  *count = hi - lo;
}

void cn_group_share(int64_t n, int rank, int size, int64_t *first, int64_t *count) {
  if (size < 1 || rank < 0 || rank >= size || n < 0) {
    *first = 0;
    *count = rank == 0 ? (n > 0 ? n : 0) : 0;
    return;
  }
  int64_t lo = n / size * rank + (rank < n % size ? rank : n % size);
  *first = lo;
  *count = n / size + (rank < n % size ? 1 : 0);
}
