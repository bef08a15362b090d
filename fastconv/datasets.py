"""Data sets and the helpers that prepare them for training.

Loaders return ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays, like
``keras.datasets``:

* :func:`load_fashion_mnist` / :func:`load_mnist`: x (N, 28, 28), y (N,), from the four
  standard IDX files (gzipped or not). ``load_fashion_mnist(subset="bundled")`` reads the
  9,000 / 2,000 image subset shipped inside the package (no download, no path needed).
* :func:`load_cifar10`: x (N, 32, 32, 3), y (N, 1) (Keras's shape), from the official
  ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py`` folder. The batches
  are pickles; they are read with an unpickler that only admits what those files contain
  (dicts, lists, bytes, ints and plain uint8 NumPy arrays), and the tarball is read in
  memory after checking every member, so nothing is written to disk and a hostile file
  can neither run code nor place files anywhere.

Where the files are looked for when no path is given, in this order:

1. ``$FASTCONV_DATA/<name>`` (``FASTCONV_DATA`` is a folder holding one entry per data
   set: ``fashion-mnist/``, ``mnist/``, ``cifar-10-batches-py/`` or
   ``cifar-10-python.tar.gz``);
2. the download cache :func:`cache_dir` (``$FASTCONV_HOME/datasets`` when
   ``FASTCONV_HOME`` is set, else ``~/.fastconv/datasets``) and
   ``${XDG_DATA_HOME:-~/.local/share}/fastconv/datasets/<name>``;
3. where Debian's packages install them (``apt-get install dataset-fashion-mnist`` puts
   Fashion-MNIST in ``/usr/share/datasets/fashion-mnist``).

Nothing is downloaded unless asked: :func:`download_cifar10` (``fastconv train cifar10
--download``) fetches the official archive, :data:`CIFAR10_URL` (University of Toronto,
md5 :data:`CIFAR10_MD5`), into the cache through :func:`get_file`, which writes to a
temporary file, verifies the checksum, then renames it.

Helpers: :func:`to_categorical`, :func:`pad_images` (28x28 -> 32x32 for LeNet-5),
:func:`scale_images` (uint8 -> float in [0, 1]), :func:`train_validation_split`, and
augmentation for training: :func:`random_flip`, :func:`random_shift` (random crop of a
zero-padded image) and :func:`mixup`.
"""
import gzip
import math
import os
import posixpath
import tarfile
import zlib

try:
    import lzma
    _LZMA_ERRORS = (lzma.LZMAError,)
except ImportError:  # Python built without lzma: tarfile cannot open .xz files at all
    _LZMA_ERRORS = ()

import numpy as np

from ._cifar_pickle import unpickle_batch as _unpickle_batch
from ._augment import mixup, random_flip, random_shift
from ._download import DownloadError, get_file
from ._download import default_cache_dir as _default_cache_dir
from ._download import squash as _squash

__all__ = ["load_fashion_mnist", "load_mnist", "load_cifar10", "read_idx",
           "data_search_paths", "bundled_data_dir", "cache_dir", "get_file",
           "download_cifar10", "DataNotFoundError", "DownloadError", "CIFAR10_URL",
           "CIFAR10_MD5", "FASHION_MNIST_CLASSES",
           "CIFAR10_CLASSES", "to_categorical", "pad_images", "scale_images",
           "train_validation_split", "random_flip", "random_shift", "mixup"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                   "horse", "ship", "truck")

ENV_VAR = "FASTCONV_DATA"
DEBIAN_DIRS = ("/usr/share/datasets",)
_BUNDLED_PREFIX = "fashion-mnist-subset-"

#: The official CIFAR-10 archive (python version) and its md5, as published on
#: https://www.cs.toronto.edu/~kriz/cifar.html and checked by Keras and torchvision.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_SIZE = 170498071  # bytes, for messages only


