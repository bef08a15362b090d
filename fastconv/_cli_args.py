"""The ``fastconv`` command's arguments: the per-network default recipes, the argument
types and the parser (fastconv/cli.py runs the commands)."""
import argparse
import math

__all__ = ["TRAIN_DEFAULTS", "TRAIN_DATA", "AUGMENTATIONS", "TUNE_DEFAULTS", "TUNE_SPACE",
           "UsageError", "build_parser"]

#: Default recipe per network: chosen so that ``fastconv train lenet5`` on the bundled
#: subset finishes well within 2 minutes on 2 cores above 80 % test accuracy, and the
#: CIFAR-10 network passes the Keras example's 71.6 % after 5 epochs (docs/results.md).
#: ResNet-20 takes the standard CIFAR recipe (He et al. 2016, with a cosine schedule
#: in place of the step one): pad-4 crop and flip, SGD with momentum 0.9, decoupled
#: weight decay 5e-3 (w -= lr * 5e-3 * w each step: with momentum 0.9 about the decay
#: of PyTorch's coupled weight_decay=5e-4), batch 128, learning rate 0.1.
#: It also takes label smoothing 0.1, Nesterov momentum and BatchNormalization momentum
#: 0.9 (PyTorch's; Keras's 0.99 lags the weights at learning rate 0.1): 87.76 % after 40
#: epochs against 87.38 % without them (docs/results.md).  (bn_momentum None: the
#: layers' own.)
TRAIN_DEFAULTS = {
    "lenet5": {"epochs": 5, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
               "augment": "", "schedule": "cosine", "weight_decay": 0.0,
               "label_smoothing": 0.0, "nesterov": False, "bn_momentum": None},
    "cifar10": {"epochs": 5, "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
                "augment": "flip", "schedule": "cosine", "weight_decay": 0.0,
                "label_smoothing": 0.0, "nesterov": False, "bn_momentum": None},
    "resnet20": {"epochs": 40, "batch_size": 128, "optimizer": "sgd", "lr": 0.1,
                 "augment": "shift,flip", "schedule": "cosine", "weight_decay": 5e-3,
                 "label_smoothing": 0.1, "nesterov": True, "bn_momentum": 0.9},
}
#: The data each network trains on ("gray": Fashion-MNIST/MNIST IDX, "cifar": CIFAR-10).
TRAIN_DATA = {"lenet5": "gray", "cifar10": "cifar", "resnet20": "cifar"}
AUGMENTATIONS = ("flip", "shift", "mixup")

#: ``fastconv tune lenet5``: its defaults and search space (the default recipe above is
#: always the first trial, so the best is at least as good as it).
TUNE_DEFAULTS = {"trials": 20, "epochs": 1, "validation_split": 0.1}
TUNE_SPACE = {"optimizer": ("adam", "rmsprop", "sgd"), "lr": (1e-4, 1e-2),
              "batch_size": (32, 64, 128)}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fastconv train: error: ... (see --help)``."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


class UsageError(Exception):
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
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _nonneg_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _open_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text}")
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


def _per_network(key, fmt="{}"):
    """'5 for lenet5, 5 for cifar10': a TRAIN_DEFAULTS entry for the --help text."""
    return ", ".join(f"{fmt.format(cfg[key]) if cfg[key] != '' else 'none'} for {net}"
                     for net, cfg in TRAIN_DEFAULTS.items())


