"""The optimizer base class: state, learning rate, gradient clipping and weight decay.

Every optimizer follows Keras 3's arithmetic, operation by operation, in the dtype of the
weights (float32 normally), so that the same gradients give the same weights as Keras up
to float32 rounding.  One step (:meth:`Optimizer.apply`) does what Keras's
``BaseOptimizer.apply`` does, in its order:

1. gradients are clipped (``_clip_gradients``), by at most one of: ``clipnorm`` (each
   gradient: ``g * clipnorm / max(||g||, clipnorm)``), ``global_clipnorm`` (all
   gradients: ``g * clipnorm * min(1 / global_norm, 1 / clipnorm)``; a non-finite norm
   makes the gradients NaN, as Keras), ``clipvalue`` (``clip(g, -v, v)``);
2. weight decay, when ``weight_decay`` is set: ``w -= w * weight_decay * lr``
   (``_apply_weight_decay``, before the update; every variable is decayed);
3. the optimizer's own update with the learning rate of this step (a float, or a
   schedule from :mod:`fastconv.schedules` evaluated at ``iterations``), then
   ``iterations += 1``.
"""
import numbers

import numpy as np

from .._serialization import deserialize, serialize
from ..schedules import _SCHEDULES, LearningRateSchedule, _real

__all__ = ["Optimizer"]


def _optional(value, name):
    return None if value is None else _real(value, name, 0.0, low_open=True)


