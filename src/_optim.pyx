# cython: language_level=3
"""Compiled optimizer updates: one pass over (gradient, variable, slots) instead of
NumPy's six with temporaries.  The operations and their order are those of the NumPy
code in fastconv/optimizers.py, each rounded to the variable's dtype (compiled for the
baseline instruction set, so no FMA contraction on x86-64), so the results are the same
bit for bit.  One pass is several times faster than NumPy's (it vectorises: the build
passes -fno-math-errno, and float32 uses sqrtf) (docs/design/algorithms.md).
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport sqrt, sqrtf
from cython.parallel cimport prange

cimport cython

from omp_shim cimport fc_get_max_threads

ctypedef fused floating:
    float
    double

cdef enum:
    _SERIAL_ELEMENTS = 65536


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)
def rmsprop(const floating[::1] g, floating[::1] w, floating[::1] v, floating lr,
            floating rho, floating one_minus_rho, floating eps):
    """v = v * rho + (g * g) * (1 - rho); w -= (g * lr) / sqrt(v + eps)."""
    cdef Py_ssize_t i, n = w.shape[0]
    cdef floating a, b, d, s
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        a = v[i] * rho
        b = g[i] * g[i]
        b = b * one_minus_rho
        a = a + b
        v[i] = a
        d = a + eps
        if floating is float:
            d = sqrtf(d)
        else:
            d = sqrt(d)
        s = g[i] * lr
        s = s / d
        w[i] = w[i] - s


@cython.cdivision(True)
cdef void _adam(const floating *g, floating *w, floating *m, floating *v, Py_ssize_t n,
                floating alpha, floating one_minus_beta_1, floating one_minus_beta_2,
                floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating a, b, d, s
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, schedule="static", num_threads=nt):
        a = g[i] - m[i]
        a = a * one_minus_beta_1
        a = m[i] + a
        m[i] = a
        b = g[i] * g[i]
        b = b - v[i]
        b = b * one_minus_beta_2
        b = v[i] + b
        v[i] = b
        if floating is float:
            d = sqrtf(b)
        else:
            d = sqrt(b)
        d = d + eps
        s = a * alpha
        s = s / d
        w[i] = w[i] - s


def adam(const floating[::1] g, floating[::1] w, floating[::1] m, floating[::1] v,
         floating alpha, floating one_minus_beta_1, floating one_minus_beta_2,
         floating eps):
    """m += (g - m) * (1 - beta_1); v += (g * g - v) * (1 - beta_2);
    w -= (m * alpha) / (sqrt(v) + eps)."""
    cdef Py_ssize_t n = w.shape[0]
    if g.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError("adam: the four arrays must have the same length")
    if n:
        _adam(&g[0], &w[0], &m[0], &v[0], n, alpha, one_minus_beta_1, one_minus_beta_2,
              eps)


def adam_all(list grads, list ws, list ms, list vs, floating alpha,
             floating one_minus_beta_1, floating one_minus_beta_2, floating eps):
    """adam() on every (grads[i], ws[i], ms[i], vs[i]), C-contiguous arrays of alpha's
    dtype, any shape: one call per step instead of one per variable, whose argument
    checks and buffer handling outweigh small updates (docs/design/algorithms.md).
    Every buffer is checked before any array is changed (ValueError otherwise)."""
    cdef Py_ssize_t k, j, nv = len(ws)
    cdef Py_ssize_t itemsize = sizeof(floating)
    cdef bytes code = b"f" if floating is float else b"d"
    cdef Py_buffer *views
    cdef int got = 0
    cdef int flags
    if len(grads) != nv or len(ms) != nv or len(vs) != nv:
        raise ValueError("adam_all: the four lists must have the same length")
    views = <Py_buffer *>PyMem_Malloc(4 * nv * sizeof(Py_buffer) + 1)
    if views == NULL:
        raise MemoryError()
    try:
        for k in range(nv):
            for j, arr in enumerate((grads[k], ws[k], ms[k], vs[k])):
                flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if j else 0)
                PyObject_GetBuffer(arr, &views[got], flags)
                got += 1
                if (views[got - 1].itemsize != itemsize
                        or views[got - 1].format[0] != code[0]
                        or views[got - 1].format[1] != 0
                        or views[got - 1].len != views[4 * k].len):
                    raise ValueError(f"adam_all: array {j} of variable {k} is not a "
                                     f"contiguous {code.decode()} array of the gradient's "
                                     f"size")
        for k in range(nv):
            if views[4 * k].len:
                _adam(<const floating *>views[4 * k].buf, <floating *>views[4 * k + 1].buf,
                      <floating *>views[4 * k + 2].buf, <floating *>views[4 * k + 3].buf,
                      views[4 * k].len // itemsize, alpha, one_minus_beta_1,
                      one_minus_beta_2, eps)
    finally:
        for k in range(got):
            PyBuffer_Release(&views[k])
        PyMem_Free(views)
