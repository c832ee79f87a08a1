/* The HDF5 reader of the Keras loaders; see h5_guard.h for why the libhdf5 calls run in a child.
 *
 * Protocol over a socketpair (both ends the same machine and build, so native byte order):
 *   parent -> child: req_header, then the path and name bytes (no terminators).
 *   child -> parent: for OP_FLOATS any number of DATA frames, then one RESULT frame: status CN_OK
 *   and the op's payload, or an error status and its message. The child first sends one RESULT
 *   for opening the file.
 * Dataset values do not go through the socket: the child reads each slab straight into one half
 * of a shared window (MAP_SHARED, mapped before fork), a DATA frame gives the half and the size,
 * the parent copies it into the parameter and answers one ack byte. The child reads the next slab
 * into the other half meanwhile, and reuses a half only after its ack. So every value is copied
 * once more than in-process, and the two processes meet once per 8 MB.
 * The child is single-purpose: it runs only libhdf5 and the checks of h5.c (no OpenMP, no
 * BLAS, no stdio), ends with _exit, and dies with the parent. The parent trusts nothing it
 * receives: every frame length, count, status, shape and string is checked against the request
 * and the loader's limits before use. */
#include "io/keras/h5_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "core/error.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CN_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define CN_SANITIZED 1
#endif
#endif
#ifdef CN_SANITIZED
/* The sanitizer runtimes' allocator interface (gcc ships no header for it). */
size_t __sanitizer_get_allocated_size(const volatile void *p);
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
void __sanitizer_set_death_callback(void (*callback)(void));
#endif

enum {
  OP_OPEN,
  OP_EXISTS,
  OP_HAS_ATTR,
  OP_ATTR_STRINGS,
  OP_MEMBERS,
  OP_SHAPE,
  OP_FLOATS,
  OP_CLOSE,
  OP_END
};
enum { FRAME_RESULT = 0x48355253, FRAME_DATA = 0x48354441 };

/* Values per DATA frame: half the shared window (2 x 8 MB). */
#define SLAB_FLOATS ((size_t)2 << 20)
/* Largest RESULT payload: a list of strings of CN_KERAS_MAX_JSON bytes in all. */
#define MAX_REPLY (CN_KERAS_MAX_JSON + 4 * ((size_t)CN_KERAS_MAX_NAMES + 1))
#define MAX_MESSAGE 1023
#define SHAPE_PAYLOAD (4 + 8 * CN_MAX_RANK)
/* Headroom of address space the child may allocate beyond what it inherits: the file's size
 * plus CHILD_EXTRA_BYTES (libhdf5's metadata, chunk and conversion buffers; a dataset never
 * needs more than the file holds), at most CHILD_MAX_EXTRA_BYTES. A 22 KB file once made libhdf5
 * allocate and fill 1.7 GB. */
#define CHILD_EXTRA_BYTES ((rlim_t)256 << 20)
#define CHILD_MAX_EXTRA_BYTES ((rlim_t)4 << 30)

typedef struct req_header {
  uint32_t op, path_len, name_len, pad;
  int64_t numel;
} req_header;

typedef struct frame_header {
  uint32_t kind;
  int32_t status;
  uint64_t len;
} frame_header;

typedef struct h5req {
  int op;
  const char *path, *name;
  int64_t numel;
} h5req;

typedef struct h5reply {
  int flag;
  cn_strlist list;
  cn_shape shape;
} h5reply;

struct cn_h5src {
  char *file;       /* the name given to open, for messages */
  hid_t h5;         /* in-process: the open file; isolated: H5I_INVALID_HID */
  pid_t child;      /* isolated: the reader, 0 once reaped */
  int sock;         /* isolated: our end of the socketpair, -1 once closed */
  float *window;    /* isolated: 2 x SLAB_FLOATS values shared with the child */
  int nonfinite;    /* the values received since the last read_floats hold a NaN or infinity */
  double deadline;  /* CLOCK_MONOTONIC seconds after which the child is killed */
  int opened;       /* isolated: the reader has the file open (it expects OP_CLOSE) */
  cn_status broken; /* after a transport failure every call repeats it */
  char broken_msg[MAX_MESSAGE + 1];
};

/* Runs one request with libhdf5 in this process. OP_FLOATS reads into buf (cap values), handing
 * slabs to sink when the dataset is larger. */
