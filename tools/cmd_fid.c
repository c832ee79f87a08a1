/* convnet fid: the Fréchet distance between two sets of images on one layer's features of a
 * model (with a classifier's penultimate layer, the "FID" of its data set). The embedder of
 * convnet embed gives the features, cn_frechet_distance the distance; this file reads the image
 * arrays and prints. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char fid_help[] =
    "usage: convnet fid -m MODEL [-w WEIGHTS] [--layer L] [--preprocess M] [--resize P]\n"
    "                  [--threads N] A B\n\n"
    "Prints the Frechet distance between the images of A and of B on the features of layer L:\n"
    "|mu_A - mu_B|^2 + tr(S_A + S_B - 2 (S_A S_B)^(1/2)) of the features' means and\n"
    "covariances (the FID, with a classifier's penultimate layer). A feature vector is the\n"
    "layer's output, averaged over its positions when it is spatial, as convnet embed makes it.\n\n"
    "A and B are each\n"
    "  a float .npy of shape (N, H, W, C), or (N, H, W) for one channel, with values in [0, 1]\n"
    "    (what dcgan --generate writes), or\n"
    "  an IDX images file (gzip or not) of bytes 0..255, e.g. t10k-images-idx3-ubyte.gz,\n"
    "of the model's input size, or\n"
    "  a folder of image files (jpg, jpeg, png, bmp, ppm, pgm; sub-folders too), decoded and\n"
    "    resized as convnet embed does.\n"
    "All become pixel values 0..255 and take the model's preprocessing, as convnet train does\n"
    "with IDX data (unit: x / 255, so a .npy's values are the model's input unchanged). Each\n"
    "set needs at least 2 images; an image that cannot be read stops the command.\n\n"
    "  -m, --model NAME|FILE  the feature model (zoo name or model file, e.g. a trained .cnm)\n"
    "  -w, --weights FILE     weights for a zoo model or a .json architecture\n"
    "  --layer L              the feature layer (default: the input of the final Dense layer,\n"
    "                         as for convnet embed; see convnet summary)\n"
    "  --preprocess M         raw, tf, unit (default: the model's)\n"
    "  --resize P             for image files: nearest, bilinear, area, pil-bilinear\n"
    "                         (default: the model's)\n"
    "  --threads N            threads (0: all cores)\n"
    "  -h, --help             this help\n";

/* Images per forward pass: bounds the activation memory. */
enum { FID_BATCH = 64 };

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* 1 when shape is n images of the spec's size: (N, H, W, C), or (N, H, W) for one channel. */
static int shape_fits(const cn_shape *s, const cn_input_spec *spec) {
  int grey = s->rank == 3 && spec->channels == 1;
  int hwc = s->rank == 4 && s->dim[3] == spec->channels;
  return (grey || hwc) && s->dim[0] >= 1 && s->dim[1] == spec->height && s->dim[2] == spec->width;
}

/* A .npy's values are images in [0, 1]; anything else is the wrong file or the wrong scale. */
static int unit_to_pixels(const char *path, float *x, int64_t count) {
  for (int64_t i = 0; i < count; i++) {
    if (!(x[i] >= 0.0f && x[i] <= 1.0f))
      return cli_error(path, "value %g at index %lld is not in [0, 1] (images scaled to [0, 1])",
                       (double)x[i], (long long)i);
    x[i] *= 255.0f;
  }
  return CLI_OK;
}

/* The images of path prepared for the model: n rows of H * W * C floats in *x. */
static int read_images(const char *path, const cn_input_spec *spec, float **x, int64_t *n) {
  cn_shape s;
  *x = NULL;
  if (spec->channels_first)
    return cli_error(path, "an NHWC array, but the model takes channels-first (NCHW) input");
  int npy = has_suffix(path, ".npy");
  if ((npy ? cn_npy_read(path, &s, x) : cn_idx_read(path, &s, x)) != CN_OK) return cli_lib_error();
  int rc = CLI_OK;
  char have[96];
  if (!shape_fits(&s, spec))
    rc = cli_error(path, "images of shape %s, the model takes (N, %d, %d, %d)",
                   cn_shape_format(&s, have, sizeof have), spec->height, spec->width,
                   spec->channels);
  int64_t count = cn_shape_numel(&s);
  if (rc == CLI_OK && npy) rc = unit_to_pixels(path, *x, count);
  if (rc == CLI_OK &&
      cn_preprocess_apply_channels(spec->preprocess, spec->channels, *x, (size_t)count) != CN_OK)
    rc = cli_error(path, "%s", cn_last_error());
  if (rc != CLI_OK) {
    free(*x);
    *x = NULL;
    return rc;
  }
  *n = s.dim[0];
  return CLI_OK;
}

