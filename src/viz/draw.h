/* src/viz: what a model computes inside (Grad-CAM, feature maps) and pictures of it drawn with
 * cairo. Calls train/ (the trainer keeps every activation and any layer's gradient), model/,
 * ops/, image/, core/ and kernels/.
 *
 * Drawing helpers over cairo: value-to-grey scales, the geometry of tile grids (which the tests
 * use to read pictures back), tiles, text and atomic PNG output. */
#ifndef CN_VIZ_DRAW_H
#define CN_VIZ_DRAW_H

#include <cairo.h>
#include <stddef.h>
#include <stdint.h>

#include "convnet/viz.h"

/* pixel = round(offset + gain * v), clamped to 0..255. */
typedef struct viz_scale {
  double offset, gain;
  double max; /* the m of the legend: largest |v| (or v) */
  int is_signed;
} viz_scale;

/* The scale for n values read every `stride` floats from v: signed (128 + 127 v / m) when any
 * value is negative or force_signed, else unsigned (255 v / m). */
viz_scale viz_scale_of(const float *v, size_t n, size_t stride, int force_signed);
/* The scale of largest value max (|v| when is_signed). */
viz_scale viz_scale_from_max(double max, int is_signed);
/* Widens s to cover t (same signedness: signed wins). */
viz_scale viz_scale_merge(viz_scale s, viz_scale t);
uint8_t viz_level(const viz_scale *s, float v);
/* The legend's statement of a scale, e.g. "pixel = 128 + 127 * v / 0.8123". */
void viz_scale_text(const viz_scale *s, const char *symbol, char *buf, size_t cap);

/* Tiles of tile_w x tile_h source pixels, each drawn zoom x zoom, in rows x cols below a legend
 * of `legend_lines` lines; label_h pixels under each tile for its label. */
typedef struct viz_grid {
  int rows, cols;
  int tile_w, tile_h, zoom;
  int gap, label_h;
  int left, top;     /* the first tile's top-left corner */
  int width, height; /* the whole picture */
} viz_grid;

enum { VIZ_MARGIN = 8, VIZ_FONT = 12, VIZ_LINE = 16, VIZ_MAX_SIDE = 16384 };

/* Lays out n tiles in cols columns (0: a near-square grid), zoomed so that a tile is about
 * `target` pixels wide (at least 1x, at most 16x); legend_width: the legend text's width. */
cn_status viz_grid_layout(viz_grid *g, int n, int cols, int tile_w, int tile_h, int target,
                          int legend_lines, int legend_width, int label_h);
/* Top-left corner of tile (row, col) in the picture. */
void viz_tile_origin(const viz_grid *g, int row, int col, int *x, int *y);

/* The grids of cn_viz_filters and cn_viz_activations, as they will be drawn. Filters: a grey
 * Conv2D of several input channels draws filter f, input channel c at (row f, col c); colour,
 * depthwise and one-channel kernels, and feature maps, draw tile t at (row t / cols, col t % cols).
 */
cn_status viz_filters_layout(const cn_model *model, const char *layer, const cn_viz_grid_options *o,
                             viz_grid *g);
cn_status viz_activations_layout(const cn_feature_maps *maps, const cn_viz_grid_options *o,
                                 viz_grid *g);

/* A pale blue RGB picture of the grid's size, with a context on it. */
cn_status viz_canvas_new(int width, int height, cairo_surface_t **surface, cairo_t **cr);
void viz_canvas_free(cairo_surface_t *surface, cairo_t *cr);
/* Width in pixels of text in the legend's font. */
int viz_text_width(const char *text);
/* Draws lines of text from (x, y) down, one per VIZ_LINE pixels, black. */
void viz_text_lines(cairo_t *cr, int x, int y, const char *const *lines, int n);
/* Paints a tile of w x h pixels (rgb: 3 bytes a pixel, row-major) at (x, y), each pixel as a
 * zoom x zoom square of exactly that colour. */
cn_status viz_paint_tile(cairo_t *cr, const uint8_t *rgb, int w, int h, int x, int y, int zoom);
/* The model's input image: its size and layout, and per channel (in the model's order) the valid
 * range, what pixel values 0 and 255 become under its preprocessing. range: the mean span. */
enum { VIZ_MAX_INPUT_CHANNELS = 4 };
typedef struct viz_input_geometry {
  int height, width, channels, channels_first;
  int bgr; /* the model reads B, G, R (caffe preprocessing) */
  float low[VIZ_MAX_INPUT_CHANNELS], high[VIZ_MAX_INPUT_CHANNELS];
  float range;
} viz_input_geometry;
cn_status viz_input_geometry_of(const cn_model *model, viz_input_geometry *g);

/* Writes the surface as PNG through a temporary file beside path (fsync, rename). */
cn_status viz_write_png(cairo_surface_t *surface, const char *path);

#endif
