/* The ONNX-semantics operators (src/ops/ops_onnx.h) on small cases: hand values (several checked
 * against onnxruntime), naive references written here for broadcasting, transposes, pads, GEMMs,
 * transposed convolutions and pooling, and the validation errors of infer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/graph.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

static unsigned rng_state = 777;
static float rnd(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = rnd();
}

#define S cn_test_shape

/* Positional Resize attributes of the fast paths; the general form's fields stay zero. */
#define RS(m, c, n, sh, sw, oh, ow)                                                                \
  { .mode = m, .coord = c, .nearest = n, .scale_h = sh, .scale_w = sw, .out_h = oh, .out_w = ow }

/* Inputs in0..in{n-1} of the given per-sample shapes feeding one node "layer" with random
 * parameters. NULL (after checking the status) when infer fails. */
static cn_graph *build(const cn_op *op, const void *attrs, const cn_shape *in_shapes, int n,
                       cn_status *status) {
  cn_graph *g = cn_graph_new();
  int idx[8];
  for (int i = 0; i < n; i++) {
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    cn_input_attrs in = {in_shapes[i]};
    cn_graph_add(g, &cn_op_input, name, NULL, 0, &in, &idx[i]);
  }
  *status = cn_graph_add(g, op, "layer", idx, n, attrs, NULL);
  if (*status != CN_OK) {
    cn_graph_free(g);
    return NULL;
  }
  cn_graph_alloc_params(g);
  cn_node *node = &g->nodes[g->n_nodes - 1];
  for (int p = 0; p < node->n_params; p++)
    fill(node->params[p].data, (size_t)cn_shape_numel(&node->params[p].shape));
  return g;
}

static cn_node *layer(cn_graph *g) {
  return &g->nodes[g->n_nodes - 1];
}

static size_t sample_numel(const cn_shape *s) {
  return (size_t)cn_shape_numel(s);
}

/* Runs g on batch samples of its inputs; returns the output (malloc'd). */
static float *run(cn_graph *g, int batch, const float *const *inputs) {
  float *y = malloc(batch * sample_numel(&layer(g)->shape) * sizeof(float) + 4);
  CHECK_OK(cn_graph_run(g, batch, inputs, (float *[]){y}));
  return y;
}

/* Expects infer to fail with status want and a message naming the layer. */
static void expect_fail(const cn_op *op, const void *attrs, const cn_shape *in_shapes, int n,
                        cn_status want) {
  cn_status st;
  cn_graph *g = build(op, attrs, in_shapes, n, &st);
  CHECK(st == want);
  CHECK(strstr(cn_last_error(), "layer") != NULL);
  if (st != want) fprintf(stderr, "  got %s: %s\n", cn_status_name(st), cn_last_error());
  cn_graph_free(g);
}

#define check_close(...) check_close_at(__LINE__, __VA_ARGS__)
static void check_close_at(int line, const float *got, const float *want, size_t n, double tol) {
  double d = cn_test_max_abs_diff(got, want, n);
  CHECK(d <= tol);
  if (d > tol) {
    fprintf(stderr, "  (line %d)\n", line);
    for (size_t i = 0; i < n; i++)
      if (fabs(got[i] - want[i]) > tol) {
        fprintf(stderr, "  first difference at %zu: got %.7g want %.7g\n", i, got[i], want[i]);
        break;
      }
  }
}

/* Builds op on one input of per-sample shape `in` (infer must succeed) and runs it on `batch`
 * samples of x: the output (malloc'd), or `fallback_n` zeros when infer failed. */
static float *run_single(const cn_op *op, const void *attrs, cn_shape in, int batch, const float *x,
                         size_t fallback_n) {
  cn_status st;
  cn_graph *g = build(op, attrs, &in, 1, &st);
  CHECK_OK(st);
  if (!g) return calloc(fallback_n, sizeof(float));
  float *y = run(g, batch, (const float *[]){x});
  cn_graph_free(g);
  return y;
}

/* run_single, then compares the n outputs with want. */
#define check_single(op, attrs, in, batch, x, want, n, tol)                                        \
  check_single_at(__LINE__, op, attrs, in, batch, x, want, n, tol)
static void check_single_at(int line, const cn_op *op, const void *attrs, cn_shape in, int batch,
                            const float *x, const float *want, size_t n, double tol) {
  float *y = run_single(op, attrs, in, batch, x, n);
  check_close_at(line, y, want, n, tol);
  free(y);
}

/* ---- elementwise with broadcasting ---------------------------------------------------------- */

/* Offset of output multi-index `idx` in an operand of full shape s right-aligned to `rank`. */
static size_t bcast_offset(const cn_shape *s, const int64_t *idx, int rank) {
  size_t off = 0;
  int lead = rank - s->rank;
  for (int i = lead; i < rank; i++) {
    int64_t d = s->dim[i - lead];
    off = off * (size_t)d + (size_t)(d == 1 ? 0 : idx[i]);
  }
  return off;
}

static float ref_op(cn_binary_kind k, float a, float b) {
  switch (k) {
  case CN_BIN_SUB:
    return a - b;
  case CN_BIN_MUL:
    return a * b;
  case CN_BIN_DIV:
    return a / b;
  case CN_BIN_MAX:
    return a > b ? a : b;
  case CN_BIN_MIN:
    return a < b ? a : b;
  case CN_BIN_POW:
    return powf(a, b);
  default:
    return a + b;
  }
}

/* operands[i] has full shape shapes[i]; out has full shape `out`. */
static void ref_binary(cn_binary_kind k, int n, const float *const *operands,
                       const cn_shape *shapes, const cn_shape *out, float *y) {
  int64_t idx[CN_MAX_RANK] = {0};
  size_t total = (size_t)cn_shape_numel(out);
  for (size_t e = 0; e < total; e++) {
    size_t rem = e;
    for (int i = out->rank - 1; i >= 0; i--) {
      idx[i] = (int64_t)(rem % (size_t)out->dim[i]);
      rem /= (size_t)out->dim[i];
    }
    float acc = operands[0][bcast_offset(&shapes[0], idx, out->rank)];
    for (int j = 1; j < n; j++)
      acc = ref_op(k, acc, operands[j][bcast_offset(&shapes[j], idx, out->rank)]);
    y[e] = k == CN_BIN_MEAN ? acc / (float)n : acc;
  }
}

static cn_shape with_batch(int batch, cn_shape s) {
  return cn_shape_batch(batch, &s);
}

/* Activations of the given per-sample shapes and an optional constant; compares with ref. */
static void check_binary(cn_binary_attrs a, const cn_shape *ins, int n_in, cn_shape want_sample,
                         int batch) {
  cn_status st;
  cn_graph *g = build(&cn_op_binary, &a, ins, n_in, &st);
  CHECK_OK(st);
  if (!g) return;
  CHECK(cn_shape_equal(&layer(g)->shape, &want_sample));
  const float *xs[8], *ops[9];
  cn_shape full[9];
  float *bufs[8];
  int k = 0;
  if (a.const_operand == CN_CONST_FIRST) full[k] = a.b_shape, ops[k++] = layer(g)->params[0].data;
  for (int i = 0; i < n_in; i++) {
    size_t cnt = batch * sample_numel(&ins[i]);
    bufs[i] = malloc(cnt * sizeof(float));
    fill(bufs[i], cnt);
    if (a.kind == CN_BIN_POW)
      for (size_t j = 0; j < cnt; j++) bufs[i][j] = fabsf(bufs[i][j]) + 0.1f;
    xs[i] = bufs[i];
    full[k] = with_batch(batch, ins[i]);
    ops[k++] = bufs[i];
  }
  if (a.const_operand == CN_CONST_LAST) full[k] = a.b_shape, ops[k++] = layer(g)->params[0].data;
  cn_shape out = with_batch(batch, want_sample);
  size_t total = (size_t)cn_shape_numel(&out);
  float *want = malloc(total * sizeof(float));
  ref_binary(a.kind, k, ops, full, &out, want);
  float *y = run(g, batch, xs);
  check_close(y, want, total, 1e-5);
  free(y);
  free(want);
  for (int i = 0; i < n_in; i++) free(bufs[i]);
  cn_graph_free(g);
}

