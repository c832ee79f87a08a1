/* Classification metrics accumulated over an evaluation: a confusion matrix and top-k hits. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "train/optim.h"

/* counts is classes^2 int64: 32768 classes is already 8 GiB, far past any real head. */
#define CN_CONFUSION_MAX_CLASSES 32768

cn_status cn_confusion_init(cn_confusion *c, int classes, int k) {
  if (!c) return cn_fail(CN_ERR_ARG, "confusion: NULL argument");
  *c = (cn_confusion){0};
  if (classes <= 0 || k <= 0)
    return cn_fail(CN_ERR_ARG, "confusion: classes %d and k %d must be positive", classes, k);
  if (classes > CN_CONFUSION_MAX_CLASSES)
    return cn_fail(CN_ERR_LIMIT, "confusion: %d classes exceed the limit %d", classes,
                   CN_CONFUSION_MAX_CLASSES);
  c->counts = calloc((size_t)classes * (size_t)classes, sizeof *c->counts);
  if (!c->counts) return cn_fail(CN_ERR_NOMEM, "confusion: out of memory for %d classes", classes);
  c->classes = classes;
  c->k = k < classes ? k : classes;
  return CN_OK;
}

void cn_confusion_free(cn_confusion *c) {
  if (!c) return;
  free(c->counts);
  *c = (cn_confusion){0};
}

/* The first index of the maximum (a NaN never wins a comparison, so it is skipped unless first). */
static int argmax(const float *s, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (s[j] > s[best]) best = j;
  return best;
}

/* Position of cls in the descending order where ties go to the lower index: classes scoring
 * higher, plus lower-indexed classes scoring the same. */
static int64_t rank_of(const float *s, int n, int cls) {
  int64_t rank = 0;
  for (int j = 0; j < n; j++)
    if (s[j] > s[cls] || (j < cls && s[j] == s[cls])) rank++;
  return rank;
}

void cn_confusion_judge(const cn_confusion *c, const float *scores, int label, int *predicted,
                        int *top_k_hit) {
  *predicted = argmax(scores, c->classes);
  *top_k_hit = rank_of(scores, c->classes, label) < c->k;
}

void cn_confusion_count(cn_confusion *c, int label, int predicted, int top_k_hit) {
  if (!c || !c->counts || label < 0 || label >= c->classes || predicted < 0 ||
      predicted >= c->classes)
    return; /* not a class of this head: counted nowhere */
  c->counts[(size_t)label * (size_t)c->classes + (size_t)predicted]++;
  c->total++;
  if (top_k_hit) c->top_k_hits++;
}

void cn_confusion_add(cn_confusion *c, int batch, const float *scores, const int *labels) {
  if (!c || !c->counts || batch <= 0 || !scores || !labels) return;
  int n = c->classes;
  for (int i = 0; i < batch; i++) {
    int label = labels[i], predicted, hit;
    if (label < 0 || label >= n) continue;
    cn_confusion_judge(c, scores + (size_t)i * n, label, &predicted, &hit);
    cn_confusion_count(c, label, predicted, hit);
  }
}

double cn_confusion_accuracy(const cn_confusion *c) {
  if (!c || !c->counts || c->total == 0) return 0.0;
  int64_t correct = 0;
  for (int j = 0; j < c->classes; j++) correct += c->counts[(size_t)j * c->classes + j];
  return (double)correct / (double)c->total;
}

double cn_confusion_top_k(const cn_confusion *c) {
  if (!c || !c->counts || c->total == 0) return 0.0;
  return (double)c->top_k_hits / (double)c->total;
}

double cn_confusion_recall(const cn_confusion *c, int cls) {
  if (!c || !c->counts || cls < 0 || cls >= c->classes) return NAN;
  int64_t row = 0;
  const int64_t *r = c->counts + (size_t)cls * c->classes;
  for (int j = 0; j < c->classes; j++) row += r[j];
  return row ? (double)r[cls] / (double)row : NAN;
}
