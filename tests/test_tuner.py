"""Hyper-parameter search (fastconv/tuner.py) on Optuna: the message without optuna,
determinism for a seed, the trial's batch size and epochs, pruning through
PruningCallback, enqueued trials, and what the result holds."""
import sys

import numpy as np
import pytest

import fastconv
from fastconv import layers as L
from fastconv import optimizers, tuner
from fastconv.callbacks import Callback, LearningRateScheduler
from fastconv.models import Sequential

HINT = r'pip install "fastconv\[tune\]"'


def test_without_optuna_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # "import optuna" raises ImportError
    with pytest.raises(ImportError, match=HINT):
        tuner.require_optuna()
    with pytest.raises(ImportError, match=HINT):
        tuner.search(lambda trial: None, np.zeros((4, 2)), np.zeros(4), n_trials=1)
    with pytest.raises(ImportError, match=HINT):
        tuner.PruningCallback(object())


# ---------------------------------------------------------------------------------------
# with optuna
# ---------------------------------------------------------------------------------------

try:
    import optuna
except ImportError:  # CI installs it (requirements-test.txt); the test above runs anyway
    optuna = None
needs_optuna = pytest.mark.skipif(optuna is None, reason="optuna is not installed")


def data(n=80, seed=0):
    """Two easy classes in 6 features."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 0] += 2.0 * y - 1.0
    return x, y


def build(trial):
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    units = trial.suggest_categorical("units", [4, 8])
    model = Sequential([L.Dense(units, activation="tanh", input_shape=(6,)),
                        L.Dense(2, activation="softmax")])
    model.compile(optimizers.SGD(learning_rate=lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def trials_of(result):
    return [(t.number, t.state.name, t.params, t.value) for t in result.study.trials]


@needs_optuna
def test_the_same_seed_gives_the_same_trials():
    x, y = data()
    runs = [tuner.search(build, x, y, n_trials=5, epochs=2, batch_size=16, seed=seed)
            for seed in (3, 3, 4)]
    assert trials_of(runs[0]) == trials_of(runs[1])
    assert [t[2] for t in trials_of(runs[0])] != [t[2] for t in trials_of(runs[2])]
    assert runs[0].best_params == runs[1].best_params
    assert runs[0].best_value == runs[1].best_value


@needs_optuna
def test_result_holds_the_best_trial_and_its_trained_model():
    x, y = data()
    result = tuner.search(build, x, y, n_trials=4, epochs=3, batch_size=16,
                          validation_data=data(40, seed=1))
    study = result.study
    assert result.best_trial.number == study.best_trial.number
    assert result.best_params == study.best_params
    assert result.best_value == study.best_value
    assert result.best_value == max(t.value for t in study.trials)
    assert result.best_model_config == result.best_model.get_config()
    assert result.best_model.layers[0].units == result.best_params["units"]
    _, acc = result.best_model.evaluate(*data(40, seed=1), verbose=0)
    assert acc == pytest.approx(result.best_value)
    assert "best_trial=" in repr(result)


@needs_optuna
def test_the_trial_may_choose_batch_size_and_epochs():
    x, y = data()
    seen = []

    class Spy(Callback):
        def on_train_begin(self, logs=None):
            seen.append((self.params["batch_size"], self.params["epochs"]))

    def build_more(trial):
        trial.suggest_categorical("batch_size", [8, 40])
        trial.suggest_int("epochs", 1, 3)
        return build(trial)

    result = tuner.search(build_more, x, y, n_trials=4, epochs=9, batch_size=2,
                          callbacks=[Spy()])
    expected = [(t.params["batch_size"], t.params["epochs"]) for t in result.study.trials]
    assert seen == expected
    for t in result.study.trials:
        assert t.user_attrs == {"batch_size": t.params["batch_size"],
                                "epochs": t.params["epochs"]}


@needs_optuna
def test_callbacks_are_copied_or_built_per_trial():
    x, y = data()
    lrs = []

    class Record(Callback):
        def __init__(self):
            super().__init__()
            self.epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1
            lrs.append((self.epochs, float(self.model.optimizer.learning_rate)))

    tuner.search(build, x, y, n_trials=2, epochs=2, callbacks=[Record()])
    assert [e for e, _ in lrs] == [1, 2, 1, 2]  # a fresh copy each trial

    lrs.clear()
    tuner.search(build, x, y, n_trials=2, epochs=2, callbacks=lambda trial: [
        LearningRateScheduler(lambda epoch, lr: trial.params["lr"] / (epoch + 1)),
        Record()])
    assert lrs[1][1] == pytest.approx(lrs[0][1] / 2)


@needs_optuna
def test_enqueued_trials_run_first():
    x, y = data()
    first = {"lr": 0.05, "units": 8}
    result = tuner.search(build, x, y, n_trials=3, epochs=1, enqueue_trials=[first])
    assert result.study.trials[0].params == first
    assert result.best_value >= result.study.trials[0].value


@needs_optuna
def test_minimize_a_loss():
    x, y = data()
    result = tuner.search(build, x, y, n_trials=3, epochs=2, objective="val_loss",
                          direction="minimize")
    assert result.best_value == min(t.value for t in result.study.trials)


class FakeTrial:
    number = 7

    def __init__(self, prune):
        self.prune = prune
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


@needs_optuna
def test_pruning_callback_reports_each_epoch_and_prunes_before_the_last():
    x, y = data()
    model = build(optuna.trial.FixedTrial({"lr": 0.1, "units": 4}))
    trial = FakeTrial(prune=False)
    h = model.fit(x, y, epochs=3, validation_split=0.25, verbose=0,
                  callbacks=[tuner.PruningCallback(trial, "val_accuracy")])
    assert trial.reports == [(e, pytest.approx(v))
                             for e, v in enumerate(h.history["val_accuracy"])]

    trial = FakeTrial(prune=True)
    with pytest.raises(optuna.TrialPruned, match="trial 7 pruned at epoch 1"):
        model.fit(x, y, epochs=3, validation_split=0.25, verbose=0,
                  callbacks=[tuner.PruningCallback(trial)])
    assert len(trial.reports) == 1
    # the last epoch is reported, never pruned: the finished trial counts
    trial = FakeTrial(prune=True)
    model.fit(x, y, epochs=1, validation_split=0.25, verbose=0,
              callbacks=[tuner.PruningCallback(trial)])
    assert len(trial.reports) == 1


@needs_optuna
def test_pruning_callback_needs_its_monitor():
    x, y = data()
    model = build(optuna.trial.FixedTrial({"lr": 0.1, "units": 4}))
    with pytest.raises(ValueError, match=r"monitor 'val_accuracy' is not in the epoch "
                                         r"logs \(they have accuracy, loss\)"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[tuner.PruningCallback(FakeTrial(False))])
    with pytest.raises(TypeError, match="monitor must be"):
        tuner.PruningCallback(FakeTrial(False), monitor="")


@needs_optuna
def test_a_pruner_stops_trials_through_the_callback():
    x, y = data()
    always = optuna.pruners.ThresholdPruner(lower=2.0)  # val_accuracy < 2: prune
    with pytest.raises(ValueError, match=r"no trial completed \(3 pruned, 0 failed"):
        tuner.search(build, x, y, n_trials=3, epochs=3, pruner=always)
    result = tuner.search(build, x, y, n_trials=3, epochs=1, pruner=always)
    assert {t.state.name for t in result.study.trials} == {"COMPLETE"}


@needs_optuna
def test_bad_arguments():
    x, y = data()
    with pytest.raises(ValueError, match=r"monitor 'val_auc' is not in the epoch logs "
                                         r"\(they have accuracy, loss, val_accuracy"):
        tuner.search(build, x, y, n_trials=1, objective="val_auc")
    with pytest.raises(ValueError, match="direction must be 'maximize' or 'minimize'"):
        tuner.search(build, x, y, direction="up")
    with pytest.raises(ValueError, match="n_trials must be an int >= 1, got 0"):
        tuner.search(build, x, y, n_trials=0)
    with pytest.raises(TypeError, match="build_fn must be a function"):
        tuner.search(None, x, y)
    with pytest.raises(TypeError, match="build_fn must return a compiled model"):
        tuner.search(lambda trial: Sequential([L.Dense(2, input_shape=(6,))]), x, y,
                     n_trials=1)


@needs_optuna
def test_optuna_log_is_silent_unless_asked(capsys):
    x, y = data()
    before = optuna.logging.get_verbosity()
    tuner.search(build, x, y, n_trials=2, epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "" and "Trial" not in captured.err
    assert optuna.logging.get_verbosity() == before
    tuner.search(build, x, y, n_trials=2, epochs=1, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["trial 1/2", "trial 2/2"]
    assert all("val_accuracy" in line for line in lines)