static void test_binary(void) {
  /* Hand values: (2) - constant (1) per sample; then 1 / x with the constant first. */
  cn_binary_attrs sub = {CN_BIN_SUB, CN_CONST_LAST, S(1, 1)};
  cn_status st;
  cn_graph *g = build(&cn_op_binary, &sub, (cn_shape[]){S(1, 2)}, 1, &st);
  CHECK_OK(st);
  layer(g)->params[0].data[0] = 0.5f;
  float *y = run(g, 2, (const float *[]){(float[]){1, 2, 3, 4}});
  CHECK(y[0] == 0.5f && y[1] == 1.5f && y[2] == 2.5f && y[3] == 3.5f);
  free(y);
  cn_graph_free(g);
  cn_binary_attrs rdiv = {CN_BIN_DIV, CN_CONST_FIRST, S(0)};
  g = build(&cn_op_binary, &rdiv, (cn_shape[]){S(1, 2)}, 1, &st);
  layer(g)->params[0].data[0] = 1.0f;
  y = run(g, 1, (const float *[]){(float[]){2, 4}});
  CHECK(y[0] == 0.5f && y[1] == 0.25f);
  free(y);
  cn_graph_free(g);

  /* Two activations broadcasting both ways: (2,1,4) and (1,3,1) -> (2,3,4). */
  cn_binary_attrs add = {CN_BIN_ADD, CN_CONST_NONE, {0}};
  check_binary(add, (cn_shape[]){S(3, 2, 1, 4), S(3, 1, 3, 1)}, 2, S(3, 2, 3, 4), 2);
  cn_binary_attrs a = {CN_BIN_SUB, CN_CONST_NONE, {0}};
  check_binary(a, (cn_shape[]){S(3, 2, 3, 4), S(3, 2, 1, 4)}, 2, S(3, 2, 3, 4), 3);
  /* Constants: per channel (4), (3,1) first, full rank with batch dim 1, scalar. */
  a = (cn_binary_attrs){CN_BIN_DIV, CN_CONST_LAST, S(1, 4)};
  check_binary(a, (cn_shape[]){S(3, 2, 3, 4)}, 1, S(3, 2, 3, 4), 2);
  a = (cn_binary_attrs){CN_BIN_SUB, CN_CONST_FIRST, S(2, 3, 1)};
  check_binary(a, (cn_shape[]){S(3, 2, 3, 4)}, 1, S(3, 2, 3, 4), 2);
  a = (cn_binary_attrs){CN_BIN_MUL, CN_CONST_LAST, S(4, 1, 2, 1, 4)};
  check_binary(a, (cn_shape[]){S(3, 2, 3, 4)}, 1, S(3, 2, 3, 4), 2);
  a = (cn_binary_attrs){CN_BIN_POW, CN_CONST_LAST, S(0)};
  check_binary(a, (cn_shape[]){S(2, 5, 3)}, 1, S(2, 5, 3), 2);
  /* The constant enlarges the activation: (2,1,4) op (3,1) -> (2,3,4). */
  a = (cn_binary_attrs){CN_BIN_MAX, CN_CONST_LAST, S(2, 3, 1)};
  check_binary(a, (cn_shape[]){S(3, 2, 1, 4)}, 1, S(3, 2, 3, 4), 2);
  /* Sum / Mean / Min of three with broadcasting, and of one. */
  a = (cn_binary_attrs){CN_BIN_ADD, CN_CONST_NONE, {0}};
  check_binary(a, (cn_shape[]){S(2, 3, 1), S(2, 1, 5), S(2, 3, 5)}, 3, S(2, 3, 5), 2);
  a = (cn_binary_attrs){CN_BIN_MEAN, CN_CONST_LAST, S(1, 5)};
  check_binary(a, (cn_shape[]){S(2, 3, 1), S(2, 1, 5)}, 2, S(2, 3, 5), 2);
  a = (cn_binary_attrs){CN_BIN_MIN, CN_CONST_NONE, {0}};
  check_binary(a, (cn_shape[]){S(2, 3, 1), S(2, 1, 5), S(2, 3, 5)}, 3, S(2, 3, 5), 1);
  a = (cn_binary_attrs){CN_BIN_MAX, CN_CONST_NONE, {0}};
  check_binary(a, (cn_shape[]){S(2, 3, 1)}, 1, S(2, 3, 1), 2);
  /* Large enough for the parallel path. */
  a = (cn_binary_attrs){CN_BIN_MUL, CN_CONST_LAST, S(1, 64)};
  check_binary(a, (cn_shape[]){S(3, 32, 32, 64)}, 1, S(3, 32, 32, 64), 2);

  /* Errors. */
  cn_binary_attrs bad = {CN_BIN_ADD, CN_CONST_LAST, S(3, 2, 1, 4)}; /* varies along the batch */
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(2, 3, 4)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_binary_attrs){CN_BIN_ADD, CN_CONST_LAST, S(1, 3)};
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(2, 3, 4)}, 1, CN_ERR_SHAPE);
  bad = (cn_binary_attrs){CN_BIN_ADD, CN_CONST_LAST, S(4, 1, 1, 1, 4)}; /* rank above input */
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(2, 3, 4)}, 1, CN_ERR_SHAPE);
  bad = (cn_binary_attrs){CN_BIN_SUB, CN_CONST_NONE, {0}};
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(1, 3), S(1, 3), S(1, 3)}, 3, CN_ERR_SHAPE);
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(2, 1, 3), S(1, 3)}, 2, CN_ERR_SHAPE);
  bad = (cn_binary_attrs){CN_BIN_COUNT, CN_CONST_NONE, {0}};
  expect_fail(&cn_op_binary, &bad, (cn_shape[]){S(1, 3), S(1, 3)}, 2, CN_ERR_UNSUPPORTED);
}

static void test_prelu(void) {
  cn_prelu_attrs a = {S(1, 3)};
  cn_status st;
  cn_graph *g = build(&cn_op_prelu, &a, (cn_shape[]){S(2, 1, 3)}, 1, &st);
  CHECK_OK(st);
  float *slope = layer(g)->params[0].data;
  slope[0] = 0.1f, slope[1] = 0.2f, slope[2] = 0.3f;
  float *y = run(g, 4, (const float *[]){(float[]){-1, -1, -1, 2, -2, 3, 1, 2, 3, -10, 0, -10}});
  float want[] = {-0.1f, -0.2f, -0.3f, 2, -0.4f, 3, 1, 2, 3, -1, 0, -3};
  check_close(y, want, 12, 1e-6);
  free(y);
  cn_graph_free(g);
  a.slope_shape = S(3, 1, 1, 3);
  g = build(&cn_op_prelu, &a, (cn_shape[]){S(2, 2, 3)}, 1, &st);
  CHECK_OK(st);
  cn_graph_free(g);
  a.slope_shape = S(1, 2);
  expect_fail(&cn_op_prelu, &a, (cn_shape[]){S(2, 2, 3)}, 1, CN_ERR_SHAPE);
  a.slope_shape = S(2, 2, 3); /* would enlarge the input */
  expect_fail(&cn_op_prelu, &a, (cn_shape[]){S(2, 1, 3)}, 1, CN_ERR_SHAPE);
}

/* ---- unary, softmax, LRN -------------------------------------------------------------------- */

static float *run_unary(cn_unary_attrs a, const float *x, int n) {
  return run_single(&cn_op_unary, &a, S(1, n), 1, x, (size_t)n);
}

static void test_unary(void) {
  const float x[] = {-4, -1, -0.5f, 0, 0.5f, 1, 4};
  cn_unary_attrs clip = {.kind = CN_UN_CLIP, .lo = -1, .hi = 0.5f};
  float *y = run_unary(clip, x, 7);
  check_close(y, (float[]){-1, -1, -0.5f, 0, 0.5f, 0.5f, 0.5f}, 7, 0);
  free(y);
  clip.lo = -INFINITY; /* Clip without min */
  y = run_unary(clip, x, 7);
  check_close(y, (float[]){-4, -1, -0.5f, 0, 0.5f, 0.5f, 0.5f}, 7, 0);
  free(y);
  cn_unary_attrs hs = {.kind = CN_UN_HARD_SIGMOID, .alpha = 0.2f, .beta = 0.5f};
  y = run_unary(hs, x, 7);
  check_close(y, (float[]){0, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 1}, 7, 1e-6);
  free(y);
  cn_unary_attrs hw = {.kind = CN_UN_HARD_SWISH};
  y = run_unary(hw, x, 7);
  float want[7];
  for (int i = 0; i < 7; i++) want[i] = x[i] * fmaxf(0, fminf(1, x[i] / 6 + 0.5f));
  check_close(y, want, 7, 1e-6);
  CHECK(y[0] == 0 && fabsf(y[1] + 1.0f / 3) < 1e-6f && y[6] == 4);
  free(y);
  cn_unary_attrs elu = {.kind = CN_UN_ELU, .alpha = 2};
  y = run_unary(elu, x, 7);
  for (int i = 0; i < 7; i++) want[i] = x[i] > 0 ? x[i] : 2 * (expf(x[i]) - 1);
  check_close(y, want, 7, 1e-6);
  free(y);
  cn_unary_attrs lr = {.kind = CN_UN_LEAKY_RELU, .alpha = 0.1f};
  y = run_unary(lr, x, 7);
  check_close(y, (float[]){-0.4f, -0.1f, -0.05f, 0, 0.5f, 1, 4}, 7, 1e-7);
  free(y);
  cn_unary_attrs sp = {.kind = CN_UN_SOFTPLUS};
  y = run_unary(sp, x, 7);
  for (int i = 0; i < 7; i++) want[i] = logf(1 + expf(x[i]));
  check_close(y, want, 7, 1e-6);
  free(y);
  cn_unary_attrs bad = {.kind = CN_UN_COUNT};
  expect_fail(&cn_op_unary, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_unary_attrs){.kind = CN_UN_CLIP, .lo = NAN, .hi = 1};
  expect_fail(&cn_op_unary, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_FORMAT);
}

/* Softmax over `n` values `inner` apart. */
static void ref_softmax(const float *x, float *y, int n, int inner, int log_mode) {
  double m = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) m = fmax(m, x[i * inner]);
  for (int i = 0; i < n; i++) s += exp(x[i * inner] - m);
  for (int i = 0; i < n; i++)
    y[i * inner] = (float)(log_mode ? x[i * inner] - m - log(s) : exp(x[i * inner] - m) / s);
}

