"""Multi-step fine-tuning of MobileNet's top block with Adam, convnet against Keras step for step.

The block is what `convnet train --fine-tune conv_pw_12_relu` trains: conv_dw_13, conv_dw_13_bn
(frozen: inference mode), ReLU6, conv_pw_13, conv_pw_13_bn (frozen), ReLU6, global average
pooling, Dense(2, softmax); weights from the real MobileNet 0.25 .h5, the Dense head from a seeded
Glorot draw. Inputs are seeded stand-ins for conv_pw_12_relu's output (ReLU6 values, about half of
them zero, as the real features), labels a fixed function of them, a fixed batch order (batch 32,
13 epochs of 256 samples: 104 steps), Adam lr 1e-4 with the Keras defaults.

convnet's side is tests/probes/probe_grad.c's train mode (trainer, loss and optimizer as in
src/train/fit.c); Keras runs the same steps in a GradientTape loop in float32.

Adam divides each gradient by its running magnitude, so float32 rounding in near-zero gradient
elements becomes weight noise of order lr: the runs drift apart slowly whatever the arithmetic.
Measured on real cats vs dogs features (312 steps), convnet vs Keras float32 drifts less than
Keras float32 vs Keras float64 (max |d loss| 9e-6 vs 4e-5); on these stand-ins (104 steps) about
as much (5.5e-4 vs 4e-4; 6e-6 vs 1e-7 over the first 10 steps). Step-0 gradients are as close to
float64 in convnet as in Keras float32 (5.6e-7 vs 5.7e-7 of the largest). The bars below are that
drift with margin; a real bug (a stale weight cache, a wrong moment, a frozen layer that trains)
breaks them by orders of magnitude."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import BUILD, SHARED, need_file

H5 = SHARED / "weights" / "keras" / "mobilenet_v1_0.25_224.h5"
SAMPLES, BATCH, EPOCHS, LR = 256, 32, 13, 1e-4
EARLY_STEPS, EARLY_TOL = 10, 3e-5  # max |convnet loss - Keras loss| over the first steps
LOSS_TOL = 2e-3  # ... over all steps
WEIGHT_TOL = 0.15  # max |convnet - Keras| of a parameter / the most Keras moved it

# (layer, its class, config, convnet's parameter names in the .h5 group's order)
TOP_BLOCK = [
    ("conv_dw_13", "DepthwiseConv2D",
     dict(kernel_size=[3, 3], strides=[1, 1], padding="same", use_bias=False, depth_multiplier=1),
     ["depthwise_kernel"]),
    ("conv_dw_13_bn", "BatchNormalization", dict(epsilon=1e-3, momentum=0.99, trainable=False),
     ["gamma", "beta", "moving_mean", "moving_variance"]),
    ("conv_dw_13_relu", "ReLU", dict(max_value=6.0), []),
    ("conv_pw_13", "Conv2D",
     dict(filters=256, kernel_size=[1, 1], strides=[1, 1], padding="same", use_bias=False),
     ["kernel"]),
    ("conv_pw_13_bn", "BatchNormalization", dict(epsilon=1e-3, momentum=0.99, trainable=False),
     ["gamma", "beta", "moving_mean", "moving_variance"]),
    ("conv_pw_13_relu", "ReLU", dict(max_value=6.0), []),
    ("pool", "GlobalAveragePooling2D", {}, []),
    ("predictions", "Dense", dict(units=2, activation="softmax"), ["kernel", "bias"]),
]


def model_json():
    """The block as a Keras model config, its input conv_pw_12_relu's output (7, 7, 256)."""
    layers = [{"class_name": "InputLayer", "name": "input", "inbound_nodes": [],
               "config": {"name": "input", "batch_input_shape": [None, 7, 7, 256]}}]
    for name, cls, config, _ in TOP_BLOCK:
        layers.append({"class_name": cls, "name": name, "config": {"name": name, **config},
                       "inbound_nodes": [[[layers[-1]["name"], 0, 0, {}]]]})
    return {"class_name": "Functional",
            "config": {"name": "top_block", "layers": layers, "input_layers": [["input", 0, 0]],
                       "output_layers": [["predictions", 0, 0]]}}


