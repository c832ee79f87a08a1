/* A restricted unpickler for PyTorch state_dicts. It understands only the opcodes torch.save
 * emits for a dict of tensors and only the globals that rebuild tensors, storages and
 * OrderedDicts; it builds plain values (pk_obj) and never calls anything, so a pickle that names
 * any other global (os.system, builtins.eval...) is refused by that name. Every count, length and
 * index is checked against the bytes left and the CN_PT_MAX_* limits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/pytorch/internal.h"

static const struct {
  const char *name;
  size_t size;
} dtype_info[CN_PT_DTYPE_COUNT] = {
    [CN_PT_FLOAT32] = {"float32", 4}, [CN_PT_FLOAT64] = {"float64", 8},
    [CN_PT_FLOAT16] = {"float16", 2}, [CN_PT_BFLOAT16] = {"bfloat16", 2},
    [CN_PT_INT64] = {"int64", 8},     [CN_PT_INT32] = {"int32", 4},
    [CN_PT_INT16] = {"int16", 2},     [CN_PT_INT8] = {"int8", 1},
    [CN_PT_UINT8] = {"uint8", 1},     [CN_PT_BOOL] = {"bool", 1},
};

const char *cn_pt_dtype_name(cn_pt_dtype dtype) {
  return (unsigned)dtype < CN_PT_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t cn_pt_dtype_size(cn_pt_dtype dtype) {
  return (unsigned)dtype < CN_PT_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

/* torch.<name> storage classes a state_dict may name. */
static const struct {
  const char *name;
  cn_pt_dtype dtype;
} storage_types[] = {
    {"FloatStorage", CN_PT_FLOAT32}, {"DoubleStorage", CN_PT_FLOAT64},
    {"HalfStorage", CN_PT_FLOAT16},  {"BFloat16Storage", CN_PT_BFLOAT16},
    {"LongStorage", CN_PT_INT64},    {"IntStorage", CN_PT_INT32},
    {"ShortStorage", CN_PT_INT16},   {"CharStorage", CN_PT_INT8},
    {"ByteStorage", CN_PT_UINT8},    {"BoolStorage", CN_PT_BOOL},
};

/* ---- the machine's state --------------------------------------------------------------------- */

typedef struct pk_machine {
  pk_unpickler *u;
  const uint8_t *data;
  size_t size, pos, op_pos;
  pk_obj **stack;
  size_t n_stack, cap_stack;
  size_t marks[CN_PT_MAX_MARKS];
  int n_marks;
  pk_obj **memo;
  size_t cap_memo, n_memo;
} pk_machine;

static cn_status fail(pk_machine *m, cn_status st, const char *what) {
  return cn_fail(st, "%s: pickle: %s at byte %zu", m->u->name, what, m->op_pos);
}

static pk_obj *pk_new(pk_machine *m, pk_kind kind) {
  if (m->u->n_objects >= CN_PT_MAX_OBJECTS) return NULL;
  pk_obj *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = kind;
  o->next_alloc = m->u->objects;
  m->u->objects = o;
  m->u->n_objects++;
  return o;
}

void pk_free(pk_unpickler *u) {
  pk_obj *o = u->objects;
  while (o) {
    pk_obj *next = o->next_alloc;
    free(o->s);
    free(o->items);
    free(o);
    o = next;
  }
  u->objects = NULL;
  u->n_objects = 0;
}

static cn_status need(pk_machine *m, size_t n) {
  if (m->size - m->pos < n) return fail(m, CN_ERR_FORMAT, "truncated");
  return CN_OK;
}

