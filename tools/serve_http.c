/* convnet serve's HTTP side on libmicrohttpd: routes, bodies, answers. One thread per connection
 * reads and decodes its request, so decoding runs in parallel; the batcher runs the model. */
#include <microhttpd.h>
#include <stdarg.h>
#include <netdb.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "serve.h"

/* A body refused (too large, wrong type, ...) is still read and dropped up to this many bytes, so
 * that a client that sends it whole reads the answer instead of a reset connection. Past it the
 * connection is cut: libmicrohttpd cannot answer in the middle of a body. */
enum { DRAIN_LIMIT = 64 << 20, POST_BUFFER = 64 << 10, NAME_CAP = 128 };

struct serve_server {
  struct MHD_Daemon *daemon;
  serve_config config;
  serve_model *models;
  int n_models;
  serve_metrics *metrics;
  /* images decoded at once: one a core. Decoding is CPU-bound, so more would not be faster, and
   * a small file can hold an image of up to CN_IMAGE_MAX_PIXELS (768 MiB as RGB). */
  sem_t decode_slots;
  serve_watch *watch;   /* the request deadline */
  _Atomic int stopping; /* answers then close their connections */
};

typedef enum route {
  ROUTE_PAGE,
  ROUTE_HEALTH,
  ROUTE_MODELS,
  ROUTE_METRICS,
  ROUTE_CLASSIFY,
  ROUTE_EMBED,
  ROUTE_EXPLAIN
} route;

typedef struct request {
  serve_server *server;
  double started;
  int status; /* the status answered; 0: none yet */
  route route;
  int post_route; /* a /v1/models/NAME/... path: POST is the method allowed */
  int drop_body;  /* a body is not wanted: read and dropped */
  serve_model *model;
  int k;
  /* a refusal decided before the body was read: answered once it has been drained */
  int refused_status;
  char refused[256];
  size_t received, max_body;
  char *body;
  size_t len, cap;
  struct MHD_PostProcessor *post; /* multipart/form-data */
  char *file_field;               /* the form field whose file is the image; NULL: none yet */
  int file_complete;              /* its first file has been read: later ones are ignored */
  char name[NAME_CAP];            /* "file" in the JSON: the form's file name, else "-" */
} request;

/* ---- answers ---- */

/* Queues resp with the headers every answer has; NULL resp (no memory) closes the connection. */
static enum MHD_Result queue(struct MHD_Connection *c, request *r, int status, const char *type,
                             struct MHD_Response *resp) {
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (r->server->stopping) /* a keep-alive client reconnects, and finds the door closed */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r->post_route ? "POST" : "GET");
  enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
  MHD_destroy_response(resp);
  if (rc == MHD_YES) r->status = status;
  return rc;
}

/* An answer whose body (malloc'd; NULL: out of memory) is the response's to free. */
static enum MHD_Result answer(struct MHD_Connection *c, request *r, int status, const char *type,
                              char *body, size_t len) {
  struct MHD_Response *resp =
      body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
  if (!resp) free(body);
  return queue(c, r, status, type, resp);
}

/* A text built with fprintf-style calls into memory; NULL without memory. */
typedef struct text {
  char *data;
  size_t len;
  FILE *out;
} text;

static int text_open(text *t) {
  t->data = NULL, t->len = 0;
  t->out = open_memstream(&t->data, &t->len);
  return t->out ? 0 : -1;
}

static char *text_close(text *t) {
  if (fclose(t->out) != 0) {
    free(t->data);
    return NULL;
  }
  return t->data;
}

static enum MHD_Result answer_text(struct MHD_Connection *c, request *r, int status,
                                   const char *type, text *t) {
  size_t len = 0;
  char *body = text_close(t);
  if (body) len = t->len;
  return answer(c, r, status, type, body, len);
}

