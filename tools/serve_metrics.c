/* The server's counters, and their text for GET /metrics (Prometheus exposition format 0.0.4). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "serve.h"

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10};
enum { LATENCY_BUCKETS = sizeof latency_bounds / sizeof *latency_bounds };
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
enum { BATCH_BUCKETS = sizeof batch_bounds / sizeof *batch_bounds, STATUS_CODES = 600 };

struct serve_metrics {
  pthread_mutex_t mu;
  uint64_t by_status[STATUS_CODES];
  uint64_t latency[LATENCY_BUCKETS + 1]; /* the last bucket: above every bound */
  double latency_sum;
  uint64_t batches[BATCH_BUCKETS + 1];
  double batch_images;
  int inflight;
};

serve_metrics *serve_metrics_new(void) {
  serve_metrics *m = calloc(1, sizeof *m);
  if (m && pthread_mutex_init(&m->mu, NULL) != 0) free(m), m = NULL;
  return m;
}

void serve_metrics_free(serve_metrics *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void serve_metrics_request(serve_metrics *m, int status, double seconds) {
  int bucket = 0;
  while (bucket < LATENCY_BUCKETS && seconds > latency_bounds[bucket]) bucket++;
  pthread_mutex_lock(&m->mu);
  if (status >= 100 && status < STATUS_CODES) m->by_status[status]++;
  m->latency[bucket]++;
  m->latency_sum += seconds;
  pthread_mutex_unlock(&m->mu);
}

void serve_metrics_batch(serve_metrics *m, int size) {
  int bucket = 0;
  while (bucket < BATCH_BUCKETS && size > batch_bounds[bucket]) bucket++;
  pthread_mutex_lock(&m->mu);
  m->batches[bucket]++;
  m->batch_images += size;
  pthread_mutex_unlock(&m->mu);
}

void serve_metrics_inflight(serve_metrics *m, int delta) {
  pthread_mutex_lock(&m->mu);
  m->inflight += delta;
  pthread_mutex_unlock(&m->mu);
}

int serve_metrics_inflight_now(serve_metrics *m) {
  pthread_mutex_lock(&m->mu);
  int n = m->inflight;
  pthread_mutex_unlock(&m->mu);
  return n;
}

/* A histogram's lines: counts[b] of the values in (bounds[b - 1], bounds[b]], the last one above
 * every bound. */
static void print_histogram(FILE *out, const char *name, const char *help, const double *bounds,
                            int n, const uint64_t *counts, double sum) {
  fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cumulative = 0;
  for (int b = 0; b < n; b++) {
    cumulative += counts[b];
    fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], (unsigned long long)cumulative);
  }
  cumulative += counts[n];
  fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
          (unsigned long long)cumulative, name, sum, name, (unsigned long long)cumulative);
}

static void print_counters(FILE *out, const serve_metrics *m) {
  fputs("# HELP convnet_http_requests_total HTTP requests answered, by status code.\n"
        "# TYPE convnet_http_requests_total counter\n",
        out);
  for (int code = 100; code < STATUS_CODES; code++)
    if (m->by_status[code])
      fprintf(out, "convnet_http_requests_total{code=\"%d\"} %llu\n", code,
              (unsigned long long)m->by_status[code]);
  print_histogram(out, "convnet_http_request_duration_seconds",
                  "Time from a request's headers to its answer.", latency_bounds, LATENCY_BUCKETS,
                  m->latency, m->latency_sum);
  print_histogram(out, "convnet_batch_size", "Images per forward pass of the dynamic batcher.",
                  batch_bounds, BATCH_BUCKETS, m->batches, m->batch_images);
}

char *serve_metrics_text(serve_metrics *m, int queue_depth) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (!out) return NULL;
  pthread_mutex_lock(&m->mu);
  print_counters(out, m);
  fprintf(out,
          "# HELP convnet_queue_depth Images waiting for a batch.\n"
          "# TYPE convnet_queue_depth gauge\nconvnet_queue_depth %d\n"
          "# HELP convnet_http_requests_in_flight Requests received and not yet answered.\n"
          "# TYPE convnet_http_requests_in_flight gauge\nconvnet_http_requests_in_flight %d\n",
          queue_depth, m->inflight);
  pthread_mutex_unlock(&m->mu);
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
