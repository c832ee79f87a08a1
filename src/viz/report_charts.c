/* The report's pictures, drawn with cairo and inlined as base64 PNG data URIs (report.h): the
 * loss and accuracy per epoch, the confusion matrix as a heat map, and image thumbnails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"
#include "viz/report.h"

enum { CHART_W = 640, CHART_H = 320, CHART_LEFT = 64, CHART_RIGHT = 16, CHART_TOP = 40 };
enum { CHART_BOTTOM = 44, CHART_FONT = 12, LABEL_CHARS = 24 };

static const char base64_digits[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void add_base64(report_buf *b, const uint8_t *d, size_t n) {
  char quad[4];
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n) v |= d[i + 2];
    quad[0] = base64_digits[v >> 18 & 63];
    quad[1] = base64_digits[v >> 12 & 63];
    quad[2] = i + 1 < n ? base64_digits[v >> 6 & 63] : '=';
    quad[3] = i + 2 < n ? base64_digits[v & 63] : '=';
    report_add(b, quad, 4);
  }
}

static cairo_status_t png_to_buf(void *closure, const unsigned char *data, unsigned int n) {
  report_buf *png = closure;
  report_add(png, (const char *)data, n);
  return png->failed ? CAIRO_STATUS_NO_MEMORY : CAIRO_STATUS_SUCCESS;
}

cn_status report_img(report_buf *b, cairo_surface_t *surface, const char *alt) {
  report_buf png = {0};
  cairo_surface_flush(surface);
  cairo_status_t status = cairo_surface_write_to_png_stream(surface, png_to_buf, &png);
  if (status != CAIRO_STATUS_SUCCESS || png.failed) {
    free(png.data);
    return cn_fail(CN_ERR_NOMEM, "report: cannot encode a picture: %s",
                   cairo_status_to_string(status));
  }
  report_puts(b, "<img alt=\"");
  report_html(b, alt);
  report_printf(b, "\" width=\"%d\" height=\"%d\" src=\"data:image/png;base64,",
                cairo_image_surface_get_width(surface), cairo_image_surface_get_height(surface));
  add_base64(b, (const uint8_t *)png.data, png.len);
  report_puts(b, "\">");
  free(png.data);
  return CN_OK;
}

/* A white canvas; its drawing state is checked once, when it is encoded. */
static cn_status white_canvas(int w, int h, cairo_surface_t **s, cairo_t **cr) {
  cn_status st = viz_canvas_new(w, h, s, cr);
  if (st != CN_OK) return st;
  cairo_set_source_rgb(*cr, 1, 1, 1);
  cairo_paint(*cr);
  cairo_select_font_face(*cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(*cr, CHART_FONT);
  return CN_OK;
}

static cn_status finish(report_buf *b, cairo_surface_t *s, cairo_t *cr, const char *alt) {
  cairo_status_t status = cairo_status(cr);
  cn_status st = status == CAIRO_STATUS_SUCCESS ? report_img(b, s, alt)
                                                : cn_fail(CN_ERR_ARG, "report: drawing failed: %s",
                                                          cairo_status_to_string(status));
  viz_canvas_free(s, cr);
  return st;
}

/* Text cairo's toy API always accepts: printable ASCII, anything else as '?', at most
 * LABEL_CHARS characters (HTML shows the names in full). */
static void label_text(const char *s, char *out) {
  int n = 0;
  for (; s && *s && n < LABEL_CHARS; s++) out[n++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
  out[n] = '\0';
}

static double text_width(cairo_t *cr, const char *s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  return e.x_advance;
}

static void text_at(cairo_t *cr, double x, double y, const char *s) {
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s);
}

/* ---- history ------------------------------------------------------------------------------- */

typedef struct chart_frame {
  double lo, hi; /* the y axis */
  int n;         /* epochs along x */
} chart_frame;

static double chart_x(const chart_frame *f, int i) {
  double w = CHART_W - CHART_LEFT - CHART_RIGHT;
  return CHART_LEFT + (f->n > 1 ? w * i / (f->n - 1) : w / 2);
}

static double chart_y(const chart_frame *f, double v) {
  double h = CHART_H - CHART_TOP - CHART_BOTTOM;
  return CHART_TOP + h * (1.0 - (v - f->lo) / (f->hi - f->lo));
}

static double metric_of(const cn_report_epoch *e, int metric, int validation) {
  if (metric == 0) return validation ? e->val_loss : e->loss;
  return validation ? e->val_accuracy : e->accuracy;
}

/* The smallest of 1, 2, 2.5, 5 times a power of ten that is at least v > 0. */
static double round_step(double v) {
  static const double steps[] = {1, 2, 2.5, 5, 10};
  double power = pow(10, floor(log10(v)));
  for (int i = 0; i < 4; i++)
    if (steps[i] * power >= v) return steps[i] * power;
  return steps[4] * power;
}

/* Accuracy: 0..1; loss: 0 to five round steps covering its largest finite value. */
static chart_frame frame_of(const cn_report_epoch *epochs, int n, int metric) {
  chart_frame f = {.lo = 0, .hi = 1, .n = n};
  if (metric == 1) return f;
  double max = 0;
  for (int i = 0; i < n; i++)
    for (int v = 0; v < 2; v++) {
      double x = metric_of(&epochs[i], 0, v);
      if (isfinite(x) && x > max) max = x;
    }
  f.hi = isfinite(max) && max > 0 ? 5 * round_step(max * 1.02 / 5) : 1.0;
  return f;
}

static void draw_axes(cairo_t *cr, const chart_frame *f, const cn_report_epoch *epochs) {
  char text[64];
  cairo_set_line_width(cr, 1);
  for (int t = 0; t <= 5; t++) { /* horizontal grid lines with their values */
    double v = f->lo + (f->hi - f->lo) * t / 5, y = chart_y(f, v);
    cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
    cairo_move_to(cr, CHART_LEFT, y);
    cairo_line_to(cr, CHART_W - CHART_RIGHT, y);
    cairo_stroke(cr);
    snprintf(text, sizeof text, "%.3g", v);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, CHART_LEFT - 6 - text_width(cr, text), y + 4, text);
  }
  int every = f->n <= 20 ? 1 : (f->n + 9) / 10;
  for (int i = 0; i < f->n; i += every) { /* epochs counted over all phases */
    snprintf(text, sizeof text, "%d", i + 1);
    text_at(cr, chart_x(f, i) - text_width(cr, text) / 2, CHART_H - CHART_BOTTOM + 16, text);
  }
  text_at(cr, (CHART_W - text_width(cr, "epoch")) / 2, CHART_H - 8, "epoch");
  double dash = 4;
  for (int i = 1; i < f->n; i++) { /* where a new phase (fine-tuning) starts */
    if (!epochs[i].phase || !epochs[i - 1].phase || !strcmp(epochs[i].phase, epochs[i - 1].phase))
      continue;
    double x = (chart_x(f, i - 1) + chart_x(f, i)) / 2;
    cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
    cairo_set_dash(cr, &dash, 1, 0);
    cairo_move_to(cr, x, CHART_TOP);
    cairo_line_to(cr, x, CHART_H - CHART_BOTTOM);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    label_text(epochs[i].phase, text);
    text_at(cr, x + 4, CHART_TOP + 12, text);
  }
}

