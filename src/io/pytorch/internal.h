/* src/io/pytorch: PyTorch state_dicts (.pth) through a restricted unpickler.
 *
 * PyTorch checkpoints: a restricted unpickler (pickle.c) that builds plain values and never runs
 * code, the two file formats around it (pth.c: the zip format of torch >= 1.6 and the legacy
 * stream format) and the mapping of state_dict keys onto a model's parameters. */
#ifndef CN_IO_PYTORCH_INTERNAL_H
#define CN_IO_PYTORCH_INTERNAL_H

#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

#include "convnet/model.h"

/* ---- limits: every size in a checkpoint is checked against these before it is used ---------- */

#define CN_PT_MAX_PICKLE ((size_t)64 << 20)   /* bytes of one pickle (data.pkl) */
#define CN_PT_MAX_STORAGE ((uint64_t)4 << 30) /* bytes of one storage */
#define CN_PT_MAX_TOTAL ((uint64_t)16 << 30)  /* bytes of all storages together */
#define CN_PT_MAX_ELEMENTS ((int64_t)1 << 30) /* elements of one materialised tensor */
#define CN_PT_MAX_STACK 100000                /* values on the unpickler's stack */
#define CN_PT_MAX_MARKS 64                    /* nested MARKs */
#define CN_PT_MAX_MEMO (1 << 20)              /* memo slots */
#define CN_PT_MAX_OBJECTS ((size_t)1 << 24)   /* values one pickle may create */
#define CN_PT_MAX_TENSORS 1000000             /* tensors in one state_dict */

/* ---- pickle.c ------------------------------------------------------------------------------ */

/* Element types of torch storages (torch.FloatStorage, ...). */
typedef enum cn_pt_dtype {
  CN_PT_FLOAT32,
  CN_PT_FLOAT64,
  CN_PT_FLOAT16,
  CN_PT_BFLOAT16,
  CN_PT_INT64,
  CN_PT_INT32,
  CN_PT_INT16,
  CN_PT_INT8,
  CN_PT_UINT8,
  CN_PT_BOOL,
  CN_PT_DTYPE_COUNT
} cn_pt_dtype;

const char *cn_pt_dtype_name(cn_pt_dtype dtype);
size_t cn_pt_dtype_size(cn_pt_dtype dtype);

typedef enum pk_kind {
  PK_NONE,
  PK_BOOL,
  PK_INT,
  PK_BIGINT, /* LONG1 wider than 64 bits: only its bytes are kept (the legacy magic number) */
  PK_FLOAT,
  PK_STR,
  PK_TUPLE,
  PK_LIST,
  PK_DICT,    /* items holds key, value, key, value... */
  PK_GLOBAL,  /* an allowed global (which one: global) */
  PK_STORAGE, /* a persistent id resolved to a storage reference */
  PK_TENSOR   /* the result of _rebuild_tensor_v2 */
} pk_kind;

typedef enum pk_global_id {
  PK_G_REBUILD_TENSOR_V2,
  PK_G_REBUILD_PARAMETER,
  PK_G_ORDERED_DICT,
  PK_G_STORAGE /* torch.<Type>Storage; the type is in obj->dtype */
} pk_global_id;

typedef struct pk_obj pk_obj;
struct pk_obj {
  pk_kind kind;
  pk_obj *next_alloc; /* every object of one unpickler, for freeing */
  int64_t i;          /* INT, BOOL */
  double f;           /* FLOAT */
  char *s;            /* STR (NUL-terminated, len bytes), STORAGE key */
  size_t len;
  uint8_t raw[16]; /* BIGINT: little-endian two's complement bytes, len of them */
  pk_obj **items;  /* TUPLE, LIST, DICT */
  size_t n, cap;
  pk_global_id global; /* GLOBAL */
  cn_pt_dtype dtype;   /* GLOBAL of a storage type, STORAGE, TENSOR */
  int64_t numel;       /* STORAGE: elements */
  /* TENSOR */
  pk_obj *storage;
  int64_t offset;
  cn_shape shape, stride;
};

/* One unpickling session: owns every object it creates. */
typedef struct pk_unpickler {
  const char *name; /* for messages: "model.pth" or "model.pth:archive/data.pkl" */
  pk_obj *objects;
  size_t n_objects;
} pk_unpickler;

/* Unpickles one pickle from data[*pos..size), advancing *pos past its STOP. *out stays owned by
 * u; release everything with pk_free. */
cn_status pk_load(pk_unpickler *u, const uint8_t *data, size_t size, size_t *pos, pk_obj **out);
void pk_free(pk_unpickler *u);
/* Value of key in a dict, or NULL. */
pk_obj *pk_dict_get(const pk_obj *dict, const char *key);

/* ---- pth.c -------------------------------------------------------------------------------- */

typedef struct cn_pt_tensor {
  char *name;
  cn_pt_dtype dtype;
  cn_shape shape; /* PyTorch's order (OIHW, (out, in), ...) */
  float *data;    /* contiguous row-major, for float32 tensors only (NULL otherwise) */
} cn_pt_tensor;

typedef struct cn_pt_state {
  int n;
  cn_pt_tensor *t;
} cn_pt_state;

/* Reads the state_dict of a .pth/.pt file (zip or legacy format). A checkpoint that wraps it as
 * {"state_dict": ...} or {"model": ...} is unwrapped. */
cn_status cn_pt_read(const char *path, cn_pt_state *out);
/* The same from memory; name is used in messages. */
cn_status cn_pt_read_memory(const void *data, size_t size, const char *name, cn_pt_state *out);
void cn_pt_state_free(cn_pt_state *state);
const cn_pt_tensor *cn_pt_find(const cn_pt_state *state, const char *name);

/* The same from a state already read. */
cn_status cn_pytorch_load_state(cn_model *m, const cn_pt_state *state, const char *path);

#endif
