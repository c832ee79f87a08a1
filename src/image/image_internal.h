/* src/image: decoding, resizing, preprocessing and augmentation of images. Calls core/ and the
 * codec libraries.
 *
 * Internal pieces of the image module: one decoder per file format, pixel allocation with the
 * size limit, and EXIF orientation. Every decoder reads untrusted bytes from memory. */
#ifndef CN_IMAGE_INTERNAL_H
#define CN_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "convnet/image.h"

/* Checks width x height against CN_IMAGE_MAX_PIXELS (CN_ERR_LIMIT) and zero sizes (CN_ERR_FORMAT),
 * then allocates out->pixels. name is for messages. */
cn_status cn_image_alloc(cn_image *out, int64_t width, int64_t height, const char *name);
/* Only the header check of cn_image_alloc, for decoders that must refuse before other work. */
cn_status cn_image_check_size(int64_t width, int64_t height, const char *name);

cn_status cn_decode_jpeg(const uint8_t *data, size_t size, const char *name, cn_decoder decoder,
                         cn_image *out);
cn_status cn_decode_png(const uint8_t *data, size_t size, const char *name, cn_decoder decoder,
                        cn_image *out);
cn_status cn_decode_bmp(const uint8_t *data, size_t size, const char *name, cn_image *out);
cn_status cn_decode_pnm(const uint8_t *data, size_t size, const char *name, cn_image *out);

/* Applies EXIF orientation 1..8 as PIL's ImageOps.exif_transpose does (other values: no-op).
 * Replaces image->pixels on success. */
cn_status cn_image_orient(cn_image *image, int orientation);

/* TF_BILINEAR's float32 result (HWC, width x height x 3, unrounded) into out; the caller checked
 * the sizes. */
cn_status cn_image_resize_tf(const cn_image *src, int width, int height, float *out);

/* The offset of a centred part of a side (torchvision's rounding). */
int cn_image_center_offset(int full, int part);
/* Cuts the centred width x height block (torchvision's offsets) into a new image. */
cn_status cn_image_crop_center_to(const cn_image *src, int width, int height, cn_image *dst);

#endif
