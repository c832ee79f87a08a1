/* ONNX Gemm (Y = alpha * A * op(B) + beta * C, B and C constant) and MatMul (numpy matmul with a
 * constant or an activation second operand). Products go to cblas_sgemm, called from serial code
 * so that OpenBLAS uses its own threads; batched MatMul loops over the broadcast matrices. */
#include <cblas.h>
#include <limits.h>

#include "core/error.h"
#include "ops/ops_onnx.h"

enum { MAX_ROWS_PER_CALL = 1 << 30 };

static int blas_dim_ok(int64_t d) {
  return d >= 1 && d <= INT_MAX / 2;
}

/* ---- Gemm ---------------------------------------------------------------------------------- */

static cn_status check_c_shape(const cn_node *node, const cn_shape *c, int64_t n) {
  char buf[96];
  int ok = c->rank >= 0 && c->rank <= 2;
  if (ok && c->rank >= 1) {
    int64_t last = c->dim[c->rank - 1];
    ok = last == 1 || last == n;
  }
  if (ok && c->rank == 2) ok = c->dim[0] == 1; /* ONNX's M is the batch */
  if (!ok)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: C of shape %s does not broadcast to (batch, %lld)",
                   node->name, cn_shape_format(c, buf, sizeof buf), (long long)n);
  return CN_OK;
}

static cn_status gemm_infer(cn_graph *g, cn_node *node) {
  const cn_gemm_attrs *a = node->attrs;
  char buf[96];
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank != 1)
    return cn_fail(CN_ERR_SHAPE, "%s: Gemm input must be (batch, k), got per-sample %s", node->name,
                   cn_shape_format(x, buf, sizeof buf));
  int64_t k = x->dim[0];
  if (!blas_dim_ok(k) || !blas_dim_ok(a->n))
    return cn_fail(CN_ERR_SHAPE, "%s: bad Gemm sizes k=%lld n=%lld", node->name, (long long)k,
                   (long long)a->n);
  if (!isfinite(a->alpha) || !isfinite(a->beta))
    return cn_fail(CN_ERR_FORMAT, "%s: alpha and beta must be finite", node->name);
  if (a->has_c) {
    cn_status st = check_c_shape(node, &a->c_shape, a->n);
    if (st != CN_OK) return st;
  }
  node->shape = cn_shape_make(1, (int64_t[]){a->n});
  cn_shape b =
      a->trans_b ? cn_shape_make(2, (int64_t[]){a->n, k}) : cn_shape_make(2, (int64_t[]){k, a->n});
  cn_status st = cn_node_add_param(node, "B", b);
  if (st == CN_OK && a->has_c) st = cn_node_add_param(node, "C", a->c_shape);
  return st;
}

static void gemm_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_gemm_attrs *a = node->attrs;
  int64_t m = in[0].shape.dim[0], k = in[0].shape.dim[1], n = a->n;
  float *y = out->data;
  float beta = 0;
  if (a->has_c && a->beta != 0) {
    const float *c = node->params[1].data;
    int per_column = cn_shape_numel(&a->c_shape) == n && n > 1;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (m * n > (1 << 15))
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++) y[r * n + j] = a->beta * c[per_column ? j : 0];
    beta = 1;
  }
  const float *b = node->params[0].data;
  for (int64_t r0 = 0; r0 < m; r0 += MAX_ROWS_PER_CALL) {
    int64_t rows = m - r0 < MAX_ROWS_PER_CALL ? m - r0 : MAX_ROWS_PER_CALL;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, a->trans_b ? CblasTrans : CblasNoTrans, (int)rows,
                (int)n, (int)k, a->alpha, in[0].data + r0 * k, (int)k, b,
                a->trans_b ? (int)k : (int)n, beta, y + r0 * n, (int)n);
  }
}