static uint64_t read_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static cn_status push(pk_machine *m, pk_obj *o) {
  if (!o) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  if (m->n_stack == m->cap_stack) {
    if (m->cap_stack >= CN_PT_MAX_STACK) return fail(m, CN_ERR_LIMIT, "stack too deep");
    size_t cap = m->cap_stack ? m->cap_stack * 2 : 64;
    if (cap > CN_PT_MAX_STACK) cap = CN_PT_MAX_STACK;
    pk_obj **s = realloc(m->stack, cap * sizeof *s);
    if (!s) return fail(m, CN_ERR_NOMEM, "out of memory");
    m->stack = s;
    m->cap_stack = cap;
  }
  m->stack[m->n_stack++] = o;
  return CN_OK;
}

/* The stack floor: values below the innermost MARK are not for ordinary pops. */
static size_t floor_of(const pk_machine *m) {
  return m->n_marks ? m->marks[m->n_marks - 1] : 0;
}

static cn_status pop(pk_machine *m, pk_obj **o) {
  if (m->n_stack <= floor_of(m)) return fail(m, CN_ERR_FORMAT, "stack underflow");
  *o = m->stack[--m->n_stack];
  return CN_OK;
}

static cn_status top(pk_machine *m, pk_obj **o) {
  if (m->n_stack <= floor_of(m)) return fail(m, CN_ERR_FORMAT, "stack underflow");
  *o = m->stack[m->n_stack - 1];
  return CN_OK;
}

/* Pops the values above the innermost MARK: they are stack[*first .. n_stack). */
static cn_status pop_mark(pk_machine *m, size_t *first) {
  if (m->n_marks == 0) return fail(m, CN_ERR_FORMAT, "no MARK");
  *first = m->marks[--m->n_marks];
  return CN_OK;
}

static cn_status seq_append(pk_machine *m, pk_obj *seq, pk_obj *item) {
  if (seq->n == seq->cap) {
    size_t cap = seq->cap ? seq->cap * 2 : 4;
    if (cap > CN_PT_MAX_OBJECTS * 2) return fail(m, CN_ERR_LIMIT, "container too large");
    pk_obj **items = realloc(seq->items, cap * sizeof *items);
    if (!items) return fail(m, CN_ERR_NOMEM, "out of memory");
    seq->items = items;
    seq->cap = cap;
  }
  seq->items[seq->n++] = item;
  return CN_OK;
}

/* A new TUPLE of the n given values. */
/* A tuple of the n stack values from stack[first]; indexed, not by pointer, because the stack
 * of a pickle that has pushed nothing yet is NULL (NULL + 0 is undefined behaviour). */
static cn_status make_tuple(pk_machine *m, size_t first, size_t n, pk_obj **out) {
  pk_obj *t = pk_new(m, PK_TUPLE);
  if (!t) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  for (size_t i = 0; i < n; i++) {
    cn_status st = seq_append(m, t, m->stack[first + i]);
    if (st != CN_OK) return st;
  }
  *out = t;
  return CN_OK;
}

/* ---- opcode groups --------------------------------------------------------------------------- */

static cn_status op_memo_put(pk_machine *m, size_t index) {
  pk_obj *o = NULL;
  cn_status st = top(m, &o);
  if (st != CN_OK) return st;
  if (index >= CN_PT_MAX_MEMO) return fail(m, CN_ERR_LIMIT, "memo index too large");
  if (index >= m->cap_memo) {
    size_t cap = m->cap_memo ? m->cap_memo : 64;
    while (cap <= index) cap *= 2;
    pk_obj **memo = realloc(m->memo, cap * sizeof *memo);
    if (!memo) return fail(m, CN_ERR_NOMEM, "out of memory");
    memset(memo + m->cap_memo, 0, (cap - m->cap_memo) * sizeof *memo);
    m->memo = memo;
    m->cap_memo = cap;
  }
  if (!m->memo[index]) m->n_memo++;
  m->memo[index] = o;
  return CN_OK;
}

static cn_status op_memo_get(pk_machine *m, size_t index) {
  if (index >= m->cap_memo || !m->memo[index]) return fail(m, CN_ERR_FORMAT, "memo index not set");
  return push(m, m->memo[index]);
}

