/* The native model file (.cnm): writing a model and rebuilding it from the file, with every value
 * of the untrusted file checked before use (docs/formats.md describes the layout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/native/internal.h"

enum {
  MAX_NODES = 65536,
  MAX_NODE_NAME = 1024,
  MAX_NODE_INPUTS = 256,
};

/* Metadata keys of the model; a file's other keys are refused (or left to a checkpoint reader). */
static const char *const model_keys[] = {
    "format", "version", "name", "graph", "classes", "input_spec", CN_ST_CHECKSUM_KEY};

static int is_model_key(const char *key) {
  for (size_t i = 0; i < sizeof model_keys / sizeof *model_keys; i++)
    if (strcmp(model_keys[i], key) == 0) return 1;
  return 0;
}

/* ---- writing ------------------------------------------------------------------------------ */

static cJSON *names_json(const cn_graph *g, const int *nodes, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(g->nodes[nodes[i]].name));
  return a;
}

static cJSON *node_json(const cn_graph *g, const cn_node *n) {
  cJSON *attrs = cn_native_attrs_to_json(n->op, n->attrs);
  if (!attrs) return NULL;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", n->name);
  cJSON_AddStringToObject(o, "op", n->op->type);
  cJSON_AddStringToObject(o, "type", n->type);
  cJSON_AddItemToObject(o, "inputs", names_json(g, n->inputs, n->n_inputs));
  cJSON_AddBoolToObject(o, "trainable", n->trainable != 0);
  cJSON_AddItemToObject(o, "attrs", attrs);
  if (n->shares >= 0) cJSON_AddStringToObject(o, "shares", g->nodes[n->shares].name);
  return o;
}

/* {"nodes": [...], "inputs": [names], "outputs": [names]} */
static char *graph_text(const cn_graph *g) {
  cJSON *root = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(root, "nodes");
  for (int i = 0; i < g->n_nodes; i++) {
    cJSON *n = node_json(g, &g->nodes[i]);
    if (!n) {
      cn_fail_context(CN_ERR_UNSUPPORTED, "%s", g->nodes[i].name);
      cJSON_Delete(root);
      return NULL;
    }
    cJSON_AddItemToArray(nodes, n);
  }
  int last = g->n_nodes - 1;
  cJSON_AddItemToObject(root, "inputs", names_json(g, g->inputs, g->n_inputs));
  cJSON_AddItemToObject(root, "outputs",
                        g->n_outputs ? names_json(g, g->outputs, g->n_outputs)
                                     : names_json(g, &last, 1));
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!text) cn_fail(CN_ERR_NOMEM, "out of memory writing the graph");
  return text;
}

static char *classes_text(const cn_model *m) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < m->n_class_names; i++)
    cJSON_AddItemToArray(a, cJSON_CreateString(m->class_names[i]));
  char *text = cJSON_PrintUnformatted(a);
  cJSON_Delete(a);
  return text;
}

static char *spec_text(const cn_model *m) {
  cJSON *o = cn_native_spec_to_json(&m->spec);
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

/* What a model writes: its parameters and its metadata. */
typedef struct model_parts {
  cn_st_tensor *tensors;
  char **names;
  int n;
  char *graph, *classes, *spec;
} model_parts;

static void parts_free(model_parts *p) {
  for (int i = 0; i < p->n; i++) free(p->names[i]);
  free(p->names);
  free(p->tensors);
  free(p->graph);
  free(p->classes);
  free(p->spec);
}

static int param_total(const cn_graph *g) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) n += g->nodes[i].n_params;
  return n;
}

/* Version 2 adds the "shares" field; files without shared layers stay version 1, which every
 * reader of version 1 reads. */
static const char *version_for(const cn_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].shares >= 0) return CN_NATIVE_VERSION_SHARED;
  return CN_NATIVE_VERSION;
}

static cn_status collect_tensors(const cn_graph *g, model_parts *p) {
  int total = param_total(g);
  p->tensors = calloc((size_t)(total ? total : 1), sizeof *p->tensors);
  p->names = calloc((size_t)(total ? total : 1), sizeof *p->names);
  if (!p->tensors || !p->names) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params && g->nodes[i].shares < 0; k++) {
      const cn_param *param = &g->nodes[i].params[k];
      size_t len = strlen(g->nodes[i].name) + strlen(param->name) + 2;
      char *name = malloc(len);
      if (!name) return cn_fail(CN_ERR_NOMEM, "out of memory");
      snprintf(name, len, "%s/%s", g->nodes[i].name, param->name);
      p->names[p->n] = name;
      p->tensors[p->n++] = (cn_st_tensor){
          .name = name, .dtype = CN_ST_F32, .shape = param->shape, .data = param->data};
    }
  return CN_OK;
}

