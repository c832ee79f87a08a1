/* libFuzzer target for cn_sessions_load (training-loop checkpoints): each input is written to a
 * file and loaded into two small sessions (Adam and SGD with momentum, a model with
 * BatchNormalization and Dropout) with 8 bytes of user state; a load that succeeds is followed by
 * one training step. Build as the other targets (docs/training.md); seeds: files written by
 * cn_sessions_save, e.g. those tests/test_session_checkpoint.c writes (keep one with
 * CN_KEEP_TEST_FILES=1), then
 *   ./fuzz_sessions -max_len=65536 corpus/ */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convnet/convnet.h"

enum { SIDE = 6, OUT = 3, N = 2 };

static cn_model *model(const char *name) {
  cn_net *net = NULL;
  cn_model *m = NULL;
  if (cn_net_new(name, &net) != CN_OK) return NULL;
  cn_sym x = cn_net_input(net, "x", 3, (int64_t[]){SIDE, SIDE, 1});
  x = cn_net_conv2d(
      net, x,
      &(cn_conv2d_options){.name = "conv", .filters = 4, .kernel_size = {3, 3}, .padding = "same"});
  x = cn_net_batch_norm(net, x, &(cn_batch_norm_options){.name = "bn"});
  x = cn_net_dropout(net, x, 0.3f, "drop");
  x = cn_net_flatten(net, x, "flat");
  x = cn_net_dense(net, x, &(cn_dense_options){.name = "out", .units = OUT});
  if (cn_net_build(net, &x, 1, &m) != CN_OK) m = NULL;
  cn_net_free(net);
  return m;
}

static cn_session *sessions[N];

static void setup(void) {
  const char *opt[N] = {"adam", "sgd"};
  const char *names[N] = {"a", "b"};
  for (int k = 0; k < N; k++) {
    cn_model *m = model(names[k]);
    cn_session_options o = {
        .loss = "mse", .optimizer = opt[k], .momentum = k ? 0.9f : 0, .max_batch = 2};
    if (!m || cn_session_new(m, &o, &sessions[k]) != CN_OK) abort();
    cn_model_free(m);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!sessions[0]) {
    setup();
    snprintf(path, sizeof path, "/tmp/fuzz_sessions_%d.ckpt", (int)getpid());
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  size_t wrote = fwrite(data, 1, size, f);
  fclose(f);
  uint64_t user = 0;
  if (wrote == size && cn_sessions_load(path, sessions, N, &user, sizeof user) == CN_OK) {
    float x[2 * SIDE * SIDE] = {0}, y[2 * OUT] = {0};
    for (int k = 0; k < N; k++) cn_session_step(sessions[k], 2, x, y, NULL);
  }
  return 0;
}
