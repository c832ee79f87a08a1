/* Conv2D (Keras semantics): strides, dilation, groups, bias, 'valid'/'same' padding with
 * TensorFlow's asymmetric rule, fused activation. Also the padding rule itself and the window
 * validation that every sliding-window op shares. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "kernels/conv_small.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

/* Sizes above this are certainly a corrupt file; it also keeps every product inside int64. */
enum { MAX_WINDOW = 1 << 16, MAX_CHANNELS = 1 << 24 };

cn_status cn_window_infer(const char *layer, const cn_shape *in, int kh, int kw, int sh, int sw,
                          int dh, int dw, cn_padding padding, cn_window *out) {
  char buf[96];
  if (in->rank != 3)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s", layer,
                   cn_shape_format(in, buf, sizeof buf));
  if (kh < 1 || kw < 1 || kh > MAX_WINDOW || kw > MAX_WINDOW)
    return cn_fail(CN_ERR_FORMAT, "%s: bad window size %dx%d", layer, kh, kw);
  if (sh < 1 || sw < 1 || sh > MAX_WINDOW || sw > MAX_WINDOW)
    return cn_fail(CN_ERR_FORMAT, "%s: bad strides %dx%d", layer, sh, sw);
  if (dh < 1 || dw < 1 || dh > MAX_WINDOW || dw > MAX_WINDOW)
    return cn_fail(CN_ERR_FORMAT, "%s: bad dilation %dx%d", layer, dh, dw);
  if (padding != CN_PAD_VALID && padding != CN_PAD_SAME)
    return cn_fail(CN_ERR_FORMAT, "%s: bad padding mode %d", layer, (int)padding);
  if (in->dim[2] > MAX_CHANNELS)
    return cn_fail(CN_ERR_LIMIT, "%s: %lld channels is too many", layer, (long long)in->dim[2]);
  cn_shape batched = cn_shape_batch(1, in);
  *out = cn_window_make(&batched, kh, kw, sh, sw, dh, dw, padding);
  if (out->oh < 1 || out->ow < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: window %dx%d (dilation %dx%d) does not fit input %s", layer,
                   kh, kw, dh, dw, cn_shape_format(in, buf, sizeof buf));
  return CN_OK;
}

static cn_status conv_check_channels(const cn_node *node, const cn_window *w) {
  const cn_conv2d_attrs *a = node->attrs;
  if (a->filters < 1 || a->filters > MAX_CHANNELS)
    return cn_fail(CN_ERR_FORMAT, "%s: bad filter count %d", node->name, a->filters);
  if (a->groups < 1 || w->c % a->groups != 0 || a->filters % a->groups != 0)
    return cn_fail(CN_ERR_SHAPE, "%s: %d groups do not divide %lld input channels and %d filters",
                   node->name, a->groups, (long long)w->c, a->filters);
  if ((int64_t)a->kh * a->kw * (w->c / a->groups) > MAX_CHANNELS)
    return cn_fail(CN_ERR_LIMIT, "%s: kernel too large", node->name);
  return CN_OK;
}

static cn_status conv_infer(cn_graph *g, cn_node *node) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window w = {0};
  cn_status st = cn_window_infer(node->name, &g->nodes[node->inputs[0]].shape, a->kh, a->kw, a->sh,
                                 a->sw, a->dh, a->dw, a->padding, &w);
  if (st == CN_OK) st = conv_check_channels(node, &w);
  if (st == CN_OK) st = cn_act_check(node->name, &a->act, 3, 1);
  if (st != CN_OK) return st;
  node->shape = cn_shape_make(3, (int64_t[]){w.oh, w.ow, a->filters});
  int64_t kshape[] = {a->kh, a->kw, w.c / a->groups, a->filters};
  st = cn_node_add_param(node, "kernel", cn_shape_make(4, kshape));
  if (st == CN_OK && a->use_bias)
    st = cn_node_add_param(node, "bias", cn_shape_make(1, (int64_t[]){a->filters}));
  return st;
}

static cn_window conv_window(const cn_conv2d_attrs *a, const cn_shape *in) {
  const cn_conv_pads *p = &a->pads;
  return cn_window_make_padded(in, a->kh, a->kw, a->sh, a->sw, a->dh, a->dw, a->padding, p->top,
                               p->bottom, p->left, p->right);
}

