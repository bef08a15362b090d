"""Weight constraints with Keras 3's names, defaults and formulas.

A constraint maps a weight array to its projection; a model applies it to the weight
after each optimizer update (Keras: ``variable.assign(constraint(variable))``), in
place, so the arrays the optimizer and the layers hold stay the same objects.

    MaxNorm(max_value=2, axis=0)   w * clip(n, 0, max_value) / (eps + n)
    MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0)
                                   w * (rate * clip(n, min, max) + (1 - rate) n) / (eps + n)
    UnitNorm(axis=0)               w / (eps + n)
    NonNeg()                       max(w, 0)

n is the L2 norm over ``axis`` (an int or a list of ints, kept as a size-1 axis),
eps = 1e-7 (Keras's backend.epsilon()).  ``axis`` refers to Keras's kernel layout,
which is the layout fastconv's layers store whatever their data format: (in, units)
for Dense, (kh, kw, in / groups, filters) for Conv2D (channels_first layers too, so a
constraint covers the same elements in both formats); axis=[0, 1, 2] constrains each
filter of a Conv2D.

``get(identifier)`` accepts None, an instance, a name ("max_norm", "non_neg",
"unit_norm", "min_max_norm" or a class name) or a config dict, resolved against this
module's fixed registry.
"""
import math
import numbers

import numpy as np

from ._serialization import ConfigEquality, resolve, serialize

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get",
           "serialize_constraint", "max_norm", "min_max_norm", "non_neg", "unit_norm"]

#: Keras's backend.epsilon()
_EPSILON = 1e-7


def _number(value, name, low=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or (low is not None and value < low):
        rule = "a finite number" if low is None else f"a finite number >= {low}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


def _axis(axis):
    """An int or a tuple of distinct ints (a list in configs)."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"axis must be an int or a list of ints, got {axis!r}")
    if isinstance(axis, numbers.Integral):
        return int(axis)
    try:
        items = tuple(axis)
    except TypeError:
        raise TypeError(f"axis must be an int or a list of ints, got {axis!r}") from None
    if not items or any(isinstance(a, (bool, np.bool_)) or
                        not isinstance(a, numbers.Integral) for a in items):
        raise TypeError(f"axis must be an int or a non-empty list of ints, got {axis!r}")
    out = tuple(int(a) for a in items)
    if len(set(out)) != len(out):
        raise ValueError(f"axis must not repeat an axis, got {axis!r}")
    return out


def _check_axes(axis, ndim):
    for a in (axis,) if isinstance(axis, int) else axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"constraint axis {axis!r} is out of range for a weight of "
                             f"rank {ndim}")
    if not isinstance(axis, int) and \
            len({a % ndim for a in axis}) != len(axis):
        raise ValueError(f"constraint axis {axis!r} names an axis twice for a weight of "
                         f"rank {ndim}")


def _norms(w, axis):
    _check_axes(axis, w.ndim)
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


def _array(w):
    w = np.asarray(w)
    if w.dtype.kind != "f":
        w = w.astype(np.float32)
    return w


class Constraint(ConfigEquality):
    """Base class: ``c(w)`` -> the constrained array (a new one)."""

    def __call__(self, w):
        return _array(w)

    def get_config(self):
        return {}


def _axis_config(axis):
    return axis if isinstance(axis, int) else list(axis)


class MaxNorm(Constraint):
    """Scale each slice whose L2 norm over ``axis`` exceeds ``max_value`` down to it."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number(max_value, "max_value", 0)
        self.axis = _axis(axis)

    def __call__(self, w):
        w = _array(w)
        t = w.dtype.type
        norms = _norms(w, self.axis)
        desired = np.clip(norms, t(0), t(self.max_value))
        return w * (desired / (t(_EPSILON) + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": _axis_config(self.axis)}


class MinMaxNorm(Constraint):
    """Move each slice's L2 norm over ``axis`` into [min_value, max_value] (at
    ``rate``: 1 for strict enforcement)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number(min_value, "min_value", 0)
        self.max_value = _number(max_value, "max_value", 0)
        if self.max_value < self.min_value:
            raise ValueError(f"max_value must be >= min_value, got min_value="
                             f"{min_value!r}, max_value={max_value!r}")
        self.rate = _number(rate, "rate")
        self.axis = _axis(axis)

    def __call__(self, w):
        w = _array(w)
        t = w.dtype.type
        norms = _norms(w, self.axis)
        desired = (t(self.rate) * np.clip(norms, t(self.min_value), t(self.max_value))
                   + t(1 - self.rate) * norms)
        return w * (desired / (t(_EPSILON) + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value,
                "rate": self.rate, "axis": _axis_config(self.axis)}


class NonNeg(Constraint):
    """``max(w, 0)``."""

    def __call__(self, w):
        w = _array(w)
        return np.maximum(w, w.dtype.type(0))


class UnitNorm(Constraint):
    """Divide each slice by its L2 norm over ``axis`` (plus 1e-7)."""

    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        w = _array(w)
        return w / (w.dtype.type(_EPSILON) + _norms(w, self.axis))

    def get_config(self):
        return {"axis": _axis_config(self.axis)}


# Keras's function-style aliases.
max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm

_CLASSES = {c.__name__: c for c in (Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)}
_ALIASES = {"max_norm": MaxNorm, "min_max_norm": MinMaxNorm, "non_neg": NonNeg,
            "unit_norm": UnitNorm}


def get(identifier, name="constraint"):
    """A Constraint (or None) from None, an instance, a name or a config dict."""
    return resolve(identifier, Constraint, _CLASSES, _ALIASES, name, allow_none=True)


def serialize_constraint(constraint):
    """None, or ``{"class_name": ..., "config": ...}`` (JSON-able)."""
    return None if constraint is None else serialize(constraint)
