/* cn_model_profile: every layer's wall time over repeated forward passes, and its operation
 * count, for `--profile` (which divides one by the other and by the CPU's peak). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"

static double numel(const cn_shape *s) {
  double n = 1;
  for (int i = 0; i < s->rank; i++) n *= (double)s->dim[i];
  return n;
}

static double param_numel(const cn_node *n, int k) {
  return k < n->n_params ? numel(&n->params[k].shape) : 0;
}

/* A depthwise layer folded into the 1x1 convolution after it (and the expanding one before it):
 * the products of all of them per output value of the last. */
static double dw_conv_macs(const cn_graph *g, const cn_node *n) {
  const cn_dw_conv_attrs *a = n->attrs;
  double filters = a->conv.filters > 0 ? a->conv.filters : 1;
  double channels = param_numel(n, 0) / filters, pixels = numel(&n->shape) / filters;
  double macs = channels + (double)a->dw.kh * a->dw.kw * channels / filters;
  const cn_shape *in = n->n_inputs > 0 ? &g->nodes[n->inputs[0]].shape : NULL;
  if (a->expands && in && in->rank == 3 && pixels > 0) /* per input pixel: in x expanded */
    macs += (double)in->dim[0] * in->dim[1] * in->dim[2] * channels / (pixels * filters);
  return macs;
}

/* Multiply-adds of the products per output value (0: not a product layer). */
static double macs_per_output(const cn_graph *g, const cn_node *n) {
  /* A folded residual sum adds one operation per output, left out like a bias. */
  if (n->op == &cn_op_conv2d || n->op == &cn_op_conv2d_add) {
    const cn_conv2d_attrs *a = n->attrs;
    return param_numel(n, 0) / (a->filters > 0 ? a->filters : 1);
  }
  if (n->op == &cn_op_dw_conv) return dw_conv_macs(g, n);
  if (n->op == &cn_op_depthwise) {
    const cn_depthwise_attrs *a = n->attrs;
    return (double)a->kh * a->kw;
  }
  if (n->op == &cn_op_dense) {
    const cn_dense_attrs *a = n->attrs;
    return param_numel(n, 0) / (a->units > 0 ? a->units : 1);
  }
  if (n->op == &cn_op_gemm) {
    const cn_gemm_attrs *a = n->attrs;
    return param_numel(n, 0) / (a->n > 0 ? (double)a->n : 1);
  }
  if (n->op == &cn_op_matmul && n->n_inputs > 0) {
    const cn_shape *x = &g->nodes[n->inputs[0]].shape;
    return x->rank > 0 ? (double)x->dim[x->rank - 1] : 0;
  }
  return 0;
}

/* Operations of node i at this batch: 2 per multiply-add of a product layer (a transposed
 * convolution spreads each input value over its kernel), else one per output value. */
static double node_flops(const cn_graph *g, int i, int batch) {
  const cn_node *n = &g->nodes[i];
  double out = numel(&n->shape) * batch;
  if (n->op == &cn_op_conv_transpose && n->n_inputs > 0) {
    const cn_conv_transpose_attrs *a = n->attrs;
    double in = numel(&g->nodes[n->inputs[0]].shape) * batch;
    return 2 * in * a->kh * a->kw * a->filters / (a->groups > 0 ? a->groups : 1);
  }
  double macs = macs_per_output(g, n);
  return macs > 0 ? 2 * out * macs : out;
}

static cn_status collect(const cn_graph *g, const double *ms, int batch, int iterations,
                         cn_layer_profile **layers, size_t *count) {
  cn_layer_profile *out = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *out);
  if (!out) return cn_fail(CN_ERR_NOMEM, "out of memory");
  size_t n = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *node = &g->nodes[i];
    if (node->op->graph_input || ms[i] <= 0) continue; /* inputs, and layers that did not run */
    out[n++] = (cn_layer_profile){.name = node->name,
                                  .type = node->type,
                                  .ms = ms[i] / iterations,
                                  .gflop = node_flops(g, i, batch) / 1e9};
  }
  *layers = out;
  *count = n;
  return CN_OK;
}

cn_status cn_model_profile(cn_model *m, int batch, const float *const *inputs, int iterations,
                           cn_layer_profile **layers, size_t *count) {
  if (!m || !inputs || !layers || !count || batch < 1 || iterations < 1)
    return cn_fail(CN_ERR_ARG, "cn_model_profile: bad arguments");
  *layers = NULL;
  *count = 0;
  int outs = cn_model_output_count(m);
  float **y = calloc((size_t)(outs ? outs : 1), sizeof *y);
  cn_status st = y ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int k = 0; st == CN_OK && k < outs; k++) {
    cn_shape s = cn_model_output_shape_at(m, k);
    y[k] = malloc((size_t)(numel(&s) * batch + 1) * sizeof(float));
    if (!y[k]) st = cn_fail(CN_ERR_NOMEM, "out of memory for the outputs");
  }
  /* the untimed pass builds the inference graph and its plan */
  if (st == CN_OK) st = cn_model_forward_multi(m, batch, inputs, y);
  cn_graph *g = m->inference ? m->inference : m->graph;
  double *ms = st == CN_OK ? calloc((size_t)g->n_nodes + 1, sizeof *ms) : NULL;
  if (st == CN_OK && !ms) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  g->profile_ms = ms;
  for (int it = 0; st == CN_OK && it < iterations; it++)
    st = cn_model_forward_multi(m, batch, inputs, y);
  g->profile_ms = NULL;
  if (st == CN_OK) st = collect(g, ms, batch, iterations, layers, count);
  free(ms);
  for (int k = 0; y && k < outs; k++) free(y[k]);
  free(y);
  return st;
}
