"""ONNX graph -> fastconv model.

The graph's nodes are visited in their (topological) order.  A node whose inputs are
all constants (initializers, Constant nodes, shapes of runtime tensors) and whose
operator is shape arithmetic or a plain array operation is evaluated with NumPy
(``FOLD``, fastconv/onnx/_fold.py): the Shape -> Gather -> Unsqueeze -> Concat ->
Reshape patterns exporters write fold into one constant target shape.  Every other
node becomes a layer spec (fastconv/onnx/_ops.py, _ops_image.py), or is an alias of
its input (Identity, Dropout, Transpose).

A runtime tensor is a ``_Dyn``: the fastconv tensor holding it (``fc``: "input" or the
name of the layer that makes it), ``perm`` (ONNX axis i is fastconv axis perm[i]:
(0, 3, 1, 2) for NCHW ONNX tensors of a channels_last model), ``flat`` (for a
flattened tensor whose fastconv order differs from ONNX's: fastconv element m is ONNX
element flat[m]; the next Gemm's rows are permuted to match) and its ONNX shape.

After conversion a pass fuses what fastconv layers do in one (an activation into the
Conv2D or Dense before it, a per-channel affine map such as an inference
BatchNormalization or a bias Add into their weights, a Flatten into the global
pooling before it), then the specs become a Sequential model.
"""
import os
from collections import Counter

import numpy as np

from ..layers import Input
from ..functional import Model
from ..models import Sequential
from ._proto import BATCH, FLOAT_TYPES, inverse, require_onnx
from ._tensors import OnnxImportError, read_model, tensor_to_array

__all__ = ["load", "OnnxImportError"]

#: The default-domain opsets load reads (the operators' semantics it implements).
OPSETS = (11, 23)


class _Dyn:
    """A runtime tensor (see the module docstring)."""
    __slots__ = ("fc", "perm", "flat", "shape")

    def __init__(self, fc, perm, shape, flat=None):
        self.fc, self.perm, self.shape, self.flat = fc, tuple(perm), tuple(shape), flat

    @property
    def fc_shape(self):
        """The shape of the fastconv tensor (batch None)."""
        return tuple(self.shape[i] for i in inverse(self.perm))


class _Spec:
    """A layer to make: class, keyword arguments, input tensors (fastconv ids), weights
    for set_weights (None: the layer's own), and ``affine``, (scale, offset, axis) of
    a per-channel map x * scale + offset on fastconv axis ``axis`` (counted from the
    end; None: the same scalars on every element) that the layer is, when it may be
    folded into the Conv2D / Dense before it."""

    def __init__(self, cls, kwargs, inputs, weights=None, affine=None):
        self.cls, self.kwargs, self.inputs = cls, kwargs, list(inputs)
        self.weights, self.affine = weights, affine
        self.output = kwargs["name"]


