/* .npy reading and writing: round trips, float64 input, and every malformed file we can think of
 * refused with a clean status (never a crash or a huge allocation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convnet/io.h"
#include "testlib.h"

static char tmp_path[512];

static const char *tmp_file(const char *name) {
  snprintf(tmp_path, sizeof tmp_path, "%s/%s", cn_test_tmpdir(), name);
  return tmp_path;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(data, 1, n, f);
  fclose(f);
}

/* A .npy file with the given version, header text (padded to align 64) and raw data. */
static const char *make_npy(const char *name, int major, const char *header, const void *data,
                            size_t data_bytes) {
  unsigned char buf[1 << 16];
  size_t pre = major == 1 ? 10 : 12, hlen = strlen(header);
  memcpy(buf, "\x93NUMPY", 6);
  buf[6] = (unsigned char)major;
  buf[7] = 0;
  if (major == 1) {
    buf[8] = hlen & 0xff;
    buf[9] = (unsigned char)(hlen >> 8);
  } else {
    for (int i = 0; i < 4; i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
  }
  memcpy(buf + pre, header, hlen);
  if (data_bytes) memcpy(buf + pre + hlen, data, data_bytes);
  const char *path = tmp_file(name);
  write_bytes(path, buf, pre + hlen + data_bytes);
  return path;
}

static cn_status read_status(const char *path) {
  cn_shape shape;
  float *data = NULL;
  cn_status st = cn_npy_read(path, &shape, &data);
  free(data);
  return st;
}

static void test_round_trip(void) {
  float values[24];
  for (int i = 0; i < 24; i++) values[i] = (float)i * 0.5f - 3.25f;
  cn_shape shape = {4, {1, 2, 3, 4}};
  const char *path = tmp_file("round.npy");
  CHECK_OK(cn_npy_write(path, &shape, values));
  cn_shape back;
  float *data = NULL;
  CHECK_OK(cn_npy_read(path, &back, &data));
  CHECK(back.rank == 4 && back.dim[0] == 1 && back.dim[3] == 4);
  CHECK(data && memcmp(data, values, sizeof values) == 0);
  free(data);
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && (sb.st_size - 24 * 4) % 64 == 0); /* data aligned to 64 */

  cn_shape vec = {1, {3}}, scalar = {0, {0}}, empty = {2, {0, 5}};
  CHECK_OK(cn_npy_write(path, &vec, values));
  CHECK_OK(cn_npy_read(path, &back, &data));
  CHECK(back.rank == 1 && back.dim[0] == 3 && data[2] == values[2]);
  free(data);
  CHECK_OK(cn_npy_write(path, &scalar, values));
  CHECK_OK(cn_npy_read(path, &back, &data));
  CHECK(back.rank == 0 && data[0] == values[0]);
  free(data);
  CHECK_OK(cn_npy_write(path, &empty, values));
  CHECK_OK(cn_npy_read(path, &back, &data));
  CHECK(back.rank == 2 && back.dim[0] == 0 && back.dim[1] == 5);
  free(data);
}

static void test_float64_and_versions(void) {
  double d[3] = {1.5, -2.25, 1e-3};
  const char *h = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }        \n";
  cn_shape shape;
  float *data = NULL;
  CHECK_OK(cn_npy_read(make_npy("f8.npy", 1, h, d, sizeof d), &shape, &data));
  CHECK(shape.rank == 1 && shape.dim[0] == 3);
  CHECK(data && data[0] == 1.5f && data[1] == -2.25f && fabsf(data[2] - 1e-3f) < 1e-9f);
  free(data);
  float f[2] = {7, 8};
  const char *h2 = "{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
  CHECK_OK(cn_npy_read(make_npy("v2.npy", 2, h2, f, sizeof f), &shape, &data));
  CHECK(shape.rank == 2 && data && data[1] == 8);
  free(data);
  CHECK_OK(cn_npy_read(make_npy("v3.npy", 3, h2, f, sizeof f), &shape, &data));
  free(data);
}

