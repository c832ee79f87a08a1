/* ONNX operators to engine nodes, shared between the converters: convert.c (attributes, values,
 * dispatch), convert_conv.c (convolution, pooling, BatchNormalization), convert_matmul.c (Gemm,
 * MatMul), convert_elementwise.c (activations, softmax, LRN, broadcasting binary operators),
 * convert_shape.c (Pad, Flatten, Reshape, Transpose, Concat) and convert_resize.c (Resize,
 * Upsample). Each converter file lists its operators in a table that convert.c searches. */
#ifndef CN_IO_ONNX_CONVERT_H
#define CN_IO_ONNX_CONVERT_H

#include "io/onnx/internal.h"

typedef cn_status (*cn_onnx_convert_fn)(cn_onnx_ctx *x, const Onnx__NodeProto *n);
typedef struct cn_onnx_converter {
  const char *op; /* ONNX op_type */
  cn_onnx_convert_fn fn;
} cn_onnx_converter;

/* Each ends with {NULL, NULL}. */
extern const cn_onnx_converter cn_onnx_conv_converters[];
extern const cn_onnx_converter cn_onnx_matmul_converters[];
extern const cn_onnx_converter cn_onnx_elementwise_converters[];
extern const cn_onnx_converter cn_onnx_shape_converters[];
extern const cn_onnx_converter cn_onnx_resize_converters[];

/* A failure naming the file, the node and its operator. */
#define CN_ONNX_FAIL(x, n, status, ...)                                                            \
  cn_fail_context(cn_fail(status, __VA_ARGS__), "%s: node %s (%s)", (x)->file, cn_onnx_label(n),   \
                  (n)->op_type)

/* A refusal that only the batch axis causes: the driver retries with each tensor as one sample. */
#define CN_ONNX_BATCH_FAIL(x, n, ...)                                                              \
  ((x)->want_whole = !(x)->whole, CN_ONNX_FAIL(x, n, CN_ERR_UNSUPPORTED, __VA_ARGS__))

/* ---- attributes and values (convert.c) ---- */

/* ints attribute into out (at most cap values); returns the count, or -1 when absent/too long. */
int cn_onnx_attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, int cap);
/* The name for the engine node computing n's first output. */
const char *cn_onnx_out_name(const Onnx__NodeProto *n);
/* The ONNX rank of an activation. */
int cn_onnx_rank(const cn_onnx_ctx *x, const cn_onnx_value *v);
/* ONNX axis `axis` (negative from the end) of activation v as an index into v->dims, or -1 when
 * out of range. */
int cn_onnx_dims_axis(const cn_onnx_ctx *x, const cn_onnx_value *v, int64_t axis);
/* Input k of n, or NULL when absent. */
cn_onnx_value *cn_onnx_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k);
/* Input k when it is a constant, else NULL. */
const cn_onnx_const *cn_onnx_const_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k);
/* Input k must be an activation (a computed tensor). */
cn_status cn_onnx_act_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, cn_onnx_value **v);
/* Input k must be a float constant (a weight). */
cn_status cn_onnx_weight_input(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                               const cn_onnx_const **c);
/* Records the output value of node n (output k) as engine node `node` stored in `layout`; the
 * ONNX dims follow from the engine shape. */
cn_status cn_onnx_set_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k, int node,
                             cn_onnx_layout layout);
/* An output that is the input, unchanged (Identity, Dropout, elementwise ops keep layouts). */
void cn_onnx_alias_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, size_t k,
                          const cn_onnx_value *src, int node);
/* A Transpose of the per-sample axes of engine node src. */
cn_status cn_onnx_add_transpose(cn_onnx_ctx *x, int src, const char *suffix, int rank,
                                const int *perm, int *node);
/* A float array copy of a constant's values, ready to hand to cn_onnx_set_param. */
float *cn_onnx_float_copy(const cn_onnx_const *c, int64_t numel);
/* Parameter `param` of `node` from a copy of c's first numel values (or its one value). */
cn_status cn_onnx_set_param_copy(cn_onnx_ctx *x, int node, int param, const cn_onnx_const *c,
                                 int64_t numel);

/* ---- graphs with computed weights (convert.c) ---- */

/* Weights, bounds or parameters computed at run time (graph inputs) have no batch axis: they need
 * the graph to run as one engine sample (x->whole). Fails asking for that retry otherwise. */
cn_status cn_onnx_need_whole(cn_onnx_ctx *x, const Onnx__NodeProto *n, const char *what);
/* Activation v in ONNX order with leading ones up to ONNX rank `rank` (numpy's alignment), as an
 * engine node; a lower rank needs x->whole (per-sample shape = ONNX shape). */
cn_status cn_onnx_ranked(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v, int rank,
                         int *node);
/* cn_op_binary of engine nodes a and b (kind: a cn_binary_kind). */
cn_status cn_onnx_binary_nodes(cn_onnx_ctx *x, const Onnx__NodeProto *n, int kind, int a, int b,
                               const char *suffix, int *node);
/* cn_op_binary of engine node a and a scalar constant: a (kind) value. */
cn_status cn_onnx_scalar_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, int kind, int a, float value,
                            const char *suffix, int *node);

/* ---- shared by several converter files ---- */

/* The engine's Keras-style axis (counting the batch) for ONNX axis `axis` of value v
 * (convert_elementwise.c). */
int cn_onnx_engine_axis(const cn_onnx_value *v, int axis);
/* Per-sample engine axis of ONNX axis a (>= 1) of a value stored in `layout` (convert_shape.c). */
int cn_onnx_sample_axis(cn_onnx_layout layout, int a);
/* Output 0 of n: v in ONNX order reshaped to the per-sample dims (rank values)
 * (convert_conv.c). */
cn_status cn_onnx_reshape_output(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                                 int rank, const int64_t *dims);
/* A constant operand through the broadcasting ops (binary, PRelu) (convert_elementwise.c). */
cn_status cn_onnx_add_const_op(cn_onnx_ctx *x, const Onnx__NodeProto *n, cn_onnx_value *v,
                               const cn_onnx_const *c, const cn_op *op, void *attrs,
                               cn_shape *shape_field);
/* 1 when constant c, broadcast onto activation v, would differ between samples
 * (convert_elementwise.c). */
int cn_onnx_const_spans_batch(const cn_onnx_ctx *x, const cn_onnx_value *v, const cn_onnx_const *c);

#endif
