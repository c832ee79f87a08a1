/* libFuzzer target for the Keras JSON architecture reader (model.to_json(), what
 * `convnet train --model ARCH.json` reads through cn_model_load): each input is parsed from
 * memory by cn_keras_build_graph; a graph that builds, and whose declared sizes are small, is
 * wrapped as a model, has its weights drawn from its initializers (train --init) and runs once on
 * zeros, so that the shapes the reader accepted are checked by the ops too. Sequential,
 * functional, nested and shared-layer models are in the seeds (fuzz/make_corpus.py). Run through
 * scripts/fuzz.sh, or
 *   ./fuzz_keras_json -max_len=16384 -dict=fuzz/keras_json.dict corpus/ */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/graph.h"
#include "io/keras/internal.h"
#include "model/model.h"

/* An architecture declares its sizes: a few bytes of JSON may ask for gigabytes of weights or
 * activations, which is the file's right (allocation then fails cleanly) but not a bug, and would
 * stop the fuzzer at its memory limit. Larger graphs are parsed and checked, not run. */
enum { MAX_PARAM_FLOATS = 1 << 22, MAX_NODE_FLOATS = 1 << 16, MAX_IO = 8 };

static int small_graph(const cn_graph *g) {
  int64_t params = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const cn_node *n = &g->nodes[i];
    int64_t out = cn_shape_numel(&n->shape);
    if (out < 0 || out > MAX_NODE_FLOATS) return 0;
    for (int p = 0; p < n->n_params; p++) {
      int64_t k = cn_shape_numel(&n->params[p].shape);
      if (k < 0 || k > MAX_PARAM_FLOATS || (params += k) > MAX_PARAM_FLOATS) return 0;
    }
  }
  return 1;
}

static void run_once(cn_model *m) {
  int n_in = cn_model_input_count(m), n_out = cn_model_output_count(m);
  const float *xs[MAX_IO] = {0};
  float *ys[MAX_IO] = {0};
  int ok = n_in <= MAX_IO && n_out <= MAX_IO;
  for (int i = 0; ok && i < n_in; i++) {
    cn_shape s = cn_model_input_shape_at(m, i);
    ok = (xs[i] = calloc((size_t)cn_shape_numel(&s), sizeof(float))) != NULL;
  }
  for (int o = 0; ok && o < n_out; o++) {
    cn_shape s = cn_model_output_shape_at(m, o);
    ok = (ys[o] = malloc((size_t)cn_shape_numel(&s) * sizeof(float))) != NULL;
  }
  if (ok) cn_model_forward_multi(m, 1, xs, ys);
  for (int i = 0; i < MAX_IO; i++) {
    free((void *)xs[i]);
    free(ys[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *json = malloc(size + 1);
  if (!json) return 0;
  memcpy(json, data, size);
  json[size] = 0;
  cn_graph *g = NULL;
  char *name = NULL;
  cn_status st = cn_keras_build_graph("fuzz.json", json, &g, &name);
  free(json);
  if (st == CN_OK && small_graph(g)) {
    cn_input_spec spec = cn_input_spec_default(&g->nodes[g->inputs[0]].shape, CN_PRE_RAW);
    cn_model *m = NULL;
    /* the wrap frees the graph when it fails */
    if (cn_model_wrap_graph(g, name, &spec, &m) == CN_OK && cn_model_init_weights(m, size) == CN_OK)
      run_once(m);
    cn_model_free(m);
  } else {
    cn_graph_free(g);
  }
  free(name);
  return 0;
}
