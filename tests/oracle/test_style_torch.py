"""Style transfer (convnet style, cn_style_transfer) against a PyTorch implementation of the same
objective on the same network: EfficientNet-Lite0 with its real .pth weights, on the package
efficientnet-lite-pytorch, the default layers of cn_synth_default_layers (content _blocks.4._bn2;
style _bn0, _blocks.1._bn2, _blocks.3._bn2, _blocks.5._bn2, each weight 1), content weight 1,
style weight 1e4, no TV, starting from the content image (both sides read the same 128x128 PNGs;
preprocessing x / 127.5 - 1).

- at the start, the objective and its gradient to the input agree (relative 1e-3);
- after 200 L-BFGS iterations (convnet: liblbfgs, More-Thuente line search, 6 pairs, in double;
  PyTorch: torch.optim.LBFGS, strong Wolfe line search, 6 pairs, the model and the optimiser in
  float64) the objectives agree within 5 %. Measured: convnet 37.14, PyTorch 38.67 (ratio 0.961);
  with PyTorch in float32 it reaches 39.37 (ratio 0.943): the two L-BFGS take different paths.
  About 10 minutes on two busy cores, nearly all of it PyTorch's.

Run by hand for the numbers: python tests/oracle/test_style_torch.py [ITERATIONS] [double].
"""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from conftest import BUILD, SHARED  # noqa: E402
from test_efficientnet_lite import lite_package, to_numpy, to_torch  # noqa: E402,F401

torch = pytest.importorskip("torch")

CONTENT_LAYER = "_blocks.4._bn2"
STYLE_LAYERS = ["_bn0", "_blocks.1._bn2", "_blocks.3._bn2", "_blocks.5._bn2"]
CONTENT_WEIGHT, STYLE_WEIGHT = 1.0, 1e4
SIZE = 128
ITERATIONS = 200


def make_images(tmp):
    from PIL import Image, ImageOps
    paths = []
    for name, stem in (("skimage_chelsea.png", "content"), ("skimage_coffee.png", "style")):
        img = ImageOps.exif_transpose(Image.open(SHARED / "images" / name)).convert("RGB")
        path = pathlib.Path(tmp) / f"{stem}.png"
        img.resize((SIZE, SIZE), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def read(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 127.5 - 1


class TorchStyle:
    def __init__(self, model, content, style):
        self.model = model
        self.names = STYLE_LAYERS + [CONTENT_LAYER]
        self.seen = {}
        for name in self.names:
            model.get_submodule(name).register_forward_hook(self.hook(name))
        with torch.no_grad():
            f = self.features(self.tensor(style))
            self.grams = [self.gram(f[n]) for n in STYLE_LAYERS]
            self.content = self.features(self.tensor(content))[CONTENT_LAYER].clone()

    def hook(self, name):
        def keep(module, inputs, output):
            self.seen[name] = output
        return keep

    def tensor(self, hwc):
        dtype = next(self.model.parameters()).dtype
        return to_torch(hwc.transpose(2, 0, 1)[None].copy()).to(dtype)

    def features(self, x):
        self.seen = {}
        self.model(x)
        return dict(self.seen)

    @staticmethod
    def gram(f):
        c = f.shape[1]
        m = f.reshape(c, -1)
        return m @ m.t() / f.numel()

    def loss(self, x):
        f = self.features(x)
        total = CONTENT_WEIGHT * ((f[CONTENT_LAYER] - self.content) ** 2).mean()
        for name, target in zip(STYLE_LAYERS, self.grams):
            total = total + STYLE_WEIGHT * ((self.gram(f[name]) - target) ** 2).mean()
        return total


def torch_run(model, content, style, iterations):
    s = TorchStyle(model, content, style)
    x = s.tensor(content).requires_grad_(True)
    loss = s.loss(x)
    grad, = torch.autograd.grad(loss, x)
    initial = float(loss)
    grad = to_numpy(grad[0].float()).transpose(1, 2, 0)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=iterations, max_eval=20 * iterations,
                            tolerance_grad=0, tolerance_change=0, history_size=6,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = s.loss(x)
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        final = float(s.loss(x))
    return initial, grad, final, opt.state[opt._params[0]]["n_iter"]


def convnet_run(weights, content_path, style_path, tmp, iterations):
    probe = BUILD / "probe_style"
    if not probe.exists():
        pytest.fail(f"{probe} not built")
    tmp = pathlib.Path(tmp)
    proc = subprocess.run([str(probe), str(weights), str(content_path), str(style_path),
                           str(iterations), str(tmp / "grad.npy"), str(tmp / "out.npy")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    initial = float(lines["initial"])
    final = float(lines["final"].split()[0])
    return initial, np.load(tmp / "grad.npy"), final


@pytest.fixture(scope="module")
def torch_lite0(lite_package, lite0_weights):  # noqa: F811
    model = lite_package.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(lite0_weights, map_location="cpu"))
    model.eval()
    torch.set_num_threads(2)
    return model


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_start_loss_and_gradient(torch_lite0, lite0_weights, tmp_path):
    content_path, style_path = make_images(tmp_path)
    content, style = read(content_path), read(style_path)
    s = TorchStyle(torch_lite0, content, style)
    x = s.tensor(content).requires_grad_(True)
    loss = s.loss(x)
    t_grad = to_numpy(torch.autograd.grad(loss, x)[0][0]).transpose(1, 2, 0)
    c_initial, c_grad, _ = convnet_run(lite0_weights, content_path, style_path, tmp_path, 0)
    assert abs(c_initial - float(loss)) <= 1e-3 * float(loss), (c_initial, float(loss))
    assert relative(c_grad, t_grad) <= 1e-3, relative(c_grad, t_grad)


@pytest.mark.slow
def test_loss_after_200_iterations(torch_lite0, lite0_weights, tmp_path):
    content_path, style_path = make_images(tmp_path)
    content, style = read(content_path), read(style_path)
    import copy
    model = copy.deepcopy(torch_lite0).double()  # L-BFGS in double, as liblbfgs runs it
    _, _, t_final, _ = torch_run(model, content, style, ITERATIONS)
    _, _, c_final = convnet_run(lite0_weights, content_path, style_path, tmp_path, ITERATIONS)
    assert abs(c_final - t_final) <= 0.05 * t_final, (c_final, t_final)


if __name__ == "__main__":  # the numbers, by hand
    import tempfile
    from conftest import lite0_weights as lw
    from test_efficientnet_lite import lite_package as lp
    weights, package = lw.__wrapped__(), lp.__wrapped__()
    model = torch_lite0.__wrapped__(package, weights)
    if len(sys.argv) > 2 and sys.argv[2] == "double":
        model = model.double()
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else ITERATIONS
    with tempfile.TemporaryDirectory() as tmp:
        cp, sp = make_images(tmp)
        c, s = read(cp), read(sp)
        ti, tg, tf, tn = torch_run(model, c, s, iterations)
        ci, cg, cf = convnet_run(weights, cp, sp, tmp, iterations)
        print(f"start: torch {ti:.6g} convnet {ci:.6g} (relative {abs(ci - ti) / ti:.2e}); "
              f"gradient relative difference {relative(cg, tg):.2e}")
        print(f"after {iterations} iterations: torch {tf:.6g} ({tn} iterations) convnet {cf:.6g} "
              f"(ratio {cf / tf:.4f})")
