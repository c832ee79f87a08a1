/* src/kernels: the hot loops (GEMM blocks, im2col, Winograd, depthwise, pooling) and the pure math
 * they share (activations, window sizes). Includes nothing of src/ above it.
 *
 * The hot loops behind the operators. Everything is NHWC with the batch dimension first, kernels
 * HWIO. Kernels never fail: the ops validate shapes in infer. OpenMP loops use `threads`; BLAS is
 * only ever called from serial code (no nested parallelism). */
#ifndef CN_KERNELS_KERNELS_H
#define CN_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "convnet/core.h"
#include "kernels/activation.h"

/* Geometry of a sliding-window op (convolution, depthwise, pooling) on an NHWC batch. */
/* n floats rounded up to whole 64-byte lines: the start of what follows them in a buffer stays
 * aligned. */
static inline size_t cn_line_floats(size_t n) {
  return (n + 15) / 16 * 16;
}

/* Bytes from one row to the next for rows of `bytes` a kernel reads side by side: whole 64-byte
 * lines, an odd number of them, so that consecutive rows fall in distinct L1 sets (rows a multiple
 * of 4 KB apart all share one: gemm_panels.c's rows_crowd_a_set). */
static inline size_t cn_spread_row_bytes(size_t bytes) {
  return ((bytes + 63) / 64 | 1) * 64;
}

typedef struct cn_window {
  int64_t batch, ih, iw, c; /* input */
  int64_t oh, ow;           /* output */
  int kh, kw, sh, sw, dh, dw;
  int pad_top, pad_left;
} cn_window;

typedef enum cn_padding { CN_PAD_VALID, CN_PAD_SAME } cn_padding;

/* TensorFlow's padding rule: output size and the (asymmetric, extra at the end) leading pad. */
int64_t cn_conv_out_size(int64_t in, int k, int stride, int dilation, cn_padding pad);
int cn_conv_pad_before(int64_t in, int k, int stride, int dilation, cn_padding pad);

/* Bias (may be NULL) and activation (softmax over the row) on one row of n values. */
void cn_bias_act_row(float *y, int64_t n, const float *bias, const cn_activation *act);

/* Builds the window for an input (n, ih, iw, c) with TensorFlow's padding rule. */
cn_window cn_window_make(const cn_shape *in, int kh, int kw, int sh, int sw, int dh, int dw,
                         cn_padding padding);
/* With explicit zero rows and columns around the input (top, bottom, left, right; padding must
 * then be VALID): the output size and leading pads of a padded copy of the input, without the
 * copy. All four 0: cn_window_make. */
cn_window cn_window_make_padded(const cn_shape *in, int kh, int kw, int sh, int sw, int dh, int dw,
                                cn_padding padding, int top, int bottom, int left, int right);
/* The taps [*lo, *hi) of a window of k taps `dilation` apart, its first at `start`, that land
 * inside [0, n) (an empty range, lo == hi, when none does). */
void cn_window_taps(int64_t start, int k, int dilation, int64_t n, int *lo, int *hi);
/* How many of those k taps lie before `end` (> 0), counting from the first: with `end` the input's
 * length plus the padding after it, the cells an average that counts the padding divides by. */
int cn_window_taps_before(int64_t start, int k, int dilation, int64_t end);

/* Bias (may be NULL) and activation (softmax over each row) over rows of `cols` values, `ld`
 * apart. */
void cn_bias_act_rows(float *y, int64_t rows, int64_t cols, int64_t ld, const float *bias,
                      const cn_activation *act, int threads);

/* y(m, n) = act(x(m, k) * w(k, n) + bias): Dense, and 1x1 convolutions. */
void cn_gemm_bias_act(int64_t m, int64_t n, int64_t k, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy, int threads);

