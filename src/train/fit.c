/* cn_train: data sets, model surgery, the two phases (head, then optional fine-tuning), the
 * epoch loop with validation, logging, early stopping and checkpoints. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/rng.h"
#include "model/init.h"
#include "ops/ops.h"
#include "train/fit_internal.h"
#include "train/surgery.h"

enum {
  STREAM_ORDER = 0x6f726465,
  STREAM_STEP = 0x73746570,
  DEFAULT_EPOCHS = 10,
  DEFAULT_BATCH = 32
};

void fit_message(const fit_run *r, const char *fmt, ...) {
  if (!r->o->message) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  r->o->message(r->o->ctx, line);
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- data --------------------------------------------------------------------------------- */

const char *fit_class_name(const fit_run *r, int c) {
  return r->idx_class_names ? r->idx_class_names[c] : cn_dataset_class_name(r->train, c);
}

static cn_status open_data(fit_run *r) {
  const cn_train_options *o = r->o;
  if (!o->data_dir) return cn_fail(CN_ERR_ARG, "no training data folder given");
  if (fit_idx_wanted(o->data_dir)) return fit_idx_open(r);
  cn_dataset *all = NULL;
  cn_status st = cn_dataset_open_dir(o->data_dir, &all);
  if (st != CN_OK) return st;
  r->classes = cn_dataset_class_count(all);
  if (o->val_dir) {
    const char *names[CN_DATASET_MAX_CLASSES > 0 ? 1 : 1];
    (void)names;
    const char **classes = malloc((size_t)r->classes * sizeof *classes);
    if (!classes) st = cn_fail(CN_ERR_NOMEM, "out of memory");
    for (int c = 0; st == CN_OK && c < r->classes; c++) classes[c] = cn_dataset_class_name(all, c);
    if (st == CN_OK) st = cn_dataset_open_dir_classes(o->val_dir, classes, r->classes, &r->val);
    free(classes);
    r->train = all;
  } else if (o->val_split > 0) {
    st = cn_dataset_split(all, o->val_split, o->seed, &r->train, &r->val);
    cn_dataset_free(all);
  } else {
    r->train = all;
  }
  if (st == CN_OK && o->class_weights) {
    r->class_weight = malloc((size_t)r->classes * sizeof *r->class_weight);
    if (!r->class_weight) return cn_fail(CN_ERR_NOMEM, "out of memory");
    cn_dataset_class_weights(r->train, r->class_weight);
  }
  return st;
}

/* ---- model -------------------------------------------------------------------------------- */

static cn_status parse_head(const char *name, cn_head_pool *pool) {
  if (!name || !strcmp(name, "avg"))
    *pool = CN_HEAD_AVG;
  else if (!strcmp(name, "max"))
    *pool = CN_HEAD_MAX;
  else if (!strcmp(name, "flatten"))
    *pool = CN_HEAD_FLATTEN;
  else
    return cn_fail(CN_ERR_ARG, "head must be avg, max or flatten, not \"%s\"", name);
  return CN_OK;
}

static cn_status find_layer(const cn_graph *g, const char *name, int *index) {
  *index = cn_graph_find(g, name);
  if (*index < 0) return cn_fail(CN_ERR_ARG, "the model has no layer named \"%s\"", name);
  return CN_OK;
}

/* The model as it is: its output must be a softmax over the data's classes. */
static cn_status build_whole(fit_run *r) {
  const cn_train_options *o = r->o;
  cn_shape out = cn_model_output_shape(r->base);
  if (out.rank != 1 || out.dim[0] != r->classes)
    return cn_fail(CN_ERR_SHAPE, "%s: its output has %lld values per sample, the data %d classes",
                   cn_model_name(r->base), (long long)cn_shape_numel(&out), r->classes);
  cn_status st = cn_graph_clone(r->base->graph, &r->full);
  if (st == CN_OK && o->freeze && strcmp(o->freeze, "none") != 0) {
    int upto = -1;
    st = strcmp(o->freeze, "all") == 0
             ? cn_fail(CN_ERR_ARG, "--freeze all leaves nothing to train in a whole model")
             : find_layer(r->full, o->freeze, &upto);
    if (st == CN_OK) cn_graph_freeze_upto(r->full, upto);
  }
  if (st == CN_OK && o->init_weights) st = cn_graph_init_params(r->full, o->seed);
  return st;
}

