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


cdef extern from "batchnorm_kernels.h" nogil:
    void fc_bn_pick(int portable)
    void fc_bn_run_sums_f(const float *x, const float *g, const float *y, int affine,
                          float as_, float at, double m, Py_ssize_t n, int grad, int act,
                          double *s, double *t)
    void fc_bn_run_sums_d(const double *x, const double *g, const double *y, int affine,
                          double as_, double at, double m, Py_ssize_t n, int grad,
                          int act, double *s, double *t)
    void fc_bn_sums_last_f(const float *x, const float *g, const float *y,
                           const float *as_, const float *at,
                           const double *shift, Py_ssize_t rows, Py_ssize_t C, int grad,
                           int act, double *p1, double *p2)
    void fc_bn_sums_last_d(const double *x, const double *g, const double *y,
                           const double *as_, const double *at,
                           const double *shift, Py_ssize_t rows, Py_ssize_t C, int grad,
                           int act, double *p1, double *p2)


def _portable():
    """Whether the kernels run their portable build (FASTCONV_DISABLE_SIMD=1)."""
    from fastconv import _conv2d
    return _conv2d.isa() == "portable"


fc_bn_pick(_portable())   # (the sums' build for this CPU)


cdef inline int _threads(Py_ssize_t n) noexcept nogil:
    return 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()


def _check(name, Py_ssize_t size, Py_ssize_t expected):
    if size != expected:
        raise ValueError(f"{name} has {size} values, the kernel expects {expected}")


cdef inline floating _relu(floating z) noexcept nogil:
    """As fastconv.activations.relu: NaN propagates, -0.0 becomes +0.0."""
    return 0 if z <= 0 else z


cdef inline floating _relu6(floating z) noexcept nogil:
    """As np.clip(z, 0, 6): NaN propagates, -0.0 becomes +0.0."""
    z = 0 if z <= 0 else z
    return 6 if z >= 6 else z


cdef inline floating _relu_grad(floating g, floating y) noexcept nogil:
    """As relu_backward: g where y > 0, else +0."""
    return g if y > 0 else 0


cdef inline floating _relu6_grad(floating g, floating y) noexcept nogil:
    """As relu6_backward: g where 0 < y < 6, else +0."""
    return g if (y > 0) & (y < 6) else 0


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
cdef void _item_sums(const floating[::1] x, const floating[::1] g, const floating[::1] y,
                     const floating *a_s, const floating *a_t,
                     const double[::1] shift, double[:, ::1] partial, Py_ssize_t item,
                     Py_ssize_t n_items, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                     int grad, int act) noexcept nogil:
    """Item's sums into partial[item, :C] and [C:2C], with d = x - shift[c]: the sums
    of d and d * d (grad 0), or of v and v * d (grad 1), v = g through the activation
    act of the output y (0 none, 1 relu, 2 relu6)."""
    cdef Py_ssize_t a0 = item * A // n_items, a1 = (item + 1) * A // n_items
    cdef Py_ssize_t a, c, off
    cdef double *p1 = &partial[item, 0]
    cdef double *p2 = p1 + C
    cdef const double *sh = &shift[0]
    cdef const floating *xp = &x[0]
    cdef const floating *gp = &g[0]
    cdef const floating *yp = &y[0]
    for c in range(2 * C):
        p1[c] = 0
    if B > 1:
        for a in range(a0, a1):
            for c in range(C):
                off = (a * C + c) * B
                if floating is float:
                    fc_bn_run_sums_f(xp + off, gp + off, yp + off, a_s != NULL,
                                     a_s[c] if a_s != NULL else 0,
                                     a_t[c] if a_s != NULL else 0, sh[c], B, grad, act,
                                     p1 + c, p2 + c)
                else:
                    fc_bn_run_sums_d(xp + off, gp + off, yp + off, a_s != NULL,
                                     a_s[c] if a_s != NULL else 0,
                                     a_t[c] if a_s != NULL else 0, sh[c], B, grad, act,
                                     p1 + c, p2 + c)
        return
    # channels_last: blocks of channels summed in registers (batchnorm_kernels.h)
    off = a0 * C
    if floating is float:
        fc_bn_sums_last_f(xp + off, gp + off, yp + off, a_s, a_t, sh, a1 - a0, C, grad,
                          act, p1, p2)
    else:
        fc_bn_sums_last_d(xp + off, gp + off, yp + off, a_s, a_t, sh, a1 - a0, C, grad,
                          act, p1, p2)


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


