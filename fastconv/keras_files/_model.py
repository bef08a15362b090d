"""Keras model configs <-> fastconv models, and the weights each layer expects.

A model config becomes unbuilt fastconv layers first; the weight shapes they will
have are then worked out without allocating anything (each layer is built on a copy
whose initializers only record what they are asked for), so the file's datasets are
checked against them before the model and its weights exist.
"""
import copy
import inspect

import numpy as np

from .. import initializers as _initializers
from .._model_file import ModelFileError
from . import _config

__all__ = ["parse_model", "plan_weights", "model_to_keras", "compile_from_keras",
           "weight_layers"]

_MAX_LAYERS = 10000


class _Recorder(_initializers.Initializer):
    """An initializer that notes (shape, dtype) and allocates nothing."""

    def __init__(self, asked):
        self.asked = asked

    def __call__(self, shape, dtype="float32"):
        self.asked.append((tuple(int(s) for s in shape), np.dtype(dtype)))
        return np.empty((0,), dtype=dtype)


class Parsed:
    """A model config read from a file: its class, name, input shape and layers."""

    def __init__(self, kind, name, input_shape, layers, input_name=None, path=None,
                 config=None):
        self.kind = kind
        self.name = name
        self.input_shape = input_shape
        self.layers = layers
        self.input_name = input_name
        self.path = path
        self.config = config  # a functional model's config


def _model_config(path, doc):
    if not isinstance(doc, dict) or not isinstance(doc.get("class_name"), str):
        raise ModelFileError(f"Keras file {path!r}: the model config must be a dict "
                             f"with a class_name, got {str(doc)[:120]}")
    kind = doc["class_name"]
    module = doc.get("module")
    if module is not None and not (module in ("keras", "keras.models") or (
            isinstance(module, str) and module.startswith("keras.src.models."))) \
            or doc.get("registered_name") not in (None, kind):
        raise ModelFileError(f"Keras file {path!r}: model class {kind[:80]!r} from "
                             f"module {str(module)[:80]!r} is a custom object; "
                             f"fastconv reads Keras's own models only")
    cfg = doc.get("config")
    if kind == "Sequential" and isinstance(cfg, list):  # Keras 2.2's layer list
        cfg = {"name": "sequential", "layers": cfg}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list) \
            or not 1 <= len(cfg["layers"]) <= _MAX_LAYERS:
        raise ModelFileError(f"Keras file {path!r}: the model config must hold a "
                             f"list of 1 to {_MAX_LAYERS} layers")
    name = cfg.get("name") or kind.lower()
    if not isinstance(name, str):
        raise ModelFileError(f"Keras file {path!r}: the model name must be a string, "
                             f"got {str(name)[:80]}")
    return kind, name, cfg


def parse_model(path, doc):
    """Parsed (layers unbuilt) of a Keras model config document."""
    kind, name, cfg = _model_config(path, doc)
    if kind in ("Functional", "Model"):
        return _parse_functional(path, name, cfg)
    if kind != "Sequential":
        raise ModelFileError(f"Keras file {path!r}: model class {kind[:80]!r} is not "
                             f"supported; fastconv reads Sequential and Functional "
                             f"models")
    entries = list(cfg["layers"])
    input_shape, input_name = None, None
    first = entries[0]
    if isinstance(first, dict) and first.get("class_name") == "InputLayer":
        input_name, input_shape, _ = _input_entry(path, first)
        entries = entries[1:]
    if not entries:
        raise ModelFileError(f"Keras file {path!r}: the model has no layers")
    layers = [_config.layer_from_keras(path, e) for e in entries]
    if input_shape is None:
        input_shape = layers[0]._input_shape_arg
    if input_shape is None:
        shape = cfg.get("build_input_shape") or \
            (doc.get("build_config") or {}).get("input_shape")
        if shape is None:
            raise ModelFileError(f"Keras file {path!r}: the model's input shape is not "
                                 f"given (no InputLayer, batch_input_shape or "
                                 f"build_input_shape)")
        input_shape = _config.input_shape_from_keras(path, name, shape)
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ModelFileError(f"Keras file {path!r}: layer names repeat")
    return Parsed(kind, name, input_shape, layers, input_name)


def _input_entry(path, entry):
    """(name, sample shape, dtype) of a Keras InputLayer entry."""
    _config.check_object(path, "input", "the input layer", {**entry, "config": {}},
                         "keras.layers")
    icfg = entry.get("config")
    if not isinstance(icfg, dict):
        raise ModelFileError(f"Keras file {path!r}: the InputLayer config must be a "
                             f"dict")
    name = icfg.get("name", entry.get("name"))
    if not isinstance(name, str) or not name:
        raise ModelFileError(f"Keras file {path!r}: an InputLayer needs a name")
    shape = icfg.get("batch_shape", icfg.get("batch_input_shape"))
    if shape is None and isinstance(icfg.get("shape"), list):
        shape = [None] + icfg["shape"]
    shape = _config.input_shape_from_keras(path, name, shape)
    dtype = _config.keras_dtype(path, name, icfg.get("dtype"))
    for key in ("sparse", "ragged", "optional"):
        if icfg.get(key) not in (None, False):
            raise ModelFileError(f"Keras file {path!r}: input option {key}="
                                 f"{str(icfg[key])[:40]} is not supported")
    return name, shape, dtype


