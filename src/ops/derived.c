/* Weights an op derives from a node's kernel (a Winograd transform, a bf16 packing), kept in
 * node->cache between runs. Weights can change in place under a live graph (training), so the
 * cache also keeps a fingerprint of the values it was derived from and redoes the derivation
 * when they change; a model's graphs, whose every write bumps weights_version
 * (ex->versioned_weights), compare the version instead: fingerprinting VGG16's fc1 read its
 * 411 MB on every forward, as long as the bf16 product itself. */
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "ops/ops.h"

typedef struct derived {
  int kind;
  const float *kernel;
  size_t n, bytes;
  uint64_t fingerprint;
  int version; /* the graph's weights_version when last checked */
  void *data;
  struct derived *next;
} derived;

/* Forms kept per node: a layer whose batch sizes alternate between two paths (Winograd for a full
 * batch, the panels for a short last one) keeps both instead of deriving one again each batch. */
enum { MAX_FORMS = 2 };

/* Position-weighted sums of the bit patterns: any single change, or a swap, changes it. Reading
 * the kernel once costs far less than the convolution that reads it too. */
static uint64_t kernel_fingerprint(const float *k, size_t n) {
  uint64_t plain = 0;
  uint32_t weighted = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits; /* memcpy: no aliasing of the floats through another type */
    memcpy(&bits, k + i, sizeof bits);
    plain += bits;
    weighted += bits * ((uint32_t)i * 2654435761u | 1u);
  }
  return plain * 0x9E3779B97F4A7C15ull ^ weighted;
}

static void free_form(derived *d) {
  cn_free_aligned(d->data);
  free(d);
}

void cn_derived_release(cn_node *node) {
  for (derived *d = node->cache, *next; d; d = next) {
    next = d->next;
    free_form(d);
  }
  node->cache = NULL;
}

/* Unlinks and frees the form of this kind, or else the last one once the node holds MAX_FORMS:
 * the walk stops at the first of them it meets. */
static void make_room(cn_node *node, int kind) {
  derived **at = (derived **)&node->cache;
  for (int seen = 1; *at && (*at)->kind != kind && seen < MAX_FORMS; seen++) at = &(*at)->next;
  if (!*at) return;
  derived *gone = *at;
  *at = gone->next;
  free_form(gone);
}

size_t cn_derived_bytes(const cn_graph *g) {
  size_t total = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    if (n->op->release == cn_derived_release)
      for (const derived *d = n->cache; d; d = d->next) total += d->bytes;
  }
  return total;
}

const void *cn_derived_weights(cn_node *node, int kind, size_t bytes, cn_derive_fn derive,
                               const void *ctx, const cn_exec *ex) {
  return cn_derived_weights_of(node, 0, kind, bytes, derive, ctx, ex);
}

const void *cn_derived_weights_of(cn_node *node, int param, int kind, size_t bytes,
                                  cn_derive_fn derive, const void *ctx, const cn_exec *ex) {
  const float *kernel = node->params[param].data;
  size_t n = (size_t)cn_shape_numel(&node->params[param].shape);
  int threads = ex->threads;
  derived *d = node->cache;
  while (d && d->kind != kind) d = d->next;
  int same_buffer = d && d->kernel == kernel && d->n == n;
  if (same_buffer && ex->versioned_weights && d->version == ex->weights_version) return d->data;
  uint64_t print = kernel_fingerprint(kernel, n);
  if (same_buffer) {
    if (d->fingerprint != print) { /* trained in place: same size, refresh the buffer */
      derive(node, ctx, d->data, threads);
      d->fingerprint = print;
    }
    d->version = ex->weights_version;
    return d->data;
  }
  make_room(node, kind);
  d = calloc(1, sizeof *d);
  void *data = cn_alloc_aligned(bytes);
  if (!d || !data) {
    free(d);
    cn_free_aligned(data);
    return NULL;
  }
  derive(node, ctx, data, threads);
  *d = (derived){kind, kernel, n, bytes, print, ex->weights_version, data, node->cache};
  node->cache = d;
  return data;
}

static void pack_bf16(const cn_node *node, const void *ctx, void *dst, int threads) {
  const int64_t *kn = ctx;
  (void)threads;
  cn_bf16_pack(node->params[0].data, kn[1], kn[0], kn[1], dst);
}

const cn_bf16_matrix *cn_bf16_kernel(cn_node *node, int64_t k, int64_t n, const cn_exec *ex,
                                     cn_bf16_matrix *out) {
  int64_t kn[2] = {k, n};
  size_t bytes = cn_bf16_packed_len(k, n) * sizeof(uint16_t);
  const uint16_t *data = cn_derived_weights(node, CN_DERIVED_BF16, bytes, pack_bf16, kn, ex);
  if (!data) return NULL;
  *out = (cn_bf16_matrix){k, n, cn_bf16_native(), data};
  return out;
}

static void pack_panels(const cn_node *node, const void *ctx, void *dst, int threads) {
  const int64_t *pkn = ctx; /* the param, k, n */
  (void)threads;
  cn_panels_pack(node->params[pkn[0]].data, pkn[2], pkn[1], pkn[2], dst);
}

const cn_panels *cn_panels_kernel_of(cn_node *node, int param, int kind, int64_t k, int64_t n,
                                     const cn_exec *ex, cn_panels *out) {
  int64_t pkn[3] = {param, k, n};
  size_t bytes = cn_panels_floats(k, n) * sizeof(float);
  const float *data = cn_derived_weights_of(node, param, kind, bytes, pack_panels, pkn, ex);
  if (!data) return NULL;
  *out = (cn_panels){data, k, n};
  return out;
}

const cn_panels *cn_panels_kernel(cn_node *node, int64_t k, int64_t n, const cn_exec *ex,
                                  cn_panels *out) {
  return cn_panels_kernel_of(node, 0, CN_DERIVED_PANELS, k, n, ex, out);
}
