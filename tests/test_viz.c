/* convnet/viz.h on a small model built in C: Grad-CAM equals its closed form (the layer before a
 * global average pool and a linear Dense has d logit_c / d A_k = W[k, c] / positions), feature
 * maps equal the outputs of the model cut at the layer, and pictures read back as PNG hold, tile
 * by tile, exactly the levels the legend's scale gives the kernel and feature-map values.
 * Activation maximisation raises its unit (a ReLU'd convolution, a linear one, a Dense element),
 * reports the activation the cut model gives its image, stays in the input range and repeats
 * exactly for a seed on any thread count. Bad layers, units, classes and paths fail with one
 * message and leave no file. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "testlib.h"
#include "viz/draw.h"

enum { SIDE = 8, CLASSES = 3 };

/* input (8,8,3) -> c1 Conv2D(4, 3x3, relu) -> d1 DepthwiseConv2D(3x3, x2, relu) -> c2 Conv2D(5,
 * 3x3, same) -> global average pool -> dense(3) -> softmax. *upto (may be NULL) is the same net
 * cut at `cut`. */
static cn_model *small_model(const char *cut, cn_model **upto) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("small", &net));
  cn_sym x = cn_net_input(net, "image", 3, (int64_t[]){SIDE, SIDE, 3});
  cn_sym c1 =
      cn_net_conv2d(net, x,
                    &(cn_conv2d_options){
                        .name = "c1", .filters = 4, .kernel_size = {3, 3}, .activation = "relu"});
  cn_sym d1 = cn_net_depthwise_conv2d(
      net, c1,
      &(cn_depthwise_conv2d_options){
          .name = "d1", .kernel_size = {3, 3}, .depth_multiplier = 2, .activation = "relu"});
  cn_sym c2 = cn_net_conv2d(
      net, d1,
      &(cn_conv2d_options){.name = "c2", .filters = 5, .kernel_size = {3, 3}, .padding = "same"});
  cn_sym h = cn_net_global_avg_pool2d(net, c2, "pool");
  h = cn_net_dense(net, h, &(cn_dense_options){.name = "dense", .units = CLASSES});
  cn_sym y = cn_net_activation(net, h, "softmax", "predictions");
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &y, 1, &m));
  if (m) CHECK_OK(cn_model_init_weights(m, 7));
  cn_sym at = strcmp(cut, "c1") == 0 ? c1 : strcmp(cut, "d1") == 0 ? d1 : c2;
  if (upto && m) {
    CHECK_OK(cn_net_build(net, &at, 1, upto));
    if (*upto) CHECK_OK(cn_model_copy_weights(*upto, m, NULL));
  }
  cn_net_free(net);
  return m;
}

static float *param(cn_model *m, const char *layer, const char *name, cn_shape *shape) {
  int i = cn_graph_find(m->graph, layer);
  cn_param *p = i >= 0 ? cn_node_find_param(&m->graph->nodes[i], name) : NULL;
  if (p && shape) *shape = p->shape;
  return p ? p->data : NULL;
}

static void random_input(float *x, size_t n) {
  uint32_t s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / (float)(1 << 24) * 2.0f - 1.0f;
  }
}

static const char *tmp_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", cn_test_tmpdir(), name);
  return path;
}

/* ---- numbers ------------------------------------------------------------------------------- */

