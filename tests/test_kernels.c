/* The optimized kernels against naive reference loops written here: random sizes, strides,
 * dilations, padding modes, groups and batches; max |diff| <= 1e-4 relative to the magnitude. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "ops/ops.h"
#include "testlib.h"

static unsigned rng = 2024;
static int rand_int(int lo, int hi) { /* inclusive */
  rng = rng * 1103515245u + 12345u;
  return lo + (int)((rng >> 8) % (unsigned)(hi - lo + 1));
}
static float *random_floats(size_t n) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = (float)rand_int(-1000, 1000) / 1000.0f;
  return x;
}

/* Compares and reports the case on failure. */
static void check_close(const char *what, int id, const float *got, const float *ref, size_t n) {
  double scale = 1;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
  double diff = cn_test_max_abs_diff(got, ref, n);
  if (diff > 1e-4 * scale)
    fprintf(stderr, "%s case %d: max diff %g (scale %g)\n", what, id, diff, scale);
  CHECK(diff <= 1e-4 * scale);
}

/* The window geometry, computed independently of cn_window_make. */
static cn_window random_window(int64_t batch, int64_t c, int max_k, int allow_dilation) {
  cn_window w = {.batch = batch, .c = c};
  w.ih = rand_int(1, 13), w.iw = rand_int(1, 13);
  w.kh = rand_int(1, max_k), w.kw = rand_int(1, max_k);
  w.sh = rand_int(1, 3), w.sw = rand_int(1, 3);
  w.dh = allow_dilation ? rand_int(1, 3) : 1, w.dw = allow_dilation ? rand_int(1, 3) : 1;
  int same = rand_int(0, 1);
  int64_t span_h = (int64_t)(w.kh - 1) * w.dh + 1, span_w = (int64_t)(w.kw - 1) * w.dw + 1;
  if (!same && (span_h > w.ih || span_w > w.iw)) same = 1;
  w.oh = same ? (w.ih + w.sh - 1) / w.sh : (w.ih - span_h) / w.sh + 1;
  w.ow = same ? (w.iw + w.sw - 1) / w.sw : (w.iw - span_w) / w.sw + 1;
  if (same) {
    int64_t th = (w.oh - 1) * w.sh + span_h - w.ih, tw = (w.ow - 1) * w.sw + span_w - w.iw;
    w.pad_top = th > 0 ? (int)(th / 2) : 0;
    w.pad_left = tw > 0 ? (int)(tw / 2) : 0;
  }
  return w;
}

/* Input index of tap (ky, kx) for output (oy, ox), or -1 in the padding. */
static int64_t tap(const cn_window *w, int64_t b, int64_t oy, int64_t ox, int ky, int kx) {
  int64_t iy = oy * w->sh - w->pad_top + (int64_t)ky * w->dh;
  int64_t ix = ox * w->sw - w->pad_left + (int64_t)kx * w->dw;
  if (iy < 0 || iy >= w->ih || ix < 0 || ix >= w->iw) return -1;
  return ((b * w->ih + iy) * w->iw + ix) * w->c;
}

static void ref_conv(const cn_window *w, int64_t f, int groups, const float *x, const float *k,
                     const float *bias, float *y) {
  int64_t cg = w->c / groups, fg = f / groups;
  for (int64_t b = 0; b < w->batch; b++)
    for (int64_t oy = 0; oy < w->oh; oy++)
      for (int64_t ox = 0; ox < w->ow; ox++)
        for (int64_t o = 0; o < f; o++) {
          double acc = bias ? bias[o] : 0;
          for (int ky = 0; ky < w->kh; ky++)
            for (int kx = 0; kx < w->kw; kx++) {
              int64_t at = tap(w, b, oy, ox, ky, kx);
              if (at < 0) continue;
              for (int64_t ci = 0; ci < cg; ci++)
                acc += x[at + (o / fg) * cg + ci] * k[((ky * w->kw + kx) * cg + ci) * f + o];
            }
          y[((b * w->oh + oy) * w->ow + ox) * f + o] = (float)fmax(acc, 0); /* relu */
        }
}

static void run_conv_case(int id, cn_window w, int64_t f, int groups, int use_bias) {
  int64_t cg = w.c / groups;
  size_t nx = (size_t)(w.batch * w.ih * w.iw * w.c), nk = (size_t)(w.kh * w.kw * cg * f);
  size_t ny = (size_t)(w.batch * w.oh * w.ow * f);
  float *x = random_floats(nx), *k = random_floats(nk), *bias = use_bias ? random_floats(f) : NULL;
  float *y = malloc(ny * sizeof(float)), *ref = malloc(ny * sizeof(float));
  float *scratch = malloc((cn_conv2d_scratch(&w, f, groups) + 1) * sizeof(float));
  cn_activation relu = cn_act_relu();
  cn_conv2d(&w, f, groups, x, k, bias, &relu, y, scratch, 2);
  ref_conv(&w, f, groups, x, k, bias, ref);
  check_close("conv2d", id, y, ref, ny);
  free(x), free(k), free(bias), free(y), free(ref), free(scratch);
}

