"""convnet convert IN OUT.onnx against ONNX Runtime: the exported file, run by onnxruntime, gives
what convnet itself gives (`convnet run`) within 1e-4 (relative to the output's magnitude for
unnormalised outputs).

Keras models (small ones covering every layer class, and keras.applications models with random
weights at small input sizes) are saved as full-model .h5 by Keras; ONNX models imported by
convnet (the ONNX project's light models, PyTorch exports) are checked against ONNX Runtime on the
original file too. A model with a layer ONNX cannot express is refused by name."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, need_file, run_convnet

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ort = pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")
layers = keras.layers

sys.path.insert(0, os.path.dirname(__file__))
import test_keras_models as small_models  # noqa: E402
import test_zoo_keras as zoo  # noqa: E402

TOL = 1e-4


def ort_run(path, *inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)


def convnet_run(convnet_bin, model, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    run_convnet(convnet_bin, "run", "-m", model, "--input", tmp_path / "x.npy", "--output",
                tmp_path / "y.npy")
    return np.load(tmp_path / "y.npy")


def convert(convnet_bin, model, out, *extra):
    run_convnet(convnet_bin, "convert", model, out, *extra)
    assert out.exists()
    return out


def max_diff(got, want):
    return float(np.abs(np.asarray(got) - np.asarray(want)).max())


def check_export(convnet_bin, tmp_path, model_path, x, scale=1.0):
    """Exports model_path, runs both sides, returns the max |diff| (asserted within TOL*scale)."""
    onnx_path = convert(convnet_bin, model_path, tmp_path / "out.onnx")
    want = convnet_run(convnet_bin, model_path, x, tmp_path)
    got = ort_run(onnx_path, x)[0]
    assert got.shape == want.shape, (got.shape, want.shape)
    diff = max_diff(got, want)
    tol = TOL * max(scale, 1.0)
    assert diff <= tol, f"{model_path.name}: max |diff| {diff:.3g} > {tol:.3g}"
    print(f"{model_path.name}: max |diff| {diff:.3g} (max |output| {float(np.abs(want).max()):.3g})")
    return diff


# ---- small Keras models: every layer class ----------------------------------------------------


def activations_model():
    inp = keras.Input((7, 9, 4), name="img")
    x = layers.Conv2D(6, 3, padding="same", activation="swish", name="c_swish")(inp)
    a = layers.ReLU(max_value=3.0, negative_slope=0.1, threshold=0.5, name="relu_general")(x)
    b = layers.Activation("elu", name="elu")(x)
    c = layers.Activation("hard_sigmoid", name="hsig")(x)
    d = layers.Activation("tanh", name="tanh")(x)
    e = layers.LeakyReLU(negative_slope=0.3, name="leaky")(x)
    f = layers.ReLU(threshold=0.2, name="relu_th")(x)
    x = layers.Concatenate(axis=-1, name="cat")([a, b, c, d, e, f])
    x = layers.Conv2D(5, 2, strides=2, padding="valid", activation="relu6", name="c_relu6")(x)
    s = layers.Softmax(axis=1, name="softmax_h")(x)
    s = layers.Dense(3, name="dense_4d")(s)  # Dense on a rank-4 tensor: MatMul + Add
    s = layers.Reshape((-1, 3), name="reshape")(s)
    s = layers.Flatten(name="flat")(s)
    return keras.Model(inp, layers.Dense(4, activation="sigmoid", name="out")(s), name="acts")


def image_output_model():
    """An image-shaped output: transposed back to NHWC at the graph's end."""
    inp = keras.Input((10, 8, 3), name="img")
    x = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    return keras.Model(inp, layers.Activation("relu", name="relu")(x), name="image_out")


SMALL = {**small_models.MODELS, "activations": activations_model, "image_out": image_output_model}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_keras(convnet_bin, tmp_path, name):
    model = small_models.randomize(SMALL[name](), 3)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    x = np.random.default_rng(4).normal(0, 1, (3,) + tuple(model.input_shape[1:]))
    x = x.astype(np.float32)
    check_export(convnet_bin, tmp_path, path, x)


def test_keras_boundary_layout(convnet_bin, tmp_path):
    """A Keras model keeps its NHWC input and output shapes, with a symbolic batch."""
    model = small_models.randomize(image_output_model(), 1)
    model.save(tmp_path / "m.h5")
    sess = ort.InferenceSession(str(convert(convnet_bin, tmp_path / "m.h5", tmp_path / "m.onnx")),
                                providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.shape == ["N", 10, 8, 3] and out.shape == ["N", 10, 8, 4]


# ---- keras.applications models with random weights --------------------------------------------

ZOO = [("mobilenet", dict(alpha=0.25, size=(96, 96))), ("mobilenet_v2", dict(alpha=0.35)),
       ("vgg16", dict(no_top=True, size=(32, 32)))]
ZOO_SLOW = [("resnet50", dict(classes=10, size=(96, 96))),
            ("inception_v3", dict(no_top=True, pooling="avg", size=(96, 96)))]


def zoo_case(convnet_bin, tmp_path, name, kw):
    rng = np.random.default_rng(11)
    model = zoo.keras_model(name, **kw)
    zoo.randomise(model, rng)
    x = zoo.random_input(name, model.input_shape[1:], rng)
    if not kw.get("no_top"):
        zoo.spread_logits(model, x)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    del model
    scale = 1.0
    if kw.get("no_top"):
        scale = float(np.abs(convnet_run(convnet_bin, path, x, tmp_path)).max())
    check_export(convnet_bin, tmp_path, path, x, scale)


@pytest.mark.parametrize("name,kw", ZOO)
def test_zoo_keras(convnet_bin, tmp_path, name, kw):
    zoo_case(convnet_bin, tmp_path, name, kw)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", ZOO_SLOW)
def test_zoo_keras_big(convnet_bin, tmp_path, name, kw):
    zoo_case(convnet_bin, tmp_path, name, kw)


def test_zoo_name_with_weights(convnet_bin, tmp_path):
    """IN may be a zoo name with -w and --alpha, as for classify."""
    model = zoo.keras_model("mobilenet", alpha=0.25)
    zoo.randomise(model, np.random.default_rng(2))
    weights = tmp_path / "m.weights.h5"
    model.save_weights(weights)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    want = model.predict(x, verbose=0)
    out = convert(convnet_bin, "mobilenet", tmp_path / "m.onnx", "-w", weights, "--alpha", "0.25")
    assert max_diff(ort_run(out, x)[0], want) <= TOL


# ---- models imported from ONNX ----------------------------------------------------------------

LIGHT = ["light_bvlc_alexnet", "light_inception_v1", "light_shufflenet", "light_resnet50"]
LIGHT_SLOW = ["light_densenet121", "light_inception_v2", "light_zfnet512", "light_vgg19"]


def light_input(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float32) / n).reshape(shape)


