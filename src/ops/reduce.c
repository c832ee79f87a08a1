/* Reduce: sum, mean, max or min over a set of per-sample axes. Each sample is reduced in element
 * order by one thread, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops_math.h"

static cn_status reduce_infer(cn_graph *g, cn_node *node) {
  const cn_reduce_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  if ((unsigned)a->kind > CN_REDUCE_MIN || a->axes < 0)
    return cn_fail(CN_ERR_ARG, "%s: unknown reduction %d", node->name, (int)a->kind);
  if (a->axes == 0 || a->axes >> in->rank)
    return cn_fail(CN_ERR_SHAPE, "%s: reduction axes outside the input's %d per-sample axes",
                   node->name, in->rank);
  cn_shape out = {0};
  for (int i = 0; i < in->rank; i++) {
    if (!(a->axes >> i & 1))
      out.dim[out.rank++] = in->dim[i];
    else if (a->keepdims)
      out.dim[out.rank++] = 1;
  }
  node->shape = out;
  return CN_OK;
}

/* The per-sample geometry: for input element i, the output element it reduces into. */
typedef struct reduce_map {
  int rank;
  int64_t dim[CN_MAX_RANK], out_stride[CN_MAX_RANK]; /* out_stride 0 on reduced axes */
  int64_t numel, out_numel, count;                   /* count: inputs per output */
} reduce_map;

static reduce_map map_of(const cn_node *node, const cn_shape *batched_in) {
  const cn_reduce_attrs *a = node->attrs;
  reduce_map m = {.rank = batched_in->rank - 1, .numel = 1, .out_numel = 1, .count = 1};
  for (int i = m.rank - 1; i >= 0; i--) {
    m.dim[i] = batched_in->dim[i + 1];
    m.numel *= m.dim[i];
    if (a->axes >> i & 1) {
      m.out_stride[i] = 0;
      m.count *= m.dim[i];
    } else {
      m.out_stride[i] = m.out_numel;
      m.out_numel *= m.dim[i];
    }
  }
  return m;
}

/* Calls visit(i, o) for every element i of a sample with its output index o, in order. */
#define FOR_EACH_ELEMENT(m, i, o, body)                                                            \
  do {                                                                                             \
    int64_t idx_[CN_MAX_RANK] = {0}, o = 0;                                                        \
    for (int64_t i = 0; i < (m)->numel; i++) {                                                     \
      body;                                                                                        \
      for (int d_ = (m)->rank - 1; d_ >= 0; d_--) {                                                \
        o += (m)->out_stride[d_];                                                                  \
        if (++idx_[d_] < (m)->dim[d_]) break;                                                      \
        o -= (m)->out_stride[d_] * (m)->dim[d_];                                                   \
        idx_[d_] = 0;                                                                              \
      }                                                                                            \
    }                                                                                              \
  } while (0)

static void reduce_sample(const cn_reduce_attrs *a, const reduce_map *m, const float *x, float *y) {
  int extreme = a->kind == CN_REDUCE_MAX || a->kind == CN_REDUCE_MIN;
  float init = a->kind == CN_REDUCE_MAX ? -INFINITY : a->kind == CN_REDUCE_MIN ? INFINITY : 0.0f;
  for (int64_t o = 0; o < m->out_numel; o++) y[o] = init;
  if (!extreme)
    FOR_EACH_ELEMENT(m, i, o, y[o] += x[i]);
  else if (a->kind == CN_REDUCE_MAX)
    FOR_EACH_ELEMENT(m, i, o, y[o] = x[i] > y[o] || isnan(x[i]) ? x[i] : y[o]);
  else
    FOR_EACH_ELEMENT(m, i, o, y[o] = x[i] < y[o] || isnan(x[i]) ? x[i] : y[o]);
  if (a->kind == CN_REDUCE_MEAN)
    for (int64_t o = 0; o < m->out_numel; o++) y[o] /= (float)m->count;
}

static void reduce_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  reduce_map m = map_of(node, &in[0].shape);
  int64_t batch = in[0].shape.dim[0];
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (batch * m.numel > 65536)
  for (int64_t s = 0; s < batch; s++)
    reduce_sample(node->attrs, &m, in[0].data + s * m.numel, out->data + s * m.out_numel);
}

/* Max / min: the gradient is shared equally among the elements equal to the result; ties are
 * counted into `ties` (out_numel floats). */
static void extreme_backward(const reduce_map *m, const float *x, const float *y, const float *dy,
                             float *dx, float *ties) {
  memset(ties, 0, (size_t)m->out_numel * sizeof(float));
  FOR_EACH_ELEMENT(m, i, o, ties[o] += x[i] == y[o]);
  FOR_EACH_ELEMENT(m, i, o, dx[i] += x[i] == y[o] ? dy[o] / ties[o] : 0.0f);
}

static void reduce_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  (void)dparams;
  const cn_reduce_attrs *a = node->attrs;
  if (!din[0].data) return;
  reduce_map m = map_of(node, &in[0].shape);
  int64_t batch = in[0].shape.dim[0];
  float scale = a->kind == CN_REDUCE_MEAN ? 1.0f / (float)m.count : 1.0f;
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (batch * m.numel > 65536)
  for (int64_t s = 0; s < batch; s++) {
    const float *x = in[0].data + s * m.numel, *y = out->data + s * m.out_numel;
    const float *dy = dout->data + s * m.out_numel;
    float *dx = din[0].data + s * m.numel;
    if (a->kind == CN_REDUCE_MAX || a->kind == CN_REDUCE_MIN)
      extreme_backward(&m, x, y, dy, dx, ex->scratch + s * m.out_numel);
    else
      FOR_EACH_ELEMENT(&m, i, o, dx[i] += dy[o] * scale);
  }
}

static size_t reduce_backward_scratch(const cn_graph *g, const cn_node *node, int batch) {
  (void)g;
  return (size_t)batch * (size_t)cn_shape_numel(&node->shape);
}

const cn_op cn_op_reduce = {
    .type = "Reduce",
    .attrs_size = sizeof(cn_reduce_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = reduce_infer,
    .forward = reduce_forward,
    .backward = reduce_backward,
    .backward_scratch = reduce_backward_scratch,
};
