/* cn_viz_filters: a convolution's kernels as a grid of tiles, with a legend stating the scale. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "ops/ops.h"
#include "viz/draw.h"

enum { FILTER_TILE_TARGET = 48, DEFAULT_TILES = 64, DEFAULT_CHANNELS = 16, LEGEND_MAX = 4 };

/* The kernel as stored (HWIO): Conv2D (kh, kw, in, out); DepthwiseConv2D (kh, kw, in, mult)
 * with output channel f = c * mult + m reading input channel c alone. */
typedef struct kernel_view {
  const float *w;
  int kh, kw, in, out;
  int mult;   /* > 0: depthwise */
  int colour; /* three input channels drawn as one colour tile */
  int bgr;    /* the model reads BGR (caffe preprocessing): channel 2 is red */
  int shown, shown_channels;
  const char *name, *type;
} kernel_view;

static float kernel_at(const kernel_view *k, int f, int c, int y, int x) {
  size_t at = (size_t)y * k->kw + x;
  if (k->mult) return k->w[(at * k->in + f / k->mult) * k->mult + f % k->mult];
  return k->w[(at * k->in + c) * k->out + f];
}

static int channels_of(const kernel_view *k) {
  return k->mult ? 1 : k->in;
}

static cn_status not_convolution(const cn_model *model, const cn_node *n) {
  return cn_fail(CN_ERR_ARG, "%s: layer %s (%s) is not a convolution (Conv2D or DepthwiseConv2D)",
                 cn_model_name(model), n->name, n->type);
}

static cn_status view_kernel(const cn_model *model, const char *layer, const cn_viz_grid_options *o,
                             kernel_view *k) {
  memset(k, 0, sizeof *k);
  if (!layer) return cn_fail(CN_ERR_ARG, "%s: no layer given", cn_model_name(model));
  int i = cn_graph_find(model->graph, layer);
  if (i < 0)
    return cn_fail(CN_ERR_ARG, "%s: no layer named \"%.64s\"", cn_model_name(model), layer);
  cn_node *n = &model->graph->nodes[i];
  int depthwise = n->op == &cn_op_depthwise;
  if (n->op != &cn_op_conv2d && !depthwise) return not_convolution(model, n);
  cn_param *p = cn_node_find_param(n, depthwise ? "depthwise_kernel" : "kernel");
  if (!p || p->shape.rank != 4 || !p->data) return not_convolution(model, n);
  *k = (kernel_view){.w = p->data,
                     .kh = (int)p->shape.dim[0],
                     .kw = (int)p->shape.dim[1],
                     .in = (int)p->shape.dim[2],
                     .out = (int)p->shape.dim[3],
                     .name = n->name,
                     .type = n->type};
  if (depthwise) k->mult = k->out, k->out = k->in * k->mult;
  k->colour = !depthwise && k->in == 3 && ((const cn_conv2d_attrs *)n->attrs)->groups <= 1;
  k->bgr = model->spec.preprocess == CN_PRE_CAFFE;
  int max_tiles = o && o->max_tiles > 0 ? o->max_tiles : DEFAULT_TILES;
  int max_channels = o && o->max_channels > 0 ? o->max_channels : DEFAULT_CHANNELS;
  k->shown = k->out < max_tiles ? k->out : max_tiles;
  k->shown_channels = channels_of(k) < max_channels ? channels_of(k) : max_channels;
  return CN_OK;
}

/* max |w| of filter f over all its input channels. */
static viz_scale filter_scale(const kernel_view *k, int f) {
  double max = 0.0;
  for (int c = 0; c < channels_of(k); c++)
    for (int y = 0; y < k->kh; y++)
      for (int x = 0; x < k->kw; x++) {
        double v = fabs(kernel_at(k, f, c, y, x));
        if (isfinite(v) && v > max) max = v;
      }
  return viz_scale_from_max(max, 1);
}

static viz_scale layer_scale(const kernel_view *k) {
  viz_scale s = viz_scale_from_max(0.0, 1);
  for (int f = 0; f < k->out; f++) s = viz_scale_merge(s, filter_scale(k, f));
  return s;
}

typedef struct legend {
  char line[LEGEND_MAX][320];
  int n;
} legend;

static void legend_scale(legend *l, cn_viz_scale mode, const viz_scale *shared, const char *what) {
  char text[128];
  if (mode == CN_VIZ_SCALE_SHARED) {
    viz_scale_text(shared, "w", text, sizeof text);
    snprintf(l->line[l->n++], sizeof l->line[0],
             "shared scale: %s (max |w| over the layer); 128 = 0", text);
  } else {
    snprintf(l->line[l->n++], sizeof l->line[0],
             "per-%s scale: pixel = 128 + 127 * w / max |w| of that %s; 128 = 0", what, what);
  }
}

