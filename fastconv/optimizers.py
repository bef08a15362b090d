"""SGD, RMSprop and Adam with Keras 3's defaults and update rules, in place on NumPy arrays.

The updates follow Keras 3's own arithmetic, operation by operation, in the dtype of the
weights (float32 normally), so that the same gradients give the same weights as Keras up
to float32 rounding:

- SGD: ``w -= lr * g``; with momentum ``m = momentum * m - lr * g`` then ``w += m``
  (Nesterov: ``w += momentum * m - lr * g``).
- RMSprop: ``v = rho * v + (1 - rho) * g**2``; ``w -= lr * g / sqrt(v + epsilon)``
  (epsilon inside the square root, as Keras); momentum and centered variants as Keras.
- Adam: ``m += (g - m) * (1 - beta_1)``; ``v += (g**2 - v) * (1 - beta_2)``;
  ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
  ``w -= m * alpha / (sqrt(v) + epsilon)`` with t = iterations + 1.

``learning_rate`` is a float or a schedule (``schedules.ExponentialDecay``,
``schedules.InverseTimeDecay``: Keras's classes, evaluated at ``iterations`` before the
step; ``InverseTimeDecay(lr, decay_steps=1, decay_rate=d)`` is the per-step decay
``lr / (1 + d * t)`` of the classic Keras examples).
"""
import math
import numbers
import types

import numpy as np

from . import _ext
from ._serialization import deserialize, serialize

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "LearningRateSchedule",
           "ExponentialDecay", "InverseTimeDecay", "schedules", "get"]


def _real(value, name, low=None, high=None, low_open=False, high_open=False):
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


# --------------------------------------------------------------------------- schedules
class LearningRateSchedule:
    """Base class: ``schedule(step) -> learning rate`` (step = optimizer.iterations)."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class _StepDecay(LearningRateSchedule):
    """Keras's decay schedules: ``_decay(p)`` of p = step / decay_steps (floored when
    staircase); subclasses differ only in that formula."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        self.initial_learning_rate = _real(initial_learning_rate, "initial_learning_rate",
                                           0.0)
        self.decay_steps = _real(decay_steps, "decay_steps", 0.0, low_open=True)
        self.decay_rate = _real(decay_rate, "decay_rate", 0.0)
        self.staircase = bool(staircase)
        self.name = type(self).__name__ if name is None else name

    def __call__(self, step):
        p = step / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self._decay(p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """lr * decay_rate ** (step / decay_steps) (floored exponent when staircase)."""

    def _decay(self, p):
        return self.initial_learning_rate * self.decay_rate ** p


class InverseTimeDecay(_StepDecay):
    """lr / (1 + decay_rate * step / decay_steps) (floored ratio when staircase)."""

    def _decay(self, p):
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


_SCHEDULES = {c.__name__: c for c in (ExponentialDecay, InverseTimeDecay)}
schedules = types.SimpleNamespace(LearningRateSchedule=LearningRateSchedule,
                                  ExponentialDecay=ExponentialDecay,
                                  InverseTimeDecay=InverseTimeDecay)


# --------------------------------------------------------------------------- optimizers
class Optimizer:
    """Base class.  ``apply(grads, variables)`` updates the arrays in place.

    Slot arrays (momenta, velocities) are created on the first call, one set per
    variable in the order given; later calls must pass the same variables in the same
    order (a model always does).
    """

    def __init__(self, learning_rate, name=None):
        self.learning_rate = learning_rate
        self.name = name or type(self).__name__.lower()
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
        self._update_all(grads, variables, self.learning_rate)
        self.iterations += 1

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
                else lr}

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