static void test_conv2d(void) {
  for (int id = 0; id < 60; id++) {
    int groups = rand_int(0, 2) ? 1 : rand_int(2, 3);
    int64_t c = groups * rand_int(1, 5), f = groups * rand_int(1, 6);
    cn_window w = random_window(rand_int(1, 3), c, 4, 1);
    if (id % 5 == 0) { /* the pointwise GEMM path */
      w.kh = w.kw = w.sh = w.sw = 1;
      w.oh = w.ih, w.ow = w.iw, w.pad_top = w.pad_left = 0;
    }
    run_conv_case(id, w, f, groups, rand_int(0, 1));
  }
  /* Large enough that im2col runs in several tiles, the last one partial. */
  cn_window big = {.batch = 2,
                   .ih = 33,
                   .iw = 32,
                   .c = 64,
                   .oh = 33,
                   .ow = 32,
                   .kh = 5,
                   .kw = 5,
                   .sh = 1,
                   .sw = 1,
                   .dh = 1,
                   .dw = 1,
                   .pad_top = 2,
                   .pad_left = 2};
  CHECK(cn_conv2d_scratch(&big, 16, 1) < (size_t)(2 * 33 * 32 * 5 * 5 * 64));
  run_conv_case(100, big, 16, 1, 1);
}

/* A 3x3 stride-1 window of the kind Winograd takes: odd sizes, same or valid padding. */
static cn_window winograd_window(int64_t batch, int64_t c, int64_t ih, int64_t iw, int same) {
  cn_window w = {.batch = batch, .ih = ih, .iw = iw, .c = c, .kh = 3, .kw = 3};
  w.sh = w.sw = w.dh = w.dw = 1;
  w.oh = same ? ih : ih - 2, w.ow = same ? iw : iw - 2;
  w.pad_top = w.pad_left = same;
  return w;
}

/* Winograd against the direct sum; returns the error relative to the output magnitude. */
static double run_winograd_case(int id, cn_window w, int64_t f) {
  CHECK(cn_winograd_applies(&w, f, 1));
  size_t nx = (size_t)(w.batch * w.ih * w.iw * w.c), nk = (size_t)(9 * w.c * f);
  size_t ny = (size_t)(w.batch * w.oh * w.ow * f);
  float *x = random_floats(nx), *k = random_floats(nk), *bias = random_floats((size_t)f);
  float *u = malloc(cn_winograd_kernel_floats(w.c, f) * sizeof(float));
  float *y = malloc(ny * sizeof(float)), *ref = malloc(ny * sizeof(float));
  float *scratch = malloc(cn_winograd_scratch(&w, f) * sizeof(float));
  cn_activation relu = cn_act_relu();
  cn_winograd_transform_kernel(k, w.c, f, u, 2);
  cn_winograd_conv(&w, f, x, u, bias, &relu, y, scratch, 2);
  ref_conv(&w, f, 1, x, k, bias, ref);
  check_close("winograd", id, y, ref, ny);
  double scale = 1;
  for (size_t i = 0; i < ny; i++) scale = fmax(scale, fabs(ref[i]));
  double err = cn_test_max_abs_diff(y, ref, ny) / scale;
  free(x), free(k), free(bias), free(u), free(y), free(ref), free(scratch);
  return err;
}

static void test_winograd(void) {
  double worst = 0;
  for (int id = 0; id < 16; id++) {
    int same = rand_int(0, 1);
    cn_window w =
        winograd_window(rand_int(1, 3), rand_int(8, 40), rand_int(9, 23), rand_int(9, 23), same);
    if (!cn_winograd_applies(&w, 8, 1)) w = winograd_window(2, w.c, 21, 19, same);
    worst = fmax(worst, run_winograd_case(id, w, rand_int(1, 48)));
  }
  /* Many tiles: several blocks per thread, the last one partial. */
  worst = fmax(worst, run_winograd_case(100, winograd_window(2, 96, 57, 61, 1), 67));
  /* A large transformed kernel: the threads share each block (team mode). */
  worst = fmax(worst, run_winograd_case(101, winograd_window(1, 256, 21, 23, 1), 264));
  printf("winograd F(4x4,3x3): worst error %.2g of the output magnitude\n", worst);
  /* Not taken: strides, few channels, few tiles, other kernel sizes. */
  cn_window w = winograd_window(1, 64, 40, 40, 1);
  CHECK(cn_winograd_applies(&w, 64, 1));
  CHECK(!cn_winograd_applies(&w, 64, 2));
  w.sh = 2;
  CHECK(!cn_winograd_applies(&w, 64, 1));
  w = winograd_window(1, 4, 40, 40, 1);
  CHECK(!cn_winograd_applies(&w, 64, 1));
  w = winograd_window(1, 64, 6, 6, 1);
  CHECK(!cn_winograd_applies(&w, 64, 1));
}

/* Conv2D through the operator: the derived kernels (Winograd's for 8 images, 200 tiles; the panels
 * for one, 25 tiles) follow weights changed in place, with batch sizes alternating. */
