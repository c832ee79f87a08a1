/* convnet train: transfer learning from the command line; a thin shell over cn_train. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char train_help[] =
    "usage: convnet train --base NAME|FILE [-w WEIGHTS] [--alpha A] --data DATA\n"
    "                     [--val DATA | --val-split F] --out MODEL.cnm [options]\n"
    "       convnet train --model FILE [--init] --data DATA ... (a whole model)\n\n"
    "Trains a new classifier head on a pretrained network (transfer learning), then optionally\n"
    "fine-tunes the top of the network; or, with --model, trains a whole model such as a Keras\n"
    "model.to_json() architecture from its initializers (Keras's model.fit).\n"
    "DATA is a folder with one sub-folder of images per class (classes are the folder names in\n"
    "byte order, and the trained model keeps them), or IDX files as MNIST ships them: a folder\n"
    "holding train-images-idx3-ubyte[.gz] (its t10k-* files validate), or an images file whose\n"
    "labels lie beside it (*-labels-idx1-*); IDX classes are the labels 0..max.\n\n"
    "model:\n"
    "  --base NAME|FILE       zoo name (mobilenet, efficientnet_lite0, ...) or model file\n"
    "  -w, --weights FILE     weights for a zoo base; --alpha A: MobileNet width\n"
    "  --model FILE           train this model as it is (no cut, no head); its output must be a\n"
    "                         softmax over the classes; --freeze defaults to none\n"
    "  --init                 draw its weights from its initializers first (--seed); the\n"
    "                         default for a Keras .json architecture, which has no weights\n"
    "  --cut LAYER            last base layer kept (default: the last spatial layer)\n"
    "  --head avg|max|flatten pooling of the head (default avg)\n"
    "  --dense N              a Dense(N, relu) hidden layer in the head\n"
    "  --dropout F            Dropout(F) before the classifier\n"
    "  --freeze all|none|LAYER  frozen part (default all: the whole base)\n"
    "images (as convnet classify; the trained model stores them, classify then uses them):\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear, tf-bilinear (default: the\n"
    "                         model's; tf-bilinear for a Keras base, as Keras's\n"
    "                         image_dataset_from_directory)\n"
    "  --decode pil|tf        decode files as PIL (load_img) or tf.io.decode_image does (default:\n"
    "                         pil; tf for a Keras base without --resize, as\n"
    "                         image_dataset_from_directory)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1 (default:\n"
    "                         the model's); --crop WxH is the random crop below\n"
    "  --preprocess MODE      the input pipeline's scaling: raw, unit (x/255), tf, caffe, torch\n"
    "                         (default: the model's; unit for a --model that has raw)\n"
    "data:\n"
    "  --val DIR              validation folder with the same classes\n"
    "  --val-split F          or hold out the fraction F of DIR (stratified, seeded)\n"
    "  --class-weights        weight classes by n / (classes * count)\n"
    "  --fatal-bad-images     stop at an undecodable image (default: skip, count, name it)\n";

/* After the augmentation flags (cli_augment_help). */
static const char train_help_rest[] =
    "optimisation:\n"
    "  --epochs N (10)  --batch N (32)  --optimizer sgd|adam|rmsprop (adam)\n"
    "  --lr F  --momentum F  --nesterov  --decay F  --weight-decay F  --clip-norm F\n"
    "  --schedule constant|cosine|step  --patience N (early stopping on val_loss)\n"
    "fine-tuning (after the head):\n"
    "  --fine-tune LAYER      train every layer after LAYER too (BatchNormalization stays frozen)\n"
    "  --fine-tune-lr F       its learning rate (default lr / 10)\n"
    "  --fine-tune-epochs N   its epochs (default --epochs)\n"
    "run:\n"
    "  --cache DIR            feature cache (default $CONVNET_CACHE/features or\n"
    "                         ~/.cache/convnet/features);  --no-cache: none\n"
    "  --seed N  --threads N  --log FILE (JSON lines)  --resume CKPT\n"
    "  --report FILE.html     one self-contained HTML page: loss and accuracy per epoch, and\n"
    "                         the final model on the validation images (folders only):\n"
    "                         confusion matrix, per-class recall and precision, the worst-\n"
    "                         misclassified images with their top-3 (docs/report.md)\n"
    "  -h, --help             this help\n\n"
    "Writes MODEL, MODEL.best.cnm (best validation loss) and MODEL.ckpt (after every epoch,\n"
    "atomically). After an interruption, run the same command with --resume MODEL.ckpt: the\n"
    "result is bit-identical to an uninterrupted run, for any --threads.\n\n"
    "Under `mpirun -np N convnet train ...` the training is data-parallel: each process decodes\n"
    "and runs its share of every batch of --batch images, the gradients are summed over the\n"
    "processes each step, feature extraction is split among them, and rank 0 alone writes and\n"
    "prints. Bit-identical on every repeat for a given N, equal to one process up to float\n"
    "rounding; --resume needs the same N. Threads default to the cores divided among the\n"
    "processes of a machine. See docs/scale-out.md.\n";

