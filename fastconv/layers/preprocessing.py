"""Preprocessing and augmentation layers (Keras 3's arguments and defaults).

Deterministic layers (run in training and inference):

- ``Rescaling(scale, offset=0.0)``: ``x * scale + offset``.
- ``Normalization(axis=-1, mean=None, variance=None, invert=False)``:
  ``(x - mean) / max(sqrt(variance), 1e-7)`` (Keras 3's formula), or its inverse;
  ``adapt(data)`` computes mean and variance, kept as the non-trainable weights
  ``mean`` and ``variance`` (saved with the model).

Random image layers transform only when called with ``training=True`` (a training
step); ``predict``, ``evaluate`` and ``layer(x)`` leave images unchanged, except
``RandomCrop``, whose output always has the target size (in inference it crops the
centre to the target's aspect ratio and resizes, as Keras):

- ``RandomFlip(mode="horizontal_and_vertical")``
- ``RandomTranslation(height_factor, width_factor, fill_mode="reflect", ...)``
- ``RandomZoom(height_factor, width_factor=None, fill_mode="reflect", ...)``
- ``RandomRotation(factor, fill_mode="reflect", ...)``
- ``RandomCrop(height, width)``

Each draws from its own generator (``layer.generator``, seeded by ``seed`` or from
fastconv's global generator, like Dropout), which model files save and restore.  The
drawn parameters of a call are ``layer.get_random_transformation(shape)``, and
``layer.transform_images(images, transformation)`` applies given parameters (as
Keras's methods of the same names), so a transform is reproducible and testable.

Geometric transforms resample the image through :func:`affine_transform` (Keras's
``keras.ops.image.affine_transform``): each output pixel reads the input at a point
given by a 3x3 projective matrix (Keras's 8 numbers ``a0 a1 a2 b0 b1 b2 c0 c1``),
with ``"bilinear"`` or ``"nearest"`` interpolation; input pixels outside the image
are taken by ``fill_mode``: ``"reflect"`` (d c b a | a b c d | d c b a), ``"wrap"``
(a b c d | a b c d), ``"nearest"`` (a a | a b c d | d d) or ``"constant"``
(``fill_value``).  Each of the interpolation's neighbours is mapped separately (as
Keras's NumPy and JAX backends and SciPy's padded map_coordinates do).

Backward: these layers have no parameters.  Every transform here is linear in the
image, so ``backward`` returns its adjoint applied to the gradient (flips and crops:
the inverse permutation / zero padding; resampling: each input pixel collects the
gradient of the outputs that read it, with their interpolation weights).  A model
never runs it for layers before its first trainable layer.
"""
import numbers

import numpy as np

from .. import _random
from .._validation import as_array
from .base import Layer
from .common import check_layer_data_format, check_positive_int

__all__ = ["Rescaling", "Normalization", "RandomFlip", "RandomTranslation",
           "RandomZoom", "RandomRotation", "RandomCrop", "affine_transform"]

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("nearest", "bilinear")
EPSILON = 1e-7  # keras.config.epsilon()


