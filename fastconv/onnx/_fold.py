"""Constant folding for fastconv.onnx.load: the ONNX operators evaluated with NumPy
when all their inputs are constants (``FOLD``), e.g. the Shape -> Gather -> Unsqueeze
-> Concat -> Reshape arithmetic exporters write around a flatten."""
import numpy as np

__all__ = ["FOLD", "fold", "axes_of", "shape_of"]

# Folded results may not outgrow their inputs by more than this (elements).
_FOLD_SLACK = 1 << 16
def axes_of(c, node, a, vals, i=1):
    """The axes of Squeeze / Unsqueeze / ReduceMean: attribute (older opsets) or input."""
    if "axes" in a:
        return list(a["axes"])
    if i < len(vals) and vals[i] is not None:
        return [int(v) for v in np.asarray(vals[i]).ravel()]
    return None


def _unsqueeze(c, node, a, vals):
    axes = axes_of(c, node, a, vals)
    x = vals[0]
    rank = x.ndim + len(axes)
    out = x
    for ax in sorted(ax % rank for ax in axes):
        out = np.expand_dims(out, ax)
    return [out]


def _squeeze(c, node, a, vals):
    axes = axes_of(c, node, a, vals)
    x = vals[0]
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes))]


def _reshape_const(c, node, a, vals):
    x, shape = vals[0], [int(v) for v in vals[1]]
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _gather(c, node, a, vals):
    data, idx = vals[0], np.asarray(vals[1], dtype=np.int64)
    axis = a.get("axis", 0)
    out_size = idx.size * (data.size // max(data.shape[axis], 1))
    if out_size > data.size + idx.size + _FOLD_SLACK:
        raise c.error(node, f"folding would make {out_size} elements")
    return [np.take(data, idx, axis=axis)]


def _slice(c, node, a, vals):
    x = vals[0]
    starts, ends = vals[1], vals[2]
    axes = vals[3] if len(vals) > 3 and vals[3] is not None else range(len(starts))
    steps = vals[4] if len(vals) > 4 and vals[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(s), int(e), int(st))
    return [x[tuple(index)]]


def _binary(fn):
    def run(c, node, a, vals):
        x, y = vals[0], vals[1]
        shape = np.broadcast_shapes(np.shape(x), np.shape(y))
        if int(np.prod(shape, dtype=np.int64)) > np.size(x) + np.size(y) + _FOLD_SLACK:
            raise c.error(node, f"folding would broadcast to shape {shape}")
        return [np.asarray(fn(x, y))]
    return run


def _div(x, y):
    if np.issubdtype(np.result_type(x, y), np.integer):
        return np.trunc(np.true_divide(x, y)).astype(np.result_type(x, y))
    return np.divide(x, y)


def _constant(c, node, a, vals):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            dtype = np.float32 if "float" in key else (np.int64 if "int" in key else None)
            return [np.asarray(a[key], dtype=dtype)]
    raise c.error(node, "Constant without a value fastconv reads")


_CAST = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64,
         9: np.bool_, 10: np.float16, 11: np.float64}


def _cast(c, node, a, vals):
    to = a.get("to")
    if to not in _CAST:
        raise c.error(node, f"Cast to type {to} is not supported")
    return [vals[0].astype(_CAST[to])]


def shape_of(shape, a):
    shape = np.asarray(shape, dtype=np.int64)
    return [shape[a.get("start", 0):a.get("end", len(shape))]]


def _flatten_const(c, node, a, vals):
    x, axis = vals[0], a.get("axis", 1) % max(vals[0].ndim, 1)
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


def _constant_of_shape(c, node, a, vals):
    shape = [int(v) for v in np.ravel(vals[0])]
    size = int(np.prod(shape, dtype=np.int64))
    if any(d < 0 for d in shape) or size > _FOLD_SLACK:
        raise c.error(node, f"folding would make a constant of shape {shape}")
    value = a.get("value", np.zeros(1, np.float32))
    return [np.full(shape, np.ravel(value)[0], dtype=value.dtype)]


FOLD = {
    "ConstantOfShape": _constant_of_shape,
    "Constant": _constant,
    "Identity": lambda c, node, a, vals: [vals[0]],
    "Dropout": lambda c, node, a, vals: [vals[0]],
    "Shape": lambda c, node, a, vals: shape_of(np.shape(vals[0]), a),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda c, node, a, vals: [np.concatenate(
        [np.atleast_1d(v) for v in vals], axis=a.get("axis", 0))],
    "Cast": _cast,
    "Reshape": _reshape_const,
    "Transpose": lambda c, node, a, vals: [np.transpose(vals[0], a.get("perm"))],
    "Flatten": _flatten_const,
    "Slice": _slice,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_div),
}


def fold(c, node):
    """Evaluate node on constants; its outputs become constants."""
    a = c.attrs(node)
    vals = [c.consts[n] if n else None for n in node.input]
    try:
        outs = FOLD[node.op_type](c, node, a, vals)
    except (ValueError, TypeError, IndexError) as exc:
        raise c.error(node, f"cannot evaluate on its constant inputs: {exc}") from None
    for name, value in zip(node.output, outs):
        if name:
            c.consts[name] = np.asarray(value)
