/* The feature network of style transfer and analogies (synth_net), pixel <-> input conversions,
 * total variation and the L-BFGS driver. */
#include <lbfgs.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "ops/ops.h"
#include "synth/synth.h"

static cn_status find_layer(const cn_model *model, const char *name, synth_layer *l) {
  const cn_graph *g = model->graph;
  int i = name ? cn_graph_find(g, name) : -1;
  if (i < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%.64s\"", cn_model_name(model),
                   name ? name : "");
  const cn_node *n = &g->nodes[i];
  if (n->op == &cn_op_input)
    return cn_fail(CN_ERR_ARG, "%s: layer %s is the input, not a feature layer",
                   cn_model_name(model), n->name);
  if (n->shape.rank != 3 || n->shape.dim[0] * n->shape.dim[1] < 2)
    return cn_fail(CN_ERR_ARG,
                   "%s: layer %s (%s) is not spatial: its output is not height x width x "
                   "channels with more than one position",
                   cn_model_name(model), n->name, n->type);
  l->node = i;
  l->height = (int)n->shape.dim[0];
  l->width = (int)n->shape.dim[1];
  l->channels = (int)n->shape.dim[2];
  l->numel = (size_t)cn_shape_numel(&n->shape);
  return CN_OK;
}

static cn_status input_geometry(const cn_model *model, synth_net *net) {
  const cn_graph *g = model->graph;
  if (cn_model_input_count(model) != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: %d inputs; this needs a model of one image input",
                   cn_model_name(model), cn_model_input_count(model));
  const cn_node *in = &g->nodes[g->inputs[0]];
  cn_input_spec spec = cn_model_input_spec(model);
  if (in->shape.rank != 3 || in->shape.dim[2] != 3 || spec.channels_first)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: the input is not a height x width x 3 image",
                   cn_model_name(model));
  net->height = (int)in->shape.dim[0];
  net->width = (int)in->shape.dim[1];
  net->numel = (size_t)net->height * net->width * 3;
  /* The preprocessing is per-channel affine, possibly reordering channels (caffe's BGR). */
  float probe[12] = {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255};
  cn_preprocess_apply(spec.preprocess, probe, 4);
  for (int c = 0; c < 3; c++) {
    net->offset[c] = probe[c];
    net->source[c] = c;
    net->scale[c] = 1.0f;
    for (int j = 0; j < 3; j++) {
      float d = probe[3 * (j + 1) + c] - probe[c];
      if (d != 0.0f) {
        net->source[c] = j;
        net->scale[c] = d / 255.0f;
      }
    }
  }
  return CN_OK;
}

