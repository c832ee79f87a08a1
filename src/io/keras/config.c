/* Keras model JSON (model.to_json(), or the model_config attribute of a full-model .h5) to a graph.
 * Sequential and Functional models, Keras 2 and Keras 3 spellings, nested models inlined with
 * their layers named "<model>/<layer>" (weights of a nested model live under the model's name in
 * every Keras file layout, so the prefix is what weight matching needs). */
#include <cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/mem.h"
#include "io/keras/internal.h"
#include "model/init.h"
#include "ops/ops.h"
#include "ops/ops_onnx.h"

#define MAX_NAME 512
#define MAX_DEPTH 16
#define MAX_REFS 256
#define MAX_LAYERS 100000
#define MAX_CALLS 4096 /* calls of one shared layer */

typedef struct kctx {
  const char *file;
  cn_graph *g;
  int depth;
  int frozen; /* > 0 inside a model whose config says trainable: false */
  int again;  /* > 0 while a later call of a layer (or of a nested model) is built */
} kctx;

/* One Keras layer of a Functional model: its calls (one per inbound node; a shared layer has
 * several), how many are built, and the outputs of each (several for a nested model with several
 * outputs): out[call * CN_MAX_GRAPH_IO + tensor]. */
typedef struct kentry {
  const char *name;
  int calls, done;
  int n;
  int *out;
} kentry;

typedef struct kscope {
  kentry *e;
  int n;
} kscope;

typedef struct kref {
  const char *layer;
  int call; /* Keras's node index: which call of the layer */
  int tensor;
} kref;

/* ---- JSON helpers -------------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jhas(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return v && !cJSON_IsNull(v);
}

static double jnum(const cJSON *o, const char *key, double def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int jbool(const cJSON *o, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static cn_status bad(kctx *k, const char *layer, const char *what) {
  return cn_fail(CN_ERR_FORMAT, "%s: layer %s: %s", k->file, layer, what);
}

/* A whole number in [lo, hi] (Keras writes integers, sometimes as 2.0). */
static int int_in(const cJSON *v, int lo, int hi, int *out) {
  if (!cJSON_IsNumber(v)) return 0;
  double d = v->valuedouble;
  if (!(d >= lo && d <= hi) || d != floor(d)) return 0;
  *out = (int)d;
  return 1;
}

static cn_status jint(kctx *k, const char *layer, const cJSON *o, const char *key, int def, int lo,
                      int hi, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *out = def;
    return CN_OK;
  }
  if (int_in(v, lo, hi, out)) return CN_OK;
  return cn_fail(CN_ERR_FORMAT, "%s: layer %s: bad %s", k->file, layer, key);
}

/* kernel_size, strides, dilation_rate, pool_size: an int or a pair. */
static cn_status jpair(kctx *k, const char *layer, const cJSON *o, const char *key, int def, int *a,
                       int *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!v || cJSON_IsNull(v)) {
    *a = *b = def;
    return CN_OK;
  }
  if (int_in(v, 1, 65535, a)) {
    *b = *a;
    return CN_OK;
  }
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
      int_in(cJSON_GetArrayItem(v, 0), 1, 65535, a) &&
      int_in(cJSON_GetArrayItem(v, 1), 1, 65535, b))
    return CN_OK;
  return cn_fail(CN_ERR_FORMAT, "%s: layer %s: bad %s", k->file, layer, key);
}

static cn_status check_channels_last(kctx *k, const char *layer, const cJSON *cfg) {
  const char *df = jstr(cfg, "data_format");
  if (df && strcmp(df, "channels_last") != 0)
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: layer %s: data_format %s is not supported (only channels_last)", k->file,
                   layer, df);
  return CN_OK;
}

static cn_status parse_padding(kctx *k, const char *layer, const cJSON *cfg, cn_padding *out) {
  const char *p = jstr(cfg, "padding");
  if (!p || strcmp(p, "valid") == 0)
    *out = CN_PAD_VALID;
  else if (strcmp(p, "same") == 0)
    *out = CN_PAD_SAME;
  else
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: padding %s not supported", k->file, layer, p);
  return CN_OK;
}

static cn_status parse_activation(kctx *k, const char *layer, const cJSON *cfg,
                                  cn_activation *act) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "activation");
  if (!v || cJSON_IsNull(v)) {
    *act = cn_act_linear();
    return CN_OK;
  }
  const char *name = cJSON_IsString(v) ? v->valuestring : NULL;
  /* Keras 3 may serialize a built-in activation as {"class_name": "function", "config": "relu"}. */
  if (!name && cJSON_IsObject(v)) name = jstr(v, "config");
  if (!name) return cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: custom activation", k->file, layer);
  if (cn_act_parse(name, act) != CN_OK)
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: unsupported activation %s", k->file, layer,
                   name);
  return CN_OK;
}

/* ---- initializers ---------------------------------------------------------------------------- */

/* The configurable values of an initializer object ("config": {"scale": 2, ...}). */
static cn_status initializer_config(kctx *k, const char *layer, const cJSON *cfg, cn_init *in) {
  if (!cJSON_IsObject(cfg)) return CN_OK;
  switch (in->kind) {
  case CN_INIT_CONSTANT:
    in->a = (float)jnum(cfg, "value", 0);
    break;
  case CN_INIT_RANDOM_UNIFORM:
    in->a = (float)jnum(cfg, "minval", in->a), in->b = (float)jnum(cfg, "maxval", in->b);
    break;
  case CN_INIT_RANDOM_NORMAL:
  case CN_INIT_TRUNCATED_NORMAL:
    in->a = (float)jnum(cfg, "mean", in->a), in->b = (float)jnum(cfg, "stddev", in->b);
    break;
  case CN_INIT_VARIANCE_SCALING: {
    in->a = (float)jnum(cfg, "scale", in->a);
    const char *mode = jstr(cfg, "mode"), *dist = jstr(cfg, "distribution");
    if (mode)
      in->mode = strcmp(mode, "fan_out") == 0   ? CN_FAN_OUT
                 : strcmp(mode, "fan_avg") == 0 ? CN_FAN_AVG
                                                : CN_FAN_IN;
    if (dist)
      in->distribution = strcmp(dist, "uniform") == 0              ? CN_DIST_UNIFORM
                         : strcmp(dist, "untruncated_normal") == 0 ? CN_DIST_UNTRUNCATED_NORMAL
                                                                   : CN_DIST_TRUNCATED_NORMAL;
    if (!(in->a > 0)) return bad(k, layer, "VarianceScaling scale must be positive");
    break;
  }
  default:
    break;
  }
  if (!isfinite(in->a) || !isfinite(in->b)) return bad(k, layer, "initializer value not finite");
  return CN_OK;
}

