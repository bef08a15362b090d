"""The strided input gradient (a transposed convolution) as stride-1 forwards, one per
output phase (docs/design/algorithms.md).

With stride s, input row iy = s * a + r - pad_top (phase r = (iy + pad_top) mod s) takes
grad_y only through the kernel rows ki = r + s * u: grad_x of the phase is the stride-1
correlation of grad_y with those rows, flipped, i.e. a forward with a kernel of
ceil((kh - r) / s) rows.  The same holds for columns, so a stride (sy, sx) input
gradient is sy * sx forwards on grad_y (any forward algorithm: the pixel-row kernels,
Winograd, the BLAS for 1x1 phases), each written to its rows and columns of grad_x.
The scatter reads every window and adds into overlapping rows; the phases gather, so
no output is written twice.  A phase no kernel row reaches (r >= kh, as in a 1x1
stride-2 projection) is zero.
"""
from functools import lru_cache

import numpy as np

from ..geometry import ConvGeometry
from ..plan import GRAD_INPUT, Algorithm, Plan


def _axis(r, k, s, pad, size, out):
    """Phase r of one axis: (taps u, first a, count, padding before, after) of the
    forward on grad_y that gives rows a_first.. of the phase (row s * a + r - pad of
    x); taps 0 when no kernel row reaches the phase."""
    taps = -(-(k - r) // s) if r < k else 0
    first = -(-(pad - r) // s)
    last = (size - 1 + pad - r) // s
    count = last - first + 1
    before = taps - 1 - first
    after = count - out - before + taps - 1
    return taps, first, count, before, after


@lru_cache(maxsize=256)
def phases(g):
    """((ry, rx, y0, x0, phase geometry or None), ...) of g's input gradient: the phase's
    first row and column of x and the stride-1 forward on grad_y that computes it."""
    out = []
    for ry in range(g.sy):
        ty, ay, ny, pt, pb = _axis(ry, g.kh, g.sy, g.pad_top, g.h, g.oh)
        for rx in range(g.sx):
            tx, ax, nx, pl, pr = _axis(rx, g.kw, g.sx, g.pad_left, g.w, g.ow)
            y0, x0 = g.sy * ay + ry - g.pad_top, g.sx * ax + rx - g.pad_left
            if ny <= 0 or nx <= 0:
                continue   # (no row or column of x in this phase)
            pg = None
            if ty and tx:
                pg = ConvGeometry(g.n, g.c_out, g.oh, g.ow, g.c_in, 1, ty, tx, 1, 1, 1, 1,
                                  pt, pb, pl, pr, ny, nx, g.channels_last)
            out.append((ry, rx, y0, x0, pg))
    return tuple(out)


def phase_weight(g, w, ry, rx, pg):
    """The phase's forward weight, in g's layout, from w (C_out, C_in, kh, kw): kernel
    rows ry, ry + sy, .. and columns rx, rx + sx, .., flipped, channels swapped."""
    sub = w[:, :, ry::g.sy, rx::g.sx][:, :, :pg.kh, :pg.kw][:, :, ::-1, ::-1]
    sub = sub.transpose(1, 0, 2, 3)
    return np.ascontiguousarray(sub.transpose(2, 3, 1, 0) if g.channels_last else sub)


class Phases(Algorithm):
    """The strided input gradient as sy * sx stride-1 forwards on grad_y."""
    name = "phases"
    passes = (GRAD_INPUT,)
    shortcuts = (GRAD_INPUT,)   # (the phases' zero padding of grad_y times the weight)

    def _supports(self, q):
        g = q.g
        if (g.sy, g.sx) == (1, 1):
            return "stride 1 (a single forward on grad_y: the gather)"
        if (g.dy, g.dx) != (1, 1):
            return f"dilation {g.dy}x{g.dx} (1 only)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        return None

    def declines(self, q):
        g = q.g
        if not g.channels_last:
            return ("channels_first, whose forwards on grad_y run slower than its "
                    "scatter (docs/design/algorithms.md)")
        macs = g.n * g.oh * g.ow * g.c_out * g.c_in * g.kh * g.kw
        if macs < q.tuning.phases_min_macs:
            return (f"{macs} multiply-adds: the {g.sy * g.sx} forwards' per-call costs "
                    "exceed the scatter's")
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype, isa=q.isa)

    def details(self, plan):
        g = plan.g
        n = sum(pg is not None for *_, pg in phases(g))
        return [f"{g.sy * g.sx} phases, {n} stride-1 forwards on grad_y"]

    def grad_input(self, plan, grad_y, w, y):
        """grad_x into y (x's shape) from grad_y and w (C_out, C_in, kh, kw)."""
        from ..run import _forward   # (run imports the registry)
        g = plan.g
        sy, sx = g.sy, g.sx
        parts = phases(g)
        if any(pg is None for *_, pg in parts):
            y.fill(0)   # (one contiguous pass, not a strided one per empty phase)
        for ry, rx, y0, x0, pg in parts:
            if pg is None:
                continue
            dst = (y[:, y0::sy, x0::sx, :] if g.channels_last else
                   y[:, :, y0::sy, x0::sx])
            dst[...] = _forward(pg, grad_y, phase_weight(g, w, ry, rx, pg), None,
                                plan.dtype, forced=False)
        return y   # (every pixel of x lies in exactly one phase)
