"""2-D cross-correlation ("conv2d" of deep learning) and its gradients on ndarrays.

Every call goes validate -> plan -> run: the arguments are checked once into a
ConvGeometry (geometry.py, memoised), plan.select picks the algorithm of each pass
from its ordered registry (algorithms/) and caches the plan per (geometry, dtype,
pass), and run.py runs it on the compiled kernels (src/_conv2d.pyx), which only OpenMP
threads run, over work items that do not depend on the thread count: results are
identical for any number of threads.  ``explain_conv`` says which algorithm a call gets
and why not the others; ``force_conv_algorithm`` picks one; FASTCONV_VERBOSE=1 prints
what ran.

Layouts: ``channels_first`` takes x (N, C, H, W) and weight (C_out, C_in/groups, kh, kw)
as PyTorch does; ``channels_last`` takes x (N, H, W, C) and weight
(kh, kw, C_in/groups, C_out) as Keras does.  Results come back in the layout and dtype
the arguments came in (see fastconv/_validation.py for the dtype policy).
"""
import numpy as np

from ..._validation import (_FLOATS, as_array, check_data_format, check_ndim,
                            common_float_dtype)
from . import algorithms  # (importing it fills the registries)
from . import plan as _plan
from .geometry import ConvGeometry, geometry
from .run import (forward, forward_avg_pooled, forward_max_pooled, grad_input,
                  grad_weight, grad_weight_avg_tanh, images_per_partial_of)
from .algorithms.common import grad_bias as _grad_bias

__all__ = ["conv2d", "conv2d_backward", "conv2d_grad_input", "conv2d_grad_weight",
           "conv2d_grad_bias", "conv2d_output_shape", "explain_conv",
           "force_conv_algorithm", "conv_algorithms", "algorithms", "forward_avg_pooled",
           "forward_max_pooled", "grad_weight_avg_tanh"]

force_conv_algorithm = _plan.force


def conv_algorithms(pass_=None):
    """The names of the conv algorithms in their order of preference (of one pass:
    "forward", "grad_input" or "grad_weight"; of all when None)."""
    return _plan.algorithm_names(pass_)


def conv2d_output_shape(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                        data_format="channels_first"):
    """Shape of conv2d's output for these argument shapes (no arrays needed)."""
    return geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation,
                    groups, data_format).y_shape


def explain_conv(x_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                 data_format="channels_first", dtype="float32", pass_="forward",
                 weight_finite=True):
    """Which algorithm runs this convolution's pass ("forward", "grad_input" or
    "grad_weight") and why every other one does not: an Explanation (``.algorithm``,
    ``.plan``, ``.refused`` {name: reason}; print() it for a report).  Shapes are in
    data_format's layout; weight_finite=False tells it the weight holds NaN or inf."""
    g = geometry(tuple(x_shape), tuple(weight_shape), stride, padding, dilation, groups,
                 data_format)
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    finite = bool(weight_finite) or pass_ == _plan.GRAD_WEIGHT
    return _plan.explain(g, dt, pass_, finite)


def _ready_dtype(arrays, ndims):
    """The common dtype when every array is already a C-contiguous ndarray of one of
    float32/float64 and of its rank: what _inputs would return unchanged.  Else None."""
    dtype = None
    for name, arr in arrays.items():
        if arr is None:
            continue
        if type(arr) is not np.ndarray or not arr.flags.c_contiguous or (
                name in ndims and arr.ndim != ndims[name][0]):
            return None
        if dtype is None:
            dtype = arr.dtype
        elif arr.dtype != dtype:
            return None
    return dtype if dtype in _FLOATS else None


def _inputs(arrays, ndims):
    """Validate ranks and dtypes of ``arrays`` (name -> value); return them prepared."""
    dtype = _ready_dtype(arrays, ndims)
    if dtype is not None:  # nothing to convert (a layer's every call)
        return dtype, arrays
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
    return conv2d_act(x, weight, bias, stride, padding, dilation, groups, data_format)


