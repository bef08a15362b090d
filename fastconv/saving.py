"""fastconv's model file: one ``.npz`` archive, no pickle.

The archive holds exactly these members, each a ``.npy`` file:

- ``config.npy``: a 0-d unicode array, a JSON document (the architecture resolved
  against ``fastconv.layers.LAYER_CLASSES``, compile arguments, optimizer iteration
  count, random generator states, the number of arrays of each kind);
- ``weight_NNNNN.npy``: the model's weights in Keras's order (float32 or float64);
- ``optimizer_NNNNN.npy``: the optimizer's slot arrays, variable by variable.

Writes go to a temporary file in the target's folder, then replace the target
(os.replace), so an interrupted save leaves any previous file intact.  A new file gets
the mode the umask gives; a replaced file keeps its mode.

Reading trusts nothing in the file.  Only the members above are read, each only after
its declared sizes, compression method and ``.npy`` header were checked against the
archive's size and against the shapes the architecture gives, so a small file cannot make
the loader allocate more than the model it describes.  Every field of the JSON document
is checked for type and range.  Whatever is wrong, the error is a ModelFileError (a
ValueError) that names the file; a missing path raises FileNotFoundError.
"""
import copy
import json
import numbers
import os
import re
import secrets
import stat
import zipfile

import numpy as np

from . import _random
from . import initializers as _initializers
from . import losses as _losses
from . import optimizers as _optimizers
from ._serialization import deserialize

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "ModelFileError"]

FILE_FORMAT = "fastconv.Sequential"
FILE_VERSION = 1
WEIGHTS_FORMAT = "fastconv.weights"
WEIGHTS_VERSION = 1

#: suffixes of Keras's own files, which fastconv cannot write or read yet
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")

# Limits of the reader.  The config of any real model is a few kilobytes; deflate never
# expands data by more than about 1032 times, so a larger declared ratio is a lie.
_MAX_CONFIG_BYTES = 4 * 2**20
_MAX_LAYERS = 1000        # Sequential.from_config's time grows with the square
_MAX_DEFLATE_RATIO = 1032
_MAX_NPY_HEADER = 10000
_MAX_INT = 2**53          # iterations and sizes above this are not exact as floats
_MAX_DIM = 2**31 - 1      # one axis of an input shape
_MEMBER = re.compile(r"(config|weight_[0-9]{5,}|optimizer_[0-9]{5,})\.npy")
_KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class ModelFileError(ValueError):
    """A file given to load_model is not a readable fastconv model."""


# --------------------------------------------------------------------------- saving
def _fspath(filepath):
    path = os.fspath(filepath)
    return path if isinstance(path, str) else os.fsdecode(path)


def _refuse_keras_suffix(path, what="save to"):
    name = path.lower()
    suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    if suffix in KERAS_SUFFIXES or suffix == ".weights.h5":
        raise ValueError(f"cannot {what} {path!r}: Keras {suffix} files are not "
                         f"supported yet; fastconv saves its own format, give a path "
                         f"ending in '.npz'")


def save_model(model, filepath):
    """Write architecture, weights, optimizer state and generator states to one file.

    The data go to a temporary file in the same directory, then replace
    ``filepath`` atomically (os.replace).  A new file is created with the permissions
    the umask allows; an existing file keeps its mode.  Keras's own formats
    (``.keras``, ``.h5``) are refused: fastconv writes ``.npz`` files only.
    """
    path = _fspath(filepath)
    _refuse_keras_suffix(path)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         "data before save()")
    arrays = {}
    for i, w in enumerate(model.weights):
        arrays[f"weight_{i:05d}"] = w
    iterations, slots = (0, [])
    if model.optimizer is not None:
        iterations, slots = model.optimizer.get_state()
    for i, s in enumerate(slots):
        arrays[f"optimizer_{i:05d}"] = s
    doc = {"format": FILE_FORMAT, "format_version": FILE_VERSION,
           "model": {"class_name": "Sequential", "config": model.get_config()},
           "compile": model._compile_config(),
           "optimizer_iterations": iterations,
           "n_weights": len(model.weights), "n_optimizer_arrays": len(slots),
           "random_state": {
               "model": _random.generator_state(model._rng),
               "layers": {layer.name: _random.generator_state(layer.generator)
                          for layer in model._layers if hasattr(layer, "generator")}}}
    arrays["config"] = np.array(json.dumps(doc, allow_nan=False))
    _write_atomically(path, lambda f: np.savez(f, **arrays))


