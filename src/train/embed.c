/* Embeddings of train.h: the model cut after one layer, run at inference, its output pooled over
 * positions; a per-image cache of the vectors; cosine nearest neighbours. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convnet/io.h"
#include "core/error.h"
#include "core/sha256.h"
#include "ops/ops.h"
#include "train/fit_internal.h"
#include "train/surgery.h"

struct cn_embedder {
  cn_model *cut;     /* the model's layers up to the embedding layer */
  int64_t positions; /* the layer's H * W when spatial (averaged), else 1 */
  int64_t dim;
  char layer[128];
  float *scratch;    /* the layer's output for one batch */
  int scratch_batch; /* rows scratch holds */
  char *cache_dir;   /* NULL: no cache */
  char fingerprint[CN_SHA256_HEX];
};

static int is_type(const cn_node *n, const char *type) {
  return strcmp(n->op->type, type) == 0;
}

/* Ops that leave the features as they are at inference, or only reshape or squash them. */
static int is_passthrough(const cn_node *n) {
  return n->n_inputs == 1 &&
         (is_type(n, "Softmax") || is_type(n, "Activation") || is_type(n, "Dropout") ||
          is_type(n, "Reshape") || is_type(n, "Flatten"));
}

/* The input of the classifier (a final Dense), else the last spatial layer; -1: none. */
static int default_layer(const cn_graph *g) {
  int i = g->n_outputs ? g->outputs[0] : g->n_nodes - 1;
  while (i >= 0 && is_passthrough(&g->nodes[i])) i = g->nodes[i].inputs[0];
  if (i >= 0 && is_type(&g->nodes[i], "Dense") && g->nodes[i].n_inputs == 1) {
    int f = g->nodes[i].inputs[0];
    while (is_type(&g->nodes[f], "Dropout") || is_type(&g->nodes[f], "Flatten") ||
           is_type(&g->nodes[f], "Reshape"))
      f = g->nodes[f].inputs[0];
    if (g->nodes[f].op != &cn_op_input) return f;
  }
  return cn_graph_feature_node(g);
}

cn_status cn_embedder_new(const cn_model *model, const char *layer, cn_embedder **out) {
  if (!model || !out) return cn_fail(CN_ERR_ARG, "cn_embedder_new: NULL argument");
  *out = NULL;
  const cn_graph *g = model->graph;
  if (g->n_inputs != 1)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: embeddings need a model of one input",
                   cn_model_name(model));
  int node = layer ? cn_graph_find(g, layer) : default_layer(g);
  if (layer && node < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%s\" (see convnet summary)",
                   cn_model_name(model), layer);
  if (node < 0 || g->nodes[node].op == &cn_op_input)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: no feature layer found; name one with --layer",
                   cn_model_name(model));
  cn_embedder *e = calloc(1, sizeof *e);
  if (!e) return cn_fail(CN_ERR_NOMEM, "embedder: out of memory");
  const cn_shape *s = &g->nodes[node].shape;
  e->positions = s->rank == 3 ? s->dim[0] * s->dim[1] : 1;
  e->dim = s->rank == 3 ? s->dim[2] : cn_shape_numel(s);
  snprintf(e->layer, sizeof e->layer, "%s", g->nodes[node].name);
  cn_graph *cut;
  cn_status st = cn_graph_cut(g, node, &cut);
  if (st == CN_OK) st = cn_model_wrap(cut, cn_model_name(model), &model->spec, &e->cut);
  /* the model's algorithm batch too, so that a vector is the same bits in any batch */
  if (st == CN_OK) st = cn_model_set_algorithm_batch(e->cut, model->algorithm_batch);
  if (st != CN_OK) {
    cn_embedder_free(e);
    return st;
  }
  *out = e;
  return CN_OK;
}

void cn_embedder_free(cn_embedder *e) {
  if (!e) return;
  cn_model_free(e->cut);
  free(e->scratch);
  free(e->cache_dir);
  free(e);
}

int64_t cn_embedder_dim(const cn_embedder *e) {
  return e ? e->dim : 0;
}

const char *cn_embedder_layer(const cn_embedder *e) {
  return e ? e->layer : NULL;
}

cn_input_spec cn_embedder_input_spec(const cn_embedder *e) {
  return e->cut->spec;
}

void cn_embedder_set_input_spec(cn_embedder *e, const cn_input_spec *spec) {
  e->cut->spec = *spec;
  e->fingerprint[0] = 0;
}

cn_status cn_embedder_run(cn_embedder *e, int batch, const float *input, float *out) {
  if (!e || !input || !out || batch < 1) return cn_fail(CN_ERR_ARG, "cn_embedder_run: argument");
  size_t row = (size_t)(e->positions * e->dim);
  if (batch > e->scratch_batch) {
    float *grown = realloc(e->scratch, (size_t)batch * row * sizeof *grown);
    if (!grown) return cn_fail(CN_ERR_NOMEM, "embedder: out of memory");
    e->scratch = grown;
    e->scratch_batch = batch;
  }
  cn_status st = cn_model_forward(e->cut, batch, input, e->scratch);
  if (st != CN_OK) return st;
  for (int b = 0; b < batch; b++) {
    const float *x = e->scratch + (size_t)b * row;
    float *y = out + (size_t)b * e->dim;
    for (int64_t c = 0; c < e->dim; c++) {
      double sum = 0;
      for (int64_t p = 0; p < e->positions; p++) sum += x[p * e->dim + c];
      y[c] = (float)(sum / (double)e->positions);
    }
  }
  return CN_OK;
}

