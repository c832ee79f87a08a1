/* Every operator on small cases: hand-computed values where they are easy to see, naive
 * reference loops (written here, independently of src/kernels) for the rest, and the validation
 * errors of infer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "convnet/model.h"
#include "core/graph.h"
#include "model/model.h"
#include "model/fuse.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

static unsigned rng_state = 12345;
static float rnd(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = rnd();
}

static cn_shape shape3(int64_t a, int64_t b, int64_t c) {
  return cn_shape_make(3, (int64_t[]){a, b, c});
}

/* Input nodes in0..in{n-1} feeding one op node "layer"; parameters random (variances > 0). */
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
  if (*status != CN_OK) return g;
  cn_graph_alloc_params(g);
  cn_node *node = &g->nodes[g->n_nodes - 1];
  for (int p = 0; p < node->n_params; p++) {
    cn_param *param = &node->params[p];
    size_t count = (size_t)cn_shape_numel(&param->shape);
    fill(param->data, count);
    if (strcmp(param->name, "moving_variance") == 0)
      for (size_t i = 0; i < count; i++) param->data[i] = 1.2f + param->data[i];
  }
  return g;
}

static cn_node *layer(cn_graph *g) {
  return &g->nodes[g->n_nodes - 1];
}

static int64_t out_numel(cn_graph *g, int batch) {
  return batch * cn_shape_numel(&layer(g)->shape);
}

/* Builds, runs on one input and returns the output (malloc'd), or NULL if infer failed. */
static float *run1(const cn_op *op, const void *attrs, cn_shape in_shape, int batch, const float *x,
                   cn_graph **graph) {
  cn_status st;
  cn_graph *g = build(op, attrs, &in_shape, 1, &st);
  CHECK_OK(st);
  *graph = g;
  if (st != CN_OK) return NULL;
  float *y = malloc((size_t)out_numel(g, batch) * sizeof(float));
  CHECK_OK(cn_graph_run(g, batch, (const float *[]){x}, (float *[]){y}));
  return y;
}

/* ---- references ---------------------------------------------------------------------------- */

static int ref_out(int in, int k, int s, int d, int same) {
  return same ? (in + s - 1) / s : (in - (k - 1) * d - 1) / s + 1;
}
static int ref_pad(int in, int k, int s, int d, int same) {
  if (!same) return 0;
  int total = (ref_out(in, k, s, d, 1) - 1) * s + (k - 1) * d + 1 - in;
  return total > 0 ? total / 2 : 0;
}

typedef struct conv_case {
  int batch, h, w, c, f, kh, kw, sh, sw, dh, dw, groups, same, bias;
} conv_case;

static void ref_conv(const conv_case *t, const float *x, const float *k, const float *bias,
                     float *y) {
  int oh = ref_out(t->h, t->kh, t->sh, t->dh, t->same),
      ow = ref_out(t->w, t->kw, t->sw, t->dw, t->same);
  int pt = ref_pad(t->h, t->kh, t->sh, t->dh, t->same),
      pl = ref_pad(t->w, t->kw, t->sw, t->dw, t->same);
  int cg = t->c / t->groups, fg = t->f / t->groups;
  for (int b = 0; b < t->batch; b++)
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        for (int fo = 0; fo < t->f; fo++) {
          double acc = bias ? bias[fo] : 0;
          int g = fo / fg;
          for (int ky = 0; ky < t->kh; ky++)
            for (int kx = 0; kx < t->kw; kx++)
              for (int ci = 0; ci < cg; ci++) {
                int iy = oy * t->sh - pt + ky * t->dh, ix = ox * t->sw - pl + kx * t->dw;
                if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w) continue;
                acc += x[((b * t->h + iy) * t->w + ix) * t->c + g * cg + ci] *
                       k[((ky * t->kw + kx) * cg + ci) * t->f + fo];
              }
          y[((b * oh + oy) * ow + ox) * t->f + fo] = (float)(acc > 0 ? acc : 0); /* relu */
        }
}

