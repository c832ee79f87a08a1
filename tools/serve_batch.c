/* Dynamic batching: concurrent requests for one model run as one forward pass. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

struct serve_batcher {
  cn_model *model;
  cn_embedder *embedder; /* NULL: no embed lane */
  size_t in_numel, out_numel[SERVE_LANES];
  int max_batch, max_wait_ms;
  pthread_mutex_t *compute;
  serve_batch_fn on_batch;
  void *user;
  float *inputs, *outputs; /* max_batch samples each */
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  serve_job *head, *tail;
  int depth, stopping;
  pthread_t thread;
};

double serve_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int serve_cond_init(pthread_cond_t *cond) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) return -1;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
  return rc ? -1 : 0;
}

int serve_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, double until) {
  struct timespec t = {.tv_sec = (time_t)until};
  t.tv_nsec = (long)((until - (double)t.tv_sec) * 1e9);
  return pthread_cond_timedwait(cond, mu, &t);
}

/* The images of the head's lane queued from the head on, up to a call, an image of the other
 * lane or max_batch of them. */
static int images_ahead(const serve_batcher *b) {
  int n = 0;
  for (const serve_job *j = b->head; j && !j->call && j->lane == b->head->lane && n < b->max_batch;
       j = j->next)
    n++;
  return n;
}

/* Waits for the first job, then, for images, for a full batch or the first one's deadline.
 * Holds b->mu. Returns the number of jobs to take (1 for a call), 0 when stopping with nothing
 * queued. */
static int wait_for_batch(serve_batcher *b) {
  while (!b->head && !b->stopping) pthread_cond_wait(&b->work, &b->mu);
  if (!b->head) return 0;
  if (b->head->call) return 1;
  double deadline = b->head->queued_at + b->max_wait_ms / 1000.0;
  int n;
  /* a call or the other lane's image queued behind the images ends the wait: it should not wait
   * for a full batch */
  while ((n = images_ahead(b)) < b->max_batch && b->depth == n && !b->stopping &&
         serve_cond_wait_until(&b->work, &b->mu, deadline) != ETIMEDOUT) {
  }
  return n;
}

/* The lane's forward pass over the first n of b->inputs into b->outputs, under the compute lock. */
static cn_status run_lane(serve_batcher *b, serve_lane lane, int n) {
  pthread_mutex_lock(b->compute);
  cn_status st = lane == SERVE_LANE_EMBED ? cn_embedder_run(b->embedder, n, b->inputs, b->outputs)
                                          : cn_model_forward(b->model, n, b->inputs, b->outputs);
  pthread_mutex_unlock(b->compute);
  return st;
}

/* Runs jobs [first, first + n) of the list, all of one lane, as one batch, outside b->mu. */
static void run_batch(serve_batcher *b, serve_job *first, int n) {
  serve_job *j = first;
  for (int i = 0; i < n; i++, j = j->next)
    memcpy(b->inputs + (size_t)i * b->in_numel, j->input, b->in_numel * sizeof(float));
  serve_lane lane = first->lane;
  size_t out_numel = b->out_numel[lane];
  cn_status st = run_lane(b, lane, n);
  j = first;
  for (int i = 0; i < n; i++, j = j->next) {
    if (st == CN_OK)
      memcpy(j->output, b->outputs + (size_t)i * out_numel, out_numel * sizeof(float));
    else
      snprintf(j->error, sizeof j->error, "%s", cn_last_error());
    j->failed = st != CN_OK;
  }
  if (b->on_batch) b->on_batch(b->user, n);
}

