/* Backward of the upsampling operators: ConvTranspose (strides, pads, output padding, dilation,
 * groups, bias) and Resize (nearest with every rounding rule, bilinear with every coordinate
 * transform, up and down), by finite differences (tests/gradcheck.h) and bitwise thread
 * invariance; and the Keras layers that map onto them (Conv2DTranspose, UpSampling2D): geometry,
 * fused activation, and a trainer built through them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "gradcheck.h"
#include "io/keras/internal.h"
#include "ops/ops_onnx.h"
#include "testlib.h"
#include "train/trainer.h"

static cn_shape s3(int64_t a, int64_t b, int64_t c) {
  return cn_shape_make(3, (int64_t[]){a, b, c});
}

static cn_gradcheck_case one(const char *label, const cn_op *op, const void *attrs, cn_shape in,
                             uint64_t seed) {
  cn_gradcheck_case c = {.label = label, .op = op, .attrs = attrs, .n_inputs = 1, .seed = seed};
  c.inputs[0] = in;
  return c;
}

/* Finite differences (every element of small tensors, a sample of large ones) and 1 vs 2
 * threads bitwise. */
static void check_case(cn_gradcheck_case *c) {
  int bad = cn_gradcheck(c);
  if (bad) fprintf(stderr, "  ^ %s: %d mismatches\n", c->label, bad);
  CHECK(bad == 0);
  CHECK(cn_gradcheck_thread_invariant(c));
}

/* ---- ConvTranspose -------------------------------------------------------------------------- */

typedef struct ct_case {
  const char *label;
  cn_conv_transpose_attrs a;
  int64_t h, w, c;
} ct_case;

