/* Matching the weights of a Keras file to a graph's parameters.
 *
 * Legacy layout (Keras 1/2 save_weights, and /model_weights of a full-model file): the root lists
 * layer_names; each layer group lists weight_names; data sit at <layer>/<weight_name>. A "unit"
 * is what the file calls a layer: a top-level layer, or a nested model holding all its layers'
 * weights (our nodes "<model>/<layer>").
 *
 * Keras 3 layout (.weights.h5): layers/<key>/vars/<i>, nested models under
 * layers/<key>/layers/...; <key> is a class-based name ("conv2d_1") and vars carries the layer's
 * real name in a "name" attribute in recent Keras versions.
 *
 * Every shape is checked before any data is read, so a mismatch leaves the model untouched. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/keras/h5_guard.h"
#include "io/keras/internal.h"
#include "ops/ops.h"

#define MAX_PATH 1024
#define MAX_ENTRIES 100000

/* The weights root of an open file: the file's root, or /model_weights of a full model. */
typedef struct wfile {
  cn_h5src *src;
  const char *root; /* "" or "model_weights" */
  const char *file; /* for messages */
} wfile;

/* root/rel in buf (2 * MAX_PATH bytes). */
static const char *at_root(const wfile *f, const char *rel, char *buf) {
  snprintf(buf, 2 * MAX_PATH, "%s%s%s", f->root, *f->root ? "/" : "", rel);
  return buf;
}

/* One model parameter and where its data is in the file (found during matching). */
typedef struct wslot {
  cn_node *node;
  cn_param *param;
  int unit;
  char path[MAX_PATH]; /* dataset path relative to the weights root */
  int theano;          /* Theano-ordered conv kernel: (out, in, kh, kw), spatially flipped */
} wslot;

typedef struct wunit {
  char name[MAX_PATH];
  int first, n; /* slots[first .. first+n-1] after sorting */
} wunit;

typedef struct wmodel {
  wslot *slot;
  int n_slots;
  wunit *unit;
  int n_units;
} wmodel;

static void wmodel_free(wmodel *m) {
  free(m->slot);
  free(m->unit);
}

static void unit_name_of(const char *node, char *out) {
  size_t len = strcspn(node, "/");
  if (len >= MAX_PATH) len = MAX_PATH - 1;
  memcpy(out, node, len);
  out[len] = 0;
}

static int find_unit(const wmodel *m, const char *name) {
  for (int i = 0; i < m->n_units; i++)
    if (strcmp(m->unit[i].name, name) == 0) return i;
  return -1;
}

/* Lists every parameter, grouped into units in order of first appearance (stable: nodes keep
 * their graph order, params their Keras order). */
static cn_status wmodel_build(cn_graph *g, wmodel *m) {
  memset(m, 0, sizeof *m);
  int total = 0;
  for (int i = 0; i < g->n_nodes; i++) total += g->nodes[i].n_params;
  m->slot = calloc((size_t)(total ? total : 1), sizeof *m->slot);
  m->unit = calloc((size_t)(total ? total : 1), sizeof *m->unit);
  if (!m->slot || !m->unit) return cn_fail(CN_ERR_NOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes; i++) {
    cn_node *node = &g->nodes[i];
    /* a shared layer's later calls: its weights are the first call's, read once */
    if (node->n_params == 0 || node->shares >= 0) continue;
    char name[MAX_PATH];
    unit_name_of(node->name, name);
    int u = find_unit(m, name);
    if (u < 0) {
      u = m->n_units++;
      snprintf(m->unit[u].name, MAX_PATH, "%s", name);
    }
    for (int p = 0; p < node->n_params; p++)
      m->slot[m->n_slots++] = (wslot){.node = node, .param = &node->params[p], .unit = u};
  }
  /* Group by unit, keeping graph order inside each (qsort would not be stable). */
  wslot *sorted = calloc((size_t)(total ? total : 1), sizeof *sorted);
  if (!sorted) return cn_fail(CN_ERR_NOMEM, "out of memory");
  int at = 0;
  for (int u = 0; u < m->n_units; u++) {
    m->unit[u].first = at;
    for (int s = 0; s < m->n_slots; s++)
      if (m->slot[s].unit == u) sorted[at++] = m->slot[s];
    m->unit[u].n = at - m->unit[u].first;
  }
  free(m->slot);
  m->slot = sorted;
  return CN_OK;
}

