/* Shared layers (one layer called on several tensors, one set of weights): the graph's sharing
 * nodes, their parameter storage, copies, folding, initialisation, and the trainer's gradients,
 * which sum over the calls (finite differences and an unshared twin graph). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "core/rng.h"
#include "model/fuse.h"
#include "model/model.h"
#include "model/init.h"
#include "ops/ops.h"
#include "testlib.h"
#include "train/surgery.h"
#include "train/trainer.h"

enum { BATCH = 3, IN = 4, UNITS = 3 };

static void fill(float *x, size_t n, uint64_t seed) {
  cn_rng r = cn_rng_make(seed);
  for (size_t i = 0; i < n; i++) x[i] = 2 * cn_rng_float(&r) - 1;
}

/* Input(4) -> tanh -> "t"; Dense "shared" on the input and on t (shared: one weight set; not
 * shared: a twin "twin" with the same values); output = first call - second call. */
static cn_graph *siamese(int shared) {
  cn_graph *g = cn_graph_new();
  int x = 0, t = 0, d1 = 0, d2 = 0, out = 0;
  cn_input_attrs in = {{1, {IN}}};
  cn_activation tanh_act = cn_act_simple(CN_ACT_TANH);
  cn_dense_attrs dense = {.units = UNITS, .use_bias = 1, .act = cn_act_simple(CN_ACT_TANH)};
  cn_merge_attrs sub = {CN_MERGE_SUBTRACT};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_activation, "t", &x, 1, &tanh_act, &t));
  CHECK_OK(cn_graph_add(g, &cn_op_dense, "shared", &x, 1, &dense, &d1));
  if (shared)
    CHECK_OK(cn_graph_add_shared(g, d1, "shared/call1", &t, 1, NULL, &d2));
  else
    CHECK_OK(cn_graph_add(g, &cn_op_dense, "twin", &t, 1, &dense, &d2));
  int ab[2] = {d1, d2};
  CHECK_OK(cn_graph_add(g, &cn_op_merge, "diff", ab, 2, &sub, &out));
  CHECK_OK(cn_graph_alloc_params(g));
  cn_node *owner = &g->nodes[d1];
  for (int k = 0; k < owner->n_params; k++) {
    fill(owner->params[k].data, (size_t)cn_shape_numel(&owner->params[k].shape), 10 + k);
    if (!shared)
      memcpy(g->nodes[d2].params[k].data, owner->params[k].data,
             (size_t)cn_shape_numel(&owner->params[k].shape) * sizeof(float));
  }
  return g;
}

static void test_storage(void) {
  cn_graph *g = siamese(1), *twin = siamese(0);
  int owner = cn_graph_find(g, "shared"), call = cn_graph_find(g, "shared/call1");
  CHECK(owner >= 0 && call >= 0);
  CHECK(g->nodes[call].shares == owner && g->nodes[owner].shares == -1);
  CHECK(g->nodes[call].params[0].data == g->nodes[owner].params[0].data);
  CHECK(g->nodes[call].params[1].data == g->nodes[owner].params[1].data);
  CHECK(g->n_param_floats * 2 == twin->n_param_floats); /* stored once */
  CHECK(cn_graph_node_shared(g, owner) && cn_graph_node_shared(g, call));
  CHECK(!cn_graph_node_shared(g, 1));
  CHECK(cn_graph_share_count(g, owner) == 1);
  /* the same forward as two layers with equal weights */
  float x[BATCH * IN], y1[BATCH * UNITS], y2[BATCH * UNITS];
  fill(x, BATCH * IN, 3);
  const float *in = x;
  float *o1 = y1, *o2 = y2;
  CHECK_OK(cn_graph_run(g, BATCH, &in, &o1));
  CHECK_OK(cn_graph_run(twin, BATCH, &in, &o2));
  CHECK(cn_test_max_abs_diff(y1, y2, BATCH * UNITS) == 0);
  /* a clone keeps the aliasing */
  cn_graph *copy = NULL;
  CHECK_OK(cn_graph_clone(g, &copy));
  if (copy) {
    CHECK(copy->nodes[call].shares == owner);
    CHECK(copy->nodes[call].params[0].data == copy->nodes[owner].params[0].data);
    CHECK(copy->n_param_floats == g->n_param_floats);
    CHECK(copy->nodes[owner].params[0].data != g->nodes[owner].params[0].data);
  }
  cn_graph_free(copy);
  cn_graph_free(twin);
  cn_graph_free(g);
}

