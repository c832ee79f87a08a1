/* The training executor of trainer.h. Every node the output depends on keeps its activation for
 * the whole step; only nodes through which a gradient flows get a gradient buffer. */
#include "train/trainer.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/rng.h"
#include "ops/ops.h"

enum { MAX_NODE_INPUTS = 64, SEED_STREAM_NODE = 0x6e6f6465 };

struct cn_trainer {
  cn_graph *g;
  int output; /* the node whose activation the loss sees */
  cn_output_kind kind;
  int max_batch, batch;
  char *reach;         /* node feeds the output */
  char *need;          /* a gradient flows through the node's output */
  float **act, **grad; /* per node, max_batch samples */
  size_t *saved_off;
  float *saved, *scratch, *grads;
  float *lr_scale;
  int input_grad;
  const int *grad_nodes; /* the options', valid during cn_trainer_new only */
  int n_grad_nodes;
  uint64_t last_seed; /* of the last forward: backward recomputes stochastic draws from it */
  int last_training;
  cn_group *group;      /* data-parallel training: the batch is a share of a global batch */
  int64_t first_sample; /* the share's first sample in the global batch */
  int placeholder;      /* the share is empty: the batch of one stands in for it */
};

static int is_softmax_last(const cn_activation *a, const cn_shape *shape) {
  return a->kind == CN_ACT_SOFTMAX && (a->axis == -1 || a->axis == shape->rank);
}

/* Moves the graph's final softmax or sigmoid out of the graph so that the loss is computed on
 * logits: an Activation node is bypassed, a fused activation of Dense or Conv2D is set linear. */
static void split_output_activation(cn_trainer *t) {
  cn_node *n = &t->g->nodes[t->output];
  cn_activation *act = NULL;
  if (n->op == &cn_op_activation) act = n->attrs;
  if (n->op == &cn_op_dense) act = &((cn_dense_attrs *)n->attrs)->act;
  if (n->op == &cn_op_conv2d) act = &((cn_conv2d_attrs *)n->attrs)->act;
  if (!act) return;
  if (is_softmax_last(act, &n->shape))
    t->kind = CN_OUTPUT_SOFTMAX;
  else if (act->kind == CN_ACT_SIGMOID)
    t->kind = CN_OUTPUT_SIGMOID;
  else
    return;
  if (n->op == &cn_op_activation)
    t->output = n->inputs[0];
  else
    act->kind = CN_ACT_LINEAR;
}

static int watched(const cn_trainer *t, int i) {
  for (int k = 0; k < t->n_grad_nodes; k++)
    if (t->grad_nodes[k] == i) return 1;
  return 0;
}

/* reach: the node is an ancestor of (or is) an output. need: it feeds the first output (where
 * backward starts) and has a trainable or watched node at or before it, so backward must pass a
 * gradient through its output. */
static void mark_nodes(cn_trainer *t) {
  cn_graph *g = t->g;
  char *feeds = t->need; /* first: the ancestors of the first output */
  for (int k = 0; k < g->n_outputs; k++) t->reach[g->outputs[k]] = 1;
  t->reach[t->output] = feeds[t->output] = 1;
  for (int i = g->n_nodes - 1; i >= 0; i--)
    for (int k = 0; k < g->nodes[i].n_inputs; k++) {
      t->reach[g->nodes[i].inputs[k]] |= t->reach[i];
      feeds[g->nodes[i].inputs[k]] |= feeds[i];
    }
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    int need =
        cn_node_trainable_count(n) > 0 || watched(t, i) || (t->input_grad && n->op == &cn_op_input);
    for (int k = 0; k < n->n_inputs; k++) need |= t->need[n->inputs[k]] > 1;
    t->need[i] = (char)(feeds[i] ? 1 + need : 0);
  }
  for (int i = 0; i < g->n_nodes; i++) t->need[i] = t->need[i] > 1;
}

static size_t node_floats(const cn_graph *g, int i, int batch) {
  return (size_t)batch * (size_t)cn_shape_numel(&g->nodes[i].shape);
}

static float *zeroed(size_t n) {
  float *p = cn_alloc_aligned((n ? n : 1) * sizeof(float));
  if (p) memset(p, 0, (n ? n : 1) * sizeof(float));
  return p;
}

static cn_status check_backward(const cn_trainer *t) {
  for (int i = 0; i < t->g->n_nodes; i++) {
    const cn_node *n = &t->g->nodes[i];
    if (t->need[i] && n->op != &cn_op_input && !n->op->backward)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s (%s): training through this layer is not supported",
                     n->name, n->type);
  }
  return CN_OK;
}