class Converter:
    """State of one load (see the module docstring)."""

    def __init__(self, onnx, proto, path, data_format):
        self.onnx, self.proto, self.path = onnx, proto, path
        self.data_format = data_format
        self.consts, self.dyn, self.specs, self._names = {}, {}, [], set()
        self.opset = _default_opset(proto, path)
        self.dtype = None
        self.batch = BATCH
        self.inputs = []  # (ONNX name, fastconv id) of the graph's inputs

    # ------------------------------------------------------------ errors, names
    def error(self, node, message):
        return OnnxImportError(f"{self.path}: node {node.name!r} ({node.op_type}): "
                               f"{message}")

    def layer_name(self, node):
        base = "".join(c if c.isalnum() or c in "_-." else "_"
                       for c in (node.name or node.op_type.lower())).strip("_") or "node"
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    # ------------------------------------------------------------ values
    def attrs(self, node):
        out = {}
        for a in node.attribute:
            if a.ref_attr_name:
                raise self.error(node, f"attribute {a.name!r} refers to a function's "
                                       f"attribute")
            if a.type == 1:
                out[a.name] = float(a.f)
            elif a.type == 2:
                out[a.name] = int(a.i)
            elif a.type == 3:
                out[a.name] = a.s.decode("utf-8", "replace")
            elif a.type == 4:
                out[a.name] = tensor_to_array(a.t, self.path)
            elif a.type == 6:
                out[a.name] = [float(v) for v in a.floats]
            elif a.type == 7:
                out[a.name] = [int(v) for v in a.ints]
            elif a.type == 8:
                out[a.name] = [s.decode("utf-8", "replace") for s in a.strings]
            else:
                raise self.error(node, f"attribute {a.name!r} has a type fastconv does "
                                       f"not read (subgraphs are not supported)")
        return out

    def const(self, node, i, required=True):
        """Input i of node as a constant array (None when absent and not required)."""
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required:
                raise self.error(node, f"input {i} is missing")
            return None
        if name not in self.consts:
            raise self.error(node, f"input {i} ({name!r}) must be a constant "
                                   f"(an initializer or folded shape arithmetic)")
        return self.consts[name]

    def runtime(self, node, i=0):
        name = node.input[i] if i < len(node.input) else ""
        if name not in self.dyn:
            raise self.error(node, f"input {i} ({name!r}) must be a runtime tensor")
        return self.dyn[name]

    def add(self, node, cls, kwargs, inputs, perm, weights=None, affine=None, flat=None):
        """Append a spec for node's layer; its output becomes node.output[0]."""
        kwargs = dict(kwargs, name=self.layer_name(node), dtype=self.dtype.name)
        spec = _Spec(cls, kwargs, [d.fc for d in inputs], weights, affine)
        shapes = [d.fc_shape for d in inputs]
        try:
            probe = cls(**dict(kwargs, name="probe"))
            if len(shapes) == 1:
                probe.build(shapes[0])
                fc_out = probe.compute_output_shape(shapes[0])
            else:
                probe.build(shapes)
                fc_out = probe.compute_output_shape(shapes)
        except (TypeError, ValueError) as exc:
            raise self.error(node, f"cannot be a fastconv {cls.__name__}: {exc}") from None
        fc_out = tuple(fc_out)
        shape = tuple(fc_out[p] for p in perm)
        self.specs.append(spec)
        self.dyn[node.output[0]] = _Dyn(spec.output, perm, shape, flat)
        return spec

    def alias(self, node, dyn):
        self.dyn[node.output[0]] = dyn

    # ------------------------------------------------------------ the graph
    def graph_inputs(self):
        graph = self.proto.graph
        known = {t.name for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in known]
        if not inputs:
            raise OnnxImportError(f"{self.path}: the graph has no input")
        for k, inp in enumerate(inputs):
            ttype = inp.type.tensor_type
            if ttype.elem_type not in FLOAT_TYPES:
                raise OnnxImportError(f"{self.path}: input {inp.name!r} has element type "
                                      f"{ttype.elem_type}; fastconv takes float32 or "
                                      f"float64")
            if self.dtype not in (None, FLOAT_TYPES[ttype.elem_type]):
                raise OnnxImportError(f"{self.path}: the inputs have different dtypes")
            self.dtype = FLOAT_TYPES[ttype.elem_type]
            dims = list(ttype.shape.dim)
            if len(dims) < 2:
                raise OnnxImportError(f"{self.path}: input {inp.name!r} needs a batch "
                                      f"axis and a known shape, got rank {len(dims)}")
            if dims[0].HasField("dim_value"):
                self.batch = int(dims[0].dim_value)
            shape = [None]
            for i, d in enumerate(dims[1:], 1):
                if not d.HasField("dim_value") or d.dim_value < 1:
                    raise OnnxImportError(f"{self.path}: input {inp.name!r} axis {i} has "
                                          f"no fixed size ({d.dim_param or '?'}); "
                                          f"fastconv needs every size but the batch's")
                shape.append(int(d.dim_value))
            perm = tuple(range(len(shape)))
            if len(shape) == 4 and self.data_format == "channels_last" and \
                    not self._transposed_to_nchw(inp.name):
                perm = (0, 3, 1, 2)
            fc = "input" if k == 0 else f"input_{k}"
            self._names.add(fc)
            self.dyn[inp.name] = _Dyn(fc, perm, shape)
            self.inputs.append((inp.name, fc))

    def _transposed_to_nchw(self, name):
        """Whether every node reading graph input name transposes it from NHWC to
        NCHW (the input is then NHWC already, as in graphs exported from Keras)."""
        readers = [n for n in self.proto.graph.node if name in n.input]
        return bool(readers) and all(
            n.op_type == "Transpose" and list(self.attrs(n).get("perm", [])) ==
            [0, 3, 1, 2] for n in readers)

    def run(self):
        from . import _fold, _ops
        for init in self.proto.graph.initializer:
            self.consts[init.name] = tensor_to_array(init, self.path)
        if self.proto.graph.sparse_initializer:
            raise OnnxImportError(f"{self.path}: sparse initializers are not supported")
        self.graph_inputs()
        for node in self.proto.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise self.error(node, f"operator {node.op_type!r} of domain "
                                       f"{node.domain!r} is not supported")
            inputs = [n for n in node.input if n]
            if node.op_type in _fold.FOLD and all(n in self.consts for n in inputs):
                _fold.fold(self, node)
            elif node.op_type in _ops.CONVERTERS:
                _ops.CONVERTERS[node.op_type](self, node)
            else:
                raise self.error(node, f"unsupported ONNX operator {node.op_type!r} "
                                       f"(supported: {', '.join(_ops.supported())})")
        return self.build_model()

    # ------------------------------------------------------------ the model
    def build_model(self):
        outputs = []
        for out in self.proto.graph.output:
            dyn = self.dyn.get(out.name)
            if dyn is None or dyn.fc in {fc for _, fc in self.inputs}:
                raise OnnxImportError(f"{self.path}: output {out.name!r} is not "
                                      f"computed by any layer fastconv can make")
            if dyn.flat is not None:
                raise OnnxImportError(f"{self.path}: output {out.name!r} is a "
                                      f"flattened tensor in ONNX's order; load with "
                                      f"data_format='channels_first'")
            outputs.append(dyn.fc)
        specs, outputs = _fuse(_reachable(self.specs, outputs), outputs)
        name = _model_name(self.proto, self.path)
        prev = "input"
        for spec in specs:
            if spec.inputs != [prev]:
                break
            prev = spec.output
        else:
            if len(self.inputs) == 1 and outputs == [prev]:
                model = Sequential([self._input(0)] + [spec.cls(**spec.kwargs)
                                                       for spec in specs], name=name)
                _set_weights(model.layers, specs)
                return model
        return self._functional(specs, outputs, name)

    def _input(self, k):
        onnx_name, fc = self.inputs[k]
        return Input(self.dyn[onnx_name].fc_shape[1:], dtype=self.dtype.name,
                     name=fc)

    def _functional(self, specs, outputs, name):
        """A functional Model of the specs (a graph with branches or several inputs
        or outputs)."""
        tensors = {fc: self._input(k) for k, (_, fc) in enumerate(self.inputs)}
        made = []
        for spec in specs:
            layer = spec.cls(**spec.kwargs)
            args = [tensors[fc] for fc in spec.inputs]
            tensors[spec.output] = layer(args if getattr(layer, "_multi_input", False)
                                         else args[0])
            made.append(layer)
        _set_weights(made, specs)
        ins = [tensors[fc] for _, fc in self.inputs]
        outs = [tensors[fc] for fc in outputs]
        try:
            return Model(ins[0] if len(ins) == 1 else ins,
                         outs[0] if len(outs) == 1 else outs, name=name)
        except ValueError as exc:
            raise OnnxImportError(f"{self.path}: {exc}") from None