/* An initializer given as "he_normal" or {"class_name": "HeNormal", "config": {...}}; one convnet
 * does not know is kept by name and refused only when a model is initialised from it. */
static cn_status parse_initializer(kctx *k, const char *layer, const cJSON *v, cn_init *out) {
  const char *name = cJSON_IsString(v) ? v->valuestring : jstr(v, "class_name");
  if (!name) return bad(k, layer, "an initializer without a class_name");
  if (cn_init_by_name(name, out))
    return cJSON_IsObject(v) ? initializer_config(k, layer, cJSON_GetObjectItem(v, "config"), out)
                             : CN_OK;
  *out = (cn_init){.kind = CN_INIT_UNSUPPORTED};
  snprintf(out->name, sizeof out->name, "%s", name);
  return CN_OK;
}

/* Each parameter's "<name>_initializer" (depthwise_kernel: "depthwise_initializer"). */
static cn_status parse_initializers(kctx *k, cn_node *node, const cJSON *cfg) {
  for (int p = 0; p < node->n_params; p++) {
    const char *param = node->params[p].name;
    char key[64];
    size_t len = strlen(param);
    if (len > 7 && strcmp(param + len - 7, "_kernel") == 0 && strcmp(param, "kernel") != 0)
      snprintf(key, sizeof key, "%.*s_initializer", (int)(len - 7), param);
    else
      snprintf(key, sizeof key, "%s_initializer", param);
    const cJSON *v = cJSON_GetObjectItem(cfg, key);
    if (v && !cJSON_IsNull(v)) {
      cn_status st = parse_initializer(k, node->name, v, &node->params[p].init);
      if (st != CN_OK) return st;
    }
  }
  return CN_OK;
}

/* ---- adding nodes -------------------------------------------------------------------------- */

/* "<layer>/call<k>" with the first free k >= 1: the k-th later call of a layer. The search starts
 * after the calls made so far, so that a layer called many times costs one pass over the graph
 * per call. */
static cn_status call_name(kctx *k, const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/call", name);
  size_t len = strlen(buf);
  int made = 0;
  for (int j = 0; j < k->g->n_nodes; j++) made += strncmp(k->g->nodes[j].name, buf, len) == 0;
  for (int i = made + 1; i <= made + 1 + MAX_CALLS; i++) {
    snprintf(buf, cap, "%s/call%d", name, i);
    if (cn_graph_find(k->g, buf) < 0) return CN_OK;
  }
  return cn_fail(CN_ERR_LIMIT, "layer %s: called too many times", name);
}

/* A later call of layer `name` (its first call is the node of that name): a node sharing its
 * weights, or a plain node when the layer has none. */
static cn_status add_call(kctx *k, const char *name, const cn_op *op, const int *in, int n_in,
                          const void *attrs, int *out) {
  int owner = cn_graph_find(k->g, name);
  if (owner < 0 || k->g->nodes[owner].op != op)
    return cn_fail(CN_ERR_FORMAT, "layer %s: called again before its first call", name);
  char again[MAX_NAME + 32];
  cn_status st = call_name(k, name, again, sizeof again);
  if (st != CN_OK) return st;
  if (k->g->nodes[owner].n_params == 0) return cn_graph_add(k->g, op, again, in, n_in, attrs, out);
  return cn_graph_add_shared(k->g, owner, again, in, n_in, attrs, out);
}

static cn_status add_node(kctx *k, const char *name, const char *cls, const cJSON *cfg,
                          const cn_op *op, const int *in, int n_in, const void *attrs, int *out) {
  cn_status st = k->again ? add_call(k, name, op, in, n_in, attrs, out)
                          : cn_graph_add(k->g, op, name, in, n_in, attrs, out);
  if (st != CN_OK) return cn_fail_context(st, "%s", k->file);
  if (k->g->nodes[*out].shares >= 0) return CN_OK; /* the owner's flags, type and initializers */
  cn_node *node = &k->g->nodes[*out];
  node->trainable = !k->frozen && jbool(cfg, "trainable", 1);
  st = parse_initializers(k, node, cfg);
  if (st != CN_OK) return st;
  if (strcmp(node->type, cls) != 0) {
    char *type = cn_strdup(cls);
    if (!type) return CN_ERR_NOMEM;
    free(node->type);
    node->type = type;
  }
  return CN_OK;
}

typedef struct klayer {
  kctx *k;
  const char *name; /* full node name, with the nested-model prefix */
  const char *cls;
  const cJSON *cfg;
  const int *in;
  int n_in;
} klayer;

static cn_status need_inputs(const klayer *l, int n) {
  if (l->n_in != n)
    return cn_fail(CN_ERR_FORMAT, "%s: layer %s: expects %d input(s), has %d", l->k->file, l->name,
                   n, l->n_in);
  return CN_OK;
}

static cn_status add_simple(const klayer *l, const cn_op *op, const void *attrs, int *out) {
  cn_status st = need_inputs(l, 1);
  if (st == CN_OK) st = add_node(l->k, l->name, l->cls, l->cfg, op, l->in, 1, attrs, out);
  return st;
}

static cn_status layer_conv2d(const klayer *l, int *out) {
  cn_conv2d_attrs a = {0};
  kctx *k = l->k;
  cn_status st = check_channels_last(k, l->name, l->cfg);
  if (st == CN_OK) st = jint(k, l->name, l->cfg, "filters", 0, 1, 1 << 20, &a.filters);
  if (st == CN_OK && !jhas(l->cfg, "filters")) st = bad(k, l->name, "no filters");
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "kernel_size", 0, &a.kh, &a.kw);
  if (st == CN_OK && !jhas(l->cfg, "kernel_size")) st = bad(k, l->name, "no kernel_size");
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "strides", 1, &a.sh, &a.sw);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "dilation_rate", 1, &a.dh, &a.dw);
  if (st == CN_OK) st = jint(k, l->name, l->cfg, "groups", 1, 1, 1 << 20, &a.groups);
  if (st == CN_OK) st = parse_padding(k, l->name, l->cfg, &a.padding);
  if (st == CN_OK) st = parse_activation(k, l->name, l->cfg, &a.act);
  a.use_bias = jbool(l->cfg, "use_bias", 1);
  return st == CN_OK ? add_simple(l, &cn_op_conv2d, &a, out) : st;
}