static cn_status build_full(fit_run *r) {
  const cn_train_options *o = r->o;
  if (o->whole_model) return build_whole(r);
  const cn_graph *g = r->base->graph;
  int cut = -1;
  cn_head_options h = {
      .dense = o->dense, .dropout = o->dropout, .classes = r->classes, .seed = o->seed};
  cn_status st = parse_head(o->head, &h.pool);
  if (st == CN_OK && o->cut) st = find_layer(g, o->cut, &cut);
  if (st == CN_OK && !o->cut) {
    cut = cn_graph_feature_node(g);
    if (cut < 0)
      st = cn_fail(CN_ERR_UNSUPPORTED, "%s: no spatial layer to cut at; use --cut",
                   cn_model_name(r->base));
  }
  if (st == CN_OK) st = cn_graph_with_head(g, cut, &h, &r->full);
  if (st != CN_OK) return st;
  int head_start = cn_graph_find(r->full, CN_HEAD_POOL_NAME);
  if (head_start < 0) head_start = cn_graph_find(r->full, CN_HEAD_DENSE_NAME);
  if (head_start < 0) head_start = cn_graph_find(r->full, CN_HEAD_DROPOUT_NAME);
  if (head_start < 0) head_start = cn_graph_find(r->full, CN_HEAD_OUTPUT_NAME);
  int frozen_upto = head_start - 1;
  if (o->freeze && !strcmp(o->freeze, "none"))
    frozen_upto = -1;
  else if (o->freeze && strcmp(o->freeze, "all"))
    st = find_layer(r->full, o->freeze, &frozen_upto);
  cn_graph_freeze_upto(r->full, frozen_upto);
  return st;
}

/* The last node of the frozen prefix the trainer does not need to see: every node up to it is
 * frozen and deterministic, and the graph splits cleanly there; -1 when there is none. */
static int trains(const cn_node *n) {
  if (cn_node_trainable_count(n) > 0) return 1;
  /* batch statistics, masks */
  return n->trainable && (n->op == &cn_op_batchnorm || n->op == &cn_op_dropout);
}

static int frozen_boundary(const cn_graph *g) {
  int first = 0;
  while (first < g->n_nodes && !trains(&g->nodes[first])) first++;
  for (int b = first - 1; b > 0; b--)
    if (g->nodes[b].op != &cn_op_dropout && cn_graph_can_split(g, b)) return b;
  return -1;
}

/* ---- phases ------------------------------------------------------------------------------- */

static cn_status optim_config(const cn_train_options *o, float lr, int epochs, int64_t steps,
                              cn_optim_config *c) {
  memset(c, 0, sizeof *c);
  cn_status st = cn_optim_parse(o->optimizer, &c->kind);
  if (st != CN_OK) return st;
  c->lr = lr;
  c->momentum = o->momentum;
  c->nesterov = o->nesterov;
  c->decay = o->decay;
  c->weight_decay = o->weight_decay;
  c->clip_norm = o->clip_norm;
  const char *s = o->schedule ? o->schedule : "constant";
  if (!strcmp(s, "constant"))
    c->schedule = CN_SCHEDULE_CONSTANT;
  else if (!strcmp(s, "cosine"))
    c->schedule = CN_SCHEDULE_COSINE;
  else if (!strcmp(s, "step"))
    c->schedule = CN_SCHEDULE_STEP;
  else
    return cn_fail(CN_ERR_ARG, "schedule must be constant, cosine or step, not \"%s\"", s);
  c->total_steps = (int64_t)epochs * steps;
  c->step_every = 3 * steps;
  c->step_gamma = 0.1f;
  return CN_OK;
}

static void end_phase(fit_run *r) {
  cn_loader_free(r->loader);
  r->loader = NULL;
  cn_free_aligned(r->images);
  r->images = NULL;
  free(r->labels);
  r->labels = NULL;
  fit_features_free(&r->train_x);
  fit_features_free(&r->val_x);
  cn_trainer_free(r->trainer);
  r->trainer = NULL;
  cn_model_free(r->prefix);
  r->prefix = NULL;
  cn_optimizer_free(&r->opt);
  free(r->ranges);
  r->ranges = NULL;
}

