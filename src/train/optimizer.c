/* SGD, Adam(W) and RMSprop with Keras 3's update rules, float32 operation by operation, so that
 * a step gives the bits keras.optimizers gives (TensorFlow evaluates each op separately, rounding
 * to float32 every time). Per step, as Keras's apply does: (coupled L2), clip, decoupled weight
 * decay, update, iterations + 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "train/optim.h"

/* a * b + c must round twice, as TensorFlow's separate multiply and add kernels do: no fused
 * multiply-add contraction in this file. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Element counts above which the per-element loops split over threads (each element is updated
 * independently, so the bits do not depend on the split). */
#define PARALLEL_MIN (1 << 16)

float cn_optim_default_lr(cn_optim_kind kind) {
  return kind == CN_OPTIM_SGD ? 0.01f : 0.001f;
}

cn_status cn_optim_parse(const char *name, cn_optim_kind *out) {
  if (!name || !strcmp(name, "adam"))
    *out = CN_OPTIM_ADAM;
  else if (!strcmp(name, "sgd"))
    *out = CN_OPTIM_SGD;
  else if (!strcmp(name, "rmsprop"))
    *out = CN_OPTIM_RMSPROP;
  else
    return cn_fail(CN_ERR_ARG, "optimizer must be sgd, adam or rmsprop, not \"%s\"", name);
  return CN_OK;
}

static void resolve_defaults(cn_optim_config *c) {
  if (c->lr == 0.0f) c->lr = cn_optim_default_lr(c->kind);
  if (c->beta1 == 0.0f) c->beta1 = 0.9f;
  if (c->beta2 == 0.0f) c->beta2 = 0.999f;
  if (c->rho == 0.0f) c->rho = 0.9f;
  if (c->epsilon == 0.0f) c->epsilon = 1e-7f;
}

static int in_unit(float x) {
  return x >= 0.0f && x < 1.0f;
}
static int non_negative(float x) {
  return x >= 0.0f && isfinite(x);
}

static cn_status check_config(const cn_optim_config *c) {
  if ((unsigned)c->kind > CN_OPTIM_RMSPROP) return cn_fail(CN_ERR_ARG, "optimizer: unknown kind");
  if (!(c->lr > 0.0f) || !isfinite(c->lr))
    return cn_fail(CN_ERR_ARG, "optimizer: learning rate %g must be positive", (double)c->lr);
  if (!in_unit(c->momentum) || !in_unit(c->beta1) || !in_unit(c->beta2) || !in_unit(c->rho))
    return cn_fail(CN_ERR_ARG, "optimizer: momentum, beta1, beta2 and rho must be in [0, 1)");
  if (!non_negative(c->decay) || !non_negative(c->epsilon) || !non_negative(c->weight_decay) ||
      !non_negative(c->l2) || !non_negative(c->clip_norm) || !non_negative(c->clip_value))
    return cn_fail(CN_ERR_ARG, "optimizer: decay, epsilon, weight decay, l2 and clipping must be "
                               "finite and >= 0");
  switch (c->schedule) {
  case CN_SCHEDULE_CONSTANT:
    return CN_OK;
  case CN_SCHEDULE_STEP:
    if (c->step_every <= 0 || !(c->step_gamma > 0.0f) || !isfinite(c->step_gamma))
      return cn_fail(CN_ERR_ARG, "optimizer: step schedule needs step_every > 0 and gamma > 0");
    return CN_OK;
  case CN_SCHEDULE_COSINE:
    if (c->total_steps <= 0)
      return cn_fail(CN_ERR_ARG, "optimizer: cosine schedule needs total_steps > 0");
    return CN_OK;
  }
  return cn_fail(CN_ERR_ARG, "optimizer: unknown schedule");
}

static int slots_needed(const cn_optim_config *c) {
  switch (c->kind) {
  case CN_OPTIM_ADAM:
    return 2; /* m, v */
  case CN_OPTIM_RMSPROP:
    return c->momentum > 0.0f ? 2 : 1; /* velocity, momentum */
  default:
    return c->momentum > 0.0f ? 1 : 0; /* momentum */
  }
}

cn_status cn_optimizer_init(cn_optimizer *o, const cn_optim_config *config, size_t n) {
  if (!o || !config) return cn_fail(CN_ERR_ARG, "optimizer: NULL argument");
  *o = (cn_optimizer){0};
  cn_optim_config c = *config;
  resolve_defaults(&c);
  cn_status st = check_config(&c);
  if (st != CN_OK) return st;
  size_t bytes;
  if (!cn_mul_size(n, sizeof(float), &bytes))
    return cn_fail(CN_ERR_LIMIT, "optimizer: %zu parameters overflow", n);
  o->config = c;
  o->n = n;
  o->n_slots = slots_needed(&c);
  for (int s = 0; s < o->n_slots && n > 0; s++) {
    o->slot[s] = cn_alloc_aligned(bytes);
    if (!o->slot[s]) {
      cn_optimizer_free(o);
      return cn_fail(CN_ERR_NOMEM, "optimizer: out of memory for %zu parameters", n);
    }
    memset(o->slot[s], 0, bytes);
  }
  return CN_OK;
}

