"""fastconv's model file: one ``.npz`` archive, no pickle.

``config`` holds a JSON document (the architecture resolved against
``fastconv.layers.LAYER_CLASSES``, compile arguments, optimizer iteration count, random
generator states); ``weight_NNNNN`` and ``optimizer_NNNNN`` hold the arrays.  Writes go to
a temporary file in the target's folder, then replace the target (os.replace), so an
interrupted save leaves any previous file intact.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from . import _random
from . import losses as _losses
from . import optimizers as _optimizers
from ._serialization import deserialize

__all__ = ["save_model", "load_model", "ModelFileError"]

FILE_FORMAT = "fastconv.Sequential"
FILE_VERSION = 1


class ModelFileError(ValueError):
    """A file given to load_model is not a readable fastconv model."""


def save_model(model, filepath):
    """Write architecture, weights, optimizer state and generator states to one file.

    The data go to a temporary file in the same directory, then replace
    ``filepath`` atomically (os.replace).
    """
    path = os.fspath(filepath)
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
    arrays["config"] = np.array(json.dumps(doc))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_file(path):
    """(doc dict, arrays dict) of a saved model, or ModelFileError naming the file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path!r}: {exc}") from None
    if magic != b"PK\x03\x04":
        raise ModelFileError(f"{path!r} is not a fastconv model file (not an .npz "
                             f"archive; it starts with {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            if "config" not in names:
                raise ModelFileError(f"{path!r} is an .npz archive but not a fastconv "
                                     f"model file (no 'config' entry; entries: "
                                     f"{names[:5]})")
            arrays = {name: data[name] for name in names}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise ModelFileError(f"model file {path!r} is truncated or corrupted "
                             f"({type(exc).__name__}: {exc})") from None
    try:
        doc = json.loads(str(arrays.pop("config")[()]))
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"model file {path!r} has an unreadable config "
                             f"({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{path!r} is not a fastconv model file (format "
                             f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("format_version") != FILE_VERSION:
        raise ModelFileError(f"model file {path!r} has format version "
                             f"{doc.get('format_version')!r}; this fastconv reads "
                             f"version {FILE_VERSION}")
    return doc, arrays


def load_model(filepath, compile=True):
    """Rebuild a model written by ``Sequential.save``: architecture, weights and, with
    ``compile=True``, optimizer (with its state), loss, metrics and generator states,
    so that training resumes exactly where it stopped."""
    from .models import Sequential

    path = os.fspath(filepath)
    doc, arrays = _read_file(path)
    try:
        model_cfg = doc["model"]
        if not isinstance(model_cfg, dict) or model_cfg.get("class_name") != "Sequential":
            raise ValueError(f"unknown model class in {model_cfg!r}")
        model = Sequential.from_config(model_cfg.get("config"))
        n_w = int(doc["n_weights"])
        weights = [arrays[f"weight_{i:05d}"] for i in range(n_w)]
        if n_w and not model.built:
            raise ValueError("the saved model has weights but no input shape")
        if model.built:
            model.set_weights(weights)
        comp = doc.get("compile")
        if compile and comp is not None:
            model.compile(optimizer=deserialize(comp["optimizer"],
                                                _optimizers._CLASSES, "optimizer"),
                          loss=None if comp["loss"] is None else deserialize(
                              comp["loss"], _losses._CLASSES, "loss"),
                          metrics=comp["metrics"])
            n_o = int(doc["n_optimizer_arrays"])
            slots = [arrays[f"optimizer_{i:05d}"] for i in range(n_o)]
            variables = [w for layer in model._layers if layer.trainable
                         for w in layer.weights]
            model.optimizer.set_state(doc["optimizer_iterations"], slots, variables)
        rs = doc.get("random_state") or {}
        if "model" in rs:
            model._rng = _random.generator_from_state(rs["model"], "model generator")
        for layer in model._layers:
            state = rs.get("layers", {}).get(layer.name)
            if state is not None and hasattr(layer, "generator"):
                layer.generator = _random.generator_from_state(
                    state, f"generator of layer {layer.name!r}")
    except ModelFileError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"model file {path!r} is inconsistent or corrupted "
                             f"({type(exc).__name__}: {exc})") from None
    return model