class DataNotFoundError(FileNotFoundError):
    """A data set was searched for and not found; ``looked`` lists each place tried
    with the reason, ``dataset`` names the data set (for the command line's hint)."""

    def __init__(self, message, dataset, looked):
        super().__init__(message)
        self.dataset = dataset
        self.looked = list(looked)


# ----------------------------------------------------------------------------------------
# where to look
# ----------------------------------------------------------------------------------------


def bundled_data_dir():
    """The folder inside the installed package that holds the bundled data."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def cache_dir():
    """The folder downloads go to: ``$FASTCONV_HOME/datasets`` when ``FASTCONV_HOME`` is
    set, else ``~/.fastconv/datasets`` (read from the environment at call time)."""
    return _default_cache_dir()


def data_search_paths(name):
    """Folders searched, in order, for the data set ``name`` when no path is given.

    ``name`` is the data set's folder name (``"fashion-mnist"``, ``"mnist"``,
    ``"cifar-10-batches-py"``). The list follows the environment at call time.
    """
    roots = []
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append(os.path.expanduser(env))
    home = os.path.expanduser("~")
    roots.append(cache_dir())
    default_cache = os.path.join(home, ".fastconv", "datasets")
    if default_cache not in roots:
        roots.append(default_cache)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    roots.append(os.path.join(xdg, "fastconv", "datasets"))
    roots.extend(DEBIAN_DIRS)
    return [os.path.join(r, name) for r in roots]


# ----------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# ----------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
              "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _read_maybe_gzip(path):
    """The bytes of ``path``, decompressed when it starts with the gzip magic number."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupted or truncated gzip data ({exc})") from None


