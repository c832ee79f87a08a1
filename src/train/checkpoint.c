/* Checkpoints of a training run: a safetensors file (written atomically) holding every weight of
 * the model by "<layer>/<param>", the optimizer's slots and iteration count, and the run's
 * progress (phase, epochs done, best validation loss, early-stopping count) plus a fingerprint
 * of the options that shape the run, so a resume with different settings is refused. The data
 * order, augmentation and dropout draws are functions of (seed, phase, epoch, step), so these
 * counters are the whole random state. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/sha256.h"
#include "io/native/safetensors.h"
#include "train/fit_internal.h"

enum { MAX_TENSORS_EXTRA = 3 };

static void hash_opt(cn_sha256 *ctx, const char *key, const char *value) {
  cn_sha256_add_str(ctx, key);
  cn_sha256_add_str(ctx, value ? value : "");
}

static void hash_num(cn_sha256 *ctx, const char *key, double v) {
  char buf[64];
  snprintf(buf, sizeof buf, "%.9g", v);
  hash_opt(ctx, key, buf);
}

/* Without augmentation the same bytes as checkpoints written before the augmentation options
 * grew (the first seven fields, all zero), so those still resume; with it, every field by name:
 * the draws changed then, so older augmented checkpoints are refused as different options. */
static void hash_augment(cn_sha256 *ctx, const cn_augment *a) {
  if (!cn_augment_active(a)) {
    const unsigned char zeros[7 * 4] = {0};
    cn_sha256_add(ctx, zeros, sizeof zeros);
    return;
  }
  hash_num(ctx, "augment", 2);
  const float values[] = {a->rotation_range, a->width_shift_range,   a->height_shift_range,
                          a->zoom_range,     a->brightness_range[0], a->brightness_range[1],
                          a->shear_range,    a->channel_shift_range, a->tint_range,
                          a->hue_range,      a->contrast_range,      a->blur_sigma[0],
                          a->blur_sigma[1],  a->crop_scale[0],       a->crop_scale[1],
                          a->crop_ratio[0],  a->crop_ratio[1],       a->cval};
  for (size_t i = 0; i < sizeof values / sizeof *values; i++) hash_num(ctx, "a", values[i]);
  const int flags[] = {a->horizontal_flip, a->vertical_flip, a->crop_width, a->crop_height,
                       (int)a->fill_mode};
  for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) hash_num(ctx, "a", flags[i]);
}

/* The options that change the weights a run produces (not threads, paths of outputs or logs),
 * with the input spec the images are read with (train --resize, --crop, --preprocess). */
static void options_fingerprint(const cn_train_options *o, int batch, const cn_input_spec *spec,
                                char hex[65]) {
  cn_sha256 h, *ctx = &h;
  hex[0] = 0;
  if (cn_sha256_begin(ctx) != CN_OK) return;
  hash_opt(ctx, "data", o->data_dir);
  hash_opt(ctx, "val", o->val_dir);
  hash_num(ctx, "val_split", o->val_split);
  hash_num(ctx, "whole_model", o->whole_model);
  hash_num(ctx, "init_weights", o->init_weights);
  hash_num(ctx, "class_weights", o->class_weights);
  hash_augment(ctx, &o->augment);
  hash_opt(ctx, "cut", o->cut);
  hash_opt(ctx, "head", o->head);
  hash_num(ctx, "dense", o->dense);
  hash_num(ctx, "dropout", o->dropout);
  hash_opt(ctx, "freeze", o->freeze);
  hash_opt(ctx, "optimizer", o->optimizer);
  hash_num(ctx, "lr", o->lr);
  hash_num(ctx, "momentum", o->momentum);
  hash_num(ctx, "nesterov", o->nesterov);
  hash_num(ctx, "decay", o->decay);
  hash_num(ctx, "weight_decay", o->weight_decay);
  hash_num(ctx, "clip_norm", o->clip_norm);
  hash_opt(ctx, "schedule", o->schedule);
  hash_num(ctx, "epochs", o->epochs);
  hash_num(ctx, "batch", batch);
  hash_num(ctx, "patience", o->patience);
  hash_opt(ctx, "fine_tune", o->fine_tune);
  hash_num(ctx, "fine_tune_lr", o->fine_tune_lr);
  hash_num(ctx, "fine_tune_epochs", o->fine_tune_epochs);
  hash_num(ctx, "seed", (double)o->seed);
  hash_num(ctx, "spec_height", spec->height);
  hash_num(ctx, "spec_width", spec->width);
  hash_num(ctx, "spec_channels", spec->channels);
  hash_num(ctx, "spec_resize", (int)spec->resize);
  hash_num(ctx, "spec_crop", spec->crop);
  hash_num(ctx, "spec_preprocess", (int)spec->preprocess);
  hash_num(ctx, "spec_channels_first", spec->channels_first);
  if (spec->decoder != CN_DECODE_PIL) hash_num(ctx, "spec_decoder", (int)spec->decoder);
  cn_sha256_hex(ctx, hex);
}

