/* convnet classify: top-k classes of images, as text or one JSON object per image. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char classify_help[] =
    "usage: convnet classify [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--precision P] [-k K]\n"
    "                        [--labels F]\n"
    "                        [--resize P] [--crop F] [--preprocess M] [--threads N] [--json]\n"
    "                        [--explain DIR] [--profile N] IMAGE...\n\n"
    "Prints the k most likely classes of each image (JPEG, PNG, BMP, PPM/PGM).\n\n"
    "  -m, --model NAME|FILE  zoo name (vgg16, vgg19, inception_v3, resnet50, mobilenet,\n"
    "                         mobilenet_v2, efficientnet_lite0/1/2) or model file (.cnm,\n"
    "                         .h5 full model, .json with -w, .onnx); default: efficientnet_lite0\n"
    "                         with the weights from scripts/fetch_efficientnet_lite.sh\n"
    "  -w, --weights FILE     weights (default for a zoo model: the fetched ones in the cache;\n"
    "                         Keras models: `convnet fetch NAME`; efficientnet_liteN:\n"
    "                         `bash scripts/fetch_efficientnet_lite.sh N`)\n"
    "  --alpha A              MobileNet width multiplier (0.25, 0.5, 0.75, 1.0)\n"
    "  --precision P          fp32 (default) or bf16: convolution and dense weights and their\n"
    "                         inputs rounded to bfloat16, fp32 sums (docs/precision.md)\n"
    "  -k, --top K            classes shown per image (default 5)\n"
    "  --labels FILE          class names: synset_words.txt, imagenet_class_index.json or one\n"
    "                         name per line (default: the model's own class names (.cnm),\n"
    "                         else ImageNet for 1000 classes, else class N)\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear, tf-bilinear (default: the\n"
    "                         model's)\n"
    "  --decode pil|tf        decode as PIL or tf.io.decode_image (default: the model's)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1\n"
    "  --preprocess M         raw, caffe, tf, torch, unit (default: the model's)\n"
    "  --threads N            threads (0: all cores)\n"
    "  --json                 one JSON object per image per line\n"
    "  --explain DIR          also write DIR/<image name>.png: a Grad-CAM heat map of the top\n"
    "                         class over the photo (see convnet explain --help)\n"
    "  --profile N            then time every layer over N forward passes of the first batch\n"
    "                         (up to 8 images): ms, share, GFLOP/s, share of the CPU's fp32 peak\n"
    "  -h, --help             this help\n\n"
    "Under mpirun -np N the images are split across the N processes and rank 0 prints.\n";

enum { CLASSIFY_BATCH = 8 };

/* Decodes and prepares up to CLASSIFY_BATCH images into input, one after the other; ok[i] says
 * which did (the others' errors printed). Returns how many did. */
static int prepare_batch(const cn_input_spec *spec, char **files, int n, float *input, int *ok) {
  size_t in_numel = (size_t)spec->height * spec->width * spec->channels;
  int good = 0;
  for (int i = 0; i < n; i++) {
    cn_image image = {0};
    ok[i] = cn_image_load_spec(files[i], spec, &image) == CN_OK &&
            cn_image_prepare(&image, spec, input + (size_t)good * in_numel) == CN_OK;
    cn_image_free(&image);
    if (ok[i])
      good++;
    else
      cli_lib_error();
  }
  return good;
}

static int classify_batch(cn_model *model, const cn_input_spec *spec, char **files, int n,
                          float *input, float *output, const cli_top_opts *o, FILE *out) {
  cn_shape out_shape = cn_model_output_shape(model);
  size_t classes = (size_t)cn_shape_numel(&out_shape);
  int ok[CLASSIFY_BATCH];
  int good = prepare_batch(spec, files, n, input, ok), failed = n - good;
  if (good && cn_model_forward(model, good, input, output) != CN_OK) {
    cli_lib_error();
    return n;
  }
  for (int i = 0, j = 0; i < n; i++)
    if (ok[i]) cli_print_top(out, files[i], output + (size_t)j++ * classes, classes, o);
  return failed;
}

