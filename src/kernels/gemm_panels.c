/* fp32 products against weights packed once into column panels, for the products where OpenBLAS's
 * per-call packing of the weights costs as much as the arithmetic: few rows (batch 1, late
 * layers) against a large (k x n) kernel. VGG16's 3x3 convolutions over 14x14 pixels, or
 * ResNet50's over 7x7, read their 9.4 MB kernel, write it packed and read it again on every
 * call; here it is read once, in the order the micro-kernel wants it.
 *
 * Blocking (GotoBLAS's, with the weight side packed ahead of time): an item is up to MC rows by
 * up to GROUP_PANELS panels; per KC-deep slice, each panel's slice (KC x NR floats, L1) is
 * multiplied by every MR-row strip of the item's rows (L2), the item's outputs staying in L2
 * between slices. The rows are read where they are, each strip's MR rows as MR streams: packing
 * them (a scalar transposition per item and slice) cost more than it saved (measured, 2 threads,
 * Intel Xeon: 49 x 4608 by 4608 x 512 took 2.29 ms with packed rows, 1.51 ms without).
 *
 * Determinism: every output is one chain of fused multiply-adds over k = 0, 1, ..., k - 1 from
 * zero (a slice's partial sums are stored and reloaded unchanged), then + bias, + residual,
 * activation. No blocking choice changes that chain, so the result is bitwise the same for any
 * thread count, any row count (a sample alone or in a batch) and any cut into items. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/simd.h"

typedef vwide vec;
/* Rows per strip: 14 x 2 accumulators of 16 floats, the two panel vectors and a broadcast take 31
 * of AVX-512's 32 registers; 6 x 2 of 8 floats AVX2's 16. Each panel vector loaded serves 14 rows
 * instead of 12: ResNet50 b1 and b8, InceptionV3 b1 and b8, MobileNetV2 and VGG16 1.5 to 2.5 %
 * faster (2 threads, Intel Xeon); 15 rows spill the accumulators (8 to 14 % slower), 13 were
 * between. */
enum { LANES = WIDE_LANES, MR = WIDE_LANES == 16 ? 14 : 6 };
/* Two vectors of columns per panel; k per slice (a panel's slice is KC * NR * 4 bytes = 32 KB
 * with AVX-512) and rows per item (their slice MC * KC * 4 = 238 KB stays in L2 while the item's
 * panels pass; 240 rows rather than 96 read each panel slice for more rows: VGG16's 14x14 layers,
 * 196 x 4608 by 4608 x 512, 4.9 -> 4.1 ms, larger products 0 to 4 % faster, Intel Xeon); panels
 * per item (its outputs, MC x 256 floats, stay in L2 between slices). */
/* Every loop over a strip's rows unrolled, so that the accumulators stay in registers: a loop
 * left rolled (the tail's) kept them in a stack array, zeroed by a call to memset and stored and
 * reloaded around the products. */
#define UNROLL_ROWS _Pragma("GCC unroll 16")
enum { NR = 2 * LANES, KC = 256, MC = 17 * MR, GROUP_PANELS = 256 / NR, LINE_FLOATS = 16 };
/* Products of k <= ONE_PASS_K are one slice: each strip runs its whole k with its sums in
 * registers, every panel of its group in turn, the panels (k x NR floats each) from L2, where
 * ONE_PASS_BYTES of them are kept beside the rows. Slices of KC stored and reloaded every
 * output once per slice and made each strip restart its products every 256 values (one
 * thread, rows in cache: 289 x 768 by 768 x 192 96 -> 106 % of the peak, 1568 x 1024 by 1024
 * x 256 86 -> 94 %; 2 threads: 196 x 2304 by 2304 x 256 0.89 -> 0.77 ms). At batch 1, 49 x 4608
 * by 4608 x 512 was slower in one pass (0.88 -> 0.97 ms): its panels come from memory. */
enum { ONE_PASS_K = 3072, ONE_PASS_BYTES = 1 << 20 };
/* One-slice products over at most PANEL_OUTER_ROWS rows pass panel by panel: fewer rows than
 * that do not take as long as a panel takes to come from memory (k x 128 bytes at about
 * 8 GB/s against k x 64 floating-point operations per row at 166 GFLOP/s a core). So do those
 * of a layer whose outputs fit SMALL_OUTPUT_BYTES (batch 1 from 14x14 to 56x56): few items
 * read each panel, from memory, and every strip fetching its part of the next one beats
 * writing the outputs along their rows (ResNet50 b1 0.98x, InceptionV3 b1 0.98x the time). */
enum { PANEL_OUTER_ROWS = 64, SMALL_OUTPUT_BYTES = 1 << 20 };

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int cn_panels_cols(void) {
  return NR;
}

/* Measured against OpenBLAS, conv_small and Winograd from 24 tiles (2 threads, an Intel Xeon
 * running both builds): the AVX-512 micro-kernel won on every model; the AVX2 one (6 x 16) lost
 * on the large ones (ResNet50 batch 8 1.19x, InceptionV3 batch 1 1.12x the time), so an AVX2
 * build keeps the panels off unless asked. */
int cn_panels_preferred(void) {
#ifdef __AVX512F__
  return 1;
#else
  return 0;
#endif
}

size_t cn_panels_floats(int64_t k, int64_t n) {
  return (size_t)(ceil_div(n, NR) * NR * k);
}

/* Panel p holds columns [p * NR, p * NR + NR) as k rows of NR floats, zeros past n. */
void cn_panels_pack(const float *w, int64_t ldw, int64_t k, int64_t n, float *dst) {
  for (int64_t p = 0; p < ceil_div(n, NR); p++) {
    int64_t c0 = p * NR, cols = n - c0 < NR ? n - c0 : NR;
    float *panel = dst + p * NR * k;
    for (int64_t r = 0; r < k; r++) {
      memcpy(panel + r * NR, w + r * ldw + c0, (size_t)cols * sizeof(float));
      memset(panel + r * NR + cols, 0, (size_t)(NR - cols) * sizeof(float));
    }
  }
}

