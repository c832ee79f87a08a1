/* Same inputs => the same output bits for any thread count: every forward kernel that splits work
 * among threads (im2col convolution in both its tiling modes, pointwise, grouped, strided,
 * Winograd, depthwise, Dense at small and large batches) is run with 1 and with 2 threads and
 * the outputs compared with memcmp; then whole zoo models with seeded random weights. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/model.h"
#include "convnet/train.h"
#include "model/model.h"
#include "kernels/kernels.h"
#include "testlib.h"

static uint64_t rng_state;

static float uniform(void) { /* in [-1, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng_state >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

static float *random_floats(size_t n, float scale) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = uniform() * scale;
  return p;
}

/* An operation that writes `out` from fixed inputs with a given thread count. */
typedef void (*op_fn)(const void *ctx, float *out, int threads);

/* Runs op with 1 then 2 threads and checks the outputs are the same bits (and not all zero). */
static void check_invariant(const char *what, op_fn op, const void *ctx, size_t n) {
  float *one = calloc(n, sizeof(float)), *two = calloc(n, sizeof(float));
  cn_set_threads(1);
  op(ctx, one, 1);
  cn_set_threads(2);
  op(ctx, two, 2);
  int same = memcmp(one, two, n * sizeof(float)) == 0, nonzero = 0;
  for (size_t i = 0; i < n && !nonzero; i++) nonzero = one[i] != 0.0f;
  if (!same)
    fprintf(stderr, "%s: 1 and 2 threads differ (max %g)\n", what,
            cn_test_max_abs_diff(one, two, n));
  CHECK(same);
  CHECK(nonzero);
  free(one);
  free(two);
}

/* ---- Conv2D through im2col (or the plain GEMM when pointwise) -------------------------------- */

typedef struct conv_case {
  const char *name;
  int batch, h, w, c, filters, k, stride, groups, same;
  cn_act_kind act;
} conv_case;

typedef struct conv_ctx {
  cn_window win;
  const conv_case *cc;
  float *x, *kernel, *bias;
} conv_ctx;

static void conv_run(const void *p, float *out, int threads) {
  const conv_ctx *cx = p;
  cn_activation act = cn_act_simple(cx->cc->act);
  float *scratch =
      malloc((cn_conv2d_scratch(&cx->win, cx->cc->filters, cx->cc->groups) + 1) * sizeof(float));
  cn_conv2d(&cx->win, cx->cc->filters, cx->cc->groups, cx->x, cx->kernel, cx->bias, &act, out,
            scratch, threads);
  free(scratch);
}

static cn_window window_for(int batch, int h, int w, int c, int k, int stride, int same) {
  cn_shape in = {4, {batch, h, w, c}};
  return cn_window_make(&in, k, k, stride, stride, 1, 1, same ? CN_PAD_SAME : CN_PAD_VALID);
}

static void test_conv(const conv_case *cc) {
  conv_ctx cx = {.win = window_for(cc->batch, cc->h, cc->w, cc->c, cc->k, cc->stride, cc->same),
                 .cc = cc};
  int64_t kdim = (int64_t)cc->k * cc->k * (cc->c / cc->groups);
  cx.x = random_floats((size_t)cc->batch * cc->h * cc->w * cc->c, 1.0f);
  cx.kernel = random_floats((size_t)(kdim * cc->filters), 1.0f / sqrtf((float)kdim));
  cx.bias = random_floats((size_t)cc->filters, 0.1f);
  size_t n = (size_t)(cx.win.batch * cx.win.oh * cx.win.ow * cc->filters);
  check_invariant(cc->name, conv_run, &cx, n);
  free(cx.x);
  free(cx.kernel);
  free(cx.bias);
}

