/* Backward passes of the Keras-engine ops other than convolution and dense: finite-difference
 * checks (tests/gradcheck.h) for every op and attribute combination, bitwise thread invariance of
 * the ops that reduce or scatter, tie rules, and the training forward of BatchNormalization
 * (moving statistics) and Dropout (mask). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "core/mem.h"
#include "core/rng.h"
#include "gradcheck.h"
#include "ops/ops.h"
#include "testlib.h"

static cn_shape s1(int64_t a) {
  return cn_shape_make(1, &a);
}
static cn_shape s3(int64_t a, int64_t b, int64_t c) {
  return cn_shape_make(3, (int64_t[]){a, b, c});
}

/* A one-input case with defaults filled in. */
static cn_gradcheck_case one(const char *label, const cn_op *op, const void *attrs, cn_shape in) {
  cn_gradcheck_case c = {.label = label, .op = op, .attrs = attrs, .n_inputs = 1, .seed = 7};
  c.inputs[0] = in;
  return c;
}

static void check_grad(const cn_gradcheck_case *c) {
  int bad = cn_gradcheck(c);
  if (bad) fprintf(stderr, "  ^ %s: %d mismatches\n", c->label, bad);
  CHECK(bad == 0);
}

/* ---- shape ops ------------------------------------------------------------------------------ */

static void test_shape_ops(void) {
  cn_gradcheck_case c = one("flatten", &cn_op_flatten, NULL, s3(3, 2, 4));
  check_grad(&c);
  cn_reshape_attrs r = {s3(4, -1, 2)};
  c = one("reshape", &cn_op_reshape, &r, s3(3, 2, 4));
  check_grad(&c);
  cn_zeropad_attrs z = {1, 2, 0, 3};
  c = one("zeropad", &cn_op_zeropad, &z, s3(3, 4, 2));
  c.batch = 3;
  check_grad(&c);
  CHECK(cn_op_input.backward != NULL);

  int axes[] = {-1, 1, 2};
  for (int i = 0; i < 3; i++) {
    cn_concat_attrs a = {axes[i]};
    cn_gradcheck_case k = {.label = "concat", .op = &cn_op_concat, .attrs = &a, .n_inputs = 3};
    k.seed = 11 + i;
    for (int j = 0; j < 3; j++) {
      cn_shape s = s3(3, 2, 4);
      s.dim[a.axis < 0 ? 2 : a.axis - 1] = j + 1;
      k.inputs[j] = s;
    }
    check_grad(&k);
    k.batch = 3;
    CHECK(cn_gradcheck_thread_invariant(&k));
  }
}

/* ---- merge ---------------------------------------------------------------------------------- */

static void test_merge(void) {
  const char *names[] = {"add", "subtract", "multiply", "average", "maximum", "minimum"};
  for (int kind = CN_MERGE_ADD; kind <= CN_MERGE_MINIMUM; kind++)
    for (int k = 2; k <= 3; k++) {
      if (kind == CN_MERGE_SUBTRACT && k == 3) continue;
      cn_merge_attrs a = {(cn_merge_kind)kind};
      cn_gradcheck_case c = {.label = names[kind], .op = &cn_op_merge, .attrs = &a, .n_inputs = k};
      c.seed = 21 + (uint64_t)kind;
      for (int j = 0; j < k; j++) c.inputs[j] = s3(2, 3, 4);
      /* Not .distinct: every input would get the same value grid, so equal values at one
       * element are likely. Uniform values with a small step keep max/min away from ties. */
      if (kind >= CN_MERGE_MAXIMUM) c.step = 1e-3f;
      check_grad(&c);
    }
}

/* Runs an op's training forward and backward on explicit inputs (threads 1, dout all ones). */
static void run_backward(const cn_op *op, const void *attrs, int n_inputs, cn_shape sample,
                         float *const *x, float *const *dx) {
  cn_graph *g = cn_graph_new();
  int ids[4], node;
  for (int i = 0; i < n_inputs; i++) {
    cn_input_attrs in = {sample};
    cn_graph_add(g, &cn_op_input, i ? "b" : "a", NULL, 0, &in, &ids[i]);
  }
  CHECK_OK(cn_graph_add(g, op, "op", ids, n_inputs, attrs, &node));
  CHECK_OK(cn_graph_alloc_params(g));
  cn_node *nd = &g->nodes[node];
  cn_tensor in[4], din[4], out = {cn_shape_batch(1, &nd->shape), NULL}, dout = out;
  int64_t n_out = cn_shape_numel(&out.shape);
  out.data = calloc((size_t)n_out, sizeof(float));
  dout.data = calloc((size_t)n_out, sizeof(float));
  for (int64_t i = 0; i < n_out; i++) dout.data[i] = 1.0f;
  for (int i = 0; i < n_inputs; i++) {
    in[i] = (cn_tensor){cn_shape_batch(1, &sample), x[i]};
    din[i] = (cn_tensor){in[i].shape, dx[i]};
  }
  cn_exec ex = {.batch = 1, .threads = 1, .training = 1};
  op->forward(nd, in, &out, &ex);
  op->backward(nd, in, &out, &dout, din, (float *[CN_MAX_PARAMS]){0}, &ex);
  free(out.data);
  free(dout.data);
  cn_graph_free(g);
}

