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

/* Whose decoding to reproduce. PIL: Image.open(...).convert("RGB") after
 * ImageOps.exif_transpose (keras.utils.load_img, torchvision): JPEG with libjpeg's accurate
 * integer DCT, EXIF orientation applied, 16-bit grey clipped to 255. TF: tf.io.decode_image(
 * channels=3), which Keras's image_dataset_from_directory reads with: JPEG with libjpeg's fast
 * integer DCT (JDCT_IFAST, TensorFlow's default), EXIF orientation ignored, 16-bit grey keeps
 * its high byte. */
typedef enum cn_decoder { CN_DECODE_PIL, CN_DECODE_TF, CN_DECODE_COUNT } cn_decoder;

/* Decodes a JPEG, PNG, BMP or PPM/PGM file by its content (not its name) to RGB. Greyscale,
 * palette, 16-bit and alpha are converted (alpha is dropped, as PIL's convert("RGB") does); EXIF
 * orientation of JPEGs is applied. As cn_image_load_as with CN_DECODE_PIL. */
CN_API cn_status cn_image_load(const char *path, cn_image *out);
/* The same from memory; name is used in error messages only. */
CN_API cn_status cn_image_decode(const void *data, size_t size, const char *name, cn_image *out);
/* cn_image_load and cn_image_decode decoding as the given library does. */
CN_API cn_status cn_image_load_as(const char *path, cn_decoder decoder, cn_image *out);
CN_API cn_status cn_image_decode_as(const void *data, size_t size, const char *name,
                                    cn_decoder decoder, cn_image *out);
CN_API void cn_image_free(cn_image *image);
/* Writes an image as an 8-bit RGB PNG, atomically (temporary file, fsync, rename). */
CN_API cn_status cn_image_save_png(const cn_image *image, const char *path);

