"""Dense convolutions: a window covering the whole unpadded input gives one output
pixel (LeNet-5's C5), i.e. a dense layer (N, K) @ (K, C_out) with K = C*kh*kw.

``dense`` runs it as the Dense layer's product (_blas._product) while it is small
enough for one BLAS thread, where that beats the convolution kernels; ``dense_1x1``
runs it on the convolution kernels as a 1x1 convolution across the batch (in
channels_last a few images of one row of N / chunks pixels, which the pixel-row kernels
take; otherwise N images of one pixel).  Both give the same bits on any thread count
(docs/design/algorithms.md)."""
import numpy as np

from .... import _blas
from .... import activations as _activations
from ..plan import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Algorithm, Plan, select
from .common import grad_bias, images_per_partial, pixel_tile
from .pixel import rows_refusal

_ALL = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)


def dense_weight(g, weight):
    """The weight (in g's layout) as the (K, C_out) matrix of x.reshape(N, K) @ it."""
    if g.channels_last:
        return weight.reshape(g.k_group, g.c_out)
    return weight.reshape(g.c_out, g.k_group).T


def dense_chunks(n, mr):
    """Images (at least 2, for the threads) of one row each that a batch of n dense
    rows is cut into for the pixel-row kernels: the count dividing n whose rows waste
    least when rounded up to mr-row tiles (ties: more images).  None when no count
    gives rows of at least mr pixels (odd or small batches)."""
    best, best_waste = None, None
    for chunks in range(2, min(n, 16) + 1):
        rows = n // chunks
        if n % chunks or rows < mr:
            continue
        waste = -(-rows // mr) * mr / rows
        if best is None or waste <= best_waste + 1e-12:
            best, best_waste = chunks, waste
    return best


def as_1x1(g, dtype):
    """The 1x1 convolution dense_1x1 runs the dense geometry g as."""
    if g.channels_last:
        chunks = dense_chunks(g.n, pixel_tile(dtype)[0])
        if chunks is not None:
            d = g.as_dense(chunks, g.n // chunks, True)
            if rows_refusal(d, dtype) is None:
                return d
    return g.as_dense(g.n, 1, g.channels_last)


def _not_dense(g):
    if g.is_dense:
        return None
    return "not one output pixel of a window covering the whole unpadded input"


def _tanh_if(y, tanh):
    return _activations._tanh_inplace(y) if tanh else y


class Dense(Algorithm):
    """The Dense layer's product on one BLAS thread (or fastconv's product kernel)."""
    name = "dense"
    passes = _ALL
    on_layout = True   # takes the weight in the call's layout

    def _supports(self, q):
        return _not_dense(q.g)

    def declines(self, q):
        g = q.g
        macs = g.n * g.k_group * g.c_out
        if macs >= q.tuning.blas_serial_macs:
            return (f"{macs} multiply-adds, too many for one BLAS thread (the parallel "
                    "kernels take it)")
        return None

    def plan(self, q):
        return Plan(q.pass_, self, q.g, q.dtype,
                    n_per=images_per_partial(q.g, np.dtype(q.dtype).itemsize, q.tuning),
                    isa=q.isa)

    def details(self, plan):
        g = plan.g
        return [f"({g.n}, {g.k_group}) @ ({g.k_group}, {g.c_out}) on one BLAS thread"]

    def forward_layout(self, plan, x, weight, bias, relu, tanh):
        g = plan.g
        y = _blas._product(x.reshape(g.n, g.k_group), dense_weight(g, weight), bias)
        if relu:
            np.maximum(y, 0, out=y)  # NaN stays NaN, as in the kernels
        return _tanh_if(y, tanh).reshape(g.y_shape)

    def grad_input_layout(self, plan, grad_y, weight):
        g = plan.g
        gx = _blas._product(grad_y.reshape(g.n, g.c_out), dense_weight(g, weight).T)
        return gx.reshape(g.x_shape)

    def grad_weight_layout(self, plan, grad_y, x, with_bias):
        g = plan.g
        gw = _blas._product(x.reshape(g.n, g.k_group).T, grad_y.reshape(g.n, g.c_out))
        gw = gw.reshape(g.weight_shape) if g.channels_last else np.ascontiguousarray(
            gw.T).reshape(g.weight_shape)
        gb = grad_bias(g, grad_y, plan.dtype, plan.n_per) if with_bias else None
        return gw, gb


class Dense1x1(Algorithm):
    """The dense product as a 1x1 convolution on the kernels (the plan's run_g)."""
    name = "dense_1x1"
    passes = _ALL
    rewrites = True

    def _supports(self, q):
        return _not_dense(q.g)

    def plan(self, q):
        d = as_1x1(q.g, q.dtype)
        inner = select(d, q.dtype, q.pass_, q.finite, None, forced=False)
        return Plan(q.pass_, self, q.g, q.dtype, run_g=d, inner=inner,
                    n_per=images_per_partial(q.g, np.dtype(q.dtype).itemsize, q.tuning),
                    isa=q.isa)

    def details(self, plan):
        d = plan.run_g
        return [f"as {d.n} image(s) of {d.h}x{d.w} pixels"]