static void test_conv_transpose(void) {
  const ct_case cases[] = {
      {"ct s1",
       {.filters = 3,
        .kh = 3,
        .kw = 3,
        .sh = 1,
        .sw = 1,
        .dh = 1,
        .dw = 1,
        .groups = 1,
        .use_bias = 1},
       4,
       5,
       2},
      {"ct s2 pads outpad",
       {.filters = 4,
        .kh = 3,
        .kw = 3,
        .sh = 2,
        .sw = 2,
        .dh = 1,
        .dw = 1,
        .groups = 1,
        .use_bias = 1,
        .pad_top = 1,
        .pad_left = 1,
        .pad_bottom = 1,
        .pad_right = 1,
        .out_pad_h = 1,
        .out_pad_w = 1},
       4,
       3,
       3},
      {"ct s3 asym no bias",
       {.filters = 2,
        .kh = 2,
        .kw = 3,
        .sh = 3,
        .sw = 3,
        .dh = 1,
        .dw = 1,
        .groups = 1,
        .pad_top = 0,
        .pad_left = 2,
        .pad_bottom = 1,
        .pad_right = 0,
        .out_pad_h = 2,
        .out_pad_w = 1},
       3,
       4,
       3},
      {"ct s2x3 k4",
       {.filters = 3,
        .kh = 4,
        .kw = 2,
        .sh = 2,
        .sw = 3,
        .dh = 1,
        .dw = 1,
        .groups = 1,
        .use_bias = 1,
        .pad_top = 1,
        .pad_bottom = 2},
       3,
       3,
       2},
      {"ct dilation 2",
       {.filters = 3,
        .kh = 3,
        .kw = 3,
        .sh = 1,
        .sw = 1,
        .dh = 2,
        .dw = 2,
        .groups = 1,
        .use_bias = 1,
        .pad_top = 2,
        .pad_left = 1,
        .pad_bottom = 1,
        .pad_right = 2,
        .out_pad_h = 1},
       5,
       4,
       2},
      {"ct dilation 2 s2",
       {.filters = 2,
        .kh = 2,
        .kw = 3,
        .sh = 2,
        .sw = 1,
        .dh = 2,
        .dw = 2,
        .groups = 1,
        .use_bias = 0,
        .pad_left = 1,
        .out_pad_w = 1},
       3,
       4,
       3},
      {"ct groups 2",
       {.filters = 6,
        .kh = 3,
        .kw = 3,
        .sh = 2,
        .sw = 2,
        .dh = 1,
        .dw = 1,
        .groups = 2,
        .use_bias = 1,
        .pad_top = 1,
        .pad_right = 1,
        .out_pad_h = 1},
       3,
       4,
       4},
      {"ct groups 2 no bias",
       {.filters = 4,
        .kh = 2,
        .kw = 2,
        .sh = 1,
        .sw = 1,
        .dh = 1,
        .dw = 1,
        .groups = 2,
        .use_bias = 0},
       4,
       4,
       6},
      /* 1x1 stride 1: output longer (output padding, allowed by the dilation) or cropped. */
      {"ct 1x1 outpad",
       {.filters = 3,
        .kh = 1,
        .kw = 1,
        .sh = 1,
        .sw = 1,
        .dh = 2,
        .dw = 2,
        .groups = 1,
        .use_bias = 1,
        .pad_bottom = 1,
        .out_pad_w = 1},
       4,
       3,
       2},
      /* Every output pixel cut off at the top-left by pads larger than the stride. */
      {"ct big pads",
       {.filters = 2,
        .kh = 5,
        .kw = 5,
        .sh = 2,
        .sw = 2,
        .dh = 1,
        .dw = 1,
        .groups = 1,
        .use_bias = 1,
        .pad_top = 3,
        .pad_left = 4,
        .pad_bottom = 3,
        .pad_right = 2},
       3,
       4,
       2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const ct_case *t = &cases[i];
    cn_gradcheck_case c =
        one(t->label, &cn_op_conv_transpose, &t->a, s3(t->h, t->w, t->c), 100 + i);
    c.batch = 2;
    check_case(&c);
  }

  /* Large enough for the parallel region and for several tiles (kh*kw*filters = 1600 taps: 655
   * input pixels per tile, 1200 pixels): thread invariance only (finite differences on a sample).
   */
  cn_conv_transpose_attrs big = {.filters = 64,
                                 .kh = 5,
                                 .kw = 5,
                                 .sh = 2,
                                 .sw = 2,
                                 .dh = 1,
                                 .dw = 1,
                                 .groups = 1,
                                 .use_bias = 1,
                                 .pad_top = 2,
                                 .pad_left = 2,
                                 .pad_bottom = 1,
                                 .pad_right = 1,
                                 .out_pad_h = 1};
  cn_gradcheck_case c = one("ct big", &cn_op_conv_transpose, &big, s3(15, 20, 8), 200);
  c.batch = 4;
  c.max_checks = 6;
  check_case(&c);
  cn_conv_transpose_attrs wide = {.filters = 96,
                                  .kh = 3,
                                  .kw = 3,
                                  .sh = 2,
                                  .sw = 2,
                                  .dh = 1,
                                  .dw = 1,
                                  .groups = 2,
                                  .use_bias = 1,
                                  .pad_top = 1,
                                  .pad_left = 1,
                                  .pad_bottom = 1,
                                  .pad_right = 1};
  c = one("ct wide groups", &cn_op_conv_transpose, &wide, s3(9, 10, 80), 201);
  c.batch = 3;
  c.max_checks = 6;
  check_case(&c);
}

/* The contract on NULL gradients and accumulation: a frozen layer (dparams NULL) gives the same
 * d input, a first layer (din NULL) the same parameter gradients, and gradients are added to what
 * the buffers hold. */
static void test_conv_transpose_contract(void) {
  cn_conv_transpose_attrs a = {.filters = 4,
                               .kh = 3,
                               .kw = 2,
                               .sh = 2,
                               .sw = 1,
                               .dh = 1,
                               .dw = 2,
                               .groups = 2,
                               .use_bias = 1,
                               .pad_top = 1,
                               .out_pad_h = 1};
  cn_graph *g = cn_graph_new();
  int in = -1, node = -1;
  cn_input_attrs ia = {s3(4, 5, 6)};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "in", NULL, 0, &ia, &in));
  CHECK_OK(cn_graph_add(g, &cn_op_conv_transpose, "ct", &in, 1, &a, &node));
  CHECK_OK(cn_graph_alloc_params(g));
  cn_node *n = &g->nodes[node];
  enum { B = 2, RUNS = 4 };
  int64_t nx = B * cn_shape_numel(&ia.shape), ny = B * cn_shape_numel(&n->shape);
  int64_t nk = cn_shape_numel(&n->params[0].shape), nb = a.filters;
  size_t scratch = n->op->scratch(g, n, B), bscratch = n->op->backward_scratch(g, n, B);
  float *x = malloc((size_t)nx * 4), *y = malloc((size_t)ny * 4), *dy = malloc((size_t)ny * 4);
  float *dx[RUNS], *dk[RUNS], *db[RUNS];
  float *work = malloc((scratch > bscratch ? scratch : bscratch) * 4);
  for (int r = 0; r < RUNS; r++) {
    dx[r] = calloc((size_t)nx, 4), dk[r] = calloc((size_t)nk, 4), db[r] = calloc((size_t)nb, 4);
  }
  for (int64_t i = 0; i < nx; i++) x[i] = (float)((i * 29) % 17) / 8.0f - 1.0f, dx[3][i] = 1;
  for (int64_t i = 0; i < ny; i++) dy[i] = (float)((i * 13) % 19) / 9.0f - 1.0f;
  for (int64_t i = 0; i < nk; i++) n->params[0].data[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
  for (int64_t i = 0; i < nk; i++) dk[3][i] = 1;
  for (int64_t i = 0; i < nb; i++) n->params[1].data[i] = 0.25f * (float)i, db[3][i] = 1;
  cn_tensor tin = {.shape = cn_shape_batch(B, &ia.shape), .data = x};
  cn_tensor tout = {.shape = cn_shape_batch(B, &n->shape), .data = y};
  cn_tensor tdout = {.shape = tout.shape, .data = dy};
  cn_exec ex = {.batch = B, .threads = 2, .scratch = work, .training = 1};
  n->op->forward(n, &tin, &tout, &ex);
  /* 0: everything; 1: frozen (no dparams); 2: no input gradient; 3: into buffers holding 1 */
  for (int r = 0; r < RUNS; r++) {
    cn_tensor tdin = {.shape = tin.shape, .data = r == 2 ? NULL : dx[r]};
    float *dparams[CN_MAX_PARAMS] = {0};
    if (r != 1) dparams[0] = dk[r], dparams[1] = db[r];
    n->op->backward(n, &tin, &tout, &tdout, &tdin, dparams, &ex);
  }
  int same = 1, untouched = 1, added = 1;
  for (int64_t i = 0; i < nx; i++) {
    same &= dx[0][i] == dx[1][i], untouched &= dx[2][i] == 0;
    added &= fabsf(dx[3][i] - (1 + dx[0][i])) <= 1e-5f * (1 + fabsf(dx[0][i]));
  }
  for (int64_t i = 0; i < nk; i++) {
    same &= dk[0][i] == dk[2][i], untouched &= dk[1][i] == 0;
    added &= fabsf(dk[3][i] - (1 + dk[0][i])) <= 1e-5f * (1 + fabsf(dk[0][i]));
  }
  for (int64_t i = 0; i < nb; i++) {
    same &= db[0][i] == db[2][i], untouched &= db[1][i] == 0;
    added &= fabsf(db[3][i] - (1 + db[0][i])) <= 1e-5f * (1 + fabsf(db[0][i]));
  }
  CHECK(same);
  CHECK(untouched);
  CHECK(added);
  for (int r = 0; r < RUNS; r++) free(dx[r]), free(dk[r]), free(db[r]);
  free(x), free(y), free(dy), free(work);
  cn_graph_free(g);
}

