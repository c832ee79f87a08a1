/* safetensors: round trips of every dtype, the 64-byte data alignment, the data checksum, and
 * every malformed file we can think of refused with a one-line error naming the file. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/native/safetensors.h"
#include "testlib.h"

static char tmp_path[512];

static const char *tmp_file(const char *name) {
  snprintf(tmp_path, sizeof tmp_path, "%s/%s", cn_test_tmpdir(), name);
  return tmp_path;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

/* A file of an 8-byte length (hlen, or the header's length when hlen is 0), the header and n data
 * bytes (a byte pattern). */
static const char *make_file(const char *name, uint64_t hlen, const char *header, size_t n) {
  size_t len = strlen(header);
  unsigned char *buf = calloc(1, 8 + len + n + 1);
  if (!hlen) hlen = len;
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, header, len);
  for (size_t i = 0; i < n; i++) buf[8 + len + i] = (unsigned char)i;
  const char *path = tmp_file(name);
  write_bytes(path, buf, 8 + len + n);
  free(buf);
  return path;
}

/* The file is refused with this status and a single-line message that names it. */
static void check_refused(const char *path, cn_status want, const char *word) {
  cn_safetensors *f = NULL;
  cn_status st = cn_safetensors_open(path, &f);
  const char *msg = cn_last_error();
  CHECK(st == want);
  CHECK(f == NULL);
  CHECK(strstr(msg, path) != NULL);
  CHECK(strchr(msg, '\n') == NULL);
  if (word) CHECK(strstr(msg, word) != NULL);
  if (getenv("CN_TEST_VERBOSE")) fprintf(stderr, "  %s\n", msg);
  if (st != want || (word && !strstr(msg, word)))
    fprintf(stderr, "  %s: got %s: %s\n", path, cn_status_name(st), msg);
  cn_safetensors_close(f);
}

static void test_round_trip(void) {
  float w[6] = {1.5f, -2.25f, 0.0f, INFINITY, -0.0f, 3.0e-38f};
  int64_t step[1] = {1234567890123LL};
  uint8_t rng[5] = {1, 2, 3, 250, 255};
  cn_st_tensor t[] = {
      {.name = "rng", .dtype = CN_ST_U8, .shape = {1, {5}}, .data = rng},
      {.name = "dense/kernel", .dtype = CN_ST_F32, .shape = {2, {2, 3}}, .data = w},
      {.name = "empty", .dtype = CN_ST_F32, .shape = {2, {0, 4}}, .data = NULL},
      {.name = "step", .dtype = CN_ST_I64, .shape = {0, {0}}, .data = step},
  };
  cn_st_meta meta[] = {{"format", "test"}, {"quote", "a \"b\"\n\\c é"}};
  const char *path = tmp_file("round.safetensors");
  CHECK_OK(cn_safetensors_write(path, t, 4, meta, 2));
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(path, &f));
  if (!f) return;
  CHECK(cn_safetensors_count(f) == 4);
  CHECK(strcmp(cn_safetensors_meta(f, "format"), "test") == 0);
  CHECK(strcmp(cn_safetensors_meta(f, "quote"), meta[1].value) == 0);
  CHECK(strlen(cn_safetensors_meta(f, CN_ST_CHECKSUM_KEY)) == 64);
  CHECK(cn_safetensors_meta(f, "absent") == NULL);
  float back[6];
  CHECK_OK(cn_safetensors_read(f, "dense/kernel", CN_ST_F32, &t[1].shape, back));
  CHECK(memcmp(back, w, sizeof w) == 0);
  int64_t step_back = 0;
  CHECK_OK(cn_safetensors_read(f, "step", CN_ST_I64, &t[3].shape, &step_back));
  CHECK(step_back == step[0]);
  uint8_t rng_back[5];
  CHECK_OK(cn_safetensors_read(f, "rng", CN_ST_U8, &t[0].shape, rng_back));
  CHECK(memcmp(rng_back, rng, 5) == 0);
  const cn_st_tensor *e = cn_safetensors_find(f, "empty");
  CHECK(e && e->bytes == 0 && e->shape.rank == 2 && e->shape.dim[0] == 0);
  /* Largest elements first: the I64 leads, then the F32s, the U8 last. */
  CHECK(cn_safetensors_at(f, 0)->dtype == CN_ST_I64);
  CHECK(cn_safetensors_at(f, 3)->dtype == CN_ST_U8);
  cn_shape wrong = {2, {3, 2}};
  CHECK(cn_safetensors_read(f, "dense/kernel", CN_ST_F32, &wrong, back) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "expected (3,2), file has (2,3)") != NULL);
  CHECK(cn_safetensors_read(f, "step", CN_ST_F32, &t[3].shape, back) == CN_ERR_FORMAT);
  CHECK(cn_safetensors_read(f, "nothing", CN_ST_F32, &t[3].shape, back) == CN_ERR_FORMAT);
  cn_safetensors_close(f);
}

