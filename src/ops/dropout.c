/* Dropout: the identity at inference (training-time masking belongs to src/train). */
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"

static cn_status dropout_infer(cn_graph *g, cn_node *node) {
  const cn_dropout_attrs *a = node->attrs;
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
  if (!(a->rate >= 0.0f && a->rate <= 1.0f))
    return cn_fail(CN_ERR_FORMAT, "%s: rate must be in [0, 1]", node->name);
  node->shape = g->nodes[node->inputs[0]].shape;
  return CN_OK;
}

static void dropout_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  if (out->data != in[0].data)
    memmove(out->data, in[0].data, (size_t)cn_shape_numel(&out->shape) * sizeof(float));
}

const cn_op cn_op_dropout = {
    .type = "Dropout",
    .attrs_size = sizeof(cn_dropout_attrs),
    .infer = dropout_infer,
    .forward = dropout_forward,
    .inplace = 1,
};