/* The window an algorithm is chosen on: w with the batch the choice is made for
 * (cn_exec_algorithm_batch, cn_graph_algorithm_batch). */
static cn_window choice_window(const cn_window *w, int batch) {
  cn_window c = *w;
  c.batch = batch;
  return c;
}

static void transform_winograd(const cn_node *node, const void *ctx, void *dst, int threads) {
  const cn_conv2d_attrs *a = node->attrs;
  const int64_t *c = ctx;
  cn_winograd_transform_kernel(node->params[0].data, *c, a->filters, dst, threads);
}

/* The transformed kernel for these weights, or NULL when memory is short (forward then falls
 * back to im2col, which needs no extra memory). */
static const float *winograd_kernel(cn_node *node, int64_t c, const cn_exec *ex) {
  const cn_conv2d_attrs *a = node->attrs;
  size_t bytes = cn_winograd_kernel_floats(c, a->filters) * sizeof(float);
  return cn_derived_weights(node, CN_DERIVED_WINOGRAD, bytes, transform_winograd, &c, ex);
}

/* fp32 products on the kernel packed once into panels (cn_panels_gemm): ungrouped convolutions
 * that Winograd does not take, with an elementwise activation, in builds where they measured
 * faster (cn_panels_preferred). CONVNET_PANELS=0 or 1 turns them off (OpenBLAS, conv_small and
 * Winograd from 24 tiles, as before them) or on, to compare; read once. */
static int panels_mode(void) {
  static _Atomic int mode = -1; /* the same value whichever thread reads the environment */
  if (mode < 0) {
    const char *env = getenv("CONVNET_PANELS");
    mode = env && (strcmp(env, "0") == 0 || strcmp(env, "1") == 0) ? env[0] == '1'
                                                                   : cn_panels_preferred();
  }
  return mode;
}

/* Winograd in a forward pass: where it applies, and, when the panels are there to take the rest,
 * over at least PANELS_MAX_TILES tiles. Fewer tiles do not amortise reading the transformed kernel
 * (4x the weights) once per block: im2col on the panels was faster (measured, 2 threads, Intel
 * Xeon, against Winograd from 24 tiles on: ResNet50 batch 1 0.90x the time with a limit of 64,
 * InceptionV3 batch 1 0.95x with 64 and 0.95x again with 100; ResNet50's 28x28 layers at batch
 * 1, 49 tiles, 0.74 to 0.84x the time each; at batch 8, Winograd stays 1.5 to 2x faster). */
enum { PANELS_MAX_TILES = 96, PANELS_MIN_DEPTH = 24, PANELS_NARROW = 32 * 32 };
/* Patches too deep for the panels' one pass (cn_panels_one_pass) go to Winograd from
 * DEEP_MIN_TILES tiles: ResNet50's 7x7 3x3 layers over 512 channels at batch 8 (32 tiles) took
 * 8.1 and 7.4 ms on the panels, 6.3 and 6.0 by Winograd. */
enum { DEEP_MIN_TILES = 32 };

static int winograd_forward(const cn_conv2d_attrs *a, const cn_window *w) {
  /* With few channels in and out, the transforms cost what the products save: InceptionV3's
   * 3x3 32 -> 32 layer over 147x147 at batch 1 took 2.19 ms by Winograd, 1.76 on the panels
   * (its 32 -> 64 one the same either way). */
  if (panels_mode() && w->c * a->filters <= PANELS_NARROW) return 0;
  int64_t tiles = cn_winograd_tiles(w);
  int deep = !cn_panels_one_pass((int64_t)a->kh * a->kw * w->c);
  return cn_winograd_applies(w, a->filters, a->groups) &&
         (!panels_mode() || tiles >= PANELS_MAX_TILES || (deep && tiles >= DEEP_MIN_TILES));
}

static int panels_applies(const cn_conv2d_attrs *a, const cn_window *w, cn_act_kind act) {
  int64_t depth = (int64_t)a->kh * a->kw * w->c;
  /* Short patches (conv_small's) too when the filters fill whole panels and the patch is not
   * tiny (measured, Intel Xeon, 2 threads: MobileNetV2 0.94x the time at batch 1, 0.97x at batch
   * 8, its 3x3 stem over 3 channels 3.0 -> 2.4 ms at batch 8; with 16-value patches, 16 -> 96
   * channels took 4.2 -> 5.1 ms, so those stay with conv_small). */
  int whole_panels = a->filters % cn_panels_cols() == 0 && depth >= PANELS_MIN_DEPTH;
  return panels_mode() && a->groups == 1 && act != CN_ACT_SOFTMAX &&
         (depth > CN_CONV_SMALL_K || whole_panels) && !winograd_forward(a, w);
}

