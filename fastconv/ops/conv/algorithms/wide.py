"""The wide kernels (src/conv/drivers/wide.h): channels_last, one group, stride 1,
vectorised along the output rows of a channel-major copy of each image.  They take the
layers whose channel counts leave the pixel-row tiles mostly empty (LeNet-5's C1 and
C3; docs/design/algorithms.md)."""
import numpy as np

from .... import _ext
from ..plan import FORWARD, GRAD_WEIGHT, Algorithm, Plan
from .common import FLOAT64, images_per_partial, sum_partials
from .pixel import half_tile, rows_refusal, useful_columns


def wide_images_per_partial(g, dtype, n_per, t):
    """Images per partial weight gradient of the wide kernels (shapes only): at least
    n_per, up to a t.wide_partials-th of the batch while the planar copies of x and
    grad_y fit in t.wide_scratch bytes."""
    vl, gco = _ext.conv2d.wide_tile(dtype == FLOAT64)
    row = -(-g.ow // vl) * vl
    per_image = (g.c_in * (g.oh + (g.kh - 1) * g.dy) * (row + (g.kw - 1) * g.dx) +
                 -(-g.c_out // gco) * gco * g.oh * row) * np.dtype(dtype).itemsize
    fits = max(1, t.wide_scratch // max(per_image, 1))   # (no channels: nothing to copy)
    return int(max(n_per, min(-(-g.n // t.wide_partials), fits)))


class Wide(Algorithm):
    name = "wide"
    passes = (FORWARD, GRAD_WEIGHT)
    shortcuts = (FORWARD,)
    takes_bias_sums = True

    def _supports(self, q):
        g = q.g
        if not g.channels_last:
            return "channels_first (channels_last only)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        if (g.sy, g.sx) != (1, 1):
            return f"stride {g.sy}x{g.sx} (needs 1)"
        vl = _ext.conv2d.wide_tile(q.dtype == FLOAT64)[0]
        if 2 * g.ow < vl:
            return f"output rows of {g.ow} are under half a vector of {vl}"
        return None

    def declines(self, q):
        """Where the pixel-row tile would use a larger share of its columns than the
        wide kernels use of their vector lanes and row blocks (or, for the weight
        gradient, takes its half-width tile, which comes first there)."""
        g, dtype = q.g, q.dtype
        if (q.pass_ == GRAD_WEIGHT and rows_refusal(g, dtype) is None and
                half_tile(g, dtype, q.tuning)):
            return "the pixel-row kernels' half-width tile suits this weight gradient"
        vl = _ext.conv2d.wide_tile(dtype == FLOAT64)[0]
        lanes = g.ow / (-(-g.ow // vl) * vl)
        rows = g.oh / (-(-g.oh // 5) * 5)  # blocks of about 5 rows (fc_wide_block)
        # the planar copies of x (and grad_y) cost about wide_copy_macs multiply-adds
        # a value: per output pixel, C_in values against kh kw C_in C_out products
        copy = 1 + q.tuning.wide_copy_macs / (g.kh * g.kw * max(g.c_out, 1))
        cols = useful_columns(g, dtype, q.tuning)
        if lanes * rows / copy <= cols:
            return (f"the pixel-row tile uses {cols:.2f} of its columns, the wide "
                    f"kernels {lanes * rows:.2f} of their lanes, {lanes * rows / copy:.2f} "
                    "with their planar copies")
        return None

    def plan(self, q):
        itemsize = np.dtype(q.dtype).itemsize
        n_per = images_per_partial(q.g, itemsize, q.tuning)
        n_wide = -(-wide_images_per_partial(q.g, q.dtype, n_per, q.tuning) // n_per) * n_per
        return Plan(q.pass_, self, q.g, q.dtype,
                    tile=_ext.conv2d.wide_tile(q.dtype == FLOAT64), n_per=n_per,
                    split=n_wide, isa=q.isa)

    def details(self, plan):
        out = [f"vectors of {plan.tile[0]}"]
        if plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.split} images")
        return out

    def pack(self, plan, w):
        return np.ascontiguousarray(w).reshape(plan.g.c_out, -1)

    def forward(self, plan, x, w, bias, y, relu, tanh, pool=False, yq=None, packed=None):
        """y (or its 2x2/2 average pool: pool; yq: the pool beside y) of x."""
        g = plan.g
        wp = self.pack(plan, w) if packed is None else packed
        _ext.conv2d.wide_forward(x.reshape(-1), wp, bias, y.reshape(-1), g.c, relu, tanh,
                                 pool, None if yq is None else yq.reshape(-1))
        return tanh

    def grad_weight(self, plan, grad_y, x, bsum, grad_pooled=None, a=None):
        """grad_weight, bsum (the bias gradient's partial sums over groups of
        plan.n_per images, or None) filled.  With grad_pooled and a, grad_y (None) is
        the gradient through tanh (a: its output) of the 2x2/2 average pool whose
        output gradient is grad_pooled."""
        g, dtype = plan.g, plan.dtype
        nwg = -(-g.n // plan.split)
        gco = plan.tile[1]
        part = np.zeros((nwg, g.k_group, -(-g.c_out // gco) * gco), dtype)

        def flat(v):
            return None if v is None else v.reshape(-1)
        _ext.conv2d.wide_grad_weight(x.reshape(-1), flat(grad_y), part.reshape(-1), g.c,
                                     plan.split, flat(bsum), plan.n_per, flat(grad_pooled),
                                     flat(a))
        total = sum_partials(part)
        gw = total[:, :g.c_out].reshape(g.kh, g.kw, g.c_in, g.c_out)
        return np.ascontiguousarray(gw)
