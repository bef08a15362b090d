"""Channels_first convolutions as NumPy's BLAS products over each image's planes
(docs/design/algorithms.md, "planes_blas").

In channels_first a 1x1 convolution of one group without padding is, image by image,
one product: y[n] (C_out, P) = w (C_out, C_in) @ x[n] (C_in, P), with P = oh * ow the
image's output pixels in order (a stride first takes every s-th row and column of x
into a copy).  Its gradients are grad_x[n] = w^T @ grad_y[n] (put into zeros at the
strided pixels) and grad_w = sum over n of grad_y[n] @ x[n]^T.  The channels_first
kernels (shifted) read the planes in place too, but the BLAS packs both operands into
cache-sized blocks and runs near the matrix-product peak, where the products are
large enough (``Tuning.planes_min_macs`` per image: the default from there).

Any other kernel is the same products over each image's column matrix col[n]
(C_in * kh * kw, P), row (c, i, j) what tap (i, j) of channel c reads at every output
pixel (zero in the padding): w reshaped (C_out, C_in * kh * kw) is the weight in its
own layout, no copy; the input gradient adds the columns' gradient w^T @ grad_y[n]
back tap by tap.  The default where the weight has
``Tuning.planes_weight_bytes_per_pixel`` or more per output pixel of the call (a
network's last stages at batch 1 to 4): every kernel that packs the weight per call
streams all of it for few pixels.

Forward and input gradient: each image's product, at batch 1 cut in bands of its
output's longer side (rows of channels or columns of pixels, how many from the
product's size alone, at most Tuning.planes_bands), one-thread BLAS products
started on the kernels' OpenMP threads (_blas.run_products): the same bits on any
thread count.  Weight gradient: at batch 1 one product in bands (at most
planes_bands) of its reduction, partial sums added in order (blas._reduction_product);
over a batch one partial sum per group of images (the groups
common.images_per_partial makes), each group's products added in order on one
thread, the partials added in order (1x1 calls decline it: there the kernels'
partial sums are as fast).  Workspace: the column matrices (N * C_in * kh * kw * P
values; for a 1x1 call the strided copy of x or none), the partials (groups x C_out x
C_in * kh * kw).  Bias and the activation follow the products in compiled passes
over y.
"""
import numpy as np

from .... import _arena, _blas, _ext
from .... import activations as _activations
from .... import tuning as _tuning
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .blas import _pads, _parts, _reduction_product, column_refusal, pixels_refusal
from .common import grad_bias, partials_of, sum_partials

__all__ = ["PlanesBlas"]


def _pointwise(g):
    """Whether g is a 1x1 convolution without padding (its columns are x's pixels,
    sampled at a stride)."""
    return ((g.kh, g.kw) == (1, 1) and
            not any((g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)))


def _taps(g, xp):
    """(i, j, view): per kernel tap, the view of padded xp (N, C, ., .) its windows
    read, (N, C, oh, ow)."""
    for i in range(g.kh):
        for j in range(g.kw):
            y0, x0 = i * g.dy, j * g.dx
            yield i, j, xp[:, :, y0:y0 + (g.oh - 1) * g.sy + 1:g.sy,
                           x0:x0 + (g.ow - 1) * g.sx + 1:g.sx]


def _columns(g, x):
    """x (N, C_in, H, W) as each image's column matrix (N, C_in * kh * kw, P): row
    (c, i, j) holds what tap (i, j) of channel c reads at every output pixel, zero
    in the padding (x itself reshaped for a 1x1 call at stride 1)."""
    if _pointwise(g) and (g.sy, g.sx) == (1, 1):
        return np.ascontiguousarray(x).reshape(g.n, g.c_in, -1)
    (ct, cb, cl, cr), (pt, pb, pl, pr) = _pads(g)
    xs = x[:, :, ct:g.h - cb, cl:g.w - cr]
    if any((pt, pb, pl, pr)):
        xp = np.zeros(xs.shape[:2] + (xs.shape[2] + pt + pb, xs.shape[3] + pl + pr),
                      x.dtype)
        xp[:, :, pt:pt + xs.shape[2], pl:pl + xs.shape[3]] = xs
    else:
        xp = xs
    col = np.empty((g.n, g.c_in, g.kh, g.kw, g.oh, g.ow), x.dtype)
    for i, j, tap in _taps(g, xp):
        col[:, :, i, j] = tap
    return col.reshape(g.n, g.c_in * g.kh * g.kw, -1)


