#include "core/graph.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/op.h"

/* The memory plan: each node's output lives in a slot of the arena; a slot is reused once every
 * consumer of every node stored in it has run. */
typedef struct cn_plan {
  int batch;
  int threads; /* cn_get_threads() when built: bf16 scratch is per thread */
  float *arena;
  size_t arena_floats, arena_capacity; /* needed; allocated (a larger earlier plan's) */
  size_t *offset;                      /* per node, in floats */
  float *scratch;
  size_t scratch_floats, scratch_capacity;
  char *needed; /* per node: an output depends on it (others are never run) */
} cn_plan;

cn_graph *cn_graph_new(void) {
  cn_graph *g = calloc(1, sizeof *g);
  if (!g) cn_fail(CN_ERR_NOMEM, "out of memory creating a graph");
  return g;
}

static void plan_free(cn_plan *p) {
  if (!p) return;
  cn_free_aligned(p->arena);
  cn_free_aligned(p->scratch);
  free(p->offset);
  free(p->needed);
  free(p);
}

void cn_graph_set_precision(cn_graph *g, cn_precision precision) {
  if (g->precision == precision) return;
  g->precision = precision;
  plan_free(g->plan);
  g->plan = NULL;
}

void cn_graph_set_algorithm_batch(cn_graph *g, int batch) {
  if (g->algorithm_batch == batch) return;
  g->algorithm_batch = batch;
  plan_free(g->plan);
  g->plan = NULL;
}

void cn_node_release(cn_node *n) {
  if (n->op && n->op->release) n->op->release(n);
  free(n->name);
  free(n->type);
  free(n->attrs);
  free(n->inputs);
  for (int p = 0; p < n->n_params; p++) free(n->params[p].name);
}

void cn_graph_free(cn_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n_nodes; i++) cn_node_release(&g->nodes[i]);
  free(g->nodes);
  cn_free_aligned(g->params);
  plan_free(g->plan);
  free(g);
}

static cn_status add_shared_with(cn_graph *g, int owner, const char *name, const int *inputs,
                                 int n_inputs, const void *attrs, int *index);

/* The node of dst that holds the parameters src's node `owner` owns: the copy of the owner, or
 * the first copy of another call of the same layer that became their owner in dst. */
static int copied_owner(const cn_graph *dst, const cn_graph *src, int owner) {
  int at = cn_graph_find(dst, src->nodes[owner].name);
  if (at >= 0) return dst->nodes[at].op == src->nodes[owner].op ? at : -1;
  for (int j = 0; j < dst->n_nodes; j++) {
    if (dst->nodes[j].shares >= 0) continue;
    int s = cn_graph_find(src, dst->nodes[j].name);
    if (s >= 0 && src->nodes[s].shares == owner) return j;
  }
  return -1;
}

cn_status cn_graph_copy_node(cn_graph *dst, const cn_graph *src, int i, const int *inputs,
                             int *index) {
  const cn_node *n = &src->nodes[i];
  int at, owner = n->shares >= 0 ? copied_owner(dst, src, n->shares) : -1;
  cn_status st = owner >= 0
                     ? add_shared_with(dst, owner, n->name, inputs, n->n_inputs, n->attrs, &at)
                     : cn_graph_add(dst, n->op, n->name, inputs, n->n_inputs, n->attrs, &at);
  if (st != CN_OK) return st;
  cn_node *copy = &dst->nodes[at];
  /* a shared layer is frozen or trained as a whole, as in Keras */
  copy->trainable = owner >= 0 ? dst->nodes[owner].trainable : n->trainable;
  free(copy->type);
  copy->type = cn_strdup(n->type);
  if (!copy->type) return CN_ERR_NOMEM;
  if (copy->n_params != n->n_params)
    return cn_fail(CN_ERR_ARG, "%s: copy declared different parameters", n->name);
  for (int p = 0; p < n->n_params; p++) {
    copy->params[p].trainable = n->params[p].trainable;
    copy->params[p].init = n->params[p].init;
  }
  if (index) *index = at;
  return CN_OK;
}

