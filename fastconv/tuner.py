"""Hyper-parameter search on Optuna (an optional extra: ``pip install "fastconv[tune]"``).

    def build(trial):
        model = fastconv.applications.lenet5(compile=False)
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        trial.suggest_categorical("batch_size", [32, 64, 128])   # read by search()
        model.compile(optimizer=fastconv.optimizers.Adam(lr),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    result = fastconv.tuner.search(build, x, y, n_trials=20, epochs=3,
                                   pruner=optuna.pruners.MedianPruner())
    result.best_params, result.best_value, result.best_model

Optuna is what Keras Tuner's users move to: its samplers (TPE by default) and pruners
stop poor trials early through :class:`PruningCallback`, which reports each epoch's
validation metric.  A search is deterministic for a seed: the default sampler is
``TPESampler(seed=seed)`` and trial ``n`` runs after ``fastconv.set_seed(seed + n)``.
"""
import copy
import dataclasses
import math
import numbers

from .callbacks import Callback

__all__ = ["OPTUNA_HINT", "require_optuna", "PruningCallback", "SearchResult", "search"]

OPTUNA_HINT = ('hyper-parameter search needs optuna, an optional extra: '
               'pip install "fastconv[tune]" (or pip install optuna)')


def require_optuna():
    """Import optuna, or raise ImportError saying how to install the extra."""
    try:
        import optuna
    except ImportError:
        raise ImportError(OPTUNA_HINT) from None
    return optuna


