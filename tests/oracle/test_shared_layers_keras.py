"""Shared layers (one Keras layer object called on several tensors) and models of several inputs
and outputs, written by Keras 3 and run by convnet against model.predict.

Models: a siamese pair of shared Dense layers with two outputs and its inputs listed in another
order than the layer list; a nested base model (Conv2D, BatchNormalization, pooling, Dense) called
on two images, the usual siamese network; one layer called three times. Each is loaded from
to_json() + .weights.h5, from a full-model .h5, converted to .cnm and to ONNX (the ONNX file is
checked to hold each shared weight once, and run with ONNX Runtime when it is installed). Bad
architectures (a call that does not exist, a layer that is not in the model, a shared layer called
on an input its weights do not fit) fail with one line naming the layer."""
import json
import os

import numpy as np
import pytest

from conftest import run_convnet

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
layers = keras.layers

TOL = 1e-5


def randomize(model, seed):
    """Random weights (moving variances positive) so that nothing is trivially zero."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        value = rng.uniform(0.5, 1.5, shape) if "variance" in w.path else rng.normal(0, 0.5, shape)
        w.assign(value.astype(np.float32))


def dense_pair():
    a = keras.Input((6,), name="left")
    b = keras.Input((6,), name="right")
    embed = layers.Dense(5, activation="tanh", name="embed")
    proj = layers.Dense(3, name="proj")
    ea, eb = proj(embed(a)), proj(embed(b))
    diff = layers.Subtract(name="diff")([ea, eb])
    both = layers.Add(name="both")([ea, eb])
    # inputs in the other order than the layer list: convnet must follow input_layers
    return keras.Model([b, a], [diff, both], name="dense_pair")


def nested_siamese():
    x = keras.Input((8, 8, 3), name="image")
    h = layers.Conv2D(4, 3, padding="same", name="conv")(x)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.ReLU(name="relu")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    h = layers.Dense(5, name="embed")(h)
    base = keras.Model(x, h, name="base")
    a = keras.Input((8, 8, 3), name="a")
    b = keras.Input((8, 8, 3), name="b")
    d = layers.Subtract(name="diff")([base(a), base(b)])
    return keras.Model([a, b], layers.Dense(1, activation="sigmoid", name="score")(d),
                       name="nested_siamese")


def thrice():
    x = keras.Input((4,), name="x")
    dense = layers.Dense(4, activation="tanh", name="step")
    h = dense(dense(dense(x)))
    return keras.Model(x, h, name="thrice")


MODELS = {"dense_pair": dense_pair, "nested_siamese": nested_siamese, "thrice": thrice}


def inputs_for(model, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (3,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]


def save_all(model, tmp_path, xs):
    arch = tmp_path / "model.json"
    arch.write_text(model.to_json())
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    full = tmp_path / "model.h5"
    model.save(full)
    in_paths = []
    for i, x in enumerate(xs):
        in_paths.append(tmp_path / f"x{i}.npy")
        np.save(in_paths[-1], x)
    return arch, weights, full, in_paths


def convnet_run(convnet_bin, tmp_path, model_args, in_paths, n_out):
    args = ["run", *model_args]
    for p in in_paths:
        args += ["--input", p]
    outs = [tmp_path / f"y{i}.npy" for i in range(n_out)]
    for p in outs:
        args += ["--output", p]
    run_convnet(convnet_bin, *args)
    return [np.load(p) for p in outs]


def check_close(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert np.max(np.abs(g - w)) <= TOL


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shared_layers_match_keras(convnet_bin, tmp_path, name):
    model = MODELS[name]()
    randomize(model, 1)
    xs = inputs_for(model, 2)
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = [np.asarray(w) for w in (want if isinstance(want, list) else [want])]
    arch, weights, full, in_paths = save_all(model, tmp_path, xs)
    n = len(want)
    check_close(convnet_run(convnet_bin, tmp_path, ["-m", arch, "-w", weights], in_paths, n), want)
    check_close(convnet_run(convnet_bin, tmp_path, ["-m", full], in_paths, n), want)
    cnm = tmp_path / "model.cnm"
    run_convnet(convnet_bin, "convert", arch, cnm, "-w", weights)
    check_close(convnet_run(convnet_bin, tmp_path, ["-m", cnm], in_paths, n), want)
    # the summary counts each shared weight once, as Keras does
    summary = run_convnet(convnet_bin, "summary", "-m", cnm).stdout
    assert f"Total params: {model.count_params():,}" in summary
    check_onnx(convnet_bin, tmp_path, arch, weights, model, xs, want)


def check_onnx(convnet_bin, tmp_path, arch, weights, model, xs, want):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "model.onnx"
    run_convnet(convnet_bin, "convert", arch, path, "-w", weights)
    graph = onnx.load(str(path)).graph
    stored = sum(int(np.prod(t.dims)) for t in graph.initializer if len(t.dims) >= 1)
    # each weight once (the model's parameters; small shape constants may come on top)
    assert model.count_params() <= stored < 2 * model.count_params()
    try:
        import onnxruntime
    except ImportError:
        return
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(session.get_inputs(), xs)}
    check_close(session.run(None, feeds), want)


# ---- bad architectures -------------------------------------------------------------------------


def edited(tmp_path, model, edit):
    spec = json.loads(model.to_json())
    edit(spec["config"]["layers"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    return path


def layer(layers_list, name):
    return next(entry for entry in layers_list if entry["name"] == name)


def history(entry, call, arg=0):
    return entry["inbound_nodes"][call]["args"][arg]["config"]["keras_history"]


def one_line_error(convnet_bin, path, *words):
    proc = run_convnet(convnet_bin, "summary", "-m", path, check=False)
    assert proc.returncode == 1
    message = proc.stderr.strip()
    assert "\n" not in message, message
    for word in words:
        assert word in message, message


def test_call_that_does_not_exist(convnet_bin, tmp_path):
    def edit(ls):
        history(layer(ls, "proj"), 1)[1] = 5  # embed has two calls

    one_line_error(convnet_bin, edited(tmp_path, dense_pair(), edit), "layer proj",
                   "embed has no call 5")


def test_layer_not_in_model(convnet_bin, tmp_path):
    def edit(ls):
        history(layer(ls, "proj"), 1)[0] = "ghost"

    one_line_error(convnet_bin, edited(tmp_path, dense_pair(), edit), "layer proj",
                   "ghost is not a layer of the model")


def test_shared_layer_on_unfit_input(convnet_bin, tmp_path):
    def edit(ls):
        layer(ls, "right")["config"]["batch_shape"] = [None, 7]

    one_line_error(convnet_bin, edited(tmp_path, dense_pair(), edit),
                   "embed: called on an input of shape (7,) but its weights fit (6,)")