def _add_columns(g, dcol, dtype):
    """grad_x (N, C_in, H, W) from the columns' gradient dcol (N, C_in * kh * kw, P):
    each tap's values added back where it read them, in tap order (what falls in
    the padding dropped, cropped rows and columns zero)."""
    if _pointwise(g) and (g.sy, g.sx) == (1, 1):
        return dcol.reshape(g.x_shape)
    (ct, cb, cl, cr), (pt, pb, pl, pr) = _pads(g)
    hs, ws = g.h - ct - cb, g.w - cl - cr
    gxp = np.zeros((g.n, g.c_in, hs + pt + pb, ws + pl + pr), dtype)
    d = dcol.reshape(g.n, g.c_in, g.kh, g.kw, g.oh, g.ow)
    for i, j, tap in _taps(g, gxp):
        tap += d[:, :, i, j]
    if gxp.shape == tuple(g.x_shape):
        return gxp
    gx = np.zeros(g.x_shape, dtype)
    gx[:, :, ct:ct + hs, cl:cl + ws] = gxp[:, :, pt:pt + hs, pl:pl + ws]
    return gx


def _per_image(w, xs, ys, t):
    """ys[i] = w @ xs[i] for each image, the batch's products cut into at most
    Tuning.planes_bands bands (as many as the product's size asks: _parts) of their
    output's longer side (rows or columns, aligned to 16)."""
    n, k, p = ys.shape
    per = max(1, min(_parts(n * k * w.shape[1] * p, t), t.planes_bands) // n)
    rows = k >= p
    edges = _blas.bands(k if rows else p, per, 16)
    bands = list(zip(edges, edges[1:]))
    _blas.run_products([(w[lo:hi], xs[i], ys[i, lo:hi]) if rows else
                        (w, xs[i][:, lo:hi], ys[i][:, lo:hi])
                        for i in range(n) for lo, hi in bands])


def _products(w, xs, dtype, t, empty=_arena.empty):
    """w (K, C) @ xs[i] (C, P) for every image into a new array (N, K, P) of empty
    (the pass's arena, or NumPy's for what the pass should not hold)."""
    y = empty((xs.shape[0], w.shape[0], xs.shape[2]), dtype)
    _per_image(w, xs, y, t)
    return y


def _image_partials(gy, xs, n_per, dtype):
    """sum over i of gy[i] (K, P) @ xs[i]^T (P, C): a partial sum per group of n_per
    images (its products added in order, on one thread), the partials added in order:
    the same bits on any thread count."""
    n, k, c = gy.shape[0], gy.shape[1], xs.shape[1]
    edges = list(range(0, n, n_per)) + [n]
    part = np.empty((len(edges) - 1, k, c), dtype)
    scratch = np.empty_like(part) if n_per > 1 else None

    def rest(j, lo, hi):
        def run(total):
            for i in range(lo + 1, hi):
                np.matmul(gy[i], xs[i].T, out=scratch[j])
                total += scratch[j]
        return run
    _blas.run_products([(gy[lo], xs[lo].T, part[j], rest(j, lo, hi))
                        for j, (lo, hi) in enumerate(zip(edges, edges[1:]))])
    return sum_partials(part)


def _output_pass(y, bias, act, dtype):
    """y (N, K, P) += bias per channel (the batch normalization kernels' affine pass
    with scale 1: y * 1 is y), then act (0 none, 1 ReLU, 2 ReLU6) as the conv kernels'
    output pass applies it (a clamp: -0.0 and NaN kept), in place."""
    flat = y.reshape(-1)
    if bias is not None:
        n, k, p = y.shape
        _ext.batchnorm.affine_act(flat, np.ones(k, dtype), np.ascontiguousarray(bias, dtype),
                                  flat, n, k, p, 0)
    if act:
        _ext.activations.clamp(flat, 0.0, 6.0 if act == 2 else np.inf, flat)


class PlanesBlas(Algorithm):
    """A channels_first convolution of one group as BLAS products over each image's
    planes (see the module's docstring): the default for 1x1 calls without padding
    with Tuning.planes_min_macs or more per image, where the channels_first kernels
    (shifted; im2col and the scatter at a stride) run below the BLAS's speed, and
    for any other call where the weight has Tuning.planes_weight_bytes_per_pixel or
    more per output pixel (batch 1 at a network's last stages), as im2col_blas is
    for channels_last."""
    name = "planes_blas"
    passes = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
    on_layout = True   # takes the weight in the call's layout
    relu6 = True       # (the output pass's act 2)

    def _supports(self, q):
        g = q.g
        if g.channels_last:
            return "channels_last (pointwise_blas and im2col_blas run those)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        return None if _pointwise(g) else column_refusal(q, "column matrices")

    def declines(self, q):
        g, t = q.g, q.tuning
        if not _pointwise(g):
            return pixels_refusal(q, t.planes_weight_bytes_per_pixel)
        macs = g.c_in * g.c_out * g.oh * g.ow
        if macs < t.planes_min_macs:
            return (f"{macs} multiply-adds per image (Tuning.planes_min_macs: "
                    f"{t.planes_min_macs}): each product's call and packing "
                    "would cost more than the kernels' whole image")
        if q.pass_ == GRAD_WEIGHT and g.n > 1:
            return ("a batch: the channels_first kernels' partial sums over its images "
                    "are as fast (docs/design/algorithms.md)")
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype, n_per=partials_of(q), isa=q.isa)

    def details(self, plan):
        g = plan.g
        p, k = g.oh * g.ow, g.k_group
        over = "" if _pointwise(g) else " over column matrices"
        if plan.pass_ == GRAD_WEIGHT:
            per = "" if g.n == 1 else f", partial sums of {plan.n_per} images"
            return [f"{g.n} x ({g.c_out}, {p}) @ ({p}, {k}) on NumPy's BLAS{over}{per}"]
        m, c = (g.c_out, k) if plan.pass_ == FORWARD else (k, g.c_out)
        return [f"{g.n} x ({m}, {c}) @ ({c}, {p}) on NumPy's BLAS{over}"]

    def forward_layout(self, plan, x, weight, bias, relu, tanh):
        g, t = plan.g, _tuning.current()
        if g.n * g.c_out * g.oh * g.ow == 0:
            return _arena.empty(g.y_shape, plan.dtype)
        y = _products(weight.reshape(g.c_out, g.k_group), _columns(g, x), plan.dtype, t)
        _output_pass(y, bias, int(relu), plan.dtype)
        if tanh:
            _activations._tanh_inplace(y)
        return y.reshape(g.y_shape)

    def grad_input_layout(self, plan, grad_y, weight):
        """(The caller runs no pass of an empty grad_y or x.)"""
        g, t = plan.g, _tuning.current()
        gy = np.ascontiguousarray(grad_y).reshape(g.n, g.c_out, -1)
        direct = _pointwise(g) and (g.sy, g.sx) == (1, 1)   # (the columns are grad_x)
        dcol = _products(weight.reshape(g.c_out, g.k_group).T, gy, plan.dtype, t,
                         _arena.empty if direct else np.empty)
        return _add_columns(g, dcol, plan.dtype)

    def grad_weight_layout(self, plan, grad_y, x, with_bias):
        """sum over images of grad_y's planes @ their columns^T (the caller runs no
        weight gradient of an empty shape)."""
        g, t = plan.g, _tuning.current()
        gy = np.ascontiguousarray(grad_y).reshape(g.n, g.c_out, -1)
        col = _columns(g, x)
        if g.n == 1:
            gw = _reduction_product(gy[0].T, col[0].T, t, t.planes_bands)
        else:
            gw = _image_partials(gy, col, plan.n_per, plan.dtype)
        gb = grad_bias(g, grad_y, plan.dtype, plan.n_per) if with_bias else None
        return gw.reshape(g.weight_shape), gb