static void test_convolutions(void) {
  static const conv_case cases[] = {
      /* worker tiles: 56x56 pixels of 576-long patches */
      {"conv 3x3 worker tiles", 1, 56, 56, 64, 64, 3, 1, 1, 1, CN_ACT_RELU},
      /* team mode, one tile cut in rows and columns; and softmax over column blocks */
      {"conv 3x3 team", 2, 14, 14, 64, 96, 3, 1, 1, 1, CN_ACT_RELU},
      {"conv 3x3 7x7 wide", 1, 7, 7, 256, 256, 3, 1, 1, 1, CN_ACT_LINEAR},
      {"conv 3x3 softmax", 1, 9, 9, 64, 300, 3, 1, 1, 1, CN_ACT_SOFTMAX},
      {"conv 1x1 pointwise", 1, 28, 28, 64, 128, 1, 1, 1, 1, CN_ACT_RELU},
      {"conv 1x1 small", 1, 7, 7, 320, 1280, 1, 1, 1, 1, CN_ACT_RELU},
      {"conv 1x1 grouped", 1, 28, 28, 64, 128, 1, 1, 4, 1, CN_ACT_RELU},
      {"conv 3x3 grouped", 1, 20, 20, 32, 64, 3, 1, 4, 1, CN_ACT_SWISH},
      {"conv 3x3 grouped worker", 2, 40, 40, 32, 64, 3, 1, 2, 1, CN_ACT_RELU},
      {"conv 3x3 stride 2", 1, 57, 57, 32, 64, 3, 2, 1, 0, CN_ACT_RELU},
      {"conv 7x7 stride 2", 1, 64, 64, 3, 64, 7, 2, 1, 1, CN_ACT_RELU},
      {"conv 3x3 tiny", 1, 5, 5, 4, 8, 3, 1, 1, 1, CN_ACT_LINEAR},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_conv(&cases[i]);
}

/* ---- Winograd ----------------------------------------------------------------------------------
 */

typedef struct wino_ctx {
  cn_window win;
  int filters;
  float *x, *u, *bias;
} wino_ctx;

static void wino_run(const void *p, float *out, int threads) {
  const wino_ctx *cx = p;
  cn_activation relu = cn_act_relu();
  float *scratch = malloc(cn_winograd_scratch(&cx->win, cx->filters) * sizeof(float));
  cn_winograd_conv(&cx->win, cx->filters, cx->x, cx->u, cx->bias, &relu, out, scratch, threads);
  free(scratch);
}

static void test_winograd(int batch, int h, int c, int filters) {
  wino_ctx cx = {.win = window_for(batch, h, h, c, 3, 1, 1), .filters = filters};
  CHECK(cn_winograd_applies(&cx.win, filters, 1));
  float *kernel = random_floats((size_t)9 * c * filters, 1.0f / sqrtf(9.0f * c));
  cx.x = random_floats((size_t)batch * h * h * c, 1.0f);
  cx.bias = random_floats((size_t)filters, 0.1f);
  cx.u = malloc(cn_winograd_kernel_floats(c, filters) * sizeof(float));
  cn_winograd_transform_kernel(kernel, c, filters, cx.u, 1);
  float *u2 = malloc(cn_winograd_kernel_floats(c, filters) * sizeof(float));
  cn_winograd_transform_kernel(kernel, c, filters, u2, 2);
  CHECK(memcmp(cx.u, u2, cn_winograd_kernel_floats(c, filters) * sizeof(float)) == 0);
  check_invariant("winograd", wino_run, &cx, (size_t)(batch * cx.win.oh * cx.win.ow * filters));
  free(kernel);
  free(u2);
  free(cx.x);
  free(cx.bias);
  free(cx.u);
}

/* ---- DepthwiseConv2D ---------------------------------------------------------------------------
 */

typedef struct dw_ctx {
  cn_window win;
  int mult;
  float *x, *kernel, *bias;
} dw_ctx;

static void dw_run(const void *p, float *out, int threads) {
  const dw_ctx *cx = p;
  cn_activation relu6 = cn_act_relu6();
  cn_depthwise(&cx->win, cx->mult, cx->x, cx->kernel, cx->bias, &relu6, out, threads);
}

static void test_depthwise(int h, int c, int stride, int mult) {
  dw_ctx cx = {.win = window_for(1, h, h, c, 3, stride, 1), .mult = mult};
  cx.x = random_floats((size_t)h * h * c, 1.0f);
  cx.kernel = random_floats((size_t)9 * c * mult, 0.3f);
  cx.bias = random_floats((size_t)c * mult, 0.1f);
  check_invariant("depthwise", dw_run, &cx, (size_t)(cx.win.oh * cx.win.ow * c * mult));
  free(cx.x);
  free(cx.kernel);
  free(cx.bias);
}

/* ---- Dense -------------------------------------------------------------------------------------
 */

typedef struct dense_ctx {
  int64_t m, n, k;
  cn_act_kind act;
  float *x, *w, *bias;
} dense_ctx;

static void dense_run(const void *p, float *out, int threads) {
  const dense_ctx *cx = p;
  cn_activation act = cn_act_simple(cx->act);
  cn_gemm_bias_act(cx->m, cx->n, cx->k, cx->x, cx->k, cx->w, cx->n, cx->bias, &act, out, cx->n,
                   threads);
}

static void test_dense(int64_t m, int64_t n, int64_t k, cn_act_kind act) {
  dense_ctx cx = {.m = m, .n = n, .k = k, .act = act};
  cx.x = random_floats((size_t)(m * k), 1.0f);
  cx.w = random_floats((size_t)(k * n), 1.0f / sqrtf((float)k));
  cx.bias = random_floats((size_t)n, 0.1f);
  char what[64];
  snprintf(what, sizeof what, "dense %lldx%lldx%lld", (long long)m, (long long)n, (long long)k);
  check_invariant(what, dense_run, &cx, (size_t)(m * n));
  free(cx.x);
  free(cx.w);
  free(cx.bias);
}

/* The block grid never depends on anything but the shape, and covers the product. */
static void test_plan(void) {
  static const int64_t shapes[][3] = {{1, 1000, 2048}, {8, 4096, 4096}, {300, 1000, 512},
                                      {3136, 64, 256}, {49, 2048, 512}, {196, 96, 576},
                                      {1, 1, 1},       {5, 3, 7}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    cn_gemm_plan p = cn_gemm_plan_make(shapes[i][0], shapes[i][1], shapes[i][2]);
    CHECK(p.block_rows >= 1 && p.block_cols >= 1 && p.block_rows <= 256);
    CHECK(p.row_blocks * p.block_rows >= p.m && (p.row_blocks - 1) * p.block_rows < p.m);
    CHECK(p.col_blocks * p.block_cols >= p.n && (p.col_blocks - 1) * p.block_cols < p.n);
  }
  cn_gemm_plan empty = cn_gemm_plan_make(0, 10, 10);
  CHECK(cn_gemm_plan_blocks(&empty) == 0);
  /* A Dense layer at batch 1 still gives two threads work. */
  cn_gemm_plan p = cn_gemm_plan_make(1, 1000, 2048);
  CHECK(cn_gemm_plan_blocks(&p) >= 2 && cn_gemm_plan_blocks(&p) % 2 == 0);
}

/* ---- whole models ------------------------------------------------------------------------------
 */

/* Seeded weights with a sane scale: kernels ~ 1/sqrt(fan-in), positive variances. */
static void fill_weights(cn_model *m) {
  cn_graph *g = m->graph;
  for (int i = 0; i < g->n_nodes; i++)
    for (int j = 0; j < g->nodes[i].n_params; j++) {
      cn_param *p = &g->nodes[i].params[j];
      int64_t n = cn_shape_numel(&p->shape), last = p->shape.dim[p->shape.rank - 1];
      float scale = p->shape.rank > 1 ? sqrtf(2.0f * last / (float)n) : 0.1f;
      int positive = !strcmp(p->name, "moving_variance") || !strcmp(p->name, "gamma");
      for (int64_t e = 0; e < n; e++)
        p->data[e] = positive ? 1.0f + 0.25f * uniform() : scale * uniform();
    }
  g->weights_version++;
}

static void test_model(const cn_zoo_options *options, int batch) {
  cn_model *model = NULL;
  CHECK_OK(cn_zoo_build(options, &model));
  if (!model) return;
  fill_weights(model);
  cn_shape in = cn_model_input_shape(model), out = cn_model_output_shape(model);
  size_t n_in = (size_t)(batch * cn_shape_numel(&in)),
         n_out = (size_t)(batch * cn_shape_numel(&out));
  float *x = random_floats(n_in, 1.0f), *y1 = calloc(n_out, sizeof(float)),
        *y2 = calloc(n_out, sizeof(float));
  cn_set_threads(1);
  CHECK_OK(cn_model_forward(model, batch, x, y1));
  cn_set_threads(2);
  CHECK_OK(cn_model_forward(model, batch, x, y2));
  int same = memcmp(y1, y2, n_out * sizeof(float)) == 0, finite = 1;
  float lo = y1[0], hi = y1[0];
  for (size_t i = 0; i < n_out; i++) {
    finite &= isfinite(y1[i]);
    lo = y1[i] < lo ? y1[i] : lo, hi = y1[i] > hi ? y1[i] : hi;
  }
  if (!same)
    fprintf(stderr, "%s: 1 and 2 threads differ (max %g)\n", options->name,
            cn_test_max_abs_diff(y1, y2, n_out));
  CHECK(same);
  CHECK(finite && hi > lo); /* not a vacuous comparison of constants */
  free(x);
  free(y1);
  free(y2);
  cn_model_free(model);
}

/* With an algorithm batch of 8, each sample of a batch of 8 is the same bits run alone and in a
 * batch of 3; without one, reports whether any sample differs (whether the choices matter for
 * this model at all, so that the check is not vacuous). */
enum { ALGO_BATCH = 8 };

static int rows_differ(cn_model *model, const float *x, const float *y8, size_t n_in,
                       size_t n_out) {
  float *y = calloc(3 * n_out, sizeof(float));
  int differ = 0;
  for (int s = 0; s < ALGO_BATCH; s++) {
    CHECK_OK(cn_model_forward(model, 1, x + s * n_in, y));
    differ |= memcmp(y, y8 + s * n_out, n_out * sizeof(float)) != 0;
  }
  CHECK_OK(cn_model_forward(model, 3, x + 5 * n_in, y));
  differ |= memcmp(y, y8 + 5 * n_out, 3 * n_out * sizeof(float)) != 0;
  free(y);
  return differ;
}

/* An embedder of the model keeps its algorithm batch: sample 0's vector is the same bits alone. */
static void check_embedder(const cn_model *model, const float *x) {
  cn_embedder *e = NULL;
  CHECK_OK(cn_embedder_new(model, NULL, &e));
  if (!e) return;
  size_t dim = (size_t)cn_embedder_dim(e);
  float *all = calloc(ALGO_BATCH * dim, sizeof(float)), *one = calloc(dim, sizeof(float));
  CHECK_OK(cn_embedder_run(e, ALGO_BATCH, x, all));
  CHECK_OK(cn_embedder_run(e, 1, x, one));
  CHECK(memcmp(all, one, dim * sizeof(float)) == 0);
  free(all);
  free(one);
  cn_embedder_free(e);
}

static void test_batch_invariance(const cn_zoo_options *options, cn_precision precision) {
  cn_model *model = NULL;
  CHECK_OK(cn_zoo_build(options, &model));
  if (!model) return;
  fill_weights(model);
  CHECK_OK(cn_model_set_precision(model, precision));
  cn_shape in = cn_model_input_shape(model), out = cn_model_output_shape(model);
  size_t n_in = (size_t)cn_shape_numel(&in), n_out = (size_t)cn_shape_numel(&out);
  float *x = random_floats(ALGO_BATCH * n_in, 1.0f),
        *y8 = calloc(ALGO_BATCH * n_out, sizeof(float));
  cn_set_threads(2);
  CHECK_OK(cn_model_forward(model, ALGO_BATCH, x, y8));
  int by_batch = rows_differ(model, x, y8, n_in, n_out);
  CHECK_OK(cn_model_set_algorithm_batch(model, ALGO_BATCH));
  CHECK(cn_model_algorithm_batch(model) == ALGO_BATCH);
  float *fixed = calloc(ALGO_BATCH * n_out, sizeof(float));
  CHECK_OK(cn_model_forward(model, ALGO_BATCH, x, fixed));
  CHECK(memcmp(fixed, y8, ALGO_BATCH * n_out * sizeof(float)) == 0); /* B's own choices */
  int fixed_differ = rows_differ(model, x, y8, n_in, n_out);
  if (fixed_differ)
    fprintf(stderr, "%s (%s): a sample differs alone with algorithm batch %d\n", options->name,
            precision == CN_PRECISION_BF16 ? "bf16" : "fp32", ALGO_BATCH);
  CHECK(!fixed_differ);
  check_embedder(model, x);
  printf("%s %dx%d (%s): per-batch choices %s a sample's bits; algorithm batch %d: the same\n",
         options->name, options->height, options->width,
         precision == CN_PRECISION_BF16 ? "bf16" : "fp32", by_batch ? "change" : "keep",
         ALGO_BATCH);
  free(x);
  free(y8);
  free(fixed);
  cn_model_free(model);
}

int main(void) {
  rng_state = 1234;
  test_plan();
  test_convolutions();
  test_winograd(1, 28, 32, 64);
  test_winograd(2, 15, 16, 24);   /* few tiles: the threads share each block */
  test_winograd(1, 40, 256, 264); /* a large transformed kernel: shared blocks, the last partial */
  test_depthwise(56, 32, 1, 1);
  test_depthwise(56, 32, 2, 1);
  test_depthwise(28, 24, 1, 2);
  test_dense(1, 1000, 2048, CN_ACT_LINEAR);
  test_dense(1, 4096, 1024, CN_ACT_RELU);
  test_dense(8, 1000, 512, CN_ACT_SOFTMAX);
  test_dense(300, 1000, 256, CN_ACT_RELU);
  test_model(&(cn_zoo_options){.name = "mobilenet", .alpha = 0.25f, .height = 96, .width = 96}, 1);
  test_model(&(cn_zoo_options){.name = "resnet50", .height = 64, .width = 64}, 1);
  test_model(&(cn_zoo_options){.name = "mobilenet", .alpha = 0.25f, .height = 96, .width = 96}, 3);
  /* Sizes where batch 1 and batch 8 choose differently (ResNet50's 28x28 and 14x14 3x3 layers,
   * VGG16's, InceptionV3's; MobileNetV2's 7x7 blocks fused or apart). */
  test_batch_invariance(&(cn_zoo_options){.name = "resnet50", .height = 224, .width = 224},
                        CN_PRECISION_FP32);
  test_batch_invariance(&(cn_zoo_options){.name = "vgg16", .height = 112, .width = 112},
                        CN_PRECISION_FP32);
  test_batch_invariance(&(cn_zoo_options){.name = "inception_v3", .height = 299, .width = 299},
                        CN_PRECISION_FP32);
  test_batch_invariance(&(cn_zoo_options){.name = "mobilenet_v2", .height = 224, .width = 224},
                        CN_PRECISION_FP32);
  test_batch_invariance(&(cn_zoo_options){.name = "resnet50", .height = 224, .width = 224},
                        CN_PRECISION_BF16);
  return cn_test_finish();
}
