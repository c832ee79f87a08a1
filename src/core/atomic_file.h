/* Files written so that a reader sees either the old file or the complete new one, never a torn
 * one: the bytes go to a temporary file in the same directory (so rename is atomic), which is
 * fsynced and renamed over the destination on commit, and removed on any failure. */
#ifndef CN_CORE_ATOMIC_FILE_H
#define CN_CORE_ATOMIC_FILE_H

#include <stddef.h>

#include "convnet/core.h"

typedef struct cn_atomic_file {
  int fd;
  char *tmp;        /* the temporary file's path */
  const char *path; /* the destination, borrowed */
} cn_atomic_file;

/* Creates the temporary file beside path (mode 0644). */
cn_status cn_atomic_open(cn_atomic_file *f, const char *path);
/* Writes all n bytes (retrying short writes). */
cn_status cn_atomic_write(cn_atomic_file *f, const void *buf, size_t n);
/* fsync, close and rename over the destination; on failure the temporary file is removed. Either
 * way f is closed afterwards. */
cn_status cn_atomic_commit(cn_atomic_file *f);
/* Closes and removes the temporary file (after a failure); safe on a closed f. */
void cn_atomic_abort(cn_atomic_file *f);

/* mkdir -p: creates dir and its missing parents; fails naming the part that cannot be made. */
cn_status cn_make_dirs(const char *dir);

#endif
