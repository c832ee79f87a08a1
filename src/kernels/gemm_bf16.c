/* bfloat16 products: y(m, n) = act(x(m, k) * w(k, n) + bias) with w stored as bf16 (packed once
 * per layer), x rounded to bf16 a block of rows at a time, and fp32 accumulation.
 *
 * Layout: w is cut into panels of NR columns; within a panel, row pairs (2kk, 2kk + 1) are
 * interleaved column by column, so one 64-byte load holds 16 columns x 2 rows, the operand of
 * VDPBF16PS (per fp32 lane: acc += a.lo * b.lo + a.hi * b.hi). The x rows are bf16 arrays padded
 * to an even length, so a pair is one 32-bit value to broadcast. Rows and panels past the
 * matrix's edge are zeros.
 *
 * Three micro-kernels, the best the CPU has, decided at run time (one binary for every x86-64):
 * - AMX (TDPBF16PS on 16x16 tiles: 16 times VDPBF16PS's products per instruction) where the CPU
 *   has AMX-BF16 and the kernel lets the process use the tile registers. The panel layout is
 *   already AMX's: 16 row pairs of a panel are a B tile of 16 columns (64-byte rows, 128 bytes
 *   apart). Its sums are rounded its own way (not as the pairs below), so its results differ
 *   from the other two in the last bits, and agree with the exact sum as closely;
 * - VDPBF16PS where the CPU has AVX512_BF16;
 * - otherwise the bf16 values widened to fp32 and multiplied with fp32 arithmetic, rounded as
 *   VDPBF16PS rounds (half the weight memory traffic of fp32, which is what limits a batch-1
 *   fully connected layer).
 * Every output is one micro-kernel's sum over the whole depth, in the order of k, each row
 * independent of the others in its tile, so results are bitwise the same for any thread count,
 * blocking and batch. */
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 11)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define CN_HAVE_BF16_KERNEL 1
#endif
#if defined(CN_HAVE_BF16_KERNEL) && defined(__linux__) && (defined(__clang__) || __GNUC__ >= 12)
#define CN_HAVE_AMX_KERNEL 1
#endif

enum { NR = CN_BF16_NR, MR = 12, CHUNK_ROWS = 4 * MR, PANEL_GROUP = 4 };

/* Round to nearest even; NaN stays NaN (quieted); denormals become zeros of their sign, as the
 * AVX512_BF16 instructions treat them (so both micro-kernels see the same values). */
uint16_t cn_bf16_from_float(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  uint32_t mag = bits & 0x7fffffffu;
  if (mag > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
  if (mag < 0x00800000u) return (uint16_t)((bits >> 16) & 0x8000u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));

/* cn_bf16_from_float on 16 values at once (vector extensions: AVX-512, AVX2 or SSE). */
static void convert16(const float *x, uint16_t *dst) {
  u32x16 b;
  memcpy(&b, x, sizeof b);
  u32x16 mag = b & 0x7fffffffu, high = b >> 16;
  u32x16 r = (b + 0x7fffu + (high & 1u)) >> 16;
  u32x16 nan = (u32x16)(mag > 0x7f800000u), tiny = (u32x16)(mag < 0x00800000u);
  r = (r & ~nan) | ((high | 0x40u) & nan);
  r = (r & ~tiny) | ((high & 0x8000u) & tiny);
  u16x16 h = __builtin_convertvector(r, u16x16);
  memcpy(dst, &h, sizeof h);
}

void cn_bf16_convert(const float *x, int64_t n, uint16_t *dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) convert16(x + i, dst + i);
  for (; i < n; i++) dst[i] = cn_bf16_from_float(x[i]);
}

float cn_bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int64_t cn_bf16_row_len(int64_t k) {
  return (k + 1) / 2 * 2;
}

size_t cn_bf16_packed_len(int64_t k, int64_t n) {
  return (size_t)(ceil_div(n, NR) * cn_bf16_row_len(k) * NR);
}

