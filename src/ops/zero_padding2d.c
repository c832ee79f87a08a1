/* ZeroPadding2D: zeros around the image, (top, bottom) rows and (left, right) columns. */
#include <string.h>

#include "core/error.h"
#include "kernels/kernels.h"
#include "ops/ops.h"

enum { MAX_PAD = 1 << 16 };

static int pad_ok(int p) {
  return p >= 0 && p <= MAX_PAD;
}

static cn_status zeropad_infer(cn_graph *g, cn_node *node) {
  const cn_zeropad_attrs *a = node->attrs;
  const cn_shape *in = &g->nodes[node->inputs[0]].shape;
  char buf[96];
  if (in->rank != 3)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(in, buf, sizeof buf));
  if (!pad_ok(a->top) || !pad_ok(a->bottom) || !pad_ok(a->left) || !pad_ok(a->right))
    return cn_fail(CN_ERR_FORMAT, "%s: bad padding (%d,%d),(%d,%d)", node->name, a->top, a->bottom,
                   a->left, a->right);
  node->shape = cn_shape_make(
      3, (int64_t[]){in->dim[0] + a->top + a->bottom, in->dim[1] + a->left + a->right, in->dim[2]});
  return CN_OK;
}

static void zeropad_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_zeropad_attrs *a = node->attrs;
  int64_t batch = in[0].shape.dim[0], ih = in[0].shape.dim[1], iw = in[0].shape.dim[2];
  int64_t c = in[0].shape.dim[3], oh = out->shape.dim[1], ow = out->shape.dim[2];
  memset(out->data, 0, (size_t)(batch * oh * ow * c) * sizeof(float));
  size_t row_bytes = (size_t)(iw * c) * sizeof(float);
  for (int64_t b = 0; b < batch; b++)
    for (int64_t y = 0; y < ih; y++)
      memcpy(out->data + ((b * oh + y + a->top) * ow + a->left) * c,
             in[0].data + (b * ih + y) * iw * c, row_bytes);
}

/* The gradient of the input is the interior of dout, row by row. */
static void zeropad_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                             const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                             const cn_exec *ex) {
  const cn_zeropad_attrs *a = node->attrs;
  int64_t batch = in[0].shape.dim[0], ih = in[0].shape.dim[1], iw = in[0].shape.dim[2];
  int64_t c = in[0].shape.dim[3], oh = dout->shape.dim[1], ow = dout->shape.dim[2];
  if (!din[0].data) return;
  for (int64_t b = 0; b < batch; b++)
    for (int64_t y = 0; y < ih; y++)
      cn_add_into(din[0].data + (b * ih + y) * iw * c,
                  dout->data + ((b * oh + y + a->top) * ow + a->left) * c, iw * c, 1);
}

const cn_op cn_op_zeropad = {
    .type = "ZeroPadding2D",
    .attrs_size = sizeof(cn_zeropad_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = zeropad_infer,
    .forward = zeropad_forward,
    .backward = zeropad_backward,
};