static cn_status op_string(pk_machine *m, int len_bytes) {
  cn_status st = need(m, (size_t)len_bytes);
  if (st != CN_OK) return st;
  uint64_t len = read_le(m->data + m->pos, len_bytes);
  m->pos += (size_t)len_bytes;
  if (len > m->size - m->pos) return fail(m, CN_ERR_FORMAT, "truncated string");
  pk_obj *o = pk_new(m, PK_STR);
  if (!o) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  o->s = malloc((size_t)len + 1);
  if (!o->s) return fail(m, CN_ERR_NOMEM, "out of memory");
  memcpy(o->s, m->data + m->pos, (size_t)len);
  o->s[len] = 0;
  o->len = (size_t)len;
  m->pos += (size_t)len;
  return push(m, o);
}

static cn_status op_int(pk_machine *m, int64_t v) {
  pk_obj *o = pk_new(m, PK_INT);
  if (o) o->i = v;
  return push(m, o);
}

static cn_status op_fixed_int(pk_machine *m, int bytes, int is_signed) {
  cn_status st = need(m, (size_t)bytes);
  if (st != CN_OK) return st;
  uint64_t v = read_le(m->data + m->pos, bytes);
  m->pos += (size_t)bytes;
  if (is_signed) return op_int(m, (int64_t)(int32_t)(uint32_t)v);
  return op_int(m, (int64_t)v);
}

/* LONG1: n bytes of little-endian two's complement. */
static cn_status op_long1(pk_machine *m) {
  cn_status st = need(m, 1);
  if (st != CN_OK) return st;
  size_t n = m->data[m->pos++];
  if ((st = need(m, n)) != CN_OK) return st;
  const uint8_t *p = m->data + m->pos;
  m->pos += n;
  if (n > 16) return fail(m, CN_ERR_UNSUPPORTED, "integer wider than 128 bits");
  if (n > 8) {
    pk_obj *o = pk_new(m, PK_BIGINT);
    if (o) {
      memcpy(o->raw, p, n);
      o->len = n;
    }
    return push(m, o);
  }
  uint64_t v = n ? read_le(p, (int)n) : 0;
  if (n && n < 8 && (p[n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
  return op_int(m, (int64_t)v);
}

static cn_status op_binfloat(pk_machine *m) {
  cn_status st = need(m, 8);
  if (st != CN_OK) return st;
  uint64_t bits = 0;
  for (int i = 0; i < 8; i++) bits = (bits << 8) | m->data[m->pos + i]; /* big-endian */
  m->pos += 8;
  pk_obj *o = pk_new(m, PK_FLOAT);
  if (o) memcpy(&o->f, &bits, sizeof o->f);
  return push(m, o);
}

/* Prints a name from the file safely inside a one-line message. */
static void printable(const char *s, char *buf, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; s[i] && j + 1 < cap; i++)
    buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  buf[j] = 0;
}

static cn_status resolve_global(pk_machine *m, const char *module, const char *name) {
  pk_obj *o = pk_new(m, PK_GLOBAL);
  if (!o) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0) {
    o->global = PK_G_REBUILD_TENSOR_V2;
    return push(m, o);
  }
  if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_parameter") == 0) {
    o->global = PK_G_REBUILD_PARAMETER;
    return push(m, o);
  }
  if (strcmp(module, "collections") == 0 && strcmp(name, "OrderedDict") == 0) {
    o->global = PK_G_ORDERED_DICT;
    return push(m, o);
  }
  if (strcmp(module, "torch") == 0) {
    for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++) {
      if (strcmp(name, storage_types[i].name) == 0) {
        o->global = PK_G_STORAGE;
        o->dtype = storage_types[i].dtype;
        return push(m, o);
      }
    }
  }
  char pm[128], pn[128];
  printable(module, pm, sizeof pm);
  printable(name, pn, sizeof pn);
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: refusing pickle global %s.%s", m->u->name, pm, pn);
}

