/* libFuzzer target for the PyTorch checkpoint reader: each input goes to cn_pt_read_memory as it
 * is (zip when it starts with "PK\3\4", else the legacy pickle stream), and a state that reads
 * is then loaded into a small Conv2D + BatchNormalization + DepthwiseConv2D + Dense model.
 * Build: cmake -DCN_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCN_NATIVE=OFF; run with a seed corpus of
 * small .pth files (torch.save of a few tensors, both formats), e.g.
 * ./fuzz_pytorch -max_len=65536 -max_total_time=60 corpus/ */
#include <stdint.h>
#include <stdlib.h>

#include "core/graph.h"
#include "model/model.h"
#include "io/pytorch/internal.h"
#include "ops/ops.h"
#include "../tests/pytorch_small_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cn_model *model;
  if (!model) model = pytorch_small_model();
  if (!model) abort();
  cn_pt_state state;
  if (cn_pt_read_memory(data, size, "fuzz.pth", &state) != CN_OK) return 0;
  cn_pytorch_load_state(model, &state, "fuzz.pth");
  cn_pt_state_free(&state);
  return 0;
}
