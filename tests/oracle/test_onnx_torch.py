"""PyTorch -> ONNX -> convnet, all with random weights and random BatchNorm statistics in eval mode,
exported with torch.onnx.export and run by convnet:
- small ResNet-, MobileNetV2- and Inception-like networks: outputs equal PyTorch's within 1e-4;
- full-size ResNet50, MobileNetV2 and InceptionV3 (torchvision's layer plans, written here; slow):
  outputs equal PyTorch's within 1e-4;
- `convnet classify -m classifier.onnx photo`: the top-5 classes and scores equal onnxruntime's on
  the tensor PIL makes with torchvision's preprocessing (bilinear to 256, central 224, ImageNet
  mean/std, CHW), which is what convnet derives for an imported NCHW image model.

Debian's python3-torch is built against Debian's NumPy, so the PyTorch side runs in a separate
interpreter ($CN_TORCH_PYTHON, default /usr/bin/python3) executing this file as a script:
`python3 test_onnx_torch.py OUTDIR NAME...` writes NAME.onnx, NAME.x.npy and NAME.y.npy per model."""
import os
import pathlib
import subprocess
import sys

import numpy as np

TORCH_PYTHON = os.environ.get("CN_TORCH_PYTHON", "/usr/bin/python3")
MODELS = {"resnet": 64, "mobilenet_v2": 64, "inception": 67}  # name -> input size
FULL_MODELS = {"resnet50": 224, "mobilenet_v2_full": 224, "inception_v3": 299}
CLASSIFIER = {"classifier": 224}
SIZES = {**MODELS, **FULL_MODELS, **CLASSIFIER}


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


    def full_models():
        """ResNet50, MobileNetV2 and InceptionV3 with torchvision's layer plans (1000 classes)."""

        class ResNet50(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                          nn.ReLU(), nn.MaxPool2d(3, 2, 1))
                blocks, cin = [], 64
                for width, count, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
                    for i in range(count):
                        blocks.append(Bottleneck(cin, width, width * 4, stride if i == 0 else 1))
                        cin = width * 4
                self.blocks = nn.Sequential(*blocks)
                self.fc = nn.Linear(2048, 1000)

            def forward(self, x):
                x = self.blocks(self.stem(x))
                return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

        class MobileNetV2(nn.Module):
            def __init__(self):
                super().__init__()
                layers, cin = [conv_bn(3, 32, 3, 2, act="relu6")], 32
                plan = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)]
                for expand, cout, count, stride in plan:
                    for i in range(count):
                        layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand)
                                      if expand != 1 else
                                      nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin,
                                                            act="relu6"),
                                                    conv_bn(cin, cout, 1, act=None)))
                        cin = cout
                layers.append(conv_bn(cin, 1280, 1, act="relu6"))
                self.features = nn.Sequential(*layers)
                self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

            def forward(self, x):
                return self.classifier(torch.flatten(
                    nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))

        def cbr(cin, cout, k, stride=1, pad=0):
            """Inception's conv + BatchNorm (eps 0.001) + ReLU; k and pad may be (h, w)."""
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, bias=False),
                                 nn.BatchNorm2d(cout, eps=0.001), nn.ReLU())

        class Branches(nn.Module):
            def __init__(self, *branches):
                super().__init__()
                self.branches = nn.ModuleList(branches)

            def forward(self, x):
                return torch.cat([b(x) for b in self.branches], 1)

        class Split(nn.Module):
            """A stem followed by two parallel convolutions, concatenated (InceptionE)."""
            def __init__(self, stem, a, b):
                super().__init__()
                self.stem, self.a, self.b = stem, a, b

            def forward(self, x):
                y = self.stem(x)
                return torch.cat([self.a(y), self.b(y)], 1)

        def avg_branch(cin, cout):
            return nn.Sequential(nn.AvgPool2d(3, 1, 1), cbr(cin, cout, 1))

        def block_a(cin, pool):
            return Branches(cbr(cin, 64, 1), nn.Sequential(cbr(cin, 48, 1), cbr(48, 64, 5, pad=2)),
                            nn.Sequential(cbr(cin, 64, 1), cbr(64, 96, 3, pad=1),
                                          cbr(96, 96, 3, pad=1)), avg_branch(cin, pool))

        def block_b(cin):
            return Branches(cbr(cin, 384, 3, 2),
                            nn.Sequential(cbr(cin, 64, 1), cbr(64, 96, 3, pad=1), cbr(96, 96, 3, 2)),
                            nn.MaxPool2d(3, 2))

        def block_c(cin, c7):
            return Branches(cbr(cin, 192, 1),
                            nn.Sequential(cbr(cin, c7, 1), cbr(c7, c7, (1, 7), pad=(0, 3)),
                                          cbr(c7, 192, (7, 1), pad=(3, 0))),
                            nn.Sequential(cbr(cin, c7, 1), cbr(c7, c7, (7, 1), pad=(3, 0)),
                                          cbr(c7, c7, (1, 7), pad=(0, 3)),
                                          cbr(c7, c7, (7, 1), pad=(3, 0)),
                                          cbr(c7, 192, (1, 7), pad=(0, 3))),
                            avg_branch(cin, 192))

        def block_d(cin):
            return Branches(nn.Sequential(cbr(cin, 192, 1), cbr(192, 320, 3, 2)),
                            nn.Sequential(cbr(cin, 192, 1), cbr(192, 192, (1, 7), pad=(0, 3)),
                                          cbr(192, 192, (7, 1), pad=(3, 0)), cbr(192, 192, 3, 2)),
                            nn.MaxPool2d(3, 2))

        def block_e(cin):
            pair = lambda c: (cbr(c, 384, (1, 3), pad=(0, 1)), cbr(c, 384, (3, 1), pad=(1, 0)))
            return Branches(cbr(cin, 320, 1), Split(cbr(cin, 384, 1), *pair(384)),
                            Split(nn.Sequential(cbr(cin, 448, 1), cbr(448, 384, 3, pad=1)),
                                  *pair(384)),
                            avg_branch(cin, 192))

        class InceptionV3(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(
                    cbr(3, 32, 3, 2), cbr(32, 32, 3), cbr(32, 64, 3, pad=1), nn.MaxPool2d(3, 2),
                    cbr(64, 80, 1), cbr(80, 192, 3), nn.MaxPool2d(3, 2),
                    block_a(192, 32), block_a(256, 64), block_a(288, 64), block_b(288),
                    block_c(768, 128), block_c(768, 160), block_c(768, 160), block_c(768, 192),
                    block_d(768), block_e(1280), block_e(2048))
                self.fc = nn.Linear(2048, 1000)

            def forward(self, x):
                x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
                return self.fc(nn.functional.dropout(torch.flatten(x, 1), 0.5, self.training))

        class Classifier(nn.Module):
            """A small torchvision-style ImageNet classifier for classify's end-to-end test."""
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(conv_bn(3, 16, 3, 2), nn.MaxPool2d(3, 2, 1),
                                          Bottleneck(16, 8, 32, 2), Bottleneck(32, 16, 64, 2))
                self.fc = nn.Linear(64, 1000)

            def forward(self, x):
                return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1))

        return {"resnet50": ResNet50, "mobilenet_v2_full": MobileNetV2,
                "inception_v3": InceptionV3, "classifier": Classifier}

    def randomize(model, seed):
        torch.manual_seed(seed)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
        return model.eval()


    return {"resnet": TinyResNet, "mobilenet_v2": TinyMobileNetV2, "inception": TinyInception,
            **full_models()}, randomize


