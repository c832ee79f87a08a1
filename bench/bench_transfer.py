#!/usr/bin/env python3
"""Transfer learning on ../shared/data/cats_dogs, convnet against Keras with the same recipe.

1. MobileNet 0.25 (the real Keras .h5) frozen up to conv_pw_13_relu, GlobalAveragePooling2D,
   Dense(2, softmax); Keras "tf" preprocessing, NEAREST resize to 224x224 (keras.utils.load_img's
   default; convnet gets --resize nearest, as its training default for a Keras base is bilinear);
   Adam lr 1e-3, batch 32, 10 epochs, no augmentation, fixed seed. With --resize bilinear, Keras
   reads images as image_dataset_from_directory(interpolation="bilinear") does (tf.io.decode_image,
   tf.image.resize bilinear, float pixels) and convnet with its Keras-base training default
   (--decode tf --resize tf-bilinear, the same pipeline). Both sides compute the frozen
   base's (pooled) features once and train the head on them: convnet does it itself (feature
   cache), Keras here with predict.
2. Fine-tuning from (1): everything after conv_pw_12_relu trains (conv_dw_13 .. conv_pw_13 and the
   head), BatchNormalization frozen in inference mode, Adam lr 1e-4, 3 epochs. Both sides again
   run the frozen part once (features at conv_pw_12_relu) and train the top block on them.
3. EfficientNet-Lite0 (convnet only: Keras has no Lite) frozen, average-pool head, 10 epochs.

Times are wall clock on --threads threads (TF: intra-op threads, 1 inter-op thread; convnet:
--threads and its own wait policy: idle threads spin about 0.2 ms, then sleep). Feature
extraction includes JPEG decoding and resizing on both sides. convnet's extraction time is a cold-cache run minus the same run with a warm cache.
Epoch and step times are medians over epochs of the training pass only (validation excluded);
Keras' first epoch includes tracing, hence the median.

    .venv/bin/python bench/bench_transfer.py [--build build-tl] [--skip-lite] [--resize bilinear]
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from keras_fit import fit_reshuffled

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CN_SHARED_DATA", ROOT.parent / "shared" / "data"))
H5 = SHARED / "weights" / "keras" / "mobilenet_v1_0.25_224.h5"
DATA = SHARED / "cats_dogs"
FINE_TUNE_AT = "conv_pw_12_relu"
TOP_BLOCK = ["conv_dw_13", "conv_dw_13_bn", "conv_dw_13_relu",
             "conv_pw_13", "conv_pw_13_bn", "conv_pw_13_relu"]
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm"}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")),
                   help="build directory holding the convnet binary")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--fine-tune-epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seeds", default="1,2,3",
                   help="comma-separated seeds: accuracy is reported per seed and averaged")
    p.add_argument("--skip-lite", action="store_true", help="no EfficientNet-Lite0 run")
    p.add_argument("--skip-keras", action="store_true", help="convnet only")
    p.add_argument("--step-rounds", type=int, default=5,
                   help="after the accuracy runs, this many interleaved rounds of the fine-tuning "
                   "phase alone (convnet, then Keras, from the same weights and features) for "
                   "the step time ratio (0: none)")
    p.add_argument("--resize", choices=("nearest", "bilinear"), default="nearest",
                   help="nearest: Keras load_img's default; bilinear: image_dataset_from_directory"
                   "'s (tf.io.decode_image, tf.image.resize bilinear); convnet gets --resize "
                   "nearest or its Keras training default")
    p.add_argument("--convnet-resize", default=None,
                   help="convnet's --resize (default: nearest with --resize nearest, else none: "
                   "convnet's default for a Keras base)")
    args = p.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    return args


# ---- convnet -------------------------------------------------------------------------------


def convnet_train(args, work, name, base, extra, cache):
    """Runs convnet train; returns (wall seconds, list of log records)."""
    log = work / f"{name}.jsonl"
    cmd = [str(pathlib.Path(args.build) / "convnet"), "train", "--base", str(base),
           "--data", str(DATA / "train"), "--val", str(DATA / "validation"),
           "--out", str(work / f"{name}.cnm"), "--epochs", str(args.epochs),
           "--batch", str(args.batch), "--lr", "1e-3", *convnet_resize(args),
           "--threads", str(args.threads), "--cache", str(cache), "--log", str(log), *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"FAILED: {' '.join(cmd)}\n{proc.stderr.strip()}", file=sys.stderr)
        return wall, None
    print(f"  $ {' '.join(cmd)}   ({wall:.1f} s)", file=sys.stderr)
    return wall, [json.loads(line) for line in log.read_text().splitlines()]


def convnet_resize(args):
    if args.convnet_resize:
        return ["--resize", args.convnet_resize]
    return ["--resize", "nearest"] if args.resize == "nearest" else []


def phase(records, name):
    return [r for r in records if r["phase"] == name]


def median_seconds(records):
    return statistics.median(r["seconds"] for r in records)


def convnet_step_ms(args, work, steps):
    """One fine-tuning run on the warm feature cache; its median fine-tuning step (ms)."""
    extra = ["--seed", "1", "--fine-tune", FINE_TUNE_AT, "--fine-tune-epochs",
             str(args.fine_tune_epochs), "--fine-tune-lr", "1e-4"]
    _, log = convnet_train(args, work, "step_round", H5, extra, work / "cache")
    return None if log is None else 1000 * median_seconds(phase(log, "fine-tune")) / steps


def convnet_mobilenet(args, work, n_images, steps):
    """Accuracy per seed (head, then fine-tuned), times from the first seed's runs."""
    cache = work / "cache"
    seed = args.seeds[0]
    cold, head = convnet_train(args, work, "head", H5, ["--seed", str(seed)], cache)
    warm, _ = convnet_train(args, work, "head_warm", H5, ["--seed", str(seed)], cache)
    if head is None:
        return None
    out = {"extract_ips": n_images / max(cold - warm, 1e-9),
           "head_eps": 1 / max(median_seconds(head), 1e-9), "seeds": {}}
    for seed in args.seeds:
        ft_extra = ["--seed", str(seed), "--fine-tune", FINE_TUNE_AT, "--fine-tune-epochs",
                    str(args.fine_tune_epochs), "--fine-tune-lr", "1e-4"]
        _, ft = convnet_train(args, work, f"fine_tune{seed}", H5, ft_extra, cache)
        if ft is None:
            return None
        tuned = phase(ft, "fine-tune")
        out["seeds"][seed] = (phase(ft, "head")[-1]["val_accuracy"], tuned[-1]["val_accuracy"])
        out.setdefault("ft_step_ms", 1000 * median_seconds(tuned) / steps)
    return out