static void test_gradcam_closed_form(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  float x[SIDE * SIDE * 3];
  random_input(x, sizeof x / sizeof *x);
  cn_feature_maps maps = {0};
  CHECK_OK(cn_feature_maps_compute(m, x, "c2", &maps));
  cn_shape ks;
  const float *w = param(m, "dense", "kernel", &ks); /* (5, 3) */
  for (int c = 0; c < CLASSES && maps.values && w; c++) {
    cn_gradcam cam = {0};
    CHECK_OK(cn_gradcam_compute(m, x, &(cn_gradcam_options){.class_index = c}, &cam));
    if (!cam.map) continue;
    CHECK(cam.height == 4 && cam.width == 4 && cam.class_index == c);
    CHECK(strcmp(cam.layer, "c2") == 0); /* the default: the last spatial layer */
    int positions = maps.height * maps.width;
    for (int p = 0; p < positions; p++) {
      double sum = 0.0;
      for (int k = 0; k < maps.channels; k++)
        sum += w[k * CLASSES + c] / positions * maps.values[p * maps.channels + k];
      CHECK_NEAR(cam.map[p], sum > 0 ? sum : 0, 1e-5);
    }
    cn_gradcam_free(&cam);
  }
  cn_feature_maps_free(&maps);
  cn_model_free(m);
}

static void test_gradcam_top_class_and_probability(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  float x[SIDE * SIDE * 3], probs[CLASSES];
  random_input(x, sizeof x / sizeof *x);
  CHECK_OK(cn_model_forward(m, 1, x, probs));
  int top = 0;
  for (int c = 1; c < CLASSES; c++) top = probs[c] > probs[top] ? c : top;
  cn_gradcam cam = {0};
  CHECK_OK(cn_gradcam_compute(m, x, &(cn_gradcam_options){.class_index = -1, .layer = "d1"}, &cam));
  CHECK(cam.class_index == top && cam.classes == CLASSES);
  CHECK_NEAR(cam.probability, probs[top], 1e-5);
  CHECK(cam.height == 4 && cam.width == 4 && strcmp(cam.layer, "d1") == 0);
  cn_gradcam_free(&cam);
  cn_model_free(m);
}

static void test_feature_maps_equal_the_cut_model(void) {
  const char *layers[] = {"c1", "d1", "c2"};
  for (int i = 0; i < 3; i++) {
    cn_model *upto = NULL, *m = small_model(layers[i], &upto);
    float x[SIDE * SIDE * 3], want[6 * 6 * 8];
    random_input(x, sizeof x / sizeof *x);
    cn_feature_maps maps = {0};
    CHECK_OK(cn_feature_maps_compute(m, x, layers[i], &maps));
    cn_shape s = upto ? cn_model_output_shape(upto) : (cn_shape){0};
    if (upto && maps.values) {
      CHECK_OK(cn_model_forward(upto, 1, x, want));
      CHECK(s.dim[0] == maps.height && s.dim[1] == maps.width && s.dim[2] == maps.channels);
      CHECK(cn_test_max_abs_diff(maps.values, want, (size_t)cn_shape_numel(&s)) < 1e-5);
    }
    cn_feature_maps_free(&maps);
    cn_model_free(upto);
    cn_model_free(m);
  }
}

/* ---- pictures read back -------------------------------------------------------------------- */

/* The legend's rule, written out again: signed 128 + 127 v / m, else 255 v / m, to nearest. */
static int expected_level(double v, double m, int is_signed) {
  double level =
      m > 0 ? (is_signed ? 128.0 + 127.0 * v / m : 255.0 * v / m) : (is_signed ? 128 : 0);
  level = floor(level + 0.5);
  return level < 0 ? 0 : level > 255 ? 255 : (int)level;
}

/* The picture's pixel at the centre of source pixel (y, x) of the tile at (row, col). */
static const uint8_t *tile_pixel(const cn_image *img, const viz_grid *g, int row, int col, int y,
                                 int x) {
  int ox, oy;
  viz_tile_origin(g, row, col, &ox, &oy);
  int px = ox + x * g->zoom + g->zoom / 2, py = oy + y * g->zoom + g->zoom / 2;
  return img->pixels + ((size_t)py * img->width + px) * 3;
}

static int load_checked(const char *path, const viz_grid *g, cn_image *img) {
  if (cn_image_load(path, img) != CN_OK) {
    CHECK_OK(cn_image_load(path, img));
    return 0;
  }
  CHECK(img->width == g->width && img->height == g->height);
  return img->width == g->width && img->height == g->height;
}

