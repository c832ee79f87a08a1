/* Model surgery for transfer learning: cut a network at a layer, split it into a frozen prefix
 * and a trained suffix, add a classification head, freeze, and move weights between graphs by
 * layer name. Graphs produced here own their parameters. */
#ifndef CN_TRAIN_SURGERY_H
#define CN_TRAIN_SURGERY_H

#include <stdint.h>

#include "core/graph.h"

/* The node that ends a classifier's feature extractor: the last node with a spatial output
 * (rank 3 with more than one position), or -1. */
int cn_graph_feature_node(const cn_graph *g);

/* A new graph holding node `last` and its ancestors, with `last` as the output; parameter values
 * and trainable flags copied. */
cn_status cn_graph_cut(const cn_graph *g, int last, cn_graph **out);

/* Splits g at node b: *prefix = cut(g, b); *suffix = an Input named like b (with b's shape)
 * followed by every later node the output depends on. Refused (CN_ERR_UNSUPPORTED, naming the
 * layer) when a node after b reads a node before b: b is then not a clean boundary. */
/* 1 when cn_graph_split(g, b, ...) would succeed: no later node the output needs reads a node
 * before b. Cheap: nothing is copied. */
int cn_graph_can_split(const cn_graph *g, int b);
cn_status cn_graph_split(const cn_graph *g, int b, cn_graph **prefix, cn_graph **suffix);

typedef enum cn_head_pool { CN_HEAD_AVG, CN_HEAD_MAX, CN_HEAD_FLATTEN } cn_head_pool;

typedef struct cn_head_options {
  cn_head_pool pool;
  int dense;     /* > 0: a Dense(dense, relu) hidden layer */
  float dropout; /* > 0: Dropout(rate) before the classifier */
  int classes;   /* >= 2 */
  uint64_t seed; /* Glorot-uniform kernels from this seed, zero biases (Keras defaults) */
} cn_head_options;

/* The layer names a head uses (fixed, so checkpoints and caches can find them). */
#define CN_HEAD_POOL_NAME "head_pool"
#define CN_HEAD_DENSE_NAME "head_dense"
#define CN_HEAD_DROPOUT_NAME "head_dropout"
#define CN_HEAD_OUTPUT_NAME "predictions"

/* A new graph: cut(g, from) followed by a classification head ending in Dense(classes,
 * softmax); base weights copied, head weights initialised from the seed. */
cn_status cn_graph_with_head(const cn_graph *g, int from, const cn_head_options *o, cn_graph **out);

/* Sets trainable = 0 on nodes 0..last and 1 on the others (last = -1: nothing frozen). */
void cn_graph_freeze_upto(cn_graph *g, int last);
/* Freezes every BatchNormalization (it then runs in inference mode, statistics fixed). */
void cn_graph_freeze_batchnorm(cn_graph *g);

/* Copies the values of every parameter of src into the node of the same name in dst (shapes
 * must agree); nodes of src missing from dst are an error unless they have no parameters. */
cn_status cn_graph_copy_params_by_name(cn_graph *dst, const cn_graph *src);

#endif
