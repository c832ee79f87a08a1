/* The image module: real photos decode to their sizes, EXIF rotation, resize/crop/prepare
 * basics, and every kind of bad input ends in a clean error that names the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/image.h"
#include "testlib.h"

typedef struct photo {
  const char *path;
  int width, height;
} photo;

static const photo photos[] = {
    {"images/coral_cat_720p.jpg", 1280, 720},
    {"images/coral_hot_dog.jpg", 512, 384},
    {"images/coral_mnist_nine.bmp", 28, 28},
    {"images/coral_resized_cat.bmp", 224, 224},
    {"images/darknet_dog.jpg", 768, 576},
    {"images/darknet_eagle.jpg", 773, 512},
    {"images/darknet_horses.jpg", 773, 512},
    {"images/skimage_chelsea.png", 451, 300},
    {"images/skimage_coffee.png", 600, 400},
    {"images/ppm224/chelsea_224.ppm", 224, 224},
    {"images/ppm224/coffee_224.ppm", 224, 224},
    {"images/ppm224/dog_224.ppm", 224, 224},
    {"images/ppm224/eagle_224.ppm", 224, 224},
    {"images/ppm224/hot_dog_224.ppm", 224, 224},
    {"images/ppm224/resized_cat_224.ppm", 224, 224},
};

static void test_photos(void) {
  int found = 0;
  for (size_t i = 0; i < sizeof photos / sizeof photos[0]; i++) {
    const char *path = cn_test_data(photos[i].path);
    if (!path) {
      printf("note: %s absent, not checked\n", photos[i].path);
      continue;
    }
    found++;
    cn_image img;
    CHECK_OK(cn_image_load(path, &img));
    CHECK(img.width == photos[i].width && img.height == photos[i].height);
    cn_image_free(&img);
  }
  if (!found) cn_test_skip("no photos under ../shared/data/images");
}

/* n02951585_can_opener.JPEG is stored 392x294 with EXIF orientation 6 (rotate 90 clockwise). */
static void test_exif_rotation(void) {
  const char *path = cn_test_data("imagenet-samples/n02951585_can_opener.JPEG");
  if (!path) {
    printf("note: can opener sample absent, EXIF rotation not checked\n");
    return;
  }
  cn_image img;
  CHECK_OK(cn_image_load(path, &img));
  CHECK(img.width == 294 && img.height == 392);
  cn_image_free(&img);
}

static uint8_t *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *size = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc(*size);
  if (data && fread(data, 1, *size, f) != *size) *size = 0;
  fclose(f);
  return data;
}

static const char *write_temp(const char *name, const void *data, size_t size) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", cn_test_tmpdir(), name);
  FILE *f = fopen(path, "wb");
  if (f) {
    fwrite(data, 1, size, f);
    fclose(f);
  }
  return path;
}

/* Loading must fail with `want` (or any error when want == CN_OK) and name the file. */
static void expect_refused(const char *name, const void *data, size_t size, cn_status want) {
  const char *path = write_temp(name, data, size);
  cn_image img = {1, 1, NULL};
  cn_status st = cn_image_load(path, &img);
  CHECK(st != CN_OK);
  if (want != CN_OK && st != want)
    fprintf(stderr, "%s: got %s (%s), wanted %s\n", name, cn_status_name(st), cn_last_error(),
            cn_status_name(want));
  if (want != CN_OK) CHECK(st == want);
  CHECK(strstr(cn_last_error(), name) != NULL);
  CHECK(img.pixels == NULL);
  if (st == CN_OK) cn_image_free(&img);
}

static void refuse_half_and_corrupt(const char *relative, const char *half_name,
                                    const char *corrupt_name) {
  const char *path = cn_test_data(relative);
  size_t size = 0;
  uint8_t *data = path ? read_all(path, &size) : NULL;
  if (!data || size < 1000) {
    printf("note: %s absent, truncation not checked\n", relative);
    free(data);
    return;
  }
  expect_refused(half_name, data, size / 2, CN_ERR_FORMAT);
  if (corrupt_name) {
    for (size_t i = size / 2; i < size / 2 + 64; i++) data[i] ^= 0x5a;
    expect_refused(corrupt_name, data, size, CN_ERR_FORMAT);
  }
  free(data);
}

