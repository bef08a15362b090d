"""Dense, Flatten, Dropout and Activation layers (Keras API)."""
import numbers

import numpy as np

from .. import _ext, _random
from .. import initializers as _initializers
from .._blas import _product
from .base import Layer, check_activation
from .common import check_layer_data_format, check_positive_int

__all__ = ["Dense", "Flatten", "Dropout", "Activation"]

class Dense(Layer):
    """``activation(x @ kernel + bias)`` on the last axis; kernel (in, units)."""
    _min_ndim = 2

    # _linear_forward's output is a new array (activations may overwrite it)
    _fresh_linear_output = True

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        if isinstance(units, (bool, np.bool_)) or not isinstance(units, numbers.Integral) \
                or units <= 0:
            raise ValueError(f"units must be a positive int, got {units!r}")
        super().__init__(**kwargs)
        self.units = int(units)
        self._set_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = _initializers.get(kernel_initializer,
                                                    "kernel_initializer")
        self.bias_initializer = _initializers.get(bias_initializer, "bias_initializer")
        self._set_weight_regularization(kernel_regularizer, bias_regularizer,
                                        kernel_constraint, bias_constraint)

    def _rank_desc(self):
        return "(batch, ..., features)"

    def _build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"layer {self.name!r} needs a known last axis, got input "
                             f"shape {input_shape}")
        self._axes = {-1: features}
        self.add_weight("kernel", (features, self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        self._check_rank(tuple(input_shape), "input shape")
        return tuple(input_shape[:-1]) + (self.units,)

    def _linear_forward(self, x, training):
        self._x = x
        x2 = x.reshape(-1, x.shape[-1])
        z = _product(x2, self.kernel, self.bias if self.use_bias else None)
        return z if x.ndim == 2 else z.reshape(x.shape[:-1] + (self.units,))

    def _linear_backward(self, grad, need_input_grad):
        x2 = self._x.reshape(-1, self._x.shape[-1])
        g2 = grad.reshape(-1, self.units)
        self._grads["kernel"] = _product(x2.T, g2)
        if self.use_bias:
            self._grads["bias"] = g2.sum(axis=0)
        if not need_input_grad:
            return None
        return _product(g2, self.kernel.T).reshape(self._x.shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, activation=self.activation, use_bias=self.use_bias,
            kernel_initializer=_initializers.serialize_initializer(
                self.kernel_initializer),
            bias_initializer=_initializers.serialize_initializer(self.bias_initializer))
        config.update(self._weight_regularization_config())
        return config


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)); channels_first input is first moved to channels_last,
    so the order is always H, W, C as in Keras."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_layer_data_format(data_format)

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape[1:])
        size = None if any(s is None for s in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], size)

    def _linear_forward(self, x, training):
        self._x = x
        if self.data_format == "channels_first" and x.ndim > 2:
            x = x.transpose((0,) + tuple(range(2, x.ndim)) + (1,))
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        shape = self._x.shape
        if self.data_format == "channels_first" and len(shape) > 2:
            last = (shape[0],) + shape[2:] + (shape[1],)
            g = grad.reshape(last)
            return np.ascontiguousarray(
                g.transpose((0, g.ndim - 1) + tuple(range(1, g.ndim - 1))))
        return grad.reshape(shape)

    def get_config(self):
        config = super().get_config()
        config["data_format"] = self.data_format
        return config


class Dropout(Layer):
    """Inverted dropout: with training=True, zero each element with probability ``rate``
    and scale the rest by 1 / (1 - rate); identity otherwise.

    ``noise_shape`` (None entries: the input's size) shares one mask value along axes of
    size 1, e.g. (None, 1, 1, None) drops whole channels.  ``seed`` makes the masks repeat;
    without it the layer's generator is seeded from fastconv's (see set_seed).
    """
    _cache_attrs = ("_x", "_mask")

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, numbers.Real) \
                or not 0 <= rate < 1:
            raise ValueError(f"rate must be a float in [0, 1), got {rate!r}")
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else tuple(
            None if s is None else check_positive_int(s, "noise_shape")
            for s in noise_shape)
        self.seed = seed
        self.generator = _random.make_generator(seed)

    def _mask_shape(self, shape):
        if self.noise_shape is None:
            return shape
        if len(self.noise_shape) != len(shape):
            raise ValueError(f"noise_shape {self.noise_shape} of layer {self.name!r} must "
                             f"have one entry per input axis, input shape {shape}")
        out = tuple(s if n is None else n for s, n in zip(shape, self.noise_shape))
        if any(n not in (1, s) for n, s in zip(out, shape)):
            raise ValueError(f"noise_shape {self.noise_shape} of layer {self.name!r} must "
                             f"have 1 or the input's size on each axis, input shape "
                             f"{shape}")
        return out

    def build(self, input_shape):
        super().build(input_shape)
        if self.noise_shape is not None:
            self._mask_shape(tuple(1 if s is None else s for s in input_shape))

    def _linear_forward(self, x, training):
        self._x = x
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        shape = self._mask_shape(x.shape)
        threshold = np.uint32(min(round(self.rate * 2.0 ** 32), 2 ** 32 - 1))
        scale = x.dtype.type(1.0 / (1.0 - self.rate))
        # An element is kept when its 32 random bits are >= rate * 2**32, i.e. with
        # probability 1 - rate up to 2**-32.
        if shape == x.shape and x.dtype in (np.float32, np.float64):
            # One compiled pass: bits from a counter-based generator keyed by one
            # 64-bit draw of the layer's generator (src/_activations.pyx).
            seed = int(self.generator.bit_generator.random_raw())
            out, mask = np.empty_like(x), np.empty_like(x)
            if x.size:
                _ext.activations.dropout(x.reshape(-1), out.reshape(-1),
                                         mask.reshape(-1), seed, int(threshold), scale)
            self._mask = mask
            return out
        n = int(np.prod(shape, dtype=np.int64))
        # (noise_shape: a smaller mask, broadcast.)  32 random bits per element straight
        # from the bit generator (two per 64-bit draw, no float conversion).
        bits = self.generator.bit_generator.random_raw((n + 1) // 2)
        bits = bits.view(np.uint32)[:n].reshape(shape)
        mask = np.multiply(bits >= threshold, scale, dtype=x.dtype)
        self._mask = mask
        return x * mask

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        if self._mask is None:
            return grad
        return grad * self._mask

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed,
                      noise_shape=None if self.noise_shape is None
                      else list(self.noise_shape))
        return config


class Activation(Layer):
    """Applies an activation: "relu", "tanh", "sigmoid", "softmax" or "linear"."""

    def __init__(self, activation, **kwargs):
        check_activation(activation)
        super().__init__(**kwargs)
        self._set_activation(activation)

    def get_config(self):
        config = super().get_config()
        config["activation"] = self.activation
        return config
