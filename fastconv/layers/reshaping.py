"""ZeroPadding2D, Cropping2D and UpSampling2D (Keras API), and the resampling of
UpSampling2D as functions with their gradients (:func:`upsampling2d`,
:func:`upsampling2d_backward`).

UpSampling2D's ``interpolation="nearest"`` repeats each pixel ``size`` times along each
axis; ``"bilinear"`` is Keras 3's ``ops.image.resize`` (TensorFlow's bilinear resize:
half-pixel centres, no antialiasing): output pixel i reads the input at
``(i + 0.5) / factor - 0.5``, edges clamped.  Both are linear maps, applied as one
small interpolation matrix per axis; the gradient applies their transposes.
"""
import numbers

import numpy as np

from .._validation import as_array, check_data_format, common_float_dtype
from ..shapes import normalize_pair
from .base import Layer
from .common import check_layer_data_format

__all__ = ["ZeroPadding2D", "Cropping2D", "UpSampling2D", "upsampling2d",
           "upsampling2d_backward", "INTERPOLATIONS"]

INTERPOLATIONS = ("nearest", "bilinear")


def _side_pairs(value, name):
    """Keras's padding/cropping argument -> ((top, bottom), (left, right)) of ints >= 0:
    an int, (symmetric_height, symmetric_width), or ((top, bottom), (left, right))
    (each of the two entries an int or a pair)."""
    def count(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must hold ints, got {value!r}")
        if v < 0:
            raise ValueError(f"{name} must be non-negative, got {value!r}")
        return int(v)

    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        v = count(value)
        return ((v, v), (v, v))
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be an int, a pair (height, width) or a pair of "
                        f"pairs ((top, bottom), (left, right)), got {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be an int, a pair (height, width) or a pair of "
                         f"pairs ((top, bottom), (left, right)), got {value!r}")
    out = []
    for entry in value:
        if isinstance(entry, (tuple, list)):
            if len(entry) != 2:
                raise ValueError(f"{name} entries must be ints or pairs of ints, got "
                                 f"{value!r}")
            out.append((count(entry[0]), count(entry[1])))
        else:
            v = count(entry)
            out.append((v, v))
    return tuple(out)


class _Spatial2D(Layer):
    """A weightless layer on (N, H, W, C) or (N, C, H, W) batches."""
    _ndim = 4

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_layer_data_format(data_format)
        self._last = self.data_format == "channels_last"

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def _hw_axes(self):
        return (1, 2) if self._last else (2, 3)

    def _resize_shape(self, input_shape, new_hw):
        shape = list(input_shape)
        for axis, size in zip(self._hw_axes(), new_hw):
            shape[axis] = size
        return tuple(shape)

    def _window(self, pads, shape):
        """The index of the interior (the unpadded / kept part) of an array of shape."""
        index = [slice(None)] * 4
        for axis, (before, after) in zip(self._hw_axes(), pads):
            index[axis] = slice(before, shape[axis] - after)
        return tuple(index)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class ZeroPadding2D(_Spatial2D):
    """Adds rows and columns of zeros: ``padding`` an int, (height, width) (symmetric)
    or ((top, bottom), (left, right))."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.padding = _side_pairs(padding, "padding")

    def compute_output_shape(self, input_shape):
        self._check_rank(tuple(input_shape), "input shape")
        hw = [input_shape[a] for a in self._hw_axes()]
        new = [None if s is None else s + sum(p) for s, p in zip(hw, self.padding)]
        return self._resize_shape(input_shape, new)

    def _linear_forward(self, x, training):
        self._x = x
        y = np.zeros(self.compute_output_shape(x.shape), x.dtype)
        y[self._window(self.padding, y.shape)] = x
        return y

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return np.ascontiguousarray(grad[self._window(self.padding, grad.shape)])

    def get_config(self):
        config = super().get_config()
        config["padding"] = [list(p) for p in self.padding]
        return config


class Cropping2D(_Spatial2D):
    """Removes rows and columns at the edges: ``cropping`` an int, (height, width)
    (symmetric) or ((top, bottom), (left, right)); at least one row and column must
    remain."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(data_format, **kwargs)
        self.cropping = _side_pairs(cropping, "cropping")

    def compute_output_shape(self, input_shape):
        self._check_rank(tuple(input_shape), "input shape")
        hw = [input_shape[a] for a in self._hw_axes()]
        for s, c in zip(hw, self.cropping):
            if s is not None and sum(c) >= s:
                raise ValueError(f"cropping {self.cropping} of layer {self.name!r} must "
                                 f"leave at least one row and column of input shape "
                                 f"{tuple(input_shape)} ({self.data_format})")
        new = [None if s is None else s - sum(c) for s, c in zip(hw, self.cropping)]
        return self._resize_shape(input_shape, new)

    def _linear_forward(self, x, training):
        self._x = x
        return np.ascontiguousarray(x[self._window(self.cropping, x.shape)])

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        gx = np.zeros(self._x.shape, grad.dtype)
        gx[self._window(self.cropping, gx.shape)] = grad
        return gx

    def get_config(self):
        config = super().get_config()
        config["cropping"] = [list(c) for c in self.cropping]
        return config


# ---- upsampling ----------------------------------------------------------------------