static cn_status run_local(hid_t h5, const char *file, const h5req *rq, h5reply *rp, float *buf,
                           size_t cap, cn_h5_sink sink, void *ctx) {
  switch (rq->op) {
  case OP_EXISTS:
    return cn_h5_exists(h5, rq->path, file, &rp->flag);
  case OP_HAS_ATTR:
    return cn_h5_has_attr(h5, rq->path, rq->name, file, &rp->flag);
  case OP_ATTR_STRINGS:
    return cn_h5_attr_strings(h5, rq->path, rq->name, file, &rp->list);
  case OP_MEMBERS:
    return cn_h5_group_members(h5, rq->path, file, &rp->list);
  case OP_SHAPE:
    return cn_h5_dataset_shape(h5, rq->path, file, rq->name, &rp->shape);
  case OP_FLOATS:
    return cn_h5_read_floats(h5, rq->path, rq->name, rq->numel, buf, cap, sink, ctx);
  default:
    return cn_fail(CN_ERR_ARG, "%s: unknown HDF5 request", file);
  }
}

/* ---- the child ----------------------------------------------------------------------------- */

/* Writes all of buf or ends the child: a parent that stopped listening wants nothing more. */
static void child_send(int sock, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = send(sock, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) _exit(0);
    p += k;
    n -= (size_t)k;
  }
}

/* Reads exactly n bytes; 0 at end of stream (the parent closed the file). */
static int child_recv(int sock, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = recv(sock, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return 0;
    p += k;
    n -= (size_t)k;
  }
  return 1;
}

static void child_frame(int sock, uint32_t kind, cn_status st, const void *payload, size_t len) {
  frame_header h = {.kind = kind, .status = (int32_t)st, .len = len};
  child_send(sock, &h, sizeof h);
  if (len) child_send(sock, payload, len);
}

typedef struct child_window {
  int sock;
  float *half[2];
  int unacked; /* DATA frames the parent has not acknowledged yet (at most 2) */
} child_window;

static void child_wait_ack(child_window *w) {
  char ack;
  if (!child_recv(w->sock, &ack, 1)) _exit(0);
  w->unacked--;
}

/* values fill one half of the window: say which and how many, and continue in the other half
 * once the parent has taken what was there. */
static float *send_slab(void *ctx, float *values, size_t n) {
  child_window *w = ctx;
  int half = values == w->half[1];
  frame_header h = {.kind = FRAME_DATA, .status = half, .len = n * sizeof *values};
  child_send(w->sock, &h, sizeof h);
  if (++w->unacked == 2) child_wait_ack(w);
  return w->half[!half];
}

/* u32 count, then u32 length and bytes of each string. */
static void *encode_list(const cn_strlist *l, size_t *len) {
  size_t total = 4;
  for (int i = 0; i < l->n; i++) total += 4 + strlen(l->s[i]);
  char *buf = malloc(total), *p = buf;
  if (!buf) return NULL;
  uint32_t n = (uint32_t)l->n;
  memcpy(p, &n, 4);
  p += 4;
  for (int i = 0; i < l->n; i++) {
    uint32_t k = (uint32_t)strlen(l->s[i]);
    memcpy(p, &k, 4);
    memcpy(p + 4, l->s[i], k);
    p += 4 + k;
  }
  *len = total;
  return buf;
}

static void child_reply(int sock, int op, cn_status st, const h5reply *rp) {
  if (st != CN_OK) {
    const char *msg = cn_last_error();
    child_frame(sock, FRAME_RESULT, st, msg, strnlen(msg, MAX_MESSAGE));
    return;
  }
  if (op == OP_EXISTS || op == OP_HAS_ATTR) {
    int32_t flag = rp->flag;
    child_frame(sock, FRAME_RESULT, CN_OK, &flag, sizeof flag);
  } else if (op == OP_ATTR_STRINGS || op == OP_MEMBERS) {
    size_t len = 0;
    void *buf = encode_list(&rp->list, &len);
    if (!buf) _exit(3);
    child_frame(sock, FRAME_RESULT, CN_OK, buf, len);
    free(buf);
  } else if (op == OP_SHAPE) {
    char buf[SHAPE_PAYLOAD];
    int32_t rank = rp->shape.rank;
    memcpy(buf, &rank, 4);
    memcpy(buf + 4, rp->shape.dim, 8 * CN_MAX_RANK);
    child_frame(sock, FRAME_RESULT, CN_OK, buf, sizeof buf);
  } else {
    child_frame(sock, FRAME_RESULT, CN_OK, NULL, 0);
  }
}

