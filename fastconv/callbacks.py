"""Training callbacks (Keras's hooks) and the progress printer of ``Sequential.fit``."""
import sys
import time

__all__ = ["Callback", "History", "ProgbarLogger"]


class Callback:
    """Base class; override any hook.  ``self.model`` is the model being trained.

    Setting ``self.model.stop_training = True`` ends ``fit`` after the current epoch.
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
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Records the per-epoch logs: ``history.history["loss"]`` etc., ``history.epoch``."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


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

    def on_train_batch_end(self, batch, logs=None):
        logs = dict(logs or {})
        self._seen += logs.pop("size", 0)
        if not self._interactive():
            return
        now = time.perf_counter()
        steps = self.params.get("steps")
        if now - self._last_draw < 0.1 and batch + 1 < steps:
            return
        self._last_draw = now
        done = batch + 1
        width = 20
        filled = int(width * done / steps)
        bar = "=" * max(filled - 1, 0) + (">" if filled < width else "=") + \
            "." * (width - filled)
        elapsed = now - self._start
        eta = elapsed / done * (steps - done)
        line = (f"{done:>{len(str(steps))}}/{steps} [{bar}] - ETA: "
                f"{_format_time(eta)}{_format_logs(logs)}")
        self.stream.write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        steps = self.params.get("steps")
        rate = self._seen / elapsed if elapsed > 0 else float("inf")
        line = (f"{steps}/{steps} - {_format_time(elapsed)} - "
                f"{_format_time(elapsed / max(steps, 1))}/step - "
                f"{rate:.0f} samples/s{_format_logs(logs or {})}")
        if self._interactive():
            line = "\r" + line.ljust(self._drawn)
        self.stream.write(line + "\n")
        self.stream.flush()