static void test_conv_op_cache(void) {
  cn_conv2d_attrs a = {.filters = 24, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .dh = 1, .dw = 1};
  a.groups = 1, a.use_bias = 1, a.padding = CN_PAD_SAME, a.act = cn_act_relu();
  cn_window w8 = winograd_window(8, 16, 20, 20, 1);
  size_t nx = 8 * 20 * 20 * 16, nk = 9 * 16 * 24, ny = 8 * 20 * 20 * 24;
  float *x = random_floats(nx), *k = random_floats(nk), *bias = random_floats(24);
  float *y = malloc(ny * sizeof(float)), *ref = malloc(ny * sizeof(float));
  float *scratch = malloc(cn_winograd_scratch(&w8, 24) * sizeof(float) + 4 * (1 << 20));
  cn_node node = {.name = "conv", .op = &cn_op_conv2d, .attrs = &a, .n_params = 2};
  node.params[0].data = k, node.params[1].data = bias;
  node.params[0].shape = (cn_shape){4, {3, 3, 16, 24}}; /* the cache reads the kernel's size */
  CHECK(cn_winograd_applies(&w8, 24, 1));
  for (int round = 0; round < 6; round++) {
    int64_t batch = round % 2 ? 8 : 1;
    if (round == 2) k[nk / 2] += 0.5f; /* one weight changes */
    if (round == 5) k[0] = k[1], k[1] = 0.25f;
    cn_tensor in = {{4, {batch, 20, 20, 16}}, x}, out = {{4, {batch, 20, 20, 24}}, y};
    cn_exec ex = {.batch = (int)batch, .threads = 2, .scratch = scratch};
    cn_op_conv2d.forward(&node, &in, &out, &ex);
    CHECK(node.cache != NULL);
    cn_window w = winograd_window(batch, 16, 20, 20, 1);
    ref_conv(&w, 24, 1, x, k, bias, ref);
    check_close("conv op cache", round, y, ref, (size_t)(batch * 20 * 20 * 24));
  }
  cn_op_conv2d.release(&node);
  CHECK(node.cache == NULL);
  free(x), free(k), free(bias), free(y), free(ref), free(scratch);
}

static void run_depthwise_case(int id, cn_window w, int mult) {
  int64_t oc = w.c * mult;
  size_t nx = (size_t)(w.batch * w.ih * w.iw * w.c), ny = (size_t)(w.batch * w.oh * w.ow * oc);
  float *x = random_floats(nx), *k = random_floats((size_t)(w.kh * w.kw * oc));
  float *bias = id % 2 ? random_floats((size_t)oc) : NULL;
  float *y = malloc(ny * sizeof(float)), *ref = malloc(ny * sizeof(float));
  cn_activation relu = cn_act_relu();
  cn_depthwise(&w, mult, x, k, bias, &relu, y, 2);
  for (int64_t b = 0; b < w.batch; b++)
    for (int64_t oy = 0; oy < w.oh; oy++)
      for (int64_t ox = 0; ox < w.ow; ox++)
        for (int64_t o = 0; o < oc; o++) {
          double acc = bias ? bias[o] : 0;
          for (int ky = 0; ky < w.kh; ky++)
            for (int kx = 0; kx < w.kw; kx++) {
              int64_t at = tap(&w, b, oy, ox, ky, kx);
              if (at >= 0) acc += x[at + o / mult] * k[(ky * w.kw + kx) * oc + o];
            }
          ref[((b * w.oh + oy) * w.ow + ox) * oc + o] = (float)fmax(acc, 0);
        }
  check_close("depthwise", id, y, ref, ny);
  free(x), free(k), free(bias), free(y), free(ref);
}

static void test_depthwise(void) {
  for (int id = 0; id < 40; id++) {
    int mult = rand_int(1, 3);
    cn_window w = random_window(rand_int(1, 3), id % 2 ? rand_int(1, 9) : rand_int(16, 40), 4, 1);
    if (id % 3 == 0) mult = 1;
    run_depthwise_case(id, w, mult);
  }
  /* The 3x3 row kernel: strides 1 and 2, same and valid, odd sizes, channels not a multiple of
   * 8, images narrower than a 4-column group. */
  for (int id = 100; id < 140; id++) {
    cn_window w;
    do {
      w = random_window(rand_int(1, 3), rand_int(8, 37), 3, 0);
      w.ih = rand_int(1, 19), w.iw = rand_int(1, 19), w.sh = w.sw = rand_int(1, 2);
      int same = rand_int(0, 1) || w.ih < 3 || w.iw < 3;
      w.kh = w.kw = 3;
      w.oh = same ? (w.ih + w.sh - 1) / w.sh : (w.ih - 3) / w.sh + 1;
      w.ow = same ? (w.iw + w.sw - 1) / w.sw : (w.iw - 3) / w.sw + 1;
      int64_t th = (w.oh - 1) * w.sh + 3 - w.ih, tw = (w.ow - 1) * w.sw + 3 - w.iw;
      w.pad_top = same && th > 0 ? (int)(th / 2) : 0;
      w.pad_left = same && tw > 0 ? (int)(tw / 2) : 0;
    } while (w.oh < 1 || w.ow < 1);
    run_depthwise_case(id, w, 1);
  }
}