def block_params(rng):
    """{layer__param: float32 array}: the .h5's weights, a Glorot-uniform head, zero bias."""
    h5py = pytest.importorskip("h5py")
    params = {}
    with h5py.File(need_file(H5), "r") as f:
        for name, _, _, pnames in TOP_BLOCK[:-1]:
            for pname in pnames:
                stored = f["model_weights"][name][name][f"{pname}:0"]
                params[f"{name}__{pname}"] = np.asarray(stored, np.float32)
    limit = np.sqrt(6 / (256 + 2))
    params["predictions__kernel"] = rng.uniform(-limit, limit, (256, 2)).astype(np.float32)
    params["predictions__bias"] = np.zeros(2, np.float32)
    return params


def training_data(rng):
    """Features like conv_pw_12_relu's (ReLU6, ~45 % zeros), learnable labels, batch order."""
    x = np.clip(rng.normal(0.25, 2.0, (SAMPLES, 7, 7, 256)), 0, 6).astype(np.float32)
    score = x.mean(axis=(1, 2)) @ rng.normal(0, 1, 256)
    y = (score > np.median(score)).astype(np.float32)
    order = np.stack([rng.permutation(SAMPLES) for _ in range(EPOCHS)]).reshape(-1, BATCH)
    return x, y, order


def convnet_run(tmp_path, params, x, y, order):
    probe = BUILD / "probe_grad"
    if not probe.exists():
        pytest.fail(f"{probe} not built: run cmake --build {BUILD}")
    (tmp_path / "model.json").write_text(json.dumps(model_json()))
    (tmp_path / "config.json").write_text(json.dumps({"optimizer": "adam", "lr": LR}))
    for name, value in {**params, "x": x, "y": y, "order": order}.items():
        np.save(tmp_path / f"{name}.npy", np.ascontiguousarray(value, np.float32))
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}  # see test_grad_torch.run_probe
    proc = subprocess.run([str(probe), "train", tmp_path / "model.json", tmp_path,
                           tmp_path / "config.json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    final = {k: np.load(tmp_path / f"final_{k}.npy") for k in params}
    return np.load(tmp_path / "losses.npy"), final


def keras_run(params, x, y, order):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    layers = []
    for name, cls, config, _ in TOP_BLOCK:
        config = {k: v for k, v in config.items() if k != "trainable"}
        layers.append(getattr(keras.layers, cls).from_config({"name": name, **config}))
    out = inp = keras.Input((7, 7, 256))
    for layer in layers:
        out = layer(out)
    model = keras.Model(inp, out)
    for layer, (name, cls, _, pnames) in zip(layers, TOP_BLOCK):
        if pnames:
            layer.set_weights([params[f"{name}__{p}"] for p in pnames])
        layer.trainable = cls != "BatchNormalization"  # frozen: inference mode in training
    optimizer = keras.optimizers.Adam(LR)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = np.array([float(step(x[batch], y[batch])) for batch in order])
    final = {f"{name}__{p}": w for layer, (name, _, _, pnames) in zip(layers, TOP_BLOCK)
             for p, w in zip(pnames, layer.get_weights())}
    return losses, final


def test_adam_fine_tuning_matches_keras_step_for_step(tmp_path):
    rng = np.random.default_rng(7)
    params = block_params(rng)
    x, y, order = training_data(rng)
    ours, our_final = convnet_run(tmp_path, params, x, y, order)
    ref, ref_final = keras_run(params, x, y, order)
    diff = np.abs(ours.astype(np.float64) - ref)
    print(f"{len(order)} steps, loss {ref[0]:.4f} -> {ref[-1]:.4f}; max |dloss| {diff.max():.2e} "
          f"at step {diff.argmax()}")
    assert ref[-1] < 0.7 * ref[0], "the run must learn, or it checks little"
    early = diff[:EARLY_STEPS]
    assert early.max() <= EARLY_TOL, f"losses part at step {np.argmax(early > EARLY_TOL)}"
    assert diff.max() <= LOSS_TOL, f"losses part at step {np.argmax(diff > LOSS_TOL)}"
    for name, want in ref_final.items():
        moved = np.abs(want - params[name]).max()
        err = np.abs(our_final[name] - want).max()
        print(f"{name}: moved {moved:.2e}, |convnet - keras| {err:.2e}")
        if "_bn__" in name:  # frozen: must not move at all
            assert moved == 0 and np.array_equal(our_final[name], params[name]), name
        else:
            assert err <= WEIGHT_TOL * moved, f"{name}: {err:.2e} vs moved {moved:.2e}"