static long file_size(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fclose(f);
  return n;
}

/* The data starts at a multiple of 64 and every tensor at a multiple of its element size. */
static void test_alignment(void) {
  static float a[3] = {1, 2, 3}, c[5];
  static uint8_t b[3] = {7, 8, 9};
  static int64_t d[2] = {-1, 1};
  cn_st_tensor t[] = {{.name = "b", .dtype = CN_ST_U8, .shape = {1, {3}}, .data = b},
                      {.name = "a", .dtype = CN_ST_F32, .shape = {1, {3}}, .data = a},
                      {.name = "d", .dtype = CN_ST_I64, .shape = {1, {2}}, .data = d},
                      {.name = "c", .dtype = CN_ST_F32, .shape = {1, {5}}, .data = c}};
  const char *path = tmp_file("align.safetensors");
  CHECK_OK(cn_safetensors_write(path, t, 4, NULL, 0));
  long size = file_size(path);
  CHECK((size - (3 + 12 + 16 + 20)) % 64 == 0);
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(path, &f));
  if (!f) return;
  const unsigned char *base = cn_safetensors_at(f, 0)->data;
  CHECK(((uintptr_t)base & 63) == 0); /* the mapping is page aligned */
  for (int i = 0; i < cn_safetensors_count(f); i++) {
    const cn_st_tensor *x = cn_safetensors_at(f, i);
    CHECK((uintptr_t)x->data % cn_st_dtype_size(x->dtype) == 0);
  }
  cn_safetensors_close(f);
  /* No temporary file is left beside the target. */
  DIR *dir = opendir(cn_test_tmpdir());
  int leftovers = 0;
  for (struct dirent *de; dir && (de = readdir(dir));)
    leftovers += strstr(de->d_name, ".tmp") != NULL;
  if (dir) closedir(dir);
  CHECK(leftovers == 0);
}

static void test_checksum(void) {
  float w[16];
  for (int i = 0; i < 16; i++) w[i] = (float)i;
  cn_st_tensor t = {.name = "w", .dtype = CN_ST_F32, .shape = {1, {16}}, .data = w};
  const char *path = tmp_file("sum.safetensors");
  CHECK_OK(cn_safetensors_write(path, &t, 1, NULL, 0));
  long size = file_size(path);
  FILE *f = fopen(path, "r+b");
  fseek(f, size - 5, SEEK_SET);
  fputc(0x55, f);
  fclose(f);
  check_refused(path, CN_ERR_CHECKSUM, "checksum");
}

static void test_writer_refusals(void) {
  float w[2] = {0};
  cn_st_tensor t[2] = {{.name = "x", .dtype = CN_ST_F32, .shape = {1, {2}}, .data = w},
                       {.name = "x", .dtype = CN_ST_F32, .shape = {1, {2}}, .data = w}};
  const char *path = tmp_file("bad_write.safetensors");
  CHECK(cn_safetensors_write(path, t, 2, NULL, 0) == CN_ERR_ARG);
  t[1].name = "y";
  t[1].dtype = (cn_st_dtype)7;
  CHECK(cn_safetensors_write(path, t, 2, NULL, 0) == CN_ERR_ARG);
  t[1].dtype = CN_ST_F32;
  t[1].name = "__metadata__";
  CHECK(cn_safetensors_write(path, t, 2, NULL, 0) == CN_ERR_ARG);
  cn_st_meta meta[2] = {{"k", "1"}, {"k", "2"}};
  CHECK(cn_safetensors_write(path, t, 1, meta, 2) == CN_ERR_ARG);
  meta[0].key = CN_ST_CHECKSUM_KEY;
  CHECK(cn_safetensors_write(path, t, 1, meta, 1) == CN_ERR_ARG);
  CHECK(cn_safetensors_write("/nonexistent-dir/x.safetensors", t, 1, NULL, 0) == CN_ERR_IO);
  CHECK(file_size(path) < 0);
}