static void test_softmax(void) {
  enum { B = 2, H = 3, W = 4, C = 5, N = B * H * W * C };
  float x[N], want[N];
  fill(x, N);
  for (int log_mode = 0; log_mode < 2; log_mode++) {
    /* One axis (opset 13): axis 2 (W) of (B, H, W, C). */
    cn_softmax_attrs a = {.axis = 2, .log = log_mode};
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int c = 0; c < C; c++) {
          int base = ((b * H + h) * W) * C + c;
          ref_softmax(x + base, want + base, W, C, log_mode);
        }
    check_single(&cn_op_softmax, &a, S(3, H, W, C), B, x, want, N, 1e-6);
    /* Flattened from axis 1 (opset < 13): over all of (H, W, C). */
    a = (cn_softmax_attrs){.axis = 1, .log = log_mode, .flatten = 1};
    for (int b = 0; b < B; b++)
      ref_softmax(x + b * H * W * C, want + b * H * W * C, H * W * C, 1, log_mode);
    check_single(&cn_op_softmax, &a, S(3, H, W, C), B, x, want, N, 1e-6);
    /* Flattened from the last axis equals the one-axis form. */
    a = (cn_softmax_attrs){.axis = -1, .log = log_mode, .flatten = 1};
    cn_status st;
    cn_graph *g = build(&cn_op_softmax, &a, (cn_shape[]){S(3, H, W, C)}, 1, &st);
    for (int r = 0; r < B * H * W; r++) ref_softmax(x + r * C, want + r * C, C, 1, log_mode);
    float *y = run(g, B, (const float *[]){x});
    check_close(y, want, N, 1e-6);
    free(y);
    cn_graph_free(g);
  }
  /* Hand value: log_softmax([0, ln 3]) = [ln 1/4, ln 3/4]. */
  cn_softmax_attrs ls = {.axis = -1, .log = 1};
  cn_status st;
  cn_graph *g = build(&cn_op_softmax, &ls, (cn_shape[]){S(1, 2)}, 1, &st);
  float *y = run(g, 1, (const float *[]){(float[]){0, logf(3)}});
  CHECK_NEAR(y[0], log(0.25), 1e-6);
  CHECK_NEAR(y[1], log(0.75), 1e-6);
  free(y);
  cn_graph_free(g);
  cn_softmax_attrs bad = {.axis = 0};
  expect_fail(&cn_op_softmax, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_UNSUPPORTED);
  bad.axis = 3;
  expect_fail(&cn_op_softmax, &bad, (cn_shape[]){S(2, 3, 3)}, 1, CN_ERR_UNSUPPORTED);
}

static void test_lrn(void) {
  enum { C = 6, R = 4 };
  float x[R * C], want[R * C];
  fill(x, R * C);
  int sizes[] = {1, 2, 3, 5};
  for (int s = 0; s < 4; s++) {
    cn_lrn_attrs a = {.size = sizes[s], .alpha = 0.5f, .beta = 0.75f, .bias = 2};
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++) {
        double sq = 0;
        for (int t = c - (a.size - 1) / 2; t <= c + a.size / 2; t++)
          if (t >= 0 && t < C) sq += x[r * C + t] * x[r * C + t];
        want[r * C + c] = (float)(x[r * C + c] / pow(a.bias + a.alpha / a.size * sq, a.beta));
      }
    check_single(&cn_op_lrn, &a, S(2, 2, C), 2, x, want, R * C, 1e-6);
  }
  /* onnxruntime: LRN(size=3, alpha=1, beta=1, bias=1) of [1, 2, 3] along channels. */
  cn_lrn_attrs h = {.size = 3, .alpha = 1, .beta = 1, .bias = 1};
  cn_status st;
  cn_graph *g = build(&cn_op_lrn, &h, (cn_shape[]){S(1, 3)}, 1, &st);
  float *y = run(g, 1, (const float *[]){(float[]){1, 2, 3}});
  check_close(y, (float[]){1 / (1 + 5 / 3.0f), 2 / (1 + 14 / 3.0f), 3 / (1 + 13 / 3.0f)}, 3, 1e-6);
  free(y);
  cn_graph_free(g);
  cn_lrn_attrs bad = {.size = 0, .alpha = 1, .beta = 1, .bias = 1};
  expect_fail(&cn_op_lrn, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_FORMAT);
}

/* ---- Transpose, Pad ------------------------------------------------------------------------- */

static void test_transpose(void) {
  /* (2, 3, 4) per sample with perm (2, 0, 1): out[c][a][b] = in[a][b][c]. */
  enum { A = 2, Bd = 3, C = 4, BATCH = 2, N = BATCH * A * Bd * C };
  float x[N], want[N];
  fill(x, N);
  for (int n = 0; n < BATCH; n++)
    for (int a = 0; a < A; a++)
      for (int b = 0; b < Bd; b++)
        for (int c = 0; c < C; c++)
          want[n * A * Bd * C + (c * A + a) * Bd + b] = x[n * A * Bd * C + (a * Bd + b) * C + c];
  cn_transpose_attrs t = {3, {2, 0, 1}};
  cn_status st;
  cn_graph *g = build(&cn_op_transpose, &t, (cn_shape[]){S(3, A, Bd, C)}, 1, &st);
  CHECK_OK(st);
  CHECK(cn_shape_equal(&layer(g)->shape, &(cn_shape){3, {C, A, Bd}}));
  float *y = run(g, BATCH, (const float *[]){x});
  check_close(y, want, N, 0);
  free(y);
  cn_graph_free(g);
  /* NHWC -> NCHW (perm (2, 0, 1)) then back (perm (1, 2, 0)) is the identity. */
  cn_transpose_attrs back = {3, {1, 2, 0}};
  g = build(&cn_op_transpose, &back, (cn_shape[]){S(3, C, A, Bd)}, 1, &st);
  y = run(g, BATCH, (const float *[]){want});
  check_close(y, x, N, 0);
  free(y);
  cn_graph_free(g);
  /* A 3-channel image, CHW -> HWC (the planes interleaved in runs) */
  enum { H = 5, W = 7, RGB = BATCH * 3 * H * W };
  float img[RGB], hwc[RGB];
  fill(img, RGB);
  for (int n = 0; n < BATCH; n++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < H * W; i++) hwc[(n * H * W + i) * 3 + c] = img[(n * 3 + c) * H * W + i];
  g = build(&cn_op_transpose, &back, (cn_shape[]){S(3, 3, H, W)}, 1, &st);
  CHECK_OK(st);
  y = run(g, BATCH, (const float *[]){img});
  check_close(y, hwc, RGB, 0);
  free(y);
  cn_graph_free(g);
  cn_transpose_attrs bad = {3, {0, 0, 1}};
  expect_fail(&cn_op_transpose, &bad, (cn_shape[]){S(3, 1, 2, 3)}, 1, CN_ERR_FORMAT);
  bad = (cn_transpose_attrs){2, {1, 0}};
  expect_fail(&cn_op_transpose, &bad, (cn_shape[]){S(3, 1, 2, 3)}, 1, CN_ERR_SHAPE);
}

static float *run_pad1(cn_pad_mode mode, int b, int e, const float *x, int n, int *out_n) {
  cn_pad_attrs a = {.mode = mode, .value = 9, .rank = 1, .begin = {b}, .end = {e}};
  cn_status st;
  cn_graph *g = build(&cn_op_pad, &a, (cn_shape[]){S(1, n)}, 1, &st);
  CHECK_OK(st);
  if (!g) return calloc(64, sizeof(float));
  *out_n = (int)layer(g)->shape.dim[0];
  float *y = run(g, 1, (const float *[]){x});
  cn_graph_free(g);
  return y;
}

static void test_pad(void) {
  const float x[] = {1, 2, 3};
  int n = 0;
  float *y = run_pad1(CN_PADMODE_REFLECT, 2, 2, x, 3, &n);
  CHECK(n == 7);
  check_close(y, (float[]){3, 2, 1, 2, 3, 2, 1}, 7, 0);
  free(y);
  y = run_pad1(CN_PADMODE_EDGE, 2, 1, x, 3, &n);
  check_close(y, (float[]){1, 1, 1, 2, 3, 3}, 6, 0);
  free(y);
  y = run_pad1(CN_PADMODE_WRAP, 2, 2, x, 3, &n);
  check_close(y, (float[]){2, 3, 1, 2, 3, 1, 2}, 7, 0);
  free(y);
  y = run_pad1(CN_PADMODE_CONSTANT, 1, 2, x, 3, &n);
  check_close(y, (float[]){9, 1, 2, 3, 9, 9}, 6, 0);
  free(y);
  y = run_pad1(CN_PADMODE_CONSTANT, -1, 1, x, 3, &n); /* crop one, pad one */
  CHECK(n == 3);
  check_close(y, (float[]){2, 3, 9}, 3, 0);
  free(y);

  /* 2-D reflect on (2, 3, 1) per sample, pads H (1, 1), W (2, 1), C (0, 0), batch 2:
   * numpy.pad(x, ((0,0),(1,1),(2,1),(0,0)), mode="reflect"). */
  float img[] = {1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60};
  cn_pad_attrs a = {.mode = CN_PADMODE_REFLECT, .rank = 3, .begin = {1, 2, 0}, .end = {1, 1, 0}};
  cn_status st;
  cn_graph *g = build(&cn_op_pad, &a, (cn_shape[]){S(3, 2, 3, 1)}, 1, &st);
  CHECK_OK(st);
  CHECK(cn_shape_equal(&layer(g)->shape, &(cn_shape){3, {4, 6, 1}}));
  y = run(g, 2, (const float *[]){img});
  const float row1[] = {6, 5, 4, 5, 6, 5}, row0[] = {3, 2, 1, 2, 3, 2};
  const float *want_rows[] = {row1, row0, row1, row0};
  for (int b = 0; b < 2; b++)
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 6; c++) CHECK(y[(b * 4 + r) * 6 + c] == want_rows[r][c] * (b ? 10 : 1));
  free(y);
  cn_graph_free(g);

  cn_pad_attrs bad = {.mode = CN_PADMODE_REFLECT, .rank = 1, .begin = {3}, .end = {0}};
  expect_fail(&cn_op_pad, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_SHAPE);
  bad = (cn_pad_attrs){.mode = CN_PADMODE_CONSTANT, .rank = 1, .begin = {-2}, .end = {-1}};
  expect_fail(&cn_op_pad, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_SHAPE);
  bad = (cn_pad_attrs){.mode = CN_PADMODE_CONSTANT, .rank = 2, .begin = {1}, .end = {0}};
  expect_fail(&cn_op_pad, &bad, (cn_shape[]){S(1, 3)}, 1, CN_ERR_SHAPE);
}

