"""convnet analogy on pairs where A' = f(A) for a known filter f (PIL: colour inversion, Gaussian
blur of radius 2, a colour tint): B' approximates f(B) with a PSNR of at least 20 dB at 128x128,
with the default options (EfficientNet-Lite0 features with its real .pth, pixel level with the
pair's linear filter and patch matching). A and B are different photos of ../shared/data/images.
"""
import subprocess

import numpy as np
import pytest

from conftest import SHARED

Image = pytest.importorskip("PIL.Image")
from PIL import ImageFilter, ImageOps  # noqa: E402

PAIRS = [("skimage_chelsea.png", "darknet_dog.jpg"), ("darknet_horses.jpg", "skimage_coffee.png"),
         ("darknet_eagle.jpg", "coral_hot_dog.jpg"), ("coral_cat_720p.jpg", "darknet_horses.jpg")]
SIZE = 128
MIN_PSNR = 20.0


def tint(im):
    a = np.asarray(im, np.float32) * np.array([1.0, 0.75, 0.5]) + np.array([0, 10, 30])
    return Image.fromarray(a.clip(0, 255).round().astype(np.uint8))


FILTERS = {"invert": ImageOps.invert, "blur": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
           "tint": tint}


def load(name):
    im = ImageOps.exif_transpose(Image.open(SHARED / "images" / name)).convert("RGB")
    return im.resize((SIZE, SIZE), Image.BILINEAR)


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.mark.slow
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: f"{p[0]}->{p[1]}")
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_analogy_psnr(convnet_bin, lite0_weights, tmp_path, pair, name):
    f = FILTERS[name]
    a, b = load(pair[0]), load(pair[1])
    a.save(tmp_path / "a.png")
    f(a).save(tmp_path / "ap.png")
    b.save(tmp_path / "b.png")
    proc = subprocess.run([convnet_bin, "analogy", "-m", "efficientnet_lite0", "-w",
                           str(lite0_weights), "--size", str(SIZE), "-o", str(tmp_path / "bp.png"),
                           str(tmp_path / "a.png"), str(tmp_path / "ap.png"),
                           str(tmp_path / "b.png")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "feature network: efficientnet_lite0" in proc.stdout
    value = psnr(Image.open(tmp_path / "bp.png").convert("RGB"), f(b))
    print(f"{name} {pair[0]} -> {pair[1]}: PSNR {value:.2f} dB")
    assert value >= MIN_PSNR, value
