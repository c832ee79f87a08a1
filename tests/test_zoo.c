/* The zoo builders against the numbers Keras 3.15 reports for the same keras.applications calls
 * (weights=None): total parameters, output shape, and the names, classes and order of layers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/model.h"
#include "model/model.h"
#include "testlib.h"

typedef struct zoo_case {
  cn_zoo_options options;
  int64_t params; /* model.count_params() in Keras */
  int rank;       /* output shape per sample */
  int64_t out[3];
} zoo_case;

static const zoo_case cases[] = {
    {{.name = "vgg16"}, 138357544, 1, {1000}},
    {{.name = "vgg16", .no_top = 1, .pooling = "avg"}, 14714688, 1, {512}},
    {{.name = "vgg16", .no_top = 1, .pooling = "max"}, 14714688, 1, {512}},
    {{.name = "vgg16", .no_top = 1}, 14714688, 3, {7, 7, 512}},
    {{.name = "vgg16", .no_top = 1, .height = 32, .width = 32}, 14714688, 3, {1, 1, 512}},
    {{.name = "vgg16", .classes = 10}, 134301514, 1, {10}},
    {{.name = "vgg16", .height = 160, .width = 200}, 98511656, 1, {1000}},
    {{.name = "vgg19"}, 143667240, 1, {1000}},
    {{.name = "vgg19", .no_top = 1, .pooling = "avg"}, 20024384, 1, {512}},
    {{.name = "vgg19", .classes = 10}, 139611210, 1, {10}},
    {{.name = "resnet50"}, 25636712, 1, {1000}},
    {{.name = "resnet50", .no_top = 1, .pooling = "avg"}, 23587712, 1, {2048}},
    {{.name = "resnet50", .no_top = 1, .pooling = "max"}, 23587712, 1, {2048}},
    {{.name = "resnet50", .no_top = 1}, 23587712, 3, {7, 7, 2048}},
    {{.name = "resnet50", .classes = 10}, 23608202, 1, {10}},
    {{.name = "resnet50", .height = 193, .width = 255}, 25636712, 1, {1000}},
    {{.name = "inception_v3"}, 23851784, 1, {1000}},
    {{.name = "inception_v3", .no_top = 1, .pooling = "avg"}, 21802784, 1, {2048}},
    {{.name = "inception_v3", .no_top = 1, .pooling = "max"}, 21802784, 1, {2048}},
    {{.name = "inception_v3", .no_top = 1}, 21802784, 3, {8, 8, 2048}},
    {{.name = "inception_v3", .classes = 10}, 21823274, 1, {10}},
    {{.name = "inception_v3", .height = 75, .width = 75}, 23851784, 1, {1000}},
    {{.name = "inception_v3", .no_top = 1, .height = 150, .width = 211}, 21802784, 3, {3, 5, 2048}},
    {{.name = "mobilenet"}, 4253864, 1, {1000}},
    {{.name = "mobilenet", .no_top = 1, .pooling = "avg"}, 3228864, 1, {1024}},
    {{.name = "mobilenet", .no_top = 1, .pooling = "max"}, 3228864, 1, {1024}},
    {{.name = "mobilenet", .classes = 10}, 3239114, 1, {10}},
    {{.name = "mobilenet", .alpha = 0.25f}, 475544, 1, {1000}},
    {{.name = "mobilenet", .alpha = 0.5f}, 1342536, 1, {1000}},
    {{.name = "mobilenet", .alpha = 0.75f}, 2601976, 1, {1000}},
    {{.name = "mobilenet", .height = 160, .width = 160}, 4253864, 1, {1000}},
    {{.name = "mobilenet", .no_top = 1, .alpha = 0.5f, .height = 129, .width = 97},
     829536,
     3,
     {4, 3, 512}},
    {{.name = "mobilenet_v2"}, 3538984, 1, {1000}},
    {{.name = "mobilenet_v2", .no_top = 1, .pooling = "avg"}, 2257984, 1, {1280}},
    {{.name = "mobilenet_v2", .no_top = 1, .pooling = "max"}, 2257984, 1, {1280}},
    {{.name = "mobilenet_v2", .classes = 10}, 2270794, 1, {10}},
    {{.name = "mobilenet_v2", .alpha = 0.35f}, 1691208, 1, {1000}},
    {{.name = "mobilenet_v2", .alpha = 0.5f}, 1987224, 1, {1000}},
    {{.name = "mobilenet_v2", .alpha = 0.75f}, 2663064, 1, {1000}},
    {{.name = "mobilenet_v2", .alpha = 1.3f}, 5431048, 1, {1000}},
    {{.name = "mobilenet_v2", .alpha = 1.4f}, 6156712, 1, {1000}},
    {{.name = "mobilenet_v2", .height = 96, .width = 96}, 3538984, 1, {1000}},
    {{.name = "mobilenet_v2", .no_top = 1, .height = 97, .width = 131}, 2257984, 3, {4, 5, 1280}},
};

