/* The layer helpers behind every zoo builder: thin wrappers over cn_graph_add that fill the
 * attribute structs the way keras.layers defaults do, and keep the first failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "zoo/zoo.h"

int zoo_add(zoo_builder *b, const cn_op *op, const char *name, const char *auto_base,
            const int *inputs, int n_inputs, const void *attrs) {
  if (b->status != CN_OK) return -1;
  char auto_name[64];
  if (!name) name = cn_auto_name(&b->names, auto_base, auto_name, sizeof auto_name);
  int index = -1;
  b->status = cn_graph_add(b->g, op, name, inputs, n_inputs, attrs, &index);
  return b->status == CN_OK ? index : -1;
}

int zoo_input(zoo_builder *b, int height, int width) {
  cn_input_attrs a = {.shape = {.rank = 3, .dim = {height, width, 3}}};
  return zoo_add(b, &cn_op_input, NULL, "input_layer", NULL, 0, &a);
}

int zoo_conv(zoo_builder *b, const char *name, int in, int filters, int kh, int kw, int stride,
             cn_padding pad, int use_bias, cn_activation act) {
  cn_conv2d_attrs a = {.filters = filters,
                       .kh = kh,
                       .kw = kw,
                       .sh = stride,
                       .sw = stride,
                       .dh = 1,
                       .dw = 1,
                       .groups = 1,
                       .use_bias = use_bias,
                       .padding = pad,
                       .act = act};
  return zoo_add(b, &cn_op_conv2d, name, "conv2d", &in, 1, &a);
}

int zoo_depthwise(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad) {
  cn_depthwise_attrs a = {.kh = k,
                          .kw = k,
                          .sh = stride,
                          .sw = stride,
                          .dh = 1,
                          .dw = 1,
                          .depth_multiplier = 1,
                          .use_bias = 0,
                          .padding = pad,
                          .act = cn_act_linear()};
  return zoo_add(b, &cn_op_depthwise, name, "depthwise_conv2d", &in, 1, &a);
}

int zoo_bn(zoo_builder *b, const char *name, int in, float epsilon, int scale) {
  cn_batchnorm_attrs a = {.epsilon = epsilon, .center = 1, .scale = scale, .axis = -1};
  return zoo_add(b, &cn_op_batchnorm, name, "batch_normalization", &in, 1, &a);
}

/* Replaces the class name shown for a node (the op's own type by default). */
static void set_type(zoo_builder *b, int node, const char *type) {
  if (node < 0) return;
  char *copy = cn_strdup(type);
  if (!copy) {
    b->status = CN_ERR_NOMEM;
    return;
  }
  free(b->g->nodes[node].type);
  b->g->nodes[node].type = copy;
}

int zoo_act(zoo_builder *b, const char *name, int in, cn_activation act, const char *type) {
  const char *base = strcmp(type, "ReLU") == 0 ? "re_lu" : "activation";
  int node = zoo_add(b, &cn_op_activation, name, base, &in, 1, &act);
  set_type(b, node, type);
  return b->status == CN_OK ? node : -1;
}

int zoo_zeropad(zoo_builder *b, const char *name, int in, int top, int bottom, int left,
                int right) {
  cn_zeropad_attrs a = {.top = top, .bottom = bottom, .left = left, .right = right};
  return zoo_add(b, &cn_op_zeropad, name, "zero_padding2d", &in, 1, &a);
}

int zoo_maxpool(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad) {
  cn_pool_attrs a = {.ph = k, .pw = k, .sh = stride, .sw = stride, .padding = pad};
  return zoo_add(b, &cn_op_maxpool, name, "max_pooling2d", &in, 1, &a);
}

int zoo_avgpool(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad) {
  cn_pool_attrs a = {.ph = k, .pw = k, .sh = stride, .sw = stride, .padding = pad};
  return zoo_add(b, &cn_op_avgpool, name, "average_pooling2d", &in, 1, &a);
}

int zoo_global_pool(zoo_builder *b, const char *name, int in, int max, int keepdims) {
  cn_global_pool_attrs a = {.keepdims = keepdims};
  if (max) return zoo_add(b, &cn_op_global_maxpool, name, "global_max_pooling2d", &in, 1, &a);
  return zoo_add(b, &cn_op_global_avgpool, name, "global_average_pooling2d", &in, 1, &a);
}

int zoo_dense(zoo_builder *b, const char *name, int in, int units, cn_activation act) {
  cn_dense_attrs a = {.units = units, .use_bias = 1, .act = act};
  return zoo_add(b, &cn_op_dense, name, "dense", &in, 1, &a);
}

int zoo_flatten(zoo_builder *b, const char *name, int in) {
  return zoo_add(b, &cn_op_flatten, name, "flatten", &in, 1, NULL);
}

int zoo_reshape1(zoo_builder *b, const char *name, int in, int units) {
  cn_reshape_attrs a = {.target = {.rank = 1, .dim = {units}}};
  return zoo_add(b, &cn_op_reshape, name, "reshape", &in, 1, &a);
}

int zoo_dropout(zoo_builder *b, const char *name, int in, float rate) {
  cn_dropout_attrs a = {.rate = rate};
  return zoo_add(b, &cn_op_dropout, name, "dropout", &in, 1, &a);
}

int zoo_add2(zoo_builder *b, const char *name, int a, int c) {
  cn_merge_attrs attrs = {.kind = CN_MERGE_ADD};
  int inputs[2] = {a, c};
  return zoo_add(b, &cn_op_merge, name, "add", inputs, 2, &attrs);
}

int zoo_concat(zoo_builder *b, const char *name, const int *inputs, int n_inputs) {
  cn_concat_attrs a = {.axis = -1};
  return zoo_add(b, &cn_op_concat, name, "concatenate", inputs, n_inputs, &a);
}

int zoo_pooling_top(zoo_builder *b, const zoo_config *c, int in, const char *avg_name,
                    const char *max_name) {
  if (c->pooling == ZOO_POOL_AVG) return zoo_global_pool(b, avg_name, in, 0, 0);
  if (c->pooling == ZOO_POOL_MAX) return zoo_global_pool(b, max_name, in, 1, 0);
  return in;
}

int zoo_channels(const zoo_builder *b, int node) {
  if (b->status != CN_OK || node < 0) return 0;
  const cn_shape *s = &b->g->nodes[node].shape;
  return (int)s->dim[s->rank - 1];
}

int64_t zoo_dim(const zoo_builder *b, int node, int axis) {
  if (b->status != CN_OK || node < 0) return 0;
  return b->g->nodes[node].shape.dim[axis];
}
