/* BatchNormalization folding: conv -> BN becomes one conv with scaled kernel and shifted bias. */
#include "model/fuse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "kernels/kernels.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"

static int readers(const cn_graph *g, int node) {
  int count = 0;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_inputs; k++) count += g->nodes[i].inputs[k] == node;
  return count;
}

static int is_output(const cn_graph *g, int node) {
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] == node) return 1;
  return 0;
}

/* The fused activation of a convolution (or, with dense, a Dense) node; NULL for other ops. */
static cn_activation *fused_activation(cn_node *n, int dense) {
  if (n->op == &cn_op_conv2d || n->op == &cn_op_conv2d_add)
    return &((cn_conv2d_attrs *)n->attrs)->act;
  if (n->op == &cn_op_depthwise) return &((cn_depthwise_attrs *)n->attrs)->act;
  if (dense && n->op == &cn_op_dense) return &((cn_dense_attrs *)n->attrs)->act;
  return NULL;
}

/* Node p may absorb what follows it: linear, read only by that one node, not a graph output. */
static int absorbable(cn_graph *g, int p, int dense) {
  const cn_activation *act = fused_activation(&g->nodes[p], dense);
  return act && act->kind == CN_ACT_LINEAR && !is_output(g, p) && readers(g, p) == 1;
}

static int *conv_use_bias(cn_node *n) {
  if (n->op == &cn_op_conv2d) return &((cn_conv2d_attrs *)n->attrs)->use_bias;
  return &((cn_depthwise_attrs *)n->attrs)->use_bias;
}

/* The producer index when node i is a foldable BatchNormalization, else -1. */
static int foldable(cn_graph *g, int i) {
  const cn_node *bn = &g->nodes[i];
  if (bn->op != &cn_op_batchnorm || bn->n_inputs != 1) return -1;
  int p = bn->inputs[0];
  const cn_batchnorm_attrs *a = bn->attrs;
  /* folding rewrites the convolution's weights: not those of a layer called more than once */
  if (!absorbable(g, p, 0) || cn_graph_node_shared(g, p) || cn_graph_node_shared(g, i)) return -1;
  if (cn_axis_resolve(a->axis, g->nodes[p].shape.rank) != g->nodes[p].shape.rank - 1) return -1;
  return p;
}

static cn_status realloc_params(cn_graph *g);

/* Adds a zero bias to convolutions about to absorb a BN shift; keeps every parameter's values
 * across the reallocation of the parameter buffer. */
static cn_status add_missing_biases(cn_graph *g) {
  int added = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    int p = foldable(g, i);
    if (p < 0 || *conv_use_bias(&g->nodes[p])) continue;
    cn_node *conv = &g->nodes[p];
    cn_status st = cn_node_add_param(conv, "bias", cn_shape_make(1, &conv->shape.dim[2]));
    if (st != CN_OK) return st;
    *conv_use_bias(conv) = 1;
    added = 1;
  }
  return added ? realloc_params(g) : CN_OK;
}

/* Reallocates the parameter buffer after parameters were declared (cn_node_add_param), keeping
 * the values of those that had some. */
static cn_status realloc_params(cn_graph *g) {
  float **old = calloc((size_t)g->n_nodes * CN_MAX_PARAMS, sizeof *old);
  if (!old) return cn_fail(CN_ERR_NOMEM, "out of memory folding layers");
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params; k++)
      old[i * CN_MAX_PARAMS + k] = g->nodes[i].params[k].data;
  float *old_buffer = g->params;
  g->params = NULL;
  cn_status st = cn_graph_alloc_params(g);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params; k++) {
      const float *src = old[i * CN_MAX_PARAMS + k];
      cn_param *dst = &g->nodes[i].params[k];
      if (src) memcpy(dst->data, src, (size_t)cn_shape_numel(&dst->shape) * sizeof(float));
    }
  if (st != CN_OK)
    g->params = old_buffer; /* pointers still valid: nothing changed */
  else
    cn_free_aligned(old_buffer);
  free(old);
  return st;
}

