/* Initializers: Keras's fans and formulas (VarianceScaling in its Glorot, He and LeCun forms,
 * normal, truncated normal, uniform, constants), seeded and keyed by weight name, and the
 * initializers named in Keras JSON files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/model.h"
#include "core/error.h"
#include "model/init.h"
#include "model/model.h"
#include "ops/ops.h"
#include "testlib.h"

static void test_fans(void) {
  double in, out;
  cn_init_fans(&(cn_shape){4, {3, 3, 8, 16}}, &in, &out);
  CHECK(in == 72 && out == 144);
  cn_init_fans(&(cn_shape){2, {10, 20}}, &in, &out);
  CHECK(in == 10 && out == 20);
  cn_init_fans(&(cn_shape){1, {7}}, &in, &out);
  CHECK(in == 7 && out == 7);
}

typedef struct stats {
  double mean, std, lo, hi;
} stats;

static stats sample(cn_init init, cn_shape shape, uint64_t key) {
  int64_t n = cn_shape_numel(&shape);
  float *w = malloc((size_t)n * sizeof *w);
  cn_param p = {.name = "kernel", .shape = shape, .data = w, .init = init};
  CHECK_OK(cn_param_init(&p, "layer", key));
  double s = 0, s2 = 0, lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < n; i++) s += w[i], s2 += (double)w[i] * w[i];
  for (int64_t i = 0; i < n; i++) lo = fmin(lo, w[i]), hi = fmax(hi, w[i]);
  free(w);
  double mean = s / (double)n;
  return (stats){mean, sqrt(s2 / (double)n - mean * mean), lo, hi};
}

/* Keras's formulas on 480,000 draws: the standard deviation within 1 %, the bounds exact. */
static void test_formulas(void) {
  cn_shape conv = {4, {3, 3, 200, 300}}; /* fan_in 1800, fan_out 2700 */
  double fan_in = 1800, fan_avg = 2250;
  stats s = sample(cn_init_glorot_uniform(), conv, 1);
  double limit = sqrt(3.0 / fan_avg);
  CHECK(s.hi <= limit && s.lo >= -limit && s.hi > 0.99 * limit);
  CHECK_NEAR(s.std, limit / sqrt(3.0), 0.01 * limit / sqrt(3.0));
  CHECK(fabs(s.mean) < 0.01 * limit);

  cn_init he = {.kind = CN_INIT_VARIANCE_SCALING,
                .a = 2,
                .mode = CN_FAN_IN,
                .distribution = CN_DIST_TRUNCATED_NORMAL};
  s = sample(he, conv, 2);
  double sd = sqrt(2.0 / fan_in);
  CHECK_NEAR(s.std, sd, 0.01 * sd);
  CHECK(s.hi <= 2 * sd / 0.87962566103423978 && s.lo >= -2 * sd / 0.87962566103423978);

  cn_init lecun = {.kind = CN_INIT_VARIANCE_SCALING,
                   .a = 1,
                   .mode = CN_FAN_OUT,
                   .distribution = CN_DIST_UNTRUNCATED_NORMAL};
  s = sample(lecun, conv, 3);
  CHECK_NEAR(s.std, sqrt(1.0 / 2700), 0.01 * sqrt(1.0 / 2700));

  cn_init normal = {.kind = CN_INIT_RANDOM_NORMAL, .a = 1.5f, .b = 0.25f};
  s = sample(normal, conv, 4);
  CHECK_NEAR(s.mean, 1.5, 0.002);
  CHECK_NEAR(s.std, 0.25, 0.0025);
  cn_init trunc = {.kind = CN_INIT_TRUNCATED_NORMAL, .a = 0, .b = 0.05f};
  s = sample(trunc, conv, 5);
  CHECK(s.hi <= 0.1 + 1e-6 && s.lo >= -0.1 - 1e-6);
  CHECK_NEAR(s.std, 0.05 * 0.87962566103423978, 0.0005);
  cn_init uni = {.kind = CN_INIT_RANDOM_UNIFORM, .a = -0.05f, .b = 0.05f};
  s = sample(uni, conv, 6);
  CHECK(s.lo >= -0.05 && s.hi < 0.05);
  CHECK_NEAR(s.std, 0.1 / sqrt(12.0), 0.0005);
  cn_init c = {.kind = CN_INIT_CONSTANT, .a = 0.3f};
  s = sample(c, (cn_shape){1, {5}}, 7);
  CHECK(s.lo == 0.3f && s.hi == 0.3f);
}

/* The defaults by weight name, and a refusal that names the layer, weight and initializer. */
static void test_defaults(void) {
  CHECK(cn_init_default("kernel").kind == CN_INIT_VARIANCE_SCALING);
  CHECK(cn_init_default("depthwise_kernel").mode == CN_FAN_AVG);
  CHECK(cn_init_default("bias").kind == CN_INIT_ZEROS);
  CHECK(cn_init_default("moving_mean").kind == CN_INIT_ZEROS);
  CHECK(cn_init_default("gamma").kind == CN_INIT_ONES);
  CHECK(cn_init_default("moving_variance").kind == CN_INIT_ONES);
  float w[4];
  cn_param p = {.name = "kernel",
                .shape = {1, {4}},
                .data = w,
                .init = {.kind = CN_INIT_UNSUPPORTED, .name = "Orthogonal"}};
  CHECK(cn_param_init(&p, "dense_3", 1) == CN_ERR_UNSUPPORTED);
  CHECK(strstr(cn_last_error(), "dense_3/kernel: initializer Orthogonal is not supported") != NULL);
}

