/* convnet: decoding photos and turning them into model input. */
#ifndef CONVNET_IMAGE_H
#define CONVNET_IMAGE_H

#include "convnet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Interleaved 8-bit RGB pixels, rows top to bottom, no padding between rows. */
typedef struct cn_image {
  int width, height;
  uint8_t *pixels; /* width * height * 3 bytes, owned; release with cn_image_free */
} cn_image;

/* Largest image accepted, in pixels, checked from the header before any pixel buffer exists. */
#define CN_IMAGE_MAX_PIXELS ((int64_t)1 << 28)

/* Decodes a JPEG, PNG, BMP or PPM/PGM file by its content (not its name) to RGB. Greyscale,
 * palette, 16-bit and alpha are converted (alpha is dropped, as PIL's convert("RGB") does); EXIF
 * orientation of JPEGs is applied. */
CN_API cn_status cn_image_load(const char *path, cn_image *out);
/* The same from memory; name is used in error messages only. */
CN_API cn_status cn_image_decode(const void *data, size_t size, const char *name, cn_image *out);
CN_API void cn_image_free(cn_image *image);
/* Writes an image as an 8-bit RGB PNG, atomically (temporary file, fsync, rename). */
CN_API cn_status cn_image_save_png(const cn_image *image, const char *path);

typedef enum cn_resize {
  CN_RESIZE_NEAREST,      /* identical to PIL Image.NEAREST (Keras load_img default) */
  CN_RESIZE_BILINEAR,     /* cv2.resize INTER_LINEAR (no antialiasing) */
  CN_RESIZE_AREA,         /* cv2.resize INTER_AREA */
  CN_RESIZE_PIL_BILINEAR, /* PIL Image.BILINEAR (antialiased when shrinking) */
  CN_RESIZE_COUNT
} cn_resize;

typedef enum cn_preprocess {
  CN_PRE_RAW,   /* pixel values 0..255 as they are */
  CN_PRE_CAFFE, /* RGB->BGR, minus 103.939, 116.779, 123.68 (B, G, R) */
  CN_PRE_TF,    /* x / 127.5 - 1 */
  CN_PRE_TORCH, /* x / 255, minus ImageNet mean, divided by std */
  CN_PRE_UNIT,  /* x / 255 */
  CN_PRE_COUNT
} cn_preprocess;

/* Names used on the command line: "nearest", "bilinear", "area", "pil-bilinear";
 * "raw", "caffe", "tf", "torch", "unit". Parse functions return CN_ERR_ARG for unknown names. */
CN_API const char *cn_resize_name(cn_resize resize);
CN_API cn_status cn_resize_parse(const char *name, cn_resize *out);
CN_API const char *cn_preprocess_name(cn_preprocess mode);
CN_API cn_status cn_preprocess_parse(const char *name, cn_preprocess *out);

/* Resizes src to width x height into a new image. */
CN_API cn_status cn_image_resize(const cn_image *src, int width, int height, cn_resize policy,
                                 cn_image *dst);
/* Keeps the central fraction (0 < fraction <= 1) of each side, rounding as
 * torchvision's CenterCrop does. */
CN_API cn_status cn_image_center_crop(const cn_image *src, double fraction, cn_image *dst);

/* How a model wants its input image. crop == 0 or 1 means no crop; with a crop, the image is
 * resized so that the cropped centre is height x width. channels_first: the model takes CHW
 * (ONNX / PyTorch NCHW) instead of HWC. */
typedef struct cn_input_spec {
  int height, width, channels;
  cn_resize resize;
  double crop;
  cn_preprocess preprocess;
  int channels_first;
} cn_input_spec;

/* Writes height*width*channels floats for the image following spec: HWC, or CHW with
 * spec->channels_first. channels == 1 averages to grey with ITU-R 601 luma weights (PIL
 * convert("L")). */
CN_API cn_status cn_image_prepare(const cn_image *image, const cn_input_spec *spec, float *out);
/* Applies a preprocessing mode in place to n RGB pixels (3n floats, values 0..255). */
CN_API void cn_preprocess_apply(cn_preprocess mode, float *pixels, size_t n);

/* ---- augmentation (Keras ImageDataGenerator-style) ---------------------------------------- */

/* Random changes for training. All zero means none. Ranges mean what Keras' ImageDataGenerator
 * means by them; geometry is one affine warp of the decoded image (before the model's resize)
 * with bilinear sampling and fill_mode "nearest" (edge pixels extend outwards). */
typedef struct cn_augment {
  int horizontal_flip;       /* mirror left-right with probability 1/2 */
  float rotation_range;      /* degrees: angle uniform in [-r, r] */
  float width_shift_range;   /* fraction of the width: shift uniform in [-s, s] * width */
  float height_shift_range;  /* fraction of the height */
  float zoom_range;          /* scale of each axis uniform in [1 - z, 1 + z] (> 1 zooms out) */
  float brightness_range[2]; /* factor uniform in [lo, hi] on every channel; {0, 0}: off */
} cn_augment;

/* CN_ERR_ARG for negative or out-of-range values (rotation > 360, shifts or zoom >= 1, a
 * brightness range with lo > hi or lo < 0); CN_OK for an all-zero struct. */
CN_API cn_status cn_augment_check(const cn_augment *a);
/* 1 when a changes anything. */
CN_API int cn_augment_active(const cn_augment *a);
/* Writes a randomly changed copy of src (same size) into dst; every random draw comes from
 * seed, so one seed always gives the same image. */
CN_API cn_status cn_image_augment(const cn_image *src, const cn_augment *a, uint64_t seed,
                                  cn_image *dst);

#ifdef __cplusplus
}
#endif
#endif