static cn_status collect_parts(cn_model *m, model_parts *p) {
  memset(p, 0, sizeof *p);
  if (!m->graph->params && m->graph->n_nodes && param_total(m->graph))
    return cn_fail(CN_ERR_ARG, "%s: parameters not allocated", m->name);
  cn_status st = collect_tensors(m->graph, p);
  if (st != CN_OK) return st;
  p->graph = graph_text(m->graph);
  if (!p->graph) return cn_fail_context(CN_ERR_UNSUPPORTED, "%s", m->name);
  p->classes = classes_text(m);
  p->spec = spec_text(m);
  if (!p->classes || !p->spec) return cn_fail(CN_ERR_NOMEM, "out of memory");
  return CN_OK;
}

static cn_status join_meta(const model_parts *p, cn_model *m, const char *format,
                           const cn_st_meta *extra, int n_extra, cn_st_meta **out, int *n) {
  *out = malloc((size_t)(6 + n_extra) * sizeof **out);
  if (!*out) return cn_fail(CN_ERR_NOMEM, "out of memory");
  cn_st_meta *meta = *out;
  meta[0] = (cn_st_meta){"format", format};
  meta[1] = (cn_st_meta){"version", version_for(m->graph)};
  meta[2] = (cn_st_meta){"name", m->name};
  meta[3] = (cn_st_meta){"graph", p->graph};
  meta[4] = (cn_st_meta){"classes", p->classes};
  meta[5] = (cn_st_meta){"input_spec", p->spec};
  for (int i = 0; i < n_extra; i++) {
    if (!extra[i].key || is_model_key(extra[i].key))
      return cn_fail(CN_ERR_ARG, "metadata key '%s' is the model's",
                     extra[i].key ? extra[i].key : "(null)");
    meta[6 + i] = extra[i];
  }
  *n = 6 + n_extra;
  return CN_OK;
}

static cn_status join_tensors(const model_parts *p, const cn_st_tensor *extra, int n_extra,
                              cn_st_tensor **out) {
  *out = malloc((size_t)(p->n + n_extra + 1) * sizeof **out);
  if (!*out) return cn_fail(CN_ERR_NOMEM, "out of memory");
  if (p->n) memcpy(*out, p->tensors, (size_t)p->n * sizeof **out);
  if (n_extra) memcpy(*out + p->n, extra, (size_t)n_extra * sizeof **out);
  return CN_OK;
}

cn_status cn_native_write(cn_model *m, const char *path, const char *format,
                          const cn_st_tensor *extra, int n_extra, const cn_st_meta *extra_meta,
                          int n_extra_meta) {
  if (!m || !path || !format || n_extra < 0 || n_extra_meta < 0 || (n_extra && !extra) ||
      (n_extra_meta && !extra_meta))
    return cn_fail(CN_ERR_ARG, "cn_native_write: bad argument");
  model_parts p;
  cn_st_meta *meta = NULL;
  cn_st_tensor *tensors = NULL;
  int n_meta = 0;
  cn_status st = collect_parts(m, &p);
  if (st == CN_OK) st = join_meta(&p, m, format, extra_meta, n_extra_meta, &meta, &n_meta);
  if (st == CN_OK) st = join_tensors(&p, extra, n_extra, &tensors);
  if (st == CN_OK) st = cn_safetensors_write(path, tensors, p.n + n_extra, meta, n_meta);
  free(meta);
  free(tensors);
  parts_free(&p);
  return st;
}

cn_status cn_model_save(cn_model *m, const char *path) {
  if (!m || !path) return cn_fail(CN_ERR_ARG, "cn_model_save: NULL argument");
  return cn_native_write(m, path, CN_NATIVE_FORMAT, NULL, 0, NULL, 0);
}

/* ---- reading ------------------------------------------------------------------------------ */

typedef struct reader {
  const cn_safetensors *f;
  const char *path;
  cn_graph *g;
  int allow_extra;
  int shares; /* the file's version allows shared layers */
} reader;

