"""Loss layers and reductions built with the public builder (convnet/layers.h), against PyTorch.

Each case builds, through ctypes, a net with inputs `pred` and `target` and one scalar per sample
(a loss layer, or a reduction followed by the sum of squares), trains one step with a session
that has no loss name (the model's own loss, batch mean) and input_grad on, and compares the
batch loss and d loss / d pred and d loss / d target with PyTorch autograd of the same formula in
float64: |a - b| <= 1e-3 * max(1, |b|)."""
import ctypes

import numpy as np
import pytest

from cn_types import SessionOptions

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Failed to initialize NumPy")
N = 3  # batch
EPS = 1e-7


class Sym(ctypes.Structure):
    _fields_ = [("node", ctypes.c_int), ("net", ctypes.c_uint32)]


FP = ctypes.POINTER(ctypes.c_float)


@pytest.fixture(scope="module")
def lib(libconvnet):
    L = libconvnet
    L.cn_last_error.restype = ctypes.c_char_p
    L.cn_net_input.restype = Sym
    L.cn_net_input.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                               ctypes.POINTER(ctypes.c_int64)]
    L.cn_net_loss.restype = Sym
    L.cn_net_loss.argtypes = [ctypes.c_void_p, ctypes.c_char_p, Sym, Sym, ctypes.c_char_p]
    L.cn_net_contrastive_loss.restype = Sym
    L.cn_net_contrastive_loss.argtypes = [ctypes.c_void_p, Sym, Sym, ctypes.c_float,
                                          ctypes.c_char_p]
    L.cn_net_kl_gaussian.restype = Sym
    L.cn_net_kl_gaussian.argtypes = [ctypes.c_void_p, Sym, Sym, ctypes.c_char_p]
    L.cn_net_reduce.restype = Sym
    L.cn_net_reduce.argtypes = [ctypes.c_void_p, Sym, ctypes.c_char_p,
                                ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int,
                                ctypes.c_char_p]
    L.cn_net_math.restype = Sym
    L.cn_net_math.argtypes = [ctypes.c_void_p, Sym, ctypes.c_char_p, ctypes.c_char_p]
    L.cn_net_build.argtypes = [ctypes.c_void_p, ctypes.POINTER(Sym), ctypes.c_int,
                               ctypes.POINTER(ctypes.c_void_p)]
    L.cn_session_input_grad_at.restype = FP
    L.cn_session_input_grad_at.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return L


def shape_arg(shape):
    return len(shape), (ctypes.c_int64 * len(shape))(*shape)


def build(lib, shapes, make):
    """A model of inputs with these per-sample shapes and the scalar make(net, syms) returns."""
    net = ctypes.c_void_p()
    assert lib.cn_net_new(b"case", ctypes.byref(net)) == 0
    try:
        syms = [lib.cn_net_input(net, f"in{k}".encode(), *shape_arg(s))
                for k, s in enumerate(shapes)]
        out = make(net, syms)
        model = ctypes.c_void_p()
        assert lib.cn_net_build(net, ctypes.byref(out), 1, ctypes.byref(model)) == 0, \
            lib.cn_last_error().decode()
        return model
    finally:
        lib.cn_net_free(net)


def convnet_grads(lib, model, arrays):
    """The batch loss and d loss / d input k for every input, after one step."""
    opts = SessionOptions(optimizer=b"sgd", lr=1e-30, max_batch=N, seed=1, input_grad=1)
    session = ctypes.c_void_p()
    try:
        assert lib.cn_session_new(model, ctypes.byref(opts), ctypes.byref(session)) == 0, \
            lib.cn_last_error().decode()
        xs = [np.ascontiguousarray(a, np.float32) for a in arrays]
        ptrs = (FP * len(xs))(*[x.ctypes.data_as(FP) for x in xs])
        loss = ctypes.c_double()
        assert lib.cn_session_step_inputs(session, N, ptrs, None, ctypes.byref(loss)) == 0, \
            lib.cn_last_error().decode()
        grads = []
        for k, x in enumerate(xs):
            g = lib.cn_session_input_grad_at(session, k)
            grads.append(np.ctypeslib.as_array(g, shape=(x.size,)).astype(np.float64)
                         .reshape(x.shape))
        return loss.value, grads
    finally:
        lib.cn_session_free(session)
        lib.cn_model_free(model)


def torch_grads(fn, arrays):
    ts = [torch.tensor(np.asarray(a, np.float64).tolist(), dtype=torch.float64,
                       requires_grad=True) for a in arrays]
    loss = fn(*ts).mean()
    loss.backward()
    return loss.item(), [np.array(t.grad.tolist(), dtype=np.float64) if t.grad is not None
                         else np.zeros(t.shape) for t in ts]


