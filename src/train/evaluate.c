/* Evaluation of a classifier on labelled images: the public face of cn_confusion, and the loop
 * that decodes, prepares and scores image files batch by batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convnet/io.h"
#include "convnet/train.h"
#include "core/error.h"
#include "core/mem.h"
#include "train/optim.h"

enum { EVAL_DEFAULT_BATCH = 8, EVAL_MAX_BATCH = 256, EVAL_DEFAULT_K = 5, EVAL_MSG = 1024 };
/* How many of the model's class names an unknown-folder error lists. */
enum { EVAL_NAMES_SHOWN = 8 };

struct cn_evaluation {
  cn_confusion confusion;
  float *row; /* one row of scores with NaN replaced, so that NaN never wins argmax */
  int64_t skipped;
  double seconds;
  cn_evaluation_miss *worst; /* sorted by truth_score, lowest first */
  int n_worst, max_worst;
};

/* ---- the accumulator ----------------------------------------------------------------------- */

cn_status cn_evaluation_new(int classes, int top_k, cn_evaluation **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "evaluation: NULL argument");
  *out = NULL;
  cn_evaluation *e = calloc(1, sizeof *e);
  if (!e) return cn_fail(CN_ERR_NOMEM, "evaluation: out of memory");
  cn_status st = cn_confusion_init(&e->confusion, classes, top_k);
  if (st == CN_OK && !(e->row = malloc((size_t)classes * sizeof *e->row)))
    st = cn_fail(CN_ERR_NOMEM, "evaluation: out of memory");
  if (st != CN_OK) {
    cn_evaluation_free(e);
    return st;
  }
  *out = e;
  return CN_OK;
}

void cn_evaluation_free(cn_evaluation *e) {
  if (!e) return;
  cn_confusion_free(&e->confusion);
  free(e->row);
  for (int i = 0; i < e->n_worst; i++) free((char *)e->worst[i].path);
  free(e->worst);
  free(e);
}

/* The row itself, or a copy in e->row with every NaN made -inf. */
static const float *without_nan(cn_evaluation *e, const float *s) {
  int n = e->confusion.classes, nan = 0;
  for (int j = 0; j < n && !nan; j++) nan = isnan(s[j]);
  if (!nan) return s;
  for (int j = 0; j < n; j++) e->row[j] = isnan(s[j]) ? -INFINITY : s[j];
  return e->row;
}

void cn_evaluation_add(cn_evaluation *e, int batch, const float *scores, const int *labels) {
  if (!e || batch <= 0 || !scores || !labels) return;
  size_t n = (size_t)e->confusion.classes;
  for (int i = 0; i < batch; i++)
    cn_confusion_add(&e->confusion, 1, without_nan(e, scores + (size_t)i * n), labels + i);
}

int cn_evaluation_class_count(const cn_evaluation *e) {
  return e ? e->confusion.classes : 0;
}

int cn_evaluation_top_k(const cn_evaluation *e) {
  return e ? (int)e->confusion.k : 0;
}

int64_t cn_evaluation_images(const cn_evaluation *e) {
  return e ? e->confusion.total : 0;
}

static int in_range(const cn_evaluation *e, int cls) {
  return e && cls >= 0 && cls < e->confusion.classes;
}

int64_t cn_evaluation_confusion(const cn_evaluation *e, int truth, int predicted) {
  if (!in_range(e, truth) || !in_range(e, predicted)) return 0;
  return e->confusion.counts[(size_t)truth * (size_t)e->confusion.classes + (size_t)predicted];
}

int64_t cn_evaluation_correct(const cn_evaluation *e) {
  int64_t sum = 0;
  for (int c = 0; c < cn_evaluation_class_count(e); c++) sum += cn_evaluation_confusion(e, c, c);
  return sum;
}

int64_t cn_evaluation_top_k_correct(const cn_evaluation *e) {
  return e ? e->confusion.top_k_hits : 0;
}

double cn_evaluation_accuracy(const cn_evaluation *e) {
  return e ? cn_confusion_accuracy(&e->confusion) : 0.0;
}

