"""Depthwise convolutions (groups == C_in, any multiplier M = C_out / C_in): each
output channel reads one input channel, so there is no reduction over channels to feed
a matrix product.  The kernels (src/conv/drivers/depthwise.h) vectorise over the
channels in channels_last and over the output row in channels_first, for every pass,
stride, dilation and padding, and split the work over output rows or planes (and
channel blocks for the weight gradient), so a single image uses every core.

A channels_first call of small planes runs on the channels_last kernels through
transposed copies of its arrays (``VIA_LAST_PLANE`` output pixels at most, more for
strided input gradients and weight gradients; the copies are a compiled tiled transpose,
src/transpose.h): the channels_first kernels pay per plane (a padded copy, rows of a few
values), which up to 16x16 planes cost more than both transposes, their strided input
gradient scatters rows, and their weight gradient sums each row's products across the
vector (docs/design/algorithms.md, "Depthwise")."""
import dataclasses

import numpy as np

from .... import _ext
from ...._layout import to_first, to_last
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .common import aligned_zeros, images_per_partial, sum_partials

__all__ = ["Depthwise", "packed_weights"]


def _last(g):
    """Whether the kernels address g channels_last (1x1 images in and out are the same
    memory in both layouts: ConvGeometry.c runs them channels_last)."""
    return g.channels_last or g.h == g.w == g.oh == g.ow == 1


#: channels_first forwards and input gradients of planes of at most this many output
#: pixels run on the channels_last kernels (through transposed copies)
VIA_LAST_PLANE = 256
#: and strided input gradients (the channels_first one scatters rows into a padded,
#: phase-split plane) and weight gradients (its channels_first kernel sums each row's
#: products across the vector), whose channels_first kernels are the slower
VIA_LAST_STRIDED_GRAD_INPUT_PLANE = 784
VIA_LAST_GRAD_WEIGHT_PLANE = 784


def _via_last(g, pass_):
    """The channels_last twin of the channels_first g where its pass runs on the
    channels_last kernels (small planes), else None."""
    if _last(g):
        return None
    if pass_ == GRAD_WEIGHT:
        most = VIA_LAST_GRAD_WEIGHT_PLANE
    elif pass_ == GRAD_INPUT and (g.sy > 1 or g.sx > 1):
        most = VIA_LAST_STRIDED_GRAD_INPUT_PLANE
    else:
        most = VIA_LAST_PLANE
    if g.oh * g.ow > most:
        return None
    return dataclasses.replace(g, channels_last=True)


def packed_weights(g, w):
    """w (C_out, 1, kh, kw) as the kernels read it: (kh*kw, C_out) for channels_last,
    (C_out, kh*kw) for channels_first."""
    wk = w.reshape(g.c_out, g.kh * g.kw)
    return np.ascontiguousarray(wk.T if _last(g) else wk).reshape(-1)


class Depthwise(Algorithm):
    """groups == C_in > 1: per-channel kernels, any stride, dilation and multiplier.
    The stride-1 input gradient with one output channel per input channel runs as the
    forward of grad_y through the flipped kernel (a gather); the others gather taps
    (channels_last) or scatter rows into a padded copy (channels_first)."""
    name = "depthwise"
    relu6 = True   # (dw_forward: relu=2)
    passes = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
    shortcuts = (FORWARD, GRAD_INPUT)   # (taps over the padding are skipped)

    def _supports(self, q):
        g = q.g
        if g.groups == 1 or g.groups != g.c_in:
            return (f"groups {g.groups} with C_in {g.c_in} (depthwise: groups == C_in "
                    "> 1)")
        return None

    def plan(self, q):
        g = q.g
        last = _via_last(g, q.pass_)
        k = last or g     # (the geometry the kernels address)
        run_g = None
        if q.pass_ == GRAD_INPUT and (g.sy, g.sx) == (1, 1) and g.c_out == g.c_in:
            run_g = k.mirrored()
        n_per = images_per_partial(k, np.dtype(q.dtype).itemsize, q.tuning)
        return Plan(q.pass_, self, g, q.dtype, run_g=run_g, n_per=n_per, isa=q.isa,
                    last=last)

    def details(self, plan):
        g = plan.g
        out = [f"multiplier {g.c_out // g.c_in}"]
        if plan.pass_ == GRAD_INPUT:
            out.append("the forward of grad_y through the flipped kernel"
                       if plan.run_g is not None else "gathered taps" if g.channels_last
                       else "rows scattered into a padded plane")
        elif plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.n_per} images")
        if plan.last is not None:
            out.append("on the channels_last kernels (transposed copies)")
        return out

    def pack(self, plan, w):
        return packed_weights(plan.last or plan.g, w)

    def forward(self, plan, x, w, bias, y, relu, tanh, packed=None):
        g = plan.last or plan.g
        wp = self.pack(plan, w) if packed is None else packed
        xk = x if plan.last is None else to_last(x)
        yk = y if plan.last is None else np.empty(g.y_shape, y.dtype)
        # (relu: True, or RELU6, applied as the other kernels' output pass applies it)
        _ext.conv2d.dw_forward(xk.reshape(-1), wp, bias, yk.reshape(-1), g.c, int(relu))
        if plan.last is not None:
            to_first(yk, y)
        return False

    def grad_input(self, plan, grad_y, w, out):
        g = plan.last or plan.g
        gy = grad_y if plan.last is None else to_last(grad_y)
        gx = out if plan.last is None else np.empty(g.x_shape, out.dtype)
        if plan.run_g is not None:
            d = plan.run_g
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
            _ext.conv2d.dw_forward(gy.reshape(-1), packed_weights(d, wf), None,
                                   gx.reshape(-1), d.c)
        else:
            _ext.conv2d.dw_grad_input(gy.reshape(-1), packed_weights(g, w),
                                      gx.reshape(-1), g.c)
        if plan.last is not None:
            to_first(gx, out)
        return out

    def grad_weight(self, plan, grad_y, x, bsum):
        if plan.last is not None:
            grad_y, x = to_last(grad_y), to_last(x)
        g, first = plan.last or plan.g, not plan.g.channels_last
        groups = -(-g.n // plan.n_per)
        khw = g.kh * g.kw
        # (on a cache line: the threads' channel blocks of a tap share no line)
        part = aligned_zeros(groups * khw * g.c_out, plan.dtype).reshape(
            (groups, khw, g.c_out) if _last(g) else (groups, g.c_out, khw))
        _ext.conv2d.dw_grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                   g.c, plan.n_per)
        total = sum_partials(part)
        # (returned in the call's layout: (kh, kw, 1, C_out) or (C_out, 1, kh, kw))
        if _last(g):   # (kh*kw, C_out)
            gw = total.reshape(g.kh, g.kw, 1, g.c_out)
            return np.ascontiguousarray(gw.transpose(3, 2, 0, 1)) if first else gw
        gw = total.reshape(g.c_out, 1, g.kh, g.kw)
        return gw if first else np.ascontiguousarray(gw.transpose(2, 3, 1, 0))
