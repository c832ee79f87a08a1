/* The per-pixel changes of a cn_transform and its Gaussian blur. Each follows the tool it is
 * compared with (tests/oracle/test_augment_keras.py): channel shift as ImageDataGenerator's
 * apply_channel_shift, brightness as PIL's ImageEnhance.Brightness, contrast as Keras 3's
 * RandomContrast, hue as Keras 3's RandomHue (an HSV round trip), blur as cv2.GaussianBlur.
 * Values are computed in floating point and rounded to the nearest grey level once per step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "image/image_internal.h"
#include "image/transform_internal.h"

static uint8_t round_u8(double v) {
  return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5);
}

static size_t pixel_count(const cn_image *image) {
  return (size_t)image->width * image->height;
}

/* ---- channel shift: shift[c] added, clipped to the image's own darkest and brightest value
 * (over all channels), as Keras does so that a shift never creates new extremes. */
static void channel_shift(cn_image *image, const double shift[3]) {
  size_t n = pixel_count(image) * 3;
  uint8_t lo = 255, hi = 0;
  for (size_t i = 0; i < n; i++) {
    uint8_t v = image->pixels[i];
    lo = v < lo ? v : lo, hi = v > hi ? v : hi;
  }
  uint8_t lut[3][256];
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) {
      double s = v + shift[c];
      lut[c][v] = round_u8(s < lo ? lo : s > hi ? hi : s);
    }
  for (size_t i = 0; i < n; i++) image->pixels[i] = lut[i % 3][image->pixels[i]];
}

/* ---- flips ---------------------------------------------------------------------------------- */

static void swap_pixel(uint8_t *a, uint8_t *b) {
  for (int k = 0; k < 3; k++) {
    uint8_t t = a[k];
    a[k] = b[k], b[k] = t;
  }
}

static void flip(cn_image *image, int horizontal, int vertical) {
  int w = image->width, h = image->height;
  size_t stride = (size_t)w * 3;
  for (int y = 0; horizontal && y < h; y++) {
    uint8_t *row = image->pixels + y * stride;
    for (int x = 0; x < w / 2; x++) swap_pixel(row + 3 * (size_t)x, row + 3 * (size_t)(w - 1 - x));
  }
  for (int y = 0; vertical && y < h / 2; y++) {
    uint8_t *top = image->pixels + y * stride, *bottom = image->pixels + (h - 1 - y) * stride;
    for (int x = 0; x < w; x++) swap_pixel(top + 3 * (size_t)x, bottom + 3 * (size_t)x);
  }
}

/* ---- brightness and contrast ---------------------------------------------------------------- */

static void brightness(cn_image *image, double factor) {
  uint8_t lut[256];
  for (int v = 0; v < 256; v++) lut[v] = round_u8(v * factor);
  size_t n = pixel_count(image) * 3;
  for (size_t i = 0; i < n; i++) image->pixels[i] = lut[image->pixels[i]];
}

static void contrast(cn_image *image, double factor) {
  size_t n = pixel_count(image);
  double sum[3] = {0, 0, 0};
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) sum[c] += image->pixels[3 * i + c];
  uint8_t lut[3][256];
  for (int c = 0; c < 3; c++) {
    double mean = sum[c] / (double)n;
    for (int v = 0; v < 256; v++) lut[c][v] = round_u8((v - mean) * factor + mean);
  }
  for (size_t i = 0; i < 3 * n; i++) image->pixels[i] = lut[i % 3][image->pixels[i]];
}

/* ---- hue: RGB to HSV, hue turned by delta turns, back to RGB -------------------------------- */

static double clamp01(double v) {
  return v < 0 ? 0 : v > 1 ? 1 : v;
}

static void turn_hue(uint8_t *p, double delta) {
  double r = p[0] / 255.0, g = p[1] / 255.0, b = p[2] / 255.0;
  double max = fmax(r, fmax(g, b)), min = fmin(r, fmin(g, b)), range = max - min;
  if (range <= 0) return; /* grey: no hue to turn */
  double h = max == r ? (g - b) / range : max == g ? 2 + (b - r) / range : 4 + (r - g) / range;
  h = h / 6 + delta;
  h -= floor(h);
  double s = range / max, v = max, dh = h * 6;
  /* each channel's share of the chroma is a clipped tent over the six hue sectors */
  double share[3] = {clamp01(fabs(dh - 3) - 1), clamp01(2 - fabs(dh - 2)),
                     clamp01(2 - fabs(dh - 4))};
  for (int c = 0; c < 3; c++) p[c] = round_u8((1 - s + s * share[c]) * v * 255.0);
}

