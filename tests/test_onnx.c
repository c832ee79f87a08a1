/* ONNX import: a small model built here with protobuf-c runs with the values worked out by hand;
 * hostile models (truncated, corrupt, cyclic, lying tensor sizes, huge shapes, unknown operators,
 * undefined inputs) each fail with a one-line error naming the problem. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#define CN_ONNX_ENTRY_ONLY
#include "io/onnx/internal.h"
#include "testlib.h"

/* ---- a minimal protobuf writer, so that tests can also write what no encoder would ---------- */

typedef struct pb {
  uint8_t data[4096];
  size_t len;
} pb;

static void pb_byte(pb *b, uint8_t v) {
  if (b->len < sizeof b->data) b->data[b->len++] = v;
}

static void pb_varint(pb *b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) pb_byte(b, (uint8_t)(v | 0x80));
  pb_byte(b, (uint8_t)v);
}

static void pb_int(pb *b, int field, int64_t v) {
  pb_varint(b, (uint64_t)field << 3);
  pb_varint(b, (uint64_t)v);
}

static void pb_bytes(pb *b, int field, const void *data, size_t len) {
  pb_varint(b, (uint64_t)field << 3 | 2);
  pb_varint(b, len);
  for (size_t k = 0; k < len; k++) pb_byte(b, ((const uint8_t *)data)[k]);
}

static void pb_str(pb *b, int field, const char *s) {
  pb_bytes(b, field, s, strlen(s));
}

static void pb_msg(pb *b, int field, const pb *m) {
  pb_bytes(b, field, m->data, m->len);
}

/* ValueInfoProto of a float tensor with fixed dims. */
static void value_info(pb *out, int field, const char *name, int rank, const int64_t *dims) {
  pb shape = {0}, tensor = {0}, type = {0}, vi = {0};
  for (int k = 0; k < rank; k++) {
    pb dim = {0};
    pb_int(&dim, 1, dims[k]);
    pb_msg(&shape, 1, &dim);
  }
  pb_int(&tensor, 1, 1);
  pb_msg(&tensor, 2, &shape);
  pb_msg(&type, 1, &tensor);
  pb_str(&vi, 1, name);
  pb_msg(&vi, 2, &type);
  pb_msg(out, field, &vi);
}

static void node(pb *graph, const char *op, const char *in0, const char *in1, const char *out) {
  pb n = {0};
  pb_str(&n, 1, in0);
  if (in1) pb_str(&n, 1, in1);
  pb_str(&n, 2, out);
  pb_str(&n, 3, out);
  pb_str(&n, 4, op);
  pb_msg(graph, 1, &n);
}

/* What a test may change in the model. */
typedef struct spec {
  const char *mul_input, *relu_op, *relu_input, *output;
  int64_t const_dims[3];
  int raw_bytes; /* > 0: the constant's data as raw_data of this many bytes */
  int n_floats;  /* float_data values (default 1) */
  int no_opset;
} spec;

static spec base_spec(void) {
  return (spec){"x", "Relu", "m", "y", {1, 1, 1}, 0, 1, 0};
}

/* x (1,1,2,2) -> Mul by the constant 2 (per channel) -> Relu -> y. */
static size_t build(const spec *s, uint8_t *buf) {
  static const int64_t shape[] = {1, 1, 2, 2};
  pb graph = {0}, model = {0}, init = {0}, opset = {0};
  node(&graph, "Mul", s->mul_input, "two", "m");
  node(&graph, s->relu_op, s->relu_input, NULL, "y");
  for (int k = 0; k < 3; k++) pb_int(&init, 1, s->const_dims[k]);
  pb_int(&init, 2, 1);
  for (int k = 0; k < s->n_floats; k++) {
    float two = 2.0f;
    pb_varint(&init, 4 << 3 | 5);
    for (int j = 0; j < 4; j++) pb_byte(&init, ((uint8_t *)&two)[j]);
  }
  pb_str(&init, 8, "two");
  if (s->raw_bytes) pb_bytes(&init, 9, "\0\0\0\x40\0\0\0\0", (size_t)s->raw_bytes);
  pb_msg(&graph, 5, &init);
  value_info(&graph, 11, "x", 4, shape);
  value_info(&graph, 12, s->output, 4, shape);
  pb_int(&model, 1, 8);
  pb_msg(&model, 7, &graph);
  pb_int(&opset, 2, 13);
  if (!s->no_opset) pb_msg(&model, 8, &opset);
  memcpy(buf, model.data, model.len);
  return model.len;
}

/* Loads the model of s; returns the status (and frees any model). */
static cn_status load(const spec *s) {
  uint8_t buf[4096];
  size_t size = build(s, buf);
  cn_model *m = NULL;
  cn_status st = cn_onnx_load_buffer(buf, size, "test.onnx", &m);
  cn_model_free(m);
  return st;
}