# --------------------------------------------------------------------- checks
def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_choice(value, choices, name):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def _check_seed(seed):
    if seed is not None and (isinstance(seed, (bool, np.bool_))
                             or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be None or a non-negative int, got {seed!r}")
    return None if seed is None else int(seed)


def _check_factor(factor, name, low, high, low_open=False):
    """Keras's factor argument: a number f (range [-|f|, |f|]) or a pair (lower,
    upper), every value in [low, high] (or (low, high] with low_open)."""
    def in_range(v):
        return _is_number(v) and (low < v if low_open else low <= v) and v <= high

    bounds = f"{'(' if low_open else '['}{low}, {high}]"
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(in_range(v) for v in factor):
            raise ValueError(f"{name} must be a number or a pair of numbers in "
                             f"{bounds}, got {factor!r}")
        lower, upper = sorted(float(v) for v in factor)
        return lower, upper
    if not in_range(factor):
        raise ValueError(f"{name} must be a number or a pair of numbers in {bounds}, "
                         f"got {factor!r}")
    return -abs(float(factor)), abs(float(factor))


def _config_value(value):
    """A factor/scale argument as JSON (tuples and arrays as lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_config_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------- resampling
def _map_indices(idx, size, fill_mode):
    """Integer indices (any ints) -> indices in [0, size), and a mask of the valid
    ones for "constant" (None otherwise)."""
    if fill_mode == "reflect":
        m = np.mod(idx, 2 * size)
        return np.where(m >= size, 2 * size - 1 - m, m), None
    if fill_mode == "wrap":
        return np.mod(idx, size), None
    if fill_mode == "nearest":
        return np.clip(idx, 0, size - 1), None
    valid = (idx >= 0) & (idx < size)
    return np.clip(idx, 0, size - 1), valid


def _round_half_up(v):
    return np.floor(v + 0.5)


def resample_plan(ys, xs, height, width, interpolation, fill_mode):
    """Where each output pixel reads: ``ys``, ``xs`` (N, Ho, Wo) source coordinates
    (row, column) in images of ``height`` x ``width``.

    Returns (index, weight, fill): index (K, M) rows of the (N*H*W)-row input (M =
    N*Ho*Wo, K = 4 neighbours for bilinear, 1 for nearest), their weights (K, M)
    (0 where "constant" leaves the image) and the weight of ``fill_value`` per output
    pixel (M,) (None unless fill_mode is "constant").
    """
    n = ys.shape[0]
    base = (np.arange(n, dtype=np.int64) * (height * width)).reshape(n, 1, 1)
    if interpolation == "nearest":
        corners = [(_round_half_up(ys).astype(np.int64),
                    _round_half_up(xs).astype(np.int64), None)]
    else:
        y0f, x0f = np.floor(ys), np.floor(xs)
        wy, wx = ys - y0f, xs - x0f
        y0, x0 = y0f.astype(np.int64), x0f.astype(np.int64)
        corners = [(y0, x0, (1 - wy) * (1 - wx)), (y0, x0 + 1, (1 - wy) * wx),
                   (y0 + 1, x0, wy * (1 - wx)), (y0 + 1, x0 + 1, wy * wx)]
    index, weight = [], []
    fill = None
    for iy, ix, w in corners:
        my, vy = _map_indices(iy, height, fill_mode)
        mx, vx = _map_indices(ix, width, fill_mode)
        w = np.ones(ys.shape) if w is None else w
        if vy is not None:
            valid = vy & vx
            fill = (0 if fill is None else fill) + np.where(valid, 0.0, w)
            w = np.where(valid, w, 0.0)
        index.append((base + my * width + mx).reshape(-1))
        weight.append(w.reshape(-1))
    return (np.stack(index), np.stack(weight),
            None if fill is None else fill.reshape(-1))


def _gather(x, plan, fill_value, out_hw):
    """Apply a resample plan to channels_last images x (N, H, W, C)."""
    index, weight, fill = plan
    n, c = x.shape[0], x.shape[-1]
    rows = x.reshape(-1, c)
    w = weight.astype(x.dtype)
    out = rows[index[0]] * w[0][:, None]
    for k in range(1, len(index)):
        out += rows[index[k]] * w[k][:, None]
    if fill is not None and fill_value != 0:
        out += (fill.astype(x.dtype) * x.dtype.type(fill_value))[:, None]
    return out.reshape((n,) + tuple(out_hw) + (c,))


def _scatter(grad, plan, in_shape):
    """The adjoint of _gather: the gradient (N, H, W, C) of the input from the
    output's (N, Ho, Wo, C)."""
    index, weight, _ = plan
    c = grad.shape[-1]
    g = grad.reshape(1, -1, c)
    flat = (index[:, :, None] * c + np.arange(c)).reshape(-1)
    vals = (weight[:, :, None] * g).reshape(-1)
    out = np.bincount(flat, weights=vals, minlength=int(np.prod(in_shape)))
    return out.reshape(in_shape).astype(grad.dtype, copy=False)


def _affine_coordinates(transform, height, width):
    """Source (ys, xs) of each output pixel for Keras's (N, 8) projective transforms
    (output column x, row y -> input ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k),
    k = c0 x + c1 y + 1)."""
    t = np.asarray(transform, dtype=np.float64)
    a0, a1, a2, b0, b1, b2, c0, c1 = (t[:, i].reshape(-1, 1, 1) for i in range(8))
    y = np.arange(height, dtype=np.float64).reshape(1, -1, 1)
    x = np.arange(width, dtype=np.float64).reshape(1, 1, -1)
    k = c0 * x + c1 * y + 1.0
    return (b0 * x + b1 * y + b2) / k, (a0 * x + a1 * y + a2) / k


def _to_last(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 2, 3, 1))


