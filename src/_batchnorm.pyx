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
    int fc_bn_use(int build)
    void fc_bn_run_sums_f(const float *x, const float *g, const float *y, int affine,
                          float as_, float at, double m, Py_ssize_t n, int grad, int act,
                          double *s, double *t)
    void fc_bn_run_sums_d(const double *x, const double *g, const double *y, int affine,
                          double as_, double at, double m, Py_ssize_t n, int grad,
                          int act, double *s, double *t)
    void fc_bn_affine_act_f(const float *x, const float *s, const float *t, float *y,
                            Py_ssize_t A, Py_ssize_t C, Py_ssize_t B, int act)
    void fc_bn_affine_act_d(const double *x, const double *s, const double *t,
                            double *y, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B, int act)
    void fc_bn_backward_act_f(const float *g, const float *y, const float *x,
                              const float *m, const float *p, const float *q,
                              const float *r, float *dx, Py_ssize_t A, Py_ssize_t C,
                              Py_ssize_t B, int act, const float *as_, const float *at)
    void fc_bn_backward_act_d(const double *g, const double *y, const double *x,
                              const double *m, const double *p, const double *q,
                              const double *r, double *dx, Py_ssize_t A, Py_ssize_t C,
                              Py_ssize_t B, int act, const double *as_,
                              const double *at)
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


_BUILDS = ("portable", "avx2", "avx512")


def use_build(str name):
    """Runs the kernels' build name ('portable', 'avx2' or 'avx512'; each gives the same
    bits: tests compare them) from now on in this process.  ValueError where this CPU
    lacks it."""
    global _build
    if name not in _BUILDS:
        raise ValueError(f"name must be one of {_BUILDS}, got {name!r}")
    if fc_bn_use(_BUILDS.index(name)) != 0:
        raise ValueError(f"this CPU cannot run the {name!r} build")
    _build = name


def build():
    """The kernels' build in use (see use_build)."""
    return _build


_build = "portable"
if not _portable():    # (the best build for this CPU)
    for _name in ("avx512", "avx2"):
        if fc_bn_use(_BUILDS.index(_name)) == 0:
            _build = _name
            break


cdef inline int _threads(Py_ssize_t n) noexcept nogil:
    return 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()


def _check(name, Py_ssize_t size, Py_ssize_t expected):
    if size != expected:
        raise ValueError(f"{name} has {size} values, the kernel expects {expected}")


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