static double max_abs(const float *v, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
  return m;
}

/* c1: kernel (3, 3, 3, 4), one colour tile per kernel, R G B = input channels 0 1 2. */
static void check_colour_kernels(cn_model *m, cn_viz_scale scale) {
  cn_shape ks;
  const float *w = param(m, "c1", "kernel", &ks);
  cn_viz_grid_options o = {.scale = scale};
  viz_grid g;
  const char *path = tmp_path("c1.png");
  CHECK_OK(cn_viz_filters(m, "c1", &o, path));
  CHECK_OK(viz_filters_layout(m, "c1", &o, &g));
  cn_image img = {0};
  if (!w || !load_checked(path, &g, &img)) return;
  int bad = 0;
  for (int f = 0; f < 4; f++) {
    double mx = 0;
    for (int i = 0; i < 27; i++) mx = fmax(mx, fabs(w[i * 4 + f]));
    if (scale == CN_VIZ_SCALE_SHARED) mx = max_abs(w, 27 * 4);
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 3; x++) {
        const uint8_t *p = tile_pixel(&img, &g, f / g.cols, f % g.cols, y, x);
        for (int ch = 0; ch < 3; ch++)
          bad += p[ch] != expected_level(w[((y * 3 + x) * 3 + ch) * 4 + f], mx, 1);
      }
  }
  CHECK(bad == 0);
  cn_image_free(&img);
}

/* c2: kernel (3, 3, 8, 5), row f, column c in grey. */
static void check_grey_kernels(cn_model *m, cn_viz_scale scale) {
  cn_shape ks;
  const float *w = param(m, "c2", "kernel", &ks);
  cn_viz_grid_options o = {.scale = scale, .max_channels = 6};
  viz_grid g;
  const char *path = tmp_path("c2.png");
  CHECK_OK(cn_viz_filters(m, "c2", &o, path));
  CHECK_OK(viz_filters_layout(m, "c2", &o, &g));
  cn_image img = {0};
  if (!w || !load_checked(path, &g, &img)) return;
  CHECK(g.rows == 5 && g.cols == 6);
  int bad = 0, varied = 0;
  for (int f = 0; f < 5; f++) {
    double mx = 0;
    for (int i = 0; i < 9 * 8; i++) mx = fmax(mx, fabs(w[i * 5 + f]));
    if (scale == CN_VIZ_SCALE_SHARED) mx = max_abs(w, 9 * 8 * 5);
    for (int c = 0; c < 6; c++)
      for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++) {
          const uint8_t *p = tile_pixel(&img, &g, f, c, y, x);
          int want = expected_level(w[((y * 3 + x) * 8 + c) * 5 + f], mx, 1);
          bad += p[0] != want || p[1] != want || p[2] != want;
          varied += want != 128;
        }
  }
  CHECK(bad == 0 && varied > 5 * 6 * 9 / 2); /* the levels tested are not all zero's */
  cn_image_free(&img);
}

/* d1: depthwise kernel (3, 3, 4, 2); kernel f = c * 2 + m, one grey tile each. */
static void check_depthwise_kernels(cn_model *m) {
  cn_shape ks;
  const float *w = param(m, "d1", "depthwise_kernel", &ks);
  viz_grid g;
  const char *path = tmp_path("d1.png");
  CHECK_OK(cn_viz_filters(m, "d1", NULL, path));
  CHECK_OK(viz_filters_layout(m, "d1", NULL, &g));
  cn_image img = {0};
  if (!w || !load_checked(path, &g, &img)) return;
  double mx = max_abs(w, 9 * 8);
  int bad = 0;
  for (int f = 0; f < 8; f++)
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 3; x++)
        bad += tile_pixel(&img, &g, f / g.cols, f % g.cols, y, x)[0] !=
               expected_level(w[(y * 3 + x) * 8 + f], mx, 1);
  CHECK(bad == 0);
  cn_image_free(&img);
}

