#!/usr/bin/env python3
"""A controlled experiment for bench_autoencoder.py: convnet's autoencoder (examples/autoencoder.c,
rebuilt by bench/ae_steps.c) and the same Keras 3 model start from the SAME weights (convnet's
initialisation, read from the .cnm it saves) and see the SAME batches in the same order; the
script prints both losses step by step. If they track each other, the two implementations agree
and a gap in the final MSE comes from the recipe or from seed variance; if they part at step 1,
an op's forward pass or gradient differs. --grad also compares the gradients of the first batch
tensor by tensor (convnet: one SGD step with lr 1, the new weights minus the old). --epochs N
runs N whole epochs (468 full batches each, the same shuffled order for both) and compares the
test MSE of the two trained models (both evaluated by Keras).

    cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/ae_steps.c -o build/ae_steps \\
       -Lbuild -lconvnet -Wl,-rpath,$PWD/build -lm        (or the bench CMake project's target)
    .venv/bin/python bench/ae_steps.py [--driver build/ae_steps] [--steps 50] [--seed 1] [--grad]
    .venv/bin/python bench/ae_steps.py --epochs 10
"""
import argparse
import json
import os
import pathlib
import struct
import subprocess
import tempfile

import numpy as np

from fashion_mnist import DATA, images

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 128


def read_cnm(path):
    """The tensors of a safetensors file (a .cnm) as numpy arrays by name."""
    raw = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], "<f4").reshape(t["shape"]).copy()
    return out


def run_driver(args, order, steps, optimizer, lr, tmp, tag):
    order_path = pathlib.Path(tmp) / f"{tag}.i32"
    order[:steps * BATCH].astype(np.int32).tofile(order_path)
    prefix = pathlib.Path(tmp) / tag
    out = subprocess.run([args.driver, str(args.data), str(order_path), str(steps), str(args.seed),
                          optimizer, str(lr), str(prefix)], check=True, capture_output=True,
                         text=True, env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    losses = [float(line.split()[1]) for line in out.splitlines()]
    return losses, read_cnm(f"{prefix}.init.cnm"), read_cnm(f"{prefix}.final.cnm")


def keras_model(keras, weights):
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2d"),
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="code"),
        L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu",
                          name="conv2d_transpose"),
        L.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu",
                          name="conv2d_transpose_1"),
        L.Conv2D(1, 3, padding="same", activation="sigmoid", name="conv2d_1"),
    ])
    for layer in model.layers:
        layer.set_weights([weights[f"{layer.name}/kernel"], weights[f"{layer.name}/bias"]])
    return model


def keras_weights(model):
    return {f"{layer.name}/{w.name}": np.asarray(w.numpy()) for layer in model.layers
            for w in layer.weights}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--driver", default=str(ROOT / "build" / "ae_steps"))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grad", action="store_true", help="compare the first batch's gradients")
    p.add_argument("--epochs", type=int, default=0,
                   help="instead of --steps: EPOCHS shuffled epochs of 468 full batches each, "
                        "then the test MSE of both trained models")
    args = p.parse_args()

    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    xt = images(args.data, "train")
    rng = np.random.default_rng(args.seed)
    if args.epochs:
        per_epoch = len(xt) // BATCH
        args.steps = args.epochs * per_epoch
        order = np.concatenate([rng.permutation(len(xt))[:per_epoch * BATCH]
                                for _ in range(args.epochs)])
    else:
        order = rng.permutation(len(xt))

    with tempfile.TemporaryDirectory() as tmp:
        if args.grad:
            _, w0, w1 = run_driver(args, order, 1, "sgd", 1.0, tmp, "grad")
            model = keras_model(keras, w0)
            x = tf.constant(xt[order[:BATCH]])
            bce = keras.losses.BinaryCrossentropy()
            with tf.GradientTape() as tape:
                loss = bce(x, model(x, training=True))
            names = [f"{layer.name}/{w.name}" for layer in model.layers for w in layer.weights]
            grads = tape.gradient(loss, [w for layer in model.layers for w in layer.weights])
            print(f"gradients of the first batch (convnet: w0 - w1 after SGD lr 1), "
                  f"Keras loss {float(loss):.7f}")
            print(f"{'tensor':<28} {'max |g|':>10} {'max |cn - keras| / max |keras|':>31}")
            for name, g in zip(names, grads):
                cn = w0[name] - w1[name]
                print(f"{name:<28} {np.max(np.abs(g)):>10.3e} {rel(cn, g.numpy()):>31.2e}")

        cl, w0, w1 = run_driver(args, order, args.steps, "adam", 0.001, tmp, "adam")
        model = keras_model(keras, w0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        kl = []
        for step in range(args.steps):
            x = xt[order[step * BATCH:(step + 1) * BATCH]]
            kl.append(float(model.train_on_batch(x, x)))
        print(f"\nAdam lr 1e-3, batch {BATCH}, the same initial weights and batches (seed "
              f"{args.seed})")
        print(f"{'step':>4} {'convnet loss':>13} {'keras loss':>13} {'relative diff':>13}")
        for step, (c, k) in enumerate(zip(cl, kl)):
            if step < 10 or (step < 50 and (step + 1) % 10 == 0) or (step + 1) % 500 == 0:
                print(f"{step + 1:>4} {c:>13.7f} {k:>13.7f} {(c - k) / k:>13.2e}")
        kw = keras_weights(model)
        worst = max((rel(w1[n], kw[n]), n) for n in kw)
        print(f"after {args.steps} steps: largest weight difference {worst[0]:.2e} "
              f"(relative to the tensor's largest weight), in {worst[1]}")
        if args.epochs:
            per_epoch = args.steps // args.epochs
            print(f"mean training loss per epoch ({per_epoch} steps each):")
            for e in range(args.epochs):
                c = np.mean(cl[e * per_epoch:(e + 1) * per_epoch])
                k = np.mean(kl[e * per_epoch:(e + 1) * per_epoch])
                print(f"  epoch {e + 1:>2}: convnet {c:.6f}  keras {k:.6f}  ({(c - k) / k:+.2e})")
            xv = images(args.data, "t10k")
            km = float(np.mean((model.predict(xv, batch_size=512, verbose=0) - xv) ** 2))
            cm = float(np.mean((keras_model(keras, w1).predict(xv, batch_size=512, verbose=0)
                                - xv) ** 2))
            print(f"test MSE: convnet's trained weights {cm:.6f}, keras's {km:.6f}, "
                  f"ratio {cm / km:.3f}")


if __name__ == "__main__":
    main()