static cJSON *parse_meta_json(const reader *r, const char *key, int required, cn_status *st) {
  const char *text = cn_safetensors_meta(r->f, key);
  *st = CN_OK;
  if (!text) {
    if (required) *st = cn_fail(CN_ERR_FORMAT, "%s: no '%s' in the metadata", r->path, key);
    return NULL;
  }
  cJSON *json = cJSON_Parse(text);
  if (!json) *st = cn_fail(CN_ERR_FORMAT, "%s: metadata '%s' is not valid JSON", r->path, key);
  return json;
}

static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NODE_NAME) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20) return 0;
  return 1;
}

static const cn_op *find_op(const char *type) {
  for (const cn_op *const *o = cn_all_ops; *o; o++)
    if (strcmp((*o)->type, type) == 0) return *o;
  return NULL;
}

/* A string member, or NULL (with *st set when it is required or not a string). */
static const char *string_member(const reader *r, const cJSON *o, const char *key,
                                 const char *where, cn_status *st) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (cJSON_IsString(v)) return v->valuestring;
  *st = cn_fail(CN_ERR_FORMAT, "%s: %s: '%s' is missing or not a string", r->path, where, key);
  return NULL;
}

/* Names of earlier nodes -> their indices. */
static cn_status resolve_names(const reader *r, const cJSON *a, const char *where, int max,
                               int *out, int *n) {
  if (!cJSON_IsArray(a))
    return cn_fail(CN_ERR_FORMAT, "%s: %s: not a list of names", r->path, where);
  *n = 0;
  for (const cJSON *e = a->child; e; e = e->next) {
    if (*n >= max) return cn_fail(CN_ERR_LIMIT, "%s: %s: more than %d names", r->path, where, max);
    int index = cJSON_IsString(e) ? cn_graph_find(r->g, e->valuestring) : -1;
    if (index < 0)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: '%.64s' is not an earlier layer", r->path, where,
                     cJSON_IsString(e) ? e->valuestring : "(not a string)");
    out[(*n)++] = index;
  }
  return CN_OK;
}

static cn_status check_node_keys(const reader *r, const cJSON *o, const char *name) {
  static const char *const keys[] = {"name",      "op",    "type",  "inputs",
                                     "trainable", "attrs", "shares"};
  for (const cJSON *v = o->child; v; v = v->next) {
    int known = 0;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
      known |= strcmp(keys[i], v->string) == 0;
    if (!known)
      return cn_fail(CN_ERR_FORMAT, "%s: %s: unknown field '%.64s'", r->path, name, v->string);
  }
  return CN_OK;
}

/* Display type and trainable flag, after cn_graph_add set the defaults. */
static cn_status finish_node(const reader *r, const cJSON *o, cn_node *node) {
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
  const cJSON *trainable = cJSON_GetObjectItemCaseSensitive(o, "trainable");
  if (type && (!cJSON_IsString(type) || !valid_name(type->valuestring)))
    return cn_fail(CN_ERR_FORMAT, "%s: %s: bad 'type'", r->path, node->name);
  if (trainable && !cJSON_IsBool(trainable))
    return cn_fail(CN_ERR_FORMAT, "%s: %s: 'trainable' is not true or false", r->path, node->name);
  if (trainable) node->trainable = cJSON_IsTrue(trainable);
  if (!type) return CN_OK;
  char *copy = cn_strdup(type->valuestring);
  if (!copy) return CN_ERR_NOMEM;
  free(node->type);
  node->type = copy;
  return CN_OK;
}

/* "shares": the name of an earlier node of the same op owning the weights (version 2); -1 when
 * absent. */
static cn_status shared_owner(const reader *r, const cJSON *o, const char *name, const cn_op *op,
                              int *owner) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "shares");
  *owner = -1;
  if (!v) return CN_OK;
  if (!r->shares)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: 'shares' needs format version %s", r->path, name,
                   CN_NATIVE_VERSION_SHARED);
  *owner = cJSON_IsString(v) ? cn_graph_find(r->g, v->valuestring) : -1;
  if (*owner < 0)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: shares '%.64s', which is not an earlier layer", r->path,
                   name, cJSON_IsString(v) ? v->valuestring : "(not a string)");
  if (r->g->nodes[*owner].op != op)
    return cn_fail(CN_ERR_FORMAT, "%s: %s: shares the weights of %s, a layer of another op",
                   r->path, name, r->g->nodes[*owner].name);
  return CN_OK;
}

