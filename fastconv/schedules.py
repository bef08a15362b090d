"""Learning-rate schedules: ``schedule(step) -> learning rate`` (step = iterations).

Keras 3's schedules (ExponentialDecay, InverseTimeDecay, PolynomialDecay, CosineDecay
with optional linear warmup, PiecewiseConstantDecay) follow Keras's arithmetic operation
by operation in float32 (Keras's floatx: its schedules compute in the dtype of
``initial_learning_rate`` converted to a tensor), so that their rates equal Keras's up
to the last bit of float32 library functions (pow, cos).  ``__call__`` returns that
float32 value as a Python float.

:class:`OneCycle` is not in Keras: it is PyTorch's ``OneCycleLR`` learning-rate formula
(cosine annealing, two phases), computed in float64 Python arithmetic as PyTorch does.

Optimizers evaluate their schedule at ``iterations`` before each step; a schedule is
saved inside the optimizer's config and rebuilt from :data:`_SCHEDULES` by name.
"""
import abc
import math
import numbers

import numpy as np

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay",
           "PolynomialDecay", "CosineDecay", "PiecewiseConstantDecay", "OneCycle"]

_F = np.float32  # Keras's floatx: the dtype its schedules compute in


def _real(value, name, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float, or a TypeError/ValueError naming ``name`` and the value."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got "
                         f"{value!r}")
    return value


def _int(value, name, low):
    """An int >= low; integral floats (100.0) are accepted, as Keras casts them."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value != int(value):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _name(value, default):
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"name must be a string or None, got {value!r}")
    return value


class LearningRateSchedule(abc.ABC):
    """Base class: ``schedule(step) -> learning rate`` (step = optimizer.iterations)."""

    @abc.abstractmethod
    def __call__(self, step):
        """The learning rate at optimizer step ``step``."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class _StepDecay(LearningRateSchedule):
    """Keras's decay schedules: ``_decay(init, rate, p)`` of p = step / decay_steps
    (floored when staircase), in float32; subclasses differ only in that formula."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate",
                                           0.0)
        self.decay_steps = _real(decay_steps, "decay_steps", 0.0, low_open=True)
        self.decay_rate = _real(decay_rate, "decay_rate", 0.0)
        self.staircase = bool(staircase)
        self.name = _name(name, type(self).__name__)

    def __call__(self, step):
        p = _F(step) / _F(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return float(self._decay(_F(self.initial_learning_rate), _F(self.decay_rate), p))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """lr * decay_rate ** (step / decay_steps) (floored exponent when staircase)."""

    @staticmethod
    def _decay(init, rate, p):
        return init * np.power(rate, p)


class InverseTimeDecay(_StepDecay):
    """lr / (1 + decay_rate * step / decay_steps) (floored ratio when staircase)."""

    @staticmethod
    def _decay(init, rate, p):
        return init / (_F(1) + rate * p)


class PolynomialDecay(LearningRateSchedule):
    """Keras's PolynomialDecay: ``(lr - end) * (1 - s / decay_steps) ** power + end``
    with s = min(step, decay_steps); with ``cycle`` decay_steps is instead multiplied by
    ceil(step / decay_steps) (1 at step 0), restarting the decay."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001,
                 power=1.0, cycle=False, name=None):
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate",
                                           0.0)
        self.decay_steps = _real(decay_steps, "decay_steps", 0.0, low_open=True)
        self.end_learning_rate = _real(end_learning_rate, "end_learning_rate", 0.0)
        self.power = _real(power, "power", 0.0)
        self.cycle = bool(cycle)
        self.name = _name(name, "PolynomialDecay")

    def __call__(self, step):
        init, end = _F(self.initial_learning_rate), _F(self.end_learning_rate)
        s, steps = _F(step), _F(self.decay_steps)
        if self.cycle:
            steps = steps * (_F(1) if s == 0 else np.ceil(s / steps))
        else:
            s = np.minimum(s, steps)
        p = s / steps
        return float((init - end) * np.power(_F(1) - p, _F(self.power)) + end)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power,
                "cycle": self.cycle, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Keras's CosineDecay, with its optional linear warmup.

    Without ``warmup_target``: ``lr * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps))
    + alpha)`` with s = min(step, decay_steps).  With it: steps below ``warmup_steps`` go
    linearly from ``initial_learning_rate`` to ``warmup_target``
    (``(target - lr) * step / warmup_steps + lr``); from ``warmup_steps`` on, the cosine
    decays ``warmup_target`` over ``decay_steps`` further steps, then stays at
    ``alpha * warmup_target``.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name=None,
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate",
                                           0.0)
        self.decay_steps = _int(decay_steps, "decay_steps", 1)
        self.alpha = _real(alpha, "alpha", 0.0, 1.0)
        self.name = _name(name, "CosineDecay")
        self.warmup_target = (None if warmup_target is None else
                              _real(warmup_target, "warmup_target", 0.0))
        self.warmup_steps = _int(warmup_steps, "warmup_steps", 0)

    def _decay(self, s, steps, decay_from):
        fraction = s / steps
        cosine = _F(0.5) * (_F(1) + np.cos(_F(math.pi) * fraction))
        return decay_from * (_F(1 - self.alpha) * cosine + _F(self.alpha))

    def __call__(self, step):
        init, steps, s = _F(self.initial_learning_rate), _F(self.decay_steps), _F(step)
        if self.warmup_target is None:
            return float(self._decay(np.minimum(s, steps), steps, init))
        target, warmup = _F(self.warmup_target), _F(self.warmup_steps)
        s = np.minimum(s, steps + warmup)
        if s < warmup:
            return float((target - init) * (s / warmup) + init)
        return float(self._decay(s - warmup, steps, target))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class PiecewiseConstantDecay(LearningRateSchedule):
    """Keras's PiecewiseConstantDecay: ``values[0]`` while step <= boundaries[0],
    ``values[i]`` while boundaries[i-1] < step <= boundaries[i], ``values[-1]`` after
    the last boundary.  Boundaries are strictly increasing integer steps (Keras casts
    them to the integer step's dtype)."""

    def __init__(self, boundaries, values, name=None):
        if not isinstance(boundaries, (list, tuple)) or not boundaries:
            raise TypeError(f"boundaries must be a non-empty list of steps, got "
                            f"{boundaries!r}")
        if not isinstance(values, (list, tuple)) or len(values) != len(boundaries) + 1:
            raise ValueError(f"values must be a list of one more element than "
                             f"boundaries ({len(boundaries) + 1}), got {values!r}")
        self.boundaries = [_int(b, f"boundaries[{i}]", 0) for i, b in enumerate(boundaries)]
        if any(a >= b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got "
                             f"{list(boundaries)!r}")
        self.values = [_real(v, f"values[{i}]", 0.0) for i, v in enumerate(values)]
        self.name = _name(name, "PiecewiseConstant")

    def __call__(self, step):
        i = 0
        while i < len(self.boundaries) and step > self.boundaries[i]:
            i += 1
        return float(_F(self.values[i]))

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


