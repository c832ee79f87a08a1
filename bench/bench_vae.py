#!/usr/bin/env python3
"""The variational autoencoder of examples/vae.c against Keras 3's VAE example (keras.io,
"Variational AutoEncoder", a keras.Model subclass with its own train_step) with the same
architecture and recipe: Fashion-MNIST (Debian's dataset-fashion-mnist) scaled to [0, 1], the
60,000 training images only; encoder Conv2D(32, 3, s2, same, relu) -> Conv2D(64, 3, s2, same,
relu) -> Flatten -> Dense(16, relu) -> z_mean, z_log_var (Dense 2 each) -> z = mean +
exp(log_var / 2) * eps; decoder Dense(7*7*64, relu) -> Reshape -> Conv2DTranspose(64, 3, s2,
same, relu) -> Conv2DTranspose(32, 3, s2, same, relu) -> Conv2DTranspose(1, 3, same, sigmoid);
loss per image = binary cross-entropy summed over the 784 pixels + KL(N(mean, var) || N(0, 1));
Adam (lr 1e-3), batch 128, shuffled epochs.

Both report the test ELBO after every epoch: -(mean over the 10,000 test images of the loss
above with one latent sample per image). For each seed both run in turn (the same threads) and
the script prints the test ELBO after the last epoch and the wall time of the whole run
(training plus the per-epoch test evaluation both do; convnet's time also includes starting the
process and reading the IDX files).

    .venv/bin/python bench/bench_vae.py [--build build] [--epochs 10] [--seeds 1,2,3]
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

from fashion_mnist import DATA, cpu_name, images
from keras_fit import fit_reshuffled

ROOT = pathlib.Path(__file__).resolve().parents[1]
BATCH = 128


def run_convnet(args, seed, tmp):
    exe = pathlib.Path(args.build) / "examples" / "vae"
    start = time.perf_counter()
    out = subprocess.run([str(exe), str(args.data), str(args.epochs), str(args.train_samples),
                          str(pathlib.Path(tmp) / f"vae{seed}"), str(seed)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive")).stdout
    elbos = [float(v) for v in re.findall(r"test ELBO (-?[0-9.]+)", out)]
    return elbos, time.perf_counter() - start


def run_keras(args, seed, xt, xv):
    import keras
    import tensorflow as tf
    from keras import layers, ops
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(seed)

    class Sampling(layers.Layer):
        """z = mean + exp(log_var / 2) * eps, eps ~ N(0, 1) (the Keras example's layer)."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs):
            z_mean, z_log_var = inputs
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            return z_mean + ops.exp(0.5 * z_log_var) * eps

    inp = keras.Input((28, 28, 1))
    h = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inp)
    h = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(h)
    h = layers.Dense(16, activation="relu")(layers.Flatten()(h))
    z_mean = layers.Dense(2, name="z_mean")(h)
    z_log_var = layers.Dense(2, name="z_log_var")(h)
    z = Sampling()([z_mean, z_log_var])
    encoder = keras.Model(inp, [z_mean, z_log_var, z], name="encoder")
    latent = keras.Input((2,))
    d = layers.Dense(7 * 7 * 64, activation="relu")(latent)
    d = layers.Reshape((7, 7, 64))(d)
    d = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(d)
    d = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(d)
    out = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(d)
    decoder = keras.Model(latent, out, name="decoder")

    class VAE(keras.Model):
        def __init__(self, encoder, decoder, **kwargs):
            super().__init__(**kwargs)
            self.encoder, self.decoder = encoder, decoder
            self.loss_tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.loss_tracker]

        def image_losses(self, data):
            """784 * mean BCE + KL, per image (the example's terms before their batch mean)."""
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            rec = ops.sum(keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2))
            kl = ops.sum(-0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var)),
                         axis=1)
            return rec + kl

        def train_step(self, data):
            with tf.GradientTape() as tape:
                total_loss = ops.mean(self.image_losses(data))
            grads = tape.gradient(total_loss, self.trainable_weights)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
            self.loss_tracker.update_state(total_loss)
            return {"loss": self.loss_tracker.result()}

    vae = VAE(encoder, decoder)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    test_losses = tf.function(vae.image_losses)

    def test_elbo():
        total = 0.0
        for at in range(0, len(xv), BATCH):
            total += float(tf.reduce_sum(test_losses(xv[at:at + BATCH])))
        return -total / len(xv)

    elbos = []

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            elbos.append(test_elbo())

    start = time.perf_counter()
    fit_reshuffled(vae, xt, epochs=args.epochs, batch_size=BATCH, seed=seed,
                   callbacks=[Evaluate()])
    return elbos, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--keras-only", action="store_true",
                   help="skip convnet (its runs are deterministic: a seed gives the same numbers)")
    p.add_argument("--train-samples", type=int, default=0,
                   help="train on the first N images only (0: all; for a quick check)")
    p.add_argument("--curves", action="store_true", help="print the test ELBO of every epoch")
    args = p.parse_args()
    d = pathlib.Path(args.data)
    if not (d / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"no Fashion-MNIST in {d} (apt-get install dataset-fashion-mnist)")
    xt, xv = images(d, "train"), images(d, "t10k")
    if args.train_samples > 0:
        xt = xt[:args.train_samples]
    print(f"CPU: {cpu_name()}, {args.threads} threads; {args.epochs} epochs, batch {BATCH}, "
          f"{len(xt)} training images")
    print(f"{'seed':>4} {'convnet ELBO':>12} {'keras ELBO':>10} {'convnet s':>9} {'keras s':>8}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            ce, ct = ([float("nan")], float("nan")) if args.keras_only else run_convnet(args, seed, tmp)
            ke, kt = run_keras(args, seed, xt, xv)
            rows.append((ce[-1], ke[-1], ct, kt))
            print(f"{seed:>4} {ce[-1]:>12.3f} {ke[-1]:>10.3f} {ct:>9.1f} {kt:>8.1f}", flush=True)
            if args.curves:
                print("     per epoch, convnet: " + " ".join(f"{e:.2f}" for e in ce))
                print("     per epoch, keras:   " + " ".join(f"{e:.2f}" for e in ke), flush=True)
    ce, ke, ct, kt = (statistics.mean(c) for c in zip(*rows))
    print(f"mean {ce:>12.3f} {ke:>10.3f} {ct:>9.1f} {kt:>8.1f}")
    print(f"test ELBO convnet/keras: {ce / ke:.3f} (bar: within 5 %); "
          f"time convnet/keras: {ct / kt:.2f}")


if __name__ == "__main__":
    main()