/* The features of a folder's image files, decoded and prepared as for convnet embed; the first
 * file that cannot be read stops it. */
static int embed_folder(cn_embedder *e, const char *dir, float **rows, int64_t *n) {
  cli_file_list l = {0};
  int rc = cli_list_images(dir, &l);
  size_t dim = (size_t)cn_embedder_dim(e);
  if (rc == CLI_OK && !(*rows = malloc((size_t)l.n * dim * sizeof **rows)))
    rc = cli_error(dir, "out of memory for %d feature vectors", l.n);
  for (int i = 0; rc == CLI_OK && i < l.n; i++)
    if (cn_embed_file(e, l.paths[i], *rows + (size_t)i * dim) != CN_OK) rc = cli_lib_error();
  *n = l.n;
  cli_file_list_free(&l);
  return rc;
}

static int is_folder(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The features of one set's images: n rows of the embedder's dim in *rows. */
static int embed_images(cn_embedder *e, const char *path, float **rows, int64_t *n) {
  *rows = NULL;
  if (is_folder(path)) {
    int rc = embed_folder(e, path, rows, n);
    if (rc != CLI_OK) {
      free(*rows);
      *rows = NULL;
    }
    return rc;
  }
  cn_input_spec spec = cn_embedder_input_spec(e);
  float *x;
  int rc = read_images(path, &spec, &x, n);
  if (rc != CLI_OK) return rc;
  size_t in = (size_t)spec.height * spec.width * spec.channels, dim = (size_t)cn_embedder_dim(e);
  *rows = malloc((size_t)*n * dim * sizeof **rows);
  if (!*rows) rc = cli_error(path, "out of memory for %lld feature vectors", (long long)*n);
  for (int64_t first = 0; rc == CLI_OK && first < *n; first += FID_BATCH) {
    int count = (int)(*n - first < FID_BATCH ? *n - first : FID_BATCH);
    if (cn_embedder_run(e, count, x + (size_t)first * in, *rows + (size_t)first * dim) != CN_OK)
      rc = cli_error(path, "%s", cn_last_error());
  }
  free(x);
  if (rc != CLI_OK) {
    free(*rows);
    *rows = NULL;
  }
  return rc;
}

static int fid_of(cn_embedder *e, const char *path_a, const char *path_b) {
  float *a = NULL, *b = NULL;
  int64_t na = 0, nb = 0;
  int rc = embed_images(e, path_a, &a, &na);
  if (rc == CLI_OK) rc = embed_images(e, path_b, &b, &nb);
  double d = 0;
  if (rc == CLI_OK && na < 2) rc = cli_error(path_a, "1 image; a covariance needs at least 2");
  if (rc == CLI_OK && nb < 2) rc = cli_error(path_b, "1 image; a covariance needs at least 2");
  if (rc == CLI_OK && cn_frechet_distance(a, na, b, nb, cn_embedder_dim(e), &d) != CN_OK)
    rc = cli_error("fid", "%s", cn_last_error());
  if (rc == CLI_OK) printf("%.6f\n", d);
  free(a);
  free(b);
  return rc;
}

int cmd_fid(int argc, char **argv) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          CLI_INPUT_LONG_OPTIONS,
                                          CLI_EMBED_LONG_OPTIONS,
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  cli_embed_args a = {.model = {.need_weights = 1}};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (cli_embed_option("fid", opt, optarg, &a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if (opt != 'h') return cli_bad_option("fid", opt, argv);
    fputs(fid_help, stdout);
    return CLI_OK;
  }
  if (!a.model.model) return cli_usage("fid", "no model given: -m MODEL");
  if (argc - optind != 2) return cli_usage("fid", "expected two image sets A B");
  cn_model *model;
  if ((rc = cli_open_model("fid", &a.model, &model)) != CLI_OK) return rc;
  cn_embedder *e;
  rc = cli_open_embedder("fid", model, &a, &e);
  if (rc == CLI_OK) rc = fid_of(e, argv[optind], argv[optind + 1]);
  cn_embedder_free(e);
  cn_model_free(model);
  return rc;
}
