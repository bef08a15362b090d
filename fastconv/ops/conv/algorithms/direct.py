"""The layout-generic kernels, which run any convolution: im2col (an implicit GEMM:
each strip of output pixels packed straight into the micro-kernel's panel), the
stride-1 "shifted" kernels (a padded image and an offset table), and the input
gradient's scatter of W^T grad_y.  They take no shortcut over zeros in the forward
and the scatter, so a non-finite weight runs here."""
import numpy as np

from .... import _ext
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .common import images_per_partial, mr_nr, pack_rows, sum_partials


def _packed_weight(g, w, mr):
    return pack_rows(w.reshape(g.groups, g.c_out // g.groups, g.k_group), mr)


def grad_weight_packed(g, grad_y, x, dtype, n_per, shifted, block):
    """grad_weight (the weight's layout) on the shifted (shifted) or the im2col kernels
    in partial sums over groups of n_per images; the im2col ones take no shortcut over
    zeros and suit any g."""
    if g.n == 0 or g.oh * g.ow == 0:
        return np.zeros(g.weight_shape, dtype)
    mr, nr = mr_nr(dtype)
    cog = g.c_out // g.groups
    nig = -(-g.n // n_per)
    if shifted:
        kg_pad, cog_pad = -(-g.k_group // mr) * mr, -(-cog // nr) * nr
        part = np.zeros((nig, g.groups, kg_pad, cog_pad), dtype)
        _ext.conv2d.grad_weight_shift(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                      g.c, n_per, block)
    else:
        cog_pad, kg_pad = -(-cog // mr) * mr, -(-g.k_group // nr) * nr
        part = np.zeros((nig, g.groups, cog_pad, kg_pad), dtype)
        _ext.conv2d.grad_weight(x.reshape(-1), grad_y.reshape(-1), part.reshape(-1),
                                g.c, n_per, block)
    total = sum_partials(part)
    if shifted:
        total = total[:, :g.k_group, :cog].transpose(0, 2, 1)
    else:
        total = total[:, :cog, :g.k_group]
    gw = total.reshape(g.c_out, g.c_in // g.groups, g.kh, g.kw)
    if g.channels_last:
        gw = gw.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(gw)


class Im2col(Algorithm):
    """The implicit GEMM: any geometry, layout, dtype and ISA."""
    name = "im2col"
    passes = (FORWARD, GRAD_WEIGHT)
    shifted = False

    def plan(self, q):
        itemsize = np.dtype(q.dtype).itemsize
        return Plan(q.pass_, self, q.g, q.dtype, tile=mr_nr(q.dtype),
                    n_per=images_per_partial(q.g, itemsize, q.tuning),
                    block=q.tuning.weight_block_pixels, isa=q.isa)

    def details(self, plan):
        out = [f"tile {plan.tile[0]}x{plan.tile[1]}"]
        if plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.n_per} images")
        return out

    def pack(self, plan, w):
        return _packed_weight(plan.g, w, plan.tile[0])

    def forward(self, plan, x, w, bias, y, relu, tanh, packed=None):
        g = plan.g
        run = _ext.conv2d.forward_shift if self.shifted else _ext.conv2d.forward
        wp = self.pack(plan, w) if packed is None else packed
        run(x.reshape(-1), wp, bias, y.reshape(-1), g.c, relu)
        return False

    def grad_weight(self, plan, grad_y, x, bsum):
        return grad_weight_packed(plan.g, grad_y, x, plan.dtype, plan.n_per, self.shifted,
                                  plan.block)


class Shifted(Im2col):
    """Stride 1: a padded image and an offset table; it computes Wp = ow + (kw-1)*dx
    columns per output row and keeps ow, image by image in strips of NR columns."""
    name = "shifted"
    shifted = True

    def _supports(self, q):
        if (q.g.sy, q.g.sx) != (1, 1):
            return f"stride {q.g.sy}x{q.g.sx} (needs 1)"
        return None

    def declines(self, q):
        g = q.g
        wp = g.ow + (g.kw - 1) * g.dx
        nr = mr_nr(q.dtype)[1]
        if wp > 2 * g.ow:
            return f"padded rows of {wp} columns for {g.ow} outputs waste over half"
        if g.oh * wp < nr:
            return f"an image of {g.oh * wp} padded pixels fills no strip of {nr}"
        return None


class Scatter(Algorithm):
    """The input gradient as W^T grad_y scattered back, whole images per work item:
    any geometry (the only input gradient for strides above 1)."""
    name = "scatter"
    passes = (GRAD_INPUT,)

    def plan(self, q):
        g = q.g
        # Whole images per item, enough of them to fill a strip of NR pixels.
        n_per = max(1, -(-mr_nr(q.dtype)[1] // max(g.oh * g.ow, 1)))
        return Plan(q.pass_, self, g, q.dtype, tile=mr_nr(q.dtype), n_per=n_per,
                    isa=q.isa)

    def details(self, plan):
        return [f"{plan.n_per} image(s) per work item"]

    def grad_input(self, plan, grad_y, w):
        g = plan.g
        cog = g.c_out // g.groups
        gx = np.zeros(g.x_shape, plan.dtype)
        at = pack_rows(w.reshape(g.groups, cog, g.k_group).transpose(0, 2, 1),
                       plan.tile[0])
        _ext.conv2d.grad_input_scatter(grad_y.reshape(-1), at, gx.reshape(-1), g.c,
                                       plan.n_per)
        return gx