/* ---- Gemm, MatMul --------------------------------------------------------------------------- */

static void test_gemm(void) {
  enum { M = 3, K = 4, N = 5 };
  float a[M * K], want[M * N];
  fill(a, M * K);
  for (int trans = 0; trans < 2; trans++)
    for (int ci = 0; ci < 4; ci++) {
      cn_shape cs[] = {S(0), S(1, N), S(2, 1, N), S(2, 1, 1)};
      cn_gemm_attrs g_attrs = {
          .n = N, .trans_b = trans, .alpha = 0.5f, .beta = 2, .has_c = ci > 0, .c_shape = cs[ci]};
      cn_status st;
      cn_graph *g = build(&cn_op_gemm, &g_attrs, (cn_shape[]){S(1, K)}, 1, &st);
      CHECK_OK(st);
      if (!g) continue;
      const float *b = layer(g)->params[0].data;
      const float *c = ci > 0 ? layer(g)->params[1].data : NULL;
      CHECK(layer(g)->params[0].shape.dim[0] == (trans ? N : K));
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
          double acc = 0;
          for (int k = 0; k < K; k++) acc += a[i * K + k] * (trans ? b[j * K + k] : b[k * N + j]);
          double bias = !c ? 0 : ci == 1 ? c[j] : ci == 2 ? c[j] : c[0];
          want[i * N + j] = (float)(0.5 * acc + 2 * bias);
        }
      float *y = run(g, M, (const float *[]){a});
      check_close(y, want, M * N, 1e-5);
      free(y);
      cn_graph_free(g);
    }
  cn_gemm_attrs bad = {.n = N, .alpha = 1, .beta = 1, .has_c = 1, .c_shape = S(2, 3, N)};
  expect_fail(&cn_op_gemm, &bad, (cn_shape[]){S(1, K)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_gemm_attrs){.n = N, .alpha = 1, .has_c = 1, .c_shape = S(1, 2)};
  expect_fail(&cn_op_gemm, &bad, (cn_shape[]){S(1, K)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_gemm_attrs){.n = 0, .alpha = 1};
  expect_fail(&cn_op_gemm, &bad, (cn_shape[]){S(1, K)}, 1, CN_ERR_SHAPE);
  expect_fail(&cn_op_gemm, &(cn_gemm_attrs){.n = 2, .alpha = 1}, (cn_shape[]){S(2, 2, K)}, 1,
              CN_ERR_SHAPE);
}

/* numpy matmul of full shapes a (rank >= 2) and b (rank >= 1) into y of full shape out. */
static void ref_matmul(const float *a, const cn_shape *as, const float *b, const cn_shape *bs,
                       float *y, const cn_shape *out) {
  cn_shape bm = *bs;
  if (bs->rank == 1) bm = (cn_shape){2, {bs->dim[0], 1}};
  int64_t m = as->dim[as->rank - 2], k = as->dim[as->rank - 1], n = bm.dim[bm.rank - 1];
  cn_shape ab = {as->rank - 2, {0}}, bb = {bm.rank - 2, {0}};
  for (int i = 0; i < ab.rank; i++) ab.dim[i] = as->dim[i];
  for (int i = 0; i < bb.rank; i++) bb.dim[i] = bm.dim[i];
  int nb = ab.rank > bb.rank ? ab.rank : bb.rank;
  int64_t total = cn_shape_numel(out) / (m * n), idx[CN_MAX_RANK];
  cn_shape ob = {nb, {0}};
  for (int i = 0; i < nb; i++) {
    int ia = i - (nb - ab.rank), ib = i - (nb - bb.rank);
    int64_t da = ia >= 0 ? ab.dim[ia] : 1, db = ib >= 0 ? bb.dim[ib] : 1;
    ob.dim[i] = da > db ? da : db;
  }
  for (int64_t t = 0; t < total; t++) {
    int64_t rem = t;
    for (int i = nb - 1; i >= 0; i--) {
      idx[i] = rem % ob.dim[i];
      rem /= ob.dim[i];
    }
    size_t ao = bcast_offset(&ab, idx, nb), bo = bcast_offset(&bb, idx, nb);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t q = 0; q < k; q++) acc += a[(ao * m + i) * k + q] * b[(bo * k + q) * n + j];
        y[(t * m + i) * n + j] = (float)acc;
      }
  }
}

/* MatMul of an input (per-sample shape x) by a constant of full shape b, or by a second input
 * (per-sample b) when !const_b. */
static void check_matmul(int const_b, cn_shape x, cn_shape b, cn_shape want_sample, int batch) {
  cn_matmul_attrs a = {const_b, b};
  cn_shape ins[2] = {x, b};
  cn_status st;
  cn_graph *g = build(&cn_op_matmul, &a, ins, const_b ? 1 : 2, &st);
  CHECK_OK(st);
  if (!g) return;
  CHECK(cn_shape_equal(&layer(g)->shape, &want_sample));
  cn_shape af = with_batch(batch, x), bf = const_b ? b : with_batch(batch, b);
  cn_shape of = with_batch(batch, want_sample);
  size_t na = (size_t)cn_shape_numel(&af), nb = (size_t)cn_shape_numel(&bf);
  size_t no = (size_t)cn_shape_numel(&of);
  float *xa = malloc(na * sizeof(float)), *xb = const_b ? layer(g)->params[0].data : NULL;
  float *own_b = const_b ? NULL : malloc(nb * sizeof(float)), *want = malloc(no * sizeof(float));
  fill(xa, na);
  if (own_b) fill(own_b, nb), xb = own_b;
  if (x.rank == 1) /* the batch is the rows of one matrix */
    ref_matmul(xa, &(cn_shape){2, {batch, x.dim[0]}}, xb, &bf, want, &of);
  else
    ref_matmul(xa, &af, xb, &bf, want, &of);
  float *y = run(g, batch, (const float *[]){xa, own_b});
  check_close(y, want, no, 1e-5);
  free(y);
  free(xa);
  free(own_b);
  free(want);
  cn_graph_free(g);
}