cdef int _act_affine(const floating[::1] act_scale, const floating[::1] act_shift,
                     Py_ssize_t C, const floating **a_s,
                     const floating **a_t) except -1:
    """The optional activation scale and shift of channel_sums_act and
    backward_input_act, checked: *a_s and *a_t point at them, or stay NULL."""
    if (act_scale is None) != (act_shift is None):
        raise ValueError("act_scale and act_shift go together")
    if act_scale is not None:
        _check("act_scale", act_scale.shape[0], C)
        _check("act_shift", act_shift.shape[0], C)
        if C:
            a_s[0], a_t[0] = &act_scale[0], &act_shift[0]
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
def channel_sums_act(const floating[::1] x, const floating[::1] g,
                     const floating[::1] y, const double[::1] shift,
                     double[:, ::1] partial, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B,
                     int grad, int act, const floating[::1] act_scale=None,
                     const floating[::1] act_shift=None):
    """channel_sums with g taken through the activation act (0 none, 1 relu, 2 relu6)
    whose output is y: the backward sums of a batch normalization and the activation
    after it, the activation's gradient never written.  With act_scale and act_shift
    (the forward's affine_act scale and shift): y is not read, its mask is taken from
    x * act_scale[c] + act_shift[c], the values the forward activated, rounded alike
    (one read of a tensor fewer)."""
    cdef Py_ssize_t items = partial.shape[0], i, c
    cdef const floating *a_s = NULL
    cdef const floating *a_t = NULL
    _act_affine(act_scale, act_shift, C, &a_s, &a_t)
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
        _item_sums(x, g, y, a_s, a_t, shift, partial, i, items, A, C, B, grad, act)
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
            _affine_row(&x[a * C], &scale[0], &shift[0], &y[a * C], C, act)
            continue
        for c in range(C):
            off = (a * C + c) * B
            s = scale[c]
            t = shift[c]
            if act == 0:
                for b in range(B):
                    y[off + b] = x[off + b] * s + t
            elif act == 1:
                for b in range(B):
                    y[off + b] = _relu(x[off + b] * s + t)
            else:
                for b in range(B):
                    y[off + b] = _relu6(x[off + b] * s + t)


@cython.boundscheck(False)
@cython.wraparound(False)
def backward_input_act(const floating[::1] g, const floating[::1] y,
                       const floating[::1] x, const floating[::1] mean,
                       const floating[::1] a_g, const floating[::1] a_x,
                       const floating[::1] const_, floating[::1] dx, Py_ssize_t A,
                       Py_ssize_t C, Py_ssize_t B, int act,
                       const floating[::1] act_scale=None,
                       const floating[::1] act_shift=None):
    """backward_input with g taken through the activation act whose output is y
    (_act_grad): v = act'(g); dx = v * a_g[c] + (x - mean[c]) * a_x[c] + const_[c].
    dx may be g itself (the gradient overwritten in place).  With act_scale and
    act_shift: y is not read (see channel_sums_act)."""
    cdef Py_ssize_t a, c, off
    cdef int nt = _threads(A * C * B)
    cdef const floating *a_s = NULL
    cdef const floating *a_t = NULL
    _act_affine(act_scale, act_shift, C, &a_s, &a_t)
    for name, arr in (("g", g), ("y", y), ("x", x), ("dx", dx)):
        _check(name, arr.shape[0], A * C * B)
    for name, arr in (("mean", mean), ("a_g", a_g), ("a_x", a_x), ("const_", const_)):
        _check(name, arr.shape[0], C)
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    for a in prange(A, nogil=True, schedule="static", num_threads=nt):
        if B == 1:
            _bwd_row(&g[0], &y[0], &x[0], &mean[0], &a_g[0], &a_x[0], &const_[0],
                     &dx[0], a * C, C, act, a_s, a_t)
        else:
            for c in range(C):
                off = (a * C + c) * B
                _bwd_channel(&g[off], &y[off], &x[off], mean[c], a_g[c], a_x[c],
                             const_[c], &dx[off], B, act, a_s != NULL,
                             a_s[c] if a_s != NULL else 0, a_t[c] if a_s != NULL else 0)


