/* convnet: building models layer by layer, in the shape of the Keras functional API.
 *
 *   cn_net *net;
 *   cn_net_new("classifier", &net);
 *   cn_sym x = cn_net_input(net, "image", 3, (int64_t[]){28, 28, 1});
 *   cn_sym h = cn_net_conv2d(net, x, &(cn_conv2d_options){.filters = 32, .kernel_size = {3, 3},
 *                                                     .activation = "relu"});
 *   h = cn_net_max_pool2d(net, h, &(cn_pool2d_options){.pool_size = {2, 2}});
 *   h = cn_net_flatten(net, h, NULL);
 *   cn_sym y = cn_net_dense(net, h, &(cn_dense_options){.units = 10, .activation = "softmax"});
 *   cn_model *model;
 *   if (cn_net_build(net, &y, 1, &model) != CN_OK) fprintf(stderr, "%s\n", cn_last_error());
 *   cn_net_free(net);
 *   cn_model_init_weights(model, 42);
 *
 * Shapes are per sample, as Keras's (the batch is the leading dimension the model runs with).
 * A call that fails (a shape that does not fit, an unknown activation, a symbol of another net
 * or of no layer) records the first failure, naming the layer; every later call does nothing and
 * returns an invalid symbol, so a model reads as a list of layers and is checked once, by
 * cn_net_build, which reports that first failure. Zero fields in an options struct take Keras's
 * defaults; a NULL name takes Keras's automatic name (conv2d, conv2d_1, ...). Activations: NULL
 * or "linear", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "swish",
 * "hard_sigmoid". Initializers: Keras's names ("glorot_uniform", "he_normal", "zeros", ...);
 * NULL: the layer's Keras default. Weights are zero until cn_model_init_weights or
 * cn_model_load_weights. */
#ifndef CONVNET_LAYERS_H
#define CONVNET_LAYERS_H

#include "convnet/core.h"
#include "convnet/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_net cn_net;

/* A layer's output: symbolic until the model runs. */
typedef struct cn_sym {
  int node;     /* -1: invalid (after a failure) */
  uint32_t net; /* which net made it */
} cn_sym;

CN_API cn_status cn_net_new(const char *name, cn_net **out);
CN_API void cn_net_free(cn_net *net);
/* The first failure so far (CN_OK while none); its message is the one cn_last_error gave then. */
CN_API cn_status cn_net_status(const cn_net *net);
/* The model of the layers these outputs depend on, from the net's inputs they need (in the order
 * the inputs were made) to these outputs. The net may be freed afterwards; the model owns its
 * graph. Weights are zero until initialised or loaded: two models built from one net do not
 * share weights (copy them with cn_model_copy_weights). */
CN_API cn_status cn_net_build(cn_net *net, const cn_sym *outputs, int n_outputs, cn_model **out);
/* The same from chosen layers: each of `inputs` becomes an input layer of the model (named as
 * the layer), so a VAE's decoder is the net from its latent sample to its reconstruction. Fails
 * when the outputs need an input of the net that is not among them. */
CN_API cn_status cn_net_build_from(cn_net *net, const cn_sym *inputs, int n_inputs,
                                   const cn_sym *outputs, int n_outputs, cn_model **out);

/* An input of the given per-sample shape (rank 0 to 5, every dimension positive; rank 0: one
 * number per sample, dims may be NULL). */
CN_API cn_sym cn_net_input(cn_net *net, const char *name, int rank, const int64_t *dims);

/* ---- shared layers ------------------------------------------------------------------------- */

/* Calls the layer named `layer` again on new inputs, sharing its weights (Keras: one layer object
 * applied to several tensors, as in a siamese network). The call is a new layer named
 * "<layer>/call<k>" (k = 1, 2, ...) with the layer's attributes; its weights are the layer's
 * (stored, initialised, loaded and saved once; training sums the gradients of every call). Fails,
 * naming the layer, when no layer has that name (a layer must be made before it is called again),
 * when it is an input, or when the inputs do not fit its weights ("dense: called on an input of
 * shape (5,) but its weights fit (4,)"). A layer made of two nodes (Conv2DTranspose with an
 * activation: "<name>" then "<name>/activation") is called node by node. */
CN_API cn_sym cn_net_call(cn_net *net, const char *layer, const cn_sym *inputs, int n_inputs);

/* ---- layers -------------------------------------------------------------------------------- */