static cn_status layer_depthwise(const klayer *l, int *out) {
  cn_depthwise_attrs a = {0};
  kctx *k = l->k;
  cn_status st = check_channels_last(k, l->name, l->cfg);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "kernel_size", 0, &a.kh, &a.kw);
  if (st == CN_OK && !jhas(l->cfg, "kernel_size")) st = bad(k, l->name, "no kernel_size");
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "strides", 1, &a.sh, &a.sw);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "dilation_rate", 1, &a.dh, &a.dw);
  if (st == CN_OK)
    st = jint(k, l->name, l->cfg, "depth_multiplier", 1, 1, 1 << 16, &a.depth_multiplier);
  if (st == CN_OK) st = parse_padding(k, l->name, l->cfg, &a.padding);
  if (st == CN_OK) st = parse_activation(k, l->name, l->cfg, &a.act);
  a.use_bias = jbool(l->cfg, "use_bias", 1);
  return st == CN_OK ? add_simple(l, &cn_op_depthwise, &a, out) : st;
}

/* Conv2DTranspose output_padding: null, n or (h, w), each below the stride (checked by the op). */
static cn_status parse_output_padding(const klayer *l, int *has, int *h, int *w) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, "output_padding");
  *has = 0;
  *h = *w = 0;
  if (!v || cJSON_IsNull(v)) return CN_OK;
  *has = 1;
  if (int_in(v, 0, 65535, h)) {
    *w = *h;
    return CN_OK;
  }
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 &&
      int_in(cJSON_GetArrayItem(v, 0), 0, 65535, h) &&
      int_in(cJSON_GetArrayItem(v, 1), 0, 65535, w))
    return CN_OK;
  return bad(l->k, l->name, "bad output_padding");
}

/* Conv2DTranspose: cn_op_conv_transpose, whose kernel is Keras's (kh, kw, filters, in); a fused
 * activation becomes an Activation node "<layer>/activation" after it. */
static cn_status layer_conv_transpose(const klayer *l, int *out) {
  cn_conv_transpose_attrs a = {.groups = 1};
  kctx *k = l->k;
  cn_padding padding = CN_PAD_VALID;
  cn_activation act;
  int has_op = 0, op_h = 0, op_w = 0, groups = 1;
  cn_status st = need_inputs(l, 1);
  if (st == CN_OK) st = check_channels_last(k, l->name, l->cfg);
  if (st == CN_OK) st = jint(k, l->name, l->cfg, "filters", 0, 1, 1 << 20, &a.filters);
  if (st == CN_OK && !jhas(l->cfg, "filters")) st = bad(k, l->name, "no filters");
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "kernel_size", 0, &a.kh, &a.kw);
  if (st == CN_OK && !jhas(l->cfg, "kernel_size")) st = bad(k, l->name, "no kernel_size");
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "strides", 1, &a.sh, &a.sw);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "dilation_rate", 1, &a.dh, &a.dw);
  if (st == CN_OK) st = jint(k, l->name, l->cfg, "groups", 1, 1, 1 << 20, &groups);
  if (st == CN_OK && groups != 1)
    st = cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: groups %d are not supported", k->file, l->name,
                 groups);
  if (st == CN_OK) st = parse_padding(k, l->name, l->cfg, &padding);
  if (st == CN_OK) st = parse_output_padding(l, &has_op, &op_h, &op_w);
  if (st == CN_OK) st = parse_activation(k, l->name, l->cfg, &act);
  if (st != CN_OK) return st;
  a.use_bias = jbool(l->cfg, "use_bias", 1);
  const cn_shape *x = &k->g->nodes[l->in[0]].shape;
  char buf[96];
  if (x->rank != 3)
    return cn_fail(CN_ERR_SHAPE, "%s: layer %s: expects a (height, width, channels) input, got %s",
                   k->file, l->name, cn_shape_format(x, buf, sizeof buf));
  if (cn_conv_transpose_keras_axis(x->dim[0], a.kh, a.sh, a.dh, padding, has_op ? op_h : -1,
                                   &a.pad_top, &a.pad_bottom, &a.out_pad_h) != 0 ||
      cn_conv_transpose_keras_axis(x->dim[1], a.kw, a.sw, a.dw, padding, has_op ? op_w : -1,
                                   &a.pad_left, &a.pad_right, &a.out_pad_w) != 0)
    return cn_fail(CN_ERR_SHAPE, "%s: layer %s: output would be empty or too large", k->file,
                   l->name);
  if (st == CN_OK) st = add_simple(l, &cn_op_conv_transpose, &a, out);
  if (st != CN_OK || act.kind == CN_ACT_LINEAR) return st;
  char name[MAX_NAME + 16];
  snprintf(name, sizeof name, "%s/activation", l->name);
  int conv = *out;
  return add_node(k, name, "Activation", l->cfg, &cn_op_activation, &conv, 1, &act, out);
}

/* UpSampling2D: Keras repeats pixels (nearest: floor(o / size), ONNX's asymmetric + floor) or
 * resizes bilinearly with half-pixel centres and no antialiasing, as tf.image.resize does. */
static cn_status layer_upsampling2d(const klayer *l, int *out) {
  cn_resize_attrs a = {0};
  kctx *k = l->k;
  int sh = 2, sw = 2;
  cn_status st = check_channels_last(k, l->name, l->cfg);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "size", 2, &sh, &sw);
  if (st != CN_OK) return st;
  const char *interp = jstr(l->cfg, "interpolation");
  if (!interp || strcmp(interp, "nearest") == 0) {
    a.mode = CN_RESIZE_MODE_NEAREST;
    a.coord = CN_COORD_ASYMMETRIC;
    a.nearest = CN_NEAREST_FLOOR;
  } else if (strcmp(interp, "bilinear") == 0) {
    a.mode = CN_RESIZE_MODE_LINEAR;
    a.coord = CN_COORD_HALF_PIXEL;
  } else {
    return cn_fail(CN_ERR_UNSUPPORTED,
                   "%s: layer %s: interpolation %s is not supported (nearest or bilinear)", k->file,
                   l->name, interp);
  }
  a.scale_h = (float)sh;
  a.scale_w = (float)sw;
  return add_simple(l, &cn_op_resize, &a, out);
}

