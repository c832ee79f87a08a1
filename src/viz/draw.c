/* Drawing helpers over cairo (draw.h): scales, grid geometry, tiles, text, atomic PNG. */
#include "viz/draw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_file.h"
#include "core/error.h"

/* ---- scales -------------------------------------------------------------------------------- */

viz_scale viz_scale_from_max(double max, int is_signed) {
  viz_scale s = {.max = max, .is_signed = is_signed};
  s.offset = is_signed ? 128.0 : 0.0;
  s.gain = max > 0.0 ? (is_signed ? 127.0 : 255.0) / max : 0.0;
  return s;
}

viz_scale viz_scale_of(const float *v, size_t n, size_t stride, int force_signed) {
  double max = 0.0;
  int negative = force_signed;
  for (size_t i = 0; i < n; i++) {
    double x = v[i * stride];
    if (!isfinite(x)) continue;
    negative |= x < 0.0;
    if (fabs(x) > max) max = fabs(x);
  }
  return viz_scale_from_max(max, negative);
}

viz_scale viz_scale_merge(viz_scale s, viz_scale t) {
  return viz_scale_from_max(s.max > t.max ? s.max : t.max, s.is_signed || t.is_signed);
}

uint8_t viz_level(const viz_scale *s, float v) {
  double level = isfinite(v) ? s->offset + s->gain * v : s->offset;
  level = floor(level + 0.5);
  return (uint8_t)(level < 0.0 ? 0.0 : level > 255.0 ? 255.0 : level);
}

void viz_scale_text(const viz_scale *s, const char *symbol, char *buf, size_t cap) {
  if (s->is_signed)
    snprintf(buf, cap, "pixel = 128 + 127 * %s / %.6g", symbol, s->max);
  else
    snprintf(buf, cap, "pixel = 255 * %s / %.6g", symbol, s->max);
}

/* ---- geometry ------------------------------------------------------------------------------ */

cn_status viz_grid_layout(viz_grid *g, int n, int cols, int tile_w, int tile_h, int target,
                          int legend_lines, int legend_width, int label_h) {
  memset(g, 0, sizeof *g);
  if (n < 1 || tile_w < 1 || tile_h < 1) return cn_fail(CN_ERR_ARG, "nothing to draw");
  if (cols <= 0) cols = (int)ceil(sqrt((double)n));
  g->cols = cols < n ? cols : n;
  g->rows = (n + g->cols - 1) / g->cols;
  g->tile_w = tile_w;
  g->tile_h = tile_h;
  int side = tile_w > tile_h ? tile_w : tile_h;
  g->zoom = target / side;
  g->zoom = g->zoom < 1 ? 1 : g->zoom > 16 ? 16 : g->zoom;
  g->gap = 2 + g->zoom / 4;
  g->label_h = label_h;
  g->left = VIZ_MARGIN;
  g->top = VIZ_MARGIN + legend_lines * VIZ_LINE + VIZ_MARGIN / 2;
  int64_t grid_w = (int64_t)g->cols * (tile_w * g->zoom + g->gap) - g->gap;
  int64_t grid_h = (int64_t)g->rows * (tile_h * g->zoom + g->gap + label_h) - g->gap;
  int64_t width = VIZ_MARGIN * 2 + (grid_w > legend_width ? grid_w : legend_width);
  int64_t height = g->top + grid_h + VIZ_MARGIN;
  if (width > VIZ_MAX_SIDE || height > VIZ_MAX_SIDE)
    return cn_fail(CN_ERR_LIMIT, "a picture of %lld x %lld pixels is too large (at most %d a side)",
                   (long long)width, (long long)height, VIZ_MAX_SIDE);
  g->width = (int)width;
  g->height = (int)height;
  return CN_OK;
}

void viz_tile_origin(const viz_grid *g, int row, int col, int *x, int *y) {
  *x = g->left + col * (g->tile_w * g->zoom + g->gap);
  *y = g->top + row * (g->tile_h * g->zoom + g->gap + g->label_h);
}

