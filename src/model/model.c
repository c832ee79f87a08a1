#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "model/fuse.h"

cn_input_spec cn_input_spec_default(const cn_shape *input, cn_preprocess preprocess) {
  cn_input_spec spec = {0};
  if (input->rank == 3) {
    spec.height = (int)input->dim[0];
    spec.width = (int)input->dim[1];
    spec.channels = (int)input->dim[2];
  }
  spec.resize = CN_RESIZE_NEAREST;
  spec.crop = 0;
  spec.preprocess = preprocess;
  return spec;
}

cn_status cn_model_wrap_graph(cn_graph *graph, const char *name, const cn_input_spec *spec,
                              cn_model **out) {
  *out = NULL;
  cn_status st = cn_graph_default_outputs(graph);
  if (st == CN_OK && !graph->params) st = cn_graph_alloc_params(graph);
  cn_model *m = NULL;
  if (st == CN_OK) {
    m = calloc(1, sizeof *m);
    if (!m) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  if (st == CN_OK) {
    m->name = cn_strdup(name);
    if (!m->name) st = CN_ERR_NOMEM;
  }
  if (st != CN_OK) {
    if (m) free(m->name);
    free(m);
    cn_graph_free(graph);
    return st;
  }
  m->graph = graph;
  m->spec = *spec;
  m->inference_version = -1;
  *out = m;
  return CN_OK;
}

cn_status cn_model_wrap(cn_graph *graph, const char *name, const cn_input_spec *spec,
                        cn_model **out) {
  *out = NULL;
  cn_status st = CN_OK;
  if (graph->n_inputs != 1) st = cn_fail(CN_ERR_UNSUPPORTED, "%s: expected one input", name);
  if (st == CN_OK) st = cn_graph_default_outputs(graph);
  if (st == CN_OK && graph->n_outputs != 1)
    st = cn_fail(CN_ERR_UNSUPPORTED, "%s: expected one output", name);
  if (st != CN_OK) {
    cn_graph_free(graph);
    return st;
  }
  return cn_model_wrap_graph(graph, name, spec, out);
}

const char *cn_auto_name(cn_name_counters *c, const char *base, char *buf, size_t cap) {
  int i = 0;
  while (i < c->n && strcmp(c->at[i].base, base) != 0) i++;
  if (i == c->n && c->n < CN_NAME_COUNTERS) c->at[c->n++].base = base, c->at[i].next = 0;
  int next = i < c->n ? c->at[i].next++ : 0;
  if (next == 0)
    snprintf(buf, cap, "%s", base);
  else
    snprintf(buf, cap, "%s_%d", base, next);
  return buf;
}

void cn_model_free(cn_model *m) {
  if (!m) return;
  cn_graph_free(m->graph);
  cn_graph_free(m->inference);
  cn_model_release_class_names(m);
  free(m->name);
  free(m);
}

const char *cn_model_name(const cn_model *m) {
  return m->name;
}

cn_shape cn_model_input_shape(const cn_model *m) {
  return m->graph->nodes[m->graph->inputs[0]].shape;
}

cn_shape cn_model_output_shape(const cn_model *m) {
  return m->graph->nodes[m->graph->outputs[0]].shape;
}

cn_input_spec cn_model_input_spec(const cn_model *m) {
  return m->spec;
}

void cn_model_set_input_spec(cn_model *m, const cn_input_spec *spec) {
  m->spec = *spec;
}

/* CONVNET_FOLD_RESIDUAL=0 keeps residual Adds as nodes of their own, CONVNET_FOLD_DEPTHWISE=0
 * depthwise convolutions apart from the 1x1 ones after them (to compare). */
static int fold_enabled(const char *name) {
  const char *v = getenv(name);
  return !v || strcmp(v, "0") != 0;
}

/* Brings m->inference up to date with the weights: a folded copy, or NULL to run m->graph. */
static cn_status refresh_inference_graph(cn_model *m) {
  if (m->inference_version == m->graph->weights_version && m->inference_precision == m->precision)
    return CN_OK;
  cn_graph_free(m->inference);
  m->inference = NULL;
  cn_status st = CN_OK;
  if (cn_graph_can_fold(m->graph)) {
    st = cn_graph_clone(m->graph, &m->inference);
    if (st == CN_OK) st = cn_graph_fold_batchnorm(m->inference);
    if (st == CN_OK && fold_enabled("CONVNET_FOLD_RESIDUAL"))
      st = cn_graph_fold_residual(m->inference);
    if (st == CN_OK) st = cn_graph_fold_activations(m->inference);
    if (st == CN_OK) st = cn_graph_fold_padding(m->inference);
    if (st == CN_OK && fold_enabled("CONVNET_FOLD_DEPTHWISE"))
      st = cn_graph_fold_depthwise(m->inference, m->precision == CN_PRECISION_FP32);
    if (st != CN_OK) {
      cn_graph_free(m->inference);
      m->inference = NULL;
      return st;
    }
  }
  /* The model's loaders and trainers bump weights_version on every write; the inference copy is
   * private, rebuilt when they do. */
  m->graph->versioned_weights = 1;
  if (m->inference) m->inference->versioned_weights = 1;
  m->inference_version = m->graph->weights_version;
  m->inference_precision = m->precision;
  return CN_OK;
}

cn_status cn_model_forward(cn_model *m, int batch, const float *input, float *output) {
  if (!m || !input || !output) return cn_fail(CN_ERR_ARG, "cn_model_forward: NULL argument");
  return cn_model_forward_multi(m, batch, &input, &output);
}

int cn_model_input_count(const cn_model *m) {
  return m ? m->graph->n_inputs : 0;
}

int cn_model_output_count(const cn_model *m) {
  if (!m) return 0;
  return m->graph->n_outputs ? m->graph->n_outputs : 1;
}

cn_shape cn_model_input_shape_at(const cn_model *m, int index) {
  cn_shape none = {0};
  if (!m || index < 0 || index >= m->graph->n_inputs) return none;
  return m->graph->nodes[m->graph->inputs[index]].shape;
}

cn_shape cn_model_output_shape_at(const cn_model *m, int index) {
  cn_shape none = {0};
  if (!m || index < 0 || index >= cn_model_output_count(m)) return none;
  if (!m->graph->n_outputs) return cn_model_output_shape(m);
  return m->graph->nodes[m->graph->outputs[index]].shape;
}

cn_status cn_model_forward_multi(cn_model *m, int batch, const float *const *inputs,
                                 float *const *outputs) {
  if (!m || !inputs || !outputs)
    return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: NULL argument");
  for (int i = 0; i < m->graph->n_inputs; i++)
    if (!inputs[i]) return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: input %d is NULL", i);
  for (int i = 0; i < cn_model_output_count(m); i++)
    if (!outputs[i]) return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: output %d is NULL", i);
  cn_status st = refresh_inference_graph(m);
  if (st != CN_OK) return st;
  cn_graph *g = m->inference ? m->inference : m->graph;
  cn_graph_set_precision(g, m->precision);
  cn_graph_set_algorithm_batch(g, m->algorithm_batch);
  return cn_graph_run(g, batch, inputs, outputs);
}

cn_status cn_model_set_precision(cn_model *m, cn_precision precision) {
  if (!m) return cn_fail(CN_ERR_ARG, "cn_model_set_precision: NULL model");
  if (precision != CN_PRECISION_FP32 && precision != CN_PRECISION_BF16)
    return cn_fail(CN_ERR_ARG, "unknown precision %d", (int)precision);
  m->precision = precision;
  return CN_OK;
}

cn_status cn_model_set_algorithm_batch(cn_model *m, int batch) {
  if (!m) return cn_fail(CN_ERR_ARG, "cn_model_set_algorithm_batch: NULL model");
  if (batch < 0) return cn_fail(CN_ERR_ARG, "cn_model_set_algorithm_batch: batch %d < 0", batch);
  m->algorithm_batch = batch;
  return CN_OK;
}

int cn_model_algorithm_batch(const cn_model *m) {
  return m ? m->algorithm_batch : 0;
}

cn_precision cn_model_precision(const cn_model *m) {
  return m ? m->precision : CN_PRECISION_FP32;
}

size_t cn_model_layer_count(const cn_model *m) {
  return (size_t)m->graph->n_nodes;
}

cn_status cn_model_layer_info(const cn_model *m, size_t index, cn_layer_info *info) {
  if (index >= (size_t)m->graph->n_nodes) return cn_fail(CN_ERR_ARG, "no layer %zu", index);
  const cn_node *n = &m->graph->nodes[index];
  memset(info, 0, sizeof *info);
  info->name = n->name;
  info->type = n->type;
  info->output = n->shape;
  /* a shared layer's weights are counted at its first call only, as Keras's summary does */
  info->params = n->shares < 0 ? cn_node_param_count(n) : 0;
  info->trainable = n->shares < 0 ? cn_node_trainable_count(n) : 0;
  info->n_inputs = n->n_inputs;
  for (int i = 0; i < n->n_inputs && i < 8; i++)
    info->inputs[i] = m->graph->nodes[n->inputs[i]].name;
  return CN_OK;
}

cn_status cn_model_copy_weights(cn_model *dst, const cn_model *src, int *copied) {
  if (!dst || !src) return cn_fail(CN_ERR_ARG, "cn_model_copy_weights: NULL model");
  return cn_graph_copy_weights(dst->graph, src->graph, copied);
}

cn_status cn_model_set_trainable(cn_model *model, const char *layer, int trainable) {
  if (!model) return cn_fail(CN_ERR_ARG, "cn_model_set_trainable: NULL model");
  cn_graph *g = model->graph;
  int at = layer ? cn_graph_find(g, layer) : -1;
  if (layer && at < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%.64s\"", model->name, layer);
  for (int i = 0; i < g->n_nodes; i++)
    if (!layer || i == at) g->nodes[i].trainable = trainable != 0;
  return CN_OK;
}