class OneCycle(LearningRateSchedule):
    """The one-cycle policy (Smith and Topin, 2017) with PyTorch's ``OneCycleLR``
    formula; Keras has no one-cycle schedule.

    Two cosine-annealed phases, as PyTorch's defaults (``anneal_strategy="cos"``,
    ``three_phase=False``): from ``max_learning_rate / div_factor`` up to
    ``max_learning_rate`` over steps 0 .. ``pct_start * total_steps - 1``, then down to
    ``max_learning_rate / div_factor / final_div_factor`` at step ``total_steps - 1``.
    Within a phase from a to b over steps s0 .. s1:
    ``b + (a - b) / 2 * (cos(pi * (step - s0) / (s1 - s0)) + 1)``.  Computed in float64
    as PyTorch does.  Only the learning rate is scheduled (PyTorch's momentum cycling is
    not).  Steps after ``total_steps - 1`` keep the final rate (PyTorch raises instead);
    a first phase of zero length (``pct_start * total_steps == 1``, where PyTorch divides
    by zero) gives its end value.
    """

    def __init__(self, max_learning_rate, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, name=None):
        self.max_learning_rate = _real(max_learning_rate, "max_learning_rate", 0.0)
        self.total_steps = _int(total_steps, "total_steps", 1)
        self.pct_start = _real(pct_start, "pct_start", 0.0, 1.0)
        self.div_factor = _real(div_factor, "div_factor", 0.0, low_open=True)
        self.final_div_factor = _real(final_div_factor, "final_div_factor", 0.0,
                                      low_open=True)
        self.name = _name(name, "OneCycle")

    def __call__(self, step):
        step = min(step, self.total_steps - 1)
        initial = self.max_learning_rate / self.div_factor
        phases = [(float(self.pct_start * self.total_steps) - 1, initial,
                   self.max_learning_rate),
                  (self.total_steps - 1, self.max_learning_rate,
                   initial / self.final_div_factor)]
        start = 0.0
        for i, (end, lr_a, lr_b) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = 1.0 if end == start else (step - start) / (end - start)
                return lr_b + (lr_a - lr_b) / 2.0 * (math.cos(math.pi * pct) + 1)
            start = end

    def get_config(self):
        return {"max_learning_rate": self.max_learning_rate,
                "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "name": self.name}


_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay, PolynomialDecay,
                                      CosineDecay, PiecewiseConstantDecay, OneCycle)}
