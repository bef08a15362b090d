"""Pointwise convolutions as NumPy's BLAS products (docs/design/algorithms.md).

A 1x1 convolution in channels_last (stride 1, no padding, one group) is one product
over the whole batch: y (P, C_out) = x (P, C_in) @ w (C_in, C_out) with P the batch's
pixels, and its gradients are grad_x = grad_y @ w^T and grad_w = x^T @ grad_y.  The
BLAS packs both operands into cache-sized blocks, which the pixel-row kernels (reading
x's rows in place, the whole reduction per tile) do not: where the reduction is long,
the BLAS is faster.  The products run on one BLAS thread each, cut into bands of rows
or columns (the weight gradient: of the reduction, partial sums added in order) that
depend on the shape only, started on the kernels' OpenMP threads
(_blas.run_products): the same bits on any thread count.  Bias and activation follow
on each band in one compiled pass.

Any other channels_last convolution of one group is the same three products over its
column matrix (im2col_blas): col (P, kh * kw * C_in), row p the window of output pixel
p in the weight's (kh, kw, C_in) order, zero in the padding; grad_x is the column
gradient grad_y @ w^T added back into the windows.  Made whole for the call (its
workspace: P * kh * kw * C_in values, at most Tuning.blas_col_bytes), so it is the
default only where the call has few pixels and a large weight: there every kernel
that packs the weight per call streams all of it for little work, and the BLAS's
packing is the better one.
"""
import numpy as np

from .... import _arena, _blas, _ext
from .... import activations as _activations
from .... import tuning as _tuning
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .common import grad_bias, partials_of, pixel_tile, sum_partials
from .dense import pointwise_refusal


