"""Weights from and to PyTorch state dicts, and safetensors files.

``from_torch_state_dict(model, state_dict)`` maps the modules of a PyTorch state dict,
in their order, onto the fastconv layers that have weights, in ``model.layers`` order
(for a functional model, the order of its config):

    fastconv layer        PyTorch module(s)            transform
    Conv2D                Conv2d                       weight (O, I/g, kh, kw) -> (kh, kw, I/g, O)
    DepthwiseConv2D       Conv2d (groups = C)          weight (C*m, 1, kh, kw) -> (kh, kw, C, m)
    SeparableConv2D       Conv2d (groups = C), Conv2d  depthwise as above, pointwise 1x1
    Conv2DTranspose       ConvTranspose2d              weight (I, O, kh, kw) -> (kh, kw, O, I)
    BatchNormalization    BatchNorm2d                  weight, bias, running_mean, running_var
    Dense                 Linear                       weight (O, I) -> (I, O)

``num_batches_tracked`` is ignored (BatchNorm2d's eps and momentum are not in a state
dict: give the fastconv layer ``epsilon=1e-5`` to match PyTorch's default).  PyTorch
flattens a feature map as (C, H, W), a fastconv Flatten as (H, W, C) (channels_first
input is moved to channels_last first, as Keras does): the Dense after a Flatten gets
its rows permuted so the predictions match, whatever the model's data format.  Values
may be NumPy arrays or torch tensors (converted with ``.detach().cpu().numpy()``;
torch is never imported here).  Every array is checked before any weight changes.

safetensors (the ``safetensors`` package, NumPy API): ``save_safetensors`` writes the
weights in fastconv's (Keras's) layout named ``<layer>.<weight>`` (``conv2d.kernel``);
``load_safetensors`` reads such a file, or a PyTorch state dict saved as safetensors
(through from_torch_state_dict).  ``model.save_weights`` / ``load_weights`` on a
``.safetensors`` name come here.
"""
import json
import os

import numpy as np

from ._model_file import ModelFileError, open_regular

__all__ = ["from_torch_state_dict", "to_torch_state_dict", "save_safetensors",
           "load_safetensors"]

_CONV = ("Conv2D",)
_SHAPE_ONLY = ("Dropout", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax")


def _numpy(value, key):
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"state_dict[{key!r}] must be an array or a tensor, got "
                        f"{type(value).__name__} ({exc})") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"state_dict[{key!r}] must hold numbers, got dtype {arr.dtype}")
    return arr


