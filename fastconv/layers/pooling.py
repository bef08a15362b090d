"""Pooling layers: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
GlobalMaxPooling2D (Keras API), and SoftPooling2D (SoftPool, fastconv.pooling.soft_pool2d:
not a Keras layer)."""
from .. import pooling as _pool
from ..shapes import conv_output_shape, normalize_pair, resolve_padding
from .base import Layer
from .common import check_layer_data_format, check_layer_padding

__all__ = ["MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
           "GlobalMaxPooling2D", "SoftPooling2D"]


class _Pooling2D(Layer):
    _ndim = 4
    _cache_attrs = ("_x", "_indices")

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_pair(pool_size, "pool_size")
        self.strides = (self.pool_size if strides is None
                        else normalize_pair(strides, "strides"))
        self.padding = check_layer_padding(padding)
        self.data_format = check_layer_data_format(data_format)
        self._last = self.data_format == "channels_last"
        self._geometry, self._geometry_key = None, None

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def _ready(self, x, grad=None):
        """The pooling's geometry for x when x (and grad, of the output's shape) are
        what the kernels take as they are, else None and the checked ops run.  Checked
        once per input shape (every call of a layer has the same one) where the
        functional ops check on every call, which costs a small-batch forward much of
        its time (docs/design/algorithms.md)."""
        if not _pool._ready(x) or (grad is not None and not (
                _pool._ready(grad) and grad.dtype == x.dtype)):
            return None
        if x.shape != self._geometry_key:
            self._geometry = _pool._geometry(x.shape, self.pool_size, self.strides,
                                             self.padding, self.data_format)
            self._geometry_key = x.shape
        g = self._geometry
        return g if grad is None or grad.shape == g.y_shape else None

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        n, h, w, c = shape if self._last else (shape[0], shape[2], shape[3], shape[1])
        hw = (1 if h is None else h, 1 if w is None else w)
        pads = resolve_padding(self.padding, hw, self.pool_size, self.strides)
        try:
            oh, ow = conv_output_shape(hw, self.pool_size, self.strides, pads,
                                       what="pool_size", name="the input")
        except ValueError as exc:
            raise ValueError(f"layer {self.name!r} cannot be applied to input shape "
                             f"{shape}: {exc}") from None
        oh, ow = (None if h is None else oh), (None if w is None else ow)
        return (n, oh, ow, c) if self._last else (n, c, oh, ow)

    def _op_args(self):
        return dict(stride=self.strides, padding=self.padding,
                    data_format=self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides),
                      padding=self.padding, data_format=self.data_format)
        return config


class MaxPooling2D(_Pooling2D):
    """Max over pool_size windows (padded cells never win; NaN propagates)."""

    def _linear_forward(self, x, training):
        self._x = x
        g = self._ready(x)
        if g is not None:
            y, self._indices = _pool._max_forward(g, x, True)
            return y
        y, self._indices = _pool.max_pool2d(x, self.pool_size, return_indices=True,
                                            **self._op_args())
        return y

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        g = self._ready(self._x, grad)
        if g is not None:
            return _pool._max_backward(g, grad, self._indices)
        return _pool.max_pool2d_backward(grad, self._x, self.pool_size,
                                         indices=self._indices, **self._op_args())


class AveragePooling2D(_Pooling2D):
    """Mean over pool_size windows; with 'same' padding, padded cells are not counted
    (Keras/TensorFlow)."""

    def _linear_forward(self, x, training):
        self._x = x
        g = self._ready(x)
        if g is not None:
            return _pool._avg_forward(g, x, _pool._include_pad(None, g))
        return _pool.avg_pool2d(x, self.pool_size, **self._op_args())

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        g = self._ready(self._x, grad)
        if g is not None:
            return _pool._avg_backward(g, grad, _pool._include_pad(None, g))
        return _pool.avg_pool2d_backward(grad, self._x, self.pool_size, **self._op_args())

    # ------------------------------------------------ explicit entry points of fusion
    def _cache_for_backward(self, x):
        """Keep what backward reads after a fused forward pooled x (as forward would)."""
        self._x = x

    def _grad_geometry(self, grad, x):
        """The pooling's geometry for grad, the output gradient of the last forward,
        when x is that forward's input and the arrays are what the kernels take as they
        are; else None.  A model's fused step takes the gradient through this pooling
        and the activation that made x in one pass with it (fastconv/fusion.py)."""
        if self._x is None or self._x is not x:
            return None
        return self._ready(x, grad)


class SoftPooling2D(_Pooling2D):
    """SoftPool (Stergiou et al., 2021): each window's softmax-weighted sum of its
    cells, sum_i exp(x_i) x_i / sum_j exp(x_j); with 'same' padding the padded cells
    are absent from the window.  Arguments as MaxPooling2D's."""
    _cache_attrs = ("_x", "_soft")

    def _linear_forward(self, x, training):
        self._x = x
        g = _pool._geometry(x.shape, self.pool_size, self.strides, self.padding,
                            self.data_format)
        y, stats = _pool._soft_forward(g, x)
        self._soft = (g, y, stats)
        return y

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        g, y, stats = self._soft
        return _pool._soft_backward(g, grad, self._x, y, stats)


class _GlobalPooling2D(Layer):
    """A reduction over height and width: (N, C), or (N, 1, 1, C) with keepdims=True."""
    _ndim = 4

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_layer_data_format(data_format)
        self.keepdims = bool(keepdims)
        self._last = self.data_format == "channels_last"

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self._last
                else "(batch, channels, height, width)")

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        n, c = shape[0], (shape[-1] if self._last else shape[1])
        if not self.keepdims:
            return (n, c)
        return (n, 1, 1, c) if self._last else (n, c, 1, 1)

    def _flat(self, grad):
        """The output gradient as (N, C) (it is (N, 1, 1, C) with keepdims)."""
        return grad.reshape(grad.shape[0], self._x.shape[-1 if self._last else 1])

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: (N, C), or (N, 1, 1, C) with keepdims=True."""

    def _linear_forward(self, x, training):
        self._x = x
        y = _pool.global_avg_pool2d(x, data_format=self.data_format)
        if self.keepdims:
            y = y.reshape(self.compute_output_shape(x.shape))
        return y

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        grad = self._flat(grad)
        return _pool.global_avg_pool2d_backward(grad, self._x.shape,
                                                data_format=self.data_format)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over height and width: (N, C), or (N, 1, 1, C) with keepdims=True.  The
    gradient of a maximum is split equally among tied cells (TensorFlow's rule)."""

    def _linear_forward(self, x, training):
        self._x = x
        y = _pool.global_max_pool2d(x, data_format=self.data_format)
        if self.keepdims:
            y = y.reshape(self.compute_output_shape(x.shape))
        return y

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        grad = self._flat(grad)
        return _pool.global_max_pool2d_backward(grad, self._x,
                                                data_format=self.data_format)