/* Test hooks, read only here in the child: make the reader crash, hang or talk nonsense. */
static void child_test_fault(int sock) {
  const char *fault = getenv("CONVNET_H5_TEST_FAULT");
  if (!fault) return;
  if (strcmp(fault, "abort") == 0) abort();
  if (strcmp(fault, "hang") == 0)
    for (;;) pause();
  if (strcmp(fault, "garbage") == 0) {
    frame_header h = {.kind = FRAME_RESULT, .status = CN_OK, .len = (uint64_t)1 << 62};
    child_send(sock, &h, sizeof h);
  }
}

static rlim_t child_headroom(const char *file) {
  struct stat sb;
  rlim_t size = stat(file, &sb) == 0 && sb.st_size > 0 ? (rlim_t)sb.st_size : 0;
  rlim_t extra = size + CHILD_EXTRA_BYTES;
  return extra < CHILD_MAX_EXTRA_BYTES ? extra : CHILD_MAX_EXTRA_BYTES;
}

#ifdef CN_SANITIZED
/* Sanitizers reserve terabytes of address space, so RLIMIT_AS cannot bound the child there; the
 * allocator's hooks count the bytes libhdf5 holds instead, and the child ends when they pass the
 * same headroom (where an unsanitized child's malloc would fail). Without this a fuzzed file
 * makes libhdf5 allocate and zero gigabytes, and a sanitized test run swaps. */
static size_t child_live_bytes, child_max_live_bytes;

static void child_count_malloc(const volatile void *p, size_t size) {
  (void)p;
  child_live_bytes += size;
  if (child_live_bytes > child_max_live_bytes) _exit(5);
}

static void child_count_free(const volatile void *p) {
  size_t size = p ? __sanitizer_get_allocated_size(p) : 0;
  child_live_bytes -= size < child_live_bytes ? size : child_live_bytes;
}

static void child_bound_memory(const char *file) {
  static int hooked;
  if (!hooked)
    hooked = __sanitizer_install_malloc_and_free_hooks(child_count_malloc, child_count_free);
  child_max_live_bytes = child_live_bytes + (size_t)child_headroom(file);
}
#else
static void child_bound_memory(const char *file) {
  char statm[128] = {0};
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, statm, sizeof statm - 1);
  close(fd);
  rlim_t pages = n > 0 ? (rlim_t)strtoull(statm, NULL, 10) : 0;
  struct rlimit as = {0, 0};
  if (pages > 0 && getrlimit(RLIMIT_AS, &as) == 0) {
    rlim_t want = pages * (rlim_t)sysconf(_SC_PAGESIZE) + child_headroom(file);
    if (as.rlim_max == RLIM_INFINITY || want < as.rlim_max) as.rlim_cur = want;
    setrlimit(RLIMIT_AS, &as);
  }
}
#endif

/* No core dumps of a copy of the caller's memory, no file descriptors but the socket, and a bound
 * on the memory libhdf5 may allocate. */

static void child_confine(int sock, pid_t parent) {
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  if (getppid() != parent) _exit(0);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
#ifdef CN_SANITIZED
  /* A sanitizer report here ends the child only: the caller's death callback (libFuzzer's saves
   * its current input as a crash) is the caller's. */
  __sanitizer_set_death_callback(NULL);
#endif
#ifdef SYS_close_range
  if (sock > 3) syscall(SYS_close_range, 3u, (unsigned)sock - 1, 0u);
  syscall(SYS_close_range, (unsigned)sock + 1, ~0u, 0u);
#endif
}

/* Reads one request; 0 at the end of the session. Malformed requests end the child. */
static int child_request(int sock, h5req *rq, char *path, char *name) {
  req_header h;
  if (!child_recv(sock, &h, sizeof h)) return 0;
  if (h.op >= OP_END || h.path_len > CN_H5_MAX_PATH || h.name_len > CN_H5_MAX_PATH || h.numel < 0 ||
      h.numel > CN_KERAS_MAX_ELEMENTS)
    _exit(4);
  if (!child_recv(sock, path, h.path_len) || !child_recv(sock, name, h.name_len)) return 0;
  path[h.path_len] = 0;
  name[h.name_len] = 0;
  *rq = (h5req){.op = (int)h.op, .path = path, .name = name, .numel = h.numel};
  return 1;
}

