/* MobileNetV2 (keras.applications.mobilenet_v2): inverted residual blocks (1x1 expand, 3x3
 * depthwise, 1x1 linear projection) with channel counts rounded by _make_divisible, and
 * ZeroPadding2D from correct_pad before every strided depthwise convolution. */
#include <stdio.h>

#include "zoo/zoo.h"

#define MOBILENET_V2_BN_EPS 1e-3f

/* Keras' _make_divisible(v, divisor): round to the nearest multiple, never down by over 10 %. */
static int make_divisible(double v, int divisor) {
  int rounded = (int)(v + divisor / 2.0) / divisor * divisor;
  if (rounded < divisor) rounded = divisor;
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

static int bn(zoo_builder *b, const char *prefix, const char *suffix, int x) {
  char name[48];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  return zoo_bn(b, name, x, MOBILENET_V2_BN_EPS, 1);
}

static int relu6(zoo_builder *b, const char *prefix, const char *suffix, int x) {
  char name[48];
  snprintf(name, sizeof name, "%s%s", prefix, suffix);
  return zoo_act(b, name, x, cn_act_relu6(), "ReLU");
}

/* correct_pad(x, 3): one extra row/column at the end, and one at the start for odd sizes. */
static int correct_pad(zoo_builder *b, const char *prefix, int x) {
  char name[48];
  snprintf(name, sizeof name, "%spad", prefix);
  int odd_h = (int)(zoo_dim(b, x, 0) % 2), odd_w = (int)(zoo_dim(b, x, 1) % 2);
  return zoo_zeropad(b, name, x, odd_h, 1, odd_w, 1);
}

static int inverted_res_block(zoo_builder *b, int inputs, int expansion, int stride, double alpha,
                              int filters, int id) {
  int in_channels = zoo_channels(b, inputs);
  int out_channels = make_divisible((int)(filters * alpha), 8);
  char prefix[24], name[48];
  int x = inputs;
  if (id) {
    snprintf(prefix, sizeof prefix, "block_%d_", id);
    snprintf(name, sizeof name, "%sexpand", prefix);
    x = zoo_conv(b, name, x, expansion * in_channels, 1, 1, 1, CN_PAD_SAME, 0, cn_act_linear());
    x = bn(b, prefix, "expand_BN", x);
    x = relu6(b, prefix, "expand_relu", x);
  } else {
    snprintf(prefix, sizeof prefix, "expanded_conv_");
  }
  if (stride == 2) x = correct_pad(b, prefix, x);
  snprintf(name, sizeof name, "%sdepthwise", prefix);
  x = zoo_depthwise(b, name, x, 3, stride, stride == 1 ? CN_PAD_SAME : CN_PAD_VALID);
  x = bn(b, prefix, "depthwise_BN", x);
  x = relu6(b, prefix, "depthwise_relu", x);
  snprintf(name, sizeof name, "%sproject", prefix);
  x = zoo_conv(b, name, x, out_channels, 1, 1, 1, CN_PAD_SAME, 0, cn_act_linear());
  x = bn(b, prefix, "project_BN", x);
  if (in_channels != out_channels || stride != 1) return x;
  snprintf(name, sizeof name, "%sadd", prefix);
  return zoo_add2(b, name, inputs, x);
}

void zoo_mobilenet_v2(zoo_builder *b, const zoo_config *c) {
  static const struct {
    int filters, stride, expansion;
  } blocks[17] = {{16, 1, 1}, {24, 2, 6},  {24, 1, 6},  {32, 2, 6},  {32, 1, 6}, {32, 1, 6},
                  {64, 2, 6}, {64, 1, 6},  {64, 1, 6},  {64, 1, 6},  {96, 1, 6}, {96, 1, 6},
                  {96, 1, 6}, {160, 2, 6}, {160, 1, 6}, {160, 1, 6}, {320, 1, 6}};
  int x = zoo_input(b, c->height, c->width);
  x = zoo_conv(b, "Conv1", x, make_divisible(32 * c->alpha, 8), 3, 3, 2, CN_PAD_SAME, 0,
               cn_act_linear());
  x = zoo_bn(b, "bn_Conv1", x, MOBILENET_V2_BN_EPS, 1);
  x = zoo_act(b, "Conv1_relu", x, cn_act_relu6(), "ReLU");
  for (int i = 0; i < 17; i++)
    x = inverted_res_block(b, x, blocks[i].expansion, blocks[i].stride, c->alpha, blocks[i].filters,
                           i);
  int last = c->alpha > 1.0 ? make_divisible(1280 * c->alpha, 8) : 1280;
  x = zoo_conv(b, "Conv_1", x, last, 1, 1, 1, CN_PAD_VALID, 0, cn_act_linear());
  x = zoo_bn(b, "Conv_1_bn", x, MOBILENET_V2_BN_EPS, 1);
  x = zoo_act(b, "out_relu", x, cn_act_relu6(), "ReLU");
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, NULL, NULL);
    return;
  }
  x = zoo_global_pool(b, NULL, x, 0, 0);
  zoo_dense(b, "predictions", x, c->classes, cn_act_softmax());
}