static void draw_series(cairo_t *cr, const chart_frame *f, const cn_report_epoch *epochs,
                        int metric, int validation) {
  if (validation)
    cairo_set_source_rgb(cr, 0.9, 0.45, 0.05);
  else
    cairo_set_source_rgb(cr, 0.12, 0.35, 0.75);
  cairo_set_line_width(cr, 2);
  int pen = 0; /* a NaN (not measured) breaks the line */
  for (int i = 0; i < f->n; i++) {
    double v = metric_of(&epochs[i], metric, validation);
    if (!isfinite(v)) {
      pen = 0;
      continue;
    }
    if (pen)
      cairo_line_to(cr, chart_x(f, i), chart_y(f, v));
    else
      cairo_move_to(cr, chart_x(f, i), chart_y(f, v));
    pen = 1;
  }
  cairo_stroke(cr);
  for (int i = 0; i < f->n; i++) {
    double v = metric_of(&epochs[i], metric, validation);
    if (!isfinite(v)) continue;
    cairo_arc(cr, chart_x(f, i), chart_y(f, v), 3, 0, 2 * M_PI);
    cairo_fill(cr);
  }
}

static void draw_legend(cairo_t *cr, const char *title) {
  cairo_set_source_rgb(cr, 0, 0, 0);
  text_at(cr, CHART_LEFT, 20, title);
  const char *names[2] = {"train", "validation"};
  double x = CHART_W - CHART_RIGHT - 190;
  for (int v = 0; v < 2; v++, x += 80) {
    if (v)
      cairo_set_source_rgb(cr, 0.9, 0.45, 0.05);
    else
      cairo_set_source_rgb(cr, 0.12, 0.35, 0.75);
    cairo_rectangle(cr, x, 11, 18, 10);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, x + 24, 20, names[v]);
  }
}