static char *fmt_shape(const cn_shape *s, char *buf) {
  return cn_shape_format(s, buf, 96);
}

/* ---- reading after matching ---------------------------------------------------------------- */

static cn_shape theano_shape(const cn_shape *hwio) {
  cn_shape s = *hwio;
  s.dim[0] = hwio->dim[3];
  s.dim[1] = hwio->dim[2];
  s.dim[2] = hwio->dim[0];
  s.dim[3] = hwio->dim[1];
  return s;
}

/* Checks the dataset of slot s against its parameter; decides whether it needs the Theano
 * conversion. */
static cn_status check_slot(const wfile *f, int theano_file, wslot *s) {
  char what[MAX_PATH + 64], a[96], b[96], path[2 * MAX_PATH];
  const char *file = f->file;
  snprintf(what, sizeof what, "%s/%s", s->node->name, s->param->name);
  cn_shape found;
  cn_status st = cn_h5src_dataset_shape(f->src, at_root(f, s->path, path), what, &found);
  if (st != CN_OK) return st;
  const cn_shape *want = &s->param->shape;
  if (cn_shape_equal(&found, want)) return CN_OK;
  int conv_kernel = s->node->op == &cn_op_conv2d && s->param == &s->node->params[0];
  if (theano_file && conv_kernel && want->rank == 4) {
    cn_shape th = theano_shape(want);
    if (cn_shape_equal(&found, &th)) {
      s->theano = 1;
      return CN_OK;
    }
  }
  return cn_fail(CN_ERR_SHAPE, "%s: %s: expected %s, file has %s", file, what, fmt_shape(want, a),
                 fmt_shape(&found, b));
}

/* Keras' legacy loader for Theano files flips the kernel spatially (Theano convolves, TensorFlow
 * correlates) and moves (out, in, kh, kw) to (kh, kw, in, out). */
static void theano_to_hwio(const float *th, const cn_shape *hwio, float *dst) {
  int64_t kh = hwio->dim[0], kw = hwio->dim[1], ci = hwio->dim[2], co = hwio->dim[3];
  for (int64_t o = 0; o < co; o++)
    for (int64_t i = 0; i < ci; i++)
      for (int64_t y = 0; y < kh; y++)
        for (int64_t x = 0; x < kw; x++)
          dst[((y * kw + x) * ci + i) * co + o] =
              th[((o * ci + i) * kh + (kh - 1 - y)) * kw + (kw - 1 - x)];
}

static cn_status read_slot(const wfile *f, const wslot *s) {
  char what[3000], path[2 * MAX_PATH];
  at_root(f, s->path, path);
  snprintf(what, sizeof what, "%s: %s/%s", f->file, s->node->name, s->param->name);
  int64_t numel = cn_shape_numel(&s->param->shape);
  if (!s->theano) return cn_h5src_read_floats(f->src, path, what, numel, s->param->data);
  size_t bytes;
  if (!cn_mul_size((size_t)numel, sizeof(float), &bytes))
    return cn_fail(CN_ERR_LIMIT, "%s: too large", what);
  float *tmp = malloc(bytes ? bytes : 1);
  if (!tmp) return cn_fail(CN_ERR_NOMEM, "out of memory reading %s", what);
  cn_status st = cn_h5src_read_floats(f->src, path, what, numel, tmp);
  if (st == CN_OK) theano_to_hwio(tmp, &s->param->shape, s->param->data);
  free(tmp);
  return st;
}

static cn_status check_and_read_all(cn_graph *g, const wfile *f, int theano, wmodel *m) {
  for (int i = 0; i < m->n_slots; i++) {
    cn_status st = check_slot(f, theano, &m->slot[i]);
    if (st != CN_OK) return st;
  }
  for (int i = 0; i < m->n_slots; i++) {
    cn_status st = read_slot(f, &m->slot[i]);
    if (st != CN_OK) return st;
  }
  g->weights_version++;
  return CN_OK;
}

/* ---- legacy layout ------------------------------------------------------------------------- */

