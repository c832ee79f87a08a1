/* PyTorch checkpoints: pickles and files crafted here byte by byte (legacy stream and zip), the
 * layout conversions into a small model, and hostile input (a pickle naming os.system, truncated
 * files, offsets and sizes outside their storage, deep MARK nesting, huge memo indices, a 2^40
 * element shape), each refused with a one-line message. Files written by torch itself are tested
 * in tests/oracle/test_efficientnet_lite.py, which also drives this program as a harness:
 *   test_pytorch --dump FILE.pth OUTDIR        each float32 tensor as OUTDIR/<key>.npy
 *   test_pytorch --forward ZOO_NAME FILE.pth IN.npy OUT.npy */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "convnet/convnet.h"
#include "core/error.h"
#include "core/file.h"
#include "model/model.h"
#include "io/pytorch/internal.h"
#include "ops/ops.h"
#include "pytorch_small_model.h"
#include "testlib.h"

/* ---- a byte buffer for pickles and files ------------------------------------------------------
 */

typedef struct buf {
  uint8_t data[8192];
  size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
  if (b->n + n > sizeof b->data) abort();
  memcpy(b->data + b->n, p, n);
  b->n += n;
}

static void put1(buf *b, int v) {
  uint8_t c = (uint8_t)v;
  put(b, &c, 1);
}

static void put_str(buf *b, const char *s) { /* BINUNICODE */
  uint32_t n = (uint32_t)strlen(s);
  put1(b, 'X');
  put(b, &n, 4);
  put(b, s, n);
}

static void put_int(buf *b, int64_t v) { /* BININT (4 bytes) */
  int32_t x = (int32_t)v;
  put1(b, 'J');
  put(b, &x, 4);
}

static void put_global(buf *b, const char *module, const char *name) {
  put1(b, 'c');
  put(b, module, strlen(module));
  put1(b, '\n');
  put(b, name, strlen(name));
  put1(b, '\n');
}

static void put_int_tuple(buf *b, const int64_t *v, int n) {
  put1(b, '(');
  for (int i = 0; i < n; i++) put_int(b, v[i]);
  put1(b, 't');
}

typedef struct tensor_desc {
  const char *name, *storage_type;
  int64_t numel, offset;
  int rank;
  int64_t size[4], stride[4];
} tensor_desc;

/* A state_dict pickle: OrderedDict of tensors, all on storage "0". */
static void put_state_dict(buf *b, const tensor_desc *t, int n) {
  put(b, "\x80\x02", 2);
  put_global(b, "collections", "OrderedDict");
  put(b, ")R", 2);
  for (int i = 0; i < n; i++) {
    put_str(b, t[i].name);
    put_global(b, "torch._utils", "_rebuild_tensor_v2");
    put1(b, '(');
    put1(b, '(');
    put_str(b, "storage");
    put_global(b, "torch", t[i].storage_type ? t[i].storage_type : "FloatStorage");
    put_str(b, "0");
    put_str(b, "cpu");
    put_int(b, t[i].numel);
    put(b, "tQ", 2);
    put_int(b, t[i].offset);
    put_int_tuple(b, t[i].size, t[i].rank);
    put_int_tuple(b, t[i].stride, t[i].rank);
    put1(b, 0x89);
    put_global(b, "collections", "OrderedDict");
    put(b, ")R", 2);
    put(b, "tRs", 3);
  }
  put1(b, '.');
}

/* The legacy stream: magic, protocol 1001, sys_info, state, keys ["0"], storage "0". */
static void put_legacy(buf *b, const buf *state, int64_t numel, const float *values, size_t n) {
  static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                  0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
  put(b, magic, sizeof magic);
  put(b, "\x80\x02M\xe9\x03.", 6);
  put(b, "\x80\x02}.", 4);
  put(b, state->data, state->n);
  put(b, "\x80\x02](", 4);
  put_str(b, "0");
  put(b, "e.", 2);
  put(b, &numel, 8);
  put(b, values, n * sizeof *values);
}

static const float six[6] = {1, 2, 3, 4, 5, 6};

static cn_status read_one(const tensor_desc *t, int64_t stored, cn_pt_state *out) {
  buf state = {0}, file = {0};
  put_state_dict(&state, t, 1);
  put_legacy(&file, &state, stored, six, (size_t)stored);
  return cn_pt_read_memory(file.data, file.n, "crafted.pth", out);
}

