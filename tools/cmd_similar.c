/* convnet similar: the images of a folder nearest to a query image, by cosine similarity of
 * their embeddings (convnet embed's vectors), and optionally a contact sheet of them. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char similar_help[] =
    "usage: convnet similar [-m NAME|FILE] [-w WEIGHTS] [--alpha A] [--layer L] [-k K]\n"
    "                       [--resize P] [--crop F] [--preprocess M] [--cache DIR]\n"
    "                       [--threads N] [--sheet S.png] [--cell PX] QUERY... DIR\n\n"
    "Prints, for each query image, the K images in DIR (and its sub-folders: jpg, jpeg, png,\n"
    "bmp, ppm, pgm files) whose embeddings (see convnet embed) have the highest cosine\n"
    "similarity to the query's: rank, similarity, path. The query itself is left out when it\n"
    "lies in DIR. An image of DIR that cannot be read is named on stderr and skipped (exit\n"
    "status 1).\n\n"
    "  -m, --model NAME|FILE  zoo name or model file, as for classify (default\n"
    "                         efficientnet_lite0)\n"
    "  -w, --weights FILE     weights for a zoo model or a .json architecture\n"
    "  --alpha A              MobileNet width multiplier\n"
    "  --layer L              the embedding layer (default: the classifier's input features)\n"
    "  -k, --top K            images listed per query (default 5)\n"
    "  --resize P             nearest, bilinear, area, pil-bilinear (default: the model's)\n"
    "  --crop F               keep the central fraction F of each side, 0 < F <= 1\n"
    "  --preprocess M         raw, caffe, tf, torch, unit (default: the model's)\n"
    "  --cache DIR            keep each image's vector in DIR and reuse it (much faster the\n"
    "                         second time over the same folder)\n"
    "  --threads N            threads (0: all cores)\n"
    "  --sheet S.png          a contact sheet: the query, then its K nearest with their\n"
    "                         similarities (one query only)\n"
    "  --cell PX              the sheet's cell size in pixels (default 160)\n"
    "  -h, --help             this help\n";

enum { SIMILAR_MAX_K = 256 };

typedef struct similar_args {
  cli_embed_args embed;
  int k, cell;
  const char *sheet;
} similar_args;

/* The folder's embeddings; images that fail are named and dropped from the list. */
static int embed_folder(cn_embedder *e, cli_file_list *l, float **rows, int *failed) {
  int64_t dim = cn_embedder_dim(e);
  *rows = malloc((size_t)l->n * (size_t)dim * sizeof **rows);
  if (!*rows) return cli_error("similar", "out of memory");
  int kept = 0;
  for (int i = 0; i < l->n; i++) {
    if (cn_embed_file(e, l->paths[i], *rows + (size_t)kept * (size_t)dim) != CN_OK) {
      *failed += cli_lib_error();
      free(l->paths[i]);
      continue;
    }
    l->paths[kept++] = l->paths[i];
  }
  l->n = kept;
  if (!kept) return cli_error("similar", "no image of the folder could be read");
  return CLI_OK;
}

/* The row of the folder that is the query file itself, or -1. */
static int64_t same_file(const char *query, const cli_file_list *l) {
  char a[PATH_MAX], b[PATH_MAX];
  if (!realpath(query, a)) return -1;
  for (int i = 0; i < l->n; i++)
    if (realpath(l->paths[i], b) && strcmp(a, b) == 0) return i;
  return -1;
}

static int draw_sheet(const similar_args *a, const char *query, const cli_file_list *l,
                      const int64_t *index, const float *score, int found) {
  const char *paths[SIMILAR_MAX_K + 1], *captions[SIMILAR_MAX_K + 1];
  char text[SIMILAR_MAX_K + 1][32];
  paths[0] = query, captions[0] = "query";
  for (int i = 0; i < found; i++) {
    snprintf(text[i + 1], sizeof text[i + 1], "%d.  %.4f", i + 1, (double)score[i]);
    paths[i + 1] = l->paths[index[i]], captions[i + 1] = text[i + 1];
  }
  if (cn_viz_contact_sheet(paths, captions, found + 1, a->cell, a->sheet) != CN_OK)
    return cli_lib_error();
  printf("wrote %s\n", a->sheet);
  return CLI_OK;
}

