/* cn_conv_small (short-patch convolution) against the im2col/GEMM convolution: strided, padded,
 * dilated and 1x1 geometries, filter counts with an 8-wide tail, pixel counts that leave a partial
 * tile, relu6 and softmax; bitwise the same for 1 and 2 threads; which layers it takes. */
#include <math.h>
#include <stdlib.h>

#include "core/graph.h"
#include "kernels/conv_small.h"
#include "testlib.h"

static float *random_floats(size_t n, unsigned *seed) {
  float *v = malloc(n * sizeof *v);
  for (size_t i = 0; v && i < n; i++) {
    *seed = *seed * 1103515245u + 12345u;
    v[i] = (float)((*seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
  }
  return v;
}

typedef struct geometry {
  int batch, h, w, c, k, stride, dilation, filters;
  cn_padding padding;
} geometry;

static cn_window window_of(const geometry *g) {
  cn_shape in = cn_shape_make(4, (int64_t[]){g->batch, g->h, g->w, g->c});
  return cn_window_make(&in, g->k, g->k, g->stride, g->stride, g->dilation, g->dilation,
                        g->padding);
}

static void check_case(int id, const geometry *g, const cn_activation *act) {
  cn_window w = window_of(g);
  CHECK(cn_conv_small_applies(&w, g->filters, 1));
  unsigned seed = 1234u + (unsigned)id;
  size_t nx = (size_t)(w.batch * w.ih * w.iw * w.c), nk = (size_t)(g->k * g->k * w.c * g->filters);
  size_t ny = (size_t)(w.batch * w.oh * w.ow * g->filters);
  float *x = random_floats(nx, &seed), *k = random_floats(nk, &seed);
  float *bias = random_floats((size_t)g->filters, &seed);
  float *ref = malloc(ny * sizeof *ref), *one = malloc(ny * sizeof *one);
  float *two = malloc(ny * sizeof *two);
  float *scratch = malloc((cn_conv2d_scratch(&w, g->filters, 1) + 1) * sizeof *scratch);
  CHECK(x && k && bias && ref && one && two && scratch);
  if (!(x && k && bias && ref && one && two && scratch)) return;
  cn_conv2d(&w, g->filters, 1, x, k, bias, act, ref, scratch, 1);
  cn_conv_small(&w, g->filters, x, k, bias, act, one, 1);
  cn_conv_small(&w, g->filters, x, k, bias, act, two, 2);
  double worst = 0;
  int same = 1;
  for (size_t i = 0; i < ny; i++) {
    double d = fabs((double)one[i] - ref[i]);
    worst = d > worst ? d : worst;
    same &= one[i] == two[i];
  }
  if (worst > 1e-4) printf("case %d: max difference %g\n", id, worst);
  CHECK(worst <= 1e-4);
  CHECK(same);
  free(x), free(k), free(bias), free(ref), free(one), free(two), free(scratch);
}

static void test_against_gemm(void) {
  const geometry cases[] = {
      {1, 32, 30, 3, 3, 2, 1, 32, CN_PAD_SAME},    /* MobileNet's stem */
      {2, 9, 7, 16, 1, 1, 1, 96, CN_PAD_VALID},    /* 1x1 expansion, 2 images, partial tile */
      {1, 11, 5, 144, 1, 1, 1, 24, CN_PAD_VALID},  /* deep 1x1 projection, 8-wide tail */
      {1, 7, 9, 24, 1, 1, 1, 144, CN_PAD_VALID},   /* 64-filter tiles, then 16 */
      {1, 10, 10, 24, 1, 2, 1, 40, CN_PAD_VALID},  /* strided 1x1 */
      {1, 13, 12, 5, 3, 1, 2, 8, CN_PAD_SAME},     /* dilated, padded */
      {3, 6, 5, 7, 3, 2, 1, 16, CN_PAD_VALID},     /* valid 3x3 */
      {1, 1, 1, 64, 1, 1, 1, 8, CN_PAD_VALID},     /* one pixel */
      {1, 5, 3, 512, 1, 1, 1, 1000, CN_PAD_VALID}, /* a large kernel, 1000 filters */
  };
  cn_activation acts[3] = {cn_act_linear(), cn_act_relu6(), cn_act_softmax()};
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int i = 0; i < n; i++)
    for (int a = 0; a < 3; a++) check_case(i * 3 + a, &cases[i], &acts[a]);
}

static void test_applies(void) {
  geometry g = {1, 8, 8, 16, 1, 1, 1, 12, CN_PAD_VALID};
  cn_window w = window_of(&g);
  CHECK(!cn_conv_small_applies(&w, 12, 1)); /* filters not a multiple of 8 */
  CHECK(!cn_conv_small_applies(&w, 16, 2)); /* grouped */
  CHECK(cn_conv_small_applies(&w, 16, 1));
  g.c = 960;
  w = window_of(&g);
  CHECK(!cn_conv_small_applies(&w, 160, 1)); /* deep and a large kernel: OpenBLAS */
  g.c = 16, g.k = 3, g.padding = CN_PAD_SAME;
  w = window_of(&g);
  CHECK(!cn_conv_small_applies(&w, 16, 1)); /* 144-long patch that would need gathering */
}

int main(void) {
  test_against_gemm();
  test_applies();
  return cn_test_finish();
}