/* ---- canvas, text, tiles ------------------------------------------------------------------- */

static cn_status cairo_failure(cairo_status_t status, const char *what) {
  return cn_fail(status == CAIRO_STATUS_NO_MEMORY ? CN_ERR_NOMEM : CN_ERR_ARG, "%s: %s", what,
                 cairo_status_to_string(status));
}

cn_status viz_canvas_new(int width, int height, cairo_surface_t **surface, cairo_t **cr) {
  *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
  *cr = cairo_create(*surface);
  cairo_status_t status = cairo_status(*cr);
  if (status != CAIRO_STATUS_SUCCESS) {
    viz_canvas_free(*surface, *cr);
    *surface = NULL;
    *cr = NULL;
    return cairo_failure(status, "drawing");
  }
  /* Pale blue, no grey level: a white (or black) tile stays visible against it. */
  cairo_set_source_rgb(*cr, 0.85, 0.9, 1.0);
  cairo_paint(*cr);
  return CN_OK;
}

void viz_canvas_free(cairo_surface_t *surface, cairo_t *cr) {
  if (cr) cairo_destroy(cr);
  if (surface) cairo_surface_destroy(surface);
}

static void legend_font(cairo_t *cr) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, VIZ_FONT);
}

int viz_text_width(const char *text) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t *cr = cairo_create(s);
  legend_font(cr);
  cairo_text_extents_t e;
  cairo_text_extents(cr, text, &e);
  cairo_destroy(cr);
  cairo_surface_destroy(s);
  return (int)ceil(e.x_advance);
}

void viz_text_lines(cairo_t *cr, int x, int y, const char *const *lines, int n) {
  legend_font(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  for (int i = 0; i < n; i++) {
    cairo_move_to(cr, x, y + (i + 1) * VIZ_LINE - 4);
    cairo_show_text(cr, lines[i]);
  }
}

cn_status viz_paint_tile(cairo_t *cr, const uint8_t *rgb, int w, int h, int x, int y, int zoom) {
  cairo_surface_t *tile = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(tile) != CAIRO_STATUS_SUCCESS) {
    cairo_status_t status = cairo_surface_status(tile);
    cairo_surface_destroy(tile);
    return cairo_failure(status, "tile");
  }
  cairo_surface_flush(tile);
  uint8_t *data = cairo_image_surface_get_data(tile);
  int stride = cairo_image_surface_get_stride(tile);
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      const uint8_t *p = rgb + ((size_t)r * w + c) * 3;
      uint32_t pixel = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
      memcpy(data + (size_t)r * stride + (size_t)c * 4, &pixel, 4);
    }
  cairo_surface_mark_dirty(tile);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, zoom, zoom);
  cairo_set_source_surface(cr, tile, 0, 0);
  /* Nearest: each value fills its square with exactly its level (what the tests read back). */
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_rectangle(cr, 0, 0, w, h);
  cairo_fill(cr);
  cairo_restore(cr);
  cairo_surface_destroy(tile);
  return CN_OK;
}

/* ---- PNG ----------------------------------------------------------------------------------- */

static cairo_status_t sink_write(void *closure, const unsigned char *data, unsigned int n) {
  cn_atomic_file *f = closure;
  return cn_atomic_write(f, data, n) == CN_OK ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

cn_status viz_write_png(cairo_surface_t *surface, const char *path) {
  cairo_surface_flush(surface);
  cn_atomic_file f;
  cn_status st = cn_atomic_open(&f, path);
  if (st != CN_OK) return st;
  cairo_status_t status = cairo_surface_write_to_png_stream(surface, sink_write, &f);
  if (status != CAIRO_STATUS_SUCCESS) {
    cn_atomic_abort(&f);
    return status == CAIRO_STATUS_WRITE_ERROR ? CN_ERR_IO : cairo_failure(status, path);
  }
  return cn_atomic_commit(&f);
}