void cn_bf16_pack(const float *w, int64_t ldw, int64_t k, int64_t n, uint16_t *dst) {
  int64_t pairs = cn_bf16_row_len(k) / 2, panels = ceil_div(n, NR);
  for (int64_t p = 0; p < panels; p++)
    for (int64_t kk = 0; kk < pairs; kk++)
      for (int64_t j = 0; j < NR; j++)
        for (int t = 0; t < 2; t++) {
          int64_t row = 2 * kk + t, col = p * NR + j;
          float v = row < k && col < n ? w[row * ldw + col] : 0.0f;
          *dst++ = cn_bf16_from_float(v);
        }
}

void cn_bf16_convert_row(const float *x, int64_t k, uint16_t *dst) {
  cn_bf16_convert(x, k, dst);
  if (k % 2) dst[k] = 0;
}

/* ---- micro-kernels: rows [0, rows), columns [0, cols) of an MR x NR tile of y ---- */

#ifdef CN_HAVE_BF16_KERNEL
__attribute__((target("avx512f,avx512bf16"))) static void
tile_dpbf16(const uint16_t *x, int64_t ldx, int rows, const uint16_t *panel, int64_t pairs,
            float *y, int64_t ldy, int cols) {
  const uint16_t *xr[MR];
  for (int r = 0; r < MR; r++) xr[r] = x + (r < rows ? r : rows - 1) * ldx;
  __m512 c0[MR], c1[MR];
  for (int r = 0; r < MR; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < pairs; kk++) {
    __m512bh w0 = (__m512bh)_mm512_loadu_si512(panel + kk * 2 * NR);
    __m512bh w1 = (__m512bh)_mm512_loadu_si512(panel + kk * 2 * NR + 32);
    for (int r = 0; r < MR; r++) {
      int32_t pair;
      memcpy(&pair, xr[r] + 2 * kk, sizeof pair);
      __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      c0[r] = _mm512_dpbf16_ps(c0[r], w0, b);
      c1[r] = _mm512_dpbf16_ps(c1[r], w1, b);
    }
  }
  __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
  __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
  for (int r = 0; r < rows; r++) {
    _mm512_mask_storeu_ps(y + r * ldy, m0, c0[r]);
    _mm512_mask_storeu_ps(y + r * ldy + 16, m1, c1[r]);
  }
}
#endif

/* The same sums with the bf16 values widened to fp32, added as VDPBF16PS adds them: the odd
 * element's product first, then the even one's, each product exact in fp32 and each sum rounded
 * (so the two kernels agree bit for bit, but for VDPBF16PS flushing denormals). */
static void tile_widened(const uint16_t *x, int64_t ldx, int rows, const uint16_t *panel,
                         int64_t pairs, float *y, int64_t ldy, int cols) {
  float acc[MR * NR] __attribute__((aligned(64)));
  memset(acc, 0, (size_t)rows * NR * sizeof *acc);
  for (int64_t kk = 0; kk < pairs; kk++) {
    float even[NR], odd[NR];
    for (int j = 0; j < NR; j++) {
      even[j] = cn_bf16_to_float(panel[(kk * NR + j) * 2]);
      odd[j] = cn_bf16_to_float(panel[(kk * NR + j) * 2 + 1]);
    }
    for (int r = 0; r < rows; r++) {
      float e = cn_bf16_to_float(x[r * ldx + 2 * kk]),
            o = cn_bf16_to_float(x[r * ldx + 2 * kk + 1]);
      v8f ve = {e, e, e, e, e, e, e, e}, vo = {o, o, o, o, o, o, o, o};
      for (int j = 0; j < NR; j += 8) {
        v8f sum = load8(acc + r * NR + j) + vo * load8(odd + j);
        store8(acc + r * NR + j, sum + ve * load8(even + j));
      }
    }
  }
  for (int r = 0; r < rows; r++) memcpy(y + r * ldy, acc + r * NR, (size_t)cols * sizeof *acc);
}