def export_all(out, names):
    import torch
    classes, randomize = define_models()
    for name in names:
        size = SIZES[name]
        model = randomize(classes[name](), seed=len(name))
        batch = 1 if name == "classifier" else 2
        x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(7)) * 2 - 1
        torch.onnx.export(model, x, os.path.join(out, f"{name}.onnx"), opset_version=13,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        with torch.no_grad():
            np.save(os.path.join(out, f"{name}.x.npy"), x.numpy())
            np.save(os.path.join(out, f"{name}.y.npy"), model(x).numpy())


def export(out, names):
    """Runs the export in the torch interpreter; skips when torch is missing."""
    import pytest
    try:
        proc = subprocess.run([TORCH_PYTHON, __file__, str(out), *names], capture_output=True,
                              text=True, timeout=1200)
    except FileNotFoundError:
        pytest.skip(f"{TORCH_PYTHON} not found")
    if proc.returncode != 0 and "No module named 'torch'" in proc.stderr:
        pytest.skip(f"torch is not importable by {TORCH_PYTHON}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


if __name__ == "__main__":
    export_all(sys.argv[1], sys.argv[2:])
else:
    import pytest

    from conftest import SHARED, run_convnet

    @pytest.fixture(scope="module")
    def exported(tmp_path_factory):
        return export(tmp_path_factory.mktemp("torch_onnx"), sorted(MODELS))

    def check_run(convnet_bin, out, tmp_path, name):
        run_convnet(convnet_bin, "run", "-m", out / f"{name}.onnx", "--input",
                    out / f"{name}.x.npy", "--output", tmp_path / "y.npy")
        got = np.load(tmp_path / "y.npy")
        want = np.load(out / f"{name}.y.npy")
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)

    @pytest.mark.parametrize("name", sorted(MODELS))
    def test_torch_export_matches(convnet_bin, exported, tmp_path, name):
        check_run(convnet_bin, exported, tmp_path, name)

    @pytest.mark.slow
    @pytest.mark.parametrize("name", sorted(FULL_MODELS))
    def test_full_size_export_matches(convnet_bin, tmp_path_factory, tmp_path, name):
        out = export(tmp_path_factory.mktemp(name), [name])
        check_run(convnet_bin, out, tmp_path, name)

    def torchvision_tensor(photo, size=224, resize=256):
        """torchvision's ImageNet preprocessing done with PIL and NumPy (square resize, as
        convnet's input spec does): PIL bilinear to resize x resize, central size x size, /255,
        ImageNet mean/std, CHW, batch of one."""
        from PIL import Image
        img = Image.open(photo).convert("RGB").resize((resize, resize), Image.BILINEAR)
        left = (resize - size) // 2
        img = img.crop((left, left, left + size, left + size))
        x = np.asarray(img, dtype=np.float32) / np.float32(255)
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225],
                                                                         np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def test_classify_onnx_photo(convnet_bin, tmp_path_factory):
        import json

        import onnxruntime as ort
        photo = SHARED / "images" / "coral_cat_720p.jpg"
        if not photo.exists():
            pytest.skip(f"{photo} not present")
        out = export(tmp_path_factory.mktemp("classifier"), sorted(CLASSIFIER))
        model = out / "classifier.onnx"
        proc = run_convnet(convnet_bin, "classify", "-m", model, "-k", "5", "--json", photo)
        got = json.loads(proc.stdout.strip().splitlines()[0])["top"]
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        scores = sess.run(None, {"x": torchvision_tensor(photo)})[0][0]
        want = np.argsort(-scores, kind="stable")[:5]
        assert [t["index"] for t in got] == list(want)
        np.testing.assert_allclose([t["prob"] for t in got], scores[want], rtol=0, atol=1e-4)