# --------------------------------------------------------------------------- functional
def _parse_functional(path, name, cfg):
    entries = cfg["layers"]
    layers, names = [], set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise ModelFileError(f"Keras file {path!r}: a layer entry must be a dict "
                                 f"with a class_name, got {str(entry)[:120]}")
        if entry["class_name"] == "InputLayer":
            label = _input_entry(path, entry)[0]
        else:
            layer = _config.layer_from_keras(path, entry)
            label = layer.name
            layers.append(layer)
        if entry.get("name", label) != label or label in names:
            raise ModelFileError(f"Keras file {path!r}: layer {label!r} is named twice "
                                 f"or its entry and config names differ")
        names.add(label)
    return Parsed("Functional", name, None, layers, path=path, config=cfg)


def _make_layer(path, dry, made):
    """Model.from_config's make_layer: fresh layers from Keras entries (with
    initializers that allocate nothing when ``dry``), noted in ``made``."""
    from ..layers import InputLayer

    def make(entry):
        if entry.get("class_name") == "InputLayer":
            name, shape, dtype = _input_entry(path, entry)
            return InputLayer(shape=shape, name=name, dtype=dtype)
        layer = _config.layer_from_keras(path, entry)
        if dry:
            asked = []
            for attr, value in list(vars(layer).items()):
                if isinstance(value, _initializers.Initializer):
                    setattr(layer, attr, _Recorder(asked))
            layer._asked = asked
        made.append(layer)
        return layer
    return make


def _functional(parsed, dry):
    from ..functional import Model
    made = []
    try:
        model = Model.from_config(parsed.config,
                                  make_layer=_make_layer(parsed.path, dry, made))
    except ModelFileError:
        raise
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Keras file {parsed.path!r}: the functional graph "
                             f"cannot be built ({exc})") from None
    return model, made


def _plan_layer(path, layer, shape):
    """([(shape, dtype)] of the weights ``layer`` creates for inputs of ``shape``,
    output shape), allocating nothing."""
    dry = copy.copy(layer)
    asked = []
    for attr, value in vars(layer).items():
        if isinstance(value, _initializers.Initializer):
            setattr(dry, attr, _Recorder(asked))
    try:
        dry.build(shape)
        out = dry.compute_output_shape(shape)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Keras file {path!r}, layer {layer.name!r}: {exc}") \
            from None
    if len(asked) != len(dry._weight_names):
        raise ModelFileError(f"Keras file {path!r}: cannot plan the weights of layer "
                             f"{layer.name!r}")
    return asked, out


def plan_weights(path, parsed):
    """[[(shape, dtype)] per layer] of a Parsed model, allocating nothing."""
    if parsed.kind == "Functional":
        _, made = _functional(parsed, dry=True)
        plan = []
        for layer in made:
            if len(layer._asked) != len(layer._weight_names):
                raise ModelFileError(f"Keras file {path!r}: cannot plan the weights of "
                                     f"layer {layer.name!r}")
            plan.append(layer._asked)
        return plan
    shape = (None,) + tuple(parsed.input_shape)
    plan = []
    for layer in parsed.layers:
        asked, shape = _plan_layer(path, layer, shape)
        plan.append(asked)
    return plan


def nbytes(plan):
    """Bytes of all planned weights."""
    return sum(int(np.prod(s, dtype=np.int64)) * d.itemsize
               for shapes in plan for s, d in shapes)


def build(parsed):
    """The fastconv model of a Parsed config (built, weights from the initializers)."""
    if parsed.kind == "Functional":
        model, made = _functional(parsed, dry=False)
        return model, made
    from ..models import Sequential
    model = Sequential(name=parsed.name)
    for layer in parsed.layers:
        model.add(layer)
    model.build((None,) + tuple(parsed.input_shape))
    return model, model.layers


def weight_layers(model):
    """The model's layers, in order (InputLayer excluded)."""
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


# --------------------------------------------------------------------------- compile
def compile_from_keras(model, compile_cfg):
    """Compile ``model`` as the file's compile config says when fastconv has its loss,
    metrics and optimizer; leave it uncompiled otherwise (returns whether it
    compiled)."""
    from .. import losses, metrics, optimizers
    if not isinstance(compile_cfg, dict):
        return False
    try:
        loss = compile_cfg.get("loss")
        if isinstance(loss, dict):
            loss = _keras_object(loss, "keras.losses", losses._CLASSES)
        elif isinstance(loss, str):
            loss = losses.get(loss)
        else:
            return False
        names = compile_cfg.get("metrics") or []
        if isinstance(names, str):
            names = [names]
        names = [m for m in names if isinstance(m, str)]
        metrics.check_metrics(names)
        opt = compile_cfg.get("optimizer", compile_cfg.get("optimizer_config"))
        optimizer = _optimizer(opt, optimizers)
    except (TypeError, ValueError, KeyError):
        return False
    model.compile(optimizer=optimizer, loss=loss, metrics=names)
    return True