double cn_evaluation_top_k_accuracy(const cn_evaluation *e) {
  return e ? cn_confusion_top_k(&e->confusion) : 0.0;
}

int64_t cn_evaluation_samples(const cn_evaluation *e, int cls) {
  int64_t sum = 0;
  for (int j = 0; in_range(e, cls) && j < e->confusion.classes; j++)
    sum += cn_evaluation_confusion(e, cls, j);
  return sum;
}

int64_t cn_evaluation_predicted(const cn_evaluation *e, int cls) {
  int64_t sum = 0;
  for (int i = 0; in_range(e, cls) && i < e->confusion.classes; i++)
    sum += cn_evaluation_confusion(e, i, cls);
  return sum;
}

double cn_evaluation_recall(const cn_evaluation *e, int cls) {
  return e ? cn_confusion_recall(&e->confusion, cls) : NAN;
}

double cn_evaluation_precision(const cn_evaluation *e, int cls) {
  int64_t predicted = cn_evaluation_predicted(e, cls);
  return predicted ? (double)cn_evaluation_confusion(e, cls, cls) / (double)predicted : NAN;
}

int64_t cn_evaluation_skipped(const cn_evaluation *e) {
  return e ? e->skipped : 0;
}

double cn_evaluation_seconds(const cn_evaluation *e) {
  return e ? e->seconds : 0.0;
}

int cn_evaluation_worst_count(const cn_evaluation *e) {
  return e ? e->n_worst : 0;
}

const cn_evaluation_miss *cn_evaluation_worst(const cn_evaluation *e, int i) {
  return e && i >= 0 && i < e->n_worst ? &e->worst[i] : NULL;
}

/* ---- the worst misclassified images -------------------------------------------------------- */

static cn_status worst_init(cn_evaluation *e, int max_worst) {
  if (max_worst < 0 || max_worst > CN_EVAL_MAX_WORST)
    return cn_fail(CN_ERR_ARG, "evaluate: worst %d outside 0..%d", max_worst, CN_EVAL_MAX_WORST);
  e->max_worst = max_worst;
  if (max_worst && !(e->worst = calloc((size_t)max_worst, sizeof *e->worst)))
    return cn_fail(CN_ERR_NOMEM, "evaluate: out of memory");
  return CN_OK;
}

/* The top classes of one row of scores (NaN already made -inf), best first; ties: lower index. */
static void top_classes(const float *s, int classes, cn_evaluation_miss *m) {
  for (int k = 0; k < CN_EVAL_MISS_TOP; k++) {
    m->top[k] = -1;
    m->top_score[k] = NAN;
    for (int j = 0; j < classes; j++) {
      int taken = 0;
      for (int q = 0; q < k; q++) taken |= m->top[q] == j;
      if (!taken && (m->top[k] < 0 || s[j] > s[m->top[k]])) m->top[k] = j;
    }
    if (m->top[k] >= 0) m->top_score[k] = s[m->top[k]];
  }
}

/* Keeps image `path` when it is misclassified and among the max_worst lowest true scores. */
static cn_status worst_offer(cn_evaluation *e, const char *path, const cn_evaluation_miss *miss) {
  cn_evaluation_miss m = *miss;
  if (m.top[0] == m.truth) return CN_OK;
  int at = e->n_worst;
  while (at > 0 && e->worst[at - 1].truth_score > m.truth_score) at--;
  if (at >= e->max_worst) return CN_OK;
  if (!(m.path = strdup(path ? path : ""))) return cn_fail(CN_ERR_NOMEM, "evaluate: out of memory");
  if (e->n_worst == e->max_worst) free((char *)e->worst[--e->n_worst].path);
  memmove(e->worst + at + 1, e->worst + at, (size_t)(e->n_worst - at) * sizeof *e->worst);
  e->worst[at] = m;
  e->n_worst++;
  return CN_OK;
}

/* ---- the result of one image --------------------------------------------------------------- */

/* What scoring one image found: all that counting it and offering it as a worst miss need, so
 * that in an mpirun job each rank scores its share and every rank counts all of them in file
 * order, as one process would. Plain bytes: the ranks run the same build. */
