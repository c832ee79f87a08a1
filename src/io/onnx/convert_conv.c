/* ONNX to engine nodes: convolution (Conv, ConvTranspose), pooling (MaxPool, AveragePool,
 * global pools, ReduceMean/ReduceMax over H and W) and BatchNormalization. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/onnx/convert.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"

/* ---- convolution and pooling --------------------------------------------------------------- */

/* Padding of one spatial axis: before and after. */
typedef struct pads2 {
  int top, bottom, left, right;
} pads2;

/* A window attribute (kernel_shape, strides, dilations: 2 values; pads: 4) into out. A 1-D
 * window (one_d) is the 2-D window of height 1 over an (N, C, 1, L) view: its values go to the
 * width axis, the height axis gets `fill` (pads: 0). Returns the 2-D count, or -1 when absent
 * or too long. */
static int window_ints(const Onnx__NodeProto *n, const char *name, int one_d, int64_t fill,
                       int64_t *out) {
  int64_t v[8];
  int count = cn_onnx_attr_ints(n, name, v, 8);
  if (!one_d || count < 0) {
    for (int k = 0; k < count; k++) out[k] = v[k];
    return count;
  }
  if (count == 1) {
    out[0] = fill, out[1] = v[0];
    return 2;
  }
  if (count == 2 && strcmp(name, "pads") == 0) {
    out[0] = 0, out[1] = v[0], out[2] = 0, out[3] = v[1];
    return 4;
  }
  return count + 8; /* never a valid 2-D count */
}

/* The pads of a sliding window from auto_pad / pads, for input (ih, iw). */
static cn_status window_pads(cn_onnx_ctx *x, const Onnx__NodeProto *n, int64_t ih, int64_t iw,
                             const int *k, const int *s, const int *d, int one_d, pads2 *p) {
  char buf[32];
  const char *mode = cn_onnx_attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
  int64_t in[2] = {ih, iw}, before[2] = {0, 0}, after[2] = {0, 0};
  if (strcmp(mode, "SAME_UPPER") == 0 || strcmp(mode, "SAME_LOWER") == 0) {
    for (int a = 0; a < 2; a++) {
      int64_t out = (in[a] + s[a] - 1) / s[a];
      int64_t total = (out - 1) * s[a] + (int64_t)(k[a] - 1) * d[a] + 1 - in[a];
      if (total < 0) total = 0;
      before[a] = mode[5] == 'U' ? total / 2 : total - total / 2;
      after[a] = total - before[a];
    }
  } else if (strcmp(mode, "NOTSET") == 0) {
    int64_t pads[8] = {0, 0, 0, 0};
    int np = window_ints(n, "pads", one_d, 0, pads);
    if (np != -1 && np != 4) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "pads must have 4 values");
    before[0] = pads[0], before[1] = pads[1], after[0] = pads[2], after[1] = pads[3];
  } else if (strcmp(mode, "VALID") != 0) {
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "auto_pad %s", mode);
  }
  for (int a = 0; a < 2; a++)
    if (before[a] < 0 || after[a] < 0 || before[a] > 65536 || after[a] > 65536)
      return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "negative or huge pads");
  *p = (pads2){(int)before[0], (int)after[0], (int)before[1], (int)after[1]};
  return CN_OK;
}

/* Kernel, strides and dilations (2-D, or 1-D as height 1). */
static cn_status window_geometry(cn_onnx_ctx *x, const Onnx__NodeProto *n, int *k, int *s, int *d,
                                 int need_kernel, int one_d) {
  int64_t v[8];
  int nk = window_ints(n, "kernel_shape", one_d, 1, v);
  if (nk >= 0 && nk != 2) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D windows");
  if (nk < 0 && need_kernel) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "kernel_shape is missing");
  for (int a = 0; a < 2; a++) k[a] = nk == 2 ? (int)v[a] : 0;
  int ns = window_ints(n, "strides", one_d, 1, v);
  if (ns >= 0 && ns != 2) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "strides must have 2 values");
  for (int a = 0; a < 2; a++) s[a] = ns == 2 ? (int)v[a] : 1;
  int nd = window_ints(n, "dilations", one_d, 1, v);
  if (nd >= 0 && nd != 2) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "dilations must have 2 values");
  for (int a = 0; a < 2; a++) d[a] = nd == 2 ? (int)v[a] : 1;
  for (int a = 0; a < 2; a++)
    if (s[a] < 1 || d[a] < 1 || s[a] > 4096 || d[a] > 4096 || k[a] < 0 || k[a] > 65536)
      return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "bad kernel, strides or dilations");
  return CN_OK;
}