def _optimizer(obj, optimizers):
    if isinstance(obj, str):
        return optimizers.get(obj)
    return _keras_object(obj, "keras.optimizers", optimizers._CLASSES)


def _keras_object(obj, module, classes):
    """An instance of ``classes[class_name]`` from a serialized Keras object, given
    the numeric and boolean options its constructor has (nothing else is passed)."""
    if not isinstance(obj, dict) or obj.get("module") not in (None, module) \
            or obj.get("registered_name") not in (None, obj.get("class_name")):
        raise ValueError(f"not one of {module}")
    cls = classes.get(obj.get("class_name"))
    if cls is None or not isinstance(obj.get("config"), dict):
        raise ValueError(f"unknown class in {module}")
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in obj["config"].items()
              if k in params and k != "name" and v is not None
              and isinstance(v, (int, float, bool))}
    return cls(**kwargs)


def compile_to_keras(model):
    """Keras 3's compile_config of a compiled fastconv model (None when uncompiled or
    when its optimizer has a schedule, which is not written)."""
    if not getattr(model, "compiled", False) or model.loss is None \
            or model.optimizer is None:
        return None
    opt = model.optimizer.get_config()
    loss = model.loss.get_config()
    if not all(v is None or isinstance(v, (int, float, bool, str))
               for v in list(opt.values()) + list(loss.values())):
        return None
    metrics = [m for m in getattr(model, "_metric_names", []) if isinstance(m, str)]
    return {"optimizer": {"module": "keras.optimizers",
                          "class_name": type(model.optimizer).__name__, "config": opt,
                          "registered_name": None},
            "loss": {"module": "keras.losses", "class_name": type(model.loss).__name__,
                     "config": loss, "registered_name": None},
            "loss_weights": None, "metrics": metrics or None, "weighted_metrics": None,
            "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


# --------------------------------------------------------------------------- writing
def model_to_keras(model):
    """(Keras 3 model config, [(keras class, layer name, weights)]) of a fastconv
    Sequential or functional model."""
    from ..models import Sequential
    if not getattr(model, "built", False):
        raise ValueError(f"model {getattr(model, 'name', model)!r} is not built: build "
                         f"it or run it on data before saving it")
    if not isinstance(model, Sequential):
        return _functional_to_keras(model)
    layers = model.layers
    dtype = model.dtype.name
    entries = [_config.input_layer_to_keras(f"{model.name}_input",
                                            model.input_shape[1:], dtype)]
    entries += [_config.layer_to_keras(layer) for layer in layers]
    config = {"name": model.name, "trainable": True,
              "dtype": _config.dtype_policy(dtype), "layers": entries,
              "build_input_shape": list(model.input_shape)}
    doc = {"module": "keras", "class_name": "Sequential", "config": config,
           "registered_name": None,
           "build_config": {"input_shape": list(model.input_shape)}}
    compiled = compile_to_keras(model)
    if compiled is not None:
        doc["compile_config"] = compiled
    weights = [(type(layer).__name__, layer.name, layer.get_weights())
               for layer in layers]
    return doc, weights


def _functional_to_keras(model):
    from ..functional import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a fastconv model, got {type(model).__name__}")
    fc = model.get_config()
    by_name = {layer.name: layer for layer in model.layers}
    entries = []
    for entry in fc["layers"]:
        layer = by_name[entry["name"]]
        if type(layer).__name__ == "InputLayer":
            out = _config.input_layer_to_keras(layer.name, layer.shape, layer.dtype.name)
        else:
            out = _config.layer_to_keras(layer)
        out["name"] = layer.name
        out["inbound_nodes"] = entry["inbound_nodes"]
        entries.append(out)

    def single(refs):
        return refs[0] if isinstance(refs, list) and len(refs) == 1 else refs
    config = {"name": model.name, "trainable": True, "layers": entries,
              "input_layers": single(fc["input_layers"]),
              "output_layers": single(fc["output_layers"])}
    doc = {"module": "keras.src.models.functional", "class_name": "Functional",
           "config": config, "registered_name": "Functional",
           "build_config": {"input_shape": None}}
    compiled = compile_to_keras(model) if len(model.output_names) == 1 else None
    if compiled is not None:
        doc["compile_config"] = compiled
    weights = [(type(layer).__name__, layer.name, layer.get_weights())
               for layer in model.layers]
    return doc, weights
