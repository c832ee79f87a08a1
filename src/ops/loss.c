/* The Loss layer: a per-sample loss as a node, so that a graph can end in the scalar it is
 * trained on (a VAE's reconstruction + KL, a siamese contrastive loss, weighted sums). */
#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops_math.h"

static int by_last_axis(cn_loss_fn fn) {
  return fn == CN_LOSS_FN_CCE || fn == CN_LOSS_FN_CCE_LOGITS || cn_loss_fn_sparse(fn);
}

/* Values per row of pred: the last axis for the cross-entropies, else the whole sample. */
static int64_t row_length(const cn_node *node, const cn_shape *pred) {
  const cn_loss_attrs *a = node->attrs;
  if (by_last_axis(a->fn)) return pred->rank ? pred->dim[pred->rank - 1] : 1;
  return cn_shape_numel(pred);
}

static int sparse_target_fits(const cn_shape *pred, const cn_shape *target) {
  if (pred->rank == 0) return 0;
  int r = pred->rank - 1;
  int extra = target->rank == pred->rank ? 1 : 0;
  if (target->rank != r + extra || (extra && target->dim[r] != 1)) return 0;
  for (int i = 0; i < r; i++)
    if (target->dim[i] != pred->dim[i]) return 0;
  return 1;
}

static cn_status loss_infer(cn_graph *g, cn_node *node) {
  const cn_loss_attrs *a = node->attrs;
  if ((unsigned)a->fn >= CN_LOSS_FN_COUNT)
    return cn_fail(CN_ERR_ARG, "%s: unknown loss %d", node->name, (int)a->fn);
  if (!(a->margin >= 0.0f) || isinf(a->margin))
    return cn_fail(CN_ERR_ARG, "%s: the margin must be finite and >= 0", node->name);
  const cn_shape *p = &g->nodes[node->inputs[0]].shape, *t = &g->nodes[node->inputs[1]].shape;
  int fits = cn_loss_fn_sparse(a->fn) ? sparse_target_fits(p, t) : cn_shape_equal(p, t);
  if (!fits) {
    char ps[96], ts[96];
    return cn_fail(CN_ERR_SHAPE, "%s: the target's shape %s does not fit the prediction's %s%s",
                   node->name, cn_shape_format(t, ts, sizeof ts), cn_shape_format(p, ps, sizeof ps),
                   cn_loss_fn_sparse(a->fn) ? " (sparse targets: one class index per row)" : "");
  }
  if (cn_shape_numel(p) < 1) return cn_fail(CN_ERR_SHAPE, "%s: empty prediction", node->name);
  node->shape = (cn_shape){0};
  return CN_OK;
}

static float margin_of(const cn_loss_attrs *a) {
  return a->margin > 0.0f ? a->margin : 1.0f;
}

/* The loss of sample s, adding dscale * its gradients into gx / gt (may be NULL). */
static double sample_loss(const cn_node *node, const cn_tensor *in, int64_t s, double dscale,
                          float *gx, float *gt) {
  const cn_loss_attrs *a = node->attrs;
  cn_shape ps = in[0].shape;
  ps.rank--;
  for (int i = 0; i < ps.rank; i++) ps.dim[i] = ps.dim[i + 1];
  int64_t numel = cn_shape_numel(&ps), row = row_length(node, &ps), rows = numel / row;
  int64_t trow = cn_loss_fn_sparse(a->fn) ? 1 : row;
  const float *x = in[0].data + s * numel, *t = in[1].data + s * rows * trow;
  double total = 0.0;
  for (int64_t r = 0; r < rows; r++)
    total += cn_loss_row(a->fn, row, x + r * row, t + r * trow, margin_of(a), dscale / rows,
                         gx ? gx + s * numel + r * row : NULL,
                         gt ? gt + s * rows * trow + r * trow : NULL);
  return total / rows;
}

static void loss_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  int64_t batch = out->shape.dim[0];
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (batch > 64)
  for (int64_t s = 0; s < batch; s++)
    out->data[s] = (float)sample_loss(node, in, s, 0.0, NULL, NULL);
}

/* Each sample's gradient rows are written by the thread that owns the sample. */
static void loss_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                          const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                          const cn_exec *ex) {
  (void)dparams;
  const cn_loss_attrs *a = node->attrs;
  float *gt = cn_loss_fn_sparse(a->fn) ? NULL : din[1].data;
  if (!din[0].data && !gt) return;
  int64_t batch = out->shape.dim[0];
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (batch > 64)
  for (int64_t s = 0; s < batch; s++) sample_loss(node, in, s, dout->data[s], din[0].data, gt);
}

const cn_op cn_op_loss = {
    .type = "Loss",
    .attrs_size = sizeof(cn_loss_attrs),
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = loss_infer,
    .forward = loss_forward,
    .backward = loss_backward,
};
