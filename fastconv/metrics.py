"""Metrics with Keras 3's names, formulas and API.

A metric is an object with state: ``update_state(y_true, y_pred, sample_weight=None)``
accumulates a batch, ``result()`` reads the value so far, ``reset_state()`` starts over,
``get_config()`` / ``from_config`` describe it.  fit, evaluate, train_on_batch and
test_on_batch all aggregate through these objects (and the loss through a ``Mean``).

- Mean metrics (Keras's ``Mean`` / ``MeanMetricWrapper``): a per-sample function,
  averaged over the samples (weighted by ``sample_weight``): accuracy, categorical,
  sparse categorical and binary accuracy, top-k categorical accuracy (dense and sparse).
- Confusion metrics (fastconv/confusion_metrics.py): Precision, Recall, AUC and
  ConfusionMatrix, whose result is a matrix (kept out of the scalar logs, read it from
  the metric object: ``model.metrics``).

``"accuracy"`` (or ``"acc"``) becomes, as in Keras's compile: binary accuracy when the
prediction has a last axis of 1, sparse categorical accuracy when the targets have one
axis fewer than the prediction (or a last axis of 1 against several classes), and
categorical accuracy otherwise.
"""
import abc
import numbers

import numpy as np

from ._validation import as_array

__all__ = ["categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy",
           "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
           "Metric", "Mean", "MeanMetricWrapper", "Accuracy", "CategoricalAccuracy",
           "SparseCategoricalAccuracy", "BinaryAccuracy", "TopKCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "Precision", "Recall", "AUC",
           "ConfusionMatrix", "resolve", "check_metrics", "get"]


# ------------------------------------------------------------------ per-sample functions
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


def _in_top_k(labels, scores, k):
    """Whether each label's score is among the k largest of its row (ties at the k-th
    score count as in, as TensorFlow's in_top_k and Keras's NumPy backend)."""
    scores = scores.reshape(-1, scores.shape[-1])
    labels = labels.reshape(-1).astype(np.int64)
    if k >= scores.shape[1]:
        return np.ones(labels.shape, dtype=bool)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]
    return scores[np.arange(labels.size), labels] >= kth


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the class of the one-hot y_true is among the k highest scores."""
    y_true, y_pred = as_array(y_true, "y_true"), as_array(y_pred, "y_pred")
    labels = np.argmax(y_true, axis=-1)
    return _in_top_k(labels, y_pred, k).astype(np.float64).reshape(labels.shape)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the integer label y_true is among the k highest scores."""
    y_true, y_pred = as_array(y_true, "y_true"), as_array(y_pred, "y_pred")
    return _in_top_k(y_true, y_pred, k).astype(np.float64).reshape(y_true.shape)


def _check_k(k):
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(k)


