/* A process group over Open MPI (MPI_COMM_WORLD), for convnet/dist.h.
 *
 * The sum is a reduce-scatter followed by an all-gather, both written out so that the order of
 * the additions is fixed: the vector is cut into one block per rank; rank k receives block k of
 * every rank (MPI_Alltoallv), adds them in rank order 0, 1, ..., N-1, and the summed blocks are
 * then gathered on every rank (MPI_Allgatherv). Each rank sends and receives 2 (N-1)/N of the
 * vector, as a ring all-reduce does, and the result never depends on timing or on the MPI
 * library's choice of algorithm (MPI_Allreduce promises neither). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/group.h"

/* Whether mpirun (Open MPI's, or a PMI launcher) started this process. */
static int launched_by_mpirun(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

static int env_int(const char *name, int fallback) {
  const char *s = getenv(name);
  char *end;
  long v = s ? strtol(s, &end, 10) : 0;
  return s && end != s && *end == 0 && v > 0 && v < 1 << 20 ? (int)v : fallback;
}

#ifdef CN_HAVE_MPI
#include <mpi.h>

/* MPI counts are ints: one message at most this many bytes. */
#define MAX_MESSAGE ((size_t)1 << 30)

static cn_status mpi_failed(const char *what, int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", rc);
  return cn_fail(CN_ERR_IO, "%s failed: %s", what, text);
}

static cn_status sum_in_rank_order(cn_group *g, void *data, size_t n, size_t elem) {
  int size = g->size, rank = g->rank;
  int64_t first, count;
  cn_group_share((int64_t)n, rank, size, &first, &count);
  size_t mine = (size_t)count * elem;
  char *recv = malloc(mine * (size_t)size + 1);
  int *scounts = malloc(4 * sizeof(int) * (size_t)size);
  if (!recv || !scounts) {
    free(recv);
    free(scounts);
    return cn_fail(CN_ERR_NOMEM, "out of memory for a sum of %zu values", n);
  }
  int *sdispls = scounts + size, *rcounts = sdispls + size, *rdispls = rcounts + size;
  for (int r = 0; r < size; r++) {
    int64_t f, c;
    cn_group_share((int64_t)n, r, size, &f, &c);
    scounts[r] = (int)((size_t)c * elem);
    sdispls[r] = (int)((size_t)f * elem);
    rcounts[r] = (int)mine;
    rdispls[r] = (int)(mine * (size_t)r);
  }
  cn_status st = CN_OK;
  int rc = MPI_Alltoallv(data, scounts, sdispls, MPI_BYTE, recv, rcounts, rdispls, MPI_BYTE,
                         MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) st = mpi_failed("MPI_Alltoallv", rc);
  if (st == CN_OK) {
    char *block = (char *)data + (size_t)first * elem;
    if (elem == sizeof(float)) {
      float *out = (float *)(void *)block;
      for (int64_t i = 0; i < count; i++) {
        float s = ((const float *)(void *)recv)[i];
        for (int r = 1; r < size; r++) s += ((const float *)(void *)(recv + (size_t)r * mine))[i];
        out[i] = s;
      }
    } else {
      double *out = (double *)(void *)block;
      for (int64_t i = 0; i < count; i++) {
        double s = ((const double *)(void *)recv)[i];
        for (int r = 1; r < size; r++) s += ((const double *)(void *)(recv + (size_t)r * mine))[i];
        out[i] = s;
      }
    }
    rc =
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, data, scounts, sdispls, MPI_BYTE, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) st = mpi_failed("MPI_Allgatherv", rc);
  }
  free(recv);
  free(scounts);
  return st;
}

