/* Peak memory of a VGG16 forward pass at 224x224: beyond the 138M parameters (553 MB) and the
 * weights derived from them (Winograd-transformed kernels, kept between passes: at most half the
 * parameters' size), the activations, scratch and everything else must stay below 150 MB, which
 * holds only if the memory plan reuses buffers and convolution scratch is tiled. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "convnet/model.h"
#include "model/model.h"
#include "ops/ops.h"
#include "testlib.h"

#define LIMIT_MB 150.0

static double peak_rss_mb(void) {
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return -1;
  return usage.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

int main(void) {
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(&(cn_zoo_options){.name = "vgg16"}, &m));
  if (!m) return cn_test_finish();
  cn_shape in_shape = cn_model_input_shape(m), out_shape = cn_model_output_shape(m);
  size_t n_in = (size_t)cn_shape_numel(&in_shape), n_out = (size_t)cn_shape_numel(&out_shape);
  float *input = calloc(n_in, sizeof *input), *output = calloc(n_out, sizeof *output);
  CHECK(input && output);
  if (input && output) {
    for (size_t i = 0; i < n_in; i++) input[i] = (float)(i % 255) - 120.0f;
    CHECK_OK(cn_model_forward(m, 1, input, output));
    /* zero weights: every logit is 0, so the softmax is uniform */
    CHECK_NEAR(output[0], 1.0 / 1000, 1e-6);
    CHECK_NEAR(output[999], 1.0 / 1000, 1e-6);
  }
  double param_mb = m->graph->n_param_floats * sizeof(float) / (1024.0 * 1024.0);
  const cn_graph *ran = m->inference ? m->inference : m->graph;
  double derived_mb = (double)cn_derived_bytes(ran) / (1024.0 * 1024.0);
  double peak = peak_rss_mb();
  double beyond = peak - param_mb - derived_mb;
  printf("VGG16 224x224 forward: peak RSS %.1f MB, parameters %.1f MB, derived weights %.1f MB, "
         "beyond both %.1f MB (limit %.0f MB)\n",
         peak, param_mb, derived_mb, beyond, LIMIT_MB);
  CHECK(peak > 0);
  CHECK(derived_mb <= param_mb / 2);
  CHECK(beyond < LIMIT_MB);
  free(input);
  free(output);
  cn_model_free(m);
  return cn_test_finish();
}
