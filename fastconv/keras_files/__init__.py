"""Keras's own files, read and written without TensorFlow or Keras (h5py only).

- ``.keras`` (Keras 3): a zip of ``config.json``, ``metadata.json`` and
  ``model.weights.h5``;
- ``.h5`` / ``.hdf5`` (legacy, ``model.save("x.h5")``): the config in the
  ``model_config`` attribute, the weights in the ``model_weights`` group;
- ``.weights.h5`` (Keras 3's ``save_weights``) and legacy ``.h5`` weights files.

Sequential and functional models (Keras's functional config: InputLayer entries and
inbound_nodes) of the layers in fastconv/keras_files/_config.py's table.
``fastconv.models.load_model``, ``model.save``, ``model.save_weights`` and
``model.load_weights`` come here for these suffixes (fastconv/saving.py).  Files
written here load in Keras 3.15 (``keras.saving.load_model`` / ``load_weights``) with
the same predictions.

Nothing in a file is executed or imported: only the layer classes of
fastconv/keras_files/_config.py are built, from checked options.  A file that is not
such a model, or does not fit it, raises ModelFileError (a ValueError) naming the file,
after reading no more than the model it describes; a failed save leaves no file.
Compilation: ``compile=True`` compiles the model when fastconv has the file's loss,
metrics and optimizer class (optimizer state is not restored); otherwise the model is
returned uncompiled.  Saving a compiled model writes its compile config (optimizer,
loss, metrics; no optimizer state: Keras compiles it and says it skipped the
optimizer's variables).
"""
import os

from .._model_file import ModelFileError, open_regular
from . import _archive, _h5, _model

__all__ = ["load_model", "save_model", "load_weights", "save_weights",
           "is_keras_path", "ModelFileError"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SUFFIXES = (".keras", ".h5", ".hdf5")
# per-layer HDF5 overhead allowed on top of the weights (groups, attributes)
_PER_LAYER_BYTES = 64 * 1024


def _fspath(filepath):
    path = os.fspath(filepath)
    return path if isinstance(path, str) else os.fsdecode(path)


def is_keras_path(filepath):
    """Whether ``filepath`` names a Keras file by its suffix (.keras, .h5, .hdf5)."""
    return _fspath(filepath).lower().endswith(_SUFFIXES)


def _wrap(path, what, call):
    try:
        return call()
    except (ModelFileError, ImportError, FileNotFoundError):
        raise
    except (KeyError, TypeError, ValueError, OSError, EOFError) as exc:
        raise ModelFileError(f"Keras {what} {path!r} is inconsistent, truncated or "
                             f"corrupted ({type(exc).__name__}: "
                             f"{str(exc)[:300]})") from None


# --------------------------------------------------------------------------- loading
def load_model(filepath, compile=True):
    """A fastconv model from a Keras ``.keras`` or legacy ``.h5`` model file."""
    path = _fspath(filepath)
    _h5.require_h5py()
    f = open_regular(path)
    with f:
        magic = f.read(8)
        f.seek(0)
        if magic.startswith(_HDF5_MAGIC):
            return _wrap(path, "file", lambda: _load_h5(path, compile))
        if magic[:4] == b"PK\x03\x04":
            return _wrap(path, "file", lambda: _load_keras(path, f, compile))
    raise ModelFileError(f"{path!r} is neither a Keras .keras archive nor an HDF5 "
                         f"file (it starts with {magic[:4]!r})")


def _check_planned(path, parsed, plan, available):
    need = _model.nbytes(plan)
    if need > available:
        raise ModelFileError(f"Keras file {path!r}: the model it describes needs "
                             f"{need} bytes of weights, the file holds {available}: "
                             f"truncated or corrupted")


def _finish(parsed, arrays, doc, compile):
    model, layers = _model.build(parsed)
    for layer, values in zip(layers, arrays):
        if values:
            layer.set_weights(values)
    if compile:
        _model.compile_from_keras(model, doc)
    return model


def _load_keras(path, f, compile):
    archive = _archive.KerasArchive(path, f)
    doc = archive.read_json("config.json")
    parsed = _model.parse_model(path, doc)
    plan = _model.plan_weights(path, parsed)
    size = archive.size("model.weights.h5")
    _check_planned(path, parsed, plan, size)
    # the weights, an optimizer's slots (Adam: two per weight) and per-layer overhead
    limit = 4 * _model.nbytes(plan) + _PER_LAYER_BYTES * (len(parsed.layers) + 16)
    data = archive.read("model.weights.h5", limit)
    import io
    with _h5.open_h5(path, io.BytesIO(data)) as h:
        targets = [(type(layer).__name__, layer.name, shapes)
                   for layer, shapes in zip(parsed.layers, plan)]
        arrays = _h5.read_keras3_weights(path, h, targets)
    return _finish(parsed, arrays, doc.get("compile_config"), compile)


def _load_h5(path, compile):
    with _h5.open_h5(path, path) as h:
        text = _h5.read_text_attr(path, h, "model_config")
        if text is None:
            raise ModelFileError(f"Keras file {path!r} holds weights only (no "
                                 f"model_config): build the model, then call "
                                 f"model.load_weights({path!r})")
        doc = _archive.parse_json(path, text, "model_config")
        parsed = _model.parse_model(path, doc)
        plan = _model.plan_weights(path, parsed)
        _check_planned(path, parsed, plan, os.path.getsize(path))
        group = _h5._child(path, h, "model_weights", "group")
        if group is None:
            raise ModelFileError(f"Keras file {path!r} has no model_weights group")
        arrays = _h5.read_legacy_weights(
            path, group, [(layer.name, shapes)
                          for layer, shapes in zip(parsed.layers, plan)])
        training = _h5.read_text_attr(path, h, "training_config")
    comp = None if training is None else _archive.parse_json(path, training,
                                                             "training_config")
    return _finish(parsed, arrays, comp, compile)


def load_weights(model, filepath):
    """Copy the weights of a Keras weights file (``.weights.h5``, the Keras 3 layout,
    or a legacy ``.h5`` file, whole model or weights only) into the built ``model``.
    Every array is checked and read before any weight changes."""
    path = _fspath(filepath)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         f"data before load_weights()")
    _h5.require_h5py()
    open_regular(path).close()  # FileNotFoundError, a folder, a FIFO...
    layers = _model.weight_layers(model)
    shapes = [[(w.shape, w.dtype) for w in layer.weights] for layer in layers]

    def read():
        with _h5.open_h5(path, path) as h:
            if "layers" in h:
                return _h5.read_keras3_weights(
                    path, h, [(type(layer).__name__, layer.name, s)
                              for layer, s in zip(layers, shapes)])
            group = _h5._child(path, h, "model_weights", "group") or h
            return _h5.read_legacy_weights(
                path, group, [(layer.name, s) for layer, s in zip(layers, shapes)])
    arrays = _wrap(path, "weights file", read)
    for layer, values in zip(layers, arrays):
        if values:
            layer.set_weights(values)


