"""A functional model's config, in Keras 3's shape, and the model of such a config.

    {"name": ..., "trainable": true,
     "layers": [{"class_name": ..., "config": {...}, "name": ...,
                 "inbound_nodes": [{"args": [<tensor> or [<tensor>, ...]],
                                    "kwargs": {}}, ...]}, ...],
     "input_layers": [[layer name, node index, tensor index], ...],
     "output_layers": [[...], ...] (or a dict of them by output name)}

where a tensor is ``{"class_name": "__keras_tensor__", "config": {"shape": [...],
"dtype": ..., "keras_history": [layer name, node index, tensor index]}}`` and node
indices count the layer's calls inside this model.  Keras 2's node lists
``[[layer name, node index, tensor index, kwargs], ...]`` are read too.  Layers are
rebuilt through ``make_layer`` (default: fastconv's registry LAYER_CLASSES), then
called in an order where every call's inputs exist: a config whose calls wait on each
other (a cycle) or name unknown layers raises ValueError naming them.
"""
from ._serialization import deserialize, serialize

__all__ = ["get_config", "from_config"]

_IGNORED_KWARGS = ("training", "mask")


def _node_index(model):
    """{call: its index among its layer's calls in this model}."""
    in_model = set(model._calls) | {t.node for t in model._inputs}
    index = {}
    for layer in model._layers:
        k = 0
        for node in layer._inbound_nodes:
            if node in in_model:
                index[node] = k
                k += 1
    return index


def get_config(model):
    index = _node_index(model)

    def ref(t):
        return [t.node.layer.name, index[t.node], 0]

    def tensor(t):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(t.shape), "dtype": t.dtype.name,
                           "keras_history": ref(t)}}

    layers = []
    for layer in model._layers:
        entry = serialize(layer)
        entry["name"] = layer.name
        calls = sorted((n for n in index if n.layer is layer and not n.is_input),
                       key=index.get)
        entry["inbound_nodes"] = [
            {"args": [[tensor(t) for t in n.inputs] if n.as_list
                      else tensor(n.inputs[0])], "kwargs": {}} for n in calls]
        layers.append(entry)
    outputs = [ref(t) for t in model._outputs]
    if model._outputs_dict:
        outputs = dict(zip(model.output_names, outputs))
    return {"name": model.name, "trainable": True, "layers": layers,
            "input_layers": [ref(t) for t in model._inputs],
            "output_layers": outputs}


def _default_layer(entry):
    from .layers import LAYER_CLASSES
    return deserialize({"class_name": entry.get("class_name"),
                        "config": entry.get("config", {})}, LAYER_CLASSES, "layer")


def _is_ref(value):
    return (isinstance(value, list) and len(value) >= 3 and isinstance(value[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:3]))


def _refs_of(node_data, where):
    """([layer name, node index, tensor index] per input, as_list) of a node."""
    if isinstance(node_data, dict):
        args, kwargs = node_data.get("args"), node_data.get("kwargs", {})
        if not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict):
            raise ValueError(f"{where}: a node must be {{'args': [tensor or list of "
                             f"tensors], 'kwargs': {{}}}}, got {str(node_data)[:200]}")
        extra = sorted(set(kwargs) - set(_IGNORED_KWARGS))
        if extra:
            raise ValueError(f"{where}: call arguments {extra} are not supported")
        arg = args[0]
        as_list = isinstance(arg, list)
        items = arg if as_list else [arg]
        refs = []
        for item in items:
            history = (item.get("config", {}).get("keras_history")
                       if isinstance(item, dict)
                       and item.get("class_name") == "__keras_tensor__" else None)
            if not _is_ref(history):
                raise ValueError(f"{where}: expected a __keras_tensor__ with a "
                                 f"keras_history, got {str(item)[:200]}")
            refs.append(history)
        return refs, as_list
    if isinstance(node_data, list) and node_data and all(_is_ref(r) for r in node_data):
        return node_data, len(node_data) > 1  # Keras 2's node list
    raise ValueError(f"{where}: unreadable node {str(node_data)[:200]}")


def _plain(value):
    """value with every tuple a list (a config from memory rather than JSON)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_config(cls, config, make_layer=None):
    """cls(inputs, outputs, name) of a functional config (see the module doc)."""
    config = _plain(config)
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list) \
            or "input_layers" not in config or "output_layers" not in config:
        raise ValueError(f"a functional model config needs 'layers', 'input_layers' "
                         f"and 'output_layers', got {str(config)[:200]}")
    make = make_layer or _default_layer
    created, pending, order = {}, {}, []
    for entry in config["layers"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or not isinstance(entry.get("inbound_nodes", []), list):
            raise ValueError(f"a layer of a functional config must be a dict with a "
                             f"name and inbound_nodes, got {str(entry)[:200]}")
        name = entry["name"]
        if name in created:
            raise ValueError(f"layer name {name!r} appears twice in the config")
        layer = make(entry)
        if layer.name != name:
            raise ValueError(f"layer entry {name!r} makes a layer named "
                             f"{layer.name!r}")
        created[name] = layer
        pending[name] = [_refs_of(n, f"layer {name!r}")
                         for n in entry.get("inbound_nodes", [])]
        order.append(name)
    # calls recorded on the layers here, counted per layer: node indices of the config
    made = {name: list(created[name]._inbound_nodes) for name in order}

    def tensor(ref, reader):
        name, k = ref[0], ref[1]
        if name not in created:
            raise ValueError(f"{reader} reads layer {name!r}, which the config does not "
                             f"define")
        nodes = made[name]
        return nodes[k].output if k < len(nodes) else None

    while any(pending.values()):
        progress = False
        for name in order:
            queue = pending[name]
            while queue:
                refs, as_list = queue[0]
                tensors = [tensor(r, f"layer {name!r}") for r in refs]
                if any(t is None for t in tensors):
                    break
                layer = created[name]
                layer(tensors if as_list else tensors[0])
                made[name].append(layer._inbound_nodes[-1])
                queue.pop(0)
                progress = True
        if not progress:
            waiting = sorted(n for n, q in pending.items() if q)
            raise ValueError(f"the config's graph cannot be built: layers {waiting} wait "
                             f"on each other's outputs (a cycle) or on calls that do "
                             f"not exist")

    def structure(value, what):
        if isinstance(value, dict):
            return {k: structure(v, what) for k, v in value.items()}
        if _is_ref(value):
            t = tensor(value, what)
            if t is None:
                raise ValueError(f"{what} names call {value[1]} of layer "
                                 f"{value[0]!r}, which does not exist")
            return t
        if isinstance(value, list) and value:
            return [structure(v, what) for v in value]
        raise ValueError(f"{what} must be [layer name, node index, tensor index] "
                         f"entries, got {str(value)[:200]}")

    inputs = structure(config["input_layers"], "input_layers")
    outputs = structure(config["output_layers"], "output_layers")
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    if isinstance(outputs, list) and len(outputs) == 1:
        outputs = outputs[0]
    return cls(inputs, outputs, name=config.get("name"))
