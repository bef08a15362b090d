"""The runtime operators fastconv.onnx.load reads: ``CONVERTERS`` (a runtime node ->
a layer spec or an alias; see fastconv/onnx/_import.py)."""
import numpy as np

from .. import layers as _layers
from ..layers.base import check_activation
from ._fold import FOLD, shape_of
from ._ops_image import IMAGE_CONVERTERS
from ._proto import BATCH, inverse

__all__ = ["CONVERTERS", "supported"]


def supported():
    return sorted(set(FOLD) | set(CONVERTERS))


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


_MERGE = {"Add": "Add", "Sum": "Add", "Sub": "Subtract", "Mul": "Multiply",
          "Mean": "Average", "Max": "Maximum", "Min": "Minimum"}


def _merge(c, node, kind, axis=None):
    """A merge layer (Add, ..., Concatenate) of runtime tensors alike arranged."""
    xs = [c.runtime(node, i) for i in range(len(node.input))]
    first = xs[0]
    if any(x.perm != first.perm or len(x.shape) != len(first.shape) or
           (x.flat is None) != (first.flat is None) or
           (x.flat is not None and not np.array_equal(x.flat, first.flat)) for x in xs):
        raise c.error(node, "its inputs are arranged differently in fastconv's layout")
    kwargs = {} if axis is None else dict(axis=first.perm[axis % len(first.shape)])
    if len(xs) == 1:
        return c.alias(node, first)
    c.add(node, getattr(_layers, kind), kwargs, xs, first.perm, flat=first.flat)


def _variadic(op):
    def convert(c, node):
        if not all(n in c.dyn for n in node.input):
            raise c.error(node, f"{op} of runtime tensors and constants is not "
                                f"supported")
        _merge(c, node, _MERGE[op])
    return convert


def _arith(op):
    def convert(c, node):
        dyn = [i for i in (0, 1) if node.input[i] in c.dyn]
        if len(dyn) == 2:
            return _merge(c, node, _MERGE[op])
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
    if x.flat is not None:
        s, o, gamma, beta, mean, var = (v[x.flat] for v in (s, o, gamma, beta, mean, var))
    # Folded into the layer before it where it can be (_import._fuse), else a layer.
    affine = (s, o, axis - len(x.shape))
    c.add(node, _layers.BatchNormalization,
          dict(axis=axis, epsilon=a.get("epsilon", 1e-5)), [x], x.perm,
          [v.astype(c.dtype) for v in (gamma, beta, mean, var)], affine, x.flat)


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
    # (before opset 13 Softmax ran over all axes from axis on)
    if c.opset < 13 and any(s != 1 for s in x.shape[axis + 1:]):
        raise c.error(node, f"softmax over axes {axis}.. of shape {x.shape}: fastconv's "
                            f"softmax runs over one axis")
    if x.perm[axis] != r - 1:
        raise c.error(node, f"softmax over axis {axis} of shape {x.shape}, which is not "
                            f"the last in fastconv's layout (fastconv's softmax runs "
                            f"over the last axis)")


def _hard_sigmoid_args(c, node, x, a):
    if not np.allclose([a.get("alpha", 0.2), a.get("beta", 0.5)], [1 / 6, 0.5]):
        raise c.error(node, f"HardSigmoid alpha={a.get('alpha', 0.2)}, beta="
                            f"{a.get('beta', 0.5)}: only alpha=1/6, beta=0.5 (Keras's "
                            f"hard_sigmoid) is supported")


def _scalar(c, node, i):
    value = c.const(node, i, required=False)
    if value is None:
        return None
    if np.size(value) != 1:
        raise c.error(node, f"input {i} must be a scalar, got shape {np.shape(value)}")
    return float(np.ravel(value)[0])


def _clip(c, node):
    low, high = _scalar(c, node, 1), _scalar(c, node, 2)
    if low == 0.0 and high is None:
        return _activation("relu")(c, node)
    if low == 0.0 and high == 6.0:
        return _activation("relu6")(c, node)
    if low == 0.0 and high > 0:
        x = c.runtime(node)
        return c.add(node, _layers.ReLU, dict(max_value=high), [x], x.perm, flat=x.flat)
    raise c.error(node, f"Clip to [{low}, {high}]: only [0, max] and [0, inf) (ReLU) "
                        f"are supported")


def _layer_or_activation(cls_name, attr, default, activation, keras_default):
    """An ONNX activation with one parameter: fastconv's activation when the
    parameter is Keras's default for it, else the layer class with that argument."""
    def convert(c, node):
        value = c.attrs(node).get(attr, default)
        if np.isclose(value, keras_default, rtol=1e-6, atol=0):
            return _activation(activation)(c, node)
        x = c.runtime(node)
        c.add(node, getattr(_layers, cls_name), {
            "negative_slope" if cls_name == "LeakyReLU" else "alpha": value}, [x],
            x.perm, flat=x.flat)
    return convert


