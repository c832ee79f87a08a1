/* Image analogies A : A' :: B : B' (Hertzmann et al., "Image Analogies", 2001; the neural
 * version's deep-feature patch matching after Liao et al., "Visual Attribute Transfer through
 * Deep Image Analogy", 2017), include/convnet/synth.h.
 *
 * Targets come from nearest-neighbour patch matches of B in A, taken exactly (one matrix product
 * per block of B's patches); B' is then optimised with L-BFGS towards them. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/model.h"
#include "synth/synth.h"

cn_analogy_options cn_analogy_options_default(void) {
  cn_analogy_options o = {.patch_size = 3,
                          .linear_radius = 3,
                          .pixel_weight = 1.0,
                          .feature_weight = 0.001,
                          .content_weight = 0.0,
                          .tv_weight = 0.01,
                          .iterations = 30};
  return o;
}

/* Every position's (2r+1)^2 x c neighbourhood (edges repeated) as one row, each offset d scaled
 * by sqrt(exp(-|d|^2 / (2 sigma^2))) when sigma > 0 (Hertzmann et al.'s Gaussian-weighted
 * distance); rows scaled to unit length when normalise. */
static float *patches_of(const float *f, int h, int w, int c, int r, float sigma, int normalise) {
  size_t d = (size_t)(2 * r + 1) * (2 * r + 1) * c;
  float *p = malloc((size_t)h * w * d * sizeof *p);
  if (!p) return NULL;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float *row = p + ((size_t)y * w + x) * d;
      size_t j = 0;
      for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
          int sy = y + dy < 0 ? 0 : y + dy >= h ? h - 1 : y + dy;
          int sx = x + dx < 0 ? 0 : x + dx >= w ? w - 1 : x + dx;
          float g =
              sigma > 0.0f ? expf(-(float)(dx * dx + dy * dy) / (4.0f * sigma * sigma)) : 1.0f;
          const float *src = f + ((size_t)sy * w + sx) * c;
          for (int k = 0; k < c; k++) row[j + k] = g * src[k];
          j += (size_t)c;
        }
      if (normalise) {
        double s = 0.0;
        for (size_t i = 0; i < d; i++) s += (double)row[i] * row[i];
        float inv = s > 0.0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (size_t i = 0; i < d; i++) row[i] *= inv;
      }
    }
  return p;
}

/* For each row of b (nb x d), the row of a (na x d) nearest in L2: argmin |a|^2 - 2 a.b. */
static cn_status nearest(const float *a, size_t na, const float *b, size_t nb, size_t d,
                         int *match) {
  enum { BLOCK = 256 };
  float *norms = malloc(na * sizeof *norms);
  float *dots = malloc((size_t)BLOCK * na * sizeof *dots);
  if (!norms || !dots) {
    free(norms);
    free(dots);
    return cn_fail(CN_ERR_NOMEM, "out of memory for patch matching");
  }
  for (size_t i = 0; i < na; i++) {
    double s = 0.0;
    for (size_t j = 0; j < d; j++) s += (double)a[i * d + j] * a[i * d + j];
    norms[i] = (float)s;
  }
  for (size_t b0 = 0; b0 < nb; b0 += BLOCK) {
    size_t rows = nb - b0 < BLOCK ? nb - b0 : BLOCK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)na, (int)d, 1.0f,
                b + b0 * d, (int)d, a, (int)d, 0.0f, dots, (int)na);
    for (size_t r = 0; r < rows; r++) {
      const float *row = dots + r * na;
      float best = FLT_MAX;
      int arg = 0;
      for (size_t i = 0; i < na; i++) {
        float v = norms[i] - 2.0f * row[i];
        if (v < best) {
          best = v;
          arg = (int)i;
        }
      }
      match[b0 + r] = arg;
    }
  }
  free(norms);
  free(dots);
  return CN_OK;
}

/* Patch voting: every patch that covers p predicts p's value from its own match,
 * target(p) = mean over offsets d of source(match(p + d) - d) (positions clamped to the map), so
 * overlapping patches agree instead of each position copying one centre. */
