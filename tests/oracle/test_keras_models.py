"""Keras files that Keras itself writes, loaded by convnet and run against model.predict.

Small Sequential, Functional and nested models cover every layer class the loader knows, with the
configurations that usually go wrong (same padding with stride 2 on odd sizes, dilation, groups,
depth_multiplier 2, same pooling, merges, nested models, ReLU(max_value=6), LeakyReLU,
Conv2DTranspose output lengths, UpSampling2D nearest and bilinear). Weights are
random, BatchNormalization moving statistics included. Each model is checked as a full-model .h5,
as a legacy save_weights .h5 with the to_json() architecture, and as a Keras 3 .weights.h5."""
import ctypes
import os

import numpy as np
import pytest

from conftest import run_convnet
from cn_types import Shape

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
layers = keras.layers

TOL = 1e-4


def _bind(lib):
    lib.cn_last_error.restype = ctypes.c_char_p
    lib.cn_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.cn_model_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.cn_model_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.cn_model_output_shape.restype = Shape
    lib.cn_model_output_shape.argtypes = [ctypes.c_void_p]
    lib.cn_model_free.argtypes = [ctypes.c_void_p]
    return lib


@pytest.fixture(scope="module")
def lib(libconvnet):
    return _bind(libconvnet)


def convnet_predict(lib, model_path, x, weights=None):
    """cn_model_load (+ cn_model_load_weights) + cn_model_forward through ctypes."""
    handle = ctypes.c_void_p()
    st = lib.cn_model_load(str(model_path).encode(), ctypes.byref(handle))
    assert st == 0, lib.cn_last_error().decode()
    try:
        if weights is not None:
            st = lib.cn_model_load_weights(handle, str(weights).encode())
            assert st == 0, lib.cn_last_error().decode()
        shape = lib.cn_model_output_shape(handle)
        out = np.zeros((x.shape[0],) + tuple(shape.dim[: shape.rank]), np.float32)
        x = np.ascontiguousarray(x, np.float32)
        st = lib.cn_model_forward(handle, x.shape[0], x.ctypes.data, out.ctypes.data)
        assert st == 0, lib.cn_last_error().decode()
        return out
    finally:
        lib.cn_model_free(handle)


