#!/usr/bin/env python3
"""Replays Keras's training input pipeline stage by stage against convnet's, on a set of images.

Keras: keras.utils.image_dataset_from_directory(image_size=(224, 224), interpolation="bilinear")
reads a file with tf.io.decode_image(channels=3, expand_animations=False), resizes it with
tf.image.resize(method="bilinear") (antialias=False, float32 out), then the model's
preprocess_input ("tf": x / 127.5 - 1) and the frozen MobileNet 0.25 up to conv_pw_13_relu with
global average pooling. convnet: cn_image_load, cn_image_prepare (through ctypes on
libconvnet.so) and the features `convnet train` itself caches (the safetensors chunks of --cache).

Stages, each reported as max / mean |convnet - Keras| over the images:
  1. decode        uint8 pixels (shape differences, e.g. EXIF rotation, are listed)
  2. resize        on the SAME decoded pixels (TF's), so only the resize arithmetic differs
  3. prepared      the whole path to the model input (decode + resize + preprocess)
  4. features      pooled features from convnet train's cache against Keras's
  5. head step     one Adam step of Dense(2, softmax) from the same features, initial weights and
                   batch: loss, gradient (through the update), updated weights
                   (tests/probes/probe_grad.c's train mode: convnet's trainer and optimizer)
  6. head runs     (--head-seeds 1,2,3) whole head trainings on cats_dogs from Keras's features,
                   the same initial kernel and batch order in both programs: validation accuracy

    .venv/bin/python bench/replay_keras_pipeline.py --build build [--resize R] [--decode D]

(--resize bilinear --decode pil replays convnet's training path before this replay's fixes.)

The image set is built in a temporary folder: cats_dogs images, ImageNet samples and the shared
photos as they are, plus synthetic files for the cases the photos lack (greyscale, CMYK,
EXIF-rotated, ICC profile, progressive, 4:4:4, PNG with alpha / palette / 16 bits / grey, BMP,
odd sizes, upscaling, an exact 2x shrink).
"""
import argparse
import ctypes
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("CN_SHARED_DATA", ROOT.parent / "shared" / "data"))
H5 = SHARED / "weights" / "keras" / "mobilenet_v1_0.25_224.h5"
SIZE = 224
DECODERS = {"pil": 0, "tf": 1}
sys.path.insert(0, str(ROOT / "tests" / "oracle"))
from cn_types import Image, InputSpec  # noqa: E402

RESIZE_IDS = {"nearest": 0, "bilinear": 1, "area": 2, "pil-bilinear": 3, "tf-bilinear": 4}


# ---- the image set --------------------------------------------------------------------------


def synthetic(out):
    """Files for the decoder's corner cases, from one real photo."""
    from PIL import Image as P
    from PIL import ImageCms
    base = P.open(SHARED / "images" / "darknet_dog.jpg").convert("RGB")
    small = base.resize((225, 223))
    base.convert("L").save(out / "grey.jpg", quality=90)
    base.convert("CMYK").save(out / "cmyk.jpg", quality=90)
    exif = P.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to display
    base.save(out / "exif6.jpg", quality=90, exif=exif.tobytes())
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    base.save(out / "icc.jpg", quality=90, icc_profile=srgb)
    base.save(out / "progressive.jpg", quality=90, progressive=True)
    base.save(out / "s444.jpg", quality=95, subsampling=0)
    small.save(out / "odd_225x223.jpg", quality=90)
    base.resize((448, 448)).save(out / "exact2x_448.png")
    base.resize((101, 57)).save(out / "upscale_101x57.jpg", quality=90)
    rgba = base.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(out / "alpha.png")
    base.convert("P").save(out / "palette.png")
    base.convert("L").save(out / "grey.png")
    base.convert("RGB").save(out / "photo.bmp")
    grey16 = (np.asarray(base.convert("L"), np.uint16) * 257 + 100).astype(np.uint16)
    P.fromarray(grey16).save(out / "grey16.png")


def build_set(folder, per_class):
    """Two classes: a (cats, ImageNet samples, shared photos), b (dogs, synthetic files)."""
    a, b = folder / "a", folder / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    cats = sorted((SHARED / "cats_dogs" / "train" / "cats").iterdir())[:per_class]
    dogs = sorted((SHARED / "cats_dogs" / "train" / "dogs").iterdir())[:per_class]
    samples = sorted((SHARED / "imagenet-samples").glob("*.JPEG"))[::50]
    photos = [p for p in sorted((SHARED / "images").iterdir())
              if p.suffix.lower() in (".jpg", ".png", ".bmp")]
    for p in cats + samples + photos:
        (a / p.name).symlink_to(p)
    for p in dogs:
        (b / p.name).symlink_to(p)
    synthetic(b)


