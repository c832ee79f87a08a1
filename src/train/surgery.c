/* Model surgery of surgery.h. */
#include "train/surgery.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/init.h"
#include "core/rng.h"
#include "ops/ops.h"

enum { MAX_NODE_INPUTS = 64 };

int cn_graph_feature_node(const cn_graph *g) {
  int found = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_shape *s = &g->nodes[i].shape;
    if (s->rank == 3 && s->dim[0] * s->dim[1] > 1 && g->nodes[i].op != &cn_op_input) found = i;
  }
  return found;
}

/* Marks `last` and its ancestors. */
static char *ancestors(const cn_graph *g, int last) {
  char *keep = calloc((size_t)g->n_nodes, 1);
  if (!keep) return NULL;
  keep[last] = 1;
  for (int i = last; i >= 0; i--)
    if (keep[i])
      for (int k = 0; k < g->nodes[i].n_inputs; k++) keep[g->nodes[i].inputs[k]] = 1;
  return keep;
}

static cn_status copy_values(cn_graph *dst, int di, const cn_graph *src, int si) {
  const cn_node *from = &src->nodes[si];
  cn_node *to = &dst->nodes[di];
  if (to->n_params != from->n_params)
    return cn_fail(CN_ERR_SHAPE, "%s: different parameters", from->name);
  for (int p = 0; p < from->n_params; p++) {
    if (!cn_shape_equal(&to->params[p].shape, &from->params[p].shape))
      return cn_fail(CN_ERR_SHAPE, "%s/%s: shapes differ", from->name, from->params[p].name);
    if (from->params[p].data && to->params[p].data)
      memcpy(to->params[p].data, from->params[p].data,
             (size_t)cn_shape_numel(&from->params[p].shape) * sizeof(float));
  }
  return CN_OK;
}

cn_status cn_graph_copy_params_by_name(cn_graph *dst, const cn_graph *src) {
  for (int i = 0; i < src->n_nodes; i++) {
    if (src->nodes[i].n_params == 0) continue;
    int j = cn_graph_find(dst, src->nodes[i].name);
    if (j < 0) return cn_fail(CN_ERR_ARG, "%s: no such layer to copy into", src->nodes[i].name);
    cn_status st = copy_values(dst, j, src, i);
    if (st != CN_OK) return st;
  }
  dst->weights_version++;
  return CN_OK;
}

/* Copies the marked nodes of g (in order) into dst, remapping inputs through map (old index ->
 * new index, -1 when not copied). */
static cn_status copy_marked(cn_graph *dst, const cn_graph *g, const char *keep, int *map) {
  int inputs[MAX_NODE_INPUTS];
  for (int i = 0; i < g->n_nodes; i++) {
    if (!keep[i]) continue;
    const cn_node *n = &g->nodes[i];
    if (n->n_inputs > MAX_NODE_INPUTS)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: too many inputs", n->name);
    for (int k = 0; k < n->n_inputs; k++) {
      inputs[k] = map[n->inputs[k]];
      if (inputs[k] < 0)
        return cn_fail(CN_ERR_UNSUPPORTED, "%s: reads %s, which is on the other side of the cut",
                       n->name, g->nodes[n->inputs[k]].name);
    }
    cn_status st = cn_graph_copy_node(dst, g, i, inputs, &map[i]);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

static cn_status finish_copy(cn_graph *dst, const cn_graph *g, const char *keep, const int *map,
                             int output) {
  cn_status st = cn_graph_set_outputs(dst, &map[output], 1);
  if (st == CN_OK) st = cn_graph_alloc_params(dst);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++)
    if (keep[i] && map[i] >= 0 && g->nodes[i].op != &cn_op_input)
      st = copy_values(dst, map[i], g, i);
  return st;
}

static int *new_map(int n) {
  int *map = malloc((size_t)(n ? n : 1) * sizeof *map);
  for (int i = 0; map && i < n; i++) map[i] = -1;
  return map;
}

/* A new graph of the ancestors of `output`; with from >= 0, only of the nodes after `from`, read
 * through an Input standing for it. */
static cn_status copy_subgraph(const cn_graph *g, int from, int output, cn_graph **out) {
  *out = NULL;
  char *keep = ancestors(g, output);
  int *map = new_map(g->n_nodes);
  cn_graph *dst = cn_graph_new();
  cn_status st = keep && map && dst ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK && from >= 0) {
    for (int i = 0; i <= from; i++) keep[i] = 0;
    cn_input_attrs in = {g->nodes[from].shape};
    st = cn_graph_add(dst, &cn_op_input, g->nodes[from].name, NULL, 0, &in, &map[from]);
  }
  if (st == CN_OK) st = copy_marked(dst, g, keep, map);
  if (st == CN_OK) st = finish_copy(dst, g, keep, map, output);
  free(keep);
  free(map);
  if (st != CN_OK) {
    cn_graph_free(dst);
    return st;
  }
  *out = dst;
  return CN_OK;
}

cn_status cn_graph_cut(const cn_graph *g, int last, cn_graph **out) {
  *out = NULL;
  if (last < 0 || last >= g->n_nodes) return cn_fail(CN_ERR_ARG, "no layer %d to cut at", last);
  return copy_subgraph(g, -1, last, out);
}

