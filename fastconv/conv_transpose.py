"""Transposed 2-D convolution ("deconvolution") and its gradients, on ndarrays.

``conv_transpose2d`` has PyTorch's arguments (``torch.nn.functional.conv_transpose2d``):
it is the input gradient of a convolution, so it runs on ``conv2d_grad_input`` of the
convolution that maps its output back to its input, and its own gradients are that
convolution's forward (input gradient) and weight gradient (weight gradient).

    H_out = (H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1

The convolution seen from the output has padding ``padding`` on top and
``padding - output_padding`` at the bottom; where output_padding exceeds padding, the
last ``output_padding - padding`` rows of the output are outside every window (zero
before the bias), and the gradients ignore them.  Columns likewise.

Layouts (as fastconv.conv2d): ``channels_first`` takes x (N, C_in, H, W) and a weight
(C_in, C_out/groups, kh, kw), as PyTorch; ``channels_last`` takes x (N, H, W, C_in) and
a weight (kh, kw, C_out/groups, C_in), Keras's Conv2DTranspose kernel.  In both, the
weight is the forward convolution's weight in that layout.
"""
import numpy as np

from ._validation import as_array, check_data_format, common_float_dtype
from .conv import conv2d, conv2d_grad_bias, conv2d_grad_input, conv2d_grad_weight
from .shapes import normalize_pair

__all__ = ["conv_transpose2d", "conv_transpose2d_backward",
           "conv_transpose2d_grad_input", "conv_transpose2d_grad_weight",
           "conv_transpose2d_grad_bias", "conv_transpose2d_output_shape"]


class _Geometry:
    """The checked sizes of one transposed convolution and the convolution it
    transposes: out_shape (the output in the layout), conv_padding (explicit
    ((top, bottom), (left, right)) of that convolution over the output's first
    conv_hw rows/columns), extra ((rows, columns) below/right of them: zero)."""

    __slots__ = ("x_shape", "w_shape", "out_shape", "conv_hw", "conv_padding", "extra",
                 "stride", "dilation", "groups", "data_format", "last")

    def __init__(self, x_shape, w_shape, stride, padding, output_padding, groups,
                 dilation, data_format):
        check_data_format(data_format)
        self.last = data_format == "channels_last"
        self.stride = normalize_pair(stride, "stride")
        self.dilation = normalize_pair(dilation, "dilation")
        pad = normalize_pair(padding, "padding", minimum=0)
        out_pad = normalize_pair(output_padding, "output_padding", minimum=0)
        if isinstance(groups, (bool, np.bool_)) or not isinstance(groups,
                                                                  (int, np.integer)):
            raise TypeError(f"groups must be a positive int, got {groups!r}")
        if groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        self.groups = int(groups)
        for op, s, d, axis in zip(out_pad, self.stride, self.dilation,
                                  ("height", "width")):
            if op >= s and op >= d:
                raise ValueError(
                    f"output_padding must be smaller than either stride or dilation "
                    f"(as PyTorch), got output_padding={output_padding!r} with "
                    f"stride={stride!r}, dilation={dilation!r} ({axis})")
        if self.last:
            n, h, w, c_in = x_shape
            kh, kw, c_out_g, w_in = w_shape
        else:
            n, c_in, h, w = x_shape
            w_in, c_out_g, kh, kw = w_shape
        if w_in != c_in:
            where = "last" if self.last else "first"
            raise ValueError(f"weight must have C_in = {c_in} (the input's channels) on "
                             f"its {where} axis, got weight shape {tuple(w_shape)} for "
                             f"input shape {tuple(x_shape)} ({data_format})")
        if c_in % self.groups:
            raise ValueError(f"input has {c_in} channels, which groups={groups} does not "
                             f"divide")
        if min(kh, kw, c_out_g) < 1:
            raise ValueError(f"weight must have a kernel of at least 1x1 and at least one "
                             f"output channel, got weight shape {tuple(w_shape)}")
        c_out = c_out_g * self.groups
        hw, conv_hw, conv_pad, extra = [], [], [], []
        for n_in, k, s, d, p, op, axis in zip((h, w), (kh, kw), self.stride,
                                              self.dilation, pad, out_pad,
                                              ("height", "width")):
            size = (n_in - 1) * s - 2 * p + d * (k - 1) + op + 1
            if size < 1:
                raise ValueError(
                    f"padding={padding!r} leaves no output {axis}: (H - 1) * stride - "
                    f"2 * padding + dilation * (k - 1) + output_padding + 1 = {size} for "
                    f"input {axis} {n_in}, kernel {k}")
            hw.append(size)
            below = p - op
            conv_pad.append((p, max(below, 0)))
            extra.append(max(-below, 0))
            conv_hw.append(size - max(-below, 0))
        self.x_shape, self.w_shape = tuple(x_shape), tuple(w_shape)
        self.out_shape = ((n, hw[0], hw[1], c_out) if self.last
                          else (n, c_out, hw[0], hw[1]))
        self.conv_hw, self.conv_padding, self.extra = tuple(conv_hw), tuple(conv_pad), \
            tuple(extra)
        self.data_format = data_format

    def conv_args(self):
        """The arguments of the convolution this one transposes."""
        return dict(stride=self.stride, padding=self.conv_padding,
                    dilation=self.dilation, groups=self.groups,
                    data_format=self.data_format)

    def conv_x_shape(self):
        """The shape of that convolution's input: the output without the extra rows."""
        n, c = self.out_shape[0], self.out_shape[-1 if self.last else 1]
        h, w = self.conv_hw
        return (n, h, w, c) if self.last else (n, c, h, w)

    def crop(self, grad_y):
        """grad_y without the extra rows and columns (a view)."""
        if not any(self.extra):
            return grad_y
        h, w = self.conv_hw
        return grad_y[:, :h, :w, :] if self.last else grad_y[:, :, :h, :w]

    def grow(self, y):
        """y with the extra rows and columns added (zeros)."""
        if not any(self.extra):
            return y
        out = np.zeros(self.out_shape, y.dtype)
        h, w = self.conv_hw
        if self.last:
            out[:, :h, :w, :] = y
        else:
            out[:, :, :h, :w] = y
        return out