static int one_line_containing(const char *needle) {
  const char *e = cn_last_error();
  int ok = strstr(e, needle) != NULL && strchr(e, '\n') == NULL;
  if (!ok) fprintf(stderr, "  error was: %s (wanted '%s')\n", e, needle);
  return ok;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_runs(void) {
  spec s = base_spec();
  uint8_t buf[4096];
  size_t size = build(&s, buf);
  cn_model *m = NULL;
  CHECK_OK(cn_onnx_load_buffer(buf, size, "test.onnx", &m));
  if (!m) return;
  CHECK(cn_model_input_count(m) == 1 && cn_model_output_count(m) == 1);
  cn_shape in = cn_model_input_shape_at(m, 0);
  CHECK(in.rank == 3 && in.dim[0] == 1 && in.dim[1] == 2 && in.dim[2] == 2);
  const float x[4] = {1, -2, 3, -4};
  float y[4] = {0};
  const float *xs[1] = {x};
  float *ys[1] = {y};
  CHECK_OK(cn_model_forward_multi(m, 1, xs, ys));
  CHECK(y[0] == 2 && y[1] == 0 && y[2] == 6 && y[3] == 0);
  cn_model_free(m);
}

static void test_truncated_and_corrupt(void) {
  spec s = base_spec();
  uint8_t buf[4096], bad[4096];
  size_t size = build(&s, buf);
  int failures = 0;
  for (size_t cut = 0; cut < size; cut++) {
    cn_model *m = NULL;
    cn_status st = cn_onnx_load_buffer(buf, cut, "cut.onnx", &m);
    if (st != CN_OK)
      failures += strchr(cn_last_error(), '\n') == NULL;
    else
      failures++; /* a prefix that happens to parse: fine too */
    cn_model_free(m);
  }
  CHECK(failures == (int)size);
  srand(1);
  for (int trial = 0; trial < 500; trial++) {
    memcpy(bad, buf, size);
    for (int k = 0; k < 3; k++) bad[(size_t)rand() % size] = (uint8_t)rand();
    cn_model *m = NULL;
    cn_onnx_load_buffer(bad, size, "corrupt.onnx", &m); /* must not crash either way */
    cn_model_free(m);
  }
  const uint8_t junk[] = "this is not a protobuf message at all \xff\xff\xff\xff";
  cn_model *m = NULL;
  CHECK(cn_onnx_load_buffer(junk, sizeof junk, "junk.onnx", &m) == CN_ERR_FORMAT);
  CHECK(one_line_containing("junk.onnx"));
}

static void test_cycle(void) {
  spec s = base_spec();
  s.mul_input = "y"; /* Mul reads Relu's output, which reads Mul's */
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("cycle through node"));
}

static void test_tensor_sizes(void) {
  spec s = base_spec();
  s.n_floats = 0;
  s.raw_bytes = 3; /* one float needs 4 bytes */
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("raw_data has 3 bytes"));

  s = base_spec();
  s.n_floats = 0;
  s.raw_bytes = 8; /* two floats for one element */
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("raw_data has 8 bytes"));

  s = base_spec();
  s.n_floats = 2;
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("holds 2 values"));

  s = base_spec();
  s.const_dims[0] = s.const_dims[1] = (int64_t)1 << 20; /* 2^40 elements */
  CHECK(load(&s) == CN_ERR_LIMIT);
  CHECK(one_line_containing("elements"));

  s = base_spec();
  s.const_dims[1] = -1;
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("negative"));
}

static void test_unsupported_and_missing(void) {
  spec s = base_spec();
  s.relu_op = "FancyOp";
  CHECK(load(&s) == CN_ERR_UNSUPPORTED);
  CHECK(one_line_containing("operator FancyOp is not supported"));

  s = base_spec();
  s.relu_input = "nowhere";
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("'nowhere' is not defined"));

  s = base_spec();
  s.output = "absent";
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("absent"));

  s = base_spec();
  s.no_opset = 1;
  CHECK(load(&s) == CN_ERR_FORMAT);
  CHECK(one_line_containing("opset"));
}

/* x (2, 3) -> Softmax over axis 0 -> [MaxPool 1x1 ->] y: the graph works across ONNX's first
 * axis, so each tensor is one engine sample. */
