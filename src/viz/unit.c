/* Activation maximisation (cn_activation_maximise): gradient ascent on the input of a frozen copy
 * of the model.
 *
 * How the gradient is obtained: the trainer starts backward at its graph's first output, so the
 * copy's output is set to the chosen layer (cn_graph_set_outputs); the layers after it are then
 * not run at all, and backward seeded with d objective / d layer output (1 / positions at the
 * unit's channel, 0 elsewhere) yields d objective / d input (input_grad). The final softmax is
 * kept (keep_output_activation) so that a layer that happens to be one is maximised as it is. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/viz.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/trainer.h"
#include "viz/draw.h"

enum { STREAM_NOISE = 0x756e6974, STREAM_JITTER = 0x6a697474 };

cn_unit_options cn_unit_options_default(void) {
  cn_unit_options o = {.steps = 150,
                       .lr = 0.005f,
                       .jitter = 4,
                       .blur_every = 4,
                       .blur_sigma = 0.5f,
                       .decay = 0.001f,
                       .noise = 0.02f,
                       .seed = 1};
  return o;
}

/* The input image's layout and valid range. */
typedef struct unit_image {
  viz_input_geometry geo;
  size_t n;
  float *x, *shifted, *grad, *tmp;
} unit_image;

typedef struct unit_run {
  cn_trainer *t;
  int node;
  int64_t positions, channels;
  float *seed_grad; /* d objective / d layer output */
} unit_run;

static cn_status check_options(const cn_model *model, const cn_unit_options *o) {
  if (!o->layer) return cn_fail(CN_ERR_ARG, "%s: no layer given", cn_model_name(model));
  if (o->steps < 0 || o->steps > 100000 || !(o->lr >= 0.0f) || o->jitter < 0 || o->blur_every < 0 ||
      !(o->blur_sigma >= 0.0f) || !(o->decay >= 0.0f && o->decay < 1.0f) || !(o->noise >= 0.0f))
    return cn_fail(CN_ERR_ARG, "cn_activation_maximise: an option is out of range");
  return CN_OK;
}

static cn_status find_unit_layer(const cn_model *model, const cn_unit_options *o, int *node,
                                 int64_t *channels) {
  const cn_graph *g = model->graph;
  int i = cn_graph_find(g, o->layer);
  if (i < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%.64s\"", cn_model_name(model), o->layer);
  const cn_node *n = &g->nodes[i];
  if (n->op == &cn_op_input)
    return cn_fail(CN_ERR_ARG, "%s: layer %s is the input, not a unit to maximise",
                   cn_model_name(model), n->name);
  if (n->shape.rank < 1)
    return cn_fail(CN_ERR_ARG, "%s: layer %s has a scalar output", cn_model_name(model), n->name);
  *channels = n->shape.dim[n->shape.rank - 1];
  if (o->unit < 0 || o->unit >= *channels)
    return cn_fail(CN_ERR_ARG, "%s: unit %d is out of range: layer %s has %lld units (0 to %lld)",
                   cn_model_name(model), o->unit, n->name, (long long)*channels,
                   (long long)*channels - 1);
  *node = i;
  return CN_OK;
}

/* A frozen copy whose output is the layer (see the comment at the top). */
static cn_status cut_trainer(const cn_model *model, int node, cn_trainer **out) {
  if (cn_model_input_count(model) != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %d inputs; this needs a model of one image input",
                   cn_model_name(model), cn_model_input_count(model));
  cn_graph *cut;
  cn_status st = cn_graph_clone(model->graph, &cut);
  if (st != CN_OK) return st;
  for (int i = 0; i < cut->n_nodes; i++) cut->nodes[i].trainable = 0;
  st = cn_graph_set_outputs(cut, &node, 1);
  cn_trainer_options o = {.max_batch = 1, .input_grad = 1, .keep_output_activation = 1};
  if (st == CN_OK) st = cn_trainer_new(cut, &o, out);
  cn_graph_free(cut);
  return st;
}

