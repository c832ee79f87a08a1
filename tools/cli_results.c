/* The results of classification as text or JSON: one format shared by classify and serve. */
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

void cli_json_string(FILE *out, const char *s) {
  putc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(out, "\\%c", *p);
    else if (*p == '\n')
      fputs("\\n", out);
    else if (*p == '\t')
      fputs("\\t", out);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(out, "\\u%04x", *p);
    else
      putc(*p, out);
  }
  putc('"', out);
}

/* Indices of the k largest probabilities, largest first (ties: lower index first). */
static void top_k(const float *p, size_t n, int k, size_t *best) {
  for (int i = 0; i < k; i++) {
    size_t arg = SIZE_MAX;
    for (size_t j = 0; j < n; j++) {
      int taken = 0;
      for (int t = 0; t < i && !taken; t++) taken = best[t] == j;
      if (!taken && (arg == SIZE_MAX || p[j] > p[arg])) arg = j;
    }
    best[i] = arg;
  }
}

static void print_class(FILE *out, int rank, size_t c, float prob, const cli_top_opts *o) {
  const char *name = o->labels  ? cn_labels_name(o->labels, c)
                     : o->named ? cn_model_class_name(o->named, (int)c)
                                : NULL;
  const char *id = o->labels ? cn_labels_id(o->labels, c) : NULL;
  char fallback[32];
  if (!name) snprintf(fallback, sizeof fallback, "class %zu", c), name = fallback;
  if (!o->json) {
    fprintf(out, "  %d. %.4f  %s", rank + 1, (double)prob, name);
    fprintf(out, id ? " (%s)\n" : "\n", id);
    return;
  }
  fprintf(out, "%s{\"index\":%zu,\"id\":", rank ? "," : "", c);
  if (id)
    cli_json_string(out, id);
  else
    fputs("null", out);
  fputs(",\"label\":", out);
  cli_json_string(out, name);
  fprintf(out, ",\"prob\":%.6g}", (double)prob);
}

void cli_print_top(FILE *out, const char *file, const float *probs, size_t n,
                   const cli_top_opts *o) {
  size_t best[CLI_MAX_TOP];
  int k = o->k < (int)n ? o->k : (int)n;
  top_k(probs, n, k, best);
  if (o->json) {
    fputs("{\"file\":", out);
    cli_json_string(out, file);
    fputs(",\"top\":[", out);
  } else {
    fprintf(out, "%s\n", file);
  }
  for (int i = 0; i < k; i++) print_class(out, i, best[i], probs[best[i]], o);
  if (o->json) fputs("]}\n", out);
  fflush(out);
}