static void test_matmul(void) {
  check_matmul(1, S(1, 4), S(2, 4, 3), S(1, 3), 5);                   /* (N,k) x (k,n) */
  check_matmul(1, S(1, 4), S(1, 4), S(0), 5);                         /* (N,k) x (k) -> (N) */
  check_matmul(1, S(3, 2, 3, 4), S(2, 4, 5), S(3, 2, 3, 5), 2);       /* one B for every row */
  check_matmul(1, S(2, 3, 4), S(1, 4), S(1, 3), 2);                   /* 1-D B drops the last dim */
  check_matmul(1, S(3, 3, 2, 4), S(3, 3, 4, 5), S(3, 3, 2, 5), 2);    /* per-matrix B */
  check_matmul(1, S(3, 1, 2, 4), S(3, 2, 4, 5), S(3, 2, 2, 5), 2);    /* A broadcast */
  check_matmul(1, S(3, 2, 2, 4), S(4, 1, 2, 4, 5), S(3, 2, 2, 5), 3); /* B with batch dim 1 */
  check_matmul(0, S(3, 2, 3, 4), S(3, 2, 4, 5), S(3, 2, 3, 5), 2);    /* two inputs */
  check_matmul(0, S(3, 1, 3, 4), S(3, 3, 4, 2), S(3, 3, 3, 2), 2);    /* broadcast between them */
  check_matmul(0, S(2, 3, 4), S(2, 4, 6), S(2, 3, 6), 3);

  cn_matmul_attrs bad = {1, S(2, 5, 3)};
  expect_fail(&cn_op_matmul, &bad, (cn_shape[]){S(1, 4)}, 1, CN_ERR_SHAPE); /* k differs */
  bad = (cn_matmul_attrs){1, S(3, 2, 4, 3)};
  expect_fail(&cn_op_matmul, &bad, (cn_shape[]){S(1, 4)}, 1, CN_ERR_SHAPE); /* rank above A */
  bad = (cn_matmul_attrs){1, S(4, 2, 2, 4, 3)};
  expect_fail(&cn_op_matmul, &bad, (cn_shape[]){S(3, 2, 2, 4)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_matmul_attrs){1, S(3, 3, 4, 3)}; /* 3 against 2 */
  expect_fail(&cn_op_matmul, &bad, (cn_shape[]){S(3, 2, 2, 4)}, 1, CN_ERR_SHAPE);
  bad = (cn_matmul_attrs){0, {0}};
  expect_fail(&cn_op_matmul, &bad, (cn_shape[]){S(1, 4), S(1, 4)}, 2, CN_ERR_SHAPE);
}

/* ---- Resize --------------------------------------------------------------------------------- */

/* One of the seven cases run under every coordinate transformation. */
typedef struct resize_variant {
  cn_resize_mode mode;
  cn_resize_nearest nearest;
  float scale_h, scale_w;
  int out_h, out_w; /* ONNX sizes (0: from the scales) */
  int want_h, want_w;
} resize_variant;

enum { RESIZE_VARIANTS = 7 };
static const resize_variant resize_variants[RESIZE_VARIANTS] = {
    {CN_RESIZE_MODE_NEAREST, CN_NEAREST_ROUND_PREFER_FLOOR, 2.0f, 1.7f, 0, 0, 4, 5},
    {CN_RESIZE_MODE_NEAREST, CN_NEAREST_ROUND_PREFER_CEIL, 2.0f, 1.7f, 0, 0, 4, 5},
    {CN_RESIZE_MODE_NEAREST, CN_NEAREST_FLOOR, 2.0f, 1.7f, 0, 0, 4, 5},
    {CN_RESIZE_MODE_NEAREST, CN_NEAREST_CEIL, 2.0f, 1.7f, 0, 0, 4, 5},
    {CN_RESIZE_MODE_NEAREST, CN_NEAREST_ROUND_PREFER_FLOOR, 0.0f, 0.0f, 1, 2, 1, 2},
    {CN_RESIZE_MODE_LINEAR, CN_NEAREST_ROUND_PREFER_FLOOR, 2.0f, 1.7f, 0, 0, 4, 5},
    {CN_RESIZE_MODE_LINEAR, CN_NEAREST_ROUND_PREFER_FLOOR, 0.0f, 0.0f, 3, 2, 3, 2},
};

/* Generated with onnxruntime 1.32.0 (opset 19 Resize, scales (1, 1, sh, sw) or sizes
 * (1, 2, h, w)) from the 2x3x2 input of test_resize. Each distinct output is written once,
 * named after the first case producing it; the cases below share them. */
static const float resize_4x5_nearest_half_pixel_round_prefer_floor[] = {
    0,        1,         0,        1,         1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136,
    0,        1,         0,        1,         1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136,
    5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  11.18034, -4.59017,   11.18034, -4.59017};
static const float resize_4x5_nearest_half_pixel_floor[] = {
    0,        1,         0,        1,         0,        1,         1, 0.5, 2.828427, -0.4142136,
    0,        1,         0,        1,         0,        1,         1, 0.5, 2.828427, -0.4142136,
    0,        1,         0,        1,         0,        1,         1, 0.5, 2.828427, -0.4142136,
    5.196152, -1.598076, 5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  11.18034, -4.59017};
static const float resize_4x5_nearest_half_pixel_ceil[] = {
    0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136,
    5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,   11.18034, -4.59017};
static const float resize_1x2_nearest_half_pixel_round_prefer_floor[] = {0, 1, 2.828427,
                                                                         -0.4142136};
static const float resize_4x5_linear_half_pixel[] = {
    0,        1,          0.3823529, 0.8088236, 0.9705882, 0.5147059,  2.021768, -0.01088411,
    2.828427, -0.4142136, 1.299038,  0.3504809, 1.853818,  0.07309121, 2.707325, -0.3536623,
    3.960639, -0.9803192, 4.916405,  -1.458203, 3.897114,  -0.9485571, 4.796747, -1.398373,
    6.180798, -2.090399,  7.838379,  -2.919189, 9.092361,  -3.546181,  5.196152, -1.598076,
    6.268211, -2.134106,  7.917534,  -2.958767, 9.777248,  -3.888624,  11.18034, -4.59017};
static const float resize_3x2_linear_half_pixel[] = {0.25,     0.875,      2.37132,  -0.1856602,
                                                     3.073557, -0.5367786, 6.378287, -2.189144,
                                                     5.897114, -1.948557,  10.38525, -4.192627};
static const float resize_4x5_nearest_asymmetric_round_prefer_floor[] = {
    0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136,
    0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136,
    5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,   11.18034, -4.59017};
static const float resize_4x5_nearest_asymmetric_floor[] = {
    0,        1,         0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136,
    0,        1,         0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136,
    5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017,
    5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017};
static const float resize_4x5_nearest_asymmetric_ceil[] = {
    0,        1,         1, 0.5, 2.828427, -0.4142136, 2.828427, -0.4142136, 2.828427, -0.4142136,
    5.196152, -1.598076, 8, -3,  11.18034, -4.59017,   11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 8, -3,  11.18034, -4.59017,   11.18034, -4.59017,   11.18034, -4.59017,
    5.196152, -1.598076, 8, -3,  11.18034, -4.59017,   11.18034, -4.59017,   11.18034, -4.59017};
static const float resize_1x2_nearest_asymmetric_round_prefer_floor[] = {0, 1, 1, 0.5};
static const float resize_4x5_linear_asymmetric[] = {
    0,        1,          0.5882353, 0.7058824,  1.322664, 0.3386683,  2.398209, -0.1991044,
    2.828427, -0.4142136, 2.598076,  -0.2990381, 3.716855, -0.8584274, 4.94195,  -1.470975,
    6.415116, -2.207558,  7.004384,  -2.502192,  5.196152, -1.598076,  6.845474, -2.422737,
    8.561236, -3.280618,  10.43202,  -4.216012,  11.18034, -4.59017,   5.196152, -1.598076,
    6.845474, -2.422737,  8.561236,  -3.280618,  10.43202, -4.216012,  11.18034, -4.59017};
static const float resize_3x2_linear_asymmetric[] = {0,        1,          1.914214, 0.04289322,
                                                     3.464102, -0.7320508, 7.031518, -2.515759,
                                                     5.196152, -1.598076,  9.59017,  -3.795085};
static const float resize_4x5_nearest_align_corners_floor[] = {
    0,        1,         0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136,
    0,        1,         0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136,
    0,        1,         0,        1,         1, 0.5, 1, 0.5, 2.828427, -0.4142136,
    5.196152, -1.598076, 5.196152, -1.598076, 8, -3,  8, -3,  11.18034, -4.59017};
static const float resize_4x5_linear_align_corners[] = {
    0,        1,          0.5,      0.75,      1,        0.5,        1.914214, 0.04289322,
    2.828427, -0.4142136, 1.732051, 0.1339746, 2.532692, -0.2663461, 3.333333, -0.6666667,
    4.472866, -1.236433,  5.612398, -1.806199, 3.464102, -0.7320508, 4.565384, -1.282692,
    5.666667, -1.833333,  7.031518, -2.515759, 8.396369, -3.198184,  5.196152, -1.598076,
    6.598076, -2.299038,  8,        -3,        9.59017,  -3.795085,  11.18034, -4.59017};
static const float resize_3x2_linear_align_corners[] = {0,        1,          2.828427, -0.4142136,
                                                        2.598076, -0.2990381, 7.004384, -2.502192,
                                                        5.196152, -1.598076,  11.18034, -4.59017};
static const float resize_4x5_nearest_tf_half_pixel_for_nn_ceil[] = {
    8, -3, 8, -3, 11.18034, -4.59017, 11.18034, -4.59017, 11.18034, -4.59017,
    8, -3, 8, -3, 11.18034, -4.59017, 11.18034, -4.59017, 11.18034, -4.59017,
    8, -3, 8, -3, 11.18034, -4.59017, 11.18034, -4.59017, 11.18034, -4.59017,
    8, -3, 8, -3, 11.18034, -4.59017, 11.18034, -4.59017, 11.18034, -4.59017};
static const float resize_1x2_nearest_tf_half_pixel_for_nn_round_prefer_floor[] = {8, -3, 11.18034,
                                                                                   -4.59017};
static const float resize_4x5_linear_tf_half_pixel_for_nn[] = {
    1.725792, 0.1371042, 2.579298, -0.2896492, 3.769485, -0.8847424, 4.916405, -1.458203,
    4.916405, -1.458203, 4.589139, -1.29457,   5.97319,  -1.986595,  7.587582, -2.793791,
    9.092361, -3.546181, 9.092361, -3.546181,  6.020813, -2.010407,  7.670135, -2.835068,
    9.49663,  -3.748315, 11.18034, -4.59017,   11.18034, -4.59017,   6.020813, -2.010407,
    7.670135, -2.835068, 9.49663,  -3.748315,  11.18034, -4.59017,   11.18034, -4.59017};
static const float resize_3x2_linear_tf_half_pixel_for_nn[] = {
    2.933013, -0.4665064, 5.612398, -1.806199, 7.299038, -2.649519,
    11.18034, -4.59017,   7.299038, -2.649519, 11.18034, -4.59017};
static const float resize_4x5_linear_half_pixel_symmetric[] = {
    0,        1,          0.4117648, 0.7941176, 1,        0.5,        2.075546, -0.03777276,
    2.828427, -0.4142136, 1.299038,  0.3504809, 1.896493, 0.05175343, 2.75,     -0.375,
    4.024356, -1.012178,  4.916405,  -1.458203, 3.897114, -0.9485571, 4.86595,  -1.432975,
    6.25,     -2.125,     7.921978,  -2.960989, 9.092361, -3.546181,  5.196152, -1.598076,
    6.350678, -2.175339,  8,         -3,        9.870789, -3.935394,  11.18034, -4.59017};
static const float resize_3x2_linear_half_pixel_symmetric[] = {
    0.25,     0.875,     2.37132,  -0.1856601, 3.073557, -0.5367786,
    6.378287, -2.189144, 5.897114, -1.948557,  10.38525, -4.192627};

/* Per coordinate transformation, the expected NHWC output of each variant (want_h * want_w * 2
 * values). */
static const struct {
  cn_resize_coord coord;
  const float *want[RESIZE_VARIANTS];
} resize_cases[] = {
    {CN_COORD_HALF_PIXEL,
     {resize_4x5_nearest_half_pixel_round_prefer_floor,
      resize_4x5_nearest_half_pixel_round_prefer_floor, resize_4x5_nearest_half_pixel_floor,
      resize_4x5_nearest_half_pixel_ceil, resize_1x2_nearest_half_pixel_round_prefer_floor,
      resize_4x5_linear_half_pixel, resize_3x2_linear_half_pixel}},
    {CN_COORD_ASYMMETRIC,
     {resize_4x5_nearest_asymmetric_round_prefer_floor, resize_4x5_nearest_half_pixel_ceil,
      resize_4x5_nearest_asymmetric_floor, resize_4x5_nearest_asymmetric_ceil,
      resize_1x2_nearest_asymmetric_round_prefer_floor, resize_4x5_linear_asymmetric,
      resize_3x2_linear_asymmetric}},
    {CN_COORD_ALIGN_CORNERS,
     {resize_4x5_nearest_asymmetric_floor, resize_4x5_nearest_asymmetric_round_prefer_floor,
      resize_4x5_nearest_align_corners_floor, resize_4x5_nearest_half_pixel_ceil,
      resize_1x2_nearest_half_pixel_round_prefer_floor, resize_4x5_linear_align_corners,
      resize_3x2_linear_align_corners}},
    {CN_COORD_PYTORCH_HALF_PIXEL,
     {resize_4x5_nearest_half_pixel_round_prefer_floor,
      resize_4x5_nearest_half_pixel_round_prefer_floor, resize_4x5_nearest_half_pixel_floor,
      resize_4x5_nearest_half_pixel_ceil, resize_1x2_nearest_half_pixel_round_prefer_floor,
      resize_4x5_linear_half_pixel, resize_3x2_linear_half_pixel}},
    {CN_COORD_TF_HALF_PIXEL_FOR_NN,
     {resize_4x5_nearest_half_pixel_ceil, resize_4x5_nearest_half_pixel_ceil,
      resize_4x5_nearest_half_pixel_round_prefer_floor,
      resize_4x5_nearest_tf_half_pixel_for_nn_ceil,
      resize_1x2_nearest_tf_half_pixel_for_nn_round_prefer_floor,
      resize_4x5_linear_tf_half_pixel_for_nn, resize_3x2_linear_tf_half_pixel_for_nn}},
    {CN_COORD_HALF_PIXEL_SYMMETRIC,
     {resize_4x5_nearest_half_pixel_round_prefer_floor,
      resize_4x5_nearest_half_pixel_round_prefer_floor, resize_4x5_nearest_align_corners_floor,
      resize_4x5_nearest_half_pixel_ceil, resize_1x2_nearest_half_pixel_round_prefer_floor,
      resize_4x5_linear_half_pixel_symmetric, resize_3x2_linear_half_pixel_symmetric}},
};

/* Resizes the (h, w, c) input x as variant t under coordinate transformation coord. */
static void check_resize_case(size_t case_no, const resize_variant *t, cn_resize_coord coord,
                              const float *want, const float *x, int h, int w, int c) {
  cn_resize_attrs a = RS(t->mode, coord, t->nearest, t->scale_h, t->scale_w, t->out_h, t->out_w);
  cn_status st;
  cn_graph *g = build(&cn_op_resize, &a, (cn_shape[]){S(3, h, w, c)}, 1, &st);
  CHECK_OK(st);
  if (!g) return;
  CHECK(layer(g)->shape.dim[0] == t->want_h && layer(g)->shape.dim[1] == t->want_w);
  float *y = run(g, 1, (const float *[]){x});
  size_t n = (size_t)(t->want_h * t->want_w * c);
  double d = cn_test_max_abs_diff(y, want, n);
  CHECK(d < 2e-5);
  if (d >= 2e-5) fprintf(stderr, "  resize case %zu differs by %g\n", case_no, d);
  free(y);
  cn_graph_free(g);
}

static void test_resize_general(const float *x, int h, int w, int c);

static void test_resize(void) {
  /* x[h][w][c] = (h * 3 + w)^1.5 * (c ? -0.5 : 1) + c, as the generator wrote it (NCHW). */
  enum { H = 2, W = 3, C = 2 };
  float x[H * W * C];
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++)
      for (int c = 0; c < C; c++)
        x[(h * W + w) * C + c] = powf((float)(h * W + w), 1.5f) * (c ? -0.5f : 1) + (float)c;
  for (size_t i = 0; i < sizeof resize_cases / sizeof resize_cases[0]; i++)
    for (int v = 0; v < RESIZE_VARIANTS; v++)
      check_resize_case(i * RESIZE_VARIANTS + (size_t)v, &resize_variants[v], resize_cases[i].coord,
                        resize_cases[i].want[v], x, H, W, C);
  /* Batches are independent; and the errors. */
  cn_resize_attrs up = RS(CN_RESIZE_MODE_LINEAR, CN_COORD_HALF_PIXEL, 0, 2, 2, 0, 0);
  cn_status st;
  cn_graph *g = build(&cn_op_resize, &up, (cn_shape[]){S(3, H, W, C)}, 1, &st);
  float xx[2 * H * W * C];
  memcpy(xx, x, sizeof x);
  memcpy(xx + H * W * C, x, sizeof x);
  float *y = run(g, 2, (const float *[]){xx});
  check_close(y + 4 * 6 * C, y, 4 * 6 * C, 0);
  free(y);
  cn_graph_free(g);
  cn_resize_attrs bad = RS(CN_RESIZE_MODE_NEAREST, CN_COORD_HALF_PIXEL, 0, 0, 1, 0, 0);
  expect_fail(&cn_op_resize, &bad, (cn_shape[]){S(3, H, W, C)}, 1, CN_ERR_FORMAT);
  bad = (cn_resize_attrs)RS(CN_RESIZE_MODE_NEAREST, CN_COORD_HALF_PIXEL, 0, 0.1f, 1, 0, 0);
  expect_fail(&cn_op_resize, &bad, (cn_shape[]){S(3, H, W, C)}, 1, CN_ERR_SHAPE);
  bad = (cn_resize_attrs)RS((cn_resize_mode)7, CN_COORD_HALF_PIXEL, 0, 1, 1, 0, 0);
  expect_fail(&cn_op_resize, &bad, (cn_shape[]){S(3, H, W, C)}, 1, CN_ERR_UNSUPPORTED);
  expect_fail(&cn_op_resize, &up, (cn_shape[]){S(2, H, W)}, 1, CN_ERR_SHAPE);
  test_resize_general(x, H, W, C);
}