def _bilinear_matrix(n, factor, dtype):
    """(n * factor, n) weights of TensorFlow's half-pixel bilinear resize along one
    axis: output i reads (i + 0.5) / factor - 0.5, between floor and ceil of it,
    both clamped to [0, n - 1]."""
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    low = np.floor(src)
    lerp = src - low
    lo = np.maximum(low, 0).astype(np.int64)
    hi = np.minimum(np.ceil(src), n - 1).astype(np.int64)
    m = np.zeros((n * factor, n))
    rows = np.arange(n * factor)
    np.add.at(m, (rows, lo), 1.0 - lerp)
    np.add.at(m, (rows, hi), lerp)
    return m.astype(dtype)


def _check_upsampling(size, interpolation, data_format):
    size = normalize_pair(size, "size")
    if not isinstance(interpolation, str) or interpolation.lower() not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                         f"got {interpolation!r}")
    return size, interpolation.lower(), check_data_format(data_format)


def _upsampled(x, size, interpolation, last, transpose=False):
    """x resampled (or, with transpose, the adjoint: x is then the output-sized
    gradient and the result has the input's size)."""
    fh, fw = size
    n = x.shape[0]
    h, w = (x.shape[1], x.shape[2]) if last else (x.shape[2], x.shape[3])
    if interpolation == "nearest":
        if not transpose:
            y = np.repeat(np.repeat(x, fh, axis=1 if last else 2), fw,
                          axis=2 if last else 3)
            return np.ascontiguousarray(y)
        h, w = h // fh, w // fw
        if last:
            return x.reshape(n, h, fh, w, fw, x.shape[3]).sum(axis=(2, 4))
        return x.reshape(n, x.shape[1], h, fh, w, fw).sum(axis=(3, 5))
    if transpose:
        h, w = h // fh, w // fw
        mh, mw = _bilinear_matrix(h, fh, x.dtype).T, _bilinear_matrix(w, fw, x.dtype).T
    else:
        mh, mw = _bilinear_matrix(h, fh, x.dtype), _bilinear_matrix(w, fw, x.dtype)
    oh, ow = mh.shape[0], mw.shape[0]
    if last:
        c = x.shape[3]
        t = np.matmul(mh, x.reshape(n, x.shape[1], x.shape[2] * c))  # (n, oh, W*c)
        t = np.matmul(mw, t.reshape(n * oh, x.shape[2], c))       # (n*oh, ow, c)
        return np.ascontiguousarray(t.reshape(n, oh, ow, c))
    t = np.matmul(x, mw.T)                                        # (n, c, H, ow)
    return np.ascontiguousarray(np.matmul(mh, t))                 # (n, c, oh, ow)


def upsampling2d(x, size=(2, 2), interpolation="nearest", data_format="channels_last"):
    """Keras's UpSampling2D on a batch x: (N, H, W, C) -> (N, H*fh, W*fw, C) (or
    channels_first), ``interpolation`` "nearest" or "bilinear" (see the module doc)."""
    size, interpolation, data_format = _check_upsampling(size, interpolation,
                                                         data_format)
    xa = as_array(x, "x")
    if xa.ndim != 4:
        raise ValueError(f"x must be a 4-D batch of images, got shape {xa.shape}")
    xa = xa.astype(common_float_dtype({"x": xa}), copy=False)
    return _upsampled(xa, size, interpolation, data_format == "channels_last")


def upsampling2d_backward(grad_y, size=(2, 2), interpolation="nearest",
                          data_format="channels_last"):
    """Gradient of :func:`upsampling2d` with respect to x, from grad_y of the output's
    shape (the transpose of the resampling: each input pixel collects the gradient of
    the outputs that read it, times their weights)."""
    size, interpolation, data_format = _check_upsampling(size, interpolation,
                                                         data_format)
    g = as_array(grad_y, "grad_y")
    last = data_format == "channels_last"
    hw = (g.shape[1:3] if last else g.shape[2:4]) if g.ndim == 4 else None
    if hw is None or hw[0] % size[0] or hw[1] % size[1] or 0 in hw:
        raise ValueError(f"grad_y must be a 4-D batch whose height and width are "
                         f"multiples of size {size} ({data_format}), got shape "
                         f"{g.shape}")
    g = g.astype(common_float_dtype({"grad_y": g}), copy=False)
    return _upsampled(g, size, interpolation, last, transpose=True)


class UpSampling2D(_Spatial2D):
    """Repeats rows and columns ``size`` = (fh, fw) times ("nearest"), or resizes by
    those factors with TensorFlow's bilinear resize ("bilinear")."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest",
                 **kwargs):
        super().__init__(data_format, **kwargs)
        self.size, self.interpolation, _ = _check_upsampling(size, interpolation,
                                                             self.data_format)

    def compute_output_shape(self, input_shape):
        self._check_rank(tuple(input_shape), "input shape")
        hw = [input_shape[a] for a in self._hw_axes()]
        return self._resize_shape(input_shape, [None if s is None else s * f
                                                for s, f in zip(hw, self.size)])

    def _linear_forward(self, x, training):
        self._x = x
        return _upsampled(x, self.size, self.interpolation, self._last)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return _upsampled(grad, self.size, self.interpolation, self._last,
                          transpose=True)

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size), interpolation=self.interpolation)
        return config
