/* BatchNormalization at inference over any axis, computed as Keras does:
 * inv = gamma / sqrt(moving_variance + epsilon); y = x * inv + (beta - moving_mean * inv). */
#include <math.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

static cn_status batchnorm_infer(cn_graph *g, cn_node *node) {
  const cn_batchnorm_attrs *a = node->attrs;
  if (node->n_inputs != 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", node->name);
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  int axis = cn_axis_resolve(a->axis, in->rank);
  if (axis < 0)
    return cn_fail(CN_ERR_SHAPE, "%s: axis %d out of range for rank %d", node->name, a->axis,
                   in->rank + 1);
  if (!(a->epsilon >= 0.0f) || !isfinite(a->epsilon))
    return cn_fail(CN_ERR_FORMAT, "%s: bad epsilon", node->name);
  node->shape = *in;
  cn_shape channels = cn_shape_make(1, &in->dim[axis]);
  cn_status st = CN_OK;
  if (a->scale) st = cn_node_add_param(node, "gamma", channels);
  if (st == CN_OK && a->center) st = cn_node_add_param(node, "beta", channels);
  if (st == CN_OK) st = cn_node_add_state(node, "moving_mean", channels);
  if (st == CN_OK) st = cn_node_add_state(node, "moving_variance", channels);
  return st;
}

static int64_t batchnorm_channels(const cn_graph *g, const cn_node *node) {
  const cn_batchnorm_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  return in->dim[cn_axis_resolve(a->axis, in->rank)];
}

static void batchnorm_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                              const cn_exec *ex) {
  const cn_batchnorm_attrs *a = node->attrs;
  int axis = cn_axis_resolve(a->axis, in[0].shape.rank - 1) + 1;
  int64_t c = in[0].shape.dim[axis], outer = 1, inner = 1;
  for (int i = 0; i < axis; i++) outer *= in[0].shape.dim[i];
  for (int i = axis + 1; i < in[0].shape.rank; i++) inner *= in[0].shape.dim[i];
  int p = 0;
  const float *gamma = a->scale ? node->params[p++].data : NULL;
  const float *beta = a->center ? node->params[p++].data : NULL;
  const float *mean = node->params[p].data, *var = node->params[p + 1].data;
  float *scale = ex->scratch, *shift = ex->scratch + c;
  for (int64_t j = 0; j < c; j++) {
    float inv = 1.0f / sqrtf(var[j] + a->epsilon);
    if (gamma) inv *= gamma[j];
    scale[j] = inv;
    shift[j] = (beta ? beta[j] : 0.0f) - mean[j] * inv;
  }
  cn_scale_shift(in[0].data, out->data, outer, c, inner, scale, shift, ex->threads);
}

static size_t batchnorm_scratch(const cn_graph *g, const cn_node *node, int batch) {
  return 2 * (size_t)batchnorm_channels(g, node);
}

const cn_op cn_op_batchnorm = {
    .type = "BatchNormalization",
    .attrs_size = sizeof(cn_batchnorm_attrs),
    .infer = batchnorm_infer,
    .forward = batchnorm_forward,
    .scratch = batchnorm_scratch,
    .inplace = 1,
};
