/* GaussianSample: z = mean + exp(log_var / 2) * eps. The noise eps of element i is a pure
 * function of (attrs seed, the run's seed, i), so backward draws it again instead of storing it,
 * and any thread count gives the same bits. */
#include <math.h>

#include "core/error.h"
#include "core/rng.h"
#include "ops/ops_math.h"

#define SAMPLE_STREAM 0x6761757373ULL

static cn_status sample_infer(cn_graph *g, cn_node *node) {
  const cn_shape *m = &g->nodes[node->inputs[0]].shape, *v = &g->nodes[node->inputs[1]].shape;
  if (!cn_shape_equal(m, v)) {
    char ms[96], vs[96];
    return cn_fail(CN_ERR_SHAPE, "%s: the mean %s and the log-variance %s differ in shape",
                   node->name, cn_shape_format(m, ms, sizeof ms),
                   cn_shape_format(v, vs, sizeof vs));
  }
  node->shape = *m;
  return CN_OK;
}

static uint64_t noise_key(const cn_node *node, const cn_exec *ex) {
  const cn_gaussian_sample_attrs *a = node->attrs;
  return cn_rng_key(a->seed, SAMPLE_STREAM, ex->seed);
}

static void sample_forward(cn_node *node, const cn_tensor *in, cn_tensor *out, const cn_exec *ex) {
  int64_t n = cn_shape_numel(&out->shape);
  uint64_t key = noise_key(node, ex);
  const float *mean = in[0].data, *log_var = in[1].data;
  uint64_t first = cn_exec_first_element(ex, n);
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++)
    out->data[i] = mean[i] + expf(0.5f * log_var[i]) * cn_rng_normal_at(key, first + (uint64_t)i);
}

/* d z / d mean = 1; d z / d log_var = exp(log_var / 2) * eps / 2. */
static void sample_backward(cn_node *node, const cn_tensor *in, const cn_tensor *out,
                            const cn_tensor *dout, const cn_tensor *din, float *const *dparams,
                            const cn_exec *ex) {
  (void)out, (void)dparams;
  int64_t n = cn_shape_numel(&dout->shape);
  uint64_t key = noise_key(node, ex);
  const float *dz = dout->data, *log_var = in[1].data;
  float *dmean = din[0].data, *dlog_var = din[1].data;
  uint64_t first = cn_exec_first_element(ex, n);
#pragma omp parallel for num_threads(ex->threads) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) {
    if (dmean) dmean[i] += dz[i];
    if (dlog_var)
      dlog_var[i] +=
          dz[i] * 0.5f * expf(0.5f * log_var[i]) * cn_rng_normal_at(key, first + (uint64_t)i);
  }
}

const cn_op cn_op_gaussian_sample = {
    .type = "GaussianSample",
    .attrs_size = sizeof(cn_gaussian_sample_attrs),
    .min_inputs = 2,
    .max_inputs = 2,
    .infer = sample_infer,
    .forward = sample_forward,
    .backward = sample_backward,
};
