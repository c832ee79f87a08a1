/* ResNet50 (keras.applications.resnet, Keras 3 layer names): a 7x7 stem, four stacks of
 * bottleneck blocks (3, 4, 6, 3) whose first block has a projection shortcut, then global
 * average pooling and Dense. Every BatchNormalization uses epsilon 1.001e-5. */
#include <stdio.h>

#include "zoo/zoo.h"

#define RESNET_BN_EPS 1.001e-5f

static int conv_bn(zoo_builder *b, const char *prefix, const char *part, int x, int filters, int k,
                   int stride) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s_conv", prefix, part);
  x = zoo_conv(b, name, x, filters, k, k, stride, k == 1 ? CN_PAD_VALID : CN_PAD_SAME, 1,
               cn_act_linear());
  snprintf(name, sizeof name, "%s_%s_bn", prefix, part);
  return zoo_bn(b, name, x, RESNET_BN_EPS, 1);
}

static int relu(zoo_builder *b, const char *prefix, const char *part, int x) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s", prefix, part);
  return zoo_act(b, name, x, cn_act_relu(), "Activation");
}

/* residual_block_v1: 1x1 (stride) -> 3x3 -> 1x1 x4, plus the shortcut, then relu. */
static int block(zoo_builder *b, const char *prefix, int x, int filters, int stride,
                 int conv_shortcut) {
  int shortcut = x;
  if (conv_shortcut) shortcut = conv_bn(b, prefix, "0", x, 4 * filters, 1, stride);
  x = conv_bn(b, prefix, "1", x, filters, 1, stride);
  x = relu(b, prefix, "1_relu", x);
  x = conv_bn(b, prefix, "2", x, filters, 3, 1);
  x = relu(b, prefix, "2_relu", x);
  x = conv_bn(b, prefix, "3", x, 4 * filters, 1, 1);
  char name[64];
  snprintf(name, sizeof name, "%s_add", prefix);
  x = zoo_add2(b, name, shortcut, x);
  return relu(b, prefix, "out", x);
}

static int stack(zoo_builder *b, int stage, int x, int filters, int blocks, int stride1) {
  char prefix[32];
  for (int i = 1; i <= blocks; i++) {
    snprintf(prefix, sizeof prefix, "conv%d_block%d", stage, i);
    x = block(b, prefix, x, filters, i == 1 ? stride1 : 1, i == 1);
  }
  return x;
}

void zoo_resnet50(zoo_builder *b, const zoo_config *c) {
  int x = zoo_input(b, c->height, c->width);
  x = zoo_zeropad(b, "conv1_pad", x, 3, 3, 3, 3);
  x = zoo_conv(b, "conv1_conv", x, 64, 7, 7, 2, CN_PAD_VALID, 1, cn_act_linear());
  x = zoo_bn(b, "conv1_bn", x, RESNET_BN_EPS, 1);
  x = zoo_act(b, "conv1_relu", x, cn_act_relu(), "Activation");
  x = zoo_zeropad(b, "pool1_pad", x, 1, 1, 1, 1);
  x = zoo_maxpool(b, "pool1_pool", x, 3, 2, CN_PAD_VALID);
  x = stack(b, 2, x, 64, 3, 1);
  x = stack(b, 3, x, 128, 4, 2);
  x = stack(b, 4, x, 256, 6, 2);
  x = stack(b, 5, x, 512, 3, 2);
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, "avg_pool", "max_pool");
    return;
  }
  x = zoo_global_pool(b, "avg_pool", x, 0, 0);
  zoo_dense(b, "predictions", x, c->classes, cn_act_softmax());
}
