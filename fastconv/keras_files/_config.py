"""Keras layer configs <-> fastconv layers, one table entry per layer class.

Reading trusts nothing: a config names a class, and only the classes in ``TABLE`` are
built, with only the options their entry lists.  Nothing in a config is imported,
evaluated or called (Keras's safe_mode lesson, CVE-2025-1550): a ``Lambda`` layer,
a custom object (a ``module`` outside Keras, a ``registered_name``) or an unknown class
raises ModelFileError naming the layer.

Options (decided once, here):

- an option fastconv lacks is accepted only at the value that gives Keras's default
  behaviour (``Spec.fixed``); any other value raises, naming the option and the layer;
- an option missing from both lists is accepted only when it is null or false (newer
  Keras versions add options that are off by default); otherwise it raises;
- initializers do not change predictions (the file's weights replace them): a class
  fastconv has is translated, any other falls back to fastconv's default;
- regularizers and constraints change training: they are translated to fastconv's
  classes of the same name, and an unknown one raises.
"""
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from ..layers import LAYER_CLASSES
from .._model_file import ModelFileError

__all__ = ["TABLE", "layer_from_keras", "layer_to_keras", "keras_dtype",
           "check_object", "input_shape_from_keras"]


class Spec:
    """How one Keras layer class maps onto a fastconv class.

    ``keys``: options with the same name and meaning in both; ``fixed``: Keras options
    fastconv lacks, with the value fastconv's behaviour equals (written on save,
    required on load); ``fc_class``: the fastconv class name (default: the Keras
    one); ``renames``: older Keras names of ``keys``, accepted when reading."""

    def __init__(self, keys=(), fixed=None, fc_class=None, renames=None):
        self.keys = tuple(keys)
        self.fixed = dict(fixed or {})
        self.fc_class = fc_class
        self.renames = dict(renames or {})  # older Keras names of options, read only


_CONV_KEYS = ("filters", "kernel_size", "strides", "padding", "data_format",
              "dilation_rate", "groups", "activation", "use_bias", "kernel_initializer",
              "bias_initializer", "kernel_regularizer", "bias_regularizer",
              "activity_regularizer", "kernel_constraint", "bias_constraint")
_DENSE_KEYS = ("units", "activation", "use_bias", "kernel_initializer",
               "bias_initializer", "kernel_regularizer", "bias_regularizer",
               "activity_regularizer", "kernel_constraint", "bias_constraint")
_POOL_KEYS = ("pool_size", "strides", "padding", "data_format")
_TRANSFORM_KEYS = ("fill_mode", "interpolation", "seed", "fill_value", "data_format")

#: Keras class name -> Spec; only these classes are read or written.
TABLE = {
    "Conv2D": Spec(_CONV_KEYS),
    "Dense": Spec(_DENSE_KEYS, {"quantization_config": None, "lora_rank": None}),
    "MaxPooling2D": Spec(_POOL_KEYS),
    "AveragePooling2D": Spec(_POOL_KEYS),
    "GlobalAveragePooling2D": Spec(("data_format", "keepdims")),
    "Flatten": Spec(("data_format",)),
    "Dropout": Spec(("rate", "noise_shape", "seed")),
    "Activation": Spec(("activation",)),
    "Rescaling": Spec(("scale", "offset")),
    "BatchNormalization": Spec(
        ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
         "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer",
         "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"),
        {"synchronized": False, "renorm": False, "renorm_clipping": None,
         "renorm_momentum": 0.99}),
    "DepthwiseConv2D": Spec(
        ("kernel_size", "strides", "padding", "depth_multiplier", "data_format",
         "dilation_rate", "activation", "use_bias", "depthwise_initializer",
         "bias_initializer", "depthwise_regularizer", "bias_regularizer",
         "activity_regularizer", "depthwise_constraint", "bias_constraint")),
    "SeparableConv2D": Spec(
        ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
         "depth_multiplier", "activation", "use_bias", "depthwise_initializer",
         "pointwise_initializer", "bias_initializer", "depthwise_regularizer",
         "pointwise_regularizer", "bias_regularizer", "activity_regularizer",
         "depthwise_constraint", "pointwise_constraint", "bias_constraint")),
    "Conv2DTranspose": Spec(
        ("filters", "kernel_size", "strides", "padding", "output_padding", "data_format",
         "dilation_rate", "activation", "use_bias", "kernel_initializer",
         "bias_initializer", "kernel_regularizer", "bias_regularizer",
         "activity_regularizer", "kernel_constraint", "bias_constraint")),
    "GlobalMaxPooling2D": Spec(("data_format", "keepdims")),
    "ZeroPadding2D": Spec(("padding", "data_format")),
    "Cropping2D": Spec(("cropping", "data_format")),
    "UpSampling2D": Spec(("size", "data_format", "interpolation")),
    "ReLU": Spec(("max_value", "negative_slope", "threshold")),
    "LeakyReLU": Spec(("negative_slope",), renames={"alpha": "negative_slope"}),
    "ELU": Spec(("alpha",)),
    "Add": Spec(), "Subtract": Spec(), "Multiply": Spec(), "Average": Spec(),
    "Maximum": Spec(), "Minimum": Spec(), "Concatenate": Spec(("axis",)),
    # augmentation: identity in inference (RandomCrop: a central crop), as Keras
    "RandomFlip": Spec(("mode", "seed", "data_format")),
    "RandomTranslation": Spec(_TRANSFORM_KEYS + ("height_factor", "width_factor")),
    "RandomZoom": Spec(_TRANSFORM_KEYS + ("height_factor", "width_factor")),
    "RandomRotation": Spec(_TRANSFORM_KEYS + ("factor",)),
    "RandomCrop": Spec(("height", "width", "seed", "data_format")),
}

