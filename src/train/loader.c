/* The batch loader: worker threads decode, augment and prepare images into a fixed ring of batch
 * buffers, so memory stays bounded whatever the number of files or epochs. Image positions of
 * the epoch's order are handed out one at a time under one mutex; position p lands in batch
 * p / batch, which lives in slot (p / batch) % prefetch and may only be started once the batch
 * that used that slot before has been consumed. The consumer takes batches strictly in order,
 * so the output depends on (dataset, options, epoch) only, never on the worker count or timing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/group.h"
#include "core/mem.h"
#include "core/rng.h"
#include "train/dataset.h"

enum { MSG_CAP = 512 };
/* The status of a position another rank decodes (shards); not a cn_status. */
enum { NOT_MINE = 127 };
static const uint64_t SHUFFLE_STREAM = 0x5348554646; /* "SHUFF" */
static const uint64_t AUGMENT_STREAM = 0x4155474d;   /* "AUGM" */
/* Most memory the ring of decoded batches may take. */
static const size_t MAX_RING_BYTES = (size_t)8 << 30;

typedef struct slot {
  float *images;         /* batch x numel */
  int64_t *indices;      /* dataset index of each position */
  char *status;          /* cn_status of each position; not CN_OK: bad, message in msgs */
  char (*msgs)[MSG_CAP]; /* why a position failed */
  int64_t batch_no;      /* the batch of this epoch it holds; -1: none */
  int size, done;        /* positions in the batch, positions finished */
} slot;

struct cn_loader {
  const cn_dataset *ds;
  cn_loader_options o;
  size_t numel;
  int64_t n, nbatches;
  int64_t *order; /* the epoch's permutation of dataset indices */
  slot *slots;
  int nslots;
  pthread_t *threads;
  int nthreads;
  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* workers: a new epoch, a freed slot, or quit */
  pthread_cond_t done_cv; /* consumer: a finished batch, or workers idle */
  int quit, running, busy;
  int64_t epoch, generation, next_pos, consumed;
  cn_status failed; /* a fatal bad image: repeated until the next epoch */
  char fail_msg[MSG_CAP];
  unsigned char *warned; /* one bit per dataset image already reported bad */
  int64_t bad_count;
};

/* ---- one image ------------------------------------------------------------------------------ */

static uint64_t augment_seed(const cn_loader *l, int64_t epoch, int64_t index) {
  uint64_t key = cn_rng_key(l->o.seed, AUGMENT_STREAM, (uint64_t)epoch);
  return cn_mix64(key ^ cn_mix64((uint64_t)index));
}

/* Decodes, augments and prepares dataset image index into out; on failure writes why into msg,
 * naming the file. */
static cn_status decode_one(const cn_loader *l, int64_t index, int64_t epoch, float *out,
                            char *msg) {
  const char *path = cn_dataset_path(l->ds, index);
  cn_image image = {0}, changed = {0};
  cn_status st = cn_image_load_spec(path, &l->o.spec, &image);
  if (st == CN_OK && cn_augment_active(&l->o.augment)) {
    st = cn_image_augment(&image, &l->o.augment, augment_seed(l, epoch, index), &changed);
    if (st == CN_OK) {
      cn_image_free(&image);
      image = changed;
    }
  }
  if (st == CN_OK) st = cn_image_prepare(&image, &l->o.spec, out);
  cn_image_free(&image);
  if (st != CN_OK && strstr(cn_last_error(), path))
    snprintf(msg, MSG_CAP, "%s", cn_last_error());
  else if (st != CN_OK)
    snprintf(msg, MSG_CAP, "%s: %s", path, cn_last_error());
  return st;
}

/* ---- workers -------------------------------------------------------------------------------- */

/* Whether the next position may be started now: an epoch runs, positions remain, and its batch's
 * slot has been given back by the consumer. */
static int work_ready(const cn_loader *l) {
  if (!l->running || l->next_pos >= l->n) return 0;
  return l->next_pos / l->o.batch < l->consumed + l->nslots;
}

/* Called under the mutex for the first position of batch b: the slot is free, reset it. */
static void claim_slot(cn_loader *l, slot *s, int64_t b) {
  int64_t left = l->n - b * l->o.batch;
  s->batch_no = b;
  s->size = left < l->o.batch ? (int)left : l->o.batch;
  s->done = 0;
}

