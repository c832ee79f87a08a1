/* convnet: models — building from the zoo, loading Keras files, running forward. */
#ifndef CONVNET_MODEL_H
#define CONVNET_MODEL_H

#include "convnet/core.h"
#include "convnet/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cn_model cn_model;

/* Options for cn_zoo_build, mirroring keras.applications. Zero fields take the defaults. */
typedef struct cn_zoo_options {
  const char *name; /* "vgg16", "vgg19", "inception_v3", "resnet50", "mobilenet", "mobilenet_v2" */
  int no_top;       /* 1: include_top=False */
  const char *pooling; /* with no_top: NULL, "avg" or "max" */
  int height, width;   /* input size; 0: the model's default (224, or 299 for inception_v3) */
  int classes;         /* 0: 1000 */
  float alpha;         /* MobileNet width multiplier; 0: 1.0 */
} cn_zoo_options;

/* Names of the zoo models, NULL-terminated. */
CN_API const char *const *cn_zoo_names(void);
/* Builds the architecture with zeroed weights; load weights with cn_model_load_weights. */
CN_API cn_status cn_zoo_build(const cn_zoo_options *options, cn_model **out);

/* Loads a model file, choosing the reader by the file's content (docs/cli.md):
 * - a Keras full-model .h5 (model.save: graph from model_config, weights from /model_weights);
 * - a Keras model.to_json() architecture (.json; weights zero until cn_model_load_weights);
 * - an ONNX model (.onnx: graph and initializers; the operators of docs/onnx.md);
 * - a convnet .cnm (cn_model_save: graph, weights, class names, input spec; docs/formats.md).
 * A PyTorch .pth holds weights only: build the model (cn_zoo_build) and load it as weights. A file
 * of no known kind fails with "unknown model format". */
CN_API cn_status cn_model_load(const char *path, cn_model **out);
/* A value for one graph input of a model file, known before the file is loaded. */
typedef struct cn_input_value {
  cn_shape shape;    /* the full shape, as the file names the input */
  const float *data; /* numel(shape) values (integers as floats) */
  int bound;         /* set by the loader: 1 when the value became part of the model */
} cn_input_value;

/* cn_model_load with values for the file's graph inputs, in graph order (n of them). An ONNX graph
 * input that defines a shape or a mode rather than data (Reshape's shape; Resize's roi, scales and
 * sizes; Upsample's scales; Pad's pads, constant_value and axes; Dropout's ratio and training_mode)
 * is bound to its value as a constant before the graph is planned (shape specialisation): the
 * loader sets .bound, and the model's inputs are the inputs left unbound, in order. Such an input
 * without a value is refused by name. Other formats bind nothing. */
CN_API cn_status cn_model_load_inputs(const char *path, cn_input_value *values, int n,
                                      cn_model **out);
/* Loads weights into a model by layer name, with shape checks, from:
 * - a Keras save_weights .h5 (Keras 1 and 2), a full-model .h5, or a Keras 3 .weights.h5;
 * - a PyTorch .pth state_dict (torch.save, zip or legacy form; docs/pytorch.md), its keys mapped
 *   to the model's layer names;
 * - a convnet .cnm (or any safetensors file of F32 "<layer>/<param>" tensors): every parameter
 *   of the model must be there with its shape; other tensors are ignored. */
CN_API cn_status cn_model_load_weights(cn_model *model, const char *path);
/* Initialises every parameter from seed, as Keras builds a fresh model: each weight by the
 * initializer its Keras file names (kernel_initializer, bias_initializer, ...), else by Keras's
 * default for it (glorot_uniform kernels, zero biases and betas, unit gammas and moving
 * variances). The values follow Keras's distributions but are drawn from convnet's own seeded
 * streams; the same seed always gives the same weights. */
CN_API cn_status cn_model_init_weights(cn_model *model, uint64_t seed);
/* Copies the weights (and statistics) of every layer of dst that src has under the same name,
 * as Keras's load_weights(by_name=True); *copied (may be NULL) counts the layers. A layer whose
 * weight shapes differ fails naming it, and nothing is copied. */
CN_API cn_status cn_model_copy_weights(cn_model *dst, const cn_model *src, int *copied);
/* Freezes (trainable 0) or unfreezes a layer, or every layer when layer is NULL, as Keras's
 * layer.trainable: a session made afterwards computes no gradients for its weights, and a frozen
 * BatchNormalization runs in inference mode. */
CN_API cn_status cn_model_set_trainable(cn_model *model, const char *layer, int trainable);
CN_API void cn_model_free(cn_model *model);

CN_API const char *cn_model_name(const cn_model *model);
/* Per-sample shapes, without the batch dimension: (224,224,3) in, (1000) out. */
CN_API cn_shape cn_model_input_shape(const cn_model *model);
CN_API cn_shape cn_model_output_shape(const cn_model *model);
/* The image pipeline the model was trained with (size, resize, crop, preprocessing). */
CN_API cn_input_spec cn_model_input_spec(const cn_model *model);
CN_API void cn_model_set_input_spec(cn_model *model, const cn_input_spec *spec);

/* Runs batch samples: input holds batch * numel(input shape) floats (NHWC), output receives
 * batch * numel(output shape) floats. */