static void vote(const float *source, const int *match, int h, int w, int c, int r, float *target) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float *t = target + ((size_t)y * w + x) * c;
      memset(t, 0, (size_t)c * sizeof *t);
      int count = 0;
      for (int dy = -r; dy <= r; dy++)
        for (int dx = -r; dx <= r; dx++) {
          int ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
          int q = match[(size_t)ny * w + nx];
          int sy = q / w - dy, sx = q % w - dx;
          sy = sy < 0 ? 0 : sy >= h ? h - 1 : sy;
          sx = sx < 0 ? 0 : sx >= w ? w - 1 : sx;
          const float *s = source + ((size_t)sy * w + sx) * c;
          for (int k = 0; k < c; k++) t[k] += s[k];
          count++;
        }
      for (int k = 0; k < c; k++) t[k] /= (float)count;
    }
}

static cn_status match_into(const float *fa, const float *fa_prime, const float *fb, int h, int w,
                            int c, int r, float sigma, int normalise, float *target) {
  size_t n = (size_t)h * w, d = (size_t)(2 * r + 1) * (2 * r + 1) * c;
  float *pa = patches_of(fa, h, w, c, r, sigma, normalise);
  float *pb = patches_of(fb, h, w, c, r, sigma, normalise);
  int *match = malloc(n * sizeof *match);
  cn_status st = pa && pb && match ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = nearest(pa, n, pb, n, d, match);
  if (st == CN_OK) vote(fa_prime, match, h, w, c, r, target);
  free(pa);
  free(pb);
  free(match);
  return st;
}

/* Cholesky solve of the symmetric positive definite m x m system a z = y for k right-hand sides
 * (y: m x k, overwritten with z). Returns 0 when a is not positive definite. */
static int cholesky_solve(double *a, int m, double *y, int k) {
  for (int j = 0; j < m; j++) {
    double d = a[(size_t)j * m + j];
    for (int i = 0; i < j; i++) d -= a[(size_t)j * m + i] * a[(size_t)j * m + i];
    if (!(d > 0.0)) return 0;
    d = sqrt(d);
    a[(size_t)j * m + j] = d;
    for (int r = j + 1; r < m; r++) {
      double v = a[(size_t)r * m + j];
      for (int i = 0; i < j; i++) v -= a[(size_t)r * m + i] * a[(size_t)j * m + i];
      a[(size_t)r * m + j] = v / d;
    }
  }
  for (int c = 0; c < k; c++) {
    for (int r = 0; r < m; r++) { /* L u = y */
      double v = y[(size_t)r * k + c];
      for (int i = 0; i < r; i++) v -= a[(size_t)r * m + i] * y[(size_t)i * k + c];
      y[(size_t)r * k + c] = v / a[(size_t)r * m + r];
    }
    for (int r = m - 1; r >= 0; r--) { /* L^T z = u */
      double v = y[(size_t)r * k + c];
      for (int i = r + 1; i < m; i++) v -= a[(size_t)i * m + r] * y[(size_t)i * k + c];
      y[(size_t)r * k + c] = v / a[(size_t)r * m + r];
    }
  }
  return 1;
}

/* Rows of (2r+1)^2 x 3 neighbourhoods and a constant 1, in double. */
static double *design(const float *image, int h, int w, int r, size_t *cols) {
  float *p = patches_of(image, h, w, 3, r, 0.0f, 0);
  size_t n = (size_t)h * w, d = (size_t)(2 * r + 1) * (2 * r + 1) * 3;
  double *x = p ? malloc(n * (d + 1) * sizeof *x) : NULL;
  for (size_t i = 0; x && i < n; i++) {
    for (size_t j = 0; j < d; j++) x[i * (d + 1) + j] = p[i * d + j];
    x[i * (d + 1) + d] = 1.0;
  }
  free(p);
  *cols = d + 1;
  return x;
}

/* The linear filter that best maps A's neighbourhoods to A' (least squares), and
 * its outputs on A (la) and B (lb). */
