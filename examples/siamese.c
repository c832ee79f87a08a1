/* Lesson 4: a siamese network learns to tell whether two Fashion-MNIST images show the same kind
 * of garment, written with the public API only.
 *
 *   siamese [--loss contrastive|triplet] [DATA_DIR [EPOCHS [TRAIN_PAIRS [OUT_PREFIX [SEED]]]]]
 *
 * One small CNN (the "tower": Conv2D(16) -> MaxPool -> Conv2D(32) -> MaxPool -> Flatten ->
 * Dense(64, relu) -> Dense(16)) maps an image to a 16-number embedding. The model applies the
 * same tower to two images (cn_net_call: the second call shares the first call's weights) and
 * computes the Euclidean distance d between the two embeddings. The contrastive loss
 * (Hadsell et al. 2006: d^2 for a pair of one class, max(margin - d, 0)^2 for a pair of two)
 * pulls pairs of one class together and pushes the others at least `margin` apart. With
 * --loss triplet the tower sees three images, an anchor, a positive of its class and a negative
 * of another, and the loss max(d(a, p) - d(a, n) + margin, 0) is built from the math layers.
 *
 * Each epoch draws TRAIN_PAIRS pairs (default 30,000: 60,000 images) from the 60,000 training
 * images, half of one class, with a small seeded generator (splitmix64) that
 * bench/bench_siamese.py repeats in Python, so both frameworks train on the same pairs. After
 * training, the verification threshold is the distance that best separates 10,000 fresh training
 * pairs; the program then prints the verification accuracy on 10,000 test pairs (half of one
 * class, the same pairs for every seed), saves the model as OUT_PREFIX.cnm and draws the test
 * embeddings' first two principal components, coloured by class, into OUT_PREFIX.png. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

#include "fashion_mnist.h"

enum { SIDE = FM_SIDE, PIXELS = FM_PIXELS, CLASSES = 10, EMBED = 16, BATCH = 128 };
enum { EVAL_PAIRS = 10000 };
static const float MARGIN = 1.0f;
static const float EPS = 1e-6f; /* under the square root: its gradient stays finite at d = 0 */
static const uint64_t TEST_PAIRS_SEED = 0x7e57;

static const char *const CLASS_NAMES[CLASSES] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};

static int fail(void) {
  fprintf(stderr, "siamese: %s\n", cn_last_error());
  return 1;
}

/* ---- pairs and triplets -------------------------------------------------------------------- */

/* The images of each class, in file order. */
typedef struct classes {
  int64_t n;
  const int *label; /* n labels */
  int64_t *members[CLASSES];
  int64_t count[CLASSES];
} classes;

static cn_status classes_index(classes *c, const int *label, int64_t n) {
  *c = (classes){.n = n, .label = label};
  for (int k = 0; k < CLASSES; k++)
    if (!(c->members[k] = malloc(sizeof(int64_t) * (size_t)n))) return CN_ERR_NOMEM;
  for (int64_t i = 0; i < n; i++) c->members[label[i]][c->count[label[i]]++] = i;
  return CN_OK;
}

static void classes_free(classes *c) {
  for (int k = 0; k < CLASSES; k++) free(c->members[k]);
}

static int64_t random_member(const classes *c, int k, uint64_t *state) {
  return c->members[k][fm_random(state) % (uint64_t)c->count[k]];
}

static int other_class(int k, uint64_t *state) {
  return (int)((k + 1 + fm_random(state) % (CLASSES - 1)) % CLASSES);
}

/* n pairs (a[i], b[i]): even i of one class (same[i] 0), odd i of two (same[i] 1; the
 * contrastive loss's label: 1 for a dissimilar pair). */
static void draw_pairs(const classes *c, int64_t n, uint64_t seed, int64_t *a, int64_t *b,
                       float *label) {
  uint64_t state = seed;
  for (int64_t i = 0; i < n; i++) {
    a[i] = (int64_t)(fm_random(&state) % (uint64_t)c->n);
    int k = c->label[a[i]];
    label[i] = (float)(i & 1);
    b[i] = random_member(c, i & 1 ? other_class(k, &state) : k, &state);
  }
}

