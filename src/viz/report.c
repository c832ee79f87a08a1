/* cn_report_write: a training or evaluation report as one self-contained HTML page. Text and
 * tables are HTML; charts and thumbnails are PNG data URIs (report_charts.c). A Content Security
 * Policy forbids the page to load anything, so a browser shows it the same offline. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "viz/report.h"

enum { REPORT_THUMB = 128, REPORT_MAX_THUMB = 512 };

/* ---- the page's text ----------------------------------------------------------------------- */

void report_add(report_buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n && cap < SIZE_MAX / 2) cap *= 2;
    char *data = cap - b->len >= n ? realloc(b->data, cap) : NULL;
    if (!data) {
      b->failed = 1;
      return;
    }
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

void report_puts(report_buf *b, const char *s) {
  report_add(b, s, strlen(s));
}

void report_printf(report_buf *b, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof text)
    b->failed = 1; /* only short fragments go through here */
  else
    report_add(b, text, (size_t)n);
}

void report_html(report_buf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&':
      report_puts(b, "&amp;");
      break;
    case '<':
      report_puts(b, "&lt;");
      break;
    case '>':
      report_puts(b, "&gt;");
      break;
    case '"':
      report_puts(b, "&quot;");
      break;
    case '\'':
      report_puts(b, "&#39;");
      break;
    default:
      report_add(b, s, 1);
    }
  }
}

static void add_percent(report_buf *b, double fraction) {
  if (isfinite(fraction))
    report_printf(b, "<td>%.1f%%</td>", 100 * fraction);
  else
    report_puts(b, "<td>&ndash;</td>");
}

static void add_number(report_buf *b, double v) {
  if (isfinite(v))
    report_printf(b, "<td>%.4f</td>", v);
  else
    report_puts(b, "<td>&ndash;</td>");
}

static void add_class(report_buf *b, const cn_report *r, int c) {
  if (r->class_names && r->class_names[c])
    report_html(b, r->class_names[c]);
  else
    report_printf(b, "class %d", c);
}

/* ---- sections ------------------------------------------------------------------------------ */

static const char style[] =
    "body{font-family:'DejaVu Sans',sans-serif;margin:24px;color:#222;background:#fff}"
    "h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#eef}td.name,th:first-child{text-align:left}"
    ".worst{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;padding:8px;border:1px solid #ccc;width:180px;font-size:12px}"
    "figure img{display:block;margin:0 auto 6px;image-rendering:pixelated;"
    "max-width:160px;height:auto}p.none{color:#777;font-style:italic}";

static void add_head(report_buf *b, const cn_report *r) {
  const char *title = r->title ? r->title : "convnet report";
  report_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                 "img-src data:; style-src 'unsafe-inline'\">\n<title>");
  report_html(b, title);
  report_puts(b, "</title>\n<style>");
  report_puts(b, style);
  report_puts(b, "</style>\n</head>\n<body>\n<h1>");
  report_html(b, title);
  report_puts(b, "</h1>\n");
  for (int i = 0; i < r->n_notes; i++) {
    report_puts(b, "<p>");
    report_html(b, r->notes[i]);
    report_puts(b, "</p>\n");
  }
}

static void add_epoch_table(report_buf *b, const cn_report *r) {
  report_puts(b, "<table>\n<tr><th>phase</th><th>epoch</th><th>loss</th><th>accuracy</th>"
                 "<th>val_loss</th><th>val_accuracy</th></tr>\n");
  for (int i = 0; i < r->n_epochs; i++) {
    const cn_report_epoch *e = &r->epochs[i];
    report_puts(b, "<tr><td class=\"name\">");
    report_html(b, e->phase ? e->phase : "");
    report_printf(b, "</td><td>%d</td>", e->epoch);
    add_number(b, e->loss);
    add_percent(b, e->accuracy);
    add_number(b, e->val_loss);
    add_percent(b, e->val_accuracy);
    report_puts(b, "</tr>\n");
  }
  report_puts(b, "</table>\n");
}