/* The epilogue of a product's last slice, applied in registers before the store: + bias, +
 * residual, then the plain ReLU -- cn_bias_act_row's operations in its order, so the same bits
 * without another pass over the outputs. */
typedef struct tail {
  const float *bias;     /* at the panel's first column, or NULL */
  const float *residual; /* at the strip's first output, rows ldc apart, or NULL */
  cn_vclamp clamp;
} tail;

static inline __attribute__((always_inline)) void finish(vec *v, const float *bias,
                                                         const float *residual, const tail *t) {
  if (t->bias) *v += loadw(bias);
  if (t->residual) *v += loadw(residual);
  *v = cn_vclamp_apply(*v, &t->clamp);
}

/* Rows a strip's products fetch for the next strip, one line per k: `span` when they lie in one
 * range of at most kc lines (read in order, a stream the hardware prefetchers join: 256 -> 64
 * over 25088 rows not in cache 3.3 -> 3.0 ms against the rows' addresses), else their MR
 * addresses, each row's next line every LINE_FLOATS values of k (512 -> 128 over 6272 rows in
 * two slices: 3.2 -> 2.9 ms). */
typedef struct lookahead {
  const float *span;
  const float *const *rows; /* MR addresses, or NULL: no rows to fetch */
  /* This strip's share of the panel slice the item takes next, fetched into L2 during its
   * products at `rate` lines per k (16.16 fixed point), or NULL: the weights of a layer at
   * batch 1 are read once, from memory (49 x 4608 by 4608 x 512 with its weights not in cache:
   * 1.10 -> 1.03 ms; ResNet50, VGG16 and InceptionV3 at batch 1 0.99x the time). */
  const float *panel;
  int64_t rate;
} lookahead;

static inline __attribute__((always_inline)) void
products(int rows, const float *const *a, const float *restrict panel, int64_t kc, vec *lo, vec *hi,
         const float *span, const float *const *table, const float *ahead, int64_t rate) {
  for (int64_t k = 0; k < kc; k++, panel += NR) {
    /* The first strip to pass brings the panel slice in from memory: 8 rows ahead (measured, 2
     * threads, Intel Xeon: 49 x 4608 by 4608 x 512, ResNet50's 7x7 layers at batch 1, 1.41 ->
     * 1.22 ms; the other shapes 0 to 4 % faster). */
    __builtin_prefetch(panel + 8 * NR);
    __builtin_prefetch(panel + 8 * NR + LANES);
    if (ahead) {
      const float *line = ahead + ((k * rate) >> 16) * LINE_FLOATS;
      __builtin_prefetch(line, 0, 2);
      __builtin_prefetch(line + LINE_FLOATS, 0, 2);
    }
    if (span) __builtin_prefetch(span + k * LINE_FLOATS);
    if (table && k % LINE_FLOATS == 0) {
      UNROLL_ROWS
      for (int r = 0; r < MR; r++) __builtin_prefetch(table[r] + k);
    }
    vec b0 = loadw(panel), b1 = loadw(panel + LANES);
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) {
      float v = a[r][k];
      lo[r] += v * b0;
      hi[r] += v * b1;
    }
  }
}

/* rows (<= MR) x NR outputs at c (row stride ldc) += rows a[0 .. rows) (kc values each) x panel
 * slice (kc x NR), or `segs` segments of kc values, `step` floats apart in the rows and `pstep`
 * floats apart in the panel; `first` starts the sums at zero instead of c's values; `t` (the last
 * slice, or NULL) finishes them. Inlined with a constant `rows` so that each row count gets its own
 * unrolled body; the rows' addresses stay in registers, as a + r * lda did. */
static inline __attribute__((always_inline)) void micro(int rows, const float *const *a,
                                                        const float *restrict panel, int64_t kc,
                                                        int64_t segs, int64_t step, int64_t pstep,
                                                        float *restrict c, int64_t ldc, int first,
                                                        const tail *t, const lookahead *next) {
  vec lo[MR], hi[MR];
  /* The residuals the tail adds, asked for now so that they arrive during the products: a
   * strip's rows are a row stride apart, a pattern the hardware prefetchers do not follow
   * (ResNet50's 56x56 1x1 64 -> 256 layer plus the residual sum at batch 8: 5.3 -> 3.6 ms;
   * prefetching the output lines for writing changed nothing). */
  if (t && t->residual) {
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) {
      __builtin_prefetch(t->residual + r * ldc);
      __builtin_prefetch(t->residual + r * ldc + LANES);
    }
  }
  UNROLL_ROWS
  for (int r = 0; r < rows; r++) {
    if (first)
      lo[r] = hi[r] = (vec){0};
    else
      lo[r] = loadw(c + r * ldc), hi[r] = loadw(c + r * ldc + LANES);
  }
  if (segs > 1) {
    /* A patch of short tap rows (a stem over 3 channels: 7 rows of 21 values) in one pass, its
     * sums in registers from the first tap row to the last. */
    const float *seg_rows[MR];
    const float *ahead = next ? next->panel : NULL;
    int64_t rate = next ? next->rate : 0;
    for (int64_t g = 0; g < segs; g++) {
      UNROLL_ROWS
      for (int r = 0; r < rows; r++) seg_rows[r] = a[r] + g * step;
      const float *part = ahead ? ahead + ((g * kc * rate) >> 16) * LINE_FLOATS : NULL;
      const float *span = next && next->span ? next->span + g * step : NULL;
      products(rows, seg_rows, panel + g * pstep, kc, lo, hi, span, NULL, part, rate);
    }
  } else if (!next)
    products(rows, a, panel, kc, lo, hi, NULL, NULL, NULL, 0);
  else if (next->span)
    products(rows, a, panel, kc, lo, hi, next->span, NULL, next->panel, next->rate);
  else if (next->rows)
    products(rows, a, panel, kc, lo, hi, NULL, next->rows, next->panel, next->rate);
  else
    products(rows, a, panel, kc, lo, hi, NULL, NULL, next->panel, next->rate);
  if (t) {
    UNROLL_ROWS
    for (int r = 0; r < rows; r++) {
      const float *res = t->residual ? t->residual + r * ldc : NULL;
      finish(&lo[r], t->bias, res, t);
      finish(&hi[r], t->bias ? t->bias + LANES : NULL, res ? res + LANES : NULL, t);
    }
  }
  UNROLL_ROWS
  for (int r = 0; r < rows; r++) storew(c + r * ldc, lo[r]), storew(c + r * ldc + LANES, hi[r]);
}

