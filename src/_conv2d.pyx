# cython: language_level=3
"""Compiled conv2d helpers: im2col and col2im for both layouts.

The public ops in fastconv/conv.py lower a convolution to matrix products done by the
BLAS under NumPy; these kernels build the column matrix (im2col) and scatter its
gradient back (col2im).  They trust their inputs: C-contiguous arrays of one floating
dtype, shapes already checked by the caller.  They release the GIL and split work over
OpenMP threads (or run serially in a build without OpenMP); each thread writes its own
rows of the output, so results do not depend on the thread count.

Column layouts (nb = images in the chunk, P = oh * ow, K = C * kh * kw):

- channels_first: col[(c, ki, kj), (i, oy, ox)], shape (K, nb * P): the right operand of
  weight (C_out, K) @ col (K, nb * P) -> (C_out, nb * P), one product for the chunk.
- channels_last:  col[(i, oy, ox), (g, ki, kj, cg)], shape (nb * P, K): the left operand
  of col (nb * P, K) @ weight (K, C_out) -> y (nb * P, C_out), channels_last already.
"""
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

cimport cython

ctypedef fused floating:
    float
    double


cdef inline Py_ssize_t _first_inside(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """Smallest o >= 0 with o * stride + offset >= 0."""
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t _end_inside(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t n,
                                   Py_ssize_t limit) noexcept nogil:
    """One past the largest o < limit with o * stride + offset < n (at least 0)."""
    cdef Py_ssize_t e
    if offset >= n:
        return 0
    e = (n - 1 - offset) // stride + 1
    return e if e < limit else limit


@cython.boundscheck(False)
@cython.wraparound(False)
def im2col_nchw(const floating[:, :, :, ::1] x, floating[:, ::1] col, Py_ssize_t n0,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top, Py_ssize_t pad_left,
                Py_ssize_t oh, Py_ssize_t ow):
    """col[:, i * P:(i + 1) * P] = columns of image x[n0 + i], channels_first layout."""
    cdef Py_ssize_t P = oh * ow, nb = col.shape[1] // P
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t i, c, ki, kj, oy, ox, iy, ix0, row, lo, hi
    cdef floating *dst
    cdef const floating *src
    for i in prange(nb, nogil=True, schedule="static"):
        for c in range(C):
            for ki in range(kh):
                for kj in range(kw):
                    row = (c * kh + ki) * kw + kj
                    ix0 = kj * dx - pad_left
                    lo = _first_inside(ix0, sx)
                    hi = _end_inside(ix0, sx, W, ow)
                    if hi < lo:
                        hi = lo
                    for oy in range(oh):
                        dst = &col[row, i * P + oy * ow]
                        iy = oy * sy + ki * dy - pad_top
                        if iy < 0 or iy >= H or lo >= hi:
                            memset(dst, 0, ow * sizeof(floating))
                            continue
                        if lo > 0:
                            memset(dst, 0, lo * sizeof(floating))
                        if hi < ow:
                            memset(dst + hi, 0, (ow - hi) * sizeof(floating))
                        src = &x[n0 + i, c, iy, 0]
                        if sx == 1:
                            memcpy(dst + lo, src + lo + ix0, (hi - lo) * sizeof(floating))
                        else:
                            for ox in range(lo, hi):
                                dst[ox] = src[ox * sx + ix0]


@cython.boundscheck(False)
@cython.wraparound(False)
def col2im_nchw(const floating[:, ::1] col, floating[:, :, :, ::1] gx, Py_ssize_t n0,
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top, Py_ssize_t pad_left,
                Py_ssize_t oh, Py_ssize_t ow):
    """gx[n0 + i] += scatter of image i's columns (the adjoint of im2col_nchw).

    gx is pre-zeroed.  Parallel over images, so no two threads add into one element.
    """
    cdef Py_ssize_t P = oh * ow, nb = col.shape[1] // P
    cdef Py_ssize_t C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t i, c, ki, kj, oy, ox, iy, ix0, row, lo, hi
    cdef const floating *src
    cdef floating *dst
    for i in prange(nb, nogil=True, schedule="static"):
        for c in range(C):
            for ki in range(kh):
                for kj in range(kw):
                    row = (c * kh + ki) * kw + kj
                    ix0 = kj * dx - pad_left
                    lo = _first_inside(ix0, sx)
                    hi = _end_inside(ix0, sx, W, ow)
                    for oy in range(oh):
                        iy = oy * sy + ki * dy - pad_top
                        if iy < 0 or iy >= H:
                            continue
                        src = &col[row, i * P + oy * ow]
                        dst = &gx[n0 + i, c, iy, 0]
                        for ox in range(lo, hi):
                            dst[ox * sx + ix0] += src[ox]


@cython.boundscheck(False)
@cython.wraparound(False)
def im2col_nhwc(const floating[:, :, :, ::1] x, floating[:, ::1] col, Py_ssize_t n0,
                Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy,
                Py_ssize_t sx, Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top,
                Py_ssize_t pad_left, Py_ssize_t oh, Py_ssize_t ow):
    """col[(i, oy, ox)] = window of x[n0 + i] at (oy, ox), channels_last layout."""
    cdef Py_ssize_t rows = col.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t cg = C // groups, P = oh * ow
    cdef Py_ssize_t r, n, p, oy, ox, g, ki, kj, iy, ix
    cdef floating *dst
    for r in prange(rows, nogil=True, schedule="static"):
        n = n0 + r // P
        p = r % P
        oy = p // ow
        ox = p % ow
        dst = &col[r, 0]
        for g in range(groups):
            for ki in range(kh):
                iy = oy * sy + ki * dy - pad_top
                for kj in range(kw):
                    ix = ox * sx + kj * dx - pad_left
                    if iy < 0 or iy >= H or ix < 0 or ix >= W:
                        memset(dst, 0, cg * sizeof(floating))
                    else:
                        memcpy(dst, &x[n, iy, ix, g * cg], cg * sizeof(floating))
                    dst = dst + cg


@cython.boundscheck(False)
@cython.wraparound(False)
def col2im_nhwc(const floating[:, ::1] col, floating[:, :, :, ::1] gx, Py_ssize_t n0,
                Py_ssize_t groups, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy,
                Py_ssize_t sx, Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top,
                Py_ssize_t pad_left, Py_ssize_t oh, Py_ssize_t ow):
    """gx[n0 + i] += scatter of the rows of col for image i; gx pre-zeroed.

    Parallel over images: every row of one image is handled by one thread, so no two
    threads ever add into the same element of gx.
    """
    cdef Py_ssize_t P = oh * ow, nb = col.shape[0] // P
    cdef Py_ssize_t H = gx.shape[1], W = gx.shape[2], C = gx.shape[3], cg = C // groups
    cdef Py_ssize_t i, p, oy, ox, g, ki, kj, iy, ix, c
    cdef const floating *src
    cdef floating *dst
    for i in prange(nb, nogil=True, schedule="static"):
        for p in range(P):
            oy = p // ow
            ox = p % ow
            src = &col[i * P + p, 0]
            for g in range(groups):
                for ki in range(kh):
                    iy = oy * sy + ki * dy - pad_top
                    for kj in range(kw):
                        ix = ox * sx + kj * dx - pad_left
                        if iy >= 0 and iy < H and ix >= 0 and ix < W:
                            dst = &gx[n0 + i, iy, ix, g * cg]
                            for c in range(cg):
                                dst[c] += src[c]
                        src = src + cg
