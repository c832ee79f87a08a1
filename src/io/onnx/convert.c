/* ONNX operators to engine nodes. Activations keep ONNX's batch-first dims; 4-D ones live in the
 * engine as NHWC once a convolution or pooling has touched them, and are transposed back to ONNX
 * order only where an operator depends on the order (Reshape, Transpose, Flatten not feeding a
 * Gemm). Every operator or attribute value that has no exact engine equivalent is refused by
 * name. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_onnx.h"

/* ---- attributes ---------------------------------------------------------------------------- */

const Onnx__AttributeProto *cn_onnx_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t k = 0; k < n->n_attribute; k++)
    if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0) return n->attribute[k];
  return NULL;
}

int64_t cn_onnx_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  return a ? a->i : dflt;
}

float cn_onnx_attr_float(const Onnx__NodeProto *n, const char *name, float dflt) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  return a ? a->f : dflt;
}

const char *cn_onnx_attr_string(const Onnx__NodeProto *n, const char *name, const char *dflt,
                                char *buf, size_t cap) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  if (!a || !a->has_s) return dflt;
  size_t len = a->s.len < cap - 1 ? a->s.len : cap - 1;
  memcpy(buf, a->s.data, len);
  buf[len] = 0;
  return buf;
}

/* ints attribute into out (at most cap values); returns the count, or -1 when absent/too long. */
int cn_onnx_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int cap) {
  const Onnx__AttributeProto *a = cn_onnx_attr(n, name);
  if (!a || a->n_ints > (size_t)cap) return -1;
  for (size_t k = 0; k < a->n_ints; k++) out[k] = a->ints[k];
  return (int)a->n_ints;
}

/* ---- values -------------------------------------------------------------------------------- */

const char *cn_onnx_label(const Onnx__NodeProto *n) {
  if (n->name && *n->name) return n->name;
  return n->n_output ? n->output[0] : "?";
}

const char *cn_onnx_out_name(const Onnx__NodeProto *n) {
  return n->n_output && *n->output[0] ? n->output[0] : cn_onnx_label(n);
}

/* The ONNX rank of an activation. */
int cn_onnx_rank(const cn_onnx_ctx *x, const cn_onnx_value *v) {
  return v->rank - x->whole;
}

/* ONNX axis `axis` (negative from the end) of activation v as an index into v->dims, or -1 when
 * out of range. */
int cn_onnx_dims_axis(const cn_onnx_ctx *x, const cn_onnx_value *v, int64_t axis) {
  int r = cn_onnx_rank(x, v);
  if (axis < 0) axis += r;
  return axis < 0 || axis >= r ? -1 : (int)axis + x->whole;
}

cn_onnx_value *cn_onnx_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  if (k >= n->n_input || !*n->input[k]) return NULL;
  return cn_onnx_find(x, n->input[k]);
}

const cn_onnx_const *cn_onnx_const_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k) {
  cn_onnx_value *v = cn_onnx_input(x, n, k);
  return v && v->kind == CN_ONNX_CONST ? &v->c : NULL;
}

/* Input k must be an activation (a computed tensor). */
cn_status cn_onnx_act_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, cn_onnx_value **v) {
  *v = cn_onnx_input(x, n, k);
  if (!*v) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "input %zu is missing", k);
  if ((*v)->kind == CN_ONNX_NONE)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED,
                        "input '%s' is an output convnet does not compute", (*v)->name);
  if ((*v)->kind != CN_ONNX_ACT)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "input '%s' must be computed, not a constant",
                        (*v)->name);
  return CN_OK;
}

/* Input k must be a float constant (a weight). */
cn_status cn_onnx_weight_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                               const cn_onnx_const **c) {
  cn_onnx_value *v = cn_onnx_input(x, n, k);
  if (!v || v->kind != CN_ONNX_CONST)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "input %zu must be a constant (initializer)", k);
  cn_status st = cn_onnx_const_to_float(&v->c, v->name);
  *c = &v->c;
  return st;
}

/* Records the output value of node n (output k) as engine node `node` stored in `layout`; the
 * ONNX dims follow from the engine shape. */
cn_status cn_onnx_set_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, int node,
                             cn_onnx_layout layout) {
  if (k >= n->n_output || !*n->output[k]) return CN_OK;
  cn_onnx_value *v = cn_onnx_find(x, n->output[k]);
  const cn_shape *s = &x->g->nodes[node].shape;
  v->kind = CN_ONNX_ACT;
  v->node = node;
  v->layout = layout;
  v->rank = s->rank + 1;
  v->dims[0] = x->batch;
  if (layout == CN_ONNX_NHWC) {
    v->dims[1] = s->dim[2];
    v->dims[2] = s->dim[0];
    v->dims[3] = s->dim[1];
  } else {
    for (int d = 0; d < s->rank; d++) v->dims[d + 1] = s->dim[d];
  }
  if (layout == CN_ONNX_PLAIN) v->plain_node = node;
  if (layout == CN_ONNX_NHWC) v->nhwc_node = node;
  return CN_OK;
}

/* An output that is the input, unchanged (Identity, Dropout, elementwise ops keep layouts). */
void cn_onnx_alias_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                          const cn_onnx_value *src, int node) {
  if (k >= n->n_output || !*n->output[k]) return;
  cn_onnx_value *v = cn_onnx_find(x, n->output[k]);
  const char *name = v->name;
  *v = *src;
  v->name = name;
  memset(&v->c, 0, sizeof v->c);
  if (node != src->node) {
    v->node = node;
    v->plain_node = src->layout == CN_ONNX_PLAIN ? node : -1;
    v->nhwc_node = src->layout == CN_ONNX_NHWC ? node : -1;
  }
}