/* The general separable form against the fast paths and fixed points. */
static void test_resize_general(const float *x, int h, int w, int c) {
  cn_shape in = S(3, h, w, c);
  size_t n = (size_t)(h * w * c);
  /* Upsampling: antialias changes nothing, so the general path must match bilinear. */
  cn_resize_attrs fast = RS(CN_RESIZE_MODE_LINEAR, CN_COORD_HALF_PIXEL, 0, 2, 3, 0, 0), aa = fast;
  aa.antialias = 1;
  float *want = run_single(&cn_op_resize, &fast, in, 1, x, 64);
  float *got = run_single(&cn_op_resize, &aa, in, 1, x, 64);
  check_close(got, want, n * 6, 1e-5);
  free(want);
  free(got);
  /* Cubic at scale 1 lands on the pixels: the identity. */
  cn_resize_attrs cubic = RS(CN_RESIZE_MODE_CUBIC, CN_COORD_HALF_PIXEL, 0, 1, 1, 0, 0);
  cubic.cubic_a = -0.75f;
  got = run_single(&cn_op_resize, &cubic, in, 1, x, 64);
  check_close(got, x, n, 1e-6);
  free(got);
  /* A crop box beyond the image gives the extrapolation value everywhere. */
  cn_resize_attrs crop = RS(CN_RESIZE_MODE_LINEAR, CN_COORD_TF_CROP_AND_RESIZE, 0, 0, 0, 2, 2);
  crop.roi_h0 = 1.5f, crop.roi_h1 = 2.0f, crop.roi_w1 = 1.0f, crop.extrapolation = 7.0f;
  got = run_single(&cn_op_resize, &crop, in, 1, x, 64);
  for (int i = 0; i < 4 * c; i++) CHECK(got[i] == 7.0f);
  free(got);
}

/* ---- ConvTranspose -------------------------------------------------------------------------- */

