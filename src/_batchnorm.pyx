# cython: language_level=3
"""Compiled passes of BatchNormalization (fastconv/layers/normalization.py).

An input is seen as (A, C, B) around its channel axis (channels_last: B = 1;
channels_first: A = batch, B = pixels), flattened and C-contiguous, of one dtype.  The
per-channel sums are float64 and deterministic: the A rows are cut into work items that
depend on the shapes only (``n_items``), each item sums its rows into its own row of
``partial``, and the items' rows are added in item order, so the result does not depend
on the thread count.  The training forward reads x twice (the moments about a shift,
then the affine map) and writes y once; the backward reads x and the gradient twice
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


def _check(name, Py_ssize_t size, Py_ssize_t expected):
    if size != expected:
        raise ValueError(f"{name} has {size} values, the kernel expects {expected}")


cdef inline floating _act(floating z, int act) noexcept nogil:
    """The activation act of z (0: none, 1: relu, 2: relu6), as fastconv.activations'
    relu and np.clip(z, 0, 6) round it (NaN propagates, -0.0 becomes +0.0)."""
    if act == 0 or z != z:
        return z
    if not z > 0:
        z = 0
    if act == 2 and not z < 6:
        z = 6
    return z


cdef inline floating _act_grad(floating g, floating y, int act) noexcept nogil:
    """g through the activation act of output y: g (act 0); g where y > 0, else +0
    (relu, as relu_backward); g * (0 < y < 6) (relu6, as relu6_backward)."""
    if act == 1:
        return g if y > 0 else 0
    if act == 2:
        return g * (1 if (y > 0 and y < 6) else 0)
    return g


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void _item_sums(const floating[::1] x, const floating[::1] g, const floating[::1] y,
                     const double[::1] shift, double[:, ::1] partial, Py_ssize_t item,
                     Py_ssize_t n_items, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                     int grad, int act) noexcept nogil:
    """Item's sums into partial[item, :C] and [C:2C], with d = x - shift[c]: the sums
    of d and d * d (grad 0), or of v and v * d (grad 1), v = g through the activation
    act of the output y (_act_grad)."""
    cdef Py_ssize_t a0 = item * A // n_items, a1 = (item + 1) * A // n_items
    cdef Py_ssize_t a, c, b, off
    cdef double s0, s1, s2, s3, t0, t1, t2, t3, d0, d1, d2, d3, m, v0, v1, v2, v3
    cdef double *p1 = &partial[item, 0]
    cdef double *p2 = p1 + C
    cdef const double *sh = &shift[0]
    cdef const floating *xp = &x[0]
    cdef const floating *gp = &g[0]
    cdef const floating *yp = &y[0]
    for c in range(2 * C):
        p1[c] = 0
    if B == 1:
        # channels_last: raw pointers, so the loop over c vectorises
        for a in range(a0, a1):
            off = a * C
            if grad:
                for c in range(C):
                    d0 = xp[off + c] - sh[c]
                    v0 = _act_grad(gp[off + c], yp[off + c], act)
                    p1[c] += v0
                    p2[c] += v0 * d0
            else:
                for c in range(C):
                    d0 = xp[off + c] - sh[c]
                    p1[c] += d0
                    p2[c] += d0 * d0
        return
    for a in range(a0, a1):
        for c in range(C):
            off = (a * C + c) * B
            m = shift[c]
            s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = 0
            b = 0
            while b + 4 <= B:
                d0 = xp[off + b] - m
                d1 = xp[off + b + 1] - m
                d2 = xp[off + b + 2] - m
                d3 = xp[off + b + 3] - m
                if grad:
                    v0 = _act_grad(gp[off + b], yp[off + b], act)
                    v1 = _act_grad(gp[off + b + 1], yp[off + b + 1], act)
                    v2 = _act_grad(gp[off + b + 2], yp[off + b + 2], act)
                    v3 = _act_grad(gp[off + b + 3], yp[off + b + 3], act)
                else:
                    v0, v1, v2, v3 = d0, d1, d2, d3
                s0 += v0
                s1 += v1
                s2 += v2
                s3 += v3
                t0 += v0 * d0
                t1 += v1 * d1
                t2 += v2 * d2
                t3 += v3 * d3
                b += 4
            while b < B:
                d0 = xp[off + b] - m
                v0 = _act_grad(gp[off + b], yp[off + b], act) if grad else d0
                s0 += v0
                t0 += v0 * d0
                b += 1
            p1[c] += (s0 + s1) + (s2 + s3)
            p2[c] += (t0 + t1) + (t2 + t3)


def n_items(Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """The work items of the sums over A rows of C * B values (shapes only)."""
    cdef Py_ssize_t per = max(1, 16384 // max(1, C * B))  # rows per item, at least
    return max(1, min(A, 64, (A + per - 1) // per))


def channel_sums(const floating[::1] x, const floating[::1] g, const double[::1] shift,
                 double[:, ::1] partial, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                 int grad):
    """Per-channel float64 sums over x's (A, C, B) view, d = x - shift[c]: of d and
    d * d (grad 0: the moments about shift), or of g and g * d (grad 1: the sums of
    the backward pass); partial: (n_items(A, C, B), 2C) scratch.  Returns the 2C sums
    (the items' rows added in item order)."""
    return channel_sums_act(x, g, g, shift, partial, A, C, B, grad, 0)


@cython.boundscheck(False)
@cython.wraparound(False)
def channel_sums_act(const floating[::1] x, const floating[::1] g,
                     const floating[::1] y, const double[::1] shift,
                     double[:, ::1] partial, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                     int grad, int act):
    """channel_sums with g taken through the activation act (0 none, 1 relu, 2 relu6)
    whose output is y: the backward sums of a batch normalization and the activation
    after it, the activation's gradient never written."""
    cdef Py_ssize_t items = partial.shape[0], i, c
    cdef int nt = _threads(A * C * B)
    _check("x", x.shape[0], A * C * B)
    _check("g", g.shape[0], A * C * B)
    _check("y", y.shape[0], A * C * B)
    _check("shift", shift.shape[0], C)
    _check("partial's row", partial.shape[1], 2 * C)
    if items < 1 or items > max(A, 1):
        raise ValueError(f"partial must have 1 to {max(A, 1)} rows, got {items}")
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    if A * C * B == 0:
        return [0.0] * partial.shape[1]
    for i in prange(items, nogil=True, schedule="static", num_threads=nt):
        _item_sums(x, g, y, shift, partial, i, items, A, C, B, grad, act)
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
    _check("x", x.shape[0], A * C * B)
    _check("y", y.shape[0], A * C * B)
    _check("scale", scale.shape[0], C)
    _check("shift", shift.shape[0], C)
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
    for name, arr in (("g", g), ("x", x), ("dx", dx)):
        _check(name, arr.shape[0], A * C * B)
    for name, arr in (("mean", mean), ("a_g", a_g), ("a_x", a_x), ("const_", const_)):
        _check(name, arr.shape[0], C)
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


@cython.boundscheck(False)
@cython.wraparound(False)
def affine_act(const floating[::1] x, const floating[::1] scale,
               const floating[::1] shift, floating[::1] y, Py_ssize_t A, Py_ssize_t C,
               Py_ssize_t B, int act):
    """y = act(x * scale[c] + shift[c]) over x's (A, C, B) view (act 0 none, 1 relu,
    2 relu6): a batch normalization and the activation after it in one pass, rounded
    as the two passes round them."""
    cdef Py_ssize_t a, c, b, off
    cdef floating s, t
    cdef int nt = _threads(A * C * B)
    _check("x", x.shape[0], A * C * B)
    _check("y", y.shape[0], A * C * B)
    _check("scale", scale.shape[0], C)
    _check("shift", shift.shape[0], C)
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    for a in prange(A, nogil=True, schedule="static", num_threads=nt):
        if B == 1:
            for c in range(C):
                y[a * C + c] = _act(x[a * C + c] * scale[c] + shift[c], act)
        else:
            for c in range(C):
                off = (a * C + c) * B
                s = scale[c]
                t = shift[c]
                for b in range(B):
                    y[off + b] = _act(x[off + b] * s + t, act)


@cython.boundscheck(False)
@cython.wraparound(False)
def backward_input_act(const floating[::1] g, const floating[::1] y,
                       const floating[::1] x, const floating[::1] mean,
                       const floating[::1] a_g, const floating[::1] a_x,
                       const floating[::1] const_, floating[::1] dx, Py_ssize_t A,
                       Py_ssize_t C, Py_ssize_t B, int act):
    """backward_input with g taken through the activation act whose output is y
    (_act_grad): v = act'(g); dx = v * a_g[c] + (x - mean[c]) * a_x[c] + const_[c].
    dx may be g itself (the gradient overwritten in place)."""
    cdef Py_ssize_t a, c, b, off, i
    cdef floating m, p, q, r, v
    cdef int nt = _threads(A * C * B)
    for name, arr in (("g", g), ("y", y), ("x", x), ("dx", dx)):
        _check(name, arr.shape[0], A * C * B)
    for name, arr in (("mean", mean), ("a_g", a_g), ("a_x", a_x), ("const_", const_)):
        _check(name, arr.shape[0], C)
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    for a in prange(A, nogil=True, schedule="static", num_threads=nt):
        for c in range(C):
            off = (a * C + c) * B
            m = mean[c]
            p = a_g[c]
            q = a_x[c]
            r = const_[c]
            for b in range(B):
                i = off + b
                v = _act_grad(g[i], y[i], act)
                dx[i] = (v * p + (x[i] - m) * q) + r