/* GLOBAL: "module\nname\n" as text. */
static cn_status read_line(pk_machine *m, char *buf, size_t cap) {
  const uint8_t *start = m->data + m->pos;
  size_t left = m->size - m->pos;
  const uint8_t *nl = memchr(start, '\n', left < cap ? left : cap);
  if (!nl) return fail(m, CN_ERR_FORMAT, "GLOBAL name too long or truncated");
  size_t len = (size_t)(nl - start);
  memcpy(buf, start, len);
  buf[len] = 0;
  m->pos += len + 1;
  return CN_OK;
}

static cn_status op_global(pk_machine *m) {
  char module[256], name[256];
  cn_status st = read_line(m, module, sizeof module);
  if (st == CN_OK) st = read_line(m, name, sizeof name);
  if (st != CN_OK) return st;
  return resolve_global(m, module, name);
}

static cn_status op_stack_global(pk_machine *m) {
  pk_obj *name = NULL, *module = NULL;
  cn_status st = pop(m, &name);
  if (st == CN_OK) st = pop(m, &module);
  if (st != CN_OK) return st;
  if (name->kind != PK_STR || module->kind != PK_STR)
    return fail(m, CN_ERR_FORMAT, "STACK_GLOBAL needs two strings");
  return resolve_global(m, module->s, name->s);
}

static cn_status op_tuple_n(pk_machine *m, size_t n) {
  if (m->n_stack - floor_of(m) < n) return fail(m, CN_ERR_FORMAT, "stack underflow");
  pk_obj *t = NULL;
  cn_status st = make_tuple(m, m->n_stack - n, n, &t);
  if (st != CN_OK) return st;
  m->n_stack -= n;
  return push(m, t);
}

static cn_status op_tuple_mark(pk_machine *m) {
  size_t first = 0;
  cn_status st = pop_mark(m, &first);
  if (st != CN_OK) return st;
  pk_obj *t = NULL;
  st = make_tuple(m, first, m->n_stack - first, &t);
  if (st != CN_OK) return st;
  m->n_stack = first;
  return push(m, t);
}

/* APPEND / APPENDS: values stack[first..) go into the list just below them. */
static cn_status append_from(pk_machine *m, size_t first) {
  if (first == 0 || first <= floor_of(m)) return fail(m, CN_ERR_FORMAT, "APPEND without a list");
  pk_obj *list = m->stack[first - 1];
  if (list->kind != PK_LIST) return fail(m, CN_ERR_FORMAT, "APPEND to a non-list");
  for (size_t i = first; i < m->n_stack; i++) {
    cn_status st = seq_append(m, list, m->stack[i]);
    if (st != CN_OK) return st;
  }
  m->n_stack = first;
  return CN_OK;
}

static cn_status setitems_from(pk_machine *m, size_t first) {
  if (first == 0 || first <= floor_of(m)) return fail(m, CN_ERR_FORMAT, "SETITEM without a dict");
  pk_obj *dict = m->stack[first - 1];
  if (dict->kind != PK_DICT) return fail(m, CN_ERR_FORMAT, "SETITEM on a non-dict");
  if ((m->n_stack - first) % 2) return fail(m, CN_ERR_FORMAT, "SETITEMS with an odd count");
  for (size_t i = first; i < m->n_stack; i++) {
    cn_status st = seq_append(m, dict, m->stack[i]);
    if (st != CN_OK) return st;
  }
  m->n_stack = first;
  return CN_OK;
}

static cn_status op_append(pk_machine *m, int many, int dict) {
  size_t first = 0;
  if (many) {
    cn_status st = pop_mark(m, &first);
    if (st != CN_OK) return st;
  } else {
    size_t n = dict ? 2 : 1;
    if (m->n_stack - floor_of(m) < n + 1) return fail(m, CN_ERR_FORMAT, "stack underflow");
    first = m->n_stack - n;
  }
  return dict ? setitems_from(m, first) : append_from(m, first);
}

