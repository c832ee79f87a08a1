/* Constant folding at import: the Constant/ConstantOfShape nodes and the shape arithmetic that
 * exporters emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Cast, Slice, Add/Mul ...)
 * become constants, so the engine graph holds only real computation. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/internal.h"

typedef cn_status (*fold_fn)(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out);

/* Input k as a constant, or NULL when absent. */
static const cn_onnx_const *in_const(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  if (k >= n->n_input || !*n->input[k]) return NULL;
  cn_onnx_value *v = cn_onnx_find(x, n->input[k]);
  return v && v->kind == CN_ONNX_CONST ? &v->c : NULL;
}

static cn_status need(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, const cn_onnx_const **c) {
  *c = in_const(x, n, k);
  if (!*c)
    return cn_fail(CN_ERR_FORMAT, "%s: node %s (%s): input %zu is missing", x->file,
                   cn_onnx_label(n), n->op_type, k);
  return CN_OK;
}

static cn_status copy_const(const cn_onnx_const *src, cn_onnx_const *out, const char *what) {
  cn_status st = cn_onnx_const_alloc(out, src->rank, src->dims, src->is_int, what);
  if (st != CN_OK) return st;
  if (src->is_int)
    memcpy(out->i, src->i, (size_t)src->numel * sizeof *out->i);
  else
    memcpy(out->f, src->f, (size_t)src->numel * sizeof *out->f);
  return CN_OK;
}

static void put(cn_onnx_const *c, int64_t k, double v) {
  if (c->is_int)
    c->i[k] = (int64_t)v;
  else
    c->f[k] = (float)v;
}

cn_status cn_onnx_budget(cn_onnx_ctx *x, int64_t numel, const char *what) {
  if (numel < 0 || numel > CN_ONNX_MAX_CONST_ELEMENTS - x->const_elements)
    return cn_fail(CN_ERR_LIMIT, "%s: %s: constants exceed %" PRId64 " elements in total", x->file,
                   what, CN_ONNX_MAX_CONST_ELEMENTS);
  x->const_elements += numel;
  return CN_OK;
}

/* Product of dims, or -1 past the per-tensor limit. */
static int64_t checked_numel(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int k = 0; k < rank; k++) {
    if (dims[k] < 0 || dims[k] > CN_ONNX_MAX_ELEMENTS) return -1;
    n *= dims[k];
    if (n > CN_ONNX_MAX_ELEMENTS) return -1;
  }
  return n;
}

/* ---- the folds ------------------------------------------------------------------------------ */

static cn_status fold_constant(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const Onnx__AttributeProto *a;
  if ((a = cn_onnx_attr(n, "value")) && a->t)
    return cn_onnx_const_read(a->t, cn_onnx_label(n), out);
  cn_status st;
  if ((a = cn_onnx_attr(n, "value_float")) || (a = cn_onnx_attr(n, "value_int"))) {
    int is_int = strcmp(a->name, "value_int") == 0;
    st = cn_onnx_const_alloc(out, 0, NULL, is_int, cn_onnx_label(n));
    if (st == CN_OK) put(out, 0, is_int ? (double)a->i : (double)a->f);
    return st;
  }
  if ((a = cn_onnx_attr(n, "value_floats")) || (a = cn_onnx_attr(n, "value_ints"))) {
    int is_int = strcmp(a->name, "value_ints") == 0;
    int64_t len = is_int ? (int64_t)a->n_ints : (int64_t)a->n_floats;
    st = cn_onnx_const_alloc(out, 1, &len, is_int, cn_onnx_label(n));
    for (int64_t k = 0; st == CN_OK && k < len; k++)
      put(out, k, is_int ? (double)a->ints[k] : (double)a->floats[k]);
    return st;
  }
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: Constant %s: no supported value attribute", x->file,
                 cn_onnx_label(n));
}

