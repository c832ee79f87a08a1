/* Graph rewrites for inference. */
#ifndef CN_MODEL_FUSE_H
#define CN_MODEL_FUSE_H

#include "core/graph.h"

/* Folds every BatchNormalization over the channel axis into the Conv2D or DepthwiseConv2D that
 * feeds it, when that convolution has a linear activation, is not a graph output and has no
 * other reader: the kernel is scaled per output channel, the bias (added if absent) absorbs the
 * shift, and the BatchNormalization node is removed (node indices after it shift down). Call
 * after the weights are loaded; the parameter buffer is reallocated when biases are added. */
cn_status cn_graph_fold_batchnorm(cn_graph *g);

/* Moves every elementwise Activation (ReLU, relu6, sigmoid... not softmax) into the Conv2D,
 * DepthwiseConv2D or Dense before it, under the same conditions (linear activation, no other
 * reader, not a graph output), and removes the Activation node. Run after the BN fold so that
 * conv -> BN -> ReLU becomes one node. */
cn_status cn_graph_fold_activations(cn_graph *g);

/* Moves every ZeroPadding2D (or constant-zero spatial Pad) read only by a VALID Conv2D or
 * DepthwiseConv2D into that convolution's own padding (cn_conv_pads), or by a plain
 * AveragePooling2D into its explicit pads counted in the divisor, so that no padded copy of the
 * activation is made, and removes the padding node. For the inference graph: a training graph
 * keeps it. */
cn_status cn_graph_fold_padding(cn_graph *g);

/* Moves every two-input Add (Keras Add, ONNX Add of two activations of one shape) into the
 * later of its inputs when that one is a linear Conv2D read by nothing else: the convolution
 * takes the other input as its second (cn_op_conv2d_add) and adds it before its activation, and
 * the Add node is removed. Run before cn_graph_fold_activations, which then moves the ReLU that
 * followed the Add into the convolution. For the inference graph only (no backward). */
cn_status cn_graph_fold_residual(cn_graph *g);

/* Moves every DepthwiseConv2D (multiplier 1, elementwise activation) read only by a 1x1
 * unpadded stride-1 ungrouped Conv2D or Conv2D+Add into that convolution (cn_op_dw_conv), which
 * then reads the depthwise input and multiplies each band of depthwise rows while it is in cache;
 * with `expand` (fp32 graphs), also the 1x1 Conv2D before the depthwise layer when it is read by
 * it only (MobileNetV2's expansion), whose input the fused node then reads. Run last. For the
 * inference graph only (no backward). */
cn_status cn_graph_fold_depthwise(cn_graph *g, int expand);

/* 1 when a fold above would change the graph (so a caller can skip copying it). */
int cn_graph_can_fold(cn_graph *g);

#endif