/* The fixed grid of blocks cn_gemm_bias_act cuts an (m x n, depth k) product into: a function of
 * the shape only, each block one single-threaded sgemm, so results are bitwise the same for any
 * thread count. cn_gemm_plan_run is a worksharing loop: call it from every thread of a parallel
 * region (a team) or from serial code; it runs in a team when cn_gemm_plan_parallel says so
 * (otherwise OpenBLAS might split a block over threads itself). */
typedef struct cn_gemm_plan {
  int64_t m, n, k;
  int64_t block_rows, block_cols, row_blocks, col_blocks;
} cn_gemm_plan;
cn_gemm_plan cn_gemm_plan_make(int64_t m, int64_t n, int64_t k);
/* s[r][0..16) += sum over t < n of v[t * ldv + r] * m[t * ldm + 0..16), for the 6 rows r < 6: the
 * register-blocked outer products of the kernel gradients (each sum in the order of t). */
void cn_outer_6x16(const float *v, int64_t ldv, const float *m, int64_t ldm, int64_t n, float *s,
                   int64_t lds);
int64_t cn_gemm_plan_blocks(const cn_gemm_plan *p);
int cn_gemm_plan_parallel(const cn_gemm_plan *p, int threads);
void cn_gemm_plan_run(const cn_gemm_plan *p, const float *x, int64_t ldx, const float *w,
                      int64_t ldw, const float *bias, const cn_activation *act, float *y,
                      int64_t ldy);

/* y(m, n) = act(x(m, k) * w(k, n) + bias) for a few rows, w read in place row after row (src/
 * kernels/gemm_rows.c): each output one chain of multiply-adds over k, whatever the threads. */
void cn_gemm_rows(int64_t m, const float *x, int64_t ldx, const float *w, int64_t ldw, int64_t k,
                  int64_t n, const float *bias, const cn_activation *act, float *y, int64_t ldy,
                  int threads);

/* ---- fp32 products against weights packed once (src/kernels/gemm_panels.c) ----
 * The (k x n) weights in panels of cn_panels_cols() columns (cn_panels_floats floats, zero-padded
 * past n), packed by cn_panels_pack; y(m, n) = act(x(m, k) * w + bias), the activation
 * elementwise (not softmax). Each output is the same chain of multiply-adds whatever the thread
 * count or m, so a row's result does not depend on the rows beside it. cn_panels_gemm_team is a
 * worksharing loop: call it from every thread of a parallel region; cn_panels_gemm_serial runs on
 * the calling thread alone. */
typedef struct cn_panels {
  const float *data;
  int64_t k, n;
} cn_panels;
int cn_panels_cols(void);
int cn_panels_preferred(void); /* whether convolutions should take them by default (this build) */
size_t cn_panels_floats(int64_t k, int64_t n);
void cn_panels_pack(const float *w, int64_t ldw, int64_t k, int64_t n, float *dst);
void cn_panels_gemm(int64_t m, const float *x, int64_t ldx, const cn_panels *w, const float *bias,
                    const cn_activation *act, float *y, int64_t ldy, int threads);
void cn_panels_gemm_team(int64_t m, const float *x, int64_t ldx, const cn_panels *w,
                         const float *bias, const cn_activation *act, float *y, int64_t ldy,
                         int threads);
void cn_panels_gemm_serial(int64_t m, const float *x, int64_t ldx, const cn_panels *w,
                           const float *bias, const cn_activation *act, float *y, int64_t ldy);
/* Whether cn_panels_gemm may write y over act->residual (the same buffer, ldy == ldx of both):
 * true when every output reads its residual just before it is written, by the same thread (one
 * slice of k, whole panels, an activation the micro-kernels finish). */
int cn_panels_in_place(int64_t k, int64_t n, const cn_activation *act);
/* Whether products of depth k run in one pass, each output's sums in registers throughout (a
 * convolution's tap rows one after another, however short). */