typedef struct cn_conv2d_options {
  const char *name;
  int filters;
  int kernel_size[2];
  int strides[2];       /* {0, 0}: 1 */
  const char *padding;  /* "valid" (default) or "same" */
  int dilation_rate[2]; /* {0, 0}: 1 */
  int groups;           /* 0: 1 */
  int no_bias;          /* 1: use_bias=False */
  const char *activation;
  const char *kernel_initializer, *bias_initializer;
} cn_conv2d_options;
CN_API cn_sym cn_net_conv2d(cn_net *net, cn_sym x, const cn_conv2d_options *o);

typedef struct cn_depthwise_conv2d_options {
  const char *name;
  int kernel_size[2];
  int strides[2];
  const char *padding;
  int dilation_rate[2];
  int depth_multiplier; /* 0: 1 */
  int no_bias;
  const char *activation;
  const char *depthwise_initializer, *bias_initializer;
} cn_depthwise_conv2d_options;
CN_API cn_sym cn_net_depthwise_conv2d(cn_net *net, cn_sym x, const cn_depthwise_conv2d_options *o);

typedef struct cn_conv2d_transpose_options {
  const char *name;
  int filters;
  int kernel_size[2];
  int strides[2];         /* {0, 0}: 1 */
  const char *padding;    /* "valid" (default) or "same": Keras's output sizes */
  int output_padding[2];  /* used when has_output_padding */
  int has_output_padding; /* 0: Keras's output_padding=None */
  int dilation_rate[2];
  int no_bias;
  const char *activation; /* applied by an Activation layer "<name>/activation" after it */
  const char *kernel_initializer, *bias_initializer;
} cn_conv2d_transpose_options;
/* Keras's Conv2DTranspose (kernel (kh, kw, filters, in)), for decoders. */
CN_API cn_sym cn_net_conv2d_transpose(cn_net *net, cn_sym x, const cn_conv2d_transpose_options *o);
/* UpSampling2D by (size_h, size_w) ({0, 0}: 2 x 2): "nearest" (default) or "bilinear". */
CN_API cn_sym cn_net_upsampling2d(cn_net *net, cn_sym x, const int size[2],
                                  const char *interpolation, const char *name);

typedef struct cn_dense_options {
  const char *name;
  int units;
  int no_bias;
  const char *activation;
  const char *kernel_initializer, *bias_initializer;
} cn_dense_options;
/* Over the last axis. */
CN_API cn_sym cn_net_dense(cn_net *net, cn_sym x, const cn_dense_options *o);

typedef struct cn_pool2d_options {
  const char *name;
  int pool_size[2]; /* {0, 0}: 2 x 2 */
  int strides[2];   /* {0, 0}: the pool size */
  const char *padding;
} cn_pool2d_options;
CN_API cn_sym cn_net_max_pool2d(cn_net *net, cn_sym x, const cn_pool2d_options *o);
CN_API cn_sym cn_net_avg_pool2d(cn_net *net, cn_sym x, const cn_pool2d_options *o);
CN_API cn_sym cn_net_global_avg_pool2d(cn_net *net, cn_sym x, const char *name);
CN_API cn_sym cn_net_global_max_pool2d(cn_net *net, cn_sym x, const char *name);

typedef struct cn_batch_norm_options {
  const char *name;
  int axis;       /* 0: -1, the last */
  float momentum; /* 0: 0.99 */
  float epsilon;  /* 0: 0.001 */
  int no_center;  /* 1: center=False (no beta) */
  int no_scale;   /* 1: scale=False (no gamma) */
} cn_batch_norm_options;
CN_API cn_sym cn_net_batch_norm(cn_net *net, cn_sym x, const cn_batch_norm_options *o);

CN_API cn_sym cn_net_dropout(cn_net *net, cn_sym x, float rate, const char *name);
CN_API cn_sym cn_net_activation(cn_net *net, cn_sym x, const char *activation, const char *name);
/* LeakyReLU with Keras 3's default negative_slope 0.3 when slope is 0. */
CN_API cn_sym cn_net_leaky_relu(cn_net *net, cn_sym x, float slope, const char *name);
CN_API cn_sym cn_net_flatten(cn_net *net, cn_sym x, const char *name);
/* To a per-sample shape; one dimension may be -1. */
CN_API cn_sym cn_net_reshape(cn_net *net, cn_sym x, int rank, const int64_t *dims,
                             const char *name);