static cn_status linear_filter(const float *a, const float *ap, const float *b, int h, int w, int r,
                               float *la, float *lb) {
  size_t n = (size_t)h * w, m;
  double *xa = design(a, h, w, r, &m), *xb = design(b, h, w, r, &m);
  double *g = malloc(m * m * sizeof *g), *z = malloc(m * 3 * sizeof *z);
  double *y = malloc(n * 3 * sizeof *y), *out = malloc(n * 3 * sizeof *out);
  cn_status st = xa && xb && g && z && y && out ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) {
    for (size_t i = 0; i < n * 3; i++) y[i] = ap[i];
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)m, (int)n, 1.0, xa, (int)m,
                xa, (int)m, 0.0, g, (int)m);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, 3, (int)n, 1.0, xa, (int)m, y, 3,
                0.0, z, 3);
    /* a tiny ridge on the taps (not the constant, whose column is much smaller) */
    double trace = 0.0;
    for (size_t i = 0; i + 1 < m; i++) trace += g[i * m + i];
    for (size_t i = 0; i + 1 < m; i++) g[i * m + i] += 1e-9 * trace / (double)(m - 1);
    if (!cholesky_solve(g, (int)m, z, 3))
      st = cn_fail(CN_ERR_ARG, "A's neighbourhoods do not determine a linear filter");
  }
  for (int pass = 0; st == CN_OK && pass < 2; pass++) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, 3, (int)m, 1.0, pass ? xb : xa,
                (int)m, z, 3, 0.0, out, 3);
    for (size_t i = 0; i < n * 3; i++) (pass ? lb : la)[i] = (float)out[i];
  }
  free(xa);
  free(xb);
  free(g);
  free(z);
  free(y);
  free(out);
  return st;
}

/* The pixel target (RGB, 0..255) into rgb: without the linear part, A' at B's matches in A
 * (voted); with it, L(B) + (A' - L(A)) at the matches: the example pair's linear filter L, and
 * what it does not explain carried over by the analogy. */
static cn_status pixel_target(const cn_analogy_options *o, const float *pa, const float *pap,
                              const float *pb, int h, int w, float *rgb) {
  size_t n = (size_t)h * w * 3;
  int r = o->patch_size / 2;
  float sigma = r > 1 ? (float)r : 1.0f; /* Gaussian weights of sigma = the radius, at least 1 */
  if (o->linear_radius <= 0) return match_into(pa, pap, pb, h, w, 3, r, sigma, 0, rgb);
  float *la = malloc(n * sizeof *la), *lb = malloc(n * sizeof *lb);
  cn_status st = la && lb ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = linear_filter(pa, pap, pb, h, w, o->linear_radius, la, lb);
  if (st == CN_OK) {
    for (size_t i = 0; i < n; i++) la[i] = pap[i] - la[i]; /* the residual */
    st = match_into(pa, la, pb, h, w, 3, r, sigma, 0, rgb);
  }
  for (size_t i = 0; st == CN_OK && i < n; i++) rgb[i] += lb[i];
  free(la);
  free(lb);
  return st;
}

typedef struct analogy_run {
  synth_net net; /* layers 0..n_layers), then the content layer when there is one */
  const cn_analogy_options *o;
  int n_layers, has_content;
  int use[CN_SYNTH_MAX_LAYERS + 1];
  float *target[CN_SYNTH_MAX_LAYERS + 1]; /* per layer; the content layer's is F_c(B) */
  float *pixel_target;                    /* input space */
} analogy_run;

static cn_status analogy_objective(void *ctx, const float *x, float *dx, double *value) {
  analogy_run *s = ctx;
  const cn_analogy_options *o = s->o;
  int any = 0;
  for (int k = 0; k < s->net.n; k++) any |= s->use[k];
  cn_status st = any ? synth_net_forward(&s->net, x) : CN_OK;
  if (st != CN_OK) return st;
  double total = 0.0;
  for (int k = 0; k < s->net.n; k++) {
    if (!s->use[k]) continue;
    synth_layer *l = &s->net.layer[k];
    double w = k < s->n_layers ? o->feature_weight : o->content_weight, sum = 0.0;
    for (size_t i = 0; i < l->numel; i++) {
      double d = (double)l->out[i] - s->target[k][i];
      sum += d * d;
      l->grad[i] = (float)(2.0 * w * d / (double)l->numel);
    }
    total += w * sum / (double)l->numel;
  }
  if (any) {
    st = synth_net_backward(&s->net, s->use, dx);
    if (st != CN_OK) return st;
  } else {
    memset(dx, 0, s->net.numel * sizeof *dx);
  }
  double sum = 0.0;
  for (size_t i = 0; i < s->net.numel; i++) {
    double d = (double)x[i] - s->pixel_target[i];
    sum += d * d;
    dx[i] += (float)(2.0 * o->pixel_weight * d / (double)s->net.numel);
  }
  total += o->pixel_weight * sum / (double)s->net.numel;
  if (o->tv_weight > 0.0)
    total += o->tv_weight * synth_tv(x, s->net.height, s->net.width, o->tv_weight, dx);
  *value = total;
  return CN_OK;
}

