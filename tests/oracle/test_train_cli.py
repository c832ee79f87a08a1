"""`convnet train` keeps a frozen base's BatchNormalization state: after a head epoch and a
fine-tuning epoch whose trained suffix holds BatchNormalization layers (MobileNet 0.25 from the
real Keras file, --fine-tune conv_pw_12_relu), every BN moving_mean / moving_variance (and gamma
/ beta) in the written .cnm is byte-identical to the Keras file's, while the convolutions of the
fine-tuned block did change."""
import json
import struct

import h5py
import numpy as np

from conftest import need_file, run_convnet

MODEL = "weights/keras/mobilenet_v1_0.25_224.h5"
FINE_TUNE_AT = "conv_pw_12_relu"
TUNED_BN = ("conv_dw_13_bn", "conv_pw_13_bn")  # BatchNormalization inside the trained suffix
TUNED_CONV = ("conv_dw_13/depthwise_kernel", "conv_pw_13/kernel")
BN_PARAMS = ("moving_mean", "moving_variance", "gamma", "beta")


def read_safetensors(path):
    """name -> array, from the layout: u64 little-endian header length, JSON header, data."""
    try:
        from safetensors.numpy import load_file
        return load_file(str(path))
    except ImportError:
        pass
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    tensors = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        begin, end = t["data_offsets"]
        tensors[name] = np.frombuffer(data[begin:end], "<f4").reshape(t["shape"])
    return tensors


def keras_weights(path):
    """'layer/param' -> array from a Keras 2 .h5 (model_weights/<layer>/<layer>/<param>:0)."""
    out = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"]
        for layer in root:
            for name in root[layer].attrs.get("weight_names", []):
                name = name.decode() if isinstance(name, bytes) else name
                out[name.removesuffix(":0")] = root[layer][name][()]
    return out


def small_split(src, dst, per_class):
    """The first per_class images of each class of src, as symbolic links under dst."""
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for image in sorted(cls.iterdir())[:per_class]:
            (dst / cls.name / image.name).symlink_to(image.resolve())
    return dst


def same_bytes(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_frozen_batchnorm_is_byte_identical_after_fine_tuning(convnet_bin, shared_data, tmp_path):
    h5 = need_file(shared_data / MODEL)
    data = need_file(shared_data / "cats_dogs")
    train = small_split(data / "train", tmp_path / "train", 12)
    val = small_split(data / "validation", tmp_path / "val", 4)
    out = tmp_path / "tuned.cnm"
    run_convnet(convnet_bin, "train", "--base", h5, "--data", train, "--val", val, "--out", out,
                "--epochs", 1, "--fine-tune", FINE_TUNE_AT, "--fine-tune-epochs", 1,
                "--fine-tune-lr", "1e-3", "--batch", 8, "--seed", 5, "--no-cache",
                "--threads", 2)
    base, trained = keras_weights(h5), read_safetensors(out)

    bn = [name for name in base if name.rsplit("/", 1)[-1] in BN_PARAMS]
    assert len(bn) == 27 * 4  # conv1_bn and the 13 blocks' two BN layers each
    assert {n.split("/")[0] for n in bn} >= set(TUNED_BN)
    changed = [name for name in bn if not same_bytes(base[name], trained[name])]
    assert not changed, f"BatchNormalization state changed by training: {changed}"

    # The suffix did train: otherwise identical BN would prove nothing.
    for name in TUNED_CONV:
        assert trained[name].shape == base[name].shape
        assert not np.array_equal(trained[name], base[name]), f"{name} was not fine-tuned"
    # ... and the frozen prefix did not.
    assert same_bytes(base["conv_pw_12/kernel"], trained["conv_pw_12/kernel"])