/* ZeroPadding2D padding: n, (h, w) or ((top, bottom), (left, right)). */
static cn_status layer_zeropad(const klayer *l, int *out) {
  cn_zeropad_attrs a = {0};
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(l->cfg, "padding");
  const int hi = 1 << 16;
  int ok = 0, v0, v1;
  cn_status st = check_channels_last(l->k, l->name, l->cfg);
  if (st != CN_OK) return st;
  if (int_in(p, 0, hi, &v0)) {
    a.top = a.bottom = a.left = a.right = v0;
    ok = 1;
  } else if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 2) {
    const cJSON *h = cJSON_GetArrayItem(p, 0), *w = cJSON_GetArrayItem(p, 1);
    if (int_in(h, 0, hi, &v0) && int_in(w, 0, hi, &v1)) {
      a.top = a.bottom = v0;
      a.left = a.right = v1;
      ok = 1;
    } else if (cJSON_IsArray(h) && cJSON_IsArray(w) && cJSON_GetArraySize(h) == 2 &&
               cJSON_GetArraySize(w) == 2) {
      ok = int_in(cJSON_GetArrayItem(h, 0), 0, hi, &a.top) &&
           int_in(cJSON_GetArrayItem(h, 1), 0, hi, &a.bottom) &&
           int_in(cJSON_GetArrayItem(w, 0), 0, hi, &a.left) &&
           int_in(cJSON_GetArrayItem(w, 1), 0, hi, &a.right);
    }
  }
  if (!ok) return bad(l->k, l->name, "bad padding");
  return add_simple(l, &cn_op_zeropad, &a, out);
}

static cn_status layer_pool(const klayer *l, const cn_op *op, int *out) {
  cn_pool_attrs a = {0};
  kctx *k = l->k;
  cn_status st = check_channels_last(k, l->name, l->cfg);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "pool_size", 2, &a.ph, &a.pw);
  if (st == CN_OK) st = jpair(k, l->name, l->cfg, "strides", 0, &a.sh, &a.sw);
  if (st == CN_OK && a.sh == 0) { /* strides None means the pool size */
    a.sh = a.ph;
    a.sw = a.pw;
  }
  if (st == CN_OK) st = parse_padding(k, l->name, l->cfg, &a.padding);
  return st == CN_OK ? add_simple(l, op, &a, out) : st;
}

static cn_status layer_maxpool(const klayer *l, int *out) {
  return layer_pool(l, &cn_op_maxpool, out);
}
static cn_status layer_avgpool(const klayer *l, int *out) {
  return layer_pool(l, &cn_op_avgpool, out);
}

static cn_status layer_global_pool(const klayer *l, const cn_op *op, int *out) {
  cn_global_pool_attrs a = {.keepdims = jbool(l->cfg, "keepdims", 0)};
  cn_status st = check_channels_last(l->k, l->name, l->cfg);
  return st == CN_OK ? add_simple(l, op, &a, out) : st;
}

static cn_status layer_gap(const klayer *l, int *out) {
  return layer_global_pool(l, &cn_op_global_avgpool, out);
}
static cn_status layer_gmp(const klayer *l, int *out) {
  return layer_global_pool(l, &cn_op_global_maxpool, out);
}

static cn_status layer_dense(const klayer *l, int *out) {
  cn_dense_attrs a = {0};
  cn_status st = jint(l->k, l->name, l->cfg, "units", 0, 1, 1 << 24, &a.units);
  if (st == CN_OK && !jhas(l->cfg, "units")) st = bad(l->k, l->name, "no units");
  if (st == CN_OK) st = parse_activation(l->k, l->name, l->cfg, &a.act);
  a.use_bias = jbool(l->cfg, "use_bias", 1);
  return st == CN_OK ? add_simple(l, &cn_op_dense, &a, out) : st;
}

static cn_status layer_flatten(const klayer *l, int *out) {
  cn_status st = check_channels_last(l->k, l->name, l->cfg);
  return st == CN_OK ? add_simple(l, &cn_op_flatten, NULL, out) : st;
}

static cn_status layer_reshape(const klayer *l, int *out) {
  cn_reshape_attrs a = {0};
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(l->cfg, "target_shape");
  int n = cJSON_IsArray(t) ? cJSON_GetArraySize(t) : -1;
  if (n < 1 || n >= CN_MAX_RANK) return bad(l->k, l->name, "bad target_shape");
  a.target.rank = n;
  for (int i = 0; i < n; i++) {
    int d;
    if (!int_in(cJSON_GetArrayItem(t, i), -1, 1 << 30, &d) || d == 0)
      return bad(l->k, l->name, "bad target_shape");
    a.target.dim[i] = d;
  }
  return add_simple(l, &cn_op_reshape, &a, out);
}

static cn_status layer_dropout(const klayer *l, int *out) {
  cn_dropout_attrs a = {.rate = (float)jnum(l->cfg, "rate", 0)};
  return add_simple(l, &cn_op_dropout, &a, out);
}

/* Keras axes count the batch dimension; a one-element list is the same as its element. */
static cn_status parse_axis(const klayer *l, int def, int *axis) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(l->cfg, "axis");
  if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) v = cJSON_GetArrayItem(v, 0);
  if (!v || cJSON_IsNull(v)) {
    *axis = def;
    return CN_OK;
  }
  if (int_in(v, -CN_MAX_RANK, CN_MAX_RANK, axis)) return CN_OK;
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: axis not supported", l->k->file, l->name);
}

static cn_status layer_batchnorm(const klayer *l, int *out) {
  cn_batchnorm_attrs a = {0};
  a.epsilon = (float)jnum(l->cfg, "epsilon", 1e-3);
  a.momentum = (float)jnum(l->cfg, "momentum", 0.99);
  a.center = jbool(l->cfg, "center", 1);
  a.scale = jbool(l->cfg, "scale", 1);
  cn_status st = parse_axis(l, -1, &a.axis);
  return st == CN_OK ? add_simple(l, &cn_op_batchnorm, &a, out) : st;
}

static cn_status layer_activation(const klayer *l, int *out) {
  cn_activation a;
  cn_status st = parse_activation(l->k, l->name, l->cfg, &a);
  return st == CN_OK ? add_simple(l, &cn_op_activation, &a, out) : st;
}

static cn_status layer_relu(const klayer *l, int *out) {
  cn_activation a = cn_act_relu();
  if (jhas(l->cfg, "max_value")) a.max_value = (float)jnum(l->cfg, "max_value", INFINITY);
  a.negative_slope = (float)jnum(l->cfg, "negative_slope", 0);
  a.threshold = (float)jnum(l->cfg, "threshold", 0);
  return add_simple(l, &cn_op_activation, &a, out);
}

