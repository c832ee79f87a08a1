/* src/core: tensors, the graph and its memory plan, the operator interface, errors, threads, RNG.
 * Calls libc and OpenMP only.
 *
 * The computation graph: named layers (nodes) in topological order, their named parameters in one
 * contiguous buffer, and a memory plan that reuses activation buffers by liveness. */
#ifndef CN_CORE_GRAPH_H
#define CN_CORE_GRAPH_H

#include "convnet/core.h"

/* A layer has at most 4 (BatchNormalization); a fused inference node (cn_op_dw_conv) 6. */
#define CN_MAX_PARAMS 6
#define CN_MAX_GRAPH_IO 8

/* A view of contiguous row-major floats. The shape includes the batch dimension (NHWC for
 * images). Tensors never own memory: the graph's arena or the caller does. */
typedef struct cn_tensor {
  cn_shape shape;
  float *data;
} cn_tensor;

/* How a parameter is initialised (Keras's initializers; src/model/init.c draws them). */
typedef enum cn_init_kind {
  CN_INIT_DEFAULT, /* Keras's default for the weight's name (init.c) */
  CN_INIT_ZEROS,
  CN_INIT_ONES,
  CN_INIT_CONSTANT,         /* a */
  CN_INIT_RANDOM_UNIFORM,   /* in [a, b) */
  CN_INIT_RANDOM_NORMAL,    /* mean a, stddev b */
  CN_INIT_TRUNCATED_NORMAL, /* mean a, stddev b, redrawn beyond 2 stddev */
  CN_INIT_VARIANCE_SCALING, /* scale a / fan (mode), drawn from `distribution` */
  CN_INIT_UNSUPPORTED,      /* named in `name`; initialising fails naming it */
} cn_init_kind;
typedef enum cn_fan_mode { CN_FAN_IN, CN_FAN_OUT, CN_FAN_AVG } cn_fan_mode;
typedef enum cn_init_distribution {
  CN_DIST_TRUNCATED_NORMAL,
  CN_DIST_UNTRUNCATED_NORMAL,
  CN_DIST_UNIFORM,
} cn_init_distribution;
typedef struct cn_init {
  cn_init_kind kind;
  float a, b;
  cn_fan_mode mode;
  cn_init_distribution distribution;
  char name[32]; /* the initializer's name as the file gave it, for messages */
} cn_init;

typedef struct cn_param {
  char *name; /* Keras weight name without the layer prefix: "kernel", "moving_mean", ... */
  cn_shape shape;
  float *data;   /* inside cn_graph.params once cn_graph_alloc_params has run */
  int trainable; /* 0 for state such as BatchNormalization's moving statistics */
  cn_init init;  /* how cn_model_init_weights fills it */
} cn_param;

struct cn_op;
struct cn_plan;

typedef struct cn_node {
  char *name;
  char *type; /* the class name to show (e.g. "ReLU" for an Activation op); defaults to op->type */
  const struct cn_op *op;
  void *attrs; /* a copy of the op's attribute struct (op->attrs_size bytes) */
  int n_inputs;
  int *inputs;    /* indices of earlier nodes */
  cn_shape shape; /* output shape per sample (no batch dimension) */
  int n_params;
  cn_param params[CN_MAX_PARAMS]; /* in the order Keras lists the layer's weights */
  int trainable;
  void *cache; /* op-owned derived data (repacked weights...), released by op->release */
  /* A shared layer's later call (Keras: one layer object called on several tensors): the index
   * of the earlier node whose parameters this node uses, or -1 when it owns its own. Its params[]
   * declare the same names and shapes and their data point into the owner's storage, so the
   * weights exist once and the trainer's gradients of them sum over every call. */
  int shares;
} cn_node;

typedef struct cn_graph {
  int n_nodes, cap_nodes;
  cn_node *nodes;
  int n_inputs, inputs[CN_MAX_GRAPH_IO];
  int n_outputs, outputs[CN_MAX_GRAPH_IO];
  float *params; /* every parameter of every node, 64-byte aligned per parameter */
  size_t n_param_floats;
  int weights_version; /* bumped whenever weights change, so ops can refresh caches */
  struct cn_plan *plan;
  /* Per-layer timing (cn_model_profile): when non-NULL, cn_graph_run adds each node's forward
   * wall time to profile_ms[node] (n_nodes entries, owned by the caller). */
  double *profile_ms;
  /* The arithmetic cn_graph_run asks of the ops (cn_exec.precision); set with
   * cn_graph_set_precision, which drops a plan sized for the other one. */
  cn_precision precision;
  /* 0: ops choose each forward's algorithms (Winograd or im2col, fused or apart) for its own
   * batch, the fastest. B > 0: as for a batch of B whatever the batch, so that a sample's result
   * is the same bits in any batch. Set with cn_graph_set_algorithm_batch, which drops the plan
   * (its scratch follows the choices). */
  int algorithm_batch;
  /* 1: every write of the weights bumps weights_version (cn_exec.versioned_weights). */
  int versioned_weights;
} cn_graph;