/* {"error":"<message>"}: every refusal and failure, one line. */
static enum MHD_Result answer_error(struct MHD_Connection *c, request *r, int status,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static enum MHD_Result answer_error(struct MHD_Connection *c, request *r, int status,
                                    const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  text t;
  if (text_open(&t) != 0) return MHD_NO;
  fputs("{\"error\":", t.out);
  cli_json_string(t.out, message);
  fputs("}\n", t.out);
  return answer_text(c, r, status, "application/json", &t);
}

static void refuse(request *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(request *r, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->refused, sizeof r->refused, fmt, ap);
  va_end(ap);
  r->refused_status = status;
}

/* ---- GET ---- */

static void print_model(FILE *out, const serve_model *m) {
  fputs("{\"name\":", out);
  cli_json_string(out, m->name);
  fprintf(out,
          ",\"input\":{\"height\":%d,\"width\":%d,\"channels\":%d,\"layout\":\"%s\","
          "\"resize\":\"%s\",\"crop\":%g,\"preprocess\":\"%s\",\"decode\":\"%s\"}",
          m->spec.height, m->spec.width, m->spec.channels, m->spec.channels_first ? "CHW" : "HWC",
          cn_resize_name(m->spec.resize), m->spec.crop, cn_preprocess_name(m->spec.preprocess),
          cn_decoder_name(m->spec.decoder));
  fprintf(out, ",\"classes\":%zu,\"class_names\":[", m->classes);
  for (size_t c = 0; c < m->classes; c++) {
    char buf[32];
    if (c) putc(',', out);
    cli_json_string(out, cli_class_name(m->labels, m->model, c, buf, sizeof buf));
  }
  fprintf(out, "],\"embedding\":%lld,\"routes\":[\"classify\"%s%s]}",
          m->embedder ? (long long)cn_embedder_dim(m->embedder) : 0LL,
          m->explainable ? ",\"explain\"" : "", m->embedder ? ",\"embed\"" : "");
}

static enum MHD_Result get_models(serve_server *s, struct MHD_Connection *c, request *r) {
  text t;
  if (text_open(&t) != 0) return MHD_NO;
  fputs("{\"models\":[", t.out);
  for (int i = 0; i < s->n_models; i++) {
    if (i) putc(',', t.out);
    print_model(t.out, &s->models[i]);
  }
  fputs("]}\n", t.out);
  return answer_text(c, r, MHD_HTTP_OK, "application/json", &t);
}

static enum MHD_Result get_metrics(serve_server *s, struct MHD_Connection *c, request *r) {
  int depths[SERVE_MAX_MODELS];
  for (int i = 0; i < s->n_models; i++) depths[i] = serve_batcher_depth(s->models[i].batcher);
  char *body = serve_metrics_text(s->metrics, depths);
  return answer(c, r, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                body ? strlen(body) : 0);
}

/* A body that lives as long as the program, sent without a copy. */
static enum MHD_Result get_static(struct MHD_Connection *c, request *r, const char *body,
                                  const char *type) {
  return queue(c, r, MHD_HTTP_OK, type,
               MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT));
}

/* ---- the request line and headers ---- */

static int authorised(const serve_server *s, struct MHD_Connection *c) {
  if (!s->config.token) return 1;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
  const char *given = h + 7, *want = s->config.token;
  size_t n = strlen(want), m = strlen(given);
  unsigned diff = (unsigned)(n ^ m);
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)want[i] ^ (unsigned char)given[i % (m + 1)];
  return diff == 0;
}

/* "/v1/models/NAME/ACTION": the model and the route; 0 when the path is not one. */
static int parse_model_path(serve_server *s, const char *url, request *r, const char **action) {
  static const char prefix[] = "/v1/models/";
  if (strncmp(url, prefix, sizeof prefix - 1) != 0) return 0;
  const char *name = url + sizeof prefix - 1, *slash = strchr(name, '/');
  if (!slash) return 0;
  *action = slash + 1;
  for (int i = 0; i < s->n_models; i++)
    if (strlen(s->models[i].name) == (size_t)(slash - name) &&
        strncmp(s->models[i].name, name, (size_t)(slash - name)) == 0)
      r->model = &s->models[i];
  return 1;
}

static int content_length_over(struct MHD_Connection *c, size_t limit) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  return h && strtoull(h, NULL, 10) > limit;
}

static enum MHD_Result post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *filename, const char *content_type,
                                  const char *transfer_encoding, const char *data, uint64_t off,
                                  size_t size);