static void hue(cn_image *image, double delta) {
  size_t n = pixel_count(image);
  for (size_t i = 0; i < n; i++) turn_hue(image->pixels + 3 * i, delta);
}

void cn_transform_pixels(cn_image *image, const cn_transform *t) {
  if (t->channel_shift[0] != 0 || t->channel_shift[1] != 0 || t->channel_shift[2] != 0)
    channel_shift(image, t->channel_shift);
  if (t->flip_horizontal || t->flip_vertical) flip(image, t->flip_horizontal, t->flip_vertical);
  if (t->brightness != 1) brightness(image, t->brightness);
  if (t->contrast != 1) contrast(image, t->contrast);
  if (t->hue != 0) hue(image, t->hue);
}

/* ---- Gaussian blur -------------------------------------------------------------------------- */

/* BORDER_REFLECT_101 (d c b | a b c d | c b a), folding as often as a wide kernel needs. */
static int reflect101(int i, int n) {
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

typedef struct blur_plan {
  int radius;
  float *weights; /* 2 * radius + 1, summing to 1 */
  int *xs;        /* source column of padded column j (j = x + k), width + 2 * radius */
  float *row;     /* one vertically blurred row, width * 3 */
} blur_plan;

static void blur_plan_free(blur_plan *p) {
  free(p->weights), free(p->xs), free(p->row);
}

static cn_status blur_plan_make(blur_plan *p, double sigma, int width) {
  p->radius = (int)ceil(3 * sigma);
  if (p->radius < 1) p->radius = 1;
  int taps = 2 * p->radius + 1;
  p->weights = malloc(sizeof(float) * taps);
  p->xs = malloc(sizeof(int) * ((size_t)width + taps));
  p->row = malloc(sizeof(float) * 3 * (size_t)width);
  if (!p->weights || !p->xs || !p->row) return cn_fail(CN_ERR_NOMEM, "blur: out of memory");
  double sum = 0, w[2 * CN_TRANSFORM_MAX_SIGMA * 3 + 1];
  /* a sigma whose square underflows to 0 is the limit of no blur: only the centre tap (the
   * formula would give exp(-0 / 0) = NaN there) */
  double two_var = 2 * sigma * sigma;
  for (int k = 0; k < taps; k++) {
    double d = k - p->radius;
    sum += w[k] = two_var > 0 ? exp(-d * d / two_var) : d == 0;
  }
  for (int k = 0; k < taps; k++) p->weights[k] = (float)(w[k] / sum);
  for (int j = 0; j < width + taps - 1; j++) p->xs[j] = reflect101(j - p->radius, width);
  return CN_OK;
}

/* Output row y: the column pass into p->row, then the row pass into out. */
static void blur_row(const cn_image *src, const blur_plan *p, int y, uint8_t *out) {
  int w = src->width, taps = 2 * p->radius + 1;
  size_t stride = (size_t)w * 3;
  memset(p->row, 0, sizeof(float) * stride);
  for (int k = 0; k < taps; k++) {
    const uint8_t *in = src->pixels + (size_t)reflect101(y + k - p->radius, src->height) * stride;
    float wk = p->weights[k];
    for (size_t i = 0; i < stride; i++) p->row[i] += wk * in[i];
  }
  for (int x = 0; x < w; x++) {
    float acc[3] = {0, 0, 0};
    for (int k = 0; k < taps; k++) {
      const float *q = p->row + 3 * (size_t)p->xs[x + k];
      acc[0] += p->weights[k] * q[0], acc[1] += p->weights[k] * q[1],
          acc[2] += p->weights[k] * q[2];
    }
    for (int c = 0; c < 3; c++) out[3 * (size_t)x + c] = round_u8(acc[c]);
  }
}

cn_status cn_image_blur(const cn_image *src, double sigma, cn_image *dst) {
  if (!(sigma > 0 && sigma <= CN_TRANSFORM_MAX_SIGMA))
    return cn_fail(CN_ERR_ARG, "blur: sigma %g is not in (0, %d]", sigma, CN_TRANSFORM_MAX_SIGMA);
  blur_plan p = {0};
  cn_image out = {0};
  cn_status st = blur_plan_make(&p, sigma, src->width);
  if (st == CN_OK) st = cn_image_alloc(&out, src->width, src->height, "blur");
  for (int y = 0; st == CN_OK && y < src->height; y++)
    blur_row(src, &p, y, out.pixels + (size_t)y * src->width * 3);
  blur_plan_free(&p);
  if (st == CN_OK)
    *dst = out;
  else
    cn_image_free(&out);
  return st;
}