typedef void (*micro_fn)(const float *const *, const float *, int64_t, int64_t, int64_t, int64_t,
                         float *, int64_t, int, const tail *, const lookahead *);
#define MICRO(R)                                                                                   \
  static void micro##R(const float *const *a, const float *p, int64_t kc, int64_t segs,            \
                       int64_t step, int64_t pstep, float *c, int64_t ldc, int first,              \
                       const tail *t, const lookahead *next) {                                     \
    micro(R, a, p, kc, segs, step, pstep, c, ldc, first, t, next);                                 \
  }
MICRO(1)
MICRO(2)
MICRO(3)
MICRO(4)
MICRO(5)
MICRO(6)
#ifdef __AVX512F__
MICRO(7)
MICRO(8)
MICRO(9)
MICRO(10)
MICRO(11)
MICRO(12)
MICRO(13)
MICRO(14)
static const micro_fn micros[MR + 1] = {NULL,    micro1,  micro2,  micro3,  micro4,
                                        micro5,  micro6,  micro7,  micro8,  micro9,
                                        micro10, micro11, micro12, micro13, micro14};
#else
static const micro_fn micros[MR + 1] = {NULL, micro1, micro2, micro3, micro4, micro5, micro6};
#endif

/* Whether the micro-kernels can finish with this activation: linear or a plain ReLU (Keras's
 * relu / relu6 without slope or threshold). */
static int fusable(const cn_activation *act) {
  return act->kind == CN_ACT_LINEAR || cn_act_is_plain_relu(act);
}

int cn_panels_one_pass(int64_t k) {
  return k <= ONE_PASS_K;
}

int cn_panels_in_place(int64_t k, int64_t n, const cn_activation *act) {
  return cn_panels_one_pass(k) && n % NR == 0 && fusable(act);
}

/* Where a product's rows are: row i at x + i * ldx (a matrix), or with `conv` an implicit
 * im2col: the patch of output pixel i over x, the convolution's input zero-padded to ihp x iwp,
 * its kh segments of kw * c values read in place (value k at x + base(i) + k / seg * ky_step +
 * k % seg, base(i) the pixel's window corner). A patch that fits one pass is one slice, its `segs`
 * (kh) segments passed by each micro-kernel call in turn. */
typedef struct rows_src {
  const float *x;
  int64_t ldx;
  const cn_window *conv;
  int64_t ihp, iwp, seg, ky_step, segs;
} rows_src;

/* Whether the product is one slice: k <= ONE_PASS_K, a patch's segments all passed by each
 * micro-kernel call. */
static int one_pass(const rows_src *src, int64_t k) {
  return cn_panels_one_pass(k) && (!src->conv || src->segs * src->seg == k);
}

/* The slice of k starting at k0: the whole product in one pass, else at most KC values within
 * one segment of a patch. */
static int64_t slice_len(const rows_src *src, int64_t k, int64_t k0) {
  if (one_pass(src, k)) return k;
  int64_t kc = k - k0 < KC ? k - k0 : KC;
  if (src->conv && src->seg - k0 % src->seg < kc) kc = src->seg - k0 % src->seg;
  return kc;
}

/* One item: rows [r0, r0 + rows) by panels [p0, p0 + np), finished by the micro-kernels' tail
 * when `fuse`. A panel past n's last full one is computed into `edge` (MC x NR, on the stack:
 * 30 KB), its valid columns copied out, and finished by the caller. */
typedef struct item_args {
  const cn_panels *w;
  const rows_src *src;
  const int64_t *base; /* conv: the item's rows' window corners */
  const float *bias;
  int64_t r0, ldy;
  float *y, *edge;
  const cn_activation *act;
  int fuse, small; /* small: the layer's outputs fit SMALL_OUTPUT_BYTES */
  tail t;
  const float *after; /* the first panel of the thread's next item, or NULL */
} item_args;

/* A strip: its n (<= MR) rows at `at` (MR addresses, the last repeated), their outputs at `out`
 * (row 0, the item's first column; rows ld apart), `row` its first row in the item (its rows of
 * `edge`); it multiplies `segs` segments of kc values, `step` floats apart in the rows, by the
 * panels' packed rows from k_off, kc of them a segment, pstep apart. */
typedef struct strip_geo {
  const float *const *at;
  float *out;
  int64_t ld, row, k_off, kc, segs, step, pstep;
  int n;
} strip_geo;

/* Panel p's slice at k0. */
static const float *panel_at(const cn_panels *w, int64_t p, int64_t k0) {
  return w->data + p * NR * w->k + k0 * NR;
}

/* The addresses of the item's `rows` rows at k0, once per slice for every strip and panel; the
 * last one repeated MR - 1 times past them, so that every strip reads MR addresses. */
static void item_rows(const item_args *a, int64_t rows, int64_t k0, const float **at) {
  const rows_src *src = a->src;
  if (src->conv) {
    const float *x = src->x + k0 / src->seg * src->ky_step + k0 % src->seg;
    for (int64_t r = 0; r < rows; r++) at[r] = x + a->base[r];
  } else {
    for (int64_t r = 0; r < rows; r++) at[r] = src->x + (a->r0 + r) * src->ldx + k0;
  }
  for (int r = 0; r < MR - 1; r++) at[rows + r] = at[rows - 1];
}