/* Ties go to the first input (merge) and to the first tap in scan order (max pooling). */
static void test_ties(void) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 5, 3, 0}, da[4] = {0}, db[4] = {0};
  cn_merge_attrs mx = {CN_MERGE_MAXIMUM};
  run_backward(&cn_op_merge, &mx, 2, s3(1, 1, 4), (float *[]){a, b}, (float *[]){da, db});
  CHECK(da[0] == 1 && db[0] == 0 && da[1] == 0 && db[1] == 1 && da[2] == 1 && db[2] == 0);
  CHECK(da[3] == 1 && db[3] == 0);
  memset(da, 0, sizeof da), memset(db, 0, sizeof db);
  cn_merge_attrs mn = {CN_MERGE_MINIMUM};
  run_backward(&cn_op_merge, &mn, 2, s3(1, 1, 4), (float *[]){a, b}, (float *[]){da, db});
  CHECK(da[0] == 1 && db[0] == 0 && da[1] == 1 && da[2] == 1 && db[2] == 0 && db[3] == 1);

  float img[9] = {1, 7, 7, 7, 2, 7, 0, 0, 0}, dimg[9] = {0};
  cn_pool_attrs p = {.ph = 3, .pw = 3, .sh = 1, .sw = 1, .padding = CN_PAD_VALID};
  run_backward(&cn_op_maxpool, &p, 1, s3(3, 3, 1), (float *[]){img}, (float *[]){dimg});
  CHECK(dimg[1] == 1.0f && dimg[2] == 0 && dimg[3] == 0 && dimg[5] == 0);
  float gimg[4] = {3, 3, 1, 3}, dg[4] = {0};
  cn_global_pool_attrs gp = {0};
  run_backward(&cn_op_global_maxpool, &gp, 1, s3(2, 2, 1), (float *[]){gimg}, (float *[]){dg});
  CHECK(dg[0] == 1.0f && dg[1] == 0 && dg[3] == 0);
}

/* ---- activations ---------------------------------------------------------------------------- */

