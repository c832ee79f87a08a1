/* Shared helpers of the convnet subcommands: one-line errors, option parsing, model opening. */
#ifndef CONVNET_CLI_H
#define CONVNET_CLI_H

#include <stdio.h>

#include "convnet/convnet.h"

enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* The process group of an mpirun job (convnet/dist.h), NULL when this process runs alone. Under
 * mpirun, messages name the rank ("convnet: rank 1 of 2: ..."), and rank 0 alone writes outputs
 * and prints results. */
extern cn_group *cli_group;
/* 1 on the process that writes outputs and prints results (rank 0, or the only one). */
int cli_is_main_rank(void);
/* Set when every rank of the job has agreed on the command's exit status (cli_agree_status):
 * main then leaves the job normally, with that status, instead of aborting it (MPI_Abort, which
 * is for a rank that failed alone while the others may wait for it). */
extern int cli_finished_together;
/* Called by every rank at the same point, once no collective call is left: the highest of the
 * ranks' statuses, on every rank (rc itself without a group). Sets cli_finished_together. */
int cli_agree_status(int rc);

/* "convnet: [rank R of N: ]<line>" on stderr in one write, so that the lines of the ranks of an
 * mpirun job, which share the stream, never interleave within a line. */
void cli_message(const char *line);
/* "convnet: <subject>: <what>" on stderr; returns CLI_FAILED. */
int cli_error(const char *subject, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "convnet: <cn_last_error()>" on stderr (library messages already name the file); returns
 * CLI_FAILED. */
int cli_lib_error(void);
/* "convnet: <command>: <what> (see convnet <command> --help)"; returns CLI_USAGE. */
int cli_usage(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports getopt's '?' and ':' results for argv as a usage error. */
int cli_bad_option(const char *command, int result, char **argv);

/* An output the command will write to `path` (a file, or with is_folder a folder it fills):
 * the folder it goes into must exist and be writable, checked before any work starts so that a
 * typo fails at once, not after an epoch. NULL passes. Returns CLI_OK or CLI_FAILED after a
 * one-line error naming the folder. */
int cli_check_output(const char *path, int is_folder);

/* Parse a flag value; on a bad value print a usage error and return 0. */
int cli_parse_int(const char *command, const char *flag, const char *text, int min, int max,
                  int *out);
int cli_parse_double(const char *command, const char *flag, const char *text, double min,
                     double max, double *out);

/* How -m/-w/--alpha and the summary's architecture flags pick a model. */
typedef struct cli_model_args {
  const char *model;   /* zoo name or model file; NULL: efficientnet_lite0 (classify) */
  const char *weights; /* -w */
  double alpha;        /* 0: default */
  int no_top;
  const char *pooling;
  int height, width; /* 0: default */
  int need_weights;  /* a zoo model without -w takes the fetched weights from the cache */
  /* Values for the graph inputs of a model file (convnet run), n_values of them: inputs that
   * define shapes are bound to them (cn_model_load_inputs). */
  cn_input_value *values;
  int n_values;
  cn_precision precision; /* --precision fp32|bf16 */
} cli_model_args;

/* Every command chooses a model's algorithms as for a batch of this many images
 * (cn_model_set_algorithm_batch), whatever batch it runs: an image's result is then the same bits
 * from classify, evaluate, embed, explain and serve, alone or with others, under any load. */
enum { CLI_ALGORITHM_BATCH = 8 };

/* Opens the model as args say (precision and algorithm batch set); prints the error itself and
 * returns CLI_FAILED or CLI_USAGE. */
int cli_open_model(const char *command, const cli_model_args *args, cn_model **out);

/* Long options and parsing of "--threads N" shared by the commands that run a model. */
int cli_set_threads(const char *command, const char *text);

/* The model options every model command shares: -m, -w, --alpha (option codes 'm', 'w', 'a').
 * Returns 1 when opt is one of them, with *rc = CLI_USAGE for a bad value, else CLI_OK. */
int cli_model_option(const char *command, int opt, const char *arg, cli_model_args *a, int *rc);
/* The getopt_long loop of a command that opens a model: --help prints `help` and returns
 * CLI_HELP; -m/-w/--alpha go to `model` (cli_model_option); a missing value or an unknown option
 * is a usage error; every other option goes to own(cmd, opt, argv), which returns CLI_OK or the
 * exit status of its error. Leaves optind at the first operand. */
enum { CLI_HELP = -1 };
typedef int (*cli_option_fn)(void *cmd, int opt, char **argv);
struct option;
int cli_parse_model_command(const char *command, const char *help, int argc, char **argv,
                            const char *short_options, const struct option *options,
                            cli_model_args *model, cli_option_fn own, void *cmd);
/* Their entries for a command's getopt_long table. */
enum { CLI_OPT_PRECISION = 3090 };
#define CLI_MODEL_LONG_OPTIONS                                                                     \
  {"model", required_argument, NULL, 'm'}, {"weights", required_argument, NULL, 'w'},              \
      {"alpha", required_argument, NULL, 'a'}, {                                                   \
    "precision", required_argument, NULL, CLI_OPT_PRECISION                                        \
  }

/* ---- --resize P, --crop F, --preprocess M: how classify, evaluate and train override the
 * model's input spec for the images they read (one parser, one meaning) ---- */
enum { CLI_OPT_RESIZE = 3100, CLI_OPT_CENTER_CROP, CLI_OPT_PREPROCESS, CLI_OPT_DECODE };
#define CLI_INPUT_LONG_OPTIONS                                                                     \
  {"resize", required_argument, NULL, CLI_OPT_RESIZE},                                             \
      {"preprocess", required_argument, NULL, CLI_OPT_PREPROCESS},                                 \
      {"decode", required_argument, NULL, CLI_OPT_DECODE}, {                                       \
    "crop", required_argument, NULL, CLI_OPT_CENTER_CROP                                           \
  }
typedef struct cli_input_args {
  int have_resize, have_preprocess, have_decoder;
  cn_resize resize;
  cn_preprocess preprocess;
  cn_decoder decoder;
  double crop; /* the central fraction kept; 0: the model's */
} cli_input_args;
/* Returns 1 when opt is one of the three, with *rc = CLI_USAGE after a one-line error for a bad
 * value, else CLI_OK; 0 when it is not one. */
int cli_input_option(const char *command, int opt, const char *arg, cli_input_args *a, int *rc);
/* Overrides the fields of spec the flags gave. */
void cli_input_apply(const cli_input_args *a, cn_input_spec *spec);
/* 1 when model (a zoo name or path) is a Keras model: a keras.applications zoo model or a
 * .h5/.keras/.json file. */
int cli_is_keras_model(const char *model);

/* 1 when the model carries one class name per output (a .cnm from training). */
int cli_has_own_names(const cn_model *model);
/* Class names: labels_path (--labels), else the model's own names (*labels NULL), else ImageNet's
 * for 1000 outputs; checks that the output is a vector of as many classes. Prints the error. */
int cli_load_labels(const char *labels_path, const cn_model *model, cn_labels **labels);
/* The name of class c by those rules, else "class c" written into buf. */
const char *cli_class_name(const cn_labels *labels, const cn_model *model, size_t c, char *buf,
                           size_t cap);

/* ---- classification results (cli_results.c), as classify and serve print them ---- */
enum { CLI_MAX_TOP = 1000 };
typedef struct cli_top_opts {
  int k, json;
  const cn_labels *labels; /* --labels or ImageNet; NULL: the model's class names or "class N" */
  const cn_model *named;   /* the model when its own class names label the outputs */
} cli_top_opts;
/* The k most likely classes of one image: "FILE" and lines "  1. 0.8123  name (id)", or with
 * json one line {"file":..,"top":[{"index":..,"id":..,"label":..,"prob":..},..]}. */
void cli_print_top(FILE *out, const char *file, const float *probs, size_t n,
                   const cli_top_opts *o);
/* s as a JSON string literal, quotes included. */
void cli_json_string(FILE *out, const char *s);

/* --profile (cli_profile.c): times every layer over `iterations` forward passes of batch samples
 * and prints a table (ms, share, GFLOP, GFLOP/s, share of the CPU's fp32 peak) on stdout. */
int cli_print_profile(cn_model *model, int batch, const float *const *inputs, int iterations);

/* Grad-CAM pictures for `convnet explain` and `classify --explain` (cmd_explain.c). */
typedef struct cli_explain_args {
  const char *dir;   /* one PNG per image written here */
  const char *layer; /* NULL: the last spatial layer */
  int class_index;   /* < 0: the top class */
  int quiet;         /* 1: no line per picture on stdout (classify prints its own) */
  int made_dir;      /* set by cli_explain_prepare when it made dir */
} cli_explain_args;
/* Writes DIR/<image name>.png for each image; returns the number of images that failed. */
int cli_explain_images(cn_model *model, const cn_input_spec *spec, const cn_labels *labels,
                       const cli_explain_args *a, char **files, int n);
/* Refuses two images whose pictures would have the same name in dir, and makes dir. */
int cli_explain_prepare(cli_explain_args *a, char **files, int n);
/* Removes dir again when cli_explain_prepare made it and no picture went there. */
void cli_explain_finish(const cli_explain_args *a);

/* ---- embed and similar (cmd_embed.c): a model, a layer, the image pipeline, a cache ---- */
enum { CLI_OPT_LAYER = 3200, CLI_OPT_CACHE, CLI_OPT_THREADS };
#define CLI_EMBED_LONG_OPTIONS                                                                     \
  {"layer", required_argument, NULL, CLI_OPT_LAYER},                                               \
      {"cache", required_argument, NULL, CLI_OPT_CACHE}, {                                         \
    "threads", required_argument, NULL, CLI_OPT_THREADS                                            \
  }
typedef struct cli_embed_args {
  cli_model_args model;
  cli_input_args input;
  const char *layer;     /* NULL: the classifier's input features */
  const char *cache_dir; /* NULL: no cache */
} cli_embed_args;
/* -m/-w/--alpha, --resize/--crop/--preprocess, --layer, --cache, --threads: returns 1 when opt
 * is one of them, with *rc = CLI_USAGE after a one-line error for a bad value. */
int cli_embed_option(const char *command, int opt, const char *arg, cli_embed_args *a, int *rc);
/* The embedder of a's layer, input overrides and cache; prints the error itself. */
int cli_open_embedder(const char *command, cn_model *model, const cli_embed_args *a,
                      cn_embedder **out);

/* ---- image folders (similar, fid: cli_files.c) ---- */
typedef struct cli_file_list {
  char **paths;
  int n, cap;
} cli_file_list;
/* The image files below dir and its sub-folders (jpg, jpeg, png, bmp, ppm, pgm, any case; names
 * starting with '.' skipped), in byte order of their paths, appended to l. Prints the error
 * itself: dir missing or not a folder, or without images. */
int cli_list_images(const char *dir, cli_file_list *l);
/* The images the operands of classify or embed name: a folder stands for its images (as
 * cli_list_images lists them, in their place among the operands), anything else for itself. */
int cli_expand_images(char *const *operands, int n, cli_file_list *l);
void cli_file_list_free(cli_file_list *l);

/* ---- style and analogy (cli_synth.c) ---- */

/* Opens the feature network: -m as given, else VGG19 or VGG16 when their weights are cached,
 * else EfficientNet-Lite0. A zoo model is built at the working size: the reference image's
 * size scaled down so that its longer side is at most max_side; a model file keeps its input
 * size. Prints the error itself. */
int cli_synth_model(const char *command, cli_model_args *args, const char *reference, int max_side,
                    cn_model **model, int *height, int *width);
/* Loads an image resized to width x height (PIL-style bilinear). Prints the error itself. */
int cli_synth_image(const char *path, int width, int height, cn_image *out);
/* A progress bar on stderr (when it is a terminal), one update per L-BFGS iteration. */
void cli_synth_progress(const cn_synth_progress *p, void *user);
/* Parses "NAME" or "NAME:WEIGHT" (a layer and its weight). Prints a usage error. */
int cli_synth_layer(const char *command, const char *text, const char **name, double *weight,
                    char *buf, size_t cap);

/* ---- --report, shared by train and evaluate (cli_report.c) ---- */

/* Thumbnails of this many worst-misclassified images. */
enum { CLI_REPORT_WORST = 24 };

/* The epochs of a training run, as its progress callback reports them. */
typedef struct cli_epoch {
  char phase[32];
  int epoch;
  double loss, accuracy, val_loss, val_accuracy;
} cli_epoch;
typedef struct cli_history {
  cli_epoch *epochs;
  int n, cap;
} cli_history;
void cli_history_add(cli_history *h, const cn_train_progress *p);
void cli_history_free(cli_history *h);

typedef struct cli_report_args {
  const char *path, *title, *evaluation_name;
  const char *notes[4];
  int n_notes;
} cli_report_args;
/* Writes the report (h and e may be NULL) and prints "wrote PATH"; prints the error itself. */
int cli_write_report(const cli_report_args *a, const cn_model *model, const cli_history *h,
                     const cn_evaluation *e);

/* ---- augmentation flags, shared by train and augment ---- */

enum {
  CLI_OPT_FLIP = 3000,
  CLI_OPT_VFLIP,
  CLI_OPT_ROTATION,
  CLI_OPT_SHIFT,
  CLI_OPT_WIDTH_SHIFT,
  CLI_OPT_HEIGHT_SHIFT,
  CLI_OPT_ZOOM,
  CLI_OPT_SHEAR,
  CLI_OPT_FILL,
  CLI_OPT_CVAL,
  CLI_OPT_BRIGHTNESS,
  CLI_OPT_CONTRAST,
  CLI_OPT_CHANNEL_SHIFT,
  CLI_OPT_TINT,
  CLI_OPT_HUE,
  CLI_OPT_BLUR,
  CLI_OPT_CROP,
  CLI_OPT_CROP_SCALE,
  CLI_OPT_CROP_RATIO
};

/* Entries for a command's getopt_long table. */
#define CLI_AUGMENT_LONG_OPTIONS                                                                   \
  {"flip", no_argument, NULL, CLI_OPT_FLIP}, {"vflip", no_argument, NULL, CLI_OPT_VFLIP},          \
      {"rotation", required_argument, NULL, CLI_OPT_ROTATION},                                     \
      {"shift", required_argument, NULL, CLI_OPT_SHIFT},                                           \
      {"width-shift", required_argument, NULL, CLI_OPT_WIDTH_SHIFT},                               \
      {"height-shift", required_argument, NULL, CLI_OPT_HEIGHT_SHIFT},                             \
      {"zoom", required_argument, NULL, CLI_OPT_ZOOM},                                             \
      {"shear", required_argument, NULL, CLI_OPT_SHEAR},                                           \
      {"fill", required_argument, NULL, CLI_OPT_FILL},                                             \
      {"cval", required_argument, NULL, CLI_OPT_CVAL},                                             \
      {"brightness", required_argument, NULL, CLI_OPT_BRIGHTNESS},                                 \
      {"contrast", required_argument, NULL, CLI_OPT_CONTRAST},                                     \
      {"channel-shift", required_argument, NULL, CLI_OPT_CHANNEL_SHIFT},                           \
      {"tint", required_argument, NULL, CLI_OPT_TINT},                                             \
      {"hue", required_argument, NULL, CLI_OPT_HUE},                                               \
      {"blur", required_argument, NULL, CLI_OPT_BLUR},                                             \
      {"crop", required_argument, NULL, CLI_OPT_CROP},                                             \
      {"crop-scale", required_argument, NULL, CLI_OPT_CROP_SCALE}, {                               \
    "crop-ratio", required_argument, NULL, CLI_OPT_CROP_RATIO                                      \
  }

/* The flags' lines for a command's --help. */
extern const char cli_augment_help[];
/* Returns 1 when opt is an augmentation flag, with *rc = CLI_USAGE after printing why for a bad
 * value, else CLI_OK; 0 when it is not one. */
int cli_augment_option(const char *command, int opt, const char *arg, cn_augment *a, int *rc);
/* After parsing: the combination checked by cn_augment_check, as a usage error. */
int cli_augment_finish(const char *command, const cn_augment *a);

int cmd_augment(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_style(int argc, char **argv);
int cmd_analogy(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_fid(int argc, char **argv);
int cmd_similar(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
