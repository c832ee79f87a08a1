/* Step-by-step training (convnet/train.h, cn_session): the trainer, one loss and one optimizer.
 * Softmax and sigmoid outputs are split off by the trainer, so the cross-entropies are computed
 * from logits; the other losses see the activated output, and their gradient goes back through
 * the activation here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/train.h"
#include "core/error.h"
#include "core/mem.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/session_internal.h"
#include "train/trainer.h"

#define SESSION_STREAM 0x5e55107ULL

void cn_session_free(cn_session *s) {
  if (!s) return;
  cn_trainer_free(s->trainer);
  cn_optimizer_free(&s->opt);
  free(s->ranges);
  free(s->model_name);
  cn_free_aligned(s->pred);
  cn_free_aligned(s->dpred);
  cn_free_aligned(s->dlogits);
  for (int i = 0; i < s->n_grad_layers; i++) free(s->grad_names[i]);
  free(s->grad_names);
  free(s->grad_nodes);
  free(s);
}

/* The cross-entropies are fused with the activation they assume; a model that computes its own
 * loss ends in one value per sample. */
static cn_status check_loss(const cn_session *s, const cn_model *model) {
  if (s->own_loss) {
    cn_shape os = cn_trainer_output_shape(s->trainer);
    char buf[96];
    if (s->n != 1)
      return cn_fail(CN_ERR_SHAPE,
                     "with no loss name the first output (%s) must be one value per sample "
                     "(a loss), not %s",
                     cn_trainer_graph(s->trainer)->nodes[model->graph->outputs[0]].name,
                     cn_shape_format(&os, buf, sizeof buf));
    return CN_OK;
  }
  int ce = s->loss == CN_LOSS_CATEGORICAL_CE || s->loss == CN_LOSS_SPARSE_CE;
  if (ce && s->out_kind != CN_OUTPUT_SOFTMAX)
    return cn_fail(CN_ERR_ARG, "%s needs a model that ends in a softmax", cn_loss_name(s->loss));
  if (s->loss == CN_LOSS_BINARY_CE && s->out_kind != CN_OUTPUT_SIGMOID)
    return cn_fail(CN_ERR_ARG, "binary_crossentropy needs a model that ends in a sigmoid");
  return CN_OK;
}

static cn_status make_optimizer(cn_session *s, const cn_session_options *o) {
  cn_optim_config c = {.lr = o->lr,
                       .momentum = o->momentum,
                       .nesterov = o->nesterov,
                       .weight_decay = o->weight_decay,
                       .clip_norm = o->clip_norm,
                       .beta1 = o->beta1,
                       .beta2 = o->beta2,
                       .epsilon = o->epsilon};
  cn_status st = cn_optim_parse(o->optimizer, &c.kind);
  if (st == CN_OK) st = cn_optimizer_init(&s->opt, &c, cn_trainer_param_floats(s->trainer));
  if (st != CN_OK) return st;
  s->n_ranges = cn_trainer_ranges(s->trainer, NULL, 0);
  s->ranges = malloc((size_t)(s->n_ranges ? s->n_ranges : 1) * sizeof *s->ranges);
  if (!s->ranges) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_trainer_ranges(s->trainer, s->ranges, s->n_ranges);
  return CN_OK;
}

static cn_status make_buffers(cn_session *s) {
  size_t floats = (size_t)s->max_batch * (size_t)s->n;
  s->pred = cn_alloc_aligned(floats * sizeof(float));
  s->dpred = cn_alloc_aligned(floats * sizeof(float));
  s->dlogits = cn_alloc_aligned(floats * sizeof(float));
  return s->pred && s->dpred && s->dlogits ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
}

/* The layers whose gradients the session keeps, by index in the model's graph (the trainer's
 * copy has the same indices). */
