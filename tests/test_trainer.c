/* The trainer and model surgery: whole-graph gradients against finite differences, thread
 * invariance, frozen BatchNormalization, cutting and splitting zoo models, heads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "core/rng.h"
#include "ops/ops.h"
#include "testlib.h"
#include "train/surgery.h"
#include "train/trainer.h"

enum { BATCH = 3 };

static void fill(float *x, size_t n, uint64_t seed) {
  cn_rng r = cn_rng_make(seed);
  for (size_t i = 0; i < n; i++) x[i] = 2 * cn_rng_float(&r) - 1;
}

/* L = sum(output * r) in double. */
static double objective(cn_trainer *t, const float *input, const float *r, int n_out) {
  const float *out;
  CHECK_OK(cn_trainer_forward(t, BATCH, input, 1, 7, &out));
  double sum = 0;
  for (int i = 0; i < n_out; i++) sum += (double)out[i] * r[i];
  return sum;
}

static void test_whole_graph_gradients(void) {
  cn_graph *g = cn_test_small_cnn(1);
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &(cn_trainer_options){.max_batch = BATCH, .input_grad = 1}, &t));
  if (!t) return;
  CHECK(cn_trainer_output_kind(t) == CN_OUTPUT_SOFTMAX);
  cn_shape os = cn_trainer_output_shape(t);
  CHECK(os.rank == 1 && os.dim[0] == 3);
  float input[BATCH * 50], r[BATCH * 3];
  fill(input, BATCH * 50, 2);
  fill(r, BATCH * 3, 3);
  objective(t, input, r, BATCH * 3);
  CHECK_OK(cn_trainer_backward(t, r));
  float *params = cn_trainer_params(t), *grads = cn_trainer_grads(t);
  size_t n = cn_trainer_param_floats(t);
  float *analytic = malloc(n * sizeof *analytic);
  memcpy(analytic, grads, n * sizeof *analytic);
  int bad = 0, checked = 0;
  cn_param_range ranges[16];
  int nr = cn_trainer_ranges(t, ranges, 16);
  CHECK(nr > 0 && nr <= 16);
  for (int q = 0; q < nr && q < 16; q++)
    for (size_t j = ranges[q].offset; j < ranges[q].offset + ranges[q].count; j += 3) {
      float keep = params[j];
      params[j] = keep + 1e-2f;
      double plus = objective(t, input, r, BATCH * 3);
      params[j] = keep - 1e-2f;
      double minus = objective(t, input, r, BATCH * 3);
      params[j] = keep;
      double numeric = (plus - minus) / 2e-2;
      checked++;
      if (fabs(numeric - analytic[j]) > 1e-3 * fmax(1, fabs(numeric))) {
        if (bad++ < 5) fprintf(stderr, "param %zu: %g vs %g\n", j, analytic[j], numeric);
      }
    }
  CHECK(checked > 20);
  CHECK(bad == 0);
  free(analytic);
  cn_trainer_free(t);
  cn_graph_free(g);
}

static void backward_with_threads(cn_graph *g, int threads, float *grads_out) {
  cn_set_threads(threads);
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &(cn_trainer_options){.max_batch = BATCH}, &t));
  if (!t) return;
  float input[BATCH * 50], r[BATCH * 3];
  fill(input, BATCH * 50, 4);
  fill(r, BATCH * 3, 5);
  const float *out;
  CHECK_OK(cn_trainer_forward(t, BATCH, input, 1, 9, &out));
  CHECK_OK(cn_trainer_backward(t, r));
  memcpy(grads_out, cn_trainer_grads(t), cn_trainer_param_floats(t) * sizeof(float));
  cn_trainer_free(t);
}

static void test_thread_invariance(void) {
  cn_graph *g = cn_test_small_cnn(11);
  size_t n = g->n_param_floats;
  float *one = calloc(n, sizeof *one), *two = calloc(n, sizeof *two);
  backward_with_threads(g, 1, one);
  backward_with_threads(g, 2, two);
  CHECK(memcmp(one, two, n * sizeof *one) == 0);
  cn_set_threads(0);
  free(one);
  free(two);
  cn_graph_free(g);
}