typedef struct ct_case {
  int batch, h, w, c, f, kh, kw, sh, sw, dh, dw, groups, pt, pl, pb, pr, oph, opw, bias;
} ct_case;

/* The definition: every input pixel adds kernel * value at oy = iy * sh - pt + ky * dh. */
static void ref_conv_transpose(const ct_case *t, int oh, int ow, const float *x, const float *k,
                               const float *bias, float *y) {
  int fg = t->f / t->groups, cg = t->c / t->groups;
  for (int b = 0; b < t->batch; b++) {
    float *img = y + (size_t)b * oh * ow * t->f;
    for (int p = 0; p < oh * ow; p++)
      for (int f = 0; f < t->f; f++) img[p * t->f + f] = bias ? bias[f] : 0;
    for (int iy = 0; iy < t->h; iy++)
      for (int ix = 0; ix < t->w; ix++)
        for (int ci = 0; ci < t->c; ci++) {
          float v = x[((b * t->h + iy) * t->w + ix) * t->c + ci];
          int grp = ci / cg;
          for (int ky = 0; ky < t->kh; ky++)
            for (int kx = 0; kx < t->kw; kx++) {
              int oy = iy * t->sh - t->pt + ky * t->dh, ox = ix * t->sw - t->pl + kx * t->dw;
              if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
              for (int fl = 0; fl < fg; fl++)
                img[(oy * ow + ox) * t->f + grp * fg + fl] +=
                    v * k[((ky * t->kw + kx) * fg + fl) * t->c + ci];
            }
        }
  }
}

static void check_conv_transpose(ct_case t) {
  cn_conv_transpose_attrs a = {t.f,    t.kh, t.kw, t.sh, t.sw, t.dh,  t.dw, t.groups,
                               t.bias, t.pt, t.pl, t.pb, t.pr, t.oph, t.opw};
  int oh = t.sh * (t.h - 1) + t.oph + (t.kh - 1) * t.dh + 1 - t.pt - t.pb;
  int ow = t.sw * (t.w - 1) + t.opw + (t.kw - 1) * t.dw + 1 - t.pl - t.pr;
  cn_status st;
  cn_graph *g = build(&cn_op_conv_transpose, &a, (cn_shape[]){S(3, t.h, t.w, t.c)}, 1, &st);
  CHECK_OK(st);
  if (!g) return;
  CHECK(cn_shape_equal(&layer(g)->shape, &(cn_shape){3, {oh, ow, t.f}}));
  size_t nx = (size_t)t.batch * t.h * t.w * t.c, ny = (size_t)t.batch * oh * ow * t.f;
  float *x = malloc(nx * sizeof(float)), *want = malloc(ny * sizeof(float));
  fill(x, nx);
  ref_conv_transpose(&t, oh, ow, x, layer(g)->params[0].data,
                     t.bias ? layer(g)->params[1].data : NULL, want);
  float *y = run(g, t.batch, (const float *[]){x});
  check_close(y, want, ny, 1e-5);
  free(x);
  free(y);
  free(want);
  cn_graph_free(g);
}

