/* Elementwise ops of two or more operands with numpy broadcasting (ONNX Add, Sub, Mul, Div, Max,
 * Min, Sum, Mean, Pow), optionally with one constant operand, and PRelu (a broadcast slope).
 * Operands are aligned right on full shapes (batch first); forward coalesces the dims that are
 * contiguous in every operand, then runs a strided inner loop over the last one. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

enum { KIND_PRELU = CN_BIN_COUNT, MAX_OPERANDS = 65 };

/* The broadcast layout of up to two operands against the output, after coalescing. */
typedef struct bcast {
  int rank;
  int64_t dim[CN_MAX_RANK];
  int64_t stride[2][CN_MAX_RANK];
} bcast;

static const char *kind_name(int kind) {
  static const char *names[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Mean", "Pow", "PRelu"};
  return kind >= 0 && kind <= KIND_PRELU ? names[kind] : "?";
}

/* Right-aligns `s` (rank <= full) into `full` dims padded with leading 1s. */
static void align_right(const cn_shape *s, int full, int64_t *dims) {
  int lead = full - s->rank;
  for (int i = 0; i < full; i++) dims[i] = i < lead ? 1 : s->dim[i - lead];
}

/* Checks a constant operand's full shape against activations of full rank `full`. */
static cn_status check_const_shape(const cn_node *node, const char *what, const cn_shape *s,
                                   int full) {
  char buf[96];
  if (s->rank < 0 || s->rank > full)
    return cn_fail(CN_ERR_SHAPE, "%s: %s shape %s has more dims than the input (rank %d)",
                   node->name, what, cn_shape_format(s, buf, sizeof buf), full);
  for (int i = 0; i < s->rank; i++)
    if (s->dim[i] < 1)
      return cn_fail(CN_ERR_SHAPE, "%s: %s shape %s has an empty or negative dim", node->name, what,
                     cn_shape_format(s, buf, sizeof buf));
  if (s->rank == full && s->dim[0] != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s shape %s varies along the batch dim", node->name,
                   what, cn_shape_format(s, buf, sizeof buf));
  return CN_OK;
}

/* Broadcasts `dims` (full rank) into out (full rank, out[0] ignored: the batch). */
static cn_status broadcast_into(const cn_node *node, const int64_t *dims, int64_t *out, int full) {
  for (int i = 1; i < full; i++) {
    if (dims[i] == out[i] || dims[i] == 1) continue;
    if (out[i] != 1)
      return cn_fail(CN_ERR_SHAPE, "%s: dims %lld and %lld do not broadcast (axis %d)", node->name,
                     (long long)out[i], (long long)dims[i], i);
    out[i] = dims[i];
  }
  return CN_OK;
}

static int n_operands(const cn_node *node, const cn_binary_attrs *a) {
  return node->n_inputs + (a->const_operand != CN_CONST_NONE);
}

static cn_status binary_infer(cn_graph *g, cn_node *node) {
  const cn_binary_attrs *a = node->attrs;
  if ((int)a->kind < 0 || a->kind >= CN_BIN_COUNT)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown elementwise kind %d", node->name, (int)a->kind);
  if ((int)a->const_operand < CN_CONST_NONE || a->const_operand > CN_CONST_FIRST)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: bad const_operand %d", node->name,
                   (int)a->const_operand);
  int total = n_operands(node, a);
  int two_only = a->kind == CN_BIN_SUB || a->kind == CN_BIN_DIV || a->kind == CN_BIN_POW;
  if (total > MAX_OPERANDS || (two_only && total != 2))
    return cn_fail(CN_ERR_SHAPE, "%s: %s cannot take %d operands (%d inputs)", node->name,
                   kind_name(a->kind), total, node->n_inputs);
  const cn_shape *first = &g->nodes[node->inputs[0]].shape;
  int full = first->rank + 1;
  int64_t out[CN_MAX_RANK], dims[CN_MAX_RANK];
  if (full > CN_MAX_RANK)
    return cn_fail(CN_ERR_SHAPE, "%s: input rank %d too large", node->name, first->rank);
  align_right(first, full, out);
  out[0] = 1;
  for (int i = 1; i < node->n_inputs; i++) {
    const cn_shape *s = &g->nodes[node->inputs[i]].shape;
    if (s->rank != first->rank)
      return cn_fail(CN_ERR_SHAPE,
                     "%s: inputs of per-sample rank %d and %d (reshape them to one rank first)",
                     node->name, first->rank, s->rank);
    align_right(s, full, dims);
    cn_status st = broadcast_into(node, dims, out, full);
    if (st != CN_OK) return st;
  }
  if (a->const_operand != CN_CONST_NONE) {
    cn_status st = check_const_shape(node, "constant", &a->b_shape, full);
    if (st != CN_OK) return st;
    align_right(&a->b_shape, full, dims);
    if ((st = broadcast_into(node, dims, out, full)) != CN_OK) return st;
  }
  node->shape = cn_shape_make(first->rank, out + 1);
  if (a->const_operand == CN_CONST_NONE) return CN_OK;
  return cn_node_add_param(node, "B", a->b_shape);
}