class SGD(Optimizer):
    """Stochastic gradient descent (Keras defaults: learning_rate=0.01, no momentum)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None):
        super().__init__(learning_rate, name)
        self.momentum = _real(momentum, "momentum", 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _n_slots(self):
        return 1 if self.momentum else 0

    def _update(self, g, w, slots, lr):
        if not self.momentum:
            w -= g * lr
            return
        m, = slots
        step = g * lr
        m *= w.dtype.type(self.momentum)
        m -= step
        if self.nesterov:
            w += m * w.dtype.type(self.momentum) - step
        else:
            w += m

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, nesterov=self.nesterov)
        return config


class RMSprop(Optimizer):
    """RMSprop (Keras defaults: learning_rate=0.001, rho=0.9, momentum=0, epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, name=None):
        super().__init__(learning_rate, name)
        self.rho = _real(rho, "rho", 0.0, 1.0)
        self.momentum = _real(momentum, "momentum", 0.0, 1.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.centered = bool(centered)

    def _n_slots(self):
        return 1 + (self.momentum > 0) + self.centered

    def _update(self, g, w, slots, lr):
        t = w.dtype.type
        v = slots[0]
        if (not self.centered and not self.momentum and w.flags.c_contiguous
                and g.flags.c_contiguous and g.dtype == w.dtype
                and w.dtype in (np.float32, np.float64)):
            # The same operations in one compiled pass (src/_optim.pyx).
            _ext.optim.rmsprop(g.reshape(-1), w.reshape(-1), v.reshape(-1), lr,
                               t(self.rho), t(1.0 - self.rho), t(self.epsilon))
            return
        v *= t(self.rho)
        sq = g * g
        sq *= t(1.0 - self.rho)
        v += sq
        if self.centered:
            avg = slots[-1]
            avg *= t(self.rho)
            avg += g * t(1.0 - self.rho)
            denom = v - avg * avg
            denom += t(self.epsilon)
        else:
            denom = v + t(self.epsilon)
        np.sqrt(denom, out=denom)
        step = g * lr
        step /= denom
        if self.momentum > 0:
            mom = slots[1]
            mom *= t(self.momentum)
            mom += step
            w -= mom
        else:
            w -= step

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, momentum=self.momentum, epsilon=self.epsilon,
                      centered=self.centered)
        return config


class Adam(Optimizer):
    """Adam (Keras defaults: learning_rate=0.001, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name=None):
        super().__init__(learning_rate, name)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self.amsgrad = bool(amsgrad)
        self._alpha_memo = None

    def _n_slots(self):
        return 3 if self.amsgrad else 2

    def _alpha(self, t, lr):
        """lr * sqrt(1 - beta_2^step) / (1 - beta_1^step) in dtype t, computed once per
        step and dtype (the same value for every variable)."""
        key = (self.iterations, t, lr, self.beta_1, self.beta_2)
        if self._alpha_memo is None or self._alpha_memo[0] != key:
            step = t(self.iterations + 1)
            b1p = np.power(t(self.beta_1), step)
            b2p = np.power(t(self.beta_2), step)
            self._alpha_memo = (key, lr * np.sqrt(t(1) - b2p) / (t(1) - b1p))
        return self._alpha_memo[1]

    def _update_all(self, grads, variables, lr):
        """One compiled call for all variables when they are contiguous arrays of one
        float dtype with gradients of that dtype (a model's are): for small models the
        per-variable calls cost more than the arithmetic (docs/design/algorithms.md).
        Anything else (checked before any array changes) goes one
        variable at a time."""
        t = variables[0].dtype.type if variables else None
        if not self.amsgrad and t in (np.float32, np.float64):
            kernel = _ext.optim.adam_all["float" if t is np.float32 else "double"]
            try:
                kernel(grads, variables, [s[0] for s in self._slots],
                       [s[1] for s in self._slots], self._alpha(t, t(lr)),
                       t(1.0 - self.beta_1), t(1.0 - self.beta_2), t(self.epsilon))
                return
            except ValueError:
                pass
        super()._update_all(grads, variables, lr)

    def _update(self, g, w, slots, lr):
        t = w.dtype.type
        alpha = self._alpha(t, lr)
        m, v = slots[0], slots[1]
        if (not self.amsgrad and w.flags.c_contiguous and g.flags.c_contiguous
                and g.dtype == w.dtype and w.dtype in (np.float32, np.float64)):
            # The same operations in one compiled pass (src/_optim.pyx).
            _ext.optim.adam(g.reshape(-1), w.reshape(-1), m.reshape(-1), v.reshape(-1),
                            alpha, t(1.0 - self.beta_1), t(1.0 - self.beta_2),
                            t(self.epsilon))
            return
        d = g - m
        d *= t(1.0 - self.beta_1)
        m += d
        d = g * g
        d -= v
        d *= t(1.0 - self.beta_2)
        v += d
        if self.amsgrad:
            np.maximum(slots[2], v, out=slots[2])
            v = slots[2]
        denom = np.sqrt(v)
        denom += t(self.epsilon)
        upd = m * alpha
        upd /= denom
        w -= upd

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                      amsgrad=self.amsgrad)
        return config


_CLASSES = {c.__name__: c for c in (SGD, RMSprop, Adam)}
_ALIASES = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam}


def get(identifier):
    """An Optimizer from a name ("adam"), a class name, a config dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier.lower()) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; known: "
                             f"{', '.join(sorted(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, _CLASSES, "optimizer")
    raise TypeError(f"optimizer must be a name, a config dict or a "
                    f"fastconv.optimizers.Optimizer, got {identifier!r}")
