"""Input gradients of the ONNX-style operators against PyTorch autograd.

Each case is a one-node ONNX graph (made with onnx.helper; constants are initializers) that convnet
imports and trains one step through the public cn_session API with the loss mean(Y^2) (MSE against
zeros) and input_grad on; d loss / d X must equal PyTorch's gradient of the same function, computed
in float64, within 1e-3 relative (|a - b| <= 1e-3 * max(1, |b|)). Parameter gradients of these ops
are checked by finite differences in tests/test_backward_onnx_ops.c."""
import ctypes

import numpy as np
import onnx
import pytest

from cn_types import SessionOptions
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:Failed to initialize NumPy")
N = 3  # batch


def to_torch(a):
    return torch.tensor(np.asarray(a, dtype=np.float64).tolist(), dtype=torch.float64)


def to_numpy(t):
    return np.array(t.detach().tolist(), dtype=np.float64)


def onnx_model(path, op, x_shape, y_shape, consts=(), attrs=None, const_first=False):
    names = [f"c{i}" for i in range(len(consts))]
    inputs = names + ["x"] if const_first else ["x"] + names
    node = helper.make_node(op, inputs, ["y"], **(attrs or {}))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(np.asarray(c, np.int64 if np.asarray(c).dtype.kind == "i"
                                             else np.float32), n)
         for n, c in zip(names, consts)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def convnet_input_grad(lib, path, x, y_numel):
    lib.cn_last_error.restype = ctypes.c_char_p
    model = ctypes.c_void_p()
    assert lib.cn_model_load(str(path).encode(), ctypes.byref(model)) == 0, \
        lib.cn_last_error().decode()
    opts = SessionOptions(loss=b"mse", optimizer=b"sgd", lr=1e-30, max_batch=N, seed=1,
                          input_grad=1)
    session = ctypes.c_void_p()
    try:
        assert lib.cn_session_new(model, ctypes.byref(opts), ctypes.byref(session)) == 0, \
            lib.cn_last_error().decode()
        xs = np.ascontiguousarray(x, np.float32)
        zeros = np.zeros(y_numel, np.float32)
        loss = ctypes.c_double()
        fp = ctypes.POINTER(ctypes.c_float)
        assert lib.cn_session_step(session, N, xs.ctypes.data_as(fp), zeros.ctypes.data_as(fp),
                                   ctypes.byref(loss)) == 0, lib.cn_last_error().decode()
        lib.cn_session_input_grad.restype = fp
        g = lib.cn_session_input_grad(session)
        return np.ctypeslib.as_array(g, shape=(x.size,)).astype(np.float64).reshape(x.shape)
    finally:
        lib.cn_session_free(session)
        lib.cn_model_free(model)


def torch_input_grad(fn, x):
    t = to_torch(x).requires_grad_(True)
    y = fn(t)
    (y * y).mean().backward()
    return to_numpy(t.grad), tuple(y.shape)


def rng_values(shape, seed, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


F = torch.nn.functional
UNARY = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp,
    "Abs": torch.abs, "Neg": torch.neg, "Softplus": F.softplus, "Erf": torch.erf,
    "Elu": F.elu, "HardSwish": F.hardswish,
    "Sqrt": torch.sqrt, "Log": torch.log, "Reciprocal": torch.reciprocal,
}
POSITIVE = {"Sqrt", "Log", "Reciprocal"}

CASES = []
for op, fn in UNARY.items():
    CASES.append(pytest.param(op, (N, 4, 5), {}, (), fn, id=f"unary-{op}"))
CASES += [
    pytest.param("LeakyRelu", (N, 6), {"alpha": 0.1}, (), lambda t: F.leaky_relu(t, 0.1),
                 id="leaky_relu"),
    pytest.param("HardSigmoid", (N, 6), {"alpha": 0.3, "beta": 0.4}, (),
                 lambda t: torch.clamp(0.3 * t + 0.4, 0, 1), id="hard_sigmoid"),
    pytest.param("Softmax", (N, 4, 5), {"axis": 1}, (), lambda t: torch.softmax(t, 1),
                 id="softmax-axis1"),
    pytest.param("LogSoftmax", (N, 4, 5), {"axis": -1}, (), lambda t: torch.log_softmax(t, -1),
                 id="log_softmax-last"),
    pytest.param("Transpose", (N, 2, 3, 4), {"perm": [0, 3, 1, 2]}, (),
                 lambda t: t.permute(0, 3, 1, 2), id="transpose"),
]
B_CHAN = rng_values((4, 1), 7)
B_ROW = rng_values((5,), 8)
CASES += [
    pytest.param("Add", (N, 4, 5), {}, (B_CHAN,), lambda t: t + to_torch(B_CHAN), id="add-bcast"),
    pytest.param("Mul", (N, 4, 5), {}, (B_ROW,), lambda t: t * to_torch(B_ROW), id="mul-bcast"),
    pytest.param("Sub", (N, 4, 5), {"first": True}, (B_ROW,), lambda t: to_torch(B_ROW) - t,
                 id="sub-const-first"),
    pytest.param("Div", (N, 4, 5), {}, (B_ROW + 2,), lambda t: t / to_torch(B_ROW + 2),
                 id="div-bcast"),
    pytest.param("Pow", (N, 4, 5), {"positive": True}, (np.float32(2.5),),
                 lambda t: torch.pow(t, 2.5), id="pow"),
    pytest.param("MatMul", (N, 6), {}, (rng_values((6, 4), 9),),
                 lambda t: t @ to_torch(rng_values((6, 4), 9)), id="matmul"),
    pytest.param("Gemm", (N, 6), {"transB": 1, "alpha": 0.5, "beta": 2.0},
                 (rng_values((4, 6), 10), rng_values((4,), 11)),
                 lambda t: 0.5 * t @ to_torch(rng_values((4, 6), 10)).T
                 + 2.0 * to_torch(rng_values((4,), 11)), id="gemm"),
    pytest.param("Pad", (N, 2, 5, 6), {"mode": "reflect"},
                 (np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),),
                 lambda t: F.pad(t, (2, 1, 1, 2), mode="reflect"), id="pad-reflect"),
    pytest.param("Pad", (N, 2, 5, 6), {"mode": "edge"},
                 (np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64),),
                 lambda t: F.pad(t, (1, 2, 2, 1), mode="replicate"), id="pad-edge"),
]


@pytest.mark.parametrize("op,shape,attrs,consts,fn", CASES)
def test_input_gradient(libconvnet, tmp_path, op, shape, attrs, consts, fn):
    attrs = dict(attrs)
    positive = attrs.pop("positive", False) or op in POSITIVE
    first = attrs.pop("first", False)
    x = rng_values(shape, 1, 0.5, 2.0) if positive else rng_values(shape, 1)
    want, y_shape = torch_input_grad(fn, x)
    path = tmp_path / f"{op}.onnx"
    onnx_model(path, op, list(shape), list(y_shape), consts, attrs, const_first=first)
    got = convnet_input_grad(libconvnet, path, x, int(np.prod(y_shape)))
    err = np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))
    assert err <= 1e-3, f"{op}: worst relative error {err:.3g}"