def onnx_roundtrip(convnet_bin, tmp_path, path, x):
    """ORT on the original file against ORT on convnet's export of it (both layouts NCHW)."""
    want = ort_run(path, x)
    got = ort_run(convert(convnet_bin, path, tmp_path / "re.onnx"), x)
    assert len(got) == len(want)
    diffs = []
    for g, w in zip(got, want):
        assert g.shape == w.shape
        diffs.append(max_diff(g, w))
        tol = TOL * max(1.0, float(np.abs(w).max()))
        assert diffs[-1] <= tol, f"{path.name}: max |diff| {diffs[-1]:.3g} > {tol:.3g}"
    spread = max(float(np.ptp(w)) for w in want)
    print(f"{path.name}: max |diff| {max(diffs):.3g} (outputs spread {spread:.3g})")


def random_weight(rng, shape):
    """Kernels fan-in scaled; 1-D tensors (biases, scales, BatchNorm statistics) in [0.5, 1.5],
    so that variances stay positive."""
    if len(shape) >= 2:
        return rng.normal(0, np.sqrt(2.0 / max(1, int(np.prod(shape[1:])))), shape)
    return rng.uniform(0.5, 1.5, shape)


def randomised_light(shared_data, name, tmp_path):
    """The light model with random float weights. Its weights are ConstantOfShape nodes (all one
    value, a uniform softmax that would hide any mistake); they become random initializers."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    path = need_file(shared_data / "onnx" / "light" / f"{name}.onnx")
    model = onnx.load(str(path))
    rng = np.random.default_rng(5)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        value = [a for a in node.attribute if a.name == "value"]
        is_float = not value or value[0].t.data_type == onnx.TensorProto.FLOAT
        if node.op_type == "ConstantOfShape" and node.input[0] in inits and is_float:
            shape = tuple(int(d) for d in inits[node.input[0]])
            w = random_weight(rng, shape).astype(np.float32)
            model.graph.initializer.append(numpy_helper.from_array(w, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    out = tmp_path / f"{name}.onnx"
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("name", LIGHT)
def test_onnx_light(convnet_bin, tmp_path, shared_data, name):
    path = randomised_light(shared_data, name, tmp_path)
    onnx_roundtrip(convnet_bin, tmp_path, path, light_input(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_SLOW)
def test_onnx_light_big(convnet_bin, tmp_path, shared_data, name):
    path = randomised_light(shared_data, name, tmp_path)
    onnx_roundtrip(convnet_bin, tmp_path, path, light_input(path))


def test_onnx_keeps_nchw_boundary(convnet_bin, tmp_path, shared_data):
    path = need_file(shared_data / "onnx" / "light" / "light_inception_v1.onnx")
    out = convert(convnet_bin, path, tmp_path / "re.onnx")
    before = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert after.get_inputs()[0].shape[1:] == before.get_inputs()[0].shape[1:]
    assert after.get_inputs()[0].shape[0] == "N"


@pytest.mark.slow
def test_torch_exports(convnet_bin, tmp_path):
    """PyTorch models exported by torch.onnx (test_onnx_torch.py's), imported and re-exported."""
    torch_python = os.environ.get("CN_TORCH_PYTHON", "/usr/bin/python3")
    script = ROOT / "tests" / "oracle" / "test_onnx_torch.py"
    names = ["resnet", "mobilenet_v2", "inception"]  # the small models of test_onnx_torch.py
    proc = subprocess.run([torch_python, str(script), str(tmp_path), *names], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"torch export unavailable: {proc.stderr.strip()[-300:]}")
    models = sorted(tmp_path.glob("*.onnx"))
    assert len(models) == len(names), proc.stderr
    for path in models:
        x = np.load(str(path)[: -len(".onnx")] + ".x.npy")
        sub = tmp_path / path.stem
        sub.mkdir()
        onnx_roundtrip(convnet_bin, sub, path, x)


# ---- refusals ---------------------------------------------------------------------------------


def test_unsupported_layer_refused(convnet_bin, tmp_path):
    """A dilated AveragePool (ONNX opset 19) imports but has no opset-13 form: refused by name,
    and nothing is left behind."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("AveragePool", ["x"], ["y"], name="dilated_pool", kernel_shape=[2, 2],
                            dilations=[2, 2])
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out.onnx"
    proc = run_convnet(convnet_bin, "convert", path, out, check=False)
    if "dilation" in proc.stderr and "import" in proc.stderr:
        pytest.skip("the importer refuses dilated AveragePool itself")
    assert proc.returncode == 1, proc.stderr
    assert "dilated_pool" in proc.stderr or "y" in proc.stderr
    assert "cannot export to ONNX" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob("out.onnx.tmp*"))
