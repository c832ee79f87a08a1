/* The public layer-by-layer builder (convnet/layers.h): each call fills an op's attribute struct
 * the way keras.layers defaults do and adds one node; the first failure sticks. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/layers.h"
#include "core/error.h"
#include "core/mem.h"
#include "model/init.h"
#include "model/model.h"
#include "model/net.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"

static const cn_sym invalid = {-1, 0};

cn_status cn_net_new(const char *name, cn_net **out) {
  static atomic_uint next_id = 1;
  if (!out) return cn_fail(CN_ERR_ARG, "cn_net_new: NULL output");
  *out = NULL;
  cn_net *net = calloc(1, sizeof *net);
  if (!net) return cn_fail(CN_ERR_NOMEM, "out of memory");
  net->name = cn_strdup(name && *name ? name : "model");
  net->g = cn_graph_new();
  net->id = atomic_fetch_add(&next_id, 1);
  if (!net->name || !net->g) {
    cn_net_free(net);
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  *out = net;
  return CN_OK;
}

void cn_net_free(cn_net *net) {
  if (!net) return;
  cn_graph_free(net->g);
  free(net->name);
  free(net);
}

cn_status cn_net_status(const cn_net *net) {
  return net ? net->status : CN_ERR_ARG;
}

/* Records the first failure (the message cn_fail just set) and returns the invalid symbol. */
cn_sym cn_net_failed(cn_net *net, cn_status st) {
  if (net->status == CN_OK) {
    net->status = st;
    snprintf(net->error, sizeof net->error, "%s", cn_last_error());
  }
  return invalid;
}

/* A symbol made by this net for one of its layers. */
int cn_net_valid(const cn_net *net, cn_sym s) {
  return s.net == net->id && s.node >= 0 && s.node < net->g->n_nodes;
}

cn_sym cn_net_add_node(cn_net *net, const cn_op *op, const char *name, const char *base,
                       const cn_sym *xs, int n, const void *attrs) {
  if (!net || net->status != CN_OK) return invalid;
  char auto_buf[64];
  if (!name) name = cn_auto_name(&net->names, base, auto_buf, sizeof auto_buf);
  if (cn_graph_find(net->g, name) >= 0)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: a layer of that name exists already", name));
  int inputs[MAX_MERGE];
  if (n > MAX_MERGE)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: more than %d inputs", name, MAX_MERGE));
  for (int i = 0; i < n; i++) {
    if (!cn_net_valid(net, xs[i]))
      return cn_net_failed(net,
                           cn_fail(CN_ERR_ARG,
                                   "%s: input %d is not a layer output of this net (used before it "
                                   "was defined, or from another net)",
                                   name, i));
    inputs[i] = xs[i].node;
  }
  int index;
  cn_status st = cn_graph_add(net->g, op, name, inputs, n, attrs, &index);
  if (st != CN_OK) return cn_net_failed(net, st);
  return (cn_sym){index, net->id};
}

/* The node just added, to set its initializers. */
static cn_status set_init(cn_net *net, cn_sym s, const char *param, const char *initializer) {
  if (!initializer || s.node < 0) return CN_OK;
  cn_node *n = &net->g->nodes[s.node];
  cn_param *p = cn_node_find_param(n, param);
  if (!p) return CN_OK; /* no bias with no_bias */
  if (!cn_init_by_name(initializer, &p->init))
    return cn_fail(CN_ERR_ARG, "%s: unknown initializer \"%.64s\"", n->name, initializer);
  return CN_OK;
}

static cn_sym with_inits(cn_net *net, cn_sym s, const char *p1, const char *i1, const char *p2,
                         const char *i2) {
  if (s.node < 0) return s;
  cn_status st = set_init(net, s, p1, i1);
  if (st == CN_OK) st = set_init(net, s, p2, i2);
  return st == CN_OK ? s : cn_net_failed(net, st);
}

static cn_status parse_act(const char *layer, const char *name, cn_activation *act) {
  if (!name) {
    *act = cn_act_linear();
    return CN_OK;
  }
  cn_status st = cn_act_parse(name, act);
  return st == CN_OK ? CN_OK : cn_fail_context(st, "%s", layer ? layer : "layer");
}

