/* convnet evaluate: accuracy, top-5, per-class results and the confusion matrix of a model on a
 * labelled image folder. The library (cn_evaluate) matches folders to classes and scores; this
 * file finds the samples and prints. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char evaluate_help[] =
    "usage: convnet evaluate [-m NAME|FILE] [-w WEIGHTS] [--alpha A] --data DIR [--labels FILE]\n"
    "                        [--resize P] [--crop F] [--preprocess M] [--batch N] [--threads N]\n"
    "                        [--per-class] [--json] [--report FILE.html]\n\n"
    "Accuracy, top-5, per-class results and the confusion matrix of a classifier (a trained\n"
    ".cnm or an ImageNet model) on a labelled folder of images.\n\n"
    "  --data DIR             one subfolder per class, matched by name to the model's own class\n"
    "                         names (a .cnm from training), or for an ImageNet model named by\n"
    "                         WordNet id (n01440764) or class name; or a flat folder with a\n"
    "                         labels TSV\n"
    "  --labels FILE          TSV of \"file<TAB>class_index\" (paths relative to DIR); a header\n"
    "                         line naming a class_index column is understood. Default for a\n"
    "                         flat folder: DIR/labels.tsv\n"
    "  -m, -w, --alpha        the model, as for classify (default: mobilenet, fetched weights)\n"
    "  --precision P          fp32 (default) or bf16, as for classify\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear, tf-bilinear (default: the\n"
    "                         model's; a trained .cnm's are those it was trained with)\n"
    "  --decode pil|tf        decode as PIL or tf.io.decode_image (default: the model's)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1\n"
    "  --preprocess M         raw, caffe, tf, torch, unit (default: the model's)\n"
    "  --batch N              images per forward pass (default 8)\n"
    "  --threads N            threads (0: all cores)\n"
    "  --per-class            the per-class table also for models of more than 50 classes\n"
    "                         (classes with samples or predictions only)\n"
    "  --json                 one JSON object instead of text\n"
    "  --report FILE.html     also one self-contained HTML page: confusion matrix (models of\n"
    "                         at most 50 classes), per-class recall and precision, the worst-\n"
    "                         misclassified images with their top-3 (docs/report.md)\n"
    "  -h, --help             this help\n\n"
    "Top-5 is shown for models of 5 classes or more. Models of at most 50 classes also get the\n"
    "per-class table (samples, recall, precision) and the confusion matrix (rows: true class,\n"
    "columns: predicted). Images that fail to decode are reported, skipped, and make the exit\n"
    "status 1. Under mpirun -np N the images are split across the N processes and rank 0\n"
    "prints.\n";

enum { EVAL_MAX_SAMPLES = 10000000, EVAL_MAX_BATCH = 256, EVAL_LINE = 8192 };
/* Up to this many classes the per-class table and the confusion matrix are always printed. */
enum { EVAL_SMALL = 50, EVAL_TOP_K = 5, EVAL_HEADER_NAME = 12 };

/* Image files and their class indices, from a labels TSV. */
typedef struct sample_list {
  char **paths;
  int *labels;
  int count, cap;
} sample_list;

typedef struct eval_args {
  cli_model_args model;
  const char *data, *labels_path, *report;
  cli_input_args input; /* --resize, --crop, --preprocess */
  int batch, json, per_class;
} eval_args;

/* What is printed, and the names of the model's outputs. */
typedef struct eval_report {
  const cn_evaluation *e;
  const cn_model *model;
  cn_labels *imagenet; /* names of a 1000-class model without its own */
  int per_class, matrix;
} eval_report;

static void samples_free(sample_list *s) {
  for (int i = 0; i < s->count; i++) free(s->paths[i]);
  free(s->paths);
  free(s->labels);
  *s = (sample_list){0};
}

static int samples_grow(sample_list *s) {
  int cap = s->cap ? s->cap * 2 : 64;
  char **paths = realloc(s->paths, (size_t)cap * sizeof *paths);
  if (paths) s->paths = paths;
  int *labels = realloc(s->labels, (size_t)cap * sizeof *labels);
  if (labels) s->labels = labels;
  if (!paths || !labels) return cli_error("evaluate", "out of memory");
  s->cap = cap;
  return CLI_OK;
}

