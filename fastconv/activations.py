"""Activations, their gradients, and a fused softmax + cross-entropy, on ndarrays.

Every backward function takes the forward OUTPUT ``y`` (what a layer caches), not the
input: ``relu_backward(grad_y, y)`` and so on.  :func:`get` maps Keras's names to the
(forward, backward) pair.

Keras 3's other activations (relu6, leaky_relu, elu, selu, gelu, silu/swish,
hard_sigmoid, hard_silu/hard_swish, softplus) are in fastconv/_more_activations.py,
re-exported here and registered under Keras's names.

These are plain NumPy (one or two passes over memory with in-place ufuncs, already at
memory speed), except relu and its gradient, compiled in src/_activations.pyx because
that measurably pays (bench/bench_activations.py): NumPy runs the gradient's select with
a branch per element, and relu on one thread.  The dtype policy is the one of the
whole library (fastconv/_validation.py): float32 and float64 are kept, integer and bool
inputs become float64 (or the dtype of the other floating argument), mixed floating
dtypes are refused.
"""
import numpy as np

from . import _arena, _ext
from . import _more_activations as _more
from ._more_activations import (elu, elu_backward, erf, erfc, gelu, gelu_backward,
                                gelu_input_backward, hard_sigmoid, hard_sigmoid_backward,
                                hard_silu, hard_silu_backward, hard_silu_input_backward,
                                leaky_relu, leaky_relu_backward, relu6, relu6_backward,
                                selu, selu_backward, silu, silu_backward,
                                silu_input_backward, softplus, softplus_backward)
from ._validation import as_array, common_float_dtype

__all__ = ["relu", "relu_backward", "tanh", "tanh_backward", "sigmoid",
           "sigmoid_backward", "softmax", "softmax_backward", "linear", "linear_backward",
           "get", "softmax_cross_entropy", "softmax_cross_entropy_backward",
           "relu6", "relu6_backward", "leaky_relu", "leaky_relu_backward", "elu",
           "elu_backward", "selu", "selu_backward", "softplus", "softplus_backward",
           "hard_sigmoid", "hard_sigmoid_backward", "silu", "silu_backward",
           "silu_input_backward", "gelu", "gelu_backward", "gelu_input_backward",
           "hard_silu", "hard_silu_backward", "hard_silu_input_backward", "erf", "erfc",
           "swish", "hard_swish"]


def _float(x, name="x"):
    arr = as_array(x, name)
    return arr.astype(common_float_dtype({name: arr}), copy=False)


def _grad_pair(grad_y, y):
    """grad_y and y as arrays of one floating dtype and the same shape."""
    gy, ya = as_array(grad_y, "grad_y"), as_array(y, "y")
    dtype = common_float_dtype({"grad_y": gy, "y": ya})
    if gy.shape != ya.shape:
        raise ValueError(f"grad_y must have the shape of y {ya.shape}, got {gy.shape}")
    return gy.astype(dtype, copy=False), ya.astype(dtype, copy=False)


def _check_axis(axis, ndim, name="axis"):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} {axis} is out of range for an array with {ndim} "
                         f"dimensions")
    return int(axis)


# ---- relu ---------------------------------------------------------------------------

def relu(x):
    """max(x, 0) elementwise (NaN stays NaN; -0.0 becomes +0.0).  A compiled kernel on
    all threads: twice NumPy's single-threaded np.maximum on 2 cores."""
    x = np.ascontiguousarray(_float(x))
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _ext.activations.relu(x.reshape(-1), out.reshape(-1))
    return out


def relu_backward(grad_y, y):
    """grad_y where the output is positive, 0 elsewhere (0 at x == 0, as Keras/PyTorch).

    A compiled branch-free select (src/_activations.pyx): np.where's per-element branch
    mispredicts on the random signs of real activations (docs/design/algorithms.md).
    """
    gy, y = _grad_pair(grad_y, y)
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    out = _arena.empty(y.shape, y.dtype)
    if out.size:
        _ext.activations.relu_backward(gy.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


# ---- tanh ---------------------------------------------------------------------------

def tanh(x):
    """Hyperbolic tangent elementwise.  float32 runs compiled on all threads, within 6
    ulp of the exact value (a rational approximation, src/activation_kernels.h: NumPy's
    np.tanh runs on one thread); other dtypes are NumPy's np.tanh."""
    x = _float(x)
    if x.dtype != np.float32:
        return np.tanh(x)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, x.dtype)
    if out.size:
        _ext.activations.tanh_f32(x.reshape(-1), out.reshape(-1))
    return out