static cn_status layer_leaky_relu(const klayer *l, int *out) {
  cn_activation a = cn_act_relu();
  /* Keras 2 calls the slope alpha, Keras 3 negative_slope; both default to 0.3. */
  a.negative_slope = (float)jnum(l->cfg, "alpha", jnum(l->cfg, "negative_slope", 0.3));
  return add_simple(l, &cn_op_activation, &a, out);
}

static cn_status layer_softmax(const klayer *l, int *out) {
  cn_activation a = cn_act_softmax();
  cn_status st = parse_axis(l, -1, &a.axis);
  return st == CN_OK ? add_simple(l, &cn_op_activation, &a, out) : st;
}

static cn_status layer_merge(const klayer *l, cn_merge_kind kind, int *out) {
  cn_merge_attrs a = {.kind = kind};
  if (l->n_in < 2) return bad(l->k, l->name, "a merge needs at least two inputs");
  return add_node(l->k, l->name, l->cls, l->cfg, &cn_op_merge, l->in, l->n_in, &a, out);
}

static cn_status layer_add(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_ADD, o);
}
static cn_status layer_sub(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_SUBTRACT, o);
}
static cn_status layer_mul(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_MULTIPLY, o);
}
static cn_status layer_avg(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_AVERAGE, o);
}
static cn_status layer_max(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_MAXIMUM, o);
}
static cn_status layer_min(const klayer *l, int *o) {
  return layer_merge(l, CN_MERGE_MINIMUM, o);
}

static cn_status layer_concat(const klayer *l, int *out) {
  cn_concat_attrs a = {0};
  if (l->n_in < 1) return bad(l->k, l->name, "no inputs");
  cn_status st = parse_axis(l, -1, &a.axis);
  if (st != CN_OK) return st;
  return add_node(l->k, l->name, l->cls, l->cfg, &cn_op_concat, l->in, l->n_in, &a, out);
}

typedef struct layer_class {
  const char *name;
  cn_status (*add)(const klayer *l, int *out);
} layer_class;

static const layer_class layer_classes[] = {
    {"Conv2D", layer_conv2d},
    {"Convolution2D", layer_conv2d},
    {"DepthwiseConv2D", layer_depthwise},
    {"Conv2DTranspose", layer_conv_transpose},
    {"Convolution2DTranspose", layer_conv_transpose},
    {"UpSampling2D", layer_upsampling2d},
    {"ZeroPadding2D", layer_zeropad},
    {"MaxPooling2D", layer_maxpool},
    {"MaxPool2D", layer_maxpool},
    {"AveragePooling2D", layer_avgpool},
    {"AvgPool2D", layer_avgpool},
    {"GlobalAveragePooling2D", layer_gap},
    {"GlobalAvgPool2D", layer_gap},
    {"GlobalMaxPooling2D", layer_gmp},
    {"GlobalMaxPool2D", layer_gmp},
    {"Dense", layer_dense},
    {"Flatten", layer_flatten},
    {"Reshape", layer_reshape},
    {"Dropout", layer_dropout},
    {"BatchNormalization", layer_batchnorm},
    {"Activation", layer_activation},
    {"ReLU", layer_relu},
    {"LeakyReLU", layer_leaky_relu},
    {"Softmax", layer_softmax},
    {"Add", layer_add},
    {"Subtract", layer_sub},
    {"Multiply", layer_mul},
    {"Average", layer_avg},
    {"Maximum", layer_max},
    {"Minimum", layer_min},
    {"Concatenate", layer_concat},
};

/* ---- inputs -------------------------------------------------------------------------------- */

/* [null, h, w, c] (batch_input_shape in Keras 2, batch_shape in Keras 3) to a per-sample shape. */
static cn_status parse_batch_shape(kctx *k, const char *layer, const cJSON *cfg, cn_shape *shape) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(cfg, "batch_input_shape");
  if (!s || cJSON_IsNull(s)) s = cJSON_GetObjectItemCaseSensitive(cfg, "batch_shape");
  int n = cJSON_IsArray(s) ? cJSON_GetArraySize(s) : 0;
  if (n < 2 || n > CN_MAX_RANK)
    return cn_fail(CN_ERR_FORMAT, "%s: layer %s: no usable input shape", k->file, layer);
  shape->rank = n - 1;
  for (int i = 1; i < n; i++) {
    int d;
    if (!int_in(cJSON_GetArrayItem(s, i), 1, 1 << 30, &d))
      return cn_fail(CN_ERR_UNSUPPORTED,
                     "%s: layer %s: input dimensions must be known (set input_shape when saving)",
                     k->file, layer);
    shape->dim[i - 1] = d;
  }
  return CN_OK;
}

static cn_status add_input(kctx *k, const char *name, const cJSON *cfg, int *out) {
  cn_input_attrs a = {0};
  cn_status st = parse_batch_shape(k, name, cfg, &a.shape);
  if (st == CN_OK) st = add_node(k, name, "InputLayer", cfg, &cn_op_input, NULL, 0, &a, out);
  return st;
}

/* ---- models -------------------------------------------------------------------------------- */

static cn_status build_model(kctx *k, const cJSON *model, const char *prefix, const int *in,
                             int n_in, int *out, int *n_out);

static cn_status full_name(kctx *k, const char *prefix, const char *name, char *buf) {
  if (!name || !*name) return cn_fail(CN_ERR_FORMAT, "%s: a layer has no name", k->file);
  if (strlen(prefix) + strlen(name) + 1 > MAX_NAME)
    return cn_fail(CN_ERR_LIMIT, "%s: layer name %s too long", k->file, name);
  snprintf(buf, MAX_NAME, "%s%s", prefix, name);
  return CN_OK;
}

static const char *layer_name(const cJSON *layer) {
  const char *n = jstr(cJSON_GetObjectItemCaseSensitive(layer, "config"), "name");
  return n ? n : jstr(layer, "name");
}

static int is_model_class(const char *cls) {
  return strcmp(cls, "Sequential") == 0 || strcmp(cls, "Functional") == 0 ||
         strcmp(cls, "Model") == 0;
}

