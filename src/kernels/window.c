/* Sliding-window geometry shared by convolution, depthwise convolution and pooling. */
#include "kernels/kernels.h"

int64_t cn_conv_out_size(int64_t in, int k, int stride, int dilation, cn_padding pad) {
  if (in < 0 || k < 1 || stride < 1 || dilation < 1) return -1;
  if (pad == CN_PAD_SAME) return (in + stride - 1) / stride;
  int64_t span = (int64_t)(k - 1) * dilation + 1;
  return in < span ? 0 : (in - span) / stride + 1;
}

int cn_conv_pad_before(int64_t in, int k, int stride, int dilation, cn_padding pad) {
  if (pad != CN_PAD_SAME) return 0;
  int64_t out = cn_conv_out_size(in, k, stride, dilation, pad);
  int64_t total = (out - 1) * stride + (int64_t)(k - 1) * dilation + 1 - in;
  return total > 0 ? (int)(total / 2) : 0;
}

cn_window cn_window_make(const cn_shape *in, int kh, int kw, int sh, int sw, int dh, int dw,
                         cn_padding padding) {
  cn_window w = {.batch = in->dim[0], .ih = in->dim[1], .iw = in->dim[2], .c = in->dim[3]};
  w.kh = kh, w.kw = kw, w.sh = sh, w.sw = sw, w.dh = dh, w.dw = dw;
  w.oh = cn_conv_out_size(w.ih, kh, sh, dh, padding);
  w.ow = cn_conv_out_size(w.iw, kw, sw, dw, padding);
  w.pad_top = cn_conv_pad_before(w.ih, kh, sh, dh, padding);
  w.pad_left = cn_conv_pad_before(w.iw, kw, sw, dw, padding);
  return w;
}

cn_window cn_window_make_padded(const cn_shape *in, int kh, int kw, int sh, int sw, int dh, int dw,
                                cn_padding padding, int top, int bottom, int left, int right) {
  cn_window w = cn_window_make(in, kh, kw, sh, sw, dh, dw, padding);
  if (!top && !bottom && !left && !right) return w;
  w.oh = cn_conv_out_size(w.ih + top + bottom, kh, sh, dh, CN_PAD_VALID);
  w.ow = cn_conv_out_size(w.iw + left + right, kw, sw, dw, CN_PAD_VALID);
  w.pad_top = top;
  w.pad_left = left;
  return w;
}

void cn_window_taps(int64_t start, int k, int dilation, int64_t n, int *lo, int *hi) {
  int64_t first = start < 0 ? (-start + dilation - 1) / dilation : 0;
  int64_t end = n - start <= 0 ? 0 : (n - start + dilation - 1) / dilation;
  *lo = (int)(first < k ? first : k);
  *hi = (int)(end < k ? end : k);
  if (*hi < *lo) *hi = *lo;
}

int cn_window_taps_before(int64_t start, int k, int dilation, int64_t end) {
  int lo, hi;
  cn_window_taps(start, k, dilation, end, &lo, &hi);
  return hi;
}
