#!/usr/bin/env python3
"""Writes small seed files for the libFuzzer targets in fuzz/, one folder per target.

    .venv/bin/python fuzz/make_corpus.py fuzz/corpus [--convnet build/convnet]
                                                     [--fuzz-build build-fuzz]

Every file is made for the purpose and kept tiny (a few hundred bytes to a few KB), so that each
fuzz execution is fast and the mutations land on headers and structure rather than on pixel data.
Needs numpy, Pillow, onnx, h5py and TensorFlow/Keras (the project's .venv); the PyTorch files come
from Debian's /usr/bin/python3 (python3-torch), in a child process. Two groups need convnet
itself and are skipped, with a message, when their programs are not given:
  --convnet PATH      the convnet CLI, to convert the tiny Keras model into .cnm files
  --fuzz-build DIR    a build with -DCN_FUZZ=ON, whose fuzz_sessions writes a session checkpoint
The output is deterministic apart from what Keras and torch put in their files.
"""

import argparse
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np

rng = np.random.default_rng(14)


def write(out, target, name, data):
    folder = os.path.join(out, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def pixels(h, w, c):
    return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)


# ---- images -------------------------------------------------------------------------------


def pil_bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def exif_orientation(value):
    """A minimal little-endian TIFF/EXIF block with one Orientation (0x0112) entry."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + b"\0\0\0\0"
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_interlaced(rgb):
    """Adam7-interlaced 8-bit RGB PNG (Pillow only writes non-interlaced files)."""
    h, w, _ = rgb.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
              (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        for row in sub:
            raw += b"\0" + row.tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def images(out):
    from PIL import Image
    rgb = Image.fromarray(pixels(6, 5, 3))  # uint8 (h, w, 3): RGB
    grey = Image.fromarray(pixels(5, 7, 1)[:, :, 0])  # uint8 (h, w): L
    t = "image"
    write(out, t, "baseline.jpg", pil_bytes(rgb, "JPEG", quality=80))
    write(out, t, "progressive.jpg", pil_bytes(rgb, "JPEG", progressive=True))
    write(out, t, "subsampled420.jpg", pil_bytes(rgb, "JPEG", subsampling=2))
    write(out, t, "grey.jpg", pil_bytes(grey, "JPEG"))
    write(out, t, "cmyk.jpg", pil_bytes(rgb.convert("CMYK"), "JPEG"))
    write(out, t, "exif_orient6.jpg", pil_bytes(rgb, "JPEG", exif=exif_orientation(6)))
    write(out, t, "exif_orient3.jpg", pil_bytes(rgb, "JPEG", exif=exif_orientation(3)))
    write(out, t, "rgb.png", pil_bytes(rgb, "PNG"))
    write(out, t, "grey.png", pil_bytes(grey, "PNG"))
    write(out, t, "palette.png", pil_bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4), "PNG"))
    write(out, t, "grey16.png", pil_bytes(Image.fromarray(
        rng.integers(0, 65536, size=(4, 3), dtype=np.uint16)), "PNG"))
    write(out, t, "rgba.png", pil_bytes(rgb.convert("RGBA"), "PNG"))
    write(out, t, "grey_alpha.png", pil_bytes(grey.convert("LA"), "PNG"))
    write(out, t, "interlaced.png", png_interlaced(pixels(9, 10, 3)))
    write(out, t, "rgb.bmp", pil_bytes(rgb, "BMP"))
    write(out, t, "grey.bmp", pil_bytes(grey, "BMP"))
    write(out, t, "rgb.ppm", pil_bytes(rgb, "PPM"))
    write(out, t, "grey.pgm", pil_bytes(grey, "PPM"))


# ---- arrays -------------------------------------------------------------------------------


def npy_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def npy(out):
    t = "npy"
    base = rng.standard_normal((2, 3, 4))
    for dt in ["<f4", "<f8", ">f4", "<f2", "|u1", "|i1", "<i2", "<i4", "<i8", "<u2", "|b1"]:
        name = dt.replace("<", "le_").replace(">", "be_").replace("|", "")
        write(out, t, "x_%s.npy" % name, npy_bytes((base * 10).astype(dt)))
    write(out, t, "fortran.npy", npy_bytes(np.asfortranarray(base.astype("<f4"))))
    write(out, t, "scalar0d.npy", npy_bytes(np.array(3.5, dtype="<f4")))
    write(out, t, "empty.npy", npy_bytes(np.zeros((0, 3), dtype="<f4")))
    write(out, t, "nhwc.npy", npy_bytes(rng.standard_normal((1, 4, 4, 3)).astype("<f4")))


def idx_bytes(code, dims, payload):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx(out):
    t = "idx"
    files = {
        "labels_u8_r1": idx_bytes(0x08, [10], bytes(range(10))),
        "images_u8_r3": idx_bytes(0x08, [2, 4, 3], pixels(2, 4, 3).tobytes()),
        "u8_r2": idx_bytes(0x08, [3, 5], pixels(3, 5, 1).tobytes()),
        "i8_r1": idx_bytes(0x09, [4], bytes([0, 127, 128, 255])),
        "i16_r2": idx_bytes(0x0B, [2, 2], np.arange(4, dtype=">i2").tobytes()),
        "i32_r1": idx_bytes(0x0C, [3], np.arange(3, dtype=">i4").tobytes()),
        "f32_r2": idx_bytes(0x0D, [2, 3], rng.standard_normal((2, 3)).astype(">f4").tobytes()),
        "f64_r3": idx_bytes(0x0E, [1, 2, 2], rng.standard_normal(4).astype(">f8").tobytes()),
    }
    for name, data in files.items():
        write(out, t, name + "-idx", data)
        write(out, t, name + "-idx.gz", gzip.compress(data, mtime=0))
    two = gzip.compress(files["u8_r2"][:10], mtime=0) + gzip.compress(files["u8_r2"][10:], mtime=0)
    write(out, t, "two_members-idx.gz", two)


# ---- ONNX ---------------------------------------------------------------------------------


def onnx_models(out):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)

    def save(name, nodes, inputs, outputs, inits, opset=13):
        g = helper.make_graph(nodes, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7
        write(out, "onnx", name + ".onnx", m.SerializeToString())

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    save("conv", [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1],
                                   strides=[1, 1]), helper.make_node("Relu", ["y"], ["z"])],
         [vi("x", [1, 2, 5, 5])], [vi("z", [1, 3, 5, 5])],
         [init("w", rng.standard_normal((3, 2, 3, 3))), init("b", [0.1, 0.2, 0.3])])
    save("gemm", [helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1),
                  helper.make_node("Softmax", ["y"], ["p"], axis=1)],
         [vi("a", [1, 4])], [vi("p", [1, 3])],
         [init("w", rng.standard_normal((3, 4))), init("c", [0, 1, 2])])
    save("resize", [helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest")],
         [vi("x", [1, 1, 2, 2])], [vi("y", [1, 1, 4, 4])],
         [init("roi", []), init("scales", [1, 1, 2, 2])])
    save("pool_add", [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2],
                                       strides=[2, 2]),
                      helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                      helper.make_node("Add", ["p", "g"], ["y"])],
         [vi("x", [1, 2, 4, 4])], [vi("y", [1, 2, 2, 2])], [])
    save("bn_reshape", [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"]),
                        helper.make_node("Flatten", ["n"], ["f"]),
                        helper.make_node("MatMul", ["f", "w"], ["y"])],
         [vi("x", [1, 2, 2, 2])], [vi("y", [1, 2])],
         [init("s", [1, 2]), init("b", [0, 1]), init("m", [0, 0]), init("v", [1, 1]),
          init("w", rng.standard_normal((8, 2)))])
    save("concat_two_inputs", [helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
                               helper.make_node("Sigmoid", ["y"], ["z"])],
         [vi("a", [1, 2, 3, 3]), vi("b", [1, 1, 3, 3])], [vi("z", [1, 3, 3, 3])], [])


# ---- PyTorch (Debian's torch, in a child process) -----------------------------------------

TORCH_SCRIPT = r"""
import collections, sys, torch
torch.manual_seed(14)
# The names and shapes of tests/pytorch_small_model.h, so a state that reads also loads.
sd = collections.OrderedDict()
sd["c.weight"] = torch.randn(3, 2, 3, 3)
sd["c.bias"] = torch.randn(3)
sd["bn.weight"] = torch.rand(3)
sd["bn.bias"] = torch.randn(3)
sd["bn.running_mean"] = torch.randn(3)
sd["bn.running_var"] = torch.rand(3) + 0.5
sd["bn.num_batches_tracked"] = torch.tensor(7)
sd["d.weight"] = torch.randn(3, 1, 3, 3)
big = torch.randn(4, 3)
sd["fc.weight"] = big[1:3]          # a view: a storage offset into a shared storage
sd["fc.bias"] = torch.randn(2)
out = sys.argv[1]
torch.save(sd, out + "/small_zip.pth")
torch.save(sd, out + "/small_legacy.pth", _use_new_zipfile_serialization=False)
torch.save({"state_dict": sd, "epoch": 3}, out + "/wrapped_zip.pth")
mixed = collections.OrderedDict(a=torch.arange(4, dtype=torch.int64), b=torch.ones(2, 2).half(),
                                c=torch.zeros(2, 3).t(), d=torch.tensor([1, 0], dtype=torch.uint8))
