"""The ONNX operators load reads: ``FOLD`` (NumPy on constants) and ``CONVERTERS``
(a runtime node -> a layer spec or an alias; see fastconv/onnx/_import.py)."""
import numpy as np

from .. import layers as _layers
from ..layers.base import check_activation
from ..shapes import resolve_padding
from ._proto import BATCH, inverse

__all__ = ["FOLD", "CONVERTERS", "fold", "supported"]

# Folded results may not outgrow their inputs by more than this (elements).
_FOLD_SLACK = 1 << 16


def supported():
    return sorted(set(FOLD) | set(CONVERTERS))


def _layer(name):
    """The fastconv layer class of that name, None if this fastconv has none."""
    return getattr(_layers, name, None)


# ----------------------------------------------------------------- constant folding
def _axes(c, node, a, vals, i=1):
    """The axes of Squeeze / Unsqueeze / ReduceMean: attribute (older opsets) or input."""
    if "axes" in a:
        return list(a["axes"])
    if i < len(vals) and vals[i] is not None:
        return [int(v) for v in np.asarray(vals[i]).ravel()]
    return None


def _unsqueeze(c, node, a, vals):
    axes = _axes(c, node, a, vals)
    x = vals[0]
    rank = x.ndim + len(axes)
    out = x
    for ax in sorted(ax % rank for ax in axes):
        out = np.expand_dims(out, ax)
    return [out]


def _squeeze(c, node, a, vals):
    axes = _axes(c, node, a, vals)
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


def _shape_of(shape, a):
    shape = np.asarray(shape, dtype=np.int64)
    return [shape[a.get("start", 0):a.get("end", len(shape))]]


def _flatten_const(c, node, a, vals):
    x, axis = vals[0], a.get("axis", 1) % max(vals[0].ndim, 1)
    return [x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)]


