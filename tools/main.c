/* convnet: the command-line tool. Dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} commands[] = {
    {"classify", cmd_classify, "top-k ImageNet (or custom) classes of images"},
    {"run", cmd_run, "run a model on a .npy tensor and write the output as .npy"},
    {"summary", cmd_summary, "print a model's layers and parameter counts, as Keras does"},
    {"fetch", cmd_fetch, "download official keras.applications weights into the cache"},
    {"evaluate", cmd_evaluate, "top-1/top-5 accuracy of a model on a labelled image folder"},
    {"convert", cmd_convert, "write a model as ONNX (chosen by the output extension)"},
    {"train", cmd_train, "transfer learning: train a new head (and fine-tune) on image folders"},
    {"augment", cmd_augment, "preview training augmentation: a grid of randomly changed images"},
    {"explain", cmd_explain, "Grad-CAM: where in a photo a class score comes from, as PNGs"},
    {"show", cmd_show, "pictures of kernels, feature maps, or what a unit responds to"},
    {"embed", cmd_embed, "one feature vector per image (a layer's pooled output) as .npy"},
    {"fid", cmd_fid, "Frechet distance of two image sets on a layer's features (FID)"},
    {"similar", cmd_similar, "the images of a folder most like a query, by cosine similarity"},
    {"style", cmd_style, "style transfer: a content image painted in a style image's style"},
    {"analogy", cmd_analogy, "image analogy A : A' :: B : B': B' made from B as A' from A"},
    {"serve", cmd_serve, "serve models over HTTP: JSON API, dynamic batching, upload page"},
};

static void print_help(void) {
  printf("usage: convnet <command> [options]\n"
         "       convnet <command> --help\n"
         "       convnet --version\n\n"
         "Classify images with pretrained Keras CNNs on the CPU.\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    printf("  %-10s %s\n", commands[i].name, commands[i].summary);
  printf("\nexit status: 0 success, 1 failure, 2 usage error. See docs/cli.md.\n");
}

/* Under mpirun: joins the job and gives each rank its part of this machine's cores (--threads
 * overrides). Returns CLI_OK or CLI_FAILED after a one-line error. */
static int join_group(int *argc, char ***argv) {
  if (cn_group_join(argc, argv, &cli_group) != CN_OK) return cli_lib_error();
  int local = cn_group_local_size(cli_group);
  if (local > 1) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    cn_set_threads(cores > local ? (int)(cores / local) : 1);
  }
  return CLI_OK;
}

static int run_command(int argc, char **argv) {
  const char *name = argv[1];
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(name, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "convnet: %s: unknown command (see convnet --help)\n", name);
  return CLI_USAGE;
}

int main(int argc, char **argv) {
  cn_prefer_passive_waiting(argv); /* idle threads sleep: see convnet/core.h */
  if (argc < 2) {
    fprintf(stderr, "convnet: no command given (see convnet --help)\n");
    return CLI_USAGE;
  }
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
    print_help();
    return CLI_OK;
  }
  if (strcmp(name, "--version") == 0) {
    printf("convnet %s (Open MPI: %s)\n", CONVNET_VERSION, cn_group_available() ? "yes" : "no");
    return CLI_OK;
  }
  if (join_group(&argc, &argv) != CLI_OK) return CLI_FAILED;
  int rc = run_command(argc, argv);
  /* a rank that failed ends the job: the others may be waiting for it in a collective; a
   * status all ranks agreed on needs no such rescue */
  if (rc != CLI_OK && !cli_finished_together) cn_group_abort(cli_group, rc);
  cn_group_leave(cli_group);
  return rc;
}