static void test_filter_pictures(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  check_colour_kernels(m, CN_VIZ_SCALE_SHARED);
  check_colour_kernels(m, CN_VIZ_SCALE_PER_TILE);
  check_grey_kernels(m, CN_VIZ_SCALE_SHARED);
  check_grey_kernels(m, CN_VIZ_SCALE_PER_TILE);
  check_depthwise_kernels(m);
  cn_model_free(m);
}

/* Feature maps of c1 (relu: unsigned) and c2 (linear: signed). */
static void check_activation_picture(cn_model *m, const char *layer, cn_viz_scale scale) {
  float x[SIDE * SIDE * 3];
  random_input(x, sizeof x / sizeof *x);
  cn_feature_maps maps = {0};
  CHECK_OK(cn_feature_maps_compute(m, x, layer, &maps));
  cn_viz_grid_options o = {.scale = scale, .title = "random input"};
  viz_grid g;
  const char *path = tmp_path("maps.png");
  CHECK_OK(cn_viz_activations(&maps, &o, path));
  CHECK_OK(viz_activations_layout(&maps, &o, &g));
  cn_image img = {0};
  size_t n = (size_t)maps.height * maps.width * maps.channels;
  if (!maps.values || !load_checked(path, &g, &img)) return;
  int is_signed = 0, bad = 0;
  for (size_t i = 0; i < n; i++) is_signed |= maps.values[i] < 0;
  for (int c = 0; c < maps.channels; c++) {
    double mx = 0;
    for (int p = 0; p < maps.height * maps.width; p++)
      mx = fmax(mx, fabs(maps.values[p * maps.channels + c]));
    if (scale == CN_VIZ_SCALE_SHARED) mx = max_abs(maps.values, n);
    for (int y = 0; y < maps.height; y++)
      for (int xx = 0; xx < maps.width; xx++) {
        float v = maps.values[(y * maps.width + xx) * maps.channels + c];
        bad += tile_pixel(&img, &g, c / g.cols, c % g.cols, y, xx)[1] !=
               expected_level(v, mx, is_signed);
      }
  }
  CHECK(bad == 0);
  CHECK(is_signed == (strcmp(layer, "c2") == 0));
  cn_image_free(&img);
  cn_feature_maps_free(&maps);
}

static void test_activation_pictures(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  check_activation_picture(m, "c1", CN_VIZ_SCALE_SHARED);
  check_activation_picture(m, "c1", CN_VIZ_SCALE_PER_TILE);
  check_activation_picture(m, "c2", CN_VIZ_SCALE_SHARED);
  check_activation_picture(m, "c2", CN_VIZ_SCALE_PER_TILE);
  cn_model_free(m);
}

static void test_gradcam_picture(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  float x[SIDE * SIDE * 3];
  random_input(x, sizeof x / sizeof *x);
  cn_gradcam cam = {0};
  CHECK_OK(cn_gradcam_compute(m, x, NULL, &cam));
  cn_image photo = {.width = 40, .height = 30, .pixels = calloc(40 * 30, 3)};
  const char *path = tmp_path("cam.png");
  if (cam.map && photo.pixels) {
    CHECK_OK(cn_viz_gradcam(&photo, &cam, "class 1: 50.0%", path));
    cn_image back = {0};
    CHECK_OK(cn_image_load(path, &back));
    CHECK(back.width == 40 && back.height == 30);
    cn_image_free(&back);
  }
  free(photo.pixels);
  cn_gradcam_free(&cam);
  cn_model_free(m);
}

/* ---- activation maximisation --------------------------------------------------------------- */

