#!/usr/bin/env python3
"""Runs the ONNX project's conformance tests through `convnet run` and prints, per operator,
how many tests passed, failed (wrong values, crash, timeout) or were refused (a clean one-line
error: an unsupported operator or attribute).

A test is selected when every input is float32, except int64 inputs that only define shapes
(Reshape's shape, Resize's sizes, Pad's pads and axes); the data folder holds the tests of the
operators issue 3 lists, their `_expanded` variants (the operator written as its ONNX function
body) and a few PyTorch modules. Every input is fed to
`convnet run` as it is written, as a .npy of its own dtype: weights, bounds and shapes arriving as
graph inputs are not baked into the model. Tests are counted under each listed operator they
contain (expanded tests under the operator they expand). The light/ models run with the tolerances in light/real-data-json.

usage: onnx_conformance.py [--convnet PATH] [--data DIR] [--light] [--only SUBSTR] [-v]
       [--json OUT]
"""
import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

# The operators issue 3 lists.
LISTED = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "Gemm", "MatMul", "Add", "Sub", "Mul", "Sum", "Max", "Concat",
    "Flatten", "Reshape", "Transpose", "Identity", "Constant", "Relu", "LeakyRelu", "PRelu",
    "Elu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softmax", "LogSoftmax",
    "Dropout", "Pad", "Resize", "Upsample", "LRN",
}
# Constant subgraph operators the importer folds; they do not count as the tested operator.
FOLDED = {"Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape",
          "Slice"}
SUITES = ["node", "pytorch-converted", "pytorch-operator", "simple"]
FLOAT = onnx.TensorProto.FLOAT
RTOL, ATOL = 1e-3, 1e-5


def default_data():
    here = pathlib.Path(__file__).resolve().parent.parent
    return os.environ.get("CN_SHARED_DATA", str(here.parent / "shared" / "data"))


def default_convnet():
    build = os.environ.get("CN_BUILD_DIR", str(pathlib.Path(__file__).resolve().parent.parent / "build"))
    return str(pathlib.Path(build) / "convnet")


def model_ops(model):
    return {n.op_type for n in model.graph.node}


# Inputs that define shapes, by operator and position: an integer graph input may feed only these.
SHAPE_SLOTS = {"Reshape": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "Pad": {1, 2, 3}}


def shape_only(model, name):
    """1 when every use of tensor `name` is a shape-defining input."""
    uses = [(n.op_type, k) for n in model.graph.node for k, i in enumerate(n.input) if i == name]
    return bool(uses) and all(k in SHAPE_SLOTS.get(op, ()) for op, k in uses)


def float_inputs(model):
    """The graph inputs, and whether each is float32 or an int64 that only defines a shape."""
    inits = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    ok = all(i.type.tensor_type.elem_type == FLOAT or
             (i.type.tensor_type.elem_type == onnx.TensorProto.INT64 and shape_only(model, i.name))
             for i in ins)
    return ins, ok


def read_pb(path):
    t = onnx.TensorProto()
    t.ParseFromString(pathlib.Path(path).read_bytes())
    return numpy_helper.to_array(t)


def run_convnet(convnet, model_path, inputs, n_out, tmp, timeout=600):
    """Returns (status, message, outputs)."""
    args = [convnet, "run", "-m", str(model_path), "--threads", "2"]
    for k, x in enumerate(inputs):
        p = os.path.join(tmp, f"in{k}.npy")
        np.save(p, np.ascontiguousarray(x))
        args += ["--input", p]
    outs = [os.path.join(tmp, f"out{k}.npy") for k in range(n_out)]
    for p in outs:
        args += ["--output", p]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "failed", "timeout", None
    msg = (r.stderr.strip().splitlines() or [""])[-1]
    if r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1:
        return "refused", msg, None
    if r.returncode != 0:
        return "failed", f"exit {r.returncode}: {msg}", None
    return "ok", "", [np.load(p) for p in outs]


def compare(got, want, rtol, atol):
    for g, w in zip(got, want):
        # `convnet run` writes every output as float32: an integer or bool output (MaxPool's
        # Indices, Dropout's mask) must hold exactly the expected values.
        exact = w.dtype != np.float32
        if g.dtype != np.float32 or not (w.dtype == np.float32 or w.dtype == np.bool_ or
                                         np.issubdtype(w.dtype, np.integer)):
            return f"dtype {g.dtype} for {w.dtype}"
        w = np.asarray(w, dtype=np.float32)
        # A graph that works across ONNX's first axis runs as one engine sample: `convnet run`
        # writes its outputs with that batch of 1 in front.
        if g.shape == (1,) + w.shape:
            g = g[0]
        # The engine has no 0-D tensors: a scalar result comes back as (1, 1).
        if w.ndim == 0 and g.size == 1:
            g = g.reshape(())
        if g.shape != w.shape:
            return f"shape {g.shape} != {w.shape}"
        if exact and not np.array_equal(g, w):
            return f"{np.count_nonzero(g != w)} integer value(s) differ"
        if not np.allclose(g, w, rtol=rtol, atol=atol, equal_nan=True):
            return f"max abs diff {np.max(np.abs(g - w)):.3g}"
    return ""


