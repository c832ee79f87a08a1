"""Each augmentation of convnet (cn_image_transform, with its random draw fixed) against the
tool it follows, on real photos sized down to keep the test fast.

Bar: within 1 grey level on >= 99 % of the pixels (MIN_WITHIN_ONE), reported per transform.

Conventions of the comparisons:
- Inputs are uint8 RGB photos; references get them as float32 (Keras) or uint8 (OpenCV, PIL);
  float references are compared after rounding to the nearest grey level, clipped to 0..255.
- Geometry (theta, tx, ty, shear, zx, zy, fill modes): keras ImageDataGenerator().apply_transform
  on square images (it runs scipy.ndimage.affine_transform with order=1, the fill_mode and cval
  given to the generator). On non-square images Keras centres its map at (row (w-1)/2,
  col (h-1)/2), swapping the two; convnet centres at the image centre, and is compared there
  with scipy.ndimage.affine_transform given Keras' matrix about the true centre.
- tx is a horizontal shift in pixels, ty vertical, exactly as apply_transform's keys.
- Channel shift: apply_transform's channel_shift_intensity (one value for all channels, clipped
  to the image's min and max); different values per channel against Keras' apply_channel_shift
  run on each channel with the whole image's min and max.
- Flips and brightness: apply_transform (brightness goes through PIL ImageEnhance, which
  truncates where convnet rounds).
- Contrast: Keras 3 RandomContrast.transform_images with a fixed contrast_factor.
- Hue: Keras 3 RandomHue.transform_images with a fixed factor (turns of the hue circle).
- Blur: cv2.GaussianBlur with the same sigma, kernel size 2 * ceil(3 sigma) + 1 and OpenCV's
  default border (BORDER_REFLECT_101).
- Fixed-size crop: Keras 3 RandomCrop.transform_images with the same (top, left); on an image
  smaller than the crop, its centred box resized by tf bilinear.
- Random-resized crop: the same box cut in NumPy and resized by PIL's BILINEAR (what
  torchvision's RandomResizedCrop does with antialiasing on).
"""
import ctypes
import math
import os

import numpy as np
import pytest
from PIL import Image

from cn_types import Image as CnImage
from conftest import SHARED

cv2 = pytest.importorskip("cv2")

# Keras' legacy image module calls scipy.ndimage.interpolation, which scipy deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Please import `affine_transform`:DeprecationWarning")

MIN_WITHIN_ONE = 0.99
PHOTOS = ["darknet_dog.jpg", "skimage_chelsea.png", "coral_hot_dog.jpg", "darknet_horses.jpg"]
SIDE = 96  # square test images: Keras' affine maps are only centred on square images
RESIZE = {"nearest": 0, "bilinear": 1, "area": 2, "pil-bilinear": 3}
FILL = {"nearest": 0, "reflect": 1, "constant": 2}


class CnTransform(ctypes.Structure):
    """cn_transform of convnet/image.h, field for field."""
    _fields_ = [("crop_x", ctypes.c_int), ("crop_y", ctypes.c_int),
                ("crop_width", ctypes.c_int), ("crop_height", ctypes.c_int),
                ("out_width", ctypes.c_int), ("out_height", ctypes.c_int),
                ("crop_resize", ctypes.c_int),
                ("theta", ctypes.c_double), ("tx", ctypes.c_double), ("ty", ctypes.c_double),
                ("shear", ctypes.c_double), ("zx", ctypes.c_double), ("zy", ctypes.c_double),
                ("fill", ctypes.c_int), ("cval", ctypes.c_double),
                ("channel_shift", ctypes.c_double * 3),
                ("flip_horizontal", ctypes.c_int), ("flip_vertical", ctypes.c_int),
                ("brightness", ctypes.c_double), ("contrast", ctypes.c_double),
                ("hue", ctypes.c_double), ("blur_sigma", ctypes.c_double)]


