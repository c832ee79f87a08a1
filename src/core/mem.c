#include "core/mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/error.h"

/* Buffers of at least HUGE_MIN bytes (weights, their packed forms, the activations' arena) are
 * placed on 2 MB boundaries in whole 2 MB pages and offered to the kernel as transparent huge
 * pages (Debian's default, "madvise", gives them only where asked): a forward pass streams
 * hundreds of MB through them, and with 4 KB pages every 4 KB of weights read cost a TLB miss. */
enum { HUGE_PAGE = 2 << 20, HUGE_MIN = 4 << 20 };

static size_t round_up(size_t n, size_t to) {
  size_t rounded = (n + to - 1) / to * to;
  return rounded < n ? 0 : rounded;
}

void *cn_alloc_aligned(size_t n) {
  if (n == 0) return NULL;
  size_t align = n >= HUGE_MIN ? HUGE_PAGE : CN_ALIGN, rounded = round_up(n, align);
  if (!rounded) return NULL;
  void *p = aligned_alloc(align, rounded);
#ifdef MADV_HUGEPAGE
  if (p && align == HUGE_PAGE) madvise(p, rounded, MADV_HUGEPAGE); /* advice: failure is harmless */
#endif
  return p;
}

void cn_free_aligned(void *p) {
  free(p);
}

int cn_mul_size(size_t a, size_t b, size_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

char *cn_strdup(const char *s) {
  char *copy = strdup(s ? s : "");
  if (!copy) cn_fail(CN_ERR_NOMEM, "out of memory copying a string");
  return copy;
}
