/* Backward passes of the ONNX-semantics operators (src/ops/ops_onnx.h): finite-difference checks
 * (tests/gradcheck.h) of every unary kind, every binary kind with broadcasting along every axis
 * and constant operands (broadcast over the batch too), PRelu, Softmax / LogSoftmax, each Pad
 * mode, transposes, Gemm, MatMul in both forms and LRN; bitwise thread invariance (1 against 2
 * threads) on shapes large enough for the parallel paths; and the tie rule of Max / Min. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "gradcheck.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

#define S cn_test_shape

static void check_grad(const cn_gradcheck_case *c) {
  int bad = cn_gradcheck(c);
  if (bad)
    fprintf(stderr, "  ^ %s (seed %llu): %d mismatches\n", c->label, (unsigned long long)c->seed,
            bad);
  CHECK(bad == 0);
}

static void check_threads(const cn_gradcheck_case *c) {
  CHECK(cn_gradcheck_thread_invariant(c));
}

static cn_gradcheck_case one(const char *label, const cn_op *op, const void *attrs, cn_shape in) {
  cn_gradcheck_case c = {.label = label, .op = op, .attrs = attrs, .n_inputs = 1, .seed = 7};
  c.inputs[0] = in;
  return c;
}

static cn_gradcheck_case two(const char *label, const cn_op *op, const void *attrs, cn_shape a,
                             cn_shape b) {
  cn_gradcheck_case c = one(label, op, attrs, a);
  c.n_inputs = 2;
  c.inputs[1] = b;
  return c;
}

/* ---- a test op: another op on moved operands ---------------------------------------------------
 * The checker draws inputs in [-s, s] and parameters in [-0.5, 0.5]. Sqrt, Log, Reciprocal, Div
 * and Pow need operands away from zero (and positive bases): `shift` adds a constant to every
 * operand. Max and Min need operands without near ties, which random values broadcast against
 * each other often have: `spread` adds to every element, from the first call on (the unperturbed
 * check point), the offset that moves it onto one grid of distinct values in [-1, 1], spaced
 * 2 / (elements of all operands) apart, in a scrambled order. Both add constants, so the wrapped
 * op's gradients are the inner op's. */

typedef struct shifted_attrs {
  union { /* first: the inner op reads node->attrs as its own attributes */
    cn_unary_attrs unary;
    cn_binary_attrs binary;
  } inner;
  const cn_op *op;
  float shift;
  int spread;
} shifted_attrs;

enum { SHIFT_MAX_IN = 4, SCRAMBLE = 1000003 /* a prime above any element count here */ };

typedef struct shifted_run {
  cn_tensor in[SHIFT_MAX_IN];
  float *params[CN_MAX_PARAMS];
} shifted_run;

/* The spread offsets of every element (inputs, then parameters), made at the first call. */
static const float *spread_offsets(cn_node *node, const cn_tensor *in) {
  if (node->cache) return node->cache;
  int64_t total = 0, u = 0;
  for (int i = 0; i < node->n_inputs; i++) total += cn_shape_numel(&in[i].shape);
  for (int k = 0; k < node->n_params; k++) total += cn_shape_numel(&node->params[k].shape);
  float *off = malloc((size_t)total * sizeof(float));
  for (int i = 0; i < node->n_inputs; i++)
    for (int64_t e = 0; e < cn_shape_numel(&in[i].shape); e++, u++)
      off[u] = -1.0f + 2.0f * ((float)(u * SCRAMBLE % total) + 0.5f) / (float)total - in[i].data[e];
  for (int k = 0; k < node->n_params; k++)
    for (int64_t e = 0; e < cn_shape_numel(&node->params[k].shape); e++, u++)
      off[u] = -1.0f + 2.0f * ((float)(u * SCRAMBLE % total) + 0.5f) / (float)total -
               node->params[k].data[e];
  node->cache = off;
  return off;
}

static void shifted_release(cn_node *node) {
  free(node->cache);
  node->cache = NULL;
}

