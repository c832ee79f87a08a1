/* Checkpoints of training loops of one's own (cn_sessions_save / cn_sessions_load): K steps
 * straight equal k steps, a save, everything freed, new sessions loaded, K - k steps, bit for bit
 * (weights, BatchNormalization statistics, optimizer slots, losses, outputs), for Adam and SGD
 * with momentum on a model with BatchNormalization and Dropout, two sessions and the caller's
 * state in one file; files of other models, optimizers or sessions, and damaged files, are refused
 * without changing anything. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convnet/convnet.h"
#include "testlib.h"
#include "train/session_internal.h"

enum { B = 8, SIDE = 6, PIXELS = SIDE * SIDE, OUT = 3, K = 6, SPLIT = 2, N = 2 };

typedef struct user_state {
  int epoch;
  unsigned rng;
} user_state;

/* (6,6,1) -> Conv2D(4) -> BatchNorm -> ReLU -> Dropout(0.3) -> Flatten -> Dense(units), named
 * `name`; weights drawn from init_seed. */
static cn_model *model(const char *name, int units, uint64_t init_seed) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new(name, &net));
  cn_sym x = cn_net_input(net, "x", 3, (int64_t[]){SIDE, SIDE, 1});
  x = cn_net_conv2d(
      net, x,
      &(cn_conv2d_options){.name = "conv", .filters = 4, .kernel_size = {3, 3}, .padding = "same"});
  x = cn_net_batch_norm(net, x, &(cn_batch_norm_options){.name = "bn"});
  x = cn_net_activation(net, x, "relu", "relu");
  x = cn_net_dropout(net, x, 0.3f, "drop");
  x = cn_net_flatten(net, x, "flat");
  x = cn_net_dense(net, x, &(cn_dense_options){.name = "out", .units = units});
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &x, 1, &m));
  cn_net_free(net);
  if (m) CHECK_OK(cn_model_init_weights(m, init_seed));
  return m;
}

static const cn_session_options ADAM = {
    .loss = "mse", .optimizer = "adam", .lr = 0.01f, .beta1 = 0.5f, .max_batch = B, .seed = 7};
static const cn_session_options SGD = {
    .loss = "mse", .optimizer = "sgd", .lr = 0.05f, .momentum = 0.9f, .max_batch = B, .seed = 9};

typedef struct run {
  cn_model *m[N];
  cn_session *s[N];
} run;

/* Two models (named a and b) and their sessions (Adam, SGD with momentum). */
static void open_run(run *r, uint64_t init_seed) {
  r->m[0] = model("a", OUT, init_seed);
  r->m[1] = model("b", OUT, init_seed + 1);
  r->s[0] = r->s[1] = NULL;
  if (r->m[0]) CHECK_OK(cn_session_new(r->m[0], &ADAM, &r->s[0]));
  if (r->m[1]) CHECK_OK(cn_session_new(r->m[1], &SGD, &r->s[1]));
}

static void close_run(run *r) {
  for (int k = 0; k < N; k++) cn_session_free(r->s[k]), cn_model_free(r->m[k]);
}