/* ---- what the allowed globals build ---------------------------------------------------------- */

static int is_int(const pk_obj *o) {
  return o->kind == PK_INT;
}

/* A tuple of up to CN_MAX_RANK non-negative ints into a shape. */
static cn_status int_tuple(pk_machine *m, const pk_obj *t, const char *what, cn_shape *out) {
  if (t->kind != PK_TUPLE) return fail(m, CN_ERR_FORMAT, what);
  if (t->n > CN_MAX_RANK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: pickle: tensor of rank %zu (at most %d)", m->u->name,
                   t->n, CN_MAX_RANK);
  out->rank = (int)t->n;
  for (size_t i = 0; i < t->n; i++) {
    if (!is_int(t->items[i]) || t->items[i]->i < 0) return fail(m, CN_ERR_FORMAT, what);
    out->dim[i] = t->items[i]->i;
  }
  return CN_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, metadata]) */
static cn_status rebuild_tensor(pk_machine *m, const pk_obj *args, pk_obj **out) {
  if (args->n != 6 && args->n != 7)
    return fail(m, CN_ERR_FORMAT, "_rebuild_tensor_v2 with the wrong number of arguments");
  pk_obj *const *a = args->items;
  if (a[0]->kind != PK_STORAGE) return fail(m, CN_ERR_FORMAT, "tensor without a storage");
  if (!is_int(a[1]) || a[1]->i < 0) return fail(m, CN_ERR_FORMAT, "bad storage offset");
  pk_obj *t = pk_new(m, PK_TENSOR);
  if (!t) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  cn_status st = int_tuple(m, a[2], "bad tensor size", &t->shape);
  if (st == CN_OK) st = int_tuple(m, a[3], "bad tensor stride", &t->stride);
  if (st != CN_OK) return st;
  if (t->shape.rank != t->stride.rank)
    return fail(m, CN_ERR_FORMAT, "tensor size and stride differ in rank");
  t->storage = a[0];
  t->dtype = a[0]->dtype;
  t->offset = a[1]->i;
  *out = t;
  return CN_OK;
}

/* OrderedDict() or OrderedDict([(key, value), ...]). */
static cn_status rebuild_dict(pk_machine *m, const pk_obj *args, pk_obj **out) {
  pk_obj *d = pk_new(m, PK_DICT);
  if (!d) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  if (args->n > 1) return fail(m, CN_ERR_FORMAT, "OrderedDict with several arguments");
  if (args->n == 1) {
    const pk_obj *pairs = args->items[0];
    if (pairs->kind != PK_LIST && pairs->kind != PK_TUPLE)
      return fail(m, CN_ERR_FORMAT, "OrderedDict of a non-list");
    for (size_t i = 0; i < pairs->n; i++) {
      const pk_obj *p = pairs->items[i];
      if ((p->kind != PK_LIST && p->kind != PK_TUPLE) || p->n != 2)
        return fail(m, CN_ERR_FORMAT, "OrderedDict item is not a pair");
      cn_status st = seq_append(m, d, p->items[0]);
      if (st == CN_OK) st = seq_append(m, d, p->items[1]);
      if (st != CN_OK) return st;
    }
  }
  *out = d;
  return CN_OK;
}

static cn_status op_reduce(pk_machine *m) {
  pk_obj *args = NULL, *callable = NULL, *result = NULL;
  cn_status st = pop(m, &args);
  if (st == CN_OK) st = pop(m, &callable);
  if (st != CN_OK) return st;
  if (args->kind != PK_TUPLE) return fail(m, CN_ERR_FORMAT, "REDUCE arguments are not a tuple");
  if (callable->kind != PK_GLOBAL) return fail(m, CN_ERR_FORMAT, "REDUCE of a non-callable");
  switch (callable->global) {
  case PK_G_REBUILD_TENSOR_V2:
    st = rebuild_tensor(m, args, &result);
    break;
  case PK_G_ORDERED_DICT:
    st = rebuild_dict(m, args, &result);
    break;
  case PK_G_REBUILD_PARAMETER:
    if (args->n < 1 || args->items[0]->kind != PK_TENSOR)
      return fail(m, CN_ERR_FORMAT, "_rebuild_parameter of a non-tensor");
    result = args->items[0];
    break;
  default:
    return fail(m, CN_ERR_UNSUPPORTED, "a storage type called as a function");
  }
  if (st != CN_OK) return st;
  return push(m, result);
}