static int64_t total_params(const cn_model *m) {
  int64_t total = 0;
  cn_layer_info info;
  for (size_t i = 0; i < cn_model_layer_count(m); i++)
    if (cn_model_layer_info(m, i, &info) == CN_OK) total += info.params;
  return total;
}

static void check_case(const zoo_case *c) {
  cn_model *m = NULL;
  cn_status st = cn_zoo_build(&c->options, &m);
  CHECK_OK(st);
  if (st != CN_OK) {
    fprintf(stderr, "  building %s (no_top %d, alpha %g)\n", c->options.name, c->options.no_top,
            c->options.alpha);
    return;
  }
  int64_t params = total_params(m);
  CHECK(params == c->params);
  if (params != c->params)
    fprintf(stderr, "  %s: %lld parameters, Keras has %lld\n", cn_model_name(m), (long long)params,
            (long long)c->params);
  cn_shape out = cn_model_output_shape(m);
  int same = out.rank == c->rank;
  for (int i = 0; same && i < c->rank; i++) same = out.dim[i] == c->out[i];
  CHECK(same);
  if (!same) {
    char buf[64];
    fprintf(stderr, "  %s: output %s\n", cn_model_name(m), cn_shape_format(&out, buf, sizeof buf));
  }
  cn_model_free(m);
}

/* The layer at position index has this name and Keras class. */
static void check_layer(const cn_model *m, size_t index, const char *name, const char *type) {
  cn_layer_info info;
  CHECK_OK(cn_model_layer_info(m, index, &info));
  int ok = strcmp(info.name, name) == 0 && strcmp(info.type, type) == 0;
  CHECK(ok);
  if (!ok)
    fprintf(stderr, "  layer %zu is %s (%s), expected %s (%s)\n", index, info.name, info.type, name,
            type);
}

/* A layer with this name exists, of this class, holding this many parameters. */
static void check_named(const cn_model *m, const char *name, const char *type, int64_t params) {
  for (size_t i = 0; i < cn_model_layer_count(m); i++) {
    cn_layer_info info;
    if (cn_model_layer_info(m, i, &info) != CN_OK || strcmp(info.name, name) != 0) continue;
    CHECK(strcmp(info.type, type) == 0);
    CHECK(info.params == params);
    return;
  }
  CHECK(!"layer not found");
  fprintf(stderr, "  no layer %s\n", name);
}

static cn_model *build(const cn_zoo_options *o) {
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(o, &m));
  return m;
}

static void test_mobilenet_layers(void) {
  cn_model *m = build(&(cn_zoo_options){.name = "mobilenet"});
  if (!m) return;
  static const char *const head[][2] = {{"input_layer", "InputLayer"},
                                        {"conv1", "Conv2D"},
                                        {"conv1_bn", "BatchNormalization"},
                                        {"conv1_relu", "ReLU"},
                                        {"conv_dw_1", "DepthwiseConv2D"},
                                        {"conv_dw_1_bn", "BatchNormalization"},
                                        {"conv_dw_1_relu", "ReLU"},
                                        {"conv_pw_1", "Conv2D"},
                                        {"conv_pw_1_bn", "BatchNormalization"},
                                        {"conv_pw_1_relu", "ReLU"},
                                        {"conv_pad_2", "ZeroPadding2D"},
                                        {"conv_dw_2", "DepthwiseConv2D"}};
  for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
    check_layer(m, i, head[i][0], head[i][1]);
  static const char *const tail[][2] = {
      {"conv_pw_13_relu", "ReLU"}, {"global_average_pooling2d", "GlobalAveragePooling2D"},
      {"dropout", "Dropout"},      {"conv_preds", "Conv2D"},
      {"reshape_2", "Reshape"},    {"predictions", "Activation"}};
  size_t n = cn_model_layer_count(m);
  CHECK(n == 91);
  for (size_t i = 0; i < 6 && n >= 6; i++) check_layer(m, n - 6 + i, tail[i][0], tail[i][1]);
  check_named(m, "conv_preds", "Conv2D", 1025000);
  cn_input_spec spec = cn_model_input_spec(m);
  CHECK(spec.preprocess == CN_PRE_TF && spec.height == 224 && spec.width == 224);
  CHECK(strcmp(cn_model_name(m), "mobilenet_1.00_224") == 0);
  cn_model_free(m);
}

