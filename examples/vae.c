/* Lesson 3: a variational autoencoder learns a two-dimensional map of Fashion-MNIST, written with
 * the public API only.
 *
 *   vae [DATA_DIR [EPOCHS [TRAIN_SAMPLES [OUT_PREFIX [SEED]]]]]
 *
 * The encoder (two strided Conv2D, Dense(16)) gives each image a Gaussian in a 2-D latent space:
 * its mean and log-variance. A sampling layer draws z = mean + exp(log_var / 2) * eps, and the
 * decoder (Dense, Reshape, three Conv2DTranspose) draws the image back from z. The model computes
 * its own loss, the negative ELBO of the Keras VAE example: the binary cross-entropy summed over
 * the 784 pixels plus the KL divergence of the Gaussian from N(0, 1). A session with no loss
 * name minimises it with Adam. After every epoch it prints the test ELBO; at the end it saves the
 * model as OUT_PREFIX.cnm and draws OUT_PREFIX.png: ten test images, their reconstructions, and
 * ten images decoded from z drawn from the prior N(0, 1) by a decoder model cut out of the same
 * net (cn_net_build_from). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, LATENT = 2, BATCH = 128, SHOWN = 10 };

static int fail(void) {
  fprintf(stderr, "vae: %s\n", cn_last_error());
  return 1;
}

static cn_sym conv(cn_net *net, cn_sym x, int filters, int stride) {
  return cn_net_conv2d(net, x,
                       &(cn_conv2d_options){.filters = filters,
                                            .kernel_size = {3, 3},
                                            .strides = {stride, stride},
                                            .padding = "same",
                                            .activation = "relu"});
}

static cn_sym deconv(cn_net *net, cn_sym x, int filters, int stride, const char *activation) {
  return cn_net_conv2d_transpose(net, x,
                                 &(cn_conv2d_transpose_options){.filters = filters,
                                                                .kernel_size = {3, 3},
                                                                .strides = {stride, stride},
                                                                .padding = "same",
                                                                .activation = activation});
}

/* The VAE (outputs: the loss per image, the reconstruction) and its decoder (z -> image). */
static cn_status build(cn_model **vae, cn_model **decoder, uint64_t seed) {
  cn_net *net;
  cn_status st = cn_net_new("vae", &net);
  if (st != CN_OK) return st;
  cn_sym x = cn_net_input(net, "image", 3, (int64_t[]){SIDE, SIDE, 1});
  cn_sym h = conv(net, conv(net, x, 32, 2), 64, 2);
  h = cn_net_dense(net, cn_net_flatten(net, h, NULL),
                   &(cn_dense_options){.units = 16, .activation = "relu"});
  cn_sym mean = cn_net_dense(net, h, &(cn_dense_options){.name = "z_mean", .units = LATENT});
  cn_sym log_var = cn_net_dense(net, h, &(cn_dense_options){.name = "z_log_var", .units = LATENT});
  cn_sym z = cn_net_gaussian_sample(net, mean, log_var, seed, "z");

  cn_sym d = cn_net_dense(net, z, &(cn_dense_options){.units = 7 * 7 * 64, .activation = "relu"});
  d = cn_net_reshape(net, d, 3, (int64_t[]){7, 7, 64}, NULL);
  d = deconv(net, deconv(net, d, 64, 2, "relu"), 32, 2, "relu");
  cn_sym image = deconv(net, d, 1, 1, "sigmoid");

  /* -ELBO = 784 * mean BCE (the sum over pixels) + KL. */
  cn_sym terms[2] = {cn_net_loss(net, "binary_crossentropy", image, x, "reconstruction_loss"),
                     cn_net_kl_gaussian(net, mean, log_var, "kl_loss")};
  cn_sym loss = cn_net_weighted_sum(net, terms, (float[]){PIXELS, 1}, 2, "loss");

  cn_sym outputs[2] = {loss, image};
  st = cn_net_build(net, outputs, 2, vae);
  if (st == CN_OK) st = cn_net_build_from(net, &z, 1, &image, 1, decoder);
  cn_net_free(net);
  return st == CN_OK ? cn_model_init_weights(*vae, seed) : st;
}