cn_graph *cn_graph_new(void);
void cn_graph_set_precision(cn_graph *g, cn_precision precision);
void cn_graph_set_algorithm_batch(cn_graph *g, int batch);
/* The batch ops choose their algorithm by for a run of `batch` samples. */
static inline int cn_graph_algorithm_batch(const cn_graph *g, int batch) {
  return g->algorithm_batch > 0 ? g->algorithm_batch : batch;
}
void cn_graph_free(cn_graph *g);

/* Appends a node; inputs must be earlier nodes. Copies attrs (op->attrs_size bytes), runs the op's
 * shape inference (which declares the parameters), and returns the new index in *index. */
cn_status cn_graph_add(cn_graph *g, const struct cn_op *op, const char *name, const int *inputs,
                       int n_inputs, const void *attrs, int *index);
/* Appends a node that calls node `owner` again (a shared layer): the owner's op on new inputs,
 * with the owner's parameters (no new storage). attrs: the owner's attribute struct type (NULL:
 * a copy of the owner's; a call may differ in what does not touch the weights, such as a fused
 * activation). Fails, naming the owner, when the inputs give different parameter shapes than the
 * owner's; the graph is then unchanged. An owner that itself shares resolves to the node owning
 * the parameters. */
cn_status cn_graph_add_shared(cn_graph *g, int owner, const char *name, const int *inputs,
                              int n_inputs, const void *attrs, int *index);
/* 1 when node i shares another's parameters or another node shares its parameters (graph
 * rewrites that change one node's weights must leave such nodes alone). */
int cn_graph_node_shared(const cn_graph *g, int i);
/* How many nodes share node owner's parameters. */
int cn_graph_share_count(const cn_graph *g, int owner);
/* A deep copy with its own parameter buffer holding the same values; no plan, no caches. */
cn_status cn_graph_clone(const cn_graph *g, cn_graph **out);
/* Appends a copy of src's node i (attrs, type, trainable flags; not parameter values) to dst,
 * reading from dst's nodes `inputs` (n_inputs of them). A node sharing parameters shares them
 * in dst with the node of its owner's name (or with an earlier copy of another call of the same
 * layer); when no such node was copied it owns its parameters in dst. */
cn_status cn_graph_copy_node(cn_graph *dst, const cn_graph *src, int i, const int *inputs,
                             int *index);
/* Frees what a node owns (name, attrs, inputs, parameter names, op cache), not the node itself;
 * for graph rewrites that drop nodes. */
void cn_node_release(cn_node *node);
/* Copies the parameters of every node of dst that src has under the same name (the same shapes,
 * or nothing is copied and the first misfit is named); *copied (may be NULL) counts the nodes. */
cn_status cn_graph_copy_weights(cn_graph *dst, const cn_graph *src, int *copied);
/* Node index by name, or -1. */
int cn_graph_find(const cn_graph *g, const char *name);
/* Declared by an op's infer function, in Keras weight order. */
cn_status cn_node_add_param(cn_node *node, const char *name, cn_shape shape);
/* The same for non-trainable state (moving_mean, moving_variance). */
cn_status cn_node_add_state(cn_node *node, const char *name, cn_shape shape);
cn_param *cn_node_find_param(cn_node *node, const char *name);
/* Default: the graph's inputs are its Input nodes and its output the last node. */
cn_status cn_graph_set_outputs(cn_graph *g, const int *outputs, int n_outputs);
/* Sets that default (the last node) when no outputs are set yet. */
cn_status cn_graph_default_outputs(cn_graph *g);
/* Allocates (zeroed) storage for every declared parameter; call after the last cn_graph_add.
 * Nodes that share parameters get no storage of their own: their data point at the owner's. */
cn_status cn_graph_alloc_params(cn_graph *g);
int64_t cn_node_param_count(const cn_node *node);
int64_t cn_node_trainable_count(const cn_node *node);

/* Runs the graph on batch samples. inputs[i] and outputs[i] are contiguous per-sample-shaped
 * batches for graph input/output i. Plans memory on first use and when the batch changes. */
cn_status cn_graph_run(cn_graph *g, int batch, const float *const *inputs, float *const *outputs);
/* Bytes of activation arena plus scratch the current plan uses (for tests of the plan). */
size_t cn_graph_plan_bytes(const cn_graph *g);

/* Shape helpers for ops. */
cn_shape cn_shape_make(int rank, const int64_t *dims);
cn_shape cn_shape_batch(int batch, const cn_shape *sample); /* prepends the batch dimension */
int cn_shape_equal(const cn_shape *a, const cn_shape *b);

#endif