/* Scales the kernel's output columns and folds the shift into the bias. */
static void fold_weights(cn_node *conv, const cn_node *bn) {
  const cn_batchnorm_attrs *a = bn->attrs;
  int p = 0;
  const float *gamma = a->scale ? bn->params[p++].data : NULL;
  const float *beta = a->center ? bn->params[p++].data : NULL;
  const float *mean = bn->params[p].data, *var = bn->params[p + 1].data;
  float *kernel = conv->params[0].data, *bias = conv->params[1].data;
  int64_t oc = conv->shape.dim[2], rows = cn_shape_numel(&conv->params[0].shape) / oc;
  for (int64_t j = 0; j < oc; j++) {
    float inv = 1.0f / sqrtf(var[j] + a->epsilon);
    if (gamma) inv *= gamma[j];
    for (int64_t r = 0; r < rows; r++) kernel[r * oc + j] *= inv;
    bias[j] = bias[j] * inv + ((beta ? beta[j] : 0.0f) - mean[j] * inv);
  }
}

static int remap(int index, int removed, int replacement) {
  if (index == removed) return replacement;
  return index > removed ? index - 1 : index;
}

/* Removes node i, whose readers now read `replacement` (an earlier node). */
static cn_status remove_node(cn_graph *g, int i, int replacement) {
  cn_node_release(&g->nodes[i]);
  memmove(&g->nodes[i], &g->nodes[i + 1], (size_t)(g->n_nodes - i - 1) * sizeof *g->nodes);
  g->n_nodes--;
  for (int n = i; n < g->n_nodes; n++) {
    for (int k = 0; k < g->nodes[n].n_inputs; k++)
      g->nodes[n].inputs[k] = remap(g->nodes[n].inputs[k], i, replacement);
    if (g->nodes[n].shares > i) g->nodes[n].shares--; /* never i: shared nodes are not removed */
  }
  for (int k = 0; k < g->n_inputs; k++) g->inputs[k] = remap(g->inputs[k], i, replacement);
  int outputs[CN_MAX_GRAPH_IO];
  for (int k = 0; k < g->n_outputs; k++) outputs[k] = remap(g->outputs[k], i, replacement);
  return cn_graph_set_outputs(g, outputs, g->n_outputs); /* also drops the memory plan */
}

/* Graph outputs are pinned before nodes move (the default output is "the last node"). */
static cn_status pin_outputs(cn_graph *g) {
  if (g->n_outputs > 0 || g->n_nodes == 0) return CN_OK;
  int last = g->n_nodes - 1;
  return cn_graph_set_outputs(g, &last, 1);
}

static int activation_foldable(cn_graph *g, int i) {
  const cn_node *n = &g->nodes[i];
  const cn_activation *act = n->attrs;
  if (n->op != &cn_op_activation || n->n_inputs != 1 || act->kind == CN_ACT_SOFTMAX) return 0;
  /* another call of this layer would lose its owner; the producer's attrs are its own */
  return !cn_graph_node_shared(g, i) && absorbable(g, n->inputs[0], 1);
}

/* The padding a convolution adds itself: NULL when node c cannot take a ZeroPadding2D in (not a
 * convolution, SAME padding, padded already, or a shared layer). */
static cn_conv_pads *conv_pads(cn_graph *g, int c) {
  cn_node *n = &g->nodes[c];
  cn_conv_pads *p = NULL;
  cn_padding mode = CN_PAD_SAME;
  if (n->op == &cn_op_conv2d) {
    cn_conv2d_attrs *a = n->attrs;
    p = &a->pads, mode = a->padding;
  } else if (n->op == &cn_op_depthwise) {
    cn_depthwise_attrs *a = n->attrs;
    p = &a->pads, mode = a->padding;
  }
  if (!p || mode != CN_PAD_VALID || p->top || p->bottom || p->left || p->right) return NULL;
  return cn_graph_node_shared(g, c) ? NULL : p;
}

/* The zero rows and columns node i adds around an (h, w, c) activation: a ZeroPadding2D, or a
 * constant-zero Pad of the two spatial axes only (ONNX: what PyTorch exports before an average
 * pooling that counts the padding). 0 when it is neither, or crops. */
static int zero_padding(const cn_node *n, cn_conv_pads *out) {
  if (n->op == &cn_op_zeropad) {
    const cn_zeropad_attrs *z = n->attrs;
    *out = (cn_conv_pads){z->top, z->bottom, z->left, z->right};
  } else if (n->op == &cn_op_pad) {
    const cn_pad_attrs *p = n->attrs;
    if (p->mode != CN_PADMODE_CONSTANT || p->value != 0.0f || p->rank != 3 || p->begin[2] ||
        p->end[2])
      return 0;
    for (int k = 0; k < 2; k++)
      if (p->begin[k] > INT32_MAX || p->end[k] > INT32_MAX) return 0;
    *out = (cn_conv_pads){(int)p->begin[0], (int)p->end[0], (int)p->begin[1], (int)p->end[1]};
  } else {
    return 0;
  }
  return out->top >= 0 && out->bottom >= 0 && out->left >= 0 && out->right >= 0;
}

