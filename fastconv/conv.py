"""2-D cross-correlation ("conv2d" of deep learning) and its gradients on ndarrays.

The convolution is lowered to matrix products: the compiled kernels in src/_conv2d.pyx
build a column matrix (im2col) for a chunk of the batch, NumPy's matmul (the BLAS NumPy
was built with, dispatching on the CPU at run time) multiplies it with the weights, and
the input gradient is scattered back by col2im.  Chunks are sized so the column buffer
stays in cache instead of holding the whole batch.

Layouts: ``channels_first`` takes x (N, C, H, W) and weight (C_out, C_in/groups, kh, kw)
as PyTorch does; ``channels_last`` takes x (N, H, W, C) and weight
(kh, kw, C_in/groups, C_out) as Keras does.  Results come back in the layout and dtype
the arguments came in (see fastconv/_validation.py for the dtype policy).
"""
from dataclasses import dataclass

import numpy as np

from . import _ext
from ._validation import (as_array, check_data_format, check_int, check_ndim,
                          common_float_dtype)
from .shapes import conv_output_shape, normalize_pair, normalize_padding, resolve_padding

__all__ = ["conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape"]

# Bytes of column buffer per chunk: large enough for efficient matrix products, small
# enough to stay in the last-level cache.  Measured in bench/ (see README).
_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class _Geometry:
    """Everything the kernels need to know about one convolution, checked once."""
    n: int
    c_in: int
    h: int
    w: int
    c_out: int
    groups: int
    kh: int
    kw: int
    sy: int
    sx: int
    dy: int
    dx: int
    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int
    oh: int
    ow: int
    channels_last: bool

    @property
    def x_shape(self):
        if self.channels_last:
            return (self.n, self.h, self.w, self.c_in)
        return (self.n, self.c_in, self.h, self.w)

    @property
    def y_shape(self):
        if self.channels_last:
            return (self.n, self.oh, self.ow, self.c_out)
        return (self.n, self.c_out, self.oh, self.ow)

    @property
    def weight_shape(self):
        cg = self.c_in // self.groups
        if self.channels_last:
            return (self.kh, self.kw, cg, self.c_out)
        return (self.c_out, cg, self.kh, self.kw)

    @property
    def k_group(self):
        return (self.c_in // self.groups) * self.kh * self.kw

    def kernel_args(self):
        return (self.kh, self.kw, self.sy, self.sx, self.dy, self.dx, self.pad_top,
                self.pad_left, self.oh, self.ow)


def _geometry(x_shape, weight_shape, stride, padding, dilation, groups, data_format):
    check_data_format(data_format)
    last = data_format == "channels_last"
    groups = check_int(groups, "groups")
    stride = normalize_pair(stride, "stride")
    dilation = normalize_pair(dilation, "dilation")
    padding = normalize_padding(padding)
    if last:
        n, h, w, c_in = x_shape
        kh, kw, cg, c_out = weight_shape
        wdesc = "(kh, kw, C_in/groups, C_out) for channels_last"
    else:
        n, c_in, h, w = x_shape
        c_out, cg, kh, kw = weight_shape
        wdesc = "(C_out, C_in/groups, kh, kw) for channels_first"
    if c_in % groups:
        raise ValueError(f"x has {c_in} input channels, which groups={groups} does not "
                         f"divide (x shape {tuple(x_shape)}, {data_format})")
    if cg != c_in // groups:
        raise ValueError(f"weight must have C_in/groups = {c_in}/{groups} = "
                         f"{c_in // groups} input channels in the layout {wdesc}, got "
                         f"weight shape {tuple(weight_shape)}")
    if c_out % groups:
        raise ValueError(f"weight has C_out = {c_out} output channels, which groups="
                         f"{groups} does not divide (weight shape {tuple(weight_shape)})")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight must have a kernel of at least 1x1, got weight shape "
                         f"{tuple(weight_shape)} ({wdesc})")
    k_eff = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    (pt, pb), (pl, pr) = resolve_padding(padding, (h, w), k_eff, stride)
    oh, ow = conv_output_shape((h, w), (kh, kw), stride, ((pt, pb), (pl, pr)), dilation,
                               what="weight kernel")
    return _Geometry(n, c_in, h, w, c_out, groups, kh, kw, stride[0], stride[1],
                     dilation[0], dilation[1], pt, pb, pl, pr, oh, ow, last)


def conv2d_output_shape(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                        data_format="channels_first"):
    """Shape of conv2d's output for these argument shapes (no arrays needed)."""
    return _geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation,
                     groups, data_format).y_shape


def _inputs(arrays, ndims):
    """Validate ranks and dtypes of ``arrays`` (name -> value); return them prepared."""
    raw = {name: (None if v is None else as_array(v, name)) for name, v in arrays.items()}
    for name, arr in raw.items():
        if arr is not None and name in ndims:
            check_ndim(arr, name, ndims[name][0], ndims[name][1])
    dtype = common_float_dtype(raw)
    return dtype, {name: (None if arr is None else
                          np.ascontiguousarray(arr, dtype=dtype))
                   for name, arr in raw.items()}