/* Rows per L1 set from which a strip's rows evict each other: lines 4 KB apart share one of the
 * L1's 64 sets, and rows a multiple of 4 KB apart (1024 or 2048 channels, a stride-2 window over
 * 512) put all of a strip's 14 in one set of 8 (Zen 4) or 12 (Intel) ways, so that each row's
 * next values come from L2 (one thread, rows and weights in cache, AMD EPYC: 196 x 1024 by
 * 1024 x 256 at 84 GFLOP/s, 196 x 1040 by 1040 x 256 at 113). Seven rows a set (2 KB apart) ran
 * at full speed. */
enum { L1_SETS = 64, LINE_BYTES = 64, CROWDED_SET = 8 };

static int rows_crowd_a_set(const float *const *at, int64_t rows) {
  int in_set[L1_SETS] = {0};
  for (int64_t r = 0; r < rows && r < MR; r++)
    if (++in_set[(uintptr_t)at[r] / LINE_BYTES % L1_SETS] >= CROWDED_SET) return 1;
  return 0;
}

/* The item's rows at this slice (segs segments of seg_len values, step floats apart) copied
 * into `copy`, a row every ld floats (cn_spread_row_bytes) and its segments one after another; at[]
 * then points there. The sums are the same multiply-adds of the same values. */
static void copy_rows(const float **at, int64_t rows, int64_t segs, int64_t seg_len, int64_t step,
                      float *copy, int64_t ld) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t g = 0; g < segs; g++)
      memcpy(copy + r * ld + g * seg_len, at[r] + g * step, (size_t)seg_len * sizeof(float));
    at[r] = copy + r * ld;
  }
  for (int r = 0; r < MR - 1; r++) at[rows + r] = at[rows - 1];
}

/* What the next strip's n rows (addresses `rows`, kc values each) need fetched. */
static void fetch_next(const float *const *rows, int n, int64_t kc, lookahead *next) {
  int64_t extent = rows[n - 1] - rows[0] + kc;
  int contiguous = rows[n - 1] >= rows[0] && extent <= kc * LINE_FLOATS;
  next->rows = rows;
  next->span = contiguous ? rows[0] : NULL;
}

/* Strip g (the item's strip number `ordinal`) of panel p, over the slice [k0, k0 + kc). With
 * `lead` (the first panel to pass these rows at this slice) it also fetches the next strip's
 * (`after`) rows at this slice, spread over its products: the rows come from memory when the
 * layer before wrote more than the caches hold, and their MR streams, a row stride apart, are
 * not a pattern the hardware prefetchers follow (ResNet50's 56x56 1x1 256 -> 64 layer at batch
 * 8, its input not in cache: 4.6 -> 3.1 ms, 2.9 with the input in cache). The next panel slice
 * is fetched by the first `share` strips, each its part. */
static void strip(item_args *a, const strip_geo *g, const strip_geo *after, int64_t ordinal,
                  int64_t p, int64_t k0, int64_t kc, int lead, const float *next_panel,
                  int64_t share) {
  const cn_panels *w = a->w;
  const float *panel = panel_at(w, p, k0 + g->k_off);
  int partial = (p + 1) * NR > w->n, last = k0 + kc == w->k;
  float *out = partial ? a->edge + g->row * NR : g->out + p * NR;
  int64_t ld = partial ? NR : g->ld, work = g->kc * g->segs;
  int finished = a->fuse && last && !partial;
  lookahead next = {NULL, NULL, NULL, 0};
  /* A patch's tap rows passed in turn fetch nothing ahead when the first strip would fetch the
   * whole next panel (ResNet50's 3x3 layers at batch 1: 3 to 7 % slower). */
  if (next_panel && ordinal < share && (g->segs == 1 || share > 1) && work > 0) {
    int64_t lines = ceil_div(kc * NR / LINE_FLOATS, share);
    next.panel = next_panel + ordinal * lines * LINE_FLOATS;
    next.rate = (lines << 16) / work;
  }
  lead = lead && after;
  if (lead) fetch_next(after->at, after->n, g->kc, &next);
  /* A patch's tap rows fetch the next strip's as spans, tap row by tap row (ResNet50's stride-2
   * 3x3 layers at batch 8 read their input from memory: 8.3 against 4.5 ms at stride 1; the
   * model 0.973x the time). */
  if (lead && g->segs > 1) next.rows = NULL, lead = next.span != NULL;
  int look = lead || next.panel;
  a->t.bias = a->bias ? a->bias + p * NR : NULL;
  a->t.residual =
      finished && a->act->residual ? a->act->residual + (out - a->act->residual_of) : NULL;
  micros[g->n](g->at, panel, g->kc, g->segs, g->step, g->pstep, out, ld, k0 == 0,
               finished ? &a->t : NULL, look ? &next : NULL);
}

/* The item's `count` strips (`rows` rows) by panels [p0, p0 + np) over the slice [k0, k0 + kc).
 * One slice over few rows (batch 1): panel by panel, every strip fetching its part of the next
 * panel, so that the weights stream from memory during all the products instead of the first
 * strip's alone. One slice over more rows: each strip passes every panel before the next strip,
 * so that its rows' outputs (and residuals) are written (read) along the row, streams the
 * prefetchers follow; panel by panel, each row's 128 bytes a row stride apart missed one by one
 * (ResNet50's 56x56 1x1 layers at batch 8, 64 -> 256 plus the residual sum: 9 GB/s). Slices:
 * panel by panel, the first strips fetching the next panel's slice. */