/* n triplets: an anchor, a positive of its class, a negative of another class. */
static void draw_triplets(const classes *c, int64_t n, uint64_t seed, int64_t *a, int64_t *p,
                          int64_t *q) {
  uint64_t state = seed;
  for (int64_t i = 0; i < n; i++) {
    a[i] = (int64_t)(fm_random(&state) % (uint64_t)c->n);
    int k = c->label[a[i]];
    p[i] = random_member(c, k, &state);
    q[i] = random_member(c, other_class(k, &state), &state);
  }
}

/* The pairs of one epoch (epoch 0: the pairs that choose the threshold). */
static uint64_t epoch_seed(uint64_t seed, int epoch) {
  return seed << 32 | (uint64_t)epoch;
}

/* ---- the model ----------------------------------------------------------------------------- */

static const char *const TOWER[] = {"conv1",   "pool1", "conv2",    "pool2",
                                    "flatten", "dense", "embedding"};
enum { TOWER_LAYERS = sizeof TOWER / sizeof *TOWER };

/* The tower on x: its layers are made by the first call and called again, sharing their weights,
 * by the later ones. */
static cn_sym tower(cn_net *net, cn_sym x, int first) {
  if (!first) {
    for (int i = 0; i < TOWER_LAYERS; i++) x = cn_net_call(net, TOWER[i], &x, 1);
    return x;
  }
  x = cn_net_conv2d(
      net, x,
      &(cn_conv2d_options){
          .name = "conv1", .filters = 16, .kernel_size = {3, 3}, .activation = "relu"});
  x = cn_net_max_pool2d(net, x, &(cn_pool2d_options){.name = "pool1"});
  x = cn_net_conv2d(
      net, x,
      &(cn_conv2d_options){
          .name = "conv2", .filters = 32, .kernel_size = {3, 3}, .activation = "relu"});
  x = cn_net_max_pool2d(net, x, &(cn_pool2d_options){.name = "pool2"});
  x = cn_net_flatten(net, x, "flatten");
  x = cn_net_dense(net, x, &(cn_dense_options){.name = "dense", .units = 64, .activation = "relu"});
  return cn_net_dense(net, x, &(cn_dense_options){.name = "embedding", .units = EMBED});
}

/* sqrt(sum((a - b)^2) + EPS): one number per sample. */
static cn_sym distance(cn_net *net, cn_sym a, cn_sym b, const char *name) {
  cn_sym d = cn_net_math(net, cn_net_subtract(net, a, b, NULL), "square", NULL);
  d = cn_net_reduce(net, d, "sum", NULL, 0, 0, NULL);
  return cn_net_math(net, cn_net_scale(net, d, 1.0f, EPS, NULL), "sqrt", name);
}

/* The training model (inputs: two images and the label, or three images; first output: the loss
 * per sample) and the embedding model (one image -> its embedding), cut from the same net. */
static cn_status build(int triplet, cn_model **model, cn_model **embedder, uint64_t seed) {
  cn_net *net;
  cn_status st = cn_net_new("siamese", &net);
  if (st != CN_OK) return st;
  const int64_t shape[3] = {SIDE, SIDE, 1};
  cn_sym x = cn_net_input(net, "anchor", 3, shape), loss;
  cn_sym other = cn_net_input(net, triplet ? "positive" : "other", 3, shape);
  cn_sym ex = tower(net, x, 1), eo = tower(net, other, 0);
  if (triplet) {
    cn_sym negative = cn_net_input(net, "negative", 3, shape);
    cn_sym d[2] = {distance(net, ex, eo, "d_positive"),
                   distance(net, ex, tower(net, negative, 0), "d_negative")};
    loss = cn_net_weighted_sum(net, d, (float[]){1, -1}, 2, NULL);
    loss = cn_net_math(net, cn_net_scale(net, loss, 1.0f, MARGIN, NULL), "relu", "triplet_loss");
  } else {
    cn_sym label = cn_net_input(net, "label", 0, NULL);
    loss = cn_net_contrastive_loss(net, distance(net, ex, eo, "distance"), label, MARGIN, NULL);
  }
  st = cn_net_build(net, &loss, 1, model);
  if (st == CN_OK) st = cn_net_build_from(net, &x, 1, &ex, 1, embedder);
  cn_net_free(net);
  return st == CN_OK ? cn_model_init_weights(*model, seed) : st;
}