def _from_last(x, data_format):
    return x if data_format == "channels_last" else np.ascontiguousarray(
        x.transpose(0, 3, 1, 2))


def _check_transform(transform, n):
    t = np.asarray(transform, dtype=np.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] != 8 or t.shape[0] not in (1, n):
        raise ValueError(f"transform must have shape (8,) or (N, 8) with N = {n} "
                         f"images, got shape {np.shape(transform)}")
    if not np.all(np.isfinite(t)):
        raise ValueError("transform must be finite")
    return np.broadcast_to(t, (n, 8))


def affine_transform(images, transform, interpolation="bilinear",
                     fill_mode="constant", fill_value=0.0, data_format=None):
    """Keras's ``keras.ops.image.affine_transform`` on a batch (N, H, W, C) (or
    (N, C, H, W) for channels_first): ``transform`` (8,) or (N, 8) maps each output
    pixel to the input point it reads (see the module docstring)."""
    data_format = check_layer_data_format(data_format)
    _check_choice(interpolation, INTERPOLATIONS, "interpolation")
    _check_choice(fill_mode, FILL_MODES, "fill_mode")
    x = as_array(images, "images")
    if x.ndim != 4:
        raise ValueError(f"images must be a batch of rank 4, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return _affine(x, _check_transform(transform, x.shape[0]), interpolation,
                   fill_mode, float(fill_value), data_format)[0]


def _affine(x, transform, interpolation, fill_mode, fill_value, data_format):
    xl = _to_last(x, data_format)
    n, h, w, _ = xl.shape
    ys, xs = _affine_coordinates(transform, h, w)
    plan = resample_plan(ys, xs, h, w, interpolation, fill_mode)
    return _from_last(_gather(xl, plan, fill_value, (h, w)), data_format), plan


def _affine_backward(grad, transform, interpolation, fill_mode, data_format):
    gl = _to_last(grad, data_format)
    n, h, w, _ = gl.shape
    ys, xs = _affine_coordinates(transform, h, w)
    plan = resample_plan(ys, xs, h, w, interpolation, fill_mode)
    return _from_last(_scatter(gl, plan, gl.shape), data_format)


def _resize_plan(n, in_hw, out_hw):
    """TF/Keras bilinear resize with half-pixel centres (no antialiasing): output
    pixel i reads (i + 0.5) * in / out - 0.5, edges clamped."""
    (h, w), (ho, wo) = in_hw, out_hw
    ys = (np.arange(ho) + 0.5) * (h / ho) - 0.5
    xs = (np.arange(wo) + 0.5) * (w / wo) - 0.5
    ys = np.broadcast_to(ys.reshape(1, -1, 1), (n, ho, wo))
    xs = np.broadcast_to(xs.reshape(1, 1, -1), (n, ho, wo))
    return resample_plan(ys, xs, h, w, "bilinear", "nearest")


# --------------------------------------------------------------------- layers
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
        config.update(scale=_config_value(self.scale), offset=_config_value(self.offset))
        return config


