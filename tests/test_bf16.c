/* bfloat16 products (src/kernels/gemm_bf16.c): rounding to bf16, and the packed products against
 * a double-precision sum of the same bf16 values, for odd depths, partial panels and partial
 * row tiles; both micro-kernels bit for bit; any thread count bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testlib.h"

static unsigned rng = 77;
static float uniform(void) {
  rng = rng * 1103515245u + 12345u;
  return (float)((rng >> 8) % 20001u) / 10000.0f - 1.0f;
}

static uint32_t bits_of(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static void test_rounding(void) {
  CHECK(cn_bf16_from_float(1.0f) == 0x3f80);
  CHECK(cn_bf16_from_float(-2.0f) == 0xc000);
  CHECK(cn_bf16_from_float(from_bits(0x3f808000u)) == 0x3f80); /* a tie goes to even */
  CHECK(cn_bf16_from_float(from_bits(0x3f818000u)) == 0x3f82);
  CHECK(cn_bf16_from_float(from_bits(0x3f808001u)) == 0x3f81); /* above the tie: up */
  CHECK(cn_bf16_from_float(INFINITY) == 0x7f80);
  CHECK(cn_bf16_from_float(from_bits(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to infinity */
  CHECK(isnan(cn_bf16_to_float(cn_bf16_from_float(NAN))));
  CHECK(isnan(cn_bf16_to_float(cn_bf16_from_float(from_bits(0x7f800001u))))); /* not infinity */
  CHECK(cn_bf16_from_float(from_bits(0x007fffffu)) == 0x0000);                /* denormals flush */
  CHECK(cn_bf16_from_float(from_bits(0x807fffffu)) == 0x8000);
  CHECK(cn_bf16_from_float(from_bits(0x00800000u)) == 0x0080); /* the smallest normal stays */
  float many[37];
  uint16_t vec[37];
  for (int i = 0; i < 37; i++) many[i] = uniform() * 1e3f;
  many[3] = NAN, many[17] = -INFINITY, many[20] = from_bits(0x00000001u), many[33] = -0.0f;
  cn_bf16_convert(many, 37, vec);
  for (int i = 0; i < 37; i++) CHECK(vec[i] == cn_bf16_from_float(many[i])); /* vector = scalar */
  for (int i = 0; i < 1000; i++) { /* within half a unit in the last of 8 bits */
    float f = uniform() * 100.0f;
    float r = cn_bf16_to_float(cn_bf16_from_float(f));
    CHECK(fabsf(r - f) <= fabsf(f) * (1.0f / 256.0f));
    CHECK((bits_of(r) & 0xffffu) == 0);
  }
}

typedef struct product {
  int64_t m, n, k;
  float *x, *w, *bias, *ref;
} product;

/* The exact sum (in double) of the bf16-rounded operands, plus bias. */
static product make_product(int64_t m, int64_t n, int64_t k) {
  product p = {m, n, k, malloc(m * k * 4), malloc(k * n * 4), malloc(n * 4), malloc(m * n * 4)};
  for (int64_t i = 0; i < m * k; i++) p.x[i] = uniform();
  for (int64_t i = 0; i < k * n; i++) p.w[i] = uniform() * 0.1f;
  for (int64_t j = 0; j < n; j++) p.bias[j] = uniform();
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < n; j++) {
      double s = p.bias[j];
      for (int64_t t = 0; t < k; t++)
        s += (double)cn_bf16_to_float(cn_bf16_from_float(p.x[r * k + t])) *
             cn_bf16_to_float(cn_bf16_from_float(p.w[t * n + j]));
      p.ref[r * n + j] = (float)s;
    }
  return p;
}

static void free_product(product *p) {
  free(p->x), free(p->w), free(p->bias), free(p->ref);
}

static float *run(const product *p, int native, int threads) {
  uint16_t *packed = malloc(cn_bf16_packed_len(p->k, p->n) * sizeof(uint16_t));
  cn_bf16_pack(p->w, p->n, p->k, p->n, packed);
  cn_bf16_matrix w = {p->k, p->n, native, packed};
  uint16_t *scratch = malloc(cn_bf16_gemm_scratch(p->k, threads) * sizeof(uint16_t));
  float *y = malloc(p->m * p->n * 4);
  cn_activation linear = cn_act_linear();
  cn_bf16_gemm(p->m, p->x, p->k, &w, p->bias, &linear, y, p->n, scratch, threads);
  free(packed);
  free(scratch);
  return y;
}

static const char *kernel_name(int kind) {
  return kind == CN_BF16_AMX      ? "AMX tiles (AMX-BF16)"
         : kind == CN_BF16_DPBF16 ? "VDPBF16PS (AVX512_BF16)"
                                  : "fp32 (widened)";
}

/* Row r of the product computed alone, as a batch of one computes it. */
static int row_alone_matches(const product *p, int kind, const float *y, int64_t r) {
  product one = *p;
  one.m = 1, one.x = p->x + r * p->k;
  float *alone = run(&one, kind, 1);
  int same = memcmp(alone, y + r * p->n, (size_t)p->n * sizeof *y) == 0;
  free(alone);
  return same;
}

/* Each micro-kernel this CPU has: within the fp32 accumulation bound of the exact sum, the same
 * bits for any thread count and for a row alone; VDPBF16PS and the widened kernel the same bits. */
static void test_products(void) {
  const int64_t shapes[][3] = {{1, 1, 1},    {1, 1000, 1280}, {13, 33, 7},
                               {12, 32, 2},  {50, 70, 129},   {97, 64, 576},
                               {7, 200, 33}, {200, 5, 3},     {33, 40, 70}};
  int best = cn_bf16_native();
  printf("bf16 products: the best kernel here is %s\n", kernel_name(best));
  for (int kind = CN_BF16_WIDENED; kind <= best; kind++) {
    double worst = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
      product p = make_product(shapes[s][0], shapes[s][1], shapes[s][2]);
      float *y1 = run(&p, kind, 1), *y2 = run(&p, kind, 2), *y3 = run(&p, kind, 3);
      for (int64_t i = 0; i < p.m * p.n; i++) {
        /* fp32 accumulation of k terms of magnitude <= 0.1 */
        double tol = 1e-6 * (double)p.k * 0.1 + 1e-6 * fabs(p.ref[i]);
        worst = fmax(worst, fabs(y1[i] - p.ref[i]) / tol);
      }
      CHECK(memcmp(y1, y2, p.m * p.n * 4) == 0 && memcmp(y1, y3, p.m * p.n * 4) == 0);
      CHECK(row_alone_matches(&p, kind, y1, p.m - 1));
      if (kind == CN_BF16_DPBF16) { /* the widened kernel rounds as VDPBF16PS does */
        float *wide = run(&p, CN_BF16_WIDENED, 2);
        CHECK(memcmp(y1, wide, p.m * p.n * 4) == 0);
        free(wide);
      }
      free(y1), free(y2), free(y3);
      free_product(&p);
    }
    CHECK(worst <= 1.0);
    printf("  %s: error at most %.2f of the bound\n", kernel_name(kind), worst);
  }
}

int main(void) {
  test_rounding();
  test_products();
  return cn_test_finish();
}