/* Adds dir/name. */
static int samples_add(sample_list *s, const char *dir, const char *name, int label) {
  if (s->count >= EVAL_MAX_SAMPLES) return cli_error(dir, "more than %d images", EVAL_MAX_SAMPLES);
  if (s->count == s->cap && samples_grow(s) != CLI_OK) return CLI_FAILED;
  size_t n = strlen(dir) + 1 + strlen(name) + 1;
  char *path = malloc(n);
  if (!path) return cli_error("evaluate", "out of memory");
  snprintf(path, n, "%s/%s", dir, name);
  s->paths[s->count] = path;
  s->labels[s->count++] = label;
  return CLI_OK;
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

/* ---- running ------------------------------------------------------------------------------- */

static void print_skipped(void *ctx, const char *line) {
  (void)ctx;
  cli_message(line);
}

/* The library's error after an evaluation, which under mpirun every rank returned alike: rank 0
 * tells it. */
static int evaluation_error(void) {
  return cli_is_main_rank() ? cli_lib_error() : CLI_FAILED;
}

/* *together: set once the library's evaluation ran (under mpirun, on every rank together). */
static int evaluate_tsv(cn_model *model, const eval_args *a, const char *tsv,
                        const cn_evaluate_options *o, cn_evaluation **e, int *together) {
  sample_list s = {0};
  int rc = read_labels_tsv(a->data, tsv, &s);
  if (rc == CLI_OK && s.count == 0) rc = cli_error(tsv, "no images listed");
  if (rc == CLI_OK) {
    *together = 1;
    if (cn_evaluate_files(model, s.count, (const char *const *)s.paths, s.labels, o, e) != CN_OK)
      rc = evaluation_error();
  }
  samples_free(&s);
  return rc;
}

/* Class folders through the library's scan and name matching, else a labels TSV. */
static int evaluate_data(cn_model *model, const eval_args *a, const cn_evaluate_options *o,
                         cn_evaluation **e, int *together) {
  struct stat sb;
  if (stat(a->data, &sb) != 0) return cli_error(a->data, "%s", strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return cli_error(a->data, "not a directory");
  if (a->labels_path) return evaluate_tsv(model, a, a->labels_path, o, e, together);
  /* Class folders as training reads them, but one class, empty ones or none are fine here. */
  cn_dataset *ds = NULL;
  if (cn_dataset_scan_dir(a->data, CN_SCAN_ONE_CLASS | CN_SCAN_EMPTY_CLASS | CN_SCAN_NO_CLASSES,
                          &ds) != CN_OK)
    return cli_lib_error();
  char tsv[4096];
  snprintf(tsv, sizeof tsv, "%s/labels.tsv", a->data);
  int rc = CLI_OK;
  if (cn_dataset_class_count(ds) > 0) {
    *together = 1;
    if (cn_evaluate(model, ds, o, e) != CN_OK) rc = evaluation_error();
  } else if (stat(tsv, &sb) == 0) {
    rc = evaluate_tsv(model, a, tsv, o, e, together);
  }
  cn_dataset_free(ds);
  if (rc == CLI_OK && cn_evaluation_images(*e) + cn_evaluation_skipped(*e) == 0)
    rc = cli_is_main_rank() || !*together
             ? cli_error(a->data, "no images (want class folders or a labels TSV)")
             : CLI_FAILED;
  return rc;
}

/* ---- printing ------------------------------------------------------------------------------ */

/* The name of output c: the model's own, the ImageNet one, or its index. */
static const char *class_name(const eval_report *r, int c, char *buf, size_t cap) {
  const char *name = NULL;
  if (cn_model_class_count(r->model) > 0)
    name = cn_model_class_name(r->model, c);
  else if (r->imagenet)
    name = cn_labels_name(r->imagenet, (size_t)c);
  if (name) return name;
  snprintf(buf, cap, "%d", c);
  return buf;
}

/* Whether class c gets a per-class row: always for small models, else when it took part. */
static int class_shown(const eval_report *r, int c) {
  return cn_evaluation_class_count(r->e) <= EVAL_SMALL || cn_evaluation_samples(r->e, c) > 0 ||
         cn_evaluation_predicted(r->e, c) > 0;
}

static double percent(int64_t part, int64_t whole) {
  return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static double rate(const cn_evaluation *e) {
  double s = cn_evaluation_seconds(e);
  return s > 0 ? (double)cn_evaluation_images(e) / s : 0.0;
}

static void json_fraction(const char *key, double v) {
  if (isnan(v))
    printf(",\"%s\":null", key);
  else
    printf(",\"%s\":%.4f", key, v);
}

static void json_per_class(const eval_report *r) {
  const cn_evaluation *e = r->e;
  char buf[32];
  int first = 1;
  fputs(",\"per_class\":[", stdout);
  for (int c = 0; c < cn_evaluation_class_count(e); c++) {
    if (!class_shown(r, c)) continue;
    printf("%s{\"index\":%d,\"class\":", first ? "" : ",", c);
    cli_json_string(stdout, class_name(r, c, buf, sizeof buf));
    printf(",\"samples\":%lld,\"correct\":%lld,\"predicted\":%lld",
           (long long)cn_evaluation_samples(e, c), (long long)cn_evaluation_confusion(e, c, c),
           (long long)cn_evaluation_predicted(e, c));
    json_fraction("recall", cn_evaluation_recall(e, c));
    json_fraction("precision", cn_evaluation_precision(e, c));
    putchar('}');
    first = 0;
  }
  putchar(']');
}

static void json_confusion(const cn_evaluation *e) {
  int n = cn_evaluation_class_count(e);
  fputs(",\"confusion\":[", stdout);
  for (int t = 0; t < n; t++) {
    printf("%s[", t ? "," : "");
    for (int p = 0; p < n; p++)
      printf("%s%lld", p ? "," : "", (long long)cn_evaluation_confusion(e, t, p));
    putchar(']');
  }
  putchar(']');
}

static void print_json(const eval_report *r) {
  const cn_evaluation *e = r->e;
  int64_t images = cn_evaluation_images(e);
  printf("{\"images\":%lld,\"classes\":%d,\"top1\":%.4f,\"top1_correct\":%lld", (long long)images,
         cn_evaluation_class_count(e), cn_evaluation_accuracy(e),
         (long long)cn_evaluation_correct(e));
  if (cn_evaluation_class_count(e) >= EVAL_TOP_K)
    printf(",\"top5\":%.4f,\"top5_correct\":%lld", cn_evaluation_top_k_accuracy(e),
           (long long)cn_evaluation_top_k_correct(e));
  printf(",\"images_per_second\":%.3f,\"seconds\":%.3f,\"skipped\":%lld", rate(e),
         cn_evaluation_seconds(e), (long long)cn_evaluation_skipped(e));
  if (r->per_class) json_per_class(r);
  if (r->matrix) json_confusion(e);
  puts("}");
}

static void print_percent_cell(double fraction) {
  if (isnan(fraction))
    printf(" %10s", "-");
  else
    printf(" %9.2f%%", 100.0 * fraction);
}

/* Width of the class-name column: the longest name shown, at least that of "class". */
static int name_width(const eval_report *r) {
  char buf[32];
  int width = 5;
  for (int c = 0; c < cn_evaluation_class_count(r->e); c++) {
    int len = (int)strlen(class_name(r, c, buf, sizeof buf));
    if (class_shown(r, c) && len > width) width = len;
  }
  return width;
}

static void print_per_class(const eval_report *r) {
  const cn_evaluation *e = r->e;
  char buf[32];
  int w = name_width(r);
  printf("\n%5s  %-*s %8s %8s %10s %10s\n", "#", w, "class", "samples", "correct", "recall",
         "precision");
  for (int c = 0; c < cn_evaluation_class_count(e); c++) {
    if (!class_shown(r, c)) continue;
    printf("%5d  %-*s %8lld %8lld", c, w, class_name(r, c, buf, sizeof buf),
           (long long)cn_evaluation_samples(e, c), (long long)cn_evaluation_confusion(e, c, c));
    print_percent_cell(cn_evaluation_recall(e, c));
    print_percent_cell(cn_evaluation_precision(e, c));
    putchar('\n');
  }
}

/* Rows: true class (name), columns: predicted, headed by the names when they are short, else by
 * the class numbers of the per-class table. */
static void print_matrix(const eval_report *r) {
  const cn_evaluation *e = r->e;
  int n = cn_evaluation_class_count(e), w = name_width(r), by_name = w <= EVAL_HEADER_NAME;
  char buf[32], count[24];
  int cell = by_name ? w : 5;
  for (int t = 0; t < n; t++)
    for (int p = 0; p < n; p++) {
      int len = snprintf(count, sizeof count, "%lld", (long long)cn_evaluation_confusion(e, t, p));
      if (len > cell) cell = len;
    }
  printf("\nconfusion (rows: true class, columns: predicted%s):\n%*s",
         by_name ? "" : " class number", w, "");
  for (int p = 0; p < n; p++) {
    if (by_name)
      printf(" %*s", cell, class_name(r, p, buf, sizeof buf));
    else
      printf(" %*d", cell, p);
  }
  putchar('\n');
  for (int t = 0; t < n; t++) {
    printf("%-*s", w, class_name(r, t, buf, sizeof buf));
    for (int p = 0; p < n; p++) printf(" %*lld", cell, (long long)cn_evaluation_confusion(e, t, p));
    putchar('\n');
  }
}

static void print_text(const eval_report *r) {
  const cn_evaluation *e = r->e;
  int64_t images = cn_evaluation_images(e);
  printf("images:   %lld\n", (long long)images);
  printf("top-1:    %.2f%% (%lld)\n", percent(cn_evaluation_correct(e), images),
         (long long)cn_evaluation_correct(e));
  if (cn_evaluation_class_count(e) >= EVAL_TOP_K)
    printf("top-5:    %.2f%% (%lld)\n", percent(cn_evaluation_top_k_correct(e), images),
           (long long)cn_evaluation_top_k_correct(e));
  printf("speed:    %.2f images/s (%.2f s)\n", rate(e), cn_evaluation_seconds(e));
  printf("skipped:  %lld\n", (long long)cn_evaluation_skipped(e));
  if (r->per_class) print_per_class(r);
  if (r->matrix) print_matrix(r);
}

static int print_report(const cn_model *model, const cn_evaluation *e, const eval_args *a) {
  int classes = cn_evaluation_class_count(e);
  eval_report r = {.e = e,
                   .model = model,
                   .per_class = classes <= EVAL_SMALL || a->per_class,
                   .matrix = classes <= EVAL_SMALL};
  if (cn_model_class_count(model) == 0 && cn_labels_imagenet(&r.imagenet) == CN_OK &&
      cn_labels_count(r.imagenet) != (size_t)classes) {
    cn_labels_free(r.imagenet); /* not an ImageNet head: numbers serve as names */
    r.imagenet = NULL;
  }
  if (a->json)
    print_json(&r);
  else
    print_text(&r);
  cn_labels_free(r.imagenet);
  return CLI_OK;
}

static int write_report(const eval_args *a, const cn_model *model, const cn_evaluation *e) {
  char model_line[4200], data_line[4200];
  snprintf(model_line, sizeof model_line, "model: %s",
           a->model.model ? a->model.model : cn_model_name(model));
  snprintf(data_line, sizeof data_line, "data: %s", a->data);
  cli_report_args r = {.path = a->report,
                       .title = "convnet evaluate",
                       .evaluation_name = "images",
                       .notes = {model_line, data_line},
                       .n_notes = 2};
  return cli_write_report(&r, model, NULL, e);
}

static int parse_args(int argc, char **argv, eval_args *a) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"data", required_argument, NULL, 'd'},
                                          {"labels", required_argument, NULL, 'l'},
                                          CLI_INPUT_LONG_OPTIONS,
                                          {"batch", required_argument, NULL, 'b'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"per-class", no_argument, NULL, 'P'},
                                          {"report", required_argument, NULL, 'R'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (cli_model_option("evaluate", opt, optarg, &a->model, &rc) ||
        cli_input_option("evaluate", opt, optarg, &a->input, &rc)) {
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
    case 'j':
      a->json = 1;
      break;
    case 'P':
      a->per_class = 1;
      break;
    case 'R':
      a->report = optarg;
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
  return cli_check_output(a->report, 0);
}

int cmd_evaluate(int argc, char **argv) {
  eval_args a = {.model = {.need_weights = 1}, .batch = 8};
  int rc = parse_args(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  cn_model *model;
  if ((rc = cli_open_model("evaluate", &a.model, &model)) != CLI_OK) return rc;
  cn_input_spec spec = cn_model_input_spec(model);
  cli_input_apply(&a.input, &spec);
  cn_evaluate_options o = {.spec = &spec,
                           .batch = a.batch,
                           .top_k = EVAL_TOP_K,
                           .worst = a.report ? CLI_REPORT_WORST : 0,
                           .message = print_skipped,
                           .group = cli_group};
  cn_evaluation *e = NULL;
  int together = 0;
  rc = evaluate_data(model, &a, &o, &e, &together);
  if (rc == CLI_OK && cli_is_main_rank()) rc = print_report(model, e, &a);
  if (rc == CLI_OK && a.report && cli_is_main_rank()) rc = write_report(&a, model, e);
  if (rc == CLI_OK && cn_evaluation_skipped(e)) rc = CLI_FAILED;
  if (together) rc = cli_agree_status(rc);
  cn_evaluation_free(e);
  cn_model_free(model);
  return rc;
}
