/* convnet serve: models over HTTP, each loaded once, with dynamic batching (docs/serve.md). */
#include <ctype.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

static const char serve_help[] =
    "usage: convnet serve [-m [NAME=]MODEL ...] [-w WEIGHTS] [--alpha A] [--precision P]\n"
    "                     [--host H] [--port P] [--threads N] [--max-batch B] [--max-wait-ms T]\n"
    "                     [--max-body MB] [--timeout S] [--request-timeout S]\n"
    "                     [--max-connections N] [--max-per-client N] [--token FILE]\n"
    "                     [--resize P] [--crop F] [--preprocess M] [--decode pil|tf]\n\n"
    "Serves models over HTTP until SIGTERM or SIGINT (then finishes the requests in flight).\n"
    "Writes no file. Routes (JSON unless said):\n"
    "  POST /v1/models/NAME/classify[?k=K]  an image body (image/*, application/octet-stream)\n"
    "                         or a multipart/form-data file: the top K (default 5) as one line\n"
    "                         of convnet classify --json (\"file\": the form's file name, else -)\n"
    "  POST /v1/models/NAME/embed     the image's feature vector (the classifier's input)\n"
    "  POST /v1/models/NAME/explain   the Grad-CAM map of the top class, scaled to 0..1\n"
    "  GET  /v1/models                names, input specs, class names\n"
    "  GET  /healthz                  {\"status\":\"ok\"}\n"
    "  GET  /metrics                  Prometheus text: requests by status, latency and batch\n"
    "                         size histograms, queue depth, requests in flight\n"
    "  GET  /                         a page to drop photos on (top 5 as bars, Grad-CAM)\n\n"
    "  -m, --model [NAME=]MODEL  a zoo name or model file, as for classify; repeat for more\n"
    "                         models; NAME defaults to the zoo name or the file's base name\n"
    "                         (default: efficientnet_lite0)\n"
    "  -w, --weights FILE     weights of the (single) zoo model\n"
    "  --alpha A, --precision P   as for classify\n"
    "  --host H               address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port P               port (default 8080; 0: any free one, printed)\n"
    "  --threads N            threads of the forward passes (0: all cores)\n"
    "  --max-batch B          images run together at most (default 8; 1: no batching)\n"
    "  --max-wait-ms T        how long the first image of a batch waits for others (default 5)\n"
    "  --max-body MB          largest request body, in MiB (default 10): larger ones get 413\n"
    "  --timeout S            a connection idle this long is closed (default 10)\n"
    "  --request-timeout S    a client has S seconds to send a whole request, headers and body,\n"
    "                         from its connection or its previous answer (default 30); then it\n"
    "                         is answered 408 and its connection closed\n"
    "  --max-connections N    connections served at once (default 64); more are closed\n"
    "  --max-per-client N     connections from one IP address at once (default 0: no limit);\n"
    "                         more are closed (behind a proxy every client is the proxy)\n"
    "  --token FILE           ask every /v1 and /metrics request for \"Authorization: Bearer\n"
    "                         <the file's first line>\"\n"
    "  --resize, --crop, --preprocess, --decode   the input pipeline, as for classify\n"
    "  -h, --help             this help\n\n"
    "Prints \"listening on http://HOST:PORT/\" on stdout once it serves.\n";

enum {
  OPT_HOST = 4000,
  OPT_PORT,
  OPT_THREADS,
  OPT_MAX_BATCH,
  OPT_MAX_WAIT,
  OPT_MAX_BODY,
  OPT_TIMEOUT,
  OPT_REQUEST_TIMEOUT,
  OPT_MAX_CONNECTIONS,
  OPT_MAX_PER_CLIENT,
  OPT_TOKEN,
  MAX_MODELS = SERVE_MAX_MODELS,
  TOKEN_CAP = 512,
  GRACE_S = 30
};

typedef struct serve_args {
  cli_model_args model; /* -w, --alpha, --precision; -m go to specs */
  const char *specs[MAX_MODELS];
  int n_specs;
  cli_input_args input;
  serve_config config;
  const char *token_path;
  char token[TOKEN_CAP];
} serve_args;

