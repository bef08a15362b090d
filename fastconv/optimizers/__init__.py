"""Optimizers with Keras 3's defaults and update rules, in place on NumPy arrays.

SGD (momentum, Nesterov), RMSprop, Adagrad (:mod:`.classic`); Adam, AdamW, Adamax,
Nadam (:mod:`.adam`); gradient clipping (clipnorm, clipvalue, global_clipnorm) and weight
decay for all of them (:mod:`.base`).  The updates follow Keras 3's own arithmetic,
operation by operation, in the dtype of the weights (float32 normally), so that the same
gradients give the same weights as Keras up to float32 rounding.

``learning_rate`` is a float or a schedule from :mod:`fastconv.schedules` (also reachable
as ``fastconv.optimizers.schedules``): ExponentialDecay, InverseTimeDecay,
PolynomialDecay, CosineDecay (with warmup), PiecewiseConstantDecay (Keras's) and
OneCycle (PyTorch's OneCycleLR formula), evaluated at ``iterations`` before the step.
``InverseTimeDecay(lr, decay_steps=1, decay_rate=d)`` is the per-step decay
``lr / (1 + d * t)`` of the classic Keras examples.
"""
from .. import schedules
from .._serialization import deserialize
from ..schedules import (CosineDecay, ExponentialDecay, InverseTimeDecay,  # noqa: F401
                         LearningRateSchedule, OneCycle, PiecewiseConstantDecay,
                         PolynomialDecay)
from .adam import Adam, Adamax, AdamW, Nadam
from .base import Optimizer
from .classic import SGD, Adagrad, RMSprop

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "Adamax", "Nadam",
           "LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay",
           "PolynomialDecay", "CosineDecay", "PiecewiseConstantDecay", "OneCycle",
           "schedules", "get"]

_CLASSES = {c.__name__: c for c in (SGD, RMSprop, Adagrad, Adam, AdamW, Adamax, Nadam)}
_ALIASES = {name.lower(): c for name, c in _CLASSES.items()}


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
