/* Backward of Conv2D, DepthwiseConv2D and Dense against finite differences over their attribute
 * grid (strides, dilation, padding, groups, multiplier, bias, every fused activation), thread
 * invariance, the training forward, the Winograd cache under in-place weight updates, and a
 * printed backward/forward time ratio. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/core.h"
#include "core/mem.h"
#include "core/rng.h"
#include "gradcheck.h"
#include "kernels/kernels.h"
#include "ops/ops.h"
#include "testlib.h"

static cn_shape hwc(int64_t h, int64_t w, int64_t c) {
  return cn_shape_make(3, (int64_t[]){h, w, c});
}

/* Every activation kind a layer can fuse, with the ReLU variants Keras has. */
static cn_activation activation(int i, const char **name) {
  static const char *names[] = {"linear",  "relu", "relu6", "leaky", "threshold", "neg_th",
                                "sigmoid", "tanh", "elu",   "swish", "hard_sigm", "softmax"};
  cn_activation a = cn_act_linear();
  switch (i) {
  case 1:
    a = cn_act_relu();
    break;
  case 2:
    a = cn_act_relu6();
    break;
  case 3:
    a = cn_act_relu(), a.negative_slope = 0.2f;
    break;
  case 4:
    a = cn_act_relu(), a.threshold = 0.3f, a.negative_slope = 0.1f, a.max_value = 1.5f;
    break;
  case 5:
    a = cn_act_relu(), a.threshold = -0.3f;
    break; /* needs the pre-activation */
  case 6:
    a = cn_act_simple(CN_ACT_SIGMOID);
    break;
  case 7:
    a = cn_act_simple(CN_ACT_TANH);
    break;
  case 8:
    a = cn_act_simple(CN_ACT_ELU);
    break;
  case 9:
    a = cn_act_simple(CN_ACT_SWISH);
    break;
  case 10:
    a = cn_act_simple(CN_ACT_HARD_SIGMOID);
    break;
  case 11:
    a = cn_act_softmax();
    break;
  default:
    break;
  }
  *name = names[i];
  return a;
}
enum { N_ACTS = 12 };

/* Kinked activations (ReLU family, hard sigmoid) may see a finite difference straddle a kink;
 * their derivatives are checked exactly, away from kinks, by check_act_backward. */
static int kinked(const cn_activation *a) {
  return a->kind == CN_ACT_RELU || a->kind == CN_ACT_HARD_SIGMOID;
}

static int passed_case(cn_gradcheck_case *c, const cn_activation *act) {
  /* Distinct inputs and a small step keep most differences away from kinks. */
  c->distinct = 1;
  /* Linear layers are bilinear: a large step loses nothing and beats Winograd's rounding. */
  if (!c->step) c->step = act && act->kind != CN_ACT_LINEAR ? 1e-3f : 5e-2f;
  if (!c->tolerance) c->tolerance = 2e-3;
  if (!c->max_checks) c->max_checks = 24;
  int bad = cn_gradcheck(c), allowed = act && kinked(act) ? 3 : 0;
  if (bad > 0 && bad <= allowed)
    fprintf(stderr, "%s: %d straddled kinks (allowed)\n", c->label, bad);
  return bad <= allowed;
}

/* cn_act_backward against central differences of cn_act_apply on points away from kinks,
 * from the output and (for every kind) from the pre-activation. */