typedef struct fentry {
  char *layer;
  cn_strlist weights;
} fentry;

typedef struct flist {
  fentry *e;
  int n;
} flist;

static void flist_free(flist *f) {
  for (int i = 0; i < f->n; i++) {
    free(f->e[i].layer);
    cn_strlist_free(&f->e[i].weights);
  }
  free(f->e);
}

/* The file's layers that hold weights, in file order. */
static cn_status read_legacy_layers(const wfile *f, flist *out) {
  cn_strlist names = {0};
  const char *file = f->file;
  char path[2 * MAX_PATH];
  cn_status st = cn_h5src_names_attr(f->src, f->root, "layer_names", &names);
  memset(out, 0, sizeof *out);
  if (st == CN_OK) {
    out->e = calloc((size_t)(names.n ? names.n : 1), sizeof *out->e);
    if (!out->e) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; st == CN_OK && i < names.n; i++) {
    int exists = 0;
    if (strlen(names.s[i]) >= MAX_PATH) st = cn_fail(CN_ERR_LIMIT, "%s: layer name too long", file);
    if (st == CN_OK) st = cn_h5src_exists(f->src, at_root(f, names.s[i], path), &exists);
    if (st == CN_OK && !exists)
      st = cn_fail(CN_ERR_FORMAT, "%s: layer %s is listed but missing", file, names.s[i]);
    cn_strlist w = {0};
    if (st == CN_OK) st = cn_h5src_names_attr(f->src, path, "weight_names", &w);
    if (st == CN_OK && w.n > 0) {
      out->e[out->n].layer = names.s[i];
      out->e[out->n].weights = w;
      names.s[i] = NULL;
      out->n++;
    } else {
      cn_strlist_free(&w);
    }
  }
  cn_strlist_free(&names);
  return st;
}

static int find_entry(const flist *f, const char *layer) {
  for (int i = 0; i < f->n; i++)
    if (strcmp(f->e[i].layer, layer) == 0) return i;
  return -1;
}

/* "dense/kernel:0" -> "dense/kernel" in buf. */
static void strip_index(const char *w, char *buf) {
  snprintf(buf, MAX_PATH, "%s", w);
  char *colon = strrchr(buf, ':');
  if (colon && colon > strrchr(buf, '/') && isdigit((unsigned char)colon[1])) *colon = 0;
}

static int ends_with_component(const char *s, const char *suffix) {
  size_t ls = strlen(s), lx = strlen(suffix);
  if (lx > ls || strcmp(s + ls - lx, suffix) != 0) return 0;
  return ls == lx || s[ls - lx - 1] == '/';
}

/* The file weight whose name identifies slot s: "<inner layer>/<param>" for a nested model's
 * layer, "<param>" for a plain layer; -1 when none or several do. */
static int weight_by_name(const cn_strlist *w, const wslot *s) {
  const char *inner = strrchr(s->node->name, '/');
  char key[MAX_PATH], name[MAX_PATH];
  if (inner)
    snprintf(key, sizeof key, "%s/%s", inner + 1, s->param->name);
  else
    snprintf(key, sizeof key, "%s", s->param->name);
  int found = -1;
  for (int i = 0; i < w->n; i++) {
    strip_index(w->s[i], name);
    if (!ends_with_component(name, key)) continue;
    if (found >= 0) return -1;
    found = i;
  }
  return found;
}

/* Keras itself pairs a layer's weights by position. Names are used when they identify every
 * weight, because Keras 2 lists a nested model's trainable weights before its moving statistics. */
static cn_status assign_unit(const char *file, const wunit *u, const fentry *e, wslot *slots) {
  if (e->weights.n != u->n)
    return cn_fail(CN_ERR_SHAPE, "%s: layer %s: file has %d weights, model expects %d", file,
                   u->name, e->weights.n, u->n);
  int order[u->n], used[u->n], by_name = 1;
  memset(used, 0, sizeof used);
  for (int i = 0; i < u->n && by_name; i++) {
    order[i] = weight_by_name(&e->weights, &slots[u->first + i]);
    if (order[i] < 0 || used[order[i]])
      by_name = 0;
    else
      used[order[i]] = 1;
  }
  for (int i = 0; i < u->n; i++) {
    int w = by_name ? order[i] : i;
    if (strlen(e->layer) + strlen(e->weights.s[w]) + 2 > MAX_PATH)
      return cn_fail(CN_ERR_LIMIT, "%s: weight name too long", file);
    snprintf(slots[u->first + i].path, MAX_PATH, "%s/%s", e->layer, e->weights.s[w]);
  }
  return CN_OK;
}