/* 1 when the pads equal TensorFlow's 'same' rule for this window (then no padding node). */
static int pads_are_same(const pads2 *p, int64_t ih, int64_t iw, const int *k, const int *s,
                         const int *d) {
  int64_t in[2] = {ih, iw};
  int before[2] = {p->top, p->left}, after[2] = {p->bottom, p->right};
  for (int a = 0; a < 2; a++) {
    int64_t out = cn_conv_out_size(in[a], k[a], s[a], d[a], CN_PAD_SAME);
    int64_t total = (out - 1) * s[a] + (int64_t)(k[a] - 1) * d[a] + 1 - in[a];
    if (total < 0) total = 0;
    if (before[a] != cn_conv_pad_before(in[a], k[a], s[a], d[a], CN_PAD_SAME) ||
        before[a] + after[a] != total)
      return 0;
  }
  return 1;
}

static int pads_zero(const pads2 *p) {
  return !p->top && !p->bottom && !p->left && !p->right;
}

/* The NHWC input of a window op, zero-padded when the pads are not TF-'same'. */
static cn_status padded_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                              const int *k, const int *s, const int *d, int *node,
                              cn_padding *padding) {
  pads2 p;
  cn_status st = cn_onnx_nhwc(x, v, node);
  if (st == CN_OK) st = window_pads(x, n, v->dims[2], v->dims[3], k, s, d, 0, &p);
  if (st != CN_OK) return st;
  *padding = CN_PAD_VALID;
  if (pads_zero(&p)) return CN_OK;
  if (pads_are_same(&p, v->dims[2], v->dims[3], k, s, d)) {
    *padding = CN_PAD_SAME;
    return CN_OK;
  }
  cn_zeropad_attrs z = {p.top, p.bottom, p.left, p.right};
  return cn_onnx_add_node(x, &cn_op_zeropad, cn_onnx_out_name(n), "/pad", node, 1, &z, node);
}

/* OIHW weights to the engine's conv (HWIO) or depthwise (HW, C, multiplier) layout: both put
 * (y, x) first, then input channel within the group, then output channel. */
static float *conv_kernel(const cn_onnx_const *w, int depthwise) {
  int64_t o = w->dims[0], i = w->dims[1], kh = w->dims[2], kw = w->dims[3];
  float *k = malloc((size_t)w->numel * sizeof *k);
  if (!k) return NULL;
  for (int64_t m = 0; m < o; m++)
    for (int64_t c = 0; c < i; c++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++) {
          float val = w->f[((m * i + c) * kh + y) * kw + xx];
          /* depthwise: i == 1 and output m = channel * mult + j, stored (y, x, channel, j) */
          k[((y * kw + xx) * i + c) * o + m] = val;
        }
  (void)depthwise; /* the same index order: (y, x, c, m) with c = 0 and m = channel*mult+j */
  return k;
}

static cn_status deconv_pads(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                             const int *k, const int *s, const int *d, int one_d, int64_t *out_pad,
                             pads2 *p);

/* 1 when the weights (input 1) or the bias (input 2) are computed rather than constants. */
static int computed_weights(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *w = cn_onnx_input(x, n, 1), *b = cn_onnx_input(x, n, 2);
  return (w && w->kind == CN_ONNX_ACT) || (b && b->kind == CN_ONNX_ACT);
}

/* (n, c, l) as (n, c, 1, l); 4-D dims as they are. */
static void dims_2d(const int64_t *d, int one_d, int64_t *out) {
  out[0] = d[0], out[1] = d[1];
  out[2] = one_d ? 1 : d[2];
  out[3] = one_d ? d[2] : d[3];
}

/* Activation v in ONNX order, as the 4-D per-sample shape dims (a 1-D window's height-1 view). */
static cn_status runtime_operand(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 int one_d, const int64_t *dims, int *node) {
  cn_status st = cn_onnx_plain(x, v, node);
  cn_reshape_attrs a = {cn_shape_make(4, dims)};
  if (st == CN_OK && one_d)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/2d", node, 1, &a, node);
  return st;
}

/* Conv / ConvTranspose with computed weights: cn_op_conv_runtime on the whole NCHW tensor, which
 * needs the graph to run as one engine sample (W has no batch axis). */