static int error_has(const char *text) {
  if (strstr(cn_last_error(), text)) return 1;
  fprintf(stderr, "error '%s' lacks '%s'\n", cn_last_error(), text);
  return 0;
}

/* ---- readers ----------------------------------------------------------------------------------
 */

static void test_legacy_views(void) {
  cn_pt_state s;
  tensor_desc t = {"w", NULL, 6, 0, 2, {2, 3}, {3, 1}};
  CHECK_OK(read_one(&t, 6, &s));
  CHECK(s.n == 1 && s.t[0].shape.rank == 2 && s.t[0].shape.dim[1] == 3);
  CHECK(s.n == 1 && s.t[0].data[5] == 6.0f);
  cn_pt_state_free(&s);
  /* A transposed view (stride (1,3)) with an offset is materialised in row-major order. */
  tensor_desc v = {"v", NULL, 6, 1, 2, {2, 2}, {1, 3}};
  CHECK_OK(read_one(&v, 6, &s));
  CHECK(s.n == 1 && s.t[0].data[0] == 2 && s.t[0].data[1] == 5 && s.t[0].data[2] == 3 &&
        s.t[0].data[3] == 6);
  cn_pt_state_free(&s);
  /* Integer tensors are listed without data. */
  tensor_desc l = {"n", "LongStorage", 1, 0, 0, {0}, {0}};
  buf state = {0}, file = {0};
  put_state_dict(&state, &l, 1);
  int64_t one = 1;
  put_legacy(&file, &state, 1, (const float *)&one, 2);
  CHECK_OK(cn_pt_read_memory(file.data, file.n, "long.pth", &s));
  CHECK(s.n == 1 && s.t[0].dtype == CN_PT_INT64 && !s.t[0].data);
  cn_pt_state_free(&s);
}

static void test_bad_views(void) {
  cn_pt_state s;
  tensor_desc off = {"w", NULL, 6, 5, 2, {2, 3}, {3, 1}};
  CHECK(read_one(&off, 6, &s) == CN_ERR_FORMAT && error_has("w: offset 5"));
  tensor_desc big = {"w", NULL, 6, 0, 2, {3, 3}, {3, 1}};
  CHECK(read_one(&big, 6, &s) == CN_ERR_FORMAT && error_has("storage of 6"));
  /* The stream holds fewer elements than the pickle declares. */
  tensor_desc t = {"w", NULL, 6, 0, 2, {2, 3}, {3, 1}};
  CHECK(read_one(&t, 4, &s) == CN_ERR_FORMAT && error_has("holds 4 elements"));
  /* 2^40 elements through zero strides: refused before any allocation. */
  tensor_desc huge = {"w", NULL, 6, 0, 2, {1 << 20, 1 << 20}, {0, 0}};
  CHECK(read_one(&huge, 6, &s) == CN_ERR_LIMIT && error_has("more than"));
  tensor_desc neg = {"w", NULL, 6, 0, 2, {2, -3}, {3, 1}};
  CHECK(read_one(&neg, 6, &s) == CN_ERR_FORMAT);
}

static void test_truncated_legacy(void) {
  buf state = {0}, file = {0};
  tensor_desc t = {"w", NULL, 6, 0, 2, {2, 3}, {3, 1}};
  put_state_dict(&state, &t, 1);
  put_legacy(&file, &state, 6, six, 6);
  int refused = 0;
  for (size_t n = 0; n < file.n; n++) {
    cn_pt_state s;
    refused += cn_pt_read_memory(file.data, n, "cut.pth", &s) != CN_OK;
  }
  CHECK(refused == (int)file.n);
}

/* A pickle body (after PROTO) run as a legacy state pickle. */
static cn_status run_state_pickle(const buf *state) {
  buf file = {0};
  put_legacy(&file, state, 6, six, 6);
  cn_pt_state s;
  cn_status st = cn_pt_read_memory(file.data, file.n, "evil.pth", &s);
  if (st == CN_OK) cn_pt_state_free(&s);
  return st;
}