def run_test(convnet, test_dir, rtol=RTOL, atol=ATOL):
    model_path = test_dir / "model.onnx"
    model = onnx.load(str(model_path), load_external_data=False)
    data = sorted(test_dir.glob("test_data_set_*"))
    if not data:
        return "failed", "no test data"
    for ds in data:
        ins = [read_pb(p) for p in sorted(ds.glob("input_*.pb"), key=lambda p: int(p.stem[6:]))]
        outs = [read_pb(p) for p in sorted(ds.glob("output_*.pb"), key=lambda p: int(p.stem[7:]))]
        with tempfile.TemporaryDirectory() as tmp:
            status, msg, got = run_convnet(convnet, model_path, ins, len(outs), tmp)
        if status != "ok":
            return status, msg
        diff = compare(got, outs, rtol, atol)
        if diff:
            return "failed", diff
    return "passed", ""


def tested_ops(test_name, ops):
    """The operators a test counts under: an `_expanded` test (the operator written out as its
    ONNX function body: Less/Where, ReduceMax/Exp/ReduceSum/Div, CastLike ...) under the listed
    operator its name gives, marked "(expanded)"; any other under the listed operators it
    contains, else under all of its operators."""
    if "_expanded" in test_name:
        for op in sorted(LISTED, key=len, reverse=True):
            if test_name.startswith(f"test_{op.lower()}_"):
                return [f"{op} (expanded)"]
    return sorted((ops & LISTED) - (FOLDED - {"Constant"}) or ops)


def select(data_dir, only):
    """Every test whose inputs are float32 (or int64 shapes), whatever operators it holds: a test
    with an operator convnet lacks counts as refused, as a user would meet it."""
    for suite in SUITES:
        root = pathlib.Path(data_dir) / "onnx" / suite
        if not root.is_dir():
            continue
        for test_dir in sorted(root.iterdir()):
            if only and only not in test_dir.name:
                continue
            model = onnx.load(str(test_dir / "model.onnx"), load_external_data=False)
            _, all_float = float_inputs(model)
            if all_float:
                yield suite, test_dir, tested_ops(test_dir.name, model_ops(model))


def light_tests(data_dir, only):
    root = pathlib.Path(data_dir) / "onnx" / "light"
    for model_path in sorted(root.glob("light_*.onnx")):
        name = model_path.stem[len("light_"):]
        if only and only not in name:
            continue
        tol = json.loads((root / "real-data-json" / f"test_{name}.data.json").read_text())
        yield name, model_path, tol


def run_light(convnet, model_path, tol):
    model = onnx.load(str(model_path), load_external_data=False)
    ins, _ = float_inputs(model)
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in ins[0].type.tensor_type.shape.dim]
    n = int(np.prod(shape))
    x = (np.arange(n).reshape(shape) / n).astype(np.float32)
    want = read_pb(str(model_path).replace(".onnx", "_output_0.pb"))
    with tempfile.TemporaryDirectory() as tmp:
        status, msg, got = run_convnet(convnet, model_path, [x], 1, tmp)
    if status != "ok":
        return status, msg
    diff = compare(got, [want], tol.get("rtol", RTOL), tol.get("atol", ATOL))
    return ("failed", diff) if diff else ("passed", "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--convnet", default=default_convnet())
    ap.add_argument("--data", default=default_data())
    ap.add_argument("--light", action="store_true", help="also run the nine light/ models")
    ap.add_argument("--light-only", action="store_true", help="only the light/ models")
    ap.add_argument("--only", help="only tests whose name contains this")
    ap.add_argument("--json", help="write every result to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    table = collections.defaultdict(collections.Counter)
    results = []
    for suite, test_dir, ops in [] if args.light_only else select(args.data, args.only):
        status, msg = run_test(args.convnet, test_dir)
        results.append({"suite": suite, "test": test_dir.name, "ops": ops, "status": status,
                        "message": msg})
        for op in ops:
            table[op][status] += 1
        if args.verbose or status == "failed":
            print(f"{status:8} {suite}/{test_dir.name}: {msg}", file=sys.stderr)
    if args.light or args.light_only:
        for name, model_path, tol in light_tests(args.data, args.only):
            status, msg = run_light(args.convnet, model_path, tol)
            results.append({"suite": "light", "test": name, "ops": ["(model)"], "status": status,
                            "message": msg})
            table[f"light/{name}"][status] += 1
            print(f"{status:8} light/{name}: {msg}", file=sys.stderr)

    print(f"{'operator':24} {'passed':>6} {'failed':>6} {'refused':>7}")
    for op in sorted(table):
        c = table[op]
        print(f"{op:24} {c['passed']:6} {c['failed']:6} {c['refused']:7}")
    total = collections.Counter(r["status"] for r in results)
    print(f"{'tests':24} {total['passed']:6} {total['failed']:6} {total['refused']:7}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 1 if total["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
