"""BatchNormalization: Keras 3's layer (arguments, defaults, weights, update rule).

Training (``layer(x, training=True)`` on a trainable layer) normalizes with the batch's
mean and biased variance over every axis but ``axis`` and updates the moving
statistics as Keras 3 does, with the same biased variance:

    moving_mean     = moving_mean * momentum + mean * (1 - momentum)
    moving_variance = moving_variance * momentum + variance * (1 - momentum)

(PyTorch's BatchNorm2d uses the unbiased variance there, and momentum_torch =
1 - momentum.)  Inference, and a frozen layer (``trainable=False``, as Keras), use the
moving statistics.  Either way the output is ``x * scale + shift`` per channel, with
scale = gamma / sqrt(variance + epsilon) and shift = beta - mean * scale; the
statistics are summed in float64.  The passes over the data are compiled
(src/_batchnorm.pyx): the training forward reads x twice and writes y once, the
backward reads x and the gradient twice and writes the input gradient once.

The backward pass of a training forward is the full batch-norm gradient (through the
batch mean and variance); after an inference forward it is the affine map's.  The
moving statistics are non-trainable weights: in ``weights`` (Keras's order gamma, beta,
moving_mean, moving_variance) but not in ``trainable_weights``, and without a gradient.
In a model's inference pass a BatchNormalization after a convolution is folded into
the convolution's kernel and bias (fastconv/fusion.py, ``folded``); one followed by a
plain ReLU or ReLU(6.0) runs with the activation inside its passes (``batch_norm_relu``).
"""
import numbers

import numpy as np

from .. import _arena, _ext
from .._layout import to_last
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .base import Layer

__all__ = ["BatchNormalization"]

#: channels_first runs (a channel's H x W values in one image) shorter than this are
#: summed over a channels_last copy: the run kernel's per-run cost (16 partial sums
#: and their tree) is more than the copy and the channels_last sums (docs/design/
#: algorithms.md, "BatchNormalization's short channels_first runs")
_MIN_RUN = 16


def _rows_last(v, a, c, b):
    """Flat v of an (a, c, b) view as the flat (a, b, c) copy: channels_last rows."""
    return to_last(v.reshape(a, c, b, 1)).reshape(-1)


