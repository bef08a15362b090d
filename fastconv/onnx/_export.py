"""fastconv layers -> ONNX nodes (the model and the file: fastconv/onnx/_export_model.py).

The exporter walks the model's layers with one value per fastconv tensor: the name of
the ONNX tensor that holds it and ``perm``, how its axes are arranged there (ONNX axis
i holds fastconv axis perm[i]).  A channels_last Conv2D needs its input as NCHW, so its
input is transposed to perm (0, 3, 1, 2) and its output comes out that way; layers that
work on any layout (activations, Rescaling, ...) keep the perm they get, and a Transpose
is written only where a layer needs another arrangement (Flatten: fastconv's order;
the model's output: fastconv's layout).  Each layer class has one function in
``EXPORTERS`` (looked up along the class's MRO by name).
"""
import numpy as np

from ..shapes import resolve_padding
from ._proto import inverse

__all__ = ["EXPORTERS", "ACTIVATIONS", "export_layer"]

_ELEM = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}


class _Value:
    """A fastconv tensor inside the ONNX graph: name, perm (see the module doc),
    fastconv shape (batch None)."""
    __slots__ = ("name", "perm", "shape")

    def __init__(self, name, perm, shape):
        self.name, self.perm, self.shape = name, tuple(perm), tuple(shape)

    def axis(self, fc_axis):
        """The ONNX axis holding fastconv axis fc_axis."""
        return self.perm.index(fc_axis % len(self.shape))


class _Graph:
    """Nodes and initializers of the graph being written."""

    def __init__(self, onnx, dtype, opset):
        self.onnx, self.dtype, self.opset = onnx, np.dtype(dtype), opset
        self.nodes, self.initializers, self._used = [], [], set()

    def unique(self, base):
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, array, base, dtype=None):
        arr = np.array(array, dtype=dtype or self.dtype, order="C")  # 0-d stays 0-d
        name = self.unique(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, base, **attrs):
        out = self.unique(base)
        self.nodes.append(self.onnx.helper.make_node(
            op, list(inputs), [out], name=self.unique(f"{base}/{op}"), **attrs))
        return out

    def arrange(self, v, perm, base):
        """v with its ONNX tensor arranged as perm (a Transpose when it is not)."""
        perm = tuple(perm)
        if v.perm == perm:
            return v
        inv = inverse(v.perm)
        q = [inv[p] for p in perm]
        return _Value(self.node("Transpose", [v.name], f"{base}/transpose", perm=q),
                      perm, v.shape)

    def layout(self, array, v):
        """A constant that broadcasts against fastconv value v (trailing-aligned, as
        NumPy), rearranged to broadcast against v's ONNX tensor."""
        arr = np.asarray(array, dtype=self.dtype)
        nd = len(v.shape)
        if arr.ndim > nd:
            arr = arr.reshape(arr.shape[arr.ndim - nd:])
        arr = arr.reshape((1,) * (nd - arr.ndim) + arr.shape)
        return arr.transpose(v.perm)


_NCHW_OF_NHWC = (0, 3, 1, 2)


def _image_perm(layer):
    """The perm an NCHW ONNX operator needs for the input of this 4-D layer."""
    return _NCHW_OF_NHWC if layer.data_format == "channels_last" else (0, 1, 2, 3)


def _hw(layer, shape):
    return (shape[1], shape[2]) if layer.data_format == "channels_last" \
        else (shape[2], shape[3])


def _onnx_pads(pads):
    (t, b), (left, r) = pads
    return [int(t), int(left), int(b), int(r)]


# ------------------------------------------------------------------- activations
def _unary(op, **attrs):
    return lambda g, x, axis, base: g.node(op, [x], base, **attrs)


def _softmax(g, x, axis, base):
    return g.node("Softmax", [x], base, axis=axis)


def _hard_sigmoid(g, x, axis, base):
    return g.node("HardSigmoid", [x], base, alpha=1.0 / 6.0, beta=0.5)


def _hard_swish(g, x, axis, base):
    if g.opset >= 14:
        return g.node("HardSwish", [x], base)
    return g.node("Mul", [x, _hard_sigmoid(g, x, axis, base)], base)


def _swish(g, x, axis, base):
    return g.node("Mul", [x, g.node("Sigmoid", [x], base)], base)


def _gelu(g, x, axis, base):
    if g.opset >= 20:
        return g.node("Gelu", [x], base)
    # 0.5 x (1 + erf(x / sqrt 2)) before Gelu (opset 20)
    half = g.const(np.float64(0.5), f"{base}/half")
    one = g.const(np.float64(1.0), f"{base}/one")
    root2 = g.const(np.sqrt(np.float64(2.0)), f"{base}/sqrt2")
    erf = g.node("Erf", [g.node("Div", [x, root2], base)], base)
    return g.node("Mul", [g.node("Mul", [x, half], base),
                          g.node("Add", [erf, one], base)], base)


