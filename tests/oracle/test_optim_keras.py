"""Losses and optimizers against Keras 3 (keras.losses, keras.optimizers) and PyTorch
(torch.nn.functional, torch.optim): convnet's side comes from the probe tests/probes/probe_optim.c.

Losses are compared in float64 on the reference side (convnet computes them in double);
optimizer runs in float32 on both sides, a few steps on the same gradients."""
import json
import subprocess

import numpy as np
import pytest

from conftest import BUILD

RTOL = 1e-6


@pytest.fixture(scope="module")
def probe():
    path = BUILD / "probe_optim"
    if not path.exists():
        pytest.fail(f"{path} not built: run cmake --build {BUILD}")
    return str(path)


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    return keras


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


def run_probe(probe, *args):
    proc = subprocess.run([probe, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def save(tmp_path, name, array):
    path = tmp_path / name
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))
    return path


# ---- losses ------------------------------------------------------------------------------------


def loss_inputs(kind, rng, batch=6, n=5):
    logits = rng.uniform(-4, 4, (batch, n)).astype(np.float32)
    logits[0] = [80, -80, 0, 80, -80][:n]  # large magnitudes must stay finite and exact
    logits[1, 0] = -80
    if kind == "categorical":
        target = rng.uniform(0, 1, (batch, n))
        target /= target.sum(axis=1, keepdims=True)
    elif kind == "sparse":
        target = rng.integers(0, n, batch)
    elif kind == "binary":
        target = rng.uniform(0, 1, (batch, n))
        target[0] = [1, 1, 0, 0, 1][:n]
    else:
        target = rng.uniform(-2, 2, (batch, n))
    return logits, target.astype(np.float32)


def probe_loss(probe, tmp_path, kind, logits, target, weights):
    wpath = save(tmp_path, "w.npy", weights) if weights is not None else "-"
    out = run_probe(probe, "loss", kind, save(tmp_path, "p.npy", logits),
                    save(tmp_path, "t.npy", target), wpath, tmp_path / "g.npy")
    return float(out), np.load(tmp_path / "g.npy")


def keras_loss(keras, tf, kind, logits, target, weights):
    cls = {
        "categorical": lambda: keras.losses.CategoricalCrossentropy(from_logits=True, dtype="float64"),
        "sparse": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float64"),
        "binary": lambda: keras.losses.BinaryCrossentropy(from_logits=True, dtype="float64"),
        "mse": lambda: keras.losses.MeanSquaredError(dtype="float64"),
    }[kind]()
    x = tf.Variable(logits.astype(np.float64))
    y = target.astype(np.int64) if kind == "sparse" else target.astype(np.float64)
    with tf.GradientTape() as tape:
        loss = cls(y, x, sample_weight=None if weights is None else weights.astype(np.float64))
    return float(loss), tape.gradient(loss, x).numpy()


def torch_loss(kind, logits, target, weights):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    # Debian's torch is built against another NumPy: cross the border as Python lists.
    x = torch.tensor(logits.tolist(), dtype=torch.float64, requires_grad=True)
    if kind == "sparse":
        labels = torch.tensor(target.astype(int).tolist(), dtype=torch.int64)
        per_sample = F.cross_entropy(x, labels, reduction="none")
    else:
        y = torch.tensor(target.tolist(), dtype=torch.float64)
        per_sample = {
            "categorical": lambda: F.cross_entropy(x, y, reduction="none"),
            "binary": lambda: F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(-1),
            "mse": lambda: F.mse_loss(x, y, reduction="none").mean(-1),
        }[kind]()
    w = torch.ones(len(logits), dtype=torch.float64) if weights is None else torch.tensor(
        weights.tolist(), dtype=torch.float64)
    loss = (per_sample * w).sum() / len(logits)  # Keras's sum_over_batch_size
    loss.backward()
    return float(loss), np.array(x.grad.tolist())


