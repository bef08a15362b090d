"""The data of models with several inputs or outputs (Keras's lists and dicts of
arrays), and their losses and metrics per output.

``Multi`` holds one array per input (or output) and batches like one array (its
``shape`` is (samples,), indexing slices every array), so the data adapters of
fastconv/utils.py batch it unchanged.  With several outputs, the loss is one loss for
all of them or one per output (a list, or a dict by output name), summed with
``loss_weights`` (Keras's compile); each output's loss is also logged as
``<output>_loss``, and metrics are given per output (a list of lists, or a dict), logged
as ``<output>_<metric>``, as Keras 3 does.
"""
import numpy as np

from . import losses as _losses
from . import metrics as _metrics
from ._serialization import serialize
from ._validation import as_array

__all__ = ["Multi", "gather", "output_losses", "output_metric_names",
           "output_metrics", "compile_config", "check_inputs", "compile_outputs"]


class Multi:
    """Arrays with the same number of samples, batched together."""

    __slots__ = ("arrays",)
    ndim = 1

    def __init__(self, arrays):
        self.arrays = tuple(arrays)

    @property
    def shape(self):
        return (self.arrays[0].shape[0],)

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return Multi(a[index] for a in self.arrays)

    def __array__(self, *args, **kwargs):
        raise TypeError("this model has several inputs or outputs: its data are a list "
                        "(or dict) of arrays, not one array (class_weight applies to "
                        "models of one output only)")


def gather(value, names, what):
    """The arrays of ``value`` (an array, a list / tuple, or a dict keyed by
    ``names``) in the order of ``names``, checked: one array per name, as many
    samples in each."""
    n = len(names)
    if isinstance(value, Multi):
        return list(value.arrays)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        missing = [k for k in names if k not in value]
        if unknown or missing:
            raise ValueError(f"{what} must be keyed by {names}, got keys "
                             f"{sorted(value)}")
        items = [value[k] for k in names]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if len(items) != n:
        raise ValueError(f"{what} must be {'one array' if n == 1 else f'{n} arrays'} "
                         f"(for {', '.join(repr(k) for k in names)}), got "
                         f"{len(items)}")
    arrays = [as_array(a, f"{what}[{k!r}]" if n > 1 else what)
              for k, a in zip(names, items)]
    for k, a in zip(names, arrays):
        if a.ndim < 1:
            raise ValueError(f"{what} ({k!r}) must have a batch axis, got shape "
                             f"{a.shape}")
    counts = {a.shape[0] for a in arrays}
    if len(counts) > 1:
        raise ValueError(f"the arrays of {what} must have the same number of samples, "
                         f"got shapes {[a.shape for a in arrays]}")
    return arrays


def _per_output(value, names, what, allow_single=True):
    """A compile argument per output: one value for all, a list or a dict."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{what} names unknown outputs {unknown}; the outputs "
                             f"are {names}")
        return [value.get(k) for k in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{what} must have one entry per output ({len(names)}: "
                             f"{names}), got {len(value)}")
        return list(value)
    if not allow_single and len(names) > 1:
        raise ValueError(f"for a model with several outputs, {what} must be a list "
                         f"(one entry per output) or a dict, got {value!r}")
    return [value] * len(names)


def output_losses(loss, loss_weights, names):
    """([Loss or None] per output, [weight] per output) of compile's arguments."""
    losses = [None if v is None else _losses.get(v)
              for v in _per_output(loss, names, "loss")]
    if loss_weights is None:
        weights = [1.0] * len(names)
    else:
        weights = _per_output(loss_weights, names, "loss_weights")
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or \
                    not np.isfinite(w):
                raise ValueError(f"loss_weights must be finite numbers, got "
                                 f"{loss_weights!r}")
        weights = [float(w) for w in weights]
    return losses, weights


def output_metric_names(metrics, names):
    """compile(metrics=...) of a model with several outputs: a list of metric lists,
    one per output."""
    if metrics is None:
        return [[] for _ in names]
    per = _per_output(metrics, names, "metrics", allow_single=False)
    return [_metrics.check_metrics(m) for m in per]