# --------------------------------------------------------------------------- saving
def save_model(model, filepath):
    """Write ``model`` as a Keras 3 ``.keras`` archive or a legacy ``.h5`` file (by
    the suffix), atomically."""
    from ..saving import _write_atomically
    path = _fspath(filepath)
    doc, layers = _model.model_to_keras(model)
    _h5.require_h5py()
    if path.lower().endswith(".keras"):
        data = _archive.h5_bytes(
            lambda h: _h5.write_keras3_weights(h, model.name, layers))
        _write_atomically(path, lambda f: _archive.write_archive(
            f, doc, data, _writer()))
        return
    weights = [(name, [(wn, w) for wn, w in zip(_weight_names(model, name), arrays)])
               for _, name, arrays in layers]

    def write_h5(h):
        h.attrs["backend"] = "tensorflow"
        h.attrs["keras_version"] = _h5.KERAS_VERSION
        h.attrs["model_config"] = _h5.json_text(
            {"class_name": doc["class_name"], "config": doc["config"]})
        comp = doc.get("compile_config")
        if comp is not None:  # Keras's legacy training_config
            h.attrs["training_config"] = _h5.json_text(
                {"loss": comp["loss"], "metrics": comp["metrics"],
                 "weighted_metrics": None, "loss_weights": None,
                 "optimizer_config": {"class_name": comp["optimizer"]["class_name"],
                                      "config": comp["optimizer"]["config"]}})
        _h5.write_legacy_weights(h.create_group("model_weights"), weights)
    data = _archive.h5_bytes(write_h5)
    _write_atomically(path, lambda f: f.write(data))


def save_weights(model, filepath):
    """Write the weights: ``.weights.h5`` in Keras 3's layout, another ``.h5`` /
    ``.hdf5`` name in the legacy layout (Keras 2's save_weights); atomically."""
    from ..saving import _write_atomically
    path = _fspath(filepath)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         f"data before save_weights()")
    _h5.require_h5py()
    layers = [(type(layer).__name__, layer.name, layer.get_weights())
              for layer in _model.weight_layers(model)]
    if path.lower().endswith(".weights.h5"):
        data = _archive.h5_bytes(
            lambda h: _h5.write_keras3_weights(h, model.name, layers))
    elif path.lower().endswith((".h5", ".hdf5")):
        weights = [(name, [(wn, w) for wn, w in
                           zip(_weight_names(model, name), arrays)])
                   for _, name, arrays in layers]
        data = _archive.h5_bytes(lambda h: _h5.write_legacy_weights(h, weights))
    else:
        raise ValueError(f"filepath must end in .weights.h5 (or .h5, .hdf5) for a Keras "
                         f"weights file, got {path!r} (model.save writes .keras files)")
    _write_atomically(path, lambda f: f.write(data))


def _weight_names(model, layer_name):
    layer = next(la for la in model.layers if la.name == layer_name)
    return list(layer._weight_names)


def _writer():
    from .. import __version__
    return f"fastconv {__version__}"