static cn_status parse_padding(const char *layer, const char *name, cn_padding *pad) {
  if (!name || strcmp(name, "valid") == 0) {
    *pad = CN_PAD_VALID;
  } else if (strcmp(name, "same") == 0) {
    *pad = CN_PAD_SAME;
  } else {
    return cn_fail(CN_ERR_ARG, "%s: padding must be \"valid\" or \"same\", not \"%.32s\"",
                   layer ? layer : "layer", name);
  }
  return CN_OK;
}

/* ---- shared layers (cn_net_call) ------------------------------------------------------------ */

/* "<layer>/call<k>" for the first k >= 1 no layer has. */
static void call_name(const cn_graph *g, const char *layer, char *buf, size_t cap) {
  int k = 1;
  do snprintf(buf, cap, "%.1000s/call%d", layer, k++);
  while (cn_graph_find(g, buf) >= 0 && k < (1 << 20));
}

cn_sym cn_net_call(cn_net *net, const char *layer, const cn_sym *inputs, int n_inputs) {
  if (!net || net->status != CN_OK) return invalid;
  if (!layer) return cn_net_failed(net, cn_fail(CN_ERR_ARG, "cn_net_call: NULL layer name"));
  int owner = cn_graph_find(net->g, layer);
  if (owner < 0)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG,
                                      "%.200s: no such layer to call again (make it before calling "
                                      "it)",
                                      layer));
  /* the calls of a layer are named after the layer that owns the weights */
  if (net->g->nodes[owner].shares >= 0) owner = net->g->nodes[owner].shares;
  char name[1200];
  call_name(net->g, net->g->nodes[owner].name, name, sizeof name);
  if (n_inputs < 0 || n_inputs > MAX_MERGE || (n_inputs > 0 && !inputs))
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: 0 to %d inputs", name, MAX_MERGE));
  int idx[MAX_MERGE], at;
  for (int i = 0; i < n_inputs; i++) {
    cn_sym s = inputs[i];
    if (!cn_net_valid(net, s))
      return cn_net_failed(net, cn_fail(CN_ERR_ARG,
                                        "%s: input %d is not a layer output of this net (used "
                                        "before it was defined, or from another net)",
                                        name, i));
    idx[i] = s.node;
  }
  cn_status st = cn_graph_add_shared(net->g, owner, name, idx, n_inputs, NULL, &at);
  return st == CN_OK ? (cn_sym){at, net->id} : cn_net_failed(net, st);
}

static int or1(int v) {
  return v ? v : 1;
}

cn_sym cn_net_input(cn_net *net, const char *name, int rank, const int64_t *dims) {
  if (!net || net->status != CN_OK) return invalid;
  if (rank < 0 || rank >= CN_MAX_RANK || (rank > 0 && !dims))
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: an input has rank 0 to %d",
                                      name ? name : "input", CN_MAX_RANK - 1));
  cn_input_attrs a = {.shape = cn_shape_make(rank, dims)};
  return cn_net_add_node(net, &cn_op_input, name, "input_layer", NULL, 0, &a);
}

cn_sym cn_net_conv2d(cn_net *net, cn_sym x, const cn_conv2d_options *o) {
  if (!net || net->status != CN_OK) return invalid;
  cn_conv2d_attrs a = {.filters = o->filters,
                       .kh = o->kernel_size[0],
                       .kw = o->kernel_size[1],
                       .sh = or1(o->strides[0]),
                       .sw = or1(o->strides[1]),
                       .dh = or1(o->dilation_rate[0]),
                       .dw = or1(o->dilation_rate[1]),
                       .groups = or1(o->groups),
                       .use_bias = !o->no_bias};
  cn_status st = parse_padding(o->name, o->padding, &a.padding);
  if (st == CN_OK) st = parse_act(o->name, o->activation, &a.act);
  if (st != CN_OK) return cn_net_failed(net, st);
  cn_sym s = cn_net_add_node(net, &cn_op_conv2d, o->name, "conv2d", &x, 1, &a);
  return with_inits(net, s, "kernel", o->kernel_initializer, "bias", o->bias_initializer);
}