/* BINPERSID: ('storage', torch.<Type>Storage, key, location, numel[, view_metadata]). */
static cn_status op_persid(pk_machine *m) {
  pk_obj *pid = NULL;
  cn_status st = pop(m, &pid);
  if (st != CN_OK) return st;
  if (pid->kind != PK_TUPLE || pid->n < 5 || pid->n > 6 || pid->items[0]->kind != PK_STR ||
      strcmp(pid->items[0]->s, "storage") != 0)
    return fail(m, CN_ERR_FORMAT, "persistent id is not a storage");
  pk_obj *const *a = pid->items;
  if (a[1]->kind != PK_GLOBAL || a[1]->global != PK_G_STORAGE)
    return fail(m, CN_ERR_FORMAT, "persistent id without a storage type");
  if (a[2]->kind != PK_STR && !is_int(a[2]))
    return fail(m, CN_ERR_FORMAT, "storage key is not a string");
  if (!is_int(a[4]) || a[4]->i < 0) return fail(m, CN_ERR_FORMAT, "bad storage size");
  if (pid->n == 6 && a[5]->kind != PK_NONE)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: storage views of the pre-1.0 format are not supported",
                   m->u->name);
  pk_obj *s = pk_new(m, PK_STORAGE);
  if (!s) return fail(m, CN_ERR_NOMEM, "out of memory or too many values");
  char key[32];
  const char *k = a[2]->s;
  if (a[2]->kind != PK_STR) {
    snprintf(key, sizeof key, "%" PRId64, a[2]->i);
    k = key;
  }
  s->s = strdup(k);
  if (!s->s) return fail(m, CN_ERR_NOMEM, "out of memory");
  s->len = strlen(k);
  s->dtype = a[1]->dtype;
  s->numel = a[4]->i;
  return push(m, s);
}

/* BUILD sets an object's state: only dicts (state_dict._metadata) and tensors may get one, and
 * the state is dropped. */
static cn_status op_build(pk_machine *m) {
  pk_obj *state = NULL, *target = NULL;
  cn_status st = pop(m, &state);
  if (st == CN_OK) st = top(m, &target);
  if (st != CN_OK) return st;
  if (target->kind != PK_DICT && target->kind != PK_TENSOR)
    return fail(m, CN_ERR_FORMAT, "BUILD on an object that takes no state");
  return CN_OK;
}

static cn_status op_mark(pk_machine *m) {
  if (m->n_marks >= CN_PT_MAX_MARKS) return fail(m, CN_ERR_LIMIT, "MARKs nested too deeply");
  m->marks[m->n_marks++] = m->n_stack;
  return CN_OK;
}

static cn_status op_simple(pk_machine *m, pk_kind kind, int64_t v) {
  pk_obj *o = pk_new(m, kind);
  if (o) o->i = v;
  return push(m, o);
}

static cn_status op_index(pk_machine *m, int bytes, int put) {
  cn_status st = need(m, (size_t)bytes);
  if (st != CN_OK) return st;
  size_t index = (size_t)read_le(m->data + m->pos, bytes);
  m->pos += (size_t)bytes;
  return put ? op_memo_put(m, index) : op_memo_get(m, index);
}

static cn_status op_skip(pk_machine *m, size_t n) {
  cn_status st = need(m, n);
  if (st == CN_OK) m->pos += n;
  return st;
}