/* A fuzzer finding (fuzz/corpus/image/regress_corrupt_huge.jpg): 433 bytes declaring 11303 x
 * 20512 grey pixels, whose entropy-coded data is corrupt (a bad Huffman code, then a marker).
 * libjpeg fills the rest of the image with grey, so the 433 bytes decoded to 232 million pixels
 * (16 s under ASan). Corrupt data is refused, as truncated data is. */
static void test_corrupt_jpeg_data(void) {
  char path[4096];
  cn_test_source("fuzz/corpus/image/regress_corrupt_huge.jpg", path, sizeof path);
  size_t size = 0;
  uint8_t *data = read_all(path, &size);
  CHECK(data != NULL);
  if (data) expect_refused("corrupt_huge.jpg", data, size, CN_ERR_FORMAT);
  free(data);
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* PNG's CRC-32 (reflected polynomial 0xedb88320), bit by bit: small inputs only. */
static uint32_t png_crc(const uint8_t *p, size_t n) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
  }
  return crc ^ 0xffffffffu;
}

/* A PNG signature and IHDR with a correct CRC declaring 100000 x 100000 RGB, then IEND. */
static void test_png_huge_header(void) {
  uint8_t png[8 + 25 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *ihdr = png + 8;
  put_be32(ihdr, 13);
  memcpy(ihdr + 4, "IHDR", 4);
  put_be32(ihdr + 8, 100000);
  put_be32(ihdr + 12, 100000);
  ihdr[16] = 8, ihdr[17] = 2, ihdr[18] = ihdr[19] = ihdr[20] = 0;
  put_be32(ihdr + 21, png_crc(ihdr + 4, 17));
  uint8_t *iend = ihdr + 25;
  put_be32(iend, 0);
  memcpy(iend + 4, "IEND", 4);
  put_be32(iend + 8, png_crc(iend + 4, 4));
  expect_refused("huge.png", png, sizeof png, CN_ERR_LIMIT);
}

static void put_le32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* A 2x2 24-bit BMP; the caller breaks one field. */
static void make_bmp(uint8_t bmp[70]) {
  memset(bmp, 0, 70);
  bmp[0] = 'B', bmp[1] = 'M';
  put_le32(bmp + 2, 70);
  put_le32(bmp + 10, 54);
  put_le32(bmp + 14, 40);
  put_le32(bmp + 18, 2);
  put_le32(bmp + 22, 2);
  bmp[26] = 1, bmp[28] = 24;
}

/* An 8-bit 2x2 BMP with its whole 256-entry palette present, announcing `colours` entries. */
static cn_status decode_8bit_bmp(uint32_t colours) {
  enum { PALETTE = 54, PIXELS = PALETTE + 256 * 4, SIZE = PIXELS + 2 * 4 };
  static uint8_t bmp[SIZE];
  memset(bmp, 0, sizeof bmp);
  bmp[0] = 'B', bmp[1] = 'M';
  put_le32(bmp + 2, SIZE);
  put_le32(bmp + 10, PIXELS);
  put_le32(bmp + 14, 40);
  put_le32(bmp + 18, 2);
  put_le32(bmp + 22, 2);
  bmp[26] = 1, bmp[28] = 8;
  put_le32(bmp + 46, colours);
  for (int i = 0; i < 256; i++) bmp[PALETTE + 4 * i] = (uint8_t)i;
  cn_image img;
  cn_status st = cn_image_decode(bmp, sizeof bmp, "count.bmp", &img);
  if (st == CN_OK) cn_image_free(&img);
  return st;
}

/* More palette entries than 2^bits is refused (as Pillow does), not clamped; up to 2^bits, and 0
 * (meaning 2^bits), decode. */
static void test_bmp_palette_count(void) {
  CHECK_OK(decode_8bit_bmp(0));
  CHECK_OK(decode_8bit_bmp(2));
  CHECK_OK(decode_8bit_bmp(256));
  const uint32_t bad[] = {257, 1u << 28, 0xffffffffu};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    CHECK(decode_8bit_bmp(bad[i]) == CN_ERR_FORMAT);
    CHECK(strstr(cn_last_error(), "count.bmp: BMP palette of") != NULL);
    CHECK(strchr(cn_last_error(), '\n') == NULL);
  }
}