/* The mean of channel unit of layer's output for image, from the model cut there. */
static double unit_mean(cn_model *m, const char *layer, int unit, const float *image) {
  cn_feature_maps maps = {0};
  CHECK_OK(cn_feature_maps_compute(m, image, layer, &maps));
  double sum = 0.0;
  size_t positions = (size_t)maps.height * maps.width;
  for (size_t p = 0; maps.values && p < positions; p++)
    sum += maps.values[p * (size_t)maps.channels + (size_t)unit];
  cn_feature_maps_free(&maps);
  return positions ? sum / (double)positions : NAN;
}

static void check_ascent(cn_model *m, const char *layer, int unit) {
  cn_unit_options o = cn_unit_options_default();
  o.layer = layer;
  o.unit = unit;
  o.steps = 60;
  o.jitter = 0; /* an 8 x 8 image: a shift is a large change */
  float image[SIDE * SIDE * 3], again[SIDE * SIDE * 3];
  cn_unit_result r, r2;
  CHECK_OK(cn_activation_maximise(m, &o, image, &r));
  /* A clear rise (the small model's activations are of order 0.01 to 1): at least doubled. */
  CHECK(r.end > r.start + 0.005f && r.end > 2.0f * fabsf(r.start));
  CHECK(r.units > unit && r.unit == unit && r.steps == 60 && strcmp(r.layer, layer) == 0);
  /* The small model's preprocessing is x / 255: the valid range is 0..1. */
  int in_range = 1;
  for (size_t i = 0; i < SIDE * SIDE * 3; i++) in_range &= image[i] >= 0.0f && image[i] <= 1.0f;
  CHECK(in_range);
  if (strcmp(layer, "dense") != 0) CHECK_NEAR(unit_mean(m, layer, unit, image), r.end, 1e-4);
  int threads = cn_get_threads();
  cn_set_threads(1);
  CHECK_OK(cn_activation_maximise(m, &o, again, &r2));
  cn_set_threads(threads);
  CHECK(memcmp(image, again, sizeof image) == 0 && r2.end == r.end);
  o.seed = 2;
  CHECK_OK(cn_activation_maximise(m, &o, again, &r2));
  CHECK(memcmp(image, again, sizeof image) != 0);
}

static void test_activation_maximisation(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  check_ascent(m, "c1", 3);    /* after a ReLU (units 0 to 2 are 0 on grey: no gradient) */
  check_ascent(m, "c2", 3);    /* linear, the last convolution */
  check_ascent(m, "dense", 1); /* a vector layer: element 1 */
  cn_model_free(m);
}

static void test_unit_picture(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  cn_unit_options o = cn_unit_options_default();
  o.layer = "c2";
  o.steps = 10;
  float image[SIDE * SIDE * 3];
  cn_unit_result r;
  CHECK_OK(cn_activation_maximise(m, &o, image, &r));
  const char *path = tmp_path("unit.png");
  CHECK_OK(cn_viz_unit(m, image, &r, path));
  cn_image img = {0};
  CHECK_OK(cn_image_load(path, &img));
  CHECK(img.width >= 2 * SIDE && img.height >= 2 * SIDE);
  cn_image_free(&img);
  float other[SIDE * SIDE * 3];
  cn_unit_result rs[2] = {r, r};
  o.unit = 4;
  CHECK_OK(cn_activation_maximise(m, &o, other, &rs[1]));
  const float *images[2] = {image, other};
  const char *grid = tmp_path("units.png");
  CHECK_OK(cn_viz_units(m, images, rs, 2, grid));
  cn_image two = {0};
  CHECK_OK(cn_image_load(grid, &two));
  CHECK(two.width > 2 * SIDE); /* two tiles side by side */
  cn_image_free(&two);
  cn_model_free(m);
}

/* ---- bad input ----------------------------------------------------------------------------- */

static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

static void expect_failure(cn_status st, cn_status want, const char *words) {
  CHECK(st == want);
  CHECK(strstr(cn_last_error(), words) != NULL && !strchr(cn_last_error(), '\n'));
  if (!strstr(cn_last_error(), words)) fprintf(stderr, "  message: %s\n", cn_last_error());
}

