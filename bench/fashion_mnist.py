"""What the from-scratch benchmarks share: Fashion-MNIST from Debian's dataset-fashion-mnist as
numpy arrays, and a one-line description of the CPU a figure comes from."""
import gzip
import pathlib
import platform

import numpy as np

DATA = pathlib.Path("/usr/share/datasets/fashion-mnist")


def read_idx(path):
    """An IDX file (gzip): big-endian magic with the type and rank, then dims, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = np.frombuffer(data, ">u4", rank, 4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * rank).reshape(dims)


def images(folder, split):
    """split ("train" or "t10k") images as float32 (n, 28, 28, 1) in [0, 1]."""
    x = read_idx(pathlib.Path(folder) / f"{split}-images-idx3-ubyte.gz")
    return (x[..., None] / 255.0).astype("float32")


def labels(folder, split):
    return read_idx(pathlib.Path(folder) / f"{split}-labels-idx1-ubyte.gz")


def cpu_name():
    text = pathlib.Path("/proc/cpuinfo").read_text()
    simd = "AVX-512" if "avx512f" in text else "AVX2" if "avx2" in text else "SSE"
    for line in text.splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} ({simd})"
    return f"{platform.processor()} ({simd})"
