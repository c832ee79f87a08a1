/* Step-by-step training (cn_session): one SGD step of a linear model under MSE, MAE and binary
 * cross-entropy equals the update computed by hand in double, d loss / d input too; a small
 * convolutional model learns; wrong losses and batches are refused by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "testlib.h"

enum { B = 4, IN = 3, OUT = 2 };

/* x (IN) -> Dense(OUT, activation), named "d". */
static cn_model *linear(const char *activation) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("linear", &net));
  cn_sym x = cn_net_input(net, "x", 1, (int64_t[]){IN});
  cn_sym y = cn_net_dense(net, x,
                          &(cn_dense_options){.name = "d", .units = OUT, .activation = activation});
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &y, 1, &m));
  cn_net_free(net);
  return m;
}

static float X[B][IN] = {{0.5f, -1, 2}, {1, 0.25f, -0.5f}, {-1.5f, 1, 0}, {0.2f, 0.3f, 0.4f}};
static float Y[B][OUT] = {{1, 0}, {0, 1}, {0.5f, 0.5f}, {0, 0}};

/* The model's output for X through the public forward. */
static void forward(cn_model *m, float out[B][OUT]) {
  CHECK_OK(cn_model_forward(m, B, &X[0][0], &out[0][0]));
}

/* d loss / d pred by hand (Keras's mean over the batch and the outputs). */
static double dloss(const char *loss, double p, double y, double z) {
  double scale = 1.0 / (B * OUT);
  if (!strcmp(loss, "mse")) return scale * 2 * (p - y);
  if (!strcmp(loss, "mae")) return scale * (p > y ? 1 : p < y ? -1 : 0);
  (void)z;
  return scale * (p - y); /* binary cross-entropy through the sigmoid: d/dz */
}

/* One SGD step (lr 0.1) against the update computed in double from the model's weights. */
static void check_step(const char *loss, const char *activation) {
  cn_model *m = linear(activation);
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 11));
  float after[B][OUT];
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(
      m, &(cn_session_options){.loss = loss, .optimizer = "sgd", .lr = 0.1f, .input_grad = 1}, &s));
  if (!s) return;
  /* The weights, read back through a linear twin with the same names and seed: its outputs for
   * the unit rows and for zero are W + b and b. */
  float eye[IN + 1][IN] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {0, 0, 0}}, cols[IN + 1][OUT];
  cn_model *plain = linear(NULL);
  CHECK_OK(cn_model_init_weights(plain, 11)); /* same names, same seed: the same weights */
  CHECK_OK(cn_model_forward(plain, IN + 1, &eye[0][0], &cols[0][0]));
  double w[IN][OUT], b[OUT];
  for (int o = 0; o < OUT; o++) {
    b[o] = cols[IN][o];
    for (int i = 0; i < IN; i++) w[i][o] = cols[i][o] - b[o];
  }
  double loss_value;
  CHECK_OK(cn_session_step(s, B, &X[0][0], &Y[0][0], &loss_value));
  /* Expected gradients: d/dz per sample and output, then W -= lr * x^T g, b -= lr * sum g. */
  double g[B][OUT], dx[B][IN] = {{0}};
  for (int n = 0; n < B; n++)
    for (int o = 0; o < OUT; o++) {
      double z = b[o];
      for (int i = 0; i < IN; i++) z += X[n][i] * w[i][o];
      double p = !strcmp(loss, "binary_crossentropy") ? 1 / (1 + exp(-z)) : z;
      g[n][o] = dloss(loss, p, Y[n][o], z);
      for (int i = 0; i < IN; i++) dx[n][i] += g[n][o] * w[i][o];
    }
  const float *got_dx = cn_session_input_grad(s);
  CHECK(got_dx != NULL);
  for (int n = 0; got_dx && n < B; n++)
    for (int i = 0; i < IN; i++) CHECK_NEAR(got_dx[n * IN + i], dx[n][i], 1e-6);
  CHECK_OK(cn_session_sync(s, m));
  forward(m, after);
  for (int n = 0; n < B; n++)
    for (int o = 0; o < OUT; o++) {
      double z = b[o], gb = 0;
      for (int k = 0; k < B; k++) gb += g[k][o];
      z -= 0.1 * gb;
      for (int i = 0; i < IN; i++) {
        double gw = 0;
        for (int k = 0; k < B; k++) gw += X[k][i] * g[k][o];
        z += X[n][i] * (w[i][o] - 0.1 * gw);
      }
      double p = !strcmp(loss, "binary_crossentropy") ? 1 / (1 + exp(-z)) : z;
      CHECK_NEAR(after[n][o], p, 1e-5);
    }
  cn_session_free(s);
  cn_model_free(plain);
  cn_model_free(m);
}

