"""Gradients of every Keras-model operator, and a short CNN training run, against PyTorch autograd.

convnet's side comes from the probe tests/probes/probe_grad.c: a graph described as a Keras model
config (the model.to_json() format, written here by hand), its parameters as .npy files in Keras
layouts, a training-mode (or inference-mode) forward and a backward from a given d loss / d output.
The PyTorch side interprets the same layer list with torch.nn.functional in float64 on the same
float32 values, keeping activations NHWC as Keras does (so Flatten is in NHWC order) and moving to
NCHW / OIHW only around convolutions and pooling. TensorFlow's SAME padding puts the odd pixel at
the end, so the reference pads explicitly.

Error measure: |convnet - torch| / max(1, |torch|), its maximum over every element of the output,
d input and each parameter gradient; the bar is 1e-3."""
import json
import math
import os
import subprocess

import numpy as np
import pytest

from conftest import BUILD

TOL = 1e-3

torch = pytest.importorskip("torch")
F = torch.nn.functional
# Debian's torch warns that it cannot use this NumPy: arrays cross as Python lists (to_torch).
pytestmark = pytest.mark.filterwarnings("ignore:Failed to initialize NumPy")


@pytest.fixture(scope="module")
def probe():
    path = BUILD / "probe_grad"
    if not path.exists():
        pytest.fail(f"{path} not built: run cmake --build {BUILD}")
    return str(path)


def run_probe(probe, *args):
    # Idle OpenMP workers sleep rather than spin: on a loaded machine spinning made the 50-step
    # run 50 times slower.
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    proc = subprocess.run([probe, *map(str, args)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def save(path, array):
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))


# Debian's torch is built against another NumPy: cross the border as Python lists.
def to_torch(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64).tolist(), dtype=torch.float64,
                        requires_grad=grad)


def to_numpy(t):
    return np.array(t.detach().tolist(), dtype=np.float64)


# ---- graphs as Keras model configs -------------------------------------------------------------


def layer(cls, name, inputs, **config):
    """A Keras layer entry; inputs are layer names (one call, tensor 0)."""
    if isinstance(inputs, str):
        inputs = [inputs]
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]]}


def model_json(input_shape, layers):
    entry = {"class_name": "InputLayer", "name": "input", "inbound_nodes": [],
             "config": {"name": "input", "batch_input_shape": [None, *input_shape]}}
    return {"class_name": "Functional",
            "config": {"name": "probe", "layers": [entry, *layers],
                       "input_layers": [["input", 0, 0]],
                       "output_layers": [[layers[-1]["name"], 0, 0]]}}


# ---- the PyTorch reference, NHWC ---------------------------------------------------------------


def pair(v, default):
    if v is None:
        v = default
    return (v, v) if isinstance(v, int) else tuple(v)


