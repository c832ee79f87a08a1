#!/usr/bin/env python3
"""A controlled experiment for bench_scratch.py: ../shared/data/weights/keras/mnist_cnn.json in
convnet (bench/scratch_steps.c: cn_model_load, cn_model_init_weights, a cn_session with sparse
categorical cross-entropy and Adam 1e-3) and in Keras 3 (bench_scratch.keras_model) start from the
SAME weights (convnet's initialisation, read from the .cnm it saves) and see the SAME batches of
Fashion-MNIST in the same order; the script prints both losses step by step, and with --epochs N
(N shuffled epochs of 468 full batches) the test accuracy of both trained models, both evaluated
by Keras.

    cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude bench/scratch_steps.c -o build/scratch_steps \\
       -Lbuild -lconvnet -Wl,-rpath,$PWD/build -lm        (or the bench CMake project's target)
    .venv/bin/python bench/scratch_steps.py [--driver build/scratch_steps] [--steps 50] [--seed 1]
"""
import argparse
import os
import pathlib
import subprocess
import tempfile

import numpy as np

from ae_steps import read_cnm, rel
from bench_scratch import ARCH, keras_model
from fashion_mnist import DATA, images, labels

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 128


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--driver", default=str(ROOT / "build" / "scratch_steps"))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--epochs", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--grad", action="store_true", help="compare the first batch's gradients")
    args = p.parse_args()

    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    xt, yt = images(args.data, "train"), labels(args.data, "train")
    rng = np.random.default_rng(args.seed)
    per_epoch = len(xt) // BATCH
    if args.epochs:
        args.steps = args.epochs * per_epoch
    epochs = -(-args.steps // per_epoch)
    order = np.concatenate([rng.permutation(len(xt))[:per_epoch * BATCH] for _ in range(epochs)])

    def run_driver(steps, *optimizer):
        with tempfile.TemporaryDirectory() as tmp:
            order_path = pathlib.Path(tmp) / "order.i32"
            order[:steps * BATCH].astype(np.int32).tofile(order_path)
            prefix = pathlib.Path(tmp) / "cnn"
            out = subprocess.run([args.driver, str(ARCH), str(args.data), str(order_path),
                                  str(steps), str(args.seed), str(prefix), *optimizer],
                                 check=True, capture_output=True, text=True,
                                 env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
            return ([float(line.split()[1]) for line in out.splitlines()],
                    read_cnm(f"{prefix}.init.cnm"), read_cnm(f"{prefix}.final.cnm"))

    def with_weights(w):
        model = keras_model(keras)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([w[f"{layer.name}/kernel"], w[f"{layer.name}/bias"]])
        return model

    if args.grad:
        _, w0, w1 = run_driver(1, "sgd", "1")
        _, _, a1 = run_driver(1, "adam", "0.001")
        model = with_weights(w0)
        idx = order[:BATCH]
        with tf.GradientTape() as tape:
            loss = keras.losses.SparseCategoricalCrossentropy()(yt[idx],
                                                                 model(xt[idx], training=True))
        named = [(f"{layer.name}/{w.name}", w) for layer in model.layers for w in layer.weights]
        grads = tape.gradient(loss, [w for _, w in named])
        print(f"first batch: gradients (convnet: w0 - w1 after SGD lr 1) and the first Adam "
              f"update (lr 1e-3), Keras loss {float(loss):.7f}")
        print(f"{'tensor':<16} {'max |g|':>10} {'grad rel diff':>13} {'#|g|<1e-6':>10} "
              f"{'Adam step rel diff':>18}")
        for (name, _), g in zip(named, grads):
            g = g.numpy()
            # Keras's first Adam update: lr * m_hat / (sqrt(v_hat) + eps), m_hat = g, v_hat = g^2
            step = 1e-3 * g / (np.abs(g) + 1e-7)
            print(f"{name:<16} {np.max(np.abs(g)):>10.3e} {rel(w0[name] - w1[name], g):>13.2e} "
                  f"{int(np.sum(np.abs(g) < 1e-6)):>10} {rel(w0[name] - a1[name], step):>18.2e}")
        print()

    cl, w0, w1 = run_driver(args.steps)
    model = with_weights(w0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    kl = []
    for step in range(args.steps):
        idx = order[step * BATCH:(step + 1) * BATCH]
        kl.append(float(model.train_on_batch(xt[idx], yt[idx])))
    print(f"Adam lr 1e-3, batch {BATCH}, the same initial weights and batches (seed {args.seed})")
    print(f"{'step':>4} {'convnet loss':>13} {'keras loss':>13} {'relative diff':>13}")
    for step, (c, k) in enumerate(zip(cl, kl)):
        if step < 10 or (step < 50 and (step + 1) % 10 == 0) or (step + 1) % 500 == 0:
            print(f"{step + 1:>4} {c:>13.7f} {k:>13.7f} {(c - k) / k:>13.2e}")
    kw = {f"{layer.name}/{w.name}": w.numpy() for layer in model.layers for w in layer.weights}
    worst = max((rel(w1[n], kw[n]), n) for n in kw)
    print(f"after {args.steps} steps: largest weight difference {worst[0]:.2e} (relative to the "
          f"tensor's largest weight), in {worst[1]}")
    if args.epochs:
        xv, yv = images(args.data, "t10k"), labels(args.data, "t10k")
        acc = lambda m: float(np.mean(np.argmax(m.predict(xv, batch_size=512, verbose=0), 1)
                                      == yv))
        ca, ka = acc(with_weights(w1)), acc(model)
        print(f"test accuracy: convnet's trained weights {ca:.4f}, keras's {ka:.4f}, "
              f"difference {100 * (ca - ka):+.2f} points")


if __name__ == "__main__":
    main()
