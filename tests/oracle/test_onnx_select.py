"""Comparisons, Where, Selu and reductions over any axes, as ONNX's function bodies use them
(Softmax written as ReduceMax/Exp/ReduceSum/Div, Clip as Less/Where, Elu as Less/Exp/Where):
convnet imports each graph and computes what ONNX Runtime computes, and its ONNX export of the
imported model (bools are 0/1 floats inside convnet, so the export casts at both ends) runs in
ONNX Runtime to the same values."""
import numpy as np
import pytest

from conftest import run_convnet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

TOL = 1e-5
rng = np.random.default_rng(11)


def save_model(tmp_path, nodes, inputs, output_shape, inits=(), opset=18):
    """output_shape None: the output's rank only is left unknown (shape inference fills it)."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if output_shape is None:
        model.graph.output[0].type.tensor_type.ClearField("shape")
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def run_both(convnet_bin, tmp_path, path, xs):
    """convnet's output, ONNX Runtime's on the model, ONNX Runtime's on convnet's export. A graph
    that works across ONNX's first axis runs as one sample (docs/onnx.md): convnet then writes,
    and its export takes, each tensor with a leading 1."""
    args = []
    for k, x in enumerate(xs):
        np.save(tmp_path / f"x{k}.npy", x)
        args += ["--input", tmp_path / f"x{k}.npy"]
    run_convnet(convnet_bin, "run", "-m", path, *args, "--output", tmp_path / "y.npy")
    got = np.load(tmp_path / "y.npy")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})[0]
    out = tmp_path / "export.onnx"
    run_convnet(convnet_bin, "convert", path, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.reshape((1,) * (len(i.shape) - x.ndim) + x.shape)
             for i, x in zip(sess.get_inputs(), xs)}
    exported = sess.run(None, feeds)[0]
    return got, want, exported


def check(convnet_bin, tmp_path, path, xs):
    got, want, exported = run_both(convnet_bin, tmp_path, path, xs)
    assert got.size == want.size, (got.shape, want.shape)
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(exported.reshape(want.shape), want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("op", ["Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal"])
def test_comparison_where(convnet_bin, tmp_path, op):
    """Where(a op b, a, b) with b broadcast along the last axis; ties included for the
    or-equal forms."""
    a = rng.integers(-3, 4, (2, 3, 4)).astype(np.float32)
    b = rng.integers(-3, 4, (1, 1, 4)).astype(np.float32)
    nodes = [helper.make_node(op, ["a", "b"], ["c"]),
             helper.make_node("Where", ["c", "a", "b"], ["y"])]
    path = save_model(tmp_path, nodes, [("a", a.shape), ("b", b.shape)], a.shape)
    check(convnet_bin, tmp_path, path, [a, b])


@pytest.mark.parametrize("position", [0, 1, 2])
def test_where_constant(convnet_bin, tmp_path, position):
    """Where with one operand an initializer: the condition, the true or the false value."""
    x = rng.normal(0, 1, (3, 4, 5)).astype(np.float32)
    const = rng.normal(0, 1, (4, 1)).astype(np.float32)
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    inits = [zero]
    if position == 0:
        cond = helper.make_tensor("cond", TensorProto.BOOL, [4, 1], [True, False, True, False])
        inits.append(cond)
        nodes = [helper.make_node("Neg", ["x"], ["nx"]),
                 helper.make_node("Where", ["cond", "x", "nx"], ["y"])]
    else:
        inits.append(helper.make_tensor("k", TensorProto.FLOAT, [4, 1], const.ravel()))
        ins = ["c", "k", "x"] if position == 1 else ["c", "x", "k"]
        nodes = [helper.make_node("Less", ["x", "zero"], ["c"]), helper.make_node("Where", ins, ["y"])]
    path = save_model(tmp_path, nodes, [("x", x.shape)], x.shape, inits)
    check(convnet_bin, tmp_path, path, [x])


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("axes", [[0], [1], [2], [-1], [0, 2], [0, 1, 2], []],
                         ids=lambda a: str(a))
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_any_axes(convnet_bin, tmp_path, op, axes, keepdims):
    """A reduction over any set of axes of a tensor without a batch axis, the first included
    (an empty list: every axis)."""
    x = rng.normal(0, 1, (3, 4, 5)).astype(np.float32)
    axes_init = helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes)
    node = helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)
    path = save_model(tmp_path, [node], [("x", x.shape)], None, [axes_init])
    check(convnet_bin, tmp_path, path, [x])


def test_selu(convnet_bin, tmp_path):
    x = rng.normal(0, 2, (2, 3, 4)).astype(np.float32)
    path = save_model(tmp_path, [helper.make_node("Selu", ["x"], ["y"], alpha=1.5, gamma=1.2)],
                      [("x", x.shape)], x.shape)
    check(convnet_bin, tmp_path, path, [x])
    path = save_model(tmp_path, [helper.make_node("Selu", ["x"], ["y"])], [("x", x.shape)],
                      x.shape)
    check(convnet_bin, tmp_path, path, [x])


def test_cast_like(convnet_bin, tmp_path):
    """CastLike of a constant folds to the target's type; of a bool onto a float it is the 0/1
    values (ONNX's Elu body)."""
    x = rng.normal(0, 1, (3, 4)).astype(np.float32)
    one = helper.make_tensor("one", TensorProto.INT64, [], [1])
    nodes = [helper.make_node("CastLike", ["one", "x"], ["onef"]),
             helper.make_node("Less", ["x", "onef"], ["c"]),
             helper.make_node("CastLike", ["c", "x"], ["cf"]),
             helper.make_node("Add", ["x", "cf"], ["y"])]
    path = save_model(tmp_path, nodes, [("x", x.shape)], x.shape, [one])
    check(convnet_bin, tmp_path, path, [x])
