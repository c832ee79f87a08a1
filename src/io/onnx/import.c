/* ONNX import driver: reads and parses the file (size-capped), decodes initializers, creates the
 * graph inputs, orders the nodes topologically, folds constant nodes and converts the rest into
 * engine nodes (convert.c), then fills the parameters. */
#include <errno.h>
#include <math.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/mem.h"
#include "model/model.h"
#include "io/onnx/internal.h"

/* ---- values by name ------------------------------------------------------------------------ */

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

cn_onnx_value *cn_onnx_find(cn_onnx_ctx *x, const char *name) {
  if (!name || !x->table_cap) return NULL;
  for (uint64_t h = hash_name(name);; h++) {
    int v = x->table[h & (uint64_t)(x->table_cap - 1)];
    if (v < 0) return NULL;
    if (strcmp(x->values[v].name, name) == 0) return &x->values[v];
  }
}

cn_status cn_onnx_new_value(cn_onnx_ctx *x, const char *name, cn_onnx_value **out) {
  if (!name || !*name) return cn_fail(CN_ERR_FORMAT, "%s: a tensor has no name", x->file);
  if (cn_onnx_find(x, name))
    return cn_fail(CN_ERR_FORMAT, "%s: tensor '%s' is defined twice", x->file, name);
  if (x->n_values * 2 >= x->table_cap)
    return cn_fail(CN_ERR_LIMIT, "%s: too many tensors", x->file);
  cn_onnx_value *v = &x->values[x->n_values];
  memset(v, 0, sizeof *v);
  v->name = name;
  v->node = v->plain_node = v->nhwc_node = v->flat_src = -1;
  uint64_t h = hash_name(name);
  while (x->table[h & (uint64_t)(x->table_cap - 1)] >= 0) h++;
  x->table[h & (uint64_t)(x->table_cap - 1)] = x->n_values++;
  *out = v;
  return CN_OK;
}

/* Room for every tensor name the graph can define: initializers, inputs and node outputs. */
static cn_status ctx_init(cn_onnx_ctx *x, const Onnx__GraphProto *gp) {
  size_t names = gp->n_initializer + gp->n_input;
  for (size_t i = 0; i < gp->n_node; i++) names += gp->node[i]->n_output;
  if (gp->n_node > CN_ONNX_MAX_NODES || names > 4 * (size_t)CN_ONNX_MAX_NODES)
    return cn_fail(CN_ERR_LIMIT, "%s: more than %d nodes or tensors", x->file, CN_ONNX_MAX_NODES);
  int cap = 64;
  while ((size_t)cap < 2 * names + 2) cap *= 2;
  x->values = calloc(names + 1, sizeof *x->values);
  x->table = malloc((size_t)cap * sizeof *x->table);
  x->g = cn_graph_new();
  if (!x->values || !x->table || !x->g) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", x->file);
  memset(x->table, 0xff, (size_t)cap * sizeof *x->table);
  x->table_cap = cap;
  x->cap_values = (int)names + 1;
  return CN_OK;
}

static void ctx_free(cn_onnx_ctx *x) {
  for (int i = 0; i < x->n_values; i++) cn_onnx_const_free(&x->values[i].c);
  for (int i = 0; i < x->n_pending; i++) free(x->pending[i].data);
  free(x->values);
  free(x->table);
  free(x->pending);
  cn_graph_free(x->g);
}

/* ---- engine nodes -------------------------------------------------------------------------- */

cn_status cn_onnx_add_node(cn_onnx_ctx *x, const cn_op *op, const char *base, const char *suffix,
                           const int *inputs, int n_inputs, const void *attrs, int *index) {
  char name[256];
  snprintf(name, sizeof name, "%.200s%s", base, suffix ? suffix : "");
  /* Names must be unique in the engine graph; ONNX names are, but inserted ones may collide. */
  for (int k = 2; cn_graph_find(x->g, name) >= 0 && k < 100; k++)
    snprintf(name, sizeof name, "%.200s%s_%d", base, suffix ? suffix : "", k);
  cn_status st = cn_graph_add(x->g, op, name, inputs, n_inputs, attrs, index);
  if (st != CN_OK) return st;
  if (x->g->n_nodes > CN_ONNX_MAX_NODES)
    return cn_fail(CN_ERR_LIMIT, "%s: more than %d engine nodes", x->file, CN_ONNX_MAX_NODES);
  return CN_OK;
}

