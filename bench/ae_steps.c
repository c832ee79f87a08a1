/* The controlled experiment behind bench/ae_steps.py: the autoencoder of examples/autoencoder.c
 * (built the same way, on the public API), its initial weights saved, then trained on batches in a
 * given order, printing the loss of every step.
 *
 *   ae_steps DATA_DIR ORDER.i32 STEPS SEED OPTIMIZER LR OUT_PREFIX
 *
 * ORDER.i32 holds STEPS * 128 training-image indices (int32, native order). Writes
 * OUT_PREFIX.init.cnm (the weights before the first step) and OUT_PREFIX.final.cnm (after the
 * last); prints "step loss" lines. OPTIMIZER is adam or sgd (sgd with LR 1 and one step: the new
 * weights minus the old are minus the gradient). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "../examples/fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, BATCH = 128 };

static int fail(void) {
  fprintf(stderr, "ae_steps: %s\n", cn_last_error());
  return 1;
}

/* examples/autoencoder.c's build(), layer for layer. */
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

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: ae_steps DATA_DIR ORDER.i32 STEPS SEED OPTIMIZER LR OUT_PREFIX\n");
    return 2;
  }
  int steps = atoi(argv[3]);
  uint64_t seed = strtoull(argv[4], NULL, 10);
  float *xt;
  int64_t nt;
  if (fm_load_images(argv[1], "train", &xt, &nt) != CN_OK) return fail();
  int32_t *order = malloc(sizeof(int32_t) * (size_t)steps * BATCH);
  FILE *f = fopen(argv[2], "rb");
  if (!order || !f ||
      fread(order, sizeof(int32_t), (size_t)steps * BATCH, f) != (size_t)steps * BATCH) {
    fprintf(stderr, "ae_steps: cannot read %d batches of indices from %s\n", steps, argv[2]);
    return 1;
  }
  fclose(f);
  cn_model *model;
  cn_session *s;
  char path[4096];
  if (build(&model, seed) != CN_OK) return fail();
  snprintf(path, sizeof path, "%s.init.cnm", argv[7]);
  if (cn_model_save(model, path) != CN_OK) return fail();
  cn_session_options o = {.loss = "binary_crossentropy",
                          .optimizer = argv[5],
                          .lr = strtof(argv[6], NULL),
                          .max_batch = BATCH,
                          .seed = seed};
  if (cn_session_new(model, &o, &s) != CN_OK) return fail();
  float *batch = malloc(sizeof(float) * BATCH * PIXELS);
  for (int step = 0; step < steps; step++) {
    for (int i = 0; i < BATCH; i++)
      memcpy(batch + i * PIXELS, xt + (int64_t)order[step * BATCH + i] * PIXELS,
             sizeof(float) * PIXELS);
    double loss;
    if (cn_session_step(s, BATCH, batch, batch, &loss) != CN_OK) return fail();
    printf("%d %.9g\n", step + 1, loss);
  }
  snprintf(path, sizeof path, "%s.final.cnm", argv[7]);
  if (cn_session_sync(s, model) != CN_OK || cn_model_save(model, path) != CN_OK) return fail();
  cn_session_free(s);
  cn_model_free(model);
  free(batch), free(order), free(xt);
  return 0;
}
