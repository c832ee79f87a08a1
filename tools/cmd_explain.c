/* convnet explain: Grad-CAM heat maps over photos, one PNG per image (also classify --explain). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char explain_help[] =
    "usage: convnet explain [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--class C] [--layer L]\n"
    "                       [--labels F] [--resize P] [--threads N] -o DIR IMAGE...\n\n"
    "Writes DIR/<image name>.png for each image: the photo with a Grad-CAM heat map blended\n"
    "over it (red: where the class score depends most on the layer's features), and the class\n"
    "and its probability written on it. The map is relu(sum_k w_k A_k) over the layer's\n"
    "channels A_k, w_k the spatial mean of d score / d A_k; the score is the class's logit\n"
    "(before the model's final softmax) when the model ends in a softmax or sigmoid.\n\n"
    "  -m, --model NAME|FILE  zoo name or model file, as for classify (default\n"
    "                         efficientnet_lite0 with its fetched weights)\n"
    "  -w, --weights FILE     weights for a zoo model or a .json architecture\n"
    "  --alpha A              MobileNet width multiplier\n"
    "  --class C              the class explained: an index or a label name (default: each\n"
    "                         image's top class)\n"
    "  --layer L              the layer whose feature maps are weighed (default: the last\n"
    "                         layer with a spatial output; see convnet summary)\n"
    "  --labels FILE          class names, as for classify\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear (default: the model's)\n"
    "  --threads N            threads (0: all cores)\n"
    "  -o, --output DIR       where the pictures go (made if missing)\n"
    "  -h, --help             this help\n";

/* The picture's name: the image's file name without its extension, plus .png. */
static void picture_name(const char *file, char *name, size_t cap) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  const char *dot = strrchr(base, '.');
  int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
  snprintf(name, cap, "%.*s.png", len, base);
}

int cli_explain_prepare(cli_explain_args *a, char **files, int n) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++) {
      char x[512], y[512];
      picture_name(files[i], x, sizeof x);
      picture_name(files[j], y, sizeof y);
      if (strcmp(x, y) == 0)
        return cli_error(files[i], "its picture would overwrite that of %s (both %s/%s)", files[j],
                         a->dir, x);
    }
  struct stat sb;
  if (stat(a->dir, &sb) == 0)
    return S_ISDIR(sb.st_mode) ? CLI_OK : cli_error(a->dir, "not a directory");
  if (mkdir(a->dir, 0777) != 0) return cli_error(a->dir, "cannot make it: %s", strerror(errno));
  a->made_dir = 1;
  return CLI_OK;
}

void cli_explain_finish(const cli_explain_args *a) {
  if (a->made_dir) rmdir(a->dir); /* fails, as it should, once a picture is there */
}

/* The model's input for one photo, as classify prepares it. */
static int prepare_input(const char *file, const cn_input_spec *spec, cn_image *photo,
                         float **input) {
  size_t numel = (size_t)spec->height * spec->width * spec->channels;
  *input = malloc(numel * sizeof **input);
  if (!*input) return cli_error(file, "out of memory");
  if (cn_image_load_spec(file, spec, photo) != CN_OK ||
      cn_image_prepare(photo, spec, *input) != CN_OK)
    return cli_lib_error();
  return CLI_OK;
}

enum { PICTURE_MAX_SIDE = 4096 }; /* larger photos are drawn shrunk to this */

static int replace_photo(cn_image *photo, cn_status st, cn_image *changed) {
  if (st != CN_OK) return cli_lib_error();
  cn_image_free(photo);
  *photo = *changed;
  return CLI_OK;
}

/* The part of the photo the model saw (the central crop when its input spec crops), at most
 * PICTURE_MAX_SIDE pixels a side. */
static int seen_part(const cn_input_spec *spec, cn_image *photo) {
  cn_image changed = {0};
  int rc = CLI_OK;
  if (spec->crop > 0.0 && spec->crop < 1.0)
    rc = replace_photo(photo, cn_image_center_crop(photo, spec->crop, &changed), &changed);
  int side = photo->width > photo->height ? photo->width : photo->height;
  if (rc != CLI_OK || side <= PICTURE_MAX_SIDE) return rc;
  double f = (double)PICTURE_MAX_SIDE / side;
  int w = (int)(photo->width * f), h = (int)(photo->height * f);
  cn_status st = cn_image_resize(photo, w > 0 ? w : 1, h > 0 ? h : 1, CN_RESIZE_AREA, &changed);
  return replace_photo(photo, st, &changed);
}

static int draw_one(cn_model *model, const cn_labels *labels, const cn_gradcam *cam,
                    const cn_image *photo, const char *file, const cli_explain_args *a) {
  char buf[64], caption[256], picture[512], path[4096];
  const char *name = cli_class_name(labels, model, (size_t)cam->class_index, buf, sizeof buf);
  snprintf(caption, sizeof caption, "%s: %.1f%%", name, 100.0 * cam->probability);
  picture_name(file, picture, sizeof picture);
  if (snprintf(path, sizeof path, "%s/%s", a->dir, picture) >= (int)sizeof path)
    return cli_error(a->dir, "path too long");
  if (cn_viz_gradcam(photo, cam, caption, path) != CN_OK) return cli_lib_error();
  if (a->quiet) return CLI_OK;
  printf("%s -> %s: %s (class %d, p = %.4f, layer %s)\n", file, path, name, cam->class_index,
         (double)cam->probability, cam->layer);
  fflush(stdout);
  return CLI_OK;
}

