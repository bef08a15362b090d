"""2-D max, average and global-average pooling and their gradients on ndarrays.

Semantics follow torch.nn.functional (channels_first) and Keras (channels_last):

- ``pool_size`` and ``stride`` are an int or a pair; ``stride=None`` means ``pool_size``.
- ``padding`` is an int, ``(ph, pw)``, ``((top, bottom), (left, right))``, ``"valid"`` or
  ``"same"`` (TensorFlow's rule: output = ceil(n / stride), the odd extra pad goes to the
  bottom/right).  Explicit padding may be at most half the pool on each side
  (PyTorch's rule), so every window holds at least one real cell.
- Max: padded cells never win; NaN propagates; where several cells tie for the maximum,
  the whole gradient goes to the first of them in row-major window order.
- Average: with ``"same"`` padding, padded cells are not counted (TensorFlow/Keras); with
  numeric padding they are, unless ``count_include_pad=False`` (PyTorch's
  ``count_include_pad=True`` default); ``True``/``False`` force either rule.

Max-pool indices (``return_indices=True``): an array shaped like the output holding, for
each output element, the row-major position ``ki * kw + kj`` of the winning cell inside
its window (the window's origin is its top-left corner, padding included).  The dtype is
uint8 when the window has at most 256 cells (compact, so a layer can cache them cheaply
and the backward pass does not read x again), int64 otherwise (PyTorch's index dtype:
wide enough for any window, including those of more than 2**31 cells).

Global max pooling splits the gradient of a maximum equally among the cells that tie
for it (TensorFlow's reduce_max gradient, hence Keras's GlobalMaxPooling2D).  SoftPool
(:func:`soft_pool2d`) is described at its function.

The compiled kernels are in src/_pool2d.pyx; results come back in the layout and dtype
the arguments came in (see fastconv/_validation.py for the dtype policy).
"""
from typing import NamedTuple

import numpy as np

from . import _arena, _ext
from ._layout import to_first, to_last
from ._validation import (_FLOATS, as_array, check_data_format, check_ndim,
                          common_float_dtype)
from .shapes import (layout_shape, memoised, normalize_pair, normalize_padding,
                     output_size, resolve_padding)

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "global_avg_pool2d", "global_avg_pool2d_backward", "pool2d_output_shape",
           "global_max_pool2d", "global_max_pool2d_backward", "soft_pool2d",
           "soft_pool2d_backward"]

_X_DESC = {"channels_first": "a 4-D array (N, C, H, W) for channels_first",
           "channels_last": "a 4-D array (N, H, W, C) for channels_last"}


class _Geometry(NamedTuple):
    """One pooling's sizes, checked once (a NamedTuple: cheap to build on every call)."""
    n: int
    c: int
    h: int
    w: int
    kh: int
    kw: int
    sy: int
    sx: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    oh: int
    ow: int
    same: bool
    channels_last: bool

    @property
    def x_shape(self):
        return layout_shape(self.n, self.c, self.h, self.w, self.channels_last)

    @property
    def y_shape(self):
        return layout_shape(self.n, self.c, self.oh, self.ow, self.channels_last)

    @property
    def index_dtype(self):
        return np.dtype(np.uint8) if self.kh * self.kw <= 256 else np.dtype(np.int64)

    def kernel_args(self):
        return (self.kh, self.kw, self.sy, self.sx, self.pad_top, self.pad_left)


def _check_geometry(x_shape, pool_size, stride, padding, data_format):
    check_data_format(data_format)
    last = data_format == "channels_last"
    kh, kw = normalize_pair(pool_size, "pool_size")
    sy, sx = (kh, kw) if stride is None else normalize_pair(stride, "stride")
    padding = normalize_padding(padding)
    if last:
        n, h, w, c = x_shape
    else:
        n, c, h, w = x_shape
    if not isinstance(padding, str):
        (pt, pb), (pl, pr) = padding
        if max(pt, pb) > kh // 2 or max(pl, pr) > kw // 2:
            raise ValueError(
                f"padding must be at most half the pool size on each side (PyTorch's "
                f"rule: at most {kh // 2} rows and {kw // 2} columns for pool_size "
                f"{(kh, kw)}), got padding {padding}")
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), (kh, kw), (sy, sx))
    for axis, k, size, before, after in (("height", kh, h, pt, pb),
                                         ("width", kw, w, pl, pr)):
        if size == 0 and before + after > 0:   # (as PyTorch, which refuses it)
            raise ValueError(
                f"x with shape {tuple(x_shape)} ({data_format}) has an empty {axis}: "
                f"every window of its padding {before}+{after} would hold no input")
        if k > size + before + after:
            raise ValueError(
                f"pool_size {axis} {k} is larger than the padded input {axis} "
                f"{size + before + after} (size {size}, padding {before}+{after}) of x "
                f"with shape {tuple(x_shape)} ({data_format})")
    oh = output_size(h, kh, sy, pt, pb)
    ow = output_size(w, kw, sx, pl, pr)
    return _Geometry(n, c, h, w, kh, kw, sy, sx, pt, pb, pl, pr, oh, ow,
                     padding == "same", last)


