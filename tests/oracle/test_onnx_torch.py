"""PyTorch -> ONNX -> convnet: small ResNet-, MobileNetV2- and Inception-like networks written here
(random weights, random BatchNorm statistics), exported with torch.onnx.export, run by convnet;
the outputs equal PyTorch's within 1e-4.

Debian's python3-torch is built against Debian's NumPy, so the PyTorch side runs in a separate
interpreter ($CN_TORCH_PYTHON, default /usr/bin/python3) executing this file as a script:
`python3 test_onnx_torch.py OUTDIR` writes NAME.onnx, NAME.x.npy and NAME.y.npy per model."""
import os
import pathlib
import subprocess
import sys

import numpy as np

TORCH_PYTHON = os.environ.get("CN_TORCH_PYTHON", "/usr/bin/python3")
MODELS = {"resnet": 64, "mobilenet_v2": 64, "inception": 67}  # name -> input size


def define_models():
    """The model classes (defined inside a function: torch exists only in the export process)."""
    import torch
    nn = torch.nn

    def conv_bn(cin, cout, k=3, stride=1, groups=1, act="relu"):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if act == "relu":
            layers.append(nn.ReLU())
        elif act == "relu6":
            layers.append(nn.ReLU6())
        return nn.Sequential(*layers)


    class Bottleneck(nn.Module):
        def __init__(self, cin, mid, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, mid, 1), conv_bn(mid, mid, 3, stride),
                                      conv_bn(mid, cout, 1, act=None))
            self.short = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None

        def forward(self, x):
            s = x if self.short is None else self.short(x)
            return torch.relu(self.body(x) + s)


    class TinyResNet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            self.blocks = nn.Sequential(Bottleneck(16, 8, 32, 1), Bottleneck(32, 8, 32, 1),
                                        Bottleneck(32, 16, 64, 2))
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            x = self.blocks(self.stem(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, expand):
            super().__init__()
            mid = cin * expand
            self.use_res = stride == 1 and cin == cout
            self.body = nn.Sequential(conv_bn(cin, mid, 1, act="relu6"),
                                      conv_bn(mid, mid, 3, stride, groups=mid, act="relu6"),
                                      conv_bn(mid, cout, 1, act=None))

        def forward(self, x):
            y = self.body(x)
            return x + y if self.use_res else y


    class TinyMobileNetV2(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.features = nn.Sequential(conv_bn(3, 16, 3, 2, act="relu6"),
                                          InvertedResidual(16, 16, 1, 1),
                                          InvertedResidual(16, 24, 2, 6),
                                          InvertedResidual(24, 24, 1, 6),
                                          conv_bn(24, 64, 1, act="relu6"))
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

        def forward(self, x):
            x = self.features(x).mean([2, 3])
            return self.classifier(x)


    class InceptionBlock(nn.Module):
        def __init__(self, cin):
            super().__init__()
            self.b1 = conv_bn(cin, 8, 1)
            self.b2 = nn.Sequential(conv_bn(cin, 8, 1), conv_bn(8, 12, 3))
            self.b3 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 8, 5))
            self.b4 = nn.Sequential(nn.AvgPool2d(3, 1, 1), conv_bn(cin, 4, 1))

        def forward(self, x):
            return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


    class TinyInception(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Sequential(conv_bn(3, 16, 3, 2), nn.MaxPool2d(3, 2, ceil_mode=True))
            self.mixed = nn.Sequential(InceptionBlock(16), InceptionBlock(32))
            self.fc = nn.Linear(32 * 17 * 17, classes)

        def forward(self, x):
            x = self.mixed(self.stem(x))
            return torch.softmax(self.fc(torch.flatten(x, 1)), 1)


    def randomize(model, seed):
        torch.manual_seed(seed)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
        return model.eval()


    return {"resnet": TinyResNet, "mobilenet_v2": TinyMobileNetV2, "inception": TinyInception}, \
        randomize


def export_all(out):
    import torch
    classes, randomize = define_models()
    for name, size in MODELS.items():
        model = randomize(classes[name](), seed=len(name))
        x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7)) * 2 - 1
        torch.onnx.export(model, x, os.path.join(out, f"{name}.onnx"), opset_version=13,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        with torch.no_grad():
            np.save(os.path.join(out, f"{name}.x.npy"), x.numpy())
            np.save(os.path.join(out, f"{name}.y.npy"), model(x).numpy())


if __name__ == "__main__":
    export_all(sys.argv[1])
else:
    import pytest

    from conftest import run_convnet

    @pytest.fixture(scope="module")
    def exported(tmp_path_factory):
        out = tmp_path_factory.mktemp("torch_onnx")
        try:
            proc = subprocess.run([TORCH_PYTHON, __file__, str(out)], capture_output=True,
                                  text=True, timeout=600)
        except FileNotFoundError:
            pytest.skip(f"{TORCH_PYTHON} not found")
        if proc.returncode != 0 and "No module named 'torch'" in proc.stderr:
            pytest.skip(f"torch is not importable by {TORCH_PYTHON}")
        assert proc.returncode == 0, proc.stderr[-2000:]
        return out

    @pytest.mark.parametrize("name", sorted(MODELS))
    def test_torch_export_matches(convnet_bin, exported, tmp_path, name):
        run_convnet(convnet_bin, "run", "-m", exported / f"{name}.onnx", "--input",
                    exported / f"{name}.x.npy", "--output", tmp_path / "y.npy")
        got = np.load(tmp_path / "y.npy")
        want = np.load(exported / f"{name}.y.npy")
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
