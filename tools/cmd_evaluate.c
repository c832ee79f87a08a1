/* convnet evaluate: top-1 / top-5 accuracy of a model on a labelled image folder. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

static const char evaluate_help[] =
    "usage: convnet evaluate [-m NAME|FILE] [-w WEIGHTS] [--alpha A] --data DIR [--labels FILE]\n"
    "                        [--resize P] [--crop F] [--preprocess M] [--batch N] [--threads N]\n"
    "                        [--json]\n\n"
    "Top-1 and top-5 accuracy of an ImageNet classifier on a labelled folder of images.\n\n"
    "  --data DIR             one subfolder per class, named by the model's own class names\n"
    "                         (a .cnm from training) or by WordNet id (n01440764) or ImageNet\n"
    "                         class name; or a flat folder with a labels TSV\n"
    "  --labels FILE          TSV of \"file<TAB>class_index\" (paths relative to DIR); a header\n"
    "                         line naming a class_index column is understood. Default for a\n"
    "                         flat folder: DIR/labels.tsv\n"
    "  -m, -w, --alpha        the model, as for classify (default: mobilenet, fetched weights)\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear (default: the model's)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1\n"
    "  --preprocess M         raw, caffe, tf, torch, unit (default: the model's)\n"
    "  --batch N              images per forward pass (default 8)\n"
    "  --threads N            threads (0: all cores)\n"
    "  --json                 one JSON object instead of text\n"
    "  -h, --help             this help\n\n"
    "Images that fail to decode are reported, skipped, and make the exit status 1.\n";

enum { EVAL_MAX_SAMPLES = 10000000, EVAL_MAX_BATCH = 256, EVAL_LINE = 8192 };

typedef struct sample {
  char *path;
  int label;
} sample;

typedef struct sample_list {
  sample *items;
  int count, cap;
} sample_list;

typedef struct eval_args {
  cli_model_args model;
  const char *data, *labels_path, *resize, *preprocess;
  double crop;
  int batch, json;
} eval_args;

typedef struct eval_counts {
  int images, top1, top5, skipped;
  double seconds;
} eval_counts;

static void samples_free(sample_list *s) {
  for (int i = 0; i < s->count; i++) free(s->items[i].path);
  free(s->items);
  *s = (sample_list){0};
}

/* Adds dir/name, or name alone when dir is NULL. */
static int samples_add(sample_list *s, const char *dir, const char *name, int label) {
  if (s->count >= EVAL_MAX_SAMPLES)
    return cli_error(dir ? dir : "evaluate", "more than %d images", EVAL_MAX_SAMPLES);
  if (s->count == s->cap) {
    int cap = s->cap ? s->cap * 2 : 64;
    sample *grown = realloc(s->items, (size_t)cap * sizeof *grown);
    if (!grown) return cli_error("evaluate", "out of memory");
    s->items = grown, s->cap = cap;
  }
  size_t n = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
  char *path = malloc(n);
  if (!path) return cli_error("evaluate", "out of memory");
  snprintf(path, n, "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
  s->items[s->count++] = (sample){path, label};
  return CLI_OK;
}

/* Class index of a folder: the model's own class name (a .cnm from training) when it has them,
 * else an ImageNet WordNet id or class name; -1 if none matches. */
static int class_of_folder(const cn_model *model, const cn_labels *labels, const char *name) {
  for (int i = 0; i < cn_model_class_count(model); i++)
    if (strcmp(cn_model_class_name(model, i), name) == 0) return i;
  if (cn_model_class_count(model)) return -1;
  size_t n = cn_labels_count(labels);
  for (size_t i = 0; i < n; i++) {
    const char *id = cn_labels_id(labels, i), *label = cn_labels_name(labels, i);
    if ((id && strcmp(id, name) == 0) || (label && strcmp(label, name) == 0)) return (int)i;
  }
  return -1;
}

/* The images of the library's class-folder scan, labelled by ImageNet index instead of the
 * scan's folder order. */
static int add_class_folders(const char *data, const cn_dataset *ds, const cn_model *model,
                             sample_list *s) {
  cn_labels *labels = NULL;
  if (cn_labels_imagenet(&labels) != CN_OK) return cli_lib_error();
  int nclasses = cn_dataset_class_count(ds), rc = CLI_OK;
  int *imagenet = malloc((size_t)nclasses * sizeof *imagenet);
  if (!imagenet) rc = cli_error("evaluate", "out of memory");
  for (int c = 0; rc == CLI_OK && c < nclasses; c++) {
    const char *folder = cn_dataset_class_name(ds, c);
    imagenet[c] = class_of_folder(model, labels, folder);
    if (imagenet[c] < 0)
      rc = cli_error(data, "folder '%s' is not %s", folder,
                     cn_model_class_count(model) ? "one of the model's classes"
                                                 : "an ImageNet WordNet id or class name");
  }
  for (int64_t i = 0; rc == CLI_OK && i < cn_dataset_count(ds); i++)
    rc = samples_add(s, NULL, cn_dataset_path(ds, i), imagenet[cn_dataset_label(ds, i)]);
  free(imagenet);
  cn_labels_free(labels);
  return rc;
}

/* Splits line at tabs in place; returns the number of fields (at most max). */
static int split_tabs(char *line, char **fields, int max) {
  line[strcspn(line, "\r\n")] = '\0';
  int n = 0;
  for (char *p = line; n < max;) {
    fields[n++] = p;
    char *tab = strchr(p, '\t');
    if (!tab) break;
    *tab = '\0', p = tab + 1;
  }
  return n;
}

/* Column of the class index: the one named class_index in a header, else the second. */
static int header_column(char **fields, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(fields[i], "class_index") == 0) return i;
  return 1;
}

