/* Writing RGB images as PNG through libpng, atomically (a reader sees the old file or the whole
 * new one). */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "convnet/image.h"
#include "core/atomic_file.h"
#include "core/error.h"

typedef struct png_sink {
  cn_atomic_file file;
  cn_status status;
  char message[256];
} png_sink;

static void sink_write(png_structp png, png_bytep data, size_t n) {
  png_sink *sink = png_get_io_ptr(png);
  if (sink->status == CN_OK) sink->status = cn_atomic_write(&sink->file, data, n);
  if (sink->status != CN_OK) png_error(png, "write failed");
}

static void sink_flush(png_structp png) {}

static void trap_error(png_structp png, png_const_charp message) {
  png_sink *sink = png_get_error_ptr(png);
  snprintf(sink->message, sizeof sink->message, "%s", message);
  png_longjmp(png, 1);
}

static void ignore_warning(png_structp png, png_const_charp message) {}

/* Encodes the rows; returns 0 when libpng failed (message in sink). */
static int encode(png_structp png, png_infop info, const cn_image *img) {
  if (setjmp(png_jmpbuf(png))) return 0;
  png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img->height; y++)
    png_write_row(png, img->pixels + (size_t)y * (size_t)img->width * 3);
  png_write_end(png, info);
  return 1;
}

cn_status cn_image_save_png(const cn_image *img, const char *path) {
  if (!img || !path || !img->pixels || img->width < 1 || img->height < 1)
    return cn_fail(CN_ERR_ARG, "cn_image_save_png: no image or path");
  if ((int64_t)img->width * img->height > CN_IMAGE_MAX_PIXELS)
    return cn_fail(CN_ERR_LIMIT, "%s: %d x %d pixels is too large", path, img->width, img->height);
  png_sink sink = {.status = CN_OK};
  cn_status st = cn_atomic_open(&sink.file, path);
  if (st != CN_OK) return st;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, trap_error, ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    cn_atomic_abort(&sink.file);
    return cn_fail(CN_ERR_NOMEM, "%s: out of memory for the PNG encoder", path);
  }
  png_set_write_fn(png, &sink, sink_write, sink_flush);
  int ok = encode(png, info, img);
  png_destroy_write_struct(&png, &info);
  if (!ok) {
    cn_atomic_abort(&sink.file);
    return sink.status != CN_OK
               ? sink.status
               : cn_fail(CN_ERR_IO, "%s: PNG encoding failed: %s", path, sink.message);
  }
  return cn_atomic_commit(&sink.file);
}