def _arrays(names_values, ndims):
    raw = {}
    for name, value in names_values.items():
        if value is None:
            raw[name] = None
            continue
        arr = as_array(value, name)
        if arr.ndim != ndims[name]:
            raise ValueError(f"{name} must be a {ndims[name]}-D array, got an array of "
                             f"shape {arr.shape}")
        raw[name] = arr
    dtype = common_float_dtype(raw)
    return dtype, {k: (None if v is None else np.ascontiguousarray(v, dtype=dtype))
                   for k, v in raw.items()}


def _shape4(shape, name):
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of 4 ints, got {shape!r}") from None
    if len(out) != 4:
        raise ValueError(f"{name} must have 4 entries, got {shape!r}")
    return out


def conv_transpose2d_output_shape(input_shape, weight_shape, stride=1, padding=0,
                                  output_padding=0, groups=1, dilation=1,
                                  data_format="channels_first"):
    """Shape of conv_transpose2d's output for these argument shapes."""
    return _Geometry(_shape4(input_shape, "input_shape"),
                     _shape4(weight_shape, "weight_shape"), stride, padding,
                     output_padding, groups, dilation, data_format).out_shape


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1, data_format="channels_first"):
    """Transposed convolution, as ``torch.nn.functional.conv_transpose2d``.

    input: (N, C_in, H, W) (channels_first) or (N, H, W, C_in) (channels_last).
    weight: (C_in, C_out/groups, kh, kw) or (kh, kw, C_out/groups, C_in).
    bias: (C_out,) or None.  stride, padding, output_padding, dilation: an int or a
    pair; padding >= 0; output_padding smaller than stride or dilation.
    Returns the output in the layout and dtype of input.
    """
    dtype, a = _arrays({"input": input, "weight": weight, "bias": bias},
                       {"input": 4, "weight": 4, "bias": 1})
    g = _Geometry(a["input"].shape, a["weight"].shape, stride, padding, output_padding,
                  groups, dilation, data_format)
    c_out = g.out_shape[-1 if g.last else 1]
    if a["bias"] is not None and a["bias"].shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},) to match C_out, got "
                         f"{a['bias'].shape}")
    y = g.grow(conv2d_grad_input(a["input"], a["weight"], g.conv_x_shape(),
                                 **g.conv_args()))
    if a["bias"] is not None:
        y += a["bias"] if g.last else a["bias"][:, None, None]
    return y


