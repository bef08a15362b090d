"""Symbolic tensors and the graph of a functional model (Keras's Functional API).

``Input(shape)`` returns a KerasTensor: a shape (batch axis None), a dtype and the call
(SymNode) that made it.  A layer called on KerasTensors builds itself for their shapes
and records a SymNode in ``layer._inbound_nodes``; its output is a new KerasTensor.
``map_graph(inputs, outputs)`` walks back from the outputs and returns the layers in
Keras's order (by decreasing depth, then by first visit: the order of Keras's
``model.layers`` and so of ``get_weights``) and the calls in the order they run; it
raises ValueError for a graph that is disconnected, has unused inputs or repeats a
layer name.  ``runner_nodes`` turns the calls into fastconv/fusion.py's Nodes (model
inputs are the negative sources -1, -2, ..., model outputs the negative consumers).
"""
import collections

__all__ = ["KerasTensor", "SymNode", "is_symbolic", "call_symbolic", "map_graph",
           "runner_nodes", "tensor_label", "inline"]


class KerasTensor:
    """A symbolic tensor: ``shape`` (batch axis first, None where unknown), ``dtype``
    and ``node``, the layer call that produced it."""

    __slots__ = ("shape", "dtype", "node")

    def __init__(self, shape, dtype, node=None):
        self.shape, self.dtype, self.node = tuple(shape), dtype, node

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def name(self):
        return self.node.layer.name if self.node is not None else "?"

    @property
    def _keras_history(self):
        """(layer, node index, tensor index), as Keras names it."""
        return self.node.layer, self.node.index, 0

    def __repr__(self):
        return (f"<KerasTensor shape={self.shape}, dtype={self.dtype.name}, "
                f"name={self.name}>")

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic: build a fastconv.Model(inputs, outputs) "
                        "and call the model on arrays")


class SymNode:
    """One call of ``layer`` on KerasTensors ``inputs`` (``as_list``: given as a
    list), giving ``output``; ``index`` is its position in layer._inbound_nodes."""

    __slots__ = ("layer", "inputs", "as_list", "output", "index")

    def __init__(self, layer, inputs, as_list, output_shape, dtype):
        self.layer, self.inputs, self.as_list = layer, tuple(inputs), as_list
        self.index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        self.output = KerasTensor(output_shape, dtype, self)

    @property
    def is_input(self):
        return not self.inputs and type(self.layer).__name__ == "InputLayer"

    @property
    def parents(self):
        return [t.node for t in self.inputs]