/* Answers requests on one open file until OP_CLOSE (1) or the end of the session (0). */
static int child_serve_file(int sock, hid_t h5, const char *file, float *window) {
  child_window w = {.sock = sock, .half = {window, window + SLAB_FLOATS}};
  static char path[CN_H5_MAX_PATH + 1], name[CN_H5_MAX_PATH + 1];
  h5req rq;
  while (child_request(sock, &rq, path, name)) {
    if (rq.op == OP_OPEN) _exit(4);
    if (rq.op == OP_CLOSE) return 1;
    child_test_fault(sock);
    h5reply rp = {0};
    cn_status st = run_local(h5, file, &rq, &rp, w.half[0], SLAB_FLOATS, send_slab, &w);
    while (w.unacked > 0) child_wait_ack(&w);
    child_reply(sock, rq.op, st, &rp);
    cn_strlist_free(&rp.list);
  }
  return 0;
}

/* The reader: OP_OPEN names a file, requests on it follow, OP_CLOSE ends them; then the next
 * OP_OPEN (a kept reader, CONVNET_H5_KEEP_READER=1). Each file gets its own memory bound, and
 * libhdf5 is shut down between files so that nothing one file left behind meets the next. */
static _Noreturn void child_main(int sock, pid_t parent, float *window) {
  child_confine(sock, parent);
  static char file[CN_H5_MAX_PATH + 1], unused[CN_H5_MAX_PATH + 1];
  h5req rq;
  while (child_request(sock, &rq, file, unused)) {
    if (rq.op != OP_OPEN) _exit(4);
    child_bound_memory(file);
    hid_t h5;
    cn_status st = cn_h5_open(file, &h5);
    child_reply(sock, OP_OPEN, st, NULL);
    int more = st == CN_OK ? child_serve_file(sock, h5, file, window) : 1;
    if (st == CN_OK) H5Fclose(h5);
    H5close();
    if (!more) break;
    if (st == CN_OK) child_reply(sock, OP_CLOSE, CN_OK, NULL);
  }
  /* No exit(): nothing of the parent's (stdio buffers, atexit handlers) runs here. */
  _exit(0);
}

