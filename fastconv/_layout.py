"""Copies between the channels_first (N, C, H, W) and channels_last (N, H, W, C)
layouts, by the compiled batched transpose (src/transpose.h: tiles of 32, 8x8 AVX2
blocks, both threads), several times NumPy's copy of a transposed view.  The kernels
that are faster in channels_last take channels_first calls through them (the conv
engine's via_last and depthwise, the pooling's general windows)."""
import numpy as np

from . import _arena, _ext

__all__ = ["to_last", "to_first"]


def to_last(a, arena=False):
    """An (N, C, H, W) array as a C-contiguous (N, H, W, C) copy.  A new array, or with
    arena one of the pass's arena: no page faults on every call, but held until the
    next pass (worth it for via_last's copies, not for the depthwise's small planes:
    docs/design/algorithms.md, "channels_first through channels_last")."""
    a = np.ascontiguousarray(a)
    n, c, h, w = a.shape
    out = (_arena.empty if arena else np.empty)((n, h, w, c), a.dtype)
    return _ext.conv2d.batched_transpose(a, out, n, c, h * w)


def to_first(a, out):
    """(N, H, W, C) array a into the (N, C, H, W) out."""
    if not out.flags.c_contiguous:
        np.copyto(out, a.transpose(0, 3, 1, 2))
        return out
    n, c, h, w = out.shape
    _ext.conv2d.batched_transpose(np.ascontiguousarray(a), out, n, h * w, c)
    return out