class Optimizer:
    """Base class.  ``apply(grads, variables)`` updates the arrays in place.

    Slot arrays (momenta, velocities) are created on the first call, one set per
    variable in the order given; later calls must pass the same variables in the same
    order (a model always does).

    Keyword arguments every optimizer takes (Keras's names and defaults):
    ``weight_decay`` (None or >= 0), and at most one of ``clipnorm``, ``clipvalue``,
    ``global_clipnorm`` (None or > 0); see the module docstring for the formulas.
    """

    def __init__(self, learning_rate, name=None, *, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        self.learning_rate = learning_rate
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string or None, got {name!r}")
        self.name = name or type(self).__name__.lower()
        self.weight_decay = (None if weight_decay is None else
                             _real(weight_decay, "weight_decay", 0.0))
        self.clipnorm = _optional(clipnorm, "clipnorm")
        self.clipvalue = _optional(clipvalue, "clipvalue")
        self.global_clipnorm = _optional(global_clipnorm, "global_clipnorm")
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be "
                             f"set, got clipnorm={clipnorm!r}, clipvalue={clipvalue!r}, "
                             f"global_clipnorm={global_clipnorm!r}")
        self.iterations = 0
        self._slots = None
        self._shapes = None

    # learning rate: a float or a schedule
    @property
    def learning_rate(self):
        """The rate the next step uses (the schedule evaluated at ``iterations``)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self.iterations))
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
        else:
            self._learning_rate = _real(value, "learning_rate", 0.0)

    # state
    def build(self, variables):
        """Create the slot arrays (zeros) for ``variables``."""
        self._shapes = [(v.shape, v.dtype) for v in variables]
        self._slots = [[np.zeros_like(v) for _ in range(self._n_slots())]
                       for v in variables]

    def _n_slots(self):
        return 0

    def apply_gradients(self, grads_and_vars):
        """Keras's form: an iterable of (gradient, variable) pairs."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply(self, grads, variables):
        """One update step of every variable (arrays updated in place)."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables")
        if self._slots is None:
            self.build(variables)
        elif [(v.shape, v.dtype) for v in variables] != self._shapes:
            raise ValueError(f"optimizer {self.name!r} was built for variables of shapes "
                             f"{[s for s, _ in self._shapes]}, got "
                             f"{[v.shape for v in variables]}")
        for g, v in zip(grads, variables):
            if g is None:
                raise ValueError("a gradient is missing (None): run a backward pass "
                                 "before the update")
            if g.shape != v.shape:
                raise ValueError(f"gradient of shape {g.shape} for a variable of shape "
                                 f"{v.shape}")
        lr = self.learning_rate
        if self.clipnorm is not None or self.clipvalue is not None \
                or self.global_clipnorm is not None:
            grads = self._clip_gradients(
                [np.asarray(g, dtype=v.dtype) for g, v in zip(grads, variables)])
        if self.weight_decay is not None:
            self._apply_weight_decay(variables, lr)
        self._update_all(grads, variables, lr)
        self.iterations += 1

    def _clip_gradients(self, grads):
        """Keras's ``BaseOptimizer._clip_gradients`` (new arrays; ``grads`` unchanged)."""
        if self.clipnorm is not None:
            out = []
            for g in grads:
                t = g.dtype.type
                l2sum = np.sum(g * g)
                l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
                out.append((g * t(self.clipnorm)) / np.maximum(l2norm, t(self.clipnorm)))
            return out
        if self.global_clipnorm is not None:
            if not grads:
                return grads
            t = np.result_type(*grads).type
            clip = t(self.global_clipnorm)
            norm = np.sqrt(np.sum(np.stack([np.sum(g * g) for g in grads]).astype(t)))
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = clip * np.minimum(t(1) / norm, t(1.0 / self.global_clipnorm))
                scale = scale + (norm - norm)
            return [g * g.dtype.type(scale) for g in grads]
        v = self.clipvalue
        return [np.clip(g, g.dtype.type(-v), g.dtype.type(v)) for g in grads]

    def _apply_weight_decay(self, variables, lr):
        """Keras's ``_apply_weight_decay``: ``w -= w * wd * lr`` before the update."""
        for w in variables:
            t = w.dtype.type
            w -= (w * t(self.weight_decay)) * t(lr)

    def _update_all(self, grads, variables, lr):
        """Update every variable, one at a time (a subclass may do all in one call)."""
        for g, v, slots in zip(grads, variables, self._slots):
            self._update(np.asarray(g, dtype=v.dtype), v, slots, v.dtype.type(lr))

    def get_state(self):
        """(iterations, list of slot arrays) for saving; see set_state."""
        slots = [] if self._slots is None else [s for per in self._slots for s in per]
        return self.iterations, slots

    def set_state(self, iterations, slots, variables):
        """Restore :meth:`get_state`'s output for these variables.

        ``iterations`` is a non-negative int; ``slots`` is empty (no step taken yet) or
        holds one floating-point array per slot, each of its variable's shape.  Nothing
        changes when a check fails.
        """
        if isinstance(iterations, (bool, np.bool_)) \
                or not isinstance(iterations, numbers.Integral) or iterations < 0:
            raise ValueError(f"optimizer {self.name!r}: iterations must be a "
                             f"non-negative int, got {iterations!r}")
        variables, slots = list(variables), list(slots)
        n_expected = self._n_slots() * len(variables)
        if slots and len(slots) != n_expected:
            raise ValueError(f"optimizer {self.name!r} expects {n_expected} state "
                             f"arrays for these variables, got {len(slots)}")
        for i, value in enumerate(slots):
            target = variables[i // self._n_slots()]
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"optimizer state array {i} must be a floating-point "
                                f"ndarray, got {type(value).__name__} "
                                f"{getattr(value, 'dtype', '')}")
            if value.shape != target.shape:
                raise ValueError(f"optimizer state array of shape {value.shape} does not "
                                 f"match the variable shape {target.shape}")
        self.build(variables)
        expected = [s for per in self._slots for s in per]
        for target, value in zip(expected, slots):
            np.copyto(target, value, casting="unsafe")
        if not slots:
            self._slots = None
        self.iterations = int(iterations)

    def get_config(self):
        lr = self._learning_rate
        return {"name": self.name,
                "learning_rate": serialize(lr) if isinstance(lr, LearningRateSchedule)
                else lr,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = deserialize(lr, _SCHEDULES, "learning rate schedule")
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
