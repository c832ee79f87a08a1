/* src/train: losses, optimizers, the trainer, fit loop, data sets, feature cache, checkpoints,
 * evaluation. Calls io/, model/, ops/, image/, core/.
 *
 * The training executor: forward with every activation kept, backward in reverse topological
 * order, parameters and gradients in two collated buffers with the same offsets. It trains its
 * own copy of a graph (the output's softmax or sigmoid split off, so the loss can be fused with
 * it) and copies the parameters back on request. */
#ifndef CN_TRAIN_TRAINER_H
#define CN_TRAIN_TRAINER_H

#include "core/graph.h"
#include "core/group.h"
#include "train/optim.h"

typedef struct cn_trainer cn_trainer;

typedef enum cn_output_kind {
  CN_OUTPUT_LINEAR,  /* the graph's output is used as it is (MSE) */
  CN_OUTPUT_SOFTMAX, /* the graph ended in a softmax: the trainer's output are its logits */
  CN_OUTPUT_SIGMOID  /* the graph ended in a sigmoid: the trainer's output are its logits */
} cn_output_kind;

typedef struct cn_trainer_options {
  int max_batch;
  /* Also compute d loss / d input of every graph input (gradient probes, input optimisation). */
  int input_grad;
  /* 1: keep the output's final softmax or sigmoid (the output kind stays LINEAR): for graphs
   * that end in their own loss. */
  int keep_output_activation;
  /* Nodes whose gradient backward keeps (cn_trainer_node_grad), by index. */
  const int *grad_nodes;
  int n_grad_nodes;
  /* Data-parallel training (NULL: one process): each rank's batches are its shares of global
   * batches (cn_trainer_set_share); a training BatchNormalization takes the global batch's
   * statistics. The parameter gradients stay this rank's: the caller sums them. */
  cn_group *group;
} cn_trainer_options;

/* Copies g. Backward starts from its first output; every output is computed. Nodes with
 * trainable == 0 are frozen: no parameter gradients, and BatchNormalization runs in inference
 * mode. */
cn_status cn_trainer_new(const cn_graph *g, const cn_trainer_options *options, cn_trainer **out);
void cn_trainer_free(cn_trainer *t);

cn_output_kind cn_trainer_output_kind(const cn_trainer *t);
/* Per-sample shape of the trainer's output (the logits for SOFTMAX and SIGMOID). */
cn_shape cn_trainer_output_shape(const cn_trainer *t);
/* The graph being trained (its parameters are the ones the optimizer updates). */
cn_graph *cn_trainer_graph(cn_trainer *t);

/* With a group: the next batches are the share of the global batch that starts at its sample
 * first_sample (stochastic ops draw by global sample); placeholder 1 says this rank has no sample
 * in the step and its batch of one stands in, adding nothing to global statistics (its loss
 * gradient must be zero). Every rank must run each step's forward and backward. */
void cn_trainer_set_share(cn_trainer *t, int64_t first_sample, int placeholder);
/* Runs batch samples forward; training selects batch statistics and dropout. seed makes every
 * stochastic op's draw a function of (seed, node, element) only. Returns the output (batch x
 * output shape), valid until the next forward. */
cn_status cn_trainer_forward(cn_trainer *t, int batch, const float *input, int training,
                             uint64_t seed, const float **output);
/* The same for a graph of several inputs: inputs[k] feeds graph input k. */
cn_status cn_trainer_forward_inputs(cn_trainer *t, int batch, const float *const *inputs,
                                    int training, uint64_t seed, const float **output);
/* Node i's activation of the last forward (batch x its shape), or NULL when no output needs it. */
const float *cn_trainer_node_output(const cn_trainer *t, int node);
/* Node i's gradient of the last backward, or NULL when it was not kept (grad_nodes, input_grad)
 * or nothing trainable depends on it. */
const float *cn_trainer_node_grad(const cn_trainer *t, int node);

/* Backward of the last forward from d loss / d output (batch x output shape): sets the gradient
 * buffer (parameter gradients of trainable parameters, zero elsewhere). */
cn_status cn_trainer_backward(cn_trainer *t, const float *doutput);
/* Backward of the last forward from gradients seeded at several nodes at once: grads[k] is
 * d loss / d (node nodes[k]'s output) (batch x its shape), added where backward reaches the node
 * (losses on several layers, as style transfer takes them). Every node must feed the first output
 * and carry a gradient (the input-gradient path of input_grad does); else CN_ERR_ARG. */
cn_status cn_trainer_backward_seeds(cn_trainer *t, int n, const int *nodes,
                                    const float *const *grads);

/* The collated buffers: n floats each, the same offsets as the graph's parameter buffer. */
float *cn_trainer_params(cn_trainer *t);
float *cn_trainer_grads(cn_trainer *t);
size_t cn_trainer_param_floats(const cn_trainer *t);
/* d loss / d input of the last backward (options.input_grad), else NULL. */
const float *cn_trainer_input_grad(const cn_trainer *t);

/* The runs of trainable parameters, merged where adjacent with the same scale; lr_scale of a
 * node comes from cn_trainer_set_lr_scale (default 1). Returns the count written to ranges (at
 * most cap); call with cap 0 to count. */
int cn_trainer_ranges(const cn_trainer *t, cn_param_range *ranges, int cap);
/* Sets the learning-rate multiplier of one node (by index in the graph). */
void cn_trainer_set_lr_scale(cn_trainer *t, int node, float scale);
/* Tells the ops the parameters changed (after an optimizer step or a restore). */
void cn_trainer_weights_changed(cn_trainer *t);
/* Copies the trained parameters (and moving statistics) into g, which must be the graph the
 * trainer was made from (same layout). */
cn_status cn_trainer_copy_params_to(const cn_trainer *t, cn_graph *g);

#endif