/* An average pooling over valid windows only (no pads of its own, Keras's behaviour), which can
 * take zero padding as explicit pads that count in the divisor: the same averages. */
static cn_pool_attrs *pool_pads(cn_graph *g, int c) {
  cn_node *n = &g->nodes[c];
  if (n->op != &cn_op_avgpool || cn_graph_node_shared(g, c)) return NULL;
  cn_pool_attrs *a = n->attrs;
  int plain = a->padding == CN_PAD_VALID && !a->pad_top && !a->pad_left && !a->pad_bottom &&
              !a->pad_right && !a->ceil_mode && !a->count_include_pad && a->dh <= 1 && a->dw <= 1 &&
              !a->indices;
  return plain ? a : NULL;
}

/* The convolution or average pooling reading node i when i is zero padding it can absorb, else
 * -1. */
static int padding_foldable(cn_graph *g, int i) {
  const cn_node *n = &g->nodes[i];
  cn_conv_pads pads;
  if (n->n_inputs != 1 || !zero_padding(n, &pads) || is_output(g, i) || readers(g, i) != 1 ||
      cn_graph_node_shared(g, i))
    return -1;
  for (int c = i + 1; c < g->n_nodes; c++)
    if (g->nodes[c].n_inputs == 1 && g->nodes[c].inputs[0] == i)
      return conv_pads(g, c) || pool_pads(g, c) ? c : -1;
  return -1;
}

cn_status cn_graph_fold_padding(cn_graph *g) {
  cn_status st = pin_outputs(g);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++) {
    int c = padding_foldable(g, i);
    if (c < 0) continue;
    cn_conv_pads pads;
    zero_padding(&g->nodes[i], &pads);
    cn_conv_pads *conv = conv_pads(g, c);
    if (conv) {
      *conv = pads;
    } else {
      cn_pool_attrs *pool = pool_pads(g, c);
      pool->pad_top = pads.top, pool->pad_bottom = pads.bottom;
      pool->pad_left = pads.left, pool->pad_right = pads.right;
      pool->count_include_pad = 1;
    }
    st = remove_node(g, i, g->nodes[i].inputs[0]);
    i--;
  }
  return st;
}

/* Whether node i adds exactly two activations of its own shape, elementwise. */
static int is_plain_add(const cn_graph *g, int i) {
  const cn_node *n = &g->nodes[i];
  if (n->n_inputs != 2) return 0;
  for (int k = 0; k < 2; k++)
    if (!cn_shape_equal(&g->nodes[n->inputs[k]].shape, &n->shape)) return 0;
  if (n->op == &cn_op_merge) return ((const cn_merge_attrs *)n->attrs)->kind == CN_MERGE_ADD;
  if (n->op != &cn_op_binary) return 0;
  const cn_binary_attrs *b = n->attrs;
  return b->kind == CN_BIN_ADD && b->const_operand == CN_CONST_NONE;
}

/* The convolution that can absorb Add node i, else -1: the later input (the other is computed
 * by then), a plain Conv2D with a linear activation, read by this Add only. */
static int residual_foldable(cn_graph *g, int i) {
  if (!is_plain_add(g, i) || cn_graph_node_shared(g, i)) return -1;
  const int *in = g->nodes[i].inputs;
  int p = in[0] > in[1] ? in[0] : in[1];
  if (in[0] == in[1] || g->nodes[p].op != &cn_op_conv2d || cn_graph_node_shared(g, p)) return -1;
  return absorbable(g, p, 0) ? p : -1;
}

cn_status cn_graph_fold_residual(cn_graph *g) {
  cn_status st = pin_outputs(g);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++) {
    int p = residual_foldable(g, i);
    if (p < 0) continue;
    cn_node *conv = &g->nodes[p];
    const int *in = g->nodes[i].inputs;
    int *inputs = realloc(conv->inputs, 2 * sizeof *inputs);
    char *type = cn_strdup(cn_op_conv2d_add.type);
    if (!inputs || !type) {
      if (inputs) conv->inputs = inputs;
      free(type);
      return cn_fail(CN_ERR_NOMEM, "out of memory folding a residual sum");
    }
    inputs[1] = in[0] == p ? in[1] : in[0];
    conv->inputs = inputs, conv->n_inputs = 2, conv->op = &cn_op_conv2d_add;
    free(conv->type);
    conv->type = type;
    st = remove_node(g, i, p);
    i--;
  }
  return st;
}