static void pass_strips(item_args *a, const strip_geo *g, int64_t count, int64_t rows, int64_t p0,
                        int64_t np, int64_t k0, int64_t kc) {
  const cn_panels *w = a->w;
  if (kc == w->k && rows > PANEL_OUTER_ROWS && !a->small) {
    for (int64_t s = 0; s < count; s++)
      for (int64_t p = p0; p < p0 + np; p++)
        strip(a, &g[s], s + 1 < count ? &g[s + 1] : NULL, s, p, 0, kc, p == p0,
              p + 1 < p0 + np ? panel_at(w, p + 1, 0) : a->after, 1);
    return;
  }
  for (int64_t p = p0; p < p0 + np; p++) {
    const float *following = p + 1 < p0 + np  ? panel_at(w, p + 1, k0)
                             : k0 + kc < w->k ? panel_at(w, p0, k0 + kc)
                                              : a->after;
    for (int64_t s = 0; s < count; s++)
      strip(a, &g[s], s + 1 < count ? &g[s + 1] : NULL, s, p, k0, kc, p == p0, following, count);
  }
}

static void item(const cn_panels *w, const rows_src *src, const int64_t *base, int64_t r0,
                 int64_t rows, int64_t p0, int64_t np, float *y, int64_t ldy, float *edge,
                 const float *bias, const cn_activation *act, int fuse, int small,
                 const float *after) {
  item_args a = {w,    src,  base, bias, r0,    ldy,
                 y,    edge, act,  fuse, small, {NULL, NULL, cn_vclamp_of(act)},
                 after};
  const float *at[MC + MR - 1];
  strip_geo g[MC / MR + 1];
  int64_t count = ceil_div(rows, MR), segs = src->conv ? src->segs : 1;
  float *copy = NULL; /* the rows, where they crowd an L1 set */
  int64_t ld = 0;
  for (int64_t k0 = 0, kc; k0 < w->k; k0 += kc) {
    kc = slice_len(src, w->k, k0);
    item_rows(&a, rows, k0, at);
    if (k0 == 0 && rows_crowd_a_set(at, rows)) {
      int64_t longest = one_pass(src, w->k) ? w->k : KC;
      ld = (int64_t)(cn_spread_row_bytes((size_t)longest * sizeof(float)) / sizeof(float));
      copy = malloc((size_t)(rows * ld) * sizeof *copy); /* none: the rows where they are */
    }
    int64_t step = src->ky_step;
    if (copy) copy_rows(at, rows, segs, kc / segs, step, copy, ld), step = kc / segs;
    for (int64_t s = 0; s < count; s++) {
      int64_t row = s * MR, n = rows - row < MR ? rows - row : MR;
      g[s] = (strip_geo){at + row, y + (r0 + row) * ldy, ldy,   row, 0, kc / segs, segs,
                         step,     kc / segs * NR,       (int)n};
    }
    pass_strips(&a, g, count, rows, p0, np, k0, kc);
  }
  free(copy);
  int64_t last = p0 + np - 1;
  if ((last + 1) * NR > w->n)
    for (int64_t r = 0; r < rows; r++)
      memcpy(y + (r0 + r) * ldy + last * NR, edge + r * NR,
             (size_t)(w->n - last * NR) * sizeof(float));
}

/* Items: the row strips cut into row blocks that differ by at most one strip, the panels into
 * groups of at most GROUP_PANELS that differ by at most one panel; more groups, then more row
 * blocks, until every thread has two items where the shape allows, and a whole number of items
 * per thread while there are few. Uneven items left a thread idle at the end of each layer:
 * ResNet50's 14x14 1x1 layers at batch 8 (1568 rows) made 7 items of 224 rows, 4 against 3. */
typedef struct panels_plan {
  int64_t strips, row_blocks, group, groups;
  int threads;
} panels_plan;

/* Whether a layer with fewer row blocks than threads should still be cut by rows, a block a
 * thread and every panel in it, rather than by panels: each thread then reads the weights whole
 * but only its share of the rows, which the layer before mostly wrote from the same core. Cut by
 * panels, each thread read every row, half of them from the other core's cache (2 threads, Intel
 * Xeon, the rows written by both threads and the weights from memory: ResNet50's 14x14 1x1
 * 1024 -> 256 at batch 1 0.387 -> 0.346 ms, 28x28 128 -> 512 0.375 -> 0.348, InceptionV3's 17x17
 * 768 -> 192 0.326 -> 0.293). Not when the weights outgrow L2 (7x7 2048 -> 512: 0.397 -> 0.474),
 * when a thread would have few strips to read each panel for (7x7 512 -> 512: 0.102 -> 0.118),
 * or when the strips do not share out evenly. */
enum { ROW_SPLIT_BYTES = 2 << 20, ROW_SPLIT_STRIPS = 6 };
/* Items a thread below which they are few: made a whole number a thread and dealt round robin
 * (few_items). */
enum { FEW_ITEMS = 8 };

static int split_rows(int64_t strips, int64_t weight_bytes, int threads) {
  int64_t share = ceil_div(strips, threads);
  return weight_bytes <= ROW_SPLIT_BYTES && share >= ROW_SPLIT_STRIPS &&
         10 * share * threads <= 11 * strips;
}

static panels_plan plan_items(int64_t strips, int64_t k, int64_t n, int64_t group_max,
                              int threads) {
  int64_t panels = ceil_div(n, NR), want = 2 * (int64_t)threads;
  panels_plan p = {strips, 0, 0, ceil_div(panels, group_max), threads};
  p.row_blocks = ceil_div(p.strips, MC / MR);
  if (p.row_blocks < threads &&
      split_rows(strips, k * panels * NR * (int64_t)sizeof(float), threads)) {
    p.row_blocks = threads, p.group = panels, p.groups = 1;
    return p;
  }
  while (p.row_blocks * p.groups < want && p.groups < panels)
    p.groups = p.groups * 2 < panels ? p.groups * 2 : panels;
  if (p.row_blocks * p.groups < want) p.row_blocks = ceil_div(want, p.groups);
  if (p.row_blocks * p.groups < FEW_ITEMS * (int64_t)threads) {
    /* Few items: groups of equal panels (5 panels in groups of 2 left 3 items, 2 + 1 panels
     * against 2: MobileNetV2's 7x7 1x1 layers at batch 1), then a whole number of items a
     * thread. */
    while (p.groups < panels && panels % p.groups) p.groups++;
    while ((p.row_blocks * p.groups) % threads && p.row_blocks < p.strips) p.row_blocks++;
  }
  if (p.row_blocks > p.strips) p.row_blocks = p.strips;
  p.group = ceil_div(panels, p.groups);
  p.groups = ceil_div(panels, p.group);
  return p;
}