static void test_hostile_pickles(void) {
  buf b = {0};
  put(&b, "\x80\x02", 2);
  put_global(&b, "os", "system");
  put_str(&b, "echo owned");
  put(&b, "\x85R.", 3);
  CHECK(run_state_pickle(&b) == CN_ERR_UNSUPPORTED &&
        error_has("refusing pickle global os.system"));
  buf sg = {0}; /* the same through STACK_GLOBAL */
  put(&sg, "\x80\x04", 2);
  put_str(&sg, "builtins");
  put_str(&sg, "eval");
  put(&sg, "\x93.", 2);
  CHECK(run_state_pickle(&sg) == CN_ERR_UNSUPPORTED && error_has("builtins.eval"));
  buf marks = {0};
  put(&marks, "\x80\x02", 2);
  for (int i = 0; i < 1000; i++) put1(&marks, '(');
  CHECK(run_state_pickle(&marks) == CN_ERR_LIMIT && error_has("MARK"));
  buf memo = {0};
  put(&memo, "\x80\x02}r\xff\xff\xff\xff.", 9);
  CHECK(run_state_pickle(&memo) == CN_ERR_LIMIT && error_has("memo"));
  buf get = {0};
  put(&get, "\x80\x02j\x00\x00\x10\x00.", 8);
  CHECK(run_state_pickle(&get) == CN_ERR_FORMAT && error_has("memo index not set"));
  buf op = {0};
  put(&op, "\x80\x02\x81.", 4); /* NEWOBJ */
  CHECK(run_state_pickle(&op) == CN_ERR_UNSUPPORTED && error_has("opcode 0x81"));
  buf under = {0};
  put(&under, "\x80\x02s.", 4);
  CHECK(run_state_pickle(&under) == CN_ERR_FORMAT);
  buf empty = {0}; /* MARK TUPLE on an empty stack: an empty tuple, not a state dict */
  put(&empty, "\x80\x02(t.", 5);
  CHECK(run_state_pickle(&empty) == CN_ERR_FORMAT);
  buf empty_list = {0}; /* EMPTY_LIST, MARK, APPENDS with nothing after the mark */
  put(&empty_list, "\x80\x02](e.", 6);
  CHECK(run_state_pickle(&empty_list) == CN_ERR_FORMAT);
  buf bad_magic = {0};
  put(&bad_magic, "\x80\x02K\x01.", 5);
  cn_pt_state s;
  CHECK(cn_pt_read_memory(bad_magic.data, bad_magic.n, "m.pth", &s) == CN_ERR_FORMAT &&
        error_has("magic"));
  CHECK(cn_pt_read_memory("hello", 5, "t.pth", &s) == CN_ERR_FORMAT);
  CHECK(cn_pt_read("/nonexistent/x.pth", &s) == CN_ERR_IO);
}

/* ---- zip files ----------------------------------------------------------------------------------
 */

static const char *write_zip(const char *name, const buf *pkl, const void *storage, size_t bytes) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", cn_test_tmpdir(), name);
  int err;
  zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
  zip_source_t *a = zip_source_buffer(z, pkl->data, pkl->n, 0);
  zip_file_add(z, "archive/data.pkl", a, 0);
  zip_source_t *d = zip_source_buffer(z, storage, bytes, 0);
  zip_file_add(z, "archive/data/0", d, 0);
  zip_source_t *o = zip_source_buffer(z, "little", 6, 0);
  zip_file_add(z, "archive/byteorder", o, 0);
  zip_close(z);
  return path;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  static uint8_t data[1 << 16];
  *n = f ? fread(data, 1, sizeof data, f) : 0;
  if (f) fclose(f);
  return data;
}

static void test_zip(void) {
  buf pkl = {0};
  tensor_desc t = {"w", NULL, 6, 0, 2, {2, 3}, {3, 1}};
  put_state_dict(&pkl, &t, 1);
  cn_pt_state s;
  CHECK_OK(cn_pt_read(write_zip("ok.pth", &pkl, six, sizeof six), &s));
  CHECK(s.n == 1 && s.t[0].data[4] == 5.0f);
  cn_pt_state_free(&s);
  /* The storage entry is shorter than the elements the pickle declares. */
  CHECK(cn_pt_read(write_zip("short.pth", &pkl, six, 16), &s) == CN_ERR_FORMAT &&
        error_has("has 16 bytes"));
  /* Every truncation of a valid zip is refused without a crash. */
  size_t n;
  uint8_t *data = slurp(write_zip("cut.pth", &pkl, six, sizeof six), &n);
  int refused = 0;
  for (size_t cut = 0; cut < n; cut += 7) refused += cn_pt_read_memory(data, cut, "c", &s) != CN_OK;
  CHECK(refused == (int)((n + 6) / 7));
  buf evil = {0};
  put(&evil, "\x80\x02", 2);
  put_global(&evil, "os", "system");
  put(&evil, ".", 1);
  CHECK(cn_pt_read(write_zip("evil.pth", &evil, six, sizeof six), &s) == CN_ERR_UNSUPPORTED &&
        error_has("os.system"));
}

