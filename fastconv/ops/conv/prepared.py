"""Weights prepared for the kernels, kept between inference calls.

A forward pass of the conv engine rearranges its weight before the kernels read it:
Winograd transforms it (U = G g G^T), the pixel-row, narrow, wide and depthwise kernels
pack it into their panels, and a convolution followed by a batch normalization in
inference first folds the normalization into it.  Over a training step the weights
change, so this is done on every call; over predict() or evaluate() they do not, and a
small batch spends most of its time here (ResNet-20 at batch 1: most of a call).

A layer keeps a Prepared per weight set.  ``of(*arrays)`` compares the arrays the
values are computed from -- the layer's own weights -- with their signatures taken when
the values were made (format, shape and a keyed 64-bit digest of the bytes,
src/digest.h), and forgets every value when one differs: an optimizer's update,
set_weights, or a user writing into ``layer.kernel`` in place are all seen, at the cost
of reading the weights once per call.  (A kept copy compared with memcmp read twice the
bytes and held a second copy of every weight.  The digest's key is drawn at random per
process, so a change of the bytes goes unseen with a chance near 2^-64.)
``get(key, make)`` returns the value made for key since then, or makes it.  The values
are what the kernels would have made on the call (the same bits): only the time
differs.

Memory: the prepared forms (a Winograd F(4x4) kernel holds 4x the weights, F(5x5)
5.4x), for as long as the layer lives.
"""
import numpy as np

from ... import _ext

__all__ = ["Prepared"]

_MISSING = object()


def _kept(a):
    """What of() compares a with later: None, or a's signature (format, shape,
    digest of its bytes in C order)."""
    return None if a is None else _ext.conv2d.signature(np.asarray(a, order="C"))


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
        now = tuple(_kept(a) for a in arrays)   # (non-contiguous or not arrays)
        if now != kept:
            self._kept, self._values = now, {}
        return self

    def get(self, key, make):
        """The value kept under key, else make() (kept)."""
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            value = self._values[key] = make()
        return value

    def __len__(self):
        return len(self._values)