def _selu_args(c, node, x, a):
    from .._more_activations import SELU_ALPHA, SELU_SCALE
    got = [a.get("alpha", 1.67326319217681884765625), a.get("gamma",
                                                             1.05070102214813232421875)]
    if not np.allclose(got, [SELU_ALPHA, SELU_SCALE], rtol=1e-6):
        raise c.error(node, f"Selu alpha, gamma = {got}: only the standard constants "
                            f"are supported")


def _gelu_args(c, node, x, a):
    if a.get("approximate", "none") != "none":
        raise c.error(node, "only the exact (erf) Gelu is supported")


_GATED = {"sigmoid": "silu", "hard_sigmoid": "hard_swish"}


def _silu_or_mul(c, node):
    """Mul(x, Sigmoid(x)) as the silu activation (HardSigmoid: hard_swish), else Mul
    (see _arith)."""
    if all(n in c.dyn for n in node.input[:2]):
        a, b = (c.dyn[n] for n in node.input[:2])
        for x, s in ((a, b), (b, a)):
            spec = next((p for p in c.specs if p.output == s.fc), None)
            if spec is not None and spec.cls is _layers.Activation and \
                    spec.kwargs["activation"] in _GATED and spec.inputs == [x.fc] \
                    and s.perm == x.perm and s.flat is None and x.flat is None:
                return c.add(node, _layers.Activation, dict(
                    activation=_GATED[spec.kwargs["activation"]]), [x], x.perm)
    return _arith("Mul")(c, node)


# ----------------------------------------------------------------- shapes
def _flatten_to(c, node, x):
    """x (rank > 2) flattened per sample, as ONNX orders it (see _Dyn.flat)."""
    sample = x.shape[1:]
    idx = np.arange(int(np.prod(sample, dtype=np.int64))).reshape(sample)
    inv = inverse(x.perm)
    fc = idx.transpose([inv[k] - 1 for k in range(1, len(x.shape))])
    # Flatten("channels_first") moves the fastconv tensor's axis 1 last first.
    orders = {"channels_last": fc.ravel(),
              "channels_first": np.moveaxis(fc, 0, -1).ravel()}
    for fmt, order in orders.items():
        if np.array_equal(order, np.arange(order.size)):
            return c.add(node, _layers.Flatten, dict(data_format=fmt), [x], (0, 1))
    c.add(node, _layers.Flatten, dict(data_format="channels_last"), [x], (0, 1),
          flat=orders["channels_last"])


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
        rest = [sample[i] if s == 0 and i < len(sample) else s
                for i, s in enumerate(rest)]
    batch_kept = first in (c.batch, BATCH) or (first == 0 and not allow_zero)
    if first == -1 and -1 not in rest:
        batch_kept = int(np.prod(rest, dtype=np.int64)) == size
    known = int(np.prod([s for s in rest if s != -1], dtype=np.int64))
    if batch_kept and rest.count(-1) == 1 and known > 0:
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
    c.consts[node.output[0]] = shape_of([c.batch] + list(x.shape[1:]),
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
    if not all(n in c.dyn for n in node.input):
        raise c.error(node, "Concat of runtime tensors and constants is not supported")
    _merge(c, node, "Concatenate", c.attrs(node)["axis"])


CONVERTERS = dict(IMAGE_CONVERTERS, **{
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _arith("Add"),
    "Sub": _arith("Sub"),
    "Mul": _silu_or_mul,
    "Div": _arith("Div"),
    "BatchNormalization": _batch_norm,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Softmax": _activation("softmax", _softmax_axis),
    "HardSwish": _activation("hard_swish"),
    "HardSigmoid": _activation("hard_sigmoid", _hard_sigmoid_args),
    "Clip": _clip,
    "LeakyRelu": _layer_or_activation("LeakyReLU", "alpha", 0.01, "leaky_relu", 0.2),
    "Elu": _layer_or_activation("ELU", "alpha", 1.0, "elu", 1.0),
    "Selu": _activation("selu", _selu_args),
    "Softplus": _activation("softplus"),
    "Gelu": _activation("gelu", _gelu_args),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Shape": _shape,
    "Dropout": _passthrough,
    "Identity": _passthrough,
    "Concat": _concat,
    "Sum": _variadic("Sum"),
    "Mean": _variadic("Mean"),
    "Max": _variadic("Max"),
    "Min": _variadic("Min"),
})
