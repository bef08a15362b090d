"""The ``fastconv`` command (also ``python -m fastconv``).

    fastconv train lenet5 [--data PATH|auto] [--epochs N] [--batch-size N] [--threads N]
                          [--seed N] [--save FILE] [--plot FILE.png] ...
    fastconv train cifar10 [--data PATH] ...
    fastconv evaluate MODEL_FILE [--data PATH|auto|bundled]
    fastconv info
    fastconv bench [benchmark options]

``fastconv train lenet5`` with no --data trains on the Fashion-MNIST subset bundled in
the package. Bad arguments and unusable data end with a one-line error on stderr and a
non-zero exit status (2 for usage errors, 1 for errors found while running); set
FASTCONV_DEBUG=1 to see the traceback instead.
"""
import argparse
import contextlib
import importlib
import os
import sys
import time

import numpy as np

__all__ = ["main", "TRAIN_DEFAULTS"]

#: Default recipe per network: chosen so that ``fastconv train lenet5`` on the bundled
#: subset finishes well within 2 minutes on 2 cores above 80 % test accuracy, and the
#: CIFAR-10 network passes the Keras example's 71.6 % after 5 epochs (docs/results.md).
TRAIN_DEFAULTS = {
    "lenet5": {"epochs": 5, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
               "augment": "", "schedule": "cosine"},
    "cifar10": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
                "augment": "flip", "schedule": "cosine"},
}
AUGMENTATIONS = ("flip", "shift", "mixup")


class CommandError(Exception):
    """A problem worth one line on stderr and exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fastconv train: error: ... (see --help)``."""

    def error(self, message):
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class _UsageError(Exception):
    pass


# ----------------------------------------------------------------------------------------
# argument types
# ----------------------------------------------------------------------------------------

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _augment_list(text):
    items = [t.strip() for t in text.split(",") if t.strip()]
    for t in items:
        if t not in AUGMENTATIONS + ("none",):
            raise argparse.ArgumentTypeError(
                f"unknown augmentation {t!r} (choose from {', '.join(AUGMENTATIONS)}, "
                f"comma-separated, or none)")
    return ",".join(t for t in items if t != "none")


def _png_path(text):
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"the plot is a PNG file: the name must end in "
                                         f".png, got {text!r}")
    return text


