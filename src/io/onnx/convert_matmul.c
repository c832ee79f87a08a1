/* ONNX to engine nodes: the matrix products Gemm and MatMul. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_onnx.h"

/* ---- matrix products ----------------------------------------------------------------------- */

/* Dense weights (in, out) from B (k, n) or B^T, scaled by alpha; rows reordered from the ONNX
 * (C,H,W) flattening to the engine's (H,W,C) when the input is a flattened NHWC tensor. */
static float *dense_kernel(const cn_onnx_const *b, int trans, float alpha, const cn_onnx_value *v) {
  int64_t kk = trans ? b->dims[1] : b->dims[0], nn = trans ? b->dims[0] : b->dims[1];
  float *w = malloc((size_t)(kk * nn > 0 ? kk * nn : 1) * sizeof *w);
  if (!w) return NULL;
  int64_t c = v->flat_chw[0], h = v->flat_chw[1], ww = v->flat_chw[2];
  for (int64_t r = 0; r < kk; r++) {
    int64_t row = r; /* engine row r holds ONNX row `row` */
    if (v->layout == CN_ONNX_FLAT) {
      int64_t ci = r % c, xi = (r / c) % ww, yi = r / (c * ww);
      row = (ci * h + yi) * ww + xi;
    }
    for (int64_t j = 0; j < nn; j++)
      w[r * nn + j] = alpha * b->f[trans ? j * kk + row : row * nn + j];
  }
  return w;
}

/* The Dense input: FLAT and PLAIN values go in as they are, NHWC ones in ONNX order. */
static cn_status dense_input(cn_onnx_ctx *x, cn_onnx_value *v, int *node) {
  if (v->layout == CN_ONNX_FLAT) {
    *node = v->node;
    return CN_OK;
  }
  return cn_onnx_plain(x, v, node);
}

/* A Dense node on src (v's engine node, or v transposed) computing v * op(B) * alpha + bias;
 * bias (units values or NULL) is taken over. */
static cn_status dense_node(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                            int src, const cn_onnx_const *b, int trans, float alpha, float *bias,
                            int64_t units, int *node) {
  cn_dense_attrs a = {(int)units, bias != NULL, cn_act_linear()};
  cn_status st = cn_onnx_add_node(x, &cn_op_dense, cn_onnx_out_name(n), NULL, &src, 1, &a, node);
  float *w = st == CN_OK ? dense_kernel(b, trans, alpha, v) : NULL;
  if (st == CN_OK && !w) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, *node, 0, w);
  if (st == CN_OK && bias) {
    st = cn_onnx_set_param(x, *node, 1, bias);
    bias = NULL;
  }
  free(bias);
  return st;
}

static cn_status add_dense(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                           const cn_onnx_const *b, int trans, float alpha, float *bias,
                           int64_t units) {
  int src, node;
  cn_status st = dense_input(x, v, &src);
  if (st == CN_OK)
    st = dense_node(x, n, v, src, b, trans, alpha, bias, units, &node);
  else
    free(bias);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* Gemm's C when it is not a per-column bias: a constant matrix or column (beta * C, which varies
 * along ONNX's first axis) or a computed tensor, added to the product already in output 0. */
static cn_status gemm_add_c(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *c,
                            float beta) {
  cn_onnx_value prod = *cn_onnx_find(x, n->output[0]);
  if (c->kind == CN_ONNX_CONST) {
    cn_onnx_const scaled = c->c;
    scaled.f = cn_onnx_float_copy(&c->c, c->c.numel);
    if (!scaled.f) return cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < scaled.numel; k++) scaled.f[k] *= beta;
    cn_binary_attrs a = {CN_BIN_ADD, CN_CONST_LAST, {0}};
    cn_status st = cn_onnx_add_const_op(x, n, &prod, &scaled, &cn_op_binary, &a, &a.b_shape);
    free(scaled.f);
    return st;
  }
  int r = cn_onnx_rank(x, &prod), srcs[2] = {prod.node}, node;
  if (cn_onnx_rank(x, c) != r && !x->whole)
    return CN_ONNX_BATCH_FAIL(x, n, "a computed C of another rank");
  cn_status st = cn_onnx_ranked(x, n, c, r, &srcs[1]);
  if (st == CN_OK && beta != 1.0f)
    st = cn_onnx_scalar_op(x, n, CN_BIN_MUL, srcs[1], beta, "/beta", &srcs[1]);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_ADD, srcs[0], srcs[1], "/c", &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* Gemm's A as a Dense input: as it is, or transposed (only when each tensor is one sample). */
static cn_status gemm_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v, int trans_a,
                            int *src) {
  if (!trans_a) return dense_input(x, v, src);
  if (!x->whole) return CN_ONNX_BATCH_FAIL(x, n, "transA (moves the batch axis)");
  cn_status st = cn_onnx_plain(x, v, src);
  if (st == CN_OK) st = cn_onnx_add_transpose(x, *src, "/T", 2, (int[]){1, 0}, src);
  return st;
}