torch.save(mixed, out + "/dtypes_zip.pth")
torch.save(mixed, out + "/dtypes_legacy.pth", _use_new_zipfile_serialization=False)
"""


def pytorch(out):
    folder = os.path.join(out, "pytorch")
    os.makedirs(folder, exist_ok=True)
    r = subprocess.run(["/usr/bin/python3", "-c", TORCH_SCRIPT, folder])
    if r.returncode != 0:
        print("make_corpus: skipped pytorch (Debian's python3-torch failed)", file=sys.stderr)


# ---- safetensors, .cnm, session checkpoints -----------------------------------------------


def safetensors_bytes(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def without_checksum(data):
    """The same safetensors file without its convnet.sha256 entry, so that mutations of the data
    reach the readers behind the checksum check (a checksum is optional)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.get("__metadata__", {}).pop("convnet.sha256", None)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def safetensors(out):
    t = "safetensors"
    f32 = rng.standard_normal(6).astype("<f4").tobytes()
    write(out, t, "plain.safetensors", safetensors_bytes({
        "w": ("F32", [2, 3], f32), "steps": ("I64", [1], struct.pack("<q", 5)),
        "bytes": ("U8", [3], b"abc")}))
    write(out, t, "meta.safetensors", safetensors_bytes(
        {"x": ("F16", [2], b"\0<\0<"), "s": ("F32", [], f32[:4])}, {"format": "pt", "k": "v"}))
    write(out, t, "empty.safetensors", safetensors_bytes({}, {}))