def _modules(state_dict):
    """[(module prefix, {param name: (key, array)})] in the state dict's order."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict must be a mapping of names to arrays or tensors, "
                        f"got {type(state_dict).__name__}")
    modules = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be strings, got {key!r}")
        prefix, _, param = key.rpartition(".")
        if param == "num_batches_tracked":
            continue
        modules.setdefault(prefix, {})[param] = (key, value)
    out = []
    for prefix, params in modules.items():
        if "weight" not in params and "running_mean" not in params:
            continue  # buffers of modules fastconv has no counterpart for
        out.append((prefix, params))
    return out


def _kind(params):
    if "running_mean" in params:
        return "batchnorm"
    ndim = np.ndim(params["weight"][1]) if "weight" in params else 0
    return {4: "conv", 2: "linear"}.get(ndim, f"a {ndim}-d weight")


def _wanted(layer):
    """The PyTorch module kinds a fastconv layer takes, in order."""
    name = type(layer).__name__
    if name == "SeparableConv2D":
        return ["conv", "conv"]
    if name == "BatchNormalization":
        return ["batchnorm"]
    if name == "Dense":
        return ["linear"]
    if name in ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose"):
        return ["conv"]
    raise ValueError(f"layer {layer.name!r} ({name}) has weights but no PyTorch "
                     f"counterpart that from_torch_state_dict maps")


def _layout(model_layers, i):
    """The data format of the feature map a Flatten at index i receives."""
    for layer in reversed(model_layers[:i]):
        fmt = getattr(layer, "data_format", None)
        if fmt is not None and type(layer).__name__ != "Flatten":
            return fmt
    return model_layers[i].data_format


def _flatten_order(flatten, layout):
    """perm with fastconv's flattened feature j = PyTorch's feature perm[j]."""
    shape = tuple(flatten.input_shape[1:])
    if layout == "channels_last":
        h, w, c = shape
        idx = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0)
    else:
        c, h, w = shape
        idx = np.arange(c * h * w).reshape(c, h, w)
    if flatten.data_format == "channels_first":
        idx = np.moveaxis(idx, 0, -1)
    return idx.reshape(-1)


def _pairs(model, modules):
    """[(layer, [module params], flatten perm or None)], checking counts."""
    layers = list(model.layers)
    targets = []
    perm = None
    for i, layer in enumerate(layers):
        name = type(layer).__name__
        if name == "Flatten":
            perm = (_flatten_order(layer, _layout(layers, i))
                    if len(layer.input_shape) == 4 else None)
            continue
        if layer.weights:
            targets.append((layer, _wanted(layer), perm if name == "Dense" else None))
        if not (name in _SHAPE_ONLY and not layer.weights):
            perm = None
    need = sum(len(w) for _, w, _ in targets)
    if need != len(modules):
        raise ValueError(
            f"state_dict has {len(modules)} modules with weights "
            f"({', '.join(p or '<root>' for p, _ in modules)[:300]}); model "
            f"{model.name!r} needs {need} for its layers "
            f"({', '.join(f'{la.name} ({type(la).__name__})' for la, _, _ in targets)[:300]})")
    out, k = [], 0
    for layer, kinds, perm in targets:
        group = modules[k:k + len(kinds)]
        k += len(kinds)
        for (prefix, params), kind in zip(group, kinds):
            if _kind(params) != kind:
                raise ValueError(f"state_dict module {prefix!r} ({_kind(params)}) does "
                                 f"not fit layer {layer.name!r} "
                                 f"({type(layer).__name__}, wants a {kind})")
        out.append((layer, group, perm))
    return out


def _get(params, name, prefix, layer, required=True):
    if name not in params:
        if required:
            raise ValueError(f"state_dict has no {prefix}.{name} for layer "
                             f"{layer.name!r}")
        return None, None
    key, value = params[name]
    return key, _numpy(value, key)


def _converted(layer, group, perm):
    """{fastconv weight name: (array, source key)} in fastconv's layout."""
    name = type(layer).__name__
    out = {}
    (prefix, params) = group[0]
    if name == "BatchNormalization":
        for ours, theirs in (("gamma", "weight"), ("beta", "bias"),
                             ("moving_mean", "running_mean"),
                             ("moving_variance", "running_var")):
            if ours in layer._weight_names:
                key, arr = _get(params, theirs, prefix, layer)
                out[ours] = (arr, key)
        return out
    key, w = _get(params, "weight", prefix, layer)
    if name == "Dense":
        kernel = w.T
        if perm is not None and kernel.shape[0] == perm.size:
            kernel = kernel[perm]
        out["kernel"] = (kernel, key)
    elif name == "Conv2DTranspose":
        out["kernel"] = (w.transpose(2, 3, 1, 0), key)
    elif name in ("DepthwiseConv2D", "SeparableConv2D"):
        depthwise = _depthwise(w, layer, key)
        out["kernel" if name == "DepthwiseConv2D" else "depthwise_kernel"] = \
            (depthwise, key)
        if name == "SeparableConv2D":
            bias_from = group[1]
            if "bias" in params:
                raise ValueError(f"state_dict {prefix}.bias: the depthwise convolution "
                                 f"of layer {layer.name!r} has no bias (only the "
                                 f"pointwise one)")
            prefix, params = bias_from
            key, pw = _get(params, "weight", prefix, layer)
            out["pointwise_kernel"] = (pw.transpose(2, 3, 1, 0), key)
    else:
        out["kernel"] = (w.transpose(2, 3, 1, 0), key)
    if "bias" in layer._weight_names:
        key, b = _get(params, "bias", prefix, layer)
        out["bias"] = (b, key)
    elif "bias" in params:
        raise ValueError(f"state_dict has {prefix}.bias but layer {layer.name!r} has no "
                         f"bias (use_bias=False)")
    return out


