/* The zoo: the table of keras.applications models convnet builds, option checks that follow
 * keras.applications (default and minimum input sizes, allowed alphas), and the dispatch to one
 * builder per family. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "zoo/zoo.h"

/* Larger inputs than this are surely a mistake (and would need gigabytes of activations). */
#define ZOO_MAX_SIDE 4096
#define ZOO_MAX_CLASSES 1000000

typedef struct zoo_entry {
  const char *name;
  zoo_build_fn build;
  int default_size, min_size;
  cn_preprocess preprocess;
  const double *alphas; /* allowed width multipliers (NULL: only 1.0) */
  int n_alphas;
} zoo_entry;

static const double mobilenet_alphas[] = {0.25, 0.5, 0.75, 1.0};
static const double mobilenet_v2_alphas[] = {0.35, 0.5, 0.75, 1.0, 1.3, 1.4};

static const zoo_entry zoo_table[] = {
    {"vgg16", zoo_vgg16, 224, 32, CN_PRE_CAFFE, NULL, 0},
    {"vgg19", zoo_vgg19, 224, 32, CN_PRE_CAFFE, NULL, 0},
    {"inception_v3", zoo_inception_v3, 299, 75, CN_PRE_TF, NULL, 0},
    {"resnet50", zoo_resnet50, 224, 32, CN_PRE_CAFFE, NULL, 0},
    {"mobilenet", zoo_mobilenet, 224, 32, CN_PRE_TF, mobilenet_alphas, 4},
    {"mobilenet_v2", zoo_mobilenet_v2, 224, 32, CN_PRE_TF, mobilenet_v2_alphas, 6},
    {"efficientnet_lite0", zoo_efficientnet_lite0, 224, 32, CN_PRE_TF, NULL, 0},
    {"efficientnet_lite1", zoo_efficientnet_lite1, 240, 32, CN_PRE_TF, NULL, 0},
    {"efficientnet_lite2", zoo_efficientnet_lite2, 260, 32, CN_PRE_TF, NULL, 0},
};
#define ZOO_COUNT ((int)(sizeof zoo_table / sizeof zoo_table[0]))

/* Families whose reference accuracy needs a resize and central crop other than the default
 * (nearest, no crop): the EfficientNet-Lite weights were evaluated on the central 87.5 %. */
static const struct {
  zoo_build_fn build;
  cn_resize resize;
  double crop;
} zoo_crops[] = {
    {zoo_efficientnet_lite0, CN_RESIZE_PIL_BILINEAR, 0.875},
    {zoo_efficientnet_lite1, CN_RESIZE_PIL_BILINEAR, 0.875},
    {zoo_efficientnet_lite2, CN_RESIZE_PIL_BILINEAR, 0.875},
};

static const char *const zoo_names[ZOO_COUNT + 1] = {"vgg16",
                                                     "vgg19",
                                                     "inception_v3",
                                                     "resnet50",
                                                     "mobilenet",
                                                     "mobilenet_v2",
                                                     "efficientnet_lite0",
                                                     "efficientnet_lite1",
                                                     "efficientnet_lite2",
                                                     NULL};

const char *const *cn_zoo_names(void) {
  return zoo_names;
}

static const zoo_entry *find_entry(const char *name) {
  for (int i = 0; i < ZOO_COUNT; i++)
    if (strcmp(zoo_table[i].name, name) == 0) return &zoo_table[i];
  return NULL;
}