static void test_activations(void) {
  struct {
    const char *label;
    cn_activation act;
    float scale;
  } cases[] = {
      {"linear", cn_act_linear(), 2},
      {"relu", cn_act_relu(), 2},
      {"relu6", cn_act_relu6(), 8},
      {"leaky_relu", {.kind = CN_ACT_RELU, .negative_slope = 0.2f, .max_value = INFINITY}, 2},
      {"relu_threshold", {.kind = CN_ACT_RELU, .threshold = 0.5f, .max_value = INFINITY}, 2},
      {"relu_all",
       {.kind = CN_ACT_RELU, .negative_slope = 0.1f, .threshold = 0.3f, .max_value = 1.5f},
       2},
      {"sigmoid", cn_act_simple(CN_ACT_SIGMOID), 3},
      {"tanh", cn_act_simple(CN_ACT_TANH), 2},
      {"elu", cn_act_simple(CN_ACT_ELU), 2},
      {"swish", cn_act_simple(CN_ACT_SWISH), 3},
      {"hard_sigmoid", cn_act_simple(CN_ACT_HARD_SIGMOID), 4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cn_gradcheck_case c = one(cases[i].label, &cn_op_activation, &cases[i].act, s3(3, 4, 4));
    c.distinct = 1;
    c.input_scale = cases[i].scale;
    c.step = 1e-3f;
    check_grad(&c);
  }
  int axes[] = {-1, 1, 2, 3};
  for (int i = 0; i < 4; i++) {
    cn_activation sm = cn_act_softmax();
    sm.axis = axes[i];
    cn_gradcheck_case c = one("softmax", &cn_op_activation, &sm, s3(3, 4, 5));
    c.input_scale = 2;
    c.seed = 31 + (uint64_t)i;
    check_grad(&c);
    c.batch = 4;
    CHECK(cn_gradcheck_thread_invariant(&c));
  }
}

/* ---- pooling -------------------------------------------------------------------------------- */

static void pool_case(const char *label, const cn_op *op, cn_pool_attrs a, cn_shape in) {
  cn_gradcheck_case c = one(label, op, &a, in);
  c.distinct = op == &cn_op_maxpool;
  c.input_scale = 10; /* distinct values further apart than the finite-difference step */
  c.batch = 2;
  check_grad(&c);
  c.batch = 3;
  CHECK(cn_gradcheck_thread_invariant(&c));
}

static void test_pooling(void) {
  const cn_op *ops[] = {&cn_op_maxpool, &cn_op_avgpool};
  for (int o = 0; o < 2; o++) {
    const cn_op *op = ops[o];
    cn_pool_attrs a = {.ph = 2, .pw = 2, .sh = 2, .sw = 2, .padding = CN_PAD_VALID};
    pool_case("pool 2x2/2 valid", op, a, s3(5, 6, 3));
    a = (cn_pool_attrs){.ph = 3, .pw = 3, .sh = 2, .sw = 2, .padding = CN_PAD_SAME};
    pool_case("pool 3x3/2 same", op, a, s3(6, 7, 3));
    a = (cn_pool_attrs){.ph = 3, .pw = 2, .sh = 1, .sw = 1, .padding = CN_PAD_SAME};
    pool_case("pool 3x2/1 same", op, a, s3(2, 3, 70)); /* channels over one block */
    a = (cn_pool_attrs){.ph = 3, .pw = 3, .sh = 2, .sw = 1, .padding = CN_PAD_VALID};
    a.pad_top = 1, a.pad_left = 2, a.pad_bottom = 0, a.pad_right = 1;
    pool_case("pool explicit pads", op, a, s3(5, 5, 2));
    a.count_include_pad = 1;
    pool_case("pool count_include_pad", op, a, s3(5, 5, 2));
    a = (cn_pool_attrs){.ph = 3, .pw = 3, .sh = 2, .sw = 2, .padding = CN_PAD_VALID};
    a.ceil_mode = 1, a.pad_top = 1, a.pad_left = 1, a.pad_bottom = 1, a.pad_right = 1;
    pool_case("pool ceil_mode", op, a, s3(6, 6, 2));
    a.count_include_pad = 1;
    pool_case("pool ceil_mode count_include_pad", op, a, s3(6, 6, 2));
    a = (cn_pool_attrs){.ph = 2, .pw = 3, .sh = 1, .sw = 2, .dh = 2, .dw = 2};
    pool_case("pool dilated", op, a, s3(6, 7, 2));
    a.padding = CN_PAD_SAME;
    pool_case("pool dilated same", op, a, s3(6, 7, 2));
  }
  for (int keep = 0; keep <= 1; keep++) {
    cn_global_pool_attrs g = {keep};
    cn_gradcheck_case c = one("global avg", &cn_op_global_avgpool, &g, s3(3, 4, 5));
    check_grad(&c);
    c = one("global max", &cn_op_global_maxpool, &g, s3(3, 4, 5));
    c.distinct = 1;
    check_grad(&c);
    c.batch = 3;
    CHECK(cn_gradcheck_thread_invariant(&c));
  }
}

/* ---- BatchNormalization --------------------------------------------------------------------- */

static void test_batchnorm_gradients(void) {
  struct {
    const char *label;
    cn_batchnorm_attrs a;
    cn_shape in;
  } cases[] = {
      {"bn last axis", {1e-3f, 1, 1, -1, 0.9f, 0}, s3(3, 4, 5)},
      {"bn no scale", {1e-3f, 1, 0, -1, 0, 0}, s3(3, 4, 5)},
      {"bn no center", {1e-3f, 0, 1, -1, 0, 0}, s3(3, 4, 5)},
      {"bn neither", {1e-3f, 0, 0, -1, 0, 0}, s3(3, 4, 5)},
      {"bn channels first", {1e-3f, 1, 1, 1, 0, 0}, s3(5, 3, 4)},
      {"bn middle axis", {1e-3f, 1, 1, 2, 0, 0}, s3(3, 4, 5)},
      {"bn rank 1", {1e-3f, 1, 1, -1, 0, 0}, s1(6)},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int training = 0; training <= 1; training++) {
      cn_gradcheck_case c = one(cases[i].label, &cn_op_batchnorm, &cases[i].a, cases[i].in);
      c.training = training;
      c.batch = cases[i].in.rank == 1 ? 5 : 3;
      c.seed = 41 + i;
      check_grad(&c);
    }
  cn_batchnorm_attrs a = {1e-3f, 1, 1, -1, 0, 0};
  cn_gradcheck_case big = one("bn threads", &cn_op_batchnorm, &a, s3(16, 16, 40));
  big.training = 1, big.batch = 5;
  CHECK(cn_gradcheck_thread_invariant(&big));
  cn_batchnorm_attrs first = {1e-3f, 1, 1, 1, 0, 0};
  big = one("bn threads channels first", &cn_op_batchnorm, &first, s3(6, 40, 40));
  big.training = 1, big.batch = 5;
  CHECK(cn_gradcheck_thread_invariant(&big));
}

/* One BN node on an input of (batch, 2, 3, channels 4) with known moving statistics. */
typedef struct bn_setup {
  cn_graph *g;
  cn_node *node;
  cn_tensor in, out;
  float *scratch, *saved;
} bn_setup;

static void bn_make(bn_setup *s, float momentum, int batch) {
  enum { C = 4 };
  cn_batchnorm_attrs a = {1e-3f, 1, 1, -1, momentum, 0};
  cn_input_attrs ia = {s3(2, 3, C)};
  int id, node;
  s->g = cn_graph_new();
  cn_graph_add(s->g, &cn_op_input, "x", NULL, 0, &ia, &id);
  CHECK_OK(cn_graph_add(s->g, &cn_op_batchnorm, "bn", &id, 1, &a, &node));
  CHECK_OK(cn_graph_alloc_params(s->g));
  s->node = &s->g->nodes[node];
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < C; j++) s->node->params[k].data[j] = 0.5f + 0.25f * (float)(k + j);
  s->in.shape = s->out.shape = cn_shape_batch(batch, &ia.shape);
  int64_t n = cn_shape_numel(&s->in.shape);
  s->in.data = malloc((size_t)n * sizeof(float));
  s->out.data = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) s->in.data[i] = (float)((i * 37) % 23) / 7.0f - 1.0f + (i % C);
  s->scratch = cn_alloc_aligned(cn_op_batchnorm.scratch(s->g, s->node, batch) * sizeof(float));
  s->saved = cn_alloc_aligned(cn_op_batchnorm.saved(s->g, s->node, batch) * sizeof(float));
}