typedef enum cn_resize {
  CN_RESIZE_NEAREST,      /* identical to PIL Image.NEAREST (Keras load_img default) */
  CN_RESIZE_BILINEAR,     /* cv2.resize INTER_LINEAR (no antialiasing) */
  CN_RESIZE_AREA,         /* cv2.resize INTER_AREA */
  CN_RESIZE_PIL_BILINEAR, /* PIL Image.BILINEAR (antialiased when shrinking) */
  CN_RESIZE_TF_BILINEAR,  /* tf.image.resize bilinear (Keras image_dataset_from_directory): float
                             pixels in cn_image_prepare, rounded to 8 bits in cn_image_resize */
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

/* Names used on the command line: "nearest", "bilinear", "area", "pil-bilinear", "tf-bilinear";
 * "raw", "caffe", "tf", "torch", "unit". Parse functions return CN_ERR_ARG for unknown names. */
CN_API const char *cn_resize_name(cn_resize resize);
CN_API cn_status cn_resize_parse(const char *name, cn_resize *out);
CN_API const char *cn_preprocess_name(cn_preprocess mode);
CN_API cn_status cn_preprocess_parse(const char *name, cn_preprocess *out);
/* "pil", "tf"; CN_ERR_ARG for other names. */
CN_API const char *cn_decoder_name(cn_decoder decoder);
CN_API cn_status cn_decoder_parse(const char *name, cn_decoder *out);

/* Resizes src to width x height into a new image. */
CN_API cn_status cn_image_resize(const cn_image *src, int width, int height, cn_resize policy,
                                 cn_image *dst);
/* Keeps the central fraction (0 < fraction <= 1) of each side, rounding as
 * torchvision's CenterCrop does. */
CN_API cn_status cn_image_center_crop(const cn_image *src, double fraction, cn_image *dst);

/* How a model wants its input image. crop == 0 or 1 means no crop; with a crop, the image is
 * resized so that the cropped centre is height x width. channels_first: the model takes CHW
 * (ONNX / PyTorch NCHW) instead of HWC. decoder: how its files are decoded
 * (cn_image_load_spec). */
typedef struct cn_input_spec {
  int height, width, channels;
  cn_resize resize;
  double crop;
  cn_preprocess preprocess;
  int channels_first;
  cn_decoder decoder;
} cn_input_spec;

/* cn_image_load_as with spec->decoder. */
CN_API cn_status cn_image_load_spec(const char *path, const cn_input_spec *spec, cn_image *out);

/* Writes height*width*channels floats for the image following spec: HWC, or CHW with
 * spec->channels_first. channels == 1 averages to grey with ITU-R 601 luma weights (PIL
 * convert("L")). */
CN_API cn_status cn_image_prepare(const cn_image *image, const cn_input_spec *spec, float *out);
/* Applies a preprocessing mode in place to n RGB pixels (3n floats, values 0..255). */
CN_API void cn_preprocess_apply(cn_preprocess mode, float *pixels, size_t n);
/* The same for n values (0..255) of images of 1 or 3 interleaved channels: 3 as above, 1 (grey)
 * for raw, unit and tf (caffe and torch are per RGB channel: CN_ERR_UNSUPPORTED), the way
 * cn_image_prepare treats a grey model's input. */
CN_API cn_status cn_preprocess_apply_channels(cn_preprocess mode, int channels, float *values,
                                              size_t n);

/* ---- augmentation ------------------------------------------------------------------------- */

/* How pixels outside the source are made, as scipy.ndimage (which Keras' ImageDataGenerator
 * calls) defines them: NEAREST repeats the edge pixel (a a | a b c d | d d); REFLECT mirrors
 * about the pixel edge (b a | a b c d | d c); CONSTANT is cval beyond the outermost pixel
 * centres (k k | a b c d | k k, with no blending across the edge). */
typedef enum cn_fill { CN_FILL_NEAREST, CN_FILL_REFLECT, CN_FILL_CONSTANT, CN_FILL_COUNT } cn_fill;

/* "nearest", "reflect", "constant"; the parse function returns CN_ERR_ARG for other names. */
CN_API const char *cn_fill_name(cn_fill fill);
CN_API cn_status cn_fill_parse(const char *name, cn_fill *out);

/* One fixed change of an image: the parameters that cn_image_augment draws at random. They are
 * applied in this order: crop (and resize), affine warp, channel shift, flips, brightness,
 * contrast, hue, blur. Start from cn_transform_identity(), which changes nothing. The affine
 * parameters mean what Keras' ImageDataGenerator.apply_transform means by the same names (see
 * docs/augmentation.md for the one difference: the centre on non-square images). */
typedef struct cn_transform {
  /* crop: the box x, y, width, height of the source (width or height 0: the whole image), then
   * resized to out_width x out_height with crop_resize when those are set (> 0) */
  int crop_x, crop_y, crop_width, crop_height;
  int out_width, out_height;
  cn_resize crop_resize;
  /* affine warp about the image centre, sampled bilinearly (scipy order 1) */
  double theta;  /* rotation, degrees (counter-clockwise on screen for theta > 0) */
  double tx, ty; /* shift in pixels: output (x, y) shows source (x + tx, y + ty) */
  double shear;  /* shear angle, degrees */
  double zx, zy; /* scale of the sampling grid: > 1 zooms out, < 1 zooms in; 1 unchanged */
  cn_fill fill;
  double cval; /* the value of CN_FILL_CONSTANT, 0..255 */
  /* pixel changes */
  double channel_shift[3]; /* added to R, G, B, clipped to the warped image's min and max */
  int flip_horizontal, flip_vertical;
  double brightness; /* factor on every channel (PIL ImageEnhance.Brightness); 1 unchanged */
  double contrast;   /* (x - mean) * contrast + mean per channel (Keras RandomContrast) */
  double hue;        /* turns of the hue circle, -0.5..0.5 (Keras RandomHue's factor) */
  double blur_sigma; /* Gaussian blur, pixels; 0: none */
} cn_transform;

/* The transform that changes nothing (zoom, brightness and contrast 1, the rest 0). */
CN_API cn_transform cn_transform_identity(void);
/* CN_ERR_ARG for a crop box outside the image, non-finite or out-of-range values. */
CN_API cn_status cn_transform_check(const cn_transform *t, int width, int height);
/* Writes src changed by t into dst (a new image: the crop's size, else src's). */
CN_API cn_status cn_image_transform(const cn_image *src, const cn_transform *t, cn_image *dst);

/* Random changes for training; all zero means none. Ranges mean what Keras' ImageDataGenerator
 * means by them, unless said otherwise. Fields are only ever appended (zero-initialise it). */
typedef struct cn_augment {
  int horizontal_flip;         /* mirror left-right with probability 1/2 */
  float rotation_range;        /* degrees: angle uniform in [-r, r] */
  float width_shift_range;     /* fraction of the width: shift uniform in [-s, s] * width */
  float height_shift_range;    /* fraction of the height */
  float zoom_range;            /* scale of each axis, drawn independently, in [1 - z, 1 + z] */
  float brightness_range[2];   /* factor uniform in [lo, hi] on every channel; {0, 0}: off */
  int vertical_flip;           /* mirror top-bottom with probability 1/2 */
  float shear_range;           /* degrees: shear angle uniform in [-s, s] */
  float channel_shift_range;   /* grey levels: one shift for all three channels (Keras) */
  float tint_range;            /* grey levels: a shift drawn for each channel (a colour cast) */
  float hue_range;             /* turns, 0..0.5: hue rotated by uniform [-h, h] */
  float contrast_range;        /* 0..1: contrast factor uniform in [1 - c, 1 + c] */
  float blur_sigma[2];         /* Gaussian blur sigma uniform in [lo, hi] pixels; {0, 0}: off */
  int crop_width, crop_height; /* fixed-size random crop (Keras RandomCrop); 0: none */
  float crop_scale[2];         /* random-resized crop (torchvision RandomResizedCrop): area fraction
                                * range; {0, 0}: off. Output: crop_width x crop_height, else the box */
  float crop_ratio[2];         /* its width/height ratio range; {0, 0}: {3/4, 4/3} */
  cn_fill fill_mode;           /* outside the source after the warp (default nearest) */
  float cval;                  /* grey level of CN_FILL_CONSTANT */
} cn_augment;

/* CN_ERR_ARG for negative or out-of-range values (rotation > 360, shifts or zoom >= 1, a
 * range with lo > hi, ...), naming the option; CN_OK for an all-zero struct. */
CN_API cn_status cn_augment_check(const cn_augment *a);
/* 1 when a changes anything. */
CN_API int cn_augment_active(const cn_augment *a);
/* The transform that seed draws for a width x height image: a pure function of (a, size,
 * seed), so results do not depend on threads or call order. */
CN_API cn_status cn_augment_draw(const cn_augment *a, int width, int height, uint64_t seed,
                                 cn_transform *out);
/* cn_augment_draw then cn_image_transform: a randomly changed copy of src in dst (the crop's
 * size when cropping, else src's). */
CN_API cn_status cn_image_augment(const cn_image *src, const cn_augment *a, uint64_t seed,
                                  cn_image *dst);

#ifdef __cplusplus
}
#endif
#endif
