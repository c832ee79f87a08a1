/* convnet serve: the HTTP service's parts (cmd_serve.c, serve_*.c). Built on the public API and
 * libmicrohttpd; nothing here writes a file. */
#ifndef CONVNET_SERVE_H
#define CONVNET_SERVE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* ---- dynamic batching (serve_batch.c) ---- */

/* What a batch of images computes: the model's outputs (classify) or its embedder's vectors. */
typedef enum serve_lane { SERVE_LANE_MODEL, SERVE_LANE_EMBED, SERVE_LANES } serve_lane;

/* One image's place in a batch: its prepared input, its lane, where its outputs go, and whether
 * the batch it went into has run. */
typedef void (*serve_call_fn)(void *arg);
typedef struct serve_job {
  serve_call_fn call; /* a call (serve_batcher_call) instead of an image */
  void *arg;
  serve_lane lane;
  const float *input;
  float *output;
  int done, failed;
  char error[256];
  double queued_at; /* serve_now() */
  struct serve_job *next;
} serve_job;

typedef struct serve_batcher serve_batcher;
typedef void (*serve_batch_fn)(void *user, int batch_size);

/* A thread that runs the model (or, for the embed lane, the embedder, which may be NULL) on up to
 * max_batch queued jobs of one lane at a time, waiting at most max_wait_ms after the first job
 * of a batch arrived for more. compute is held around every forward pass: one model computes at
 * a time, with all the library's threads. on_batch (may be NULL) hears each batch's size. */
int serve_batcher_start(cn_model *model, cn_embedder *embedder, int max_batch, int max_wait_ms,
                        pthread_mutex_t *compute, serve_batch_fn on_batch, void *user,
                        serve_batcher **out);
/* One full batch of zeros through each lane before the first request: the plan, the packed and
 * transformed weights and the activations' pages are then ready, and a model too large for the
 * memory fails at start rather than on a client's request (VGG16's first batch of 8 took 2.4 s
 * against 0.6 s for the next ones). CN_OK, or the library's error. */
cn_status serve_batcher_warm_up(serve_batcher *b);
/* Queues job and waits until its batch has run; returns 0, or -1 with job->error set. */
int serve_batcher_run(serve_batcher *b, serve_job *job);
/* Runs call(arg) on the batcher's thread, in queue order between batches and under the compute
 * lock, and waits for it: other work on the model (Grad-CAM, embeddings) then shares the thread
 * and the library's thread pool of the forward passes. */
void serve_batcher_call(serve_batcher *b, serve_call_fn call, void *arg);
/* Jobs queued and not yet taken into a batch. */
int serve_batcher_depth(serve_batcher *b);
/* Runs the jobs already queued, then ends the thread. */
void serve_batcher_stop(serve_batcher *b);

/* ---- the clock the batcher and the watcher wait on (serve_batch.c) ---- */
double serve_now(void); /* seconds, monotonic */
/* A condition variable whose timed waits take serve_now() times; 0, or -1 on failure. */
int serve_cond_init(pthread_cond_t *cond);
/* Waits on cond until it is signalled or serve_now() reaches until; 0, or ETIMEDOUT. */
int serve_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *mu, double until);

/* ---- metrics (serve_metrics.c), in the Prometheus text format ---- */

enum { SERVE_MAX_MODELS = 16 };
typedef struct serve_model serve_model;
typedef struct serve_metrics serve_metrics;
/* Counters for the server and for each of the models (their names labelled). */
serve_metrics *serve_metrics_new(const serve_model *models, int n_models);
void serve_metrics_free(serve_metrics *m);
void serve_metrics_request(serve_metrics *m, int status, double seconds);
/* A batch of size images of models[model]. */
void serve_metrics_batch(serve_metrics *m, int model, int size);
void serve_metrics_inflight(serve_metrics *m, int delta);
int serve_metrics_inflight_now(serve_metrics *m);
/* queue_depths: the jobs waiting, for each model. Returns a malloc'd text. */
char *serve_metrics_text(serve_metrics *m, const int *queue_depths);

/* ---- the request deadline (serve_watch.c) ---- */

/* What a connection is doing: waiting for (or reading) a request's headers and body, whose
 * arrival the deadline bounds, or working on an answer, which it does not. */
typedef enum serve_conn_phase { SERVE_CONN_WAITING, SERVE_CONN_WORKING } serve_conn_phase;
typedef struct serve_conn serve_conn;
typedef struct serve_watch serve_watch;
/* A thread that shuts down the socket of every connection that has been waiting for a whole
 * request longer than deadline_s. NULL without memory or threads. */
serve_watch *serve_watch_start(double deadline_s);
/* At a connection's start, waiting; NULL (not watched) without memory. */
serve_conn *serve_watch_add(serve_watch *w, int fd);
/* WAITING restarts the clock (the next request); WORKING stops it. c may be NULL. */
void serve_watch_phase(serve_watch *w, serve_conn *c, serve_conn_phase phase);
void serve_watch_remove(serve_watch *w, serve_conn *c);
void serve_watch_stop(serve_watch *w);

/* ---- the page at / (serve_page.c) ---- */
extern const char serve_page_html[];

/* ---- the server (serve_http.c) ---- */

struct serve_model {
  char name[64];
  int index;              /* in the server's models */
  serve_metrics *metrics; /* where its batches are counted */
  cn_model *model;
  cn_input_spec spec;
  size_t in_numel, classes;
  cn_labels *labels;     /* NULL: the model's own names or "class N" */
  cn_embedder *embedder; /* NULL: the model has no feature layer */
  int explainable;       /* it has a spatial layer for Grad-CAM */
  serve_batcher *batcher;
};

typedef struct serve_config {
  const char *host;
  int port; /* 0: any free port */
  int max_batch, max_wait_ms;
  size_t max_body;       /* bytes */
  int timeout_s;         /* a connection idle this long is closed */
  int request_timeout_s; /* a whole request (headers and body) must arrive in this time */
  int max_connections;
  int max_per_client; /* connections from one IP address; 0: no limit */
  const char *token;  /* NULL: no bearer token asked */
} serve_config;

typedef struct serve_server serve_server;
/* Starts listening; the models are served until serve_server_stop. Prints the error itself. */
int serve_server_start(const serve_config *c, serve_model *models, int n_models,
                       serve_metrics *metrics, serve_server **out);
int serve_server_port(const serve_server *s);
/* Stops accepting connections, waits (at most grace_s) for the requests in flight, then stops. */
void serve_server_stop(serve_server *s, int grace_s);

#endif
