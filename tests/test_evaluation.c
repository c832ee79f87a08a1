/* cn_evaluation (counts, recall, precision, NaN scores) and cn_evaluate on class folders matched
 * to a model's class names by name, with a bad image, an unknown folder and bad options; and
 * cn_evaluate_files over a group of thread "ranks" equal to one process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convnet/convnet.h"
#include "testlib.h"

static void test_accumulator(void) {
  cn_evaluation *e = NULL;
  CHECK(cn_evaluation_new(0, 5, &e) == CN_ERR_ARG && e == NULL);
  CHECK_OK(cn_evaluation_new(3, 5, &e));
  CHECK(cn_evaluation_top_k(e) == 3); /* capped at the classes */
  cn_evaluation_free(e);

  CHECK_OK(cn_evaluation_new(3, 2, &e));
  const float scores[] = {
      0.7f, 0.2f, 0.1f, /* true 0, predicted 0 */
      0.5f, 0.4f, 0.1f, /* true 1, predicted 0, in the top 2 */
      0.1f, 0.3f, 0.6f, /* true 2, predicted 2 */
      NAN,  0.1f, 0.2f, /* true 0, NaN never wins: predicted 2, not in the top 2 */
      0.3f, 0.3f, 0.3f, /* true 1, tie: predicted 0 (lowest index), rank 1: in the top 2 */
      0.9f, 0.0f, 0.0f, /* label 7: not a class, not counted */
  };
  const int labels[] = {0, 1, 2, 0, 1, 7};
  cn_evaluation_add(e, 6, scores, labels);
  CHECK(cn_evaluation_images(e) == 5);
  CHECK(cn_evaluation_correct(e) == 2);
  CHECK(cn_evaluation_top_k_correct(e) == 4);
  CHECK_NEAR(cn_evaluation_accuracy(e), 0.4, 1e-12);
  CHECK_NEAR(cn_evaluation_top_k_accuracy(e), 0.8, 1e-12);
  CHECK(cn_evaluation_confusion(e, 0, 2) == 1 && cn_evaluation_confusion(e, 1, 0) == 2);
  CHECK(cn_evaluation_confusion(e, 3, 0) == 0 && cn_evaluation_confusion(e, 0, -1) == 0);
  CHECK(cn_evaluation_samples(e, 0) == 2 && cn_evaluation_predicted(e, 0) == 3);
  CHECK_NEAR(cn_evaluation_recall(e, 0), 0.5, 1e-12);
  CHECK_NEAR(cn_evaluation_precision(e, 0), 1.0 / 3, 1e-12);
  CHECK(cn_evaluation_recall(e, 1) == 0.0 && isnan(cn_evaluation_precision(e, 1)));
  CHECK_NEAR(cn_evaluation_precision(e, 2), 0.5, 1e-12);
  CHECK(isnan(cn_evaluation_recall(e, 5)));
  CHECK(cn_evaluation_skipped(e) == 0 && cn_evaluation_seconds(e) == 0.0);
  cn_evaluation_free(e);
  cn_evaluation_free(NULL);
}

static char root[1024];

static const char *at(const char *rel) {
  static char path[2048];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  return path;
}

static void write_file(const char *rel, const char *text, size_t n) {
  FILE *f = fopen(at(rel), "wb");
  CHECK(f != NULL);
  if (!f) return;
  fwrite(text, 1, n, f);
  fclose(f);
}

static void write_ppm(const char *rel) {
  const char ppm[] = "P6 2 2 255\n\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0";
  write_file(rel, ppm, sizeof ppm - 1);
}

static int messages;
static char last_message[1024];

static void on_message(void *ctx, const char *line) {
  (void)ctx;
  messages++;
  snprintf(last_message, sizeof last_message, "%s", line);
}

/* A 10-class model with zero weights: every score is equal, so every image is predicted as
 * class 0 (ties go to the lowest index) and classes 0..4 are in the top 5. */
