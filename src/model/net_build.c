/* Building models from a net (convnet/layers.h): the part of the net the outputs depend on,
 * from the net's inputs or from any layers taken as inputs (a VAE's decoder from its latent). */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/net.h"
#include "ops/ops.h"

static int index_of(const int *list, int n, int value) {
  for (int i = 0; i < n; i++)
    if (list[i] == value) return i;
  return -1;
}

/* keep[i]: node i is an output or an ancestor of one, not looking past the stop nodes. */
static void mark_needed(const cn_graph *g, const int *stop, int n_stop, const int *outs, int n_outs,
                        char *keep) {
  for (int k = 0; k < n_outs; k++) keep[outs[k]] = 1;
  for (int i = g->n_nodes - 1; i >= 0; i--)
    if (keep[i] && index_of(stop, n_stop, i) < 0)
      for (int k = 0; k < g->nodes[i].n_inputs; k++) keep[g->nodes[i].inputs[k]] = 1;
}

/* Node i of the net as an Input layer of its shape and name. */
static cn_status add_as_input(cn_graph *dst, const cn_node *n, int *at) {
  cn_input_attrs a = {.shape = n->shape};
  return cn_graph_add(dst, &cn_op_input, n->name, NULL, 0, &a, at);
}

static cn_status copy_needed(const cn_net *net, const int *stop, int n_stop, const char *keep,
                             int *map, cn_graph *dst) {
  const cn_graph *g = net->g;
  cn_status st = CN_OK;
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++) {
    if (!keep[i]) continue;
    const cn_node *n = &g->nodes[i];
    if (index_of(stop, n_stop, i) >= 0) {
      st = add_as_input(dst, n, &map[i]);
    } else if (n->op->graph_input && n_stop > 0) {
      st = cn_fail(CN_ERR_ARG, "%s: the outputs depend on input %s, which is not among the inputs",
                   net->name, n->name);
    } else {
      int inputs[MAX_MERGE];
      for (int k = 0; k < n->n_inputs && k < MAX_MERGE; k++) inputs[k] = map[n->inputs[k]];
      st = cn_graph_copy_node(dst, g, i, inputs, &map[i]);
    }
  }
  for (int k = 0; st == CN_OK && k < n_stop; k++) dst->inputs[k] = map[stop[k]];
  return st;
}

static cn_status symbols(const cn_net *net, const cn_sym *syms, int n, const char *what, int *idx) {
  if (n > CN_MAX_GRAPH_IO)
    return cn_fail(CN_ERR_ARG, "%s: a model has at most %d %ss", net->name, CN_MAX_GRAPH_IO, what);
  for (int i = 0; i < n; i++) {
    if (!cn_net_valid(net, syms[i]))
      return cn_fail(CN_ERR_ARG, "%s: %s %d is not a layer output of this net", net->name, what, i);
    if (index_of(idx, i, syms[i].node) >= 0)
      return cn_fail(CN_ERR_ARG, "%s: %s %d is given twice", net->name, what, i);
    idx[i] = syms[i].node;
  }
  return CN_OK;
}

static cn_status subgraph(const cn_net *net, const int *stop, int n_stop, const int *outs,
                          int n_outs, cn_graph **out) {
  const cn_graph *g = net->g;
  char *keep = calloc((size_t)g->n_nodes, 1);
  int *map = calloc((size_t)g->n_nodes, sizeof *map);
  cn_graph *dst = cn_graph_new();
  cn_status st = keep && map && dst ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) {
    mark_needed(g, stop, n_stop, outs, n_outs, keep);
    st = copy_needed(net, stop, n_stop, keep, map, dst);
  }
  int mapped[CN_MAX_GRAPH_IO];
  for (int k = 0; st == CN_OK && k < n_outs; k++) mapped[k] = map[outs[k]];
  if (st == CN_OK && dst->n_inputs == 0)
    st = cn_fail(CN_ERR_ARG, "%s: the outputs depend on no input", net->name);
  if (st == CN_OK) st = cn_graph_set_outputs(dst, mapped, n_outs);
  free(keep);
  free(map);
  if (st != CN_OK) {
    cn_graph_free(dst);
    dst = NULL;
  }
  *out = dst;
  return st;
}

cn_status cn_net_build_from(cn_net *net, const cn_sym *inputs, int n_inputs, const cn_sym *outputs,
                            int n_outputs, cn_model **out) {
  if (!net || !out || (!outputs && n_outputs) || (!inputs && n_inputs) || n_inputs < 0)
    return cn_fail(CN_ERR_ARG, "cn_net_build: NULL argument");
  *out = NULL;
  if (net->status != CN_OK) return cn_fail(net->status, "%s", net->error);
  if (n_outputs < 1) return cn_fail(CN_ERR_ARG, "%s: a model needs an output", net->name);
  int stop[CN_MAX_GRAPH_IO], outs[CN_MAX_GRAPH_IO];
  cn_status st = symbols(net, inputs, n_inputs, "input", stop);
  if (st == CN_OK) st = symbols(net, outputs, n_outputs, "output", outs);
  cn_graph *g = NULL;
  if (st == CN_OK) st = subgraph(net, stop, n_inputs, outs, n_outputs, &g);
  if (st != CN_OK) return st;
  const cn_shape *in = &g->nodes[g->inputs[0]].shape;
  cn_input_spec spec = cn_input_spec_default(in, CN_PRE_UNIT);
  return cn_model_wrap_graph(g, net->name, &spec, out);
}

cn_status cn_net_build(cn_net *net, const cn_sym *outputs, int n_outputs, cn_model **out) {
  return cn_net_build_from(net, NULL, 0, outputs, n_outputs, out);
}