_X_DESC = {"channels_first": "a 4-D array (N, C, H, W) for channels_first",
           "channels_last": "a 4-D array (N, H, W, C) for channels_last"}


def _weight_groups(g, weight):
    """Weights as (groups, C_out/groups, K) [channels_first] or (groups, K, C_out/groups)."""
    cog = g.c_out // g.groups
    if g.channels_last:
        return np.ascontiguousarray(
            weight.reshape(g.k_group, g.groups, cog).transpose(1, 0, 2))
    return weight.reshape(g.groups, cog, g.k_group)


def _weight_from_groups(g, wg):
    if g.channels_last:
        return np.ascontiguousarray(wg.transpose(1, 0, 2)).reshape(g.weight_shape)
    return wg.reshape(g.weight_shape)


def _chunk(g, itemsize):
    """Images per chunk so that one chunk's column buffer is about _CHUNK_BYTES."""
    per_image = max(g.k_group * g.groups * g.oh * g.ow * itemsize, 1)
    return int(max(1, min(g.n, _CHUNK_BYTES // per_image)))


def _col_view(g, buf, nb):
    """A chunk's column matrix as a C-contiguous view of the flat buffer ``buf``.

    channels_first: (K, nb * P); channels_last: (nb * P, K).  K = C_in * kh * kw.
    """
    k, m = g.k_group * g.groups, nb * g.oh * g.ow
    col = buf[:k * m]
    return col.reshape(m, k) if g.channels_last else col.reshape(k, m)


def _group_stack(g, col):
    """The column matrix as a stack of per-group matrices.

    channels_first: (G, Kg, M), left-multiplied by the weights (G, C_out/G, Kg);
    channels_last:  (G, M, Kg), right-multiplied by the weights (G, Kg, C_out/G).
    """
    if g.channels_last:
        return col.reshape(col.shape[0], g.groups, g.k_group).transpose(1, 0, 2)
    return col.reshape(g.groups, g.k_group, col.shape[1])


def _chunks(g, dtype):
    """Yield (n0, nb, col) over the batch, reusing one column buffer."""
    step = _chunk(g, np.dtype(dtype).itemsize)
    buf = np.empty(step * g.k_group * g.groups * g.oh * g.ow, dtype)
    for n0 in range(0, g.n, step):
        nb = min(step, g.n - n0)
        yield n0, nb, _col_view(g, buf, nb)


def _im2col(g, x, col, n0):
    if g.channels_last:
        _ext.conv2d.im2col_nhwc(x, col, n0, g.groups, *g.kernel_args())
    else:
        _ext.conv2d.im2col_nchw(x, col, n0, *g.kernel_args())


def _col2im(g, col, gx, n0):
    if g.channels_last:
        _ext.conv2d.col2im_nhwc(col, gx, n0, g.groups, *g.kernel_args())
    else:
        _ext.conv2d.col2im_nchw(col, gx, n0, *g.kernel_args())


def _forward(g, x, weight, bias, dtype):
    y = np.empty(g.y_shape, dtype)
    wg = _weight_groups(g, weight)
    cog, P = g.c_out // g.groups, g.oh * g.ow
    for n0, nb, col in _chunks(g, dtype):
        _im2col(g, x, col, n0)
        cs = _group_stack(g, col)
        if g.channels_last:
            # (G, M, Kg) @ (G, Kg, C_out/G), written straight into y's rows.
            y_rows = y[n0:n0 + nb].reshape(nb * P, g.groups, cog).transpose(1, 0, 2)
            np.matmul(cs, wg, out=y_rows)
        else:
            # (G, C_out/G, Kg) @ (G, Kg, nb * P) -> (C_out, nb, P) -> y[n0:n0 + nb].
            yt = np.matmul(wg, cs).reshape(g.c_out, nb, P)
            np.copyto(y[n0:n0 + nb].reshape(nb, g.c_out, P), yt.transpose(1, 0, 2))
    if bias is not None:
        y += bias if g.channels_last else bias.reshape(-1, 1, 1)
    return y


def _backward(g, grad_y, x, weight, dtype, need_input, need_weight):
    """Input and/or weight gradients, sharing one im2col pass per chunk."""
    cog, P = g.c_out // g.groups, g.oh * g.ow
    grad_x = np.zeros(g.x_shape, dtype) if need_input else None
    wg = _weight_groups(g, weight) if need_input else None
    gwg = None
    if need_weight:
        gwg = np.zeros((g.groups, g.k_group, cog) if g.channels_last else
                       (g.groups, cog, g.k_group), dtype)
    for n0, nb, col in _chunks(g, dtype):
        cs = _group_stack(g, col)
        if g.channels_last:
            gys = grad_y[n0:n0 + nb].reshape(nb * P, g.groups, cog).transpose(1, 0, 2)
        else:
            gys = np.ascontiguousarray(
                grad_y[n0:n0 + nb].reshape(nb, g.c_out, P).transpose(1, 0, 2)
            ).reshape(g.groups, cog, nb * P)
        if need_weight:
            _im2col(g, x, col, n0)
            if g.channels_last:
                gwg += np.matmul(cs.transpose(0, 2, 1), gys)
            else:
                gwg += np.matmul(gys, cs.transpose(0, 2, 1))
        if need_input:
            # The column buffer is free again: it receives the column gradient.
            if g.channels_last:
                np.matmul(gys, wg.transpose(0, 2, 1), out=cs)
            else:
                np.matmul(wg.transpose(0, 2, 1), gys, out=cs)
            _col2im(g, col, grad_x, n0)
    return grad_x, (None if gwg is None else _weight_from_groups(g, gwg))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           data_format="channels_first"):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (no kernel flip).

    Parameters
    ----------
    x : ndarray, (N, C, H, W) for channels_first or (N, H, W, C) for channels_last.
    weight : ndarray, (C_out, C/groups, kh, kw) or (kh, kw, C/groups, C_out).
    bias : ndarray (C_out,) or None.
    stride, dilation : int or (sy, sx).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid" or "same"
        (TensorFlow's rule: output = ceil(n / stride), odd extra padding bottom/right).
    groups : int dividing both C and C_out.
    data_format : "channels_first" or "channels_last".

    Returns
    -------
    y : ndarray in the layout and dtype of x.
    """
    check_data_format(data_format)
    dtype, a = _inputs({"x": x, "weight": weight, "bias": bias},
                       {"x": (4, _X_DESC[data_format]), "weight": (4, None),
                        "bias": (1, "a 1-D array (C_out,)")})
    g = _geometry(a["x"].shape, a["weight"].shape, stride, padding, dilation, groups,
                  data_format)
    if a["bias"] is not None and a["bias"].shape != (g.c_out,):
        raise ValueError(f"bias must have shape ({g.c_out},) to match C_out, got "
                         f"{a['bias'].shape}")
    return _forward(g, a["x"], a["weight"], a["bias"], dtype)


def _backward_inputs(grad_y, x, weight, stride, padding, dilation, groups, data_format,
                     x_shape=None, weight_shape=None):
    """Check the backward arguments; x or weight may be replaced by a shape."""
    check_data_format(data_format)
    dtype, a = _inputs({"grad_y": grad_y, "x": x, "weight": weight},
                       {"grad_y": (4, _X_DESC[data_format].replace("(N, C,", "(N, C_out,")
                                   .replace("W, C)", "W, C_out)")),
                        "x": (4, _X_DESC[data_format]), "weight": (4, None)})
    xs = a["x"].shape if a["x"] is not None else tuple(x_shape)
    ws = a["weight"].shape if a["weight"] is not None else tuple(weight_shape)
    if len(xs) != 4:
        raise ValueError(f"x_shape must have 4 entries, got {xs}")
    if len(ws) != 4:
        raise ValueError(f"weight_shape must have 4 entries, got {ws}")
    g = _geometry(xs, ws, stride, padding, dilation, groups, data_format)
    if a["grad_y"].shape != g.y_shape:
        raise ValueError(f"grad_y must have the output shape {g.y_shape} of this "
                         f"convolution, got {a['grad_y'].shape}")
    return g, dtype, a


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    data_format="channels_first", has_bias=True):
    """All gradients of :func:`conv2d`: returns (grad_x, grad_weight, grad_bias).

    ``grad_bias`` is None when ``has_bias`` is False.  One im2col pass per chunk serves
    both the weight and the input gradient.
    """
    g, dtype, a = _backward_inputs(grad_y, x, weight, stride, padding, dilation, groups,
                                   data_format)
    gx, gw = _backward(g, a["grad_y"], a["x"], a["weight"], dtype, True, True)
    gb = _bias_grad(a["grad_y"], g.channels_last) if has_bias else None
    return gx, gw, gb


def conv2d_grad_input(grad_y, weight, x_shape, stride=1, padding=0, dilation=1, groups=1,
                      data_format="channels_first"):
    """Gradient of conv2d with respect to x (a transposed convolution of grad_y)."""
    g, dtype, a = _backward_inputs(grad_y, None, weight, stride, padding, dilation, groups,
                                   data_format, x_shape=x_shape)
    return _backward(g, a["grad_y"], None, a["weight"], dtype, True, False)[0]


def conv2d_grad_weight(grad_y, x, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                       data_format="channels_first"):
    """Gradient of conv2d with respect to the weight, in the weight's layout."""
    g, dtype, a = _backward_inputs(grad_y, x, None, stride, padding, dilation, groups,
                                   data_format, weight_shape=weight_shape)
    return _backward(g, a["grad_y"], a["x"], None, dtype, False, True)[1]


def _bias_grad(grad_y, channels_last):
    return grad_y.sum(axis=(0, 1, 2) if channels_last else (0, 2, 3))


def conv2d_grad_bias(grad_y, data_format="channels_first"):
    """Gradient of conv2d with respect to the bias: grad_y summed over all but C_out."""
    check_data_format(data_format)
    gy = as_array(grad_y, "grad_y")
    check_ndim(gy, "grad_y", 4)
    return _bias_grad(gy.astype(common_float_dtype({"grad_y": gy}), copy=False),
                      data_format == "channels_last")