static cn_status op_proto(pk_machine *m) {
  cn_status st = need(m, 1);
  if (st != CN_OK) return st;
  if (m->data[m->pos++] > 5) return fail(m, CN_ERR_UNSUPPORTED, "pickle protocol above 5");
  return CN_OK;
}

static cn_status step(pk_machine *m, uint8_t op) {
  switch (op) {
  case 0x80:
    return op_proto(m);
  case 0x95:
    return op_skip(m, 8); /* FRAME: its length only helps buffered readers */
  case 'c':
    return op_global(m);
  case 0x93:
    return op_stack_global(m);
  case 'q':
    return op_index(m, 1, 1);
  case 'r':
    return op_index(m, 4, 1);
  case 'h':
    return op_index(m, 1, 0);
  case 'j':
    return op_index(m, 4, 0);
  case 0x94:
    return op_memo_put(m, m->n_memo); /* MEMOIZE */
  case '(':
    return op_mark(m);
  case '}':
    return op_simple(m, PK_DICT, 0);
  case ']':
    return op_simple(m, PK_LIST, 0);
  case ')':
    return op_simple(m, PK_TUPLE, 0);
  case 't':
    return op_tuple_mark(m);
  case 0x85:
    return op_tuple_n(m, 1);
  case 0x86:
    return op_tuple_n(m, 2);
  case 0x87:
    return op_tuple_n(m, 3);
  case 's':
    return op_append(m, 0, 1);
  case 'u':
    return op_append(m, 1, 1);
  case 'a':
    return op_append(m, 0, 0);
  case 'e':
    return op_append(m, 1, 0);
  case 'J':
    return op_fixed_int(m, 4, 1);
  case 'K':
    return op_fixed_int(m, 1, 0);
  case 'M':
    return op_fixed_int(m, 2, 0);
  case 0x8a:
    return op_long1(m);
  case 'X':
    return op_string(m, 4);
  case 0x8d:
    return op_string(m, 8);
  case 0x8c:
    return op_string(m, 1);
  case 0x88:
    return op_simple(m, PK_BOOL, 1);
  case 0x89:
    return op_simple(m, PK_BOOL, 0);
  case 'N':
    return op_simple(m, PK_NONE, 0);
  case 'R':
    return op_reduce(m);
  case 'b':
    return op_build(m);
  case 'Q':
    return op_persid(m);
  case 'G':
    return op_binfloat(m);
  default:
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: pickle: opcode 0x%02x at byte %zu is not allowed",
                   m->u->name, op, m->op_pos);
  }
}

cn_status pk_load(pk_unpickler *u, const uint8_t *data, size_t size, size_t *pos, pk_obj **out) {
  pk_machine m = {.u = u, .data = data, .size = size, .pos = *pos};
  cn_status st = CN_OK;
  *out = NULL;
  for (;;) {
    m.op_pos = m.pos;
    if (m.pos >= m.size) {
      st = fail(&m, CN_ERR_FORMAT, "truncated (no STOP)");
      break;
    }
    uint8_t op = data[m.pos++];
    if (op == '.') {
      if (m.n_stack != 1 || m.n_marks)
        st = fail(&m, CN_ERR_FORMAT, "STOP with a bad stack");
      else
        *out = m.stack[0];
      break;
    }
    st = step(&m, op);
    if (st != CN_OK) break;
  }
  free(m.stack);
  free(m.memo);
  if (st == CN_OK) *pos = m.pos;
  return st;
}

pk_obj *pk_dict_get(const pk_obj *dict, const char *key) {
  if (!dict || dict->kind != PK_DICT) return NULL;
  for (size_t i = 0; i + 1 < dict->n; i += 2)
    if (dict->items[i]->kind == PK_STR && strcmp(dict->items[i]->s, key) == 0)
      return dict->items[i + 1];
  return NULL;
}
