"""The conv algorithms, one module per algorithm or small family, and their order of
preference for each pass (the registries plan.select walks).

To add one: a module with an Algorithm subclass (supports/declines, plan, and the run
methods of its passes: forward(plan, x, w, bias, y, relu, tanh) -> whether tanh was
applied; grad_weight(plan, grad_y, x, bsum) -> grad_weight), then its place below.  A
forward algorithm also serves the stride-1 input gradient through Gather.
"""
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan, Query, register
from .blas import Im2colBlas, PointwiseBlas
from .dense import Dense, Dense1x1, Pointwise
from .depthwise import Depthwise
from .direct import Im2col, Scatter, Shifted
from .narrow import Narrow
from .phases import Phases
from .planes import PlanesBlas
from .pixel import PixelRows
from .via_last import ViaLast
from .wide import Wide
from .winograd import Winograd, tile_for

__all__ = ["DENSE", "DENSE_1X1", "POINTWISE_BLAS", "IM2COL_BLAS", "POINTWISE",
           "PLANES_BLAS", "DEPTHWISE", "VIA_LAST", "WINOGRAD", "NARROW", "WIDE", "PIXEL",
           "SHIFTED", "IM2COL", "PHASES", "SCATTER", "Gather"]


class Gather(Algorithm):
    """The stride-1 input gradient as a forward of another algorithm: grad_y through
    the flipped kernel with input and output channels swapped (a gather, no scatter),
    where the output is at least kernel-sized (else most of it would multiply padding:
    the scatter is cheaper)."""
    passes = (GRAD_INPUT,)
    shortcuts = (GRAD_INPUT,)   # (the zero padding of grad_y times the weight)

    def __init__(self, forward):
        self.forward_algorithm = forward
        self.name = forward.name

    def _forward_query(self, q):
        g2 = q.g.mirrored()
        tile = tile_for(g2.oh, g2.ow, q.tuning.winograd_grad_tile, g2.n,
                        q.tuning.winograd_weight_rows)
        return Query(g2, q.dtype, FORWARD, True, tile, q.isa, q.tuning)

    def _supports(self, q):
        g = q.g
        if (g.sy, g.sx) != (1, 1):
            return f"stride {g.sy}x{g.sx}: the input gradient gathers at stride 1 only"
        if g.oh < g.kh or g.ow < g.kw:
            return (f"a {g.oh}x{g.ow} output under the {g.kh}x{g.kw} kernel (the "
                    "scatter is cheaper)")
        reason = self.forward_algorithm.supports(self._forward_query(q))
        return None if reason is None else f"as a forward on grad_y: {reason}"

    def declines(self, q):
        reason = self.forward_algorithm.declines(self._forward_query(q))
        return None if reason is None else f"as a forward on grad_y: {reason}"

    def plan(self, q):
        fq = self._forward_query(q)
        return Plan(q.pass_, self, q.g, q.dtype, run_g=fq.g,
                    inner=self.forward_algorithm.plan(fq), isa=q.isa)

    def details(self, plan):
        return ["a forward on grad_y"] + self.forward_algorithm.details(plan.inner)

    def grad_input(self, plan, grad_y, w, y):
        """grad_x into y (plan.run_g's output) from grad_y and w (C_out, C_in/groups,
        kh, kw)."""
        g = plan.g
        cog, cig = g.c_out // g.groups, g.c_in // g.groups
        wt = (w.reshape(g.groups, cog, cig, g.kh, g.kw)[:, :, :, ::-1, ::-1]
              .transpose(0, 2, 1, 3, 4).reshape(g.c_in, cog, g.kh, g.kw))
        self.forward_algorithm.forward(plan.inner, grad_y, wt, None, y, False, False)
        return y


DENSE, DENSE_1X1, POINTWISE, DEPTHWISE = Dense(), Dense1x1(), Pointwise(), Depthwise()
POINTWISE_BLAS, IM2COL_BLAS = PointwiseBlas(), Im2colBlas()
WINOGRAD = (Winograd(2), Winograd(4), Winograd(5))
NARROW, WIDE, PIXEL = Narrow(), Wide(), PixelRows()
SHIFTED, IM2COL, SCATTER = Shifted(), Im2col(), Scatter()
PHASES, VIA_LAST, PLANES_BLAS = Phases(), ViaLast(), PlanesBlas()

# (Depthwise runs its own stride-1 input gradient: not a Gather.  planes_blas, then
# via_last, come before every other algorithm that runs channels_first calls of one
# group: the BLAS over the planes where its rules hold, else the channels_last twin.)
_FORWARD = [DENSE, DENSE_1X1, POINTWISE_BLAS, IM2COL_BLAS, POINTWISE, PLANES_BLAS,
            DEPTHWISE, *WINOGRAD, NARROW, WIDE, PIXEL, SHIFTED, IM2COL]
_GATHERED = _FORWARD[7:]
_FORWARD.insert(7, VIA_LAST)
register({
    FORWARD: _FORWARD,
    GRAD_INPUT: [DENSE, DENSE_1X1, POINTWISE_BLAS, IM2COL_BLAS, POINTWISE, PLANES_BLAS,
                 DEPTHWISE, VIA_LAST] + [Gather(a) for a in _GATHERED] + [PHASES, SCATTER],
    GRAD_WEIGHT: [DENSE, DENSE_1X1, POINTWISE_BLAS, IM2COL_BLAS, POINTWISE, PLANES_BLAS,
                  DEPTHWISE, VIA_LAST, *WINOGRAD, WIDE, PIXEL, SHIFTED, IM2COL],
})