static void test_pooling(void) {
  /* ids from 40: channels in registers a block of 64 (or 32) at a time, and a tail; from 60,
   * averages that count the padding (before the input and pad_end after it) */
  for (int id = 0; id < 80; id++) {
    cn_window w = random_window(rand_int(1, 3), id < 40 ? rand_int(1, 9) : rand_int(60, 200), 4, 0);
    size_t nx = (size_t)(w.batch * w.ih * w.iw * w.c), ny = (size_t)(w.batch * w.oh * w.ow * w.c);
    float *x = random_floats(nx), *y = malloc(ny * sizeof(float)),
          *ref = malloc(ny * sizeof(float));
    int is_max = id < 60 && id % 2, padded = id >= 60, pad_end[2] = {0, 0};
    if (padded) pad_end[0] = rand_int(0, 2), pad_end[1] = rand_int(0, 2);
    if (is_max)
      cn_maxpool(&w, x, y, 2);
    else if (padded)
      cn_avgpool_padded(&w, pad_end[0], pad_end[1], x, y, 2);
    else
      cn_avgpool(&w, x, y, 2);
    for (int64_t b = 0; b < w.batch; b++)
      for (int64_t oy = 0; oy < w.oh; oy++)
        for (int64_t ox = 0; ox < w.ow; ox++)
          for (int64_t ch = 0; ch < w.c; ch++) {
            double acc = is_max ? -INFINITY : 0;
            int count = 0, cells = 0;
            for (int ky = 0; ky < w.kh; ky++)
              for (int kx = 0; kx < w.kw; kx++) {
                int64_t iy = oy * w.sh - w.pad_top + ky, ix = ox * w.sw - w.pad_left + kx;
                cells += iy < w.ih + pad_end[0] && ix < w.iw + pad_end[1];
                int64_t at = tap(&w, b, oy, ox, ky, kx);
                if (at < 0) continue;
                acc = is_max ? fmax(acc, x[at + ch]) : acc + x[at + ch];
                count++;
              }
            double avg = count ? acc / (padded ? cells : count) : 0;
            ref[((b * w.oh + oy) * w.ow + ox) * w.c + ch] = (float)(is_max ? acc : avg);
          }
    check_close(is_max ? "maxpool" : "avgpool", id, y, ref, ny);
    free(x), free(y), free(ref);
  }
}

static void test_gemm(void) {
  /* One row (Dense at batch 1), tall (row blocks), short and wide (column split, with a softmax
   * over the whole row and a tanh), odd column counts. */
  int64_t sizes[][3] = {{1, 1000, 300}, {5000, 7, 9},    {37, 129, 300},
                        {49, 333, 160}, {3, 1000, 1280}, {196, 97, 577}};
  for (int id = 0; id < 6; id++) {
    int64_t m = sizes[id][0], n = sizes[id][1], k = sizes[id][2];
    float *x = random_floats((size_t)(m * k)), *w = random_floats((size_t)(k * n));
    float *bias = random_floats((size_t)n);
    float *y = malloc((size_t)(m * n) * sizeof(float)),
          *ref = malloc((size_t)(m * n) * sizeof(float));
    int softmax = id == 0 || id == 4;
    cn_activation act = softmax ? cn_act_softmax() : cn_act_simple(CN_ACT_TANH);
    cn_gemm_bias_act(m, n, k, x, k, w, n, bias, &act, y, n, 2);
    for (int64_t r = 0; r < m; r++) {
      double sum = 0;
      for (int64_t j = 0; j < n; j++) {
        double acc = bias[j];
        for (int64_t i = 0; i < k; i++) acc += x[r * k + i] * w[i * n + j];
        ref[r * n + j] = (float)(softmax ? acc : tanh(acc));
        sum += softmax ? exp(acc) : 0;
      }
      if (softmax)
        for (int64_t j = 0; j < n; j++) ref[r * n + j] = (float)(exp(ref[r * n + j]) / sum);
    }
    check_close("gemm", id, y, ref, (size_t)(m * n));
    free(x), free(w), free(bias), free(y), free(ref);
  }
}

/* The product against packed panels: k across several slices and not a multiple of them, columns
 * past the last full panel, rows past the last full strip, a residual sum; the same bits for one
 * and two threads and for each row computed alone. Rows 4 KB apart (k 1024, 4096) are copied
 * before the products (they crowd an L1 set), a row alone is not: the same bits. */