cn_status report_history_chart(report_buf *b, const cn_report_epoch *epochs, int n, int metric) {
  cairo_surface_t *s;
  cairo_t *cr;
  cn_status st = white_canvas(CHART_W, CHART_H, &s, &cr);
  if (st != CN_OK) return st;
  chart_frame f = frame_of(epochs, n, metric);
  const char *title = metric ? "accuracy per epoch" : "loss per epoch";
  draw_axes(cr, &f, epochs);
  draw_series(cr, &f, epochs, metric, 0);
  draw_series(cr, &f, epochs, metric, 1);
  draw_legend(cr, title);
  return finish(b, s, cr, title);
}

/* ---- confusion matrix ---------------------------------------------------------------------- */

typedef struct matrix_layout {
  int n, cell, left, top;
} matrix_layout;

static const char *class_label(const char *const *names, int c, char *out) {
  char number[16];
  snprintf(number, sizeof number, "%d", c);
  label_text(names && names[c] ? names[c] : number, out);
  return out;
}

static matrix_layout matrix_layout_of(cairo_t *cr, int n, const char *const *names) {
  matrix_layout m = {.n = n, .cell = 480 / n};
  m.cell = m.cell < 18 ? 18 : m.cell > 48 ? 48 : m.cell;
  double widest = 0;
  char text[LABEL_CHARS + 1];
  for (int c = 0; c < n; c++) {
    double w = text_width(cr, class_label(names, c, text));
    if (w > widest) widest = w;
  }
  m.left = 32 + (int)widest + 8;
  m.top = 32 + (int)widest + 8;
  return m;
}

/* White for none of the row's images, dark blue for all. */
static void cell_colour(cairo_t *cr, double fraction) {
  cairo_set_source_rgb(cr, 1 - 0.97 * fraction, 1 - 0.81 * fraction, 1 - 0.58 * fraction);
}

static void draw_cells(cairo_t *cr, const matrix_layout *m, const cn_evaluation *e) {
  char text[32];
  for (int t = 0; t < m->n; t++) {
    int64_t row = cn_evaluation_samples(e, t);
    for (int p = 0; p < m->n; p++) {
      int64_t count = cn_evaluation_confusion(e, t, p);
      double fraction = row ? (double)count / (double)row : 0, x = m->left + p * m->cell,
             y = m->top + t * m->cell;
      cell_colour(cr, fraction);
      cairo_rectangle(cr, x, y, m->cell, m->cell);
      cairo_fill(cr);
      snprintf(text, sizeof text, "%lld", (long long)count);
      if (text_width(cr, text) > m->cell - 2) continue;
      cairo_set_source_rgb(cr, fraction > 0.5 ? 1 : 0, fraction > 0.5 ? 1 : 0,
                           fraction > 0.5 ? 1 : 0);
      text_at(cr, x + (m->cell - text_width(cr, text)) / 2, y + m->cell / 2.0 + 4, text);
    }
  }
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, m->left, m->top, m->n * m->cell, m->n * m->cell);
  cairo_stroke(cr);
}

