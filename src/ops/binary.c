/* Elementwise ops of two or more operands with numpy broadcasting (ONNX Add, Sub, Mul, Div, Max,
 * Min, Sum, Mean, Pow, the comparisons and Where), optionally with one constant operand, and PRelu
 * (a broadcast slope).
 * Operands are aligned right on full shapes (batch first); forward coalesces the dims that are
 * contiguous in every operand, then runs a strided inner loop over the last one. Backward sums each
 * operand's gradient over the dims it broadcasts along, in an order fixed by the shape. */
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
  static const char *names[] = {"Add",   "Sub",         "Mul",     "Div",
                                "Max",   "Min",         "Mean",    "Pow",
                                "Less",  "LessOrEqual", "Greater", "GreaterOrEqual",
                                "Equal", "Where",       "PRelu"};
  _Static_assert(sizeof names / sizeof *names == KIND_PRELU + 1, "a name for every kind");
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

/* The position of the constant "B" among the `total` operands, or -1. */
static int const_position(const cn_binary_attrs *a, int total) {
  switch (a->const_operand) {
  case CN_CONST_FIRST:
    return 0;
  case CN_CONST_SECOND:
    return 1;
  case CN_CONST_LAST:
    return total - 1;
  default:
    return -1;
  }
}

static int is_comparison(int kind) {
  return kind >= CN_BIN_LESS && kind <= CN_BIN_EQUAL;
}

/* How many operands the kind takes (counting B), or 0 for any number. */
static int fixed_operands(int kind) {
  if (kind == CN_BIN_WHERE) return 3;
  if (kind == CN_BIN_SUB || kind == CN_BIN_DIV || kind == CN_BIN_POW || is_comparison(kind))
    return 2;
  return 0;
}

static cn_status binary_infer(cn_graph *g, cn_node *node) {
  const cn_binary_attrs *a = node->attrs;
  if ((int)a->kind < 0 || a->kind >= CN_BIN_COUNT)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: unknown elementwise kind %d", node->name, (int)a->kind);
  if ((int)a->const_operand < CN_CONST_NONE || a->const_operand > CN_CONST_SECOND ||
      (a->const_operand == CN_CONST_SECOND && a->kind != CN_BIN_WHERE))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: bad const_operand %d", node->name,
                   (int)a->const_operand);
  int total = n_operands(node, a), fixed = fixed_operands(a->kind);
  if (total > MAX_OPERANDS || (fixed && total != fixed))
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
  case CN_BIN_LESS:
    return x < y ? 1.0f : 0.0f;
  case CN_BIN_LESS_EQUAL:
    return x <= y ? 1.0f : 0.0f;
  case CN_BIN_GREATER:
    return x > y ? 1.0f : 0.0f;
  case CN_BIN_GREATER_EQUAL:
    return x >= y ? 1.0f : 0.0f;
  case CN_BIN_EQUAL:
    return x == y ? 1.0f : 0.0f;
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
/* Values per piece of a long row: operands of the same shape merge into one row, which the
 * threads then share by pieces (elementwise, so the result does not depend on the split). */
enum { PIECE = 1 << 14 };

static void combine(int kind, const bcast *b, const float *x, const float *y, float *z,
                    int threads) {
  int last = b->rank - 1;
  int64_t n = b->dim[last], rows = 1;
  for (int i = 0; i < last; i++) rows *= b->dim[i];
  int64_t pieces = (n + PIECE - 1) / PIECE, sx = b->stride[0][last], sy = b->stride[1][last];
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > (1 << 15))
  for (int64_t w = 0; w < rows * pieces; w++) {
    int64_t r = w / pieces, start = w % pieces * PIECE, len = n - start < PIECE ? n - start : PIECE;
    int64_t ox = 0, oy = 0, rem = r;
    for (int i = last - 1; i >= 0; i--) {
      int64_t idx = rem % b->dim[i];
      rem /= b->dim[i];
      ox += idx * b->stride[0][i];
      oy += idx * b->stride[1][i];
    }
    inner(kind, len, x + ox + start * sx, sx, y + oy + start * sy, sy, z + r * n + start);
  }
}

/* Full dims (batch first) of a tensor of `full` rank. */
static void tensor_dims(const cn_tensor *t, int full, int64_t *dims) {
  align_right(&t->shape, full, dims);
}

/* The operands in order (the inputs, with the constant at its position): their data and full
 * dims against an output of full rank `full`. Returns how many. */