def randomize(model, seed):
    """Random weights; BatchNormalization variances positive."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize(layer, seed + 1)
            continue
        new = []
        for w in layer.weights:
            v = rng.normal(0, 0.5, w.shape).astype(np.float32)
            if "variance" in w.path:
                v = rng.uniform(0.5, 2.0, w.shape).astype(np.float32)
            new.append(v)
        if new:
            layer.set_weights(new)
    return model


def sequential_model():
    return keras.Sequential(
        [
            keras.Input((9, 11, 3)),
            layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv_s2"),
            layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw"),
            layers.BatchNormalization(epsilon=1e-3, name="bn"),
            layers.ReLU(max_value=6.0, name="relu6"),
            layers.ZeroPadding2D(((1, 0), (2, 1)), name="pad"),
            layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool"),
            layers.AveragePooling2D(2, padding="same", name="avgpool"),
            layers.Conv2D(6, 3, dilation_rate=2, padding="same", groups=2, name="grouped"),
            layers.LeakyReLU(negative_slope=0.2, name="leaky"),
            layers.Flatten(name="flat"),
            layers.Dropout(0.3, name="drop"),
            layers.Dense(5, name="logits"),
            layers.Softmax(name="probs"),
        ],
        name="seq_all",
    )


def functional_model():
    inp = keras.Input((13, 13, 4), name="img")
    a = layers.Conv2D(4, 1, name="a")(inp)
    b = layers.Conv2D(4, 3, padding="same", dilation_rate=2, activation="tanh", name="b")(inp)
    c = layers.DepthwiseConv2D(5, padding="same", activation="sigmoid", name="c")(inp)
    merged = [
        layers.Add(name="add")([a, b, c]),
        layers.Subtract(name="sub")([a, b]),
        layers.Multiply(name="mul")([b, c]),
        layers.Average(name="avg")([a, c]),
        layers.Maximum(name="max")([a, b]),
        layers.Minimum(name="min")([b, c]),
    ]
    x = layers.Concatenate(name="cat")(merged)
    x = layers.BatchNormalization(center=False, scale=False, name="bn_plain")(x)
    x = layers.Activation("relu", name="act")(x)
    x = layers.AveragePooling2D(3, strides=2, padding="valid", name="pool_valid")(x)
    g1 = layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    g1 = layers.Reshape((24,), name="reshape")(g1)
    g2 = layers.GlobalMaxPooling2D(name="gmp")(x)
    y = layers.Concatenate(axis=-1, name="cat2")([g1, g2])
    out = layers.Dense(3, activation="softmax", name="out")(y)
    return keras.Model(inp, out, name="func_all")


def nested_model():
    inner_seq = keras.Sequential(
        [keras.Input((8, 8, 6)), layers.Conv2D(5, 3, padding="same", name="iconv"),
         layers.BatchNormalization(name="ibn"), layers.ReLU(name="irelu")],
        name="inner_seq",
    )
    i = keras.Input((8, 8, 5), name="iin")
    j = layers.Conv2D(5, 1, name="jconv")(i)
    inner_func = keras.Model(i, layers.Add(name="iadd")([i, j]), name="inner_func")
    inp = keras.Input((10, 10, 3), name="outer_in")
    x = layers.Conv2D(6, 3, name="stem")(inp)
    x = inner_seq(x)
    x = inner_func(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, layers.Dense(4, name="head")(x), name="nested")


def upsampling_model():
    """Conv2DTranspose in each geometry Keras computes (same/valid, strides above and below the
    kernel, output_padding, dilation, fused activations, no bias) and UpSampling2D nearest and
    bilinear, each flattened into one output."""
    inp = keras.Input((5, 6, 3), name="img")
    t_same = layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu",
                                    name="t_same")(inp)
    t_k4 = layers.Conv2DTranspose(2, 4, strides=2, padding="same", name="t_k4")(inp)
    t_outpad = layers.Conv2DTranspose(3, (3, 2), strides=(3, 2), padding="same",
                                      output_padding=(2, 1), name="t_outpad")(inp)
    t_valid = layers.Conv2DTranspose(2, 2, strides=3, use_bias=False, name="t_valid")(inp)
    t_valid_op = layers.Conv2DTranspose(2, 3, strides=2, output_padding=1, activation="sigmoid",
                                        name="t_valid_op")(inp)
    t_dil = layers.Conv2DTranspose(3, 3, dilation_rate=2, padding="same", activation="tanh",
                                   name="t_dil")(inp)
    t_dil_valid = layers.Conv2DTranspose(2, (2, 3), dilation_rate=(1, 2), name="t_dil_valid")(inp)
    ups = [
        layers.UpSampling2D(2, name="up_nearest")(t_dil),
        layers.UpSampling2D((3, 2), name="up_nearest_32")(inp),
        layers.UpSampling2D(2, interpolation="bilinear", name="up_bilinear")(t_dil),
        layers.UpSampling2D((1, 3), interpolation="bilinear", name="up_bilinear_13")(inp),
        layers.UpSampling2D(3, interpolation="bilinear", name="up_bilinear_3")(t_same),
    ]
    parts = [t_same, t_k4, t_outpad, t_valid, t_valid_op, t_dil_valid, *ups]
    flat = [layers.Flatten(name=f"flat{i}")(p) for i, p in enumerate(parts)]
    return keras.Model(inp, layers.Concatenate(name="all")(flat), name="upsampling")


MODELS = {"sequential": sequential_model, "functional": functional_model, "nested": nested_model,
          "upsampling": upsampling_model}


def build(name, seed=0):
    model = randomize(MODELS[name](), seed)
    shape = (3,) + tuple(model.input_shape[1:])
    x = np.random.default_rng(seed + 100).normal(0, 1, shape).astype(np.float32)
    return model, x, model.predict(x, verbose=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_full_model_h5(lib, tmp_path, name):
    model, x, want = build(name)
    path = tmp_path / f"{name}.h5"
    model.save(path)
    got = convnet_predict(lib, path, x)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)


def save_legacy_weights(model, path):
    """The Keras 1/2 save_weights layout (layer_names, weight_names), as Keras 3 still writes it."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_json_and_weights(lib, tmp_path, name):
    model, x, want = build(name, seed=7)
    json_path = tmp_path / f"{name}.json"
    json_path.write_text(model.to_json())
    legacy = tmp_path / f"{name}_weights.h5"
    save_legacy_weights(model, legacy)
    np.testing.assert_allclose(convnet_predict(lib, json_path, x, legacy), want, atol=TOL, rtol=0)
    k3 = tmp_path / f"{name}.weights.h5"
    model.save_weights(k3)
    np.testing.assert_allclose(convnet_predict(lib, json_path, x, k3), want, atol=TOL, rtol=0)
    if name != "nested":  # older Keras 3 files lack the vars "name" attribute: class-based keys
        strip_var_names(k3)
        np.testing.assert_allclose(convnet_predict(lib, json_path, x, k3), want, atol=TOL, rtol=0)


