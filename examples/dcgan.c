/* Lesson 5: a DCGAN learns to draw Fashion-MNIST, written with the public API only.
 *
 *   dcgan [--data DIR] [--epochs N] [--train-samples N] [--seed S] [--threads T]
 *         [--conditional] [--label-smoothing] [--out PREFIX] [--checkpoint FILE]
 *         [--resume FILE] [--generate N --generate-out FILE.npy]
 *
 * Generator: z (100) -> Dense(7*7*64, no bias) -> BatchNorm -> ReLU -> Reshape(7, 7, 64) ->
 * Conv2DTranspose(32, 4, stride 2, no bias) -> BatchNorm -> ReLU -> Conv2DTranspose(1, 4, stride
 * 2) -> tanh. Discriminator: Conv2D(32, 4, stride 2) -> LeakyReLU(0.2) -> Conv2D(64, 4, stride 2)
 * -> BatchNorm -> LeakyReLU(0.2) -> Flatten -> Dense(1), a logit. With --conditional the
 * generator reads concat(z, one_hot(class)) and the discriminator adds a class projection to its
 * logit: the flattened features dotted with a learned embedding of the class.
 *
 * Three models, three sessions (Adam 2e-4, beta1 0.5), per batch of 128 real images in [-1, 1]:
 *  1. "generator" draws the fake batch from fresh z: a forward pass in training mode (batch
 *     statistics), as the generator step below will see it, with the generator step's weights.
 *  2. "discriminator" takes one step on the real batch (target 1, or 0.9 with --label-smoothing)
 *     and the fake batch (target 0): two calls of the same layers, so BatchNorm normalises real
 *     and fake batches apart (as PyTorch's DCGAN does), one update of the summed losses.
 *  3. "gan" (generator then discriminator) takes one step towards target 1 on the same z. Its
 *     discriminator layers first take the discriminator session's new weights, and are re-taken
 *     before every step, so its own updates of them never count: the discriminator is frozen for
 *     the generator while its BatchNorm still uses batch statistics.
 * After every epoch: one line `epoch E d_loss X g_loss Y seconds T` (the epoch's mean losses, its
 * training time) and PREFIX_epochEE.png, 10 x 10 samples of a fixed noise (conditional: row r is
 * class r); with --checkpoint, both sessions, the epoch and the noise generator's state
 * (cn_sessions_save), from which --resume continues bit for bit. At the end PREFIX_generator.cnm
 * and, with --generate N, N samples in [0, 1] as an (N, 28, 28, 1) float32 .npy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, LATENT = 100, CLASSES = 10, BATCH = 128, GRID = 10 };

typedef struct options {
  const char *data, *out, *checkpoint, *resume, *generate_out;
  int epochs, threads, conditional, label_smoothing;
  int64_t train_samples, generate;
  uint64_t seed;
} options;

/* What the loop itself must carry over a resume, saved beside the sessions; the settings that
 * change the run are kept so that a resume with other settings is refused. */
typedef struct loop_state {
  uint64_t noise;   /* the z generator's state */
  uint64_t seed;    /* --seed */
  int64_t samples;  /* training images */
  int32_t epoch;    /* epochs done */
  int32_t smoothed; /* --label-smoothing */
} loop_state;

typedef struct gan {
  cn_model *generator, *discriminator, *combined;
  cn_session *g, *d, *gan;
} gan;

static int fail(void) {
  fprintf(stderr, "dcgan: %s\n", cn_last_error());
  return 1;
}

static void one_hot(const float *classes, int n, float *out) {
  memset(out, 0, sizeof(float) * (size_t)n * CLASSES);
  for (int i = 0; i < n; i++) out[i * CLASSES + (int)classes[i]] = 1.0f;
}

/* ---- the models ---- */