/* Splits full at its frozen boundary: the prefix becomes an inference model, the suffix the
 * trainer's graph. */
static cn_status start_trainer(fit_run *r) {
  int b = frozen_boundary(r->full);
  cn_graph *prefix = NULL, *suffix = NULL;
  cn_status st = CN_OK;
  if (b >= 0) {
    st = cn_graph_split(r->full, b, &prefix, &suffix);
    if (st == CN_OK) {
      st = cn_model_wrap(prefix, "prefix", &r->spec, &r->prefix);
    }
  }
  cn_trainer_options to = {.max_batch = r->batch, .group = r->group};
  if (st == CN_OK) st = cn_trainer_new(suffix ? suffix : r->full, &to, &r->trainer);
  cn_graph_free(suffix);
  if (st == CN_OK && cn_trainer_output_kind(r->trainer) != CN_OUTPUT_SOFTMAX)
    st = cn_fail(CN_ERR_UNSUPPORTED, "the model must end in a softmax classifier");
  if (st == CN_OK) {
    r->n_ranges = cn_trainer_ranges(r->trainer, NULL, 0);
    r->ranges = malloc((size_t)(r->n_ranges ? r->n_ranges : 1) * sizeof *r->ranges);
    if (!r->ranges) return cn_fail(CN_ERR_NOMEM, "out of memory");
    cn_trainer_ranges(r->trainer, r->ranges, r->n_ranges);
    if (r->n_ranges == 0) st = cn_fail(CN_ERR_ARG, "nothing to train: every layer is frozen");
  }
  return st;
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

typedef struct epoch_stats {
  double loss_sum, seconds;
  int64_t seen, correct;
} epoch_stats;

/* Gathers a batch of features and their targets in the given order. */
static void gather(const fit_features *f, const int64_t *order, int64_t first, int count, float *x,
                   float *targets, const float *class_weight, float *weights) {
  for (int i = 0; i < count; i++) {
    int64_t s = order ? order[first + i] : first + i;
    memcpy(x + (size_t)i * (size_t)f->dim, f->x + (size_t)s * (size_t)f->dim,
           (size_t)f->dim * sizeof(float));
    targets[i] = (float)f->y[s];
    if (weights) weights[i] = class_weight ? class_weight[f->y[s]] : 1.0f;
  }
}

typedef struct batch_buffers {
  float *x, *targets, *weights, *dlogits;
} batch_buffers;

static void free_buffers(batch_buffers *b) {
  cn_free_aligned(b->x);
  free(b->targets);
  free(b->weights);
  free(b->dlogits);
}

static cn_status alloc_buffers(const fit_run *r, int64_t dim, batch_buffers *b) {
  memset(b, 0, sizeof *b);
  b->x = cn_alloc_aligned((size_t)r->batch * (size_t)dim * sizeof(float));
  b->targets = malloc((size_t)r->batch * sizeof(float));
  b->weights = malloc((size_t)r->batch * sizeof(float));
  b->dlogits = malloc((size_t)r->batch * (size_t)r->classes * sizeof(float));
  if (!b->x || !b->targets || !b->weights || !b->dlogits) {
    free_buffers(b);
    return cn_fail(CN_ERR_NOMEM, "out of memory for a batch");
  }
  return CN_OK;
}

static void report(const fit_run *r, const fit_phase *p, const epoch_stats *s, int64_t steps,
                   int64_t step, int done, double val_loss, double val_acc) {
  if (!r->o->progress || r->rank != 0) return;
  cn_train_progress pr = {.phase = p->name,
                          .epoch = done ? r->epoch : r->epoch + 1,
                          .epochs = p->epochs,
                          .step = step,
                          .steps = steps,
                          .loss = s->seen ? s->loss_sum / (double)s->seen : NAN,
                          .accuracy = s->seen ? (double)s->correct / (double)s->seen : NAN,
                          .epoch_done = done,
                          .val_loss = val_loss,
                          .val_accuracy = val_acc,
                          .lr = cn_optimizer_lr(&r->opt),
                          .seconds = s->seconds,
                          .images_per_second = s->seconds > 0 ? (double)s->seen / s->seconds : 0};
  r->o->progress(r->o->ctx, &pr);
}

/* One global batch: global samples, of which this rank runs count (b->x, b->targets,
 * b->weights), the share starting at sample first. */
typedef struct step_share {
  int count;
  int64_t first, global;
} step_share;

/* The loss total and correct predictions of a step, summed over the ranks. */
static cn_status step_totals(fit_run *r, const step_share *sh, const float *logits,
                             const float *targets, double *loss, int64_t *correct) {
  double t[2] = {*loss, 0};
  for (int i = 0; i < sh->count; i++)
    t[1] += argmax(logits + (size_t)i * (size_t)r->classes, r->classes) == (int)targets[i];
  cn_status st = cn_group_sum_f64(r->group, t, 2);
  *loss = t[0];
  *correct = (int64_t)t[1];
  return st;
}

/* One optimizer step on a global batch (this rank's share of it); fails on a non-finite loss.
 * A rank whose share is empty runs a zero stand-in of one sample that adds nothing, so that
 * every rank takes part in each collective of the step. */
static cn_status train_step(fit_run *r, batch_buffers *b, const step_share *sh, uint64_t key,
                            epoch_stats *s) {
  int placeholder = sh->count == 0, count = placeholder ? 1 : sh->count;
  if (placeholder) {
    memset(b->x, 0, (size_t)r->train_x.dim * sizeof(float));
    b->targets[0] = 0, b->weights[0] = 0;
  }
  if (r->group) cn_trainer_set_share(r->trainer, sh->first, placeholder);
  const float *logits;
  cn_status st = cn_trainer_forward(r->trainer, count, b->x, 1, key, &logits);
  if (st != CN_OK) return st;
  double loss = cn_loss_of_share(CN_LOSS_SPARSE_CE, count, r->classes, logits, b->targets,
                                 b->weights, b->dlogits, sh->global);
  if (placeholder) loss = 0;
  int64_t correct = 0;
  st = step_totals(r, sh, logits, b->targets, &loss, &correct);
  if (st != CN_OK) return st;
  if (!isfinite(loss)) {
    int saved = access(r->checkpoint_path, F_OK) == 0;
    return cn_fail(CN_ERR_ARG,
                   "the loss became %g at step %lld of epoch %d (try a lower --lr); %s%s",
                   loss / (double)sh->global, (long long)r->opt.iterations + 1, r->epoch + 1,
                   saved ? "the last good checkpoint is " : "no checkpoint was written yet",
                   saved ? r->checkpoint_path : "");
  }
  s->correct += correct;
  s->loss_sum += loss;
  s->seen += sh->global;
  st = cn_trainer_backward(r->trainer, b->dlogits);
  if (st == CN_OK)
    st = cn_group_sum_f32(r->group, cn_trainer_grads(r->trainer),
                          cn_trainer_param_floats(r->trainer));
  if (st != CN_OK) return st;
  cn_optimizer_step(&r->opt, cn_trainer_params(r->trainer), cn_trainer_grads(r->trainer), r->ranges,
                    r->n_ranges);
  cn_trainer_weights_changed(r->trainer);
  return CN_OK;
}

/* The global size of a streamed batch of which this rank decoded count good images, and where
 * its share starts: every rank's count, summed over the group. */
static cn_status stream_share(fit_run *r, int count, step_share *sh) {
  sh->count = count, sh->first = 0, sh->global = count;
  if (!r->group) return CN_OK;
  double *counts = calloc((size_t)r->ranks, sizeof *counts);
  if (!counts) return cn_fail(CN_ERR_NOMEM, "out of memory");
  counts[r->rank] = count;
  cn_status st = cn_group_sum_f64(r->group, counts, (size_t)r->ranks);
  sh->global = 0;
  for (int k = 0; k < r->ranks; k++) {
    if (k < r->rank) sh->first += (int64_t)counts[k];
    sh->global += (int64_t)counts[k];
  }
  free(counts);
  return st;
}

/* With augmentation every epoch sees new images: decode, augment and run the frozen prefix per
 * batch. */
static cn_status train_epoch_streaming(fit_run *r, const fit_phase *p, batch_buffers *b,
                                       epoch_stats *s) {
  cn_loader *l = r->loader;
  cn_status st = cn_loader_start_epoch(l, (int64_t)p->index * 100000 + r->epoch);
  int64_t steps = (cn_dataset_count(r->train) + r->batch - 1) / r->batch, step = 0;
  double start = now_seconds();
  while (st == CN_OK && cn_loader_batches_left(l) > 0) {
    int count = 0;
    step_share sh;
    st = cn_loader_next(l, r->images, r->labels, NULL, &count);
    /* unsharded, a batch of bad images only is passed over and 0 ends the epoch */
    if (st != CN_OK || (count == 0 && !r->group)) break;
    if (count > 0 && r->prefix)
      st = cn_model_forward(r->prefix, count, r->images, b->x);
    else if (count > 0)
      memcpy(b->x, r->images, (size_t)count * cn_loader_image_floats(l) * sizeof(float));
    for (int i = 0; i < count; i++) {
      b->targets[i] = (float)r->labels[i];
      b->weights[i] = r->class_weight ? r->class_weight[r->labels[i]] : 1.0f;
    }
    if (st == CN_OK) st = stream_share(r, count, &sh);
    if (st != CN_OK || sh.global == 0) continue; /* no rank had a good image */
    uint64_t key = cn_rng_key(r->o->seed, STREAM_STEP,
                              (uint64_t)r->opt.iterations + ((uint64_t)p->index << 40));
    st = train_step(r, b, &sh, key, s);
    s->seconds = now_seconds() - start;
    if (st == CN_OK) report(r, p, s, steps, ++step, 0, NAN, NAN);
  }
  return st;
}

static cn_status train_epoch(fit_run *r, const fit_phase *p, batch_buffers *b, epoch_stats *s) {
  if (r->loader) return train_epoch_streaming(r, p, b, s);
  const fit_features *f = &r->train_x;
  int64_t *order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
  if (!order) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < f->n; i++) order[i] = i;
  cn_rng rng =
      cn_rng_make(cn_rng_key(r->o->seed, STREAM_ORDER, (uint64_t)(p->index * 100000 + r->epoch)));
  cn_rng_shuffle(&rng, order, f->n);
  int64_t steps = (f->n + r->batch - 1) / r->batch;
  double start = now_seconds();
  cn_status st = CN_OK;
  for (int64_t step = 0; st == CN_OK && step < steps; step++) {
    int64_t first = step * r->batch, share_first, share_count;
    int64_t global = f->n - first < r->batch ? f->n - first : r->batch;
    cn_group_share(global, r->rank, r->ranks, &share_first, &share_count);
    step_share sh = {.count = (int)share_count, .first = share_first, .global = global};
    gather(f, order, first + share_first, sh.count, b->x, b->targets, r->class_weight, b->weights);
    uint64_t key = cn_rng_key(r->o->seed, STREAM_STEP,
                              (uint64_t)r->opt.iterations + ((uint64_t)p->index << 40));
    st = train_step(r, b, &sh, key, s);
    s->seconds = now_seconds() - start;
    if (st == CN_OK) report(r, p, s, steps, step + 1, 0, NAN, NAN);
  }
  free(order);
  return st;
}

