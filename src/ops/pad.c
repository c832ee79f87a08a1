/* Pad with per-axis begin/end amounts over the per-sample axes: constant, reflect, edge or wrap.
 * Negative amounts crop. Each output element maps back to one input index per axis (or to the
 * constant); output rows run in parallel. */
#include "core/error.h"
#include "ops/ops_onnx.h"

enum { MAX_PAD = 1 << 20 };

static cn_status pad_infer(cn_graph *g, cn_node *node) {
  const cn_pad_attrs *a = node->attrs;
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if ((int)a->mode < CN_PADMODE_CONSTANT || a->mode > CN_PADMODE_WRAP)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown pad mode %d", node->name, (int)a->mode);
  if (a->rank != x->rank)
    return cn_fail(CN_ERR_SHAPE, "%s: pads for %d axes, the input per-sample rank is %d",
                   node->name, a->rank, x->rank);
  int64_t dims[CN_MAX_RANK];
  for (int i = 0; i < a->rank; i++) {
    int64_t b = a->begin[i], e = a->end[i], n = x->dim[i];
    if (b < -MAX_PAD || b > MAX_PAD || e < -MAX_PAD || e > MAX_PAD)
      return cn_fail(CN_ERR_LIMIT, "%s: pad amount out of range on axis %d", node->name, i);
    dims[i] = n + b + e;
    if (dims[i] < 1)
      return cn_fail(CN_ERR_SHAPE, "%s: axis %d would be empty after padding", node->name, i);
    int pads_out = b > 0 || e > 0;
    if (a->mode == CN_PADMODE_REFLECT && pads_out && (b >= n || e >= n))
      return cn_fail(CN_ERR_SHAPE, "%s: reflect pad (%lld, %lld) needs less than the dim %lld",
                     node->name, (long long)b, (long long)e, (long long)n);
    if (a->mode != CN_PADMODE_CONSTANT && pads_out && n < 1)
      return cn_fail(CN_ERR_SHAPE, "%s: cannot pad an empty axis %d", node->name, i);
  }
  node->shape = cn_shape_make(a->rank, dims);
  return CN_OK;
}

/* The input index for output index o on an axis of length n with `begin` leading pad, or -1 for
 * the constant. */
static int64_t source(cn_pad_mode mode, int64_t o, int64_t begin, int64_t n) {
  int64_t i = o - begin;
  if (i >= 0 && i < n) return i;
  switch (mode) {
  case CN_PADMODE_REFLECT:
    if (n == 1) return 0;
    return i < 0 ? -i : 2 * (n - 1) - i;
  case CN_PADMODE_EDGE:
    return i < 0 ? 0 : n - 1;
  case CN_PADMODE_WRAP:
    return ((i % n) + n) % n;
  default:
    return -1;
  }
}

static void pad_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_pad_attrs *a = node->attrs;
  int full = out->shape.rank;
  const int64_t *od = out->shape.dim, *id = in[0].shape.dim;
  int64_t in_stride[CN_MAX_RANK] = {0}, step = 1, begin[CN_MAX_RANK] = {0};
  for (int i = full - 1; i >= 0; i--) {
    in_stride[i] = step;
    step *= id[i];
  }
  for (int i = 1; i < full; i++) begin[i] = a->begin[i - 1];
  int last = full - 1;
  int64_t n = od[last], rows = cn_shape_numel(&out->shape) / n;
  const float *x = in[0].data;
  float *y = out->data;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * n > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0, rem = r;
    int outside = 0;
    for (int i = last - 1; i >= 0; i--) {
      int64_t s = source(a->mode, rem % od[i], begin[i], id[i]);
      rem /= od[i];
      if (s < 0) outside = 1;
      off += s * in_stride[i];
    }
    float *dst = y + r * n;
    for (int64_t j = 0; j < n; j++) {
      int64_t s = outside ? -1 : source(a->mode, j, begin[last], id[last]);
      dst[j] = s < 0 ? a->value : x[off + s];
    }
  }
}

const cn_op cn_op_pad = {
    .type = "Pad",
    .attrs_size = sizeof(cn_pad_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = pad_infer,
    .forward = pad_forward,
};