cn_status cn_graph_clone(const cn_graph *g, cn_graph **out) {
  *out = NULL;
  cn_graph *copy = cn_graph_new();
  cn_status st = copy ? CN_OK : CN_ERR_NOMEM;
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++)
    st = cn_graph_copy_node(copy, g, i, g->nodes[i].inputs, NULL);
  if (st == CN_OK && g->n_outputs) st = cn_graph_set_outputs(copy, g->outputs, g->n_outputs);
  if (st == CN_OK) st = cn_graph_alloc_params(copy);
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++)
    for (int p = 0; p < g->nodes[i].n_params; p++) {
      const cn_param *from = &g->nodes[i].params[p];
      if (from->data)
        memcpy(copy->nodes[i].params[p].data, from->data,
               (size_t)cn_shape_numel(&from->shape) * sizeof(float));
    }
  if (st != CN_OK) {
    cn_graph_free(copy);
    return st;
  }
  *out = copy;
  return CN_OK;
}

int cn_graph_find(const cn_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (strcmp(g->nodes[i].name, name) == 0) return i;
  return -1;
}

static cn_status add_param(cn_node *node, const char *name, cn_shape shape, int trainable) {
  if (node->n_params >= CN_MAX_PARAMS)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: too many parameters", node->name);
  if (cn_shape_numel(&shape) < 0)
    return cn_fail(CN_ERR_LIMIT, "%s/%s: parameter too large", node->name, name);
  cn_param *p = &node->params[node->n_params];
  p->name = cn_strdup(name);
  if (!p->name) return CN_ERR_NOMEM;
  p->shape = shape;
  p->data = NULL;
  p->trainable = trainable;
  node->n_params++;
  return CN_OK;
}

cn_status cn_node_add_param(cn_node *node, const char *name, cn_shape shape) {
  return add_param(node, name, shape, 1);
}

cn_status cn_node_add_state(cn_node *node, const char *name, cn_shape shape) {
  return add_param(node, name, shape, 0);
}

cn_param *cn_node_find_param(cn_node *node, const char *name) {
  for (int i = 0; i < node->n_params; i++)
    if (strcmp(node->params[i].name, name) == 0) return &node->params[i];
  return NULL;
}

int64_t cn_node_param_count(const cn_node *node) {
  int64_t total = 0;
  for (int i = 0; i < node->n_params; i++) total += cn_shape_numel(&node->params[i].shape);
  return total;
}

int64_t cn_node_trainable_count(const cn_node *node) {
  int64_t total = 0;
  if (!node->trainable) return 0;
  for (int i = 0; i < node->n_params; i++)
    if (node->params[i].trainable) total += cn_shape_numel(&node->params[i].shape);
  return total;
}

static cn_status grow_nodes(cn_graph *g) {
  if (g->n_nodes < g->cap_nodes) return CN_OK;
  int cap = g->cap_nodes ? g->cap_nodes * 2 : 64;
  cn_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
  if (!nodes) return cn_fail(CN_ERR_NOMEM, "out of memory growing the graph");
  g->nodes = nodes;
  g->cap_nodes = cap;
  return CN_OK;
}

static cn_status check_new_node(const cn_graph *g, const char *name, const int *inputs,
                                int n_inputs) {
  if (!name || !*name) return cn_fail(CN_ERR_ARG, "a layer needs a name");
  if (cn_graph_find(g, name) >= 0) return cn_fail(CN_ERR_FORMAT, "%s: duplicate layer name", name);
  for (int i = 0; i < n_inputs; i++)
    if (inputs[i] < 0 || inputs[i] >= g->n_nodes)
      return cn_fail(CN_ERR_ARG, "%s: input %d is not an earlier layer", name, i);
  return CN_OK;
}

