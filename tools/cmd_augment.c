/* convnet augment: a preview grid of what augmentation does to images, with the flags of train. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static const char augment_help[] =
    "usage: convnet augment IMAGE... [augmentation flags] [-n N] [--seed S] [--cell PX]\n"
    "                       --preview GRID.png\n\n"
    "Draws a grid with one row per image: the image, then N randomly augmented versions of it,\n"
    "each fitted into a PX x PX cell, so that you see what training with the same flags (as\n"
    "convnet train takes them) will see. The same --seed gives the same grid.\n\n"
    "  -n N                   augmented versions per image (default 8, at most 64)\n"
    "  --seed S               seed of the random draws (default 0)\n"
    "  --cell PX              cell size in pixels (default 128, 16..1024)\n"
    "  --preview FILE.png     the grid, written atomically (required)\n"
    "  -h, --help             this help\n\n";

enum { OPT_PREVIEW = 1000, OPT_SEED, OPT_CELL, GAP = 4, BACKGROUND = 48, MAX_VERSIONS = 64 };

static const struct option augment_options[] = {
    {"preview", required_argument, NULL, OPT_PREVIEW},
    {"seed", required_argument, NULL, OPT_SEED},
    {"cell", required_argument, NULL, OPT_CELL},
    {"help", no_argument, NULL, 'h'},
    CLI_AUGMENT_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

typedef struct augment_cli {
  cn_augment a;
  const char *preview;
  unsigned long long seed;
  int versions, cell;
  char **images;
  int n_images;
} augment_cli;

static int parse_seed(const char *arg, unsigned long long *out) {
  char *end = NULL;
  unsigned long long v = strtoull(arg, &end, 10);
  if (!*arg || *end || *arg == '-')
    return cli_usage("augment", "--seed needs a non-negative integer");
  *out = v;
  return CLI_OK;
}

static int option(augment_cli *c, int opt, const char *arg) {
  switch (opt) {
  case 'n':
    return cli_parse_int("augment", "-n", arg, 1, MAX_VERSIONS, &c->versions) ? CLI_OK : CLI_USAGE;
  case OPT_CELL:
    return cli_parse_int("augment", "--cell", arg, 16, 1024, &c->cell) ? CLI_OK : CLI_USAGE;
  case OPT_SEED:
    return parse_seed(arg, &c->seed);
  case OPT_PREVIEW:
    c->preview = arg;
    return CLI_OK;
  default:
    return CLI_USAGE;
  }
}

static int ends_with_png(const char *path) {
  size_t n = strlen(path);
  return n > 4 && strcasecmp(path + n - 4, ".png") == 0;
}

static int parse(augment_cli *c, int argc, char **argv) {
  int opt, rc = CLI_OK;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":hn:", augment_options, NULL)) != -1) {
    if (opt == 'h') {
      fputs(augment_help, stdout);
      fputs(cli_augment_help, stdout);
      return -1;
    }
    if (opt == '?' || opt == ':') return cli_bad_option("augment", opt, argv);
    if (cli_augment_option("augment", opt, optarg, &c->a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if (option(c, opt, optarg) != CLI_OK) return CLI_USAGE;
  }
  c->images = argv + optind;
  c->n_images = argc - optind;
  if (c->n_images < 1) return cli_usage("augment", "no image given");
  if (!c->preview) return cli_usage("augment", "--preview GRID.png is required");
  if (!ends_with_png(c->preview))
    return cli_usage("augment", "--preview must name a .png file, not '%s'", c->preview);
  if ((rc = cli_check_output(c->preview, 0)) != CLI_OK) return rc;
  return cli_augment_finish("augment", &c->a);
}

/* ---- the grid -------------------------------------------------------------------------------- */

/* Copies img, fitted into a cell (aspect kept, PIL-style bilinear), centred at cell (col, row). */
static cn_status draw_cell(cn_image *grid, const cn_image *img, int cell, int col, int row) {
  double scale = (double)cell / (img->width > img->height ? img->width : img->height);
  int w = (int)(img->width * scale + 0.5), h = (int)(img->height * scale + 0.5);
  w = w < 1 ? 1 : w, h = h < 1 ? 1 : h;
  cn_image fitted = {0};
  cn_status st = cn_image_resize(img, w, h, CN_RESIZE_PIL_BILINEAR, &fitted);
  if (st != CN_OK) return st;
  int left = GAP + col * (cell + GAP) + (cell - w) / 2,
      top = GAP + row * (cell + GAP) + (cell - h) / 2;
  for (int y = 0; y < h; y++)
    memcpy(grid->pixels + ((size_t)(top + y) * grid->width + left) * 3,
           fitted.pixels + (size_t)y * w * 3, (size_t)w * 3);
  cn_image_free(&fitted);
  return CN_OK;
}

/* Distinct seeds per (image, version), spread by an odd multiplier so nearby --seed values do
 * not share draws (cn_image_augment mixes them further). */
static uint64_t version_seed(const augment_cli *c, int image, int version) {
  return (uint64_t)c->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)image * (MAX_VERSIONS + 1) +
         (uint64_t)version;
}

static cn_status draw_row(cn_image *grid, const augment_cli *c, int row) {
  cn_image img = {0};
  cn_status st = cn_image_load(c->images[row], &img);
  if (st == CN_OK) st = draw_cell(grid, &img, c->cell, 0, row);
  for (int k = 0; st == CN_OK && k < c->versions; k++) {
    cn_image changed = {0};
    st = cn_image_augment(&img, &c->a, version_seed(c, row, k), &changed);
    if (st == CN_OK) st = draw_cell(grid, &changed, c->cell, k + 1, row);
    cn_image_free(&changed);
  }
  cn_image_free(&img);
  return st;
}

static int make_grid(const augment_cli *c, cn_image *grid) {
  int64_t width = GAP + (int64_t)(c->versions + 1) * (c->cell + GAP);
  int64_t height = GAP + (int64_t)c->n_images * (c->cell + GAP);
  if (width * height > CN_IMAGE_MAX_PIXELS)
    return cli_error("augment", "a grid of %d images x %d cells of %d pixels is too large",
                     c->n_images, c->versions + 1, c->cell);
  grid->width = (int)width, grid->height = (int)height;
  grid->pixels = malloc((size_t)(width * height * 3));
  if (!grid->pixels) return cli_error("augment", "out of memory for the grid");
  memset(grid->pixels, BACKGROUND, (size_t)(width * height * 3));
  for (int row = 0; row < c->n_images; row++)
    if (draw_row(grid, c, row) != CN_OK) return cli_lib_error();
  return CLI_OK;
}

int cmd_augment(int argc, char **argv) {
  augment_cli c = {.versions = 8, .cell = 128};
  int rc = parse(&c, argc, argv);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  cn_image grid = {0};
  rc = make_grid(&c, &grid);
  if (rc == CLI_OK && cn_image_save_png(&grid, c.preview) != CN_OK) rc = cli_lib_error();
  free(grid.pixels);
  if (rc == CLI_OK) printf("wrote %s\n", c.preview);
  return rc;
}