def same_pads(size, k, s, d=1):
    """TensorFlow SAME: (before, after), the extra pixel after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(x, kh, kw, sh, sw, dh=1, dw=1, value=0.0):
    """x: NCHW."""
    top, bottom = same_pads(x.shape[2], kh, sh, dh)
    left, right = same_pads(x.shape[3], kw, sw, dw)
    return F.pad(x, (left, right, top, bottom), value=value)


def keras_deconv_length(size, k, s, d, padding, output_padding):
    """Keras's Conv2DTranspose output length (output_padding None: Keras's default)."""
    k = (k - 1) * d + 1
    if padding == "valid":
        extra = max(k, s) - k if output_padding is None else output_padding
        return (size - 1) * s + k + extra
    return size * s if output_padding is None else (size - 1) * s + k % 2 + output_padding


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def activation(x, name):
    if name in (None, "linear"):
        return x
    return {
        "relu": F.relu,
        "relu6": F.relu6,
        "leaky_relu": lambda v: F.leaky_relu(v, 0.2),
        "elu": F.elu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "swish": F.silu,
        "silu": F.silu,
        "hard_sigmoid": lambda v: F.relu6(v + 3) / 6,  # Keras 3
        "softmax": lambda v: F.softmax(v, dim=-1),
    }[name](x)


def keras_relu(x, max_value=None, negative_slope=0.0, threshold=0.0):
    y = torch.where(x >= threshold, x, negative_slope * (x - threshold))
    return y if max_value is None else torch.clamp(y, max=max_value)


class Reference:
    """Runs a layer list in torch (float64). params: name -> float32 array in Keras layout; a
    missing one is drawn from rng on first use. tensors: the torch leaves made from them."""

    def __init__(self, params, rng=None, masks=None, training=True):
        self.params, self.rng, self.masks, self.training = params, rng, masks or {}, training
        self.tensors = {}

    def param(self, layer_name, pname, shape, kind="normal", grad=True):
        key = f"{layer_name}__{pname}"
        if key not in self.params:
            rng = self.rng
            value = {"normal": lambda: rng.normal(0, 0.5, shape),
                     "positive": lambda: rng.uniform(0.5, 1.5, shape)}[kind]()
            self.params[key] = value.astype(np.float32)
        if key not in self.tensors:
            self.tensors[key] = to_torch(self.params[key], grad=grad)
        return self.tensors[key]

    def run(self, spec, x):
        values = {"input": x}
        for entry in spec["config"]["layers"][1:]:
            ins = [values[i[0]] for i in entry["inbound_nodes"][0]]
            values[entry["name"]] = getattr(self, entry["class_name"])(entry["config"], *ins)
        return values[spec["config"]["layers"][-1]["name"]]

    def Conv2D(self, c, x):
        kh, kw = pair(c["kernel_size"], 1)
        sh, sw = pair(c.get("strides"), 1)
        dh, dw = pair(c.get("dilation_rate"), 1)
        groups, cin = c.get("groups", 1), x.shape[-1]
        k = self.param(c["name"], "kernel", (kh, kw, cin // groups, c["filters"]))
        y = nchw(x)
        if c.get("padding") == "same":
            y = pad_same(y, kh, kw, sh, sw, dh, dw)
        y = F.conv2d(y, k.permute(3, 2, 0, 1), stride=(sh, sw), dilation=(dh, dw), groups=groups)
        y = nhwc(y)
        if c.get("use_bias", True):
            y = y + self.param(c["name"], "bias", (c["filters"],))
        return activation(y, c.get("activation"))

    def Conv2DTranspose(self, c, x):
        """The full transposed convolution (torch, no padding), then cut to Keras's output length
        the way TensorFlow places it: as the input gradient of the convolution of an L-long input
        (SAME: TensorFlow's forward padding of that input, the extra pixel after)."""
        kh, kw = pair(c["kernel_size"], 1)
        sh, sw = pair(c.get("strides"), 1)
        dh, dw = pair(c.get("dilation_rate"), 1)
        oph, opw = pair(c["output_padding"], 0) if c.get("output_padding") is not None \
            else (None, None)
        cin = x.shape[-1]
        k = self.param(c["name"], "kernel", (kh, kw, c["filters"], cin))
        y = F.conv_transpose2d(nchw(x), k.permute(3, 2, 0, 1), stride=(sh, sw), dilation=(dh, dw))
        pads = []
        for size, full, kk, s, d, op in ((x.shape[2], y.shape[3], kw, sw, dw, opw),
                                        (x.shape[1], y.shape[2], kh, sh, dh, oph)):
            length = keras_deconv_length(size, kk, s, d, c.get("padding", "valid"), op)
            before = same_pads(length, kk, s, d)[0] if c.get("padding") == "same" else 0
            pads += [-before, length - (full - before)]  # negative pads crop
        y = nhwc(F.pad(y, tuple(pads)))
        if c.get("use_bias", True):
            y = y + self.param(c["name"], "bias", (c["filters"],))
        return activation(y, c.get("activation"))

    def UpSampling2D(self, c, x):
        sh, sw = pair(c.get("size"), 2)
        if c.get("interpolation", "nearest") == "nearest":
            return x.repeat_interleave(sh, dim=1).repeat_interleave(sw, dim=2)
        # PyTorch's align_corners=False is the half-pixel rule of tf.image.resize (no antialias)
        return nhwc(F.interpolate(nchw(x), scale_factor=(sh, sw), mode="bilinear",
                                  align_corners=False))

    def DepthwiseConv2D(self, c, x):
        kh, kw = pair(c["kernel_size"], 1)
        sh, sw = pair(c.get("strides"), 1)
        dh, dw = pair(c.get("dilation_rate"), 1)
        m, cin = c.get("depth_multiplier", 1), x.shape[-1]
        k = self.param(c["name"], "depthwise_kernel", (kh, kw, cin, m))
        y = nchw(x)
        if c.get("padding") == "same":
            y = pad_same(y, kh, kw, sh, sw, dh, dw)
        # output channel c * m + j uses input channel c and kernel[..., c, j]
        w = k.permute(2, 3, 0, 1).reshape(cin * m, 1, kh, kw)
        y = nhwc(F.conv2d(y, w, stride=(sh, sw), dilation=(dh, dw), groups=cin))
        if c.get("use_bias", True):
            y = y + self.param(c["name"], "bias", (cin * m,))
        return activation(y, c.get("activation"))

    def Dense(self, c, x):
        y = x @ self.param(c["name"], "kernel", (x.shape[-1], c["units"]))
        if c.get("use_bias", True):
            y = y + self.param(c["name"], "bias", (c["units"],))
        return activation(y, c.get("activation"))

    def BatchNormalization(self, c, x):
        ch, n = x.shape[-1], c["name"]
        gamma = self.param(n, "gamma", (ch,), "positive") if c.get("scale", True) else None
        beta = self.param(n, "beta", (ch,)) if c.get("center", True) else None
        mean = self.param(n, "moving_mean", (ch,), grad=False)
        var = self.param(n, "moving_variance", (ch,), "positive", grad=False)
        training = self.training and c.get("trainable", True)
        y = x.movedim(-1, 1)
        y = F.batch_norm(y, None if training else mean, None if training else var, gamma, beta,
                         training=training, eps=c.get("epsilon", 1e-3))
        return y.movedim(1, -1)

    def Activation(self, c, x):
        return activation(x, c["activation"])

    def ReLU(self, c, x):
        return keras_relu(x, c.get("max_value"), c.get("negative_slope", 0.0),
                          c.get("threshold", 0.0))

    def LeakyReLU(self, c, x):
        return F.leaky_relu(x, c.get("negative_slope", 0.3))

    def Softmax(self, c, x):
        return F.softmax(x, dim=c.get("axis", -1))

    def Add(self, c, *xs):
        return sum(xs[1:], xs[0])

    def Subtract(self, c, a, b):
        return a - b

    def Multiply(self, c, *xs):
        return math.prod(xs[1:], start=xs[0])

    def Average(self, c, *xs):
        return sum(xs[1:], xs[0]) / len(xs)

    def Maximum(self, c, *xs):
        return torch.stack(xs).amax(0)

    def Minimum(self, c, *xs):
        return torch.stack(xs).amin(0)

    def Concatenate(self, c, *xs):
        return torch.cat(xs, dim=c.get("axis", -1))

    def _pool(self, c, x, kind):
        ph, pw = pair(c.get("pool_size"), 2)
        sh, sw = pair(c.get("strides"), None) if c.get("strides") else (ph, pw)
        y = nchw(x)
        if kind == "max":
            if c.get("padding") == "same":
                y = pad_same(y, ph, pw, sh, sw, value=-math.inf)
            return nhwc(F.max_pool2d(y, (ph, pw), (sh, sw)))
        if c.get("padding") != "same":
            return nhwc(F.avg_pool2d(y, (ph, pw), (sh, sw)))
        # TensorFlow's SAME average divides by the cells inside the image only
        total = F.avg_pool2d(pad_same(y, ph, pw, sh, sw), (ph, pw), (sh, sw))
        cells = F.avg_pool2d(pad_same(torch.ones_like(y), ph, pw, sh, sw), (ph, pw), (sh, sw))
        return nhwc(total / cells)

    def MaxPooling2D(self, c, x):
        return self._pool(c, x, "max")

    def AveragePooling2D(self, c, x):
        return self._pool(c, x, "avg")

    def GlobalAveragePooling2D(self, c, x):
        return x.mean(dim=(1, 2), keepdim=c.get("keepdims", False))

    def GlobalMaxPooling2D(self, c, x):
        return x.amax(dim=(1, 2), keepdim=c.get("keepdims", False))

    def ZeroPadding2D(self, c, x):
        (top, bottom), (left, right) = c["padding"]
        return F.pad(x, (0, 0, left, right, top, bottom))

    def Flatten(self, c, x):
        return x.reshape(x.shape[0], -1)  # NHWC order, as Keras

    def Reshape(self, c, x):
        return x.reshape(x.shape[0], *c["target_shape"])

    def Dropout(self, c, x):
        if not self.training:
            return x
        return x * to_torch(self.masks[c["name"]]) / (1 - c["rate"])


# ---- one comparison ----------------------------------------------------------------------------


def make_params(spec, input_shape, batch, seed, masks=None, scale=1.0):
    """Random parameters (Keras layouts), input (standard deviation scale) and output gradient,
    all float32."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.normal(0, 1, (batch, *input_shape))).astype(np.float32)
    ref = Reference({}, rng, masks)
    with torch.no_grad():
        out = ref.run(spec, to_torch(x))
    dout = rng.normal(0, 1, tuple(out.shape)).astype(np.float32)
    return ref.params, x, dout


def torch_grads(spec, params, x, dout, training, masks=None):
    ref = Reference(params, masks=masks, training=training)
    tx = to_torch(x, grad=True)
    out = ref.run(spec, tx)
    (out * to_torch(dout)).sum().backward()
    grads = {k: to_numpy(v.grad) for k, v in ref.tensors.items() if v.grad is not None}
    return to_numpy(out), to_numpy(tx.grad), grads


def probe_grads(probe, tmp_path, spec, params, x, dout, training, seed=1):
    (tmp_path / "model.json").write_text(json.dumps(spec))
    for name, value in params.items():
        save(tmp_path / f"{name}.npy", value)
    save(tmp_path / "input.npy", x)
    save(tmp_path / "dout.npy", dout)
    kind = run_probe(probe, "grad", tmp_path / "model.json", tmp_path, int(training), seed)
    assert kind == "linear", "the graph's output must not be split off"

    def load(name):
        path = tmp_path / f"{name}.npy"
        return np.load(path) if path.exists() else None
    grads = {k: load(f"d_{k}") for k in params}
    states = {k: load(f"state_{k}") for k in params}
    return load("out"), load("dinput"), grads, states


def rel_err(ours, ref):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref)),
                        initial=0.0))


def compare(probe, tmp_path, spec, input_shape, batch=3, training=True, seed=0, masks=None,
            scale=1.0):
    """Runs both sides; asserts every error <= TOL; returns {what: error} and convnet's states."""
    params, x, dout = make_params(spec, input_shape, batch, seed, masks, scale)
    out, dinput, grads, states = probe_grads(probe, tmp_path, spec, params, x, dout, training)
    ref_out, ref_dinput, ref_grads = torch_grads(spec, params, x, dout, training, masks)
    errors = {"out": rel_err(out, ref_out), "dinput": rel_err(dinput, ref_dinput)}
    for name, ref in ref_grads.items():
        if grads[name] is not None:
            errors[f"d {name}"] = rel_err(grads[name], ref)
    print(" ".join(f"{k}={v:.1e}" for k, v in errors.items()))
    print(f"max rel error {max(errors.values()):.2e}")
    for what, err in errors.items():
        assert err <= TOL, f"{what}: relative error {err:.2e}"
    return errors, params, x, states


# ---- the cases: (input shape, layers) ----------------------------------------------------------


def conv(name="op", inputs="input", **c):
    return layer("Conv2D", name, inputs, **c)


def single(cls, **c):
    return [layer(cls, "op", "input", **c)]


def not_last(layers):
    """The trainer splits a final softmax or sigmoid off the graph (the loss fuses it): a Flatten
    after it keeps it in."""
    return layers + [layer("Flatten", "flat", layers[-1]["name"])]


def two_branches(cls, n=2, **c):
    """n convolutions of the input merged by cls: also checks fan-out accumulation at the input."""
    convs = [conv(f"b{i}", filters=4, kernel_size=3 - i % 2, padding="same") for i in range(n)]
    return convs + [layer(cls, "op", [f"b{i}" for i in range(n)], **c)]


CASES = {
    # Conv2D
    "conv_k3_same": ((7, 7, 3), single("Conv2D", filters=5, kernel_size=3, padding="same")),
    "conv_k3_valid_s2": ((7, 7, 3), single("Conv2D", filters=4, kernel_size=3, strides=2)),
    "conv_k3_same_s2_even": ((8, 8, 3), single("Conv2D", filters=4, kernel_size=3, strides=2,
                                               padding="same")),  # pads 0 before, 1 after
    "conv_k4_same_asym": ((7, 6, 2), single("Conv2D", filters=3, kernel_size=4, padding="same")),
    "conv_k3x2_s2x1_same": ((9, 7, 3), single("Conv2D", filters=4, kernel_size=[3, 2],
                                              strides=[2, 1], padding="same")),
    "conv_dilation2_same": ((9, 9, 3), single("Conv2D", filters=4, kernel_size=3,
                                              dilation_rate=2, padding="same")),
    "conv_dilation2_valid": ((9, 8, 2), single("Conv2D", filters=3, kernel_size=3,
                                               dilation_rate=[2, 1])),
    "conv_groups2": ((6, 6, 4), single("Conv2D", filters=6, kernel_size=3, groups=2,
                                       padding="same")),
    "conv_groups4_s2": ((7, 7, 8), single("Conv2D", filters=8, kernel_size=3, groups=4,
                                          strides=2, padding="same")),
    "conv_no_bias": ((6, 6, 3), single("Conv2D", filters=4, kernel_size=3, use_bias=False)),
    "conv_1x1": ((5, 5, 6), single("Conv2D", filters=7, kernel_size=1)),
    "conv_1x1_s2": ((7, 7, 4), single("Conv2D", filters=5, kernel_size=1, strides=2)),
    "conv_wide": ((12, 12, 16), single("Conv2D", filters=24, kernel_size=3, padding="same")),
    # Conv2DTranspose
    "convt_k3_s1_valid": ((4, 5, 2), single("Conv2DTranspose", filters=3, kernel_size=3)),
    "convt_k3_s2_same": ((5, 6, 3), single("Conv2DTranspose", filters=4, kernel_size=3,
                                           strides=2, padding="same")),  # 1 cut after
    "convt_k4_s2_same": ((4, 5, 3), single("Conv2DTranspose", filters=3, kernel_size=4,
                                           strides=2, padding="same")),  # 1 cut before and after
    "convt_k2_s3_valid": ((4, 3, 2), single("Conv2DTranspose", filters=3, kernel_size=2,
                                            strides=3)),  # output padding 1 by default
    "convt_k3_s2_valid_outpad1": ((4, 4, 2), single("Conv2DTranspose", filters=3, kernel_size=3,
                                                    strides=2, output_padding=1)),
    "convt_k3_s2_same_outpad1": ((4, 5, 3), single("Conv2DTranspose", filters=4, kernel_size=3,
                                                   strides=2, padding="same", output_padding=1)),
    "convt_k3x2_s3x2_same_outpad": ((3, 4, 2), single("Conv2DTranspose", filters=3,
                                                      kernel_size=[3, 2], strides=[3, 2],
                                                      padding="same", output_padding=[2, 1])),
    "convt_k5_s3_same": ((3, 4, 2), single("Conv2DTranspose", filters=2, kernel_size=5, strides=3,
                                           padding="same")),
    "convt_dilation2_same": ((5, 5, 2), single("Conv2DTranspose", filters=3, kernel_size=3,
                                               dilation_rate=2, padding="same")),
    "convt_dilation2_valid": ((4, 5, 3), single("Conv2DTranspose", filters=2, kernel_size=[2, 3],
                                                dilation_rate=[1, 2])),
    "convt_no_bias_relu": ((5, 5, 3), single("Conv2DTranspose", filters=4, kernel_size=3,
                                             strides=2, padding="same", use_bias=False,
                                             activation="relu")),
    "convt_tanh": ((4, 4, 3), single("Conv2DTranspose", filters=3, kernel_size=2, strides=2,
                                     activation="tanh")),
    "convt_sigmoid": ((4, 4, 3), not_last(single("Conv2DTranspose", filters=2, kernel_size=3,
                                                 strides=2, padding="same",
                                                 activation="sigmoid"))),
    "convt_wide": ((8, 8, 16), single("Conv2DTranspose", filters=24, kernel_size=3, strides=2,
                                      padding="same")),
    # UpSampling2D
    "upsample_nearest2": ((3, 4, 3), single("UpSampling2D", size=2)),
    "upsample_nearest3": ((3, 3, 2), single("UpSampling2D", size=3)),
    "upsample_nearest_2x3": ((3, 4, 2), single("UpSampling2D", size=[2, 3])),
    "upsample_bilinear2": ((3, 4, 3), single("UpSampling2D", size=2, interpolation="bilinear")),
    "upsample_bilinear3": ((4, 3, 2), single("UpSampling2D", size=3, interpolation="bilinear")),
    "upsample_bilinear_3x2": ((3, 4, 2), single("UpSampling2D", size=[3, 2],
                                                interpolation="bilinear")),
    # A small decoder: every upsampling layer in one backward
    "decoder": ((4, 4, 3), [
        conv("c1", filters=4, kernel_size=3, padding="same", activation="relu"),
        layer("UpSampling2D", "up1", "c1", size=2, interpolation="bilinear"),
        layer("Conv2DTranspose", "t1", "up1", filters=4, kernel_size=3, strides=2,
              padding="same", output_padding=1, activation="relu"),
        layer("UpSampling2D", "up2", "t1", size=[1, 2]),
        conv("op", "up2", filters=2, kernel_size=3)]),
    # DepthwiseConv2D
    "dw_m1_same": ((7, 7, 4), single("DepthwiseConv2D", kernel_size=3, padding="same")),
    "dw_m2_same_s2": ((8, 8, 3), single("DepthwiseConv2D", kernel_size=3, depth_multiplier=2,
                                        strides=2, padding="same")),
    "dw_m2_valid": ((7, 6, 3), single("DepthwiseConv2D", kernel_size=3, depth_multiplier=2)),
    "dw_dilation2_no_bias": ((9, 9, 4), single("DepthwiseConv2D", kernel_size=3, dilation_rate=2,
                                               padding="same", use_bias=False)),
    "dw_relu6_s2_valid": ((9, 9, 4), single("DepthwiseConv2D", kernel_size=3, strides=2,
                                            activation="relu6")),
    # Dense
    "dense_rank2": ((6,), single("Dense", units=4)),
    "dense_rank3": ((4, 5), single("Dense", units=3)),
    "dense_no_bias_tanh": ((7,), single("Dense", units=5, use_bias=False, activation="tanh")),
    # BatchNormalization (training: batch statistics)
    "bn_conv_train": ((5, 5, 3), [conv("conv", filters=4, kernel_size=3, padding="same"),
                                  layer("BatchNormalization", "op", "conv", momentum=0.9)]),
    "bn_dense_train": ((6,), [layer("Dense", "dense", "input", units=5),
                              layer("BatchNormalization", "op", "dense", momentum=0.8,
                                    epsilon=0.01)]),
    "bn_no_scale_center": ((5, 5, 3), single("BatchNormalization", scale=False, center=False)),
    "bn_frozen": ((5, 5, 3), [conv("conv", filters=4, kernel_size=3, padding="same"),
                              layer("BatchNormalization", "op", "conv", trainable=False)]),
    # ZeroPadding2D, pooling, reshapes
    "zeropad": ((4, 5, 2), [layer("ZeroPadding2D", "op", "input", padding=[[1, 2], [0, 3]]),
                            conv("conv", "op", filters=3, kernel_size=3)]),
    "maxpool_valid": ((6, 6, 3), single("MaxPooling2D", pool_size=2)),
    "maxpool_valid_odd": ((7, 7, 3), single("MaxPooling2D", pool_size=2)),
    "maxpool_same_s2": ((7, 8, 3), single("MaxPooling2D", pool_size=3, strides=2,
                                          padding="same")),
    "maxpool_2x3_s1x2": ((7, 7, 2), single("MaxPooling2D", pool_size=[2, 3], strides=[1, 2])),
    "avgpool_valid": ((6, 6, 3), single("AveragePooling2D", pool_size=2)),
    "avgpool_same_s2": ((7, 8, 3), single("AveragePooling2D", pool_size=3, strides=2,
                                          padding="same")),
    "avgpool_same_s1": ((5, 5, 2), single("AveragePooling2D", pool_size=3, strides=1,
                                          padding="same")),
    "gap": ((5, 6, 4), single("GlobalAveragePooling2D")),
    "gap_keepdims": ((5, 6, 4), single("GlobalAveragePooling2D", keepdims=True)),
    "gmp": ((5, 6, 4), single("GlobalMaxPooling2D")),
    "gmp_keepdims": ((5, 6, 4), single("GlobalMaxPooling2D", keepdims=True)),
    "flatten_dense": ((3, 4, 5), [layer("Flatten", "flat", "input"),
                                  layer("Dense", "op", "flat", units=3)]),
    "reshape_dense": ((4, 4, 3), [layer("Reshape", "re", "input", target_shape=[8, 6]),
                                  layer("Dense", "op", "re", units=2)]),
    "reshape_conv": ((4, 6, 2), [layer("Reshape", "re", "input", target_shape=[6, 4, 2]),
                                 conv("op", "re", filters=3, kernel_size=3)]),
    # Activation layers
    **{f"act_{a}": ((4, 5, 3), not_last(single("Activation", activation=a)))
       for a in ["relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "swish",
                 "hard_sigmoid"]},
    "act_softmax": ((3, 4, 5), not_last(single("Activation", activation="softmax"))),
    "softmax_layer_axis1": ((4, 5), not_last(single("Softmax", axis=1))),
    "relu_layer_options": ((4, 5, 3), single("ReLU", max_value=1.5, negative_slope=0.1,
                                             threshold=0.25)),
    "leaky_relu_layer": ((4, 5, 3), single("LeakyReLU", negative_slope=0.1)),
    # Merges and concatenation
    **{f"merge_{m.lower()}": ((5, 5, 3), two_branches(m))
       for m in ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]},
    "merge_add3": ((5, 5, 3), two_branches("Add", 3)),
    "merge_multiply3": ((5, 5, 3), two_branches("Multiply", 3)),
    "concat_channels": ((5, 5, 3), [conv("b0", filters=2, kernel_size=3, padding="same"),
                                    conv("b1", filters=5, kernel_size=1),
                                    layer("Concatenate", "op", ["b0", "b1"])]),
    "concat_height": ((5, 5, 3), [conv("b0", filters=4, kernel_size=[3, 1]),
                                  conv("b1", filters=4, kernel_size=1),
                                  layer("Concatenate", "op", ["b0", "b1"], axis=1)]),
    # A residual block: every kind of node in one backward
    "residual_block": ((8, 8, 3), [
        conv("c1", filters=6, kernel_size=3, padding="same"),
        layer("BatchNormalization", "bn", "c1"),
        layer("ReLU", "r1", "bn"),
        layer("DepthwiseConv2D", "dw", "r1", kernel_size=3, padding="same"),
        conv("c2", "dw", filters=6, kernel_size=1),
        conv("skip", "input", filters=6, kernel_size=1, use_bias=False),
        layer("Add", "add", ["c2", "skip"]),
        layer("MaxPooling2D", "pool", "add", pool_size=2),
        layer("GlobalAveragePooling2D", "gap", "pool"),
        layer("Dense", "op", "gap", units=4)]),
}