static int parse_label(const char *path, int line_no, const char *text, int *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < 0 || v > 1000000)
    return cli_error(path, "line %d: '%s' is not a class index", line_no, text);
  *out = (int)v;
  return CLI_OK;
}

static int read_labels_tsv(const char *data, const char *path, sample_list *s) {
  FILE *f = fopen(path, "r");
  if (!f) return cli_error(path, "%s", strerror(errno));
  char line[EVAL_LINE], *fields[64];
  int rc = CLI_OK, column = 1, line_no = 0;
  while (rc == CLI_OK && fgets(line, sizeof line, f)) {
    line_no++;
    if (!strchr(line, '\n') && !feof(f)) rc = cli_error(path, "line %d is too long", line_no);
    int n = rc == CLI_OK ? split_tabs(line, fields, 64) : 0;
    if (rc != CLI_OK || line[0] == '#' || (n == 1 && !*fields[0])) continue;
    if (line_no == 1 && strcmp(fields[0], "file") == 0) {
      column = header_column(fields, n);
      continue;
    }
    int label = -1;
    if (n <= column) rc = cli_error(path, "line %d: no class index column", line_no);
    if (rc == CLI_OK) rc = parse_label(path, line_no, fields[column], &label);
    if (rc == CLI_OK) rc = samples_add(s, data, fields[0], label);
  }
  if (rc == CLI_OK && ferror(f)) rc = cli_error(path, "read error");
  fclose(f);
  return rc;
}