static void test_bad_input(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  float x[SIDE * SIDE * 3] = {0};
  cn_gradcam cam = {0};
  cn_feature_maps maps = {0};
  expect_failure(cn_viz_filters(m, "dense", NULL, tmp_path("x.png")), CN_ERR_ARG,
                 "dense (Dense) is not a convolution");
  expect_failure(cn_viz_filters(m, "nope", NULL, tmp_path("x.png")), CN_ERR_ARG,
                 "no layer named \"nope\"");
  expect_failure(cn_gradcam_compute(m, x, &(cn_gradcam_options){.class_index = 3}, &cam),
                 CN_ERR_ARG, "class 3 is out of range: the model has 3 classes");
  CHECK(cam.map == NULL);
  expect_failure(cn_gradcam_compute(m, x, &(cn_gradcam_options){.layer = "pool"}, &cam), CN_ERR_ARG,
                 "layer pool (GlobalAveragePooling2D) has no spatial output");
  expect_failure(cn_feature_maps_compute(m, x, "missing", &maps), CN_ERR_ARG, "no layer named");
  int before = dir_entries(cn_test_tmpdir());
  expect_failure(cn_viz_filters(m, "c1", NULL, "/nonexistent-dir/f.png"), CN_ERR_IO,
                 "/nonexistent-dir/f.png");
  char sub[512];
  snprintf(sub, sizeof sub, "%s/a-directory", cn_test_tmpdir());
  CHECK(mkdir(sub, 0755) == 0);
  expect_failure(cn_viz_filters(m, "c1", NULL, sub), CN_ERR_IO, "a-directory");
  CHECK(dir_entries(cn_test_tmpdir()) == before + 1); /* the directory only: no temporary file */
  cn_model_free(m);
}

static void test_unit_bad_input(void) {
  cn_model *m = small_model("c2", NULL);
  if (!m) return;
  float image[SIDE * SIDE * 3];
  for (size_t i = 0; i < SIDE * SIDE * 3; i++) image[i] = -7.0f;
  cn_unit_result r;
  cn_unit_options o = cn_unit_options_default();
  o.layer = "nope";
  expect_failure(cn_activation_maximise(m, &o, image, &r), CN_ERR_ARG, "no layer named \"nope\"");
  o.layer = "c2";
  o.unit = 5;
  expect_failure(cn_activation_maximise(m, &o, image, &r), CN_ERR_ARG,
                 "unit 5 is out of range: layer c2 has 5 units (0 to 4)");
  o.unit = -1;
  expect_failure(cn_activation_maximise(m, &o, image, &r), CN_ERR_ARG, "unit -1 is out of range");
  o.unit = 0;
  o.layer = "image";
  expect_failure(cn_activation_maximise(m, &o, image, &r), CN_ERR_ARG, "layer image is the input");
  o.layer = NULL;
  expect_failure(cn_activation_maximise(m, &o, image, &r), CN_ERR_ARG, "no layer given");
  CHECK(image[0] == -7.0f && image[SIDE * SIDE * 3 - 1] == -7.0f); /* untouched on failure */
  o.layer = "c2";
  o.steps = 1;
  CHECK_OK(cn_activation_maximise(m, &o, image, &r));
  int before = dir_entries(cn_test_tmpdir());
  expect_failure(cn_viz_unit(m, image, &r, "/nonexistent-dir/u.png"), CN_ERR_IO,
                 "/nonexistent-dir/u.png");
  CHECK(dir_entries(cn_test_tmpdir()) == before);
  cn_model_free(m);
}

/* ---- scatter plots ------------------------------------------------------------------------- */

/* The first three colours of src/viz/scatter.c's palette, as 8-bit levels. */
static const double scatter_colour[3][3] = {
    {0.12, 0.38, 0.71}, {0.95, 0.50, 0.05}, {0.17, 0.63, 0.17}};

