/* Models that compute their own loss (convnet/layers.h math and loss layers, a session with no
 * loss name): a tiny VAE learns and repeats exactly for a seed; gradients to every input and to
 * a named layer match central differences of the loss; sub-models from chosen layers; a GAN of
 * two sessions in alternation with a frozen discriminator learns a 1-D distribution; and the
 * errors that name the layer (a loss that is not a scalar, targets given to a model that has its
 * own loss, an unknown layer, an input a sub-model lacks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "testlib.h"

enum { B = 5, D = 6, Z = 2 };

typedef struct vae {
  cn_model *model, *decoder;
} vae;

/* x (D) -> Dense(8, relu) -> mean, log_var (Z) -> sample -> Dense(D, sigmoid); loss = D * bce +
 * KL. Outputs: the loss, the reconstruction. */
static vae tiny_vae(void) {
  vae v = {0};
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("vae", &net));
  cn_sym x = cn_net_input(net, "x", 1, (int64_t[]){D});
  cn_sym h = cn_net_dense(net, x, &(cn_dense_options){.units = 8, .activation = "relu"});
  cn_sym mean = cn_net_dense(net, h, &(cn_dense_options){.name = "z_mean", .units = Z});
  cn_sym log_var = cn_net_dense(net, h, &(cn_dense_options){.name = "z_log_var", .units = Z});
  cn_sym z = cn_net_gaussian_sample(net, mean, log_var, 7, "z");
  cn_sym recon = cn_net_dense(
      net, z, &(cn_dense_options){.name = "recon", .units = D, .activation = "sigmoid"});
  cn_sym terms[2] = {cn_net_loss(net, "binary_crossentropy", recon, x, "bce"),
                     cn_net_kl_gaussian(net, mean, log_var, "kl")};
  cn_sym loss = cn_net_weighted_sum(net, terms, (float[]){D, 1}, 2, "loss");
  cn_sym outs[2] = {loss, recon};
  CHECK_OK(cn_net_build(net, outs, 2, &v.model));
  CHECK_OK(cn_net_build_from(net, &z, 1, &recon, 1, &v.decoder));
  /* A model of the reconstruction alone needs x, which the decoder does not have. */
  cn_model *bad = NULL;
  CHECK(cn_net_build_from(net, &z, 1, &loss, 1, &bad) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "vae: the outputs depend on input x, which is not among") != NULL);
  cn_net_free(net);
  return v;
}

static float data[B][D];

static void fill_data(void) {
  for (int i = 0; i < B; i++)
    for (int j = 0; j < D; j++) data[i][j] = (float)((i * 7 + j * 3) % 5) / 4.0f;
}

static double train(cn_model *m, int steps, float *recon_out) {
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(m, &(cn_session_options){.lr = 0.02f, .seed = 3}, &s));
  if (!s) return NAN;
  const float *in[1] = {&data[0][0]};
  double first = 0, loss = 0;
  for (int k = 0; k < steps; k++) {
    CHECK_OK(cn_session_step_inputs(s, B, in, NULL, &loss));
    if (k == 0) first = loss;
  }
  CHECK(loss < first - 0.3); /* the BCE of these targets is at least their entropy, ~3.5 */
  const float *recon = cn_session_output(s, 1);
  CHECK(recon != NULL);
  if (recon) memcpy(recon_out, recon, sizeof data);
  CHECK(cn_session_output(s, 2) == NULL);
  CHECK_OK(cn_session_sync(s, m));
  cn_session_free(s);
  return loss;
}

/* The model with its loss, sampling and math layers survives .cnm: the same outputs after a
 * reload (inference samples with a fixed seed, so the loss repeats too). */
static void check_saved(cn_model *m) {
  const char *path = "test_graph_loss.cnm";
  CHECK_OK(cn_model_save(m, path));
  cn_model *back = NULL;
  CHECK_OK(cn_model_load(path, &back));
  remove(path);
  if (!back) return;
  float l1[B], l2[B], r1[B][D], r2[B][D];
  const float *in[1] = {&data[0][0]};
  CHECK_OK(cn_model_forward_multi(m, B, in, (float *[]){l1, &r1[0][0]}));
  CHECK_OK(cn_model_forward_multi(back, B, in, (float *[]){l2, &r2[0][0]}));
  CHECK(memcmp(l1, l2, sizeof l1) == 0 && memcmp(r1, r2, sizeof r1) == 0);
  cn_model_free(back);
}