static int gather_operands(const cn_node *node, const cn_tensor *in, int full, const float **data,
                           int64_t (*dims)[CN_MAX_RANK]) {
  const cn_binary_attrs *a = node->attrs;
  int total = n_operands(node, a), pos = const_position(a, total);
  for (int k = 0, i = 0; k < total; k++) {
    if (k == pos) {
      data[k] = node->params[0].data;
      align_right(&a->b_shape, full, dims[k]);
    } else {
      data[k] = in[i].data;
      tensor_dims(&in[i++], full, dims[k]);
    }
  }
  return total;
}

static void select_forward(const int64_t *od, int full, int64_t (*dims)[CN_MAX_RANK],
                           const float *const *data, float *z, int threads);

static void binary_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_binary_attrs *a = node->attrs;
  int full = out->shape.rank;
  const float *data[MAX_OPERANDS];
  int64_t dims[MAX_OPERANDS][CN_MAX_RANK];
  int total = gather_operands(node, in, full, data, dims);
  const int64_t *od = out->shape.dim;
  if (a->kind == CN_BIN_WHERE) {
    select_forward(od, full, dims, data, out->data, ex->threads);
    return;
  }
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

/* ---- backward ------------------------------------------------------------------------------ */

/* Each operand's gradient is dout times its partial derivative, summed over the dims along which
 * the operand broadcasts. Partial derivatives: Add 1; Sub 1 and -1; Mean 1/count; Mul the product
 * of the other operands; Div 1/y and -x/y^2; Pow y * x^(y-1) and x^y * log(x) (0 where x <= 0, as
 * TensorFlow does); Max and Min 1 for the operand forward picked and 0 for the others: on a tie
 * the first operand holding the value, as forward keeps its running value unless a later one is
 * strictly better (or NaN); PRelu 1 (x > 0) or slope for x, 0 (x > 0) or x for the slope (at
 * x = 0 the slope, as TensorFlow's leaky relu).
 *
 * Determinism: the output's (merged) dims start with the dims the operand keeps, P positions;
 * behind them the sum runs over the rest, S positions per kept prefix. With P >= DIRECT_MIN (or no
 * broadcast at all) blocks of prefixes run in parallel, each summing its own operand elements in
 * index order. Otherwise the first broadcast dim is cut into at most GRAD_CHUNKS chunks, each
 * summing into its own double copy of the operand (scratch), and the copies are added in chunk
 * order. Both depend on the shape only, so results are bitwise the same for any thread count. */

enum { GRAD_CHUNKS = 16, GRAD_BLOCK = 4096, DIRECT_MIN = 16, GRAD_PARALLEL_MIN = 1 << 15 };

/* The operands of one node read against the output (dims merged where contiguous in all). */
typedef struct operands {
  int kind, count, rank;
  int64_t dim[CN_MAX_RANK];
  int64_t stride[MAX_OPERANDS][CN_MAX_RANK];
  int64_t size[MAX_OPERANDS];
  const float *data[MAX_OPERANDS];
  float *grad[MAX_OPERANDS]; /* where the operand's gradient goes, or NULL */
} operands;

static void operands_add(operands *o, const float *data, float *grad, const int64_t *dims,
                         int full) {
  int k = o->count++;
  o->data[k] = data;
  o->grad[k] = grad;
  o->size[k] = 1;
  for (int i = 0; i < full; i++) o->size[k] *= dims[i];
}

/* Merges the output dims (full rank `full`, dims `od`) over every operand's full dims. */
static void operands_layout(operands *o, const int64_t *od, int full,
                            int64_t (*dims)[CN_MAX_RANK]) {
  int64_t st[MAX_OPERANDS][CN_MAX_RANK];
  for (int k = 0; k < o->count; k++) operand_strides(dims[k], od, full, st[k]);
  o->rank = 0;
  for (int i = 0; i < full; i++) {
    if (od[i] == 1) continue;
    int r = o->rank, merge = r > 0;
    for (int k = 0; k < o->count && merge; k++) merge = o->stride[k][r - 1] == st[k][i] * od[i];
    if (merge) {
      o->dim[r - 1] *= od[i];
      for (int k = 0; k < o->count; k++) o->stride[k][r - 1] = st[k][i];
      continue;
    }
    o->dim[r] = od[i];
    for (int k = 0; k < o->count; k++) o->stride[k][r] = st[k][i];
    o->rank++;
  }
  if (o->rank == 0) { /* a single element */
    o->rank = 1;
    o->dim[0] = 1;
    for (int k = 0; k < o->count; k++) o->stride[k][0] = 1;
  }
}

