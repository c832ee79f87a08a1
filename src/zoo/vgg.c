/* VGG16 and VGG19 (keras.applications.vgg16 / vgg19): five blocks of 3x3 relu convolutions and
 * 2x2 max pooling, then Flatten and three Dense layers. */
#include <stdio.h>

#include "zoo/zoo.h"

static void vgg(zoo_builder *b, const zoo_config *c, const int *convs_per_block) {
  static const int filters[5] = {64, 128, 256, 512, 512};
  int x = zoo_input(b, c->height, c->width);
  char name[32];
  for (int block = 0; block < 5; block++) {
    for (int i = 0; i < convs_per_block[block]; i++) {
      snprintf(name, sizeof name, "block%d_conv%d", block + 1, i + 1);
      x = zoo_conv(b, name, x, filters[block], 3, 3, 1, CN_PAD_SAME, 1, cn_act_relu());
    }
    snprintf(name, sizeof name, "block%d_pool", block + 1);
    x = zoo_maxpool(b, name, x, 2, 2, CN_PAD_VALID);
  }
  if (!c->include_top) {
    zoo_pooling_top(b, c, x, NULL, NULL);
    return;
  }
  x = zoo_flatten(b, "flatten", x);
  x = zoo_dense(b, "fc1", x, 4096, cn_act_relu());
  x = zoo_dense(b, "fc2", x, 4096, cn_act_relu());
  zoo_dense(b, "predictions", x, c->classes, cn_act_softmax());
}

void zoo_vgg16(zoo_builder *b, const zoo_config *c) {
  static const int convs[5] = {2, 2, 3, 3, 3};
  vgg(b, c, convs);
}

void zoo_vgg19(zoo_builder *b, const zoo_config *c) {
  static const int convs[5] = {2, 2, 4, 4, 4};
  vgg(b, c, convs);
}
