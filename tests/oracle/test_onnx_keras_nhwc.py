"""An ONNX graph exported from a Keras model keeps Keras's NHWC input ([N, H, W, 3]); classify,
explain and show take it as an HWC image (not "prepare: 64 channels"), and classify's scores
equal onnxruntime's on the same photo.

How the ONNX file is made: Keras 3's `model.export(path, format="onnx")` needs tf2onnx, which the
test environment does not have, so the file is written here with the `onnx` helper API in the
shape tf2onnx gives a Keras CNN: the NHWC graph input (symbolic batch `unk__0`), a Transpose to
NCHW before the first Conv, the Keras model's own weights (HWIO kernels transposed to OIHW,
Dense as Gemm), a Softmax output. onnxruntime must reproduce the Keras model's predictions on the
same input before convnet is compared with it, so the file is a faithful export."""
import json

import numpy as np
import pytest

from conftest import need_file, run_convnet

SIZE = 48
CLASSES = 10


def keras_model():
    import keras
    keras.utils.set_random_seed(3)
    x = keras.Input((SIZE, SIZE, 3))
    y = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu", name="conv1")(y)
    y = keras.layers.Conv2D(16, 3, padding="valid", activation="relu", name="conv2")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(CLASSES, activation="softmax", name="dense")(y)
    return keras.Model(x, y, name="tiny_keras")


def export_nhwc_onnx(model, path):
    """The Keras model as an NHWC-input ONNX graph (what tf2onnx would write)."""
    from onnx import TensorProto, checker, helper, numpy_helper, save
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    nodes.append(helper.make_node("Mul", ["x", const("scale", 1 / 127.5)], ["x_scaled"]))
    nodes.append(helper.make_node("Add", ["x_scaled", const("offset", -1.0)], ["x_rescaled"]))
    nodes.append(helper.make_node("Transpose", ["x_rescaled"], ["x_nchw"], perm=[0, 3, 1, 2]))
    prev = "x_nchw"
    for name, stride in (("conv1", 2), ("conv2", 1)):
        kernel, bias = model.get_layer(name).get_weights()
        w = const(f"{name}_W", kernel.transpose(3, 2, 0, 1))
        b = const(f"{name}_B", bias)
        nodes.append(helper.make_node("Conv", [prev, w, b], [f"{name}_out"],
                                      kernel_shape=[3, 3], strides=[stride, stride]))
        nodes.append(helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"]))
        prev = f"{name}_relu"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], axis=1))
    kernel, bias = model.get_layer("dense").get_weights()
    nodes.append(helper.make_node("Gemm", ["flat", const("dense_W", kernel),
                                           const("dense_B", bias)], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(
        nodes, "tiny_keras",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__0", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["unk__0", CLASSES])], inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    checker.check_model(onnx_model)
    save(onnx_model, str(path))


@pytest.fixture(scope="module")
def nhwc_onnx(tmp_path_factory):
    import onnxruntime as ort
    model = keras_model()
    path = tmp_path_factory.mktemp("keras_nhwc") / "tiny_keras.onnx"
    export_nhwc_onnx(model, path)
    x = np.random.default_rng(5).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], model.predict(x, verbose=0),
                               rtol=0, atol=1e-5)
    return path


def nearest_raw(photo):
    """What convnet's default spec for an NHWC ONNX image input does: PIL NEAREST to the input
    size (Keras load_img), raw 0..255 floats, HWC, batch of one."""
    from PIL import Image
    img = Image.open(photo).convert("RGB").resize((SIZE, SIZE), Image.NEAREST)
    return np.asarray(img, dtype=np.float32)[None]


def test_classify_nhwc_onnx(convnet_bin, shared_data, nhwc_onnx):
    import onnxruntime as ort
    photos = [need_file(shared_data / "images" / n)
              for n in ("coral_cat_720p.jpg", "skimage_coffee.png", "darknet_dog.jpg")]
    proc = run_convnet(convnet_bin, "classify", "-m", nhwc_onnx, "-k", "5", "--json", *photos)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(photos)
    sess = ort.InferenceSession(str(nhwc_onnx), providers=["CPUExecutionProvider"])
    for photo, line in zip(photos, lines):
        got = json.loads(line)["top"]
        scores = sess.run(None, {"x": nearest_raw(photo)})[0][0]
        want = np.argsort(-scores, kind="stable")[:5]
        assert [t["index"] for t in got] == list(want), photo
        np.testing.assert_allclose([t["prob"] for t in got], scores[want], rtol=0, atol=1e-5)


def test_explain_and_show_nhwc_onnx(convnet_bin, shared_data, nhwc_onnx, tmp_path):
    photo = need_file(shared_data / "images" / "skimage_chelsea.png")
    run_convnet(convnet_bin, "explain", "-m", nhwc_onnx, "-o", tmp_path / "cam", photo)
    assert (tmp_path / "cam" / "skimage_chelsea.png").stat().st_size > 0
    run_convnet(convnet_bin, "show", "activations", "-m", nhwc_onnx, "--layer", "conv2_relu",
                "-o", tmp_path / "maps.png", photo)
    assert (tmp_path / "maps.png").stat().st_size > 0
