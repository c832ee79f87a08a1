/* Internal pieces of cn_image_transform: the per-pixel changes and the Gaussian blur. */
#ifndef CN_IMAGE_TRANSFORM_INTERNAL_H
#define CN_IMAGE_TRANSFORM_INTERNAL_H

#include "convnet/image.h"

/* Largest crop output side and blur sigma: they bound the memory and time a transform takes. */
enum { CN_TRANSFORM_MAX_SIDE = 16384, CN_TRANSFORM_MAX_SIGMA = 25 };

/* Channel shift, flips, brightness, contrast and hue of t, in place, in that order. */
void cn_transform_pixels(cn_image *image, const cn_transform *t);
/* Gaussian blur with standard deviation sigma > 0 into a new image: a kernel of radius
 * ceil(3 sigma), borders mirrored without repeating the edge pixel (OpenCV's BORDER_REFLECT_101).
 */
cn_status cn_image_blur(const cn_image *src, double sigma, cn_image *dst);

#endif
