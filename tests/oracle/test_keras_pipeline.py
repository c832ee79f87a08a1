"""convnet's training input pipeline for a Keras base against Keras's own, stage by stage.

Keras 3's image_dataset_from_directory(image_size=(224, 224), interpolation="bilinear") decodes
with tf.io.decode_image(channels=3, expand_animations=False), resizes with
tf.image.resize(method="bilinear") (antialias=False, float32 result) and the model's
preprocess_input ("tf" for MobileNet) follows. convnet's --decode tf and --resize tf-bilinear,
the training defaults for a Keras base, replay it; bench/replay_keras_pipeline.py prints the
same comparison on a larger set.

Measured here (TensorFlow 2.21): decoding, resizing and the prepared tensor are bit-identical
(0 levels), so the tolerances are 0; the pooled MobileNet 0.25 features of `convnet train`'s
cache differ from Keras's by at most 4.5e-5 (forward-pass float32 arithmetic; the bar is 2e-4).
The previous defaults (PIL decoding: libjpeg's accurate DCT, EXIF rotation; OpenCV's 8-bit
bilinear) were up to 20 levels (decoding) and 0.77 levels (resize) away, which is checked too so
that the tests show the difference they guard."""
import ctypes
import json
import os
import struct
import subprocess

import numpy as np
import pytest

from conftest import SHARED, need_file
from cn_types import Image, InputSpec

SIZE = 224
DECODE = {"pil": 0, "tf": 1}
RESIZE = {"bilinear": 1, "tf-bilinear": 4}
PRE_RAW, PRE_TF = 0, 2
H5 = SHARED / "weights" / "keras" / "mobilenet_v1_0.25_224.h5"


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def lib(libconvnet):
    libconvnet.cn_image_load_as.argtypes = [ctypes.c_char_p, ctypes.c_int,
                                            ctypes.POINTER(Image)]
    libconvnet.cn_image_free.argtypes = [ctypes.POINTER(Image)]
    libconvnet.cn_image_prepare.argtypes = [ctypes.POINTER(Image), ctypes.POINTER(InputSpec),
                                            ctypes.POINTER(ctypes.c_float)]
    libconvnet.cn_last_error.restype = ctypes.c_char_p
    return libconvnet


def synthetic_files(folder):
    """Files for the decoders' corner cases, made from one shared photo."""
    from PIL import Image as P
    from PIL import ImageCms
    base = P.open(need_file(SHARED / "images" / "darknet_dog.jpg")).convert("RGB")
    base = base.resize((160, 120))
    exif = P.Exif()
    exif[0x0112] = 6
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    made = {"grey.jpg": (base.convert("L"), {}), "cmyk.jpg": (base.convert("CMYK"), {}),
            "exif6.jpg": (base, {"exif": exif.tobytes()}),
            "icc.jpg": (base, {"icc_profile": srgb}),
            "progressive.jpg": (base, {"progressive": True}),
            "s444.jpg": (base, {"subsampling": 0, "quality": 95}),
            "alpha.png": (base.convert("RGBA"), {}), "palette.png": (base.convert("P"), {}),
            "grey.png": (base.convert("L"), {})}
    for name, (img, kw) in made.items():
        img.save(folder / name, **kw)
    grey16 = (np.asarray(base.convert("L"), np.uint16) * 200).astype(np.uint16)
    P.fromarray(grey16).save(folder / "grey16.png")
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_data):
    """Real photos (cats vs dogs, ImageNet samples, the shared photos) and synthetic files."""
    folder = tmp_path_factory.mktemp("pipeline")
    photos = sorted((shared_data / "cats_dogs" / "train" / "cats").iterdir())[:6]
    photos += sorted((shared_data / "imagenet-samples").glob("*.JPEG"))[::100]
    photos += sorted(p for p in (shared_data / "images").iterdir() if p.suffix == ".jpg")
    return photos + synthetic_files(folder)


def load(lib, path, decoder):
    img = Image()
    assert lib.cn_image_load_as(str(path).encode(), DECODE[decoder], ctypes.byref(img)) == 0, \
        lib.cn_last_error().decode()
    out = np.ctypeslib.as_array(img.pixels, (img.height, img.width, 3)).copy()
    lib.cn_image_free(ctypes.byref(img))
    return out


