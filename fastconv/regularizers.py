"""Weight and activity regularizers with Keras 3's names, defaults and formulas.

A regularizer maps an array to a scalar penalty that a model adds to its loss
(``kernel_regularizer=`` / ``bias_regularizer=`` on the weights of Conv2D and Dense,
``activity_regularizer=`` on any layer's output, divided there by the batch size, as
Keras does).  fastconv trains with explicit gradients, so each regularizer also gives
the gradient of its penalty (``gradient(w)``, same shape and dtype as ``w``), which the
model adds to the weight's gradient (or to the output gradient of the layer) before
the optimizer step.

    L1(l1=0.01)          l1 * sum(|w|)                 gradient l1 * sign(w)  (0 at 0)
    L2(l2=0.01)          l2 * sum(w ** 2)              gradient 2 * l2 * w
    L1L2(l1=0, l2=0)     the sum of both ("l1_l2": l1 = l2 = 0.01, as Keras)
    OrthogonalRegularizer(factor=0.01, mode="rows")   rank-2 weights only

``get(identifier)`` accepts None, an instance, a name ("l1", "l2", "l1_l2" (0.01 and
0.01), "l1l2" (Keras: no penalty), "orthogonal_regularizer" or a class name) or a config dict
``{"class_name": "L2", "config": {"l2": 0.1}}``, resolved against this module's fixed
registry (nothing executable comes from a file).
"""
import math
import numbers

import numpy as np

from ._serialization import ConfigEquality, resolve, serialize

__all__ = ["Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "get",
           "serialize_regularizer", "l1", "l2", "l1_l2", "orthogonal_regularizer"]

#: Keras's backend.epsilon(), the floor of a norm in OrthogonalRegularizer (normalize)
_EPSILON = 1e-7


def _factor(value, name):
    """Keras's validate_float_arg: a finite, non-negative number, as a float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative float, got {value!r}")
    return float(value)


def _array(w):
    w = np.asarray(w)
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    return w


class Regularizer(ConfigEquality):
    """Base class: ``reg(w)`` (or ``reg.value(w)``) -> float penalty;
    ``reg.gradient(w)`` -> d penalty / d w."""

    def __call__(self, w):
        return self.value(w)

    def value(self, w):
        return 0.0

    def gradient(self, w):
        w = _array(w)
        return np.zeros_like(w)

    def get_config(self):
        return {}


class L1L2(Regularizer):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)`` (defaults 0, as Keras's class; the name
    "l1_l2" gives 0.01 and 0.01)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def value(self, w):
        w = _array(w)
        t = w.dtype.type
        out = t(0.0)
        if self.l1 != 0.0:
            out = out + t(self.l1) * np.sum(np.abs(w))
        if self.l2 != 0.0:
            out = out + t(self.l2) * np.sum(np.square(w))
        return float(out)

    def gradient(self, w):
        w = _array(w)
        t = w.dtype.type
        grad = np.zeros_like(w)
        if self.l1 != 0.0:
            grad += t(self.l1) * np.sign(w)
        if self.l2 != 0.0:
            grad += t(2.0 * self.l2) * w
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|w|)``; gradient ``l1 * sign(w)`` (0 where w is 0, as TensorFlow)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def value(self, w):
        w = _array(w)
        return float(w.dtype.type(self.l1) * np.sum(np.abs(w)))

    def gradient(self, w):
        w = _array(w)
        return w.dtype.type(self.l1) * np.sign(w)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w ** 2)``; gradient ``2 * l2 * w``."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def value(self, w):
        w = _array(w)
        return float(w.dtype.type(self.l2) * np.sum(np.square(w)))

    def gradient(self, w):
        w = _array(w)
        return w.dtype.type(2.0 * self.l2) * w

    def get_config(self):
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Keras's OrthogonalRegularizer: with U the rows (mode "rows") or columns
    ("columns") of a rank-2 w, each divided by its L2 norm (floored at 1e-7, as
    Keras's normalize), ``factor * 0.5 * sum_{i != j} |u_i . u_j| / (n (n - 1) / 2)``
    (n rows or columns)."""

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError(f"mode must be 'rows' or 'columns', got {mode!r}")
        self.mode = mode

    def _parts(self, w):
        w = _array(w)
        if w.ndim != 2:
            raise ValueError(f"OrthogonalRegularizer needs a rank-2 weight (a Dense "
                             f"kernel), got shape {w.shape}")
        x = w if self.mode == "rows" else w.T
        t = x.dtype.type
        sq = np.sum(np.square(x), axis=1, keepdims=True)
        norm = np.maximum(np.sqrt(sq), t(_EPSILON))
        u = x / norm
        n = x.shape[0]
        mask = t(1.0) - np.eye(n, dtype=x.dtype)
        product = (u @ u.T) * mask
        pairs = n * (n - 1.0) / 2.0
        return x, sq, norm, u, mask, product, pairs

    def value(self, w):
        x, _, _, _, _, product, pairs = self._parts(w)
        t = x.dtype.type
        # (n == 1: Keras divides 0 by 0 and gets nan; so does this)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(t(self.factor) * t(0.5) * np.sum(np.abs(product)) / t(pairs))

    def gradient(self, w):
        x, sq, norm, u, mask, product, pairs = self._parts(w)
        t = x.dtype.type
        with np.errstate(invalid="ignore", divide="ignore"):
            g_p = t(self.factor * 0.5 / pairs) * np.sign(product) * mask
        g_u = (g_p + g_p.T) @ u
        # through u = x / norm: norm = sqrt(sq) where sq > eps, else a constant
        radial = np.sum(g_u * u, axis=1, keepdims=True) * u
        g_x = (g_u - np.where(np.sqrt(sq) > t(_EPSILON), radial, t(0.0))) / norm
        return np.ascontiguousarray(g_x if self.mode == "rows" else g_x.T)

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


# Keras's function-style aliases (keras.regularizers.l1 is the class L1).
l1, l2, l1_l2, orthogonal_regularizer = L1, L2, L1L2, OrthogonalRegularizer

_CLASSES = {c.__name__: c for c in (Regularizer, L1, L2, L1L2, OrthogonalRegularizer)}
# Keras 3.15's get() knows the class names and their snake case ("l1l2" is L1L2(), no
# penalty); "l1_l2", which Keras's docstring promises (l1 = l2 = 0.01) but its get()
# refuses, is accepted here with that meaning.
_ALIASES = {"l1": L1, "l2": L2, "l1l2": L1L2,
            "l1_l2": lambda: L1L2(l1=0.01, l2=0.01),
            "orthogonal_regularizer": OrthogonalRegularizer}


def get(identifier, name="regularizer"):
    """A Regularizer (or None) from None, an instance, a name or a config dict."""
    return resolve(identifier, Regularizer, _CLASSES, _ALIASES, name, allow_none=True)


def serialize_regularizer(regularizer):
    """None, or ``{"class_name": ..., "config": ...}`` (JSON-able)."""
    return None if regularizer is None else serialize(regularizer)