static const char *write_json(const char *name, const char *text) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", cn_test_tmpdir(), name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
  return path;
}

/* A Keras 3 Functional JSON naming its initializers in both forms. */
static const char *const model_json =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": {\"batch_shape\": [null, 6, 6, "
    "3], \"name\": \"x\"}, \"inbound_nodes\": []},"
    "{\"class_name\": \"Conv2D\", \"name\": \"c\", \"config\": {\"name\": \"c\", \"filters\": 4, "
    "\"kernel_size\": [3, 3], \"kernel_initializer\": {\"module\": \"keras.initializers\", "
    "\"class_name\": \"HeNormal\", \"config\": {\"seed\": null}}, \"bias_initializer\": "
    "{\"class_name\": \"Constant\", \"config\": {\"value\": 0.25}}}, \"inbound_nodes\": "
    "[[[\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"BatchNormalization\", \"name\": \"bn\", \"config\": {\"name\": \"bn\", "
    "\"gamma_initializer\": \"zeros\"}, \"inbound_nodes\": [[[\"c\", 0, 0, {}]]]},"
    "{\"class_name\": \"Flatten\", \"name\": \"f\", \"config\": {\"name\": \"f\"}, "
    "\"inbound_nodes\": [[[\"bn\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"name\": \"d\", \"config\": {\"name\": \"d\", \"units\": 2, "
    "\"kernel_initializer\": \"%s\"}, \"inbound_nodes\": [[[\"f\", 0, 0, {}]]]}],"
    "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"d\", 0, 0]]}}";

static cn_model *load_json(const char *dense_init) {
  char text[4096];
  snprintf(text, sizeof text, model_json, dense_init);
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(write_json("m.json", text), &m));
  return m;
}

static const cn_param *param(const cn_model *m, const char *layer, const char *name) {
  int i = cn_graph_find(m->graph, layer);
  return i < 0 ? NULL : cn_node_find_param(&m->graph->nodes[i], name);
}

static void test_keras_json(void) {
  cn_model *m = load_json("glorot_normal");
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 42));
  const cn_param *k = param(m, "c", "kernel"), *b = param(m, "c", "bias");
  CHECK(k && k->init.kind == CN_INIT_VARIANCE_SCALING && k->init.a == 2);
  CHECK(b && b->data[0] == 0.25f && b->data[3] == 0.25f);
  const cn_param *g = param(m, "bn", "gamma"), *v = param(m, "bn", "moving_variance");
  CHECK(g && g->data[0] == 0 && v && v->data[0] == 1);
  const cn_param *d = param(m, "d", "kernel");
  CHECK(d && d->init.mode == CN_FAN_AVG && d->init.distribution == CN_DIST_TRUNCATED_NORMAL);
  /* The same seed gives the same weights; another seed others. */
  float first = k->data[5];
  CHECK_OK(cn_model_init_weights(m, 42));
  CHECK(k->data[5] == first);
  CHECK_OK(cn_model_init_weights(m, 43));
  CHECK(k->data[5] != first);
  cn_model_free(m);

  m = load_json("orthogonal");
  if (!m) return;
  CHECK(cn_model_init_weights(m, 1) == CN_ERR_UNSUPPORTED);
  CHECK(strstr(cn_last_error(), "d/kernel: initializer orthogonal is not supported") != NULL);
  cn_model_free(m);
}

/* The real mnist_cnn.json (Keras 2.3) names GlorotUniform and Zeros for every layer. */
static void test_mnist_json(void) {
  const char *path = cn_test_data("weights/keras/mnist_cnn.json");
  if (!path) {
    printf("note: mnist_cnn.json absent, skipped\n");
    return;
  }
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(path, &m));
  if (!m) return;
  CHECK_OK(cn_model_init_weights(m, 7));
  int checked = 0;
  for (int i = 0; i < m->graph->n_nodes; i++)
    for (int p = 0; p < m->graph->nodes[i].n_params; p++) {
      const cn_param *w = &m->graph->nodes[i].params[p];
      CHECK(strcmp(w->init.name, strcmp(w->name, "kernel") == 0 ? "GlorotUniform" : "Zeros") == 0);
      double fi, fo;
      cn_init_fans(&w->shape, &fi, &fo);
      double limit = strcmp(w->name, "kernel") == 0 ? sqrt(6.0 / (fi + fo)) : 0;
      int inside = 1;
      for (int64_t j = 0; j < cn_shape_numel(&w->shape); j++) inside &= fabsf(w->data[j]) <= limit;
      CHECK(inside);
      checked++;
    }
  CHECK(checked == 8);
  cn_model_free(m);
}

int main(void) {
  test_fans();
  test_formulas();
  test_defaults();
  test_keras_json();
  test_mnist_json();
  return cn_test_finish();
}
