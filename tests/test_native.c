/* .cnm model files: zoo and Keras-file models survive a save/load bit-exactly (forward bytes,
 * summary, class names, input spec), every op has an attrs description, and damaged graphs,
 * unknown ops, out-of-range attributes and mismatched tensors are refused by name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "model/model.h"
#include "io/native/internal.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

static char tmp_path[512];

static const char *tmp_file(const char *name) {
  snprintf(tmp_path, sizeof tmp_path, "%s/%s", cn_test_tmpdir(), name);
  return tmp_path;
}

/* A deterministic input pattern for a model. */
static float *make_input(const cn_model *m, int batch, size_t *numel) {
  cn_shape in = cn_model_input_shape(m);
  *numel = (size_t)cn_shape_numel(&in);
  float *x = malloc((size_t)batch * *numel * sizeof *x);
  for (size_t i = 0; i < (size_t)batch * *numel; i++) x[i] = (float)((i * 37) % 256) / 127.5f - 1;
  return x;
}

static float *run(cn_model *m, int batch, size_t *out_numel) {
  size_t in_numel;
  float *x = make_input(m, batch, &in_numel);
  cn_shape out = cn_model_output_shape(m);
  *out_numel = (size_t)batch * (size_t)cn_shape_numel(&out);
  float *y = calloc(*out_numel, sizeof *y);
  CHECK_OK(cn_model_forward(m, batch, x, y));
  free(x);
  return y;
}

static void check_same_layers(const cn_model *a, const cn_model *b) {
  CHECK(cn_model_layer_count(a) == cn_model_layer_count(b));
  for (size_t i = 0; i < cn_model_layer_count(a) && i < cn_model_layer_count(b); i++) {
    cn_layer_info x, y;
    CHECK_OK(cn_model_layer_info(a, i, &x));
    CHECK_OK(cn_model_layer_info(b, i, &y));
    int same = strcmp(x.name, y.name) == 0 && strcmp(x.type, y.type) == 0 &&
               cn_shape_equal(&x.output, &y.output) && x.params == y.params &&
               x.trainable == y.trainable && x.n_inputs == y.n_inputs;
    for (int k = 0; same && k < x.n_inputs && k < 8; k++)
      same = strcmp(x.inputs[k], y.inputs[k]) == 0;
    CHECK(same);
    if (!same)
      fprintf(stderr, "  layer %zu differs: %s (%s) vs %s (%s)\n", i, x.name, x.type, y.name,
              y.type);
  }
}

static void check_same_params(const cn_model *a, const cn_model *b) {
  int same = a->graph->n_nodes == b->graph->n_nodes;
  for (int i = 0; same && i < a->graph->n_nodes; i++)
    for (int k = 0; same && k < a->graph->nodes[i].n_params; k++) {
      const cn_param *p = &a->graph->nodes[i].params[k], *q = &b->graph->nodes[i].params[k];
      same = cn_shape_equal(&p->shape, &q->shape) && p->trainable == q->trainable &&
             memcmp(p->data, q->data, (size_t)cn_shape_numel(&p->shape) * sizeof(float)) == 0;
    }
  CHECK(same);
}

/* Saves m, loads it back through cn_model_load (by content: the name says nothing) and checks
 * that everything a user sees is the same. Returns the loaded model. */
static cn_model *round_trip(cn_model *m, const char *file, int batch) {
  const char *path = tmp_file(file);
  CHECK_OK(cn_model_save(m, path));
  cn_model *back = NULL;
  CHECK_OK(cn_model_load(path, &back));
  if (!back) return NULL;
  CHECK(strcmp(cn_model_name(m), cn_model_name(back)) == 0);
  cn_input_spec s = cn_model_input_spec(m), t = cn_model_input_spec(back);
  CHECK(s.height == t.height && s.width == t.width && s.channels == t.channels &&
        s.resize == t.resize && s.crop == t.crop && s.preprocess == t.preprocess);
  CHECK(cn_model_class_count(m) == cn_model_class_count(back));
  for (int i = 0; i < cn_model_class_count(m); i++)
    CHECK(strcmp(cn_model_class_name(m, i), cn_model_class_name(back, i)) == 0);
  check_same_layers(m, back);
  check_same_params(m, back);
  size_t n1, n2;
  float *y1 = run(m, batch, &n1), *y2 = run(back, batch, &n2);
  CHECK(n1 == n2 && memcmp(y1, y2, n1 * sizeof *y1) == 0);
  free(y1);
  free(y2);
  return back;
}

