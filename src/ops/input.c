/* InputLayer: the graph copies the caller's data into this node's buffer; nothing to compute. */
#include "core/error.h"
#include "ops/ops.h"

static cn_status input_infer(cn_graph *g, cn_node *node) {
  const cn_input_attrs *a = node->attrs;
  if (a->shape.rank < 0 || a->shape.rank >= CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: input rank %d not supported", node->name,
                   a->shape.rank);
  /* 0 is allowed: an empty ONNX tensor that is only reshaped (the importer checks that; the Keras
   * and .cnm readers refuse empty inputs themselves). */
  for (int i = 0; i < a->shape.rank; i++)
    if (a->shape.dim[i] < 0)
      return cn_fail(CN_ERR_SHAPE, "%s: input dimensions must be known and not negative",
                     node->name);
  node->shape = a->shape;
  return CN_OK;
}

static void input_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {}

/* Nothing upstream: the gradient stops here (present so that every graph has a backward). */
static void input_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex) {}

const cn_op cn_op_input = {
    .type = "InputLayer",
    .attrs_size = sizeof(cn_input_attrs),
    .infer = input_infer,
    .forward = input_forward,
    .backward = input_backward,
    .graph_input = 1,
};
