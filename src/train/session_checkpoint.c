/* Checkpoints of training loops written in C (cn_sessions_save / cn_sessions_load): several
 * sessions and the caller's own state in one safetensors file (docs/formats.md), written through
 * the same atomic writer as cn_train's checkpoints. Tensor names:
 *   session<k>/<layer>/<param>          every weight, trainable or not (F32)
 *   session<k>/optimizer/slot<s>        momentum, Adam's m and v (F32, one float per parameter)
 *   session<k>/optimizer/iterations     (I64)
 *   session<k>/rng                      the dropout stream: seed, steps done (I64 bits)
 *   user                                the caller's bytes (U8), when there are any
 * and metadata format "convnet-sessions", version, sessions, session<k>.model and
 * session<k>.optimizer, which a load compares before touching anything. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/native/safetensors.h"
#include "train/session_internal.h"

#define FORMAT "convnet-sessions"
#define VERSION "1"

enum { META_FIXED = 3, META_PER_SESSION = 2, KEY_CAP = 48 };

/* The tensors of a set of sessions: where each lives in memory (the source when saving, the
 * destination when loading). rng holds each session's {seed, steps}, which are not contiguous in
 * the session. */
typedef struct ckpt_list {
  cn_st_tensor *t;
  int n, cap;
  uint64_t *rng;
} ckpt_list;

static void list_free(ckpt_list *l) {
  for (int i = 0; i < l->n; i++) free((char *)l->t[i].name);
  free(l->t);
  free(l->rng);
  *l = (ckpt_list){0};
}

/* Adds a tensor named by the printf format. */
static cn_status list_add(ckpt_list *l, cn_st_dtype dtype, cn_shape shape, const void *data,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static cn_status list_add(ckpt_list *l, cn_st_dtype dtype, cn_shape shape, const void *data,
                          const char *fmt, ...) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    cn_st_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
    if (!t) return cn_fail(CN_ERR_NOMEM, "out of memory");
    l->t = t, l->cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *name = len >= 0 ? malloc((size_t)len + 1) : NULL;
  if (!name) return cn_fail(CN_ERR_NOMEM, "out of memory");
  va_start(ap, fmt);
  vsnprintf(name, (size_t)len + 1, fmt, ap);
  va_end(ap);
  l->t[l->n++] = (cn_st_tensor){.name = name, .dtype = dtype, .shape = shape, .data = data};
  return CN_OK;
}

/* Every parameter of session k's graph (a shared layer's later calls own none). */
static cn_status add_weights(ckpt_list *l, cn_session *s, int k) {
  cn_graph *g = cn_trainer_graph(s->trainer);
  cn_status st = CN_OK;
  for (int i = 0; st == CN_OK && i < g->n_nodes; i++)
    for (int p = 0; st == CN_OK && g->nodes[i].shares < 0 && p < g->nodes[i].n_params; p++) {
      const cn_param *q = &g->nodes[i].params[p];
      st = list_add(l, CN_ST_F32, q->shape, q->data, "session%d/%s/%s", k, g->nodes[i].name,
                    q->name);
    }
  return st;
}

static cn_status add_session(ckpt_list *l, cn_session *s, int k) {
  cn_status st = add_weights(l, s, k);
  const char *slots[2] = {"slot0", "slot1"};
  for (int i = 0; st == CN_OK && s->opt.n > 0 && i < s->opt.n_slots; i++)
    st = list_add(l, CN_ST_F32, (cn_shape){1, {(int64_t)s->opt.n}}, s->opt.slot[i],
                  "session%d/optimizer/%s", k, slots[i]);
  if (st == CN_OK)
    st = list_add(l, CN_ST_I64, (cn_shape){1, {1}}, &s->opt.iterations,
                  "session%d/optimizer/iterations", k);
  if (st == CN_OK)
    st = list_add(l, CN_ST_I64, (cn_shape){1, {2}}, l->rng + 2 * k, "session%d/rng", k);
  return st;
}

