"""SGD (with momentum and Nesterov), RMSprop and Adagrad, with Keras 3's update rules.

- SGD: ``w -= lr * g``; with momentum ``m = momentum * m - lr * g`` then ``w += m``
  (Nesterov: ``w += momentum * m - lr * g``).
- RMSprop: ``v = rho * v + (1 - rho) * g**2``; ``w -= lr * g / sqrt(v + epsilon)``
  (epsilon inside the square root, as Keras); momentum and centered variants as Keras.
- Adagrad: ``acc += g**2`` (acc starts at ``initial_accumulator_value``);
  ``w -= lr * g / sqrt(acc + epsilon)``.

Clipping, weight decay and schedules: see :mod:`fastconv.optimizers.base`.
"""
import numpy as np

from .. import _ext
from ..schedules import _real
from .base import Optimizer

__all__ = ["SGD", "RMSprop", "Adagrad"]


class SGD(Optimizer):
    """Stochastic gradient descent (Keras defaults: learning_rate=0.01, no momentum)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, name=None,
                 **kwargs):
        super().__init__(learning_rate, name, **kwargs)
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
                 centered=False, name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
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


class Adagrad(Optimizer):
    """Adagrad (Keras defaults: learning_rate=0.001, initial_accumulator_value=0.1,
    epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.initial_accumulator_value = _real(initial_accumulator_value,
                                               "initial_accumulator_value", 0.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)

    def _n_slots(self):
        return 1

    def build(self, variables):
        """The accumulators start at ``initial_accumulator_value`` (Keras's Constant)."""
        super().build(variables)
        for (acc,) in self._slots:
            acc.fill(self.initial_accumulator_value)

    def _update(self, g, w, slots, lr):
        acc, = slots
        acc += g * g
        w -= (lr * g) / np.sqrt(acc + w.dtype.type(self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(initial_accumulator_value=self.initial_accumulator_value,
                      epsilon=self.epsilon)
        return config