static cn_status fold_constant_of_shape(cn_onnx_ctx *x, const Onnx__NodeProto *n,
                                        cn_onnx_const *out) {
  const cn_onnx_const *shape;
  cn_status st = need(x, n, 0, &shape);
  if (st != CN_OK) return st;
  if (!shape->is_int || shape->rank != 1 || shape->numel > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: bad shape input", x->file, cn_onnx_label(n));
  int64_t numel = checked_numel((int)shape->numel, shape->i);
  if (numel >= 0 && (st = cn_onnx_budget(x, numel, cn_onnx_label(n))) != CN_OK) return st;
  cn_onnx_const value = {0};
  const Onnx__AttributeProto *a = cn_onnx_attr(n, "value");
  if (a && a->t) {
    st = cn_onnx_const_read(a->t, cn_onnx_label(n), &value);
    if (st == CN_OK && value.numel != 1)
      st = cn_fail(CN_ERR_FORMAT, "%s: %s: value must hold one element", x->file, cn_onnx_label(n));
  }
  if (st == CN_OK)
    st = cn_onnx_const_alloc(out, (int)shape->numel, shape->i, a && a->t ? value.is_int : 0,
                             cn_onnx_label(n));
  double v = st == CN_OK && a && a->t ? cn_onnx_const_get(&value, 0) : 0.0;
  if (st == CN_OK && v != 0) { /* the buffer starts zeroed */
    if (out->is_int)
      for (int64_t k = 0; k < out->numel; k++) out->i[k] = (int64_t)v;
    else
      for (int64_t k = 0; k < out->numel; k++) out->f[k] = (float)v;
  }
  cn_onnx_const_free(&value);
  return st;
}

static cn_status fold_shape(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  cn_onnx_value *v = cn_onnx_find(x, n->input[0]);
  int rank = v->kind == CN_ONNX_CONST ? v->c.rank : v->rank - x->whole;
  const int64_t *dims = v->kind == CN_ONNX_CONST ? v->c.dims : v->dims + x->whole;
  int64_t start = cn_onnx_attr_int(n, "start", 0), end = cn_onnx_attr_int(n, "end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = start < 0 ? 0 : start > rank ? rank : start;
  end = end < start ? start : end > rank ? rank : end;
  int64_t len = end - start;
  cn_status st = cn_onnx_const_alloc(out, 1, &len, 1, cn_onnx_label(n));
  for (int64_t k = 0; st == CN_OK && k < len; k++) out->i[k] = dims[start + k];
  return st;
}

static int64_t count_between(const int64_t *dims, int from, int to) {
  int64_t p = 1;
  for (int k = from; k < to; k++) p *= dims[k];
  return p;
}

static cn_status fold_gather(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data, *idx;
  cn_status st = need(x, n, 0, &data);
  if (st == CN_OK) st = need(x, n, 1, &idx);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_attr_int(n, "axis", 0);
  if (axis < 0) axis += data->rank;
  if (axis < 0 || axis >= data->rank || !idx->is_int ||
      data->rank + idx->rank - 1 > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_FORMAT, "%s: Gather %s: bad axis or indices", x->file, cn_onnx_label(n));
  int64_t dims[CN_ONNX_MAX_RANK];
  int r = 0;
  for (int k = 0; k < axis; k++) dims[r++] = data->dims[k];
  for (int k = 0; k < idx->rank; k++) dims[r++] = idx->dims[k];
  for (int k = (int)axis + 1; k < data->rank; k++) dims[r++] = data->dims[k];
  int64_t numel = checked_numel(r, dims);
  if (numel >= 0 && (st = cn_onnx_budget(x, numel, cn_onnx_label(n))) != CN_OK) return st;
  st = cn_onnx_const_alloc(out, r, dims, data->is_int, cn_onnx_label(n));
  if (st != CN_OK) return st;
  int64_t outer = count_between(data->dims, 0, (int)axis), len = data->dims[axis];
  int64_t inner = count_between(data->dims, (int)axis + 1, data->rank), at = 0;
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < idx->numel; j++) {
      int64_t i = idx->i[j] < 0 ? idx->i[j] + len : idx->i[j];
      if (i < 0 || i >= len)
        return cn_fail(CN_ERR_FORMAT, "%s: Gather %s: index %" PRId64 " out of range", x->file,
                       cn_onnx_label(n), idx->i[j]);
      for (int64_t k = 0; k < inner; k++)
        put(out, at++, cn_onnx_const_get(data, (o * len + i) * inner + k));
    }
  return CN_OK;
}

/* The axes of (Un)Squeeze: the attribute (opset < 13) or input 1. */
static cn_status axes_of(cn_onnx_ctx *x, const Onnx__NodeProto *n, int64_t *axes, int *count) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, "axes");
  const cn_onnx_const *c = in_const(x, n, 1);
  *count = 0;
  size_t len = a ? a->n_ints : c ? (size_t)c->numel : 0;
  if (len > CN_ONNX_MAX_RANK || (c && !c->is_int))
    return cn_fail(CN_ERR_FORMAT, "%s: %s: bad axes", x->file, cn_onnx_label(n));
  for (size_t k = 0; k < len; k++) axes[k] = a ? a->ints[k] : c->i[k];
  *count = (int)len;
  return CN_OK;
}