/* Where(cond, a, b) over the whole output (of full dims od). */
static void select_forward(const int64_t *od, int full, int64_t (*dims)[CN_MAX_RANK],
                           const float *const *data, float *z, int threads) {
  operands o = {.kind = CN_BIN_WHERE};
  for (int k = 0; k < 3; k++) operands_add(&o, data[k], NULL, dims[k], full);
  operands_layout(&o, od, full, dims);
  int last = o.rank - 1;
  int64_t n = o.dim[last], rows = 1;
  for (int i = 0; i < last; i++) rows *= o.dim[i];
  const int64_t sc = o.stride[0][last], sa = o.stride[1][last], sb = o.stride[2][last];
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * n > (1 << 15))
  for (int64_t r = 0; r < rows; r++) {
    int64_t off[3] = {0, 0, 0}, rem = r;
    for (int i = last - 1; i >= 0; i--) {
      int64_t idx = rem % o.dim[i];
      rem /= o.dim[i];
      for (int k = 0; k < 3; k++) off[k] += idx * o.stride[k][i];
    }
    const float *c = data[0] + off[0], *x = data[1] + off[1], *y = data[2] + off[2];
    float *zr = z + r * n;
    for (int64_t i = 0; i < n; i++) zr[i] = c[i * sc] != 0.0f ? x[i * sa] : y[i * sb];
  }
}

/* Whether the partial derivative reads the operands' values. */
static int needs_values(int kind, int count) {
  return count > 1 && kind != CN_BIN_ADD && kind != CN_BIN_SUB && kind != CN_BIN_MEAN &&
         !is_comparison(kind);
}

/* d out / d operand j where it does not depend on the values (!needs_values). */
static float constant_partial(int kind, int j, int count) {
  if (is_comparison(kind)) return 0.0f;
  if (kind == CN_BIN_SUB) return j == 0 ? 1.0f : -1.0f;
  if (kind == CN_BIN_MEAN) return 1.0f / (float)count;
  return 1.0f; /* add, and any kind of a single operand */
}

/* d out / d operand j at one position; v: every operand's value there. */
static inline float partial(int kind, int j, int count, const float *v) {
  switch (kind) {
  case CN_BIN_MUL: {
    float p = 1.0f;
    for (int m = 0; m < count; m++)
      if (m != j) p *= v[m];
    return p;
  }
  case CN_BIN_DIV:
    return j == 0 ? 1.0f / v[1] : -(v[0] / v[1]) / v[1];
  case CN_BIN_POW:
    if (j == 0) return v[1] * powf(v[0], v[1] - 1.0f);
    return v[0] > 0 ? powf(v[0], v[1]) * logf(v[0]) : 0.0f;
  case CN_BIN_MAX:
  case CN_BIN_MIN: { /* the operand forward's fold keeps */
    int best = 0, is_max = kind == CN_BIN_MAX;
    for (int m = 1; m < count; m++)
      if ((is_max ? v[best] < v[m] : v[best] > v[m]) || isnan(v[m])) best = m;
    return j == best ? 1.0f : 0.0f;
  }
  case CN_BIN_WHERE:
    return j == 0 ? 0.0f : (v[0] != 0.0f) == (j == 1) ? 1.0f : 0.0f;
  case KIND_PRELU:
    if (j == 0) return v[0] > 0 ? 1.0f : v[1];
    return v[0] > 0 ? 0.0f : v[0];
  default:
    return constant_partial(kind, j, count);
  }
}

/* Adds dy * d out / d operand j at the output positions [a, b) (flat, in order) into the
 * operand-shaped target: tf (floats) or td (doubles). */
