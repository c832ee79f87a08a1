/* A whole model trained from its initializers on IDX data (cn_train with whole_model and
 * init_weights): a small Keras JSON architecture learns a synthetic two-class task from gzip IDX
 * files, keeps the classes "0" and "1" and the unit preprocessing, resumes exactly, and bad data
 * or a model that does not fit the data is refused by name. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "convnet/convnet.h"
#include "testlib.h"

enum { SIDE = 8, TRAIN = 256, TEST = 64 };

static char dir[1024];

static const char *path_in(const char *name) {
  static char buf[4][1200];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, sizeof buf[0], "%s/%s", dir, name);
  return p;
}

static void put_be32(gzFile f, uint32_t v) {
  uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  gzwrite(f, q, 4);
}

/* Class 1 images are bright on the left half, class 0 on the right, with noise. */
static void write_set(const char *set, int n, uint32_t seed, int labels_count) {
  char name[256];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", set);
  gzFile im = gzopen(path_in(name), "wb");
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", set);
  gzFile lb = gzopen(path_in(name), "wb");
  gzwrite(im, "\0\0\x08\x03", 4);
  put_be32(im, (uint32_t)n), put_be32(im, SIDE), put_be32(im, SIDE);
  gzwrite(lb, "\0\0\x08\x01", 4);
  put_be32(lb, (uint32_t)labels_count);
  for (int i = 0; i < n; i++) {
    uint8_t label = (uint8_t)((i * 7 + seed) % 2), px[SIDE * SIDE];
    for (int p = 0; p < SIDE * SIDE; p++) {
      seed = seed * 1103515245u + 12345u;
      int left = p % SIDE < SIDE / 2, bright = left == (label == 1);
      px[p] = (uint8_t)((bright ? 150 : 40) + (seed >> 16) % 60);
    }
    gzwrite(im, px, sizeof px);
    if (i < labels_count) gzwrite(lb, &label, 1);
  }
  gzclose(im);
  gzclose(lb);
}

static const char *write_model(int units) {
  char text[2048];
  snprintf(text, sizeof text,
           "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"tiny\", \"layers\": ["
           "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv\", \"batch_input_shape\": "
           "[null, %d, %d, 1], \"filters\": 4, \"kernel_size\": [3, 3], \"activation\": "
           "\"relu\"}},"
           "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flat\"}},"
           "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", \"units\": %d, "
           "\"activation\": \"softmax\"}}]}}",
           SIDE, SIDE, units);
  const char *p = path_in(units == 2 ? "tiny.json" : "tiny3.json");
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  return p;
}

static cn_model *load_unit(const char *json) {
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  if (!m) return NULL;
  cn_input_spec spec = cn_model_input_spec(m);
  spec.preprocess = CN_PRE_UNIT;
  cn_model_set_input_spec(m, &spec);
  return m;
}

static cn_train_options options(const char *out) {
  cn_train_options o = {.data_dir = dir,
                        .whole_model = 1,
                        .init_weights = 1,
                        .epochs = 3,
                        .batch = 16,
                        .seed = 5,
                        .out = out};
  return o;
}

static double last_val_accuracy(const char *log) {
  FILE *f = fopen(log, "r");
  char line[1024];
  double acc = -1;
  while (f && fgets(line, sizeof line, f)) {
    const char *at = strstr(line, "\"val_accuracy\": ");
    if (at) acc = atof(at + 16);
  }
  if (f) fclose(f);
  return acc;
}