/* The checks of a POST's headers; a failure becomes r->refused_status. */
static void check_post(serve_server *s, struct MHD_Connection *c, request *r) {
  const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  const char *k = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k");
  char *end = NULL;
  long kv = k ? strtol(k, &end, 10) : 5;
  r->k = (int)kv;
  snprintf(r->name, sizeof r->name, "-");
  if (k && (end == k || *end || kv < 1 || kv > CLI_MAX_TOP))
    refuse(r, MHD_HTTP_BAD_REQUEST, "k: want a whole number from 1 to %d", CLI_MAX_TOP);
  else if (content_length_over(c, s->config.max_body))
    refuse(r, MHD_HTTP_CONTENT_TOO_LARGE, "the body is over the limit of %zu bytes (--max-body)",
           s->config.max_body);
  else if (type && strncasecmp(type, "multipart/form-data", 19) == 0) {
    r->post = MHD_create_post_processor(c, POST_BUFFER, post_field, r);
    if (!r->post) refuse(r, MHD_HTTP_BAD_REQUEST, "multipart/form-data without a boundary");
  } else if (!type || (strncasecmp(type, "image/", 6) != 0 &&
                       strncasecmp(type, "application/octet-stream", 24) != 0))
    refuse(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
           "Content-Type %s: send the image as image/*, application/octet-stream or "
           "multipart/form-data",
           type ? type : "missing");
}

static int expects_continue(struct MHD_Connection *c) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
  return h && strcasecmp(h, "100-continue") == 0;
}

/* The route of a GET (or HEAD) path; 0 when it is not one. */
static int get_route(const char *url, route *out) {
  static const struct {
    const char *path;
    route route;
  } routes[] = {{"/", ROUTE_PAGE},
                {"/healthz", ROUTE_HEALTH},
                {"/v1/models", ROUTE_MODELS},
                {"/metrics", ROUTE_METRICS}};
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
    if (strcmp(url, routes[i].path) == 0) return *out = routes[i].route, 1;
  return 0;
}

/* The route of a POST path's action; 0 when it is none. */
static int post_route(const char *action, route *out) {
  static const struct {
    const char *action;
    route route;
  } routes[] = {{"classify", ROUTE_CLASSIFY}, {"embed", ROUTE_EMBED}, {"explain", ROUTE_EXPLAIN}};
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
    if (strcmp(action, routes[i].action) == 0) return *out = routes[i].route, 1;
  return 0;
}

/* The first call, with the headers: the route, or the refusal (answered once any body has been
 * read, so that the connection stays usable). */
static void route_request(serve_server *s, struct MHD_Connection *c, const char *url,
                          const char *method, request *r) {
  int get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  const char *action = NULL;
  int get_path = get_route(url, &r->route);
  r->post_route = !get_path && parse_model_path(s, url, r, &action);
  r->drop_body = 1;
  if (get_path) {
    if (!get)
      refuse(r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s: use GET", url);
    else if (r->route != ROUTE_PAGE && r->route != ROUTE_HEALTH && !authorised(s, c))
      refuse(r, MHD_HTTP_UNAUTHORIZED, "a bearer token is required (--token)");
  } else if (!r->post_route) {
    refuse(r, MHD_HTTP_NOT_FOUND, "%s: no such path", url);
  } else if (!authorised(s, c)) {
    refuse(r, MHD_HTTP_UNAUTHORIZED, "a bearer token is required (--token)");
  } else if (!r->model) {
    refuse(r, MHD_HTTP_NOT_FOUND, "%s: no such model", url);
  } else if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
    refuse(r, MHD_HTTP_METHOD_NOT_ALLOWED, "%s: use POST", url);
  } else if (!post_route(action, &r->route)) {
    refuse(r, MHD_HTTP_NOT_FOUND, "%s: no such action (classify, embed, explain)", url);
  } else {
    r->drop_body = 0;
    check_post(s, c, r);
  }
}