static void check_conv(conv_case t) {
  cn_conv2d_attrs a = {t.f,           t.kh, t.kw,     t.sh,   t.sw,
                       t.dh,          t.dw, t.groups, t.bias, t.same ? CN_PAD_SAME : CN_PAD_VALID,
                       cn_act_relu(), {0}};
  size_t nx = (size_t)t.batch * t.h * t.w * t.c;
  float *x = malloc(nx * sizeof(float));
  fill(x, nx);
  cn_graph *g;
  float *y = run1(&cn_op_conv2d, &a, shape3(t.h, t.w, t.c), t.batch, x, &g);
  int oh = ref_out(t.h, t.kh, t.sh, t.dh, t.same), ow = ref_out(t.w, t.kw, t.sw, t.dw, t.same);
  CHECK(layer(g)->shape.dim[0] == oh && layer(g)->shape.dim[1] == ow);
  CHECK(layer(g)->n_params == 1 + t.bias);
  CHECK(layer(g)->params[0].shape.dim[2] == t.c / t.groups);
  size_t ny = (size_t)t.batch * oh * ow * t.f;
  float *ref = malloc(ny * sizeof(float));
  ref_conv(&t, x, layer(g)->params[0].data, t.bias ? layer(g)->params[1].data : NULL, ref);
  double diff = y ? cn_test_max_abs_diff(y, ref, ny) : INFINITY;
  if (diff > 1e-4)
    fprintf(stderr, "conv %dx%dx%d k%dx%d s%d,%d d%d,%d g%d same%d: diff %g\n", t.h, t.w, t.c, t.kh,
            t.kw, t.sh, t.sw, t.dh, t.dw, t.groups, t.same, diff);
  CHECK(diff <= 1e-4);
  free(x), free(y), free(ref);
  cn_graph_free(g);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_padding_rule(void) {
  CHECK(cn_conv_out_size(5, 3, 2, 1, CN_PAD_SAME) == 3);
  CHECK(cn_conv_pad_before(5, 3, 2, 1, CN_PAD_SAME) == 1); /* total 2 */
  CHECK(cn_conv_out_size(6, 3, 2, 1, CN_PAD_SAME) == 3);
  CHECK(cn_conv_pad_before(6, 3, 2, 1, CN_PAD_SAME) == 0); /* total 1: all at the end */
  CHECK(cn_conv_pad_before(7, 4, 1, 1, CN_PAD_SAME) == 1); /* total 3 */
  CHECK(cn_conv_out_size(5, 3, 2, 1, CN_PAD_VALID) == 2);
  CHECK(cn_conv_out_size(7, 3, 1, 2, CN_PAD_VALID) == 3);
  CHECK(cn_conv_pad_before(7, 3, 1, 2, CN_PAD_SAME) == 2);
  CHECK(cn_conv_out_size(2, 3, 1, 1, CN_PAD_VALID) <= 0);
}

static void test_conv_hand(void) {
  /* 3x3 image 1..9, 2x2 kernel of ones, same padding: the one padded row/column is at the end. */
  cn_conv2d_attrs a = {1, 2, 2, 1, 1, 1, 1, 1, 0, CN_PAD_SAME, cn_act_linear(), {0}};
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  cn_status st;
  cn_shape s = shape3(3, 3, 1);
  cn_graph *g = build(&cn_op_conv2d, &a, &s, 1, &st);
  CHECK_OK(st);
  for (int i = 0; i < 4; i++) layer(g)->params[0].data[i] = 1;
  float y[9];
  CHECK_OK(cn_graph_run(g, 1, (const float *[]){x}, (float *[]){y}));
  float expect[9] = {12, 16, 9, 24, 28, 15, 15, 17, 9};
  CHECK(cn_test_max_abs_diff(y, expect, 9) < 1e-6);
  cn_graph_free(g);
}

static void test_conv_reference(void) {
  conv_case cases[] = {
      {2, 7, 6, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1}, /* same, odd and even sizes */
      {1, 7, 8, 5, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1}, /* same, stride 2 */
      {2, 8, 9, 4, 3, 4, 2, 2, 3, 1, 1, 1, 1, 0}, /* even kernel, mixed strides, no bias */
      {1, 9, 9, 3, 5, 3, 3, 1, 1, 2, 2, 1, 1, 1}, /* dilation, same */
      {1, 9, 8, 2, 2, 3, 2, 1, 1, 2, 3, 1, 0, 1}, /* dilation, valid */
      {2, 6, 6, 4, 6, 3, 3, 1, 1, 1, 1, 2, 1, 1}, /* groups 2 */
      {1, 5, 5, 6, 6, 1, 1, 1, 1, 1, 1, 3, 0, 1}, /* pointwise, groups 3 */
      {3, 5, 4, 8, 7, 1, 1, 1, 1, 1, 1, 1, 1, 1}, /* pointwise */
      {1, 6, 7, 3, 4, 1, 1, 2, 2, 1, 1, 1, 1, 1}, /* 1x1 stride 2 */
      {1, 5, 5, 2, 3, 5, 5, 1, 1, 1, 1, 1, 0, 1}, /* kernel == input */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_conv(cases[i]);
}

static void test_depthwise(void) {
  struct {
    int batch, h, w, c, mult, k, s, d, same;
  } cases[] = {
      {2, 7, 6, 3, 2, 3, 2, 1, 1}, {1, 8, 8, 4, 1, 3, 1, 2, 1}, {1, 6, 7, 5, 1, 3, 2, 1, 0}};
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int batch = cases[t].batch, h = cases[t].h, w = cases[t].w, c = cases[t].c;
    int mult = cases[t].mult, k = cases[t].k, s = cases[t].s, d = cases[t].d;
    int same = cases[t].same;
    cn_depthwise_attrs a = {
        k, k, s, s, d, d, mult, 1, same ? CN_PAD_SAME : CN_PAD_VALID, cn_act_relu6(), {0}};
    size_t nx = (size_t)batch * h * w * c;
    float *x = malloc(nx * sizeof(float));
    fill(x, nx);
    for (size_t i = 0; i < nx; i++) x[i] *= 8; /* so relu6 clips some */
    cn_graph *g;
    float *y = run1(&cn_op_depthwise, &a, shape3(h, w, c), batch, x, &g);
    int oh = ref_out(h, k, s, d, same), ow = ref_out(w, k, s, d, same);
    int pt = ref_pad(h, k, s, d, same), pl = ref_pad(w, k, s, d, same), oc = c * mult;
    CHECK(layer(g)->shape.dim[2] == oc);
    const float *kern = layer(g)->params[0].data, *bias = layer(g)->params[1].data;
    double worst = 0;
    for (int b = 0; b < batch; b++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
          for (int ci = 0; ci < c; ci++)
            for (int m = 0; m < mult; m++) {
              double acc = bias[ci * mult + m];
              for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                  int iy = oy * s - pt + ky * d, ix = ox * s - pl + kx * d;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  acc += x[((b * h + iy) * w + ix) * c + ci] *
                         kern[((ky * k + kx) * c + ci) * mult + m];
                }
              acc = fmin(fmax(acc, 0), 6);
              double got = y[((b * oh + oy) * ow + ox) * oc + ci * mult + m];
              if (fabs(got - acc) > worst) worst = fabs(got - acc);
            }
    CHECK(worst < 1e-4);
    free(x), free(y);
    cn_graph_free(g);
  }
}

static void test_pooling(void) {
  float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
  cn_pool_attrs same = {.ph = 2, .pw = 2, .sh = 2, .sw = 2, .padding = CN_PAD_SAME};
  cn_graph *g;
  float *out = run1(&cn_op_maxpool, &same, shape3(3, 3, 1), 1, x, &g);
  float expect_max[4] = {5, 6, 8, 9};
  CHECK(out && cn_test_max_abs_diff(out, expect_max, 4) == 0);
  free(out);
  cn_graph_free(g);
  out = run1(&cn_op_avgpool, &same, shape3(3, 3, 1), 1, x, &g);
  float expect_avg[4] = {3, 4.5f, 7.5f, 9}; /* padded cells excluded */
  CHECK(out && cn_test_max_abs_diff(out, expect_avg, 4) < 1e-6);
  free(out);
  cn_graph_free(g);
  /* 3x3 stride 2 same on a 4x4 image with negative values: max ignores the padding. */
  float neg[16];
  for (int i = 0; i < 16; i++) neg[i] = -(float)(i + 1);
  cn_pool_attrs big = {.ph = 3, .pw = 3, .sh = 2, .sw = 2, .padding = CN_PAD_SAME};
  out = run1(&cn_op_maxpool, &big, shape3(4, 4, 1), 1, neg, &g);
  float expect_neg[4] = {-1, -3, -9, -11};
  CHECK(out && cn_test_max_abs_diff(out, expect_neg, 4) == 0);
  free(out);
  cn_graph_free(g);
  cn_pool_attrs valid = {.ph = 2, .pw = 2, .sh = 1, .sw = 1, .padding = CN_PAD_VALID};
  out = run1(&cn_op_avgpool, &valid, shape3(3, 3, 1), 1, x, &g);
  float expect_valid[4] = {3, 4, 6, 7};
  CHECK(out && cn_test_max_abs_diff(out, expect_valid, 4) < 1e-6);
  (void)y;
  free(out);
  cn_graph_free(g);
}

static void test_global_pooling(void) {
  float x[2 * 2 * 2 * 2] = {1, -1, 2, -2, 3, -3, 4, -4, /* sample 2: */ 0, 5, 0, 6, 0, 7, 0, 8};
  cn_global_pool_attrs keep = {1}, flat = {0};
  cn_graph *g;
  float *y = run1(&cn_op_global_avgpool, &keep, shape3(2, 2, 2), 2, x, &g);
  CHECK(layer(g)->shape.rank == 3 && layer(g)->shape.dim[2] == 2);
  float expect_avg[4] = {2.5f, -2.5f, 0, 6.5f};
  CHECK(y && cn_test_max_abs_diff(y, expect_avg, 4) < 1e-6);
  free(y);
  cn_graph_free(g);
  y = run1(&cn_op_global_maxpool, &flat, shape3(2, 2, 2), 2, x, &g);
  CHECK(layer(g)->shape.rank == 1);
  float expect_max[4] = {4, -1, 0, 8};
  CHECK(y && cn_test_max_abs_diff(y, expect_max, 4) == 0);
  free(y);
  cn_graph_free(g);
}

static void test_zeropad(void) {
  float x[4] = {1, 2, 3, 4};
  cn_zeropad_attrs a = {0, 1, 1, 0};
  cn_graph *g;
  float *y = run1(&cn_op_zeropad, &a, shape3(2, 2, 1), 1, x, &g);
  CHECK(layer(g)->shape.dim[0] == 3 && layer(g)->shape.dim[1] == 3);
  float expect[9] = {0, 1, 2, 0, 3, 4, 0, 0, 0};
  CHECK(y && cn_test_max_abs_diff(y, expect, 9) == 0);
  free(y);
  cn_graph_free(g);
}

static void test_dense(void) {
  /* Rank-3 input: Dense acts on the last axis of every position. */
  cn_dense_attrs a = {5, 1, cn_act_softmax()};
  int batch = 2, rows = 3, in = 4, units = 5;
  float x[2 * 3 * 4];
  fill(x, sizeof x / sizeof x[0]);
  cn_graph *g;
  float *y = run1(&cn_op_dense, &a, cn_shape_make(2, (int64_t[]){rows, in}), batch, x, &g);
  CHECK(layer(g)->shape.rank == 2 && layer(g)->shape.dim[1] == units);
  const float *k = layer(g)->params[0].data, *bias = layer(g)->params[1].data;
  double worst = 0;
  for (int r = 0; r < batch * rows; r++) {
    double z[5], sum = 0;
    for (int u = 0; u < units; u++) {
      z[u] = bias[u];
      for (int i = 0; i < in; i++) z[u] += x[r * in + i] * k[i * units + u];
      sum += exp(z[u]);
    }
    for (int u = 0; u < units; u++) worst = fmax(worst, fabs(y[r * units + u] - exp(z[u]) / sum));
  }
  CHECK(worst < 1e-5);
  free(y);
  cn_graph_free(g);
}

static void test_reshapes(void) {
  float x[12];
  for (int i = 0; i < 12; i++) x[i] = (float)i;
  cn_graph *g;
  float *y = run1(&cn_op_flatten, NULL, shape3(2, 3, 2), 1, x, &g);
  CHECK(layer(g)->shape.rank == 1 && layer(g)->shape.dim[0] == 12);
  CHECK(y && memcmp(x, y, sizeof x) == 0);
  free(y);
  cn_graph_free(g);
  cn_reshape_attrs r = {cn_shape_make(2, (int64_t[]){-1, 4})};
  y = run1(&cn_op_reshape, &r, shape3(2, 3, 2), 1, x, &g);
  CHECK(layer(g)->shape.rank == 2 && layer(g)->shape.dim[0] == 3);
  CHECK(y && memcmp(x, y, sizeof x) == 0);
  free(y);
  cn_graph_free(g);
  cn_dropout_attrs d = {0.5f};
  y = run1(&cn_op_dropout, &d, shape3(2, 3, 2), 1, x, &g);
  CHECK(y && memcmp(x, y, sizeof x) == 0);
  free(y);
  cn_graph_free(g);
}

static void check_batchnorm(int axis, int scale, int center) {
  int batch = 2, d0 = 3, d1 = 4;
  cn_batchnorm_attrs a = {1e-3f, center, scale, axis, 0.0f, 0};
  float x[2 * 3 * 4];
  fill(x, 24);
  cn_graph *g;
  float *y = run1(&cn_op_batchnorm, &a, cn_shape_make(2, (int64_t[]){d0, d1}), batch, x, &g);
  cn_node *n = layer(g);
  CHECK(n->n_params == 2 + scale + center);
  const float *gamma = scale ? cn_node_find_param(n, "gamma")->data : NULL;
  const float *beta = center ? cn_node_find_param(n, "beta")->data : NULL;
  const float *mean = cn_node_find_param(n, "moving_mean")->data;
  const float *var = cn_node_find_param(n, "moving_variance")->data;
  CHECK(!cn_node_find_param(n, "moving_mean")->trainable);
  double worst = 0;
  for (int i = 0; i < 24; i++) {
    int c = (axis == 1 || axis == -2) ? (i / d1) % d0 : i % d1;
    double v =
        (x[i] - mean[c]) / sqrt(var[c] + 1e-3) * (gamma ? gamma[c] : 1) + (beta ? beta[c] : 0);
    worst = fmax(worst, fabs(v - y[i]));
  }
  CHECK(worst < 1e-5);
  free(y);
  cn_graph_free(g);
}

static float act1(cn_activation a, float v) {
  cn_act_apply(&a, &v, 1);
  return v;
}

static void test_activations(void) {
  CHECK(act1(cn_act_relu(), -2) == 0 && act1(cn_act_relu(), 3) == 3);
  CHECK(act1(cn_act_relu6(), 7) == 6 && act1(cn_act_relu6(), -1) == 0);
  cn_activation leaky = cn_act_relu();
  leaky.negative_slope = 0.3f;
  CHECK_NEAR(act1(leaky, -2), -0.6, 1e-6);
  CHECK_NEAR(act1(leaky, 2), 2, 1e-6);
  cn_activation th =
      cn_act_relu(); /* Keras relu(x, negative_slope=0.5, max_value=4, threshold=1) */
  th.negative_slope = 0.5f, th.max_value = 4, th.threshold = 1;
  CHECK_NEAR(act1(th, 0.5f), -0.25, 1e-6);
  CHECK_NEAR(act1(th, 3), 3, 1e-6);
  CHECK_NEAR(act1(th, 9), 4, 1e-6);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_SIGMOID), 0), 0.5, 1e-7);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_SIGMOID), -100), 0, 1e-7);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_TANH), 1), tanh(1), 1e-6);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_ELU), -1), exp(-1) - 1, 1e-6);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_SWISH), 2), 2 / (1 + exp(-2)), 1e-6);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_HARD_SIGMOID), 1), 4.0 / 6, 1e-6);
  CHECK_NEAR(act1(cn_act_simple(CN_ACT_HARD_SIGMOID), -4), 0, 1e-6);
  cn_activation parsed;
  CHECK_OK(cn_act_parse("relu6", &parsed));
  CHECK(parsed.kind == CN_ACT_RELU && parsed.max_value == 6);
  CHECK_OK(cn_act_parse("softmax", &parsed));
  CHECK(parsed.kind == CN_ACT_SOFTMAX && parsed.axis == -1);
  CHECK(cn_act_parse("gelu_of_doom", &parsed) == CN_ERR_UNSUPPORTED);

  /* The layer, elementwise, and softmax over axis 1 of a (3, 4) sample (not the last axis). */
  float x[2 * 3 * 4];
  fill(x, 24);
  for (int i = 0; i < 24; i++) x[i] *= 30; /* large values: must stay stable */
  cn_activation sm = cn_act_softmax();
  sm.axis = 1;
  cn_graph *g;
  float *y = run1(&cn_op_activation, &sm, cn_shape_make(2, (int64_t[]){3, 4}), 2, x, &g);
  double worst = 0;
  for (int b = 0; b < 2; b++)
    for (int j = 0; j < 4; j++) {
      double top = -INFINITY, sum = 0;
      for (int i = 0; i < 3; i++) top = fmax(top, x[b * 12 + i * 4 + j]);
      for (int i = 0; i < 3; i++) sum += exp(x[b * 12 + i * 4 + j] - top);
      for (int i = 0; i < 3; i++)
        worst = fmax(worst, fabs(y[b * 12 + i * 4 + j] - exp(x[b * 12 + i * 4 + j] - top) / sum));
    }
  CHECK(worst < 1e-6);
  free(y);
  cn_graph_free(g);
  cn_activation r = cn_act_relu();
  y = run1(&cn_op_activation, &r, cn_shape_make(2, (int64_t[]){3, 4}), 2, x, &g);
  worst = 0;
  for (int i = 0; i < 24; i++) worst = fmax(worst, fabs(y[i] - fmax(x[i], 0)));
  CHECK(worst == 0);
  free(y);
  cn_graph_free(g);
}