/* Engine node of 2-D activation v in ONNX order, transposed when trans. */
static cn_status matrix_operand(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                int trans, int *node) {
  if (cn_onnx_rank(x, v) != 2) return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "A and B must be 2-D");
  cn_status st = cn_onnx_plain(x, v, node);
  if (st == CN_OK && trans) st = cn_onnx_add_transpose(x, *node, "/T", 2, (int[]){1, 0}, node);
  return st;
}

/* Gemm with a computed B: alpha * op(A) op(B) through cn_op_matmul, then C as gemm_add_c adds
 * it. B has no batch axis, so the graph runs as one sample. */
static cn_status gemm_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *a, *b, *cv = cn_onnx_input(x, n, 2);
  int ia, ib, node;
  cn_status st = cn_onnx_need_whole(x, n, "B");
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 0, &a);
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 1, &b);
  if (st == CN_OK) st = matrix_operand(x, n, a, cn_onnx_attr_int(n, "transA", 0) != 0, &ia);
  if (st == CN_OK) st = matrix_operand(x, n, b, cn_onnx_attr_int(n, "transB", 0) != 0, &ib);
  cn_matmul_attrs m = {0, {0}};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_matmul, cn_onnx_out_name(n), NULL, (int[]){ia, ib}, 2, &m,
                          &node);
  float alpha = cn_onnx_attr_float(n, "alpha", 1.0f);
  if (st == CN_OK && alpha != 1.0f)
    st = cn_onnx_scalar_op(x, n, CN_BIN_MUL, node, alpha, "/alpha", &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st == CN_OK && cv && cv->kind == CN_ONNX_CONST) st = cn_onnx_const_to_float(&cv->c, cv->name);
  if (st == CN_OK && cv) st = gemm_add_c(x, n, cv, cn_onnx_attr_float(n, "beta", 1.0f));
  return st;
}

static cn_status conv_gemm(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *bv = cn_onnx_input(x, n, 1);
  if (bv && bv->kind == CN_ONNX_ACT) return gemm_runtime(x, n);
  cn_onnx_value *v, *cv = cn_onnx_input(x, n, 2);
  const cn_onnx_const *b = NULL;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK) st = cn_onnx_weight_input(x, n, 1, &b);
  if (st == CN_OK && cv && cv->kind == CN_ONNX_CONST) st = cn_onnx_const_to_float(&cv->c, cv->name);
  if (st == CN_OK && cv && cv->kind == CN_ONNX_NONE)
    st = CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "input '%s' is not computed", cv->name);
  if (st != CN_OK) return st;
  int trans = cn_onnx_attr_int(n, "transB", 0) != 0;
  int trans_a = cn_onnx_attr_int(n, "transA", 0) != 0;
  float alpha = cn_onnx_attr_float(n, "alpha", 1.0f), beta = cn_onnx_attr_float(n, "beta", 1.0f);
  if (cn_onnx_rank(x, v) != 2 || b->rank != 2 ||
      v->dims[x->whole + (trans_a ? 0 : 1)] != b->dims[trans ? 1 : 0])
    return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "A and B do not multiply");
  int64_t units = b->dims[trans ? 0 : 1];
  const cn_onnx_const *c = cv && cv->kind == CN_ONNX_CONST ? &cv->c : NULL;
  int row_bias = c && (c->numel == 1 || (c->numel == units && c->dims[c->rank - 1] == units));
  if (c && !row_bias && !x->whole)
    return CN_ONNX_BATCH_FAIL(
        x, n, "C varies along the batch axis (it is not a row of %" PRId64 ")", units);
  float *bias = NULL;
  if (row_bias) {
    bias = cn_onnx_float_copy(c, units);
    if (!bias) return cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < units; j++) bias[j] *= beta;
  }
  int src, node;
  st = gemm_input(x, n, v, trans_a, &src);
  cn_onnx_value plain_a = *v;
  if (trans_a) plain_a.layout = CN_ONNX_PLAIN; /* no row permutation for the transposed A */
  if (st == CN_OK)
    st = dense_node(x, n, &plain_a, src, b, trans, alpha, bias, units, &node);
  else
    free(bias);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st == CN_OK && cv && !row_bias) st = gemm_add_c(x, n, cv, beta);
  return st;
}

/* MatMul with a constant B that is not a plain 2-D weight: numpy matmul through cn_op_matmul. A
 * has ONNX rank ra; with a B of higher rank, A gets leading ones (numpy broadcasting), and a 1-D
 * A's inserted row axis is dropped again from the result. */
