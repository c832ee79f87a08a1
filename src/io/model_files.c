/* cn_model_load and cn_model_load_weights: choose the reader by what the file is. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/io.h"

typedef enum file_kind {
  KIND_UNREADABLE, /* left to the reader, which names the problem */
  KIND_UNKNOWN,
  KIND_PROTOBUF, /* starts with a field tag of ONNX's ModelProto */
  KIND_HDF5,
  KIND_JSON,
  KIND_ZIP,
  KIND_PICKLE,
  KIND_SAFETENSORS
} file_kind;

/* 1 when b is the first byte of a field tag ModelProto has (ir_version, producer_name,
 * producer_version, domain, model_version, doc_string, graph, opset_import, metadata_props, and
 * the two-byte tags of fields 16 and up); ONNX files have no magic number. */
static int onnx_first_byte(unsigned char b) {
  static const unsigned char tags[] = {0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72,
                                       0x82, 0x8a, 0x92, 0x9a, 0xa2, 0xaa, 0xb2, 0xba, 0xc2};
  return memchr(tags, b, sizeof tags) != NULL;
}

/* Sniffs the first bytes. */
static file_kind sniff(const char *path) {
  unsigned char head[9] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return KIND_UNREADABLE;
  size_t n = fread(head, 1, sizeof head, f);
  int unreadable = ferror(f); /* a folder, say */
  fclose(f);
  if (unreadable) return KIND_UNREADABLE;
  static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  if (n >= 8 && memcmp(head, hdf5, 8) == 0) return KIND_HDF5;
  if (n >= 4 && memcmp(head, "PK\3\4", 4) == 0) return KIND_ZIP;
  if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) return KIND_PICKLE;
  /* safetensors (.cnm): a little-endian header length below 2^40, then the JSON header. */
  if (n == 9 && head[8] == '{' && !head[5] && !head[6] && !head[7]) return KIND_SAFETENSORS;
  size_t i = 0;
  while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\r' || head[i] == '\t')) i++;
  if (i < n && head[i] == '{') return KIND_JSON;
  if (n >= 1 && onnx_first_byte(head[0])) return KIND_PROTOBUF;
  return KIND_UNKNOWN;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

cn_status cn_model_load(const char *path, cn_model **out) {
  return cn_model_load_inputs(path, NULL, 0, out);
}

cn_status cn_model_load_inputs(const char *path, cn_input_value *values, int n, cn_model **out) {
  if (!out) return cn_fail(CN_ERR_ARG, "cn_model_load: NULL output");
  if (n < 0 || (n && !values)) return cn_fail(CN_ERR_ARG, "cn_model_load: bad input values");
  for (int i = 0; i < n; i++) values[i].bound = 0;
  *out = NULL;
  if (!path) return cn_fail(CN_ERR_ARG, "cn_model_load: NULL path");
  file_kind kind = sniff(path);
  if (kind == KIND_SAFETENSORS) return cn_native_load(path, out);
  if (kind == KIND_HDF5 || kind == KIND_JSON || has_suffix(path, ".h5") ||
      has_suffix(path, ".json"))
    return cn_keras_model_load(path, out);
  if (kind == KIND_ZIP || kind == KIND_PICKLE)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: a PyTorch checkpoint holds weights only: build the model (-m NAME) and "
                   "load it as weights (-w FILE)",
                   path);
  if (kind == KIND_UNKNOWN && !has_suffix(path, ".onnx"))
    return cn_fail(CN_ERR_FORMAT,
                   "%s: unknown model format (expected Keras .h5/.json, ONNX, PyTorch .pth or "
                   ".cnm)",
                   path);
  return cn_onnx_load_inputs(path, values, n, out);
}

cn_status cn_model_load_weights(cn_model *model, const char *path) {
  if (!model || !path) return cn_fail(CN_ERR_ARG, "cn_model_load_weights: NULL argument");
  switch (sniff(path)) {
  case KIND_ZIP:
  case KIND_PICKLE:
    return cn_pytorch_load_weights(model, path);
  case KIND_SAFETENSORS:
    return cn_native_load_weights(model, path);
  default:
    return cn_keras_model_load_weights(model, path);
  }
}