# Checked geometries by their arguments (a layer's every call has the same ones).
_geometry = memoised(_check_geometry)


def pool2d_output_shape(x_shape, pool_size, stride=None, padding=0,
                        data_format="channels_first"):
    """Shape of a 2-D pooling's output for an input of shape ``x_shape`` (no arrays)."""
    x_shape = tuple(x_shape)
    if len(x_shape) != 4:
        raise ValueError(f"x_shape must have 4 entries, got {x_shape}")
    return _geometry(x_shape, pool_size, stride, padding, data_format).y_shape


def _x_input(x, data_format, name="x"):
    check_data_format(data_format)
    arr = as_array(x, name)
    check_ndim(arr, name, 4, _X_DESC[data_format])
    return arr


def _grad_input(grad_y, x, data_format):
    """grad_y and x checked together: shared floating dtype, both 4-D."""
    gy = _x_input(grad_y, data_format, "grad_y")
    xa = _x_input(x, data_format)
    dtype = common_float_dtype({"grad_y": gy, "x": xa})
    return dtype, gy, xa


def _check_grad_shape(grad_y, g):
    if grad_y.shape != g.y_shape:
        raise ValueError(f"grad_y must have the output shape {g.y_shape} of this pooling, "
                         f"got {grad_y.shape}")


def _ready(x):
    """Whether x is what the kernels take as it is: a C-contiguous 4-D ndarray of
    float32 or float64 (the layers' arrays; anything else goes through the checks)."""
    return (type(x) is np.ndarray and x.ndim == 4 and x.flags.c_contiguous and
            x.dtype in _FLOATS)


def _include_pad(count_include_pad, g):
    if count_include_pad is None:
        return not g.same
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"count_include_pad must be None, True or False, got "
                        f"{count_include_pad!r}")
    return bool(count_include_pad)


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _max_forward(g, x, store):
    if not (g.channels_last or
            _ext.pool2d.is_2x2(*g.kernel_args(), g.h, g.w, g.oh, g.ow)):
        return _max_forward_via_last(g, x, store)
    y = _arena.empty(g.y_shape, x.dtype)
    idx = _arena.empty(g.y_shape if store else (1, 1, 1, 1), g.index_dtype)
    kernel = _ext.pool2d.max_pool_nhwc if g.channels_last else _ext.pool2d.max_pool_nchw
    kernel(x, y, idx, store, *g.kernel_args())
    return y, idx


def _max_forward_via_last(g, x, store):
    """A channels_first max pool of other windows than 2x2/2 inside the input (the
    kernels' fast rows, src/_pool2d.pyx is_2x2) on the channels_last kernel
    (vectorised over the channels) through transposed copies: the channels_first
    kernel takes one output at a time, its windows' maxima a chain of dependent
    selects, several times slower (docs/design/algorithms.md, "Pooling").  The same
    maxima, winners and indices (each a position inside its window, whatever the
    layout)."""
    n, c, oh, ow = g.y_shape
    yl = np.empty((n, oh, ow, c), x.dtype)
    il = np.empty((n, oh, ow, c) if store else (1, 1, 1, 1), g.index_dtype)
    _ext.pool2d.max_pool_nhwc(to_last(x), yl, il, store, *g.kernel_args())
    y = to_first(yl, _arena.empty(g.y_shape, x.dtype))
    if not store:
        return y, il
    return y, to_first(il, _arena.empty(g.y_shape, g.index_dtype))