def convnet_lite(args, work):
    wall, log = convnet_train(args, work, "lite0", "efficientnet_lite0",
                              ["--seed", str(args.seeds[0])], work / "cache")
    if log is None:
        return None
    return {"val_acc": log[-1]["val_accuracy"], "wall": wall}


# ---- Keras ---------------------------------------------------------------------------------


def image_list(folder):
    """(path, label) in convnet's order: classes and files sorted byte-wise."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for label, c in enumerate(classes):
        files = sorted((p for p in (folder / c).rglob("*") if p.suffix.lower() in EXTENSIONS),
                       key=lambda p: str(p.relative_to(folder / c)).encode())
        items += [(p, label) for p in files]
    return items


def load(keras, path, resize):
    """One image as Keras reads it: load_img (PIL, NEAREST) or, for bilinear, what
    image_dataset_from_directory's load_image does (float32, not rounded)."""
    import numpy as np
    if resize == "nearest":
        return np.asarray(keras.utils.load_img(str(path), target_size=(224, 224),
                                               interpolation="nearest"), dtype=np.float32)
    import tensorflow as tf
    img = tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
    return tf.image.resize(img, (224, 224), method="bilinear").numpy()


def features(keras, models, items, batch, resize, chunk=256):
    """Each model on every image, "tf" preprocessing (x / 127.5 - 1), chunk by chunk."""
    import numpy as np
    outs = [[] for _ in models]
    for i in range(0, len(items), chunk):
        x = np.stack([load(keras, p, resize) for p, _ in items[i:i + chunk]]) / 127.5 - 1.0
        for out, model in zip(outs, models):
            out.append(model.predict(x.astype(np.float32), batch_size=batch, verbose=0))
    return [np.concatenate(o) for o in outs]


class EpochTimer:
    def __init__(self, keras):
        outer = self

        class Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.seconds.append(time.perf_counter() - outer.start)

        self.seconds, self.callback = [], Cb()


def fit_timed(keras, model, x, y, args, epochs, seed):
    """Trains on a fresh seeded order every epoch (keras_fit.py: Keras's own fit(shuffle=True)
    repeats one order once a global seed is set); returns the median epoch time (the first
    epoch also traces the graph)."""
    timer = EpochTimer(keras)
    fit_reshuffled(model, x, y, epochs=epochs, batch_size=args.batch, seed=seed,
                   callbacks=[timer.callback])
    return statistics.median(timer.seconds)