/* Files a and b of the temporary directory hold the same bytes. */
static int same_bytes(const char *a, const char *b) {
  char path_a[512];
  snprintf(path_a, sizeof path_a, "%s", tmp_file(a));
  FILE *fa = fopen(path_a, "rb"), *fb = fopen(tmp_file(b), "rb");
  int same = fa && fb;
  while (same) {
    int ca = fgetc(fa), cb = fgetc(fb);
    same = ca == cb;
    if (ca == EOF || cb == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

/* A pattern in every parameter (variances positive) so the forward pass means something. */
static void fill_params(cn_model *m) {
  for (int i = 0; i < m->graph->n_nodes; i++)
    for (int k = 0; k < m->graph->nodes[i].n_params; k++) {
      cn_param *p = &m->graph->nodes[i].params[k];
      int positive = strstr(p->name, "variance") != NULL;
      for (int64_t j = 0; j < cn_shape_numel(&p->shape); j++)
        p->data[j] =
            positive ? 1.0f + (float)(j % 5) * 0.1f : (float)((j * 7 + i) % 11) * 0.02f - 0.1f;
    }
  m->graph->weights_version++;
}

static void test_zoo_mobilenet(void) {
  cn_zoo_options zo = {.name = "mobilenet", .alpha = 0.25f};
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(&zo, &m));
  if (!m) return;
  const char *weights = cn_test_data("weights/keras/mobilenet_v1_0.25_224.h5");
  if (weights)
    CHECK_OK(cn_model_load_weights(m, weights));
  else
    fill_params(m);
  cn_input_spec spec = cn_model_input_spec(m);
  spec.crop = 0.875;
  spec.resize = CN_RESIZE_PIL_BILINEAR;
  cn_model_set_input_spec(m, &spec);
  m->graph->nodes[3].trainable = 0; /* a frozen layer stays frozen */
  cn_model *back = round_trip(m, "mobilenet.bin", 2);
  if (back) {
    CHECK(back->graph->nodes[3].trainable == 0);
    /* Saving the loaded model again writes the same bytes. */
    cn_model *again = round_trip(back, "mobilenet2.cnm", 1);
    cn_model_free(again);
    CHECK(same_bytes("mobilenet.bin", "mobilenet2.cnm"));
    /* And a .cnm is also a weights file for the same architecture. */
    cn_model *fresh = NULL;
    CHECK_OK(cn_zoo_build(&zo, &fresh));
    if (fresh) CHECK_OK(cn_model_load_weights(fresh, tmp_file("mobilenet.bin")));
    if (fresh) check_same_params(m, fresh);
    cn_model_free(fresh);
  }
  cn_model_free(back);
  cn_model_free(m);
}

static void test_keras_mnist(void) {
  char json[4096], weights[4096];
  const char *j = cn_test_data("weights/keras/mnist_cnn.json");
  snprintf(json, sizeof json, "%s", j ? j : "");
  const char *w = cn_test_data("weights/keras/mnist_cnn_weights.h5");
  if (!j || !w) {
    printf("note: mnist_cnn files absent, Keras-file round trip skipped\n");
    return;
  }
  snprintf(weights, sizeof weights, "%s", w);
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(json, &m));
  if (!m) return;
  CHECK_OK(cn_model_load_weights(m, weights));
  const char *const digits[] = {"zero", "one", "two",   "three", "four",
                                "five", "six", "seven", "eight", "nine"};
  CHECK_OK(cn_model_set_class_names(m, digits, 10));
  cn_model *back = round_trip(m, "mnist.cnm", 3);
  if (back) CHECK(strcmp(cn_model_class_name(back, 9), "nine") == 0);
  cn_model_free(back);
  cn_model_free(m);
}

/* A small graph using the ONNX-style ops and the infinite/negative values the JSON must carry. */
static void test_onnx_ops_graph(void) {
  cn_graph *g = cn_graph_new();
  int in, x;
  cn_input_attrs ia = {.shape = {3, {6, 5, 4}}};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &ia, &in));
  cn_pad_attrs pa = {.mode = CN_PADMODE_REFLECT, .rank = 3, .begin = {1, -1, 0}, .end = {2, 0, 0}};
  CHECK_OK(cn_graph_add(g, &cn_op_pad, "pad", &in, 1, &pa, &x));
  cn_unary_attrs ua = {.kind = CN_UN_CLIP, .lo = -INFINITY, .hi = 0.5f};
  CHECK_OK(cn_graph_add(g, &cn_op_unary, "clip", &x, 1, &ua, &x));
  cn_transpose_attrs ta = {.rank = 3, .perm = {2, 0, 1}};
  CHECK_OK(cn_graph_add(g, &cn_op_transpose, "transpose", &x, 1, &ta, &x));
  cn_pool_attrs po = {
      .ph = 2, .pw = 2, .sh = 1, .sw = 2, .pad_top = 1, .ceil_mode = 1, .count_include_pad = 1};
  CHECK_OK(cn_graph_add(g, &cn_op_avgpool, "pool", &x, 1, &po, &x));
  cn_activation act = cn_act_relu();
  act.max_value = INFINITY;
  act.negative_slope = 0.125f;
  CHECK_OK(cn_graph_add(g, &cn_op_activation, "leaky", &x, 1, &act, &x));
  cn_model *m = NULL;
  cn_input_spec spec = {0};
  CHECK_OK(cn_model_wrap(g, "onnx_ops", &spec, &m));
  if (!m) return;
  cn_model *back = round_trip(m, "onnx_ops.cnm", 2);
  if (back) {
    const cn_unary_attrs *u = back->graph->nodes[2].attrs;
    CHECK(u->lo == -INFINITY && u->hi == 0.5f && u->kind == CN_UN_CLIP);
    const cn_pad_attrs *p = back->graph->nodes[1].attrs;
    CHECK(p->begin[1] == -1 && p->end[0] == 2 && p->mode == CN_PADMODE_REFLECT);
    CHECK(memcmp(back->graph->nodes[3].attrs, &ta, sizeof ta) == 0);
  }
  cn_model_free(back);
  cn_model_free(m);
}