static cn_status check_input_count(const cn_op *op, const char *name, int n_inputs) {
  int lo = op->min_inputs, hi = op->max_inputs;
  if (op->graph_input) return n_inputs ? cn_fail(CN_ERR_SHAPE, "%s: takes no inputs", name) : CN_OK;
  if (n_inputs >= lo && (hi == 0 || n_inputs <= hi)) return CN_OK;
  if (lo == 1 && hi == 1) return cn_fail(CN_ERR_SHAPE, "%s: expects one input", name);
  if (lo == hi) return cn_fail(CN_ERR_SHAPE, "%s: expects %d inputs, got %d", name, lo, n_inputs);
  if (hi == 0)
    return cn_fail(CN_ERR_SHAPE, "%s: expects at least %d inputs, got %d", name, lo, n_inputs);
  return cn_fail(CN_ERR_SHAPE, "%s: expects %d to %d inputs, got %d", name, lo, hi, n_inputs);
}

cn_status cn_graph_add(cn_graph *g, const cn_op *op, const char *name, const int *inputs,
                       int n_inputs, const void *attrs, int *index) {
  cn_status st = check_new_node(g, name, inputs, n_inputs);
  if (st == CN_OK) st = check_input_count(op, name, n_inputs);
  if (st == CN_OK) st = grow_nodes(g);
  if (st != CN_OK) return st;
  cn_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->trainable = 1;
  n->shares = -1;
  n->name = cn_strdup(name);
  n->type = cn_strdup(op->type);
  n->inputs = malloc((size_t)(n_inputs ? n_inputs : 1) * sizeof *n->inputs);
  if (op->attrs_size) n->attrs = malloc(op->attrs_size);
  if (!n->name || !n->type || !n->inputs || (op->attrs_size && !n->attrs)) {
    g->n_nodes++; /* so cn_graph_free releases the partial node */
    return cn_fail(CN_ERR_NOMEM, "out of memory adding %s", name);
  }
  if (op->attrs_size) memcpy(n->attrs, attrs, op->attrs_size);
  if (n_inputs) memcpy(n->inputs, inputs, (size_t)n_inputs * sizeof *inputs);
  n->n_inputs = n_inputs;
  g->n_nodes++;
  if (op->graph_input && g->n_inputs < CN_MAX_GRAPH_IO) g->inputs[g->n_inputs++] = g->n_nodes - 1;
  st = op->infer(g, n);
  if (st != CN_OK) return st;
  if (n->shape.rank >= CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: output rank %d is too high", name, n->shape.rank);
  if (cn_shape_numel(&n->shape) < 0) return cn_fail(CN_ERR_LIMIT, "%s: output too large", name);
  if (index) *index = g->n_nodes - 1;
  plan_free(g->plan);
  g->plan = NULL;
  return CN_OK;
}

cn_status cn_graph_set_outputs(cn_graph *g, const int *outputs, int n_outputs) {
  if (n_outputs < 1 || n_outputs > CN_MAX_GRAPH_IO)
    return cn_fail(CN_ERR_ARG, "a graph has 1 to %d outputs", CN_MAX_GRAPH_IO);
  for (int i = 0; i < n_outputs; i++) {
    if (outputs[i] < 0 || outputs[i] >= g->n_nodes) return cn_fail(CN_ERR_ARG, "bad output node");
    g->outputs[i] = outputs[i];
  }
  g->n_outputs = n_outputs;
  plan_free(g->plan);
  g->plan = NULL;
  return CN_OK;
}

cn_status cn_graph_default_outputs(cn_graph *g) {
  if (g->n_outputs > 0 || g->n_nodes == 0) return CN_OK;
  int last = g->n_nodes - 1;
  return cn_graph_set_outputs(g, &last, 1);
}

static size_t aligned_floats(size_t n) {
  size_t per = CN_ALIGN / sizeof(float);
  return (n + per - 1) / per * per;
}

cn_status cn_graph_alloc_params(cn_graph *g) {
  size_t total = 0;
  for (int i = 0; i < g->n_nodes; i++)
    for (int p = 0; p < g->nodes[i].n_params && g->nodes[i].shares < 0; p++)
      total += aligned_floats((size_t)cn_shape_numel(&g->nodes[i].params[p].shape));
  cn_free_aligned(g->params);
  g->params = NULL;
  g->n_param_floats = total;
  if (total) {
    g->params = cn_alloc_aligned(total * sizeof(float));
    if (!g->params) return cn_fail(CN_ERR_NOMEM, "out of memory for %zu parameters", total);
    memset(g->params, 0, total * sizeof(float));
  }
  size_t at = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    for (int p = 0; p < n->n_params; p++) {
      cn_param *param = &n->params[p];
      if (n->shares >= 0) { /* owners come first: their storage is placed already */
        param->data = g->nodes[n->shares].params[p].data;
        continue;
      }
      param->data = g->params + at;
      at += aligned_floats((size_t)cn_shape_numel(&param->shape));
    }
  }
  g->weights_version++;
  return CN_OK;
}

