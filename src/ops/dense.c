/* Dense over the last axis (any rank, like Keras): kernel (in, units), bias (units), fused
 * activation. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { MAX_UNITS = 1 << 24 };

static cn_status dense_infer(cn_graph *g, cn_node *node) {
  const cn_dense_attrs *a = node->attrs;
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  if (in->rank < 1) return cn_fail(CN_ERR_SHAPE, "%s: input has no features axis", node->name);
  int64_t features = in->dim[in->rank - 1];
  if (features < 1 || features > MAX_UNITS)
    return cn_fail(CN_ERR_SHAPE, "%s: bad input size %lld", node->name, (long long)features);
  if (a->units < 1 || a->units > MAX_UNITS)
    return cn_fail(CN_ERR_FORMAT, "%s: bad units %d", node->name, a->units);
  cn_status st = cn_act_check(node->name, &a->act, in->rank, 1);
  if (st != CN_OK) return st;
  node->shape = *in;
  node->shape.dim[in->rank - 1] = a->units;
  st = cn_node_add_param(node, "kernel", cn_shape_make(2, (int64_t[]){features, a->units}));
  if (st == CN_OK && a->use_bias)
    st = cn_node_add_param(node, "bias", cn_shape_make(1, (int64_t[]){a->units}));
  return st;
}

static void dense_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_dense_attrs *a = node->attrs;
  int64_t features = in[0].shape.dim[in[0].shape.rank - 1];
  int64_t rows = cn_shape_numel(&in[0].shape) / features;
  const float *bias = a->use_bias ? node->params[1].data : NULL;
  cn_gemm_bias_act(rows, a->units, features, in[0].data, features, node->params[0].data, a->units,
                   bias, &a->act, out->data, a->units, ex->threads);
}

const cn_op cn_op_dense = {
    .type = "Dense",
    .attrs_size = sizeof(cn_dense_attrs),
    .infer = dense_infer,
    .forward = dense_forward,
};
