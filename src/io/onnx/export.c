/* ONNX export driver: protobuf building helpers, the layout bookkeeping of
 * onnx_export_internal.h, the graph inputs and outputs, and the atomic write (streamed, so the
 * weights are never copied into one big buffer). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/model.h"
#include "io/onnx/export_internal.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian; the exporter writes float memory as it is"
#endif

enum {
  EX_OPSET = 13,
  EX_IR_VERSION = 7,
  ATTR_FLOAT = 1,
  ATTR_INT = 2,
  ATTR_STRING = 3,
  ATTR_INTS = 7,
  TYPE_FLOAT = 1,
  TYPE_INT64 = 7
};

/* Protobuf's own limit on a message; weights beyond it would need ONNX external data. */
#define EX_MAX_BYTES ((uint64_t)2000 << 20)

/* ---- memory and names ---------------------------------------------------------------------- */

void *cn_ex_alloc(cn_ex_ctx *x, size_t size) {
  if (x->st != CN_OK) return NULL;
  if (x->n_blocks == x->cap_blocks) {
    int cap = x->cap_blocks ? 2 * x->cap_blocks : 256;
    void **b = realloc(x->blocks, (size_t)cap * sizeof *b);
    if (!b) {
      x->st = cn_fail(CN_ERR_NOMEM, "ONNX export: out of memory");
      return NULL;
    }
    x->blocks = b;
    x->cap_blocks = cap;
  }
  void *p = calloc(1, size ? size : 1);
  if (!p) {
    x->st = cn_fail(CN_ERR_NOMEM, "ONNX export: out of memory (%zu bytes)", size);
    return NULL;
  }
  x->blocks[x->n_blocks++] = p;
  return p;
}

static char *ex_strdup(cn_ex_ctx *x, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = cn_ex_alloc(x, n);
  if (p) memcpy(p, s, n);
  return p;
}

const char *cn_ex_name(cn_ex_ctx *x, const char *base, const char *tag) {
  char buf[512];
  snprintf(buf, sizeof buf, "%.400s::%s%d", base, tag, ++x->counter);
  char *p = ex_strdup(x, buf);
  return p ? p : "";
}

/* Grows an array of pointers by one slot. */
static int push(cn_ex_ctx *x, void ***items, int *n, int *cap, void *item) {
  if (x->st != CN_OK) return 0;
  if (*n == *cap) {
    int c = *cap ? 2 * *cap : 64;
    void **p = realloc(*items, (size_t)c * sizeof *p);
    if (!p) {
      x->st = cn_fail(CN_ERR_NOMEM, "ONNX export: out of memory");
      return 0;
    }
    *items = p;
    *cap = c;
  }
  (*items)[(*n)++] = item;
  return 1;
}

