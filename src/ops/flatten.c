/* Flatten: the per-sample values in row-major (NHWC) order, as Keras does; a copy at most. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status flatten_infer(cn_graph *g, cn_node *node) {
  int64_t n = cn_shape_numel(&g->nodes[node->inputs[0]].shape);
  if (n < 0) return cn_fail(CN_ERR_LIMIT, "%s: input too large", node->name);
  node->shape = cn_shape_make(1, &n);
  return CN_OK;
}

/* The values are unchanged; only the shape differs. */
static void copy_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  if (out->data != in[0].data)
    memmove(out->data, in[0].data, (size_t)cn_shape_numel(&out->shape) * sizeof(float));
}

/* The gradient is dout with the input's shape: the same floats in the same order. */
static void flatten_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  if (din[0].data) cn_add_into(din[0].data, dout->data, cn_shape_numel(&dout->shape), ex->threads);
}

const cn_op cn_op_flatten = {
    .type = "Flatten",
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = flatten_infer,
    .forward = copy_forward,
    .inplace = 1,
    .backward = flatten_backward,
};