/* An imported ONNX model holds the importer's layout Transposes (NCHW <-> NHWC around the channel
 * shuffles); they are the registered Transpose op, so the model saves as .cnm and runs the same. */
static void test_onnx_import(void) {
  const char *path = cn_test_data("onnx/light/light_shufflenet.onnx");
  if (!path) {
    printf("note: light_shufflenet.onnx absent, ONNX-import round trip skipped\n");
    return;
  }
  cn_model *m = NULL;
  CHECK_OK(cn_model_load(path, &m));
  if (!m) return;
  fill_params(m);
  int transposes = 0;
  for (int i = 0; i < m->graph->n_nodes; i++)
    transposes += m->graph->nodes[i].op == &cn_op_transpose;
  CHECK(transposes > 0);
  cn_model_free(round_trip(m, "shufflenet.cnm", 1));
  cn_model_free(m);
}

static void test_tables(void) {
  int ops = 0, described = 0;
  for (const cn_op *const *o = cn_all_ops; *o; o++, ops++) {
    described += cn_native_op_supported(*o);
    if (!cn_native_op_supported(*o))
      fprintf(stderr, "  op %s has no attrs description\n", (*o)->type);
    for (const cn_op *const *p = cn_all_ops; *p != *o; p++)
      CHECK(strcmp((*p)->type, (*o)->type) != 0);
  }
  CHECK(ops == described);
  CHECK_OK(cn_native_check_tables());
  /* The spec's enum names are the command line's. */
  for (int r = 0; r < CN_RESIZE_COUNT; r++) {
    cn_input_spec s = {.resize = (cn_resize)r, .preprocess = (cn_preprocess)(r % CN_PRE_COUNT)};
    cJSON *j = cn_native_spec_to_json(&s);
    CHECK(strcmp(cJSON_GetObjectItem(j, "resize")->valuestring, cn_resize_name(s.resize)) == 0);
    CHECK(strcmp(cJSON_GetObjectItem(j, "preprocess")->valuestring,
                 cn_preprocess_name(s.preprocess)) == 0);
    cJSON_Delete(j);
  }
  cn_input_spec s = {.preprocess = CN_PRE_UNIT};
  cJSON *j = cn_native_spec_to_json(&s);
  CHECK(strcmp(cJSON_GetObjectItem(j, "preprocess")->valuestring, "unit") == 0);
  CHECK(strcmp(cJSON_GetObjectItem(j, "decoder")->valuestring, "pil") == 0);
  cJSON_Delete(j);
  for (int d = 0; d < CN_DECODE_COUNT; d++) { /* and back; an absent decoder is PIL's */
    cn_input_spec in = {.height = 2, .decoder = (cn_decoder)d}, back = {0};
    j = cn_native_spec_to_json(&in);
    CHECK_OK(cn_native_spec_from_json(j, "spec", &back));
    CHECK(back.decoder == in.decoder && back.height == 2);
    cJSON_DeleteItemFromObject(j, "decoder");
    CHECK_OK(cn_native_spec_from_json(j, "spec", &back));
    CHECK(back.decoder == CN_DECODE_PIL);
    cJSON_Delete(j);
  }
}