def _set_weights(made, specs):
    for spec, layer in zip(specs, made):
        if spec.weights is not None:
            layer.set_weights(spec.weights)


def _default_opset(proto, path):
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            low, high = OPSETS
            if not low <= entry.version <= high:
                raise OnnxImportError(f"{path}: opset {entry.version} of the default "
                                      f"domain; fastconv reads opsets {low} to {high}")
            return int(entry.version)
    raise OnnxImportError(f"{path}: the model imports no opset of the default domain")


def _model_name(proto, path):
    name = proto.graph.name or os.path.splitext(os.path.basename(path))[0]
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or "onnx_model"


def _reachable(specs, outputs):
    """The specs the outputs depend on, in order."""
    by_output = {s.output: s for s in specs}
    need, stack = set(), list(outputs)
    while stack:
        fc = stack.pop()
        if fc in need or fc not in by_output:
            continue
        need.add(fc)
        stack.extend(by_output[fc].inputs)
    return [s for s in specs if s.output in need]


def _fuse(specs, outputs):
    """Fold single-consumer pairs into one layer (see the module docstring); returns
    the specs left and the ids of the output tensors."""
    outputs = list(outputs)
    changed = True
    while changed:
        changed = False
        uses = Counter(fc for s in specs for fc in s.inputs)
        uses.update(outputs)
        by_output = {s.output: s for s in specs}
        for spec in specs:
            if len(spec.inputs) != 1 or spec.inputs[0] not in by_output \
                    or uses[spec.inputs[0]] != 1:
                continue
            prev = by_output[spec.inputs[0]]
            if _fuse_pair(prev, spec):
                # spec disappears: its consumers read prev's output instead
                for other in specs:
                    other.inputs = [prev.output if fc == spec.output else fc
                                    for fc in other.inputs]
                outputs = [prev.output if fc == spec.output else fc for fc in outputs]
                specs = [s for s in specs if s is not spec]
                changed = True
                break
    return specs, outputs


