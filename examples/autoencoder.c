/* Lesson 2: a convolutional autoencoder squeezes Fashion-MNIST through a 7 x 7 x 16 code and
 * draws it back, written with the public API only.
 *
 *   autoencoder [DATA_DIR [EPOCHS [TRAIN_SAMPLES [OUT_PREFIX [SEED]]]]]
 *
 * Encoder: two Conv2D with stride 2 (28 -> 14 -> 7); decoder: two Conv2DTranspose with stride 2
 * (7 -> 14 -> 28) and a Conv2D with a sigmoid, trained to reproduce its input with binary
 * cross-entropy and Adam (the Keras tutorial's recipe). It prints the test reconstruction MSE
 * after every epoch, saves the model as OUT_PREFIX.cnm and draws ten test images (top row) and
 * their reconstructions (bottom row) into OUT_PREFIX.png. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, BATCH = 128, SHOWN = 10 };

static int fail(void) {
  fprintf(stderr, "autoencoder: %s\n", cn_last_error());
  return 1;
}

static cn_status build(cn_model **model, uint64_t seed) {
  cn_net *net;
  cn_status st = cn_net_new("autoencoder", &net);
  if (st != CN_OK) return st;
  cn_sym x = cn_net_input(net, "image", 3, (int64_t[]){SIDE, SIDE, 1});
  x = cn_net_conv2d(net, x,
                    &(cn_conv2d_options){.filters = 32,
                                         .kernel_size = {3, 3},
                                         .strides = {2, 2},
                                         .padding = "same",
                                         .activation = "relu"});
  x = cn_net_conv2d(net, x,
                    &(cn_conv2d_options){.name = "code",
                                         .filters = 16,
                                         .kernel_size = {3, 3},
                                         .strides = {2, 2},
                                         .padding = "same",
                                         .activation = "relu"});
  x = cn_net_conv2d_transpose(net, x,
                              &(cn_conv2d_transpose_options){.filters = 16,
                                                             .kernel_size = {3, 3},
                                                             .strides = {2, 2},
                                                             .padding = "same",
                                                             .activation = "relu"});
  x = cn_net_conv2d_transpose(net, x,
                              &(cn_conv2d_transpose_options){.filters = 32,
                                                             .kernel_size = {3, 3},
                                                             .strides = {2, 2},
                                                             .padding = "same",
                                                             .activation = "relu"});
  x = cn_net_conv2d(
      net, x,
      &(cn_conv2d_options){
          .filters = 1, .kernel_size = {3, 3}, .padding = "same", .activation = "sigmoid"});
  st = cn_net_build(net, &x, 1, model);
  cn_net_free(net);
  return st == CN_OK ? cn_model_init_weights(*model, seed) : st;
}

/* One epoch of reconstruction steps in a shuffled order (the targets are the inputs). */
static cn_status epoch(cn_session *s, const float *x, int64_t n, unsigned seed) {
  int64_t *order = fm_shuffled(n, seed);
  float *batch = malloc(sizeof(float) * BATCH * PIXELS);
  if (!order || !batch) return CN_ERR_NOMEM;
  cn_status st = CN_OK;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    fm_gather(x, order, at, count, batch);
    st = cn_session_step(s, count, batch, batch, NULL);
  }
  free(order);
  free(batch);
  return st;
}

/* Mean squared error of the reconstructions of the whole test set; the first SHOWN into shown. */
static double test_mse(cn_session *s, const float *x, int64_t n, float *shown) {
  float *y = malloc(sizeof(float) * BATCH * PIXELS);
  double sum = 0;
  for (int64_t at = 0; y && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    const float *in = x + at * PIXELS;
    if (cn_session_evaluate(s, count, in, in, NULL, y) != CN_OK) break;
    for (int64_t i = 0; i < (int64_t)count * PIXELS; i++) sum += (y[i] - in[i]) * (y[i] - in[i]);
    if (at == 0) memcpy(shown, y, sizeof(float) * SHOWN * PIXELS);
  }
  free(y);
  return sum / (double)(n * PIXELS);
}

/* Originals on top, reconstructions below. */
static cn_status draw(const float *top, const float *bottom, const char *path) {
  const float *cells[2 * SHOWN];
  for (int k = 0; k < SHOWN; k++)
    cells[k] = top + k * PIXELS, cells[SHOWN + k] = bottom + k * PIXELS;
  return fm_draw_grid(cells, 2 * SHOWN, SHOWN, path);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  int epochs = argc > 2 ? atoi(argv[2]) : 10;
  int64_t limit = argc > 3 ? atoll(argv[3]) : 0;
  const char *out = argc > 4 ? argv[4] : "autoencoder";
  uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
  float *xt = NULL, *xv = NULL, shown[SHOWN * PIXELS];
  int64_t nt, nv;
  if (fm_load_images(dir, "train", &xt, &nt) != CN_OK ||
      fm_load_images(dir, "t10k", &xv, &nv) != CN_OK)
    return fail();
  if (limit > 0 && limit < nt) nt = limit;
  cn_model *model;
  cn_session *s;
  if (build(&model, seed) != CN_OK) return fail();
  cn_session_options o = {
      .loss = "binary_crossentropy", .optimizer = "adam", .max_batch = BATCH, .seed = seed};
  if (cn_session_new(model, &o, &s) != CN_OK) return fail();
  for (int e = 1; e <= epochs; e++) {
    if (epoch(s, xt, nt, (unsigned)(e + 1000 * seed)) != CN_OK) return fail();
    printf("epoch %d/%d: test reconstruction MSE %.5f\n", e, epochs, test_mse(s, xv, nv, shown));
  }
  char path[4096];
  snprintf(path, sizeof path, "%s.cnm", out);
  if (cn_session_sync(s, model) != CN_OK || cn_model_save(model, path) != CN_OK) return fail();
  snprintf(path, sizeof path, "%s.png", out);
  if (draw(xv, shown, path) != CN_OK) return fail();
  printf("wrote %s.cnm and %s\n", out, path);
  cn_session_free(s);
  cn_model_free(model);
  free(xt), free(xv);
  return 0;
}