def _tanh_inplace(z):
    """tanh(z) written over z, a C-contiguous float array nothing else refers to (a
    layer's fresh output): the same values as tanh(z) without a new array."""
    if not z.flags.c_contiguous or not z.flags.writeable:
        return tanh(z)
    if z.dtype != np.float32:
        return np.tanh(z, out=z)
    if z.size:
        _ext.activations.tanh_f32(z.reshape(-1), z.reshape(-1))
    return z


def _pointwise_backward(kernel, grad_y, y):
    """A compiled one-pass gradient kernel of src/_activations.pyx on (grad_y, y)."""
    gy, y = _grad_pair(grad_y, y)
    gy, y = np.ascontiguousarray(gy), np.ascontiguousarray(y)
    out = _arena.empty(y.shape, y.dtype)
    if out.size:
        kernel(gy.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def tanh_backward(grad_y, y):
    """grad_y * (1 - y**2), in one compiled pass."""
    return _pointwise_backward(_ext.activations.tanh_backward, grad_y, y)


# ---- sigmoid ------------------------------------------------------------------------

def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow and with full relative precision in both
    tails: s = e / (1 + e) with e = exp(-|x|) is sigmoid(-|x|), exact in the small tail;
    for x >= 0 the result is 1 - s (close to 1, where absolute precision is what
    counts).  Three passes and two temporaries."""
    x = _float(x)
    one = x.dtype.type(1)
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)
    den = np.add(out, one)
    np.divide(out, den, out=out)
    np.subtract(one, out, out=out, where=x >= 0)
    return out


def sigmoid_backward(grad_y, y):
    """grad_y * y * (1 - y), in one compiled pass."""
    return _pointwise_backward(_ext.activations.sigmoid_backward, grad_y, y)


# ---- softmax ------------------------------------------------------------------------

def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the maximum so that logits of any
    magnitude (1e4, 1e30) neither overflow nor lose the largest entries."""
    x = _float(x)
    axis = _check_axis(axis, x.ndim)
    return _softmax_into(x, np.empty(x.shape, x.dtype), axis)


def _softmax_into(x, out, axis=-1):
    """softmax(x) written to out (which may be x)."""
    np.subtract(x, np.maximum.reduce(x, axis=axis, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= np.add.reduce(out, axis=axis, keepdims=True)
    return out


def _softmax_inplace(z):
    """softmax(z) on the last axis written over z, a float array nothing else refers to
    (a layer's fresh output): the same values as softmax(z)."""
    if z.ndim == 0 or not z.flags.writeable:
        return softmax(z)
    return _softmax_into(z, z)


def softmax_backward(grad_y, y, axis=-1):
    """The Jacobian-vector product of softmax: y * (grad_y - sum(grad_y * y, axis))."""
    gy, y = _grad_pair(grad_y, y)
    axis = _check_axis(axis, y.ndim)
    dot = np.sum(gy * y, axis=axis, keepdims=True)
    out = np.subtract(gy, dot)
    np.multiply(out, y, out=out)
    return out


# ---- linear -------------------------------------------------------------------------

def linear(x):
    """The identity (Keras's "linear" activation, also what ``activation=None`` means)."""
    return _float(x)


def linear_backward(grad_y, y):
    """grad_y unchanged (y is checked for shape and dtype only)."""
    gy, _ = _grad_pair(grad_y, y)
    return gy


_ACTIVATIONS = {
    "relu": (relu, relu_backward),
    "tanh": (tanh, tanh_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
    "softmax": (softmax, softmax_backward),
    "linear": (linear, linear_backward),
    "relu6": (relu6, relu6_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
    "elu": (elu, elu_backward),
    "selu": (selu, selu_backward),
    "gelu": (gelu, gelu_backward),
    "silu": (silu, silu_backward),
    "swish": (silu, silu_backward),
    "hard_sigmoid": (hard_sigmoid, hard_sigmoid_backward),
    "hard_silu": (hard_silu, hard_silu_backward),
    "hard_swish": (hard_silu, hard_silu_backward),
    "softplus": (softplus, softplus_backward),
}

# Keras's aliases.
swish = silu
hard_swish = hard_silu


# In-place forms of the activations that have one (see _tanh_inplace).
_INPLACE = {"tanh": _tanh_inplace, "softmax": _softmax_inplace,
            "relu6": _more._relu6_inplace, "hard_sigmoid": _more._hard_sigmoid_inplace}


def get(name):
    """(forward, backward) for an activation name; None means "linear"."""
    if name is None:
        return _ACTIVATIONS["linear"]
    if not isinstance(name, str) or name not in _ACTIVATIONS:
        known = ", ".join(repr(k) for k in _ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; known activations: {known} "
                         f"(or None for linear)")
    return _ACTIVATIONS[name]


# ---- fused softmax + categorical cross-entropy ---------------------------------------

def _targets(y_true, n, k, dtype):
    """y_true as a dense (N, K) target of ``dtype`` from one-hot rows or integer labels."""
    yt = as_array(y_true, "y_true")
    if yt.ndim == 1:
        if yt.dtype.kind not in "iu":
            raise TypeError(f"y_true with shape (N,) must hold integer class labels, got "
                            f"dtype {yt.dtype}")
        if yt.shape[0] != n:
            raise ValueError(f"y_true must have one label per row of logits ({n}), got "
                             f"shape {yt.shape}")
        if n and (yt.min() < 0 or yt.max() >= k):
            raise ValueError(f"y_true labels must lie in [0, {k}) for {k} classes, got "
                             f"values from {yt.min()} to {yt.max()}")
        dense = np.zeros((n, k), dtype)
        dense[np.arange(n), yt] = 1
        return dense
    if yt.ndim == 2:
        if yt.shape != (n, k):
            raise ValueError(f"y_true must be one-hot with the shape of logits {(n, k)} "
                             f"or integer labels of shape ({n},), got shape {yt.shape}")
        if yt.dtype.kind == "f" and yt.dtype != dtype:
            raise TypeError(f"y_true must have the dtype of logits ({dtype}), got "
                            f"{yt.dtype}")
        return yt.astype(dtype, copy=False)
    raise ValueError(f"y_true must be one-hot (N, K) or integer labels (N,), got an "
                     f"array of shape {yt.shape}")


def _logits(logits):
    z = _float(logits, "logits")
    if z.ndim != 2:
        raise ValueError(f"logits must be a 2-D array (N, K), got an array of shape "
                         f"{z.shape}")
    if z.shape[1] < 1:
        raise ValueError(f"logits must have at least one class, got shape {z.shape}")
    return z


def softmax_cross_entropy(logits, y_true):
    """Mean categorical cross-entropy of softmax(logits) against y_true, and the probs.

    ``y_true`` is one-hot (or any rows of class probabilities) of shape (N, K), or integer
    labels of shape (N,).  The loss is computed from the logits by log-sum-exp, so it is
    exact and finite for logits of any magnitude (no probability is ever rounded to 0
    and then logged): loss = mean_n sum_k y[n, k] * (lse(z[n]) - z[n, k]).  It is
    accumulated in float64 and returned as a Python float (0.0 for an empty batch);
    probs come back in the logits' dtype for :func:`softmax_cross_entropy_backward`.
    """
    z = _logits(logits)
    n, k = z.shape
    y = _targets(y_true, n, k, z.dtype)
    shifted = np.subtract(z, np.max(z, axis=1, keepdims=True))
    probs = np.exp(shifted)
    sums = np.sum(probs, axis=1, keepdims=True)
    probs /= sums
    if n == 0:
        return 0.0, probs
    # log softmax = shifted - log(sum exp(shifted)); per-row loss in float64.
    log_sums = np.log(sums.astype(np.float64))
    per_row = (log_sums[:, 0] * y.sum(axis=1, dtype=np.float64)
               - np.einsum("nk,nk->n", y.astype(np.float64), shifted.astype(np.float64)))
    return float(per_row.mean()), probs


def softmax_cross_entropy_backward(probs, y_true):
    """Gradient of :func:`softmax_cross_entropy`'s loss with respect to the logits:
    (probs - onehot(y_true)) / N."""
    p = _float(probs, "probs")
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, K), got an array of shape "
                         f"{p.shape}")
    n, k = p.shape
    y = _targets(y_true, n, k, p.dtype)
    out = np.subtract(p, y)
    if n:
        out /= p.dtype.type(n)
    return out