int cn_panels_one_pass(int64_t k);
/* The convolution w (kernel packed from its HWIO (kh*kw*c) x n matrix; dw == 1) by the same
 * products with the patches read in place (no im2col): xp is its input zero-padded to ihp x iwp
 * (its pad_top and pad_left already in, and rows and columns enough at the end for every tap),
 * y the (pixels x n) output. The same bits as cn_panels_gemm on im2col's rows. A worksharing
 * loop, like cn_panels_gemm_team. */
void cn_panels_conv_team(const cn_window *w, const float *xp, int64_t ihp, int64_t iwp,
                         const cn_panels *k, const float *bias, const cn_activation *act, float *y,
                         int threads);
/* Whether cn_panels_conv_team reads w's unpadded input (ihp == ih, iwp == iw) although its windows
 * reach past the image: each strip of output pixels passes only the taps inside the image (one
 * pass, whole panels, an activation the micro-kernels finish). The same bits. */
int cn_panels_conv_exact(const cn_window *w, const cn_panels *k, const cn_activation *act);

/* ---- bfloat16 products (src/kernels/gemm_bf16.c) ---- */

enum { CN_BF16_NR = 32 }; /* columns per packed panel */

/* Round to nearest even; NaN stays NaN; denormals flush to zero (as AVX512_BF16 does). */
uint16_t cn_bf16_from_float(float f);
void cn_bf16_convert(const float *x, int64_t n, uint16_t *dst); /* n values */
float cn_bf16_to_float(uint16_t h);
/* The micro-kernel the products run on: AMX tiles (the CPU has AMX-BF16 and the OS grants the
 * tile state; CONVNET_BF16_AMX=0 declines them), VDPBF16PS (AVX512_BF16), or the values widened
 * to fp32 (other CPUs, or CONVNET_BF16_WIDEN=1). Non-zero: the CPU multiplies bf16 itself. */
enum { CN_BF16_WIDENED = 0, CN_BF16_DPBF16 = 1, CN_BF16_AMX = 2 };
int cn_bf16_native(void);
/* A (k x n) weight matrix in bf16, packed for the micro-kernels; native as cn_bf16_native said
 * when it was packed. */
typedef struct cn_bf16_matrix {
  int64_t k, n;
  int native;
  const uint16_t *data; /* cn_bf16_packed_len(k, n) values */
} cn_bf16_matrix;
size_t cn_bf16_packed_len(int64_t k, int64_t n);
void cn_bf16_pack(const float *w, int64_t ldw, int64_t k, int64_t n, uint16_t *dst);
/* A row of k bf16 values as the products read it: cn_bf16_row_len(k) values (even), zero-padded. */
int64_t cn_bf16_row_len(int64_t k);
void cn_bf16_convert_row(const float *x, int64_t k, uint16_t *dst);
/* y(m, n) = act(x(m, k) * w + bias) with x already in bf16 rows (ldx >= cn_bf16_row_len(k)), on
 * the calling thread. */
void cn_bf16_gemm_rows(int64_t m, const uint16_t *x, int64_t ldx, const cn_bf16_matrix *w,
                       const float *bias, const cn_activation *act, float *y, int64_t ldy);
/* The same from fp32 x, rounded a block of rows at a time into scratch (cn_bf16_gemm_scratch
 * values), with `threads` threads. Bitwise the same for any thread count. */
size_t cn_bf16_gemm_scratch(int64_t k, int threads);
void cn_bf16_gemm(int64_t m, const float *x, int64_t ldx, const cn_bf16_matrix *w,
                  const float *bias, const cn_activation *act, float *y, int64_t ldy,
                  uint16_t *scratch, int threads);

/* Conv2D: kernel (kh, kw, c/groups, filters). scratch holds cn_conv2d_scratch floats. */
size_t cn_conv2d_scratch(const cn_window *w, int64_t filters, int groups);
void cn_conv2d(const cn_window *w, int64_t filters, int groups, const float *x, const float *kernel,
               const float *bias, const cn_activation *act, float *y, float *scratch, int threads);

