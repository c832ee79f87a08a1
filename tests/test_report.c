/* cn_report_write: the HTML page has every section, escapes class names and notes, inlines its
 * pictures as data URIs, refers to nothing outside itself, says what it lacks (no history, no
 * evaluation, too many classes for the heat map), and fails cleanly. The rendering in a browser
 * is checked by tests/cli/report.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "testlib.h"

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  if (s) s[n] = '\0';
  fclose(f);
  return s;
}

static int count(const char *s, const char *what) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

/* Every src is a data URI and no URL scheme appears. */
static int self_contained(const char *html) {
  for (const char *p = html; (p = strstr(p, "src=\"")); p += 5)
    if (strncmp(p + 5, "data:image/png;base64,", 22) != 0) return 0;
  return !strstr(html, "http:") && !strstr(html, "https:") && !strstr(html, "<script");
}

static cn_evaluation *three_classes(void) {
  cn_evaluation *e = NULL;
  CHECK_OK(cn_evaluation_new(3, 1, &e));
  const float scores[] = {0.8f, 0.1f, 0.1f, 0.2f, 0.7f, 0.1f, 0.6f, 0.3f, 0.1f};
  const int labels[] = {0, 1, 2};
  if (e) cn_evaluation_add(e, 3, scores, labels);
  return e;
}

static void test_full(const char *path) {
  const cn_report_epoch epochs[] = {{"head", 1, 1.0, 0.5, 0.9, 0.6},
                                    {"head", 2, 0.8, 0.6, NAN, NAN},
                                    {"fine-tune", 1, 0.5, 0.8, 0.6, 0.7}};
  const char *names[] = {"a<b", "c&d", NULL};
  const char *notes[] = {"data: \"x\" <y>"};
  cn_evaluation *e = three_classes();
  cn_report r = {.title = "T<1>",
                 .notes = notes,
                 .n_notes = 1,
                 .epochs = epochs,
                 .n_epochs = 3,
                 .evaluation = e,
                 .evaluation_name = "validation images",
                 .class_names = names};
  CHECK_OK(cn_report_write(&r, path));
  char *html = read_all(path);
  CHECK(html != NULL);
  if (html) {
    CHECK(strncmp(html, "<!DOCTYPE html>", 15) == 0 && strstr(html, "</html>") != NULL);
    const char *headings[] = {"<h2>Loss per epoch", "<h2>Accuracy per epoch",
                              "<h2>Confusion matrix", "<h2>Per-class recall and precision",
                              "<h2>Worst-misclassified validation images"};
    for (int i = 0; i < 5; i++) CHECK(strstr(html, headings[i]) != NULL);
    CHECK(count(html, "src=\"data:image/png;base64,iVBORw0KGgo") == 3); /* 2 charts, matrix */
    CHECK(self_contained(html));
    CHECK(strstr(html, "<h1>T&lt;1&gt;</h1>") && strstr(html, "data: &quot;x&quot; &lt;y&gt;"));
    CHECK(strstr(html, "a&lt;b") && strstr(html, "c&amp;d") && !strstr(html, "a<b"));
    CHECK(strstr(html, "class 2") != NULL); /* a NULL name */
    CHECK(strstr(html, "66.67%") != NULL);  /* 2 of 3 correct */
    CHECK(count(html, "<td class=\"name\">head</td>") == 2);
    CHECK(strstr(html, "No images to show") != NULL); /* cn_evaluation_add keeps none */
  }
  free(html);
  cn_evaluation_free(e);
}

static void test_missing(const char *path) {
  cn_report r = {0};
  CHECK_OK(cn_report_write(&r, path));
  char *html = read_all(path);
  CHECK(html && strstr(html, "No training history") && strstr(html, "No validation images"));
  CHECK(html && strstr(html, "<h2>Confusion matrix") && self_contained(html));
  free(html);

  cn_evaluation *e = NULL;
  CHECK_OK(cn_evaluation_new(51, 5, &e));
  r.evaluation = e;
  CHECK_OK(cn_report_write(&r, path));
  html = read_all(path);
  CHECK(html && strstr(html, "Not drawn: 51 classes"));
  free(html);
  cn_evaluation_free(e);
}

static void test_errors(const char *dir) {
  cn_report r = {.n_epochs = 2};
  char path[2048];
  snprintf(path, sizeof path, "%s/r.html", dir);
  CHECK(cn_report_write(&r, path) == CN_ERR_ARG); /* epochs missing */
  CHECK(cn_report_write(NULL, path) == CN_ERR_ARG);
  r.n_epochs = 0;
  CHECK(cn_report_write(&r, NULL) == CN_ERR_ARG);
  snprintf(path, sizeof path, "%s/no/such/dir/r.html", dir);
  CHECK(cn_report_write(&r, path) != CN_OK);
}

int main(void) {
  char path[2048];
  snprintf(path, sizeof path, "%s/report.html", cn_test_tmpdir());
  test_full(path);
  test_missing(path);
  test_errors(cn_test_tmpdir());
  remove(path);
  return cn_test_finish();
}
