"""The zoo against Keras itself: every keras.applications model convnet builds has the same layers
(names, classes, parameter counts, output shapes) as Keras 3 builds, and with the same random
weights -- saved by Keras in the legacy save_weights .h5 layout, the Keras 3 .weights.h5 layout
and (small models) a full-model .h5 -- gives the same probabilities as model.predict within
1e-4."""
import ctypes
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from keras.src.legacy.saving import legacy_h5_format  # noqa: E402

from cn_types import Shape  # noqa: E402



class ZooOptions(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("no_top", ctypes.c_int), ("pooling", ctypes.c_char_p),
                ("height", ctypes.c_int), ("width", ctypes.c_int), ("classes", ctypes.c_int),
                ("alpha", ctypes.c_float)]


class LayerInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_char_p), ("output", Shape),
                ("params", ctypes.c_int64), ("trainable", ctypes.c_int64),
                ("n_inputs", ctypes.c_int), ("inputs", ctypes.c_char_p * 8)]


@pytest.fixture(scope="module")
def lib(libconvnet):
    lib = libconvnet
    lib.cn_zoo_build.argtypes = [ctypes.POINTER(ZooOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.cn_model_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.cn_model_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                     ctypes.c_void_p]
    lib.cn_model_free.argtypes = [ctypes.c_void_p]
    lib.cn_model_output_shape.argtypes = [ctypes.c_void_p]
    lib.cn_model_output_shape.restype = Shape
    lib.cn_model_input_shape.argtypes = [ctypes.c_void_p]
    lib.cn_model_input_shape.restype = Shape
    lib.cn_model_layer_count.argtypes = [ctypes.c_void_p]
    lib.cn_model_layer_count.restype = ctypes.c_size_t
    lib.cn_model_layer_info.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(LayerInfo)]
    lib.cn_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status, what):
    if status != 0:
        raise AssertionError(f"{what} failed ({status}): {lib.cn_last_error().decode()}")


class Ours:
    """A zoo model built by convnet through the C API."""

    def __init__(self, lib, name, no_top=False, pooling=None, size=None, classes=0, alpha=0.0):
        self.lib = lib
        h, w = size or (0, 0)
        opts = ZooOptions(name.encode(), int(no_top), pooling.encode() if pooling else None,
                          h, w, classes, alpha)
        self.handle = ctypes.c_void_p()
        check(lib, lib.cn_zoo_build(ctypes.byref(opts), ctypes.byref(self.handle)), f"build {name}")

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.cn_model_free(self.handle)

    def layers(self):
        out = {}
        info = LayerInfo()
        for i in range(self.lib.cn_model_layer_count(self.handle)):
            check(self.lib, self.lib.cn_model_layer_info(self.handle, i, ctypes.byref(info)), "info")
            out[info.name.decode()] = (info.type.decode(), info.params, info.trainable,
                                       info.output.tuple())
        return out

    def load_weights(self, path):
        check(self.lib, self.lib.cn_model_load_weights(self.handle, str(path).encode()),
              f"load {path}")

    def forward(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        out_shape = self.lib.cn_model_output_shape(self.handle).tuple()
        y = np.zeros((x.shape[0],) + out_shape, dtype=np.float32)
        check(self.lib, self.lib.cn_model_forward(self.handle, x.shape[0], x.ctypes.data,
                                                  y.ctypes.data), "forward")
        return y


def keras_model(name, no_top=False, pooling=None, size=None, classes=1000, alpha=1.0):
    """The same model from keras.applications, in a fresh session so automatic names match."""
    keras.backend.clear_session()
    apps = keras.applications
    default = 299 if name == "inception_v3" else 224
    h, w = size or (default, default)
    kw = dict(weights=None, include_top=not no_top, pooling=pooling, input_shape=(h, w, 3))
    if not no_top:
        kw["classes"] = classes
    if name == "mobilenet":
        return apps.MobileNet(alpha=alpha, **kw)
    if name == "mobilenet_v2":
        return apps.MobileNetV2(alpha=alpha, **kw)
    ctor = {"vgg16": apps.VGG16, "vgg19": apps.VGG19, "resnet50": apps.ResNet50,
            "inception_v3": apps.InceptionV3}[name]
    return ctor(**kw)


def keras_layers(model):
    def trainable(layer):
        return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)

    return {layer.name: (layer.__class__.__name__, layer.count_params(), trainable(layer),
                         tuple(layer.output.shape[1:])) for layer in model.layers}


SMALL = [("mobilenet", dict(alpha=0.25)), ("mobilenet", dict(no_top=True, pooling="max", alpha=0.5)),
         ("mobilenet_v2", dict(alpha=0.35, size=(97, 131))),
         ("mobilenet_v2", dict(no_top=True, pooling="avg", alpha=1.4))]
# (the forward tests below also compare the layers of the models they build)
BIG = [("vgg19", dict(no_top=True, size=(64, 96))), ("resnet50", dict(classes=10)),
       ("resnet50", dict(no_top=True, pooling="max", size=(193, 255))),
       ("inception_v3", dict(no_top=True, pooling="avg", size=(150, 211)))]


