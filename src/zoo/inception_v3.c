/* InceptionV3 (keras.applications.inception_v3). Most layers are unnamed in Keras, so they take
 * Keras 3's automatic names (conv2d, conv2d_1, ..., batch_normalization_N, activation_N,
 * max_pooling2d_N, average_pooling2d_N, concatenate_N); the builder therefore creates layers in
 * exactly the order the Keras definition does. BatchNormalization has scale=False and the
 * default epsilon 1e-3. */
#include <stdio.h>

#include "zoo/zoo.h"

/* conv2d_bn: Conv2D without bias, BatchNormalization without gamma, relu. */
static int conv_bn(zoo_builder *b, int x, int filters, int kh, int kw, int stride, cn_padding pad) {
  x = zoo_conv(b, NULL, x, filters, kh, kw, stride, pad, 0, cn_act_linear());
  x = zoo_bn(b, NULL, x, 1e-3f, 0);
  return zoo_act(b, NULL, x, cn_act_relu(), "Activation");
}

static int conv_same(zoo_builder *b, int x, int filters, int kh, int kw) {
  return conv_bn(b, x, filters, kh, kw, 1, CN_PAD_SAME);
}

static int avg_branch(zoo_builder *b, int x, int filters) {
  x = zoo_avgpool(b, NULL, x, 3, 1, CN_PAD_SAME);
  return conv_same(b, x, filters, 1, 1);
}

/* mixed0..mixed2: 1x1, 5x5, double 3x3 and pooled branches. */
static int block_35(zoo_builder *b, int x, int pool_filters, const char *name) {
  int br[4];
  br[0] = conv_same(b, x, 64, 1, 1);
  br[1] = conv_same(b, x, 48, 1, 1);
  br[1] = conv_same(b, br[1], 64, 5, 5);
  br[2] = conv_same(b, x, 64, 1, 1);
  br[2] = conv_same(b, br[2], 96, 3, 3);
  br[2] = conv_same(b, br[2], 96, 3, 3);
  br[3] = avg_branch(b, x, pool_filters);
  return zoo_concat(b, name, br, 4);
}

/* mixed3: grid reduction 35 -> 17. */
static int reduce_a(zoo_builder *b, int x) {
  int br[3];
  br[0] = conv_bn(b, x, 384, 3, 3, 2, CN_PAD_VALID);
  br[1] = conv_same(b, x, 64, 1, 1);
  br[1] = conv_same(b, br[1], 96, 3, 3);
  br[1] = conv_bn(b, br[1], 96, 3, 3, 2, CN_PAD_VALID);
  br[2] = zoo_maxpool(b, NULL, x, 3, 2, CN_PAD_VALID);
  return zoo_concat(b, "mixed3", br, 3);
}

/* mixed4..mixed7: factorised 7x7 branches with width f. */
static int block_17(zoo_builder *b, int x, int f, const char *name) {
  int br[4];
  br[0] = conv_same(b, x, 192, 1, 1);
  br[1] = conv_same(b, x, f, 1, 1);
  br[1] = conv_same(b, br[1], f, 1, 7);
  br[1] = conv_same(b, br[1], 192, 7, 1);
  br[2] = conv_same(b, x, f, 1, 1);
  br[2] = conv_same(b, br[2], f, 7, 1);
  br[2] = conv_same(b, br[2], f, 1, 7);
  br[2] = conv_same(b, br[2], f, 7, 1);
  br[2] = conv_same(b, br[2], 192, 1, 7);
  br[3] = avg_branch(b, x, 192);
  return zoo_concat(b, name, br, 4);
}

/* mixed8: grid reduction 17 -> 8. */
static int reduce_b(zoo_builder *b, int x) {
  int br[3];
  br[0] = conv_same(b, x, 192, 1, 1);
  br[0] = conv_bn(b, br[0], 320, 3, 3, 2, CN_PAD_VALID);
  br[1] = conv_same(b, x, 192, 1, 1);
  br[1] = conv_same(b, br[1], 192, 1, 7);
  br[1] = conv_same(b, br[1], 192, 7, 1);
  br[1] = conv_bn(b, br[1], 192, 3, 3, 2, CN_PAD_VALID);
  br[2] = zoo_maxpool(b, NULL, x, 3, 2, CN_PAD_VALID);
  return zoo_concat(b, "mixed8", br, 3);
}

/* mixed9 and mixed10: expanded filter banks with split 1x3 / 3x1 outputs. */
static int block_8(zoo_builder *b, int x, int i) {
  char name[32];
  int br[4], pair[2];
  br[0] = conv_same(b, x, 320, 1, 1);
  br[1] = conv_same(b, x, 384, 1, 1);
  pair[0] = conv_same(b, br[1], 384, 1, 3);
  pair[1] = conv_same(b, br[1], 384, 3, 1);
  snprintf(name, sizeof name, "mixed9_%d", i);
  br[1] = zoo_concat(b, name, pair, 2);
  br[2] = conv_same(b, x, 448, 1, 1);
  br[2] = conv_same(b, br[2], 384, 3, 3);
  pair[0] = conv_same(b, br[2], 384, 1, 3);
  pair[1] = conv_same(b, br[2], 384, 3, 1);
  br[2] = zoo_concat(b, NULL, pair, 2);
  br[3] = avg_branch(b, x, 192);
  snprintf(name, sizeof name, "mixed%d", 9 + i);
  return zoo_concat(b, name, br, 4);
}

void zoo_inception_v3(zoo_builder *b, const zoo_config *c) {
  int x = zoo_input(b, c->height, c->width);
  x = conv_bn(b, x, 32, 3, 3, 2, CN_PAD_VALID);
  x = conv_bn(b, x, 32, 3, 3, 1, CN_PAD_VALID);
  x = conv_same(b, x, 64, 3, 3);
  x = zoo_maxpool(b, NULL, x, 3, 2, CN_PAD_VALID);
  x = conv_bn(b, x, 80, 1, 1, 1, CN_PAD_VALID);
  x = conv_bn(b, x, 192, 3, 3, 1, CN_PAD_VALID);
  x = zoo_maxpool(b, NULL, x, 3, 2, CN_PAD_VALID);
  x = block_35(b, x, 32, "mixed0");
  x = block_35(b, x, 64, "mixed1");
  x = block_35(b, x, 64, "mixed2");
  x = reduce_a(b, x);
  x = block_17(b, x, 128, "mixed4");
  x = block_17(b, x, 160, "mixed5");
  x = block_17(b, x, 160, "mixed6");
  x = block_17(b, x, 192, "mixed7");
  x = reduce_b(b, x);
  x = block_8(b, x, 0);
  x = block_8(b, x, 1);
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, NULL, NULL);
    return;
  }
  x = zoo_global_pool(b, "avg_pool", x, 0, 0);
  zoo_dense(b, "predictions", x, c->classes, cn_act_softmax());
}
