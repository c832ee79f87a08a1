/* convnet: images synthesised by optimising their pixels with L-BFGS (liblbfgs) through a
 * network's gradients to its input: style transfer (Gatys et al. 2016) and image analogies
 * (A : A' :: B : B', Hertzmann et al. 2001, with deep-feature patch matching). The network is a
 * feature extractor only (docs/synthesis.md). */
#ifndef CONVNET_SYNTH_H
#define CONVNET_SYNTH_H

#include "convnet/core.h"
#include "convnet/image.h"
#include "convnet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CN_SYNTH_MAX_LAYERS = 8 };

/* One L-BFGS iteration done: called after each, for a progress bar. */
typedef struct cn_synth_progress {
  int iteration, iterations; /* 1-based, of this stage */
  int stage, stages;         /* 1-based; style transfer has one stage */
  double loss;
} cn_synth_progress;
typedef void (*cn_synth_progress_fn)(const cn_synth_progress *p, void *user);

/* Default layers for the feature networks convnet knows (VGG16/19, EfficientNet-Lite,
 * MobileNet), found by the model's layer names: the content layer and style layers of
 * cn_style_options, coarse to fine as the analogy uses them (n written to *n, at most
 * CN_SYNTH_MAX_LAYERS). Fails naming the model when it is none of them. */
CN_API cn_status cn_synth_default_layers(const cn_model *model, const char **content_layer,
                                         const char **style_layers, int *n);

/* Gatys et al.: x minimises
 *   content_weight * mean((F_c(x) - F_c(content))^2)
 *   + style_weight * sum_l layer_weights[l] * mean((G_l(x) - G_l(style))^2)
 *   + tv_weight * (mean((x[i+1,j] - x[i,j])^2) + mean((x[i,j+1] - x[i,j])^2)),
 * with F_l a layer's output (H x W x C), G_l = F^T F / (H W C) its Gram matrix (C x C), x the
 * model's input (after its preprocessing), starting from the content image. */
typedef struct cn_style_options {
  const char *content_layer;
  const char *style_layers[CN_SYNTH_MAX_LAYERS];
  double layer_weights[CN_SYNTH_MAX_LAYERS];
  int n_style_layers;
  double content_weight, style_weight, tv_weight;
  int iterations; /* L-BFGS iterations */
  cn_synth_progress_fn progress;
  void *user;
} cn_style_options;
/* 200 iterations, content 1, style 1e4 (layer weights 1), tv 0; no layers (set them). */
CN_API cn_style_options cn_style_options_default(void);

typedef struct cn_synth_result {
  double initial_loss, loss;                /* the objective at the start and at the end */
  double content_loss, style_loss, tv_loss; /* the end's terms, weighted */
  int iterations, evaluations;              /* done; forward + backward passes */
  int lbfgs_status;                         /* liblbfgs's return code (0: max iterations...) */
} cn_synth_result;

/* content and style must both be the model's input size (height x width, RGB); out receives
 * the result, the same size (free with cn_image_free). The model must have one image input,
 * each layer a spatial (H x W x C) output that the input reaches. */
CN_API cn_status cn_style_transfer(cn_model *model, const cn_image *content, const cn_image *style,
                                   const cn_style_options *o, cn_image *out,
                                   cn_synth_result *result);

/* The objective above and its gradient at x (the model's input, height x width x 3 after its
 * preprocessing; NULL: the content image), for checks against other implementations. */
CN_API cn_status cn_style_objective(cn_model *model, const cn_image *content, const cn_image *style,
                                    const cn_style_options *o, const float *x, double *loss,
                                    float *grad);

/* Image analogy A : A' :: B : B'. Targets: at the pixel level each pixel of B takes the pixel of
 * A' at the centre of A's best matching patch_size x patch_size patch (least squares on RGB with
 * Gaussian weights of sigma = the patch's radius, at least 1, as Hertzmann et al.'s finest
 * level); at each feature layer each position of B's feature map takes
 * A' 's feature vector at the position of A's best matching 3x3 patch (cosine of the normalised
 * patches). B' starts at the pixel target and minimises
 *   pixel_weight * mean((x - T_0)^2) + feature_weight * sum_l mean((F_l(x) - T_l)^2)
 *   + content_weight * mean((F_c(x) - F_c(B))^2) + tv_weight * TV(x)
 * in stages, coarse to fine: stage k uses the k deepest layers (all of them in the last). */
typedef struct cn_analogy_options {
  const char *content_layer; /* NULL: no content term */
  const char *layers[CN_SYNTH_MAX_LAYERS];
  int n_layers;
  int patch_size;    /* pixel-level patch, odd */
  int linear_radius; /* > 0: the pixel target is L(B) + (A' - L(A)) at the matches, L the linear
                        filter of (2 r + 1)^2 x 3 taps and a constant best mapping A to A' (least
                        squares); 0: A' at the matches */
  double pixel_weight, feature_weight, content_weight, tv_weight;
  int iterations; /* L-BFGS iterations per stage */
  cn_synth_progress_fn progress;
  void *user;
} cn_analogy_options;
/* Patch 3, linear radius 3, weights pixel 1, feature 0.001, content 0, tv 0.01, 30 iterations
 * per stage. */
CN_API cn_analogy_options cn_analogy_options_default(void);

/* a, a_prime and b must all be the model's input size (a and a_prime of different sizes fail
 * saying so); out receives B', the same size (free with cn_image_free). */
CN_API cn_status cn_image_analogy(cn_model *model, const cn_image *a, const cn_image *a_prime,
                                  const cn_image *b, const cn_analogy_options *o, cn_image *out,
                                  cn_synth_result *result);

#ifdef __cplusplus
}
#endif

#endif
