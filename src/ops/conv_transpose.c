/* ConvTranspose (transposed 2-D convolution) on NHWC with explicit pads, output padding,
 * dilations and groups. Kernel (kh, kw, filters/groups, in). Per sample, group and block of input
 * rows: one GEMM gives every input pixel's contribution to its kh*kw output taps (cols), then
 * col2im adds them into the output, in parallel over output rows (each row has one writer).
 *
 * Backward. Input pixel p (iy, ix) reaches output (iy*sh - pad_top + ky*dh, ix*sw - pad_left +
 * kx*dw) through tap (ky, kx), so unfolding dout at those places (zeros outside) gives, per input
 * pixel and group, the row dcols[p] of kh*kw*filters/groups values that forward's cols row met:
 *   dx[p, group]  += dcols[p] K[:, group]       (an ordinary convolution of dout)
 *   dK[:, group]  += dcols^T x[:, group]        (a correlation of dout with x)
 *   dbias         += column sums of dout
 * The input pixels (flattened over batch, height, width) are cut into tiles whose size depends
 * on the geometry only; inside a tile every gradient element is owned by one fixed block (rows of
 * dx, (taps x channels) blocks of dK, channel blocks of dbias), each one single-threaded sgemm or
 * loop, and tiles run in order, so every sum is taken in one order whatever the thread count. */
#include <cblas.h>
#include <limits.h>
#include <stdint.h>
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

/* Keras sets the output length (valid: (in - 1) * s + k' + output_padding, where output_padding
 * defaults to max(k', s) - k'; same: in * s, or (in - 1) * s + k' % 2 + output_padding;
 * k' = (k - 1) * d + 1) and TensorFlow computes the transpose of the convolution that maps that
 * length back to `in`, padded as its SAME/VALID rule says: pad_before = total / 2 with
 * total = max((in - 1) * s + k' - length, 0) for same, 0 for valid. The rest of the length is
 * output padding (when longer) or end padding. */
int cn_conv_transpose_keras_axis(int64_t in, int k, int s, int d, cn_padding padding,
                                 int output_padding, int *before, int *after, int *out_pad) {
  int has_op = output_padding >= 0, op = output_padding;
  int64_t keff = (int64_t)(k - 1) * d + 1, len;
  if (padding == CN_PAD_VALID)
    len = (in - 1) * s + keff + (has_op ? op : (keff > s ? keff : s) - keff);
  else
    len = has_op ? (in - 1) * s + keff % 2 + op : in * s;
  int64_t total = padding == CN_PAD_SAME ? (in - 1) * s + keff - len : 0;
  if (total < 0) total = 0;
  int64_t pad0 = total / 2, extra = len - ((in - 1) * s + keff - pad0);
  if (len < 1 || pad0 > INT_MAX || -extra > INT_MAX || extra > INT_MAX) return -1;
  *before = (int)pad0;
  *after = extra < 0 ? (int)-extra : 0;
  *out_pad = extra > 0 ? (int)extra : 0;
  return 0;
}

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

/* Whole images per GEMM when one image's columns fit the budget, else 1 (taken in row tiles):
 * one product over many small images keeps OpenBLAS's threads busy, one per image does not. */
static int64_t tile_images(const ct_geom *g, int64_t batch) {
  if (tile_rows(g) < g->ih) return 1;
  int64_t n = COLS_BUDGET / (g->ih * g->iw * g->taps);
  if (n < 1) n = 1;
  return n < batch ? n : batch;
}

static size_t ct_scratch(const cn_graph *g, const cn_node *node, int batch) {
  ct_geom cg = ct_geometry(node->attrs, g->nodes[node->inputs[0]].shape.dim);
  return (size_t)(tile_images(&cg, batch) * tile_rows(&cg) * cg.iw * cg.taps);
}

/* Adds cols (input rows [r0, r1) of group `grp`, for n consecutive images) into the output
 * images from y on. Each output pixel sums its taps in the same order whatever n and threads. */
