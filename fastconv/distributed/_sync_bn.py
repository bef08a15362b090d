"""Synchronized batch normalization: the statistics of a training pass taken over the
global batch (every rank's samples) instead of the rank's own.

``sync_batch_norm(model)`` turns every BatchNormalization layer of the model into a
synchronized one in place (the layer keeps its class, configuration and weights: the
model saves and loads as before).  In a training forward pass the per-channel sums are
allreduced (sum of x and the sample count, then the sum of squared deviations from
the global mean: the same two-pass float64 arithmetic as the layer), so every rank
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
    from ..layers.normalization import _channel_sum
    view = self._view(x.shape)
    shape, bshape = view[0], view[2]
    x2 = x.reshape(shape)
    self._synced = False
    if not (bool(training) and self.trainable) or _comm.size() == 1:
        return type(self)._linear_forward(self, x, training)
    c = shape[1]
    m_local = x2.size // c
    total = _allreduce_sum(np.append(_channel_sum(x2, view), m_local))
    m = total[-1]
    if m == 0:
        return type(self)._linear_forward(self, x, False)
    mean = total[:c] / m
    centered = x2 - mean.astype(x.dtype).reshape(bshape)
    var = _allreduce_sum(_channel_sum(np.square(centered, out=centered), view)) / m
    del centered
    mom = self.momentum
    for target, value in ((self.moving_mean, mean), (self.moving_variance, var)):
        np.copyto(target, target.astype(np.float64) * mom + value * (1.0 - mom),
                  casting="unsafe")
    inv, scale, shift = self._affine(mean, var)
    y = x2 * scale.astype(x.dtype).reshape(bshape)
    y += shift.astype(x.dtype).reshape(bshape)
    self._x = x
    self._stats = (True, mean, inv, m)
    self._synced = True
    return y.reshape(x.shape)


def _backward(self, grad, need_input_grad):
    from ..layers.normalization import _channel_sum
    if not getattr(self, "_synced", False):
        return type(self)._linear_backward(self, grad, need_input_grad)
    self._synced = False
    view = self._view(self._x.shape)
    shape, bshape = view[0], view[2]
    _, mean, inv, m = self._stats
    x2, g2 = self._x.reshape(shape), grad.reshape(shape)
    dtype = g2.dtype
    centered = x2 - mean.astype(dtype).reshape(bshape)
    dbeta = _channel_sum(g2, view)
    prod = centered * g2
    dprod = _channel_sum(prod, view)
    if self.scale:
        self._grads["gamma"] = (dprod * inv).astype(dtype)
    if self.center:
        self._grads["beta"] = dbeta.astype(dtype)
    # the global sums, from every rank (all ranks call this, needed or not)
    c = shape[1]
    total = _allreduce_sum(np.concatenate([dbeta, dprod]))
    if not need_input_grad:
        return None
    gamma = self.gamma.astype(np.float64) if self.scale else 1.0
    a = gamma * inv
    coef = (-a * inv * (total[c:] * inv) / m).astype(dtype).reshape(bshape)
    const = (-a * total[:c] / m).astype(dtype).reshape(bshape)
    dx = np.multiply(centered, coef, out=centered)
    dx += const
    dx += np.multiply(g2, a.astype(dtype).reshape(bshape), out=prod)
    return dx.reshape(self._x.shape)


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
