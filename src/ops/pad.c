/* Pad with per-axis begin/end amounts over the per-sample axes: constant, reflect, edge or wrap.
 * Negative amounts crop. Each output element maps back to one input index per axis (or to the
 * constant); output rows run in parallel. Backward folds every padded cell back onto its source. */
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

/* ---- backward ------------------------------------------------------------------------------ */

/* Full dims (batch first) of the input and the output, and the leading pads (0 on the batch). */
static void pad_dims(const cn_pad_attrs *a, const cn_shape *in, int batch, int64_t *id, int64_t *od,
                     int64_t *begin) {
  id[0] = od[0] = batch, begin[0] = 0;
  for (int i = 0; i < a->rank; i++) {
    id[i + 1] = in->dim[i];
    od[i + 1] = in->dim[i] + a->begin[i] + a->end[i];
    begin[i + 1] = a->begin[i];
  }
}

/* Backward folds every padded cell back onto its source: for each axis, the output indices that
 * read input index i (ascending) are listed, CSR style: start[i] .. start[i + 1] - 1 in list. A
 * whole input row (the last axis) then gathers from the product of its outer axes' lists, in a
 * fixed order, and rows are independent: the result does not depend on the thread count. */
static size_t pad_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_pad_attrs *a = node->attrs;
  int64_t id[CN_MAX_RANK], od[CN_MAX_RANK], begin[CN_MAX_RANK];
  pad_dims(a, &g->nodes[node->inputs[0]].shape, batch, id, od, begin);
  size_t words = 0;
  for (int i = 0; i <= a->rank; i++) words += (size_t)(id[i] + 1 + od[i]);
  return 2 * words; /* int64 words in floats */
}

/* Builds the lists of one axis into start (n + 1 words) and list (up to out words). */
static void axis_sources(cn_pad_mode mode, int64_t n, int64_t out, int64_t begin, int64_t *start,
                         int64_t *list) {
  for (int64_t i = 0; i <= n; i++) start[i] = 0;
  for (int64_t o = 0; o < out; o++) {
    int64_t s = source(mode, o, begin, n);
    if (s >= 0) start[s + 1]++;
  }
  for (int64_t i = 0; i < n; i++) start[i + 1] += start[i];
  for (int64_t o = 0; o < out; o++) { /* start[s] moves to the end of s's list ... */
    int64_t s = source(mode, o, begin, n);
    if (s >= 0) list[start[s]++] = o;
  }
  for (int64_t i = n; i > 0; i--) start[i] = start[i - 1]; /* ... and back */
  start[0] = 0;
}

static void pad_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                         const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                         const cn_exec *ex) {
  (void)out, (void)dparams;
  const cn_pad_attrs *a = node->attrs;
  float *dx = din[0].data;
  if (!dx) return;
  int full = a->rank + 1, last = full - 1;
  int64_t id[CN_MAX_RANK], od[CN_MAX_RANK], begin[CN_MAX_RANK];
  cn_shape sample = cn_shape_make(a->rank, in[0].shape.dim + 1);
  pad_dims(a, &sample, (int)in[0].shape.dim[0], id, od, begin);
  const int64_t *start[CN_MAX_RANK], *list[CN_MAX_RANK];
  int64_t *words = (int64_t *)(void *)ex->scratch;
  for (int i = 0; i < full; i++) {
    int64_t *s = words, *l = words + id[i] + 1;
    axis_sources(a->mode, id[i], od[i], begin[i], s, l);
    start[i] = s, list[i] = l;
    words = l + od[i];
  }
  int64_t n = id[last], rows = cn_shape_numel(&in[0].shape) / (n ? n : 1);
  const float *dy = dout->data;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (rows * n > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    int64_t idx[CN_MAX_RANK] = {0}, lo[CN_MAX_RANK] = {0}, hi[CN_MAX_RANK] = {0}, rem = r;
    int empty = 0;
    for (int i = last - 1; i >= 0; i--) { /* this row's index and output lists per outer axis */
      int64_t k = rem % id[i];
      rem /= id[i];
      lo[i] = idx[i] = start[i][k];
      hi[i] = start[i][k + 1];
      empty |= lo[i] == hi[i];
    }
    if (empty) continue;
    float *dst = dx + r * n;
    for (;;) {
      int64_t orow = 0;
      for (int i = 0; i < last; i++) orow = orow * od[i] + list[i][idx[i]];
      const float *src = dy + orow * od[last];
      for (int64_t j = 0; j < n; j++)
        for (int64_t t = start[last][j]; t < start[last][j + 1]; t++) dst[j] += src[list[last][t]];
      int i = last - 1; /* the next combination, the last outer axis fastest */
      while (i >= 0 && ++idx[i] == hi[i]) idx[i] = lo[i], i--;
      if (i < 0) break;
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
    .backward = pad_backward,
    .backward_scratch = pad_backward_scratch,
};
