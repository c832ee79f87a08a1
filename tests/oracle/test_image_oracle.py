"""convnet's image module against PIL and OpenCV, through the shared library (ctypes).

Decoding must match PIL's convert("RGB") (exact for PNG, BMP and PPM; JPEG within the measured
tolerance JPEG_TOLERANCE), each resize policy must match the tool it is named after, and the
preprocessing modes must match Keras' own preprocess_input."""
import ctypes
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import need_file

cv2 = pytest.importorskip("cv2")

PHOTOS = ["darknet_dog.jpg", "darknet_eagle.jpg", "darknet_horses.jpg", "coral_cat_720p.jpg",
          "coral_hot_dog.jpg", "coral_resized_cat.bmp", "coral_mnist_nine.bmp",
          "skimage_chelsea.png", "skimage_coffee.png", "ppm224/chelsea_224.ppm"]
SAMPLES = ["n01440764_tench.JPEG", "n02951585_can_opener.JPEG", "n01443537_goldfish.JPEG",
           "n01530575_brambling.JPEG", "n01514668_cock.JPEG"]
# libjpeg-turbo 2.1 here and PIL's bundled libjpeg-turbo use the same integer IDCT and
# upsampling; measured difference on the photos above: 0 levels.
JPEG_TOLERANCE = 0
RESIZE = {"nearest": 0, "bilinear": 1, "area": 2, "pil-bilinear": 3}
PRE = {"raw": 0, "caffe": 1, "tf": 2, "torch": 3, "unit": 4}
# (width, height) targets relative to a source: up- and down-scaling, non-integer factors.
SIZES = [(224, 224), (299, 299), (97, 131), (1000, 700), (333, 250)]


class CnImage(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int),
                ("pixels", ctypes.POINTER(ctypes.c_uint8))]


class CnInputSpec(ctypes.Structure):
    _fields_ = [("height", ctypes.c_int), ("width", ctypes.c_int), ("channels", ctypes.c_int),
                ("resize", ctypes.c_int), ("crop", ctypes.c_double), ("preprocess", ctypes.c_int),
                ("channels_first", ctypes.c_int), ("decoder", ctypes.c_int)]


@pytest.fixture(scope="module")
def lib(libconvnet):
    libconvnet.cn_image_decode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                           ctypes.POINTER(CnImage)]
    libconvnet.cn_image_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(CnImage)]
    libconvnet.cn_image_free.argtypes = [ctypes.POINTER(CnImage)]
    libconvnet.cn_image_resize.argtypes = [ctypes.POINTER(CnImage), ctypes.c_int, ctypes.c_int,
                                           ctypes.c_int, ctypes.POINTER(CnImage)]
    libconvnet.cn_image_center_crop.argtypes = [ctypes.POINTER(CnImage), ctypes.c_double,
                                                ctypes.POINTER(CnImage)]
    libconvnet.cn_image_prepare.argtypes = [ctypes.POINTER(CnImage), ctypes.POINTER(CnInputSpec),
                                            ctypes.POINTER(ctypes.c_float)]
    libconvnet.cn_preprocess_apply.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                               ctypes.c_size_t]
    libconvnet.cn_preprocess_apply.restype = None
    libconvnet.cn_last_error.restype = ctypes.c_char_p
    return libconvnet


def to_array(img):
    arr = np.ctypeslib.as_array(img.pixels, shape=(img.height, img.width, 3)).copy()
    return arr


def decode_bytes(lib, data, name="mem"):
    img = CnImage()
    st = lib.cn_image_decode(data, len(data), name.encode(), ctypes.byref(img))
    assert st == 0, lib.cn_last_error().decode()
    arr = to_array(img)
    lib.cn_image_free(ctypes.byref(img))
    return arr


def load(lib, path):
    return decode_bytes(lib, path.read_bytes(), str(path))


