"""Gives a random-weight Keras model (weights=None) realistic activations.

Why: with Keras' default initializers and identity BatchNormalization statistics, activations of
deep models shrink layer after layer (a random MobileNetV2 ends with features near 1e-11 and a
softmax that is exactly 1/1000 everywhere). Then a "max |difference| <= 1e-4" check between two
engines proves nothing, and tiny activations can turn into subnormal floats that slow one engine
down and not the other. So before the weights are saved, one forward pass in eager mode rescales
every Conv2D / DepthwiseConv2D / Dense kernel so that its pre-activation output has unit spread
(the logits a chosen spread), and sets each BatchNormalization's moving statistics to those of its
real input, with random gamma and beta. The result is a model whose layers all carry signal, whose
softmax is far from uniform, and which is otherwise an ordinary set of weights."""
import contextlib

import numpy as np

LOGIT_STD = 3.0  # softmax peaked enough for the check to matter, not saturated


def _rescale_call(orig, rng):
    def call(self, inputs, *args, **kwargs):
        activation = getattr(self, "activation", None)
        linear = __import__("keras").activations.linear
        if activation is not None:
            self.activation = linear
        pre = np.asarray(orig(self, inputs, *args, **kwargs))
        last = self.name == "predictions"
        target = LOGIT_STD if last else 1.0
        scale = target / max(float(pre.std()), 1e-30)
        kernel = self.depthwise_kernel if hasattr(self, "depthwise_kernel") else self.kernel
        kernel.assign(np.asarray(kernel) * scale)
        if getattr(self, "use_bias", False):
            bias = np.asarray(self.bias)
            bias = rng.uniform(-0.1, 0.1, bias.shape).astype(np.float32) * target
            self.bias.assign(bias)
        if activation is not None:
            self.activation = activation
        return orig(self, inputs, *args, **kwargs)
    return call


def _calibrate_bn_call(orig, rng):
    def call(self, inputs, *args, **kwargs):
        x = np.asarray(inputs)
        axis = self.axis if self.axis >= 0 else x.ndim + self.axis
        reduce = tuple(i for i in range(x.ndim) if i != axis)
        self.moving_mean.assign(x.mean(axis=reduce))
        self.moving_variance.assign(x.var(axis=reduce) + 1e-3)
        shape = self.moving_mean.shape
        if self.gamma is not None:
            self.gamma.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        if self.beta is not None:
            self.beta.assign(rng.uniform(-0.3, 0.5, shape).astype(np.float32))
        kwargs["training"] = False
        return orig(self, inputs, *args, **kwargs)
    return call


@contextlib.contextmanager
def _patched(cls, make_call):
    had_own = "call" in cls.__dict__
    orig_own = cls.__dict__.get("call")
    cls.call = make_call(cls.call)
    try:
        yield
    finally:
        if had_own:
            cls.call = orig_own
        else:
            del cls.call


def calibrate(model, x, seed=0):
    """One eager forward of x through model, adjusting weights layer by layer as it goes."""
    import keras
    rng = np.random.default_rng(seed)
    with contextlib.ExitStack() as stack:
        for cls in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense):
            stack.enter_context(_patched(cls, lambda orig: _rescale_call(orig, rng)))
        stack.enter_context(_patched(keras.layers.BatchNormalization,
                                     lambda orig: _calibrate_bn_call(orig, rng)))
        model(x, training=False)
