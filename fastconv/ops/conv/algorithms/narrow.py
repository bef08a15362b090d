"""The narrow kernel: channels_last, one group, too few output channels for the
pixel-row tiles (e.g. the input gradient of a layer with 3 input channels),
vectorised along the input channels, which must come in whole vectors
(docs/design/algorithms.md)."""
from .... import _ext
from ..plan import FORWARD, Algorithm, Plan
from .common import FLOAT64, aligned_zeros


def narrow_weights(g, w):
    """(C_out, C_in, kh, kw) -> (ceil(C_out/NO), kh*kw, NO, C_in), zero past C_out."""
    _, no, _ = _ext.conv2d.narrow_tile(w.dtype == FLOAT64)
    nob = -(-g.c_out // no)
    out = aligned_zeros(nob * no * g.k_group, w.dtype).reshape(
        nob, g.kh * g.kw, no, g.c_in)
    wk = w.transpose(2, 3, 0, 1).reshape(g.kh * g.kw, g.c_out, g.c_in)
    for ob in range(nob):
        rows = wk[:, ob * no:(ob + 1) * no]
        out[ob, :, :rows.shape[1]] = rows
    return out.reshape(-1)


class Narrow(Algorithm):
    name = "narrow"
    passes = (FORWARD,)
    shortcuts = (FORWARD,)

    def _supports(self, q):
        g = q.g
        if not g.channels_last:
            return "channels_first (channels_last only)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        mr, no, vl = _ext.conv2d.narrow_tile(q.dtype == FLOAT64)
        if g.c_out > 2 * no:
            return f"C_out {g.c_out} is over two blocks of {no} (the pixel-row tiles' case)"
        if g.c_in % vl or g.c_in < 2 * vl:
            return f"C_in {g.c_in} is not whole vectors of {vl}, two at least"
        if g.oh * g.ow < mr:
            return f"{g.oh}x{g.ow} output pixels fill no tile of {mr}"
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype,
                    tile=_ext.conv2d.narrow_tile(q.dtype == FLOAT64), isa=q.isa)

    def details(self, plan):
        mr, no, vl = plan.tile
        return [f"{mr} pixels x {no} channels, vectors of {vl} input channels"]

    def pack(self, plan, w):
        return narrow_weights(plan.g, w)

    def forward(self, plan, x, w, bias, y, relu, tanh, packed=None):
        wp = self.pack(plan, w) if packed is None else packed
        _ext.conv2d.px_forward_narrow(x.reshape(-1), wp, bias, y.reshape(-1), plan.g.c,
                                      relu)
        return False