static cn_status find_grad_layers(cn_session *s, const cn_model *model,
                                  const cn_session_options *o) {
  if (o->n_grad_layers <= 0) return CN_OK;
  if (!o->grad_layers) return cn_fail(CN_ERR_ARG, "grad_layers is NULL");
  s->grad_nodes = calloc((size_t)o->n_grad_layers, sizeof *s->grad_nodes);
  s->grad_names = calloc((size_t)o->n_grad_layers, sizeof *s->grad_names);
  if (!s->grad_nodes || !s->grad_names) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < o->n_grad_layers; i++) {
    const char *name = o->grad_layers[i] ? o->grad_layers[i] : "(null)";
    s->grad_nodes[i] = cn_graph_find(model->graph, name);
    s->grad_names[i] = cn_strdup(name);
    s->n_grad_layers = i + 1;
    if (!s->grad_names[i]) return cn_fail(CN_ERR_NOMEM, "out of memory");
    if (s->grad_nodes[i] < 0)
      return cn_fail(CN_ERR_ARG, "grad_layers: no layer named \"%.64s\"", name);
  }
  return CN_OK;
}

cn_status cn_session_new(const cn_model *model, const cn_session_options *o, cn_session **out) {
  if (!model || !o || !out) return cn_fail(CN_ERR_ARG, "cn_session_new: NULL argument");
  *out = NULL;
  cn_session *s = calloc(1, sizeof *s);
  if (!s) return cn_fail(CN_ERR_NOMEM, "out of memory");
  s->max_batch = o->max_batch > 0 ? o->max_batch : 128;
  s->seed = o->seed;
  s->own_loss = o->loss == NULL;
  s->model_name = cn_strdup(cn_model_name(model) ? cn_model_name(model) : "");
  if (!s->model_name) {
    free(s);
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  cn_status st = s->own_loss ? CN_OK : cn_loss_parse(o->loss, &s->loss);
  if (st == CN_OK) st = find_grad_layers(s, model, o);
  cn_trainer_options to = {.max_batch = s->max_batch,
                           .input_grad = o->input_grad,
                           .keep_output_activation = s->own_loss,
                           .grad_nodes = s->grad_nodes,
                           .n_grad_nodes = s->n_grad_layers};
  if (st == CN_OK) st = cn_trainer_new(model->graph, &to, &s->trainer);
  if (st == CN_OK) {
    s->out_kind = cn_trainer_output_kind(s->trainer);
    cn_shape os = cn_trainer_output_shape(s->trainer);
    s->n = (int)cn_shape_numel(&os);
    st = check_loss(s, model);
  }
  if (st == CN_OK) st = make_optimizer(s, o);
  if (st == CN_OK) st = make_buffers(s);
  if (st != CN_OK) {
    cn_session_free(s);
    return cn_fail_context(st, "%s", cn_model_name(model));
  }
  *out = s;
  return CN_OK;
}

/* pred = the output's activation applied to the trainer's output (logits for split outputs). */
static void activate(const cn_session *s, int batch, const float *logits) {
  size_t total = (size_t)batch * (size_t)s->n;
  memcpy(s->pred, logits, total * sizeof(float));
  if (s->out_kind == CN_OUTPUT_SIGMOID) {
    cn_activation a = cn_act_simple(CN_ACT_SIGMOID);
    cn_act_apply(&a, s->pred, total);
  } else if (s->out_kind == CN_OUTPUT_SOFTMAX) {
    cn_softmax_axis(s->pred, batch, s->n, 1, 1);
  }
}

static int fused(const cn_session *s) {
  return s->loss == CN_LOSS_CATEGORICAL_CE || s->loss == CN_LOSS_SPARSE_CE ||
         s->loss == CN_LOSS_BINARY_CE;
}

/* The loss of the last forward, and d loss / d logits into s->dlogits when grad. */
static double loss_of(cn_session *s, int batch, const float *logits, const float *y, int grad) {
  if (fused(s)) return cn_loss(s->loss, batch, s->n, logits, y, NULL, grad ? s->dlogits : NULL);
  double loss = cn_loss(s->loss, batch, s->n, s->pred, y, NULL, grad ? s->dpred : NULL);
  if (!grad) return loss;
  size_t total = (size_t)batch * (size_t)s->n;
  if (s->out_kind == CN_OUTPUT_LINEAR) {
    memcpy(s->dlogits, s->dpred, total * sizeof(float));
    return loss;
  }
  memset(s->dlogits, 0, total * sizeof(float));
  cn_activation a =
      s->out_kind == CN_OUTPUT_SIGMOID ? cn_act_simple(CN_ACT_SIGMOID) : cn_act_softmax();
  size_t row = s->out_kind == CN_OUTPUT_SOFTMAX ? (size_t)s->n : total;
  for (size_t at = 0; at < total; at += row)
    cn_act_backward(&a, logits + at, s->pred + at, s->dpred + at, s->dlogits + at, row);
  return loss;
}

static cn_status check_batch(const cn_session *s, int batch, const float *const *inputs,
                             const float *y) {
  if (!inputs) return cn_fail(CN_ERR_ARG, "cn_session: NULL inputs");
  if (batch < 1 || batch > s->max_batch)
    return cn_fail(CN_ERR_ARG, "cn_session: batch %d outside 1..%d (max_batch)", batch,
                   s->max_batch);
  if (s->own_loss)
    return y ? cn_fail(CN_ERR_ARG, "cn_session: the model computes its own loss: give no targets")
             : CN_OK;
  if (!y) return cn_fail(CN_ERR_ARG, "cn_session: NULL targets");
  return cn_loss_check_targets(s->loss, batch, s->n, y);
}

/* The model's own loss: the batch mean of its per-sample output, each sample's gradient
 * 1 / batch (Keras's sum_over_batch_size). */
static double own_loss_of(cn_session *s, int batch, const float *out) {
  double sum = 0.0;
  for (int i = 0; i < batch; i++) {
    sum += out[i];
    s->dlogits[i] = 1.0f / (float)batch;
  }
  return sum / batch;
}

/* One forward (training mode when train), the loss, and when train backward and an update. */
static cn_status run(cn_session *s, int batch, const float *const *inputs, const float *y,
                     int train, double *loss) {
  cn_status st = check_batch(s, batch, inputs, y);
  const float *logits = NULL;
  uint64_t key = train ? cn_rng_key(s->seed, SESSION_STREAM, s->steps) : 0;
  if (st == CN_OK) st = cn_trainer_forward_inputs(s->trainer, batch, inputs, train, key, &logits);
  if (st != CN_OK) return st;
  s->last_batch = batch;
  s->pred_fresh = 0;
  double l;
  if (s->own_loss) {
    l = own_loss_of(s, batch, logits);
  } else {
    if (!fused(s) || !train) { /* fused losses read the logits alone */
      activate(s, batch, logits);
      s->pred_fresh = 1;
    }
    l = loss_of(s, batch, logits, y, train);
  }
  if (loss) *loss = l;
  if (!train) return CN_OK;
  if (!isfinite(l))
    return cn_fail(CN_ERR_ARG, "the loss became %g at step %llu (try a lower learning rate)", l,
                   (unsigned long long)s->steps + 1);
  st = cn_trainer_backward(s->trainer, s->dlogits);
  if (st != CN_OK) return st;
  cn_optimizer_step(&s->opt, cn_trainer_params(s->trainer), cn_trainer_grads(s->trainer), s->ranges,
                    s->n_ranges);
  cn_trainer_weights_changed(s->trainer);
  s->steps++;
  return CN_OK;
}

/* cn_session_step and cn_session_evaluate pass one input array. */
static cn_status check_one_input(cn_session *s) {
  int n = cn_trainer_graph(s->trainer)->n_inputs;
  if (n == 1) return CN_OK;
  return cn_fail(CN_ERR_ARG, "%s has %d inputs: give them to cn_session_step_inputs", s->model_name,
                 n);
}

cn_status cn_session_step(cn_session *s, int batch, const float *x, const float *y, double *loss) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_step: NULL session");
  cn_status st = check_one_input(s);
  if (st != CN_OK) return st;
  return run(s, batch, x ? &x : NULL, y, 1, loss);
}

