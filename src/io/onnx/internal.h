/* src/io/onnx: ONNX import (onnx.proto, tensors, folding, conversion) and export.
 *
 * ONNX import, shared between its parts: validated tensors (tensor.c), constant folding (fold.c),
 * operator conversion (convert*.c, see convert.h) and the driver (import.c). */
#ifndef CN_IO_ONNX_INTERNAL_H
#define CN_IO_ONNX_INTERNAL_H

#include "io/io.h"

#include <stddef.h>
#include <stdint.h>

#include "convnet/core.h"

#include "convnet/model.h"

/* Largest .onnx file accepted (protobuf's own limit is 2 GiB). */
#define CN_ONNX_MAX_FILE ((size_t)2 << 30)
/* Largest tensor accepted, in elements (VGG's largest weight has 103 M). */
#define CN_ONNX_MAX_ELEMENTS ((int64_t)1 << 28)
/* Most constant elements a model may hold in total, counting those folding creates (a tiny file
 * can ask ConstantOfShape for gigabytes). */
#define CN_ONNX_MAX_CONST_ELEMENTS ((int64_t)1 << 28)
/* Most nodes, initializers and graph inputs accepted. */
#define CN_ONNX_MAX_NODES 200000
/* Highest tensor rank accepted (ONNX has no limit; the engine has CN_MAX_RANK with batch). */
#define CN_ONNX_MAX_RANK 8

/* The same from bytes in memory (tests, fuzzing); name appears in messages. */
cn_status cn_onnx_load_buffer(const uint8_t *data, size_t size, const char *name, cn_model **out);
/* The same with values for the graph inputs (cn_model_load_inputs). */
cn_status cn_onnx_load_buffer_inputs(const uint8_t *data, size_t size, const char *name,
                                     cn_input_value *values, int n, cn_model **out);

/* Tests that build models byte by byte need only the entry points above (the generated
 * protobuf-c header is not on their include path). */
#ifndef CN_ONNX_ENTRY_ONLY

#include "core/graph.h"
#include "onnx.pb-c.h"
#include "ops/ops.h"

/* ---- tensor.c ------------------------------------------------------------------------- */

/* ONNX TensorProto.DataType values. */
enum {
  DT_FLOAT = 1,
  DT_UINT8 = 2,
  DT_INT8 = 3,
  DT_UINT16 = 4,
  DT_INT16 = 5,
  DT_INT32 = 6,
  DT_INT64 = 7,
  DT_STRING = 8,
  DT_BOOL = 9,
  DT_FLOAT16 = 10,
  DT_DOUBLE = 11,
  DT_UINT32 = 12,
  DT_UINT64 = 13,
};

/* A constant: float values (f) or integer values (i, for shapes and indices), row-major. */
typedef struct cn_onnx_const {
  int rank;
  int64_t dims[CN_ONNX_MAX_RANK];
  int64_t numel;
  int is_int;
  float *f;
  int64_t *i;
} cn_onnx_const;

/* Decodes a TensorProto, checking dims, element type and that the stored data holds exactly
 * numel elements. Floats and doubles become f; int8..int64, uint8..uint32 and bool become i.
 * External data is refused. what names the tensor in messages. */
cn_status cn_onnx_const_read(const Onnx__TensorProto *t, const char *what, cn_onnx_const *out);
/* An empty constant of the given shape (values zero), float or integer. */
cn_status cn_onnx_const_alloc(cn_onnx_const *c, int rank, const int64_t *dims, int is_int,
                              const char *what);
void cn_onnx_const_free(cn_onnx_const *c);
/* Value k as a double, whatever the storage. */
double cn_onnx_const_get(const cn_onnx_const *c, int64_t k);
/* Converts integer storage to float in place (for weights written as int64, rare). */
cn_status cn_onnx_const_to_float(cn_onnx_const *c, const char *what);
/* Shape-style formatting "(1,3,224,224)" into buf. */
char *cn_onnx_dims_format(int rank, const int64_t *dims, char *buf, size_t cap);

/* ---- the import context ------------------------------------------------------------------- */

/* How an activation's values are stored in its engine node. ONNX dims are dims[0..rank-1] with
 * dims[0] the batch. */
typedef enum cn_onnx_layout {
  CN_ONNX_PLAIN, /* engine shape = dims[1..]: ONNX order */
  CN_ONNX_NHWC,  /* rank 4 (N,C,H,W) stored (H,W,C) */
  CN_ONNX_FLAT,  /* rank 2 (N,C*H*W) that is the NHWC-order flattening of flat_src */
} cn_onnx_layout;

typedef enum cn_onnx_kind { CN_ONNX_NONE, CN_ONNX_CONST, CN_ONNX_ACT } cn_onnx_kind;