static cn_status conv_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n, int transpose) {
  cn_onnx_value *v, *wv, *bv = NULL;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK && (cn_onnx_rank(x, v) < 3 || cn_onnx_rank(x, v) > 4))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D windows (%d-D given)",
                        cn_onnx_rank(x, v) - 2);
  if (st == CN_OK && !x->whole) return CN_ONNX_BATCH_FAIL(x, n, "weights computed at run time");
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 1, &wv);
  if (st == CN_OK && cn_onnx_input(x, n, 2)) st = cn_onnx_act_input(x, n, 2, &bv);
  if (st != CN_OK) return st;
  int r = cn_onnx_rank(x, v), one_d = r == 3;
  if ((r != 3 && r != 4) || cn_onnx_rank(x, wv) != r || (bv && cn_onnx_rank(x, bv) != 1))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D windows");
  cn_onnx_value view = *v; /* the input's ONNX dims at dims[0..3], as the pads helpers read them */
  int64_t wd[4];
  dims_2d(v->dims + 1, one_d, view.dims);
  dims_2d(wv->dims + 1, one_d, wd);
  cn_conv_runtime_attrs a = {.transpose = transpose,
                             .groups = (int)cn_onnx_attr_int(n, "group", 1)};
  int k[2], s[2], d[2];
  if ((st = window_geometry(x, n, k, s, d, 0, one_d)) != CN_OK) return st;
  if (k[0] == 0) k[0] = (int)wd[2], k[1] = (int)wd[3];
  if (k[0] != wd[2] || k[1] != wd[3] || a.groups < 1 || a.groups > view.dims[1])
    return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "weights do not match kernel_shape or group");
  pads2 p;
  int64_t out_pad[8] = {0, 0};
  if (transpose) {
    int nop = window_ints(n, "output_padding", one_d, 0, out_pad);
    if (nop >= 0 && nop != 2)
      return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "output_padding needs 2 values");
    st = deconv_pads(x, n, &view, k, s, d, one_d, out_pad, &p);
  } else {
    st = window_pads(x, n, view.dims[2], view.dims[3], k, s, d, one_d, &p);
  }
  a.kh = k[0], a.kw = k[1], a.sh = s[0], a.sw = s[1], a.dh = d[0], a.dw = d[1];
  a.pad_top = p.top, a.pad_bottom = p.bottom, a.pad_left = p.left, a.pad_right = p.right;
  a.out_pad_h = (int)out_pad[0], a.out_pad_w = (int)out_pad[1];
  int in[3], node;
  if (st == CN_OK) st = runtime_operand(x, n, v, one_d, view.dims, &in[0]);
  if (st == CN_OK) st = runtime_operand(x, n, wv, one_d, wd, &in[1]);
  if (st == CN_OK && bv) st = cn_onnx_plain(x, bv, &in[2]);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_conv_runtime, cn_onnx_out_name(n), NULL, in, bv ? 3 : 2, &a,
                          &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st != CN_OK || !one_d) return st;
  cn_onnx_value o = *cn_onnx_find(x, n->output[0]); /* (1, n, m, 1, l) back to (n, m, l) */
  return cn_onnx_reshape_output(x, n, &o, 3, (int64_t[]){o.dims[1], o.dims[2], o.dims[4]});
}

static cn_status conv_conv(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (computed_weights(x, n)) return conv_runtime(x, n, 0);
  cn_onnx_value *v;
  const cn_onnx_const *w, *b = NULL;
  int k[2], s[2], d[2], node;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK) st = cn_onnx_weight_input(x, n, 1, &w);
  if (st == CN_OK && cn_onnx_input(x, n, 2)) st = cn_onnx_weight_input(x, n, 2, &b);
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 0, 0);
  if (st != CN_OK) return st;
  if (v->rank != 4 || w->rank != 4)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 2-D convolutions");
  int64_t group = cn_onnx_attr_int(n, "group", 1), cin = v->dims[1], filters = w->dims[0];
  if (k[0] == 0) k[0] = (int)w->dims[2], k[1] = (int)w->dims[3];
  if (k[0] != w->dims[2] || k[1] != w->dims[3] || group < 1 || cin % group ||
      w->dims[1] != cin / group || filters % group || filters > (1 << 24) ||
      (b && b->numel != filters))
    return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE,
                        "weights do not match the input, group or kernel_shape");
  cn_padding padding;
  st = padded_input(x, n, v, k, s, d, &node, &padding);
  if (st != CN_OK) return st;
  int depthwise = group == cin && group > 1;
  if (depthwise) {
    cn_depthwise_attrs a = {.kh = k[0],
                            .kw = k[1],
                            .sh = s[0],
                            .sw = s[1],
                            .dh = d[0],
                            .dw = d[1],
                            .depth_multiplier = (int)(filters / cin),
                            .use_bias = b != NULL,
                            .padding = padding,
                            .act = cn_act_linear()};
    st = cn_onnx_add_node(x, &cn_op_depthwise, cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  } else {
    cn_conv2d_attrs a = {.filters = (int)filters,
                         .kh = k[0],
                         .kw = k[1],
                         .sh = s[0],
                         .sw = s[1],
                         .dh = d[0],
                         .dw = d[1],
                         .groups = (int)group,
                         .use_bias = b != NULL,
                         .padding = padding,
                         .act = cn_act_linear()};
    st = cn_onnx_add_node(x, &cn_op_conv2d, cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  }
  float *kernel = st == CN_OK ? conv_kernel(w, depthwise) : NULL;
  if (st == CN_OK && !kernel) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, node, 0, kernel);
  if (st == CN_OK && b) st = cn_onnx_set_param_copy(x, node, 1, b, filters);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* A 1-D window op's input (N, C, L) as the 4-D value (N, C, 1, L) in *v4. */
static cn_status height_one_view(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 cn_onnx_value *v4) {
  int src;
  cn_status st = cn_onnx_plain(x, v, &src);
  cn_reshape_attrs a = {cn_shape_make(3, (int64_t[]){v->dims[1], 1, v->dims[2]})};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/2d", &src, 1, &a, &src);
  if (st != CN_OK) return st;
  *v4 = *v;
  memset(&v4->c, 0, sizeof v4->c);
  v4->rank = 4;
  v4->dims[2] = 1;
  v4->dims[3] = v->dims[2];
  v4->node = v4->plain_node = src;
  v4->layout = CN_ONNX_PLAIN;
  v4->nhwc_node = -1;
  return CN_OK;
}

/* Output 0, computed as (N, C, 1, L), back to ONNX's (N, C, L). */
static cn_status drop_height(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value o = *cn_onnx_find(x, n->output[0]);
  return cn_onnx_reshape_output(x, n, &o, 2, (int64_t[]){o.dims[1], o.dims[3]});
}

/* ConvTranspose pads: explicit, or from auto_pad / output_shape as the ONNX spec derives them. */
static cn_status deconv_pads(cn_onnx_ctx *x, const Onnx__NodeProto *n, const cn_onnx_value *v,
                             const int *k, const int *s, const int *d, int one_d, int64_t *out_pad,
                             pads2 *p) {
  char buf[32];
  const char *mode = cn_onnx_attr_string(n, "auto_pad", "NOTSET", buf, sizeof buf);
  int64_t shape[8];
  int ns = window_ints(n, "output_shape", one_d, 1, shape);
  if (ns < 0 && strncmp(mode, "SAME", 4) != 0) return window_pads(x, n, 1, 1, k, s, d, one_d, p);
  if (ns >= 0 && ns != 2)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "output_shape of %d values", ns);
  int before[2], after[2];
  for (int a = 0; a < 2; a++) {
    int64_t in = v->dims[2 + a], want = ns == 2 ? shape[a] : in * s[a];
    int64_t total = s[a] * (in - 1) + out_pad[a] + (int64_t)(k[a] - 1) * d[a] + 1 - want;
    if (total < 0) { /* a larger output_shape: the extra goes after, as output padding */
      out_pad[a] -= total;
      total = 0;
    }
    if (total > 65536 || out_pad[a] > 65536)
      return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "output_shape");
    int lower = strcmp(mode, "SAME_LOWER") == 0;
    before[a] = (int)(lower ? total - total / 2 : total / 2);
    after[a] = (int)(total - before[a]);
  }
  *p = (pads2){before[0], after[0], before[1], after[1]};
  return CN_OK;
}