static void finish_position(cn_loader *l, slot *s, int k, int64_t index, cn_status st) {
  s->indices[k] = index;
  s->status[k] = (char)st;
  if (++s->done == s->size) pthread_cond_broadcast(&l->done_cv);
}

/* Whether position k of the batch in slot s is this loader's to decode (always, unsharded). */
static int mine(const cn_loader *l, const slot *s, int k) {
  if (l->o.shard_count <= 1) return 1;
  int64_t first, count;
  cn_group_share(s->size, l->o.shard_rank, l->o.shard_count, &first, &count);
  return k >= first && k < first + count;
}

static void *worker_main(void *arg) {
  cn_loader *l = arg;
  pthread_mutex_lock(&l->mu);
  while (!l->quit) {
    if (!work_ready(l)) {
      pthread_cond_wait(&l->work_cv, &l->mu);
      continue;
    }
    int64_t p = l->next_pos++, b = p / l->o.batch, gen = l->generation, epoch = l->epoch;
    int k = (int)(p % l->o.batch);
    slot *s = &l->slots[b % l->nslots];
    if (k == 0) claim_slot(l, s, b);
    int64_t index = l->order[p];
    if (!mine(l, s, k)) {
      finish_position(l, s, k, index, (cn_status)NOT_MINE);
      continue;
    }
    l->busy++;
    pthread_mutex_unlock(&l->mu);
    cn_status st = decode_one(l, index, epoch, s->images + (size_t)k * l->numel, s->msgs[k]);
    pthread_mutex_lock(&l->mu);
    l->busy--;
    if (gen == l->generation) finish_position(l, s, k, index, st);
    if (l->busy == 0) pthread_cond_broadcast(&l->done_cv);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

/* ---- creation and teardown ------------------------------------------------------------------ */

static void stop_workers(cn_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->quit = 1;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
  l->nthreads = 0;
}

void cn_loader_free(cn_loader *l) {
  if (!l) return;
  stop_workers(l);
  for (int i = 0; l->slots && i < l->nslots; i++) {
    cn_free_aligned(l->slots[i].images);
    free(l->slots[i].indices);
    free(l->slots[i].status);
    free(l->slots[i].msgs);
  }
  free(l->slots);
  free(l->threads);
  free(l->order);
  free(l->warned);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->work_cv);
  pthread_cond_destroy(&l->done_cv);
  free(l);
}

static cn_status check_options(const cn_dataset *ds, const cn_loader_options *o) {
  if (!ds || !o) return cn_fail(CN_ERR_ARG, "loader: no data set or options given");
  const cn_input_spec *sp = &o->spec;
  if (sp->height <= 0 || sp->width <= 0 || sp->height > 65536 || sp->width > 65536 ||
      (sp->channels != 1 && sp->channels != 3))
    return cn_fail(CN_ERR_ARG, "loader: input %dx%dx%d is not an image size", sp->height, sp->width,
                   sp->channels);
  if (o->shard_count > 1 && (o->shard_rank < 0 || o->shard_rank >= o->shard_count))
    return cn_fail(CN_ERR_ARG, "loader: shard %d of %d", o->shard_rank, o->shard_count);
  if (o->batch < 1 || o->batch > CN_LOADER_MAX_BATCH)
    return cn_fail(CN_ERR_ARG, "loader: batch %d is not in 1..%d", o->batch, CN_LOADER_MAX_BATCH);
  if (o->workers < 0 || o->workers > CN_LOADER_MAX_WORKERS)
    return cn_fail(CN_ERR_ARG, "loader: %d workers is not in 0..%d", o->workers,
                   CN_LOADER_MAX_WORKERS);
  if (o->prefetch_batches < 0 || o->prefetch_batches > CN_LOADER_MAX_PREFETCH)
    return cn_fail(CN_ERR_ARG, "loader: prefetch of %d batches is not in 0..%d",
                   o->prefetch_batches, CN_LOADER_MAX_PREFETCH);
  if (o->bad_images != CN_BAD_IMAGES_SKIP && o->bad_images != CN_BAD_IMAGES_FATAL)
    return cn_fail(CN_ERR_ARG, "loader: unknown bad-image policy %d", (int)o->bad_images);
  return cn_augment_check(&o->augment);
}

static cn_status alloc_slots(cn_loader *l) {
  size_t floats, bytes;
  if (!cn_mul_size(l->numel, (size_t)l->o.batch, &floats) ||
      !cn_mul_size(floats, sizeof(float) * (size_t)l->nslots, &bytes) || bytes > MAX_RING_BYTES)
    return cn_fail(CN_ERR_LIMIT, "loader: %d batches of %d images of %zu floats exceed %zu bytes",
                   l->nslots, l->o.batch, l->numel, MAX_RING_BYTES);
  l->slots = calloc((size_t)l->nslots, sizeof *l->slots);
  if (!l->slots) return cn_fail(CN_ERR_NOMEM, "loader: out of memory");
  for (int i = 0; i < l->nslots; i++) {
    slot *s = &l->slots[i];
    s->images = cn_alloc_aligned(floats * sizeof(float));
    s->indices = calloc((size_t)l->o.batch, sizeof *s->indices);
    s->status = calloc((size_t)l->o.batch, 1);
    s->msgs = calloc((size_t)l->o.batch, sizeof *s->msgs);
    s->batch_no = -1;
    if (!s->images || !s->indices || !s->status || !s->msgs)
      return cn_fail(CN_ERR_NOMEM, "loader: no memory for %d batches of %d images", l->nslots,
                     l->o.batch);
  }
  return CN_OK;
}

static cn_status start_workers(cn_loader *l, int count) {
  l->threads = calloc((size_t)count, sizeof *l->threads);
  if (!l->threads) return cn_fail(CN_ERR_NOMEM, "loader: out of memory");
  for (int i = 0; i < count; i++) {
    if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0)
      return cn_fail(CN_ERR_NOMEM, "loader: cannot start worker thread %d of %d", i + 1, count);
    l->nthreads = i + 1;
  }
  return CN_OK;
}