/* bf16 products (CN_PRECISION_BF16 at inference) for ungrouped convolutions of patches of at
 * least BF16_MIN_DEPTH values followed by an activation. These stay fp32:
 * - convolutions with neither an activation nor a residual sum (cn_op_conv2d_add): shortcut
 *   projections and projections into a block's output (with every linear convolution in bf16,
 *   EfficientNet-Lite0's top-1 changed on 6 of the 1000 ImageNet samples; with those into a
 *   residual sum in bf16 and these fp32, on 0 with AMX and 1 with VDPBF16PS);
 * - grouped ones, short patches, and patches of fewer than BF16_MIN_CHANNELS channels (a stem
 *   over 3 channels), whose fp32 kernels cost less than rounding the patches (ResNet50's 7x7
 *   stem: 24 ms in bf16 on AMX, 18 ms in fp32, batch 8);
 * - those Winograd computes, but on AMX: its fp32 products are fewer than im2col's VDPBF16PS
 *   ones cost (Winograd's own products in bf16 were tried: its transforms amplify the rounding,
 *   5 % of the output's magnitude against im2col's 0.24 %), while AMX tiles multiply 16 times
 *   as much per instruction;
 * - all of them on CPUs without AVX512_BF16: widened to fp32, bf16 products are fp32 products
 *   plus the widening, and a convolution's time is in its arithmetic, not its weights (measured:
 *   VGG16 at batch 1 took 1.1 to 1.2 times fp32's time so); there only Dense layers, whose batch-1
 *   time is reading the weights, use bf16. */
enum { BF16_MIN_DEPTH = 64, BF16_MIN_CHANNELS = 8 };

static int bf16_applies(const cn_conv2d_attrs *a, const cn_window *w, cn_act_kind act,
                        int residual) {
  int64_t depth = (int64_t)a->kh * a->kw * w->c;
  int kernel = cn_bf16_native();
  return a->groups == 1 && depth >= BF16_MIN_DEPTH && w->c >= BF16_MIN_CHANNELS &&
         (act != CN_ACT_LINEAR || residual) && kernel != CN_BF16_WIDENED &&
         (kernel == CN_BF16_AMX || !winograd_forward(a, w));
}

static int runs_bf16(const cn_conv2d_attrs *a, const cn_window *w, const cn_exec *ex,
                     const cn_activation *act) {
  return ex->precision == CN_PRECISION_BF16 && !ex->training &&
         bf16_applies(a, w, act->kind, act->residual != NULL);
}

static int run_panels(cn_node *node, const cn_window *w, const cn_tensor *in, cn_tensor *out,
                      const cn_exec *ex, const cn_activation *act) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window cw = choice_window(w, cn_exec_algorithm_batch(ex));
  cn_panels k;
  if (!panels_applies(a, &cw, act->kind) ||
      !cn_panels_kernel(node, (int64_t)a->kh * a->kw * w->c, a->filters, ex, &k))
    return 0;
  cn_conv2d_panels(w, a->filters, in[0].data, &k, a->use_bias ? node->params[1].data : NULL, act,
                   out->data, ex->scratch, ex->threads);
  return 1;
}

/* The convolution with activation `act` (the fused one, or linear when the training forward
 * keeps the pre-activation). */
static void conv_run(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                     const cn_activation *act) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window w = conv_window(a, &in[0].shape);
  cn_window cw = choice_window(&w, cn_exec_algorithm_batch(ex));
  const float *bias = a->use_bias ? node->params[1].data : NULL;
  if (runs_bf16(a, &cw, ex, act)) {
    cn_bf16_matrix m;
    if (cn_bf16_kernel(node, (int64_t)a->kh * a->kw * w.c, a->filters, ex, &m)) {
      cn_conv2d_bf16(&w, a->filters, in[0].data, &m, bias, act, out->data, ex->scratch,
                     ex->threads);
      return;
    }
  }
  if (run_panels(node, &w, in, out, ex, act)) return;
  if (cn_conv_small_applies(&w, a->filters, a->groups)) {
    cn_conv_small(&w, a->filters, in[0].data, node->params[0].data, bias, act, out->data,
                  ex->threads);
    return;
  }
  if (winograd_forward(a, &cw)) {
    const float *u = winograd_kernel(node, w.c, ex);
    if (u) {
      cn_winograd_conv(&w, a->filters, in[0].data, u, bias, act, out->data, ex->scratch,
                       ex->threads);
      return;
    }
  }
  cn_conv2d(&w, a->filters, a->groups, in[0].data, node->params[0].data, bias, act, out->data,
            ex->scratch, ex->threads);
}