def close(got, want):
    return np.all(np.abs(got - want) <= 1e-3 * np.maximum(1.0, np.abs(want)))


def per_sample_mean(v):
    return v.reshape(v.shape[0], -1).mean(1)


def bce_probs(p, t):
    c = p.clamp(EPS, 1 - EPS)
    return per_sample_mean(-(t * torch.log(c) + (1 - t) * torch.log(1 - c)))


def cce_probs(p, t):
    q = (p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return per_sample_mean(-(t * torch.log(q)).sum(-1))


def sparse_probs(p, t):
    q = (p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS)
    return per_sample_mean(-torch.log(q.gather(-1, t.long())).squeeze(-1))


def sparse_logits(p, t):
    return per_sample_mean(-torch.log_softmax(p, -1).gather(-1, t.long()).squeeze(-1))


def contrastive(d, y, margin=1.0):
    return per_sample_mean((1 - y) * d ** 2 + y * torch.clamp(margin - d, min=0) ** 2)


def kl(m, lv):
    return (-0.5 * (1 + lv - m ** 2 - torch.exp(lv))).reshape(m.shape[0], -1).sum(1)


rng = np.random.default_rng(4)
SHAPE = (2, 5)
probs = rng.uniform(0.05, 0.95, (N,) + SHAPE)
targets01 = rng.uniform(0, 1, (N,) + SHAPE)
onehot_soft = rng.dirichlet(np.ones(5), (N, 2))
classes = rng.integers(0, 5, (N, 2, 1)).astype(np.float64)
values = rng.normal(0, 1, (N,) + SHAPE)
values2 = rng.normal(0, 1, (N,) + SHAPE)
labels = rng.integers(0, 2, (N,) + SHAPE).astype(np.float64)
distances = rng.uniform(0.05, 1.8, (N,) + SHAPE)

LOSSES = [
    ("mse", values, values2, lambda p, t: per_sample_mean((p - t) ** 2)),
    ("mae", values, values2, lambda p, t: per_sample_mean((p - t).abs())),
    ("binary_crossentropy", probs, targets01, bce_probs),
    ("binary_crossentropy_from_logits", values, targets01,
     lambda p, t: per_sample_mean(torch.nn.functional.binary_cross_entropy_with_logits(
         p, t, reduction="none"))),
    ("categorical_crossentropy", probs, onehot_soft, cce_probs),
    ("categorical_crossentropy_from_logits", values, onehot_soft,
     lambda p, t: per_sample_mean(-(t * torch.log_softmax(p, -1)).sum(-1))),
    ("sparse_categorical_crossentropy", probs, classes, sparse_probs),
    ("sparse_categorical_crossentropy_from_logits", values, classes, sparse_logits),
]


@pytest.mark.parametrize("name,pred,target,fn", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss(lib, name, pred, target, fn):
    model = build(lib, [SHAPE, target.shape[1:]],
                  lambda net, s: lib.cn_net_loss(net, name.encode(), s[0], s[1], b"loss"))
    loss, grads = convnet_grads(lib, model, [pred, target])
    want_loss, want = torch_grads(fn, [pred, target])
    assert abs(loss - want_loss) <= 1e-5 * max(1, abs(want_loss))
    assert close(grads[0], want[0]), np.max(np.abs(grads[0] - want[0]))
    if not name.startswith("sparse"):  # a class index has no gradient
        assert close(grads[1], want[1]), np.max(np.abs(grads[1] - want[1]))


def test_contrastive(lib):
    model = build(lib, [SHAPE, SHAPE],
                  lambda net, s: lib.cn_net_contrastive_loss(net, s[0], s[1], 1.0, b"loss"))
    loss, grads = convnet_grads(lib, model, [distances, labels])
    want_loss, want = torch_grads(contrastive, [distances, labels])
    assert abs(loss - want_loss) <= 1e-5 * max(1, abs(want_loss))
    assert close(grads[0], want[0]) and close(grads[1], want[1])


def test_kl_gaussian(lib):
    model = build(lib, [SHAPE, SHAPE],
                  lambda net, s: lib.cn_net_kl_gaussian(net, s[0], s[1], b"kl"))
    loss, grads = convnet_grads(lib, model, [values, values2])
    want_loss, want = torch_grads(kl, [values, values2])
    assert abs(loss - want_loss) <= 1e-5 * max(1, abs(want_loss))
    assert close(grads[0], want[0]) and close(grads[1], want[1])


AXES = [(1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3), (-1,)]


@pytest.mark.parametrize("how", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axes", AXES, ids=[str(a) for a in AXES])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce(lib, how, axes, keepdims):
    shape = (2, 3, 4)
    x = rng.permutation(N * 24).reshape((N,) + shape) / 10.0 - 3  # no ties

    def make(net, s):
        arr = (ctypes.c_int * len(axes))(*axes)
        r = lib.cn_net_reduce(net, s[0], how.encode(), arr, len(axes), keepdims, b"r")
        sq = lib.cn_net_math(net, r, b"square", b"sq")
        return lib.cn_net_reduce(net, sq, b"sum", None, 0, 0, b"total")

    def fn(t):
        dims = tuple(a if a > 0 else len(shape) + 1 + a for a in axes)
        r = {"sum": lambda: t.sum(dims, keepdim=bool(keepdims)),
             "mean": lambda: t.mean(dims, keepdim=bool(keepdims)),
             "max": lambda: t.amax(dims, keepdim=bool(keepdims)),
             "min": lambda: t.amin(dims, keepdim=bool(keepdims))}[how]()
        return (r ** 2).reshape(t.shape[0], -1).sum(1)

    loss, grads = convnet_grads(lib, build(lib, [shape], make), [x])
    want_loss, want = torch_grads(fn, [x])
    assert abs(loss - want_loss) <= 1e-4 * max(1, abs(want_loss))
    assert close(grads[0], want[0]), np.max(np.abs(grads[0] - want[0]))


class Conv2DOptions(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("filters", ctypes.c_int),
                ("kernel_size", ctypes.c_int * 2), ("strides", ctypes.c_int * 2),
                ("padding", ctypes.c_char_p), ("dilation_rate", ctypes.c_int * 2),
                ("groups", ctypes.c_int), ("no_bias", ctypes.c_int),
                ("activation", ctypes.c_char_p), ("kernel_initializer", ctypes.c_char_p),
                ("bias_initializer", ctypes.c_char_p)]


@pytest.mark.parametrize("how", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axes", [(1,), (3,), (1, 2), (2, 3), (-1,), (1, 2, 3)],
                         ids=lambda a: str(a))
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_onnx_export(lib, tmp_path, how, axes, keepdims):
    """A reduction after a convolution (whose output ONNX holds channels-first) exports to ONNX
    and ONNX Runtime computes what convnet does."""
    ort = pytest.importorskip("onnxruntime")
    lib.cn_net_conv2d.restype = Sym
    lib.cn_net_conv2d.argtypes = [ctypes.c_void_p, Sym, ctypes.POINTER(Conv2DOptions)]

    def make(net, s):
        o = Conv2DOptions(b"conv", 4, (3, 3), (1, 1), b"same")
        h = lib.cn_net_conv2d(net, s[0], ctypes.byref(o))
        arr = (ctypes.c_int * len(axes))(*axes)
        return lib.cn_net_reduce(net, h, how.encode(), arr, len(axes), keepdims, b"r")

    model = build(lib, [(5, 6, 3)], make)
    try:
        assert lib.cn_model_init_weights(model, ctypes.c_uint64(3)) == 0
        x = rng.normal(0, 1, (2, 5, 6, 3)).astype(np.float32)
        out_shape = [2] + [1 if (i + 1) in [a if a > 0 else 3 + 1 + a for a in axes] else d
                           for i, d in enumerate((5, 6, 4))]
        if not keepdims:
            out_shape = [d for i, d in enumerate(out_shape)
                         if i == 0 or i not in [a if a > 0 else 4 + a for a in axes]]
        got = np.zeros(out_shape, np.float32)
        lib.cn_model_forward.argtypes = [ctypes.c_void_p, ctypes.c_int, FP, FP]
        assert lib.cn_model_forward(model, 2, x.ctypes.data_as(FP), got.ctypes.data_as(FP)) == 0
        path = tmp_path / "r.onnx"
        assert lib.cn_model_save_onnx(model, str(path).encode()) == 0, lib.cn_last_error().decode()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert want.shape == got.shape
        assert np.allclose(got, want, rtol=1e-4, atol=1e-4)
    finally:
        lib.cn_model_free(model)


def test_gaussian_sample(lib):
    """z = mean + exp(log_var / 2) * eps with convnet's noise: eps is recovered from z, and
    PyTorch's gradient of sum(z^2) with that eps fixed must match convnet's."""
    lib.cn_net_gaussian_sample.restype = Sym
    lib.cn_net_gaussian_sample.argtypes = [ctypes.c_void_p, Sym, Sym, ctypes.c_uint64,
                                           ctypes.c_char_p]
    lib.cn_session_output.restype = FP
    net = ctypes.c_void_p()
    assert lib.cn_net_new(b"sample", ctypes.byref(net)) == 0
    m = lib.cn_net_input(net, b"mean", *shape_arg(SHAPE))
    lv = lib.cn_net_input(net, b"log_var", *shape_arg(SHAPE))
    z = lib.cn_net_gaussian_sample(net, m, lv, 11, b"z")
    sq = lib.cn_net_math(net, z, b"square", b"sq")
    outs = (Sym * 2)(lib.cn_net_reduce(net, sq, b"sum", None, 0, 0, b"loss"), z)
    model = ctypes.c_void_p()
    assert lib.cn_net_build(net, outs, 2, ctypes.byref(model)) == 0, lib.cn_last_error().decode()
    lib.cn_net_free(net)
    opts = SessionOptions(optimizer=b"sgd", lr=1e-30, max_batch=N, seed=1, input_grad=1)
    session = ctypes.c_void_p()
    try:
        assert lib.cn_session_new(model, ctypes.byref(opts), ctypes.byref(session)) == 0
        mean = np.ascontiguousarray(values, np.float32)
        log_var = np.ascontiguousarray(values2 * 0.5, np.float32)
        ptrs = (FP * 2)(mean.ctypes.data_as(FP), log_var.ctypes.data_as(FP))
        assert lib.cn_session_step_inputs(session, N, ptrs, None, None) == 0
        zs = np.ctypeslib.as_array(lib.cn_session_output(session, 1), shape=(mean.size,))
        eps = (zs.reshape(mean.shape).astype(np.float64) - mean) / np.exp(log_var / 2.0)
        assert abs(eps.mean()) < 0.5 and 0.5 < eps.std() < 1.5  # standard normal draws
        got = [np.ctypeslib.as_array(lib.cn_session_input_grad_at(session, k),
                                     shape=(mean.size,)).reshape(mean.shape).astype(np.float64)
               for k in range(2)]
    finally:
        lib.cn_session_free(session)
        lib.cn_model_free(model)
    e = torch.tensor(eps.tolist(), dtype=torch.float64)
    _, want = torch_grads(lambda a, b: ((a + torch.exp(b / 2) * e) ** 2).reshape(N, -1).sum(1),
                          [mean, log_var])
    assert close(got[0], want[0]) and close(got[1], want[1])


def test_triplet_from_math(lib):
    """The triplet loss of examples/siamese.c, built from math layers: relu(d(a, p) - d(a, n) +
    margin) with d(x, y) = sqrt(sum((x - y)^2) + 1e-6), against autograd. The batch holds
    triplets with the hinge open and closed (none at its kink)."""
    lib.cn_net_subtract.restype = Sym
    lib.cn_net_subtract.argtypes = [ctypes.c_void_p, Sym, Sym, ctypes.c_char_p]
    lib.cn_net_scale.restype = Sym
    lib.cn_net_scale.argtypes = [ctypes.c_void_p, Sym, ctypes.c_float, ctypes.c_float,
                                 ctypes.c_char_p]
    lib.cn_net_weighted_sum.restype = Sym
    lib.cn_net_weighted_sum.argtypes = [ctypes.c_void_p, ctypes.POINTER(Sym),
                                        ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                        ctypes.c_char_p]
    margin, eps = 0.5, 1e-6

    def distance(net, x, y, name):
        sq = lib.cn_net_math(net, lib.cn_net_subtract(net, x, y, None), b"square", None)
        total = lib.cn_net_reduce(net, sq, b"sum", None, 0, 0, None)
        return lib.cn_net_math(net, lib.cn_net_scale(net, total, 1.0, eps, None), b"sqrt", name)

    def make(net, s):
        d = (Sym * 2)(distance(net, s[0], s[1], b"d_positive"),
                      distance(net, s[0], s[2], b"d_negative"))
        diff = lib.cn_net_weighted_sum(net, d, (ctypes.c_float * 2)(1, -1), 2, None)
        return lib.cn_net_math(net, lib.cn_net_scale(net, diff, 1.0, margin, None), b"relu",
                               b"triplet_loss")

    def fn(a, p, n):
        def dist(x, y):
            return torch.sqrt(((x - y) ** 2).sum(1) + eps)
        return torch.relu(dist(a, p) - dist(a, n) + margin)

    shape = (4,)
    a = rng.normal(0, 1, (N,) + shape)
    p = a + rng.normal(0, 0.3, (N,) + shape)
    n = a + rng.normal(0, 0.1, (N,) + shape)  # near: the hinge is open
    n[0] = a[0] + 3.0  # far: the hinge is closed for this triplet
    want_loss, want = torch_grads(fn, [a, p, n])
    per = fn(*[torch.tensor(x.tolist(), dtype=torch.float64) for x in (a, p, n)])
    assert per[0].item() == 0 and (per[1:] > 0.05).all()  # both sides of the hinge, off its kink
    loss, grads = convnet_grads(lib, build(lib, [shape] * 3, make), [a, p, n])
    assert abs(loss - want_loss) <= 1e-5 * max(1, abs(want_loss))
    for got, w in zip(grads, want):
        assert close(got, w), np.max(np.abs(got - w))