#ifdef CN_HAVE_AMX_KERNEL
/* 32 x 32 outputs in four 16 x 16 tiles: C (tmm0..3) += A (tmm4: rows 0-15, tmm5: rows 16-31)
 * times B (tmm6: columns 0-15, tmm7: columns 16-31), 16 row pairs per step. */
enum { AMX_ROWS = 32, AMX_PAIRS = 16, AMX_ROW_BYTES = 64, AMX_PREFETCH = 4 };

typedef struct amx_config {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_config;

/* The tile shapes for ra (1..16) rows in the first A tile and rb (0..16) in the second. Loading a
 * configuration costs more than a step, so each thread keeps the last one. */
__attribute__((target("amx-tile"))) static void amx_configure(int ra, int rb) {
  static _Thread_local int current = -1;
  if (ra * 64 + rb == current) return;
  amx_config c = {.palette = 1};
  const int c_tiles[2][2] = {{0, 1}, {2, 3}}, a_tiles[2] = {4, 5};
  for (int h = 0; h < 2; h++) {
    int r = h ? rb : ra;
    if (!r) continue;
    c.rows[c_tiles[h][0]] = c.rows[c_tiles[h][1]] = c.rows[a_tiles[h]] = (uint8_t)r;
    c.colsb[c_tiles[h][0]] = c.colsb[c_tiles[h][1]] = c.colsb[a_tiles[h]] = AMX_ROW_BYTES;
  }
  c.rows[6] = c.rows[7] = AMX_PAIRS;
  c.colsb[6] = c.colsb[7] = AMX_ROW_BYTES;
  _tile_loadconfig(&c);
  current = ra * 64 + rb;
}

/* One step: A rows `a` (lda bytes apart; the second tile 16 rows on), B pair rows `b` (128 bytes
 * apart). */
#define AMX_STEP(a, lda, b, two)                                                                   \
  do {                                                                                             \
    _tile_loadd(4, (a), (lda));                                                                    \
    _tile_loadd(6, (b), 4 * NR);                                                                   \
    _tile_loadd(7, (b) + 2 * AMX_PAIRS, 4 * NR);                                                   \
    _tile_dpbf16ps(0, 4, 6);                                                                       \
    _tile_dpbf16ps(1, 4, 7);                                                                       \
    if (two) {                                                                                     \
      _tile_loadd(5, (const char *)(a) + 16 * (size_t)(lda), (lda));                               \
      _tile_dpbf16ps(2, 5, 6);                                                                     \
      _tile_dpbf16ps(3, 5, 7);                                                                     \
    }                                                                                              \
  } while (0)

/* The compilers' tile load and store intrinsics do not tell them which memory they read or write:
 * a barrier keeps the stores before a load, and the loads after a store, in place. */
#define AMX_MEMORY_BARRIER() __asm__ volatile("" ::: "memory")

__attribute__((target("amx-tile,amx-bf16"))) static void tile_amx(const uint16_t *x, int64_t ldx,
                                                                  int rows, const uint16_t *panel,
                                                                  int64_t pairs, float *y,
                                                                  int64_t ldy, int cols) {
  int ra = rows < 16 ? rows : 16, rb = rows - ra;
  AMX_MEMORY_BARRIER();
  amx_configure(ra, rb);
  _tile_zero(0);
  _tile_zero(1);
  if (rb) { /* tiles outside the configuration fault */
    _tile_zero(2);
    _tile_zero(3);
  }
  size_t lda = (size_t)ldx * sizeof *x;
  int64_t full = pairs / AMX_PAIRS * AMX_PAIRS;
  for (int64_t kk = 0; kk < full; kk += AMX_PAIRS) {
    /* The panel is read once, in order, straight from memory for a large Dense layer: ask for
     * the lines AMX_PREFETCH steps ahead (tile loads leave the prefetchers behind). */
    const char *ahead = (const char *)(panel + (kk + AMX_PREFETCH * AMX_PAIRS) * 2 * NR);
    if (kk + AMX_PREFETCH * AMX_PAIRS < pairs)
      for (int line = 0; line < AMX_PAIRS * 4 * NR; line += 64)
        _mm_prefetch(ahead + line, _MM_HINT_T0);
    AMX_STEP(x + 2 * kk, lda, panel + kk * 2 * NR, rb);
  }
  if (full < pairs) { /* the last pairs through zero-padded copies */
    uint16_t a[AMX_ROWS * 2 * AMX_PAIRS] = {0}, b[AMX_PAIRS * 2 * NR] = {0};
    size_t rest = (size_t)(pairs - full) * 2 * sizeof *x;
    for (int r = 0; r < rows; r++) memcpy(a + r * 2 * AMX_PAIRS, x + r * ldx + 2 * full, rest);
    memcpy(b, panel + full * 2 * NR, (size_t)(pairs - full) * 2 * NR * sizeof *b);
    AMX_MEMORY_BARRIER();
    AMX_STEP(a, AMX_ROW_BYTES, b, rb);
  }
  int whole = cols == NR; /* whole tiles go straight to y, partial ones through out */
  float out[AMX_ROWS * NR], *dst = whole ? y : out;
  size_t ldd = (size_t)(whole ? ldy : NR) * sizeof(float);
  _tile_stored(0, dst, ldd);
  _tile_stored(1, dst + 16, ldd);
  if (rb) {
    _tile_stored(2, (char *)dst + 16 * ldd, ldd);
    _tile_stored(3, (char *)(dst + 16) + 16 * ldd, ldd);
  }
  AMX_MEMORY_BARRIER();
  if (!whole)
    for (int r = 0; r < rows; r++) memcpy(y + r * ldy, out + r * NR, (size_t)cols * sizeof *out);
}

/* Linux hands out the tile registers' state only to processes that ask for it. */
static int amx_usable(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!(d & (1u << 22)) || !(d & (1u << 24))) return 0; /* AMX-BF16, AMX-TILE */
  enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
  return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

typedef void (*tile_fn)(const uint16_t *, int64_t, int, const uint16_t *, int64_t, float *, int64_t,
                        int);

static int best_kernel = CN_BF16_WIDENED;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

/* Read once: cn_bf16_native is asked for every layer of every forward. */
static void find_best_kernel(void) {
  const char *widen = getenv("CONVNET_BF16_WIDEN"); /* 1: the fp32 micro-kernel (tests) */
  if (widen && strcmp(widen, "1") == 0) return;
#ifdef CN_HAVE_BF16_KERNEL
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) best_kernel = CN_BF16_DPBF16;
#endif
#ifdef CN_HAVE_AMX_KERNEL
  const char *amx = getenv("CONVNET_BF16_AMX"); /* 0: VDPBF16PS instead (comparisons) */
  if (!(amx && strcmp(amx, "0") == 0) && amx_usable()) best_kernel = CN_BF16_AMX;
#endif
}

