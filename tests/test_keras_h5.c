/* Keras loading: the real MobileNet file against an independent reference, the real MNIST
 * save_weights file, and hostile files written here with the HDF5 C API (missing layer, wrong
 * shape, NaN, unknown layer class, external link, absurd dataset size, not HDF5, truncated,
 * missing), each refused with a message naming the file or layer, both through the isolated
 * HDF5 reader (the default) and in-process. The isolation itself: a reader that crashes, hangs or
 * sends garbage (test hooks), and a file whose corrupt global heap makes libhdf5 read out of
 * bounds, are refused as damaged files, leaving no child process and no open descriptor. */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "convnet/model.h"
#include "model/model.h"
#include "testlib.h"

static char path_buf[8][512];

static const char *tmp_file(int slot, const char *name) {
  snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", cn_test_tmpdir(), name);
  return path_buf[slot];
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  fputs(text, f);
  fclose(f);
}

/* ---- the real files ------------------------------------------------------------------------ */

static float *read_f32(const char *rel, size_t n) {
  const char *path = cn_test_data(rel);
  if (!path) return NULL;
  FILE *f = fopen(path, "rb");
  float *x = malloc(n * sizeof *x);
  size_t got = f && x ? fread(x, sizeof *x, n, f) : 0;
  if (f) fclose(f);
  if (got != n) {
    free(x);
    return NULL;
  }
  return x;
}

static void check_against_reference(cn_model *m, const float *input, const char *probs_rel) {
  float *ref = read_f32(probs_rel, 1000), out[1000];
  CHECK(ref != NULL);
  if (!ref) return;
  CHECK_OK(cn_model_forward(m, 1, input, out));
  double diff = cn_test_max_abs_diff(out, ref, 1000);
  printf("%s: max |diff| %.3g\n", probs_rel, diff);
  CHECK(diff <= 1e-5);
  free(ref);
}

static void test_mobilenet(void) {
  const char *path = cn_test_data("weights/keras/mobilenet_v1_0.25_224.h5");
  if (!path) {
    printf("SKIP mobilenet: weights/keras/mobilenet_v1_0.25_224.h5 absent\n");
    return;
  }
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(path, &m));
  if (!m) return;
  cn_shape in = cn_model_input_shape(m), out = cn_model_output_shape(m);
  CHECK(in.rank == 3 && in.dim[0] == 224 && in.dim[2] == 3);
  CHECK(out.rank == 1 && out.dim[0] == 1000);
  cn_input_spec spec = cn_model_input_spec(m);
  CHECK(spec.preprocess == CN_PRE_TF && spec.height == 224 && spec.resize == CN_RESIZE_NEAREST);
  int64_t params = 0;
  for (int i = 0; i < m->graph->n_nodes; i++) params += cn_node_param_count(&m->graph->nodes[i]);
  CHECK(params == 475544);

  const size_t n = 224 * 224 * 3;
  float *x = calloc(n, sizeof *x);
  check_against_reference(m, x, "reference/mobilenet_v1_0.25_224.zeros.probs.f32");
  for (size_t y = 0; y < 224; y++)
    for (size_t c = 0; c < 224 * 3; c++)
      x[y * 224 * 3 + c] = (float)((y * 224 * 3 + c) % 256) / 127.5f - 1;
  check_against_reference(m, x, "reference/mobilenet_v1_0.25_224.pattern.probs.f32");
  free(x);
  float *photo = read_f32("reference/mobilenet_v1_0.25_224.chelsea_nearest.input.f32", n);
  CHECK(photo != NULL);
  if (photo)
    check_against_reference(m, photo, "reference/mobilenet_v1_0.25_224.chelsea_nearest.probs.f32");
  free(photo);
  cn_model_free(m);
}