/* Adds one Keras layer (or a nested model) fed by in; its output node(s) go to out. */
static cn_status add_layer(kctx *k, const cJSON *layer, const char *prefix, const int *in, int n_in,
                           int *out, int *n_out) {
  const char *cls = jstr(layer, "class_name");
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
  char name[MAX_NAME];
  cn_status st = full_name(k, prefix, layer_name(layer), name);
  if (st != CN_OK) return st;
  if (!cls || !cJSON_IsObject(cfg)) return bad(k, name, "no class_name or config");
  if (is_model_class(cls)) {
    char inner[MAX_NAME + 1];
    snprintf(inner, sizeof inner, "%s/", name);
    return build_model(k, layer, inner, in, n_in, out, n_out);
  }
  for (size_t i = 0; i < sizeof layer_classes / sizeof layer_classes[0]; i++) {
    if (strcmp(cls, layer_classes[i].name) != 0) continue;
    klayer l = {.k = k, .name = name, .cls = cls, .cfg = cfg, .in = in, .n_in = n_in};
    *n_out = 1;
    return layer_classes[i].add(&l, out);
  }
  return cn_fail(CN_ERR_UNSUPPORTED, "%s: layer %s: unsupported layer class %s", k->file, name,
                 cls);
}

static cn_status build_sequential(kctx *k, const cJSON *layers, const char *prefix, const int *in,
                                  int n_in, int *out, int *n_out) {
  int cur = n_in > 0 ? in[0] : -1;
  if (n_in > 1) return cn_fail(CN_ERR_FORMAT, "%s: a Sequential model takes one input", k->file);
  const cJSON *layer;
  cJSON_ArrayForEach(layer, layers) {
    const char *cls = jstr(layer, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(layer, "config");
    char name[MAX_NAME];
    cn_status st = full_name(k, prefix, layer_name(layer), name);
    if (st != CN_OK) return st;
    if (cls && strcmp(cls, "InputLayer") == 0) {
      if (cur < 0 && (st = add_input(k, name, cfg, &cur)) != CN_OK) return st;
      continue;
    }
    if (cur < 0) { /* Keras 2 puts the input shape on the first layer and names it <layer>_input */
      char input[MAX_NAME + 8];
      snprintf(input, sizeof input, "%s_input", name);
      if ((st = add_input(k, input, cfg, &cur)) != CN_OK) return st;
    }
    int outs[CN_MAX_GRAPH_IO], n = 0;
    if ((st = add_layer(k, layer, prefix, &cur, 1, outs, &n)) != CN_OK) return st;
    if (n != 1) return bad(k, name, "a layer of a Sequential model must have one output");
    cur = outs[0];
  }
  if (cur < 0) return cn_fail(CN_ERR_FORMAT, "%s: empty Sequential model", k->file);
  out[0] = cur;
  *n_out = 1;
  return CN_OK;
}

/* A reference to a tensor: ["name", node, tensor(, kwargs)] (Keras 2 and Keras 3 input_layers) or
 * {"class_name": "__keras_tensor__", "config": {"keras_history": [name, node, tensor]}}. The node
 * index is the call of the layer (a shared layer's k-th inbound node). */
static int parse_ref(const cJSON *v, kref *ref) {
  if (cJSON_IsObject(v)) {
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(v, "config");
    v = cJSON_GetObjectItemCaseSensitive(cfg, "keras_history");
  }
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 3) return 0;
  const cJSON *name = cJSON_GetArrayItem(v, 0);
  if (!cJSON_IsString(name)) return 0;
  ref->layer = name->valuestring;
  return int_in(cJSON_GetArrayItem(v, 1), 0, MAX_CALLS - 1, &ref->call) &&
         int_in(cJSON_GetArrayItem(v, 2), 0, CN_MAX_GRAPH_IO - 1, &ref->tensor);
}

static int is_keras_tensor(const cJSON *v) {
  const char *cls = jstr(v, "class_name");
  return cls && strcmp(cls, "__keras_tensor__") == 0;
}

/* Every Keras 3 tensor inside args, in order (a merge layer's args are a list of tensors). */
static cn_status collect_k3_refs(kctx *k, const char *layer, const cJSON *v, kref *refs, int *n,
                                 int depth) {
  if (depth > 8) return bad(k, layer, "inbound nodes nested too deeply");
  if (is_keras_tensor(v)) {
    if (*n >= MAX_REFS) return bad(k, layer, "too many inputs");
    if (!parse_ref(v, &refs[*n])) return bad(k, layer, "bad keras_history");
    (*n)++;
    return CN_OK;
  }
  const cJSON *item;
  if (cJSON_IsArray(v)) cJSON_ArrayForEach(item, v) {
      cn_status st = collect_k3_refs(k, layer, item, refs, n, depth + 1);
      if (st != CN_OK) return st;
    }
  return CN_OK;
}

/* The inputs of call `call` of a layer: its inbound node of that index. */
static cn_status collect_refs(kctx *k, const char *layer, const cJSON *inbound, int call,
                              kref *refs, int *n) {
  *n = 0;
  const cJSON *node = cJSON_GetArrayItem(inbound, call);
  if (!node) return bad(k, layer, "no inbound nodes");
  if (cJSON_IsObject(node))
    return collect_k3_refs(k, layer, cJSON_GetObjectItemCaseSensitive(node, "args"), refs, n, 0);
  const cJSON *item;
  cJSON_ArrayForEach(item, node) {
    if (*n >= MAX_REFS) return bad(k, layer, "too many inputs");
    if (!parse_ref(item, &refs[*n])) return bad(k, layer, "bad inbound node");
    (*n)++;
  }
  return CN_OK;
}

static const kentry *scope_find(const kscope *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (s->e[i].name && strcmp(s->e[i].name, name) == 0) return &s->e[i];
  return NULL;
}

/* 1 when every ref is already built; then idx receives the node indices. */
static int resolve_refs(const kscope *s, const kref *refs, int n, int *idx) {
  for (int i = 0; i < n; i++) {
    const kentry *e = scope_find(s, refs[i].layer);
    if (!e || refs[i].call >= e->done || refs[i].tensor >= e->n) return 0;
    idx[i] = e->out[refs[i].call * CN_MAX_GRAPH_IO + refs[i].tensor];
  }
  return 1;
}

/* Why a ref cannot be resolved once nothing more can be built; names the layer. */
static cn_status unresolved(kctx *k, const kscope *s, const char *layer, const kref *r) {
  const kentry *e = scope_find(s, r->layer);
  if (!e)
    return cn_fail(CN_ERR_FORMAT, "%s: layer %s: input %.200s is not a layer of the model", k->file,
                   layer, r->layer);
  if (r->call >= e->calls)
    return cn_fail(CN_ERR_FORMAT,
                   "%s: layer %s: input %.200s has no call %d (it is called %d times)", k->file,
                   layer, r->layer, r->call, e->calls);
  if (e->done > r->call && r->tensor >= e->n)
    return cn_fail(CN_ERR_FORMAT, "%s: layer %s: input %.200s has no output %d", k->file, layer,
                   r->layer, r->tensor);
  return cn_fail(CN_ERR_FORMAT, "%s: layer %s: input %.200s (call %d) is never produced (a cycle?)",
                 k->file, layer, r->layer, r->call);
}

