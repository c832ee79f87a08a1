/* Lesson 6: a stacked (two-stage) class-conditional GAN in the manner of StackGAN (Zhang et al.
 * 2017) draws Fashion-MNIST garments, written with the public API only.
 *
 *   stackgan [--data DIR] [--epochs N] [--train-samples N] [--seed S] [--threads T] [--out PREFIX]
 *            [--checkpoint FILE] [--resume FILE] [--generate N --generate-out FILE.npy]
 *
 * Stage I draws a rough 14 x 14 picture from noise and a class; stage II redraws it at 28 x 28,
 * conditioned on stage I's picture and, again, on the class:
 *
 *   G1: concat(z(100), one_hot(class)) -> Dense(7*7*64, no bias) -> BN -> ReLU -> Reshape(7,7,64)
 *       -> Conv2DTranspose(32, 4, stride 2, same, no bias) -> BN -> ReLU -> Conv2D(1, 3, tanh)
 *   G2: concat(stage-I image, the class replicated over 14 x 14) -> Conv2D(32, 3) -> BN -> ReLU
 *       -> a residual block (Conv2D, BN, ReLU, Conv2D, BN, added back) -> ReLU
 *       -> Conv2DTranspose(32, 4, stride 2, same) -> BN -> ReLU -> Conv2D(1, 3, tanh)
 *   D1, D2: Conv2D(32, 4, stride 2) -> LeakyReLU(0.2) -> Conv2D(64, 4, stride 2) -> LeakyReLU(0.2)
 *       -> concat(the class replicated over the features) -> Conv2D(64, 1) -> LeakyReLU(0.2)
 *       -> Flatten -> Dense(1), a logit; D1 on 14 x 14 images, D2 on 28 x 28
 *
 * D1 judges stage I's pictures against the real images shrunk to 14 x 14 by 2 x 2 averaging;
 * D2 judges stage II's against the real 28 x 28 images. Each stage is a GAN of its own with the
 * recipe of examples/dcgan.c: pixels in [-1, 1], batches of 128, Adam (2e-4, beta1 0.5), binary
 * cross-entropy on logits; per batch one discriminator step on a real and a generated batch, then
 * one generator step through the frozen discriminator.
 *
 * The two stages train jointly, in alternation on every batch, and stage II learns from stage I's
 * current output, taken as data: its gradients never reach stage I (StackGAN keeps stage I fixed
 * while stage II trains). The paper trains stage I to the end first; training both at once needs
 * one run instead of two, and stage II is refining the kind of picture stage I draws as it
 * improves. The discriminators have no BatchNormalization, so a real and a generated batch can
 * share one step (its mean loss is half the sum of the two) and a frozen discriminator computes
 * what the training one does.
 *
 * Per epoch it prints `epoch E d1_loss X g1_loss Y d2_loss X g2_loss Y seconds T` (d: the real plus
 * the generated batch's loss; means over the epoch's batches; T the training time only) and draws
 * PREFIX_epochEE.png: one row per class, five noises, stage I (enlarged) beside stage II. At the
 * end it saves the stacked generator (inputs z and one_hot(class); outputs the 28 x 28 picture
 * and stage I's 14 x 14) as PREFIX_generator.cnm; --generate N writes N stage-II samples (sample i
 * of class i % 10) in [0, 1] as an (N, 28, 28, 1) .npy. --checkpoint keeps the four sessions and
 * the loop's state after every epoch (cn_sessions_save); --resume continues exactly. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE2 = FM_SIDE, PIX2 = FM_PIXELS, SIDE1 = 14, PIX1 = SIDE1 * SIDE1 };
enum { Z = 100, CLASSES = 10, BATCH = 128, NOISES = 5 };
static const char *const D_LAYERS[4] = {"conv1", "conv2", "joint", "logit"}; /* d1_conv1, ... */

static int fail(void) {
  fprintf(stderr, "stackgan: %s\n", cn_last_error());
  return 1;
}

/* ---- the networks -------------------------------------------------------------------------- */

/* A 'same' convolution; before a BatchNormalization (bn 1) it has no bias, as the BN's beta is one.
 */