def listing(folder):
    """Files in Keras's (and convnet's) order: classes sorted, files sorted within a class."""
    items = []
    for label, c in enumerate(sorted(d.name for d in folder.iterdir() if d.is_dir())):
        items += [(p, label) for p in sorted((folder / c).iterdir(), key=lambda p: p.name)]
    return items


# ---- Keras's side -----------------------------------------------------------------------------


def keras_decode(tf, path):
    data = tf.io.read_file(str(path))
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def keras_resize(tf, pixels):
    return tf.image.resize(pixels, (SIZE, SIZE), method="bilinear").numpy()


def keras_dataset_check(keras, folder, prepared):
    """image_dataset_from_directory itself gives the pixels replayed here (same order)."""
    ds = keras.utils.image_dataset_from_directory(
        str(folder), image_size=(SIZE, SIZE), interpolation="bilinear", shuffle=False,
        batch_size=1000, verbose=False)
    x, y = next(iter(ds))
    return float(np.max(np.abs(x.numpy() / 127.5 - 1.0 - prepared))), y.numpy()


def keras_features(keras, x):
    full = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(SIZE, SIZE, 3))
    full.load_weights(str(H5))
    pooled = keras.Model(full.input, keras.layers.GlobalAveragePooling2D()(
        full.get_layer("conv_pw_13_relu").output))
    return pooled.predict(x, batch_size=32, verbose=0)


# ---- convnet's side ---------------------------------------------------------------------------


def load_lib(build):
    lib = ctypes.CDLL(str(pathlib.Path(build) / "libconvnet.so"))
    lib.cn_image_load_as.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(Image)]
    lib.cn_image_free.argtypes = [ctypes.POINTER(Image)]
    lib.cn_image_prepare.argtypes = [ctypes.POINTER(Image), ctypes.POINTER(InputSpec),
                                     ctypes.POINTER(ctypes.c_float)]
    lib.cn_last_error.restype = ctypes.c_char_p
    return lib


def convnet_decode(lib, path, decoder):
    img = Image()
    if lib.cn_image_load_as(str(path).encode(), DECODERS[decoder], ctypes.byref(img)) != 0:
        raise RuntimeError(lib.cn_last_error().decode())
    pixels = np.ctypeslib.as_array(img.pixels, (img.height, img.width, 3)).copy()
    lib.cn_image_free(ctypes.byref(img))
    return pixels


