/* Conv / ConvTranspose whose weights are computed by the graph (ONNX graphs that take W and B as
 * graph inputs). The fast convolutions repack constant weights once; these weights change with
 * every run, so this op reads them directly, in ONNX layout, with plain loops over NCHW. It is
 * meant for small graphs (the ONNX node tests, weights fed at run time); models with initializer
 * weights never reach it. */
#include <stdint.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops_onnx.h"

enum { MAX_K = 1 << 12, MAX_STEP = 1 << 12, MAX_PAD = 1 << 16 };

/* Per-sample shapes: x (n, c, h, w), w (conv: m, c/g, kh, kw; transpose: c, m/g, kh, kw). */
typedef struct rc_geom {
  int64_t n, c, h, w, m, cg, mg, oh, ow;
} rc_geom;

static int64_t out_len(const cn_conv_runtime_attrs *a, int64_t in, int k, int s, int d, int before,
                       int after, int out_pad) {
  int64_t span = (int64_t)(k - 1) * d + 1;
  if (a->transpose) return (int64_t)s * (in - 1) + out_pad + span - before - after;
  int64_t padded = in + before + after;
  return padded < span ? 0 : (padded - span) / s + 1;
}

static cn_status rc_geometry(const cn_conv_runtime_attrs *a, const cn_shape *x, const cn_shape *w,
                             rc_geom *g) {
  if (x->rank != 4 || w->rank != 4 || a->groups < 1) return CN_ERR_SHAPE;
  g->n = x->dim[0], g->c = x->dim[1], g->h = x->dim[2], g->w = x->dim[3];
  if (g->c % a->groups || w->dim[2] != a->kh || w->dim[3] != a->kw) return CN_ERR_SHAPE;
  g->cg = g->c / a->groups;
  if (a->transpose) {
    if (w->dim[0] != g->c) return CN_ERR_SHAPE;
    g->mg = w->dim[1];
    g->m = g->mg * a->groups;
  } else {
    if (w->dim[1] != g->cg || w->dim[0] % a->groups) return CN_ERR_SHAPE;
    g->m = w->dim[0];
    g->mg = g->m / a->groups;
  }
  g->oh = out_len(a, g->h, a->kh, a->sh, a->dh, a->pad_top, a->pad_bottom, a->out_pad_h);
  g->ow = out_len(a, g->w, a->kw, a->sw, a->dw, a->pad_left, a->pad_right, a->out_pad_w);
  return g->oh >= 1 && g->ow >= 1 ? CN_OK : CN_ERR_SHAPE;
}

static int attrs_ok(const cn_conv_runtime_attrs *a) {
  const int v[] = {a->kh, a->kw, a->sh, a->sw, a->dh, a->dw};
  for (size_t i = 0; i < sizeof v / sizeof *v; i++)
    if (v[i] < 1 || v[i] > (i < 2 ? MAX_K : MAX_STEP)) return 0;
  const int p[] = {a->pad_top,   a->pad_left,  a->pad_bottom,
                   a->pad_right, a->out_pad_h, a->out_pad_w};
  for (size_t i = 0; i < sizeof p / sizeof *p; i++)
    if (p[i] < 0 || p[i] > MAX_PAD) return 0;
  return (a->transpose == 0 || a->transpose == 1) && a->groups >= 1;
}

static cn_status rc_infer(cn_graph *g, cn_node *node) {
  const cn_conv_runtime_attrs *a = node->attrs;
  char b1[96], b2[96];
  if (!attrs_ok(a)) return cn_fail(CN_ERR_SHAPE, "%s: bad kernel, strides or pads", node->name);
  const cn_shape *x = &g->nodes[node->inputs[0]].shape, *w = &g->nodes[node->inputs[1]].shape;
  rc_geom q;
  if (rc_geometry(a, x, w, &q) != CN_OK)
    return cn_fail(CN_ERR_SHAPE, "%s: weights %s do not fit the input %s (groups %d)", node->name,
                   cn_shape_format(w, b1, sizeof b1), cn_shape_format(x, b2, sizeof b2), a->groups);
  if (node->n_inputs == 3) {
    const cn_shape *b = &g->nodes[node->inputs[2]].shape;
    if (b->rank != 1 || b->dim[0] != q.m)
      return cn_fail(CN_ERR_SHAPE, "%s: bias %s for %lld filters", node->name,
                     cn_shape_format(b, b1, sizeof b1), (long long)q.m);
  }
  node->shape = cn_shape_make(4, (int64_t[]){q.n, q.m, q.oh, q.ow});
  return CN_OK;
}

