/* The request deadline: a client gets --request-timeout seconds to send a whole request, headers
 * and body, counted from the connection's start or from its previous answer. libmicrohttpd's own
 * timeout only closes a connection idle that long, so a client sending a byte every few seconds
 * would keep its thread for ever. A watcher thread answers such a client 408 and shuts its socket
 * down (shutdown, not close: the connection's own thread then sees the end of the stream and
 * closes it itself). While a request arrives libmicrohttpd writes nothing on the socket (its
 * answer comes once the request is whole, in the WORKING phase), so the 408 is alone on it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "serve.h"

struct serve_conn {
  int fd;
  serve_conn_phase phase;
  double since; /* when the current request began to arrive */
  int shut;
  serve_conn *prev, *next;
};

struct serve_watch {
  double deadline_s;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  serve_conn *head;
  int stopping;
  pthread_t thread;
  char late[256]; /* the 408 answer */
  size_t late_len;
};

static const double WATCH_PERIOD_S = 0.25;

static const char LATE_BODY[] =
    "{\"error\":\"the request did not arrive within --request-timeout\"}\n";

/* The 408 answer, headers and body, into w->late. */
static void make_late_answer(serve_watch *w) {
  int n = snprintf(w->late, sizeof w->late,
                   "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   sizeof LATE_BODY - 1, LATE_BODY);
  w->late_len = n > 0 && (size_t)n < sizeof w->late ? (size_t)n : 0;
}

static void shut_late(serve_watch *w, double now) {
  for (serve_conn *c = w->head; c; c = c->next)
    if (c->phase != SERVE_CONN_WORKING && !c->shut && now - c->since > w->deadline_s) {
      /* never blocks: a client that does not read gets what fits in its socket's buffer */
      ssize_t sent = send(c->fd, w->late, w->late_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)sent;
      shutdown(c->fd, SHUT_RDWR);
      c->shut = 1;
    }
}

static void *watch_main(void *arg) {
  serve_watch *w = arg;
  pthread_mutex_lock(&w->mu);
  while (!w->stopping) {
    serve_cond_wait_until(&w->wake, &w->mu, serve_now() + WATCH_PERIOD_S);
    shut_late(w, serve_now());
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

serve_watch *serve_watch_start(double deadline_s) {
  serve_watch *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->deadline_s = deadline_s;
  make_late_answer(w);
  if (pthread_mutex_init(&w->mu, NULL) != 0 || serve_cond_init(&w->wake) != 0 ||
      pthread_create(&w->thread, NULL, watch_main, w) != 0)
    return free(w), NULL;
  return w;
}

serve_conn *serve_watch_add(serve_watch *w, int fd) {
  serve_conn *c = calloc(1, sizeof *c);
  if (!c) return NULL; /* unwatched: the idle timeout still applies */
  c->fd = fd;
  c->since = serve_now();
  pthread_mutex_lock(&w->mu);
  c->next = w->head;
  if (w->head) w->head->prev = c;
  w->head = c;
  pthread_mutex_unlock(&w->mu);
  return c;
}

void serve_watch_phase(serve_watch *w, serve_conn *c, serve_conn_phase phase) {
  if (!c) return;
  pthread_mutex_lock(&w->mu);
  if (phase == SERVE_CONN_WAITING) c->since = serve_now();
  c->phase = phase;
  pthread_mutex_unlock(&w->mu);
}

void serve_watch_remove(serve_watch *w, serve_conn *c) {
  if (!c) return;
  pthread_mutex_lock(&w->mu);
  if (c->prev)
    c->prev->next = c->next;
  else
    w->head = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&w->mu);
  free(c);
}

void serve_watch_stop(serve_watch *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  while (w->head) serve_watch_remove(w, w->head);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->wake);
  free(w);
}