static cn_status run_open(cn_model *model, const cn_unit_options *o, unit_run *run) {
  cn_status st = find_unit_layer(model, o, &run->node, &run->channels);
  if (st == CN_OK) st = cut_trainer(model, run->node, &run->t);
  if (st != CN_OK) return st;
  int64_t numel = cn_shape_numel(&model->graph->nodes[run->node].shape);
  run->positions = numel / run->channels;
  run->seed_grad = calloc((size_t)numel, sizeof *run->seed_grad);
  if (!run->seed_grad) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t p = 0; p < run->positions; p++)
    run->seed_grad[p * run->channels + o->unit] = 1.0f / (float)run->positions;
  return CN_OK;
}

static void run_close(unit_run *run) {
  cn_trainer_free(run->t);
  free(run->seed_grad);
}

/* The objective for input x; with grad != NULL also d objective / d x into grad. */
static cn_status objective(unit_run *run, const cn_unit_options *o, const float *x, size_t n,
                           float *value, float *grad) {
  const float *out;
  cn_status st = cn_trainer_forward(run->t, 1, x, 0, 0, &out);
  if (st != CN_OK) return st;
  double sum = 0.0;
  for (int64_t p = 0; p < run->positions; p++) sum += out[p * run->channels + o->unit];
  *value = (float)(sum / (double)run->positions);
  if (!grad) return CN_OK;
  st = cn_trainer_backward(run->t, run->seed_grad);
  const float *g = st == CN_OK ? cn_trainer_input_grad(run->t) : NULL;
  if (st == CN_OK && !g) return cn_fail(CN_ERR_ARG, "no gradient reaches the input");
  if (st == CN_OK) memcpy(grad, g, n * sizeof *grad);
  return st;
}

/* ---- image operations ---------------------------------------------------------------------- */

static size_t at(const viz_input_geometry *g, int y, int x, int c) {
  if (g->channels_first) return ((size_t)c * g->height + y) * g->width + x;
  return ((size_t)y * g->width + x) * g->channels + c;
}

static int wrap(int v, int n) {
  return ((v % n) + n) % n;
}

/* dst(y, x) = src(y - dy, x - dx), circularly. */
static void roll(const viz_input_geometry *g, const float *src, float *dst, int dx, int dy) {
  for (int y = 0; y < g->height; y++)
    for (int x = 0; x < g->width; x++)
      for (int c = 0; c < g->channels; c++)
        dst[at(g, y, x, c)] = src[at(g, wrap(y - dy, g->height), wrap(x - dx, g->width), c)];
}

/* One pass of a 1-D Gaussian along x (horizontal) or y, edges repeated. */
static void blur_pass(const viz_input_geometry *g, const float *src, float *dst, const float *k,
                      int radius, int horizontal) {
  for (int y = 0; y < g->height; y++)
    for (int x = 0; x < g->width; x++)
      for (int c = 0; c < g->channels; c++) {
        float sum = 0.0f;
        for (int d = -radius; d <= radius; d++) {
          int sx = horizontal ? x + d : x, sy = horizontal ? y : y + d;
          sx = sx < 0 ? 0 : sx >= g->width ? g->width - 1 : sx;
          sy = sy < 0 ? 0 : sy >= g->height ? g->height - 1 : sy;
          sum += k[d + radius] * src[at(g, sy, sx, c)];
        }
        dst[at(g, y, x, c)] = sum;
      }
}

static void blur(unit_image *im, float sigma) {
  enum { MAX_RADIUS = 8 };
  int radius = (int)ceilf(3.0f * sigma);
  radius = radius > MAX_RADIUS ? MAX_RADIUS : radius;
  if (radius < 1) return;
  float k[2 * MAX_RADIUS + 1], total = 0.0f;
  for (int d = -radius; d <= radius; d++)
    total += k[d + radius] = expf(-(float)(d * d) / (2.0f * sigma * sigma));
  for (int d = 0; d <= 2 * radius; d++) k[d] /= total;
  blur_pass(&im->geo, im->x, im->tmp, k, radius, 1);
  blur_pass(&im->geo, im->tmp, im->x, k, radius, 0);
}

static int channel_of(const viz_input_geometry *g, size_t i) {
  return (int)(g->channels_first ? i / ((size_t)g->height * g->width) : i % g->channels);
}

static void decay_and_clip(unit_image *im, float decay) {
  const viz_input_geometry *g = &im->geo;
  for (size_t i = 0; i < im->n; i++) {
    int c = channel_of(g, i);
    float mid = 0.5f * (g->low[c] + g->high[c]);
    float v = mid + (im->x[i] - mid) * (1.0f - decay);
    im->x[i] = v < g->low[c] ? g->low[c] : v > g->high[c] ? g->high[c] : v;
  }
}

