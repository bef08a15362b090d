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
ValueError) that names the file; a missing path raises FileNotFoundError.  Those checks
of the file's bytes (the archive, the ``.npy`` headers, the JSON fields) are
fastconv/_model_file.py; this module writes files and rebuilds models from them.
"""
import copy
import json
import os
import secrets
import stat

import numpy as np

from . import _random
from . import initializers as _initializers
from . import losses as _losses
from . import optimizers as _optimizers
from ._model_file import (FILE_FORMAT, FILE_VERSION, WEIGHTS_FORMAT, WEIGHTS_VERSION,
                          Archive, ModelFileError, open_regular, parse_config,
                          parse_weights_config)
from ._serialization import deserialize

__all__ = ["save_model", "load_model", "save_weights", "load_weights", "ModelFileError"]

#: suffixes of Keras's own files (read and written by fastconv/keras_files)
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


# --------------------------------------------------------------------------- saving
def _keras_files():
    """Keras's .keras / .h5 files (fastconv/keras_files), imported when used."""
    from . import keras_files
    return keras_files


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
    the umask allows; an existing file keeps its mode.  A Keras name (``.keras``,
    ``.h5``, ``.hdf5``) writes Keras's format instead (fastconv/keras_files).
    """
    path = _fspath(filepath)
    if _keras_files().is_keras_path(path):
        return _keras_files().save_model(model, path)
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
           "model": {"class_name": model._config_class, "config": model.get_config()},
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
    arrays) and ``weight_NNNNN.npy``; written atomically like save_model.  A Keras
    name (``.weights.h5``, ``.h5``) writes Keras's layout (fastconv/keras_files).
    """
    path = _fspath(filepath)
    if _keras_files().is_keras_path(path):
        return _keras_files().save_weights(model, path)
    if path.lower().endswith(".safetensors"):
        from .convert import save_safetensors
        return save_safetensors(model, path)
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
    """Rebuild a model written by ``model.save`` (a Sequential or a functional Model):
    architecture, weights and, with
    ``compile=True``, optimizer (with its state), loss, metrics (weighted_metrics
    included) and generator states, so that training resumes exactly where it
    stopped.

    Raises ModelFileError (a ValueError naming the file) for anything that is not an
    intact fastconv model file, FileNotFoundError when ``filepath`` does not exist.
    """
    path = _fspath(filepath)
    if _keras_files().is_keras_path(path):
        return _keras_files().load_model(path, compile=compile)
    f = open_regular(path)
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
    if _keras_files().is_keras_path(path):
        return _keras_files().load_weights(model, path)
    if path.lower().endswith(".safetensors"):
        from .convert import load_safetensors
        return load_safetensors(model, path)
    if not model.built:
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         "data before load_weights()")
    f = open_regular(path)
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
    archive = Archive(path, f)
    doc = parse_weights_config(path, archive.read_config())
    archive.check_members(doc["n_weights"], doc.get("n_optimizer_arrays", 0))
    targets = model.weights
    if doc["n_weights"] != len(targets):
        raise ModelFileError(f"weights file {path!r} holds {doc['n_weights']} weight "
                             f"arrays, model {model.name!r} has {len(targets)}")
    names = [f"{layer.name}.{n}" for layer in model._layers
             for n in layer._weight_names]
    for i, (w, name) in enumerate(zip(targets, names)):
        archive.check_array(f"weight_{i:05d}", w.shape, w.dtype, name)
    return [archive.read_array(f"weight_{i:05d}") for i in range(len(targets))]


def _load(path, f, compile):
    from .models import Model, Sequential

    archive = Archive(path, f)
    doc = parse_config(path, archive.read_config())
    archive.check_members(doc["n_weights"], doc["n_optimizer_arrays"])
    model_cfg = doc["model"]["config"]
    functional = doc["model"]["class_name"] == "Functional"

    # Check every weight header against the shapes the architecture gives, before the
    # model (and so its weights) is built.
    plan = (_functional_weight_plan if functional else _weight_plan)(path, model_cfg)
    if len(plan) != doc["n_weights"]:
        raise ModelFileError(f"model file {path!r}: the architecture has {len(plan)} "
                             f"weight arrays, the file says {doc['n_weights']}")
    for i, (name, shape, dtype) in enumerate(plan):
        archive.check_array(f"weight_{i:05d}", shape, dtype, name)

    model = (Model if functional else Sequential).from_config(model_cfg)
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
        loss = comp["loss"]
        if isinstance(loss, list):
            loss = [None if x is None else deserialize(x, _losses._CLASSES, "loss")
                    for x in loss]
        elif loss is not None:
            loss = deserialize(loss, _losses._CLASSES, "loss")
        model.compile(optimizer=deserialize(comp["optimizer"], _optimizers._CLASSES,
                                            "optimizer"),
                      loss=loss, metrics=comp["metrics"],
                      weighted_metrics=comp.get("weighted_metrics"),
                      loss_weights=comp.get("loss_weights"))
        variables = [w for layer in model._trained_layers()
                     for w in layer.trainable_weights]
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


def _dry_layers(layers, asked):
    """Copies of layers whose initializers only record what they are asked for (in
    asked[layer name])."""
    dry = []
    for layer in layers:
        copy_ = copy.copy(layer)
        asked[layer.name] = []
        for attr, value in vars(layer).items():
            if isinstance(value, _initializers.Initializer):
                setattr(copy_, attr, _Recorder(asked[layer.name]))
        dry.append(copy_)
    return dry


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
        asked = {}
        dry = _dry_layers([layer], asked)[0]
        dry.build(shape)
        plan += _planned(path, dry, asked[layer.name])
        shape = dry.compute_output_shape(shape)
    return plan


def _planned(path, dry, asked):
    names = list(dry._weight_names)
    if len(asked) != len(names):
        raise ModelFileError(f"model file {path!r}: cannot plan the weights of "
                             f"layer {dry.name!r}")
    return [(f"{dry.name}.{n}", s, d) for n, (s, d) in zip(names, asked)]


def _functional_weight_plan(path, cfg):
    """_weight_plan of a functional config: its graph built on dry copies of its
    layers (fastconv/_graph_config.py)."""
    from ._graph_config import from_config
    from .functional import Model
    from .layers import LAYER_CLASSES

    asked = {}

    def make_dry(entry):
        layer = deserialize({"class_name": entry.get("class_name"),
                             "config": entry.get("config", {})}, LAYER_CLASSES, "layer")
        return _dry_layers([layer], asked)[0]

    gen = _random.get_generator()
    saved = gen.bit_generator.state
    try:
        model = from_config(Model, cfg, make_dry)
    finally:
        gen.bit_generator.state = saved
    return [p for layer in model._layers for p in _planned(path, layer,
                                                           asked[layer.name])]


class _Recorder(_initializers.Initializer):
    """An initializer that notes (shape, dtype) and allocates nothing."""

    def __init__(self, asked):
        self.asked = asked

    def __call__(self, shape, dtype="float32"):
        self.asked.append((tuple(int(s) for s in shape), np.dtype(dtype)))
        return np.empty((0,), dtype=dtype)