def max_pool2d(x, pool_size, stride=None, padding=0, data_format="channels_first",
               return_indices=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d`` / Keras ``MaxPooling2D``.

    Parameters
    ----------
    x : ndarray, (N, C, H, W) for channels_first or (N, H, W, C) for channels_last.
    pool_size : int or (kh, kw).
    stride : int, (sy, sx) or None (= pool_size).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same".
        Padded cells never win the maximum.
    data_format : "channels_first" or "channels_last".
    return_indices : also return the winning positions (see the module docstring), which
        :func:`max_pool2d_backward` accepts as ``indices``.

    Returns
    -------
    y, or (y, indices) : y in the layout and dtype of x.
    """
    xa = _x_input(x, data_format)
    store = _check_flag(return_indices, "return_indices")
    dtype = common_float_dtype({"x": xa})
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    y, idx = _max_forward(g, np.ascontiguousarray(xa, dtype=dtype), store)
    return (y, idx) if store else y


def max_pool2d_backward(grad_y, x, pool_size, stride=None, padding=0,
                        data_format="channels_first", indices=None):
    """Gradient of :func:`max_pool2d` with respect to x.

    Each output's gradient goes, whole, to the cell that won its window (the first
    maximum in row-major window order; the first NaN when there is one).  With the
    ``indices`` returned by ``max_pool2d(..., return_indices=True)``, x is used only for
    its shape and dtype; without them the winners are recomputed from x.
    """
    dtype, gy, xa = _grad_input(grad_y, x, data_format)
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    _check_grad_shape(gy, g)
    if indices is None:
        _, idx = _max_forward(g, np.ascontiguousarray(xa, dtype=dtype), True)
    else:
        if not isinstance(indices, np.ndarray):
            raise TypeError(f"indices must be the ndarray returned by max_pool2d(..., "
                            f"return_indices=True), got {type(indices).__name__}")
        if indices.dtype != g.index_dtype or indices.shape != g.y_shape:
            raise ValueError(f"indices must be a {g.index_dtype} array of the output "
                             f"shape {g.y_shape} (as max_pool2d(..., return_indices=True) "
                             f"returns for this pool), got {indices.dtype} array of shape "
                             f"{indices.shape}")
        idx = np.ascontiguousarray(indices)
    return _max_backward(g, np.ascontiguousarray(gy, dtype=dtype), idx)


def _max_backward(g, grad_y, idx):
    grad_x = _arena.empty(g.x_shape, grad_y.dtype)
    kernel = (_ext.pool2d.max_pool_backward_nhwc if g.channels_last
              else _ext.pool2d.max_pool_backward_nchw)
    kernel(grad_y, idx, grad_x, *g.kernel_args())
    return grad_x


def avg_pool2d(x, pool_size, stride=None, padding=0, count_include_pad=None,
               data_format="channels_first"):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d`` / Keras
    ``AveragePooling2D``.

    ``count_include_pad=None`` counts padded cells in the divisor for numeric padding
    (PyTorch's default) and not for ``"same"`` (TensorFlow/Keras); True/False force
    either.  Other arguments as for :func:`max_pool2d`.
    """
    xa = _x_input(x, data_format)
    dtype = common_float_dtype({"x": xa})
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    include = _include_pad(count_include_pad, g)
    return _avg_forward(g, np.ascontiguousarray(xa, dtype=dtype), include)


def _avg_forward(g, x, include):
    y = _arena.empty(g.y_shape, x.dtype)
    kernel = _ext.pool2d.avg_pool_nhwc if g.channels_last else _ext.pool2d.avg_pool_nchw
    kernel(x, y, *g.kernel_args(), include)
    return y


def _avg_backward(g, grad_y, include):
    grad_x = _arena.empty(g.x_shape, grad_y.dtype)
    kernel = (_ext.pool2d.avg_pool_backward_nhwc if g.channels_last
              else _ext.pool2d.avg_pool_backward_nchw)
    kernel(grad_y, grad_x, *g.kernel_args(), include)
    return grad_x