static void test_vgg_layers(void) {
  cn_model *m = build(&(cn_zoo_options){.name = "vgg16"});
  if (!m) return;
  CHECK(cn_model_layer_count(m) == 23);
  check_layer(m, 1, "block1_conv1", "Conv2D");
  check_layer(m, 3, "block1_pool", "MaxPooling2D");
  check_layer(m, 19, "flatten", "Flatten");
  check_layer(m, 20, "fc1", "Dense");
  check_named(m, "fc1", "Dense", 102764544);
  check_named(m, "predictions", "Dense", 4097000);
  CHECK(cn_model_input_spec(m).preprocess == CN_PRE_CAFFE);
  cn_model_free(m);
  m = build(&(cn_zoo_options){.name = "vgg19", .no_top = 1, .pooling = "avg"});
  if (!m) return;
  check_named(m, "block5_conv4", "Conv2D", 2359808);
  check_layer(m, cn_model_layer_count(m) - 1, "global_average_pooling2d", "GlobalAveragePooling2D");
  cn_model_free(m);
}

static void test_resnet_layers(void) {
  cn_model *m = build(&(cn_zoo_options){.name = "resnet50", .no_top = 1, .pooling = "max"});
  if (!m) return;
  check_layer(m, 1, "conv1_pad", "ZeroPadding2D");
  check_layer(m, 2, "conv1_conv", "Conv2D");
  check_layer(m, 4, "conv1_relu", "Activation");
  check_named(m, "conv2_block1_0_conv", "Conv2D", 16640);
  check_named(m, "conv2_block1_0_bn", "BatchNormalization", 1024);
  check_named(m, "conv5_block3_add", "Add", 0);
  check_named(m, "conv5_block3_out", "Activation", 0);
  check_layer(m, cn_model_layer_count(m) - 1, "max_pool", "GlobalMaxPooling2D");
  CHECK(cn_model_layer_count(m) == 176);
  cn_model_free(m);
}

static void test_inception_layers(void) {
  cn_model *m = build(&(cn_zoo_options){.name = "inception_v3"});
  if (!m) return;
  CHECK(cn_model_layer_count(m) == 313);
  check_layer(m, 1, "conv2d", "Conv2D");
  check_layer(m, 2, "batch_normalization", "BatchNormalization");
  check_layer(m, 3, "activation", "Activation");
  check_layer(m, 10, "max_pooling2d", "MaxPooling2D");
  check_named(m, "conv2d_93", "Conv2D", 393216);
  check_named(m, "conv2d_40", "Conv2D", 147456);
  check_named(m, "batch_normalization_93", "BatchNormalization", 576); /* no gamma */
  check_named(m, "activation_93", "Activation", 0);
  check_named(m, "mixed9_1", "Concatenate", 0);
  check_named(m, "concatenate_1", "Concatenate", 0);
  check_named(m, "average_pooling2d_8", "AveragePooling2D", 0);
  check_named(m, "max_pooling2d_3", "MaxPooling2D", 0);
  check_named(m, "avg_pool", "GlobalAveragePooling2D", 0);
  CHECK(cn_model_input_spec(m).height == 299);
  cn_model_free(m);
}

static void test_mobilenet_v2_layers(void) {
  cn_model *m = build(&(cn_zoo_options){.name = "mobilenet_v2", .alpha = 0.35f});
  if (!m) return;
  CHECK(cn_model_layer_count(m) == 156);
  check_layer(m, 1, "Conv1", "Conv2D");
  check_layer(m, 4, "expanded_conv_depthwise", "DepthwiseConv2D");
  check_named(m, "Conv1", "Conv2D", 3 * 3 * 3 * 16); /* _make_divisible(11.2, 8) = 16 */
  check_named(m, "block_1_pad", "ZeroPadding2D", 0);
  check_named(m, "block_2_add", "Add", 0);
  check_named(m, "Conv_1", "Conv2D", 112 * 1280);
  CHECK(strcmp(cn_model_name(m), "mobilenetv2_0.35_224") == 0);
  cn_model_free(m);
}

static void check_fails(cn_zoo_options o, cn_status expected, const char *fragment) {
  cn_model *m = (cn_model *)&m; /* must be reset to NULL */
  cn_status st = cn_zoo_build(&o, &m);
  CHECK(st == expected);
  CHECK(m == NULL);
  CHECK(strstr(cn_last_error(), fragment) != NULL);
  if (st == CN_OK) cn_model_free(m);
  if (!strstr(cn_last_error(), fragment))
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", cn_last_error(), fragment);
}

