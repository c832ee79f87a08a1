/* Losses (values, finite-difference gradients, Keras reduction), confusion metrics, and each
 * optimizer's first steps on hand-computed numbers, clipping, schedules and parameter ranges. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/core.h"
#include "testlib.h"
#include "train/optim.h"

/* ---- losses -------------------------------------------------------------------------------- */

static void test_loss_values(void) {
  const float logits[3] = {1, 2, 3}, onehot[3] = {0, 0, 1}, cls[1] = {2};
  double expected = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0; /* 0.40760596 */
  CHECK_NEAR(cn_loss(CN_LOSS_CATEGORICAL_CE, 1, 3, logits, onehot, NULL, NULL), expected, 1e-12);
  CHECK_NEAR(cn_loss(CN_LOSS_SPARSE_CE, 1, 3, logits, cls, NULL, NULL), expected, 1e-12);

  const float zero[2] = {0, 0}, half[2] = {1, 0};
  CHECK_NEAR(cn_loss(CN_LOSS_BINARY_CE, 1, 2, zero, half, NULL, NULL), log(2.0), 1e-12);
  const float p[4] = {1, 2, 3, 4}, t[4] = {1, 0, 3, 0};
  /* per-sample means (0 + 4) / 2 and (0 + 16) / 2, then the batch mean */
  CHECK_NEAR(cn_loss(CN_LOSS_MSE, 2, 2, p, t, NULL, NULL), 5.0, 1e-12);
  const float w[2] = {2, 0};
  CHECK_NEAR(cn_loss(CN_LOSS_MSE, 2, 2, p, t, w, NULL), 2.0, 1e-12); /* 2 * 2 / batch */
}

static void test_loss_large_logits(void) {
  const float x[2] = {80, -80}, t[2] = {0, 1}, cls[1] = {1};
  float g[2];
  CHECK_NEAR(cn_loss(CN_LOSS_CATEGORICAL_CE, 1, 2, x, t, NULL, g), 160.0, 1e-9);
  CHECK_NEAR(g[0], 1.0, 1e-7);
  CHECK_NEAR(g[1], -1.0, 1e-7);
  CHECK_NEAR(cn_loss(CN_LOSS_SPARSE_CE, 1, 2, x, cls, NULL, NULL), 160.0, 1e-9);
  /* sigmoid CE: x = 80, z = 0 costs 80; x = -80, z = 1 costs 80 */
  CHECK_NEAR(cn_loss(CN_LOSS_BINARY_CE, 1, 2, x, t, NULL, g), 80.0, 1e-9);
  CHECK_NEAR(g[0], 0.5, 1e-7);
  CHECK_NEAR(g[1], -0.5, 1e-7);
  const float huge[2] = {1e30f, -1e30f};
  CHECK(isfinite(cn_loss(CN_LOSS_CATEGORICAL_CE, 1, 2, huge, t, NULL, g)));
  CHECK(isfinite(g[0]) && isfinite(g[1]));
}

static float uniform(unsigned *state, float lo, float hi) {
  *state = *state * 1664525u + 1013904223u;
  return lo + (hi - lo) * (float)(*state >> 8) / (float)(1u << 24);
}

/* Central differences of the mean loss in double against the analytic gradient. */
static void gradcheck_loss(cn_loss_kind kind, float scale) {
  enum { B = 3, N = 5 };
  unsigned seed = 12345u + (unsigned)kind;
  float x[B * N], t[B * N], w[B] = {1.0f, 0.5f, 2.0f}, g[B * N];
  for (int i = 0; i < B * N; i++) x[i] = uniform(&seed, -scale, scale);
  for (int i = 0; i < B * N; i++) t[i] = uniform(&seed, 0.0f, 1.0f);
  if (kind == CN_LOSS_CATEGORICAL_CE)
    for (int b = 0; b < B; b++) {
      float sum = 0;
      for (int j = 0; j < N; j++) sum += t[b * N + j];
      for (int j = 0; j < N; j++) t[b * N + j] /= sum;
    }
  if (kind == CN_LOSS_SPARSE_CE) t[0] = 4, t[1] = 0, t[2] = 2;
  cn_loss(kind, B, N, x, t, w, g);
  int bad = 0;
  for (int i = 0; i < B * N; i++) {
    /* |p - t| has a kink at p = t: a difference across it is not the derivative. */
    if (kind == CN_LOSS_MAE && fabsf(x[i] - t[i]) < 2e-2f) continue;
    float keep = x[i], up = keep + 1e-2f, down = keep - 1e-2f;
    x[i] = up;
    double lu = cn_loss(kind, B, N, x, t, w, NULL);
    x[i] = down;
    double ld = cn_loss(kind, B, N, x, t, w, NULL);
    x[i] = keep;
    double numeric = (lu - ld) / ((double)up - down);
    if (fabs(numeric - g[i]) > 1e-5 * fmax(1.0, fabs(numeric))) {
      fprintf(stderr, "%s grad[%d]: analytic %.9g numeric %.9g\n", cn_loss_name(kind), i, g[i],
              numeric);
      bad++;
    }
  }
  CHECK(bad == 0);
}

