/* ConvTranspose (transposed 2-D convolution) on NHWC with explicit pads, output padding,
 * dilations and groups. Kernel (kh, kw, filters/groups, in). Per sample, group and block of input
 * rows: one GEMM gives every input pixel's contribution to its kh*kw output taps (cols), then
 * col2im adds them into the output, in parallel over output rows (each row has one writer). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "core/error.h"
#include "ops/ops_onnx.h"

enum {
  MAX_K = 1 << 10,
  MAX_STRIDE = 1 << 10,
  MAX_PAD = 1 << 16,
  COLS_BUDGET = 1 << 21,
  MAX_ROW_COLS = 1 << 26
};

typedef struct ct_geom {
  int64_t ih, iw, cin, oh, ow, fg, cg, taps; /* taps = kh * kw * fg */
} ct_geom;

static ct_geom ct_geometry(const cn_conv_transpose_attrs *a, const int64_t *in /* h, w, c */) {
  ct_geom g = {.ih = in[0], .iw = in[1], .cin = in[2]};
  g.oh = (int64_t)a->sh * (g.ih - 1) + a->out_pad_h + (int64_t)(a->kh - 1) * a->dh + 1 -
         a->pad_top - a->pad_bottom;
  g.ow = (int64_t)a->sw * (g.iw - 1) + a->out_pad_w + (int64_t)(a->kw - 1) * a->dw + 1 -
         a->pad_left - a->pad_right;
  g.fg = a->filters / (a->groups > 0 ? a->groups : 1);
  g.cg = g.cin / (a->groups > 0 ? a->groups : 1);
  g.taps = (int64_t)a->kh * a->kw * g.fg;
  return g;
}

static int in_range(int v, int lo, int hi) {
  return v >= lo && v <= hi;
}

static cn_status ct_check_attrs(const cn_node *node, const cn_conv_transpose_attrs *a) {
  if (!in_range(a->kh, 1, MAX_K) || !in_range(a->kw, 1, MAX_K) || !in_range(a->sh, 1, MAX_STRIDE) ||
      !in_range(a->sw, 1, MAX_STRIDE) || !in_range(a->dh, 1, MAX_K) || !in_range(a->dw, 1, MAX_K))
    return cn_fail(CN_ERR_FORMAT, "%s: bad kernel, stride or dilation", node->name);
  if (!in_range(a->pad_top, 0, MAX_PAD) || !in_range(a->pad_bottom, 0, MAX_PAD) ||
      !in_range(a->pad_left, 0, MAX_PAD) || !in_range(a->pad_right, 0, MAX_PAD))
    return cn_fail(CN_ERR_FORMAT, "%s: bad pads", node->name);
  /* ONNX: output_padding must be smaller than the stride or the dilation. */
  if (a->out_pad_h < 0 || a->out_pad_w < 0 || (a->out_pad_h >= a->sh && a->out_pad_h >= a->dh) ||
      (a->out_pad_w >= a->sw && a->out_pad_w >= a->dw))
    return cn_fail(CN_ERR_FORMAT, "%s: output padding (%d, %d) too large", node->name, a->out_pad_h,
                   a->out_pad_w);
  if (a->groups < 1 || a->filters < 1 || a->filters % a->groups != 0)
    return cn_fail(CN_ERR_FORMAT, "%s: filters %d not a multiple of groups %d", node->name,
                   a->filters, a->groups);
  return CN_OK;
}

static cn_status ct_infer(cn_graph *g, cn_node *node) {
  const cn_conv_transpose_attrs *a = node->attrs;
  char buf[96];
  const cn_shape *x = &g->nodes[node->inputs[0]].shape;
  if (x->rank != 3 || x->dim[0] < 1 || x->dim[1] < 1 || x->dim[2] < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: expects a (height, width, channels) input, got %s",
                   node->name, cn_shape_format(x, buf, sizeof buf));
  cn_status st = ct_check_attrs(node, a);
  if (st != CN_OK) return st;
  if (x->dim[2] % a->groups != 0)
    return cn_fail(CN_ERR_SHAPE, "%s: %lld input channels not a multiple of groups %d", node->name,
                   (long long)x->dim[2], a->groups);
  ct_geom cg = ct_geometry(a, x->dim);
  if (cg.oh < 1 || cg.ow < 1)
    return cn_fail(CN_ERR_SHAPE, "%s: output would be empty (%lldx%lld)", node->name,
                   (long long)cg.oh, (long long)cg.ow);
  if (cg.taps > INT_MAX / 4 || cg.cin > INT_MAX / 4 || cg.iw * cg.taps > MAX_ROW_COLS)
    return cn_fail(CN_ERR_LIMIT, "%s: kernel or width too large", node->name);
  node->shape = cn_shape_make(3, (int64_t[]){cg.oh, cg.ow, a->filters});
  st = cn_node_add_param(node, "kernel",
                         cn_shape_make(4, (int64_t[]){a->kh, a->kw, cg.fg, x->dim[2]}));
  if (st == CN_OK && a->use_bias)
    st = cn_node_add_param(node, "bias", cn_shape_make(1, (int64_t[]){a->filters}));
  return st;
}

