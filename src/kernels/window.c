/* Sliding-window geometry shared by convolution, depthwise convolution and pooling. */
#include "kernels/kernels.h"

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