static cn_status add_history(report_buf *b, const cn_report *r) {
  static const char *const headings[2] = {"Loss per epoch", "Accuracy per epoch"};
  cn_status st = CN_OK;
  for (int metric = 0; st == CN_OK && metric < 2; metric++) {
    report_printf(b, "<section id=\"%s\">\n<h2>%s</h2>\n", metric ? "accuracy" : "loss",
                  headings[metric]);
    if (r->n_epochs > 0)
      st = report_history_chart(b, r->epochs, r->n_epochs, metric);
    else
      report_puts(b, "<p class=\"none\">No training history: this report was not written by "
                     "training.</p>");
    report_puts(b, "\n</section>\n");
  }
  if (st == CN_OK && r->n_epochs > 0) add_epoch_table(b, r);
  return st;
}

static void add_summary(report_buf *b, const cn_report *r) {
  const cn_evaluation *e = r->evaluation;
  report_puts(b, "<p>Scored: ");
  report_html(b, r->evaluation_name ? r->evaluation_name : "images");
  report_printf(b, ", %lld images, accuracy %.2f%% (%lld correct)",
                (long long)cn_evaluation_images(e), 100 * cn_evaluation_accuracy(e),
                (long long)cn_evaluation_correct(e));
  if (cn_evaluation_top_k(e) > 1 && cn_evaluation_top_k(e) < cn_evaluation_class_count(e))
    report_printf(b, ", top-%d %.2f%%", cn_evaluation_top_k(e),
                  100 * cn_evaluation_top_k_accuracy(e));
  if (cn_evaluation_skipped(e))
    report_printf(b, ", %lld skipped (unreadable)", (long long)cn_evaluation_skipped(e));
  report_puts(b, ".</p>\n");
}

static cn_status add_confusion(report_buf *b, const cn_report *r) {
  int n = cn_evaluation_class_count(r->evaluation);
  report_puts(b, "<section id=\"confusion\">\n<h2>Confusion matrix</h2>\n");
  cn_status st = CN_OK;
  if (n <= REPORT_MAX_MATRIX) {
    report_puts(b, "<p>Rows: true class; columns: predicted class; numbers: images; colour: "
                   "the fraction of the row's images.</p>\n");
    st = report_confusion_chart(b, r->evaluation, r->class_names);
  } else {
    report_printf(b, "<p class=\"none\">Not drawn: %d classes (at most %d).</p>", n,
                  REPORT_MAX_MATRIX);
  }
  report_puts(b, "\n</section>\n");
  return st;
}