static void test_vae_learns(void) {
  vae a = tiny_vae(), b = tiny_vae();
  if (!a.model || !b.model) return;
  CHECK(cn_model_input_count(a.decoder) == 1 && cn_model_input_shape(a.decoder).dim[0] == Z);
  CHECK_OK(cn_model_init_weights(a.model, 5));
  CHECK_OK(cn_model_init_weights(b.model, 5));
  float ra[B][D], rb[B][D];
  double la = train(a.model, 150, &ra[0][0]), lb = train(b.model, 150, &rb[0][0]);
  CHECK(la == lb && memcmp(ra, rb, sizeof ra) == 0); /* the same seed repeats exactly */
  /* The decoder takes the trained weights by layer name and decodes a latent point. */
  int copied = 0;
  CHECK_OK(cn_model_copy_weights(a.decoder, a.model, &copied));
  CHECK(copied == 1);
  float zero[Z] = {0, 0}, out[D];
  CHECK_OK(cn_model_forward(a.decoder, 1, zero, out));
  for (int j = 0; j < D; j++) CHECK(out[j] > 0.0f && out[j] < 1.0f);
  check_saved(a.model);
  cn_model_free(a.model), cn_model_free(a.decoder);
  cn_model_free(b.model), cn_model_free(b.decoder);
}

/* Two inputs -> one shared dense -> subtract -> sum of squares -> sqrt (a distance) -> contrastive
 * against a label input. */
static cn_model *pair_model(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("pairs", &net));
  cn_sym a = cn_net_input(net, "a", 1, (int64_t[]){3});
  cn_sym b = cn_net_input(net, "b", 1, (int64_t[]){3});
  cn_sym label = cn_net_input(net, "label", 1, (int64_t[]){1});
  cn_sym ea = cn_net_dense(net, a, &(cn_dense_options){.name = "ea", .units = 2});
  cn_sym eb = cn_net_call(net, "ea", &b, 1); /* a siamese pair: one set of weights */
  cn_sym sq = cn_net_math(net, cn_net_subtract(net, ea, eb, "diff"), "square", "sq");
  cn_sym sum = cn_net_reduce(net, sq, "sum", (int[]){-1}, 1, 1, "sum");
  cn_sym d = cn_net_math(net, cn_net_clip(net, sum, 1e-6f, INFINITY, "floor"), "sqrt", "distance");
  cn_sym loss = cn_net_contrastive_loss(net, d, label, 1.0f, "loss");
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &loss, 1, &m));
  cn_net_free(net);
  return m;
}

static double pair_loss(cn_session *s, float *const *in) {
  double loss = NAN;
  CHECK_OK(cn_session_evaluate_inputs(s, 2, (const float *const *)in, NULL, &loss));
  return loss;
}

/* d loss / d input k and d loss / d "distance" against central differences (in float: 1e-2). */
static void test_input_and_layer_grads(void) {
  cn_model *m = pair_model();
  if (!m) return;
  CHECK(cn_model_input_count(m) == 3);
  CHECK_OK(cn_model_init_weights(m, 2));
  float a[2][3] = {{0.5f, -1, 2}, {1, 0.25f, -0.5f}}, b[2][3] = {{-1, 1, 0}, {0.2f, 0.3f, 0.4f}};
  float label[2] = {0, 1};
  float *in[3] = {&a[0][0], &b[0][0], label};
  const char *watch[1] = {"distance"};
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(m,
                          &(cn_session_options){.optimizer = "sgd",
                                                .lr = 1e-30f,
                                                .input_grad = 1,
                                                .grad_layers = watch,
                                                .n_grad_layers = 1},
                          &s));
  if (!s) return;
  CHECK_OK(cn_session_step_inputs(s, 2, (const float *const *)in, NULL, NULL));
  for (int k = 0; k < 2; k++) {
    const float *g = cn_session_input_grad_at(s, k);
    CHECK(g != NULL);
    for (int e = 0; g && e < 6; e++) {
      float keep = in[k][e], h = 1e-2f;
      in[k][e] = keep + h;
      double up = pair_loss(s, in);
      in[k][e] = keep - h;
      double down = pair_loss(s, in);
      in[k][e] = keep;
      CHECK_NEAR(g[e], (up - down) / (2 * h), 2e-3);
    }
  }
  CHECK(cn_session_input_grad_at(s, 3) == NULL);
  const float *gd = cn_session_layer_grad(s, "distance");
  CHECK(gd != NULL && cn_session_layer_grad(s, "sum") == NULL);
  cn_session_free(s);
  cn_model_free(m);
}