def save_weights(model, filepath):
    """Write the model's weights only (Keras's order) to one ``.npz`` file.

    The members are ``config.npy`` (a JSON document: format, version, number of
    arrays) and ``weight_NNNNN.npy``; written atomically like save_model.  Keras's
    formats (``.weights.h5``, ``.h5``, ``.keras``) are refused.
    """
    path = _fspath(filepath)
    _refuse_keras_suffix(path)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         "data before save_weights()")
    weights = model.weights
    arrays = {f"weight_{i:05d}": w for i, w in enumerate(weights)}
    doc = {"format": WEIGHTS_FORMAT, "format_version": WEIGHTS_VERSION,
           "n_weights": len(weights)}
    arrays["config"] = np.array(json.dumps(doc, allow_nan=False))
    _write_atomically(path, lambda f: np.savez(f, **arrays))


def _write_atomically(path, write):
    """Call ``write(binary file)`` on a temporary file beside ``path``, then move it to
    ``path``.  The temporary file is removed whatever goes wrong (KeyboardInterrupt
    included)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
        mode = st.st_mode & 0o777 if stat.S_ISREG(st.st_mode) else None
    except OSError:
        mode = None  # a new file: os.open applies the umask to 0o666
    tmp = None
    try:
        fd, tmp = _create_temporary(directory, os.path.basename(path))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)  # the permissions of the file it replaces
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _create_temporary(directory, base):
    """(fd, path) of a new file ``<base>.<random>.tmp`` in ``directory``, created with
    mode 0o666 so that the umask (and any default ACL) decides its permissions, as for
    any new file; tempfile.mkstemp would force 0o600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f"{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name for {base!r} in {directory!r}")


