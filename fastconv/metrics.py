"""Accuracy metrics with Keras's names and its rule for resolving "accuracy".

``"accuracy"`` (or ``"acc"``) becomes, as in Keras's compile: binary accuracy when the
prediction has a last axis of 1, sparse categorical accuracy when the targets have one
axis fewer than the prediction (or a last axis of 1 against several classes), and
categorical accuracy otherwise.
"""
import numpy as np

from ._validation import as_array

__all__ = ["categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy",
           "resolve", "Mean"]


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) == argmax(y_true) (last axis), else 0.0."""
    y_true, y_pred = as_array(y_true, "y_true"), as_array(y_pred, "y_pred")
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals the integer label y_true."""
    y_true, y_pred = as_array(y_true, "y_true"), as_array(y_pred, "y_pred")
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    return (np.argmax(y_pred, axis=-1) == y_true).astype(np.float64)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals y_true, averaged over the last axis."""
    y_true, y_pred = as_array(y_true, "y_true"), as_array(y_pred, "y_pred")
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    return np.mean((y_pred > threshold) == (y_true > 0.5), axis=-1, dtype=np.float64)


_FUNCTIONS = {"categorical_accuracy": categorical_accuracy,
              "sparse_categorical_accuracy": sparse_categorical_accuracy,
              "binary_accuracy": binary_accuracy}


def resolve(identifier, y_true_shape, y_pred_shape):
    """(name shown in logs, per-sample function) for a metric identifier."""
    if not isinstance(identifier, str):
        raise TypeError(f"metrics must be names such as 'accuracy', got {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        sparse = len(y_true_shape) < len(y_pred_shape) or (
            y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
        if y_pred_shape[-1] == 1:
            return identifier, binary_accuracy
        if sparse:
            return identifier, sparse_categorical_accuracy
        return identifier, categorical_accuracy
    if key in _FUNCTIONS:
        return key, _FUNCTIONS[key]
    raise ValueError(f"unknown metric {identifier!r}; known: accuracy, acc, "
                     f"{', '.join(_FUNCTIONS)}")


def check_metrics(metrics):
    """Validate a compile(metrics=...) argument; return a list of names."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    names = list(metrics)
    for m in names:
        if not isinstance(m, str):
            raise TypeError(f"metrics must be names such as 'accuracy', got {m!r}")
        if m.lower() not in ("accuracy", "acc") and m.lower() not in _FUNCTIONS:
            raise ValueError(f"unknown metric {m!r}; known: accuracy, acc, "
                             f"{', '.join(_FUNCTIONS)}")
    return names


class Mean:
    """Weighted running mean (Keras's Mean metric: loss weighted by batch size)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.total = 0.0
        self.count = 0.0

    def update(self, value, weight=1.0):
        self.total += float(value) * weight
        self.count += weight

    def result(self):
        return self.total / self.count if self.count else 0.0
