/* cn_op_conv_runtime: Conv and ConvTranspose with weights as inputs, on the ONNX specification's
 * worked examples, with bias, groups and stride, with each engine sample carrying its own weights,
 * and the shape errors of infer. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/graph.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

#define S cn_test_shape

/* Runs one ConvRuntime node on inputs of the given per-sample shapes; returns the output. */
static float *run_rc(const cn_conv_runtime_attrs *a, const cn_shape *shapes, int n, int batch,
                     const float *const *inputs, cn_shape *out_shape) {
  cn_graph *g = cn_graph_new();
  int idx[3], node;
  for (int i = 0; i < n; i++) {
    cn_input_attrs in = {shapes[i]};
    CHECK_OK(cn_graph_add(g, &cn_op_input,
                          i == 0   ? "x"
                          : i == 1 ? "w"
                                   : "b",
                          NULL, 0, &in, &idx[i]));
  }
  CHECK_OK(cn_graph_add(g, &cn_op_conv_runtime, "layer", idx, n, a, &node));
  *out_shape = g->nodes[node].shape;
  float *y = malloc((size_t)(batch * cn_shape_numel(out_shape)) * sizeof *y);
  CHECK_OK(cn_graph_run(g, batch, inputs, (float *[]){y}));
  cn_graph_free(g);
  return y;
}

static cn_conv_runtime_attrs window(int transpose, int k, int s, int pad) {
  return (cn_conv_runtime_attrs){.transpose = transpose,
                                 .groups = 1,
                                 .kh = k,
                                 .kw = k,
                                 .sh = s,
                                 .sw = s,
                                 .dh = 1,
                                 .dw = 1,
                                 .pad_top = pad,
                                 .pad_left = pad,
                                 .pad_bottom = pad,
                                 .pad_right = pad};
}

/* ONNX's Conv example: 5x5 ramp, 3x3 ones, pads 1. */
static void test_conv_example(void) {
  float x[25], w[9];
  for (int i = 0; i < 25; i++) x[i] = (float)i;
  for (int i = 0; i < 9; i++) w[i] = 1.0f;
  static const float want[25] = {12,  21, 27, 33,  24,  33,  54,  63, 72,  51,  63,  99, 108,
                                 117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84};
  cn_conv_runtime_attrs a = window(0, 3, 1, 1);
  cn_shape shapes[2] = {S(4, 1, 1, 5, 5), S(4, 1, 1, 3, 3)}, out;
  float *y = run_rc(&a, shapes, 2, 1, (const float *[]){x, w}, &out);
  CHECK(out.rank == 4 && out.dim[1] == 1 && out.dim[2] == 5 && out.dim[3] == 5);
  CHECK(cn_test_max_abs_diff(y, want, 25) == 0);
  free(y);
  /* stride 2 without pads: the centre of each 3x3 window */
  a = window(0, 3, 2, 0);
  y = run_rc(&a, shapes, 2, 1, (const float *[]){x, w}, &out);
  static const float strided[4] = {54, 72, 144, 162};
  CHECK(out.dim[2] == 2 && out.dim[3] == 2 && cn_test_max_abs_diff(y, strided, 4) == 0);
  free(y);
}

/* ONNX's ConvTranspose example: 3x3 ramp, (1, 2, 3, 3) ones: both channels alike. */
static void test_deconv_example(void) {
  float x[9], w[18], b[2] = {0.5f, -1.0f};
  for (int i = 0; i < 9; i++) x[i] = (float)i;
  for (int i = 0; i < 18; i++) w[i] = 1.0f;
  static const float want[25] = {0,  1,  3, 3,  2,  3,  8,  15, 12, 7,  9,  21, 36,
                                 27, 15, 9, 20, 33, 24, 13, 6,  13, 21, 15, 8};
  cn_conv_runtime_attrs a = window(1, 3, 1, 0);
  cn_shape shapes[3] = {S(4, 1, 1, 3, 3), S(4, 1, 2, 3, 3), S(1, 2)}, out;
  float *y = run_rc(&a, shapes, 3, 1, (const float *[]){x, w, b}, &out);
  CHECK(out.dim[0] == 1 && out.dim[1] == 2 && out.dim[2] == 5 && out.dim[3] == 5);
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < 25; i++) CHECK(y[c * 25 + i] == want[i] + b[c]);
  free(y);
}

/* Two groups of one channel each, two engine samples with their own weights and biases. */
static void test_groups_and_samples(void) {
  float x[2][2 * 4] = {{1, 2, 3, 4, 5, 6, 7, 8}, {0, 1, 0, 1, 1, 0, 1, 0}};
  float w[2][2 * 4] = {{1, 0, 0, 0, 0, 0, 0, 1}, {1, 1, 1, 1, 2, 2, 2, 2}},
                 b[2][2] = {{0, 10}, {1, 0}};
  cn_conv_runtime_attrs a = window(0, 2, 1, 0);
  a.groups = 2;
  cn_shape shapes[3] = {S(4, 1, 2, 2, 2), S(4, 2, 1, 2, 2), S(1, 2)}, out;
  float xs[16], ws[16], bs[4];
  memcpy(xs, x, sizeof xs), memcpy(ws, w, sizeof ws), memcpy(bs, b, sizeof bs);
  float *y = run_rc(&a, shapes, 3, 2, (const float *[]){xs, ws, bs}, &out);
  /* sample 0: channel 0 picks x[0][0] = 1, channel 1 picks x[0][7] = 8, + 10;
   * sample 1: channel 0 sums 2, + 1; channel 1 sums 2 * 2. */
  static const float want[4] = {1, 18, 3, 4};
  CHECK(out.dim[1] == 2 && out.dim[2] == 1 && out.dim[3] == 1);
  CHECK(cn_test_max_abs_diff(y, want, 4) == 0);
  free(y);
}

static void test_errors(void) {
  cn_graph *g = cn_graph_new();
  int x, w, node;
  cn_input_attrs ix = {S(4, 1, 3, 5, 5)}, iw = {S(4, 4, 2, 3, 3)};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &ix, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_input, "w", NULL, 0, &iw, &w));
  cn_conv_runtime_attrs a = window(0, 3, 1, 0);
  CHECK(cn_graph_add(g, &cn_op_conv_runtime, "layer", (int[]){x, w}, 2, &a, &node) ==
        CN_ERR_SHAPE); /* 3 channels against 2 per group */
  CHECK(strstr(cn_last_error(), "layer") != NULL);
  a.sh = 0;
  CHECK(cn_graph_add(g, &cn_op_conv_runtime, "layer2", (int[]){x, w}, 2, &a, &node) ==
        CN_ERR_SHAPE);
  cn_graph_free(g);
}

int main(void) {
  test_conv_example();
  test_deconv_example();
  test_groups_and_samples();
  test_errors();
  return cn_test_finish();
}