@pytest.fixture(scope="module")
def lib(libconvnet):
    libconvnet.cn_transform_identity.restype = CnTransform
    libconvnet.cn_image_transform.argtypes = [ctypes.POINTER(CnImage), ctypes.POINTER(CnTransform),
                                              ctypes.POINTER(CnImage)]
    libconvnet.cn_image_free.argtypes = [ctypes.POINTER(CnImage)]
    libconvnet.cn_last_error.restype = ctypes.c_char_p
    return libconvnet


@pytest.fixture(scope="module")
def scipy_ndimage():
    """ImageDataGenerator's affine transforms run scipy (tests/oracle/requirements.txt)."""
    return pytest.importorskip("scipy.ndimage")


@pytest.fixture(scope="module")
def keras_image():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    from keras.src.legacy.preprocessing import image as legacy
    return keras, legacy


def photos(side=SIDE, height=None):
    """A few shared photos resized (PIL bilinear) to side x height, uint8 RGB."""
    out = []
    for name in PHOTOS:
        path = SHARED / "images" / name
        if not path.exists():
            pytest.skip(f"{path} not present (shared real photos)")
        img = Image.open(path).convert("RGB").resize((side, height or side), Image.BILINEAR)
        out.append((name, np.asarray(img, dtype=np.uint8)))
    return out


def transform(lib, arr, **params):
    """convnet's cn_image_transform of a uint8 HxWx3 array with the given cn_transform fields."""
    t = lib.cn_transform_identity()
    for key, value in params.items():
        if key == "channel_shift":
            t.channel_shift[:] = value
        else:
            setattr(t, key, value)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    src = CnImage(arr.shape[1], arr.shape[0], arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
    dst = CnImage()
    st = lib.cn_image_transform(ctypes.byref(src), ctypes.byref(t), ctypes.byref(dst))
    assert st == 0, lib.cn_last_error().decode()
    out = np.ctypeslib.as_array(dst.pixels, shape=(dst.height, dst.width, 3)).copy()
    lib.cn_image_free(ctypes.byref(dst))
    return out


def within_one(ours, ref):
    """Fraction of values within 1 grey level of ref rounded; notes the largest difference."""
    ref = np.clip(np.floor(np.asarray(ref, dtype=np.float64) + 0.5), 0, 255)
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(np.float64) - ref)
    MAX_DIFF.append(float(diff.max()))
    return float(np.mean(diff <= 1))


MAX_DIFF = []


def check(name, fractions):
    worst = min(fractions)
    largest = max(MAX_DIFF, default=0)
    MAX_DIFF.clear()
    print(f"{name}: worst fraction within 1 grey level {worst:.5f}, largest difference {largest:g}")
    assert worst >= MIN_WITHIN_ONE, f"{name}: {worst:.4f} of pixels within 1 level"


AFFINE_CASES = {
    "rotation": dict(theta=23.0),
    "rotation_negative": dict(theta=-131.5),
    "shift": dict(tx=7.3, ty=-11.6),
    "shear": dict(shear=17.0),
    "zoom_in": dict(zx=0.8, zy=0.7),
    "zoom_out": dict(zx=1.25, zy=1.4),
    "all_affine": dict(theta=-12.0, tx=-4.5, ty=6.25, shear=-9.0, zx=1.1, zy=0.85),
}


@pytest.mark.parametrize("fill", ["nearest", "reflect", "constant"])
@pytest.mark.parametrize("case", sorted(AFFINE_CASES))
def test_affine_matches_image_data_generator(lib, keras_image, scipy_ndimage, case, fill):
    _, legacy = keras_image
    params = AFFINE_CASES[case]
    gen = legacy.ImageDataGenerator(fill_mode=fill, cval=97.0)
    fractions = []
    for _, arr in photos():
        ref = gen.apply_transform(arr.astype(np.float32), dict(params))
        ours = transform(lib, arr, fill=FILL[fill], cval=97.0, **params)
        fractions.append(within_one(ours, ref))
    check(f"affine {case} fill={fill}", fractions)


