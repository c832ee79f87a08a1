/* What the Fashion-MNIST examples share, on the public API only: reading the IDX files of
 * Debian's dataset-fashion-mnist, a shuffled order for each epoch, and a PNG grid of images. */
#ifndef EXAMPLES_FASHION_MNIST_H
#define EXAMPLES_FASHION_MNIST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <convnet/convnet.h>

enum { FM_SIDE = 28, FM_PIXELS = FM_SIDE * FM_SIDE };

/* A file the examples index by its shape must have the shape they expect: any other stops the
 * program with one line naming the file (the loops would read out of bounds). */
static inline void fm_refuse(const char *path, const char *what) {
  fprintf(stderr, "%s: %s\n", path, what);
  exit(1);
}

/* The images of one set ("train" or "t10k"), n x 28 x 28 scaled to [0, 1]. */
static inline cn_status fm_load_images(const char *dir, const char *set, float **x, int64_t *n) {
  char path[4096];
  cn_shape shape;
  snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, set);
  cn_status st = cn_idx_read(path, &shape, x);
  if (st != CN_OK) return st;
  if (shape.rank != 3 || shape.dim[0] < 1 || shape.dim[1] != FM_SIDE || shape.dim[2] != FM_SIDE)
    fm_refuse(path, "not a set of 28 x 28 images");
  *n = shape.dim[0];
  for (int64_t i = 0; i < *n * FM_PIXELS; i++) (*x)[i] /= 255.0f;
  return CN_OK;
}

/* The n labels of one set, class indices 0..9 as floats. */
static inline cn_status fm_load_labels(const char *dir, const char *set, int64_t n, float **y) {
  char path[4096];
  cn_shape shape;
  snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, set);
  cn_status st = cn_idx_read(path, &shape, y);
  if (st != CN_OK) return st;
  if (shape.rank != 1 || shape.dim[0] != n) fm_refuse(path, "not one label for each image");
  for (int64_t i = 0; i < n; i++)
    if (!((*y)[i] >= 0 && (*y)[i] < 10)) fm_refuse(path, "a label is not a class 0..9");
  return CN_OK;
}

/* splitmix64 (Steele, Lea and Flood 2014): a random stream whose whole state is one number, so a
 * checkpoint can keep it, and the same in every language. */
static inline uint64_t fm_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* n draws of N(0, 1) from the stream (Box-Muller, two per pair of numbers). */
static inline void fm_normal(uint64_t *state, float *z, int64_t n) {
  for (int64_t i = 0; i < n; i += 2) {
    double u1 = ((double)(fm_random(state) >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double u2 = (double)(fm_random(state) >> 11) / 9007199254740992.0;
    double r = sqrt(-2.0 * log(u1));
    z[i] = (float)(r * cos(2.0 * M_PI * u2));
    if (i + 1 < n) z[i + 1] = (float)(r * sin(2.0 * M_PI * u2));
  }
}

/* 0 .. n-1 in a random order drawn from seed (Fisher-Yates); free() it. */
static inline int64_t *fm_shuffled(int64_t n, unsigned seed) {
  int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
  if (!order) return NULL;
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = rand_r(&seed) % (i + 1), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  return order;
}

/* Copies images order[at .. at + count) of x into batch. */
static inline void fm_gather(const float *x, const int64_t *order, int64_t at, int count,
                             float *batch) {
  for (int i = 0; i < count; i++)
    memcpy(batch + (size_t)i * FM_PIXELS, x + order[at + i] * FM_PIXELS, sizeof(float) * FM_PIXELS);
}

/* n images (NULL: an empty cell), `cols` to a row, each twice its size, into a PNG. */
static inline cn_status fm_draw_grid(const float *const *images, int n, int cols,
                                     const char *path) {
  int scale = 2, cell = FM_SIDE * scale + 2, rows = (n + cols - 1) / cols;
  cn_image img = {cols * cell, rows * cell, calloc((size_t)cols * cell * rows * cell, 3)};
  if (!img.pixels) return CN_ERR_NOMEM;
  for (int k = 0; k < n; k++)
    for (int py = 0; images[k] && py < FM_SIDE * scale; py++)
      for (int px = 0; px < FM_SIDE * scale; px++) {
        float v = images[k][(py / scale) * FM_SIDE + px / scale];
        uint8_t *dst = img.pixels + 3 * ((size_t)(k / cols * cell + 1 + py) * img.width +
                                         (size_t)(k % cols * cell + 1 + px));
        dst[0] = dst[1] = dst[2] = (uint8_t)(255.0f * (v < 0 ? 0 : v > 1 ? 1 : v));
      }
  cn_status st = cn_image_save_png(&img, path);
  free(img.pixels);
  return st;
}

#endif
