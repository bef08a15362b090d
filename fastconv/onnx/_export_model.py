"""fastconv model -> ONNX file: the model's graph of layer calls (Sequential or
functional Model) walked in order, each call exported by fastconv/onnx/_export.py, and
the merge layers (Add, Concatenate, ...) of functional models."""
import os

import numpy as np

from ._export import _ELEM, EXPORTERS, _Graph, _Value, export_layer
from ._proto import check_opset, require_onnx

__all__ = ["export"]

# The newest IR version of the ONNX release that introduced each opset, so that
# runtimes of that release open the file (onnx.helper.VERSION_TABLE).
_IR_FOR_OPSET = {13: 7, 14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10}


# ------------------------------------------------------------------- merge layers
def _merge(op, binary=False):
    """A merge layer as one variadic ONNX operator, or a chain of a binary one; the
    inputs arranged alike (as the first one is)."""
    def export(g, layer, values, out_shape):
        perm = values[0].perm
        names = [g.arrange(v, perm, layer.name).name for v in values]
        if not binary:
            return _Value(g.node(op, names, layer.name), perm, out_shape)
        y = names[0]
        for other in names[1:]:
            y = g.node(op, [y, other], layer.name)
        return _Value(y, perm, out_shape)
    return export


def _concatenate(g, layer, values, out_shape):
    perm = values[0].perm
    names = [g.arrange(v, perm, layer.name).name for v in values]
    return _Value(g.node("Concat", names, layer.name, axis=values[0].axis(layer.axis)),
                  perm, out_shape)


EXPORTERS.update({
    "Add": _merge("Sum"), "Subtract": _merge("Sub", binary=True),
    "Multiply": _merge("Mul", binary=True), "Average": _merge("Mean"),
    "Maximum": _merge("Max"), "Minimum": _merge("Min"), "Concatenate": _concatenate,
})


# ------------------------------------------------------------------- the graph
def _input_shapes(model):
    tensors = list(getattr(model, "inputs", None) or [])
    if tensors:
        return [tuple(t.shape) for t in tensors], [t.name for t in tensors]
    if not getattr(model, "built", False) or model.input_shape is None:
        raise ValueError(f"model {model.name!r} is not built: call build(input_shape) or "
                         "run it on data before exporting it")
    return [(None,) + tuple(model.input_shape[1:])], ["input"]


def _model_graph(g, model):
    """(inputs, outputs) as (name, shape) lists, the model's calls added to g."""
    shapes, names = _input_shapes(model)
    nodes, out_sources, _ = model._graph_parts()
    if len(names) == 1:
        names = ["input"]
    values, inputs = {}, []
    for k, (name, shape) in enumerate(zip(names, shapes)):
        name = g.unique("".join(ch if ch.isalnum() or ch in "_-." else "_"
                                for ch in name) or "input")
        values[-(k + 1)] = _Value(name, range(len(shape)), (None,) + tuple(shape[1:]))
        inputs.append((name, values[-(k + 1)].shape))
    for node in nodes:
        args = [values[s] for s in node.inputs]
        multi = getattr(node.layer, "_multi_input", False)
        values[node.index] = export_layer(g, node.layer, args if multi else args[0])
    outputs, taken = [], {name for name, _ in inputs}
    for j, source in enumerate(out_sources):
        base = "output" if len(out_sources) == 1 else f"output_{j}"
        v = g.arrange(values[source], range(len(values[source].shape)), base)
        if v.name in taken:
            v = _Value(g.node("Identity", [v.name], base), v.perm, v.shape)
        taken.add(v.name)
        outputs.append((v.name, v.shape))
    return inputs, outputs


def _value_info(onnx, name, dtype, shape):
    dims = ["N" if s is None else int(s) for s in shape]
    return onnx.helper.make_tensor_value_info(name, _ELEM[dtype], dims)


def export(model, path, opset=17):
    """Write ``model`` (a built Sequential or functional Model) to ``path`` as an
    ONNX model of ``opset`` (13 to 21).  The ONNX inputs and outputs have the model's
    layouts and dtype, with a symbolic batch axis "N"; the model is checked with
    onnx.checker before writing, and the file is written to a temporary name, then
    renamed.  Returns path."""
    opset = check_opset(opset)
    onnx = require_onnx()
    if not hasattr(model, "layers") or not hasattr(model, "_graph_parts"):
        raise TypeError(f"model must be a fastconv model, got {type(model).__name__}")
    path = os.fspath(path)
    dtype = np.dtype(model.dtype)
    if dtype not in _ELEM:
        raise TypeError(f"model dtype must be float32 or float64, got {dtype}")
    g = _Graph(onnx, dtype, opset)
    inputs, outputs = _model_graph(g, model)
    graph = onnx.helper.make_graph(
        g.nodes, model.name,
        [_value_info(onnx, n, dtype, s) for n, s in inputs],
        [_value_info(onnx, n, dtype, s) for n, s in outputs],
        initializer=g.initializers)
    proto = onnx.helper.make_model(
        graph, producer_name="fastconv",
        opset_imports=[onnx.helper.make_operatorsetid("", opset)])
    proto.ir_version = min(proto.ir_version, _IR_FOR_OPSET.get(opset, 10))
    onnx.checker.check_model(proto)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(proto.SerializeToString())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