static cn_status add_node(reader *r, const cJSON *o) {
  cn_status st = CN_OK;
  if (!cJSON_IsObject(o))
    return cn_fail(CN_ERR_FORMAT, "%s: a graph node is not an object", r->path);
  const char *name = string_member(r, o, "name", "graph node", &st);
  if (!name) return st;
  if (!valid_name(name))
    return cn_fail(CN_ERR_FORMAT,
                   "%s: layer name '%.64s' is empty, too long or has control characters", r->path,
                   name);
  const char *type = string_member(r, o, "op", name, &st);
  if (st == CN_OK) st = check_node_keys(r, o, name);
  if (st != CN_OK) return st;
  const cn_op *op = find_op(type);
  if (!op) return cn_fail(CN_ERR_UNSUPPORTED, "%s: %s: unknown op '%.64s'", r->path, name, type);
  int inputs[MAX_NODE_INPUTS], n_inputs = 0;
  st = resolve_names(r, cJSON_GetObjectItemCaseSensitive(o, "inputs"), name, MAX_NODE_INPUTS,
                     inputs, &n_inputs);
  char where[MAX_NODE_NAME + 4200];
  snprintf(where, sizeof where, "%s: %s", r->path, name);
  void *attrs = calloc(1, op->attrs_size ? op->attrs_size : 1);
  if (!attrs) return cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK)
    st = cn_native_attrs_from_json(op, cJSON_GetObjectItemCaseSensitive(o, "attrs"), where, attrs);
  int index = -1, owner = -1;
  if (st == CN_OK) st = shared_owner(r, o, name, op, &owner);
  if (st == CN_OK) {
    st = owner >= 0 ? cn_graph_add_shared(r->g, owner, name, inputs, n_inputs, attrs, &index)
                    : cn_graph_add(r->g, op, name, inputs, n_inputs, attrs, &index);
    if (st != CN_OK) cn_fail_context(st, "%s", r->path);
  }
  free(attrs);
  return st == CN_OK ? finish_node(r, o, &r->g->nodes[index]) : st;
}

/* The inputs a file lists must be the InputLayer nodes cn_graph_add found, each once, in the
 * model's order (a Keras model with several inputs need not list them in node order). */
static cn_status check_inputs(const reader *r, const cJSON *names) {
  int listed[CN_MAX_GRAPH_IO], n = 0;
  cn_status st = resolve_names(r, names, "graph inputs", CN_MAX_GRAPH_IO, listed, &n);
  if (st != CN_OK) return st;
  int same = n == r->g->n_inputs;
  for (int i = 0; same && i < n; i++) {
    same = r->g->nodes[listed[i]].op->graph_input;
    for (int j = 0; j < i; j++) same &= listed[j] != listed[i];
  }
  if (!same)
    return cn_fail(CN_ERR_FORMAT, "%s: graph inputs are not its InputLayer nodes", r->path);
  memcpy(r->g->inputs, listed, (size_t)n * sizeof *listed);
  return CN_OK;
}

static cn_status build_graph(reader *r, const cJSON *graph) {
  static const char *const keys[] = {"nodes", "inputs", "outputs"};
  if (!cJSON_IsObject(graph)) return cn_fail(CN_ERR_FORMAT, "%s: graph is not an object", r->path);
  for (const cJSON *v = graph->child; v; v = v->next) {
    int known = 0;
    for (int i = 0; i < 3; i++) known |= strcmp(keys[i], v->string) == 0;
    if (!known)
      return cn_fail(CN_ERR_FORMAT, "%s: graph: unknown field '%.64s'", r->path, v->string);
  }
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(graph, "nodes");
  int count = cJSON_GetArraySize(nodes);
  if (!cJSON_IsArray(nodes) || count < 1 || count > MAX_NODES)
    return cn_fail(CN_ERR_FORMAT, "%s: graph needs 1 to %d nodes", r->path, MAX_NODES);
  cn_status st = CN_OK;
  for (const cJSON *n = nodes->child; st == CN_OK && n; n = n->next) st = add_node(r, n);
  if (st == CN_OK) st = check_inputs(r, cJSON_GetObjectItemCaseSensitive(graph, "inputs"));
  int outputs[CN_MAX_GRAPH_IO], n_outputs = 0;
  if (st == CN_OK)
    st = resolve_names(r, cJSON_GetObjectItemCaseSensitive(graph, "outputs"), "graph outputs",
                       CN_MAX_GRAPH_IO, outputs, &n_outputs);
  if (st == CN_OK && (r->g->n_inputs < 1 || n_outputs < 1))
    st = cn_fail(CN_ERR_FORMAT, "%s: the graph needs an input and an output", r->path);
  if (st == CN_OK) st = cn_graph_set_outputs(r->g, outputs, n_outputs);
  return st;
}