/* Whether a convolution is 1x1, stride 1, unpadded and ungrouped. */
static int plain_pointwise(const cn_node *n) {
  if (n->op != &cn_op_conv2d && n->op != &cn_op_conv2d_add) return 0;
  const cn_conv2d_attrs *a = n->attrs;
  const cn_conv_pads *p = &a->pads;
  return a->kh == 1 && a->kw == 1 && a->sh == 1 && a->sw == 1 && a->groups == 1 && !p->top &&
         !p->bottom && !p->left && !p->right;
}

/* Node `at` may be folded into its only reader: not a graph output, not shared. */
static int single_use(cn_graph *g, int at) {
  return !is_output(g, at) && readers(g, at) == 1 && !cn_graph_node_shared(g, at);
}

/* The DepthwiseConv2D that node i, a plain 1x1 convolution, can take in (cn_op_dw_conv), else -1:
 * multiplier 1, an elementwise activation, read by node i only. */
static int depthwise_foldable(cn_graph *g, int i) {
  const cn_node *n = &g->nodes[i];
  if (!plain_pointwise(n) || cn_graph_node_shared(g, i)) return -1;
  int d = n->inputs[0];
  const cn_node *dn = &g->nodes[d];
  if (dn->op != &cn_op_depthwise || !single_use(g, d) || n->n_params + dn->n_params > CN_MAX_PARAMS)
    return -1;
  const cn_depthwise_attrs *da = dn->attrs;
  return da->depth_multiplier == 1 && da->act.kind != CN_ACT_SOFTMAX ? d : -1;
}

/* The 1x1 Conv2D expanding the input of depthwise node d (taken in by node i) that the fold can
 * take in too, else -1: elementwise activation, read by d only, its product and node i's on the
 * panels or conv_small's tiles (the expanded rows exist only in the fused pass, which has no
 * other fast product: an AVX2 build's 576 -> 96 projection, OpenBLAS's, would run plainly). */
static int expand_foldable(cn_graph *g, int i, int d) {
  int e = g->nodes[d].inputs[0];
  const cn_node *en = &g->nodes[e];
  if (en->op != &cn_op_conv2d || !plain_pointwise(en) || !single_use(g, e) ||
      g->nodes[i].n_params + g->nodes[d].n_params + en->n_params > CN_MAX_PARAMS)
    return -1;
  const cn_conv2d_attrs *a = en->attrs;
  const cn_shape *in = &g->nodes[en->inputs[0]].shape;
  const cn_shape *mid = &g->nodes[d].shape;
  return a->act.kind != CN_ACT_SOFTMAX && in->rank == 3 && mid->rank == 3 &&
                 cn_conv2d_pointwise_tiled(a, in->dim[2]) &&
                 cn_conv2d_pointwise_tiled(g->nodes[i].attrs, mid->dim[2])
             ? e
             : -1;
}

int cn_graph_can_fold(cn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (foldable(g, i) >= 0 || activation_foldable(g, i) || padding_foldable(g, i) >= 0 ||
        residual_foldable(g, i) >= 0 || depthwise_foldable(g, i) >= 0)
      return 1;
  return 0;
}

static int index_of(const cn_graph *g, const char *name) { /* by identity: names move along */
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].name == name) return i;
  return -1;
}

/* One fold: the nodes by their names' identity (indices shift as nodes go). */
typedef struct fold {
  const char *conv, *dw, *expand; /* expand NULL: none */
} fold;

/* Appends the parameters of node `from` (declared on `to` after its own, `at` on) to `to`. */
static void copy_params(cn_node *to, int at, const cn_node *from) {
  for (int k = 0; k < from->n_params; k++)
    memcpy(to->params[at + k].data, from->params[k].data,
           (size_t)cn_shape_numel(&from->params[k].shape) * sizeof(float));
}

/* The convolution of fold f takes in its depthwise node (and expanding one), whose parameters it
 * declared after its own: their values copied, the first one's input becomes its input, their
 * attributes join its own, and they are removed. */