static cn_status allocate(cn_trainer *t) {
  cn_graph *g = t->g;
  int n = g->n_nodes, b = t->max_batch;
  if (n < 1) return cn_fail(CN_ERR_ARG, "an empty graph");
  t->act = calloc((size_t)n, sizeof *t->act);
  t->grad = calloc((size_t)n, sizeof *t->grad);
  t->saved_off = calloc((size_t)n + 1, sizeof *t->saved_off);
  t->lr_scale = malloc((size_t)n * sizeof *t->lr_scale);
  if (!t->act || !t->grad || !t->saved_off || !t->lr_scale)
    return cn_fail(CN_ERR_NOMEM, "out of memory for training buffers");
  size_t scratch = 0;
  for (int i = 0; i < n; i++) {
    cn_node *node = &g->nodes[i];
    t->lr_scale[i] = 1.0f;
    t->saved_off[i + 1] = t->saved_off[i];
    if (!t->reach[i]) continue;
    t->act[i] = zeroed(node_floats(g, i, b));
    if (t->need[i]) t->grad[i] = zeroed(node_floats(g, i, b));
    if (!t->act[i] || (t->need[i] && !t->grad[i]))
      return cn_fail(CN_ERR_NOMEM, "%s: out of memory for training activations", node->name);
    const cn_op *op = node->op;
    size_t fs = op->scratch ? op->scratch(g, node, b) : 0;
    size_t bs = op->backward_scratch ? op->backward_scratch(g, node, b) : 0;
    scratch = fs > scratch ? fs : scratch;
    scratch = bs > scratch ? bs : scratch;
    size_t saved = op->saved ? op->saved(g, node, b) : 0;
    t->saved_off[i + 1] += (saved + CN_ALIGN - 1) / CN_ALIGN * CN_ALIGN;
  }
  t->saved = zeroed(t->saved_off[n]);
  t->scratch = zeroed(scratch);
  t->grads = zeroed(g->n_param_floats);
  if (!t->saved || !t->scratch || !t->grads)
    return cn_fail(CN_ERR_NOMEM, "out of memory for training buffers");
  return CN_OK;
}

