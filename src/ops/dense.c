/* Dense over the last axis (any rank, like Keras): kernel (in, units), bias (units), fused
 * activation. */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { MAX_UNITS = 1 << 24 };

static cn_status dense_infer(cn_graph *g, cn_node *node) {
  const cn_dense_attrs *a = node->attrs;
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

/* Few rows (small batches) stream the kernel in place (cn_gemm_rows): OpenBLAS packed the whole
 * kernel on every call, most of the time at batch 1 (measured, 2 threads, Intel Xeon: VGG16's
 * fc1, 25088 x 4096, 42 ms with OpenBLAS at batch 1). */
enum { ROWS_MAX = 8 };

static void dense_run(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex,
                      const cn_activation *act) {
  const cn_dense_attrs *a = node->attrs;
  int64_t features = in[0].shape.dim[in[0].shape.rank - 1];
  int64_t rows = cn_shape_numel(&in[0].shape) / features;
  const float *bias = a->use_bias ? node->params[1].data : NULL;
  cn_bf16_matrix m;
  if (ex->precision == CN_PRECISION_BF16 && !ex->training &&
      cn_bf16_kernel(node, features, a->units, ex, &m)) {
    cn_bf16_gemm(rows, in[0].data, features, &m, bias, act, out->data, a->units,
                 (uint16_t *)ex->scratch, ex->threads);
    return;
  }
  /* Chosen by the rows of the algorithm batch, so that a sample's row is the same bits in any. */
  if (rows / ex->batch * cn_exec_algorithm_batch(ex) <= ROWS_MAX) {
    cn_gemm_rows(rows, in[0].data, features, node->params[0].data, a->units, features, a->units,
                 bias, act, out->data, a->units, ex->threads);
    return;
  }
  cn_gemm_bias_act(rows, a->units, features, in[0].data, features, node->params[0].data, a->units,
                   bias, act, out->data, a->units, ex->threads);
}

/* bf16 products round their input rows into scratch. */
static size_t dense_scratch(const cn_graph *g, const cn_node *node, int batch) {
  (void)batch;
  if (g->precision != CN_PRECISION_BF16) return 0;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  return (cn_bf16_gemm_scratch(in->dim[in->rank - 1], cn_get_threads()) + 1) / 2;
}

static void dense_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_dense_attrs *a = node->attrs;
  cn_fused_forward(node, in, out, ex, &a->act, dense_run);
}

static size_t dense_saved(const cn_graph *g, const cn_node *node, int batch) {
  const cn_dense_attrs *a = node->attrs;
  return cn_fused_saved(g, node, batch, &a->act);
}

/* Dense is a 1x1 convolution over rows x features: one "image" per row. */
static cn_window dense_window(int64_t rows, int64_t features) {
  cn_window w = {.batch = rows,
                 .ih = 1,
                 .iw = 1,
                 .c = features,
                 .oh = 1,
                 .ow = 1,
                 .kh = 1,
                 .kw = 1,
                 .sh = 1,
                 .sw = 1,
                 .dh = 1,
                 .dw = 1};
  return w;
}

static cn_window dense_window_of(const cn_shape *in) {
  int64_t features = in->dim[in->rank - 1];
  return dense_window(cn_shape_numel(in) / features, features);
}

static void dense_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex) {
  const cn_dense_attrs *a = node->attrs;
  cn_window w = dense_window_of(&in[0].shape);
  cn_conv_grad io = cn_fused_grad(node, in, out, dout, din, dparams, ex, &a->act, a->use_bias);
  cn_conv2d_backward(&w, a->units, 1, &io, ex->scratch, ex->threads);
}

static size_t dense_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_dense_attrs *a = node->attrs;
  cn_shape in = cn_shape_batch(batch, &g->nodes[node->inputs[0]].shape);
  cn_window w = dense_window_of(&in);
  return cn_conv2d_backward_scratch(&w, a->units, 1);
}

const cn_op cn_op_dense = {
    .type = "Dense",
    .attrs_size = sizeof(cn_dense_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = dense_infer,
    .forward = dense_forward,
    .scratch = dense_scratch,
    .release = cn_derived_release,
    .backward = dense_backward,
    .saved = dense_saved,
    .backward_scratch = dense_backward_scratch,
};