/* sqrt(sum((x - y)^2) + 1e-6), as examples/siamese.c. */
static cn_sym distance(cn_net *net, cn_sym x, cn_sym y) {
  cn_sym d = cn_net_math(net, cn_net_subtract(net, x, y, NULL), "square", NULL);
  d = cn_net_reduce(net, d, "sum", NULL, 0, 0, NULL);
  return cn_net_math(net, cn_net_scale(net, d, 1.0f, 1e-6f, NULL), "sqrt", NULL);
}

/* The triplet loss relu(d(a, p) - d(a, n) + 1) built from math layers over one Dense called on
 * three inputs: d loss / d each input against central differences, and the Dense's weights
 * learn from all three calls (one step moves them; the loss falls). */
static void test_triplet_grads(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("triplet", &net));
  cn_sym x[3];
  for (int k = 0; k < 3; k++)
    x[k] = cn_net_input(net, (const char *[]){"a", "p", "n"}[k], 1, (int64_t[]){3});
  cn_sym e[3] = {cn_net_dense(net, x[0], &(cn_dense_options){.name = "e", .units = 2})};
  for (int k = 1; k < 3; k++) e[k] = cn_net_call(net, "e", &x[k], 1);
  cn_sym d[2] = {distance(net, e[0], e[1]), distance(net, e[0], e[2])};
  cn_sym loss = cn_net_weighted_sum(net, d, (float[]){1, -1}, 2, NULL);
  loss = cn_net_math(net, cn_net_scale(net, loss, 1.0f, 1.0f, NULL), "relu", "loss");
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &loss, 1, &m));
  cn_net_free(net);
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 5));
  float a[2][3] = {{0.5f, -1, 2}, {1, 0.25f, -0.5f}}, p[2][3] = {{0.2f, -0.5f, 1}, {-1, 1, 0}},
        n[2][3] = {{0.4f, -0.8f, 1.8f}, {0.9f, 0.2f, -0.3f}};
  float *in[3] = {&a[0][0], &p[0][0], &n[0][0]};
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(
      m, &(cn_session_options){.optimizer = "sgd", .lr = 1e-30f, .input_grad = 1}, &s));
  if (!s) return;
  double before = NAN, after = NAN;
  CHECK_OK(cn_session_step_inputs(s, 2, (const float *const *)in, NULL, &before));
  CHECK(before > 0.5); /* both hinges open, away from the kink */
  for (int k = 0; k < 3; k++) {
    const float *g = cn_session_input_grad_at(s, k);
    CHECK(g != NULL);
    for (int i = 0; g && i < 6; i++) {
      float keep = in[k][i], h = 1e-2f;
      in[k][i] = keep + h;
      double up = pair_loss(s, in);
      in[k][i] = keep - h;
      double down = pair_loss(s, in);
      in[k][i] = keep;
      CHECK_NEAR(g[i], (up - down) / (2 * h), 2e-3);
    }
  }
  cn_session_free(s);
  CHECK_OK(cn_session_new(m, &(cn_session_options){.optimizer = "sgd", .lr = 0.1f}, &s));
  if (s) {
    CHECK_OK(cn_session_step_inputs(s, 2, (const float *const *)in, NULL, NULL));
    CHECK_OK(cn_session_evaluate_inputs(s, 2, (const float *const *)in, NULL, &after));
    CHECK(after < before);
  }
  cn_session_free(s);
  cn_model_free(m);
}

/* A rank-0 input (one number per sample) and a per-sample loss built from it: x^2 + 3x, whose
 * gradient to x is 2x + 3 (the session averages the batch's losses, so over the batch size). */