cn_status cn_loader_new(const cn_dataset *ds, const cn_loader_options *o, cn_loader **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "loader: no output given");
  *out = NULL;
  cn_status st = check_options(ds, o);
  if (st != CN_OK) return st;
  cn_loader *l = calloc(1, sizeof *l);
  if (!l) return cn_fail(CN_ERR_NOMEM, "loader: out of memory");
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->work_cv, NULL);
  pthread_cond_init(&l->done_cv, NULL);
  l->ds = ds, l->o = *o;
  l->numel = (size_t)o->spec.height * (size_t)o->spec.width * (size_t)o->spec.channels;
  l->n = cn_dataset_count(ds);
  l->nbatches = (l->n + o->batch - 1) / o->batch;
  l->nslots = o->prefetch_batches ? o->prefetch_batches : 2;
  l->order = malloc((size_t)(l->n ? l->n : 1) * sizeof *l->order);
  l->warned = calloc((size_t)(l->n / 8 + 1), 1);
  st = l->order && l->warned ? alloc_slots(l) : cn_fail(CN_ERR_NOMEM, "loader: out of memory");
  int workers = o->workers ? o->workers : cn_get_threads();
  if (workers > CN_LOADER_MAX_WORKERS) workers = CN_LOADER_MAX_WORKERS;
  if (st == CN_OK) st = start_workers(l, workers);
  if (st != CN_OK) {
    cn_loader_free(l);
    return st;
  }
  *out = l;
  return CN_OK;
}

/* ---- epochs and batches --------------------------------------------------------------------- */

cn_status cn_loader_start_epoch(cn_loader *l, int64_t epoch) {
  if (!l || epoch < 0) return cn_fail(CN_ERR_ARG, "loader: no loader or negative epoch");
  pthread_mutex_lock(&l->mu);
  l->running = 0;
  l->generation++; /* results of the abandoned epoch still being decoded are dropped */
  while (l->busy) pthread_cond_wait(&l->done_cv, &l->mu);
  for (int64_t i = 0; i < l->n; i++) l->order[i] = i;
  if (l->o.shuffle) {
    cn_rng rng = cn_rng_make(cn_rng_key(l->o.seed, SHUFFLE_STREAM, (uint64_t)epoch));
    cn_rng_shuffle(&rng, l->order, l->n);
  }
  for (int i = 0; i < l->nslots; i++) l->slots[i].batch_no = -1;
  l->epoch = epoch;
  l->next_pos = l->consumed = 0;
  l->failed = CN_OK;
  l->running = 1;
  pthread_cond_broadcast(&l->work_cv);
  pthread_mutex_unlock(&l->mu);
  return CN_OK;
}