def _relu6(g, x, axis, base):
    return _clip(g, x, 0.0, 6.0, base)


def _clip(g, x, low, high, base):
    inputs = [x, g.const(np.float64(low), f"{base}/min")]
    if high is not None:
        inputs.append(g.const(np.float64(high), f"{base}/max"))
    return g.node("Clip", inputs, base)


#: activation name -> (graph, ONNX input name, ONNX axis of the last fastconv axis,
#: base name) -> ONNX output name
ACTIVATIONS = {
    "linear": lambda g, x, axis, base: x,
    "relu": _unary("Relu"),
    "tanh": _unary("Tanh"),
    "sigmoid": _unary("Sigmoid"),
    "softmax": _softmax,
    "relu6": _relu6,
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805),
    "softplus": _unary("Softplus"),
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "gelu": _gelu,
    "swish": _swish,
    "silu": _swish,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": _hard_swish,
    "hard_silu": _hard_swish,
}


def _activate(g, layer, v, base):
    name = getattr(layer, "activation", "linear")
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise ValueError(f"layer {layer.name!r}: activation {name!r} has no ONNX export "
                         f"(known: {', '.join(sorted(ACTIVATIONS))})")
    return _Value(fn(g, v.name, v.axis(-1), base), v.perm, v.shape)


