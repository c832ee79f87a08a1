/* Internal allocation helpers: overflow-checked sizes and aligned buffers. */
#ifndef CN_CORE_MEM_H
#define CN_CORE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "convnet/core.h"

/* Alignment of every float buffer convnet allocates (one cache line, enough for AVX-512). */
#define CN_ALIGN 64

/* Aligned allocation of n bytes; NULL on failure or n == 0. Free with cn_free_aligned. */
void *cn_alloc_aligned(size_t n);
void cn_free_aligned(void *p);
/* a * b into *out; returns 0 on overflow. */
int cn_mul_size(size_t a, size_t b, size_t *out);
/* strdup that reports CN_ERR_NOMEM through cn_fail on failure. */
char *cn_strdup(const char *s);

#endif
