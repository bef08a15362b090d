"""``fastconv tune lenet5``: LeNet-5's learning rate, batch size and optimizer searched
with Optuna (fastconv.tuner, the optional extra ``fastconv[tune]``) on a validation
split of the training set, the default recipe as trial 1; prints one line per trial,
the best trial and its test accuracy (fastconv/cli.py parses and dispatches)."""
import time

from ._cli_args import TRAIN_DEFAULTS, TUNE_SPACE
from ._cli_io import (CommandError, check_plot_option, load_gray, prepare_gray,
                      require_samples)

__all__ = ["cmd_tune"]


def cmd_tune(args):
    from . import tuner
    try:
        optuna = tuner.require_optuna()
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    check_plot_option(args)
    import fastconv
    from . import applications, datasets
    from .callbacks import LearningRateScheduler
    from .cli import _cosine_schedule, _fmt_time, _make_optimizer  # train's recipe

    t_start = time.perf_counter()
    ((x_tr, y_tr), (x_te, y_te)), source = load_gray(args.data)
    require_samples(len(x_tr), "training", source)
    require_samples(len(x_te), "test", source)
    x_tr, x_te = prepare_gray(x_tr), prepare_gray(x_te)
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
    num_classes = 10
    y_tr = datasets.to_categorical(y_tr, num_classes)
    y_te = datasets.to_categorical(y_te, num_classes)
    (x_tr, y_tr), (x_val, y_val) = datasets.train_validation_split(
        x_tr, y_tr, args.validation_split, seed=args.seed)
    if len(x_tr) == 0 or len(x_val) == 0:
        raise CommandError(f"--validation-split {args.validation_split:g} of "
                           f"{len(x_tr) + len(x_val)} images leaves an empty training or "
                           f"validation set")
    default = TRAIN_DEFAULTS["lenet5"]
    first = {"optimizer": default["optimizer"], "lr": default["lr"],
             "batch_size": default["batch_size"]}
    lo, hi = TUNE_SPACE["lr"]
    print(f"fastconv {fastconv.__version__}: tuning lenet5 on {source}: {len(x_tr)} "
          f"training, {len(x_val)} validation images; {args.trials} trials of "
          f"{args.epochs} epoch{'s' if args.epochs > 1 else ''}, seed {args.seed}, "
          f"threads {fastconv.get_num_threads()}", flush=True)
    print(f"search: optimizer {'/'.join(TUNE_SPACE['optimizer'])} (sgd momentum 0.9), "
          f"lr {lo:g}..{hi:g} (log), batch size "
          f"{'/'.join(map(str, TUNE_SPACE['batch_size']))}, cosine schedule; trial 1 is "
          f"the default recipe", flush=True)

    def build(trial):
        optimizer = trial.suggest_categorical("optimizer", TUNE_SPACE["optimizer"])
        lr = trial.suggest_float("lr", lo, hi, log=True)
        trial.suggest_categorical("batch_size", TUNE_SPACE["batch_size"])
        model = applications.lenet5(input_shape=x_tr.shape[1:], num_classes=num_classes,
                                    compile=False)
        model.compile(optimizer=_make_optimizer(optimizer, lr, 0.9),
                      loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    def schedule(trial):
        return [LearningRateScheduler(_cosine_schedule(trial.params["lr"], args.epochs))]

    def report(study, trial):
        line = tuner._trial_line(trial, args.trials, "val_acc")
        print(line + ("  [default recipe]" if trial.number == 0 else ""), flush=True)

    try:
        result = tuner.search(
            build, x_tr, y_tr, n_trials=args.trials, validation_data=(x_val, y_val),
            epochs=args.epochs, objective="val_accuracy", seed=args.seed,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
            callbacks=schedule, enqueue_trials=[first], study_callbacks=[report])
    except ValueError as exc:
        if "no trial completed" not in str(exc):
            raise
        raise CommandError(str(exc)) from None
    best = result.best_trial
    study = result.study
    params = "  ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in best.params.items())
    trial0 = study.trials[0]
    baseline = (f"{trial0.value:.4f}" if trial0.state.name == "COMPLETE"
                else trial0.state.name.lower())
    print(f"best trial: {best.number + 1}  {params}  val_acc {best.value:.4f} (default "
          f"recipe: {baseline})")
    test_loss, test_acc = result.best_model.evaluate(x_te, y_te, batch_size=256,
                                                     verbose=0)
    print(f"best trial's test accuracy: {test_acc:.4f} (loss {test_loss:.4f}, "
          f"{len(x_te)} images)")
    states = [t.state.name for t in study.trials]
    print(f"total time: {_fmt_time(time.perf_counter() - t_start)} ({len(states)} "
          f"trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} "
          f"pruned, {states.count('FAIL')} failed)", flush=True)
    if args.plot:
        from .plotting import plot_optimization_history
        plot_optimization_history(study, args.plot, title=f"fastconv tune lenet5 on "
                                  f"{source}", value_label="validation accuracy")
        print(f"wrote the optimisation history to {args.plot}")
    return 0