# ------------------------------------------------------------------- layers
def _conv2d(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation_rate
    pads = resolve_padding(layer.padding, _hw(layer, v.shape),
                           ((kh - 1) * dh + 1, (kw - 1) * dw + 1), layer.strides)
    kernel = layer._op_kernel(layer.kernel)  # (a DepthwiseConv2D's: grouped)
    if layer.data_format == "channels_last":
        kernel = kernel.transpose(3, 2, 0, 1)
    inputs = [v.name, g.const(kernel, f"{layer.name}/W")]
    if layer.use_bias:
        inputs.append(g.const(layer.bias, f"{layer.name}/B"))
    y = g.node("Conv", inputs, layer.name, kernel_shape=[kh, kw],
               strides=list(layer.strides), dilations=list(layer.dilation_rate),
               group=layer.groups, pads=_onnx_pads(pads))
    return _Value(y, v.perm, out_shape)


def _onnx_weight(layer, kernel):
    """A conv2d-op kernel of layer's data format as ONNX's (C_out, C_in/g, kh, kw)."""
    return kernel.transpose(3, 2, 0, 1) if layer.data_format == "channels_last" \
        else kernel


def _separable_conv2d(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    dw, pw, groups = layer._ops()
    kh, kw = layer.kernel_size
    dh, ddw = layer.dilation_rate
    pads = resolve_padding(layer.padding, _hw(layer, v.shape),
                           ((kh - 1) * dh + 1, (kw - 1) * ddw + 1), layer.strides)
    mid = g.node("Conv", [v.name, g.const(_onnx_weight(layer, dw), f"{layer.name}/DW")],
                 f"{layer.name}/depthwise", kernel_shape=[kh, kw],
                 strides=list(layer.strides), dilations=list(layer.dilation_rate),
                 group=groups, pads=_onnx_pads(pads))
    inputs = [mid, g.const(_onnx_weight(layer, pw), f"{layer.name}/PW")]
    if layer.use_bias:
        inputs.append(g.const(layer.bias, f"{layer.name}/B"))
    return _Value(g.node("Conv", inputs, layer.name, kernel_shape=[1, 1]), v.perm,
                  out_shape)


def _conv2d_transpose(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation_rate
    k_eff = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    out_hw = _hw(layer, out_shape)
    # The convolution this one transposes runs on the output with these pads; the
    # rows it leaves out at the end are ONNX's output_padding.
    pads = resolve_padding(layer.padding, out_hw, k_eff, layer.strides)
    extra = [o - ((n - 1) * s + k - pb - pa) for o, n, s, k, (pb, pa) in
             zip(out_hw, _hw(layer, v.shape), layer.strides, k_eff, pads)]
    inputs = [v.name, g.const(layer.kernel.transpose(3, 2, 0, 1), f"{layer.name}/W")]
    if layer.use_bias:
        inputs.append(g.const(layer.bias, f"{layer.name}/B"))
    y = g.node("ConvTranspose", inputs, layer.name, kernel_shape=[kh, kw],
               strides=list(layer.strides), dilations=list(layer.dilation_rate),
               pads=_onnx_pads(pads), output_padding=extra)
    return _Value(y, v.perm, out_shape)


def _batch_normalization(g, layer, v, out_shape):
    axis = layer.axis % len(v.shape)
    c = v.shape[axis]
    ones, zeros = np.ones(c), np.zeros(c)
    gamma = layer.gamma if layer.scale else ones
    beta = layer.beta if layer.center else zeros
    if v.axis(axis) == 1:  # ONNX's channel axis
        inputs = [v.name] + [g.const(a, f"{layer.name}/{n}") for a, n in (
            (gamma, "scale"), (beta, "B"), (layer.moving_mean, "mean"),
            (layer.moving_variance, "var"))]
        return _Value(g.node("BatchNormalization", inputs, layer.name,
                             epsilon=layer.epsilon), v.perm, out_shape)
    # Another axis: the same map as x * scale + shift, per channel.
    _, scale, shift = layer._affine(layer.moving_mean.astype(np.float64),
                                    layer.moving_variance.astype(np.float64))
    shape = [1] * len(v.shape)
    shape[axis] = c
    y = g.node("Mul", [v.name, g.const(g.layout(scale.reshape(shape), v),
                                       f"{layer.name}/scale")], layer.name)
    y = g.node("Add", [y, g.const(g.layout(shift.reshape(shape), v),
                                  f"{layer.name}/shift")], layer.name)
    return _Value(y, v.perm, out_shape)


def _spatial_axes(layer, v):
    """The ONNX axes of layer's height and width in v."""
    hw = (1, 2) if layer.data_format == "channels_last" else (2, 3)
    return [v.axis(a) for a in hw]


def _zero_padding2d(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    begin, end = [0, 0, 0, 0], [0, 0, 0, 0]
    for axis, (b, e) in zip(_spatial_axes(layer, v), layer.padding):
        begin[axis], end[axis] = b, e
    pads = g.const(np.array(begin + end), f"{layer.name}/pads", np.int64)
    return _Value(g.node("Pad", [v.name, pads], layer.name, mode="constant"), v.perm,
                  out_shape)


def _cropping2d(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    axes = _spatial_axes(layer, v)
    hw = _hw(layer, v.shape)
    starts = [b for b, _ in layer.cropping]
    ends = [n - e for n, (_, e) in zip(hw, layer.cropping)]
    inputs = [v.name] + [g.const(np.array(a), f"{layer.name}/{n}", np.int64)
                         for a, n in ((starts, "starts"), (ends, "ends"), (axes, "axes"))]
    return _Value(g.node("Slice", inputs, layer.name), v.perm, out_shape)


def _upsampling2d(g, layer, v, out_shape):
    v = g.arrange(v, _image_perm(layer), layer.name)
    scales = [1.0] * 4
    for axis, f in zip(_spatial_axes(layer, v), layer.size):
        scales[axis] = float(f)
    if layer.interpolation == "nearest":  # pixel i reads floor(i / f): a repeat
        attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                     nearest_mode="floor")
    else:  # Keras's bilinear: half-pixel centres, edges clamped
        attrs = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    y = g.node("Resize", [v.name, "", g.const(np.array(scales), f"{layer.name}/scales",
                                              np.float32)], layer.name, **attrs)
    return _Value(y, v.perm, out_shape)


def _soft_pooling2d(g, layer, v, out_shape):
    # sum(exp(x) x) / sum(exp(x)) per window, as the ratio of two averages over the
    # same cells
    v = g.arrange(v, _image_perm(layer), layer.name)
    e = g.node("Exp", [v.name], layer.name)
    pool = _pool("AveragePool", count_include_pad=0)
    num = pool(g, layer, _Value(g.node("Mul", [e, v.name], layer.name), v.perm,
                                v.shape), out_shape)
    den = pool(g, layer, _Value(e, v.perm, v.shape), out_shape)
    return _Value(g.node("Div", [num.name, den.name], layer.name), v.perm, out_shape)


def _relu_layer(g, layer, v, out_shape):
    x, base = v.name, layer.name
    slope, top, thr = layer.negative_slope, layer.max_value, layer.threshold
    if slope == 0 and thr == 0:
        y = g.node("Relu", [x], base) if top is None else _clip(g, x, 0.0, top, base)
        return _Value(y, v.perm, out_shape)
    t = g.const(np.float64(thr), f"{base}/threshold")
    zero = g.const(np.float64(0.0), f"{base}/zero")
    y = g.node("Where", [g.node("Greater", [x, t], base), x, zero], base)
    if top is not None:
        y = g.node("Min", [y, g.const(np.float64(top), f"{base}/max")], base)
    if slope:
        below = g.node("Min", [g.node("Sub", [x, t], base), zero], base)
        y = g.node("Add", [y, g.node("Mul", [below, g.const(
            np.float64(slope), f"{base}/slope")], base)], base)
    return _Value(y, v.perm, out_shape)


def _pool(op, **extra):
    def export(g, layer, v, out_shape):
        v = g.arrange(v, _image_perm(layer), layer.name)
        pads = resolve_padding(layer.padding, _hw(layer, v.shape), layer.pool_size,
                               layer.strides)
        y = g.node(op, [v.name], layer.name, kernel_shape=list(layer.pool_size),
                   strides=list(layer.strides), pads=_onnx_pads(pads), **extra)
        return _Value(y, v.perm, out_shape)
    return export


def _global_pool(op):
    def export(g, layer, v, out_shape):
        v = g.arrange(v, _image_perm(layer), layer.name)
        y = g.node(op, [v.name], layer.name)  # (N, C, 1, 1)
        if getattr(layer, "keepdims", False):
            return _Value(y, v.perm, out_shape)
        return _Value(g.node("Flatten", [y], layer.name, axis=1), (0, 1), out_shape)
    return export


def _flatten(g, layer, v, out_shape):
    nd = len(v.shape)
    if layer.data_format == "channels_first" and nd > 2:
        perm = (0,) + tuple(range(2, nd)) + (1,)
    else:
        perm = tuple(range(nd))
    v = g.arrange(v, perm, layer.name)
    return _Value(g.node("Flatten", [v.name], layer.name, axis=1), (0, 1), out_shape)


def _dense(g, layer, v, out_shape):
    v = g.arrange(v, tuple(range(len(v.shape))), layer.name)
    kernel = g.const(layer.kernel, f"{layer.name}/W")
    if len(v.shape) == 2:
        inputs = [v.name, kernel]
        if layer.use_bias:
            inputs.append(g.const(layer.bias, f"{layer.name}/B"))
        y = g.node("Gemm", inputs, layer.name)
    else:
        y = g.node("MatMul", [v.name, kernel], layer.name)
        if layer.use_bias:
            y = g.node("Add", [y, g.const(layer.bias, f"{layer.name}/B")], layer.name)
    return _Value(y, v.perm, out_shape)


def _identity(g, layer, v, out_shape):
    return v


def _rescaling(g, layer, v, out_shape):
    y = g.node("Mul", [v.name, g.const(g.layout(layer._scale, v), f"{layer.name}/scale")],
               layer.name)
    if np.any(layer._offset != 0):
        y = g.node("Add", [y, g.const(g.layout(layer._offset, v),
                                      f"{layer.name}/offset")], layer.name)
    return _Value(y, v.perm, out_shape)


def _normalization(g, layer, v, out_shape):
    mean, denom = layer._stats()
    m = g.const(g.layout(mean, v), f"{layer.name}/mean")
    d = g.const(g.layout(denom, v), f"{layer.name}/denominator")
    if layer.invert:
        y = g.node("Add", [g.node("Mul", [v.name, d], layer.name), m], layer.name)
    else:
        y = g.node("Div", [g.node("Sub", [v.name, m], layer.name), d], layer.name)
    return _Value(y, v.perm, out_shape)


#: layer class name -> (graph, layer, input _Value, fastconv output shape) -> the
#: _Value of the layer's linear part (its activation is added after)
EXPORTERS = {
    "Conv2D": _conv2d,
    "SeparableConv2D": _separable_conv2d,
    "Conv2DTranspose": _conv2d_transpose,
    "BatchNormalization": _batch_normalization,
    "MaxPooling2D": _pool("MaxPool"),
    "AveragePooling2D": _pool("AveragePool", count_include_pad=0),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"),
    "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "Flatten": _flatten,
    "Dense": _dense,
    "Dropout": _identity,
    "Activation": _identity,
    "Rescaling": _rescaling,
    "ZeroPadding2D": _zero_padding2d,
    "Cropping2D": _cropping2d,
    "UpSampling2D": _upsampling2d,
    "SoftPooling2D": _soft_pooling2d,
    "ReLU": _relu_layer,
    "LeakyReLU": lambda g, layer, v, out_shape: _Value(g.node(
        "LeakyRelu", [v.name], layer.name, alpha=layer.negative_slope), v.perm, out_shape),
    "ELU": lambda g, layer, v, out_shape: _Value(g.node(
        "Elu", [v.name], layer.name, alpha=layer.alpha), v.perm, out_shape),
    "Normalization": _normalization,
}

# Layers that only act in training (augmentation): identity at inference.
for _name in ("RandomFlip", "RandomTranslation", "RandomZoom", "RandomRotation",
              "RandomCrop"):
    EXPORTERS[_name] = _identity


def _exporter(layer):
    for cls in type(layer).__mro__:
        fn = EXPORTERS.get(cls.__name__)
        if fn is not None:
            return fn
    raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) has no ONNX export; "
                     f"exported layers: {', '.join(sorted(EXPORTERS))}")


def export_layer(g, layer, v):
    """The _Value of layer's output (activation included) from its input v (a list
    of them for a layer of several inputs)."""
    out_shape = tuple(layer.compute_output_shape(
        [u.shape for u in v] if isinstance(v, list) else v.shape))
    y = _exporter(layer)(g, layer, v, out_shape)
    return _activate(g, layer, y, layer.name)
