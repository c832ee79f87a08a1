/* src/model: the cn_model object (graph, input spec, class names) and its inference passes
 * (BatchNormalization and activation folding). Calls ops/ and core/.
 *
 * The model behind the opaque cn_model handle: a graph plus what the user needs around it. */
#ifndef CN_MODEL_MODEL_H
#define CN_MODEL_MODEL_H

#include "convnet/model.h"
#include "core/graph.h"

struct cn_model {
  char *name;
  cn_graph *graph;    /* owned */
  cn_input_spec spec; /* how images become this model's input */
  /* What forward runs: a copy of graph with BatchNormalization and activations folded into the
   * convolutions before them, rebuilt when the weights change; NULL when nothing folds. The
   * model's own graph keeps Keras's layers so that summaries and weight loading see them. */
  cn_graph *inference;
  int inference_version; /* graph->weights_version that inference was built from; -1: none */
  cn_precision inference_precision; /* the precision it was folded for (fp32 folds more) */
  /* Names of the output classes (cn_model_set_class_names, .cnm files); NULL / 0 when unknown. */
  char **class_names;
  int n_class_names;
  cn_precision precision; /* of cn_model_forward (cn_model_set_precision) */
  int algorithm_batch;    /* of cn_model_forward (cn_model_set_algorithm_batch) */
};

/* Wraps a graph (taking ownership, also on failure) into a model of any number of inputs and
 * outputs (none set: the last node), allocating parameters if that has not happened. */
cn_status cn_model_wrap_graph(cn_graph *graph, const char *name, const cn_input_spec *spec,
                              cn_model **out);
/* The same for a model of one image-like input and one output, which it checks. */
cn_status cn_model_wrap(cn_graph *graph, const char *name, const cn_input_spec *spec,
                        cn_model **out);

/* Keras names unnamed layers after their class with a per-class counter: conv2d, conv2d_1, ...
 * One counter set per model being built (the zoo builders and convnet/layers.h use it). */
#define CN_NAME_COUNTERS 32
typedef struct cn_name_counters {
  int n;
  struct {
    const char *base; /* borrowed: a string literal */
    int next;
  } at[CN_NAME_COUNTERS];
} cn_name_counters;
/* The next automatic name of class `base` into buf; returns buf. */
const char *cn_auto_name(cn_name_counters *c, const char *base, char *buf, size_t cap);

/* Frees the class names (src/model/model_classes.c); cn_model_free calls it. */
void cn_model_release_class_names(cn_model *m);

/* The default image pipeline for a model of this input shape and preprocessing. */
cn_input_spec cn_input_spec_default(const cn_shape *input, cn_preprocess preprocess);

#endif