/* ONNX (in, filters/groups, kh, kw) to the engine's (kh, kw, filters/groups, in). */
static float *deconv_kernel(const cn_onnx_const *w) {
  int64_t ci = w->dims[0], fg = w->dims[1], kh = w->dims[2], kw = w->dims[3];
  float *k = malloc((size_t)w->numel * sizeof *k);
  if (!k) return NULL;
  for (int64_t i = 0; i < ci; i++)
    for (int64_t f = 0; f < fg; f++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t xx = 0; xx < kw; xx++)
          k[((y * kw + xx) * fg + f) * ci + i] = w->f[((i * fg + f) * kh + y) * kw + xx];
  return k;
}

static cn_status conv_conv_transpose(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (computed_weights(x, n)) return conv_runtime(x, n, 1);
  cn_onnx_value *in, view, *v = &view;
  const cn_onnx_const *w3 = NULL, *b = NULL;
  int k[2], s[2], d[2], node;
  cn_status st = cn_onnx_act_input(x, n, 0, &in);
  if (st == CN_OK) st = cn_onnx_weight_input(x, n, 1, &w3);
  if (st == CN_OK && cn_onnx_input(x, n, 2)) st = cn_onnx_weight_input(x, n, 2, &b);
  int one_d = st == CN_OK && in->rank == 3 && w3->rank == 3 && !x->whole;
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 0, one_d);
  if (st != CN_OK) return st;
  if ((in->rank != 4 || w3->rank != 4) && !one_d)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D transposed convolutions");
  cn_onnx_const w4 = *w3, *w = &w4; /* a 1-D kernel (in, out, k) viewed as (in, out, 1, k) */
  if (one_d) {
    w4.rank = 4;
    w4.dims[3] = w3->dims[2];
    w4.dims[2] = 1;
    st = height_one_view(x, n, in, &view);
  } else {
    v = in;
  }
  if (st != CN_OK) return st;
  int64_t group = cn_onnx_attr_int(n, "group", 1), filters = w->dims[1] * group;
  if (k[0] == 0) k[0] = (int)w->dims[2], k[1] = (int)w->dims[3];
  if (k[0] != w->dims[2] || k[1] != w->dims[3] || group < 1 || w->dims[0] != v->dims[1] ||
      v->dims[1] % group || filters > (1 << 24) || (b && b->numel != filters))
    return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE,
                        "weights do not match the input, group or kernel_shape");
  int64_t out_pad[8] = {0, 0};
  int nop = window_ints(n, "output_padding", one_d, 0, out_pad);
  if (nop >= 0 && nop != 2)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "output_padding needs 2 values");
  pads2 p;
  st = deconv_pads(x, n, v, k, s, d, one_d, out_pad, &p);
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_conv_transpose_attrs a = {
      (int)filters,   k[0],      k[1],  s[0],   s[1],     d[0],    d[1],
      (int)group,     b != NULL, p.top, p.left, p.bottom, p.right, (int)out_pad[0],
      (int)out_pad[1]};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_conv_transpose, cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  float *kernel = st == CN_OK ? deconv_kernel(w) : NULL;
  if (st == CN_OK && !kernel) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = cn_onnx_set_param(x, node, 0, kernel);
  if (st == CN_OK && b) st = cn_onnx_set_param_copy(x, node, 1, b, filters);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  if (st == CN_OK && one_d) st = drop_height(x, n);
  return st;
}