/* x += lr * range * g / rms(g): a step of the same size whatever the gradient's scale. The rms,
 * not the mean of |g|, keeps the few pixels of a heavy-tailed gradient from overshooting (a ReLU
 * unit pushed below zero everywhere has no gradient left to come back with). */
static void ascend(unit_image *im, float lr) {
  double rms = 0.0;
  for (size_t i = 0; i < im->n; i++) rms += (double)im->grad[i] * im->grad[i];
  rms = sqrt(rms / (double)im->n);
  if (!(rms > 0.0)) return;
  float step = (float)(lr * im->geo.range / rms);
  for (size_t i = 0; i < im->n; i++) im->x[i] += step * im->grad[i];
}

static void start_noise(unit_image *im, const cn_unit_options *o) {
  uint64_t key = cn_rng_key(o->seed, STREAM_NOISE, 0);
  for (size_t i = 0; i < im->n; i++) {
    int c = channel_of(&im->geo, i);
    float mid = 0.5f * (im->geo.low[c] + im->geo.high[c]);
    im->x[i] = mid + o->noise * im->geo.range * cn_rng_normal_at(key, i);
  }
  decay_and_clip(im, 0.0f);
}

static cn_status image_open(const cn_model *model, unit_image *im) {
  cn_status st = viz_input_geometry_of(model, &im->geo);
  if (st != CN_OK) return st;
  im->n = (size_t)im->geo.height * im->geo.width * im->geo.channels;
  float *block = malloc(4 * im->n * sizeof *block);
  if (!block) return cn_fail(CN_ERR_NOMEM, "out of memory");
  im->x = block;
  im->shifted = block + im->n;
  im->grad = block + 2 * im->n;
  im->tmp = block + 3 * im->n;
  return CN_OK;
}

/* ---- the ascent ---------------------------------------------------------------------------- */

static cn_status ascent_step(unit_run *run, unit_image *im, const cn_unit_options *o, cn_rng *rng,
                             int step) {
  int span = 2 * o->jitter + 1;
  int dx = (int)cn_rng_below(rng, (uint64_t)span) - o->jitter;
  int dy = (int)cn_rng_below(rng, (uint64_t)span) - o->jitter;
  float value;
  roll(&im->geo, im->x, im->shifted, dx, dy);
  cn_status st = objective(run, o, im->shifted, im->n, &value, im->tmp);
  if (st != CN_OK) return st;
  roll(&im->geo, im->tmp, im->grad, -dx, -dy);
  ascend(im, o->lr);
  if (o->blur_every > 0 && (step + 1) % o->blur_every == 0) blur(im, o->blur_sigma);
  decay_and_clip(im, o->decay);
  return CN_OK;
}

static cn_status ascend_all(unit_run *run, unit_image *im, const cn_unit_options *o,
                            cn_unit_result *r) {
  start_noise(im, o);
  cn_status st = objective(run, o, im->x, im->n, &r->start, NULL);
  cn_rng rng = cn_rng_make(cn_rng_key(o->seed, STREAM_JITTER, 0));
  for (int s = 0; st == CN_OK && s < o->steps; s++) st = ascent_step(run, im, o, &rng, s);
  if (st == CN_OK) st = objective(run, o, im->x, im->n, &r->end, NULL);
  r->steps = o->steps;
  return st;
}

cn_status cn_activation_maximise(cn_model *model, const cn_unit_options *o, float *image,
                                 cn_unit_result *result) {
  if (!model || !o || !image || !result) return cn_fail(CN_ERR_ARG, "cn_activation_maximise: NULL");
  memset(result, 0, sizeof *result);
  cn_status st = check_options(model, o);
  if (st != CN_OK) return st;
  unit_run run = {0};
  unit_image im = {0};
  st = run_open(model, o, &run);
  if (st == CN_OK) st = image_open(model, &im);
  if (st == CN_OK) st = ascend_all(&run, &im, o, result);
  if (st == CN_OK) {
    memcpy(image, im.x, im.n * sizeof *image);
    result->unit = o->unit;
    result->units = (int)run.channels;
    snprintf(result->layer, sizeof result->layer, "%s", o->layer);
  }
  free(im.x);
  run_close(&run);
  return st;
}
