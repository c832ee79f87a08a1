#!/usr/bin/env python3
"""Training from scratch: a Keras model.to_json() architecture on Fashion-MNIST, convnet against
Keras 3 with the same recipe (the lecture's model.fit).

The architecture is ../shared/data/weights/keras/mnist_cnn.json (Conv2D 64 -> MaxPool -> Conv2D
128 -> MaxPool -> Flatten -> Dense 128 -> Dense 10 softmax, Glorot-uniform kernels, zero biases).
Data: Debian's dataset-fashion-mnist (60,000 training and 10,000 test images), x / 255, labels as
sparse classes. Adam lr 1e-3, batch 128, --epochs epochs, shuffled every epoch (Keras through
keras_fit.fit_reshuffled: Keras's own fit(shuffle=True) repeats one order in every epoch once a
global seed is set), the test set as validation data. For each seed, convnet and Keras run one after the other (interleaved, the same
threads), and the script prints the test accuracy after the last epoch and the median time of a
training epoch (validation excluded; Keras's first epoch, which traces the graph, is excluded from
its median, and so is convnet's for symmetry).

    .venv/bin/python bench/bench_scratch.py [--build build] [--epochs 5] [--seeds 1,2,3]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from fashion_mnist import DATA, cpu_name, images, labels
from keras_fit import fit_reshuffled

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CN_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARCH = SHARED / "weights" / "keras" / "mnist_cnn.json"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--skip-keras", action="store_true")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


def run_convnet(args, seed, tmp):
    log = pathlib.Path(tmp) / f"convnet_{seed}.jsonl"
    cmd = [str(pathlib.Path(args.build) / "convnet"), "train", "--model", str(ARCH),
           "--data", args.data, "--epochs", str(args.epochs), "--batch", str(args.batch),
           "--optimizer", "adam", "--lr", "0.001", "--seed", str(seed),
           "--threads", str(args.threads), "--out", str(pathlib.Path(tmp) / f"m{seed}.cnm"),
           "--log", str(log)]
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    epochs = [json.loads(line) for line in log.read_text().splitlines()]
    times = [e["seconds"] for e in epochs]
    return epochs[-1]["val_accuracy"], statistics.median(times[1:] or times)


def keras_model(keras):
    """The Keras 2 Sequential JSON rebuilt layer by layer (Keras 3 reads no Keras 2 JSON)."""
    config = json.loads(ARCH.read_text())["config"]
    layers = []
    for layer in config["layers"]:
        cfg = dict(layer["config"])
        shape = cfg.pop("batch_input_shape", None)
        if shape:
            layers.append(keras.Input(shape=shape[1:]))
        layers.append(getattr(keras.layers, layer["class_name"]).from_config(cfg))
    return keras.Sequential(layers)


def run_keras(args, seed, data):
    import keras
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)
    model = keras_model(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (xt, yt), (xv, yv) = data

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_test_begin(self, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    hist = fit_reshuffled(model, xt, yt, epochs=args.epochs, batch_size=args.batch, seed=seed,
                          validation_data=(xv, yv), callbacks=[timer])
    return hist["val_accuracy"][-1], statistics.median(timer.times[1:] or timer.times)


def main():
    args = parse_args()
    if not ARCH.exists() or not (pathlib.Path(args.data) / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"need {ARCH} and Fashion-MNIST in {args.data} (apt-get install "
                 "dataset-fashion-mnist)")
    d = pathlib.Path(args.data)
    data = None
    if not args.skip_keras:
        load = lambda s: (images(d, s), labels(d, s))
        data = (load("train"), load("t10k"))
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.epochs} epochs, batch {args.batch}")
    print(f"{'seed':>4} {'convnet acc':>11} {'keras acc':>9} {'convnet s/epoch':>15} "
          f"{'keras s/epoch':>13} {'ratio':>6}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            ca, ct = run_convnet(args, seed, tmp)
            ka, kt = run_keras(args, seed, data) if data else (float("nan"), float("nan"))
            rows.append((ca, ka, ct, kt))
            print(f"{seed:>4} {ca:>11.4f} {ka:>9.4f} {ct:>15.2f} {kt:>13.2f} {ct / kt:>6.2f}",
                  flush=True)
    ca, ka, ct, kt = (statistics.mean(c) for c in zip(*rows))
    print(f"mean {ca:>11.4f} {ka:>9.4f} {ct:>15.2f} {kt:>13.2f} {ct / kt:>6.2f}")
    print(f"accuracy difference (convnet - keras): {100 * (ca - ka):+.2f} points; "
          f"time per epoch convnet/keras: {ct / kt:.2f}")


if __name__ == "__main__":
    main()