/* The first row of row block b. */
static int64_t block_row(const panels_plan *p, int64_t b, int64_t m) {
  int64_t row = b * p->strips / p->row_blocks * MR;
  return row < m ? row : m;
}

/* The window corners of output pixels [r0, r0 + rows) in the padded input. */
static void window_corners(const rows_src *src, int64_t r0, int64_t rows, int64_t *base) {
  const cn_window *w = src->conv;
  /* The first pixel's position by division, the next ones by stepping along the row: three
   * divisions a row cost a quarter of an item's time when it has one panel (InceptionV3's
   * 147x147 32 -> 32 layer). */
  int64_t b = r0 / (w->oh * w->ow), oy = r0 / w->ow % w->oh, ox = r0 % w->ow;
  int64_t row = (b * src->ihp + oy * w->sh) * src->iwp;
  for (int64_t i = 0; i < rows; i++) {
    base[i] = (row + ox * w->sw) * w->c;
    if (++ox < w->ow) continue;
    ox = 0;
    if (++oy < w->oh) {
      row += w->sh * src->iwp;
    } else {
      oy = 0, b++;
      row = b * src->ihp * src->iwp;
    }
  }
}

/* Few items (a whole number a thread, plan_items) are dealt round robin, so that each thread
 * knows its next one and fetches its first panel during its last: at batch 1 every item reads
 * its panels from memory, and the first one came unannounced (ResNet50 b1 0.988x the time,
 * VGG16 b1 0.988x). */
static int few_items(const panels_plan *p) {
  int64_t items = p->row_blocks * p->groups;
  return items < FEW_ITEMS * (int64_t)p->threads && items % p->threads == 0;
}

/* Item i's panels: [*q0, *q0 + *np) of `panels`. */
static void item_panels(const panels_plan *p, int64_t i, int64_t panels, int64_t *q0, int64_t *np) {
  *q0 = i % p->groups * p->group;
  *np = panels - *q0 < p->group ? panels - *q0 : p->group;
}

/* The first panel of item i + step, or NULL past the last. */
static const float *after_item(const panels_plan *p, const cn_panels *w, int64_t i, int step) {
  int64_t next = i + step, q0, np;
  if (next >= p->row_blocks * p->groups) return NULL;
  item_panels(p, next, ceil_div(w->n, NR), &q0, &np);
  return panel_at(w, q0, 0);
}

/* One product's items, run by run_plan: rows from `src` (run_item) or the exact strips of `pl`
 * over x (exact_at). */
typedef struct product {
  const cn_panels *w;
  const rows_src *src;
  const struct exact_plan *pl;
  const float *x, *bias;
  const cn_activation *act;
  float *y;
  int64_t m, ldy;
} product;

typedef void (*item_fn)(const product *pr, const panels_plan *p, int64_t i, const float *after);

/* Plan p's items by the calling thread of a team (every item when not `team`). Few items go
 * round robin, each fetching the first panel of its thread's next one (few_items); more go
 * dynamically: items differ in cost (the last rows, a partial panel), and who computes one never
 * changes its bits. */
static void run_plan(const panels_plan *p, const product *pr, int team, item_fn fn) {
  int64_t items = p->row_blocks * p->groups;
  if (!team) {
    for (int64_t i = 0; i < items; i++) fn(pr, p, i, after_item(p, pr->w, i, 1));
    return;
  }
  if (few_items(p)) {
#pragma omp for schedule(static, 1)
    for (int64_t i = 0; i < items; i++)
      fn(pr, p, i, after_item(p, pr->w, i, omp_get_num_threads()));
    return;
  }
#pragma omp for schedule(dynamic, 1)
  for (int64_t i = 0; i < items; i++) fn(pr, p, i, NULL);
}

static int small_output(int64_t m, int64_t n) {
  return (double)m * (double)n * sizeof(float) <= SMALL_OUTPUT_BYTES;
}

/* Item i of plan p (one thread), then, unless the micro-kernels finished it, its bias and
 * activation while its outputs are in cache. */
static void run_item(const product *pr, const panels_plan *p, int64_t i, const float *after) {
  const cn_panels *w = pr->w;
  const rows_src *src = pr->src;
  const float *bias = pr->bias;
  const cn_activation *act = pr->act;
  float *y = pr->y;
  int64_t m = pr->m, ldy = pr->ldy;
  float edge[MC * NR];
  int64_t base[MC];
  int64_t r0 = block_row(p, i / p->groups, m), rows = block_row(p, i / p->groups + 1, m) - r0;
  int64_t q0, np;
  item_panels(p, i, ceil_div(w->n, NR), &q0, &np);
  int fuse = fusable(act);
  if (src->conv) window_corners(src, r0, rows, base);
  item(w, src, base, r0, rows, q0, np, y, ldy, edge, bias, act, fuse, small_output(m, w->n), after);
  int64_t c0 = q0 * NR, cols = w->n - c0 < np * NR ? w->n - c0 : np * NR;
  if (fuse) { /* only a partial last panel is left, computed apart in `edge` */
    int64_t last = q0 + np - 1;
    if ((last + 1) * NR <= w->n) return;
    c0 = last * NR, cols = w->n - c0;
  }
  cn_bias_act_rows(y + r0 * ldy + c0, rows, cols, ldy, bias ? bias + c0 : NULL, act, 1);
}

