/* convnet's side of tests/oracle/test_style_torch.py: style transfer on EfficientNet-Lite0 with
 * the default layers (cn_synth_default_layers) and weights.
 *
 *   probe_style <weights.pth> <content.png> <style.png> <iterations> <grad.npy> <out.npy>
 *       builds efficientnet_lite0 at the content's size; prints "initial <loss>" (the objective
 *       at the content image), writes its gradient d loss / d input (H x W x 3) to grad.npy, then
 *       runs <iterations> L-BFGS iterations and prints "final <loss> <iterations> <evaluations>"
 *       and writes the result image's input tensor (H x W x 3, preprocessed) to out.npy. */
#include <stdio.h>
#include <stdlib.h>

#include "convnet/convnet.h"

static int fail(void) {
  fprintf(stderr, "probe_style: %s\n", cn_last_error());
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: probe_style W.pth CONTENT STYLE ITERS GRAD.npy OUT.npy\n");
    return 2;
  }
  cn_image content = {0}, style = {0}, out = {0};
  if (cn_image_load(argv[2], &content) != CN_OK || cn_image_load(argv[3], &style) != CN_OK)
    return fail();
  cn_zoo_options zo = {
      .name = "efficientnet_lite0", .height = content.height, .width = content.width};
  cn_model *model;
  if (cn_zoo_build(&zo, &model) != CN_OK || cn_model_load_weights(model, argv[1]) != CN_OK)
    return fail();
  cn_style_options o = cn_style_options_default();
  if (cn_synth_default_layers(model, &o.content_layer, o.style_layers, &o.n_style_layers) != CN_OK)
    return fail();
  o.iterations = atoi(argv[4]);
  size_t n = (size_t)content.width * content.height * 3;
  float *grad = malloc(n * sizeof *grad);
  double loss;
  if (!grad || cn_style_objective(model, &content, &style, &o, NULL, &loss, grad) != CN_OK)
    return fail();
  printf("initial %.9g\n", loss);
  cn_shape shape = {3, {content.height, content.width, 3}};
  if (cn_npy_write(argv[5], &shape, grad) != CN_OK) return fail();
  cn_synth_result r;
  if (cn_style_transfer(model, &content, &style, &o, &out, &r) != CN_OK) return fail();
  printf("final %.9g %d %d\n", r.loss, r.iterations, r.evaluations);
  float *x = malloc(n * sizeof *x);
  for (size_t i = 0; x && i < n; i++) x[i] = out.pixels[i] / 127.5f - 1.0f;
  if (!x || cn_npy_write(argv[6], &shape, x) != CN_OK) return fail();
  free(x);
  free(grad);
  cn_image_free(&content);
  cn_image_free(&style);
  cn_image_free(&out);
  cn_model_free(model);
  return 0;
}
