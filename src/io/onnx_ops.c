/* The two ops the ONNX importer inserts itself: a per-sample axis permutation (the NCHW <-> NHWC
 * conversions at layout boundaries, and ONNX Transpose that keeps the batch first) and a constant
 * repeated for every sample. */
#include <string.h>

#include "core/error.h"
#include "io/onnx_internal.h"

static cn_status transpose_infer(cn_graph *g, cn_node *node) {
  const cn_onnx_transpose_attrs *a = node->attrs;
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  if (a->rank != in->rank)
    return cn_fail(CN_ERR_SHAPE, "%s: permutation of %d axes for rank %d", node->name, a->rank,
                   in->rank);
  int seen[CN_MAX_RANK] = {0};
  node->shape = *in;
  for (int i = 0; i < a->rank; i++) {
    int p = a->perm[i];
    if (p < 0 || p >= a->rank || seen[p]++)
      return cn_fail(CN_ERR_FORMAT, "%s: bad permutation", node->name);
    node->shape.dim[i] = in->dim[p];
  }
  return CN_OK;
}

/* Copies one sample: dst in output order from src with per-output-axis source strides. */
static void permute_sample(const float *src, float *dst, int rank, const int64_t *out_dims,
                           const int64_t *src_stride) {
  int64_t idx[CN_MAX_RANK] = {0};
  int64_t inner = out_dims[rank - 1], inner_stride = src_stride[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= out_dims[d];
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0;
    for (int d = 0; d < rank - 1; d++) off += idx[d] * src_stride[d];
    const float *s = src + off;
    for (int64_t k = 0; k < inner; k++) dst[k] = s[k * inner_stride];
    dst += inner;
    for (int d = rank - 2; d >= 0; d--) {
      if (++idx[d] < out_dims[d]) break;
      idx[d] = 0;
    }
  }
}

static void transpose_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                              const cn_exec *ex) {
  const cn_onnx_transpose_attrs *a = node->attrs;
  int rank = a->rank;
  int64_t in_stride[CN_MAX_RANK], src_stride[CN_MAX_RANK], out_dims[CN_MAX_RANK];
  int64_t s = 1;
  for (int d = rank - 1; d >= 0; d--) {
    in_stride[d] = s;
    s *= in[0].shape.dim[d + 1];
  }
  for (int d = 0; d < rank; d++) {
    src_stride[d] = in_stride[a->perm[d]];
    out_dims[d] = out->shape.dim[d + 1];
  }
  int64_t per = s, batch = in[0].shape.dim[0];
#pragma omp parallel for num_threads(ex->threads) if (batch > 1 && ex->threads > 1)
  for (int64_t b = 0; b < batch; b++)
    permute_sample(in[0].data + b * per, out->data + b * per, rank, out_dims, src_stride);
}

const cn_op cn_op_onnx_transpose = {
    .type = "Transpose",
    .attrs_size = sizeof(cn_onnx_transpose_attrs),
    .infer = transpose_infer,
    .forward = transpose_forward,
};

static cn_status constant_infer(cn_graph *g, cn_node *node) {
  const cn_onnx_constant_attrs *a = node->attrs;
  if (node->n_inputs != 0) return cn_fail(CN_ERR_SHAPE, "%s: takes no inputs", node->name);
  if (a->shape.rank < 1 || a->shape.rank >= CN_MAX_RANK || cn_shape_numel(&a->shape) < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: bad constant shape", node->name);
  node->shape = a->shape;
  return cn_node_add_state(node, "value", a->shape);
}

static void constant_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                             const cn_exec *ex) {
  size_t per = (size_t)cn_shape_numel(&node->shape);
  for (int64_t b = 0; b < out->shape.dim[0]; b++)
    memcpy(out->data + b * per, node->params[0].data, per * sizeof(float));
}

const cn_op cn_op_onnx_constant = {
    .type = "Constant",
    .attrs_size = sizeof(cn_onnx_constant_attrs),
    .infer = constant_infer,
    .forward = constant_forward,
};