cn_sym cn_net_depthwise_conv2d(cn_net *net, cn_sym x, const cn_depthwise_conv2d_options *o) {
  if (!net || net->status != CN_OK) return invalid;
  cn_depthwise_attrs a = {.kh = o->kernel_size[0],
                          .kw = o->kernel_size[1],
                          .sh = or1(o->strides[0]),
                          .sw = or1(o->strides[1]),
                          .dh = or1(o->dilation_rate[0]),
                          .dw = or1(o->dilation_rate[1]),
                          .depth_multiplier = or1(o->depth_multiplier),
                          .use_bias = !o->no_bias};
  cn_status st = parse_padding(o->name, o->padding, &a.padding);
  if (st == CN_OK) st = parse_act(o->name, o->activation, &a.act);
  if (st != CN_OK) return cn_net_failed(net, st);
  cn_sym s = cn_net_add_node(net, &cn_op_depthwise, o->name, "depthwise_conv2d", &x, 1, &a);
  return with_inits(net, s, "depthwise_kernel", o->depthwise_initializer, "bias",
                    o->bias_initializer);
}

/* Keras's output sizes become explicit pads and output padding of the op. */
static cn_status transpose_geometry(const cn_net *net, cn_sym x, const char *name,
                                    const cn_conv2d_transpose_options *o, cn_padding pad,
                                    cn_conv_transpose_attrs *a) {
  if (!cn_net_valid(net, x)) return CN_OK; /* add() names the bad input */
  const cn_shape *s = &net->g->nodes[x.node].shape;
  if (s->rank != 3)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input",
                   name ? name : "conv2d_transpose");
  int oh = o->has_output_padding ? o->output_padding[0] : -1,
      ow = o->has_output_padding ? o->output_padding[1] : -1;
  if (cn_conv_transpose_keras_axis(s->dim[0], a->kh, a->sh, a->dh, pad, oh, &a->pad_top,
                                   &a->pad_bottom, &a->out_pad_h) != 0 ||
      cn_conv_transpose_keras_axis(s->dim[1], a->kw, a->sw, a->dw, pad, ow, &a->pad_left,
                                   &a->pad_right, &a->out_pad_w) != 0)
    return cn_fail(CN_ERR_SHAPE, "%s: the output would be empty or too large",
                   name ? name : "conv2d_transpose");
  return CN_OK;
}

cn_sym cn_net_conv2d_transpose(cn_net *net, cn_sym x, const cn_conv2d_transpose_options *o) {
  if (!net || net->status != CN_OK) return invalid;
  cn_conv_transpose_attrs a = {.filters = o->filters,
                               .kh = o->kernel_size[0],
                               .kw = o->kernel_size[1],
                               .sh = or1(o->strides[0]),
                               .sw = or1(o->strides[1]),
                               .dh = or1(o->dilation_rate[0]),
                               .dw = or1(o->dilation_rate[1]),
                               .groups = 1,
                               .use_bias = !o->no_bias};
  cn_padding pad = CN_PAD_VALID;
  cn_activation act;
  cn_status st = parse_padding(o->name, o->padding, &pad);
  if (st == CN_OK) st = parse_act(o->name, o->activation, &act);
  if (st == CN_OK) st = transpose_geometry(net, x, o->name, o, pad, &a);
  if (st != CN_OK) return cn_net_failed(net, st);
  cn_sym s = cn_net_add_node(net, &cn_op_conv_transpose, o->name, "conv2d_transpose", &x, 1, &a);
  s = with_inits(net, s, "kernel", o->kernel_initializer, "bias", o->bias_initializer);
  if (s.node < 0 || act.kind == CN_ACT_LINEAR) return s;
  char name[300];
  snprintf(name, sizeof name, "%.280s/activation", net->g->nodes[s.node].name);
  return cn_net_add_node(net, &cn_op_activation, name, "activation", &s, 1, &act);
}

