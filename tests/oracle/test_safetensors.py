"""safetensors files: convnet and the reference `safetensors` package (Hugging Face) read each
other's files, and a .cnm model written by convnet is a valid safetensors file whose metadata and
tensors the package sees as convnet wrote them. convnet's side is tests/probes/probe_safetensors.c."""
import json
import subprocess

import numpy as np
import pytest

from conftest import BUILD, run_convnet, need_file

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import safe_open  # noqa: E402  (after the importorskip)


def probe(*args):
    path = BUILD / "probe_safetensors"
    if not path.exists():
        pytest.fail(f"{path} not built")
    proc = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_convnet_reads_python_file(tmp_path):
    rng = np.random.default_rng(7)
    tensors = {
        "block/kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
        "block/bias": np.array([0.0, -0.0, np.inf, 1e-40], dtype=np.float32),
        "optimizer/iterations": np.array([2**40 + 3, -1], dtype=np.int64),
        "rng": np.arange(250, 256, dtype=np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    path = tmp_path / "python.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"origin": "python", "é": "ü"})
    seen = json.loads(probe("read", path))
    assert seen["metadata"] == {"origin": "python", "é": "ü"}
    assert set(seen["tensors"]) == set(tensors)
    dtypes = {np.float32: "F32", np.int64: "I64", np.uint8: "U8"}
    for name, array in tensors.items():
        t = seen["tensors"][name]
        assert t["dtype"] == dtypes[array.dtype.type]
        assert t["shape"] == list(array.shape)
        assert bytes.fromhex(t["hex"]) == array.astype(array.dtype.newbyteorder("<")).tobytes()


def test_python_reads_convnet_file(tmp_path):
    path = tmp_path / "convnet.safetensors"
    probe("write", path)
    loaded = safetensors_numpy.load_file(str(path))
    np.testing.assert_array_equal(loaded["f32"], np.array([[-1, -0.5, 0], [0.5, 1, 1.5]], np.float32))
    assert loaded["f32"].dtype == np.float32
    assert loaded["scalar"].shape == () and loaded["scalar"] == np.float32(3.25)
    np.testing.assert_array_equal(loaded["i64"], np.array([-5, 2**40], np.int64))
    np.testing.assert_array_equal(loaded["u8"], np.array([0, 1, 128, 255], np.uint8))
    assert loaded["empty"].shape == (0, 2)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    assert meta["origin"] == "convnet"
    assert len(meta["convnet.sha256"]) == 64
    # The data section starts at a multiple of 64 bytes.
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert (8 + header_len) % 64 == 0


def test_cnm_is_safetensors(tmp_path, convnet_bin, shared_data):
    path = tmp_path / "two_classes.cnm"
    probe("model", path)
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        names = list(f.keys())
        kernel = f.get_tensor("conv1/kernel")
    assert meta["format"] == "convnet-model" and meta["version"] == "1"
    assert json.loads(meta["classes"]) == ["cat", "dog"]
    spec = json.loads(meta["input_spec"])
    assert (spec["height"], spec["width"], spec["channels"]) == (224, 224, 3)
    graph = json.loads(meta["graph"])
    assert graph["nodes"][0]["op"] == "InputLayer"
    assert "conv1_bn/moving_variance" in names and "conv_preds/bias" in names
    assert kernel.shape == (3, 3, 3, 8)
    np.testing.assert_array_equal(kernel.reshape(-1), (np.arange(kernel.size) % 7 - 3).astype(np.float32))
    # The CLI prints the model's own class names.
    image = need_file(shared_data / "images" / "skimage_chelsea.png")
    out = run_convnet(convnet_bin, "classify", "-m", path, "--json", image).stdout
    labels = [entry["label"] for entry in json.loads(out)["top"]]
    assert sorted(labels) == ["cat", "dog"]
