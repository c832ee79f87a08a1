/* ONNX Gemm (Y = alpha * A * op(B) + beta * C, B and C constant) and MatMul (numpy matmul with a
 * constant or an activation second operand). Products go to cblas_sgemm, called from serial code
 * so that OpenBLAS uses its own threads; batched MatMul loops over the broadcast matrices.
 * Backward runs its products on the fixed block grids of cn_gemm_plan_make, so gradients are
 * bitwise the same for any thread count. */
#include <cblas.h>
#include <limits.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_onnx.h"

enum { MAX_ROWS_PER_CALL = 1 << 30 };

static int blas_dim_ok(int64_t d) {
  return d >= 1 && d <= INT_MAX / 2;
}

/* ---- backward helpers ---------------------------------------------------------------------- */

/* C (m x n, leading dim ldc) += alpha * op(X) op(W), op(X) m x k and op(W) k x n: block i of the
 * fixed grid cn_gemm_plan_make cuts C into (a function of the shape only), one single-threaded
 * sgemm over the whole depth k (in pieces of MAX_ROWS_PER_CALL for BLAS's int), so that a sum is
 * taken in one order whatever the thread count (see src/kernels/gemm.c). */
typedef struct acc_gemm {
  int trans_x, trans_w;
  int64_t m, n, k;
  float alpha;
  const float *x, *w;
  int64_t ldx, ldw, ldc;
} acc_gemm;

static void acc_block(const acc_gemm *q, const cn_gemm_plan *p, int64_t i, float *c) {
  int64_t r0 = i / p->col_blocks * p->block_rows, c0 = i % p->col_blocks * p->block_cols;
  int64_t rows = q->m - r0 < p->block_rows ? q->m - r0 : p->block_rows;
  int64_t cols = q->n - c0 < p->block_cols ? q->n - c0 : p->block_cols;
  const float *x = q->trans_x ? q->x + r0 : q->x + r0 * q->ldx;
  const float *w = q->trans_w ? q->w + c0 * q->ldw : q->w + c0;
  for (int64_t k0 = 0; k0 < q->k; k0 += MAX_ROWS_PER_CALL) {
    int64_t depth = q->k - k0 < MAX_ROWS_PER_CALL ? q->k - k0 : MAX_ROWS_PER_CALL;
    cblas_sgemm(CblasRowMajor, q->trans_x ? CblasTrans : CblasNoTrans,
                q->trans_w ? CblasTrans : CblasNoTrans, (int)rows, (int)cols, (int)depth, q->alpha,
                x + (q->trans_x ? k0 * q->ldx : k0), (int)q->ldx,
                w + (q->trans_w ? k0 : k0 * q->ldw), (int)q->ldw, 1.0f, c + r0 * q->ldc + c0,
                (int)q->ldc);
  }
}

/* Whether `items` block products of plan p's size run in a team (OpenBLAS then stays on the
 * calling thread), and the team's size: as cn_gemm_bias_act decides. */
static int team_size(const cn_gemm_plan *p, int64_t items, int threads, int *parallel) {
  *parallel = threads > 1 && (items > 1 || cn_gemm_plan_parallel(p, threads));
  return threads < items ? threads : items < 2 ? 2 : (int)items;
}

static void gemm_acc(const acc_gemm *q, float *c, int threads) {
  if (q->alpha == 0.0f) return;
  cn_gemm_plan p = cn_gemm_plan_make(q->m, q->n, q->k);
  int64_t blocks = cn_gemm_plan_blocks(&p);
  int parallel, team = team_size(&p, blocks, threads, &parallel);
#pragma omp parallel for num_threads(team) schedule(static) if (parallel)
  for (int64_t i = 0; i < blocks; i++) acc_block(q, &p, i, c);
}

enum { COL_BLOCK = 64, SUM_CHUNKS = 16 };

/* dc += scale * the column sums of dy (m x n) when per_column, else scale * the sum of it all.
 * Column blocks sum every row in order; the total sums fixed row chunks, added in order. */
static void sum_rows(const float *dy, int64_t m, int64_t n, float scale, int per_column, float *dc,
                     int threads) {
  if (per_column) {
    int64_t blocks = (n + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for num_threads(threads) schedule(static) if (m * n > (1 << 15))
    for (int64_t b = 0; b < blocks; b++) {
      int64_t j0 = b * COL_BLOCK, cols = n - j0 < COL_BLOCK ? n - j0 : COL_BLOCK;
      double acc[COL_BLOCK] = {0};
      for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < cols; j++) acc[j] += dy[r * n + j0 + j];
      for (int64_t j = 0; j < cols; j++) dc[j0 + j] += scale * (float)acc[j];
    }
    return;
  }
  int64_t len = (m + SUM_CHUNKS - 1) / SUM_CHUNKS, chunks = (m + len - 1) / len;
  double part[SUM_CHUNKS] = {0}, total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (m * n > (1 << 15))
  for (int64_t k = 0; k < chunks; k++) {
    int64_t r1 = (k + 1) * len < m ? (k + 1) * len : m;
    double acc = 0;
    for (int64_t i = k * len * n; i < r1 * n; i++) acc += dy[i];
    part[k] = acc;
  }
  for (int64_t k = 0; k < chunks; k++) total += part[k];
  dc[0] += scale * (float)total;
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

/* dA += alpha dY op(B)^T (rows are samples: no sum over the batch), dB += alpha A^T dY (or its
 * transpose alpha dY^T A when trans_b), dC += beta * dY summed over what C broadcasts along. */
static void gemm_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                          const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                          const cn_exec *ex) {
  (void)out;
  const cn_gemm_attrs *a = node->attrs;
  int64_t m = in[0].shape.dim[0], k = in[0].shape.dim[1], n = a->n;
  const float *x = in[0].data, *b = node->params[0].data, *dy = dout->data;
  if (din[0].data) {
    acc_gemm q = {0, !a->trans_b, m, k, n, a->alpha, dy, b, n, a->trans_b ? k : n, k};
    gemm_acc(&q, din[0].data, ex->threads);
  }
  if (dparams[0]) {
    acc_gemm q = a->trans_b ? (acc_gemm){1, 0, n, k, m, a->alpha, dy, x, n, k, k}
                            : (acc_gemm){1, 0, k, n, m, a->alpha, x, dy, k, n, n};
    gemm_acc(&q, dparams[0], ex->threads);
  }
  if (a->has_c && a->beta != 0 && dparams[1]) {
    int per_column = cn_shape_numel(&a->c_shape) == n && n > 1;
    sum_rows(dy, m, n, a->beta, per_column, dparams[1], ex->threads);
  }
}