/* Every declared parameter has its tensor, of the same shape, before anything is allocated (so
 * the file's size bounds the allocation); with allow_extra 0 every tensor is a parameter. */
static cn_status match_params(const reader *r) {
  int matched = 0;
  for (int i = 0; i < r->g->n_nodes; i++) {
    const cn_node *n = &r->g->nodes[i];
    for (int k = 0; k < n->n_params && n->shares < 0; k++) { /* stored with their owner */
      char name[MAX_NODE_NAME + 256];
      snprintf(name, sizeof name, "%s/%s", n->name, n->params[k].name);
      const cn_st_tensor *t = cn_safetensors_find(r->f, name);
      if (!t) return cn_fail(CN_ERR_FORMAT, "%s: no tensor '%s'", r->path, name);
      if (t->dtype != CN_ST_F32 || !cn_shape_equal(&t->shape, &n->params[k].shape)) {
        char want[96], have[96];
        return cn_fail(CN_ERR_SHAPE, "%s: %s: expected F32 %s, file has %s %s", r->path, name,
                       cn_shape_format(&n->params[k].shape, want, sizeof want),
                       cn_st_dtype_name(t->dtype), cn_shape_format(&t->shape, have, sizeof have));
      }
      matched++;
    }
  }
  if (r->allow_extra || matched == cn_safetensors_count(r->f)) return CN_OK;
  for (int i = 0; i < cn_safetensors_count(r->f); i++) {
    const char *name = cn_safetensors_at(r->f, i)->name, *slash = strrchr(name, '/');
    int owner = -1;
    if (slash) {
      char layer[MAX_NODE_NAME + 1];
      size_t len = (size_t)(slash - name);
      if (len <= MAX_NODE_NAME) {
        memcpy(layer, name, len);
        layer[len] = '\0';
        owner = cn_graph_find(r->g, layer);
      }
    }
    if (owner < 0 || !cn_node_find_param(&r->g->nodes[owner], slash + 1))
      return cn_fail(CN_ERR_FORMAT, "%s: tensor '%.200s' is not a parameter of the graph", r->path,
                     name);
  }
  return CN_OK;
}

static cn_status load_params(const reader *r) {
  cn_status st = match_params(r);
  if (st == CN_OK) st = cn_graph_alloc_params(r->g);
  for (int i = 0; st == CN_OK && i < r->g->n_nodes; i++) {
    cn_node *n = &r->g->nodes[i];
    for (int k = 0; st == CN_OK && k < n->n_params && n->shares < 0; k++) {
      char name[MAX_NODE_NAME + 256];
      snprintf(name, sizeof name, "%s/%s", n->name, n->params[k].name);
      st = cn_safetensors_read(r->f, name, CN_ST_F32, &n->params[k].shape, n->params[k].data);
    }
  }
  return st;
}

static cn_status read_classes(const reader *r, cn_model *m) {
  cn_status st;
  cJSON *a = parse_meta_json(r, "classes", 0, &st);
  if (!a) return st;
  int n = cJSON_GetArraySize(a);
  const char **names = cJSON_IsArray(a) && n <= CN_MAX_CLASS_NAMES
                           ? malloc((size_t)(n ? n : 1) * sizeof *names)
                           : NULL;
  if (!names)
    st = cn_fail(CN_ERR_FORMAT, "%s: 'classes' is not a list of at most %d names", r->path,
                 CN_MAX_CLASS_NAMES);
  int i = 0;
  for (const cJSON *e = a->child; st == CN_OK && e; e = e->next, i++)
    if (cJSON_IsString(e))
      names[i] = e->valuestring;
    else
      st = cn_fail(CN_ERR_FORMAT, "%s: class %d is not a string", r->path, i);
  if (st == CN_OK && cn_model_set_class_names(m, names, n) != CN_OK)
    st = cn_fail_context(CN_ERR_FORMAT, "%s", r->path);
  free(names);
  cJSON_Delete(a);
  return st;
}

