/* The operator interface: what the graph calls to infer shapes, run forward and backward. Each
 * operator of src/ops/ fills one cn_op; the graph owns nodes that point at them. */
#ifndef CN_CORE_OP_H
#define CN_CORE_OP_H

#include "core/graph.h"
#include "core/group.h"

/* What forward gets besides its tensors. */
typedef struct cn_exec {
  int batch;
  int threads;
  /* The batch whose size ops choose their algorithm by (cn_graph.algorithm_batch; 0: batch). */
  int algorithm_batch;
  float *scratch; /* op->scratch(...) floats, 64-byte aligned, contents undefined */
  /* Training (zero at inference). A training forward uses batch statistics in a trainable
   * BatchNormalization (and moves its moving statistics by its momentum) and drops units in
   * Dropout; a node whose `trainable` is 0 runs exactly as at inference. */
  int training;
  uint64_t seed; /* per step and node: stochastic ops draw from (seed, element index) only */
  float *saved;  /* op->saved(...) floats this node keeps from its training forward for backward */
  /* Data-parallel training: the batch is this rank's share of a global batch, starting at
   * sample first_sample of it; stochastic ops index their draws by the global element, and a
   * training BatchNormalization takes its statistics over the whole global batch (group). */
  int64_t first_sample;
  cn_group *group; /* NULL: one process */
  int placeholder; /* 1: this rank has no sample in the step; its batch of one is a stand-in that
                    * adds nothing to the global statistics (its gradient is zero) */
  /* Inference only (a training forward is fp32): CN_PRECISION_BF16 lets Conv2D and Dense multiply
   * bf16-rounded weights and inputs with fp32 sums. Ops that do not read it stay fp32. */
  cn_precision precision;
  /* The graph's weights_version, and whether every write of its weights bumps it (a model's
   * graphs): then weights derived from them are checked against the version, not the values. */
  int weights_version;
  int versioned_weights;
} cn_exec;

/* The batch ops choose this forward's algorithms for (see cn_graph.algorithm_batch). */
static inline int cn_exec_algorithm_batch(const cn_exec *ex) {
  return ex->algorithm_batch > 0 ? ex->algorithm_batch : ex->batch;
}

/* The global index of element 0 of a batch tensor of n elements (see first_sample). */
static inline uint64_t cn_exec_first_element(const cn_exec *ex, int64_t n) {
  return ex->batch > 0 ? (uint64_t)ex->first_sample * (uint64_t)(n / ex->batch) : 0;
}

typedef struct cn_op {
  const char *type;  /* Keras class name, e.g. "Conv2D" */
  size_t attrs_size; /* bytes of the attribute struct cn_graph_add copies */
  /* How many inputs a node of this op takes (max_inputs 0: no upper bound; a graph_input op
   * takes none). cn_graph_add refuses other counts before infer runs, so infer may read
   * inputs[0 .. min_inputs - 1]. Ops whose count depends on their attributes narrow it in infer. */
  int min_inputs, max_inputs;
  /* Sets node->shape from the inputs' per-sample shapes (g->nodes[node->inputs[i]].shape),
   * validates attributes and declares parameters with cn_node_add_param, in Keras order.
   * Failures name the layer: cn_fail(CN_ERR_SHAPE, "%s: ...", node->name). */
  cn_status (*infer)(cn_graph *g, cn_node *node);
  /* Computes out from in[0..n_inputs-1]; shapes include the batch dimension. May not fail:
   * everything that can go wrong is checked by infer. */
  void (*forward)(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex);
  /* Workspace floats forward needs for this batch (NULL: none). Keep it bounded (tile im2col)
   * so that large models fit: VGG16 at 224 must peak below weights + 150 MB. */
  size_t (*scratch)(const cn_graph *g, const cn_node *node, int batch);
  /* 1: out may be the same buffer as in[0] (elementwise ops, reshapes). */
  int inplace;
  /* Optional, for ops that are not `inplace`: the input whose buffer out may be (the plan gives
   * out that buffer when this node is its last reader), or -1. Asked when the plan is made, so
   * the answer may depend on the graph's precision but not on the batch. */
  int (*overwrites)(const cn_graph *g, const cn_node *node);
  /* 1: a graph input, whose value the caller of cn_graph_run provides (InputLayer). */
  int graph_input;
  /* Optional: drop node->cache (called when weights change and when the graph is freed). */
  void (*release)(cn_node *node);

  /* ---- training (src/train/trainer.c calls these; ops without backward cannot be trained
   * through) ---- */
  /* Accumulates (+=) gradients. in, out: the tensors of the training forward (distinct buffers);
   * dout: d loss / d out. din[i].data: where to add d loss / d in[i], or NULL when input i needs
   * none. dparams[k]: where to add d loss / d node->params[k], or NULL (frozen, or state such as
   * moving statistics). ex->saved holds what the training forward stored, ex->scratch
   * op->backward_scratch floats. Results must be bitwise identical for any ex->threads:
   * partition reductions over the batch in fixed chunks, never by thread. */
  void (*backward)(cn_node *node, const cn_tensor *in, const cn_tensor *out, const cn_tensor *dout,
                   const cn_tensor *din, float *const *dparams, const cn_exec *ex);
  /* Floats the training forward keeps for backward in ex->saved (NULL: none). */
  size_t (*saved)(const cn_graph *g, const cn_node *node, int batch);
  /* Workspace floats backward needs (NULL: none). */
  size_t (*backward_scratch)(const cn_graph *g, const cn_node *node, int batch);
} cn_op;

#endif