const cn_op cn_op_gemm = {
    .type = "Gemm",
    .attrs_size = sizeof(cn_gemm_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = gemm_infer,
    .forward = gemm_forward,
};

/* ---- MatMul -------------------------------------------------------------------------------- */

/* A batched product: out_b matrix-batch dims (A's and B's aligned right, 1 where absent), each
 * product (m, k) x (k, n). */
typedef struct mm_geom {
  int nb;
  int64_t out_b[CN_MAX_RANK], a_b[CN_MAX_RANK], b_b[CN_MAX_RANK];
  int64_t m, k, n;
  int b_vector; /* B is 1-D: the last output dim is dropped */
} mm_geom;

/* From A's and B's full shapes; returns 0 when they do not multiply (infer reports it). */
static int mm_geometry(const cn_shape *a, const cn_shape *b, mm_geom *g) {
  *g = (mm_geom){0};
  if (a->rank < 2 || b->rank < 1) return 0;
  if (a->rank == 2) { /* (N, k): the batch is the rows of one matrix */
    g->nb = 0;
    g->m = a->dim[0];
    g->k = a->dim[1];
    if (b->rank > 2) return 0;
  } else {
    g->nb = a->rank - 2;
    for (int i = 0; i < g->nb; i++) g->a_b[i] = a->dim[i];
    g->m = a->dim[a->rank - 2];
    g->k = a->dim[a->rank - 1];
  }
  g->b_vector = b->rank == 1;
  int64_t kb = g->b_vector ? b->dim[0] : b->dim[b->rank - 2];
  g->n = g->b_vector ? 1 : b->dim[b->rank - 1];
  int bnb = b->rank > 2 ? b->rank - 2 : 0;
  if (kb != g->k || bnb > g->nb) return 0;
  for (int i = 0; i < g->nb; i++) {
    int j = i - (g->nb - bnb);
    g->b_b[i] = j >= 0 ? b->dim[j] : 1;
    int64_t x = g->a_b[i], y = g->b_b[i];
    if (x != y && x != 1 && y != 1) return 0;
    g->out_b[i] = x > y ? x : y;
  }
  return 1;
}

static cn_status matmul_infer(cn_graph *g, cn_node *node) {
  const cn_matmul_attrs *a = node->attrs;
  char b1[96], b2[96];
  if (node->n_inputs != (a->const_b ? 1 : 2))
    return cn_fail(CN_ERR_SHAPE, "%s: expects %d inputs", node->name, a->const_b ? 1 : 2);
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank < 1 || x->rank + 1 > CN_MAX_RANK)
    return cn_fail(CN_ERR_SHAPE, "%s: bad input rank %d", node->name, x->rank);
  cn_shape af = cn_shape_batch(1, x), bf;
  if (a->const_b) {
    bf = a->b_shape;
    if (bf.rank < 1 || bf.rank > CN_MAX_RANK || cn_shape_numel(&bf) < 1)
      return cn_fail(CN_ERR_SHAPE, "%s: bad B shape %s", node->name,
                     cn_shape_format(&bf, b1, sizeof b1));
    if (bf.rank == af.rank && x->rank >= 2 && bf.dim[0] != 1)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: B %s varies along the batch dim", node->name,
                     cn_shape_format(&bf, b1, sizeof b1));
  } else {
    const cn_shape *y = &g->nodes[node->inputs[1]].shape;
    if (x->rank < 2 || y->rank != x->rank)
      return cn_fail(
          CN_ERR_SHAPE, "%s: MatMul of two inputs needs equal per-sample ranks >= 2, got %s and %s",
          node->name, cn_shape_format(x, b1, sizeof b1), cn_shape_format(y, b2, sizeof b2));
    bf = cn_shape_batch(1, y);
  }
  mm_geom mg;
  if (!mm_geometry(&af, &bf, &mg))
    return cn_fail(CN_ERR_SHAPE, "%s: cannot multiply (batch)%s by %s%s", node->name,
                   cn_shape_format(x, b1, sizeof b1), a->const_b ? "" : "(batch)",
                   cn_shape_format(&bf, b2, sizeof b2));
  if (!blas_dim_ok(mg.m) && mg.nb > 0) return cn_fail(CN_ERR_LIMIT, "%s: m too large", node->name);
  if (!blas_dim_ok(mg.k) || !blas_dim_ok(mg.n))
    return cn_fail(CN_ERR_LIMIT, "%s: k or n out of range", node->name);
  /* Output: (batch, out_b[1..], m, n), without n for a 1-D B; rank-1 A gives (batch, n). */
  int64_t dims[CN_MAX_RANK];
  int r = 0;
  if (mg.nb == 0) {
    if (!mg.b_vector) dims[r++] = mg.n;
  } else {
    for (int i = 1; i < mg.nb; i++) dims[r++] = mg.out_b[i];
    dims[r++] = mg.m;
    if (!mg.b_vector) dims[r++] = mg.n;
  }
  node->shape = cn_shape_make(r, dims);
  return a->const_b ? cn_node_add_param(node, "B", bf) : CN_OK;
}

/* Offset (in matrices) of output batch index t in an operand with batch dims `d`. */
static int64_t matrix_index(const mm_geom *g, const int64_t *d, int64_t t) {
  int64_t off = 0, step = 1;
  for (int i = g->nb - 1; i >= 0; i--) {
    int64_t idx = t % g->out_b[i];
    t /= g->out_b[i];
    if (d[i] != 1) off += idx * step;
    step *= d[i];
  }
  return off;
}

static void sgemm_rows(int64_t rows, int64_t n, int64_t k, const float *a, const float *b,
                       float *y) {
  for (int64_t r0 = 0; r0 < rows; r0 += MAX_ROWS_PER_CALL) {
    int64_t m = rows - r0 < MAX_ROWS_PER_CALL ? rows - r0 : MAX_ROWS_PER_CALL;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a + r0 * k,
                (int)k, b, (int)n, 0.0f, y + r0 * n, (int)n);
  }
}

static void matmul_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_matmul_attrs *a = node->attrs;
  const cn_shape *bf = a->const_b ? &a->b_shape : &in[1].shape;
  const float *b = a->const_b ? node->params[0].data : in[1].data;
  mm_geom g;
  mm_geometry(&in[0].shape, bf, &g);
  int64_t mats = 1, a_mats = 1, b_mats = 1;
  for (int i = 0; i < g.nb; i++) {
    mats *= g.out_b[i];
    a_mats *= g.a_b[i];
    b_mats *= g.b_b[i];
  }
  if (b_mats == 1 && a_mats == mats) { /* one B for every row of A */
    sgemm_rows(mats * g.m, g.n, g.k, in[0].data, b, out->data);
    return;
  }
  for (int64_t t = 0; t < mats; t++) {
    const float *am = in[0].data + matrix_index(&g, g.a_b, t) * g.m * g.k;
    const float *bm = b + matrix_index(&g, g.b_b, t) * g.k * g.n;
    sgemm_rows(g.m, g.n, g.k, am, bm, out->data + t * g.m * g.n);
  }
}

const cn_op cn_op_matmul = {
    .type = "MatMul",
    .attrs_size = sizeof(cn_matmul_attrs),
    .min_inputs = 1,
    .max_inputs = 2,
    .infer = matmul_infer,
    .forward = matmul_forward,
};
