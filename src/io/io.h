/* src/io: reading and writing model files, one folder per format (keras/, onnx/, pytorch/,
 * native/); npy and IDX tensors, labels, weight fetching and format sniffing (model_files.c) at
 * the top. Calls model/, ops/, core/ and the format libraries.
 *
 * The readers' entry points, between which cn_model_load and cn_model_load_weights choose by the
 * file's content. */
#ifndef CN_IO_IO_H
#define CN_IO_IO_H

#include "model/model.h"

/* cn_model_load and cn_model_load_weights for Keras files (.h5, .weights.h5, .json); the public
 * functions in src/io/model_files.c choose the reader by the file's content. */
cn_status cn_keras_model_load(const char *path, cn_model **out);
cn_status cn_keras_model_load_weights(cn_model *model, const char *path);

/* Internal entry point behind cn_model_load for .onnx files. */
cn_status cn_onnx_load(const char *path, cn_model **out);
/* The same with values for graph inputs (cn_model_load_inputs). */
cn_status cn_onnx_load_inputs(const char *path, cn_input_value *values, int n, cn_model **out);

/* Loads a state_dict into a model whose node names are PyTorch module paths ("_blocks.3._bn1"):
 * key "<node>.<param>" maps to the node's parameter by the node's type (Conv2D weight -> kernel
 * OIHW -> HWIO; DepthwiseConv2D weight (C,1,kh,kw) -> (kh,kw,C,1); Dense weight (out,in) ->
 * (in,out); BatchNormalization weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
 * moving_variance; num_batches_tracked ignored). Every parameter of the model must be present;
 * keys of modules the model lacks (a removed classifier) are ignored. */
cn_status cn_pytorch_load_weights(cn_model *m, const char *path);

/* cn_model_load for .cnm files. */
cn_status cn_native_load(const char *path, cn_model **out);
/* cn_model_load_weights from a .cnm (or any safetensors file with "<layer>/<param>" F32
 * tensors): every parameter of the model must be there with its shape; other tensors are
 * ignored. */
cn_status cn_native_load_weights(cn_model *m, const char *path);

/* cn_idx_read from bytes in memory (tests, fuzzing); name appears in messages. */
cn_status cn_idx_read_memory(const uint8_t *data, size_t size, const char *name, cn_shape *shape,
                             float **out);

#endif