void cn_optimizer_free(cn_optimizer *o) {
  if (!o) return;
  for (int s = 0; s < 2; s++) cn_free_aligned(o->slot[s]);
  *o = (cn_optimizer){0};
}

double cn_optimizer_lr(const cn_optimizer *o) {
  if (!o) return NAN;
  const cn_optim_config *c = &o->config;
  double t = (double)o->iterations, lr = c->lr;
  if (c->schedule == CN_SCHEDULE_STEP)
    lr *= pow(c->step_gamma, floor(t / (double)c->step_every));
  else if (c->schedule == CN_SCHEDULE_COSINE)
    lr *= 0.5 * (1.0 + cos(M_PI * fmin(t, (double)c->total_steps) / (double)c->total_steps));
  float rate = (float)lr; /* Keras keeps the learning rate as a float32 variable */
  /* Keras 2's decay is Keras 3's InverseTimeDecay(decay_steps=1), evaluated in float32 */
  if (c->decay > 0.0f) rate = rate / (1.0f + c->decay * (float)o->iterations);
  return rate;
}

cn_status cn_optimizer_check_ranges(const cn_optimizer *o, const cn_param_range *ranges,
                                    int n_ranges) {
  if (!o || n_ranges < 0 || (n_ranges > 0 && !ranges))
    return cn_fail(CN_ERR_ARG, "optimizer: invalid ranges");
  for (int r = 0; r < n_ranges; r++) {
    const cn_param_range *a = &ranges[r];
    if (a->offset > o->n || a->count > o->n - a->offset)
      return cn_fail(CN_ERR_ARG, "optimizer: range %d [%zu, +%zu) outside %zu parameters", r,
                     a->offset, a->count, o->n);
    if (!(a->lr_scale >= 0.0f) || !isfinite(a->lr_scale))
      return cn_fail(CN_ERR_ARG, "optimizer: range %d lr_scale %g", r, (double)a->lr_scale);
    for (int q = 0; q < r; q++) {
      const cn_param_range *b = &ranges[q];
      if (a->count && b->count && a->offset < b->offset + b->count &&
          b->offset < a->offset + a->count)
        return cn_fail(CN_ERR_ARG, "optimizer: ranges %d and %d overlap", q, r);
    }
  }
  return CN_OK;
}

/* Keras keeps beta_1, rho... as Python floats and derives 1 - beta in double before rounding to
 * float32; the config holds float32, so recover the decimal the user wrote (the shortest one that
 * rounds to it): 0.9f -> 0.9, giving 1 - beta = 0.1f rather than 0.099999976f. */
static double as_written(float f) {
  char buf[32];
  for (int digits = 1; digits <= 9; digits++) {
    snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
    double d = strtod(buf, NULL);
    if ((float)d == f) return d;
  }
  return f;
}

static int range_ok(const cn_optimizer *o, const cn_param_range *r) {
  return r->offset <= o->n && r->count <= o->n - r->offset && r->lr_scale >= 0.0f;
}

/* Everything one range's update needs, precomputed once per step. */
typedef struct update_consts {
  float lr;    /* scheduled rate times the range's lr_scale */
  float alpha; /* Adam: lr * sqrt(1 - beta2^t) / (1 - beta1^t) */
  float one_minus_b1, one_minus_b2, one_minus_rho;
  int threads;
} update_consts;

static void add_l2(float *p, float *g, size_t count, float l2, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) g[i] = g[i] + l2 * p[i];
}

static void clip_values(float *g, size_t count, float v, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) g[i] = g[i] > v ? v : g[i] < -v ? -v : g[i];
}

static void scale_values(float *g, size_t count, float scale, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) g[i] = g[i] * scale;
}

static void weight_decay(float *p, size_t count, float wd, float lr, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) p[i] = p[i] - p[i] * wd * lr;
}

/* Keras's clip_by_global_norm: grads * clip * min(1/norm, 1/clip); the norm over every range,
 * summed serially in double (one fixed order for any thread count). */
static void clip_global_norm(const cn_optimizer *o, float *grads, const cn_param_range *ranges,
                             int n_ranges, int threads) {
  double sum = 0.0;
  for (int r = 0; r < n_ranges; r++) {
    const float *g = grads + ranges[r].offset;
    for (size_t i = 0; i < ranges[r].count; i++) sum += (double)g[i] * g[i];
  }
  float norm = (float)sqrt(sum), clip = o->config.clip_norm;
  float inv_clip = (float)(1.0 / as_written(clip)); /* Keras divides the Python float */
  float scale = clip * fminf(1.0f / norm, inv_clip);
  if (!isfinite(norm)) scale = NAN; /* as Keras: a non-finite norm poisons the step visibly */
  for (int r = 0; r < n_ranges; r++)
    scale_values(grads + ranges[r].offset, ranges[r].count, scale, threads);
}

