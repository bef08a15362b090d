"""Callbacks (fastconv/callbacks.py, fastconv/_checkpoint_callbacks.py): each one's
decisions on crafted log sequences against hand-derived expectations, save_weights /
load_weights, BackupAndRestore through an interrupted and a killed fit, and, where
keras is importable, the same log sequences fed to Keras 3's callbacks."""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import optimizers
from fastconv.callbacks import (BackupAndRestore, Callback, CSVLogger, EarlyStopping,
                                History, LearningRateScheduler, ModelCheckpoint,
                                ReduceLROnPlateau, TerminateOnNaN)
from fastconv.models import ModelFileError, Sequential

# The folder the fastconv under test is imported from (the installed package's
# site-packages, or a development checkout built in place), for subprocesses.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


def tiny_model(lr=0.1, metrics=("accuracy",), optimizer=None):
    fastconv.set_seed(0)
    model = Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer or optimizers.SGD(learning_rate=lr),
                  "sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def drive(cb, model, seq, weights_at=None):
    """Feed the logs ``seq`` (one dict per epoch) to ``cb`` as fit would.  Before
    each epoch's end, ``weights_at(model, epoch)`` may set the weights.  Returns
    (stopping epoch or None, learning rate after each epoch end)."""
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_begin({})
    stopped, lrs = None, []
    for epoch, logs in enumerate(seq):
        cb.on_epoch_begin(epoch, {})
        if weights_at is not None:
            weights_at(model, epoch)
        cb.on_epoch_end(epoch, dict(logs))
        lrs.append(float(np.asarray(model.optimizer.learning_rate)))
        if model.stop_training:
            stopped = epoch
            break
    cb.on_train_end({})
    return stopped, lrs


def epoch_weights(model, epoch):
    model.set_weights([np.full(w.shape, float(epoch), np.float32)
                       for w in model.get_weights()])


def losses(*values, key="val_loss"):
    return [{key: v} for v in values]


# --------------------------------------------------------------------------- EarlyStopping
EARLY_CASES = [
    # (kwargs, monitored values, stop epoch, best epoch)
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.92, 0.8], 3, 1),
    ({"patience": 0}, [1.0, 0.9, 0.95], 2, 1),
    ({"patience": 1, "min_delta": 0.05}, [1.0, 0.96, 0.9, 0.88], 1, 0),
    ({"patience": 2, "min_delta": 0.05}, [1.0, 0.96, 0.9, 0.88, 0.87], 4, 2),
    # baseline: improvements that miss it do not reset the wait (but do not stop)
    ({"patience": 2, "baseline": 0.5}, [1.0, 1.1, 1.2], 1, 0),
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.95, 0.4], 2, 1),
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.4, 0.45, 0.5], 3, 1),
    ({"patience": 1, "start_from_epoch": 3}, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 4, 3),
    ({"patience": 3}, [1.0, 0.9, 0.8, 0.7], None, 3),
]


@pytest.mark.parametrize("kwargs, values, stop, best", EARLY_CASES)
def test_early_stopping_decisions(kwargs, values, stop, best):
    cb = EarlyStopping(**kwargs)
    stopped, _ = drive(cb, tiny_model(), losses(*values))
    assert stopped == stop
    assert cb.stopped_epoch == (stop or 0)
    assert cb.best_epoch == best


def test_early_stopping_mode_auto_and_max():
    seq = losses(0.5, 0.6, 0.55, 0.58, key="val_accuracy")
    assert drive(EarlyStopping("val_accuracy", patience=2), tiny_model(), seq)[0] == 3
    assert drive(EarlyStopping("val_accuracy", patience=2, mode="max"), tiny_model(),
                 seq)[0] == 3
    # min mode on an accuracy: epoch 0 is the best, epoch 2 stops
    assert drive(EarlyStopping("val_accuracy", patience=2, mode="min"), tiny_model(),
                 seq)[0] == 2
    with pytest.raises(ValueError, match="maximized or minimized"):
        drive(EarlyStopping("val_f00"), tiny_model(), losses(1.0, key="val_f00"))
    with pytest.warns(UserWarning, match="mode 'bad' is unknown"):
        EarlyStopping(mode="bad")