static cn_sym conv(cn_net *net, cn_sym x, const char *name, int filters, int kernel, int stride,
                   int before_bn, const char *activation) {
  return cn_net_conv2d(net, x,
                       &(cn_conv2d_options){.name = name,
                                            .filters = filters,
                                            .kernel_size = {kernel, kernel},
                                            .strides = {stride, stride},
                                            .padding = "same",
                                            .no_bias = before_bn,
                                            .activation = activation});
}

static cn_sym upconv(cn_net *net, cn_sym x, const char *name, int filters) {
  return cn_net_conv2d_transpose(net, x,
                                 &(cn_conv2d_transpose_options){.name = name,
                                                                .filters = filters,
                                                                .kernel_size = {4, 4},
                                                                .strides = {2, 2},
                                                                .padding = "same",
                                                                .no_bias = 1});
}

static cn_sym bn(cn_net *net, cn_sym x, const char *name) {
  return cn_net_batch_norm(net, x, &(cn_batch_norm_options){.name = name});
}

static cn_sym bn_relu(cn_net *net, cn_sym x, const char *name) {
  return cn_net_activation(net, bn(net, x, name), "relu", NULL);
}

static cn_sym concat2(cn_net *net, cn_sym a, cn_sym b) {
  return cn_net_concatenate(net, (cn_sym[]){a, b}, 2, -1, NULL);
}

/* The class replicated over a side x side picture (a 1 x 1 map enlarged by nearest-neighbour
 * upsampling), to concatenate to its channels: how StackGAN's condition enters a picture. */
static cn_sym class_map(cn_net *net, cn_sym onehot, int side) {
  cn_sym c = cn_net_reshape(net, onehot, 3, (int64_t[]){1, 1, CLASSES}, NULL);
  return cn_net_upsampling2d(net, c, (int[]){side, side}, "nearest", NULL);
}

static cn_sym generator1(cn_net *net, cn_sym z, cn_sym onehot) {
  cn_sym h =
      cn_net_dense(net, concat2(net, z, onehot),
                   &(cn_dense_options){.name = "g1_dense", .units = 7 * 7 * 64, .no_bias = 1});
  h = cn_net_reshape(net, bn_relu(net, h, "g1_dense_bn"), 3, (int64_t[]){7, 7, 64}, NULL);
  h = bn_relu(net, upconv(net, h, "g1_up", 32), "g1_up_bn");
  return conv(net, h, "g1_image", 1, 3, 1, 0, "tanh");
}

/* The class re-enters stage II, replicated over stage I's picture. */
static cn_sym generator2(cn_net *net, cn_sym image1, cn_sym onehot) {
  cn_sym c = class_map(net, onehot, SIDE1);
  cn_sym h =
      bn_relu(net, conv(net, concat2(net, image1, c), "g2_join", 32, 3, 1, 1, NULL), "g2_join_bn");
  cn_sym r = bn_relu(net, conv(net, h, "g2_res_a", 32, 3, 1, 1, NULL), "g2_res_a_bn");
  r = bn(net, conv(net, r, "g2_res_b", 32, 3, 1, 1, NULL), "g2_res_b_bn");
  h = cn_net_activation(net, cn_net_add(net, (cn_sym[]){h, r}, 2, NULL), "relu", NULL);
  h = bn_relu(net, upconv(net, h, "g2_up", 32), "g2_up_bn");
  return conv(net, h, "g2_image", 1, 3, 1, 0, "tanh");
}

/* Layers named d1_... or d2_... by stage; the output is a logit. The class joins the features
 * before a 1 x 1 convolution, as in StackGAN's discriminators: concatenated only before the last
 * Dense, it would add a bias per class and could not judge whether a picture fits its class. */