static void test_sparse_invalid_targets(void) {
  const float x[6] = {1, 2, 3, 1, 2, 3};
  const float bad[][2] = {{0, 3}, {0, -1}, {0, 1.5f}, {0, NAN}, {0, 1e30f}};
  for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
    float g[6] = {9, 9, 9, 9, 9, 9};
    CHECK(isnan(cn_loss(CN_LOSS_SPARSE_CE, 2, 3, x, bad[c], NULL, g)));
    CHECK(g[3] == 0 && g[4] == 0 && g[5] == 0); /* the invalid row */
    CHECK(g[0] != 9 && g[0] != 0);              /* the valid one still gets its gradient */
    CHECK(cn_loss_check_targets(CN_LOSS_SPARSE_CE, 2, 3, bad[c]) == CN_ERR_ARG);
  }
  const float ok[2] = {0, 2};
  CHECK_OK(cn_loss_check_targets(CN_LOSS_SPARSE_CE, 2, 3, ok));
  CHECK(isnan(cn_loss(CN_LOSS_MSE, 0, 3, x, x, NULL, NULL)));
  CHECK(isnan(cn_loss(CN_LOSS_COUNT, 1, 3, x, x, NULL, NULL)));
}

/* ---- metrics ------------------------------------------------------------------------------- */

static void test_confusion(void) {
  cn_confusion c;
  CHECK(cn_confusion_init(&c, 0, 1) == CN_ERR_ARG);
  CHECK_OK(cn_confusion_init(&c, 3, 2));
  const float scores[] = {
      0.1f, 0.7f, 0.2f, /* label 1: right */
      0.5f, 0.5f, 0.0f, /* label 1: tie -> predicts 0; label ranks second: top-2 hit */
      0.2f, 0.3f, 0.5f, /* label 0: predicts 2, ranks third: top-2 miss */
      0.4f, 0.4f, 0.4f, /* label 2: three-way tie -> predicts 0, label ranks third */
      0.9f, 0.0f, 0.1f, /* label 7: not a class, ignored */
  };
  const int labels[] = {1, 1, 0, 2, 7};
  cn_confusion_add(&c, 5, scores, labels);
  CHECK(c.total == 4);
  CHECK(c.counts[1 * 3 + 1] == 1 && c.counts[1 * 3 + 0] == 1);
  CHECK(c.counts[0 * 3 + 2] == 1 && c.counts[2 * 3 + 0] == 1);
  CHECK_NEAR(cn_confusion_accuracy(&c), 0.25, 1e-12);
  CHECK_NEAR(cn_confusion_top_k(&c), 0.5, 1e-12);
  CHECK_NEAR(cn_confusion_recall(&c, 1), 0.5, 1e-12);
  CHECK_NEAR(cn_confusion_recall(&c, 0), 0.0, 1e-12);
  CHECK(isnan(cn_confusion_recall(&c, 3)));
  cn_confusion_free(&c);
  CHECK_OK(cn_confusion_init(&c, 2, 5)); /* k beyond the classes: every sample is a hit */
  CHECK(c.k == 2);
  CHECK(isnan(cn_confusion_recall(&c, 0)));
  cn_confusion_free(&c);
}

/* ---- optimizers ---------------------------------------------------------------------------- */

/* Runs `steps` updates of one parameter from p0 with a constant gradient g; returns p. */
static float run_one(const cn_optim_config *cfg, float p0, float g, int steps) {
  cn_optimizer o;
  CHECK_OK(cn_optimizer_init(&o, cfg, 1));
  float p = p0;
  for (int s = 0; s < steps; s++) {
    float grad = g;
    cn_optimizer_step(&o, &p, &grad, NULL, 0);
  }
  CHECK(o.iterations == steps);
  cn_optimizer_free(&o);
  return p;
}

static void test_sgd(void) {
  cn_optim_config c = {.kind = CN_OPTIM_SGD, .lr = 0.1f};
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), 0.95, 1e-7);
  c.momentum = 0.9f; /* m = -0.05, p = 0.95; m = -0.045 - 0.05, p = 0.855 */
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), 0.95, 1e-7);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 2), 0.855, 1e-7);
  c.nesterov = 1; /* p += 0.9 m - lr g: -0.095, then -0.1355 */
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), 0.905, 1e-7);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 2), 0.7695, 1e-7);
  cn_optim_config d = {.kind = CN_OPTIM_SGD}; /* Keras default rate 0.01 */
  CHECK_NEAR(run_one(&d, 0.0f, 1.0f, 1), -0.01, 1e-9);
}

