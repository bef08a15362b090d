"""Depthwise convolutions (groups == C_in, any multiplier M = C_out / C_in): each
output channel reads one input channel, so there is no reduction over channels to feed
a matrix product.  The kernels (src/conv/drivers/depthwise.h) vectorise over the
channels in channels_last and over the output row in channels_first, for every pass,
stride, dilation and padding, and split the work over output rows or planes (and
channel blocks for the weight gradient), so a single image uses every core."""
import numpy as np

from .... import _ext
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .common import aligned_zeros, images_per_partial, sum_partials

__all__ = ["Depthwise", "packed_weights"]


def _last(g):
    """Whether the kernels address g channels_last (1x1 images in and out are the same
    memory in both layouts: ConvGeometry.c runs them channels_last)."""
    return g.channels_last or g.h == g.w == g.oh == g.ow == 1


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
        run_g = None
        if q.pass_ == GRAD_INPUT and (g.sy, g.sx) == (1, 1) and g.c_out == g.c_in:
            run_g = g.mirrored()
        n_per = images_per_partial(g, np.dtype(q.dtype).itemsize, q.tuning)
        return Plan(q.pass_, self, g, q.dtype, run_g=run_g, n_per=n_per, isa=q.isa)

    def details(self, plan):
        g = plan.g
        out = [f"multiplier {g.c_out // g.c_in}"]
        if plan.pass_ == GRAD_INPUT:
            out.append("the forward of grad_y through the flipped kernel"
                       if plan.run_g is not None else "gathered taps" if g.channels_last
                       else "rows scattered into a padded plane")
        elif plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.n_per} images")
        return out

    def pack(self, plan, w):
        return packed_weights(plan.g, w)

    def forward(self, plan, x, w, bias, y, relu, tanh, packed=None):
        g = plan.g
        wp = self.pack(plan, w) if packed is None else packed
        # (relu: True, or RELU6, applied as the other kernels' output pass applies it)
        _ext.conv2d.dw_forward(x.reshape(-1), wp, bias, y.reshape(-1), g.c, int(relu))
        return False

    def grad_input(self, plan, grad_y, w, out):
        g = plan.g
        if plan.run_g is not None:
            d = plan.run_g
            wf = np.ascontiguousarray(w[:, :, ::-1, ::-1])
            _ext.conv2d.dw_forward(grad_y.reshape(-1), packed_weights(d, wf), None,
                                   out.reshape(-1), d.c)
        else:
            _ext.conv2d.dw_grad_input(grad_y.reshape(-1), packed_weights(g, w),
                                      out.reshape(-1), g.c)
        return out

    def grad_weight(self, plan, grad_y, x, bsum):
        g = plan.g
        groups = -(-g.n // plan.n_per)
        khw = g.kh * g.kw
        # (on a cache line: the threads' channel blocks of a tap share no line)
        part = aligned_zeros(groups * khw * g.c_out, plan.dtype).reshape(
            (groups, khw, g.c_out) if _last(g) else (groups, g.c_out, khw))
        _ext.conv2d.dw_grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                   g.c, plan.n_per)
        total = sum_partials(part)
        if _last(g):   # (kh*kw, C_out)
            gw = total.reshape(g.kh, g.kw, 1, g.c_out)
            return gw if g.channels_last else np.ascontiguousarray(gw.transpose(3, 2, 0, 1))
        gw = total.reshape(g.c_out, 1, g.kh, g.kw)
        return np.ascontiguousarray(gw.transpose(2, 3, 1, 0)) if g.channels_last else gw