/* ---- forward ------------------------------------------------------------------------------- */

/* Row-major strides of an operand of full shape `dims` read as the output `out` (0 where it
 * broadcasts). */
static void operand_strides(const int64_t *dims, const int64_t *out, int rank, int64_t *stride) {
  int64_t step = 1;
  for (int i = rank - 1; i >= 0; i--) {
    stride[i] = dims[i] == out[i] ? step : 0;
    step *= dims[i];
  }
}

/* Layout of operands x (full dims xd) and y (full dims yd) against out; merges neighbours that
 * are contiguous in both. */
static bcast make_bcast(const int64_t *out, const int64_t *xd, const int64_t *yd, int rank) {
  int64_t sx[CN_MAX_RANK], sy[CN_MAX_RANK];
  operand_strides(xd, out, rank, sx);
  operand_strides(yd, out, rank, sy);
  bcast b = {0};
  for (int i = 0; i < rank; i++) {
    if (out[i] == 1) continue;
    int r = b.rank;
    if (r > 0 && b.stride[0][r - 1] == sx[i] * out[i] && b.stride[1][r - 1] == sy[i] * out[i]) {
      b.dim[r - 1] *= out[i];
      b.stride[0][r - 1] = sx[i];
      b.stride[1][r - 1] = sy[i];
      continue;
    }
    b.dim[r] = out[i];
    b.stride[0][r] = sx[i];
    b.stride[1][r] = sy[i];
    b.rank++;
  }
  if (b.rank == 0) { /* a single element */
    b.rank = 1;
    b.dim[0] = 1;
    b.stride[0][0] = b.stride[1][0] = 1;
  }
  return b;
}

static inline float apply(int kind, float x, float y) {
  switch (kind) {
  case CN_BIN_SUB:
    return x - y;
  case CN_BIN_MUL:
    return x * y;
  case CN_BIN_DIV:
    return x / y;
  case CN_BIN_MAX:
    return x < y || isnan(y) ? y : x;
  case CN_BIN_MIN:
    return x > y || isnan(y) ? y : x;
  case CN_BIN_POW:
    return powf(x, y);
  case KIND_PRELU:
    return x < 0 ? x * y : x;
  default:
    return x + y; /* add, mean */
  }
}

/* z[i] = x[i*incx] op y[i*incy] for the inner run. */
static void inner(int kind, int64_t n, const float *x, int64_t incx, const float *y, int64_t incy,
                  float *z) {
  if (incx == 1 && incy == 1) {
    for (int64_t i = 0; i < n; i++) z[i] = apply(kind, x[i], y[i]);
  } else if (incx == 1 && incy == 0) {
    float v = y[0];
    for (int64_t i = 0; i < n; i++) z[i] = apply(kind, x[i], v);
  } else if (incx == 0 && incy == 1) {
    float v = x[0];
    for (int64_t i = 0; i < n; i++) z[i] = apply(kind, v, y[i]);
  } else {
    for (int64_t i = 0; i < n; i++) z[i] = apply(kind, x[i * incx], y[i * incy]);
  }
}

