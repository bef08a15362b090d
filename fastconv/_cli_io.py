"""The command line's files: reading the data sets for ``fastconv train`` and
``evaluate``, checking an output file (and --plot's matplotlib) before training,
saving a trained model somewhere safe when its target fails, and the confusion matrix
``fastconv evaluate`` prints (fastconv/cli.py runs the commands)."""
import contextlib
import datetime
import importlib.util
import os
import tempfile

import numpy as np

__all__ = ["CommandError", "one_line", "load_gray", "load_cifar", "prepare_gray",
           "check_output_target", "save_model", "download_progress", "check_plot_option",
           "require_samples", "dataset_class_names", "format_confusion_matrix"]


class CommandError(Exception):
    """A problem worth one line on stderr and exit status 1."""


def _not_found(exc):
    """A DataNotFoundError re-phrased for the command line (the library's hint speaks of
    path=, a Python argument)."""
    from . import datasets
    looked = "; ".join(exc.looked)
    if exc.dataset == "cifar-10":
        return CommandError(
            f"CIFAR-10 not found; looked in: {looked}. Give --data PATH (the official "
            f"cifar-10-python.tar.gz or its cifar-10-batches-py folder, from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html), set {datasets.ENV_VAR} to a "
            f"folder holding either, or add --download to fetch {datasets.CIFAR10_URL} "
            f"(163 MiB, md5 {datasets.CIFAR10_MD5} checked) into {datasets.cache_dir()}")
    title = "Fashion-MNIST" if exc.dataset == "fashion-mnist" else exc.dataset
    return CommandError(
        f"{title} not found; looked in: {looked}. Give --data PATH (a folder holding the "
        f"four IDX files), set {datasets.ENV_VAR} to a folder holding {exc.dataset}/, "
        f"run 'apt-get install dataset-fashion-mnist', or leave out --data to use the "
        f"Fashion-MNIST subset bundled in fastconv")


def load_gray(data):
    """Fashion-MNIST-like IDX data for --data None/'bundled'/'auto'/PATH."""
    from . import datasets
    if data in (None, "bundled"):
        return datasets.load_fashion_mnist(subset="bundled"), "bundled Fashion-MNIST subset"
    if data == "auto":
        try:
            return datasets.load_fashion_mnist(), "Fashion-MNIST"
        except datasets.DataNotFoundError as exc:
            raise _not_found(exc) from None
    if not os.path.exists(data):
        raise CommandError(f"--data {data}: no such file or folder")
    return datasets.load_fashion_mnist(data), f"IDX data in {data}"


def download_progress(emit):
    marks = {"next": 10}

    def progress(done, total):
        if total and done * 100 >= marks["next"] * total:
            emit(f"    {100 * done // total}% ({done / 2 ** 20:.0f} of "
                 f"{total / 2 ** 20:.0f} MiB)")
            marks["next"] = 100 * done // total + 10
    return progress


def load_cifar(data, download=False, emit=print):
    from . import datasets
    if data == "bundled":
        raise CommandError("--data bundled: only Fashion-MNIST is bundled; give the "
                           "CIFAR-10 tarball or folder, or --download")
    if data not in (None, "auto") and not os.path.exists(data):
        raise CommandError(f"--data {data}: no such file or folder")
    if data not in (None, "auto"):
        return datasets.load_cifar10(data), f"CIFAR-10 from {data}"
    try:
        return datasets.load_cifar10(), "CIFAR-10"
    except datasets.DataNotFoundError as exc:
        if not download:
            raise _not_found(exc) from None
    emit(f"CIFAR-10 not found locally: downloading {datasets.CIFAR10_URL} into "
         f"{datasets.cache_dir()} (163 MiB)")
    path = datasets.download_cifar10(progress=download_progress(emit))
    emit(f"md5 {datasets.CIFAR10_MD5} verified: {path}")
    return datasets.load_cifar10(path), f"CIFAR-10 from {path}"


def prepare_gray(x, size=32):
    from . import datasets
    return datasets.scale_images(datasets.pad_images(x, size=size))


def h5py_available():
    return importlib.util.find_spec("h5py") is not None


