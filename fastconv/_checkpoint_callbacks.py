"""The callbacks that write the model to files: ModelCheckpoint and BackupAndRestore
(Keras 3's arguments and decisions; fastconv's own .npz files, fastconv/saving.py).
Exported from fastconv.callbacks."""
import json
import os
import re
import shutil
import warnings

import numpy as np

from . import saving as _saving
from .callbacks import Callback, MonitorCallback, _print_msg

__all__ = ["ModelCheckpoint", "BackupAndRestore"]


def _check_save_freq(save_freq, owner):
    if save_freq == "epoch":
        return save_freq
    if isinstance(save_freq, (bool, np.bool_)) or not isinstance(
            save_freq, (int, np.integer)) or save_freq < 1:
        raise ValueError(f"{owner}: unrecognized save_freq: {save_freq!r}. Expected "
                         f"save_freq are 'epoch' or a positive int (batches)")
    return int(save_freq)


class ModelCheckpoint(MonitorCallback):
    """Save the model (or its weights) at each epoch end or every ``save_freq``
    batches (Keras's ModelCheckpoint).

    ``filepath`` may hold ``{epoch:02d}`` (1-based), ``{batch}`` (1-based, with an int
    save_freq) and any log key (``{val_loss:.2f}``).  ``save_best_only``: write only
    when ``monitor`` improved (by ``mode``; a missing monitor warns and saves);
    ``initial_value_threshold``: the value to beat at first.  Files are fastconv's
    ``.npz`` (model.save / model.save_weights); Keras's ``.keras``/``.h5`` names are
    refused: fastconv cannot write them yet.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        path = os.fspath(filepath)
        self.filepath = path if isinstance(path, str) else os.fsdecode(path)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = _check_save_freq(save_freq, "ModelCheckpoint")
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0
        _saving._refuse_keras_suffix(self.filepath, "save checkpoints to")

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            add_batches = batch + 1  # a new epoch
        else:
            add_batches = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += add_batches
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch, logs, filepath):
        logs = logs or {}
        if not self.save_best_only:
            if self.verbose > 0:
                _print_msg(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.",
                          stacklevel=3)
            return True
        if isinstance(current, np.ndarray) and current.ndim > 0:
            warnings.warn("Can save best model only when `monitor` is a scalar value. "
                          f"Received: {current}. Falling back to "
                          "`save_best_only=False`.")
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print_msg(f"\nEpoch {epoch + 1}: {self.monitor} improved from "
                           f"{best_str} to {current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            _print_msg(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                       f"{best_str}")
        return False

    def _save_model(self, epoch, batch, logs):
        logs = dict(logs or {})
        logs.pop("size", None)  # fastconv's batch size entry is not a log key
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IOError("Please specify a non-directory filepath for "
                          f"ModelCheckpoint. Filepath used is an existing directory: "
                          f"{filepath}")
        dirname = os.path.dirname(filepath)
        if dirname and not os.path.exists(dirname):
            os.makedirs(dirname)
        if self.save_weights_only:
            self.model.save_weights(filepath)
        else:
            self.model.save(filepath)
        if self.verbose > 0:
            _print_msg(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch, batch, logs):
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(f'Failed to format this callback filepath: '
                           f'"{self.filepath}". Reason: {e}') from None


class BackupAndRestore(Callback):
    """Back up the training state at each epoch end; a fit interrupted (even killed)
    and started again with the same callback resumes after the last finished epoch,
    as if never interrupted (Keras's BackupAndRestore).

    The state is the whole model file (weights, optimizer slots and iterations,
    learning rate, the model's and layers' random generators: fastconv/saving.py),
    written to ``backup_dir/epoch-NNNNNN.npz``, then ``training_metadata.json`` naming
    it and the next epoch; both writes are atomic and the previous backup is removed
    only after, so a kill at any moment leaves one consistent backup.  On train begin
    a backup, if any, is loaded into the model and fit starts at its epoch.  With
    ``delete_checkpoint`` the backup directory is removed when the fit ends
    normally.  ``save_freq`` must be 'epoch': a mid-epoch backup cannot be resumed
    exactly (Keras's integer save_freq restarts the epoch from its start).
    """

    _METADATA = "training_metadata.json"
    _MODEL_FILE = re.compile(r"epoch-[0-9]{6,}\.npz")

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch":
            raise ValueError(f"BackupAndRestore: save_freq must be 'epoch', got "
                             f"{save_freq!r} (a backup taken mid-epoch cannot resume "
                             f"the epoch exactly)")
        path = os.fspath(backup_dir)
        self.backup_dir = path if isinstance(path, str) else os.fsdecode(path)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self._metadata_path = os.path.join(self.backup_dir, self._METADATA)

    # ------------------------------------------------------------------ restore
    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError("To use the BackupAndRestore callback, your model must be "
                             f"built before you call `fit()`. Model {self.model} is "
                             "unbuilt: build it or call it on a batch of data.")
        if not os.path.exists(self._metadata_path):
            return
        epoch, model_path = self._read_metadata()
        self._restore(_saving.load_model(model_path, compile=True))
        self.model._initial_epoch = epoch

    def _read_metadata(self):
        path = self._metadata_path
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.loads(f.read(10000))
            epoch, name = doc["epoch"], doc["model_file"]
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 \
                    or not isinstance(name, str) or not self._MODEL_FILE.fullmatch(name):
                raise ValueError("bad epoch or model_file")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _saving.ModelFileError(f"backup metadata {path!r} is unreadable or "
                                         f"corrupted ({type(exc).__name__}: "
                                         f"{exc})") from None
        return epoch, os.path.join(self.backup_dir, name)

    def _restore(self, saved):
        """Copy weights, optimizer state and learning rate, and generator states from
        the loaded model ``saved`` into the model being trained."""
        from .optimizers import LearningRateSchedule

        model = self.model
        if len(saved._layers) != len(model._layers):
            raise ValueError(f"the backup in {self.backup_dir!r} is of a model with "
                             f"{len(saved._layers)} layers, this one has "
                             f"{len(model._layers)}")
        model.set_weights(saved.weights)
        if model.optimizer is not None and saved.optimizer is not None:
            if type(saved.optimizer) is not type(model.optimizer):
                raise ValueError(f"the backup in {self.backup_dir!r} was trained with "
                                 f"{type(saved.optimizer).__name__}, this model is "
                                 f"compiled with {type(model.optimizer).__name__}")
            iterations, slots = saved.optimizer.get_state()
            variables = [w for layer in model._layers if layer.trainable
                         for w in layer.trainable_weights]
            model.optimizer.set_state(iterations, slots, variables)
            if not isinstance(getattr(model.optimizer, "_learning_rate", None),
                              LearningRateSchedule) and not isinstance(
                    getattr(saved.optimizer, "_learning_rate", None),
                    LearningRateSchedule):
                model.optimizer.learning_rate = saved.optimizer.learning_rate
        model._rng = saved._rng
        for layer, twin in zip(model._layers, saved._layers):
            if hasattr(layer, "generator") and hasattr(twin, "generator"):
                layer.generator = twin.generator
        model._clear_caches()

    # ------------------------------------------------------------------ backup
    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{epoch + 1:06d}.npz"
        _saving.save_model(self.model, os.path.join(self.backup_dir, name))
        text = json.dumps({"epoch": epoch + 1, "model_file": name})
        _saving._write_atomically(self._metadata_path,
                                  lambda f: f.write(text.encode("utf-8")))
        for old in os.listdir(self.backup_dir):  # earlier backups, now superseded
            if old != name and self._MODEL_FILE.fullmatch(old):
                try:
                    os.unlink(os.path.join(self.backup_dir, old))
                except OSError:
                    pass

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)