static cn_status validate(fit_run *r, batch_buffers *b, double *loss, double *accuracy) {
  const fit_features *f = &r->val_x;
  *loss = *accuracy = NAN;
  if (f->n == 0) return CN_OK;
  double sum = 0;
  int64_t correct = 0;
  for (int64_t first = 0; first < f->n; first += r->batch) {
    int count = (int)(f->n - first < r->batch ? f->n - first : r->batch);
    gather(f, NULL, first, count, b->x, b->targets, NULL, NULL);
    const float *logits;
    cn_status st = cn_trainer_forward(r->trainer, count, b->x, 0, 0, &logits);
    if (st != CN_OK) return st;
    sum += cn_loss(CN_LOSS_SPARSE_CE, count, r->classes, logits, b->targets, NULL, NULL) * count;
    for (int i = 0; i < count; i++)
      correct += argmax(logits + (size_t)i * (size_t)r->classes, r->classes) == (int)b->targets[i];
  }
  *loss = sum / (double)f->n;
  *accuracy = (double)correct / (double)f->n;
  return CN_OK;
}

static void log_epoch(fit_run *r, const fit_phase *p, const epoch_stats *s, double vl, double va) {
  if (!r->log) return;
  fprintf(r->log,
          "{\"phase\": \"%s\", \"epoch\": %d, \"loss\": %.6f, \"accuracy\": %.6f, "
          "\"val_loss\": %.6f, \"val_accuracy\": %.6f, \"lr\": %.8g, \"seconds\": %.3f, "
          "\"images_per_second\": %.1f, \"iterations\": %lld}\n",
          p->name, r->epoch, s->loss_sum / (double)(s->seen ? s->seen : 1),
          (double)s->correct / (double)(s->seen ? s->seen : 1), isnan(vl) ? -1.0 : vl,
          isnan(va) ? -1.0 : va, cn_optimizer_lr(&r->opt), s->seconds,
          s->seconds > 0 ? (double)s->seen / s->seconds : 0.0, (long long)r->opt.iterations);
  fflush(r->log);
}