cn_status cn_onnx_set_param(cn_onnx_ctx *x, int node, int param, float *data) {
  if (x->n_pending == x->cap_pending) {
    int cap = x->cap_pending ? 2 * x->cap_pending : 64;
    cn_onnx_pending *p = realloc(x->pending, (size_t)cap * sizeof *p);
    if (!p) {
      free(data);
      return cn_fail(CN_ERR_NOMEM, "%s: out of memory", x->file);
    }
    x->pending = p;
    x->cap_pending = cap;
  }
  x->pending[x->n_pending++] = (cn_onnx_pending){node, param, data};
  return CN_OK;
}

static cn_status fill_params(cn_onnx_ctx *x) {
  cn_status st = cn_graph_alloc_params(x->g);
  for (int i = 0; st == CN_OK && i < x->n_pending; i++) {
    cn_param *p = &x->g->nodes[x->pending[i].node].params[x->pending[i].param];
    memcpy(p->data, x->pending[i].data, (size_t)cn_shape_numel(&p->shape) * sizeof(float));
    free(x->pending[i].data);
    x->pending[i].data = NULL;
  }
  return st;
}

/* ---- graph inputs and initializers --------------------------------------------------------- */

static cn_status add_initializers(cn_onnx_ctx *x) {
  for (size_t i = 0; i < x->graph->n_initializer; i++) {
    const Onnx__TensorProto *t = x->graph->initializer[i];
    cn_onnx_value *v;
    cn_status st = cn_onnx_new_value(x, t->name, &v);
    if (st != CN_OK) return st;
    v->kind = CN_ONNX_CONST;
    char what[300];
    snprintf(what, sizeof what, "%s: initializer %.200s", x->file, t->name);
    st = cn_onnx_const_read(t, what, &v->c);
    if (st == CN_OK) st = cn_onnx_budget(x, v->c.numel, what);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

/* 1 when every use of tensor `name`, and of what those uses compute, is a Reshape of it (input 0),
 * an Identity or a Flatten: the only operators trusted with empty tensors (they move no data). */
static int only_reshaped(const cn_onnx_ctx *x, const char *name, int depth) {
  if (depth > 64) return 0;
  for (size_t i = 0; i < x->graph->n_node; i++) {
    const Onnx__NodeProto *n = x->graph->node[i];
    for (size_t k = 0; k < n->n_input; k++) {
      if (strcmp(n->input[k], name) != 0) continue;
      int moves =
          n->op_type && ((strcmp(n->op_type, "Reshape") == 0 && k == 0) ||
                         strcmp(n->op_type, "Identity") == 0 || strcmp(n->op_type, "Flatten") == 0);
      if (!moves) return 0;
      for (size_t o = 0; o < n->n_output; o++)
        if (*n->output[o] && !only_reshaped(x, n->output[o], depth + 1)) return 0;
    }
  }
  return 1;
}

/* The ONNX dims of a float graph input; dim 0 may be symbolic (the batch). With x->whole the
 * ONNX dims follow a leading 1 (the engine batch) and must all be known. */
static cn_status input_dims(cn_onnx_ctx *x, const Onnx__ValueInfoProto *vi, int *rank,
                            int64_t *dims) {
  const Onnx__TypeProto *t = vi->type;
  const Onnx__TypeProto__Tensor *tt =
      t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ? t->tensor_type : NULL;
  if (!tt) return cn_fail(CN_ERR_UNSUPPORTED, "%s: input %s is not a tensor", x->file, vi->name);
  if (tt->elem_type != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: input %s: element type %d is not float", x->file,
                   vi->name, (int)tt->elem_type);
  size_t n_dim = tt->shape ? tt->shape->n_dim : 0;
  if (n_dim <= 1 && !x->whole) x->want_whole = 1; /* one sample, without a batch axis */
  if (n_dim == 0 && x->whole) { /* a scalar: stored as (1), which broadcasts the same */
    *rank = 2;
    dims[0] = dims[1] = 1;
    return CN_OK;
  }
  if (n_dim + (size_t)x->whole < 2 || n_dim + (size_t)x->whole > CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: input %s: rank must be %d to %d (batch first)", x->file,
                   vi->name, 2 - x->whole, CN_MAX_RANK - x->whole);
  *rank = (int)n_dim + x->whole;
  dims[0] = 1;
  for (int k = 0; k < (int)n_dim; k++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
    int known = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
    int64_t v = known ? d->dim_value : (k == 0 && !x->whole ? 1 : -1);
    if (v == 0 && known) { /* empty: only as one sample, and only to be reshaped */
      if (!only_reshaped(x, vi->name, 0))
        return cn_fail(CN_ERR_UNSUPPORTED,
                       "%s: input %s: dimension %d is 0 (an empty tensor may only be reshaped)",
                       x->file, vi->name, k);
      x->want_whole |= !x->whole;
      dims[k + x->whole] = 0;
      continue;
    }
    if (v < 1 || v > CN_ONNX_MAX_ELEMENTS)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: input %s: dimension %d must be known and positive",
                     x->file, vi->name, k);
    dims[k + x->whole] = v;
  }
  return CN_OK;
}

/* Inputs that define a shape or a mode rather than data, by operator and position. */
static int shape_slot(const char *op, size_t k) {
  static const struct {
    const char *op;
    unsigned slots; /* bit k: input k */
  } table[] = {{"Reshape", 1u << 1},
               {"Resize", 7u << 1},
               {"Upsample", 1u << 1},
               {"Pad", 7u << 1},
               {"Dropout", 3u << 1}};
  for (size_t t = 0; t < sizeof table / sizeof *table; t++)
    if (strcmp(table[t].op, op) == 0) return k < 32 && (table[t].slots >> k & 1);
  return 0;
}

/* The operator using tensor `name` in a shape slot, or NULL. */
static const char *shape_user(const cn_onnx_ctx *x, const char *name) {
  for (size_t i = 0; i < x->graph->n_node; i++) {
    const Onnx__NodeProto *n = x->graph->node[i];
    for (size_t k = 1; k < n->n_input; k++)
      if (n->op_type && strcmp(n->input[k], name) == 0 && shape_slot(n->op_type, k))
        return n->op_type;
  }
  return NULL;
}

/* Graph input number `index` that defines a shape: a constant of the value given for it. */
static cn_status bind_input(cn_onnx_ctx *x, const Onnx__ValueInfoProto *vi, int index,
                            const char *op, cn_onnx_value *v) {
  if (index >= x->n_inputs)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: input %s sets a shape or mode of %s: give its value (convnet run binds "
                   "it from its --input)",
                   x->file, vi->name, op);
  cn_input_value *iv = &x->inputs[index];
  const Onnx__TypeProto *t = vi->type;
  int is_float = t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type &&
                 (t->tensor_type->elem_type == 1 || t->tensor_type->elem_type == 11 ||
                  t->tensor_type->elem_type == 10);
  char what[300];
  snprintf(what, sizeof what, "%s: input %.200s", x->file, vi->name);
  if (iv->shape.rank < 0 || iv->shape.rank > CN_ONNX_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: rank %d", what, iv->shape.rank);
  cn_status st = cn_onnx_const_alloc(&v->c, iv->shape.rank, iv->shape.dim, !is_float, what);
  if (st == CN_OK) st = cn_onnx_budget(x, v->c.numel, what);
  if (st != CN_OK) return st;
  for (int64_t k = 0; k < v->c.numel; k++)
    if (is_float)
      v->c.f[k] = iv->data[k];
    else
      v->c.i[k] = (int64_t)llround(iv->data[k]);
  v->kind = CN_ONNX_CONST;
  iv->bound = 1;
  return CN_OK;
}

static cn_status add_graph_inputs(cn_onnx_ctx *x) {
  int index = -1;
  for (size_t i = 0; i < x->graph->n_input; i++) {
    const Onnx__ValueInfoProto *vi = x->graph->input[i];
    if (!vi->name || !*vi->name)
      return cn_fail(CN_ERR_FORMAT, "%s: graph input %zu has no name", x->file, i);
    if (cn_onnx_find(x, vi->name)) continue; /* an initializer listed as input (IR < 4) */
    index++;
    const char *op = shape_user(x, vi->name);
    if (op) {
      cn_onnx_value *v;
      cn_status st = cn_onnx_new_value(x, vi->name, &v);
      if (st == CN_OK) st = bind_input(x, vi, index, op, v);
      if (st != CN_OK) return st;
      continue;
    }
    if (x->g->n_inputs >= CN_MAX_GRAPH_IO)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: more than %d graph inputs", x->file, CN_MAX_GRAPH_IO);
    cn_onnx_value *v;
    cn_status st = cn_onnx_new_value(x, vi->name, &v);
    if (st == CN_OK) st = input_dims(x, vi, &v->rank, v->dims);
    if (st != CN_OK) return st;
    if (x->g->n_inputs == 0) x->batch = v->dims[0];
    if (!x->whole && v->dims[0] != x->batch) { /* they cannot share a batch axis */
      x->want_whole = 1;
      return cn_fail(CN_ERR_UNSUPPORTED,
                     "%s: input %s: first dimension %" PRId64
                     " differs from the first input's %" PRId64,
                     x->file, vi->name, v->dims[0], x->batch);
    }
    cn_input_attrs a = {cn_shape_make(v->rank - 1, v->dims + 1)};
    st = cn_onnx_add_node(x, &cn_op_input, vi->name, NULL, NULL, 0, &a, &v->node);
    if (st != CN_OK) return st;
    v->kind = CN_ONNX_ACT;
    v->layout = CN_ONNX_PLAIN;
  }
  if (x->g->n_inputs == 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: the graph has no inputs", x->file);
  return CN_OK;
}

/* ---- topological order --------------------------------------------------------------------- */

/* Node index producing each named tensor, through a temporary value table entry per output. */
typedef struct topo {
  int *producer_of_input; /* per node, per input: producing node or -1, flattened */
  int *first_input;       /* per node: offset into producer_of_input */
  int *order;
} topo;

static cn_status find_producers(cn_onnx_ctx *x, int *producer, topo *t) {
  const Onnx__GraphProto *gp = x->graph;
  size_t total = 0;
  for (size_t i = 0; i < gp->n_node; i++) total += gp->node[i]->n_input;
  t->producer_of_input = malloc((total + 1) * sizeof(int));
  t->first_input = malloc((gp->n_node + 1) * sizeof(int));
  if (!t->producer_of_input || !t->first_input) return cn_fail(CN_ERR_NOMEM, "out of memory");
  size_t at = 0;
  for (size_t i = 0; i < gp->n_node; i++) {
    const Onnx__NodeProto *n = gp->node[i];
    t->first_input[i] = (int)at;
    for (size_t k = 0; k < n->n_input; k++) {
      const char *in = n->input[k];
      cn_onnx_value *v = *in ? cn_onnx_find(x, in) : NULL;
      if (*in && !v)
        return cn_fail(CN_ERR_FORMAT, "%s: node %s (%s): input '%s' is not defined", x->file,
                       n->name && *n->name ? n->name : "?", n->op_type, in);
      t->producer_of_input[at++] = v ? producer[v - x->values] : -1;
    }
  }
  t->first_input[gp->n_node] = (int)at;
  return CN_OK;
}

static const char *node_label(const Onnx__NodeProto *n) {
  if (n->name && *n->name) return n->name;
  return n->n_output && *n->output[0] ? n->output[0] : "(unnamed)";
}

/* Kahn's algorithm over consumer lists (CSR); a node left over sits on a cycle or behind one. */
static cn_status kahn(cn_onnx_ctx *x, topo *t) {
  int n = (int)x->graph->n_node, edges = t->first_input[n];
  int *pending = calloc((size_t)n + 1, sizeof *pending);
  int *queue = malloc(((size_t)n + 1) * sizeof *queue);
  int *start = calloc((size_t)n + 2, sizeof *start);
  int *consumer = malloc(((size_t)edges + 1) * sizeof *consumer);
  t->order = malloc(((size_t)n + 1) * sizeof *t->order);
  cn_status st = CN_OK;
  if (!pending || !queue || !start || !consumer || !t->order) {
    st = cn_fail(CN_ERR_NOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < n; i++)
    for (int k = t->first_input[i]; k < t->first_input[i + 1]; k++)
      if (t->producer_of_input[k] >= 0) {
        pending[i]++;
        start[t->producer_of_input[k] + 1]++;
      }
  for (int p = 0; p < n; p++) start[p + 1] += start[p];
  int *fill = queue; /* borrowed as a cursor per producer before the queue is used */
  for (int p = 0; p < n; p++) fill[p] = start[p];
  for (int i = 0; i < n; i++)
    for (int k = t->first_input[i]; k < t->first_input[i + 1]; k++)
      if (t->producer_of_input[k] >= 0) consumer[fill[t->producer_of_input[k]]++] = i;
  int head = 0, tail = 0;
  for (int i = 0; i < n; i++)
    if (!pending[i]) queue[tail++] = i;
  while (head < tail) {
    int p = queue[head++];
    t->order[head - 1] = p;
    for (int e = start[p]; e < start[p + 1]; e++)
      if (--pending[consumer[e]] == 0) queue[tail++] = consumer[e];
  }
  if (tail < n) {
    int stuck = 0;
    while (stuck < n - 1 && pending[stuck] == 0) stuck++;
    st = cn_fail(CN_ERR_FORMAT, "%s: the graph has a cycle through node %s", x->file,
                 node_label(x->graph->node[stuck]));
  }
done:
  free(pending);
  free(queue);
  free(start);
  free(consumer);
  return st;
}

/* Registers every node output name (to find producers), then sorts. Output values are created
 * here as NONE and filled when their node is converted. */
static cn_status sort_nodes(cn_onnx_ctx *x, topo *t) {
  const Onnx__GraphProto *gp = x->graph;
  int *producer = malloc((size_t)x->cap_values * sizeof *producer);
  if (!producer) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < x->cap_values; i++) producer[i] = -1;
  cn_status st = CN_OK;
  for (size_t i = 0; st == CN_OK && i < gp->n_node; i++) {
    const Onnx__NodeProto *n = gp->node[i];
    if (!n->op_type) st = cn_fail(CN_ERR_FORMAT, "%s: a node has no op_type", x->file);
    for (size_t k = 0; st == CN_OK && k < n->n_output; k++) {
      if (!*n->output[k]) continue; /* an optional output left out */
      cn_onnx_value *v;
      st = cn_onnx_new_value(x, n->output[k], &v);
      if (st == CN_OK) producer[v - x->values] = (int)i;
    }
  }
  if (st == CN_OK) st = find_producers(x, producer, t);
  if (st == CN_OK) st = kahn(x, t);
  free(producer);
  return st;
}

/* ---- driver -------------------------------------------------------------------------------- */

static cn_status check_opset(cn_onnx_ctx *x, const Onnx__ModelProto *m) {
  x->opset = 0;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const char *d = m->opset_import[i]->domain;
    if (!d || !*d || strcmp(d, "ai.onnx") == 0) x->opset = m->opset_import[i]->version;
  }
  if (x->opset < 1 || x->opset > 1000)
    return cn_fail(CN_ERR_FORMAT, "%s: no usable ai.onnx opset_import", x->file);
  return CN_OK;
}

static cn_status convert_nodes(cn_onnx_ctx *x, const topo *t) {
  for (size_t i = 0; i < x->graph->n_node; i++) {
    const Onnx__NodeProto *n = x->graph->node[t->order[i]];
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: node %s: operator %s of domain %s is not supported",
                     x->file, node_label(n), n->op_type, n->domain);
    cn_status st = cn_onnx_is_foldable(n, x) ? cn_onnx_fold(x, n) : cn_onnx_convert(x, n);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

static cn_status set_outputs(cn_onnx_ctx *x) {
  int outs[CN_MAX_GRAPH_IO];
  size_t n = x->graph->n_output;
  if (n < 1 || n > CN_MAX_GRAPH_IO)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %zu graph outputs (1 to %d supported)", x->file, n,
                   CN_MAX_GRAPH_IO);
  for (size_t i = 0; i < n; i++) {
    const char *name = x->graph->output[i]->name;
    cn_onnx_value *v = cn_onnx_find(x, name);
    if (!v || v->kind == CN_ONNX_NONE)
      return cn_fail(CN_ERR_FORMAT, "%s: graph output '%s' is not computed", x->file,
                     name ? name : "");
    if (v->kind != CN_ONNX_ACT)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: graph output '%s' is a constant", x->file, name);
    cn_status st = cn_onnx_plain(x, v, &outs[i]);
    if (st != CN_OK) return st;
  }
  return cn_graph_set_outputs(x->g, outs, (int)n);
}

/* 1 when an image input of per-sample shape (a, b, c) is HWC rather than CHW: a graph exported
 * from Keras (tf2onnx, keras export) keeps Keras's NHWC input, e.g. [N, 224, 224, 3]. The last
 * dimension must be 1 or 3 and the first not (a 3x3x3 input stays CHW). */
static int is_hwc_image(const cn_shape *s) {
  int last = (int)s->dim[2], first = (int)s->dim[0];
  return (last == 1 || last == 3) && first != 1 && first != 3;
}

/* A CHW image input gets the preprocessing torchvision's ImageNet models use: PIL bilinear
 * resize so that the central 87.5 % (224 of 256) is the input size, that centre, ImageNet
 * mean/std, written CHW. An HWC image input (a Keras export) gets what a Keras file does whose
 * name is no keras.applications model: nearest resize (load_img), no crop, raw pixels (grey:
 * x / 255), written HWC. A graph that runs as one sample (x->whole) or any other input gets no
 * image spec. */
static cn_input_spec onnx_spec(const cn_graph *g, int whole) {
  cn_input_spec spec = {0};
  const cn_shape *s = &g->nodes[g->inputs[0]].shape;
  spec.resize = CN_RESIZE_NEAREST;
  spec.preprocess = CN_PRE_RAW;
  if (s->rank != 3 || whole) return spec;
  if (is_hwc_image(s)) {
    spec.height = (int)s->dim[0];
    spec.width = (int)s->dim[1];
    spec.channels = (int)s->dim[2];
    spec.preprocess = spec.channels == 3 ? CN_PRE_RAW : CN_PRE_UNIT;
    return spec;
  }
  spec.channels = (int)s->dim[0];
  spec.height = (int)s->dim[1];
  spec.width = (int)s->dim[2];
  spec.channels_first = 1;
  spec.resize = CN_RESIZE_PIL_BILINEAR;
  spec.crop = 0.875;
  spec.preprocess = spec.channels == 3 ? CN_PRE_TORCH : CN_PRE_UNIT;
  return spec;
}

static cn_status make_model(cn_onnx_ctx *x, const char *name, cn_model **out) {
  cn_graph *g = x->g;
  x->g = NULL;
  cn_input_spec spec = onnx_spec(g, x->whole);
  return cn_model_wrap_graph(g, name, &spec, out);
}

static cn_status import_model(cn_onnx_ctx *x, const Onnx__ModelProto *m, cn_model **out) {
  if (!m->graph) return cn_fail(CN_ERR_FORMAT, "%s: the model has no graph", x->file);
  x->graph = m->graph;
  topo t = {0};
  cn_status st = check_opset(x, m);
  if (st == CN_OK) st = ctx_init(x, m->graph);
  if (st == CN_OK) st = add_initializers(x);
  if (st == CN_OK) st = add_graph_inputs(x);
  if (st == CN_OK) st = sort_nodes(x, &t);
  if (st == CN_OK) st = convert_nodes(x, &t);
  if (st == CN_OK) st = set_outputs(x);
  if (st == CN_OK) st = fill_params(x);
  if (st == CN_OK) {
    const char *slash = strrchr(x->file, '/');
    st = make_model(x, slash ? slash + 1 : x->file, out);
  }
  free(t.producer_of_input);
  free(t.first_input);
  free(t.order);
  return st;
}

/* Imports with ONNX's first axis as the engine batch; when that fails only because the graph
 * works across that axis, imports again with each ONNX tensor as one sample (x->whole). If that
 * fails too, the first error stands (it names what needs the batch axis). */
static cn_status import_either_way(const Onnx__ModelProto *m, const char *name,
                                   cn_input_value *values, int n, cn_model **out) {
  cn_onnx_ctx x = {.file = name, .inputs = values, .n_inputs = n};
  cn_status st = import_model(&x, m, out);
  int retry = st != CN_OK && x.want_whole;
  ctx_free(&x);
  if (!retry) return st;
  char first[512];
  snprintf(first, sizeof first, "%s", cn_last_error());
  cn_onnx_ctx whole = {.file = name, .whole = 1, .inputs = values, .n_inputs = n};
  cn_status st2 = import_model(&whole, m, out);
  ctx_free(&whole);
  return st2 == CN_OK ? CN_OK : cn_fail(st, "%s", first);
}

cn_status cn_onnx_load_buffer(const uint8_t *data, size_t size, const char *name, cn_model **out) {
  return cn_onnx_load_buffer_inputs(data, size, name, NULL, 0, out);
}

cn_status cn_onnx_load_buffer_inputs(const uint8_t *data, size_t size, const char *name,
                                     cn_input_value *values, int n, cn_model **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_onnx_load: NULL output");
  *out = NULL;
  if (size > CN_ONNX_MAX_FILE)
    return cn_fail(CN_ERR_LIMIT, "%s: larger than %zu bytes", name, CN_ONNX_MAX_FILE);
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
  if (!m) return cn_fail(CN_ERR_FORMAT, "%s: not an ONNX model (protobuf parse failed)", name);
  cn_status st = import_either_way(m, name, values, n, out);
  onnx__model_proto__free_unpacked(m, NULL);
  return st;
}

cn_status cn_onnx_load(const char *path, cn_model **out) {
  return cn_onnx_load_inputs(path, NULL, 0, out);
}

cn_status cn_onnx_load_inputs(const char *path, cn_input_value *values, int n, cn_model **out) {
  if (!out || !path) return cn_fail(CN_ERR_ARG, "cn_onnx_load: NULL argument");
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return cn_fail(CN_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  cn_status st = CN_OK;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
    st = cn_fail(CN_ERR_IO, "%s: not a regular file", path);
  else if ((uint64_t)sb.st_size > CN_ONNX_MAX_FILE)
    st = cn_fail(CN_ERR_LIMIT, "%s: larger than %zu bytes", path, CN_ONNX_MAX_FILE);
  uint8_t *buf = NULL;
  size_t size = st == CN_OK ? (size_t)sb.st_size : 0;
  if (st == CN_OK && !(buf = malloc(size + 1)))
    st = cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  if (st == CN_OK && fread(buf, 1, size, f) != size)
    st = cn_fail(CN_ERR_IO, "%s: short read", path);
  fclose(f);
  if (st == CN_OK) st = cn_onnx_load_buffer_inputs(buf, size, path, values, n, out);
  free(buf);
  return st;
}