static void test_panels_gemm(void) {
  int64_t sizes[][3] = {{1, 4096, 70}, {49, 600, 512}, {197, 300, 77}, {13, 1, 9},
                        {300, 65, 48}, {60, 1024, 40}, {30, 4096, 33}};
  for (int id = 0; id < 7; id++) {
    int64_t m = sizes[id][0], k = sizes[id][1], n = sizes[id][2];
    float *x = random_floats((size_t)(m * k)), *w = random_floats((size_t)(k * n));
    float *bias = random_floats((size_t)n), *other = random_floats((size_t)(m * n));
    float *packed = malloc(cn_panels_floats(k, n) * sizeof(float));
    float *y1 = malloc((size_t)(m * n) * sizeof(float)),
          *y2 = malloc((size_t)(m * n) * sizeof(float));
    float *ref = malloc((size_t)(m * n) * sizeof(float)), *row = malloc((size_t)n * sizeof(float));
    cn_panels_pack(w, n, k, n, packed);
    cn_panels p = {packed, k, n};
    cn_activation act = cn_act_relu();
    act.residual = other, act.residual_of = y1;
    cn_panels_gemm(m, x, k, &p, bias, &act, y1, n, 1);
    act.residual_of = y2;
    cn_panels_gemm(m, x, k, &p, bias, &act, y2, n, 2);
    CHECK(memcmp(y1, y2, (size_t)(m * n) * sizeof(float)) == 0);
    int alone = 1;
    for (int64_t r = 0; r < m; r++) {
      act.residual_of = row - r * n; /* row r's residual */
      cn_panels_gemm(1, x + r * k, k, &p, bias, &act, row, n, 2);
      alone &= memcmp(row, y1 + r * n, (size_t)n * sizeof(float)) == 0;
      for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t i = 0; i < k; i++) acc += (double)x[r * k + i] * w[i * n + j];
        ref[r * n + j] = (float)fmax(acc + bias[j] + other[r * n + j], 0);
      }
    }
    CHECK(alone);
    check_close("panels", id, y1, ref, (size_t)(m * n));
    free(x), free(w), free(bias), free(other), free(packed), free(y1), free(y2), free(ref),
        free(row);
  }
}

/* The micro-kernels' own epilogue (bias, residual, ReLU6 in registers) gives the bits of the
 * separate pass over plain sums, partial panels included. */
static void test_panels_epilogue(void) {
  int64_t m = 30, k = 300, n = 70;
  float *x = random_floats((size_t)(m * k)), *w = random_floats((size_t)(k * n));
  float *bias = random_floats((size_t)n), *other = random_floats((size_t)(m * n));
  float *packed = malloc(cn_panels_floats(k, n) * sizeof(float));
  float *fused = malloc((size_t)(m * n) * sizeof(float)),
        *apart = malloc((size_t)(m * n) * sizeof(float));
  cn_panels_pack(w, n, k, n, packed);
  cn_panels p = {packed, k, n};
  cn_activation act = cn_act_relu6(), linear = cn_act_linear();
  for (size_t i = 0; i < (size_t)(m * n); i += 7) other[i] = -bias[i % n] - 1e9f; /* clipped */
  act.residual = other, act.residual_of = fused;
  cn_panels_gemm(m, x, k, &p, bias, &act, fused, n, 2);
  cn_panels_gemm(m, x, k, &p, NULL, &linear, apart, n, 2);
  act.residual_of = apart;
  cn_bias_act_rows(apart, m, n, n, bias, &act, 1);
  CHECK(memcmp(fused, apart, (size_t)(m * n) * sizeof(float)) == 0);
  free(x), free(w), free(bias), free(other), free(packed), free(fused), free(apart);
}

/* A few rows against a kernel read in place: k not a multiple of the depth step, columns past the
 * last vector, a softmax over whole rows; the same bits for one and two threads and for each row
 * alone. */
static void test_gemm_rows(void) {
  /* k of 3000 and 700: chunks of whole kernel rows (12, the last shorter; 3 for 2 threads) */
  int64_t sizes[][3] = {{1, 3000, 1000}, {8, 77, 4100}, {3, 13, 5}, {5, 1, 40}, {2, 700, 333}};
  for (int id = 0; id < 5; id++) {
    int64_t m = sizes[id][0], k = sizes[id][1], n = sizes[id][2];
    float *x = random_floats((size_t)(m * k)), *w = random_floats((size_t)(k * n));
    float *bias = random_floats((size_t)n);
    float *y1 = malloc((size_t)(m * n) * sizeof(float)),
          *y2 = malloc((size_t)(m * n) * sizeof(float));
    float *ref = malloc((size_t)(m * n) * sizeof(float)), *row = malloc((size_t)n * sizeof(float));
    int softmax = id % 2 == 0;
    cn_activation act = softmax ? cn_act_softmax() : cn_act_relu();
    cn_gemm_rows(m, x, k, w, n, k, n, bias, &act, y1, n, 1);
    cn_gemm_rows(m, x, k, w, n, k, n, bias, &act, y2, n, 2);
    CHECK(memcmp(y1, y2, (size_t)(m * n) * sizeof(float)) == 0);
    int alone = 1;
    for (int64_t r = 0; r < m; r++) {
      cn_gemm_rows(1, x + r * k, k, w, n, k, n, bias, &act, row, n, 2);
      alone &= memcmp(row, y1 + r * n, (size_t)n * sizeof(float)) == 0;
      double sum = 0;
      for (int64_t j = 0; j < n; j++) {
        double acc = bias[j];
        for (int64_t i = 0; i < k; i++) acc += (double)x[r * k + i] * w[i * n + j];
        ref[r * n + j] = (float)(softmax ? acc : fmax(acc, 0));
        sum += softmax ? exp(acc) : 0;
      }
      if (softmax)
        for (int64_t j = 0; j < n; j++) ref[r * n + j] = (float)(exp(ref[r * n + j]) / sum);
    }
    CHECK(alone);
    check_close("gemm rows", id, y1, ref, (size_t)(m * n));
    free(x), free(w), free(bias), free(y1), free(y2), free(ref), free(row);
  }
}