typedef struct eval_record {
  int32_t scored; /* 0: skipped (could not be decoded, or its label is not a class) */
  int32_t predicted, top_k_hit;
  cn_evaluation_miss miss; /* truth, truth_score, top, top_score; path unused (NULL) */
} eval_record;

static void judge(const cn_evaluation *e, const float *row, int label, eval_record *rec) {
  int predicted, hit;
  cn_confusion_judge(&e->confusion, row, label, &predicted, &hit);
  *rec = (eval_record){.scored = 1, .predicted = predicted, .top_k_hit = hit};
  rec->miss.truth = label;
  rec->miss.truth_score = row[label];
  if (e->max_worst) top_classes(row, e->confusion.classes, &rec->miss);
}

/* Counts n records of the images paths[0 .. n), in that order. */
static cn_status fold(cn_evaluation *e, const eval_record *recs, const char *const *paths,
                      int64_t n) {
  cn_status st = CN_OK;
  for (int64_t i = 0; st == CN_OK && i < n; i++) {
    const eval_record *rec = &recs[i];
    if (!rec->scored) {
      e->skipped++;
      continue;
    }
    cn_confusion_count(&e->confusion, rec->miss.truth, rec->predicted, rec->top_k_hit);
    if (e->max_worst) st = worst_offer(e, paths[i], &rec->miss);
  }
  return st;
}

/* ---- scoring image files ------------------------------------------------------------------- */

/* Everything one run of cn_evaluate_files needs, sized for one batch (records: for this rank's
 * share of the images in an mpirun job). */
typedef struct eval_run {
  cn_model *model;
  cn_input_spec spec;
  cn_evaluate_options o;
  int classes;
  size_t in_numel;
  float *input, *output;
  int *ok, *labels;
  int *good_index; /* the batch position of each image scored in this batch */
  char *msgs;      /* batch x EVAL_MSG: why each image failed, written by its decoding thread */
  eval_record *recs;
  int64_t first, count; /* the images this rank scores: all of them without a group */
  cn_evaluation *e;
} eval_run;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static cn_status check_options(const cn_evaluate_options *o) {
  if (o->batch < 1 || o->batch > EVAL_MAX_BATCH)
    return cn_fail(CN_ERR_ARG, "evaluate: batch %d outside 1..%d", o->batch, EVAL_MAX_BATCH);
  if (o->top_k < 1) return cn_fail(CN_ERR_ARG, "evaluate: top_k %d is not positive", o->top_k);
  return CN_OK;
}

/* The model's classes (a vector output) and an input spec that fills its input exactly. */
static cn_status check_model(eval_run *r) {
  cn_shape out = cn_model_output_shape(r->model), in = cn_model_input_shape(r->model);
  char buf[96];
  if (out.rank != 1 || out.dim[0] < 1 || out.dim[0] > INT32_MAX)
    return cn_fail(CN_ERR_SHAPE, "%s: output %s is not a vector of class scores",
                   cn_model_name(r->model), cn_shape_format(&out, buf, sizeof buf));
  r->classes = (int)out.dim[0];
  const cn_input_spec *s = &r->spec;
  if (s->height < 1 || s->width < 1 || s->channels < 1 ||
      (int64_t)s->height * s->width * s->channels != cn_shape_numel(&in))
    return cn_fail(CN_ERR_SHAPE, "%s: input spec %dx%dx%d does not fill the input %s",
                   cn_model_name(r->model), s->height, s->width, s->channels,
                   cn_shape_format(&in, buf, sizeof buf));
  r->in_numel = (size_t)s->height * (size_t)s->width * (size_t)s->channels;
  return CN_OK;
}