static void col2im(const cn_conv_transpose_attrs *a, const ct_geom *g, const float *cols, int64_t n,
                   int64_t r0, int64_t r1, int grp, float *images, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n * g->oh * g->ow * g->fg > 4096)
  for (int64_t q = 0; q < n * g->oh; q++) {
    int64_t oy = q % g->oh;
    float *y = images + q / g->oh * g->oh * g->ow * a->filters;
    const float *image_cols = cols + q / g->oh * (r1 - r0) * g->iw * g->taps;
    for (int ky = 0; ky < a->kh; ky++) {
      int64_t t = oy + a->pad_top - (int64_t)ky * a->dh;
      if (t < 0 || t % a->sh != 0) continue;
      int64_t iy = t / a->sh;
      if (iy < r0 || iy >= r1) continue;
      for (int64_t ix = 0; ix < g->iw; ix++)
        for (int kx = 0; kx < a->kw; kx++) {
          int64_t ox = ix * a->sw - a->pad_left + (int64_t)kx * a->dw;
          if (ox < 0 || ox >= g->ow) continue;
          const float *src =
              image_cols + ((iy - r0) * g->iw + ix) * g->taps + (ky * a->kw + kx) * g->fg;
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
  int64_t batch = in[0].shape.dim[0], pixels = g.oh * g.ow, rows = tile_rows(&g),
          images = tile_images(&g, batch);
  for (int64_t p = 0; p < batch * pixels; p++) {
    float *dst = out->data + p * a->filters;
    if (bias)
      memcpy(dst, bias, (size_t)a->filters * sizeof(float));
    else
      memset(dst, 0, (size_t)a->filters * sizeof(float));
  }
  /* several images at a time only when each is whole (rows == ih): their rows are contiguous */
  for (int64_t b = 0; b < batch; b += images) {
    int64_t n = batch - b < images ? batch - b : images;
    const float *x = in[0].data + b * g.ih * g.iw * g.cin;
    float *y = out->data + b * pixels * a->filters;
    for (int grp = 0; grp < a->groups; grp++)
      for (int64_t r0 = 0; r0 < g.ih; r0 += rows) {
        int64_t r1 = r0 + rows < g.ih ? r0 + rows : g.ih;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n * (r1 - r0) * g.iw),
                    (int)g.taps, (int)g.cg, 1.0f, x + r0 * g.iw * g.cin + grp * g.cg, (int)g.cin,
                    kernel + grp * g.cg, (int)g.cin, 0.0f, ex->scratch, (int)g.taps);
        col2im(a, &g, ex->scratch, n, r0, r1, grp, y, ex->threads);
      }
  }
}

/* ---- backward ------------------------------------------------------------------------------ */

/* Floats of unfolded dout per tile; input pixels per dx block and taps per dK block; dK columns
 * per block and channels per bias block; below PARALLEL_MIN_MACS multiply-adds per tile a second
 * thread costs more than it saves. */
enum {
  GRAD_TILE_BUDGET = 1 << 20,
  ROW_BLOCK = 32,
  COL_BLOCK = 64,
  CHAN_BLOCK = 16,
  PARALLEL_MIN_MACS = 1 << 18
};

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Input pixels per backward tile: a function of the geometry and batch only. */
static int64_t grad_tile_pixels(const ct_geom *g, int64_t batch) {
  int64_t pixels = batch * g->ih * g->iw, n = GRAD_TILE_BUDGET / g->taps;
  if (n < 1) n = 1;
  return n < pixels ? n : pixels;
}

static size_t ct_backward_scratch(const cn_graph *gr, const cn_node *node, int batch) {
  ct_geom g = ct_geometry(node->attrs, gr->nodes[node->inputs[0]].shape.dim);
  return (size_t)(grad_tile_pixels(&g, batch) * g.taps);
}

typedef struct ct_grad {
  const cn_conv_transpose_attrs *a;
  ct_geom g;
  int64_t batch;
  const float *x, *kernel, *dout;
  float *dx, *dkernel, *dbias;
} ct_grad;

/* dcols row of input pixel p (flattened over the batch) for group grp: for each tap (ky, kx) the
 * group's fg channels of dout at the output pixel the tap reaches, or zeros outside the output. */
static void unfold_dout(const ct_grad *io, int grp, int64_t p, float *dst) {
  const cn_conv_transpose_attrs *a = io->a;
  const ct_geom *g = &io->g;
  int64_t b = p / (g->ih * g->iw), iy = p / g->iw % g->ih, ix = p % g->iw;
  const float *image = io->dout + b * g->oh * g->ow * a->filters + grp * g->fg;
  size_t bytes = (size_t)g->fg * sizeof(float);
  for (int ky = 0; ky < a->kh; ky++) {
    int64_t oy = iy * a->sh - a->pad_top + (int64_t)ky * a->dh;
    for (int kx = 0; kx < a->kw; kx++, dst += g->fg) {
      int64_t ox = ix * a->sw - a->pad_left + (int64_t)kx * a->dw;
      if (g->fg == 1) /* one float: a call per tap would cost more than the copy */
        *dst = oy < 0 || oy >= g->oh || ox < 0 || ox >= g->ow
                   ? 0.0f
                   : image[(oy * g->ow + ox) * a->filters];
      else if (oy < 0 || oy >= g->oh || ox < 0 || ox >= g->ow)
        memset(dst, 0, bytes);
      else
        memcpy(dst, image + (oy * g->ow + ox) * a->filters, bytes);
    }
  }
}

