"""Losses with Keras's formulas, reductions and names, each with its gradient.

- ``categorical_crossentropy`` (one-hot or soft targets, shape of the prediction),
- ``sparse_categorical_crossentropy`` (integer labels, shape of the prediction without
  its last axis, or with a last axis of 1),
- ``mean_squared_error`` (mean over the last axis).

Reduction ``"sum_over_batch_size"`` (Keras's default) averages the per-sample losses;
``"sum"`` adds them.  Probabilities are clipped to [1e-7, 1 - 1e-7] as Keras does; the
gradient of a clipped entry is zero, as in TensorFlow.

Cross-entropy on probabilities that come out of a softmax is computed by the model from
the softmax's logits (the fused path, see ``from_logits_value_and_gradient``): it is
stable for any logit and its gradient is (p - y) / N, which is what Keras 3 computes
too (its TensorFlow backend recovers the logits of a softmax output).
"""
import numpy as np

from . import activations as _activations
from ._serialization import deserialize, serialize
from ._validation import as_array

__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "MeanSquaredError", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "mean_squared_error", "get", "EPSILON"]

EPSILON = 1e-7
_REDUCTIONS = ("sum_over_batch_size", "sum")


def _pred(y_pred):
    arr = as_array(y_pred, "y_pred")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float32)
    if arr.ndim < 1:
        raise ValueError(f"y_pred must have a batch axis, got shape {arr.shape}")
    return arr


def _dense_targets(y_true, y_pred, loss_name):
    arr = as_array(y_true, "y_true")
    if arr.ndim == y_pred.ndim - 1 and y_pred.shape[-1] == 1:
        arr = arr.reshape(arr.shape + (1,))
    if arr.shape != y_pred.shape:
        hint = ""
        if loss_name == "categorical_crossentropy" and arr.ndim == y_pred.ndim - 1:
            hint = (" (integer class labels need sparse_categorical_crossentropy, or "
                    "one-hot encode them)")
        raise ValueError(f"{loss_name}: y_true must have the shape {y_pred.shape} of "
                         f"y_pred, got {arr.shape}{hint}")
    return arr.astype(y_pred.dtype, copy=False)


def _sparse_targets(y_true, y_pred):
    arr = as_array(y_true, "y_true")
    if arr.ndim == y_pred.ndim and arr.shape[-1] == 1:
        arr = arr.reshape(arr.shape[:-1])
    if arr.shape != y_pred.shape[:-1]:
        raise ValueError(f"sparse_categorical_crossentropy: y_true must hold one integer "
                         f"label per sample, shape {y_pred.shape[:-1]} for y_pred of "
                         f"shape {y_pred.shape}, got {arr.shape}")
    labels = arr.astype(np.int64)
    if arr.dtype.kind == "f" and not np.array_equal(labels, arr):
        raise ValueError("sparse_categorical_crossentropy: y_true must hold integer "
                         "class labels, got non-integer values")
    k = y_pred.shape[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"sparse_categorical_crossentropy: labels must be in [0, {k}), "
                         f"got values in [{labels.min()}, {labels.max()}]")
    return labels


class Loss:
    """Base class: ``loss(y_true, y_pred)`` -> float; ``value_and_gradient``."""
    name = "loss"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        if name is not None:
            self.name = name

    def _scale(self, count):
        return 1.0 / max(count, 1) if self.reduction == "sum_over_batch_size" else 1.0

    def __call__(self, y_true, y_pred):
        return self.value_and_gradient(y_true, y_pred, need_gradient=False)[0]

    def value_and_gradient(self, y_true, y_pred, need_gradient=True):
        """(reduced loss as a float, d loss / d y_pred or None)."""
        y_pred = _pred(y_pred)
        per_sample, grad = self._compute(self._targets(y_true, y_pred), y_pred,
                                         need_gradient)
        scale = self._scale(per_sample.size)
        value = float(per_sample.sum(dtype=np.float64) * scale)
        if grad is not None:
            grad *= grad.dtype.type(scale)
        return value, grad

    def get_config(self):
        return {"reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class _CrossentropyBase(Loss):
    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)

    def get_config(self):
        config = super().get_config()
        config["from_logits"] = self.from_logits
        return config

    def _compute(self, y_true, y_pred, need_gradient):
        if self.from_logits:
            return self._logits(y_true, y_pred, need_gradient)
        return self._probs(y_true, y_pred, need_gradient)

    def _logits(self, y_true, logits, need_gradient):
        k = logits.shape[-1]
        z = np.ascontiguousarray(logits).reshape(-1, k)
        shift = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(shift).sum(axis=1, keepdims=True))
        logp = shift - lse
        t = self._flat_targets(y_true, k)
        if t.dtype.kind == "i":
            per = -logp[np.arange(t.size), t]
        else:
            per = -(t * logp).sum(axis=1)
        grad = None
        if need_gradient:
            probs = np.exp(logp)
            if t.dtype.kind == "i":
                grad = probs
                grad[np.arange(t.size), t] -= 1
            else:
                # d/dz of -sum(t * log_softmax(z)) = softmax(z) * sum(t) - t
                grad = probs * t.sum(axis=1, keepdims=True) - t
            grad = grad.reshape(logits.shape)
        return per, grad

    def from_logits_value_and_gradient(self, y_true, logits, need_gradient=True):
        """Loss and d loss / d logits of softmax(logits) against y_true (fused, stable).

        Returns (loss, probs, grad_logits); probs = softmax(logits); grad_logits is None
        without ``need_gradient``.  Every path of a model with a softmax output and this
        loss (fit, evaluate, validation, test_on_batch) computes its loss here, so they
        agree on every prediction, saturated ones included.
        """
        targets = self._targets(y_true, logits)
        if logits.ndim == 2:
            loss, probs = _activations.softmax_cross_entropy(logits, targets)
            grad = (_activations.softmax_cross_entropy_backward(probs, targets)
                    if need_gradient else None)
            if self.reduction == "sum":
                n = logits.shape[0]
                if grad is not None:
                    grad *= grad.dtype.type(n)
                return float(loss) * n, probs, grad
            return float(loss), probs, grad
        per, grad = self._logits(targets, logits, need_gradient)
        probs = _activations.softmax(logits)
        scale = self._scale(per.size)
        if grad is not None:
            grad *= grad.dtype.type(scale)
        return float(per.sum(dtype=np.float64) * scale), probs, grad


