/* Data-parallel training without MPI: a group of threads in one process (the same table of
 * collectives src/dist fills from Open MPI) runs shares of one global batch, and the summed
 * gradients, the loss and a training BatchNormalization's moving statistics must equal one
 * process running the whole batch, to float rounding; stochastic ops (Dropout) must draw by
 * global sample. Also cn_group_share and the NULL group. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "testlib.h"
#include "train/optim.h"
#include "train/trainer.h"

enum { GLOBAL = 7, CLASSES = 3, MAX_FLOATS = 4096 };

/* the model: cn_test_small_cnn (BatchNormalization trains, Dropout draws) */
enum { SAMPLE = 5 * 5 * 2 };
static float images[GLOBAL * SAMPLE], targets[GLOBAL];

/* One training step's results: summed gradients, loss total, the BN moving mean. */
typedef struct step_result {
  float grads[MAX_FLOATS];
  size_t n;
  double loss;
  float moving_mean[4];
} step_result;

static void run_step(cn_graph *g, cn_group *group, int64_t first, int64_t count, step_result *out) {
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &(cn_trainer_options){.max_batch = GLOBAL, .group = group}, &t));
  int placeholder = count == 0, batch = placeholder ? 1 : (int)count;
  float x[GLOBAL * SAMPLE] = {0}, y[GLOBAL] = {0}, w[GLOBAL], dlogits[GLOBAL * CLASSES];
  for (int i = 0; i < batch; i++) w[i] = placeholder ? 0.0f : 1.0f;
  if (!placeholder) {
    memcpy(x, images + first * SAMPLE, (size_t)count * SAMPLE * sizeof(float));
    memcpy(y, targets + first, (size_t)count * sizeof(float));
  }
  cn_trainer_set_share(t, first, placeholder);
  const float *logits;
  CHECK_OK(cn_trainer_forward(t, batch, x, 1, 99, &logits));
  out->loss = cn_loss_of_share(CN_LOSS_SPARSE_CE, batch, CLASSES, logits, y, w, dlogits, GLOBAL);
  if (placeholder) out->loss = 0;
  CHECK_OK(cn_trainer_backward(t, dlogits));
  out->n = cn_trainer_param_floats(t);
  CHECK(out->n <= MAX_FLOATS);
  memcpy(out->grads, cn_trainer_grads(t), out->n * sizeof(float));
  CHECK_OK(cn_group_sum_f32(group, out->grads, out->n));
  CHECK_OK(cn_group_sum_f64(group, &out->loss, 1));
  cn_graph *tgraph = cn_trainer_graph(t);
  int bn = cn_graph_find(tgraph, "bn");
  for (int k = 0; k < tgraph->nodes[bn].n_params; k++)
    if (strcmp(tgraph->nodes[bn].params[k].name, "moving_mean") == 0)
      memcpy(out->moving_mean, tgraph->nodes[bn].params[k].data, sizeof out->moving_mean);
  cn_trainer_free(t);
}

typedef struct rank_job {
  cn_graph *g;
  step_result result;
} rank_job;

static void rank_step(void *ctx, int rank, cn_group *group) {
  rank_job *j = (rank_job *)ctx + rank;
  int64_t first, count;
  cn_group_share(GLOBAL, rank, cn_group_size(group), &first, &count);
  run_step(j->g, group, first, count, &j->result);
}

/* The step over `size` thread ranks equals the step of one process. */
static void check_ranks_match_one(int size, const step_result *one) {
  rank_job jobs[CN_TEST_MAX_RANKS];
  for (int r = 0; r < size; r++) jobs[r] = (rank_job){.g = cn_test_small_cnn(5)};
  cn_test_run_ranks(size, rank_step, jobs);
  for (int r = 0; r < size; r++) {
    const step_result *got = &jobs[r].result;
    CHECK(got->n == one->n);
    CHECK_NEAR(got->loss, one->loss, 1e-9 * fabs(one->loss));
    double scale = 0;
    for (size_t i = 0; i < one->n; i++) scale = fmax(scale, fabs(one->grads[i]));
    for (size_t i = 0; i < one->n; i++) CHECK_NEAR(got->grads[i], one->grads[i], 1e-5 * scale);
    for (int c = 0; c < 4; c++) CHECK_NEAR(got->moving_mean[c], one->moving_mean[c], 1e-6);
    /* every rank holds the same bits */
    CHECK(memcmp(got->grads, jobs[0].result.grads, got->n * sizeof(float)) == 0);
    cn_graph_free(jobs[r].g);
  }
}

static void test_shares_sum_to_one_process(void) {
  cn_rng r = cn_rng_make(11);
  for (int i = 0; i < GLOBAL * SAMPLE; i++) images[i] = 2 * cn_rng_float(&r) - 1;
  for (int i = 0; i < GLOBAL; i++) targets[i] = (float)(i % CLASSES);
  cn_graph *g = cn_test_small_cnn(5);
  step_result one;
  run_step(g, NULL, 0, GLOBAL, &one);
  cn_graph_free(g);
  check_ranks_match_one(2, &one);
  check_ranks_match_one(3, &one);
}

/* More ranks than samples: the ranks without one stand in with a placeholder. */
static void test_empty_share(void) {
  int64_t first, count;
  cn_group_share(2, 2, 3, &first, &count);
  CHECK(count == 0);
}

static void test_share(void) {
  int64_t total = 0, next = 0;
  for (int r = 0; r < 4; r++) {
    int64_t first, count;
    cn_group_share(10, r, 4, &first, &count);
    CHECK(first == next);
    CHECK(count == 2 || count == 3);
    next = first + count;
    total += count;
  }
  CHECK(total == 10);
}

static void test_null_group(void) {
  CHECK(cn_group_rank(NULL) == 0);
  CHECK(cn_group_size(NULL) == 1);
  float v[2] = {1, 2};
  CHECK_OK(cn_group_sum_f32(NULL, v, 2));
  CHECK(v[0] == 1 && v[1] == 2);
  void *all = NULL;
  size_t total = 0;
  CHECK_OK(cn_group_gather(NULL, "abc", 3, &all, &total));
  CHECK(total == 3 && memcmp(all, "abc", 3) == 0);
  free(all);
  cn_group *g = (cn_group *)1;
  CHECK_OK(cn_group_join(NULL, NULL, &g)); /* not started by mpirun */
  CHECK(g == NULL);
}

int main(void) {
  test_share();
  test_empty_share();
  test_null_group();
  test_shares_sum_to_one_process();
  return cn_test_finish();
}