static int same_file(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb, ca, cb;
  while (same && (ca = fgetc(fa)) == (cb = fgetc(fb)) && ca != EOF) {
  }
  if (same) same = ca == cb;
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

/* The checkpoint as an interruption after epoch 2 would leave it. */
static void keep_epoch2_checkpoint(void *ctx, const cn_train_progress *p) {
  (void)ctx;
  if (!p->epoch_done || p->epoch != 2) return;
  FILE *in = fopen(path_in("c.cnm.ckpt"), "rb"), *out = fopen(path_in("epoch2.ckpt"), "wb");
  int c;
  while (in && out && (c = fgetc(in)) != EOF) fputc(c, out);
  if (in) fclose(in);
  if (out) fclose(out);
}

static void test_learns(void) {
  cn_model *m = load_unit(write_model(2));
  if (!m) return;
  cn_train_options o = options(path_in("a.cnm"));
  o.log_path = path_in("a.log");
  cn_model *trained = NULL;
  CHECK_OK(cn_train(m, &o, &trained));
  double acc = last_val_accuracy(o.log_path);
  if (acc < 0.95) fprintf(stderr, "validation accuracy %g\n", acc);
  CHECK(acc >= 0.95);
  if (trained) {
    CHECK(cn_model_class_count(trained) == 2);
    CHECK(strcmp(cn_model_class_name(trained, 1), "1") == 0);
    CHECK(cn_model_input_spec(trained).preprocess == CN_PRE_UNIT);
  }
  cn_model_free(trained);
  /* The same seed, the same bytes; stopped after 2 epochs and resumed, the same bytes too. */
  o = options(path_in("b.cnm"));
  CHECK_OK(cn_train(m, &o, NULL));
  CHECK(same_file(path_in("a.cnm"), path_in("b.cnm")));
  o = options(path_in("c.cnm"));
  o.progress = keep_epoch2_checkpoint;
  CHECK_OK(cn_train(m, &o, NULL));
  o.progress = NULL;
  o.resume = path_in("epoch2.ckpt");
  CHECK_OK(cn_train(m, &o, NULL));
  CHECK(same_file(path_in("a.cnm"), path_in("c.cnm")));
  cn_model_free(m);
}

static void expect_refused(cn_model *m, cn_train_options *o, cn_status want, const char *words) {
  cn_status st = cn_train(m, o, NULL);
  CHECK(st == want);
  if (st != want || !strstr(cn_last_error(), words))
    fprintf(stderr, "  want '%s', got %s: %s\n", words, cn_status_name(st), cn_last_error());
  CHECK(strstr(cn_last_error(), words) != NULL);
}

static void test_refused(void) {
  cn_model *m3 = load_unit(write_model(3)), *m = load_unit(write_model(2));
  if (!m || !m3) return;
  cn_train_options o = options(path_in("r.cnm"));
  expect_refused(m3, &o, CN_ERR_SHAPE, "its output has 3 values per sample, the data 2 classes");
  o.freeze = "all";
  expect_refused(m, &o, CN_ERR_ARG, "--freeze all leaves nothing to train");
  o = options(path_in("r.cnm"));
  o.augment.horizontal_flip = 1;
  expect_refused(m, &o, CN_ERR_UNSUPPORTED, "augmentation works on image folders");
  o = options(path_in("r.cnm"));
  cn_input_spec spec = cn_model_input_spec(m);
  spec.preprocess = CN_PRE_CAFFE;
  cn_model_set_input_spec(m, &spec);
  expect_refused(m, &o, CN_ERR_UNSUPPORTED, "IDX values take raw, unit or tf preprocessing");
  spec.preprocess = CN_PRE_UNIT;
  cn_model_set_input_spec(m, &spec);
  /* An images file named without the usual tag: its labels cannot be found. */
  o.data_dir = path_in("nolabels.gz");
  rename(path_in("t10k-images-idx3-ubyte.gz"), path_in("nolabels-images-idx3.gz"));
  o.data_dir = path_in("nolabels-images-idx3.gz");
  expect_refused(m, &o, CN_ERR_IO, "nolabels-labels-idx1.gz");
  rename(path_in("nolabels-images-idx3.gz"), path_in("t10k-images-idx3-ubyte.gz"));
  /* Labels that do not match the images. */
  write_set("short", 40, 3, 39);
  o.data_dir = path_in("short-images-idx3-ubyte.gz");
  expect_refused(m, &o, CN_ERR_SHAPE, "40 images but its labels file has 39 values");
  cn_model_free(m);
  cn_model_free(m3);
}

int main(void) {
  snprintf(dir, sizeof dir, "%s", cn_test_tmpdir());
  cn_set_threads(2);
  write_set("train", TRAIN, 1, TRAIN);
  write_set("t10k", TEST, 2, TEST);
  test_learns();
  test_refused();
  return cn_test_finish();
}
