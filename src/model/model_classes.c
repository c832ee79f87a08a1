/* Class names on a model: what classify and evaluate print instead of "class N". Kept apart from
 * model.c so that the .cnm reader and the trainer share one owner of these fields. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "model/model.h"

void cn_model_release_class_names(cn_model *m) {
  for (int i = 0; i < m->n_class_names; i++) free(m->class_names[i]);
  free(m->class_names);
  m->class_names = NULL;
  m->n_class_names = 0;
}

int cn_model_class_count(const cn_model *m) {
  return m ? m->n_class_names : 0;
}

const char *cn_model_class_name(const cn_model *m, int index) {
  if (!m || index < 0 || index >= m->n_class_names) return NULL;
  return m->class_names[index];
}

/* Length of the UTF-8 sequence starting at s (a lead byte and its continuation bytes), or 0. */
static int utf8_sequence(const unsigned char *s) {
  int len = s[0] < 0x80                   ? 1
            : s[0] >= 0xc2 && s[0] < 0xe0 ? 2
            : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
            : s[0] >= 0xf0 && s[0] < 0xf5 ? 4
                                          : 0;
  for (int i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return len;
}

/* Printable UTF-8 text of 1..CN_CLASS_NAME_MAX bytes (no control characters). */
static int is_valid_name(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > CN_CLASS_NAME_MAX) return 0;
  for (const unsigned char *p = (const unsigned char *)name; *p;) {
    if (*p < 0x20 || *p == 0x7f) return 0;
    int len = utf8_sequence(p);
    if (!len) return 0;
    p += len;
  }
  return 1;
}

static cn_status check_names(const char *const *names, int n) {
  if (n < 0 || n > CN_MAX_CLASS_NAMES || (n && !names))
    return cn_fail(CN_ERR_ARG, "class names: %d names (at most %d)", n, CN_MAX_CLASS_NAMES);
  for (int i = 0; i < n; i++)
    if (!is_valid_name(names[i]))
      return cn_fail(CN_ERR_ARG,
                     "class name %d: empty, longer than %d bytes, not UTF-8 or with control "
                     "characters",
                     i, CN_CLASS_NAME_MAX);
  return CN_OK;
}

cn_status cn_model_set_class_names(cn_model *m, const char *const *names, int n) {
  if (!m) return cn_fail(CN_ERR_ARG, "cn_model_set_class_names: NULL model");
  cn_status st = check_names(names, n);
  if (st != CN_OK) return st;
  char **copy = n ? calloc((size_t)n, sizeof *copy) : NULL;
  if (n && !copy) return cn_fail(CN_ERR_NOMEM, "out of memory for %d class names", n);
  for (int i = 0; st == CN_OK && i < n; i++) {
    copy[i] = cn_strdup(names[i]);
    if (!copy[i]) st = CN_ERR_NOMEM;
  }
  if (st != CN_OK) {
    for (int i = 0; i < n; i++) free(copy[i]);
    free(copy);
    return st;
  }
  cn_model_release_class_names(m);
  m->class_names = copy;
  m->n_class_names = n;
  return CN_OK;
}
