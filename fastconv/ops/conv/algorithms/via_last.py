"""channels_first convolutions on the channels_last algorithms, through transposed
copies of their arrays.

Most of the engine's fast kernels are channels_last: Winograd (3x3 stride 1: 4x fewer
multiply-adds), the pixel-row tiles (a window's (kj, c) row contiguous), the BLAS
column products.  In channels_first the same calls ran on the shifted and im2col
kernels, several times slower on 3x3 layers with 16 channels or more (docs/design/
algorithms.md, "channels_first through channels_last").  This algorithm runs such a
call as the convolution of its channels_last twin: x (or grad_y) copied to (N, H, W, C)
by the compiled batched transpose, the twin's own plan run by the drivers (run.py)
with the weight as a transposed view (no copy), and the result copied back to
(N, C, H, W).  The copies are memory passes over the activations; the rule takes the
route where the twin's kernels save more than that:

- a kernel larger than 1x1: the channels_first kernels read a 1x1 layer's rows in
  place, as fast as the channels_last ones, and the copies would be all loss;
- forward and input gradient: at least ``VIA_LAST_MIN_CHANNELS`` channels in and out
  (the channels_last kernels vectorise over the channels; with fewer, a network's
  first layer at stride 1 (3 -> 16) and the stem's input gradient ran slower that way),
  except strided forwards whose twin does not run im2col (a 3-channel stem: the
  channels_first im2col packs every window per call, a pixel-row twin reads them in
  place),
  and a twin that does not read the weight in its own layout (the BLAS products of
  im2col_blas at batch 1 and large weights), unless the forward's weight is kept
  between calls (inference: its copy in that layout kept too; for 512 -> 512 3x3
  weights NumPy's copy took longer than the product);
- the weight gradient takes it at any channel count (its channels_last kernels reduce
  over the pixels, rows of kh kw C_in values).

Workspace: the copies, x and y (forward), grad_y and grad_x (input gradient), x and
grad_y (weight gradient), each the size of the call's array, from the pass's arena.
"""
import dataclasses

import numpy as np

from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan, select
from .common import partials_of

__all__ = ["ViaLast", "VIA_LAST_MIN_CHANNELS", "twin_weight"]

#: the forward and input gradient of a channels_first call take the channels_last
#: kernels with at least this many input and output channels
VIA_LAST_MIN_CHANNELS = 16


def twin_weight(plan, weight, prepared=None):
    """A (C_out, C_in, kh, kw) weight as plan's channels_last twin takes it, (kh, kw,
    C_in, C_out): a transposed view (the twin's algorithms turn it back into the same
    strides, no copy), or a C-contiguous copy where the twin's algorithm reads the
    weight in its layout (the BLAS products, ``on_layout``: a strided view cost them
    a copy and a slower product per call), kept in prepared (inference) if given."""
    view = weight.transpose(2, 3, 1, 0)
    if not getattr(plan.inner.algorithm, "on_layout", False):
        return view
    if prepared is None:
        return np.ascontiguousarray(view)
    return prepared.get("via_last weight", lambda: np.ascontiguousarray(view))


def _twin_plan(q):
    """The plan of q's channels_last twin (the drivers select it again, cached)."""
    twin = dataclasses.replace(q.g, channels_last=True)
    return select(twin, q.dtype, q.pass_, q.finite, q.tile, False, q.packed)


class ViaLast(Algorithm):
    """A channels_first call of one group run as its channels_last twin (the module's
    docstring).  The drivers (run.py) run it: ``relayouts``."""
    name = "via_last"
    passes = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
    relayouts = True

    def _supports(self, q):
        g = q.g
        if g.channels_last:
            return "channels_last (it runs channels_first calls)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        return None

    def declines(self, q):
        g = q.g
        if g.kh * g.kw == 1:
            return ("a 1x1 kernel: the channels_first kernels read its rows in place, "
                    "the copies would cost more than they save")
        if q.pass_ == GRAD_WEIGHT:
            return None
        least = min(g.c_in, g.c_out)
        strided = g.sy > 1 or g.sx > 1
        if least < VIA_LAST_MIN_CHANNELS and not (q.pass_ == FORWARD and strided):
            return (f"{least} channels (under {VIA_LAST_MIN_CHANNELS}: the channels_last "
                    "kernels vectorise over the channels)")
        inner = _twin_plan(q)
        if least < VIA_LAST_MIN_CHANNELS and inner.name == "im2col":
            return (f"{least} channels, and the channels_last twin would run im2col "
                    "too (the copies for nothing)")
        if getattr(inner.algorithm, "on_layout", False) and not q.packed:
            return (f"the channels_last twin runs {inner.name}, which would need the "
                    "weight copied into its layout on every call")
        return None

    def plan(self, q):
        # (n_per: the bias gradient's partial sums, taken on the call's own layout as
        # conv2d_grad_bias takes them)
        inner = _twin_plan(q)
        return Plan(q.pass_, self, q.g, q.dtype, isa=q.isa, n_per=partials_of(q),
                    last=inner.g, inner=inner)

    def details(self, plan):
        return [f"through transposed copies, then {plan.inner.describe()}"]