static void accumulate(const operands *o, int j, const float *dy, int64_t a, int64_t b, float *tf,
                       double *td) {
  int last = o->rank - 1, values = needs_values(o->kind, o->count);
  int64_t n = o->dim[last], row = a / n, col = a % n;
  int64_t off[MAX_OPERANDS];
  float v[MAX_OPERANDS];
  float fixed = constant_partial(o->kind, j, o->count);
  int lo = values ? 0 : j, hi = values ? o->count : j + 1; /* the operands whose offsets we need */
  while (a < b) {
    int64_t rem = row;
    for (int m = lo; m < hi; m++) off[m] = 0;
    for (int i = last - 1; i >= 0; i--) {
      int64_t idx = rem % o->dim[i];
      rem /= o->dim[i];
      for (int m = lo; m < hi; m++) off[m] += idx * o->stride[m][i];
    }
    int64_t end = b - a < n - col ? col + (b - a) : n;
    const float *d = dy + row * n;
    int64_t inc = o->stride[j][last];
    for (int64_t c = col; c < end; c++) {
      float g;
      if (!values) {
        g = d[c] * fixed;
      } else if (o->count == 2) { /* the common case, without the loop over operands */
        v[0] = o->data[0][off[0] + c * o->stride[0][last]];
        v[1] = o->data[1][off[1] + c * o->stride[1][last]];
        g = d[c] * partial(o->kind, j, 2, v);
      } else {
        for (int m = 0; m < o->count; m++) v[m] = o->data[m][off[m] + c * o->stride[m][last]];
        g = d[c] * partial(o->kind, j, o->count, v);
      }
      int64_t t = off[j] + c * inc;
      if (td)
        td[t] += g;
      else
        tf[t] += g;
    }
    a += end - col;
    col = 0;
    row++;
  }
}

/* Operand j's gradient, added into o->grad[j]. scratch: grad_scratch floats. */
static void operand_backward(const operands *o, int j, const float *dy, float *scratch,
                             int threads) {
  float *g = o->grad[j];
  int64_t total = 1;
  for (int i = 0; i < o->rank; i++) total *= o->dim[i];
  int axis = 0;
  int64_t prefix = 1;
  while (axis < o->rank && o->stride[j][axis] != 0) prefix *= o->dim[axis++];
  if (axis == o->rank && !needs_values(o->kind, o->count)) { /* same shape, constant factor */
    float f = constant_partial(o->kind, j, o->count);
    if (f == 1.0f)
      cn_add_into(g, dy, total, threads);
    else
      cn_add_scaled_into(g, dy, f, total, threads);
    return;
  }
  int64_t span = axis < o->rank ? o->dim[axis] : 1, inner = 1;
  for (int i = axis + 1; i < o->rank; i++) inner *= o->dim[i];
  int64_t per_prefix = span * inner; /* output positions behind one kept prefix */
  if (axis == o->rank || prefix >= DIRECT_MIN) {
    int64_t group = per_prefix >= GRAD_BLOCK ? 1 : GRAD_BLOCK / per_prefix;
    int64_t blocks = (prefix + group - 1) / group;
#pragma omp parallel for num_threads(threads) schedule(static) if (total > GRAD_PARALLEL_MIN)
    for (int64_t k = 0; k < blocks; k++) {
      int64_t p1 = (k + 1) * group < prefix ? (k + 1) * group : prefix;
      accumulate(o, j, dy, k * group * per_prefix, p1 * per_prefix, g, NULL);
    }
    return;
  }
  int64_t len = (span + GRAD_CHUNKS - 1) / GRAD_CHUNKS, chunks = (span + len - 1) / len;
  int64_t size = o->size[j];
  double *part = (double *)(void *)scratch;
#pragma omp parallel for num_threads(threads) schedule(static) if (total > GRAD_PARALLEL_MIN)
  for (int64_t c = 0; c < chunks; c++) {
    double *mine = part + c * size;
    int64_t s1 = (c + 1) * len < span ? (c + 1) * len : span;
    for (int64_t t = 0; t < size; t++) mine[t] = 0;
    for (int64_t p = 0; p < prefix; p++)
      accumulate(o, j, dy, p * per_prefix + c * len * inner, p * per_prefix + s1 * inner, NULL,
                 mine);
  }
#pragma omp parallel for num_threads(threads)                                                      \
    schedule(static) if (size * chunks > GRAD_PARALLEL_MIN)
  for (int64_t t = 0; t < size; t++) {
    double sum = 0;
    for (int64_t c = 0; c < chunks; c++) sum += part[c * size + t];
    g[t] += (float)sum;
  }
}

/* Scratch floats operand_backward needs for an operand of full dims `dims` against the output
 * `od` (full rank): none without broadcast or with a kept prefix of DIRECT_MIN or more, else the
 * chunk copies (doubles) of the operand, at most GRAD_CHUNKS and at most as many as the run of
 * broadcast dims behind the prefix holds (merging with the other operands can only shorten it). */