static int explain_one(cn_model *model, const cn_input_spec *spec, const cn_labels *labels,
                       const cli_explain_args *a, const char *file) {
  cn_image photo = {0};
  float *input = NULL;
  cn_gradcam cam = {0};
  cn_gradcam_options o = {.layer = a->layer, .class_index = a->class_index};
  int rc = prepare_input(file, spec, &photo, &input);
  if (rc == CLI_OK && cn_gradcam_compute(model, input, &o, &cam) != CN_OK) rc = cli_lib_error();
  if (rc == CLI_OK) rc = seen_part(spec, &photo);
  if (rc == CLI_OK) rc = draw_one(model, labels, &cam, &photo, file, a);
  cn_gradcam_free(&cam);
  cn_image_free(&photo);
  free(input);
  return rc;
}

int cli_explain_images(cn_model *model, const cn_input_spec *spec, const cn_labels *labels,
                       const cli_explain_args *a, char **files, int n) {
  int failed = 0;
  for (int i = 0; i < n; i++) failed += explain_one(model, spec, labels, a, files[i]) != CLI_OK;
  return failed;
}

/* --class: an index, or a name among the class names (or an ImageNet WordNet id). */
static int resolve_class(const char *text, const cn_model *model, const cn_labels *labels,
                         int *index) {
  cn_shape out = cn_model_output_shape(model);
  int classes = (int)out.dim[0];
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (*text && !*end && errno == 0) {
    if (v < 0 || v >= classes)
      return cli_error(cn_model_name(model), "--class %ld is out of range: %d classes", v, classes);
    *index = (int)v;
    return CLI_OK;
  }
  for (int c = 0; c < classes; c++) {
    char buf[64];
    const char *id = labels ? cn_labels_id(labels, (size_t)c) : NULL;
    if (strcmp(text, cli_class_name(labels, model, (size_t)c, buf, sizeof buf)) == 0 ||
        (id && strcmp(text, id) == 0)) {
      *index = c;
      return CLI_OK;
    }
  }
  return cli_error(cn_model_name(model), "--class %s: no class of that name", text);
}

typedef struct explain_cmd {
  cli_model_args model;
  cli_explain_args out;
  const char *labels_path, *class_text, *resize;
} explain_cmd;

static int explain_all(cn_model *model, const explain_cmd *c, char **files, int n) {
  cn_input_spec spec = cn_model_input_spec(model);
  if (c->resize && cn_resize_parse(c->resize, &spec.resize) != CN_OK)
    return cli_usage("explain", "--resize: unknown policy '%s'", c->resize);
  cn_labels *labels = NULL;
  cli_explain_args a = c->out;
  int rc = cli_load_labels(c->labels_path, model, &labels);
  if (rc == CLI_OK && c->class_text)
    rc = resolve_class(c->class_text, model, labels, &a.class_index);
  if (rc == CLI_OK) rc = cli_explain_prepare(&a, files, n);
  if (rc == CLI_OK)
    rc = cli_explain_images(model, &spec, labels, &a, files, n) ? CLI_FAILED : CLI_OK;
  cli_explain_finish(&a);
  cn_labels_free(labels);
  return rc;
}

static int explain_option(void *cmd, int opt, char **argv) {
  explain_cmd *c = cmd;
  switch (opt) {
  case 'c':
    c->class_text = optarg;
    return CLI_OK;
  case 'L':
    c->out.layer = optarg;
    return CLI_OK;
  case 'l':
    c->labels_path = optarg;
    return CLI_OK;
  case 'r':
    c->resize = optarg;
    return CLI_OK;
  case 't':
    return cli_set_threads("explain", optarg) ? CLI_OK : CLI_USAGE;
  case 'o':
    c->out.dir = optarg;
    return CLI_OK;
  default:
    return cli_bad_option("explain", opt, argv);
  }
}

/* Returns CLI_HELP after --help. */
static int parse_explain(int argc, char **argv, explain_cmd *c) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"class", required_argument, NULL, 'c'},
                                          {"layer", required_argument, NULL, 'L'},
                                          {"labels", required_argument, NULL, 'l'},
                                          {"resize", required_argument, NULL, 'r'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"output", required_argument, NULL, 'o'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int rc = cli_parse_model_command("explain", explain_help, argc, argv, ":m:w:o:h", options,
                                   &c->model, explain_option, c);
  if (rc != CLI_OK) return rc;
  if (!c->out.dir) return cli_usage("explain", "no output directory given (-o DIR)");
  if ((rc = cli_check_output(c->out.dir, 1)) != CLI_OK) return rc;
  if (optind >= argc) return cli_usage("explain", "no IMAGE given");
  cn_resize probe;
  if (c->resize && cn_resize_parse(c->resize, &probe) != CN_OK)
    return cli_usage("explain", "--resize: unknown policy '%s'", c->resize);
  return CLI_OK;
}

int cmd_explain(int argc, char **argv) {
  explain_cmd c = {.model = {.need_weights = 1}, .out = {.class_index = -1}};
  int rc = parse_explain(argc, argv, &c);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  cn_model *model;
  if ((rc = cli_open_model("explain", &c.model, &model)) != CLI_OK) return rc;
  rc = explain_all(model, &c, argv + optind, argc - optind);
  cn_model_free(model);
  return rc;
}
