#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"

enum { FIRST_CHUNK = 1 << 16 };

static cn_status too_large(const char *path, size_t max_bytes, const char *what) {
  return cn_fail(CN_ERR_LIMIT, "%s: more than %zu bytes is too large for %s", path, max_bytes,
                 what);
}

/* Reads f to its end into a buffer of `hint` bytes (a regular file's size plus one, so its end
 * is seen without growing) that doubles as more data arrives (streams have no size). */
static cn_status read_stream(FILE *f, const char *path, size_t max_bytes, const char *what,
                             size_t hint, uint8_t **data, size_t *size) {
  size_t cap = hint, n = 0;
  uint8_t *buf = hint ? malloc(hint) : NULL;
  if (hint && !buf) return cn_fail(CN_ERR_NOMEM, "%s: no memory for %zu bytes", path, hint);
  for (;;) {
    if (n == cap) {
      if (cap > max_bytes) {
        free(buf);
        return too_large(path, max_bytes, what);
      }
      size_t grown = cap ? cap * 2 : FIRST_CHUNK;
      if (grown > max_bytes + 1) grown = max_bytes + 1;
      uint8_t *more = realloc(buf, grown);
      if (!more) {
        free(buf);
        return cn_fail(CN_ERR_NOMEM, "%s: no memory for %zu bytes", path, grown);
      }
      buf = more, cap = grown;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    free(buf);
    return cn_fail(CN_ERR_IO, "%s: %s", path, strerror(errno));
  }
  if (n > max_bytes) {
    free(buf);
    return too_large(path, max_bytes, what);
  }
  *data = buf;
  *size = n;
  return CN_OK;
}

cn_status cn_file_read_all(const char *path, size_t max_bytes, const char *what, uint8_t **data,
                           size_t *size) {
  *data = NULL;
  *size = 0;
  if (strcmp(path, "-") == 0) return read_stream(stdin, "-", max_bytes, what, 0, data, size);
  FILE *f = fopen(path, "rb");
  if (!f) return cn_fail(CN_ERR_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  cn_status st;
  if (fstat(fileno(f), &sb) != 0)
    st = cn_fail(CN_ERR_IO, "%s: %s", path, strerror(errno));
  else if (S_ISDIR(sb.st_mode))
    st = cn_fail(CN_ERR_IO, "%s: is a folder, not %s", path, what);
  else if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > max_bytes)
    st = too_large(path, max_bytes, what);
  else
    st = read_stream(f, path, max_bytes, what, S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 0,
                     data, size);
  fclose(f);
  return st;
}