/* x + shift (+ the spread offsets from *off on), advancing *off. */
static float *moved_copy(const float *x, int64_t n, float shift, const float **off) {
  float *y = malloc((size_t)(n ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) y[i] = x[i] + shift + (*off ? (*off)[i] : 0.0f);
  if (*off) *off += n;
  return y;
}

/* Moved copies of the inputs and (swapped into the node) of the parameters. */
static void shift_begin(cn_node *node, const cn_tensor *in, shifted_run *r) {
  const shifted_attrs *a = node->attrs;
  const float *off = a->spread ? spread_offsets(node, in) : NULL;
  for (int i = 0; i < node->n_inputs; i++) {
    r->in[i].shape = in[i].shape;
    r->in[i].data = moved_copy(in[i].data, cn_shape_numel(&in[i].shape), a->shift, &off);
  }
  for (int k = 0; k < node->n_params; k++) {
    r->params[k] = node->params[k].data;
    node->params[k].data =
        moved_copy(r->params[k], cn_shape_numel(&node->params[k].shape), a->shift, &off);
  }
}

static void shift_end(cn_node *node, shifted_run *r) {
  for (int i = 0; i < node->n_inputs; i++) free(r->in[i].data);
  for (int k = 0; k < node->n_params; k++) {
    free(node->params[k].data);
    node->params[k].data = r->params[k];
  }
}

static cn_status shifted_infer(cn_graph *g, cn_node *node) {
  const shifted_attrs *a = node->attrs;
  return a->op->infer(g, node);
}

static void shifted_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const shifted_attrs *a = node->attrs;
  shifted_run r;
  shift_begin(node, in, &r);
  a->op->forward(node, r.in, out, ex);
  shift_end(node, &r);
}

static void shifted_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  const shifted_attrs *a = node->attrs;
  shifted_run r;
  shift_begin(node, in, &r);
  a->op->backward(node, r.in, out, dout, din, dparams, ex);
  shift_end(node, &r);
}

static size_t shifted_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const shifted_attrs *a = node->attrs;
  return a->op->backward_scratch ? a->op->backward_scratch(g, node, batch) : 0;
}

static const cn_op shifted_op = {
    .type = "Shifted",
    .attrs_size = sizeof(shifted_attrs),
    .min_inputs = 1,
    .max_inputs = SHIFT_MAX_IN,
    .infer = shifted_infer,
    .forward = shifted_forward,
    .release = shifted_release,
    .backward = shifted_backward,
    .backward_scratch = shifted_backward_scratch,
};

/* ---- Unary ----------------------------------------------------------------------------------- */