/* Whether this forward stores the pre-activation in ex->saved for backward. */
static int keeps_pre(const cn_activation *act, const cn_exec *ex) {
  return ex->training && ex->saved && cn_act_needs_pre(act);
}

/* Runs `run` with the fused activation, or (keeping the pre-activation) linear, then saves the
 * result and applies the activation: the same operations in the same order, so the same bits. */
void cn_fused_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                      const cn_activation *act, cn_fused_run run) {
  if (!keeps_pre(act, ex)) {
    run(node, in, out, ex, act);
    return;
  }
  cn_activation linear = cn_act_linear();
  size_t n = (size_t)cn_shape_numel(&out->shape);
  run(node, in, out, ex, &linear);
  memcpy(ex->saved, out->data, n * sizeof(float));
  cn_act_apply_parallel(act, out->data, n, ex->threads);
}

size_t cn_fused_saved(const cn_graph *g, const cn_node *node, int batch, const cn_activation *act) {
  (void)g;
  if (!cn_act_needs_pre(act)) return 0;
  return (size_t)(batch * cn_shape_numel(&node->shape));
}

cn_conv_grad cn_fused_grad(const cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex, const cn_activation *act, int use_bias) {
  cn_conv_grad io = {.x = in[0].data,
                     .kernel = node->params[0].data,
                     .out = out->data,
                     .pre = cn_act_needs_pre(act) ? ex->saved : NULL,
                     .dout = dout->data,
                     .act = act,
                     .dx = din ? din[0].data : NULL,
                     .dkernel = dparams ? dparams[0] : NULL,
                     .dbias = dparams && use_bias ? dparams[1] : NULL};
  return io;
}

static void conv_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_fused_forward(node, in, out, ex, &a->act, conv_run);
}

static size_t conv_saved(const cn_graph *g, const cn_node *node, int batch) {
  const cn_conv2d_attrs *a = node->attrs;
  return cn_fused_saved(g, node, batch, &a->act);
}

static void conv_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                          const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                          const cn_exec *ex) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window w = conv_window(a, &in[0].shape);
  cn_conv_grad io = cn_fused_grad(node, in, out, dout, din, dparams, ex, &a->act, a->use_bias);
  cn_conv2d_backward(&w, a->filters, a->groups, &io, ex->scratch, ex->threads);
}

static size_t conv_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  cn_window w = conv_window(a, &in);
  return cn_conv2d_backward_scratch(&w, a->filters, a->groups);
}

/* Scratch for conv_run on an input of shape `in` (batch included). */
static size_t conv_scratch_for(const cn_graph *g, const cn_node *node, const cn_shape *in,
                               int residual) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window w = conv_window(a, in);
  cn_window cw = choice_window(&w, cn_graph_algorithm_batch(g, (int)w.batch));
  /* The paths tried before conv_small, Winograd and plain im2col: bf16 and the panels. */
  size_t first = g->precision == CN_PRECISION_BF16 && bf16_applies(a, &cw, a->act.kind, residual)
                     ? cn_conv2d_bf16_scratch(&w, a->filters, cn_get_threads())
                     : 0;
  if (panels_applies(a, &cw, a->act.kind)) {
    size_t panels = cn_conv2d_scratch(&w, a->filters, 1);
    if (panels > first) first = panels;
  }
  if (cn_conv_small_applies(&w, a->filters, a->groups)) return first; /* fp32: registers only */
  size_t im2col = cn_conv2d_scratch(&w, a->filters, a->groups);
  if (first > im2col) im2col = first;
  if (!winograd_forward(a, &cw)) return im2col;
  size_t wino = cn_winograd_scratch(&w, a->filters);
  return wino > im2col ? wino : im2col;
}