cn_status cn_trainer_new(const cn_graph *g, const cn_trainer_options *o, cn_trainer **out) {
  *out = NULL;
  if (g->n_inputs < 1 || g->n_nodes == 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "training needs a graph with an input");
  if (o->max_batch < 1) return cn_fail(CN_ERR_ARG, "batch must be at least 1");
  cn_trainer *t = calloc(1, sizeof *t);
  if (!t) return cn_fail(CN_ERR_NOMEM, "out of memory");
  t->max_batch = o->max_batch;
  t->group = o->group;
  t->input_grad = o->input_grad;
  t->grad_nodes = o->grad_nodes;
  t->n_grad_nodes = o->n_grad_nodes;
  cn_status st = cn_graph_clone(g, &t->g);
  if (st == CN_OK) {
    st = cn_graph_default_outputs(t->g);
    t->output = t->g->outputs[0];
    if (!o->keep_output_activation) split_output_activation(t);
    t->reach = calloc((size_t)t->g->n_nodes, 1);
    t->need = calloc((size_t)t->g->n_nodes, 1);
    if (!t->reach || !t->need) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  if (st == CN_OK) {
    if (t->output != t->g->outputs[0]) t->g->outputs[0] = t->output; /* the split logits */
    mark_nodes(t);
    st = check_backward(t);
  }
  if (st == CN_OK) st = allocate(t);
  t->grad_nodes = NULL;
  t->n_grad_nodes = 0;
  if (st != CN_OK) {
    cn_trainer_free(t);
    return st;
  }
  *out = t;
  return CN_OK;
}

void cn_trainer_free(cn_trainer *t) {
  if (!t) return;
  for (int i = 0; t->g && i < t->g->n_nodes; i++) {
    if (t->act) cn_free_aligned(t->act[i]);
    if (t->grad) cn_free_aligned(t->grad[i]);
  }
  free(t->act);
  free(t->grad);
  free(t->saved_off);
  free(t->lr_scale);
  free(t->reach);
  free(t->need);
  cn_free_aligned(t->saved);
  cn_free_aligned(t->scratch);
  cn_free_aligned(t->grads);
  cn_graph_free(t->g);
  free(t);
}

cn_output_kind cn_trainer_output_kind(const cn_trainer *t) {
  return t->kind;
}
cn_shape cn_trainer_output_shape(const cn_trainer *t) {
  return t->g->nodes[t->output].shape;
}
cn_graph *cn_trainer_graph(cn_trainer *t) {
  return t->g;
}
float *cn_trainer_params(cn_trainer *t) {
  return t->g->params;
}
float *cn_trainer_grads(cn_trainer *t) {
  return t->grads;
}
size_t cn_trainer_param_floats(const cn_trainer *t) {
  return t->g->n_param_floats;
}

const float *cn_trainer_input_grad(const cn_trainer *t) {
  return t->input_grad ? t->grad[t->g->inputs[0]] : NULL;
}

const float *cn_trainer_node_output(const cn_trainer *t, int node) {
  return node >= 0 && node < t->g->n_nodes ? t->act[node] : NULL;
}

const float *cn_trainer_node_grad(const cn_trainer *t, int node) {
  return node >= 0 && node < t->g->n_nodes ? t->grad[node] : NULL;
}

static cn_tensor tensor_of(const cn_trainer *t, float *const *bufs, int i) {
  cn_tensor x = {cn_shape_batch(t->batch, &t->g->nodes[i].shape), bufs[i]};
  return x;
}

static cn_exec exec_for(const cn_trainer *t, int i, int training, uint64_t seed) {
  cn_exec ex = {.batch = t->batch,
                .threads = cn_get_threads(),
                .scratch = t->scratch,
                .training = training,
                .seed = cn_rng_key(seed, SEED_STREAM_NODE, (uint64_t)i),
                .saved = t->saved + t->saved_off[i],
                .first_sample = t->first_sample,
                .group = t->group,
                .placeholder = t->placeholder};
  return ex;
}

void cn_trainer_set_share(cn_trainer *t, int64_t first_sample, int placeholder) {
  t->first_sample = first_sample;
  t->placeholder = placeholder;
}

cn_status cn_trainer_forward(cn_trainer *t, int batch, const float *input, int training,
                             uint64_t seed, const float **output) {
  if (t->g->n_inputs != 1)
    return cn_fail(CN_ERR_ARG, "the model has %d inputs: give each", t->g->n_inputs);
  return cn_trainer_forward_inputs(t, batch, &input, training, seed, output);
}

cn_status cn_trainer_forward_inputs(cn_trainer *t, int batch, const float *const *inputs,
                                    int training, uint64_t seed, const float **output) {
  if (batch < 1 || batch > t->max_batch)
    return cn_fail(CN_ERR_ARG, "batch %d is outside 1..%d", batch, t->max_batch);
  cn_graph *g = t->g;
  t->batch = batch;
  for (int k = 0; k < g->n_inputs; k++) {
    int in = g->inputs[k];
    if (!inputs[k]) return cn_fail(CN_ERR_ARG, "no data for input %s", g->nodes[in].name);
    if (t->act[in]) memcpy(t->act[in], inputs[k], node_floats(g, in, batch) * sizeof(float));
  }
  cn_tensor ins[MAX_NODE_INPUTS];
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    if (!t->reach[i] || n->op == &cn_op_input) continue;
    if (n->n_inputs > MAX_NODE_INPUTS)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: more than %d inputs", n->name, MAX_NODE_INPUTS);
    for (int k = 0; k < n->n_inputs; k++) ins[k] = tensor_of(t, t->act, n->inputs[k]);
    cn_tensor out = tensor_of(t, t->act, i);
    cn_exec ex = exec_for(t, i, training, seed);
    n->op->forward(n, ins, &out, &ex);
  }
  *output = t->act[t->output];
  t->last_seed = seed;
  t->last_training = training;
  return CN_OK;
}

/* One node's backward: gradients for the inputs that need them and for its trainable
 * parameters. */
static void backward_node(cn_trainer *t, int i) {
  cn_graph *g = t->g;
  cn_node *n = &g->nodes[i];
  cn_tensor ins[MAX_NODE_INPUTS], dins[MAX_NODE_INPUTS];
  float *dparams[CN_MAX_PARAMS] = {0};
  int work = 0;
  for (int k = 0; k < n->n_inputs; k++) {
    int src = n->inputs[k];
    ins[k] = tensor_of(t, t->act, src);
    dins[k].shape = ins[k].shape;
    dins[k].data = t->need[src] ? t->grad[src] : NULL;
    work |= dins[k].data != NULL;
  }
  for (int k = 0; k < n->n_params && n->trainable; k++)
    if (n->params[k].trainable) {
      dparams[k] = t->grads + (n->params[k].data - g->params);
      work = 1;
    }
  if (!work) return;
  cn_tensor out = tensor_of(t, t->act, i), dout = tensor_of(t, t->grad, i);
  cn_exec ex = exec_for(t, i, t->last_training, t->last_seed);
  n->op->backward(n, ins, &out, &dout, dins, dparams, &ex);
}