/* Keras' load_weights without by_name pairs layers-with-weights in order; used only when names
 * do not match but counts do (auto-named layers: conv2d_1.. in the file, conv2d.. in the model). */
static int topological_fits(const wmodel *m, const flist *f) {
  if (m->n_units != f->n) return 0;
  for (int u = 0; u < m->n_units; u++)
    if (m->unit[u].n != f->e[u].weights.n) return 0;
  return 1;
}

static cn_status match_legacy(const char *file, wmodel *m, const flist *f) {
  int by_name = 1;
  const char *missing = NULL;
  for (int u = 0; u < m->n_units && by_name; u++)
    if (find_entry(f, m->unit[u].name) < 0) {
      by_name = 0;
      missing = m->unit[u].name;
    }
  if (!by_name && !topological_fits(m, f))
    return cn_fail(CN_ERR_FORMAT, "%s: no weights for layer %s", file, missing);
  for (int u = 0; u < m->n_units; u++) {
    const fentry *e = &f->e[by_name ? find_entry(f, m->unit[u].name) : u];
    cn_status st = assign_unit(file, &m->unit[u], e, m->slot);
    if (st != CN_OK) return st;
  }
  return CN_OK;
}

static cn_status load_legacy(cn_graph *g, const wfile *wf, int theano) {
  wmodel m;
  flist f = {0};
  cn_status st = wmodel_build(g, &m);
  if (st == CN_OK) st = read_legacy_layers(wf, &f);
  if (st == CN_OK) st = match_legacy(wf->file, &m, &f);
  if (st == CN_OK) st = check_and_read_all(g, wf, theano, &m);
  flist_free(&f);
  wmodel_free(&m);
  return st;
}

/* ---- Keras 3 layout ------------------------------------------------------------------------ */

typedef struct k3entry {
  char name[MAX_PATH];    /* "<model>/<layer>" from the vars "name" attributes */
  char generic[MAX_PATH]; /* "<key>/<key>" from the group names */
  char vars[MAX_PATH];    /* path of the vars group */
  int n_vars;
} k3entry;

typedef struct k3list {
  k3entry *e;
  int n, cap;
} k3list;

static cn_status k3_push(k3list *l, const k3entry *e) {
  if (l->n >= MAX_ENTRIES) return cn_fail(CN_ERR_LIMIT, "too many layers");
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 64;
    k3entry *grown = realloc(l->e, (size_t)cap * sizeof *grown);
    if (!grown) return cn_fail(CN_ERR_NOMEM, "out of memory");
    l->e = grown;
    l->cap = cap;
  }
  l->e[l->n++] = *e;
  return CN_OK;
}

static int has_member(const cn_strlist *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->s[i], name) == 0) return 1;
  return 0;
}

/* How many of the members 0, 1, ... a vars group has (their links are checked when read). */
static cn_status count_vars(cn_h5src *src, const char *vars, int *n) {
  cn_strlist members;
  char key[16];
  cn_status st = cn_h5src_group_members(src, vars, &members);
  for (*n = 0; st == CN_OK && *n < CN_MAX_PARAMS + 1; (*n)++) {
    snprintf(key, sizeof key, "%d", *n);
    if (!has_member(&members, key)) break;
  }
  cn_strlist_free(&members);
  return st;
}

static cn_status k3_walk(cn_h5src *src, const char *group, const char *name_prefix,
                         const char *generic_prefix, int depth, k3list *out);

