"""The training loop of a model (Sequential.fit) and the arguments it shares with
evaluate and predict.  One step of it -- forward, loss, backward, update -- is the
model's (Sequential._train_batch, over the steps of fastconv/fusion.py)."""
import math
import numbers

import numpy as np

from . import callbacks as _callbacks
from . import metrics as _metrics

__all__ = ["fit", "check_verbose", "check_batch_size"]


def check_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, bool):
        return int(verbose)
    raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


def check_batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(
            batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def fit(model, x, y, batch_size, epochs, verbose, callbacks, validation_split,
        validation_data, shuffle, initial_epoch):
    """Sequential.fit (see there) of model."""
    model._assert_compiled("fit")
    verbose = check_verbose(verbose)
    batch_size = check_batch_size(batch_size)
    for value, label in ((epochs, "epochs"), (initial_epoch, "initial_epoch")):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, numbers.Integral) or value < 0:
            raise ValueError(f"{label} must be a non-negative int, got {value!r}")
    x, y = model._prepare_xy(x, y)
    if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
            validation_split, numbers.Real) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be a float in [0, 1), got "
                         f"{validation_split!r}")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val)")
        x_val, y_val = model._prepare_xy(*validation_data, xname="x_val", yname="y_val")
        model._check_samples(x_val, "fit", "validation_data's x_val")
    elif validation_split:
        split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
        if split == 0 or split == x.shape[0]:
            raise ValueError(f"validation_split={validation_split} leaves an empty "
                             f"training or validation set for {x.shape[0]} samples")
        x, x_val = x[:split], x[split:]
        y, y_val = y[:split], y[split:]
    else:
        x_val = y_val = None
    model._check_samples(x, "fit")
    out_shape = model._check_shapes(x.shape)
    if x_val is not None:
        model._check_shapes(x_val.shape)
    metrics = model._metric_fns(y, out_shape)
    # Check the targets against the loss once, on a small slice (clear errors).
    model.loss._targets(y[:1], np.zeros((1,) + tuple(out_shape[1:]), model.dtype))

    n = x.shape[0]
    steps = -(-n // batch_size)
    history = _callbacks.History()
    cbs = [history] + list(callbacks or [])
    for cb in cbs:
        if not isinstance(cb, _callbacks.Callback):
            raise TypeError(f"callbacks must be fastconv.callbacks.Callback "
                            f"instances, got {cb!r}")
    if verbose:
        cbs.append(_callbacks.ProgbarLogger(verbose))
    params = {"epochs": epochs, "steps": steps, "batch_size": batch_size,
              "verbose": verbose, "samples": n}
    for cb in cbs:
        cb.set_model(model)
        cb.set_params(params)
    model.stop_training = False
    model._initial_epoch = None  # a callback (BackupAndRestore) may set it: resume there
    for cb in cbs:
        cb.on_train_begin()
    if model._initial_epoch is not None:
        initial_epoch = model._initial_epoch
    logs = {}
    for epoch in range(initial_epoch, epochs):
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        order = model._rng.permutation(n) if shuffle else None
        loss_mean = _metrics.Mean(name="loss")
        for metric in metrics:
            metric.reset_state()
        for step in range(steps):
            for cb in cbs:
                cb.on_train_batch_begin(step)
            lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
            if order is None:
                xb, yb = x[lo:hi], y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = x[idx], y[idx]
            loss, y_pred = model._train_batch(model._cast(xb), yb)
            nb = hi - lo
            loss_mean.update_state(loss, sample_weight=nb)
            for metric in metrics:
                metric.update_state(yb, y_pred)
            logs = _metrics.scalar_results(metrics, {"loss": loss_mean.result()})
            batch_logs = dict(logs, size=nb)
            for cb in cbs:
                cb.on_train_batch_end(step, batch_logs)
        if x_val is not None:
            val = model._evaluate_arrays(x_val, y_val, batch_size,
                                         model._check_shapes(x_val.shape))
            logs.update({f"val_{k}": v for k, v in val.items()})
        for cb in cbs:
            cb.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    model._clear_caches()
    for cb in cbs:
        cb.on_train_end(dict(logs))
    model.history = history
    return history