static void test_adam(void) {
  cn_optim_config c = {.kind = CN_OPTIM_ADAM}; /* lr 0.001, betas 0.9, 0.999, eps 1e-7 */
  /* step 1: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1 */
  double g = 0.5, m = 0.1 * g, v = 0.001 * g * g, alpha = 0.001 * sqrt(0.001) / 0.1;
  double p1 = 1.0 - alpha * m / (sqrt(v) + 1e-7);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), p1, 1e-7);
  m = 0.9 * m + 0.1 * g, v = 0.999 * v + 0.001 * g * g;
  alpha = 0.001 * sqrt(1 - 0.999 * 0.999) / (1 - 0.9 * 0.9);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 2), p1 - alpha * m / (sqrt(v) + 1e-7), 1e-7);
  c.weight_decay = 0.004f; /* AdamW: p -= p wd lr before the update */
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), p1 - 0.004 * 0.001, 1e-7);
}

static void test_rmsprop(void) {
  cn_optim_config c = {.kind = CN_OPTIM_RMSPROP}; /* lr 0.001, rho 0.9, eps 1e-7 inside sqrt */
  double g = 0.5, v = 0.1 * g * g, inc = 0.001 * g / sqrt(v + 1e-7);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 1), 1.0 - inc, 1e-7);
  double v2 = 0.9 * v + 0.1 * g * g, inc2 = 0.001 * g / sqrt(v2 + 1e-7);
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 2), 1.0 - inc - inc2, 1e-7);
  c.momentum = 0.5f; /* mom = 0.5 mom + increment; p -= mom */
  CHECK_NEAR(run_one(&c, 1.0f, 0.5f, 2), 1.0 - inc - (0.5 * inc + inc2), 1e-7);
}

static double lr_at(const cn_optim_config *c, int64_t t) {
  cn_optimizer o;
  CHECK_OK(cn_optimizer_init(&o, c, 0));
  o.iterations = t;
  double lr = cn_optimizer_lr(&o);
  cn_optimizer_free(&o);
  return lr;
}

static void test_schedules(void) {
  cn_optim_config c = {.kind = CN_OPTIM_SGD, .lr = 0.1f, .decay = 0.5f};
  CHECK_NEAR(lr_at(&c, 0), 0.1, 1e-8);
  CHECK_NEAR(lr_at(&c, 1), 0.1 / 1.5, 1e-8);
  CHECK_NEAR(lr_at(&c, 2), 0.05, 1e-8);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = 0.1f, .schedule = CN_SCHEDULE_STEP};
  c.step_every = 2, c.step_gamma = 0.5f;
  CHECK_NEAR(lr_at(&c, 1), 0.1, 1e-8);
  CHECK_NEAR(lr_at(&c, 2), 0.05, 1e-8);
  CHECK_NEAR(lr_at(&c, 5), 0.025, 1e-8);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = 0.1f, .schedule = CN_SCHEDULE_COSINE};
  c.total_steps = 4;
  CHECK_NEAR(lr_at(&c, 0), 0.1, 1e-8);
  CHECK_NEAR(lr_at(&c, 2), 0.05, 1e-8);
  CHECK_NEAR(lr_at(&c, 4), 0.0, 1e-8);
  CHECK_NEAR(lr_at(&c, 9), 0.0, 1e-8);
  c.total_steps = 0;
  cn_optimizer o;
  CHECK(cn_optimizer_init(&o, &c, 1) == CN_ERR_ARG);
  c = (cn_optim_config){.kind = CN_OPTIM_ADAM, .beta1 = 1.0f};
  CHECK(cn_optimizer_init(&o, &c, 1) == CN_ERR_ARG);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = -1.0f};
  CHECK(cn_optimizer_init(&o, &c, 1) == CN_ERR_ARG);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .clip_norm = NAN};
  CHECK(cn_optimizer_init(&o, &c, 1) == CN_ERR_ARG);
}

