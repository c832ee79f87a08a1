/* Embeddings: the default layer (the final Dense's input), pooling of a spatial layer against
 * cn_feature_maps_compute (another forward path), flattening, an unknown layer, the per-image
 * cache (hit, and a changed file missing it), and cn_embed_nearest's order, ties, skip and zero
 * vectors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convnet/convnet.h"
#include "testlib.h"

static void test_nearest(void) {
  const float items[] = {
      1,  0, /* 0: cos 1 with the query */
      0,  1, /* 1: cos 0 */
      2,  0, /* 2: cos 1 again (a tie with row 0: row 0 first) */
      -1, 0, /* 3: cos -1 */
      0,  0, /* 4: zero vector: similarity 0 */
      1,  1, /* 5: cos 0.7071 */
  };
  const float q[] = {3, 0};
  int64_t index[8];
  float score[8];
  CHECK(cn_embed_nearest(q, items, 6, 2, 8, -1, index, score) == 6);
  CHECK(index[0] == 0 && index[1] == 2 && index[2] == 5 && index[3] == 1 && index[4] == 4 &&
        index[5] == 3);
  CHECK_NEAR(score[0], 1.0, 1e-6);
  CHECK_NEAR(score[2], 0.70710678, 1e-6);
  CHECK_NEAR(score[4], 0.0, 0);
  CHECK_NEAR(score[5], -1.0, 1e-6);
  CHECK(cn_embed_nearest(q, items, 6, 2, 2, 0, index, score) == 2);
  CHECK(index[0] == 2 && index[1] == 5); /* row 0 skipped */
  CHECK(cn_embed_nearest(q, items, 6, 2, 0, -1, index, score) == 0);
}

static void write_ppm(const char *path, unsigned char seed) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fprintf(f, "P6\n28 28\n255\n");
  for (int i = 0; i < 28 * 28 * 3; i++) fputc((unsigned char)(i * 7 + seed * 31), f);
  fclose(f);
}

static size_t count_files(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "ls '%s' | wc -l", dir);
  FILE *p = popen(cmd, "r");
  size_t n = 0;
  if (p && fscanf(p, "%zu", &n) != 1) n = 0;
  if (p) pclose(p);
  return n;
}

static void test_embedder(cn_model *m) {
  cn_embedder *e = NULL;
  CHECK_OK(cn_embedder_new(m, NULL, &e));
  CHECK(e && strcmp(cn_embedder_layer(e), "dense") == 0 && cn_embedder_dim(e) == 128);
  cn_embedder_free(e);

  CHECK_OK(cn_embedder_new(m, "flatten", &e));
  CHECK(cn_embedder_dim(e) == 3200);
  cn_embedder_free(e);

  e = NULL;
  CHECK(cn_embedder_new(m, "no_such_layer", &e) == CN_ERR_ARG && e == NULL);
  CHECK(strstr(cn_last_error(), "no_such_layer") != NULL);

  /* a spatial layer: the mean over its 5x5 positions of what the feature maps say */
  float input[2 * 28 * 28];
  for (int i = 0; i < 2 * 28 * 28; i++) input[i] = (float)((i * 37) % 101) / 101.0f;
  CHECK_OK(cn_embedder_new(m, "max_pooling2d_1", &e));
  CHECK(cn_embedder_dim(e) == 128);
  float got[2 * 128];
  CHECK_OK(cn_embedder_run(e, 2, input, got));
  for (int b = 0; b < 2; b++) {
    cn_feature_maps maps = {0};
    CHECK_OK(cn_feature_maps_compute(m, input + b * 28 * 28, "max_pooling2d_1", &maps));
    if (!maps.values) continue;
    float want[128] = {0};
    for (int p = 0; p < 25; p++)
      for (int c = 0; c < 128; c++) want[c] += maps.values[p * 128 + c] / 25.0f;
    CHECK(cn_test_max_abs_diff(got + b * 128, want, 128) < 1e-4);
    cn_feature_maps_free(&maps);
  }

  /* the cache: a second call reads the stored vector; a changed file misses it */
  char dir[512], image[512];
  snprintf(dir, sizeof dir, "%s/embed_cache", cn_test_tmpdir());
  snprintf(image, sizeof image, "%s/embed_image.ppm", cn_test_tmpdir());
  write_ppm(image, 1);
  CHECK_OK(cn_embedder_set_cache(e, dir));
  float first[128], again[128], changed[128];
  CHECK_OK(cn_embed_file(e, image, first));
  CHECK(count_files(dir) == 1);
  CHECK_OK(cn_embed_file(e, image, again));
  CHECK(memcmp(first, again, sizeof first) == 0 && count_files(dir) == 1);
  sleep(1); /* a new modification time even on coarse file systems */
  write_ppm(image, 2);
  CHECK_OK(cn_embed_file(e, image, changed));
  CHECK(count_files(dir) == 2 && memcmp(first, changed, sizeof first) != 0);
  CHECK(cn_embed_file(e, "/nonexistent/x.ppm", changed) != CN_OK);
  CHECK(strstr(cn_last_error(), "/nonexistent/x.ppm") != NULL);
  cn_embedder_free(e);
  remove(image);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  test_nearest();
  const char *json = cn_test_data("weights/keras/mnist_cnn.json");
  if (!json) cn_test_skip("weights/keras/mnist_cnn.json absent");
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  if (m) {
    CHECK_OK(cn_model_init_weights(m, 5));
    test_embedder(m);
  }
  cn_model_free(m);
  return cn_test_finish();
}