/* ---- Resize --------------------------------------------------------------------------------- */

typedef struct rs_case {
  const char *label;
  cn_resize_attrs a;
  int64_t h, w, c;
} rs_case;

/* Positional attributes of the fast paths; the general form's fields stay zero. */
#define RS(m, c, n, sh, sw, oh, ow)                                                                \
  { .mode = m, .coord = c, .nearest = n, .scale_h = sh, .scale_w = sw, .out_h = oh, .out_w = ow }

/* The general separable form: cubic, antialias, exclude_outside, tf_crop_and_resize. */
static void test_resize_general(void) {
  const rs_case cases[] = {
      {"cubic x2",
       {.mode = CN_RESIZE_MODE_CUBIC, .scale_h = 2, .scale_w = 2, .cubic_a = -0.75f},
       4,
       3,
       2},
      {"cubic down exclude_outside",
       {.mode = CN_RESIZE_MODE_CUBIC,
        .out_h = 3,
        .out_w = 2,
        .cubic_a = -0.5f,
        .exclude_outside = 1},
       5,
       4,
       2},
      {"cubic antialias down",
       {.mode = CN_RESIZE_MODE_CUBIC,
        .scale_h = 0.6f,
        .scale_w = 0.5f,
        .cubic_a = -0.75f,
        .antialias = 1},
       6,
       7,
       2},
      {"linear antialias down",
       {.mode = CN_RESIZE_MODE_LINEAR, .out_h = 2, .out_w = 3, .antialias = 1},
       5,
       7,
       3},
      {"linear crop",
       {.mode = CN_RESIZE_MODE_LINEAR,
        .coord = CN_COORD_TF_CROP_AND_RESIZE,
        .out_h = 4,
        .out_w = 3,
        .roi_h0 = 0.2f,
        .roi_h1 = 1.3f,
        .roi_w0 = -0.1f,
        .roi_w1 = 0.7f,
        .extrapolation = 2.5f},
       4,
       5,
       2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const rs_case *t = &cases[i];
    cn_gradcheck_case c = one(t->label, &cn_op_resize, &t->a, s3(t->h, t->w, t->c), 500 + i);
    c.batch = 2;
    check_case(&c);
  }
}

static void test_resize(void) {
  const cn_resize_mode N = CN_RESIZE_MODE_NEAREST, L = CN_RESIZE_MODE_LINEAR;
  const rs_case cases[] = {
      /* UpSampling2D nearest: floor(o / size) */
      {"nearest x2", RS(N, CN_COORD_ASYMMETRIC, CN_NEAREST_FLOOR, 2, 2, 0, 0), 4, 5, 3},
      {"nearest x3", RS(N, CN_COORD_ASYMMETRIC, CN_NEAREST_FLOOR, 3, 3, 0, 0), 6, 5, 8},
      {"nearest 2x3", RS(N, CN_COORD_ASYMMETRIC, CN_NEAREST_FLOOR, 2, 3, 0, 0), 3, 4, 2},
      /* ONNX's other nearest rules and transforms, up and down */
      {"nearest half_pixel prefer_floor",
       RS(N, CN_COORD_HALF_PIXEL, CN_NEAREST_ROUND_PREFER_FLOOR, 2, 2, 0, 0), 4, 3, 2},
      {"nearest half_pixel prefer_ceil",
       RS(N, CN_COORD_HALF_PIXEL, CN_NEAREST_ROUND_PREFER_CEIL, 3, 2, 0, 0), 3, 3, 2},
      {"nearest tf_half_pixel ceil",
       RS(N, CN_COORD_TF_HALF_PIXEL_FOR_NN, CN_NEAREST_CEIL, 0, 0, 7, 5), 4, 3, 2},
      {"nearest align_corners down",
       RS(N, CN_COORD_ALIGN_CORNERS, CN_NEAREST_ROUND_PREFER_FLOOR, 0, 0, 3, 4), 7, 9, 2},
      {"nearest asymmetric down", RS(N, CN_COORD_ASYMMETRIC, CN_NEAREST_FLOOR, 0.5f, 0.5f, 0, 0), 8,
       6, 3},
      /* UpSampling2D bilinear: half_pixel */
      {"bilinear x2", RS(L, CN_COORD_HALF_PIXEL, 0, 2, 2, 0, 0), 4, 5, 3},
      {"bilinear x3", RS(L, CN_COORD_HALF_PIXEL, 0, 3, 3, 0, 0), 6, 5, 8},
      {"bilinear 3x2", RS(L, CN_COORD_HALF_PIXEL, 0, 3, 2, 0, 0), 3, 4, 2},
      {"bilinear 1 row", RS(L, CN_COORD_HALF_PIXEL, 0, 2, 2, 0, 0), 1, 3, 2},
      /* the other transforms, sizes given, downsampling */
      {"bilinear align_corners", RS(L, CN_COORD_ALIGN_CORNERS, 0, 0, 0, 7, 9), 4, 5, 2},
      {"bilinear asymmetric", RS(L, CN_COORD_ASYMMETRIC, 0, 2, 3, 0, 0), 3, 3, 2},
      {"bilinear pytorch_half_pixel", RS(L, CN_COORD_PYTORCH_HALF_PIXEL, 0, 0, 0, 1, 7), 4, 3, 2},
      {"bilinear tf_half_pixel", RS(L, CN_COORD_TF_HALF_PIXEL_FOR_NN, 0, 2, 2, 0, 0), 3, 4, 2},
      {"bilinear half_pixel_symmetric", RS(L, CN_COORD_HALF_PIXEL_SYMMETRIC, 0, 0, 0, 8, 5), 3, 4,
       2},
      {"bilinear down", RS(L, CN_COORD_HALF_PIXEL, 0, 0.6f, 0.45f, 0, 0), 9, 10, 3},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const rs_case *t = &cases[i];
    cn_gradcheck_case c = one(t->label, &cn_op_resize, &t->a, s3(t->h, t->w, t->c), 300 + i);
    c.batch = 3;
    check_case(&c);
  }
  /* Large enough for the parallel loop. */
  cn_resize_attrs up = RS(L, CN_COORD_HALF_PIXEL, 0, 3, 3, 0, 0);
  cn_gradcheck_case c = one("bilinear big", &cn_op_resize, &up, s3(20, 24, 16), 400);
  c.max_checks = 16;
  check_case(&c);
  up.mode = N, up.coord = CN_COORD_ASYMMETRIC, up.nearest = CN_NEAREST_FLOOR;
  c = one("nearest big", &cn_op_resize, &up, s3(20, 24, 16), 401);
  c.max_checks = 16;
  check_case(&c);
}

/* Nearest x2 backward sums each 2x2 block of dout exactly; bilinear x2 sends every dout value's
 * total weight 1 somewhere, so the sums of din and dout agree. */
static void test_resize_sums(void) {
  cn_resize_attrs near =
      RS(CN_RESIZE_MODE_NEAREST, CN_COORD_ASYMMETRIC, CN_NEAREST_FLOOR, 2, 2, 0, 0);
  cn_resize_attrs lin = RS(CN_RESIZE_MODE_LINEAR, CN_COORD_HALF_PIXEL, 0, 2, 2, 0, 0);
  const cn_resize_attrs *attrs[] = {&near, &lin};
  for (int m = 0; m < 2; m++) {
    cn_graph *g = cn_graph_new();
    int in = -1, node = -1;
    cn_input_attrs ia = {s3(3, 4, 2)};
    CHECK_OK(cn_graph_add(g, &cn_op_input, "in", NULL, 0, &ia, &in));
    CHECK_OK(cn_graph_add(g, &cn_op_resize, "up", &in, 1, attrs[m], &node));
    float x[24] = {0}, y[96], dy[96], dx[24] = {0};
    for (int i = 0; i < 96; i++) dy[i] = (float)((i * 37) % 11) - 5.0f;
    cn_tensor tin = {.shape = cn_shape_batch(1, &ia.shape), .data = x};
    cn_tensor tout = {.shape = cn_shape_batch(1, &g->nodes[node].shape), .data = y};
    cn_tensor tdout = {.shape = tout.shape, .data = dy}, tdin = {.shape = tin.shape, .data = dx};
    cn_exec ex = {.batch = 1, .threads = 1, .training = 1};
    float *dparams[CN_MAX_PARAMS] = {0};
    cn_op_resize.forward(&g->nodes[node], &tin, &tout, &ex);
    cn_op_resize.backward(&g->nodes[node], &tin, &tout, &tdout, &tdin, dparams, &ex);
    double sum_in = 0, sum_out = 0;
    for (int i = 0; i < 24; i++) sum_in += dx[i];
    for (int i = 0; i < 96; i++) sum_out += dy[i];
    CHECK_NEAR(sum_in, sum_out, 1e-4);
    if (m == 0) { /* din[1, 2, 1] = the 2x2 block at rows 2-3, columns 4-5, channel 1 */
      float want = dy[(2 * 8 + 4) * 2 + 1] + dy[(2 * 8 + 5) * 2 + 1] + dy[(3 * 8 + 4) * 2 + 1] +
                   dy[(3 * 8 + 5) * 2 + 1];
      CHECK(dx[(1 * 4 + 2) * 2 + 1] == want);
    }
    cn_graph_free(g);
  }
}

/* ---- Keras layers --------------------------------------------------------------------------- */

static cn_graph *keras_graph(const char *json) {
  cn_graph *g = NULL;
  char *name = NULL;
  cn_status st = cn_keras_build_graph("test.json", json, &g, &name);
  if (st != CN_OK) fprintf(stderr, "keras: %s\n", cn_last_error());
  free(name);
  return g;
}

static const cn_node *find_node(const cn_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
  return NULL;
}

#define SEQ(input, layers)                                                                         \
  "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"m\", \"layers\": [{\"class_name\": "  \
  "\"InputLayer\", \"config\": {\"name\": \"in\", \"batch_shape\": [null, " input "]}}, " layers   \
  "]}}"

static void test_keras_layers(void) {
  /* Keras's output lengths: same s2 -> in * 2; valid s3 k2 -> in * 3 (output padding 1);
   * same s2 k3 output_padding 0 -> (in - 1) * 2 + 1; valid dilation 2 k3 -> in + 4. */
  const char *json = SEQ(
      "5, 6, 3",
      "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"a\", \"filters\": 4, "
      "\"kernel_size\": [3, 3], \"strides\": [2, 2], \"padding\": \"same\", \"activation\": "
      "\"relu\"}}, "
      "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"b\", \"filters\": 2, "
      "\"kernel_size\": 2, \"strides\": 3, \"use_bias\": false}}, "
      "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"c\", \"filters\": 3, "
      "\"kernel_size\": [3, 3], \"strides\": [2, 2], \"padding\": \"same\", \"output_padding\": "
      "[0, 1]}}, "
      "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"d\", \"filters\": 2, "
      "\"kernel_size\": 3, \"dilation_rate\": 2, \"activation\": \"sigmoid\"}}, "
      "{\"class_name\": \"UpSampling2D\", \"config\": {\"name\": \"up\", \"size\": [2, 3], "
      "\"interpolation\": \"bilinear\"}}, "
      "{\"class_name\": \"UpSampling2D\", \"config\": {\"name\": \"up2\"}}, "
      "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flat\"}}, "
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", \"units\": 3}}");
  cn_graph *g = keras_graph(json);
  CHECK(g != NULL);
  if (!g) return;
  const cn_node *a = find_node(g, "a"), *act = find_node(g, "a/activation");
  const cn_node *b = find_node(g, "b"), *c = find_node(g, "c"), *d = find_node(g, "d");
  const cn_node *up = find_node(g, "up"), *up2 = find_node(g, "up2");
  CHECK(a && act && b && c && d && up && up2 && find_node(g, "d/activation"));
  if (!(a && act && b && c && d && up && up2)) return cn_graph_free(g);
  CHECK(a->op == &cn_op_conv_transpose && strcmp(a->type, "Conv2DTranspose") == 0);
  CHECK(act->op == &cn_op_activation && act->inputs[0] == (int)(a - g->nodes));
  CHECK(((const cn_activation *)act->attrs)->kind == CN_ACT_RELU);
  CHECK(a->shape.dim[0] == 10 && a->shape.dim[1] == 12 && a->shape.dim[2] == 4);
  CHECK(a->n_params == 2 && a->params[0].shape.dim[2] == 4 && a->params[0].shape.dim[3] == 3);
  const cn_conv_transpose_attrs *aa = a->attrs;
  CHECK(aa->pad_top == 0 && aa->pad_bottom == 1 && aa->out_pad_h == 0);
  CHECK(b->shape.dim[0] == 30 && b->shape.dim[1] == 36 && b->n_params == 1);
  CHECK(((const cn_conv_transpose_attrs *)b->attrs)->out_pad_h == 1);
  CHECK(c->shape.dim[0] == 59 && c->shape.dim[1] == 72);
  CHECK(d->shape.dim[0] == 63 && d->shape.dim[1] == 76);
  CHECK(up->op == &cn_op_resize && up->shape.dim[0] == 126 && up->shape.dim[1] == 228);
  CHECK(up2->shape.dim[0] == 252 && up2->shape.dim[1] == 456 && up2->shape.dim[2] == 2);

  /* Training through every one of them is accepted. */
  CHECK_OK(cn_graph_alloc_params(g));
  cn_trainer *t = NULL;
  cn_trainer_options o = {.max_batch = 1, .input_grad = 1};
  CHECK_OK(cn_trainer_new(g, &o, &t));
  cn_trainer_free(t);
  cn_graph_free(g);

  /* Refused by name. */
  const char *refused[] = {
      SEQ("4, 4, 2", "{\"class_name\": \"UpSampling2D\", \"config\": {\"name\": \"u\", "
                     "\"interpolation\": \"bicubic\"}}"),
      SEQ("4, 4, 2", "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"t\", "
                     "\"filters\": 2, \"kernel_size\": 3, \"data_format\": \"channels_first\"}}"),
      SEQ("4, 4, 2", "{\"class_name\": \"Conv2DTranspose\", \"config\": {\"name\": \"t\", "
                     "\"filters\": 2, \"kernel_size\": 3, \"strides\": 2, \"output_padding\": "
                     "2}}"),
  };
  const char *words[] = {"interpolation bicubic", "channels_first", "output padding"};
  for (int i = 0; i < 3; i++) {
    char *name = NULL;
    cn_graph *bad = NULL;
    CHECK(cn_keras_build_graph("test.json", refused[i], &bad, &name) != CN_OK);
    CHECK(strstr(cn_last_error(), words[i]) != NULL);
    if (!strstr(cn_last_error(), words[i])) fprintf(stderr, "  got: %s\n", cn_last_error());
    cn_graph_free(bad);
    free(name);
  }
}

int main(void) {
  test_conv_transpose();
  test_conv_transpose_contract();
  test_resize();
  test_resize_sums();
  test_resize_general();
  test_keras_layers();
  return cn_test_finish();
}