static void test_refusals(void) {
  cn_graph *g = cn_graph_new();
  int x = 0, y = 0, d = 0, at = 0;
  cn_input_attrs a4 = {{1, {4}}}, a5 = {{1, {5}}};
  cn_dense_attrs dense = {.units = 2, .use_bias = 1, .act = cn_act_linear()};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &a4, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_input, "y", NULL, 0, &a5, &y));
  CHECK_OK(cn_graph_add(g, &cn_op_dense, "dense", &x, 1, &dense, &d));
  int before = g->n_nodes;
  CHECK(cn_graph_add_shared(g, d, "dense/call1", &y, 1, NULL, &at) == CN_ERR_SHAPE);
  const char *want = "dense: called on an input of shape (5,) but its weights fit (4,)";
  CHECK(strcmp(cn_last_error(), want) == 0);
  if (strcmp(cn_last_error(), want) != 0) fprintf(stderr, "got: %s\n", cn_last_error());
  CHECK(g->n_nodes == before); /* the failed call left nothing behind */
  CHECK(cn_graph_add_shared(g, x, "x/call1", NULL, 0, NULL, &at) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "x: an input layer") != NULL);
  CHECK(cn_graph_add_shared(g, 99, "nope", &x, 1, NULL, &at) == CN_ERR_ARG);
  /* calling a later call again shares with the owner */
  CHECK_OK(cn_graph_add_shared(g, d, "dense/call1", &x, 1, NULL, &at));
  CHECK_OK(cn_graph_add_shared(g, at, "dense/call2", &x, 1, NULL, &at));
  CHECK(g->nodes[at].shares == d);
  cn_graph_free(g);
}

/* A shared convolution followed by BatchNormalization is not folded (it would change the other
 * call's weights); the activation after a shared convolution still folds into that call. */
static void test_no_fold(void) {
  cn_graph *g = cn_graph_new();
  int x = 0, c = 0, c2 = 0, b = 0, r = 0;
  cn_input_attrs in = {{3, {4, 4, 2}}};
  cn_conv2d_attrs conv = {.filters = 2,
                          .kh = 1,
                          .kw = 1,
                          .sh = 1,
                          .sw = 1,
                          .dh = 1,
                          .dw = 1,
                          .groups = 1,
                          .use_bias = 1,
                          .padding = CN_PAD_VALID,
                          .act = cn_act_linear()};
  cn_batchnorm_attrs bn = {.epsilon = 1e-3f, .center = 1, .scale = 1, .axis = -1};
  cn_activation relu = cn_act_relu();
  cn_merge_attrs add = {CN_MERGE_ADD};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_conv2d, "conv", &x, 1, &conv, &c));
  CHECK_OK(cn_graph_add(g, &cn_op_batchnorm, "bn", &c, 1, &bn, &b));
  CHECK_OK(cn_graph_add_shared(g, c, "conv/call1", &x, 1, NULL, &c2));
  CHECK_OK(cn_graph_add(g, &cn_op_activation, "relu", &c2, 1, &relu, &r));
  int ab[2] = {b, r};
  CHECK_OK(cn_graph_add(g, &cn_op_merge, "sum", ab, 2, &add, &r));
  CHECK_OK(cn_graph_alloc_params(g));
  CHECK_OK(cn_graph_init_params(g, 5));
  for (int k = 0; k < 4; k++) g->nodes[b].params[k].data[0] = 0.5f + (float)k;
  size_t floats = g->n_param_floats;
  CHECK_OK(cn_graph_fold_batchnorm(g));
  CHECK(cn_graph_find(g, "bn") >= 0);
  CHECK(g->n_param_floats == floats);
  CHECK_OK(cn_graph_fold_activations(g));
  int call = cn_graph_find(g, "conv/call1");
  CHECK(cn_graph_find(g, "relu") < 0 && call >= 0);
  CHECK(call >= 0 && g->nodes[call].shares == cn_graph_find(g, "conv"));
  CHECK(call >= 0 && g->nodes[call].params[0].data == g->nodes[c].params[0].data);
  cn_graph_free(g);
}

