"""The image operators of fastconv.onnx.load: Conv, ConvTranspose, pooling, Pad,
Resize (a runtime node -> a layer spec; see fastconv/onnx/_import.py)."""
from .. import layers as _layers
from ..shapes import resolve_padding
from ._fold import axes_of

__all__ = ["IMAGE_CONVERTERS", "layer_class"]


def layer_class(name):
    """The fastconv layer class of that name, None if this fastconv has none."""
    return getattr(_layers, name, None)


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
    cls = layer_class("ZeroPadding2D")
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


def _conv_transpose(c, node):
    """ConvTranspose as a Conv2DTranspose (Keras's 'same' or 'valid' padding and
    output_padding), cropped by a Cropping2D where ONNX's pads need it."""
    x, w, b = c.runtime(node), c.const(node, 1), c.const(node, 2, required=False)
    a = c.attrs(node)
    fmt = _image(c, node, x)
    if w.ndim != 4 or a.get("group", 1) != 1:
        raise c.error(node, f"only 2-D, group=1 transposed convolutions are supported, "
                            f"weight shape {w.shape}, group {a.get('group', 1)}")
    _, m, kh, kw = w.shape
    strides = tuple(a.get("strides", [1, 1]))
    dil = tuple(a.get("dilations", [1, 1]))
    k_eff = ((kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1)
    hw = x.shape[2:]
    full = tuple((n - 1) * s + k for n, s, k in zip(hw, strides, k_eff))
    begin, out = _transpose_geometry(c, node, a, hw, full)
    kwargs = dict(filters=int(m), kernel_size=(int(kh), int(kw)), strides=strides,
                  data_format=fmt, dilation_rate=dil, use_bias=b is not None)
    weights = [w.transpose(2, 3, 1, 0).astype(c.dtype)]
    if b is not None:
        weights.append(b.astype(c.dtype))
    same = resolve_padding("same", out, k_eff, strides)
    if tuple(p[0] for p in same) == begin:
        # Keras's output length with 'same': n * s, or (n - 1) * s + k_eff % 2 +
        # output_padding when that is given
        for extra in [None] + [tuple(o - (n - 1) * s - k % 2 for o, n, s, k in
                                     zip(out, hw, strides, k_eff))]:
            length = tuple(n * s for n, s in zip(hw, strides)) if extra is None else \
                tuple((n - 1) * s + k % 2 + e for n, s, k, e in zip(hw, strides, k_eff,
                                                                  extra))
            if length == out and (extra is None or all(0 <= e < s for e, s in
                                                       zip(extra, strides))):
                return c.add(node, _layers.Conv2DTranspose,
                             dict(kwargs, padding="same", output_padding=extra), [x],
                             x.perm, weights)
    # 'valid' (the full transposed convolution, output_padding more rows at the end),
    # then the rows ONNX's pads remove
    extra = tuple(max(0, p + o - f) for p, o, f in zip(begin, out, full))
    if any(e >= s for e, s in zip(extra, strides)):
        raise c.error(node, f"output size {out} is beyond what fastconv's "
                            f"Conv2DTranspose makes")
    c.add(node, _layers.Conv2DTranspose, dict(
        kwargs, padding="valid", output_padding=extra), [x],
        x.perm, weights)
    crop = tuple((p, f + e - p - o) for p, f, e, o in zip(begin, full, extra, out))
    if crop != ((0, 0), (0, 0)):
        cls = layer_class("Cropping2D")
        if cls is None:
            raise c.error(node, f"pads {crop} need a Cropping2D, which this fastconv "
                                f"has not")
        y = c.dyn[node.output[0]]
        c.add(node, cls, dict(cropping=crop, data_format=fmt), [y], y.perm)


def _transpose_geometry(c, node, a, hw, full):
    """(begin pads, output size) of ConvTranspose node on inputs of size hw, whose
    uncropped output has size full."""
    op = tuple(a.get("output_padding", [0, 0]))
    if "output_shape" in a:
        out = tuple(a["output_shape"][-2:])
        total = [f + o - n for f, o, n in zip(full, op, out)]
        lower = a.get("auto_pad", "NOTSET") == "SAME_LOWER"
        begin = tuple(t - t // 2 if lower else t // 2 for t in total)
        return begin, out
    auto = a.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = tuple(n * s for n, s in zip(hw, a.get("strides", [1, 1])))
        total = [f + o - n for f, o, n in zip(full, op, out)]
        lower = auto == "SAME_LOWER"
        return tuple(t - t // 2 if lower else t // 2 for t in total), out
    p = a.get("pads", [0, 0, 0, 0]) if auto == "NOTSET" else [0, 0, 0, 0]
    out = tuple(f + o - pb - pe for f, o, pb, pe in zip(full, op, p[:2], p[2:]))
    if min(out) < 1 or min(p) < 0:
        raise c.error(node, f"pads {p} leave no output")
    return (p[0], p[1]), out


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
        cls = layer_class(kind)
        if cls is None:
            raise c.error(node, f"this fastconv has no {kind}")
        c.add(node, cls, dict(data_format=_image(c, node, x), keepdims=True), [x],
              x.perm)
    return convert


def _reduce_mean(c, node):
    x, a = c.runtime(node), c.attrs(node)
    vals = [None] + [c.const(node, i) for i in range(1, len(node.input))]
    axes = sorted(ax % max(len(x.shape), 1) for ax in (axes_of(c, node, a, vals) or []))
    if len(x.shape) != 4 or axes != [2, 3]:
        raise c.error(node, f"only the mean over H and W of an NCHW tensor is "
                            f"supported, got axes {axes} of shape {x.shape}")
    keep = bool(a.get("keepdims", 1))
    c.add(node, _layers.GlobalAveragePooling2D,
          dict(data_format=_image(c, node, x), keepdims=keep), [x],
          x.perm if keep else (0, 1))


IMAGE_CONVERTERS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("MaxPooling2D"),
    "AveragePool": _pool("AveragePooling2D"),
    "GlobalAveragePool": _global_pool("GlobalAveragePooling2D"),
    "GlobalMaxPool": _global_pool("GlobalMaxPooling2D"),
    "ReduceMean": _reduce_mean,
}
