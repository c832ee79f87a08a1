/* Keras's initializers: VarianceScaling (Glorot, He, LeCun), random normal, truncated normal and
 * uniform, zeros, ones, constants. The formulas are Keras's; the random numbers come from
 * convnet's own seeded streams, so values match Keras in distribution, not draw for draw. */
#include "model/init.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"

/* Stream constant for initialisation (cn_rng_key's `stream`). */
#define INIT_STREAM 0x1417a11ceULL

/* The stddev of a standard normal truncated to [-2, 2] is 0.87962566103423978; Keras divides by
 * it so that the truncated draw has the requested variance. */
#define TRUNCATED_STDDEV 0.87962566103423978

void cn_init_fans(const cn_shape *shape, double *fan_in, double *fan_out) {
  int r = shape->rank;
  if (r < 1) {
    *fan_in = *fan_out = 1;
  } else if (r == 1) {
    *fan_in = *fan_out = (double)shape->dim[0];
  } else {
    double receptive = 1;
    for (int d = 0; d < r - 2; d++) receptive *= (double)shape->dim[d];
    *fan_in = (double)shape->dim[r - 2] * receptive;
    *fan_out = (double)shape->dim[r - 1] * receptive;
  }
}

cn_init cn_init_glorot_uniform(void) {
  cn_init i = {.kind = CN_INIT_VARIANCE_SCALING,
               .a = 1,
               .mode = CN_FAN_AVG,
               .distribution = CN_DIST_UNIFORM,
               .name = "glorot_uniform"};
  return i;
}

cn_init cn_init_default(const char *name) {
  static const char *const kernels[] = {"kernel", "depthwise_kernel", "pointwise_kernel"};
  for (size_t k = 0; k < sizeof kernels / sizeof *kernels; k++)
    if (strcmp(name, kernels[k]) == 0) return cn_init_glorot_uniform();
  cn_init i = {.kind = CN_INIT_ZEROS, .name = "zeros"};
  if (strcmp(name, "gamma") == 0 || strcmp(name, "moving_variance") == 0)
    i.kind = CN_INIT_ONES, snprintf(i.name, sizeof i.name, "ones");
  return i;
}

static const struct {
  const char *cls, *snake;
  cn_init init;
} known[] = {
#define VS(scale, fan, dist)                                                                       \
  { .kind = CN_INIT_VARIANCE_SCALING, .a = scale, .mode = fan, .distribution = dist }
    {"GlorotUniform", "glorot_uniform", VS(1, CN_FAN_AVG, CN_DIST_UNIFORM)},
    {"GlorotNormal", "glorot_normal", VS(1, CN_FAN_AVG, CN_DIST_TRUNCATED_NORMAL)},
    {"HeUniform", "he_uniform", VS(2, CN_FAN_IN, CN_DIST_UNIFORM)},
    {"HeNormal", "he_normal", VS(2, CN_FAN_IN, CN_DIST_TRUNCATED_NORMAL)},
    {"LecunUniform", "lecun_uniform", VS(1, CN_FAN_IN, CN_DIST_UNIFORM)},
    {"LecunNormal", "lecun_normal", VS(1, CN_FAN_IN, CN_DIST_TRUNCATED_NORMAL)},
    {"VarianceScaling", "variance_scaling", VS(1, CN_FAN_IN, CN_DIST_TRUNCATED_NORMAL)},
#undef VS
    {"Zeros", "zeros", {.kind = CN_INIT_ZEROS}},
    {"Ones", "ones", {.kind = CN_INIT_ONES}},
    {"Constant", "constant", {.kind = CN_INIT_CONSTANT}},
    {"RandomUniform", "random_uniform", {.kind = CN_INIT_RANDOM_UNIFORM, .a = -0.05f, .b = 0.05f}},
    {"RandomNormal", "random_normal", {.kind = CN_INIT_RANDOM_NORMAL, .b = 0.05f}},
    {"TruncatedNormal", "truncated_normal", {.kind = CN_INIT_TRUNCATED_NORMAL, .b = 0.05f}},
};

int cn_init_by_name(const char *name, cn_init *out) {
  for (size_t i = 0; name && i < sizeof known / sizeof *known; i++)
    if (strcmp(name, known[i].cls) == 0 || strcmp(name, known[i].snake) == 0) {
      *out = known[i].init;
      snprintf(out->name, sizeof out->name, "%s", known[i].cls);
      return 1;
    }
  return 0;
}