static size_t operand_scratch(const int64_t *od, const int64_t *dims, int full) {
  int64_t size = 1, prefix = 1, span = 1;
  int i = 0;
  for (int k = 0; k < full; k++) size *= dims[k];
  for (; i < full && (od[i] == 1 || dims[i] == od[i]); i++) prefix *= od[i];
  if (i == full || prefix >= DIRECT_MIN) return 0;
  for (; i < full && (od[i] == 1 || dims[i] != od[i]); i++) span *= od[i];
  return 2 * (size_t)(span < GRAD_CHUNKS ? span : GRAD_CHUNKS) * (size_t)size;
}

/* The most any batch up to `batch` needs (the kept prefix and the spans change with it): the
 * operands are the per-sample shapes `sample` (n of them; is_const: the batch dim is 1) against
 * the output's per-sample shape, right-aligned. */
static size_t operands_scratch(const cn_shape *out, const cn_shape *sample, const int *is_const,
                               int n, int batch) {
  int full = out->rank + 1;
  int64_t od[CN_MAX_RANK], dims[CN_MAX_RANK];
  size_t most = 0;
  for (int b = 1; b <= batch; b++) {
    od[0] = b;
    for (int i = 1; i < full; i++) od[i] = out->dim[i - 1];
    for (int k = 0; k < n; k++) {
      align_right(&sample[k], full, dims);
      if (!is_const[k]) dims[0] = b;
      size_t s = operand_scratch(od, dims, full);
      most = s > most ? s : most;
    }
  }
  return most;
}

static void run_backward(operands *o, const int64_t *od, int full, int64_t (*dims)[CN_MAX_RANK],
                         const float *dy, const cn_exec *ex) {
  if (is_comparison(o->kind)) return; /* zero almost everywhere, and zero at the steps */
  operands_layout(o, od, full, dims);
  for (int j = 0; j < o->count; j++)
    if (o->grad[j]) operand_backward(o, j, dy, ex->scratch, ex->threads);
}

static void binary_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  const cn_binary_attrs *a = node->attrs;
  int full = out->shape.rank;
  operands o;
  int64_t dims[MAX_OPERANDS][CN_MAX_RANK];
  o.kind = (int)a->kind;
  o.count = 0;
  const float *data[MAX_OPERANDS];
  int total = gather_operands(node, in, full, data, dims);
  int pos = const_position(a, total);
  for (int k = 0, i = 0; k < total; k++)
    operands_add(&o, data[k], k == pos ? dparams[0] : din[i++].data, dims[k], full);
  run_backward(&o, out->shape.dim, full, dims, dout->data, ex);
}

static size_t binary_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_binary_attrs *a = node->attrs;
  cn_shape shapes[MAX_OPERANDS];
  int is_const[MAX_OPERANDS], n = 0;
  for (int i = 0; i < node->n_inputs && n < MAX_OPERANDS; i++, n++) {
    shapes[n] = g->nodes[node->inputs[i]].shape;
    is_const[n] = 0;
  }
  if (a->const_operand != CN_CONST_NONE && n < MAX_OPERANDS) {
    shapes[n] = a->b_shape;
    is_const[n++] = 1;
  }
  return operands_scratch(&node->shape, shapes, is_const, n, batch);
}

const cn_op cn_op_binary = {
    .type = "Binary",
    .attrs_size = sizeof(cn_binary_attrs),
    .min_inputs = 1,
    .max_inputs = 0,
    .infer = binary_infer,
    .forward = binary_forward,
    .backward = binary_backward,
    .backward_scratch = binary_backward_scratch,
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

static void prelu_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                           const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                           const cn_exec *ex) {
  const cn_prelu_attrs *a = node->attrs;
  int full = out->shape.rank;
  operands o;
  int64_t dims[2][CN_MAX_RANK] = {{0}};
  o.kind = KIND_PRELU;
  o.count = 0;
  tensor_dims(&in[0], full, dims[0]);
  operands_add(&o, in[0].data, din[0].data, dims[0], full);
  align_right(&a->slope_shape, full, dims[1]);
  operands_add(&o, node->params[0].data, dparams[0], dims[1], full);
  run_backward(&o, out->shape.dim, full, dims, dout->data, ex);
}

static size_t prelu_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  const cn_prelu_attrs *a = node->attrs;
  (void)g;
  return operands_scratch(&node->shape, &a->slope_shape, (int[]){1}, 1, batch);
}

const cn_op cn_op_prelu = {
    .type = "PRelu",
    .attrs_size = sizeof(cn_prelu_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = prelu_infer,
    .forward = prelu_forward,
    .inplace = 1,
    .backward = prelu_backward,
    .backward_scratch = prelu_backward_scratch,
};