/* ---- training ------------------------------------------------------------------------------ */

/* One epoch of n pairs (or triplets) in batches. */
static cn_status epoch(cn_session *s, int triplet, const float *x, const classes *c, int64_t n,
                       uint64_t seed) {
  int64_t *idx = malloc(sizeof(int64_t) * 3 * (size_t)n);
  float *label = malloc(sizeof(float) * (size_t)n);
  float *img = malloc(sizeof(float) * 3 * BATCH * PIXELS);
  if (!idx || !label || !img) {
    free(idx), free(label), free(img);
    return CN_ERR_NOMEM;
  }
  if (triplet)
    draw_triplets(c, n, seed, idx, idx + n, idx + 2 * n);
  else
    draw_pairs(c, n, seed, idx, idx + n, label);
  cn_status st = CN_OK;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    const float *inputs[3];
    for (int k = 0; k < (triplet ? 3 : 2); k++) {
      fm_gather(x, idx + k * n, at, count, img + (size_t)k * BATCH * PIXELS);
      inputs[k] = img + (size_t)k * BATCH * PIXELS;
    }
    if (!triplet) inputs[2] = label + at;
    st = cn_session_step_inputs(s, count, inputs, NULL, NULL);
  }
  free(idx), free(label), free(img);
  return st;
}

/* The embeddings of images order[0 .. n) of x (order NULL: the first n), n x EMBED into e. */
static cn_status embed(cn_model *embedder, const float *x, const int64_t *order, int64_t n,
                       float *e) {
  float *batch = order ? malloc(sizeof(float) * BATCH * PIXELS) : NULL;
  if (order && !batch) return CN_ERR_NOMEM;
  cn_status st = CN_OK;
  for (int64_t at = 0; st == CN_OK && at < n; at += BATCH) {
    int count = (int)(n - at < BATCH ? n - at : BATCH);
    if (order) fm_gather(x, order, at, count, batch);
    st = cn_model_forward(embedder, count, order ? batch : x + at * PIXELS, e + at * EMBED);
  }
  free(batch);
  return st;
}

/* ---- verification -------------------------------------------------------------------------- */

typedef struct scored {
  float d, label;
} scored;

static int by_distance(const void *p, const void *q) {
  float a = ((const scored *)p)->d, b = ((const scored *)q)->d;
  return (a > b) - (a < b);
}

/* The distance of rows a[i] and b[i] of the embeddings e for each of n pairs (labels 0: one
 * class). */
static void pair_distances(const float *e, const int64_t *a, const int64_t *b, const float *label,
                           int64_t n, scored *out) {
  for (int64_t i = 0; i < n; i++) {
    double sum = 0;
    for (int j = 0; j < EMBED; j++) {
      double t = e[a[i] * EMBED + j] - e[b[i] * EMBED + j];
      sum += t * t;
    }
    out[i] = (scored){(float)sqrt(sum), label[i]};
  }
}

/* The threshold t ("one class" when d < t) right for the most pairs: midway between two
 * neighbouring distances (sorts s). */
static float best_threshold(scored *s, int64_t n) {
  qsort(s, (size_t)n, sizeof *s, by_distance);
  int64_t different = 0, best = -1, best_k = 0;
  for (int64_t i = 0; i < n; i++) different += s[i].label != 0;
  /* k pairs below the threshold: right are the same-class ones among them and the others above. */
  for (int64_t k = 0, same_below = 0, different_below = 0; k <= n; k++) {
    int64_t right = same_below + (different - different_below);
    if (right > best) best = right, best_k = k;
    if (k < n && s[k].label != 0)
      different_below++;
    else if (k < n)
      same_below++;
  }
  if (best_k == 0) return s[0].d;
  if (best_k == n) return s[n - 1].d + 1.0f;
  return 0.5f * (s[best_k - 1].d + s[best_k].d);
}

static double accuracy(const scored *s, int64_t n, float threshold) {
  int64_t right = 0;
  for (int64_t i = 0; i < n; i++) right += (s[i].d < threshold) == (s[i].label == 0);
  return (double)right / (double)n;
}

/* The distances of EVAL_PAIRS pairs of c's images x drawn from seed. e: the embeddings of every
 * image of x, or NULL to embed just the pairs' images. */