static cn_sym discriminator(cn_net *net, cn_sym image, cn_sym onehot, int stage, int side) {
  char name[4][16];
  for (int k = 0; k < 4; k++) snprintf(name[k], sizeof name[k], "d%d_%s", stage, D_LAYERS[k]);
  cn_sym h = cn_net_leaky_relu(net, conv(net, image, name[0], 32, 4, 2, 0, NULL), 0.2f, NULL);
  h = cn_net_leaky_relu(net, conv(net, h, name[1], 64, 4, 2, 0, NULL), 0.2f, NULL);
  h = concat2(net, h, class_map(net, onehot, (side + 3) / 4));
  h = cn_net_leaky_relu(net, conv(net, h, name[2], 64, 1, 1, 0, NULL), 0.2f, NULL);
  return cn_net_dense(net, cn_net_flatten(net, h, NULL),
                      &(cn_dense_options){.name = name[3], .units = 1});
}

/* One stage's two models: the discriminator (image, class, label -> loss) and the GAN (the
 * generator's input, class, label -> loss and the generated image), whose discriminator layers
 * are frozen; both start from the same weights. */
typedef struct stage {
  int number, side;
  cn_model *d, *gan;
  cn_session *ds, *gs;
} stage;

static cn_status build_stage(stage *s, uint64_t seed) {
  int64_t side = s->side, image_dims[3] = {side, side, 1};
  cn_net *dnet = NULL, *gnet = NULL;
  cn_status st =
      cn_net_new(s->number == 1 ? "stage1_discriminator" : "stage2_discriminator", &dnet);
  if (st == CN_OK) st = cn_net_new(s->number == 1 ? "stage1_gan" : "stage2_gan", &gnet);
  if (st != CN_OK) return cn_net_free(dnet), st;
  cn_sym x = cn_net_input(dnet, "image", 3, image_dims);
  cn_sym c = cn_net_input(dnet, "class", 1, (int64_t[]){CLASSES});
  cn_sym label = cn_net_input(dnet, "label", 1, (int64_t[]){1});
  cn_sym loss = cn_net_loss(dnet, "binary_crossentropy_from_logits",
                            discriminator(dnet, x, c, s->number, s->side), label, "d_loss");
  st = cn_net_build(dnet, &loss, 1, &s->d);

  cn_sym in = s->number == 1 ? cn_net_input(gnet, "z", 1, (int64_t[]){Z})
                             : cn_net_input(gnet, "stage1_image", 3, (int64_t[]){SIDE1, SIDE1, 1});
  c = cn_net_input(gnet, "class", 1, (int64_t[]){CLASSES});
  label = cn_net_input(gnet, "label", 1, (int64_t[]){1});
  cn_sym fake = s->number == 1 ? generator1(gnet, in, c) : generator2(gnet, in, c);
  cn_sym outs[2] = {cn_net_loss(gnet, "binary_crossentropy_from_logits",
                                discriminator(gnet, fake, c, s->number, s->side), label, "g_loss"),
                    fake};
  if (st == CN_OK) st = cn_net_build(gnet, outs, 2, &s->gan);
  cn_net_free(dnet), cn_net_free(gnet);
  if (st == CN_OK) st = cn_model_init_weights(s->gan, seed);
  if (st == CN_OK) st = cn_model_copy_weights(s->d, s->gan, NULL);
  for (int k = 0; k < 4 && st == CN_OK; k++) {
    char name[16];
    snprintf(name, sizeof name, "d%d_%s", s->number, D_LAYERS[k]);
    st = cn_model_set_trainable(s->gan, name, 0);
  }
  cn_session_options o = {
      .optimizer = "adam", .lr = 2e-4f, .beta1 = 0.5f, .max_batch = 2 * BATCH, .seed = seed};
  if (st == CN_OK) st = cn_session_new(s->d, &o, &s->ds);
  if (st == CN_OK) st = cn_session_new(s->gan, &o, &s->gs);
  return st;
}

static void free_stage(stage *s) {
  cn_session_free(s->ds), cn_session_free(s->gs);
  cn_model_free(s->d), cn_model_free(s->gan);
}

/* The stacked generator: z and class -> (stage II's 28 x 28, stage I's 14 x 14), the weights
 * copied from the two stages' GAN models. */
