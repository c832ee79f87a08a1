"""Shared layers in training, against PyTorch autograd: the gradient of a layer called twice is
the sum over its calls, and the optimizer updates its weights once per step.

convnet's side is the probe of test_grad_torch.py (tests/probes/probe_grad.c) on hand-written
Keras model configs whose shared layers have two inbound nodes; the second call is the graph node
"<layer>/call1", whose weights are the layer's (the probe reads and writes them once, as
<layer>__<param>.npy). The PyTorch side runs the same layer list with the same torch leaf tensor
for every call of a layer, so autograd sums the calls' gradients by itself.

The trainer takes one input, so the siamese pair is made inside the graph: the shared layer sees
the input and a transformed copy (tanh; for convolutions also a 2x2 average pool), the two
embeddings are subtracted (and added), then a head follows. Bar: 1e-3 relative, as for every
operator in test_grad_torch.py."""
import json

import numpy as np
import pytest

import test_grad_torch as tg

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Failed to initialize NumPy")

probe = tg.probe  # the fixture


def call_layer(cls, name, calls, **config):
    """A Keras 2 layer entry called once per element of calls; each call lists (layer, call)
    refs or layer names (call 0)."""
    nodes = []
    for inputs in calls:
        inputs = [inputs] if isinstance(inputs, (str, tuple)) else inputs
        refs = [(i, 0) if isinstance(i, str) else i for i in inputs]
        nodes.append([[layer, call, 0, {}] for layer, call in refs])
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": nodes}


class SharedReference(tg.Reference):
    """Reference.run for layers with several calls: values keyed by (layer, call). A layer's
    parameters are looked up by its name, so every call uses the same leaf tensors."""

    def run(self, spec, x):
        values = {("input", 0): x}
        last = None
        for entry in spec["config"]["layers"][1:]:
            for call, node in enumerate(entry["inbound_nodes"]):
                ins = [values[(ref[0], ref[1])] for ref in node]
                values[(entry["name"], call)] = getattr(self, entry["class_name"])(
                    entry["config"], *ins)
            last = (entry["name"], 0)
        return values[last]


def dense_siamese(head_activation=None):
    return tg.model_json((6,), [
        call_layer("Activation", "t", ["input"], activation="tanh"),
        call_layer("Dense", "embed", ["input", "t"], units=5, activation="tanh"),
        call_layer("Subtract", "diff", [[("embed", 0), ("embed", 1)]]),
        call_layer("Dense", "head", ["diff"], units=3, activation=head_activation),
    ])


def conv_siamese():
    """Two shared convolutions: conv on the input and on tanh(input), conv2 (1x1) on the pooled
    sum and on the pooled second call of conv."""
    return tg.model_json((6, 6, 2), [
        call_layer("Activation", "t", ["input"], activation="tanh"),
        call_layer("Conv2D", "conv", ["input", "t"], filters=3, kernel_size=3, padding="same",
                   activation="tanh"),
        call_layer("Add", "sum", [[("conv", 0), ("conv", 1)]]),
        call_layer("AveragePooling2D", "pool", ["sum"], pool_size=2),
        call_layer("AveragePooling2D", "pool2", [("conv", 1)], pool_size=2),
        call_layer("Conv2D", "conv2", ["pool", "pool2"], filters=3, kernel_size=1),
        call_layer("Subtract", "diff", [[("conv2", 0), ("conv2", 1)]]),
        call_layer("Flatten", "flat", ["diff"]),
    ])


def make_params(spec, input_shape, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (batch, *input_shape)).astype(np.float32)
    ref = SharedReference({}, rng)
    with torch.no_grad():
        out = ref.run(spec, tg.to_torch(x))
    dout = rng.normal(0, 1, tuple(out.shape)).astype(np.float32)
    return ref.params, x, dout


@pytest.mark.parametrize("case", ["dense", "conv"])
def test_shared_gradients_are_summed(probe, tmp_path, case):
    spec, shape = {"dense": (dense_siamese(), (6,)), "conv": (conv_siamese(), (6, 6, 2))}[case]
    params, x, dout = make_params(spec, shape, 3, 0)
    out, dinput, grads, _ = tg.probe_grads(probe, tmp_path, spec, params, x, dout, True)
    ref = SharedReference(params)
    tx = tg.to_torch(x, grad=True)
    ref_out = ref.run(spec, tx)
    (ref_out * tg.to_torch(dout)).sum().backward()
    errors = {"out": tg.rel_err(out, tg.to_numpy(ref_out)),
              "dinput": tg.rel_err(dinput, tg.to_numpy(tx.grad))}
    for name, tensor in ref.tensors.items():
        assert grads[name] is not None, f"no gradient for {name}"
        errors[f"d {name}"] = tg.rel_err(grads[name], tg.to_numpy(tensor.grad))
    print(" ".join(f"{k}={v:.1e}" for k, v in errors.items()))
    for what, err in errors.items():
        assert err <= tg.TOL, f"{what}: relative error {err:.2e}"
    # no file for the second call: its weights are the layer's
    assert not list(tmp_path.glob("*call1*"))


STEPS, BATCH, SAMPLES, CLASSES, LR, MOMENTUM = 30, 8, 64, 3, 0.1, 0.9


def test_shared_training_matches_torch(probe, tmp_path):
    """SGD with momentum on the dense siamese classifier: if the shared weights were updated once
    per call (or their gradients not summed), the losses would part from torch's at step 1."""
    spec = dense_siamese("softmax")
    rng = np.random.default_rng(5)
    params, _, _ = make_params(spec, (6,), 1, 5)
    w = rng.normal(0, 1, (6, CLASSES))
    x = rng.normal(0, 1, (SAMPLES, 6)).astype(np.float32)
    y = np.argmax(x @ w, axis=1)
    order = np.concatenate([rng.permutation(SAMPLES) for _ in range(STEPS * BATCH // SAMPLES + 1)])
    order = order[:STEPS * BATCH].reshape(STEPS, BATCH)
    (tmp_path / "model.json").write_text(json.dumps(spec))
    (tmp_path / "config.json").write_text(json.dumps({"lr": LR, "momentum": MOMENTUM}))
    for name, value in params.items():
        tg.save(tmp_path / f"{name}.npy", value)
    tg.save(tmp_path / "x.npy", x)
    tg.save(tmp_path / "y.npy", y)
    tg.save(tmp_path / "order.npy", order)
    tg.run_probe(probe, "train", tmp_path / "model.json", tmp_path, tmp_path / "config.json")
    ours = np.load(tmp_path / "losses.npy").astype(np.float64)

    ref = SharedReference(params)
    logits_spec = json.loads(json.dumps(spec))
    logits_spec["config"]["layers"][-1]["config"]["activation"] = None  # the loss takes logits
    ref.run(logits_spec, tg.to_torch(x[:1]))  # creates the leaf tensors
    opt = torch.optim.SGD(list(ref.tensors.values()), lr=LR, momentum=MOMENTUM)
    losses = []
    for step in range(STEPS):
        batch = order[step]
        logits = ref.run(logits_spec, tg.to_torch(x[batch]))
        loss = F.cross_entropy(logits, torch.tensor(y[batch].tolist()))
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    losses = np.array(losses)
    diff = np.abs(ours - losses)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; max |convnet - torch| {diff.max():.2e}")
    assert losses[-5:].mean() < 0.8 * losses[0], "the run should learn something"
    assert diff.max() <= 1e-3
    final = np.load(tmp_path / "final_embed__kernel.npy")
    assert tg.rel_err(final, tg.to_numpy(ref.tensors["embed__kernel"])) <= 1e-3