class CategoricalCrossentropy(_CrossentropyBase):
    """-sum(y_true * log(clip(y_pred / sum(y_pred))), axis=-1), Keras's formula."""
    name = "categorical_crossentropy"

    def _targets(self, y_true, y_pred):
        return _dense_targets(y_true, y_pred, "categorical_crossentropy")

    @staticmethod
    def _flat_targets(y_true, k):
        return y_true.reshape(-1, k)

    def _probs(self, y_true, y_pred, need_gradient):
        k = y_pred.shape[-1]
        p = y_pred.reshape(-1, k)
        t = y_true.reshape(-1, k)
        total = p.sum(axis=1, keepdims=True)
        q = p / total
        qc = np.clip(q, EPSILON, 1.0 - EPSILON)
        per = -(t * np.log(qc)).sum(axis=1)
        grad = None
        if need_gradient:
            gq = -t / qc
            gq[(q < EPSILON) | (q > 1.0 - EPSILON)] = 0
            # q = p / sum(p): dL/dp_j = (gq_j - sum_k gq_k q_k) / sum(p)
            grad = (gq - (gq * q).sum(axis=1, keepdims=True)) / total
            grad = grad.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        return per, grad


class SparseCategoricalCrossentropy(_CrossentropyBase):
    """Categorical cross-entropy with integer labels (Keras's formula on probabilities:
    clip, log, then a softmax cross-entropy of the log-probabilities)."""
    name = "sparse_categorical_crossentropy"

    def _targets(self, y_true, y_pred):
        return _sparse_targets(y_true, y_pred)

    @staticmethod
    def _flat_targets(y_true, k):
        return y_true.reshape(-1)

    def _probs(self, y_true, y_pred, need_gradient):
        k = y_pred.shape[-1]
        p = y_pred.reshape(-1, k)
        t = y_true.reshape(-1)
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        total = pc.sum(axis=1)
        rows = np.arange(t.size)
        per = -np.log(pc[rows, t] / total)
        grad = None
        if need_gradient:
            # d/d log(pc) of the softmax cross-entropy: pc / sum(pc) - onehot
            g = pc / total[:, None]
            g[rows, t] -= 1
            g /= pc
            g[(p < EPSILON) | (p > 1.0 - EPSILON)] = 0
            grad = g.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        return per, grad


class MeanSquaredError(Loss):
    """mean((y_pred - y_true) ** 2, axis=-1)."""
    name = "mean_squared_error"

    def _targets(self, y_true, y_pred):
        return _dense_targets(y_true, y_pred, "mean_squared_error")

    def _compute(self, y_true, y_pred, need_gradient):
        diff = y_pred - y_true
        k = diff.shape[-1] if diff.ndim else 1
        per = np.mean(diff * diff, axis=-1) if diff.ndim > 1 else diff * diff
        grad = None
        if need_gradient:
            factor = 2.0 / k if diff.ndim > 1 else 2.0
            grad = diff * diff.dtype.type(factor)
        return np.asarray(per), grad


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample categorical cross-entropy (Keras's functional form)."""
    loss = CategoricalCrossentropy(from_logits=from_logits)
    y_pred = _pred(y_pred)
    return loss._compute(loss._targets(y_true, y_pred), y_pred, False)[0].reshape(
        y_pred.shape[:-1])


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample sparse categorical cross-entropy (Keras's functional form)."""
    loss = SparseCategoricalCrossentropy(from_logits=from_logits)
    y_pred = _pred(y_pred)
    return loss._compute(loss._targets(y_true, y_pred), y_pred, False)[0].reshape(
        y_pred.shape[:-1])


def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error over the last axis (Keras's functional form)."""
    loss = MeanSquaredError()
    y_pred = _pred(y_pred)
    return loss._compute(loss._targets(y_true, y_pred), y_pred, False)[0]


_CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                     MeanSquaredError)}
_ALIASES = {"categorical_crossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError}


def get(identifier):
    """A Loss from a name, a class name, a config dict or a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; known: "
                             f"{', '.join(sorted(_ALIASES))}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, _CLASSES, "loss")
    raise TypeError(f"loss must be a name, a config dict or a fastconv.losses.Loss, got "
                    f"{identifier!r}")


def serialize_loss(loss):
    return serialize(loss)