/* Panels per item at most: as many as ONE_PASS_BYTES hold when the product is one pass. */
static int64_t group_max(const cn_panels *w, int one) {
  int64_t fit = ONE_PASS_BYTES / (w->k * NR * (int64_t)sizeof(float));
  return !one ? GROUP_PANELS : fit < 1 ? 1 : fit < GROUP_PANELS ? fit : GROUP_PANELS;
}

static void run_items(int64_t m, const rows_src *src, const cn_panels *w, const float *bias,
                      const cn_activation *act, float *y, int64_t ldy, int threads, int team) {
  panels_plan p =
      plan_items(ceil_div(m, MR), w->k, w->n, group_max(w, one_pass(src, w->k)), threads);
  product pr = {w, src, NULL, src->x, bias, act, y, m, ldy};
  run_plan(&p, &pr, team, run_item);
}

void cn_panels_gemm_team(int64_t m, const float *x, int64_t ldx, const cn_panels *w,
                         const float *bias, const cn_activation *act, float *y, int64_t ldy,
                         int threads) {
  rows_src src = {x, ldx, NULL, 0, 0, 0, 0, 1};
  run_items(m, &src, w, bias, act, y, ldy, threads, 1);
}

void cn_panels_gemm_serial(int64_t m, const float *x, int64_t ldx, const cn_panels *w,
                           const float *bias, const cn_activation *act, float *y, int64_t ldy) {
  rows_src src = {x, ldx, NULL, 0, 0, 0, 0, 1};
  run_items(m, &src, w, bias, act, y, ldy, 1, 0);
}

void cn_panels_gemm(int64_t m, const float *x, int64_t ldx, const cn_panels *w, const float *bias,
                    const cn_activation *act, float *y, int64_t ldy, int threads) {
  double macs = (double)m * (double)w->n * (double)w->k;
#pragma omp parallel num_threads(threads) if (threads > 1 && macs > 65536.0)
  cn_panels_gemm_team(m, x, ldx, w, bias, act, y, ldy, threads);
}

/* ---- windows that reach past the image, read without a padded copy --------------------------
 * The output pixels fall in regions whose windows read the same taps inside the image: bands of
 * output rows by bands of columns, each row or column along a border a band of its own. Strips
 * are cut within a region and pass only its taps, so no padded copy of the input is written and
 * read again, and the taps over the padding, zeros, are not multiplied (a 3x3 window over 14x14
 * pixels reads 9 % padding, over 7x7 18 %; ONNX Runtime skips them too). Skipping a zero product
 * leaves every sum as it was (s + 0 * w == s, and a sum that starts at +0 stays +0), so the bits
 * are those of the padded products while the weights are finite. A region as wide as the image
 * is cut in strips along its flattened pixels, a single column down the column (rows ow apart),
 * any other one row by row, so that a strip's outputs are evenly spaced. */
typedef struct band {
  int64_t lo, hi; /* output rows or columns [lo, hi) */
  int t0, t1;     /* the taps they read inside the image */
} band;
enum { MAX_BANDS = 16 };

/* Outputs [0, count) in bands of equal taps: how many, 0 past MAX_BANDS. */
static int bands_of(int64_t count, int stride, int pad, int k, int dil, int64_t n, band *b) {
  int nb = 0;
  for (int64_t o = 0; o < count; o++) {
    int t0, t1;
    cn_window_taps(o * stride - pad, k, dil, n, &t0, &t1);
    if (nb && b[nb - 1].t0 == t0 && b[nb - 1].t1 == t1) {
      b[nb - 1].hi = o + 1;
      continue;
    }
    if (nb == MAX_BANDS) return 0;
    b[nb++] = (band){o, o + 1, t0, t1};
  }
  return nb;
}

struct exact_plan {
  const cn_window *w;
  band rows[MAX_BANDS], cols[MAX_BANDS];
  int nrows, ncols;
  int64_t first[MAX_BANDS * MAX_BANDS + 1]; /* an image's strips before each region */
};
typedef struct exact_plan exact_plan;

static int64_t region_strips(int64_t h, int64_t wd, int64_t ow) {
  if (wd == ow) return ceil_div(h * wd, MR);
  if (wd == 1) return ceil_div(h, MR);
  return h * ceil_div(wd, MR);
}

/* w's bands and regions; 0 when its windows never leave the image, or have too many bands. */
static int exact_plan_make(const cn_window *w, exact_plan *pl) {
  pl->w = w;
  pl->nrows = bands_of(w->oh, w->sh, w->pad_top, w->kh, w->dh, w->ih, pl->rows);
  pl->ncols = bands_of(w->ow, w->sw, w->pad_left, w->kw, w->dw, w->iw, pl->cols);
  if (!pl->nrows || !pl->ncols) return 0;
  if (pl->nrows == 1 && pl->ncols == 1 && pl->rows[0].t1 - pl->rows[0].t0 == w->kh &&
      pl->cols[0].t1 - pl->cols[0].t0 == w->kw)
    return 0;
  pl->first[0] = 0;
  for (int i = 0; i < pl->nrows; i++)
    for (int j = 0; j < pl->ncols; j++) {
      int r = i * pl->ncols + j;
      pl->first[r + 1] = pl->first[r] + region_strips(pl->rows[i].hi - pl->rows[i].lo,
                                                      pl->cols[j].hi - pl->cols[j].lo, w->ow);
    }
  return 1;
}

static int exact_applies(const cn_window *w, const cn_panels *k, const cn_activation *act,
                         exact_plan *pl) {
  return w->dw == 1 && cn_panels_one_pass(k->k) && k->n % NR == 0 && fusable(act) &&
         exact_plan_make(w, pl);
}

int cn_panels_conv_exact(const cn_window *w, const cn_panels *k, const cn_activation *act) {
  exact_plan pl;
  return exact_applies(w, k, act, &pl);
}

/* Strip j of the layer: image b, first pixel (oy, ox), n pixels `step` apart, taps
 * [ky0, ky1) x [kx0, kx1). */