/* MaxPool's Indices output (output 1): a second pooling node, on the same NHWC input, that
 * writes the flat NCHW index of each maximum. */
static cn_status pool_indices(cn_onnx_ctx *x, const Onnx__NodeProto *n, int src,
                              const cn_pool_attrs *values, int storage_order, int one_d) {
  cn_pool_attrs a = *values;
  int node;
  a.indices = 1;
  a.storage_order = storage_order; /* on a 1-D window's (1, L) view both orders agree */
  cn_status st =
      cn_onnx_add_node(x, &cn_op_maxpool, cn_onnx_out_name(n), "/indices", &src, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 1, node, CN_ONNX_NHWC);
  if (st != CN_OK || !one_d) return st;
  cn_onnx_value *o = cn_onnx_find(x, n->output[1]);
  int plain;
  cn_reshape_attrs r = {cn_shape_make(2, (int64_t[]){o->dims[1], o->dims[3]})};
  st = cn_onnx_plain(x, o, &plain);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, n->output[1], NULL, &plain, 1, &r, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 1, node, CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_pool(cn_onnx_ctx *x, const Onnx__NodeProto *n, int is_max) {
  cn_onnx_value *in, view, *v = &view;
  int k[2], s[2], d[2], node;
  cn_status st = cn_onnx_act_input(x, n, 0, &in);
  int one_d = st == CN_OK && in->rank == 3 && !x->whole;
  if (st == CN_OK) st = window_geometry(x, n, k, s, d, 1, one_d);
  if (st != CN_OK) return st;
  if (in->rank != 4 && !one_d)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 1-D and 2-D pooling");
  int storage_order = (int)cn_onnx_attr_int(n, "storage_order", 0);
  if (storage_order != 0 && storage_order != 1)
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "storage_order %d", storage_order);
  if (one_d)
    st = height_one_view(x, n, in, &view);
  else
    v = in;
  pads2 p;
  if (st == CN_OK) st = window_pads(x, n, v->dims[2], v->dims[3], k, s, d, one_d, &p);
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  if (st != CN_OK) return st;
  int include_pad = !is_max && cn_onnx_attr_int(n, "count_include_pad", 0) != 0;
  int ceil_mode = cn_onnx_attr_int(n, "ceil_mode", 0) != 0;
  cn_pool_attrs a = {.ph = k[0], .pw = k[1], .sh = s[0], .sw = s[1], .padding = CN_PAD_VALID};
  int plain_window = d[0] == 1 && d[1] == 1 && !ceil_mode;
  if (plain_window && !include_pad && !pads_zero(&p) &&
      pads_are_same(&p, v->dims[2], v->dims[3], k, s, d)) {
    a.padding = CN_PAD_SAME; /* TF's same padding ignores padded cells, as ONNX does here */
  } else if (!plain_window || !pads_zero(&p)) {
    a.pad_top = p.top, a.pad_left = p.left, a.pad_bottom = p.bottom, a.pad_right = p.right;
    a.ceil_mode = ceil_mode, a.count_include_pad = include_pad, a.dh = d[0], a.dw = d[1];
  }
  int src = node;
  st = cn_onnx_add_node(x, is_max ? &cn_op_maxpool : &cn_op_avgpool, cn_onnx_out_name(n), NULL,
                        &src, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  if (st == CN_OK && one_d) st = drop_height(x, n);
  if (st == CN_OK && is_max && n->n_output > 1 && *n->output[1])
    st = pool_indices(x, n, src, &a, storage_order, one_d);
  return st;
}

static cn_status conv_maxpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_pool(x, n, 1);
}

static cn_status conv_avgpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_pool(x, n, 0);
}

static cn_status conv_global_pool(cn_onnx_ctx *x, const Onnx__NodeProto *n, int is_max) {
  cn_onnx_value *v;
  int node;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st == CN_OK && v->rank != 4) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "only 4-D inputs");
  if (st == CN_OK) st = cn_onnx_nhwc(x, v, &node);
  cn_global_pool_attrs a = {.keepdims = 1};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, is_max ? &cn_op_global_maxpool : &cn_op_global_avgpool,
                          cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_NHWC);
  return st;
}

/* A reduction over any set of axes but the batch, in ONNX order (cn_op_reduce). na = 0: every
 * axis. */