# --------------------------------------------------------------------------- loading
def load_model(filepath, compile=True):
    """Rebuild a model written by ``Sequential.save``: architecture, weights and, with
    ``compile=True``, optimizer (with its state), loss, metrics and generator states,
    so that training resumes exactly where it stopped.

    Raises ModelFileError (a ValueError naming the file) for anything that is not an
    intact fastconv model file, FileNotFoundError when ``filepath`` does not exist.
    """
    path = os.fspath(filepath)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    f = _open_regular(path)
    try:
        with f:
            return _load(path, f, compile)
    except ModelFileError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"model file {path!r} is inconsistent or corrupted "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from None
    except Exception as exc:  # anything else a damaged file can provoke
        raise ModelFileError(f"model file {path!r} is truncated or corrupted "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from exc


def load_weights(model, filepath):
    """Copy the weights in ``filepath`` (written by save_weights, or a whole model
    file written by save_model) into the built ``model``.

    Every array is checked against the model's weight shapes and dtypes and read
    before any weight changes, so a bad file leaves the model as it was.  Raises
    ModelFileError (naming the file) for a file that is not such an archive or does
    not fit the model, FileNotFoundError when ``filepath`` does not exist.
    """
    path = _fspath(filepath)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         "data before load_weights()")
    f = _open_regular(path)
    try:
        with f:
            arrays = _read_weights(path, f, model)
    except ModelFileError:
        raise
    except Exception as exc:  # anything else a damaged file can provoke
        raise ModelFileError(f"weights file {path!r} is truncated or corrupted "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from None
    model.set_weights(arrays)


def _read_weights(path, f, model):
    archive = _Archive(path, f)
    text = archive.read_config()
    try:
        doc = json.loads(text, parse_constant=_reject_constant,
                         parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"weights file {path!r} has an unreadable config "
                             f"({type(exc).__name__})") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt == FILE_FORMAT:  # a whole model: its weights
        doc = _parse_config(path, text)
        archive.check_members(doc["n_weights"], doc["n_optimizer_arrays"])
    elif fmt == WEIGHTS_FORMAT:
        keys = {"format", "format_version", "n_weights"}
        if set(doc) != keys:
            raise ModelFileError(f"weights file {path!r} has an invalid config: fields "
                                 f"{sorted(set(doc) ^ keys)} missing or unexpected")
        if not _is_int(doc["format_version"]) or \
                doc["format_version"] != WEIGHTS_VERSION:
            raise ModelFileError(f"weights file {path!r} has format version "
                                 f"{str(doc['format_version'])[:40]!r}; this fastconv "
                                 f"reads version {WEIGHTS_VERSION}")
        if not _is_int(doc["n_weights"]):
            raise ModelFileError(f"weights file {path!r} has an invalid config: "
                                 f"n_weights must be a non-negative int, got "
                                 f"{str(doc['n_weights'])[:40]}")
        archive.check_members(doc["n_weights"], 0)
    else:
        raise ModelFileError(f"{path!r} is not a fastconv weights file (format "
                             f"{str(fmt)[:80]!r})")
    targets = model.weights
    if doc["n_weights"] != len(targets):
        raise ModelFileError(f"weights file {path!r} holds {doc['n_weights']} weight "
                             f"arrays, model {model.name!r} has {len(targets)}")
    names = [f"{layer.name}.{n}" for layer in model._layers
             for n in layer._weight_names]
    for i, (w, name) in enumerate(zip(targets, names)):
        archive.check_array(f"weight_{i:05d}", w.shape, w.dtype, name)
    return [archive.read_array(f"weight_{i:05d}") for i in range(len(targets))]


def _open_regular(path):
    """An open binary file object for the regular file ``path``.

    Opens without blocking (a FIFO would otherwise wait for a writer) and refuses
    anything that is not a regular file.  FileNotFoundError passes through."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path!r}: {exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise ModelFileError(f"cannot read model file {path!r}: it is {kind}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _load(path, f, compile):
    from .models import Sequential

    archive = _Archive(path, f)
    doc = _parse_config(path, archive.read_config())
    archive.check_members(doc["n_weights"], doc["n_optimizer_arrays"])
    model_cfg = doc["model"]["config"]

    # Check every weight header against the shapes the architecture gives, before the
    # model (and so its weights) is built.
    plan = _weight_plan(path, model_cfg)
    if len(plan) != doc["n_weights"]:
        raise ModelFileError(f"model file {path!r}: the architecture has {len(plan)} "
                             f"weight arrays, the file says {doc['n_weights']}")
    for i, (name, shape, dtype) in enumerate(plan):
        archive.check_array(f"weight_{i:05d}", shape, dtype, name)

    model = Sequential.from_config(model_cfg)
    built = [(w.shape, w.dtype) for w in model.weights]
    if built != [(shape, dtype) for _, shape, dtype in plan]:
        raise ModelFileError(f"model file {path!r}: the built model's weights "
                             f"{[s for s, _ in built]} differ from the file's")
    i = 0
    for layer in model._layers:
        k = len(layer.weights)
        if k:
            layer.set_weights([archive.read_array(f"weight_{j:05d}")
                               for j in range(i, i + k)])
        i += k

    comp = doc["compile"]
    if compile and comp is not None:
        model.compile(optimizer=deserialize(comp["optimizer"], _optimizers._CLASSES,
                                            "optimizer"),
                      loss=None if comp["loss"] is None else deserialize(
                          comp["loss"], _losses._CLASSES, "loss"),
                      metrics=comp["metrics"])
        variables = [w for layer in model._layers if layer.trainable
                     for w in layer.weights]
        n_o = doc["n_optimizer_arrays"]
        per = model.optimizer._n_slots()
        if n_o not in (0, per * len(variables)):
            raise ModelFileError(f"model file {path!r}: optimizer "
                                 f"{type(model.optimizer).__name__} keeps "
                                 f"{per * len(variables)} state arrays for this model, "
                                 f"the file has {n_o}")
        for j in range(n_o):
            v = variables[j // per]
            archive.check_array(f"optimizer_{j:05d}", v.shape, v.dtype,
                                "optimizer state")
        slots = [archive.read_array(f"optimizer_{j:05d}") for j in range(n_o)]
        model.optimizer.set_state(doc["optimizer_iterations"], slots, variables)

    rs = doc["random_state"]
    model._rng = _random.generator_from_state(rs["model"], "model generator")
    with_generator = {layer.name: layer for layer in model._layers
                      if hasattr(layer, "generator")}
    if set(rs["layers"]) != set(with_generator):
        raise ModelFileError(f"model file {path!r}: random_state.layers names "
                             f"{sorted(rs['layers'])}, the layers with generators are "
                             f"{sorted(with_generator)}")
    for name, layer in with_generator.items():
        layer.generator = _random.generator_from_state(
            rs["layers"][name], f"generator of layer {name!r}")
    return model


class _Archive:
    """The members of a model file, read with every size checked first."""

    def __init__(self, path, f):
        self.path = path
        magic = f.read(8)
        f.seek(0)
        if magic.startswith(_HDF5_MAGIC):
            raise ModelFileError(f"{path!r} is an HDF5 file (Keras .h5?): Keras files "
                                 "are not supported yet; fastconv reads the .npz files "
                                 "model.save writes")
        if magic[:4] != b"PK\x03\x04":
            raise ModelFileError(f"{path!r} is not a fastconv model file (not an .npz "
                                 f"archive; it starts with {magic[:4]!r})")
        self.file_size = os.fstat(f.fileno()).st_size
        try:
            self.zip = zipfile.ZipFile(f)
            infos = self.zip.infolist()
        except Exception as exc:
            raise ModelFileError(f"model file {path!r} is truncated or corrupted "
                                 f"({type(exc).__name__}: {exc})") from None
        names = [info.filename for info in infos]
        if "config.npy" not in names:
            if path.lower().endswith(".keras") or _KERAS_MEMBERS & set(names):
                raise ModelFileError(f"{path!r} looks like a Keras .keras file: Keras "
                                     "files are not supported yet; fastconv reads the "
                                     ".npz files model.save writes")
            raise ModelFileError(f"{path!r} is an .npz archive but not a fastconv model "
                                 f"file (no 'config' entry; entries: "
                                 f"{[n[:-4] if n.endswith('.npy') else n for n in names[:5]]})")
        self.members = {}
        for info in infos:
            name = info.filename
            if not _MEMBER.fullmatch(name):
                raise ModelFileError(f"model file {path!r} has an unexpected entry "
                                     f"{name[:80]!r}")
            if name[:-4] in self.members:
                raise ModelFileError(f"model file {path!r} has entry {name!r} twice")
            self._check_info(info)
            self.members[name[:-4]] = info
        self._headers = {}

    def _check_info(self, info):
        where = f"model file {self.path!r}, entry {info.filename!r}"
        if info.flag_bits & 0x1:
            raise ModelFileError(f"{where} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{where} uses compression method "
                                 f"{info.compress_type}; only stored (0) and deflated "
                                 f"(8) are read")
        if info.header_offset < 0 or \
                info.header_offset + info.compress_size > self.file_size:
            raise ModelFileError(f"{where} extends past the end of the file "
                                 f"({self.file_size} bytes): truncated or corrupted")
        if info.compress_type == zipfile.ZIP_STORED and \
                info.compress_size != info.file_size:
            raise ModelFileError(f"{where} is stored with {info.compress_size} bytes "
                                 f"but declares {info.file_size}: corrupted")
        if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 64:
            raise ModelFileError(f"{where} declares {info.file_size} bytes from "
                                 f"{info.compress_size} compressed: corrupted")

    def check_members(self, n_weights, n_optimizer):
        """The archive holds exactly config, n_weights weights and n_optimizer slots."""
        if n_weights + n_optimizer + 1 != len(self.members):
            raise ModelFileError(
                f"model file {self.path!r} says it holds {n_weights} weight and "
                f"{n_optimizer} optimizer arrays, but has {len(self.members) - 1} "
                f"arrays")
        expected = {"config"} | {f"weight_{i:05d}" for i in range(n_weights)} \
            | {f"optimizer_{i:05d}" for i in range(n_optimizer)}
        if expected != set(self.members):
            odd = sorted(set(self.members) ^ expected)[:5]
            raise ModelFileError(f"model file {self.path!r} does not hold the arrays "
                                 f"its config names (missing or unexpected: {odd})")

    def _header(self, name):
        """(shape, fortran_order, dtype, header length) of member ``name``."""
        if name not in self._headers:
            try:
                with self.zip.open(self.members[name]) as m:
                    version = np.lib.format.read_magic(m)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                            m, max_header_size=_MAX_NPY_HEADER)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                            m, max_header_size=_MAX_NPY_HEADER)
                    else:
                        raise ValueError(f".npy format version {version} is not read")
                    offset = m.tell()
            except Exception as exc:  # literal_eval, zlib, zipfile: many kinds
                raise ModelFileError(f"model file {self.path!r}, entry {name!r}: "
                                     f"unreadable .npy header, truncated or corrupted "
                                     f"({type(exc).__name__}: {exc})") from None
            self._headers[name] = (tuple(shape), bool(fortran), np.dtype(dtype), offset)
        return self._headers[name]

    def _check_size(self, name, shape, dtype):
        where = f"model file {self.path!r}, entry {name!r}"
        _, _, _, offset = self._header(name)
        nbytes = dtype.itemsize
        for s in shape:
            nbytes *= s
        if offset + nbytes != self.members[name].file_size:
            raise ModelFileError(f"{where}: an array of shape {shape} and dtype "
                                 f"{dtype} does not fill the entry's "
                                 f"{self.members[name].file_size} bytes: truncated or "
                                 f"corrupted")

    def check_array(self, name, shape, dtype, what):
        """Member ``name`` holds an array of this shape and dtype (header only)."""
        got_shape, _, got_dtype, _ = self._header(name)
        dtype = np.dtype(dtype)
        if got_dtype.kind != "f" or got_dtype.itemsize != dtype.itemsize:
            raise ModelFileError(f"model file {self.path!r}, entry {name!r} "
                                 f"({what}): dtype must be {dtype}, got {got_dtype}")
        if got_shape != tuple(shape):
            raise ModelFileError(f"model file {self.path!r}, entry {name!r}: {what} "
                                 f"must have shape {tuple(shape)}, got {got_shape}")
        self._check_size(name, got_shape, got_dtype)

    def read_array(self, name):
        """The array in member ``name`` (check_array first)."""
        shape, fortran, dtype, offset = self._header(name)
        size = self.members[name].file_size - offset
        with self.zip.open(self.members[name]) as m:
            m.read(offset)
            data = m.read(size)
            if len(data) != size or m.read(1):
                raise ModelFileError(f"model file {self.path!r}, entry {name!r} is "
                                     "truncated or corrupted")
        arr = np.frombuffer(data, dtype=dtype)
        if dtype.kind == "f":
            arr = arr.astype(dtype.newbyteorder("="), copy=False)
        if fortran:
            return arr.reshape(shape[::-1]).T
        return arr.reshape(shape)

    def read_config(self):
        """The config entry's text."""
        info = self.members["config"]
        if info.file_size > _MAX_CONFIG_BYTES:
            raise ModelFileError(f"model file {self.path!r}: the config entry declares "
                                 f"{info.file_size} bytes, more than a config can be")
        shape, _, dtype, _ = self._header("config")
        if shape != () or dtype.kind != "U":
            raise ModelFileError(f"model file {self.path!r}: the config entry must be "
                                 f"a unicode string, got shape {shape} dtype {dtype}")
        self._check_size("config", shape, dtype)
        try:
            return str(self.read_array("config")[()])
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"model file {self.path!r} is truncated or corrupted "
                                 f"(config entry: {type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- the config
def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in a model file")


def _finite_float(text):
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key[:40]!r} appears twice")
        out[key] = value
    return out