static cn_sym generator(cn_net *net, cn_sym z, cn_sym label, int conditional) {
  cn_sym x = z;
  if (conditional) x = cn_net_concatenate(net, (cn_sym[]){z, label}, 2, -1, "concatenate");
  x = cn_net_dense(net, x, &(cn_dense_options){.name = "dense", .units = 7 * 7 * 64, .no_bias = 1});
  x = cn_net_batch_norm(net, x, &(cn_batch_norm_options){.name = "batch_normalization"});
  x = cn_net_activation(net, x, "relu", "re_lu");
  x = cn_net_reshape(net, x, 3, (int64_t[]){7, 7, 64}, "reshape");
  x = cn_net_conv2d_transpose(net, x,
                              &(cn_conv2d_transpose_options){.name = "conv2d_transpose",
                                                             .filters = 32,
                                                             .kernel_size = {4, 4},
                                                             .strides = {2, 2},
                                                             .padding = "same",
                                                             .no_bias = 1});
  x = cn_net_batch_norm(net, x, &(cn_batch_norm_options){.name = "batch_normalization_1"});
  x = cn_net_activation(net, x, "relu", "re_lu_1");
  return cn_net_conv2d_transpose(net, x,
                                 &(cn_conv2d_transpose_options){.name = "conv2d_transpose_1",
                                                                .filters = 1,
                                                                .kernel_size = {4, 4},
                                                                .strides = {2, 2},
                                                                .padding = "same",
                                                                .activation = "tanh"});
}

static cn_sym again(cn_net *net, const char *layer, cn_sym x) {
  return cn_net_call(net, layer, &x, 1);
}

/* The class enters the discriminator as a projection (Miyato and Koyama, 2018): the logit gains
 * <embedding(class), features>, a learned vector per class dotted with the image's features, so
 * the judgement depends on whether the image fits its class. (Concatenating the one-hot class
 * to the features before Dense(1) would only add a bias per class: no such dependence.) */
static cn_sym projection(cn_net *net, cn_sym features, cn_sym label, cn_sym logit, int call) {
  cn_dense_options embed = {.name = "class_embedding", .units = 7 * 7 * 64, .no_bias = 1};
  cn_sym e = call ? again(net, "class_embedding", label) : cn_net_dense(net, label, &embed);
  cn_sym fe[2] = {features, e};
  cn_sym product = call ? cn_net_call(net, "class_product", fe, 2)
                        : cn_net_multiply(net, fe, 2, "class_product");
  cn_sym match = call ? again(net, "class_match", product)
                      : cn_net_reduce(net, product, "sum", (int[]){-1}, 1, 1, "class_match");
  cn_sym both[2] = {logit, match};
  return call ? cn_net_call(net, "conditional_logit", both, 2)
              : cn_net_add(net, both, 2, "conditional_logit");
}

/* The discriminator's logit for image; `call` 1 calls the layers made by an earlier call. */
static cn_sym discriminator(cn_net *net, cn_sym image, cn_sym label, int conditional, int call) {
  cn_conv2d_options c1 = {.name = "conv2d",
                          .filters = 32,
                          .kernel_size = {4, 4},
                          .strides = {2, 2},
                          .padding = "same"},
                    c2 = c1;
  c2.name = "conv2d_1", c2.filters = 64;
  cn_batch_norm_options bn = {.name = "batch_normalization_2"};
  cn_dense_options logit = {.name = "dense_1", .units = 1};
  cn_sym x = call ? again(net, "conv2d", image) : cn_net_conv2d(net, image, &c1);
  x = call ? again(net, "leaky_re_lu", x) : cn_net_leaky_relu(net, x, 0.2f, "leaky_re_lu");
  x = call ? again(net, "conv2d_1", x) : cn_net_conv2d(net, x, &c2);
  x = call ? again(net, "batch_normalization_2", x) : cn_net_batch_norm(net, x, &bn);
  x = call ? again(net, "leaky_re_lu_1", x) : cn_net_leaky_relu(net, x, 0.2f, "leaky_re_lu_1");
  x = call ? again(net, "flatten", x) : cn_net_flatten(net, x, "flatten");
  cn_sym out = call ? again(net, "dense_1", x) : cn_net_dense(net, x, &logit);
  return conditional ? projection(net, x, label, out, call) : out;
}