/* Initialisation draws a shared layer's weights once, as for the same layer called once. */
static void test_init_once(void) {
  cn_graph *g = siamese(1), *twin = siamese(0);
  CHECK_OK(cn_graph_init_params(g, 42));
  CHECK_OK(cn_graph_init_params(twin, 42));
  int o = cn_graph_find(g, "shared");
  const cn_param *a = &g->nodes[o].params[0], *b = &twin->nodes[o].params[0];
  CHECK(memcmp(a->data, b->data, (size_t)cn_shape_numel(&a->shape) * sizeof(float)) == 0);
  cn_graph_free(twin);
  cn_graph_free(g);
}

/* L = sum(output * r) in double. */
static double objective(cn_trainer *t, const float *input, const float *r) {
  const float *out;
  CHECK_OK(cn_trainer_forward(t, BATCH, input, 1, 7, &out));
  double sum = 0;
  for (int i = 0; i < BATCH * UNITS; i++) sum += (double)out[i] * r[i];
  return sum;
}

static cn_trainer *trained(cn_graph *g, const float *input, const float *r) {
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &(cn_trainer_options){.max_batch = BATCH}, &t));
  if (!t) return NULL;
  objective(t, input, r);
  CHECK_OK(cn_trainer_backward(t, r));
  return t;
}

/* The shared weights' gradient is the sum of the two calls' gradients: the twin graph's two
 * layers' gradients added, and central differences of L in the shared weights. */
static void test_gradient_sum(void) {
  cn_graph *g = siamese(1), *twin = siamese(0);
  float input[BATCH * IN], r[BATCH * UNITS];
  fill(input, BATCH * IN, 1);
  fill(r, BATCH * UNITS, 2);
  cn_trainer *t = trained(g, input, r), *tt = trained(twin, input, r);
  if (!t || !tt) return;
  cn_graph *tg = cn_trainer_graph(t), *ttg = cn_trainer_graph(tt);
  int o = cn_graph_find(tg, "shared"), w = cn_graph_find(ttg, "twin");
  float *grads = cn_trainer_grads(t), *twin_grads = cn_trainer_grads(tt);
  double worst = 0;
  for (int k = 0; k < 2; k++) {
    const cn_param *p = &tg->nodes[o].params[k];
    const float *mine = grads + (p->data - tg->params);
    const float *g1 = twin_grads + (ttg->nodes[o].params[k].data - ttg->params);
    const float *g2 = twin_grads + (ttg->nodes[w].params[k].data - ttg->params);
    for (int64_t j = 0; j < cn_shape_numel(&p->shape); j++)
      worst = fmax(worst, fabs(mine[j] - (g1[j] + g2[j])));
  }
  CHECK(worst < 1e-6);
  /* the optimizer sees the weights once: the owner's kernel and bias */
  cn_param_range ranges[8];
  int nr = cn_trainer_ranges(t, ranges, 8);
  size_t count = 0;
  for (int q = 0; q < nr && q < 8; q++) count += ranges[q].count;
  CHECK(count == (size_t)(IN * UNITS + UNITS));
  size_t n = cn_trainer_param_floats(t);
  float *params = cn_trainer_params(t), *analytic = malloc(n * sizeof *analytic);
  memcpy(analytic, grads, n * sizeof *analytic);
  int bad = 0, checked = 0;
  for (int q = 0; q < nr && q < 8; q++)
    for (size_t j = ranges[q].offset; j < ranges[q].offset + ranges[q].count; j++) {
      float keep = params[j];
      params[j] = keep + 1e-2f;
      cn_trainer_weights_changed(t);
      double plus = objective(t, input, r);
      params[j] = keep - 1e-2f;
      cn_trainer_weights_changed(t);
      double minus = objective(t, input, r);
      params[j] = keep;
      double numeric = (plus - minus) / 2e-2;
      checked++;
      if (fabs(numeric - analytic[j]) > 1e-3 * fmax(1, fabs(numeric)) && bad++ < 5)
        fprintf(stderr, "param %zu: %g vs %g\n", j, analytic[j], numeric);
    }
  CHECK(checked == IN * UNITS + UNITS);
  CHECK(bad == 0);
  free(analytic);
  cn_trainer_free(tt);
  cn_trainer_free(t);
  cn_graph_free(twin);
  cn_graph_free(g);
}