static void test_invalid_options(void) {
  check_fails((cn_zoo_options){.name = "alexnet"}, CN_ERR_ARG, "alexnet");
  check_fails((cn_zoo_options){.name = NULL}, CN_ERR_ARG, "name");
  check_fails((cn_zoo_options){.name = "vgg16", .height = 31, .width = 224}, CN_ERR_ARG,
              "minimum 32");
  check_fails((cn_zoo_options){.name = "inception_v3", .height = 74, .width = 74}, CN_ERR_ARG,
              "minimum 75");
  check_fails((cn_zoo_options){.name = "resnet50", .width = -5}, CN_ERR_ARG, "width");
  check_fails((cn_zoo_options){.name = "vgg16", .height = 100000}, CN_ERR_LIMIT, "height");
  check_fails((cn_zoo_options){.name = "mobilenet", .alpha = 0.35f}, CN_ERR_ARG, "alpha");
  check_fails((cn_zoo_options){.name = "mobilenet_v2", .alpha = 0.25f}, CN_ERR_ARG, "alpha");
  check_fails((cn_zoo_options){.name = "resnet50", .alpha = 0.5f}, CN_ERR_ARG, "alpha");
  check_fails((cn_zoo_options){.name = "vgg16", .no_top = 1, .pooling = "sum"}, CN_ERR_ARG, "sum");
  check_fails((cn_zoo_options){.name = "vgg16", .pooling = "avg"}, CN_ERR_ARG, "no_top");
  check_fails((cn_zoo_options){.name = "vgg16", .classes = -3}, CN_ERR_ARG, "classes");
  CHECK(cn_zoo_build(&(cn_zoo_options){.name = "vgg16"}, NULL) == CN_ERR_ARG);
}

static void test_names(void) {
  const char *const *names = cn_zoo_names();
  int n = 0;
  while (names[n]) n++;
  const char *keras_apps[] = {"vgg16",    "vgg19",     "inception_v3",
                              "resnet50", "mobilenet", "mobilenet_v2"};
  for (size_t k = 0; k < sizeof keras_apps / sizeof *keras_apps; k++) {
    int found = 0;
    for (int i = 0; i < n; i++) found |= strcmp(names[i], keras_apps[k]) == 0;
    CHECK(found);
  }
  for (int i = 0; i < n; i++) {
    cn_model *m = NULL;
    CHECK_OK(cn_zoo_build(
        &(cn_zoo_options){.name = names[i], .no_top = 1, .height = 75, .width = 75}, &m));
    cn_model_free(m);
  }
}

/* Reads a raw float32 file of exactly n values into a new buffer (NULL on any mismatch). */
static float *read_f32(const char *path, size_t n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  float *data = malloc(n * sizeof *data);
  size_t got = data ? fread(data, sizeof *data, n, f) : 0;
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (got != n || extra) {
    free(data);
    return NULL;
  }
  return data;
}

/* The real ImageNet MobileNet 0.25 file (a Keras 2 model.save) loads by name into the zoo model
 * and reproduces the independent NumPy reference on a real photo. */
static void test_real_mobilenet_weights(void) {
  /* cn_test_data returns one static buffer: copy each path before the next lookup */
  char weights[4096], input_path[4096], probs_path[4096];
  const char *found[3] = {cn_test_data("weights/keras/mobilenet_v1_0.25_224.h5"), NULL, NULL};
  if (found[0]) snprintf(weights, sizeof weights, "%s", found[0]);
  found[1] = cn_test_data("reference/mobilenet_v1_0.25_224.chelsea_nearest.input.f32");
  if (found[1]) snprintf(input_path, sizeof input_path, "%s", found[1]);
  found[2] = cn_test_data("reference/mobilenet_v1_0.25_224.chelsea_nearest.probs.f32");
  if (found[2]) snprintf(probs_path, sizeof probs_path, "%s", found[2]);
  if (!found[0] || !found[1] || !found[2]) {
    printf("note: shared MobileNet 0.25 weights or reference absent; real-weights check skipped\n");
    return;
  }
  cn_model *m = build(&(cn_zoo_options){.name = "mobilenet", .alpha = 0.25f});
  float *input = read_f32(input_path, 224 * 224 * 3), *expected = read_f32(probs_path, 1000);
  float *probs = malloc(1000 * sizeof *probs);
  CHECK(m && input && expected && probs);
  if (m && input && expected && probs) {
    CHECK_OK(cn_model_load_weights(m, weights));
    CHECK_OK(cn_model_forward(m, 1, input, probs));
    CHECK(cn_test_max_abs_diff(probs, expected, 1000) < 1e-5);
    CHECK_NEAR(probs[287], 0.260071, 1e-5); /* lynx */
  }
  free(input);
  free(expected);
  free(probs);
  cn_model_free(m);
}

int main(void) {
  test_names();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i]);
  test_mobilenet_layers();
  test_vgg_layers();
  test_resnet_layers();
  test_inception_layers();
  test_mobilenet_v2_layers();
  test_invalid_options();
  test_real_mobilenet_weights();
  return cn_test_finish();
}