cn_sym cn_net_upsampling2d(cn_net *net, cn_sym x, const int size[2], const char *interpolation,
                           const char *name) {
  if (!net || net->status != CN_OK) return invalid;
  cn_resize_attrs a = {.scale_h = size && size[0] ? (float)size[0] : 2.0f,
                       .scale_w = size && size[1] ? (float)size[1] : 2.0f};
  if (!interpolation || strcmp(interpolation, "nearest") == 0) {
    a.mode = CN_RESIZE_MODE_NEAREST, a.coord = CN_COORD_ASYMMETRIC, a.nearest = CN_NEAREST_FLOOR;
  } else if (strcmp(interpolation, "bilinear") == 0) {
    a.mode = CN_RESIZE_MODE_LINEAR, a.coord = CN_COORD_HALF_PIXEL;
  } else {
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: interpolation must be nearest or bilinear",
                                      name ? name : "up_sampling2d"));
  }
  return cn_net_add_node(net, &cn_op_resize, name, "up_sampling2d", &x, 1, &a);
}

cn_sym cn_net_dense(cn_net *net, cn_sym x, const cn_dense_options *o) {
  if (!net || net->status != CN_OK) return invalid;
  cn_dense_attrs a = {.units = o->units, .use_bias = !o->no_bias};
  cn_status st = parse_act(o->name, o->activation, &a.act);
  if (st == CN_OK && o->units < 1)
    st = cn_fail(CN_ERR_ARG, "%s: units must be positive", o->name ? o->name : "dense");
  if (st != CN_OK) return cn_net_failed(net, st);
  cn_sym s = cn_net_add_node(net, &cn_op_dense, o->name, "dense", &x, 1, &a);
  return with_inits(net, s, "kernel", o->kernel_initializer, "bias", o->bias_initializer);
}

static cn_sym pool(cn_net *net, cn_sym x, const cn_pool2d_options *o, const cn_op *op,
                   const char *base) {
  if (!net || net->status != CN_OK) return invalid;
  int ph = o->pool_size[0] ? o->pool_size[0] : 2, pw = o->pool_size[1] ? o->pool_size[1] : 2;
  cn_pool_attrs a = {.ph = ph,
                     .pw = pw,
                     .sh = o->strides[0] ? o->strides[0] : ph,
                     .sw = o->strides[1] ? o->strides[1] : pw};
  cn_status st = parse_padding(o->name, o->padding, &a.padding);
  if (st != CN_OK) return cn_net_failed(net, st);
  return cn_net_add_node(net, op, o->name, base, &x, 1, &a);
}

cn_sym cn_net_max_pool2d(cn_net *net, cn_sym x, const cn_pool2d_options *o) {
  return pool(net, x, o, &cn_op_maxpool, "max_pooling2d");
}

cn_sym cn_net_avg_pool2d(cn_net *net, cn_sym x, const cn_pool2d_options *o) {
  return pool(net, x, o, &cn_op_avgpool, "average_pooling2d");
}

cn_sym cn_net_global_avg_pool2d(cn_net *net, cn_sym x, const char *name) {
  cn_global_pool_attrs a = {0};
  return cn_net_add_node(net, &cn_op_global_avgpool, name, "global_average_pooling2d", &x, 1, &a);
}

cn_sym cn_net_global_max_pool2d(cn_net *net, cn_sym x, const char *name) {
  cn_global_pool_attrs a = {0};
  return cn_net_add_node(net, &cn_op_global_maxpool, name, "global_max_pooling2d", &x, 1, &a);
}

cn_sym cn_net_batch_norm(cn_net *net, cn_sym x, const cn_batch_norm_options *o) {
  cn_batchnorm_attrs a = {.epsilon = o->epsilon > 0 ? o->epsilon : 1e-3f,
                          .center = !o->no_center,
                          .scale = !o->no_scale,
                          .axis = o->axis ? o->axis : -1,
                          .momentum = o->momentum};
  return cn_net_add_node(net, &cn_op_batchnorm, o->name, "batch_normalization", &x, 1, &a);
}