cdef void _affine_row(const floating *x, const floating *s, const floating *t,
                     floating *y, Py_ssize_t C, int act) noexcept nogil:
    """affine_act over one channels_last row of C values."""
    cdef Py_ssize_t c
    if act == 0:
        for c in range(C):
            y[c] = x[c] * s[c] + t[c]
    elif act == 1:
        for c in range(C):
            y[c] = _relu(x[c] * s[c] + t[c])
    else:
        for c in range(C):
            y[c] = _relu6(x[c] * s[c] + t[c])


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _bwd_row(const floating *g, const floating *y, const floating *x,
                   const floating *mean, const floating *p, const floating *q,
                   const floating *r, floating *dx, Py_ssize_t off, Py_ssize_t C,
                   int act, const floating *a_s, const floating *a_t) noexcept nogil:
    """backward_input_act over one channels_last row of C values at off (a_s, a_t not
    NULL: the activation's mask from x * a_s + a_t, y not read)."""
    cdef Py_ssize_t c
    cdef floating v
    g = g + off
    y = y + off
    x = x + off
    dx = dx + off
    if act == 0:
        for c in range(C):
            dx[c] = (g[c] * p[c] + (x[c] - mean[c]) * q[c]) + r[c]
    elif act == 1 and a_s != NULL:
        for c in range(C):
            v = _relu_grad(g[c], x[c] * a_s[c] + a_t[c])
            dx[c] = (v * p[c] + (x[c] - mean[c]) * q[c]) + r[c]
    elif act == 1:
        for c in range(C):
            v = _relu_grad(g[c], y[c])
            dx[c] = (v * p[c] + (x[c] - mean[c]) * q[c]) + r[c]
    elif a_s != NULL:
        for c in range(C):
            v = _relu6_grad(g[c], x[c] * a_s[c] + a_t[c])
            dx[c] = (v * p[c] + (x[c] - mean[c]) * q[c]) + r[c]
    else:
        for c in range(C):
            v = _relu6_grad(g[c], y[c])
            dx[c] = (v * p[c] + (x[c] - mean[c]) * q[c]) + r[c]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _bwd_channel(const floating *g, const floating *y, const floating *x,
                       floating m, floating p, floating q, floating r, floating *dx,
                       Py_ssize_t B, int act, bint affine, floating a_s,
                       floating a_t) noexcept nogil:
    """backward_input_act over B values of one channel (affine: the activation's mask
    from x * a_s + a_t, y not read)."""
    cdef Py_ssize_t b
    cdef floating v
    if act == 0:
        for b in range(B):
            dx[b] = (g[b] * p + (x[b] - m) * q) + r
    elif act == 1 and affine:
        for b in range(B):
            v = _relu_grad(g[b], x[b] * a_s + a_t)
            dx[b] = (v * p + (x[b] - m) * q) + r
    elif affine:
        for b in range(B):
            v = _relu6_grad(g[b], x[b] * a_s + a_t)
            dx[b] = (v * p + (x[b] - m) * q) + r
    elif act == 1:
        for b in range(B):
            v = _relu_grad(g[b], y[b])
            dx[b] = (v * p + (x[b] - m) * q) + r
    else:
        for b in range(B):
            v = _relu6_grad(g[b], y[b])
            dx[b] = (v * p + (x[b] - m) * q) + r
