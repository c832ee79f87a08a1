/* IDX files (MNIST's format): every value type, plain and gzip (one or several members), the real
 * Fashion-MNIST and MNIST files, and damaged files refused with one line naming the file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "convnet/io.h"
#include "core/error.h"
#include "io/io.h"
#include "testlib.h"

typedef struct bytes {
  uint8_t *p;
  size_t n;
} bytes;

static void put(bytes *b, const void *src, size_t n) {
  b->p = realloc(b->p, b->n + n);
  memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void put_be32(bytes *b, uint32_t v) {
  uint8_t q[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, q, 4);
}

/* An IDX header for `type` and dims. */
static bytes header(uint8_t type, int rank, const uint32_t *dims) {
  bytes b = {0};
  uint8_t magic[4] = {0, 0, type, (uint8_t)rank};
  put(&b, magic, 4);
  for (int d = 0; d < rank; d++) put_be32(&b, dims[d]);
  return b;
}

/* One gzip member holding src. */
static bytes gzip(const uint8_t *src, size_t n) {
  z_stream z = {0};
  deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  bytes out = {malloc(deflateBound(&z, n) + 64), 0};
  z.next_in = (Bytef *)src;
  z.avail_in = (uInt)n;
  z.next_out = out.p;
  z.avail_out = (uInt)(deflateBound(&z, n) + 64);
  deflate(&z, Z_FINISH);
  out.n = z.total_out;
  deflateEnd(&z);
  return out;
}

static cn_status read_bytes(const bytes *b, cn_shape *s, float **v) {
  return cn_idx_read_memory(b->p, b->n, "t.idx", s, v);
}

/* Every type decodes to the same 2x3 values, plain and gzipped. */
static void test_types(void) {
  const float want[6] = {0, 1, 2, 100, 7, 5};
  const uint8_t types[] = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
  const uint32_t dims[2] = {2, 3};
  for (size_t t = 0; t < sizeof types; t++) {
    bytes b = header(types[t], 2, dims);
    for (int i = 0; i < 6; i++) {
      uint8_t v[8] = {0};
      int w = (int)want[i];
      switch (types[t]) {
      case 0x08:
      case 0x09:
        put(&b, (uint8_t[]){(uint8_t)w}, 1);
        break;
      case 0x0B:
        put(&b, (uint8_t[]){0, (uint8_t)w}, 2);
        break;
      case 0x0C:
        put_be32(&b, (uint32_t)w);
        break;
      case 0x0D: {
        uint32_t u;
        memcpy(&u, &want[i], 4);
        put_be32(&b, u);
        break;
      }
      default: {
        double d = want[i];
        uint64_t u;
        memcpy(&u, &d, 8);
        put_be32(&b, (uint32_t)(u >> 32));
        put_be32(&b, (uint32_t)u);
        (void)v;
      }
      }
    }
    bytes z = gzip(b.p, b.n);
    const bytes *forms[2] = {&b, &z};
    for (int f = 0; f < 2; f++) {
      cn_shape s;
      float *v = NULL;
      CHECK_OK(read_bytes(forms[f], &s, &v));
      CHECK(s.rank == 2 && s.dim[0] == 2 && s.dim[1] == 3);
      CHECK(v && memcmp(v, want, sizeof want) == 0);
      free(v);
    }
    free(b.p);
    free(z.p);
  }
  /* Negative values of the signed types. */
  bytes b = header(0x09, 1, (uint32_t[]){2});
  put(&b, (uint8_t[]){0xff, 0x80}, 2);
  cn_shape s;
  float *v = NULL;
  CHECK_OK(read_bytes(&b, &s, &v));
  CHECK(v && v[0] == -1 && v[1] == -128);
  free(v);
  free(b.p);
}

/* A file made of two gzip members (as `cat a.gz b.gz` gives) reads as their concatenation. */
static void test_gzip_members(void) {
  bytes b = header(0x08, 1, (uint32_t[]){300000});
  uint8_t *vals = malloc(300000);
  for (int i = 0; i < 300000; i++) vals[i] = (uint8_t)(i * 7);
  put(&b, vals, 300000);
  size_t half = b.n / 2;
  bytes g1 = gzip(b.p, half), g2 = gzip(b.p + half, b.n - half);
  put(&g1, g2.p, g2.n);
  cn_shape s;
  float *v = NULL;
  CHECK_OK(read_bytes(&g1, &s, &v));
  int same = v != NULL;
  for (int i = 0; same && i < 300000; i++) same = v[i] == vals[i];
  CHECK(same && s.dim[0] == 300000);
  free(v);
  free(vals);
  free(b.p);
  free(g1.p);
  free(g2.p);
}

static void expect_refused(const bytes *b, cn_status want, const char *words) {
  cn_shape s;
  float *v = (float *)b; /* must be reset to NULL on failure */
  cn_status st = read_bytes(b, &s, &v);
  CHECK(st == want);
  CHECK(v == NULL);
  if (st != want || !strstr(cn_last_error(), words) || !strstr(cn_last_error(), "t.idx"))
    fprintf(stderr, "  want '%s', got %s: %s\n", words, cn_status_name(st), cn_last_error());
  CHECK(strstr(cn_last_error(), words) != NULL);
  CHECK(strchr(cn_last_error(), '\n') == NULL);
}

