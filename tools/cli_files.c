/* Listing the images of a folder (similar, fid). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"

/* Sub-folders below this depth are not entered (a guard against link loops). */
enum { LIST_MAX_DEPTH = 16 };

void cli_file_list_free(cli_file_list *l) {
  for (int i = 0; i < l->n; i++) free(l->paths[i]);
  free(l->paths);
}

static int has_image_extension(const char *name) {
  static const char *const exts[] = {"jpg", "jpeg", "png", "bmp", "ppm", "pgm"};
  const char *dot = strrchr(name, '.');
  for (size_t i = 0; dot && i < sizeof exts / sizeof *exts; i++)
    if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
  return 0;
}

static int by_path(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_path(cli_file_list *l, const char *path) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 256;
    char **grown = realloc(l->paths, (size_t)cap * sizeof *grown);
    if (!grown) return cli_error(path, "out of memory");
    l->paths = grown, l->cap = cap;
  }
  if (!(l->paths[l->n] = strdup(path))) return cli_error(path, "out of memory");
  l->n++;
  return CLI_OK;
}

/* The images below dir (names starting with '.' skipped), appended to l. */
static int walk(const char *dir, int depth, cli_file_list *l) {
  DIR *d = opendir(dir);
  if (!d) return cli_error(dir, "%s", strerror(errno));
  int rc = CLI_OK;
  struct dirent *ent;
  while (rc == CLI_OK && (ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.') continue;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, ent->d_name) >= sizeof path) {
      rc = cli_error(dir, "%s: path too long", ent->d_name);
      break;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) continue; /* a dangling link */
    if (S_ISDIR(sb.st_mode) && depth < LIST_MAX_DEPTH)
      rc = walk(path, depth + 1, l);
    else if (S_ISREG(sb.st_mode) && has_image_extension(ent->d_name))
      rc = add_path(l, path);
  }
  closedir(d);
  return rc;
}

int cli_list_images(const char *dir, cli_file_list *l) {
  struct stat sb;
  if (stat(dir, &sb) != 0) return cli_error(dir, "%s", strerror(errno));
  if (!S_ISDIR(sb.st_mode)) return cli_error(dir, "not a folder");
  int first = l->n, rc = walk(dir, 0, l);
  if (rc == CLI_OK && l->n == first)
    return cli_error(dir, "no images (jpg, jpeg, png, bmp, ppm or pgm files)");
  qsort(l->paths + first, (size_t)(l->n - first), sizeof *l->paths, by_path);
  return rc;
}

int cli_expand_images(char *const *operands, int n, cli_file_list *l) {
  for (int i = 0; i < n; i++) {
    struct stat sb;
    int folder = stat(operands[i], &sb) == 0 && S_ISDIR(sb.st_mode);
    int rc = folder ? cli_list_images(operands[i], l) : add_path(l, operands[i]);
    if (rc != CLI_OK) return rc;
  }
  return CLI_OK;
}