typedef struct exact_strip {
  int64_t b, oy, ox, step;
  int n, ky0, ky1, kx0, kx1;
} exact_strip;

static exact_strip exact_strip_at(const exact_plan *pl, int64_t j) {
  const cn_window *w = pl->w;
  int64_t per_image = pl->first[pl->nrows * pl->ncols], local = j % per_image;
  int lo = 0, hi = pl->nrows * pl->ncols; /* the region: first[lo] <= local < first[lo + 1] */
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (pl->first[mid] <= local)
      lo = mid;
    else
      hi = mid;
  }
  const band *rb = &pl->rows[lo / pl->ncols], *cb = &pl->cols[lo % pl->ncols];
  int64_t t = local - pl->first[lo], h = rb->hi - rb->lo, wd = cb->hi - cb->lo, q0, q1;
  exact_strip e = {j / per_image, rb->lo, cb->lo, 1, 0, rb->t0, rb->t1, cb->t0, cb->t1};
  if (wd == w->ow) { /* whole rows: the region's pixels flattened */
    int64_t count = ceil_div(h * wd, MR);
    q0 = t * h * wd / count, q1 = (t + 1) * h * wd / count;
    e.oy += q0 / wd, e.ox = q0 % wd;
  } else if (wd == 1) { /* one column: down it */
    int64_t count = ceil_div(h, MR);
    q0 = t * h / count, q1 = (t + 1) * h / count;
    e.oy += q0, e.step = w->ow;
  } else { /* row by row */
    int64_t per_row = ceil_div(wd, MR), part = t % per_row;
    q0 = part * wd / per_row, q1 = (part + 1) * wd / per_row;
    e.oy += t / per_row, e.ox += q0;
  }
  e.n = (int)(q1 - q0);
  return e;
}

/* Strip e's geometry: its rows' addresses (MR, the last repeated) at `at`, read from their first
 * tap inside the image. */
static strip_geo exact_geo(const exact_plan *pl, const float *x, const exact_strip *e, float *y,
                           int64_t ldy, const float **at) {
  const cn_window *w = pl->w;
  int empty = e->ky0 == e->ky1 || e->kx0 == e->kx1;
  int64_t oy = e->oy, ox = e->ox;
  for (int r = 0; r < e->n; r++) {
    int64_t iy = oy * w->sh - w->pad_top + (int64_t)e->ky0 * w->dh;
    int64_t ix = ox * w->sw - w->pad_left + e->kx0;
    at[r] = empty ? x : x + ((e->b * w->ih + iy) * w->iw + ix) * w->c;
    if (e->step > 1)
      oy++;
    else if (++ox == w->ow)
      ox = 0, oy++;
  }
  for (int r = e->n; r < MR; r++) at[r] = at[e->n - 1];
  return (strip_geo){at,
                     y + ((e->b * w->oh + e->oy) * w->ow + e->ox) * ldy,
                     e->step * ldy,
                     0,
                     ((int64_t)e->ky0 * w->kw + e->kx0) * w->c,
                     empty ? 0 : (e->kx1 - e->kx0) * w->c,
                     empty ? 1 : e->ky1 - e->ky0,
                     (int64_t)w->dh * w->iw * w->c,
                     (int64_t)w->kw * w->c * NR,
                     e->n};
}

/* Strips [j0, j1) of the layer by panels [p0, p0 + np). */
static void exact_item(const product *pr, int64_t j0, int64_t j1, int64_t p0, int64_t np,
                       const float *after) {
  item_args a = {pr->w,
                 NULL,
                 NULL,
                 pr->bias,
                 0,
                 pr->ldy,
                 pr->y,
                 NULL,
                 pr->act,
                 1,
                 small_output(pr->m, pr->w->n),
                 {NULL, NULL, cn_vclamp_of(pr->act)},
                 after};
  const float *at[MC];
  strip_geo g[MC / MR];
  int64_t rows = 0;
  for (int64_t j = j0; j < j1; j++) {
    exact_strip e = exact_strip_at(pr->pl, j);
    g[j - j0] = exact_geo(pr->pl, pr->x, &e, pr->y, pr->ldy, at + (j - j0) * MR);
    rows += e.n;
  }
  pass_strips(&a, g, j1 - j0, rows, p0, np, 0, pr->w->k);
}

/* Item i of plan p over the exact strips. */
static void exact_at(const product *pr, const panels_plan *p, int64_t i, const float *after) {
  int64_t b = i / p->groups, q0, np;
  item_panels(p, i, ceil_div(pr->w->n, NR), &q0, &np);
  exact_item(pr, b * p->strips / p->row_blocks, (b + 1) * p->strips / p->row_blocks, q0, np, after);
}

static void run_exact(const exact_plan *pl, const float *x, const cn_panels *w, const float *bias,
                      const cn_activation *act, float *y, int threads) {
  int64_t strips = pl->w->batch * pl->first[pl->nrows * pl->ncols];
  panels_plan p = plan_items(strips, w->k, w->n, group_max(w, 1), threads);
  product pr = {w, NULL, pl, x, bias, act, y, pl->w->batch * pl->w->oh * pl->w->ow, w->n};
  run_plan(&p, &pr, 1, exact_at);
}

void cn_panels_conv_team(const cn_window *w, const float *xp, int64_t ihp, int64_t iwp,
                         const cn_panels *k, const float *bias, const cn_activation *act, float *y,
                         int threads) {
  exact_plan pl;
  if (ihp == w->ih && iwp == w->iw && exact_applies(w, k, act, &pl)) {
    run_exact(&pl, xp, k, bias, act, y, threads);
    return;
  }
  int64_t seg = (int64_t)w->kw * w->c;
  rows_src src = {
      xp, 0, w, ihp, iwp, seg, (int64_t)w->dh * iwp * w->c, cn_panels_one_pass(k->k) ? w->kh : 1};
  run_items(w->batch * w->oh * w->ow, &src, k, bias, act, y, k->n, threads, 1);
}
