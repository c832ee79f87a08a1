/* libFuzzer target for the PyTorch checkpoint reader: each input goes to cn_pt_read_memory as it
 * is (zip when it starts with "PK\3\4", else the legacy pickle stream), and a state that reads
 * is then loaded into a small Conv2D + BatchNormalization + DepthwiseConv2D + Dense model.
 * Build: cmake -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF; run with a seed corpus of
 * small .pth files (torch.save of a few tensors, both formats), e.g.
 * ./fuzz_pytorch -max_len=65536 -max_total_time=60 corpus/ */
#include <stdint.h>
#include <stdlib.h>

#include "core/graph.h"
#include "core/model.h"
#include "io/pytorch_internal.h"
#include "ops/ops.h"

static cn_model *small_model(void) {
  cn_graph *g = cn_graph_new();
  int x = -1;
  cn_input_attrs in = {.shape = {3, {4, 4, 2}}};
  cn_graph_add(g, &cn_op_input, "input", NULL, 0, &in, &x);
  cn_conv2d_attrs c = {3, 3, 3, 1, 1, 1, 1, 1, 1, CN_PAD_SAME, cn_act_linear()};
  cn_graph_add(g, &cn_op_conv2d, "c", &x, 1, &c, &x);
  cn_batchnorm_attrs bn = {1e-3f, 1, 1, -1};
  cn_graph_add(g, &cn_op_batchnorm, "bn", &x, 1, &bn, &x);
  cn_depthwise_attrs d = {3, 3, 1, 1, 1, 1, 1, 0, CN_PAD_SAME, cn_act_linear()};
  cn_graph_add(g, &cn_op_depthwise, "d", &x, 1, &d, &x);
  cn_global_pool_attrs p = {0};
  cn_graph_add(g, &cn_op_global_avgpool, "pool", &x, 1, &p, &x);
  cn_dense_attrs fc = {2, 1, cn_act_linear()};
  cn_graph_add(g, &cn_op_dense, "fc", &x, 1, &fc, &x);
  cn_model *m = NULL;
  cn_input_spec spec = cn_input_spec_default(&in.shape, CN_PRE_RAW);
  if (cn_model_wrap(g, "small", &spec, &m) != CN_OK) abort();
  return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cn_model *model;
  if (!model) model = small_model();
  cn_pt_state state;
  if (cn_pt_read_memory(data, size, "fuzz.pth", &state) != CN_OK) return 0;
  cn_pytorch_load_state(model, &state, "fuzz.pth");
  cn_pt_state_free(&state);
  return 0;
}