def cnm(out, convnet, keras_h5):
    if not convnet or not keras_h5:
        print("make_corpus: skipped .cnm seeds (no --convnet, or no Keras model)", file=sys.stderr)
        return
    path = os.path.join(out, "safetensors", "tiny.cnm")
    subprocess.run([convnet, "convert", keras_h5, path], check=True)
    with open(path, "rb") as f:
        data = f.read()
    write(out, "safetensors", "tiny_nosum.cnm", without_checksum(data))


def sessions(out, fuzz_build):
    exe = os.path.join(fuzz_build or "", "fuzz_sessions")
    if not fuzz_build or not os.path.exists(exe):
        print("make_corpus: skipped session checkpoints (no --fuzz-build with fuzz_sessions)",
              file=sys.stderr)
        return
    folder = os.path.join(out, "sessions")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "two_sessions.ckpt")
    env = dict(os.environ, CN_FUZZ_SESSIONS_SEED=path)
    subprocess.run([exe], env=env, check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as f:
        data = f.read()
    write(out, "sessions", "two_sessions_nosum.ckpt", without_checksum(data))


# ---- Keras --------------------------------------------------------------------------------


def keras_models(out):
    """Writes the Keras .h5 and JSON seeds; returns the path of the full-model .h5 file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers
    keras.utils.set_random_seed(14)
    # The shapes of fuzz_keras_h5.c's small model, so that weight files match it.
    seq = keras.Sequential([
        keras.Input((6, 6, 2), name="in"), layers.Conv2D(3, 3, padding="same", activation="relu",
                                                         name="conv"),
        layers.BatchNormalization(name="bn"), layers.Flatten(name="flatten"),
        layers.Dense(2, name="dense")], name="small")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = layers.Dense(3, activation="tanh", name="shared")
    merged = layers.Add(name="add")([shared(a), shared(b)])
    siamese = keras.Model([a, b], layers.Dense(1, name="head")(merged), name="siamese")
    x = keras.Input((8, 8, 1), name="img")
    y = layers.DepthwiseConv2D(3, name="dw")(x)
    y = layers.MaxPooling2D(name="pool")(y)
    y = layers.Conv2DTranspose(2, 3, strides=2, name="up")(y)
    y = layers.GlobalAveragePooling2D(name="gap")(y)
    y = layers.Dropout(0.2, name="drop")(y)
    small_cnn = keras.Model(x, layers.Dense(3, activation="softmax", name="out")(y), name="cnn")
    folder = os.path.join(out, "keras_h5")
    os.makedirs(folder, exist_ok=True)
    full = os.path.join(folder, "small_full.h5")
    seq.save(full)
    seq.save_weights(os.path.join(folder, "small.weights.h5"))
    for name, m in [("small", seq), ("siamese", siamese), ("cnn", small_cnn)]:
        write(out, "keras_json", name + ".json", m.to_json().encode())
    nested = keras.Sequential([keras.Input((6, 6, 2)), seq, layers.Softmax(name="sm")], name="outer")
    write(out, "keras_json", "nested.json", nested.to_json().encode())
    write(out, "keras_h5", "small.json", seq.to_json().encode())
    return full


def transform(out):
    for i, n in enumerate([3, 40, 200, 600]):
        write(out, "transform", "random%d" % i, rng.integers(0, 256, n, dtype=np.uint8).tobytes())


GROUPS = ["image", "npy", "idx", "onnx", "pytorch", "safetensors", "transform", "keras", "cnm",
          "sessions"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="corpus folder (one subfolder per target)")
    p.add_argument("--convnet", help="the convnet CLI, for .cnm seeds")
    p.add_argument("--fuzz-build", help="a CN_FUZZ build folder, for session checkpoint seeds")
    p.add_argument("--only", help="comma-separated groups to write (default: all): " +
                   ",".join(GROUPS))
    a = p.parse_args()
    only = a.only.split(",") if a.only else GROUPS
    unknown = set(only) - set(GROUPS)
    if unknown:
        p.error("unknown group(s) %s" % ",".join(sorted(unknown)))
    simple = {"image": images, "npy": npy, "idx": idx, "onnx": onnx_models, "pytorch": pytorch,
              "safetensors": safetensors, "transform": transform}
    for group in only:
        if group in simple:
            simple[group](a.out)
    if "keras" in only or "cnm" in only:
        full_h5 = keras_models(a.out)
        if "cnm" in only:
            cnm(a.out, a.convnet, full_h5)
    if "sessions" in only:
        sessions(a.out, a.fuzz_build)


if __name__ == "__main__":
    main()