static cn_status alloc_run(eval_run *r) {
  size_t b = (size_t)r->o.batch, in_bytes, out_bytes;
  size_t n_recs = r->o.group ? (size_t)r->count : b;
  if (!cn_mul_size(b * sizeof(float), r->in_numel, &in_bytes) ||
      !cn_mul_size(b * sizeof(float), (size_t)r->classes, &out_bytes))
    return cn_fail(CN_ERR_LIMIT, "evaluate: batch buffers too large");
  r->input = malloc(in_bytes);
  r->output = malloc(out_bytes);
  r->ok = malloc(b * sizeof *r->ok);
  r->labels = malloc(b * sizeof *r->labels);
  r->msgs = malloc(b * EVAL_MSG);
  r->good_index = malloc(b * sizeof *r->good_index);
  r->recs = malloc((n_recs ? n_recs : 1) * sizeof *r->recs);
  if (!r->input || !r->output || !r->ok || !r->labels || !r->msgs || !r->good_index || !r->recs)
    return cn_fail(CN_ERR_NOMEM, "evaluate: out of memory for a batch of %d", r->o.batch);
  cn_status st = cn_evaluation_new(r->classes, r->o.top_k, &r->e);
  return st == CN_OK ? worst_init(r->e, r->o.worst) : st;
}

static void free_run(eval_run *r) {
  free(r->input);
  free(r->output);
  free(r->ok);
  free(r->labels);
  free(r->msgs);
  free(r->good_index);
  free(r->recs);
  cn_evaluation_free(r->e);
}

/* Decodes and prepares one image into out; on failure writes one line naming the file to msg. */
static int prepare_one(const eval_run *r, const char *path, int label, float *out, char *msg) {
  if (!path) {
    snprintf(msg, EVAL_MSG, "evaluate: image path missing");
    return 0;
  }
  if (label < 0 || label >= r->classes) {
    snprintf(msg, EVAL_MSG, "%s: class index %d outside the model's %d classes", path, label,
             r->classes);
    return 0;
  }
  cn_image image = {0};
  cn_status st = cn_image_load_spec(path, &r->spec, &image);
  if (st == CN_OK) st = cn_image_prepare(&image, &r->spec, out);
  cn_image_free(&image);
  if (st != CN_OK && strstr(cn_last_error(), path))
    snprintf(msg, EVAL_MSG, "%s", cn_last_error());
  else if (st != CN_OK)
    snprintf(msg, EVAL_MSG, "%s: %s", path, cn_last_error());
  return st == CN_OK;
}

/* n images decoded in parallel into their own slots, then the good ones packed to the front and
 * run through the model; recs[i] receives what image i gave. Failures are reported in file
 * order. */
static cn_status score_batch(eval_run *r, const char *const *paths, const int *labels, int n,
                             eval_record *recs) {
#pragma omp parallel for schedule(dynamic)
  for (int i = 0; i < n; i++)
    r->ok[i] = prepare_one(r, paths[i], labels[i], r->input + (size_t)i * r->in_numel,
                           r->msgs + (size_t)i * EVAL_MSG);
  int good = 0;
  for (int i = 0; i < n; i++) {
    const char *msg = r->msgs + (size_t)i * EVAL_MSG;
    recs[i] = (eval_record){0};
    if (!r->ok[i] && r->o.fatal_bad_images) return cn_fail(CN_ERR_FORMAT, "%s", msg);
    if (!r->ok[i]) {
      if (r->o.message) r->o.message(r->o.ctx, msg);
      continue;
    }
    if (good != i)
      memcpy(r->input + (size_t)good * r->in_numel, r->input + (size_t)i * r->in_numel,
             r->in_numel * sizeof *r->input);
    r->good_index[good] = i;
    r->labels[good++] = labels[i];
  }
  if (!good) return CN_OK;
  cn_status st = cn_model_forward(r->model, good, r->input, r->output);
  for (int j = 0; st == CN_OK && j < good; j++)
    judge(r->e, without_nan(r->e, r->output + (size_t)j * (size_t)r->classes), r->labels[j],
          &recs[r->good_index[j]]);
  return st;
}