def _is_int(value, low=0, high=_MAX_INT):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and low <= value <= high)


def _parse_config(path, text):
    """The config document, with the type and range of every field checked."""
    def bad(what):
        return ModelFileError(f"model file {path!r} has an invalid config: {what}")

    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ModelFileError(f"model file {path!r} has an unreadable config (nested "
                             f"too deeply)") from None
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"model file {path!r} has an unreadable config "
                             f"({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else None
        raise ModelFileError(f"{path!r} is not a fastconv model file (format "
                             f"{str(fmt)[:80]!r})")
    version = doc.get("format_version")
    if not _is_int(version) or version != FILE_VERSION:
        raise ModelFileError(f"model file {path!r} has format version "
                             f"{str(version)[:40]!r}; this fastconv reads version "
                             f"{FILE_VERSION}")
    keys = {"format", "format_version", "model", "compile", "optimizer_iterations",
            "n_weights", "n_optimizer_arrays", "random_state"}
    if set(doc) != keys:
        raise bad(f"fields {sorted(set(doc) ^ keys)} missing or unexpected")
    for key in ("n_weights", "n_optimizer_arrays", "optimizer_iterations"):
        if not _is_int(doc[key]):
            raise bad(f"{key} must be a non-negative int below 2**53, got "
                      f"{str(doc[key])[:40]}")
    model = doc["model"]
    if not isinstance(model, dict) or set(model) != {"class_name", "config"} \
            or model["class_name"] != "Sequential":
        raise bad("model must be {'class_name': 'Sequential', 'config': {...}}")
    cfg = model["config"]
    if not isinstance(cfg, dict) or set(cfg) != {"name", "input_shape", "layers"}:
        raise bad("model.config must have exactly name, input_shape and layers")
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise bad("model.config.name must be a non-empty string")
    shape = cfg["input_shape"]
    if not isinstance(shape, list) or not shape \
            or not all(_is_int(s, 1, _MAX_DIM) for s in shape):
        raise bad(f"model.config.input_shape must be a list of positive ints, got "
                  f"{str(shape)[:80]}")
    if not isinstance(cfg["layers"], list) or not 1 <= len(cfg["layers"]) <= _MAX_LAYERS:
        raise bad(f"model.config.layers must be a list of 1 to {_MAX_LAYERS} layers")
    comp = doc["compile"]
    if comp is None:
        if doc["n_optimizer_arrays"] or doc["optimizer_iterations"]:
            raise bad("optimizer state without compile arguments")
    elif not isinstance(comp, dict) or set(comp) != {"optimizer", "loss", "metrics"}:
        raise bad("compile must be null or have exactly optimizer, loss and metrics")
    elif not isinstance(comp["metrics"], list) \
            or not all(isinstance(m, str) for m in comp["metrics"]):
        raise bad("compile.metrics must be a list of names")
    rs = doc["random_state"]
    if not isinstance(rs, dict) or set(rs) != {"model", "layers"} \
            or not isinstance(rs["layers"], dict):
        raise bad("random_state must have a model state and a layers dict")
    return doc