static void filters_legend(const kernel_view *k, const cn_viz_grid_options *o,
                           const viz_scale *shared, legend *l) {
  l->n = 0;
  if (o && o->title) snprintf(l->line[l->n++], sizeof l->line[0], "%s", o->title);
  snprintf(l->line[l->n++], sizeof l->line[0],
           "%s (%s): %d kernels of %dx%d over %d input channel%s; showing kernels 0-%d", k->name,
           k->type, k->out, k->kh, k->kw, channels_of(k), channels_of(k) == 1 ? "" : "s",
           k->shown - 1);
  if (k->colour)
    snprintf(l->line[l->n++], sizeof l->line[0], "colour: input channels %s as red, green, blue",
             k->bgr ? "2, 1, 0" : "0, 1, 2");
  else if (channels_of(k) > 1)
    snprintf(l->line[l->n++], sizeof l->line[0],
             "grey: one row per kernel, one tile per input channel (channels 0-%d)",
             k->shown_channels - 1);
  else
    snprintf(l->line[l->n++], sizeof l->line[0], "grey: one tile per %skernel",
             k->mult ? "depthwise " : "");
  legend_scale(l, o ? o->scale : CN_VIZ_SCALE_SHARED, shared, "kernel");
}

static int legend_width(const legend *l) {
  int width = 0;
  for (int i = 0; i < l->n; i++) {
    int w = viz_text_width(l->line[i]);
    width = w > width ? w : width;
  }
  return width;
}

static cn_status filters_grid(const kernel_view *k, const legend *l, viz_grid *g) {
  int grey_rows = !k->colour && channels_of(k) > 1;
  int n = grey_rows ? k->shown * k->shown_channels : k->shown;
  return viz_grid_layout(g, n, grey_rows ? k->shown_channels : 0, k->kw, k->kh, FILTER_TILE_TARGET,
                         l->n, legend_width(l), 0);
}

cn_status viz_filters_layout(const cn_model *model, const char *layer, const cn_viz_grid_options *o,
                             viz_grid *g) {
  kernel_view k;
  legend l;
  cn_status st = view_kernel(model, layer, o, &k);
  if (st != CN_OK) return st;
  viz_scale shared = layer_scale(&k);
  filters_legend(&k, o, &shared, &l);
  return filters_grid(&k, &l, g);
}

/* One tile's pixels: filter f's channel c in grey, or its three channels in colour. */
static void tile_pixels(const kernel_view *k, int f, int c, const viz_scale *s, uint8_t *rgb) {
  for (int y = 0; y < k->kh; y++)
    for (int x = 0; x < k->kw; x++) {
      uint8_t *p = rgb + ((size_t)y * k->kw + x) * 3;
      if (k->colour) {
        for (int ch = 0; ch < 3; ch++)
          p[k->bgr ? 2 - ch : ch] = viz_level(s, kernel_at(k, f, ch, y, x));
      } else {
        p[0] = p[1] = p[2] = viz_level(s, kernel_at(k, f, c, y, x));
      }
    }
}

static cn_status draw_filters(cairo_t *cr, const kernel_view *k, const viz_grid *g,
                              cn_viz_scale mode, const viz_scale *shared) {
  uint8_t *rgb = malloc((size_t)k->kh * k->kw * 3);
  if (!rgb) return cn_fail(CN_ERR_NOMEM, "out of memory");
  int per_filter = k->colour || k->mult ? 1 : k->shown_channels;
  cn_status st = CN_OK;
  for (int t = 0; st == CN_OK && t < k->shown * per_filter; t++) {
    int f = t / per_filter, c = t % per_filter, x, y;
    viz_scale s = mode == CN_VIZ_SCALE_PER_TILE ? filter_scale(k, f) : *shared;
    tile_pixels(k, f, c, &s, rgb);
    viz_tile_origin(g, t / g->cols, t % g->cols, &x, &y);
    st = viz_paint_tile(cr, rgb, k->kw, k->kh, x, y, g->zoom);
  }
  free(rgb);
  return st;
}

cn_status cn_viz_filters(const cn_model *model, const char *layer, const cn_viz_grid_options *o,
                         const char *png_path) {
  if (!model || !png_path) return cn_fail(CN_ERR_ARG, "cn_viz_filters: NULL argument");
  kernel_view k;
  legend l;
  viz_grid g;
  cn_status st = view_kernel(model, layer, o, &k);
  if (st != CN_OK) return st;
  viz_scale shared = layer_scale(&k);
  filters_legend(&k, o, &shared, &l);
  st = filters_grid(&k, &l, &g);
  cairo_surface_t *surface = NULL;
  cairo_t *cr = NULL;
  if (st == CN_OK) st = viz_canvas_new(g.width, g.height, &surface, &cr);
  if (st != CN_OK) return st;
  const char *lines[LEGEND_MAX];
  for (int i = 0; i < l.n; i++) lines[i] = l.line[i];
  viz_text_lines(cr, VIZ_MARGIN, VIZ_MARGIN, lines, l.n);
  st = draw_filters(cr, &k, &g, o ? o->scale : CN_VIZ_SCALE_SHARED, &shared);
  if (st == CN_OK) st = viz_write_png(surface, png_path);
  viz_canvas_free(surface, cr);
  return st;
}
