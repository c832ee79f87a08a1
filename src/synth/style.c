/* Style transfer (Gatys, Ecker and Bethge, "Image Style Transfer Using Convolutional Neural
 * Networks", 2016): L-BFGS on the input from the content image, content loss on one layer, style
 * loss on the Gram matrices of several, optional total variation (include/convnet/synth.h). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "synth/synth.h"

cn_style_options cn_style_options_default(void) {
  cn_style_options o = {.content_weight = 1.0, .style_weight = 1e4, .iterations = 200};
  for (int k = 0; k < CN_SYNTH_MAX_LAYERS; k++) o.layer_weights[k] = 1.0;
  return o;
}

/* Layer names of the feature networks convnet knows: content, then style layers. */
typedef struct known_layers {
  const char *probe; /* a layer only this family has */
  const char *content;
  const char *style[5];
} known_layers;

static const known_layers KNOWN[] = {
    {"block5_conv4",
     "block4_conv2",
     {"block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"}},
    {"block1_conv1",
     "block4_conv2",
     {"block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"}},
    {"_blocks.0._bn2",
     "_blocks.4._bn2",
     {"_bn0", "_blocks.1._bn2", "_blocks.3._bn2", "_blocks.5._bn2", NULL}},
    {"conv_pw_1_relu",
     "conv_pw_5_relu",
     {"conv1_relu", "conv_pw_2_relu", "conv_pw_4_relu", "conv_pw_6_relu", NULL}},
};

cn_status cn_synth_default_layers(const cn_model *model, const char **content_layer,
                                  const char **style_layers, int *n) {
  if (!model || !content_layer || !style_layers || !n)
    return cn_fail(CN_ERR_ARG, "cn_synth_default_layers: NULL");
  for (size_t i = 0; i < sizeof KNOWN / sizeof *KNOWN; i++) {
    if (cn_graph_find(model->graph, KNOWN[i].probe) < 0) continue;
    *content_layer = KNOWN[i].content;
    *n = 0;
    for (int k = 0; k < 5 && KNOWN[i].style[k]; k++) style_layers[(*n)++] = KNOWN[i].style[k];
    return CN_OK;
  }
  return cn_fail(CN_ERR_ARG,
                 "%s: no default feature layers for this model (VGG, EfficientNet-Lite and "
                 "MobileNet have them): name the layers",
                 cn_model_name(model));
}

typedef struct style_run {
  synth_net net;
  const cn_style_options *o;
  int n_style; /* net.layer[0..n_style) are the style layers, net.layer[n_style] the content */
  float *gram[CN_SYNTH_MAX_LAYERS], *dgram;
  float *target_gram[CN_SYNTH_MAX_LAYERS];
  float *content;
  double content_loss, style_loss, tv_loss;
} style_run;

/* G = F^T F / (H W C) of a layer's output. */
static void gram_of(const synth_layer *l, const float *f, float *g) {
  int positions = l->height * l->width, c = l->channels;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c, c, positions, 1.0f / (float)l->numel, f,
              c, f, c, 0.0f, g, c);
}

static cn_status style_objective(void *ctx, const float *x, float *dx, double *value) {
  style_run *s = ctx;
  const cn_style_options *o = s->o;
  cn_status st = synth_net_forward(&s->net, x);
  if (st != CN_OK) return st;
  double style = 0.0;
  for (int k = 0; k < s->n_style; k++) {
    synth_layer *l = &s->net.layer[k];
    int c = l->channels, positions = l->height * l->width;
    gram_of(l, l->out, s->gram[k]);
    double sum = 0.0, w = o->style_weight * o->layer_weights[k];
    size_t cc = (size_t)c * c;
    for (size_t i = 0; i < cc; i++) {
      double d = (double)s->gram[k][i] - s->target_gram[k][i];
      sum += d * d;
      /* d (w mean(d^2)) / dG = 2 w d / C^2; d/dF = F (dG + dG^T) / (HWC) = 2 F dG / (HWC) */
      s->dgram[i] = (float)(2.0 * w * d / (double)cc);
    }
    style += w * sum / (double)cc;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, positions, c, c, 2.0f / (float)l->numel,
                l->out, c, s->dgram, c, 0.0f, l->grad, c);
  }
  synth_layer *cl = &s->net.layer[s->n_style];
  double content = 0.0;
  for (size_t i = 0; i < cl->numel; i++) {
    double d = (double)cl->out[i] - s->content[i];
    content += d * d;
    cl->grad[i] = (float)(2.0 * o->content_weight * d / (double)cl->numel);
  }
  content = o->content_weight * content / (double)cl->numel;
  st = synth_net_backward(&s->net, NULL, dx);
  if (st != CN_OK) return st;
  double tv = 0.0;
  if (o->tv_weight > 0.0)
    tv = o->tv_weight * synth_tv(x, s->net.height, s->net.width, o->tv_weight, dx);
  s->content_loss = content;
  s->style_loss = style;
  s->tv_loss = tv;
  *value = content + style + tv;
  return CN_OK;
}

