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


class SessionOptions(ctypes.Structure):
    """cn_session_options (convnet/train.h). Build it with keywords: fields get added."""
    _fields_ = [("loss", ctypes.c_char_p), ("optimizer", ctypes.c_char_p), ("lr", ctypes.c_float),
                ("momentum", ctypes.c_float), ("nesterov", ctypes.c_int),
                ("weight_decay", ctypes.c_float), ("clip_norm", ctypes.c_float),
                ("beta1", ctypes.c_float), ("beta2", ctypes.c_float), ("epsilon", ctypes.c_float),
                ("max_batch", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("input_grad", ctypes.c_int),
                ("grad_layers", ctypes.POINTER(ctypes.c_char_p)), ("n_grad_layers", ctypes.c_int)]