cn_status cn_onnx_add_transpose(cn_onnx_ctx *x, int src, const char *suffix, int rank,
                                const int *perm, int *node) {
  cn_transpose_attrs a = {.rank = rank};
  memcpy(a.perm, perm, (size_t)rank * sizeof *perm);
  return cn_onnx_add_node(x, &cn_op_transpose, x->g->nodes[src].name, suffix, &src, 1, &a, node);
}

cn_status cn_onnx_plain(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->plain_node >= 0) {
    *node = v->plain_node;
    return CN_OK;
  }
  cn_status st = CN_OK;
  if (v->layout == CN_ONNX_NHWC) {
    st = cn_onnx_add_transpose(x, v->node, "/nchw", 3, (int[]){2, 0, 1}, node);
  } else if (v->layout == CN_ONNX_FLAT) {
    int chw;
    st = cn_onnx_add_transpose(x, v->flat_src, "/nchw", 3, (int[]){2, 0, 1}, &chw);
    if (st == CN_OK)
      st = cn_onnx_add_node(x, &cn_op_flatten, x->g->nodes[v->node].name, "/nchw", &chw, 1, NULL,
                            node);
  } else {
    *node = v->node;
  }
  if (st == CN_OK) v->plain_node = *node;
  return st;
}

cn_status cn_onnx_nhwc(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->nhwc_node >= 0) {
    *node = v->nhwc_node;
    return CN_OK;
  }
  if (v->rank != 4 || x->whole)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: '%s' must be a 4-D (N,C,H,W) tensor with the batch first (the graph also "
                   "works across its first axis)",
                   x->file, v->name);
  int plain;
  cn_status st = cn_onnx_plain(x, v, &plain);
  if (st == CN_OK) st = cn_onnx_add_transpose(x, plain, "/nhwc", 3, (int[]){1, 2, 0}, node);
  if (st == CN_OK) v->nhwc_node = *node;
  return st;
}

/* A float array copy of a constant's values, ready to hand to cn_onnx_set_param. */
float *cn_onnx_float_copy(const cn_onnx_const *c, int64_t numel) {
  float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
  if (f)
    for (int64_t k = 0; k < numel; k++) f[k] = c->f[c->numel == 1 ? 0 : k];
  return f;
}

cn_status cn_onnx_set_param_copy(cn_onnx_ctx *x, int node, int param, const cn_onnx_const *c,
                                 int64_t numel) {
  float *f = cn_onnx_float_copy(c, numel);
  if (!f) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", x->file);
  return cn_onnx_set_param(x, node, param, f);
}

/* ---- graphs with computed weights (x->whole) --------------------------------------------- */

cn_status cn_onnx_need_whole(cn_onnx_ctx *x, const Onnx__NodeProto *n, const char *what) {
  return x->whole ? CN_OK : CN_ONNX_BATCH_FAIL(x, n, "%s computed at run time", what);
}

cn_status cn_onnx_ranked(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v, int rank,
                         int *node) {
  int r = cn_onnx_rank(x, v);
  cn_status st = cn_onnx_plain(x, v, node);
  if (st != CN_OK || r == rank) return st;
  if (!x->whole || r > rank || rank > CN_MAX_RANK - 1)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "operands of ranks %d and %d", r, rank);
  int64_t dims[CN_MAX_RANK];
  for (int k = 0; k < rank; k++) dims[k] = k < rank - r ? 1 : v->dims[1 + k - (rank - r)];
  cn_reshape_attrs a = {cn_shape_make(rank, dims)};
  return cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/rank", node, 1, &a, node);
}

cn_status cn_onnx_binary_nodes(cn_onnx_ctx *x, const Onnx__NodeProto *n, int kind, int a, int b,
                               const char *suffix, int *node) {
  cn_binary_attrs attrs = {(cn_binary_kind)kind, CN_CONST_NONE, {0}};
  return cn_onnx_add_node(x, &cn_op_binary, cn_onnx_out_name(n), suffix, (int[]){a, b}, 2, &attrs,
                          node);
}

cn_status cn_onnx_scalar_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, int kind, int a, float value,
                            const char *suffix, int *node) {
  cn_binary_attrs attrs = {(cn_binary_kind)kind, CN_CONST_LAST, cn_shape_make(0, NULL)};
  cn_status st =
      cn_onnx_add_node(x, &cn_op_binary, cn_onnx_out_name(n), suffix, &a, 1, &attrs, node);
  float *f = st == CN_OK ? malloc(sizeof *f) : NULL;
  if (st == CN_OK && !f) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st != CN_OK) return st;
  *f = value;
  return cn_onnx_set_param(x, *node, 0, f);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static const cn_onnx_converter *const converter_tables[] = {
    cn_onnx_conv_converters,  cn_onnx_matmul_converters, cn_onnx_elementwise_converters,
    cn_onnx_shape_converters, cn_onnx_resize_converters,
};

cn_status cn_onnx_convert(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  for (size_t t = 0; t < sizeof converter_tables / sizeof *converter_tables; t++)
    for (const cn_onnx_converter *c = converter_tables[t]; c->op; c++)
      if (strcmp(c->op, n->op_type) == 0) {
        if (n->n_output < 1 || !*n->output[0])
          return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "the node has no output");
        return c->fn(x, n);
      }
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: node %s: operator %s is not supported", x->file,
                 cn_onnx_label(n), n->op_type);
}
