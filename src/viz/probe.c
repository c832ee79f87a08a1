/* Grad-CAM and feature maps of one input: a trainer over a frozen copy of the model runs the
 * input forward in inference mode, keeping the chosen layer's activation, and for Grad-CAM runs
 * backward from a one-hot gradient on the class's logit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/viz.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"
#include "train/trainer.h"

/* A spatial output (H, W, C) with more than one position. Transposes are excluded: ONNX imports
 * use them to hand NCHW tensors to layers that want them, and convnet's own layers are HWC. */
static int is_spatial(const cn_node *n) {
  return n->shape.rank == 3 && n->shape.dim[0] * n->shape.dim[1] > 1 && n->op != &cn_op_input &&
         n->op != &cn_op_transpose;
}

/* 1 for nodes the first output depends on (the node itself included). */
static char *output_ancestors(const cn_graph *g) {
  char *feeds = calloc((size_t)g->n_nodes, 1);
  if (!feeds) return NULL;
  int out = g->n_outputs > 0 ? g->outputs[0] : g->n_nodes - 1;
  feeds[out] = 1;
  for (int i = out; i >= 0; i--)
    if (feeds[i])
      for (int k = 0; k < g->nodes[i].n_inputs; k++) feeds[g->nodes[i].inputs[k]] = 1;
  return feeds;
}

static int last_spatial_node(const cn_graph *g) {
  char *feeds = output_ancestors(g);
  int found = -1;
  for (int i = 0; feeds && i < g->n_nodes; i++)
    if (feeds[i] && is_spatial(&g->nodes[i])) found = i;
  free(feeds);
  return found;
}

cn_status cn_model_last_spatial_layer(const cn_model *model, char *name, size_t cap) {
  if (!model || !name || cap == 0) return cn_fail(CN_ERR_ARG, "cn_model_last_spatial_layer: NULL");
  int node = last_spatial_node(model->graph);
  if (node < 0)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: no layer with a spatial output feeds the output",
                   cn_model_name(model));
  snprintf(name, cap, "%s", model->graph->nodes[node].name);
  return CN_OK;
}

/* The node named layer (NULL: the last spatial one), which must be spatial and feed the output. */
static cn_status find_spatial_layer(const cn_model *model, const char *layer, int *node) {
  const cn_graph *g = model->graph;
  if (!layer) {
    char name[256];
    cn_status st = cn_model_last_spatial_layer(model, name, sizeof name);
    if (st != CN_OK) return st;
    *node = cn_graph_find(g, name);
    return CN_OK;
  }
  int i = cn_graph_find(g, layer);
  if (i < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%.64s\"", cn_model_name(model), layer);
  char buf[96];
  if (!is_spatial(&g->nodes[i]))
    return cn_fail(CN_ERR_ARG, "%s: layer %s (%s) has no spatial output: its shape is %s",
                   cn_model_name(model), layer, g->nodes[i].type,
                   cn_shape_format(&g->nodes[i].shape, buf, sizeof buf));
  char *feeds = output_ancestors(g);
  if (!feeds) return cn_fail(CN_ERR_NOMEM, "out of memory");
  int used = feeds[i];
  free(feeds);
  if (!used)
    return cn_fail(CN_ERR_ARG, "%s: the output does not depend on layer %s", cn_model_name(model),
                   layer);
  *node = i;
  return CN_OK;
}

/* A trainer for one sample over a frozen copy of the model: no parameter gradients, and
 * BatchNormalization in inference mode. watch >= 0: keep that node's gradient. */
static cn_status frozen_trainer(const cn_model *model, int watch, cn_trainer **out) {
  if (cn_model_input_count(model) != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %d inputs; this needs a model of one image input",
                   cn_model_name(model), cn_model_input_count(model));
  cn_graph *frozen;
  cn_status st = cn_graph_clone(model->graph, &frozen);
  if (st != CN_OK) return st;
  for (int i = 0; i < frozen->n_nodes; i++) frozen->nodes[i].trainable = 0;
  cn_trainer_options o = {.max_batch = 1, .grad_nodes = &watch, .n_grad_nodes = watch >= 0 ? 1 : 0};
  st = cn_trainer_new(frozen, &o, out);
  cn_graph_free(frozen);
  return st;
}

static cn_status copy_layer_name(char *dst, size_t cap, const char *name) {
  snprintf(dst, cap, "%s", name);
  return CN_OK;
}

static void fill_maps(cn_feature_maps *out, const cn_node *n, const float *act) {
  out->height = (int)n->shape.dim[0];
  out->width = (int)n->shape.dim[1];
  out->channels = (int)n->shape.dim[2];
  memcpy(out->values, act, (size_t)cn_shape_numel(&n->shape) * sizeof(float));
  copy_layer_name(out->layer, sizeof out->layer, n->name);
}

cn_status cn_feature_maps_compute(cn_model *model, const float *input, const char *layer,
                                  cn_feature_maps *out) {
  if (!model || !input || !out) return cn_fail(CN_ERR_ARG, "cn_feature_maps_compute: NULL");
  memset(out, 0, sizeof *out);
  int node;
  cn_status st = find_spatial_layer(model, layer, &node);
  if (st != CN_OK) return st;
  cn_trainer *t = NULL;
  const float *result;
  st = frozen_trainer(model, -1, &t);
  if (st == CN_OK) st = cn_trainer_forward(t, 1, input, 0, 0, &result);
  const float *act = st == CN_OK ? cn_trainer_node_output(t, node) : NULL;
  const cn_node *n = &model->graph->nodes[node];
  if (act) {
    out->values = malloc((size_t)cn_shape_numel(&n->shape) * sizeof(float));
    if (out->values)
      fill_maps(out, n, act);
    else
      st = cn_fail(CN_ERR_NOMEM, "out of memory");
  } else if (st == CN_OK) {
    st = cn_fail(CN_ERR_ARG, "%s: layer %s is not computed", cn_model_name(model), n->name);
  }
  cn_trainer_free(t);
  return st;
}

