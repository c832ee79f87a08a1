/* Models with several inputs or outputs (ONNX graphs). These are model-level functions that
 * belong with src/core/model.c; they live here because the ONNX importer is their first user. */
#include "core/error.h"
#include "core/model.h"
#include "ops/fuse.h"

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

/* The same refresh cn_model_forward does: a folded copy of the graph when anything folds. */
static cn_status refresh_inference(cn_model *m) {
  if (m->inference_version == m->graph->weights_version) return CN_OK;
  cn_graph_free(m->inference);
  m->inference = NULL;
  if (cn_graph_can_fold(m->graph)) {
    cn_status st = cn_graph_clone(m->graph, &m->inference);
    if (st == CN_OK) st = cn_graph_fold_batchnorm(m->inference);
    if (st == CN_OK) st = cn_graph_fold_activations(m->inference);
    if (st != CN_OK) {
      cn_graph_free(m->inference);
      m->inference = NULL;
      return st;
    }
  }
  m->inference_version = m->graph->weights_version;
  return CN_OK;
}

cn_status cn_model_forward_multi(cn_model *m, int batch, const float *const *inputs,
                                 float *const *outputs) {
  if (!m || !inputs || !outputs)
    return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: NULL argument");
  for (int i = 0; i < m->graph->n_inputs; i++)
    if (!inputs[i]) return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: input %d is NULL", i);
  for (int i = 0; i < cn_model_output_count(m); i++)
    if (!outputs[i]) return cn_fail(CN_ERR_ARG, "cn_model_forward_multi: output %d is NULL", i);
  cn_status st = refresh_inference(m);
  if (st != CN_OK) return st;
  return cn_graph_run(m->inference ? m->inference : m->graph, batch, inputs, outputs);
}