static size_t conv_scratch(const cn_graph *g, const cn_node *node, int batch) {
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  return conv_scratch_for(g, node, &in, node->op == &cn_op_conv2d_add);
}

const cn_op cn_op_conv2d = {
    .type = "Conv2D",
    .attrs_size = sizeof(cn_conv2d_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = conv_infer,
    .forward = conv_forward,
    .scratch = conv_scratch,
    .release = cn_derived_release,
    .backward = conv_backward,
    .saved = conv_saved,
    .backward_scratch = conv_backward_scratch,
};

/* ---- Conv2D + Add (inference graphs only) ------------------------------------------------------
 * A linear convolution whose only reader adds it to another tensor of its shape (a residual
 * block's last convolution) takes that tensor as its second input and adds it in its epilogue,
 * before the activation that followed the sum (cn_graph_fold_residual): the output is written
 * once instead of written, read twice and written again. Each element is (conv + bias) + other,
 * the sum the Add made, so the result is the same bits. Not a layer a model file can hold: no
 * registry entry, no backward. */
static cn_status conv_add_infer(cn_graph *g, cn_node *node) {
  (void)g;
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: a fused convolution is made by folding only", node->name);
}

/* The output written over the tensor it adds (the plan's choice, conv_add_overwrites) where the
 * panels finish each output right after reading its residual: a 1x1 convolution over at most one
 * slice of channels in fp32 (ResNet's projections into a block's output). Its output then needs
 * no line of its own brought into cache before it is written (ResNet50 at batch 8, 2 threads,
 * Intel Xeon: its 56x56 64 -> 256 layers plus the sum 4.25 -> 3.17 ms; the whole model 0.96x the
 * time). */
static int conv_add_overwrites(const cn_graph *g, const cn_node *node) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(cn_graph_algorithm_batch(g, 1), &g->nodes[node->inputs[0]].shape);
  cn_window w = conv_window(a, &in);
  int reads_it = node->inputs[0] == node->inputs[1]; /* x + conv(x) */
  return !reads_it && g->precision == CN_PRECISION_FP32 && panels_applies(a, &w, a->act.kind) &&
                 cn_conv2d_panels_in_place(&w, a->filters, &a->act)
             ? 1
             : -1;
}

static void conv_add_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                             const cn_exec *ex) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_activation epilogue = a->act;
  epilogue.residual = in[1].data;
  epilogue.residual_of = out->data;
  if (out->data != in[1].data) {
    conv_run(node, in, out, ex, &epilogue);
    return;
  }
  cn_window w = conv_window(a, &in[0].shape);
  if (!run_panels(node, &w, in, out, ex, &epilogue))
    cn_conv1x1_over_residual(&w, a->filters, in[0].data, node->params[0].data,
                             a->use_bias ? node->params[1].data : NULL, &epilogue, out->data);
}

const cn_op cn_op_conv2d_add = {
    .type = "Conv2D+Add",
    .attrs_size = sizeof(cn_conv2d_attrs),
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = conv_add_infer,
    .forward = conv_add_forward,
    .overwrites = conv_add_overwrites,
    .scratch = conv_scratch,
    .release = cn_derived_release,
};

/* ---- DepthwiseConv2D + 1x1 Conv2D (inference graphs only) ---------------------------------------
 * A depthwise convolution read only by a 1x1 convolution (MobileNet's blocks) is folded into it,
 * and in fp32 graphs the 1x1 convolution expanding its input too (cn_graph_fold_depthwise). In
 * fp32, where the panels or conv_small's tiles take the 1x1 products, the block runs band by band
 * in cache (cn_depthwise_pointwise); otherwise (bf16) the depthwise layer and the convolution run
 * apart, the depthwise output in scratch. The same bits either way, as the layers apart. */
static cn_shape dw_output(const cn_window *w) {
  return cn_shape_make(4, (int64_t[]){w->batch, w->oh, w->ow, w->c});
}

/* Where the fused node's parameters are: the convolution's kernel first, then [bias], the
 * depthwise kernel, [bias], and the expanding kernel, [bias]. */
typedef struct dw_params {
  const float *dw_kernel, *dw_bias;
  int expand_at; /* index of the expanding kernel */
} dw_params;

