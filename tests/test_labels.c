/* Labels: the built-in ImageNet table against Keras' own class index, the three file formats,
 * CRLF, and malformed files refused with the file name and line. */
#include <stdlib.h>
#include <string.h>

#include "convnet/io.h"
#include "testlib.h"

static char tmp_path[512];

static const char *write_text(const char *name, const char *text) {
  snprintf(tmp_path, sizeof tmp_path, "%s/%s", cn_test_tmpdir(), name);
  FILE *f = fopen(tmp_path, "wb");
  fputs(text, f);
  fclose(f);
  return tmp_path;
}

static void test_builtin(void) {
  cn_labels *l = NULL;
  CHECK_OK(cn_labels_imagenet(&l));
  CHECK(cn_labels_count(l) == 1000);
  CHECK(strcmp(cn_labels_name(l, 0), "tench") == 0);
  CHECK(strcmp(cn_labels_id(l, 0), "n01440764") == 0);
  CHECK(strcmp(cn_labels_name(l, 967), "espresso") == 0);
  CHECK(strcmp(cn_labels_id(l, 967), "n07920052") == 0);
  CHECK(strcmp(cn_labels_name(l, 999), "toilet_tissue") == 0);
  CHECK(cn_labels_name(l, 1000) == NULL && cn_labels_id(l, 1000) == NULL);
  cn_labels_free(l);
}

/* The built-in table equals Keras' imagenet_class_index.json read through the JSON loader, and the
 * WordNet ids equal synset_words.txt line by line. */
static void test_against_shared_files(void) {
  const char *json = cn_test_data("labels/imagenet_class_index.json");
  const char *synset = json ? cn_test_data("labels/synset_words.txt") : NULL;
  if (!json || !synset) {
    printf("note: shared label files absent, comparison skipped\n");
    return;
  }
  cn_labels *builtin = NULL, *from_json = NULL, *from_synset = NULL;
  CHECK_OK(cn_labels_imagenet(&builtin));
  CHECK_OK(cn_labels_load(cn_test_data("labels/imagenet_class_index.json"), &from_json));
  CHECK_OK(cn_labels_load(cn_test_data("labels/synset_words.txt"), &from_synset));
  CHECK(cn_labels_count(from_json) == 1000 && cn_labels_count(from_synset) == 1000);
  int same = 1;
  for (size_t i = 0; i < 1000 && from_json && from_synset; i++) {
    same &= strcmp(cn_labels_name(builtin, i), cn_labels_name(from_json, i)) == 0;
    same &= strcmp(cn_labels_id(builtin, i), cn_labels_id(from_json, i)) == 0;
    same &= strcmp(cn_labels_id(builtin, i), cn_labels_id(from_synset, i)) == 0;
  }
  CHECK(same);
  if (from_synset) CHECK(strcmp(cn_labels_name(from_synset, 0), "tench, Tinca tinca") == 0);
  cn_labels_free(builtin);
  cn_labels_free(from_json);
  cn_labels_free(from_synset);
}

static void test_formats(void) {
  cn_labels *l = NULL;
  CHECK_OK(cn_labels_load(write_text("plain.txt", "cat\r\ndog\r\n\r\n"), &l));
  CHECK(cn_labels_count(l) == 2 && strcmp(cn_labels_name(l, 1), "dog") == 0);
  CHECK(cn_labels_id(l, 0) == NULL);
  cn_labels_free(l);
  CHECK_OK(cn_labels_load(write_text("nofinal.txt", "\xEF\xBB\xBFone\ntwo"), &l));
  CHECK(cn_labels_count(l) == 2 && strcmp(cn_labels_name(l, 0), "one") == 0);
  cn_labels_free(l);
  CHECK_OK(cn_labels_load(write_text("syn.txt", "n00000001 a thing, b\r\nn00000002 other\n"), &l));
  CHECK(cn_labels_count(l) == 2 && strcmp(cn_labels_id(l, 1), "n00000002") == 0);
  CHECK(strcmp(cn_labels_name(l, 0), "a thing, b") == 0);
  cn_labels_free(l);
  CHECK_OK(cn_labels_load(
      write_text("idx.json", "{\"1\": [\"n2\", \"b\"],\r\n \"0\": [\"n1\", \"a\"]}"), &l));
  CHECK(cn_labels_count(l) == 2 && strcmp(cn_labels_name(l, 0), "a") == 0);
  CHECK(strcmp(cn_labels_id(l, 1), "n2") == 0);
  cn_labels_free(l);
}

