"""Training callbacks with Keras 3's arguments and decisions, and the progress printer
of ``Sequential.fit``.

This module: the base class, History, ProgbarLogger, the monitoring callbacks
(EarlyStopping, ReduceLROnPlateau) and LearningRateScheduler, CSVLogger,
TerminateOnNaN.  The callbacks that write files of the model (ModelCheckpoint,
BackupAndRestore) are in fastconv/_checkpoint_callbacks.py and exported from here.
"""
import collections
import csv
import os
import sys
import time
import warnings

import numpy as np

__all__ = ["Callback", "History", "ProgbarLogger", "EarlyStopping", "ReduceLROnPlateau",
           "LearningRateScheduler", "CSVLogger", "TerminateOnNaN", "ModelCheckpoint",
           "BackupAndRestore"]


class Callback:
    """Base class; override any hook.  ``self.model`` is the model being trained.

    Setting ``self.model.stop_training = True`` ends ``fit`` after the current batch
    (the epoch then ends as usual: validation and ``on_epoch_end``), as in Keras 3.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)  # Keras: the older name, still called

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Records the per-epoch logs: ``history.history["loss"]`` etc., ``history.epoch``.

    As Keras's: ``epoch`` restarts with each fit, ``history`` keeps growing when the
    same instance is used again, and ``model.history`` is set at each epoch end.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


def _format_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _format_logs(logs):
    return "".join(f" - {k}: {v:.4f}" for k, v in logs.items())


class ProgbarLogger(Callback):
    """Keras-like progress: ``Epoch 3/10`` then one line per epoch::

        469/469 - 4s - 9ms/step - 14112 samples/s - loss: 0.2995 - accuracy: 0.9122

    With verbose=1 on a terminal, a bar with the running loss is redrawn during the
    epoch (at most 10 times a second); elsewhere (files, CI logs, verbose=2) only the
    final line is written.
    """

    def __init__(self, verbose=1, stream=None):
        super().__init__()
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout

    def _interactive(self):
        isatty = getattr(self.stream, "isatty", None)
        return self.verbose == 1 and bool(isatty and isatty())

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs")
        self.stream.write(f"Epoch {epoch + 1}/{epochs}\n")
        self.stream.flush()
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._drawn = 0
        self._seen = 0
        self._batches = 0

    def on_train_batch_end(self, batch, logs=None):
        logs = dict(logs or {})
        self._seen += logs.pop("size", 0)
        self._batches = batch + 1
        if not self._interactive():
            return
        now = time.perf_counter()
        steps = self.params.get("steps")  # (None: a generator of unknown length)
        if now - self._last_draw < 0.1 and (steps is None or batch + 1 < steps):
            return
        self._last_draw = now
        done = batch + 1
        elapsed = now - self._start
        if steps is None:
            line = f"{done}/Unknown - {_format_time(elapsed)}{_format_logs(logs)}"
        else:
            width = 20
            filled = int(width * done / steps)
            bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + \
                "." * (width - filled)
            eta = elapsed / done * (steps - done)
            line = (f"{done:>{len(str(steps))}}/{steps} [{bar}] - ETA: "
                    f"{_format_time(eta)}{_format_logs(logs)}")
        self.stream.write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        steps = self.params.get("steps") or self._batches
        rate = self._seen / elapsed if elapsed > 0 else float("inf")
        line = (f"{steps}/{steps} - {_format_time(elapsed)} - "
                f"{_format_time(elapsed / max(steps, 1))}/step - "
                f"{rate:.0f} samples/s{_format_logs(logs or {})}")
        if self._interactive():
            line = "\r" + line.ljust(self._drawn)
        self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------- helpers
def _print_msg(message):
    """Keras's io_utils.print_msg: one line to stdout, flushed."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _set_learning_rate(optimizer, value):
    """Set a float learning rate; as Keras, refuse to replace a schedule."""
    from .optimizers import LearningRateSchedule

    if isinstance(getattr(optimizer, "_learning_rate", None), LearningRateSchedule):
        raise TypeError("This optimizer was created with a `LearningRateSchedule` object "
                        "as its `learning_rate` constructor argument, hence its learning "
                        "rate is not settable. If you need the learning rate to be "
                        "settable, you should instantiate the optimizer with a float "
                        "`learning_rate` argument.")
    optimizer.learning_rate = value