static cn_sym input(cn_net *net, const char *name, int64_t size) {
  return size == PIXELS ? cn_net_input(net, name, 3, (int64_t[]){SIDE, SIDE, 1})
                        : cn_net_input(net, name, 1, (int64_t[]){size});
}

/* generator: z [, class] -> image. */
static cn_status build_generator(int conditional, cn_model **out) {
  cn_net *net;
  cn_status st = cn_net_new("generator", &net);
  if (st != CN_OK) return st;
  cn_sym z = input(net, "z", LATENT), label = conditional ? input(net, "class", CLASSES) : z;
  cn_sym image = generator(net, z, label, conditional);
  st = cn_net_build(net, &image, 1, out);
  cn_net_free(net);
  return st;
}

/* discriminator: real, real_target, fake, fake_target [, class] -> the sum of the two binary
 * cross-entropies (real and fake batches share the layers; conditional: both of class). */
static cn_status build_discriminator(int conditional, cn_model **out) {
  cn_net *net;
  cn_status st = cn_net_new("discriminator", &net);
  if (st != CN_OK) return st;
  cn_sym real = input(net, "image", PIXELS), t_real = input(net, "real_target", 1);
  cn_sym fake = input(net, "fake_image", PIXELS), t_fake = input(net, "fake_target", 1);
  cn_sym label = conditional ? input(net, "class", CLASSES) : real;
  cn_sym terms[2] = {
      cn_net_loss(net, "binary_crossentropy_from_logits",
                  discriminator(net, real, label, conditional, 0), t_real, "d_loss_real"),
      cn_net_loss(net, "binary_crossentropy_from_logits",
                  discriminator(net, fake, label, conditional, 1), t_fake, "d_loss_fake")};
  cn_sym loss = cn_net_weighted_sum(net, terms, NULL, 2, "d_loss");
  st = cn_net_build(net, &loss, 1, out);
  cn_net_free(net);
  return st;
}

/* gan: z, target [, class] -> the generator's loss; its second output is the image. */
static cn_status build_combined(int conditional, cn_model **out) {
  cn_net *net;
  cn_status st = cn_net_new("gan", &net);
  if (st != CN_OK) return st;
  cn_sym z = input(net, "z", LATENT), target = input(net, "target", 1);
  cn_sym label = conditional ? input(net, "class", CLASSES) : z;
  cn_sym image = generator(net, z, label, conditional);
  cn_sym logit = discriminator(net, image, label, conditional, 0);
  cn_sym outputs[2] = {cn_net_loss(net, "binary_crossentropy_from_logits", logit, target, "g_loss"),
                       image};
  st = cn_net_build(net, outputs, 2, out);
  cn_net_free(net);
  return st;
}

static cn_status open_gan(gan *m, const options *o) {
  cn_status st = build_generator(o->conditional, &m->generator);
  if (st == CN_OK) st = build_discriminator(o->conditional, &m->discriminator);
  if (st == CN_OK) st = build_combined(o->conditional, &m->combined);
  if (st == CN_OK) st = cn_model_init_weights(m->generator, o->seed);
  if (st == CN_OK) st = cn_model_init_weights(m->discriminator, o->seed);
  if (st == CN_OK) st = cn_model_copy_weights(m->combined, m->generator, NULL);
  if (st == CN_OK) st = cn_model_copy_weights(m->combined, m->discriminator, NULL);
  /* The generator step never keeps the discriminator's updates (its copy takes the discriminator
   * session's weights before every step), so its weights are frozen there and their gradients
   * are not computed; its BatchNormalization stays trainable, i.e. on batch statistics. */
  static const char *const frozen[] = {"conv2d", "conv2d_1", "dense_1", "class_embedding"};
  for (int k = 0; k < (o->conditional ? 4 : 3) && st == CN_OK; k++)
    st = cn_model_set_trainable(m->combined, frozen[k], 0);
  cn_session_options adam = {.optimizer = "adam",
                             .lr = 2e-4f,
                             .beta1 = 0.5f,
                             .beta2 = 0.999f,
                             .epsilon = 1e-7f,
                             .max_batch = BATCH,
                             .seed = o->seed};
  if (st == CN_OK) st = cn_session_new(m->discriminator, &adam, &m->d);
  if (st == CN_OK) st = cn_session_new(m->combined, &adam, &m->gan);
  adam.loss = "mse"; /* the generator session is never stepped: it only runs forward */
  if (st == CN_OK) st = cn_session_new(m->generator, &adam, &m->g);
  return st;
}

