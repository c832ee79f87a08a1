/* src/zoo: the Keras applications and EfficientNet-Lite builders, with the layer names their
 * weight files use. Calls model/, ops/, core/.
 *
 * Internal helpers shared by the zoo builders: validated options and a graph builder whose
 * calls can be chained without checking each one (the first failure sticks and later calls do
 * nothing), so that every builder reads like the Keras definition it mirrors. */
#ifndef CN_ZOO_ZOO_H
#define CN_ZOO_ZOO_H

#include "convnet/model.h"
#include "core/graph.h"
#include "model/model.h"
#include "ops/ops.h"

typedef enum zoo_pooling { ZOO_POOL_NONE, ZOO_POOL_AVG, ZOO_POOL_MAX } zoo_pooling;

/* cn_zoo_options after defaults and validation. */
typedef struct zoo_config {
  int include_top;
  zoo_pooling pooling;
  int height, width;
  int classes;
  double alpha; /* exactly one of the values Keras lists, as Python's double */
} zoo_config;

typedef struct zoo_builder {
  cn_graph *g;
  cn_status status;       /* the first failure; every helper is a no-op returning -1 after it */
  cn_name_counters names; /* Keras's automatic names: conv2d, conv2d_1... */
} zoo_builder;

/* The builder of one family: adds the model's layers to b->g. */
typedef void (*zoo_build_fn)(zoo_builder *b, const zoo_config *c);

void zoo_vgg16(zoo_builder *b, const zoo_config *c);
void zoo_vgg19(zoo_builder *b, const zoo_config *c);
void zoo_resnet50(zoo_builder *b, const zoo_config *c);
void zoo_inception_v3(zoo_builder *b, const zoo_config *c);
void zoo_mobilenet(zoo_builder *b, const zoo_config *c);
void zoo_mobilenet_v2(zoo_builder *b, const zoo_config *c);
void zoo_efficientnet_lite0(zoo_builder *b, const zoo_config *c);
void zoo_efficientnet_lite1(zoo_builder *b, const zoo_config *c);
void zoo_efficientnet_lite2(zoo_builder *b, const zoo_config *c);

/* Layer helpers. Each returns the new node's index, or -1 once the builder has failed.
 * A NULL name takes the next automatic Keras name of the layer's class. */
int zoo_add(zoo_builder *b, const cn_op *op, const char *name, const char *auto_base,
            const int *inputs, int n_inputs, const void *attrs);
int zoo_input(zoo_builder *b, int height, int width);
int zoo_conv(zoo_builder *b, const char *name, int in, int filters, int kh, int kw, int stride,
             cn_padding pad, int use_bias, cn_activation act);
int zoo_depthwise(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad);
int zoo_bn(zoo_builder *b, const char *name, int in, float epsilon, int scale);
/* An activation node shown as Keras class `type` ("ReLU" or "Activation"). */
int zoo_act(zoo_builder *b, const char *name, int in, cn_activation act, const char *type);
int zoo_zeropad(zoo_builder *b, const char *name, int in, int top, int bottom, int left, int right);
int zoo_maxpool(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad);
int zoo_avgpool(zoo_builder *b, const char *name, int in, int k, int stride, cn_padding pad);
int zoo_global_pool(zoo_builder *b, const char *name, int in, int max, int keepdims);
int zoo_dense(zoo_builder *b, const char *name, int in, int units, cn_activation act);
int zoo_flatten(zoo_builder *b, const char *name, int in);
int zoo_reshape1(zoo_builder *b, const char *name, int in, int units);
int zoo_dropout(zoo_builder *b, const char *name, int in, float rate);
int zoo_add2(zoo_builder *b, const char *name, int a, int c);
int zoo_concat(zoo_builder *b, const char *name, const int *inputs, int n_inputs);
/* include_top=False pooling: nothing, or a global pooling named avg_name / max_name (NULL:
 * Keras' automatic names). */
int zoo_pooling_top(zoo_builder *b, const zoo_config *c, int in, const char *avg_name,
                    const char *max_name);
/* Channels (last dimension) of a node's output, 0 once the builder has failed. */
int zoo_channels(const zoo_builder *b, int node);
/* Spatial size (dimension 0 or 1) of a node's output. */
int64_t zoo_dim(const zoo_builder *b, int node, int axis);

#endif