static void test_mnist(void) {
  const char *json = cn_test_data("weights/keras/mnist_cnn.json");
  if (!json) {
    printf("SKIP mnist: weights/keras/mnist_cnn.json absent\n");
    return;
  }
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  if (!m) return;
  CHECK(cn_model_input_spec(m).preprocess == CN_PRE_UNIT);
  const char *weights = cn_test_data("weights/keras/mnist_cnn_weights.h5");
  CHECK(weights != NULL);
  if (weights) CHECK_OK(cn_model_load_weights(m, weights));
  int dense = cn_graph_find(m->graph, "dense_1");
  CHECK(dense >= 0 && m->graph->nodes[dense].params[1].data[0] != 0);
  float x[28 * 28] = {0}, y[10];
  for (int i = 0; i < 28 * 28; i++) x[i] = (float)((i * 37) % 256) / 255.0f;
  CHECK_OK(cn_model_forward(m, 1, x, y));
  double sum = 0;
  for (int i = 0; i < 10; i++) sum += y[i];
  CHECK_NEAR(sum, 1.0, 1e-5);
  cn_model_free(m);
}

/* ---- a small model and hostile weight files ------------------------------------------------ */

static const char *small_json =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"small\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 4, 4, 1], "
    "\"name\": \"in\"}},"
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv\", \"filters\": 2, "
    "\"kernel_size\": [3, 3],"
    " \"strides\": [1, 1], \"padding\": \"valid\", \"data_format\": \"channels_last\", "
    "\"activation\": \"linear\","
    " \"use_bias\": true}},"
    "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 3, \"activation\": "
    "\"linear\"}}"
    "]}}";

enum { BAD_NONE, BAD_MISSING_LAYER, BAD_SHAPE, BAD_NAN, BAD_EXTERNAL, BAD_ABSURD, BAD_INT };

/* h5py (and so Keras 3) writes variable-length UTF-8 strings; Keras 2 fixed-length ASCII. */
static int vlen_utf8_strings;

static void set_vlen_utf8_attr(hid_t loc, const char *name, const char *const *s, int n) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hsize_t dims = (hsize_t)n;
  hid_t space = H5Screate_simple(1, &dims, NULL);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, s);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

static void set_strings_attr(hid_t loc, const char *name, const char *const *s, int n) {
  if (vlen_utf8_strings && n > 0) {
    set_vlen_utf8_attr(loc, name, s, n);
    return;
  }
  size_t width = 1;
  for (int i = 0; i < n; i++)
    if (strlen(s[i]) > width) width = strlen(s[i]);
  char *buf = calloc((size_t)(n ? n : 1), width);
  for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * width, s[i], strlen(s[i]));
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, width);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  hsize_t dims = (hsize_t)n;
  hid_t space = H5Screate_simple(1, &dims, NULL);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, buf);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  free(buf);
}

static void set_string_attr(hid_t loc, const char *name, const char *value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, strlen(value));
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, value);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

static void write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                          const float *v) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(lcpl);
}

/* A chunked dataset whose declared extent is far beyond the file (no chunk is ever written). */
static void write_absurd_dataset(hid_t loc, const char *name) {
  hsize_t dims[2] = {1u << 14, 1u << 12}, chunk[2] = {16, 16};
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 2, chunk);
  hid_t space = H5Screate_simple(2, dims, NULL);
  hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
  H5Dclose(ds);
  H5Sclose(space);
  H5Pclose(dcpl);
  H5Pclose(lcpl);
}