static cn_status matmul_general(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                const cn_onnx_const *b) {
  int ra = cn_onnx_rank(x, v), rb = b->rank;
  if (cn_onnx_const_spans_batch(x, v, b))
    return CN_ONNX_BATCH_FAIL(x, n, "B varies along the batch axis");
  if (rb > CN_MAX_RANK - 1) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "B of rank %d", rb);
  int src;
  cn_status st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK && rb > ra) {
    int64_t dims[CN_MAX_RANK];
    for (int k = 0; k < rb; k++) dims[k] = k < rb - ra ? 1 : v->dims[x->whole + k - (rb - ra)];
    cn_reshape_attrs r = {cn_shape_make(rb - !x->whole, dims + !x->whole)};
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/a", &src, 1, &r, &src);
  }
  cn_matmul_attrs a = {1, cn_shape_make(rb, b->dims)};
  int node;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_matmul, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_param_copy(x, node, 0, b, b->numel);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st != CN_OK || ra != 1 || rb < 3) return st;
  cn_onnx_value *o = cn_onnx_find(x, n->output[0]); /* (1, ..., 1, n): drop the row axis */
  int64_t dims[CN_MAX_RANK];
  int r = o->rank - 1;
  memcpy(dims, o->dims + 1, (size_t)r * sizeof *dims);
  dims[r - 2] = dims[r - 1];
  cn_onnx_value prod = *o;
  return cn_onnx_reshape_output(x, n, &prod, r - 1, dims);
}

/* Activation v (ONNX dims d, rank r) reshaped to `rank` dims: leading ones, then d. */
static cn_status matmul_operand(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v, int r,
                                const int64_t *d, int rank, int *node) {
  int64_t dims[CN_MAX_RANK];
  for (int k = 0; k < rank; k++) dims[k] = k < rank - r ? 1 : d[k - (rank - r)];
  cn_reshape_attrs a = {cn_shape_make(rank, dims)};
  cn_status st = cn_onnx_plain(x, v, node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/mm", node, 1, &a, node);
  return st;
}

/* MatMul of two computed tensors (the graph runs as one sample): numpy matmul through cn_op_matmul
 * on operands of one rank; a 1-D A gets a unit row and a 1-D B a unit column, dropped again. */
static cn_status matmul_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *a,
                                cn_onnx_value *b) {
  cn_status st = cn_onnx_need_whole(x, n, "B");
  if (st != CN_OK) return st;
  int ra = cn_onnx_rank(x, a), rb = cn_onnx_rank(x, b);
  int64_t ad[CN_MAX_RANK] = {1, a->dims[1]}, bd[CN_MAX_RANK] = {b->dims[1], 1};
  int na = ra < 2 ? 2 : ra, nb = rb < 2 ? 2 : rb, r = na > nb ? na : nb, ia, ib, node;
  if (r > CN_MAX_RANK - 1) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "rank %d", r);
  if (ra >= 2) memcpy(ad, a->dims + 1, (size_t)ra * sizeof *ad);
  if (rb >= 2) memcpy(bd, b->dims + 1, (size_t)rb * sizeof *bd);
  st = matmul_operand(x, n, a, na, ad, r, &ia);
  if (st == CN_OK) st = matmul_operand(x, n, b, nb, bd, r, &ib);
  cn_matmul_attrs m = {0, {0}};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_matmul, cn_onnx_out_name(n), NULL, (int[]){ia, ib}, 2, &m,
                          &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st != CN_OK || (ra >= 2 && rb >= 2)) return st;
  cn_onnx_value o = *cn_onnx_find(x, n->output[0]); /* (1, batch..., m, n) */
  int64_t dims[CN_MAX_RANK];
  int k = r - 2;
  memcpy(dims, o.dims + 1, (size_t)k * sizeof *dims);
  if (ra >= 2) dims[k++] = o.dims[r - 1];
  if (rb >= 2) dims[k++] = o.dims[r];
  if (k == 0) dims[k++] = 1; /* numpy's 0-D result, stored as (1) */
  return cn_onnx_reshape_output(x, n, &o, k, dims);
}

static cn_status conv_matmul(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v, *bv = cn_onnx_input(x, n, 1);
  const cn_onnx_const *b = NULL;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK && bv && bv->kind == CN_ONNX_ACT) return matmul_runtime(x, n, v, bv);
  if (st == CN_OK) st = cn_onnx_weight_input(x, n, 1, &b);
  if (st != CN_OK) return st;
  if (v->rank >= 2 && b->rank == 2 && v->dims[v->rank - 1] == b->dims[0])
    return add_dense(x, n, v, b, 0, 1.0f, NULL, b->dims[1]);
  return matmul_general(x, n, v, b);
}

const cn_onnx_converter cn_onnx_matmul_converters[] = {
    {"Gemm", conv_gemm},
    {"MatMul", conv_matmul},
    {NULL, NULL},
};
