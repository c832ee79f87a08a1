/* Augmentation: cn_transform's exact cases (identity, flips, crops, fills), its refusals, the
 * ranges cn_augment_draw keeps to, and that augmenting a batch gives the same bytes with one
 * thread and with two. Agreement with Keras, OpenCV and PIL is tests/oracle/test_augment_keras.py.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "testlib.h"

enum { W = 23, H = 17 };

static cn_image pattern(int w, int h, int tag) {
  cn_image img = {w, h, malloc((size_t)w * h * 3)};
  for (int i = 0; img.pixels && i < w * h * 3; i++)
    img.pixels[i] = (uint8_t)((i * 37 + tag * 101 + (i / (3 * w)) * 11) & 255);
  return img;
}

static const uint8_t *px(const cn_image *img, int x, int y) {
  return img->pixels + ((size_t)y * img->width + x) * 3;
}

static void test_identity_and_flips(const cn_image *src) {
  cn_transform t = cn_transform_identity();
  cn_image out = {0};
  CHECK_OK(cn_image_transform(src, &t, &out));
  CHECK(out.width == W && out.height == H && memcmp(out.pixels, src->pixels, W * H * 3) == 0);
  cn_image_free(&out);
  t.flip_horizontal = t.flip_vertical = 1;
  CHECK_OK(cn_image_transform(src, &t, &out));
  int mirrored = out.pixels != NULL;
  for (int y = 0; mirrored && y < H; y++)
    for (int x = 0; x < W; x++)
      mirrored &= memcmp(px(&out, x, y), px(src, W - 1 - x, H - 1 - y), 3) == 0;
  CHECK(mirrored);
  cn_image_free(&out);
  /* a whole-pixel shift moves pixels exactly; the constant fill shows beyond the edge */
  t = cn_transform_identity();
  t.tx = 3, t.ty = -2, t.fill = CN_FILL_CONSTANT, t.cval = 7;
  CHECK_OK(cn_image_transform(src, &t, &out));
  if (out.pixels) {
    CHECK(memcmp(px(&out, 0, 2), px(src, 3, 0), 3) == 0);
    CHECK(memcmp(px(&out, W - 4, H - 1), px(src, W - 1, H - 3), 3) == 0);
    CHECK(px(&out, W - 1, 5)[1] == 7 && px(&out, 4, 0)[0] == 7 && px(&out, 4, 1)[2] == 7);
  }
  cn_image_free(&out);
}

static void test_crop(const cn_image *src) {
  cn_transform t = cn_transform_identity();
  t.crop_x = 5, t.crop_y = 4, t.crop_width = 9, t.crop_height = 6;
  cn_image out = {0};
  CHECK_OK(cn_image_transform(src, &t, &out));
  CHECK(out.width == 9 && out.height == 6);
  if (out.pixels) CHECK(memcmp(px(&out, 0, 0), px(src, 5, 4), 3) == 0);
  if (out.pixels) CHECK(memcmp(px(&out, 8, 5), px(src, 13, 9), 3) == 0);
  cn_image_free(&out);
  t.out_width = 30, t.out_height = 12;
  CHECK_OK(cn_image_transform(src, &t, &out));
  CHECK(out.width == 30 && out.height == 12);
  cn_image_free(&out);
}