static int is_colour(const uint8_t *p, int k) {
  for (int c = 0; c < 3; c++)
    if (fabs(p[c] - 255.0 * scatter_colour[k][c]) > 2.5) return 0;
  return 1;
}

/* The centre of the pixels of class k's colour in columns [from, to); count into *n. */
static void colour_centre(const cn_image *img, int k, int from, int to, double *x, double *y,
                          int *n) {
  *x = *y = 0;
  *n = 0;
  for (int r = 0; r < img->height; r++)
    for (int c = from; c < to; c++)
      if (is_colour(img->pixels + 3 * ((size_t)r * img->width + c), k)) *x += c, *y += r, ++*n;
  if (*n) *x /= *n, *y /= *n;
}

/* Three points of three classes land where their coordinates say (x grows right, y up), in
 * their class's colour, each class with a legend swatch at the right; bad classes and paths fail
 * naming them and leave no file. */
static void test_scatter_picture(void) {
  const float xy[] = {0, 0, 1, 0, 0, 1, NAN, 0};
  const int classes[] = {0, 1, 2, 1};
  const char *names[] = {"a", "b", "c"};
  cn_viz_scatter_options o = {.title = "three points",
                              .x_label = "x",
                              .y_label = "y",
                              .class_names = names,
                              .width = 400,
                              .height = 300,
                              .point_radius = 6};
  const char *path = tmp_path("scatter.png");
  CHECK_OK(cn_viz_scatter(xy, classes, 4, &o, path));
  cn_image img = {0};
  CHECK_OK(cn_image_load(path, &img));
  if (!img.pixels) return;
  CHECK(img.width == 400 && img.height == 300);
  int plot_right = img.width - 60; /* the legend starts some 55 pixels from the right */
  double x[3], y[3];
  int n[3];
  for (int k = 0; k < 3; k++) {
    colour_centre(&img, k, 0, plot_right, &x[k], &y[k], &n[k]);
    CHECK(n[k] > 50); /* a disc of radius 6 */
    double lx, ly;
    int ln;
    colour_centre(&img, k, plot_right, img.width, &lx, &ly, &ln);
    CHECK(ln >= 64); /* the 10 x 10 swatch */
  }
  CHECK(x[1] > x[0] + 100 && fabs(y[1] - y[0]) < 1.0);
  CHECK(y[2] < y[0] - 100 && fabs(x[2] - x[0]) < 1.0);
  cn_image_free(&img);

  int before = dir_entries(cn_test_tmpdir());
  o.classes = 2;
  expect_failure(cn_viz_scatter(xy, classes, 4, &o, tmp_path("bad.png")), CN_ERR_ARG,
                 "point 2 has class 2, outside 0..1");
  o.classes = 0;
  expect_failure(cn_viz_scatter(xy, (int[]){0, -1, 0, 0}, 4, &o, tmp_path("bad.png")), CN_ERR_ARG,
                 "point 1 has class -1");
  expect_failure(
      cn_viz_scatter(xy, classes, 4, &(cn_viz_scatter_options){.width = 10}, tmp_path("bad.png")),
      CN_ERR_ARG, "a picture of 10 x 700 pixels");
  expect_failure(cn_viz_scatter(xy, classes, 4, NULL, "/nonexistent-dir/s.png"), CN_ERR_IO,
                 "/nonexistent-dir/s.png");
  CHECK(dir_entries(cn_test_tmpdir()) == before);
  CHECK_OK(cn_viz_scatter(NULL, NULL, 0, NULL, tmp_path("empty.png"))); /* no points: axes only */
}

int main(void) {
  test_gradcam_closed_form();
  test_gradcam_top_class_and_probability();
  test_feature_maps_equal_the_cut_model();
  test_filter_pictures();
  test_activation_pictures();
  test_gradcam_picture();
  test_bad_input();
  test_activation_maximisation();
  test_unit_picture();
  test_unit_bad_input();
  test_scatter_picture();
  return cn_test_finish();
}