static void test_merge_concat(void) {
  float a[4] = {1, -2, 3, 4}, b[4] = {2, 2, -1, 4};
  cn_shape s[2] = {cn_shape_make(1, (int64_t[]){2}), cn_shape_make(1, (int64_t[]){2})};
  float expect[][4] = {{3, 0, 2, 8},    {-1, -4, 4, 0}, {2, -4, -3, 16},
                       {1.5f, 0, 1, 4}, {2, 2, 3, 4},   {1, -2, -1, 4}};
  for (int kind = CN_MERGE_ADD; kind <= CN_MERGE_MINIMUM; kind++) {
    cn_merge_attrs m = {(cn_merge_kind)kind};
    cn_status st;
    cn_graph *g = build(&cn_op_merge, &m, s, 2, &st);
    CHECK_OK(st);
    float y[4];
    CHECK_OK(cn_graph_run(g, 2, (const float *[]){a, b}, (float *[]){y}));
    CHECK(cn_test_max_abs_diff(y, expect[kind], 4) == 0);
    cn_graph_free(g);
  }
  /* Concatenate a (2,1,2) and (2,2,2) sample on axis 2 (per-sample axis 1), batch 1. */
  float p[4] = {1, 2, 3, 4}, q[8] = {5, 6, 7, 8, 9, 10, 11, 12}, y[12];
  cn_shape cs[2] = {shape3(2, 1, 2), shape3(2, 2, 2)};
  cn_concat_attrs c = {2};
  cn_status st;
  cn_graph *g = build(&cn_op_concat, &c, cs, 2, &st);
  CHECK_OK(st);
  CHECK(layer(g)->shape.dim[1] == 3);
  CHECK_OK(cn_graph_run(g, 1, (const float *[]){p, q}, (float *[]){y}));
  float expect_cat[12] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
  CHECK(cn_test_max_abs_diff(y, expect_cat, 12) == 0);
  cn_graph_free(g);
}