#define ENTRY(name, dtype, shape, b, e)                                                            \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_bad_files(void) {
  write_bytes(tmp_file("empty.safetensors"), "", 0);
  check_refused(tmp_path, CN_ERR_FORMAT, "truncated");
  write_bytes(tmp_file("short.safetensors"), "\x10\0\0", 3);
  check_refused(tmp_path, CN_ERR_FORMAT, "truncated");
  check_refused(make_file("beyond.safetensors", 1000, "{}", 0), CN_ERR_FORMAT, "header of 1000");
  check_refused(make_file("huge_header.safetensors", (uint64_t)1 << 40, "{}", 0), CN_ERR_LIMIT,
                "limit");
  check_refused(make_file("cut_header.safetensors", 0, "{\"a\":{\"dtype\":\"F32\",\"sha", 0),
                CN_ERR_FORMAT, "JSON");
  check_refused(make_file("array.safetensors", 0, "[1,2]", 0), CN_ERR_FORMAT, "JSON object");
  check_refused(make_file("string.safetensors", 0, "\"x\"", 0), CN_ERR_FORMAT, "JSON object");
  check_refused(make_file("trailing.safetensors", 0, "{} x", 0), CN_ERR_FORMAT, "after");
  check_refused(make_file("cut_data.safetensors", 0, "{" ENTRY("a", "F32", "[4]", 0, 16) "}", 10),
                CN_ERR_FORMAT, "beyond");
  check_refused(
      make_file("overlap.safetensors", 0,
                "{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}", 12),
      CN_ERR_FORMAT, "overlap");
  check_refused(
      make_file("gap.safetensors", 0,
                "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 8, 12) "}", 12),
      CN_ERR_FORMAT, "gap");
  check_refused(make_file("extra.safetensors", 0, "{" ENTRY("a", "F32", "[1]", 0, 4) "}", 8),
                CN_ERR_FORMAT, "cover");
  check_refused(make_file("range.safetensors", 0, "{" ENTRY("a", "F32", "[1]", 8, 4) "}", 8),
                CN_ERR_FORMAT, "begin <= end");
  check_refused(make_file("size.safetensors", 0, "{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8),
                CN_ERR_FORMAT, "needs 12 bytes");
  check_refused(
      make_file("big.safetensors", 0, "{" ENTRY("a", "F32", "[1099511627776]", 0, 4) "}", 4),
      CN_ERR_FORMAT, "needs");
  check_refused(make_file("overflow.safetensors", 0,
                          "{" ENTRY("a", "F32", "[1099511627776,1099511627776]", 0, 4) "}", 4),
                CN_ERR_LIMIT, "too large");
  check_refused(make_file("dtype.safetensors", 0, "{" ENTRY("a", "BF16", "[2]", 0, 4) "}", 4),
                CN_ERR_UNSUPPORTED, "BF16");
  check_refused(make_file("neg.safetensors", 0, "{" ENTRY("a", "F32", "[-1]", 0, 4) "}", 4),
                CN_ERR_FORMAT, "dimension");
  check_refused(make_file("frac.safetensors", 0, "{" ENTRY("a", "U8", "[2]", 0, 1.5) "}", 4),
                CN_ERR_FORMAT, "data_offsets");
  check_refused(
      make_file("rank.safetensors", 0, "{" ENTRY("a", "U8", "[1,1,1,1,1,1,1]", 0, 1) "}", 1),
      CN_ERR_UNSUPPORTED, "rank 7");
  check_refused(make_file("dup.safetensors", 0,
                          "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}",
                          8),
                CN_ERR_FORMAT, "twice");
  check_refused(make_file("key.safetensors", 0,
                          "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}",
                          1),
                CN_ERR_FORMAT, "'x'");
  check_refused(make_file("missing.safetensors", 0, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
                CN_ERR_FORMAT, "data_offsets");
  check_refused(make_file("entry.safetensors", 0, "{\"a\":[1]}", 0), CN_ERR_FORMAT,
                "not an object");
  check_refused(make_file("meta_obj.safetensors", 0, "{\"__metadata__\":[]}", 0), CN_ERR_FORMAT,
                "__metadata__");
  check_refused(make_file("meta_str.safetensors", 0, "{\"__metadata__\":{\"k\":1}}", 0),
                CN_ERR_FORMAT, "not a string");
  check_refused(
      make_file("meta_dup.safetensors", 0, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0),
      CN_ERR_FORMAT, "twice");
  check_refused(
      make_file("sum_bad.safetensors", 0,
                "{\"__metadata__\":{\"convnet.sha256\":\"00\"}," ENTRY("a", "U8", "[1]", 0, 1) "}",
                1),
      CN_ERR_CHECKSUM, "checksum");
}

/* Files in the layout other writers use: no metadata, no padding, zero-size tensors. */
static void test_foreign_files(void) {
  const char *path =
      make_file("plain.safetensors", 0,
                "{" ENTRY("z", "F32", "[0]", 0, 0) "," ENTRY("a", "U8", "[3]", 0, 3) "}", 3);
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(path, &f));
  if (!f) return;
  CHECK(cn_safetensors_count(f) == 2);
  CHECK(cn_safetensors_meta_count(f) == 0);
  const cn_st_tensor *a = cn_safetensors_find(f, "a");
  CHECK(a && a->bytes == 3 && ((const uint8_t *)a->data)[2] == 2);
  cn_safetensors_close(f);
  /* Header padded with spaces, as the format allows. */
  CHECK_OK(cn_safetensors_open(make_file("padded.safetensors", 0, "{}      ", 0), &f));
  cn_safetensors_close(f);
}

int main(void) {
  test_round_trip();
  test_alignment();
  test_checksum();
  test_writer_refusals();
  test_bad_files();
  test_foreign_files();
  return cn_test_finish();
}