def read_idx(path):
    """Read one IDX file (gzipped or not) into a NumPy array in native byte order.

    The header is validated: two zero bytes, a known type code, the number of
    dimensions, and a payload of exactly the size the dimensions announce. A truncated,
    padded or foreign file raises ValueError naming the file.
    """
    path = os.fspath(path)
    data = _read_maybe_gzip(path)
    if len(data) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (magic number "
                         f"0x{int.from_bytes(data[:4], 'big'):08X})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, "
                         f"{ndim} dimensions need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_TYPES[code]
    # Python integers: np.prod in int64 wraps (2**31 * 2**31 * 4 == 0 mod 2**64)
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {what}: header announces shape {shape} "
                         f"({expected} bytes in all), file holds {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find_idx_file(folder, stem):
    """The file for ``stem`` in ``folder`` (``stem``, ``stem.gz``, or the dotted
    variant ``train-images.idx3-ubyte`` some mirrors use), or None."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    return None


def _idx_set_files(folder, prefix=""):
    """{key: path} of the four IDX files in ``folder``; missing ones map to None."""
    return {k: _find_idx_file(folder, prefix + stem) for k, stem in _IDX_FILES.items()}


def _load_idx_set(files, num_classes=10):
    arrays = {k: read_idx(p) for k, p in files.items()}
    for k in ("x_train", "x_test"):
        a = arrays[k]
        if a.dtype != np.uint8 or a.ndim != 3:
            raise ValueError(f"{files[k]}: expected uint8 images of shape (N, rows, cols), "
                             f"got {a.dtype} {a.shape}")
    for k in ("y_train", "y_test"):
        a = arrays[k]
        if a.dtype != np.uint8 or a.ndim != 1:
            raise ValueError(f"{files[k]}: expected uint8 labels of shape (N,), "
                             f"got {a.dtype} {a.shape}")
        if a.size and int(a.max()) >= num_classes:
            raise ValueError(f"{files[k]}: labels must lie in [0, {num_classes - 1}], "
                             f"found {int(a.max())}")
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if len(x) != len(y):
            raise ValueError(f"{split} images and labels differ in count: "
                             f"{files['x_' + split]} holds {len(x)} images, "
                             f"{files['y_' + split]} holds {len(y)} labels")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"train images {arrays['x_train'].shape[1:]} and test images "
                         f"{arrays['x_test'].shape[1:]} differ in size")
    return ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))


def _describe_missing(files):
    missing = [_IDX_FILES[k] + "[.gz]" for k, p in files.items() if p is None]
    return "missing " + ", ".join(missing)


def _load_idx_dataset(name, path, title):
    looked = []
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"{title}: path {path!r} does not exist")
        if not os.path.isdir(path):
            raise ValueError(f"{title}: path must be a folder holding the four IDX files, "
                             f"got the file {path!r}")
        candidates = [path, os.path.join(path, name)]
    else:
        candidates = data_search_paths(name)
    for folder in candidates:
        if not os.path.isdir(folder):
            looked.append(f"{folder} (no such folder)")
            continue
        files = _idx_set_files(folder)
        if all(files.values()):
            return _load_idx_set(files)
        looked.append(f"{folder} ({_describe_missing(files)})")
    hint = ("" if path is not None else
            f"; set {ENV_VAR} to a folder holding {name}/, or pass path=")
    if name == "fashion-mnist" and path is None:
        hint += (", or run 'apt-get install dataset-fashion-mnist', or use "
                 "load_fashion_mnist(subset=\"bundled\")")
    raise DataNotFoundError(f"{title} not found; looked in: " + "; ".join(looked) + hint,
                            name, looked)


def load_fashion_mnist(path=None, subset=None):
    """Fashion-MNIST (Zalando, MIT licence) as ``((x_train, y_train), (x_test, y_test))``.

    x: uint8 (N, 28, 28), y: uint8 (N,) with classes :data:`FASHION_MNIST_CLASSES`.

    Parameters
    ----------
    path : str or path-like, optional
        A folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
        ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` (or holding a
        ``fashion-mnist/`` folder with them). Without it the folders of
        :func:`data_search_paths` are searched and the error lists each of them.
    subset : {None, "full", "bundled"}
        ``"bundled"`` returns the subset shipped inside the package: 9,000 training and
        2,000 test images, class-balanced, drawn with a fixed seed from the real files
        (see tools/make_bundled_subset.py). It cannot be combined with ``path``.
    """
    if subset not in (None, "full", "bundled"):
        raise ValueError(f"subset must be None, 'full' or 'bundled', got {subset!r}")
    if subset == "bundled":
        if path is not None:
            raise ValueError(f"subset='bundled' reads the data inside the package; "
                             f"do not pass path (got {path!r})")
        folder = bundled_data_dir()
        files = _idx_set_files(folder, _BUNDLED_PREFIX)
        if not all(files.values()):
            raise FileNotFoundError(f"bundled Fashion-MNIST subset incomplete in {folder} "
                                    f"({_describe_missing(files)}); reinstall fastconv")
        return _load_idx_set(files)
    return _load_idx_dataset("fashion-mnist", path, "Fashion-MNIST")


def load_mnist(path=None):
    """MNIST digits as ``((x_train, y_train), (x_test, y_test))``; same files, format and
    search order as :func:`load_fashion_mnist`, in folders named ``mnist``."""
    return _load_idx_dataset("mnist", path, "MNIST")


# ----------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TARBALL = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"




def _check_member(tar_path, m):
    name = m.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{tar_path}: unsafe member {name!r} (absolute path or '..'); "
                         f"refusing to read this archive")
    if not (m.isfile() or m.isdir()):
        kind = "link" if (m.issym() or m.islnk()) else "special file"
        raise ValueError(f"{tar_path}: unsafe member {name!r} ({kind}); "
                         f"refusing to read this archive")


def _read_cifar_tarball(path):
    """{batch name: bytes} from the official tarball, read in memory after checking
    every member (no absolute paths, no '..', no links or device files)."""
    wanted = set(_CIFAR_TRAIN) | {_CIFAR_TEST}
    blobs = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                _check_member(path, m)
                norm = posixpath.normpath(m.name)
                parent, base = posixpath.split(norm)
                if m.isfile() and base in wanted and posixpath.basename(parent) == _CIFAR_DIR:
                    blobs[base] = tar.extractfile(m).read()
            # the compressed stream to its end: its checks (xz's block checks and
            # index, gzip's CRC) run there, after the tar's last member -- without
            # this a corrupted block reached the pickle parser as garbage
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, OSError, zlib.error) + _LZMA_ERRORS as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable CIFAR-10 tarball, corrupted or "
                         f"truncated ({type(exc).__name__}: {_squash(exc)})") from None
    missing = sorted(wanted - set(blobs))
    if missing:
        raise ValueError(f"{path}: the archive lacks {_CIFAR_DIR}/ "
                         f"{', '.join(missing)}")
    return blobs


def _read_cifar_folder(folder):
    blobs = {}
    missing = []
    for name in _CIFAR_TRAIN + (_CIFAR_TEST,):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                blobs[name] = f.read()
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"{folder}: CIFAR-10 folder lacks {', '.join(missing)}")
    return blobs


def _locate_cifar10(path):
    """('tar'|'dir', location) for a path or, with path None, the search folders."""
    looked = []
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isfile(path):
            return "tar", path
        if not os.path.isdir(path):
            raise FileNotFoundError(f"CIFAR-10: path {path!r} does not exist")
        cands = [path]
    else:
        cands = [os.path.dirname(p) for p in data_search_paths(_CIFAR_DIR)]
    for root in cands:
        for d in (root, os.path.join(root, _CIFAR_DIR)):
            if any(os.path.isfile(os.path.join(d, n))
                   for n in _CIFAR_TRAIN + (_CIFAR_TEST, "batches.meta")):
                return "dir", d
        tb = os.path.join(root, _CIFAR_TARBALL)
        if os.path.isfile(tb):
            return "tar", tb
        looked.append(f"{root} (no {_CIFAR_DIR}/ nor {_CIFAR_TARBALL})")
    hint = "" if path is not None else (
        f"; pass path= (the official {_CIFAR_TARBALL} or its {_CIFAR_DIR} folder), set "
        f"{ENV_VAR} to a folder holding either, or call download_cifar10() to fetch "
        f"{CIFAR10_URL} into {cache_dir()}")
    raise DataNotFoundError("CIFAR-10 not found; looked in: " + "; ".join(looked) + hint,
                            "cifar-10", looked)


def load_cifar10(path=None):
    """CIFAR-10 as ``((x_train, y_train), (x_test, y_test))``, like Keras.

    x: uint8 (N, 32, 32, 3); y: uint8 (N, 1), classes :data:`CIFAR10_CLASSES`.

    ``path`` is the official ``cifar-10-python.tar.gz``, its extracted
    ``cifar-10-batches-py`` folder, or a folder holding either; without it the folders of
    :func:`data_search_paths` are searched. Pickles are loaded with a restricted unpickler
    (no code can run) and the tarball is read in memory after every member is checked.
    Corrupted, truncated or foreign files raise ValueError naming the file; data found
    nowhere raises :class:`DataNotFoundError` (a FileNotFoundError) listing each place.

    The data are not downloaded here: :func:`download_cifar10` fetches the official
    archive into :func:`cache_dir`, where this function finds it.
    """
    kind, where = _locate_cifar10(path)
    blobs = _read_cifar_tarball(where) if kind == "tar" else _read_cifar_folder(where)

    def load(name):
        label = f"{where}:{name}" if kind == "tar" else os.path.join(where, name)
        return _unpickle_batch(blobs.pop(name), label)

    train = [load(n) for n in _CIFAR_TRAIN]
    x_test, y_test = load(_CIFAR_TEST)
    x_train = np.concatenate([b[0] for b in train])
    y_train = np.concatenate([b[1] for b in train])
    return (x_train, y_train), (x_test, y_test)


# ----------------------------------------------------------------------------------------
# downloads (only when asked)
# ----------------------------------------------------------------------------------------

def download_cifar10(cache_dir=None, timeout=60.0, progress=None):
    """Fetch the official CIFAR-10 archive (:data:`CIFAR10_URL`, about 163 MiB) into
    ``cache_dir`` (default :func:`cache_dir`) unless a copy with the right md5
    (:data:`CIFAR10_MD5`) is already there; returns the archive's path, which
    :func:`load_cifar10` reads (and, in the default cache, finds by itself)."""
    return get_file(_CIFAR_TARBALL, CIFAR10_URL, md5_hash=CIFAR10_MD5,
                    cache_dir=cache_dir, timeout=timeout, progress=progress)


# ----------------------------------------------------------------------------------------
# preparation helpers
# ----------------------------------------------------------------------------------------


def _labels_1d(y, name="y"):
    y = np.asarray(y)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.ndim != 1:
        raise ValueError(f"{name} must hold integer labels of shape (N,) or (N, 1), "
                         f"got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(y == np.round(y)):
            raise TypeError(f"{name} must hold integer labels, got dtype {y.dtype}")
    return y.astype(np.int64)


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer labels like ``keras.utils.to_categorical``.

    ``y`` of shape (N,) or (N, 1) -> (N, num_classes); ``num_classes`` defaults to
    ``max(y) + 1``. Negative labels or labels >= num_classes raise ValueError.
    """
    labels = _labels_1d(y)
    if labels.size and labels.min() < 0:
        raise ValueError(f"y must hold labels >= 0, got {int(labels.min())}")
    top = int(labels.max()) + 1 if labels.size else 0
    if num_classes is None:
        num_classes = top
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if top > num_classes:
        raise ValueError(f"y holds label {top - 1}, outside [0, {num_classes - 1}] "
                         f"for num_classes={num_classes}")
    out = np.zeros((labels.size, int(num_classes)), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out


def pad_images(x, size=32, value=0):
    """Pad images evenly with ``value`` up to ``size`` x ``size`` (LeNet-5 takes 28x28
    Fashion-MNIST/MNIST digits padded to 32x32).

    ``x``: (N, H, W) -> (N, size, size, 1) (a channel axis is added), or
    (N, H, W, C) -> (N, size, size, C); channels_last, the Keras default. An odd
    difference puts the extra row/column at the bottom/right.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, H, W) or (N, H, W, C), got {x.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {size!r}")
    h, w = x.shape[1:3]
    if size < h or size < w:
        raise ValueError(f"size must be >= the image size {h}x{w}, got {size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)),
                  mode="constant", constant_values=value)


def scale_images(x, dtype="float32"):
    """uint8 pixels -> floats in [0, 1] (x / 255)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"x must be uint8 pixel values, got dtype {x.dtype}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return x.astype(dtype) / dtype.type(255)


def train_validation_split(x, y, validation_fraction=0.1, seed=None, stratify=True):
    """Split ``(x, y)`` into ``(x_train, y_train), (x_val, y_val)``.

    A random split drawn with ``seed`` (None draws fresh randomness); with ``stratify``
    (and integer or one-hot labels) each class keeps its share in both parts.
    The order inside each part is the original order.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if isinstance(validation_fraction, bool) or not isinstance(
            validation_fraction, (float, int, np.floating)) or \
            not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be a number in (0, 1), got "
                         f"{validation_fraction!r}")
    n = len(x)
    n_val = int(round(n * float(validation_fraction)))
    if n_val == 0 or n_val == n:
        raise ValueError(f"validation_fraction={validation_fraction} of {n} samples "
                         f"leaves an empty part")
    rng = np.random.default_rng(seed)
    if stratify:
        labels = y.argmax(axis=1) if (y.ndim == 2 and y.shape[1] > 1) else _labels_1d(y)
        val = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = int(round(len(idx) * float(validation_fraction)))
            val.append(rng.choice(idx, size=k, replace=False))
        val_idx = np.concatenate(val)
    else:
        val_idx = rng.choice(n, size=n_val, replace=False)
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    return (x[~mask], y[~mask]), (x[mask], y[mask])
