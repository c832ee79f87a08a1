/* SHA-256 through libcrypto's EVP interface. */
#include "core/sha256.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

cn_status cn_sha256_begin(cn_sha256 *h) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
    EVP_MD_CTX_free(ctx);
    h->ctx = NULL;
    return cn_fail(CN_ERR_NOMEM, "cannot start a SHA-256 digest");
  }
  h->ctx = ctx;
  return CN_OK;
}

void cn_sha256_add(cn_sha256 *h, const void *data, size_t n) {
  if (h->ctx && !EVP_DigestUpdate(h->ctx, data, n)) {
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
  }
}

void cn_sha256_add_str(cn_sha256 *h, const char *s) {
  cn_sha256_add(h, s, strlen(s) + 1);
}

cn_status cn_sha256_hex(cn_sha256 *h, char hex[CN_SHA256_HEX]) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  int ok = h->ctx && EVP_DigestFinal_ex(h->ctx, d, &len) && len == 32;
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
  hex[0] = '\0';
  if (!ok) return cn_fail(CN_ERR_NOMEM, "SHA-256 failed");
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  return CN_OK;
}

cn_status cn_sha256_of(const void *data, size_t n, char hex[CN_SHA256_HEX]) {
  cn_sha256 h;
  cn_status st = cn_sha256_begin(&h);
  if (st != CN_OK) return st;
  cn_sha256_add(&h, data, n);
  return cn_sha256_hex(&h, hex);
}