static cn_status build_stacked(cn_model **out) {
  cn_net *net;
  cn_status st = cn_net_new("stackgan_generator", &net);
  if (st != CN_OK) return st;
  cn_sym z = cn_net_input(net, "z", 1, (int64_t[]){Z});
  cn_sym c = cn_net_input(net, "class", 1, (int64_t[]){CLASSES});
  cn_sym image1 = generator1(net, z, c);
  cn_sym outs[2] = {generator2(net, image1, c), image1};
  st = cn_net_build(net, outs, 2, out);
  cn_net_free(net);
  return st;
}

static cn_status update_stacked(cn_model *stacked, stage *st1, stage *st2) {
  cn_status st = cn_session_sync(st1->gs, st1->gan);
  if (st == CN_OK) st = cn_session_sync(st2->gs, st2->gan);
  if (st == CN_OK) st = cn_model_copy_weights(stacked, st1->gan, NULL);
  if (st == CN_OK) st = cn_model_copy_weights(stacked, st2->gan, NULL);
  return st;
}

/* ---- data ---------------------------------------------------------------------------------- */

typedef struct data {
  int64_t n;
  float *x2;     /* n x 28 x 28 in [-1, 1] */
  float *x1;     /* n x 14 x 14: the same, 2 x 2 averaged (what D1 sees as real) */
  float *onehot; /* n x 10 */
} data;

/* The training images in [-1, 1], shrunk copies, and one-hot classes; 0: read. */
static int load_data(const char *dir, int64_t limit, data *d) {
  float *labels = NULL;
  if (fm_load_images(dir, "train", &d->x2, &d->n) != CN_OK ||
      fm_load_labels(dir, "train", d->n, &labels) != CN_OK)
    return free(labels), fail();
  if (limit > 0 && limit < d->n) d->n = limit;
  d->x1 = malloc(sizeof(float) * (size_t)d->n * PIX1);
  d->onehot = calloc((size_t)d->n * CLASSES, sizeof(float));
  if (!d->x1 || !d->onehot) return free(labels), fprintf(stderr, "stackgan: out of memory\n"), 1;
  for (int64_t i = 0; i < d->n; i++) d->onehot[i * CLASSES + (int)labels[i]] = 1;
  free(labels);
  for (int64_t i = 0; i < d->n * PIX2; i++) d->x2[i] = d->x2[i] * 2 - 1;
  for (int64_t i = 0; i < d->n; i++)
    for (int y = 0; y < SIDE1; y++)
      for (int x = 0; x < SIDE1; x++) {
        const float *p = d->x2 + i * PIX2 + 2 * y * SIDE2 + 2 * x;
        d->x1[i * PIX1 + y * SIDE1 + x] = (p[0] + p[1] + p[SIDE2] + p[SIDE2 + 1]) / 4;
      }
  return 0;
}

static void free_data(data *d) {
  free(d->x2), free(d->x1), free(d->onehot);
}

/* ---- training ------------------------------------------------------------------------------ */

/* One batch's buffers: the discriminators' inputs hold the real images then the generated ones;
 * class and label rows likewise (labels 1 then 0; the generators' target is the first half). */
typedef struct batch {
  float z[BATCH * Z];
  float x1[2 * BATCH * PIX1], x2[2 * BATCH * PIX2];
  float onehot[2 * BATCH * CLASSES], label[2 * BATCH];
} batch;

typedef struct losses {
  double d, g;
} losses;

/* One stage's step on `count` samples: the GAN model generates from g_in in training mode
 * (BatchNormalization on the batch's statistics, as the generator step will run it; at inference
 * its lagging moving statistics would show the discriminator other images than the generator
 * makes); one discriminator step on x, the real images then those; the GAN model takes the new
 * discriminator weights; one generator step. The generated images are left in x. */