/* Convolutions on panels against the direct sum: pointwise, padded and strided windows, worker
 * tiles (many pixels) and team tiles (few pixels, a deep patch). */
/* im2col written plainly: a row of kh * kw * c values per output pixel, zeros in the padding. */
static float *unfold(const cn_window *w, const float *x) {
  int64_t kdim = (int64_t)w->kh * w->kw * w->c, pixels = w->batch * w->oh * w->ow;
  float *col = malloc((size_t)(pixels * kdim) * sizeof(float));
  for (int64_t px = 0; px < pixels; px++) {
    int64_t b = px / (w->oh * w->ow), oy = px / w->ow % w->oh, ox = px % w->ow;
    float *dst = col + px * kdim;
    for (int ky = 0; ky < w->kh; ky++)
      for (int kx = 0; kx < w->kw; kx++)
        for (int64_t c = 0; c < w->c; c++) {
          int64_t iy = oy * w->sh - w->pad_top + ky * w->dh;
          int64_t ix = ox * w->sw - w->pad_left + kx * w->dw;
          int inside = iy >= 0 && iy < w->ih && ix >= 0 && ix < w->iw;
          *dst++ = inside ? x[((b * w->ih + iy) * w->iw + ix) * w->c + c] : 0.0f;
        }
  }
  return col;
}

/* A window of `batch` ih x iw x c images to oh x ow outputs: kh x kw taps, stride s both ways, rows
 * dh apart, padding pt above and pl left. */
static cn_window window(int64_t batch, int64_t ih, int64_t iw, int64_t c, int64_t oh, int64_t ow,
                        int kh, int kw, int s, int dh, int pt, int pl) {
  return (cn_window){batch, ih, iw, c, oh, ow, kh, kw, s, s, dh, 1, pt, pl};
}

/* cn_conv2d_panels on w (f filters, a ReLU) on 1 and 2 threads: the same bits, and those of the
 * panels on im2col's rows whether the patches were read in place; close to the reference. */
static void check_conv2d_panels(const cn_window *w, int64_t f, int id) {
  int64_t kdim = w->kh * w->kw * w->c;
  size_t nx = (size_t)(w->batch * w->ih * w->iw * w->c),
         ny = (size_t)(w->batch * w->oh * w->ow * f);
  float *x = random_floats(nx), *k = random_floats((size_t)(kdim * f)), *bias = random_floats(f);
  float *packed = malloc(cn_panels_floats(kdim, f) * sizeof(float));
  float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
  float *ref = malloc(ny * sizeof(float));
  float *scratch = malloc((cn_conv2d_scratch(w, f, 1) + 1) * sizeof(float));
  cn_panels_pack(k, f, kdim, f, packed);
  cn_panels p = {packed, kdim, f};
  cn_activation relu = cn_act_relu();
  cn_conv2d_panels(w, f, x, &p, bias, &relu, y1, scratch, 1);
  cn_conv2d_panels(w, f, x, &p, bias, &relu, y2, scratch, 2);
  CHECK(memcmp(y1, y2, ny * sizeof(float)) == 0);
  int64_t pixels = w->batch * w->oh * w->ow;
  float *col = unfold(w, x), *y3 = malloc(ny * sizeof(float));
  cn_panels_gemm(pixels, col, kdim, &p, bias, &relu, y3, f, 1);
  CHECK(memcmp(y1, y3, ny * sizeof(float)) == 0);
  ref_conv(w, f, 1, x, k, bias, ref);
  check_close("conv2d panels", id, y2, ref, ny);
  free(x), free(k), free(bias), free(packed), free(y1), free(y2), free(ref), free(scratch);
  free(col), free(y3);
}