static void test_clipping_and_l2(void) {
  cn_optim_config c = {.kind = CN_OPTIM_SGD, .lr = 1.0f, .clip_norm = 1.0f};
  cn_optimizer o;
  CHECK_OK(cn_optimizer_init(&o, &c, 3));
  float p[3] = {0, 7, 0}, g[3] = {3, 100, 4};
  cn_param_range two[2] = {{0, 1, 1.0f}, {2, 1, 1.0f}}; /* the norm spans both ranges */
  cn_optimizer_step(&o, p, g, two, 2);
  CHECK_NEAR(p[0], -0.6, 1e-7);
  CHECK_NEAR(p[2], -0.8, 1e-7);
  CHECK(p[1] == 7 && g[1] == 100);
  float q[3] = {0, 0, 0}, h[3] = {0.3f, 0, 0.4f}; /* norm 0.5 < 1: unchanged */
  cn_optimizer_step(&o, q, h, two, 2);
  CHECK_NEAR(q[0], -0.3, 1e-7);
  cn_optimizer_free(&o);

  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = 1.0f, .clip_value = 0.5f};
  CHECK_NEAR(run_one(&c, 0.0f, 2.0f, 1), -0.5, 1e-7);
  CHECK_NEAR(run_one(&c, 0.0f, -2.0f, 1), 0.5, 1e-7);
  CHECK_NEAR(run_one(&c, 0.0f, 0.1f, 1), -0.1, 1e-7);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = 1.0f, .l2 = 0.1f};
  CHECK_NEAR(run_one(&c, 2.0f, 0.0f, 1), 1.8, 1e-7);
  c = (cn_optim_config){.kind = CN_OPTIM_SGD, .lr = 0.5f, .weight_decay = 0.1f};
  CHECK_NEAR(run_one(&c, 2.0f, 0.0f, 1), 1.9, 1e-7);
}

static void test_ranges(void) {
  cn_optim_config c = {.kind = CN_OPTIM_SGD, .lr = 1.0f, .momentum = 0.5f};
  cn_optimizer o;
  CHECK_OK(cn_optimizer_init(&o, &c, 6));
  float p[6] = {0}, g[6] = {1, 1, 1, 1, 1, 1};
  cn_param_range r[2] = {{0, 2, 1.0f}, {4, 1, 0.1f}};
  CHECK_OK(cn_optimizer_check_ranges(&o, r, 2));
  cn_optimizer_step(&o, p, g, r, 2);
  CHECK(p[0] == -1 && p[1] == -1);
  CHECK_NEAR(p[4], -0.1, 1e-7);
  CHECK(p[2] == 0 && p[3] == 0 && p[5] == 0);
  CHECK(o.slot[0][2] == 0 && o.slot[0][5] == 0); /* untouched state too */
  cn_param_range outside[1] = {{4, 3, 1.0f}}, overlap[2] = {{0, 3, 1.0f}, {2, 2, 1.0f}};
  CHECK(cn_optimizer_check_ranges(&o, outside, 1) == CN_ERR_ARG);
  CHECK(cn_optimizer_check_ranges(&o, overlap, 2) == CN_ERR_ARG);
  float before[6];
  memcpy(before, p, sizeof p);
  cn_optimizer_step(&o, p, g, outside, 1); /* refused: nothing written */
  CHECK(memcmp(before, p, sizeof p) == 0 && o.iterations == 1);
  cn_optimizer_free(&o);
}

/* The same Adam steps with 1 and 2 threads on a buffer large enough to be split. */
static void test_thread_invariance(void) {
  const size_t n = 300000;
  float *p[2], *g = malloc(n * sizeof *g), *work = malloc(n * sizeof *work);
  unsigned seed = 7u;
  for (int t = 0; t < 2; t++) p[t] = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[0][i] = p[1][i] = uniform(&seed, -1, 1);
  for (size_t i = 0; i < n; i++) g[i] = uniform(&seed, -1, 1);
  cn_optim_config c = {.kind = CN_OPTIM_ADAM, .weight_decay = 0.01f, .clip_norm = 10.0f};
  int saved = cn_get_threads();
  for (int t = 0; t < 2; t++) {
    cn_set_threads(t + 1);
    cn_optimizer o;
    CHECK_OK(cn_optimizer_init(&o, &c, n));
    for (int s = 0; s < 3; s++) {
      memcpy(work, g, n * sizeof *g);
      cn_optimizer_step(&o, p[t], work, NULL, 0);
    }
    cn_optimizer_free(&o);
  }
  cn_set_threads(saved);
  CHECK(memcmp(p[0], p[1], n * sizeof(float)) == 0);
  free(p[0]), free(p[1]), free(g), free(work);
}

int main(void) {
  test_loss_values();
  test_loss_large_logits();
  for (int k = 0; k < CN_LOSS_COUNT; k++) {
    gradcheck_loss((cn_loss_kind)k, 3.0f);
    gradcheck_loss((cn_loss_kind)k, 30.0f);
  }
  test_sparse_invalid_targets();
  test_confusion();
  test_sgd();
  test_adam();
  test_rmsprop();
  test_schedules();
  test_clipping_and_l2();
  test_ranges();
  test_thread_invariance();
  return cn_test_finish();
}
