/* The finite-difference gradient checker of gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/rng.h"

enum { MAX_IN = 4 };

typedef struct harness {
  const cn_gradcheck_case *c;
  cn_graph *g;
  cn_node *node;
  int batch;
  cn_tensor in[MAX_IN], out, dout, din[MAX_IN];
  float *saved, *scratch;
  float *dparams[CN_MAX_PARAMS];
} harness;

static int batch_of(const cn_gradcheck_case *c) {
  return c->batch ? c->batch : 2;
}

static float *new_floats(size_t n) {
  float *p = cn_alloc_aligned((n ? n : 1) * sizeof(float));
  if (p) memset(p, 0, (n ? n : 1) * sizeof(float));
  return p;
}

static void fill_uniform(cn_rng *r, float *x, int64_t n, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * cn_rng_float(r);
}

/* Evenly spaced values in [-s, s] in a seeded order: no two equal, none exactly at zero. */
static void fill_distinct(cn_rng *r, float *x, int64_t n, float s) {
  int64_t *order = malloc((size_t)n * sizeof *order);
  if (!order) return;
  for (int64_t i = 0; i < n; i++) order[i] = i;
  cn_rng_shuffle(r, order, n);
  for (int64_t i = 0; i < n; i++) x[order[i]] = s * (2.0f * ((float)i + 0.5f) / (float)n - 1.0f);
  free(order);
}

static void fill_params(cn_node *node, cn_rng *r) {
  for (int k = 0; k < node->n_params; k++) {
    cn_param *p = &node->params[k];
    int64_t n = cn_shape_numel(&p->shape);
    if (strstr(p->name, "variance"))
      fill_uniform(r, p->data, n, 0.5f, 1.5f);
    else
      fill_uniform(r, p->data, n, -0.5f, 0.5f);
  }
}

static int build(harness *h, const cn_gradcheck_case *c) {
  memset(h, 0, sizeof *h);
  h->c = c;
  h->batch = batch_of(c);
  h->g = cn_graph_new();
  int ids[MAX_IN], node = -1;
  if (!h->g || c->n_inputs < 1 || c->n_inputs > MAX_IN) return 0;
  for (int i = 0; i < c->n_inputs; i++) {
    cn_input_attrs a = {c->inputs[i]};
    char name[16];
    snprintf(name, sizeof name, "in%d", i);
    if (cn_graph_add(h->g, &cn_op_input, name, NULL, 0, &a, &ids[i]) != CN_OK) return 0;
  }
  if (cn_graph_add(h->g, c->op, "op", ids, c->n_inputs, c->attrs, &node) != CN_OK ||
      cn_graph_alloc_params(h->g) != CN_OK) {
    fprintf(stderr, "%s: building failed: %s\n", c->label, cn_last_error());
    return 0;
  }
  h->node = &h->g->nodes[node];
  cn_rng r = cn_rng_make(cn_rng_key(c->seed, 1, 0));
  fill_params(h->node, &r);
  float s = c->input_scale > 0 ? c->input_scale : 1.0f;
  for (int i = 0; i < c->n_inputs; i++) {
    h->in[i].shape = cn_shape_batch(h->batch, &c->inputs[i]);
    int64_t n = cn_shape_numel(&h->in[i].shape);
    h->in[i].data = new_floats((size_t)n);
    h->din[i].shape = h->in[i].shape;
    h->din[i].data = new_floats((size_t)n);
    if (!h->in[i].data || !h->din[i].data) return 0;
    if (c->distinct)
      fill_distinct(&r, h->in[i].data, n, s);
    else
      fill_uniform(&r, h->in[i].data, n, -s, s);
  }
  h->out.shape = h->dout.shape = cn_shape_batch(h->batch, &h->node->shape);
  int64_t n_out = cn_shape_numel(&h->out.shape);
  h->out.data = new_floats((size_t)n_out);
  h->dout.data = new_floats((size_t)n_out);
  if (!h->out.data || !h->dout.data) return 0;
  fill_uniform(&r, h->dout.data, n_out, -1.0f, 1.0f);
  const cn_op *op = c->op;
  size_t saved = op->saved ? op->saved(h->g, h->node, h->batch) : 0;
  size_t fs = op->scratch ? op->scratch(h->g, h->node, h->batch) : 0;
  size_t bs = op->backward_scratch ? op->backward_scratch(h->g, h->node, h->batch) : 0;
  h->saved = new_floats(saved);
  h->scratch = new_floats(fs > bs ? fs : bs);
  for (int k = 0; k < h->node->n_params; k++) {
    cn_param *p = &h->node->params[k];
    if (!p->trainable || !h->node->trainable) continue;
    h->dparams[k] = new_floats((size_t)cn_shape_numel(&p->shape));
    if (!h->dparams[k]) return 0;
  }
  return h->saved && h->scratch;
}

static void destroy(harness *h) {
  for (int i = 0; i < MAX_IN; i++) {
    cn_free_aligned(h->in[i].data);
    cn_free_aligned(h->din[i].data);
  }
  for (int k = 0; k < CN_MAX_PARAMS; k++) cn_free_aligned(h->dparams[k]);
  cn_free_aligned(h->out.data);
  cn_free_aligned(h->dout.data);
  cn_free_aligned(h->saved);
  cn_free_aligned(h->scratch);
  cn_graph_free(h->g);
}