static int serve_option(serve_args *a, int opt, const char *arg) {
  int mb, rc = CLI_OK;
  if (opt == 'm') {
    if (a->n_specs == MAX_MODELS) return cli_usage("serve", "at most %d models", MAX_MODELS);
    a->specs[a->n_specs++] = arg;
    return CLI_OK;
  }
  if (cli_model_option("serve", opt, arg, &a->model, &rc) ||
      cli_input_option("serve", opt, arg, &a->input, &rc))
    return rc;
  serve_config *c = &a->config;
  int ok = 1;
  switch (opt) {
  case OPT_HOST:
    c->host = arg;
    break;
  case OPT_PORT:
    ok = cli_parse_int("serve", "--port", arg, 0, 65535, &c->port);
    break;
  case OPT_THREADS:
    ok = cli_set_threads("serve", arg);
    break;
  case OPT_MAX_BATCH:
    ok = cli_parse_int("serve", "--max-batch", arg, 1, 256, &c->max_batch);
    break;
  case OPT_MAX_WAIT:
    ok = cli_parse_int("serve", "--max-wait-ms", arg, 0, 10000, &c->max_wait_ms);
    break;
  case OPT_MAX_BODY:
    ok = cli_parse_int("serve", "--max-body", arg, 1, 1024, &mb);
    c->max_body = (size_t)mb << 20;
    break;
  case OPT_TIMEOUT:
    ok = cli_parse_int("serve", "--timeout", arg, 1, 3600, &c->timeout_s);
    break;
  case OPT_REQUEST_TIMEOUT:
    ok = cli_parse_int("serve", "--request-timeout", arg, 1, 3600, &c->request_timeout_s);
    break;
  case OPT_MAX_CONNECTIONS:
    ok = cli_parse_int("serve", "--max-connections", arg, 1, 10000, &c->max_connections);
    break;
  case OPT_MAX_PER_CLIENT:
    ok = cli_parse_int("serve", "--max-per-client", arg, 0, 10000, &c->max_per_client);
    break;
  case OPT_TOKEN:
    a->token_path = arg;
    break;
  default:
    return -1;
  }
  return ok ? CLI_OK : CLI_USAGE;
}

/* The first line of the token file, without surrounding blanks; the file is untrusted. */
static int read_token(serve_args *a) {
  FILE *f = fopen(a->token_path, "rb");
  if (!f) return cli_error(a->token_path, "cannot open the token file");
  size_t n = fread(a->token, 1, sizeof a->token - 1, f);
  int more = fgetc(f) != EOF;
  fclose(f);
  a->token[n] = 0;
  char *line = a->token, *end = strchr(line, '\n');
  if (end)
    *end = 0;
  else if (more)
    return cli_error(a->token_path, "the token's line is over %d bytes", TOKEN_CAP - 2);
  while (isspace((unsigned char)*line)) line++;
  for (size_t len = strlen(line); len && isspace((unsigned char)line[len - 1]);) line[--len] = 0;
  for (const char *p = line; *p; p++)
    if (!isgraph((unsigned char)*p))
      return cli_error(a->token_path, "the token has a character that is not printable ASCII");
  if (!*line) return cli_error(a->token_path, "the token file's first line is empty");
  memmove(a->token, line, strlen(line) + 1);
  a->config.token = a->token;
  return CLI_OK;
}

/* "NAME=MODEL" or "MODEL": the name the routes use, checked, into name. */
static int model_name(const char *spec, const char **model, char *name, size_t cap) {
  const char *eq = strchr(spec, '='), *slash = strchr(spec, '/');
  size_t len;
  if (eq && (!slash || eq < slash)) {
    *model = eq + 1;
    len = (size_t)(eq - spec);
  } else {
    *model = spec;
    const char *base = strrchr(spec, '/');
    spec = base ? base + 1 : spec;
    const char *dot = strrchr(spec, '.');
    len = dot && dot != spec ? (size_t)(dot - spec) : strlen(spec);
  }
  if (len == 0 || len >= cap)
    return cli_usage("serve", "-m %s: a model name of 1 to %zu characters", spec, cap - 1);
  for (size_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)spec[i]) && !strchr("._-", spec[i]))
      return cli_usage("serve",
                       "-m %s: name the model with letters, digits, '.', '_', '-' "
                       "(NAME=MODEL)",
                       spec);
  memcpy(name, spec, len);
  name[len] = 0;
  return CLI_OK;
}

static void count_batch(void *model, int size) {
  const serve_model *m = model;
  serve_metrics_batch(m->metrics, m->index, size);
}

static int open_model(const serve_args *a, const char *spec, serve_model *m,
                      pthread_mutex_t *compute) {
  cli_model_args args = a->model;
  int rc = model_name(spec, &args.model, m->name, sizeof m->name);
  if (rc == CLI_OK) rc = cli_open_model("serve", &args, &m->model);
  if (rc == CLI_OK) rc = cli_load_labels(NULL, m->model, &m->labels);
  if (rc != CLI_OK) return rc;
  m->spec = cn_model_input_spec(m->model);
  cli_input_apply(&a->input, &m->spec);
  cn_shape out = cn_model_output_shape(m->model);
  m->in_numel = (size_t)m->spec.height * m->spec.width * m->spec.channels;
  m->classes = (size_t)cn_shape_numel(&out);
  if (cn_embedder_new(m->model, NULL, &m->embedder) == CN_OK)
    cn_embedder_set_input_spec(m->embedder, &m->spec);
  else
    m->embedder = NULL; /* no feature layer: /embed answers 404 */
  char layer[128];
  m->explainable = cn_model_last_spatial_layer(m->model, layer, sizeof layer) == CN_OK;
  if (serve_batcher_start(m->model, m->embedder, a->config.max_batch, a->config.max_wait_ms,
                          compute, count_batch, m, &m->batcher) != 0)
    return cli_error("serve", "cannot start the batcher of %s", m->name);
  if (serve_batcher_warm_up(m->batcher) != CN_OK)
    return cli_error("serve", "%s: %s", m->name, cn_last_error());
  return CLI_OK;
}

