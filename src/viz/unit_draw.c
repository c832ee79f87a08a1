/* cn_viz_unit(s): images activation maximisation grew, back in pixel space, in a labelled grid; and
 * the input geometry (layout and valid range) that both the ascent and the picture use. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"

/* One unit drawn twice its size (for a 224-pixel input); several at their size. */
enum { UNIT_ZOOM_TARGET = 448, UNIT_GRID_TARGET = 224, UNIT_LEGEND_LINES = 3 };

/* The valid range of each channel: pixel values 0 and 255 through the preprocessing, which is
 * linear per channel (caffe also reorders RGB to BGR, so low/high come in the model's order). */
cn_status viz_input_geometry_of(const cn_model *model, viz_input_geometry *g) {
  cn_input_spec spec = cn_model_input_spec(model);
  cn_shape in = cn_model_input_shape(model);
  memset(g, 0, sizeof *g);
  g->height = spec.height;
  g->width = spec.width;
  g->channels = spec.channels;
  g->channels_first = spec.channels_first;
  if (spec.channels < 1 || spec.channels > VIZ_MAX_INPUT_CHANNELS || spec.height < 1 ||
      spec.width < 1 || cn_shape_numel(&in) != (int64_t)spec.height * spec.width * spec.channels)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: the input is not an image of a known size",
                   cn_model_name(model));
  float black[3] = {0, 0, 0}, white[3] = {255, 255, 255};
  cn_preprocess_apply(spec.preprocess, black, 1);
  cn_preprocess_apply(spec.preprocess, white, 1);
  g->bgr = spec.preprocess == CN_PRE_CAFFE && spec.channels == 3;
  for (int c = 0; c < g->channels; c++) {
    g->low[c] = black[c < 3 ? c : 0];
    g->high[c] = white[c < 3 ? c : 0];
    g->range += (g->high[c] - g->low[c]) / (float)g->channels;
  }
  return CN_OK;
}

static size_t index_of(const viz_input_geometry *g, size_t p, int c) {
  if (g->channels_first) return (size_t)c * g->height * g->width + p;
  return p * (size_t)g->channels + (size_t)c;
}

/* Model channel c back to 0..255; grey inputs draw grey, BGR inputs draw as RGB. */
static void to_pixels(const viz_input_geometry *g, const float *image, uint8_t *rgb) {
  size_t positions = (size_t)g->height * g->width;
  for (size_t p = 0; p < positions; p++)
    for (int k = 0; k < 3; k++) {
      int c = g->channels < 3 ? 0 : g->bgr ? 2 - k : k;
      float v = 255.0f * (image[index_of(g, p, c)] - g->low[c]) / (g->high[c] - g->low[c]);
      v = isfinite(v) ? v : 0.0f;
      rgb[p * 3 + (size_t)k] = (uint8_t)lrintf(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
    }
}

/* One legend for the picture; the numbers of each unit go under its tile. */
static void unit_legend(const cn_model *model, const cn_unit_result *r, int n,
                        char line[UNIT_LEGEND_LINES][160]) {
  snprintf(line[0], 160, "%s: layer %s (%d units), %d steps from faint noise", cn_model_name(model),
           r[0].layer, r[0].units, r[0].steps);
  snprintf(line[1], 160, "%s: unit: mean activation for the noise -> for the image (ratio)",
           n > 1 ? "under each" : "below");
  snprintf(line[2], 160, "pixels: the model's preprocessing undone (%s)",
           cn_preprocess_name(cn_model_input_spec(model).preprocess));
}

static void tile_label(const cn_unit_result *r, char *buf, size_t cap) {
  char ratio[32] = "n/a";
  if (r->start > 0.0f) snprintf(ratio, sizeof ratio, "x%.1f", (double)(r->end / r->start));
  snprintf(buf, cap, "unit %d: %.3g -> %.3g (%s)", r->unit, (double)r->start, (double)r->end,
           ratio);
}

static int legend_width_of(char line[UNIT_LEGEND_LINES][160], const char **lines) {
  int width = 0;
  for (int i = 0; i < UNIT_LEGEND_LINES; i++) {
    lines[i] = line[i];
    int w = viz_text_width(line[i]);
    width = w > width ? w : width;
  }
  return width;
}

static cn_status draw_tiles(cairo_t *cr, const viz_input_geometry *geo, const viz_grid *g,
                            const float *const *images, const cn_unit_result *r, int n) {
  uint8_t *rgb = malloc((size_t)geo->height * geo->width * 3);
  if (!rgb) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = CN_OK;
  for (int i = 0; st == CN_OK && i < n; i++) {
    int x, y;
    viz_tile_origin(g, i / g->cols, i % g->cols, &x, &y);
    to_pixels(geo, images[i], rgb);
    st = viz_paint_tile(cr, rgb, geo->width, geo->height, x, y, g->zoom);
    char label[96];
    tile_label(&r[i], label, sizeof label);
    const char *lines[1] = {label};
    viz_text_lines(cr, x, y + geo->height * g->zoom, lines, 1);
  }
  free(rgb);
  return st;
}

static cn_status draw_units(const cn_model *model, const viz_input_geometry *geo,
                            const float *const *images, const cn_unit_result *r, int n,
                            const char *path) {
  char text[UNIT_LEGEND_LINES][160];
  const char *lines[UNIT_LEGEND_LINES];
  unit_legend(model, r, n, text);
  int legend_width = legend_width_of(text, lines);
  viz_grid g;
  cn_status st = viz_grid_layout(&g, n, 0, geo->width, geo->height,
                                 n > 1 ? UNIT_GRID_TARGET : UNIT_ZOOM_TARGET, UNIT_LEGEND_LINES,
                                 legend_width, VIZ_LINE);
  cairo_surface_t *surface = NULL;
  cairo_t *cr = NULL;
  if (st == CN_OK) st = viz_canvas_new(g.width, g.height, &surface, &cr);
  if (st != CN_OK) return st;
  viz_text_lines(cr, VIZ_MARGIN, VIZ_MARGIN, lines, UNIT_LEGEND_LINES);
  st = draw_tiles(cr, geo, &g, images, r, n);
  if (st == CN_OK) st = viz_write_png(surface, path);
  viz_canvas_free(surface, cr);
  return st;
}

cn_status cn_viz_units(const cn_model *model, const float *const *images,
                       const cn_unit_result *results, int n, const char *png_path) {
  if (!model || !images || !results || n < 1 || !png_path)
    return cn_fail(CN_ERR_ARG, "cn_viz_units: no model, images, results or path");
  for (int i = 0; i < n; i++)
    if (!images[i]) return cn_fail(CN_ERR_ARG, "cn_viz_units: image %d is missing", i);
  viz_input_geometry geo;
  cn_status st = viz_input_geometry_of(model, &geo);
  if (st != CN_OK) return st;
  return draw_units(model, &geo, images, results, n, png_path);
}

cn_status cn_viz_unit(const cn_model *model, const float *image, const cn_unit_result *result,
                      const char *png_path) {
  return cn_viz_units(model, &image, result, 1, png_path);
}