def test_early_stopping_restores_best_weights(capsys):
    model = tiny_model()
    cb = EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    stopped, _ = drive(cb, model, losses(1.0, 0.5, 0.7, 0.6, 0.4), epoch_weights)
    assert stopped == 3
    assert all(np.all(w == 1.0) for w in model.get_weights())
    out = capsys.readouterr().out
    assert "Epoch 4: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_restores_even_below_baseline():
    model = tiny_model()
    cb = EarlyStopping(patience=2, baseline=0.1, restore_best_weights=True)
    stopped, _ = drive(cb, model, losses(1.0, 0.5, 0.7), epoch_weights)
    assert stopped == 2
    assert all(np.all(w == 1.0) for w in model.get_weights())


def test_early_stopping_missing_monitor_warns():
    with pytest.warns(UserWarning, match="`val_loss` which is not available"):
        assert drive(EarlyStopping(), tiny_model(), [{"loss": 1.0}] * 3)[0] is None


def test_early_stopping_in_fit():
    rs = np.random.RandomState(0)
    x, y = rs.rand(16, 4).astype(np.float32), rs.randint(0, 3, 16)
    model = tiny_model()
    seq = iter([1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    orig = EarlyStopping.on_epoch_end

    class Crafted(EarlyStopping):  # sees a crafted loss sequence
        def on_epoch_end(self, epoch, logs=None):
            orig(self, epoch, dict(logs, loss=next(seq)))
    history = model.fit(x, y, epochs=6, verbose=0,
                        callbacks=[Crafted("loss", patience=2)])
    assert history.epoch == [0, 1, 2, 3]


# --------------------------------------------------------------------------- ReduceLROnPlateau
def test_reduce_lr_on_plateau_path(capsys):
    cb = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, min_lr=0.02, verbose=1)
    _, lrs = drive(cb, tiny_model(lr=0.1),
                   losses(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7))
    # waits 1, 2 -> 0.05 at epoch 2; the cooldown counter (2) is decremented before
    # the wait is counted, so epoch 3 is skipped and epoch 4 waits again: epochs 4, 5
    # -> 0.025; epoch 6 skipped; epochs 7, 8 -> 0.02 (min_lr); epoch 9 improves;
    # epochs 10, 11 wait 1, 2 but the rate is already at min_lr.
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025,
                                 0.02, 0.02, 0.02, 0.02], rel=1e-12)
    out = capsys.readouterr().out
    assert "Epoch 3: ReduceLROnPlateau reducing learning rate to 0.05." in out
    assert out.count("reducing") == 3


def test_reduce_lr_on_plateau_min_delta_and_logs():
    cb = ReduceLROnPlateau("loss", factor=0.1, patience=1, min_delta=0.1)
    model = tiny_model(lr=1.0)
    cb.set_model(model)
    cb.on_train_begin()
    logs = {"loss": 1.0}
    cb.on_epoch_end(0, logs)
    assert logs["learning_rate"] == 1.0
    cb.on_epoch_end(1, {"loss": 0.95})  # not better by 0.1
    assert model.optimizer.learning_rate == pytest.approx(0.1)
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


def test_callbacks_refuse_to_set_a_rate_over_a_schedule():
    sched = optimizers.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    model = tiny_model(optimizer=optimizers.SGD(learning_rate=sched))
    with pytest.raises(TypeError, match="not settable"):
        drive(ReduceLROnPlateau(patience=0), model, losses(1.0, 1.0))
    with pytest.raises(TypeError, match="not settable"):
        drive(LearningRateScheduler(lambda e, lr: lr), model, losses(1.0))


# --------------------------------------------------------------------------- LearningRateScheduler
def test_learning_rate_scheduler_path(capsys):
    cb = LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5,
                               verbose=1)
    _, lrs = drive(cb, tiny_model(lr=0.1), losses(1, 1, 1, 1))
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025], rel=1e-12)
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.05." in \
        capsys.readouterr().out
    _, lrs = drive(LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1)),
                   tiny_model(), losses(1, 1, 1))
    assert lrs == pytest.approx([0.01, 0.02, 0.03])
    with pytest.raises(ValueError, match="should be a float"):
        drive(LearningRateScheduler(lambda epoch, lr: 1), tiny_model(), losses(1))