/* .cnm keeps the sharing (version 2, weights stored once) and reads it back. */
static void test_cnm_round_trip(void) {
  cn_graph *g = siamese(1);
  cn_model *m = NULL, *back = NULL;
  cn_input_spec spec = {0};
  CHECK_OK(cn_model_wrap_graph(g, "siamese", &spec, &m));
  if (!m) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/siamese.cnm", cn_test_tmpdir());
  CHECK_OK(cn_model_save(m, path));
  CHECK_OK(cn_model_load(path, &back));
  if (back) {
    int o = cn_graph_find(back->graph, "shared"), c = cn_graph_find(back->graph, "shared/call1");
    CHECK(o >= 0 && c >= 0 && back->graph->nodes[c].shares == o);
    CHECK(back->graph->n_param_floats == m->graph->n_param_floats);
    float x[BATCH * IN], y1[BATCH * UNITS], y2[BATCH * UNITS];
    fill(x, BATCH * IN, 4);
    CHECK_OK(cn_model_forward(m, BATCH, x, y1));
    CHECK_OK(cn_model_forward(back, BATCH, x, y2));
    CHECK(cn_test_max_abs_diff(y1, y2, BATCH * UNITS) == 0);
    /* weights only: into the owner */
    memset(back->graph->params, 0, back->graph->n_param_floats * sizeof(float));
    CHECK_OK(cn_model_load_weights(back, path));
    CHECK_OK(cn_model_forward(back, BATCH, x, y2));
    CHECK(cn_test_max_abs_diff(y1, y2, BATCH * UNITS) == 0);
    cn_layer_info info;
    CHECK_OK(cn_model_layer_info(back, (size_t)c, &info));
    CHECK(info.params == 0); /* counted once, at the first call */
    CHECK_OK(cn_model_layer_info(back, (size_t)o, &info));
    CHECK(info.params == IN * UNITS + UNITS);
  }
  cn_model_free(back);
  cn_model_free(m);
}

/* cn_net_call: a siamese model built in C, one weight set, the same outputs as two calls of the
 * layer by hand; failures name the layer. */
static void test_builder(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("siamese", &net));
  if (!net) return;
  cn_sym a = cn_net_input(net, "a", 1, (int64_t[]){IN});
  cn_sym b = cn_net_input(net, "b", 1, (int64_t[]){IN});
  cn_sym ea = cn_net_dense(net, a, &(cn_dense_options){.units = UNITS, .activation = "tanh"});
  cn_sym eb = cn_net_call(net, "dense", &b, 1);
  cn_sym ec = cn_net_call(net, "dense/call1", &a, 1); /* a call of a call: the same layer */
  cn_sym d = cn_net_subtract(net, ea, eb, "diff");
  cn_sym outs[2] = {d, ec};
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, outs, 2, &m));
  cn_net_free(net);
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 3));
  cn_graph *g = m->graph;
  int o = cn_graph_find(g, "dense"), c1 = cn_graph_find(g, "dense/call1");
  int c2 = cn_graph_find(g, "dense/call2");
  CHECK(o >= 0 && c1 >= 0 && c2 >= 0);
  CHECK(c1 >= 0 && g->nodes[c1].shares == o && c2 >= 0 && g->nodes[c2].shares == o);
  CHECK(g->n_param_floats == 16 + 16); /* kernel and bias once, each 64-byte aligned */
  float xa[BATCH * IN], xb[BATCH * IN], y[BATCH * UNITS], z[BATCH * UNITS];
  fill(xa, BATCH * IN, 5);
  fill(xb, BATCH * IN, 6);
  const float *ins[2] = {xa, xb};
  float *ys[2] = {y, z};
  CHECK_OK(cn_model_forward_multi(m, BATCH, ins, ys));
  /* by hand: tanh(x W + b) */
  const float *w = g->nodes[o].params[0].data, *bias = g->nodes[o].params[1].data;
  double worst = 0;
  for (int s = 0; s < BATCH; s++)
    for (int u = 0; u < UNITS; u++) {
      double pa = bias[u], pb = bias[u];
      for (int i = 0; i < IN; i++) {
        pa += (double)xa[s * IN + i] * w[i * UNITS + u];
        pb += (double)xb[s * IN + i] * w[i * UNITS + u];
      }
      worst = fmax(worst, fabs(y[s * UNITS + u] - (tanh(pa) - tanh(pb))));
      worst = fmax(worst, fabs(z[s * UNITS + u] - tanh(pa)));
    }
  CHECK(worst < 1e-5);
  cn_model_free(m);

  /* refusals, each naming the layer, stick until cn_net_build */
  struct {
    const char *layer;
    int input; /* 0: a (4), 1: c (5), 2: the input layer itself is called */
    const char *message;
  } bad[] = {
      {"dense", 1, "dense: called on an input of shape (5,) but its weights fit (4,)"},
      {"later", 0, "later: no such layer to call again (make it before calling it)"},
      {"a", 0, "a: an input layer cannot be called again"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK_OK(cn_net_new("bad", &net));
    if (!net) return;
    cn_sym x = cn_net_input(net, "a", 1, (int64_t[]){IN});
    cn_sym y5 = cn_net_input(net, "c", 1, (int64_t[]){IN + 1});
    cn_net_dense(net, x, &(cn_dense_options){.units = UNITS});
    cn_sym s = cn_net_call(net, bad[i].layer, bad[i].input == 1 ? &y5 : &x, 1);
    CHECK(s.node < 0);
    CHECK(cn_net_status(net) != CN_OK);
    CHECK(strcmp(cn_last_error(), bad[i].message) == 0);
    if (strcmp(cn_last_error(), bad[i].message) != 0) fprintf(stderr, "got: %s\n", cn_last_error());
    cn_net_dense(net, x, &(cn_dense_options){.units = UNITS, .name = "later"});
    CHECK(cn_net_build(net, &s, 1, &m) != CN_OK && m == NULL);
    CHECK(strcmp(cn_last_error(), bad[i].message) == 0);
    cn_net_free(net);
  }
}