typedef struct train_cli {
  cli_model_args model;
  cn_train_options o;
  cli_input_args input; /* --resize, --crop F, --preprocess */
  int no_cache, tty;
  char cache[4096];
  const char *report;  /* --report */
  cli_history history; /* the epochs, for the report */
} train_cli;

static void on_message(void *ctx, const char *line) {
  train_cli *c = ctx;
  char warning[2048];
  if (c->tty) fputc('\n', stderr);
  snprintf(warning, sizeof warning, "warning: %s", line);
  cli_message(warning);
}

static void on_progress(void *ctx, const cn_train_progress *p) {
  train_cli *c = ctx;
  if (!p->epoch_done) {
    if (!c->tty || p->steps <= 0) return;
    int width = 30, filled = (int)(width * p->step / p->steps);
    fprintf(stderr, "\r%s %d/%d [%.*s%*s] %lld/%lld", p->phase, p->epoch, p->epochs, filled,
            "==============================", width - filled, "", (long long)p->step,
            (long long)p->steps);
    if (!isnan(p->loss)) fprintf(stderr, " loss %.4f acc %.4f", p->loss, p->accuracy);
    fflush(stderr);
    return;
  }
  if (c->report) cli_history_add(&c->history, p);
  if (c->tty) fprintf(stderr, "\r\033[K");
  printf("%s epoch %d/%d: loss %.4f acc %.4f", p->phase, p->epoch, p->epochs, p->loss, p->accuracy);
  if (!isnan(p->val_loss)) printf(" val_loss %.4f val_acc %.4f", p->val_loss, p->val_accuracy);
  printf(" lr %.3g %.1fs %.0f img/s\n", p->lr, p->seconds, p->images_per_second);
  fflush(stdout);
}

static void default_cache(train_cli *c) {
  const char *env;
  if ((env = getenv("CONVNET_CACHE")) && *env)
    snprintf(c->cache, sizeof c->cache, "%s/features", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env)
    snprintf(c->cache, sizeof c->cache, "%s/convnet/features", env);
  else if ((env = getenv("HOME")) && *env)
    snprintf(c->cache, sizeof c->cache, "%s/.cache/convnet/features", env);
}

enum {
  OPT_BASE = 1000,
  OPT_MODEL,
  OPT_INIT,
  OPT_DATA,
  OPT_VAL,
  OPT_VAL_SPLIT,
  OPT_OUT,
  OPT_EPOCHS,
  OPT_BATCH,
  OPT_OPTIMIZER,
  OPT_LR,
  OPT_MOMENTUM,
  OPT_NESTEROV,
  OPT_DECAY,
  OPT_FREEZE,
  OPT_HEAD,
  OPT_DENSE,
  OPT_DROPOUT,
  OPT_CACHE,
  OPT_NO_CACHE,
  OPT_FINE_TUNE,
  OPT_FINE_TUNE_LR,
  OPT_FINE_TUNE_EPOCHS,
  OPT_SEED,
  OPT_THREADS,
  OPT_RESUME,
  OPT_LOG,
  OPT_CUT,
  OPT_CLASS_WEIGHTS,
  OPT_FATAL_BAD,
  OPT_WEIGHT_DECAY,
  OPT_CLIP_NORM,
  OPT_SCHEDULE,
  OPT_PATIENCE,
  OPT_REPORT
};

