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
#include "train/trainer.h"

#define SESSION_STREAM 0x5e55107ULL

struct cn_session {
  cn_trainer *trainer;
  cn_loss_kind loss;
  cn_output_kind out_kind;
  cn_optimizer opt;
  cn_param_range *ranges;
  int n_ranges, max_batch, n; /* n: output values per sample */
  int64_t in_floats;          /* input values per sample */
  uint64_t seed, steps;
  float *pred, *dpred, *dlogits;
};

void cn_session_free(cn_session *s) {
  if (!s) return;
  cn_trainer_free(s->trainer);
  cn_optimizer_free(&s->opt);
  free(s->ranges);
  cn_free_aligned(s->pred);
  cn_free_aligned(s->dpred);
  cn_free_aligned(s->dlogits);
  free(s);
}

/* The cross-entropies are fused with the activation they assume. */
static cn_status check_loss(const cn_session *s, const char *model) {
  int ce = s->loss == CN_LOSS_CATEGORICAL_CE || s->loss == CN_LOSS_SPARSE_CE;
  if (ce && s->out_kind != CN_OUTPUT_SOFTMAX)
    return cn_fail(CN_ERR_ARG, "%s: %s needs a model that ends in a softmax", model,
                   cn_loss_name(s->loss));
  if (s->loss == CN_LOSS_BINARY_CE && s->out_kind != CN_OUTPUT_SIGMOID)
    return cn_fail(CN_ERR_ARG, "%s: binary_crossentropy needs a model that ends in a sigmoid",
                   model);
  return CN_OK;
}

static cn_status make_optimizer(cn_session *s, const cn_session_options *o) {
  cn_optim_config c = {.lr = o->lr,
                       .momentum = o->momentum,
                       .nesterov = o->nesterov,
                       .weight_decay = o->weight_decay,
                       .clip_norm = o->clip_norm};
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

cn_status cn_session_new(const cn_model *model, const cn_session_options *o, cn_session **out) {
  if (!model || !o || !out) return cn_fail(CN_ERR_ARG, "cn_session_new: NULL argument");
  *out = NULL;
  cn_session *s = calloc(1, sizeof *s);
  if (!s) return cn_fail(CN_ERR_NOMEM, "out of memory");
  s->max_batch = o->max_batch > 0 ? o->max_batch : 128;
  s->seed = o->seed;
  cn_status st = cn_loss_parse(o->loss, &s->loss);
  cn_trainer_options to = {.max_batch = s->max_batch, .input_grad = o->input_grad};
  if (st == CN_OK) st = cn_trainer_new(model->graph, &to, &s->trainer);
  if (st == CN_OK) {
    s->out_kind = cn_trainer_output_kind(s->trainer);
    cn_shape os = cn_trainer_output_shape(s->trainer), is = cn_model_input_shape(model);
    s->n = (int)cn_shape_numel(&os);
    s->in_floats = cn_shape_numel(&is);
    st = check_loss(s, cn_model_name(model));
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

static cn_status check_batch(const cn_session *s, int batch, const float *x, const float *y) {
  if (!x || !y) return cn_fail(CN_ERR_ARG, "cn_session: NULL input or target");
  if (batch < 1 || batch > s->max_batch)
    return cn_fail(CN_ERR_ARG, "cn_session: batch %d outside 1..%d (max_batch)", batch,
                   s->max_batch);
  return cn_loss_check_targets(s->loss, batch, s->n, y);
}

cn_status cn_session_step(cn_session *s, int batch, const float *x, const float *y, double *loss) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_step: NULL session");
  cn_status st = check_batch(s, batch, x, y);
  const float *logits = NULL;
  uint64_t key = cn_rng_key(s->seed, SESSION_STREAM, s->steps);
  if (st == CN_OK) st = cn_trainer_forward(s->trainer, batch, x, 1, key, &logits);
  if (st != CN_OK) return st;
  if (!fused(s)) activate(s, batch, logits); /* the fused losses read the logits alone */
  double l = loss_of(s, batch, logits, y, 1);
  if (loss) *loss = l;
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

cn_status cn_session_evaluate(cn_session *s, int batch, const float *x, const float *y,
                              double *loss, float *pred) {
  if (!s) return cn_fail(CN_ERR_ARG, "cn_session_evaluate: NULL session");
  cn_status st = check_batch(s, batch, x, y);
  const float *logits = NULL;
  if (st == CN_OK) st = cn_trainer_forward(s->trainer, batch, x, 0, 0, &logits);
  if (st != CN_OK) return st;
  activate(s, batch, logits);
  double l = loss_of(s, batch, logits, y, 0);
  if (loss) *loss = l;
  if (pred) memcpy(pred, s->pred, (size_t)batch * (size_t)s->n * sizeof(float));
  return CN_OK;
}

const float *cn_session_input_grad(const cn_session *s) {
  return s ? cn_trainer_input_grad(s->trainer) : NULL;
}

cn_status cn_session_sync(const cn_session *s, cn_model *model) {
  if (!s || !model) return cn_fail(CN_ERR_ARG, "cn_session_sync: NULL argument");
  cn_status st = cn_trainer_copy_params_to(s->trainer, model->graph);
  if (st == CN_OK) model->graph->weights_version++;
  return st;
}
