#include "core/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

cn_status cn_atomic_open(cn_atomic_file *f, const char *path) {
  *f = (cn_atomic_file){.fd = -1, .path = path};
  if (!path || !*path) return cn_fail(CN_ERR_ARG, "no output path given");
  size_t cap = strlen(path) + 16;
  f->tmp = malloc(cap);
  if (!f->tmp) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  snprintf(f->tmp, cap, "%s.tmpXXXXXX", path);
  f->fd = mkstemp(f->tmp);
  if (f->fd < 0) {
    cn_status st =
        cn_fail(CN_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(f->tmp);
    f->tmp = NULL;
    return st;
  }
  fchmod(f->fd, 0644);
  return CN_OK;
}

cn_status cn_atomic_write(cn_atomic_file *f, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t w = write(f->fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return cn_fail(CN_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return CN_OK;
}

void cn_atomic_abort(cn_atomic_file *f) {
  if (f->fd >= 0) close(f->fd);
  if (f->tmp) unlink(f->tmp);
  free(f->tmp);
  f->fd = -1;
  f->tmp = NULL;
}

/* Makes the rename itself durable. Best effort: some file systems refuse fsync on directories. */
static void sync_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) : 1;
  char *dir = malloc(n + 2);
  if (!dir) return;
  memcpy(dir, slash ? path : ".", n);
  dir[n] = '\0';
  if (n == 0) dir[0] = '/', dir[1] = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

cn_status cn_atomic_commit(cn_atomic_file *f) {
  cn_status st = CN_OK;
  if (fsync(f->fd) != 0) st = cn_fail(CN_ERR_IO, "%s: fsync: %s", f->path, strerror(errno));
  int rc = close(f->fd);
  f->fd = -1;
  if (rc != 0 && st == CN_OK) st = cn_fail(CN_ERR_IO, "%s: close: %s", f->path, strerror(errno));
  if (st == CN_OK && rename(f->tmp, f->path) != 0)
    st = cn_fail(CN_ERR_IO, "%s: rename: %s", f->path, strerror(errno));
  if (st != CN_OK) unlink(f->tmp);
  if (st == CN_OK) sync_parent(f->path);
  free(f->tmp);
  f->tmp = NULL;
  return st;
}

cn_status cn_make_dirs(const char *dir) {
  size_t n = strlen(dir);
  char *path = malloc(n + 1);
  if (!path) return cn_fail(CN_ERR_NOMEM, "out of memory");
  memcpy(path, dir, n + 1);
  cn_status st = CN_OK;
  for (char *p = path + 1; st == CN_OK; p++) {
    if (*p != '/' && *p != '\0') continue;
    char saved = *p;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      st = cn_fail(CN_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    *p = saved;
    if (!saved) break;
  }
  free(path);
  struct stat sb;
  if (st == CN_OK && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
    st = cn_fail(CN_ERR_IO, "%s: not a directory", dir);
  return st;
}