def _real(value, name, low=None, high=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if (low is not None and value < low) or (high is not None and value > high) or \
            not np.isfinite(value):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


class BatchNormalization(Layer):
    """Batch normalization over every axis but ``axis`` (see the module docstring)."""

    _min_ndim = 2
    _cache_attrs = ("_x", "_stats", "_act_affine")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis)
        self.momentum = _real(momentum, "momentum", 0.0, 1.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        for flag, name in ((center, "center"), (scale, "scale")):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer, "beta_initializer")
        self.gamma_initializer = _initializers.get(gamma_initializer,
                                                   "gamma_initializer")
        self.moving_mean_initializer = _initializers.get(
            moving_mean_initializer, "moving_mean_initializer")
        self.moving_variance_initializer = _initializers.get(
            moving_variance_initializer, "moving_variance_initializer")
        regs = {"gamma": _regularizers.get(gamma_regularizer, "gamma_regularizer"),
                "beta": _regularizers.get(beta_regularizer, "beta_regularizer")}
        cons = {"gamma": _constraints.get(gamma_constraint, "gamma_constraint"),
                "beta": _constraints.get(beta_constraint, "beta_constraint")}
        self._regularizers = {k: v for k, v in regs.items() if v is not None}
        self._constraints = {k: v for k, v in cons.items() if v is not None}
        self._view_key = self._view_val = None

    @property
    def gamma_regularizer(self):
        return self._regularizers.get("gamma")

    @property
    def beta_regularizer(self):
        return self._regularizers.get("beta")

    @property
    def gamma_constraint(self):
        return self._constraints.get("gamma")

    @property
    def beta_constraint(self):
        return self._constraints.get("beta")

    # ------------------------------------------------------------------ shapes
    def _axis_of(self, shape):
        ndim = len(shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"axis {self.axis} of layer {self.name!r} is out of bounds "
                             f"for input shape {tuple(shape)}")
        return self.axis % ndim

    def _build(self, input_shape):
        axis = self._axis_of(input_shape)
        if axis == 0:
            raise ValueError(f"axis of layer {self.name!r} must not be the batch axis, "
                             f"got axis={self.axis} for input shape {input_shape}")
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"layer {self.name!r} needs a known size on axis "
                             f"{self.axis}, got input shape {input_shape}")
        self._axes = {axis: channels}
        shape = (channels,)
        if self.scale:
            self.add_weight("gamma", shape, self.gamma_initializer)
        if self.center:
            self.add_weight("beta", shape, self.beta_initializer)
        self.add_weight("moving_mean", shape, self.moving_mean_initializer,
                        trainable=False)
        self.add_weight("moving_variance", shape, self.moving_variance_initializer,
                        trainable=False)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape, "input shape")
        self._axis_of(shape)
        return shape

    def _view(self, shape):
        """(A, C, B): x's shape as rows, channels and the values after the channel
        axis (1 for channels_last), and the work items of the sums over it."""
        if shape != self._view_key:
            axis = self._axis_of(shape)
            a = int(np.prod(shape[:axis], dtype=np.int64))
            b = int(np.prod(shape[axis + 1:], dtype=np.int64))
            c = shape[axis]
            self._view_val = (a, c, b, _ext.batchnorm.n_items(a, c, b))
            self._view_key = shape
        return self._view_val

    def _sums(self, view, x, g, shift, grad, y=None, act=0, act_affine=(None, None)):
        """Per-channel float64 sums, d = x - shift: of d and d * d (grad False), of v
        and v * d (grad True), v = g through the activation act (0 none, 1 relu, 2
        relu6) whose output is y, or whose input was x * scale + shift with act_affine
        (scale, shift): y then not read (src/_batchnorm.pyx channel_sums_act).
        channels_first runs shorter than _MIN_RUN are summed as the channels_last
        rows of a transposed copy (the order of those sums, fixed by the shapes)."""
        a, c, b, items = view
        if 1 < b < _MIN_RUN:
            copies = {}   # (x, g and y are often one array: copied once)
            for v in (x, g, y):
                if v is not None and id(v) not in copies:
                    copies[id(v)] = _rows_last(v, a, c, b)
            x, g, y = (None if v is None else copies[id(v)] for v in (x, g, y))
            a, b, items = a * b, 1, _ext.batchnorm.n_items(a * b, c, 1)
        partial = np.empty((items, 2 * c), np.float64)
        sums = np.asarray(_ext.batchnorm.channel_sums_act(
            x, g, g if y is None else y, shift, partial, a, c, b, int(grad), act,
            *act_affine))
        return sums[:c], sums[c:]

    # ------------------------------------------------------------------ passes
    def _params(self, dtype=np.float64):
        gamma = self.gamma.astype(dtype) if self.scale else None
        beta = self.beta.astype(dtype) if self.center else None
        return gamma, beta

    def _affine(self, mean, var):
        """(scale, shift) in float64 of the normalization by mean and var."""
        gamma, beta = self._params()
        inv = 1.0 / np.sqrt(var + self.epsilon)
        scale = inv if gamma is None else inv * gamma
        shift = -mean * scale
        if beta is not None:
            shift += beta
        return inv, scale, shift

    def folded(self, kernel, bias, channel_axis):
        """A convolution's (kernel, bias) with this inference-mode normalization of its
        output folded in, computed in float64 and returned in the kernel's dtype:
        kernel scaled along channel_axis (its output channels), bias (None: zeros)
        mapped through the affine map.  (The fusion of conv + batch norm.)"""
        mean = self.moving_mean.astype(np.float64)
        _, scale, shift = self._affine(mean, self.moving_variance.astype(np.float64))
        bshape = [1] * kernel.ndim
        bshape[channel_axis] = -1
        k = (kernel.astype(np.float64) * scale.reshape(bshape)).astype(kernel.dtype)
        b = shift if bias is None else bias.astype(np.float64) * scale + shift
        return np.ascontiguousarray(k), b.astype(kernel.dtype)

    def _linear_forward(self, x, training):
        return self._normalize(x, training, 0)

    def _normalize(self, x, training, act):
        """The forward pass, with the activation act (0 none, 1 relu, 2 relu6) applied
        in the same pass (fastconv/fusion.py, batch_norm_relu)."""
        x = np.ascontiguousarray(x)  # (the kernels read and write flat arrays)
        view = self._view(x.shape)
        a, c, b = view[:3]
        m = a * b
        flat = x.reshape(-1)
        train = bool(training) and self.trainable and m > 0
        if train:
            # one pass: the moments about the first sample's values, d = x - shift;
            # E[d^2] - E[d]^2 in float64 cancels only by (mean - shift)^2 / var
            shift = x.reshape(a, c, b)[0, :, 0].astype(np.float64)
            s1, s2 = self._sums(view, flat, flat, shift, False)
            mean = shift + s1 / m
            var = np.maximum(s2 / m - (s1 / m) ** 2, 0.0)
            mom = self.momentum
            for target, value in ((self.moving_mean, mean), (self.moving_variance, var)):
                np.copyto(target, target.astype(np.float64) * mom + value * (1.0 - mom),
                          casting="unsafe")
        else:
            mean = self.moving_mean.astype(np.float64)
            var = self.moving_variance.astype(np.float64)
        inv, scale, shift = self._affine(mean, var)
        y = _arena.empty(x.shape, x.dtype)   # (a pass output: fastconv/_arena.py)
        affine = (scale.astype(x.dtype), shift.astype(x.dtype))
        if m:
            _ext.batchnorm.affine_act(flat, *affine, y.reshape(-1), a, c, b, act)
        self._x = x
        self._stats = (train, mean, inv, m)
        # what the activation act read, x * scale + shift: its backward takes its mask
        # from x again, not from y (a tensor read fewer per pass)
        self._act_affine = (act, affine) if act else None
        return y

    def _linear_backward(self, grad, need_input_grad):
        return self._normalize_backward(grad, need_input_grad, None, 0)

    def _normalize_backward(self, grad, need_input_grad, y, act):
        """The backward pass; grad is the gradient of the activation act's output y
        (act 0: of this layer's output, y None), taken through the activation in the
        same passes.  An activation needs a training forward (the fused step runs
        the layers one by one otherwise)."""
        x, grad = self._x, np.ascontiguousarray(grad)
        view = self._view(x.shape)
        a, c, b = view[:3]
        train, mean, inv, m = self._stats
        dtype = grad.dtype
        flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
        flat_y = flat_g if y is None else np.ascontiguousarray(y).reshape(-1)
        kept = getattr(self, "_act_affine", None)
        affine = (None, None)
        if act and kept is not None and kept[0] == act and kept[1][0].dtype == dtype:
            affine, flat_y = kept[1], flat_x   # (y not read)
        if m:
            dbeta, dgamma = self._sums(view, flat_x, flat_g, mean, True, flat_y, act,
                                       affine)
            dgamma = dgamma * inv
        else:
            dbeta = dgamma = np.zeros(c)
        gamma = self.gamma.astype(np.float64) if self.scale else 1.0
        if self.scale:
            self._grads["gamma"] = dgamma.astype(dtype)
        if self.center:
            self._grads["beta"] = dbeta.astype(dtype)
        if not need_input_grad:
            return None
        k = gamma * inv  # dy -> dx of the affine map
        dx = _arena.empty(grad.shape, dtype)
        if not m:
            return dx
        if not train:
            _ext.batchnorm.affine(flat_g, k.astype(dtype), np.zeros(c, dtype),
                                  dx.reshape(-1), a, c, b)
            return dx
        # dx = k * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - mean) * inv
        _ext.batchnorm.backward_input_act(
            flat_g, flat_y, flat_x, mean.astype(dtype), k.astype(dtype),
            (-k * inv * dgamma / m).astype(dtype), (-k * dbeta / m).astype(dtype),
            dx.reshape(-1), a, c, b, act, *affine)
        return dx

    # ------------------------------------------------------------------ config
    def get_config(self):
        config = super().get_config()
        config.update(
            axis=self.axis, momentum=self.momentum, epsilon=self.epsilon,
            center=self.center, scale=self.scale,
            beta_initializer=_initializers.serialize_initializer(self.beta_initializer),
            gamma_initializer=_initializers.serialize_initializer(
                self.gamma_initializer),
            moving_mean_initializer=_initializers.serialize_initializer(
                self.moving_mean_initializer),
            moving_variance_initializer=_initializers.serialize_initializer(
                self.moving_variance_initializer))
        config.update(self._weight_regularization_config())
        return config