cn_sym cn_net_dropout(cn_net *net, cn_sym x, float rate, const char *name) {
  if (net && net->status == CN_OK && !(rate >= 0 && rate < 1))
    return cn_net_failed(
        net, cn_fail(CN_ERR_ARG, "%s: dropout rate must be in [0, 1)", name ? name : "dropout"));
  cn_dropout_attrs a = {.rate = rate};
  return cn_net_add_node(net, &cn_op_dropout, name, "dropout", &x, 1, &a);
}

cn_sym cn_net_activation(cn_net *net, cn_sym x, const char *activation, const char *name) {
  if (!net || net->status != CN_OK) return invalid;
  cn_activation a;
  cn_status st = parse_act(name, activation, &a);
  if (st != CN_OK) return cn_net_failed(net, st);
  return cn_net_add_node(net, &cn_op_activation, name, "activation", &x, 1, &a);
}

cn_sym cn_net_leaky_relu(cn_net *net, cn_sym x, float slope, const char *name) {
  cn_activation a = cn_act_relu();
  a.negative_slope = slope ? slope : 0.3f;
  return cn_net_add_node(net, &cn_op_activation, name, "leaky_re_lu", &x, 1, &a);
}

cn_sym cn_net_flatten(cn_net *net, cn_sym x, const char *name) {
  return cn_net_add_node(net, &cn_op_flatten, name, "flatten", &x, 1, NULL);
}

cn_sym cn_net_reshape(cn_net *net, cn_sym x, int rank, const int64_t *dims, const char *name) {
  if (!net || net->status != CN_OK) return invalid;
  if (rank < 1 || rank >= CN_MAX_RANK || !dims)
    return cn_net_failed(net, cn_fail(CN_ERR_ARG, "%s: a target of rank 1 to %d",
                                      name ? name : "reshape", CN_MAX_RANK - 1));
  cn_reshape_attrs a = {.target = cn_shape_make(rank, dims)};
  return cn_net_add_node(net, &cn_op_reshape, name, "reshape", &x, 1, &a);
}

cn_sym cn_net_zero_padding2d(cn_net *net, cn_sym x, int top, int bottom, int left, int right,
                             const char *name) {
  cn_zeropad_attrs a = {top, bottom, left, right};
  return cn_net_add_node(net, &cn_op_zeropad, name, "zero_padding2d", &x, 1, &a);
}

cn_sym cn_net_concatenate(cn_net *net, const cn_sym *xs, int n, int axis, const char *name) {
  cn_concat_attrs a = {.axis = axis ? axis : -1};
  return cn_net_add_node(net, &cn_op_concat, name, "concatenate", xs, n, &a);
}

static cn_sym merge(cn_net *net, const cn_sym *xs, int n, cn_merge_kind kind, const char *base,
                    const char *name) {
  cn_merge_attrs a = {.kind = kind};
  return cn_net_add_node(net, &cn_op_merge, name, base, xs, n, &a);
}

cn_sym cn_net_add(cn_net *net, const cn_sym *xs, int n, const char *name) {
  return merge(net, xs, n, CN_MERGE_ADD, "add", name);
}

cn_sym cn_net_subtract(cn_net *net, cn_sym a, cn_sym b, const char *name) {
  cn_sym xs[2] = {a, b};
  return merge(net, xs, 2, CN_MERGE_SUBTRACT, "subtract", name);
}

cn_sym cn_net_multiply(cn_net *net, const cn_sym *xs, int n, const char *name) {
  return merge(net, xs, n, CN_MERGE_MULTIPLY, "multiply", name);
}

cn_sym cn_net_average(cn_net *net, const cn_sym *xs, int n, const char *name) {
  return merge(net, xs, n, CN_MERGE_AVERAGE, "average", name);
}

cn_sym cn_net_maximum(cn_net *net, const cn_sym *xs, int n, const char *name) {
  return merge(net, xs, n, CN_MERGE_MAXIMUM, "maximum", name);
}

cn_sym cn_net_minimum(cn_net *net, const cn_sym *xs, int n, const char *name) {
  return merge(net, xs, n, CN_MERGE_MINIMUM, "minimum", name);
}
