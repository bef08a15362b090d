"""Preprocessing layers (Keras 3's arguments and defaults).

Deterministic layers (run in training and inference):

- ``Rescaling(scale, offset=0.0)``: ``x * scale + offset``.
- ``Normalization(axis=-1, mean=None, variance=None, invert=False)``:
  ``(x - mean) / max(sqrt(variance), 1e-7)`` (Keras 3's formula), or its inverse;
  ``adapt(data)`` computes mean and variance, kept as the non-trainable weights
  ``mean`` and ``variance`` (saved with the model).

The random augmentation layers (``RandomFlip``, ``RandomTranslation``, ``RandomZoom``,
``RandomRotation``, ``RandomCrop``) live in fastconv/layers/image_augmentation.py and
the resampling (:func:`affine_transform`) in fastconv/layers/_resample.py; both are
re-exported here, where they were first defined.
"""
import numbers

import numpy as np

from .._validation import as_array
from . import _resample
from ._resample import affine_transform
from .base import Layer
from .common import config_value
from .image_augmentation import (RandomCrop, RandomFlip, RandomRotation,
                                 RandomTranslation, RandomZoom)

__all__ = ["Rescaling", "Normalization", "RandomFlip", "RandomTranslation",
           "RandomZoom", "RandomRotation", "RandomCrop", "affine_transform"]

EPSILON = 1e-7  # keras.config.epsilon()

# The resampling's names, still reachable here (tests use _affine_coordinates).
FILL_MODES, INTERPOLATIONS = _resample.FILL_MODES, _resample.INTERPOLATIONS
resample_plan = _resample.resample_plan
_affine_coordinates = _resample._affine_coordinates