typedef struct classify_args {
  cli_model_args model;
  const char *labels_path;
  const char *explain_dir; /* --explain: Grad-CAM pictures of the top classes go there */
  cli_input_args input;    /* --resize, --crop, --preprocess */
  cli_top_opts out;
  int profile; /* --profile N: forward passes timed per layer; 0: none */
} classify_args;

/* The results of n images printed to out; returns the number of images that failed. */
static int classify_images(cn_model *model, const cn_input_spec *spec, char **files, int n,
                           const cli_top_opts *o, FILE *out) {
  cn_shape shape = cn_model_output_shape(model);
  size_t in_numel = (size_t)spec->height * spec->width * spec->channels;
  float *input = malloc(CLASSIFY_BATCH * in_numel * sizeof *input);
  float *output = malloc(CLASSIFY_BATCH * (size_t)shape.dim[0] * sizeof *output);
  int failed = 0;
  if (!input || !output) failed = cli_error("classify", "out of memory");
  for (int i = 0; input && output && i < n; i += CLASSIFY_BATCH)
    failed +=
        classify_batch(model, spec, files + i, n - i < CLASSIFY_BATCH ? n - i : CLASSIFY_BATCH,
                       input, output, o, out);
  free(input);
  free(output);
  return failed;
}

/* --explain: rank 0 checks the picture names of all n images and makes the folder; then each
 * rank draws its own share [first, first + count). Returns the failures. */
static int explain_share(cn_model *model, const cn_input_spec *spec, const cn_labels *labels,
                         cli_explain_args *ex, char **files, int n, int first, int count) {
  int rc = cli_is_main_rank() ? cli_explain_prepare(ex, files, n) : CLI_OK;
  if (cli_group && cn_group_broadcast(cli_group, &rc, sizeof rc, 0) != CN_OK) rc = cli_lib_error();
  if (rc != CLI_OK) return 1;
  return cli_explain_images(model, spec, labels, ex, files + first, count) != 0;
}

/* Under mpirun: every rank's lines to rank 0, which prints them in rank order, the input order. */
static int print_gathered(const char *lines, size_t len) {
  void *all = NULL;
  size_t total = 0;
  if (cn_group_gather(cli_group, lines, len, &all, &total) != CN_OK) return cli_lib_error();
  if (total) fwrite(all, 1, total, stdout);
  fflush(stdout);
  free(all);
  return CLI_OK;
}

/* Alone: the results as they come. Under mpirun: this rank's whole batches of the images,
 * printed into memory and gathered, so that stdout is that of one process. */
static int classify_all(cn_model *model, const classify_args *a, char **files, int n) {
  cn_input_spec spec = cn_model_input_spec(model);
  cli_input_apply(&a->input, &spec);
  cn_labels *labels = NULL;
  int rc = cli_load_labels(a->labels_path, model, &labels);
  cli_top_opts o = a->out;
  o.labels = labels;
  o.named = !labels && cli_has_own_names(model) ? model : NULL;
  int64_t first64, count64;
  cn_group_share_batches(n, CLASSIFY_BATCH, cn_group_rank(cli_group), cn_group_size(cli_group),
                         &first64, &count64);
  int first = (int)first64, count = (int)count64;
  char *lines = NULL;
  size_t len = 0;
  FILE *out = rc != CLI_OK ? NULL : cli_group ? open_memstream(&lines, &len) : stdout;
  if (rc == CLI_OK && !out) rc = cli_error("classify", "out of memory");
  cli_explain_args ex = {.dir = a->explain_dir, .class_index = -1, .quiet = 1};
  int failed = rc == CLI_OK ? classify_images(model, &spec, files + first, count, &o, out) : 0;
  if (rc == CLI_OK && a->explain_dir)
    failed += explain_share(model, &spec, labels, &ex, files, n, first, count);
  if (out && cli_group) {
    fclose(out);
    rc = print_gathered(lines, len);
  }
  free(lines);
  if (rc == CLI_OK) rc = cli_agree_status(failed ? CLI_FAILED : CLI_OK);
  if (a->explain_dir) cli_explain_finish(&ex); /* after every rank has drawn */
  cn_labels_free(labels);
  return rc;
}