def compare_layers(lib, name, kw, model=None):
    ours = Ours(lib, name, **kw).layers()
    theirs = keras_layers(model or keras_model(name, **kw))
    assert sorted(ours) == sorted(theirs), (set(ours) ^ set(theirs))
    for layer, spec in theirs.items():
        assert ours[layer] == spec, f"{name} {layer}: convnet {ours[layer]}, Keras {spec}"


@pytest.mark.parametrize("name,kw", SMALL)
def test_layers_match_keras(lib, name, kw):
    compare_layers(lib, name, kw)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", BIG)
def test_layers_match_keras_big(lib, name, kw):
    compare_layers(lib, name, kw)


def randomise(model, rng):
    """Random weights that keep activations of order one through any depth: He-scaled kernels and
    BatchNormalization statistics near identity (but all different, so that each one matters)."""
    for layer in model.layers:
        values = []
        for w in layer.weights:
            shape, tag = tuple(w.shape), w.path.split("/")[-1]
            if tag in ("kernel", "depthwise_kernel"):
                fan_in = int(np.prod(shape[:-1])) if tag == "kernel" else int(np.prod(shape[:2]))
                scale = np.sqrt(2.0 / fan_in)
                values.append(rng.normal(0, scale, shape))
            elif tag == "gamma":
                values.append(rng.uniform(0.7, 1.3, shape))
            elif tag == "moving_variance":
                values.append(rng.uniform(0.5, 1.5, shape))
            elif tag in ("beta", "moving_mean", "bias"):
                values.append(rng.uniform(-0.2, 0.2, shape))
            else:
                raise AssertionError(f"unexpected weight {w.path}")
        if values:
            layer.set_weights([v.astype(np.float32) for v in values])


def spread_logits(model, x, spread=3.0):
    """Rescales the classifier so that its logits on x vary by about `spread` across classes:
    probabilities neither uniform (a test that could not fail) nor one-hot (saturated)."""
    last = [layer for layer in model.layers if layer.weights][-1]
    features = keras.Model(model.input, last.input).predict(x, verbose=0)
    kernel, bias = last.get_weights()
    logits = features.reshape(len(x), -1) @ kernel.reshape(-1, kernel.shape[-1])
    kernel *= spread / max(float(logits.std(axis=1).mean()), 1e-12)
    last.set_weights([kernel, bias])


def random_input(name, shape, rng, batch=2):
    x = rng.uniform(-1, 1, (batch,) + tuple(shape)).astype(np.float32)
    return x * 120 if name in ("vgg16", "vgg19", "resnet50") else x  # caffe mode: 0-centred pixels


def save_all(model, tmp_path):
    """The legacy save_weights .h5 layout, the Keras 3 .weights.h5, and (for the small models, to
    keep the time down) a full-model legacy .h5 from model.save."""
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    keras3 = tmp_path / "m.weights.h5"
    model.save_weights(keras3)
    files = [legacy, keras3]
    if model.count_params() < 10_000_000:
        full = tmp_path / "full.h5"
        model.save(full)
        files.append(full)
    return files


def compare_forward(lib, tmp_path, name, kw):
    rng = np.random.default_rng(7)
    model = keras_model(name, **kw)
    compare_layers(lib, name, kw, model)
    randomise(model, rng)
    x = random_input(name, model.input_shape[1:], rng)
    if not kw.get("no_top"):
        spread_logits(model, x)
    expected = model.predict(x, verbose=0)
    if not kw.get("no_top"):
        assert 0.02 < expected.max() < 0.99, f"test weights give max probability {expected.max()}"
    files = save_all(model, tmp_path)
    del model
    for path in files:
        ours = Ours(lib, name, **kw)
        ours.load_weights(path)
        got = ours.forward(x)
        tol = 1e-4 if not kw.get("no_top") else 1e-4 * max(1.0, float(np.abs(expected).max()))
        diff = float(np.abs(got - expected).max())
        assert diff <= tol, f"{name} {kw} from {path.name}: max |delta| {diff:.3g}"


# odd input sizes exercise MobileNetV2's correct_pad and the asymmetric "same" padding
FORWARD_SMALL = [("mobilenet", dict(alpha=0.25)), ("mobilenet_v2", dict(alpha=0.35)),
                 ("mobilenet_v2", dict(no_top=True, pooling="avg", size=(97, 131)))]
FORWARD_BIG = [("mobilenet", {}), ("mobilenet_v2", {}), ("resnet50", {}), ("inception_v3", {}),
               ("vgg16", {}), ("vgg19", {}), ("resnet50", dict(no_top=True, pooling="avg",
                                                               size=(97, 131)))]


@pytest.mark.parametrize("name,kw", FORWARD_SMALL)
def test_forward_matches_keras(lib, tmp_path, name, kw):
    compare_forward(lib, tmp_path, name, kw)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", FORWARD_BIG)
def test_forward_matches_keras_big(lib, tmp_path, name, kw):
    compare_forward(lib, tmp_path, name, kw)
