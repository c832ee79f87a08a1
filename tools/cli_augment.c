/* The augmentation flags, one parser for every command that takes them (train, augment). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char cli_augment_help[] =
    "augmentation (each image of each epoch changed at random; turns the feature cache off):\n"
    "  --flip, --vflip        mirror left-right / top-bottom with probability 1/2\n"
    "  --rotation DEG         rotate by up to DEG degrees either way\n"
    "  --shift F              shift by up to F of the width and height (--width-shift F,\n"
    "                         --height-shift F: one axis)\n"
    "  --zoom F               scale each axis by 1-F..1+F (> 1 zooms out)\n"
    "  --shear DEG            shear by up to DEG degrees either way\n"
    "  --fill MODE            outside the image: nearest (default), reflect, constant\n"
    "  --cval V               the grey level of --fill constant (0)\n"
    "  --brightness LO,HI     multiply by a factor in LO..HI\n"
    "  --contrast F           contrast factor 1-F..1+F about each channel's mean\n"
    "  --channel-shift V      add up to V grey levels either way, the same to R, G, B\n"
    "  --tint V               add up to V grey levels either way, drawn for each channel\n"
    "  --hue F                turn the hue by up to F turns either way (0..0.5)\n"
    "  --blur LO,HI           Gaussian blur with sigma in LO..HI pixels\n"
    "  --crop WxH             a random W x H crop (Keras RandomCrop)\n"
    "  --crop-scale LO,HI     a random-resized crop of LO..HI of the area, resized to --crop's\n"
    "                         size if given (torchvision RandomResizedCrop)\n"
    "  --crop-ratio LO,HI     its width/height ratio range (default 0.75,1.333)\n"
    "  A single value gives both ends of a LO,HI range. See docs/augmentation.md.\n";

/* "A,B" or "A" (both ends A) into r, each in [min, max] and A <= B. */
static int parse_pair(const char *command, const char *flag, const char *text, double min,
                      double max, float r[2]) {
  char *end;
  errno = 0;
  double a = strtod(text, &end), b = a;
  if (end != text && *end == ',') {
    const char *second = end + 1;
    b = strtod(second, &end);
    if (end == second) end = (char *)text; /* "A," is not a pair */
  }
  if (errno || end == text || *end || !isfinite(a) || !isfinite(b) || a < min || b > max || a > b) {
    cli_usage(command, "%s: '%s' is not LO,HI with %g <= LO <= HI <= %g", flag, text, min, max);
    return 0;
  }
  r[0] = (float)a, r[1] = (float)b;
  return 1;
}

static int parse_size(const char *command, const char *flag, const char *text, int *w, int *h) {
  char *end;
  errno = 0;
  long a = strtol(text, &end, 10), b = 0;
  int ok = end != text && (*end == 'x' || *end == 'X');
  if (ok) {
    const char *second = end + 1;
    b = strtol(second, &end, 10);
    ok = end != second && !*end;
  }
  if (!ok || errno || a < 1 || a > 16384 || b < 1 || b > 16384) {
    cli_usage(command, "%s: '%s' is not WIDTHxHEIGHT with sides from 1 to 16384", flag, text);
    return 0;
  }
  *w = (int)a, *h = (int)b;
  return 1;
}

static int parse_one(const char *command, const char *flag, const char *text, double min,
                     double max, float *out) {
  double v;
  if (!cli_parse_double(command, flag, text, min, max, &v)) return 0;
  *out = (float)v;
  return 1;
}

/* Flags with a number or a pair; 1 handled, 0 bad value, -1 not one of them. */
static int numeric_flag(const char *command, int opt, const char *arg, cn_augment *a) {
  switch (opt) {
  case CLI_OPT_ROTATION:
    return parse_one(command, "--rotation", arg, 0, 360, &a->rotation_range);
  case CLI_OPT_SHIFT:
    if (!parse_one(command, "--shift", arg, 0, 0.99, &a->width_shift_range)) return 0;
    a->height_shift_range = a->width_shift_range;
    return 1;
  case CLI_OPT_WIDTH_SHIFT:
    return parse_one(command, "--width-shift", arg, 0, 0.99, &a->width_shift_range);
  case CLI_OPT_HEIGHT_SHIFT:
    return parse_one(command, "--height-shift", arg, 0, 0.99, &a->height_shift_range);
  case CLI_OPT_ZOOM:
    return parse_one(command, "--zoom", arg, 0, 0.99, &a->zoom_range);
  case CLI_OPT_SHEAR:
    return parse_one(command, "--shear", arg, 0, 89, &a->shear_range);
  case CLI_OPT_CVAL:
    return parse_one(command, "--cval", arg, 0, 255, &a->cval);
  case CLI_OPT_BRIGHTNESS:
    return parse_pair(command, "--brightness", arg, 0, 100, a->brightness_range);
  case CLI_OPT_CONTRAST:
    return parse_one(command, "--contrast", arg, 0, 1, &a->contrast_range);
  case CLI_OPT_CHANNEL_SHIFT:
    return parse_one(command, "--channel-shift", arg, 0, 255, &a->channel_shift_range);
  case CLI_OPT_TINT:
    return parse_one(command, "--tint", arg, 0, 255, &a->tint_range);
  case CLI_OPT_HUE:
    return parse_one(command, "--hue", arg, 0, 0.5, &a->hue_range);
  case CLI_OPT_BLUR:
    return parse_pair(command, "--blur", arg, 0, 25, a->blur_sigma);
  case CLI_OPT_CROP_SCALE:
    return parse_pair(command, "--crop-scale", arg, 0.001, 1, a->crop_scale);
  case CLI_OPT_CROP_RATIO:
    return parse_pair(command, "--crop-ratio", arg, 0.01, 100, a->crop_ratio);
  default:
    return -1;
  }
}

int cli_augment_option(const char *command, int opt, const char *arg, cn_augment *a, int *rc) {
  int handled = numeric_flag(command, opt, arg, a);
  if (handled >= 0) {
    *rc = handled ? CLI_OK : CLI_USAGE;
    return 1;
  }
  *rc = CLI_OK;
  switch (opt) {
  case CLI_OPT_FLIP:
    a->horizontal_flip = 1;
    return 1;
  case CLI_OPT_VFLIP:
    a->vertical_flip = 1;
    return 1;
  case CLI_OPT_FILL:
    if (cn_fill_parse(arg, &a->fill_mode) != CN_OK)
      *rc = cli_usage(command, "--fill must be nearest, reflect or constant, not '%s'", arg);
    return 1;
  case CLI_OPT_CROP:
    if (!parse_size(command, "--crop", arg, &a->crop_width, &a->crop_height)) *rc = CLI_USAGE;
    return 1;
  default:
    return 0;
  }
}

int cli_augment_finish(const char *command, const cn_augment *a) {
  if (a->crop_ratio[1] > 0 && a->crop_scale[1] == 0)
    return cli_usage(command, "--crop-ratio needs --crop-scale");
  if (cn_augment_check(a) != CN_OK) return cli_usage(command, "%s", cn_last_error());
  return CLI_OK;
}