static void test_conv_transpose(void) {
  /* onnxruntime 1.32: ConvTranspose(strides (2,1), pads (1,0,0,1), output_padding (1,0),
   * dilations (1,2), group 2) of a (1,2,3,3) input, weights (2,1,3,2), bias (0.25,-0.5). */
  const float x[] = {-2, 2, -1, -2, 0, -1, 1, 0, 2, 1, -2, 2, -1, -2, 0, -1, 1, 0};
  const float k[] = {-0.600000024f, 0.320000052f, -0.230000019f,  0.690000176f,
                     0.139999986f,  -0.23999989f, 0.50999999f,    0.129999995f,
                     -0.419999957f, 0.500000119f, -0.0499999523f, -0.429999709f};
  const float want[] = {
      -0.02999997f, -0.9799998f, 0.11f,      -0.02000022f, -0.77f, -1.192093e-07f, -0.26f,
      -0.76f,       0.4899999f,  0.5000002f, -0.5300001f,  -1.18f, 1.32f,          -1.219999f,
      -0.1600001f,  1.05f,       0.39f,      -0.5f,        0.53f,  -0.7399999f,    0.48f,
      -0.9799998f,  1.27f,       -0.37f,     0.4300001f,   -1.14f, -0.5899999f,    -0.3199999f,
      0.67f,        -0.8800001f, 0.1500001f, -1.62f,       0.11f,  -0.02000022f,   0.25f,
      -0.2600001f,  -0.12f,      -0.76f,     0.25f,        -0.63f, 0.67f,          -1.5f,
      0.25f,        -1,          -0.12f,     0.3599994f,   0.25f,  -0.07000029f,   0.25f,
      -0.5f,        0.25f,       -0.5f,      0.25f,        -0.5f,  0.25f,          -0.5f};
  cn_conv_transpose_attrs a = {2, 3, 2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 0};
  cn_status st;
  cn_graph *g = build(&cn_op_conv_transpose, &a, (cn_shape[]){S(3, 3, 3, 2)}, 1, &st);
  CHECK_OK(st);
  if (g) {
    CHECK(cn_shape_equal(&layer(g)->shape, &(cn_shape){3, {7, 4, 2}}));
    memcpy(layer(g)->params[0].data, k, sizeof k);
    layer(g)->params[1].data[0] = 0.25f;
    layer(g)->params[1].data[1] = -0.5f;
    float *y = run(g, 1, (const float *[]){x});
    check_close(y, want, 56, 1e-5);
    free(y);
    cn_graph_free(g);
  }
  /* batch h w c f kh kw sh sw dh dw groups pt pl pb pr oph opw bias */
  check_conv_transpose((ct_case){2, 3, 4, 3, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  check_conv_transpose((ct_case){1, 4, 4, 4, 6, 2, 2, 2, 2, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0});
  check_conv_transpose((ct_case){2, 5, 3, 2, 4, 3, 2, 1, 3, 2, 1, 2, 2, 0, 1, 1, 0, 2, 1});
  check_conv_transpose((ct_case){1, 1, 1, 3, 2, 4, 4, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1});
  check_conv_transpose((ct_case){2, 16, 12, 8, 8, 4, 4, 2, 2, 1, 1, 8, 1, 1, 1, 1, 0, 0, 1});
  /* Wide enough that the GEMM runs over several blocks of input rows. */
  check_conv_transpose((ct_case){1, 40, 40, 4, 48, 5, 5, 2, 2, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1});

  cn_conv_transpose_attrs
      ok = {.filters = 4, .kh = 3, .kw = 3, .sh = 2, .sw = 2, .dh = 1, .dw = 1, .groups = 2},
      bad = ok;
  bad.groups = 3; /* filters not a multiple */
  expect_fail(&cn_op_conv_transpose, &bad, (cn_shape[]){S(3, 3, 3, 3)}, 1, CN_ERR_FORMAT);
  bad = ok; /* 3 input channels in 2 groups */
  expect_fail(&cn_op_conv_transpose, &bad, (cn_shape[]){S(3, 3, 3, 3)}, 1, CN_ERR_SHAPE);
  bad = ok;
  bad.out_pad_h = 2; /* not below the stride */
  expect_fail(&cn_op_conv_transpose, &bad, (cn_shape[]){S(3, 3, 3, 4)}, 1, CN_ERR_FORMAT);
  bad = ok;
  bad.kh = bad.sh = 1, bad.pad_top = bad.pad_bottom = 1; /* empty output */
  expect_fail(&cn_op_conv_transpose, &bad, (cn_shape[]){S(3, 1, 3, 4)}, 1, CN_ERR_SHAPE);
  bad = ok;
  bad.kh = 0;
  expect_fail(&cn_op_conv_transpose, &bad, (cn_shape[]){S(3, 3, 3, 4)}, 1, CN_ERR_FORMAT);
}

/* ---- pooling with ONNX attributes ------------------------------------------------------------ */

typedef struct pool_case {
  int is_max, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ceil_mode, count_include_pad;
  int want_h, want_w;
  const float *want; /* NHWC, want_h * want_w * 2 values */
} pool_case;

/* Generated with onnxruntime 1.32.0 (opset 19) from the 5x6x2 input of test_pool_onnx. The
 * ceil_mode sizes are those onnxruntime's kernels produce (a last window starting in the end
 * padding is dropped); ONNX 1.23's shape inference predicts one more in cases 0-4. */
static const float pool_want0[] = {0.1666667, -0.08333334, 0.6666667,  0.4166667, -1.25,      1.25,
                                   1.5,       0.6388889,   0.1666667,  1.75,      -0.8333333, 0.75,
                                   1,         0.75,        -0.3333333, 1.25,      0.5,        0.25};
static const float pool_want1[] = {0.1111111,  -0.05555556, 0.4444444, 0.2777778, -0.5555556,
                                   0.5555556,  1.5,         0.6388889, 0.1666667, 1.75,
                                   -0.5555556, 0.5,         0.6666667, 0.5,       -0.2222222,
                                   0.8333333,  0.2222222,   0.1111111};
static const float pool_want2[] = {5.5,  3.75, 4.5,  5.75, 3.5,  4.75, 5.5,  5.75, 4.5,
                                   5.75, 3.5,  4.75, 5.5,  5.75, 3.5,  5.75, 5.5,  3.75};
static const float pool_want3[] = {0.5, 0.25, 1,   0.75, -1.25,  1.25, 0.75,  0.5, 1.25,
                                   1,   -1,   1.5, 1.5,  -1.375, -1,   1.625, 2,   -0.875};
static const float pool_want4[] = {0.5, 0.25, 1,   0.75, -1.25, 1.25, 0.75, 0.5, 1.25,
                                   1,   -1,   1.5, 3,    -2.75, -2,   3.25, 4,   -1.75};
static const float pool_want5[] = {5.5, -0.25, 5.5, 5.75, 3.5, 5.75, 1.5, 3.75, 4.5, 3.75,
                                   4.5, 4.75,  5.5, 2.75, 5.5, 5.75, 3.5, 5.75, 4.5, 3.75,
                                   4.5, 4.75,  5.5, 4.75, 5.5, 2.75, 3.5, 5.75, 3.5, 3.75};
static const float pool_want6[] = {
    1.375, -0.0625, 0,   -0.125, 1.5,  1.375, 0.25, 0.125, -1,   1.625, 0,    -0.125, 0,     -0.25,
    0.25,  0,       0.5, 0.25,   0.75, 0.5,   0.75, 0.625, 1.5,  1.25,  1.75, 1.5,    -0.75, 1.75,
    -0.5,  2,       1.5, -1.375, 0.25, 0,     0.5,  0.25,  0.75, 0.5,   1,    0.75};
static const float pool_want7[] = {0.5, 0.25, 1.25, 1, 2.25, -0.75, 0.25, 0};

static const pool_case pool_cases[] = {
    {0, 3, 3, 2, 2, 1, 1, 1, 0, 2, 1, 1, 0, 3, 3, pool_want0},
    {0, 3, 3, 2, 2, 1, 1, 1, 0, 2, 1, 1, 1, 3, 3, pool_want1},
    {1, 3, 3, 2, 2, 1, 1, 1, 0, 2, 1, 1, 0, 3, 3, pool_want2},
    {0, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, 3, 3, pool_want3},
    {0, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1, 0, 3, 3, pool_want4},
    {1, 2, 3, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 5, 3, pool_want5},
    {0, 2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 4, 5, pool_want6},
    {0, 2, 2, 3, 3, 1, 1, 0, 0, 0, 0, 1, 0, 2, 2, pool_want7},
};

static void test_pool_onnx(void) {
  enum { H = 5, W = 6, C = 2 };
  float x[H * W * C];
  for (int h = 0; h < H; h++)
    for (int w = 0; w < W; w++)
      for (int c = 0; c < C; c++)
        x[(h * W + w) * C + c] = (float)((h * 7 + w * 3 + c * 5) % 11) - 4.5f + 0.25f * (float)c;
  for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
    const pool_case *t = &pool_cases[i];
    cn_pool_attrs a = {.ph = t->kh,
                       .pw = t->kw,
                       .sh = t->sh,
                       .sw = t->sw,
                       .padding = CN_PAD_VALID,
                       .pad_top = t->pt,
                       .pad_left = t->pl,
                       .pad_bottom = t->pb,
                       .pad_right = t->pr,
                       .ceil_mode = t->ceil_mode,
                       .count_include_pad = t->count_include_pad,
                       .dh = t->dh,
                       .dw = t->dw};
    cn_status st;
    cn_graph *g =
        build(t->is_max ? &cn_op_maxpool : &cn_op_avgpool, &a, (cn_shape[]){S(3, H, W, C)}, 1, &st);
    CHECK_OK(st);
    if (!g) continue;
    CHECK(layer(g)->shape.dim[0] == t->want_h && layer(g)->shape.dim[1] == t->want_w);
    if (layer(g)->shape.dim[0] != t->want_h || layer(g)->shape.dim[1] != t->want_w) {
      fprintf(stderr, "  pool case %zu: got %lldx%lld\n", i, (long long)layer(g)->shape.dim[0],
              (long long)layer(g)->shape.dim[1]);
      cn_graph_free(g);
      continue;
    }
    float *y = run(g, 1, (const float *[]){x});
    double d = cn_test_max_abs_diff(y, t->want, (size_t)(t->want_h * t->want_w * C));
    CHECK(d < 1e-5);
    if (d >= 1e-5) fprintf(stderr, "  pool case %zu differs by %g\n", i, d);
    free(y);
    cn_graph_free(g);
  }
  /* The Keras path is unchanged, and dilation 1 or explicit zero pads do not leave it: SAME
   * average pooling excludes padding. */
  cn_pool_attrs keras = {.ph = 2, .pw = 2, .sh = 2, .sw = 2, .padding = CN_PAD_SAME, .dh = 1};
  const float nine[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, want_excluded[] = {3, 4.5f, 7.5f, 9};
  check_single(&cn_op_avgpool, &keras, S(3, 3, 3, 1), 1, nine, want_excluded, 4, 1e-6);
  /* The same with count_include_pad: the padded cells (TensorFlow's split) count. */
  keras.count_include_pad = 1;
  const float want_included[] = {3, 9 / 4.0f, 15 / 4.0f, 9 / 4.0f};
  check_single(&cn_op_avgpool, &keras, S(3, 3, 3, 1), 1, nine, want_included, 4, 1e-6);

  cn_pool_attrs bad = {.ph = 2, .pw = 2, .sh = 1, .sw = 1, .padding = CN_PAD_SAME, .pad_top = 1};
  expect_fail(&cn_op_maxpool, &bad, (cn_shape[]){S(3, 3, 3, 1)}, 1, CN_ERR_UNSUPPORTED);
  bad = (cn_pool_attrs){.ph = 5, .pw = 2, .sh = 1, .sw = 1, .pad_top = 1}; /* 5 > 3 + 1 */
  expect_fail(&cn_op_maxpool, &bad, (cn_shape[]){S(3, 3, 3, 1)}, 1, CN_ERR_SHAPE);
  bad = (cn_pool_attrs){.ph = 2, .pw = 2, .sh = 1, .sw = 1, .pad_top = -1};
  expect_fail(&cn_op_avgpool, &bad, (cn_shape[]){S(3, 3, 3, 1)}, 1, CN_ERR_FORMAT);
  bad = (cn_pool_attrs){.ph = 2, .pw = 2, .sh = 0, .sw = 1, .ceil_mode = 1};
  expect_fail(&cn_op_avgpool, &bad, (cn_shape[]){S(3, 3, 3, 1)}, 1, CN_ERR_FORMAT);
}

/* MaxPool's Indices: flat NCHW indices of the first maximum, for two samples and both storage
 * orders. Channel 0 has a clear maximum per window, channel 1 only ties (the first wins). */
static void test_pool_indices(void) {
  static const float img[9] = {1, 5, 2, 3, 4, 9, 0, 8, 7};
  float x[2 * 9 * 2];
  for (int b = 0; b < 2; b++)
    for (int p = 0; p < 9; p++) x[(b * 9 + p) * 2] = img[p], x[(b * 9 + p) * 2 + 1] = 1.0f;
  cn_pool_attrs a = {.ph = 2, .pw = 2, .sh = 1, .sw = 1, .padding = CN_PAD_VALID, .indices = 1};
  /* (oy, ox, c) NHWC; plane (n * C + c) * 9 */
  static const float rows[8] = {1, 9 + 0, 5, 9 + 1, 7, 9 + 3, 5, 9 + 4};
  float *y = run_single(&cn_op_maxpool, &a, S(3, 3, 3, 2), 2, x, 16);
  for (int i = 0; i < 8; i++) {
    CHECK(y[i] == rows[i]);
    CHECK(y[8 + i] == rows[i] + 18);
  }
  free(y);
  a.storage_order = 1; /* column major: h + w * H */
  static const float cols[8] = {3, 9 + 0, 7, 9 + 3, 5, 9 + 1, 7, 9 + 4};
  y = run_single(&cn_op_maxpool, &a, S(3, 3, 3, 2), 1, x, 8);
  for (int i = 0; i < 8; i++) CHECK(y[i] == cols[i]);
  free(y);
  a.indices = 2;
  expect_fail(&cn_op_maxpool, &a, (cn_shape[]){S(3, 3, 3, 2)}, 1, CN_ERR_FORMAT);
}

/* Empty tensors (ONNX's allowzero Reshape of a (0, 3, 4) input): a 0 in the target is real, and
 * the element counts must still agree. */
static void test_empty_reshape(void) {
  cn_reshape_attrs a = {S(3, 3, 4, 0)};
  cn_status st;
  cn_graph *g = build(&cn_op_reshape, &a, (cn_shape[]){S(3, 0, 3, 4)}, 1, &st);
  CHECK_OK(st);
  if (g) {
    CHECK(cn_shape_numel(&layer(g)->shape) == 0 && layer(g)->shape.dim[2] == 0);
    float dummy = 0;
    free(run(g, 1, (const float *[]){&dummy}));
    cn_graph_free(g);
  }
  expect_fail(&cn_op_reshape, &a, (cn_shape[]){S(2, 3, 4)}, 1, CN_ERR_SHAPE);
}

int main(void) {
  test_binary();
  test_prelu();
  test_unary();
  test_softmax();
  test_lrn();
  test_transpose();
  test_pad();
  test_gemm();
  test_matmul();
  test_resize();
  test_conv_transpose();
  test_pool_onnx();
  test_pool_indices();
  test_empty_reshape();
  return cn_test_finish();
}