/* ---- into a model -------------------------------------------------------------------------------
 */

static cn_pt_tensor tensor(const char *name, int rank, const int64_t *dims) {
  cn_pt_tensor t = {.name = strdup(name), .dtype = CN_PT_FLOAT32, .shape = {rank, {0}}};
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= (t.shape.dim[i] = dims[i]);
  t.data = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++) t.data[i] = (float)i;
  return t;
}

static void test_load_state(void) {
  cn_model *m = pytorch_small_model();
  CHECK(m != NULL);
  if (!m) return;
  cn_pt_tensor t[10] = {
      tensor("c.weight", 4, (int64_t[]){3, 2, 3, 3}), tensor("c.bias", 1, (int64_t[]){3}),
      tensor("bn.weight", 1, (int64_t[]){3}),         tensor("bn.bias", 1, (int64_t[]){3}),
      tensor("bn.running_mean", 1, (int64_t[]){3}),   tensor("bn.running_var", 1, (int64_t[]){3}),
      tensor("d.weight", 4, (int64_t[]){3, 1, 3, 3}), tensor("fc.weight", 2, (int64_t[]){2, 3}),
      tensor("fc.bias", 1, (int64_t[]){2}),           tensor("bn.num_batches_tracked", 0, NULL),
  };
  t[9].dtype = CN_PT_INT64;
  cn_pt_state s = {10, t};
  CHECK_OK(cn_pytorch_load_state(m, &s, "state"));
  cn_graph *g = m->graph;
  /* OIHW (o=1, i=0, y=2, x=1) -> HWIO (2, 1, 0, 1) */
  const float *k = g->nodes[cn_graph_find(g, "c")].params[0].data;
  CHECK(k[((2 * 3 + 1) * 2 + 0) * 3 + 1] == (float)(((1 * 2 + 0) * 3 + 2) * 3 + 1));
  /* (C,1,kh,kw) (c=2, y=1, x=0) -> (kh,kw,C,1) */
  const float *dk = g->nodes[cn_graph_find(g, "d")].params[0].data;
  CHECK(dk[(1 * 3 + 0) * 3 + 2] == (float)(2 * 9 + 1 * 3 + 0));
  /* (out,in) (o=1, i=2) -> (in,out) */
  const float *fk = g->nodes[cn_graph_find(g, "fc")].params[0].data;
  CHECK(fk[2 * 2 + 1] == (float)(1 * 3 + 2));
  /* Wrong shape: the key and both shapes are named, and nothing is overwritten. */
  t[7].shape = (cn_shape){2, {3, 2}};
  CHECK(cn_pytorch_load_state(m, &s, "state") == CN_ERR_SHAPE &&
        error_has("fc.weight: expected (2,3), file has (3,2)"));
  t[7].shape = (cn_shape){2, {2, 3}};
  free(t[1].name);
  t[1].name = strdup("c.bias_renamed");
  CHECK(cn_pytorch_load_state(m, &s, "state") == CN_ERR_FORMAT && error_has("missing key c.bias"));
  free(t[1].name);
  t[1].name = strdup("c.bias");
  free(t[9].name);
  t[9].name = strdup("bn.extra");
  CHECK(cn_pytorch_load_state(m, &s, "state") == CN_ERR_FORMAT &&
        error_has("unexpected key bn.extra"));
  free(t[9].name);
  t[9].name = strdup("classifier.weight"); /* a module the model lacks is ignored */
  CHECK_OK(cn_pytorch_load_state(m, &s, "state"));
  t[0].data[3] = NAN;
  CHECK(cn_pytorch_load_state(m, &s, "state") == CN_ERR_FORMAT && error_has("NaN"));
  for (int i = 0; i < 10; i++) {
    free(t[i].name);
    free(t[i].data);
  }
  cn_model_free(m);
}

static void test_zoo_names(void) {
  static const char *const names[] = {"efficientnet_lite0", "efficientnet_lite1",
                                      "efficientnet_lite2"};
  static const int sizes[] = {224, 240, 260};
  for (int i = 0; i < 3; i++) {
    cn_model *m = NULL;
    CHECK_OK(cn_zoo_build(&(cn_zoo_options){.name = names[i]}, &m));
    if (!m) continue;
    CHECK(cn_model_input_shape(m).dim[0] == sizes[i]);
    CHECK(cn_graph_find(m->graph, "_blocks.0._depthwise_conv") >= 0);
    CHECK(cn_graph_find(m->graph, "_fc") >= 0);
    cn_model_free(m);
  }
}