int cn_bf16_native(void) {
  pthread_once(&best_once, find_best_kernel);
  return best_kernel;
}

/* The micro-kernel for `native` and the rows it takes at once. */
static tile_fn pick_tile(int native, int *mr) {
  *mr = MR;
#ifdef CN_HAVE_AMX_KERNEL
  if (native == CN_BF16_AMX) {
    *mr = AMX_ROWS;
    return tile_amx;
  }
#endif
#ifdef CN_HAVE_BF16_KERNEL
  if (native != CN_BF16_WIDENED) return tile_dpbf16;
#endif
  return tile_widened;
}

/* Rows [0, rows) of bf16 x (ld ldx) times panels [p0, p1) of w into y, then bias and activation
 * on the finished columns. */
static void rows_times_panels(const uint16_t *x, int64_t ldx, int64_t rows, const cn_bf16_matrix *w,
                              int64_t p0, int64_t p1, const float *bias, const cn_activation *act,
                              float *y, int64_t ldy) {
  int step;
  tile_fn tile = pick_tile(w->native, &step);
  int64_t pairs = cn_bf16_row_len(w->k) / 2;
  for (int64_t p = p0; p < p1; p++) {
    const uint16_t *panel = w->data + p * pairs * 2 * NR;
    int64_t c0 = p * NR, cols = w->n - c0 < NR ? w->n - c0 : NR;
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      int mr = rows - r0 < step ? (int)(rows - r0) : step;
      tile(x + r0 * ldx, ldx, mr, panel, pairs, y + r0 * ldy + c0, ldy, (int)cols);
    }
  }
  if (bias || !cn_act_is_identity(act)) {
    int64_t c0 = p0 * NR, c1 = p1 * NR < w->n ? p1 * NR : w->n;
    if (act->kind == CN_ACT_SOFTMAX) c0 = 0, c1 = w->n; /* the caller gives softmax whole rows */
    for (int64_t r = 0; r < rows; r++)
      cn_bias_act_row(y + r * ldy + c0, c1 - c0, bias ? bias + c0 : NULL, act);
  }
}