static enum MHD_Result begin(serve_server *s, struct MHD_Connection *c, const char *url,
                             const char *method, request *r) {
  route_request(s, c, url, method, r);
  /* a client waiting for 100 Continue, or announcing more than we would drain, hears at once */
  if (r->refused_status && (expects_continue(c) || content_length_over(c, DRAIN_LIMIT)))
    return answer_error(c, r, r->refused_status, "%s", r->refused);
  return MHD_YES;
}

/* ---- the body ---- */

static int append(request *r, const char *data, size_t size, size_t limit) {
  if (r->len + size > limit) return -1;
  if (r->len + size > r->cap) {
    size_t cap = r->cap ? r->cap : 64 << 10;
    while (cap < r->len + size) cap *= 2;
    if (cap > limit) cap = limit;
    char *body = realloc(r->body, cap);
    if (!body) return -1;
    r->body = body, r->cap = cap;
  }
  memcpy(r->body + r->len, data, size);
  r->len += size;
  return 0;
}

static enum MHD_Result post_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *filename, const char *content_type,
                                  const char *transfer_encoding, const char *data, uint64_t off,
                                  size_t size) {
  request *r = cls;
  (void)kind, (void)content_type, (void)transfer_encoding;
  if (!filename || !key) return MHD_YES; /* plain form fields are ignored */
  if (!r->file_field) {
    if (!(r->file_field = strdup(key))) {
      refuse(r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory for the form");
      return MHD_YES;
    }
    snprintf(r->name, sizeof r->name, "%s", filename);
  } else if (strcmp(key, r->file_field) != 0 || r->file_complete) {
    return MHD_YES; /* the first file is the image */
  }
  if (off == 0 && r->len) { /* a second file under the same name */
    r->file_complete = 1;
    return MHD_YES;
  }
  if (!r->refused_status && size && append(r, data, size, r->max_body) != 0)
    refuse(r, MHD_HTTP_CONTENT_TOO_LARGE, "the image is over the limit of %zu bytes (--max-body)",
           r->max_body);
  return MHD_YES;
}

/* One piece of the body: kept, parsed as a form, or dropped after a refusal. */
static void receive(request *r, const char *data, size_t size) {
  r->received += size;
  if (r->refused_status || r->drop_body) return;
  if (r->received > r->max_body) {
    refuse(r, MHD_HTTP_CONTENT_TOO_LARGE, "the body is over the limit of %zu bytes (--max-body)",
           r->max_body);
  } else if (r->post) {
    if (MHD_post_process(r->post, data, size) != MHD_YES && !r->refused_status)
      refuse(r, MHD_HTTP_BAD_REQUEST, "a malformed multipart/form-data body");
  } else if (append(r, data, size, r->max_body) != 0) {
    refuse(r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory for the body");
  }
}

/* ---- the work ---- */

/* Decodes the body and prepares it for spec into input, one decode a core at a time; 0 on
 * failure (cn_last_error says why). */
static int decode_prepare(serve_server *s, const request *r, const char *name,
                          const cn_input_spec *spec, float *input) {
  cn_image image = {0};
  sem_wait(&s->decode_slots);
  int ok = cn_image_decode_as(r->body, r->len, name, spec->decoder, &image) == CN_OK &&
           cn_image_prepare(&image, spec, input) == CN_OK;
  cn_image_free(&image);
  sem_post(&s->decode_slots);
  return ok;
}

/* The image of the body prepared for spec into a new buffer; NULL after answering the error. */
static float *prepare_body(serve_server *s, struct MHD_Connection *c, request *r,
                           const cn_input_spec *spec, enum MHD_Result *rc) {
  size_t numel = (size_t)spec->height * spec->width * spec->channels;
  float *input = malloc(numel * sizeof *input);
  const char *name = strcmp(r->name, "-") ? r->name : "the body";
  if (!r->len) {
    *rc = answer_error(c, r, MHD_HTTP_BAD_REQUEST, "no image in the request");
  } else if (!input) {
    *rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  } else if (!decode_prepare(s, r, name, spec, input)) {
    *rc = answer_error(c, r, MHD_HTTP_BAD_REQUEST, "%s", cn_last_error());
  } else {
    return input;
  }
  free(input);
  return NULL;
}

static enum MHD_Result classify(serve_server *s, struct MHD_Connection *c, request *r) {
  serve_model *m = r->model;
  enum MHD_Result rc = MHD_NO;
  float *input = prepare_body(s, c, r, &m->spec, &rc);
  float *probs = input ? malloc(m->classes * sizeof *probs) : NULL;
  if (!input) return rc;
  serve_job job = {.input = input, .output = probs};
  text t = {0};
  if (!probs) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  } else if (serve_batcher_run(m->batcher, &job) != 0) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", job.error);
  } else if (text_open(&t) != 0) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  } else {
    cli_top_opts o = {
        .k = r->k, .json = 1, .labels = m->labels, .named = m->labels ? NULL : m->model};
    cli_print_top(t.out, r->name, probs, m->classes, &o);
    rc = answer_text(c, r, MHD_HTTP_OK, "application/json", &t);
  }
  free(input);
  free(probs);
  return rc;
}

