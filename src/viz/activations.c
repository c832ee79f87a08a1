/* cn_viz_activations: a layer's feature maps as a labelled grid of grey tiles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "viz/draw.h"

enum { MAP_TILE_TARGET = 96, DEFAULT_MAPS = 64, LEGEND_LINES_MAX = 3 };

typedef struct map_legend {
  char line[LEGEND_LINES_MAX][320];
  int n;
} map_legend;

static int maps_shown(const cn_feature_maps *m, const cn_viz_grid_options *o) {
  int max = o && o->max_tiles > 0 ? o->max_tiles : DEFAULT_MAPS;
  return m->channels < max ? m->channels : max;
}

static size_t positions(const cn_feature_maps *m) {
  return (size_t)m->height * (size_t)m->width;
}

/* The scale of channel c (values every `channels` floats), signed when the layer has negatives. */
static viz_scale map_scale(const cn_feature_maps *m, int c, int is_signed) {
  return viz_scale_of(m->values + c, positions(m), (size_t)m->channels, is_signed);
}

static viz_scale layer_scale(const cn_feature_maps *m) {
  viz_scale s = viz_scale_of(m->values, positions(m) * (size_t)m->channels, 1, 0);
  return s;
}

static void maps_legend(const cn_feature_maps *m, const cn_viz_grid_options *o,
                        const viz_scale *shared, map_legend *l) {
  l->n = 0;
  if (o && o->title) snprintf(l->line[l->n++], sizeof l->line[0], "%s", o->title);
  snprintf(l->line[l->n++], sizeof l->line[0],
           "%s: %d feature maps of %dx%d; showing channels 0-%d (numbered under each map)",
           m->layer, m->channels, m->height, m->width, maps_shown(m, o) - 1);
  const char *zero = shared->is_signed ? "; 128 = 0" : "";
  if (!o || o->scale == CN_VIZ_SCALE_SHARED) {
    char text[128];
    viz_scale_text(shared, "a", text, sizeof text);
    snprintf(l->line[l->n++], sizeof l->line[0], "shared scale: %s (max %s over the layer)%s", text,
             shared->is_signed ? "|a|" : "a", zero);
  } else if (shared->is_signed) {
    snprintf(l->line[l->n++], sizeof l->line[0],
             "per-map scale: pixel = 128 + 127 * a / max |a| of that map%s", zero);
  } else {
    snprintf(l->line[l->n++], sizeof l->line[0],
             "per-map scale: pixel = 255 * a / max a of that map");
  }
}

static int legend_width(const map_legend *l) {
  int width = 0;
  for (int i = 0; i < l->n; i++) {
    int w = viz_text_width(l->line[i]);
    width = w > width ? w : width;
  }
  return width;
}

static cn_status check_maps(const cn_feature_maps *m) {
  if (!m || !m->values || m->height < 1 || m->width < 1 || m->channels < 1)
    return cn_fail(CN_ERR_ARG, "cn_viz_activations: no feature maps");
  return CN_OK;
}

cn_status viz_activations_layout(const cn_feature_maps *m, const cn_viz_grid_options *o,
                                 viz_grid *g) {
  cn_status st = check_maps(m);
  if (st != CN_OK) return st;
  viz_scale shared = layer_scale(m);
  map_legend l;
  maps_legend(m, o, &shared, &l);
  return viz_grid_layout(g, maps_shown(m, o), 0, m->width, m->height, MAP_TILE_TARGET, l.n,
                         legend_width(&l), VIZ_LINE);
}

static void map_pixels(const cn_feature_maps *m, int c, const viz_scale *s, uint8_t *rgb) {
  for (size_t p = 0; p < positions(m); p++)
    rgb[p * 3] = rgb[p * 3 + 1] = rgb[p * 3 + 2] =
        viz_level(s, m->values[p * (size_t)m->channels + (size_t)c]);
}

static cn_status draw_maps(cairo_t *cr, const cn_feature_maps *m, const cn_viz_grid_options *o,
                           const viz_grid *g, const viz_scale *shared) {
  uint8_t *rgb = malloc(positions(m) * 3);
  if (!rgb) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_status st = CN_OK;
  for (int c = 0; st == CN_OK && c < maps_shown(m, o); c++) {
    int x, y;
    viz_scale s =
        o && o->scale == CN_VIZ_SCALE_PER_TILE ? map_scale(m, c, shared->is_signed) : *shared;
    map_pixels(m, c, &s, rgb);
    viz_tile_origin(g, c / g->cols, c % g->cols, &x, &y);
    st = viz_paint_tile(cr, rgb, m->width, m->height, x, y, g->zoom);
    char label[16];
    snprintf(label, sizeof label, "%d", c);
    const char *lines[1] = {label};
    viz_text_lines(cr, x, y + m->height * g->zoom, lines, 1);
  }
  free(rgb);
  return st;
}

cn_status cn_viz_activations(const cn_feature_maps *m, const cn_viz_grid_options *o,
                             const char *png_path) {
  if (!png_path) return cn_fail(CN_ERR_ARG, "cn_viz_activations: no output path");
  viz_grid g;
  cn_status st = viz_activations_layout(m, o, &g);
  if (st != CN_OK) return st;
  viz_scale shared = layer_scale(m);
  map_legend l;
  maps_legend(m, o, &shared, &l);
  cairo_surface_t *surface = NULL;
  cairo_t *cr = NULL;
  st = viz_canvas_new(g.width, g.height, &surface, &cr);
  if (st != CN_OK) return st;
  const char *lines[LEGEND_LINES_MAX];
  for (int i = 0; i < l.n; i++) lines[i] = l.line[i];
  viz_text_lines(cr, VIZ_MARGIN, VIZ_MARGIN, lines, l.n);
  st = draw_maps(cr, m, o, &g, &shared);
  if (st == CN_OK) st = viz_write_png(surface, png_path);
  viz_canvas_free(surface, cr);
  return st;
}