/* --profile N: every layer timed over N forward passes of the first batch of images (those of
 * them that decode), after the results. */
static int profile_first_batch(cn_model *model, const classify_args *a, char **files, int n) {
  cn_input_spec spec = cn_model_input_spec(model);
  cli_input_apply(&a->input, &spec);
  int count = n < CLASSIFY_BATCH ? n : CLASSIFY_BATCH, ok[CLASSIFY_BATCH];
  float *input =
      malloc((size_t)CLASSIFY_BATCH * spec.height * spec.width * spec.channels * sizeof *input);
  if (!input) return cli_error("classify", "out of memory");
  int good = prepare_batch(&spec, files, count, input, ok);
  const float *inputs[1] = {input};
  int rc = good ? cli_print_profile(model, good, inputs, a->profile)
                : cli_error("classify", "--profile: none of the first images decoded");
  free(input);
  return rc;
}

/* Under mpirun only one process could read the standard input ("-"): refused by rank 0, with
 * every rank agreeing on the status. */
static int refuse_stdin_in_job(char **operands, int n) {
  for (int i = 0; cli_group && i < n; i++)
    if (strcmp(operands[i], "-") == 0) {
      int rc = CLI_FAILED;
      if (cli_is_main_rank())
        cli_error("-", "an image on standard input needs a single process, not mpirun -np N");
      return cli_agree_status(rc);
    }
  return CLI_OK;
}

int cmd_classify(int argc, char **argv) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"top", required_argument, NULL, 'k'},
                                          {"labels", required_argument, NULL, 'l'},
                                          CLI_INPUT_LONG_OPTIONS,
                                          {"threads", required_argument, NULL, 't'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"explain", required_argument, NULL, 'x'},
                                          {"profile", required_argument, NULL, 'p'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  classify_args a = {.model = {.need_weights = 1}, .out = {.k = 5}};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:k:h", options, NULL)) != -1) {
    if (cli_model_option("classify", opt, optarg, &a.model, &rc) ||
        cli_input_option("classify", opt, optarg, &a.input, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 'k':
      if (!cli_parse_int("classify", "-k", optarg, 1, CLI_MAX_TOP, &a.out.k)) return CLI_USAGE;
      break;
    case 'l':
      a.labels_path = optarg;
      break;
    case 't':
      if (!cli_set_threads("classify", optarg)) return CLI_USAGE;
      break;
    case 'j':
      a.out.json = 1;
      break;
    case 'x':
      a.explain_dir = optarg;
      break;
    case 'p':
      if (!cli_parse_int("classify", "--profile", optarg, 1, 100000, &a.profile)) return CLI_USAGE;
      break;
    case 'h':
      fputs(classify_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("classify", opt, argv);
    }
  }
  if (optind >= argc) return cli_usage("classify", "no IMAGE given");
  if ((rc = refuse_stdin_in_job(argv + optind, argc - optind)) != CLI_OK) return rc;
  if ((rc = cli_check_output(a.explain_dir, 1)) != CLI_OK) return rc;
  cli_file_list files = {0};
  cn_model *model = NULL;
  rc = cli_expand_images(argv + optind, argc - optind, &files);
  if (rc == CLI_OK) rc = cli_open_model("classify", &a.model, &model);
  if (rc == CLI_OK) rc = classify_all(model, &a, files.paths, files.n);
  if (rc == CLI_OK && a.profile && cli_is_main_rank())
    rc = profile_first_batch(model, &a, files.paths, files.n);
  cli_file_list_free(&files);
  cn_model_free(model);
  return rc;
}