def from_array(arr):
    """A cn_image viewing a numpy HxWx3 uint8 array (kept alive by the caller)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    img = CnImage(arr.shape[1], arr.shape[0], arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    return img, arr


def resize(lib, arr, width, height, policy):
    src, keep = from_array(arr)
    dst = CnImage()
    st = lib.cn_image_resize(ctypes.byref(src), width, height, RESIZE[policy], ctypes.byref(dst))
    assert st == 0, lib.cn_last_error().decode()
    out = to_array(dst)
    lib.cn_image_free(ctypes.byref(dst))
    return out


def pil_rgb(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


def max_diff(a, b):
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def photo(shared_data, name):
    return need_file(shared_data / "images" / name)


@pytest.mark.parametrize("name", PHOTOS)
def test_decode_photos_match_pil(lib, shared_data, name):
    path = photo(shared_data, name)
    tol = JPEG_TOLERANCE if name.endswith(".jpg") else 0
    assert max_diff(load(lib, path), pil_rgb(path)) <= tol


@pytest.mark.parametrize("name", SAMPLES)
def test_decode_imagenet_samples_match_pil(lib, shared_data, name):
    path = need_file(shared_data / "imagenet-samples" / name)
    assert max_diff(load(lib, path), pil_rgb(path)) <= JPEG_TOLERANCE


def synthetic(width=61, height=47, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(pil_image, fmt, **kw):
    buf = io.BytesIO()
    pil_image.save(buf, fmt, **kw)
    return buf.getvalue()


def reopened_rgb(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


PNG_MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "RGB16", "RGBA16", "LA16", "P_tRNS",
             "L2", "L4", "interlaced"]


def png_variant(mode):
    rgb = synthetic()
    base = Image.fromarray(rgb)
    if mode in ("RGB", "RGBA", "L", "LA", "1"):
        return encode(base.convert(mode), "PNG")
    if mode == "P":
        return encode(base.quantize(200), "PNG")
    if mode == "P_tRNS":
        return encode(base.quantize(16), "PNG", transparency=3)
    if mode == "interlaced":
        return write_png(rgb.shape[1], rgb.shape[0], 8, 2, rgb.tobytes(), interlace=True)
    if mode == "I;16":
        grey = (np.random.default_rng(1).integers(0, 1024, rgb.shape[:2])).astype(np.uint16)
        return encode(Image.fromarray(grey), "PNG")
    return encode_png_raw(mode, rgb)


def png_chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload +
            struct.pack(">I", zlib.crc32(kind + payload) & 0xffffffff))


def write_png(width, height, depth, colour, raw, interlace=False, samples=3, packed_width=None):
    """A minimal PNG writer (filter 0) for 16-bit, 2/4-bit and interlaced variants."""
    bpp = max(samples * depth // 8, 1)
    arr = np.frombuffer(raw, np.uint8).reshape(height, packed_width or width * bpp)
    if not interlace:
        body = b"".join(b"\0" + arr[y].tobytes() for y in range(height))
    else:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        pix = arr.reshape(height, width, bpp)
        body = b""
        for x0, y0, dx, dy in passes:
            sub = pix[y0::dy, x0::dx]
            if sub.size:
                body += b"".join(b"\0" + row.tobytes() for row in sub)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 1 if interlace else 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(body)) + png_chunk(b"IEND", b""))


def encode_png_raw(mode, rgb):
    rng = np.random.default_rng(2)
    h, w = rgb.shape[:2]
    if mode == "RGB16":
        a = rng.integers(0, 65536, (h, w, 3)).astype(">u2")
        return write_png(w, h, 16, 2, a.tobytes(), samples=3)
    if mode == "RGBA16":
        a = rng.integers(0, 65536, (h, w, 4)).astype(">u2")
        return write_png(w, h, 16, 6, a.tobytes(), samples=4)
    if mode == "LA16":
        a = rng.integers(0, 65536, (h, w, 2)).astype(">u2")
        return write_png(w, h, 16, 4, a.tobytes(), samples=2)
    depth = 2 if mode == "L2" else 4
    w8 = (w * depth + 7) // 8 * 8 // depth
    vals = rng.integers(0, 1 << depth, (h, w8)).astype(np.uint8)
    per = 8 // depth
    packed = np.zeros((h, w8 // per), np.uint8)
    for i in range(per):
        packed |= vals[:, i::per] << (8 - depth * (i + 1))
    return write_png(w, h, depth, 0, packed.tobytes(), samples=1, packed_width=w8 // per)


@pytest.mark.parametrize("mode", PNG_MODES)
def test_png_variants_match_pil(lib, mode):
    data = png_variant(mode)
    assert max_diff(decode_bytes(lib, data), reopened_rgb(data)) == 0


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1", "RGBA"])
def test_bmp_variants_match_pil(lib, mode):
    base = Image.fromarray(synthetic(63, 45))
    im = base.quantize(100) if mode == "P" else base.convert(mode)
    data = encode(im, "BMP")
    assert max_diff(decode_bytes(lib, data), reopened_rgb(data)) == 0


def test_bmp_top_down_matches(lib):
    rgb = synthetic(10, 7)
    data = bytearray(encode(Image.fromarray(rgb), "BMP"))
    # Flip to top-down: negative height and rows reversed.
    offset = int.from_bytes(data[10:14], "little")
    stride = (10 * 3 + 3) // 4 * 4
    rows = [bytes(data[offset + y * stride: offset + (y + 1) * stride]) for y in range(7)]
    data[22:26] = (-7).to_bytes(4, "little", signed=True)
    data[offset:] = b"".join(reversed(rows))
    assert max_diff(decode_bytes(lib, bytes(data)), rgb) == 0


@pytest.mark.parametrize("colours", [1 << 28, 0xFFFFFFFF])
def test_bmp_oversized_palette_refused_like_pil(lib, colours):
    """An 8-bit BMP announcing an absurd palette: Pillow refuses it, and so do we. (Pillow reads up
    to 65536 entries whatever the bit depth; convnet refuses any count above 2^bits, test_image.c.)"""
    data = bytearray(encode(Image.fromarray(synthetic(4, 3)).convert("P"), "BMP"))
    assert data[28] == 8
    data[46:50] = colours.to_bytes(4, "little")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(bytes(data))).convert("RGB")
    img = CnImage()
    st = lib.cn_image_decode(bytes(data), len(data), b"pal.bmp", ctypes.byref(img))
    assert st != 0
    assert "pal.bmp: BMP palette of" in lib.cn_last_error().decode()


@pytest.mark.parametrize("magic,maxval", [("P6", 255), ("P6", 100), ("P6", 1000), ("P6", 65535),
                                          ("P5", 255), ("P5", 7), ("P5", 10)])
def test_pnm_matches_pil(lib, magic, maxval):
    rng = np.random.default_rng(3)
    ch = 3 if magic == "P6" else 1
    vals = rng.integers(0, maxval + 1, (9, 11, ch))
    body = vals.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    data = f"{magic}\n# a comment\n11 9\n{maxval}\n".encode() + body
    assert max_diff(decode_bytes(lib, data), reopened_rgb(data)) == 0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(lib, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(synthetic(40, 24)), "JPEG", exif=exif, quality=95)
    assert max_diff(decode_bytes(lib, data), reopened_rgb(data)) <= JPEG_TOLERANCE


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_jpeg_grey_and_cmyk_match_pil(lib, mode):
    data = encode(Image.fromarray(synthetic(40, 24)).convert(mode), "JPEG", quality=90)
    assert max_diff(decode_bytes(lib, data), reopened_rgb(data)) <= JPEG_TOLERANCE


def sources(shared_data):
    out = [synthetic(61, 47), synthetic(7, 5, seed=4)]
    for name in ("skimage_chelsea.png", "darknet_dog.jpg"):
        path = shared_data / "images" / name
        if path.exists():
            out.append(pil_rgb(path))
    return out


def cv_resize(arr, w, h, flag):
    return cv2.resize(arr, (w, h), interpolation=flag)


def targets(arr):
    h, w = arr.shape[:2]
    return SIZES + [(w * 2, h * 2), (max(w // 2, 1), max(h // 2, 1)), (max(w // 3, 1), max(h // 3, 1)),
                    (w + 1, h - 1 if h > 1 else h)]


def check_policy(lib, shared_data, policy, reference, tol):
    worst = 0
    for arr in sources(shared_data):
        for w, h in targets(arr):
            worst = max(worst, max_diff(resize(lib, arr, w, h, policy), reference(arr, w, h)))
    assert worst <= tol, f"{policy}: max difference {worst}"
    return worst


def test_nearest_matches_pil(lib, shared_data):
    check_policy(lib, shared_data, "nearest",
                 lambda a, w, h: np.asarray(Image.fromarray(a).resize((w, h), Image.NEAREST)), 0)


def test_pil_bilinear_matches_pil(lib, shared_data):
    # Exact on these sizes; Pillow 13 runs the vertical pass first for some strong height
    # reductions that convnet does not predict, where it can differ by 1.
    check_policy(lib, shared_data, "pil-bilinear",
                 lambda a, w, h: np.asarray(Image.fromarray(a).resize((w, h), Image.BILINEAR)), 1)


# Measured exact (0 levels) on 327 size pairs against OpenCV 5.0; the brief allows 1.
def test_bilinear_matches_cv2(lib, shared_data):
    check_policy(lib, shared_data, "bilinear",
                 lambda a, w, h: cv_resize(a, w, h, cv2.INTER_LINEAR), 1)


# Keras 3's image_dataset_from_directory calls tf.image.resize(method="bilinear") with TF's
# default antialias=False (keras/src/utils/image_dataset_utils.py, load_image). convnet's
# "bilinear" (OpenCV's) has the same geometry but rounds to 8 bits with fixed-point weights, TF
# keeps floats: measured max 0.76 levels. `convnet train` therefore uses "tf-bilinear" for a Keras
# base (CN_TRAIN_KERAS_RESIZE), which is exact (test_keras_pipeline.py). The antialiased resize,
# which "pil-bilinear" is, is several levels away when shrinking.
def test_bilinear_matches_keras_training_resize(lib, shared_data):
    tf = pytest.importorskip("tensorflow")
    worst = 0.0
    for arr in sources(shared_data):
        for w, h in targets(arr):
            keras = tf.image.resize(arr, (h, w), method="bilinear").numpy()
            ours = resize(lib, arr, w, h, "bilinear").astype(np.float64)
            worst = max(worst, float(np.abs(ours - keras).max()))
    assert worst < 1.0, f"bilinear against tf.image.resize: max difference {worst}"
    arr = sources(shared_data)[0]
    keras = tf.image.resize(arr, (15, 20), method="bilinear").numpy()
    antialiased = resize(lib, arr, 20, 15, "pil-bilinear").astype(np.float64)
    assert np.abs(antialiased - keras).max() > 1.0


def test_area_matches_cv2(lib, shared_data):
    check_policy(lib, shared_data, "area", lambda a, w, h: cv_resize(a, w, h, cv2.INTER_AREA), 1)


def test_center_crop_matches_torchvision_rounding(lib):
    arr = synthetic(101, 80)
    src, keep = from_array(arr)
    for fraction in (0.875, 0.5, 0.33, 1.0):
        dst = CnImage()
        assert lib.cn_image_center_crop(ctypes.byref(src), fraction, ctypes.byref(dst)) == 0
        ch, cw = round(80 * fraction), round(101 * fraction)
        top, left = int(round((80 - ch) / 2.0)), int(round((101 - cw) / 2.0))
        assert (to_array(dst) == arr[top:top + ch, left:left + cw]).all()
        lib.cn_image_free(ctypes.byref(dst))


@pytest.mark.slow
def test_preprocess_matches_keras(lib):
    keras = pytest.importorskip("keras")
    from keras.applications import imagenet_utils, mobilenet, vgg16
    x = np.random.default_rng(5).integers(0, 256, (1, 13, 17, 3)).astype(np.float32)
    expected = {
        "caffe": vgg16.preprocess_input(x.copy()),
        "tf": mobilenet.preprocess_input(x.copy()),
        "torch": imagenet_utils.preprocess_input(x.copy(), mode="torch"),
        "unit": x / np.float32(255),
        "raw": x,
    }
    for mode, want in expected.items():
        got = np.ascontiguousarray(x.copy())
        lib.cn_preprocess_apply(PRE[mode], got.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                got.size // 3)
        assert np.abs(got - want).max() <= 1e-6, mode


def prepare(lib, arr, spec):
    src, keep = from_array(arr)
    out = np.zeros((spec.height, spec.width, spec.channels), np.float32)
    st = lib.cn_image_prepare(ctypes.byref(src), ctypes.byref(spec),
                              out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    assert st == 0, lib.cn_last_error().decode()
    return out


def test_prepare_matches_keras_load_img_pipeline(lib):
    arr = synthetic(150, 120)
    spec = CnInputSpec(64, 80, 3, RESIZE["nearest"], 0.0, PRE["tf"])
    want = np.asarray(Image.fromarray(arr).resize((80, 64), Image.NEAREST)).astype(np.float32)
    want = want / np.float32(127.5) - np.float32(1)
    assert np.abs(prepare(lib, arr, spec) - want).max() == 0


def test_prepare_grey_matches_pil_convert_l(lib):
    arr = synthetic(150, 120)
    spec = CnInputSpec(50, 60, 1, RESIZE["pil-bilinear"], 0.0, PRE["raw"])
    grey = Image.fromarray(arr).convert("L").resize((60, 50), Image.BILINEAR)
    want = np.asarray(grey).astype(np.float32)[..., None]
    assert np.abs(prepare(lib, arr, spec) - want).max() == 0


def test_prepare_crop(lib):
    arr = synthetic(300, 200)
    spec = CnInputSpec(56, 70, 3, RESIZE["bilinear"], 0.875, PRE["raw"])
    big = cv2.resize(arr, (80, 64), interpolation=cv2.INTER_LINEAR)  # round(70/.875), round(56/.875)
    want = big[4:60, 5:75].astype(np.float32)
    assert np.abs(prepare(lib, arr, spec) - want).max() <= 1