static void add_per_class(report_buf *b, const cn_report *r) {
  const cn_evaluation *e = r->evaluation;
  report_puts(b, "<section id=\"per-class\">\n<h2>Per-class recall and precision</h2>\n"
                 "<table>\n<tr><th>class</th><th>images</th><th>predicted</th><th>recall</th>"
                 "<th>precision</th></tr>\n");
  for (int c = 0; c < cn_evaluation_class_count(e); c++) {
    int64_t samples = cn_evaluation_samples(e, c), predicted = cn_evaluation_predicted(e, c);
    if (!samples && !predicted) continue; /* 1000 ImageNet classes: only those that occur */
    report_puts(b, "<tr><td class=\"name\">");
    add_class(b, r, c);
    report_printf(b, "</td><td>%lld</td><td>%lld</td>", (long long)samples, (long long)predicted);
    add_percent(b, cn_evaluation_recall(e, c));
    add_percent(b, cn_evaluation_precision(e, c));
    report_puts(b, "</tr>\n");
  }
  report_puts(b, "</table>\n</section>\n");
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static void add_miss(report_buf *b, const cn_report *r, const cn_evaluation_miss *m, int size) {
  report_puts(b, "<figure>");
  if (report_thumbnail(b, m->path, size) != CN_OK)
    report_puts(b, "<p class=\"none\">(unreadable)</p>");
  report_puts(b, "<figcaption><b>");
  report_html(b, base_name(m->path));
  report_puts(b, "</b><br>true: ");
  add_class(b, r, m->truth);
  report_printf(b, " (%.3f)<ol>", m->truth_score);
  for (int k = 0; k < CN_EVAL_MISS_TOP && m->top[k] >= 0; k++) {
    report_puts(b, "<li>");
    add_class(b, r, m->top[k]);
    report_printf(b, " (%.3f)</li>", m->top_score[k]);
  }
  report_puts(b, "</ol></figcaption></figure>\n");
}

static void add_worst(report_buf *b, const cn_report *r) {
  const cn_evaluation *e = r->evaluation;
  int n = cn_evaluation_worst_count(e), size = r->thumb_size ? r->thumb_size : REPORT_THUMB;
  if (size > REPORT_MAX_THUMB) size = REPORT_MAX_THUMB;
  report_puts(b, "<section id=\"worst\">\n<h2>Worst-misclassified ");
  report_html(b, r->evaluation_name ? r->evaluation_name : "images");
  report_puts(b, "</h2>\n");
  if (!n && cn_evaluation_correct(e) == cn_evaluation_images(e))
    report_puts(b, "<p class=\"none\">None misclassified.</p>\n");
  else if (!n) /* IDX samples, or an evaluation made without cn_evaluate_options.worst */
    report_puts(b, "<p class=\"none\">No images to show (IDX data has no image files).</p>\n");
  else
    report_puts(b, "<p>The lowest score of the true class first; under each, the top-3 "
                   "predictions with their scores.</p>\n<div class=\"worst\">\n");
  for (int i = 0; i < n; i++) add_miss(b, r, cn_evaluation_worst(e, i), size);
  if (n) report_puts(b, "</div>\n");
  report_puts(b, "</section>\n");
}

static cn_status add_evaluation(report_buf *b, const cn_report *r) {
  if (!r->evaluation) {
    static const char *const ids[3] = {"confusion", "per-class", "worst"};
    static const char *const headings[3] = {"Confusion matrix", "Per-class recall and precision",
                                            "Worst-misclassified images"};
    for (int i = 0; i < 3; i++)
      report_printf(b,
                    "<section id=\"%s\">\n<h2>%s</h2>\n<p class=\"none\">No validation images "
                    "were scored.</p>\n</section>\n",
                    ids[i], headings[i]);
    return CN_OK;
  }
  report_puts(b, "<h2>Evaluation</h2>\n");
  add_summary(b, r);
  cn_status st = add_confusion(b, r);
  if (st != CN_OK) return st;
  add_per_class(b, r);
  add_worst(b, r);
  return CN_OK;
}

/* ---- the file ------------------------------------------------------------------------------ */

static cn_status write_atomically(const report_buf *b, const char *path) {
  cn_atomic_file f;
  cn_status st = cn_atomic_open(&f, path);
  if (st != CN_OK) return st;
  st = cn_atomic_write(&f, b->data, b->len);
  if (st != CN_OK) {
    cn_atomic_abort(&f);
    return st;
  }
  return cn_atomic_commit(&f);
}

cn_status cn_report_write(const cn_report *r, const char *html_path) {
  if (!r || !html_path) return cn_fail(CN_ERR_ARG, "report: NULL argument");
  if (r->n_epochs < 0 || (r->n_epochs > 0 && !r->epochs) || r->n_notes < 0 ||
      (r->n_notes > 0 && !r->notes) || r->thumb_size < 0)
    return cn_fail(CN_ERR_ARG, "report: inconsistent epochs, notes or thumbnail size");
  report_buf b = {0};
  add_head(&b, r);
  cn_status st = add_history(&b, r);
  if (st == CN_OK) st = add_evaluation(&b, r);
  report_puts(&b, "</body>\n</html>\n");
  if (st == CN_OK && b.failed) st = cn_fail(CN_ERR_NOMEM, "report: out of memory");
  if (st == CN_OK) st = write_atomically(&b, html_path);
  free(b.data);
  return st;
}