static cn_status stage_step(stage *s, batch *b, int count, const float *g_in, float *x,
                            losses *sum) {
  int64_t pixels = (int64_t)s->side * s->side;
  const float *g_inputs[3] = {g_in, b->onehot, b->label};
  double d_loss = 0, g_loss = 0;
  cn_status st = cn_session_forward(s->gs, count, g_inputs, 1);
  if (st != CN_OK) return st;
  memcpy(x + count * pixels, cn_session_output(s->gs, 1), sizeof(float) * count * pixels);
  st = cn_session_step_inputs(s->ds, 2 * count, (const float *[]){x, b->onehot, b->label}, NULL,
                              &d_loss);
  if (st == CN_OK) st = cn_session_copy_weights(s->gs, s->ds, NULL);
  if (st == CN_OK) st = cn_session_step_inputs(s->gs, count, g_inputs, NULL, &g_loss);
  sum->d += 2 * d_loss; /* the mean over both halves is half of real loss + generated loss */
  sum->g += g_loss;
  return st;
}

/* Fills the batch at `at` of the shuffled order: real images, classes (twice), labels, noise. */
static void fill_batch(batch *b, const data *d, const int64_t *order, int64_t at, int count,
                       uint64_t *rng) {
  for (int i = 0; i < count; i++) {
    int64_t k = order[at + i];
    memcpy(b->x2 + i * PIX2, d->x2 + k * PIX2, sizeof(float) * PIX2);
    memcpy(b->x1 + i * PIX1, d->x1 + k * PIX1, sizeof(float) * PIX1);
    memcpy(b->onehot + i * CLASSES, d->onehot + k * CLASSES, sizeof(float) * CLASSES);
    memcpy(b->onehot + (count + i) * CLASSES, d->onehot + k * CLASSES, sizeof(float) * CLASSES);
    b->label[i] = 1, b->label[count + i] = 0;
  }
  fm_normal(rng, b->z, (int64_t)count * Z);
}

/* One epoch: per batch, stage I's step, then stage II's on the pictures stage I just drew (the
 * images D1 saw). mean[0], mean[1]: the stages' mean losses. */
static cn_status train_epoch(stage st[2], const data *d, int epoch, uint64_t seed, uint64_t *rng,
                             batch *b, losses mean[2]) {
  int64_t *order = fm_shuffled(d->n, (unsigned)(seed * 1000 + (uint64_t)epoch));
  if (!order) return CN_ERR_NOMEM;
  cn_status status = CN_OK;
  int64_t batches = 0;
  mean[0] = mean[1] = (losses){0, 0};
  for (int64_t at = 0; status == CN_OK && at < d->n; at += BATCH, batches++) {
    int count = (int)(d->n - at < BATCH ? d->n - at : BATCH);
    fill_batch(b, d, order, at, count, rng);
    status = stage_step(&st[0], b, count, b->z, b->x1, &mean[0]);
    if (status == CN_OK)
      status = stage_step(&st[1], b, count, b->x1 + count * PIX1, b->x2, &mean[1]);
  }
  free(order);
  for (int k = 0; k < 2 && batches; k++) mean[k].d /= (double)batches, mean[k].g /= (double)batches;
  return status;
}

/* ---- pictures and samples ------------------------------------------------------------------ */

/* Runs the stacked generator on n (z, class) rows: stage II into out2, stage I into out1 (NULL:
 * not kept), in batches. */