static void test_scalar_input(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("scalar", &net));
  cn_sym x = cn_net_input(net, "x", 0, NULL);
  cn_sym sq = cn_net_math(net, x, "square", "sq");
  cn_sym lin = cn_net_scale(net, x, 3.0f, 0.0f, "lin");
  cn_sym loss = cn_net_weighted_sum(net, (cn_sym[]){sq, lin}, (float[]){1, 1}, 2, "loss");
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &loss, 1, &m));
  cn_net_free(net);
  if (!m) return;
  cn_session *s = NULL;
  CHECK_OK(cn_session_new(m, &(cn_session_options){.optimizer = "sgd", .input_grad = 1}, &s));
  float xs[3] = {0.5f, -2.0f, 4.0f};
  double value = NAN;
  CHECK_OK(cn_session_step_inputs(s, 3, (const float *[]){xs}, NULL, &value));
  CHECK_NEAR(value, (0.25 + 1.5 + 4 - 6 + 16 + 12) / 3, 1e-5);
  const float *g = cn_session_input_grad_at(s, 0);
  CHECK(g != NULL);
  for (int i = 0; g && i < 3; i++) CHECK_NEAR(g[i], (2 * xs[i] + 3) / 3, 1e-6);
  cn_session_free(s);
  cn_model_free(m);
}

static void test_refused(void) {
  cn_model *m = pair_model();
  if (!m) return;
  cn_session *s = NULL;
  /* A loss name with several inputs: they go through the _inputs calls. */
  CHECK_OK(cn_session_new(m, &(cn_session_options){.loss = "mse"}, &s));
  float one[3] = {0}, y1[1] = {0};
  if (s) CHECK(cn_session_step(s, 1, one, y1, NULL) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "pairs has 3 inputs: give them to cn_session_step_inputs") != NULL);
  if (s) CHECK(cn_session_evaluate(s, 1, one, y1, NULL, NULL) == CN_ERR_ARG);
  cn_session_free(s);
  s = NULL;
  CHECK(cn_session_new(
            m, &(cn_session_options){.grad_layers = (const char *[]){"nope"}, .n_grad_layers = 1},
            &s) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "no layer named \"nope\"") != NULL);
  CHECK_OK(cn_session_new(m, &(cn_session_options){0}, &s));
  float x[3] = {0}, label[1] = {0};
  const float *in[3] = {x, x, label};
  CHECK(cn_session_step_inputs(s, 1, in, label, NULL) == CN_ERR_ARG);
  CHECK(strstr(cn_last_error(), "computes its own loss: give no targets") != NULL);
  cn_session_free(s);
  cn_model_free(m);

  /* A loss that is not one value per sample. */
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("notscalar", &net));
  cn_sym x1 = cn_net_input(net, "x", 1, (int64_t[]){4});
  cn_sym y = cn_net_dense(net, x1, &(cn_dense_options){.name = "d", .units = 3});
  CHECK_OK(cn_net_build(net, &y, 1, &m));
  CHECK(cn_session_new(m, &(cn_session_options){0}, &s) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "the first output (d) must be one value per sample") != NULL);
  cn_model_free(m);
  /* Loss shapes and unknown names fail naming the layer. */
  cn_sym bad = cn_net_loss(net, "mse", y, x1, "recon_loss");
  CHECK(bad.node < 0);
  CHECK(cn_net_build(net, &bad, 1, &m) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "recon_loss: the target's shape (4,) does not fit") != NULL);
  cn_net_free(net);
  CHECK_OK(cn_net_new("names", &net));
  x1 = cn_net_input(net, "x", 1, (int64_t[]){4});
  CHECK(cn_net_math(net, x1, "cube", "c").node < 0);
  CHECK(strstr(cn_last_error(), "c: unknown function \"cube\"") != NULL);
  cn_net_free(net);
  CHECK_OK(cn_net_new("axes", &net));
  x1 = cn_net_input(net, "x", 1, (int64_t[]){4});
  CHECK(cn_net_reduce(net, x1, "sum", (int[]){0}, 1, 0, "total").node < 0);
  CHECK(strstr(cn_last_error(), "total: axis 0 is outside 1..1") != NULL);
  cn_net_free(net);
}