/* infer must refuse, naming the layer. */
static void expect_fail(const cn_op *op, const void *attrs, const cn_shape *shapes, int n) {
  cn_status st;
  cn_graph *g = build(op, attrs, shapes, n, &st);
  CHECK(st != CN_OK);
  CHECK(strstr(cn_last_error(), "layer") != NULL);
  cn_graph_free(g);
}

static void test_errors(void) {
  cn_shape img = shape3(5, 5, 4);
  cn_conv2d_attrs groups = {6, 3, 3, 1, 1, 1, 1, 3, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  expect_fail(&cn_op_conv2d, &groups, &img, 1);
  cn_conv2d_attrs too_big = {6, 7, 7, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  expect_fail(&cn_op_conv2d, &too_big, &img, 1);
  cn_conv2d_attrs zero_k = {6, 0, 3, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  expect_fail(&cn_op_conv2d, &zero_k, &img, 1);
  cn_conv2d_attrs zero_stride = {6, 3, 3, 0, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  expect_fail(&cn_op_conv2d, &zero_stride, &img, 1);
  cn_shape flat = cn_shape_make(1, (int64_t[]){10});
  cn_conv2d_attrs ok = {6, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  expect_fail(&cn_op_conv2d, &ok, &flat, 1);
  cn_depthwise_attrs dw = {3, 3, 1, 1, 1, 1, 0, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  expect_fail(&cn_op_depthwise, &dw, &img, 1);
  cn_pool_attrs pool = {.ph = 6, .pw = 6, .sh = 1, .sw = 1, .padding = CN_PAD_VALID};
  expect_fail(&cn_op_maxpool, &pool, &img, 1);
  cn_reshape_attrs r = {cn_shape_make(2, (int64_t[]){-1, 3})};
  expect_fail(&cn_op_reshape, &r, &img, 1);
  cn_reshape_attrs two_unknown = {cn_shape_make(2, (int64_t[]){-1, -1})};
  expect_fail(&cn_op_reshape, &two_unknown, &img, 1);
  cn_batchnorm_attrs bn = {1e-3f, 1, 1, 0, 0.0f, 0}; /* the batch axis */
  expect_fail(&cn_op_batchnorm, &bn, &img, 1);
  cn_activation sm = cn_act_softmax();
  sm.axis = 4;
  expect_fail(&cn_op_activation, &sm, &img, 1);
  cn_shape two[2] = {img, shape3(5, 5, 3)};
  cn_merge_attrs add = {CN_MERGE_ADD};
  expect_fail(&cn_op_merge, &add, two, 2);
  cn_concat_attrs cat = {1};
  expect_fail(&cn_op_concat, &cat, two, 2);
  cn_dense_attrs dense = {0, 1, cn_act_linear()};
  expect_fail(&cn_op_dense, &dense, &img, 1);
}

static void test_registry(void) {
  int n = 0;
  for (; cn_all_ops[n]; n++) {
    CHECK(cn_all_ops[n]->type && cn_all_ops[n]->infer && cn_all_ops[n]->forward);
    for (int j = 0; j < n; j++) CHECK(strcmp(cn_all_ops[j]->type, cn_all_ops[n]->type) != 0);
  }
  /* Every operator of the Keras engine is registered (the ONNX ones are checked in their test). */
  const cn_op *keras_ops[] = {
      &cn_op_input,     &cn_op_conv2d,     &cn_op_depthwise,      &cn_op_zeropad,
      &cn_op_maxpool,   &cn_op_avgpool,    &cn_op_global_avgpool, &cn_op_global_maxpool,
      &cn_op_dense,     &cn_op_flatten,    &cn_op_reshape,        &cn_op_dropout,
      &cn_op_batchnorm, &cn_op_activation, &cn_op_merge,          &cn_op_concat};
  for (size_t k = 0; k < sizeof keras_ops / sizeof *keras_ops; k++) {
    int found = 0;
    for (int i = 0; i < n; i++) found |= cn_all_ops[i] == keras_ops[k];
    CHECK(found);
  }
}

static int add_node(cn_graph *g, const cn_op *op, const char *name, int a, int b,
                    const void *attrs) {
  int index = -1, inputs[2] = {a, b};
  CHECK_OK(cn_graph_add(g, op, name, inputs, b < 0 ? 1 : 2, attrs, &index));
  return index;
}

/* conv -> BN pairs fold (with and without bias, depthwise, BN as the graph output); a conv with
 * an activation or a second reader keeps its BN. Outputs agree before and after. */
static void test_fold_batchnorm(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(9, 10, 3)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_conv2d_attrs conv = {8, 3, 3, 1, 1, 1, 1, 1, 0, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_batchnorm_attrs bn = {1e-3f, 1, 1, -1, 0.0f, 0}, bn_scale_only = {1e-3f, 0, 1, 3, 0.0f, 0};
  cn_depthwise_attrs dw = {3, 3, 2, 2, 1, 1, 2, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_conv2d_attrs conv_relu = {4, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_relu(), {0}};
  cn_conv2d_attrs conv_b = {5, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_conv2d_attrs conv_last = {6, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  cn_activation relu = cn_act_relu();
  cn_merge_attrs add = {CN_MERGE_ADD};
  int n = add_node(g, &cn_op_conv2d, "c1", x, -1, &conv);
  n = add_node(g, &cn_op_batchnorm, "bn1", n, -1, &bn);
  n = add_node(g, &cn_op_activation, "a1", n, -1, &relu);
  n = add_node(g, &cn_op_depthwise, "d1", n, -1, &dw);
  n = add_node(g, &cn_op_batchnorm, "bn2", n, -1, &bn_scale_only);
  n = add_node(g, &cn_op_conv2d, "c2", n, -1, &conv_relu);
  n = add_node(g, &cn_op_batchnorm, "bn3", n, -1, &bn);
  int c3 = add_node(g, &cn_op_conv2d, "c3", n, -1, &conv_b);
  n = add_node(g, &cn_op_batchnorm, "bn4", c3, -1, &bn);
  n = add_node(g, &cn_op_merge, "sum", n, c3, &add);
  n = add_node(g, &cn_op_conv2d, "c4", n, -1, &conv_last);
  n = add_node(g, &cn_op_batchnorm, "bn5", n, -1, &bn);
  CHECK_OK(cn_graph_alloc_params(g));
  for (int i = 0; i < g->n_nodes; i++)
    for (int p = 0; p < g->nodes[i].n_params; p++) {
      cn_param *param = &g->nodes[i].params[p];
      size_t count = (size_t)cn_shape_numel(&param->shape);
      fill(param->data, count);
      if (strcmp(param->name, "moving_variance") == 0)
        for (size_t k = 0; k < count; k++) param->data[k] = 1.2f + param->data[k];
    }
  float xv[2 * 9 * 10 * 3], before[2 * 5 * 5 * 6], after[2 * 5 * 5 * 6];
  fill(xv, sizeof xv / sizeof xv[0]);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){before}));
  int nodes = g->n_nodes;
  CHECK_OK(cn_graph_fold_batchnorm(g));
  CHECK(g->n_nodes == nodes - 3);
  CHECK(cn_graph_find(g, "bn1") < 0 && cn_graph_find(g, "bn2") < 0 && cn_graph_find(g, "bn5") < 0);
  CHECK(cn_graph_find(g, "bn3") >= 0 && cn_graph_find(g, "bn4") >= 0);
  CHECK(g->n_outputs == 1 && g->outputs[0] == cn_graph_find(g, "c4"));
  CHECK(cn_node_find_param(&g->nodes[cn_graph_find(g, "c1")], "bias") != NULL);
  CHECK_OK(cn_graph_fold_activations(g)); /* c1 -> a1 (after bn1 left) */
  CHECK(g->n_nodes == nodes - 4 && cn_graph_find(g, "a1") < 0);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){after}));
  size_t count = sizeof after / sizeof after[0];
  double scale = 1;
  for (size_t i = 0; i < count; i++) scale = fmax(scale, fabs(before[i]));
  CHECK(cn_test_max_abs_diff(before, after, count) <= 1e-5 * scale);
  cn_graph_free(g);
}

/* Dense -> sigmoid as the graph output becomes one Dense node that is the output. */
/* ZeroPadding2D folded into the VALID convolutions after it (the inference graph of ONNX and
 * PyTorch models, whose stride-2 convolutions pad 1 on every side): the same output without the
 * padded copies; a SAME convolution, a padding read twice and one that is an output stay. */
static void test_fold_padding(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(11, 8, 3)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_zeropad_attrs p1 = {1, 1, 1, 1}, p2 = {0, 2, 1, 0}, p3 = {2, 1, 0, 1};
  cn_conv2d_attrs conv = {5, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_VALID, cn_act_relu(), {0}};
  cn_depthwise_attrs dw = {3, 3, 2, 1, 1, 1, 2, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  cn_conv2d_attrs same = {4, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_merge_attrs add = {CN_MERGE_ADD};
  int n = add_node(g, &cn_op_zeropad, "pad1", x, -1, &p1);
  n = add_node(g, &cn_op_conv2d, "c1", n, -1, &conv); /* 6 x 4 x 5 */
  n = add_node(g, &cn_op_zeropad, "pad2", n, -1, &p2);
  n = add_node(g, &cn_op_depthwise, "d1", n, -1, &dw); /* 3 x 3 x 10 */
  n = add_node(g, &cn_op_zeropad, "pad3", n, -1, &p3);
  int c2 = add_node(g, &cn_op_conv2d, "c2", n, -1, &same); /* SAME: keeps pad3 */
  n = add_node(g, &cn_op_zeropad, "pad4", c2, -1, &p1);
  int twice = add_node(g, &cn_op_merge, "twice", n, n, &add); /* read twice: stays */
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  int64_t out = cn_shape_numel(&g->nodes[twice].shape);
  float xv[2 * 11 * 8 * 3], before[2 * 256], after[2 * 256];
  CHECK(out <= 256);
  fill(xv, sizeof xv / sizeof xv[0]);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){before}));
  int nodes = g->n_nodes;
  CHECK_OK(cn_graph_fold_padding(g));
  CHECK(g->n_nodes == nodes - 2);
  CHECK(cn_graph_find(g, "pad1") < 0 && cn_graph_find(g, "pad2") < 0);
  CHECK(cn_graph_find(g, "pad3") >= 0 && cn_graph_find(g, "pad4") >= 0);
  const cn_depthwise_attrs *d1 = g->nodes[cn_graph_find(g, "d1")].attrs;
  CHECK(d1->pads.top == 0 && d1->pads.bottom == 2 && d1->pads.left == 1 && d1->pads.right == 0);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){after}));
  CHECK(cn_test_max_abs_diff(before, after, (size_t)(2 * out)) == 0);
  cn_graph_free(g);
}