static int count_params(const cn_graph *g) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) n += g->nodes[i].n_params;
  return n;
}

/* "<layer>/<param>" names, one malloc'd block per name. */
static cn_status param_tensors(const cn_graph *g, cn_st_tensor *t, int *n) {
  *n = 0;
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params; k++) {
      const cn_param *p = &g->nodes[i].params[k];
      size_t len = strlen(g->nodes[i].name) + strlen(p->name) + 2;
      char *name = malloc(len);
      if (!name) return cn_fail(CN_ERR_NOMEM, "out of memory");
      snprintf(name, len, "%s/%s", g->nodes[i].name, p->name);
      t[(*n)++] =
          (cn_st_tensor){.name = name, .dtype = CN_ST_F32, .shape = p->shape, .data = p->data};
    }
  return CN_OK;
}

cn_status fit_checkpoint_write(const fit_run *r) {
  int np = count_params(r->full), n = 0;
  cn_st_tensor *t = calloc((size_t)np + MAX_TENSORS_EXTRA, sizeof *t);
  if (!t) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = param_tensors(r->full, t, &n);
  int named = n;
  int64_t iterations = r->opt.iterations;
  const char *slot_names[2] = {"optimizer/slot0", "optimizer/slot1"};
  for (int s = 0; st == CN_OK && s < r->opt.n_slots; s++)
    t[n++] = (cn_st_tensor){.name = slot_names[s],
                            .dtype = CN_ST_F32,
                            .shape = {1, {(int64_t)r->opt.n}},
                            .data = r->opt.slot[s]};
  t[n++] = (cn_st_tensor){
      .name = "optimizer/iterations", .dtype = CN_ST_I64, .shape = {1, {1}}, .data = &iterations};
  char phase[16], epoch[16], bad[16], stop[16], loss[40], acc[40], fp[65], ranks[16];
  snprintf(ranks, sizeof ranks, "%d", r->ranks);
  snprintf(phase, sizeof phase, "%d", r->phase);
  snprintf(epoch, sizeof epoch, "%d", r->epoch);
  snprintf(bad, sizeof bad, "%d", r->bad_epochs);
  snprintf(stop, sizeof stop, "%d", r->stopped_early);
  snprintf(loss, sizeof loss, "%.17g", r->best_val_loss);
  snprintf(acc, sizeof acc, "%.17g", r->best_val_accuracy);
  options_fingerprint(r->o, r->batch, &r->spec, fp);
  cn_st_meta meta[] = {{"format", "convnet-checkpoint"},
                       {"version", "1"},
                       {"phase", phase},
                       {"epoch", epoch},
                       {"bad_epochs", bad},
                       {"stopped_early", stop},
                       {"best_val_loss", loss},
                       {"best_val_accuracy", acc},
                       {"options", fp},
                       {"ranks", ranks}};
  if (st == CN_OK)
    st = cn_safetensors_write(r->checkpoint_path, t, n, meta, (int)(sizeof meta / sizeof *meta));
  for (int i = 0; i < named; i++) free((char *)t[i].name);
  free(t);
  return st;
}

static cn_status meta_int(const cn_safetensors *f, const char *key, int lo, int hi, int *out) {
  const char *v = cn_safetensors_meta(f, key);
  char *end = NULL;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || *end || x < lo || x > hi)
    return cn_fail(CN_ERR_FORMAT, "%s: checkpoint field %s is missing or out of range",
                   cn_safetensors_path(f), key);
  *out = (int)x;
  return CN_OK;
}

static cn_status meta_double(const cn_safetensors *f, const char *key, double *out) {
  const char *v = cn_safetensors_meta(f, key);
  char *end = NULL;
  *out = v ? strtod(v, &end) : 0;
  if (!v || *end)
    return cn_fail(CN_ERR_FORMAT, "%s: checkpoint field %s is missing or malformed",
                   cn_safetensors_path(f), key);
  return CN_OK;
}