static void test_refusals(const cn_image *src) {
  cn_image out = {0};
  cn_transform t = cn_transform_identity();
  t.crop_x = 20, t.crop_width = 4, t.crop_height = 4; /* past the right edge */
  CHECK(cn_image_transform(src, &t, &out) == CN_ERR_ARG && !out.pixels);
  t = cn_transform_identity();
  t.theta = NAN;
  CHECK(cn_image_transform(src, &t, &out) == CN_ERR_ARG);
  t = cn_transform_identity();
  t.zx = 0;
  CHECK(cn_transform_check(&t, W, H) == CN_ERR_ARG);
  t = cn_transform_identity();
  t.blur_sigma = 1000;
  CHECK(cn_transform_check(&t, W, H) == CN_ERR_ARG);
  t = cn_transform_identity();
  t.fill = (cn_fill)9;
  CHECK(cn_transform_check(&t, W, H) == CN_ERR_ARG);
  cn_augment a = {.hue_range = 0.7f};
  CHECK(cn_augment_check(&a) == CN_ERR_ARG);
  a = (cn_augment){.blur_sigma = {2, 1}};
  CHECK(cn_augment_check(&a) == CN_ERR_ARG);
  a = (cn_augment){.crop_width = 5};
  CHECK(cn_augment_check(&a) == CN_ERR_ARG);
  a = (cn_augment){.crop_ratio = {1, 2}};
  CHECK(cn_augment_check(&a) == CN_ERR_ARG);
  a = (cn_augment){.fill_mode = CN_FILL_CONSTANT, .cval = 300};
  CHECK(cn_augment_check(&a) == CN_ERR_ARG);
  cn_fill f;
  CHECK(cn_fill_parse("mirror", &f) == CN_ERR_ARG);
  CHECK_OK(cn_fill_parse("reflect", &f));
  CHECK(f == CN_FILL_REFLECT && strcmp(cn_fill_name(CN_FILL_CONSTANT), "constant") == 0);
}

/* Extreme but valid parameters on tiny images: every fill mode, far shifts, huge and tiny zooms,
 * a blur kernel far wider than the image. Nothing to compare; it must not read out of bounds
 * (run under the sanitizers) and must keep the size. */
static void test_extremes(void) {
  const int sizes[3][2] = {{1, 1}, {2, 1}, {1, 3}};
  int ok = 1;
  for (int s = 0; s < 3; s++) {
    cn_image img = pattern(sizes[s][0], sizes[s][1], s);
    for (int fill = 0; fill < CN_FILL_COUNT; fill++) {
      cn_transform t = cn_transform_identity();
      t.fill = (cn_fill)fill, t.theta = 3599, t.tx = -1e7, t.ty = 9.99e6, t.shear = 89;
      t.zx = 100, t.zy = 0.01, t.blur_sigma = 25, t.hue = -1, t.contrast = 100;
      t.channel_shift[0] = 255, t.channel_shift[2] = -255, t.brightness = 100;
      cn_image out = {0};
      ok &= cn_image_transform(&img, &t, &out) == CN_OK && out.width == img.width &&
            out.height == img.height;
      cn_image_free(&out);
    }
    cn_image_free(&img);
  }
  CHECK(ok);
}

/* A blur sigma so small that sigma * sigma underflows to 0 (found by fuzz/fuzz_transform under
 * UBSan: the centre weight was exp(-0 / 0) = NaN, and NaN became a grey level). The limit of a
 * vanishing sigma is no blur: the image must come back unchanged. */
static void test_tiny_blur(const cn_image *src) {
  const double sigmas[] = {1e-200, 5e-324, 1e-160};
  for (size_t i = 0; i < sizeof sigmas / sizeof *sigmas; i++) {
    cn_transform t = cn_transform_identity();
    t.blur_sigma = sigmas[i];
    cn_image out = {0};
    CHECK_OK(cn_image_transform(src, &t, &out));
    CHECK(out.pixels && out.width == src->width && out.height == src->height &&
          memcmp(out.pixels, src->pixels, (size_t)src->width * src->height * 3) == 0);
    cn_image_free(&out);
  }
}

static cn_augment every_option(void) {
  cn_augment a = {.horizontal_flip = 1,
                  .vertical_flip = 1,
                  .rotation_range = 40,
                  .width_shift_range = 0.2f,
                  .height_shift_range = 0.1f,
                  .zoom_range = 0.3f,
                  .shear_range = 15,
                  .brightness_range = {0.6f, 1.4f},
                  .channel_shift_range = 20,
                  .tint_range = 15,
                  .hue_range = 0.2f,
                  .contrast_range = 0.4f,
                  .blur_sigma = {0.5f, 2},
                  .crop_width = 12,
                  .crop_height = 10,
                  .crop_scale = {0.3f, 0.9f},
                  .fill_mode = CN_FILL_REFLECT};
  return a;
}

