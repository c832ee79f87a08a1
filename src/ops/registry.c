/* The operator registry: every op, NULL-terminated, for lookups by Keras class name and tests. */
#include "ops/ops.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"

const cn_op *const cn_all_ops[] = {
    &cn_op_input,
    &cn_op_conv2d,
    &cn_op_depthwise,
    &cn_op_zeropad,
    &cn_op_maxpool,
    &cn_op_avgpool,
    &cn_op_global_avgpool,
    &cn_op_global_maxpool,
    &cn_op_dense,
    &cn_op_flatten,
    &cn_op_reshape,
    &cn_op_dropout,
    &cn_op_batchnorm,
    &cn_op_activation,
    &cn_op_merge,
    &cn_op_concat,
    &cn_op_transpose,
    &cn_op_binary,
    &cn_op_unary,
    &cn_op_prelu,
    &cn_op_softmax,
    &cn_op_lrn,
    &cn_op_pad,
    &cn_op_gemm,
    &cn_op_matmul,
    &cn_op_resize,
    &cn_op_conv_transpose,
    &cn_op_loss,
    &cn_op_reduce,
    &cn_op_gaussian_sample,
    &cn_op_conv_runtime,
    NULL,
};