/* z = x op y over the whole output (z contiguous; it may be x when x has the output's shape). */
static void combine(int kind, const bcast *b, const float *x, const float *y, float *z,
                    int threads) {
  int last = b->rank - 1;
  int64_t n = b->dim[last], rows = 1;
  for (int i = 0; i < last; i++) rows *= b->dim[i];
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    int64_t ox = 0, oy = 0, rem = r;
    for (int i = last - 1; i >= 0; i--) {
      int64_t idx = rem % b->dim[i];
      rem /= b->dim[i];
      ox += idx * b->stride[0][i];
      oy += idx * b->stride[1][i];
    }
    inner(kind, n, x + ox, b->stride[0][last], y + oy, b->stride[1][last], z + r * n);
  }
}

/* Full dims (batch first) of a tensor of `full` rank. */
static void tensor_dims(const cn_tensor *t, int full, int64_t *dims) {
  align_right(&t->shape, full, dims);
}

static void binary_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_binary_attrs *a = node->attrs;
  int full = out->shape.rank, total = n_operands(node, a);
  const float *data[MAX_OPERANDS];
  int64_t dims[MAX_OPERANDS][CN_MAX_RANK];
  int k = 0;
  if (a->const_operand == CN_CONST_FIRST) {
    data[k] = node->params[0].data;
    align_right(&a->b_shape, full, dims[k++]);
  }
  for (int i = 0; i < node->n_inputs; i++) {
    data[k] = in[i].data;
    tensor_dims(&in[i], full, dims[k++]);
  }
  if (a->const_operand == CN_CONST_LAST) {
    data[k] = node->params[0].data;
    align_right(&a->b_shape, full, dims[k++]);
  }
  const int64_t *od = out->shape.dim;
  int kind = a->kind == CN_BIN_MEAN ? CN_BIN_ADD : (int)a->kind;
  if (total == 1) { /* Sum / Max / Mean of one input */
    memcpy(out->data, data[0], (size_t)cn_shape_numel(&out->shape) * sizeof(float));
  } else {
    bcast b = make_bcast(od, dims[0], dims[1], full);
    combine(kind, &b, data[0], data[1], out->data, ex->threads);
  }
  for (int j = 2; j < total; j++) {
    bcast b = make_bcast(od, od, dims[j], full);
    combine(kind, &b, out->data, data[j], out->data, ex->threads);
  }
  if (a->kind == CN_BIN_MEAN && total > 1) {
    int64_t n = cn_shape_numel(&out->shape);
    float inv = 1.0f / (float)total;
    for (int64_t i = 0; i < n; i++) out->data[i] *= inv;
  }
}

const cn_op cn_op_binary = {
    .type = "Binary",
    .attrs_size = sizeof(cn_binary_attrs),
    .min_inputs = 1,
    .max_inputs = 0,
    .infer = binary_infer,
    .forward = binary_forward,
};

/* ---- PRelu --------------------------------------------------------------------------------- */

static cn_status prelu_infer(cn_graph *g, cn_node *node) {
  const cn_prelu_attrs *a = node->attrs;
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  int full = x->rank + 1;
  if (full > CN_MAX_RANK)
    return cn_fail(CN_ERR_SHAPE, "%s: input rank %d too large", node->name, x->rank);
  cn_status st = check_const_shape(node, "slope", &a->slope_shape, full);
  if (st != CN_OK) return st;
  int64_t sd[CN_MAX_RANK], xd[CN_MAX_RANK];
  align_right(&a->slope_shape, full, sd);
  align_right(x, full, xd);
  for (int i = 1; i < full; i++)
    if (sd[i] != 1 && sd[i] != xd[i]) {
      char b1[96], b2[96];
      return cn_fail(CN_ERR_SHAPE, "%s: slope %s does not broadcast onto the input %s", node->name,
                     cn_shape_format(&a->slope_shape, b1, sizeof b1),
                     cn_shape_format(x, b2, sizeof b2));
    }
  node->shape = *x;
  return cn_node_add_param(node, "slope", a->slope_shape);
}

static void prelu_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_prelu_attrs *a = node->attrs;
  int full = out->shape.rank;
  int64_t sd[CN_MAX_RANK];
  align_right(&a->slope_shape, full, sd);
  bcast b = make_bcast(out->shape.dim, out->shape.dim, sd, full);
  combine(KIND_PRELU, &b, in[0].data, node->params[0].data, out->data, ex->threads);
}

const cn_op cn_op_prelu = {
    .type = "PRelu",
    .attrs_size = sizeof(cn_prelu_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = prelu_infer,
    .forward = prelu_forward,
    .inplace = 1,
};
