/* DepthwiseConv2D (Keras semantics): each input channel c convolved with depth_multiplier
 * filters, output channel c * multiplier + m. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { MAX_CHANNELS = 1 << 24 };

static cn_status depthwise_infer(cn_graph *g, cn_node *node) {
  const cn_depthwise_attrs *a = node->attrs;
  cn_window w = {0};
  cn_status st = cn_window_infer(node->name, &g->nodes[node->inputs[0]].shape, a->kh, a->kw, a->sh,
                                 a->sw, a->dh, a->dw, a->padding, &w);
  if (st != CN_OK) return st;
  if (a->depth_multiplier < 1 || w.c * a->depth_multiplier > MAX_CHANNELS)
    return cn_fail(CN_ERR_FORMAT, "%s: bad depth_multiplier %d", node->name, a->depth_multiplier);
  st = cn_act_check(node->name, &a->act, 3, 1);
  if (st != CN_OK) return st;
  int64_t oc = w.c * a->depth_multiplier;
  node->shape = cn_shape_make(3, (int64_t[]){w.oh, w.ow, oc});
  int64_t kshape[] = {a->kh, a->kw, w.c, a->depth_multiplier};
  st = cn_node_add_param(node, "depthwise_kernel", cn_shape_make(4, kshape));
  if (st == CN_OK && a->use_bias) st = cn_node_add_param(node, "bias", cn_shape_make(1, &oc));
  return st;
}

cn_window cn_depthwise_window(const cn_depthwise_attrs *a, const cn_shape *in) {
  const cn_conv_pads *p = &a->pads;
  return cn_window_make_padded(in, a->kh, a->kw, a->sh, a->sw, a->dh, a->dw, a->padding, p->top,
                               p->bottom, p->left, p->right);
}

static void depthwise_run(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                          const cn_activation *act) {
  const cn_depthwise_attrs *a = node->attrs;
  cn_window w = cn_depthwise_window(a, &in[0].shape);
  const float *bias = a->use_bias ? node->params[1].data : NULL;
  cn_depthwise(&w, a->depth_multiplier, in[0].data, node->params[0].data, bias, act, out->data,
               ex->threads);
}

static void depthwise_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                              const cn_exec *ex) {
  const cn_depthwise_attrs *a = node->attrs;
  cn_fused_forward(node, in, out, ex, &a->act, depthwise_run);
}

static size_t depthwise_saved(const cn_graph *g, const cn_node *node, int batch) {
  const cn_depthwise_attrs *a = node->attrs;
  return cn_fused_saved(g, node, batch, &a->act);
}

static void depthwise_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                               const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                               const cn_exec *ex) {
  const cn_depthwise_attrs *a = node->attrs;
  cn_window w = cn_depthwise_window(a, &in[0].shape);
  cn_conv_grad io = cn_fused_grad(node, in, out, dout, din, dparams, ex, &a->act, a->use_bias);
  cn_depthwise_backward(&w, a->depth_multiplier, &io, ex->scratch, ex->threads);
}

static size_t depthwise_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_depthwise_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  cn_window w = cn_depthwise_window(a, &in);
  return cn_depthwise_backward_scratch(&w, a->depth_multiplier);
}

const cn_op cn_op_depthwise = {
    .type = "DepthwiseConv2D",
    .attrs_size = sizeof(cn_depthwise_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = depthwise_infer,
    .forward = depthwise_forward,
    .backward = depthwise_backward,
    .saved = depthwise_saved,
    .backward_scratch = depthwise_backward_scratch,
};
