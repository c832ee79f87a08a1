/* safetensors files (the Hugging Face format): an 8-byte little-endian header length, a JSON
 * header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string:
 * string}}, then the raw little-endian tensor bytes, contiguous and without holes. convnet writes
 * them for .cnm models and training checkpoints (docs/formats.md) and reads any such file:
 * - writing: tensors ordered by element size (largest first) so that each starts at a multiple of
 *   its element size, the header padded with spaces so that the data starts at a multiple of 64,
 *   the metadata key "convnet.sha256" holding the SHA-256 of the data section; atomic (temporary
 *   file beside the target, fsync, rename).
 * - reading: the file is untrusted. The header is at most CN_ST_MAX_HEADER bytes of valid JSON;
 *   every entry is checked (known dtype, rank, shape product without overflow, byte size equal to
 *   numel x element size, offsets inside the data and covering it exactly once); "convnet.sha256"
 *   is verified when present. The data is memory-mapped read-only. */
#ifndef CN_IO_SAFETENSORS_H
#define CN_IO_SAFETENSORS_H

#include <stddef.h>

#include "convnet/core.h"

#define CN_ST_MAX_HEADER ((size_t)100 << 20)
#define CN_ST_CHECKSUM_KEY "convnet.sha256"
#define CN_ST_METADATA_KEY "__metadata__"
/* Longest tensor name read or written, in bytes. */
#define CN_ST_MAX_NAME 4096

typedef enum cn_st_dtype {
  CN_ST_F32, /* "F32" */
  CN_ST_I64, /* "I64": small state such as an optimizer's iteration count */
  CN_ST_U8,  /* "U8": opaque bytes such as an RNG state */
  CN_ST_DTYPE_COUNT
} cn_st_dtype;

/* The safetensors name ("F32") and the element size in bytes. */
const char *cn_st_dtype_name(cn_st_dtype dtype);
size_t cn_st_dtype_size(cn_st_dtype dtype);

typedef struct cn_st_tensor {
  const char *name;
  cn_st_dtype dtype;
  cn_shape shape;
  /* numel(shape) * element size bytes, little-endian. In a file that is read this points into the
   * mapping: aligned to the element size when convnet wrote the file, not necessarily otherwise,
   * so copy it out (cn_safetensors_read) rather than casting it. */
  const void *data;
  size_t bytes; /* filled in by the reader; ignored by the writer */
} cn_st_tensor;

typedef struct cn_st_meta {
  const char *key, *value;
} cn_st_meta;

/* Writes n tensors and n_meta metadata strings to path atomically, adding CN_ST_CHECKSUM_KEY.
 * Names must be unique, non-empty and at most CN_ST_MAX_NAME bytes; metadata keys unique. */
cn_status cn_safetensors_write(const char *path, const cn_st_tensor *tensors, int n,
                               const cn_st_meta *meta, int n_meta);

typedef struct cn_safetensors cn_safetensors;

/* Opens and validates a file; errors name the file and what is wrong with it. */
cn_status cn_safetensors_open(const char *path, cn_safetensors **out);
/* The same over bytes in memory, which must outlive the handle; name is for messages. */
cn_status cn_safetensors_open_memory(const void *bytes, size_t size, const char *name,
                                     cn_safetensors **out);
void cn_safetensors_close(cn_safetensors *f);

/* The path (or name) given to open, for messages. */
const char *cn_safetensors_path(const cn_safetensors *f);
/* Tensors in the order of their data (index 0 .. count-1); NULL out of range. */
int cn_safetensors_count(const cn_safetensors *f);
const cn_st_tensor *cn_safetensors_at(const cn_safetensors *f, int index);
/* By name (binary search); NULL when absent. */
const cn_st_tensor *cn_safetensors_find(const cn_safetensors *f, const char *name);
/* Metadata: count, entry i in header order, and the value of a key (NULL when absent). */
int cn_safetensors_meta_count(const cn_safetensors *f);
const cn_st_meta *cn_safetensors_meta_at(const cn_safetensors *f, int index);
const char *cn_safetensors_meta(const cn_safetensors *f, const char *key);

/* Copies tensor `name` into dst after checking that it exists with this dtype and shape; the
 * error says "<file>: <name>: expected (3,3,3,64), file has (64,3,3,3)". */
cn_status cn_safetensors_read(const cn_safetensors *f, const char *name, cn_st_dtype dtype,
                              const cn_shape *shape, void *dst);

#endif