/* ---- shared layers ------------------------------------------------------------------------ */

int cn_graph_node_shared(const cn_graph *g, int i) {
  return g->nodes[i].shares >= 0 || cn_graph_share_count(g, i) > 0;
}

int cn_graph_share_count(const cn_graph *g, int owner) {
  int count = 0;
  for (int j = owner + 1; j < g->n_nodes; j++) count += g->nodes[j].shares == owner;
  return count;
}

/* The new node declared what the owner's shapes must be; refuses a call whose inputs give other
 * parameters, naming the layer as Keras would see it (one layer, called again). */
static cn_status check_same_params(const cn_graph *g, const cn_node *owner, const cn_node *n) {
  int same = owner->n_params == n->n_params;
  for (int p = 0; same && p < n->n_params; p++)
    same = cn_shape_equal(&owner->params[p].shape, &n->params[p].shape) &&
           strcmp(owner->params[p].name, n->params[p].name) == 0;
  if (same) return CN_OK;
  char have[96] = "()", want[96] = "()";
  if (n->n_inputs > 0 && owner->n_inputs > 0) {
    cn_shape_format(&g->nodes[n->inputs[0]].shape, have, sizeof have);
    cn_shape_format(&g->nodes[owner->inputs[0]].shape, want, sizeof want);
  }
  return cn_fail(CN_ERR_SHAPE, "%s: called on an input of shape %s but its weights fit %s",
                 owner->name, have, want);
}

static cn_status add_shared_with(cn_graph *g, int owner, const char *name, const int *inputs,
                                 int n_inputs, const void *attrs, int *index) {
  if (owner < 0 || owner >= g->n_nodes)
    return cn_fail(CN_ERR_ARG, "%s: the shared layer is not an earlier layer", name ? name : "?");
  if (g->nodes[owner].shares >= 0) owner = g->nodes[owner].shares;
  const cn_node *o = &g->nodes[owner];
  if (o->op->graph_input)
    return cn_fail(CN_ERR_ARG, "%s: an input layer cannot be called again", o->name);
  int before = g->n_nodes, at = -1;
  cn_status st = cn_graph_add(g, o->op, name, inputs, n_inputs, attrs, &at);
  if (st == CN_OK) st = check_same_params(g, &g->nodes[owner], &g->nodes[at]);
  if (st != CN_OK) { /* drop the half-made node: a failed call leaves the graph as it was */
    while (g->n_nodes > before) cn_node_release(&g->nodes[--g->n_nodes]);
    return st;
  }
  cn_node *n = &g->nodes[at];
  o = &g->nodes[owner];
  n->shares = owner;
  n->trainable = o->trainable;
  char *type = cn_strdup(o->type);
  if (!type) return cn_fail(CN_ERR_NOMEM, "out of memory adding %s", name);
  free(n->type);
  n->type = type;
  for (int p = 0; p < n->n_params; p++) {
    n->params[p].trainable = o->params[p].trainable;
    n->params[p].init = o->params[p].init;
    n->params[p].data = o->params[p].data;
  }
  if (index) *index = at;
  return CN_OK;
}