def conv2d_act(x, weight, bias, stride, padding, dilation, groups, data_format,
               relu=False, tanh=False, winograd_tile=None):
    """conv2d, then ReLU (relu) or tanh (tanh) in the output pass where the kernel has
    one (the Conv2D layer's activation="relu"/"tanh" forward: one pass over y instead
    of two): exactly activations.relu / activations.tanh of conv2d's result.
    winograd_tile: the Winograd tile to run on, where the plan is Winograd."""
    check_data_format(data_format)
    dtype, a = _inputs({"x": x, "weight": weight, "bias": bias},
                       {"x": (4, _X_DESC[data_format]), "weight": (4, None),
                        "bias": (1, "a 1-D array (C_out,)")})
    g = geometry(a["x"].shape, a["weight"].shape, stride, padding, dilation, groups,
                 data_format)
    if a["bias"] is not None and a["bias"].shape != (g.c_out,):
        raise ValueError(f"bias must have shape ({g.c_out},) to match C_out, got "
                         f"{a['bias'].shape}")
    return forward(g, a["x"], a["weight"], a["bias"], dtype, relu, tanh, winograd_tile)


def backward(g, grad_y, x, weight, dtype, need_input, need_weight, with_bias=False):
    """(grad_x or None, grad_weight or None, grad_bias or None) of checked arrays."""
    grad_x = gw = gb = None
    if need_input:
        grad_x = (np.zeros(g.x_shape, dtype) if grad_y.size == 0 or g.x_empty
                  else grad_input(g, grad_y, weight, dtype))
    if need_weight:
        gw, gb = grad_weight(g, grad_y, x, dtype, with_bias)
    return grad_x, gw, gb


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
    g = geometry(xs, ws, stride, padding, dilation, groups, data_format)
    if a["grad_y"].shape != g.y_shape:
        raise ValueError(f"grad_y must have the output shape {g.y_shape} of this "
                         f"convolution, got {a['grad_y'].shape}")
    return g, dtype, a


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    data_format="channels_first", has_bias=True):
    """All gradients of :func:`conv2d`: returns (grad_x, grad_weight, grad_bias).

    ``grad_bias`` is None when ``has_bias`` is False; it is summed in float64 alongside
    the weight gradient.
    """
    g, dtype, a = _backward_inputs(grad_y, x, weight, stride, padding, dilation, groups,
                                   data_format)
    return backward(g, a["grad_y"], a["x"], a["weight"], dtype, True, True,
                    with_bias=bool(has_bias))


def conv2d_grad_input(grad_y, weight, x_shape, stride=1, padding=0, dilation=1, groups=1,
                      data_format="channels_first"):
    """Gradient of conv2d with respect to x (a transposed convolution of grad_y)."""
    g, dtype, a = _backward_inputs(grad_y, None, weight, stride, padding, dilation, groups,
                                   data_format, x_shape=x_shape)
    return backward(g, a["grad_y"], None, a["weight"], dtype, True, False)[0]


def conv2d_grad_weight(grad_y, x, weight_shape, stride=1, padding=0, dilation=1, groups=1,
                       data_format="channels_first"):
    """Gradient of conv2d with respect to the weight, in the weight's layout."""
    g, dtype, a = _backward_inputs(grad_y, x, None, stride, padding, dilation, groups,
                                   data_format, weight_shape=weight_shape)
    return backward(g, a["grad_y"], a["x"], None, dtype, False, True)[1]


def conv2d_grad_bias(grad_y, data_format="channels_first"):
    """Gradient of conv2d with respect to the bias: grad_y summed over all but C_out."""
    check_data_format(data_format)
    gy = as_array(grad_y, "grad_y")
    check_ndim(gy, "grad_y", 4)
    dtype = common_float_dtype({"grad_y": gy})
    gy = np.ascontiguousarray(gy, dtype=dtype)
    last = data_format == "channels_last"
    n, c_out = gy.shape[0], gy.shape[3 if last else 1]
    oh, ow = gy.shape[1:3] if last else gy.shape[2:]
    if gy.size == 0:
        return np.zeros(c_out, dtype)
    # The same partial sums as conv2d_backward's fused bias gradient (identical result).
    g = ConvGeometry(n, 1, 1, 1, c_out, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, oh, ow, last)
    return _grad_bias(g, gy, dtype, images_per_partial_of(g, dtype))