def _avg_tanh_fusable(g, grad_y, a):
    """Whether the gradient through tanh (whose output a is this pooling's input) and
    then this average pooling can be taken in one pass: channels_last 2x2 windows with
    stride 2 inside the input, float arrays of one dtype, C-contiguous (see
    _avg_backward_tanh, and conv._grad_weight_avg_tanh, which takes it further)."""
    return (g.channels_last and (g.kh, g.kw, g.sy, g.sx) == (2, 2, 2, 2)
            and g.pad_top == g.pad_left == 0 and (g.oh, g.ow) == (g.h // 2, g.w // 2)
            and a.dtype == grad_y.dtype and a.shape == g.x_shape
            and a.flags.c_contiguous and grad_y.flags.c_contiguous)


def _avg_backward_tanh(g, grad_y, a):
    """The gradient through tanh (whose output a is this pooling's input) and then this
    average pooling, in one pass (see _avg_tanh_fusable).  The same values as
    tanh_backward of _avg_backward's result; None where the fused kernel does not
    apply."""
    if not _avg_tanh_fusable(g, grad_y, a):
        return None
    grad_x = _arena.empty(g.x_shape, grad_y.dtype)
    _ext.pool2d.avg_pool_backward_tanh_nhwc(grad_y, a, grad_x)
    return grad_x


def avg_pool2d_backward(grad_y, x, pool_size, stride=None, padding=0,
                        count_include_pad=None, data_format="channels_first"):
    """Gradient of :func:`avg_pool2d` with respect to x (x gives the shape and dtype;
    its values are not read): each output's gradient, divided by its window's divisor,
    spread over the window's real cells."""
    dtype, gy, xa = _grad_input(grad_y, x, data_format)
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    _check_grad_shape(gy, g)
    include = _include_pad(count_include_pad, g)
    return _avg_backward(g, np.ascontiguousarray(gy, dtype=dtype), include)


def _global_geometry(x_shape, data_format):
    last = data_format == "channels_last"
    h, w = (x_shape[1], x_shape[2]) if last else (x_shape[2], x_shape[3])
    if h < 1 or w < 1:
        raise ValueError(f"x must have at least one pixel to average, got shape "
                         f"{tuple(x_shape)} ({data_format})")
    return _geometry(x_shape, (h, w), None, 0, data_format)


def global_avg_pool2d(x, data_format="channels_first"):
    """Mean over the spatial axes: (N, C, H, W) or (N, H, W, C) -> (N, C), as Keras
    ``GlobalAveragePooling2D`` (and ``adaptive_avg_pool2d(x, 1)`` flattened)."""
    xa = _x_input(x, data_format)
    dtype = common_float_dtype({"x": xa})
    g = _global_geometry(xa.shape, data_format)
    y = _avg_forward(g, np.ascontiguousarray(xa, dtype=dtype), True)
    return y.reshape(g.n, g.c)


def global_avg_pool2d_backward(grad_y, x_shape, data_format="channels_first"):
    """Gradient of :func:`global_avg_pool2d`: grad_y (N, C) / (H * W) broadcast back to
    ``x_shape``."""
    check_data_format(data_format)
    gy = as_array(grad_y, "grad_y")
    check_ndim(gy, "grad_y", 2, "a 2-D array (N, C)")
    try:
        x_shape = tuple(int(s) for s in x_shape)
    except TypeError:
        raise TypeError(f"x_shape must be a tuple of 4 ints, got {x_shape!r}") from None
    if len(x_shape) != 4 or min(x_shape) < 0:
        raise ValueError(f"x_shape must be 4 non-negative ints, got {x_shape}")
    g = _global_geometry(x_shape, data_format)
    if gy.shape != (g.n, g.c):
        raise ValueError(f"grad_y must have shape (N, C) = {(g.n, g.c)} for x_shape "
                         f"{x_shape} ({data_format}), got {gy.shape}")
    dtype = common_float_dtype({"grad_y": gy})
    gy4 = np.ascontiguousarray(gy, dtype=dtype).reshape(g.y_shape)
    return _avg_backward(g, gy4, True)


# ---- global max ----------------------------------------------------------------------

def global_max_pool2d(x, data_format="channels_first"):
    """Max over the spatial axes: (N, C, H, W) or (N, H, W, C) -> (N, C), as Keras
    ``GlobalMaxPooling2D`` (NaN propagates)."""
    xa = _x_input(x, data_format)
    xa = xa.astype(common_float_dtype({"x": xa}), copy=False)
    _global_geometry(xa.shape, data_format)
    return np.max(xa, axis=(1, 2) if data_format == "channels_last" else (2, 3))


def global_max_pool2d_backward(grad_y, x, data_format="channels_first"):
    """Gradient of :func:`global_max_pool2d`: each (n, c)'s gradient split equally
    among the cells equal to its maximum (all NaN cells, when the maximum is NaN)."""
    dtype, gy, xa = _grad_input_2d(grad_y, x, data_format)
    xa = xa.astype(dtype, copy=False)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    top = np.max(xa, axis=axes, keepdims=True)
    mask = (xa == top) | (np.isnan(xa) & np.isnan(top))
    count = np.sum(mask, axis=axes, keepdims=True, dtype=dtype)
    share = gy.astype(dtype, copy=False).reshape(top.shape) / count
    return np.multiply(mask, share, dtype=dtype)


def _grad_input_2d(grad_y, x, data_format):
    """grad_y (N, C) and x (4-D) of a global pooling, checked together."""
    xa = _x_input(x, data_format)
    gy = as_array(grad_y, "grad_y")
    check_ndim(gy, "grad_y", 2, "a 2-D array (N, C)")
    g = _global_geometry(xa.shape, data_format)
    if gy.shape != (g.n, g.c):
        raise ValueError(f"grad_y must have shape (N, C) = {(g.n, g.c)} for x of shape "
                         f"{xa.shape} ({data_format}), got {gy.shape}")
    return common_float_dtype({"grad_y": gy, "x": xa}), gy, xa


# ---- SoftPool --------------------------------------------------------------------------

def _soft_padded(x, g, fill):
    """x with the geometry's padding filled with ``fill`` (x itself without padding)."""
    hw = ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right))
    if hw == ((0, 0), (0, 0)):
        return x
    pads = ((0, 0),) + hw + ((0, 0),) if g.channels_last else ((0, 0), (0, 0)) + hw
    return np.pad(x, pads, constant_values=fill)


