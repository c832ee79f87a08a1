/* convnet's side of tests/oracle/test_grad_torch.py: gradients of a graph and a short SGD training
 * run, through .npy files. The graph is a Keras model config (model.to_json() format) and its
 * parameters are <dir>/<layer>__<param>.npy, in Keras layouts (HWIO kernels, NHWC activations).
 * A shared layer's later calls ("<layer>/call<k>") have no files of their own: their parameters
 * (and gradients, the sum over the calls) are the layer's.
 *
 *   probe_grad grad <model.json> <dir> <training 0|1> <seed>
 *       reads <dir>/input.npy (batch x input shape) and <dir>/dout.npy (d loss / d output of the
 *       trainer, i.e. before a final softmax, which the trainer splits off); writes out.npy,
 *       dinput.npy, d_<layer>__<param>.npy for every trainable parameter and
 *       state_<layer>__<param>.npy for every other one (BatchNormalization's moving statistics
 *       after the forward). Prints the output kind: linear | softmax | sigmoid.
 *   probe_grad train <model.json> <dir> <config.json>
 *       reads <dir>/x.npy (n x input shape), <dir>/y.npy (n class indices), <dir>/order.npy
 *       (steps x batch sample indices); per step: training forward (seed = step), sparse
 *       categorical cross-entropy on the logits, backward, optimizer step.
 *       config.json: {"optimizer": "sgd" (default) | "adam", "lr", "momentum", "nesterov"
 *       (SGD), "beta1", "beta2", "epsilon" (Adam; absent: the Keras defaults)}. Layers with
 *       "trainable": false in the model config are frozen (BatchNormalization in inference mode).
 *       Writes losses.npy (the loss before each step) and final_<layer>__<param>.npy. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/io.h"
#include "core/graph.h"
#include "io/keras/internal.h"
#include "train/optim.h"
#include "train/trainer.h"

enum { MAX_TEXT = 1 << 20, MAX_RANGES = 256 };

static int fail(const char *what) {
  fprintf(stderr, "probe_grad: %s%s%s\n", what, *cn_last_error() ? ": " : "", cn_last_error());
  return 1;
}

/* The whole file as a NUL-terminated string (at most MAX_TEXT bytes), or NULL. */
static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *text = malloc(MAX_TEXT + 1);
  size_t len = text ? fread(text, 1, MAX_TEXT, f) : 0;
  int too_long = text && len == MAX_TEXT && fgetc(f) != EOF;
  fclose(f);
  if (!text || too_long) return free(text), NULL;
  text[len] = 0;
  return text;
}

static cn_graph *load_graph(const char *path) {
  char *json = read_text(path), *name = NULL;
  cn_graph *g = NULL;
  if (!json) return NULL;
  if (cn_keras_build_graph(path, json, &g, &name) == CN_OK && !g->params &&
      cn_graph_alloc_params(g) != CN_OK) {
    cn_graph_free(g);
    g = NULL;
  }
  free(json);
  free(name);
  return g;
}

static void param_path(char *buf, size_t cap, const char *dir, const char *prefix, const cn_node *n,
                       const cn_param *p) {
  snprintf(buf, cap, "%s/%s%s__%s.npy", dir, prefix, n->name, p->name);
}

/* Every parameter of g from <dir>/<layer>__<param>.npy, which must have the parameter's shape. */
static int read_params(cn_graph *g, const char *dir) {
  char path[4096];
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params && g->nodes[i].shares < 0; k++) {
      cn_param *p = &g->nodes[i].params[k];
      cn_shape shape;
      float *data;
      param_path(path, sizeof path, dir, "", &g->nodes[i], p);
      if (cn_npy_read(path, &shape, &data) != CN_OK) return fail(path);
      int same = cn_shape_equal(&shape, &p->shape);
      if (same) memcpy(p->data, data, (size_t)cn_shape_numel(&shape) * sizeof(float));
      free(data);
      if (!same) return fprintf(stderr, "probe_grad: %s: wrong shape\n", path), 1;
    }
  g->weights_version++;
  return 0;
}

/* values: a buffer parallel to g->params (the trainer's gradients or parameters). trainable
 * selects the trainable parameters (1), the others (0) or all (-1). */
static int write_params(cn_graph *g, const float *values, const char *dir, const char *prefix,
                        int trainable) {
  char path[4096];
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *n = &g->nodes[i];
    for (int k = 0; k < n->n_params && n->shares < 0; k++) {
      cn_param *p = &n->params[k];
      int is_trainable = n->trainable && p->trainable;
      if (trainable >= 0 && is_trainable != trainable) continue;
      param_path(path, sizeof path, dir, prefix, n, p);
      if (cn_npy_write(path, &p->shape, values + (p->data - g->params)) != CN_OK) return fail(path);
    }
  }
  return 0;
}