const cn_op cn_op_gemm = {
    .type = "Gemm",
    .attrs_size = sizeof(cn_gemm_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = gemm_infer,
    .forward = gemm_forward,
    .backward = gemm_backward,
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

/* The number of matrices of the output, of A and of B (products of their batch dims). */
static void mm_batches(const mm_geom *g, int64_t *mats, int64_t *a_mats, int64_t *b_mats) {
  *mats = *a_mats = *b_mats = 1;
  for (int i = 0; i < g->nb; i++) {
    *mats *= g->out_b[i];
    *a_mats *= g->a_b[i];
    *b_mats *= g->b_b[i];
  }
}

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
  int64_t mats, a_mats, b_mats;
  mm_batches(&g, &mats, &a_mats, &b_mats);
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

/* Gradients of the products that read one operand matrix, each summed over the output matrices
 * t (ascending) that read it: for A, dA_i += sum dY_t B_t^T; for B, dB_i += sum A_t^T dY_t. The
 * work items (operand matrix, block of its fixed grid) write disjoint blocks, so they run in
 * parallel and every sum keeps its order: bitwise the same for any thread count. */
typedef struct mm_grad {
  const mm_geom *g;
  const float *a, *b, *dy;
  int64_t mats;
} mm_grad;

static void matmul_operand_grad(const mm_grad *q, int of_b, float *grad, int threads) {
  const mm_geom *g = q->g;
  const int64_t *dims = of_b ? g->b_b : g->a_b;
  int64_t count = 1;
  for (int i = 0; i < g->nb; i++) count *= dims[i];
  int64_t rows = of_b ? g->k : g->m, cols = of_b ? g->n : g->k, depth = of_b ? g->m : g->n;
  cn_gemm_plan p = cn_gemm_plan_make(rows, cols, depth);
  int64_t blocks = cn_gemm_plan_blocks(&p), items = count * blocks;
  int parallel, team = team_size(&p, items, threads, &parallel);
#pragma omp parallel for num_threads(team) schedule(static) if (parallel)
  for (int64_t it = 0; it < items; it++) {
    int64_t mat = it / blocks, blk = it % blocks;
    for (int64_t t = 0; t < q->mats; t++) {
      int64_t ia = matrix_index(g, g->a_b, t), ib = matrix_index(g, g->b_b, t);
      if ((of_b ? ib : ia) != mat) continue;
      const float *am = q->a + ia * g->m * g->k, *bm = q->b + ib * g->k * g->n;
      const float *dym = q->dy + t * g->m * g->n;
      acc_gemm s = of_b ? (acc_gemm){1, 0, g->k, g->n, g->m, 1.0f, am, dym, g->k, g->n, g->n}
                        : (acc_gemm){0, 1, g->m, g->k, g->n, 1.0f, dym, bm, g->n, g->n, g->k};
      acc_block(&s, &p, blk, grad + mat * rows * cols);
    }
  }
}

static void matmul_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  (void)out;
  const cn_matmul_attrs *a = node->attrs;
  const cn_shape *bf = a->const_b ? &a->b_shape : &in[1].shape;
  const float *b = a->const_b ? node->params[0].data : in[1].data;
  float *da = din[0].data, *db = a->const_b ? dparams[0] : din[1].data;
  mm_geom g;
  mm_geometry(&in[0].shape, bf, &g);
  int64_t mats, a_mats, b_mats;
  mm_batches(&g, &mats, &a_mats, &b_mats);
  if (b_mats == 1 && a_mats == mats) { /* one B for every row of A, as forward */
    int64_t rows = mats * g.m;
    if (da) {
      acc_gemm q = {0, 1, rows, g.k, g.n, 1.0f, dout->data, b, g.n, g.n, g.k};
      gemm_acc(&q, da, ex->threads);
    }
    if (db) {
      acc_gemm q = {1, 0, g.k, g.n, rows, 1.0f, in[0].data, dout->data, g.k, g.n, g.n};
      gemm_acc(&q, db, ex->threads);
    }
    return;
  }
  mm_grad q = {&g, in[0].data, b, dout->data, mats};
  if (da) matmul_operand_grad(&q, 0, da, ex->threads);
  if (db) matmul_operand_grad(&q, 1, db, ex->threads);
}

const cn_op cn_op_matmul = {
    .type = "MatMul",
    .attrs_size = sizeof(cn_matmul_attrs),
    .min_inputs = 1,
    .max_inputs = 2,
    .infer = matmul_infer,
    .forward = matmul_forward,
    .backward = matmul_backward,
};