def build_parser():
    p = _Parser(prog="fastconv", description="fastconv: fast CNN layers on a plain CPU.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    from .datasets import CIFAR10_URL
    t = sub.add_parser("train", help="train LeNet-5, the CIFAR-10 network or ResNet-20",
                       description="Train a network and report per-epoch progress, the "
                       "final test accuracy, total time and samples/s. Options left out "
                       "take the network's default recipe, shown after each option.")
    t.add_argument("model", choices=list(TRAIN_DEFAULTS),
                   help="lenet5 (Fashion-MNIST, padded to 32x32), cifar10 (the Keras "
                   "example's CNN on CIFAR-10) or resnet20 (ResNet-20 on CIFAR-10)")
    t.add_argument("--data", metavar="PATH",
                   help="lenet5: a folder with the four Fashion-MNIST/MNIST IDX files, or "
                   "'auto' to search FASTCONV_DATA, ~/.fastconv/datasets and the Debian "
                   "package (default: the subset bundled in fastconv); cifar10: "
                   "cifar-10-python.tar.gz or its cifar-10-batches-py folder (default: "
                   "'auto', the same search)")
    t.add_argument("--download", action="store_true",
                   help=f"cifar10 only: when CIFAR-10 is not found, download the "
                   f"official archive ({CIFAR10_URL}, 163 MiB, md5 checked) into "
                   f"$FASTCONV_HOME/datasets or ~/.fastconv/datasets (default: off, "
                   f"nothing is downloaded)")
    t.add_argument("--epochs", type=_positive_int,
                   help=f"passes over the training data (default: "
                   f"{_per_network('epochs')})")
    t.add_argument("--batch-size", type=_positive_int,
                   help=f"samples per update (default: {_per_network('batch_size')})")
    t.add_argument("--optimizer", choices=("adam", "sgd", "rmsprop"),
                   help=f"(default: {_per_network('optimizer')})")
    t.add_argument("--lr", type=_positive_float,
                   help=f"learning rate (default: {_per_network('lr', '{:g}')})")
    t.add_argument("--schedule", choices=("constant", "cosine"),
                   help="learning rate per epoch: constant, or cosine (epoch e of E uses "
                   f"lr * (1 + cos(pi * (e - 1) / E)) / 2) (default: "
                   f"{_per_network('schedule')})")
    t.add_argument("--momentum", type=float, default=0.9,
                   help="momentum for --optimizer sgd (default: 0.9)")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                   help="Nesterov momentum for --optimizer sgd (default: "
                   f"{_per_network('nesterov', '{}')})".replace("True", "on")
                   .replace("False", "off"))
    t.add_argument("--label-smoothing", type=_fraction, metavar="F",
                   help="targets y * (1 - F) + F / classes in the cross-entropy (default: "
                   f"{_per_network('label_smoothing', '{:g}')})")
    t.add_argument("--bn-momentum", type=_fraction, metavar="M",
                   help="momentum of the BatchNormalization layers' moving statistics "
                   "(default: 0.9 for resnet20; the others have none)")
    t.add_argument("--weight-decay", type=_nonneg_float, metavar="WD",
                   help="decoupled weight decay, w -= lr * WD * w at each step (Keras's "
                   f"optimizer weight_decay) (default: "
                   f"{_per_network('weight_decay', '{:g}')})")
    t.add_argument("--augment", type=_augment_list, metavar="LIST",
                   help="comma-separated: flip (random left-right), shift (pad 4 and "
                   "crop), mixup (alpha 0.2), or none (default: "
                   f"{_per_network('augment')})")
    t.add_argument("--validation-split", type=_fraction, default=0.0, metavar="F",
                   help="hold out this fraction of the training data for the validation "
                   "curve (default: 0, the test set is evaluated after every epoch)")
    t.add_argument("--limit", type=_positive_int, metavar="N",
                   help="train on the first N training images only, for quick trials "
                   "(default: all)")
    t.add_argument("--threads", type=_positive_int, metavar="N",
                   help="OpenMP threads of the kernels and BLAS threads (default: "
                   "OMP_NUM_THREADS, else one per core)")
    t.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed for initialisation, shuffling, dropout, augmentation "
                   "(default: 0)")
    t.add_argument("--save", metavar="FILE",
                   help="save the trained model to FILE: fastconv's .npz format, or "
                   "Keras's .keras / .h5 (needs h5py); checked before training "
                   "(default: not saved)")
    t.add_argument("--plot", type=_png_path, metavar="FILE.png",
                   help="write loss/accuracy curves, needs matplotlib (default: none)")
    t.add_argument("--quiet", action="store_true",
                   help="print the final result only (default: per-epoch progress)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI, run under 'mpirun -n N': "
                   "--batch-size samples per rank and step, rank 0 prints and writes "
                   "(docs/distributed.md) (default: one process)")
    t.add_argument("--lr-scaling", choices=("linear", "none"), default="linear",
                   help="with --distributed: multiply --lr by the number of ranks "
                   "(linear) or keep it (none) (default: linear)")
    t.add_argument("--sync-bn", action="store_true",
                   help="with --distributed: BatchNormalization statistics over the "
                   "global batch (default: each rank's own)")

    e = sub.add_parser("evaluate", help="evaluate a saved model on test data",
                       description="Test loss, accuracy and confusion matrix of a model "
                       "saved by "
                       "'fastconv train --save' (or model.save). The labels are encoded "
                       "for the loss the model was compiled with (integers for "
                       "sparse_categorical_crossentropy, one-hot otherwise).")
    e.add_argument("model_file", metavar="FILE")
    e.add_argument("--data", metavar="PATH",
                   help="1-channel models: IDX folder, 'auto' or 'bundled' (default: "
                   "'bundled'); 3-channel models: CIFAR-10 tarball or folder (default: "
                   "'auto')")
    e.add_argument("--download", action="store_true",
                   help="3-channel models: download CIFAR-10 as 'fastconv train cifar10 "
                   "--download' does when it is not found (default: off)")
    e.add_argument("--batch-size", type=_positive_int, default=256,
                   help="samples per forward pass (default: 256)")
    e.add_argument("--threads", type=_positive_int, metavar="N",
                   help="OpenMP and BLAS threads (default: OMP_NUM_THREADS, else one per "
                   "core)")
    e.add_argument("--plot", type=_png_path, metavar="FILE.png",
                   help="draw the confusion matrix, needs matplotlib (default: none)")

    lo, hi = TUNE_SPACE["lr"]
    default = TRAIN_DEFAULTS["lenet5"]
    u = sub.add_parser("tune", help="hyper-parameter search for LeNet-5 (needs optuna)",
                       description=f"Search the learning rate (log-uniform in [{lo:g}, "
                       f"{hi:g}]), batch size ({', '.join(map(str, TUNE_SPACE['batch_size']))}"
                       f") and optimizer ({', '.join(TUNE_SPACE['optimizer'])}; sgd with "
                       f"momentum 0.9) of LeNet-5 with Optuna (TPE sampler, median "
                       f"pruner), each trial trained with the cosine schedule and scored "
                       f"by its validation accuracy. The first trial is the default "
                       f"recipe ({default['optimizer']}, lr {default['lr']:g}, batch "
                       f"{default['batch_size']}). Prints every trial, the best one and "
                       f"its test accuracy. Needs the optional extra: "
                       f"pip install \"fastconv[tune]\".")
    u.add_argument("model", choices=["lenet5"], help="lenet5 (Fashion-MNIST)")
    u.add_argument("--data", metavar="PATH",
                   help="a folder with the four Fashion-MNIST/MNIST IDX files, or 'auto' "
                   "(default: the subset bundled in fastconv)")
    u.add_argument("--trials", type=_positive_int, default=TUNE_DEFAULTS["trials"],
                   metavar="N", help=f"trials to run (default: {TUNE_DEFAULTS['trials']})")
    u.add_argument("--epochs", type=_positive_int, default=TUNE_DEFAULTS["epochs"],
                   help=f"epochs per trial (default: {TUNE_DEFAULTS['epochs']})")
    u.add_argument("--validation-split", type=_open_fraction, metavar="F",
                   default=TUNE_DEFAULTS["validation_split"],
                   help=f"fraction of the training data that scores the trials (default: "
                   f"{TUNE_DEFAULTS['validation_split']:g})")
    u.add_argument("--limit", type=_positive_int, metavar="N",
                   help="use the first N training images only (default: all)")
    u.add_argument("--threads", type=_positive_int, metavar="N",
                   help="OpenMP and BLAS threads (default: OMP_NUM_THREADS, else one per "
                   "core)")
    u.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seed of the sampler, the split and the trials: the same seed "
                   "gives the same trials (default: 0)")
    u.add_argument("--plot", type=_png_path, metavar="FILE.png",
                   help="draw the optimisation history, needs matplotlib (default: none)")

    sub.add_parser("info", help="version, OpenMP, threads, BLAS, data sets found",
                   description="Print the installation's configuration.")

    b = sub.add_parser("bench", help="kernel timings against the naive reference and "
                       "PyTorch", add_help=False,
                       description="Runs fastconv.benchmark; options are passed on.")
    b.add_argument("bench_args", nargs=argparse.REMAINDER)

    from ._cli_convert import add_parsers  # convert, predict
    add_parsers(sub, _positive_int)
    return p
