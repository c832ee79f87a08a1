/* EfficientNet-Lite0/1/2 as the PyPI package efficientnet-lite-pytorch builds them: MBConv blocks
 * (1x1 expand, depthwise, 1x1 linear projection, identity skip) with ReLU6 and no
 * squeeze-excitation, BatchNorm eps 1e-3, a fixed 32-channel stem and 1280-channel head, and
 * TensorFlow-style "same" padding (the package pads total//2 before and the rest after, which is
 * what CN_PAD_SAME does). Nodes with weights are named after the PyTorch module paths
 * ("_blocks.3._depthwise_conv"), so state_dicts load by name (io/pytorch/pth.c). */
#include <math.h>
#include <stdio.h>

#include "zoo/zoo.h"

#define LITE_BN_EPS 1e-3f

typedef struct lite_variant {
  double width, depth, dropout;
} lite_variant;

/* One stage of the base network (efficientnet_lite_builder's block strings). */
static const struct {
  int repeats, kernel, stride, expand, in, out;
} lite_stages[7] = {
    {1, 3, 1, 1, 32, 16},  {2, 3, 2, 6, 16, 24},   {2, 5, 2, 6, 24, 40},   {3, 3, 2, 6, 40, 80},
    {3, 5, 1, 6, 80, 112}, {4, 5, 2, 6, 112, 192}, {1, 3, 1, 6, 192, 320},
};

/* round_filters: scale by the width and round to a multiple of 8, never down by over 10 %. */
static int round_filters(int filters, double width) {
  double scaled = filters * width;
  int rounded = (int)(scaled + 4) / 8 * 8;
  if (rounded < 8) rounded = 8;
  if (rounded < 0.9 * scaled) rounded += 8;
  return rounded;
}

static int conv_bn(zoo_builder *b, const char *prefix, const char *conv, const char *bn, int x,
                   int filters, int kernel, int stride) {
  char name[64];
  snprintf(name, sizeof name, "%s%s", prefix, conv);
  x = zoo_conv(b, name, x, filters, kernel, kernel, stride, CN_PAD_SAME, 0, cn_act_linear());
  snprintf(name, sizeof name, "%s%s", prefix, bn);
  return zoo_bn(b, name, x, LITE_BN_EPS, 1);
}

static int relu6(zoo_builder *b, const char *prefix, const char *what, int x) {
  char name[64];
  snprintf(name, sizeof name, "%s%s", prefix, what);
  return zoo_act(b, name, x, cn_act_relu6(), "ReLU");
}

static int mbconv(zoo_builder *b, int index, int inputs, int in, int out, int kernel, int stride,
                  int expand) {
  char prefix[32], name[64];
  snprintf(prefix, sizeof prefix, "_blocks.%d.", index);
  int x = inputs;
  if (expand != 1) {
    x = conv_bn(b, prefix, "_expand_conv", "_bn0", x, in * expand, 1, 1);
    x = relu6(b, prefix, "expand_relu6", x);
  }
  snprintf(name, sizeof name, "%s_depthwise_conv", prefix);
  x = zoo_depthwise(b, name, x, kernel, stride, CN_PAD_SAME);
  snprintf(name, sizeof name, "%s_bn1", prefix);
  x = zoo_bn(b, name, x, LITE_BN_EPS, 1);
  x = relu6(b, prefix, "depthwise_relu6", x);
  x = conv_bn(b, prefix, "_project_conv", "_bn2", x, out, 1, 1);
  if (stride != 1 || in != out) return x;
  snprintf(name, sizeof name, "%sadd", prefix);
  return zoo_add2(b, name, inputs, x);
}

static void efficientnet_lite(zoo_builder *b, const zoo_config *c, const lite_variant *v) {
  int x = zoo_input(b, c->height, c->width);
  x = conv_bn(b, "", "_conv_stem", "_bn0", x, 32, 3, 2); /* the stem is not scaled */
  x = relu6(b, "", "stem_relu6", x);
  int index = 0;
  for (int s = 0; s < 7; s++) {
    int first_or_last = s == 0 || s == 6; /* fix_head_stem: their repeats are not scaled */
    int repeats =
        first_or_last ? lite_stages[s].repeats : (int)ceil(v->depth * lite_stages[s].repeats);
    int in = s == 0 ? 32 : round_filters(lite_stages[s].in, v->width);
    int out = round_filters(lite_stages[s].out, v->width);
    for (int r = 0; r < repeats; r++) {
      x = mbconv(b, index++, x, r == 0 ? in : out, out, lite_stages[s].kernel,
                 r == 0 ? lite_stages[s].stride : 1, lite_stages[s].expand);
    }
  }
  x = conv_bn(b, "", "_conv_head", "_bn1", x, 1280, 1, 1); /* the head is not scaled */
  x = relu6(b, "", "head_relu6", x);
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, "_avg_pooling", "_max_pooling");
    return;
  }
  x = zoo_global_pool(b, "_avg_pooling", x, 0, 0);
  x = zoo_dropout(b, "_dropout", x, (float)v->dropout);
  zoo_dense(b, "_fc", x, c->classes, cn_act_softmax());
}

void zoo_efficientnet_lite0(zoo_builder *b, const zoo_config *c) {
  static const lite_variant v = {1.0, 1.0, 0.2};
  efficientnet_lite(b, c, &v);
}

void zoo_efficientnet_lite1(zoo_builder *b, const zoo_config *c) {
  static const lite_variant v = {1.0, 1.1, 0.2};
  efficientnet_lite(b, c, &v);
}

void zoo_efficientnet_lite2(zoo_builder *b, const zoo_config *c) {
  static const lite_variant v = {1.1, 1.2, 0.3};
  efficientnet_lite(b, c, &v);
}
