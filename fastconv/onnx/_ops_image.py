"""The image operators of fastconv.onnx.load: Conv, ConvTranspose, pooling, Pad,
Resize (a runtime node -> a layer spec; see fastconv/onnx/_import.py)."""
import numpy as np

from .. import layers as _layers
from ..shapes import resolve_padding
from ._fold import axes_of
from ._proto import BATCH

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


def _pad(c, node):
    """Pad of H and W with zeros (ZeroPadding2D; negative pads: Cropping2D)."""
    x, a = c.runtime(node), c.attrs(node)
    fmt = _image(c, node, x)
    pads = [int(p) for p in c.const(node, 1)]
    value = c.const(node, 2, required=False)
    axes = c.const(node, 3, required=False)
    axes = [0, 1, 2, 3] if axes is None else [int(v) % 4 for v in axes]
    full = [0] * 8
    for i, ax in enumerate(axes):
        full[ax], full[ax + 4] = pads[i], pads[i + len(axes)]
    if a.get("mode", "constant") != "constant" or (value is not None and np.any(value)):
        raise c.error(node, "only padding with zeros is supported")
    if any(full[i] for i in (0, 1, 4, 5)):
        raise c.error(node, f"pads {pads} pad the batch or channel axis")
    grow = ((max(full[2], 0), max(full[6], 0)), (max(full[3], 0), max(full[7], 0)))
    cut = ((max(-full[2], 0), max(-full[6], 0)), (max(-full[3], 0), max(-full[7], 0)))
    if grow != ((0, 0), (0, 0)) or cut == ((0, 0), (0, 0)):
        x = _zero_pad(c, node, x, grow, fmt)
    if cut != ((0, 0), (0, 0)):
        _crop(c, node, x, cut, fmt)


def _crop(c, node, x, cut, fmt):
    cls = layer_class("Cropping2D")
    if cls is None:
        raise c.error(node, "this fastconv has no Cropping2D")
    c.add(node, cls, dict(cropping=cut, data_format=fmt), [x], x.perm)


def _slice(c, node):
    """Slice of H and W with step 1 (Cropping2D)."""
    x = c.runtime(node)
    fmt = _image(c, node, x)
    starts, ends = c.const(node, 1), c.const(node, 2)
    axes = c.const(node, 3, required=False)
    steps = c.const(node, 4, required=False)
    axes = range(len(starts)) if axes is None else [int(v) % 4 for v in axes]
    cut = {2: (0, 0), 3: (0, 0)}
    for i, ax in enumerate(axes):
        if steps is not None and int(steps[i]) != 1 or ax not in cut:
            raise c.error(node, "only step-1 slices of H and W are supported")
        begin, end, _ = slice(int(starts[i]), int(ends[i])).indices(x.shape[ax])
        if end <= begin:
            raise c.error(node, f"the slice leaves axis {ax} empty")
        cut[ax] = (begin, x.shape[ax] - end)
    _crop(c, node, x, (cut[2], cut[3]), fmt)


def _source_index(a, i, n_in, n_out, scale):
    """The input index nearest-neighbour Resize reads for output index i (ONNX)."""
    mode = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "asymmetric":
        v = i / scale
    elif mode == "align_corners":
        v = 0.0 if n_out == 1 else i * (n_in - 1) / (n_out - 1)
    elif mode == "tf_half_pixel_for_nn":
        v = (i + 0.5) / scale
    elif mode == "pytorch_half_pixel" and n_out == 1:
        v = 0.0
    else:  # half_pixel, pytorch_half_pixel
        v = (i + 0.5) / scale - 0.5
    rounding = a.get("nearest_mode", "round_prefer_floor")
    r = {"floor": np.floor(v), "ceil": np.ceil(v), "round_prefer_ceil": np.floor(v + 0.5)
         }.get(rounding, np.ceil(v - 0.5))
    return int(min(max(r, 0), n_in - 1))


def _resize(c, node):
    """Resize of H and W by integer factors (UpSampling2D)."""
    x, a = c.runtime(node), c.attrs(node)
    fmt = _image(c, node, x)
    scales = c.const(node, 2, required=False)
    sizes = c.const(node, 3, required=False)
    if sizes is not None and np.size(sizes) == 4:
        out = [int(v) for v in sizes]
        if out[0] in (c.batch, BATCH):  # (a fixed or folded batch size)
            out[0] = None
        scales = [1.0 if o is None else o / n for o, n in
                  zip(out, [None, x.shape[1]] + list(x.shape[2:]))]
    elif scales is not None and np.size(scales) == 4:
        scales = [float(v) for v in scales]
        out = [None, x.shape[1]] + [int(np.floor(n * s)) for n, s in
                                     zip(x.shape[2:], scales[2:])]
    else:
        raise c.error(node, "needs constant scales or sizes for all 4 axes")
    factors = tuple(o // n for o, n in zip(out[2:], x.shape[2:]))
    if scales[:2] != [1.0, 1.0] or any(o != n * f or f < 1 for o, n, f in
                                       zip(out[2:], x.shape[2:], factors)):
        raise c.error(node, f"only integer upsampling of H and W is supported, scales "
                            f"{scales}")
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        for n, o, s in zip(x.shape[2:], out[2:], scales[2:]):
            if any(_source_index(a, i, n, o, s) != i * n // o for i in range(o)):
                raise c.error(node, f"nearest resize with {ctm!r} and "
                                    f"{a.get('nearest_mode', 'round_prefer_floor')!r} "
                                    f"is not a repeat of each pixel")
        interpolation = "nearest"
    elif mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel") and \
            not a.get("antialias", 0):
        interpolation = "bilinear"
    else:
        raise c.error(node, f"mode {mode!r} with {ctm!r}: only nearest and half-pixel "
                            f"linear resizes are supported")
    c.add(node, layer_class("UpSampling2D"), dict(size=factors, data_format=fmt,
                                                  interpolation=interpolation), [x],
          x.perm)


_NON_NEGATIVE = ("relu", "relu6", "sigmoid", "softmax", "hard_sigmoid")


def _non_negative(c, x):
    """Whether runtime tensor x is the output of an activation >= 0 (a layer spec of
    this load)."""
    spec = next((s for s in c.specs if s.output == x.fc), None)
    if spec is None:
        return False
    if spec.cls is _layers.Activation:
        return spec.kwargs.get("activation") in _NON_NEGATIVE
    if spec.cls is layer_class("ReLU"):
        return spec.kwargs.get("negative_slope", 0.0) == 0.0
    return False


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
        if not isinstance(padding, str) and kind == "MaxPooling2D" and \
                _non_negative(c, x):
            # zeros never win a max over values >= 0: padding with zeros is exact
            x, padding = _zero_pad(c, node, x, padding, fmt), "valid"
        if not isinstance(padding, str):
            raise c.error(node, f"pads {padding} are neither 0 nor Keras's 'same' "
                                f"(fastconv pooling layers take 'valid' or 'same'; "
                                f"a max pool's input may be padded when it is the "
                                f"output of a ReLU)")
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
    "Pad": _pad,
    "Slice": _slice,
    "Resize": _resize,
    "MaxPool": _pool("MaxPooling2D"),
    "AveragePool": _pool("AveragePooling2D"),
    "GlobalAveragePool": _global_pool("GlobalAveragePooling2D"),
    "GlobalMaxPool": _global_pool("GlobalMaxPooling2D"),
    "ReduceMean": _reduce_mean,
}