static int collect_samples(const eval_args *a, const cn_model *model, sample_list *s) {
  struct stat sb;
  if (stat(a->data, &sb) != 0) return cli_error(a->data, "%s", strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return cli_error(a->data, "not a directory");
  if (a->labels_path) return read_labels_tsv(a->data, a->labels_path, s);
  /* Class folders as training reads them, but one class, empty ones or none are fine here. */
  cn_dataset *ds = NULL;
  if (cn_dataset_scan_dir(a->data, CN_SCAN_ONE_CLASS | CN_SCAN_EMPTY_CLASS | CN_SCAN_NO_CLASSES,
                          &ds) != CN_OK)
    return cli_lib_error();
  char tsv[4096];
  snprintf(tsv, sizeof tsv, "%s/labels.tsv", a->data);
  int rc = CLI_OK;
  if (cn_dataset_class_count(ds) > 0)
    rc = add_class_folders(a->data, ds, model, s);
  else if (stat(tsv, &sb) == 0)
    rc = read_labels_tsv(a->data, tsv, s);
  cn_dataset_free(ds);
  if (rc == CLI_OK && s->count == 0)
    rc = cli_error(a->data, "no images (want class folders or a labels TSV)");
  return rc;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Rank of the true class: how many classes score strictly higher (ties favour the truth). */
static size_t rank_of(const float *p, size_t n, size_t truth) {
  if (p[truth] != p[truth]) return n; /* NaN score: never correct */
  size_t higher = 0;
  for (size_t j = 0; j < n; j++) higher += p[j] > p[truth];
  return higher;
}

static void score_batch(const sample *batch, const int *ok, int n, const float *output,
                        size_t classes, eval_counts *c) {
  for (int i = 0, j = 0; i < n; i++) {
    if (!ok[i]) continue;
    const float *p = output + (size_t)j++ * classes;
    size_t r = rank_of(p, classes, (size_t)batch[i].label);
    c->images++;
    c->top1 += r < 1;
    c->top5 += r < 5;
  }
}

/* Decodes and prepares one image; on failure prints one line naming the file, returns 0. */
static int prepare_one(const sample *item, const cn_input_spec *spec, size_t classes, float *out) {
  if (item->label < 0 || (size_t)item->label >= classes) {
    cli_error(item->path, "class index %d outside the model's %zu classes", item->label, classes);
    return 0;
  }
  cn_image image = {0};
  int ok =
      cn_image_load(item->path, &image) == CN_OK && cn_image_prepare(&image, spec, out) == CN_OK;
  cn_image_free(&image);
  if (!ok) cli_lib_error();
  return ok;
}

static int eval_batch(cn_model *model, const cn_input_spec *spec, const sample *batch, int n,
                      float *input, float *output, eval_counts *c) {
  size_t in_numel = (size_t)spec->height * spec->width * spec->channels;
  cn_shape out_shape = cn_model_output_shape(model);
  size_t classes = (size_t)cn_shape_numel(&out_shape);
  int ok[EVAL_MAX_BATCH], good = 0;
  for (int i = 0; i < n; i++) {
    ok[i] = prepare_one(&batch[i], spec, classes, input + (size_t)good * in_numel);
    good += ok[i];
    c->skipped += !ok[i];
  }
  if (good && cn_model_forward(model, good, input, output) != CN_OK) return cli_lib_error();
  score_batch(batch, ok, n, output, classes, c);
  return CLI_OK;
}

static int apply_overrides(const eval_args *a, cn_input_spec *spec) {
  if (a->resize && cn_resize_parse(a->resize, &spec->resize) != CN_OK)
    return cli_usage("evaluate", "--resize: unknown policy '%s'", a->resize);
  if (a->preprocess && cn_preprocess_parse(a->preprocess, &spec->preprocess) != CN_OK)
    return cli_usage("evaluate", "--preprocess: unknown mode '%s'", a->preprocess);
  if (a->crop > 0) spec->crop = a->crop;
  return CLI_OK;
}

static int evaluate_all(cn_model *model, const eval_args *a, const sample_list *s, eval_counts *c) {
  cn_input_spec spec = cn_model_input_spec(model);
  int rc = apply_overrides(a, &spec);
  if (rc != CLI_OK) return rc;
  cn_shape out = cn_model_output_shape(model);
  char buf[96];
  if (out.rank != 1 || out.dim[0] < 1)
    return cli_error(cn_model_name(model), "output %s is not a vector of class scores",
                     cn_shape_format(&out, buf, sizeof buf));
  size_t in_numel = (size_t)spec.height * spec.width * spec.channels;
  float *input = malloc((size_t)a->batch * in_numel * sizeof *input);
  float *output = malloc((size_t)a->batch * (size_t)out.dim[0] * sizeof *output);
  if (!input || !output) rc = cli_error("evaluate", "out of memory");
  double start = now_seconds();
  for (int i = 0; rc == CLI_OK && i < s->count; i += a->batch) {
    int n = s->count - i < a->batch ? s->count - i : a->batch;
    rc = eval_batch(model, &spec, s->items + i, n, input, output, c);
  }
  c->seconds = now_seconds() - start;
  free(input);
  free(output);
  return rc;
}

static double percent(int part, int whole) {
  return whole ? 100.0 * part / whole : 0.0;
}

static void print_counts(const eval_counts *c, int json) {
  double rate = c->seconds > 0 ? c->images / c->seconds : 0.0;
  if (json) {
    printf("{\"images\":%d,\"top1\":%.4f,\"top5\":%.4f,\"top1_correct\":%d,\"top5_correct\":%d,"
           "\"images_per_second\":%.3f,\"seconds\":%.3f,\"skipped\":%d}\n",
           c->images, percent(c->top1, c->images) / 100, percent(c->top5, c->images) / 100, c->top1,
           c->top5, rate, c->seconds, c->skipped);
    return;
  }
  printf("images:   %d\n", c->images);
  printf("top-1:    %.2f%% (%d)\n", percent(c->top1, c->images), c->top1);
  printf("top-5:    %.2f%% (%d)\n", percent(c->top5, c->images), c->top5);
  printf("speed:    %.2f images/s (%.2f s)\n", rate, c->seconds);
  printf("skipped:  %d\n", c->skipped);
}

static int parse_args(int argc, char **argv, eval_args *a) {
  static const struct option options[] = {{"model", required_argument, NULL, 'm'},
                                          {"weights", required_argument, NULL, 'w'},
                                          {"alpha", required_argument, NULL, 'a'},
                                          {"data", required_argument, NULL, 'd'},
                                          {"labels", required_argument, NULL, 'l'},
                                          {"resize", required_argument, NULL, 'r'},
                                          {"crop", required_argument, NULL, 'c'},
                                          {"preprocess", required_argument, NULL, 'p'},
                                          {"batch", required_argument, NULL, 'b'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (cli_model_option("evaluate", opt, optarg, &a->model, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 'd':
      a->data = optarg;
      break;
    case 'l':
      a->labels_path = optarg;
      break;
    case 'r':
      a->resize = optarg;
      break;
    case 'p':
      a->preprocess = optarg;
      break;
    case 'j':
      a->json = 1;
      break;
    case 'c':
      if (!cli_parse_double("evaluate", "--crop", optarg, 1e-3, 1, &a->crop)) return CLI_USAGE;
      break;
    case 'b':
      if (!cli_parse_int("evaluate", "--batch", optarg, 1, EVAL_MAX_BATCH, &a->batch))
        return CLI_USAGE;
      break;
    case 't':
      if (!cli_set_threads("evaluate", optarg)) return CLI_USAGE;
      break;
    case 'h':
      fputs(evaluate_help, stdout);
      return -1;
    default:
      return cli_bad_option("evaluate", opt, argv);
    }
  }
  if (optind < argc) return cli_usage("evaluate", "unexpected argument '%s'", argv[optind]);
  if (!a->data) return cli_usage("evaluate", "no --data DIR given");
  cn_input_spec probe = {0};
  return apply_overrides(a, &probe); /* bad flags before any loading */
}

int cmd_evaluate(int argc, char **argv) {
  eval_args a = {.model = {.need_weights = 1}, .batch = 8};
  int rc = parse_args(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  sample_list s = {0};
  cn_model *model;
  if ((rc = cli_open_model("evaluate", &a.model, &model)) != CLI_OK) return rc;
  /* Folders are matched against the model's own class names, so the model comes first. */
  if ((rc = collect_samples(&a, model, &s)) == CLI_OK) {
    eval_counts c = {0};
    rc = evaluate_all(model, &a, &s, &c);
    if (rc == CLI_OK) print_counts(&c, a.json);
    if (rc == CLI_OK && c.skipped) rc = CLI_FAILED;
  }
  cn_model_free(model);
  samples_free(&s);
  return rc;
}
