"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(5x5, 3x3) (src/conv/drivers/winograd.h):
channels_last, 3x3, stride 1, dilation 1, one group, float32 (float64 stays on the
direct kernels, exact to 1e-10).  Fewer multiply-adds than the direct kernels (2.25x,
4x, 5.06x) at relative errors of about 2e-7, 3e-6 and 3e-5 of the output's scale; the
tile is the one whose tiles hold the fewest transformed values for the output size
(F(4x4) or F(5x5); F(2x2) only where asked) (docs/design/algorithms.md)."""
import numpy as np

from .... import _ext
from ..plan import FORWARD, GRAD_WEIGHT, Algorithm, Plan
from .common import aligned_empty, images_per_partial, sum_partials


def tile_for(oh, ow, forced=None, n=None, weight_rows=0, images=None):
    """The tile side of a pass whose output (y; grad_x for the input gradient; the
    tiles of grad_y for the weight gradient) is oh x ow: forced where given, else
    F(5x5) where its tiles hold fewer transformed values (tiles * (tile + 2)^2: the
    products, and the transforms' traffic) than F(4x4)'s, else F(4x4).  With n (the
    forward's batch), F(2x2) where its values are fewer still when the tiles are
    counted as the products run them, in blocks of the kernels' MR rows: where the
    bigger tiles are too few to fill a block (batch 1 on 8x8 and smaller maps).
    weight_rows (Tuning.winograd_weight_rows) counts the weight's transform, made on
    every call, as that many more tile rows over images (default n, else 1): at few
    tiles it decides, and the tile with fewer values per weight wins (batch 1 at
    14x14: F(5x5)'s transform costs more than its products save), F(2x2) included."""
    if forced is not None:
        return forced
    imgs = images or n or 1

    def values(t, mr=1):
        tiles = imgs * -(-oh // t) * -(-ow // t)
        return (-(-tiles // mr) * mr + weight_rows) * (t + 2) ** 2
    best = 5 if values(5) < values(4) else 4
    mr = _ext.conv2d.winograd_tile()[0] if n is not None else 1
    if (n is not None or weight_rows) and values(2, mr) < values(best, mr):
        return 2
    return best


def chosen_tile(q):
    """The tile q's pass runs on: the caller's, else the tuning's, else by size."""
    rows = q.tuning.winograd_weight_rows
    if q.pass_ == GRAD_WEIGHT:
        return tile_for(q.g.oh, q.g.ow, q.tuning.winograd_grad_tile, weight_rows=rows,
                        images=q.g.n)
    return tile_for(q.g.oh, q.g.ow, q.tile or q.tuning.winograd_tile,
                    q.g.n if q.pass_ == FORWARD else None, rows)


def winograd_weights(w, tile, half=False):
    """U = G g G^T of w (C_out, C_in, 3, 3) for F(tile x tile, 3x3), packed for
    _ext.conv2d.winograd_forward (half: for its half-width tile)."""
    nr = _ext.conv2d.winograd_tile(half)[1]
    u = aligned_empty((tile + 2) ** 2 * -(-w.shape[0] // nr) * w.shape[1] * nr,
                      w.dtype)  # (every element written)
    _ext.conv2d.winograd_weights(w, u, tile, half)
    return u


def half_products(c_out, t):
    """Whether the products run on the half-width tile (one vector of output
    channels): where C_out fits in it and the full tile would leave half its columns
    computing zeros (as the pixel-row kernels' half_tile)."""
    half_nr, full_nr = _ext.conv2d.winograd_tile(True)[1], _ext.conv2d.winograd_tile()[1]
    return t.pixel_half and c_out <= half_nr < full_nr


def tiles_of(g, tile):
    """Output tiles of a forward of g on tile x tile tiles."""
    return g.n * -(-g.oh // tile) * -(-g.ow // tile)


def forward_block(t, tiles=None, half=False):
    """Tiles per forward work item: the tuning's (rounded up to the tile rows MR), and
    for a call of few tiles (batch 1) at most an eighth of them (at least MR), so
    that it still splits into work items for several threads (by the shape: the same
    items on any thread count)."""
    mr = _ext.conv2d.winograd_tile(half)[0]
    block = -(-t.winograd_block // mr) * mr
    if tiles is not None:
        block = min(block, max(mr, -(-tiles // (8 * mr)) * mr))
    return block


class Winograd(Algorithm):
    passes = (FORWARD, GRAD_WEIGHT)
    shortcuts = (FORWARD,)

    def __init__(self, tile):
        self.tile = tile
        self.name = f"winograd_f{tile}"

    def _supports(self, q):
        g = q.g
        if q.dtype != np.float32:
            return "float64 (float32 only: the direct kernels are exact there)"
        if not g.channels_last:
            return "channels_first (channels_last only)"
        if (g.kh, g.kw) != (3, 3):
            return f"a {g.kh}x{g.kw} kernel (3x3 only)"
        if (g.sy, g.sx, g.dy, g.dx) != (1, 1, 1, 1):
            return (f"stride {g.sy}x{g.sx}, dilation {g.dy}x{g.dx} (needs 1 and 1)")
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        if g.oh < 2 or g.ow < 2:
            return f"a {g.oh}x{g.ow} output (2x2 at least)"
        return None

    def declines(self, q):
        low = q.tuning.winograd_min_channels
        if min(q.g.c_in, q.g.c_out) < low:
            return (f"{q.g.c_in} -> {q.g.c_out} channels, under {low} (the direct "
                    "kernels win)")
        tile = chosen_tile(q)
        if tile != self.tile:
            return f"the {tile}x{tile} tile is chosen for this {q.g.oh}x{q.g.ow} output"
        return None

    def plan(self, q):
        t = q.tuning
        half = half_products(q.g.c_out, t)
        if q.pass_ == GRAD_WEIGHT:
            split = max(t.winograd_partial_images, -(-q.g.n // t.winograd_partials))
            mr = _ext.conv2d.winograd_tile(half)[0]
            return Plan(q.pass_, self, q.g, q.dtype, tile=self.tile, half=half,
                        block=-(-t.winograd_grad_block // mr) * mr, split=split,
                        n_per=images_per_partial(q.g, 4, t), isa=q.isa)
        return Plan(q.pass_, self, q.g, q.dtype, tile=self.tile, half=half,
                    block=forward_block(t, tiles_of(q.g, self.tile), half), isa=q.isa)

    def details(self, plan):
        out = [f"tile {plan.tile}x{plan.tile}", f"blocks of {plan.block} tiles"]
        if plan.half:
            out.append("half-width products")
        if plan.pass_ == GRAD_WEIGHT:
            out.append(f"partial sums of {plan.split} images")
        return out

    def pack(self, plan, w):
        return winograd_weights(w, plan.tile, plan.half)

    def forward(self, plan, x, w, bias, y, relu, tanh, pool=False, packed=None):
        """y (or its 2x2/2 max pool: pool, an even tile) of x."""
        u = self.pack(plan, w) if packed is None else packed
        _ext.conv2d.winograd_forward(x.reshape(-1), u, bias, y.reshape(-1), plan.g.c,
                                     plan.block, relu, pool, plan.tile, plan.half)
        return False

    def grad_weight(self, plan, grad_y, x, bsum):
        """grad_weight (3, 3, C_in, C_out): partial sums dU over fixed groups of images,
        added in order, then G^T dU G.  (bsum is filled by the caller.)"""
        g, dtype, tile = plan.g, plan.dtype, plan.tile
        mr, nr = _ext.conv2d.winograd_tile(plan.half)
        cpad, ldg = -(-g.c_in // mr) * mr, -(-g.c_out // nr) * nr
        part = np.zeros((-(-g.n // plan.split), (tile + 2) ** 2 * cpad * ldg), dtype)
        _ext.conv2d.winograd_grad_weight(x.reshape(-1), grad_y.reshape(-1),
                                         part.reshape(-1), g.c, plan.split, plan.block,
                                         tile, plan.half)
        gw = np.empty(g.weight_shape, dtype)
        _ext.conv2d.winograd_grad_weight_out(sum_partials(part), gw.reshape(-1), g.c_in,
                                             g.c_out, cpad, ldg, tile)
        return gw