def build_parser():
    p = _Parser(prog="fastconv", description="fastconv: fast CNN layers on a plain CPU.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train LeNet-5 or the CIFAR-10 network",
                       description="Train a network and report per-epoch progress, the "
                       "final test accuracy, total time and samples/s.")
    t.add_argument("model", choices=sorted(TRAIN_DEFAULTS),
                   help="lenet5 (Fashion-MNIST, padded to 32x32) or cifar10 (CIFAR-10)")
    t.add_argument("--data", metavar="PATH",
                   help="lenet5: a folder with the four Fashion-MNIST/MNIST IDX files, "
                   "'auto' to search FASTCONV_DATA, ~/.fastconv/datasets and the Debian "
                   "package, default: the subset bundled in fastconv; cifar10: "
                   "cifar-10-python.tar.gz or its cifar-10-batches-py folder (default "
                   "'auto')")
    t.add_argument("--epochs", type=_positive_int, help="passes over the training data")
    t.add_argument("--batch-size", type=_positive_int, help="samples per update")
    t.add_argument("--optimizer", choices=("adam", "sgd", "rmsprop"))
    t.add_argument("--lr", type=_positive_float, help="learning rate")
    t.add_argument("--schedule", choices=("constant", "cosine"),
                   help="learning rate per epoch: constant, or cosine (epoch e of E uses "
                   "lr * (1 + cos(pi * (e - 1) / E)) / 2)")
    t.add_argument("--momentum", type=float, default=0.9,
                   help="momentum for --optimizer sgd (default 0.9, Nesterov off)")
    t.add_argument("--augment", type=_augment_list, metavar="LIST",
                   help="comma-separated: flip (random left-right), shift (pad 4 and "
                   "crop), mixup (alpha 0.2); default none")
    t.add_argument("--validation-split", type=_fraction, default=0.0, metavar="F",
                   help="hold out this fraction of the training data for the validation "
                   "curve (default 0: the test set is evaluated after every epoch)")
    t.add_argument("--limit", type=_positive_int, metavar="N",
                   help="train on the first N training images only (quick trials)")
    t.add_argument("--threads", type=_positive_int, metavar="N",
                   help="OpenMP threads of the kernels and BLAS threads")
    t.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed for initialisation, shuffling, dropout, augmentation "
                   "(default 0)")
    t.add_argument("--save", metavar="FILE", help="save the trained model to FILE")
    t.add_argument("--plot", type=_png_path, metavar="FILE.png",
                   help="write loss/accuracy curves (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="print the final result only")

    e = sub.add_parser("evaluate", help="evaluate a saved model on test data",
                       description="Test loss and accuracy of a model saved by "
                       "'fastconv train --save' (or model.save).")
    e.add_argument("model_file", metavar="FILE")
    e.add_argument("--data", metavar="PATH",
                   help="1-channel models: IDX folder, 'auto' or 'bundled' (default "
                   "'bundled'); 3-channel models: CIFAR-10 tarball or folder (default "
                   "'auto')")
    e.add_argument("--batch-size", type=_positive_int, default=256)
    e.add_argument("--threads", type=_positive_int, metavar="N")

    sub.add_parser("info", help="version, OpenMP, threads, BLAS, data sets found",
                   description="Print the installation's configuration.")

    b = sub.add_parser("bench", help="kernel timings against the naive reference and "
                       "PyTorch", add_help=False,
                       description="Runs fastconv.benchmark; options are passed on.")
    b.add_argument("bench_args", nargs=argparse.REMAINDER)
    return p


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


def _load_gray(data):
    """Fashion-MNIST-like IDX data for --data None/'bundled'/'auto'/PATH."""
    from . import datasets
    if data in (None, "bundled"):
        return datasets.load_fashion_mnist(subset="bundled"), "bundled Fashion-MNIST subset"
    if data == "auto":
        return datasets.load_fashion_mnist(), "Fashion-MNIST"
    if not os.path.exists(data):
        raise CommandError(f"--data {data}: no such file or folder")
    return datasets.load_fashion_mnist(data), f"IDX data in {data}"


def _load_cifar(data):
    from . import datasets
    if data in (None, "auto"):
        return datasets.load_cifar10(), "CIFAR-10"
    if data == "bundled":
        raise CommandError("--data bundled: only Fashion-MNIST is bundled; give the "
                           "CIFAR-10 tarball or folder")
    if not os.path.exists(data):
        raise CommandError(f"--data {data}: no such file or folder")
    return datasets.load_cifar10(data), f"CIFAR-10 from {data}"


def _prepare_gray(x, size=32):
    from . import datasets
    return datasets.scale_images(datasets.pad_images(x, size=size))


def _make_optimizer(name, lr, momentum):
    from . import optimizers
    if name == "adam":
        return optimizers.Adam(learning_rate=lr)
    if name == "rmsprop":
        return optimizers.RMSprop(learning_rate=lr)
    return optimizers.SGD(learning_rate=lr, momentum=momentum)


def _augment(x, y, kinds, rng):
    from . import datasets
    if "flip" in kinds:
        x = datasets.random_flip(x, rng=rng)
    if "shift" in kinds:
        x = datasets.random_shift(x, max_shift=4, rng=rng)
    if "mixup" in kinds:
        x, y = datasets.mixup(x, y, alpha=0.2, rng=rng)
    return x, y


def _progress_callback(emit, every=10):
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
                done = min((batch + 1) * self.params["batch_size"], self.params["samples"])
                dt = time.perf_counter() - self.t0
                emit(f"    {batch + 1}/{self.steps}  loss {logs['loss']:.4f}  "
                     f"acc {logs.get('accuracy', float('nan')):.4f}  "
                     f"{done / dt:,.0f} samples/s  {dt:.0f} s")

    return _Progress()


def _epoch_lr(lr, schedule, epoch, epochs):
    """The learning rate of epoch ``epoch`` (1-based) of ``epochs``."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + np.cos(np.pi * (epoch - 1) / epochs))
    return lr


def _fmt_time(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ----------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------

def cmd_train(args):
    import fastconv
    from . import datasets

    cfg = dict(TRAIN_DEFAULTS[args.model])
    for key in ("epochs", "batch_size", "optimizer", "lr", "augment", "schedule"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    kinds = set(filter(None, cfg["augment"].split(",")))
    emit = _out(args.quiet)
    if args.plot:
        from .plotting import require_matplotlib
        try:
            require_matplotlib()
        except ImportError as exc:
            raise CommandError(f"--plot: {exc}") from None
    if args.save:
        folder = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(folder):
            raise CommandError(f"--save {args.save}: folder {folder} does not exist")

    t_start = time.perf_counter()
    if args.model == "lenet5":
        ((x_tr, y_tr), (x_te, y_te)), source = _load_gray(args.data)
        x_tr, x_te = _prepare_gray(x_tr), _prepare_gray(x_te)
    else:
        ((x_tr, y_tr), (x_te, y_te)), source = _load_cifar(args.data)
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
    build = applications.lenet5 if args.model == "lenet5" else applications.cifar10_cnn
    fastconv.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build(input_shape=x_tr.shape[1:], num_classes=num_classes)
    model.compile(optimizer=_make_optimizer(cfg["optimizer"], cfg["lr"], args.momentum),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    emit(f"fastconv {fastconv.__version__}: training {args.model} on {source}: "
         f"{len(x_tr)} training, {len(x_val)} {val_name} images "
         f"(loaded in {t_data:.1f} s)")
    emit(f"recipe: {cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer']} "
         f"lr {cfg['lr']:g} ({cfg['schedule']}), "
         f"augmentation {', '.join(sorted(kinds)) or 'none'}, "
         f"seed {args.seed}, threads {fastconv.get_num_threads()}")

    progress = _progress_callback(emit)
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    train_time = 0.0
    t_fit = time.perf_counter()
    for epoch in range(1, cfg["epochs"] + 1):
        x_ep, y_ep = _augment(x_tr, y_tr, kinds, rng) if kinds else (x_tr, y_tr)
        lr = _epoch_lr(cfg["lr"], cfg["schedule"], epoch, cfg["epochs"])
        model.optimizer.learning_rate = lr
        t0 = time.perf_counter()
        h = model.fit(x_ep, y_ep, batch_size=cfg["batch_size"], epochs=1, shuffle=True,
                      verbose=0, callbacks=None if args.quiet else [progress])
        dt = time.perf_counter() - t0
        train_time += dt
        val_loss, val_acc = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
        loss, acc = h.history["loss"][-1], h.history["accuracy"][-1]
        for k, v in (("loss", loss), ("accuracy", acc), ("val_loss", val_loss),
                     ("val_accuracy", val_acc)):
            history[k].append(float(v))
        if not np.isfinite(loss):
            raise CommandError(f"epoch {epoch}: the loss diverged ({loss}); lower --lr")
        emit(f"epoch {epoch:>2}/{cfg['epochs']}  loss {loss:.4f}  acc {acc:.4f}  "
             f"{val_name}_loss {val_loss:.4f}  {val_name}_acc {val_acc:.4f}  "
             f"lr {lr:.2g}  {len(x_ep) / dt:,.0f} samples/s  {dt:.1f} s  "
             f"(elapsed {_fmt_time(time.perf_counter() - t_fit)})")

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
    if args.save:
        model.save(args.save)
        emit(f"saved model to {args.save}")
    if args.plot:
        from .plotting import plot_history
        plot_history(history, args.plot, val_label=val_name,
                     title=f"{args.model} on {source}")
        emit(f"wrote training curves to {args.plot}")
    return 0


def _model_input_shape(model):
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise CommandError("the saved model has no input shape (was it built?)")
    return tuple(shape)[1:] if len(shape) == 4 else tuple(shape)


def cmd_evaluate(args):
    if not os.path.isfile(args.model_file):
        raise CommandError(f"model file {args.model_file!r} does not exist")
    from . import datasets, models
    model = models.load_model(args.model_file)
    h, w, c = _model_input_shape(model)
    t0 = time.perf_counter()
    if c == 1:
        (_, (x, y)), source = _load_gray(args.data)
        if x.shape[1:] != (h, w):
            x = datasets.pad_images(x, size=h) if h == w else x
        x = datasets.scale_images(x if x.ndim == 4 else x[..., None])
    elif c == 3:
        (_, (x, y)), source = _load_cifar(args.data)
        x = datasets.scale_images(x)
    else:
        raise CommandError(f"model input has {c} channels; evaluate knows 1-channel "
                           f"(Fashion-MNIST/MNIST) and 3-channel (CIFAR-10) models")
    if x.shape[1:] != (h, w, c):
        raise CommandError(f"model expects inputs {(h, w, c)}, the data is {x.shape[1:]}")
    y = datasets.to_categorical(y, model.output_shape[-1])
    loss, acc = model.evaluate(x, y, batch_size=args.batch_size, verbose=0)
    dt = time.perf_counter() - t0
    print(f"{args.model_file} on {source}: test accuracy {acc:.4f}, loss {loss:.4f} "
          f"({len(x)} images, {_fmt_time(dt)}, {len(x) / dt:,.0f} samples/s)")
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


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info,
            "bench": cmd_bench}


def _one_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 error, 2 usage)."""
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
    try:
        if args.command == "train":
            with _thread_limits(args.threads):
                return cmd_train(args)
        if args.command == "evaluate":
            with _thread_limits(args.threads):
                return cmd_evaluate(args)
        return COMMANDS[args.command](args)
    except (CommandError, FileNotFoundError, ValueError, TypeError) as exc:
        if os.environ.get("FASTCONV_DEBUG"):
            raise
        print(f"fastconv {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fastconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