static void check_act_backward(void) {
  enum { N = 64 };
  for (int i = 0; i < N_ACTS; i++) {
    const char *name;
    cn_activation a = activation(i, &name);
    float pre[N], out[N], dout[N], d_out[N] = {0}, d_pre[N] = {0};
    for (int k = 0; k < N; k++) { /* -7.9 .. 7.9, never within 0.05 of 0, +-0.3, 6, -3 */
      pre[k] = -7.9f + 0.25f * (float)k + 0.0123f;
      dout[k] = 0.5f + 0.01f * (float)k;
    }
    memcpy(out, pre, sizeof out);
    if (a.kind == CN_ACT_SOFTMAX) {
      for (int k = 0; k < N; k++) pre[k] *= 0.1f, out[k] = pre[k];
      cn_softmax_axis(out, 1, N, 1, 1);
    } else {
      cn_act_apply(&a, out, N);
    }
    if (!cn_act_needs_pre(&a)) cn_act_backward(&a, NULL, out, dout, d_out, N);
    cn_act_backward(&a, pre, out, dout, d_pre, N);
    int bad = 0;
    for (int k = 0; k < N; k++) {
      double numeric = 0, h = 1e-3;
      if (a.kind == CN_ACT_SOFTMAX) { /* d sum(dout * softmax) / d pre[k] */
        float plus[N], minus[N];
        memcpy(plus, pre, sizeof plus), memcpy(minus, pre, sizeof minus);
        plus[k] += (float)h, minus[k] -= (float)h;
        cn_softmax_axis(plus, 1, N, 1, 1), cn_softmax_axis(minus, 1, N, 1, 1);
        for (int j = 0; j < N; j++) numeric += dout[j] * ((double)plus[j] - minus[j]) / (2 * h);
      } else {
        float plus = pre[k] + (float)h, minus = pre[k] - (float)h;
        cn_act_apply(&a, &plus, 1), cn_act_apply(&a, &minus, 1);
        numeric = dout[k] * ((double)plus - minus) / (2 * h);
      }
      bad += fabs(d_pre[k] - numeric) > 2e-3 * fmax(1, fabs(numeric));
      if (!cn_act_needs_pre(&a)) bad += fabs(d_out[k] - numeric) > 2e-3 * fmax(1, fabs(numeric));
    }
    if (bad) fprintf(stderr, "cn_act_backward %s: %d mismatches\n", name, bad);
    CHECK(bad == 0);
  }
}

/* ---- Conv2D --------------------------------------------------------------------------------- */

typedef struct conv_case {
  int64_t h, w, c;
  int filters, kh, kw, sh, sw, dh, dw, groups, bias;
  cn_padding pad;
} conv_case;

static void check_conv_geometries(void) {
  static const conv_case cases[] = {
      {7, 5, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},    /* odd sizes, SAME */
      {7, 7, 3, 4, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_SAME},    /* stride 2, asymmetric pad */
      {8, 6, 3, 4, 3, 3, 2, 2, 1, 1, 1, 0, CN_PAD_SAME},    /* even sizes, no bias */
      {7, 6, 2, 3, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_VALID},   /* stride 2 VALID */
      {9, 8, 2, 3, 3, 3, 1, 1, 2, 2, 1, 1, CN_PAD_SAME},    /* dilation 2 SAME */
      {9, 9, 2, 3, 3, 2, 1, 1, 2, 1, 1, 0, CN_PAD_VALID},   /* dilation VALID, 3x2 */
      {6, 7, 2, 3, 2, 3, 2, 1, 1, 1, 1, 1, CN_PAD_SAME},    /* 2x3 kernel, strides 2x1 */
      {6, 5, 4, 6, 3, 3, 1, 1, 1, 1, 2, 1, CN_PAD_SAME},    /* groups 2 */
      {7, 7, 6, 6, 3, 3, 2, 2, 1, 1, 3, 0, CN_PAD_SAME},    /* groups 3, stride 2 */
      {5, 4, 3, 5, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID},   /* pointwise */
      {5, 4, 4, 6, 1, 1, 1, 1, 1, 1, 2, 1, CN_PAD_SAME},    /* pointwise, groups 2 */
      {7, 5, 3, 4, 1, 1, 2, 2, 1, 1, 1, 1, CN_PAD_SAME},    /* 1x1 stride 2 */
      {16, 16, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},  /* Winograd forward and dx */
      {18, 17, 8, 9, 3, 3, 1, 1, 1, 1, 1, 0, CN_PAD_VALID}, /* Winograd dx, no padding */
      {9, 8, 3, 16, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},   /* thin kernel (27 rows), RGB */
      {10, 9, 1, 32, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_VALID}, /* thin kernel, 1 channel, stride 2 */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const conv_case *k = &cases[i];
    cn_conv2d_attrs a = {k->filters, k->kh,     k->kw,   k->sh,  k->sw,           k->dh,
                         k->dw,      k->groups, k->bias, k->pad, cn_act_linear(), {0}};
    char label[64];
    snprintf(label, sizeof label, "conv2d case %zu", i);
    cn_gradcheck_case c = {.label = label,
                           .op = &cn_op_conv2d,
                           .attrs = &a,
                           .n_inputs = 1,
                           .inputs = {hwc(k->h, k->w, k->c)},
                           .seed = 100 + i};
    CHECK(passed_case(&c, NULL));
  }
}