class OutputLoss(_metrics.Metric):
    """The mean loss of one output (logged as ``<output>_loss``)."""

    def __init__(self, loss, index, name):
        self.loss, self.index = loss, index
        self._mean = _metrics.Mean()
        super().__init__(name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y, p = y_true.arrays[self.index], y_pred[self.index]
        self._mean.update_state(self.loss(y, p, sample_weight=sample_weight),
                                sample_weight=p.shape[0])

    def result(self):
        return self._mean.result()

    def reset_state(self):
        self._mean.reset_state()


class OutputMetric(_metrics.Metric):
    """A metric of one output (logged as ``<output>_<metric>``)."""

    def __init__(self, metric, index, name):
        self.metric, self.index = metric, index
        super().__init__(name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.metric.update_state(y_true.arrays[self.index], y_pred[self.index],
                                 sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


def output_metrics(model, y, y_pred_shapes):
    """The loss trackers and metric objects of a model with several outputs for
    targets ``y`` (a Multi)."""
    names = model.output_names
    out = []
    for k, (name, loss) in enumerate(zip(names, model._output_losses)):
        if loss is not None:
            tracker = OutputLoss(loss, k, f"{name}_loss")
            tracker._fastconv_weighted = True
            out.append(tracker)
    for weighted, lists in ((False, model._metric_names),
                            (True, model._weighted_metric_names)):
        for k, (name, ids) in enumerate(zip(names, lists)):
            for metric in _metrics.compile_metrics(ids, y.arrays[k].shape,
                                                   y_pred_shapes[k]):
                label = f"{name}_{'weighted_' if weighted else ''}{metric.name}"
                wrapped = OutputMetric(metric, k, label)
                wrapped._fastconv_weighted = weighted
                out.append(wrapped)
    return out


def compile_config(model):
    """The compile arguments of a model as a saved file keeps them (None when not
    compiled): with several outputs, the loss and metrics per output."""
    if not model.compiled:
        return None
    loss = model.loss
    if isinstance(loss, list):
        loss = [None if x is None else serialize(x) for x in loss]
    elif loss is not None:
        loss = serialize(loss)
    if model._multi_output():
        metrics = [_metrics.names_for_saving(m) for m in model._metric_names]
        weighted = [_metrics.names_for_saving(m) for m in model._weighted_metric_names]
    else:
        metrics = _metrics.names_for_saving(model._metric_names)
        weighted = _metrics.names_for_saving(model._weighted_metric_names)
    out = {"optimizer": serialize(model.optimizer), "loss": loss, "metrics": metrics}
    if any(weighted):
        out["weighted_metrics"] = weighted
    if any(w != 1.0 for w in model._loss_weights):
        out["loss_weights"] = list(model._loss_weights)
    return out


def check_inputs(model, x):
    """Model._check_x: the arrays x (an array or a Multi) against the model's Input
    shapes (None matches any size), once per shape; the output shape(s)."""
    arrays = [x] if not isinstance(x, Multi) else x.arrays
    key = tuple(a.shape[1:] for a in arrays)
    if model._checked is not None and model._checked[0] == key:
        return model._checked[1]
    for t, a in zip(model._inputs, arrays):
        want = t.shape[1:]
        if len(want) != a.ndim - 1 or any(
                w is not None and w != s for w, s in zip(want, a.shape[1:])):
            raise ValueError(f"input {t.name!r} of model {model.name!r} expects arrays "
                             f"of shape {(None,) + tuple(want)}, got {a.shape}")
    shapes = [t.shape for t in model._outputs]
    out = shapes[0] if len(shapes) == 1 else shapes
    model._checked = (key, out)
    return out


def compile_outputs(model, loss, loss_weights, metrics, weighted_metrics):
    """compile()'s loss, loss_weights and metrics on model: per output (several
    outputs), or as one Loss and one metric list (one output)."""
    names = model.output_names if model.built else ["output"]
    if len(names) > 1:
        model._output_losses, model._loss_weights = output_losses(loss, loss_weights,
                                                                  names)
        model.loss = (model._output_losses if isinstance(loss, (list, tuple, dict))
                      else model._output_losses[0])
        model._metric_names = output_metric_names(metrics, names)
        model._weighted_metric_names = output_metric_names(weighted_metrics, names)
        return
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    model.loss = None if loss is None else _losses.get(loss)
    model._output_losses, model._loss_weights = [model.loss], [1.0]
    if loss_weights is not None:
        model._loss_weights = output_losses(None, loss_weights, names)[1]
    model._metric_names = _metrics.check_metrics(metrics)
    model._weighted_metric_names = _metrics.check_metrics(weighted_metrics)