static cn_exec exec_of(const harness *h, int threads) {
  cn_exec ex = {.batch = h->batch,
                .threads = threads,
                .scratch = h->scratch,
                .training = h->c->training,
                .seed = cn_rng_key(h->c->seed, 2, 0),
                .saved = h->saved};
  return ex;
}

static double objective(harness *h) {
  cn_exec ex = exec_of(h, 1);
  h->node->op->forward(h->node, h->in, &h->out, &ex);
  int64_t n = cn_shape_numel(&h->out.shape);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += (double)h->out.data[i] * h->dout.data[i];
  return sum;
}

static void analytic(harness *h, int threads) {
  for (int i = 0; i < h->c->n_inputs; i++)
    memset(h->din[i].data, 0, (size_t)cn_shape_numel(&h->din[i].shape) * sizeof(float));
  for (int k = 0; k < h->node->n_params; k++)
    if (h->dparams[k])
      memset(h->dparams[k], 0, (size_t)cn_shape_numel(&h->node->params[k].shape) * sizeof(float));
  cn_exec ex = exec_of(h, threads);
  h->node->op->forward(h->node, h->in, &h->out, &ex);
  h->node->op->backward(h->node, h->in, &h->out, &h->dout, h->din, h->dparams, &ex);
}

/* Compares grad[i] with the central difference of the objective in x[i], for a seeded sample of
 * elements; returns the number of mismatches. */
static int compare(harness *h, const char *what, float *x, const float *grad, int64_t n) {
  const cn_gradcheck_case *c = h->c;
  int checks = c->max_checks ? c->max_checks : 64, bad = 0;
  double step = c->step > 0 ? c->step : 1e-2, tol = c->tolerance > 0 ? c->tolerance : 1e-3;
  cn_rng r = cn_rng_make(cn_rng_key(c->seed, 3, (uint64_t)n));
  for (int t = 0; t < checks && t < n; t++) {
    int64_t i = n <= checks ? t : (int64_t)cn_rng_below(&r, (uint64_t)n);
    float keep = x[i];
    x[i] = (float)(keep + step);
    double plus = objective(h);
    x[i] = (float)(keep - step);
    double minus = objective(h);
    x[i] = keep;
    double numeric = (plus - minus) / (2 * step), a = grad[i];
    double scale = fmax(1.0, fmax(fabs(a), fabs(numeric)));
    if (fabs(a - numeric) > tol * scale) {
      if (bad < 5)
        fprintf(stderr, "%s: d/d %s[%lld]: backward %.7g, finite difference %.7g\n", c->label, what,
                (long long)i, a, numeric);
      bad++;
    }
  }
  return bad;
}

int cn_gradcheck(const cn_gradcheck_case *c) {
  harness h;
  int bad = 0;
  if (!build(&h, c) || !c->op->backward) {
    fprintf(stderr, "%s: cannot set up the check (%s)\n", c->label,
            c->op->backward ? "allocation or shape" : "no backward");
    destroy(&h);
    return 1;
  }
  analytic(&h, c->threads ? c->threads : 1);
  for (int i = 0; i < c->n_inputs; i++) {
    char what[16];
    snprintf(what, sizeof what, "input%d", i);
    bad += compare(&h, what, h.in[i].data, h.din[i].data, cn_shape_numel(&h.in[i].shape));
  }
  for (int k = 0; k < h.node->n_params; k++)
    if (h.dparams[k])
      bad += compare(&h, h.node->params[k].name, h.node->params[k].data, h.dparams[k],
                     cn_shape_numel(&h.node->params[k].shape));
  destroy(&h);
  return bad;
}

/* Copies every gradient of the harness into one malloc'd block. */
static float *collect(const harness *h, size_t *count) {
  size_t n = 0;
  for (int i = 0; i < h->c->n_inputs; i++) n += (size_t)cn_shape_numel(&h->din[i].shape);
  for (int k = 0; k < h->node->n_params; k++)
    if (h->dparams[k]) n += (size_t)cn_shape_numel(&h->node->params[k].shape);
  float *all = malloc((n ? n : 1) * sizeof *all), *p = all;
  if (!all) return NULL;
  for (int i = 0; i < h->c->n_inputs; i++) {
    size_t m = (size_t)cn_shape_numel(&h->din[i].shape);
    memcpy(p, h->din[i].data, m * sizeof *p);
    p += m;
  }
  for (int k = 0; k < h->node->n_params; k++)
    if (h->dparams[k]) {
      size_t m = (size_t)cn_shape_numel(&h->node->params[k].shape);
      memcpy(p, h->dparams[k], m * sizeof *p);
      p += m;
    }
  *count = n;
  return all;
}

int cn_gradcheck_thread_invariant(const cn_gradcheck_case *c) {
  harness h;
  float *one = NULL, *two = NULL;
  size_t n1 = 0, n2 = 0;
  int same = 0;
  if (build(&h, c) && c->op->backward) {
    analytic(&h, 1);
    one = collect(&h, &n1);
    analytic(&h, 2);
    two = collect(&h, &n2);
    same = one && two && n1 == n2 && memcmp(one, two, n1 * sizeof *one) == 0;
  }
  if (!same) fprintf(stderr, "%s: gradients differ between 1 and 2 threads\n", c->label);
  free(one);
  free(two);
  destroy(&h);
  return same;
}
