"""Weight initializers with Keras's names, defaults and fan computation.

``get("glorot_uniform")`` (or a class name, a config dict, an instance) returns an
initializer; calling it as ``init(shape, dtype)`` returns a new array.  Fans follow Keras:
a 2-D kernel (in, out) has fan_in = in, fan_out = out; a convolution kernel
(kh, kw, C_in/groups, filters) has fan_in = kh * kw * C_in/groups and
fan_out = kh * kw * filters.

Random initializers without a ``seed`` draw from fastconv's global generator (see
``fastconv.set_seed``); with a seed, every call returns the same values (as in Keras).
"""
import math
import numbers

import numpy as np

from . import _random
from ._serialization import deserialize, serialize

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal",
           "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal",
           "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "compute_fans", "get",
           "serialize_initializer"]


def compute_fans(shape):
    """(fan_in, fan_out) of a weight shape, by Keras's rule."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _float(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


class Initializer:
    """Base class: ``init(shape, dtype="float32") -> ndarray``."""

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(s) for s in shape)
        return np.asarray(self._generate(shape), dtype=np.dtype(dtype))

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    def _generate(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def _generate(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = _float(value, "value")

    def _generate(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class _Random(Initializer):
    def __init__(self, seed=None):
        if seed is not None:
            _random.make_generator(seed)  # validates
        self.seed = seed

    def _generator(self):
        if self.seed is None:
            return _random.get_generator()
        return _random.make_generator(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class RandomUniform(_Random):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = _float(minval, "minval")
        self.maxval = _float(maxval, "maxval")
        if self.maxval < self.minval:
            raise ValueError(f"maxval must be >= minval, got minval={minval!r}, "
                             f"maxval={maxval!r}")

    def _generate(self, shape):
        return self._generator().uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(_Random):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = _float(mean, "mean")
        self.stddev = _float(stddev, "stddev")
        if self.stddev < 0:
            raise ValueError(f"stddev must be >= 0, got {stddev!r}")

    def _generate(self, shape):
        return self._generator().normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_normal(gen, shape, stddev):
    """Normal(0, stddev) restricted to [-2 stddev, 2 stddev] (redraws outside)."""
    out = gen.standard_normal(size=shape)
    flat = out.reshape(-1)
    bad = np.flatnonzero(np.abs(flat) > 2.0)
    while bad.size:
        flat[bad] = gen.standard_normal(size=bad.size)
        bad = bad[np.abs(flat[bad]) > 2.0]
    return out * stddev


class TruncatedNormal(RandomNormal):
    def _generate(self, shape):
        return self.mean + _truncated_normal(self._generator(), shape, self.stddev)


class VarianceScaling(_Random):
    """Keras's VarianceScaling: variance scale / n, n chosen by ``mode``."""
    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal",
                 seed=None):
        super().__init__(seed)
        self.scale = _float(scale, "scale")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {self._MODES}, got {mode!r}")
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {self._DISTRIBUTIONS}, got "
                             f"{distribution!r}")
        self.mode = mode
        self.distribution = distribution

    def _generate(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out,
             "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        var = self.scale / max(1.0, n)
        gen = self._generator()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * var)
            return gen.uniform(-limit, limit, size=shape)
        if self.distribution == "untruncated_normal":
            return gen.normal(0.0, math.sqrt(var), size=shape)
        # Keras: the stddev of a normal truncated at 2 sigma is 0.8796 sigma.
        return _truncated_normal(gen, shape, math.sqrt(var) / 0.87962566103423978)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "seed": self.seed}


def _fixed(scale, mode, distribution, doc):
    class _Fixed(VarianceScaling):
        __doc__ = doc

        def __init__(self, seed=None):
            super().__init__(scale, mode, distribution, seed)

        def get_config(self):
            return {"seed": self.seed}
    return _Fixed


class GlorotUniform(_fixed(1.0, "fan_avg", "uniform",
                           "U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (Keras default).")):
    pass


class GlorotNormal(_fixed(1.0, "fan_avg", "truncated_normal",
                          "Truncated normal, stddev sqrt(2 / (fan_in + fan_out)).")):
    pass


class HeUniform(_fixed(2.0, "fan_in", "uniform", "U(-l, l), l = sqrt(6 / fan_in).")):
    pass


class HeNormal(_fixed(2.0, "fan_in", "truncated_normal",
                      "Truncated normal, stddev sqrt(2 / fan_in).")):
    pass


class LecunUniform(_fixed(1.0, "fan_in", "uniform", "U(-l, l), l = sqrt(3 / fan_in).")):
    pass


class LecunNormal(_fixed(1.0, "fan_in", "truncated_normal",
                         "Truncated normal, stddev sqrt(1 / fan_in).")):
    pass


_CLASSES = {c.__name__: c for c in (
    Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal)}
_ALIASES = {"zeros": Zeros, "ones": Ones, "constant": Constant,
            "random_uniform": RandomUniform, "random_normal": RandomNormal,
            "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
            "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
            "he_uniform": HeUniform, "he_normal": HeNormal,
            "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal}


def get(identifier, name="initializer"):
    """An Initializer from a name ("glorot_uniform"), a class name, a config or an
    instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown {name} {identifier!r}; known: "
                             f"{', '.join(sorted(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, _CLASSES, name)
    raise TypeError(f"{name} must be a name, a config dict or an Initializer, got "
                    f"{identifier!r}")


def serialize_initializer(init):
    """A JSON-able form: the alias string for plain defaults, else a class config."""
    for alias, cls in _ALIASES.items():
        if type(init) is cls and init.get_config() == cls().get_config():
            return alias
    return serialize(init)