def _parts(macs, t):
    """Bands a product of macs multiply-adds is cut into (shape only)."""
    return int(max(1, min(t.blas_max_bands, macs // t.blas_band_macs)))


def _product(a, b, out, t, then=None):
    """out = a @ b in bands of out's longer side; then(band) on each band of rows after
    its product (while in cache), or on the whole of out after all bands of columns."""
    m, n = out.shape
    rows = m >= n
    parts = _parts(m * a.shape[1] * n, t)
    if rows and then is not None:  # bands whose output stays in the L2 cache
        parts = max(parts, -(-out.nbytes // t.blas_band_bytes))
    edges = _blas.bands(m if rows else n, parts, 64 if rows else 16)
    if rows:
        _blas.run_products([(a[lo:hi], b, out[lo:hi]) + ((then,) if then else ())
                            for lo, hi in zip(edges, edges[1:])])
    else:
        _blas.banded_matmul(a, b, out, edges, False)
        if then is not None:
            then(out)
    return out


def _output_pass(bias, act, c_out):
    """The output pass (bias, then act: 0 none, 1 ReLU, 2 ReLU6) on a band of rows, on
    the band's own thread without the GIL; None when there is nothing to do."""
    if bias is None and not act:
        return None

    def run(band):
        _ext.activations.bias_act(band.reshape(-1), bias, c_out, act, True)
    return run


def _reduction_product(a, b, t, most=None):
    """a^T @ b (a (P, K), b (P, N), P >= 1): in bands of the output where P is the
    shortest side (a few pixels' weight gradient), else as partial products over
    bands of the P rows (at most most) added in order (the same bits on any thread
    count)."""
    p, k = a.shape
    n = b.shape[1]
    if p < min(k, n):
        return _product(a.T, b, np.empty((k, n), np.result_type(a, b)), t)
    edges = _blas.bands(p, min(_parts(p * k * n, t), most or t.blas_max_bands), 64)
    part = np.empty((len(edges) - 1, k, n), np.result_type(a, b))
    _blas.run_products([(a[lo:hi].T, b[lo:hi], part[i])
                        for i, (lo, hi) in enumerate(zip(edges, edges[1:]))])
    return sum_partials(part)


def _pads(g):
    """(crop, pad): per side (top, bottom, left, right), the rows or columns of x that
    g's padding crops (negative padding) and the zeros it adds."""
    sides = (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)
    return tuple(max(0, -s) for s in sides), tuple(max(0, s) for s in sides)


def _padded(g, x):
    """x (N, H, W, C) with g's padding: a zero-padded copy, or x itself (none)."""
    (ct, cb, cl, cr), (pt, pb, pl, pr) = _pads(g)
    if not any((ct, cb, cl, cr, pt, pb, pl, pr)):
        return x
    n, h, w, c = x.shape
    xs = x[:, ct:h - cb, cl:w - cr]
    xp = np.zeros((n, xs.shape[1] + pt + pb, xs.shape[2] + pl + pr, c), x.dtype)
    xp[:, pt:pt + xs.shape[1], pl:pl + xs.shape[2]] = xs
    return xp


def _tap(g, xp, i, j):
    """The view of padded xp that tap (i, j) of every window reads: (N, oh, ow, C)."""
    y0, x0 = i * g.dy, j * g.dx
    return xp[:, y0:y0 + (g.oh - 1) * g.sy + 1:g.sy, x0:x0 + (g.ow - 1) * g.sx + 1:g.sx]


def columns(g, x):
    """The column matrix of x (channels_last) for g: (P, kh * kw * C_in)."""
    xp = _padded(g, np.asarray(x))
    p = g.n * g.oh * g.ow
    if (g.kh, g.kw, g.sy, g.sx) == (1, 1, 1, 1) and xp.shape[1:3] == (g.oh, g.ow):
        return np.ascontiguousarray(xp).reshape(p, g.c_in)
    col = np.empty((g.n, g.oh, g.ow, g.kh, g.kw, g.c_in), x.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            col[:, :, :, i, j] = _tap(g, xp, i, j)
    return col.reshape(p, -1)


def add_columns(g, dcol, dtype):
    """The input gradient from the column gradient dcol (P, kh * kw * C_in): each
    window's values added back where they were read, in tap order (what falls in the
    padding dropped, the cropped rows and columns zero)."""
    (ct, cb, cl, cr), (pt, pb, pl, pr) = _pads(g)
    n, h, w, c = g.x_shape
    hs, ws = h - ct - cb, w - cl - cr
    gxp = np.zeros((n, hs + pt + pb, ws + pl + pr, c), dtype)
    d = dcol.reshape(g.n, g.oh, g.ow, g.kh, g.kw, c)
    for i in range(g.kh):
        for j in range(g.kw):
            _tap(g, gxp, i, j)[...] += d[:, :, :, i, j]
    if gxp.shape == tuple(g.x_shape):
        return gxp
    gx = np.zeros(g.x_shape, dtype)
    gx[:, ct:ct + hs, cl:cl + ws] = gxp[:, pt:pt + hs, pl:pl + ws]
    return gx


def column_refusal(q, what):
    """None, or why q's column matrices (P * kh * kw * C_in values over the call) are
    too large (Tuning.blas_col_bytes)."""
    g = q.g
    col = g.n * g.oh * g.ow * g.k_group * np.dtype(q.dtype).itemsize
    if col > q.tuning.blas_col_bytes:
        return f"{what} of {col} bytes (Tuning.blas_col_bytes: {q.tuning.blas_col_bytes})"
    return None


def pixels_refusal(q, per_pixel):
    """None where q's weight has per_pixel bytes or more per output pixel of the call
    (each weight value serves too few pixels for the kernels that pack it per call),
    else the reason."""
    g = q.g
    pixels = g.n * g.oh * g.ow
    weight = g.k_group * g.c_out * np.dtype(q.dtype).itemsize
    if weight < pixels * per_pixel:
        return (f"{pixels} output pixels use the weight of {weight} bytes enough for "
                "the kernels that pack it per call")
    return None


class Im2colBlas(Algorithm):
    """Any channels_last convolution of one group as products over its column matrix
    on NumPy's BLAS (see the module's docstring); the default where the weight has
    Tuning.blas_weight_bytes_per_pixel or more per output pixel of the call (batch 1
    at a network's last stages: ResNet's and VGG's 3x3 layers at 14x14 and 7x7 with
    512-1024 channels)."""
    name = "im2col_blas"
    passes = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
    on_layout = True   # takes the weight in the call's layout
    relu6 = True       # (bias_act: act 2)
    over = " over a column matrix"   # (in details)

    def _supports(self, q):
        g = q.g
        if not g.channels_last:
            return "channels_first (the column matrix's rows are channels_last pixels)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        return column_refusal(q, "a column matrix")

    def declines(self, q):
        return pixels_refusal(q, q.tuning.blas_weight_bytes_per_pixel)

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype, n_per=partials_of(q), isa=q.isa)

    def details(self, plan):
        g = plan.g
        p, k = g.n * g.oh * g.ow, g.k_group
        m, k, n = {FORWARD: (p, k, g.c_out), GRAD_INPUT: (p, g.c_out, k),
                   GRAD_WEIGHT: (k, p, g.c_out)}[plan.pass_]
        return [f"({m}, {k}) @ ({k}, {n}) on NumPy's BLAS{self.over}"]

    def forward_layout(self, plan, x, weight, bias, relu, tanh):
        g, t = plan.g, _tuning.current()
        p = g.n * g.oh * g.ow
        y = _arena.empty((p, g.c_out), plan.dtype)
        if y.size:
            _product(columns(g, x), weight.reshape(g.k_group, g.c_out), y, t,
                     _output_pass(bias, int(relu), g.c_out))
        if tanh:
            _activations._tanh_inplace(y)
        return y.reshape(g.y_shape)

    def grad_input_layout(self, plan, grad_y, weight):
        """(The caller runs no pass of an empty grad_y or x.)"""
        g, t = plan.g, _tuning.current()
        p = g.n * g.oh * g.ow
        direct = pointwise_refusal(g) is None   # (the column gradient is grad_x)
        dcol = (_arena.empty if direct else np.empty)((p, g.k_group), plan.dtype)
        _product(np.ascontiguousarray(grad_y).reshape(p, g.c_out),
                 weight.reshape(g.k_group, g.c_out).T, dcol, t)
        return dcol.reshape(g.x_shape) if direct else add_columns(g, dcol, plan.dtype)

    def grad_weight_layout(self, plan, grad_y, x, with_bias):
        """col^T @ grad_y (the caller runs no weight gradient of an empty shape)."""
        g, t = plan.g, _tuning.current()
        p = g.n * g.oh * g.ow
        gw = _reduction_product(columns(g, x),
                                np.ascontiguousarray(grad_y).reshape(p, g.c_out),
                                t).reshape(g.weight_shape)
        gb = grad_bias(g, grad_y, plan.dtype, plan.n_per) if with_bias else None
        return gw, gb


class PointwiseBlas(Im2colBlas):
    """(P, C_in) @ (C_in, C_out) on NumPy's BLAS where the batch has fewer pixels than a
    pixel-row tile (batch-1 latency at a network's last stages: the tiles would be
    mostly empty), every pass where C_out is at most Tuning.pointwise_blas_max_c_out
    (a segmentation head's 1x1: the kernels' output vectors would be mostly empty),
    the input gradient where the weight is too large for the L2 cache (the pixel-row
    kernels pack it on every call and stream all of it for every image; the BLAS
    keeps blocks of it in cache), and a forward whose weight is packed on the call
    (not kept packed, as inference keeps it: a training step, a functional call) over
    fewer than half Tuning.pointwise_pack_pixels pixels, or fewer than that with a
    large weight: packing the weight costs the kernels more than those few pixels'
    products."""
    name = "pointwise_blas"
    over = ""   # (its column matrix is x's pixels, copied none)

    def _supports(self, q):
        return pointwise_refusal(q.g)

    def declines(self, q):
        g = q.g
        if g.c_out <= q.tuning.pointwise_blas_max_c_out:
            return None   # (every kernel's output tile would be mostly empty lanes)
        if q.pass_ == GRAD_WEIGHT:
            return ("the pixel-row weight gradient's partial sums are as fast "
                    "(docs/design/algorithms.md)")
        pixels, mr = g.n * g.oh * g.ow, pixel_tile(q.dtype)[0]
        if pixels < mr:
            return None   # (the pixel-row tiles would be mostly empty)
        weight = g.c_in * g.c_out * np.dtype(q.dtype).itemsize
        large = weight > q.tuning.pointwise_weight_bytes
        if q.pass_ == GRAD_INPUT and large:
            return None
        few = q.tuning.pointwise_pack_pixels
        if q.pass_ == FORWARD and not q.packed and (2 * pixels < few or
                                                    (pixels < few and large)):
            return None   # (the kernels would pack the weight for these few pixels)
        reason = f"{pixels} pixels fill the {mr}-pixel tiles of the pixel-row kernels"
        if q.pass_ == FORWARD:
            return reason + (", which read the weight packed once for inference"
                             if q.packed else ", enough to pay for packing the weight")
        return reason + f" and the weight of {weight} bytes stays in the L2 cache"
