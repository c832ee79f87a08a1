/* Backward passes of the loss-building operators (src/ops/ops_math.h): finite-difference checks
 * (tests/gradcheck.h) of the Loss layer's kinds whose inputs may take any value (the
 * probability-based ones are checked against PyTorch in tests/oracle/test_grad_losses.py), of
 * Reduce over every axis set of a rank-3 sample with and without keepdims, of GaussianSample in
 * training mode, and of the Square and Affine elementwise kinds; bitwise thread invariance; and
 * the shape errors that name the layer. */
#include <math.h>
#include <string.h>

#include "core/graph.h"
#include "gradcheck.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

#define S cn_test_shape

static void check_case(cn_gradcheck_case c) {
  int bad = cn_gradcheck(&c);
  if (bad) fprintf(stderr, "  ^ %s: %d mismatches\n", c.label, bad);
  CHECK(bad == 0);
  CHECK(cn_gradcheck_thread_invariant(&c));
}

static void test_losses(void) {
  static const cn_loss_fn fns[] = {CN_LOSS_FN_MSE, CN_LOSS_FN_BCE_LOGITS, CN_LOSS_FN_CCE_LOGITS,
                                   CN_LOSS_FN_CONTRASTIVE, CN_LOSS_FN_KL_GAUSSIAN};
  for (size_t k = 0; k < sizeof fns / sizeof *fns; k++) {
    cn_loss_attrs a = {.fn = fns[k], .margin = 0.5f};
    cn_gradcheck_case c = {.label = "loss",
                           .op = &cn_op_loss,
                           .attrs = &a,
                           .n_inputs = 2,
                           .inputs = {S(2, 3, 4), S(2, 3, 4)},
                           .batch = 3,
                           .seed = 11 + k};
    check_case(c);
  }
  /* MAE has a kink at 0: keep prediction and target apart with distinct values. */
  cn_loss_attrs mae = {.fn = CN_LOSS_FN_MAE};
  check_case((cn_gradcheck_case){.label = "mae",
                                 .op = &cn_op_loss,
                                 .attrs = &mae,
                                 .n_inputs = 2,
                                 .inputs = {S(1, 5), S(1, 5)},
                                 .seed = 5,
                                 .distinct = 1});
}

static void test_reduce(void) {
  static const cn_reduce_kind kinds[] = {CN_REDUCE_SUM, CN_REDUCE_MEAN, CN_REDUCE_MAX,
                                         CN_REDUCE_MIN};
  for (int kind = 0; kind < 4; kind++)
    for (int axes = 1; axes < 8; axes++)
      for (int keep = 0; keep < 2; keep++) {
        cn_reduce_attrs a = {.kind = kinds[kind], .axes = axes, .keepdims = keep};
        char label[64];
        snprintf(label, sizeof label, "reduce kind %d axes %d keepdims %d", kind, axes, keep);
        check_case((cn_gradcheck_case){.label = label,
                                       .op = &cn_op_reduce,
                                       .attrs = &a,
                                       .n_inputs = 1,
                                       .inputs = {S(3, 2, 3, 4)},
                                       .seed = 3,
                                       .distinct = 1});
      }
}

static void test_sample_and_unary(void) {
  cn_gaussian_sample_attrs s = {.seed = 9};
  check_case((cn_gradcheck_case){.label = "gaussian sample",
                                 .op = &cn_op_gaussian_sample,
                                 .attrs = &s,
                                 .n_inputs = 2,
                                 .inputs = {S(1, 6), S(1, 6)},
                                 .training = 1,
                                 .seed = 4});
  cn_unary_attrs sq = {.kind = CN_UN_SQUARE},
                 af = {.kind = CN_UN_AFFINE, .alpha = -1.5f, .beta = 0.25f};
  check_case((cn_gradcheck_case){.label = "square",
                                 .op = &cn_op_unary,
                                 .attrs = &sq,
                                 .n_inputs = 1,
                                 .inputs = {S(2, 4, 5)},
                                 .seed = 2});
  check_case((cn_gradcheck_case){.label = "affine",
                                 .op = &cn_op_unary,
                                 .attrs = &af,
                                 .n_inputs = 1,
                                 .inputs = {S(2, 4, 5)},
                                 .seed = 2});
}

/* Forward values a reader can check by hand. */
static void test_values(void) {
  float mean[2] = {0.0f, 1.0f}, log_var[2] = {0.0f, 0.0f};
  CHECK_NEAR(cn_loss_row(CN_LOSS_FN_KL_GAUSSIAN, 2, mean, log_var, 0, 1, NULL, NULL), 0.5, 1e-12);
  float d[2] = {0.5f, 2.0f}, y[2] = {0.0f, 1.0f};
  /* (0.5^2 + max(1 - 2, 0)^2) / 2 */
  CHECK_NEAR(cn_loss_row(CN_LOSS_FN_CONTRASTIVE, 2, d, y, 1.0f, 1, NULL, NULL), 0.125, 1e-12);
  float p[2] = {0.25f, 0.75f}, t[2] = {0.0f, 1.0f};
  CHECK_NEAR(cn_loss_row(CN_LOSS_FN_CCE, 2, p, t, 0, 1, NULL, NULL), -log(0.75), 1e-7);
  float cls = 1.0f;
  CHECK_NEAR(cn_loss_row(CN_LOSS_FN_SPARSE, 2, p, &cls, 0, 1, NULL, NULL), -log(0.75), 1e-7);
  CHECK(isnan(cn_loss_row(CN_LOSS_FN_SPARSE, 2, p, &(float){2.0f}, 0, 1, NULL, NULL)));
}

static void test_shape_errors(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs ia = {.shape = S(2, 4, 3)}, ib = {.shape = S(1, 4)};
  int x, z, out;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &ia, &x));
  CHECK_OK(cn_graph_add(g, &cn_op_input, "z", NULL, 0, &ib, &z));
  cn_loss_attrs mse = {.fn = CN_LOSS_FN_MSE};
  CHECK(cn_graph_add(g, &cn_op_loss, "recon", (int[]){x, z}, 2, &mse, &out) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "recon: the target's shape (4,) does not fit") != NULL);
  cn_loss_attrs sparse = {.fn = CN_LOSS_FN_SPARSE};
  CHECK_OK(cn_graph_add(g, &cn_op_loss, "ce", (int[]){x, z}, 2, &sparse, &out));
  CHECK(g->nodes[out].shape.rank == 0);
  cn_reduce_attrs r = {.kind = CN_REDUCE_SUM, .axes = 4};
  CHECK(cn_graph_add(g, &cn_op_reduce, "sum", &x, 1, &r, &out) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "sum: reduction axes outside") != NULL);
  cn_gaussian_sample_attrs s = {0};
  CHECK(cn_graph_add(g, &cn_op_gaussian_sample, "sampling", (int[]){x, z}, 2, &s, &out) ==
        CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "sampling: the mean (4,3) and the log-variance (4,) differ") !=
        NULL);
  cn_graph_free(g);
}

int main(void) {
  test_losses();
  test_reduce();
  test_sample_and_unary();
  test_values();
  test_shape_errors();
  return cn_test_finish();
}