/* input_layers / output_layers: a list of refs, or a single ref (Keras 3 with one input). */
static cn_status parse_io_list(kctx *k, const cJSON *cfg, const char *key, kref *refs, int *n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  *n = 0;
  if (!cJSON_IsArray(v)) return cn_fail(CN_ERR_FORMAT, "%s: model has no %s", k->file, key);
  if (cJSON_IsString(cJSON_GetArrayItem(v, 0))) {
    *n = 1;
    return parse_ref(v, refs) ? CN_OK : cn_fail(CN_ERR_FORMAT, "%s: bad %s", k->file, key);
  }
  const cJSON *item;
  cJSON_ArrayForEach(item, v) {
    if (*n >= CN_MAX_GRAPH_IO) return cn_fail(CN_ERR_UNSUPPORTED, "%s: too many %s", k->file, key);
    if (!parse_ref(item, &refs[*n])) return cn_fail(CN_ERR_FORMAT, "%s: bad %s", k->file, key);
    (*n)++;
  }
  if (*n == 0) return cn_fail(CN_ERR_FORMAT, "%s: empty %s", k->file, key);
  return CN_OK;
}

/* An InputLayer of a Functional model: a new graph input at top level, the caller's tensor when
 * the model is nested. */
static cn_status functional_input(kctx *k, const cJSON *layer, const char *prefix, const kref *ins,
                                  int n_ins, const int *in, int n_in, kentry *e) {
  const char *name = layer_name(layer);
  e->n = 1;
  if (!in) {
    char full[MAX_NAME];
    cn_status st = full_name(k, prefix, name, full);
    return st == CN_OK
               ? add_input(k, full, cJSON_GetObjectItemCaseSensitive(layer, "config"), &e->out[0])
               : st;
  }
  for (int i = 0; i < n_ins && i < n_in; i++)
    if (name && strcmp(ins[i].layer, name) == 0) {
      e->out[0] = in[i];
      return CN_OK;
    }
  return cn_fail(CN_ERR_FORMAT, "%s: nested input %s%s is not fed", k->file, prefix,
                 name ? name : "?");
}

/* Builds call e->done of a layer from the nodes in idx: the first call makes the layer's nodes,
 * a later one nodes sharing their weights. */
static cn_status build_call(kctx *k, const cJSON *layer, const char *prefix, const int *idx, int n,
                            kentry *e) {
  int outs[CN_MAX_GRAPH_IO], n_out = 0, call = e->done;
  k->again += call > 0;
  cn_status st = add_layer(k, layer, prefix, idx, n, outs, &n_out);
  k->again -= call > 0;
  if (st != CN_OK) return st;
  if (call > 0 && n_out != e->n) return bad(k, e->name, "calls give different numbers of outputs");
  e->n = n_out;
  memcpy(&e->out[call * CN_MAX_GRAPH_IO], outs, (size_t)n_out * sizeof *outs);
  e->done++;
  return CN_OK;
}

/* Builds the layer calls whose inputs are ready, each layer's in order; *progress counts them. */
static cn_status functional_pass(kctx *k, const cJSON *layers, const char *prefix, const kref *ins,
                                 int n_ins, const int *in, int n_in, kscope *s, int *progress) {
  kref refs[MAX_REFS];
  int idx[MAX_REFS], at = 0;
  const cJSON *layer;
  cJSON_ArrayForEach(layer, layers) {
    kentry *e = &s->e[at++];
    const char *cls = jstr(layer, "class_name");
    const cJSON *inbound = cJSON_GetObjectItemCaseSensitive(layer, "inbound_nodes");
    while (e->done < e->calls) {
      cn_status st;
      if (cls && strcmp(cls, "InputLayer") == 0) {
        st = functional_input(k, layer, prefix, ins, n_ins, in, n_in, e);
        e->done = 1;
      } else {
        int n = 0;
        st = collect_refs(k, e->name, inbound, e->done, refs, &n);
        if (st != CN_OK) return st;
        if (!resolve_refs(s, refs, n, idx)) break;
        st = build_call(k, layer, prefix, idx, n, e);
      }
      if (st != CN_OK) return st;
      (*progress)++;
    }
  }
  return CN_OK;
}

/* Names and call counts of every layer, before any is built (so that refs to later layers can be
 * told from refs to no layer). */
static cn_status scope_init(kctx *k, const cJSON *layers, kscope *s) {
  const cJSON *layer;
  cJSON_ArrayForEach(layer, layers) {
    kentry *e = &s->e[s->n++];
    e->name = layer_name(layer);
    if (!e->name) return cn_fail(CN_ERR_FORMAT, "%s: a layer has no name", k->file);
    const char *cls = jstr(layer, "class_name");
    const cJSON *inbound = cJSON_GetObjectItemCaseSensitive(layer, "inbound_nodes");
    e->calls = cls && strcmp(cls, "InputLayer") == 0 ? 1 : cJSON_GetArraySize(inbound);
    if (e->calls < 1) return bad(k, e->name, "no inbound nodes");
    if (e->calls > MAX_CALLS) return bad(k, e->name, "called too many times");
    e->out = malloc((size_t)e->calls * CN_MAX_GRAPH_IO * sizeof *e->out);
    if (!e->out) return cn_fail(CN_ERR_NOMEM, "out of memory");
  }
  return CN_OK;
}

static void scope_free(kscope *s) {
  for (int i = 0; s->e && i < s->n; i++) free(s->e[i].out);
  free(s->e);
}

/* After the passes stall: the first layer call that could not be built, and why. */
static cn_status stalled(kctx *k, const cJSON *layers, kscope *s) {
  kref refs[MAX_REFS];
  int idx[MAX_REFS], at = 0;
  const cJSON *layer;
  cJSON_ArrayForEach(layer, layers) {
    const kentry *e = &s->e[at++];
    if (e->done == e->calls) continue;
    int n = 0;
    cn_status st = collect_refs(
        k, e->name, cJSON_GetObjectItemCaseSensitive(layer, "inbound_nodes"), e->done, refs, &n);
    if (st != CN_OK) return st;
    for (int i = 0; i < n; i++)
      if (!resolve_refs(s, &refs[i], 1, idx)) return unresolved(k, s, e->name, &refs[i]);
  }
  return cn_fail(CN_ERR_FORMAT, "%s: some layers' inputs are never produced", k->file);
}

