"""Precision, Recall, AUC (Keras 3's formulas) and a confusion matrix.

Precision, Recall and AUC count true and false positives and negatives at thresholds,
as Keras's ``update_confusion_matrix_variables``: every entry of y_pred is one binary
prediction (flattened, unless AUC's ``multi_label``), positive where y_pred > threshold
(strictly); y_true is positive where it is non-zero; each entry counts with its
sample's weight.  The counts are float64 sums (Keras: float32 variables).

AUC uses Keras's default thresholds, num_thresholds - 2 evenly spaced in (0, 1) plus
-1e-7 and 1 + 1e-7, and its Riemann sums: 'interpolation' (trapezoids for ROC, Davis &
Goadrich's interpolation for PR), 'minoring', 'majoring'.

ConfusionMatrix has no Keras class; it follows ``tf.math.confusion_matrix``: rows are
true classes, columns predicted classes (argmax of y_pred, or y_pred > threshold for a
single output).
"""
import numbers

import numpy as np

from ._validation import as_array
from .metrics import Metric, same_rank

__all__ = ["Precision", "Recall", "AUC", "ConfusionMatrix"]

EPSILON = 1e-7
NEG_INF = -1e10  # Keras's threshold of a top_k precision or recall


def _thresholds(thresholds, default):
    if thresholds is None:
        return np.array([default], dtype=np.float64), False
    scalar = isinstance(thresholds, numbers.Real)
    values = [thresholds] if scalar else list(thresholds)
    if not values or any(isinstance(t, (bool, np.bool_)) or not isinstance(
            t, numbers.Real) or not 0 <= t <= 1 for t in values):
        raise ValueError(f"thresholds must be a float or a non-empty list of floats in "
                         f"[0, 1], got {thresholds!r}")
    return np.array(values, dtype=np.float64), not scalar


def _filter_top_k(x, k):
    """Keras's _filter_top_k: keep the k largest entries of each row, the others become
    -1e10 (the first of equal values wins, as top_k)."""
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return np.where(keep, x, NEG_INF)


def _prepare(y_true, y_pred, sample_weight, top_k=None, class_id=None):
    """(y_true as bool, y_pred, weights of y_pred's shape or None), Keras's shapes."""
    y_true = as_array(y_true, "y_true")
    y_pred = as_array(y_pred, "y_pred").astype(np.float64, copy=False)
    y_pred, y_true = same_rank(y_pred, y_true)
    w = None
    if sample_weight is not None:
        w = as_array(sample_weight, "sample_weight").astype(np.float64)[..., None]
        _, w = same_rank(y_true, w, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(f"with class_id, y_pred must have shape (samples, "
                             f"classes), got {y_pred.shape}")
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true of shape {y_true.shape} does not match y_pred of "
                         f"shape {y_pred.shape}")
    if w is not None:
        try:
            w = np.broadcast_to(w, y_pred.shape)
        except ValueError:
            raise ValueError(f"sample_weight of shape {np.shape(sample_weight)} does not "
                             f"match y_pred of shape {y_pred.shape}") from None
    return y_true != 0, y_pred, w


def confusion_counts(positive, scores, weights, thresholds):
    """(tp, fp, tn, fn) at each threshold of 1-D ``positive`` (bool) and ``scores``,
    each entry counted with its weight: predicted positive where score > threshold."""
    order = np.argsort(thresholds, kind="stable")
    ts = thresholds[order]
    # how many thresholds lie strictly below each score: positive at ts[j] for j < that
    below = np.searchsorted(ts, scores, side="left")
    w = np.ones(scores.shape) if weights is None else weights
    n = ts.size

    def above(mask):
        hist = np.bincount(below[mask], weights=w[mask], minlength=n + 1)
        return np.cumsum(hist[::-1])[::-1][1:]  # sum of hist[c] for c > j

    tp, fp = np.empty(n), np.empty(n)
    tp[order], fp[order] = above(positive), above(~positive)
    pos, neg = w[positive].sum(), w[~positive].sum()
    return tp, fp, neg - fp, pos - tp