/* The real EfficientNet-Lite0 state_dict (legacy format), when scripts/fetch_efficientnet_lite.sh
 * has cached it. */
static void test_real_lite0(void) {
  const char *cache = getenv("CONVNET_CACHE");
  char path[1024];
  snprintf(path, sizeof path, "%s/efficientnet_lite0/efficientnet_lite0.pth",
           cache ? cache : "/nonexistent");
  cn_model *m = NULL;
  if (!cache || cn_zoo_build(&(cn_zoo_options){.name = "efficientnet_lite0"}, &m) != CN_OK) {
    printf("SKIP real lite0: set CONVNET_CACHE after scripts/fetch_efficientnet_lite.sh 0\n");
    return;
  }
  FILE *f = fopen(path, "rb");
  if (f) {
    fclose(f);
    CHECK_OK(cn_pytorch_load_weights(m, path));
  } else {
    printf("SKIP real lite0: %s absent\n", path);
  }
  cn_model_free(m);
}

/* ---- harness modes for the oracle test ----------------------------------------------------------
 */

static int dump(const char *path, const char *dir) {
  cn_pt_state s;
  if (cn_pt_read(path, &s) != CN_OK) {
    fprintf(stderr, "%s\n", cn_last_error());
    return 1;
  }
  for (int i = 0; i < s.n; i++) {
    if (!s.t[i].data) continue;
    char out[2048];
    snprintf(out, sizeof out, "%s/%s.npy", dir, s.t[i].name);
    cn_shape shape = s.t[i].shape;
    if (shape.rank == 0) shape = (cn_shape){1, {1}};
    if (cn_npy_write(out, &shape, s.t[i].data) != CN_OK) {
      fprintf(stderr, "%s\n", cn_last_error());
      return 1;
    }
  }
  cn_pt_state_free(&s);
  return 0;
}

static int forward(const char *zoo, const char *pth, const char *in, const char *out) {
  cn_model *m = NULL;
  cn_shape shape;
  float *x = NULL;
  cn_status st = cn_zoo_build(&(cn_zoo_options){.name = zoo}, &m);
  if (st == CN_OK) st = cn_pytorch_load_weights(m, pth);
  if (st == CN_OK) st = cn_npy_read(in, &shape, &x);
  cn_shape osh = m ? cn_model_output_shape(m) : (cn_shape){0};
  int batch = st == CN_OK ? (int)shape.dim[0] : 0;
  float *y = malloc((size_t)(batch ? batch : 1) * (size_t)cn_shape_numel(&osh) * sizeof *y);
  if (st == CN_OK) st = cn_model_forward(m, batch, x, y);
  cn_shape ys = cn_shape_batch(batch, &osh);
  if (st == CN_OK) st = cn_npy_write(out, &ys, y);
  if (st != CN_OK) fprintf(stderr, "%s\n", cn_last_error());
  free(x);
  free(y);
  cn_model_free(m);
  return st == CN_OK ? 0 : 1;
}

/* A fuzzer finding (fuzz/corpus/pytorch/regress_zip_size_claim.pth): a 1.5 kB zip whose central
 * directory claims a 2.9 GB storage entry was allocated before it was read. */
static void test_zip_size_claim(void) {
  char path[4096];
  cn_test_source("fuzz/corpus/pytorch/regress_zip_size_claim.pth", path, sizeof path);
  uint8_t *data = NULL;
  size_t n = 0;
  CHECK_OK(cn_file_read_all(path, 1 << 20, "a test file", &data, &n));
  cn_pt_state s;
  CHECK(data && cn_pt_read_memory(data, n, "claim.pth", &s) == CN_ERR_FORMAT &&
        strstr(cn_last_error(), "claims"));
  free(data);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--dump") == 0) return dump(argv[2], argv[3]);
  if (argc == 6 && strcmp(argv[1], "--forward") == 0)
    return forward(argv[2], argv[3], argv[4], argv[5]);
  test_legacy_views();
  test_bad_views();
  test_truncated_legacy();
  test_hostile_pickles();
  test_zip();
  test_zip_size_claim();
  test_load_state();
  test_zoo_names();
  test_real_lite0();
  return cn_test_finish();
}
