"""Fixtures of the `convnet serve` tests: the built CLI, the real photos and model of shared/, and
a server started on a free loopback port (stopped with SIGTERM, its exit status checked)."""
import os
import pathlib

import pytest

from serve_client import Server

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CN_BUILD_DIR") or ROOT / "build").resolve()
SHARED = pathlib.Path(os.environ.get("CN_SHARED_DATA") or ROOT.parent / "shared" / "data")
MODEL = SHARED / "weights" / "keras" / "mobilenet_v1_0.25_224.h5"
IMAGES = SHARED / "images"


@pytest.fixture(scope="session")
def convnet_bin():
    path = BUILD / "convnet"
    if not path.exists():
        pytest.fail(f"{path} not built: run cmake --build {BUILD}")
    return str(path)


@pytest.fixture(scope="session")
def model_path():
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not present (shared/data/README.md)")
    return str(MODEL)


@pytest.fixture(scope="session")
def photos():
    """Every photo below shared/data/images, in path order."""
    files = sorted(p for p in IMAGES.rglob("*") if p.is_file()) if IMAGES.is_dir() else []
    if not files:
        pytest.skip(f"no photos in {IMAGES}")
    return [str(p) for p in files]


@pytest.fixture
def server(convnet_bin, model_path, tmp_path):
    """A server of the MobileNet as model "mnet"; call it with extra flags. Runs in an empty
    folder, with HOME there too, so that a test can check it wrote nothing."""
    started = []

    def start(*flags):
        s = Server(convnet_bin, ["-m", f"mnet={model_path}", *flags], cwd=tmp_path)
        started.append(s)
        return s

    start.model = model_path
    yield start
    for s in started:
        s.kill()