/* ---- the parent: transport ----------------------------------------------------------------- */

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Waits for the child's exit status for up to max_wait seconds, then kills it. */
static void reap_child(cn_h5src *src, double max_wait) {
  if (src->child <= 0) return;
  double until = now_seconds() + max_wait;
  for (;;) {
    int status;
    pid_t r = waitpid(src->child, &status, WNOHANG);
    if (r == src->child || (r < 0 && errno != EINTR)) break; /* ECHILD: reaped elsewhere */
    if (r == 0 && now_seconds() >= until) {
      kill(src->child, SIGKILL);
      while (waitpid(src->child, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    if (r == 0) usleep(1000);
  }
  src->child = 0;
}

enum { CHILD_GONE, CHILD_LATE, CHILD_BABBLING };

/* Ends the session after a crash (the socket closed), a hang or nonsense: every later call fails
 * the same way. */
static cn_status broken(cn_h5src *src, int why) {
  if (src->broken == CN_OK) {
    src->broken = CN_ERR_FORMAT;
    snprintf(src->broken_msg, sizeof src->broken_msg, "%s: damaged HDF5 file (the HDF5 library %s)",
             src->file,
             why == CHILD_LATE ? "did not finish reading it in time" : "failed reading it");
    if (src->sock >= 0) close(src->sock);
    src->sock = -1;
    /* a child that closed the socket is exiting; a hung or babbling one is killed now */
    reap_child(src, why == CHILD_GONE ? 2.0 : 0);
  }
  return cn_fail(src->broken, "%s", src->broken_msg);
}

/* 1 when the socket is ready, 0 at the deadline, -1 on error. */
static int wait_ready(cn_h5src *src, short events) {
  for (;;) {
    double left = src->deadline - now_seconds();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = src->sock, .events = events};
    int ms = left * 1000 > INT_MAX - 1 ? INT_MAX : (int)(left * 1000) + 1;
    int r = poll(&p, 1, ms);
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

static cn_status parent_send(cn_h5src *src, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    int ready = wait_ready(src, POLLOUT);
    if (ready <= 0) return broken(src, ready == 0 ? CHILD_LATE : CHILD_GONE);
    ssize_t k = send(src->sock, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return broken(src, CHILD_GONE);
    p += k;
    n -= (size_t)k;
  }
  return CN_OK;
}

static cn_status parent_recv(cn_h5src *src, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    int ready = wait_ready(src, POLLIN);
    if (ready <= 0) return broken(src, ready == 0 ? CHILD_LATE : CHILD_GONE);
    ssize_t k = recv(src->sock, p, n, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return broken(src, CHILD_GONE);
    p += k;
    n -= (size_t)k;
  }
  return CN_OK;
}

static cn_status send_request(cn_h5src *src, const h5req *rq) {
  size_t path_len = strlen(rq->path), name_len = rq->name ? strlen(rq->name) : 0;
  if (path_len > CN_H5_MAX_PATH || name_len > CN_H5_MAX_PATH)
    return cn_fail(CN_ERR_LIMIT, "%s: object name too long", src->file);
  req_header h = {.op = (uint32_t)rq->op,
                  .path_len = (uint32_t)path_len,
                  .name_len = (uint32_t)name_len,
                  .numel = rq->numel};
  cn_status st = parent_send(src, &h, sizeof h);
  if (st == CN_OK) st = parent_send(src, rq->path, path_len);
  if (st == CN_OK && name_len) st = parent_send(src, rq->name, name_len);
  return st;
}

/* ---- the parent: checking replies ---------------------------------------------------------- */

static cn_status decode_list(cn_h5src *src, const char *p, size_t len, cn_strlist *out) {
  uint32_t n, k;
  if (len < 4) return broken(src, CHILD_BABBLING);
  memcpy(&n, p, 4);
  size_t at = 4;
  if (n > CN_KERAS_MAX_NAMES) return broken(src, CHILD_BABBLING);
  for (uint32_t i = 0; i < n; i++) {
    if (len - at < 4) return broken(src, CHILD_BABBLING);
    memcpy(&k, p + at, 4);
    at += 4;
    if (k > len - at) return broken(src, CHILD_BABBLING);
    cn_status st = cn_strlist_push(out, p + at, k);
    if (st != CN_OK) return st;
    at += k;
  }
  return at == len ? CN_OK : broken(src, CHILD_BABBLING);
}

static cn_status decode_shape(cn_h5src *src, const char *p, size_t len, cn_shape *shape) {
  int32_t rank;
  if (len != SHAPE_PAYLOAD) return broken(src, CHILD_BABBLING);
  memcpy(&rank, p, 4);
  if (rank < 0 || rank > CN_MAX_RANK) return broken(src, CHILD_BABBLING);
  shape->rank = rank;
  memcpy(shape->dim, p + 4, 8 * CN_MAX_RANK);
  int64_t numel = 1;
  for (int i = 0; i < rank; i++) {
    if (shape->dim[i] < 0 || shape->dim[i] > CN_KERAS_MAX_ELEMENTS)
      return broken(src, CHILD_BABBLING);
    numel = numel > CN_KERAS_MAX_ELEMENTS ? numel * (shape->dim[i] != 0) : numel * shape->dim[i];
  }
  return numel <= CN_KERAS_MAX_ELEMENTS ? CN_OK : broken(src, CHILD_BABBLING);
}

static cn_status decode_payload(cn_h5src *src, int op, const char *p, size_t len, h5reply *rp) {
  int32_t flag;
  switch (op) {
  case OP_EXISTS:
  case OP_HAS_ATTR:
    if (len != 4) return broken(src, CHILD_BABBLING);
    memcpy(&flag, p, 4);
    if (flag != 0 && flag != 1) return broken(src, CHILD_BABBLING);
    rp->flag = flag;
    return CN_OK;
  case OP_ATTR_STRINGS:
  case OP_MEMBERS:
    return decode_list(src, p, len, &rp->list);
  case OP_SHAPE:
    return decode_shape(src, p, len, &rp->shape);
  default:
    return len == 0 ? CN_OK : broken(src, CHILD_BABBLING);
  }
}

/* The child's error, as one line whatever the file's names contain. */
static cn_status relay_error(cn_h5src *src, int32_t status, size_t len) {
  char msg[MAX_MESSAGE + 1];
  if (status <= CN_OK || status >= CN_STATUS_COUNT || len > MAX_MESSAGE)
    return broken(src, CHILD_BABBLING);
  cn_status st = parent_recv(src, msg, len);
  if (st != CN_OK) return st;
  msg[len] = 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f) msg[i] = ' ';
  return cn_fail((cn_status)status, "%s", msg);
}

static cn_status receive_result(cn_h5src *src, int op, const frame_header *h, h5reply *rp) {
  if (h->status != CN_OK) return relay_error(src, h->status, h->len);
  if (h->len > MAX_REPLY) return broken(src, CHILD_BABBLING);
  char *payload = malloc(h->len ? h->len : 1);
  if (!payload) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = parent_recv(src, payload, h->len);
  if (st == CN_OK) st = decode_payload(src, op, payload, h->len, rp);
  free(payload);
  return st;
}

/* NaN and infinity have all exponent bits set; an OR over the slab just copied is cheap. */
static int all_finite(const float *v, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    memcpy(&bits, &v[i], 4);
    bad |= (bits & 0x7f800000u) == 0x7f800000u;
  }
  return !bad;
}

/* Frames until the RESULT; DATA frames fill dst from the window, exactly rq->numel values in all.
 */
static cn_status receive_reply(cn_h5src *src, const h5req *rq, h5reply *rp, float *dst) {
  int64_t got = 0;
  for (;;) {
    frame_header h;
    cn_status st = parent_recv(src, &h, sizeof h);
    if (st != CN_OK) return st;
    if (h.kind == FRAME_RESULT) {
      if (h.status == CN_OK && rq->op == OP_FLOATS && got != rq->numel)
        return broken(src, CHILD_BABBLING);
      return receive_result(src, rq->op, &h, rp);
    }
    uint64_t n = h.len / sizeof(float);
    if (h.kind != FRAME_DATA || rq->op != OP_FLOATS || h.len % sizeof(float) != 0 ||
        n > SLAB_FLOATS || n > (uint64_t)(rq->numel - got) || (h.status != 0 && h.status != 1))
      return broken(src, CHILD_BABBLING);
    memcpy(dst + got, src->window + (size_t)h.status * SLAB_FLOATS, h.len);
    if (!all_finite(dst + got, n)) src->nonfinite = 1;
    got += (int64_t)n;
    st = parent_send(src, "", 1);
    if (st != CN_OK) return st;
  }
}

static cn_status call(cn_h5src *src, const h5req *rq, h5reply *rp, float *dst) {
  memset(rp, 0, sizeof *rp);
  if (src->h5 >= 0)
    return run_local(src->h5, src->file, rq, rp, dst, (size_t)rq->numel, NULL, NULL);
  if (src->broken != CN_OK) return cn_fail(src->broken, "%s", src->broken_msg);
  cn_status st = send_request(src, rq);
  if (st == CN_OK) st = receive_reply(src, rq, rp, dst);
  if (st != CN_OK) cn_strlist_free(&rp->list);
  return st;
}

/* ---- opening and closing ------------------------------------------------------------------- */

/* 120 s plus 1 s per 16 MB of file, or CONVNET_H5_TIMEOUT seconds. */
static double timeout_for(const char *path) {
  const char *env = getenv("CONVNET_H5_TIMEOUT");
  if (env) {
    char *end;
    double t = strtod(env, &end);
    if (end != env && t > 0 && t <= 1e6) return t;
  }
  struct stat st;
  double size = stat(path, &st) == 0 ? (double)st.st_size : 0;
  return 120 + size / (16 << 20);
}

/* Keeps the whole pages of [spare, spare + bytes) out of (advice MADV_DONTFORK) or back in
 * (MADV_DOFORK) the next fork. */
static void advise_fork(void *spare, size_t bytes, int advice) {
#if defined(MADV_DONTFORK) && defined(MADV_DOFORK)
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t lo = ((uintptr_t)spare + page - 1) / page * page;
  uintptr_t hi = ((uintptr_t)spare + bytes) / page * page;
  if (spare && bytes >= ((size_t)1 << 20) && hi > lo) madvise((void *)lo, hi - lo, advice);
#else
  (void)spare, (void)bytes, (void)advice;
#endif
}

static cn_status spawn_reader(cn_h5src *src, void *spare, size_t spare_bytes) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return cn_fail(CN_ERR_IO, "%s: cannot start the HDF5 reader: %s", src->file, strerror(errno));
  src->window = mmap(NULL, 2 * SLAB_FLOATS * sizeof(float), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (src->window == MAP_FAILED) {
    src->window = NULL;
    close(sv[0]);
    close(sv[1]);
    return cn_fail(CN_ERR_NOMEM, "%s: cannot map the HDF5 reader's window", src->file);
  }
  pid_t parent = getpid();
  /* The parent is about to overwrite spare while the child runs: pages shared with the child
   * would each be copied on write (time, and twice the memory). The child never touches it. */
  advise_fork(spare, spare_bytes, MADV_DONTFORK);
  pid_t pid = fork();
  if (pid == 0) {
    close(sv[0]);
    child_main(sv[1], parent, src->window);
  }
  advise_fork(spare, spare_bytes, MADV_DOFORK);
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    return cn_fail(CN_ERR_IO, "%s: cannot start the HDF5 reader: %s", src->file, strerror(errno));
  }
  src->child = pid;
  src->sock = sv[0];
  return CN_OK;
}

/* Asks the reader to open src->file; the whole load's deadline starts here. */
static cn_status open_in_reader(cn_h5src *src) {
  src->deadline = now_seconds() + timeout_for(src->file);
  h5req rq = {.op = OP_OPEN, .path = src->file};
  h5reply rp;
  cn_status st = call(src, &rq, &rp, NULL);
  src->opened = st == CN_OK;
  return st;
}

/* Ends src's reader, if it has one, and forgets any transport failure. */
static void drop_reader(cn_h5src *src) {
  if (src->sock >= 0) close(src->sock);
  src->sock = -1;
  /* The child exits at end of stream; it has nothing left to say, so do not wait for it. */
  if (src->child > 0) kill(src->child, SIGKILL);
  reap_child(src, 1.0);
  if (src->window) munmap(src->window, 2 * SLAB_FLOATS * sizeof(float));
  src->window = NULL;
  src->opened = 0;
  src->broken = CN_OK;
}

/* ---- the kept reader (CONVNET_H5_KEEP_READER=1) -------------------------------------------- */

/* One reader serves successive loads instead of a fork each: for processes that load many files,
 * fuzzing first of all, where the fork of a large sanitized process costs more than reading. */
typedef struct reader {
  pid_t child; /* 0: none kept */
  int sock;
  float *window;
} reader;

static reader kept_reader;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static int keep_reader(void) {
  const char *env = getenv("CONVNET_H5_KEEP_READER");
  return env && strcmp(env, "1") == 0;
}

/* Moves the kept reader into src; 0 when there is none. */
static int take_kept_reader(cn_h5src *src) {
  pthread_mutex_lock(&kept_lock);
  reader r = kept_reader;
  kept_reader.child = 0;
  pthread_mutex_unlock(&kept_lock);
  if (r.child <= 0) return 0;
  src->child = r.child;
  src->sock = r.sock;
  src->window = r.window;
  return 1;
}

/* Moves src's reader into the kept slot when that is free. */
static void keep_src_reader(cn_h5src *src) {
  pthread_mutex_lock(&kept_lock);
  int free_slot = kept_reader.child <= 0;
  if (free_slot) kept_reader = (reader){src->child, src->sock, src->window};
  pthread_mutex_unlock(&kept_lock);
  if (free_slot) {
    src->child = 0;
    src->sock = -1;
    src->window = NULL;
  }
}

/* Asks the reader to close the file, so that it can take the next one. Leaves the caller's
 * error message as it was. */
static int reader_done(cn_h5src *src) {
  if (!src->opened) return 1;
  char saved[MAX_MESSAGE + 1];
  snprintf(saved, sizeof saved, "%s", cn_last_error());
  h5reply rp;
  int ok = call(src, &(h5req){.op = OP_CLOSE, .path = ""}, &rp, NULL) == CN_OK;
  if (saved[0])
    cn_fail(CN_ERR_FORMAT, "%s", saved);
  else
    cn_clear_error();
  return ok;
}

static cn_status start_reader(cn_h5src *src, void *spare, size_t spare_bytes) {
  if (keep_reader() && take_kept_reader(src)) {
    cn_status st = open_in_reader(src);
    if (src->broken == CN_OK) return st; /* an answer, whether the file opened or not */
    drop_reader(src); /* it had died (with the thread that started it, say): start afresh */
  }
  cn_status st = spawn_reader(src, spare, spare_bytes);
  return st == CN_OK ? open_in_reader(src) : st;
}

static cn_status new_src(const char *path, cn_h5src **out) {
  *out = NULL;
  if (!path) return cn_fail(CN_ERR_ARG, "NULL path");
  cn_h5src *src = calloc(1, sizeof *src);
  char *file = strdup(path);
  if (!src || !file) {
    free(src);
    free(file);
    return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  src->file = file;
  src->h5 = H5I_INVALID_HID;
  src->sock = -1;
  *out = src;
  return CN_OK;
}

cn_status cn_h5src_open_inprocess(const char *path, cn_h5src **out) {
  cn_status st = new_src(path, out);
  if (st == CN_OK) st = cn_h5_open(path, &(*out)->h5);
  if (st != CN_OK) {
    cn_h5src_close(*out);
    *out = NULL;
  }
  return st;
}

cn_status cn_h5src_open(const char *path, void *spare, size_t spare_bytes, cn_h5src **out) {
  const char *inprocess = getenv("CONVNET_H5_INPROCESS");
  if (inprocess && strcmp(inprocess, "1") == 0) return cn_h5src_open_inprocess(path, out);
  cn_status st = new_src(path, out);
  if (st == CN_OK) st = start_reader(*out, spare, spare_bytes);
  if (st != CN_OK) {
    cn_h5src_close(*out);
    *out = NULL;
  }
  return st;
}

void cn_h5src_close(cn_h5src *src) {
  if (!src) return;
  if (src->h5 >= 0) H5Fclose(src->h5);
  if (keep_reader() && src->child > 0 && src->broken == CN_OK && reader_done(src))
    keep_src_reader(src);
  drop_reader(src);
  free(src->file);
  free(src);
}

const char *cn_h5src_file(const cn_h5src *src) {
  return src->file;
}

/* ---- requests ------------------------------------------------------------------------------ */

cn_status cn_h5src_exists(cn_h5src *src, const char *path, int *exists) {
  h5reply rp;
  cn_status st = call(src, &(h5req){.op = OP_EXISTS, .path = path}, &rp, NULL);
  *exists = st == CN_OK && rp.flag;
  return st;
}

cn_status cn_h5src_has_attr(cn_h5src *src, const char *path, const char *name, int *has) {
  h5reply rp;
  cn_status st = call(src, &(h5req){.op = OP_HAS_ATTR, .path = path, .name = name}, &rp, NULL);
  *has = st == CN_OK && rp.flag;
  return st;
}

static cn_status attr_strings(cn_h5src *src, const char *path, const char *name, cn_strlist *out) {
  h5reply rp;
  cn_status st = call(src, &(h5req){.op = OP_ATTR_STRINGS, .path = path, .name = name}, &rp, NULL);
  *out = rp.list;
  return st;
}

cn_status cn_h5src_string_attr(cn_h5src *src, const char *path, const char *name, char **out) {
  *out = NULL;
  cn_strlist l;
  cn_status st = attr_strings(src, path, name, &l);
  if (st == CN_OK && l.n > 1)
    st = cn_fail(CN_ERR_FORMAT, "%s: attribute %s is not one string", src->file, name);
  if (st == CN_OK && l.n == 1) {
    *out = l.s[0];
    l.s[0] = NULL;
  }
  cn_strlist_free(&l);
  return st;
}

cn_status cn_h5src_names_attr(cn_h5src *src, const char *path, const char *name, cn_strlist *out) {
  cn_status st = attr_strings(src, path, name, out);
  if (st != CN_OK || out->n > 0) return st;
  /* absent or empty: look for chunks (Keras never writes an empty one) */
  char chunk[300];
  for (int i = 0; st == CN_OK; i++) {
    snprintf(chunk, sizeof chunk, "%.280s%d", name, i);
    cn_strlist part;
    st = attr_strings(src, path, chunk, &part);
    if (st == CN_OK && part.n == 0) {
      cn_strlist_free(&part);
      break;
    }
    for (int k = 0; st == CN_OK && k < part.n; k++)
      st = cn_strlist_push(out, part.s[k], strlen(part.s[k]));
    cn_strlist_free(&part);
  }
  if (st != CN_OK) cn_strlist_free(out);
  return st;
}

cn_status cn_h5src_group_members(cn_h5src *src, const char *path, cn_strlist *out) {
  h5reply rp;
  cn_status st = call(src, &(h5req){.op = OP_MEMBERS, .path = path}, &rp, NULL);
  *out = rp.list;
  return st;
}

cn_status cn_h5src_dataset_shape(cn_h5src *src, const char *path, const char *what,
                                 cn_shape *shape) {
  h5reply rp;
  cn_status st = call(src, &(h5req){.op = OP_SHAPE, .path = path, .name = what}, &rp, NULL);
  if (st == CN_OK) *shape = rp.shape;
  return st;
}

cn_status cn_h5src_read_floats(cn_h5src *src, const char *path, const char *what, int64_t numel,
                               float *dst) {
  if (numel < 0 || numel > CN_KERAS_MAX_ELEMENTS)
    return cn_fail(CN_ERR_LIMIT, "%s: too many values", what);
  h5reply rp;
  h5req rq = {.op = OP_FLOATS, .path = path, .name = what, .numel = numel};
  src->nonfinite = 0;
  cn_status st = call(src, &rq, &rp, dst);
  /* isolated reads checked each slab as it arrived; look again only to say what was found */
  int check = src->h5 >= 0 || src->nonfinite;
  for (int64_t i = 0; st == CN_OK && check && i < numel; i++) {
    if (isnan(dst[i])) return cn_fail(CN_ERR_FORMAT, "%s: contains NaN", what);
    if (isinf(dst[i])) return cn_fail(CN_ERR_FORMAT, "%s: contains infinity", what);
  }
  return st;
}
