"""The pixel-row kernels (src/conv/drivers/pixelrow.h): tiles of MR output pixels x NR
output channels that read every window in place (the (kj, c) part of a window row is
contiguous in channels_last).  Faster than the shifted kernels, which compute and drop
the padding columns, where C_out fills a tile and images fill MR rows
(docs/design/algorithms.md).  The weight gradient takes the bias gradient's partial
sums in the same work items."""
import numpy as np

from .... import _ext
from ..plan import FORWARD, GRAD_WEIGHT, Algorithm, Plan
from .common import aligned_empty, partials_of, pixel_tile, sum_partials


def half_tile(g, dtype, t):
    """Whether g takes the half-width tile (one vector of output channels): where C_out
    fits in it and the full tile would leave half its columns empty."""
    return t.pixel_half and g.c_out <= pixel_tile(dtype, True)[1] < pixel_tile(dtype)[1]


def rows_refusal(g, dtype):
    """None where the pixel-row kernels run g, else why not."""
    if not g.channels_last:
        return "channels_first (reads windows in place in channels_last only)"
    if g.groups != 1:
        return f"{g.groups} groups (one group only)"
    mr, nr = pixel_tile(dtype)
    if 2 * g.c_out < nr:
        return f"C_out {g.c_out} fills under half a tile of {nr} channels"
    if g.oh * g.ow < mr:
        return f"{g.oh}x{g.ow} output pixels fill no tile of {mr}"
    return None


def useful_columns(g, dtype, t):
    """The share of useful output-channel columns of g's pixel-row tile (0: refused)."""
    if rows_refusal(g, dtype) is not None:
        return 0.0
    nr = pixel_tile(dtype, half_tile(g, dtype, t))[1]
    return g.c_out / (-(-g.c_out // nr) * nr)


def pixel_weights(g, w, nr):
    """(C_out, C_in, kh, kw) -> (ceil(C_out/nr), kh*kw*C_in, nr), zero past C_out."""
    wk = w.transpose(2, 3, 1, 0).reshape(g.k_group, g.c_out)
    ncb, full = -(-g.c_out // nr), g.c_out // nr
    out = aligned_empty(ncb * g.k_group * nr, w.dtype).reshape(ncb, g.k_group, nr)
    if full:   # (one strided copy for all whole blocks)
        out[:full] = wk[:, :full * nr].reshape(g.k_group, full, nr).transpose(1, 0, 2)
    if ncb > full:
        rest = g.c_out - full * nr
        out[full, :, :rest] = wk[:, full * nr:]
        out[full, :, rest:] = 0
    return out.reshape(-1)


class PixelRows(Algorithm):
    name = "pixel"
    relu6 = True   # (px_forward: relu=2)
    passes = (FORWARD, GRAD_WEIGHT)
    shortcuts = (FORWARD,)
    takes_bias_sums = True

    def _supports(self, q):
        return rows_refusal(q.g, q.dtype)

    def plan(self, q):
        half = half_tile(q.g, q.dtype, q.tuning)
        return Plan(q.pass_, self, q.g, q.dtype, tile=pixel_tile(q.dtype, half), half=half,
                    n_per=partials_of(q),
                    isa=q.isa)

    def details(self, plan):
        out = [f"tile {plan.tile[0]}x{plan.tile[1]}" + (" (half width)" if plan.half
                                                         else "")]
        if plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.n_per} images")
        return out

    def pack(self, plan, w):
        return pixel_weights(plan.g, w, plan.tile[1])

    def forward(self, plan, x, w, bias, y, relu, tanh, max_pool=False, avg_pool=False,
                yq=None, packed=None):
        """y (or its 2x2/2 pool: max_pool, avg_pool; yq: the pool beside y) of x."""
        wp = self.pack(plan, w) if packed is None else packed
        _ext.conv2d.px_forward(x.reshape(-1), wp, bias,
                               y.reshape(-1), plan.g.c, int(relu), plan.half, max_pool,
                               tanh=tanh, avg_pool=avg_pool,
                               yq=None if yq is None else yq.reshape(-1))
        return tanh

    def grad_weight(self, plan, grad_y, x, bsum):
        g, dtype = plan.g, plan.dtype
        mr, nr = plan.tile
        nig = -(-g.n // plan.n_per)
        part = np.zeros((nig, -(-g.k_group // mr) * mr, -(-g.c_out // nr) * nr), dtype)
        _ext.conv2d.px_grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                   g.c, plan.n_per, plan.half,
                                   None if bsum is None else bsum.reshape(-1))
        total = sum_partials(part)
        gw = total[:g.k_group, :g.c_out].reshape(g.kh, g.kw, g.c_in, g.c_out)
        return np.ascontiguousarray(gw)