/* ---- damaged files ---- */

/* Copies src to dst with metadata key replaced (value NULL: removed; a new key: added) and with
 * tensor drop removed (NULL: none) and one tensor `add` of 4 floats added (NULL: none). */
static const char *rewrite(const char *src, const char *dst, const char *key, const char *value,
                           const char *drop, const char *add) {
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(src, &f));
  if (!f) return dst;
  int n = cn_safetensors_count(f), nm = cn_safetensors_meta_count(f), k = 0, km = 0;
  cn_st_tensor *t = calloc((size_t)n + 1, sizeof *t);
  cn_st_meta *meta = calloc((size_t)nm + 1, sizeof *meta);
  static const float four[4] = {1, 2, 3, 4};
  for (int i = 0; i < n; i++)
    if (!drop || strcmp(cn_safetensors_at(f, i)->name, drop) != 0)
      t[k++] = *cn_safetensors_at(f, i);
  if (add)
    t[k++] = (cn_st_tensor){.name = add, .dtype = CN_ST_F32, .shape = {1, {4}}, .data = four};
  int replaced = 0;
  for (int i = 0; i < nm; i++) {
    cn_st_meta m = *cn_safetensors_meta_at(f, i);
    if (strcmp(m.key, CN_ST_CHECKSUM_KEY) == 0) continue;
    if (key && strcmp(m.key, key) == 0) {
      replaced = 1;
      if (!value) continue;
      m.value = value;
    }
    meta[km++] = m;
  }
  if (key && value && !replaced) meta[km++] = (cn_st_meta){key, value};
  CHECK_OK(cn_safetensors_write(dst, t, k, meta, km));
  free(t);
  free(meta);
  cn_safetensors_close(f);
  return dst;
}

/* The graph metadata of src with the first `from` replaced by `to`. */
static char *edit_graph(const char *src, const char *from, const char *to) {
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(src, &f));
  if (!f) return NULL;
  const char *g = cn_safetensors_meta(f, "graph");
  const char *at = strstr(g, from);
  CHECK(at != NULL);
  char *out = malloc(strlen(g) + strlen(to) + 1);
  if (!at) {
    strcpy(out, g);
  } else {
    size_t pre = (size_t)(at - g);
    memcpy(out, g, pre);
    strcpy(out + pre, to);
    strcat(out, at + strlen(from));
  }
  cn_safetensors_close(f);
  return out;
}

static void check_load_fails(const char *path, cn_status want, const char *word) {
  cn_model *m = NULL;
  cn_status st = cn_model_load(path, &m);
  const char *msg = cn_last_error();
  CHECK(st == want && m == NULL);
  CHECK(strstr(msg, path) != NULL && strchr(msg, '\n') == NULL);
  CHECK(strstr(msg, word) != NULL);
  if (getenv("CN_TEST_VERBOSE") || st != want || !strstr(msg, word))
    fprintf(stderr, "  %s: %s\n", cn_status_name(st), msg);
  cn_model_free(m);
}

static void check_graph_edit(const char *src, const char *from, const char *to, cn_status want,
                             const char *word) {
  char *graph = edit_graph(src, from, to);
  if (!graph) return;
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "graph", graph, NULL, NULL), want, word);
  free(graph);
}