def check_output_target(option, path, model=False):
    """Refuse, before any training, an output file that cannot be written: a folder, a
    name ending in a separator, a missing or unwritable folder; with model=True, a Keras
    file (.keras, .h5) when h5py, which writes them, is not installed."""
    if not path or not path.strip():
        raise CommandError(f"{option}: the file name is empty")
    from .saving import KERAS_SUFFIXES
    suffix = os.path.splitext(path)[1].lower()
    if model and suffix in KERAS_SUFFIXES and not h5py_available():
        raise CommandError(f"{option} {path}: writing Keras's {suffix} format needs "
                           f"h5py (pip install 'fastconv[keras]'); or give a name ending "
                           f"in .npz, fastconv's own format")
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        example = os.path.join(path, "model.npz" if model else "curves.png")
        raise CommandError(f"{option} {path}: is a folder; give a file name, e.g. "
                           f"{option} {example}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise CommandError(f"{option} {path}: exists and is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        raise CommandError(f"{option} {path}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise CommandError(f"{option} {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastconv-write-check-", dir=folder)
    except OSError as exc:
        raise CommandError(f"{option} {path}: cannot write in folder {folder} "
                           f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def save_model(model, path, name):
    """model.save(path); when that fails, save to a fallback file (the current folder,
    else the temporary folder) and raise CommandError saying where the model went."""
    try:
        model.save(path)
        return
    except (OSError, ValueError) as exc:
        reason = one_line(exc)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folders = []
    with contextlib.suppress(OSError):
        folders.append(os.getcwd())
    folders.append(tempfile.gettempdir())
    tried = []
    for folder in folders:
        fallback = os.path.join(folder, f"fastconv-{name}-{stamp}.npz")
        if os.path.lexists(fallback):
            fallback = os.path.join(folder, f"fastconv-{name}-{stamp}-{os.getpid()}.npz")
        try:
            model.save(fallback)
        except (OSError, ValueError) as exc:
            tried.append(f"{fallback} ({one_line(exc)})")
            continue
        raise CommandError(f"could not save the model to {path} ({reason}); saved it to "
                           f"{fallback} instead")
    raise CommandError(f"could not save the model to {path} ({reason}), nor to "
                       f"{'; '.join(tried)}: the trained model is lost")


def one_line(exc):
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({str(exc).strip() or 'MemoryError'})"
    else:
        text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def check_plot_option(args):
    """Before any work: matplotlib is there and the --plot file can be written."""
    if args.plot is None:
        return
    from .plotting import require_matplotlib
    try:
        require_matplotlib()
    except ImportError as exc:
        raise CommandError(f"--plot: {exc}") from None
    check_output_target("--plot", args.plot)


def require_samples(n, what, source):
    if n == 0:
        raise CommandError(f"the {what} set of {source} is empty (0 images): nothing to "
                           f"{'train on' if what == 'training' else 'evaluate'}")


def dataset_class_names(source, channels, num_classes):
    """The class names of the data evaluated, where known (None otherwise)."""
    from . import datasets
    if num_classes != 10:
        return None
    if channels == 3:
        return list(datasets.CIFAR10_CLASSES)
    if "Fashion-MNIST" in source:
        return list(datasets.FASHION_MNIST_CLASSES)
    return None


def format_confusion_matrix(matrix, class_names=None):
    """The lines printing ``matrix``: rows true classes (numbered, with their names when
    given), columns predicted classes (numbered), counts in the cells."""
    m = np.asarray(matrix)
    k = m.shape[0]
    cells = [[f"{v:.0f}" if float(v).is_integer() else f"{v:.3g}" for v in row]
             for row in m]
    width = max(3, max((len(c) for row in cells for c in row), default=1))
    labels = [f"{i} {class_names[i]}" if class_names else f"{i}" for i in range(k)]
    corner = "true \\ predicted"
    left = max(len(corner), max(len(t) for t in labels))
    lines = ["confusion matrix (rows: true class, columns: predicted class):",
             f"  {corner:<{left}}" + "".join(f" {j:>{width}}" for j in range(k))]
    for label, row in zip(labels, cells):
        lines.append(f"  {label:<{left}}" + "".join(f" {c:>{width}}" for c in row))
    return lines
