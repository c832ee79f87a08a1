/* MaxPooling2D and AveragePooling2D (Keras semantics, TensorFlow padding; average pooling
 * excludes padded cells). */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status pool_infer(cn_graph *g, cn_node *node) {
  const cn_pool_attrs *a = node->attrs;
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
  cn_window w = {0};
  cn_status st = cn_window_infer(node->name, &g->nodes[node->inputs[0]].shape, a->ph, a->pw, a->sh,
                                 a->sw, 1, 1, a->padding, &w);
  if (st != CN_OK) return st;
  node->shape = cn_shape_make(3, (int64_t[]){w.oh, w.ow, w.c});
  return CN_OK;
}

static cn_window pool_window(const cn_node *node, const cn_tensor *in) {
  const cn_pool_attrs *a = node->attrs;
  return cn_window_make(&in->shape, a->ph, a->pw, a->sh, a->sw, 1, 1, a->padding);
}

static void maxpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  cn_window w = pool_window(node, &in[0]);
  cn_maxpool(&w, in[0].data, out->data, ex->threads);
}

static void avgpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  cn_window w = pool_window(node, &in[0]);
  cn_avgpool(&w, in[0].data, out->data, ex->threads);
}

const cn_op cn_op_maxpool = {
    .type = "MaxPooling2D",
    .attrs_size = sizeof(cn_pool_attrs),
    .infer = pool_infer,
    .forward = maxpool_forward,
};

const cn_op cn_op_avgpool = {
    .type = "AveragePooling2D",
    .attrs_size = sizeof(cn_pool_attrs),
    .infer = pool_infer,
    .forward = avgpool_forward,
};