/* Early stopping and the best model, on validation loss. */
static cn_status after_epoch(fit_run *r, double val_loss, double val_acc) {
  cn_status st = cn_graph_copy_params_by_name(r->full, cn_trainer_graph(r->trainer));
  if (st != CN_OK || isnan(val_loss)) return st;
  if (val_loss < r->best_val_loss) {
    r->best_val_loss = val_loss;
    r->best_val_accuracy = val_acc;
    r->bad_epochs = 0;
    cn_model *m = NULL;
    if (r->rank == 0) st = fit_make_model(r, &m);
    if (st == CN_OK && m) st = cn_model_save(m, r->best_path);
    cn_model_free(m);
  } else if (r->o->patience > 0 && ++r->bad_epochs >= r->o->patience) {
    r->stopped_early = 1;
  }
  return st;
}

static cn_status run_epochs(fit_run *r, const fit_phase *p) {
  batch_buffers b;
  cn_status st = alloc_buffers(r, r->train_x.dim, &b);
  while (st == CN_OK && r->epoch < p->epochs && !r->stopped_early) {
    epoch_stats s = {0};
    double vl, va;
    st = train_epoch(r, p, &b, &s);
    if (st == CN_OK) st = validate(r, &b, &vl, &va);
    if (st != CN_OK) break;
    r->epoch++;
    st = after_epoch(r, vl, va);
    if (st == CN_OK && r->rank == 0) st = fit_checkpoint_write(r);
    if (st != CN_OK) break;
    log_epoch(r, p, &s, vl, va);
    report(r, p, &s, (r->train_x.n + r->batch - 1) / r->batch, 0, 1, vl, va);
  }
  free_buffers(&b);
  return st;
}