static void test_bad_bmp(void) {
  uint8_t bmp[70];
  make_bmp(bmp);
  cn_image img;
  CHECK_OK(cn_image_decode(bmp, sizeof bmp, "ok.bmp", &img));
  CHECK(img.width == 2 && img.height == 2);
  cn_image_free(&img);
  make_bmp(bmp);
  put_le32(bmp + 10, 0xfffffff0u);
  expect_refused("offset.bmp", bmp, sizeof bmp, CN_ERR_FORMAT);
  make_bmp(bmp);
  put_le32(bmp + 18, 0x7fffffff);
  expect_refused("wide.bmp", bmp, sizeof bmp, CN_ERR_LIMIT);
  make_bmp(bmp);
  put_le32(bmp + 22, 0x80000000u); /* INT32_MIN rows, top-down */
  expect_refused("tall.bmp", bmp, sizeof bmp, CN_ERR_LIMIT);
  make_bmp(bmp);
  put_le32(bmp + 22, 1000);
  expect_refused("rows.bmp", bmp, sizeof bmp, CN_ERR_FORMAT);
  make_bmp(bmp);
  put_le32(bmp + 14, 0x7fffffff);
  expect_refused("header.bmp", bmp, sizeof bmp, CN_ERR_FORMAT);
  make_bmp(bmp);
  bmp[28] = 8;
  put_le32(bmp + 46, 0xffffffffu); /* absurd palette count, palette mostly missing */
  expect_refused("palette.bmp", bmp, 54, CN_ERR_FORMAT);
  test_bmp_palette_count();
}

static void test_bad_pnm(void) {
  const char zero[] = "P6\n2 2\n0\n............";
  expect_refused("maxval0.ppm", zero, sizeof zero - 1, CN_ERR_FORMAT);
  const char huge[] = "P6\n99999999999 99999999999\n255\n...";
  expect_refused("huge.ppm", huge, sizeof huge - 1, CN_ERR_FORMAT);
  const char big[] = "P5\n100000 100000\n255\n...";
  expect_refused("big.pgm", big, sizeof big - 1, CN_ERR_LIMIT);
  const char short_data[] = "P6\n4 4\n255\nabc";
  expect_refused("short.ppm", short_data, sizeof short_data - 1, CN_ERR_FORMAT);
  const char empty_size[] = "P5\n0 5\n255\n";
  expect_refused("empty.pgm", empty_size, sizeof empty_size - 1, CN_ERR_FORMAT);
  const char ok[] = "P5 # comment\n2 1\n65535\n\xff\xff\x00\x00";
  cn_image img;
  CHECK_OK(cn_image_decode(ok, sizeof ok - 1, "ok.pgm", &img));
  CHECK(img.width == 2 && img.pixels[0] == 255 && img.pixels[3] == 0);
  cn_image_free(&img);
}

static void test_bad_inputs(void) {
  expect_refused("empty.jpg", "", 0, CN_ERR_FORMAT);
  const char text[] = "This is a text file pretending to be a JPEG.\n";
  expect_refused("text.jpg", text, sizeof text - 1, CN_ERR_FORMAT);
  const uint8_t jpeg_header_only[] = {0xff, 0xd8, 0xff, 0xe0, 0x00};
  expect_refused("stub.jpg", jpeg_header_only, sizeof jpeg_header_only, CN_ERR_FORMAT);
  refuse_half_and_corrupt("images/darknet_dog.jpg", "half.jpg", NULL);
  refuse_half_and_corrupt("images/skimage_chelsea.png", "half.png", "corrupt.png");
  test_corrupt_jpeg_data();
  test_png_huge_header();
  test_bad_bmp();
  test_bad_pnm();
  cn_image img;
  char missing[512];
  snprintf(missing, sizeof missing, "%s/no-such-file.jpg", cn_test_tmpdir());
  CHECK(cn_image_load(missing, &img) == CN_ERR_IO);
  CHECK(strstr(cn_last_error(), "no-such-file.jpg") != NULL);
}