def prepare(lib, pixels, resize, preprocess, crop=0.0, size=SIZE):
    pixels = np.ascontiguousarray(pixels, np.uint8)
    img = Image(pixels.shape[1], pixels.shape[0],
                pixels.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    spec = InputSpec(size, size, 3, RESIZE[resize], crop, preprocess, 0, 0)
    out = np.zeros((size, size, 3), np.float32)
    assert lib.cn_image_prepare(ctypes.byref(img), ctypes.byref(spec),
                                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == 0, \
        lib.cn_last_error().decode()
    return out


def tf_decode(tf, path):
    data = tf.io.read_file(str(path))
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def test_tf_decoder_is_tf_decode_image(lib, tf, files):
    """--decode tf: every file, photos and corner cases, bit-identical (tolerance 0 levels)."""
    for path in files:
        ours, want = load(lib, path, "tf"), tf_decode(tf, path)
        assert ours.shape == want.shape, path.name
        assert np.array_equal(ours, want), f"{path.name}: max {np.abs(ours - want.astype(int)).max()}"


def test_pil_decoder_differs_from_tf_where_expected(lib, tf, files):
    """The PIL decoder (classify's) is TF's but for the DCT, EXIF rotation and 16-bit grey."""
    by_name = {p.name: p for p in files}
    assert load(lib, by_name["exif6.jpg"], "pil").shape == (160, 120, 3)  # rotated
    assert load(lib, by_name["exif6.jpg"], "tf").shape == (120, 160, 3)  # as stored
    jpeg = files[0]  # a cats vs dogs JPEG: accurate and fast DCT differ by a few levels
    assert np.abs(load(lib, jpeg, "pil").astype(int) - tf_decode(tf, jpeg)).max() > 0
    assert np.array_equal(load(lib, by_name["grey.png"], "pil"), load(lib, by_name["grey.png"], "tf"))


def test_tf_bilinear_is_tf_image_resize(lib, tf, files):
    """--resize tf-bilinear keeps float pixels: tf.image.resize's bilinear exactly (tolerance 0),
    shrinking, enlarging and in odd ratios; OpenCV's 8-bit bilinear is up to 0.77 levels off."""
    worst_cv = 0.0
    for path in files[:8]:
        pixels = tf_decode(tf, path)
        for size in (SIZE, 37, 501):
            want = tf.image.resize(pixels, (size, size), method="bilinear").numpy()
            ours = prepare(lib, pixels, "tf-bilinear", PRE_RAW, size=size)
            assert np.array_equal(ours, want), f"{path.name} {size}: {np.abs(ours - want).max()}"
        cv = prepare(lib, pixels, "bilinear", PRE_RAW)
        want = tf.image.resize(pixels, (SIZE, SIZE), method="bilinear").numpy()
        worst_cv = max(worst_cv, float(np.abs(cv - want).max()))
    assert 0.3 < worst_cv < 1.0


def test_tf_bilinear_with_crop_is_resize_then_centre(lib, tf, files):
    """With --crop F the float image is resized to size / F and its centre kept."""
    pixels = tf_decode(tf, files[0])
    big = round(SIZE / 0.875)
    full = tf.image.resize(pixels, (big, big), method="bilinear").numpy()
    off = (big - SIZE) // 2
    ours = prepare(lib, pixels, "tf-bilinear", PRE_RAW, crop=0.875)
    assert np.array_equal(ours, full[off:off + SIZE, off:off + SIZE])


def keras_dataset(folder):
    keras = pytest.importorskip("keras")
    ds = keras.utils.image_dataset_from_directory(
        str(folder), image_size=(SIZE, SIZE), interpolation="bilinear", shuffle=False,
        batch_size=64, verbose=False)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory, files):
    """Two classes of symbolic links to the files (Keras reads .jpg/.png, not .JPEG)."""
    folder = tmp_path_factory.mktemp("classes")
    for i, path in enumerate(files):
        d = folder / ("a" if i % 2 else "b")
        d.mkdir(exist_ok=True)
        (d / f"{i:03d}{path.suffix.lower()}").symlink_to(path)
    return folder


def listing(folder):
    return [p for c in sorted(folder.iterdir()) for p in sorted(c.iterdir())]


def test_prepared_tensor_is_image_dataset_from_directory(lib, class_folder):
    """decode tf + tf-bilinear + "tf" preprocessing is image_dataset_from_directory's batch run
    through mobilenet.preprocess_input (x / 127.5 - 1), to 1 ulp (measured 0)."""
    x, _ = keras_dataset(class_folder)
    want = x / np.float32(127.5) - np.float32(1)
    for i, path in enumerate(listing(class_folder)):
        ours = prepare(lib, load(lib, path, "tf"), "tf-bilinear", PRE_TF)
        assert np.abs(ours - want[i]).max() <= 1.2e-7, path.name


def read_features(cache):
    out = []
    for chunk in sorted(cache.rglob("*.features")):
        raw = chunk.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        t = json.loads(raw[8:8 + n])["features"]
        lo, hi = t["data_offsets"]
        out.append(np.frombuffer(raw[8 + n + lo:8 + n + hi], np.float32).reshape(t["shape"]))
    return np.concatenate(out)


def test_train_features_match_keras(convnet_bin, class_folder, tmp_path):
    """`convnet train --base mobilenet.h5` with its defaults caches the pooled features Keras
    computes from image_dataset_from_directory: max difference 4.5e-5 measured, bar 2e-4 (with
    the previous defaults: 0.37)."""
    keras = pytest.importorskip("keras")
    need_file(H5)
    cache = tmp_path / "cache"
    proc = subprocess.run([convnet_bin, "train", "--base", str(H5), "--data", str(class_folder),
                           "--val", str(class_folder), "--epochs", "1", "--cache", str(cache),
                           "--out", str(tmp_path / "m.cnm"), "--threads", "2"],
                          capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    assert proc.returncode == 0, proc.stderr
    ours = read_features(cache)
    full = keras.applications.MobileNet(alpha=0.25, weights=None, input_shape=(SIZE, SIZE, 3))
    full.load_weights(str(H5))
    pooled = keras.Model(full.input, keras.layers.GlobalAveragePooling2D()(
        full.get_layer("conv_pw_13_relu").output))
    x, _ = keras_dataset(class_folder)
    want = pooled.predict(x / np.float32(127.5) - np.float32(1), verbose=0)
    assert ours.shape == want.shape
    assert np.abs(ours - want).max() < 2e-4