static void close_gan(gan *m) {
  cn_session_free(m->g), cn_session_free(m->d), cn_session_free(m->gan);
  cn_model_free(m->generator), cn_model_free(m->discriminator), cn_model_free(m->combined);
}

/* ---- training ---- */

typedef struct batch_buffers {
  float real[BATCH * PIXELS], z[BATCH * LATENT], classes[BATCH], label[BATCH * CLASSES];
  float t_real[BATCH], zeros[BATCH], ones[BATCH];
} batch_buffers;

/* One discriminator step and one generator step on `count` real images; their losses added to
 * sums. */
static cn_status train_batch(gan *m, batch_buffers *b, int count, uint64_t *noise, double sums[2]) {
  fm_normal(noise, b->z, (int64_t)count * LATENT);
  const float *g_in[2] = {b->z, b->label};
  cn_status st = cn_session_copy_weights(m->g, m->gan, NULL); /* the generator's latest weights */
  if (st == CN_OK) st = cn_session_forward(m->g, count, g_in, 1);
  const float *fake = st == CN_OK ? cn_session_output(m->g, 0) : NULL;
  if (st != CN_OK) return st;
  double d_loss = 0, g_loss = 0;
  const float *d_in[5] = {b->real, b->t_real, fake, b->zeros, b->label};
  st = cn_session_step_inputs(m->d, count, d_in, NULL, &d_loss);
  if (st == CN_OK) st = cn_session_copy_weights(m->gan, m->d, NULL); /* the frozen copy */
  const float *gan_in[3] = {b->z, b->ones, b->label};
  if (st == CN_OK) st = cn_session_step_inputs(m->gan, count, gan_in, NULL, &g_loss);
  sums[0] += d_loss, sums[1] += g_loss;
  return st;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One epoch in a shuffled order drawn from (seed, epoch); the mean losses into losses. */
static cn_status epoch(gan *m, const options *o, const float *x, const float *y, int64_t n,
                       loop_state *ls, double losses[2]) {
  int64_t *order = fm_shuffled(n, (unsigned)(o->seed * 1000 + (uint64_t)ls->epoch));
  batch_buffers *b = calloc(1, sizeof *b);
  if (!order || !b) return CN_ERR_NOMEM;
  for (int i = 0; i < BATCH; i++) {
    b->t_real[i] = o->label_smoothing ? 0.9f : 1.0f;
    b->ones[i] = 1.0f;
  }
  double sums[2] = {0, 0};
  int64_t batches = 0;
  cn_status st = CN_OK;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH, batches++) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    fm_gather(x, order, at, count, b->real);
    for (int i = 0; i < count; i++) b->classes[i] = y ? y[order[at + i]] : 0;
    one_hot(b->classes, count, b->label);
    st = train_batch(m, b, count, &ls->noise, sums);
  }
  losses[0] = sums[0] / (double)(batches ? batches : 1);
  losses[1] = sums[1] / (double)(batches ? batches : 1);
  free(order);
  free(b);
  return st;
}

/* ---- samples ---- */

/* n samples at inference (the moving statistics) into out (n x 784, in [0, 1]) from z (n x 100);
 * class i % 10 when conditional (an unconditional generator has one input: label is not read). */