CN_API cn_status cn_model_forward(cn_model *model, int batch, const float *input, float *output);

/* The arithmetic of cn_model_forward (and everything that runs a model for inference: classify,
 * evaluate, features). CN_PRECISION_FP32, the default, matches Keras and ONNX Runtime.
 * CN_PRECISION_BF16 rounds the weights of Conv2D and Dense layers to bfloat16 (packed once, half
 * the memory) and their inputs to bfloat16 per product, and sums in fp32: on CPUs with AVX512_BF16
 * with its dot-product instructions, elsewhere widened to fp32 (the same bits). Depthwise
 * convolutions, pooling, normalisation and activations stay fp32, and so does training. Results
 * differ from fp32 by about 1 % relative; they stay bitwise the same for any thread count. */
CN_API cn_status cn_model_set_precision(cn_model *model, cn_precision precision);
CN_API cn_precision cn_model_precision(const cn_model *model);

/* Layers choose their algorithm by the size of the work (Winograd or im2col for a 3x3
 * convolution, a depthwise block fused or apart, ...): by default for each forward's own batch,
 * the fastest, so that a sample's last bits may depend on how many samples share its batch. With
 * batch B > 0 they choose as for a batch of B whatever the batch: a sample's result is then the
 * same bits alone or in any batch, as it is for any thread count (convnet classify and serve set
 * it to the batch they run; a batch near B keeps B's speed). 0 restores the default. */
CN_API cn_status cn_model_set_algorithm_batch(cn_model *model, int batch);
CN_API int cn_model_algorithm_batch(const cn_model *model);

/* Models with several inputs or outputs (ONNX graphs): counts, per-sample shapes in the model's
 * own layout (NCHW for ONNX), and a forward pass over all of them. inputs[i] holds batch *
 * numel(input i) floats; outputs[i] receives batch * numel(output i). */
CN_API int cn_model_input_count(const cn_model *model);
CN_API int cn_model_output_count(const cn_model *model);
CN_API cn_shape cn_model_input_shape_at(const cn_model *model, int index);
CN_API cn_shape cn_model_output_shape_at(const cn_model *model, int index);
CN_API cn_status cn_model_forward_multi(cn_model *model, int batch, const float *const *inputs,
                                        float *const *outputs);

/* A layer as `convnet summary` shows it. Strings stay valid while the model lives. */
typedef struct cn_layer_info {
  const char *name;
  const char *type;  /* Keras class name, e.g. "Conv2D" */
  cn_shape output;   /* per sample */
  int64_t params;    /* all parameters */
  int64_t trainable; /* trainable parameters */
  int n_inputs;
  const char *inputs[8]; /* names of the first inputs */
} cn_layer_info;

CN_API size_t cn_model_layer_count(const cn_model *model);
CN_API cn_status cn_model_layer_info(const cn_model *model, size_t index, cn_layer_info *info);

/* One layer's time in cn_model_profile: the layers as forward runs them, BatchNormalization and
 * activations folded into the convolutions before them. */
typedef struct cn_layer_profile {
  const char *name, *type; /* valid while the model lives and its weights do not change */
  double ms;               /* mean wall time per forward pass */
  double gflop;            /* operations per forward pass at the profiled batch, in 1e9 (a
                            * multiply-add counts 2; convolutions, dense and matrix products
                            * exactly, other layers one per output value) */
} cn_layer_profile;
/* Times every layer over `iterations` forward passes of `batch` samples (inputs[k] feeds model
 * input k), after one untimed pass (planning, weight packing). *layers (malloc'd, *count
 * entries, in execution order) receives the means; free() it. */
CN_API cn_status cn_model_profile(cn_model *model, int batch, const float *const *inputs,
                                  int iterations, cn_layer_profile **layers, size_t *count);

/* Writes the model as an ONNX file (opset 13) that computes in NCHW: a Keras-layout (NHWC) model
 * keeps its NHWC input and output shapes (transposes inside the graph), a model imported from
 * ONNX or PyTorch keeps its NCHW boundary. The batch dimension is symbolic ("N"). Written
 * atomically (temporary file beside path, fsync, rename). Layers with no ONNX form are refused
 * with CN_ERR_UNSUPPORTED naming the layer. */
CN_API cn_status cn_model_save_onnx(cn_model *model, const char *path);

/* Names of the model's output classes, as training or a .cnm file gave them: the count (0 when the
 * model has none) and name i (NULL out of range). */
CN_API int cn_model_class_count(const cn_model *model);
CN_API const char *cn_model_class_name(const cn_model *model, int index);
/* Copies n names (n == 0 removes them). Names are non-empty UTF-8 without control characters, at
 * most CN_CLASS_NAME_MAX bytes; at most CN_MAX_CLASS_NAMES of them. */
#define CN_CLASS_NAME_MAX 1024
#define CN_MAX_CLASS_NAMES (1 << 20)
CN_API cn_status cn_model_set_class_names(cn_model *model, const char *const *names, int n);

/* Saves the whole model (graph, weights and non-trainable state, class names, input spec, name)
 * as one native .cnm file (docs/formats.md), written atomically. cn_model_load reads it back. */
CN_API cn_status cn_model_save(cn_model *model, const char *path);

#ifdef __cplusplus
}
#endif
#endif