static dw_params dw_conv_params(const cn_node *node) {
  const cn_dw_conv_attrs *a = node->attrs;
  int at = a->conv.use_bias ? 2 : 1;
  return (dw_params){node->params[at].data, a->dw.use_bias ? node->params[at + 1].data : NULL,
                     at + (a->dw.use_bias ? 2 : 1)};
}

/* A 1x1 product of the fused pass, serial, each row alone: on the panels, conv_small's tiles, or
 * (the panels out of memory, conv_small not applying) plainly. */
typedef struct pointwise {
  const cn_panels *panels;
  const float *kernel, *bias;
  const cn_activation *act;
  int64_t c, filters;
  int small;
} pointwise;

static void plain_rows(const pointwise *p, int64_t m, const float *x, float *y) {
  for (int64_t r = 0; r < m; r++) {
    float *out = y + r * p->filters;
    for (int64_t j = 0; j < p->filters; j++) out[j] = 0;
    for (int64_t k = 0; k < p->c; k++)
      for (int64_t j = 0; j < p->filters; j++)
        out[j] += x[r * p->c + k] * p->kernel[k * p->filters + j];
    cn_bias_act_row(out, p->filters, p->bias, p->act);
  }
}

static void pointwise_rows(const void *ctx, int64_t m, const float *x, float *y) {
  const pointwise *p = ctx;
  if (p->panels) {
    cn_panels_gemm_serial(m, x, p->c, p->panels, p->bias, p->act, y, p->filters);
    return;
  }
  if (!p->small) {
    plain_rows(p, m, x, y);
    return;
  }
  cn_shape row = cn_shape_make(4, (int64_t[]){1, 1, m, p->c});
  cn_window w = cn_window_make(&row, 1, 1, 1, 1, 1, 1, CN_PAD_VALID);
  cn_conv_small(&w, p->filters, x, p->kernel, p->bias, p->act, y, 1);
}

/* The product of a 1x1 convolution over `w` (its kernel node->params[param], its bias the next
 * one when it has one) on the path the convolution apart would take, the panels cached as
 * `kind`; 0 when that path is neither the panels nor conv_small (the layers then run apart). */
static int pointwise_path(cn_node *node, int param, int kind, const cn_conv2d_attrs *a,
                          const cn_window *w, const cn_activation *act, const cn_exec *ex,
                          cn_panels *k, pointwise *p) {
  const float *bias = a->use_bias ? node->params[param + 1].data : NULL;
  *p = (pointwise){NULL, node->params[param].data, bias, act, w->c, a->filters, 0};
  cn_window cw = choice_window(w, cn_exec_algorithm_batch(ex));
  if (panels_applies(a, &cw, act->kind)) {
    p->panels = cn_panels_kernel_of(node, param, kind, w->c, a->filters, ex, k);
    if (p->panels) return 1;
  }
  p->small = cn_conv_small_applies(w, a->filters, 1);
  return p->small;
}

/* Below this many depthwise output pixels (ResNet's and MobileNet's 7x7 layers at batch 1), the
 * layers run apart, each on every thread: bands of a row or two re-read the 1x1 kernels once each
 * (MobileNetV2's last three blocks at batch 1: 0.03 ms slower each in bands). */
enum { APART_PIXELS = 128 };

/* Whether the depthwise block over wd runs apart, chosen for `batch` samples (the algorithm
 * batch). */
static int runs_apart(const cn_window *wd, int batch) {
  return batch * wd->oh * wd->ow < APART_PIXELS;
}

/* The expansion over the whole input into e, on every thread. */
static void expand_apart(const pointwise *p, const cn_window *w, const float *x, float *e,
                         int threads) {
  int64_t m = w->batch * w->ih * w->iw;
  if (p->panels)
    cn_panels_gemm(m, x, p->c, p->panels, p->bias, p->act, e, p->filters, threads);
  else if (p->small)
    cn_conv_small(w, p->filters, x, p->kernel, p->bias, p->act, e, threads);
  else
    pointwise_rows(p, m, x, e);
}