static cn_status generate(cn_model *stacked, int64_t n, const float *z, const float *onehot,
                          float *out2, float *out1) {
  static float scratch[BATCH * PIX1];
  for (int64_t at = 0; at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    float *outs[2] = {out2 + at * PIX2, out1 ? out1 + at * PIX1 : scratch};
    cn_status st = cn_model_forward_multi(
        stacked, count, (const float *[]){z + at * Z, onehot + at * CLASSES}, outs);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

/* The grid of an epoch: row r is class r; five fixed noises, each as stage I (enlarged 2 x 2,
 * nearest) beside stage II. Pixels go from [-1, 1] to [0, 1]. */
static cn_status draw_epoch(cn_model *stacked, const float *fixed_z, const char *path) {
  enum { N = CLASSES * NOISES };
  static float z[N * Z], onehot[N * CLASSES], img2[N * PIX2], img1[N * PIX1], big1[N * PIX2];
  memset(onehot, 0, sizeof onehot);
  for (int i = 0; i < N; i++) {
    memcpy(z + i * Z, fixed_z + (i % NOISES) * Z, sizeof(float) * Z);
    onehot[i * CLASSES + i / NOISES] = 1;
  }
  cn_status st = generate(stacked, N, z, onehot, img2, img1);
  if (st != CN_OK) return st;
  const float *cells[2 * N];
  for (int i = 0; i < N; i++) {
    for (int p = 0; p < PIX2; p++) {
      big1[i * PIX2 + p] = (img1[i * PIX1 + (p / SIDE2 / 2) * SIDE1 + p % SIDE2 / 2] + 1) / 2;
      img2[i * PIX2 + p] = (img2[i * PIX2 + p] + 1) / 2;
    }
    cells[2 * i] = big1 + i * PIX2, cells[2 * i + 1] = img2 + i * PIX2;
  }
  return fm_draw_grid(cells, 2 * N, 2 * NOISES, path);
}

/* n samples of stage II, sample i of class i % 10, as an (n, 28, 28, 1) .npy in [0, 1]. */
static cn_status write_samples(cn_model *stacked, int64_t n, uint64_t seed, const char *path) {
  float *z = malloc(sizeof(float) * (size_t)n * Z), *out = malloc(sizeof(float) * (size_t)n * PIX2);
  float *onehot = calloc((size_t)n * CLASSES, sizeof(float));
  cn_status st = z && out && onehot ? CN_OK : CN_ERR_NOMEM;
  uint64_t rng = seed ^ 0x5a3b1e5ull;
  if (st == CN_OK) {
    fm_normal(&rng, z, n * Z);
    for (int64_t i = 0; i < n; i++) onehot[i * CLASSES + i % CLASSES] = 1;
    st = generate(stacked, n, z, onehot, out, NULL);
  }
  for (int64_t i = 0; st == CN_OK && i < n * PIX2; i++) out[i] = (out[i] + 1) / 2;
  cn_shape shape = {4, {n, SIDE2, SIDE2, 1}};
  if (st == CN_OK) st = cn_npy_write(path, &shape, out);
  free(z), free(out), free(onehot);
  return st;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

/* The loop's own state beside the four sessions: the epochs done and the noise generator; the seed
 * and sample count are kept to refuse a resume that would train on other batches. */
typedef struct loop_state {
  int64_t epoch, samples;
  uint64_t rng, seed;
} loop_state;

static cn_status save_checkpoint(stage st[2], const loop_state *ls, const char *path) {
  cn_session *all[4] = {st[0].ds, st[0].gs, st[1].ds, st[1].gs};
  return cn_sessions_save(path, all, 4, ls, sizeof *ls);
}

static int resume(stage st[2], loop_state *ls, const char *path) {
  cn_session *all[4] = {st[0].ds, st[0].gs, st[1].ds, st[1].gs};
  loop_state saved;
  if (cn_sessions_load(path, all, 4, &saved, sizeof saved) != CN_OK) return fail();
  if (saved.seed != ls->seed || saved.samples != ls->samples) {
    fprintf(stderr,
            "stackgan: %s: trained with --seed %llu on %lld samples, not --seed %llu on %lld\n",
            path, (unsigned long long)saved.seed, (long long)saved.samples,
            (unsigned long long)ls->seed, (long long)ls->samples);
    return 1;
  }
  *ls = saved;
  return 0;
}

/* ---- the program --------------------------------------------------------------------------- */

typedef struct options {
  const char *data, *out, *checkpoint, *resume, *generate_out;
  long long epochs, train_samples, seed, threads, generate;
} options;

static int usage(void) {
  fprintf(stderr, "usage: stackgan [--data DIR] [--epochs N] [--train-samples N] [--seed S] "
                  "[--threads T] [--out PREFIX] [--checkpoint FILE] [--resume FILE] [--generate N "
                  "--generate-out FILE.npy]\n");
  return 2;
}

static int parse_count(const char *s, long long *out) {
  char *end;
  errno = 0;
  *out = strtoll(s, &end, 10);
  return errno == 0 && end != s && *end == 0 && *out >= 0;
}

static int parse_options(int argc, char **argv, options *o) {
  *o = (options){
      .data = "/usr/share/datasets/fashion-mnist", .out = "stackgan", .epochs = 5, .seed = 1};
  const char *names[] = {"--data",         "--out",     "--checkpoint",    "--resume",
                         "--generate-out", "--epochs",  "--train-samples", "--seed",
                         "--threads",      "--generate"};
  const char **strings[] = {&o->data, &o->out, &o->checkpoint, &o->resume, &o->generate_out};
  long long *numbers[] = {&o->epochs, &o->train_samples, &o->seed, &o->threads, &o->generate};
  for (int i = 1; i < argc; i += 2) {
    int k = 0;
    while (k < 10 && strcmp(argv[i], names[k]) != 0) k++;
    if (k == 10) return fprintf(stderr, "stackgan: unknown option %s\n", argv[i]), 0;
    if (i + 1 >= argc) return fprintf(stderr, "stackgan: %s needs a value\n", argv[i]), 0;
    if (k < 5)
      *strings[k] = argv[i + 1];
    else if (!parse_count(argv[i + 1], numbers[k - 5]))
      return fprintf(stderr, "stackgan: %s: not a count: %s\n", argv[i], argv[i + 1]), 0;
  }
  if (o->epochs > 100000 || o->threads > 1024 || o->generate > 100000)
    return fprintf(stderr, "stackgan: at most 100000 epochs, 1024 threads, 100000 samples\n"), 0;
  if (o->generate > 0 && !o->generate_out)
    return fprintf(stderr, "stackgan: --generate needs --generate-out FILE.npy\n"), 0;
  return 1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  cn_prefer_passive_waiting(argv); /* idle threads sleep rather than spin (convnet/core.h) */
  options o;
  if (!parse_options(argc, argv, &o)) return usage();
  if (o.threads > 0) cn_set_threads((int)o.threads);
  static data d;
  static stage st[2] = {{.number = 1, .side = SIDE1}, {.number = 2, .side = SIDE2}};
  static batch b;
  static float fixed_z[NOISES * Z];
  cn_model *stacked = NULL;
  uint64_t seed = (uint64_t)o.seed, fixed_rng = seed ^ 0xf1eedull;
  if (load_data(o.data, o.train_samples, &d) != 0) return 1;
  if (build_stage(&st[0], seed) != CN_OK || build_stage(&st[1], seed + 1) != CN_OK ||
      build_stacked(&stacked) != CN_OK)
    return fail();
  loop_state ls = {.epoch = 0, .samples = d.n, .rng = seed, .seed = seed};
  if (o.resume && resume(st, &ls, o.resume) != 0) return 1;
  fm_normal(&fixed_rng, fixed_z, NOISES * Z);
  char path[4096];
  for (int e = (int)ls.epoch + 1; e <= o.epochs; e++) {
    losses mean[2];
    double start = now();
    if (train_epoch(st, &d, e, seed, &ls.rng, &b, mean) != CN_OK) return fail();
    printf("epoch %d d1_loss %.4f g1_loss %.4f d2_loss %.4f g2_loss %.4f seconds %.2f\n", e,
           mean[0].d, mean[0].g, mean[1].d, mean[1].g, now() - start);
    fflush(stdout);
    ls.epoch = e;
    snprintf(path, sizeof path, "%s_epoch%02d.png", o.out, e);
    if (update_stacked(stacked, &st[0], &st[1]) != CN_OK ||
        draw_epoch(stacked, fixed_z, path) != CN_OK ||
        (o.checkpoint && save_checkpoint(st, &ls, o.checkpoint) != CN_OK))
      return fail();
  }
  snprintf(path, sizeof path, "%s_generator.cnm", o.out);
  if (update_stacked(stacked, &st[0], &st[1]) != CN_OK || cn_model_save(stacked, path) != CN_OK)
    return fail();
  if (o.generate > 0 && write_samples(stacked, o.generate, seed, o.generate_out) != CN_OK)
    return fail();
  free_stage(&st[0]), free_stage(&st[1]);
  cn_model_free(stacked);
  free_data(&d);
  return 0;
}