/* At top level the graph's inputs follow input_layers (several inputs: in the model's order, not
 * the order the layer list gives). */
static cn_status order_inputs(kctx *k, const kscope *s, const kref *ins, int n_ins) {
  int idx[CN_MAX_GRAPH_IO];
  if (n_ins != k->g->n_inputs || !resolve_refs(s, ins, n_ins, idx))
    return cn_fail(CN_ERR_FORMAT, "%s: input_layers are not the model's InputLayers", k->file);
  for (int i = 0; i < n_ins; i++)
    if (k->g->nodes[idx[i]].op != &cn_op_input)
      return cn_fail(CN_ERR_FORMAT, "%s: input %s is not an InputLayer", k->file, ins[i].layer);
  memcpy(k->g->inputs, idx, (size_t)n_ins * sizeof *idx);
  return CN_OK;
}

static cn_status build_functional(kctx *k, const cJSON *cfg, const char *prefix, const int *in,
                                  int n_in, int *out, int *n_out) {
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(cfg, "layers");
  int n_layers = cJSON_GetArraySize(layers);
  if (n_layers < 1 || n_layers > MAX_LAYERS)
    return cn_fail(CN_ERR_FORMAT, "%s: bad layer list", k->file);
  kref ins[CN_MAX_GRAPH_IO], outs[CN_MAX_GRAPH_IO];
  int n_ins, n_outs;
  cn_status st = parse_io_list(k, cfg, "input_layers", ins, &n_ins);
  if (st == CN_OK) st = parse_io_list(k, cfg, "output_layers", outs, &n_outs);
  if (st != CN_OK) return st;
  kscope s = {.e = calloc((size_t)n_layers, sizeof(kentry))};
  if (!s.e) st = cn_fail(CN_ERR_NOMEM, "out of memory");
  if (st == CN_OK) st = scope_init(k, layers, &s);
  /* Keras lists layers in a usable order, but does not promise it: repeat until nothing moves. */
  int calls = 0, built = 0;
  for (int i = 0; i < s.n; i++) calls += s.e[i].calls;
  for (int progress = 1; st == CN_OK && progress && built < calls; built += progress) {
    progress = 0;
    st = functional_pass(k, layers, prefix, ins, n_ins, in, n_in, &s, &progress);
  }
  if (st == CN_OK && built < calls) st = stalled(k, layers, &s);
  for (int i = 0; st == CN_OK && i < n_outs; i++)
    if (!resolve_refs(&s, &outs[i], 1, &out[i])) st = unresolved(k, &s, "(output)", &outs[i]);
  if (st == CN_OK && !in) st = order_inputs(k, &s, ins, n_ins);
  *n_out = n_outs;
  scope_free(&s);
  return st;
}

static cn_status build_model(kctx *k, const cJSON *model, const char *prefix, const int *in,
                             int n_in, int *out, int *n_out) {
  const char *cls = jstr(model, "class_name");
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(model, "config");
  if (!cls || !is_model_class(cls))
    return cn_fail(CN_ERR_UNSUPPORTED, "%s: not a Sequential or Functional model (%s)", k->file,
                   cls ? cls : "no class_name");
  if (k->depth >= MAX_DEPTH) return cn_fail(CN_ERR_LIMIT, "%s: models nested too deeply", k->file);
  int frozen = cJSON_IsObject(cfg) && !jbool(cfg, "trainable", 1);
  k->depth++;
  k->frozen += frozen;
  cn_status st;
  /* Keras 2.0-2.1 wrote a Sequential config as the bare list of layers. */
  if (cJSON_IsArray(cfg))
    st = build_sequential(k, cfg, prefix, in, n_in, out, n_out);
  else if (!cJSON_IsObject(cfg))
    st = cn_fail(CN_ERR_FORMAT, "%s: model has no config", k->file);
  else if (strcmp(cls, "Sequential") == 0)
    st = build_sequential(k, cJSON_GetObjectItemCaseSensitive(cfg, "layers"), prefix, in, n_in, out,
                          n_out);
  else
    st = build_functional(k, cfg, prefix, in, n_in, out, n_out);
  k->depth--;
  k->frozen -= frozen;
  return st;
}

static cn_status model_name(const cJSON *root, char **name) {
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
  const char *n = cJSON_IsObject(cfg) ? jstr(cfg, "name") : NULL;
  *name = cn_strdup(n && *n ? n : "model");
  return *name ? CN_OK : CN_ERR_NOMEM;
}

cn_status cn_keras_build_graph(const char *file, const char *json, cn_graph **out, char **name) {
  *out = NULL;
  *name = NULL;
  cJSON *root = cJSON_Parse(json);
  if (!root) return cn_fail(CN_ERR_FORMAT, "%s: model config is not valid JSON", file);
  kctx k = {.file = file, .g = cn_graph_new()};
  cn_status st = k.g ? CN_OK : CN_ERR_NOMEM;
  int outs[CN_MAX_GRAPH_IO], n_outs = 0;
  if (st == CN_OK) st = build_model(&k, root, "", NULL, 0, outs, &n_outs);
  if (st == CN_OK) st = cn_graph_set_outputs(k.g, outs, n_outs);
  if (st == CN_OK && k.g->n_inputs < 1)
    st = cn_fail(CN_ERR_FORMAT, "%s: the model has no input", file);
  if (st == CN_OK) st = model_name(root, name);
  cJSON_Delete(root);
  if (st != CN_OK) {
    cn_graph_free(k.g);
    return st;
  }
  *out = k.g;
  return CN_OK;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

cn_preprocess cn_keras_guess_preprocess(const char *model_name, int channels) {
  char low[128];
  size_t i = 0;
  for (; model_name && model_name[i] && i + 1 < sizeof low; i++)
    low[i] = (char)tolower((unsigned char)model_name[i]);
  low[i] = 0;
  /* As keras.applications: ResNet V2 uses "tf" mode, ResNet V1 and VGG "caffe". */
  if (starts_with(low, "mobilenet") || starts_with(low, "inception") ||
      starts_with(low, "xception") || (starts_with(low, "resnet") && strstr(low, "v2")))
    return CN_PRE_TF;
  if (starts_with(low, "vgg") || starts_with(low, "resnet")) return CN_PRE_CAFFE;
  return channels == 1 ? CN_PRE_UNIT : CN_PRE_RAW;
}
