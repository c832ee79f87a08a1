/* src/synth's foundations on MobileNet 0.25 (real weights, 64 x 64): cn_trainer_backward_seeds
 * (gradients seeded at two layers at once equal the sum of two single-layer backward passes),
 * the default layers, and the errors for a layer that is not spatial and images of the wrong
 * size. (The style objective's gradient is checked against PyTorch autograd in
 * tests/oracle/test_style_torch.py: finite differences through ReLU6 kinks in float32 are too
 * noisy to test it here.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "core/graph.h"
#include "core/rng.h"
#include "model/model.h"
#include "testlib.h"
#include "train/trainer.h"

enum { SIZE = 64 };

static cn_model *open_model(void) {
  const char *path = cn_test_data("weights/keras/mobilenet_v1_0.25_224.h5");
  if (!path) cn_test_skip("mobilenet_v1_0.25_224.h5 not present");
  cn_zoo_options zo = {.name = "mobilenet", .alpha = 0.25f, .height = SIZE, .width = SIZE};
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(&zo, &m));
  CHECK_OK(cn_model_load_weights(m, path));
  return m;
}

static cn_trainer *cut(const cn_model *m, const int *nodes, int n) {
  cn_graph *g;
  CHECK_OK(cn_graph_clone(m->graph, &g));
  for (int i = 0; i < g->n_nodes; i++) g->nodes[i].trainable = 0;
  CHECK_OK(cn_graph_set_outputs(g, nodes, n));
  cn_trainer_options o = {.max_batch = 1, .input_grad = 1, .keep_output_activation = 1};
  cn_trainer *t = NULL;
  CHECK_OK(cn_trainer_new(g, &o, &t));
  cn_graph_free(g);
  return t;
}

static float *noise(size_t n, uint64_t seed, float scale) {
  float *x = malloc(n * sizeof *x);
  uint64_t key = cn_rng_key(seed, 1, 0);
  for (size_t i = 0; i < n; i++) x[i] = scale * cn_rng_normal_at(key, i);
  return x;
}

static void test_backward_seeds(cn_model *m) {
  int deep = cn_graph_find(m->graph, "conv_pw_4_relu"),
      shallow = cn_graph_find(m->graph, "conv_pw_2_relu");
  CHECK(deep > shallow && shallow > 0);
  size_t nx = (size_t)SIZE * SIZE * 3;
  size_t nd = (size_t)cn_shape_numel(&m->graph->nodes[deep].shape);
  size_t ns = (size_t)cn_shape_numel(&m->graph->nodes[shallow].shape);
  float *x = noise(nx, 1, 0.5f), *gd = noise(nd, 2, 1.0f), *gs = noise(ns, 3, 1.0f);
  const float *out;
  cn_trainer *both = cut(m, (int[]){deep, shallow}, 2);
  CHECK_OK(cn_trainer_forward(both, 1, x, 0, 0, &out));
  CHECK_OK(cn_trainer_backward_seeds(both, 2, (int[]){deep, shallow}, (const float *[]){gd, gs}));
  float *sum = malloc(nx * sizeof *sum);
  memcpy(sum, cn_trainer_input_grad(both), nx * sizeof *sum);
  cn_trainer *td = cut(m, &deep, 1), *ts = cut(m, &shallow, 1);
  CHECK_OK(cn_trainer_forward(td, 1, x, 0, 0, &out));
  CHECK_OK(cn_trainer_backward(td, gd));
  CHECK_OK(cn_trainer_forward(ts, 1, x, 0, 0, &out));
  CHECK_OK(cn_trainer_backward(ts, gs));
  const float *a = cn_trainer_input_grad(td), *b = cn_trainer_input_grad(ts);
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < nx; i++) {
    double want = (double)a[i] + b[i];
    err += (sum[i] - want) * (sum[i] - want);
    norm += want * want;
  }
  CHECK(norm > 0 && sqrt(err / norm) < 1e-5);
  /* a node that does not feed the first output carries no gradient */
  CHECK(cn_trainer_backward_seeds(ts, 1, &deep, (const float *[]){gd}) == CN_ERR_ARG);
  cn_trainer_free(both);
  cn_trainer_free(td);
  cn_trainer_free(ts);
  free(x);
  free(gd);
  free(gs);
  free(sum);
}

static cn_image picture(uint64_t seed) {
  cn_image im = {SIZE, SIZE, malloc((size_t)SIZE * SIZE * 3)};
  uint64_t key = cn_rng_key(seed, 2, 0);
  for (size_t i = 0; i < (size_t)SIZE * SIZE * 3; i++) {
    int y = (int)(i / (SIZE * 3)), x = (int)(i / 3 % SIZE);
    float v = 128.0f + 60.0f * sinf(0.2f * (float)(x + 2 * y) + (float)(i % 3)) +
              20.0f * cn_rng_normal_at(key, i);
    im.pixels[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  return im;
}

static void test_errors(cn_model *m) {
  cn_image content = picture(5), style = picture(6);
  cn_style_options o = cn_style_options_default();
  CHECK_OK(cn_synth_default_layers(m, &o.content_layer, o.style_layers, &o.n_style_layers));
  CHECK(strcmp(o.content_layer, "conv_pw_5_relu") == 0 && o.n_style_layers == 4);
  /* errors: a layer that is not spatial, an image of the wrong size */
  cn_image out;
  cn_synth_result r;
  o.content_layer = "reshape_2";
  CHECK(cn_style_transfer(m, &content, &style, &o, &out, &r) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "is not spatial") != NULL);
  o.content_layer = "conv_pw_5_relu";
  cn_image small = {SIZE / 2, SIZE / 2, content.pixels};
  CHECK(cn_style_transfer(m, &content, &small, &o, &out, &r) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "the style image is 32x32") != NULL);
  cn_analogy_options a = cn_analogy_options_default();
  CHECK(cn_image_analogy(m, &content, &small, &content, &a, &out, &r) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "must be the same size") != NULL);
  cn_image_free(&content);
  cn_image_free(&style);
}

int main(void) {
  cn_model *m = open_model();
  test_backward_seeds(m);
  test_errors(m);
  cn_model_free(m);
  return cn_test_finish();
}