def convnet_prepare(lib, pixels, resize, preprocess):
    """cn_image_prepare on given uint8 pixels; preprocess 0 = raw, 2 = tf."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    img = Image(pixels.shape[1], pixels.shape[0],
                pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    spec = InputSpec(SIZE, SIZE, 3, RESIZE_IDS[resize], 0.0, preprocess, 0, 0)
    out = np.zeros((SIZE, SIZE, 3), np.float32)
    if lib.cn_image_prepare(ctypes.byref(img), ctypes.byref(spec),
                            out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) != 0:
        raise RuntimeError(lib.cn_last_error().decode())
    return out


def read_safetensors(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": np.float32, "I64": np.int64}[t["dtype"]]
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo:8 + n + hi], dtype).reshape(t["shape"])
    return out


def convnet_features(build, folder, resize, decoder, work):
    """The pooled features `convnet train` computes and caches for the folder."""
    cache = work / "cache"
    cmd = [str(pathlib.Path(build) / "convnet"), "train", "--base", str(H5), "--data",
           str(folder), "--val", str(folder), "--epochs", "1", "--resize", resize, "--decode", decoder,
           "--cache", str(cache), "--out", str(work / "replay.cnm"), "--threads", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    chunks = sorted(cache.rglob("*.features"))
    return [read_safetensors(c) for c in chunks]


# ---- one head step ----------------------------------------------------------------------------


def head_json(dim):
    layers = [{"class_name": "InputLayer", "name": "input", "inbound_nodes": [],
               "config": {"name": "input", "batch_input_shape": [None, dim]}},
              {"class_name": "Dense", "name": "predictions",
               "config": {"name": "predictions", "units": 2, "activation": "softmax"},
               "inbound_nodes": [[["input", 0, 0, {}]]]}]
    return {"class_name": "Functional",
            "config": {"name": "head", "layers": layers, "input_layers": [["input", 0, 0]],
                       "output_layers": [["predictions", 0, 0]]}}


def convnet_head_steps(build, work, kernel, x, y, order):
    d = work / "head"
    d.mkdir(exist_ok=True)
    (d / "model.json").write_text(json.dumps(head_json(x.shape[1])))
    (d / "config.json").write_text(json.dumps({"optimizer": "adam", "lr": 1e-3}))
    arrays = {"predictions__kernel": kernel, "predictions__bias": np.zeros(2), "x": x, "y": y,
              "order": order}
    for name, value in arrays.items():
        np.save(d / f"{name}.npy", np.ascontiguousarray(value, np.float32))
    subprocess.run([str(pathlib.Path(build) / "probe_grad"), "train", d / "model.json", d,
                    d / "config.json"], check=True, env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    return (np.load(d / "losses.npy"), np.load(d / "final_predictions__kernel.npy"),
            np.load(d / "final_predictions__bias.npy"))


def keras_head_steps(keras, tf, kernel, x, y, order):
    """Keras's fit arithmetic: Adam(1e-3) defaults, SparseCategoricalCrossentropy, mean over the
    batch; kernel from the caller's glorot_uniform draw (Keras's own initializer), bias zero."""
    head = keras.layers.Dense(2, activation="softmax")
    inp = keras.Input((x.shape[1],))
    model = keras.Model(inp, head(inp))
    head.set_weights([kernel, np.zeros(2, np.float32)])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    losses = [float(model.train_on_batch(x[b], y[b])) for b in order]
    # train_on_batch returns the loss of the weights before the step (computed in the step)
    k, b = head.get_weights()
    return np.array(losses), k, b


# ---- a whole head run on cats vs dogs, the same draws on both sides ------------------------------


def cats_dogs_features(keras, tf):
    """Keras's pooled features of cats_dogs train and validation, read as
    image_dataset_from_directory does; (x_train, y_train, x_val, y_val)."""
    full = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(SIZE, SIZE, 3))
    full.load_weights(str(H5))
    pooled = keras.Model(full.input, keras.layers.GlobalAveragePooling2D()(
        full.get_layer("conv_pw_13_relu").output))
    out = []
    for part in ("train", "validation"):
        items = listing(SHARED / "cats_dogs" / part)
        feats = []
        for i in range(0, len(items), 200):
            x = np.stack([keras_resize(tf, keras_decode(tf, p)) for p, _ in items[i:i + 200]])
            feats.append(pooled.predict(x / np.float32(127.5) - np.float32(1), verbose=0))
        out += [np.concatenate(feats), np.array([y for _, y in items], np.float32)]
    return out


def head_runs(args, work):
    """10 epochs of the head from the same Glorot kernel and batch order in both programs
    (batch 40: 2000 images make whole batches, as probe_grad's order file needs), then both
    final heads scored on the same validation features."""
    import tensorflow as tf
    import keras
    xt, yt, xv, yv = cats_dogs_features(keras, tf)
    batch = 40
    print(f"6. head runs on cats vs dogs, {args.head_epochs} epochs, batch {batch}, Adam 1e-3, "
          "the same initial kernel and order in both; val acc (val loss):")
    for seed in args.head_seeds:
        rng = np.random.default_rng(seed)
        kernel = keras.initializers.GlorotUniform(seed=seed)((xt.shape[1], 2)).numpy()
        order = np.concatenate([rng.permutation(len(xt)) for _ in range(args.head_epochs)])
        order = order.reshape(-1, batch)
        _, kk, kb = keras_head_steps(keras, tf, kernel, xt, yt, order)
        _, ck, cb = convnet_head_steps(args.build, work, kernel, xt, yt, order)
        scores = []
        for k, b in ((ck, cb), (kk, kb)):
            z = xv @ k + b
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            scores.append((float(np.mean(np.argmax(z, 1) == yv)),
                           float(-np.mean(logp[np.arange(len(yv)), yv.astype(int)]))))
        (ca, cl), (ka, kl) = scores
        print(f"    seed {seed}: convnet {ca:.4f} ({cl:.5f})  Keras {ka:.4f} ({kl:.5f});  "
              f"max |kernel d| {np.abs(ck - kk).max():.3g}")


# ---- report -----------------------------------------------------------------------------------


def stats(diffs):
    diffs = [np.abs(d).ravel() for d in diffs if d is not None]
    if not diffs:
        return "n/a"
    allv = np.concatenate(diffs)
    return f"max {allv.max():.4g}  mean {allv.mean():.4g}"


def per_file(name, items, diffs):
    worst = sorted(((float(np.abs(d).max()), p.name) for (p, _), d in zip(items, diffs)
                    if d is not None), reverse=True)[:6]
    print(f"    {name} worst files: " + ", ".join(f"{n} {v:.3g}" for v, n in worst))


def compare(args, work):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    lib = load_lib(args.build)
    folder = work / "set"
    build_set(folder, args.per_class)
    items = listing(folder)
    print(f"{len(items)} images in {folder}")
    k_dec = [keras_decode(tf, p) for p, _ in items]
    # 1. decode
    for decoder in ("pil", "tf"):
        c_dec = [convnet_decode(lib, p, decoder) for p, _ in items]
        d1, shapes = [], []
        for (p, _), k, c in zip(items, k_dec, c_dec):
            if k.shape != c.shape:
                shapes.append(f"{p.name} {k.shape[:2]} vs {c.shape[:2]}")
                d1.append(None)
            else:
                d1.append(k.astype(np.int16) - c.astype(np.int16))
        print(f"1. decode --decode {decoder} (uint8 levels): {stats(d1)}; "
              f"{sum(d is not None and np.abs(d).max() > 0 for d in d1)} files differ")
        print(f"    shape differs (Keras vs convnet): {shapes}")
        per_file("decode", items, d1)
    c_dec = [convnet_decode(lib, p, args.decode) for p, _ in items]
    # 2. resize on the same (TF-decoded) pixels
    k_res = [keras_resize(tf, k) for k in k_dec]
    for policy in ("bilinear", "tf-bilinear"):
        try:
            d2 = [convnet_prepare(lib, k, policy, 0) - r for k, r in zip(k_dec, k_res)]
        except (RuntimeError, KeyError) as e:
            print(f"2. resize {policy}: not available ({e})")
            continue
        print(f"2. resize {policy} on TF's decoded pixels (levels): {stats(d2)}")
        per_file("resize", items, d2)
    # 3. prepared, whole path
    k_pre = np.stack([r / 127.5 - 1.0 for r in k_res]).astype(np.float32)
    ds_diff, labels = keras_dataset_check(keras, folder, k_pre)
    print(f"   (image_dataset_from_directory vs this replay: max {ds_diff:.3g})")
    c_pre = np.stack([convnet_prepare(lib, c, args.resize, 2) if c.shape == k.shape
                      else np.full((SIZE, SIZE, 3), np.nan, np.float32)
                      for c, k in zip(c_dec, k_dec)])
    ok = ~np.isnan(c_pre).any(axis=(1, 2, 3))
    photo = np.array([p.is_symlink() for p, _ in items])  # real photos, not the synthetic files
    print(f"3. prepared (--decode {args.decode} --resize {args.resize}, tf preprocessing; "
          "model units, 1 level = 0.00784): "
          f"{stats(list(c_pre[ok] - k_pre[ok]))}; photos only: "
          f"{stats(list(c_pre[photo] - k_pre[photo]))}")
    # 4. features
    k_feat = keras_features(keras, k_pre)
    chunks = convnet_features(args.build, folder, args.resize, args.decode, work)
    c_feat = np.concatenate([c["features"] for c in chunks])
    c_lab = np.concatenate([c["labels"] for c in chunks])
    print(f"4. pooled features, convnet train cache ({c_feat.shape[0]} images) vs Keras "
          f"(feature scale: mean {np.abs(k_feat).mean():.3g})")
    if c_feat.shape[0] == len(items) and np.array_equal(c_lab, labels):
        print(f"    all images: {stats([c_feat - k_feat])}; "
              f"same-shape images: {stats([c_feat[ok] - k_feat[ok]])}; "
              f"photos only: {stats([c_feat[photo] - k_feat[photo]])}")
    else:
        print("    cache order/size differs from the listing; skipped")
    # 5. head step, from Keras's features
    rng = np.random.default_rng(args.seed)
    keras.utils.set_random_seed(args.seed)
    kernel = keras.initializers.GlorotUniform(seed=args.seed)((k_feat.shape[1], 2)).numpy()
    order = np.stack([rng.permutation(len(items))[:32] for _ in range(args.steps)])
    y = labels.astype(np.float32)
    kl, kk, kb = keras_head_steps(keras, tf, kernel, k_feat, y, order)
    cl, ck, cb = convnet_head_steps(args.build, work, kernel, k_feat, y, order)
    print(f"5. head, {args.steps} Adam step(s) lr 1e-3 batch 32 from the same features/init:")
    print(f"    loss before each step: Keras {kl[:3]} convnet {cl[:3]}; max |d| "
          f"{np.abs(kl - cl).max():.3g}")
    moved = np.abs(kk - kernel).max()
    print(f"    kernel after: max |d| {np.abs(kk - ck).max():.3g} (Keras moved it {moved:.3g}); "
          f"bias max |d| {np.abs(kb - cb).max():.3g}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.environ.get("CN_BUILD_DIR", str(ROOT / "build")))
    p.add_argument("--resize", default="tf-bilinear", help="convnet's policy for stages 3 and 4")
    p.add_argument("--decode", default="tf", help="convnet's decoder for stages 3 and 4")
    p.add_argument("--per-class", type=int, default=20, help="cats_dogs images per class")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--head-seeds", default="",
                   help="also train the head on cats_dogs for these seeds (e.g. 1,2,3), the same "
                   "draws in both programs (stage 6, a few minutes)")
    p.add_argument("--head-epochs", type=int, default=10)
    args = p.parse_args()
    args.head_seeds = [int(s) for s in args.head_seeds.split(",") if s]
    work = pathlib.Path(tempfile.mkdtemp(prefix="replay_keras."))
    try:
        compare(args, work)
        if args.head_seeds:
            head_runs(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