static void test_unary(void) {
  struct {
    const char *label;
    cn_unary_attrs a;
    float scale, shift; /* inputs in [shift - scale, shift + scale] */
  } cases[] = {
      {"Clip", {.kind = CN_UN_CLIP, .lo = -1.1f, .hi = 1.3f}, 2.5f, 0},
      {"Clip lo only", {.kind = CN_UN_CLIP, .lo = -0.7f, .hi = INFINITY}, 2.5f, 0},
      {"Clip lo > hi", {.kind = CN_UN_CLIP, .lo = 1.0f, .hi = -1.0f}, 2.5f, 0},
      {"HardSigmoid", {.kind = CN_UN_HARD_SIGMOID, .alpha = 0.2f, .beta = 0.5f}, 3.7f, 0},
      {"HardSigmoid 1/6", {.kind = CN_UN_HARD_SIGMOID, .alpha = 1.0f / 6, .beta = 0.5f}, 4.7f, 0},
      {"HardSwish", {.kind = CN_UN_HARD_SWISH}, 4.7f, 0},
      {"Elu", {.kind = CN_UN_ELU, .alpha = 1.3f}, 2.5f, 0},
      {"LeakyRelu", {.kind = CN_UN_LEAKY_RELU, .alpha = 0.1f}, 2.5f, 0},
      {"Relu", {.kind = CN_UN_RELU}, 2.5f, 0},
      {"Sigmoid", {.kind = CN_UN_SIGMOID}, 3, 0},
      {"Tanh", {.kind = CN_UN_TANH}, 2, 0},
      {"Softplus", {.kind = CN_UN_SOFTPLUS}, 4, 0},
      {"Neg", {.kind = CN_UN_NEG}, 2, 0},
      {"Abs", {.kind = CN_UN_ABS}, 2.5f, 0},
      {"Sqrt", {.kind = CN_UN_SQRT}, 1, 2},
      {"Exp", {.kind = CN_UN_EXP}, 2, 0},
      {"Log", {.kind = CN_UN_LOG}, 1, 2},
      {"Reciprocal", {.kind = CN_UN_RECIPROCAL}, 1, 2},
      {"Reciprocal negative", {.kind = CN_UN_RECIPROCAL}, 1, -2},
      {"Floor", {.kind = CN_UN_FLOOR}, 2.5f, 0},
      {"Ceil", {.kind = CN_UN_CEIL}, 2.5f, 0},
      {"Erf", {.kind = CN_UN_ERF}, 2, 0},
      {"Identity", {.kind = CN_UN_IDENTITY}, 2, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    shifted_attrs sa = {.op = &cn_op_unary, .shift = cases[i].shift};
    sa.inner.unary = cases[i].a;
    int shifted = cases[i].shift != 0;
    const cn_op *op = shifted ? &shifted_op : &cn_op_unary;
    const void *attrs = shifted ? (const void *)&sa : (const void *)&cases[i].a;
    cn_gradcheck_case c = one(cases[i].label, op, attrs, S(3, 3, 4, 5));
    /* Distinct inputs (s * (2 (i + 1/2) / 120 - 1)): none within the step of a kink. */
    c.distinct = 1;
    c.input_scale = cases[i].scale;
    c.step = 1e-3f;
    c.seed = 100 + i;
    check_grad(&c);
    c.inputs[0] = S(3, 16, 16, 40), c.batch = 4; /* over the parallel threshold */
    c.distinct = 0;
    check_threads(&c);
  }
}

/* ---- Binary and PRelu ------------------------------------------------------------------------ */

static const char *bin_name(cn_binary_kind k) {
  static const char *names[] = {"Add",   "Sub",  "Mul",  "Div",         "Max",     "Min",
                                "Mean",  "Pow",  "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
                                "Equal", "Where"};
  _Static_assert(sizeof names / sizeof *names == CN_BIN_COUNT, "a name for every kind");
  return names[k];
}

/* Div and Pow on operands shifted into [1, 3] (Pow's base then positive), Max, Min, the
 * comparisons and Where on operands spread apart (no near ties, no condition near 0). */
static cn_gradcheck_case binary_check(const char *label, const cn_binary_attrs *a,
                                      shifted_attrs *sa, int n_inputs, const cn_shape *ins,
                                      int batch, uint64_t seed) {
  *sa = (shifted_attrs){.op = &cn_op_binary};
  sa->inner.binary = *a;
  sa->shift = a->kind == CN_BIN_DIV || a->kind == CN_BIN_POW ? 2.0f : 0.0f;
  sa->spread = a->kind == CN_BIN_MAX || a->kind == CN_BIN_MIN || a->kind >= CN_BIN_LESS;
  int wrap = sa->shift != 0 || sa->spread;
  cn_gradcheck_case c = {.label = label, .n_inputs = n_inputs, .seed = seed, .batch = batch};
  c.op = wrap ? &shifted_op : &cn_op_binary;
  c.attrs = wrap ? (const void *)sa : (const void *)a;
  for (int i = 0; i < n_inputs; i++) c.inputs[i] = ins[i];
  if (sa->spread) c.step = 1e-3f; /* below the grid's spacing (> 2.5e-3 in the checks here) */
  return c;
}

static void binary_case(const char *label, cn_binary_attrs a, int n_inputs, const cn_shape *ins,
                        int batch, uint64_t seed, int threads_too) {
  shifted_attrs sa;
  cn_gradcheck_case c = binary_check(label, &a, &sa, n_inputs, ins, batch, seed);
  check_grad(&c);
  if (threads_too) check_threads(&c);
}

static void test_binary_kinds(void) {
  /* Two activations of one shape, every kind. */
  cn_shape same[2] = {S(3, 3, 4, 5), S(3, 3, 4, 5)};
  for (int k = 0; k < CN_BIN_WHERE; k++) {
    cn_binary_attrs a = {(cn_binary_kind)k, CN_CONST_NONE, {0}};
    binary_case(bin_name(a.kind), a, 2, same, 2, 200 + (uint64_t)k, 1);
  }
  /* Every broadcast pattern of two activations, every kind: each axis alone, all, and both
   * operands broadcasting (a into b along one axis, b into a along another). */
  cn_shape pairs[][2] = {
      {S(3, 3, 4, 5), S(3, 1, 4, 5)}, {S(3, 3, 4, 5), S(3, 3, 1, 5)},
      {S(3, 3, 4, 5), S(3, 3, 4, 1)}, {S(3, 3, 4, 5), S(3, 1, 1, 1)},
      {S(3, 1, 4, 1), S(3, 3, 1, 5)}, {S(3, 3, 1, 5), S(3, 3, 4, 1)},
  };
  for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++)
    for (int k = 0; k < CN_BIN_WHERE; k++) {
      cn_binary_attrs a = {(cn_binary_kind)k, CN_CONST_NONE, {0}};
      binary_case(bin_name(a.kind), a, 2, pairs[p], 2, 300 + 10 * p + (uint64_t)k, 0);
      cn_shape swapped[2] = {pairs[p][1], pairs[p][0]};
      binary_case(bin_name(a.kind), a, 2, swapped, 3, 400 + 10 * p + (uint64_t)k, 0);
    }
}