static int write_in(const char *dir, const char *name, const cn_shape *shape, const float *data) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return cn_npy_write(path, shape, data) != CN_OK ? fail(path) : 0;
}

/* <dir>/<name> whose per-sample shape must be `sample`; *batch receives the first dimension. */
static float *read_batch(const char *dir, const char *name, const cn_shape *sample, int *batch) {
  char path[4096];
  cn_shape shape;
  float *data = NULL;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (cn_npy_read(path, &shape, &data) != CN_OK) return fail(path), NULL;
  int ok = shape.rank >= 1 && shape.dim[0] >= 1 && shape.dim[0] <= (1 << 20);
  cn_shape want = cn_shape_batch(ok ? (int)shape.dim[0] : 1, sample);
  if (!ok || !cn_shape_equal(&shape, &want)) {
    fprintf(stderr, "probe_grad: %s: wrong shape\n", path);
    free(data);
    return NULL;
  }
  *batch = (int)shape.dim[0];
  return data;
}

static const char *kind_name(cn_output_kind kind) {
  return kind == CN_OUTPUT_SOFTMAX ? "softmax" : kind == CN_OUTPUT_SIGMOID ? "sigmoid" : "linear";
}

static int grad_with(cn_graph *g, const char *dir, int training, uint64_t seed) {
  const cn_shape *in_shape = &g->nodes[g->inputs[0]].shape;
  int batch = 0, dbatch = 0, rc = 1;
  float *input = read_batch(dir, "input.npy", in_shape, &batch);
  cn_trainer *t = NULL;
  const cn_trainer_options options = {.max_batch = batch > 0 ? batch : 1, .input_grad = 1};
  if (!input || cn_trainer_new(g, &options, &t) != CN_OK) return free(input), fail("trainer");
  cn_shape out_sample = cn_trainer_output_shape(t);
  float *dout = read_batch(dir, "dout.npy", &out_sample, &dbatch);
  const float *out;
  if (dout && dbatch == batch &&
      cn_trainer_forward(t, batch, input, training, seed, &out) == CN_OK &&
      cn_trainer_backward(t, dout) == CN_OK) {
    cn_graph *tg = cn_trainer_graph(t);
    cn_shape os = cn_shape_batch(batch, &out_sample), is = cn_shape_batch(batch, in_shape);
    rc = write_in(dir, "out.npy", &os, out) ||
         write_in(dir, "dinput.npy", &is, cn_trainer_input_grad(t)) ||
         write_params(tg, cn_trainer_grads(t), dir, "d_", 1) ||
         write_params(tg, tg->params, dir, "state_", 0);
    if (rc == 0) printf("%s\n", kind_name(cn_trainer_output_kind(t)));
  } else {
    fail("forward / backward (dout must be batch x the trainer's output shape)");
  }
  cn_trainer_free(t);
  free(input);
  free(dout);
  return rc;
}

static int run_grad(char **argv) {
  cn_graph *g = load_graph(argv[2]);
  if (!g) return fail(argv[2]);
  int rc = read_params(g, argv[3]);
  if (rc == 0) rc = grad_with(g, argv[3], atoi(argv[4]), strtoull(argv[5], NULL, 10));
  cn_graph_free(g);
  return rc;
}

static double config_number(const cJSON *j, const char *key) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsNumber(item) ? item->valuedouble : cJSON_IsTrue(item) ? 1.0 : 0.0;
}

typedef struct train_data {
  float *x, *y, *order;
  int n, steps, batch;
  size_t sample_floats;
} train_data;

static int read_train_data(const char *dir, const cn_shape *sample, train_data *d) {
  cn_shape ys = {0}, os;
  int ny = 0;
  char path[4096];
  d->x = read_batch(dir, "x.npy", sample, &d->n);
  d->y = read_batch(dir, "y.npy", &ys, &ny);
  snprintf(path, sizeof path, "%s/order.npy", dir);
  if (!d->x || !d->y || ny != d->n || cn_npy_read(path, &os, &d->order) != CN_OK || os.rank != 2 ||
      os.dim[0] < 1 || os.dim[1] < 1)
    return fail("training data (x, y, order)");
  d->steps = (int)os.dim[0];
  d->batch = (int)os.dim[1];
  d->sample_floats = (size_t)cn_shape_numel(sample);
  for (int64_t i = 0; i < os.dim[0] * os.dim[1]; i++)
    if (!(d->order[i] >= 0 && d->order[i] < d->n)) return fail("order: index out of range");
  return 0;
}

