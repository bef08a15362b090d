"""Keras's HDF5 weight layouts, read and written with h5py (an optional dependency).

Two layouts:

- Keras 3 (``model.weights.h5`` inside a ``.keras`` archive, and ``*.weights.h5``):
  ``layers/<key>/vars/0, 1, ...`` where ``<key>`` is the snake-case Keras class name,
  numbered ``_1``, ``_2``, ... per class in the model's layer order (never the layer's
  own name), ``vars`` carrying a ``name`` attribute;
- legacy (``model.save("x.h5")``, Keras 2 and tf.keras weights files): a
  ``layer_names`` attribute (possibly split into ``layer_names0``, ``layer_names1``,
  ...), one group per layer with a ``weight_names`` attribute naming its datasets;
  layers are matched to the model's layers with weights in order, as Keras does.

Reading checks every object before reading it: only hard links are followed (no soft
or external links, no external or virtual storage), a dataset must be a float array of
exactly the shape the model expects, stored without filters and with all its bytes in
the file, so the bytes read never exceed the file's size.
"""
import json

import numpy as np

from .._model_file import ModelFileError

__all__ = ["require_h5py", "open_h5", "read_keras3_weights", "read_legacy_weights",
           "write_keras3_weights", "write_legacy_weights", "read_text_attr",
           "keras_keys"]

_MAX_ATTR_CHARS = 4 * 2**20


