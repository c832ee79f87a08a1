/* src/synth: images synthesised through a network's input gradients (style transfer, image
 * analogies) with L-BFGS. Calls train/, model/, image/, core/.
 *
 * synth_net: a frozen copy of a model whose outputs are the chosen layers, run forward on one
 * input and backward from gradients seeded at every layer at once (cn_trainer_backward_seeds). */
#ifndef CN_SYNTH_SYNTH_H
#define CN_SYNTH_SYNTH_H

#include "convnet/synth.h"
#include "train/trainer.h"

typedef struct synth_layer {
  int node;
  int height, width, channels;
  size_t numel;
  const float *out; /* the last forward's output */
  float *grad;      /* d loss / d output, filled by the caller before synth_net_backward */
} synth_layer;

typedef struct synth_net {
  cn_trainer *t;
  int n;
  synth_layer layer[CN_SYNTH_MAX_LAYERS + 1];
  int height, width; /* the input, HWC with 3 channels */
  size_t numel;
  /* input[c] = scale[c] * pixel[source[c]] + offset[c]: the model's preprocessing */
  float scale[3], offset[3];
  int source[3];
} synth_net;

/* Opens the net on the named layers (each spatial: rank 3 with more than one position). */
cn_status synth_net_open(cn_model *model, const char *const *layers, int n, synth_net *net);
void synth_net_close(synth_net *net);
/* Forward; sets layer[k].out. */
cn_status synth_net_forward(synth_net *net, const float *x);
/* Backward from layer[k].grad of the layers with use[k] != 0; d loss / d x into dx. */
cn_status synth_net_backward(synth_net *net, const int *use, float *dx);

/* Pixels (0..255, RGB) <-> the model's input space. */
void synth_to_input(const synth_net *net, const cn_image *image, float *x);
void synth_pixels_to_input(const synth_net *net, const float *rgb, float *x);
void synth_input_to_rgb(const synth_net *net, const float *x, float *rgb);
cn_status synth_to_image(const synth_net *net, const float *x, cn_image *out);
cn_status synth_check_size(const synth_net *net, const cn_image *image, const char *what);

/* Total variation mean((x[i+1,j]-x[i,j])^2) + mean((x[i,j+1]-x[i,j])^2) of an H x W x 3 input;
 * adds weight * its gradient to dx. */
double synth_tv(const float *x, int height, int width, double weight, float *dx);

/* liblbfgs on n floats in x (in place): value_and_grad returns the objective and writes its
 * gradient; progress after each iteration. */
typedef cn_status (*synth_objective)(void *ctx, const float *x, float *grad, double *value);
typedef struct synth_lbfgs {
  synth_objective f;
  void *ctx;
  int iterations, stage, stages;
  cn_synth_progress_fn progress;
  void *user;
} synth_lbfgs;
cn_status synth_minimise(const synth_lbfgs *l, float *x, size_t n, cn_synth_result *r);

#endif