static cn_status sample(gan *m, int64_t n, const float *z, float *out) {
  cn_status st = cn_session_copy_weights(m->g, m->gan, NULL);
  float classes[BATCH], label[BATCH * CLASSES];
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    for (int i = 0; i < count; i++) classes[i] = (float)((at + i) % CLASSES);
    one_hot(classes, count, label);
    const float *in[2] = {z + at * LATENT, label};
    st = cn_session_forward(m->g, count, in, 0);
    const float *img = st == CN_OK ? cn_session_output(m->g, 0) : NULL;
    for (int64_t i = 0; img && i < (int64_t)count * PIXELS; i++)
      out[at * PIXELS + i] = (img[i] + 1.0f) * 0.5f;
  }
  return st;
}

/* PREFIX_epochEE.png: the fixed noise's 10 x 10 samples. Sample i is of class i % 10, so with
 * --conditional cell (r, c) shows sample c * 10 + r: row r is class r. */
static cn_status draw_grid(gan *m, const options *o, const float *fixed, int e) {
  static float images[GRID * GRID * PIXELS];
  const float *cells[GRID * GRID];
  cn_status st = sample(m, GRID * GRID, fixed, images);
  for (int k = 0; k < GRID * GRID; k++)
    cells[k] = images + (o->conditional ? (k % GRID) * GRID + k / GRID : k) * PIXELS;
  char path[4096];
  snprintf(path, sizeof path, "%s_epoch%02d.png", o->out, e);
  return st == CN_OK ? fm_draw_grid(cells, GRID * GRID, GRID, path) : st;
}

/* --generate N: N samples of fresh noise (class i % 10) as an (N, 28, 28, 1) .npy in [0, 1]. */
static cn_status generate(gan *m, const options *o) {
  float *z = malloc(sizeof(float) * (size_t)o->generate * LATENT);
  float *images = malloc(sizeof(float) * (size_t)o->generate * PIXELS);
  uint64_t noise = o->seed ^ 0x67656e6572617465ULL; /* "generate" */
  cn_status st = z && images ? CN_OK : CN_ERR_NOMEM;
  if (st == CN_OK) fm_normal(&noise, z, o->generate * LATENT);
  if (st == CN_OK) st = sample(m, o->generate, z, images);
  cn_shape shape = {4, {o->generate, SIDE, SIDE, 1}};
  if (st == CN_OK) st = cn_npy_write(o->generate_out, &shape, images);
  free(z);
  free(images);
  return st;
}

/* ---- the command line ---- */

static int usage(const char *bad) {
  fprintf(stderr,
          "dcgan: bad option %s\nusage: dcgan [--data DIR] [--epochs N] [--train-samples N] "
          "[--seed S] [--threads T] [--conditional] [--label-smoothing] [--out PREFIX] "
          "[--checkpoint FILE] [--resume FILE] [--generate N --generate-out FILE.npy]\n",
          bad);
  return 2;
}

static int number(const char *s, long long lo, long long *out) {
  char *end = NULL;
  *out = s ? strtoll(s, &end, 10) : 0;
  return s && *s && !*end && *out >= lo;
}

/* 0: parsed; otherwise the exit code. */
static int parse(int argc, char **argv, options *o) {
  *o = (options){
      .data = "/usr/share/datasets/fashion-mnist", .out = "dcgan", .epochs = 5, .seed = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long long n = 0;
    int takes = 1;
    if (!strcmp(a, "--conditional"))
      o->conditional = 1, takes = 0;
    else if (!strcmp(a, "--label-smoothing"))
      o->label_smoothing = 1, takes = 0;
    else if (!strcmp(a, "--data") && v)
      o->data = v;
    else if (!strcmp(a, "--out") && v)
      o->out = v;
    else if (!strcmp(a, "--checkpoint") && v)
      o->checkpoint = v;
    else if (!strcmp(a, "--resume") && v)
      o->resume = v;
    else if (!strcmp(a, "--generate-out") && v)
      o->generate_out = v;
    else if (!strcmp(a, "--epochs") && number(v, 0, &n) && n < 100000)
      o->epochs = (int)n;
    else if (!strcmp(a, "--train-samples") && number(v, 0, &n))
      o->train_samples = n;
    else if (!strcmp(a, "--seed") && number(v, 0, &n))
      o->seed = (uint64_t)n;
    else if (!strcmp(a, "--threads") && number(v, 1, &n) && n < 1024)
      o->threads = (int)n;
    else if (!strcmp(a, "--generate") && number(v, 1, &n) && n < (1 << 24))
      o->generate = n;
    else
      return usage(a);
    i += takes;
  }
  if (o->generate && !o->generate_out) return usage("--generate (needs --generate-out)");
  if (o->generate_out && !o->generate) return usage("--generate-out (needs --generate)");
  return 0;
}

