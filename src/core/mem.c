#include "core/mem.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void *cn_alloc_aligned(size_t n) {
  if (n == 0) return NULL;
  size_t rounded = (n + CN_ALIGN - 1) / CN_ALIGN * CN_ALIGN;
  if (rounded < n) return NULL;
  return aligned_alloc(CN_ALIGN, rounded);
}

void cn_free_aligned(void *p) { free(p); }

int cn_mul_size(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

char *cn_strdup(const char *s) {
  char *copy = strdup(s ? s : "");
  if (!copy) cn_fail(CN_ERR_NOMEM, "out of memory copying a string");
  return copy;
}
