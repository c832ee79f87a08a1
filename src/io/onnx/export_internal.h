/* ONNX export, shared between the driver (export.c: protobuf building, layout bookkeeping,
 * writing) and the per-operator translations (export_ops.c).
 *
 * Layout: every engine value is represented by one ONNX tensor holding it with its axes permuted:
 * tensor = Transpose(engine value with batch, perm). Ops that need a layout ask for it
 * (cn_ex_input), which inserts one ONNX Transpose the first time; elementwise ops keep whatever
 * layout their input has, and engine Transpose nodes only change the recorded perm. So a Keras
 * NHWC input is transposed once to NCHW, and an ONNX model's NCHW input feeds its convolutions
 * directly (its NCHW->NHWC transpose cancels). Graph outputs are in the engine's own layout. */
#ifndef CN_IO_ONNX_EXPORT_INTERNAL_H
#define CN_IO_ONNX_EXPORT_INTERNAL_H

#include <stdint.h>

#include "core/graph.h"
#include "onnx.pb-c.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"

typedef struct cn_ex_value {
  const char *name; /* the ONNX tensor; NULL until the node is exported */
  int rank;         /* full rank (batch included) */
  int perm[CN_MAX_RANK];
  const char *alt_name; /* the same value in another layout, or NULL */
  int alt_perm[CN_MAX_RANK];
} cn_ex_value;

typedef struct cn_ex_ctx {
  const cn_graph *g;
  cn_status st; /* sticky: the first failure; helpers do nothing once it is set */
  cn_ex_value *values;
  void **blocks; /* every allocation, freed together */
  int n_blocks, cap_blocks;
  Onnx__NodeProto **nodes;
  int n_nodes, cap_nodes;
  Onnx__TensorProto **inits;
  int n_inits, cap_inits;
  int counter;         /* makes generated tensor names unique */
  uint64_t init_bytes; /* weight bytes so far (a protobuf file holds at most 2 GiB) */
  /* Shared layers: the initializers node i made are inits[init_begin[i] .. init_begin[i + 1]);
   * while a later call of a shared layer converts, those of its owner (reuse_lo .. reuse_hi) are
   * reused for equal tensors, so the file holds the weights once. */
  int *init_begin;
  int reuse_lo, reuse_hi;
} cn_ex_ctx;

/* Zeroed memory owned by the context; NULL (with x->st set) on failure. */
void *cn_ex_alloc(cn_ex_ctx *x, size_t size);
/* A fresh tensor name "<base>::<tag><k>". */
const char *cn_ex_name(cn_ex_ctx *x, const char *base, const char *tag);

/* Appends a node; inputs may contain "" for an omitted optional input. Returns NULL on failure. */
Onnx__NodeProto *cn_ex_node(cn_ex_ctx *x, const char *op_type, const char *const *inputs,
                            int n_inputs, const char *output);
void cn_ex_attr_int(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, int64_t v);
void cn_ex_attr_float(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, float v);
void cn_ex_attr_ints(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, const int64_t *v, int k);
void cn_ex_attr_string(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, const char *v);
/* One-input node into a fresh tensor named from base; returns the output name. */
const char *cn_ex_unary(cn_ex_ctx *x, const char *op_type, const char *in, const char *base);
const char *cn_ex_binary(cn_ex_ctx *x, const char *op_type, const char *a, const char *b,
                         const char *base);

/* A float initializer; data must outlive the export (a graph parameter or cn_ex_alloc memory). */
const char *cn_ex_init_float(cn_ex_ctx *x, const char *base, int rank, const int64_t *dims,
                             const float *data);
const char *cn_ex_scalar(cn_ex_ctx *x, const char *base, float v);
/* A 1-D int64 initializer (copied). */
const char *cn_ex_init_ints(cn_ex_ctx *x, const char *base, const int64_t *v, int k);

/* Permutations of r axes. */
void cn_ex_perm_identity(int r, int *perm);
/* (0, axis, the other axes in order): channels at ONNX axis 1, NCHW for axis 3 of rank 4. */
void cn_ex_perm_channels_first(int r, int axis, int *perm);
int cn_ex_perm_is_identity(int r, const int *perm);
/* Where engine axis `axis` sits in a value stored with perm. */
int cn_ex_axis(const cn_ex_value *v, int axis);

/* The value of engine node `node` as an ONNX tensor in the given perm (inserting a Transpose
 * once per node and perm). */
const char *cn_ex_input(cn_ex_ctx *x, int node, const int *perm);
/* The same in the engine's own layout. */
const char *cn_ex_input_plain(cn_ex_ctx *x, int node);
/* Records that engine node `node` is held by tensor name with perm (NULL: identity). */
void cn_ex_set(cn_ex_ctx *x, int node, const char *name, const int *perm);

/* The ONNX nodes of an activation applied to `in` (softmax over ONNX axis softmax_axis); returns
 * the output name (in itself for linear). */
const char *cn_ex_activation(cn_ex_ctx *x, const cn_activation *a, const char *in, int softmax_axis,
                             const char *base);

/* Exports engine node i; fails naming the layer when the op has no ONNX form. */
cn_status cn_ex_convert(cn_ex_ctx *x, int i);
/* 1 when op has an ONNX translation (operators without one are refused by name on export). */
int cn_ex_op_supported(const cn_op *op);

/* Sets x->st (if not yet set) to a refusal naming the layer; returns it. */
cn_status cn_ex_refuse(cn_ex_ctx *x, int node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
