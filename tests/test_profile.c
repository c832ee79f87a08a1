/* cn_model_profile and cn_cpu_detect: every layer that runs is timed, in execution order, with
 * its operation count (VGG16's first convolution: 2 x 224 x 224 x 64 x 3 x 3 x 3 operations;
 * MobileNet 0.25's total at 224: twice its 41 million multiply-adds, as published), and the CPU
 * reads as something with a clock and a peak. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/convnet.h"
#include "testlib.h"

static void test_mobilenet_counts(void) {
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(&(cn_zoo_options){.name = "mobilenet", .alpha = 0.25f}, &m));
  if (!m) return;
  float *x = calloc(224 * 224 * 3, sizeof *x);
  const float *in[1] = {x};
  cn_layer_profile *layers = NULL;
  size_t n = 0;
  CHECK_OK(cn_model_profile(m, 1, in, 2, &layers, &n));
  CHECK(n > 12); /* 27 convolutions, each depthwise one folded into the 1x1 after it */
  double gflop = 0, ms = 0;
  int first_conv = -1;
  for (size_t i = 0; i < n; i++) {
    gflop += layers[i].gflop;
    ms += layers[i].ms;
    CHECK(layers[i].ms >= 0);
    if (first_conv < 0 && strcmp(layers[i].type, "Conv2D") == 0) first_conv = (int)i;
  }
  CHECK(ms > 0);
  /* conv1: 3x3, 3 -> 8 channels, stride 2 to 112x112 */
  CHECK(first_conv >= 0);
  if (first_conv >= 0) CHECK_NEAR(layers[first_conv].gflop, 2.0 * 112 * 112 * 8 * 27 / 1e9, 1e-9);
  /* 41 M multiply-adds (Howard et al., Table 6) plus the pooling, softmax and elementwise layers */
  CHECK(gflop > 0.082 && gflop < 0.090);
  free(layers);
  CHECK(cn_model_profile(m, 0, in, 1, &layers, &n) == CN_ERR_ARG);
  free(x);
  cn_model_free(m);
}

/* Keras's ResNet50 (v1, strides in the first 1x1 convolution of a stage) at 224: 3.8 billion
 * multiply-adds (He et al., Table 1), the convolutions whose residual sum is folded into them
 * (Conv2D+Add) counted with the others. */
static void test_resnet_counts(void) {
  cn_model *m = NULL;
  CHECK_OK(cn_zoo_build(&(cn_zoo_options){.name = "resnet50"}, &m));
  if (!m) return;
  float *x = calloc(224 * 224 * 3, sizeof *x);
  const float *in[1] = {x};
  cn_layer_profile *layers = NULL;
  size_t n = 0;
  double gflop = 0, fused = 0;
  CHECK_OK(cn_model_profile(m, 1, in, 1, &layers, &n));
  for (size_t i = 0; i < n; i++) {
    gflop += layers[i].gflop;
    if (strcmp(layers[i].type, "Conv2D+Add") == 0) fused += layers[i].gflop;
  }
  CHECK(fused > 1.5); /* 16 of them, 0.1 GFLOP each at least */
  CHECK(gflop > 7.6 && gflop < 7.8);
  printf("resnet50 at 224: %.3f GFLOP, %.3f in Conv2D+Add\n", gflop, fused);
  free(layers);
  free(x);
  cn_model_free(m);
}

static void test_cpu(void) {
  cn_cpu_info cpu;
  cn_cpu_detect(&cpu);
  CHECK(cpu.cores >= 1);
  CHECK(cpu.name[0] != 0);
  CHECK(cpu.flops_per_cycle >= 8);
  if (cpu.ghz > 0) CHECK(cn_cpu_peak_gflops(&cpu, 2) == 2 * cpu.flops_per_cycle * cpu.ghz);
  setenv("CONVNET_PEAK_GFLOPS", "100", 1);
  CHECK(cn_cpu_peak_gflops(&cpu, 3) == 300);
  unsetenv("CONVNET_PEAK_GFLOPS");
}

int main(void) {
  test_mobilenet_counts();
  test_resnet_counts();
  test_cpu();
  return cn_test_finish();
}