void cn_feature_maps_free(cn_feature_maps *maps) {
  if (!maps) return;
  free(maps->values);
  maps->values = NULL;
}

/* ---- Grad-CAM ------------------------------------------------------------------------------ */

static int argmax(const float *v, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

/* The model's output for the class from the trainer's (possibly split-off) logits. */
static float probability_of(cn_output_kind kind, const float *logits, int n, int c) {
  if (kind == CN_OUTPUT_SIGMOID) return 1.0f / (1.0f + expf(-logits[c]));
  if (kind != CN_OUTPUT_SOFTMAX) return logits[c];
  float *p = malloc((size_t)n * sizeof *p);
  if (!p) return NAN;
  memcpy(p, logits, (size_t)n * sizeof *p);
  cn_softmax_axis(p, 1, n, 1, 1);
  float value = p[c];
  free(p);
  return value;
}

/* map = relu(sum_k w_k A_k) with w_k the spatial mean of the gradient of channel k. */
static cn_status weigh_channels(const float *act, const float *grad, int positions, int k,
                                float *map) {
  double *w = calloc((size_t)k, sizeof *w);
  if (!w) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int p = 0; p < positions; p++)
    for (int c = 0; c < k; c++) w[c] += grad[(size_t)p * k + c];
  for (int c = 0; c < k; c++) w[c] /= positions;
  for (int p = 0; p < positions; p++) {
    double sum = 0.0;
    for (int c = 0; c < k; c++) sum += w[c] * act[(size_t)p * k + c];
    map[p] = sum > 0.0 ? (float)sum : 0.0f;
  }
  free(w);
  return CN_OK;
}

static cn_status check_output(const cn_model *model, cn_trainer *t, int *classes) {
  cn_shape s = cn_trainer_output_shape(t);
  int64_t n = cn_shape_numel(&s);
  char buf[96];
  if (n < 1 || n > INT32_MAX || (s.rank > 1 && n != s.dim[s.rank - 1]))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: the output %s is not a vector of class scores",
                   cn_model_name(model), cn_shape_format(&s, buf, sizeof buf));
  *classes = (int)n;
  return CN_OK;
}

/* Backward from d score_c / d logits = one-hot(c); the gradient reaches the watched node. */
static cn_status backward_class(cn_trainer *t, int classes, int c) {
  float *onehot = calloc((size_t)classes, sizeof *onehot);
  if (!onehot) return cn_fail(CN_ERR_NOMEM, "out of memory");
  onehot[c] = 1.0f;
  cn_status st = cn_trainer_backward(t, onehot);
  free(onehot);
  return st;
}

static cn_status choose_class(const cn_model *model, const cn_gradcam_options *o,
                              const float *logits, cn_gradcam *out) {
  if (o && o->class_index >= out->classes)
    return cn_fail(CN_ERR_ARG, "%s: class %d is out of range: the model has %d classes",
                   cn_model_name(model), o->class_index, out->classes);
  out->class_index = o && o->class_index >= 0 ? o->class_index : argmax(logits, out->classes);
  return CN_OK;
}

static cn_status run_gradcam(cn_model *model, cn_trainer *t, int node, const float *input,
                             const cn_gradcam_options *o, cn_gradcam *out) {
  const float *logits;
  cn_status st = check_output(model, t, &out->classes);
  if (st == CN_OK) st = cn_trainer_forward(t, 1, input, 0, 0, &logits);
  if (st == CN_OK) st = choose_class(model, o, logits, out);
  if (st == CN_OK) st = backward_class(t, out->classes, out->class_index);
  if (st != CN_OK) return st;
  const cn_node *n = &model->graph->nodes[node];
  const float *act = cn_trainer_node_output(t, node), *grad = cn_trainer_node_grad(t, node);
  if (!act || !grad)
    return cn_fail(CN_ERR_ARG, "%s: no gradient reaches layer %s", cn_model_name(model), n->name);
  out->height = (int)n->shape.dim[0];
  out->width = (int)n->shape.dim[1];
  out->map = calloc((size_t)out->height * out->width, sizeof *out->map);
  if (!out->map) return cn_fail(CN_ERR_NOMEM, "out of memory");
  st = weigh_channels(act, grad, out->height * out->width, (int)n->shape.dim[2], out->map);
  if (st != CN_OK) return st;
  out->score = logits[out->class_index];
  out->probability =
      probability_of(cn_trainer_output_kind(t), logits, out->classes, out->class_index);
  return copy_layer_name(out->layer, sizeof out->layer, n->name);
}

cn_status cn_gradcam_compute(cn_model *model, const float *input, const cn_gradcam_options *o,
                             cn_gradcam *out) {
  if (!model || !input || !out) return cn_fail(CN_ERR_ARG, "cn_gradcam_compute: NULL");
  memset(out, 0, sizeof *out);
  int node;
  cn_trainer *t = NULL;
  cn_status st = find_spatial_layer(model, o ? o->layer : NULL, &node);
  if (st == CN_OK) st = frozen_trainer(model, node, &t);
  if (st == CN_OK) st = run_gradcam(model, t, node, input, o, out);
  cn_trainer_free(t);
  if (st != CN_OK) cn_gradcam_free(out);
  return st;
}

void cn_gradcam_free(cn_gradcam *cam) {
  if (!cam) return;
  free(cam->map);
  cam->map = NULL;
}