static void test_names(void) {
  for (int i = 0; i < CN_RESIZE_COUNT; i++) {
    cn_resize r;
    CHECK_OK(cn_resize_parse(cn_resize_name((cn_resize)i), &r));
    CHECK(r == (cn_resize)i);
  }
  for (int i = 0; i < CN_PRE_COUNT; i++) {
    cn_preprocess p;
    CHECK_OK(cn_preprocess_parse(cn_preprocess_name((cn_preprocess)i), &p));
    CHECK(p == (cn_preprocess)i);
  }
  for (int i = 0; i < CN_DECODE_COUNT; i++) {
    cn_decoder d;
    CHECK_OK(cn_decoder_parse(cn_decoder_name((cn_decoder)i), &d));
    CHECK(d == (cn_decoder)i);
  }
  cn_resize r;
  cn_preprocess p;
  cn_decoder d;
  CHECK(cn_decoder_parse("opencv", &d) == CN_ERR_ARG);
  CHECK(cn_resize_parse("bicubic", &r) == CN_ERR_ARG);
  CHECK(cn_preprocess_parse("imagenet", &p) == CN_ERR_ARG);
}

/* A 4x2 gradient: resizing to the same size copies, crops keep the centre, prepare scales. */
static void test_resize_and_prepare(void) {
  uint8_t px[4 * 2 * 3];
  for (int i = 0; i < 24; i++) px[i] = (uint8_t)(i * 10);
  cn_image src = {4, 2, px}, dst;
  for (int policy = 0; policy < CN_RESIZE_COUNT; policy++) {
    CHECK_OK(cn_image_resize(&src, 4, 2, (cn_resize)policy, &dst));
    CHECK(memcmp(dst.pixels, px, sizeof px) == 0);
    cn_image_free(&dst);
    CHECK_OK(cn_image_resize(&src, 7, 3, (cn_resize)policy, &dst));
    CHECK(dst.width == 7 && dst.height == 3);
    cn_image_free(&dst);
  }
  CHECK(cn_image_resize(&src, 0, 3, CN_RESIZE_NEAREST, &dst) != CN_OK);
  /* tf-bilinear keeps fractions in prepare: 4 -> 8 columns blends 0 and 30 at 1/4 and 3/4 */
  float row[2 * 8 * 3];
  cn_input_spec tf = {2, 8, 3, CN_RESIZE_TF_BILINEAR, 0, CN_PRE_RAW, 0, CN_DECODE_PIL};
  CHECK_OK(cn_image_prepare(&src, &tf, row));
  CHECK(row[0] == 0.0f && row[3] == 7.5f && row[6] == 22.5f);
  CHECK_OK(cn_image_resize(&src, 8, 2, CN_RESIZE_TF_BILINEAR, &dst));
  CHECK(dst.pixels[3] == 8 && dst.pixels[6] == 22); /* rounded half to even */
  cn_image_free(&dst);
  CHECK_OK(cn_image_center_crop(&src, 0.5, &dst));
  CHECK(dst.width == 2 && dst.height == 1 && dst.pixels[0] == px[3]);
  cn_image_free(&dst);
  CHECK(cn_image_center_crop(&src, 0, &dst) == CN_ERR_ARG);

  cn_input_spec spec = {2, 4, 3, CN_RESIZE_NEAREST, 0, CN_PRE_TF, 0, CN_DECODE_PIL};
  float out[24];
  CHECK_OK(cn_image_prepare(&src, &spec, out));
  CHECK_NEAR(out[5], 50 / 127.5 - 1, 1e-6);
  spec.preprocess = CN_PRE_CAFFE;
  CHECK_OK(cn_image_prepare(&src, &spec, out));
  CHECK_NEAR(out[0], 20 - 103.939, 1e-4); /* B first */
  CHECK_NEAR(out[2], 0 - 123.68, 1e-4);
  spec.channels = 1;
  CHECK(cn_image_prepare(&src, &spec, out) == CN_ERR_UNSUPPORTED);
  spec.preprocess = CN_PRE_RAW;
  CHECK_OK(cn_image_prepare(&src, &spec, out));
  CHECK_NEAR(out[0], (0 * 19595 + 10 * 38470 + 20 * 7471 + 0x8000) >> 16, 0);
  spec = (cn_input_spec){2, 2, 3, CN_RESIZE_BILINEAR, 0.875, CN_PRE_UNIT, 0, CN_DECODE_PIL};
  CHECK_OK(cn_image_prepare(&src, &spec, out));
  CHECK(out[0] >= 0 && out[0] <= 1);
}