static void check_conv_activations(void) {
  for (int i = 0; i < N_ACTS; i++) {
    const char *name;
    cn_conv2d_attrs a = {5, 3, 3, 2, 1, 1, 1, 1, 1, CN_PAD_SAME, activation(i, &name), {0}};
    char label[64];
    snprintf(label, sizeof label, "conv2d %s", name);
    cn_gradcheck_case c = {.label = label,
                           .op = &cn_op_conv2d,
                           .attrs = &a,
                           .n_inputs = 1,
                           .inputs = {hwc(7, 6, 3)},
                           .seed = 200 + (uint64_t)i,
                           .training = 1};
    CHECK(passed_case(&c, &a.act));
  }
}

/* ---- DepthwiseConv2D ------------------------------------------------------------------------ */

typedef struct dw_case {
  int64_t h, w, c;
  int kh, kw, sh, sw, dh, dw, mult, bias;
  cn_padding pad;
} dw_case;

static void check_depthwise(void) {
  static const dw_case cases[] = {
      {7, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},
      {7, 7, 4, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_SAME},
      {8, 6, 3, 3, 3, 2, 2, 1, 1, 1, 0, CN_PAD_SAME},
      {7, 6, 3, 3, 3, 2, 2, 1, 1, 1, 1, CN_PAD_VALID},
      {9, 8, 2, 3, 3, 1, 1, 2, 2, 1, 1, CN_PAD_SAME},
      {7, 6, 3, 3, 3, 1, 1, 1, 1, 2, 1, CN_PAD_SAME},
      {7, 7, 2, 5, 3, 2, 1, 1, 2, 3, 0, CN_PAD_VALID},
      {6, 6, 20, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},
      {6, 6, 18, 3, 3, 2, 2, 1, 1, 2, 1, CN_PAD_SAME},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const dw_case *k = &cases[i];
    cn_depthwise_attrs a = {k->kh,   k->kw,   k->sh,  k->sw,           k->dh, k->dw,
                            k->mult, k->bias, k->pad, cn_act_linear(), {0}};
    char label[64];
    snprintf(label, sizeof label, "depthwise case %zu", i);
    cn_gradcheck_case c = {.label = label,
                           .op = &cn_op_depthwise,
                           .attrs = &a,
                           .n_inputs = 1,
                           .inputs = {hwc(k->h, k->w, k->c)},
                           .seed = 300 + i};
    CHECK(passed_case(&c, NULL));
  }
  for (int i = 0; i < N_ACTS; i++) {
    const char *name;
    cn_depthwise_attrs a = {3, 3, 2, 2, 1, 1, 2, 1, CN_PAD_SAME, activation(i, &name), {0}};
    char label[64];
    snprintf(label, sizeof label, "depthwise %s", name);
    cn_gradcheck_case c = {.label = label,
                           .op = &cn_op_depthwise,
                           .attrs = &a,
                           .n_inputs = 1,
                           .inputs = {hwc(7, 6, 3)},
                           .seed = 400 + (uint64_t)i,
                           .training = 1};
    CHECK(passed_case(&c, &a.act));
  }
}

/* ---- Dense ---------------------------------------------------------------------------------- */

static void check_dense(void) {
  for (int i = 0; i < N_ACTS; i++) {
    const char *name;
    cn_dense_attrs a = {6, i % 2 == 0, activation(i, &name)};
    char label[64];
    snprintf(label, sizeof label, "dense %s", name);
    cn_gradcheck_case c = {.label = label,
                           .op = &cn_op_dense,
                           .attrs = &a,
                           .n_inputs = 1,
                           .inputs = {cn_shape_make(1, (int64_t[]){7})},
                           .batch = 3,
                           .seed = 500 + (uint64_t)i,
                           .training = 1};
    CHECK(passed_case(&c, &a.act));
  }
  cn_dense_attrs a = {4, 1, cn_act_softmax()};
  cn_gradcheck_case c = {.label = "dense on rank 3",
                         .op = &cn_op_dense,
                         .attrs = &a,
                         .n_inputs = 1,
                         .inputs = {cn_shape_make(2, (int64_t[]){3, 5})},
                         .seed = 600};
  CHECK(passed_case(&c, NULL));
}

