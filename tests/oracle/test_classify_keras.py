"""`convnet classify` on the real pretrained MobileNet (alpha 0.25) Keras file gives, for every photo
in ../shared/data/images (and a sample of the ImageNet photos), the top-5 that Keras itself gives:
keras.utils.load_img with NEAREST resizing, mobilenet.preprocess_input, model.predict."""
import json
import pathlib

import numpy as np
import pytest

from conftest import need_file, run_convnet

keras = pytest.importorskip("keras")

MODEL = "weights/keras/mobilenet_v1_0.25_224.h5"
TOP = 5


@pytest.fixture(scope="module")
def keras_model(shared_data):
    path = need_file(shared_data / MODEL)
    # Keras 3 cannot deserialize this Keras 2.8 config (DepthwiseConv2D's "groups"), so build
    # the same architecture and load the file's weights into it.
    model = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(224, 224, 3))
    model.load_weights(str(path))
    return model


def photos(shared_data):
    images = sorted(p for p in (shared_data / "images").iterdir() if p.is_file())
    samples = sorted((shared_data / "imagenet-samples").glob("*.JPEG"))[::50]
    # Keras' load_img ignores EXIF orientation; convnet applies it (as PIL's exif_transpose does).
    samples = [p for p in samples if "can_opener" not in p.name]
    return images + samples


def keras_top(model, path):
    img = keras.utils.load_img(str(path), target_size=(224, 224), interpolation="nearest")
    x = keras.applications.mobilenet.preprocess_input(keras.utils.img_to_array(img)[None])
    probs = model.predict(x, verbose=0)[0]
    order = np.argsort(-probs, kind="stable")[:TOP]
    return [(int(i), float(probs[i])) for i in order]


def convnet_tops(convnet_bin, shared_data, paths):
    out = run_convnet(convnet_bin, "classify", "-m", shared_data / MODEL, "--resize", "nearest",
                      "-k", TOP, "--json", *paths).stdout
    tops = {}
    for line in out.splitlines():
        record = json.loads(line)
        tops[record["file"]] = [(t["index"], t["prob"]) for t in record["top"]]
    return tops


def test_top5_equals_keras_on_every_photo(convnet_bin, shared_data, keras_model):
    paths = photos(shared_data)
    assert len(paths) >= 10
    ours = convnet_tops(convnet_bin, shared_data, paths)
    for path in paths:
        expected = keras_top(keras_model, path)
        got = ours[str(path)]
        assert [i for i, _ in got] == [i for i, _ in expected], (path.name, got, expected)
        worst = max(abs(p - q) for (_, p), (_, q) in zip(got, expected))
        assert worst <= 1e-4, (path.name, worst)


def test_espresso(convnet_bin, shared_data):
    coffee = need_file(shared_data / "images" / "skimage_coffee.png")
    top = convnet_tops(convnet_bin, shared_data, [coffee])[str(coffee)]
    assert top[0][0] == 967 and abs(top[0][1] - 0.934) < 1e-3