CN_API cn_sym cn_net_zero_padding2d(cn_net *net, cn_sym x, int top, int bottom, int left, int right,
                                    const char *name);
/* axis counts the batch as 0, Keras-style; -1 is the last. */
CN_API cn_sym cn_net_concatenate(cn_net *net, const cn_sym *xs, int n, int axis, const char *name);
/* Elementwise over two or more inputs of one shape (subtract: exactly two). */
CN_API cn_sym cn_net_add(cn_net *net, const cn_sym *xs, int n, const char *name);
CN_API cn_sym cn_net_subtract(cn_net *net, cn_sym a, cn_sym b, const char *name);
CN_API cn_sym cn_net_multiply(cn_net *net, const cn_sym *xs, int n, const char *name);
CN_API cn_sym cn_net_average(cn_net *net, const cn_sym *xs, int n, const char *name);
CN_API cn_sym cn_net_maximum(cn_net *net, const cn_sym *xs, int n, const char *name);
CN_API cn_sym cn_net_minimum(cn_net *net, const cn_sym *xs, int n, const char *name);

/* ---- math and losses: a model may end in the scalar it is trained on -------------------------
 * A session made with no loss name (cn_session_options.loss NULL) minimises the batch mean of the
 * model's first output, which must be one value per sample: a loss layer below, or any scalar
 * built from these functions. Shapes are per sample; the batch axis is never reduced here. */

/* An elementwise function: "exp", "log", "sqrt", "square", "abs", "neg", "reciprocal", "sigmoid",
 * "tanh", "relu", "softplus". */
CN_API cn_sym cn_net_math(cn_net *net, cn_sym x, const char *fn, const char *name);
/* x * scale + shift (Keras's Rescaling). */
CN_API cn_sym cn_net_scale(cn_net *net, cn_sym x, float scale, float shift, const char *name);
/* min(max(x, lo), hi); +-INFINITY for no bound. */
CN_API cn_sym cn_net_clip(cn_net *net, cn_sym x, float lo, float hi, const char *name);
/* "sum", "mean", "max" or "min" over axes counted Keras-style (1 the first per-sample axis, -1
 * the last; NULL: every per-sample axis, and a scalar as it is), keeping them as size 1 with
 * keepdims. */
CN_API cn_sym cn_net_reduce(cn_net *net, cn_sym x, const char *how, const int *axes, int n_axes,
                            int keepdims, const char *name);
/* mean + exp(log_var / 2) * eps with eps ~ N(0, 1): the reparameterisation trick of a VAE. The
 * draw is a pure function of seed, the training step and the element (at inference: of seed and
 * the element), so runs repeat exactly. */
CN_API cn_sym cn_net_gaussian_sample(cn_net *net, cn_sym mean, cn_sym log_var, uint64_t seed,
                                     const char *name);
/* A per-sample loss of pred against target, Keras's formulas: "mse", "mae",
 * "binary_crossentropy" (pred probabilities, clipped to [1e-7, 1 - 1e-7]),
 * "categorical_crossentropy" (pred probabilities over the last axis, renormalised),
 * "sparse_categorical_crossentropy" (target: class index per row, the shape of pred without its
 * last axis or with it 1), each of those three also "..._from_logits". The cross-entropies average
 * over rows of the last axis, the others over every element. */
CN_API cn_sym cn_net_loss(cn_net *net, const char *loss, cn_sym pred, cn_sym target,
                          const char *name);
/* mean((1 - label) * d^2 + label * max(margin - d, 0)^2) for a distance d: label 0 for a similar
 * pair, 1 for a dissimilar one (Hadsell et al. 2006). */
CN_API cn_sym cn_net_contrastive_loss(cn_net *net, cn_sym distance, cn_sym label, float margin,
                                      const char *name);
/* KL(N(mean, exp(log_var)) || N(0, 1)) summed over the sample: -1/2 sum(1 + log_var - mean^2 -
 * exp(log_var)). */
CN_API cn_sym cn_net_kl_gaussian(cn_net *net, cn_sym mean, cn_sym log_var, const char *name);
/* sum_i weights[i] * xs[i] over tensors of one shape (weights NULL: all 1). */
CN_API cn_sym cn_net_weighted_sum(cn_net *net, const cn_sym *xs, const float *weights, int n,
                                  const char *name);

#ifdef __cplusplus
}
#endif
#endif