class Rescaling(Layer):
    """``x * scale + offset`` (e.g. ``Rescaling(1 / 255)``); ``scale`` and ``offset``
    are numbers or arrays broadcast against the trailing axes (per channel for
    channels_last images)."""

    def __init__(self, scale, offset=0.0, **kwargs):
        self._scale = self._check_param(scale, "scale")
        self._offset = self._check_param(offset, "offset")
        super().__init__(**kwargs)
        self.scale, self.offset = scale, offset

    @staticmethod
    def _check_param(value, name):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a number or an array of numbers, got "
                            f"{value!r}") from None
        if isinstance(value, (bool, np.bool_, str)) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be a finite number or array, got {value!r}")
        return arr

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for arr, name in ((self._scale, "scale"), (self._offset, "offset")):
            if arr.ndim > len(shape) - 1 or any(
                    a != 1 and s is not None and a != s
                    for a, s in zip(arr.shape[::-1], shape[::-1])):
                raise ValueError(f"{name} of shape {arr.shape} of layer {self.name!r} "
                                 f"does not broadcast against inputs of shape {shape}")
        return shape

    def _linear_forward(self, x, training):
        self._x = x
        out = x * self._scale.astype(x.dtype)
        out += self._offset.astype(x.dtype)
        return out

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return grad * self._scale.astype(grad.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(scale=config_value(self.scale), offset=config_value(self.offset))
        return config


class Normalization(Layer):
    """Feature-wise standardisation: ``(x - mean) / max(sqrt(variance), 1e-7)``
    (``invert=True``: ``mean + x * max(sqrt(variance), 1e-7)``).

    ``axis`` (int, tuple or None) are the axes that keep their own statistics (-1:
    one mean per feature / channel; None: one scalar).  Either give ``mean`` and
    ``variance`` (broadcast to the kept axes, right-aligned, as Keras), or call
    ``adapt(data)`` before training: the statistics then live in the non-trainable
    weights ``mean`` and ``variance`` (saved with the model; zeros and ones until
    adapted).  The layer has nothing to train: its weights are non-trainable (as
    Keras's), so optimizers leave the statistics alone whatever ``trainable`` says.
    """

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        if axis is None:
            axis = ()
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
            axis = (int(axis),)
        elif isinstance(axis, (tuple, list)) and all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool)
                for a in axis):
            axis = tuple(int(a) for a in axis)
        else:
            raise TypeError(f"axis must be an int, a tuple of ints or None, got {axis!r}")
        if len(set(axis)) != len(axis):
            raise ValueError(f"axis must not repeat an axis, got {axis!r}")
        if (mean is None) != (variance is None):
            raise ValueError(f"mean and variance must be given together, got "
                             f"mean={mean!r} and variance={variance!r}")
        if mean is not None:
            m = Rescaling._check_param(mean, "mean")
            v = Rescaling._check_param(variance, "variance")
            if m.shape != v.shape:
                raise ValueError(f"mean and variance must have the same shape, got "
                                 f"{m.shape} and {v.shape}")
            if m.ndim > len(axis):
                raise ValueError(f"mean must have rank <= the number of axes "
                                 f"{len(axis)} (axis={axis}), got shape {m.shape}")
            if np.any(v < 0):
                raise ValueError("variance must be >= 0")
        super().__init__(**kwargs)
        self.axis = axis
        self.input_mean = None if mean is None else config_value(mean)
        self.input_variance = None if variance is None else config_value(variance)
        self.invert = bool(invert)
        self._mean_initializer = _zeros_init()
        self._variance_initializer = _ones_init()
        self._broadcast_shape = None
        self.mean = self.variance = None

    def _build(self, input_shape):
        ndim = len(input_shape)
        if any(not -ndim <= a < ndim for a in self.axis):
            raise ValueError(f"axis {self.axis} of layer {self.name!r} must lie in "
                             f"[-{ndim}, {ndim}) for inputs of shape {input_shape}")
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(f"axis {self.axis} of layer {self.name!r}: the kept "
                                 f"axes need a known size, got input shape "
                                 f"{input_shape} (axis {d} unknown)")
        self._ndim = ndim
        self._keep_axis = keep
        self._reduce_axis = tuple(d for d in range(ndim) if d not in keep)
        self._axes = {d: input_shape[d] for d in keep}
        self._broadcast_shape = tuple(input_shape[d] if d in keep else 1
                                      for d in range(ndim))
        stats_shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.add_weight("mean", stats_shape, self._mean_initializer,
                            trainable=False)
            self.add_weight("variance", stats_shape, self._variance_initializer,
                            trainable=False)
        else:
            m = np.asarray(self.input_mean, dtype=np.float64)
            v = np.asarray(self.input_variance, dtype=np.float64)
            expanded = [1] * ndim
            for i in range(1, m.ndim + 1):
                expanded[keep[-i]] = m.shape[-i]
            try:
                m = np.broadcast_to(m.reshape(expanded), self._broadcast_shape)
                v = np.broadcast_to(v.reshape(expanded), self._broadcast_shape)
            except ValueError:
                raise ValueError(f"mean of shape {np.shape(self.input_mean)} of layer "
                                 f"{self.name!r} does not broadcast to the kept axes "
                                 f"{stats_shape} of inputs {input_shape}") from None
            self.mean = m.astype(self.dtype)
            self.variance = v.astype(self.dtype)

    def _stats(self):
        if self.input_mean is None:
            mean = self.mean.reshape(self._broadcast_shape)
            var = self.variance.reshape(self._broadcast_shape)
        else:
            mean, var = self.mean, self.variance
        return mean, np.maximum(np.sqrt(var), self.dtype.type(EPSILON))

    def adapt(self, data):
        """Compute ``mean`` and ``variance`` over the non-kept axes of ``data``: an
        array, or an iterable of batches (arrays or (x, y) tuples), combined exactly
        (Chan et al.'s pooled mean and variance, in float64)."""
        if self.input_mean is not None:
            raise ValueError(f"layer {self.name!r} was given mean and variance: adapt() "
                             "is only for layers built without them")
        if isinstance(data, np.ndarray) or not hasattr(data, "__iter__"):
            batches = iter([as_array(data, "data")])
        else:
            batches = iter(data)
        count, total_mean, total_m2 = 0, None, None
        for batch in batches:
            if isinstance(batch, tuple):
                batch = batch[0]
            arr = as_array(batch, "data")
            if not self.built:
                self.build(arr.shape)
            else:
                self._check_input_shape(arr.shape, "adapt data")
            a = arr.astype(np.float64, copy=False)
            n = int(np.prod([a.shape[d] for d in self._reduce_axis], dtype=np.int64))
            if n == 0:
                continue
            m = a.mean(axis=self._reduce_axis)
            m2 = ((a - m.reshape(self._broadcast_shape)) ** 2).sum(
                axis=self._reduce_axis)
            if total_mean is None:
                count, total_mean, total_m2 = n, m, m2
            else:
                delta = m - total_mean
                new = count + n
                total_mean = total_mean + delta * (n / new)
                total_m2 = total_m2 + m2 + delta ** 2 * (count * n / new)
                count = new
        if total_mean is None:
            raise ValueError("adapt() needs non-empty data (at least one value per "
                             "kept axis)")
        self.mean[...] = total_mean
        self.variance[...] = total_m2 / count

    def _linear_forward(self, x, training):
        self._x = x
        mean, denom = self._stats()
        if self.invert:
            return mean + x * denom
        return (x - mean) / denom

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        _, denom = self._stats()
        return grad * denom if self.invert else grad / denom

    def get_config(self):
        config = super().get_config()
        config.update(axis=list(self.axis), invert=self.invert, mean=self.input_mean,
                      variance=self.input_variance)
        return config


def _zeros_init():
    from .. import initializers
    return initializers.get("zeros", "mean_initializer")


def _ones_init():
    from .. import initializers
    return initializers.get("ones", "variance_initializer")