static void *batcher_main(void *arg) {
  serve_batcher *b = arg;
  pthread_mutex_lock(&b->mu);
  for (int n; (n = wait_for_batch(b)) > 0;) {
    serve_job *first = b->head, *last = first;
    for (int i = 1; i < n; i++) last = last->next;
    serve_job *end = last->next;
    b->head = end;
    if (!end) b->tail = NULL;
    b->depth -= n;
    pthread_mutex_unlock(&b->mu);
    if (first->call) {
      pthread_mutex_lock(b->compute);
      first->call(first->arg);
      pthread_mutex_unlock(b->compute);
    } else {
      run_batch(b, first, n);
    }
    pthread_mutex_lock(&b->mu);
    for (serve_job *j = first; j != end; j = j->next) j->done = 1;
    pthread_cond_broadcast(&b->done);
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

static int init_sync(serve_batcher *b) {
  int rc = pthread_mutex_init(&b->mu, NULL) || serve_cond_init(&b->work) ||
           pthread_cond_init(&b->done, NULL);
  return rc ? -1 : 0;
}

int serve_batcher_start(cn_model *model, cn_embedder *embedder, int max_batch, int max_wait_ms,
                        pthread_mutex_t *compute, serve_batch_fn on_batch, void *user,
                        serve_batcher **out) {
  serve_batcher *b = calloc(1, sizeof *b);
  if (!b) return -1;
  cn_input_spec spec = cn_model_input_spec(model);
  cn_shape shape = cn_model_output_shape(model);
  size_t classes = (size_t)cn_shape_numel(&shape), dim = embedder ? cn_embedder_dim(embedder) : 0;
  *b = (serve_batcher){.model = model,
                       .embedder = embedder,
                       .in_numel = (size_t)spec.height * spec.width * spec.channels,
                       .out_numel = {classes, dim},
                       .max_batch = max_batch,
                       .max_wait_ms = max_wait_ms,
                       .compute = compute,
                       .on_batch = on_batch,
                       .user = user};
  b->inputs = malloc((size_t)max_batch * b->in_numel * sizeof(float));
  b->outputs = malloc((size_t)max_batch * (classes > dim ? classes : dim) * sizeof(float));
  if (!b->inputs || !b->outputs || init_sync(b) != 0 ||
      pthread_create(&b->thread, NULL, batcher_main, b) != 0) {
    free(b->inputs), free(b->outputs), free(b);
    return -1;
  }
  *out = b;
  return 0;
}

/* Queues job and waits until it has run; -1 when the batcher is stopping. */
static int enqueue_and_wait(serve_batcher *b, serve_job *job) {
  job->done = job->failed = 0;
  job->next = NULL;
  job->queued_at = serve_now();
  pthread_mutex_lock(&b->mu);
  if (b->stopping) {
    pthread_mutex_unlock(&b->mu);
    snprintf(job->error, sizeof job->error, "the server is shutting down");
    return -1;
  }
  if (b->tail)
    b->tail->next = job;
  else
    b->head = job;
  b->tail = job;
  b->depth++;
  pthread_cond_signal(&b->work);
  while (!job->done) pthread_cond_wait(&b->done, &b->mu);
  pthread_mutex_unlock(&b->mu);
  return 0;
}

cn_status serve_batcher_warm_up(serve_batcher *b) {
  memset(b->inputs, 0, (size_t)b->max_batch * b->in_numel * sizeof(float));
  cn_status st = run_lane(b, SERVE_LANE_MODEL, b->max_batch);
  if (st == CN_OK && b->embedder) st = run_lane(b, SERVE_LANE_EMBED, b->max_batch);
  return st;
}

int serve_batcher_run(serve_batcher *b, serve_job *job) {
  job->call = NULL;
  if (job->lane == SERVE_LANE_EMBED && !b->embedder) {
    snprintf(job->error, sizeof job->error, "the model has no embedder");
    return -1;
  }
  return enqueue_and_wait(b, job) != 0 || job->failed ? -1 : 0;
}

void serve_batcher_call(serve_batcher *b, serve_call_fn call, void *arg) {
  serve_job job = {.call = call, .arg = arg};
  if (enqueue_and_wait(b, &job) != 0) {
    pthread_mutex_lock(b->compute); /* stopping: run it here, under the same lock */
    call(arg);
    pthread_mutex_unlock(b->compute);
  }
}

int serve_batcher_depth(serve_batcher *b) {
  pthread_mutex_lock(&b->mu);
  int depth = b->depth;
  pthread_mutex_unlock(&b->mu);
  return depth;
}

void serve_batcher_stop(serve_batcher *b) {
  if (!b) return;
  pthread_mutex_lock(&b->mu);
  b->stopping = 1;
  pthread_cond_signal(&b->work);
  pthread_mutex_unlock(&b->mu);
  pthread_join(b->thread, NULL);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->work);
  pthread_cond_destroy(&b->done);
  free(b->inputs);
  free(b->outputs);
  free(b);
}