static void test_conv2d_panels(void) {
  cn_window cases[] = {
      {.batch = 2, .ih = 9, .iw = 7, .c = 70, .oh = 9, .ow = 7, .kh = 1, .kw = 1},
      {.batch = 1,
       .ih = 7,
       .iw = 7,
       .c = 96,
       .oh = 7,
       .ow = 7,
       .kh = 3,
       .kw = 3,
       .pad_top = 1,
       .pad_left = 1},
      {.batch = 3,
       .ih = 30,
       .iw = 31,
       .c = 20,
       .oh = 15,
       .ow = 15,
       .kh = 3,
       .kw = 3,
       .sh = 2,
       .sw = 2},
      {.batch = 2,
       .ih = 40,
       .iw = 40,
       .c = 64,
       .oh = 40,
       .ow = 40,
       .kh = 3,
       .kw = 3,
       .pad_top = 1,
       .pad_left = 1},
      /* InceptionV3's 1x7 and 7x1, a strided and a row-dilated 3x3: patches read in place */
      {.batch = 2,
       .ih = 17,
       .iw = 17,
       .c = 40,
       .oh = 17,
       .ow = 17,
       .kh = 1,
       .kw = 7,
       .pad_left = 3},
      {.batch = 1, .ih = 17, .iw = 16, .c = 72, .oh = 17, .ow = 16, .kh = 7, .kw = 1, .pad_top = 3},
      {.batch = 2,
       .ih = 15,
       .iw = 14,
       .c = 64,
       .oh = 8,
       .ow = 7,
       .kh = 3,
       .kw = 3,
       .sh = 2,
       .sw = 2,
       .pad_top = 1,
       .pad_left = 0},
      {.batch = 1,
       .ih = 12,
       .iw = 11,
       .c = 32,
       .oh = 12,
       .ow = 11,
       .kh = 3,
       .kw = 3,
       .dh = 2,
       .pad_top = 2,
       .pad_left = 1},
      /* stems: short tap rows (21 and 9 values) read in place as one patch */
      {.batch = 2,
       .ih = 23,
       .iw = 21,
       .c = 3,
       .oh = 12,
       .ow = 11,
       .kh = 7,
       .kw = 7,
       .sh = 2,
       .sw = 2,
       .pad_top = 3,
       .pad_left = 3},
      {.batch = 3,
       .ih = 19,
       .iw = 17,
       .c = 3,
       .oh = 9,
       .ow = 8,
       .kh = 3,
       .kw = 3,
       .sh = 2,
       .sw = 2},
      {.batch = 1,
       .ih = 10,
       .iw = 9,
       .c = 4,
       .oh = 10,
       .ow = 9,
       .kh = 3,
       .kw = 3,
       .dh = 2,
       .pad_top = 2,
       .pad_left = 1},
      /* rows a multiple of 4 KB apart, copied before the products: a stride-2 3x3 and 1x1 over
       * 512 channels (slices of k within a tap row; one pass), a 3x1 over 1024 (one pass, three
       * tap rows) */
      {.batch = 1,
       .ih = 9,
       .iw = 9,
       .c = 512,
       .oh = 4,
       .ow = 4,
       .kh = 3,
       .kw = 3,
       .sh = 2,
       .sw = 2},
      {.batch = 1,
       .ih = 12,
       .iw = 12,
       .c = 512,
       .oh = 6,
       .ow = 6,
       .kh = 1,
       .kw = 1,
       .sh = 2,
       .sw = 2},
      {.batch = 1, .ih = 8, .iw = 8, .c = 1024, .oh = 6, .ow = 8, .kh = 3, .kw = 1},
  };
  int64_t filters[] = {40, 130, 64, 33, 48, 40, 70, 32, 64, 32, 40, 32, 64, 32};
  for (int id = 0; id < 14; id++) {
    cn_window w = cases[id];
    if (!w.sh) w.sh = w.sw = 1;
    if (!w.dh) w.dh = 1;
    w.dw = 1;
    check_conv2d_panels(&w, filters[id], id);
  }
}

/* Windows that reach past the image, whole panels and a ReLU: strips of pixels with the same
 * taps read the unpadded input (cn_panels_conv_exact), the same bits as im2col's rows. */
static void test_conv2d_exact(void) {
  cn_window cases[] = {
      /* 3x3 over 14x14 and 7x7 (ResNet50), 2 images */
      window(2, 14, 14, 64, 14, 14, 3, 3, 1, 1, 1, 1),
      window(1, 7, 7, 96, 7, 7, 3, 3, 1, 1, 1, 1),
      /* 1x7 and 7x1 (InceptionV3), a 5x5 over a 3x4 image: taps cut on both sides */
      window(2, 17, 17, 40, 17, 17, 1, 7, 1, 1, 0, 3),
      window(3, 17, 16, 24, 17, 16, 7, 1, 1, 1, 3, 0),
      window(2, 3, 4, 16, 3, 4, 5, 5, 1, 1, 2, 2),
      /* stride 2 with padding at the end only (TensorFlow's "same"), a row-dilated 3x3 */
      window(2, 16, 15, 32, 8, 8, 3, 3, 2, 1, 0, 0),
      window(1, 12, 11, 32, 12, 11, 3, 3, 1, 2, 2, 1),
      /* a stem: 7x7 over 3 channels, stride 2 */
      window(2, 29, 27, 3, 15, 14, 7, 7, 2, 1, 3, 3),
      /* padding wider than the window: border pixels read no tap at all (bias, then ReLU) */
      window(2, 4, 5, 70, 8, 7, 1, 3, 1, 1, 2, 1),
      /* many rows (several items, strip-major) */
      window(4, 40, 33, 32, 40, 33, 3, 3, 1, 1, 1, 1),
  };
  int64_t filters[] = {64, 32, 64, 32, 96, 64, 32, 64, 32, 64};
  for (int id = 0; id < 10; id++) {
    cn_window w = cases[id];
    int64_t kdim = w.kh * w.kw * w.c;
    cn_panels p = {NULL, kdim, filters[id]};
    cn_activation relu = cn_act_relu();
    CHECK(cn_panels_conv_exact(&w, &p, &relu));
    check_conv2d_panels(&w, filters[id], 100 + id);
  }
  cn_window valid = window(1, 9, 9, 32, 7, 7, 3, 3, 1, 1, 0, 0);
  cn_panels p = {NULL, 288, 64};
  cn_activation relu = cn_act_relu(), linear = cn_act_linear();
  CHECK(!cn_panels_conv_exact(&valid, &p, &relu)); /* inside the image: nothing to skip */
  valid.pad_top = valid.pad_left = 1, valid.oh = valid.ow = 9;
  CHECK(cn_panels_conv_exact(&valid, &p, &linear));
  p.n = 40;
  CHECK(!cn_panels_conv_exact(&valid, &p, &relu)); /* a partial panel */
}