static cn_status read_spec(const reader *r, cn_input_spec *spec) {
  cn_status st;
  cJSON *o = parse_meta_json(r, "input_spec", 1, &st);
  if (!o) return st;
  char where[4200];
  snprintf(where, sizeof where, "%s: input_spec", r->path);
  st = cn_native_spec_from_json(o, where, spec);
  cJSON_Delete(o);
  return st;
}

static cn_status check_header(reader *r, const char *format) {
  const char *have = cn_safetensors_meta(r->f, "format");
  const char *version = cn_safetensors_meta(r->f, "version");
  const char *name = cn_safetensors_meta(r->f, "name");
  if (!have || strcmp(have, format) != 0)
    return cn_fail(CN_ERR_FORMAT, "%s: format '%.64s', expected '%s'", r->path,
                   have ? have : "(none)", format);
  int v2 = version && strcmp(version, CN_NATIVE_VERSION_SHARED) == 0;
  if (!version || (strcmp(version, CN_NATIVE_VERSION) != 0 && !v2))
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: version '%.16s' (this convnet reads versions %s and %s)", r->path,
                   version ? version : "(none)", CN_NATIVE_VERSION, CN_NATIVE_VERSION_SHARED);
  r->shares = v2;
  if (!name || !valid_name(name))
    return cn_fail(CN_ERR_FORMAT, "%s: bad or missing model 'name'", r->path);
  for (int i = 0; !r->allow_extra && i < cn_safetensors_meta_count(r->f); i++) {
    const char *key = cn_safetensors_meta_at(r->f, i)->key;
    if (!is_model_key(key))
      return cn_fail(CN_ERR_FORMAT, "%s: unknown metadata '%.64s'", r->path, key);
  }
  return CN_OK;
}

static cn_status make_model(reader *r, const cn_input_spec *spec, cn_model **out) {
  cn_graph *g = r->g;
  r->g = NULL;
  cn_status st = cn_model_wrap_graph(g, cn_safetensors_meta(r->f, "name"), spec, out);
  if (st == CN_OK) st = read_classes(r, *out);
  if (st != CN_OK) {
    cn_model_free(*out);
    *out = NULL;
  }
  return st;
}

cn_status cn_native_read(const cn_safetensors *f, const char *format, int allow_extra,
                         cn_model **out) {
  *out = NULL;
  reader r = {.f = f, .path = cn_safetensors_path(f), .allow_extra = allow_extra};
  cn_input_spec spec;
  cn_status st = check_header(&r, format);
  if (st == CN_OK) st = read_spec(&r, &spec);
  cJSON *graph = st == CN_OK ? parse_meta_json(&r, "graph", 1, &st) : NULL;
  if (st == CN_OK) {
    r.g = cn_graph_new();
    if (!r.g) st = CN_ERR_NOMEM;
  }
  if (st == CN_OK) st = build_graph(&r, graph);
  cJSON_Delete(graph);
  if (st == CN_OK) st = load_params(&r);
  if (st == CN_OK) st = make_model(&r, &spec, out);
  cn_graph_free(r.g);
  return st;
}

cn_status cn_native_load(const char *path, cn_model **out) {
  cn_safetensors *f;
  *out = NULL;
  cn_status st = cn_safetensors_open(path, &f);
  if (st != CN_OK) return st;
  st = cn_native_read(f, CN_NATIVE_FORMAT, 0, out);
  cn_safetensors_close(f);
  return st;
}

static cn_status copy_weights(cn_model *m, const cn_safetensors *f) {
  cn_graph *g = m->graph;
  if (!g->params && param_total(g))
    return cn_fail(CN_ERR_ARG, "%s: parameters not allocated", m->name);
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_params && g->nodes[i].shares < 0; k++) {
      cn_param *p = &g->nodes[i].params[k];
      char name[MAX_NODE_NAME + 256];
      snprintf(name, sizeof name, "%s/%s", g->nodes[i].name, p->name);
      cn_status st = cn_safetensors_read(f, name, CN_ST_F32, &p->shape, p->data);
      if (st != CN_OK) return st;
    }
  g->weights_version++;
  return CN_OK;
}

cn_status cn_native_load_weights(cn_model *m, const char *path) {
  cn_safetensors *f;
  cn_status st = cn_safetensors_open(path, &f);
  if (st != CN_OK) return st;
  st = copy_weights(m, f);
  cn_safetensors_close(f);
  return st;
}
