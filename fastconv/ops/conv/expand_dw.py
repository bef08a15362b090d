"""A 1x1 convolution and the depthwise convolution of its output in one pass
(channels_last, inference): MobileNet's expansion or pointwise layer and the depthwise
layer after it, each with its batch normalization folded in and its ReLU or ReLU6
(fastconv/fusion.py, the "expand_depthwise" patterns; kernels in
src/conv/drivers/expand_dw.h).

The expanded tensor is the widest of an inverted residual block; written out, it goes
to memory and the depthwise layer reads it back.  The fused pass computes, per band of
the depthwise layer's output rows, the expanded rows they read into a per-thread
buffer in cache, so only x and y cross memory.  The same pixel-row and depthwise
kernels compute the same sums in the same order: the bits are those of the two
convolutions run one after the other on those kernels.

Where it runs (``runs``): the expanded tensor of the batch is larger than the cores'
L2 caches (``MIN_BYTES``; smaller, it stays in cache between the two layers anyway,
and the two layers split the batch's pixels finer than the bands do) and an image has
pixels enough for the pixel-row tiles (``MIN_TILES`` per image: a 4x4 map fills 1.3
tiles of 12, where the unfused 1x1 runs the batch's pixels as one long row).
"""
from ... import _arena, _ext
from .algorithms.common import finite, pixel_tile, weight_oihw
from .algorithms.depthwise import packed_weights as _dw_packed
from .algorithms.pixel import pixel_weights, rows_refusal

__all__ = ["runs", "forward", "MIN_BYTES", "MIN_TILES"]

#: the least size of the batch's expanded tensor (bytes) that the fused pass takes
MIN_BYTES = 2 << 20
#: the least pixel-row tiles per image of the expansion
MIN_TILES = 4


def runs(ge, gd, dtype):
    """Whether the fused pass takes the expansion ge (a channels_last 1x1 geometry) and
    the depthwise gd of its output."""
    mr = pixel_tile(dtype)[0]
    return (rows_refusal(ge, dtype) is None and ge.h * ge.w >= MIN_TILES * mr and
            ge.n * ge.h * ge.w * ge.c_out * dtype.itemsize >= MIN_BYTES)


def forward(ge, gd, x, ke, be, acte, pe, kd, bd, actd, pd, dtype):
    """y of the fused pass, or None where it does not run (see ``runs``; a weight that
    is not finite: the depthwise kernels skip the taps over the padding).  ke, kd: the
    folded kernels in the layers' layout, be, bd their biases; acte, actd: 0, 1 (ReLU)
    or RELU6; pe, pd: the layers' Prepared (ops/conv/prepared.py), which keep the
    packed weights and their finiteness."""
    if not runs(ge, gd, dtype):
        return None
    we, wd = weight_oihw(ge, ke), weight_oihw(gd, kd)
    if not (pe.get("finite", lambda: finite(we)) and
            pd.get("finite", lambda: finite(wd))):
        return None
    isa = _ext.conv2d.isa()
    nr = pixel_tile(dtype)[1]
    packed_e = pe.get(("expand_dw", isa), lambda: pixel_weights(ge, we, nr))
    packed_d = pd.get(("expand_dw", isa), lambda: _dw_packed(gd, wd))
    y = _arena.empty(gd.y_shape, dtype)
    _ext.conv2d.edw_forward(x.reshape(-1), packed_e, be, packed_d, bd, y.reshape(-1),
                            ge.c, gd.c, int(acte), int(actd))
    return y