static void test_frozen_batchnorm(void) {
  cn_graph *g = cn_test_small_cnn(21);
  int bn = cn_graph_find(g, "bn");
  cn_graph_freeze_upto(g, bn);
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &(cn_trainer_options){.max_batch = BATCH}, &t));
  if (!t) return;
  cn_graph *tg = cn_trainer_graph(t);
  cn_node *tbn = &tg->nodes[cn_graph_find(tg, "bn")];
  size_t bytes = (size_t)(tbn->params[3].data + 4 - tbn->params[0].data) * sizeof(float);
  float *before = malloc(bytes);
  memcpy(before, tbn->params[0].data, bytes);
  float input[BATCH * 50], r[BATCH * 3];
  fill(input, BATCH * 50, 6);
  fill(r, BATCH * 3, 7);
  const float *out;
  CHECK_OK(cn_trainer_forward(t, BATCH, input, 1, 1, &out));
  CHECK_OK(cn_trainer_backward(t, r));
  CHECK(memcmp(before, tbn->params[0].data, bytes) == 0);
  /* Frozen nodes get no gradients; the dense layer does. */
  float *grads = cn_trainer_grads(t);
  CHECK(grads[tbn->params[0].data - tg->params] == 0);
  cn_node *dense = &tg->nodes[cn_graph_find(tg, "dense")];
  double norm = 0;
  for (int j = 0; j < 12; j++) norm += fabs(grads[dense->params[0].data - tg->params + j]);
  CHECK(norm > 0);
  free(before);
  cn_trainer_free(t);
  cn_graph_free(g);
}

static cn_model *zoo(const char *name, float alpha) {
  cn_model *m = NULL;
  CHECK_OK(
      cn_zoo_build(&(cn_zoo_options){.name = name, .alpha = alpha, .height = 96, .width = 96}, &m));
  return m;
}

static void test_surgery_mobilenet(void) {
  cn_model *m = zoo("mobilenet", 0.25f);
  if (!m) return;
  cn_graph *g = m->graph;
  int feat = cn_graph_feature_node(g);
  CHECK(feat >= 0 && strcmp(g->nodes[feat].name, "conv_pw_13_relu") == 0);
  cn_graph *head = NULL;
  cn_head_options o = {.pool = CN_HEAD_AVG, .dense = 16, .dropout = 0.2f, .classes = 3, .seed = 1};
  CHECK_OK(cn_graph_with_head(g, feat, &o, &head));
  if (!head) return;
  cn_shape out = head->nodes[head->outputs[0]].shape;
  CHECK(out.rank == 1 && out.dim[0] == 3);
  int pool = cn_graph_find(head, CN_HEAD_POOL_NAME);
  CHECK(pool >= 0);
  cn_graph *prefix = NULL, *suffix = NULL;
  CHECK_OK(cn_graph_split(head, pool, &prefix, &suffix));
  if (prefix && suffix) {
    CHECK(prefix->nodes[prefix->outputs[0]].shape.dim[0] == 256);
    CHECK(suffix->n_inputs == 1 && suffix->nodes[suffix->outputs[0]].shape.dim[0] == 3);
    CHECK(cn_graph_find(suffix, "predictions") >= 0 && cn_graph_find(suffix, "conv1") < 0);
    /* The base's weights came along. */
    int c1 = cn_graph_find(prefix, "conv1");
    CHECK(c1 >= 0);
  }
  cn_graph_free(prefix);
  cn_graph_free(suffix);
  cn_graph_free(head);
  cn_model_free(m);
}

static void test_split_refuses_skip_connections(void) {
  cn_model *m = zoo("resnet50", 0);
  if (!m) return;
  /* Inside a residual block the shortcut crosses any single node. */
  int mid = cn_graph_find(m->graph, "conv2_block1_1_relu");
  CHECK(mid >= 0);
  cn_graph *prefix = NULL, *suffix = NULL;
  CHECK(!cn_graph_can_split(m->graph, mid));
  CHECK(cn_graph_split(m->graph, mid, &prefix, &suffix) == CN_ERR_UNSUPPORTED);
  CHECK(prefix == NULL && suffix == NULL);
  int out = cn_graph_find(m->graph, "conv2_block1_out");
  CHECK(cn_graph_can_split(m->graph, out));
  CHECK_OK(cn_graph_split(m->graph, out, &prefix, &suffix));
  cn_graph_free(prefix);
  cn_graph_free(suffix);
  cn_model_free(m);
}

int main(void) {
  test_whole_graph_gradients();
  test_thread_invariance();
  test_frozen_batchnorm();
  test_surgery_mobilenet();
  test_split_refuses_skip_connections();
  return cn_test_finish();
}