def _grad_geometry(grad_output, input_shape, weight_shape, stride, padding,
                   output_padding, groups, dilation, data_format):
    g = _Geometry(input_shape, weight_shape, stride, padding, output_padding, groups,
                  dilation, data_format)
    if grad_output.shape != g.out_shape:
        raise ValueError(f"grad_output must have the output shape {g.out_shape} of this "
                         f"transposed convolution, got {grad_output.shape}")
    return g


def conv_transpose2d_grad_input(grad_output, weight, input_shape, stride=1, padding=0,
                                output_padding=0, groups=1, dilation=1,
                                data_format="channels_first"):
    """Gradient of conv_transpose2d with respect to its input: the forward of the
    convolution it transposes, on grad_output."""
    dtype, a = _arrays({"grad_output": grad_output, "weight": weight},
                       {"grad_output": 4, "weight": 4})
    g = _grad_geometry(a["grad_output"], _shape4(input_shape, "input_shape"),
                       a["weight"].shape, stride, padding, output_padding, groups,
                       dilation, data_format)
    return conv2d(g.crop(a["grad_output"]), a["weight"], None, **g.conv_args())


def conv_transpose2d_grad_weight(grad_output, input, weight_shape, stride=1, padding=0,
                                 output_padding=0, groups=1, dilation=1,
                                 data_format="channels_first"):
    """Gradient of conv_transpose2d with respect to its weight (in the weight's
    layout): the weight gradient of the convolution it transposes, whose input is
    grad_output and whose output gradient is input."""
    dtype, a = _arrays({"grad_output": grad_output, "input": input},
                       {"grad_output": 4, "input": 4})
    g = _grad_geometry(a["grad_output"], a["input"].shape,
                       _shape4(weight_shape, "weight_shape"), stride, padding,
                       output_padding, groups, dilation, data_format)
    return conv2d_grad_weight(a["input"], g.crop(a["grad_output"]), g.w_shape,
                              **g.conv_args())


def conv_transpose2d_grad_bias(grad_output, data_format="channels_first"):
    """Gradient of conv_transpose2d with respect to its bias: grad_output summed over
    every axis but the channels."""
    return conv2d_grad_bias(grad_output, data_format=data_format)


def conv_transpose2d_backward(grad_output, input, weight, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1,
                              data_format="channels_first", has_bias=True):
    """All gradients of conv_transpose2d: (grad_input, grad_weight, grad_bias or
    None when not has_bias)."""
    dtype, a = _arrays({"grad_output": grad_output, "input": input, "weight": weight},
                       {"grad_output": 4, "input": 4, "weight": 4})
    g = _grad_geometry(a["grad_output"], a["input"].shape, a["weight"].shape, stride,
                       padding, output_padding, groups, dilation, data_format)
    gy = g.crop(a["grad_output"])
    gx = conv2d(gy, a["weight"], None, **g.conv_args())
    gw = conv2d_grad_weight(a["input"], gy, g.w_shape, **g.conv_args())
    gb = (conv2d_grad_bias(a["grad_output"], data_format=data_format) if has_bias
          else None)
    return gx, gw, gb
