/* convnet's side of tests/oracle/test_safetensors.py: reads and writes safetensors files so that
 * the Python `safetensors` package can check them and be checked against them.
 *   probe_safetensors read FILE   prints {"metadata": {...}, "tensors": {name: {"dtype", "shape",
 *                                 "hex"}}}, hex being the raw little-endian bytes
 *   probe_safetensors write FILE  writes the fixed tensors of probe_write with metadata
 *                                 {"origin": "convnet"}
 *   probe_safetensors model FILE  saves zoo mobilenet (alpha 0.25, 2 classes; zero weights but a
 *                                 pattern in conv1) as a .cnm with class names "cat", "dog" */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "io/native/safetensors.h"

static int fail(const char *what) {
  fprintf(stderr, "probe_safetensors: %s: %s\n", what, cn_last_error());
  return 1;
}

static cJSON *tensor_json(const cn_st_tensor *t) {
  cJSON *o = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(o, "shape");
  cJSON_AddStringToObject(o, "dtype", cn_st_dtype_name(t->dtype));
  for (int d = 0; d < t->shape.rank; d++)
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape.dim[d]));
  char *hex = malloc(2 * t->bytes + 1);
  hex[0] = '\0';
  for (size_t i = 0; i < t->bytes; i++)
    snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)t->data)[i]);
  cJSON_AddStringToObject(o, "hex", hex);
  free(hex);
  return o;
}

static int probe_read(const char *path) {
  cn_safetensors *f;
  if (cn_safetensors_open(path, &f) != CN_OK) return fail("read");
  cJSON *root = cJSON_CreateObject();
  cJSON *meta = cJSON_AddObjectToObject(root, "metadata");
  cJSON *tensors = cJSON_AddObjectToObject(root, "tensors");
  for (int i = 0; i < cn_safetensors_meta_count(f); i++) {
    const cn_st_meta *m = cn_safetensors_meta_at(f, i);
    cJSON_AddStringToObject(meta, m->key, m->value);
  }
  for (int i = 0; i < cn_safetensors_count(f); i++) {
    const cn_st_tensor *t = cn_safetensors_at(f, i);
    cJSON_AddItemToObject(tensors, t->name, tensor_json(t));
  }
  char *text = cJSON_PrintUnformatted(root);
  puts(text);
  free(text);
  cJSON_Delete(root);
  cn_safetensors_close(f);
  return 0;
}

static int probe_write(const char *path) {
  static float f32[6] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f};
  static float scalar[1] = {3.25f};
  static int64_t i64[2] = {-5, (int64_t)1 << 40};
  static uint8_t u8[4] = {0, 1, 128, 255};
  cn_st_tensor t[] = {
      {.name = "f32", .dtype = CN_ST_F32, .shape = {2, {2, 3}}, .data = f32},
      {.name = "scalar", .dtype = CN_ST_F32, .shape = {0, {0}}, .data = scalar},
      {.name = "i64", .dtype = CN_ST_I64, .shape = {1, {2}}, .data = i64},
      {.name = "u8", .dtype = CN_ST_U8, .shape = {1, {4}}, .data = u8},
      {.name = "empty", .dtype = CN_ST_F32, .shape = {2, {0, 2}}, .data = NULL},
  };
  cn_st_meta meta = {"origin", "convnet"};
  if (cn_safetensors_write(path, t, 5, &meta, 1) != CN_OK) return fail("write");
  return 0;
}

static int probe_model(const char *path) {
  cn_zoo_options zo = {.name = "mobilenet", .alpha = 0.25f, .classes = 2};
  cn_model *m;
  if (cn_zoo_build(&zo, &m) != CN_OK) return fail("build");
  cn_param *k = &m->graph->nodes[cn_graph_find(m->graph, "conv1")].params[0];
  for (int64_t i = 0; i < cn_shape_numel(&k->shape); i++) k->data[i] = (float)(i % 7) - 3.0f;
  const char *const classes[] = {"cat", "dog"};
  int rc = 0;
  if (cn_model_set_class_names(m, classes, 2) != CN_OK || cn_model_save(m, path) != CN_OK)
    rc = fail("save");
  cn_model_free(m);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fputs("usage: probe_safetensors read|write|model FILE\n", stderr);
    return 2;
  }
  if (strcmp(argv[1], "read") == 0) return probe_read(argv[2]);
  if (strcmp(argv[1], "write") == 0) return probe_write(argv[2]);
  if (strcmp(argv[1], "model") == 0) return probe_model(argv[2]);
  fputs("probe_safetensors: unknown command\n", stderr);
  return 2;
}