/* Splitting a graph for training (frozen prefix, trained suffix) never separates the calls of
 * a shared layer. */
static void test_no_split(void) {
  cn_graph *g = cn_graph_new();
  int x = 0, d = 0, c = 0;
  cn_input_attrs in = {{1, {IN}}};
  cn_dense_attrs dense = {.units = IN, .use_bias = 1, .act = cn_act_relu()};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_dense, "d", &x, 1, &dense, &d));
  CHECK_OK(cn_graph_add_shared(g, d, "d/call1", &d, 1, NULL, &c));
  CHECK(!cn_graph_can_split(g, d));
  cn_graph_free(g);
}

static long file_size(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

/* ONNX export writes a shared layer's weights once (both calls read the same initializers: the
 * file is smaller than the unshared twin's, though its names are longer) and computes what the
 * model does. */
static void test_onnx_export(void) {
  cn_model *m = NULL, *twin = NULL, *back = NULL;
  cn_input_spec spec = {0};
  CHECK_OK(cn_model_wrap_graph(siamese(1), "shared", &spec, &m));
  CHECK_OK(cn_model_wrap_graph(siamese(0), "twin", &spec, &twin));
  if (!m || !twin) return;
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s/shared.onnx", cn_test_tmpdir());
  snprintf(b, sizeof b, "%s/twin.onnx", cn_test_tmpdir());
  CHECK_OK(cn_model_save_onnx(m, a));
  CHECK_OK(cn_model_save_onnx(twin, b));
  /* (tests/oracle/test_shared_layers_keras.py counts the initializers) */
  CHECK(file_size(a) > 0 && file_size(a) < file_size(b));
  CHECK_OK(cn_model_load(a, &back));
  if (back) {
    float x[BATCH * IN], y1[BATCH * UNITS], y2[BATCH * UNITS];
    fill(x, BATCH * IN, 8);
    CHECK_OK(cn_model_forward(m, BATCH, x, y1));
    CHECK_OK(cn_model_forward(back, BATCH, x, y2));
    CHECK(cn_test_max_abs_diff(y1, y2, BATCH * UNITS) < 1e-6);
  }
  cn_model_free(back);
  cn_model_free(twin);
  cn_model_free(m);
}

int main(void) {
  test_onnx_export();
  test_no_split();
  test_builder();
  test_cnm_round_trip();
  test_storage();
  test_refusals();
  test_no_fold();
  test_init_once();
  test_gradient_sum();
  return cn_test_finish();
}
