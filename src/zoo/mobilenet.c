/* MobileNet V1 (keras.applications.mobilenet): a strided 3x3 convolution, then 13 depthwise
 * separable blocks (3x3 depthwise + 1x1 pointwise, each with BatchNormalization and relu6).
 * Strided depthwise convolutions are "valid" after ZeroPadding2D ((0,1),(0,1)). The top is a
 * 1x1 convolution over the kept-dims average, reshaped, with a softmax Activation. */
#include <stdio.h>

#include "zoo/zoo.h"

#define MOBILENET_BN_EPS 1e-3f

static int bn_relu6(zoo_builder *b, const char *prefix, int x) {
  char name[48];
  snprintf(name, sizeof name, "%s_bn", prefix);
  x = zoo_bn(b, name, x, MOBILENET_BN_EPS, 1);
  snprintf(name, sizeof name, "%s_relu", prefix);
  return zoo_act(b, name, x, cn_act_relu6(), "ReLU");
}

static int depthwise_block(zoo_builder *b, int x, int filters, double alpha, int stride, int id) {
  char name[48];
  if (stride != 1) {
    snprintf(name, sizeof name, "conv_pad_%d", id);
    x = zoo_zeropad(b, name, x, 0, 1, 0, 1);
  }
  snprintf(name, sizeof name, "conv_dw_%d", id);
  x = zoo_depthwise(b, name, x, 3, stride, stride == 1 ? CN_PAD_SAME : CN_PAD_VALID);
  x = bn_relu6(b, name, x);
  snprintf(name, sizeof name, "conv_pw_%d", id);
  x = zoo_conv(b, name, x, (int)(filters * alpha), 1, 1, 1, CN_PAD_SAME, 0, cn_act_linear());
  return bn_relu6(b, name, x);
}

void zoo_mobilenet(zoo_builder *b, const zoo_config *c) {
  static const struct {
    int filters, stride;
  } blocks[13] = {{64, 1},  {128, 2}, {128, 1}, {256, 2}, {256, 1},  {512, 2}, {512, 1},
                  {512, 1}, {512, 1}, {512, 1}, {512, 1}, {1024, 2}, {1024, 1}};
  int x = zoo_input(b, c->height, c->width);
  x = zoo_conv(b, "conv1", x, (int)(32 * c->alpha), 3, 3, 2, CN_PAD_SAME, 0, cn_act_linear());
  x = bn_relu6(b, "conv1", x);
  for (int i = 0; i < 13; i++)
    x = depthwise_block(b, x, blocks[i].filters, c->alpha, blocks[i].stride, i + 1);
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, NULL, NULL);
    return;
  }
  x = zoo_global_pool(b, NULL, x, 0, 1);
  x = zoo_dropout(b, "dropout", x, 1e-3f);
  x = zoo_conv(b, "conv_preds", x, c->classes, 1, 1, 1, CN_PAD_SAME, 1, cn_act_linear());
  x = zoo_reshape1(b, "reshape_2", x, c->classes);
  cn_activation softmax = cn_act_softmax();
  zoo_act(b, "predictions", x, softmax, "Activation");
}