cn_status cn_graph_add_shared(cn_graph *g, int owner, const char *name, const int *inputs,
                              int n_inputs, const void *attrs, int *index) {
  if (owner < 0 || owner >= g->n_nodes)
    return cn_fail(CN_ERR_ARG, "%s: the shared layer is not an earlier layer", name ? name : "?");
  int root = g->nodes[owner].shares >= 0 ? g->nodes[owner].shares : owner;
  return add_shared_with(g, root, name, inputs, n_inputs, attrs ? attrs : g->nodes[root].attrs,
                         index);
}

/* ---- memory plan -------------------------------------------------------------------------- */

typedef struct slot {
  size_t floats;
  int first, last; /* node indices during which the slot is live */
  size_t offset;
} slot;

static int is_output(const cn_graph *g, int node) {
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] == node) return 1;
  return 0;
}

/* last_use[i]: the last node that reads node i's output (INT_MAX for graph outputs). */
static void compute_last_use(const cn_graph *g, int *last_use) {
  for (int i = 0; i < g->n_nodes; i++) last_use[i] = is_output(g, i) ? INT_MAX : i;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_inputs; k++) {
      int src = g->nodes[i].inputs[k];
      if (last_use[src] != INT_MAX && last_use[src] < i) last_use[src] = i;
    }
}

/* The node whose buffer n's output may take, or -1. */
static int inplace_source(const cn_graph *g, const cn_node *n) {
  int input = n->op->inplace ? 0 : n->op->overwrites ? n->op->overwrites(g, n) : -1;
  return input >= 0 && input < n->n_inputs ? n->inputs[input] : -1;
}

/* Assigns a slot to each node: an in-place op takes over its input's slot when it is that
 * input's last reader. */
static int assign_slots(const cn_graph *g, int batch, const int *last_use, int *node_slot,
                        slot *slots) {
  int n_slots = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    size_t floats = aligned_floats((size_t)batch * (size_t)cn_shape_numel(&n->shape));
    int src = inplace_source(g, n);
    if (src >= 0 && last_use[src] == i && slots[node_slot[src]].floats >= floats) {
      node_slot[i] = node_slot[src];
    } else {
      node_slot[i] = n_slots;
      slots[n_slots] = (slot){.floats = floats, .first = i, .last = i};
      n_slots++;
    }
    slot *s = &slots[node_slot[i]];
    if (last_use[i] > s->last) s->last = last_use[i];
  }
  return n_slots;
}

static int by_size_desc(const void *a, const void *b) {
  const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
  return (x->floats < y->floats) - (x->floats > y->floats);
}

/* Greedy placement, largest first, at the lowest offset free during the slot's lifetime. */
static size_t place_slots(slot *slots, int n_slots) {
  slot **order = malloc((size_t)(n_slots ? n_slots : 1) * sizeof *order);
  if (!order) return SIZE_MAX;
  for (int i = 0; i < n_slots; i++) order[i] = &slots[i];
  qsort(order, (size_t)n_slots, sizeof *order, by_size_desc);
  size_t arena = 0;
  for (int i = 0; i < n_slots; i++) {
    slot *s = order[i];
    size_t offset = 0;
    for (int moved = 1; moved;) {
      moved = 0;
      for (int j = 0; j < i; j++) {
        const slot *t = order[j];
        int live_together = t->first <= s->last && s->first <= t->last;
        int overlap = offset < t->offset + t->floats && t->offset < offset + s->floats;
        if (live_together && overlap) {
          offset = t->offset + t->floats;
          moved = 1;
        }
      }
    }
    s->offset = offset;
    if (offset + s->floats > arena) arena = offset + s->floats;
  }
  free(order);
  return arena;
}

/* needed[i]: node i is an output or an input of a needed node (a model built from part of a net,
 * or an import with a branch nobody reads, runs only what its outputs use). */
static void compute_needed(const cn_graph *g, char *needed) {
  for (int i = 0; i < g->n_nodes; i++) needed[i] = (char)is_output(g, i);
  for (int i = g->n_nodes - 1; i >= 0; i--)
    if (needed[i])
      for (int k = 0; k < g->nodes[i].n_inputs; k++) needed[g->nodes[i].inputs[k]] = 1;
}

