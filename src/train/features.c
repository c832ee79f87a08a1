/* Inputs of the trained part of a model, computed once per data set: the frozen prefix runs at
 * inference over the images in data-set order, chunk by chunk. With a cache folder each chunk is
 * stored (features, labels, file names, fingerprint) as soon as it is done, so an interrupted
 * extraction resumes where it stopped and later runs skip it entirely. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mem.h"
#include "core/sha256.h"
#include "io/native/safetensors.h"
#include "ops/ops.h"
#include "train/fit_internal.h"

enum { CHUNK = 512, SHA_HEX = 64 };

void fit_features_free(fit_features *f) {
  if (!f->borrowed) {
    cn_free_aligned(f->x);
    free(f->y);
  }
  memset(f, 0, sizeof *f);
}

cn_status fit_model_fingerprint(const cn_model *m, char hex[65]) {
  cn_sha256 h;
  cn_status st = cn_sha256_begin(&h);
  if (st != CN_OK) return st;
  const cn_graph *g = m->graph;
  char line[256];
  cn_input_spec s = m->spec;
  snprintf(line, sizeof line, "spec %d %d %d %d %.17g %d", s.height, s.width, s.channels,
           (int)s.resize, s.crop, (int)s.preprocess);
  if (s.decoder != CN_DECODE_PIL)
    snprintf(line + strlen(line), sizeof line - strlen(line), " decoder %d", (int)s.decoder);
  cn_sha256_add_str(&h, line);
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    char shape[96];
    cn_sha256_add_str(&h, n->name);
    cn_sha256_add_str(&h, n->op->type);
    cn_sha256_add_str(&h, cn_shape_format(&n->shape, shape, sizeof shape));
    for (int k = 0; k < n->n_params; k++)
      cn_sha256_add(&h, n->params[k].data,
                    (size_t)cn_shape_numel(&n->params[k].shape) * sizeof(float));
  }
  return cn_sha256_hex(&h, hex);
}

/* The cache file of one chunk: the model's fingerprint and each file's path, size and mtime. */
static cn_status chunk_path(const fit_run *r, const char *model_fp, const cn_dataset *ds,
                            int64_t first, int64_t count, char *path, size_t cap) {
  cn_sha256 h;
  cn_status st = cn_sha256_begin(&h);
  if (st != CN_OK) return st;
  cn_sha256_add_str(&h, model_fp);
  cn_sha256_add_str(&h, r->o->fatal_bad_images ? "bad images fatal" : "bad images skipped");
  for (int64_t i = first; i < first + count; i++) {
    struct stat sb;
    char line[96];
    const char *p = cn_dataset_path(ds, i);
    cn_sha256_add_str(&h, p);
    if (stat(p, &sb) == 0)
      snprintf(line, sizeof line, "%d %lld %lld.%09ld", cn_dataset_label(ds, i),
               (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    else
      snprintf(line, sizeof line, "%d missing", cn_dataset_label(ds, i));
    cn_sha256_add_str(&h, line);
  }
  char hex[CN_SHA256_HEX];
  st = cn_sha256_hex(&h, hex);
  if (st == CN_OK) snprintf(path, cap, "%s/%.32s.features", r->o->cache_dir, hex);
  return st;
}

/* Room for cap rows in out (dim set). */
static cn_status reserve(fit_features *out, int64_t cap) {
  size_t bytes;
  if (cap <= out->cap) return CN_OK;
  if (!cn_mul_size((size_t)cap * sizeof(float), (size_t)out->dim, &bytes))
    return cn_fail(CN_ERR_LIMIT, "features too large");
  float *nx = cn_alloc_aligned(bytes ? bytes : sizeof(float));
  int *ny = malloc((size_t)(cap ? cap : 1) * sizeof *ny);
  if (!nx || !ny) {
    cn_free_aligned(nx);
    free(ny);
    return cn_fail(CN_ERR_NOMEM, "out of memory for %lld feature rows", (long long)cap);
  }
  if (out->n) {
    memcpy(nx, out->x, (size_t)out->n * (size_t)out->dim * sizeof(float));
    memcpy(ny, out->y, (size_t)out->n * sizeof *ny);
  }
  cn_free_aligned(out->x);
  free(out->y);
  out->x = nx;
  out->y = ny;
  out->cap = cap;
  return CN_OK;
}

/* Appends m rows (and labels) to out. */
static cn_status append(fit_features *out, const float *x, const int *y, int64_t m) {
  cn_status st = reserve(out, out->n + m > out->cap ? out->n + m : out->cap);
  if (st != CN_OK) return st;
  memcpy(out->x + (size_t)out->n * (size_t)out->dim, x,
         (size_t)m * (size_t)out->dim * sizeof(float));
  memcpy(out->y + out->n, y, (size_t)m * sizeof *y);
  out->n += m;
  return CN_OK;
}

/* Runs the prefix over dataset rows [first, first + count) into x/y (bad images skipped). */
static cn_status extract_chunk(fit_run *r, const cn_dataset *ds, int64_t first, int64_t count,
                               fit_features *chunk) {
  cn_dataset *part = NULL;
  cn_loader *l = NULL;
  cn_status st = cn_dataset_subset(ds, first, count, &part);
  cn_loader_options lo = {.spec = r->spec,
                          .batch = r->batch,
                          .bad_images =
                              r->o->fatal_bad_images ? CN_BAD_IMAGES_FATAL : CN_BAD_IMAGES_SKIP,
                          .warn = r->o->message,
                          .warn_ctx = r->o->ctx};
  if (st == CN_OK) st = cn_loader_new(part, &lo, &l);
  float *images = NULL, *feats = NULL;
  int *labels = NULL;
  if (st == CN_OK) {
    images = cn_alloc_aligned((size_t)r->batch * cn_loader_image_floats(l) * sizeof(float));
    feats = cn_alloc_aligned((size_t)r->batch * (size_t)chunk->dim * sizeof(float));
    labels = malloc((size_t)r->batch * sizeof *labels);
    if (!images || !feats || !labels) st = cn_fail(CN_ERR_NOMEM, "out of memory for a batch");
  }
  if (st == CN_OK) st = cn_loader_start_epoch(l, 0);
  while (st == CN_OK) {
    int got = 0;
    st = cn_loader_next(l, images, labels, NULL, &got);
    if (st != CN_OK || got == 0) break;
    if (r->prefix)
      st = cn_model_forward(r->prefix, got, images, feats);
    else
      memcpy(feats, images, (size_t)got * (size_t)chunk->dim * sizeof(float));
    if (st == CN_OK) st = append(chunk, feats, labels, got);
  }
  cn_free_aligned(images);
  cn_free_aligned(feats);
  free(labels);
  cn_loader_free(l);
  cn_dataset_free(part);
  return st;
}

static cn_status load_chunk(const char *path, fit_features *chunk) {
  cn_safetensors *f = NULL;
  if (cn_safetensors_open(path, &f) != CN_OK) return CN_ERR_IO; /* absent or damaged: redo */
  const cn_st_tensor *x = cn_safetensors_find(f, "features");
  const cn_st_tensor *y = cn_safetensors_find(f, "labels");
  cn_status st = CN_ERR_FORMAT;
  if (x && y && x->shape.rank == 2 && x->shape.dim[1] == chunk->dim && y->shape.rank == 1 &&
      y->shape.dim[0] == x->shape.dim[0] && x->shape.dim[0] <= CHUNK) {
    int64_t m = x->shape.dim[0];
    float *xs = malloc((size_t)(m ? m : 1) * (size_t)chunk->dim * sizeof(float));
    int64_t *ys = malloc((size_t)(m ? m : 1) * sizeof *ys);
    int *yi = malloc((size_t)(m ? m : 1) * sizeof *yi);
    st = xs && ys && yi ? CN_OK : CN_ERR_NOMEM;
    if (st == CN_OK) st = cn_safetensors_read(f, "features", CN_ST_F32, &x->shape, xs);
    if (st == CN_OK) st = cn_safetensors_read(f, "labels", CN_ST_I64, &y->shape, ys);
    for (int64_t i = 0; st == CN_OK && i < m; i++) yi[i] = (int)ys[i];
    if (st == CN_OK) st = append(chunk, xs, yi, m);
    free(xs);
    free(ys);
    free(yi);
  }
  cn_safetensors_close(f);
  return st;
}

static cn_status store_chunk(const char *path, const fit_features *chunk, const char *fp) {
  int64_t *ys = malloc((size_t)(chunk->n ? chunk->n : 1) * sizeof *ys);
  if (!ys) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int64_t i = 0; i < chunk->n; i++) ys[i] = chunk->y[i];
  cn_st_tensor t[2] = {
      {.name = "features",
       .dtype = CN_ST_F32,
       .shape = {2, {chunk->n, chunk->dim}},
       .data = chunk->x},
      {.name = "labels", .dtype = CN_ST_I64, .shape = {1, {chunk->n}}, .data = ys}};
  cn_st_meta meta[2] = {{"format", "convnet-features"}, {"model", fp}};
  cn_status st = cn_safetensors_write(path, t, 2, meta, 2);
  free(ys);
  return st;
}

/* Rank root's rows of part (n, then the values and labels) appended to out on every rank (on
 * root itself too, unless part is out). */
static cn_status share_rows(fit_run *r, int root, const fit_features *part, fit_features *out) {
  int is_root = r->rank == root;
  int64_t n = is_root ? part->n : 0;
  cn_status st = cn_group_broadcast(r->group, &n, sizeof n, root);
  if (st != CN_OK || n == 0) return st;
  size_t values = (size_t)n * (size_t)out->dim * sizeof(float), labels = (size_t)n * sizeof(int);
  if (is_root) {
    st = cn_group_broadcast(r->group, (void *)part->x, values, root);
    if (st == CN_OK) st = cn_group_broadcast(r->group, (void *)part->y, labels, root);
    if (st == CN_OK && part != out) st = append(out, part->x, part->y, n);
    return st;
  }
  st = reserve(out, out->n + n);
  if (st == CN_OK)
    st = cn_group_broadcast(r->group, out->x + (size_t)out->n * (size_t)out->dim, values, root);
  if (st == CN_OK) st = cn_group_broadcast(r->group, out->y + out->n, labels, root);
  if (st == CN_OK) out->n += n;
  return st;
}

/* One chunk of images [first, first + count) over the ranks of a group: each extracts its share
 * of the chunk's batches (whole batches, so every image is computed with the batch companions it
 * has in one process: the same bits), and every rank receives every share, in order. */
static cn_status extract_chunk_shared(fit_run *r, const cn_dataset *ds, int64_t first,
                                      int64_t count, fit_features *chunk) {
  int64_t lo, n;
  cn_group_share_batches(count, r->batch, r->rank, r->ranks, &lo, &n);
  fit_features mine = {.dim = chunk->dim};
  cn_status st = n > 0 ? reserve(&mine, n) : CN_OK;
  if (st == CN_OK && n > 0) st = extract_chunk(r, ds, first + lo, n, &mine);
  /* every rank learns whether any failed, so that all stop together */
  double failed = st != CN_OK;
  cn_status agreed = cn_group_sum_f64(r->group, &failed, 1);
  if (st == CN_OK) st = agreed;
  if (st == CN_OK && failed > 0)
    st = cn_fail(CN_ERR_IO, "feature extraction failed on another rank");
  for (int k = 0; st == CN_OK && k < r->ranks; k++) st = share_rows(r, k, &mine, chunk);
  fit_features_free(&mine);
  return st;
}

/* One chunk: from the cache (rank 0's, shared with the others), or extracted (split across the
 * ranks) and then stored by rank 0. */
static cn_status compute_chunk(fit_run *r, const cn_dataset *ds, int64_t first, int64_t count,
                               const char *path, const char *fp, fit_features *chunk) {
  int cached = path[0] != 0;
  int loaded = r->rank == 0 && cached && load_chunk(path, chunk) == CN_OK;
  cn_status st = cn_group_broadcast(r->group, &loaded, sizeof loaded, 0);
  if (st != CN_OK) return st;
  if (loaded) return share_rows(r, 0, chunk, chunk);
  chunk->n = 0;
  st = r->group ? extract_chunk_shared(r, ds, first, count, chunk)
                : extract_chunk(r, ds, first, count, chunk);
  if (st == CN_OK && cached && r->rank == 0) st = store_chunk(path, chunk, fp);
  return st;
}

cn_status fit_features_compute(fit_run *r, const cn_dataset *ds, const char *which,
                               fit_features *out) {
  memset(out, 0, sizeof *out);
  const cn_graph *tg = cn_trainer_graph(r->trainer);
  out->dim = cn_shape_numel(&tg->nodes[tg->inputs[0]].shape);
  int cached = r->o->cache_dir && r->prefix;
  char fp[65] = "";
  cn_status st = cached ? fit_model_fingerprint(r->prefix, fp) : CN_OK;
  if (cached && st == CN_OK && r->rank == 0) st = cn_make_dirs(r->o->cache_dir);
  int64_t total = cn_dataset_count(ds), done = 0;
  if (st == CN_OK) st = reserve(out, total);
  for (int64_t first = 0; st == CN_OK && first < total; first += CHUNK) {
    int64_t count = total - first < CHUNK ? total - first : CHUNK;
    fit_features chunk = {.dim = out->dim};
    if (st == CN_OK) st = reserve(&chunk, count);
    char path[4200] = "";
    if (st == CN_OK && cached) st = chunk_path(r, fp, ds, first, count, path, sizeof path);
    if (st == CN_OK) st = compute_chunk(r, ds, first, count, path, fp, &chunk);
    if (st == CN_OK) st = append(out, chunk.x, chunk.y, chunk.n);
    fit_features_free(&chunk);
    done += count;
    if (st == CN_OK && r->o->progress && r->rank == 0) {
      cn_train_progress p = {.phase = "features",
                             .step = done,
                             .steps = total,
                             .epoch = 1,
                             .epochs = 1,
                             .val_loss = NAN,
                             .val_accuracy = NAN};
      r->o->progress(r->o->ctx, &p);
    }
  }
  (void)which;
  if (st != CN_OK) fit_features_free(out);
  return st;
}