static void dw_conv_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_dw_conv_attrs *a = node->attrs;
  dw_params prm = dw_conv_params(node);
  cn_shape dw_in = in[0].shape;
  if (a->expands) dw_in.dim[3] = a->expand.filters;
  cn_window wd = cn_depthwise_window(&a->dw, &dw_in);
  int apart = runs_apart(&wd, cn_exec_algorithm_batch(ex));
  cn_tensor x = in[0];
  float *scratch = ex->scratch;
  cn_activation epilogue = a->conv.act;
  if (node->n_inputs == 2) epilogue.residual = in[1].data, epilogue.residual_of = out->data;
  cn_panels k, ke;
  pointwise project, expand;
  if (a->expands) {
    /* Folded in fp32 graphs only (cn_graph_fold_depthwise), where the panels or conv_small take
     * both products (plain products only when the panels find no memory; fp32 even if the graph
     * is then set to bf16). */
    cn_window we = conv_window(&a->expand, &in[0].shape);
    pointwise_path(node, prm.expand_at, CN_DERIVED_PANELS_EXPAND, &a->expand, &we, &a->expand.act,
                   ex, &ke, &expand);
    if (apart) { /* expanded in full first, then as a depthwise + 1x1 fold */
      x = (cn_tensor){dw_in, scratch};
      expand_apart(&expand, &we, in[0].data, x.data, ex->threads);
      scratch += cn_line_floats((size_t)cn_shape_numel(&dw_in));
    }
  }
  cn_tensor mid = {dw_output(&wd), scratch};
  cn_window w = conv_window(&a->conv, &mid.shape);
  int path = pointwise_path(node, 0, CN_DERIVED_PANELS, &a->conv, &w, &epilogue, ex, &k, &project);
  if (a->expands && !apart) {
    cn_pointwise pp = {pointwise_rows, &project, wd.c, a->conv.filters};
    cn_pointwise pe = {pointwise_rows, &expand, in[0].shape.dim[3], wd.c};
    cn_depthwise_pointwise(&wd, in[0].data, &pe, prm.dw_kernel, prm.dw_bias, &a->dw.act, &pp,
                           out->data, scratch, ex->threads);
    return;
  }
  cn_window cw = choice_window(&w, cn_exec_algorithm_batch(ex));
  if (path && !apart && !runs_bf16(&a->conv, &cw, ex, &epilogue)) {
    cn_pointwise pp = {pointwise_rows, &project, wd.c, a->conv.filters};
    cn_depthwise_pointwise(&wd, x.data, NULL, prm.dw_kernel, prm.dw_bias, &a->dw.act, &pp,
                           out->data, scratch, ex->threads);
    return;
  }
  cn_depthwise(&wd, 1, x.data, prm.dw_kernel, prm.dw_bias, &a->dw.act, mid.data, ex->threads);
  cn_exec rest = *ex;
  rest.scratch = scratch + cn_line_floats((size_t)cn_shape_numel(&mid.shape));
  conv_run(node, &mid, out, &rest, &epilogue);
}

static size_t dw_conv_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_dw_conv_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  if (a->expands) in.dim[3] = a->expand.filters;
  cn_window wd = cn_depthwise_window(&a->dw, &in);
  cn_shape mid = dw_output(&wd);
  size_t apart = cn_line_floats((size_t)cn_shape_numel(&mid)) +
                 conv_scratch_for(g, node, &mid, node->n_inputs == 2);
  if (a->expands) { /* the expanded input in full too when apart, else only the fused pass */
    if (!runs_apart(&wd, cn_graph_algorithm_batch(g, batch)))
      return cn_depthwise_pointwise_scratch(&wd, 1);
    apart += cn_line_floats((size_t)cn_shape_numel(&in));
  }
  size_t fused = cn_depthwise_pointwise_scratch(&wd, 0);
  return apart > fused ? apart : fused;
}

int cn_conv2d_pointwise_tiled(const cn_conv2d_attrs *a, int64_t channels) {
  cn_shape one = cn_shape_make(4, (int64_t[]){1, 1, 1, channels});
  cn_window w = conv_window(a, &one);
  return panels_applies(a, &w, a->act.kind) || cn_conv_small_applies(&w, a->filters, 1);
}

static cn_status dw_conv_infer(cn_graph *g, cn_node *node) {
  (void)g;
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: a fused convolution is made by folding only", node->name);
}

const cn_op cn_op_dw_conv = {
    .type = "DepthwiseConv2D+Conv2D",
    .attrs_size = sizeof(cn_dw_conv_attrs),
    .min_inputs = 1,
    .max_inputs = 2,
    .infer = dw_conv_infer,
    .forward = dw_conv_forward,
    .scratch = dw_conv_scratch,
    .release = cn_derived_release,
};