static int query_one(cn_embedder *e, const similar_args *a, const char *query,
                     const cli_file_list *l, const float *rows) {
  int64_t dim = cn_embedder_dim(e);
  float *q = malloc((size_t)dim * sizeof *q);
  int64_t index[SIMILAR_MAX_K];
  float score[SIMILAR_MAX_K];
  if (!q) return cli_error("similar", "out of memory");
  if (cn_embed_file(e, query, q) != CN_OK) {
    free(q);
    return cli_lib_error();
  }
  int found = cn_embed_nearest(q, rows, l->n, dim, a->k, same_file(query, l), index, score);
  free(q);
  printf("%s\n", query);
  for (int i = 0; i < found; i++)
    printf("  %d  %.4f  %s\n", i + 1, (double)score[i], l->paths[index[i]]);
  fflush(stdout);
  return a->sheet ? draw_sheet(a, query, l, index, score, found) : CLI_OK;
}

static int similar_run(cn_model *model, const similar_args *a, char **queries, int n_queries,
                       const char *dir) {
  cli_file_list l = {0};
  cn_embedder *e = NULL;
  float *rows = NULL;
  int failed = 0;
  int rc = cli_list_images(dir, &l);
  if (rc == CLI_OK) rc = cli_open_embedder("similar", model, &a->embed, &e);
  if (rc == CLI_OK) rc = embed_folder(e, &l, &rows, &failed);
  for (int i = 0; rc == CLI_OK && i < n_queries; i++)
    if (query_one(e, a, queries[i], &l, rows) != CLI_OK) failed++;
  free(rows);
  cn_embedder_free(e);
  cli_file_list_free(&l);
  return rc != CLI_OK ? rc : failed ? CLI_FAILED : CLI_OK;
}

int cmd_similar(int argc, char **argv) {
  static const struct option options[] = {CLI_MODEL_LONG_OPTIONS,
                                          CLI_INPUT_LONG_OPTIONS,
                                          CLI_EMBED_LONG_OPTIONS,
                                          {"top", required_argument, NULL, 'k'},
                                          {"sheet", required_argument, NULL, 's'},
                                          {"cell", required_argument, NULL, 'c'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
  similar_args a = {.embed = {.model = {.need_weights = 1}}, .k = 5, .cell = 160};
  int opt, rc;
  opterr = 0;
  optind = 1;
  while ((opt = getopt_long(argc, argv, ":m:w:k:h", options, NULL)) != -1) {
    if (cli_embed_option("similar", opt, optarg, &a.embed, &rc)) {
      if (rc != CLI_OK) return rc;
      continue;
    }
    switch (opt) {
    case 'k':
      if (!cli_parse_int("similar", "-k", optarg, 1, SIMILAR_MAX_K, &a.k)) return CLI_USAGE;
      break;
    case 's':
      a.sheet = optarg;
      break;
    case 'c':
      if (!cli_parse_int("similar", "--cell", optarg, 16, 1024, &a.cell)) return CLI_USAGE;
      break;
    case 'h':
      fputs(similar_help, stdout);
      return CLI_OK;
    default:
      return cli_bad_option("similar", opt, argv);
    }
  }
  int n = argc - optind;
  if (n < 2) return cli_usage("similar", "needs a QUERY image and a DIR");
  if (a.sheet && n > 2) return cli_usage("similar", "--sheet takes one QUERY");
  if ((rc = cli_check_output(a.sheet, 0)) != CLI_OK) return rc;
  cn_model *model;
  if ((rc = cli_open_model("similar", &a.embed.model, &model)) != CLI_OK) return rc;
  rc = similar_run(model, &a, argv + optind, n - 1, argv[argc - 1]);
  cn_model_free(model);
  return rc;
}
