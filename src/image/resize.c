/* Resizing with the arithmetic of the tools models were trained with, so that pixels match:
 * NEAREST as PIL's Image.resize(NEAREST), BILINEAR and AREA as OpenCV's cv2.resize on uint8
 * (fixed-point linear weights, float area weights), PIL_BILINEAR as PIL's separable
 * convolution with 22-bit fixed-point coefficients, TF_BILINEAR as TensorFlow's ResizeBilinear
 * (half-pixel centres) in float32, unrounded for cn_image_prepare. Center crop follows
 * torchvision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"

/* The float area weights must be rounded like OpenCV's (no fused multiply-add). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static cn_status new_image(cn_image *dst, int width, int height) {
  return cn_image_alloc(dst, width, height, "resize");
}

static uint8_t *pixel_at(const cn_image *img, int x, int y) {
  return img->pixels + ((size_t)y * img->width + x) * 3;
}

/* ---- NEAREST: PIL's scale-affine nearest, with its accumulated double coordinates. */

static void nearest_table(int src, int dst, int *table) {
  double step = (double)src / dst, pos = step * 0.5;
  for (int i = 0; i < dst; i++, pos += step) {
    int v = pos < 0 ? 0 : (int)pos;
    table[i] = v >= src ? src - 1 : v;
  }
}

static void resize_nearest(const cn_image *src, cn_image *dst, int *xs, int *ys) {
  nearest_table(src->width, dst->width, xs);
  nearest_table(src->height, dst->height, ys);
  for (int y = 0; y < dst->height; y++)
    for (int x = 0; x < dst->width; x++)
      memcpy(pixel_at(dst, x, y), pixel_at(src, xs[x], ys[y]), 3);
}

/* ---- BILINEAR and upscaling AREA: OpenCV's linear engine with 11-bit weights. */

enum { CV_COEF_SCALE = 2048 };

typedef struct cv_tap {
  int index;       /* first source pixel; the second is index + 1 (clamped) */
  short weight[2]; /* weights of the two taps, summing to 2048 */
} cv_tap;

static int cv_round(double v) {
  return (int)lrint(v);
}

/* OpenCV computes the scale as 1 / (dst / src). Along x it clamps taps at the borders to one
 * source pixel; along y it keeps the weights and clamps only the row indices (clamp_x == 0). */
static void cv_linear_taps(int src, int dst, int area_mode, int clamp_x, cv_tap *taps) {
  double inv_scale = (double)dst / src, scale = 1.0 / inv_scale;
  for (int d = 0; d < dst; d++) {
    int s;
    float f;
    if (!area_mode) {
      f = (float)((d + 0.5) * scale - 0.5);
      s = (int)floorf(f);
      f -= s;
    } else {
      s = (int)floor(d * scale);
      f = (float)((d + 1) - (s + 1) * inv_scale);
      f = f <= 0 ? 0.f : f - floorf(f);
    }
    if (clamp_x && s < 0) f = 0, s = 0;
    if (clamp_x && s >= src - 1) f = 0, s = src - 1;
    taps[d].index = s;
    taps[d].weight[0] = (short)cv_round((1.f - f) * CV_COEF_SCALE);
    taps[d].weight[1] = (short)cv_round(f * CV_COEF_SCALE); /* rounded separately, as OpenCV */
  }
}

/* One source row filtered horizontally into 2048-scaled ints. */
static void cv_horizontal(const cn_image *src, int y, const cv_tap *xt, int dst_w, int *row) {
  const uint8_t *s = src->pixels + (size_t)y * src->width * 3;
  int last = src->width - 1;
  for (int x = 0; x < dst_w; x++) {
    int i0 = xt[x].index, i1 = i0 < last ? i0 + 1 : last;
    for (int c = 0; c < 3; c++)
      row[x * 3 + c] = s[i0 * 3 + c] * xt[x].weight[0] + s[i1 * 3 + c] * xt[x].weight[1];
  }
}

/* OpenCV's vectorized vertical step for uint8 (which its SIMD builds always use): both rows are
 * pre-shifted by 4 bits and multiplied with a high-half 16-bit multiply before a final
 * rounding shift. */