def _divide(a, b):
    """a / b, 0 where b == 0 (divide_no_nan)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.zeros(np.broadcast(a, b).shape)
    np.divide(a, b, out=out, where=b != 0)
    return out


class _PrecisionRecall(Metric):
    _direction = "up"  # for callbacks monitoring it (Keras's attribute)
    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        self.init_thresholds = thresholds
        self.thresholds, self._vector = _thresholds(
            thresholds, 0.5 if top_k is None else NEG_INF)
        for value, label in ((top_k, "top_k"), (class_id, "class_id")):
            if value is not None and (isinstance(value, (bool, np.bool_)) or not
                                      isinstance(value, numbers.Integral) or value < 0
                                      or (label == "top_k" and value < 1)):
                raise ValueError(f"{label} must be None or a non-negative int (top_k "
                                 f"positive), got {value!r}")
        self.top_k, self.class_id = top_k, class_id
        super().__init__(name)

    def reset_state(self):
        n = self.thresholds.size
        self.true_positives, self.false_positives = np.zeros(n), np.zeros(n)
        self.false_negatives = np.zeros(n)

    def update_state(self, y_true, y_pred, sample_weight=None):
        positive, scores, w = _prepare(y_true, y_pred, sample_weight, self.top_k,
                                       self.class_id)
        tp, fp, _, fn = confusion_counts(positive.ravel(), scores.ravel(),
                                         None if w is None else w.ravel(),
                                         self.thresholds)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += fn

    def result(self):
        value = _divide(self.true_positives, self.true_positives + self._other())
        return value if self._vector else float(value[0])

    def get_config(self):
        return {"name": self.name, "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """tp / (tp + fp) at each threshold (0 without predicted positives)."""
    name = "precision"

    def _other(self):
        return self.false_positives


class Recall(_PrecisionRecall):
    """tp / (tp + fn) at each threshold (0 without positives)."""
    name = "recall"

    def _other(self):
        return self.false_negatives


class AUC(Metric):
    """Area under the ROC or PR curve, Keras's approximation over thresholds."""
    name = "auc"
    _direction = "up"
    _CURVES = ("ROC", "PR")
    _SUMMATIONS = ("interpolation", "minoring", "majoring")

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, thresholds=None, multi_label=False, from_logits=False):
        if thresholds is not None:
            inner = sorted(_thresholds(list(thresholds), None)[0].tolist())
            self.num_thresholds = len(inner) + 2
            self._init_from_thresholds = True
        else:
            if isinstance(num_thresholds, (bool, np.bool_)) or not isinstance(
                    num_thresholds, numbers.Integral) or num_thresholds <= 1:
                raise ValueError(f"num_thresholds must be an int > 1, got "
                                 f"{num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
            self._init_from_thresholds = False
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        curve = str(curve).upper()
        if curve not in self._CURVES:
            raise ValueError(f"curve must be one of {self._CURVES}, got {curve!r}")
        summation = str(summation_method).lower()
        if summation not in self._SUMMATIONS:
            raise ValueError(f"summation_method must be one of {self._SUMMATIONS}, got "
                             f"{summation_method!r}")
        self.curve, self.summation_method = curve, summation
        self.multi_label, self.from_logits = bool(multi_label), bool(from_logits)
        super().__init__(name)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def reset_state(self):
        self.true_positives = self.false_positives = None
        self.true_negatives = self.false_negatives = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        positive, scores, w = _prepare(y_true, y_pred, sample_weight)
        if self.from_logits:
            scores = 1.0 / (1.0 + np.exp(-scores))
        if self.multi_label:
            if scores.ndim != 2:
                raise ValueError(f"multi_label AUC needs y_pred of rank 2, got shape "
                                 f"{scores.shape}")
            cols = [confusion_counts(positive[:, j], scores[:, j],
                                     None if w is None else w[:, j], self._thresholds)
                    for j in range(scores.shape[1])]
            counts = [np.stack([c[i] for c in cols], axis=1) for i in range(4)]
        else:
            counts = confusion_counts(positive.ravel(), scores.ravel(),
                                      None if w is None else w.ravel(), self._thresholds)
        if self.true_positives is None:
            self.true_positives, self.false_positives, self.true_negatives, \
                self.false_negatives = (np.array(c, dtype=np.float64) for c in counts)
            return
        for name, c in zip(("true_positives", "false_positives", "true_negatives",
                            "false_negatives"), counts):
            getattr(self, name).__iadd__(c)

    def _interpolate_pr(self, tp, fp, fn):
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                         _divide(p[:-1], np.maximum(p[1:], 0)), 1.0)
        return _divide(slope * (dtp + intercept * np.log(ratio)),
                       np.maximum(tp[1:] + fn[1:], 0))

    def result(self):
        if self.true_positives is None:
            return 0.0
        tp, fp = self.true_positives, self.false_positives
        tn, fn = self.true_negatives, self.false_negatives
        if self.curve == "PR" and self.summation_method == "interpolation":
            terms = self._interpolate_pr(tp, fp, fn)
        else:
            recall = _divide(tp, tp + fn)
            if self.curve == "ROC":
                x, y = _divide(fp, fp + tn), recall
            else:
                x, y = recall, _divide(tp, tp + fp)
            if self.summation_method == "interpolation":
                heights = (y[:-1] + y[1:]) / 2.0
            elif self.summation_method == "minoring":
                heights = np.minimum(y[:-1], y[1:])
            else:
                heights = np.maximum(y[:-1], y[1:])
            terms = (x[:-1] - x[1:]) * heights
        if self.multi_label:
            return float(np.mean(terms.sum(axis=0)))
        return float(terms.sum())

    def get_config(self):
        config = {"name": self.name, "num_thresholds": self.num_thresholds,
                  "curve": self.curve, "summation_method": self.summation_method,
                  "multi_label": self.multi_label, "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


class ConfusionMatrix(Metric):
    """Weighted counts of (true class, predicted class): ``result()`` is a
    (num_classes, num_classes) float64 array, rows true, columns predicted.

    Predictions: argmax over the last axis, or ``y_pred > threshold`` for a single
    output (two classes).  Targets: integer labels, one-hot rows, or 0/1 for a single
    output.  ``num_classes`` None: taken from y_pred on the first update.
    """
    name = "confusion_matrix"

    def __init__(self, num_classes=None, threshold=0.5, name=None):
        if num_classes is not None and (isinstance(num_classes, (bool, np.bool_)) or not
                                        isinstance(num_classes, numbers.Integral)
                                        or num_classes < 2):
            raise ValueError(f"num_classes must be None or an int >= 2, got "
                             f"{num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.threshold = float(threshold)
        super().__init__(name)

    def reset_state(self):
        self.matrix = None if self.num_classes is None else np.zeros(
            (self.num_classes, self.num_classes))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = as_array(y_true, "y_true")
        y_pred = as_array(y_pred, "y_pred")
        if y_pred.ndim >= 2 and y_pred.shape[-1] > 1:
            k = y_pred.shape[-1]
            predicted = np.argmax(y_pred, axis=-1)
            if y_true.shape == y_pred.shape:
                y_true = np.argmax(y_true, axis=-1)
            elif y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
        else:
            k = 2
            if y_pred.ndim >= 2:
                y_pred = y_pred[..., 0]
            if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            predicted = (y_pred > self.threshold).astype(np.int64)
            y_true = (y_true > 0.5).astype(np.int64)
        labels = y_true.astype(np.int64)
        if labels.shape != predicted.shape:
            raise ValueError(f"confusion_matrix: y_true of shape {np.shape(y_true)} does "
                             f"not match y_pred of shape {y_pred.shape}")
        if self.matrix is None:
            self.matrix = np.zeros((k, k))
        n = self.matrix.shape[0]
        if max(k, labels.max(initial=0) + 1) > n or labels.min(initial=0) < 0:
            raise ValueError(f"confusion_matrix: classes must be in [0, {n}), got labels "
                             f"in [{labels.min()}, {labels.max()}] and {k} scores")
        w = None
        if sample_weight is not None:
            w = np.asarray(sample_weight, dtype=np.float64)
            if w.ndim < labels.ndim:  # one weight per sample
                w = w.reshape(w.shape + (1,) * (labels.ndim - w.ndim))
            else:
                w = w.reshape(labels.shape)
            w = np.broadcast_to(w, labels.shape).ravel()
        self.matrix += np.bincount(labels.ravel() * n + predicted.ravel(), weights=w,
                                   minlength=n * n).reshape(n, n)

    def result(self):
        if self.matrix is None:
            return np.zeros((0, 0))
        return self.matrix.copy()

    def get_config(self):
        return {"name": self.name, "num_classes": self.num_classes,
                "threshold": self.threshold}