static cn_status build_list(ckpt_list *l, cn_session *const *sessions, int n, const void *user,
                            size_t user_bytes) {
  *l = (ckpt_list){0};
  l->rng = calloc((size_t)n * 2, sizeof *l->rng);
  cn_status st = l->rng ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int k = 0; st == CN_OK && k < n; k++) {
    l->rng[2 * k] = sessions[k]->seed, l->rng[2 * k + 1] = sessions[k]->steps;
    st = add_session(l, sessions[k], k);
  }
  if (st == CN_OK && user_bytes > 0)
    st = list_add(l, CN_ST_U8, (cn_shape){1, {(int64_t)user_bytes}}, user, "user");
  if (st != CN_OK) list_free(l);
  return st;
}

static const char *optimizer_name(const cn_session *s) {
  static const char *names[] = {"sgd", "adam", "rmsprop"};
  return names[s->opt.config.kind];
}

static cn_status check_args(const char *path, cn_session *const *sessions, int n, const void *user,
                            size_t user_bytes) {
  if (!path || !sessions || n < 1 || (user_bytes > 0 && !user))
    return cn_fail(CN_ERR_ARG, "cn_sessions: NULL path, sessions or user, or n < 1");
  for (int k = 0; k < n; k++)
    if (!sessions[k]) return cn_fail(CN_ERR_ARG, "cn_sessions: session %d is NULL", k);
  if (user_bytes > (size_t)INT64_MAX)
    return cn_fail(CN_ERR_LIMIT, "cn_sessions: user state too big");
  return CN_OK;
}

cn_status cn_sessions_save(const char *path, cn_session *const *sessions, int n, const void *user,
                           size_t user_bytes) {
  cn_status st = check_args(path, sessions, n, user, user_bytes);
  if (st != CN_OK) return st;
  ckpt_list l;
  if ((st = build_list(&l, sessions, n, user, user_bytes)) != CN_OK) return st;
  int n_meta = META_FIXED + META_PER_SESSION * n;
  cn_st_meta *meta = calloc((size_t)n_meta, sizeof *meta);
  char(*keys)[KEY_CAP] = calloc((size_t)n_meta, sizeof *keys), count[16];
  if (!meta || !keys) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  snprintf(count, sizeof count, "%d", n);
  for (int k = 0; st == CN_OK && k < n; k++) {
    int m = META_FIXED + META_PER_SESSION * k;
    snprintf(keys[m], KEY_CAP, "session%d.model", k);
    snprintf(keys[m + 1], KEY_CAP, "session%d.optimizer", k);
    meta[m] = (cn_st_meta){keys[m], sessions[k]->model_name};
    meta[m + 1] = (cn_st_meta){keys[m + 1], optimizer_name(sessions[k])};
  }
  if (st == CN_OK) {
    meta[0] = (cn_st_meta){"format", FORMAT};
    meta[1] = (cn_st_meta){"version", VERSION};
    meta[2] = (cn_st_meta){"sessions", count};
    st = cn_safetensors_write(path, l.t, l.n, meta, n_meta);
  }
  free(meta);
  free(keys);
  list_free(&l);
  return st;
}

/* The file's metadata against the sessions: format, count, model names, optimizer kinds. */
static cn_status check_meta(const cn_safetensors *f, cn_session *const *sessions, int n) {
  const char *path = cn_safetensors_path(f), *format = cn_safetensors_meta(f, "format");
  const char *version = cn_safetensors_meta(f, "version");
  const char *count = cn_safetensors_meta(f, "sessions");
  if (!format || strcmp(format, FORMAT) || !version || !count)
    return cn_fail(CN_ERR_FORMAT, "%s: not a convnet sessions checkpoint", path);
  if (strcmp(version, VERSION))
    return cn_fail(CN_ERR_FORMAT, "%s: sessions checkpoint version %.16s is not supported (%s)",
                   path, version, VERSION);
  char want[16], key[KEY_CAP];
  snprintf(want, sizeof want, "%d", n);
  if (strcmp(count, want))
    return cn_fail(CN_ERR_ARG, "%s: the file holds %.16s sessions, not %d", path, count, n);
  for (int k = 0; k < n; k++) {
    snprintf(key, sizeof key, "session%d.model", k);
    const char *model = cn_safetensors_meta(f, key);
    if (!model || strcmp(model, sessions[k]->model_name))
      return cn_fail(CN_ERR_ARG, "%s: session %d is of model \"%.64s\" in the file, not \"%.64s\"",
                     path, k, model ? model : "?", sessions[k]->model_name);
    snprintf(key, sizeof key, "session%d.optimizer", k);
    const char *opt = cn_safetensors_meta(f, key);
    if (!opt || strcmp(opt, optimizer_name(sessions[k])))
      return cn_fail(CN_ERR_ARG, "%s: session %d (%.64s) was trained with %.16s, not %s", path, k,
                     sessions[k]->model_name, opt ? opt : "?", optimizer_name(sessions[k]));
  }
  return CN_OK;
}