/* The suffix after b: an Input standing for b, then every later node the output needs. */
static cn_status build_suffix(const cn_graph *g, int b, cn_graph **out) {
  int output = g->n_outputs ? g->outputs[0] : g->n_nodes - 1;
  if (output <= b) return cn_fail(CN_ERR_ARG, "%s: nothing follows this layer", g->nodes[b].name);
  return copy_subgraph(g, b, output, out);
}

int cn_graph_can_split(const cn_graph *g, int b) {
  int output = g->n_outputs ? g->outputs[0] : g->n_nodes - 1;
  if (b < 0 || b >= output) return 0;
  char *keep = ancestors(g, output);
  int clean = keep != NULL;
  for (int i = b + 1; clean && i < g->n_nodes; i++) {
    if (!keep[i]) continue;
    for (int k = 0; k < g->nodes[i].n_inputs; k++)
      if (g->nodes[i].inputs[k] < b) clean = 0;
    /* a shared layer called on both sides would become two layers with two weight sets */
    if (g->nodes[i].shares >= 0 && g->nodes[i].shares <= b) clean = 0;
  }
  free(keep);
  return clean;
}

cn_status cn_graph_split(const cn_graph *g, int b, cn_graph **prefix, cn_graph **suffix) {
  *prefix = *suffix = NULL;
  if (b < 0 || b >= g->n_nodes) return cn_fail(CN_ERR_ARG, "no layer %d to split at", b);
  cn_status st = build_suffix(g, b, suffix);
  if (st == CN_OK) st = cn_graph_cut(g, b, prefix);
  if (st != CN_OK) {
    cn_graph_free(*suffix);
    *suffix = NULL;
  }
  return st;
}

static cn_status add_pool(cn_graph *g, cn_head_pool pool, int *at) {
  cn_global_pool_attrs gp = {0};
  int from = *at;
  if (pool == CN_HEAD_FLATTEN)
    return cn_graph_add(g, &cn_op_flatten, CN_HEAD_POOL_NAME, &from, 1, NULL, at);
  const cn_op *op = pool == CN_HEAD_MAX ? &cn_op_global_maxpool : &cn_op_global_avgpool;
  return cn_graph_add(g, op, CN_HEAD_POOL_NAME, &from, 1, &gp, at);
}

static cn_status add_dense(cn_graph *g, const char *name, int units, cn_activation act, int *at) {
  cn_dense_attrs a = {.units = units, .use_bias = 1, .act = act};
  int from = *at;
  return cn_graph_add(g, &cn_op_dense, name, &from, 1, &a, at);
}

/* Keras's defaults: Glorot-uniform kernel, zero bias. */
static void init_dense(cn_graph *g, const char *name, uint64_t key) {
  int i = cn_graph_find(g, name);
  if (i < 0) return;
  for (int k = 0; k < g->nodes[i].n_params; k++) cn_param_init(&g->nodes[i].params[k], name, key);
}

cn_status cn_graph_with_head(const cn_graph *g, int from, const cn_head_options *o,
                             cn_graph **out) {
  *out = NULL;
  if (o->classes < 2) return cn_fail(CN_ERR_ARG, "a classifier needs at least 2 classes");
  if (o->dropout < 0 || o->dropout >= 1)
    return cn_fail(CN_ERR_ARG, "dropout must be in [0, 1), not %g", (double)o->dropout);
  cn_graph *base = NULL, *dst = NULL;
  cn_status st = cn_graph_cut(g, from, &base);
  if (st == CN_OK) st = cn_graph_clone(base, &dst);
  int at = dst ? dst->outputs[0] : -1;
  if (st == CN_OK && dst->nodes[at].shape.rank != 1) st = add_pool(dst, o->pool, &at);
  if (st == CN_OK && o->dense > 0)
    st = add_dense(dst, CN_HEAD_DENSE_NAME, o->dense, cn_act_relu(), &at);
  if (st == CN_OK && o->dropout > 0) {
    cn_dropout_attrs d = {o->dropout};
    int prev = at;
    st = cn_graph_add(dst, &cn_op_dropout, CN_HEAD_DROPOUT_NAME, &prev, 1, &d, &at);
  }
  if (st == CN_OK) st = add_dense(dst, CN_HEAD_OUTPUT_NAME, o->classes, cn_act_softmax(), &at);
  if (st == CN_OK) st = cn_graph_set_outputs(dst, &at, 1);
  if (st == CN_OK) st = cn_graph_alloc_params(dst);
  if (st == CN_OK) st = cn_graph_copy_params_by_name(dst, base);
  if (st == CN_OK) {
    init_dense(dst, CN_HEAD_DENSE_NAME, cn_rng_key(o->seed, 0x68656164, 1));
    init_dense(dst, CN_HEAD_OUTPUT_NAME, cn_rng_key(o->seed, 0x68656164, 2));
  }
  cn_graph_free(base);
  if (st != CN_OK) {
    cn_graph_free(dst);
    return st;
  }
  *out = dst;
  return CN_OK;
}

void cn_graph_freeze_upto(cn_graph *g, int last) {
  for (int i = 0; i < g->n_nodes; i++) g->nodes[i].trainable = i > last;
}

void cn_graph_freeze_batchnorm(cn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].op == &cn_op_batchnorm) g->nodes[i].trainable = 0;
}
