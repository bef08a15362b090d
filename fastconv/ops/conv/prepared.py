"""Weights prepared for the kernels, kept between inference calls.

A forward pass of the conv engine rearranges its weight before the kernels read it:
Winograd transforms it (U = G g G^T), the pixel-row, narrow, wide and depthwise kernels
pack it into their panels, and a convolution followed by a batch normalization in
inference first folds the normalization into it.  Over a training step the weights
change, so this is done on every call; over predict() or evaluate() they do not, and a
small batch spends most of its time here (ResNet-20 at batch 1: most of a call).

A layer keeps a Prepared per weight set.  ``of(*arrays)`` compares the arrays the
values are computed from -- the layer's own weights -- bit for bit with a private copy
taken when the values were made, and forgets every value when one differs: an
optimizer's update, set_weights, or a user writing into ``layer.kernel`` in place are
all seen, at the cost of reading the weights once per call.  ``get(key, make)``
returns the value made for key since then, or makes it.  The values are what the
kernels would have made on the call (the same bits): only the time differs.

Memory: the copy of the source weights plus the prepared forms (a Winograd F(4x4)
kernel holds 4x the weights, F(5x5) 5.4x), for as long as the layer lives.
"""
import numpy as np

from ... import _ext

__all__ = ["Prepared"]

_MISSING = object()


def _kept(a):
    """What _same compares a with later: None, or a copy of a."""
    return None if a is None else np.array(a, order="C", copy=True)


def _same(kept, a):
    """Whether array a (or None) holds the bits of the kept copy (or None)."""
    if kept is None or a is None:
        return kept is None and a is None
    a = np.asarray(a)
    if kept.shape != a.shape or kept.dtype != a.dtype:
        return False
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return _ext.conv2d.same_bytes(kept, a)   # (a memcmp, no copy)


class Prepared:
    """Values made from some arrays, kept while the arrays keep their bits."""

    __slots__ = ("_kept", "_values")

    def __init__(self):
        self._kept, self._values = None, {}

    def of(self, *arrays):
        """self, its values forgotten unless arrays are bit for bit the ones they were
        made from (arrays: ndarrays or None, in a fixed order)."""
        kept = self._kept
        if kept is not None and _ext.conv2d.same_all(kept, arrays):
            return self   # (the common case, checked in one compiled call)
        if (kept is None or len(kept) != len(arrays) or
                not all(_same(k, a) for k, a in zip(kept, arrays))):
            self._kept = tuple(_kept(a) for a in arrays)
            self._values = {}
        return self

    def get(self, key, make):
        """The value kept under key, else make() (kept)."""
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            value = self._values[key] = make()
        return value

    def __len__(self):
        return len(self._values)