def test_learning_rate_in_history_of_fit():
    rs = np.random.RandomState(0)
    x, y = rs.rand(8, 4).astype(np.float32), rs.randint(0, 3, 8)
    model = tiny_model(lr=0.1)
    model.fit(x, y, epochs=3, verbose=0,
              callbacks=[LearningRateScheduler(lambda e, lr: 0.1 / (e + 1))])
    assert model.optimizer.learning_rate == pytest.approx(0.1 / 3)


# --------------------------------------------------------------------------- CSVLogger
def test_csv_logger_content(tmp_path):
    path = tmp_path / "log.csv"
    seq = [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.25, "accuracy": 0.5}]
    drive(CSVLogger(path), tiny_model(), seq)
    assert path.read_text().splitlines() == [
        "epoch,accuracy,loss,val_accuracy,val_loss",
        "0,0.25,0.5,NA,NA", "1,0.5,0.25,NA,NA"]
    drive(CSVLogger(path, separator=";", append=True), tiny_model(),
          [{"loss": 0.125, "val_loss": 1.5}])
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[-1] == "0;0.125;1.5"


def test_csv_logger_in_fit(tmp_path):
    rs = np.random.RandomState(0)
    x, y = rs.rand(8, 4).astype(np.float32), rs.randint(0, 3, 8)
    path = tmp_path / "fit.csv"
    history = tiny_model().fit(x, y, epochs=2, verbose=0, validation_split=0.25,
                               callbacks=[CSVLogger(str(path))])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert [float(r["val_loss"]) for r in rows] == history.history["val_loss"]


# --------------------------------------------------------------------------- TerminateOnNaN
def test_terminate_on_nan(capsys):
    model = tiny_model()
    cb = TerminateOnNaN()
    cb.set_model(model)
    model.stop_training = False
    cb.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    cb.on_train_batch_end(3, {"loss": float("inf")})
    assert model.stop_training
    assert "Batch 3: Invalid loss, terminating training" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 1"):
        TerminateOnNaN(raise_error=True).on_train_batch_end(1, {"loss": float("nan")})


class CountBatches(Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)


def test_terminate_on_nan_in_fit():
    """As Keras 3: stop_training is checked after every batch, so fit stops at the
    first bad batch (that epoch still ends: on_epoch_end, History)."""
    x = np.full((8, 4), np.nan, np.float32)
    y = np.zeros(8, np.int64)
    count = CountBatches()
    history = tiny_model().fit(x, y, epochs=5, batch_size=2, verbose=0,
                               callbacks=[TerminateOnNaN(), count])
    assert history.epoch == [0]
    assert count.batches == [0]


# --------------------------------------------------------------------------- History
def test_history_keeps_growing_when_reused():
    model = tiny_model()
    h = History()
    drive(h, model, losses(1.0, 2.0))
    drive(h, model, losses(3.0))
    assert h.history == {"val_loss": [1.0, 2.0, 3.0]} and h.epoch == [0]
    assert model.history is h


def test_history_passed_to_fit_is_reused():
    """As Keras 3's CallbackList: a History in callbacks is the one fit fills and
    returns (no second one); it runs where it stands, after the callbacks before it."""
    x = np.random.RandomState(0).rand(8, 4).astype(np.float32)
    y = np.arange(8) % 3
    model = tiny_model()
    h = History()
    returned = model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[h])
    assert returned is h and model.history is h
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[h])
    assert len(h.history["loss"]) == 3 and h.epoch == [0]
    lr = LearningRateScheduler(lambda epoch, lr: lr)
    returned = model.fit(x, y, epochs=1, batch_size=4, verbose=0, callbacks=[lr])
    assert returned.history["learning_rate"] == [pytest.approx(0.1)]


