"""Synchronized batch normalization: the statistics of a training pass taken over the
global batch (every rank's samples) instead of the rank's own.

``sync_batch_norm(model)`` turns every BatchNormalization layer of the model into a
synchronized one in place (the layer keeps its class, configuration and weights: the
model saves and loads as before).  In a training forward pass the per-channel sums are
allreduced (sum of x and the sample count, then the sum of squared deviations
from the global mean: the layer's own two-pass float64 sums), so every rank
normalizes with the global batch's mean and biased variance and updates the moving
statistics identically.  In backward the sums of ``g`` and ``g * (x - mean)`` are
allreduced for the input gradient, which is that of the global objective (the mean of
the ranks' mean losses); gamma's and beta's gradients stay the rank's own (the
DistributedOptimizer averages them).  With equal shards N ranks at batch B then train
as one process at batch N * B.  Inference and frozen layers are unchanged.
"""
import types

import numpy as np

from . import _comm

__all__ = ["sync_batch_norm"]


def _allreduce_sum(values):
    values = np.ascontiguousarray(values, dtype=np.float64)
    out = np.empty_like(values)
    _comm.comm().Allreduce(values, out)
    return out


def _forward(self, x, training):
    from .. import _ext
    self._synced = False
    if not (bool(training) and self.trainable) or _comm.size() == 1:
        return type(self)._linear_forward(self, x, training)
    x = np.ascontiguousarray(x)
    view = self._view(x.shape)
    a, c, b = view[:3]
    flat = x.reshape(-1)
    total = _allreduce_sum(np.append(self._sums(view, flat, flat, np.zeros(c),
                                                False)[0], a * b))
    m = total[-1]
    if m == 0:
        return type(self)._linear_forward(self, x, False)
    mean = total[:c] / m
    var = _allreduce_sum(self._sums(view, flat, flat, mean, False)[1]) / m
    mom = self.momentum
    for target, value in ((self.moving_mean, mean), (self.moving_variance, var)):
        np.copyto(target, target.astype(np.float64) * mom + value * (1.0 - mom),
                  casting="unsafe")
    inv, scale, shift = self._affine(mean, var)
    y = np.empty(x.shape, x.dtype)
    _ext.batchnorm.affine(flat, scale.astype(x.dtype), shift.astype(x.dtype),
                          y.reshape(-1), a, c, b)
    self._x = x
    self._stats = (True, mean, inv, m)
    self._synced = True
    return y


def _backward(self, grad, need_input_grad):
    from .. import _ext
    if not getattr(self, "_synced", False):
        return type(self)._linear_backward(self, grad, need_input_grad)
    self._synced = False
    x, grad = self._x, np.ascontiguousarray(grad)
    view = self._view(x.shape)
    a, c, b = view[:3]
    _, mean, inv, m = self._stats
    dtype = grad.dtype
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    sums = np.concatenate(self._sums(view, flat_x, flat_g, mean, True))
    if self.scale:  # the rank's own: the DistributedOptimizer averages them
        self._grads["gamma"] = (sums[c:] * inv).astype(dtype)
    if self.center:
        self._grads["beta"] = sums[:c].astype(dtype)
    total = _allreduce_sum(sums)  # every rank calls it, input gradient needed or not
    if not need_input_grad:
        return None
    dbeta, dgamma = total[:c], total[c:] * inv
    gamma = self.gamma.astype(np.float64) if self.scale else 1.0
    k = gamma * inv
    dx = np.empty(grad.shape, dtype)
    _ext.batchnorm.backward_input(
        flat_g, flat_x, mean.astype(dtype), k.astype(dtype),
        (-k * inv * dgamma / m).astype(dtype), (-k * dbeta / m).astype(dtype),
        dx.reshape(-1), a, c, b)
    return dx


def sync_batch_norm(model):
    """Synchronize the training statistics of every BatchNormalization layer of
    ``model`` across the ranks (see the module docstring); returns how many."""
    from ..layers.normalization import BatchNormalization
    n = 0
    for layer in getattr(model, "_layers", None) or model.layers:
        if isinstance(layer, BatchNormalization) and \
                "_linear_forward" not in layer.__dict__:
            layer._linear_forward = types.MethodType(_forward, layer)
            layer._linear_backward = types.MethodType(_backward, layer)
            n += 1
    return n
