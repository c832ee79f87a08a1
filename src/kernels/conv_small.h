/* Convolutions whose patch is short (kh * kw * cin at most CN_CONV_SMALL_K): MobileNet's stem and
 * its 1x1 convolutions with 16-64 input channels. A GEMM that thin spends more time packing,
 * zeroing the output and re-reading it for bias and activation than multiplying; here each tile
 * of output pixels is computed in registers straight from the input (no packing), with the bias
 * as the accumulators' start and the activation applied while the tile is in cache. */
#ifndef CN_KERNELS_CONV_SMALL_H
#define CN_KERNELS_CONV_SMALL_H

#include "kernels/kernels.h"

enum { CN_CONV_SMALL_K = 64 };

/* Whether cn_conv_small handles this convolution: ungrouped, filters a multiple of 8, a patch of
 * at most CN_CONV_SMALL_K values, or a longer 1x1 one with a kernel small enough to stay cached. */
int cn_conv_small_applies(const cn_window *w, int64_t filters, int groups);

/* y = act(conv(x, kernel) + bias), kernel HWIO (kh, kw, c, filters), bias may be NULL. Every
 * output pixel is summed by one thread in a fixed order: bitwise the same for any thread count. */
void cn_conv_small(const cn_window *w, int64_t filters, const float *x, const float *kernel,
                   const float *bias, const cn_activation *act, float *y, int threads);

#endif
