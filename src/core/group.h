/* The process group behind convnet/dist.h, as the layers below dist see it: a table of
 * collective operations that src/dist fills (Open MPI), so that core, ops and train take part in
 * data-parallel work without depending on MPI. Every cn_group_* call of convnet/dist.h accepts
 * NULL, the group of one process. */
#ifndef CN_CORE_GROUP_H
#define CN_CORE_GROUP_H

#include "convnet/dist.h"

typedef struct cn_group_ops {
  /* Element-wise sum of n values of elem_size bytes (float: 4, double: 8) over the ranks, in
   * rank order, in place on every rank. */
  cn_status (*sum)(cn_group *g, void *data, size_t n, size_t elem_size);
  cn_status (*broadcast)(cn_group *g, void *data, size_t bytes, int root);
  cn_status (*gather)(cn_group *g, const void *data, size_t bytes, void **all, size_t *total);
  cn_status (*barrier)(cn_group *g);
  void (*abort)(cn_group *g, int code);
  void (*leave)(cn_group *g);
} cn_group_ops;

struct cn_group {
  const cn_group_ops *ops;
  int rank, size, local_size;
  void *impl;
};

#endif
