"""Activation layers with arguments: ReLU, LeakyReLU, ELU (Keras API).

Each is an activation of fastconv.activations as a layer of its own (no weights), with
Keras's arguments and defaults: ``ReLU(max_value=None, negative_slope=0.0,
threshold=0.0)`` (``ReLU(6.0)`` is ReLU6), ``LeakyReLU(negative_slope=0.3)`` (the
layer's default; the function's is 0.2), ``ELU(alpha=1.0)``.  Arguments must be finite
and non-negative (Keras checks this for ReLU and LeakyReLU; for ELU, whose gradient
fastconv takes from the output, a negative alpha is refused too).
"""
from .. import _more_activations as _more
from .. import activations as _act
from .base import Layer

__all__ = ["ReLU", "LeakyReLU", "ELU"]


class _ActivationLayer(Layer):
    """A weightless layer whose output has the input's shape; ``_out`` keeps the last
    output for the gradients that are functions of it."""
    _cache_attrs = ("_x", "_out")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


class ReLU(_ActivationLayer):
    """Keras's ReLU: min(x, max_value) above ``threshold``, ``negative_slope * (x -
    threshold)`` below (fastconv._more_activations.general_relu)."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        slope, top, thr = _more._relu_args(negative_slope, max_value, threshold)
        super().__init__(**kwargs)
        self.max_value, self.negative_slope, self.threshold = top, slope, thr
        # the plain relu and relu6 run their own (faster) functions
        plain = slope == 0.0 and thr == 0.0
        self._kind = ("relu" if plain and top is None else
                      "relu6" if plain and top == 6.0 else "general")

    def _linear_forward(self, x, training):
        if self._kind == "relu":
            self._out = _act.relu(x)
        elif self._kind == "relu6":
            self._out = _more.relu6(x)
        else:
            self._x = x
            return _more.general_relu(x, self.negative_slope, self.max_value,
                                      self.threshold)
        # the gradients of relu and relu6 read the output alone: the input (often a
        # tensor nothing else keeps, the sum of a residual block) is not held, and
        # _x is the output, of the same shape
        self._x = self._out
        return self._out

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        if self._kind == "relu":
            return _act.relu_backward(grad, self._out)
        if self._kind == "relu6":
            return _more.relu6_backward(grad, self._out)
        return _more.general_relu_input_backward(grad, self._x, self.negative_slope,
                                                 self.max_value, self.threshold)

    def get_config(self):
        config = super().get_config()
        config.update(max_value=self.max_value, negative_slope=self.negative_slope,
                      threshold=self.threshold)
        return config


class LeakyReLU(_ActivationLayer):
    """x for x > 0, ``negative_slope * x`` otherwise (Keras 3's layer default 0.3;
    ``alpha=`` is Keras's deprecated name of the argument)."""

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            negative_slope = kwargs.pop("alpha")
        self.negative_slope = _more._number(negative_slope, "negative_slope", 0.0)
        super().__init__(**kwargs)

    def _linear_forward(self, x, training):
        self._x = x
        self._out = _more.leaky_relu(x, self.negative_slope)
        return self._out

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return _more.leaky_relu_backward(grad, self._out, self.negative_slope)

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config


class ELU(_ActivationLayer):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0, **kwargs):
        self.alpha = _more._number(alpha, "alpha", 0.0)
        super().__init__(**kwargs)

    def _linear_forward(self, x, training):
        self._x = x
        self._out = _more.elu(x, self.alpha)
        return self._out

    def _linear_backward(self, grad, need_input_grad):
        if not need_input_grad:
            return None
        return _more.elu_backward(grad, self._out, self.alpha)

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
