/* The results of classification as text or JSON: one format shared by classify and serve. */
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

/* The length of the UTF-8 sequence at p (1 to 4), or 0 when it is not a valid one (a stray or
 * missing continuation byte, an overlong form, a surrogate, or past U+10FFFF). */
static int utf8_length(const unsigned char *p) {
  int n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
  if (p[0] < 0xc2 || p[0] > 0xf4) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80) return 0;
  if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
      (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
    return 0;
  return n;
}

void cli_json_string(FILE *out, const char *s) {
  putc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      fprintf(out, "\\%c", *p);
    } else if (*p == '\n') {
      fputs("\\n", out);
    } else if (*p == '\t') {
      fputs("\\t", out);
    } else if (*p < 0x20 || *p == 0x7f) {
      fprintf(out, "\\u%04x", *p);
    } else if (*p < 0x80) {
      putc(*p, out);
    } else {
      int n = utf8_length(p); /* JSON is UTF-8: other bytes become U+FFFD */
      if (n)
        fwrite(p, 1, (size_t)n, out), p += n - 1;
      else
        fputs("\\ufffd", out);
    }
  }
  putc('"', out);
}

/* Indices of the k largest probabilities, largest first (ties: lower index first), by insertion
 * into the sorted best ones: O(n k) at worst, and a model's output is read once. */
static void top_k(const float *p, size_t n, int k, size_t *best) {
  int have = 0;
  for (size_t j = 0; j < n; j++) {
    if (have == k && !(p[j] > p[best[k - 1]])) continue;
    int at = have < k ? have++ : k - 1;
    while (at > 0 && p[j] > p[best[at - 1]]) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = j;
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
  fprintf(out, ",\"prob\":%.9g}", (double)prob);
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