def _depthwise(w, layer, key):
    """(C*m, 1, kh, kw) -> (kh, kw, C, m)."""
    if w.ndim != 4 or w.shape[1] != 1:
        raise ValueError(f"state_dict[{key!r}] must be a depthwise weight (C*m, 1, kh, "
                         f"kw) for layer {layer.name!r}, got shape {w.shape}")
    m = layer.depth_multiplier
    c = w.shape[0] // m
    return w.reshape(c, m, w.shape[2], w.shape[3]).transpose(2, 3, 0, 1)


def from_torch_state_dict(model, state_dict):
    """Load a PyTorch state dict into the built fastconv ``model`` (module docstring).

    Raises ValueError naming both sides on a count, kind or shape mismatch; the model
    is unchanged then."""
    if not getattr(model, "built", False):
        raise ValueError(f"model {getattr(model, 'name', model)!r} is not built: build "
                         f"it before from_torch_state_dict()")
    updates = []
    for layer, group, perm in _pairs(model, _modules(state_dict)):
        arrays = _converted(layer, group, perm)
        values = []
        for wname, target in zip(layer._weight_names, layer.weights):
            arr, key = arrays[wname]
            if arr.shape != target.shape:
                raise ValueError(f"state_dict[{key!r}] has shape {_torch_shape(arr, wname)}"
                                 f", which does not fit {layer.name}.{wname} of shape "
                                 f"{target.shape} (PyTorch layout "
                                 f"{_torch_shape(np.empty(target.shape), wname)})")
            values.append(np.ascontiguousarray(arr, dtype=target.dtype))
        updates.append((layer, values))
    for layer, values in updates:
        layer.set_weights(values)


def _torch_shape(arr, wname):
    if arr.ndim == 4:
        return tuple(arr.shape[i] for i in (3, 2, 0, 1))
    if arr.ndim == 2:
        return tuple(arr.shape[::-1])
    return tuple(arr.shape)


def to_torch_state_dict(model, keys=None):
    """The model's weights as a PyTorch state dict of NumPy arrays (the inverse of
    from_torch_state_dict).  ``keys``: the target's ``state_dict().keys()``, to use its
    names (and fill its BatchNorm2d ``num_batches_tracked`` with 0); default names are
    ``<layer>.weight``, ``<layer>.bias``, ... (SeparableConv2D: ``<layer>.depthwise``
    and ``<layer>.pointwise`` modules)."""
    modules = []
    layers = list(model.layers)
    perm = None
    for i, layer in enumerate(layers):
        name = type(layer).__name__
        if name == "Flatten":
            perm = (_flatten_order(layer, _layout(layers, i))
                    if len(layer.input_shape) == 4 else None)
            continue
        if layer.weights:
            modules += _to_torch(layer, perm if name == "Dense" else None)
        if not (name in _SHAPE_ONLY and not layer.weights):
            perm = None
    if keys is None:
        return {f"{prefix}.{p}": arr for prefix, params in modules
                for p, arr in params.items()}
    keys = list(keys)
    theirs = _modules({k: np.zeros(0) for k in keys})
    if len(theirs) != len(modules):
        raise ValueError(f"keys name {len(theirs)} modules with weights, model "
                         f"{model.name!r} has {len(modules)}")
    out = {}
    for (prefix, params), (_, ours) in zip(theirs, modules):
        for p in params:
            if p not in ours:
                raise ValueError(f"key {prefix}.{p} has no counterpart in the model")
            out[f"{prefix}.{p}"] = ours[p]
        if f"{prefix}.num_batches_tracked" in keys:
            out[f"{prefix}.num_batches_tracked"] = np.array(0, np.int64)
    return {k: out[k] for k in keys if k in out}


def _to_torch(layer, perm):
    name = type(layer).__name__
    w = dict(zip(layer._weight_names, layer.get_weights()))
    if name == "BatchNormalization":
        params = {t: w[o] for o, t in (("gamma", "weight"), ("beta", "bias"),
                                        ("moving_mean", "running_mean"),
                                        ("moving_variance", "running_var")) if o in w}
        return [(layer.name, params)]
    bias = {"bias": w["bias"]} if "bias" in w else {}
    if name == "Dense":
        kernel = w["kernel"]
        if perm is not None and kernel.shape[0] == perm.size:
            kernel = kernel[np.argsort(perm)]
        return [(layer.name, {"weight": np.ascontiguousarray(kernel.T), **bias})]
    if name == "DepthwiseConv2D":
        return [(layer.name, {"weight": _torch_depthwise(w["kernel"]), **bias})]
    if name == "SeparableConv2D":
        return [(f"{layer.name}.depthwise",
                 {"weight": _torch_depthwise(w["depthwise_kernel"])}),
                (f"{layer.name}.pointwise",
                 {"weight": np.ascontiguousarray(
                     w["pointwise_kernel"].transpose(3, 2, 0, 1)), **bias})]
    if name in ("Conv2D", "Conv2DTranspose"):
        return [(layer.name, {"weight": np.ascontiguousarray(
            w["kernel"].transpose(3, 2, 0, 1)), **bias})]
    raise ValueError(f"layer {layer.name!r} ({name}) has no PyTorch counterpart")


