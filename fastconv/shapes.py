"""Shape arithmetic shared by convolution and pooling.

One module decides what a stride, dilation or padding argument means and how big an
output is, so that conv2d and the pooling ops can never disagree.

Padding forms accepted everywhere:

- ``"valid"``: no padding;
- ``"same"``: TensorFlow/Keras's rule for any stride: output = ceil(n / stride); the total
  padding is ``max((out - 1) * stride + k_eff - n, 0)`` and, when it is odd, the extra
  row/column goes to the bottom/right;
- an int ``p`` (both sides of both axes), a pair ``(ph, pw)`` (symmetric per axis), or
  ``((top, bottom), (left, right))``.
"""
import numbers

import numpy as np

__all__ = ["normalize_pair", "normalize_padding", "resolve_padding", "output_size",
           "conv_output_shape", "memoised", "layout_shape"]

_NOT_PLAIN = object()
_INT = frozenset([int])
_INT_OR_TUPLE = frozenset([int, tuple])


def _plain(value):
    """value itself when it is None, an int, a str or a tuple of ints (or of tuples of
    ints, as explicit padding is): a cache key that cannot confuse True with 1 or 1.0
    with 1, which the checks treat differently.  _NOT_PLAIN for anything else."""
    t = type(value)
    if value is None or t is int or t is str:
        return value
    if t is tuple:
        types = set(map(type, value))
        if types <= _INT or (types <= _INT_OR_TUPLE and all(
                set(map(type, v)) <= _INT for v in value if type(v) is tuple)):
            return value
    return _NOT_PLAIN


def memoised(check, size=512):
    """check(*args) -> an immutable geometry, remembered for arguments that are all
    plain (see _plain); others, and calls that raise, are not cached.  The cache is
    emptied when it holds ``size`` entries."""
    cache = {}

    def cached(*args):
        key = tuple(_plain(a) for a in args)
        if any(k is _NOT_PLAIN for k in key):
            return check(*args)
        g = cache.get(key)
        if g is None:
            g = check(*args)
            if len(cache) >= size:
                cache.clear()
            cache[key] = g
        return g
    cached.__doc__ = check.__doc__
    cached.__wrapped__ = check
    return cached


def _as_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(value)


def normalize_pair(value, name, minimum=1):
    """Return ``value`` (int or pair of ints) as a tuple ``(a, b)`` of ints >= minimum."""
    if isinstance(value, (tuple, list, np.ndarray)):
        items = list(value)
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = tuple(_as_int(v, name) for v in items)
    else:
        v = _as_int(value, name)
        pair = (v, v)
    if min(pair) < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return pair


def normalize_padding(padding, name="padding"):
    """Return "same", "valid", or explicit ((top, bottom), (left, right)) ints >= 0."""
    if isinstance(padding, str):
        p = padding.lower()
        if p not in ("same", "valid"):
            raise ValueError(f"{name} must be 'same', 'valid', an int or pairs of ints, "
                             f"got {padding!r}")
        return p
    nested = isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list))
                                                         for p in padding)
    if nested and not (len(padding) == 2 and all(isinstance(p, (tuple, list))
                                                  for p in padding)):
        raise ValueError(f"{name} must be an int, (ph, pw) or ((top, bottom), "
                         f"(left, right)), got {padding!r}")
    try:
        if nested:
            return tuple(normalize_pair(p, name, minimum=0) for p in padding)
        ph, pw = normalize_pair(padding, name, minimum=0)
    except ValueError:
        raise ValueError(f"{name} must be non-negative: an int, (ph, pw) or "
                         f"((top, bottom), (left, right)), got {padding!r}") from None
    return ((ph, ph), (pw, pw))


def _same_pads(n, k_eff, stride):
    out = -(-n // stride)
    total = max((out - 1) * stride + k_eff - n, 0)
    return (total // 2, total - total // 2)


def resolve_padding(padding, in_hw, k_eff_hw, stride_hw):
    """Turn a normalized padding into explicit ((top, bottom), (left, right))."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple(_same_pads(n, k, s) for n, k, s in zip(in_hw, k_eff_hw, stride_hw))
    return padding


def output_size(n, k_eff, stride, pad_before, pad_after):
    """Output length along one axis; < 1 means the window does not fit."""
    return (n + pad_before + pad_after - k_eff) // stride + 1


def conv_output_shape(in_hw, kernel_hw, stride_hw, pads, dilation_hw=(1, 1),
                      what="kernel", name="x"):
    """Output (oh, ow) of a sliding window, with a clear error when it does not fit."""
    out = []
    for axis, n, k, s, (pb, pa), d in zip(("height", "width"), in_hw, kernel_hw,
                                          stride_hw, pads, dilation_hw):
        k_eff = (k - 1) * d + 1
        if k_eff > n + pb + pa:
            raise ValueError(
                f"{what} {axis} {k} (dilated to {k_eff}) is larger than the padded input "
                f"{axis} {n + pb + pa} of {name} (size {n}, padding {pb}+{pa})")
        out.append(output_size(n, k_eff, s, pb, pa))
    return tuple(out)


def layout_shape(n, c, h, w, channels_last):
    """The 4-D shape of n images of c channels and h x w pixels in the layout: the
    x_shape and y_shape of every windowed op's geometry (conv, pooling)."""
    return (n, h, w, c) if channels_last else (n, c, h, w)