/* Copies the step's samples (in the given order) into x and their labels into y. */
static void gather(const train_data *d, int step, float *x, float *y) {
  for (int i = 0; i < d->batch; i++) {
    int at = (int)d->order[(size_t)step * d->batch + i];
    memcpy(x + (size_t)i * d->sample_floats, d->x + (size_t)at * d->sample_floats,
           d->sample_floats * sizeof(float));
    y[i] = d->y[at];
  }
}

/* The steps of the training loop of src/train/fit.c, on given batches; losses[s] is the loss
 * before step s's update. */
static int train_steps(cn_trainer *t, const train_data *d, const cn_optim_config *config,
                       float *losses) {
  cn_shape os = cn_trainer_output_shape(t);
  int classes = (int)cn_shape_numel(&os);
  cn_param_range ranges[MAX_RANGES];
  int n_ranges = cn_trainer_ranges(t, ranges, MAX_RANGES);
  cn_optimizer o;
  float *x = malloc((size_t)d->batch * d->sample_floats * sizeof(float));
  float *y = malloc((size_t)d->batch * sizeof(float));
  float *dlogits = malloc((size_t)d->batch * classes * sizeof(float));
  if (!x || !y || !dlogits || n_ranges > MAX_RANGES || os.rank != 1 ||
      cn_trainer_output_kind(t) != CN_OUTPUT_SOFTMAX ||
      cn_optimizer_init(&o, config, cn_trainer_param_floats(t)) != CN_OK)
    return free(x), free(y), free(dlogits), fail("training setup (the model must end in softmax)");
  int rc = 0;
  for (int s = 0; s < d->steps && rc == 0; s++) {
    const float *logits;
    gather(d, s, x, y);
    rc = cn_trainer_forward(t, d->batch, x, 1, (uint64_t)s, &logits) != CN_OK ||
         cn_loss_check_targets(CN_LOSS_SPARSE_CE, d->batch, classes, y) != CN_OK;
    if (rc) break;
    losses[s] = (float)cn_loss(CN_LOSS_SPARSE_CE, d->batch, classes, logits, y, NULL, dlogits);
    rc = cn_trainer_backward(t, dlogits) != CN_OK;
    if (rc) break;
    cn_optimizer_step(&o, cn_trainer_params(t), cn_trainer_grads(t), ranges, n_ranges);
    cn_trainer_weights_changed(t);
  }
  cn_optimizer_free(&o);
  free(x), free(y), free(dlogits);
  return rc ? fail("training step") : 0;
}

static int train_with(cn_graph *g, const char *dir, const cn_optim_config *config) {
  train_data d = {0};
  cn_trainer *t = NULL;
  int rc = read_train_data(dir, &g->nodes[g->inputs[0]].shape, &d);
  float *losses = rc ? NULL : malloc((size_t)d.steps * sizeof(float));
  if (rc == 0 &&
      (!losses || cn_trainer_new(g, &(cn_trainer_options){.max_batch = d.batch}, &t) != CN_OK))
    rc = fail("trainer");
  if (rc == 0) rc = train_steps(t, &d, config, losses);
  cn_shape ls = {1, {d.steps}};
  if (rc == 0) rc = write_in(dir, "losses.npy", &ls, losses);
  if (rc == 0) rc = write_params(cn_trainer_graph(t), cn_trainer_params(t), dir, "final_", -1);
  cn_trainer_free(t);
  free(d.x), free(d.y), free(d.order), free(losses);
  return rc;
}

static int run_train(char **argv) {
  char *text = read_text(argv[4]);
  cJSON *j = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!j) return fail("config");
  const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "optimizer");
  int adam = cJSON_IsString(kind) && strcmp(kind->valuestring, "adam") == 0;
  if (cJSON_IsString(kind) && !adam && strcmp(kind->valuestring, "sgd") != 0)
    return cJSON_Delete(j), fail("config: optimizer must be sgd or adam");
  cn_optim_config config = {.kind = adam ? CN_OPTIM_ADAM : CN_OPTIM_SGD,
                            .lr = (float)config_number(j, "lr"),
                            .momentum = (float)config_number(j, "momentum"),
                            .nesterov = (int)config_number(j, "nesterov"),
                            .beta1 = (float)config_number(j, "beta1"),
                            .beta2 = (float)config_number(j, "beta2"),
                            .epsilon = (float)config_number(j, "epsilon")};
  cJSON_Delete(j);
  cn_graph *g = load_graph(argv[2]);
  if (!g) return fail(argv[2]);
  int rc = read_params(g, argv[3]);
  if (rc == 0) rc = train_with(g, argv[3], &config);
  cn_graph_free(g);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "grad") == 0) return run_grad(argv);
  if (argc == 5 && strcmp(argv[1], "train") == 0) return run_train(argv);
  fprintf(stderr, "usage: probe_grad grad|train ... (see the source)\n");
  return 2;
}