def _weight_plan(path, cfg):
    """[(description, shape, dtype)] of the weights the architecture ``cfg`` creates,
    worked out without allocating them: each layer is built on a copy whose initializers
    only record what they are asked for."""
    from .layers import LAYER_CLASSES, Layer

    gen = _random.get_generator()
    saved = gen.bit_generator.state  # deserializing seeds generators from it
    try:
        layers = [deserialize(c, LAYER_CLASSES, "layer") for c in cfg["layers"]]
    finally:
        gen.bit_generator.state = saved
    shape = (None,) + tuple(cfg["input_shape"])
    plan = []
    for layer in layers:
        if not isinstance(layer, Layer):
            raise ModelFileError(f"model file {path!r}: the config has a "
                                 f"{type(layer).__name__} among its layers (an input "
                                 f"shape is given by model.config.input_shape)")
        dry = copy.copy(layer)
        asked = []
        for attr, value in vars(layer).items():
            if isinstance(value, _initializers.Initializer):
                setattr(dry, attr, _Recorder(asked))
        dry.build(shape)
        names = list(dry._weight_names)
        if len(asked) != len(names):
            raise ModelFileError(f"model file {path!r}: cannot plan the weights of "
                                 f"layer {layer.name!r}")
        plan += [(f"{layer.name}.{n}", s, d) for n, (s, d) in zip(names, asked)]
        shape = dry.compute_output_shape(shape)
    return plan


class _Recorder(_initializers.Initializer):
    """An initializer that notes (shape, dtype) and allocates nothing."""

    def __init__(self, asked):
        self.asked = asked

    def __call__(self, shape, dtype="float32"):
        self.asked.append((tuple(int(s) for s in shape), np.dtype(dtype)))
        return np.empty((0,), dtype=dtype)