/* Work on a model run on its batcher's thread (serve_batcher_call): the library's error message
 * is that thread's, so it is copied there. */
typedef struct model_work {
  serve_model *model;
  const float *input;
  cn_gradcam *cam; /* explain */
  cn_status status;
  char error[512];
} model_work;

static void finish_work(model_work *w, cn_status status) {
  w->status = status;
  if (status != CN_OK) snprintf(w->error, sizeof w->error, "%s", cn_last_error());
}

static void run_gradcam(void *arg) {
  model_work *w = arg;
  cn_gradcam_options o = {.layer = NULL, .class_index = -1};
  finish_work(w, cn_gradcam_compute(w->model->model, w->input, &o, w->cam));
}

static enum MHD_Result embed(serve_server *s, struct MHD_Connection *c, request *r) {
  serve_model *m = r->model;
  if (!m->embedder)
    return answer_error(c, r, MHD_HTTP_NOT_FOUND, "model %s has no feature layer to embed with",
                        m->name);
  cn_input_spec spec = cn_embedder_input_spec(m->embedder);
  enum MHD_Result rc = MHD_NO;
  float *input = prepare_body(s, c, r, &spec, &rc);
  if (!input) return rc;
  int64_t dim = cn_embedder_dim(m->embedder);
  float *v = malloc((size_t)dim * sizeof *v);
  serve_job job = {.lane = SERVE_LANE_EMBED, .input = input, .output = v};
  text t = {0};
  if (v && serve_batcher_run(m->batcher, &job) != 0) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "%s", job.error);
  } else if (!v || text_open(&t) != 0) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  } else {
    fputs("{\"file\":", t.out);
    cli_json_string(t.out, r->name);
    fputs(",\"layer\":", t.out);
    cli_json_string(t.out, cn_embedder_layer(m->embedder));
    fprintf(t.out, ",\"dim\":%lld,\"embedding\":[", (long long)dim);
    for (int64_t i = 0; i < dim; i++) fprintf(t.out, "%s%.9g", i ? "," : "", (double)v[i]);
    fputs("]}\n", t.out);
    rc = answer_text(c, r, MHD_HTTP_OK, "application/json", &t);
  }
  free(v);
  free(input);
  return rc;
}

/* The Grad-CAM map of the top class, scaled to 0..1, for the page to draw over the photo. */
static void print_gradcam(FILE *out, const request *r, const cn_gradcam *cam) {
  char buf[32];
  float top = 0;
  for (int i = 0; i < cam->height * cam->width; i++) top = cam->map[i] > top ? cam->map[i] : top;
  fputs("{\"file\":", out);
  cli_json_string(out, r->name);
  fprintf(out, ",\"index\":%d,\"label\":", cam->class_index);
  cli_json_string(out, cli_class_name(r->model->labels, r->model->model, (size_t)cam->class_index,
                                      buf, sizeof buf));
  fprintf(out, ",\"prob\":%.9g,\"layer\":", (double)cam->probability);
  cli_json_string(out, cam->layer);
  /* the map covers the central crop of the photo that the model saw */
  double crop = r->model->spec.crop > 0 && r->model->spec.crop < 1 ? r->model->spec.crop : 1;
  fprintf(out, ",\"crop\":%g,\"height\":%d,\"width\":%d,\"map\":[", crop, cam->height, cam->width);
  for (int i = 0; i < cam->height * cam->width; i++)
    fprintf(out, "%s%.4f", i ? "," : "", top > 0 ? (double)(cam->map[i] / top) : 0.0);
  fputs("]}\n", out);
}

