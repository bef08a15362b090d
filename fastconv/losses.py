"""Losses with Keras's formulas, reductions and names, each with its gradient.

- ``categorical_crossentropy`` (one-hot or soft targets, shape of the prediction),
- ``sparse_categorical_crossentropy`` (integer labels, shape of the prediction without
  its last axis, or with a last axis of 1),
- ``binary_crossentropy`` (elementwise, mean over the last axis; probabilities or logits),
- ``mean_squared_error``, ``mean_absolute_error``, ``huber`` (mean over the last axis).

Every loss is called as ``loss(y_true, y_pred, sample_weight=None)``, Keras 3's
``Loss.__call__``: the per-sample losses are multiplied by ``sample_weight`` (one weight
per sample, or per entry of the per-sample loss) and reduced.  Reduction
``"sum_over_batch_size"`` (Keras's default) divides the weighted sum by the number of
per-sample losses (not by the sum of the weights); ``"sum"`` adds them.  Probabilities
are clipped to [1e-7, 1 - 1e-7] as Keras does; the gradient of a clipped entry is zero,
as in TensorFlow.

``label_smoothing`` follows Keras: categorical targets become y * (1 - ls) + ls / K,
binary targets y * (1 - ls) + 0.5 * ls.  Keras's SparseCategoricalCrossentropy has no
label smoothing; here it smooths the one-hot targets of the labels as the categorical
loss does (so sparse and categorical agree on normalised probabilities).

Binary cross-entropy from logits is computed stably, max(z, 0) - z * y +
log(1 + exp(-|z|)), as Keras 3's TensorFlow backend does (its NumPy backend instead
clips sigmoid(z), which differs only for |z| > ~16).

Cross-entropy on probabilities that come out of a softmax is computed by the model from
the softmax's logits (the fused path, see ``from_logits_value_and_gradient``): it is
stable for any logit and its gradient is (p - y) / N, which is what Keras 3 computes
too (its TensorFlow backend recovers the logits of a softmax output).  A sigmoid output
trained with binary cross-entropy is fused the same way (gradient (sigmoid(z) - y) / size).
Which activation a loss fuses with: ``Loss.fuses_with``.
"""
import numbers

import numpy as np

from . import activations as _activations
from ._serialization import deserialize, serialize
from ._validation import as_array

__all__ = ["Loss", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "Huber",
           "categorical_crossentropy", "sparse_categorical_crossentropy",
           "binary_crossentropy", "mean_squared_error", "mean_absolute_error", "huber",
           "get", "EPSILON"]

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