/* One child of a layers group: its vars, then its own nested layers. */
static cn_status k3_child(cn_h5src *src, const char *group, const char *key,
                          const char *name_prefix, const char *generic_prefix, int depth,
                          k3list *out) {
  const char *file = cn_h5src_file(src);
  k3entry e = {0};
  if (strlen(group) + strlen(key) + 16 > MAX_PATH)
    return cn_fail(CN_ERR_LIMIT, "%s: path too long", file);
  char here[MAX_PATH];
  snprintf(here, sizeof here, "%s/%s", group, key);
  snprintf(e.vars, MAX_PATH, "%s/vars", here);
  snprintf(e.generic, MAX_PATH, "%s%s", generic_prefix, key);
  /* one request says whether vars and layers exist; their links are checked when opened */
  cn_strlist members;
  cn_status st = cn_h5src_group_members(src, here, &members);
  if (st != CN_OK) return st;
  int has_vars = has_member(&members, "vars"), has_layers = has_member(&members, "layers");
  cn_strlist_free(&members);
  char *real = NULL;
  if (has_vars) {
    st = cn_h5src_string_attr(src, e.vars, "name", &real);
    if (st == CN_OK) st = count_vars(src, e.vars, &e.n_vars);
  }
  snprintf(e.name, MAX_PATH, "%s%s", name_prefix, real ? real : key);
  free(real);
  if (st == CN_OK && e.n_vars > 0) st = k3_push(out, &e);
  char sub[MAX_PATH], name_sub[MAX_PATH + 2], generic_sub[MAX_PATH + 2];
  snprintf(sub, sizeof sub, "%s/layers", here);
  if (st == CN_OK && has_layers) {
    snprintf(name_sub, sizeof name_sub, "%s/", e.name);
    snprintf(generic_sub, sizeof generic_sub, "%s/", e.generic);
    st = k3_walk(src, sub, name_sub, generic_sub, depth + 1, out);
  }
  return st;
}

static cn_status k3_walk(cn_h5src *src, const char *group, const char *name_prefix,
                         const char *generic_prefix, int depth, k3list *out) {
  if (depth > 16) return cn_fail(CN_ERR_LIMIT, "%s: layers nested too deeply", cn_h5src_file(src));
  cn_strlist keys;
  cn_status st = cn_h5src_group_members(src, group, &keys);
  for (int i = 0; st == CN_OK && i < keys.n; i++)
    st = k3_child(src, group, keys.s[i], name_prefix, generic_prefix, depth, out);
  cn_strlist_free(&keys);
  return st;
}

/* keras.src.utils.naming.to_snake_case, which names the groups of a .weights.h5: drop non-word
 * characters, then re.sub("(.)([A-Z][a-z]+)", r"\1_\2"), then re.sub("([a-z])([A-Z])", r"\1_\2"),
 * then lower case. Conv2D -> conv2d, ReLU -> re_lu, GlobalAveragePooling2D ->
 * global_average_pooling2d. */
static void snake_case(const char *cls, char *out, size_t cap) {
  char a[128], b[256];
  size_t n = 0, o = 0;
  for (size_t i = 0; cls[i] && n + 1 < sizeof a; i++)
    if (isalnum((unsigned char)cls[i]) || cls[i] == '_') a[n++] = cls[i];
  a[n] = 0;
  for (size_t i = 0; i < n;) {
    if (i + 2 < n && isupper((unsigned char)a[i + 1]) && islower((unsigned char)a[i + 2])) {
      size_t j = i + 2;
      while (j < n && islower((unsigned char)a[j])) j++;
      b[o++] = a[i];
      b[o++] = '_';
      for (size_t t = i + 1; t < j; t++) b[o++] = a[t];
      i = j;
    } else {
      b[o++] = a[i++];
    }
  }
  b[o] = 0;
  size_t w = 0;
  for (size_t i = 0; i < o && w + 3 < cap; i++) {
    int split = islower((unsigned char)b[i]) && i + 1 < o && isupper((unsigned char)b[i + 1]);
    out[w++] = (char)tolower((unsigned char)b[i]);
    if (split) {
      out[w++] = '_';
      out[w++] = (char)tolower((unsigned char)b[++i]);
    }
  }
  out[w] = 0;
}