static cn_status take_in(cn_graph *g, const fold *f) {
  int i = index_of(g, f->conv), d = index_of(g, f->dw), e = f->expand ? index_of(g, f->expand) : -1;
  cn_node *conv = &g->nodes[i];
  const cn_node *dn = &g->nodes[d], *en = e >= 0 ? &g->nodes[e] : NULL;
  cn_dw_conv_attrs *attrs = calloc(1, sizeof *attrs);
  char *type =
      cn_strdup(conv->op == &cn_op_conv2d_add ? "DepthwiseConv2D+Conv2D+Add" : cn_op_dw_conv.type);
  if (!attrs || !type) {
    free(attrs);
    free(type);
    return cn_fail(CN_ERR_NOMEM, "out of memory folding a depthwise convolution");
  }
  int own = conv->n_params - dn->n_params - (en ? en->n_params : 0);
  copy_params(conv, own, dn);
  if (en) copy_params(conv, own + dn->n_params, en);
  attrs->conv = *(const cn_conv2d_attrs *)conv->attrs;
  attrs->dw = *(const cn_depthwise_attrs *)dn->attrs;
  if (en) attrs->expands = 1, attrs->expand = *(const cn_conv2d_attrs *)en->attrs;
  free(conv->attrs);
  free(conv->type);
  conv->attrs = attrs, conv->type = type, conv->op = &cn_op_dw_conv;
  conv->inputs[0] = en ? en->inputs[0] : dn->inputs[0];
  cn_status st = remove_node(g, d, dn->inputs[0]);
  if (st == CN_OK && f->expand) st = remove_node(g, index_of(g, f->expand), 0);
  return st;
}

cn_status cn_graph_fold_depthwise(cn_graph *g, int expand) {
  cn_status st = pin_outputs(g);
  size_t count = (size_t)(g->n_nodes ? g->n_nodes : 1);
  fold *folds = calloc(count, sizeof *folds);
  char *used = calloc(count, 1); /* in a fold already: a convolution folding a depthwise layer
                                    in is nobody's expansion */
  if (!folds || !used) {
    free(folds);
    free(used);
    return cn_fail(CN_ERR_NOMEM, "out of memory folding depthwise convolutions");
  }
  int n = 0;
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++) {
    int d = depthwise_foldable(g, i), e = d >= 0 && expand ? expand_foldable(g, i, d) : -1;
    if (d < 0 || used[i]) continue;
    if (e >= 0 && used[e]) e = -1;
    used[i] = used[d] = 1;
    if (e >= 0) used[e] = 1;
    for (int k = 0; st == CN_OK && k < g->nodes[d].n_params; k++)
      st = cn_node_add_param(&g->nodes[i], g->nodes[d].params[k].name, g->nodes[d].params[k].shape);
    for (int k = 0; st == CN_OK && e >= 0 && k < g->nodes[e].n_params; k++)
      st = cn_node_add_param(&g->nodes[i], g->nodes[e].params[k].name, g->nodes[e].params[k].shape);
    folds[n++] = (fold){g->nodes[i].name, g->nodes[d].name, e >= 0 ? g->nodes[e].name : NULL};
  }
  if (st == CN_OK && n) st = realloc_params(g);
  for (int k = 0; st == CN_OK && k < n; k++) st = take_in(g, &folds[k]);
  free(folds);
  free(used);
  return st;
}

cn_status cn_graph_fold_activations(cn_graph *g) {
  cn_status st = pin_outputs(g);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++) {
    if (!activation_foldable(g, i)) continue;
    cn_node *n = &g->nodes[i];
    int p = n->inputs[0];
    *fused_activation(&g->nodes[p], 1) = *(const cn_activation *)n->attrs;
    st = remove_node(g, i, p);
    i--;
  }
  return st;
}

cn_status cn_graph_fold_batchnorm(cn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (foldable(g, i) >= 0 && !g->nodes[i].params[0].data)
      return cn_fail(CN_ERR_ARG, "%s: fold batch normalization: weights are not allocated",
                     g->nodes[i].name);
  cn_status st = pin_outputs(g);
  if (st == CN_OK) st = add_missing_biases(g);
  if (st != CN_OK) return st;
  for (int i = 0; i < g->n_nodes; i++) {
    int p = foldable(g, i);
    if (p < 0) continue;
    fold_weights(&g->nodes[p], &g->nodes[i]);
    st = remove_node(g, i, p);
    if (st != CN_OK) return st;
    i--;
  }
  g->weights_version++;
  return CN_OK;
}