static void bn_run(bn_setup *s, int training) {
  cn_exec ex = {.batch = (int)s->in.shape.dim[0], .threads = 1, .scratch = s->scratch};
  ex.training = training, ex.saved = s->saved;
  cn_op_batchnorm.forward(s->node, &s->in, &s->out, &ex);
}

static void bn_free(bn_setup *s) {
  free(s->in.data);
  free(s->out.data);
  cn_free_aligned(s->scratch);
  cn_free_aligned(s->saved);
  cn_graph_free(s->g);
}

static void test_batchnorm_statistics(void) {
  enum { C = 4, BATCH = 3 };
  float momenta[] = {0.9f, 0.0f /* Keras default 0.99 */};
  for (int t = 0; t < 2; t++) {
    bn_setup s;
    bn_make(&s, momenta[t], BATCH);
    float m = momenta[t] > 0 ? momenta[t] : 0.99f, before_mean[C], before_var[C];
    memcpy(before_mean, s.node->params[2].data, sizeof before_mean);
    memcpy(before_var, s.node->params[3].data, sizeof before_var);
    bn_run(&s, 1);
    int64_t rows = BATCH * 2 * 3;
    for (int j = 0; j < C; j++) {
      double sum = 0, sq = 0;
      for (int64_t r = 0; r < rows; r++) sum += s.in.data[r * C + j];
      double mean = sum / (double)rows;
      for (int64_t r = 0; r < rows; r++) sq += pow(s.in.data[r * C + j] - mean, 2);
      double var = sq / (double)rows; /* biased */
      CHECK_NEAR(s.node->params[2].data[j], before_mean[j] * m + mean * (1 - m), 1e-6);
      CHECK_NEAR(s.node->params[3].data[j], before_var[j] * m + var * (1 - m), 1e-6);
      /* The output is normalised with the batch statistics: gamma * xhat + beta. */
      double gamma = s.node->params[0].data[j], beta = s.node->params[1].data[j];
      double y0 = gamma * (s.in.data[j] - mean) / sqrt(var + 1e-3) + beta;
      CHECK_NEAR(s.out.data[j], y0, 1e-5);
    }
    bn_free(&s);
  }

  /* Frozen (trainable 0): a training forward is the inference forward, statistics untouched. */
  bn_setup s;
  bn_make(&s, 0.9f, BATCH);
  int64_t n = cn_shape_numel(&s.in.shape);
  float *inference = malloc((size_t)n * sizeof(float)), mean0[C], var0[C];
  bn_run(&s, 0);
  memcpy(inference, s.out.data, (size_t)n * sizeof(float));
  memcpy(mean0, s.node->params[2].data, sizeof mean0);
  memcpy(var0, s.node->params[3].data, sizeof var0);
  s.node->trainable = 0;
  bn_run(&s, 1);
  CHECK(memcmp(mean0, s.node->params[2].data, sizeof mean0) == 0);
  CHECK(memcmp(var0, s.node->params[3].data, sizeof var0) == 0);
  CHECK(memcmp(inference, s.out.data, (size_t)n * sizeof(float)) == 0);
  /* Inference (training 0) of a trainable node leaves them alone too. */
  s.node->trainable = 1;
  bn_run(&s, 0);
  CHECK(memcmp(mean0, s.node->params[2].data, sizeof mean0) == 0);
  free(inference);
  bn_free(&s);
}