static void test_damaged(void) {
  cn_graph *g = cn_graph_new();
  int in, x;
  cn_input_attrs ia = {.shape = {3, {8, 8, 3}}};
  CHECK_OK(cn_graph_add(g, &cn_op_input, "image", NULL, 0, &ia, &in));
  cn_conv2d_attrs ca = {.filters = 4,
                        .kh = 3,
                        .kw = 3,
                        .sh = 1,
                        .sw = 1,
                        .dh = 1,
                        .dw = 1,
                        .groups = 1,
                        .use_bias = 1,
                        .padding = CN_PAD_SAME,
                        .act = cn_act_relu()};
  CHECK_OK(cn_graph_add(g, &cn_op_conv2d, "conv", &in, 1, &ca, &x));
  cn_global_pool_attrs gp = {0};
  CHECK_OK(cn_graph_add(g, &cn_op_global_avgpool, "gap", &x, 1, &gp, &x));
  cn_dense_attrs da = {.units = 2, .use_bias = 1, .act = cn_act_softmax()};
  CHECK_OK(cn_graph_add(g, &cn_op_dense, "head", &x, 1, &da, &x));
  cn_model *m = NULL;
  cn_input_spec spec = cn_input_spec_default(&ia.shape, CN_PRE_TF);
  CHECK_OK(cn_model_wrap(g, "small", &spec, &m));
  if (!m) return;
  fill_params(m);
  const char *const names[] = {"cat", "dog"};
  CHECK_OK(cn_model_set_class_names(m, names, 2));
  char src[512];
  snprintf(src, sizeof src, "%s", tmp_file("small.cnm"));
  CHECK_OK(cn_model_save(m, src));
  cn_model_free(round_trip(m, "small2.cnm", 1));

  check_graph_edit(src, "\"op\":\"Dense\"", "\"op\":\"Dense3D\"", CN_ERR_UNSUPPORTED,
                   "head: unknown op 'Dense3D'");
  check_graph_edit(src, "\"filters\":4", "\"filters\":-4", CN_ERR_FORMAT,
                   "conv: attribute 'filters'");
  check_graph_edit(src, "\"kh\":3", "\"kh\":1e300", CN_ERR_FORMAT, "conv: attribute 'kh'");
  check_graph_edit(src, "\"kh\":3", "\"kh\":2.5", CN_ERR_FORMAT, "whole number");
  check_graph_edit(src, "\"padding\":\"same\"", "\"padding\":\"full\"", CN_ERR_FORMAT, "'full'");
  check_graph_edit(src, "\"use_bias\":1", "\"use_bias\":1,\"bogus\":1", CN_ERR_FORMAT,
                   "unknown attribute 'bogus'");
  check_graph_edit(src, "\"kind\":\"relu\"", "\"kind\":\"gelu\"", CN_ERR_FORMAT, "'gelu'");
  check_graph_edit(src, "\"kh\":3", "\"kh\":3,\"kh\":3", CN_ERR_FORMAT, "twice");
  check_graph_edit(src, "\"inputs\":[\"conv\"]", "\"inputs\":[\"head\"]", CN_ERR_FORMAT,
                   "'head' is not an earlier layer");
  check_graph_edit(src, "\"name\":\"gap\"", "\"name\":\"conv\"", CN_ERR_FORMAT, "duplicate");
  check_graph_edit(src, "\"trainable\":true", "\"trainable\":1", CN_ERR_FORMAT, "trainable");
  check_graph_edit(src, "\"nodes\":[", "\"nodes\":[1,", CN_ERR_FORMAT, "not an object");
  check_graph_edit(src, "\"outputs\":[\"head\"]", "\"outputs\":[\"nothing\"]", CN_ERR_FORMAT,
                   "'nothing'");
  check_graph_edit(src, "\"units\":2", "\"units\":3", CN_ERR_SHAPE, "head/kernel");
  check_graph_edit(src, "{\"nodes\"", "{\"extra\":1,\"nodes\"", CN_ERR_FORMAT, "'extra'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "graph", "{\"nodes\":[", NULL, NULL),
                   CN_ERR_FORMAT, "'graph' is not valid JSON");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "graph", NULL, NULL, NULL), CN_ERR_FORMAT,
                   "no 'graph'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "version", "3", NULL, NULL),
                   CN_ERR_UNSUPPORTED, "version '3'");
  /* shared layers need version 2 */
  check_graph_edit(src, "\"name\":\"head\"", "\"name\":\"head\",\"shares\":\"conv\"", CN_ERR_FORMAT,
                   "head: 'shares' needs format version 2");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "format", "convnet-checkpoint", NULL, NULL),
                   CN_ERR_FORMAT, "format");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "surprise", "1", NULL, NULL), CN_ERR_FORMAT,
                   "unknown metadata 'surprise'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "classes", "{\"a\":1}", NULL, NULL),
                   CN_ERR_FORMAT, "classes");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "classes", "[\"a\",\"\"]", NULL, NULL),
                   CN_ERR_FORMAT, "class name 1");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "input_spec",
                           "{\"height\":8,\"resize\":\"cubic\"}", NULL, NULL),
                   CN_ERR_FORMAT, "input_spec: attribute 'resize'");
  check_load_fails(
      rewrite(src, tmp_file("bad.cnm"), "input_spec", "{\"height\":8,\"x\":1}", NULL, NULL),
      CN_ERR_FORMAT, "unknown attribute 'x'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), NULL, NULL, "conv/bias", NULL), CN_ERR_FORMAT,
                   "no tensor 'conv/bias'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), NULL, NULL, NULL, "conv/extra"), CN_ERR_FORMAT,
                   "'conv/extra' is not a parameter");
  /* A checkpoint reader takes the extra tensors and keys. */
  cn_safetensors *f = NULL;
  CHECK_OK(
      cn_safetensors_open(rewrite(src, tmp_file("extra.cnm"), "step", "1", NULL, "opt/m"), &f));
  cn_model *loaded = NULL;
  if (f) CHECK_OK(cn_native_read(f, CN_NATIVE_FORMAT, 1, &loaded));
  if (loaded) CHECK(cn_model_class_count(loaded) == 2);
  cn_model_free(loaded);
  cn_safetensors_close(f);
  /* Saving refuses a class name that is not one line of text. */
  const char *const bad[] = {"a\nb"};
  CHECK(cn_model_set_class_names(m, bad, 1) == CN_ERR_ARG);
  CHECK(cn_model_class_count(m) == 2);
  cn_model_free(m);
}