/* --resume: the sessions and the loop state, refused when the run's settings differ. */
static int resume(gan *m, const options *o, loop_state *ls) {
  loop_state saved;
  cn_session *both[2] = {m->d, m->gan};
  if (cn_sessions_load(o->resume, both, 2, &saved, sizeof saved) != CN_OK) return fail();
  if (saved.seed != ls->seed || saved.samples != ls->samples || saved.smoothed != ls->smoothed ||
      saved.epoch < 0) {
    fprintf(stderr, "dcgan: %s: made with other --seed, --train-samples or --label-smoothing\n",
            o->resume);
    return 1;
  }
  *ls = saved;
  return 0;
}

static int save_generator(gan *m, const options *o) {
  char path[4096];
  snprintf(path, sizeof path, "%s_generator.cnm", o->out);
  if (cn_session_copy_weights(m->g, m->gan, NULL) != CN_OK ||
      cn_session_sync(m->g, m->generator) != CN_OK || cn_model_save(m->generator, path) != CN_OK)
    return fail();
  return 0;
}

static int train(gan *m, const options *o, const float *x, const float *y, loop_state *ls) {
  float fixed[GRID * GRID * LATENT];
  uint64_t fixed_noise = o->seed ^ 0x6669786564ULL; /* "fixed" */
  fm_normal(&fixed_noise, fixed, GRID * GRID * LATENT);
  cn_session *both[2] = {m->d, m->gan};
  while (ls->epoch < o->epochs) {
    double losses[2], start = now();
    if (epoch(m, o, x, y, ls->samples, ls, losses) != CN_OK) return fail();
    double seconds = now() - start;
    ls->epoch++;
    printf("epoch %d d_loss %.6f g_loss %.6f seconds %.2f\n", ls->epoch, losses[0], losses[1],
           seconds);
    fflush(stdout);
    if (draw_grid(m, o, fixed, ls->epoch) != CN_OK) return fail();
    if (o->checkpoint && cn_sessions_save(o->checkpoint, both, 2, ls, sizeof *ls) != CN_OK)
      return fail();
  }
  return 0;
}

int main(int argc, char **argv) {
  cn_prefer_passive_waiting(argv); /* idle threads sleep rather than spin (convnet/core.h) */
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc;
  if (o.threads) cn_set_threads(o.threads);
  float *x = NULL, *y = NULL;
  int64_t n = 0;
  if (fm_load_images(o.data, "train", &x, &n) != CN_OK) return fail();
  if (o.conditional && fm_load_labels(o.data, "train", n, &y) != CN_OK) return fail();
  for (int64_t i = 0; i < n * PIXELS; i++) x[i] = x[i] * 2.0f - 1.0f; /* [0, 1] -> [-1, 1] */
  loop_state ls = {.noise = o.seed, .seed = o.seed, .samples = n, .smoothed = o.label_smoothing};
  if (o.train_samples > 0 && o.train_samples < n) ls.samples = o.train_samples;
  gan m = {0};
  if (open_gan(&m, &o) != CN_OK) return fail();
  rc = o.resume ? resume(&m, &o, &ls) : 0;
  if (!rc) rc = train(&m, &o, x, y, &ls);
  if (!rc) rc = save_generator(&m, &o);
  if (!rc && o.generate && generate(&m, &o) != CN_OK) rc = fail();
  close_gan(&m);
  free(x), free(y);
  return rc;
}