/* The same, ungrouped, with the kernel in fp32 panels (k = kh*kw*c rows, filters columns); scratch
 * holds cn_conv2d_scratch(w, filters, 1) floats. */
void cn_conv2d_panels(const cn_window *w, int64_t filters, const float *x, const cn_panels *k,
                      const float *bias, const cn_activation *act, float *y, float *scratch,
                      int threads);
/* Whether cn_conv2d_panels may write y over act->residual (cn_panels_in_place, 1x1 windows). */
int cn_conv2d_panels_in_place(const cn_window *w, int64_t filters, const cn_activation *act);
/* A 1x1 convolution w (stride 1, unpadded; kernel c x filters) plus act->residual, written over
 * that residual (y == act->residual): each pixel's sums kept apart until its residual is read.
 * cn_panels_gemm's operations in their order, so the same bits, in plain loops: the in-place
 * fallback when the panels' weights cannot be had. */
void cn_conv1x1_over_residual(const cn_window *w, int64_t filters, const float *x,
                              const float *kernel, const float *bias, const cn_activation *act,
                              float *y);
/* The same with the kernel packed as bf16 (k = kh*kw*c rows, filters columns; ungrouped):
 * patches rounded to bf16 as they are unfolded, fp32 sums. scratch holds cn_conv2d_bf16_scratch
 * floats for `threads` threads. */
size_t cn_conv2d_bf16_scratch(const cn_window *w, int64_t filters, int threads);
void cn_conv2d_bf16(const cn_window *w, int64_t filters, const float *x, const cn_bf16_matrix *k,
                    const float *bias, const cn_activation *act, float *y, float *scratch,
                    int threads);

/* Winograd F(4x4, 3x3) for 3x3 stride-1 undilated ungrouped convolutions with enough tiles and
 * channels (cn_winograd_applies). The kernel is transformed once into cn_winograd_kernel_floats
 * floats; scratch holds cn_winograd_scratch floats. Agrees with the direct sum within ~1e-6
 * relative to the output magnitude for unit-scale data. */
int cn_winograd_applies(const cn_window *w, int64_t filters, int groups);
int64_t cn_winograd_tiles(const cn_window *w); /* 4x4 output tiles over the batch */
size_t cn_winograd_kernel_floats(int64_t c, int64_t filters);
void cn_winograd_transform_kernel(const float *kernel, int64_t c, int64_t filters, float *u,
                                  int threads);
size_t cn_winograd_scratch(const cn_window *w, int64_t filters);
void cn_winograd_conv(const cn_window *w, int64_t filters, const float *x, const float *u,
                      const float *bias, const cn_activation *act, float *y, float *scratch,
                      int threads);
/* The kernel gradient of such a convolution by the transposed algorithm, F(3x3, 4x4): sums
 * (cn_winograd_grad_floats, zeroed by the caller) accumulate the batch's tiles of input x and
 * output gradient g; finish adds the 3x3 gradient into dkernel (HWIO). scratch holds
 * cn_winograd_grad_scratch floats. Bitwise the same for any thread count and batch split. */
size_t cn_winograd_grad_floats(int64_t c, int64_t filters);
size_t cn_winograd_grad_scratch(int64_t c, int64_t filters);
void cn_winograd_grad_accumulate(const cn_window *w, int64_t filters, const float *x,
                                 const float *g, float *sums, float *scratch, int threads);
void cn_winograd_grad_finish(const float *sums, int64_t c, int64_t filters, float *dkernel);

/* ---- backward of Conv2D / DepthwiseConv2D / Dense (src/kernels/conv2d_grad.c,
 * depthwise_grad.c) ---- */

/* The tensors of one convolution backward. Gradients are added (+=) into dx, dkernel, dbias; a
 * NULL one is skipped. pre: the pre-activation, needed only when cn_act_needs_pre(act). */
typedef struct cn_conv_grad {
  const float *x, *kernel, *out, *pre, *dout;
  const cn_activation *act;
  float *dx, *dkernel, *dbias;
} cn_conv_grad;