/* A 1x1 convolution plus a residual written over the residual: by the panels where
 * cn_panels_in_place allows it (several strips and panels, threads 1 and 2, a short last strip)
 * and by the plain fallback, the same bits as the panels into a buffer of their own. */
static void test_conv1x1_over_residual(void) {
  cn_window w = {.batch = 2, .ih = 7, .iw = 9, .c = 40, .oh = 7, .ow = 9, .kh = 1, .kw = 1};
  w.sh = w.sw = w.dh = w.dw = 1;
  int64_t f = 2 * cn_panels_cols(), m = w.batch * w.oh * w.ow;
  size_t ny = (size_t)(m * f);
  float *x = random_floats((size_t)(m * w.c)), *k = random_floats((size_t)(w.c * f));
  float *bias = random_floats((size_t)f), *residual = random_floats(ny);
  float *packed = malloc(cn_panels_floats(w.c, f) * sizeof(float));
  float *apart = malloc(ny * sizeof(float)), *over = malloc(ny * sizeof(float));
  cn_panels_pack(k, f, w.c, f, packed);
  cn_panels p = {packed, w.c, f};
  cn_activation relu = cn_act_relu();
  CHECK(cn_panels_in_place(w.c, f, &relu) && cn_conv2d_panels_in_place(&w, f, &relu));
  CHECK(!cn_panels_in_place(w.c, f - 1, &relu) && !cn_panels_in_place(4000, f, &relu));
  cn_activation softmax = cn_act_softmax();
  CHECK(!cn_panels_in_place(w.c, f, &softmax));
  relu.residual = residual, relu.residual_of = apart;
  cn_panels_gemm(m, x, w.c, &p, bias, &relu, apart, f, 1);
  for (int threads = 1; threads <= 2; threads++) {
    memcpy(over, residual, ny * sizeof(float));
    relu.residual = relu.residual_of = over;
    cn_panels_gemm(m, x, w.c, &p, bias, &relu, over, f, threads);
    CHECK(memcmp(over, apart, ny * sizeof(float)) == 0);
  }
  memcpy(over, residual, ny * sizeof(float));
  cn_conv1x1_over_residual(&w, f, x, k, bias, &relu, over);
  CHECK(memcmp(over, apart, ny * sizeof(float)) == 0);
  free(x), free(k), free(bias), free(residual), free(packed), free(apart), free(over);
}

static void test_softmax_and_scale(void) {
  int64_t outer = 3, n = 7, inner = 5, total = outer * n * inner;
  float *x = random_floats((size_t)total), *y = malloc((size_t)total * sizeof(float));
  float *ref = malloc((size_t)total * sizeof(float));
  for (int64_t i = 0; i < total; i++) x[i] *= 50;
  memcpy(y, x, (size_t)total * sizeof(float));
  cn_softmax_axis(y, outer, n, inner, 2);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double top = -INFINITY, sum = 0;
      for (int64_t j = 0; j < n; j++) top = fmax(top, x[(o * n + j) * inner + i]);
      for (int64_t j = 0; j < n; j++) sum += exp(x[(o * n + j) * inner + i] - top);
      for (int64_t j = 0; j < n; j++)
        ref[(o * n + j) * inner + i] = (float)(exp(x[(o * n + j) * inner + i] - top) / sum);
    }
  check_close("softmax", 0, y, ref, (size_t)total);
  float *scale = random_floats((size_t)n), *shift = random_floats((size_t)n);
  for (int in_place = 0; in_place < 2; in_place++) {
    int64_t in = in_place ? 1 : inner; /* channels last, and a middle axis */
    int64_t count = outer * n * in;
    memcpy(y, x, (size_t)count * sizeof(float));
    cn_scale_shift(in_place ? y : x, y, outer, n, in, scale, shift, 2);
    for (int64_t i = 0; i < count; i++) ref[i] = x[i] * scale[(i / in) % n] + shift[(i / in) % n];
    check_close("scale_shift", (int)in_place, y, ref, (size_t)count);
  }
  free(x), free(y), free(ref), free(scale), free(shift);
}

int main(void) {
  cn_set_threads(2);
  test_conv2d();
  test_winograd();
  test_conv_op_cache();
  test_depthwise();
  test_pooling();
  test_gemm();
  test_panels_gemm();
  test_panels_epilogue();
  test_gemm_rows();
  test_conv2d_panels();
  test_conv2d_exact();
  test_conv1x1_over_residual();
  test_softmax_and_scale();
  return cn_test_finish();
}