/* A constant-zero Pad of the spatial axes (what PyTorch exports before an average pooling that
 * counts the padding) folds into the AveragePooling2D after it as pads counted in the divisor:
 * the same averages. Before a MaxPooling2D, or padding with another value, it stays. */
static void test_fold_pool_padding(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(9, 10, 4)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_pad_attrs zero = {.mode = CN_PADMODE_CONSTANT, .rank = 3, .begin = {1, 2}, .end = {1, 0}};
  cn_pad_attrs one = zero;
  one.value = 1;
  cn_pool_attrs pool = {.ph = 3, .pw = 3, .sh = 1, .sw = 1, .padding = CN_PAD_VALID};
  cn_merge_attrs add = {CN_MERGE_ADD};
  int n = add_node(g, &cn_op_pad, "pad1", x, -1, &zero);
  int avg = add_node(g, &cn_op_avgpool, "avg", n, -1, &pool); /* 9 x 10 x 4 */
  n = add_node(g, &cn_op_pad, "pad2", x, -1, &zero);
  int max = add_node(g, &cn_op_maxpool, "max", n, -1, &pool);
  n = add_node(g, &cn_op_pad, "pad3", x, -1, &one);
  int ones = add_node(g, &cn_op_avgpool, "ones", n, -1, &pool);
  n = add_node(g, &cn_op_merge, "sum1", avg, max, &add);
  n = add_node(g, &cn_op_merge, "sum2", n, ones, &add);
  CHECK_OK(cn_graph_alloc_params(g));
  int64_t out = cn_shape_numel(&g->nodes[n].shape);
  float xv[2 * 9 * 10 * 4], before[2 * 9 * 10 * 4], after[2 * 9 * 10 * 4];
  CHECK(out == 9 * 10 * 4);
  fill(xv, sizeof xv / sizeof xv[0]);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){before}));
  CHECK_OK(cn_graph_fold_padding(g));
  CHECK(cn_graph_find(g, "pad1") < 0);
  CHECK(cn_graph_find(g, "pad2") >= 0 && cn_graph_find(g, "pad3") >= 0);
  const cn_pool_attrs *a = g->nodes[cn_graph_find(g, "avg")].attrs;
  CHECK(a->pad_top == 1 && a->pad_bottom == 1 && a->pad_left == 2 && a->pad_right == 0);
  CHECK(a->count_include_pad == 1);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){after}));
  CHECK(cn_test_max_abs_diff(before, after, (size_t)(2 * out)) < 1e-5);
  cn_graph_free(g);
}

