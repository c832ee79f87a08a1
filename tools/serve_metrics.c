/* The server's counters, and their text for GET /metrics (Prometheus exposition format 0.0.4). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  int inflight;
  int n_models;
  struct {
    char name[64];
    uint64_t batches[BATCH_BUCKETS + 1];
    double images;
  } model[SERVE_MAX_MODELS];
};

serve_metrics *serve_metrics_new(const serve_model *models, int n_models) {
  serve_metrics *m = calloc(1, sizeof *m);
  if (!m || pthread_mutex_init(&m->mu, NULL) != 0) return free(m), NULL;
  m->n_models = n_models < SERVE_MAX_MODELS ? n_models : SERVE_MAX_MODELS;
  for (int i = 0; i < m->n_models; i++)
    snprintf(m->model[i].name, sizeof m->model[i].name, "%s", models[i].name);
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

void serve_metrics_batch(serve_metrics *m, int model, int size) {
  int bucket = 0;
  while (bucket < BATCH_BUCKETS && size > batch_bounds[bucket]) bucket++;
  if (model < 0 || model >= m->n_models) return;
  pthread_mutex_lock(&m->mu);
  m->model[model].batches[bucket]++;
  m->model[model].images += size;
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

static void print_header(FILE *out, const char *name, const char *type, const char *help) {
  fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A histogram's lines, each with the labels given (`model="x",` or ""): counts[b] of the values
 * in (bounds[b - 1], bounds[b]], the last one above every bound. */
static void print_histogram(FILE *out, const char *name, const char *labels, const double *bounds,
                            int n, const uint64_t *counts, double sum) {
  uint64_t cumulative = 0;
  for (int b = 0; b < n; b++) {
    cumulative += counts[b];
    fprintf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[b],
            (unsigned long long)cumulative);
  }
  cumulative += counts[n];
  char plain[96] = ""; /* the labels without their trailing comma, for _sum and _count */
  size_t len = strlen(labels);
  if (len) snprintf(plain, sizeof plain, "{%.*s}", (int)len - 1, labels);
  fprintf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n%s_sum%s %.6f\n%s_count%s %llu\n", name, labels,
          (unsigned long long)cumulative, name, plain, sum, name, plain,
          (unsigned long long)cumulative);
}

static void print_requests(FILE *out, const serve_metrics *m) {
  print_header(out, "convnet_http_requests_total", "counter",
               "HTTP requests answered, by status code.");
  for (int code = 100; code < STATUS_CODES; code++)
    if (m->by_status[code])
      fprintf(out, "convnet_http_requests_total{code=\"%d\"} %llu\n", code,
              (unsigned long long)m->by_status[code]);
  print_header(out, "convnet_http_request_duration_seconds", "histogram",
               "Time from a request's headers to its answer.");
  print_histogram(out, "convnet_http_request_duration_seconds", "", latency_bounds, LATENCY_BUCKETS,
                  m->latency, m->latency_sum);
  print_header(out, "convnet_http_requests_in_flight", "gauge",
               "Requests received and not yet answered.");
  fprintf(out, "convnet_http_requests_in_flight %d\n", m->inflight);
}

/* The model names are checked (letters, digits, '.', '_', '-'): no escaping needed. */
static void print_models(FILE *out, const serve_metrics *m, const int *queue_depths) {
  print_header(out, "convnet_batch_size", "histogram",
               "Images per forward pass of the dynamic batcher.");
  for (int i = 0; i < m->n_models; i++) {
    char labels[96];
    snprintf(labels, sizeof labels, "model=\"%s\",", m->model[i].name);
    print_histogram(out, "convnet_batch_size", labels, batch_bounds, BATCH_BUCKETS,
                    m->model[i].batches, m->model[i].images);
  }
  print_header(out, "convnet_queue_depth", "gauge", "Images waiting for a batch.");
  for (int i = 0; i < m->n_models; i++)
    fprintf(out, "convnet_queue_depth{model=\"%s\"} %d\n", m->model[i].name, queue_depths[i]);
}

char *serve_metrics_text(serve_metrics *m, const int *queue_depths) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  if (!out) return NULL;
  pthread_mutex_lock(&m->mu);
  print_requests(out, m);
  print_models(out, m, queue_depths);
  pthread_mutex_unlock(&m->mu);
  if (fclose(out) != 0) {
    free(text);
    return NULL;
  }
  return text;
}