/* ---- thread invariance on layers large enough to run in parallel --------------------------- */
/* The checker reruns the forward per thread count, so these shapes keep the forward on one
 * GEMM (small enough for conv2d.c's tiling and below Winograd) while backward runs parallel. */

static void check_thread_invariance(void) {
  const char *name;
  cn_conv2d_attrs conv = {32, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, activation(9, &name), {0}};
  cn_conv2d_attrs conv2 = {32, 3, 3, 2, 2, 1, 1, 2, 1, CN_PAD_SAME, cn_act_simple(CN_ACT_SIGMOID),
                           {0}};
  cn_conv2d_attrs point = {48, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_simple(CN_ACT_ELU),
                           {0}};
  cn_depthwise_attrs dw = {3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_simple(CN_ACT_TANH), {0}};
  cn_depthwise_attrs dw2 = {3, 3, 2, 2, 1, 1, 2, 1, CN_PAD_SAME, cn_act_softmax(), {0}};
  cn_dense_attrs dense = {64, 1, cn_act_softmax()};
  cn_conv2d_attrs wino = {16, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_simple(CN_ACT_TANH),
                          {0}};
  cn_gradcheck_case cases[] = {
      {.label = "conv Winograd dx 2 threads",
       .op = &cn_op_conv2d,
       .attrs = &wino,
       .inputs = {hwc(20, 20, 16)},
       .input_scale = 0.2f},
      {.label = "conv swish 2 threads",
       .op = &cn_op_conv2d,
       .attrs = &conv,
       .inputs = {hwc(9, 9, 64)}},
      {.label = "conv groups stride 2 threads",
       .op = &cn_op_conv2d,
       .attrs = &conv2,
       .inputs = {hwc(17, 17, 32)}},
      {.label = "pointwise 2 threads",
       .op = &cn_op_conv2d,
       .attrs = &point,
       .inputs = {hwc(9, 9, 128)}},
      {.label = "depthwise 2 threads",
       .op = &cn_op_depthwise,
       .attrs = &dw,
       .inputs = {hwc(20, 20, 40)}},
      {.label = "depthwise x2 2 threads",
       .op = &cn_op_depthwise,
       .attrs = &dw2,
       .inputs = {hwc(20, 20, 36)}},
      {.label = "dense 2 threads",
       .op = &cn_op_dense,
       .attrs = &dense,
       .inputs = {cn_shape_make(1, (int64_t[]){128})},
       .batch = 64},
  };
  const cn_activation *acts[] = {&wino.act, &conv.act, &conv2.act, &point.act,
                                 &dw.act,   &dw2.act,  &dense.act};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cases[i].n_inputs = 1;
    cases[i].training = 1;
    cases[i].seed = 700 + i;
    CHECK(cn_gradcheck_thread_invariant(&cases[i]));
    /* The parallel path is also right, on a few sampled elements. */
    cases[i].threads = 2;
    cases[i].max_checks = 6;
    CHECK(passed_case(&cases[i], acts[i]));
  }
}

/* ---- one layer run by hand: training forward, Winograd cache, timing ------------------------ */

typedef struct layer {
  cn_graph *g;
  cn_node *node;
  cn_tensor in, out, dout, din;
  float *scratch, *saved, *dparams[CN_MAX_PARAMS];
} layer;