class PruningCallback(Callback):
    """Report ``logs[monitor]`` of each epoch to an Optuna trial (``trial.report(value,
    step=epoch)``) and raise ``optuna.TrialPruned`` when the study's pruner says so.

    ``monitor`` must be in the epoch logs: "val_accuracy" needs validation data in fit.
    The last epoch is reported but never pruned: the trial has finished, its value
    counts.
    """

    def __init__(self, trial, monitor="val_accuracy"):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be the name of an epoch log, got {monitor!r}")
        self._optuna = require_optuna()
        self.trial = trial
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"PruningCallback: monitor {self.monitor!r} is not in the "
                             f"epoch logs (they have {', '.join(sorted(logs)) or 'none'}); "
                             f"'val_*' values need validation_data or validation_split")
        value = float(logs[self.monitor])
        self.trial.report(value, step=epoch)
        last = epoch + 1 >= self.params.get("epochs", epoch + 2)
        if not last and self.trial.should_prune():
            raise self._optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch "
                                           f"{epoch + 1} ({self.monitor} {value:.4g})")


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` found: the Optuna ``study`` (every trial), the best trial's
    number, parameters and objective value, its model's config (``get_config()``) and
    the trained model itself."""
    study: object
    best_trial: object
    best_params: dict
    best_value: float
    best_model_config: dict
    best_model: object

    def __repr__(self):
        return (f"SearchResult(best_trial={self.best_trial.number}, best_value="
                f"{self.best_value:.6g}, best_params={self.best_params}, "
                f"trials={len(self.study.trials)})")


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _trial_line(trial, n_trials, objective):
    params = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in trial.params.items())
    state = trial.state.name
    if state == "COMPLETE":
        result = f"{objective} {trial.value:.4f}"
    elif state == "PRUNED":
        step = trial.last_step
        result = f"pruned after epoch {step + 1}" if step is not None else "pruned"
    else:
        result = state.lower()
    took = trial.duration.total_seconds() if trial.duration is not None else float("nan")
    total = f"/{n_trials}" if n_trials else ""
    return f"trial {trial.number + 1}{total}  {params}  {result}  ({took:.1f} s)"


def search(build_fn, x, y, n_trials=20, *, validation_split=0.1, validation_data=None,
           epochs=1, batch_size=None, objective="val_accuracy", direction="maximize",
           pruner=None, sampler=None, seed=0, callbacks=None, verbose=0,
           enqueue_trials=None, timeout=None, study_callbacks=None):
    """Search hyper-parameters with Optuna; returns a :class:`SearchResult`.

    ``build_fn(trial)`` returns a compiled model, drawing its hyper-parameters with
    ``trial.suggest_*``; a parameter it suggests named "batch_size" or "epochs"
    replaces the ``batch_size`` / ``epochs`` given here for that trial.  Each trial
    trains with ``model.fit(x, y, ...)`` on ``validation_data`` or, as Keras does, on
    the last ``validation_split`` of (x, y), and scores ``objective`` (an epoch log:
    "val_accuracy", "val_loss", ...) at its last epoch; a :class:`PruningCallback`
    reports it every epoch to ``pruner`` (None: Optuna's default, MedianPruner).

    ``sampler`` None is ``TPESampler(seed=seed)``, and trial n runs after
    ``fastconv.set_seed(seed + n)``: the same seed gives the same trials.
    ``callbacks``: fastconv callbacks, copied for each trial, or a function
    ``trial -> list`` of callbacks.  ``enqueue_trials``: parameter dicts tried first
    (e.g. a known good recipe, so the best is at least as good).  ``verbose`` 1 prints
    a line per trial; ``study_callbacks`` go to ``study.optimize(callbacks=...)``.
    Optuna's own log is silenced while the search runs unless ``verbose`` is 2.
    """
    optuna = require_optuna()
    from . import _random

    if not callable(build_fn):
        raise TypeError(f"build_fn must be a function trial -> compiled model, got "
                        f"{build_fn!r}")
    n_trials = None if n_trials is None else _check_int(n_trials, "n_trials", 1)
    epochs = _check_int(epochs, "epochs", 1)
    seed = _check_int(seed, "seed", 0)
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if not (callbacks is None or callable(callbacks) or isinstance(callbacks, (list, tuple))):
        raise TypeError(f"callbacks must be a list of callbacks or a function trial -> "
                        f"list, got {callbacks!r}")
    fit_kwargs = ({"validation_data": validation_data} if validation_data is not None
                  else {"validation_split": validation_split})
    maximize = direction == "maximize"
    best = {"number": None, "value": None, "model": None, "config": None}

    def run_trial(trial):
        _random.set_seed(seed + trial.number)
        model = build_fn(trial)
        if not getattr(model, "compiled", False):
            raise TypeError(f"build_fn must return a compiled model, got {model!r}")
        n_epochs = int(trial.params.get("epochs", epochs))
        batch = trial.params.get("batch_size", batch_size)
        trial.set_user_attr("epochs", n_epochs)
        if batch is not None:
            trial.set_user_attr("batch_size", int(batch))
        if callable(callbacks):
            extra = list(callbacks(trial) or [])
        else:
            extra = [copy.deepcopy(cb) for cb in callbacks or ()]
        history = model.fit(x, y, batch_size=batch, epochs=n_epochs, verbose=0,
                            callbacks=extra + [PruningCallback(trial, objective)],
                            **fit_kwargs)
        values = history.history.get(objective)
        if not values:
            raise ValueError(f"objective {objective!r} is not in the training history "
                             f"(it has {', '.join(sorted(history.history))})")
        value = float(values[-1])
        if math.isfinite(value) and (best["value"] is None or (
                value > best["value"] if maximize else value < best["value"])):
            best.update(number=trial.number, value=value, model=model,
                        config=model.get_config())
        return value

    hooks = list(study_callbacks or ())
    if verbose:
        hooks.append(lambda st, tr: print(_trial_line(tr, n_trials, objective),
                                          flush=True))
    previous = optuna.logging.get_verbosity()
    if verbose < 2:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction=direction, pruner=pruner,
            sampler=sampler or optuna.samplers.TPESampler(seed=seed))
        for params in enqueue_trials or ():
            study.enqueue_trial(dict(params))
        study.optimize(run_trial, n_trials=n_trials, timeout=timeout, callbacks=hooks)
    finally:
        optuna.logging.set_verbosity(previous)

    states = [t.state.name for t in study.trials]
    if "COMPLETE" not in states:
        raise ValueError(f"no trial completed ({states.count('PRUNED')} pruned, "
                         f"{states.count('FAIL')} failed, e.g. a diverged loss)")
    best_trial = study.best_trial
    if best["number"] != best_trial.number:  # a tie Optuna broke otherwise
        best.update(model=None, config=None)
    return SearchResult(study=study, best_trial=best_trial,
                        best_params=dict(best_trial.params), best_value=best_trial.value,
                        best_model_config=best["config"], best_model=best["model"])