cn_status synth_net_open(cn_model *model, const char *const *layers, int n, synth_net *net) {
  memset(net, 0, sizeof *net);
  if (n < 0 || n > CN_SYNTH_MAX_LAYERS + 1)
    return cn_fail(CN_ERR_ARG, "%s: %d feature layers (0 to %d)", cn_model_name(model), n,
                   CN_SYNTH_MAX_LAYERS + 1);
  cn_status st = input_geometry(model, net);
  if (st != CN_OK || n == 0) return st; /* no layers: the input's geometry only */
  for (int k = 0; st == CN_OK && k < n; k++) st = find_layer(model, layers[k], &net->layer[k]);
  if (st != CN_OK) return st;
  net->n = n;
  /* Outputs: the deepest layer first (backward starts there and reaches the others), each node
   * once. */
  int outputs[CN_SYNTH_MAX_LAYERS + 1], n_out = 0, deepest = 0;
  for (int k = 1; k < n; k++)
    if (net->layer[k].node > net->layer[deepest].node) deepest = k;
  outputs[n_out++] = net->layer[deepest].node;
  for (int k = 0; k < n; k++) {
    int seen = 0;
    for (int j = 0; j < n_out; j++) seen |= outputs[j] == net->layer[k].node;
    if (!seen) outputs[n_out++] = net->layer[k].node;
  }
  cn_graph *cut;
  st = cn_graph_clone(model->graph, &cut);
  if (st != CN_OK) return st;
  for (int i = 0; i < cut->n_nodes; i++) cut->nodes[i].trainable = 0;
  st = cn_graph_set_outputs(cut, outputs, n_out);
  cn_trainer_options o = {.max_batch = 1, .input_grad = 1, .keep_output_activation = 1};
  if (st == CN_OK) st = cn_trainer_new(cut, &o, &net->t);
  cn_graph_free(cut);
  for (int k = 0; st == CN_OK && k < n; k++) {
    net->layer[k].grad = calloc(net->layer[k].numel, sizeof(float));
    if (!net->layer[k].grad) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  if (st != CN_OK) synth_net_close(net);
  return st;
}

void synth_net_close(synth_net *net) {
  cn_trainer_free(net->t);
  for (int k = 0; k < net->n; k++) free(net->layer[k].grad);
  memset(net, 0, sizeof *net);
}

cn_status synth_net_forward(synth_net *net, const float *x) {
  const float *out;
  cn_status st = cn_trainer_forward(net->t, 1, x, 0, 0, &out);
  for (int k = 0; st == CN_OK && k < net->n; k++) {
    net->layer[k].out = cn_trainer_node_output(net->t, net->layer[k].node);
    if (!net->layer[k].out) st = cn_fail(CN_ERR_ARG, "a feature layer was not computed");
  }
  return st;
}

cn_status synth_net_backward(synth_net *net, const int *use, float *dx) {
  int nodes[CN_SYNTH_MAX_LAYERS + 1], m = 0;
  const float *grads[CN_SYNTH_MAX_LAYERS + 1];
  for (int k = 0; k < net->n; k++)
    if (!use || use[k]) {
      nodes[m] = net->layer[k].node;
      grads[m++] = net->layer[k].grad;
    }
  cn_status st = cn_trainer_backward_seeds(net->t, m, nodes, grads);
  const float *g = st == CN_OK ? cn_trainer_input_grad(net->t) : NULL;
  if (st == CN_OK && !g) return cn_fail(CN_ERR_ARG, "no gradient reaches the input");
  if (st == CN_OK) memcpy(dx, g, net->numel * sizeof *dx);
  return st;
}

/* ---- pixels <-> input ---------------------------------------------------------------------- */

void synth_pixels_to_input(const synth_net *net, const float *rgb, float *x) {
  size_t pixels = net->numel / 3;
  for (size_t p = 0; p < pixels; p++)
    for (int c = 0; c < 3; c++)
      x[3 * p + c] = net->scale[c] * rgb[3 * p + net->source[c]] + net->offset[c];
}

void synth_to_input(const synth_net *net, const cn_image *image, float *x) {
  size_t pixels = net->numel / 3;
  for (size_t p = 0; p < pixels; p++)
    for (int c = 0; c < 3; c++)
      x[3 * p + c] = net->scale[c] * image->pixels[3 * p + net->source[c]] + net->offset[c];
}

void synth_input_to_rgb(const synth_net *net, const float *x, float *rgb) {
  size_t pixels = net->numel / 3;
  for (size_t p = 0; p < pixels; p++)
    for (int c = 0; c < 3; c++)
      rgb[3 * p + net->source[c]] = (x[3 * p + c] - net->offset[c]) / net->scale[c];
}

cn_status synth_to_image(const synth_net *net, const float *x, cn_image *out) {
  size_t pixels = net->numel / 3;
  out->width = net->width;
  out->height = net->height;
  out->pixels = malloc(net->numel);
  if (!out->pixels) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (size_t p = 0; p < pixels; p++)
    for (int c = 0; c < 3; c++) {
      float v = (x[3 * p + c] - net->offset[c]) / net->scale[c];
      v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
      out->pixels[3 * p + net->source[c]] = (uint8_t)lrintf(v);
    }
  return CN_OK;
}

cn_status synth_check_size(const synth_net *net, const cn_image *image, const char *what) {
  if (!image || !image->pixels) return cn_fail(CN_ERR_ARG, "%s: no image", what);
  if (image->width != net->width || image->height != net->height)
    return cn_fail(CN_ERR_ARG, "%s is %dx%d; the model's input is %dx%d", what, image->width,
                   image->height, net->width, net->height);
  return CN_OK;
}

double synth_tv(const float *x, int height, int width, double weight, float *dx) {
  double sv = 0.0, sh = 0.0;
  double nv = (double)(height - 1) * width * 3, nh = (double)height * (width - 1) * 3;
  for (int y = 0; y < height; y++)
    for (int xx = 0; xx < width; xx++)
      for (int c = 0; c < 3; c++) {
        size_t i = ((size_t)y * width + xx) * 3 + c;
        if (y + 1 < height && nv > 0) {
          size_t j = i + (size_t)width * 3;
          double d = (double)x[j] - x[i];
          sv += d * d;
          if (dx) {
            dx[j] += (float)(weight * 2.0 * d / nv);
            dx[i] -= (float)(weight * 2.0 * d / nv);
          }
        }
        if (xx + 1 < width && nh > 0) {
          size_t j = i + 3;
          double d = (double)x[j] - x[i];
          sh += d * d;
          if (dx) {
            dx[j] += (float)(weight * 2.0 * d / nh);
            dx[i] -= (float)(weight * 2.0 * d / nh);
          }
        }
      }
  return (nv > 0 ? sv / nv : 0.0) + (nh > 0 ? sh / nh : 0.0);
}

/* ---- L-BFGS -------------------------------------------------------------------------------- */

typedef struct lbfgs_run {
  const synth_lbfgs *l;
  cn_synth_result *r;
  float *x, *g;
  size_t n;
  cn_status st;
} lbfgs_run;

static lbfgsfloatval_t evaluate(void *instance, const lbfgsfloatval_t *x, lbfgsfloatval_t *g,
                                const int n, const lbfgsfloatval_t step) {
  lbfgs_run *run = instance;
  if (run->st != CN_OK) { /* stop: a flat objective ends the line search */
    memset(g, 0, (size_t)n * sizeof *g);
    return 0.0;
  }
  for (size_t i = 0; i < run->n; i++) run->x[i] = (float)x[i];
  double value = 0.0;
  run->st = run->l->f(run->l->ctx, run->x, run->g, &value);
  run->r->evaluations++;
  for (size_t i = 0; i < run->n; i++) g[i] = run->g[i];
  return value;
}

static int progress(void *instance, const lbfgsfloatval_t *x, const lbfgsfloatval_t *g,
                    const lbfgsfloatval_t fx, const lbfgsfloatval_t xnorm,
                    const lbfgsfloatval_t gnorm, const lbfgsfloatval_t step, int n, int k, int ls) {
  lbfgs_run *run = instance;
  run->r->iterations++;
  run->r->loss = fx;
  if (run->l->progress) {
    cn_synth_progress p = {k, run->l->iterations, run->l->stage, run->l->stages, fx};
    run->l->progress(&p, run->l->user);
  }
  return run->st != CN_OK;
}

cn_status synth_minimise(const synth_lbfgs *l, float *x, size_t n, cn_synth_result *r) {
  lbfgsfloatval_t *xd = lbfgs_malloc((int)n);
  float *g = malloc(n * sizeof *g);
  if (!xd || !g) {
    lbfgs_free(xd);
    free(g);
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) xd[i] = x[i];
  lbfgs_run run = {l, r, x, g, n, CN_OK};
  lbfgs_parameter_t param;
  lbfgs_parameter_init(&param);
  param.max_iterations = l->iterations;
  param.epsilon = 1e-12; /* run the iterations asked for */
  param.m = 6;
  lbfgsfloatval_t fx = 0.0;
  double start = 0.0;
  cn_status st = l->f(l->ctx, x, g, &start);
  r->evaluations++;
  if (r->initial_loss == 0.0) r->initial_loss = start;
  if (st == CN_OK && l->iterations > 0) {
    r->lbfgs_status = lbfgs((int)n, xd, &fx, evaluate, progress, &run, &param);
    st = run.st;
    /* liblbfgs keeps the best point in xd */
    for (size_t i = 0; i < n; i++) x[i] = (float)xd[i];
  }
  if (st == CN_OK) {
    double end = 0.0;
    st = l->f(l->ctx, x, g, &end);
    r->loss = end;
  }
  lbfgs_free(xd);
  free(g);
  return st;
}
