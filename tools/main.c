/* convnet: the command-line tool. Dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

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

int main(int argc, char **argv) {
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
    printf("convnet %s\n", CONVNET_VERSION);
    return CLI_OK;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(name, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "convnet: %s: unknown command (see convnet --help)\n", name);
  return CLI_USAGE;
}