/* Residual Adds move into the convolution before them (Winograd, pointwise and grouped im2col
 * paths; Keras Add and ONNX Add; the ReLU after the sum folds in too; the sum as the graph
 * output): the same bits. An Add whose later input is no convolution, or reads a convolution
 * read elsewhere too, stays. */
static void test_fold_residual(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(16, 16, 8)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_conv2d_attrs wino = {16, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu(), {0}};
  cn_conv2d_attrs point = {16, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_conv2d_attrs grouped = {16, 3, 3, 1, 1, 1, 1, 2, 0, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_merge_attrs add = {CN_MERGE_ADD};
  cn_binary_attrs onnx_add = {.kind = CN_BIN_ADD, .const_operand = CN_CONST_NONE};
  cn_activation relu = cn_act_relu();
  int a = add_node(g, &cn_op_conv2d, "a", x, -1, &wino);
  int b = add_node(g, &cn_op_conv2d, "b", a, -1, &point);
  int n = add_node(g, &cn_op_merge, "add1", a, b, &add);
  int r1 = add_node(g, &cn_op_activation, "relu1", n, -1, &relu);
  wino.act = cn_act_linear();
  int c = add_node(g, &cn_op_conv2d, "c", r1, -1, &wino);
  n = add_node(g, &cn_op_binary, "add2", c, r1, &onnx_add); /* the convolution first */
  int r2 = add_node(g, &cn_op_activation, "relu2", n, -1, &relu);
  int d = add_node(g, &cn_op_conv2d, "d", r2, -1, &point);
  int e = add_node(g, &cn_op_activation, "e", r2, -1, &relu);
  n = add_node(g, &cn_op_merge, "add3", d, e, &add); /* the later input is no convolution */
  int f = add_node(g, &cn_op_conv2d, "f", n, -1, &point);
  int twice = add_node(g, &cn_op_merge, "add4", f, f, &add);
  int h = add_node(g, &cn_op_conv2d, "h", twice, -1, &grouped);
  add_node(g, &cn_op_merge, "add5", twice, h, &add); /* the output */
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  enum { OUT = 2 * 16 * 16 * 16 };
  static float xv[2 * 16 * 16 * 8], before[OUT], after[OUT];
  fill(xv, sizeof xv / sizeof xv[0]);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){before}));
  int nodes = g->n_nodes;
  CHECK_OK(cn_graph_fold_residual(g));
  CHECK_OK(cn_graph_fold_activations(g));
  CHECK(g->n_nodes == nodes - 5);
  CHECK(cn_graph_find(g, "add1") < 0 && cn_graph_find(g, "relu1") < 0);
  CHECK(cn_graph_find(g, "add2") < 0 && cn_graph_find(g, "relu2") < 0);
  CHECK(cn_graph_find(g, "add3") >= 0 && cn_graph_find(g, "add4") >= 0);
  CHECK(cn_graph_find(g, "add5") < 0 && g->outputs[0] == cn_graph_find(g, "h"));
  CHECK(g->nodes[cn_graph_find(g, "b")].op == &cn_op_conv2d_add);
  CHECK(g->nodes[cn_graph_find(g, "c")].inputs[1] == cn_graph_find(g, "b"));
  CHECK(((const cn_conv2d_attrs *)g->nodes[cn_graph_find(g, "c")].attrs)->act.kind == CN_ACT_RELU);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){after}));
  CHECK(cn_test_max_abs_diff(before, after, OUT) == 0);
  cn_graph_free(g);
}

/* Runs g at `batch` on 1 and on 3 threads into out1 and out3, which must be the same bits. */
static void run_both_thread_counts(cn_graph *g, int batch, const float *x, float *out1, float *out3,
                                   size_t count) {
  cn_set_threads(1);
  CHECK_OK(cn_graph_run(g, batch, (const float *[]){x}, (float *[]){out1}));
  cn_set_threads(3);
  CHECK_OK(cn_graph_run(g, batch, (const float *[]){x}, (float *[]){out3}));
  cn_set_threads(0);
  CHECK(cn_test_max_abs_diff(out1, out3, count) == 0);
}

/* Bottleneck blocks whose last 1x1 convolution writes its output over the block's input (the plan
 * gives the fused Conv2D+Add the residual's buffer where the panels allow it): the same bits as
 * the layers apart, on 1 and 3 threads, at batch 1 and 3. */