static cn_status verify(cn_model *embedder, const float *x, const float *e, const classes *c,
                        uint64_t seed, scored *s) {
  int64_t *ab = malloc(sizeof(int64_t) * 4 * EVAL_PAIRS); /* a, b, then 0 .. 2 * EVAL_PAIRS */
  float *label = malloc(sizeof(float) * EVAL_PAIRS);
  float *own = e ? NULL : malloc(sizeof(float) * 2 * EVAL_PAIRS * EMBED);
  cn_status st = ab && label && (e || own) ? CN_OK : CN_ERR_NOMEM;
  if (st == CN_OK) {
    draw_pairs(c, EVAL_PAIRS, seed, ab, ab + EVAL_PAIRS, label);
    int64_t *a = ab, *b = ab + EVAL_PAIRS, *rows = ab + 2 * EVAL_PAIRS;
    if (!e) { /* row i holds a[i], row EVAL_PAIRS + i holds b[i] */
      for (int64_t i = 0; i < 2 * EVAL_PAIRS; i++) rows[i] = i;
      st = embed(embedder, x, ab, 2 * EVAL_PAIRS, own);
      a = rows, b = rows + EVAL_PAIRS, e = own;
    }
    if (st == CN_OK) pair_distances(e, a, b, label, EVAL_PAIRS, s);
  }
  free(ab), free(label), free(own);
  return st;
}

/* ---- the picture --------------------------------------------------------------------------- */

/* Each row of e (n x EMBED) projected on the first two principal components (power iteration on
 * the covariance, the second after deflating the first) into xy (n x 2). */
static void pca2(const float *e, int64_t n, float *xy) {
  double mean[EMBED] = {0}, cov[EMBED][EMBED] = {{0}}, v[2][EMBED];
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < EMBED; j++) mean[j] += e[i * EMBED + j] / (double)n;
  for (int64_t i = 0; i < n; i++)
    for (int j = 0; j < EMBED; j++)
      for (int k = 0; k < EMBED; k++)
        cov[j][k] += (e[i * EMBED + j] - mean[j]) * (e[i * EMBED + k] - mean[k]);
  for (int c = 0; c < 2; c++) {
    for (int j = 0; j < EMBED; j++) v[c][j] = 1.0 + j * 0.01;
    for (int it = 0; it < 500; it++) {
      double w[EMBED] = {0}, norm = 0;
      for (int j = 0; j < EMBED; j++)
        for (int k = 0; k < EMBED; k++) w[j] += cov[j][k] * v[c][k];
      for (int j = 0; j < EMBED; j++) norm += w[j] * w[j];
      for (int j = 0; j < EMBED; j++) v[c][j] = norm > 0 ? w[j] / sqrt(norm) : 0;
    }
    double lambda = 0; /* v' C v, then C -= lambda v v' */
    for (int j = 0; j < EMBED; j++)
      for (int k = 0; k < EMBED; k++) lambda += v[c][j] * cov[j][k] * v[c][k];
    for (int j = 0; j < EMBED; j++)
      for (int k = 0; k < EMBED; k++) cov[j][k] -= lambda * v[c][j] * v[c][k];
  }
  for (int64_t i = 0; i < n; i++)
    for (int c = 0; c < 2; c++) {
      double t = 0;
      for (int j = 0; j < EMBED; j++) t += (e[i * EMBED + j] - mean[j]) * v[c][j];
      xy[i * 2 + c] = (float)t;
    }
}