@pytest.mark.parametrize("kind", ["categorical", "sparse", "binary", "mse"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_keras_and_torch(probe, keras, tf, tmp_path, kind, weighted):
    rng = np.random.default_rng(7)
    logits, target = loss_inputs(kind, rng)
    weights = rng.uniform(0, 2, len(logits)).astype(np.float32) if weighted else None
    ours, grad = probe_loss(probe, tmp_path, kind, logits, target, weights)
    for name, (ref, ref_grad) in {
        "keras": keras_loss(keras, tf, kind, logits, target, weights),
        "torch": torch_loss(kind, logits, target, weights),
    }.items():
        print(f"{kind} vs {name}: loss rel diff {abs(ours - ref) / abs(ref):.1e}, "
              f"grad max abs diff {np.max(np.abs(grad - ref_grad)):.1e}")
        assert ours == pytest.approx(ref, rel=RTOL), name
        np.testing.assert_allclose(grad, ref_grad, rtol=RTOL, atol=1e-9, err_msg=name)


# ---- optimizers on given gradients -------------------------------------------------------------

SHAPES = [(7, 3), (3,)]  # a Dense kernel and bias: two variables for Keras, one buffer for us
STEPS = 8

# (probe config, Keras optimizer factory)
CASES = {
    "sgd": ({"kind": "sgd", "lr": 0.05}, lambda k: k.optimizers.SGD(0.05)),
    "sgd_momentum": ({"kind": "sgd", "lr": 0.05, "momentum": 0.9},
                     lambda k: k.optimizers.SGD(0.05, momentum=0.9)),
    "sgd_nesterov": ({"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
                     lambda k: k.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ({"kind": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.1},
                         lambda k: k.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.1)),
    "sgd_clip_value": ({"kind": "sgd", "lr": 0.05, "momentum": 0.9, "clip_value": 0.3},
                       lambda k: k.optimizers.SGD(0.05, momentum=0.9, clipvalue=0.3)),
    "adam": ({"kind": "adam"}, lambda k: k.optimizers.Adam()),
    "adam_custom": ({"kind": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6},
                    lambda k: k.optimizers.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)),
    "adam_clip_norm": ({"kind": "adam", "lr": 0.01, "clip_norm": 1.0},
                       lambda k: k.optimizers.Adam(0.01, global_clipnorm=1.0)),
    "adamw": ({"kind": "adam", "lr": 0.01, "weight_decay": 0.05},
              lambda k: k.optimizers.AdamW(0.01, weight_decay=0.05)),
    "rmsprop": ({"kind": "rmsprop"}, lambda k: k.optimizers.RMSprop()),
    "rmsprop_momentum": ({"kind": "rmsprop", "lr": 0.01, "rho": 0.8, "momentum": 0.5},
                         lambda k: k.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5)),
    "sgd_step_schedule": (
        {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "step", "step_every": 3,
         "step_gamma": 0.5},
        lambda k: k.optimizers.SGD(k.optimizers.schedules.ExponentialDecay(
            0.1, decay_steps=3, decay_rate=0.5, staircase=True), momentum=0.9)),
    "adam_cosine": (
        {"kind": "adam", "lr": 0.01, "schedule": "cosine", "total_steps": 6},
        lambda k: k.optimizers.Adam(k.optimizers.schedules.CosineDecay(0.01, decay_steps=6))),
    "sgd_legacy_decay": (  # Keras 2's decay=0.2 is InverseTimeDecay(decay_steps=1) in Keras 3
        {"kind": "sgd", "lr": 0.1, "decay": 0.2},
        lambda k: k.optimizers.SGD(k.optimizers.schedules.InverseTimeDecay(
            0.1, decay_steps=1, decay_rate=0.2))),
}


def params_and_grads(seed):
    rng = np.random.default_rng(seed)
    n = sum(int(np.prod(s)) for s in SHAPES)
    params = rng.normal(0, 1, n).astype(np.float32)
    grads = rng.normal(0, 1, (STEPS, n)).astype(np.float32)
    grads[::2] *= 3  # global norm ~ 15 on even steps, so clip_norm=1 bites
    return params, grads


def split(flat):
    out, at = [], 0
    for s in SHAPES:
        size = int(np.prod(s))
        out.append(flat[at:at + size].reshape(s))
        at += size
    return out


def probe_steps(probe, tmp_path, config, params, grads):
    (tmp_path / "c.json").write_text(json.dumps(config))
    run_probe(probe, "steps", tmp_path / "c.json", save(tmp_path, "p.npy", params),
              save(tmp_path, "g.npy", grads), tmp_path / "out.npy")
    return np.load(tmp_path / "out.npy")


def keras_steps(keras, make, params, grads):
    variables = [keras.Variable(p) for p in split(params)]
    opt = make(keras)
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(x) for x in split(g)], variables)
    return np.concatenate([np.asarray(v.numpy()).ravel() for v in variables])