/* One image: y (m, oh, ow) += conv(x (c, h, w), w). */
static void conv_image(const cn_conv_runtime_attrs *a, const rc_geom *g, const float *x,
                       const float *w, float *y) {
  for (int64_t m = 0; m < g->m; m++) {
    int64_t grp = m / g->mg;
    for (int64_t oy = 0; oy < g->oh; oy++)
      for (int64_t ox = 0; ox < g->ow; ox++) {
        double acc = 0;
        for (int64_t c = 0; c < g->cg; c++)
          for (int ky = 0; ky < a->kh; ky++) {
            int64_t iy = oy * a->sh - a->pad_top + (int64_t)ky * a->dh;
            if (iy < 0 || iy >= g->h) continue;
            for (int kx = 0; kx < a->kw; kx++) {
              int64_t ix = ox * a->sw - a->pad_left + (int64_t)kx * a->dw;
              if (ix < 0 || ix >= g->w) continue;
              acc += (double)x[((grp * g->cg + c) * g->h + iy) * g->w + ix] *
                     w[((m * g->cg + c) * a->kh + ky) * a->kw + kx];
            }
          }
        y[(m * g->oh + oy) * g->ow + ox] += (float)acc;
      }
  }
}

/* One image: y (m, oh, ow) += the transposed convolution of x (c, h, w): each input pixel adds
 * its value times the kernel at the output pixels its taps reach. */
static void deconv_image(const cn_conv_runtime_attrs *a, const rc_geom *g, const float *x,
                         const float *w, float *y) {
  for (int64_t c = 0; c < g->c; c++) {
    int64_t grp = c / g->cg;
    for (int64_t iy = 0; iy < g->h; iy++)
      for (int64_t ix = 0; ix < g->w; ix++) {
        float v = x[(c * g->h + iy) * g->w + ix];
        for (int64_t j = 0; j < g->mg; j++)
          for (int ky = 0; ky < a->kh; ky++) {
            int64_t oy = iy * a->sh - a->pad_top + (int64_t)ky * a->dh;
            if (oy < 0 || oy >= g->oh) continue;
            for (int kx = 0; kx < a->kw; kx++) {
              int64_t ox = ix * a->sw - a->pad_left + (int64_t)kx * a->dw;
              if (ox < 0 || ox >= g->ow) continue;
              y[((grp * g->mg + j) * g->oh + oy) * g->ow + ox] +=
                  v * w[((c * g->mg + j) * a->kh + ky) * a->kw + kx];
            }
          }
      }
  }
}

static void rc_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_conv_runtime_attrs *a = node->attrs;
  cn_shape xs = cn_shape_make(4, in[0].shape.dim + 1), ws = cn_shape_make(4, in[1].shape.dim + 1);
  rc_geom g;
  rc_geometry(a, &xs, &ws, &g);
  int64_t xn = g.c * g.h * g.w, yn = g.m * g.oh * g.ow, wn = cn_shape_numel(&ws);
  for (int s = 0; s < ex->batch; s++) /* each engine sample has its own x, w and b */
    for (int64_t i = 0; i < g.n; i++) {
      float *y = out->data + ((int64_t)s * g.n + i) * yn;
      const float *b = node->n_inputs == 3 ? in[2].data + (int64_t)s * g.m : NULL;
      for (int64_t m = 0; m < g.m; m++)
        for (int64_t p = 0; p < g.oh * g.ow; p++) y[m * g.oh * g.ow + p] = b ? b[m] : 0.0f;
      const float *x = in[0].data + ((int64_t)s * g.n + i) * xn, *w = in[1].data + s * wn;
      if (a->transpose)
        deconv_image(a, &g, x, w, y);
      else
        conv_image(a, &g, x, w, y);
    }
}

const cn_op cn_op_conv_runtime = {
    .type = "ConvRuntime",
    .attrs_size = sizeof(cn_conv_runtime_attrs),
    .min_inputs = 2,
    .max_inputs = 3,
    .infer = rc_infer,
    .forward = rc_forward,
};