static cn_model *named_mnist(void) {
  const char *json = cn_test_data("weights/keras/mnist_cnn.json");
  if (!json) cn_test_skip("weights/keras/mnist_cnn.json absent");
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  const char *names[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
  if (m) CHECK_OK(cn_model_set_class_names(m, names, 10));
  return m;
}

static void test_class_folders(cn_model *m) {
  snprintf(root, sizeof root, "%s/eval", cn_test_tmpdir());
  mkdir(root, 0755);
  mkdir(at("c7"), 0755);
  mkdir(at("c2"), 0755);
  write_ppm("c7/a.ppm");
  write_ppm("c7/b.ppm");
  write_ppm("c2/a.ppm");
  write_file("c2/notes.jpg", "not an image", 12);
  cn_dataset *ds = NULL;
  CHECK_OK(cn_dataset_scan_dir(root, 0, &ds));
  cn_evaluation *e = NULL;
  cn_evaluate_options o = {.batch = 3, .message = on_message};
  CHECK_OK(cn_evaluate(m, ds, &o, &e));
  /* folder 0 is c2 and folder 1 is c7 on disk; the model's own indices count */
  CHECK(cn_evaluation_class_count(e) == 10);
  CHECK(cn_evaluation_images(e) == 3 && cn_evaluation_skipped(e) == 1);
  CHECK(messages == 1 && strstr(last_message, "notes.jpg") != NULL);
  CHECK(cn_evaluation_samples(e, 7) == 2 && cn_evaluation_samples(e, 2) == 1);
  CHECK(cn_evaluation_confusion(e, 7, 0) == 2 && cn_evaluation_confusion(e, 2, 0) == 1);
  CHECK(cn_evaluation_correct(e) == 0 && cn_evaluation_top_k_correct(e) == 1);
  CHECK(cn_evaluation_seconds(e) > 0);
  cn_evaluation_free(e);

  o.fatal_bad_images = 1;
  CHECK(cn_evaluate(m, ds, &o, &e) != CN_OK && e == NULL);
  CHECK(strstr(cn_last_error(), "notes.jpg") != NULL);
  cn_dataset_free(ds);

  mkdir(at("zebra"), 0755);
  CHECK_OK(cn_dataset_scan_dir(root, CN_SCAN_EMPTY_CLASS, &ds));
  CHECK(cn_evaluate(m, ds, NULL, &e) == CN_ERR_ARG && e == NULL);
  CHECK(strstr(cn_last_error(), "'zebra'") != NULL);
  cn_dataset_free(ds);
}

static void test_files(cn_model *m) {
  char a[2048], b[2048], c[2048];
  snprintf(a, sizeof a, "%s", at("c7/a.ppm"));
  snprintf(b, sizeof b, "%s", at("c7/b.ppm"));
  snprintf(c, sizeof c, "%s", at("c2/a.ppm"));
  const char *paths[] = {a, b, c};
  const int labels[] = {0, 10, -1};
  cn_evaluation *e = NULL;
  messages = 0;
  cn_evaluate_options o = {.message = on_message};
  CHECK_OK(cn_evaluate_files(m, 3, paths, labels, &o, &e));
  CHECK(cn_evaluation_images(e) == 1 && cn_evaluation_correct(e) == 1);
  CHECK(cn_evaluation_skipped(e) == 2 && messages == 2);
  CHECK(strstr(last_message, "outside the model's 10 classes") != NULL);
  cn_evaluation_free(e);

  CHECK_OK(cn_evaluate_files(m, 0, NULL, NULL, NULL, &e));
  CHECK(cn_evaluation_images(e) == 0 && cn_evaluation_accuracy(e) == 0.0);
  cn_evaluation_free(e);

  o.batch = 257;
  CHECK(cn_evaluate_files(m, 3, paths, labels, &o, &e) == CN_ERR_ARG && e == NULL);
  cn_input_spec spec = cn_model_input_spec(m);
  spec.height += 1;
  o = (cn_evaluate_options){.spec = &spec};
  CHECK(cn_evaluate_files(m, 3, paths, labels, &o, &e) == CN_ERR_SHAPE && e == NULL);
  CHECK(cn_evaluate_files(NULL, 3, paths, labels, NULL, &e) == CN_ERR_ARG);
}

/* Every score is 0.1 (zero weights): every image is predicted as class 0, top-3 0, 1, 2; ties in
 * the true score keep file order. */
static void test_worst(cn_model *m) {
  char a[2048], b[2048], c[2048];
  snprintf(a, sizeof a, "%s", at("c7/a.ppm"));
  snprintf(b, sizeof b, "%s", at("c7/b.ppm"));
  snprintf(c, sizeof c, "%s", at("c2/a.ppm"));
  const char *paths[] = {a, b, c};
  const int labels[] = {3, 0, 5};
  cn_evaluation *e = NULL;
  cn_evaluate_options o = {.batch = 2, .worst = 1};
  CHECK_OK(cn_evaluate_files(m, 3, paths, labels, &o, &e));
  CHECK(cn_evaluation_worst_count(e) == 1);
  const cn_evaluation_miss *w = cn_evaluation_worst(e, 0);
  CHECK(w && strcmp(w->path, a) == 0 && w->truth == 3 && fabsf(w->truth_score - 0.1f) < 1e-5f);
  CHECK(w && w->top[0] == 0 && w->top[1] == 1 && w->top[2] == 2);
  CHECK(cn_evaluation_worst(e, 1) == NULL && cn_evaluation_worst(e, -1) == NULL);
  cn_evaluation_free(e);

  o.worst = 5; /* the correct image b is not kept */
  CHECK_OK(cn_evaluate_files(m, 3, paths, labels, &o, &e));
  CHECK(cn_evaluation_worst_count(e) == 2);
  CHECK(strcmp(cn_evaluation_worst(e, 0)->path, a) == 0);
  CHECK(strcmp(cn_evaluation_worst(e, 1)->path, c) == 0 && cn_evaluation_worst(e, 1)->truth == 5);
  cn_evaluation_free(e);

  o.worst = CN_EVAL_MAX_WORST + 1;
  CHECK(cn_evaluate_files(m, 3, paths, labels, &o, &e) == CN_ERR_ARG && e == NULL);
  o.worst = 0;
  CHECK_OK(cn_evaluate_files(m, 3, paths, labels, &o, &e));
  CHECK(cn_evaluation_worst_count(e) == 0);
  cn_evaluation_free(e);
}

/* ---- thread ranks standing in for an mpirun job (cn_test_run_ranks) ----------------------- */

enum { RANKS = 3, RANK_IMAGES = 9 };

typedef struct rank_job {
  const char *const *paths;
  const int *labels;
  cn_evaluate_options o;
  cn_evaluation *e;
  cn_status st;
  char error[1024];
} rank_job;

static void rank_evaluate(void *ctx, int rank, cn_group *group) {
  rank_job *j = (rank_job *)ctx + rank;
  cn_model *m = NULL; /* a model per rank: its forward pass keeps state */
  const char *names[] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"};
  j->o.group = group;
  j->st = cn_model_load(cn_test_data("weights/keras/mnist_cnn.json"), &m);
  if (j->st == CN_OK) j->st = cn_model_set_class_names(m, names, 10);
  if (j->st == CN_OK) j->st = cn_evaluate_files(m, RANK_IMAGES, j->paths, j->labels, &j->o, &j->e);
  snprintf(j->error, sizeof j->error, "%s", j->st == CN_OK ? "" : cn_last_error());
  cn_model_free(m);
}

/* cn_evaluate_files on `size` thread ranks with options o; jobs[r] holds rank r's outcome. */
static void run_ranks(int size, const char *const *paths, const int *labels,
                      const cn_evaluate_options *o, rank_job *jobs) {
  for (int r = 0; r < size; r++) jobs[r] = (rank_job){.paths = paths, .labels = labels, .o = *o};
  cn_test_run_ranks(size, rank_evaluate, jobs);
}

static void check_same_evaluation(const cn_evaluation *got, const cn_evaluation *want) {
  CHECK(got && cn_evaluation_images(got) == cn_evaluation_images(want));
  CHECK(cn_evaluation_skipped(got) == cn_evaluation_skipped(want));
  CHECK(cn_evaluation_top_k_correct(got) == cn_evaluation_top_k_correct(want));
  for (int t = 0; t < 10; t++)
    for (int p = 0; p < 10; p++)
      CHECK(cn_evaluation_confusion(got, t, p) == cn_evaluation_confusion(want, t, p));
  CHECK(cn_evaluation_worst_count(got) == cn_evaluation_worst_count(want));
  for (int i = 0; i < cn_evaluation_worst_count(want); i++) {
    const cn_evaluation_miss *g = cn_evaluation_worst(got, i), *w = cn_evaluation_worst(want, i);
    CHECK(g && strcmp(g->path, w->path) == 0 && g->truth == w->truth);
    CHECK(g && g->truth_score == w->truth_score && g->top[0] == w->top[0]);
  }
}

/* 9 images (one bad) in batches of 2 over 2 and 3 ranks: every rank gets the evaluation of one
 * process, worst images in file order (all scores tie); with fatal_bad_images every rank fails
 * naming the bad image. */
static void test_ranks(cn_model *m) {
  char a[2048], b[2048], c[2048], bad[2048];
  snprintf(a, sizeof a, "%s", at("c7/a.ppm"));
  snprintf(b, sizeof b, "%s", at("c7/b.ppm"));
  snprintf(c, sizeof c, "%s", at("c2/a.ppm"));
  snprintf(bad, sizeof bad, "%s", at("c2/notes.jpg"));
  const char *paths[RANK_IMAGES] = {a, b, c, a, bad, b, c, a, b};
  const int labels[RANK_IMAGES] = {3, 0, 5, 7, 1, 2, 0, 9, 4};
  cn_evaluate_options o = {.batch = 2, .worst = 6};
  cn_evaluation *one = NULL;
  CHECK_OK(cn_evaluate_files(m, RANK_IMAGES, paths, labels, &o, &one));
  CHECK(one && cn_evaluation_skipped(one) == 1 && cn_evaluation_worst_count(one) == 6);
  rank_job jobs[RANKS];
  for (int size = 2; one && size <= RANKS; size++) {
    run_ranks(size, paths, labels, &o, jobs);
    for (int r = 0; r < size; r++) {
      CHECK(jobs[r].st == CN_OK);
      if (jobs[r].st == CN_OK) check_same_evaluation(jobs[r].e, one);
      cn_evaluation_free(jobs[r].e);
    }
  }
  cn_evaluation_free(one);
  o.fatal_bad_images = 1;
  run_ranks(RANKS, paths, labels, &o, jobs);
  for (int r = 0; r < RANKS; r++) {
    CHECK(jobs[r].st == CN_ERR_FORMAT && jobs[r].e == NULL);
    CHECK(strstr(jobs[r].error, "notes.jpg") != NULL);
  }
}

static void remove_files(void) {
  const char *files[] = {"c7/a.ppm", "c7/b.ppm", "c2/a.ppm", "c2/notes.jpg", "c7", "c2", "zebra"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) remove(at(files[i]));
  remove(root);
}

int main(void) {
  test_accumulator();
  cn_model *m = named_mnist();
  if (m) {
    test_class_folders(m);
    test_files(m);
    test_worst(m);
    test_ranks(m);
    remove_files();
  }
  cn_model_free(m);
  return cn_test_finish();
}