static void test_damaged(void) {
  bytes empty = {0};
  expect_refused(&empty, CN_ERR_FORMAT, "not an IDX file");
  bytes b = header(0x08, 1, (uint32_t[]){4});
  b.p[0] = 1;
  expect_refused(&b, CN_ERR_FORMAT, "not an IDX file");
  b.p[0] = 0, b.p[2] = 0x0A;
  expect_refused(&b, CN_ERR_FORMAT, "unknown IDX value type 0x0a");
  b.p[2] = 0x08, b.p[3] = 0;
  expect_refused(&b, CN_ERR_UNSUPPORTED, "IDX rank 0");
  b.p[3] = 7;
  expect_refused(&b, CN_ERR_UNSUPPORTED, "IDX rank 7");
  b.p[3] = 2;
  expect_refused(&b, CN_ERR_FORMAT, "IDX header cut short");
  free(b.p);

  b = header(0x08, 2, (uint32_t[]){3, 0});
  expect_refused(&b, CN_ERR_FORMAT, "IDX dimension 1 is 0");
  free(b.p);
  b = header(0x0E, 3, (uint32_t[]){65536, 65536, 65536});
  expect_refused(&b, CN_ERR_LIMIT, "more than 268435456 values");
  free(b.p);
  /* A header that claims 2^28 values over four bytes of data: refused without a large buffer. */
  b = header(0x0D, 2, (uint32_t[]){16384, 16384});
  put(&b, "abcd", 4);
  expect_refused(&b, CN_ERR_FORMAT, "IDX data cut short: 1 of 268435456 values");
  bytes z = gzip(b.p, b.n);
  expect_refused(&z, CN_ERR_FORMAT, "IDX data cut short: 1 of 268435456 values");
  free(b.p);
  free(z.p);

  b = header(0x08, 1, (uint32_t[]){3});
  put(&b, "abcd", 4);
  expect_refused(&b, CN_ERR_FORMAT, "data after the 3 values");
  z = gzip(b.p, b.n);
  expect_refused(&z, CN_ERR_FORMAT, "data after the 3 values");
  b.n--;
  free(z.p);
  z = gzip(b.p, b.n);
  put(&z, "junk", 4);
  expect_refused(&z, CN_ERR_FORMAT, "data after the end of the gzip stream");
  z.n -= 4;
  z.p[z.n / 2] ^= 0x55;
  z.p[z.n / 2 + 1] ^= 0xAA;
  cn_shape s;
  float *v = NULL;
  cn_status st = read_bytes(&z, &s, &v); /* damage is found by inflate or the CRC, or not at all */
  CHECK(st == CN_OK || st == CN_ERR_FORMAT);
  free(v);
  z.n = 10; /* the gzip header alone */
  expect_refused(&z, CN_ERR_FORMAT, "not an IDX file");
  free(z.p);
  free(b.p);
}

static void test_files(void) {
  cn_shape s;
  float *v = NULL;
  CHECK(cn_idx_read(cn_test_tmpdir(), &s, &v) == CN_ERR_IO);
  CHECK(strstr(cn_last_error(), "is a folder") != NULL);
  CHECK(cn_idx_read("/nonexistent/x.idx", &s, &v) == CN_ERR_IO);
  CHECK(v == NULL);
  /* Fashion-MNIST's test set (shared data) and its training set (Debian's package). */
  const struct {
    const char *path;
    int64_t n;
    float first_label;
  } sets[] = {{"fashion-mnist/t10k", 10000, 9}, {"mnist/t10k", 10000, 7}};
  for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
    char rel[256], images[4096], labels[4096];
    snprintf(rel, sizeof rel, "%s-images-idx3-ubyte.gz", sets[i].path);
    const char *found = cn_test_data(rel);
    snprintf(images, sizeof images, "%s", found ? found : "");
    snprintf(rel, sizeof rel, "%s-labels-idx1-ubyte.gz", sets[i].path);
    found = cn_test_data(rel);
    snprintf(labels, sizeof labels, "%s", found ? found : "");
    if (!*images || !*labels) {
      printf("note: %s absent, skipped\n", sets[i].path);
      continue;
    }
    CHECK_OK(cn_idx_read(images, &s, &v));
    CHECK(s.rank == 3 && s.dim[0] == sets[i].n && s.dim[1] == 28 && s.dim[2] == 28);
    float lo = 255, hi = 0;
    for (int64_t k = 0; v && k < cn_shape_numel(&s); k++)
      lo = fminf(lo, v[k]), hi = fmaxf(hi, v[k]);
    CHECK(lo == 0 && hi == 255);
    free(v);
    CHECK_OK(cn_idx_read(labels, &s, &v));
    CHECK(s.rank == 1 && s.dim[0] == sets[i].n && v && v[0] == sets[i].first_label);
    free(v);
  }
  const char *train = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  if (cn_idx_read(train, &s, &v) == CN_OK) {
    CHECK(s.rank == 3 && s.dim[0] == 60000 && s.dim[1] == 28 && s.dim[2] == 28);
    free(v);
  } else {
    printf("note: %s unreadable (package dataset-fashion-mnist absent?)\n", train);
  }
}

int main(void) {
  test_types();
  test_gzip_members();
  test_damaged();
  test_files();
  return cn_test_finish();
}