/* Where(cond, a, b): the gradient goes to the operand picked, none to cond; broadcasting and a
 * constant at each position. */
static void test_where(void) {
  cn_binary_attrs a = {CN_BIN_WHERE, CN_CONST_NONE, {0}};
  cn_shape same[3] = {S(3, 3, 4, 5), S(3, 3, 4, 5), S(3, 3, 4, 5)};
  binary_case("Where", a, 3, same, 2, 900, 1);
  cn_shape spread[3] = {S(3, 3, 1, 5), S(3, 1, 4, 5), S(3, 3, 4, 1)};
  binary_case("Where broadcast", a, 3, spread, 2, 901, 0);
  cn_const_operand at[] = {CN_CONST_FIRST, CN_CONST_SECOND, CN_CONST_LAST};
  for (int p = 0; p < 3; p++) {
    cn_binary_attrs c = {CN_BIN_WHERE, at[p], S(2, 4, 1)};
    binary_case("Where constant", c, 2, same, 2, 910 + (uint64_t)p, 0);
  }
}

static void test_binary_constants(void) {
  /* Constant B of every rank, broadcast over the batch and along each axis, first and last. */
  cn_shape consts[] = {S(0),          S(1, 5),       S(1, 1),          S(2, 4, 1),
                       S(3, 3, 1, 5), S(3, 1, 4, 1), S(4, 1, 3, 4, 5), S(4, 1, 1, 1, 1)};
  cn_shape in = S(3, 3, 4, 5);
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++)
    for (int k = 0; k < CN_BIN_WHERE; k++)
      for (int first = 0; first <= 1; first++) {
        cn_binary_attrs a = {(cn_binary_kind)k, first ? CN_CONST_FIRST : CN_CONST_LAST, consts[i]};
        binary_case(bin_name(a.kind), a, 1, &in, 3, 500 + 20 * i + 2 * (uint64_t)k + first, 0);
      }
  /* A constant broadcasting the activation (the output is larger than the input). */
  cn_shape small = S(3, 3, 1, 5);
  for (int k = 0; k < CN_BIN_WHERE; k++) {
    cn_binary_attrs a = {(cn_binary_kind)k, CN_CONST_LAST, S(2, 4, 1)};
    binary_case(bin_name(a.kind), a, 1, &small, 2, 700 + (uint64_t)k, 0);
  }
  /* Folds of three or four operands: Add (Sum), Mul, Max, Min, Mean, with and without B. */
  cn_binary_kind folds[] = {CN_BIN_ADD, CN_BIN_MUL, CN_BIN_MAX, CN_BIN_MIN, CN_BIN_MEAN};
  cn_shape three[] = {S(3, 3, 4, 5), S(3, 3, 1, 5), S(3, 1, 4, 5)};
  for (size_t f = 0; f < sizeof folds / sizeof folds[0]; f++) {
    cn_binary_attrs a = {folds[f], CN_CONST_NONE, {0}};
    binary_case(bin_name(a.kind), a, 3, three, 2, 800 + f, 0);
    a = (cn_binary_attrs){folds[f], CN_CONST_LAST, S(1, 5)};
    binary_case(bin_name(a.kind), a, 3, three, 2, 810 + f, 0);
    a = (cn_binary_attrs){folds[f], CN_CONST_FIRST, S(2, 4, 1)};
    binary_case(bin_name(a.kind), a, 3, three, 2, 820 + f, 0);
    cn_shape one_in = S(3, 3, 4, 5);
    a = (cn_binary_attrs){folds[f], CN_CONST_NONE, {0}}; /* a single operand: identity */
    binary_case(bin_name(a.kind), a, 1, &one_in, 2, 830 + f, 0);
  }
}