static cn_status epoch(cn_session *s, const float *x, int64_t n, unsigned seed) {
  int64_t *order = fm_shuffled(n, seed);
  float *batch = malloc(sizeof(float) * BATCH * PIXELS);
  if (!order || !batch) return CN_ERR_NOMEM;
  cn_status st = CN_OK;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    fm_gather(x, order, at, count, batch);
    st = cn_session_step_inputs(s, count, (const float *[]){batch}, NULL, NULL);
  }
  free(order);
  free(batch);
  return st;
}

/* The mean ELBO over the test set (one latent sample per image) and the reconstructions of the
 * first SHOWN images into shown. */
static double test_elbo(cn_session *s, const float *x, int64_t n, float *shown) {
  double sum = 0;
  for (int64_t at = 0; at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    double loss;
    if (cn_session_evaluate_inputs(s, count, (const float *[]){x + at * PIXELS}, NULL, &loss) !=
        CN_OK)
      return NAN;
    sum -= loss * count;
    if (at == 0) memcpy(shown, cn_session_output(s, 1), sizeof(float) * SHOWN * PIXELS);
  }
  return sum / (double)n;
}

/* Ten images decoded from z ~ N(0, 1) (Box-Muller on rand_r). */
static cn_status sample_prior(cn_model *decoder, unsigned seed, float *out) {
  float z[SHOWN * LATENT];
  for (int i = 0; i < SHOWN * LATENT; i++) {
    double u1 = (rand_r(&seed) + 1.0) / (RAND_MAX + 2.0), u2 = rand_r(&seed) / (RAND_MAX + 1.0);
    z[i] = (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
  }
  return cn_model_forward(decoder, SHOWN, z, out);
}

static cn_status draw(const float *test, const float *recon, const float *prior, const char *path) {
  const float *cells[3 * SHOWN];
  for (int k = 0; k < SHOWN; k++) {
    cells[k] = test + k * PIXELS;
    cells[SHOWN + k] = recon + k * PIXELS;
    cells[2 * SHOWN + k] = prior + k * PIXELS;
  }
  return fm_draw_grid(cells, 3 * SHOWN, SHOWN, path);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  int epochs = argc > 2 ? atoi(argv[2]) : 10;
  int64_t limit = argc > 3 ? atoll(argv[3]) : 0;
  const char *out = argc > 4 ? argv[4] : "vae";
  uint64_t seed = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
  static float recon[SHOWN * PIXELS], prior[SHOWN * PIXELS];
  float *xt = NULL, *xv = NULL;
  int64_t nt, nv;
  if (fm_load_images(dir, "train", &xt, &nt) != CN_OK ||
      fm_load_images(dir, "t10k", &xv, &nv) != CN_OK)
    return fail();
  if (limit > 0 && limit < nt) nt = limit;
  cn_model *vae, *decoder;
  cn_session *s;
  if (build(&vae, &decoder, seed) != CN_OK) return fail();
  cn_session_options o = {.optimizer = "adam", .max_batch = BATCH, .seed = seed};
  if (cn_session_new(vae, &o, &s) != CN_OK) return fail();
  for (int e = 1; e <= epochs; e++) {
    if (epoch(s, xt, nt, (unsigned)(e + 1000 * seed)) != CN_OK) return fail();
    printf("epoch %d/%d: test ELBO %.3f\n", e, epochs, test_elbo(s, xv, nv, recon));
  }
  char path[4096];
  snprintf(path, sizeof path, "%s.cnm", out);
  if (cn_session_sync(s, vae) != CN_OK || cn_model_save(vae, path) != CN_OK) return fail();
  if (cn_model_copy_weights(decoder, vae, NULL) != CN_OK ||
      sample_prior(decoder, (unsigned)seed, prior) != CN_OK)
    return fail();
  snprintf(path, sizeof path, "%s.png", out);
  if (draw(xv, recon, prior, path) != CN_OK) return fail();
  printf("wrote %s.cnm and %s\n", out, path);
  cn_session_free(s);
  cn_model_free(vae);
  cn_model_free(decoder);
  free(xt), free(xv);
  return 0;
}