static void test_draw_ranges(void) {
  cn_augment a = every_option();
  int in_range = 1, boxes_inside = 1, flips = 0, changed = 0;
  for (uint64_t seed = 0; seed < 500; seed++) {
    cn_transform t;
    CHECK_OK(cn_augment_draw(&a, W, H, seed, &t));
    in_range &= fabs(t.theta) <= 40 && fabs(t.tx) <= 0.2 * 12 && fabs(t.ty) <= 0.1 * 10 &&
                fabs(t.shear) <= 15 && t.zx >= 0.7 && t.zx <= 1.3 && t.zy >= 0.7 && t.zy <= 1.3;
    in_range &= t.brightness >= 0.6 && t.brightness <= 1.4 && fabs(t.hue) <= 0.2 &&
                t.contrast >= 0.6 && t.contrast <= 1.4 && t.blur_sigma >= 0.5 &&
                t.blur_sigma <= 2 && fabs(t.channel_shift[0]) <= 35 && t.out_width == 12;
    boxes_inside &= cn_transform_check(&t, W, H) == CN_OK;
    flips += t.flip_horizontal + t.flip_vertical;
    changed += t.channel_shift[0] != t.channel_shift[1];
  }
  CHECK(in_range && boxes_inside);
  CHECK(flips > 300 && flips < 700 && changed > 400); /* coin flips; tint per channel */
  /* turning one option on leaves the draws of the others as they were */
  cn_augment less = a;
  less.hue_range = 0, less.blur_sigma[0] = less.blur_sigma[1] = 0;
  cn_transform t1, t2;
  CHECK_OK(cn_augment_draw(&a, W, H, 77, &t1));
  CHECK_OK(cn_augment_draw(&less, W, H, 77, &t2));
  CHECK(t1.theta == t2.theta && t1.crop_x == t2.crop_x && t1.contrast == t2.contrast);
  /* a fixed crop larger than the image: Keras' centred fallback, resized to the crop size */
  cn_augment big = {.crop_width = 40, .crop_height = 30};
  CHECK_OK(cn_augment_draw(&big, W, H, 1, &t1));
  CHECK(t1.out_width == 40 && t1.out_height == 30 && cn_transform_check(&t1, W, H) == CN_OK);
}

/* ---- one thread or two: the same bytes ---------------------------------------------------- */

enum { BATCH = 8 };

typedef struct job {
  const cn_image *images;
  cn_image *out;
  int first, step;
  cn_status status;
} job;

static void *augment_some(void *arg) {
  job *j = arg;
  cn_augment a = every_option();
  for (int i = j->first; i < BATCH && j->status == CN_OK; i += j->step)
    j->status = cn_image_augment(&j->images[i], &a, 1000 + (uint64_t)i, &j->out[i]);
  return NULL;
}

static int augment_batch(const cn_image *images, cn_image *out, int threads) {
  pthread_t tid[2];
  job jobs[2];
  for (int k = 0; k < threads; k++) {
    jobs[k] = (job){images, out, k, threads, CN_OK};
    if (pthread_create(&tid[k], NULL, augment_some, &jobs[k]) != 0) return 0;
  }
  int ok = 1;
  for (int k = 0; k < threads; k++) pthread_join(tid[k], NULL), ok &= jobs[k].status == CN_OK;
  return ok;
}

static void test_threads(void) {
  cn_image images[BATCH], one[BATCH] = {{0}}, two[BATCH] = {{0}};
  for (int i = 0; i < BATCH; i++) images[i] = pattern(W + i, H + 2 * i, i);
  CHECK(augment_batch(images, one, 1));
  CHECK(augment_batch(images, two, 2));
  int same = 1;
  for (int i = 0; i < BATCH; i++) {
    same &= one[i].pixels && two[i].pixels && one[i].width == two[i].width &&
            one[i].height == two[i].height &&
            memcmp(one[i].pixels, two[i].pixels, (size_t)one[i].width * one[i].height * 3) == 0;
    cn_image_free(&images[i]), cn_image_free(&one[i]), cn_image_free(&two[i]);
  }
  CHECK(same);
}

int main(void) {
  cn_image src = pattern(W, H, 0);
  test_identity_and_flips(&src);
  test_crop(&src);
  test_refusals(&src);
  test_tiny_blur(&src);
  cn_image_free(&src);
  test_extremes();
  test_draw_ranges();
  test_threads();
  return cn_test_finish();
}
