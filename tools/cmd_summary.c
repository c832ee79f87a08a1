/* convnet summary: a Keras-like table of a model's layers and its parameter totals. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char summary_help[] =
    "usage: convnet summary -m MODEL [-w WEIGHTS] [--alpha A] [--no-top] [--pooling avg|max]\n"
    "                       [--input-shape H,W,C]\n\n"
    "Prints each layer (name and type, output shape, parameters, inputs) and the parameter\n"
    "totals, as Keras' model.summary() does.\n\n"
    "  -m, --model MODEL      zoo name (vgg16, vgg19, inception_v3, resnet50, mobilenet,\n"
    "                         mobilenet_v2) or a model file (.cnm, .h5 full model, .json\n"
    "                         architecture, .onnx)\n"
    "  -w, --weights FILE     weights to load (not needed for counting parameters)\n"
    "  --alpha A              MobileNet width multiplier\n"
    "  --no-top               zoo model without the classifier (include_top=False)\n"
    "  --pooling avg|max      with --no-top: global pooling of the features\n"
    "  --input-shape H,W,C    zoo model input size (C must be 3)\n"
    "  -h, --help             this help\n";

/* "(None, 224, 224, 3)" for a per-sample shape. */
static void format_shape(const cn_shape *s, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(None");
  for (int i = 0; i < s->rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, ", %lld", (long long)s->dim[i]);
  if (n < cap) snprintf(buf + n, cap - n, ")");
}

/* 1234567 -> "1,234,567" */
static const char *with_commas(long long v, char *buf, size_t cap) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
  size_t o = 0;
  if (v < 0 && o + 1 < cap) buf[o++] = '-';
  for (int i = 0; i < n && o + 1 < cap; i++) {
    if (i && (n - i) % 3 == 0 && o + 1 < cap) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = '\0';
  return buf;
}

static void rule(char c) {
  for (int i = 0; i < 110; i++) putchar(c);
  putchar('\n');
}

static void print_layer(const cn_layer_info *info) {
  char name_type[256], shape[160], params[32], inputs[512] = "";
  snprintf(name_type, sizeof name_type, "%s (%s)", info->name, info->type);
  format_shape(&info->output, shape, sizeof shape);
  size_t n = 0;
  int shown = info->n_inputs < 8 ? info->n_inputs : 8;
  for (int i = 0; i < shown && n < sizeof inputs; i++)
    n += (size_t)snprintf(inputs + n, sizeof inputs - n, "%s%s", i ? ", " : "", info->inputs[i]);
  if (info->n_inputs > 8 && n < sizeof inputs) snprintf(inputs + n, sizeof inputs - n, ", ...");
  with_commas(info->params, params, sizeof params);
  if (inputs[0])
    printf(" %-38s %-26s %-12s %s\n", name_type, shape, params, inputs);
  else
    printf(" %-38s %-26s %s\n", name_type, shape, params);
}

/* The class names a model carries (a .cnm from training): the first few. */
static void print_classes(const cn_model *model) {
  enum { SHOWN = 10 };
  int n = cn_model_class_count(model);
  if (!n) return;
  printf("Classes: %d (", n);
  for (int i = 0; i < n && i < SHOWN; i++)
    printf("%s%s", i ? ", " : "", cn_model_class_name(model, i));
  printf("%s)\n", n > SHOWN ? ", ..." : "");
}

static int print_summary(const cn_model *model) {
  size_t count = cn_model_layer_count(model);
  long long total = 0, trainable = 0;
  printf("Model: \"%s\"\n", cn_model_name(model));
  rule('_');
  printf(" %-38s %-26s %-12s %s\n", "Layer (type)", "Output Shape", "Param #", "Connected to");
  rule('=');
  for (size_t i = 0; i < count; i++) {
    cn_layer_info info;
    if (cn_model_layer_info(model, i, &info) != CN_OK) return cli_lib_error();
    print_layer(&info);
    total += info.params;
    trainable += info.trainable;
  }
  rule('=');
  char buf[32];
  printf("Total params: %s\n", with_commas(total, buf, sizeof buf));
  printf("Trainable params: %s\n", with_commas(trainable, buf, sizeof buf));
  printf("Non-trainable params: %s\n", with_commas(total - trainable, buf, sizeof buf));
  print_classes(model);
  rule('_');
  return CLI_OK;
}

static int parse_input_shape(const char *text, cli_model_args *a) {
  int h, w, c;
  char tail;
  if (sscanf(text, "%d,%d,%d%c", &h, &w, &c, &tail) != 3 || h < 1 || w < 1 || h > 8192 || w > 8192)
    return cli_usage("summary", "--input-shape: expected H,W,C such as 224,224,3, got '%s'", text);
  if (c != 3) return cli_usage("summary", "--input-shape: zoo models take 3 channels");
  a->height = h;
  a->width = w;
  return CLI_OK;
}

int cmd_summary(int argc, char **argv) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          {"no-top", no_argument, NULL, 'T'},
                                          {"pooling", required_argument, NULL, 'p'},
                                          {"input-shape", required_argument, NULL, 'i'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  cli_model_args a = {0};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:h", options, NULL)) != -1) {
    if (cli_model_option("summary", opt, optarg, &a, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 'T':
      a.no_top = 1;
      break;
    case 'p':
      if (strcmp(optarg, "avg") != 0 && strcmp(optarg, "max") != 0)
        return cli_usage("summary", "--pooling: expected avg or max, got '%s'", optarg);
      a.pooling = optarg;
      break;
    case 'i':
      if ((rc = parse_input_shape(optarg, &a)) != CLI_OK) return rc;
      break;
    case 'h':
      fputs(summary_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("summary", opt, argv);
    }
  }
  if (optind != argc) return cli_usage("summary", "unexpected argument '%s'", argv[optind]);
  if (!a.model) return cli_usage("summary", "-m MODEL is required");
  if (a.pooling && !a.no_top) return cli_usage("summary", "--pooling needs --no-top");
  cn_model *model;
  if ((rc = cli_open_model("summary", &a, &model)) != CLI_OK) return rc;
  rc = print_summary(model);
  cn_model_free(model);
  return rc;
}