FOLD = {
    "Constant": _constant,
    "Identity": lambda c, node, a, vals: [vals[0]],
    "Dropout": lambda c, node, a, vals: [vals[0]],
    "Shape": lambda c, node, a, vals: _shape_of(np.shape(vals[0]), a),
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


# ----------------------------------------------------------------- images
def _image(c, node, x):
    """The data_format of the layer running NCHW operator node on x."""
    if len(x.shape) != 4:
        raise c.error(node, f"needs a 4-D (N, C, H, W) tensor, got shape {x.shape}")
    if x.perm == (0, 1, 2, 3):
        return "channels_first"
    if x.perm == (0, 3, 1, 2):
        return "channels_last"
    raise c.error(node, "its input is transposed in a way no fastconv layer reads "
                        "(NCHW operators need the tensor as NCHW or NHWC)")


def _padding(c, node, x, a, k_eff, strides):
    """'valid', 'same', or explicit ((top, bottom), (left, right))."""
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return "valid"
    if auto == "SAME_UPPER":
        return "same"
    hw = x.shape[2:]
    same = resolve_padding("same", hw, k_eff, strides)
    if auto == "SAME_LOWER":
        pads = tuple((max(t, b), min(t, b)) for t, b in same)
    elif auto == "NOTSET":
        p = a.get("pads", [0, 0, 0, 0])
        pads = ((p[0], p[2]), (p[1], p[3]))
    else:
        raise c.error(node, f"auto_pad {auto!r} is not an ONNX value")
    if pads == ((0, 0), (0, 0)):
        return "valid"
    if pads == tuple(same):
        return "same"
    return pads


def _zero_pad(c, node, x, pads, fmt):
    """x padded with zeros by a ZeroPadding2D layer (explicit ONNX pads)."""
    cls = _layer("ZeroPadding2D")
    if cls is None:
        raise c.error(node, f"pads {pads} are neither 0 nor Keras's 'same', and this "
                            f"fastconv has no ZeroPadding2D")
    if any(p < 0 for pair in pads for p in pair):
        raise c.error(node, f"negative pads {pads} are not supported")
    c.add(node, cls, dict(padding=pads, data_format=fmt), [x], x.perm)
    return c.dyn[node.output[0]]


def _conv(c, node):
    x, w, b = c.runtime(node), c.const(node, 1), c.const(node, 2, required=False)
    a = c.attrs(node)
    fmt = _image(c, node, x)
    if w.ndim != 4:
        raise c.error(node, f"only 2-D convolutions are supported, weight shape {w.shape}")
    m, _, kh, kw = w.shape
    strides = tuple(a.get("strides", [1, 1]))
    dil = tuple(a.get("dilations", [1, 1]))
    padding = _padding(c, node, x, a, ((kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1),
                       strides)
    if not isinstance(padding, str):
        x, padding = _zero_pad(c, node, x, padding, fmt), "valid"
    weights = [w.transpose(2, 3, 1, 0).astype(c.dtype)]
    if b is not None:
        weights.append(b.astype(c.dtype))
    c.add(node, _layers.Conv2D,
          dict(filters=int(m), kernel_size=(int(kh), int(kw)), strides=strides,
               padding=padding, data_format=fmt, dilation_rate=dil,
               groups=a.get("group", 1), use_bias=b is not None),
          [x], x.perm, weights)


def _pool(kind):
    def convert(c, node):
        x, a = c.runtime(node), c.attrs(node)
        fmt = _image(c, node, x)
        if len(node.output) > 1 and node.output[1]:
            raise c.error(node, "the Indices output is not supported")
        ks = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", [1, 1]))
        if tuple(a.get("dilations", [1, 1])) != (1, 1) or a.get("storage_order", 0):
            raise c.error(node, "dilated pooling is not supported")
        padding = _padding(c, node, x, a, ks, strides)
        if a.get("ceil_mode", 0):
            pads = resolve_padding(padding, x.shape[2:], ks, strides)
            for n, k, s, (p0, p1) in zip(x.shape[2:], ks, strides, pads):
                if (n + p0 + p1 - k) % s:
                    raise c.error(node, "ceil_mode=1 that changes the output size is "
                                        "not supported")
        if kind == "AveragePooling2D" and a.get("count_include_pad", 0) \
                and padding != "valid":
            x, padding = _zero_pad(c, node, x, resolve_padding(
                padding, x.shape[2:], ks, strides), fmt), "valid"
        if not isinstance(padding, str):
            raise c.error(node, f"pads {padding} are neither 0 nor Keras's 'same' "
                                f"(fastconv pooling layers take 'valid' or 'same')")
        c.add(node, _layers.LAYER_CLASSES[kind],
              dict(pool_size=ks, strides=strides, padding=padding, data_format=fmt),
              [x], x.perm)
    return convert


def _global_pool(kind):
    def convert(c, node):
        x = c.runtime(node)
        cls = _layer(kind)
        if cls is None:
            raise c.error(node, f"this fastconv has no {kind}")
        c.add(node, cls, dict(data_format=_image(c, node, x), keepdims=True), [x],
              x.perm)
    return convert


def _reduce_mean(c, node):
    x, a = c.runtime(node), c.attrs(node)
    vals = [None] + [c.const(node, i) for i in range(1, len(node.input))]
    axes = sorted(ax % max(len(x.shape), 1) for ax in (_axes(c, node, a, vals) or []))
    if len(x.shape) != 4 or axes != [2, 3]:
        raise c.error(node, f"only the mean over H and W of an NCHW tensor is "
                            f"supported, got axes {axes} of shape {x.shape}")
    keep = bool(a.get("keepdims", 1))
    c.add(node, _layers.GlobalAveragePooling2D,
          dict(data_format=_image(c, node, x), keepdims=keep), [x],
          x.perm if keep else (0, 1))


# ----------------------------------------------------------------- matrices
def _dense(c, node, x, kernel, bias):
    if x.flat is not None:
        kernel = kernel[x.flat]
    weights = [kernel.astype(c.dtype)] + ([] if bias is None else [bias.astype(c.dtype)])
    if x.perm[-1] != len(x.shape) - 1:
        raise c.error(node, "the product's axis is not the tensor's last in fastconv's "
                            "layout")
    c.add(node, _layers.Dense, dict(units=int(kernel.shape[1]),
                                    use_bias=bias is not None), [x], x.perm, weights)


def _gemm(c, node):
    x, a = c.runtime(node), c.attrs(node)
    w, bias = c.const(node, 1), c.const(node, 2, required=False)
    if a.get("transA", 0) or len(x.shape) != 2 or w.ndim != 2:
        raise c.error(node, "only Gemm of a (N, K) tensor by a constant, transA=0, is "
                            "supported")
    kernel = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
    if bias is not None:
        try:
            bias = np.broadcast_to(np.asarray(bias) * a.get("beta", 1.0),
                                   (1, kernel.shape[1]))[0]
        except ValueError:
            raise c.error(node, f"bias of shape {np.shape(bias)} is not per output "
                                f"unit") from None
    _dense(c, node, x, kernel, bias)


def _matmul(c, node):
    if node.input[0] not in c.dyn:
        raise c.error(node, "only MatMul of a runtime tensor by a constant is supported")
    w = c.const(node, 1)
    if w.ndim != 2:
        raise c.error(node, f"the constant must be 2-D, got shape {w.shape}")
    _dense(c, node, c.runtime(node), w, None)


# ----------------------------------------------------------------- elementwise
def _to_fastconv(c, node, x, k):
    """Constant k (broadcast against ONNX tensor x) in x's fastconv layout, without
    the batch axis (what Rescaling broadcasts against)."""
    r = len(x.shape)
    k = np.asarray(k, dtype=np.float64)
    if k.ndim > r:
        raise c.error(node, f"constant of shape {k.shape} outranks the tensor {x.shape}")
    k = k.reshape((1,) * (r - k.ndim) + k.shape)
    if k.shape[0] != 1 or any(s not in (1, n) for s, n in zip(k.shape[1:], x.shape[1:])):
        raise c.error(node, f"constant of shape {k.shape} must broadcast to each sample "
                            f"of {x.shape} without growing it")
    k = k.transpose(inverse(x.perm))
    if x.flat is not None and k.shape[-1] > 1:
        k = k[..., x.flat]
    return k[0]


def _affine(c, node, x, scale, offset):
    """A Rescaling spec x * scale + offset (fastconv layout), with its per-channel
    form when it has one."""
    both = np.broadcast_shapes(scale.shape, offset.shape)
    varying = [i for i, s in enumerate(both) if s != 1]
    affine = None
    if not varying:
        affine = (scale.reshape(()), offset.reshape(()), None)
    elif len(varying) == 1:
        n = both[varying[0]]
        affine = (np.broadcast_to(scale, both).reshape(n),
                  np.broadcast_to(offset, both).reshape(n), varying[0] - len(both))
    c.add(node, _layers.Rescaling, dict(scale=scale, offset=offset), [x], x.perm,
          affine=affine, flat=x.flat)


def _arith(op):
    def convert(c, node):
        dyn = [i for i in (0, 1) if node.input[i] in c.dyn]
        if len(dyn) == 2:
            raise c.error(node, f"{op} of two runtime tensors needs a graph model "
                                f"(branches), which this fastconv cannot build")
        i = dyn[0]
        x = c.dyn[node.input[i]]
        k = _to_fastconv(c, node, x, c.const(node, 1 - i))
        one, zero = np.ones((1,) * k.ndim), np.zeros((1,) * k.ndim)
        if op == "Add":
            scale, offset = one, k
        elif op == "Mul":
            scale, offset = k, zero
        elif op == "Sub":
            scale, offset = (one, -k) if i == 0 else (-one, k)
        elif i == 0:  # Div
            scale, offset = 1.0 / k, zero
        else:
            raise c.error(node, "dividing a constant by a runtime tensor is not "
                                "supported")
        _affine(c, node, x, scale, offset)
    return convert


def _batch_norm(c, node):
    x, a = c.runtime(node), c.attrs(node)
    if a.get("training_mode", 0) or any(node.output[1:]):
        raise c.error(node, "only inference batch normalization is supported")
    gamma, beta, mean, var = (c.const(node, i).astype(np.float64) for i in range(1, 5))
    s = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
    o = beta - mean * s
    axis = x.perm[1]
    shape = [1] * (len(x.shape) - 1)
    shape[axis - 1] = -1
    scale, offset = s.reshape(shape), o.reshape(shape)
    _affine(c, node, x, scale, offset)


def _activation(name, check=None):
    def convert(c, node):
        x = c.runtime(node)
        a = c.attrs(node)
        if check is not None:
            check(c, node, x, a)
        try:
            check_activation(name)
        except (TypeError, ValueError):
            raise c.error(node, f"this fastconv has no {name!r} activation") from None
        c.add(node, _layers.Activation, dict(activation=name), [x], x.perm, flat=x.flat)
    return convert


def _softmax_axis(c, node, x, a):
    r = len(x.shape)
    axis = a.get("axis", -1 if c.opset >= 13 else 1) % r
    if axis != r - 1 and (c.opset >= 13 or any(s != 1 for s in x.shape[axis + 1:])):
        raise c.error(node, f"softmax over axis {axis} of rank {r}: fastconv's softmax "
                            f"runs over the last axis")
    if x.perm[r - 1] != r - 1:
        raise c.error(node, "the softmax axis is not the last in fastconv's layout")


def _hard_sigmoid_args(c, node, x, a):
    if not np.allclose([a.get("alpha", 0.2), a.get("beta", 0.5)], [1 / 6, 0.5]):
        raise c.error(node, f"HardSigmoid alpha={a.get('alpha', 0.2)}, beta="
                            f"{a.get('beta', 0.5)}: only alpha=1/6, beta=0.5 (Keras's "
                            f"hard_sigmoid) is supported")


def _clip(c, node):
    low = c.const(node, 1, required=False)
    high = c.const(node, 2, required=False)
    low = None if low is None else float(low)
    high = None if high is None else float(high)
    if low == 0.0 and high is None:
        return _activation("relu")(c, node)
    if low == 0.0 and high == 6.0:
        return _activation("relu6")(c, node)
    raise c.error(node, f"Clip to [{low}, {high}]: only [0, inf) (relu) and [0, 6] "
                        f"(relu6) are supported")


# ----------------------------------------------------------------- shapes
def _flatten_to(c, node, x):
    """x (rank > 2) flattened per sample, as ONNX orders it (see _Dyn.flat)."""
    sample = x.shape[1:]
    idx = np.arange(int(np.prod(sample, dtype=np.int64))).reshape(sample)
    inv = inverse(x.perm)
    order = idx.transpose([inv[k] - 1 for k in range(1, len(x.shape))]).ravel()
    flat = None if np.array_equal(order, np.arange(order.size)) else order
    c.add(node, _layers.Flatten, dict(data_format="channels_last"), [x], (0, 1),
          flat=flat)


def _flatten(c, node):
    x = c.runtime(node)
    axis = c.attrs(node).get("axis", 1) % len(x.shape)
    if axis != 1:
        raise c.error(node, f"Flatten with axis={axis}: only axis=1 (keep the batch "
                            f"axis) is supported")
    if len(x.shape) == 2:
        return c.alias(node, x)
    _flatten_to(c, node, x)


def _reshape(c, node):
    x, target = c.runtime(node), [int(v) for v in c.const(node, 1)]
    allow_zero = c.attrs(node).get("allowzero", 0)
    sample = list(x.shape[1:])
    size = int(np.prod(sample, dtype=np.int64))
    first, rest = target[0], target[1:]
    if not allow_zero:
        rest = [sample[i] if s == 0 and i < len(sample) else s for i, s in enumerate(rest,
                                                                                     0)]
    batch_kept = first in (c.batch, BATCH) or (first == 0 and not allow_zero)
    if first == -1 and -1 not in rest:
        batch_kept = int(np.prod(rest, dtype=np.int64)) == size
    if batch_kept and rest.count(-1) == 1:
        known = int(np.prod([s for s in rest if s != -1], dtype=np.int64))
        rest = [size // known if s == -1 else s for s in rest]
    if not batch_kept or int(np.prod(rest, dtype=np.int64)) != size:
        raise c.error(node, f"reshape of {x.shape} to {target}: only reshapes that keep "
                          f"the batch axis and flatten each sample are supported")
    if rest == sample:
        return c.alias(node, x)
    if len(rest) == 1:
        return _flatten_to(c, node, x)
    raise c.error(node, f"reshape of {x.shape} to {target}: only reshapes that flatten "
                        f"each sample are supported")


def _transpose(c, node):
    x = c.runtime(node)
    q = c.attrs(node).get("perm", list(range(len(x.shape)))[::-1])
    if q[0] != 0 or x.flat is not None:
        raise c.error(node, f"Transpose with perm {q}: the batch axis must stay first")
    c.alias(node, type(x)(x.fc, [x.perm[j] for j in q], [x.shape[j] for j in q]))


def _shape(c, node):
    x = c.runtime(node)
    c.consts[node.output[0]] = _shape_of([c.batch] + list(x.shape[1:]),
                                         c.attrs(node))[0]


def _passthrough(c, node):
    if node.op_type == "Dropout":
        if len(node.output) > 1 and node.output[1]:
            raise c.error(node, "the Dropout mask output is not supported")
        mode = c.const(node, 2, required=False)
        if mode is not None and bool(mode):
            raise c.error(node, "training_mode=True dropout is not supported")
    c.alias(node, c.runtime(node))


def _concat(c, node):
    raise c.error(node, "Concat of runtime tensors needs a graph model (branches), "
                        "which this fastconv cannot build")


CONVERTERS = {
    "Conv": _conv,
    "MaxPool": _pool("MaxPooling2D"),
    "AveragePool": _pool("AveragePooling2D"),
    "GlobalAveragePool": _global_pool("GlobalAveragePooling2D"),
    "GlobalMaxPool": _global_pool("GlobalMaxPooling2D"),
    "ReduceMean": _reduce_mean,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _arith("Add"),
    "Sub": _arith("Sub"),
    "Mul": _arith("Mul"),
    "Div": _arith("Div"),
    "BatchNormalization": _batch_norm,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Softmax": _activation("softmax", _softmax_axis),
    "HardSwish": _activation("hard_swish"),
    "HardSigmoid": _activation("hard_sigmoid", _hard_sigmoid_args),
    "Clip": _clip,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Shape": _shape,
    "Dropout": _passthrough,
    "Identity": _passthrough,
    "Concat": _concat,
}
