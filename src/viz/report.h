/* src/viz report internals: the growing text of the HTML page, and the pictures drawn into it
 * with cairo as base64 PNG data URIs (report_charts.c). */
#ifndef CN_VIZ_REPORT_H
#define CN_VIZ_REPORT_H

#include <cairo.h>
#include <stddef.h>
#include <stdint.h>

#include "convnet/viz.h"

/* The page so far. A failed allocation sets failed and later appends do nothing. */
typedef struct report_buf {
  char *data;
  size_t len, cap;
  int failed;
} report_buf;

void report_add(report_buf *b, const char *s, size_t n);
void report_puts(report_buf *b, const char *s);
void report_printf(report_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s with & < > " ' escaped (class and file names are untrusted). */
void report_html(report_buf *b, const char *s);
/* An <img> of the surface: alt (escaped) and the picture as a data:image/png;base64 URI. */
cn_status report_img(report_buf *b, cairo_surface_t *surface, const char *alt);

/* Charts, each appended as an <img>. metric: 0 loss, 1 accuracy. */
cn_status report_history_chart(report_buf *b, const cn_report_epoch *epochs, int n, int metric);
/* Rows: true class, columns: predicted; colour: the row's fraction. At most REPORT_MAX_MATRIX
 * classes. */
enum { REPORT_MAX_MATRIX = 50 };
cn_status report_confusion_chart(report_buf *b, const cn_evaluation *e, const char *const *names);
/* The image at path scaled to fit size x size; fails (nothing appended) when it cannot be read. */
cn_status report_thumbnail(report_buf *b, const char *path, int size);

#endif