cn_status cn_embedder_set_cache(cn_embedder *e, const char *dir) {
  if (!e) return cn_fail(CN_ERR_ARG, "cn_embedder_set_cache: NULL embedder");
  free(e->cache_dir);
  e->cache_dir = NULL;
  if (!dir) return CN_OK;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return cn_fail(CN_ERR_IO, "%s: cannot make the cache folder: %s", dir, strerror(errno));
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return cn_fail(CN_ERR_IO, "%s: not a folder", dir);
  e->cache_dir = strdup(dir);
  if (!e->cache_dir) return cn_fail(CN_ERR_NOMEM, "embedder: out of memory");
  return CN_OK;
}

/* DIR/<sha256 of the model's fingerprint, the layer and the file's identity>.npy */
static cn_status cache_path(cn_embedder *e, const char *file, char *path, size_t cap) {
  cn_status st = CN_OK;
  if (!e->fingerprint[0]) st = fit_model_fingerprint(e->cut, e->fingerprint);
  if (st != CN_OK) return st;
  struct stat sb;
  if (stat(file, &sb) != 0) return cn_fail(CN_ERR_IO, "%s: %s", file, strerror(errno));
  char real[PATH_MAX], line[512], hex[CN_SHA256_HEX];
  if (!realpath(file, real)) snprintf(real, sizeof real, "%s", file);
  cn_sha256 h;
  st = cn_sha256_begin(&h);
  if (st != CN_OK) return st;
  cn_sha256_add_str(&h, "convnet embedding 1");
  cn_sha256_add_str(&h, e->fingerprint);
  cn_sha256_add_str(&h, e->layer);
  cn_sha256_add_str(&h, real);
  snprintf(line, sizeof line, "%lld %lld %ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec,
           (long)sb.st_mtim.tv_nsec);
  cn_sha256_add_str(&h, line);
  st = cn_sha256_hex(&h, hex);
  if (st != CN_OK) return st;
  if ((size_t)snprintf(path, cap, "%s/%s.npy", e->cache_dir, hex) >= cap)
    return cn_fail(CN_ERR_ARG, "%s: cache path too long", e->cache_dir);
  return CN_OK;
}

/* 1 when the cache holds this image's vector (copied to out). */
static int cache_read(const cn_embedder *e, const char *path, float *out) {
  struct stat sb;
  if (stat(path, &sb) != 0) return 0;
  cn_shape shape;
  float *data = NULL;
  int ok = cn_npy_read(path, &shape, &data) == CN_OK && shape.rank == 1 && shape.dim[0] == e->dim;
  if (ok) memcpy(out, data, (size_t)e->dim * sizeof *out);
  free(data);
  cn_clear_error();
  return ok;
}

cn_status cn_embed_file(cn_embedder *e, const char *path, float *out) {
  if (!e || !path || !out) return cn_fail(CN_ERR_ARG, "cn_embed_file: NULL argument");
  char cached[PATH_MAX + 80];
  cn_status st = CN_OK;
  if (e->cache_dir) {
    st = cache_path(e, path, cached, sizeof cached);
    if (st != CN_OK) return st;
    if (cache_read(e, cached, out)) return CN_OK;
  }
  cn_input_spec spec = e->cut->spec;
  float *input = malloc((size_t)spec.height * spec.width * spec.channels * sizeof *input);
  if (!input) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  cn_image image = {0};
  st = cn_image_load(path, &image);
  if (st == CN_OK) st = cn_image_prepare(&image, &spec, input);
  cn_image_free(&image);
  if (st == CN_OK) st = cn_embedder_run(e, 1, input, out);
  free(input);
  if (st == CN_OK && e->cache_dir) {
    cn_shape shape = {.rank = 1, .dim = {e->dim}};
    st = cn_npy_write(cached, &shape, out);
  }
  return st;
}

static double norm_of(const float *v, int64_t dim) {
  double s = 0;
  for (int64_t i = 0; i < dim; i++) s += (double)v[i] * v[i];
  return sqrt(s);
}

int cn_embed_nearest(const float *a, const float *items, int64_t n, int64_t dim, int k,
                     int64_t skip, int64_t *index, float *score) {
  if (!a || !items || !index || !score || k < 1 || n < 1 || dim < 1) return 0;
  double na = norm_of(a, dim);
  int found = 0;
  for (int64_t r = 0; r < n; r++) {
    if (r == skip) continue;
    const float *v = items + r * dim;
    double dot = 0, nv = norm_of(v, dim);
    for (int64_t i = 0; i < dim; i++) dot += (double)a[i] * v[i];
    float s = na > 0 && nv > 0 ? (float)(dot / (na * nv)) : 0.0f;
    /* insert after every kept score >= s (ties keep the lower row first) */
    int at = found;
    while (at > 0 && score[at - 1] < s) at--;
    if (at >= k) continue;
    int last = found < k ? found : k - 1;
    for (int j = last; j > at; j--) index[j] = index[j - 1], score[j] = score[j - 1];
    index[at] = r, score[at] = s;
    if (found < k) found++;
  }
  return found;
}