cn_status cn_session_step_inputs(cn_session *s, int batch, const float *const *inputs,
                                 const float *y, double *loss) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_step: NULL session");
  return run(s, batch, inputs, y, 1, loss);
}

cn_status cn_session_evaluate_inputs(cn_session *s, int batch, const float *const *inputs,
                                     const float *y, double *loss) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_evaluate: NULL session");
  return run(s, batch, inputs, y, 0, loss);
}

cn_status cn_session_evaluate(cn_session *s, int batch, const float *x, const float *y,
                              double *loss, float *pred) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_evaluate: NULL session");
  cn_status st = check_one_input(s);
  if (st == CN_OK) st = run(s, batch, x ? &x : NULL, y, 0, loss);
  const float *out = st == CN_OK && pred ? cn_session_output(s, 0) : NULL;
  if (out) memcpy(pred, out, (size_t)batch * (size_t)s->n * sizeof(float));
  return st;
}

cn_status cn_session_forward(cn_session *s, int batch, const float *const *inputs, int training) {
  if (!s || !inputs) return cn_fail(CN_ERR_ARG, "cn_session_forward: NULL argument");
  if (batch < 1 || batch > s->max_batch)
    return cn_fail(CN_ERR_ARG, "cn_session: batch %d outside 1..%d (max_batch)", batch,
                   s->max_batch);
  const float *out = NULL;
  uint64_t key = training ? cn_rng_key(s->seed, SESSION_STREAM, s->steps) : 0;
  cn_status st = cn_trainer_forward_inputs(s->trainer, batch, inputs, training, key, &out);
  if (st != CN_OK) return st;
  s->last_batch = batch;
  s->pred_fresh = 0;
  return CN_OK;
}