def keras_matrix_about_centre(h, w, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1):
    """ImageDataGenerator's R T Sh Z on (x, y), about the true centre, as scipy's (row, col)."""
    t, s = np.deg2rad(theta), np.deg2rad(shear)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    sh = np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    m = rot @ shift @ sh @ zoom
    cx, cy = (w - 1) / 2, (h - 1) / 2
    m = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]]) @ m @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    p = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])  # (x, y) -> (row, col)
    return p @ m @ p


@pytest.mark.parametrize("fill", ["nearest", "reflect", "constant"])
def test_affine_non_square_matches_scipy(lib, scipy_ndimage, fill):
    params = AFFINE_CASES["all_affine"]
    fractions = []
    for _, arr in photos(120, 80):
        m = keras_matrix_about_centre(arr.shape[0], arr.shape[1], **params)
        ref = np.stack([scipy_ndimage.affine_transform(arr[..., c].astype(np.float64), m[:2, :2],
                                                       m[:2, 2], order=1, mode=fill, cval=97.0)
                        for c in range(3)], axis=-1)
        fractions.append(within_one(transform(lib, arr, fill=FILL[fill], cval=97.0, **params), ref))
    check(f"affine non-square fill={fill}", fractions)


def test_flips_and_channel_shift_and_brightness(lib, keras_image):
    _, legacy = keras_image
    gen = legacy.ImageDataGenerator()
    cases = {"flip_horizontal": (dict(flip_horizontal=True), dict(flip_horizontal=1)),
             "flip_vertical": (dict(flip_vertical=True), dict(flip_vertical=1)),
             "channel_shift": (dict(channel_shift_intensity=-37.5), dict(channel_shift=[-37.5] * 3)),
             "brightness_dark": (dict(brightness=0.55), dict(brightness=0.55)),
             "brightness_bright": (dict(brightness=1.6), dict(brightness=1.6))}
    for name, (keras_params, ours_params) in cases.items():
        fractions = [within_one(transform(lib, arr, **ours_params),
                                gen.apply_transform(arr.astype(np.float32), keras_params))
                     for _, arr in photos()]
        check(name, fractions)


def test_composite_matches_apply_transform(lib, keras_image, scipy_ndimage):
    """Keras' own order: affine, channel shift, flips, then brightness. Keras hands the float
    warped image to PIL truncated to uint8 (array_to_img) where convnet rounds, a bias of half a
    level that PIL's truncating brightness doubles; so the brightness step is checked on the
    warped image rounded to uint8, each half with Keras doing the work."""
    _, legacy = keras_image
    gen = legacy.ImageDataGenerator(fill_mode="reflect")
    keras_params = dict(theta=15.0, tx=3.0, ty=-5.0, shear=6.0, zx=0.9, zy=1.05,
                        flip_horizontal=True, flip_vertical=True, channel_shift_intensity=20.0)
    ours = dict(theta=15.0, tx=3.0, ty=-5.0, shear=6.0, zx=0.9, zy=1.05, fill=FILL["reflect"],
                flip_horizontal=1, flip_vertical=1, channel_shift=[20.0] * 3)
    refs = [(arr, gen.apply_transform(arr.astype(np.float32), dict(keras_params)))
            for _, arr in photos()]
    check("composite apply_transform (affine, shift, flips)",
          [within_one(transform(lib, arr, **ours), ref) for arr, ref in refs])
    bright = []
    for arr, ref in refs:
        rounded = np.clip(np.floor(ref + 0.5), 0, 255).astype(np.float32)
        ref_bright = gen.apply_transform(rounded, {"brightness": 1.2})
        bright.append(within_one(transform(lib, arr, brightness=1.2, **ours), ref_bright))
    check("composite apply_transform, then brightness", bright)


def test_per_channel_shift(lib, keras_image):
    _, legacy = keras_image
    shifts = [25.0, -40.0, 12.5]
    fractions = []
    for _, arr in photos():
        x = arr.astype(np.float32)
        ref = np.stack([legacy.apply_channel_shift(x, shifts[c], 2)[..., c] for c in range(3)],
                       axis=-1)
        fractions.append(within_one(transform(lib, arr, channel_shift=shifts), ref))
    check("tint (per-channel shift)", fractions)