/* Each bad file gives the expected status and a message naming the file (and line when given). */
static void expect_bad(const char *name, const char *text, cn_status want, const char *where) {
  cn_labels *l = (cn_labels *)1;
  cn_status st = cn_labels_load(write_text(name, text), &l);
  CHECK(st == want);
  CHECK(l == NULL);
  CHECK(strstr(cn_last_error(), where) != NULL);
  if (st != want || !strstr(cn_last_error(), where))
    fprintf(stderr, "  %s: got %s \"%s\", wanted \"%s\"\n", name, cn_status_name(st),
            cn_last_error(), where);
}

static void test_bad_files(void) {
  cn_labels *l = NULL;
  CHECK(cn_labels_load("/nonexistent/labels.txt", &l) == CN_ERR_IO);
  expect_bad("empty.txt", "", CN_ERR_FORMAT, "empty.txt: no labels");
  expect_bad("blank.txt", "\n\n", CN_ERR_FORMAT, "blank.txt: no labels");
  expect_bad("hole.txt", "a\n\nb\n", CN_ERR_FORMAT, "hole.txt:2: empty line");
  expect_bad("synbad.txt", "n00000001 a\nn0000002 b\n", CN_ERR_FORMAT, "synbad.txt:2:");
  expect_bad("synnoname.txt", "n00000001 a\nn00000002 \n", CN_ERR_FORMAT, "synnoname.txt:2:");
  expect_bad("ctrl.txt", "a\nb\x01\n", CN_ERR_FORMAT, "ctrl.txt:2:");
  expect_bad("bad.json", "{\"0\": [\"n1\", \"a\"],\n \"1\": [\"n2\" \"b\"]}", CN_ERR_FORMAT,
             "bad.json:2: invalid JSON");
  expect_bad("gap.json", "{\"0\": [\"n1\", \"a\"], \"2\": [\"n2\", \"b\"]}", CN_ERR_FORMAT,
             "gap.json: key \"2\"");
  expect_bad("dup.json", "{\"0\": [\"n1\", \"a\"], \"0\": [\"n2\", \"b\"]}", CN_ERR_FORMAT,
             "dup.json: class index 0 appears twice");
  expect_bad("neg.json", "{\"-1\": [\"n1\", \"a\"]}", CN_ERR_FORMAT, "neg.json: key \"-1\"");
  expect_bad("lead0.json", "{\"00\": [\"n1\", \"a\"]}", CN_ERR_FORMAT, "lead0.json: key");
  expect_bad("shape.json", "{\"0\": [\"n1\"]}", CN_ERR_FORMAT, "shape.json: entry \"0\"");
  expect_bad("types.json", "{\"0\": [\"n1\", 5]}", CN_ERR_FORMAT, "types.json: entry \"0\"");
  expect_bad("array.json", "{}", CN_ERR_FORMAT, "array.json: expected");
  expect_bad("trail.json", "{\"0\": [\"n1\", \"a\"]} x", CN_ERR_FORMAT, "trail.json:1:");
  /* NUL byte, over-long line */
  snprintf(tmp_path, sizeof tmp_path, "%s/nul.txt", cn_test_tmpdir());
  FILE *f = fopen(tmp_path, "wb");
  fwrite("a\0b\n", 1, 4, f);
  fclose(f);
  CHECK(cn_labels_load(tmp_path, &l) == CN_ERR_FORMAT);
  char *long_line = malloc(10000);
  memset(long_line, 'x', 9999);
  long_line[9999] = '\0';
  expect_bad("long.txt", long_line, CN_ERR_LIMIT, "long.txt:1:");
  free(long_line);
  /* more labels than the limit */
  char *many = malloc(300001);
  for (int i = 0; i < 150000; i++) memcpy(many + 2 * i, "a\n", 2);
  many[300000] = '\0';
  expect_bad("many.txt", many, CN_ERR_LIMIT, "many.txt: more than");
  free(many);
}

int main(void) {
  test_builtin();
  test_against_shared_files();
  test_formats();
  test_bad_files();
  return cn_test_finish();
}