static cn_status start_loader(fit_run *r) {
  cn_loader_options lo = {.spec = r->spec,
                          .batch = r->batch,
                          .shuffle = 1,
                          .seed = r->o->seed,
                          .augment = r->o->augment,
                          .bad_images =
                              r->o->fatal_bad_images ? CN_BAD_IMAGES_FATAL : CN_BAD_IMAGES_SKIP,
                          .warn = r->o->message,
                          .warn_ctx = r->o->ctx,
                          .shard_rank = r->rank,
                          .shard_count = r->ranks};
  cn_status st = cn_loader_new(r->train, &lo, &r->loader);
  if (st != CN_OK) return st;
  size_t per = cn_loader_image_floats(r->loader);
  r->images = cn_alloc_aligned((size_t)r->batch * per * sizeof(float));
  r->labels = malloc((size_t)r->batch * sizeof *r->labels);
  if (!r->images || !r->labels) return cn_fail(CN_ERR_NOMEM, "out of memory for a batch");
  const cn_graph *tg = cn_trainer_graph(r->trainer);
  cn_shape in = tg->nodes[tg->inputs[0]].shape;
  r->train_x.n = cn_dataset_count(r->train);
  r->train_x.dim = cn_shape_numel(&in);
  return CN_OK;
}

static cn_status run_phase(fit_run *r, const fit_phase *p, const char *resume) {
  cn_status st = start_trainer(r);
  if (st == CN_OK && r->idx_train.n) {
    st = fit_idx_features(r, &r->idx_train, &r->train_x);
    if (st == CN_OK) st = fit_idx_features(r, &r->idx_val, &r->val_x);
  } else if (st == CN_OK && cn_augment_active(&r->o->augment)) {
    st = start_loader(r);
  } else if (st == CN_OK) {
    st = fit_features_compute(r, r->train, "train", &r->train_x);
  }
  if (st == CN_OK && r->val) st = fit_features_compute(r, r->val, "val", &r->val_x);
  if (st == CN_OK && r->train_x.n == 0)
    st = cn_fail(CN_ERR_ARG, "%s: no usable images", r->o->data_dir);
  int64_t steps = (r->train_x.n + r->batch - 1) / r->batch;
  cn_optim_config c;
  if (st == CN_OK) st = optim_config(r->o, p->lr, p->epochs, steps, &c);
  if (st == CN_OK) st = cn_optimizer_init(&r->opt, &c, cn_trainer_param_floats(r->trainer));
  if (st == CN_OK && resume) st = fit_checkpoint_restore_optimizer(r, resume);
  if (st == CN_OK) st = run_epochs(r, p);
  end_phase(r);
  return st;
}