static cn_status check_options(const cn_model *model, const cn_style_options *o) {
  if (o->n_style_layers < 1 || o->n_style_layers > CN_SYNTH_MAX_LAYERS)
    return cn_fail(CN_ERR_ARG, "%s: %d style layers (1 to %d)", cn_model_name(model),
                   o->n_style_layers, CN_SYNTH_MAX_LAYERS);
  if (!o->content_layer) return cn_fail(CN_ERR_ARG, "%s: no content layer", cn_model_name(model));
  if (o->iterations < 0 || o->iterations > 100000 || !(o->content_weight >= 0.0) ||
      !(o->style_weight >= 0.0) || !(o->tv_weight >= 0.0))
    return cn_fail(CN_ERR_ARG, "cn_style_transfer: an option is out of range");
  for (int k = 0; k < o->n_style_layers; k++)
    if (!(o->layer_weights[k] >= 0.0))
      return cn_fail(CN_ERR_ARG, "cn_style_transfer: a layer weight is out of range");
  return CN_OK;
}

static cn_status style_targets(style_run *s, const cn_image *content, const cn_image *style,
                               float *x) {
  synth_to_input(&s->net, style, x);
  cn_status st = synth_net_forward(&s->net, x);
  for (int k = 0; st == CN_OK && k < s->n_style; k++)
    gram_of(&s->net.layer[k], s->net.layer[k].out, s->target_gram[k]);
  synth_to_input(&s->net, content, x);
  if (st == CN_OK) st = synth_net_forward(&s->net, x);
  if (st == CN_OK)
    memcpy(s->content, s->net.layer[s->n_style].out,
           s->net.layer[s->n_style].numel * sizeof(float));
  return st;
}

static cn_status style_buffers(style_run *s) {
  size_t most = 0;
  for (int k = 0; k < s->n_style; k++) {
    size_t cc = (size_t)s->net.layer[k].channels * s->net.layer[k].channels;
    most = cc > most ? cc : most;
    s->gram[k] = malloc(cc * sizeof(float));
    s->target_gram[k] = malloc(cc * sizeof(float));
    if (!s->gram[k] || !s->target_gram[k]) return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  s->dgram = malloc(most * sizeof(float));
  s->content = malloc(s->net.layer[s->n_style].numel * sizeof(float));
  if (!s->dgram || !s->content) return cn_fail(CN_ERR_NOMEM, "out of memory");
  return CN_OK;
}

static void style_free(style_run *s) {
  for (int k = 0; k < s->n_style; k++) {
    free(s->gram[k]);
    free(s->target_gram[k]);
  }
  free(s->dgram);
  free(s->content);
  synth_net_close(&s->net);
}

static cn_status style_open(cn_model *model, const cn_image *content, const cn_image *style,
                            const cn_style_options *o, style_run *s, float **x) {
  *x = NULL;
  cn_status st = check_options(model, o);
  if (st != CN_OK) return st;
  *s = (style_run){.o = o, .n_style = o->n_style_layers};
  const char *names[CN_SYNTH_MAX_LAYERS + 1];
  for (int k = 0; k < s->n_style; k++) names[k] = o->style_layers[k];
  names[s->n_style] = o->content_layer;
  st = synth_net_open(model, names, s->n_style + 1, &s->net);
  if (st != CN_OK) return st;
  st = synth_check_size(&s->net, content, "the content image");
  if (st == CN_OK) st = synth_check_size(&s->net, style, "the style image");
  if (st == CN_OK) st = style_buffers(s);
  if (st == CN_OK) *x = malloc(s->net.numel * sizeof **x);
  if (st == CN_OK && !*x) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = style_targets(s, content, style, *x);
  return st;
}

cn_status cn_style_transfer(cn_model *model, const cn_image *content, const cn_image *style,
                            const cn_style_options *o, cn_image *out, cn_synth_result *result) {
  if (!model || !content || !style || !o || !out || !result)
    return cn_fail(CN_ERR_ARG, "cn_style_transfer: NULL");
  memset(result, 0, sizeof *result);
  memset(out, 0, sizeof *out);
  style_run s = {0};
  float *x;
  cn_status st = style_open(model, content, style, o, &s, &x);
  synth_lbfgs l = {style_objective, &s, o->iterations, 1, 1, o->progress, o->user};
  if (st == CN_OK) st = synth_minimise(&l, x, s.net.numel, result);
  if (st == CN_OK) {
    result->content_loss = s.content_loss;
    result->style_loss = s.style_loss;
    result->tv_loss = s.tv_loss;
    st = synth_to_image(&s.net, x, out);
  }
  free(x);
  style_free(&s);
  return st;
}

cn_status cn_style_objective(cn_model *model, const cn_image *content, const cn_image *style,
                             const cn_style_options *o, const float *x, double *loss, float *grad) {
  if (!model || !content || !style || !o || !loss || !grad)
    return cn_fail(CN_ERR_ARG, "cn_style_objective: NULL");
  style_run s = {0};
  float *start;
  cn_status st = style_open(model, content, style, o, &s, &start);
  if (st == CN_OK) st = style_objective(&s, x ? x : start, grad, loss);
  free(start);
  style_free(&s);
  return st;
}