def _check_int(value, name, low=0):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


# Directions of the metric names fastconv logs or may log (Keras's metrics'
# ``_direction``): mode='auto' resolves a compiled metric through this table.
_UP = {"accuracy", "acc", "binary_accuracy", "categorical_accuracy",
       "sparse_categorical_accuracy", "top_k_categorical_accuracy",
       "sparse_top_k_categorical_accuracy", "auc", "precision", "recall",
       "f1_score", "fbeta_score", "r2_score", "cosine_similarity", "iou", "mean_iou"}
_DOWN = {"mean_squared_error", "mse", "mean_absolute_error", "mae",
         "mean_absolute_percentage_error", "mape", "mean_squared_logarithmic_error",
         "msle", "root_mean_squared_error", "binary_crossentropy",
         "categorical_crossentropy", "sparse_categorical_crossentropy",
         "binary_focal_crossentropy", "categorical_focal_crossentropy", "hinge",
         "squared_hinge", "categorical_hinge", "kl_divergence", "kld", "poisson",
         "log_cosh_error", "logcosh", "huber"}


def _metric_direction(model, name):
    """'up', 'down' or None for the compiled metric logged as ``name``."""
    for m in getattr(model, "_metric_names", None) or []:
        mname = m if isinstance(m, str) else getattr(m, "name", None)
        if mname != name:
            continue
        direction = getattr(m, "_direction", None)
        if direction in ("up", "down"):
            return direction
        if name.lower() in _UP:
            return "up"
        if name.lower() in _DOWN:
            return "down"
    return None


class MonitorCallback(Callback):
    """Keras's base of the callbacks that watch one logged quantity.

    ``mode='auto'`` minimises ``loss``/``val_loss`` and, for a compiled metric, follows
    its direction (accuracies up, errors down); otherwise it raises ValueError, as
    Keras does, asking for mode='min' or 'max'.  An improvement is
    ``current - min_delta > best`` (max) or ``current + min_delta < best`` (min),
    min_delta taken as its absolute value.
    """

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback "
                          "to auto mode.", stacklevel=2)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            name = self.monitor.removeprefix("val_")
            if name == "loss":
                self.monitor_op = np.less
            direction = _metric_direction(self.model, name)
            if direction is not None:
                self.monitor_op = np.greater if direction == "up" else np.less
            if self.monitor_op is None:
                raise ValueError(
                    f"{type(self).__name__} callback received monitor={self.monitor}, "
                    "but fastconv isn't able to automatically determine whether that "
                    "metric should be maximized or minimized. Pass `mode='max'` in "
                    "order to monitor based on the highest metric value, or pass "
                    "`mode='min'` in order to use the lowest value.")
        if self.monitor_op is np.less:
            self.min_delta *= -1

    def _is_improvement(self, monitor_value, reference_value):
        if reference_value is None:
            return True
        return bool(self.monitor_op(monitor_value - self.min_delta, reference_value))