/* ---- the run ------------------------------------------------------------------------------ */

static char *with_suffix(const char *path, const char *suffix) {
  size_t n = strlen(path) + strlen(suffix) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s", path, suffix);
  return s;
}

static cn_status make_phases(const fit_run *r, fit_phase phases[2], int *n) {
  const cn_train_options *o = r->o;
  phases[0] = (fit_phase){.name = o->whole_model ? "train" : "head",
                          .index = 0,
                          .epochs = o->epochs ? o->epochs : DEFAULT_EPOCHS};
  phases[0].lr = o->lr;
  *n = 1;
  if (!o->fine_tune) return CN_OK;
  int at;
  cn_status st = find_layer(r->full, o->fine_tune, &at);
  if (st != CN_OK) return st;
  phases[1] = (fit_phase){.name = "fine-tune",
                          .index = 1,
                          .epochs = o->fine_tune_epochs ? o->fine_tune_epochs : phases[0].epochs};
  cn_optim_kind kind;
  st = cn_optim_parse(o->optimizer, &kind);
  if (st != CN_OK) return st;
  float lr = o->lr > 0 ? o->lr : cn_optim_default_lr(kind);
  phases[1].lr = o->fine_tune_lr > 0 ? o->fine_tune_lr : lr / 10;
  *n = 2;
  return CN_OK;
}

/* Before the fine-tuning phase: everything after the layer trains, BatchNormalization stays in
 * inference mode. */
static void unfreeze_for_fine_tuning(fit_run *r) {
  cn_graph_freeze_upto(r->full, cn_graph_find(r->full, r->o->fine_tune));
  cn_graph_freeze_batchnorm(r->full);
}

static cn_status setup(fit_run *r) {
  const cn_train_options *o = r->o;
  if (!o->out) return cn_fail(CN_ERR_ARG, "no output model path given");
  r->group = o->group;
  r->rank = cn_group_rank(o->group);
  r->ranks = cn_group_size(o->group);
  r->batch = o->batch ? o->batch : DEFAULT_BATCH;
  if (r->batch < 1 || r->batch > 4096) return cn_fail(CN_ERR_ARG, "batch must be in 1..4096");
  r->spec = cn_model_input_spec(r->base);
  r->best_val_loss = INFINITY;
  r->best_val_accuracy = NAN;
  r->checkpoint_path = with_suffix(o->out, ".ckpt");
  r->best_path = with_suffix(o->out, ".best.cnm");
  if (!r->checkpoint_path || !r->best_path) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = cn_augment_check(&o->augment);
  if (st == CN_OK) st = open_data(r);
  if (st == CN_OK) st = build_full(r);
  if (st == CN_OK && o->resume) st = fit_checkpoint_read(r, o->resume);
  if (st == CN_OK && o->log_path && r->rank == 0) {
    r->log = fopen(o->log_path, o->resume ? "a" : "w");
    if (!r->log) st = cn_fail(CN_ERR_IO, "%s: cannot open the log for writing", o->log_path);
  }
  return st;
}