/* Shapes over the parallel threshold (4 x 10240 outputs) through each reduction path: the same
 * shape, a kept prefix of at least 16 (blocks of prefixes), and chunks of the first broadcast
 * axis (per channel, scalar, broadcast over the batch only, and a short first broadcast axis). */
static void test_binary_threads(void) {
  struct {
    cn_binary_kind kind;
    cn_const_operand which;
    cn_shape b, x, y;
    int inputs;
  } cases[] = {
      {CN_BIN_MUL, CN_CONST_NONE, {0}, S(3, 16, 16, 40), S(3, 16, 16, 40), 2},
      {CN_BIN_MUL, CN_CONST_NONE, {0}, S(3, 16, 16, 40), S(3, 16, 16, 1), 2},
      {CN_BIN_DIV, CN_CONST_NONE, {0}, S(3, 16, 16, 40), S(3, 1, 1, 40), 2},
      {CN_BIN_SUB, CN_CONST_NONE, {0}, S(3, 16, 16, 40), S(3, 1, 16, 40), 2},
      {CN_BIN_MAX, CN_CONST_LAST, S(1, 40), S(3, 16, 16, 40), {0}, 1},
      {CN_BIN_ADD, CN_CONST_FIRST, S(0), S(3, 16, 16, 40), {0}, 1},
      {CN_BIN_POW, CN_CONST_LAST, S(4, 1, 16, 16, 40), S(3, 16, 16, 40), {0}, 1},
      {CN_BIN_MEAN, CN_CONST_LAST, S(3, 1, 16, 1), S(3, 16, 16, 40), {0}, 1},
      {CN_BIN_MIN, CN_CONST_NONE, {0}, S(3, 2, 64, 80), S(3, 2, 1, 80), 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cn_binary_attrs a = {cases[i].kind, cases[i].which, cases[i].b};
    shifted_attrs sa;
    cn_gradcheck_case c = binary_check("binary threads", &a, &sa, cases[i].inputs,
                                       (cn_shape[]){cases[i].x, cases[i].y}, 4, 900 + i);
    check_threads(&c);
    c.max_checks = 16;
    /* Spread over 80k elements, Max and Min operands lie closer than a usable step. */
    if (a.kind != CN_BIN_MAX && a.kind != CN_BIN_MIN) check_grad(&c);
  }
}

static void test_prelu(void) {
  struct {
    cn_shape small, big; /* slopes for inputs (3, 4, 5) and (16, 16, 40) */
  } slopes[] = {
      {S(1, 5), S(1, 40)},
      {S(3, 1, 1, 5), S(3, 1, 1, 40)},
      {S(2, 4, 1), S(2, 16, 1)},
      {S(1, 1), S(1, 1)},
      {S(3, 3, 4, 5), S(3, 16, 16, 40)},
      {S(4, 1, 3, 1, 5), S(4, 1, 16, 1, 40)},
  };
  for (size_t i = 0; i < sizeof slopes / sizeof slopes[0]; i++) {
    cn_prelu_attrs a = {slopes[i].small};
    cn_gradcheck_case c = one("PRelu", &cn_op_prelu, &a, S(3, 3, 4, 5));
    c.distinct = 1, c.input_scale = 2, c.step = 1e-3f, c.batch = 3, c.seed = 1000 + i;
    check_grad(&c);
    a.slope_shape = slopes[i].big;
    c.inputs[0] = S(3, 16, 16, 40), c.batch = 4, c.distinct = 0;
    check_threads(&c);
  }
}

/* Ties go to the first operand holding the value, for Max and Min, over inputs and constants. */
static cn_graph *tie_graph(cn_binary_attrs a, int n_inputs, cn_node **node) {
  cn_graph *g = cn_graph_new();
  int ids[2], id;
  for (int i = 0; i < n_inputs; i++) {
    cn_input_attrs in = {S(1, 4)};
    cn_graph_add(g, &cn_op_input, i ? "b" : "a", NULL, 0, &in, &ids[i]);
  }
  CHECK_OK(cn_graph_add(g, &cn_op_binary, "op", ids, n_inputs, &a, &id));
  CHECK_OK(cn_graph_alloc_params(g));
  *node = &g->nodes[id];
  return g;
}

static void tie_run(cn_node *node, int n_inputs, float **x, float **dx, float *dparam) {
  cn_tensor in[2], din[2], out = {S(2, 1, 4), NULL}, dout = out;
  float y[4], dy[4] = {1, 1, 1, 1};
  out.data = y, dout.data = dy;
  for (int i = 0; i < n_inputs; i++) {
    in[i] = (cn_tensor){S(2, 1, 4), x[i]};
    din[i] = (cn_tensor){S(2, 1, 4), dx[i]};
  }
  cn_exec ex = {.batch = 1, .threads = 1, .training = 1};
  node->op->forward(node, in, &out, &ex);
  node->op->backward(node, in, &out, &dout, din, (float *[CN_MAX_PARAMS]){dparam}, &ex);
}

static void test_ties(void) {
  float a[4] = {1, 2, 3, 4}, b[4] = {1, 5, 3, 0};
  for (int is_max = 0; is_max <= 1; is_max++) {
    cn_binary_attrs attrs = {is_max ? CN_BIN_MAX : CN_BIN_MIN, CN_CONST_NONE, {0}};
    cn_node *node;
    cn_graph *g = tie_graph(attrs, 2, &node);
    float da[4] = {0}, db[4] = {0};
    tie_run(node, 2, (float *[]){a, b}, (float *[]){da, db}, NULL);
    CHECK(da[0] == 1 && db[0] == 0 && da[2] == 1 && db[2] == 0); /* ties: the first */
    CHECK(is_max ? da[1] == 0 && db[1] == 1 : da[1] == 1 && db[1] == 0);
    CHECK(is_max ? da[3] == 1 && db[3] == 0 : da[3] == 0 && db[3] == 1);
    cn_graph_free(g);

    /* B first, tied with the input at every element: B takes the whole gradient. */
    attrs = (cn_binary_attrs){attrs.kind, CN_CONST_FIRST, S(1, 4)};
    g = tie_graph(attrs, 1, &node);
    memcpy(node->params[0].data, a, sizeof a);
    float dx[4] = {0}, dB[4] = {0};
    tie_run(node, 1, (float *[]){a}, (float *[]){dx}, dB);
    CHECK(dB[0] == 1 && dB[1] == 1 && dB[2] == 1 && dB[3] == 1);
    CHECK(dx[0] == 0 && dx[1] == 0 && dx[2] == 0 && dx[3] == 0);
    cn_graph_free(g);
  }
}

/* ---- Softmax, Pad, Transpose, LRN ------------------------------------------------------------ */

static void test_softmax(void) {
  struct {
    int axis, flatten;
  } cases[] = {{1, 0}, {2, 0}, {3, 0}, {-1, 0}, {-2, 0}, {1, 1}, {2, 1}, {3, 1}, {-1, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int log_mode = 0; log_mode <= 1; log_mode++) {
      cn_softmax_attrs a = {.axis = cases[i].axis, .log = log_mode, .flatten = cases[i].flatten};
      cn_gradcheck_case c =
          one(log_mode ? "LogSoftmax" : "Softmax", &cn_op_softmax, &a, S(3, 3, 4, 5));
      c.input_scale = 2, c.seed = 1100 + 2 * i + (uint64_t)log_mode;
      check_grad(&c);
      c.inputs[0] = S(3, 16, 16, 40), c.batch = 4;
      check_threads(&c);
    }
  cn_softmax_attrs rank1 = {.axis = 1};
  cn_gradcheck_case c = one("Softmax rank 1", &cn_op_softmax, &rank1, S(1, 7));
  check_grad(&c);
}

static void test_pad(void) {
  struct {
    const char *label;
    cn_pad_attrs a;
  } cases[] = {
      {"Pad constant", {CN_PADMODE_CONSTANT, 0.5f, 3, {1, 0, 2}, {2, 1, 0}}},
      {"Pad constant crop", {CN_PADMODE_CONSTANT, 0, 3, {-1, 2, 0}, {1, -2, -1}}},
      {"Pad reflect", {CN_PADMODE_REFLECT, 0, 3, {2, 1, 3}, {1, 3, 4}}},
      {"Pad reflect crop", {CN_PADMODE_REFLECT, 0, 3, {-1, 0, 2}, {2, -1, 0}}},
      {"Pad edge", {CN_PADMODE_EDGE, 0, 3, {3, 0, 2}, {1, 4, 2}}},
      {"Pad edge crop", {CN_PADMODE_EDGE, 0, 3, {-2, 1, 0}, {3, 0, -1}}},
      {"Pad wrap", {CN_PADMODE_WRAP, 0, 3, {2, 1, 3}, {1, 3, 4}}},
      {"Pad wrap several times", {CN_PADMODE_WRAP, 0, 3, {7, 0, 11}, {5, 9, 0}}},
      {"Pad wrap crop", {CN_PADMODE_WRAP, 0, 3, {-1, 5, 0}, {2, -2, 6}}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cn_gradcheck_case c = one(cases[i].label, &cn_op_pad, &cases[i].a, S(3, 4, 5, 6));
    c.seed = 1200 + i, c.batch = 2;
    check_grad(&c);
    c.inputs[0] = S(3, 16, 16, 40), c.batch = 4;
    check_threads(&c);
  }
  cn_pad_attrs edge1 = {CN_PADMODE_EDGE, 0, 1, {3}, {2}}; /* rank 1, a single element */
  cn_gradcheck_case c = one("Pad edge of one", &cn_op_pad, &edge1, S(1, 1));
  check_grad(&c);
  cn_pad_attrs reflect1 = {CN_PADMODE_REFLECT, 0, 2, {0, 2}, {0, 1}};
  c = one("Pad reflect rank 2", &cn_op_pad, &reflect1, S(2, 3, 4));
  check_grad(&c);
}

static void test_transpose(void) {
  struct {
    int rank, perm[4];
    cn_shape in;
  } cases[] = {
      {1, {0}, S(1, 7)},
      {2, {1, 0}, S(2, 3, 5)},
      {3, {0, 1, 2}, S(3, 3, 4, 5)},
      {3, {2, 0, 1}, S(3, 3, 4, 5)},
      {3, {1, 2, 0}, S(3, 3, 4, 5)},
      {3, {1, 0, 2}, S(3, 3, 4, 5)},
      {3, {0, 2, 1}, S(3, 3, 4, 5)},
      {3, {2, 1, 0}, S(3, 3, 4, 5)},
      {4, {3, 0, 2, 1}, S(4, 2, 3, 4, 5)},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cn_transpose_attrs a = {.rank = cases[i].rank};
    memcpy(a.perm, cases[i].perm, sizeof cases[i].perm);
    cn_gradcheck_case c = one("Transpose", &cn_op_transpose, &a, cases[i].in);
    c.seed = 1300 + i, c.batch = 3;
    check_grad(&c);
    if (cases[i].rank == 3) {
      c.inputs[0] = S(3, 16, 16, 40), c.batch = 4;
      check_threads(&c);
    }
  }
}

static void test_lrn(void) {
  int sizes[] = {1, 3, 4, 5};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    cn_lrn_attrs a = {sizes[i], 0.8f, 0.75f, 1.5f};
    cn_gradcheck_case c = one("LRN", &cn_op_lrn, &a, S(3, 2, 3, 7));
    c.input_scale = 2, c.seed = 1400 + i;
    check_grad(&c);
    c.inputs[0] = S(3, 16, 16, 40), c.batch = 4;
    check_threads(&c);
  }
}

/* ---- Gemm and MatMul ------------------------------------------------------------------------- */

static void test_gemm(void) {
  enum { K = 6, N = 5 };
  cn_shape cs[] = {S(0), S(1, 1), S(1, N), S(2, 1, 1), S(2, 1, N)};
  for (int trans = 0; trans <= 1; trans++) {
    cn_gemm_attrs a = {.n = N, .trans_b = trans, .alpha = 0.7f, .beta = -1.3f};
    cn_gradcheck_case c = one("Gemm", &cn_op_gemm, &a, S(1, K));
    c.batch = 4, c.seed = 1500 + (uint64_t)trans;
    check_grad(&c); /* no C */
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
      a.has_c = 1, a.c_shape = cs[i];
      c.seed = 1510 + 10 * (uint64_t)trans + i;
      check_grad(&c);
    }
    cn_gemm_attrs n1 = {.n = 1, .trans_b = trans, .alpha = 1.5f, .beta = 0.5f, .has_c = 1};
    n1.c_shape = S(1, 1);
    c = one("Gemm n=1", &cn_op_gemm, &n1, S(1, K));
    check_grad(&c);
    /* Large enough for several blocks (two threads busy). */
    cn_gemm_attrs big = {.n = 128, .trans_b = trans, .alpha = 0.5f, .beta = 2, .has_c = 1};
    big.c_shape = S(1, 128);
    c = one("Gemm big", &cn_op_gemm, &big, S(1, 256));
    c.batch = 40, c.max_checks = 16, c.seed = 1530 + (uint64_t)trans;
    check_grad(&c);
    c.batch = 260; /* dC's sums over 260 x 128 run in parallel too */
    check_threads(&c);
    big.c_shape = S(0);
    check_threads(&c);
  }
}

static void test_matmul(void) {
  /* Constant B. */
  struct {
    cn_shape a, b;
    int batch;
  } consts[] = {
      {S(1, 6), S(2, 6, 4), 3},
      {S(1, 6), S(1, 6), 3},
      {S(2, 3, 6), S(2, 6, 4), 2},
      {S(2, 3, 6), S(1, 6), 2},
      {S(3, 2, 3, 6), S(2, 6, 4), 2},
      {S(3, 2, 3, 6), S(3, 2, 6, 4), 2},
      {S(3, 2, 3, 6), S(4, 1, 2, 6, 4), 2},
      {S(3, 2, 3, 6), S(4, 1, 1, 6, 4), 2},
      {S(3, 1, 3, 6), S(3, 2, 6, 4), 2},
      {S(4, 2, 1, 3, 6), S(3, 3, 6, 4), 2},
  };
  for (size_t i = 0; i < sizeof consts / sizeof consts[0]; i++) {
    cn_matmul_attrs a = {.const_b = 1, .b_shape = consts[i].b};
    cn_gradcheck_case c = one("MatMul const B", &cn_op_matmul, &a, consts[i].a);
    c.batch = consts[i].batch, c.seed = 1600 + i;
    check_grad(&c);
  }
  /* Two activations, broadcasting between the batch and the matrix dims. */
  cn_shape pairs[][2] = {
      {S(2, 3, 6), S(2, 6, 4)},
      {S(3, 2, 3, 6), S(3, 2, 6, 4)},
      {S(3, 1, 3, 6), S(3, 3, 6, 4)},
      {S(3, 3, 3, 6), S(3, 1, 6, 4)},
      {S(4, 2, 1, 3, 6), S(4, 1, 3, 6, 4)},
      {S(2, 4, 4), S(2, 4, 1)},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    cn_matmul_attrs a = {0};
    cn_gradcheck_case c = two("MatMul", &cn_op_matmul, &a, pairs[i][0], pairs[i][1]);
    c.batch = 2, c.seed = 1700 + i;
    check_grad(&c);
  }
  /* Thread invariance with several blocks: the fast path (one B for all rows), B broadcast over
   * the batch through the general path, and A broadcast against two activations. */
  cn_matmul_attrs fast = {.const_b = 1, .b_shape = S(2, 256, 128)};
  cn_gradcheck_case c = one("MatMul big", &cn_op_matmul, &fast, S(2, 10, 256));
  c.batch = 4, c.max_checks = 16, c.seed = 1750;
  check_grad(&c);
  check_threads(&c);
  cn_matmul_attrs general = {.const_b = 1, .b_shape = S(4, 1, 2, 64, 96)};
  c = one("MatMul broadcast B", &cn_op_matmul, &general, S(3, 1, 40, 64));
  c.batch = 4, c.max_checks = 16, c.seed = 1751;
  check_grad(&c);
  check_threads(&c);
  cn_matmul_attrs acts = {0};
  c = two("MatMul big pair", &cn_op_matmul, &acts, S(3, 1, 40, 64), S(3, 3, 64, 96));
  c.batch = 4, c.max_checks = 16, c.seed = 1752;
  check_grad(&c);
  check_threads(&c);
}

int main(void) {
  test_unary();
  test_binary_kinds();
  test_where();
  test_binary_constants();
  test_binary_threads();
  test_prelu();
  test_ties();
  test_softmax();
  test_pad();
  test_transpose();
  test_lrn();
  test_gemm();
  test_matmul();
  return cn_test_finish();
}