class Normalization(Layer):
    """Feature-wise standardisation: ``(x - mean) / max(sqrt(variance), 1e-7)``
    (``invert=True``: ``mean + x * max(sqrt(variance), 1e-7)``).

    ``axis`` (int, tuple or None) are the axes that keep their own statistics (-1:
    one mean per feature / channel; None: one scalar).  Either give ``mean`` and
    ``variance`` (broadcast to the kept axes, right-aligned, as Keras), or call
    ``adapt(data)`` before training: the statistics then live in the non-trainable
    weights ``mean`` and ``variance`` (saved with the model; zeros and ones until
    adapted).  The layer has nothing to train: ``layer.trainable`` is always False
    (``trainable=`` is kept in the config only), so models and optimizers leave the
    statistics alone.
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
        self._trainable_arg = True
        super().__init__(**kwargs)
        self.axis = axis
        self.input_mean = None if mean is None else _config_value(mean)
        self.input_variance = None if variance is None else _config_value(variance)
        self.invert = bool(invert)
        self._mean_initializer = _zeros_init()
        self._variance_initializer = _ones_init()
        self._broadcast_shape = None
        self.mean = self.variance = None

    @property
    def trainable(self):
        return False

    @trainable.setter
    def trainable(self, value):
        self._trainable_arg = bool(value)

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
            self.add_weight("mean", stats_shape, self._mean_initializer)
            self.add_weight("variance", stats_shape, self._variance_initializer)
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
        config["trainable"] = self._trainable_arg
        config.update(axis=list(self.axis), invert=self.invert, mean=self.input_mean,
                      variance=self.input_variance)
        return config


def _zeros_init():
    from .. import initializers
    return initializers.get("zeros", "mean_initializer")


def _ones_init():
    from .. import initializers
    return initializers.get("ones", "variance_initializer")


class _RandomImageLayer(Layer):
    """Base of the random image layers: a seeded generator, data_format, identity in
    inference, the transform of the last training call kept for backward."""
    _ndim = 4
    _cache_attrs = ("_x", "_transformation")

    def __init__(self, seed=None, data_format=None, **kwargs):
        seed = _check_seed(seed)
        data_format = check_layer_data_format(data_format)
        super().__init__(**kwargs)
        self.seed = seed
        self.data_format = data_format
        self.generator = _random.make_generator(seed)

    def _rank_desc(self):
        return ("(batch, height, width, channels)" if self.data_format == "channels_last"
                else "(batch, channels, height, width)")

    def _hw(self, shape):
        return (shape[1], shape[2]) if self.data_format == "channels_last" \
            else (shape[2], shape[3])

    def _check_images(self, images):
        x = as_array(images, "images")
        self._check_rank(x.shape, "images")
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _linear_forward(self, x, training):
        self._x = x
        if not training:
            self._transformation = None
            return x
        t = self.get_random_transformation(x.shape)
        self._transformation = t
        return self._transform(x, t)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        if self._transformation is None:
            return grad
        return self._transform_backward(grad, self._transformation)

    def transform_images(self, images, transformation):
        """Apply the given parameters (``get_random_transformation``'s output) to a
        batch of images."""
        return self._transform(self._check_images(images), transformation)

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed, data_format=self.data_format)
        return config


class RandomFlip(_RandomImageLayer):
    """Flip each image with probability 1/2 (Keras: a uniform draw <= 0.5):
    ``"horizontal"`` left-right, ``"vertical"`` top-bottom, or
    ``"horizontal_and_vertical"`` both at once (one draw per image, as Keras 3)."""
    MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None,
                 **kwargs):
        _check_choice(mode, self.MODES, "mode")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.mode = mode

    def get_random_transformation(self, shape):
        """{"flips": bool array (N,)}, drawn from the layer's generator."""
        return {"flips": self.generator.random(shape[0]) <= 0.5}

    def _axes_to_flip(self):
        h, w = (1, 2) if self.data_format == "channels_last" else (2, 3)
        return {"horizontal": (w,), "vertical": (h,),
                "horizontal_and_vertical": (h, w)}[self.mode]

    def _transform(self, x, t):
        flips = np.asarray(t["flips"], dtype=bool).reshape(-1)
        if flips.shape != (x.shape[0],):
            raise ValueError(f"flips must have one entry per image ({x.shape[0]}), got "
                             f"shape {np.shape(t['flips'])}")
        out = x.copy()
        if flips.any():
            out[flips] = np.flip(x[flips], axis=self._axes_to_flip())
        return out

    _transform_backward = _transform  # a flip is its own inverse

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


class _AffineLayer(_RandomImageLayer):
    """Random layers that resample through a projective matrix per image."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        _check_choice(fill_mode, FILL_MODES, "fill_mode")
        _check_choice(interpolation, INTERPOLATIONS, "interpolation")
        if not _is_number(fill_value) or not np.isfinite(fill_value):
            raise ValueError(f"fill_value must be a finite number, got {fill_value!r}")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)

    def _transform(self, x, t):
        matrix = _check_transform(self.transform_matrix(t, x.shape), x.shape[0])
        out, _ = _affine(x, matrix, self.interpolation, self.fill_mode,
                         self.fill_value, self.data_format)
        return out

    def _transform_backward(self, grad, t):
        matrix = _check_transform(self.transform_matrix(t, grad.shape), grad.shape[0])
        return _affine_backward(grad, matrix, self.interpolation, self.fill_mode,
                                self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(fill_mode=self.fill_mode, interpolation=self.interpolation,
                      fill_value=self.fill_value)
        return config


class RandomTranslation(_AffineLayer):
    """Shift each image by a random fraction of its size: vertically by
    U(height_factor range) * height (positive: down), horizontally by
    U(width_factor range) * width (positive: right).  A factor f means [-|f|, |f|];
    a pair (lower, upper) the range itself; all values in [-1, 1]."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        self.height_lower, self.height_upper = _check_factor(
            height_factor, "height_factor", -1.0, 1.0)
        self.width_lower, self.width_upper = _check_factor(
            width_factor, "width_factor", -1.0, 1.0)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor

    def get_random_transformation(self, shape):
        """{"translations": (N, 2) [dx, dy] in pixels}: dy drawn first, as Keras."""
        n = shape[0]
        h, w = self._hw(shape)
        dy = self.generator.uniform(self.height_lower, self.height_upper, n) * h
        dx = self.generator.uniform(self.width_lower, self.width_upper, n) * w
        return {"translations": np.stack([dx, dy], axis=1)}

    @staticmethod
    def transform_matrix(t, shape):
        tr = np.asarray(t["translations"], dtype=np.float64).reshape(-1, 2)
        n = len(tr)
        one, zero = np.ones(n), np.zeros(n)
        return np.stack([one, zero, -tr[:, 0], zero, one, -tr[:, 1], zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=_config_value(self.height_factor),
                      width_factor=_config_value(self.width_factor))
        return config


class RandomZoom(_AffineLayer):
    """Zoom each image about its centre: the output at offset d from the centre reads
    the input at d * z, z = 1 + U(factor range) (a positive factor zooms out, a
    negative one in); ``width_factor=None`` uses the height's z for both axes.
    Factors in (-1, 1]."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0,
                 data_format=None, **kwargs):
        self.height_lower, self.height_upper = _check_factor(
            height_factor, "height_factor", -1.0, 1.0, low_open=True)
        if width_factor is not None:
            self.width_lower, self.width_upper = _check_factor(
                width_factor, "width_factor", -1.0, 1.0, low_open=True)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.height_factor = height_factor
        self.width_factor = width_factor

    def get_random_transformation(self, shape):
        """{"height_zoom": (N, 1), "width_zoom": (N, 1)} (height drawn first)."""
        n = shape[0]
        hz = self.generator.uniform(1 + self.height_lower, 1 + self.height_upper,
                                    (n, 1))
        if self.width_factor is None:
            wz = hz.copy()
        else:
            wz = self.generator.uniform(1 + self.width_lower, 1 + self.width_upper,
                                        (n, 1))
        return {"height_zoom": hz, "width_zoom": wz}

    def transform_matrix(self, t, shape):
        h, w = self._hw(shape)
        zx = np.asarray(t["width_zoom"], dtype=np.float64).reshape(-1)
        zy = np.asarray(t["height_zoom"], dtype=np.float64).reshape(-1)
        zero = np.zeros(len(zx))
        return np.stack([zx, zero, (w - 1) / 2 * (1 - zx), zero, zy,
                         (h - 1) / 2 * (1 - zy), zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=_config_value(self.height_factor),
                      width_factor=_config_value(self.width_factor))
        return config


class RandomRotation(_AffineLayer):
    """Rotate each image about its centre by U(factor range) * 360 degrees (positive:
    counter-clockwise on screen, as Keras).  A factor f means [-|f|, |f|]; a pair
    (lower, upper) the range itself; values in [-1, 1]."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear",
                 seed=None, fill_value=0.0, data_format=None, **kwargs):
        self.lower, self.upper = _check_factor(factor, "factor", -1.0, 1.0)
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.factor = factor

    def get_random_transformation(self, shape):
        """{"angle": (N,) degrees}."""
        return {"angle": self.generator.uniform(self.lower * 360.0,
                                                self.upper * 360.0, shape[0])}

    def transform_matrix(self, t, shape):
        """Keras's _compute_affine_matrix for a rotation about ((W-1)/2, (H-1)/2)."""
        h, w = self._hw(shape)
        theta = np.deg2rad(np.asarray(t["angle"], dtype=np.float64).reshape(-1))
        cx, cy = 0.5 * (w - 1), 0.5 * (h - 1)
        cos, sin = np.cos(theta), np.sin(theta)
        a0, a1, b0, b1 = cos, -sin, sin, cos
        a2 = cx - cx * a0 - cy * a1
        b2 = cy - cx * b0 - cy * b1
        zero = np.zeros(len(theta))
        return np.stack([a0, a1, a2, b0, b1, b2, zero, zero], 1)

    def get_config(self):
        config = super().get_config()
        config["factor"] = _config_value(self.factor)
        return config


