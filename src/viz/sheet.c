/* cn_viz_contact_sheet: photos side by side, each fitted into a square cell (area resize, aspect
 * kept, centred), with two lines of text under each: its caption and its file name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"

enum { SHEET_GAP = 8, SHEET_MAX_COLS = 8, SHEET_TEXT_LINES = 2 };

/* The file name without folders, cut with "..." to fit width pixels. */
static void fitted_name(const char *path, int width, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  snprintf(buf, cap, "%s", slash ? slash + 1 : path);
  size_t n = strlen(buf);
  while (n > 4 && viz_text_width(buf) > width) {
    n--;
    memcpy(buf + n - 3, "...", 4);
  }
}

/* Draws image i (already decoded) into its cell at (x, y). */
static cn_status draw_cell(cairo_t *cr, const cn_image *photo, int cell, int x, int y) {
  int w = photo->width, h = photo->height;
  if (w >= h)
    h = (int)((long long)h * cell / w), w = cell;
  else
    w = (int)((long long)w * cell / h), h = cell;
  if (w < 1) w = 1;
  if (h < 1) h = 1;
  cn_image small = {0};
  cn_status st = cn_image_resize(photo, w, h, CN_RESIZE_AREA, &small);
  if (st == CN_OK)
    st = viz_paint_tile(cr, small.pixels, w, h, x + (cell - w) / 2, y + (cell - h) / 2, 1);
  cn_image_free(&small);
  return st;
}

cn_status cn_viz_contact_sheet(const char *const *paths, const char *const *captions, int n,
                               int cell, const char *png_path) {
  if (!paths || !png_path || n < 1) return cn_fail(CN_ERR_ARG, "contact sheet: no images");
  if (cell < 16 || cell > 1024)
    return cn_fail(CN_ERR_ARG, "contact sheet: cell %d pixels (16 to 1024)", cell);
  int cols = n < SHEET_MAX_COLS ? n : SHEET_MAX_COLS, rows = (n + cols - 1) / cols;
  int step_x = cell + SHEET_GAP, step_y = cell + SHEET_TEXT_LINES * VIZ_LINE + SHEET_GAP;
  int width = SHEET_GAP + cols * step_x, height = SHEET_GAP + rows * step_y;
  if (height > VIZ_MAX_SIDE)
    return cn_fail(CN_ERR_LIMIT, "contact sheet: %d images make a picture too tall", n);
  cairo_surface_t *surface;
  cairo_t *cr;
  cn_status st = viz_canvas_new(width, height, &surface, &cr);
  if (st != CN_OK) return st;
  for (int i = 0; st == CN_OK && i < n; i++) {
    int x = SHEET_GAP + (i % cols) * step_x, y = SHEET_GAP + (i / cols) * step_y;
    cn_image photo = {0};
    st = cn_image_load(paths[i], &photo);
    if (st == CN_OK) st = draw_cell(cr, &photo, cell, x, y);
    cn_image_free(&photo);
    char name[256];
    fitted_name(paths[i], cell, name, sizeof name);
    const char *lines[SHEET_TEXT_LINES] = {captions && captions[i] ? captions[i] : "", name};
    if (st == CN_OK) viz_text_lines(cr, x, y + cell, lines, SHEET_TEXT_LINES);
  }
  if (st == CN_OK) st = viz_write_png(surface, png_path);
  viz_canvas_free(surface, cr);
  return st;
}
