/* Image folders, splits, class weights, the prefetching loader and augmentation, on small trees
 * of PPM files written here. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "train/dataset.h"

static char root[1024];

/* ---- building trees ----------------------------------------------------------------------- */

static const char *at(const char *rel) {
  static char buf[4][2048];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 2048, "%s/%s", root, rel);
  return p;
}

static void make_dir(const char *rel) {
  mkdir(at(rel), 0755);
}

/* A w x h binary PPM whose pixels are a function of tag, so images differ. */
static void write_ppm(const char *rel, int w, int h, int tag) {
  FILE *f = fopen(at(rel), "wb");
  if (!f) return;
  fprintf(f, "P6\n%d %d\n255\n", w, h);
  for (int i = 0; i < w * h * 3; i++) fputc((i * 7 + tag * 31 + i / 3 * tag) & 255, f);
  fclose(f);
}

static void write_text(const char *rel, const char *text) {
  FILE *f = fopen(at(rel), "w");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  chmod(path, 0755); /* a chmod 000 folder or file must still go */
  return remove(path);
}

static void remove_tree(const char *path) {
  nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int contains(const char *text, const char *part) {
  return strstr(text, part) != NULL;
}

/* Expects opening rel to fail with a message holding both parts (the second may be NULL). */
static void expect_open_error(const char *rel, const char *part1, const char *part2) {
  cn_dataset *ds = NULL;
  cn_status st = cn_dataset_open_dir(at(rel), &ds);
  CHECK(st != CN_OK && ds == NULL);
  const char *msg = cn_last_error();
  CHECK(contains(msg, part1) && (!part2 || contains(msg, part2)));
  if (!contains(msg, part1) || (part2 && !contains(msg, part2)))
    fprintf(stderr, "  message was: %s\n", msg);
  cn_dataset_free(ds);
}

/* ---- scanning ----------------------------------------------------------------------------- */

static void test_sorting(void) {
  make_dir("sorted");
  make_dir("sorted/zebra");
  make_dir("sorted/Apple");
  make_dir("sorted/mango");
  make_dir("sorted/.cache");
  make_dir("sorted/zebra/sub");
  write_ppm("sorted/zebra/2.ppm", 4, 4, 1);
  write_ppm("sorted/zebra/10.ppm", 4, 4, 2);
  write_ppm("sorted/zebra/1.PPM", 4, 4, 3);
  write_ppm("sorted/zebra/sub/3.jpeg", 4, 4, 4); /* content is sniffed, names only filter */
  write_ppm("sorted/zebra/.hidden.ppm", 4, 4, 5);
  write_text("sorted/zebra/notes.txt", "not an image");
  write_ppm("sorted/Apple/a.png", 4, 4, 6);
  write_ppm("sorted/mango/m.bmp", 4, 4, 7);
  write_ppm("sorted/.cache/c.ppm", 4, 4, 8);
  write_ppm("sorted/top.ppm", 4, 4, 9);
  CHECK(symlink(at("sorted/zebra/2.ppm"), at("sorted/mango/link.ppm")) == 0);
  CHECK(symlink(at("sorted/zebra"), at("sorted/zebra/sub/loop")) == 0);
  cn_dataset *ds = NULL;
  CHECK_OK(cn_dataset_open_dir(at("sorted"), &ds));
  if (!ds) return;
  CHECK(cn_dataset_class_count(ds) == 3);
  CHECK(strcmp(cn_dataset_class_name(ds, 0), "Apple") == 0);
  CHECK(strcmp(cn_dataset_class_name(ds, 1), "mango") == 0);
  CHECK(strcmp(cn_dataset_class_name(ds, 2), "zebra") == 0);
  CHECK(cn_dataset_class_name(ds, 3) == NULL);
  static const char *const want[] = {"Apple/a.png",     "mango/link.ppm", "mango/m.bmp",
                                     "zebra/1.PPM",     "zebra/10.ppm",   "zebra/2.ppm",
                                     "zebra/sub/3.jpeg"};
  static const int labels[] = {0, 1, 1, 2, 2, 2, 2};
  CHECK(cn_dataset_count(ds) == 7);
  for (int i = 0; i < 7 && i < cn_dataset_count(ds); i++) {
    char path[2048];
    snprintf(path, sizeof path, "sorted/%s", want[i]);
    CHECK(strcmp(cn_dataset_path(ds, i), at(path)) == 0);
    CHECK(cn_dataset_label(ds, i) == labels[i]);
  }
  CHECK(cn_dataset_path(ds, 7) == NULL && cn_dataset_label(ds, -1) == -1);
  cn_dataset_free(ds);

  /* the lenient scan evaluate uses: one class, an empty class, no classes */
  make_dir("lenient");
  make_dir("lenient/only");
  CHECK_OK(cn_dataset_scan_dir(at("lenient"), CN_SCAN_ONE_CLASS | CN_SCAN_EMPTY_CLASS, &ds));
  CHECK(ds && cn_dataset_class_count(ds) == 1 && cn_dataset_count(ds) == 0);
  cn_dataset_free(ds);
  make_dir("flat");
  CHECK_OK(cn_dataset_scan_dir(at("flat"), CN_SCAN_NO_CLASSES, &ds));
  CHECK(ds && cn_dataset_class_count(ds) == 0);
  cn_dataset_free(ds);
}

static void test_errors(void) {
  expect_open_error("missing", "missing", "No such file");
  write_text("plain.txt", "x");
  expect_open_error("plain.txt", "plain.txt", "not a directory");
  make_dir("noclass");
  write_ppm("noclass/a.ppm", 4, 4, 1);
  expect_open_error("noclass", "noclass", "no class folders");
  make_dir("single");
  make_dir("single/cats");
  write_ppm("single/cats/a.ppm", 4, 4, 1);
  expect_open_error("single", "needs at least 2 classes", "cats");
  make_dir("emptyclass");
  make_dir("emptyclass/cats");
  make_dir("emptyclass/dogs");
  write_ppm("emptyclass/cats/a.ppm", 4, 4, 1);
  expect_open_error("emptyclass", "emptyclass", "'dogs' has no images");
  make_dir("nonimages");
  make_dir("nonimages/cats");
  make_dir("nonimages/dogs");
  write_ppm("nonimages/cats/a.ppm", 4, 4, 1);
  write_text("nonimages/dogs/readme.txt", "x");
  write_text("nonimages/dogs/data.csv", "x");
  expect_open_error("nonimages", "'dogs' has no images", NULL);
  make_dir("case");
  make_dir("case/cats");
  make_dir("case/Cats");
  write_ppm("case/cats/a.ppm", 4, 4, 1);
  write_ppm("case/Cats/a.ppm", 4, 4, 1);
  expect_open_error("case", "'Cats' and 'cats'", "differ only in case");
  if (geteuid() != 0) {
    make_dir("locked");
    make_dir("locked/a");
    make_dir("locked/b");
    write_ppm("locked/a/x.ppm", 4, 4, 1);
    write_ppm("locked/b/x.ppm", 4, 4, 1);
    chmod(at("locked/b"), 0);
    expect_open_error("locked", "locked/b", "cannot read");
    chmod(at("locked/b"), 0755);
  }
  cn_dataset *ds = NULL;
  CHECK(cn_dataset_open_dir(NULL, &ds) == CN_ERR_ARG);
}

static void test_validation_classes(void) {
  const char *train[] = {"zebra", "Apple", "mango"};
  cn_dataset *ds = NULL;
  CHECK_OK(cn_dataset_open_dir_classes(at("sorted"), train, 3, &ds));
  if (ds) {
    CHECK(strcmp(cn_dataset_class_name(ds, 0), "zebra") == 0);
    CHECK(cn_dataset_label(ds, 0) == 1); /* Apple/a.png: the caller's order */
    CHECK(cn_dataset_label(ds, 6) == 0);
  }
  cn_dataset_free(ds);
  const char *missing[] = {"zebra", "Apple", "mango", "kiwi"};
  CHECK(cn_dataset_open_dir_classes(at("sorted"), missing, 4, &ds) != CN_OK && !ds);
  CHECK(contains(cn_last_error(), "'kiwi'"));
  const char *extra[] = {"zebra", "Apple"};
  CHECK(cn_dataset_open_dir_classes(at("sorted"), extra, 2, &ds) != CN_OK && !ds);
  CHECK(contains(cn_last_error(), "'mango'"));
}

/* ---- split and weights -------------------------------------------------------------------- */

/* Builds rel with classes a (na images) and b (nb images) of w x h PPMs. */
static cn_dataset *two_class_set(const char *rel, int na, int nb, int w, int h) {
  char path[512];
  make_dir(rel);
  for (int c = 0; c < 2; c++) {
    snprintf(path, sizeof path, "%s/%c", rel, "ab"[c]);
    make_dir(path);
    for (int i = 0; i < (c ? nb : na); i++) {
      snprintf(path, sizeof path, "%s/%c/%03d.ppm", rel, "ab"[c], i);
      write_ppm(path, w, h, c * 1000 + i);
    }
  }
  cn_dataset *ds = NULL;
  CHECK_OK(cn_dataset_open_dir(at(rel), &ds));
  return ds;
}

static int same_paths(const cn_dataset *x, const cn_dataset *y) {
  if (cn_dataset_count(x) != cn_dataset_count(y)) return 0;
  for (int64_t i = 0; i < cn_dataset_count(x); i++)
    if (strcmp(cn_dataset_path(x, i), cn_dataset_path(y, i)) != 0) return 0;
  return 1;
}

static int count_label(const cn_dataset *ds, int label) {
  int n = 0;
  for (int64_t i = 0; i < cn_dataset_count(ds); i++) n += cn_dataset_label(ds, i) == label;
  return n;
}

static void test_split_and_weights(cn_dataset *all) {
  cn_dataset *t1, *v1, *t2, *v2, *t3, *v3;
  CHECK_OK(cn_dataset_split(all, 0.2, 7, &t1, &v1));
  CHECK_OK(cn_dataset_split(all, 0.2, 7, &t2, &v2));
  CHECK_OK(cn_dataset_split(all, 0.2, 8, &t3, &v3));
  CHECK(same_paths(t1, t2) && same_paths(v1, v2));
  CHECK(!same_paths(v1, v3));
  cn_dataset_free(t3), cn_dataset_free(v3);
  CHECK(count_label(v1, 0) == 2 && count_label(v1, 1) == 6); /* 10 and 30 images */
  CHECK(count_label(t1, 0) == 8 && count_label(t1, 1) == 24);
  CHECK(cn_dataset_class_count(v1) == 2 && strcmp(cn_dataset_class_name(v1, 1), "b") == 0);
  int disjoint = 1;
  for (int64_t i = 0; i < cn_dataset_count(v1); i++)
    for (int64_t j = 0; j < cn_dataset_count(t1); j++)
      disjoint &= strcmp(cn_dataset_path(v1, i), cn_dataset_path(t1, j)) != 0;
  CHECK(disjoint);
  CHECK(cn_dataset_split(all, 1.0, 7, &t3, &v3) == CN_ERR_ARG);
  CHECK(cn_dataset_split(all, 0.001, 7, &t3, &v3) == CN_ERR_ARG); /* rounds to no images */
  cn_dataset *part = NULL;
  CHECK_OK(cn_dataset_subset(all, 8, 5, &part));
  CHECK(part && cn_dataset_count(part) == 5 && cn_dataset_class_count(part) == 2);
  CHECK(part && strcmp(cn_dataset_path(part, 0), cn_dataset_path(all, 8)) == 0);
  CHECK(part && cn_dataset_label(part, 1) == 0 && cn_dataset_label(part, 2) == 1);
  cn_dataset_free(part);
  CHECK(cn_dataset_subset(all, 38, 3, &part) == CN_ERR_ARG && !part);
  float w[2];
  cn_dataset_class_weights(all, w);
  CHECK_NEAR(w[0], 40.0 / (2 * 10), 1e-6);
  CHECK_NEAR(w[1], 40.0 / (2 * 30), 1e-6);
  cn_dataset_free(t1), cn_dataset_free(v1), cn_dataset_free(t2), cn_dataset_free(v2);
}

/* ---- the loader --------------------------------------------------------------------------- */

typedef struct epoch_out {
  float *images;
  int labels[64];
  int64_t indices[64];
  int sizes[16], batches, total;
} epoch_out;

static cn_loader_options small_options(int workers) {
  cn_loader_options o = {0};
  o.spec = (cn_input_spec){.height = 4, .width = 5, .channels = 3, .resize = CN_RESIZE_BILINEAR};
  o.batch = 16;
  o.workers = workers;
  o.prefetch_batches = 2;
  o.shuffle = 1;
  o.seed = 42;
  o.augment.horizontal_flip = 1;
  o.augment.rotation_range = 20;
  o.augment.zoom_range = 0.2f;
  o.augment.brightness_range[0] = 0.8f, o.augment.brightness_range[1] = 1.2f;
  /* every other augmentation too, so that worker counts and repeated epochs cover them */
  o.augment.vertical_flip = 1;
  o.augment.shear_range = 10;
  o.augment.width_shift_range = o.augment.height_shift_range = 0.1f;
  o.augment.channel_shift_range = 10, o.augment.tint_range = 10;
  o.augment.hue_range = 0.1f, o.augment.contrast_range = 0.3f;
  o.augment.blur_sigma[0] = 0.3f, o.augment.blur_sigma[1] = 1.5f;
  o.augment.crop_scale[0] = 0.5f, o.augment.crop_scale[1] = 1;
  o.augment.fill_mode = CN_FILL_REFLECT;
  return o;
}

/* Runs one epoch into out (images of at most 64 samples). */
static cn_status run_epoch(cn_loader *l, int64_t epoch, epoch_out *out) {
  size_t numel = cn_loader_image_floats(l);
  free(out->images);
  memset(out, 0, sizeof *out);
  out->images = calloc(64 * numel, sizeof(float));
  cn_status st = cn_loader_start_epoch(l, epoch);
  for (int count = 1; st == CN_OK && count;) {
    st = cn_loader_next(l, out->images + (size_t)out->total * numel, out->labels + out->total,
                        out->indices + out->total, &count);
    if (count) out->sizes[out->batches++] = count;
    out->total += count;
  }
  return st;
}

static int same_epoch(const epoch_out *a, const epoch_out *b, size_t numel) {
  return a->total == b->total && a->batches == b->batches &&
         memcmp(a->indices, b->indices, sizeof(int64_t) * (size_t)a->total) == 0 &&
         memcmp(a->labels, b->labels, sizeof(int) * (size_t)a->total) == 0 &&
         memcmp(a->images, b->images, sizeof(float) * numel * (size_t)a->total) == 0;
}

static void test_loader_order(const cn_dataset *ds) {
  cn_loader *one = NULL, *three = NULL;
  cn_loader_options o1 = small_options(1), o3 = small_options(3);
  CHECK_OK(cn_loader_new(ds, &o1, &one));
  CHECK_OK(cn_loader_new(ds, &o3, &three));
  if (!one || !three) return;
  size_t numel = cn_loader_image_floats(one);
  epoch_out a = {0}, b = {0}, c = {0};
  CHECK_OK(run_epoch(one, 0, &a));
  CHECK_OK(run_epoch(three, 0, &b));
  CHECK(a.total == 40 && a.batches == 3 && a.sizes[0] == 16 && a.sizes[2] == 8);
  CHECK(same_epoch(&a, &b, numel)); /* workers 1 vs 3 */
  int labels_match = 1;
  for (int i = 0; i < a.total; i++)
    labels_match &= a.labels[i] == cn_dataset_label(ds, a.indices[i]);
  CHECK(labels_match);
  CHECK_OK(run_epoch(three, 1, &c));
  CHECK(memcmp(a.indices, c.indices, sizeof(int64_t) * 40) != 0); /* a new order */
  CHECK_OK(run_epoch(one, 1, &b));
  CHECK(same_epoch(&b, &c, numel));
  CHECK_OK(run_epoch(three, 0, &c));
  CHECK(same_epoch(&a, &c, numel)); /* epoch 0 again: the same batches */
  cn_loader_free(one);
  cn_loader_free(three);

  cn_loader_options plain = small_options(2);
  plain.shuffle = 0;
  plain.augment = (cn_augment){0};
  CHECK_OK(cn_loader_new(ds, &plain, &one));
  CHECK_OK(run_epoch(one, 0, &a));
  CHECK_OK(run_epoch(one, 5, &b));
  CHECK(same_epoch(&a, &b, numel));
  int identity = a.total == 40;
  for (int i = 0; i < a.total; i++) identity &= a.indices[i] == i;
  CHECK(identity);
  cn_loader_free(one);
  free(a.images), free(b.images), free(c.images);
}

typedef struct warnings {
  int count;
  char last[600];
} warnings;

static void collect_warning(void *ctx, const char *msg) {
  warnings *w = ctx;
  w->count++;
  snprintf(w->last, sizeof w->last, "%s", msg);
}

static void test_bad_images(void) {
  cn_dataset *ds = two_class_set("bad", 5, 5, 6, 6);
  write_text("bad/a/001.ppm", "garbage, not a PPM");
  int locked = geteuid() != 0;
  if (locked) chmod(at("bad/b/003.ppm"), 0);
  warnings w = {0};
  cn_loader_options o = small_options(2);
  o.batch = 3;
  o.warn = collect_warning, o.warn_ctx = &w;
  cn_loader *l = NULL;
  CHECK_OK(cn_loader_new(ds, &o, &l));
  epoch_out out = {0};
  for (int epoch = 0; l && epoch < 2; epoch++) {
    CHECK_OK(run_epoch(l, epoch, &out));
    CHECK(out.total == 10 - 1 - locked);
  }
  CHECK(cn_loader_bad_count(l) == 1 + locked);
  CHECK(w.count == 1 + locked); /* once per file, not per epoch */
  CHECK(contains(w.last, locked ? "003.ppm" : "001.ppm"));
  cn_loader_free(l);

  o.bad_images = CN_BAD_IMAGES_FATAL;
  CHECK_OK(cn_loader_new(ds, &o, &l));
  CHECK(l && run_epoch(l, 0, &out) != CN_OK);
  CHECK(contains(cn_last_error(), "/bad/"));
  cn_loader_free(l);
  free(out.images);
  cn_dataset_free(ds);
}

static long rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_memory_and_shutdown(const cn_dataset *ds) {
  cn_loader_options o = small_options(3);
  o.spec.height = o.spec.width = 32;
  o.batch = 4;
  cn_loader *l = NULL;
  CHECK_OK(cn_loader_new(ds, &o, &l));
  if (!l) return;
  epoch_out out = {0};
  long after_first = 0;
  for (int epoch = 0; epoch < 20; epoch++) {
    cn_status st = cn_loader_start_epoch(l, epoch);
    float *images = malloc(4 * cn_loader_image_floats(l) * sizeof(float));
    for (int count = 1; st == CN_OK && count;) st = cn_loader_next(l, images, NULL, NULL, &count);
    free(images);
    CHECK(st == CN_OK);
    if (epoch == 1) after_first = rss_kb();
  }
  long growth = rss_kb() - after_first;
  printf("RSS growth over 18 epochs: %ld kB\n", growth);
#if defined(__SANITIZE_ADDRESS__)
  (void)growth; /* AddressSanitizer's quarantine holds freed blocks: RSS says nothing here */
#else
  CHECK(growth < 1024);
#endif
  /* free mid-epoch: workers are decoding while the loader goes away */
  CHECK_OK(cn_loader_start_epoch(l, 21));
  int count;
  float *images = malloc(4 * cn_loader_image_floats(l) * sizeof(float));
  CHECK_OK(cn_loader_next(l, images, NULL, NULL, &count));
  CHECK(count == 4);
  CHECK_OK(cn_loader_start_epoch(l, 22)); /* restart mid-epoch too */
  cn_loader_free(l);
  CHECK_OK(cn_loader_new(ds, &o, &l));
  CHECK_OK(cn_loader_start_epoch(l, 0));
  cn_loader_free(l); /* before any batch was taken */
  CHECK_OK(cn_loader_new(ds, &o, &l));
  CHECK(cn_loader_next(l, images, NULL, NULL, &count) == CN_ERR_ARG); /* no epoch started */
  cn_loader_free(l);
  free(images);
  free(out.images);

  o.batch = 0;
  CHECK(cn_loader_new(ds, &o, &l) == CN_ERR_ARG && !l);
  o.batch = 4, o.augment.zoom_range = 1.5f;
  CHECK(cn_loader_new(ds, &o, &l) == CN_ERR_ARG && !l);
}

/* ---- augmentation ------------------------------------------------------------------------- */

static void test_augment(void) {
  cn_image src = {0};
  write_ppm("aug.ppm", 7, 5, 3);
  CHECK_OK(cn_image_load(at("aug.ppm"), &src));
  if (!src.pixels) return;
  cn_augment flip = {.horizontal_flip = 1};
  int flipped = 0, kept = 0;
  for (uint64_t seed = 0; seed < 16; seed++) {
    cn_image out = {0};
    CHECK_OK(cn_image_augment(&src, &flip, seed, &out));
    if (!out.pixels) continue;
    int same = memcmp(out.pixels, src.pixels, 7 * 5 * 3) == 0, mirrored = 1;
    for (int y = 0; y < 5; y++)
      for (int x = 0; x < 7; x++)
        mirrored &= memcmp(out.pixels + (y * 7 + x) * 3, src.pixels + (y * 7 + 6 - x) * 3, 3) == 0;
    CHECK(same || mirrored);
    flipped += mirrored, kept += same;
    cn_image_free(&out);
  }
  CHECK(flipped > 0 && kept > 0);

  cn_augment all = {.horizontal_flip = 1,
                    .rotation_range = 30,
                    .width_shift_range = 0.1f,
                    .height_shift_range = 0.1f,
                    .zoom_range = 0.2f,
                    .brightness_range = {0.5f, 1.5f}};
  cn_image a = {0}, b = {0}, c = {0};
  CHECK_OK(cn_image_augment(&src, &all, 99, &a));
  CHECK_OK(cn_image_augment(&src, &all, 99, &b));
  CHECK_OK(cn_image_augment(&src, &all, 100, &c));
  CHECK(a.width == 7 && a.height == 5 && memcmp(a.pixels, b.pixels, 7 * 5 * 3) == 0);
  CHECK(memcmp(a.pixels, c.pixels, 7 * 5 * 3) != 0);
  cn_image_free(&a), cn_image_free(&b), cn_image_free(&c);
  /* a zero-range warp is the identity */
  cn_augment none = {0};
  CHECK(!cn_augment_active(&none) && cn_augment_active(&all));
  CHECK_OK(cn_image_augment(&src, &none, 1, &a));
  CHECK(a.pixels && memcmp(a.pixels, src.pixels, 7 * 5 * 3) == 0);
  cn_image_free(&a);
  cn_augment bad = {.brightness_range = {1.5f, 0.5f}};
  CHECK(cn_image_augment(&src, &bad, 1, &a) == CN_ERR_ARG);
  bad = (cn_augment){.rotation_range = -1};
  CHECK(cn_augment_check(&bad) == CN_ERR_ARG);
  cn_image_free(&src);
}

/* ---- speed on the shared cats and dogs ---------------------------------------------------- */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void time_cats_dogs(void) {
  const char *dir = cn_test_data("cats_dogs/train");
  if (!dir) {
    printf("timing skipped: cats_dogs/train absent\n");
    return;
  }
  cn_dataset *ds = NULL;
  CHECK_OK(cn_dataset_open_dir(dir, &ds));
  if (!ds) return;
  CHECK(cn_dataset_count(ds) == 2000 && cn_dataset_class_count(ds) == 2);
  for (int workers = 1; workers <= 2; workers++) {
    cn_loader_options o = {0};
    o.spec = (cn_input_spec){.height = 224,
                             .width = 224,
                             .channels = 3,
                             .resize = CN_RESIZE_BILINEAR,
                             .preprocess = CN_PRE_TF};
    o.batch = 32, o.workers = workers, o.shuffle = 1, o.seed = 1;
    cn_loader *l = NULL;
    CHECK_OK(cn_loader_new(ds, &o, &l));
    float *images = malloc(32 * cn_loader_image_floats(l) * sizeof(float));
    int total = 0;
    double start = now();
    cn_status st = cn_loader_start_epoch(l, 0);
    for (int count = 1; st == CN_OK && count && total < 320; total += count)
      st = cn_loader_next(l, images, NULL, NULL, &count);
    double seconds = now() - start;
    CHECK(st == CN_OK);
    printf("cats_dogs/train decode+prepare 224x224: %d images, %d worker%s: %.1f images/s\n", total,
           workers, workers > 1 ? "s" : "", total / seconds);
    free(images);
    cn_loader_free(l);
  }
  cn_dataset_free(ds);
}

int main(void) {
  snprintf(root, sizeof root, "%s/dataset", cn_test_tmpdir());
  mkdir(root, 0755);
  test_sorting();
  test_errors();
  test_validation_classes();
  cn_dataset *ds = two_class_set("split", 10, 30, 9, 7);
  if (ds) {
    test_split_and_weights(ds);
    test_loader_order(ds);
    test_memory_and_shutdown(ds);
  }
  cn_dataset_free(ds);
  test_bad_images();
  test_augment();
  time_cats_dogs();
  remove_tree(cn_test_tmpdir());
  return cn_test_finish();
}