static cn_status check_header(const fit_run *r, const cn_safetensors *f) {
  const char *format = cn_safetensors_meta(f, "format");
  const char *options = cn_safetensors_meta(f, "options");
  char fp[65];
  if (!format || strcmp(format, "convnet-checkpoint"))
    return cn_fail(CN_ERR_FORMAT, "%s: not a convnet checkpoint", cn_safetensors_path(f));
  options_fingerprint(r->o, r->batch, &r->spec, fp);
  if (!options || strcmp(options, fp))
    return cn_fail(CN_ERR_ARG,
                   "%s: the checkpoint was made with different training options; resume "
                   "with the same options (threads may differ)",
                   cn_safetensors_path(f));
  return CN_OK;
}

static cn_status read_params(cn_graph *g, const cn_safetensors *f) {
  char name[CN_ST_MAX_NAME + 1];
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params; k++) {
      cn_param *p = &g->nodes[i].params[k];
      snprintf(name, sizeof name, "%s/%s", g->nodes[i].name, p->name);
      cn_status st = cn_safetensors_read(f, name, CN_ST_F32, &p->shape, p->data);
      if (st != CN_OK) return st;
    }
  g->weights_version++;
  return CN_OK;
}

/* The sums of a data-parallel run are grouped by rank: with another rank count the run goes on
 * as well, but not bit for bit as the uninterrupted run (checkpoints before "ranks": one). */
static void note_other_ranks(const fit_run *r, const cn_safetensors *f) {
  const char *v = cn_safetensors_meta(f, "ranks");
  int written = v ? atoi(v) : 1;
  if (written != r->ranks && r->rank == 0)
    fit_message(r,
                "%s was written by a run of %d process(es), this one has %d: it continues, but "
                "its sums are grouped differently, so the result is not bit for bit the one the "
                "first run would have given",
                cn_safetensors_path(f), written, r->ranks);
}

cn_status fit_checkpoint_read(fit_run *r, const char *path) {
  cn_safetensors *f = NULL;
  cn_status st = cn_safetensors_open(path, &f);
  if (st != CN_OK) return st;
  st = check_header(r, f);
  if (st == CN_OK) st = meta_int(f, "phase", 0, 1, &r->phase);
  if (st == CN_OK) st = meta_int(f, "epoch", 0, 1 << 30, &r->epoch);
  if (st == CN_OK) st = meta_int(f, "bad_epochs", 0, 1 << 30, &r->bad_epochs);
  if (st == CN_OK) st = meta_int(f, "stopped_early", 0, 1, &r->stopped_early);
  if (st == CN_OK) st = meta_double(f, "best_val_loss", &r->best_val_loss);
  if (st == CN_OK) st = meta_double(f, "best_val_accuracy", &r->best_val_accuracy);
  if (st == CN_OK) st = read_params(r->full, f);
  if (st == CN_OK) note_other_ranks(r, f);
  cn_safetensors_close(f);
  return st;
}

cn_status fit_checkpoint_restore_optimizer(fit_run *r, const char *path) {
  cn_safetensors *f = NULL;
  cn_status st = cn_safetensors_open(path, &f);
  if (st != CN_OK) return st;
  const char *names[2] = {"optimizer/slot0", "optimizer/slot1"};
  cn_shape slot = {1, {(int64_t)r->opt.n}}, one = {1, {1}};
  for (int s = 0; st == CN_OK && s < r->opt.n_slots; s++)
    st = cn_safetensors_read(f, names[s], CN_ST_F32, &slot, r->opt.slot[s]);
  int64_t iterations = 0;
  if (st == CN_OK)
    st = cn_safetensors_read(f, "optimizer/iterations", CN_ST_I64, &one, &iterations);
  if (st == CN_OK && iterations < 0)
    st = cn_fail(CN_ERR_FORMAT, "%s: negative iteration count", path);
  if (st == CN_OK) r->opt.iterations = iterations;
  cn_safetensors_close(f);
  return st;
}

cn_status fit_make_model(const fit_run *r, cn_model **out) {
  cn_graph *copy = NULL;
  cn_status st = cn_graph_clone(r->full, &copy);
  if (st == CN_OK) st = cn_model_wrap(copy, cn_model_name(r->base), &r->spec, out);
  if (st != CN_OK) return st;
  const char **names = malloc((size_t)r->classes * sizeof *names);
  if (!names) {
    cn_model_free(*out);
    *out = NULL;
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  for (int c = 0; c < r->classes; c++) names[c] = fit_class_name(r, c);
  st = cn_model_set_class_names(*out, names, r->classes);
  free(names);
  if (st != CN_OK) {
    cn_model_free(*out);
    *out = NULL;
  }
  return st;
}