/* dbias += sums of dout over every output pixel, CHAN_BLOCK channels per block. */
static void bias_grad(const ct_grad *io) {
  int64_t filters = io->a->filters, pixels = io->batch * io->g.oh * io->g.ow;
#pragma omp for schedule(static)
  for (int64_t j0 = 0; j0 < filters; j0 += CHAN_BLOCK) {
    int64_t j1 = min64(j0 + CHAN_BLOCK, filters);
    for (int64_t p = 0; p < pixels; p++) {
      const float *row = io->dout + p * filters;
      for (int64_t j = j0; j < j1; j++) io->dbias[j] += row[j];
    }
  }
}

/* One tile (input pixels [p0, p0 + np)) and group: unfold, then dx and dK by fixed blocks. */
static void tile_group_grad(const ct_grad *io, int grp, int64_t p0, int64_t np, float *col) {
  const ct_geom *g = &io->g;
  int64_t taps = g->taps, cg = g->cg, cin = g->cin;
#pragma omp for schedule(static)
  for (int64_t p = 0; p < np; p++) unfold_dout(io, grp, p0 + p, col + p * taps);
  if (io->dx) {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < np; r += ROW_BLOCK) {
      int64_t rows = min64(ROW_BLOCK, np - r);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cg, (int)taps, 1.0f,
                  col + r * taps, (int)taps, io->kernel + grp * cg, (int)cin, 1.0f,
                  io->dx + (p0 + r) * cin + grp * cg, (int)cin);
    }
  }
  if (io->dkernel) {
    int64_t row_blocks = (taps + ROW_BLOCK - 1) / ROW_BLOCK,
            col_blocks = (cg + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < row_blocks * col_blocks; blk++) {
      int64_t r0 = blk / col_blocks * ROW_BLOCK, j0 = blk % col_blocks * COL_BLOCK;
      int64_t rows = min64(ROW_BLOCK, taps - r0), cols = min64(COL_BLOCK, cg - j0);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)cols, (int)np, 1.0f,
                  col + r0, (int)taps, io->x + p0 * cin + grp * cg + j0, (int)cin, 1.0f,
                  io->dkernel + r0 * cin + grp * cg + j0, (int)cin);
    }
  }
}

/* Every thread of the region runs this; the worksharing loops inside split the blocks (their
 * implicit barriers keep the shared unfolded tile consistent). */
static void backward_tiles(const ct_grad *io, float *scratch) {
  if (io->dbias) bias_grad(io);
  if (!io->dx && !io->dkernel) return;
  int64_t pixels = io->batch * io->g.ih * io->g.iw, step = grad_tile_pixels(&io->g, io->batch);
  for (int64_t p0 = 0; p0 < pixels; p0 += step)
    for (int grp = 0; grp < io->a->groups; grp++)
      tile_group_grad(io, grp, p0, min64(step, pixels - p0), scratch);
}

static void ct_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                        const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                        const cn_exec *ex) {
  (void)out;
  const cn_conv_transpose_attrs *a = node->attrs;
  ct_grad io = {.a = a,
                .g = ct_geometry(a, in[0].shape.dim + 1),
                .batch = in[0].shape.dim[0],
                .x = in[0].data,
                .kernel = node->params[0].data,
                .dout = dout->data,
                .dx = din[0].data,
                .dkernel = dparams[0],
                .dbias = a->use_bias ? dparams[1] : NULL};
  if (!io.dx && !io.dkernel && !io.dbias) return;
  double macs = (double)grad_tile_pixels(&io.g, io.batch) * (double)io.g.taps * (double)io.g.cin;
  int parallel = ex->threads > 1 && macs >= PARALLEL_MIN_MACS;
#pragma omp parallel num_threads(ex->threads) if (parallel)
  backward_tiles(&io, ex->scratch);
}

const cn_op cn_op_conv_transpose = {
    .type = "ConvTranspose",
    .attrs_size = sizeof(cn_conv_transpose_attrs),
    .min_inputs = 1,
    .max_inputs = 1,
    .infer = ct_infer,
    .forward = ct_forward,
    .scratch = ct_scratch,
    .backward = ct_backward,
    .backward_scratch = ct_backward_scratch,
};