for _act in ["relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "swish", "hard_sigmoid"]:
    CASES[f"conv_fused_{_act}"] = ((6, 6, 3), not_last(single(
        "Conv2D", filters=4, kernel_size=3, padding="same", activation=_act)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_match_torch(probe, tmp_path, case):
    input_shape, layers = CASES[case]
    # Activations alone see inputs spread over all their pieces (relu6 above 6, hard_sigmoid
    # beyond +-3, ELU's and swish's negative sides).
    scale = 4.0 if layers[0]["class_name"] in ("Activation", "ReLU", "LeakyReLU") else 1.0
    compare(probe, tmp_path, model_json(input_shape, layers), input_shape, scale=scale)


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_batchnorm_moving_statistics(probe, tmp_path, momentum):
    """Keras's rule: moving = moving * momentum + batch * (1 - momentum), biased variance."""
    layers = [layer("BatchNormalization", "bn", "input", momentum=momentum)]
    spec = model_json((4, 5, 3), layers)
    _, params, x, states = compare(probe, tmp_path, spec, (4, 5, 3), batch=4)
    mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    var = x.astype(np.float64).var(axis=(0, 1, 2))
    want_mean = params["bn__moving_mean"] * momentum + mean * (1 - momentum)
    want_var = params["bn__moving_variance"] * momentum + var * (1 - momentum)
    np.testing.assert_allclose(states["bn__moving_mean"], want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(states["bn__moving_variance"], want_var, rtol=1e-5, atol=1e-6)


def test_batchnorm_inference_mode(probe, tmp_path):
    """training=0: the moving statistics normalize, gamma and beta still get gradients, and the
    moving statistics do not move."""
    layers = [conv("conv", filters=4, kernel_size=3, padding="same"),
              layer("BatchNormalization", "bn", "conv")]
    spec = model_json((5, 5, 3), layers)
    _, params, _, states = compare(probe, tmp_path, spec, (5, 5, 3), training=False)
    for k in ("bn__moving_mean", "bn__moving_variance"):
        np.testing.assert_array_equal(states[k], params[k])


@pytest.mark.parametrize("rate", [0.25, 0.5])
def test_dropout(probe, tmp_path, rate):
    """convnet's mask is a function of (seed, node, element): read it back from a graph whose
    Dropout is the same node (index 1) over the same batch, then check a graph with layers after
    the Dropout against torch with that mask."""
    shape, batch, seed = (5, 5, 4), 3, 9
    mask_dir = tmp_path / "mask"
    mask_dir.mkdir()
    x = np.random.default_rng(1).uniform(0.5, 1.5, (batch, *shape)).astype(np.float32)
    alone = model_json(shape, [layer("Dropout", "drop", "input", rate=rate)])
    (mask_dir / "model.json").write_text(json.dumps(alone))
    save(mask_dir / "input.npy", x)
    save(mask_dir / "dout.npy", np.ones_like(x))
    run_probe(probe, "grad", mask_dir / "model.json", mask_dir, 1, seed)
    out, dinput = np.load(mask_dir / "out.npy"), np.load(mask_dir / "dinput.npy")
    mask = (out != 0).astype(np.float32)
    np.testing.assert_allclose(out, x * mask / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(dinput, mask / (1 - rate), rtol=1e-6)
    assert abs(mask.mean() - (1 - rate)) < 0.15, mask.mean()

    layers = [layer("Dropout", "drop", "input", rate=rate),
              conv("conv", "drop", filters=3, kernel_size=3, padding="same"),
              layer("Flatten", "flat", "conv"), layer("Dense", "op", "flat", units=4)]
    spec = model_json(shape, layers)
    params, x2, dout = make_params(spec, shape, batch, 0, {"drop": mask})
    got = probe_grads(probe, tmp_path, spec, params, x2, dout, True, seed)
    ref = torch_grads(spec, params, x2, dout, True, {"drop": mask})
    errors = {"out": rel_err(got[0], ref[0]), "dinput": rel_err(got[1], ref[1])}
    errors.update({f"d {k}": rel_err(got[2][k], v) for k, v in ref[2].items()})
    print(f"dropout rate {rate}: max rel error {max(errors.values()):.2e}")
    assert max(errors.values()) <= TOL, errors


# ---- a small CNN trained 50 steps by both ------------------------------------------------------

STEPS, BATCH, SAMPLES, CLASSES, LR, MOMENTUM = 50, 16, 128, 10, 0.05, 0.9


def cnn_layers(batchnorm):
    first = [conv("conv1", filters=8, kernel_size=3, padding="same", activation="relu")]
    if batchnorm:
        first = [conv("conv1", filters=8, kernel_size=3, padding="same"),
                 layer("BatchNormalization", "bn", "conv1"),
                 layer("Activation", "relu1", "bn", activation="relu")]
    return first + [
        layer("MaxPooling2D", "pool", first[-1]["name"], pool_size=2),
        conv("conv2", "pool", filters=16, kernel_size=3, activation="relu"),
        layer("GlobalAveragePooling2D", "gap", "conv2"),
        layer("Dense", "dense", "gap", units=CLASSES, activation="softmax")]


class SmallCNN(torch.nn.Module):
    """The same network in PyTorch's own layers (NCHW), weights copied from the Keras layouts."""

    def __init__(self, params, batchnorm):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8, eps=1e-3, momentum=0.01) if batchnorm else None
        self.conv2 = torch.nn.Conv2d(8, 16, 3)
        self.dense = torch.nn.Linear(16, CLASSES)
        with torch.no_grad():
            for conv_ in ("conv1", "conv2"):
                getattr(self, conv_).weight.copy_(
                    to_torch(params[f"{conv_}__kernel"]).permute(3, 2, 0, 1))
                getattr(self, conv_).bias.copy_(to_torch(params[f"{conv_}__bias"]))
            self.dense.weight.copy_(to_torch(params["dense__kernel"]).T)
            self.dense.bias.copy_(to_torch(params["dense__bias"]))
            if batchnorm:
                self.bn.weight.copy_(to_torch(params["bn__gamma"]))
                self.bn.bias.copy_(to_torch(params["bn__beta"]))

    def forward(self, x):  # x: NHWC
        y = self.conv1(nchw(x))
        y = F.relu(self.bn(y) if self.bn is not None else y)
        y = F.relu(self.conv2(F.max_pool2d(y, 2)))
        return self.dense(y.mean(dim=(2, 3)))  # logits; the loss applies the softmax


def training_data(seed):
    """Images of a class colour and texture plus noise (so the loss really falls; the global
    average pooling sees colours better than layouts), and a shuffled batch order per epoch."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(0, 1, (CLASSES, 1, 1, 3)) + 0.5 * rng.normal(0, 1, (CLASSES, 16, 16, 3))
    y = rng.integers(0, CLASSES, SAMPLES)
    x = (0.7 * templates[y] + rng.normal(0, 1, (SAMPLES, 16, 16, 3))).astype(np.float32)
    per_epoch = SAMPLES // BATCH
    epochs = -(-STEPS // per_epoch)
    order = np.concatenate([rng.permutation(SAMPLES) for _ in range(epochs)])
    return x, y, order[:STEPS * BATCH].reshape(STEPS, BATCH)


def torch_losses(params, x, y, order, batchnorm):
    model = SmallCNN(params, batchnorm).double()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)  # dampening 0
    tx, ty = to_torch(x), torch.tensor(y.tolist(), dtype=torch.int64)
    losses = []
    for step in order:
        idx = torch.tensor(step.tolist(), dtype=torch.int64)
        opt.zero_grad()
        loss = F.cross_entropy(model(tx[idx]), ty[idx])
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return np.array(losses), model


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
def test_training_loss_curve_matches_torch(probe, tmp_path, batchnorm):
    """Keras's momentum v = m v - lr g, p += v equals torch's b = m b + g, p -= lr b with
    dampening 0 (v = -lr b at every step, the first included); the loss is the one before each
    update in both."""
    layers = cnn_layers(batchnorm)
    spec = model_json((16, 16, 3), layers)
    rng = np.random.default_rng(3)
    ref = Reference({}, rng)
    with torch.no_grad():
        ref.run(spec, to_torch(np.zeros((1, 16, 16, 3))))
    params = ref.params
    for name in params:  # Keras-like initial scales: fan-in scaled kernels, zero biases
        if name.endswith("kernel"):
            fan_in = int(np.prod(params[name].shape[:-1]))
            params[name] = (rng.normal(0, 1, params[name].shape) *
                            math.sqrt(2.0 / fan_in)).astype(np.float32)
        elif name.endswith("bias") or name.endswith("beta") or name.endswith("mean"):
            params[name] = np.zeros_like(params[name])
        else:
            params[name] = np.ones_like(params[name])
    x, y, order = training_data(4)

    (tmp_path / "model.json").write_text(json.dumps(spec))
    (tmp_path / "config.json").write_text(json.dumps({"lr": LR, "momentum": MOMENTUM}))
    for name, value in params.items():
        save(tmp_path / f"{name}.npy", value)
    save(tmp_path / "x.npy", x)
    save(tmp_path / "y.npy", y)
    save(tmp_path / "order.npy", order)
    run_probe(probe, "train", tmp_path / "model.json", tmp_path, tmp_path / "config.json")
    ours = np.load(tmp_path / "losses.npy").astype(np.float64)

    ref_losses, model = torch_losses(params, x, y, order, batchnorm)
    diff = np.abs(ours - ref_losses)
    print(f"loss {ref_losses[0]:.4f} -> {ref_losses[-1]:.4f} over {STEPS} steps; "
          f"max |convnet - torch| {diff.max():.2e} (step {diff.argmax()})")
    assert ref_losses[-5:].mean() < 0.6 * ref_losses[0], "the run should learn something"
    assert diff.max() <= 1e-3, f"step {diff.argmax()}: {ours[diff.argmax()]} vs " \
                               f"{ref_losses[diff.argmax()]}"
    final = np.load(tmp_path / "final_conv1__kernel.npy")
    torch_final = to_numpy(model.conv1.weight).transpose(2, 3, 1, 0)
    print(f"final conv1 kernel max rel diff {rel_err(final, torch_final):.2e}")
    assert rel_err(final, torch_final) <= 1e-3
    if batchnorm:  # torch's momentum 0.01 is Keras's 0.99 for the mean (torch's variance is
        # unbiased, Keras's biased)
        moving_mean = np.load(tmp_path / "final_bn__moving_mean.npy")
        print(f"moving mean max rel diff {rel_err(moving_mean, to_numpy(model.bn.running_mean)):.2e}")
        assert rel_err(moving_mean, to_numpy(model.bn.running_mean)) <= 1e-3