def _check_fraction(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")
    return float(value)


def _sample_weight(sample_weight, per_shape):
    """``sample_weight`` as an array of the per-sample losses' shape (Keras's
    squeeze_or_expand_to_same_rank, then broadcast from the batch axis on)."""
    w = as_array(sample_weight, "sample_weight").astype(np.float64, copy=False)
    if w.ndim == len(per_shape) + 1 and w.shape[-1] == 1:
        w = w.reshape(w.shape[:-1])
    if w.ndim < len(per_shape):
        w = w.reshape(w.shape + (1,) * (len(per_shape) - w.ndim))
    try:
        return np.broadcast_to(w, per_shape)
    except ValueError:
        raise ValueError(f"sample_weight of shape {np.shape(sample_weight)} does not "
                         f"match the per-sample losses of shape {per_shape}") from None


class Loss:
    """Base class: ``loss(y_true, y_pred, sample_weight=None)`` -> float;
    ``value_and_gradient``."""
    name = "loss"

    def __init__(self, reduction="sum_over_batch_size", name=None):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        if name is not None:
            self.name = name

    def _scale(self, count):
        return 1.0 / max(count, 1) if self.reduction == "sum_over_batch_size" else 1.0

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.value_and_gradient(y_true, y_pred, need_gradient=False,
                                       sample_weight=sample_weight)[0]

    def fuses_with(self, activation):
        """Whether a model whose output layer has ``activation`` computes this loss
        from the layer's linear output (``from_logits_value_and_gradient``)."""
        return False

    def per_sample(self, y_true, y_pred):
        """The unreduced losses, shape y_pred.shape[:-1] (Keras's functional form)."""
        y_pred = _pred(y_pred)
        per = self._compute(self._targets(y_true, y_pred), y_pred, False)[0]
        return per.reshape(self._per_shape(y_pred))

    @staticmethod
    def _per_shape(y_pred):
        return y_pred.shape[:-1] if y_pred.ndim > 1 else y_pred.shape

    def value_and_gradient(self, y_true, y_pred, need_gradient=True, sample_weight=None):
        """(reduced loss as a float, d loss / d y_pred or None)."""
        y_pred = _pred(y_pred)
        per_sample, grad = self._compute(self._targets(y_true, y_pred), y_pred,
                                         need_gradient)
        return self._reduce(per_sample, grad, y_pred, sample_weight)

    def _reduce(self, per_sample, grad, y_pred, sample_weight):
        scale = self._scale(per_sample.size)
        if sample_weight is None:
            value = float(per_sample.sum(dtype=np.float64) * scale)
            if grad is not None:
                grad *= grad.dtype.type(scale)
            return value, grad
        shape = self._per_shape(y_pred)
        w = _sample_weight(sample_weight, shape)
        value = float((per_sample.reshape(shape) * w).sum(dtype=np.float64) * scale)
        if grad is not None:
            factor = (w * scale).astype(grad.dtype)
            grad *= factor[..., None] if grad.ndim > len(shape) else factor
        return value, grad

    def get_config(self):
        return {"reduction": self.reduction, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class _CrossentropyBase(Loss):
    #: the output activation whose logits this loss takes (the fused path)
    _fused_activation = "softmax"

    def __init__(self, from_logits=False, label_smoothing=0.0,
                 reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_fraction(label_smoothing, "label_smoothing")

    def get_config(self):
        config = super().get_config()
        config["from_logits"] = self.from_logits
        config["label_smoothing"] = self.label_smoothing
        return config

    def fuses_with(self, activation):
        return not self.from_logits and activation == self._fused_activation

    def _smooth(self, y_true, k):
        """The targets with label smoothing applied (unchanged without it)."""
        return y_true

    @staticmethod
    def _per_shape(y_pred):
        return y_pred.shape[:-1]  # one loss per row of class scores

    def _compute(self, y_true, y_pred, need_gradient):
        y_true = self._smooth(y_true, y_pred.shape[-1])
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

    def from_logits_value_and_gradient(self, y_true, logits, need_gradient=True,
                                       sample_weight=None):
        """Loss and d loss / d logits of softmax(logits) against y_true (fused, stable).

        Returns (loss, probs, grad_logits); probs = softmax(logits); grad_logits is None
        without ``need_gradient``.  Every path of a model with a softmax output and this
        loss (fit, evaluate, validation, test_on_batch) computes its loss here, so they
        agree on every prediction, saturated ones included.  Label smoothing applies to
        the targets first.
        """
        targets = self._smooth(self._targets(y_true, logits), logits.shape[-1])
        if logits.ndim == 2 and sample_weight is None:
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
        value, grad = self._reduce(per, grad, logits, sample_weight)
        return value, probs, grad


class CategoricalCrossentropy(_CrossentropyBase):
    """-sum(y_true * log(clip(y_pred / sum(y_pred))), axis=-1), Keras's formula."""
    name = "categorical_crossentropy"

    def _targets(self, y_true, y_pred):
        return _dense_targets(y_true, y_pred, "categorical_crossentropy")

    def _smooth(self, y_true, k):
        ls = self.label_smoothing
        if not ls:
            return y_true
        return y_true * y_true.dtype.type(1.0 - ls) + y_true.dtype.type(ls / k)

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
    clip, log, then a softmax cross-entropy of the log-probabilities).  With
    ``label_smoothing`` (not in Keras) the labels become smoothed one-hot rows."""
    name = "sparse_categorical_crossentropy"

    def _targets(self, y_true, y_pred):
        return _sparse_targets(y_true, y_pred)

    def _smooth(self, y_true, k):
        ls = self.label_smoothing
        if not ls or y_true.dtype.kind == "f":
            return y_true
        dense = np.full(y_true.shape + (k,), ls / k)
        np.put_along_axis(dense, y_true[..., None], 1.0 - ls + ls / k, axis=-1)
        return dense

    @staticmethod
    def _flat_targets(y_true, k):
        return y_true.reshape(-1) if y_true.dtype.kind == "i" else y_true.reshape(-1, k)

    def _probs(self, y_true, y_pred, need_gradient):
        k = y_pred.shape[-1]
        p = y_pred.reshape(-1, k)
        pc = np.clip(p, EPSILON, 1.0 - EPSILON)
        clipped = (p < EPSILON) | (p > 1.0 - EPSILON)
        if y_true.dtype.kind == "f":  # smoothed targets
            return self._soft_probs(y_true.reshape(-1, k).astype(p.dtype), p, pc,
                                    clipped, need_gradient, y_pred)
        t = y_true.reshape(-1)
        total = pc.sum(axis=1)
        rows = np.arange(t.size)
        per = -np.log(pc[rows, t] / total)
        grad = None
        if need_gradient:
            # d/d log(pc) of the softmax cross-entropy: pc / sum(pc) - onehot
            g = pc / total[:, None]
            g[rows, t] -= 1
            g /= pc
            g[clipped] = 0
            grad = g.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        return per, grad

    @staticmethod
    def _soft_probs(t, p, pc, clipped, need_gradient, y_pred):
        # -sum_k t_k * log(pc_k / sum(pc)): the softmax cross-entropy of log(pc)
        total = pc.sum(axis=1, keepdims=True)
        per = -(t * (np.log(pc) - np.log(total))).sum(axis=1)
        grad = None
        if need_gradient:
            g = t.sum(axis=1, keepdims=True) / total - t / pc
            g[clipped] = 0
            grad = g.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        return per, grad


class BinaryCrossentropy(_CrossentropyBase):
    """mean(-(y * log(p) + (1 - y) * log(1 - p)), axis=-1) with p clipped to
    [1e-7, 1 - 1e-7] (Keras's formula), or from logits (stable, as TensorFlow)."""
    name = "binary_crossentropy"
    _fused_activation = "sigmoid"
    _per_shape = staticmethod(Loss._per_shape)

    def _targets(self, y_true, y_pred):
        return _dense_targets(y_true, y_pred, "binary_crossentropy")

    def _smooth(self, y_true, k):
        ls = self.label_smoothing
        if not ls:
            return y_true
        return y_true * y_true.dtype.type(1.0 - ls) + y_true.dtype.type(0.5 * ls)

    @staticmethod
    def _mean_last(elementwise, grad, y_pred):
        if y_pred.ndim > 1:
            k = y_pred.shape[-1]
            per = elementwise.mean(axis=-1, dtype=np.float64)
            if grad is not None:
                grad /= grad.dtype.type(k)
            return per, grad
        return elementwise, grad

    def _probs(self, y_true, y_pred, need_gradient):
        pc = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        e = -(y_true * np.log(pc) + (1.0 - y_true) * np.log(1.0 - pc))
        grad = None
        if need_gradient:
            grad = (1.0 - y_true) / (1.0 - pc) - y_true / pc
            grad[(y_pred < EPSILON) | (y_pred > 1.0 - EPSILON)] = 0
            grad = grad.astype(y_pred.dtype, copy=False)
        return self._mean_last(e, grad, y_pred)

    def _logits(self, y_true, z, need_gradient):
        e = np.maximum(z, 0) - z * y_true + np.log1p(np.exp(-np.abs(z)))
        grad = None
        if need_gradient:
            grad = _activations.sigmoid(np.ascontiguousarray(z)) - y_true
            grad = grad.astype(z.dtype, copy=False)
        return self._mean_last(e, grad, z)

    def from_logits_value_and_gradient(self, y_true, logits, need_gradient=True,
                                       sample_weight=None):
        """Loss and d loss / d logits of sigmoid(logits) against y_true (fused, stable):
        (loss, probs, grad_logits) as the categorical losses' fused path."""
        targets = self._smooth(self._targets(y_true, logits), logits.shape[-1])
        per, grad = self._logits(targets, logits, need_gradient)
        probs = _activations.sigmoid(np.ascontiguousarray(logits))
        value, grad = self._reduce(per, grad, logits, sample_weight)
        return value, probs, grad


class _Elementwise(Loss):
    """Mean over the last axis of f(y_pred - y_true) (1-D predictions: per entry)."""

    def _targets(self, y_true, y_pred):
        return _dense_targets(y_true, y_pred, self.name)

    def _compute(self, y_true, y_pred, need_gradient):
        diff = y_pred - y_true
        value, dvalue = self._elementwise(diff, need_gradient)
        if diff.ndim > 1:
            k = diff.shape[-1]
            per = np.mean(value, axis=-1)
            if dvalue is not None:
                dvalue = dvalue * dvalue.dtype.type(1.0 / k)
            return per, dvalue
        return value, dvalue


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


class MeanAbsoluteError(_Elementwise):
    """mean(|y_pred - y_true|, axis=-1); the gradient at 0 is 0 (sign(0))."""
    name = "mean_absolute_error"

    @staticmethod
    def _elementwise(diff, need_gradient):
        return np.abs(diff), (np.sign(diff) if need_gradient else None)


class Huber(_Elementwise):
    """mean(where(|e| <= delta, e**2 / 2, delta * |e| - delta**2 / 2), axis=-1) with
    e = y_pred - y_true (Keras's huber)."""
    name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None):
        super().__init__(reduction, name)
        if isinstance(delta, (bool, np.bool_)) or not isinstance(delta, numbers.Real) \
                or not delta > 0:
            raise ValueError(f"delta must be a positive float, got {delta!r}")
        self.delta = float(delta)

    def get_config(self):
        config = super().get_config()
        config["delta"] = self.delta
        return config

    def _elementwise(self, diff, need_gradient):
        d = diff.dtype.type(self.delta)
        a = np.abs(diff)
        inner = a <= d
        value = np.where(inner, diff.dtype.type(0.5) * diff * diff,
                         d * a - diff.dtype.type(0.5) * d * d)
        grad = np.where(inner, diff, d * np.sign(diff)) if need_gradient else None
        return value, grad


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample categorical cross-entropy (Keras's functional form)."""
    return CategoricalCrossentropy(from_logits, label_smoothing).per_sample(y_true,
                                                                            y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False,
                                    label_smoothing=0.0):
    """Per-sample sparse categorical cross-entropy (Keras's functional form)."""
    return SparseCategoricalCrossentropy(from_logits, label_smoothing).per_sample(
        y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample binary cross-entropy, the mean over the last axis."""
    return BinaryCrossentropy(from_logits, label_smoothing).per_sample(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """Per-sample mean squared error over the last axis (Keras's functional form)."""
    loss = MeanSquaredError()
    y_pred = _pred(y_pred)
    return loss._compute(loss._targets(y_true, y_pred), y_pred, False)[0]


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean absolute error over the last axis."""
    return MeanAbsoluteError().per_sample(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    """Per-sample Huber loss, the mean over the last axis."""
    return Huber(delta).per_sample(y_true, y_pred)


_CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy,
                                     BinaryCrossentropy, MeanSquaredError,
                                     MeanAbsoluteError, Huber)}
_ALIASES = {"categorical_crossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "binary_crossentropy": BinaryCrossentropy,
            "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
            "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
            "huber": Huber, "huber_loss": Huber}


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