def require_h5py():
    """The h5py module, or an ImportError saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing Keras .keras / .h5 files needs h5py: "
                          "pip install 'fastconv[keras]'") from None
    return h5py


def open_h5(path, source, mode="r"):
    """An h5py.File on ``source`` (a path or a binary file object)."""
    h5py = require_h5py()
    try:
        return h5py.File(source, mode)
    except OSError as exc:
        raise ModelFileError(f"Keras file {path!r} is not a readable HDF5 file, "
                             f"truncated or corrupted ({exc})") from None


def _snake(name):
    import re
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_keys(class_names):
    """Keras 3's key of each layer of a model: the snake-case class name, then
    ``_1``, ``_2``... for later layers of the same class."""
    used, keys = {}, []
    for name in class_names:
        key = _snake(name)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        keys.append(key)
    return keys


def _child(path, group, name, want):
    """``group[name]`` after checking it is a hard link to a ``want`` ("group" or
    "dataset"); None when absent."""
    h5py = require_h5py()
    where = f"Keras file {path!r}, {group.name.rstrip('/')}/{name}"
    if not isinstance(name, str) or not name or name.startswith("/") \
            or any(part in ("", ".", "..") for part in name.split("/")):
        raise ModelFileError(f"Keras file {path!r}: invalid object name "
                             f"{str(name)[:80]!r}")
    for part in name.split("/"):
        if part not in group:
            return None
        link = group.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise ModelFileError(f"{where}: {type(link).__name__} objects are not "
                                 f"followed (only the file's own data are read)")
        group = group[part]
    kind = h5py.Group if want == "group" else h5py.Dataset
    if not isinstance(group, kind):
        raise ModelFileError(f"{where} must be a {want}")
    return group


def _read_dataset(path, ds, shape, dtype, what):
    """The array in ``ds`` after checking shape, dtype and storage (see module doc)."""
    where = f"Keras file {path!r}, dataset {ds.name!r} ({what})"
    if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
        raise ModelFileError(f"{where}: dtype must be a float, got {ds.dtype}")
    if tuple(ds.shape) != tuple(shape):
        raise ModelFileError(f"{where}: shape must be {tuple(shape)}, got "
                             f"{tuple(ds.shape)}")
    dcpl = ds.id.get_create_plist()
    if ds.is_virtual or dcpl.get_external_count() or dcpl.get_nfilters():
        raise ModelFileError(f"{where}: external, virtual or filtered storage is not "
                             f"read")
    nbytes = ds.dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if ds.id.get_storage_size() < nbytes:
        raise ModelFileError(f"{where}: holds {ds.id.get_storage_size()} bytes of the "
                             f"{nbytes} its shape needs: truncated or corrupted")
    arr = np.empty(shape, dtype=ds.dtype.newbyteorder("="))
    try:
        ds.read_direct(arr) if arr.size else None
    except (OSError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where} is unreadable: truncated or corrupted "
                             f"({exc})") from None
    return arr.astype(dtype, copy=False)


def read_text_attr(path, obj, name):
    """A string attribute (bytes or str), None when absent."""
    if name not in obj.attrs:
        return None
    try:
        value = obj.attrs[name]
    except (OSError, TypeError, ValueError) as exc:
        raise ModelFileError(f"Keras file {path!r}: attribute {name!r} is unreadable "
                             f"({exc})") from None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or len(value) > _MAX_ATTR_CHARS:
        raise ModelFileError(f"Keras file {path!r}: attribute {name!r} must be a "
                             f"string of at most {_MAX_ATTR_CHARS} characters")
    return value


def _name_list(path, obj, name):
    """A list-of-strings attribute, joined from ``name0``, ``name1``... when Keras
    split it; None when absent."""
    if name in obj.attrs:
        parts = [obj.attrs[name]]
    elif f"{name}0" in obj.attrs:
        parts, i = [], 0
        while f"{name}{i}" in obj.attrs:
            parts.append(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out = []
    for part in parts:
        arr = np.asarray(part)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "SUO"):
            raise ModelFileError(f"Keras file {path!r}, {obj.name}: attribute "
                                 f"{name!r} must be a list of names")
        for item in arr:
            if isinstance(item, bytes):
                item = item.decode("utf-8", "replace")
            if not isinstance(item, str):
                raise ModelFileError(f"Keras file {path!r}, {obj.name}: attribute "
                                     f"{name!r} must hold strings")
            out.append(str(item))
    return out


def read_keras3_weights(path, f, targets):
    """Arrays for ``targets`` [(keras class name, layer name, [(shape, dtype)])] from
    the Keras 3 layout, in the same nesting."""
    root = _child(path, f, "layers", "group")
    if root is None and any(shapes for _, _, shapes in targets):
        raise ModelFileError(f"Keras file {path!r} has no 'layers' group: not a "
                             f"Keras 3 weights file")
    keys = keras_keys([cls for cls, _, _ in targets])
    out = []
    for key, (cls, name, shapes) in zip(keys, targets):
        group = None if root is None else _child(path, root, key, "group")
        vars_ = None if group is None else _child(path, group, "vars", "group")
        n = 0 if vars_ is None else len(vars_)
        if n != len(shapes):
            raise ModelFileError(f"Keras file {path!r}: layer {name!r} ({cls}) has "
                                 f"{len(shapes)} weight arrays, the file's "
                                 f"layers/{key}/vars holds {n}")
        arrays = []
        for i, (shape, dtype) in enumerate(shapes):
            ds = _child(path, vars_, str(i), "dataset")
            if ds is None:
                raise ModelFileError(f"Keras file {path!r}: layers/{key}/vars/{i} "
                                     f"(weight {i} of layer {name!r}) is missing")
            arrays.append(_read_dataset(path, ds, shape, dtype,
                                        f"weight {i} of layer {name!r}"))
        out.append(arrays)
    return out


def read_legacy_weights(path, group, targets):
    """Arrays for ``targets`` [(layer name, [(shape, dtype)])] from the legacy layout
    (``group``: the file's ``model_weights`` group or its root); the file's layers
    with weights are matched to the targets with weights in order, as Keras does."""
    names = _name_list(path, group, "layer_names")
    if names is None:
        raise ModelFileError(f"Keras file {path!r}: no layer_names attribute in "
                             f"{group.name!r}: not a Keras weights file")
    stored = []
    for lname in names:
        g = _child(path, group, lname, "group")
        if g is None:
            raise ModelFileError(f"Keras file {path!r}: layer_names lists "
                                 f"{lname[:80]!r}, which has no group")
        wnames = _name_list(path, g, "weight_names") or []
        if wnames:
            stored.append((lname, g, wnames))
    wanted = [(i, name, shapes) for i, (name, shapes) in enumerate(targets) if shapes]
    if len(stored) != len(wanted):
        raise ModelFileError(f"Keras file {path!r} holds weights for {len(stored)} "
                             f"layers ({', '.join(s[0] for s in stored)[:200]}), the "
                             f"model has {len(wanted)} layers with weights "
                             f"({', '.join(w[1] for w in wanted)[:200]})")
    out = [[] for _ in targets]
    for (lname, g, wnames), (i, name, shapes) in zip(stored, wanted):
        if len(wnames) != len(shapes):
            raise ModelFileError(f"Keras file {path!r}: layer {lname!r} holds "
                                 f"{len(wnames)} weight arrays, layer {name!r} of the "
                                 f"model has {len(shapes)}")
        for wname, (shape, dtype) in zip(wnames, shapes):
            ds = _child(path, g, wname, "dataset")
            if ds is None:
                raise ModelFileError(f"Keras file {path!r}: layer {lname!r} names "
                                     f"weight {wname[:80]!r}, which is missing")
            out[i].append(_read_dataset(path, ds, shape, dtype,
                                        f"weight {wname!r} of layer {name!r}"))
    return out


# --------------------------------------------------------------------------- writing
def write_keras3_weights(f, model_name, layers):
    """Write ``layers`` [(keras class name, layer name, [arrays])] in the Keras 3
    layout."""
    root = f.create_group("layers")
    for key, (_, name, arrays) in zip(keras_keys([c for c, _, _ in layers]), layers):
        vars_ = root.create_group(key).create_group("vars")
        vars_.attrs["name"] = name
        for i, arr in enumerate(arrays):
            vars_.create_dataset(str(i), data=np.ascontiguousarray(arr))
    f.create_group("vars").attrs["name"] = model_name


def _set_names(obj, name, values):
    h5py = require_h5py()
    obj.attrs.create(name, [v.encode("utf-8") for v in values],
                     dtype=h5py.string_dtype("utf-8") if values else "f8")


def write_legacy_weights(group, layers):
    """Write ``layers`` [(layer name, [(weight name, array)])] in the legacy layout
    into ``group`` (the file's ``model_weights`` group)."""
    _set_names(group, "layer_names", [name for name, _ in layers])
    group.attrs["backend"] = "tensorflow"
    group.attrs["keras_version"] = KERAS_VERSION
    for name, weights in sorted(layers):
        g = group.create_group(name)
        names = [f"{name}/{w}" for w, _ in weights]
        _set_names(g, "weight_names", names)
        for wname, (_, arr) in zip(names, weights):
            g.create_dataset(wname, data=np.ascontiguousarray(arr))
    _set_names(group.create_group("top_level_model_weights"), "weight_names", [])


#: the Keras version whose file layout fastconv writes (files say so)
KERAS_VERSION = "3.15.1"


def json_text(doc):
    """Compact JSON, as Keras writes it."""
    return json.dumps(doc, allow_nan=False)
