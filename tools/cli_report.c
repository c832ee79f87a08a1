/* --report for train and evaluate: the epochs seen through the progress callback, the class
 * names, and the call to cn_report_write (docs/report.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_history_add(cli_history *h, const cn_train_progress *p) {
  if (h->n == h->cap) {
    int cap = h->cap ? h->cap * 2 : 16;
    cli_epoch *e = realloc(h->epochs, (size_t)cap * sizeof *e);
    if (!e) return; /* the report then lacks this epoch; training goes on */
    h->epochs = e;
    h->cap = cap;
  }
  cli_epoch *e = &h->epochs[h->n++];
  snprintf(e->phase, sizeof e->phase, "%s", p->phase ? p->phase : "");
  e->epoch = p->epoch;
  e->loss = p->loss;
  e->accuracy = p->accuracy;
  e->val_loss = p->val_loss;
  e->val_accuracy = p->val_accuracy;
}

void cli_history_free(cli_history *h) {
  free(h->epochs);
  *h = (cli_history){0};
}

static void free_names(char **names, int n) {
  for (int c = 0; names && c < n; c++) free(names[c]);
  free(names);
}

/* One name per output, by cli_class_name's rules; NULL (numbers instead) without memory. */
static char **class_names(const cn_model *model, int n) {
  cn_labels *labels = NULL;
  if (cli_load_labels(NULL, model, &labels) != CLI_OK) labels = NULL;
  char **names = calloc((size_t)n, sizeof *names);
  for (int c = 0; names && c < n; c++) {
    char buf[32];
    names[c] = strdup(cli_class_name(labels, model, (size_t)c, buf, sizeof buf));
  }
  cn_labels_free(labels);
  return names;
}

int cli_write_report(const cli_report_args *a, const cn_model *model, const cli_history *h,
                     const cn_evaluation *e) {
  int classes = cn_evaluation_class_count(e);
  char **names = e ? class_names(model, classes) : NULL;
  cn_report_epoch *epochs = h && h->n ? calloc((size_t)h->n, sizeof *epochs) : NULL;
  for (int i = 0; epochs && i < h->n; i++) {
    const cli_epoch *s = &h->epochs[i];
    epochs[i] = (cn_report_epoch){.phase = s->phase,
                                  .epoch = s->epoch,
                                  .loss = s->loss,
                                  .accuracy = s->accuracy,
                                  .val_loss = s->val_loss,
                                  .val_accuracy = s->val_accuracy};
  }
  cn_report r = {.title = a->title,
                 .notes = a->notes,
                 .n_notes = a->n_notes,
                 .epochs = epochs,
                 .n_epochs = epochs ? h->n : 0,
                 .evaluation = e,
                 .evaluation_name = a->evaluation_name,
                 .class_names = (const char *const *)names};
  int rc = cn_report_write(&r, a->path) == CN_OK ? CLI_OK : cli_lib_error();
  if (rc == CLI_OK) printf("wrote %s\n", a->path);
  free(epochs);
  free_names(names, classes);
  return rc;
}