/* The class-based key Keras 3 gives a top-level node: snake_case(class) with _1, _2 ... */
static void generic_key(cn_graph *g, int node, char *out) {
  char mine[128], other[128];
  snake_case(g->nodes[node].type, mine, sizeof mine);
  int seen = 0;
  for (int i = 0; i < node; i++) {
    if (strchr(g->nodes[i].name, '/')) continue;
    snake_case(g->nodes[i].type, other, sizeof other);
    if (strcmp(mine, other) == 0) seen++;
  }
  if (seen)
    snprintf(out, MAX_PATH, "%s_%d", mine, seen);
  else
    snprintf(out, MAX_PATH, "%s", mine);
}

static const k3entry *k3_find(const k3list *l, const char *name, int generic) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(generic ? l->e[i].generic : l->e[i].name, name) == 0) return &l->e[i];
  return NULL;
}

/* Finds each node's vars by real name, else (older files without names) by class-based key. */
static cn_status match_k3(cn_graph *g, const char *file, const k3list *l, wmodel *m) {
  for (int s = 0; s < m->n_slots;) {
    cn_node *node = m->slot[s].node;
    const k3entry *e = k3_find(l, node->name, 0);
    if (!e && !strchr(node->name, '/')) {
      char key[MAX_PATH];
      generic_key(g, (int)(node - g->nodes), key);
      e = k3_find(l, key, 1);
    }
    if (!e) return cn_fail(CN_ERR_FORMAT, "%s: no weights for layer %s", file, node->name);
    if (e->n_vars != node->n_params)
      return cn_fail(CN_ERR_SHAPE, "%s: layer %s: file has %d weights, model expects %d", file,
                     node->name, e->n_vars, node->n_params);
    for (int p = 0; p < node->n_params; p++, s++)
      snprintf(m->slot[s].path, MAX_PATH, "%s/%d", e->vars, p);
  }
  return CN_OK;
}

static cn_status load_keras3(cn_graph *g, cn_h5src *src) {
  wmodel m;
  k3list l = {0};
  wfile f = {.src = src, .root = "", .file = cn_h5src_file(src)};
  cn_status st = wmodel_build(g, &m);
  if (st == CN_OK) st = k3_walk(src, "layers", "", "", 0, &l);
  if (st == CN_OK) st = match_k3(g, f.file, &l, &m);
  if (st == CN_OK) st = check_and_read_all(g, &f, 0, &m);
  free(l.e);
  wmodel_free(&m);
  return st;
}

/* ---- entry --------------------------------------------------------------------------------- */

static int is_theano(cn_h5src *src, const char *group) {
  char *backend = NULL;
  if (cn_h5src_string_attr(src, group, "backend", &backend) != CN_OK || !backend) return 0;
  int theano = strcmp(backend, "theano") == 0;
  free(backend);
  return theano;
}

static cn_status has_layer_names(cn_h5src *src, const char *group, int *has) {
  cn_status st = cn_h5src_has_attr(src, group, "layer_names", has);
  if (st == CN_OK && !*has) st = cn_h5src_has_attr(src, group, "layer_names0", has);
  return st;
}

cn_status cn_keras_load_weights(cn_graph *g, cn_h5src *src) {
  const char *path = cn_h5src_file(src);
  if (!g->params) {
    cn_status st = cn_graph_alloc_params(g);
    if (st != CN_OK) return st;
  }
  int theano = is_theano(src, "");
  int exists = 0, names = 0;
  cn_status st = cn_h5src_exists(src, "model_weights", &exists);
  if (st != CN_OK) return st;
  if (exists) {
    wfile f = {.src = src, .root = "model_weights", .file = path};
    theano = theano || is_theano(src, f.root);
    st = has_layer_names(src, f.root, &names);
    if (st == CN_OK && !names)
      st = cn_fail(CN_ERR_FORMAT, "%s: model_weights has no layer_names", path);
    return st == CN_OK ? load_legacy(g, &f, theano) : st;
  }
  st = has_layer_names(src, "", &names);
  if (st != CN_OK) return st;
  if (names) return load_legacy(g, &(wfile){.src = src, .root = "", .file = path}, theano);
  st = cn_h5src_exists(src, "layers", &exists);
  if (st != CN_OK) return st;
  if (exists) return load_keras3(g, src);
  return cn_fail(CN_ERR_FORMAT,
                 "%s: not a Keras weights file (no layer_names, model_weights or layers)", path);
}
