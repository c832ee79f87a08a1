#!/usr/bin/env python3
"""Does the initialisation explain bench_scratch.py's gap? Keras 3 trains
../shared/data/weights/keras/mnist_cnn.json twice per seed on the SAME batches (5 shuffled epochs
of 468 full batches, Adam 1e-3): once from its own Glorot-uniform draws, once from convnet's
(cn_model_init_weights with the same seed, read from the .cnm bench/scratch_steps.c saves).
Only the initial weights differ, and only Keras trains, so a gap between the two columns is the
initialisation's. It also prints each tensor's standard deviation and largest |w| on both sides.

    .venv/bin/python bench/scratch_init.py [--driver build/scratch_steps] [--seeds 1,2,3]
"""
import argparse
import os
import pathlib
import subprocess
import tempfile

import numpy as np

from ae_steps import read_cnm
from bench_scratch import ARCH, keras_model
from fashion_mnist import DATA, cpu_name, images, labels

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 128


def convnet_init(driver, data, seed, order):
    """convnet's initial weights for `seed` (the driver takes one step; its .init.cnm is before)."""
    with tempfile.TemporaryDirectory() as tmp:
        order_path = pathlib.Path(tmp) / "order.i32"
        order[:BATCH].astype(np.int32).tofile(order_path)
        prefix = pathlib.Path(tmp) / "cnn"
        subprocess.run([driver, str(ARCH), str(data), str(order_path), "1", str(seed),
                        str(prefix)], check=True, capture_output=True,
                       env=dict(os.environ, OMP_WAIT_POLICY="passive"))
        return read_cnm(f"{prefix}.init.cnm")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--driver", default=str(ROOT / "build" / "scratch_steps"))
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    xt, yt = images(args.data, "train"), labels(args.data, "train")
    xv, yv = images(args.data, "t10k"), labels(args.data, "t10k")
    per_epoch = len(xt) // BATCH
    print(f"CPU: {cpu_name()}; Keras trains both; {args.epochs} epochs of {per_epoch} batches")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(len(xt))[:per_epoch * BATCH] for _ in range(args.epochs)]
        w0 = convnet_init(args.driver, args.data, seed, orders[0])
        keras.utils.set_random_seed(seed)
        own = keras_model(keras)
        mine = keras_model(keras)
        for layer in mine.layers:
            if layer.weights:
                layer.set_weights([w0[f"{layer.name}/kernel"], w0[f"{layer.name}/bias"]])
        for layer in own.layers:
            for w in layer.weights:
                name = f"{layer.name}/{w.name}"
                if name.endswith("kernel"):
                    k, c = w.numpy(), w0[name]
                    print(f"  seed {seed} {name:<18} std keras {k.std():.5f} convnet {c.std():.5f}"
                          f"  max|w| keras {np.abs(k).max():.5f} convnet {np.abs(c).max():.5f}")
        accs = []
        for model in (own, mine):
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss="sparse_categorical_crossentropy")
            for order in orders:
                model.fit(xt[order], yt[order], batch_size=BATCH, epochs=1, shuffle=False,
                          verbose=0)
            pred = model.predict(xv, batch_size=512, verbose=0)
            accs.append(float(np.mean(np.argmax(pred, 1) == yv)))
        rows.append(accs)
        print(f"seed {seed}: test accuracy from Keras's init {accs[0]:.4f}, from convnet's "
              f"{accs[1]:.4f}, difference {100 * (accs[1] - accs[0]):+.2f} points", flush=True)
    own, mine = np.mean(rows, axis=0)
    print(f"mean: from Keras's init {own:.4f}, from convnet's {mine:.4f}, difference "
          f"{100 * (mine - own):+.2f} points")


if __name__ == "__main__":
    main()