def report(name, ours, ref):
    rel = np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-30))
    print(f"{name}: {np.mean(ours == ref):.0%} bit-identical, max rel diff {rel:.2e}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_optimizer_matches_keras(probe, keras, tmp_path, case):
    config, make = CASES[case]
    params, grads = params_and_grads(11)
    ours = probe_steps(probe, tmp_path, config, params, grads)
    ref = keras_steps(keras, make, params, grads)
    report(case, ours, ref)
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=0)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch(probe, tmp_path, nesterov):
    torch = pytest.importorskip("torch")
    params, grads = params_and_grads(12)
    config = {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": nesterov, "l2": 0.01}
    ours = probe_steps(probe, tmp_path, config, params, grads)
    p = torch.nn.Parameter(torch.tensor(params.tolist(), dtype=torch.float32))
    opt = torch.optim.SGD([p], lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    for g in grads:
        p.grad = torch.tensor(g.tolist(), dtype=torch.float32)
        opt.step()
    ref = np.array(p.detach().tolist(), dtype=np.float32)
    report(f"torch nesterov={nesterov}", ours, ref)
    # torch keeps the velocity unscaled (p -= lr * buf) where Keras keeps -lr * buf: equal in
    # exact arithmetic, a few float32 roundings apart.
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=1e-7)


# ---- end to end: a linear classifier trained by both ------------------------------------------

FIT_CASES = {
    "sparse_adam": ("sparse", {"kind": "adam", "lr": 0.05}, lambda k: k.optimizers.Adam(0.05)),
    "categorical_sgd": ("categorical", {"kind": "sgd", "lr": 0.1, "momentum": 0.9},
                        lambda k: k.optimizers.SGD(0.1, momentum=0.9)),
    "binary_rmsprop": ("binary", {"kind": "rmsprop", "lr": 0.01},
                       lambda k: k.optimizers.RMSprop(0.01)),
    "mse_adamw_clip": ("mse", {"kind": "adam", "lr": 0.05, "weight_decay": 0.1, "clip_norm": 0.5},
                       lambda k: k.optimizers.AdamW(0.05, weight_decay=0.1, global_clipnorm=0.5)),
}


@pytest.mark.parametrize("case", sorted(FIT_CASES))
def test_linear_fit_matches_keras(probe, keras, tf, tmp_path, case):
    kind, config, make = FIT_CASES[case]
    rng = np.random.default_rng(5)
    batch, d, c, steps = 16, 6, 4, 15
    x = rng.normal(0, 1, (batch, d)).astype(np.float32)
    _, y = loss_inputs(kind, rng, batch, c)
    w0 = (rng.normal(0, 0.3, (d + 1) * c)).astype(np.float32)
    (tmp_path / "c.json").write_text(json.dumps({**config, "loss": kind, "steps": steps,
                                                 "classes": c}))
    run_probe(probe, "fit", tmp_path / "c.json", save(tmp_path, "x.npy", x),
              save(tmp_path, "y.npy", y), save(tmp_path, "w.npy", w0), tmp_path / "wo.npy",
              tmp_path / "lo.npy")
    ours, our_losses = np.load(tmp_path / "wo.npy"), np.load(tmp_path / "lo.npy")

    loss_fn = {
        "categorical": keras.losses.CategoricalCrossentropy(from_logits=True),
        "sparse": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "binary": keras.losses.BinaryCrossentropy(from_logits=True),
        "mse": keras.losses.MeanSquaredError(),
    }[kind]
    kernel = keras.Variable(w0[:d * c].reshape(d, c))
    bias = keras.Variable(w0[d * c:])
    opt, losses = make(keras), []
    target = y.astype(np.int64) if kind == "sparse" else y
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(target, tf.matmul(x, kernel.value) + bias.value)
        opt.apply(tape.gradient(loss, [kernel.value, bias.value]), [kernel, bias])
        losses.append(float(loss))
    ref = np.concatenate([kernel.numpy().ravel(), bias.numpy()])
    report(case, ours, ref)
    # Keras runs the matmuls and the loss in float32, convnet's probe in double: the two
    # trajectories agree to a few float32 roundings per step.
    np.testing.assert_allclose(our_losses, losses, rtol=1e-5)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
