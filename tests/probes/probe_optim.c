/* convnet's side of tests/oracle/test_optim_keras.py: losses, optimizer steps on given gradients,
 * and a small linear classifier trained end to end, all through .npy files.
 *
 *   probe_optim loss <kind> <pred.npy> <target.npy> <weights.npy|-> <grad_out.npy>
 *       prints the mean loss (%.17g); kind: categorical | sparse | binary | mse
 *   probe_optim steps <config.json> <params.npy> <grads.npy (steps x n)> <params_out.npy>
 *   probe_optim fit <config.json> <x.npy (b x d)> <y.npy> <w0.npy (d*c + c)> <params_out.npy>
 *       <losses_out.npy>: logits = x W + b, the config's "loss", "steps" full-batch updates
 *
 * config.json: {"kind": "sgd"|"adam"|"rmsprop", "lr", "momentum", "nesterov", "decay", "beta1",
 * "beta2", "rho", "epsilon", "weight_decay", "l2", "clip_norm", "clip_value",
 * "schedule": "constant"|"step"|"cosine", "step_every", "step_gamma", "total_steps",
 * "loss", "steps", "classes", "ranges": [[offset, count, lr_scale], ...]} */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/io.h"
#include "train/optim.h"

static int fail(const char *what) {
  fprintf(stderr, "probe_optim: %s%s%s\n", what, *cn_last_error() ? ": " : "", cn_last_error());
  return 1;
}

static int parse_loss(const char *name, cn_loss_kind *kind) {
  static const char *const names[] = {"categorical", "sparse", "binary", "mse"};
  for (int k = 0; k < CN_LOSS_COUNT; k++)
    if (strcmp(name, names[k]) == 0) return *kind = (cn_loss_kind)k, 1;
  return 0;
}

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  static char text[1 << 16];
  size_t len = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[len] = 0;
  return cJSON_Parse(text);
}

static double number(const cJSON *root, const char *key, double fallback) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  return cJSON_IsNumber(item) ? item->valuedouble : cJSON_IsTrue(item) ? 1.0 : fallback;
}

static const char *string(const cJSON *root, const char *key, const char *fallback) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
  return cJSON_IsString(item) ? item->valuestring : fallback;
}

static cn_optim_config config_from(const cJSON *j) {
  const char *kind = string(j, "kind", "sgd"), *schedule = string(j, "schedule", "constant");
  cn_optim_config c = {
      .kind = strcmp(kind, "adam") == 0      ? CN_OPTIM_ADAM
              : strcmp(kind, "rmsprop") == 0 ? CN_OPTIM_RMSPROP
                                             : CN_OPTIM_SGD,
      .lr = (float)number(j, "lr", 0),
      .momentum = (float)number(j, "momentum", 0),
      .nesterov = (int)number(j, "nesterov", 0),
      .decay = (float)number(j, "decay", 0),
      .beta1 = (float)number(j, "beta1", 0),
      .beta2 = (float)number(j, "beta2", 0),
      .rho = (float)number(j, "rho", 0),
      .epsilon = (float)number(j, "epsilon", 0),
      .weight_decay = (float)number(j, "weight_decay", 0),
      .l2 = (float)number(j, "l2", 0),
      .clip_norm = (float)number(j, "clip_norm", 0),
      .clip_value = (float)number(j, "clip_value", 0),
      .schedule = strcmp(schedule, "step") == 0     ? CN_SCHEDULE_STEP
                  : strcmp(schedule, "cosine") == 0 ? CN_SCHEDULE_COSINE
                                                    : CN_SCHEDULE_CONSTANT,
      .step_every = (int64_t)number(j, "step_every", 0),
      .step_gamma = (float)number(j, "step_gamma", 0),
      .total_steps = (int64_t)number(j, "total_steps", 0),
  };
  return c;
}

/* "ranges" from the config, or NULL (the whole buffer); at most 8. */
static int ranges_from(const cJSON *j, cn_param_range *out) {
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "ranges"), *r;
  int n = 0;
  cJSON_ArrayForEach(r, list) {
    if (n == 8 || cJSON_GetArraySize(r) != 3) return -1;
    out[n].offset = (size_t)cJSON_GetArrayItem(r, 0)->valuedouble;
    out[n].count = (size_t)cJSON_GetArrayItem(r, 1)->valuedouble;
    out[n].lr_scale = (float)cJSON_GetArrayItem(r, 2)->valuedouble;
    n++;
  }
  return n;
}