void cn_bf16_gemm_rows(int64_t m, const uint16_t *x, int64_t ldx, const cn_bf16_matrix *w,
                       const float *bias, const cn_activation *act, float *y, int64_t ldy) {
  rows_times_panels(x, ldx, m, w, 0, ceil_div(w->n, NR), bias, act, y, ldy);
}

/* Values from one scratch row to the next, spread over the L1's sets (rows of k = 2048 were 4 KB
 * apart, a tile's 12 in one set of 8 ways). */
static int64_t scratch_ld(int64_t k) {
  size_t bytes = (size_t)cn_bf16_row_len(k) * sizeof(uint16_t);
  return (int64_t)(cn_spread_row_bytes(bytes) / sizeof(uint16_t));
}

size_t cn_bf16_gemm_scratch(int64_t k, int threads) {
  return (size_t)threads * CHUNK_ROWS * (size_t)scratch_ld(k);
}

void cn_bf16_gemm(int64_t m, const float *x, int64_t ldx, const cn_bf16_matrix *w,
                  const float *bias, const cn_activation *act, float *y, int64_t ldy,
                  uint16_t *scratch, int threads) {
  int64_t ld = scratch_ld(w->k), panels = ceil_div(w->n, NR);
  int64_t chunks = ceil_div(m, CHUNK_ROWS);
  /* Few rows (a batch-1 Dense): threads split the panels instead, each rounding the rows itself.
   * Softmax needs whole rows in one item. */
  int64_t groups = chunks >= 2 * threads || act->kind == CN_ACT_SOFTMAX ? 1
                   : ceil_div(panels, PANEL_GROUP) < threads ? ceil_div(panels, PANEL_GROUP)
                                                             : threads;
  int64_t per_group = ceil_div(panels, groups), items = chunks * groups;
  double macs = (double)m * (double)w->n * (double)w->k;
  int parallel = threads > 1 && items > 1 && macs > 65536.0;
#pragma omp parallel num_threads(threads) if (parallel)
  {
    uint16_t *mine = scratch + (size_t)omp_get_thread_num() * CHUNK_ROWS * (size_t)ld;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < items; i++) {
      int64_t r0 = i / groups * CHUNK_ROWS, p0 = i % groups * per_group;
      int64_t rows = m - r0 < CHUNK_ROWS ? m - r0 : CHUNK_ROWS;
      int64_t p1 = p0 + per_group < panels ? p0 + per_group : panels;
      if (p0 >= p1) continue;
      for (int64_t r = 0; r < rows; r++)
        cn_bf16_convert_row(x + (r0 + r) * ldx, w->k, mine + r * ld);
      rows_times_panels(mine, ld, rows, w, p0, p1, bias, act, y + r0 * ldy, ldy);
    }
  }
}
