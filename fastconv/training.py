"""The training loop of a model (Model.fit, Sequential's too) and the arguments it
shares with evaluate and predict.  One step of it -- forward, loss, backward, update --
is the model's (Model._train_batch, fastconv/_passes.py over the steps of
fastconv/fusion.py)."""
import math
import numbers

import numpy as np

from . import callbacks as _callbacks
from . import metrics as _metrics
from . import utils as _utils

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


def _check_epochs(epochs, initial_epoch):
    for value, label in ((epochs, "epochs"), (initial_epoch, "initial_epoch")):
        if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, numbers.Integral) or value < 0:
            raise ValueError(f"{label} must be a non-negative int, got {value!r}")


def _callback_list(callbacks, verbose):
    """Keras 3's CallbackList: the user's callbacks in their order, then a
    ProgbarLogger (when verbose and none was given), then a History unless one was
    given (that one is reused where it stands).  Returns (history, callbacks)."""
    cbs = list(callbacks or [])
    for cb in cbs:
        if not isinstance(cb, _callbacks.Callback):
            raise TypeError(f"callbacks must be fastconv.callbacks.Callback "
                            f"instances, got {cb!r}")
    if verbose and not any(isinstance(cb, _callbacks.ProgbarLogger) for cb in cbs):
        cbs.append(_callbacks.ProgbarLogger(verbose))
    given = [cb for cb in cbs if isinstance(cb, _callbacks.History)]
    if given:
        history = given[-1]  # (Keras keeps the last one it sees)
    else:
        history = _callbacks.History()
        cbs.append(history)
    return history, cbs


def prepare_batch(model, xb, yb, wb, method, where):
    """A batch of a generator or Sequence, checked as arrays are: (x, y, w)."""
    if yb is None:
        raise ValueError(f"{method}() needs targets: {where} yielded a batch without y "
                         f"(yield (x, y) or (x, y, sample_weight))")
    xb, yb = model._prepare_xy(xb, yb)
    model._check_samples(xb, method, f"a batch of {where}")
    return xb, yb, _utils.weights_for(yb, wb, None)


def _check_targets(model, y, out_shape):
    """The loss of each output accepts its targets (y: one sample)."""
    if not model._multi_output():
        model.loss._targets(y, np.zeros((1,) + tuple(out_shape[1:]), model.dtype))
        return
    for loss, yk, shape in zip(model._output_losses, y.arrays, out_shape):
        if loss is not None:
            loss._targets(yk, np.zeros((1,) + tuple(shape[1:]), model.dtype))


def _split_validation(x, y, w, validation_split):
    split = int(math.floor(x.shape[0] * (1.0 - validation_split)))
    if split == 0 or split == x.shape[0]:
        raise ValueError(f"validation_split={validation_split} leaves an empty "
                         f"training or validation set for {x.shape[0]} samples")
    val = (x[split:], y[split:], None if w is None else w[split:])
    return x[:split], y[:split], None if w is None else w[:split], val


def _validation_adapter(model, validation_data, validation_steps, batch_size):
    """The adapter of validation_data: (x_val, y_val[, w_val]) arrays, a generator
    or a Sequence."""
    data = _utils.adapter(validation_data, steps=validation_steps,
                          where="validation_data")
    if data is not None:
        return data
    if not isinstance(validation_data, (tuple, list)) or \
            len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, "
                         "y_val, val_sample_weight), a generator or a Sequence")
    x_val, y_val = model._prepare_xy(*validation_data[:2], xname="x_val", yname="y_val")
    w_val = None
    if len(validation_data) == 3:
        w_val = _utils.weights_for(y_val, validation_data[2], None, "y_val")
    return _array_validation(model, x_val, y_val, w_val, batch_size, validation_steps)


def _array_validation(model, x_val, y_val, w_val, batch_size, validation_steps):
    model._check_samples(x_val, "fit", "validation_data's x_val")
    model._check_x(x_val)
    return _utils.ArrayAdapter(x_val, y_val, w_val, batch_size, False, validation_steps)