static enum MHD_Result explain(serve_server *s, struct MHD_Connection *c, request *r) {
  if (!r->model->explainable)
    return answer_error(c, r, MHD_HTTP_NOT_FOUND, "model %s has no spatial layer for Grad-CAM",
                        r->model->name);
  enum MHD_Result rc = MHD_NO;
  float *input = prepare_body(s, c, r, &r->model->spec, &rc);
  if (!input) return rc;
  cn_gradcam cam = {0};
  model_work w = {.model = r->model, .input = input, .cam = &cam};
  serve_batcher_call(r->model->batcher, run_gradcam, &w);
  free(input);
  text t = {0};
  if (w.status != CN_OK) {
    rc = answer_error(c, r,
                      w.status == CN_ERR_NOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE
                                               : MHD_HTTP_UNPROCESSABLE_CONTENT,
                      "%s", w.error);
  } else if (text_open(&t) != 0) {
    rc = answer_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
  } else {
    print_gradcam(t.out, r, &cam);
    rc = answer_text(c, r, MHD_HTTP_OK, "application/json", &t);
  }
  cn_gradcam_free(&cam);
  return rc;
}

/* The last call: the whole body is in. */
static enum MHD_Result finish(serve_server *s, struct MHD_Connection *c, request *r) {
  if (r->post && MHD_destroy_post_processor(r->post) != MHD_YES && !r->refused_status)
    refuse(r, MHD_HTTP_BAD_REQUEST, "a malformed multipart/form-data body");
  r->post = NULL;
  if (r->refused_status) return answer_error(c, r, r->refused_status, "%s", r->refused);
  switch (r->route) {
  case ROUTE_PAGE:
    return get_static(c, r, serve_page_html, "text/html; charset=utf-8");
  case ROUTE_HEALTH:
    return get_static(c, r, "{\"status\":\"ok\"}\n", "application/json");
  case ROUTE_MODELS:
    return get_models(s, c, r);
  case ROUTE_METRICS:
    return get_metrics(s, c, r);
  case ROUTE_CLASSIFY:
    return classify(s, c, r);
  case ROUTE_EMBED:
    return embed(s, c, r);
  case ROUTE_EXPLAIN:
    return explain(s, c, r);
  }
  return MHD_NO;
}

static void connection_event(void *cls, struct MHD_Connection *c, void **conn,
                             enum MHD_ConnectionNotificationCode event) {
  serve_server *s = cls;
  if (event == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    *conn = info ? serve_watch_add(s->watch, info->connect_fd) : NULL;
  } else {
    serve_watch_remove(s->watch, *conn);
    *conn = NULL;
  }
}

static void set_phase(serve_server *s, struct MHD_Connection *c, serve_conn_phase phase) {
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  serve_watch_phase(s->watch, info ? info->socket_context : NULL, phase);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state) {
  serve_server *s = cls;
  request *r = *state;
  (void)version;
  if (!r) {
    if (!(r = calloc(1, sizeof *r))) return MHD_NO;
    r->server = s;
    r->started = serve_now();
    r->max_body = s->config.max_body;
    *state = r;
    serve_metrics_inflight(s->metrics, 1);
    enum MHD_Result rc = begin(s, c, url, method, r);
    if (r->status) set_phase(s, c, SERVE_CONN_WORKING);
    return rc;
  }
  if (*upload_size) {
    size_t size = *upload_size;
    *upload_size = 0;
    if (r->status) return MHD_YES; /* answered already: the rest is dropped */
    receive(r, upload, size);
    return r->refused_status && r->received > DRAIN_LIMIT ? MHD_NO : MHD_YES;
  }
  if (r->status) return MHD_YES;
  set_phase(s, c, SERVE_CONN_WORKING);
  return finish(s, c, r);
}

