/* The official keras.applications weight files: where they live and their published md5. */
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

#endif