/* The discriminator's layers d1, d2 on x; with generator layers g1, g2 in front when `gan`. */
static cn_model *gan_part(int gan) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new(gan ? "gan" : "discriminator", &net));
  cn_sym x = cn_net_input(net, gan ? "z" : "x", 1, (int64_t[]){1});
  cn_sym label = cn_net_input(net, "label", 1, (int64_t[]){1});
  cn_sym fake = x;
  if (gan) {
    cn_sym h =
        cn_net_dense(net, x, &(cn_dense_options){.name = "g1", .units = 8, .activation = "relu"});
    fake = cn_net_dense(net, h, &(cn_dense_options){.name = "g2", .units = 1});
  }
  cn_sym h =
      cn_net_dense(net, fake, &(cn_dense_options){.name = "d1", .units = 8, .activation = "relu"});
  cn_sym p =
      cn_net_dense(net, h, &(cn_dense_options){.name = "d2", .units = 1, .activation = "sigmoid"});
  cn_sym outs[2] = {cn_net_loss(net, "binary_crossentropy", p, label, "bce"), fake};
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, outs, gan ? 2 : 1, &m));
  cn_net_free(net);
  return m;
}

/* A GAN on one number: real samples are 3 + noise in [-0.5, 0.5]. Two sessions in alternation
 * with their own optimizers: the discriminator on real (label 1) and generated (label 0) values,
 * then the generator through the frozen discriminator, which takes the discriminator session's
 * weights first. The generated mean moves from near 0 to near 3. */
static void test_gan(void) {
  enum { N = 32 };
  cn_model *d = gan_part(0), *gan = gan_part(1);
  if (!d || !gan) return;
  CHECK_OK(cn_model_init_weights(gan, 3));
  CHECK(cn_model_set_trainable(gan, "nope", 0) == CN_ERR_ARG);
  CHECK_OK(cn_model_set_trainable(gan, "d1", 0));
  CHECK_OK(cn_model_set_trainable(gan, "d2", 0));
  CHECK_OK(cn_model_copy_weights(d, gan, NULL));
  cn_session *ds = NULL, *gs = NULL;
  CHECK_OK(cn_session_new(d, &(cn_session_options){.lr = 0.01f, .max_batch = 2 * N}, &ds));
  CHECK_OK(cn_session_new(gan, &(cn_session_options){.lr = 0.01f, .max_batch = N}, &gs));
  if (!ds || !gs) return;
  float z[N], x[2 * N], labels[2 * N], ones[N];
  unsigned seed = 5;
  double mean = 0;
  for (int step = 0; step < 600; step++) {
    for (int i = 0; i < N; i++) {
      z[i] = (float)rand_r(&seed) / (float)RAND_MAX * 2 - 1;
      x[i] = 3.0f + (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
      labels[i] = 1, labels[N + i] = 0, ones[i] = 1;
    }
    CHECK_OK(cn_session_evaluate_inputs(gs, N, (const float *[]){z, ones}, NULL, NULL));
    const float *fake = cn_session_output(gs, 1);
    if (!fake) break;
    memcpy(x + N, fake, sizeof(float) * N);
    if (step == 0 || step == 599) {
      mean = 0;
      for (int i = 0; i < N; i++) mean += fake[i] / N;
      if (step == 0) CHECK(fabs(mean) < 1.5);
    }
    CHECK_OK(cn_session_step_inputs(ds, 2 * N, (const float *[]){x, labels}, NULL, NULL));
    int copied = 0;
    CHECK_OK(cn_session_copy_weights(gs, ds, &copied));
    CHECK(copied == 2);
    CHECK_OK(cn_session_step_inputs(gs, N, (const float *[]){z, ones}, NULL, NULL));
  }
  CHECK(fabs(mean - 3.0) < 0.5);
  cn_session_free(ds), cn_session_free(gs);
  cn_model_free(d), cn_model_free(gan);
}

int main(void) {
  fill_data();
  test_vae_learns();
  test_input_and_layer_grads();
  test_triplet_grads();
  test_scalar_input();
  test_refused();
  test_gan();
  return cn_test_finish();
}