/* Step t's batch, the same in every run. */
static void batch_of(int t, float *x, float *y) {
  unsigned seed = 100u + (unsigned)t;
  for (int i = 0; i < B * PIXELS; i++) x[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
  for (int i = 0; i < B * OUT; i++) y[i] = (float)rand_r(&seed) / (float)RAND_MAX;
}

/* Steps from .. to - 1 of both sessions; their losses into loss[t][k]. */
static void steps(run *r, int from, int to, double loss[K][N]) {
  float x[B * PIXELS], y[B * OUT];
  for (int t = from; t < to; t++) {
    batch_of(t, x, y);
    for (int k = 0; k < N && r->s[k]; k++) CHECK_OK(cn_session_step(r->s[k], B, x, y, &loss[t][k]));
  }
}

static int same_floats(const float *a, const float *b, size_t n) {
  return a && b && memcmp(a, b, n * sizeof(float)) == 0;
}

/* Every weight (moving statistics included) and optimizer slot, and the inference outputs. */
static void check_same_state(cn_session *a, cn_session *b) {
  size_t n = cn_trainer_param_floats(a->trainer);
  CHECK(n == cn_trainer_param_floats(b->trainer));
  CHECK(same_floats(cn_trainer_params(a->trainer), cn_trainer_params(b->trainer), n));
  CHECK(a->opt.n_slots == b->opt.n_slots && a->opt.iterations == b->opt.iterations);
  for (int i = 0; i < a->opt.n_slots; i++)
    CHECK(same_floats(a->opt.slot[i], b->opt.slot[i], a->opt.n));
  float x[B * PIXELS], y[B * OUT], pa[B * OUT], pb[B * OUT];
  batch_of(99, x, y);
  CHECK_OK(cn_session_evaluate(a, B, x, y, NULL, pa));
  CHECK_OK(cn_session_evaluate(b, B, x, y, NULL, pb));
  CHECK(same_floats(pa, pb, B * OUT));
}

static char path[256], other[256];

/* k steps, save, free, new sessions from differently initialised models, load, K - k steps. */
static void test_resume_is_exact(void) {
  run straight, first, second;
  double want[K][N], got[K][N];
  open_run(&straight, 1);
  steps(&straight, 0, K, want);
  open_run(&first, 1);
  steps(&first, 0, SPLIT, got);
  user_state u = {SPLIT, 12345u}, back = {0, 0};
  CHECK_OK(cn_sessions_save(path, first.s, N, &u, sizeof u));
  close_run(&first);
  open_run(&second, 50); /* other initial weights: the load must overwrite them all */
  CHECK_OK(cn_sessions_load(path, second.s, N, &back, sizeof back));
  CHECK(back.epoch == SPLIT && back.rng == 12345u);
  steps(&second, SPLIT, K, got);
  for (int t = SPLIT; t < K; t++)
    for (int k = 0; k < N; k++) CHECK(memcmp(&want[t][k], &got[t][k], sizeof(double)) == 0);
  for (int k = 0; k < N; k++) check_same_state(straight.s[k], second.s[k]);
  close_run(&straight);
  close_run(&second);
}

/* A refused load leaves the sessions as they were. */
static void check_refused(cn_session *const *s, int n, size_t user_bytes, cn_status want,
                          const char *message) {
  size_t floats = cn_trainer_param_floats(s[0]->trainer);
  float *before = malloc(floats * sizeof *before);
  if (!before) return;
  memcpy(before, cn_trainer_params(s[0]->trainer), floats * sizeof *before);
  user_state u = {0, 0};
  char big[2 * sizeof u] = {0};
  CHECK(cn_sessions_load(path, s, n, user_bytes > sizeof u ? (void *)big : (void *)&u,
                         user_bytes) == want);
  if (!strstr(cn_last_error(), message))
    fprintf(stderr, "expected \"%s\" in: %s\n", message, cn_last_error());
  CHECK(strstr(cn_last_error(), message) != NULL);
  CHECK(same_floats(before, cn_trainer_params(s[0]->trainer), floats));
  free(before);
}

static void test_mismatch_refused(void) {
  run r;
  open_run(&r, 1);
  user_state u = {1, 2};
  CHECK_OK(cn_sessions_save(path, r.s, N, &u, sizeof u));
  cn_session *swapped[N] = {r.s[1], r.s[0]};
  check_refused(swapped, N, sizeof u, CN_ERR_ARG,
                "session 0 is of model \"a\" in the file, not \"b\"");
  check_refused(r.s, 1, sizeof u, CN_ERR_ARG, "the file holds 2 sessions, not 1");
  check_refused(r.s, N, 2 * sizeof u, CN_ERR_ARG, "user: expected U8 (16,), file has U8 (8,)");
  check_refused(r.s, N, 0, CN_ERR_ARG, "the sessions have no user");
  cn_model *wide = model("a", OUT + 1, 1), *plain = model("b", OUT, 2);
  cn_session *ws = NULL, *ps = NULL;
  CHECK_OK(cn_session_new(wide, &ADAM, &ws));
  cn_session_options no_momentum = SGD;
  no_momentum.momentum = 0;
  CHECK_OK(cn_session_new(plain, &no_momentum, &ps));
  cn_session *shapes[N] = {ws, r.s[1]}, *slots[N] = {r.s[0], ps};
  if (ws)
    check_refused(shapes, N, sizeof u, CN_ERR_ARG, "session0/out/kernel: expected F32 (144,4)");
  if (ps)
    check_refused(slots, N, sizeof u, CN_ERR_ARG, "the sessions have no session1/optimizer/slot0");
  cn_session_free(ps);
  cn_model_free(plain);
  cn_session_options as_sgd = SGD;
  CHECK_OK(cn_session_new(r.m[0], &as_sgd, &ps));
  cn_session *kinds[N] = {ps, r.s[1]};
  if (ps)
    check_refused(kinds, N, sizeof u, CN_ERR_ARG, "session 0 (a) was trained with adam, not sgd");
  cn_session_free(ps);
  cn_session_free(ws);
  cn_model_free(wide);
  close_run(&r);
}

static long file_size(const char *p) {
  FILE *f = fopen(p, "rb");
  long n = -1;
  if (f && fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (f) fclose(f);
  return n;
}

/* Copies the first `keep` bytes of path to other, flipping byte `flip` (-1: none). */
static void damaged_copy(long keep, long flip) {
  FILE *in = fopen(path, "rb"), *out = fopen(other, "wb");
  for (long i = 0; in && out && i < keep; i++) {
    int c = fgetc(in);
    fputc(i == flip ? c ^ 0x40 : c, out);
  }
  if (in) fclose(in);
  if (out) fclose(out);
}

static void test_damaged_refused(void) {
  run r;
  open_run(&r, 1);
  user_state u = {1, 2};
  CHECK_OK(cn_sessions_save(path, r.s, N, &u, sizeof u));
  long size = file_size(path);
  CHECK(size > 1000);
  const long cuts[] = {0, 7, 8, 100, size / 2, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
    damaged_copy(cuts[i], -1);
    CHECK(cn_sessions_load(other, r.s, N, &u, sizeof u) != CN_OK);
    CHECK(strstr(cn_last_error(), other) != NULL);
  }
  damaged_copy(size, size - 3); /* a weight's byte: the checksum */
  CHECK(cn_sessions_load(other, r.s, N, &u, sizeof u) != CN_OK);
  CHECK(strstr(cn_last_error(), other) != NULL);
  CHECK(cn_sessions_load("/nonexistent/x.ckpt", r.s, N, &u, sizeof u) == CN_ERR_IO);
  /* A model file is a safetensors file too, but not a sessions checkpoint. */
  CHECK_OK(cn_model_save(r.m[0], other));
  CHECK(cn_sessions_load(other, r.s, N, &u, sizeof u) == CN_ERR_FORMAT);
  CHECK(strstr(cn_last_error(), "not a convnet sessions checkpoint") != NULL);
  CHECK(cn_sessions_save(path, r.s, 0, NULL, 0) == CN_ERR_ARG);
  CHECK(cn_sessions_load(path, r.s, N, NULL, sizeof u) == CN_ERR_ARG);
  close_run(&r);
}

int main(void) {
  snprintf(path, sizeof path, "/tmp/cn_test_sessions_%d.ckpt", (int)getpid());
  snprintf(other, sizeof other, "/tmp/cn_test_sessions_%d.bad", (int)getpid());
  test_resume_is_exact();
  test_mismatch_refused();
  test_damaged_refused();
  if (!getenv("CN_KEEP_TEST_FILES")) unlink(path), unlink(other);
  return cn_test_finish();
}
