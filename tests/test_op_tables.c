/* The per-operator tables cannot drift from the registry: every registered op declares a sane
 * input count, has an attribute description in the .cnm format and an ONNX export translation,
 * unless it is listed below as refused on purpose (with the reason). A new op therefore fails here
 * until each table has its entry or its refusal. */
#include <string.h>

#include "core/error.h"
#include "core/graph.h"
#include "io/native/internal.h"
#include "io/onnx/export_internal.h"
#include "ops/ops.h"
#include "ops/ops_math.h"
#include "ops/ops_onnx.h"
#include "testlib.h"

/* Ops that no ONNX export handles on purpose: a loss is training-only (an inference graph has
 * none), and ConvRuntime exists only for imported ONNX graphs whose weights are graph inputs
 * (the exporter writes weights as initializers). */
static const cn_op *const export_refused[] = {&cn_op_loss, &cn_op_conv_runtime, NULL};

static int listed(const cn_op *const *list, const cn_op *op) {
  for (; *list; list++)
    if (*list == op) return 1;
  return 0;
}

static void check_input_counts(const cn_op *op) {
  /* Every op but the graph input declares at least one input (0 would mean "not declared"). */
  int ok = op->graph_input ||
           (op->min_inputs >= 1 && (op->max_inputs == 0 || op->max_inputs >= op->min_inputs));
  if (!ok) fprintf(stderr, "%s: input count %d..%d\n", op->type, op->min_inputs, op->max_inputs);
  CHECK(ok);
}

/* cn_graph_add refuses a wrong input count by name before the op's infer runs. */
static void check_count_refused(void) {
  cn_graph *g = cn_graph_new();
  cn_input_attrs in = {.shape = cn_shape_make(1, (int64_t[]){4})};
  int x, y;
  CHECK_OK(cn_graph_add(g, &cn_op_input, "x", NULL, 0, &in, &x));
  CHECK(cn_graph_add(g, &cn_op_input, "bad_input", &x, 1, &in, &y) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "bad_input: takes no inputs") != NULL);
  cn_dense_attrs d = {.units = 2, .act = cn_act_linear()};
  CHECK(cn_graph_add(g, &cn_op_dense, "dense", NULL, 0, &d, &y) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "dense: expects one input") != NULL);
  cn_merge_attrs m = {.kind = CN_MERGE_ADD};
  CHECK(cn_graph_add(g, &cn_op_merge, "add", &x, 1, &m, &y) == CN_ERR_SHAPE);
  CHECK(strstr(cn_last_error(), "add: expects at least 2 inputs, got 1") != NULL);
  cn_graph_free(g);
}

int main(void) {
  int n = 0;
  for (const cn_op *const *o = cn_all_ops; *o; o++, n++) {
    const cn_op *op = *o;
    check_input_counts(op);
    if (!cn_native_op_supported(op)) fprintf(stderr, "%s: no .cnm attribute layout\n", op->type);
    CHECK(cn_native_op_supported(op));
    int exported = cn_ex_op_supported(op), refused = listed(export_refused, op);
    if (exported == refused)
      fprintf(stderr, "%s: ONNX export table entry %d, refused %d\n", op->type, exported, refused);
    CHECK(exported != refused);
  }
  CHECK(n >= 27);
  CHECK_OK(cn_native_check_tables());
  check_count_refused();
  return cn_test_finish();
}