static float *zeros(int64_t n) {
  float *p = cn_alloc_aligned((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (p) memset(p, 0, (size_t)(n > 0 ? n : 1) * sizeof(float));
  return p;
}

static void fill(float *x, int64_t n, uint64_t seed) {
  cn_rng r = cn_rng_make(seed);
  for (int64_t i = 0; i < n; i++) x[i] = cn_rng_float(&r) - 0.5f;
}

static int layer_make(layer *l, const cn_op *op, const void *attrs, cn_shape sample, int batch) {
  memset(l, 0, sizeof *l);
  int in = -1, id = -1;
  cn_input_attrs ia = {sample};
  l->g = cn_graph_new();
  if (!l->g || cn_graph_add(l->g, &cn_op_input, "in", NULL, 0, &ia, &in) != CN_OK ||
      cn_graph_add(l->g, op, "op", &in, 1, attrs, &id) != CN_OK ||
      cn_graph_alloc_params(l->g) != CN_OK)
    return 0;
  l->node = &l->g->nodes[id];
  for (int k = 0; k < l->node->n_params; k++) {
    cn_param *p = &l->node->params[k];
    fill(p->data, cn_shape_numel(&p->shape), 11 + (uint64_t)k);
    for (int64_t i = 0; i < cn_shape_numel(&p->shape); i++) p->data[i] *= 0.2f;
    l->dparams[k] = zeros(cn_shape_numel(&p->shape));
  }
  l->in.shape = l->din.shape = cn_shape_batch(batch, &sample);
  l->out.shape = l->dout.shape = cn_shape_batch(batch, &l->node->shape);
  int64_t n_in = cn_shape_numel(&l->in.shape), n_out = cn_shape_numel(&l->out.shape);
  l->in.data = zeros(n_in), l->din.data = zeros(n_in);
  l->out.data = zeros(n_out), l->dout.data = zeros(n_out);
  fill(l->in.data, n_in, 5);
  fill(l->dout.data, n_out, 6);
  size_t fs = op->scratch ? op->scratch(l->g, l->node, batch) : 0;
  size_t bs = op->backward_scratch ? op->backward_scratch(l->g, l->node, batch) : 0;
  l->scratch = zeros((int64_t)(fs > bs ? fs : bs));
  l->saved = zeros(op->saved ? (int64_t)op->saved(l->g, l->node, batch) : 0);
  return l->in.data && l->din.data && l->out.data && l->dout.data && l->scratch && l->saved;
}

static void layer_free(layer *l) {
  for (int k = 0; k < CN_MAX_PARAMS; k++) cn_free_aligned(l->dparams[k]);
  cn_free_aligned(l->in.data), cn_free_aligned(l->din.data);
  cn_free_aligned(l->out.data), cn_free_aligned(l->dout.data);
  cn_free_aligned(l->scratch), cn_free_aligned(l->saved);
  cn_graph_free(l->g);
}

static cn_exec layer_exec(const layer *l, int training, int threads) {
  cn_exec ex = {.batch = (int)l->in.shape.dim[0],
                .threads = threads,
                .scratch = l->scratch,
                .training = training,
                .seed = 1,
                .saved = l->saved};
  return ex;
}

static float *copy_of(const float *x, int64_t n) {
  float *p = malloc((size_t)n * sizeof *p);
  if (p) memcpy(p, x, (size_t)n * sizeof *p);
  return p;
}

/* The training forward gives the inference forward's bits (swish keeps its pre-activation). */
static void check_training_forward(void) {
  cn_conv2d_attrs a = {8, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_simple(CN_ACT_SWISH), {0}};
  layer l;
  CHECK(layer_make(&l, &cn_op_conv2d, &a, hwc(9, 9, 4), 2));
  int64_t n = cn_shape_numel(&l.out.shape);
  cn_exec ex = layer_exec(&l, 0, 1);
  l.node->op->forward(l.node, &l.in, &l.out, &ex);
  float *inference = copy_of(l.out.data, n);
  ex = layer_exec(&l, 1, 1);
  l.node->op->forward(l.node, &l.in, &l.out, &ex);
  CHECK(inference && memcmp(inference, l.out.data, (size_t)n * sizeof(float)) == 0);
  CHECK(l.node->op->saved(l.g, l.node, 2) == (size_t)n);
  int pre_ok = 1; /* saved really is the pre-activation */
  for (int64_t i = 0; i < n; i++) {
    float x = l.saved[i];
    pre_ok &= fabsf(x / (1.0f + expf(-x)) - l.out.data[i]) <= 1e-6f;
  }
  CHECK(pre_ok);
  free(inference);
  layer_free(&l);
}

/* Weights changed in place between training steps must not reuse the old Winograd kernel. */
static void check_winograd_refresh(void) {
  cn_conv2d_attrs a = {16, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu(), {0}};
  layer l;
  CHECK(layer_make(&l, &cn_op_conv2d, &a, hwc(16, 16, 16), 2));
  cn_window w = cn_window_make(&l.in.shape, 3, 3, 1, 1, 1, 1, CN_PAD_SAME);
  CHECK(cn_winograd_applies(&w, 16, 1));
  int64_t n = cn_shape_numel(&l.out.shape);
  cn_exec ex = layer_exec(&l, 1, 2);
  l.node->op->forward(l.node, &l.in, &l.out, &ex);
  float *kernel = l.node->params[0].data;
  kernel[5] += 0.25f; /* one "optimizer step", in place */
  l.node->op->forward(l.node, &l.in, &l.out, &ex);
  float *stepped = copy_of(l.out.data, n);
  cn_graph *fresh = NULL;
  CHECK_OK(cn_graph_clone(l.g, &fresh));
  if (fresh && stepped) {
    cn_node *node = &fresh->nodes[l.node - l.g->nodes];
    node->op->forward(node, &l.in, &l.out, &ex);
    CHECK(memcmp(stepped, l.out.data, (size_t)n * sizeof(float)) == 0);
    node->op->release(node);
  }
  cn_graph_free(fresh);
  free(stepped);
  layer_free(&l);
}

static void zero_grads(layer *l) {
  memset(l->din.data, 0, (size_t)cn_shape_numel(&l->din.shape) * sizeof(float));
  for (int k = 0; k < l->node->n_params; k++)
    memset(l->dparams[k], 0, (size_t)cn_shape_numel(&l->node->params[k].shape) * sizeof(float));
}

/* The Winograd kernel gradient (F(3x3, 4x4)) against a direct sum in double: partial edge tiles,
 * channels not a multiple of the 6-row blocks, filters not of the 16-column ones, both paddings,
 * and bitwise equal for one and two threads. */
static void check_winograd_kernel_grad(void) {
  static const conv_case cases[] = {
      {13, 13, 10, 20, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_VALID},
      {11, 9, 16, 8, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const conv_case *k = &cases[i];
    cn_conv2d_attrs a = {k->filters, 3, 3, 1, 1, 1, 1, 1, 1, k->pad, cn_act_linear(), {0}};
    layer l;
    CHECK(layer_make(&l, &cn_op_conv2d, &a, hwc(k->h, k->w, k->c), 3));
    cn_window w = cn_window_make(&l.in.shape, 3, 3, 1, 1, 1, 1, k->pad);
    CHECK(cn_winograd_applies(&w, k->filters, 1));
    int64_t nk = 9 * k->c * k->filters;
    float *dk[2] = {NULL, NULL};
    for (int threads = 1; threads <= 2; threads++) {
      zero_grads(&l);
      cn_exec ex = layer_exec(&l, 1, threads);
      l.node->op->backward(l.node, &l.in, &l.out, &l.dout, &l.din, l.dparams, &ex);
      dk[threads - 1] = copy_of(l.dparams[0], nk);
    }
    CHECK(dk[0] && dk[1] && memcmp(dk[0], dk[1], (size_t)nk * sizeof(float)) == 0);
    double worst = 0, scale = 0;
    for (int tap = 0; tap < 9; tap++)
      for (int64_t c = 0; c < k->c; c++)
        for (int64_t f = 0; f < k->filters; f++) {
          double sum = 0;
          for (int64_t b = 0; b < 3; b++)
            for (int64_t oy = 0; oy < w.oh; oy++)
              for (int64_t ox = 0; ox < w.ow; ox++) {
                int64_t iy = oy - w.pad_top + tap / 3, ix = ox - w.pad_left + tap % 3;
                if (iy < 0 || iy >= w.ih || ix < 0 || ix >= w.iw) continue;
                sum += (double)l.in.data[((b * w.ih + iy) * w.iw + ix) * k->c + c] *
                       l.dout.data[((b * w.oh + oy) * w.ow + ox) * k->filters + f];
              }
          double got = dk[0] ? dk[0][(tap * k->c + c) * k->filters + f] : 0;
          worst = fmax(worst, fabs(got - sum)), scale = fmax(scale, fabs(sum));
        }
    if (worst > 1e-5 * scale)
      fprintf(stderr, "Winograd kernel gradient case %zu: error %g of %g\n", i, worst, scale);
    CHECK(worst <= 1e-5 * scale);
    free(dk[0]), free(dk[1]);
    layer_free(&l);
  }
}

/* Seconds per call of forward (which = 0) or backward (1), best of a few. */
static double time_pass(layer *l, int which, int threads) {
  cn_exec ex = layer_exec(l, 1, threads);
  double best = 1e30;
  for (int rep = 0; rep < 4; rep++) {
    double t0 = omp_get_wtime();
    if (which == 0)
      l->node->op->forward(l->node, &l->in, &l->out, &ex);
    else
      l->node->op->backward(l->node, &l->in, &l->out, &l->dout, &l->din, l->dparams, &ex);
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  return best;
}

/* 3x3 conv 56x56x64 -> 64 at batch 8: backward/forward ratio (printed), and its gradients with
 * one and two threads bitwise equal at a size where OpenBLAS and every parallel loop engage. */
static void report_speed(const cn_op *op, const void *attrs, const char *what, cn_shape sample) {
  layer l;
  if (!layer_make(&l, op, attrs, sample, 8)) {
    CHECK(0);
    layer_free(&l);
    return;
  }
  int threads = omp_get_num_procs() < 2 ? 2 : omp_get_num_procs();
  double fwd = time_pass(&l, 0, threads);
  zero_grads(&l);
  cn_exec ex = layer_exec(&l, 1, 1);
  l.node->op->backward(l.node, &l.in, &l.out, &l.dout, &l.din, l.dparams, &ex);
  int64_t nk = cn_shape_numel(&l.node->params[0].shape), nx = cn_shape_numel(&l.din.shape);
  float *dk1 = copy_of(l.dparams[0], nk), *dx1 = copy_of(l.din.data, nx);
  zero_grads(&l);
  ex = layer_exec(&l, 1, 2);
  l.node->op->backward(l.node, &l.in, &l.out, &l.dout, &l.din, l.dparams, &ex);
  CHECK(dk1 && memcmp(dk1, l.dparams[0], (size_t)nk * sizeof(float)) == 0);
  CHECK(dx1 && memcmp(dx1, l.din.data, (size_t)nx * sizeof(float)) == 0);
  double bwd = time_pass(&l, 1, threads);
  double fwd1 = time_pass(&l, 0, 1), bwd1 = time_pass(&l, 1, 1);
  printf("%s batch 8: forward %.1f ms, backward %.1f ms (ratio %.2f) on %d threads; "
         "%.1f / %.1f ms (ratio %.2f) on 1\n",
         what, fwd * 1e3, bwd * 1e3, bwd / fwd, threads, fwd1 * 1e3, bwd1 * 1e3, bwd1 / fwd1);
  free(dk1), free(dx1);
  layer_free(&l);
}

int main(void) {
  /* OpenBLAS's own threads round differently from its single-threaded calls inside our parallel
   * regions; the trainer sets one count for both (cn_set_threads), as here. */
  cn_set_threads(1);
  check_act_backward();
  check_conv_geometries();
  check_conv_activations();
  check_depthwise();
  check_dense();
  check_thread_invariance();
  check_training_forward();
  check_winograd_refresh();
  check_winograd_kernel_grad();
  cn_conv2d_attrs conv = {64, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu(), {0}};
  report_speed(&cn_op_conv2d, &conv, "conv 3x3 56x56x64->64", hwc(56, 56, 64));
  cn_depthwise_attrs dw = {3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_relu6(), {0}};
  report_speed(&cn_op_depthwise, &dw, "depthwise 3x3 56x56x128", hwc(56, 56, 128));
  cn_conv2d_attrs point = {128, 1, 1, 1, 1, 1, 1, 1, 1, CN_PAD_VALID, cn_act_relu6(), {0}};
  report_speed(&cn_op_conv2d, &point, "pointwise 56x56x64->128", hwc(56, 56, 64));
  return cn_test_finish();
}