static void completed(void *cls, struct MHD_Connection *c, void **state,
                      enum MHD_RequestTerminationCode why) {
  serve_server *s = cls;
  request *r = *state;
  (void)why;
  if (!r) return;
  if (r->status) /* a connection closed before an answer is no answered request */
    serve_metrics_request(s->metrics, r->status, serve_now() - r->started);
  serve_metrics_inflight(s->metrics, -1);
  set_phase(s, c, SERVE_CONN_WAITING); /* the next request's clock */
  if (r->post) MHD_destroy_post_processor(r->post);
  free(r->file_field);
  free(r->body);
  free(r);
  *state = NULL;
}

/* ---- the daemon ---- */

static int resolve(const serve_config *cfg, struct sockaddr_storage *addr, int *ipv6) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE},
                  *res = NULL;
  char port[16];
  snprintf(port, sizeof port, "%d", cfg->port);
  int rc = getaddrinfo(cfg->host, port, &hints, &res);
  if (rc != 0) return cli_error("serve", "--host %s: %s", cfg->host, gai_strerror(rc));
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  *ipv6 = res->ai_family == AF_INET6;
  freeaddrinfo(res);
  return CLI_OK;
}

static struct MHD_Daemon *start_daemon(serve_server *s, const struct sockaddr_storage *addr,
                                       int ipv6) {
  const serve_config *cfg = &s->config;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                   MHD_USE_ITC | (ipv6 ? MHD_USE_IPv6 : 0);
  return MHD_start_daemon(flags, 0, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
                          (const struct sockaddr *)addr, MHD_OPTION_CONNECTION_LIMIT,
                          (unsigned)cfg->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                          (unsigned)cfg->max_per_client, MHD_OPTION_CONNECTION_TIMEOUT,
                          (unsigned)cfg->timeout_s, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
                          MHD_OPTION_NOTIFY_CONNECTION, connection_event, s, MHD_OPTION_END);
}

static void free_server(serve_server *s) {
  serve_watch_stop(s->watch);
  sem_destroy(&s->decode_slots);
  free(s);
}

int serve_server_start(const serve_config *cfg, serve_model *models, int n_models,
                       serve_metrics *metrics, serve_server **out) {
  struct sockaddr_storage addr = {0};
  int ipv6 = 0, rc = resolve(cfg, &addr, &ipv6);
  if (rc != CLI_OK) return rc;
  serve_server *s = calloc(1, sizeof *s);
  if (!s) return cli_error("serve", "out of memory");
  *s = (serve_server){.config = *cfg, .models = models, .n_models = n_models, .metrics = metrics};
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  if (sem_init(&s->decode_slots, 0, cores > 0 ? (unsigned)cores : 1) != 0) {
    free(s);
    return cli_error("serve", "cannot make a semaphore");
  }
  if (!(s->watch = serve_watch_start(cfg->request_timeout_s))) {
    free_server(s);
    return cli_error("serve", "cannot start the request deadline's thread");
  }
  if (!(s->daemon = start_daemon(s, &addr, ipv6))) {
    free_server(s);
    return cli_error("serve", "cannot listen on %s port %d (in use, or not an address here)",
                     cfg->host, cfg->port);
  }
  *out = s;
  return CLI_OK;
}

int serve_server_port(const serve_server *s) {
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  return info ? info->port : 0;
}

void serve_server_stop(serve_server *s, int grace_s) {
  /* the listening socket is closed after the daemon's threads, which may still use it */
  s->stopping = 1;
  MHD_socket listening = MHD_quiesce_daemon(s->daemon);
  /* new clients are refused at once instead of waiting in the backlog for the grace period */
  if (listening != MHD_INVALID_SOCKET) shutdown(listening, SHUT_RDWR);
  for (double until = serve_now() + grace_s;
       serve_metrics_inflight_now(s->metrics) > 0 && serve_now() < until;)
    usleep(10000);
  MHD_stop_daemon(s->daemon);
  if (listening != MHD_INVALID_SOCKET) close(listening);
  free_server(s);
}
