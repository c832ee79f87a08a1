"""Grad-CAM (cn_gradcam_compute) equals a Grad-CAM computed by TensorFlow's GradientTape on the
real pretrained MobileNet (alpha 0.25) Keras file, for every photo in ../shared/data/images.

Both sides get the same float tensor (keras.utils.load_img with NEAREST resizing and
mobilenet.preprocess_input, handed to convnet through ctypes) and explain the same class. The
score differentiated is the logit: the input of the final softmax layer ("predictions"), i.e. the
output of the Reshape after conv_preds. The reference map is relu(sum_k w_k A_k) with w_k the
spatial mean of d logit / d A_k, A the output of conv_pw_13_relu (7x7x256)."""
import ctypes

import numpy as np
import pytest

from conftest import need_file

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

MODEL = "weights/keras/mobilenet_v1_0.25_224.h5"
LAYER = "conv_pw_13_relu"
MIN_PEARSON = 0.99


class GradcamOptions(ctypes.Structure):
    """cn_gradcam_options of convnet/viz.h."""
    _fields_ = [("layer", ctypes.c_char_p), ("class_index", ctypes.c_int)]


class Gradcam(ctypes.Structure):
    """cn_gradcam of convnet/viz.h."""
    _fields_ = [("height", ctypes.c_int), ("width", ctypes.c_int),
                ("map", ctypes.POINTER(ctypes.c_float)), ("class_index", ctypes.c_int),
                ("classes", ctypes.c_int), ("score", ctypes.c_float),
                ("probability", ctypes.c_float), ("layer", ctypes.c_char * 128)]


@pytest.fixture(scope="module")
def keras_model(shared_data):
    path = need_file(shared_data / MODEL)
    # Keras 3 cannot deserialize this Keras 2.8 config: build the architecture, load the weights.
    model = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(224, 224, 3))
    model.load_weights(str(path))
    return model


@pytest.fixture(scope="module")
def convnet_model(libconvnet, shared_data):
    lib = libconvnet
    lib.cn_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.cn_gradcam_compute.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                       ctypes.POINTER(GradcamOptions), ctypes.POINTER(Gradcam)]
    lib.cn_gradcam_free.argtypes = [ctypes.POINTER(Gradcam)]
    lib.cn_model_free.argtypes = [ctypes.c_void_p]
    lib.cn_last_error.restype = ctypes.c_char_p
    model = ctypes.c_void_p()
    path = need_file(shared_data / MODEL)
    assert lib.cn_model_load(str(path).encode(), ctypes.byref(model)) == 0, lib.cn_last_error()
    yield lib, model
    lib.cn_model_free(model)


def prepared(path):
    img = keras.utils.load_img(str(path), target_size=(224, 224), interpolation="nearest")
    x = keras.applications.mobilenet.preprocess_input(keras.utils.img_to_array(img)[None])
    return np.ascontiguousarray(x, dtype=np.float32)


def reference_gradcam(model, x, cls):
    probe = keras.Model(model.inputs,
                        [model.get_layer(LAYER).output, model.get_layer("predictions").input])
    with tf.GradientTape() as tape:
        maps, logits = probe([x], training=False)
        score = logits[:, cls]
    grads = tape.gradient(score, maps)[0].numpy()
    weights = grads.mean(axis=(0, 1))
    cam = np.maximum((maps[0].numpy() * weights).sum(axis=-1), 0.0)
    return cam, float(score[0]), logits[0].numpy()


def convnet_gradcam(convnet_model, x, cls, layer=LAYER):
    lib, model = convnet_model
    cam = Gradcam()
    opts = GradcamOptions(layer.encode() if layer else None, cls)
    data = x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    assert lib.cn_gradcam_compute(model, data, ctypes.byref(opts), ctypes.byref(cam)) == 0, \
        lib.cn_last_error()
    values = np.ctypeslib.as_array(cam.map, shape=(cam.height, cam.width)).copy()
    result = (values, cam.class_index, cam.score, cam.probability, cam.layer.decode())
    lib.cn_gradcam_free(ctypes.byref(cam))
    return result


def photos(shared_data):
    return sorted(p for p in (shared_data / "images").iterdir() if p.is_file())


def pearson(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_gradcam_equals_tensorflow_on_every_photo(keras_model, convnet_model, shared_data):
    paths = photos(shared_data)
    assert len(paths) >= 9
    correlations = {}
    for path in paths:
        x = prepared(path)
        probe_logits = reference_gradcam(keras_model, x, 0)[2]
        top, fifth = np.argsort(-probe_logits, kind="stable")[[0, 4]]
        for cls in (int(top), int(fifth)):
            expected, score, _ = reference_gradcam(keras_model, x, cls)
            got, got_cls, got_score, _, layer = convnet_gradcam(convnet_model, x, cls)
            assert (got_cls, layer, got.shape) == (cls, LAYER, expected.shape)
            assert got_score == pytest.approx(score, rel=1e-3, abs=1e-3)
            correlations[(path.name, cls)] = pearson(got, expected)
    worst = min(correlations, key=correlations.get)
    print(f"\nGrad-CAM vs TensorFlow: minimum Pearson {correlations[worst]:.8f} "
          f"({worst[0]}, class {worst[1]}) over {len(correlations)} maps")
    assert correlations[worst] >= MIN_PEARSON, correlations


def test_defaults_are_the_top_class_and_the_last_spatial_layer(keras_model, convnet_model,
                                                               shared_data):
    path = need_file(shared_data / "images" / "skimage_coffee.png")
    x = prepared(path)
    expected, score, logits = reference_gradcam(keras_model, x, int(np.argmax(
        reference_gradcam(keras_model, x, 0)[2])))
    got, cls, got_score, probability, layer = convnet_gradcam(convnet_model, x, -1, layer=None)
    assert (cls, layer) == (int(np.argmax(logits)), LAYER)
    probs = np.exp(logits - logits.max())
    assert probability == pytest.approx(probs[cls] / probs.sum(), abs=1e-4)
    assert pearson(got, expected) >= MIN_PEARSON