static cn_status check_alpha(const zoo_entry *e, float requested, double *alpha) {
  if (requested == 0.0f) requested = 1.0f;
  if (!e->alphas) {
    *alpha = 1.0;
    if (requested == 1.0f) return CN_OK;
    return cn_fail(CN_ERR_ARG, "%s: alpha applies only to mobilenet and mobilenet_v2", e->name);
  }
  for (int i = 0; i < e->n_alphas; i++) {
    if (fabs(requested - e->alphas[i]) < 1e-6) {
      *alpha = e->alphas[i]; /* the exact double Keras computes with */
      return CN_OK;
    }
  }
  char list[96] = "";
  for (int i = 0; i < e->n_alphas; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%g", i ? ", " : "", e->alphas[i]);
  return cn_fail(CN_ERR_ARG, "%s: alpha %g not available (one of %s)", e->name, requested, list);
}

static cn_status check_size(const zoo_entry *e, int requested, const char *what, int *out) {
  *out = requested ? requested : e->default_size;
  if (requested < 0 || *out < e->min_size)
    return cn_fail(CN_ERR_ARG, "%s: input %s %d is below the minimum %d", e->name, what, requested,
                   e->min_size);
  if (*out > ZOO_MAX_SIDE)
    return cn_fail(CN_ERR_LIMIT, "%s: input %s %d exceeds %d", e->name, what, requested,
                   ZOO_MAX_SIDE);
  return CN_OK;
}

static cn_status check_top(const zoo_entry *e, const cn_zoo_options *o, zoo_config *c) {
  c->include_top = !o->no_top;
  c->pooling = ZOO_POOL_NONE;
  if (o->pooling && c->include_top)
    return cn_fail(CN_ERR_ARG, "%s: pooling applies only without the top (no_top)", e->name);
  if (o->pooling && strcmp(o->pooling, "avg") == 0)
    c->pooling = ZOO_POOL_AVG;
  else if (o->pooling && strcmp(o->pooling, "max") == 0)
    c->pooling = ZOO_POOL_MAX;
  else if (o->pooling)
    return cn_fail(CN_ERR_ARG, "%s: pooling '%s' unknown (avg or max)", e->name, o->pooling);
  c->classes = o->classes ? o->classes : 1000;
  if (o->classes && !c->include_top)
    return cn_fail(CN_ERR_ARG, "%s: classes applies only with the top", e->name);
  if (c->classes < 1 || c->classes > ZOO_MAX_CLASSES)
    return cn_fail(CN_ERR_ARG, "%s: classes %d out of range 1..%d", e->name, o->classes,
                   ZOO_MAX_CLASSES);
  return CN_OK;
}

static cn_status check_options(const zoo_entry *e, const cn_zoo_options *o, zoo_config *c) {
  cn_status st = check_top(e, o, c);
  if (st == CN_OK) st = check_size(e, o->height, "height", &c->height);
  if (st == CN_OK) st = check_size(e, o->width, "width", &c->width);
  if (st == CN_OK) st = check_alpha(e, o->alpha, &c->alpha);
  return st;
}

/* The name Keras gives the model (mobilenet_1.00_224, mobilenetv2_0.35_224, resnet50...). */
static void model_name(const zoo_entry *e, const zoo_config *c, char *buf, size_t cap) {
  if (e->build == zoo_mobilenet)
    snprintf(buf, cap, "mobilenet_%.2f_%d", c->alpha, c->height);
  else if (e->build == zoo_mobilenet_v2)
    snprintf(buf, cap, "mobilenetv2_%.2f_%d", c->alpha, c->height);
  else
    snprintf(buf, cap, "%s", e->name);
}

cn_status cn_zoo_build(const cn_zoo_options *options, cn_model **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_zoo_build: NULL output");
  *out = NULL;
  if (!options || !options->name) return cn_fail(CN_ERR_ARG, "cn_zoo_build: no model name");
  const zoo_entry *e = find_entry(options->name);
  if (!e)
    return cn_fail(CN_ERR_ARG,
                   "unknown zoo model '%s' (vgg16, vgg19, inception_v3, resnet50, mobilenet, "
                   "mobilenet_v2, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2)",
                   options->name);
  zoo_config config;
  cn_status st = check_options(e, options, &config);
  if (st != CN_OK) return st;
  zoo_builder b = {.g = cn_graph_new(), .status = CN_OK};
  if (!b.g) return CN_ERR_NOMEM;
  e->build(&b, &config);
  if (b.status != CN_OK) {
    cn_graph_free(b.g);
    return cn_fail_context(b.status, "%s", e->name);
  }
  char name[64];
  model_name(e, &config, name, sizeof name);
  cn_shape input = b.g->nodes[b.g->inputs[0]].shape;
  cn_input_spec spec = cn_input_spec_default(&input, e->preprocess);
  for (size_t i = 0; i < sizeof zoo_crops / sizeof zoo_crops[0]; i++) {
    if (zoo_crops[i].build != e->build) continue;
    spec.resize = zoo_crops[i].resize;
    spec.crop = zoo_crops[i].crop;
  }
  return cn_model_wrap(b.g, name, &spec, out);
}