/* A model with a shared layer (version 2): round trip, and damaged "shares" fields. */
static void test_shared_damaged(void) {
  cn_net *net = NULL;
  CHECK_OK(cn_net_new("pair", &net));
  if (!net) return;
  cn_sym a = cn_net_input(net, "a", 1, (int64_t[]){4});
  cn_sym b = cn_net_input(net, "b", 1, (int64_t[]){4});
  cn_sym ea = cn_net_dense(net, a, &(cn_dense_options){.name = "d", .units = 3});
  cn_sym eb = cn_net_call(net, "d", &b, 1);
  cn_sym y = cn_net_subtract(net, ea, eb, "diff");
  cn_model *m = NULL;
  CHECK_OK(cn_net_build(net, &y, 1, &m));
  cn_net_free(net);
  if (!m) return;
  fill_params(m);
  char src[512];
  snprintf(src, sizeof src, "%s", tmp_file("pair.cnm"));
  CHECK_OK(cn_model_save(m, src));
  cn_model_free(m);
  cn_safetensors *f = NULL;
  CHECK_OK(cn_safetensors_open(src, &f));
  if (f) {
    CHECK(strcmp(cn_safetensors_meta(f, "version"), "2") == 0);
    CHECK(cn_safetensors_find(f, "d/kernel") && !cn_safetensors_find(f, "d/call1/kernel"));
    cn_safetensors_close(f);
  }
  check_graph_edit(src, "\"shares\":\"d\"", "\"shares\":\"nothing\"", CN_ERR_FORMAT,
                   "d/call1: shares 'nothing', which is not an earlier layer");
  check_graph_edit(src, "\"shares\":\"d\"", "\"shares\":\"diff\"", CN_ERR_FORMAT,
                   "not an earlier layer");
  check_graph_edit(src, "\"shares\":\"d\"", "\"shares\":\"a\"", CN_ERR_FORMAT,
                   "d/call1: shares the weights of a, a layer of another op");
  check_graph_edit(src, "\"shares\":\"d\"", "\"shares\":7", CN_ERR_FORMAT, "(not a string)");
  /* without "shares" the call is a layer of its own, whose weights the file lacks */
  check_graph_edit(src, ",\"shares\":\"d\"", "", CN_ERR_FORMAT, "no tensor 'd/call1/kernel'");
  check_load_fails(rewrite(src, tmp_file("bad.cnm"), "version", "1", NULL, NULL), CN_ERR_FORMAT,
                   "d/call1: 'shares' needs format version 2");
}

int main(void) {
  test_shared_damaged();
  test_tables();
  test_zoo_mobilenet();
  test_keras_mnist();
  test_onnx_import();
  test_onnx_ops_graph();
  test_damaged();
  return cn_test_finish();
}
