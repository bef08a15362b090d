# cython: language_level=3
"""Compiled passes of BatchNormalization (fastconv/layers/normalization.py).

An input is seen as (A, C, B) around its channel axis (channels_last: B = 1;
channels_first: A = batch, B = pixels), flattened and C-contiguous, of one dtype.  The
per-channel sums are float64 and deterministic: the A rows are cut into work items that
depend on the shapes only (``n_items``), each item sums its rows into its own row of
``partial``, and the items' rows are added in item order, so the result does not depend
on the thread count.  The training forward reads x twice (sum, then the squares of its
differences to the mean) and writes y once; the backward reads x and the gradient twice
and writes the input gradient once, where NumPy's formulation makes several passes and
temporaries.
"""
from cython.parallel cimport prange

cimport cython

from omp_shim cimport fc_get_max_threads

ctypedef fused floating:
    float
    double

cdef enum:
    # Below this many elements one thread does the whole call.
    _SERIAL_ELEMENTS = 65536


cdef inline int _threads(Py_ssize_t n) noexcept nogil:
    return 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void _item_sums(const floating[::1] x, const floating[::1] g, const double[::1] mean,
                     double[:, ::1] partial, Py_ssize_t item, Py_ssize_t n_items,
                     Py_ssize_t A, Py_ssize_t C, Py_ssize_t B, int mode) noexcept nogil:
    """Item's sums into partial[item, :C] (and [C:2C]).  mode 0: sum of x; 1: sum of
    (x - mean)^2; 2: sum of g and sum of g * (x - mean)."""
    cdef Py_ssize_t a0 = item * A // n_items, a1 = (item + 1) * A // n_items
    cdef Py_ssize_t a, c, b, off
    cdef double s0, s1, s2, s3, t0, t1, t2, t3, d, m
    for c in range(partial.shape[1]):
        partial[item, c] = 0
    for a in range(a0, a1):
        if B == 1:
            off = a * C
            if mode == 0:
                for c in range(C):
                    partial[item, c] += x[off + c]
            elif mode == 1:
                for c in range(C):
                    d = x[off + c] - mean[c]
                    partial[item, c] += d * d
            else:
                for c in range(C):
                    partial[item, c] += g[off + c]
                    partial[item, C + c] += g[off + c] * (x[off + c] - mean[c])
            continue
        for c in range(C):
            off = (a * C + c) * B
            m = mean[c] if mode else 0.0
            s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = 0
            b = 0
            while b + 4 <= B:
                if mode == 0:
                    s0 += x[off + b]
                    s1 += x[off + b + 1]
                    s2 += x[off + b + 2]
                    s3 += x[off + b + 3]
                elif mode == 1:
                    d = x[off + b] - m
                    s0 += d * d
                    d = x[off + b + 1] - m
                    s1 += d * d
                    d = x[off + b + 2] - m
                    s2 += d * d
                    d = x[off + b + 3] - m
                    s3 += d * d
                else:
                    s0 += g[off + b]
                    s1 += g[off + b + 1]
                    s2 += g[off + b + 2]
                    s3 += g[off + b + 3]
                    t0 += g[off + b] * (x[off + b] - m)
                    t1 += g[off + b + 1] * (x[off + b + 1] - m)
                    t2 += g[off + b + 2] * (x[off + b + 2] - m)
                    t3 += g[off + b + 3] * (x[off + b + 3] - m)
                b += 4
            while b < B:
                if mode == 0:
                    s0 += x[off + b]
                elif mode == 1:
                    d = x[off + b] - m
                    s0 += d * d
                else:
                    s0 += g[off + b]
                    t0 += g[off + b] * (x[off + b] - m)
                b += 1
            partial[item, c] += (s0 + s1) + (s2 + s3)
            if mode == 2:
                partial[item, C + c] += (t0 + t1) + (t2 + t3)


def n_items(Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """The work items of the sums over A rows of C * B values (shapes only)."""
    cdef Py_ssize_t per = max(1, 16384 // max(1, C * B))  # rows per item, at least
    return max(1, min(A, 64, (A + per - 1) // per))


@cython.boundscheck(False)
@cython.wraparound(False)
def channel_sums(const floating[::1] x, const floating[::1] g, const double[::1] mean,
                 double[:, ::1] partial, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                 int mode):
    """Per-channel float64 sums of x's (A, C, B) view (see _item_sums for mode);
    partial: (n_items(A, C, B), C or 2C) scratch.  Returns its column sums in item
    order."""
    cdef Py_ssize_t items = partial.shape[0], i, c
    cdef int nt = _threads(A * C * B)
    for i in prange(items, nogil=True, schedule="static", num_threads=nt):
        _item_sums(x, g, mean, partial, i, items, A, C, B, mode)
    out = [0.0] * partial.shape[1]
    cdef double s
    for c in range(partial.shape[1]):
        s = 0
        for i in range(items):
            s = s + partial[i, c]
        out[c] = s
    return out


@cython.boundscheck(False)
@cython.wraparound(False)
def affine(const floating[::1] x, const floating[::1] scale, const floating[::1] shift,
           floating[::1] y, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """y = x * scale[c] + shift[c] over x's (A, C, B) view."""
    cdef Py_ssize_t a, c, b, off
    cdef floating s, t
    cdef int nt = _threads(A * C * B)
    for a in prange(A, nogil=True, schedule="static", num_threads=nt):
        if B == 1:
            for c in range(C):
                y[a * C + c] = x[a * C + c] * scale[c] + shift[c]
        else:
            for c in range(C):
                off = (a * C + c) * B
                s = scale[c]
                t = shift[c]
                for b in range(B):
                    y[off + b] = x[off + b] * s + t


@cython.boundscheck(False)
@cython.wraparound(False)
def backward_input(const floating[::1] g, const floating[::1] x,
                   const floating[::1] mean, const floating[::1] a_g,
                   const floating[::1] a_x, const floating[::1] const_,
                   floating[::1] dx, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """dx = g * a_g[c] + (x - mean[c]) * a_x[c] + const_[c] over the (A, C, B) view:
    batch normalization's input gradient in training, one pass."""
    cdef Py_ssize_t a, c, b, off
    cdef floating m, p, q, r
    cdef int nt = _threads(A * C * B)
    for a in prange(A, nogil=True, schedule="static", num_threads=nt):
        if B == 1:
            for c in range(C):
                dx[a * C + c] = (g[a * C + c] * a_g[c] +
                                 (x[a * C + c] - mean[c]) * a_x[c]) + const_[c]
        else:
            for c in range(C):
                off = (a * C + c) * B
                m = mean[c]
                p = a_g[c]
                q = a_x[c]
                r = const_[c]
                for b in range(B):
                    dx[off + b] = (g[off + b] * p + (x[off + b] - m) * q) + r