static void sgd_update(const cn_optimizer *o, float *p, const float *g, float *m, size_t count,
                       const update_consts *k) {
  float lr = k->lr, mom = o->config.momentum;
  if (!m) {
#pragma omp parallel for num_threads(k->threads) schedule(static) if (count > PARALLEL_MIN)
    for (size_t i = 0; i < count; i++) p[i] = p[i] - g[i] * lr;
    return;
  }
  int nesterov = o->config.nesterov;
#pragma omp parallel for num_threads(k->threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) {
    m[i] = m[i] * mom - g[i] * lr;
    p[i] = p[i] + (nesterov ? m[i] * mom - g[i] * lr : m[i]);
  }
}

static void adam_update(const cn_optimizer *o, float *p, const float *g, float *m, float *v,
                        size_t count, const update_consts *k) {
  float alpha = k->alpha, c1 = k->one_minus_b1, c2 = k->one_minus_b2, eps = o->config.epsilon;
#pragma omp parallel for num_threads(k->threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) {
    m[i] = m[i] + (g[i] - m[i]) * c1;
    v[i] = v[i] + (g[i] * g[i] - v[i]) * c2;
    p[i] = p[i] - m[i] * alpha / (sqrtf(v[i]) + eps);
  }
}

static void rmsprop_update(const cn_optimizer *o, float *p, const float *g, float *v, float *m,
                           size_t count, const update_consts *k) {
  float lr = k->lr, rho = o->config.rho, c = k->one_minus_rho, eps = o->config.epsilon;
  float mom = o->config.momentum;
#pragma omp parallel for num_threads(k->threads) schedule(static) if (count > PARALLEL_MIN)
  for (size_t i = 0; i < count; i++) {
    v[i] = rho * v[i] + c * (g[i] * g[i]);
    float increment = lr * g[i] / sqrtf(v[i] + eps);
    if (m) {
      m[i] = mom * m[i] + increment;
      p[i] = p[i] - m[i];
    } else {
      p[i] = p[i] - increment;
    }
  }
}

static void update_range(const cn_optimizer *o, float *params, const float *grads,
                         const cn_param_range *r, const update_consts *k) {
  float *p = params + r->offset, *s0 = NULL, *s1 = NULL;
  const float *g = grads + r->offset;
  if (o->slot[0]) s0 = o->slot[0] + r->offset;
  if (o->slot[1]) s1 = o->slot[1] + r->offset;
  switch (o->config.kind) {
  case CN_OPTIM_ADAM:
    adam_update(o, p, g, s0, s1, r->count, k);
    break;
  case CN_OPTIM_RMSPROP:
    rmsprop_update(o, p, g, s0, s1, r->count, k);
    break;
  default:
    sgd_update(o, p, g, s0, r->count, k);
    break;
  }
}

/* The step's constants shared by every range (the learning rate is set per range). */
static update_consts step_consts(const cn_optimizer *o) {
  const cn_optim_config *c = &o->config;
  update_consts k = {.threads = cn_get_threads()};
  k.one_minus_b1 = (float)(1.0 - as_written(c->beta1));
  k.one_minus_b2 = (float)(1.0 - as_written(c->beta2));
  k.one_minus_rho = (float)(1.0 - as_written(c->rho));
  return k;
}

/* Adam's bias correction, float32 as Keras: lr * sqrt(1 - b2^t) / (1 - b1^t), t = iterations+1. */
static float adam_alpha(const cn_optimizer *o, float lr) {
  float t = (float)(o->iterations + 1);
  float p1 = powf(o->config.beta1, t), p2 = powf(o->config.beta2, t);
  return lr * sqrtf(1.0f - p2) / (1.0f - p1);
}

void cn_optimizer_step(cn_optimizer *o, float *params, float *grads, const cn_param_range *ranges,
                       int n_ranges) {
  if (!o || !params || !grads) return;
  cn_param_range whole = {0, o->n, 1.0f};
  if (!ranges || n_ranges <= 0) ranges = &whole, n_ranges = 1;
  for (int r = 0; r < n_ranges; r++)
    if (!range_ok(o, &ranges[r])) return; /* never write outside the buffers */
  const cn_optim_config *c = &o->config;
  update_consts k = step_consts(o);
  for (int r = 0; r < n_ranges && c->l2 > 0.0f; r++)
    add_l2(params + ranges[r].offset, grads + ranges[r].offset, ranges[r].count, c->l2, k.threads);
  if (c->clip_norm > 0.0f) clip_global_norm(o, grads, ranges, n_ranges, k.threads);
  for (int r = 0; r < n_ranges && c->clip_value > 0.0f; r++)
    clip_values(grads + ranges[r].offset, ranges[r].count, c->clip_value, k.threads);
  float lr = (float)cn_optimizer_lr(o);
  for (int r = 0; r < n_ranges; r++) {
    const cn_param_range *range = &ranges[r];
    k.lr = range->lr_scale == 1.0f ? lr : (float)((double)lr * range->lr_scale);
    if (c->weight_decay > 0.0f)
      weight_decay(params + range->offset, range->count, c->weight_decay, k.lr, k.threads);
    if (c->kind == CN_OPTIM_ADAM) k.alpha = adam_alpha(o, k.lr);
    update_range(o, params, grads, range, &k);
  }
  o->iterations++;
}