def affine(const floating[::1] x, const floating[::1] scale, const floating[::1] shift,
           floating[::1] y, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """y = x * scale[c] + shift[c] over x's (A, C, B) view."""
    affine_act(x, scale, shift, y, A, C, B, 0)


def backward_input(const floating[::1] g, const floating[::1] x,
                   const floating[::1] mean, const floating[::1] a_g,
                   const floating[::1] a_x, const floating[::1] const_,
                   floating[::1] dx, Py_ssize_t A, Py_ssize_t C, Py_ssize_t B):
    """dx = g * a_g[c] + (x - mean[c]) * a_x[c] + const_[c] over the (A, C, B) view:
    batch normalization's input gradient in training, one pass."""
    backward_input_act(g, g, x, mean, a_g, a_x, const_, dx, A, C, B, 0)


# The elementwise passes (batchnorm_kernels.h) run on parts of the view cut by units:
# rows of C values (channels_last) or channels_first runs of B values, the runs of one
# part cut again where a row ends (each call takes whole rows of its channels).  A
# _Piece is one call's share: n units from value offset off and channel c, as the
# call's rows and width (channels).
ctypedef struct _Piece:
    Py_ssize_t n
    Py_ssize_t off
    Py_ssize_t c
    Py_ssize_t rows
    Py_ssize_t width


@cython.cdivision(True)
cdef inline _Piece _piece(Py_ssize_t u, Py_ssize_t u1, Py_ssize_t C,
                          Py_ssize_t B) noexcept nogil:
    """One kernel call's piece from unit u, at most to u1: all the channels_last rows
    (B 1: n rows of C values), else the runs of B values of channels u % C .. up to the
    end of u's row (one row of n channels)."""
    cdef _Piece p
    if B == 1:
        p.n = u1 - u
        p.off, p.c, p.rows, p.width = u * C, 0, p.n, C
    else:
        p.n = min(u1 - u, C - u % C)
        p.off, p.c, p.rows, p.width = u * B, u % C, 1, p.n
    return p


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def affine_act(const floating[::1] x, const floating[::1] scale,
               const floating[::1] shift, floating[::1] y, Py_ssize_t A, Py_ssize_t C,
               Py_ssize_t B, int act):
    """y = act(x * scale[c] + shift[c]) over x's (A, C, B) view (act 0 none, 1 relu,
    2 relu6): a batch normalization and the activation after it in one pass, rounded
    as the two passes round them."""
    cdef Py_ssize_t i, u, u0, u1, units = A if B == 1 else A * C
    cdef _Piece p
    cdef int nt = _threads(A * C * B)
    _check("x", x.shape[0], A * C * B)
    _check("y", y.shape[0], A * C * B)
    _check("scale", scale.shape[0], C)
    _check("shift", shift.shape[0], C)
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    if A * C * B == 0:
        return
    for i in prange(nt, nogil=True, schedule="static", num_threads=nt):
        u0 = i * units // nt
        u1 = (i + 1) * units // nt
        u = u0
        while u < u1:
            p = _piece(u, u1, C, B)
            _affine_part(&x[0], &scale[0], &shift[0], &y[0], p, B, act)
            u = u + p.n


cdef inline void _affine_part(const floating *x, const floating *s, const floating *t,
                              floating *y, _Piece p, Py_ssize_t B, int act) noexcept nogil:
    """affine_act on the piece p."""
    if floating is float:
        fc_bn_affine_act_f(x + p.off, s + p.c, t + p.c, y + p.off, p.rows, p.width, B,
                           act)
    else:
        fc_bn_affine_act_d(x + p.off, s + p.c, t + p.c, y + p.off, p.rows, p.width, B,
                           act)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def backward_input_act(const floating[::1] g, const floating[::1] y,
                       const floating[::1] x, const floating[::1] mean,
                       const floating[::1] a_g, const floating[::1] a_x,
                       const floating[::1] const_, floating[::1] dx, Py_ssize_t A,
                       Py_ssize_t C, Py_ssize_t B, int act,
                       const floating[::1] act_scale=None,
                       const floating[::1] act_shift=None):
    """backward_input with g taken through the activation act whose output is y:
    v = act'(g) (g where y > 0, and y < 6 for relu6, else +0);
    dx = v * a_g[c] + (x - mean[c]) * a_x[c] + const_[c].  dx may be g itself (the
    gradient overwritten in place).  With act_scale and act_shift: y is not read, the
    mask is that of x * act_scale[c] + act_shift[c] (see channel_sums_act)."""
    cdef Py_ssize_t i, u, u0, u1, units = A if B == 1 else A * C
    cdef _Piece p
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
    if A * C * B == 0:
        return
    for i in prange(nt, nogil=True, schedule="static", num_threads=nt):
        u0 = i * units // nt
        u1 = (i + 1) * units // nt
        u = u0
        while u < u1:
            p = _piece(u, u1, C, B)
            _backward_part(&g[0], &y[0], &x[0], &mean[0], &a_g[0], &a_x[0], &const_[0],
                           &dx[0], a_s, a_t, p, B, act)
            u = u + p.n


cdef inline void _backward_part(const floating *g, const floating *y,
                                const floating *x, const floating *m,
                                const floating *p_, const floating *q,
                                const floating *r, floating *dx, const floating *a_s,
                                const floating *a_t, _Piece p, Py_ssize_t B,
                                int act) noexcept nogil:
    """backward_input_act on the piece p."""
    cdef Py_ssize_t o = p.off, c = p.c
    if a_s != NULL:
        a_s = a_s + c
        a_t = a_t + c
    if floating is float:
        fc_bn_backward_act_f(g + o, y + o, x + o, m + c, p_ + c, q + c, r + c, dx + o,
                             p.rows, p.width, B, act, a_s, a_t)
    else:
        fc_bn_backward_act_d(g + o, y + o, x + o, m + c, p_ + c, q + c, r + c, dx + o,
                             p.rows, p.width, B, act, a_s, a_t)
