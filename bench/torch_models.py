"""VGG16, ResNet50, MobileNetV2 and InceptionV3 as small torch modules, for bench_onnx.py.

torchvision is not installed on these machines (only Debian's python3-torch), so the four
architectures are written out here from their published layer shapes (the ImageNet classifiers:
224x224 input, 299x299 for InceptionV3, 1000 classes; InceptionV3 without its auxiliary head,
which inference does not run). Weights are random with a fixed seed; calibrate() then sets every
BatchNorm's running statistics from real activations and perturbs them, and draws gamma/beta, so
that each layer carries signal and the outputs are worth comparing."""
import torch
from torch import nn


def conv_bn(cin, cout, kernel, stride=1, padding=0, act="relu", groups=1, eps=1e-5):
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
              nn.BatchNorm2d(cout, eps=eps)]
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    elif act == "relu6":
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


# ---- VGG16 -----------------------------------------------------------------------------------

def vgg16():
    layers, cin = [], 3
    for block in ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]):
        for cout in block:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2))
    # torchvision's AdaptiveAvgPool2d((7, 7)) is the identity at 224x224: left out.
    return nn.Sequential(*layers, nn.Flatten(),
                         nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                         nn.Linear(4096, 1000))


# ---- ResNet50 (v1.5: the stride sits on the 3x3 convolution) ----------------------------------

class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(conv_bn(cin, width, 1), conv_bn(width, width, 3, stride, 1),
                                  conv_bn(width, cout, 1, act=None))
        self.shortcut = (conv_bn(cin, cout, 1, stride, act=None)
                         if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet50():
    layers, cin = [conv_bn(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)], 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000))


# ---- MobileNetV2 ------------------------------------------------------------------------------

class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act="relu6")] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, 1, act="relu6", groups=hidden),
                   conv_bn(hidden, cout, 1, act=None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2():
    layers, cin = [conv_bn(3, 32, 3, 2, 1, act="relu6")], 32
    for expand, cout, repeats, stride in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                          (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                                          (6, 320, 1, 1)):
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers.append(conv_bn(cin, 1280, 1, act="relu6"))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(1280, 1000))


# ---- InceptionV3 ------------------------------------------------------------------------------

def basic(cin, cout, kernel, stride=1, padding=0):
    return conv_bn(cin, cout, kernel, stride, padding, eps=1e-3)


class Branches(nn.Module):
    """Runs each branch on the input and concatenates along channels."""

    def __init__(self, *branches):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


def avg_branch(cin, cout):
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), basic(cin, cout, 1))


def inception_a(cin, pool):
    return Branches(basic(cin, 64, 1),
                    nn.Sequential(basic(cin, 48, 1), basic(48, 64, 5, padding=2)),
                    nn.Sequential(basic(cin, 64, 1), basic(64, 96, 3, padding=1),
                                  basic(96, 96, 3, padding=1)),
                    avg_branch(cin, pool))


def inception_b(cin):
    return Branches(basic(cin, 384, 3, 2),
                    nn.Sequential(basic(cin, 64, 1), basic(64, 96, 3, padding=1),
                                  basic(96, 96, 3, 2)),
                    nn.MaxPool2d(3, 2))


def inception_c(cin, c7):
    row, col = (1, 7), (7, 1)
    pad_row, pad_col = (0, 3), (3, 0)
    return Branches(basic(cin, 192, 1),
                    nn.Sequential(basic(cin, c7, 1), basic(c7, c7, row, padding=pad_row),
                                  basic(c7, 192, col, padding=pad_col)),
                    nn.Sequential(basic(cin, c7, 1), basic(c7, c7, col, padding=pad_col),
                                  basic(c7, c7, row, padding=pad_row),
                                  basic(c7, c7, col, padding=pad_col),
                                  basic(c7, 192, row, padding=pad_row)),
                    avg_branch(cin, 192))


def inception_d(cin):
    return Branches(nn.Sequential(basic(cin, 192, 1), basic(192, 320, 3, 2)),
                    nn.Sequential(basic(cin, 192, 1), basic(192, 192, (1, 7), padding=(0, 3)),
                                  basic(192, 192, (7, 1), padding=(3, 0)), basic(192, 192, 3, 2)),
                    nn.MaxPool2d(3, 2))


def split_3x3(cin):
    return Branches(basic(cin, 384, (1, 3), padding=(0, 1)), basic(cin, 384, (3, 1), padding=(1, 0)))


def inception_e(cin):
    return Branches(basic(cin, 320, 1),
                    nn.Sequential(basic(cin, 384, 1), split_3x3(384)),
                    nn.Sequential(basic(cin, 448, 1), basic(448, 384, 3, padding=1),
                                  split_3x3(384)),
                    avg_branch(cin, 192))


def inception_v3():
    return nn.Sequential(
        basic(3, 32, 3, 2), basic(32, 32, 3), basic(32, 64, 3, padding=1), nn.MaxPool2d(3, 2),
        basic(64, 80, 1), basic(80, 192, 3), nn.MaxPool2d(3, 2),
        inception_a(192, 32), inception_a(256, 64), inception_a(288, 64),
        inception_b(288),
        inception_c(768, 128), inception_c(768, 160), inception_c(768, 160), inception_c(768, 192),
        inception_d(768),
        inception_e(1280), inception_e(2048),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, 1000))


# name: (builder, input side)
MODELS = {
    "resnet50": (resnet50, 224),
    "mobilenet_v2": (mobilenet_v2, 224),
    "inception_v3": (inception_v3, 299),
    "vgg16": (vgg16, 224),
}


def init_weights(model):
    """He-normal convolutions and linears so that ReLU stacks without BatchNorm (VGG16) keep
    their scale; the classifier's logits then spread over a few units."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)


@torch.no_grad()
def calibrate(model, x, generator):
    """BatchNorm running statistics from one training-mode pass over x (momentum None: the plain
    average), then perturbed (so that they are not exactly the batch's), and random gamma/beta."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    model(x)
    model.eval()
    for bn in bns:
        c = bn.num_features
        bn.running_mean += 0.1 * torch.randn(c, generator=generator) * bn.running_var.sqrt()
        bn.running_var *= torch.empty(c).uniform_(0.8, 1.25, generator=generator)
        bn.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=generator))
        bn.bias.copy_(torch.empty(c).uniform_(-0.2, 0.2, generator=generator))


@torch.no_grad()
def scale_logits(model, x, spread=3.0):
    """Residual sums grow with depth: rescale the classifier so that the logits spread over a
    few units (a softmax that is not one-hot), as a trained model's do."""
    fc = model[-1]
    fc.weight *= spread / float(model(x).std())
    fc.bias.zero_()


def build(name, seed=1234):
    builder, side = MODELS[name]
    torch.manual_seed(seed)
    model = builder()
    init_weights(model)
    gen = torch.Generator().manual_seed(seed + 1)
    calib = torch.empty(2, 3, side, side).uniform_(-1, 1, generator=gen)
    calibrate(model, calib, gen)
    scale_logits(model, calib)
    return model.eval(), side