/* A small convolutional model learns to reproduce a bar's position (MSE on a linear output). */
static void test_learns(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("bars", &net));
  cn_sym x = cn_net_input(net, "x", 3, (int64_t[]){6, 6, 1});
  x = cn_net_conv2d(
      net, x, &(cn_conv2d_options){.filters = 4, .kernel_size = {3, 3}, .activation = "relu"});
  x = cn_net_flatten(net, x, NULL);
  x = cn_net_dense(net, x, &(cn_dense_options){.units = 1});
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &x, 1, &m));
  cn_net_free(net);
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 5));
  cn_session *s = NULL;
  CHECK_OK(
      cn_session_new(m, &(cn_session_options){.loss = "mse", .lr = 0.01f, .max_batch = 12}, &s));
  float xs[12 * 36] = {0}, ys[12];
  for (int n = 0; n < 12; n++) {
    int col = n % 6;
    for (int r = 0; r < 6; r++) xs[n * 36 + r * 6 + col] = 1;
    ys[n] = (float)col / 5;
  }
  double first = 0, last = 0;
  for (int step = 0; step < 300; step++) {
    CHECK_OK(cn_session_step(s, 12, xs, ys, step == 0 ? &first : &last));
    if (cn_test_failed) break;
  }
  if (!(last < first / 20)) fprintf(stderr, "loss %g -> %g\n", first, last);
  CHECK(last < first / 20);
  cn_session_free(s);
  cn_model_free(m);
}

static void test_refused(void) {
  cn_model *m = linear(NULL);
  if (!m) return;
  cn_session *s = NULL;
  CHECK(cn_session_new(m, &(cn_session_options){.loss = "categorical_crossentropy"}, &s) ==
        CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "linear: categorical_crossentropy needs a model that ends in a "
                                "softmax") != NULL);
  CHECK(cn_session_new(m, &(cn_session_options){.loss = "hinge"}, &s) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "not \"hinge\"") != NULL);
  CHECK_OK(cn_session_new(m, &(cn_session_options){.loss = "mse", .max_batch = 2}, &s));
  CHECK(cn_session_step(s, B, &X[0][0], &Y[0][0], NULL) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "batch 4 outside 1..2") != NULL);
  float nan_y[2][OUT] = {{NAN, 0}, {0, 0}};
  CHECK(cn_session_step(s, 2, &X[0][0], &nan_y[0][0], NULL) == CN_ERR_ARG);
  CHECK(cn_session_input_grad(s) == NULL);
  cn_session_free(s);
  cn_model_free(m);
}

/* cn_session_forward gives the outputs a step or an evaluation computes, without updating. */
static void test_forward(void) {
  cn_model *m = linear("sigmoid");
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 3));
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(m, &(cn_session_options){.loss = "binary_crossentropy", .lr = 0.1f}, &s));
  if (!s) return;
  const float *x[1] = {&X[0][0]};
  float eval[B * OUT], fwd[B * OUT];
  CHECK_OK(cn_session_evaluate(s, B, &X[0][0], &Y[0][0], NULL, eval));
  CHECK_OK(cn_session_forward(s, B, x, 0));
  const float *out = cn_session_output(s, 0);
  CHECK(out && memcmp(out, eval, sizeof eval) == 0);
  CHECK_OK(cn_session_forward(s, B, x, 1)); /* no update: the same outputs again */
  out = cn_session_output(s, 0);
  if (out) memcpy(fwd, out, sizeof fwd);
  CHECK(out && memcmp(fwd, eval, sizeof eval) == 0);
  CHECK_OK(cn_session_step(s, B, &X[0][0], &Y[0][0], NULL));
  out = cn_session_output(s, 0); /* the step's forward, before its update */
  CHECK(out && memcmp(out, fwd, sizeof fwd) == 0);
  CHECK(cn_session_forward(s, B + 200, x, 1) == CN_ERR_ARG);
  cn_session_free(s);
  cn_model_free(m);
}

int main(void) {
  test_forward();
  check_step("mse", NULL);
  check_step("mae", NULL);
  check_step("binary_crossentropy", "sigmoid");
  test_learns();
  test_refused();
  return cn_test_finish();
}
