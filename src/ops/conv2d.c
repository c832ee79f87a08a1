/* Conv2D (Keras semantics): strides, dilation, groups, bias, 'valid'/'same' padding with
 * TensorFlow's asymmetric rule, fused activation. Also the padding rule itself and the window
 * validation that every sliding-window op shares. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

/* Sizes above this are certainly a corrupt file; it also keeps every product inside int64. */
enum { MAX_WINDOW = 1 << 16, MAX_CHANNELS = 1 << 24 };

int64_t cn_conv_out_size(int64_t in, int k, int stride, int dilation, cn_padding pad) {
  if (in < 0 || k < 1 || stride < 1 || dilation < 1) return -1;
  if (pad == CN_PAD_SAME) return (in + stride - 1) / stride;
  int64_t span = (int64_t)(k - 1) * dilation + 1;
  return in < span ? 0 : (in - span) / stride + 1;
}

int cn_conv_pad_before(int64_t in, int k, int stride, int dilation, cn_padding pad) {
  if (pad != CN_PAD_SAME) return 0;
  int64_t out = cn_conv_out_size(in, k, stride, dilation, pad);
  int64_t total = (out - 1) * stride + (int64_t)(k - 1) * dilation + 1 - in;
  return total > 0 ? (int)(total / 2) : 0;
}

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
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
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
  return cn_window_make(in, a->kh, a->kw, a->sh, a->sw, a->dh, a->dw, a->padding);
}

static void conv_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_window w = conv_window(a, &in[0].shape);
  const float *bias = a->use_bias ? node->params[1].data : NULL;
  cn_conv2d(&w, a->filters, a->groups, in[0].data, node->params[0].data, bias, &a->act, out->data,
            ex->scratch, ex->threads);
}

static size_t conv_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_conv2d_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  cn_window w = conv_window(a, &in);
  return cn_conv2d_scratch(&w, a->filters, a->groups);
}

const cn_op cn_op_conv2d = {
    .type = "Conv2D",
    .attrs_size = sizeof(cn_conv2d_attrs),
    .infer = conv_infer,
    .forward = conv_forward,
    .scratch = conv_scratch,
};