class RandomCrop(_RandomImageLayer):
    """Crop the batch to ``height`` x ``width``, as Keras 3: in training, when the
    input is larger on both axes, one random window for the whole batch; otherwise
    (inference, or an input not larger on both axes) the centre crop with the target's
    aspect ratio, resized (bilinear, half-pixel centres) when its size differs.

    That second case follows Keras 2 (``smart_resize``), not Keras 3.15, which returns
    the input unchanged in inference (a shape its compute_output_shape does not
    give) and, in training with a small input, resizes a target-sized window clipped
    at the image's edge."""

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        height = check_positive_int(height, "height")
        width = check_positive_int(width, "width")
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height, self.width = height, width

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        self._check_rank(shape, "input shape")
        h, w = (1, 2) if self.data_format == "channels_last" else (2, 3)
        shape[h], shape[w] = self.height, self.width
        return tuple(shape)

    def _linear_forward(self, x, training):
        self._x = x
        t = self.get_random_transformation(x.shape, training)
        self._transformation = t
        return self._transform(x, t)

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return self._transform_backward(grad, self._transformation)

    def get_random_transformation(self, shape, training=True):
        """{"h_start", "w_start", "crop_height", "crop_width"}: the window of the
        input that becomes the output (resized when not height x width)."""
        ih, iw = self._hw(shape)
        if training and ih > self.height and iw > self.width:
            hs = int(self.generator.integers(0, ih - self.height + 1))
            ws = int(self.generator.integers(0, iw - self.width + 1))
            return {"h_start": hs, "w_start": ws, "crop_height": self.height,
                    "crop_width": self.width}
        ch = max(min(ih, int(float(iw * self.height) / self.width)), 1)
        cw = max(min(iw, int(float(ih * self.width) / self.height)), 1)
        return {"h_start": int(float(ih - ch) / 2), "w_start": int(float(iw - cw) / 2),
                "crop_height": ch, "crop_width": cw}

    def _window(self, shape, t):
        ih, iw = self._hw(shape)
        hs, ws = int(t["h_start"]), int(t["w_start"])
        ch, cw = int(t["crop_height"]), int(t["crop_width"])
        if not (0 <= hs and hs + ch <= ih and 0 <= ws and ws + cw <= iw
                and ch > 0 and cw > 0):
            raise ValueError(f"crop window {t} does not fit in images of size "
                             f"{ih}x{iw}")
        return hs, ws, ch, cw

    def _transform(self, x, t):
        hs, ws, ch, cw = self._window(x.shape, t)
        xl = _to_last(x, self.data_format)
        crop = xl[:, hs:hs + ch, ws:ws + cw, :]
        if (ch, cw) == (self.height, self.width):
            out = np.ascontiguousarray(crop)
        else:
            plan = _resize_plan(x.shape[0], (ch, cw), (self.height, self.width))
            out = _gather(np.ascontiguousarray(crop), plan, 0.0,
                          (self.height, self.width))
        return _from_last(out, self.data_format)

    def _transform_backward(self, grad, t):
        x_shape = self._x.shape
        hs, ws, ch, cw = self._window(x_shape, t)
        gl = _to_last(grad, self.data_format)
        n, c = gl.shape[0], gl.shape[-1]
        if (ch, cw) != (self.height, self.width):
            plan = _resize_plan(n, (ch, cw), (self.height, self.width))
            gl = _scatter(gl, plan, (n, ch, cw, c))
        ih, iw = self._hw(x_shape)
        out = np.zeros((n, ih, iw, c), dtype=grad.dtype)
        out[:, hs:hs + ch, ws:ws + cw, :] = gl
        return _from_last(out, self.data_format)

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config