def fit(model, x, y, batch_size, epochs, verbose, callbacks, validation_split,
        validation_data, shuffle, initial_epoch, class_weight=None, sample_weight=None,
        steps_per_epoch=None, validation_steps=None):
    """Model.fit (see there) of model."""
    model._assert_compiled("fit")
    verbose = check_verbose(verbose)
    batch_size = check_batch_size(batch_size)
    _check_epochs(epochs, initial_epoch)
    steps_per_epoch = _utils.check_steps(steps_per_epoch, "steps_per_epoch")
    validation_steps = _utils.check_steps(validation_steps, "validation_steps")
    if isinstance(validation_split, (bool, np.bool_)) or not isinstance(
            validation_split, numbers.Real) or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be a float in [0, 1), got "
                         f"{validation_split!r}")
    train = _utils.adapter(x, y, sample_weight, class_weight, batch_size, shuffle,
                           steps_per_epoch)
    val = None
    metrics = None
    samples = None
    if train is None:  # arrays
        x, y = model._prepare_xy(x, y)
        w = _utils.weights_for(y, sample_weight, class_weight)
        if validation_data is None and validation_split:
            x, y, w, (x_val, y_val, w_val) = _split_validation(x, y, w,
                                                               validation_split)
            val = (x_val, y_val, w_val)
        model._check_samples(x, "fit")
        out_shape = model._check_x(x)
        if validation_data is not None:
            val = _validation_adapter(model, validation_data, validation_steps,
                                      batch_size)
        elif val is not None:
            val = _array_validation(model, *val, batch_size, validation_steps)
        metrics = model._metric_fns(y, out_shape)
        # Check the targets against the loss once, on a small slice (clear errors).
        _check_targets(model, y[:1], out_shape)
        train = _utils.ArrayAdapter(x, y, w, batch_size, shuffle, steps_per_epoch)
        samples = x.shape[0]
    else:
        if validation_split:
            raise ValueError("validation_split is only supported for array inputs: give "
                             "validation_data with a generator or a Sequence")
        if validation_data is not None:
            val = _validation_adapter(model, validation_data, validation_steps,
                                      batch_size)
    arrays = isinstance(train, _utils.ArrayAdapter)

    history, cbs = _callback_list(callbacks, verbose)
    known_steps = train.num_batches
    params = {"epochs": epochs, "steps": known_steps, "batch_size": batch_size,
              "verbose": verbose, "samples": samples}
    for cb in cbs:
        cb.set_model(model)
        cb.set_params(params)
    model.stop_training = False
    model._initial_epoch = None  # a callback (BackupAndRestore) may set it: resume there
    for cb in cbs:
        cb.on_train_begin()
    if model._initial_epoch is not None:
        initial_epoch = model._initial_epoch
    training_logs = {}
    for epoch in range(initial_epoch, epochs):
        if train.exhausted:  # a generator read to its end cannot give another epoch
            _utils.warn_ran_out()
            break
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        loss_mean = _metrics.Mean(name="loss")
        for metric in metrics or ():
            metric.reset_state()
        logs = {}
        seen = 0
        with train.epoch(model._rng) as batches:
            for step, (xb, yb, wb) in enumerate(batches):
                if not arrays:
                    xb, yb, wb = prepare_batch(model, xb, yb, wb, "fit", "x")
                    out_shape = model._check_x(xb)
                    if metrics is None:
                        metrics = model._metric_fns(yb, out_shape)
                    if known_steps is None:  # (the count so far, for the progress bar)
                        params["steps"] = max(params["steps"] or 0, step + 1)
                for cb in cbs:
                    cb.on_train_batch_begin(step)
                if wb is None:
                    loss, y_pred = model._train_batch(model._cast(xb), yb)
                else:
                    loss, y_pred = model._train_batch(model._cast(xb), yb,
                                                      sample_weight=wb)
                nb = xb.shape[0]
                loss_mean.update_state(loss, sample_weight=nb)
                model._update_metrics(metrics, yb, y_pred, wb)
                logs = _metrics.scalar_results(metrics, {"loss": loss_mean.result()})
                batch_logs = dict(logs, size=nb)
                for cb in cbs:
                    cb.on_train_batch_end(step, batch_logs)
                seen += 1
                if model.stop_training:  # checked after every batch, as Keras 3
                    break
        if seen == 0:  # (a generator that ended exactly at an epoch's end)
            _utils.warn_ran_out()
            break
        if train.exhausted and train.num_batches is not None \
                and seen < train.num_batches:
            _utils.warn_ran_out()
            model.stop_training = True
        epoch_logs = dict(logs)
        if val is not None:
            val_logs = model._evaluate_batches(val, "validation_data")
            epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
        for cb in cbs:  # one logs dict, shared by every callback (History last)
            cb.on_epoch_end(epoch, epoch_logs)
        training_logs = epoch_logs
        if model.stop_training:
            break
    model._clear_caches()
    for cb in cbs:
        cb.on_train_end(training_logs)
    model.history = history
    return history