def same_rank(x1, x2, expand_rank_1=True):
    """Keras's squeeze_or_expand_to_same_rank: squeeze or add a last axis of 1 where the
    ranks differ by one."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    if x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


# ------------------------------------------------------------------ metric objects
class Metric(abc.ABC):
    """Base class (Keras's ``keras.metrics.Metric``): subclasses define update_state,
    result and reset_state."""
    name = "metric"

    def __init__(self, name=None):
        if name is not None:
            if not isinstance(name, str) or not name:
                raise TypeError(f"name must be a non-empty string, got {name!r}")
            self.name = name
        self.reset_state()

    @abc.abstractmethod
    def update_state(self, y_true, y_pred, sample_weight=None):
        """Accumulate a batch."""

    @abc.abstractmethod
    def result(self):
        """The metric over everything accumulated since the last reset."""

    @abc.abstractmethod
    def reset_state(self):
        """Forget what was accumulated."""

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


class Mean(Metric):
    """Weighted mean of values (Keras's Mean): values with more than one axis are first
    averaged per sample; ``sample_weight`` weights the samples."""
    name = "mean"

    def reset_state(self):
        self.total = 0.0
        self.count = 0

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is None:
            if values.ndim > 1:
                values = values.mean(axis=tuple(range(1, values.ndim)))
            self.total += float(np.sum(values))
            self.count += values.shape[0] if values.ndim else 1
            return
        w = np.asarray(sample_weight, dtype=np.float64)
        if values.ndim == 0 and w.ndim == 0:
            self.total += float(values) * float(w)
            self.count += float(w)
            return
        values, w = same_rank(values, w)
        if values.ndim > w.ndim:
            values = values.mean(axis=tuple(range(w.ndim, values.ndim)))
        w = np.broadcast_to(w, values.shape)
        values = values * w
        if w.ndim > 1:
            w = w.mean(axis=tuple(range(1, w.ndim)))
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(np.sum(values))
        self.count += float(np.sum(w))

    def result(self):
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The weighted mean of a per-sample function ``fn(y_true, y_pred, **kwargs)``."""

    def __init__(self, fn, name=None, **kwargs):
        self._fn, self._fn_kwargs = fn, kwargs
        super().__init__(name or getattr(fn, "__name__", None))

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


class CategoricalAccuracy(MeanMetricWrapper):
    name = "categorical_accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, name=None):
        super().__init__(categorical_accuracy, name or self.name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    name = "sparse_categorical_accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, name=None):
        super().__init__(sparse_categorical_accuracy, name or self.name)


class BinaryAccuracy(MeanMetricWrapper):
    name = "binary_accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, name=None, threshold=0.5):
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(
                threshold, numbers.Real):
            raise ValueError(f"threshold must be a float, got {threshold!r}")
        super().__init__(binary_accuracy, name or self.name, threshold=float(threshold))


class TopKCategoricalAccuracy(MeanMetricWrapper):
    name = "top_k_categorical_accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, k=5, name=None):
        super().__init__(top_k_categorical_accuracy, name or self.name, k=_check_k(k))
        self.k = self._fn_kwargs["k"]


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    name = "sparse_top_k_categorical_accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, k=5, name=None):
        super().__init__(sparse_top_k_categorical_accuracy, name or self.name,
                         k=_check_k(k))
        self.k = self._fn_kwargs["k"]


class Accuracy(MeanMetricWrapper):
    """The metric of the string "accuracy": the accuracy that suits the shapes of the
    targets and predictions (module docstring), chosen on the first update."""
    name = "accuracy"
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)

    def __init__(self, name=None, y_true_shape=None, y_pred_shape=None):
        super().__init__(None, name or self.name)
        if y_true_shape is not None and y_pred_shape is not None:
            self._fn = _accuracy_function(y_true_shape, y_pred_shape)

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._fn is None:
            self._fn = _accuracy_function(np.shape(y_true), np.shape(y_pred))
        super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name}


def _accuracy_function(y_true_shape, y_pred_shape):
    sparse = len(y_true_shape) < len(y_pred_shape) or (
        y_true_shape[-1] == 1 and y_pred_shape[-1] > 1)
    if y_pred_shape[-1] == 1:
        return binary_accuracy
    if sparse:
        return sparse_categorical_accuracy
    return categorical_accuracy


from .confusion_metrics import AUC, ConfusionMatrix, Precision, Recall  # noqa: E402

_CLASSES = {c.__name__: c for c in (
    CategoricalAccuracy, SparseCategoricalAccuracy, BinaryAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, Precision, Recall, AUC,
    ConfusionMatrix)}
_NAMES = {"categorical_accuracy": CategoricalAccuracy,
          "sparse_categorical_accuracy": SparseCategoricalAccuracy,
          "binary_accuracy": BinaryAccuracy,
          "top_k_categorical_accuracy": TopKCategoricalAccuracy,
          "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
          "precision": Precision, "recall": Recall, "auc": AUC,
          "confusion_matrix": ConfusionMatrix}


def _unknown(identifier):
    return ValueError(f"unknown metric {identifier!r}; known: accuracy, acc, "
                      f"{', '.join(_NAMES)}")


def resolve(identifier, y_true_shape, y_pred_shape):
    """A new metric object for a name (as compile(metrics=[...]) takes it); a Metric
    object comes back as it is."""
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise TypeError(f"metrics must be names such as 'accuracy' or "
                        f"fastconv.metrics.Metric objects, got {identifier!r}")
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        return Accuracy(identifier, y_true_shape, y_pred_shape)
    if key in _NAMES:
        return _NAMES[key]()
    raise _unknown(identifier)


def get(identifier):
    """A metric from a name ("accuracy" picks its function on the first update), a
    class name, a config dict or a Metric."""
    if isinstance(identifier, dict):
        from ._serialization import deserialize
        return deserialize(identifier, _CLASSES, "metric")
    if isinstance(identifier, str) and identifier in _CLASSES:
        return _CLASSES[identifier]()
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return Accuracy(identifier)
    return resolve(identifier, None, None)


def check_metrics(metrics):
    """Validate a compile(metrics=...) argument; return a list of names and Metric
    objects."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    names = list(metrics)
    for m in names:
        if isinstance(m, Metric):
            continue
        if not isinstance(m, str):
            raise TypeError(f"metrics must be names such as 'accuracy' or "
                            f"fastconv.metrics.Metric objects, got {m!r}")
        if m.lower() not in ("accuracy", "acc") and m.lower() not in _NAMES:
            raise _unknown(m)
    return names


def names_for_saving(identifiers):
    """The compile(metrics=...) list as names (the saved format holds names only): a
    Metric object is saved as its class's name when it has that name's defaults."""
    out = []
    for m in identifiers:
        if isinstance(m, Metric):
            key = next((k for k, cls in _NAMES.items() if type(m) is cls), None)
            config = {k: v for k, v in m.get_config().items() if k != "name"}
            default = None if key is None else {
                k: v for k, v in _NAMES[key]().get_config().items() if k != "name"}
            if config != default:
                raise ValueError(f"cannot save metric {m!r}: a saved model keeps metric "
                                 f"names only ({', '.join(_NAMES)} with their defaults)")
            m = key
        out.append(m)
    return out


def compile_metrics(identifiers, y_true_shape, y_pred_shape):
    """The metric objects of compile(metrics=...) for targets and predictions of these
    shapes, with unique names (a repeated name gets _1, _2, ... as in Keras)."""
    out, seen = [], set()
    for identifier in identifiers:
        metric = resolve(identifier, y_true_shape, y_pred_shape)
        base, i = metric.name, 0
        while metric.name in seen:
            i += 1
            metric.name = f"{base}_{i}"
        seen.add(metric.name)
        out.append(metric)
    return out


def scalar_results(metrics, logs):
    """Add each metric's result to ``logs`` under its name, scalars only (a confusion
    matrix or per-threshold precision stays in its metric object)."""
    for metric in metrics:
        value = metric.result()
        if np.ndim(value) == 0:
            logs[metric.name] = float(value)
    return logs