const float *cn_session_output(cn_session *s, int k) {
  if (!s || s->last_batch < 1) return NULL;
  cn_graph *g = cn_trainer_graph(s->trainer);
  if (k < 0 || k >= g->n_outputs) return NULL;
  if (k > 0 || s->own_loss) return cn_trainer_node_output(s->trainer, g->outputs[k]);
  const float *logits = cn_trainer_node_output(s->trainer, g->outputs[0]);
  if (!s->pred_fresh) activate(s, s->last_batch, logits); /* its activation included */
  s->pred_fresh = 1;
  return s->pred;
}

const float *cn_session_input_grad_at(const cn_session *s, int k) {
  if (!s) return NULL;
  cn_graph *g = cn_trainer_graph(s->trainer);
  if (k < 0 || k >= g->n_inputs) return NULL;
  return cn_trainer_node_grad(s->trainer, g->inputs[k]);
}

const float *cn_session_layer_grad(const cn_session *s, const char *layer) {
  for (int i = 0; s && layer && i < s->n_grad_layers; i++)
    if (strcmp(s->grad_names[i], layer) == 0)
      return cn_trainer_node_grad(s->trainer, s->grad_nodes[i]);
  return NULL;
}

const float *cn_session_input_grad(const cn_session *s) {
  return s && cn_trainer_input_grad(s->trainer) ? cn_session_input_grad_at(s, 0) : NULL;
}

cn_status cn_session_sync(const cn_session *s, cn_model *model) {
  if (!s || !model) return cn_fail(CN_ERR_ARG, "cn_session_sync: NULL argument");
  cn_status st = cn_trainer_copy_params_to(s->trainer, model->graph);
  if (st == CN_OK) model->graph->weights_version++;
  return st;
}

cn_status cn_session_copy_weights(cn_session *dst, const cn_session *src, int *copied) {
  if (!dst || !src) return cn_fail(CN_ERR_ARG, "cn_session_copy_weights: NULL session");
  cn_status st =
      cn_graph_copy_weights(cn_trainer_graph(dst->trainer), cn_trainer_graph(src->trainer), copied);
  if (st == CN_OK) cn_trainer_weights_changed(dst->trainer);
  return st;
}