static void draw_class_labels(cairo_t *cr, const matrix_layout *m, const char *const *names) {
  char text[LABEL_CHARS + 1];
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (int c = 0; c < m->n; c++) {
    class_label(names, c, text);
    double mid = c * m->cell + m->cell / 2.0 + 4;
    text_at(cr, m->left - 6 - text_width(cr, text), m->top + mid, text);
    cairo_save(cr); /* column labels read upwards */
    cairo_move_to(cr, m->left + mid, m->top - 6);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, text);
    cairo_restore(cr);
  }
  text_at(cr, m->left, 18, "predicted class");
  cairo_save(cr);
  cairo_move_to(cr, 18, m->top + m->n * m->cell);
  cairo_rotate(cr, -M_PI / 2);
  cairo_show_text(cr, "true class");
  cairo_restore(cr);
}

cn_status report_confusion_chart(report_buf *b, const cn_evaluation *e, const char *const *names) {
  int n = cn_evaluation_class_count(e);
  if (n < 1 || n > REPORT_MAX_MATRIX)
    return cn_fail(CN_ERR_LIMIT, "report: %d classes (the heat map draws 1..%d)", n,
                   REPORT_MAX_MATRIX);
  cairo_surface_t *probe;
  cairo_t *cr;
  cn_status st = white_canvas(1, 1, &probe, &cr); /* measures the labels */
  if (st != CN_OK) return st;
  matrix_layout m = matrix_layout_of(cr, n, names);
  viz_canvas_free(probe, cr);
  cairo_surface_t *s;
  st = white_canvas(m.left + n * m.cell + 16, m.top + n * m.cell + 16, &s, &cr);
  if (st != CN_OK) return st;
  draw_cells(cr, &m, e);
  draw_class_labels(cr, &m, names);
  return finish(b, s, cr, "confusion matrix");
}

/* ---- thumbnails ---------------------------------------------------------------------------- */

/* The image scaled so that its longer side is size (area averaging when shrinking, nearest
 * when enlarging, so that tiny images stay sharp). */
static cn_status scaled(const cn_image *src, int size, cn_image *dst) {
  int longer = src->width > src->height ? src->width : src->height;
  double k = (double)size / longer;
  int w = (int)lround(src->width * k), h = (int)lround(src->height * k);
  return cn_image_resize(src, w < 1 ? 1 : w, h < 1 ? 1 : h,
                         k < 1 ? CN_RESIZE_AREA : CN_RESIZE_NEAREST, dst);
}

static cn_status image_surface(const cn_image *im, cairo_surface_t **out) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, im->width, im->height);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(s);
    return cn_fail(CN_ERR_NOMEM, "report: cannot make a thumbnail");
  }
  cairo_surface_flush(s);
  uint8_t *data = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int y = 0; y < im->height; y++)
    for (int x = 0; x < im->width; x++) {
      const uint8_t *p = im->pixels + ((size_t)y * im->width + x) * 3;
      uint32_t pixel = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
      memcpy(data + (size_t)y * stride + (size_t)x * 4, &pixel, 4);
    }
  cairo_surface_mark_dirty(s);
  *out = s;
  return CN_OK;
}

cn_status report_thumbnail(report_buf *b, const char *path, int size) {
  cn_image image = {0}, small = {0};
  cairo_surface_t *s = NULL;
  cn_status st = cn_image_load(path, &image);
  if (st == CN_OK) st = scaled(&image, size, &small);
  if (st == CN_OK) st = image_surface(&small, &s);
  if (st == CN_OK) st = report_img(b, s, "thumbnail");
  if (s) cairo_surface_destroy(s);
  cn_image_free(&image);
  cn_image_free(&small);
  return st;
}
