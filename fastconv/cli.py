"""The ``fastconv`` command (also ``python -m fastconv``).

    fastconv train lenet5 [--data PATH|auto] [--epochs N] [--batch-size N] [--threads N]
                          [--seed N] [--save FILE] [--plot FILE.png] ...
    fastconv train cifar10 [--data PATH] [--download] ...
    fastconv evaluate MODEL_FILE [--data PATH|auto|bundled] [--download] [--plot FILE.png]
    fastconv tune lenet5 [--trials N] [--epochs E] [--seed S] [--plot FILE.png] [--data ...]
    fastconv info
    fastconv bench [benchmark options]

``fastconv train lenet5`` with no --data trains on the Fashion-MNIST subset bundled in
the package; ``fastconv evaluate`` prints the confusion matrix; ``fastconv tune``
searches LeNet-5's learning rate, batch size and optimizer with Optuna (the optional
extra ``fastconv[tune]``). CIFAR-10 is read from --data, the search folders of
fastconv.datasets.data_search_paths, or, with --download only, fetched from its official
source into the cache folder with its md5 checked.

Bad arguments, unusable files and failures end with a one-line error on stderr and a
non-zero exit status (2 for usage errors, 1 for errors found while running), never a
traceback; set FASTCONV_DEBUG=1 to see the traceback instead. ``--save`` is checked
before training; if the save still fails at the end, the model goes to a fallback file
whose name is printed.

The arguments and default recipes are in fastconv/_cli_args.py, the files, checks and
printed tables in fastconv/_cli_io.py, ``fastconv tune`` in fastconv/_cli_tune.py.
"""
import argparse
import contextlib
import importlib
import os
import sys
import time

import numpy as np

from ._cli_args import TRAIN_DATA, TRAIN_DEFAULTS, build_parser
from ._cli_args import UsageError as _UsageError
from ._cli_io import (CommandError, check_output_target, check_plot_option,
                      dataset_class_names, format_confusion_matrix, load_cifar, load_gray,
                      one_line, prepare_gray, require_samples, save_model)
from . import _cli_convert
from ._cli_tune import cmd_tune

__all__ = ["main", "TRAIN_DEFAULTS"]

# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def _out(quiet=False):
    def emit(*a):
        if not quiet:
            print(*a, flush=True)
    return emit


@contextlib.contextmanager
def _thread_limits(n):
    """Set the kernels' OpenMP threads and, through threadpoolctl, BLAS's threads."""
    if n is None:
        yield
        return
    import fastconv
    previous = fastconv.get_num_threads()
    fastconv.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("fastconv: note: threadpoolctl is not installed, the BLAS keeps its own "
              "thread count (pip install threadpoolctl)", file=sys.stderr)
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=n, user_api="blas")
    try:
        with limits:
            yield
    finally:
        fastconv.set_num_threads(previous)


def _make_optimizer(name, lr, momentum, weight_decay=0.0, nesterov=False):
    from . import optimizers
    wd = {"weight_decay": weight_decay} if weight_decay else {}
    if name == "adam":
        return optimizers.Adam(learning_rate=lr, **wd)
    if name == "rmsprop":
        return optimizers.RMSprop(learning_rate=lr, **wd)
    return optimizers.SGD(learning_rate=lr, momentum=momentum, nesterov=nesterov, **wd)


def _set_bn_momentum(model, momentum):
    """The recipe's BatchNormalization momentum on every such layer of model; how many
    there are."""
    from .layers import BatchNormalization
    layers = [layer for layer in model.layers if isinstance(layer, BatchNormalization)]
    for layer in layers:
        layer.momentum = momentum
    return len(layers)


def _augment(x, y, kinds, rng):
    from . import datasets
    if "flip" in kinds:
        x = datasets.random_flip(x, rng=rng)
    if "shift" in kinds:
        x = datasets.random_shift(x, max_shift=4, rng=rng)
    if "mixup" in kinds:
        x, y = datasets.mixup(x, y, alpha=0.2, rng=rng)
    return x, y