def _soft_offsets(g):
    """For each cell (a, b) of the window: the index of the padded input's cells that
    cell reads, one per output pixel (an output-shaped strided view)."""
    for a in range(g.kh):
        rows = slice(a, a + g.sy * (g.oh - 1) + 1, g.sy)
        for b in range(g.kw):
            cols = slice(b, b + g.sx * (g.ow - 1) + 1, g.sx)
            yield ((slice(None), rows, cols, slice(None)) if g.channels_last
                   else (slice(None), slice(None), rows, cols))


def _soft_forward(g, x):
    """(y, (m, s)): the SoftPool output, each window's maximum m and its sum s of
    exp(x - m), which the gradient reuses."""
    values = _soft_padded(x, g, 0)
    shifted = _soft_padded(x, g, -np.inf)
    m = None
    for idx in _soft_offsets(g):
        m = shifted[idx].copy() if m is None else np.maximum(m, shifted[idx], out=m)
    s, t = np.zeros_like(m), np.zeros_like(m)
    for idx in _soft_offsets(g):
        e = np.exp(shifted[idx] - m)
        s += e
        e *= values[idx]
        t += e
    t /= s
    return t, (m, s)


def _soft_backward(g, grad_y, x, y, stats):
    """d SoftPool / d x: each window adds grad_y * p_i * (1 + x_i - y) to its cell i,
    p_i = exp(x_i - m) / s (the softmax weight of the cell)."""
    m, s = stats
    values = _soft_padded(x, g, 0)
    shifted = _soft_padded(x, g, -np.inf)
    gs = grad_y / s
    grad = np.zeros(values.shape, x.dtype)
    one = x.dtype.type(1)
    for idx in _soft_offsets(g):
        term = np.exp(shifted[idx] - m)
        term *= gs
        term *= (values[idx] - y) + one
        grad[idx] += term
    if grad.shape == x.shape:
        return grad
    hw = (slice(g.pad_top, g.pad_top + g.h), slice(g.pad_left, g.pad_left + g.w))
    index = (slice(None),) + hw if g.channels_last else (slice(None), slice(None)) + hw
    return np.ascontiguousarray(grad[index])


def soft_pool2d(x, pool_size, stride=None, padding=0, data_format="channels_first"):
    """SoftPool (Stergiou, Poppe and Kalliatakis, "Refining activation downsampling
    with SoftPool", ICCV 2021): each window's output is the softmax-weighted sum of its
    cells, sum_i exp(x_i) x_i / sum_j exp(x_j), computed with the window's maximum
    subtracted (no overflow for any finite input).  Padded cells (``"same"`` or numeric
    padding) are absent from the window, not zeros.  Arguments as for
    :func:`max_pool2d`; x must be finite."""
    xa = _x_input(x, data_format)
    xa = np.ascontiguousarray(xa, dtype=common_float_dtype({"x": xa}))
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    return _soft_forward(g, xa)[0]


def soft_pool2d_backward(grad_y, x, pool_size, stride=None, padding=0,
                         data_format="channels_first"):
    """Gradient of :func:`soft_pool2d` with respect to x: with p the window's softmax
    weights and y its output, d y / d x_i = p_i (1 + x_i - y)."""
    dtype, gy, xa = _grad_input(grad_y, x, data_format)
    xa = np.ascontiguousarray(xa, dtype=dtype)
    g = _geometry(xa.shape, pool_size, stride, padding, data_format)
    _check_grad_shape(gy, g)
    y, stats = _soft_forward(g, xa)
    return _soft_backward(g, np.ascontiguousarray(gy, dtype=dtype), xa, y, stats)