/* A buffer of at least `floats` floats for a new plan: the old plan's (taken from it) when large
 * enough, else a new one. A server's batches change size from one run to the next; new buffers
 * for a VGG16's activations at batch 8 cost their page faults (~300 MB) on every change. */
static float *plan_buffer(float **old, size_t old_capacity, size_t floats, size_t *capacity) {
  if (*old && old_capacity >= floats) {
    float *b = *old;
    *old = NULL;
    *capacity = old_capacity;
    return b;
  }
  *capacity = floats;
  return cn_alloc_aligned(floats * sizeof(float));
}

/* The arena and scratch of p, reusing those of the graph's current plan where they are large
 * enough. 0 when out of memory (the current plan, which may have lost a buffer, is then freed). */
static int plan_buffers(cn_graph *g, cn_plan *p) {
  cn_plan none = {0}, *old = g->plan ? g->plan : &none;
  p->arena = plan_buffer(&old->arena, old->arena_capacity, p->arena_floats, &p->arena_capacity);
  p->scratch = plan_buffer(&old->scratch, old->scratch_capacity,
                           aligned_floats(p->scratch_floats + 1), &p->scratch_capacity);
  if ((!p->arena && p->arena_floats) || !p->scratch) {
    plan_free(g->plan);
    g->plan = NULL;
    return 0;
  }
  return 1;
}

static cn_status plan_build(cn_graph *g, int batch) {
  int n = g->n_nodes;
  int *last_use = malloc((size_t)n * sizeof *last_use);
  int *node_slot = malloc((size_t)n * sizeof *node_slot);
  slot *slots = malloc((size_t)n * sizeof *slots);
  cn_plan *p = calloc(1, sizeof *p);
  cn_status st = CN_OK;
  if (!last_use || !node_slot || !slots || !p) {
    st = cn_fail(CN_ERR_NOMEM, "out of memory planning the graph");
    goto done;
  }
  p->batch = batch;
  p->threads = cn_get_threads();
  p->offset = malloc((size_t)n * sizeof *p->offset);
  p->needed = malloc((size_t)(n ? n : 1));
  if (p->needed) compute_needed(g, p->needed);
  compute_last_use(g, last_use);
  int n_slots = assign_slots(g, batch, last_use, node_slot, slots);
  p->arena_floats = place_slots(slots, n_slots);
  for (int i = 0; i < n; i++) {
    const cn_node *node = &g->nodes[i];
    if (node->op->scratch) {
      size_t s = node->op->scratch(g, node, batch);
      if (s > p->scratch_floats) p->scratch_floats = s;
    }
  }
  if (p->offset) {
    for (int i = 0; i < n; i++) p->offset[i] = slots[node_slot[i]].offset;
  }
  if (!p->offset || !p->needed || p->arena_floats == SIZE_MAX || !plan_buffers(g, p)) {
    st = cn_fail(CN_ERR_NOMEM, "out of memory for activations (batch %d)", batch);
    goto done;
  }
  plan_free(g->plan);
  g->plan = p;
  p = NULL;
done:
  plan_free(p);
  free(last_use);
  free(node_slot);
  free(slots);
  return st;
}

size_t cn_graph_plan_bytes(const cn_graph *g) {
  if (!g->plan) return 0;
  return (g->plan->arena_floats + g->plan->scratch_floats) * sizeof(float);
}

static cn_tensor node_tensor(const cn_graph *g, int i) {
  cn_tensor t = {cn_shape_batch(g->plan->batch, &g->nodes[i].shape),
                 g->plan->arena + g->plan->offset[i]};
  return t;
}

enum { CN_MAX_NODE_INPUTS = 64 };

static double wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

