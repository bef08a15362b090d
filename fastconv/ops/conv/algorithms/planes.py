"""Channels_first 1x1 convolutions as NumPy's BLAS products over the planes
(docs/design/algorithms.md, "planes_blas").

In channels_first a 1x1 convolution of one group without padding is, image by image,
one product: y[n] (C_out, P) = w (C_out, C_in) @ x[n] (C_in, P), with P = oh * ow the
image's output pixels in order (a stride first takes every s-th row and column of x
into a copy).  Its gradients are grad_x[n] = w^T @ grad_y[n] (put into zeros at the
strided pixels) and grad_w = sum over n of grad_y[n] @ x[n]^T.  The channels_first
kernels (shifted) read the planes in place too, but the BLAS packs both operands into
cache-sized blocks and runs near the matrix-product peak, where the products are
large enough (``Tuning.planes_min_macs`` per image: the default from there).

Forward and input gradient: each image's product, at batch 1 cut in bands of its
output's longer side (rows of channels or columns of pixels, how many from the
product's size alone, at most Tuning.planes_bands), one-thread BLAS products
started on the kernels' OpenMP threads (_blas.run_products): the same bits on any
thread count.  Weight gradient: at batch 1 one product in bands (at most
planes_bands) of its reduction, partial sums added in order (blas._reduction_product),
the default; over a batch (forced only: there the kernels' partial sums are as fast)
one partial sum per group of images (the groups common.images_per_partial makes),
each group's products added in order on one thread, the partials added in order.
Workspace: the strided copy of x (N * C_in * P values), the partials (groups x C_out
x C_in).  Bias and the activation follow the products in compiled passes over y.
"""
import numpy as np

from .... import _arena, _blas, _ext
from .... import activations as _activations
from .... import tuning as _tuning
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan
from .blas import _parts, _reduction_product
from .common import grad_bias, partials_of, sum_partials

__all__ = ["PlanesBlas"]


def _sampled(g, x):
    """x (N, C_in, H, W) at g's output pixels as (N, C_in, P): x itself reshaped at
    stride 1, else a copy of every sy-th row and sx-th column."""
    if (g.sy, g.sx) == (1, 1):
        return np.ascontiguousarray(x).reshape(g.n, g.c_in, -1)
    xs = x[:, :, :(g.oh - 1) * g.sy + 1:g.sy, :(g.ow - 1) * g.sx + 1:g.sx]
    return np.ascontiguousarray(xs).reshape(g.n, g.c_in, -1)


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


def _products(w, xs, dtype, t):
    """w (K, C) @ xs[i] (C, P) for every image into a new arena array (N, K, P)."""
    y = _arena.empty((xs.shape[0], w.shape[0], xs.shape[2]), dtype)
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
    """A channels_first 1x1 convolution of one group without padding (any stride) as
    BLAS products over each image's planes (see the module's docstring): the default
    for every such call with Tuning.planes_min_macs or more per image, where the
    channels_first kernels (shifted; im2col and the scatter at a stride) run below
    the BLAS's speed."""
    name = "planes_blas"
    passes = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)
    on_layout = True   # takes the weight in the call's layout
    relu6 = True       # (the output pass's act 2)

    def _supports(self, q):
        g = q.g
        if g.channels_last:
            return "channels_last (pointwise_blas takes the batch's pixels as one matrix)"
        if (g.kh, g.kw) != (1, 1):
            return f"a {g.kh}x{g.kw} kernel (1x1 only)"
        if any((g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)):
            return "padding (none allowed)"
        if g.groups != 1:
            return f"{g.groups} groups (one group only)"
        return None

    def declines(self, q):
        g = q.g
        macs = g.c_in * g.c_out * g.oh * g.ow
        if macs < q.tuning.planes_min_macs:
            return (f"{macs} multiply-adds per image (Tuning.planes_min_macs: "
                    f"{q.tuning.planes_min_macs}): each product's call and packing "
                    "would cost more than the kernels' whole image")
        if q.pass_ == GRAD_WEIGHT and g.n > 1:
            return ("a batch: the channels_first kernels' partial sums over its images "
                    "are as fast (docs/design/algorithms.md)")
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype, n_per=partials_of(q), isa=q.isa)

    def details(self, plan):
        g = plan.g
        p = g.oh * g.ow
        if plan.pass_ == GRAD_WEIGHT:
            per = "" if g.n == 1 else f", partial sums of {plan.n_per} images"
            return [f"{g.n} x ({g.c_out}, {p}) @ ({p}, {g.c_in}) on NumPy's BLAS{per}"]
        k, c = (g.c_out, g.c_in) if plan.pass_ == FORWARD else (g.c_in, g.c_out)
        return [f"{g.n} x ({k}, {c}) @ ({c}, {p}) on NumPy's BLAS"]

    def forward_layout(self, plan, x, weight, bias, relu, tanh):
        g, t = plan.g, _tuning.current()
        if g.n * g.c_out * g.oh * g.ow == 0:
            return _arena.empty(g.y_shape, plan.dtype)
        y = _products(weight.reshape(g.c_out, g.c_in), _sampled(g, x), plan.dtype, t)
        _output_pass(y, bias, int(relu), plan.dtype)
        if tanh:
            _activations._tanh_inplace(y)
        return y.reshape(g.y_shape)

    def grad_input_layout(self, plan, grad_y, weight):
        """(The caller runs no pass of an empty grad_y or x.)"""
        g, t = plan.g, _tuning.current()
        gy = np.ascontiguousarray(grad_y).reshape(g.n, g.c_out, -1)
        gxs = _products(weight.reshape(g.c_out, g.c_in).T, gy, plan.dtype, t)
        if (g.sy, g.sx) == (1, 1):
            return gxs.reshape(g.x_shape)
        gx = np.zeros(g.x_shape, plan.dtype)
        gx[:, :, :(g.oh - 1) * g.sy + 1:g.sy, :(g.ow - 1) * g.sx + 1:g.sx] = \
            gxs.reshape(g.n, g.c_in, g.oh, g.ow)
        return gx

    def grad_weight_layout(self, plan, grad_y, x, with_bias):
        """sum over images of grad_y's planes @ x's planes^T (the caller runs no
        weight gradient of an empty shape)."""
        g, t = plan.g, _tuning.current()
        gy = np.ascontiguousarray(grad_y).reshape(g.n, g.c_out, -1)
        xs = _sampled(g, x)
        if g.n == 1:
            gw = _reduction_product(gy[0].T, xs[0].T, t, t.planes_bands)
        else:
            gw = _image_partials(gy, xs, plan.n_per, plan.dtype)
        gb = grad_bias(g, grad_y, plan.dtype, plan.n_per) if with_bias else None
        return gw.reshape(g.weight_shape), gb
