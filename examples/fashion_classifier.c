/* Lesson 1: a small CNN learns Fashion-MNIST, written with the public API only.
 *
 *   fashion_classifier [DATA_DIR [EPOCHS [TRAIN_SAMPLES [OUT_PREFIX]]]]
 *
 * DATA_DIR holds the four IDX files (default: /usr/share/datasets/fashion-mnist, from Debian's
 * dataset-fashion-mnist). The program builds the network layer by layer (convnet/layers.h), draws
 * its weights from Keras's initializers, trains it with Adam one batch at a time (cn_session),
 * prints the test accuracy after every epoch, saves the model as OUT_PREFIX.cnm and draws the
 * first 32 test images it gets wrong into OUT_PREFIX_mistakes.png. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, CLASSES = 10, BATCH = 64 };

static const char *const names[CLASSES] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                           "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                           "Bag",         "Ankle boot"};

static int fail(void) {
  fprintf(stderr, "fashion_classifier: %s\n", cn_last_error());
  return 1;
}

/* images (n x 28 x 28, scaled to [0, 1]) and labels of one set ("train" or "t10k"). */
static cn_status load_set(const char *dir, const char *set, float **x, float **y, int64_t *n) {
  cn_status st = fm_load_images(dir, set, x, n);
  return st == CN_OK ? fm_load_labels(dir, set, *n, y) : st;
}

/* Conv(32) -> pool -> Conv(64) -> pool -> Flatten -> Dropout(0.3) -> Dense(10, softmax). */
static cn_status build(cn_model **model) {
  cn_net *net;
  cn_status st = cn_net_new("fashion_cnn", &net);
  if (st != CN_OK) return st;
  cn_sym x = cn_net_input(net, "image", 3, (int64_t[]){SIDE, SIDE, 1});
  x = cn_net_conv2d(
      net, x, &(cn_conv2d_options){.filters = 32, .kernel_size = {3, 3}, .activation = "relu"});
  x = cn_net_max_pool2d(net, x, &(cn_pool2d_options){0});
  x = cn_net_conv2d(
      net, x, &(cn_conv2d_options){.filters = 64, .kernel_size = {3, 3}, .activation = "relu"});
  x = cn_net_max_pool2d(net, x, &(cn_pool2d_options){0});
  x = cn_net_flatten(net, x, NULL);
  x = cn_net_dropout(net, x, 0.3f, NULL);
  x = cn_net_dense(net, x, &(cn_dense_options){.units = CLASSES, .activation = "softmax"});
  st = cn_net_build(net, &x, 1, model);
  cn_net_free(net);
  return st == CN_OK ? cn_model_init_weights(*model, 1) : st;
}

static int argmax(const float *p) {
  int best = 0;
  for (int c = 1; c < CLASSES; c++)
    if (p[c] > p[best]) best = c;
  return best;
}

/* Fraction of the test set classified right; wrong[] gets the first mistakes' indices. */
static double accuracy(cn_session *s, const float *x, const float *y, int64_t n, int64_t *wrong,
                       int *n_wrong) {
  float pred[BATCH * CLASSES];
  int64_t right = 0;
  *n_wrong = 0;
  for (int64_t at = 0; at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    if (cn_session_evaluate(s, count, x + at * PIXELS, y + at, NULL, pred) != CN_OK) return -1;
    for (int i = 0; i < count; i++) {
      int ok = argmax(pred + i * CLASSES) == (int)y[at + i];
      right += ok;
      if (!ok && *n_wrong < 32) wrong[(*n_wrong)++] = at + i;
    }
  }
  return (double)right / (double)n;
}

/* One epoch over the training set in a shuffled order. */
static cn_status epoch(cn_session *s, const float *x, const float *y, int64_t n, unsigned seed,
                       double *mean_loss) {
  int64_t *order = fm_shuffled(n, seed);
  float *bx = malloc(sizeof(float) * BATCH * PIXELS), by[BATCH];
  if (!order || !bx) return CN_ERR_NOMEM;
  cn_status st = CN_OK;
  double sum = 0;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    for (int i = 0; i < count; i++) {
      memcpy(bx + i * PIXELS, x + order[at + i] * PIXELS, sizeof(float) * PIXELS);
      by[i] = y[order[at + i]];
    }
    double loss;
    st = cn_session_step(s, count, bx, by, &loss);
    sum += loss * count;
  }
  *mean_loss = sum / (double)n;
  free(order);
  free(bx);
  return st;
}

/* The mistakes, 8 to a row. */
static cn_status draw(const float *x, const int64_t *idx, int n, const char *path) {
  const float **cells = malloc((size_t)(n ? n : 1) * sizeof *cells);
  if (!cells) return CN_ERR_NOMEM;
  for (int k = 0; k < n; k++) cells[k] = x + idx[k] * PIXELS;
  cn_status st = n ? fm_draw_grid(cells, n, 8, path) : CN_OK;
  free(cells);
  return st;
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  int epochs = argc > 2 ? atoi(argv[2]) : 3;
  int64_t limit = argc > 3 ? atoll(argv[3]) : 0;
  const char *out = argc > 4 ? argv[4] : "fashion";
  float *xt = NULL, *yt = NULL, *xv = NULL, *yv = NULL;
  int64_t nt, nv;
  if (load_set(dir, "train", &xt, &yt, &nt) != CN_OK ||
      load_set(dir, "t10k", &xv, &yv, &nv) != CN_OK)
    return fail();
  if (limit > 0 && limit < nt) nt = limit;
  cn_model *model;
  cn_session *s;
  if (build(&model) != CN_OK) return fail();
  cn_session_options o = {.loss = "sparse_categorical_crossentropy",
                          .optimizer = "adam",
                          .max_batch = BATCH,
                          .seed = 1};
  if (cn_session_new(model, &o, &s) != CN_OK) return fail();
  int64_t wrong[32];
  int n_wrong = 0;
  for (int e = 1; e <= epochs; e++) {
    double loss;
    if (epoch(s, xt, yt, nt, (unsigned)e, &loss) != CN_OK) return fail();
    double acc = accuracy(s, xv, yv, nv, wrong, &n_wrong);
    printf("epoch %d/%d: loss %.4f, test accuracy %.4f\n", e, epochs, loss, acc);
  }
  if (n_wrong) printf("first mistake: a %s\n", names[(int)yv[wrong[0]]]);
  char path[4096];
  snprintf(path, sizeof path, "%s.cnm", out);
  if (cn_session_sync(s, model) != CN_OK || cn_model_save(model, path) != CN_OK) return fail();
  snprintf(path, sizeof path, "%s_mistakes.png", out);
  if (draw(xv, wrong, n_wrong, path) != CN_OK) return fail();
  printf("wrote %s.cnm and %s\n", out, path);
  cn_session_free(s);
  cn_model_free(model);
  free(xt), free(yt), free(xv), free(yv);
  return 0;
}