static void close_model(serve_model *m) {
  serve_batcher_stop(m->batcher);
  cn_embedder_free(m->embedder);
  cn_labels_free(m->labels);
  cn_model_free(m->model);
}

static int check_names(const serve_model *models, int n) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(models[i].name, models[j].name) == 0)
        return cli_usage("serve", "two models named %s: name them with -m NAME=MODEL",
                         models[i].name);
  return CLI_OK;
}

/* Serves until SIGTERM or SIGINT. The signals are blocked in every thread (set before any
 * starts) and taken here with sigwait. */
static int serve_until_signal(const serve_args *a, serve_model *models, int n,
                              serve_metrics *metrics, const sigset_t *stop, double load_s) {
  serve_server *server = NULL;
  int rc = serve_server_start(&a->config, models, n, metrics, &server);
  if (rc != CLI_OK) return rc;
  fprintf(stderr,
          "convnet serve: %d model%s loaded in %.0f ms (a first batch run); max batch %d, max wait "
          "%d ms\n",
          n, n > 1 ? "s" : "", load_s * 1000, a->config.max_batch, a->config.max_wait_ms);
  int ipv6 = strchr(a->config.host, ':') != NULL;
  printf("listening on http://%s%s%s:%d/\n", ipv6 ? "[" : "", a->config.host, ipv6 ? "]" : "",
         serve_server_port(server));
  fflush(stdout);
  int sig = 0;
  sigwait(stop, &sig);
  fprintf(stderr, "convnet serve: %s: finishing the requests in flight\n",
          sig == SIGINT ? "SIGINT" : "SIGTERM");
  serve_server_stop(server, GRACE_S);
  return CLI_OK;
}

static int serve(serve_args *a) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (a->token_path && read_token(a) != CLI_OK) return CLI_FAILED;
  if (a->n_specs == 0) a->specs[a->n_specs++] = "efficientnet_lite0";
  serve_model models[MAX_MODELS];
  memset(models, 0, sizeof models);
  serve_metrics *metrics = NULL;
  pthread_mutex_t compute = PTHREAD_MUTEX_INITIALIZER;
  double t0 = serve_now();
  int rc = CLI_OK, n = 0;
  for (; rc == CLI_OK && n < a->n_specs; n++) {
    models[n].index = n;
    rc = open_model(a, a->specs[n], &models[n], &compute);
  }
  if (rc == CLI_OK) rc = check_names(models, n);
  /* the batchers count into it only once requests come */
  if (rc == CLI_OK && !(metrics = serve_metrics_new(models, n)))
    rc = cli_error("serve", "out of memory");
  for (int i = 0; metrics && i < n; i++) models[i].metrics = metrics;
  if (rc == CLI_OK) rc = serve_until_signal(a, models, n, metrics, &stop, serve_now() - t0);
  for (int i = 0; i < n; i++) close_model(&models[i]);
  serve_metrics_free(metrics);
  return rc;
}

int cmd_serve(int argc, char **argv) {
  static const struct option options[] = {
      CLI_MODEL_LONG_OPTIONS,
      CLI_INPUT_LONG_OPTIONS,
      {"host", required_argument, NULL, OPT_HOST},
      {"port", required_argument, NULL, OPT_PORT},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"max-batch", required_argument, NULL, OPT_MAX_BATCH},
      {"max-wait-ms", required_argument, NULL, OPT_MAX_WAIT},
      {"max-body", required_argument, NULL, OPT_MAX_BODY},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
      {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
      {"max-per-client", required_argument, NULL, OPT_MAX_PER_CLIENT},
      {"token", required_argument, NULL, OPT_TOKEN},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  serve_args a = {.model = {.need_weights = 1},
                  .config = {.host = "127.0.0.1",
                             .port = 8080,
                             .max_batch = 8,
                             .max_wait_ms = 5,
                             .max_body = (size_t)10 << 20,
                             .timeout_s = 10,
                             .request_timeout_s = 30,
                             .max_connections = 64}};
  int opt;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (opt == 'h') {
      fputs(serve_help, stdout);
      return CLI_OK;
    }
    int rc = serve_option(&a, opt, optarg);
    if (rc < 0) return cli_bad_option("serve", opt, argv);
    if (rc != CLI_OK) return rc;
  }
  if (optind < argc) return cli_usage("serve", "unexpected operand '%s'", argv[optind]);
  if (cli_group) return cli_usage("serve", "runs as one process, not under mpirun");
  return serve(&a);
}
