#!/usr/bin/env python3
"""The convolutional autoencoder of examples/autoencoder.c against Keras 3 with the same
architecture and recipe: Fashion-MNIST (Debian's dataset-fashion-mnist) scaled to [0, 1];
Conv2D(32, 3, stride 2, same, relu) -> Conv2D(16, 3, stride 2, same, relu) ->
Conv2DTranspose(16, 3, stride 2, same, relu) -> Conv2DTranspose(32, 3, stride 2, same, relu) ->
Conv2D(1, 3, same, sigmoid); binary cross-entropy, Adam lr 1e-3, batch 128, shuffled epochs. For
each seed both run in turn (the same threads) and the script prints the test reconstruction MSE
after the last epoch and the wall time of the whole run.

    .venv/bin/python bench/bench_autoencoder.py [--build build] [--epochs 10] [--seeds 1,2,3]
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from fashion_mnist import DATA, cpu_name, images
from keras_fit import fit_reshuffled

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_convnet(args, seed, tmp):
    exe = pathlib.Path(args.build) / "examples" / "autoencoder"
    start = time.perf_counter()
    out = subprocess.run([str(exe), str(args.data), str(args.epochs), "0",
                          str(pathlib.Path(tmp) / f"ae{seed}"), str(seed)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    mse = float(re.findall(r"reconstruction MSE ([0-9.]+)", out)[-1])
    return mse, time.perf_counter() - start


def run_keras(args, seed, xt, xv):
    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        L.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        L.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
        L.Conv2D(1, 3, padding="same", activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    start = time.perf_counter()
    fit_reshuffled(model, xt, xt, epochs=args.epochs, batch_size=128, seed=seed)
    seconds = time.perf_counter() - start
    pred = model.predict(xv, batch_size=512, verbose=0)
    return float(np.mean((pred - xv) ** 2)), seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--keras-only", action="store_true",
                   help="skip convnet (its runs are deterministic: a seed gives the same numbers)")
    args = p.parse_args()
    d = pathlib.Path(args.data)
    if not (d / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"no Fashion-MNIST in {d} (apt-get install dataset-fashion-mnist)")
    xt, xv = images(d, "train"), images(d, "t10k")
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.epochs} epochs, batch 128")
    print(f"{'seed':>4} {'convnet MSE':>11} {'keras MSE':>9} {'convnet s':>9} {'keras s':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            cm, ct = (float("nan"),) * 2 if args.keras_only else run_convnet(args, seed, tmp)
            km, kt = run_keras(args, seed, xt, xv)
            rows.append((cm, km, ct, kt))
            print(f"{seed:>4} {cm:>11.5f} {km:>9.5f} {ct:>9.1f} {kt:>8.1f}", flush=True)
    cm, km, ct, kt = (statistics.mean(c) for c in zip(*rows))
    print(f"mean {cm:>11.5f} {km:>9.5f} {ct:>9.1f} {kt:>8.1f}")
    print(f"test MSE convnet/keras: {cm / km:.3f} (bar: within 5 %); time convnet/keras: {ct / kt:.2f}")


if __name__ == "__main__":
    main()