/* Input rows per GEMM so that cols stays within the budget (at least one row). */
static int64_t tile_rows(const ct_geom *g) {
  int64_t per_row = g->iw * g->taps, rows = COLS_BUDGET / (per_row > 0 ? per_row : 1);
  if (rows < 1) rows = 1;
  return rows < g->ih ? rows : g->ih;
}

static size_t ct_scratch(const cn_graph *g, const cn_node *node, int batch) {
  ct_geom cg = ct_geometry(node->attrs, g->nodes[node->inputs[0]].shape.dim);
  return (size_t)(tile_rows(&cg) * cg.iw * cg.taps);
}

/* Adds cols (input rows [r0, r1) of group `grp`) into the output image y. */
static void col2im(const cn_conv_transpose_attrs *a, const ct_geom *g, const float *cols,
                   int64_t r0, int64_t r1, int grp, float *y, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (g->oh * g->ow * g->fg > 4096)
  for (int64_t oy = 0; oy < g->oh; oy++) {
    for (int ky = 0; ky < a->kh; ky++) {
      int64_t t = oy + a->pad_top - (int64_t)ky * a->dh;
      if (t < 0 || t % a->sh != 0) continue;
      int64_t iy = t / a->sh;
      if (iy < r0 || iy >= r1) continue;
      for (int64_t ix = 0; ix < g->iw; ix++)
        for (int kx = 0; kx < a->kw; kx++) {
          int64_t ox = ix * a->sw - a->pad_left + (int64_t)kx * a->dw;
          if (ox < 0 || ox >= g->ow) continue;
          const float *src = cols + ((iy - r0) * g->iw + ix) * g->taps + (ky * a->kw + kx) * g->fg;
          float *dst = y + (oy * g->ow + ox) * a->filters + grp * g->fg;
          for (int64_t f = 0; f < g->fg; f++) dst[f] += src[f];
        }
    }
  }
}

static void ct_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  const cn_conv_transpose_attrs *a = node->attrs;
  ct_geom g = ct_geometry(a, in[0].shape.dim + 1);
  const float *kernel = node->params[0].data, *bias = a->use_bias ? node->params[1].data : NULL;
  int64_t batch = in[0].shape.dim[0], pixels = g.oh * g.ow, rows = tile_rows(&g);
  for (int64_t p = 0; p < batch * pixels; p++) {
    float *dst = out->data + p * a->filters;
    if (bias)
      memcpy(dst, bias, (size_t)a->filters * sizeof(float));
    else
      memset(dst, 0, (size_t)a->filters * sizeof(float));
  }
  for (int64_t b = 0; b < batch; b++) {
    const float *x = in[0].data + b * g.ih * g.iw * g.cin;
    float *y = out->data + b * pixels * a->filters;
    for (int grp = 0; grp < a->groups; grp++)
      for (int64_t r0 = 0; r0 < g.ih; r0 += rows) {
        int64_t r1 = r0 + rows < g.ih ? r0 + rows : g.ih;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)((r1 - r0) * g.iw), (int)g.taps,
                    (int)g.cg, 1.0f, x + r0 * g.iw * g.cin + grp * g.cg, (int)g.cin,
                    kernel + grp * g.cg, (int)g.cin, 0.0f, ex->scratch, (int)g.taps);
        col2im(a, &g, ex->scratch, r0, r1, grp, y, ex->threads);
      }
  }
}

const cn_op cn_op_conv_transpose = {
    .type = "ConvTranspose",
    .attrs_size = sizeof(cn_conv_transpose_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = ct_infer,
    .forward = ct_forward,
    .scratch = ct_scratch,
};