static cn_status check_options(const cn_model *model, const cn_analogy_options *o) {
  if (o->n_layers < 0 || o->n_layers > CN_SYNTH_MAX_LAYERS)
    return cn_fail(CN_ERR_ARG, "%s: %d feature layers (0 to %d)", cn_model_name(model), o->n_layers,
                   CN_SYNTH_MAX_LAYERS);
  if (o->linear_radius < 0 || o->linear_radius > 5)
    return cn_fail(CN_ERR_ARG, "cn_image_analogy: the linear filter's radius must be 0 to 5");
  if (o->patch_size < 1 || o->patch_size > 15 || o->patch_size % 2 == 0)
    return cn_fail(CN_ERR_ARG, "cn_image_analogy: the patch size must be odd, 1 to 15");
  if (o->iterations < 0 || o->iterations > 100000 || !(o->pixel_weight >= 0.0) ||
      !(o->feature_weight >= 0.0) || !(o->content_weight >= 0.0) || !(o->tv_weight >= 0.0))
    return cn_fail(CN_ERR_ARG, "cn_image_analogy: an option is out of range");
  return CN_OK;
}

static void image_floats(const cn_image *im, float *rgb) {
  size_t n = (size_t)im->width * im->height * 3;
  for (size_t i = 0; i < n; i++) rgb[i] = im->pixels[i];
}

/* Features of an image into a copy per layer. */
static cn_status features_of(analogy_run *s, const cn_image *im, float *x, float **copy) {
  synth_to_input(&s->net, im, x);
  cn_status st = synth_net_forward(&s->net, x);
  for (int k = 0; st == CN_OK && k < s->net.n; k++) {
    copy[k] = malloc(s->net.layer[k].numel * sizeof(float));
    if (!copy[k]) return cn_fail(CN_ERR_NOMEM, "out of memory");
    memcpy(copy[k], s->net.layer[k].out, s->net.layer[k].numel * sizeof(float));
  }
  return st;
}

static cn_status analogy_targets(analogy_run *s, const cn_image *a, const cn_image *ap,
                                 const cn_image *b, float *x) {
  int h = s->net.height, w = s->net.width;
  size_t n = s->net.numel;
  float *fa[CN_SYNTH_MAX_LAYERS + 1] = {0}, *fap[CN_SYNTH_MAX_LAYERS + 1] = {0};
  float *fb[CN_SYNTH_MAX_LAYERS + 1] = {0};
  float *pa = malloc(n * sizeof *pa), *pap = malloc(n * sizeof *pap), *pb = malloc(n * sizeof *pb);
  float *rgb = malloc(n * sizeof *rgb);
  cn_status st = pa && pap && pb && rgb ? CN_OK : cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) {
    image_floats(a, pa);
    image_floats(ap, pap);
    image_floats(b, pb);
    st = pixel_target(s->o, pa, pap, pb, h, w, rgb);
  }
  if (st == CN_OK) synth_pixels_to_input(&s->net, rgb, s->pixel_target);
  if (st == CN_OK && s->net.n > 0) st = features_of(s, a, x, fa);
  if (st == CN_OK && s->net.n > 0) st = features_of(s, ap, x, fap);
  if (st == CN_OK && s->net.n > 0) st = features_of(s, b, x, fb);
  for (int k = 0; st == CN_OK && k < s->n_layers; k++) {
    const synth_layer *l = &s->net.layer[k];
    st = match_into(fa[k], fap[k], fb[k], l->height, l->width, l->channels, 1, 0.0f, 1,
                    s->target[k]);
  }
  if (st == CN_OK && s->has_content)
    memcpy(s->target[s->n_layers], fb[s->n_layers],
           s->net.layer[s->n_layers].numel * sizeof(float));
  for (int k = 0; k < CN_SYNTH_MAX_LAYERS + 1; k++) {
    free(fa[k]);
    free(fap[k]);
    free(fb[k]);
  }
  free(pa);
  free(pap);
  free(pb);
  free(rgb);
  return st;
}