/* channels_first writes the same values as HWC, plane by plane (ONNX / PyTorch NCHW input). */
static void test_channels_first(void) {
  uint8_t px[4 * 3 * 3];
  for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 7 % 256);
  cn_image src = {4, 3, px};
  for (int mode = 0; mode < CN_PRE_COUNT; mode++) {
    cn_input_spec hwc = {3, 4, 3, CN_RESIZE_PIL_BILINEAR, 0, (cn_preprocess)mode, 0, CN_DECODE_PIL};
    cn_input_spec chw = hwc;
    chw.channels_first = 1;
    float a[36], b[36];
    CHECK_OK(cn_image_prepare(&src, &hwc, a));
    CHECK_OK(cn_image_prepare(&src, &chw, b));
    int same = 1;
    for (int i = 0; i < 12; i++)
      for (int c = 0; c < 3; c++) same &= a[3 * i + c] == b[c * 12 + i];
    CHECK(same);
  }
  /* torch mode, red plane first: (x / 255 - 0.485) / 0.229 of the first pixel's red. */
  cn_input_spec torch = {3, 4, 3, CN_RESIZE_NEAREST, 0, CN_PRE_TORCH, 1, CN_DECODE_PIL};
  float y[36];
  CHECK_OK(cn_image_prepare(&src, &torch, y));
  CHECK_NEAR(y[0], (px[0] / 255.0 - 0.485) / 0.229, 1e-5);
  CHECK_NEAR(y[12], (px[1] / 255.0 - 0.456) / 0.224, 1e-5);
  CHECK_NEAR(y[24 + 11], (px[35] / 255.0 - 0.406) / 0.225, 1e-5);
  /* Grey input has one plane: channels_first changes nothing. */
  cn_input_spec grey = {3, 4, 1, CN_RESIZE_NEAREST, 0, CN_PRE_RAW, 1, CN_DECODE_PIL};
  CHECK_OK(cn_image_prepare(&src, &grey, y));
  CHECK_NEAR(y[0], (px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 0x8000) >> 16, 0);
}

/* A PNG written and read back gives the same pixels; a folder that does not exist fails by name
 * and leaves nothing behind. */
static void test_save_png(void) {
  uint8_t px[5 * 3 * 3];
  for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 17 + 3);
  cn_image img = {.width = 5, .height = 3, .pixels = px}, back;
  char path[1024];
  snprintf(path, sizeof path, "%s/out.png", cn_test_tmpdir());
  CHECK_OK(cn_image_save_png(&img, path));
  CHECK_OK(cn_image_load(path, &back));
  CHECK(back.width == 5 && back.height == 3 && memcmp(back.pixels, px, sizeof px) == 0);
  cn_image_free(&back);
  snprintf(path, sizeof path, "%s/missing/out.png", cn_test_tmpdir());
  CHECK(cn_image_save_png(&img, path) != CN_OK);
  CHECK(strstr(cn_last_error(), "missing") != NULL);
}

int main(void) {
  test_save_png();
  test_names();
  test_resize_and_prepare();
  test_channels_first();
  test_bad_inputs();
  test_exif_rotation();
  test_photos();
  return cn_test_finish();
}