/* Conv2D (and Dense as a 1x1 convolution over rows): tiles of output pixels of a size fixed by
 * the geometry, im2col + GEMM per tile, so results are bitwise the same for any thread count. */
size_t cn_conv2d_backward_scratch(const cn_window *w, int64_t filters, int groups);
void cn_conv2d_backward(const cn_window *w, int64_t filters, int groups, const cn_conv_grad *io,
                        float *scratch, int threads);
/* DepthwiseConv2D: threads split the channels, so every sum keeps its order. */
size_t cn_depthwise_backward_scratch(const cn_window *w, int mult);
void cn_depthwise_backward(const cn_window *w, int mult, const cn_conv_grad *io, float *scratch,
                           int threads);

/* DepthwiseConv2D: kernel (kh, kw, c, mult), output channel c * mult + m. */
void cn_depthwise(const cn_window *w, int mult, const float *x, const float *kernel,
                  const float *bias, const cn_activation *act, float *y, int threads);
/* A depthwise convolution (multiplier 1, activation `act`), then a 1x1 unpadded stride-1
 * convolution on its output (`project`), and optionally one before it on its input (`expand`,
 * whose rows of k values become the rows of w->c values the depthwise reads; x is then its
 * input): y as the layers run apart, bit for bit, without the tensors between them in memory.
 * A pointwise product turns m rows of k values at x into m rows of n values at y, on the calling
 * thread, each row alone. On at most CN_DW_POINTWISE_WORKERS threads; scratch holds
 * cn_depthwise_pointwise_scratch(w, expand != NULL) floats. */
enum { CN_DW_POINTWISE_WORKERS = 8 };
typedef void (*cn_pointwise_fn)(const void *ctx, int64_t m, const float *x, float *y);
typedef struct cn_pointwise {
  cn_pointwise_fn fn;
  const void *ctx;
  int64_t k, n;
} cn_pointwise;
size_t cn_depthwise_pointwise_scratch(const cn_window *w, int expand);
void cn_depthwise_pointwise(const cn_window *w, const float *x, const cn_pointwise *expand,
                            const float *kernel, const float *bias, const cn_activation *act,
                            const cn_pointwise *project, float *y, float *scratch, int threads);

/* Pooling; padded cells are ignored (average divides by the valid cells only). */
void cn_maxpool(const cn_window *w, const float *x, float *y, int threads);
void cn_avgpool(const cn_window *w, const float *x, float *y, int threads);
/* Average pooling that counts the padded cells too (ONNX's count_include_pad): pad_bottom and
 * pad_right are the padding after the input. */
void cn_avgpool_padded(const cn_window *w, int pad_bottom, int pad_right, const float *x, float *y,
                       int threads);

/* Softmax in place along an axis of length n with `inner` elements after it (stable). */
void cn_softmax_axis(float *x, int64_t outer, int64_t n, int64_t inner, int threads);

/* Elementwise activation (not softmax) in place, split across threads. */
void cn_act_apply_parallel(const cn_activation *act, float *x, size_t n, int threads);

/* y = x * scale[c] + shift[c] for x viewed as (outer, c, inner); y may equal x. */
void cn_scale_shift(const float *x, float *y, int64_t outer, int64_t c, int64_t inner,
                    const float *scale, const float *shift, int threads);

/* ---- gradient accumulation (src/kernels/elementwise_grad.c) -------------------------------- */

/* dst[i] += src[i]; elementwise, so bitwise the same for any thread count. */
void cn_add_into(float *dst, const float *src, int64_t n, int threads);
/* x[0..n) = 0, in one slice per thread (the batch's activation gradients are megabytes). */
void cn_zero(float *x, int64_t n, int threads);
/* dst[i] += src[i] * scale. */
void cn_add_scaled_into(float *dst, const float *src, float scale, int64_t n, int threads);

#endif
