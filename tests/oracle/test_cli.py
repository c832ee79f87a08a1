"""The convnet CLI against independent references: classify --json agrees with the human output,
summary totals equal Keras' count_params(), and run reproduces the shared reference outputs."""
import json
import re

import numpy as np
import pytest

from conftest import need_file, run_convnet

MODEL = "weights/keras/mobilenet_v1_0.25_224.h5"
IMAGES = ["images/skimage_coffee.png", "images/skimage_chelsea.png", "images/darknet_dog.jpg"]
HUMAN_LINE = re.compile(r"^\s+(\d+)\. (\d\.\d{4})  (.+?)(?: \((n\d{8})\))?$")


def parse_human(text):
    """{file: [(rank, prob, label, wnid), ...]} from the default output."""
    results, current = {}, None
    for line in text.splitlines():
        m = HUMAN_LINE.match(line)
        if m:
            results[current].append((int(m[1]), float(m[2]), m[3], m[4]))
        else:
            current = line
            results[current] = []
    return results


def test_classify_json_matches_human(convnet_bin, shared_data):
    model = need_file(shared_data / MODEL)
    images = [str(need_file(shared_data / i)) for i in IMAGES]
    human = parse_human(run_convnet(convnet_bin, "classify", "-m", model, "-k", "5", *images).stdout)
    lines = run_convnet(convnet_bin, "classify", "-m", model, "-k", "5", "--json", *images).stdout
    records = [json.loads(line) for line in lines.splitlines()]
    assert [r["file"] for r in records] == images
    for record in records:
        top = record["top"]
        assert len(top) == 5
        assert all(a["prob"] >= b["prob"] for a, b in zip(top, top[1:]))
        for (rank, prob, label, wnid), entry in zip(human[record["file"]], top):
            assert entry["label"] == label and entry["id"] == wnid
            assert abs(entry["prob"] - prob) <= 0.5e-4
    # the espresso photo, as in the shared REFERENCE.txt (NEAREST resize, Keras' default)
    assert records[0]["top"][0]["index"] == 967 and records[0]["top"][0]["label"] == "espresso"
    assert abs(records[0]["top"][0]["prob"] - 0.9345) < 1e-3


def test_classify_json_escapes_file_names(convnet_bin, shared_data, tmp_path):
    model = need_file(shared_data / MODEL)
    odd = tmp_path / 'a "quoted"\\name\t.png'
    odd.write_bytes(need_file(shared_data / IMAGES[0]).read_bytes())
    out = run_convnet(convnet_bin, "classify", "-m", model, "-k", "1", "--json", odd).stdout
    assert json.loads(out)["file"] == str(odd)


def test_classify_custom_labels(convnet_bin, shared_data, tmp_path):
    model = need_file(shared_data / MODEL)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing{i}\r\n" for i in range(1000)))
    out = run_convnet(convnet_bin, "classify", "-m", model, "-k", "1", "--json", "--labels",
                      labels, need_file(shared_data / IMAGES[0])).stdout
    top = json.loads(out)["top"][0]
    assert top == {**top, "index": 967, "label": "thing967", "id": None}


def keras_small_model():
    import keras
    from keras import layers
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Add(name="add")([x, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(10, activation="softmax", name="fc")(x)
    model = keras.Model(inputs, x, name="small")
    model.get_layer("fc").trainable = False
    return model


def summary_totals(text):
    totals = {}
    for key in ("Total", "Trainable", "Non-trainable"):
        m = re.search(rf"^{key} params: ([\d,]+)$", text, re.M)
        totals[key] = int(m[1].replace(",", ""))
    return totals


def test_summary_totals_match_keras(convnet_bin, tmp_path):
    model = keras_small_model()
    path = tmp_path / "small.h5"
    model.save(path)
    out = run_convnet(convnet_bin, "summary", "-m", path).stdout
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert summary_totals(out) == {"Total": model.count_params(), "Trainable": trainable,
                                   "Non-trainable": model.count_params() - trainable}
    for layer in model.layers:
        assert re.search(rf"^ {layer.name} \({type(layer).__name__}\)", out, re.M), layer.name


@pytest.mark.slow
@pytest.mark.parametrize("args,app,kwargs", [
    (["-m", "resnet50"], "ResNet50", {}),
    (["-m", "mobilenet", "--alpha", "0.5"], "MobileNet", {"alpha": 0.5}),
    (["-m", "mobilenet_v2", "--no-top", "--pooling", "avg", "--input-shape", "160,160,3"],
     "MobileNetV2", {"include_top": False, "pooling": "avg", "input_shape": (160, 160, 3)}),
])
def test_zoo_summary_totals_match_keras(convnet_bin, args, app, kwargs):
    import keras
    model = getattr(keras.applications, app)(weights=None, **kwargs)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    out = run_convnet(convnet_bin, "summary", *args).stdout
    assert summary_totals(out) == {"Total": model.count_params(), "Trainable": trainable,
                                   "Non-trainable": model.count_params() - trainable}


def test_run_matches_reference(convnet_bin, shared_data, tmp_path):
    model = need_file(shared_data / MODEL)
    ref = shared_data / "reference"
    x = np.fromfile(need_file(ref / "mobilenet_v1_0.25_224.chelsea_nearest.input.f32"), "<f4")
    probs = np.fromfile(need_file(ref / "mobilenet_v1_0.25_224.chelsea_nearest.probs.f32"), "<f4")
    np.save(tmp_path / "x.npy", x.reshape(224, 224, 3))  # no batch dimension: one sample
    np.save(tmp_path / "x2.npy", np.stack([x, x]).reshape(2, 224, 224, 3).astype("<f8"))
    run_convnet(convnet_bin, "run", "-m", model, "--input", tmp_path / "x.npy",
                "--output", tmp_path / "y.npy")
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (1, 1000) and y.dtype == np.float32
    np.testing.assert_allclose(y[0], probs, atol=1e-5)
    run_convnet(convnet_bin, "run", "-m", model, "--input", tmp_path / "x2.npy",
                "--output", tmp_path / "y2.npy")
    y2 = np.load(tmp_path / "y2.npy")
    assert y2.shape == (2, 1000)
    np.testing.assert_allclose(y2, np.stack([probs, probs]), atol=1e-5)