def _torch_depthwise(k):
    kh, kw, c, m = k.shape
    return np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


# --------------------------------------------------------------------------- safetensors
def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError("safetensors files need the safetensors package: pip install "
                          "'fastconv[safetensors]'") from None
    return st


def save_safetensors(model, filepath):
    """Write the model's weights to a ``.safetensors`` file, named
    ``<layer>.<weight>`` in fastconv's (Keras's) layout, their order in the metadata;
    atomically."""
    from .saving import _write_atomically
    st = _safetensors()
    path = os.fsdecode(os.fspath(filepath))
    if not getattr(model, "built", False):
        raise ValueError(f"model {model.name!r} is not built: build it or run it on "
                         f"data before saving its weights")
    tensors = {f"{layer.name}.{n}": np.ascontiguousarray(w)
               for layer in model.layers
               for n, w in zip(layer._weight_names, layer.weights)}
    data = st.save(tensors, metadata={"format": "fastconv", "layout": "keras",
                                      "order": json.dumps(list(tensors))})
    _write_atomically(path, lambda f: f.write(data))


def _natural(key):
    """Sort key of a state dict name: numbers as numbers ('2.weight' < '10.weight')."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def load_safetensors(model, filepath):
    """Load a ``.safetensors`` file into the built ``model``.

    A file save_safetensors wrote is matched to the model's weights in its recorded
    order (names may differ, shapes may not).  Any other file is taken as a PyTorch
    state dict (from_torch_state_dict); safetensors keeps no order, so its modules are
    taken in natural order of their names ('features.2' before 'features.10'), which
    is the module order of nn.Sequential models.  Shapes are checked before anything is
    read; a damaged or unfitting file raises ModelFileError naming it."""
    path = os.fsdecode(os.fspath(filepath))
    _safetensors()
    from safetensors import safe_open
    open_regular(path).close()
    if not getattr(model, "built", False):
        raise ValueError(f"model {model.name!r} is not built: build it before loading "
                         f"weights")
    ours = [(f"{layer.name}.{n}", w) for layer in model.layers
            for n, w in zip(layer._weight_names, layer.weights)]
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            keys = sorted(f.keys(), key=_natural)
            order = None
            if meta.get("format") == "fastconv":
                order = json.loads(meta.get("order", "null"))
                if not isinstance(order, list) or sorted(order) != sorted(keys):
                    raise ModelFileError(f"safetensors file {path!r}: its recorded "
                                         f"order does not list its tensors")
                if len(order) != len(ours):
                    raise ModelFileError(
                        f"safetensors file {path!r} holds {len(order)} weight arrays, "
                        f"model {model.name!r} has {len(ours)}")
                for k, (name, w) in zip(order, ours):
                    shape = tuple(f.get_slice(k).get_shape())
                    if shape != w.shape:
                        raise ModelFileError(f"safetensors file {path!r}: {k} has shape "
                                             f"{shape}, which does not fit {name} of "
                                             f"shape {w.shape}")
                keys = order
            arrays = {k: f.get_tensor(k) for k in keys}
    except ModelFileError:
        raise
    except Exception as exc:  # safetensors' own errors: a bad header, offsets, dtypes
        raise ModelFileError(f"safetensors file {path!r} is truncated or corrupted "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from None
    if order is None:
        try:
            from_torch_state_dict(model, arrays)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"safetensors file {path!r} does not fit model "
                                 f"{model.name!r}: {exc}") from None
        return
    values = iter(arrays[k] for k in order)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([next(values) for _ in layer.weights])
