"""Reading fastconv's model and weights files (fastconv/saving.py writes them and
describes the format): every check of a file's bytes before it is trusted.

- open_regular: the path is a regular file (a FIFO or a device is refused unread);
- Archive: the zip members are exactly the expected ``.npy`` entries, each one's
  declared sizes, compression method and ``.npy`` header checked against the archive's
  size and against the shape and dtype the caller expects, before any data are read;
- parse_config / parse_weights_config: the JSON document of a model file or of a
  weights file, every field checked for type and range.

Whatever is wrong raises ModelFileError (a ValueError, fastconv.saving's) naming the
file.
"""
import json
import numbers
import os
import re
import stat
import zipfile

import numpy as np

__all__ = ["ModelFileError", "FILE_FORMAT", "FILE_VERSION", "WEIGHTS_FORMAT",
           "WEIGHTS_VERSION", "open_regular", "Archive", "parse_config",
           "parse_weights_config"]

FILE_FORMAT = "fastconv.Sequential"
FILE_VERSION = 1
WEIGHTS_FORMAT = "fastconv.weights"
WEIGHTS_VERSION = 1

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

    __module__ = "fastconv.saving"  # (its public home, as before this module existed)


def open_regular(path):
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


def check_zip_entry(info, where, file_size):
    """Refuse a zip entry (zipfile.ZipInfo) that cannot be read safely, before reading
    it: encrypted, compressed by another method than stored/deflated, past the end of
    the file (of file_size bytes), a stored size that disagrees with the declared one,
    or a declared size beyond what deflate can produce from its compressed bytes (a zip
    bomb).  ``where`` names the file and entry in the ModelFileError."""
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(f"{where} uses compression method {info.compress_type}; "
                             f"only stored (0) and deflated (8) are read")
    if info.header_offset < 0 or info.header_offset + info.compress_size > file_size:
        raise ModelFileError(f"{where} extends past the end of the file ({file_size} "
                             f"bytes): truncated or corrupted")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ModelFileError(f"{where} is stored with {info.compress_size} bytes but "
                             f"declares {info.file_size}: corrupted")
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 64:
        raise ModelFileError(f"{where} declares {info.file_size} bytes from "
                             f"{info.compress_size} compressed: corrupted (or a zip bomb)")


class Archive:
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
        check_zip_entry(info, f"model file {self.path!r}, entry {info.filename!r}",
                        self.file_size)

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


def parse_config(path, text):
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
            or model["class_name"] not in ("Sequential", "Functional"):
        raise bad("model must be {'class_name': 'Sequential' or 'Functional', "
                  "'config': {...}}")
    cfg = model["config"]
    if model["class_name"] == "Functional":
        _check_functional(cfg, bad)
    else:
        _check_sequential(cfg, bad)
    comp = doc["compile"]
    if comp is None:
        if doc["n_optimizer_arrays"] or doc["optimizer_iterations"]:
            raise bad("optimizer state without compile arguments")
    else:
        keys = {"optimizer", "loss", "metrics"}
        if not isinstance(comp, dict) or not keys <= set(comp) \
                or not set(comp) <= keys | {"weighted_metrics", "loss_weights"}:
            raise bad("compile must be null or have exactly optimizer, loss and "
                      "metrics, and optionally weighted_metrics and loss_weights")
        for key in ("metrics", "weighted_metrics"):
            if key in comp and not _names(comp[key]) and not (
                    isinstance(comp[key], list)
                    and all(_names(m) for m in comp[key])):
                raise bad(f"compile.{key} must be a list of names (or of lists of "
                          f"names, one per output)")
        weights = comp.get("loss_weights", [])
        if not isinstance(weights, list) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool)
                for w in weights):
            raise bad("compile.loss_weights must be a list of numbers")
    rs = doc["random_state"]
    if not isinstance(rs, dict) or set(rs) != {"model", "layers"} \
            or not isinstance(rs["layers"], dict):
        raise bad("random_state must have a model state and a layers dict")
    return doc


def _names(value):
    return isinstance(value, list) and all(isinstance(m, str) for m in value)


def _check_sequential(cfg, bad):
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


def _check_functional(cfg, bad):
    """The fields of a functional config (the graph itself is checked as it is
    built: fastconv/_graph_config.py)."""
    keys = {"name", "trainable", "layers", "input_layers", "output_layers"}
    if not isinstance(cfg, dict) or set(cfg) != keys:
        raise bad(f"model.config of a functional model must have exactly "
                  f"{sorted(keys)}")
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise bad("model.config.name must be a non-empty string")
    layers = cfg["layers"]
    if not isinstance(layers, list) or not 2 <= len(layers) <= _MAX_LAYERS:
        raise bad(f"model.config.layers must be a list of 2 to {_MAX_LAYERS} layers")
    for entry in layers:
        if not isinstance(entry, dict) or set(entry) != {"class_name", "config", "name",
                                                         "inbound_nodes"} \
                or not isinstance(entry["name"], str) \
                or not isinstance(entry["inbound_nodes"], list) \
                or len(entry["inbound_nodes"]) > _MAX_LAYERS:
            raise bad(f"each layer of model.config.layers must have exactly "
                      f"class_name, config, name and inbound_nodes, got "
                      f"{str(entry)[:120]}")
    for key in ("input_layers", "output_layers"):
        if not isinstance(cfg[key], (list, dict)) or not cfg[key]:
            raise bad(f"model.config.{key} must be a non-empty list or dict")


def parse_weights_config(path, text):
    """The config document of a file load_weights reads: a whole model's file (checked
    by parse_config) or a weights file (format, format_version, n_weights)."""
    try:
        doc = json.loads(text, parse_constant=_reject_constant,
                         parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"weights file {path!r} has an unreadable config "
                             f"({type(exc).__name__})") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt == FILE_FORMAT:  # a whole model: its weights
        return parse_config(path, text)
    if fmt != WEIGHTS_FORMAT:
        raise ModelFileError(f"{path!r} is not a fastconv weights file (format "
                             f"{str(fmt)[:80]!r})")
    keys = {"format", "format_version", "n_weights"}
    if set(doc) != keys:
        raise ModelFileError(f"weights file {path!r} has an invalid config: fields "
                             f"{sorted(set(doc) ^ keys)} missing or unexpected")
    if not _is_int(doc["format_version"]) or doc["format_version"] != WEIGHTS_VERSION:
        raise ModelFileError(f"weights file {path!r} has format version "
                             f"{str(doc['format_version'])[:40]!r}; this fastconv "
                             f"reads version {WEIGHTS_VERSION}")
    if not _is_int(doc["n_weights"]):
        raise ModelFileError(f"weights file {path!r} has an invalid config: "
                             f"n_weights must be a non-negative int, got "
                             f"{str(doc['n_weights'])[:40]}")
    return doc