static void write_layer(hid_t root, const char *layer, const char *const *wnames, int n) {
  hid_t g = H5Gcreate2(root, layer, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  set_strings_attr(g, "weight_names", wnames, n);
  H5Gclose(g);
}

/* save_weights layout for the small model; kernel values are index / 100. */
static const char *write_small_weights(int slot, const char *name, int bad, const char *backend) {
  const char *path = tmp_file(slot, name);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const char *all[] = {"in", "conv", "flatten", "dense"};
  set_strings_attr(f, "layer_names", all, bad == BAD_MISSING_LAYER ? 3 : 4);
  set_string_attr(f, "backend", backend);
  set_string_attr(f, "keras_version", "2.3.0");
  float v[64];
  for (int i = 0; i < 64; i++) v[i] = (float)i / 100;
  write_layer(f, "in", NULL, 0);
  write_layer(f, "flatten", NULL, 0);
  const char *conv_w[] = {"conv/kernel:0", "conv/bias:0"},
             *dense_w[] = {"dense/kernel:0", "dense/bias:0"};
  if (bad == BAD_EXTERNAL) {
    H5Lcreate_external("elsewhere.h5", "/conv", f, "conv", H5P_DEFAULT, H5P_DEFAULT);
  } else {
    write_layer(f, "conv", conv_w, 2);
    hsize_t k[4] = {3, 3, 1, 2}, kt[4] = {2, 1, 3, 3}, b[1] = {2};
    int oihw = bad == BAD_SHAPE || strcmp(backend, "theano") == 0;
    write_dataset(f, "conv/conv/kernel:0", 4, oihw ? kt : k, v);
    write_dataset(f, "conv/conv/bias:0", 1, b, v);
  }
  if (bad != BAD_MISSING_LAYER) {
    write_layer(f, "dense", dense_w, 2);
    hsize_t k[2] = {8, 3}, b[1] = {3};
    if (bad == BAD_ABSURD)
      write_absurd_dataset(f, "dense/dense/kernel:0");
    else
      write_dataset(f, "dense/dense/kernel:0", 2, k, v);
    if (bad == BAD_NAN) v[1] = NAN;
    if (bad == BAD_INT) {
      int iv[3] = {1, 2, 3};
      hid_t space = H5Screate_simple(1, b, NULL);
      hid_t ds = H5Dcreate2(f, "dense/dense/bias:0", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                            H5P_DEFAULT);
      H5Dwrite(ds, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, iv);
      H5Dclose(ds);
      H5Sclose(space);
    } else {
      write_dataset(f, "dense/dense/bias:0", 1, b, v);
    }
  }
  H5Fclose(f);
  return path;
}

static cn_model *small_model(void) {
  const char *json = tmp_file(0, "small.json");
  write_text(json, small_json);
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  return m;
}

static void expect_failure(cn_model *m, const char *path, const char *needle1,
                           const char *needle2) {
  cn_status st = cn_model_load_weights(m, path);
  const char *msg = cn_last_error();
  CHECK(st != CN_OK);
  CHECK(strstr(msg, needle1) != NULL);
  CHECK(!needle2 || strstr(msg, needle2) != NULL);
  printf("refused (%s): %s\n", cn_status_name(st), msg);
}

static void test_small_good(cn_model *m) {
  const char *path = write_small_weights(1, "good.h5", BAD_NONE, "tensorflow");
  CHECK_OK(cn_model_load_weights(m, path));
  cn_node *conv = &m->graph->nodes[cn_graph_find(m->graph, "conv")];
  cn_node *dense = &m->graph->nodes[cn_graph_find(m->graph, "dense")];
  CHECK_NEAR(conv->params[0].data[17], 0.17, 1e-7);
  CHECK_NEAR(dense->params[0].data[23], 0.23, 1e-7);
  CHECK_NEAR(dense->params[1].data[2], 0.02, 1e-7);
  /* Theano: stored (out, in, kh, kw) and flipped; element [o][0][y][x] = (o*9 + y*3 + x) / 100
   * lands at HWIO [2-y][2-x][0][o]. */
  path = write_small_weights(2, "theano.h5", BAD_NONE, "theano");
  CHECK_OK(cn_model_load_weights(m, path));
  const float *k = conv->params[0].data;
  CHECK_NEAR(k[((2 - 0) * 3 + (2 - 1)) * 2 + 1], (1 * 9 + 0 * 3 + 1) / 100.0, 1e-7);
  CHECK_NEAR(k[((2 - 2) * 3 + (2 - 2)) * 2 + 0], (0 * 9 + 2 * 3 + 2) / 100.0, 1e-7);
}

static void test_small_utf8_names(cn_model *m) {
  vlen_utf8_strings = 1;
  const char *path = write_small_weights(3, "utf8.h5", BAD_NONE, "tensorflow");
  vlen_utf8_strings = 0;
  CHECK_OK(cn_model_load_weights(m, path));
  cn_node *dense = &m->graph->nodes[cn_graph_find(m->graph, "dense")];
  CHECK_NEAR(dense->params[0].data[23], 0.23, 1e-7);
}

/* Keras 3 .weights.h5: layers/<class key>/vars/<i>, the layer's name in a scalar UTF-8
 * variable-length attribute of vars, as h5py writes it. */
static void test_small_keras3_layout(cn_model *m) {
  const char *path = tmp_file(4, "small.weights.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  float v[64];
  for (int i = 0; i < 64; i++) v[i] = (float)i / 50;
  hsize_t k[4] = {3, 3, 1, 2}, kb[1] = {2}, d[2] = {8, 3}, db[1] = {3};
  write_dataset(f, "layers/conv2d/vars/0", 4, k, v);
  write_dataset(f, "layers/conv2d/vars/1", 1, kb, v);
  write_dataset(f, "layers/dense/vars/0", 2, d, v);
  write_dataset(f, "layers/dense/vars/1", 1, db, v);
  const char *names[][2] = {{"layers/conv2d/vars", "conv"}, {"layers/dense/vars", "dense"}};
  for (int i = 0; i < 2; i++) {
    hid_t g = H5Gopen2(f, names[i][0], H5P_DEFAULT);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(g, "name", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(attr, type, &names[i][1]);
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    H5Gclose(g);
  }
  H5Fclose(f);
  CHECK_OK(cn_model_load_weights(m, path));
  cn_node *dense = &m->graph->nodes[cn_graph_find(m->graph, "dense")];
  CHECK_NEAR(dense->params[0].data[23], 0.46, 1e-7);
}

static void test_small_bad(cn_model *m) {
  expect_failure(m, write_small_weights(1, "missing_layer.h5", BAD_MISSING_LAYER, "tensorflow"),
                 "missing_layer.h5", "no weights for layer dense");
  expect_failure(m, write_small_weights(1, "wrong_shape.h5", BAD_SHAPE, "tensorflow"),
                 "conv/kernel: expected (3,3,1,2), file has (2,1,3,3)", "wrong_shape.h5");
  expect_failure(m, write_small_weights(1, "nan.h5", BAD_NAN, "tensorflow"),
                 "dense/bias: contains NaN", "nan.h5");
  expect_failure(m, write_small_weights(1, "external.h5", BAD_EXTERNAL, "tensorflow"), "external",
                 "external.h5");
  expect_failure(m, write_small_weights(1, "absurd.h5", BAD_ABSURD, "tensorflow"),
                 "dense/kernel: declares 268435456 bytes", "absurd.h5");
  expect_failure(m, write_small_weights(1, "int.h5", BAD_INT, "tensorflow"), "dense/bias",
                 "floating");

  const char *text = tmp_file(1, "not_hdf5.h5");
  write_text(text, "this is not an HDF5 file, just some text\n");
  expect_failure(m, text, "not_hdf5.h5", "HDF5");
  expect_failure(m, tmp_file(1, "no_such_file.h5"), "no_such_file.h5", NULL);

  /* Truncated: the first half of a good file. */
  const char *good = write_small_weights(2, "to_truncate.h5", BAD_NONE, "tensorflow");
  FILE *f = fopen(good, "rb");
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  const char *cut = tmp_file(1, "truncated.h5");
  f = fopen(cut, "wb");
  fwrite(buf, 1, n / 2, f);
  fclose(f);
  expect_failure(m, cut, "truncated.h5", NULL);
}

static void test_bad_model_config(void) {
  const char *path = tmp_file(1, "unknown_class.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  set_string_attr(f, "model_config",
                  "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                  "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 8, "
                  "8, 3], \"name\": \"i\"}},"
                  "{\"class_name\": \"Conv3D\", \"config\": {\"name\": \"vol\"}}]}}");
  H5Fclose(f);
  cn_model *m = NULL;
  cn_status st = cn_model_load(path, &m);
  CHECK(st == CN_ERR_UNSUPPORTED && m == NULL);
  CHECK(strstr(cn_last_error(), "unknown_class.h5: layer vol: unsupported layer class Conv3D") !=
        NULL);
  printf("refused: %s\n", cn_last_error());

  const char *cf = tmp_file(1, "channels_first.json");
  write_text(cf, "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
                 "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 3, "
                 "8, 8], \"name\": \"i\"}},"
                 "{\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"p\", "
                 "\"data_format\": \"channels_first\"}}]}}");
  st = cn_model_load(cf, &m);
  CHECK(st == CN_ERR_UNSUPPORTED && strstr(cn_last_error(), "channels_first") != NULL);

  const char *broken = tmp_file(1, "broken.json");
  write_text(broken, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [");
  CHECK(cn_model_load(broken, &m) == CN_ERR_FORMAT && strstr(cn_last_error(), "broken.json"));
  CHECK(cn_model_load(tmp_file(1, "absent.h5"), &m) == CN_ERR_IO);
}

/* ---- isolation of libhdf5 ------------------------------------------------------------------ */

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static int no_child_left(void) {
  return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void expect_damaged(cn_status st, const char *name) {
  const char *msg = cn_last_error();
  CHECK(st == CN_ERR_FORMAT);
  CHECK(strstr(msg, name) != NULL);
  CHECK(strstr(msg, ": damaged HDF5 file (the HDF5 library") != NULL);
  CHECK(strchr(msg, '\n') == NULL);
  printf("refused: %s\n", msg);
}

/* The reader child aborting, hanging (against a 1 s deadline) or answering nonsense. */
static void test_reader_faults(cn_model *m) {
  const char *good = write_small_weights(5, "faulty_reader.h5", BAD_NONE, "tensorflow");
  cn_node *dense = &m->graph->nodes[cn_graph_find(m->graph, "dense")];
  const char *faults[] = {"abort", "garbage", "hang"};
  int fds = open_fds();
  setenv("CONVNET_H5_TIMEOUT", "1", 1);
  for (int i = 0; i < 3; i++) {
    setenv("CONVNET_H5_TEST_FAULT", faults[i], 1);
    dense->params[0].data[23] = 42;
    double t0 = seconds();
    expect_damaged(cn_model_load_weights(m, good), "faulty_reader.h5");
    CHECK(seconds() - t0 < 20);
    CHECK(dense->params[0].data[23] == 42);
    cn_model *full = NULL;
    if (i < 2) expect_damaged(cn_model_load(good, &full), "faulty_reader.h5");
    CHECK(full == NULL);
    CHECK(no_child_left());
    CHECK(open_fds() == fds);
  }
  unsetenv("CONVNET_H5_TEST_FAULT");
  unsetenv("CONVNET_H5_TIMEOUT");
  CHECK_OK(cn_model_load_weights(m, good));
  CHECK_NEAR(dense->params[0].data[23], 0.23, 1e-7);
  CHECK(no_child_left());
}

/* The variable-length layer names live in a global heap collection ("GCOL", version, 3 reserved
 * bytes, 8-byte size, then objects: 2-byte index, 2-byte refcount, 4 reserved, 8-byte size, data).
 * Declaring the first object 256 MB long makes libhdf5 1.10 copy 256 MB out of a 4 kB buffer
 * (H5HG_read): a crash in-process, a damaged file here. */
static void test_corrupt_global_heap(cn_model *m) {
  vlen_utf8_strings = 1;
  const char *path = write_small_weights(6, "corrupt_heap.h5", BAD_NONE, "tensorflow");
  vlen_utf8_strings = 0;
  static unsigned char buf[1 << 16];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
  if (f) fclose(f);
  size_t at = 0;
  while (at + 40 <= n && memcmp(buf + at, "GCOL", 4) != 0) at++;
  CHECK(at + 40 <= n);
  if (at + 40 > n) return;
  uint64_t huge = (uint64_t)256 << 20;
  memcpy(buf + at + 16 + 8, &huge, 8); /* little-endian file, little-endian host */
  f = fopen(path, "wb");
  fwrite(buf, 1, n, f);
  fclose(f);
  int fds = open_fds();
  printf("corrupt_heap.h5 (a sanitizer build prints the reader child's report):\n");
  fflush(stdout);
  cn_status st = cn_model_load_weights(m, path);
  CHECK(st != CN_OK);
  printf("refused (%s): %s\n", cn_status_name(st), cn_last_error());
  CHECK(no_child_left());
  CHECK(open_fds() == fds);
}

/* The children of this thread, as the kernel lists them; the first one's pid in *first. */
static int child_pids(pid_t *first) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int n = 0;
  long pid;
  while (fscanf(f, "%ld", &pid) == 1)
    if (n++ == 0) *first = (pid_t)pid;
  fclose(f);
  return n;
}

/* CONVNET_H5_KEEP_READER=1: one reader child serves successive loads, good and bad; a reader that
 * crashed or was killed is replaced by a new one, and the load does not fail for it. */
static void test_kept_reader(cn_model *m) {
  const char *good = write_small_weights(7, "kept_reader.h5", BAD_NONE, "tensorflow");
  cn_node *dense = &m->graph->nodes[cn_graph_find(m->graph, "dense")];
  int fds = open_fds();
  setenv("CONVNET_H5_KEEP_READER", "1", 1);
  pid_t reader = 0, again = 0;
  CHECK_OK(cn_model_load_weights(m, good));
  CHECK(child_pids(&reader) == 1);
  dense->params[0].data[23] = 42;
  CHECK_OK(cn_model_load_weights(m, good));
  CHECK_NEAR(dense->params[0].data[23], 0.23, 1e-7);
  CHECK(child_pids(&again) == 1 && again == reader);
  printf("kept reader %d served two loads\n", (int)reader);

  /* a refused file leaves the reader usable and the caller's message intact */
  const char *nan = write_small_weights(6, "kept_nan.h5", BAD_NAN, "tensorflow");
  CHECK(cn_model_load_weights(m, nan) == CN_ERR_FORMAT);
  CHECK(strstr(cn_last_error(), "kept_nan.h5: dense/bias: contains NaN") != NULL);
  CHECK(cn_model_load_weights(m, tmp_file(5, "kept_not_there.h5")) == CN_ERR_IO);
  CHECK(child_pids(&again) == 1 && again == reader);

  /* killed between loads: the next load starts another */
  kill(reader, SIGKILL);
  CHECK_OK(cn_model_load_weights(m, good));
  CHECK(child_pids(&again) == 1 && again != reader);

  /* crashing during a load: that load fails, the next one gets a new reader */
  setenv("CONVNET_H5_TEST_FAULT", "abort", 1);
  CHECK(cn_model_load_weights(m, good) == CN_OK); /* the kept reader was forked without it */
  kill(again, SIGKILL);
  expect_damaged(cn_model_load_weights(m, good), "kept_reader.h5");
  unsetenv("CONVNET_H5_TEST_FAULT");
  CHECK_OK(cn_model_load_weights(m, good));
  CHECK(child_pids(&reader) == 1 && reader != again);

  unsetenv("CONVNET_H5_KEEP_READER");
  CHECK_OK(cn_model_load_weights(m, good)); /* a fresh reader of its own; the kept one stays */
  CHECK(child_pids(&again) == 1 && again == reader);
  CHECK(open_fds() == fds + 1); /* the kept reader's socket */
  kill(reader, SIGKILL);        /* the later checks want no child */
  waitpid(reader, NULL, 0);
}

/* Inputs the fuzzer found that crash libhdf5 itself in-process (fuzz/regressions/keras_h5, see
 * docs/fuzzing.md): through the public API libhdf5 runs in the reader child, and the caller
 * survives with no child or descriptor left. The overflow is a read past a libhdf5 buffer, so
 * what the child answers depends on the heap's contents: the status is printed, not checked. */
static void test_fuzz_regressions(void) {
  char json[4096], path[4096];
  cn_test_source("fuzz/corpus/keras_h5/small.json", json, sizeof json);
  cn_test_source("fuzz/regressions/keras_h5/h5aexists_overflow.h5", path, sizeof path);
  cn_model *m = NULL, *full = NULL;
  CHECK_OK(cn_model_load(json, &m)); /* fuzz_keras_h5's model, which the input was found with */
  if (!m) return;
  int fds = open_fds();
  cn_status st = cn_model_load_weights(m, path);
  printf("h5aexists_overflow.h5 as weights: %s%s%s\n", cn_status_name(st), st ? ": " : "",
         st ? cn_last_error() : "");
  CHECK(cn_model_load(path, &full) == CN_ERR_FORMAT && full == NULL);
  /* libhdf5 loops on this one: the reader child is killed at CONVNET_H5_TIMEOUT */
  cn_test_source("fuzz/regressions/keras_h5/libhdf5_loop.h5", path, sizeof path);
  setenv("CONVNET_H5_TIMEOUT", "1", 1);
  double t0 = seconds();
  CHECK(cn_model_load_weights(m, path) == CN_ERR_FORMAT && strstr(cn_last_error(), "in time"));
  CHECK(seconds() - t0 < 10);
  unsetenv("CONVNET_H5_TIMEOUT");
  CHECK(no_child_left());
  CHECK(open_fds() == fds);
  cn_model_free(m);
}

/* A fuzzer finding (fuzz/corpus/keras_h5/regress_declares_huge.h5): a 22 KB full-model file on
 * which libhdf5, in the reader child, allocated and filled 1.7 GB before failing. The child's
 * memory is bounded by the file's size (plus 256 MB), so the load fails cleanly and small; in
 * sanitizer builds too, where the allocator's hooks keep the count. */
static void test_reader_memory_bound(void) {
  char path[4096];
  cn_test_source("fuzz/corpus/keras_h5/regress_declares_huge.h5", path, sizeof path);
  cn_model *m = NULL;
  CHECK(cn_model_load(path, &m) == CN_ERR_FORMAT && m == NULL);
  printf("regress_declares_huge.h5: %s\n", cn_last_error());
  struct rusage ru;
  CHECK(getrusage(RUSAGE_CHILDREN, &ru) == 0 && ru.ru_maxrss < 1024 * 1024); /* KB: < 1 GB */
  printf("largest reader child so far: %ld MB\n", ru.ru_maxrss / 1024);
}

int main(void) {
  test_mobilenet();
  test_mnist();
  cn_model *m = small_model();
  if (m) {
    test_small_good(m);
    test_small_utf8_names(m);
    test_small_keras3_layout(m);
    test_small_bad(m);
    test_reader_faults(m);
    test_corrupt_global_heap(m);
    test_kept_reader(m);
    /* the same checks with libhdf5 in this process (CONVNET_H5_INPROCESS=1) */
    setenv("CONVNET_H5_INPROCESS", "1", 1);
    test_small_good(m);
    test_small_utf8_names(m);
    test_small_keras3_layout(m);
    test_small_bad(m);
    unsetenv("CONVNET_H5_INPROCESS");
    cn_model_free(m);
  }
  test_bad_model_config();
  test_fuzz_regressions();
  test_reader_memory_bound();
  return cn_test_finish();
}
