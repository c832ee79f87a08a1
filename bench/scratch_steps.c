/* The controlled experiment behind bench/scratch_steps.py: a Keras architecture (the from-scratch
 * benchmark's mnist_cnn.json) initialised from its initializers, its initial weights saved, then
 * trained with sparse categorical cross-entropy on Fashion-MNIST batches in a given order,
 * printing the loss of every step.
 *
 *   scratch_steps MODEL.json DATA_DIR ORDER.i32 STEPS SEED OUT_PREFIX [OPTIMIZER LR]
 *
 * ORDER.i32 holds STEPS * 128 training-image indices (int32, native order). OPTIMIZER: adam
 * (default, lr 1e-3) or sgd (with LR 1 and one step, the old weights minus the new are the
 * gradient). Writes OUT_PREFIX.init.cnm and OUT_PREFIX.final.cnm; prints
 * "step loss" lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "../examples/fashion_mnist.h"

enum { PIXELS = FM_PIXELS, BATCH = 128 };

static int fail(void) {
  fprintf(stderr, "scratch_steps: %s\n", cn_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7 && argc != 9) {
    fprintf(stderr, "usage: scratch_steps MODEL.json DATA_DIR ORDER.i32 STEPS SEED OUT_PREFIX "
                    "[OPTIMIZER LR]\n");
    return 2;
  }
  int steps = atoi(argv[4]);
  uint64_t seed = strtoull(argv[5], NULL, 10);
  float *xt, *yt;
  int64_t nt;
  if (fm_load_images(argv[2], "train", &xt, &nt) != CN_OK || fm_load_labels(argv[2], "train", &yt))
    return fail();
  size_t n = (size_t)steps * BATCH;
  int32_t *order = malloc(sizeof(int32_t) * n);
  FILE *f = fopen(argv[3], "rb");
  if (!order || !f || fread(order, sizeof(int32_t), n, f) != n) {
    fprintf(stderr, "scratch_steps: cannot read %d batches of indices from %s\n", steps, argv[3]);
    return 1;
  }
  fclose(f);
  cn_model *model;
  cn_session *s;
  char path[4096];
  if (cn_model_load(argv[1], &model) != CN_OK || cn_model_init_weights(model, seed) != CN_OK)
    return fail();
  snprintf(path, sizeof path, "%s.init.cnm", argv[6]);
  if (cn_model_save(model, path) != CN_OK) return fail();
  cn_session_options o = {.loss = "sparse_categorical_crossentropy",
                          .optimizer = argc > 7 ? argv[7] : "adam",
                          .lr = argc > 8 ? strtof(argv[8], NULL) : 0.001f,
                          .max_batch = BATCH,
                          .seed = seed};
  if (cn_session_new(model, &o, &s) != CN_OK) return fail();
  float *x = malloc(sizeof(float) * BATCH * PIXELS), y[BATCH];
  for (int step = 0; step < steps; step++) {
    for (int i = 0; i < BATCH; i++) {
      int64_t k = order[step * BATCH + i];
      memcpy(x + i * PIXELS, xt + k * PIXELS, sizeof(float) * PIXELS);
      y[i] = yt[k];
    }
    double loss;
    if (cn_session_step(s, BATCH, x, y, &loss) != CN_OK) return fail();
    printf("%d %.9g\n", step + 1, loss);
  }
  snprintf(path, sizeof path, "%s.final.cnm", argv[6]);
  if (cn_session_sync(s, model) != CN_OK || cn_model_save(model, path) != CN_OK) return fail();
  cn_session_free(s);
  cn_model_free(model);
  free(x), free(order), free(xt), free(yt);
  return 0;
}