static cn_status draw(const float *e, const int *label, int64_t n, const char *title,
                      const char *path) {
  float *xy = malloc(sizeof(float) * 2 * (size_t)n);
  if (!xy) return CN_ERR_NOMEM;
  pca2(e, n, xy);
  cn_viz_scatter_options o = {.title = title,
                              .x_label = "principal component 1",
                              .y_label = "principal component 2",
                              .class_names = CLASS_NAMES,
                              .classes = CLASSES};
  cn_status st = cn_viz_scatter(xy, label, n, &o, path);
  free(xy);
  return st;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int *int_labels(const float *y, int64_t n) {
  int *label = malloc(sizeof(int) * (size_t)n);
  for (int64_t i = 0; label && i < n; i++) label[i] = (int)y[i];
  return label;
}

int main(int argc, char **argv) {
  const char *positional[5] = {"/usr/share/datasets/fashion-mnist", "5", "30000", "siamese", "1"};
  const char *loss = "contrastive";
  for (int i = 1, k = 0; i < argc; i++) {
    if (strcmp(argv[i], "--loss") == 0 && i + 1 < argc)
      loss = argv[++i];
    else if (k < 5)
      positional[k++] = argv[i];
  }
  int triplet = strcmp(loss, "triplet") == 0;
  if (!triplet && strcmp(loss, "contrastive") != 0) {
    fprintf(stderr, "siamese: --loss is contrastive or triplet, not \"%s\"\n", loss);
    return 2;
  }
  const char *dir = positional[0], *out = positional[3];
  int epochs = atoi(positional[1]);
  int64_t train_pairs = atoll(positional[2]);
  uint64_t seed = strtoull(positional[4], NULL, 10);

  float *xt = NULL, *xv = NULL, *yt = NULL, *yv = NULL;
  int64_t nt, nv;
  if (fm_load_images(dir, "train", &xt, &nt) != CN_OK ||
      fm_load_images(dir, "t10k", &xv, &nv) != CN_OK ||
      fm_load_labels(dir, "train", nt, &yt) != CN_OK ||
      fm_load_labels(dir, "t10k", nv, &yv) != CN_OK)
    return fail();
  int *lt = int_labels(yt, nt), *lv = int_labels(yv, nv);
  classes ct, cv;
  if (!lt || !lv || classes_index(&ct, lt, nt) != CN_OK || classes_index(&cv, lv, nv) != CN_OK)
    return fprintf(stderr, "siamese: out of memory\n"), 1;

  cn_model *model, *embedder;
  cn_session *s;
  if (build(triplet, &model, &embedder, seed) != CN_OK) return fail();
  cn_session_options o = {.optimizer = "adam", .max_batch = BATCH, .seed = seed};
  if (cn_session_new(model, &o, &s) != CN_OK) return fail();
  for (int e = 1; e <= epochs; e++) {
    if (epoch(s, triplet, xt, &ct, train_pairs, epoch_seed(seed, e)) != CN_OK) return fail();
    printf("epoch %d/%d done\n", e, epochs);
    fflush(stdout);
  }
  if (cn_session_sync(s, model) != CN_OK || cn_model_copy_weights(embedder, model, NULL) != CN_OK)
    return fail();

  float *ev = malloc(sizeof(float) * EMBED * (size_t)nv);
  scored *pairs = malloc(sizeof(scored) * EVAL_PAIRS);
  if (!ev || !pairs) return fprintf(stderr, "siamese: out of memory\n"), 1;
  if (verify(embedder, xt, NULL, &ct, epoch_seed(seed, 0), pairs) != CN_OK) return fail();
  float threshold = best_threshold(pairs, EVAL_PAIRS);
  double train_acc = accuracy(pairs, EVAL_PAIRS, threshold);
  if (embed(embedder, xv, NULL, nv, ev) != CN_OK ||
      verify(embedder, xv, ev, &cv, TEST_PAIRS_SEED, pairs) != CN_OK)
    return fail();
  printf("threshold %.4f (training pairs accuracy %.4f)\n", threshold, train_acc);
  printf("%s loss: verification accuracy %.4f on %d test pairs\n", loss,
         accuracy(pairs, EVAL_PAIRS, threshold), EVAL_PAIRS);

  char path[4096], title[128];
  snprintf(path, sizeof path, "%s.cnm", out);
  if (cn_model_save(model, path) != CN_OK) return fail();
  snprintf(path, sizeof path, "%s.png", out);
  snprintf(title, sizeof title, "Fashion-MNIST test embeddings (%s loss), first two PCA components",
           loss);
  if (draw(ev, lv, nv, title, path) != CN_OK) return fail();
  printf("wrote %s.cnm and %s\n", out, path);
  cn_session_free(s);
  cn_model_free(model), cn_model_free(embedder);
  classes_free(&ct), classes_free(&cv);
  free(xt), free(xv), free(yt), free(yv), free(lt), free(lv), free(ev), free(pairs);
  return 0;
}
