/* Concatenate along an axis (Keras style, counting the batch dimension). */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status concat_check_input(const cn_node *node, const cn_shape *first,
                                    const cn_shape *other, int axis) {
  char buf[96], buf2[96];
  int same = first->rank == other->rank;
  for (int d = 0; same && d < first->rank; d++)
    if (d != axis && first->dim[d] != other->dim[d]) same = 0;
  if (!same)
    return cn_fail(CN_ERR_SHAPE, "%s: cannot concatenate %s and %s on axis %d", node->name,
                   cn_shape_format(first, buf, sizeof buf),
                   cn_shape_format(other, buf2, sizeof buf2), axis + 1);
  return CN_OK;
}

static cn_status concat_infer(cn_graph *g, cn_node *node) {
  const cn_concat_attrs *a = node->attrs;
  const cn_shape *first = &g->nodes[node->inputs[0]].shape;
  int axis = cn_axis_resolve(a->axis, first->rank);
  if (axis < 0)
    return cn_fail(CN_ERR_SHAPE, "%s: axis %d out of range for rank %d", node->name, a->axis,
                   first->rank + 1);
  node->shape = *first;
  node->shape.dim[axis] = 0;
  for (int i = 0; i < node->n_inputs; i++) {
    const cn_shape *other = &g->nodes[node->inputs[i]].shape;
    cn_status st = concat_check_input(node, first, other, axis);
    if (st != CN_OK) return st;
    node->shape.dim[axis] += other->dim[axis];
  }
  return CN_OK;
}

static void concat_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_concat_attrs *a = node->attrs;
  int axis = cn_axis_resolve(a->axis, out->shape.rank - 1) + 1;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= out->shape.dim[d];
  for (int d = axis + 1; d < out->shape.rank; d++) inner *= out->shape.dim[d];
  int64_t out_len = out->shape.dim[axis] * inner;
  /* Output row by output row, written in order, on the team (InceptionV3's concatenations at
   * batch 8: 12.9 ms on one thread input by input). */
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (outer * out_len > 32768)
  for (int64_t o = 0; o < outer; o++) {
    int64_t offset = 0;
    for (int i = 0; i < node->n_inputs; i++) {
      int64_t len = in[i].shape.dim[axis] * inner;
      memcpy(out->data + o * out_len + offset, in[i].data + o * len, (size_t)len * sizeof(float));
      offset += len;
    }
  }
}

/* Each input's gradient is its slice of dout along the axis. */
static void concat_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  const cn_concat_attrs *a = node->attrs;
  int axis = cn_axis_resolve(a->axis, dout->shape.rank - 1) + 1;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= dout->shape.dim[d];
  for (int d = axis + 1; d < dout->shape.rank; d++) inner *= dout->shape.dim[d];
  int64_t out_len = dout->shape.dim[axis] * inner, offset = 0;
  for (int i = 0; i < node->n_inputs; i++) {
    int64_t len = in[i].shape.dim[axis] * inner;
    float *dx = din[i].data;
    if (dx) {
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (outer * len > 32768)
      for (int64_t o = 0; o < outer; o++)
        cn_add_into(dx + o * len, dout->data + o * out_len + offset, len, 1);
    }
    offset += len;
  }
}

const cn_op cn_op_concat = {
    .type = "Concatenate",
    .attrs_size = sizeof(cn_concat_attrs),
    .min_inputs = 1,
    .max_inputs = 0,
    .infer = concat_infer,
    .forward = concat_forward,
    .backward = concat_backward,
};
