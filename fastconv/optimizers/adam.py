"""Adam, AdamW, Adamax and Nadam with Keras 3's update rules (t = iterations + 1).

- Adam: ``m += (g - m) * (1 - beta_1)``; ``v += (g**2 - v) * (1 - beta_2)``;
  ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``;
  ``w -= m * alpha / (sqrt(v) + epsilon)``.
- AdamW: Adam with decoupled weight decay ``w -= w * weight_decay * lr`` before each
  update (Keras's default weight_decay=0.004; the base class applies it).
- Adamax: ``m += (g - m) * (1 - beta_1)``; ``u = max(beta_2 * u, |g|)``;
  ``w -= lr * m / ((1 - beta_1**t) * (u + epsilon))``.
- Nadam (Dozat's schedule, as Keras): ``mu_t = beta_1 * (1 - 0.5 * 0.96**t)``,
  ``prod_t = mu_1 ... mu_t``; m, v as Adam;
  ``m_hat = mu_{t+1} m / (1 - prod_t mu_{t+1}) + (1 - mu_t) g / (1 - prod_t)``;
  ``w -= m_hat * lr / (sqrt(v / (1 - beta_2**t)) + epsilon)``.

Clipping, weight decay and schedules: see :mod:`fastconv.optimizers.base`.
"""
import numpy as np

from .. import _ext
from ..schedules import _real
from .base import Optimizer

__all__ = ["Adam", "AdamW", "Adamax", "Nadam"]


class Adam(Optimizer):
    """Adam (Keras defaults: learning_rate=0.001, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
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


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras defaults: learning_rate=0.001,
    weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, name=None, **kwargs):
        if weight_decay is None:
            raise ValueError("weight_decay must be a number for AdamW, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name,
                         weight_decay=weight_decay, **kwargs)


class Adamax(Optimizer):
    """Adamax, Adam with the infinity norm (Keras defaults: learning_rate=0.001,
    beta_1=0.9, beta_2=0.999, epsilon=1e-7)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0)
        self.epsilon = _real(epsilon, "epsilon", 0.0)

    def _n_slots(self):
        return 2

    def _update(self, g, w, slots, lr):
        t = w.dtype.type
        m, u = slots
        beta_1_power = np.power(t(self.beta_1), t(self.iterations + 1))
        m += (g - m) * t(1 - self.beta_1)
        np.maximum(t(self.beta_2) * u, np.abs(g), out=u)
        w -= (lr * m) / ((t(1) - beta_1_power) * (u + t(self.epsilon)))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config


class Nadam(Optimizer):
    """Nadam, Adam with Nesterov momentum (Keras defaults: learning_rate=0.001,
    beta_1=0.9, beta_2=0.999, epsilon=1e-7).

    Keras keeps the product of the momentum schedule, ``prod_t``, as an optimizer
    variable in the first variable's dtype; here it is a function of ``iterations``,
    recomputed by the same float operations in the same order (so a restored optimizer
    needs no extra state array).
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name=None, **kwargs):
        super().__init__(learning_rate, name, **kwargs)
        self.beta_1 = _real(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = _real(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = _real(epsilon, "epsilon", 0.0)
        self._u_memo = None  # (steps, dtype, beta_1, product over those steps)

    def _n_slots(self):
        return 2

    def _u_product(self, steps, t):
        """prod_{s=1..steps} of ``beta_1 * (1 - 0.5 * 0.96**s)`` in dtype t, in Keras's
        order ``(u * beta_1) * (1 - 0.5 * 0.96**s)``; one multiply per step in training."""
        memo = self._u_memo
        if memo is not None and memo[1] is t and memo[2] == self.beta_1 \
                and memo[0] <= steps:
            done, u = memo[0], memo[3]
        else:
            done, u = 0, t(1.0)
        for s in range(done + 1, steps + 1):
            u = u * t(self.beta_1) * (t(1.0) - t(0.5) * np.power(t(0.96), t(s)))
        self._u_memo = (steps, t, self.beta_1, u)
        return u

    def _update_all(self, grads, variables, lr):
        if variables:
            self._u_step = self._u_product(self.iterations + 1, variables[0].dtype.type)
        super()._update_all(grads, variables, lr)

    def _update(self, g, w, slots, lr):
        t = w.dtype.type
        m, v = slots
        local_step, next_step = t(self.iterations + 1), t(self.iterations + 2)
        beta_1, beta_2 = t(self.beta_1), t(self.beta_2)
        u_t = beta_1 * (t(1.0) - t(0.5) * np.power(t(0.96), local_step))
        u_t_1 = beta_1 * (t(1.0) - t(0.5) * np.power(t(0.96), next_step))
        u_product_t = t(self._u_step)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = np.power(beta_2, local_step)
        m += (g - m) * (t(1) - beta_1)
        v += (g * g - v) * (t(1) - beta_2)
        m_hat = (u_t_1 * m) / (t(1) - u_product_t_1) \
            + ((t(1) - u_t) * g) / (t(1) - u_product_t)
        v_hat = v / (t(1) - beta_2_power)
        w -= (m_hat * lr) / (np.sqrt(v_hat) + t(self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config