cn_status cn_trainer_backward(cn_trainer *t, const float *doutput) {
  cn_graph *g = t->g;
  if (t->batch < 1) return cn_fail(CN_ERR_ARG, "backward before forward");
  int threads = cn_get_threads();
  cn_zero(t->grads, (int64_t)g->n_param_floats, threads);
  for (int i = 0; i < g->n_nodes; i++)
    if (t->grad[i]) cn_zero(t->grad[i], (int64_t)node_floats(g, i, t->batch), threads);
  if (!t->need[t->output]) return CN_OK; /* nothing trainable */
  memcpy(t->grad[t->output], doutput, node_floats(g, t->output, t->batch) * sizeof(float));
  for (int i = g->n_nodes - 1; i >= 0; i--)
    if (t->need[i] && g->nodes[i].op != &cn_op_input) backward_node(t, i);
  return CN_OK;
}

cn_status cn_trainer_backward_seeds(cn_trainer *t, int n, const int *nodes,
                                    const float *const *grads) {
  cn_graph *g = t->g;
  if (t->batch < 1) return cn_fail(CN_ERR_ARG, "backward before forward");
  for (int k = 0; k < n; k++)
    if (nodes[k] < 0 || nodes[k] >= g->n_nodes || !t->need[nodes[k]] || !t->grad[nodes[k]])
      return cn_fail(CN_ERR_ARG, "%s: no gradient flows through this node",
                     nodes[k] >= 0 && nodes[k] < g->n_nodes ? g->nodes[nodes[k]].name : "?");
  memset(t->grads, 0, g->n_param_floats * sizeof(float));
  for (int i = 0; i < g->n_nodes; i++)
    if (t->grad[i]) memset(t->grad[i], 0, node_floats(g, i, t->batch) * sizeof(float));
  for (int k = 0; k < n; k++) {
    float *dst = t->grad[nodes[k]];
    size_t count = node_floats(g, nodes[k], t->batch);
    for (size_t j = 0; j < count; j++) dst[j] += grads[k][j];
  }
  for (int i = g->n_nodes - 1; i >= 0; i--)
    if (t->need[i] && g->nodes[i].op != &cn_op_input) backward_node(t, i);
  return CN_OK;
}

/* A shared layer's weights are updated once, through the node that owns them, when any call of
 * the layer feeds the output (the calls' gradients are summed into the owner's slots). */
static int updates_params(const cn_trainer *t, int i) {
  const cn_graph *g = t->g;
  if (g->nodes[i].shares >= 0) return 0;
  for (int j = i; j < g->n_nodes; j++)
    if (t->reach[j] && (j == i || g->nodes[j].shares == i)) return 1;
  return 0;
}

int cn_trainer_ranges(const cn_trainer *t, cn_param_range *ranges, int cap) {
  const cn_graph *g = t->g;
  int count = 0;
  cn_param_range last = {0, 0, 0};
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    if (!n->trainable || !updates_params(t, i)) continue;
    for (int k = 0; k < n->n_params; k++) {
      if (!n->params[k].trainable) continue;
      size_t off = (size_t)(n->params[k].data - g->params);
      size_t len = (size_t)cn_shape_numel(&n->params[k].shape);
      if (count && last.offset + last.count == off && last.lr_scale == t->lr_scale[i]) {
        last.count += len;
      } else {
        last = (cn_param_range){off, len, t->lr_scale[i]};
        count++;
      }
      if (count <= cap) ranges[count - 1] = last;
    }
  }
  return count;
}

void cn_trainer_set_lr_scale(cn_trainer *t, int node, float scale) {
  if (node >= 0 && node < t->g->n_nodes) t->lr_scale[node] = scale;
}

void cn_trainer_weights_changed(cn_trainer *t) {
  t->g->weights_version++;
}

cn_status cn_trainer_copy_params_to(const cn_trainer *t, cn_graph *g) {
  if (g->n_param_floats != t->g->n_param_floats || g->n_nodes != t->g->n_nodes)
    return cn_fail(CN_ERR_ARG, "the graph does not match the trained one");
  memcpy(g->params, t->g->params, g->n_param_floats * sizeof(float));
  g->weights_version++;
  return CN_OK;
}