static void test_fold_residual_in_place(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(6, 7, 24)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_conv2d_attrs wide = {64, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu(), {0}};
  cn_conv2d_attrs narrow = {48, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu(), {0}};
  cn_conv2d_attrs project = {64, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_merge_attrs add = {CN_MERGE_ADD};
  cn_activation relu = cn_act_relu();
  int n = add_node(g, &cn_op_conv2d, "stem", x, -1, &wide);
  for (int block = 0; block < 2; block++) {
    char name[16];
    snprintf(name, sizeof name, "reduce%d", block);
    int r = add_node(g, &cn_op_conv2d, name, n, -1, &narrow);
    snprintf(name, sizeof name, "project%d", block);
    r = add_node(g, &cn_op_conv2d, name, r, -1, &project);
    snprintf(name, sizeof name, "add%d", block);
    r = add_node(g, &cn_op_merge, name, r, n, &add);
    snprintf(name, sizeof name, "relu%d", block);
    n = add_node(g, &cn_op_activation, name, r, -1, &relu);
  }
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  enum { OUT = 3 * 6 * 7 * 64 };
  static float xv[3 * 6 * 7 * 24], before[OUT], after1[OUT], after3[OUT];
  fill(xv, sizeof xv / sizeof xv[0]);
  for (int batch = 1; batch <= 3; batch += 2) {
    cn_graph *folded = NULL;
    CHECK_OK(cn_graph_clone(g, &folded));
    CHECK_OK(cn_graph_run(g, batch, (const float *[]){xv}, (float *[]){before}));
    CHECK_OK(cn_graph_fold_residual(folded));
    CHECK_OK(cn_graph_fold_activations(folded));
    CHECK(folded->nodes[cn_graph_find(folded, "project1")].op == &cn_op_conv2d_add);
    run_both_thread_counts(folded, batch, xv, after1, after3, (size_t)(batch * OUT / 3));
    CHECK(cn_test_max_abs_diff(before, after1, (size_t)(batch * OUT / 3)) == 0);
    cn_graph_free(folded);
  }
  cn_graph_free(g);
  /* x + conv(x): the convolution reads the tensor it adds, so its output may not overwrite it */
  g = cn_graph_new();
  cn_input_attrs square = {shape3(5, 6, 64)};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &square, &x));
  int c = add_node(g, &cn_op_conv2d, "project", x, -1, &project);
  add_node(g, &cn_op_merge, "add", c, x, &add);
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  static float sq[2 * 5 * 6 * 64], sq_before[2 * 5 * 6 * 64], sq_after[2 * 5 * 6 * 64];
  fill(sq, sizeof sq / sizeof sq[0]);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){sq}, (float *[]){sq_before}));
  CHECK_OK(cn_graph_fold_residual(g));
  CHECK(g->nodes[cn_graph_find(g, "project")].op == &cn_op_conv2d_add);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){sq}, (float *[]){sq_after}));
  CHECK(cn_test_max_abs_diff(sq_before, sq_after, sizeof sq / sizeof sq[0]) == 0);
  cn_graph_free(g);
}

/* Adds a MobileNetV2 block without its residual sum: 1x1 expansion (relu6), depthwise 3x3
 * (relu6, `stride`), 1x1 projection; returns the projection. */
