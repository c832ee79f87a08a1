/* cn_model_save_onnx: a round trip through convnet's own ONNX importer (same outputs), the atomic
 * write (no temporary file left, an existing file untouched when the export fails), one-line
 * errors for unwritable destinations, and the refusal of a layer ONNX opset 13 cannot express. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "ops/ops.h"
#include "testlib.h"

static char path_buf[4][512];

static const char *tmp_file(int slot, const char *name) {
  snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", cn_test_tmpdir(), name);
  return path_buf[slot];
}

/* Files in the temporary directory whose name contains part. */
static int count_files(const char *part) {
  DIR *d = opendir(cn_test_tmpdir());
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    if (strstr(e->d_name, part)) n++;
  if (d) closedir(d);
  return n;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static int file_equals(const char *path, const char *text) {
  char buf[256] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  return n == strlen(text) && memcmp(buf, text, n) == 0;
}

/* A small zoo model with deterministic non-zero weights. */
static cn_model *small_model(void) {
  cn_zoo_options o = {
      .name = "mobilenet_v2", .alpha = 0.35f, .height = 40, .width = 48, .classes = 7};
  cn_model *m = NULL;
  if (cn_zoo_build(&o, &m) != CN_OK) return NULL;
  cn_graph *g = m->graph;
  for (size_t k = 0; k < g->n_param_floats; k++)
    g->params[k] = 0.5f + 0.4f * sinf((float)k * 0.37f);
  g->weights_version++;
  return m;
}

static void test_round_trip(void) {
  cn_model *m = small_model();
  CHECK(m != NULL);
  if (!m) return;
  const char *path = tmp_file(0, "mnv2.onnx");
  CHECK_OK(cn_model_save_onnx(m, path));
  CHECK(count_files(".tmp") == 0);
  cn_model *back = NULL;
  CHECK_OK(cn_model_load(path, &back));
  if (back) {
    cn_shape in = cn_model_input_shape(back), out = cn_model_output_shape(back);
    CHECK(in.rank == 3 && in.dim[0] == 40 && in.dim[1] == 48 && in.dim[2] == 3);
    CHECK(out.rank == 1 && out.dim[0] == 7);
    enum { BATCH = 2, N_IN = 40 * 48 * 3 };
    static float x[BATCH * N_IN];
    float y0[BATCH * 7], y1[BATCH * 7];
    for (int k = 0; k < BATCH * N_IN; k++) x[k] = cosf((float)k * 0.11f);
    CHECK_OK(cn_model_forward(m, BATCH, x, y0));
    CHECK_OK(cn_model_forward(back, BATCH, x, y1));
    CHECK(cn_test_max_abs_diff(y0, y1, BATCH * 7) < 1e-5);
    cn_model_free(back);
  }
  cn_model_free(m);
}

static void test_unwritable(void) {
  cn_model *m = small_model();
  if (!m) return;
  CHECK(cn_model_save_onnx(m, "/nonexistent-dir/m.onnx") == CN_ERR_IO);
  CHECK(strstr(cn_last_error(), "/nonexistent-dir/m.onnx") != NULL);
  CHECK(strchr(cn_last_error(), '\n') == NULL);
  const char *file = tmp_file(1, "plain-file");
  write_text(file, "x");
  char below[600];
  snprintf(below, sizeof below, "%s/m.onnx", file); /* a path through a regular file */
  CHECK(cn_model_save_onnx(m, below) == CN_ERR_IO);
  CHECK(strstr(cn_last_error(), "temporary file") != NULL);
  CHECK(cn_model_save_onnx(m, "") == CN_ERR_ARG);
  CHECK(cn_model_save_onnx(NULL, "x.onnx") == CN_ERR_ARG);
  cn_model_free(m);
}

/* Dilated average pooling exists in the engine (ONNX opset 19) but not in opset 13. */
static void test_refused_layer_keeps_old_file(void) {
  cn_graph *g = cn_graph_new();
  int in = -1, pool = -1;
  cn_input_attrs ia = {cn_shape_make(3, (int64_t[]){8, 8, 2})};
  cn_pool_attrs pa = {
      .ph = 2, .pw = 2, .sh = 1, .sw = 1, .padding = CN_PAD_VALID, .dh = 2, .dw = 2};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &ia, &in));
  CHECK_OK(cn_graph_add(g, &cn_op_avgpool, "dilated_pool", &in, 1, &pa, &pool));
  cn_input_spec spec = {0};
  cn_model *m = NULL;
  CHECK_OK(cn_model_wrap(g, "pool", &spec, &m));
  if (!m) return;
  const char *path = tmp_file(2, "old.onnx");
  write_text(path, "previous contents");
  CHECK(cn_model_save_onnx(m, path) == CN_ERR_UNSUPPORTED);
  CHECK(strstr(cn_last_error(), "layer dilated_pool (AveragePooling2D): cannot export") != NULL);
  CHECK(strchr(cn_last_error(), '\n') == NULL);
  CHECK(file_equals(path, "previous contents"));
  CHECK(count_files(".tmp") == 0);
  cn_model_free(m);
}

int main(void) {
  test_round_trip();
  test_unwritable();
  test_refused_layer_keeps_old_file();
  return cn_test_finish();
}
