/* The graph core: node bookkeeping, parameters in one buffer, the liveness memory plan. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "core/graph.h"
#include "ops/ops.h"
#include "testlib.h"

/* A test op: y = x * w + 1 elementwise with one scalar parameter, optionally in place. */
static cn_status scale_infer(cn_graph *g, cn_node *n) {
  n->shape = g->nodes[n->inputs[0]].shape;
  return cn_node_add_param(n, "w", cn_shape_make(1, (int64_t[]){1}));
}
static void scale_forward(cn_node *n, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  int64_t count = cn_shape_numel(&out->shape);
  for (int64_t i = 0; i < count; i++) out->data[i] = in[0].data[i] * n->params[0].data[0] + 1;
}
static const cn_op scale_op = {
    .type = "Scale", .infer = scale_infer, .forward = scale_forward, .inplace = 1};
static const cn_op scale_copy_op = {
    .type = "ScaleCopy", .infer = scale_infer, .forward = scale_forward};

static cn_status sum_infer(cn_graph *g, cn_node *n) {
  n->shape = g->nodes[n->inputs[0]].shape;
  return CN_OK;
}
static void sum_forward(cn_node *n, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  int64_t count = cn_shape_numel(&out->shape);
  for (int64_t i = 0; i < count; i++) out->data[i] = in[0].data[i] + in[1].data[i];
}
static const cn_op sum_op = {.type = "Sum", .infer = sum_infer, .forward = sum_forward};

static cn_graph *chain(const cn_op *op, int length, int64_t size) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {cn_shape_make(1, &size)};
  int prev = -1;
  cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &prev);
  for (int i = 0; i < length; i++) {
    char name[32];
    snprintf(name, sizeof name, "s%d", i);
    cn_graph_add(g, op, name, &prev, 1, NULL, &prev);
  }
  cn_graph_alloc_params(g);
  for (int i = 1; i <= length; i++) g->nodes[i].params[0].data[0] = 2;
  return g;
}

static void test_chain(const cn_op *op, size_t max_arena_vectors) {
  enum { N = 1000 };
  cn_graph *g = chain(op, 10, N);
  float x[2 * N], y[2 * N];
  for (int i = 0; i < 2 * N; i++) x[i] = (float)i;
  const float *ins[] = {x};
  float *outs[] = {y};
  CHECK_OK(cn_graph_run(g, 2, ins, outs));
  float expect0 = 0;
  for (int i = 0; i < 10; i++) expect0 = expect0 * 2 + 1;
  CHECK_NEAR(y[0], expect0, 1e-3);
  CHECK_NEAR(y[1], 1024 + expect0, 1e-3);
  /* A chain needs at most two live buffers (one when computed in place). */
  CHECK(cn_graph_plan_bytes(g) <= max_arena_vectors * 2 * N * sizeof(float) + 4096);
  cn_graph_free(g);
}

static void test_diamond_keeps_live_inputs(void) {
  cn_graph *g = cn_graph_new();
  int64_t size = 4;
  cn_input_attrs in = {cn_shape_make(1, &size)};
  int x, a, b, s;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, &x));
  CHECK_OK(cn_graph_add(g, &scale_op, "a", &x, 1, NULL, &a));
  CHECK_OK(cn_graph_add(g, &scale_op, "b", &x, 1, NULL, &b));
  CHECK_OK(cn_graph_add(g, &sum_op, "s", (int[]){a, b}, 2, NULL, &s));
  CHECK_OK(cn_graph_alloc_params(g));
  g->nodes[a].params[0].data[0] = 2;
  g->nodes[b].params[0].data[0] = 3;
  float xv[4] = {1, 2, 3, 4}, y[4];
  const float *ins[] = {xv};
  float *outs[] = {y};
  CHECK_OK(cn_graph_run(g, 1, ins, outs));
  for (int i = 0; i < 4; i++) CHECK_NEAR(y[i], xv[i] * 5 + 2, 1e-6);
  cn_graph_free(g);
}

static void test_errors(void) {
  cn_graph *g = cn_graph_new();
  int64_t size = 4;
  cn_input_attrs in = {cn_shape_make(1, &size)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, &x));
  CHECK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, NULL) == CN_ERR_FORMAT);
  CHECK(strstr(cn_last_error(), "duplicate") != NULL);
  int bad = 7;
  CHECK(cn_graph_add(g, &scale_op, "y", &bad, 1, NULL, NULL) == CN_ERR_ARG);
  cn_graph_free(g);
}

int main(void) {
  test_chain(&scale_op, 1);
  test_chain(&scale_copy_op, 2);
  test_diamond_keeps_live_inputs();
  test_errors();
  return cn_test_finish();
}
