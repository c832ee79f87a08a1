/* The small model the PyTorch-reader test and fuzz target load state dicts into:
 * input (4,4,2) -> Conv2D "c" 3x3, 3 filters -> BatchNormalization "bn" -> DepthwiseConv2D "d"
 * -> global average pool -> Dense "fc" (2). NULL if it cannot be built. */
#ifndef CN_TESTS_PYTORCH_SMALL_MODEL_H
#define CN_TESTS_PYTORCH_SMALL_MODEL_H

#include "core/graph.h"
#include "model/model.h"
#include "ops/ops.h"

static inline cn_model *pytorch_small_model(void) {
  cn_graph *g = cn_graph_new();
  int x = -1;
  cn_input_attrs in = {.shape = {3, {4, 4, 2}}};
  cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x);
  cn_conv2d_attrs c = {3, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_graph_add(g, &cn_op_conv2d, "c", &x, 1, &c, &x);
  cn_batchnorm_attrs bn = {1e-3f, 1, 1, -1, 0.0f, 0};
  cn_graph_add(g, &cn_op_batchnorm, "bn", &x, 1, &bn, &x);
  cn_depthwise_attrs d = {3, 3, 1, 1, 1, 1, 1, 0, CN_PAD_SAME, cn_act_linear(), {0}};
  cn_graph_add(g, &cn_op_depthwise, "d", &x, 1, &d, &x);
  cn_global_pool_attrs p = {0};
  cn_graph_add(g, &cn_op_global_avgpool, "pool", &x, 1, &p, &x);
  cn_dense_attrs fc = {2, 1, cn_act_linear()};
  cn_graph_add(g, &cn_op_dense, "fc", &x, 1, &fc, &x);
  cn_model *m = NULL;
  cn_input_spec spec = cn_input_spec_default(&in.shape, CN_PRE_RAW);
  return cn_model_wrap(g, "small", &spec, &m) == CN_OK ? m : NULL;
}

#endif