static cn_status reduce_axes(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                             const int64_t *axes, int na, int keep) {
  static const struct {
    const char *op;
    cn_reduce_kind kind;
  } kinds[] = {{"ReduceSum", CN_REDUCE_SUM},
               {"ReduceMean", CN_REDUCE_MEAN},
               {"ReduceMax", CN_REDUCE_MAX},
               {"ReduceMin", CN_REDUCE_MIN}};
  cn_reduce_attrs a = {.keepdims = keep};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
    if (strcmp(kinds[k].op, n->op_type) == 0) a.kind = kinds[k].kind;
  int r = cn_onnx_rank(x, v);
  for (int k = 0; k < (na ? na : r); k++) {
    int d = cn_onnx_dims_axis(x, v, na ? axes[k] : k);
    if (d < 0) return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axis out of range for rank %d", r);
    if (d == 0) return CN_ONNX_BATCH_FAIL(x, n, "a reduction over the batch axis");
    a.axes |= 1 << (d - 1);
  }
  int node;
  cn_status st = cn_onnx_plain(x, v, &node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reduce, cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* ReduceSum/Mean/Max/Min: axes an attribute (before opset 18; ReduceSum 13) or a constant input.
 * Over exactly the spatial axes of a 4-D tensor it is a global pooling (in NHWC, as the networks
 * that use it want); over other axes a general reduction. */
static cn_status conv_reduce(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int64_t axes[CN_ONNX_MAX_RANK];
  int na = cn_onnx_attr_ints(n, "axes", axes, CN_ONNX_MAX_RANK);
  cn_onnx_value *in1 = cn_onnx_input(x, n, 1);
  if (in1 && in1->kind != CN_ONNX_CONST)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "axes computed at run time");
  const cn_onnx_const *ac = in1 ? &in1->c : NULL;
  if (ac && (!ac->is_int || ac->rank > 1 || ac->numel > CN_ONNX_MAX_RANK))
    return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axes must be a 1-D integer tensor of at most %d",
                        CN_ONNX_MAX_RANK);
  if (na < 0 && ac)
    for (na = 0; na < (int)ac->numel; na++) axes[na] = ac->i[na];
  if (na < 0) na = 0;
  int keep = cn_onnx_attr_int(n, "keepdims", 1) != 0, node;
  if (na == 0 && cn_onnx_attr_int(n, "noop_with_empty_axes", 0)) {
    cn_onnx_alias_output(x, n, 0, v, v->node);
    return CN_OK;
  }
  for (int i = 0; i < na; i++)
    for (int j = 0; j < i; j++)
      if (cn_onnx_dims_axis(x, v, axes[i]) >= 0 &&
          cn_onnx_dims_axis(x, v, axes[i]) == cn_onnx_dims_axis(x, v, axes[j]))
        return CN_ONNX_FAIL(x, n, CN_ERR_FORMAT, "axis %" PRId64 " is repeated", axes[i]);
  int is_max = strcmp(n->op_type, "ReduceMax") == 0;
  int spatial =
      v->rank == 4 && na == 2 && !x->whole && (is_max || strcmp(n->op_type, "ReduceMean") == 0);
  for (int k = 0; spatial && k < 2; k++) {
    int64_t a = axes[k] < 0 ? axes[k] + 4 : axes[k];
    spatial = a == 2 || a == 3;
  }
  if (!spatial) return reduce_axes(x, n, v, axes, na, keep);
  st = cn_onnx_nhwc(x, v, &node);
  cn_global_pool_attrs a = {.keepdims = keep};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, is_max ? &cn_op_global_maxpool : &cn_op_global_avgpool,
                          cn_onnx_out_name(n), NULL, &node, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, keep ? CN_ONNX_NHWC : CN_ONNX_PLAIN);
  return st;
}

static cn_status conv_global_avgpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_global_pool(x, n, 0);
}

static cn_status conv_global_maxpool(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  return conv_global_pool(x, n, 1);
}

/* ---- normalization ------------------------------------------------------------------------- */

/* Parameter k (1..4: scale, bias, mean, var) of a BatchNormalization on rank-r input with c
 * channels, computed at run time, as an engine node of shape (1, c, 1, ...) that broadcasts. */
static cn_status bn_operand(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, int r, int64_t c,
                            int *node) {
  cn_onnx_value *p;
  cn_status st = cn_onnx_act_input(x, n, k, &p);
  if (st != CN_OK) return st;
  if (cn_onnx_rank(x, p) != 1 || p->dims[1] != c)
    return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "parameters do not have %" PRId64 " values", c);
  int64_t dims[CN_MAX_RANK];
  for (int d = 0; d < r; d++) dims[d] = d == 1 ? c : 1;
  cn_reshape_attrs a = {cn_shape_make(r, dims)};
  st = cn_onnx_plain(x, p, node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/param", node, 1, &a, node);
  return st;
}

/* BatchNormalization with parameters computed at run time, spelled out with broadcasting ops:
 * (x - mean) / sqrt(var + epsilon) * scale + bias. */