static cn_status mpi_sum(cn_group *g, void *data, size_t n, size_t elem) {
  /* Pieces small enough for int byte counts, the same pieces on every rank. */
  size_t piece = MAX_MESSAGE / elem;
  for (size_t done = 0; done < n; done += piece) {
    size_t m = n - done < piece ? n - done : piece;
    cn_status st = sum_in_rank_order(g, (char *)data + done * elem, m, elem);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

static cn_status mpi_broadcast(cn_group *g, void *data, size_t bytes, int root) {
  (void)g;
  for (size_t done = 0; done < bytes; done += MAX_MESSAGE) {
    size_t m = bytes - done < MAX_MESSAGE ? bytes - done : MAX_MESSAGE;
    int rc = MPI_Bcast((char *)data + done, (int)m, MPI_BYTE, root, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_failed("MPI_Bcast", rc);
  }
  return CN_OK;
}

static cn_status mpi_gather(cn_group *g, const void *data, size_t bytes, void **all,
                            size_t *total) {
  if (bytes > MAX_MESSAGE)
    return cn_fail(CN_ERR_LIMIT, "a gather of %zu bytes from one rank", bytes);
  int mine = (int)bytes, size = g->size;
  int *counts = g->rank == 0 ? calloc((size_t)size * 2, sizeof(int)) : NULL;
  if (g->rank == 0 && !counts) return cn_fail(CN_ERR_NOMEM, "out of memory");
  int rc = MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) {
    free(counts);
    return mpi_failed("MPI_Gather", rc);
  }
  char *buf = NULL;
  size_t sum = 0;
  if (g->rank == 0) {
    for (int r = 0; r < size; r++) {
      counts[size + r] = (int)sum;
      sum += (size_t)counts[r];
    }
    if (sum > (size_t)INT32_MAX) {
      free(counts);
      return cn_fail(CN_ERR_LIMIT, "a gather of %zu bytes in all", sum);
    }
    buf = malloc(sum + 1);
    if (!buf) {
      free(counts);
      return cn_fail(CN_ERR_NOMEM, "out of memory for %zu gathered bytes", sum);
    }
  }
  rc = MPI_Gatherv(data, mine, MPI_BYTE, buf, counts, counts ? counts + size : NULL, MPI_BYTE, 0,
                   MPI_COMM_WORLD);
  free(counts);
  if (rc != MPI_SUCCESS) {
    free(buf);
    return mpi_failed("MPI_Gatherv", rc);
  }
  *all = buf;
  *total = sum;
  return CN_OK;
}

static cn_status mpi_barrier(cn_group *g) {
  (void)g;
  int rc = MPI_Barrier(MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? CN_OK : mpi_failed("MPI_Barrier", rc);
}

static void mpi_abort(cn_group *g, int code) {
  (void)g;
  fflush(stdout);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  exit(code); /* MPI_Abort does not return; this is for the compiler's sake */
}

static void mpi_leave(cn_group *g) {
  MPI_Finalize();
  free(g);
}

static const cn_group_ops mpi_ops = {.sum = mpi_sum,
                                     .broadcast = mpi_broadcast,
                                     .gather = mpi_gather,
                                     .barrier = mpi_barrier,
                                     .abort = mpi_abort,
                                     .leave = mpi_leave};

int cn_group_available(void) {
  return 1;
}

cn_status cn_group_join(int *argc, char ***argv, cn_group **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_group_join: no result pointer");
  *out = NULL;
  if (!launched_by_mpirun()) return CN_OK;
  int provided = 0, inited = 0;
  MPI_Initialized(&inited);
  if (inited) return cn_fail(CN_ERR_ARG, "cn_group_join: MPI was initialized already");
  /* MPI is called from the main thread only; OpenMP and the loader's threads never call it. */
  int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) return mpi_failed("MPI_Init_thread", rc);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  cn_group *g = calloc(1, sizeof *g);
  if (!g) {
    MPI_Finalize();
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  g->ops = &mpi_ops;
  MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g->size);
  g->local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
  if (g->size == 1) {
    mpi_leave(g);
    return CN_OK;
  }
  *out = g;
  return CN_OK;
}

#else /* no Open MPI */

int cn_group_available(void) {
  return 0;
}

cn_status cn_group_join(int *argc, char ***argv, cn_group **out) {
  (void)argc, (void)argv;
  if (!out) return cn_fail(CN_ERR_ARG, "cn_group_join: no result pointer");
  *out = NULL;
  if (launched_by_mpirun() && env_int("OMPI_COMM_WORLD_SIZE", 1) > 1)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "started by mpirun, but this convnet was built without Open MPI "
                   "(install libopenmpi-dev and rebuild with -DCN_MPI=ON)");
  return CN_OK;
}

#endif
