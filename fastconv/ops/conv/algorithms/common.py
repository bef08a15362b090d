"""Helpers the algorithms share: micro-tile sizes, weight packing, aligned buffers,
partial sums added in a fixed order, and the finite-weight check."""
import numpy as np

from .... import _ext

FLOAT64 = np.dtype(np.float64)


def is_f64(dtype):
    return dtype == FLOAT64


def mr_nr(dtype):
    """(MR, NR) of the packed implicit-GEMM micro-kernel for dtype."""
    return _ext.conv2d.micro_tile(dtype == FLOAT64)


def pixel_tile(dtype, half=False):
    return _ext.conv2d.pixel_tile(dtype == FLOAT64, half)


def weight_oihw(g, weight):
    """The weight as (C_out, C_in/groups, kh, kw) whatever the layout."""
    return weight.transpose(3, 2, 0, 1) if g.channels_last else weight


def pack_rows(mat, mr):
    """(G, rows, kc) -> the micro-kernel's A panels (G, ceil(rows/mr), kc, mr), zero-padded
    (flat).  mat may be any strided view (a transpose, a flipped kernel)."""
    groups, rows, kc = mat.shape
    out = np.empty(groups * -(-rows // mr) * kc * mr, mat.dtype)
    _ext.conv2d.pack_rows(mat, out, mr)
    return out


def aligned_zeros(size, dtype, align=64):
    """Zeros whose data starts on an `align`-byte boundary (a vector load of a packed
    row must not straddle two cache lines)."""
    return _aligned(np.zeros, size, dtype, align)


def aligned_empty(size, dtype, align=64):
    """As aligned_zeros, uninitialised."""
    return _aligned(np.empty, size, dtype, align)


def _aligned(alloc, size, dtype, align):
    itemsize = np.dtype(dtype).itemsize
    buf = alloc(size + align // itemsize, dtype)
    start = (-buf.ctypes.data % align) // itemsize
    return buf[start:start + size]


def sum_partials(part):
    """part[0] + part[1] + ... added in this fixed order (in place into part[0]): the
    same sum for any thread count."""
    total = part[0]
    for i in range(1, part.shape[0]):
        total += part[i]
    return total


def bias_total(bsum, dtype):
    """The bias gradient from its float64 partial sums, added in order."""
    return None if bsum is None else bsum.sum(axis=0).astype(dtype)


def grad_bias(g, grad_y, dtype, n_per):
    """grad_y summed over all but C_out: float64 partial sums per group of n_per images,
    added in a fixed order."""
    bsum = np.zeros((-(-g.n // n_per), g.c_out))
    _ext.conv2d.grad_bias(grad_y.reshape(-1), bsum.reshape(-1), g.c, n_per)
    return bias_total(bsum, dtype)


def partials_of(q):
    """images_per_partial of a Query's geometry, dtype and tuning."""
    return images_per_partial(q.g, np.dtype(q.dtype).itemsize, q.tuning)


def images_per_partial(g, itemsize, t):
    """Images per partial weight gradient (shapes only, so the same bits on any thread
    count): at most t.max_weight_partials partials, each covering at least
    t.min_partial_pixels output pixels and at most t.chunk_bytes of grad_y."""
    pixels = max(g.oh * g.ow, 1)
    per_image = max(g.c_out * pixels * itemsize, 1)
    want = max(-(-g.n // t.max_weight_partials), -(-t.min_partial_pixels // pixels))
    return int(max(1, min(want, t.chunk_bytes // per_image, g.n)))


# Non-finite values follow one rule on every path and layout, the reference's
# (fastconv/reference.py) and PyTorch's: each op is the arithmetic of its definition on
# the zero-padded input.  The fast kernels take shortcuts that assume 0 * v == 0
# (skipping rows of padding, gathering over a zero-padded grad_y, running past row
# ends with zeros), so a non-finite weight (checked before) sends the forward and the
# input gradient to the algorithms without shortcuts (their supports() refuse it), and
# a non-finite weight gradient (checked after, so x is not read twice) is recomputed on
# im2col.  (Winograd's NaN in x reaching its whole tile is the one documented
# exception, README "Kernels".)
_ALL_FINITE = {4: _ext.conv2d.all_finite["float"], 8: _ext.conv2d.all_finite["double"]}


def finite(a):
    """True when the ndarray a (float32 or float64) holds no NaN or infinity."""
    flat = a.ravel(order="K")   # (in memory order: a view of a permuted array)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    return _ALL_FINITE[a.dtype.itemsize](flat)