static cn_status batchnorm_runtime(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_need_whole(x, n, "parameters");
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int r = cn_onnx_rank(x, v), p[4], node;
  if (r < 2) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "input without a channel axis");
  for (size_t k = 0; st == CN_OK && k < 4; k++) st = bn_operand(x, n, k + 1, r, v->dims[2], &p[k]);
  if (st == CN_OK) st = cn_onnx_plain(x, v, &node);
  float eps = cn_onnx_attr_float(n, "epsilon", 1e-5f);
  cn_unary_attrs sq = {.kind = CN_UN_SQRT};
  int den;
  if (st == CN_OK) st = cn_onnx_scalar_op(x, n, CN_BIN_ADD, p[3], eps, "/var_eps", &den);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_unary, cn_onnx_out_name(n), "/std", &den, 1, &sq, &den);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_SUB, node, p[2], "/centred", &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_DIV, node, den, "/normed", &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_MUL, node, p[0], "/scaled", &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_ADD, node, p[1], NULL, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

/* The mean over every axis but ONNX axis 1 of engine node src (ONNX dims d, rank r), per channel:
 * axis 1 to the front, the rest flattened, times a constant column of 1 / count. */
static cn_status channel_mean(cn_onnx_ctx *x, const Onnx__NodeProto *n, int src, int r,
                              const int64_t *d, const char *suffix, int *node) {
  int perm[CN_MAX_RANK];
  int64_t count = 1;
  for (int k = 0; k < r; k++) {
    perm[k] = k == 0 ? 1 : k == 1 ? 0 : k;
    if (k != 1) count *= d[k];
  }
  cn_reshape_attrs flat = {cn_shape_make(2, (int64_t[]){d[1], count})};
  cn_matmul_attrs mean = {1, cn_shape_make(1, &count)};
  cn_status st = cn_onnx_add_transpose(x, src, suffix, r, perm, node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), suffix, node, 1, &flat, node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_matmul, cn_onnx_out_name(n), suffix, node, 1, &mean, node);
  float *w = st == CN_OK ? malloc((size_t)count * sizeof *w) : NULL;
  if (st == CN_OK && !w) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st != CN_OK) return st;
  for (int64_t k = 0; k < count; k++) w[k] = 1.0f / (float)count;
  return cn_onnx_set_param(x, *node, 0, w);
}

/* stat (c) as (1, c, 1, ...) of rank r, to broadcast against the input. */
static cn_status channel_shape(cn_onnx_ctx *x, const Onnx__NodeProto *n, int stat, int r, int64_t c,
                               int *node) {
  int64_t dims[CN_MAX_RANK];
  for (int d = 0; d < r; d++) dims[d] = d == 1 ? c : 1;
  cn_reshape_attrs a = {cn_shape_make(r, dims)};
  return cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), "/bcast", &stat, 1, &a, node);
}

/* Output k (running mean 1, running variance 2): input * momentum + batch * (1 - momentum). */
static cn_status running_stat(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, int batch) {
  if (k >= n->n_output || !*n->output[k]) return CN_OK;
  float momentum = cn_onnx_attr_float(n, "momentum", 0.9f);
  cn_onnx_value *in = cn_onnx_input(x, n, k + 2);
  int old, node;
  cn_status st = cn_onnx_plain(x, in, &old);
  if (st == CN_OK) st = cn_onnx_scalar_op(x, n, CN_BIN_MUL, old, momentum, "/kept", &old);
  if (st == CN_OK) st = cn_onnx_scalar_op(x, n, CN_BIN_MUL, batch, 1 - momentum, "/new", &batch);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_ADD, old, batch, "/running", &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, k, node, CN_ONNX_PLAIN);
  return st;
}

/* BatchNormalization with training_mode 1: normalises by the batch statistics (mean and biased
 * variance over every axis but 1) and outputs the updated running statistics. The parameters
 * must be computed (graph inputs): the graph runs as one sample, the batch axis being data. */
static cn_status batchnorm_training(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  cn_onnx_value *v;
  cn_status st = cn_onnx_need_whole(x, n, "training-mode statistics");
  if (st == CN_OK) st = cn_onnx_act_input(x, n, 0, &v);
  if (st != CN_OK) return st;
  int r = cn_onnx_rank(x, v), p[4], src, mean, var, node;
  if (r < 2 || n->n_output > 3)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "training mode of this form");
  int64_t c = v->dims[2];
  for (size_t k = 0; st == CN_OK && k < 4; k++) st = bn_operand(x, n, k + 1, r, c, &p[k]);
  if (st == CN_OK) st = cn_onnx_plain(x, v, &src);
  if (st == CN_OK) st = channel_mean(x, n, src, r, v->dims + 1, "/mean", &mean);
  if (st == CN_OK) st = channel_shape(x, n, mean, r, c, &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_SUB, src, node, "/centred", &src);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_MUL, src, src, "/squared", &node);
  if (st == CN_OK) st = channel_mean(x, n, node, r, v->dims + 1, "/var", &var);
  if (st == CN_OK) st = channel_shape(x, n, var, r, c, &node);
  float eps = cn_onnx_attr_float(n, "epsilon", 1e-5f);
  cn_unary_attrs sq = {.kind = CN_UN_SQRT};
  if (st == CN_OK) st = cn_onnx_scalar_op(x, n, CN_BIN_ADD, node, eps, "/var_eps", &node);
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_unary, cn_onnx_out_name(n), "/std", &node, 1, &sq, &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_DIV, src, node, "/normed", &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_MUL, node, p[0], "/scaled", &node);
  if (st == CN_OK) st = cn_onnx_binary_nodes(x, n, CN_BIN_ADD, node, p[1], NULL, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  if (st == CN_OK) st = running_stat(x, n, 1, mean);
  if (st == CN_OK) st = running_stat(x, n, 2, var);
  return st;
}