typedef struct cn_onnx_value {
  const char *name; /* points into the parsed model */
  cn_onnx_kind kind;
  cn_onnx_const c; /* CONST */
  /* ACT: */
  int rank;
  int64_t dims[CN_MAX_RANK];
  int node; /* engine node, stored in `layout` */
  cn_onnx_layout layout;
  int plain_node, nhwc_node; /* cached conversions, -1 until made */
  int flat_src;              /* FLAT: the NHWC node that was flattened */
  int64_t flat_chw[3];       /* FLAT: (C,H,W) of flat_src */
} cn_onnx_value;

/* Parameter data waiting for the graph's parameter buffer. */
typedef struct cn_onnx_pending {
  int node, param;
  float *data; /* owned, numel of the parameter */
} cn_onnx_pending;

typedef struct cn_onnx_ctx {
  const char *file;
  const Onnx__GraphProto *graph;
  int64_t opset;
  cn_graph *g;
  cn_onnx_value *values;
  int n_values, cap_values;
  int *table; /* open addressing over values by name, table_cap slots, -1 empty */
  int table_cap;
  cn_onnx_pending *pending;
  int n_pending, cap_pending;
  int64_t batch;          /* the first graph input's dim 0 (1 when symbolic), for folding Shape */
  int64_t const_elements; /* constant elements held so far */
  /* whole = 1: the graph works across ONNX's first axis (or has a rank-1 input), so each ONNX
   * tensor is one engine sample: activations carry a leading engine batch of 1 that ONNX does
   * not see (dims[0] = 1, ONNX axis a is dims[a + 1]). want_whole: a conversion with whole = 0
   * failed only because of the batch axis; the driver then imports again with whole = 1. */
  int whole, want_whole;
  /* Values for the graph inputs in graph order (cn_model_load_inputs); shape-defining inputs
   * are bound to them as constants. */
  cn_input_value *inputs;
  int n_inputs;
} cn_onnx_ctx;

/* The value called name, or NULL. */
cn_onnx_value *cn_onnx_find(cn_onnx_ctx *x, const char *name);
/* A new value called name (which must not exist yet). */
cn_status cn_onnx_new_value(cn_onnx_ctx *x, const char *name, cn_onnx_value **out);
/* Appends an engine node; returns its index. name is made unique from base + suffix. */
cn_status cn_onnx_add_node(cn_onnx_ctx *x, const cn_op *op, const char *base, const char *suffix,
                           const int *inputs, int n_inputs, const void *attrs, int *index);
/* Hands data (malloc'd, numel of the parameter; taken over also on failure) to parameter p of
 * node. */
cn_status cn_onnx_set_param(cn_onnx_ctx *x, int node, int param, float *data);

/* ---- attributes (convert.c) ------------------------------------------------------------------ */

/* The node's name, else its first output's (for messages). */
const char *cn_onnx_label(const Onnx__NodeProto *n);
const Onnx__AttributeProto *cn_onnx_attr(const Onnx__NodeProto *n, const char *name);
int64_t cn_onnx_attr_int(const Onnx__NodeProto *n, const char *name, int64_t dflt);
float cn_onnx_attr_float(const Onnx__NodeProto *n, const char *name, float dflt);
/* The string attribute, or dflt. */
const char *cn_onnx_attr_string(const Onnx__NodeProto *n, const char *name, const char *dflt,
                                char *buf, size_t cap);

/* ---- fold.c --------------------------------------------------------------------------- */

/* 1 when op_type is computed at import from constant inputs (Shape, Gather, ...). */
int cn_onnx_is_foldable(const Onnx__NodeProto *n, cn_onnx_ctx *x);
/* Counts numel more constant elements against CN_ONNX_MAX_CONST_ELEMENTS. */
cn_status cn_onnx_budget(cn_onnx_ctx *x, int64_t numel, const char *what);
/* The element type (ONNX TensorProto DataType) of tensor name: as declared in the graph, else
 * INT64 for an integer constant, BOOL for a comparison's output, FLOAT for anything computed. */
int32_t cn_onnx_elem_type(cn_onnx_ctx *x, const char *name);
/* Computes the node's outputs as constants. */
cn_status cn_onnx_fold(cn_onnx_ctx *x, const Onnx__NodeProto *n);

/* ONNX Reshape's target for an input of in_rank dims: 0 copies the input dim (unless allowzero),
 * one -1 is inferred; checks the element count. */
cn_status cn_onnx_reshape_dims(const char *what, int in_rank, const int64_t *in_dims,
                               const cn_onnx_const *shape, int allowzero, int *rank, int64_t *dims);

/* ---- convert.c ------------------------------------------------------------------------ */

/* Adds engine nodes computing ONNX node n; fails naming an unsupported operator or attribute. */
cn_status cn_onnx_convert(cn_onnx_ctx *x, const Onnx__NodeProto *n);
/* The activation's engine node in ONNX order / in NHWC (rank 4), inserting transposes once. */
cn_status cn_onnx_plain(cn_onnx_ctx *x, cn_onnx_value *v, int *node);
cn_status cn_onnx_nhwc(cn_onnx_ctx *x, cn_onnx_value *v, int *node);

#endif /* CN_ONNX_ENTRY_ONLY */
#endif