static size_t build_softmax_axis0(int with_pool, uint8_t *buf) {
  static const int64_t shape[] = {2, 3}, shape4[] = {2, 3, 1, 1};
  pb graph = {0}, model = {0}, opset = {0}, softmax = {0}, axis = {0};
  pb_str(&softmax, 1, "x");
  pb_str(&softmax, 2, with_pool ? "s" : "y");
  pb_str(&softmax, 3, "softmax");
  pb_str(&softmax, 4, "Softmax");
  pb_str(&axis, 1, "axis");
  pb_int(&axis, 3, 0);
  pb_int(&axis, 20, 2); /* INT */
  pb_msg(&softmax, 5, &axis);
  pb_msg(&graph, 1, &softmax);
  if (with_pool) {
    pb pool = {0}, kernel = {0};
    pb_str(&pool, 1, "s");
    pb_str(&pool, 2, "y");
    pb_str(&pool, 3, "pool");
    pb_str(&pool, 4, "MaxPool");
    pb_str(&kernel, 1, "kernel_shape");
    pb_int(&kernel, 8, 1);
    pb_int(&kernel, 8, 1);
    pb_int(&kernel, 20, 7); /* INTS */
    pb_msg(&pool, 5, &kernel);
    pb_msg(&graph, 1, &pool);
  }
  value_info(&graph, 11, "x", with_pool ? 4 : 2, with_pool ? shape4 : shape);
  value_info(&graph, 12, "y", with_pool ? 4 : 2, with_pool ? shape4 : shape);
  pb_int(&model, 1, 8);
  pb_msg(&model, 7, &graph);
  pb_int(&opset, 2, 13);
  pb_msg(&model, 8, &opset);
  memcpy(buf, model.data, model.len);
  return model.len;
}

static void test_whole_tensor_as_one_sample(void) {
  uint8_t buf[4096];
  size_t size = build_softmax_axis0(0, buf);
  cn_model *m = NULL;
  CHECK_OK(cn_onnx_load_buffer(buf, size, "softmax0.onnx", &m));
  if (!m) return;
  cn_shape in = cn_model_input_shape_at(m, 0);
  CHECK(in.rank == 2 && in.dim[0] == 2 && in.dim[1] == 3); /* the full ONNX shape */
  const float x[6] = {0, 1, 2, 0, 3, 2};
  float y[6] = {0};
  const float *xs[1] = {x};
  float *ys[1] = {y};
  CHECK_OK(cn_model_forward_multi(m, 1, xs, ys));
  CHECK_NEAR(y[0], 0.5, 1e-6);                /* equal column */
  CHECK_NEAR(y[1], 1 / (1 + exp(2.0)), 1e-6); /* e^1 / (e^1 + e^3) */
  CHECK_NEAR(y[1] + y[4], 1, 1e-6);
  cn_model_free(m);

  /* With a 2-D pooling too, no import works: the first error (the batch axis) is reported. */
  size = build_softmax_axis0(1, buf);
  CHECK(cn_onnx_load_buffer(buf, size, "softmax0_pool.onnx", &m) == CN_ERR_UNSUPPORTED);
  CHECK(one_line_containing("softmax (Softmax): axis 0 (the batch axis)"));
  cn_model_free(m);
}

static void test_missing_file(void) {
  cn_model *m = NULL;
  CHECK(cn_onnx_load("/nonexistent/model.onnx", &m) == CN_ERR_IO);
  CHECK(one_line_containing("/nonexistent/model.onnx"));
}

/* A real architecture from the ONNX test data loads and keeps its NCHW input shape. */
static void test_light_vgg19(void) {
  const char *path = cn_test_data("onnx/light/light_vgg19.onnx");
  if (!path) {
    fprintf(stderr, "note: light_vgg19.onnx absent, skipping that part\n");
    return;
  }
  cn_model *m = NULL;
  CHECK_OK(cn_onnx_load(path, &m));
  if (!m) return;
  cn_shape in = cn_model_input_shape(m), out = cn_model_output_shape(m);
  CHECK(in.rank == 3 && in.dim[0] == 3 && in.dim[1] == 224 && in.dim[2] == 224);
  CHECK(cn_shape_numel(&out) == 1000);
  cn_model_free(m);
}

/* A fuzzer finding (fuzz/corpus/onnx/regress_nameless_input.onnx): a graph input without a name
 * reached strcmp as NULL (UBSan); it is refused by name now. */
static void test_nameless_input(void) {
  char path[4096];
  cn_test_source("fuzz/corpus/onnx/regress_nameless_input.onnx", path, sizeof path);
  cn_model *m = NULL;
  CHECK(cn_model_load(path, &m) == CN_ERR_FORMAT && m == NULL);
  CHECK(strstr(cn_last_error(), "has no name") != NULL);
}

int main(void) {
  test_runs();
  test_nameless_input();
  test_truncated_and_corrupt();
  test_cycle();
  test_tensor_sizes();
  test_unsupported_and_missing();
  test_whole_tensor_as_one_sample();
  test_missing_file();
  test_light_vgg19();
  return cn_test_finish();
}