static cn_status check_pair(const cn_image *a, const cn_image *ap) {
  if (a->width != ap->width || a->height != ap->height)
    return cn_fail(CN_ERR_ARG, "A is %dx%d but A' is %dx%d: they must be the same size", a->width,
                   a->height, ap->width, ap->height);
  return CN_OK;
}

/* Stage k (1-based) of n uses the k deepest feature layers. */
static void stage_layers(analogy_run *s, int stage) {
  for (int k = 0; k < s->n_layers; k++) {
    int deeper = 0;
    for (int j = 0; j < s->n_layers; j++) deeper += s->net.layer[j].node > s->net.layer[k].node;
    s->use[k] = deeper < stage;
  }
  if (s->has_content) s->use[s->n_layers] = s->o->content_weight > 0.0;
}

static cn_status analogy_open(cn_model *model, const cn_analogy_options *o, analogy_run *s) {
  const char *names[CN_SYNTH_MAX_LAYERS + 1];
  for (int k = 0; k < o->n_layers; k++) names[k] = o->layers[k];
  if (s->has_content) names[o->n_layers] = o->content_layer;
  int n = o->n_layers + s->has_content;
  cn_status st = synth_net_open(model, names, n, &s->net);
  for (int k = 0; st == CN_OK && k < n; k++) {
    s->target[k] = malloc(s->net.layer[k].numel * sizeof(float));
    if (!s->target[k]) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  if (st == CN_OK) s->pixel_target = malloc(s->net.numel * sizeof(float));
  if (st == CN_OK && !s->pixel_target) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  return st;
}

cn_status cn_image_analogy(cn_model *model, const cn_image *a, const cn_image *a_prime,
                           const cn_image *b, const cn_analogy_options *o, cn_image *out,
                           cn_synth_result *result) {
  if (!model || !a || !a_prime || !b || !o || !out || !result)
    return cn_fail(CN_ERR_ARG, "cn_image_analogy: NULL");
  memset(result, 0, sizeof *result);
  memset(out, 0, sizeof *out);
  cn_status st = check_options(model, o);
  if (st == CN_OK) st = check_pair(a, a_prime);
  if (st != CN_OK) return st;
  analogy_run s = {.o = o, .n_layers = o->n_layers, .has_content = o->content_layer != NULL};
  st = analogy_open(model, o, &s);
  if (st == CN_OK) st = synth_check_size(&s.net, a, "A");
  if (st == CN_OK) st = synth_check_size(&s.net, b, "B");
  float *x = st == CN_OK ? malloc(s.net.numel * sizeof *x) : NULL;
  if (st == CN_OK && !x) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = analogy_targets(&s, a, a_prime, b, x);
  if (st == CN_OK) memcpy(x, s.pixel_target, s.net.numel * sizeof *x);
  int stages = s.n_layers > 0 ? s.n_layers : 1;
  for (int stage = 1; st == CN_OK && stage <= stages; stage++) {
    stage_layers(&s, stage);
    synth_lbfgs l = {analogy_objective, &s, o->iterations, stage, stages, o->progress, o->user};
    st = synth_minimise(&l, x, s.net.numel, result);
  }
  if (st == CN_OK) st = synth_to_image(&s.net, x, out);
  free(x);
  for (int k = 0; k < CN_SYNTH_MAX_LAYERS + 1; k++) free(s.target[k]);
  free(s.pixel_target);
  synth_net_close(&s.net);
  return st;
}
