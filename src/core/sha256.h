/* SHA-256 as 64 lower-case hex digits (libcrypto), for checksums and fingerprints. */
#ifndef CN_CORE_SHA256_H
#define CN_CORE_SHA256_H

#include <stddef.h>

#include "convnet/core.h"

#define CN_SHA256_HEX 65 /* 64 digits and the terminating NUL */

typedef struct cn_sha256 {
  void *ctx; /* EVP_MD_CTX; NULL after a failure */
} cn_sha256;

cn_status cn_sha256_begin(cn_sha256 *h);
void cn_sha256_add(cn_sha256 *h, const void *data, size_t n);
/* Adds s with its terminating NUL, so that consecutive strings cannot run together. */
void cn_sha256_add_str(cn_sha256 *h, const char *s);
/* Finishes (and frees) the digest; fails when any step failed. */
cn_status cn_sha256_hex(cn_sha256 *h, char hex[CN_SHA256_HEX]);
/* The digest of one buffer. */
cn_status cn_sha256_of(const void *data, size_t n, char hex[CN_SHA256_HEX]);

#endif