cn_status cn_ex_refuse(cn_ex_ctx *x, int node, const char *fmt, ...) {
  if (x->st != CN_OK) return x->st;
  char what[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  const cn_node *n = &x->g->nodes[node];
  x->st = cn_fail(CN_ERR_UNSUPPORTED, "layer %s (%s): cannot export to ONNX: %s", n->name,
                  n->type ? n->type : n->op->type, what);
  return x->st;
}

/* ---- nodes and attributes ------------------------------------------------------------------ */

Onnx__NodeProto *cn_ex_node(cn_ex_ctx *x, const char *op_type, const char *const *inputs,
                            int n_inputs, const char *output) {
  Onnx__NodeProto *n = cn_ex_alloc(x, sizeof *n);
  char **ins = cn_ex_alloc(x, (size_t)(n_inputs + 1) * sizeof *ins);
  char **outs = cn_ex_alloc(x, sizeof *outs);
  if (!n || !ins || !outs) return NULL;
  onnx__node_proto__init(n);
  for (int i = 0; i < n_inputs; i++) ins[i] = (char *)inputs[i];
  outs[0] = (char *)output;
  n->input = ins;
  n->n_input = (size_t)n_inputs;
  n->output = outs;
  n->n_output = 1;
  n->name = (char *)output;
  n->op_type = (char *)op_type;
  if (!push(x, (void ***)&x->nodes, &x->n_nodes, &x->cap_nodes, n)) return NULL;
  return n;
}

static Onnx__AttributeProto *add_attr(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name,
                                      int type) {
  if (!n || x->st != CN_OK) return NULL;
  Onnx__AttributeProto *a = cn_ex_alloc(x, sizeof *a);
  Onnx__AttributeProto **list = cn_ex_alloc(x, (n->n_attribute + 1) * sizeof *list);
  if (!a || !list) return NULL;
  onnx__attribute_proto__init(a);
  a->name = (char *)name;
  a->has_type = 1;
  a->type = type;
  if (n->n_attribute) memcpy(list, n->attribute, n->n_attribute * sizeof *list);
  list[n->n_attribute++] = a;
  n->attribute = list;
  return a;
}

void cn_ex_attr_int(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, int64_t v) {
  Onnx__AttributeProto *a = add_attr(x, n, name, ATTR_INT);
  if (!a) return;
  a->has_i = 1;
  a->i = v;
}

void cn_ex_attr_float(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, float v) {
  Onnx__AttributeProto *a = add_attr(x, n, name, ATTR_FLOAT);
  if (!a) return;
  a->has_f = 1;
  a->f = v;
}

void cn_ex_attr_ints(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, const int64_t *v, int k) {
  Onnx__AttributeProto *a = add_attr(x, n, name, ATTR_INTS);
  int64_t *copy = cn_ex_alloc(x, (size_t)k * sizeof *copy);
  if (!a || !copy) return;
  memcpy(copy, v, (size_t)k * sizeof *copy);
  a->ints = copy;
  a->n_ints = (size_t)k;
}

void cn_ex_attr_string(cn_ex_ctx *x, Onnx__NodeProto *n, const char *name, const char *v) {
  Onnx__AttributeProto *a = add_attr(x, n, name, ATTR_STRING);
  if (!a) return;
  a->has_s = 1;
  a->s.data = (uint8_t *)v;
  a->s.len = strlen(v);
}

const char *cn_ex_unary(cn_ex_ctx *x, const char *op_type, const char *in, const char *base) {
  const char *out = cn_ex_name(x, base, op_type);
  cn_ex_node(x, op_type, &in, 1, out);
  return out;
}

const char *cn_ex_binary(cn_ex_ctx *x, const char *op_type, const char *a, const char *b,
                         const char *base) {
  const char *out = cn_ex_name(x, base, op_type);
  const char *ins[2] = {a, b};
  cn_ex_node(x, op_type, ins, 2, out);
  return out;
}

/* ---- initializers -------------------------------------------------------------------------- */

static Onnx__TensorProto *new_init(cn_ex_ctx *x, const char *base, int type, int rank,
                                   const int64_t *dims, const char **name) {
  *name = cn_ex_name(x, base, "w");
  Onnx__TensorProto *t = cn_ex_alloc(x, sizeof *t);
  int64_t *d = cn_ex_alloc(x, (size_t)(rank + 1) * sizeof *d);
  if (!t || !d) return NULL;
  onnx__tensor_proto__init(t);
  if (rank) memcpy(d, dims, (size_t)rank * sizeof *d);
  t->dims = d;
  t->n_dims = (size_t)rank;
  t->has_data_type = 1;
  t->data_type = type;
  t->name = (char *)*name;
  if (!push(x, (void ***)&x->inits, &x->n_inits, &x->cap_inits, t)) return NULL;
  return t;
}

static int64_t numel_of(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  return n;
}

/* The owner's initializer equal to this one (same dims, same bytes), or NULL. */
static const char *reused_init(const cn_ex_ctx *x, int rank, const int64_t *dims, const float *data,
                               size_t bytes) {
  for (int k = x->reuse_lo; k < x->reuse_hi; k++) {
    const Onnx__TensorProto *t = x->inits[k];
    if (t->data_type != TYPE_FLOAT || !t->has_raw_data || t->n_dims != (size_t)rank ||
        t->raw_data.len != bytes)
      continue;
    if ((!rank || memcmp(t->dims, dims, (size_t)rank * sizeof *dims) == 0) &&
        memcmp(t->raw_data.data, data, bytes) == 0)
      return t->name;
  }
  return NULL;
}

const char *cn_ex_init_float(cn_ex_ctx *x, const char *base, int rank, const int64_t *dims,
                             const float *data) {
  const char *reused = x->st == CN_OK ? reused_init(x, rank, dims, data,
                                                    (size_t)numel_of(rank, dims) * sizeof(float))
                                      : NULL;
  if (reused) return reused;
  const char *name = "";
  Onnx__TensorProto *t = new_init(x, base, TYPE_FLOAT, rank, dims, &name);
  if (!t) return name;
  size_t bytes = (size_t)numel_of(rank, dims) * sizeof(float);
  x->init_bytes += bytes;
  if (x->init_bytes > EX_MAX_BYTES) {
    x->st = cn_fail(CN_ERR_LIMIT, "ONNX export: weights exceed the 2 GB a protobuf file holds");
    return name;
  }
  t->has_raw_data = 1;
  t->raw_data.data = (uint8_t *)data;
  t->raw_data.len = bytes;
  return name;
}

const char *cn_ex_scalar(cn_ex_ctx *x, const char *base, float v) {
  float *p = cn_ex_alloc(x, sizeof *p);
  if (!p) return "";
  *p = v;
  return cn_ex_init_float(x, base, 0, NULL, p);
}

const char *cn_ex_init_ints(cn_ex_ctx *x, const char *base, const int64_t *v, int k) {
  const char *name = "";
  int64_t dims[1] = {k};
  Onnx__TensorProto *t = new_init(x, base, TYPE_INT64, 1, dims, &name);
  int64_t *copy = cn_ex_alloc(x, (size_t)k * sizeof *copy);
  if (!t || !copy) return name;
  memcpy(copy, v, (size_t)k * sizeof *copy);
  t->int64_data = copy;
  t->n_int64_data = (size_t)k;
  return name;
}

/* ---- layouts ------------------------------------------------------------------------------- */

void cn_ex_perm_identity(int r, int *perm) {
  for (int i = 0; i < r; i++) perm[i] = i;
}

void cn_ex_perm_channels_first(int r, int axis, int *perm) {
  int k = 0;
  perm[k++] = 0;
  perm[k++] = axis;
  for (int i = 1; i < r; i++)
    if (i != axis) perm[k++] = i;
}

int cn_ex_perm_is_identity(int r, const int *perm) {
  for (int i = 0; i < r; i++)
    if (perm[i] != i) return 0;
  return 1;
}

int cn_ex_axis(const cn_ex_value *v, int axis) {
  for (int i = 0; i < v->rank; i++)
    if (v->perm[i] == axis) return i;
  return 0;
}

void cn_ex_set(cn_ex_ctx *x, int node, const char *name, const int *perm) {
  cn_ex_value *v = &x->values[node];
  v->name = name;
  v->alt_name = NULL;
  v->rank = x->g->nodes[node].shape.rank + 1;
  if (perm)
    memcpy(v->perm, perm, (size_t)v->rank * sizeof *perm);
  else
    cn_ex_perm_identity(v->rank, v->perm);
}

/* The transpose from tensor (held with perm have) to the wanted perm; 1 when it is the identity. */
static int transpose_to(int r, const int *have, const int *want, int64_t *t) {
  int same = 1;
  for (int i = 0; i < r; i++) {
    for (t[i] = 0; t[i] < r && have[t[i]] != want[i]; t[i]++) continue;
    if (t[i] != i) same = 0;
  }
  return same;
}

const char *cn_ex_input(cn_ex_ctx *x, int node, const int *want) {
  cn_ex_value *v = &x->values[node];
  if (x->st != CN_OK) return "";
  int64_t t[CN_MAX_RANK];
  if (v->alt_name && transpose_to(v->rank, v->alt_perm, want, t)) return v->alt_name;
  if (transpose_to(v->rank, v->perm, want, t)) return v->name;
  /* The tensor holds the value with axes v->perm; the wanted one has output axis i = engine axis
   * want[i], which is tensor axis t[i]. The previous form stays available as the alternative, so
   * a value read in two layouts (a residual branch) is transposed once. */
  const char *out = cn_ex_name(x, x->g->nodes[node].name, "perm");
  Onnx__NodeProto *n = cn_ex_node(x, "Transpose", &v->name, 1, out);
  cn_ex_attr_ints(x, n, "perm", t, v->rank);
  v->alt_name = v->name;
  memcpy(v->alt_perm, v->perm, sizeof v->perm);
  v->name = out;
  memcpy(v->perm, want, (size_t)v->rank * sizeof *want);
  return out;
}

const char *cn_ex_input_plain(cn_ex_ctx *x, int node) {
  int perm[CN_MAX_RANK];
  cn_ex_perm_identity(x->values[node].rank, perm);
  return cn_ex_input(x, node, perm);
}

/* ---- graph inputs and outputs -------------------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(cn_ex_ctx *x, const char *name, const cn_shape *s) {
  Onnx__ValueInfoProto *vi = cn_ex_alloc(x, sizeof *vi);
  Onnx__TypeProto *tp = cn_ex_alloc(x, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = cn_ex_alloc(x, sizeof *tt);
  Onnx__TensorShapeProto *sp = cn_ex_alloc(x, sizeof *sp);
  Onnx__TensorShapeProto__Dimension **dims = cn_ex_alloc(x, (size_t)(s->rank + 1) * sizeof *dims);
  if (!vi || !tp || !tt || !sp || !dims) return NULL;
  for (int i = 0; i <= s->rank; i++) {
    Onnx__TensorShapeProto__Dimension *d = cn_ex_alloc(x, sizeof *d);
    if (!d) return NULL;
    onnx__tensor_shape_proto__dimension__init(d);
    if (i == 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = "N";
    } else {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = s->dim[i - 1];
    }
    dims[i] = d;
  }
  onnx__tensor_shape_proto__init(sp);
  sp->dim = dims;
  sp->n_dim = (size_t)s->rank + 1;
  onnx__type_proto__tensor__init(tt);
  tt->has_elem_type = 1;
  tt->elem_type = TYPE_FLOAT;
  tt->shape = sp;
  onnx__type_proto__init(tp);
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  onnx__value_info_proto__init(vi);
  vi->name = (char *)name;
  vi->type = tp;
  return vi;
}

/* Graph outputs carry the engine node's name, in the engine's layout. */
static const char *output_name(cn_ex_ctx *x, int node) {
  const char *have = cn_ex_input_plain(x, node);
  const char *want = x->g->nodes[node].name;
  if (x->st != CN_OK || strcmp(have, want) == 0) return have;
  cn_ex_node(x, "Identity", &have, 1, want);
  return want;
}

static cn_status build_graph(cn_ex_ctx *x, Onnx__GraphProto *gp) {
  const cn_graph *g = x->g;
  int n_out = g->n_outputs ? g->n_outputs : 1;
  int outs[CN_MAX_GRAPH_IO];
  if (g->n_outputs)
    memcpy(outs, g->outputs, (size_t)n_out * sizeof *outs);
  else
    outs[0] = g->n_nodes - 1;
  for (int k = 0; k < n_out; k++)
    if (g->nodes[outs[k]].op == &cn_op_input)
      return cn_fail(CN_ERR_UNSUPPORTED, "ONNX export: graph output %s is a graph input",
                     g->nodes[outs[k]].name);
  x->init_begin = cn_ex_alloc(x, (size_t)(g->n_nodes + 1) * sizeof *x->init_begin);
  for (int i = 0; i < g->n_nodes && x->st == CN_OK; i++) {
    int owner = g->nodes[i].shares;
    x->init_begin[i] = x->n_inits;
    x->reuse_lo = owner >= 0 ? x->init_begin[owner] : 0;
    x->reuse_hi = owner >= 0 ? x->init_begin[owner + 1] : 0;
    cn_status st = cn_ex_convert(x, i);
    x->init_begin[i + 1] = x->n_inits;
    x->reuse_lo = x->reuse_hi = 0;
    if (st != CN_OK) return st;
  }
  Onnx__ValueInfoProto **ins = cn_ex_alloc(x, (size_t)g->n_inputs * sizeof *ins + 1);
  Onnx__ValueInfoProto **os = cn_ex_alloc(x, (size_t)n_out * sizeof *os);
  for (int k = 0; x->st == CN_OK && k < g->n_inputs; k++) {
    const cn_node *n = &g->nodes[g->inputs[k]];
    ins[k] = value_info(x, n->name, &n->shape);
  }
  for (int k = 0; x->st == CN_OK && k < n_out; k++)
    os[k] = value_info(x, output_name(x, outs[k]), &g->nodes[outs[k]].shape);
  if (x->st != CN_OK) return x->st;
  gp->name = "convnet";
  gp->node = x->nodes;
  gp->n_node = (size_t)x->n_nodes;
  gp->initializer = x->inits;
  gp->n_initializer = (size_t)x->n_inits;
  gp->input = ins;
  gp->n_input = (size_t)g->n_inputs;
  gp->output = os;
  gp->n_output = (size_t)n_out;
  return CN_OK;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* protobuf-c appends small pieces; they are gathered into blocks before each write. */
typedef struct file_sink {
  ProtobufCBuffer base;
  cn_atomic_file *file;
  cn_status st;
  size_t used;
  uint8_t buf[1 << 16];
} file_sink;

static void sink_flush(file_sink *s) {
  if (s->st == CN_OK && s->used) s->st = cn_atomic_write(s->file, s->buf, s->used);
  s->used = 0;
}

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
  file_sink *s = (file_sink *)b;
  if (s->st != CN_OK) return;
  if (s->used + len > sizeof s->buf) sink_flush(s);
  if (len >= sizeof s->buf) {
    if (s->st == CN_OK) s->st = cn_atomic_write(s->file, data, len);
    return;
  }
  memcpy(s->buf + s->used, data, len);
  s->used += len;
}

static cn_status write_model(const Onnx__ModelProto *m, const char *path) {
  cn_atomic_file f;
  cn_status st = cn_atomic_open(&f, path);
  if (st != CN_OK) return st;
  file_sink *s = malloc(sizeof *s);
  if (!s) {
    cn_atomic_abort(&f);
    return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  }
  s->base.append = sink_append;
  s->file = &f;
  s->st = CN_OK;
  s->used = 0;
  onnx__model_proto__pack_to_buffer(m, &s->base);
  sink_flush(s);
  st = s->st;
  free(s);
  if (st != CN_OK) {
    cn_atomic_abort(&f);
    return st;
  }
  return cn_atomic_commit(&f);
}

static void ctx_free(cn_ex_ctx *x) {
  for (int i = 0; i < x->n_blocks; i++) free(x->blocks[i]);
  free(x->blocks);
  free(x->nodes);
  free(x->inits);
  free(x->values);
}

cn_status cn_model_save_onnx(cn_model *model, const char *path) {
  if (!model || !path) return cn_fail(CN_ERR_ARG, "cn_model_save_onnx: NULL argument");
  cn_ex_ctx x = {.g = model->graph};
  if (x.g->n_nodes < 1) return cn_fail(CN_ERR_ARG, "%s: the model has no layers", path);
  x.values = calloc((size_t)x.g->n_nodes, sizeof *x.values);
  if (!x.values) return cn_fail(CN_ERR_NOMEM, "%s: out of memory", path);
  Onnx__GraphProto gp;
  onnx__graph_proto__init(&gp);
  cn_status st = build_graph(&x, &gp);
  if (st == CN_OK) {
    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = EX_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__ModelProto m;
    onnx__model_proto__init(&m);
    m.has_ir_version = 1;
    m.ir_version = EX_IR_VERSION;
    m.producer_name = "convnet";
    m.producer_version = CONVNET_VERSION;
    m.graph = &gp;
    m.opset_import = opsets;
    m.n_opset_import = 1;
    st = write_model(&m, path);
  }
  ctx_free(&x);
  return st;
}