#: Keras's aliases of the same classes
_ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D",
            "Convolution2DTranspose": "Conv2DTranspose",
            "SeparableConvolution2D": "SeparableConv2D",
            "AvgPool2D": "AveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
            "GlobalMaxPool2D": "GlobalMaxPooling2D"}

_DEFAULT = object()  # an option left at fastconv's default
_KINDS = {"initializer": "keras.initializers", "regularizer": "keras.regularizers",
          "constraint": "keras.constraints"}
_CODE_CLASSES = {"Lambda", "TFOpLambda", "SlicingOpLambda", "TorchModuleWrapper",
                 "JaxLayer", "FlaxLayer", "TFSMLayer"}


def _where(path, layer):
    return f"Keras file {path!r}, layer {str(layer)[:80]!r}"


def check_object(path, layer, what, obj, module_prefix):
    """A serialized Keras object (``{"module", "class_name", "config",
    "registered_name"}``, Keras 2's ``{"class_name", "config"}``): checked to be one of
    Keras's own (never imported), returned as fastconv's ``{"class_name",
    "config"}``."""
    if not isinstance(obj, dict) or not isinstance(obj.get("class_name"), str):
        raise ModelFileError(f"{_where(path, layer)}: {what} must be a serialized "
                             f"object, got {str(obj)[:120]}")
    module = obj.get("module")
    registered = obj.get("registered_name")
    if (module is not None and (not isinstance(module, str) or not (
            module == module_prefix or module.startswith(module_prefix + ".")))) \
            or (registered is not None and registered != obj["class_name"]):
        raise ModelFileError(f"{_where(path, layer)}: {what} is a custom object "
                             f"(module {str(module)[:80]!r}, registered name "
                             f"{str(registered)[:80]!r}); fastconv reads Keras's own "
                             f"classes only and never imports code from a file")
    config = obj.get("config", {})
    if not isinstance(config, dict):
        raise ModelFileError(f"{_where(path, layer)}: the config of {what} must be a "
                             f"dict, got {str(config)[:120]}")
    return {"class_name": obj["class_name"], "config": config}


def keras_dtype(path, layer, dtype):
    """'float32' / 'float64' from a Keras dtype or DTypePolicy config."""
    if isinstance(dtype, dict):
        obj = check_object(path, layer, "dtype", dtype, "keras")
        if obj["class_name"] not in ("DTypePolicy", "Policy"):
            raise ModelFileError(f"{_where(path, layer)}: dtype policy "
                                 f"{obj['class_name'][:80]!r} is not supported")
        dtype = obj["config"].get("name")
    if dtype is None:
        return "float32"
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{_where(path, layer)}: dtype {str(dtype)[:80]!r} is not "
                             f"supported (fastconv computes in float32 or float64)")
    return dtype


def _activation(path, layer, value):
    if isinstance(value, dict):  # a serialized function of keras.activations
        obj = check_object(path, layer, "activation", value, "keras.activations")
        value = obj["config"] if isinstance(obj["config"], str) else obj["class_name"]
    if value is None:
        return None
    if not isinstance(value, str):
        raise ModelFileError(f"{_where(path, layer)}: activation must be a name, got "
                             f"{str(value)[:80]}")
    return value


def _from_keras_value(path, layer, key, value):
    if key == "activation":
        return _activation(path, layer, value)
    kind = key.rsplit("_", 1)[-1]
    if kind not in _KINDS or value is None:
        return value
    if isinstance(value, str):
        obj = {"class_name": value, "config": {}}
    else:
        obj = check_object(path, layer, key, value, _KINDS[kind])
    if kind == "initializer":
        config = {k: v for k, v in obj["config"].items() if v is not None}
        try:
            if isinstance(value, str):
                return _initializers.serialize_initializer(_initializers.get(value))
            return _initializers.serialize_initializer(_initializers.get(
                {"class_name": obj["class_name"], "config": config}))
        except (TypeError, ValueError):
            return _DEFAULT  # does not change predictions: fastconv's default
    module = _regularizers if kind == "regularizer" else _constraints
    try:
        resolved = module.get(value if isinstance(value, str) else obj)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{_where(path, layer)}: {key} "
                             f"{obj['class_name'][:80]!r} is not supported "
                             f"({exc})") from None
    return {"class_name": type(resolved).__name__, "config": resolved.get_config()}