static uint8_t cv_vertical(int a, int b, short wa, short wb) {
  int v = (((int16_t)(a >> 4) * wa) >> 16) + (((int16_t)(b >> 4) * wb) >> 16);
  v = (v + 2) >> 2;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static cn_status resize_cv_linear(const cn_image *src, cn_image *dst, int area_mode) {
  int dw = dst->width, dh = dst->height;
  cv_tap *xt = malloc(sizeof *xt * dw), *yt = malloc(sizeof *yt * dh);
  int *rows = malloc(sizeof *rows * (size_t)dw * 3 * 2);
  cn_status st = CN_OK;
  if (!xt || !yt || !rows) {
    st = cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", dw, dh);
  } else {
    cv_linear_taps(src->width, dw, area_mode, 1, xt);
    cv_linear_taps(src->height, dh, area_mode, 0, yt);
    int *r0 = rows, *r1 = rows + (size_t)dw * 3;
    for (int y = 0; y < dh; y++) {
      int last = src->height - 1, i0 = yt[y].index, i1 = i0 + 1;
      i0 = i0 < 0 ? 0 : i0 > last ? last : i0;
      i1 = i1 < 0 ? 0 : i1 > last ? last : i1;
      cv_horizontal(src, i0, xt, dw, r0);
      cv_horizontal(src, i1, xt, dw, r1);
      uint8_t *out = dst->pixels + (size_t)y * dw * 3;
      for (int i = 0; i < dw * 3; i++)
        out[i] = cv_vertical(r0[i], r1[i], yt[y].weight[0], yt[y].weight[1]);
    }
  }
  free(xt);
  free(yt);
  free(rows);
  return st;
}

/* ---- AREA when shrinking: OpenCV's exact-integer fast path or float cell coverage. */

static cn_status resize_cv_area_integer(const cn_image *src, cn_image *dst, int kx, int ky) {
  int area = kx * ky;
  float scale = 1.f / (float)area;
  for (int y = 0; y < dst->height; y++) {
    for (int x = 0; x < dst->width; x++) {
      for (int c = 0; c < 3; c++) {
        int sum = 0;
        for (int j = 0; j < ky; j++)
          for (int i = 0; i < kx; i++) sum += pixel_at(src, x * kx + i, y * ky + j)[c];
        /* OpenCV's 2x2 path rounds half up with a shift; larger cells use a float scale. */
        int v = area == 4 && kx == 2 ? (sum + 2) >> 2 : (int)lrintf((float)sum * scale);
        pixel_at(dst, x, y)[c] = (uint8_t)(v > 255 ? 255 : v);
      }
    }
  }
  return CN_OK;
}

typedef struct area_weight {
  int dst, src;
  float alpha;
} area_weight;

/* Which source cells cover each destination cell, and by how much (OpenCV's table). */
static int area_table(int src, int dst, double scale, area_weight *tab) {
  int k = 0;
  for (int d = 0; d < dst; d++) {
    double f1 = d * scale, f2 = f1 + scale;
    double cell = fmin(scale, src - f1);
    int s1 = (int)ceil(f1), s2 = (int)floor(f2);
    if (s2 > src - 1) s2 = src - 1;
    if (s1 > s2) s1 = s2;
    if (s1 - f1 > 1e-3) tab[k++] = (area_weight){d, s1 - 1, (float)((s1 - f1) / cell)};
    for (int s = s1; s < s2; s++) tab[k++] = (area_weight){d, s, (float)(1.0 / cell)};
    if (f2 - s2 > 1e-3)
      tab[k++] = (area_weight){d, s2, (float)(fmin(fmin(f2 - s2, 1.), cell) / cell)};
  }
  return k;
}

static void area_flush(const float *sum, int n, uint8_t *out) {
  for (int i = 0; i < n; i++) {
    int v = (int)lrintf(sum[i]);
    out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
}

static cn_status resize_cv_area(const cn_image *src, cn_image *dst) {
  int dw = dst->width, dh = dst->height, n = dw * 3;
  double sx = 1.0 / ((double)dw / src->width), sy = 1.0 / ((double)dh / src->height);
  area_weight *xt = malloc(sizeof *xt * ((size_t)src->width * 2 + 2));
  area_weight *yt = malloc(sizeof *yt * ((size_t)src->height * 2 + 2));
  float *buf = malloc(sizeof(float) * n), *sum = calloc(n, sizeof(float));
  if (!xt || !yt || !buf || !sum) {
    free(xt), free(yt), free(buf), free(sum);
    return cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", dw, dh);
  }
  int nx = area_table(src->width, dw, sx, xt), ny = area_table(src->height, dh, sy, yt);
  int prev = 0;
  for (int j = 0; j < ny; j++) {
    const uint8_t *s = src->pixels + (size_t)yt[j].src * src->width * 3;
    memset(buf, 0, sizeof(float) * n);
    for (int k = 0; k < nx; k++) {
      for (int c = 0; c < 3; c++) {
        float t = s[xt[k].src * 3 + c] * xt[k].alpha;
        buf[xt[k].dst * 3 + c] = buf[xt[k].dst * 3 + c] + t;
      }
    }
    float beta = yt[j].alpha;
    if (yt[j].dst != prev) {
      area_flush(sum, n, dst->pixels + (size_t)prev * n);
      for (int i = 0; i < n; i++) sum[i] = beta * buf[i];
      prev = yt[j].dst;
    } else {
      for (int i = 0; i < n; i++) {
        float t = beta * buf[i];
        sum[i] = sum[i] + t;
      }
    }
  }
  area_flush(sum, n, dst->pixels + (size_t)prev * n);
  free(xt), free(yt), free(buf), free(sum);
  return CN_OK;
}

static cn_status resize_area(const cn_image *src, cn_image *dst) {
  double sx = 1.0 / ((double)dst->width / src->width);
  double sy = 1.0 / ((double)dst->height / src->height);
  if (sx < 1 || sy < 1) return resize_cv_linear(src, dst, 1);
  int kx = (int)lrint(sx), ky = (int)lrint(sy);
  if (fabs(sx - kx) < 2.220446049250313e-16 && fabs(sy - ky) < 2.220446049250313e-16)
    return resize_cv_area_integer(src, dst, kx, ky);
  return resize_cv_area(src, dst);
}

static cn_status resize_bilinear(const cn_image *src, cn_image *dst) {
  /* OpenCV turns an exact 2x shrink into the (equivalent) area average. */
  if (src->width == 2 * dst->width && src->height == 2 * dst->height)
    return resize_cv_area_integer(src, dst, 2, 2);
  return resize_cv_linear(src, dst, 0);
}

/* ---- PIL_BILINEAR: PIL's triangle filter, widened by the scale when shrinking. */

enum { PIL_PRECISION_BITS = 22 };

typedef struct pil_kernel {
  int size; /* taps per output pixel (maximum) */
  int *first, *count;
  int *weights; /* size per output pixel, fixed point */
} pil_kernel;

static void pil_kernel_free(pil_kernel *k) {
  free(k->first), free(k->count), free(k->weights);
}

static cn_status pil_kernel_make(int in, int out, pil_kernel *k) {
  double scale = (double)in / out, filterscale = scale < 1 ? 1 : scale;
  double support = filterscale; /* the triangle's support is 1 */
  k->size = (int)ceil(support) * 2 + 1;
  k->first = malloc(sizeof(int) * out);
  k->count = malloc(sizeof(int) * out);
  k->weights = calloc((size_t)out * k->size, sizeof(int));
  double *w = malloc(sizeof(double) * k->size);
  if (!k->first || !k->count || !k->weights || !w) {
    pil_kernel_free(k), free(w);
    return cn_fail(CN_ERR_NOMEM, "resize: no memory for filter weights");
  }
  for (int o = 0; o < out; o++) {
    double center = (o + 0.5) * scale, total = 0;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    for (int i = 0; i < hi - lo; i++) {
      double t = fabs((i + lo - center + 0.5) / filterscale);
      w[i] = t < 1 ? 1 - t : 0;
      total += w[i];
    }
    for (int i = 0; i < hi - lo; i++) {
      double v = total != 0 ? w[i] / total : w[i];
      double scaled = v * (1 << PIL_PRECISION_BITS);
      k->weights[(size_t)o * k->size + i] = (int)(v < 0 ? scaled - 0.5 : scaled + 0.5);
    }
    k->first[o] = lo;
    k->count[o] = hi - lo;
  }
  free(w);
  return CN_OK;
}

static uint8_t pil_clip(int64_t v) {
  if (v <= 0) return 0;
  v >>= PIL_PRECISION_BITS;
  return (uint8_t)(v > 255 ? 255 : v);
}

/* One filtering pass along x (stride 3) or y (stride row), from src into dst. */
static void pil_pass(const uint8_t *src, uint8_t *dst, int out_len, int lines, size_t in_step,
                     size_t in_line, size_t out_step, size_t out_line, const pil_kernel *k) {
  for (int line = 0; line < lines; line++) {
    for (int o = 0; o < out_len; o++) {
      const int *w = k->weights + (size_t)o * k->size;
      const uint8_t *s = src + line * in_line + (size_t)k->first[o] * in_step;
      for (int c = 0; c < 3; c++) {
        int64_t acc = 1 << (PIL_PRECISION_BITS - 1);
        for (int i = 0; i < k->count[o]; i++) acc += (int64_t)s[i * in_step + c] * w[i];
        dst[line * out_line + o * out_step + c] = pil_clip(acc);
      }
    }
  }
}

/* Horizontal then vertical, except when widening and shrinking in height, where PIL runs the
 * (cheaper) vertical pass first; the order changes the rounding of the intermediate image. */
static cn_status resize_pil_bilinear(const cn_image *src, cn_image *dst) {
  int sw = src->width, sh = src->height, dw = dst->width, dh = dst->height;
  int vertical_first = dw > sw && dh < sh;
  int tw = vertical_first ? sw : dw, th = vertical_first ? dh : sh;
  pil_kernel kx = {0}, ky = {0};
  cn_status st = pil_kernel_make(sw, dw, &kx);
  if (st == CN_OK) st = pil_kernel_make(sh, dh, &ky);
  uint8_t *tmp = st == CN_OK ? malloc((size_t)tw * th * 3) : NULL;
  if (st == CN_OK && !tmp) st = cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", tw, th);
  if (st == CN_OK) {
    const uint8_t *in = src->pixels;
    int iw = sw;
    for (int pass = 0; pass < 2; pass++) {
      int horizontal = (pass == 0) != vertical_first;
      uint8_t *out = pass == 0 ? tmp : dst->pixels;
      int ow = horizontal ? dw : iw, oh = pass == 0 ? th : dh, ih = pass == 0 ? sh : th;
      /* PIL skips a pass whose size does not change. */
      if (horizontal && dw != sw)
        pil_pass(in, out, dw, ih, 3, (size_t)iw * 3, 3, (size_t)dw * 3, &kx);
      else if (!horizontal && dh != sh)
        pil_pass(in, out, dh, iw, (size_t)iw * 3, 3, (size_t)iw * 3, 3, &ky);
      else
        memcpy(out, in, (size_t)ow * oh * 3);
      in = out;
      iw = ow;
    }
  }
  free(tmp);
  pil_kernel_free(&kx);
  pil_kernel_free(&ky);
  return st;
}

/* ---- TF_BILINEAR: tf.image.resize(method="bilinear", antialias=False), TensorFlow's
 * ResizeBilinear kernel with half_pixel_centers: coordinates, weights and blends in float32. */

typedef struct tf_tap {
  int lo, hi;
  float lerp;
} tf_tap;

static void tf_taps(int in, int out, tf_tap *t) {
  float scale = (float)in / (float)out;
  for (int i = 0; i < out; i++) {
    float x = ((float)i + 0.5f) * scale - 0.5f, f = floorf(x);
    int lo = (int)f, hi = (int)ceilf(x);
    t[i].lo = lo < 0 ? 0 : lo;
    t[i].hi = hi > in - 1 ? in - 1 : hi;
    t[i].lerp = x - f;
  }
}

static float tf_lerp(float a, float b, float t) {
  float d = (b - a) * t;
  return a + d;
}

static void tf_bilinear_rows(const cn_image *src, const tf_tap *xt, const tf_tap *yt, int width,
                             int height, float *out) {
  for (int y = 0; y < height; y++) {
    for (int x = 0; x < width; x++) {
      const uint8_t *tl = pixel_at(src, xt[x].lo, yt[y].lo),
                    *tr = pixel_at(src, xt[x].hi, yt[y].lo);
      const uint8_t *bl = pixel_at(src, xt[x].lo, yt[y].hi),
                    *br = pixel_at(src, xt[x].hi, yt[y].hi);
      for (int c = 0; c < 3; c++) {
        float top = tf_lerp(tl[c], tr[c], xt[x].lerp);
        float bottom = tf_lerp(bl[c], br[c], xt[x].lerp);
        *out++ = tf_lerp(top, bottom, yt[y].lerp);
      }
    }
  }
}

cn_status cn_image_resize_tf(const cn_image *src, int width, int height, float *out) {
  tf_tap *xt = malloc(sizeof *xt * width), *yt = malloc(sizeof *yt * height);
  cn_status st = CN_OK;
  if (xt && yt) {
    tf_taps(src->width, width, xt);
    tf_taps(src->height, height, yt);
    tf_bilinear_rows(src, xt, yt, width, height, out);
  } else {
    st = cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", width, height);
  }
  free(xt), free(yt);
  return st;
}

/* The float result rounded to the nearest level, for callers that want 8-bit pixels. */
static cn_status resize_tf_bilinear(const cn_image *src, cn_image *dst) {
  size_t n = (size_t)dst->width * dst->height * 3;
  float *f = malloc(sizeof *f * n);
  if (!f) return cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", dst->width, dst->height);
  cn_status st = cn_image_resize_tf(src, dst->width, dst->height, f);
  for (size_t i = 0; st == CN_OK && i < n; i++) {
    long v = lrintf(f[i]);
    dst->pixels[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  free(f);
  return st;
}

cn_status cn_image_resize(const cn_image *src, int width, int height, cn_resize policy,
                          cn_image *dst) {
  if (!src || !dst || !src->pixels || src->width <= 0 || src->height <= 0)
    return cn_fail(CN_ERR_ARG, "resize: no source image");
  if ((unsigned)policy >= CN_RESIZE_COUNT)
    return cn_fail(CN_ERR_ARG, "resize: unknown policy %d", (int)policy);
  cn_image out = {0};
  cn_status st = new_image(&out, width, height);
  if (st != CN_OK) return st;
  if (width == src->width && height == src->height) {
    memcpy(out.pixels, src->pixels, (size_t)width * height * 3);
  } else if (policy == CN_RESIZE_NEAREST) {
    int *xs = malloc(sizeof(int) * width), *ys = malloc(sizeof(int) * height);
    if (xs && ys)
      resize_nearest(src, &out, xs, ys);
    else
      st = cn_fail(CN_ERR_NOMEM, "resize: no memory for %dx%d", width, height);
    free(xs), free(ys);
  } else if (policy == CN_RESIZE_BILINEAR) {
    st = resize_bilinear(src, &out);
  } else if (policy == CN_RESIZE_AREA) {
    st = resize_area(src, &out);
  } else if (policy == CN_RESIZE_TF_BILINEAR) {
    st = resize_tf_bilinear(src, &out);
  } else {
    st = resize_pil_bilinear(src, &out);
  }
  if (st != CN_OK)
    cn_image_free(&out);
  else
    *dst = out;
  return st;
}

/* torchvision: top = int(round((H - h) / 2)), with Python's round half to even. */
int cn_image_center_offset(int full, int part) {
  int diff = full - part;
  return diff % 2 == 0 ? diff / 2 : (diff / 2) % 2 == 0 ? diff / 2 : diff / 2 + 1;
}

cn_status cn_image_crop_center_to(const cn_image *src, int width, int height, cn_image *dst) {
  if (width > src->width || height > src->height)
    return cn_fail(CN_ERR_ARG, "crop: %dx%d is larger than the %dx%d image", width, height,
                   src->width, src->height);
  cn_image out = {0};
  cn_status st = new_image(&out, width, height);
  if (st != CN_OK) return st;
  int left = cn_image_center_offset(src->width, width),
      top = cn_image_center_offset(src->height, height);
  for (int y = 0; y < height; y++)
    memcpy(pixel_at(&out, 0, y), pixel_at(src, left, top + y), (size_t)width * 3);
  *dst = out;
  return CN_OK;
}

cn_status cn_image_center_crop(const cn_image *src, double fraction, cn_image *dst) {
  if (!src || !dst || !src->pixels || src->width <= 0 || src->height <= 0)
    return cn_fail(CN_ERR_ARG, "crop: no source image");
  if (!(fraction > 0 && fraction <= 1))
    return cn_fail(CN_ERR_ARG, "crop: fraction %g is not in (0, 1]", fraction);
  /* Half to even, as Python's round() makes the sizes torchvision is given. */
  int width = (int)rint(src->width * fraction), height = (int)rint(src->height * fraction);
  return cn_image_crop_center_to(src, width < 1 ? 1 : width, height < 1 ? 1 : height, dst);
}
