/* convnet: looking inside a model. Grad-CAM heat maps (which parts of a photo a class score
 * depends on), a layer's feature maps for one image, a convolution's kernels; and pictures of
 * them as PNG files drawn with cairo (docs/visualisation.md). */
#ifndef CONVNET_VIZ_H
#define CONVNET_VIZ_H

#include "convnet/core.h"
#include "convnet/image.h"
#include "convnet/model.h"
#include "convnet/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- numbers ------------------------------------------------------------------------------- */

/* The layer Grad-CAM uses by default: the last layer with a spatial output (height x width x
 * channels, more than one position) that the model's output depends on. Writes its name into
 * name (cap bytes). */
CN_API cn_status cn_model_last_spatial_layer(const cn_model *model, char *name, size_t cap);

typedef struct cn_gradcam_options {
  const char *layer; /* NULL: cn_model_last_spatial_layer */
  int class_index;   /* < 0: the top class */
} cn_gradcam_options;

/* Grad-CAM (Selvaraju et al. 2017) of one input: with A the layer's output (H x W x K) and y the
 * class score, w_k = mean over positions of dy/dA_k and map = relu(sum_k w_k A_k). y is the
 * score before the model's final softmax or sigmoid (the logit) when it ends in one, else its
 * output. */
typedef struct cn_gradcam {
  int height, width; /* the coarse map's size: the layer's spatial size */
  float *map;        /* height * width values, rows top to bottom, not normalised; owned */
  int class_index;   /* the class explained */
  int classes;       /* the model's outputs */
  float score;       /* y */
  float probability; /* the model's output for the class (softmax of the logits) */
  char layer[128];   /* the layer used */
} cn_gradcam;

/* input: one sample as cn_image_prepare writes it for the model's input spec. The model must
 * have one input and a vector output; the layer must be spatial and feed the output. Fails
 * naming the layer or the class when they are not usable. */
CN_API cn_status cn_gradcam_compute(cn_model *model, const float *input,
                                    const cn_gradcam_options *o, cn_gradcam *out);
CN_API void cn_gradcam_free(cn_gradcam *cam);

/* A layer's output for one input (inference mode), for layers with a spatial output. */
typedef struct cn_feature_maps {
  int height, width, channels;
  float *values; /* height * width * channels, HWC; owned */
  char layer[128];
} cn_feature_maps;

CN_API cn_status cn_feature_maps_compute(cn_model *model, const float *input, const char *layer,
                                         cn_feature_maps *out);
CN_API void cn_feature_maps_free(cn_feature_maps *maps);

/* Activation maximisation: an input, grown from faint noise by gradient ascent, that makes one
 * unit of a layer large. The objective is the mean over positions of channel `unit` of the
 * layer's output (the last dimension is the channel: H x W x C layers, and Dense outputs, where
 * it is element `unit`). Each step: shift the image by a random (dx, dy) in [-jitter, jitter]
 * (circularly), take the gradient there, shift it back, and move by lr * range * g / rms(g)
 * (range: the span of valid input values); then pull towards the middle of the range by
 * x = mid + (x - mid) * (1 - decay), blur (Gaussian, blur_sigma pixels) every blur_every steps,
 * and clip to the valid range (what pixels 0..255 become under the model's preprocessing). */
typedef struct cn_unit_options {
  const char *layer; /* required */
  int unit;
  int steps;        /* gradient steps */
  float lr;         /* step size as a fraction of the input range */
  int jitter;       /* largest shift, pixels (0: none) */
  int blur_every;   /* 0: never */
  float blur_sigma; /* pixels */
  float decay;      /* L2 decay per step */
  float noise;      /* the starting noise's standard deviation, as a fraction of the range */
  uint64_t seed;    /* the noise and the shifts: the same seed gives the same image */
} cn_unit_options;

/* steps 150, lr 0.005, jitter 4, blur_every 4, blur_sigma 0.5, decay 0.001, noise 0.02, seed 1;
 * layer NULL, unit 0. */
CN_API cn_unit_options cn_unit_options_default(void);

typedef struct cn_unit_result {
  float start, end; /* the objective for the starting noise and for the final image */
  int unit;         /* the unit maximised */
  int units;        /* the layer's channels (the unit's range) */
  int steps;        /* steps taken */
  char layer[128];
} cn_unit_result;

/* image: the model's input size (cn_model_input_spec: height * width * channels floats, HWC or
 * CHW as the spec says), written only on success, in the model's input space (preprocessed).
 * Fails with one line naming the layer or the unit when they are not usable. Deterministic for a
 * seed whatever the thread count. */
CN_API cn_status cn_activation_maximise(cn_model *model, const cn_unit_options *o, float *image,
                                        cn_unit_result *result);

/* ---- pictures (PNG, written atomically: the old file or the whole new one) ----------------- */

/* How values become grey levels (a legend in the picture states the scale and its maximum):
 * values of both signs: pixel = 128 + 127 * v / m with m the largest |v|; values >= 0 only (or
 * unsigned set): pixel = 255 * v / m with m the largest v; rounded to nearest, m = 0 draws 128
 * (0). SHARED takes m over everything drawn, PER_TILE over each tile (one kernel: all its input
 * channels; one feature map). Colour kernels map each of R, G, B by the same rule. */
typedef enum cn_viz_scale { CN_VIZ_SCALE_SHARED, CN_VIZ_SCALE_PER_TILE } cn_viz_scale;

