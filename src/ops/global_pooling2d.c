/* GlobalAveragePooling2D and GlobalMaxPooling2D: one value per channel, (c) or with keepdims
 * (1, 1, c). Sums accumulate in double so large images lose no precision. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops.h"

enum { MAX_CHANNELS = 1 << 24 };

static cn_status global_pool_infer(cn_graph *g, cn_node *node) {
  const cn_global_pool_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  char buf[96];
  if (in->rank != 3)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(in, buf, sizeof buf));
  if (in->dim[2] > MAX_CHANNELS) return cn_fail(CN_ERR_LIMIT, "%s: too many channels", node->name);
  node->shape =
      a->keepdims ? cn_shape_make(3, (int64_t[]){1, 1, in->dim[2]}) : cn_shape_make(1, &in->dim[2]);
  return CN_OK;
}

/* Channels [0, n) of one image, summed (or maxed) pixel by pixel in double: each channel's sum
 * in pixel order, as one channel at a time would, but reading the image row by row (a channel
 * at a time strided through it, 5x slower at 7 x 7 x 256). */
enum { POOL_BLOCK = 256 };
static void pool_channels(const float *x, int64_t hw, int64_t c, int64_t n, int is_max, float *y) {
  double acc[POOL_BLOCK];
  for (int64_t j = 0; j < n; j++) acc[j] = is_max ? -INFINITY : 0.0;
  for (int64_t p = 0; p < hw; p++) {
    const float *row = x + p * c;
    if (is_max)
      for (int64_t j = 0; j < n; j++) acc[j] = fmax(acc[j], (double)row[j]);
    else
      for (int64_t j = 0; j < n; j++) acc[j] += (double)row[j];
  }
  for (int64_t j = 0; j < n; j++) y[j] = is_max ? (float)acc[j] : (float)(acc[j] / (double)hw);
}

static void global_pool(const cn_tensor *in, cn_tensor *out, int is_max, int threads) {
  int64_t batch = in->shape.dim[0], hw = in->shape.dim[1] * in->shape.dim[2];
  int64_t c = in->shape.dim[3];
#pragma omp parallel for num_threads(threads) schedule(static) if (batch > 1)
  for (int64_t b = 0; b < batch; b++) {
    const float *x = in->data + b * hw * c;
    float *y = out->data + b * c;
    for (int64_t j0 = 0; j0 < c; j0 += POOL_BLOCK)
      pool_channels(x + j0, hw, c, c - j0 < POOL_BLOCK ? c - j0 : POOL_BLOCK, is_max, y + j0);
  }
}

static void global_avgpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                                   const cn_exec *ex) {
  global_pool(&in[0], out, 0, ex->threads);
}

static void global_maxpool_forward(cn_node *node, const cn_tensor *in, cn_tensor *out,
                                   const cn_exec *ex) {
  global_pool(&in[0], out, 1, ex->threads);
}

/* Position of the first maximum of channel j among hw pixels (the one forward's fmax keeps). */
static int64_t first_max(const float *x, int64_t hw, int64_t c, int64_t j) {
  int64_t best = 0;
  for (int64_t p = 1; p < hw; p++)
    if (x[best * c + j] < x[p * c + j]) best = p;
  return best;
}

/* Average: every pixel gets dy / hw. Max: the first maximal pixel of each channel gets dy.
 * Images are disjoint, so splitting the batch across threads changes no sum. */
static void global_pool_backward(const cn_tensor *in, const cn_tensor *dout, float *dx, int is_max,
                                 int threads) {
  int64_t batch = in->shape.dim[0], hw = in->shape.dim[1] * in->shape.dim[2];
  int64_t c = in->shape.dim[3];
  if (!dx) return;
#pragma omp parallel for num_threads(threads) schedule(static) if (batch > 1)
  for (int64_t b = 0; b < batch; b++) {
    const float *x = in->data + b * hw * c, *dy = dout->data + b * c;
    float *d = dx + b * hw * c;
    if (is_max) {
      for (int64_t j = 0; j < c; j++) d[first_max(x, hw, c, j) * c + j] += dy[j];
      continue;
    }
    float inv = (float)(1.0 / (double)hw);
    for (int64_t p = 0; p < hw; p++)
      for (int64_t j = 0; j < c; j++) d[p * c + j] += dy[j] * inv;
  }
}

static void global_avgpool_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                                    const cn_tensor *dout, const cn_tensor *din,
                                    float *const *dparams, const cn_exec *ex) {
  global_pool_backward(&in[0], dout, din[0].data, 0, ex->threads);
}

static void global_maxpool_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                                    const cn_tensor *dout, const cn_tensor *din,
                                    float *const *dparams, const cn_exec *ex) {
  global_pool_backward(&in[0], dout, din[0].data, 1, ex->threads);
}

const cn_op cn_op_global_avgpool = {
    .type = "GlobalAveragePooling2D",
    .attrs_size = sizeof(cn_global_pool_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = global_pool_infer,
    .forward = global_avgpool_forward,
    .backward = global_avgpool_backward,
};

const cn_op cn_op_global_maxpool = {
    .type = "GlobalMaxPooling2D",
    .attrs_size = sizeof(cn_global_pool_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = global_pool_infer,
    .forward = global_maxpool_forward,
    .backward = global_maxpool_backward,
};