# --------------------------------------------------------------------------- ModelCheckpoint
def test_checkpoint_files_written(tmp_path):
    pattern = str(tmp_path / "sub" / "m-{epoch:02d}-{val_loss:.2f}.npz")
    cb = ModelCheckpoint(pattern, save_best_only=True)
    drive(cb, tiny_model(), losses(1.0, 0.5, 0.7, 0.25, 0.25))
    assert sorted(os.listdir(tmp_path / "sub")) == [
        "m-01-1.00.npz", "m-02-0.50.npz", "m-04-0.25.npz"]
    loaded = fastconv.models.load_model(tmp_path / "sub" / "m-04-0.25.npz")
    assert loaded.optimizer is not None

    cb = ModelCheckpoint(str(tmp_path / "all-{epoch}.npz"), monitor="accuracy")
    drive(cb, tiny_model(), losses(1, 2, 3, key="accuracy"))
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("all")) == [
        "all-1.npz", "all-2.npz", "all-3.npz"]


def test_checkpoint_best_only_max_and_threshold(tmp_path, capsys):
    cb = ModelCheckpoint(str(tmp_path / "b{epoch}.npz"), monitor="val_accuracy",
                         save_best_only=True, initial_value_threshold=0.6, verbose=1)
    drive(cb, tiny_model(), losses(0.5, 0.7, 0.65, 0.8, key="val_accuracy"))
    assert sorted(os.listdir(tmp_path)) == ["b2.npz", "b4.npz"]
    out = capsys.readouterr().out
    assert "Epoch 1: val_accuracy did not improve from 0.60000" in out
    assert "Epoch 2: val_accuracy improved from 0.60000 to 0.70000, saving model to" in out


def test_checkpoint_weights_only(tmp_path):
    model = tiny_model()
    cb = ModelCheckpoint(str(tmp_path / "w{epoch}.weights.npz"), save_weights_only=True)
    drive(cb, model, losses(1.0, 0.5), epoch_weights)
    other = tiny_model()
    other.load_weights(tmp_path / "w2.weights.npz")
    assert all(np.all(w == 1.0) for w in other.get_weights())
    with pytest.raises(ModelFileError, match="not a fastconv model file"):
        fastconv.models.load_model(tmp_path / "w2.weights.npz")


def test_checkpoint_batch_frequency(tmp_path):
    model = tiny_model()
    cb = ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}.npz"), save_freq=3)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch in range(2):
        cb.on_epoch_begin(epoch)
        for batch in range(4):
            cb.on_train_batch_end(batch, {"loss": 1.0, "size": 2})
        cb.on_epoch_end(epoch, {"loss": 1.0})
    assert sorted(os.listdir(tmp_path)) == ["e1b3.npz", "e2b2.npz"]


def test_checkpoint_argument_errors(tmp_path):
    for name in ("m.keras", "m.h5", "m.weights.h5"):
        with pytest.raises(ValueError, match="Keras .* files are not supported yet"):
            ModelCheckpoint(str(tmp_path / name))
    with pytest.raises(ValueError, match="save_freq"):
        ModelCheckpoint(str(tmp_path / "m.npz"), save_freq="batch")
    cb = ModelCheckpoint(str(tmp_path / "{nope}.npz"), monitor="loss")
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        drive(cb, tiny_model(), [{"loss": 1.0}])


# --------------------------------------------------------------------------- save/load_weights
def test_save_and_load_weights(tmp_path):
    model = tiny_model()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    other = tiny_model()
    epoch_weights(other, 3)
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    # a whole model file gives its weights too
    epoch_weights(model, 2)
    model.save(tmp_path / "m.npz")
    other.load_weights(tmp_path / "m.npz")
    assert all(np.all(w == 2.0) for w in other.get_weights())


def test_load_weights_errors(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match=r"must end in \.weights\.h5"):
        model.save_weights(tmp_path / "w.keras")  # (.weights.h5: test_keras_files.py)
    path = tmp_path / "w.npz"
    model.save_weights(path)
    wide = Sequential([L.Dense(5, input_shape=(4,))])
    with pytest.raises(ModelFileError, match="w.npz.*must have shape"):
        wide.load_weights(path)
    two = Sequential([L.Dense(3, input_shape=(4,)), L.Dense(2)])
    with pytest.raises(ModelFileError, match="w.npz.*holds 2 weight arrays"):
        two.load_weights(path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:100])
    before = model.get_weights()
    with pytest.raises(ModelFileError, match="bad.npz"):
        model.load_weights(bad)
    junk = tmp_path / "junk.npz"
    np.savez(junk, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="junk.npz"):
        model.load_weights(junk)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="not built"):
        Sequential([L.Dense(3)]).load_weights(path)


