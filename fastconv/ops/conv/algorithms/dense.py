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
from .common import grad_bias, partials_of, pixel_tile
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
                    n_per=partials_of(q),
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

    def run_geometry(self, g, dtype):
        """The 1x1 convolution the call runs as."""
        return as_1x1(g, dtype)

    def plan(self, q):
        d = self.run_geometry(q.g, q.dtype)
        # (packed: the rows are for the kernels; whether packing the weight on the
        # call pays was pointwise_blas's to decide for the call itself)
        inner = select(d, q.dtype, q.pass_, q.finite, None, forced=False, packed=True)
        return Plan(q.pass_, self, q.g, q.dtype, run_g=d, inner=inner,
                    n_per=partials_of(q),
                    isa=q.isa)

    def details(self, plan):
        d = plan.run_g
        return [f"as {d.n} image(s) of {d.h}x{d.w} pixels"]


def _tile_waste(pixels, mr):
    """Tile rows computed per useful output pixel when `pixels` pixels are cut into
    tiles of mr."""
    return -(-pixels // mr) * mr / pixels


def pointwise_refusal(g):
    """None where g is a pointwise convolution that a reshape makes one product over
    the whole batch: channels_last, a 1x1 kernel, stride 1, no padding, one group."""
    if not g.channels_last:
        return "channels_first (the batch's pixels are not one matrix)"
    if (g.kh, g.kw) != (1, 1):
        return f"a {g.kh}x{g.kw} kernel (1x1 only)"
    if (g.sy, g.sx) != (1, 1):
        return f"stride {g.sy}x{g.sx} (needs 1)"
    if any((g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)):
        return "padding (none allowed)"
    if g.groups != 1:
        return f"{g.groups} groups (one group only)"
    return None


#: a pointwise weight above this many bytes runs as one row of all the batch's pixels
#: (where its output channels make two pixel-row blocks or more): each chunk reads the
#: whole weight from L2 or memory again, and the pixel-row driver splits one image's
#: channel blocks over the threads anyway (docs/design/algorithms.md, pointwise)
ONE_ROW_WEIGHT_BYTES = 256 * 1024


def as_rows(g, dtype):
    """The pointwise g as a 1x1 convolution of a few images of one long row each (the
    batch's pixels in order: x.reshape is free), cut as dense_chunks cuts a batch, or
    of one row where the weight is large (ONE_ROW_WEIGHT_BYTES); None where no cut
    gives rows the pixel-row kernels take."""
    pixels = g.n * g.oh * g.ow
    mr, nr = pixel_tile(dtype)
    weight = g.c_in * g.c_out * np.dtype(dtype).itemsize
    if pixels >= mr and weight > ONE_ROW_WEIGHT_BYTES and g.c_out > nr:
        chunks = 1
    else:
        chunks = dense_chunks(pixels, mr)
    if chunks is None:
        return None
    d = g.as_dense(chunks, pixels // chunks, True)
    return d if rows_refusal(d, dtype) is None else None


class Pointwise(Dense1x1):
    """A 1x1 convolution in channels_last is one (pixels, C_in) @ (C_in, C_out) product
    over the whole batch: run on the pixel-row kernels as a few long rows (the plan's
    run_g), where the images' own rows would leave the tiles partly empty (images of a
    few pixels: MobileNet's last stages, 7x7 and smaller)."""
    name = "pointwise"

    def _supports(self, q):
        reason = pointwise_refusal(q.g)
        if reason is None and as_rows(q.g, q.dtype) is None:
            reason = (f"{q.g.n * q.g.oh * q.g.ow} pixels make no rows the pixel-row "
                      "kernels take")
        return reason

    def declines(self, q):
        g, mr = q.g, pixel_tile(q.dtype)[0]
        d = as_rows(g, q.dtype)
        own, rows = _tile_waste(g.oh * g.ow, mr), _tile_waste(d.ow, mr)
        if rows_refusal(g, q.dtype) is None and own <= rows * 1.0625:
            return (f"the images' own {g.oh}x{g.ow} pixels fill the {mr}-pixel tiles "
                    f"as well ({own:.3f} rows per pixel against {rows:.3f})")
        return None

    def run_geometry(self, g, dtype):
        return as_rows(g, dtype)