cn_status cn_graph_run(cn_graph *g, int batch, const float *const *inputs, float *const *outputs) {
  if (batch < 1) return cn_fail(CN_ERR_ARG, "batch must be at least 1");
  cn_status st = cn_graph_default_outputs(g);
  if (st == CN_OK && !g->params && g->n_param_floats == 0) st = cn_graph_alloc_params(g);
  int replan = !g->plan || g->plan->batch != batch ||
               (g->precision != CN_PRECISION_FP32 && g->plan->threads != cn_get_threads());
  if (st == CN_OK && replan) st = plan_build(g, batch);
  if (st != CN_OK) return st;
  for (int i = 0; i < g->n_inputs; i++) {
    cn_tensor t = node_tensor(g, g->inputs[i]);
    size_t n = (size_t)cn_shape_numel(&t.shape);
    if (n) memcpy(t.data, inputs[i], n * sizeof(float)); /* an empty input may have no buffer */
  }
  cn_exec ex = {.batch = batch,
                .threads = cn_get_threads(),
                .algorithm_batch = cn_graph_algorithm_batch(g, batch),
                .scratch = g->plan->scratch,
                .precision = g->precision,
                .weights_version = g->weights_version,
                .versioned_weights = g->versioned_weights};
  cn_tensor in[CN_MAX_NODE_INPUTS];
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    if (n->op->graph_input || !g->plan->needed[i]) continue;
    if (n->n_inputs > CN_MAX_NODE_INPUTS)
      return cn_fail(CN_ERR_UNSUPPORTED, "%s: more than %d inputs", n->name, CN_MAX_NODE_INPUTS);
    for (int k = 0; k < n->n_inputs; k++) in[k] = node_tensor(g, n->inputs[k]);
    cn_tensor out = node_tensor(g, i);
    double start = g->profile_ms ? wall_ms() : 0;
    n->op->forward(n, in, &out, &ex);
    if (g->profile_ms) g->profile_ms[i] += wall_ms() - start;
  }
  for (int i = 0; i < g->n_outputs; i++) {
    cn_tensor t = node_tensor(g, g->outputs[i]);
    size_t n = (size_t)cn_shape_numel(&t.shape);
    if (n) memcpy(outputs[i], t.data, n * sizeof(float));
  }
  return CN_OK;
}

/* ---- shapes ------------------------------------------------------------------------------- */

cn_shape cn_shape_make(int rank, const int64_t *dims) {
  cn_shape s = {0};
  s.rank = rank;
  for (int i = 0; i < rank && i < CN_MAX_RANK; i++) s.dim[i] = dims[i];
  return s;
}

cn_shape cn_shape_batch(int batch, const cn_shape *sample) {
  cn_shape s = {0};
  s.rank = sample->rank + 1;
  s.dim[0] = batch;
  for (int i = 0; i < sample->rank && i + 1 < CN_MAX_RANK; i++) s.dim[i + 1] = sample->dim[i];
  return s;
}

int cn_shape_equal(const cn_shape *a, const cn_shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

/* Node `from` holds weights that fit node n: the same count and shapes. */
static cn_status same_weights(const cn_node *n, const cn_node *from) {
  int fits = n->n_params == from->n_params;
  for (int k = 0; fits && k < n->n_params; k++)
    fits = cn_shape_equal(&n->params[k].shape, &from->params[k].shape);
  return fits ? CN_OK
              : cn_fail(CN_ERR_SHAPE, "%s: the source's weights of that layer differ in shape",
                        n->name);
}

cn_status cn_graph_copy_weights(cn_graph *dst, const cn_graph *src, int *copied) {
  int count = 0;
  for (int pass = 0; pass < 2; pass++) /* check everything, then copy */
    for (int i = 0; i < dst->n_nodes; i++) {
      cn_node *n = &dst->nodes[i];
      int j = n->n_params ? cn_graph_find(src, n->name) : -1;
      if (j < 0) continue;
      if (pass == 0) {
        cn_status st = same_weights(n, &src->nodes[j]);
        if (st != CN_OK) return st;
        continue;
      }
      for (int k = 0; k < n->n_params; k++)
        memcpy(n->params[k].data, src->nodes[j].params[k].data,
               (size_t)cn_shape_numel(&n->params[k].shape) * sizeof(float));
      count++;
    }
  dst->weights_version++;
  if (copied) *copied = count;
  return CN_OK;
}