typedef struct cn_viz_grid_options {
  cn_viz_scale scale;
  int max_tiles;     /* kernels or feature maps drawn (the first ones); 0: 64 */
  int max_channels;  /* input channels drawn per kernel in grey; 0: 16 */
  const char *title; /* a first legend line (the image's name, say); NULL: none */
} cn_viz_grid_options;

/* The kernels of a Conv2D or DepthwiseConv2D layer as a grid: a layer reading 3 channels per
 * group (an RGB image) draws one colour tile per kernel; other layers draw one row per kernel,
 * one grey tile per input channel (depthwise: one grey tile per kernel). o may be NULL. */
CN_API cn_status cn_viz_filters(const cn_model *model, const char *layer,
                                const cn_viz_grid_options *o, const char *png_path);
/* The feature maps as a labelled grid of grey tiles (channel numbers under each). */
CN_API cn_status cn_viz_activations(const cn_feature_maps *maps, const cn_viz_grid_options *o,
                                    const char *png_path);
/* The photo with the Grad-CAM map upsampled bilinearly to its size, coloured (jet) and blended
 * over it, and caption written on it. */
CN_API cn_status cn_viz_gradcam(const cn_image *photo, const cn_gradcam *cam, const char *caption,
                                const char *png_path);
/* An image of cn_activation_maximise as a picture: the model's preprocessing undone (each channel
 * mapped back linearly from its valid range to 0..255, BGR models back to RGB), drawn twice
 * its size under a legend naming the layer, with the unit and its activations under it. */
CN_API cn_status cn_viz_unit(const cn_model *model, const float *image,
                             const cn_unit_result *result, const char *png_path);
/* n images of units of one layer (results[i] for images[i]) as a near-square grid, each at its
 * size and labelled with its unit and activations. */
CN_API cn_status cn_viz_units(const cn_model *model, const float *const *images,
                              const cn_unit_result *results, int n, const char *png_path);

/* Image files side by side (at most 8 a row), each fitted into a cell x cell square (16..1024
 * pixels; area resize, aspect kept), with two lines under each: captions[i] (NULL: none) and the
 * file name. `convnet similar --sheet` draws the query and its nearest images this way. An image
 * that cannot be read fails the whole picture, naming it. */
CN_API cn_status cn_viz_contact_sheet(const char *const *paths, const char *const *captions, int n,
                                      int cell, const char *png_path);

/* ---- scatter plots ------------------------------------------------------------------------- */

typedef struct cn_viz_scatter_options {
  const char *title;              /* a line above the plot; NULL: none */
  const char *x_label, *y_label;  /* under the x axis, over the y axis; NULL: none */
  const char *const *class_names; /* the legend's names; NULL (or a NULL entry): the number */
  int classes;                    /* classes in the legend; 0: 1 + the largest class drawn */
  int width, height;              /* the picture, at least 200 x 150; 0: 900 x 700 */
  float point_radius;             /* pixels; 0: 1.5 */
} cn_viz_scatter_options;

/* n points (xy: x0, y0, x1, y1, ...) as a scatter plot: axes fitted to the points (5 % of their
 * span spare on each side) with tick values, each point a small disc of its class's colour (ten
 * distinct colours, repeating past ten; points drawn in order, so later ones lie on top), a
 * legend of the classes at the right. classes (NULL: every point class 0) must lie in
 * [0, o->classes) when o->classes is set, else be >= 0; a non-finite point is left out. o may be
 * NULL. A 2-D embedding, or two principal components of one, coloured by label. */
CN_API cn_status cn_viz_scatter(const float *xy, const int *classes, int64_t n,
                                const cn_viz_scatter_options *o, const char *png_path);

/* ---- training reports (one self-contained HTML file, docs/report.md) ----------------------- */

/* One epoch of a training history; NAN: not measured (no validation data). */
typedef struct cn_report_epoch {
  const char *phase; /* "features", "head", "fine-tune", "train" */
  int epoch;         /* 1-based within its phase */
  double loss, accuracy, val_loss, val_accuracy;
} cn_report_epoch;

typedef struct cn_report {
  const char *title;        /* the page's heading; NULL: "convnet report" */
  const char *const *notes; /* lines under the heading (model, data...), shown escaped */
  int n_notes;
  const cn_report_epoch *epochs; /* the history charts; none: the section says so */
  int n_epochs;
  const cn_evaluation *evaluation; /* the confusion matrix, per-class table and worst images
                                    * (cn_evaluation_worst); NULL: those sections say so */
  const char *evaluation_name;     /* what was scored, e.g. "validation images" */
  const char *const *class_names;  /* the evaluation's classes; NULL (or a NULL entry): numbers */
  int thumb_size;                  /* thumbnails' longer side in pixels; 0: 128 */
} cn_report;

/* Writes the report as one HTML file with everything inline (charts and thumbnails as PNG data
 * URIs drawn with cairo; no scripts, no external references), atomically. Sections: loss and
 * accuracy per epoch (train and validation), the confusion matrix as a heat map (models of at
 * most 50 classes), per-class recall and precision, the worst-misclassified images with their
 * top-3. Thumbnails are read from the images' paths; one that cannot be read is named instead. */
CN_API cn_status cn_report_write(const cn_report *r, const char *html_path);

#ifdef __cplusplus
}
#endif
#endif