/* Scores this rank's images batch by batch; alone, counts each batch at once. */
static cn_status score_share(eval_run *r, const char *const *paths, const int *labels) {
  cn_status st = CN_OK;
  for (int64_t i = r->first; st == CN_OK && i < r->first + r->count; i += r->o.batch) {
    int64_t left = r->first + r->count - i;
    int count = left < r->o.batch ? (int)left : r->o.batch;
    eval_record *recs = r->o.group ? r->recs + (i - r->first) : r->recs;
    st = score_batch(r, paths + i, labels + i, count, recs);
    if (st == CN_OK && !r->o.group) st = fold(r->e, recs, paths + i, count);
  }
  return st;
}

/* Every rank's status made the same: that of the first rank (in rank order, hence in file
 * order) that failed, its message sent to all, so that no rank is left waiting in a collective
 * and all report the same error. */
static cn_status agree(cn_group *g, cn_status st) {
  int size = cn_group_size(g), rank = cn_group_rank(g);
  double *failed = calloc((size_t)size, sizeof *failed);
  if (!failed) return cn_fail(CN_ERR_NOMEM, "evaluate: out of memory");
  failed[rank] = st != CN_OK ? (double)st : 0.0;
  cn_status sum = cn_group_sum_f64(g, failed, (size_t)size);
  int first = 0;
  while (sum == CN_OK && first < size && failed[first] == 0.0) first++;
  cn_status code = first < size ? (cn_status)failed[first] : CN_OK;
  free(failed);
  if (sum != CN_OK || code == CN_OK) return sum;
  char msg[EVAL_MSG];
  snprintf(msg, sizeof msg, "%s", rank == first ? cn_last_error() : "");
  cn_status bc = cn_group_broadcast(g, msg, sizeof msg, first);
  if (bc != CN_OK) return bc;
  return cn_fail(code, "%s", msg);
}

/* Every rank's records to every rank (in rank order, which is file order: the shares are
 * contiguous), then counted by each as one process counts them. */
static cn_status share_records(eval_run *r, int64_t n, const char *const *paths) {
  void *all = NULL;
  size_t total = 0, bytes = (size_t)n * sizeof(eval_record);
  cn_status st =
      cn_group_gather(r->o.group, r->recs, (size_t)r->count * sizeof(eval_record), &all, &total);
  if (st == CN_OK && cn_group_rank(r->o.group) == 0 && total != bytes)
    st = cn_fail(CN_ERR_IO, "evaluate: gathered %zu bytes of results, expected %zu", total, bytes);
  if (st == CN_OK && !all && !(all = malloc(bytes ? bytes : 1)))
    st = cn_fail(CN_ERR_NOMEM, "evaluate: out of memory for %lld results", (long long)n);
  st = agree(r->o.group, st);
  if (st == CN_OK) st = cn_group_broadcast(r->o.group, all, bytes, 0);
  if (st == CN_OK) st = fold(r->e, all, paths, n);
  free(all);
  return st;
}

/* This rank's images: whole batches of the n, so that every image shares its forward pass with
 * the same companions as in one process (the output of a batch may depend on its size). */
static void take_share(eval_run *r, int64_t n) {
  cn_group_share_batches(n, r->o.batch, cn_group_rank(r->o.group), cn_group_size(r->o.group),
                         &r->first, &r->count);
}

cn_status cn_evaluate_files(cn_model *model, int64_t n, const char *const *paths, const int *labels,
                            const cn_evaluate_options *o, cn_evaluation **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "evaluate: NULL argument");
  *out = NULL;
  if (!model || n < 0 || (n > 0 && (!paths || !labels)))
    return cn_fail(CN_ERR_ARG, "evaluate: NULL model, paths or labels");
  eval_run r = {.model = model, .o = o ? *o : (cn_evaluate_options){0}};
  if (!r.o.batch) r.o.batch = EVAL_DEFAULT_BATCH;
  if (!r.o.top_k) r.o.top_k = EVAL_DEFAULT_K;
  r.spec = r.o.spec ? *r.o.spec : cn_model_input_spec(model);
  cn_status st = check_options(&r.o);
  if (st == CN_OK) st = check_model(&r);
  if (st == CN_OK) take_share(&r, n);
  if (st == CN_OK) st = alloc_run(&r);
  double start = now_seconds();
  if (st == CN_OK) st = score_share(&r, paths, labels);
  if (r.o.group) st = agree(r.o.group, st);
  if (st == CN_OK && r.o.group) st = share_records(&r, n, paths);
  if (st == CN_OK) {
    r.e->seconds = now_seconds() - start;
    *out = r.e;
    r.e = NULL;
  }
  free_run(&r);
  return st;
}