def layer_class(path, entry):
    """(Keras class name, Spec) of a layer entry, refusing code and custom classes."""
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
        raise ModelFileError(f"Keras file {path!r}: a layer entry must be a dict with "
                             f"a class_name, got {str(entry)[:120]}")
    name = entry["class_name"]
    cfg = entry.get("config")
    label = cfg.get("name", name) if isinstance(cfg, dict) else name
    if name in ("Sequential", "Functional", "Model"):
        raise ModelFileError(f"{_where(path, label)}: a model nested as a layer is not "
                             f"supported; save the inner model's layers in the outer "
                             f"model")
    if name in _CODE_CLASSES:
        raise ModelFileError(f"{_where(path, label)}: {name} layers hold code; "
                             f"fastconv never runs code from a file (use layers it "
                             f"has instead)")
    check_object(path, label, "the layer class", {**entry, "config": {}},
                 "keras.layers")
    name = _ALIASES.get(name, name)
    if name not in TABLE:
        raise ModelFileError(f"{_where(path, label)}: layer class {name[:80]!r} is not "
                             f"supported; fastconv reads {', '.join(sorted(TABLE))}")
    return name, TABLE[name]


def layer_from_keras(path, entry):
    """A fastconv layer (unbuilt) from a Keras layer entry."""
    name, spec = layer_class(path, entry)
    cfg = entry.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("name"), str) \
            or not cfg["name"]:
        raise ModelFileError(f"Keras file {path!r}: the config of a {name} layer must "
                             f"be a dict with a non-empty name, got {str(cfg)[:120]}")
    label = cfg["name"]
    kwargs = {"name": label, "dtype": keras_dtype(path, label, cfg.get("dtype"))}
    trainable = cfg.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ModelFileError(f"{_where(path, label)}: trainable must be true or false, "
                             f"got {str(trainable)[:40]}")
    kwargs["trainable"] = trainable
    for key, value in cfg.items():
        if key in ("name", "dtype", "trainable"):
            continue
        key = spec.renames.get(key, key)
        if key == "axis" and name == "BatchNormalization" and isinstance(value, list) \
                and len(value) == 1:
            value = value[0]  # Keras 2 writes [3]
        if key in spec.keys:
            value = _from_keras_value(path, label, key, value)
            if value is not _DEFAULT:
                kwargs[key] = value
        elif key in ("batch_input_shape", "batch_shape"):
            kwargs["input_shape"] = input_shape_from_keras(path, label, value)
        elif key in spec.fixed:
            if value != spec.fixed[key]:
                raise ModelFileError(f"{_where(path, label)}: option {key}="
                                     f"{str(value)[:80]} is not supported (fastconv "
                                     f"has only {key}={spec.fixed[key]!r})")
        elif not (value is None or value is False):
            raise ModelFileError(f"{_where(path, label)}: option {key[:80]!r}="
                                 f"{str(value)[:80]} of {name} is not supported")
    cls = LAYER_CLASSES[spec.fc_class or name]
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{_where(path, label)} ({name}): {exc}") from None


def input_shape_from_keras(path, layer, shape):
    """The sample shape (without the batch axis) of a Keras batch shape."""
    if not isinstance(shape, (list, tuple)) or len(shape) < 2 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s < 2**31
            for s in shape[1:]):
        raise ModelFileError(f"{_where(path, layer)}: the input shape must be "
                             f"[null, positive sizes...], got {str(shape)[:120]}")
    return tuple(shape[1:])


# --------------------------------------------------------------------------- writing
def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def _to_keras_value(key, value):
    kind = key.rsplit("_", 1)[-1]
    if kind not in _KINDS or value is None:
        return value
    if isinstance(value, str):  # a fastconv alias: the class it makes
        value = {"class_name": type(_initializers.get(value)).__name__,
                 "config": _initializers.get(value).get_config()}
    return {"module": _KINDS[kind], "class_name": value["class_name"],
            "config": value["config"], "registered_name": None}


def layer_to_keras(layer):
    """The Keras 3 layer entry of a fastconv layer (``module``, ``class_name``,
    ``config``, ``registered_name``)."""
    name = type(layer).__name__
    spec = TABLE.get(name)
    if spec is None or LAYER_CLASSES.get(spec.fc_class or name) is not type(layer):
        raise ValueError(f"layer {layer.name!r} ({name}) cannot be written to a Keras "
                         f"file; Keras files hold {', '.join(sorted(TABLE))}")
    fc = layer.get_config()
    cfg = {"name": layer.name, "trainable": layer.trainable,
           "dtype": _policy(layer.dtype.name)}
    for key in spec.keys:
        value = fc.get(key)
        if isinstance(value, tuple):
            value = list(value)
        cfg[key] = _to_keras_value(key, value)
        if key == "activation" and value is None:
            cfg[key] = "linear"
    cfg.update(spec.fixed)
    return {"module": "keras.layers", "class_name": name, "config": cfg,
            "registered_name": None}


def input_layer_to_keras(name, shape, dtype):
    """Keras 3's InputLayer entry."""
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None] + list(shape), "dtype": dtype,
                       "sparse": False, "ragged": False, "name": name,
                       "optional": False},
            "registered_name": None}


def dtype_policy(dtype):
    """Keras 3's DTypePolicy config of a dtype name."""
    return _policy(dtype)
