/* libFuzzer target for cn_sessions_load (training-loop checkpoints): each input is written to a
 * file and loaded into two small sessions (Adam and SGD with momentum, a model with
 * BatchNormalization and Dropout) with 8 bytes of user state; a load that succeeds is followed by
 * one training step. Build as the other targets (docs/training.md); seeds: files written by
 * cn_sessions_save for these very sessions: with CN_FUZZ_SESSIONS_SEED=PATH in the environment
 * the target takes one training step, saves its sessions there and exits (fuzz/make_corpus.py
 * does this), then
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

/* Writes a seed that loads (after one step, so the optimizer slots are not all zero). */
static void write_seed(const char *seed_path) {
  float x[2 * SIDE * SIDE] = {0}, y[2 * OUT] = {0};
  x[7] = y[1] = 1;
  for (int k = 0; k < N; k++)
    if (cn_session_step(sessions[k], 2, x, y, NULL) != CN_OK) abort();
  uint64_t user = 0x0123456789abcdefu;
  if (cn_sessions_save(seed_path, sessions, N, &user, sizeof user) != CN_OK) abort();
  exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  const char *seed = getenv("CN_FUZZ_SESSIONS_SEED");
  if (seed && *seed) {
    setup();
    write_seed(seed);
  }
  return 0;
}

static char path[64];

static void remove_input_file(void) {
  unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!path[0]) {
    if (!sessions[0]) setup();
    snprintf(path, sizeof path, "/tmp/fuzz_sessions_%d.ckpt", (int)getpid());
    atexit(remove_input_file);
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