# --------------------------------------------------------------------------- monitors
class EarlyStopping(MonitorCallback):
    """Stop training when ``monitor`` has stopped improving (Keras's EarlyStopping).

    ``patience`` epochs without improvement (by more than ``min_delta``) stop the fit;
    ``baseline``: the wait only restarts on epochs that also beat it;
    ``restore_best_weights``: at the end, the weights of the best epoch come back
    (even when no epoch beat the baseline); ``start_from_epoch``: epochs before it are
    not watched.  ``stopped_epoch`` and ``best_epoch`` are 0-based, as in Keras.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0,
                 mode="auto", baseline=None, restore_best_weights=False,
                 start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = _check_int(patience, "patience")
        self.verbose = verbose
        self.baseline = baseline
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = restore_best_weights
        self.best_weights = None
        self.start_from_epoch = _check_int(start_from_epoch, "start_from_epoch")

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print_msg(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _print_msg("Restoring model weights from the end of the best epoch: "
                           f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which "
                          f"is not available. Available metrics are: "
                          f"{','.join(list(logs.keys()))}", stacklevel=2)
        return value


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without
    improvement of ``monitor`` (Keras's ReduceLROnPlateau), never below ``min_lr``;
    ``cooldown`` epochs after a reduction, waiting does not count.

    The rate is reduced only while it is above ``min_lr`` compared in float32 (Keras
    keeps rates as float32, so a rate already at ``min_lr`` is not "reduced" again).
    An optimizer built on a schedule raises TypeError, as in Keras.  Adds
    ``learning_rate`` to the epoch's logs.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0,
                 mode="auto", min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        self.factor = factor
        self.min_lr = min_lr
        self.patience = _check_int(patience, "patience")
        self.verbose = verbose
        self.cooldown = _check_int(cooldown, "cooldown")
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _reduce_lr(self, optimizer, epoch):
        old_lr = float(optimizer.learning_rate)
        if np.float32(old_lr) > np.float32(self.min_lr):
            new_lr = max(old_lr * self.factor, self.min_lr)
            _set_learning_rate(optimizer, new_lr)
            if self.verbose > 0:
                _print_msg(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                           f"rate to {new_lr}.")
            return True
        return False

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn("Learning rate reduction is conditioned on metric "
                          f"`{self.monitor}` which is not available. Available metrics "
                          f"are: {','.join(list(logs.keys()))}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                if self._reduce_lr(self.model.optimizer, epoch):
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0


class LearningRateScheduler(Callback):
    """At each epoch begin, set the learning rate to ``schedule(epoch, lr)`` (or
    ``schedule(epoch)`` when the function takes one argument), epoch 0-based
    (Keras's LearningRateScheduler).  The result must be a float; an optimizer built
    on a schedule raises TypeError.  Adds ``learning_rate`` to the epoch's logs.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule must be a function (epoch, lr) -> lr, got "
                            f"{schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        try:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # Keras's old API: schedule(epoch)
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the `schedule` function should be a float. "
                             f"Got: {lr}")
        _set_learning_rate(optimizer, float(lr))
        if self.verbose > 0:
            _print_msg(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning "
                       f"rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


# --------------------------------------------------------------------------- logging
class CSVLogger(Callback):
    """Stream the epoch logs to a CSV file (Keras's CSVLogger): a header ``epoch`` then
    the log keys sorted (with ``val_`` twins added when the first epoch has none),
    one row per epoch (0-based), ``NA`` for a missing value.  ``append=True`` continues
    an existing file (no second header)."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = str(filename) if not isinstance(filename, str) else filename
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, "r", newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = None
        self.keys = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}

        def handle_value(k):
            is_zero_dim_ndarray = isinstance(k, np.ndarray) and k.ndim == 0
            if isinstance(k, str):
                return k
            if isinstance(k, collections.abc.Iterable) and not is_zero_dim_ndarray:
                return f'"[{", ".join(map(str, k))}]"'
            return k

        if self.keys is None:
            self.keys = sorted(logs.keys())
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])
        if not self.writer:
            class CustomDialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file,
                                         fieldnames=["epoch"] + (self.keys or []),
                                         dialect=CustomDialect)
            if self.append_header:
                self.writer.writeheader()
        row = collections.OrderedDict({"epoch": epoch})
        row.update((key, handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite (Keras's TerminateOnNaN):
    prints ``Batch N: Invalid loss, terminating training`` and sets
    ``model.stop_training``, or with ``raise_error=True`` raises RuntimeError."""

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (np.isnan(loss) or np.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. "
                                   f"Loss value: {loss}. Terminating training "
                                   f"immediately.")
            _print_msg(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


from ._checkpoint_callbacks import BackupAndRestore, ModelCheckpoint  # noqa: E402