/* Reports each bad image of the batch once per file (skip policy). */
static void note_bad(cn_loader *l, const slot *s, int k) {
  int64_t index = s->indices[k];
  unsigned char bit = (unsigned char)(1u << (index & 7));
  if (l->warned[index >> 3] & bit) return;
  l->warned[index >> 3] |= bit;
  l->bad_count++;
  if (l->o.warn) {
    char msg[MSG_CAP + 32];
    snprintf(msg, sizeof msg, "skipping bad image: %s", s->msgs[k]);
    l->o.warn(l->o.warn_ctx, msg);
  }
}

/* Copies the good images of a finished slot out; returns how many, or -1 for a fatal bad one
 * (its status and message then in l->failed and l->fail_msg). */
static int deliver(cn_loader *l, const slot *s, float *images, int *labels, int64_t *indices) {
  int count = 0;
  for (int k = 0; k < s->size; k++) {
    if (s->status[k] == NOT_MINE) continue;
    if (s->status[k] != CN_OK) {
      if (l->o.bad_images == CN_BAD_IMAGES_FATAL) {
        snprintf(l->fail_msg, sizeof l->fail_msg, "%s", s->msgs[k]);
        l->failed = (cn_status)s->status[k];
        return -1;
      }
      note_bad(l, s, k);
      continue;
    }
    if (images)
      memcpy(images + (size_t)count * l->numel, s->images + (size_t)k * l->numel,
             l->numel * sizeof(float));
    if (labels) labels[count] = cn_dataset_label(l->ds, s->indices[k]);
    if (indices) indices[count] = s->indices[k];
    count++;
  }
  return count;
}

/* Waits for batch b (the next one) to be decoded; returns its slot. Called under the mutex. */
static slot *wait_batch(cn_loader *l, int64_t b) {
  slot *s = &l->slots[b % l->nslots];
  while (!(s->batch_no == b && s->done == s->size)) pthread_cond_wait(&l->done_cv, &l->mu);
  return s;
}

cn_status cn_loader_next(cn_loader *l, float *images, int *labels, int64_t *indices, int *count) {
  if (!l || !count) return cn_fail(CN_ERR_ARG, "loader: no loader or count given");
  *count = 0;
  pthread_mutex_lock(&l->mu);
  cn_status st = CN_OK;
  if (!l->running) st = cn_fail(CN_ERR_ARG, "loader: cn_loader_start_epoch was not called");
  /* unsharded, a batch of bad images only is passed over; sharded, every batch is returned */
  int sharded = l->o.shard_count > 1;
  while (st == CN_OK && l->failed == CN_OK && l->consumed < l->nbatches) {
    slot *s = wait_batch(l, l->consumed);
    pthread_mutex_unlock(&l->mu); /* the slot stays ours until consumed moves on */
    int got = deliver(l, s, images, labels, indices);
    pthread_mutex_lock(&l->mu);
    l->consumed++;
    pthread_cond_broadcast(&l->work_cv);
    *count = got > 0 ? got : 0;
    if (*count > 0 || sharded) break;
  }
  if (st == CN_OK && l->failed != CN_OK) st = cn_fail(l->failed, "%s", l->fail_msg);
  pthread_mutex_unlock(&l->mu);
  return st;
}

int64_t cn_loader_batches_left(const cn_loader *l) {
  if (!l) return 0;
  pthread_mutex_lock((pthread_mutex_t *)&l->mu);
  int64_t left = l->running ? l->nbatches - l->consumed : 0;
  pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
  return left;
}

int64_t cn_loader_bad_count(const cn_loader *l) {
  return l ? l->bad_count : 0;
}

size_t cn_loader_image_floats(const cn_loader *l) {
  return l ? l->numel : 0;
}