/* ---- class folders ------------------------------------------------------------------------- */

/* "a, b, c, ..." : the first model class names, for an error message. */
static void list_class_names(const cn_model *model, char *buf, size_t cap) {
  size_t len = 0;
  int n = cn_model_class_count(model);
  buf[0] = '\0';
  for (int i = 0; i < n && i < EVAL_NAMES_SHOWN && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "",
                            cn_model_class_name(model, i));
  if (n > EVAL_NAMES_SHOWN && len < cap) snprintf(buf + len, cap - len, ", ...");
}

static int find_model_class(const cn_model *model, const char *name) {
  for (int i = 0; i < cn_model_class_count(model); i++)
    if (strcmp(cn_model_class_name(model, i), name) == 0) return i;
  return -1;
}

static int find_imagenet_class(const cn_labels *labels, const char *name) {
  size_t n = cn_labels_count(labels);
  for (size_t i = 0; i < n; i++) {
    const char *id = cn_labels_id(labels, i), *label = cn_labels_name(labels, i);
    if ((id && strcmp(id, name) == 0) || (label && strcmp(label, name) == 0)) return (int)i;
  }
  return -1;
}

/* map[c]: the model output of the data set's class c, by name. */
static cn_status map_classes(const cn_model *model, const cn_dataset *ds, int *map) {
  int named = cn_model_class_count(model) > 0;
  cn_labels *imagenet = NULL;
  cn_status st = named ? CN_OK : cn_labels_imagenet(&imagenet);
  for (int c = 0; st == CN_OK && c < cn_dataset_class_count(ds); c++) {
    const char *folder = cn_dataset_class_name(ds, c);
    map[c] = named ? find_model_class(model, folder) : find_imagenet_class(imagenet, folder);
    char names[512];
    if (map[c] < 0 && named) {
      list_class_names(model, names, sizeof names);
      st = cn_fail(CN_ERR_ARG,
                   "evaluate: class folder '%s' is not one of the model's %d classes "
                   "(%s)",
                   folder, cn_model_class_count(model), names);
    } else if (map[c] < 0) {
      st = cn_fail(CN_ERR_ARG,
                   "evaluate: class folder '%s' is not an ImageNet WordNet id or "
                   "class name",
                   folder);
    }
  }
  cn_labels_free(imagenet);
  return st;
}

cn_status cn_evaluate(cn_model *model, const cn_dataset *ds, const cn_evaluate_options *o,
                      cn_evaluation **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "evaluate: NULL argument");
  *out = NULL;
  if (!model || !ds) return cn_fail(CN_ERR_ARG, "evaluate: NULL model or data set");
  int64_t n = cn_dataset_count(ds);
  int nclasses = cn_dataset_class_count(ds);
  int *map = malloc((size_t)(nclasses ? nclasses : 1) * sizeof *map);
  const char **paths = malloc((size_t)(n ? n : 1) * sizeof *paths);
  int *labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
  cn_status st = map && paths && labels ? CN_OK : cn_fail(CN_ERR_NOMEM, "evaluate: out of memory");
  if (st == CN_OK) st = map_classes(model, ds, map);
  for (int64_t i = 0; st == CN_OK && i < n; i++) {
    int label = cn_dataset_label(ds, i);
    paths[i] = cn_dataset_path(ds, i);
    labels[i] = label >= 0 && label < nclasses ? map[label] : -1; /* -1: skipped, named */
  }
  if (o && o->group) st = agree(o->group, st); /* a rank alone out of memory: all fail */
  if (st == CN_OK) st = cn_evaluate_files(model, n, paths, labels, o, out);
  free(map);
  free(paths);
  free(labels);
  return st;
}
