/* Reshape to a per-sample target shape with at most one -1 (inferred). A 0 in the target is a
 * real 0 (an empty tensor reshaped, as ONNX's allowzero does); the element counts must agree. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status reshape_infer(cn_graph *g, cn_node *node) {
  const cn_reshape_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  int64_t total = cn_shape_numel(in), known = 1;
  int unknown = -1;
  char buf[96], buf2[96];
  if (a->target.rank < 1 || a->target.rank >= CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: target rank %d", node->name, a->target.rank);
  for (int i = 0; i < a->target.rank; i++) {
    int64_t d = a->target.dim[i];
    if (d == -1 && unknown < 0) {
      unknown = i;
    } else if (d < 0 || __builtin_mul_overflow(known, d, &known)) {
      return cn_fail(CN_ERR_FORMAT, "%s: bad target shape", node->name);
    }
  }
  node->shape = a->target;
  if (unknown >= 0 && known > 0 && total % known == 0) node->shape.dim[unknown] = total / known;
  if ((unknown >= 0 && node->shape.dim[unknown] < 1) || cn_shape_numel(&node->shape) != total)
    return cn_fail(CN_ERR_SHAPE, "%s: cannot reshape %s to %s", node->name,
                   cn_shape_format(in, buf, sizeof buf),
                   cn_shape_format(&a->target, buf2, sizeof buf2));
  return CN_OK;
}

static void reshape_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  if (out->data != in[0].data)
    memmove(out->data, in[0].data, (size_t)cn_shape_numel(&out->shape) * sizeof(float));
}

/* The gradient is dout with the input's shape: the same floats in the same order. */
static void reshape_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  if (din[0].data) cn_add_into(din[0].data, dout->data, cn_shape_numel(&dout->shape), ex->threads);
}

const cn_op cn_op_reshape = {
    .type = "Reshape",
    .attrs_size = sizeof(cn_reshape_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = reshape_infer,
    .forward = reshape_forward,
    .inplace = 1,
    .backward = reshape_backward,
};
