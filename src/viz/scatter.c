/* cn_viz_scatter: points coloured by class on fitted axes, with a legend, drawn with cairo. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"

enum { SCATTER_W = 900, SCATTER_H = 700, SCATTER_MIN_W = 200, SCATTER_MIN_H = 150 };
enum { PLOT_LEFT = 64, PLOT_TOP = 40, PLOT_BOTTOM = 48, LEGEND_GAP = 16, SWATCH = 10 };
enum { MAX_LEGEND = 64, PALETTE = 10 };

/* Ten colours far apart in hue and lightness. */
static const double palette[PALETTE][3] = {
    {0.12, 0.38, 0.71}, {0.95, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
    {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.45, 0.45, 0.45},
    {0.74, 0.74, 0.13}, {0.09, 0.75, 0.81},
};

/* A step of 1, 2 or 5 times a power of ten giving about five ticks over span. */
static double tick_step(double span) {
  double raw = span / 5, p = pow(10, floor(log10(raw))), f = raw / p;
  return p * (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10);
}

typedef struct axis {
  double lo, hi; /* data range shown */
  double a, b;   /* pixel = a + b * value */
} axis;

static axis axis_fit(double lo, double hi, double from, double to) {
  if (!(hi > lo)) lo -= 1, hi += 1;
  double spare = 0.05 * (hi - lo);
  axis ax = {lo - spare, hi + spare, 0, 0};
  ax.b = (to - from) / (ax.hi - ax.lo);
  ax.a = from - ax.b * ax.lo;
  return ax;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double align) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s, &e);
  cairo_move_to(cr, x - align * e.x_advance, y);
  cairo_show_text(cr, s);
}

static void class_name(const cn_viz_scatter_options *o, int k, char *buf, size_t cap) {
  if (o->class_names && o->class_names[k])
    snprintf(buf, cap, "%s", o->class_names[k]);
  else
    snprintf(buf, cap, "%d", k);
}

/* Grid lines and tick values across one axis (vertical: the y axis). */
static void draw_ticks(cairo_t *cr, const axis *ax, int vertical, double x0, double y0, double x1,
                       double y1) {
  double step = tick_step(ax->hi - ax->lo);
  cairo_set_line_width(cr, 1);
  for (double v = ceil(ax->lo / step) * step; v <= ax->hi; v += step) {
    double p = floor(ax->a + ax->b * v) + 0.5;
    char label[32];
    snprintf(label, sizeof label, "%g", fabs(v) < step * 1e-6 ? 0.0 : v);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    if (vertical)
      cairo_move_to(cr, x0, p), cairo_line_to(cr, x1, p);
    else
      cairo_move_to(cr, p, y0), cairo_line_to(cr, p, y1);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (vertical)
      text_at(cr, x0 - 4, p + 4, label, 1.0);
    else
      text_at(cr, p, y1 + 14, label, 0.5);
  }
}