static int shape_equal(const cn_shape *a, const cn_shape *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (a->dim[i] != b->dim[i]) return 0;
  return 1;
}

static int list_has(const ckpt_list *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->t[i].name, name)) return 1;
  return 0;
}

/* Every tensor the sessions need is in the file with its dtype and shape, and nothing else is:
 * checked in full before anything is copied, so a refused file changes nothing. */
static cn_status check_tensors(const cn_safetensors *f, const ckpt_list *l) {
  const char *path = cn_safetensors_path(f);
  char want[96], got[96];
  for (int i = 0; i < l->n; i++) {
    const cn_st_tensor *e = &l->t[i], *t = cn_safetensors_find(f, e->name);
    if (!t)
      return cn_fail(CN_ERR_ARG,
                     "%s: the file has no %.200s (saved from a different model, "
                     "optimizer or user state?)",
                     path, e->name);
    if (t->dtype != e->dtype || !shape_equal(&t->shape, &e->shape))
      return cn_fail(CN_ERR_ARG, "%s: %.200s: expected %s %s, file has %s %s", path, e->name,
                     cn_st_dtype_name(e->dtype), cn_shape_format(&e->shape, want, sizeof want),
                     cn_st_dtype_name(t->dtype), cn_shape_format(&t->shape, got, sizeof got));
  }
  for (int i = 0; i < cn_safetensors_count(f); i++) {
    const char *name = cn_safetensors_at(f, i)->name;
    if (!list_has(l, name))
      return cn_fail(CN_ERR_ARG,
                     "%s: the sessions have no %.200s (saved from a different model, "
                     "optimizer or user state?)",
                     path, name);
  }
  return CN_OK;
}

/* The iteration counts are read first: a negative one refuses the file before anything is
 * copied. */
static cn_status check_iterations(const cn_safetensors *f, int n) {
  char name[48];
  cn_shape one = {1, {1}};
  for (int k = 0; k < n; k++) {
    int64_t it = 0;
    snprintf(name, sizeof name, "session%d/optimizer/iterations", k);
    cn_status st = cn_safetensors_read(f, name, CN_ST_I64, &one, &it);
    if (st != CN_OK) return st;
    if (it < 0)
      return cn_fail(CN_ERR_FORMAT, "%s: session %d: negative iteration count",
                     cn_safetensors_path(f), k);
  }
  return CN_OK;
}

static cn_status read_all(const cn_safetensors *f, ckpt_list *l, cn_session *const *sessions,
                          int n) {
  cn_status st = check_iterations(f, n);
  for (int i = 0; st == CN_OK && i < l->n; i++)
    st = cn_safetensors_read(f, l->t[i].name, l->t[i].dtype, &l->t[i].shape, (void *)l->t[i].data);
  for (int k = 0; st == CN_OK && k < n; k++) {
    cn_session *s = sessions[k];
    s->seed = l->rng[2 * k], s->steps = l->rng[2 * k + 1];
    s->last_batch = 0, s->pred_fresh = 0; /* no output until the next step */
    cn_trainer_weights_changed(s->trainer);
  }
  return st;
}

cn_status cn_sessions_load(const char *path, cn_session *const *sessions, int n, void *user,
                           size_t user_bytes) {
  cn_status st = check_args(path, sessions, n, user, user_bytes);
  if (st != CN_OK) return st;
  cn_safetensors *f = NULL;
  if ((st = cn_safetensors_open(path, &f)) != CN_OK) return st;
  ckpt_list l = {0};
  st = check_meta(f, sessions, n);
  if (st == CN_OK) st = build_list(&l, sessions, n, user, user_bytes);
  if (st == CN_OK) st = check_tensors(f, &l);
  if (st == CN_OK) st = read_all(f, &l, sessions, n);
  list_free(&l);
  cn_safetensors_close(f);
  return st;
}