/* A normal draw with the given mean and stddev, redrawn until within 2 stddev when truncated. */
static float normal(cn_rng *r, double mean, double stddev, int truncated) {
  double z;
  do z = cn_rng_normal(r);
  while (truncated && fabs(z) > 2.0);
  return (float)(mean + stddev * z);
}

static void fill_random(float *w, int64_t n, const cn_init *in, double scale, uint64_t key) {
  cn_rng r = cn_rng_make(key);
  int uniform = in->kind == CN_INIT_RANDOM_UNIFORM ||
                (in->kind == CN_INIT_VARIANCE_SCALING && in->distribution == CN_DIST_UNIFORM);
  if (in->kind == CN_INIT_VARIANCE_SCALING) {
    if (uniform) {
      double limit = sqrt(3.0 * scale);
      for (int64_t i = 0; i < n; i++) w[i] = (float)((2.0 * cn_rng_float(&r) - 1.0) * limit);
      return;
    }
    int truncated = in->distribution == CN_DIST_TRUNCATED_NORMAL;
    double stddev = sqrt(scale) / (truncated ? TRUNCATED_STDDEV : 1.0);
    for (int64_t i = 0; i < n; i++) w[i] = normal(&r, 0, stddev, truncated);
  } else if (uniform) {
    for (int64_t i = 0; i < n; i++) w[i] = in->a + (in->b - in->a) * cn_rng_float(&r);
  } else {
    int truncated = in->kind == CN_INIT_TRUNCATED_NORMAL;
    for (int64_t i = 0; i < n; i++) w[i] = normal(&r, in->a, in->b, truncated);
  }
}

/* Keras's VarianceScaling: scale / max(1, fan) for the chosen fan. */
static double variance_scale(const cn_init *in, const cn_shape *shape) {
  double fan_in, fan_out;
  cn_init_fans(shape, &fan_in, &fan_out);
  double fan = in->mode == CN_FAN_IN    ? fan_in
               : in->mode == CN_FAN_OUT ? fan_out
                                        : (fan_in + fan_out) / 2;
  return in->a / (fan > 1 ? fan : 1);
}

cn_status cn_param_init(cn_param *p, const char *layer, uint64_t key) {
  cn_init in = p->init.kind == CN_INIT_DEFAULT ? cn_init_default(p->name) : p->init;
  int64_t n = cn_shape_numel(&p->shape);
  switch (in.kind) {
  case CN_INIT_ZEROS:
  case CN_INIT_ONES:
  case CN_INIT_CONSTANT: {
    float v = in.kind == CN_INIT_ZEROS ? 0.0f : in.kind == CN_INIT_ONES ? 1.0f : in.a;
    for (int64_t i = 0; i < n; i++) p->data[i] = v;
    return CN_OK;
  }
  case CN_INIT_RANDOM_UNIFORM:
  case CN_INIT_RANDOM_NORMAL:
  case CN_INIT_TRUNCATED_NORMAL:
    fill_random(p->data, n, &in, 0, key);
    return CN_OK;
  case CN_INIT_VARIANCE_SCALING:
    fill_random(p->data, n, &in, variance_scale(&in, &p->shape), key);
    return CN_OK;
  default:
    return cn_fail(CN_ERR_UNSUPPORTED, "%s/%s: initializer %s is not supported", layer, p->name,
                   in.name[0] ? in.name : "?");
  }
}

/* FNV-1a of "<layer>/<param>": the parameter's place in the key, independent of node order. */
static uint64_t name_hash(const char *layer, const char *param) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char *s = layer; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  h = (h ^ '/') * 0x100000001b3ULL;
  for (const char *s = param; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

cn_status cn_graph_init_params(cn_graph *g, uint64_t seed) {
  if (!g->params) return cn_fail(CN_ERR_ARG, "cn_graph_init_params: parameters not allocated");
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_params && n->shares < 0; k++) { /* a shared layer's: drawn once */
      uint64_t key = cn_rng_key(seed, INIT_STREAM, name_hash(n->name, n->params[k].name));
      cn_status st = cn_param_init(&n->params[k], n->name, key);
      if (st != CN_OK) return st;
    }
  }
  g->weights_version++;
  return CN_OK;
}

cn_status cn_model_init_weights(cn_model *m, uint64_t seed) {
  if (!m) return cn_fail(CN_ERR_ARG, "cn_model_init_weights: NULL model");
  cn_status st = cn_graph_init_params(m->graph, seed);
  return st == CN_OK ? CN_OK : cn_fail_context(st, "%s", m->name);
}