static int any_computed(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t from, size_t to) {
  for (size_t k = from; k <= to; k++) {
    cn_onnx_value *v = cn_onnx_input(x, n, k);
    if (v && v->kind == CN_ONNX_ACT) return 1;
  }
  return 0;
}

static cn_status conv_batchnorm(cn_onnx_ctx *x, const Onnx__NodeProto *n) {
  if (cn_onnx_attr_int(n, "training_mode", 0) != 0 && x->opset >= 14)
    return batchnorm_training(x, n);
  if (any_computed(x, n, 1, 4)) return batchnorm_runtime(x, n);
  cn_onnx_value *v;
  const cn_onnx_const *p[4];
  cn_status st = cn_onnx_act_input(x, n, 0, &v);
  for (int k = 0; st == CN_OK && k < 4; k++) st = cn_onnx_weight_input(x, n, (size_t)k + 1, &p[k]);
  if (st != CN_OK) return st;
  if (cn_onnx_attr_int(n, "training_mode", 0) != 0 ||
      (x->opset < 7 && cn_onnx_attr_int(n, "is_test", 0) == 0 && cn_onnx_attr(n, "is_test")))
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "training mode");
  if (x->opset < 9 && cn_onnx_attr_int(n, "spatial", 1) != 1)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "spatial 0");
  for (size_t k = 1; k < n->n_output; k++)
    if (*n->output[k]) return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "running statistics outputs");
  if (cn_onnx_rank(x, v) < 2)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "input without a channel axis");
  int64_t c = v->dims[1 + x->whole];
  for (int k = 0; k < 4; k++)
    if (p[k]->numel != c)
      return CN_ONNX_FAIL(x, n, CN_ERR_SHAPE, "parameters do not have %" PRId64 " values", c);
  cn_batchnorm_attrs a = {.epsilon = cn_onnx_attr_float(n, "epsilon", 1e-5f),
                          .center = 1,
                          .scale = 1,
                          .axis = cn_onnx_engine_axis(v, 1 + x->whole),
                          .momentum = cn_onnx_attr_float(n, "momentum", 0.9f)};
  int src = v->node, node;
  if (v->layout == CN_ONNX_FLAT) st = cn_onnx_plain(x, v, &src);
  cn_onnx_value copy = *v;
  if (v->layout == CN_ONNX_FLAT) copy.layout = CN_ONNX_PLAIN, copy.node = src;
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_batchnorm, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  for (int k = 0; st == CN_OK && k < 4; k++) st = cn_onnx_set_param_copy(x, node, k, p[k], c);
  if (st == CN_OK) cn_onnx_alias_output(x, n, 0, &copy, node);
  return st;
}

/* Output 0 of n: v in ONNX order reshaped to the per-sample dims (rank values). */
cn_status cn_onnx_reshape_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 int rank, const int64_t *dims) {
  if (rank < 1 || rank > CN_MAX_RANK - 1)
    return CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, "a result of rank %d", rank + 1 - x->whole);
  int src, node;
  cn_status st = cn_onnx_plain(x, v, &src);
  cn_reshape_attrs a = {cn_shape_make(rank, dims)};
  if (st == CN_OK)
    st = cn_onnx_add_node(x, &cn_op_reshape, cn_onnx_out_name(n), NULL, &src, 1, &a, &node);
  if (st == CN_OK) st = cn_onnx_set_output(x, n, 0, node, CN_ONNX_PLAIN);
  return st;
}

const cn_onnx_converter cn_onnx_conv_converters[] = {
    {"Conv", conv_conv},
    {"MaxPool", conv_maxpool},
    {"AveragePool", conv_avgpool},
    {"GlobalAveragePool", conv_global_avgpool},
    {"GlobalMaxPool", conv_global_maxpool},
    {"BatchNormalization", conv_batchnorm},
    {"ConvTranspose", conv_conv_transpose},
    {"ReduceMean", conv_reduce},
    {"ReduceMax", conv_reduce},
    {"ReduceSum", conv_reduce},
    {"ReduceMin", conv_reduce},
    {NULL, NULL},
};