cn_status cn_viz_scatter(const float *xy, const int *classes, int64_t n,
                         const cn_viz_scatter_options *o, const char *png_path) {
  cn_viz_scatter_options d = {0};
  if (!o) o = &d;
  if (!png_path) return cn_fail(CN_ERR_ARG, "scatter: no output path");
  if (n < 0 || (n > 0 && !xy)) return cn_fail(CN_ERR_ARG, "scatter: no points");
  int w = o->width ? o->width : SCATTER_W, h = o->height ? o->height : SCATTER_H;
  if (w < SCATTER_MIN_W || h < SCATTER_MIN_H || w > VIZ_MAX_SIDE || h > VIZ_MAX_SIDE)
    return cn_fail(CN_ERR_ARG,
                   "scatter: a picture of %d x %d pixels (at least %d x %d, at most %d)", w, h,
                   SCATTER_MIN_W, SCATTER_MIN_H, (int)VIZ_MAX_SIDE);
  if (o->classes < 0 || o->classes > MAX_LEGEND)
    return cn_fail(CN_ERR_ARG, "scatter: %d classes (0 to %d)", o->classes, (int)MAX_LEGEND);
  float radius = o->point_radius > 0 ? o->point_radius : 1.5f;
  int n_classes = o->classes;
  double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
  for (int64_t i = 0; i < n; i++) {
    int k = classes ? classes[i] : 0;
    if (k < 0 || (o->classes && k >= o->classes))
      return cn_fail(CN_ERR_ARG, "scatter: point %lld has class %d, outside 0..%d", (long long)i, k,
                     (o->classes ? o->classes : MAX_LEGEND) - 1);
    if (!o->classes && k >= n_classes) n_classes = k + 1;
    if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
    for (int c = 0; c < 2; c++) {
      lo[c] = fmin(lo[c], xy[2 * i + c]);
      hi[c] = fmax(hi[c], xy[2 * i + c]);
    }
  }
  if (n_classes > MAX_LEGEND)
    return cn_fail(CN_ERR_ARG, "scatter: class %d (at most %d classes)", n_classes - 1,
                   (int)MAX_LEGEND);
  for (int c = 0; c < 2; c++)
    if (!(lo[c] <= hi[c])) lo[c] = 0, hi[c] = 0; /* no finite point: an empty unit plot */

  cairo_surface_t *surface;
  cairo_t *cr;
  cn_status st = viz_canvas_new(w, h, &surface, &cr);
  if (st != CN_OK) return st;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, VIZ_FONT);

  double legend_w = 0;
  for (int k = 0; k < n_classes; k++) {
    char name[128];
    class_name(o, k, name, sizeof name);
    cairo_text_extents_t e;
    cairo_text_extents(cr, name, &e);
    legend_w = fmax(legend_w, SWATCH + 6 + e.x_advance);
  }
  double x0 = PLOT_LEFT, y0 = PLOT_TOP,
         x1 = w - LEGEND_GAP - (n_classes ? legend_w + 2 * LEGEND_GAP : 0);
  double y1 = h - PLOT_BOTTOM;
  if (x1 < x0 + 50) x1 = x0 + 50;
  axis ax = axis_fit(lo[0], hi[0], x0, x1), ay = axis_fit(lo[1], hi[1], y1, y0);

  draw_ticks(cr, &ax, 0, x0, y0, x1, y1);
  draw_ticks(cr, &ay, 1, x0, y0, x1, y1);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, x0 + 0.5, y0 + 0.5, x1 - x0, y1 - y0);
  cairo_stroke(cr);
  if (o->title) text_at(cr, x0, PLOT_TOP - 14, o->title, 0);
  if (o->x_label) text_at(cr, (x0 + x1) / 2, h - 10, o->x_label, 0.5);
  if (o->y_label) {
    cairo_save(cr);
    cairo_translate(cr, 16, (y0 + y1) / 2);
    cairo_rotate(cr, -M_PI / 2);
    text_at(cr, 0, 0, o->y_label, 0.5);
    cairo_restore(cr);
  }

  cairo_save(cr);
  cairo_rectangle(cr, x0, y0, x1 - x0, y1 - y0);
  cairo_clip(cr);
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) continue;
    const double *rgb = palette[(classes ? classes[i] : 0) % PALETTE];
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    cairo_arc(cr, ax.a + ax.b * xy[2 * i], ay.a + ay.b * xy[2 * i + 1], radius, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  cairo_restore(cr);

  for (int k = 0; k < n_classes; k++) {
    double lx = x1 + LEGEND_GAP, ly = y0 + 8 + k * VIZ_LINE;
    char name[128];
    class_name(o, k, name, sizeof name);
    cairo_set_source_rgb(cr, palette[k % PALETTE][0], palette[k % PALETTE][1],
                         palette[k % PALETTE][2]);
    cairo_rectangle(cr, lx, ly, SWATCH, SWATCH);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text_at(cr, lx + SWATCH + 6, ly + SWATCH, name, 0);
  }

  cairo_status_t status = cairo_status(cr);
  if (status != CAIRO_STATUS_SUCCESS)
    st = cn_fail(status == CAIRO_STATUS_NO_MEMORY ? CN_ERR_NOMEM : CN_ERR_ARG, "scatter: %s",
                 cairo_status_to_string(status));
  else
    st = viz_write_png(surface, png_path);
  viz_canvas_free(surface, cr);
  return st;
}
