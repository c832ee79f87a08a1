/* cn_viz_gradcam: a Grad-CAM map over its photo. The coarse map is scaled to 0..255 by its
 * maximum, upsampled to the photo by cairo's bilinear filter, coloured with the jet colour map and
 * blended over the photo; the caption goes on a dark band in the top-left corner. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"

#define HEAT_ALPHA 0.45 /* enough colour to read the map, enough photo to see what it covers */

static cn_status surface_ok(cairo_surface_t *s, const char *what) {
  cairo_status_t status = cairo_surface_status(s);
  if (status == CAIRO_STATUS_SUCCESS) return CN_OK;
  return cn_fail(status == CAIRO_STATUS_NO_MEMORY ? CN_ERR_NOMEM : CN_ERR_ARG, "%s: %s", what,
                 cairo_status_to_string(status));
}

static uint32_t *row_of(cairo_surface_t *s, int y) {
  return (uint32_t *)(cairo_image_surface_get_data(s) +
                      (size_t)y * cairo_image_surface_get_stride(s));
}

static cairo_surface_t *photo_surface(const cn_image *photo) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, photo->width, photo->height);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return s;
  cairo_surface_flush(s);
  for (int y = 0; y < photo->height; y++) {
    uint32_t *row = row_of(s, y);
    const uint8_t *p = photo->pixels + (size_t)y * photo->width * 3;
    for (int x = 0; x < photo->width; x++, p += 3)
      row[x] = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
  }
  cairo_surface_mark_dirty(s);
  return s;
}

/* The map as 8-bit levels 255 * v / max. */
static cairo_surface_t *coarse_surface(const cn_gradcam *cam) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_A8, cam->width, cam->height);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return s;
  size_t n = (size_t)cam->width * cam->height;
  float max = 0.0f;
  for (size_t i = 0; i < n; i++)
    if (isfinite(cam->map[i]) && cam->map[i] > max) max = cam->map[i];
  cairo_surface_flush(s);
  for (int y = 0; y < cam->height; y++) {
    uint8_t *row = (uint8_t *)row_of(s, y);
    for (int x = 0; x < cam->width; x++) {
      float v = cam->map[(size_t)y * cam->width + x];
      row[x] = max > 0.0f && isfinite(v) ? (uint8_t)lrintf(255.0f * v / max) : 0;
    }
  }
  cairo_surface_mark_dirty(s);
  return s;
}

/* The coarse levels resampled to width x height (pixel centres aligned, edges extended). */
static cairo_surface_t *upsampled(cairo_surface_t *coarse, int width, int height) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_A8, width, height);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return s;
  cairo_t *cr = cairo_create(s);
  cairo_scale(cr, (double)width / cairo_image_surface_get_width(coarse),
              (double)height / cairo_image_surface_get_height(coarse));
  cairo_set_source_surface(cr, coarse, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_BILINEAR);
  cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
  cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
  cairo_paint(cr);
  cairo_destroy(cr);
  cairo_surface_flush(s);
  return s;
}

/* Jet: blue (0) through cyan, yellow to red (1), by its piecewise-linear definition. */
static uint32_t jet(double t) {
  double c[3] = {1.5 - fabs(4.0 * t - 3.0), 1.5 - fabs(4.0 * t - 2.0), 1.5 - fabs(4.0 * t - 1.0)};
  uint32_t rgb = 0;
  for (int i = 0; i < 3; i++) {
    double v = c[i] < 0.0 ? 0.0 : c[i] > 1.0 ? 1.0 : c[i];
    rgb = rgb << 8 | (uint32_t)lrint(v * 255.0);
  }
  return rgb;
}

static cairo_surface_t *coloured(cairo_surface_t *levels) {
  int w = cairo_image_surface_get_width(levels), h = cairo_image_surface_get_height(levels);
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return s;
  uint32_t lut[256];
  for (int i = 0; i < 256; i++) lut[i] = jet(i / 255.0);
  cairo_surface_flush(s);
  for (int y = 0; y < h; y++) {
    const uint8_t *in = (const uint8_t *)row_of(levels, y);
    uint32_t *out = row_of(s, y);
    for (int x = 0; x < w; x++) out[x] = lut[in[x]];
  }
  cairo_surface_mark_dirty(s);
  return s;
}

static cn_status heat_surface(const cn_gradcam *cam, int width, int height, cairo_surface_t **out) {
  cairo_surface_t *coarse = coarse_surface(cam);
  cn_status st = surface_ok(coarse, "Grad-CAM map");
  cairo_surface_t *levels = st == CN_OK ? upsampled(coarse, width, height) : NULL;
  if (levels) st = surface_ok(levels, "Grad-CAM map");
  *out = st == CN_OK ? coloured(levels) : NULL;
  if (*out) st = surface_ok(*out, "Grad-CAM map");
  cairo_surface_destroy(coarse);
  if (levels) cairo_surface_destroy(levels);
  return st;
}

static void draw_caption(cairo_t *cr, const char *caption, int width) {
  double size = width / 32.0;
  size = size < 11.0 ? 11.0 : size > 40.0 ? 40.0 : size;
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, size);
  cairo_font_extents_t fe;
  cairo_text_extents_t te;
  cairo_font_extents(cr, &fe);
  cairo_text_extents(cr, caption, &te);
  double pad = size / 3.0;
  cairo_set_source_rgba(cr, 0, 0, 0, 0.65);
  cairo_rectangle(cr, 0, 0, te.x_advance + 2 * pad, fe.ascent + fe.descent + 2 * pad);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_move_to(cr, pad, pad + fe.ascent);
  cairo_show_text(cr, caption);
}

static cn_status check_args(const cn_image *photo, const cn_gradcam *cam, const char *path) {
  if (!photo || !photo->pixels || photo->width < 1 || photo->height < 1 || !cam || !cam->map ||
      cam->width < 1 || cam->height < 1 || !path)
    return cn_fail(CN_ERR_ARG, "cn_viz_gradcam: no photo, map or path");
  if (photo->width > VIZ_MAX_SIDE || photo->height > VIZ_MAX_SIDE)
    return cn_fail(CN_ERR_LIMIT, "%s: a picture of %d x %d pixels is too large (at most %d a side)",
                   path, photo->width, photo->height, VIZ_MAX_SIDE);
  return CN_OK;
}

cn_status cn_viz_gradcam(const cn_image *photo, const cn_gradcam *cam, const char *caption,
                         const char *png_path) {
  cn_status st = check_args(photo, cam, png_path);
  if (st != CN_OK) return st;
  cairo_surface_t *canvas = photo_surface(photo), *heat = NULL;
  st = surface_ok(canvas, png_path);
  if (st == CN_OK) st = heat_surface(cam, photo->width, photo->height, &heat);
  if (st == CN_OK) {
    cairo_t *cr = cairo_create(canvas);
    cairo_set_source_surface(cr, heat, 0, 0);
    cairo_paint_with_alpha(cr, HEAT_ALPHA);
    if (caption && *caption) draw_caption(cr, caption, photo->width);
    st = surface_ok(canvas, png_path);
    cairo_destroy(cr);
  }
  if (st == CN_OK) st = viz_write_png(canvas, png_path);
  if (heat) cairo_surface_destroy(heat);
  cairo_surface_destroy(canvas);
  return st;
}
