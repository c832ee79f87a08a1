#include "testlib.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/graph.h"
#include "core/group.h"
#include "core/rng.h"
#include "ops/ops.h"

int cn_test_passed, cn_test_failed;

int cn_test_finish(void) {
  printf("%d passed, %d failed\n", cn_test_passed, cn_test_failed);
  return cn_test_failed ? 1 : 0;
}

const char *cn_test_data(const char *relative) {
  static _Thread_local char path[4096]; /* per thread: test_evaluation runs ranks as threads */
  const char *root = getenv("CN_SHARED_DATA");
  if (!root) root = "../shared/data";
  snprintf(path, sizeof path, "%s/%s", root, relative);
  return access(path, R_OK) == 0 ? path : NULL;
}

void cn_test_source(const char *relative, char *path, size_t cap) {
  const char *root = getenv("CN_SOURCE_DIR");
  snprintf(path, cap, "%s/%s", root ? root : ".", relative);
}

void cn_test_skip(const char *why) {
  printf("SKIP: %s\n", why);
  exit(77);
}

const char *cn_test_tmpdir(void) {
  static char dir[256];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/convnet-test-XXXXXX");
    if (!mkdtemp(dir)) {
      perror("mkdtemp");
      exit(1);
    }
  }
  return dir;
}

double cn_test_max_abs_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > worst || d != d) worst = d != d ? INFINITY : d;
  }
  return worst;
}

cn_shape cn_test_shape(int rank, ...) {
  cn_shape s = {.rank = rank};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank && i < CN_MAX_RANK; i++) s.dim[i] = va_arg(ap, int);
  va_end(ap);
  return s;
}

cn_graph *cn_test_small_cnn(uint64_t seed) {
  cn_graph *g = cn_graph_new();
  int x = 0, at = 0;
  cn_input_attrs in = {{3, {5, 5, 2}}};
  cn_conv2d_attrs conv = {.filters = 4,
                          .kh = 3,
                          .kw = 3,
                          .sh = 1,
                          .sw = 1,
                          .dh = 1,
                          .dw = 1,
                          .groups = 1,
                          .use_bias = 1,
                          .padding = CN_PAD_SAME,
                          .act = cn_act_linear()};
  cn_batchnorm_attrs bn = {.epsilon = 1e-3f, .center = 1, .scale = 1, .axis = -1};
  cn_activation relu = cn_act_simple(CN_ACT_TANH); /* smooth: finite differences need no kinks */
  cn_global_pool_attrs gp = {0};
  cn_dropout_attrs drop = {0.25f};
  cn_dense_attrs dense = {.units = 3, .use_bias = 1, .act = cn_act_softmax()};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_conv2d, "conv", &x, 1, &conv, &at));
  CHECK_OK(cn_graph_add(g, &cn_op_batchnorm, "bn", &at, 1, &bn, &at));
  CHECK_OK(cn_graph_add(g, &cn_op_activation, "relu", &at, 1, &relu, &at));
  CHECK_OK(cn_graph_add(g, &cn_op_global_avgpool, "pool", &at, 1, &gp, &at));
  CHECK_OK(cn_graph_add(g, &cn_op_dropout, "drop", &at, 1, &drop, &at));
  CHECK_OK(cn_graph_add(g, &cn_op_dense, "dense", &at, 1, &dense, &at));
  CHECK_OK(cn_graph_alloc_params(g));
  cn_rng r = cn_rng_make(seed);
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params; k++) {
      cn_param *p = &g->nodes[i].params[k];
      int positive = strstr(p->name, "variance") != NULL;
      for (int64_t j = 0; j < cn_shape_numel(&p->shape); j++)
        p->data[j] = positive ? 0.5f + cn_rng_float(&r) : cn_rng_float(&r) - 0.5f;
    }
  return g;
}

/* ---- a group of threads ------------------------------------------------------------------- */

static struct {
  pthread_barrier_t barrier;
  void *data[CN_TEST_MAX_RANKS];
  size_t bytes[CN_TEST_MAX_RANKS];
  cn_group members[CN_TEST_MAX_RANKS];
} tg;

/* Each rank's vector posted, then every rank adds them in rank order. */
static cn_status thread_sum(cn_group *g, void *data, size_t n, size_t elem) {
  char *sum = malloc(n * elem + 1);
  if (!sum) abort();
  tg.data[g->rank] = data;
  pthread_barrier_wait(&tg.barrier);
  for (size_t i = 0; i < n; i++) {
    if (elem == sizeof(float)) {
      float v = ((const float *)tg.data[0])[i];
      for (int r = 1; r < g->size; r++) v += ((const float *)tg.data[r])[i];
      ((float *)(void *)sum)[i] = v;
    } else {
      double v = ((const double *)tg.data[0])[i];
      for (int r = 1; r < g->size; r++) v += ((const double *)tg.data[r])[i];
      ((double *)(void *)sum)[i] = v;
    }
  }
  pthread_barrier_wait(&tg.barrier);
  memcpy(data, sum, n * elem);
  free(sum);
  return CN_OK;
}

static cn_status thread_broadcast(cn_group *g, void *data, size_t bytes, int from) {
  tg.data[g->rank] = data;
  pthread_barrier_wait(&tg.barrier);
  if (g->rank != from) memcpy(data, tg.data[from], bytes);
  pthread_barrier_wait(&tg.barrier);
  return CN_OK;
}

static cn_status thread_gather(cn_group *g, const void *data, size_t bytes, void **all,
                               size_t *total) {
  tg.data[g->rank] = (void *)data;
  tg.bytes[g->rank] = bytes;
  pthread_barrier_wait(&tg.barrier);
  if (g->rank == 0) {
    for (int r = 0; r < g->size; r++) *total += tg.bytes[r];
    char *buf = malloc(*total + 1);
    if (!buf) abort();
    for (size_t r = 0, at = 0; r < (size_t)g->size; at += tg.bytes[r++])
      memcpy(buf + at, tg.data[r], tg.bytes[r]);
    *all = buf;
  }
  pthread_barrier_wait(&tg.barrier);
  return CN_OK;
}

static const cn_group_ops thread_ops = {
    .sum = thread_sum, .broadcast = thread_broadcast, .gather = thread_gather};

typedef struct rank_thread {
  void (*fn)(void *ctx, int rank, cn_group *group);
  void *ctx;
  int rank;
} rank_thread;

static void *rank_thread_main(void *arg) {
  rank_thread *t = arg;
  t->fn(t->ctx, t->rank, &tg.members[t->rank]);
  return NULL;
}

void cn_test_run_ranks(int size, void (*fn)(void *ctx, int rank, cn_group *group), void *ctx) {
  CHECK(size >= 1 && size <= CN_TEST_MAX_RANKS);
  pthread_barrier_init(&tg.barrier, NULL, (unsigned)size);
  pthread_t threads[CN_TEST_MAX_RANKS];
  rank_thread args[CN_TEST_MAX_RANKS];
  for (int r = 0; r < size; r++) {
    tg.members[r] = (cn_group){.ops = &thread_ops, .rank = r, .size = size, .local_size = size};
    args[r] = (rank_thread){fn, ctx, r};
    CHECK(pthread_create(&threads[r], NULL, rank_thread_main, &args[r]) == 0);
  }
  for (int r = 0; r < size; r++) CHECK(pthread_join(threads[r], NULL) == 0);
  pthread_barrier_destroy(&tg.barrier);
}