def accuracy(model, x, y, batch):
    import numpy as np
    return float(np.mean(np.argmax(model.predict(x, batch_size=batch, verbose=0), 1) == y))


def keras_setup(args):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    # Keras 3 cannot deserialize this Keras 2 file's config, so rebuild MobileNet and load it.
    full = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(224, 224, 3))
    full.load_weights(str(H5))
    full.trainable = False
    return keras, full


def keras_top(keras, full, shape, dense):
    """The top block on the features at the cut, pretrained, then `dense`; BatchNormalization
    frozen (inference mode); Adam 1e-4."""
    x = top_in = keras.Input(shape)
    for name in TOP_BLOCK:
        src = full.get_layer(name)
        layer = src.__class__.from_config(src.get_config())
        x = layer(x)
        layer.set_weights(src.get_weights())
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    top = keras.Model(top_in, dense(keras.layers.GlobalAveragePooling2D()(x)))
    top.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    return top


def keras_step_ms(keras, full, args, data, steps):
    """The fine-tuning phase alone, fresh from the pretrained weights; median step (ms)."""
    _, _, ctr, _, ytr, _ = data
    keras.utils.set_random_seed(1)
    top = keras_top(keras, full, ctr.shape[1:], keras.layers.Dense(2, activation="softmax"))
    return 1000 * fit_timed(keras, top, ctr, ytr, args, args.fine_tune_epochs, 1001) / steps


def keras_seed(keras, full, args, data, seed):
    """Head, then fine-tuning of the top block, from the pretrained weights; val accuracies and
    the median epoch times."""
    ptr, pva, ctr, cva, ytr, yva = data
    keras.utils.set_random_seed(seed)
    dense = keras.layers.Dense(2, activation="softmax", name="classifier")
    head_in = keras.Input((ptr.shape[1],))
    head = keras.Model(head_in, dense(head_in))
    head.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    head_s = fit_timed(keras, head, ptr, ytr, args, args.epochs, seed)
    head_acc = accuracy(head, pva, yva, args.batch)
    top = keras_top(keras, full, ctr.shape[1:], dense)
    before = accuracy(top, cva, yva, args.batch)
    if abs(before - head_acc) > 0.0015:  # more than one image apart: the rebuild is wrong
        print(f"warning: Keras top block gives {before} before fine-tuning, head {head_acc}",
              file=sys.stderr)
    ft_s = fit_timed(keras, top, ctr, ytr, args, args.fine_tune_epochs, seed + 1000)
    return head_acc, accuracy(top, cva, yva, args.batch), head_s, ft_s


def keras_mobilenet(args, train, val, steps):
    import numpy as np
    keras, full = keras_setup(args)
    pooled = keras.Model(full.input, keras.layers.GlobalAveragePooling2D()(
        full.get_layer("conv_pw_13_relu").output))
    at_cut = keras.Model(full.input, full.get_layer(FINE_TUNE_AT).output)
    start = time.perf_counter()
    ptr, pva = (features(keras, [pooled], s, args.batch, args.resize)[0] for s in (train, val))
    extract_ips = (len(train) + len(val)) / (time.perf_counter() - start)
    ctr, cva = (features(keras, [at_cut], s, args.batch, args.resize)[0] for s in (train, val))
    data = (ptr, pva, ctr, cva, np.array([y for _, y in train]), np.array([y for _, y in val]))
    out = {"extract_ips": extract_ips, "seeds": {}}
    for seed in args.seeds:
        head_acc, ft_acc, head_s, ft_s = keras_seed(keras, full, args, data, seed)
        out["seeds"][seed] = (head_acc, ft_acc)
        out.setdefault("head_eps", 1 / head_s)
        out.setdefault("ft_step_ms", 1000 * ft_s / steps)
    out["step_ms"] = lambda: keras_step_ms(keras, full, args, data, steps)
    return out