static cn_status fold_unsqueeze(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  int64_t axes[CN_ONNX_MAX_RANK];
  int na;
  cn_status st = need(x, n, 0, &data);
  if (st == CN_OK) st = axes_of(x, n, axes, &na);
  if (st != CN_OK) return st;
  int rank = data->rank + na;
  if (rank > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: rank too high", cn_onnx_label(n));
  int is_new[CN_ONNX_MAX_RANK] = {0};
  for (int k = 0; k < na; k++) {
    int64_t ax = axes[k] < 0 ? axes[k] + rank : axes[k];
    if (ax < 0 || ax >= rank || is_new[ax]++)
      return cn_fail(CN_ERR_FORMAT, "%s: Unsqueeze %s: bad axis", x->file, cn_onnx_label(n));
  }
  int64_t dims[CN_ONNX_MAX_RANK];
  for (int k = 0, from = 0; k < rank; k++) dims[k] = is_new[k] ? 1 : data->dims[from++];
  st = copy_const(data, out, cn_onnx_label(n));
  if (st == CN_OK) {
    out->rank = rank;
    memcpy(out->dims, dims, sizeof dims);
  }
  return st;
}

static cn_status fold_squeeze(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  int64_t axes[CN_ONNX_MAX_RANK];
  int na;
  cn_status st = need(x, n, 0, &data);
  if (st == CN_OK) st = axes_of(x, n, axes, &na);
  if (st != CN_OK) return st;
  int drop[CN_ONNX_MAX_RANK] = {0};
  for (int k = 0; k < data->rank; k++) drop[k] = na == 0 && data->dims[k] == 1;
  for (int k = 0; k < na; k++) {
    int64_t ax = axes[k] < 0 ? axes[k] + data->rank : axes[k];
    if (ax < 0 || ax >= data->rank || data->dims[ax] != 1)
      return cn_fail(CN_ERR_FORMAT, "%s: Squeeze %s: bad axis", x->file, cn_onnx_label(n));
    drop[ax] = 1;
  }
  st = copy_const(data, out, cn_onnx_label(n));
  if (st != CN_OK) return st;
  out->rank = 0;
  for (int k = 0; k < data->rank; k++)
    if (!drop[k]) out->dims[out->rank++] = data->dims[k];
  return CN_OK;
}

static cn_status fold_concat(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *first;
  cn_status st = need(x, n, 0, &first);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_attr_int(n, "axis", 0);
  if (axis < 0) axis += first->rank;
  if (axis < 0 || axis >= first->rank)
    return cn_fail(CN_ERR_FORMAT, "%s: Concat %s: bad axis", x->file, cn_onnx_label(n));
  int64_t dims[CN_ONNX_MAX_RANK];
  memcpy(dims, first->dims, sizeof dims);
  dims[axis] = 0;
  int is_int = 1;
  for (size_t k = 0; k < n->n_input; k++) {
    const cn_onnx_const *c;
    if ((st = need(x, n, k, &c)) != CN_OK) return st;
    for (int d = 0; d < first->rank; d++)
      if (c->rank != first->rank || (d != axis && c->dims[d] != first->dims[d]))
        return cn_fail(CN_ERR_SHAPE, "%s: Concat %s: shapes differ", x->file, cn_onnx_label(n));
    dims[axis] += c->dims[axis];
    is_int &= c->is_int;
  }
  st = cn_onnx_const_alloc(out, first->rank, dims, is_int, cn_onnx_label(n));
  int64_t outer = count_between(dims, 0, (int)axis), at = 0;
  int64_t inner = count_between(dims, (int)axis + 1, first->rank);
  for (int64_t o = 0; st == CN_OK && o < outer; o++)
    for (size_t k = 0; k < n->n_input; k++) {
      const cn_onnx_const *c = in_const(x, n, k);
      int64_t len = c->dims[axis] * inner;
      for (int64_t j = 0; j < len; j++) put(out, at++, cn_onnx_const_get(c, o * len + j));
    }
  return st;
}

/* Cast's values: to an integer type truncated (bool: 0 or 1), to a float type as they are. */
static cn_status cast_const(const cn_onnx_const *data, int64_t to, const char *what,
                            cn_onnx_const *out) {
  int is_int = !(to == DT_FLOAT || to == DT_DOUBLE || to == DT_FLOAT16);
  cn_status st = cn_onnx_const_alloc(out, data->rank, data->dims, is_int, what);
  for (int64_t k = 0; st == CN_OK && k < data->numel; k++) {
    double v = cn_onnx_const_get(data, k);
    if (is_int && !(fabs(v) < 9e18)) v = 0; /* NaN or out of range: undefined in ONNX */
    put(out, k, to == DT_BOOL ? (double)(v != 0) : v);
  }
  return st;
}

static cn_status fold_cast(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  cn_status st = need(x, n, 0, &data);
  if (st != CN_OK) return st;
  return cast_const(data, cn_onnx_attr_int(n, "to", 1), cn_onnx_label(n), out);
}

/* Declared element type of a TensorProto / ValueInfoProto list entry called name, or 0. */
static int32_t listed_type(Onnx__ValueInfoProto *const *infos, size_t n, const char *name) {
  for (size_t k = 0; k < n; k++)
    if (infos[k]->name && strcmp(infos[k]->name, name) == 0 && infos[k]->type &&
        infos[k]->type->tensor_type)
      return infos[k]->type->tensor_type->elem_type;
  return 0;
}

/* Whether tensor name is the output of a comparison (a bool). */
static int from_comparison(const Onnx__GraphProto *g, const char *name) {
  static const char *const ops[] = {"Less",  "LessOrEqual", "Greater", "GreaterOrEqual",
                                    "Equal", "Not",         "And",     "Or",
                                    "Xor",   "IsNaN",       "IsInf"};
  for (size_t k = 0; k < g->n_node; k++)
    for (size_t o = 0; o < g->node[k]->n_output; o++)
      if (strcmp(g->node[k]->output[o], name) == 0)
        for (size_t j = 0; j < sizeof ops / sizeof *ops; j++)
          if (strcmp(g->node[k]->op_type, ops[j]) == 0) return 1;
  return 0;
}

int32_t cn_onnx_elem_type(cn_onnx_ctx *x, const char *name) {
  const Onnx__GraphProto *g = x->graph;
  int32_t t = listed_type(g->input, g->n_input, name);
  if (!t) t = listed_type(g->value_info, g->n_value_info, name);
  if (!t) t = listed_type(g->output, g->n_output, name);
  for (size_t k = 0; !t && k < g->n_initializer; k++)
    if (strcmp(g->initializer[k]->name, name) == 0) t = g->initializer[k]->data_type;
  if (t) return t;
  cn_onnx_value *v = cn_onnx_find(x, name);
  if (v && v->kind == CN_ONNX_CONST && v->c.is_int) return DT_INT64;
  return from_comparison(g, name) ? DT_BOOL : DT_FLOAT;
}

/* CastLike(constant, target): Cast to the target's element type (the target may be computed). */
static cn_status fold_cast_like(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  cn_status st = need(x, n, 0, &data);
  if (st != CN_OK) return st;
  if (n->n_input < 2 || !*n->input[1])
    return cn_fail(CN_ERR_FORMAT, "%s: node %s (CastLike): input 1 is missing", x->file,
                   cn_onnx_label(n));
  return cast_const(data, cn_onnx_elem_type(x, n->input[1]), cn_onnx_label(n), out);
}

static cn_status fold_identity(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  cn_status st = need(x, n, 0, &data);
  return st == CN_OK ? copy_const(data, out, cn_onnx_label(n)) : st;
}

/* ONNX Reshape's target: 0 copies the input dim (unless allowzero), one -1 is inferred. */
cn_status cn_onnx_reshape_dims(const char *what, int in_rank, const int64_t *in_dims,
                               const cn_onnx_const *shape, int allowzero, int *rank,
                               int64_t *dims) {
  if (!shape->is_int || shape->rank != 1 || shape->numel > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_FORMAT, "%s: bad target shape", what);
  int64_t total = count_between(in_dims, 0, in_rank), known = 1;
  int unknown = -1;
  *rank = (int)shape->numel;
  for (int k = 0; k < *rank; k++) {
    int64_t d = shape->i[k];
    if (d == 0 && !allowzero) d = k < in_rank ? in_dims[k] : -2;
    if (d == -1 && unknown < 0) {
      unknown = k;
    } else if (d < 0 || d > CN_ONNX_MAX_ELEMENTS) {
      return cn_fail(CN_ERR_FORMAT, "%s: bad target shape", what);
    } else {
      known *= d;
      if (known > CN_ONNX_MAX_ELEMENTS) return cn_fail(CN_ERR_LIMIT, "%s: target too large", what);
    }
    dims[k] = d;
  }
  if (unknown >= 0) dims[unknown] = known ? total / known : 0;
  if (count_between(dims, 0, *rank) != total)
    return cn_fail(CN_ERR_SHAPE, "%s: cannot reshape %" PRId64 " elements to that shape", what,
                   total);
  return CN_OK;
}

static cn_status fold_reshape(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data, *shape;
  cn_status st = need(x, n, 0, &data);
  if (st == CN_OK) st = need(x, n, 1, &shape);
  int rank = 0;
  int64_t dims[CN_ONNX_MAX_RANK];
  if (st == CN_OK)
    st = cn_onnx_reshape_dims(cn_onnx_label(n), data->rank, data->dims, shape,
                              (int)cn_onnx_attr_int(n, "allowzero", 0), &rank, dims);
  if (st == CN_OK) st = copy_const(data, out, cn_onnx_label(n));
  if (st == CN_OK) {
    out->rank = rank;
    memcpy(out->dims, dims, sizeof dims);
  }
  return st;
}

static cn_status fold_flatten(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  cn_status st = need(x, n, 0, &data);
  if (st != CN_OK) return st;
  int64_t axis = cn_onnx_attr_int(n, "axis", 1);
  if (axis < 0) axis += data->rank;
  if (axis < 0 || axis > data->rank)
    return cn_fail(CN_ERR_FORMAT, "%s: Flatten %s: bad axis", x->file, cn_onnx_label(n));
  st = copy_const(data, out, cn_onnx_label(n));
  if (st == CN_OK) {
    int64_t a = count_between(data->dims, 0, (int)axis);
    int64_t b = count_between(data->dims, (int)axis, data->rank);
    out->rank = 2;
    out->dims[0] = a;
    out->dims[1] = b;
  }
  return st;
}

static cn_status fold_transpose(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *data;
  cn_status st = need(x, n, 0, &data);
  if (st != CN_OK) return st;
  const Onnx__AttributeProto *a = cn_onnx_attr(n, "perm");
  int r = data->rank, perm[CN_ONNX_MAX_RANK], seen[CN_ONNX_MAX_RANK] = {0};
  for (int k = 0; k < r; k++) {
    perm[k] = a ? (k < (int)a->n_ints ? (int)a->ints[k] : -1) : r - 1 - k;
    if (perm[k] < 0 || perm[k] >= r || seen[perm[k]]++ || (a && (int)a->n_ints != r))
      return cn_fail(CN_ERR_FORMAT, "%s: Transpose %s: bad perm", x->file, cn_onnx_label(n));
  }
  int64_t dims[CN_ONNX_MAX_RANK], stride[CN_ONNX_MAX_RANK], idx[CN_ONNX_MAX_RANK] = {0};
  for (int k = 0; k < r; k++) dims[k] = data->dims[perm[k]];
  int64_t s = 1;
  for (int k = r - 1; k >= 0; k--) {
    stride[k] = s;
    s *= data->dims[k];
  }
  st = cn_onnx_const_alloc(out, r, dims, data->is_int, cn_onnx_label(n));
  for (int64_t o = 0; st == CN_OK && o < out->numel; o++) {
    int64_t src = 0;
    for (int k = 0; k < r; k++) src += idx[k] * stride[perm[k]];
    put(out, o, cn_onnx_const_get(data, src));
    for (int k = r - 1; k >= 0; k--) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
  return st;
}

/* Numpy broadcasting of a and b into out dims. */
static cn_status broadcast_dims(const cn_onnx_const *a, const cn_onnx_const *b, int *rank,
                                int64_t *dims, const char *what) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int k = 0; k < r; k++) {
    int64_t da = k - (r - a->rank) >= 0 ? a->dims[k - (r - a->rank)] : 1;
    int64_t db = k - (r - b->rank) >= 0 ? b->dims[k - (r - b->rank)] : 1;
    if (da != db && da != 1 && db != 1)
      return cn_fail(CN_ERR_SHAPE, "%s: shapes do not broadcast", what);
    dims[k] = da == 1 ? db : da;
  }
  *rank = r;
  return CN_OK;
}

