"""convnet fid end to end against Keras and scipy: a small Keras classifier (random weights, a
convolution and a Dense "features" layer) saved as .h5; its features
of two sets of random images from Keras's predict, the FID from scipy's sqrtm, compared with
`convnet fid` on the same images as a [0, 1] .npy (the model's `unit` preprocessing), and on a
spatial layer, which convnet averages over positions."""
import os

import numpy as np
import pytest

from conftest import run_convnet
from test_frechet_scipy import scipy_fid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
layers = keras.layers


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 3, strides=2, activation="relu", name="conv"),
        layers.Flatten(name="flat"),
        layers.Dense(16, activation="relu", name="features"),
        layers.Dense(10, activation="softmax", name="out")])
    path = tmp_path_factory.mktemp("fid") / "clf.h5"
    model.save(path)
    return model, path


def image_sets(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (300, 28, 28, 1)).astype(np.float32) / 255
    b = np.clip(a[::-1] * 0.7 + 0.2 * rng.random(a.shape, np.float32), 0, 1).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    return a, b


@pytest.mark.parametrize("layer", ["features", "conv"])
def test_fid_matches_keras_features(convnet_bin, classifier, tmp_path, layer):
    model, path = classifier
    a, b = image_sets(tmp_path)
    cut = keras.Model(model.inputs, model.get_layer(layer).output)
    fa, fb = cut.predict(a, verbose=0), cut.predict(b, verbose=0)
    if fa.ndim == 4:  # a spatial layer: averaged over its positions
        fa, fb = fa.mean((1, 2)), fb.mean((1, 2))
    want = scipy_fid(fa, fb)
    out = run_convnet(convnet_bin, "fid", "-m", path, "--layer", layer, "--preprocess", "unit",
                      tmp_path / "a.npy", tmp_path / "b.npy")
    assert float(out.stdout) == pytest.approx(want, rel=1e-4)