def step_rounds(args, work, steps, ke):
    """Interleaved rounds of the fine-tuning phase, convnet then Keras; prints each round and
    the median ratio."""
    ratios = []
    print(f"\nfine-tune step, batch {args.batch}, {args.fine_tune_epochs} epochs per run "
          f"(median epoch / {steps} steps), {args.threads} threads:", flush=True)
    for k in range(args.step_rounds):
        a, b = convnet_step_ms(args, work, steps), ke["step_ms"]()
        if a is None:
            return
        ratios.append(a / b)
        print(f"  round {k + 1}: convnet {a:.2f} ms, Keras {b:.2f} ms, ratio {a / b:.3f} "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    median = statistics.median(ratios)
    print(f"bar (issue 12): fine-tune step convnet/Keras median {median:.3f} over "
          f"{len(ratios)} rounds, range {min(ratios):.3f}-{max(ratios):.3f} (want <= 0.8): "
          f"{'PASS' if median <= 0.8 else 'FAIL'}")


# ---- report --------------------------------------------------------------------------------


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def summarize(side):
    """Mean accuracies over seeds (None when the side did not run)."""
    if not side:
        return None
    accs = list(side["seeds"].values())
    return dict(side, head=statistics.mean(a for a, _ in accs),
                tuned=statistics.mean(b for _, b in accs),
                gain=statistics.mean(b - a for a, b in accs))


def print_table(cn, ke, lite, args):
    cn, ke = summarize(cn), summarize(ke)
    n = len(args.seeds)
    rows = [
        (f"1. head val acc (mean of {n} seeds)", "head", ".4f"),
        ("1. feature extraction (images/s)", "extract_ips", ".1f"),
        ("1. head training (epochs/s)", "head_eps", ".1f"),
        (f"2. fine-tuned val acc (mean of {n} seeds)", "tuned", ".4f"),
        ("2. fine-tuning gain (points)", "gain", "+.4f"),
        ("2. one fine-tune step, batch 32 (ms)", "ft_step_ms", ".1f"),
    ]
    print(f"| {'MobileNet 0.25, cats vs dogs':42} | {'convnet':>9} | {'Keras':>9} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 11}|")
    for label, key, spec in rows:
        a = fmt(cn.get(key) if cn else None, spec)
        b = fmt(ke.get(key) if ke else None, spec)
        if key == "gain":
            a = fmt(100 * cn[key] if cn else None, "+.2f")
            b = fmt(100 * ke[key] if ke else None, "+.2f")
        print(f"| {label:42} | {a:>9} | {b:>9} |")
    for seed in args.seeds:
        for k, label in ((0, "head"), (1, "fine-tuned")):
            a = fmt(cn["seeds"][seed][k] if cn else None, ".4f")
            b = fmt(ke["seeds"][seed][k] if ke else None, ".4f")
            print(f"| {'   seed %d: %s val acc' % (seed, label):42} | {a:>9} | {b:>9} |")
    if lite is not None:
        print(f"| {'3. EfficientNet-Lite0 head val acc':42} | {lite['val_acc']:>9.4f} | "
              f"{'(no Lite)':>9} |")
    if cn and ke:
        gap = 100 * (cn["head"] - ke["head"])
        print(f"\nbar 1: convnet - Keras head accuracy = {gap:+.2f} points (want >= -0.5): "
              f"{'PASS' if gap >= -0.5 else 'FAIL'}")
    if cn:
        print(f"bar 2: convnet fine-tuning gain {100 * cn['gain']:+.2f} points (want > 0): "
              f"{'PASS' if cn['gain'] > 0 else 'FAIL'}")
    if lite is not None:
        print(f"bar 3: EfficientNet-Lite0 {100 * lite['val_acc']:.2f} % (want >= 97): "
              f"{'PASS' if lite['val_acc'] >= 0.97 else 'FAIL'} ({lite['wall']:.0f} s wall)")


def main():
    args = parse_args()
    if not H5.exists() or not (DATA / "train").is_dir():
        sys.exit(f"need {H5} and {DATA}")
    train, val = image_list(DATA / "train"), image_list(DATA / "validation")
    steps = -(-len(train) // args.batch)
    print(f"load before: {os.getloadavg()}; resize {args.resize}, convnet {convnet_resize(args)}",
          file=sys.stderr)
    started = time.perf_counter()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench_transfer."))
    try:
        cn = convnet_mobilenet(args, work, len(train) + len(val), steps)
        lite = None if args.skip_lite else convnet_lite(args, work)
        ke = None if args.skip_keras else keras_mobilenet(args, train, val, steps)
        print_table(cn, ke, lite, args)
        if cn and ke and args.step_rounds > 0:
            step_rounds(args, work, steps, ke)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {os.getloadavg()}, {time.perf_counter() - started:.0f} s in all",
          file=sys.stderr)


if __name__ == "__main__":
    main()