static void cleanup(fit_run *r) {
  end_phase(r);
  if (r->log) fclose(r->log);
  cn_dataset_free(r->train);
  cn_dataset_free(r->val);
  fit_idx_free(r);
  cn_graph_free(r->full);
  free(r->class_weight);
  free(r->checkpoint_path);
  free(r->best_path);
}

/* IDX validation samples (in memory, already preprocessed): counted without image files, so
 * no worst images are kept. */
static cn_status evaluate_idx(const fit_run *r, cn_model *m) {
  const fit_features *f = &r->idx_val;
  cn_shape in = cn_model_input_shape(m);
  if (f->n == 0 || f->dim != cn_shape_numel(&in)) return CN_OK;
  cn_status st = cn_evaluation_new(r->classes, 5, r->o->val_evaluation);
  int batch = r->batch < 256 ? r->batch : 256;
  float *out = st == CN_OK ? malloc((size_t)batch * (size_t)r->classes * sizeof *out) : NULL;
  if (st == CN_OK && !out) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t first = 0; st == CN_OK && first < f->n; first += batch) {
    int count = (int)(f->n - first < batch ? f->n - first : batch);
    st = cn_model_forward(m, count, f->x + first * f->dim, out);
    if (st == CN_OK) cn_evaluation_add(*r->o->val_evaluation, count, out, f->y + first);
  }
  free(out);
  if (st != CN_OK) {
    cn_evaluation_free(*r->o->val_evaluation);
    *r->o->val_evaluation = NULL;
  }
  return st;
}

/* The final model over the validation images, as cn_evaluate scores them (o->val_evaluation). */
static cn_status evaluate_validation(const fit_run *r, cn_model *m) {
  *r->o->val_evaluation = NULL;
  if (!r->val) return evaluate_idx(r, m);
  int64_t n = cn_dataset_count(r->val);
  if (n == 0) return CN_OK;
  const char **paths = malloc((size_t)n * sizeof *paths);
  int *labels = malloc((size_t)n * sizeof *labels);
  cn_status st = paths && labels ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; st == CN_OK && i < n; i++) {
    paths[i] = cn_dataset_path(r->val, i);
    labels[i] = cn_dataset_label(r->val, i);
  }
  cn_evaluate_options eo = {.batch = r->batch < 256 ? r->batch : 256,
                            .worst = r->o->val_worst,
                            .message = r->o->message,
                            .ctx = r->o->ctx,
                            .group = r->group};
  if (st == CN_OK) st = cn_evaluate_files(m, n, paths, labels, &eo, r->o->val_evaluation);
  free(paths);
  free(labels);
  return st;
}

cn_status cn_train(const cn_model *base, const cn_train_options *o, cn_model **trained) {
  if (trained) *trained = NULL;
  if (o && o->val_evaluation) *o->val_evaluation = NULL;
  fit_run r = {.o = o, .base = base};
  fit_phase phases[2];
  int n_phases = 0;
  cn_status st = setup(&r);
  if (st == CN_OK) st = make_phases(&r, phases, &n_phases);
  int resumed_phase = r.phase, resumed_epoch = r.epoch;
  for (int p = resumed_phase; st == CN_OK && p < n_phases; p++) {
    int resuming = o->resume && p == resumed_phase && resumed_epoch > 0;
    r.phase = p;
    r.epoch = resuming ? resumed_epoch : 0;
    if (!resuming) r.bad_epochs = r.stopped_early = 0;
    if (p == 1) unfreeze_for_fine_tuning(&r);
    if (r.epoch < phases[p].epochs) st = run_phase(&r, &phases[p], resuming ? o->resume : NULL);
  }
  cn_model *m = NULL;
  if (st == CN_OK) st = fit_make_model(&r, &m);
  if (st == CN_OK && r.rank == 0) st = cn_model_save(m, o->out);
  if (st == CN_OK && o->val_evaluation) st = evaluate_validation(&r, m);
  if (st == CN_OK && trained)
    *trained = m;
  else
    cn_model_free(m);
  cleanup(&r);
  return st;
}
