"""The shared MNIST CNN (to_json architecture + Keras 2 save_weights file) through convnet scores its
published 98.95 % on the t10k set, with x/255 preprocessing."""
import ctypes
import gzip

import numpy as np
import pytest

from cn_types import Shape
from conftest import need_file


def read_idx(path):
    """An IDX file (gzip): big-endian magic with the type and rank, then dims, then data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[:2] == b"\0\0" and data[2] == 0x08, "expected unsigned byte IDX"
    rank = data[3]
    dims = np.frombuffer(data, ">u4", rank, 4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


@pytest.mark.slow
def test_mnist_accuracy(libconvnet, shared_data):
    json_path = need_file(shared_data / "weights/keras/mnist_cnn.json")
    weights = need_file(shared_data / "weights/keras/mnist_cnn_weights.h5")
    images = read_idx(need_file(shared_data / "mnist/t10k-images-idx3-ubyte.gz"))
    labels = read_idx(need_file(shared_data / "mnist/t10k-labels-idx1-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)

    lib = libconvnet
    lib.cn_last_error.restype = ctypes.c_char_p
    lib.cn_model_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.cn_model_load_weights.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.cn_model_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.cn_model_free.argtypes = [ctypes.c_void_p]
    handle = ctypes.c_void_p()
    assert lib.cn_model_load(str(json_path).encode(), ctypes.byref(handle)) == 0, lib.cn_last_error()
    try:
        assert lib.cn_model_load_weights(handle, str(weights).encode()) == 0, lib.cn_last_error()
        x = np.ascontiguousarray(images.reshape(-1, 28, 28, 1), np.float32) / np.float32(255)
        probs = np.zeros((len(x), 10), np.float32)
        batch = 500
        for i in range(0, len(x), batch):
            xb = np.ascontiguousarray(x[i : i + batch])
            out = probs[i : i + batch]
            st = lib.cn_model_forward(handle, len(xb), xb.ctypes.data, out.ctypes.data)
            assert st == 0, lib.cn_last_error()
    finally:
        lib.cn_model_free(handle)
    correct = int((probs.argmax(1) == labels).sum())
    print(f"MNIST t10k: {correct} / 10000 = {correct / 100:.2f} %")
    assert correct == 9895


@pytest.mark.parametrize("name", ["fashion-mnist/t10k-images-idx3-ubyte.gz",
                                  "fashion-mnist/t10k-labels-idx1-ubyte.gz",
                                  "mnist/t10k-images-idx3-ubyte.gz",
                                  "mnist/train-labels-idx1-ubyte.gz"])
def test_idx_matches_numpy(libconvnet, shared_data, name):
    """cn_idx_read gives numpy's reading of the same gzip IDX file, value for value."""
    path = need_file(shared_data / name)
    want = read_idx(path)
    lib = libconvnet
    shape, data = Shape(), ctypes.POINTER(ctypes.c_float)()
    assert lib.cn_idx_read(str(path).encode(), ctypes.byref(shape), ctypes.byref(data)) == 0
    got = np.ctypeslib.as_array(data, shape=tuple(shape.dim[:shape.rank])).copy()
    ctypes.CDLL(None).free(data)
    assert got.shape == want.shape
    assert np.array_equal(got, want.astype(np.float32))