@pytest.mark.parametrize("factor", [0.35, 1.0, 1.8])
def test_contrast_matches_random_contrast(lib, keras_image, factor):
    keras, _ = keras_image
    layer = keras.layers.RandomContrast(0.9)
    fractions = []
    for _, arr in photos():
        ref = layer.transform_images(arr[None].astype(np.float32),
                                     {"contrast_factor": np.full((1, 1, 1, 1), factor, np.float32)})
        fractions.append(within_one(transform(lib, arr, contrast=factor), np.asarray(ref)[0]))
    check(f"contrast {factor}", fractions)


@pytest.mark.parametrize("delta", [-0.42, -0.1, 0.05, 0.3])
def test_hue_matches_random_hue(lib, keras_image, delta):
    keras, _ = keras_image
    layer = keras.layers.RandomHue(1.0, value_range=(0, 255))
    fractions = []
    for _, arr in photos():
        ref = layer.transform_images(arr[None].astype(np.float32),
                                     {"factor": np.array([delta], np.float32)})
        fractions.append(within_one(transform(lib, arr, hue=delta), np.asarray(ref)[0]))
    check(f"hue {delta}", fractions)


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.3, 6.0])
def test_blur_matches_opencv(lib, sigma):
    k = 2 * math.ceil(3 * sigma) + 1
    fractions = [within_one(transform(lib, arr, blur_sigma=sigma),
                            cv2.GaussianBlur(arr, (k, k), sigmaX=sigma, sigmaY=sigma,
                                             borderType=cv2.BORDER_REFLECT_101))
                 for _, arr in photos()]
    check(f"blur sigma={sigma}", fractions)


def test_fixed_crop_matches_random_crop(lib, keras_image):
    keras, _ = keras_image
    layer = keras.layers.RandomCrop(57, 71)
    fractions = []
    for _, arr in photos(120, 80):
        top, left = 13, 40
        ref = layer.transform_images(arr.astype(np.float32), (top, left))
        ours = transform(lib, arr, crop_x=left, crop_y=top, crop_width=71, crop_height=57)
        fractions.append(within_one(ours, np.asarray(ref)))
    check("random crop", fractions)


def test_crop_larger_than_image_matches_random_crop(lib, keras_image):
    """Keras RandomCrop on a smaller image: from the corner of the centred box of the crop's
    ratio, crop_height x crop_width as far as the image goes, resized (cn_augment_draw sets this
    box; here it is given explicitly)."""
    keras, _ = keras_image
    layer = keras.layers.RandomCrop(150, 100)
    fractions = []
    for _, arr in photos(120, 80):
        h, w = arr.shape[:2]
        bh, bw = max(min(h, int(w * 150 / 100)), 1), max(min(w, int(h * 100 / 150)), 1)
        top, left = int((h - bh) / 2), int((w - bw) / 2)
        ref = layer.transform_images(arr.astype(np.float32), (top, left))
        bw, bh = min(100, w - left), min(150, h - top)
        ours = transform(lib, arr, crop_x=left, crop_y=top, crop_width=bw, crop_height=bh,
                         out_width=100, out_height=150, crop_resize=RESIZE["bilinear"])
        fractions.append(within_one(ours, np.asarray(ref)))
    check("random crop, small image", fractions)


def test_random_resized_crop_matches_pil(lib):
    fractions = []
    for _, arr in photos(120, 80):
        box = (17, 9, 73, 52)  # x, y, width, height
        x, y, w, h = box
        ref = np.asarray(Image.fromarray(arr[y:y + h, x:x + w]).resize((64, 64), Image.BILINEAR))
        ours = transform(lib, arr, crop_x=x, crop_y=y, crop_width=w, crop_height=h,
                         out_width=64, out_height=64, crop_resize=RESIZE["pil-bilinear"])
        fractions.append(within_one(ours, ref))
    check("random-resized crop", fractions)