/* ---- Dropout -------------------------------------------------------------------------------- */

/* Dropout forward of n ones under a seed; returns the output (malloc'd). */
static float *dropout_ones(float rate, uint64_t seed, int training, int trainable, int threads,
                           int64_t n, float fill) {
  cn_dropout_attrs a = {rate};
  cn_input_attrs ia = {s1(n)};
  cn_graph *g = cn_graph_new();
  int id, node;
  cn_graph_add(g, &cn_op_input, "x", NULL, 0, &ia, &id);
  cn_graph_add(g, &cn_op_dropout, "drop", &id, 1, &a, &node);
  g->nodes[node].trainable = trainable;
  cn_tensor in = {cn_shape_batch(1, &ia.shape), malloc((size_t)n * sizeof(float))};
  cn_tensor out = {in.shape, malloc((size_t)n * sizeof(float))};
  for (int64_t i = 0; i < n; i++) in.data[i] = fill;
  cn_exec ex = {.batch = 1, .threads = threads, .training = training, .seed = seed};
  cn_op_dropout.forward(&g->nodes[node], &in, &out, &ex);
  free(in.data);
  cn_graph_free(g);
  return out.data;
}

static void test_dropout(void) {
  cn_dropout_attrs a = {0.3f};
  cn_gradcheck_case c = one("dropout", &cn_op_dropout, &a, s3(3, 4, 5));
  c.training = 1;
  check_grad(&c);
  c.training = 0;
  check_grad(&c);
  c.training = 1, c.batch = 4;
  CHECK(cn_gradcheck_thread_invariant(&c));

  enum { N = 200000 };
  float *y = dropout_ones(0.3f, 99, 1, 1, 1, N, 1.0f);
  float *y2 = dropout_ones(0.3f, 99, 1, 1, 2, N, 3.0f);     /* same seed, other data, threads */
  float *other = dropout_ones(0.3f, 100, 1, 1, 1, N, 1.0f); /* another seed */
  int64_t kept = 0, same_mask = 1, bad_value = 0, differ = 0;
  for (int64_t i = 0; i < N; i++) {
    kept += y[i] != 0;
    bad_value += y[i] != 0 && y[i] != 1.0f / 0.7f;
    same_mask &= (y[i] != 0) == (y2[i] != 0);
    differ += (y[i] != 0) != (other[i] != 0);
  }
  CHECK_NEAR((double)kept / N, 0.7, 0.01);
  CHECK(bad_value == 0);
  CHECK(same_mask);
  CHECK(differ > N / 10);
  free(y), free(y2), free(other);

  y = dropout_ones(0.3f, 99, 0, 1, 1, 1000, 2.0f);  /* inference: identity */
  y2 = dropout_ones(0.3f, 99, 1, 0, 1, 1000, 2.0f); /* frozen node: identity */
  int identity = 1;
  for (int i = 0; i < 1000; i++) identity &= y[i] == 2.0f && y2[i] == 2.0f;
  CHECK(identity);
  free(y), free(y2);
}

int main(void) {
  test_shape_ops();
  test_merge();
  test_ties();
  test_activations();
  test_pooling();
  test_batchnorm_gradients();
  test_batchnorm_statistics();
  test_dropout();
  return cn_test_finish();
}