/* Index into c of the out element whose multi-index is idx (out rank r). */
static int64_t broadcast_index(const cn_onnx_const *c, int r, const int64_t *idx) {
  int64_t at = 0;
  for (int k = 0; k < c->rank; k++) {
    int64_t i = c->dims[k] == 1 ? 0 : idx[k + r - c->rank];
    at = at * c->dims[k] + i;
  }
  return at;
}

static double arith(const char *op, double a, double b, int is_int) {
  if (strcmp(op, "Add") == 0) return a + b;
  if (strcmp(op, "Sub") == 0) return a - b;
  if (strcmp(op, "Mul") == 0) return a * b;
  if (is_int) return b != 0 ? trunc(a / b) : 0;
  return a / b;
}

static cn_status fold_arith(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *a, *b;
  cn_status st = need(x, n, 0, &a);
  if (st == CN_OK) st = need(x, n, 1, &b);
  int rank = 0;
  int64_t dims[CN_ONNX_MAX_RANK], idx[CN_ONNX_MAX_RANK] = {0};
  if (st == CN_OK) st = broadcast_dims(a, b, &rank, dims, cn_onnx_label(n));
  int is_int = st == CN_OK && a->is_int && b->is_int;
  int64_t numel = st == CN_OK ? checked_numel(rank, dims) : 0;
  if (st == CN_OK && numel >= 0) st = cn_onnx_budget(x, numel, cn_onnx_label(n));
  if (st == CN_OK) st = cn_onnx_const_alloc(out, rank, dims, is_int, cn_onnx_label(n));
  for (int64_t o = 0; st == CN_OK && o < out->numel; o++) {
    double va = cn_onnx_const_get(a, broadcast_index(a, rank, idx));
    double vb = cn_onnx_const_get(b, broadcast_index(b, rank, idx));
    put(out, o, is_int ? arith(n->op_type, va, vb, 1) : (float)arith(n->op_type, va, vb, 0));
    for (int k = rank - 1; k >= 0; k--) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
  return st;
}

/* Slice with constant starts/ends/axes/steps (opset 10+) or attributes (opset < 10). */
static cn_status slice_params(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_const *d,
                              int64_t *start, int64_t *step, int64_t *dims) {
  const cn_onnx_const *s = in_const(x, n, 1), *e = in_const(x, n, 2), *ax = in_const(x, n, 3),
                      *sp = in_const(x, n, 4);
  const Onnx__AttributeProto *as = cn_onnx_attr(n, "starts"), *ae = cn_onnx_attr(n, "ends"),
                             *aa = cn_onnx_attr(n, "axes");
  size_t len = s ? (size_t)s->numel : as ? as->n_ints : 0;
  size_t elen = e ? (size_t)e->numel : ae ? ae->n_ints : 0;
  if (len != elen || len > (size_t)d->rank || (s && !s->is_int) || (e && !e->is_int))
    return cn_fail(CN_ERR_FORMAT, "%s: Slice %s: bad starts/ends", x->file, cn_onnx_label(n));
  for (int k = 0; k < d->rank; k++) {
    start[k] = 0;
    step[k] = 1;
    dims[k] = d->dims[k];
  }
  for (size_t j = 0; j < len; j++) {
    int64_t axis = ax   ? (j < (size_t)ax->numel && ax->is_int ? ax->i[j] : -99)
                   : aa ? (j < aa->n_ints ? aa->ints[j] : -99)
                        : (int64_t)j;
    if (axis < 0) axis += d->rank;
    int64_t st = sp ? (j < (size_t)sp->numel && sp->is_int ? sp->i[j] : 0) : 1;
    if (axis < 0 || axis >= d->rank || st == 0)
      return cn_fail(CN_ERR_FORMAT, "%s: Slice %s: bad axes or steps", x->file, cn_onnx_label(n));
    int64_t dim = d->dims[axis], b = s ? s->i[j] : as->ints[j], en = e ? e->i[j] : ae->ints[j];
    if (b < 0) b += dim;
    if (en < 0) en += dim;
    if (st > 0) {
      b = b < 0 ? 0 : b > dim ? dim : b;
      en = en < 0 ? 0 : en > dim ? dim : en;
      dims[axis] = en > b ? (en - b + st - 1) / st : 0;
    } else {
      b = b < 0 ? -1 : b > dim - 1 ? dim - 1 : b;
      en = en < -1 ? -1 : en > dim - 1 ? dim - 1 : en;
      dims[axis] = b > en ? (b - en - st - 1) / -st : 0;
    }
    start[axis] = b;
    step[axis] = st;
  }
  return CN_OK;
}

static cn_status fold_slice(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_const *out) {
  const cn_onnx_const *d;
  int64_t start[CN_ONNX_MAX_RANK], step[CN_ONNX_MAX_RANK], dims[CN_ONNX_MAX_RANK];
  int64_t idx[CN_ONNX_MAX_RANK] = {0};
  cn_status st = need(x, n, 0, &d);
  if (st == CN_OK) st = slice_params(x, n, d, start, step, dims);
  if (st == CN_OK) st = cn_onnx_const_alloc(out, d->rank, dims, d->is_int, cn_onnx_label(n));
  for (int64_t o = 0; st == CN_OK && o < out->numel; o++) {
    int64_t src = 0;
    for (int k = 0; k < d->rank; k++) src = src * d->dims[k] + start[k] + idx[k] * step[k];
    put(out, o, cn_onnx_const_get(d, src));
    for (int k = d->rank - 1; k >= 0; k--) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
  return st;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static const struct {
  const char *op;
  fold_fn fn;
} folds[] = {
    {"Constant", fold_constant},   {"ConstantOfShape", fold_constant_of_shape},
    {"Shape", fold_shape},         {"Gather", fold_gather},
    {"Unsqueeze", fold_unsqueeze}, {"Squeeze", fold_squeeze},
    {"Concat", fold_concat},       {"Cast", fold_cast},
    {"Reshape", fold_reshape},     {"Identity", fold_identity},
    {"Dropout", fold_identity},    {"Flatten", fold_flatten},
    {"Transpose", fold_transpose}, {"Add", fold_arith},
    {"Sub", fold_arith},           {"Mul", fold_arith},
    {"Div", fold_arith},           {"Slice", fold_slice},
    {"CastLike", fold_cast_like},
};

static fold_fn find_fold(const char *op) {
  for (size_t k = 0; k < sizeof folds / sizeof *folds; k++)
    if (strcmp(folds[k].op, op) == 0) return folds[k].fn;
  return NULL;
}

int cn_onnx_is_foldable(const Onnx__NodeProto *n, cn_onnx_ctx *x) {
  if (!find_fold(n->op_type)) return 0;
  if (strcmp(n->op_type, "Shape") == 0) {
    cn_onnx_value *v = n->n_input ? cn_onnx_find(x, n->input[0]) : NULL;
    return v && v->kind != CN_ONNX_NONE;
  }
  size_t needed = strcmp(n->op_type, "CastLike") == 0 ? 1 : n->n_input; /* the target's type only */
  for (size_t k = 0; k < needed && k < n->n_input; k++) {
    if (!*n->input[k]) continue;
    cn_onnx_value *v = cn_onnx_find(x, n->input[k]);
    if (!v || v->kind != CN_ONNX_CONST) return 0;
  }
  return 1;
}

cn_status cn_onnx_fold(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (n->n_output < 1 || !*n->output[0])
    return cn_fail(CN_ERR_FORMAT, "%s: node %s has no output", x->file, cn_onnx_label(n));
  cn_onnx_value *v = cn_onnx_find(x, n->output[0]);
  cn_status st = find_fold(n->op_type)(x, n, &v->c);
  if (st != CN_OK) return cn_fail_context(st, "%s: %s %s", x->file, n->op_type, cn_onnx_label(n));
  v->kind = CN_ONNX_CONST;
  return CN_OK;
}