def _epoch_augmented(model, x, y, kinds, rng, batch_size):
    """A fastconv.utils.Sequence of the training set augmented anew at each epoch's
    start (_augment with rng), its samples in an order drawn from the model's generator
    as fit draws it for arrays: the batches of one augmented copy per epoch shuffled
    by fit."""
    from .utils import Sequence

    class EpochAugmented(Sequence):
        def __len__(self):
            return -(-len(x) // batch_size)

        def on_epoch_begin(self):
            self.x, self.y = _augment(x, y, kinds, rng)
            self.order = model._rng.permutation(len(x))

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            return self.x[idx], self.y[idx]
    return EpochAugmented()


def _progress_callback(emit, samples, every=10):
    """Prints a line every 1/every of an epoch when the epoch is long (>= 200 steps)."""
    from .callbacks import Callback

    class _Progress(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()
            self.steps = self.params["steps"]
            self.marks = set() if self.steps < 200 else {
                round(self.steps * k / every) - 1 for k in range(1, every)}

        def on_train_batch_end(self, batch, logs=None):
            if batch in self.marks:
                done = min((batch + 1) * self.params["batch_size"], samples)
                dt = time.perf_counter() - self.t0
                emit(f"    {batch + 1}/{self.steps}  loss {logs['loss']:.4f}  "
                     f"acc {logs.get('accuracy', float('nan')):.4f}  "
                     f"{done / dt:,.0f} samples/s  {dt:.0f} s")

    return _Progress()


def _cosine_schedule(lr, epochs):
    """Keras LearningRateScheduler function: epoch e (0-based) of ``epochs`` trains at
    lr * (1 + cos(pi * e / epochs)) / 2."""
    def schedule(epoch, current_lr):
        return float(lr * 0.5 * (1.0 + np.cos(np.pi * epoch / epochs)))
    return schedule


def _epoch_report(emit, x_val, y_val, val_name, epochs, t_fit, samples):
    """The per-epoch line of ``fastconv train``: evaluates (x_val, y_val) after each
    epoch (batch 256, outside the epoch's timing) and keeps the curves in ``.history``;
    a diverged loss stops the run with a CommandError."""
    from .callbacks import Callback

    class _EpochReport(Callback):
        def __init__(self):
            super().__init__()
            self.history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
            self.train_time = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            self.train_time += dt
            loss, acc = logs["loss"], logs["accuracy"]
            val_loss, val_acc = self.model.evaluate(x_val, y_val, batch_size=256,
                                                    verbose=0)
            for k, v in (("loss", loss), ("accuracy", acc), ("val_loss", val_loss),
                         ("val_accuracy", val_acc)):
                self.history[k].append(float(v))
            if not np.isfinite(loss):
                raise CommandError(f"epoch {epoch + 1}: the loss diverged ({loss}); "
                                   f"lower --lr")
            lr = float(self.model.optimizer.learning_rate)
            emit(f"epoch {epoch + 1:>2}/{epochs}  loss {loss:.4f}  acc {acc:.4f}  "
                 f"{val_name}_loss {val_loss:.4f}  {val_name}_acc {val_acc:.4f}  "
                 f"lr {lr:.2g}  {samples / dt:,.0f} samples/s  "
                 f"{dt:.1f} s  (elapsed {_fmt_time(time.perf_counter() - t_fit)})")

    return _EpochReport()


def _fmt_time(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _check_download_option(args, model_kind):
    if not args.download:
        return
    if model_kind != "cifar10":
        raise _UsageError(f"fastconv {args.command}: error: --download fetches CIFAR-10 "
                          f"only; Fashion-MNIST models use the bundled subset or --data "
                          f"PATH")
    if args.data not in (None, "auto"):
        raise _UsageError(f"fastconv {args.command}: error: --download stores CIFAR-10 "
                          f"in the cache folder; it cannot be combined with --data "
                          f"{args.data} (leave out --data)")


# ----------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------

def cmd_train(args):
    import fastconv
    from . import datasets

    cfg = dict(TRAIN_DEFAULTS[args.model])
    for key in ("epochs", "batch_size", "optimizer", "lr", "augment", "schedule",
                "weight_decay", "label_smoothing", "nesterov", "bn_momentum"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    kinds = set(filter(None, cfg["augment"].split(",")))
    emit = _out(args.quiet)
    check_plot_option(args)
    _check_download_option(args, "cifar10" if TRAIN_DATA[args.model] == "cifar"
                           else args.model)
    if args.save is not None:
        check_output_target("--save", args.save, model=True)
    dist = None
    if getattr(args, "distributed", False):  # under mpirun (fastconv/distributed/_cli.py)
        from .distributed import _cli as dist
        dist.scale_recipe(cfg, args, emit)

    t_start = time.perf_counter()
    if TRAIN_DATA[args.model] == "gray":
        ((x_tr, y_tr), (x_te, y_te)), source = load_gray(args.data)
        require_samples(len(x_tr), "training", source)
        require_samples(len(x_te), "test", source)
        x_tr, x_te = prepare_gray(x_tr), prepare_gray(x_te)
    else:
        ((x_tr, y_tr), (x_te, y_te)), source = load_cifar(args.data, args.download, emit)
        require_samples(len(x_tr), "training", source)
        require_samples(len(x_te), "test", source)
        x_tr, x_te = datasets.scale_images(x_tr), datasets.scale_images(x_te)
    num_classes = 10
    if args.limit:
        x_tr, y_tr = x_tr[:args.limit], y_tr[:args.limit]
    y_tr = datasets.to_categorical(y_tr, num_classes)
    y_te = datasets.to_categorical(y_te, num_classes)
    if args.validation_split:
        (x_tr, y_tr), (x_val, y_val) = datasets.train_validation_split(
            x_tr, y_tr, args.validation_split, seed=args.seed)
        val_name = "val"
    else:
        x_val, y_val, val_name = x_te, y_te, "test"
    t_data = time.perf_counter() - t_start

    from . import applications
    build = {"lenet5": applications.lenet5, "cifar10": applications.cifar10_cnn,
             "resnet20": applications.resnet20}[args.model]
    fastconv.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(input_shape=x_tr.shape[1:], num_classes=num_classes)
    if cfg["bn_momentum"] is not None:
        if not _set_bn_momentum(model, cfg["bn_momentum"]):
            raise CommandError(f"--bn-momentum: {args.model} has no BatchNormalization "
                               f"layers")
    optimizer = _make_optimizer(cfg["optimizer"], cfg["lr"], args.momentum,
                                cfg["weight_decay"], cfg["nesterov"])
    from .losses import CategoricalCrossentropy
    loss = (CategoricalCrossentropy(label_smoothing=cfg["label_smoothing"])
            if cfg["label_smoothing"] else "categorical_crossentropy")
    model.compile(optimizer=dist.wrap_optimizer(optimizer) if dist else optimizer,
                  loss=loss, metrics=["accuracy"])
    emit(f"fastconv {fastconv.__version__}: training {args.model} on {source}: "
         f"{len(x_tr)} training, {len(x_val)} {val_name} images "
         f"(loaded in {t_data:.1f} s)")
    decay = f"weight decay {cfg['weight_decay']:g}, " if cfg["weight_decay"] else ""
    if cfg["optimizer"] == "sgd" and cfg["nesterov"]:
        decay += "Nesterov, "
    if cfg["label_smoothing"]:
        decay += f"label smoothing {cfg['label_smoothing']:g}, "
    if cfg["bn_momentum"] is not None:
        decay += f"BatchNormalization momentum {cfg['bn_momentum']:g}, "
    emit(f"recipe: {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} "
         f"lr {cfg['lr']:g} ({cfg['schedule']}), {decay}"
         f"augmentation {', '.join(sorted(kinds)) or 'none'}, "
         f"seed {args.seed}, threads {fastconv.get_num_threads()}")

    from .callbacks import LearningRateScheduler
    callbacks = []
    if cfg["schedule"] == "cosine":
        callbacks.append(LearningRateScheduler(_cosine_schedule(cfg["lr"], cfg["epochs"])))
    if not args.quiet:
        callbacks.append(_progress_callback(emit, len(x_tr)))
    t_fit = time.perf_counter()
    report = _epoch_report(emit, x_val, y_val, val_name, cfg["epochs"], t_fit, len(x_tr))
    callbacks.append(report)
    fit = dict(batch_size=cfg["batch_size"], shuffle=True, verbose=0, callbacks=callbacks)
    if dist:  # this rank's shard, augmented batch by batch
        data, first = dist.training_data(model, x_tr, y_tr, cfg["batch_size"], args,
                                         (lambda xb, yb, r: _augment(xb, yb, kinds, r))
                                         if kinds else None, emit)
        callbacks[:0] = first
        model.fit(data, epochs=cfg["epochs"], **dict(fit, shuffle=False))
    elif not kinds:
        model.fit(x_tr, y_tr, epochs=cfg["epochs"], **fit)
    else:  # augmentation re-drawn at each epoch's start, by the Sequence
        fit.update(shuffle=False)
        model.fit(_epoch_augmented(model, x_tr, y_tr, kinds, rng, cfg["batch_size"]),
                  epochs=cfg["epochs"], **fit)
    history, train_time = report.history, report.train_time

    if val_name == "test":
        test_loss, test_acc = history["val_loss"][-1], history["val_accuracy"][-1]
    else:
        test_loss, test_acc = model.evaluate(x_te, y_te, batch_size=256, verbose=0)
    total = time.perf_counter() - t_start
    n_seen = len(x_tr) * cfg["epochs"]
    print(f"test accuracy: {test_acc:.4f} (loss {test_loss:.4f}, {len(x_te)} images)")
    print(f"total time: {_fmt_time(total)} (training {_fmt_time(train_time)}, "
          f"{n_seen / train_time:,.0f} samples/s, {train_time / cfg['epochs']:.1f} s/epoch)",
          flush=True)
    save_error = None
    if args.save is not None:
        try:
            save_model(model, args.save, args.model)
            emit(f"saved model to {args.save}")
        except CommandError as exc:  # the model went to a fallback file (or nowhere)
            save_error = exc
    if args.plot:
        from .plotting import plot_history
        try:
            plot_history(history, args.plot, val_label=val_name,
                         title=f"{args.model} on {source}")
        except (OSError, ValueError) as exc:
            if save_error is None:
                raise
            save_error = CommandError(f"{save_error}; writing {args.plot} failed too "
                                      f"({one_line(exc)})")
        else:
            emit(f"wrote training curves to {args.plot}")
    if save_error is not None:
        raise save_error
    return 0


_IMAGE_INPUTS = ("images of shape (rows, cols, channels): (28, 28, 1) Fashion-MNIST/MNIST "
                 "(padded to a larger square model size) or (32, 32, 3) CIFAR-10")


def _model_image_shape(model, path):
    """(rows, cols, channels) the model takes, or CommandError naming what it takes."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise CommandError(f"model {path} has no input shape (it was saved before it "
                           f"was built)")
    per_sample = tuple(shape)[1:]
    if len(per_sample) != 3:
        raise CommandError(f"model {path} takes inputs of shape {per_sample}; fastconv "
                           f"evaluate feeds {_IMAGE_INPUTS}")
    if per_sample[2] not in (1, 3):
        raise CommandError(f"model {path} takes inputs of shape {per_sample} "
                           f"({per_sample[2]} channels); fastconv evaluate feeds "
                           f"{_IMAGE_INPUTS}")
    return per_sample


def _model_classes(model, path):
    shape = getattr(model, "output_shape", None)
    if shape is None or len(shape) != 2 or shape[-1] < 2:
        raise CommandError(f"model {path} outputs shape {shape}; fastconv evaluate needs "
                           f"one score per class, (None, K) with K >= 2")
    return int(shape[-1])


def _encode_labels(model, y, num_classes):
    """Labels as the model's loss wants them: integers (N,) for a sparse loss, one-hot
    (N, K) for every other loss."""
    from . import datasets, losses
    labels = np.asarray(y).reshape(len(y))
    if isinstance(model.loss, losses.SparseCategoricalCrossentropy):
        return labels.astype(np.int64), labels
    return datasets.to_categorical(labels, num_classes), labels


def cmd_evaluate(args):
    path = args.model_file
    if os.path.isdir(path):
        raise CommandError(f"{path} is a folder, not a model file (give the .npz file "
                           f"written by 'fastconv train --save' or model.save)")
    if not os.path.exists(path):
        raise CommandError(f"model file {path!r} does not exist")
    check_plot_option(args)
    from . import datasets, metrics
    model = _cli_convert.load_any(path)  # any model format (fastconv/_cli_convert.py)
    h, w, c = _model_image_shape(model, path)
    num_classes = _model_classes(model, path)
    _check_download_option(args, "cifar10" if c == 3 else "lenet5")
    t0 = time.perf_counter()
    if c == 1:
        (_, (x, y)), source = load_gray(args.data)
        require_samples(len(x), "test", source)
        if x.shape[1:] != (h, w) and h == w and h >= max(x.shape[1:]):
            x = datasets.pad_images(x, size=h)
        x = x if x.ndim == 4 else x[..., None]
    else:
        (_, (x, y)), source = load_cifar(args.data, args.download)
        require_samples(len(x), "test", source)
    if x.shape[1:] != (h, w, c):
        raise CommandError(f"model {path} takes images of shape {(h, w, c)}; the data "
                           f"({source}) are {x.shape[1:]}")
    x = datasets.scale_images(x)
    top = int(np.max(y)) + 1
    if top > num_classes:
        raise CommandError(f"model {path} scores {num_classes} classes; the labels of "
                           f"{source} reach class {top - 1}")
    y_model, labels = _encode_labels(model, y, num_classes)
    logs = {}
    if getattr(model, "compiled", False) and model.loss is not None:
        logs = model.evaluate(x, y_model, batch_size=args.batch_size, verbose=0,
                              return_dict=True)
    acc = next((logs[k] for k in ("accuracy", "acc", "categorical_accuracy",
                                  "sparse_categorical_accuracy") if k in logs), None)
    pred = None
    if acc is None:  # compiled without an accuracy metric, or saved uncompiled
        pred = model.predict(x, batch_size=args.batch_size, verbose=0)
        acc = np.mean(np.argmax(pred, axis=-1) == labels)
    loss_text = (f"loss {logs['loss']:.4f}" if "loss" in logs else
                 "no loss (the model was saved uncompiled)")
    dt = time.perf_counter() - t0
    print(f"{path} on {source}: test accuracy {float(acc):.4f}, {loss_text} "
          f"({len(x)} images, {_fmt_time(dt)}, {len(x) / dt:,.0f} samples/s)")
    if pred is None:
        pred = model.predict(x, batch_size=args.batch_size, verbose=0)
    confusion = metrics.ConfusionMatrix(num_classes=num_classes)
    confusion.update_state(labels.astype(np.int64), pred)
    matrix = confusion.result()
    names = dataset_class_names(source, c, num_classes)
    for line in format_confusion_matrix(matrix, names):
        print(line)
    if args.plot:
        from .plotting import plot_confusion_matrix
        plot_confusion_matrix(matrix, args.plot, class_names=names,
                              title=f"{os.path.basename(path)} on {source}")
        print(f"wrote the confusion matrix to {args.plot}")
    return 0


def _data_status():
    from . import datasets
    lines = []
    folder = datasets.bundled_data_dir()
    ok = all(datasets._idx_set_files(folder, datasets._BUNDLED_PREFIX).values())
    lines.append(f"Fashion-MNIST subset (bundled): {folder if ok else 'missing'}")
    for title, name in (("Fashion-MNIST", "fashion-mnist"), ("MNIST", "mnist")):
        found = [p for p in datasets.data_search_paths(name)
                 if os.path.isdir(p) and all(datasets._idx_set_files(p).values())]
        lines.append(f"{title}: {found[0] if found else 'not found'}")
    found = None
    for p in datasets.data_search_paths("cifar-10-batches-py"):
        tb = os.path.join(os.path.dirname(p), "cifar-10-python.tar.gz")
        if os.path.isfile(os.path.join(p, "data_batch_1")):
            found = p
            break
        if os.path.isfile(tb):
            found = tb
            break
    lines.append(f"CIFAR-10: {found or 'not found'}")
    return lines


def cmd_info(args):
    import fastconv
    fastconv.show_config()
    for line in _data_status():
        print(line)
    return 0


def cmd_bench(args):
    try:
        bench = importlib.import_module("fastconv.benchmark")
    except ModuleNotFoundError as exc:
        if exc.name != "fastconv.benchmark":
            raise
        print("fastconv bench: error: this fastconv has no benchmark module "
              "(fastconv/benchmark.py)", file=sys.stderr)
        return 2
    try:
        result = bench.run(list(args.bench_args))
    except SystemExit as exc:  # the benchmark's own argparse (--help, bad options)
        return exc.code if isinstance(exc.code, int) else 1
    return result if isinstance(result, int) else 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "tune": cmd_tune,
            "info": cmd_info, "bench": cmd_bench, **_cli_convert.COMMANDS}


def _run(args):
    if getattr(args, "distributed", False):
        from .distributed._cli import run
        return run(COMMANDS[args.command], args)
    if args.command in ("train", "evaluate", "tune"):
        with _thread_limits(args.threads):
            return COMMANDS[args.command](args)
    return COMMANDS[args.command](args)


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage).

    Every failure is one line on stderr; FASTCONV_DEBUG=1 re-raises it instead, with
    its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        if argv[:1] == ["bench"]:  # everything after "bench" belongs to the benchmark
            args = argparse.Namespace(command="bench", bench_args=argv[1:])
        else:
            args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help (argparse prints it, then exits)
        return exc.code if isinstance(exc.code, int) else 0
    debug = bool(os.environ.get("FASTCONV_DEBUG"))
    try:
        return _run(args)
    except _UsageError as exc:
        if debug:
            raise
        print(exc, file=sys.stderr)
        return 2
    except (CommandError, ValueError, TypeError, OSError, MemoryError) as exc:
        if debug:
            raise
        print(f"fastconv {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastconv {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if debug:
            raise
        print(f"fastconv {args.command}: internal error: {type(exc).__name__}: "
              f"{one_line(exc)} (set FASTCONV_DEBUG=1 to see the traceback, and please "
              f"report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
