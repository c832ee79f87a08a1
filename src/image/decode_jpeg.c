/* JPEG through libjpeg-turbo: errors longjmp back here and become CN_ERR_FORMAT, warnings are
 * silent except a premature end of file (PIL refuses truncated files too) and corrupt data.
 * Colour handling follows PIL: grey is replicated, CMYK/YCCK is read as Adobe-inverted CMYK and
 * converted with PIL's formula; the EXIF orientation is applied afterwards. CN_DECODE_TF decodes
 * as tf.io.decode_image does: libjpeg's fast integer DCT (TensorFlow's default dct_method) and
 * no EXIF orientation. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <libexif/exif-data.h>

#include "core/error.h"
#include "image/image_internal.h"

/* Bounds libjpeg's own buffers (progressive coefficient arrays) and the work of hostile files. */
#define JPEG_MAX_MEMORY ((long)1 << 30)
#define JPEG_MAX_SCANS 1000

typedef struct jpeg_trap {
  struct jpeg_error_mgr mgr;
  struct jpeg_progress_mgr progress;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} jpeg_trap;

static void trap_error_exit(j_common_ptr cinfo) {
  jpeg_trap *trap = (jpeg_trap *)cinfo->err;
  cinfo->err->format_message(cinfo, trap->message);
  longjmp(trap->jump, 1);
}

/* Warnings (level -1) are ignored like PIL does, except running out of data and corrupt
 * entropy-coded data (a bad Huffman code, a marker inside the data): libjpeg would go on and
 * fill the rest of the image with grey, so that a few hundred damaged bytes declaring a huge
 * image cost seconds of decoding and gigabytes (a fuzzer finding). PIL shows such files with the
 * grey; they are refused as damaged, as TensorFlow's decoder does. */
static void trap_emit_message(j_common_ptr cinfo, int level) {
  if (level != -1) return;
  int code = cinfo->err->msg_code;
  if (code != JWRN_JPEG_EOF && code != JWRN_HUFF_BAD_CODE && code != JWRN_HIT_MARKER) return;
  jpeg_trap *trap = (jpeg_trap *)cinfo->err;
  snprintf(trap->message, sizeof trap->message, "%s",
           code == JWRN_JPEG_EOF ? "truncated file" : "corrupt image data");
  longjmp(trap->jump, 1);
}

static void trap_output_message(j_common_ptr cinfo) {}

static void limit_scans(j_common_ptr cinfo) {
  if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
    jpeg_trap *trap = (jpeg_trap *)cinfo->err;
    snprintf(trap->message, sizeof trap->message, "more than %d progressive scans", JPEG_MAX_SCANS);
    longjmp(trap->jump, 1);
  }
}

/* PIL reads 4-component JPEGs as inverted CMYK ("CMYK;I") and converts with
 * nk = 255 - k; out = nk - c * nk / 255 (rounded as its MULDIV255 does). */
static uint8_t cmyk_channel(uint8_t inverted_c, uint8_t inverted_k) {
  int c = 255 - inverted_c, nk = inverted_k;
  int t = c * nk + 128;
  int v = nk - (((t >> 8) + t) >> 8);
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void row_to_rgb(const uint8_t *row, int components, int width, uint8_t *rgb) {
  for (int x = 0; x < width; x++, rgb += 3) {
    const uint8_t *p = row + (size_t)x * components;
    if (components == 1) {
      rgb[0] = rgb[1] = rgb[2] = p[0];
    } else if (components == 3) {
      memcpy(rgb, p, 3);
    } else {
      for (int c = 0; c < 3; c++) rgb[c] = cmyk_channel(p[c], p[3]);
    }
  }
}

/* EXIF orientation (1..8) from the saved APP1 markers, or 0 when absent or unreadable. */
static int exif_orientation(j_decompress_ptr cinfo) {
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
    if (m->marker != JPEG_APP0 + 1 || m->data_length < 6 || memcmp(m->data, "Exif\0\0", 6) != 0)
      continue;
    ExifData *exif = exif_data_new_from_data(m->data, m->data_length);
    if (!exif) return 0;
    int orientation = 0;
    ExifEntry *entry = exif_data_get_entry(exif, EXIF_TAG_ORIENTATION);
    if (entry && entry->format == EXIF_FORMAT_SHORT && entry->components >= 1 && entry->data &&
        entry->size >= 2)
      orientation = exif_get_short(entry->data, exif_data_get_byte_order(exif));
    exif_data_unref(exif);
    return orientation;
  }
  return 0;
}

static void choose_output_space(j_decompress_ptr cinfo) {
  if (cinfo->jpeg_color_space == JCS_GRAYSCALE)
    cinfo->out_color_space = JCS_GRAYSCALE;
  else if (cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK)
    cinfo->out_color_space = JCS_CMYK;
  else
    cinfo->out_color_space = JCS_RGB;
}

cn_status cn_decode_jpeg(const uint8_t *data, size_t size, const char *name, cn_decoder decoder,
                         cn_image *out) {
  struct jpeg_decompress_struct cinfo;
  jpeg_trap trap;
  uint8_t *volatile pixels = NULL;
  uint8_t *volatile row = NULL;
  cinfo.err = jpeg_std_error(&trap.mgr);
  trap.mgr.error_exit = trap_error_exit;
  trap.mgr.emit_message = trap_emit_message;
  trap.mgr.output_message = trap_output_message;
  if (setjmp(trap.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(row);
    return cn_fail(CN_ERR_FORMAT, "%s: JPEG: %s", name, trap.message);
  }
  jpeg_create_decompress(&cinfo);
  cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
  trap.progress.progress_monitor = limit_scans;
  cinfo.progress = &trap.progress;
  jpeg_mem_src(&cinfo, data, (unsigned long)size);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&cinfo, TRUE);
  cn_status st = cn_image_check_size(cinfo.image_width, cinfo.image_height, name);
  if (st != CN_OK) {
    jpeg_destroy_decompress(&cinfo);
    return st;
  }
  /* The saved markers live in the image pool, which jpeg_finish_decompress frees. */
  int orientation = decoder == CN_DECODE_TF ? 0 : exif_orientation(&cinfo);
  choose_output_space(&cinfo);
  if (decoder == CN_DECODE_TF) cinfo.dct_method = JDCT_IFAST;
  jpeg_start_decompress(&cinfo);
  int width = (int)cinfo.output_width, components = cinfo.output_components;
  if (components != 1 && components != 3 && components != 4) {
    snprintf(trap.message, sizeof trap.message, "%d colour components", components);
    longjmp(trap.jump, 1);
  }
  cn_image img = {0};
  st = cn_image_alloc(&img, cinfo.output_width, cinfo.output_height, name);
  pixels = img.pixels;
  row = malloc((size_t)width * components);
  if (st != CN_OK || !row) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(row);
    return st != CN_OK ? st : cn_fail(CN_ERR_NOMEM, "%s: no memory for a row", name);
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[1] = {row};
    size_t y = cinfo.output_scanline;
    if (jpeg_read_scanlines(&cinfo, rows, 1) != 1) break;
    row_to_rgb(row, components, width, pixels + y * (size_t)width * 3);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(row);
  *out = img;
  st = cn_image_orient(out, orientation);
  if (st != CN_OK) cn_image_free(out);
  return st;
}
