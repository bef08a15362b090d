"""The ``.keras`` zip archive: ``metadata.json``, ``config.json``, ``model.weights.h5``.

Reading checks every member's declared sizes against the archive's size before
inflating anything (a stored member must be as long as it says, a deflated one cannot
expand more than deflate can), and the caller bounds each member's size (a config is
small; the weights cannot be much larger than the model the config describes), so a
small or truncated file cannot make the reader allocate more than that.  Writing
stores the members uncompressed, as Keras does.
"""
import io
import json
import os
import time
import zipfile

from .._model_file import ModelFileError, _unique_keys, check_zip_entry

__all__ = ["KerasArchive", "write_archive", "parse_json"]

MEMBERS = ("metadata.json", "config.json", "model.weights.h5")
MAX_JSON_BYTES = 16 * 2**20


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def parse_json(path, text, what):
    """A JSON document from a Keras file (NaN, Infinity and repeated keys refused)."""
    try:
        return json.loads(text, parse_constant=_reject_constant,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ModelFileError(f"Keras file {path!r}: {what} is nested too "
                             f"deeply") from None
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"Keras file {path!r}: {what} is not valid JSON "
                             f"({exc})") from None


class KerasArchive:
    """The members of a ``.keras`` file, each size checked before reading."""

    def __init__(self, path, f):
        self.path = path
        self.file_size = os.fstat(f.fileno()).st_size
        try:
            self.zip = zipfile.ZipFile(f)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelFileError(f"Keras file {path!r} is not a readable zip archive, "
                                 f"truncated or corrupted ({exc})") from None
        self.members = {}
        for info in infos:
            name = info.filename
            if name in self.members:
                raise ModelFileError(f"Keras file {path!r} has entry {name!r} twice")
            if name not in MEMBERS and not name.startswith("assets/"):
                if name.endswith(".weights.json") or name.endswith(".weights.h5"):
                    raise ModelFileError(f"Keras file {path!r} has sharded weights "
                                         f"({name[:80]!r}), which fastconv does not "
                                         f"read")
                raise ModelFileError(f"Keras file {path!r} has an unexpected entry "
                                     f"{name[:80]!r}")
            if name.startswith("assets/") and not info.is_dir():
                raise ModelFileError(f"Keras file {path!r} has asset {name[:80]!r}: "
                                     f"fastconv's layers have no assets")
            self._check_info(info)
            self.members[name] = info
        for name in ("config.json", "model.weights.h5"):
            if name not in self.members:
                raise ModelFileError(f"{path!r} is not a Keras .keras file (no "
                                     f"{name!r} entry)")

    def _check_info(self, info):
        check_zip_entry(info, f"Keras file {self.path!r}, entry {info.filename!r}",
                        self.file_size)

    def size(self, name):
        return self.members[name].file_size

    def read(self, name, limit):
        """The bytes of member ``name``, refusing one that declares more than
        ``limit`` bytes."""
        info = self.members[name]
        where = f"Keras file {self.path!r}, entry {name!r}"
        if info.file_size > limit:
            raise ModelFileError(f"{where} declares {info.file_size} bytes, more than "
                                 f"the {limit} it can hold for this model")
        try:
            with self.zip.open(info) as m:
                data = m.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ModelFileError(f"{where} is truncated or corrupted "
                                 f"({type(exc).__name__}: {exc})") from None
        except Exception as exc:  # zlib.error and the like
            raise ModelFileError(f"{where} is truncated or corrupted "
                                 f"({type(exc).__name__}: {exc})") from None
        if len(data) != info.file_size:
            raise ModelFileError(f"{where} is truncated or corrupted ({len(data)} "
                                 f"bytes, {info.file_size} declared)")
        return data

    def read_json(self, name):
        data = self.read(name, MAX_JSON_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"Keras file {self.path!r}: {name} is not UTF-8 "
                                 f"text") from None
        return parse_json(self.path, text, name)


def write_archive(f, config, weights_bytes, writer):
    """Write a ``.keras`` archive to the binary file ``f``: metadata (naming the
    writer), config, weights; stored uncompressed."""
    metadata = {"keras_version": "3.15.1", "date_saved":
                time.strftime("%Y-%m-%d@%H:%M:%S"), "saved_by": writer}
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps(metadata))
        z.writestr("config.json", json.dumps(config, allow_nan=False))
        z.writestr("model.weights.h5", weights_bytes)


def h5_bytes(write):
    """The bytes of an HDF5 file filled by ``write(h5py.File)``, made in memory."""
    from ._h5 import require_h5py
    h5py = require_h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h:
        write(h)
    return buf.getvalue()