/* Integer and bool arrays (shape inputs of ONNX graphs) arrive as floats. */
static void test_integers(void) {
  cn_shape shape;
  float *data;
  int64_t i8[3] = {-3, 0, 1 << 20};
  const char *h8 = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }\n";
  CHECK_OK(cn_npy_read(make_npy("i8.npy", 1, h8, i8, sizeof i8), &shape, &data));
  CHECK(shape.rank == 1 && shape.dim[0] == 3);
  CHECK(data[0] == -3.0f && data[1] == 0.0f && data[2] == (float)(1 << 20));
  free(data);
  int16_t i2[2] = {-7, 300};
  const char *h2 = "{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }\n";
  CHECK_OK(cn_npy_read(make_npy("i2.npy", 1, h2, i2, sizeof i2), &shape, &data));
  CHECK(data[0] == -7.0f && data[1] == 300.0f);
  free(data);
  uint8_t u1[2] = {255, 1};
  const char *hu = "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }\n";
  CHECK_OK(cn_npy_read(make_npy("u1.npy", 1, hu, u1, sizeof u1), &shape, &data));
  CHECK(data[0] == 255.0f && data[1] == 1.0f);
  free(data);
  const char *hb = "{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }\n";
  CHECK_OK(cn_npy_read(make_npy("b1.npy", 1, hb, (uint8_t[]){0, 1}, 2), &shape, &data));
  CHECK(data[0] == 0.0f && data[1] == 1.0f);
  free(data);
}

static void test_bad_files(void) {
  float f[8] = {0};
  const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n";
  CHECK(read_status(tmp_file("missing.npy")) == CN_ERR_IO);
  write_bytes(tmp_file("empty.npy"), "", 0);
  CHECK(read_status(tmp_path) == CN_ERR_FORMAT);
  write_bytes(tmp_file("magic.npy"), "\x93NUMPX\x01\x00\x10\x00", 10);
  CHECK(read_status(tmp_path) == CN_ERR_FORMAT);
  write_bytes(tmp_file("short.npy"), "\x93NUMPY\x01\x00\x40\x00{'descr'", 17);
  CHECK(read_status(tmp_path) == CN_ERR_FORMAT); /* truncated header */
  CHECK(read_status(make_npy("v9.npy", 9, good, f, 16)) == CN_ERR_UNSUPPORTED);
  CHECK(read_status(make_npy("trunc.npy", 1, good, f, 12)) == CN_ERR_FORMAT);
  CHECK(read_status(make_npy("extra.npy", 1, good, f, 20)) == CN_ERR_FORMAT);
  const char *bad_headers[] = {
      "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n",
      "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }\n",
      "{'descr': '<c8', 'fortran_order': False, 'shape': (2, 2), }\n",
      "{'descr': '<i3', 'fortran_order': False, 'shape': (2, 2), }\n",
      "{'descr': '|i4', 'fortran_order': False, 'shape': (2, 2), }\n",
      "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4), }\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2.0), }\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,4), }\n",
      "{'descr': '<f4', 'fortran_order': False}\n",
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} junk\n",
      "{'descr': '<f4', 'fortran_order': Nope, 'shape': (4,)}\n",
      "['descr', '<f4']\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (4,\n",
      "",
  };
  for (size_t i = 0; i < sizeof bad_headers / sizeof *bad_headers; i++) {
    cn_status st = read_status(make_npy("bad.npy", 1, bad_headers[i], f, 16));
    CHECK(st == CN_ERR_FORMAT || st == CN_ERR_UNSUPPORTED || st == CN_ERR_LIMIT);
    if (st == CN_OK) fprintf(stderr, "accepted header %zu: %s", i, bad_headers[i]);
  }
  /* a shape whose size is far beyond the file (and beyond memory): refused before allocating */
  const char *huge =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100000), }\n";
  CHECK(read_status(make_npy("huge.npy", 1, huge, f, 16)) == CN_ERR_LIMIT);
  const char *overflow =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999999, 99999999999), }\n";
  CHECK(read_status(make_npy("overflow.npy", 1, overflow, f, 16)) == CN_ERR_LIMIT);
  /* a declared header length past the end of the file */
  write_bytes(tmp_file("hlen.npy"), "\x93NUMPY\x02\x00\xff\xff\xff\x7f{", 13);
  CHECK(read_status(tmp_path) == CN_ERR_LIMIT);
  /* a directory */
  CHECK(read_status(cn_test_tmpdir()) != CN_OK);
}

static void test_write_errors(void) {
  float f[1] = {0};
  cn_shape shape = {1, {1}};
  CHECK(cn_npy_write("/nonexistent-dir/x.npy", &shape, f) == CN_ERR_IO);
  cn_shape negative = {1, {-1}};
  CHECK(cn_npy_write(tmp_file("neg.npy"), &negative, f) == CN_ERR_ARG);
  /* a failed write leaves no temporary file behind */
  char cmd[600];
  snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", cn_test_tmpdir());
  CHECK(system(cmd) != 0);
}

int main(void) {
  test_round_trip();
  test_float64_and_versions();
  test_integers();
  test_bad_files();
  test_write_errors();
  return cn_test_finish();
}