# --------------------------------------------------------------------------- BackupAndRestore
def conv_net():
    fastconv.set_seed(0)
    model = Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1)),
                        L.Flatten(), L.Dropout(0.3), L.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def conv_data():
    rs = np.random.RandomState(1)
    return rs.rand(40, 6, 6, 1).astype(np.float32), rs.randint(0, 3, 40)


class Interrupt(Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise KeyboardInterrupt


class Halve(Callback):
    """Halves the rate at each epoch end: the rate of a resumed fit must come back."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.optimizer.learning_rate = self.model.optimizer.learning_rate / 2


def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    # (Keras restores no callback's own state: ReduceLROnPlateau's wait and best
    # restart with the resumed fit, so only stateless callbacks replay exactly.)
    x, y = conv_data()
    reference = conv_net()
    reference.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[Halve()])
    backup = tmp_path / "backup"
    model = conv_net()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                  callbacks=[Halve(), BackupAndRestore(backup), Interrupt(2, 1)])
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert sorted(os.listdir(backup)) == ["epoch-000002.npz", "training_metadata.json"]
    model = conv_net()  # a new process would start from scratch
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                        callbacks=[Halve(), BackupAndRestore(backup)])
    assert history.epoch == [2, 3, 4]
    assert not backup.exists()  # delete_checkpoint
    for a, b in zip(reference.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == reference.optimizer.iterations
    assert model.optimizer.learning_rate == reference.optimizer.learning_rate == \
        0.01 / 32


def test_backup_and_restore_arguments(tmp_path):
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq must be 'epoch'"):
        BackupAndRestore(tmp_path, save_freq=10)
    (tmp_path / "training_metadata.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="training_metadata.json"):
        drive(BackupAndRestore(tmp_path), tiny_model(), losses(1.0))
    x, y = conv_data()
    model = conv_net()
    model.fit(x, y, epochs=1, verbose=0,
              callbacks=[BackupAndRestore(tmp_path / "keep", delete_checkpoint=False)])
    assert (tmp_path / "keep" / "epoch-000001.npz").exists()


KILL_SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import fastconv
    from fastconv import layers as L, optimizers
    from fastconv.callbacks import BackupAndRestore, Callback
    from fastconv.models import Sequential

    mode, backup, out = sys.argv[2], sys.argv[3], sys.argv[4]
    fastconv.set_seed(0)
    model = Sequential([L.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1)),
                        L.Flatten(), L.Dropout(0.3), L.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=0.01),
                  "sparse_categorical_crossentropy")
    rs = np.random.RandomState(1)
    x, y = rs.rand(40, 6, 6, 1).astype(np.float32), rs.randint(0, 3, 40)

    class Spy(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            # the generator that draws this epoch's shuffling order
            with open(out + ".rng", "a") as f:
                f.write(json.dumps([epoch, str(model._rng.bit_generator.state)]) + "\\n")

        def on_train_batch_end(self, batch, logs=None):
            if mode == "kill" and self.epoch == 2 and batch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    cbs = [Spy()] if mode == "plain" else [BackupAndRestore(backup), Spy()]
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=cbs)
    np.savez(out, *model.get_weights())
''')


def test_backup_and_restore_after_sigkill(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(KILL_SCRIPT)
    backup = str(tmp_path / "backup")

    def run(mode, out):
        return subprocess.run([sys.executable, str(script), PACKAGE_PARENT, mode, backup,
                               str(tmp_path / out)], capture_output=True, text=True,
                              timeout=120)
    killed = run("kill", "killed.npz")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "killed.npz").exists()
    assert os.path.exists(os.path.join(backup, "epoch-000002.npz"))
    resumed = run("resume", "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    plain = run("plain", "plain.npz")
    assert plain.returncode == 0, plain.stderr
    assert not os.path.exists(backup)

    def rng_log(name):
        with open(tmp_path / (name + ".rng")) as f:
            return [json.loads(line) for line in f]
    plain_rng = rng_log("plain.npz")
    assert [e for e, _ in rng_log("killed.npz")] == [0, 1, 2]
    assert rng_log("killed.npz") == plain_rng[:3]
    # the resumed run starts at epoch 2 with the generator of the uninterrupted run:
    # it shuffles the same batches
    assert rng_log("resumed.npz") == plain_rng[2:]
    with np.load(tmp_path / "resumed.npz") as a, np.load(tmp_path / "plain.npz") as b:
        assert len(a.files) == len(b.files) == 4
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


# --------------------------------------------------------------------------- Keras parity
@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def keras_model(keras, lr=0.1):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    rs = np.random.RandomState(0)
    model.evaluate(rs.rand(4, 4), rs.randint(0, 3, 4), verbose=0)  # builds the metrics
    return model


def both(keras, ours, theirs, seq, lr=0.1, weights=False):
    """(fastconv's, Keras's) decisions on ``seq``: stop epoch, rate path, and the
    weights left (each weight set to the epoch number when ``weights``)."""
    out = []
    for cb, model in ((ours, tiny_model(lr=lr)), (theirs, keras_model(keras, lr))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stopped, lrs = drive(cb, model, seq, epoch_weights if weights else None)
        out.append((stopped, lrs, [float(w.flat[0]) for w in model.get_weights()]))
    return out


@pytest.mark.parametrize("kwargs, values, stop, best", EARLY_CASES)
@pytest.mark.parametrize("restore", [False, True])
def test_keras_parity_early_stopping(keras, kwargs, values, stop, best, restore):
    kwargs = dict(kwargs, restore_best_weights=restore)
    ours, theirs = EarlyStopping(**kwargs), keras.callbacks.EarlyStopping(**kwargs)
    (s1, _, w1), (s2, _, w2) = both(keras, ours, theirs, losses(*values), weights=True)
    assert s1 == s2 and ours.stopped_epoch == theirs.stopped_epoch
    assert ours.best_epoch == theirs.best_epoch and ours.wait == theirs.wait
    assert w1 == w2


@pytest.mark.parametrize("monitor, mode", [("val_accuracy", "auto"), ("loss", "auto"),
                                           ("val_accuracy", "min"), ("accuracy", "max")])
def test_keras_parity_early_stopping_modes(keras, monitor, mode):
    seq = losses(0.5, 0.6, 0.55, 0.58, 0.62, 0.61, 0.6, key=monitor)
    kw = dict(monitor=monitor, mode=mode, patience=2, min_delta=0.01)
    (s1, _, _), (s2, _, _) = both(keras, EarlyStopping(**kw),
                                  keras.callbacks.EarlyStopping(**kw), seq)
    assert s1 == s2


RLR_CASES = [
    (dict(factor=0.5, patience=2, cooldown=2, min_lr=0.02),
     [1.0] * 9 + [0.5, 0.6, 0.7]),
    (dict(factor=0.1, patience=0, min_lr=1e-4), [1.0] * 8),
    (dict(factor=0.2, patience=1, min_delta=0.05, cooldown=1),
     [1.0, 0.97, 0.9, 0.88, 0.8, 0.79, 0.78, 0.5, 0.51, 0.52, 0.53]),
    (dict(monitor="val_accuracy", factor=0.5, patience=1),
     [0.5, 0.6, 0.6, 0.7, 0.65, 0.64, 0.9]),
]


@pytest.mark.parametrize("kwargs, values", RLR_CASES)
def test_keras_parity_reduce_lr_on_plateau(keras, kwargs, values):
    key = kwargs.get("monitor", "val_loss")
    ours, theirs = ReduceLROnPlateau(**kwargs), keras.callbacks.ReduceLROnPlateau(**kwargs)
    (_, l1, _), (_, l2, _) = both(keras, ours, theirs, losses(*values, key=key))
    assert l1 == pytest.approx(l2, rel=1e-6)  # Keras keeps the rate in float32
    assert (ours.wait, ours.cooldown_counter) == (theirs.wait, theirs.cooldown_counter)


def test_keras_parity_learning_rate_scheduler(keras):
    def schedule(epoch, lr):
        return lr if epoch < 2 else lr * 0.9

    (_, l1, _), (_, l2, _) = both(keras, LearningRateScheduler(schedule),
                                  keras.callbacks.LearningRateScheduler(schedule),
                                  losses(1, 1, 1, 1, 1))
    assert l1 == pytest.approx(l2, rel=1e-6)


@pytest.mark.parametrize("kwargs, key, values", [
    (dict(save_best_only=True), "val_loss", [1.0, 0.5, 0.7, 0.25, 0.25, 0.1]),
    (dict(save_best_only=True, monitor="val_accuracy"), "val_accuracy",
     [0.5, 0.7, 0.65, 0.8]),
    (dict(save_best_only=True, monitor="loss", initial_value_threshold=0.6), "loss",
     [0.7, 0.5, 0.55, 0.4]),
    (dict(), "val_loss", [1.0, 2.0, 3.0]),
])
def test_keras_parity_checkpoint_files(keras, tmp_path, kwargs, key, values):
    names = "m-{epoch:02d}-" + "{" + key + ":.2f}"
    seq = losses(*values, key=key)
    drive(ModelCheckpoint(str(tmp_path / "ours" / (names + ".npz")), **kwargs),
          tiny_model(), seq)
    drive(keras.callbacks.ModelCheckpoint(str(tmp_path / "keras" / (names + ".keras")),
                                          **kwargs), keras_model(keras), seq)
    ours = sorted(p[:-4] for p in os.listdir(tmp_path / "ours"))
    theirs = sorted(p[:-6] for p in os.listdir(tmp_path / "keras"))
    assert ours == theirs


def test_keras_parity_csv_logger(keras, tmp_path):
    seq = [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.25, "accuracy": np.float32(0.5)},
           {"loss": 0.125}]
    drive(CSVLogger(tmp_path / "ours.csv"), tiny_model(), seq)
    drive(keras.callbacks.CSVLogger(str(tmp_path / "keras.csv")), keras_model(keras), seq)
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "keras.csv").read_text()
    drive(CSVLogger(tmp_path / "ours.csv", separator=";", append=True), tiny_model(),
          [{"val_loss": 1.0, "loss": 2.0}])
    drive(keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"), separator=";",
                                    append=True), keras_model(keras),
          [{"val_loss": 1.0, "loss": 2.0}])
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "keras.csv").read_text()


@pytest.mark.parametrize("loss", [1.0, float("nan"), float("inf"), -float("inf")])
def test_keras_parity_terminate_on_nan(keras, loss):
    results = []
    for cb, model in ((TerminateOnNaN(), tiny_model()),
                      (keras.callbacks.TerminateOnNaN(), keras_model(keras))):
        cb.set_model(model)
        model.stop_training = False
        cb.on_train_batch_end(2, {"loss": loss})
        results.append(model.stop_training)
    assert results[0] == results[1]


def test_keras_parity_terminate_on_nan_in_fit(keras):
    x = np.full((8, 4), np.nan, np.float32)
    y = np.zeros(8, np.int64)
    ours, theirs = CountBatches(), keras.callbacks.LambdaCallback()
    theirs_batches = []
    theirs.on_train_batch_end = lambda batch, logs=None: theirs_batches.append(batch)
    h = tiny_model().fit(x, y, epochs=3, batch_size=2, verbose=0,
                         callbacks=[TerminateOnNaN(), ours])
    hk = keras_model(keras).fit(x, y, epochs=3, batch_size=2, verbose=0,
                                callbacks=[keras.callbacks.TerminateOnNaN(), theirs])
    assert ours.batches == theirs_batches
    assert h.epoch == hk.epoch


def test_progress_bar_of_a_generator_of_unknown_length():
    """With steps unknown (a generator without steps_per_epoch) the bar counts the
    batches as Keras does ("3/Unknown") and the epoch line gives the count seen."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    bar = fastconv.callbacks.ProgbarLogger(1, stream=stream)
    bar.set_params({"epochs": 1, "steps": None})
    bar.on_epoch_begin(0)
    for batch in range(3):
        bar.on_train_batch_end(batch, {"loss": 1.0, "size": 4})
    bar.on_epoch_end(0, {"loss": 1.0})
    out = stream.getvalue()
    assert "1/Unknown" in out
    final = out.rsplit("\r", 1)[1]
    assert final.startswith("3/3 - ") and "samples/s - loss: 1.0000" in final