static int add_block(cn_graph *g, const char *name, int x, int expand, int stride, int out) {
  char e[32], d[32];
  snprintf(e, sizeof e, "%s_expand", name);
  snprintf(d, sizeof d, "%s_dw", name);
  cn_conv2d_attrs ex = {expand, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_relu6(), {0}};
  cn_depthwise_attrs dw = {3, 3, stride, stride, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu6(), {0}};
  cn_conv2d_attrs project = {out, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  int n = add_node(g, &cn_op_conv2d, e, x, -1, &ex);
  n = add_node(g, &cn_op_depthwise, d, n, -1, &dw);
  return add_node(g, &cn_op_conv2d, name, n, -1, &project);
}

/* DepthwiseConv2D -> 1x1 Conv2D pairs fold into one node that multiplies band by band (on the
 * panels with 32 or 64 filters, conv_small's tiles with 16 or 24; a residual sum; stride 2), and
 * with `expand` the 1x1 expansions before them too (bands of expanded rows overlapping, a band
 * starting in the padding): the same bits as the layers apart, at batch 1 and 3, on 1 and 3
 * threads, and in bf16 (the two run apart). A depthwise read twice, with a multiplier of 2, or
 * before a strided 1x1, stays; so does an expansion read twice or folding a depthwise in itself. */
static void check_fold_depthwise(int expand) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {shape3(20, 18, 32)};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_depthwise_attrs dw = {3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu6(), {0}};
  cn_depthwise_attrs dw2 = {3, 3, 2, 2, 1, 1, 1, 0, CN_PAD_SAME, cn_act_relu(), {0}};
  cn_depthwise_attrs mult2 = {3, 3, 1, 1, 1, 1, 2, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_conv2d_attrs p64 = {64, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_relu(), {0}};
  cn_conv2d_attrs p32 = {32, 1, 1, 1, 1, 1, 1, 1, 0, CN_PAD_VALID, cn_act_linear(), {0}};
  cn_conv2d_attrs p16 = {16, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  cn_conv2d_attrs strided = {16, 1, 1, 2, 2, 1, 1, 1, 1, CN_PAD_VALID, cn_act_linear(), {0}};
  cn_merge_attrs add = {CN_MERGE_ADD};
  int n = add_block(g, "p0", x, 48, 1, 32); /* 20 x 18: two bands at least */
  n = add_node(g, &cn_op_depthwise, "d1", n, -1, &dw);
  int a = add_node(g, &cn_op_conv2d, "a", n, -1, &p64); /* panels; folds d1 in */
  n = add_node(g, &cn_op_depthwise, "d2", a, -1, &dw2); /* stride 2: 10 x 9 x 64 */
  int b = add_node(g, &cn_op_conv2d, "b", n, -1, &p32); /* a is no expansion of d2 */
  n = add_node(g, &cn_op_depthwise, "d3", b, -1, &dw);
  n = add_node(g, &cn_op_conv2d, "c", n, -1, &p32);
  int r = add_node(g, &cn_op_merge, "res", b, n, &add); /* c takes the residual sum */
  n = add_node(g, &cn_op_depthwise, "d4", r, -1, &dw);
  int s = add_node(g, &cn_op_conv2d, "s", n, -1, &p16); /* conv_small */
  n = add_node(g, &cn_op_depthwise, "twice", s, -1, &dw);
  int t1 = add_node(g, &cn_op_conv2d, "t1", n, -1, &p16);
  int t2 = add_node(g, &cn_op_conv2d, "t2", n, -1, &p16); /* twice is read twice: stays */
  n = add_node(g, &cn_op_merge, "sum", t1, t2, &add);
  n = add_node(g, &cn_op_depthwise, "m2", n, -1, &mult2); /* multiplier 2: stays */
  n = add_node(g, &cn_op_conv2d, "u", n, -1, &p16);
  n = add_node(g, &cn_op_depthwise, "d5", n, -1, &dw);  /* before a strided 1x1: stays */
  n = add_node(g, &cn_op_conv2d, "v", n, -1, &strided); /* 5 x 5 x 16 */
  n = add_block(g, "w", n, 48, 1, 24);                  /* conv_small twice */
  n = add_block(g, "w2", n, 72, 2, 32);                 /* 3 x 3 x 32 */
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  enum { OUT = 3 * 3 * 3 * 32 };
  CHECK(cn_shape_numel(&g->nodes[n].shape) * 3 == OUT);
  static float xv[3 * 20 * 18 * 32], before[OUT], after[OUT], other[OUT];
  fill(xv, sizeof xv / sizeof xv[0]);
  for (int batch = 1; batch <= 3; batch += 2) {
    size_t count = (size_t)(OUT / 3 * batch);
    run_both_thread_counts(g, batch, xv, before, other, count);
    cn_graph *folded = NULL;
    CHECK_OK(cn_graph_clone(g, &folded));
    CHECK_OK(cn_graph_fold_residual(folded));
    CHECK_OK(cn_graph_fold_activations(folded));
    int nodes = folded->n_nodes;
    CHECK_OK(cn_graph_fold_depthwise(folded, expand));
    CHECK(folded->n_nodes == nodes - 7 - (expand ? 3 : 0));
    const char *gone[] = {"p0_dw", "d1", "d2", "d3", "d4", "w_dw", "w2_dw"};
    const char *kept[] = {"twice", "m2", "d5", "a", "b"};
    for (int i = 0; i < 7; i++) CHECK(cn_graph_find(folded, gone[i]) < 0);
    for (int i = 0; i < 5; i++) CHECK(cn_graph_find(folded, kept[i]) >= 0);
    CHECK((cn_graph_find(folded, "w_expand") < 0) == expand);
    const cn_node *c = &folded->nodes[cn_graph_find(folded, "c")];
    CHECK(c->op == &cn_op_dw_conv && c->n_inputs == 2 && c->n_params == 3);
    CHECK(strcmp(c->type, "DepthwiseConv2D+Conv2D+Add") == 0);
    const cn_node *w2 = &folded->nodes[cn_graph_find(folded, "w2")];
    CHECK(w2->n_params == (expand ? 6 : 4));
    run_both_thread_counts(folded, batch, xv, after, other, count);
    CHECK(cn_test_max_abs_diff(before, after, count) == 0);
    if (!expand) { /* an expanding fold is for fp32 graphs */
      cn_graph_set_precision(g, CN_PRECISION_BF16);
      cn_graph_set_precision(folded, CN_PRECISION_BF16);
      CHECK_OK(cn_graph_run(g, batch, (const float *[]){xv}, (float *[]){before}));
      CHECK_OK(cn_graph_run(folded, batch, (const float *[]){xv}, (float *[]){after}));
      CHECK(cn_test_max_abs_diff(before, after, count) == 0);
      cn_graph_set_precision(g, CN_PRECISION_FP32);
    }
    cn_graph_free(folded);
  }
  cn_graph_free(g);
}

static void test_fold_activation_output(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {cn_shape_make(1, (int64_t[]){6})};
  int x;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x));
  cn_dense_attrs dense = {4, 1, cn_act_linear()};
  cn_activation sigmoid = cn_act_simple(CN_ACT_SIGMOID), softmax = cn_act_softmax();
  int d = add_node(g, &cn_op_dense, "d", x, -1, &dense);
  int s = add_node(g, &cn_op_activation, "s", d, -1, &sigmoid);
  int d2 = add_node(g, &cn_op_dense, "d2", s, -1, &dense);
  add_node(g, &cn_op_activation, "sm", d2, -1, &softmax); /* softmax stays a layer */
  CHECK_OK(cn_graph_alloc_params(g));
  fill(g->params, g->n_param_floats);
  float xv[12], before[8], after[8];
  fill(xv, 12);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){before}));
  CHECK_OK(cn_graph_fold_activations(g));
  CHECK(g->n_nodes == 4 && cn_graph_find(g, "s") < 0 && cn_graph_find(g, "sm") == 3);
  CHECK_OK(cn_graph_run(g, 2, (const float *[]){xv}, (float *[]){after}));
  CHECK(cn_test_max_abs_diff(before, after, 8) < 1e-6);
  cn_graph_free(g);
}

/* The real MobileNet (Conv2D/DepthwiseConv2D -> BN -> ReLU6 throughout): folding keeps the
 * independent reference's softmax on the pattern input within 1e-5. */
static void test_fold_real_mobilenet(void) {
  const char *found = cn_test_data("weights/keras/mobilenet_v1_0.25_224.h5");
  char *path = found ? strdup(found) : NULL; /* cn_test_data reuses its buffer */
  const char *ref_path = cn_test_data("reference/mobilenet_v1_0.25_224.pattern.probs.f32");
  if (!path || !ref_path) {
    free(path);
    printf("SKIP fold on MobileNet: shared weights or reference absent\n");
    return;
  }
  float *ref = malloc(1000 * sizeof(float)), *probs = malloc(1000 * sizeof(float));
  FILE *f = fopen(ref_path, "rb");
  CHECK(f && fread(ref, sizeof(float), 1000, f) == 1000);
  if (f) fclose(f);
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(path, &m));
  const size_t n = 224 * 224 * 3;
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = (float)(i % 256) / 127.5f - 1;
  if (m) {
    int nodes = m->graph->n_nodes;
    CHECK_OK(cn_graph_fold_batchnorm(m->graph));
    CHECK_OK(cn_graph_fold_activations(m->graph));
    CHECK(m->graph->n_nodes == nodes - 2 * 27); /* 27 conv -> BN -> ReLU triples */
    CHECK_OK(cn_model_forward(m, 1, x, probs));
    CHECK(cn_test_max_abs_diff(probs, ref, 1000) < 1e-5);
  }
  cn_model_free(m);
  free(x), free(ref), free(probs), free(path);
}

int main(void) {
  test_padding_rule();
  test_conv_hand();
  test_conv_reference();
  test_depthwise();
  test_pooling();
  test_global_pooling();
  test_zeropad();
  test_dense();
  test_reshapes();
  check_batchnorm(-1, 1, 1);
  check_batchnorm(1, 1, 1);
  check_batchnorm(2, 0, 0);
  check_batchnorm(-2, 0, 1);
  test_activations();
  test_merge_concat();
  test_errors();
  test_registry();
  test_fold_batchnorm();
  test_fold_padding();
  test_fold_residual();
  test_fold_residual_in_place();
  test_fold_pool_padding();
  check_fold_depthwise(0);
  check_fold_depthwise(1);
  test_fold_activation_output();
  test_fold_real_mobilenet();
  return cn_test_finish();
}