def _fuse_pair(prev, spec):
    """Fold spec into prev, the layer before it (its only consumer); True if done."""
    kind, pkind = spec.cls.__name__, prev.cls.__name__
    linear = prev.kwargs.get("activation", "linear") in (None, "linear")
    if kind == "Activation" and pkind in ("Conv2D", "Dense", "Conv2DTranspose") \
            and linear:
        prev.kwargs["activation"] = spec.kwargs["activation"]
        return True
    if spec.affine is not None and pkind in ("Conv2D", "Dense") and linear:
        scale, offset, axis = spec.affine
        out_axis = -3 if prev.kwargs.get("data_format") == "channels_first" else -1
        if axis is not None and axis != out_axis:
            return False
        kernel = prev.weights[0] * scale.astype(prev.weights[0].dtype)
        units = kernel.shape[-1]
        bias = prev.weights[1] if len(prev.weights) > 1 else np.zeros(units)
        bias = np.broadcast_to(bias * scale + offset, (units,)).astype(kernel.dtype)
        prev.weights = [kernel, bias]
        prev.kwargs["use_bias"] = True
        return True
    if kind == "Flatten" and pkind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D") \
            and prev.kwargs.get("keepdims"):
        prev.kwargs["keepdims"] = False
        return True
    return False


def load(path, data_format="channels_first"):
    """A fastconv model made from the ONNX file at path.

    data_format: "channels_first" (the model takes the ONNX model's inputs as they
    are: (N, C, H, W) images for most exports) or "channels_last" (the model takes
    and gives images as (N, H, W, C): an (N, C, H, W) input is taken transposed and
    the weights rearranged to match; an input the graph itself transposes from
    NHWC, as in exports of Keras models, is NHWC already).  A chain of operators
    becomes a Sequential model, a graph with branches or several inputs or outputs
    a functional Model.  Raises OnnxImportError (a ValueError) naming the file for a
    file fastconv does not read, naming the node and operator for an operator it does
    not support; external data is read only from the model's own folder."""
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(f"data_format must be 'channels_first' or 'channels_last', got "
                         f"{data_format!r}")
    onnx = require_onnx()
    path = os.fspath(path)
    proto = read_model(onnx, path)
    return Converter(onnx, proto, path, data_format).run()
