/* convnet: work spread over several processes, on one machine or many (Open MPI).
 *
 * A group is the set of processes `mpirun -np N` started. Each has a rank (0 .. N-1); rank 0
 * writes files and prints results. Training given a group (cn_train_options.group) is
 * data-parallel: every rank decodes and runs its share of each global batch, the gradients are
 * summed across ranks in a fixed order, and every rank holds the same weights, so a run is
 * bitwise reproducible for a given N and agrees with one process to float rounding.
 * Evaluation and feature extraction split the images across ranks.
 *
 * A process not started by mpirun, or a library built without Open MPI, has no group (NULL):
 * every function below accepts NULL as the group of one process. */
#ifndef CONVNET_DIST_H
#define CONVNET_DIST_H

#include "convnet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_group cn_group;

/* 1 when this library was built with Open MPI. */
CN_API int cn_group_available(void);
/* Joins the job when mpirun started this process (MPI_Init); *out is NULL otherwise, and when
 * the job has a single process. Fails when mpirun started several processes but the library
 * has no Open MPI (each would otherwise do the whole work alone). Call once, early in main. */
CN_API cn_status cn_group_join(int *argc, char ***argv, cn_group **out);
/* Leaves the job (MPI_Finalize) and frees g. */
CN_API void cn_group_leave(cn_group *g);
/* Ends every process of the job at once, with exit status code (MPI_Abort): for a rank that
 * failed while the others wait for it. Returns only when g is NULL. */
CN_API void cn_group_abort(cn_group *g, int code);

CN_API int cn_group_rank(const cn_group *g); /* 0 for NULL */
CN_API int cn_group_size(const cn_group *g); /* 1 for NULL */
/* Processes of the job on this machine (1 for NULL): threads per rank default to the cores
 * divided among them. */
CN_API int cn_group_local_size(const cn_group *g);
/* Waits until every rank has arrived. */
CN_API cn_status cn_group_barrier(cn_group *g);

/* Element-wise sums over the ranks, in place on every rank; the ranks' values are added in rank
 * order, so the result is bitwise the same on every rank and on every run. */
CN_API cn_status cn_group_sum_f32(cn_group *g, float *data, size_t n);
CN_API cn_status cn_group_sum_f64(cn_group *g, double *data, size_t n);
/* Rank root's bytes [data, data + bytes) to every rank. */
CN_API cn_status cn_group_broadcast(cn_group *g, void *data, size_t bytes, int root);
/* Rank 0 receives every rank's bytes, concatenated in rank order, in *all (malloc'd; free it)
 * and their total in *total; other ranks get NULL and 0. */
CN_API cn_status cn_group_gather(cn_group *g, const void *data, size_t bytes, void **all,
                                 size_t *total);

/* The share [*first, *first + *count) of n items that rank r of size takes: contiguous, in
 * order, sizes differing by at most one. */
CN_API void cn_group_share(int64_t n, int rank, int size, int64_t *first, int64_t *count);
/* The same over whole batches of `batch` items (the last one may be short): rank r's items
 * [*first, *first + *count) of n. Each item then shares its forward pass with the companions it
 * has in one process, so that the outputs are the same bits. */
CN_API void cn_group_share_batches(int64_t n, int64_t batch, int rank, int size, int64_t *first,
                                   int64_t *count);

#ifdef __cplusplus
}
#endif
#endif