static int run_loss(char **argv) {
  cn_loss_kind kind;
  if (!parse_loss(argv[2], &kind)) return fail("unknown loss");
  cn_shape ps, ts, ws;
  float *pred = NULL, *target = NULL, *weights = NULL;
  if (cn_npy_read(argv[3], &ps, &pred) || cn_npy_read(argv[4], &ts, &target)) return fail("read");
  if (strcmp(argv[5], "-") != 0 && cn_npy_read(argv[5], &ws, &weights)) return fail("read");
  if (ps.rank != 2) return fail("pred must be batch x n");
  int batch = (int)ps.dim[0], n = (int)ps.dim[1];
  float *grad = malloc((size_t)batch * n * sizeof *grad);
  if (!grad) return fail("out of memory");
  printf("%.17g\n", cn_loss(kind, batch, n, pred, target, weights, grad));
  if (cn_npy_write(argv[6], &ps, grad)) return fail("write");
  free(pred), free(target), free(weights), free(grad);
  return 0;
}

static int run_steps(char **argv) {
  cJSON *j = read_json(argv[2]);
  if (!j) return fail("config");
  cn_shape shape, gshape;
  float *params, *grads;
  if (cn_npy_read(argv[3], &shape, &params) || cn_npy_read(argv[4], &gshape, &grads))
    return fail("read");
  size_t n = (size_t)cn_shape_numel(&shape);
  if (gshape.rank != 2 || (size_t)gshape.dim[1] != n) return fail("grads must be steps x n");
  cn_optim_config c = config_from(j);
  cn_param_range ranges[8];
  int n_ranges = ranges_from(j, ranges);
  cn_optimizer o;
  if (n_ranges < 0 || cn_optimizer_init(&o, &c, n) != CN_OK) return fail("optimizer");
  if (cn_optimizer_check_ranges(&o, ranges, n_ranges) != CN_OK) return fail("ranges");
  for (int64_t s = 0; s < gshape.dim[0]; s++)
    cn_optimizer_step(&o, params, grads + (size_t)s * n, ranges, n_ranges);
  if (cn_npy_write(argv[5], &shape, params)) return fail("write");
  cn_optimizer_free(&o);
  cJSON_Delete(j);
  free(params), free(grads);
  return 0;
}

/* logits = x W + b, accumulated in double; W is d x c (Keras Dense layout), then b. */
static void forward(const float *x, const float *w, int b, int d, int c, float *logits) {
  for (int i = 0; i < b; i++)
    for (int k = 0; k < c; k++) {
      double sum = w[(size_t)d * c + k];
      for (int q = 0; q < d; q++) sum += (double)x[i * d + q] * w[q * c + k];
      logits[i * c + k] = (float)sum;
    }
}

/* dW = x^T dlogits, db = column sums of dlogits. */
static void backward(const float *x, const float *dlogits, int b, int d, int c, float *grads) {
  for (int q = 0; q <= d; q++)
    for (int k = 0; k < c; k++) {
      double sum = 0.0;
      for (int i = 0; i < b; i++) sum += (q < d ? (double)x[i * d + q] : 1.0) * dlogits[i * c + k];
      grads[q * c + k] = (float)sum;
    }
}

static int run_fit(char **argv) {
  cJSON *j = read_json(argv[2]);
  cn_loss_kind kind;
  if (!j || !parse_loss(string(j, "loss", ""), &kind)) return fail("config");
  cn_shape xs, ys, ws;
  float *x, *y, *w;
  if (cn_npy_read(argv[3], &xs, &x) || cn_npy_read(argv[4], &ys, &y) ||
      cn_npy_read(argv[5], &ws, &w))
    return fail("read");
  int b = (int)xs.dim[0], d = (int)xs.dim[1], c = (int)number(j, "classes", 0);
  int steps = (int)number(j, "steps", 1);
  size_t n = (size_t)cn_shape_numel(&ws);
  if (xs.rank != 2 || c <= 0 || n != (size_t)(d + 1) * c) return fail("shapes");
  float *logits = malloc((size_t)b * c * 4), *dlogits = malloc((size_t)b * c * 4);
  float *grads = malloc(n * 4), *losses = malloc((size_t)steps * 4);
  cn_optim_config config = config_from(j);
  cn_optimizer o;
  if (!logits || !dlogits || !grads || !losses || cn_optimizer_init(&o, &config, n) != CN_OK)
    return fail("setup");
  for (int s = 0; s < steps; s++) {
    forward(x, w, b, d, c, logits);
    losses[s] = (float)cn_loss(kind, b, c, logits, y, NULL, dlogits);
    backward(x, dlogits, b, d, c, grads);
    cn_optimizer_step(&o, w, grads, NULL, 0);
  }
  cn_shape ls = {1, {steps}};
  if (cn_npy_write(argv[6], &ws, w) || cn_npy_write(argv[7], &ls, losses)) return fail("write");
  cn_optimizer_free(&o);
  cJSON_Delete(j);
  free(x), free(y), free(w), free(logits), free(dlogits), free(grads), free(losses);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && strcmp(argv[1], "loss") == 0) return run_loss(argv);
  if (argc == 6 && strcmp(argv[1], "steps") == 0) return run_steps(argv);
  if (argc == 8 && strcmp(argv[1], "fit") == 0) return run_fit(argv);
  fprintf(stderr, "usage: probe_optim loss|steps|fit ... (see the source)\n");
  return 2;
}