def is_symbolic(x):
    """Whether x is a KerasTensor or a list / tuple holding one."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, KerasTensor) for t in x)


def tensor_label(t):
    return f"{t.name}{t.shape}"


def call_symbolic(layer, x):
    """``layer(x)`` on KerasTensor(s): build the layer for their shapes, record the
    call and return its output KerasTensor."""
    as_list = isinstance(x, (list, tuple))
    tensors = list(x) if as_list else [x]
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) was called "
                            f"on symbolic tensors mixed with {type(t).__name__} "
                            f"{t!r:.80}; give KerasTensors only")
    if getattr(layer, "_multi_input", False):
        if not as_list:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) merges "
                             f"several inputs: call it on a list of tensors, got one "
                             f"tensor {tensor_label(x)}")
        shape = [t.shape for t in tensors]
    else:
        if len(tensors) != 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes one "
                             f"input, got {len(tensors)} tensors "
                             f"({', '.join(tensor_label(t) for t in tensors)})")
        shape = tensors[0].shape
    layer.build(shape)
    out_shape = layer.compute_output_shape(shape)
    batch = tensors[0].shape[0] if all(t.shape[0] == tensors[0].shape[0]
                                       for t in tensors) else None
    return SymNode(layer, tensors, as_list, (batch,) + tuple(out_shape[1:]),
                   layer.dtype).output


def inline(model, x):
    """A model called on KerasTensors x: each of its calls repeated, in order, on the
    tensors x leads to (a Sequential: its layers in a chain), so that its layers
    become calls of the graph x belongs to, with their weights shared.  Returns the
    list of output tensors.  (Keras keeps a nested model as one layer; here its
    layers are listed, and ordered, among the calling model's.)"""
    tensors = list(x) if isinstance(x, (list, tuple)) else [x]
    if not all(isinstance(t, KerasTensor) for t in tensors):
        raise TypeError(f"model {model.name!r} was called on symbolic tensors mixed "
                        f"with other values: {x!r:.120}")
    calls = getattr(model, "_calls", None)
    if calls is None:  # a Sequential: its layers in a chain
        if len(tensors) != 1:
            raise ValueError(f"model {model.name!r} takes one input, got "
                             f"{len(tensors)} tensors")
        h = tensors[0]
        for layer in model._layers:
            h = layer(h)
        return [h]
    if len(tensors) != len(model._inputs):
        raise ValueError(f"model {model.name!r} takes {len(model._inputs)} inputs, got "
                         f"{len(tensors)} tensors "
                         f"({', '.join(tensor_label(t) for t in tensors)})")
    mapped = {}
    for t, new in zip(model._inputs, tensors):
        if len(t.shape) != len(new.shape) or any(
                a is not None and b is not None and a != b
                for a, b in zip(t.shape[1:], new.shape[1:])):
            raise ValueError(f"input {t.name!r} of model {model.name!r} expects shape "
                             f"{t.shape}, got {tensor_label(new)}")
        mapped[t.node] = new
    for node in calls:
        args = [mapped[t.node] for t in node.inputs]
        mapped[node] = node.layer(args if node.as_list else args[0])
    return [mapped[t.node] for t in model._outputs]


def _input_positions(inputs):
    pos = {}
    for k, t in enumerate(inputs):
        if not isinstance(t, KerasTensor) or t.node is None or not t.node.is_input:
            raise ValueError(f"the inputs of a Model must be tensors made by "
                             f"fastconv.Input(...), got {t!r:.100} at position {k}")
        if t.node in pos:
            raise ValueError(f"input {t.name!r} is given twice among the model's inputs")
        pos[t.node] = k
    return pos


def map_graph(inputs, outputs):
    """(layers in Keras's order, the calls in the order they run) of the graph from
    ``inputs`` to ``outputs`` (lists of KerasTensors).  Keras's map_graph: a depth-first
    walk from the outputs (stopping at the model's inputs), depths from the outputs
    (an input's depth is the largest), layers by decreasing depth then first visit."""
    in_pos = _input_positions(inputs)
    for k, t in enumerate(outputs):
        if not isinstance(t, KerasTensor) or t.node is None:
            raise ValueError(f"the outputs of a Model must be symbolic tensors (a layer "
                             f"called on Input(...)), got {t!r:.100} at position {k}")
    finished, in_progress, order = set(), set(), []
    layer_index = {}

    def enter(node, via):
        layer_index.setdefault(node.layer, len(layer_index))
        if node.is_input and node not in in_pos:
            names = ", ".join(repr(t.name) for t in inputs)
            raise ValueError(
                f"graph disconnected: layer {via.name!r} ({type(via).__name__}) reads "
                f"input {node.layer.name!r} {node.output.shape}, which is not among the "
                f"model's inputs ({names}); a tensor of another graph?")
        in_progress.add(node)

    for t in outputs:  # depth first, without recursion (graphs may be deep)
        if t.node in finished:
            continue
        enter(t.node, t.node.layer)
        stack = [(t.node, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(node.inputs):
                stack[-1] = (node, i + 1)
                child = node.inputs[i].node
                if child in finished:
                    continue
                if child in in_progress:
                    raise ValueError(f"the graph has a cycle through layer "
                                     f"{child.layer.name!r}")
                enter(child, node.layer)
                stack.append((child, 0))
                continue
            stack.pop()
            in_progress.discard(node)
            finished.add(node)
            order.append(node)
    unused = [t for t in inputs if t.node not in finished]
    if unused:
        raise ValueError(f"model input(s) {', '.join(tensor_label(t) for t in unused)} "
                         f"are not used by any output "
                         f"({', '.join(tensor_label(t) for t in outputs)})")
    depth, layer_depth = {}, {}
    for node in reversed(order):
        d = max(depth.setdefault(node, 0), layer_depth.get(node.layer, 0))
        layer_depth[node.layer] = depth[node] = d
        for parent in node.parents:
            depth[parent] = max(d + 1, depth.get(parent, 0))
    by_depth = collections.defaultdict(list)
    for layer, d in layer_depth.items():
        by_depth[d].append(layer)
    layers = []
    for d in sorted(by_depth, reverse=True):
        layers.extend(sorted(by_depth[d], key=lambda la: layer_index[la]))
    names = collections.Counter(layer.name for layer in layers)
    twice = [n for n, c in names.items() if c > 1]
    if twice:
        raise ValueError(f"layer names must be unique in a model; {twice[0]!r} is used "
                         f"by {names[twice[0]]} layers")
    rank = {node: i for i, node in enumerate(order)}
    calls = sorted((n for n in order if not n.is_input),
                   key=lambda n: (-depth[n], rank[n]))
    return layers, calls


def runner_nodes(calls, inputs, outputs):
    """fastconv/fusion.py Nodes of the calls (in their order): node k's inputs are the
    indices of the calls it reads, or -(j + 1) for the model's input j; consumers the
    calls that read it, or -(j + 1) where it is the model's output j.  Also returns the
    source of each output (a call index or a negative input)."""
    from .fusion import Node

    index = {node: i for i, node in enumerate(calls)}
    source = {t.node: -(k + 1) for k, t in enumerate(inputs)}
    source.update(index)
    consumers = [[] for _ in calls]
    reads = []
    for i, node in enumerate(calls):
        srcs = tuple(source[t.node] for t in node.inputs)
        reads.append(srcs)
        for s in srcs:
            if s >= 0 and i not in consumers[s]:
                consumers[s].append(i)
    out_sources = [source[t.node] for t in outputs]
    for j, s in enumerate(out_sources):
        if s >= 0:
            consumers[s].append(-(j + 1))
    nodes = [Node(i, node.layer, reads[i], consumers[i]) for i, node in enumerate(calls)]
    return nodes, out_sources