def strip_var_names(path):
    import h5py

    with h5py.File(path, "r+") as f:
        def visit(_, obj):
            if isinstance(obj, h5py.Group) and "name" in obj.attrs:
                del obj.attrs["name"]
        f.visititems(visit)


def test_topological_fallback(lib, tmp_path):
    """Weights saved from an auto-named twin (conv2d_2.. instead of conv2d..) load by order."""
    def unnamed():
        return keras.Sequential([keras.Input((6, 6, 2)), layers.Conv2D(3, 3), layers.BatchNormalization(),
                                 layers.Flatten(), layers.Dense(2)])

    first, twin = unnamed(), randomize(unnamed(), 3)
    assert first.layers[0].name != twin.layers[0].name
    json_path = tmp_path / "first.json"
    json_path.write_text(first.to_json())
    weights = tmp_path / "twin_weights.h5"
    save_legacy_weights(twin, weights)
    x = np.random.default_rng(1).normal(0, 1, (2, 6, 6, 2)).astype(np.float32)
    got = convnet_predict(lib, json_path, x, weights)
    np.testing.assert_allclose(got, twin.predict(x, verbose=0), atol=TOL, rtol=0)


def load_weights_error(lib, json_path, weights):
    handle = ctypes.c_void_p()
    assert lib.cn_model_load(str(json_path).encode(), ctypes.byref(handle)) == 0
    try:
        assert lib.cn_model_load_weights(handle, str(weights).encode()) != 0
        return lib.cn_last_error().decode()
    finally:
        lib.cn_model_free(handle)


def test_wrong_weights_refused(lib, tmp_path):
    """Weights of another architecture: refused, naming the layer (and both shapes)."""
    def small(filters):
        return keras.Sequential([keras.Input((9, 11, 3)), layers.Conv2D(filters, 3, name="c"),
                                 layers.Flatten(name="f"), layers.Dense(2, name="d")])

    json_path = tmp_path / "small.json"
    json_path.write_text(small(4).to_json())
    weights = tmp_path / "other_weights.h5"
    save_legacy_weights(small(5), weights)
    msg = load_weights_error(lib, json_path, weights)
    assert "c/kernel: expected (3,3,3,4), file has (3,3,3,5)" in msg, msg

    json_path.write_text(sequential_model().to_json())
    msg = load_weights_error(lib, json_path, weights)
    assert "no weights for layer conv_s2" in msg and "other_weights.h5" in msg, msg


def test_cli_run(convnet_bin, tmp_path):
    """The same through `convnet run -m x.h5 --input in.npy --output out.npy`."""
    if "run" not in run_convnet(convnet_bin, "--help", check=False).stdout:
        pytest.skip("convnet run not available")
    model, x, want = build("functional", seed=5)
    path = tmp_path / "func.h5"
    model.save(path)
    np.save(tmp_path / "in.npy", x)
    run_convnet(convnet_bin, "run", "-m", path, "--input", tmp_path / "in.npy", "--output", tmp_path / "out.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), want, atol=TOL, rtol=0)
