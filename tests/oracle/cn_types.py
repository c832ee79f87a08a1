"""ctypes mirrors of convnet's public structs, field for field (one place for the oracle tests
and the bench scripts that call libconvnet directly)."""
import ctypes

MAX_RANK = 6  # CN_MAX_RANK, convnet/core.h


class Shape(ctypes.Structure):
    """cn_shape (convnet/core.h)."""
    _fields_ = [("rank", ctypes.c_int), ("dim", ctypes.c_int64 * MAX_RANK)]

    def tuple(self):
        return tuple(self.dim[i] for i in range(self.rank))


class Image(ctypes.Structure):
    """cn_image (convnet/image.h): 8-bit RGB, rows top to bottom."""
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int),
                ("pixels", ctypes.POINTER(ctypes.c_uint8))]


class InputSpec(ctypes.Structure):
    """cn_input_spec (convnet/image.h): how an image becomes the model's input tensor."""
    _fields_ = [("height", ctypes.c_int), ("width", ctypes.c_int), ("channels", ctypes.c_int),
                ("resize", ctypes.c_int), ("crop", ctypes.c_double),
                ("preprocess", ctypes.c_int), ("channels_first", ctypes.c_int),
                ("decoder", ctypes.c_int)]
