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