static const struct option train_options[] = {
    {"base", required_argument, NULL, OPT_BASE},
    {"model", required_argument, NULL, OPT_MODEL},
    {"init", no_argument, NULL, OPT_INIT},
    {"resize", required_argument, NULL, CLI_OPT_RESIZE},
    {"preprocess", required_argument, NULL, CLI_OPT_PREPROCESS},
    {"decode", required_argument, NULL, CLI_OPT_DECODE},
    {"weights", required_argument, NULL, 'w'},
    {"alpha", required_argument, NULL, 'a'},
    {"data", required_argument, NULL, OPT_DATA},
    {"val", required_argument, NULL, OPT_VAL},
    {"val-split", required_argument, NULL, OPT_VAL_SPLIT},
    {"out", required_argument, NULL, OPT_OUT},
    {"epochs", required_argument, NULL, OPT_EPOCHS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"optimizer", required_argument, NULL, OPT_OPTIMIZER},
    {"lr", required_argument, NULL, OPT_LR},
    {"momentum", required_argument, NULL, OPT_MOMENTUM},
    {"nesterov", no_argument, NULL, OPT_NESTEROV},
    {"decay", required_argument, NULL, OPT_DECAY},
    {"weight-decay", required_argument, NULL, OPT_WEIGHT_DECAY},
    {"clip-norm", required_argument, NULL, OPT_CLIP_NORM},
    {"schedule", required_argument, NULL, OPT_SCHEDULE},
    {"patience", required_argument, NULL, OPT_PATIENCE},
    {"freeze", required_argument, NULL, OPT_FREEZE},
    {"head", required_argument, NULL, OPT_HEAD},
    {"dense", required_argument, NULL, OPT_DENSE},
    {"dropout", required_argument, NULL, OPT_DROPOUT},
    {"cut", required_argument, NULL, OPT_CUT},
    {"cache", required_argument, NULL, OPT_CACHE},
    {"no-cache", no_argument, NULL, OPT_NO_CACHE},
    {"fine-tune", required_argument, NULL, OPT_FINE_TUNE},
    {"fine-tune-lr", required_argument, NULL, OPT_FINE_TUNE_LR},
    {"fine-tune-epochs", required_argument, NULL, OPT_FINE_TUNE_EPOCHS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"log", required_argument, NULL, OPT_LOG},
    {"report", required_argument, NULL, OPT_REPORT},
    {"class-weights", no_argument, NULL, OPT_CLASS_WEIGHTS},
    {"fatal-bad-images", no_argument, NULL, OPT_FATAL_BAD},
    CLI_AUGMENT_LONG_OPTIONS,
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_float(const char *flag, const char *arg, double lo, double hi, float *out) {
  double v;
  if (!cli_parse_double("train", flag, arg, lo, hi, &v)) return CLI_USAGE;
  *out = (float)v;
  return CLI_OK;
}

/* Options with a number; returns CLI_USAGE for a bad value, -1 when opt is not one of them. */
static int numeric_option(train_cli *c, int opt, const char *arg) {
  cn_train_options *o = &c->o;
  switch (opt) {
  case OPT_VAL_SPLIT:
    return parse_float("--val-split", arg, 0.001, 0.999, &o->val_split);
  case OPT_EPOCHS:
    return cli_parse_int("train", "--epochs", arg, 1, 100000, &o->epochs) ? 0 : 2;
  case OPT_BATCH:
    return cli_parse_int("train", "--batch", arg, 1, 4096, &o->batch) ? 0 : 2;
  case OPT_LR:
    return parse_float("--lr", arg, 1e-12, 3e38, &o->lr);
  case OPT_MOMENTUM:
    return parse_float("--momentum", arg, 0, 0.999999, &o->momentum);
  case OPT_DECAY:
    return parse_float("--decay", arg, 0, 1e6, &o->decay);
  case OPT_WEIGHT_DECAY:
    return parse_float("--weight-decay", arg, 0, 1, &o->weight_decay);
  case OPT_CLIP_NORM:
    return parse_float("--clip-norm", arg, 0, 1e9, &o->clip_norm);
  case OPT_PATIENCE:
    return cli_parse_int("train", "--patience", arg, 1, 100000, &o->patience) ? 0 : 2;
  case OPT_DENSE:
    return cli_parse_int("train", "--dense", arg, 1, 1 << 20, &o->dense) ? 0 : 2;
  case OPT_DROPOUT:
    return parse_float("--dropout", arg, 0, 0.99, &o->dropout);
  case OPT_FINE_TUNE_LR:
    return parse_float("--fine-tune-lr", arg, 1e-12, 100, &o->fine_tune_lr);
  case OPT_FINE_TUNE_EPOCHS:
    return cli_parse_int("train", "--fine-tune-epochs", arg, 1, 100000, &o->fine_tune_epochs) ? 0
                                                                                              : 2;
  case OPT_SEED: {
    char *end = NULL;
    unsigned long long v = strtoull(arg, &end, 10);
    if (!*arg || *end) return cli_usage("train", "--seed needs a non-negative integer");
    o->seed = v;
    return CLI_OK;
  }
  default:
    return -1;
  }
}

static int option(train_cli *c, int opt, const char *arg) {
  cn_train_options *o = &c->o;
  int rc = numeric_option(c, opt, arg);
  if (rc >= 0) return rc;
  switch (opt) {
  case OPT_BASE:
  case OPT_MODEL:
    if (c->model.model) return cli_usage("train", "give one of --base and --model, once");
    c->model.model = arg;
    o->whole_model = opt == OPT_MODEL;
    return CLI_OK;
  case OPT_INIT:
    o->init_weights = 1;
    return CLI_OK;
  case OPT_DATA:
    o->data_dir = arg;
    return CLI_OK;
  case OPT_VAL:
    o->val_dir = arg;
    return CLI_OK;
  case OPT_OUT:
    o->out = arg;
    return CLI_OK;
  case OPT_OPTIMIZER:
    o->optimizer = arg;
    return CLI_OK;
  case OPT_NESTEROV:
    o->nesterov = 1;
    return CLI_OK;
  case OPT_SCHEDULE:
    o->schedule = arg;
    return CLI_OK;
  case OPT_FREEZE:
    o->freeze = arg;
    return CLI_OK;
  case OPT_HEAD:
    o->head = arg;
    return CLI_OK;
  case OPT_CUT:
    o->cut = arg;
    return CLI_OK;
  case OPT_CACHE:
    snprintf(c->cache, sizeof c->cache, "%s", arg);
    return CLI_OK;
  case OPT_NO_CACHE:
    c->no_cache = 1;
    return CLI_OK;
  case OPT_FINE_TUNE:
    o->fine_tune = arg;
    return CLI_OK;
  case OPT_THREADS:
    return cli_set_threads("train", arg) ? CLI_OK : CLI_USAGE;
  case OPT_RESUME:
    o->resume = arg;
    return CLI_OK;
  case OPT_LOG:
    o->log_path = arg;
    return CLI_OK;
  case OPT_REPORT:
    c->report = arg;
    return CLI_OK;
  case OPT_CLASS_WEIGHTS:
    o->class_weights = 1;
    return CLI_OK;
  case OPT_FATAL_BAD:
    o->fatal_bad_images = 1;
    return CLI_OK;
  default:
    return CLI_USAGE;
  }
}

static int parse(train_cli *c, int argc, char **argv) {
  int opt, rc = CLI_OK;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":hw:a:", train_options, NULL)) != -1) {
    if (opt == 'h') {
      fputs(train_help, stdout);
      fputs(cli_augment_help, stdout);
      fputs(train_help_rest, stdout);
      return -1;
    }
    if (opt == '?' || opt == ':') return cli_bad_option("train", opt, argv);
    /* --crop F (a fraction) is classify's central crop; --crop WxH the random crop */
    if (opt == CLI_OPT_CROP && !strchr(optarg, 'x')) opt = CLI_OPT_CENTER_CROP;
    if (cli_model_option("train", opt, optarg, &c->model, &rc) ||
        cli_input_option("train", opt, optarg, &c->input, &rc) ||
        cli_augment_option("train", opt, optarg, &c->o.augment, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    if (option(c, opt, optarg) != CLI_OK) return CLI_USAGE;
  }
  if (optind < argc) return cli_usage("train", "unexpected argument \"%s\"", argv[optind]);
  if (!c->model.model) return cli_usage("train", "--base or --model is required");
  if (c->o.init_weights && !c->o.whole_model) return cli_usage("train", "--init needs --model");
  if (!c->o.data_dir) return cli_usage("train", "--data is required");
  if (!c->o.out) return cli_usage("train", "--out is required");
  if (c->o.val_dir && c->o.val_split > 0)
    return cli_usage("train", "--val and --val-split exclude each other");
  if (c->o.fine_tune_lr > 0 && !c->o.fine_tune)
    return cli_usage("train", "--fine-tune-lr needs --fine-tune LAYER");
  if ((rc = cli_check_output(c->o.out, 0)) != CLI_OK || (rc = cli_check_output(c->report, 0)) ||
      (rc = cli_check_output(c->o.log_path, 0)))
    return rc;
  return cli_augment_finish("train", &c->o.augment);
}

static int write_report(const train_cli *c, const cn_model *trained, const cn_evaluation *val) {
  char model[4200], data[4200], out[4200];
  snprintf(model, sizeof model, "%s: %s", c->o.whole_model ? "model" : "base", c->model.model);
  snprintf(data, sizeof data, "data: %s; validation: %s", c->o.data_dir,
           c->o.val_dir         ? c->o.val_dir
           : c->o.val_split > 0 ? "held out of the data"
                                : "none");
  snprintf(out, sizeof out, "trained model: %s", c->o.out);
  cli_report_args a = {.path = c->report,
                       .title = "convnet train",
                       .evaluation_name = "validation images",
                       .notes = {model, data, out},
                       .n_notes = 3};
  return cli_write_report(&a, trained, &c->history, val);
}

/* The input spec training reads images with, which the trained model stores. Defaults that
 * differ from prediction: unit scaling for a --model that takes raw pixels, and for a Keras base
 * Keras's training pipeline (image_dataset_from_directory: tf.io.decode_image, then
 * tf.image.resize bilinear, not antialiased, in float) instead of load_img's PIL decoding and
 * nearest resize (docs/training.md). The flags override them. */
static void set_training_spec(const train_cli *c, cn_model *base) {
  cn_input_spec spec = cn_model_input_spec(base);
  if (c->o.whole_model && spec.preprocess == CN_PRE_RAW) spec.preprocess = CN_PRE_UNIT;
  if (!c->o.whole_model && cli_is_keras_model(c->model.model) && spec.resize == CN_RESIZE_NEAREST) {
    spec.resize = CN_TRAIN_KERAS_RESIZE;
    /* Keras's decoding comes with its resize: --resize alone keeps load_img's PIL decoding */
    if (!c->input.have_resize) spec.decoder = CN_TRAIN_KERAS_DECODER;
  }
  cli_input_apply(&c->input, &spec);
  cn_model_set_input_spec(base, &spec);
}

int cmd_train(int argc, char **argv) {
  train_cli c = {0};
  default_cache(&c);
  int rc = parse(&c, argc, argv);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  c.model.need_weights = !c.o.whole_model;
  size_t len = strlen(c.model.model);
  if (c.o.whole_model && len > 5 && strcmp(c.model.model + len - 5, ".json") == 0)
    c.o.init_weights = 1; /* an architecture without weights */
  c.tty = isatty(STDERR_FILENO);
  c.o.cache_dir = c.no_cache || !c.cache[0] ? NULL : c.cache;
  c.o.progress = on_progress;
  c.o.message = on_message;
  c.o.ctx = &c;
  c.o.group = cli_group;
  cn_model *base = NULL;
  rc = cli_open_model("train", &c.model, &base);
  if (rc != CLI_OK) return rc;
  set_training_spec(&c, base);
  cn_evaluation *val = NULL;
  cn_model *trained = NULL;
  if (c.report) {
    c.o.val_evaluation = &val;
    c.o.val_worst = CLI_REPORT_WORST;
  }
  cn_status st = cn_train(base, &c.o, c.report ? &trained : NULL);
  cn_model_free(base);
  rc = st == CN_OK ? CLI_OK : cli_lib_error();
  if (rc == CLI_OK && cli_is_main_rank()) printf("wrote %s\n", c.o.out);
  if (rc == CLI_OK && c.report && cli_is_main_rank()) rc = write_report(&c, trained, val);
  cn_evaluation_free(val);
  cn_model_free(trained);
  cli_history_free(&c.history);
  return rc;
}
