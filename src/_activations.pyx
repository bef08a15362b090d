# cython: language_level=3
"""Compiled pointwise kernels, only where they measurably beat NumPy.

relu's gradient is a select, ``grad_y if y > 0 else 0``.  NumPy's ``np.where`` (and
``copyto(where=...)``) run it with a data-dependent branch per element, slow on the
random signs of a layer's output; here the load comes before the select, so the loop
has no branch and GCC vectorises it (docs/design/algorithms.md).  relu itself is
memory-bound: np.maximum runs on one thread, this kernel on all of them.  The tanh and
sigmoid gradients are one pass here instead of NumPy's three (and two temporaries),
with the same operations in the same order.  tanh, exp and the other activations stay
NumPy ufuncs (its SIMD tanh and exp, which a portable build could not beat).  Dropout
draws its mask here from a counter-based generator (a 32-bit hash of index and seed),
because NumPy's bit generator alone is slower than the whole kernel
(docs/design/algorithms.md).

Arrays come flattened and C-contiguous from fastconv/activations.py, of one dtype.
"""
from libc.stdint cimport uint32_t, uint64_t
from cython.parallel cimport prange

cimport cython

from omp_shim cimport fc_get_max_threads

ctypedef fused floating:
    float
    double

cdef enum:
    # Below this many elements one thread does the whole call.
    _SERIAL_ELEMENTS = 65536


@cython.boundscheck(False)
@cython.wraparound(False)
def relu_backward(const floating[::1] grad_y, const floating[::1] y, floating[::1] out):
    """out = grad_y where y > 0, else +0 (a NaN or inf in grad_y does not leak)."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating g, z = 0
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        g = grad_y[i]
        out[i] = g if y[i] > 0 else z


@cython.boundscheck(False)
@cython.wraparound(False)
def relu(const floating[::1] x, floating[::1] out):
    """out = x where x > 0 or x is NaN (NaN propagates), else +0."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, z = 0
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = x[i]
        out[i] = z if v <= 0 else v


@cython.boundscheck(False)
@cython.wraparound(False)
def add(const floating[::1] a, const floating[::1] b, floating[::1] out, bint relu):
    """out = a + b, then (relu) as relu() takes it: the sum of a residual block and its
    activation in one pass on all threads (NumPy's add runs on one).  out may be a."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef floating v, z = 0
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    if relu:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            v = a[i] + b[i]
            out[i] = z if v <= 0 else v
    else:
        for i in prange(n, nogil=True, schedule="static", num_threads=nt):
            out[i] = a[i] + b[i]


@cython.boundscheck(False)
@cython.wraparound(False)
def clamp(const floating[::1] x, double lo, double hi, floating[::1] out):
    """out = x clamped: lo where x < lo, hi where x > hi (NaN and -0.0 kept: the ReLU
    of the conv kernels' output pass with lo = 0, NumPy's minimum with lo = -inf,
    relu6 with [0, 6]), on all threads.  out may be x."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef floating v, low = <floating>lo, high = <floating>hi
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = x[i]
        if v < low:
            v = low
        if v > high:
            v = high
        out[i] = v


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _bias_act_row(floating *y, const floating *b, Py_ssize_t C,
                               int act) noexcept nogil:
    cdef Py_ssize_t c
    cdef floating v, z = 0, six = 6
    if b != NULL:
        if act == 2:
            for c in range(C):
                v = y[c] + b[c]
                v = z if v < 0 else v
                y[c] = six if v > six else v
        elif act == 1:
            for c in range(C):
                v = y[c] + b[c]
                y[c] = z if v < 0 else v
        else:
            for c in range(C):
                y[c] = y[c] + b[c]
    elif act == 2:
        for c in range(C):
            v = y[c]
            v = z if v < 0 else v
            y[c] = six if v > six else v
    elif act == 1:
        for c in range(C):
            v = y[c]
            y[c] = z if v < 0 else v


@cython.boundscheck(False)
@cython.wraparound(False)
def bias_act(floating[::1] y, const floating[::1] bias, Py_ssize_t C, int act,
             bint serial=False):
    """In place over y's rows of C: y += bias (None: no bias), then act as the conv
    kernels' output pass applies it (0 none, 1 ReLU, 2 ReLU6; NaN and -0.0 kept): the
    output pass of a convolution run as a BLAS product, on all threads, or (serial) on
    the calling thread without the GIL (one band of a product, on its Python thread)."""
    cdef Py_ssize_t r, rows
    cdef int nt
    if C <= 0 or y.shape[0] % C:
        raise ValueError(f"y's {y.shape[0]} elements are not rows of C={C}")
    if bias is not None and bias.shape[0] != C:
        raise ValueError(f"bias has {bias.shape[0]} elements, expected C={C}")
    if act < 0 or act > 2:
        raise ValueError(f"act must be 0, 1 or 2, got {act}")
    cdef bint has_bias = bias is not None
    cdef const floating *b = &bias[0] if has_bias else NULL
    rows = y.shape[0] // C
    if serial or y.shape[0] < _SERIAL_ELEMENTS:
        with nogil:
            for r in range(rows):
                _bias_act_row(&y[r * C], b, C, act)
        return
    nt = fc_get_max_threads()
    for r in prange(rows, nogil=True, schedule="static", num_threads=nt):
        _bias_act_row(&y[r * C], b, C, act)


@cython.boundscheck(False)
@cython.wraparound(False)
def band_backward(const floating[::1] grad_y, const floating[::1] y, double lo, double hi,
                  floating[::1] out):
    """out = grad_y where lo < y < hi, else +0 (relu6's gradient with [0, 6]: a select,
    as relu_backward, so a NaN or inf in grad_y does not leak)."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating g, v, z = 0, low = <floating>lo, high = <floating>hi
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        g = grad_y[i]
        v = y[i]
        out[i] = g if (v > low) & (v < high) else z


@cython.boundscheck(False)
@cython.wraparound(False)
def tanh_backward(const floating[::1] grad_y, const floating[::1] y, floating[::1] out):
    """out = (1 - y * y) * grad_y, rounded as NumPy's three passes round it."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating v, one = 1
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = y[i] * y[i]
        v = one - v
        out[i] = v * grad_y[i]


@cython.boundscheck(False)
@cython.wraparound(False)
def sigmoid_backward(const floating[::1] grad_y, const floating[::1] y,
                     floating[::1] out):
    """out = ((1 - y) * y) * grad_y, rounded as NumPy's three passes round it."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef floating v, one = 1
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        v = one - y[i]
        v = v * y[i]
        out[i] = v * grad_y[i]


cdef inline uint32_t _mix32(uint32_t z) noexcept nogil:
    # A 32-bit integer hash with full avalanche ("lowbias32", C. Wellons' hash-prospector).
    z ^= z >> 16
    z *= <uint32_t>0x7FEB352DU
    z ^= z >> 15
    z *= <uint32_t>0x846CA68BU
    return z ^ (z >> 16)


@cython.boundscheck(False)
@cython.wraparound(False)
def dropout(const floating[::1] x, floating[::1] out, floating[::1] mask, uint64_t seed,
            uint32_t threshold, floating scale):
    """Inverted dropout: element i is kept when its 32 random bits
    mix32(mix32(i_lo ^ lo) ^ (hi + golden * i_hi)), with (lo, hi) the halves of seed and
    (i_lo, i_hi) those of i, are >= threshold;
    then mask[i] = scale and out[i] = x[i] * scale, else both are 0.  A pure function
    of (seed, i): the same for any thread count (GCC vectorises the loop)."""
    cdef Py_ssize_t i, n = x.shape[0]
    cdef uint32_t lo = <uint32_t>seed, hi = <uint32_t>(seed >> 32), w
    cdef floating m, z = 0
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    for i in prange(n, nogil=True, schedule="static", num_threads=nt):
        w = _mix32(_mix32(<uint32_t>i ^ lo) ^ (hi + <uint32_t>(i >> 32) * 0x9E3779B9U))
        m = scale if w >= threshold else z
        mask[i] = m
        out[i] = x[i] * m


cdef extern from "activation_kernels.h" nogil:
    void fc_tanh_f(const float *x, float *y, Py_ssize_t n)


# Elements per work item of the compiled tanh: contiguous shares that each thread
# streams, large enough to amortise a call.
cdef enum:
    _TANH_CHUNK = 16384


@cython.boundscheck(False)
@cython.wraparound(False)
def tanh_f32(const float[::1] x, float[::1] out):
    """out = tanh(x) in float32, within 6 ulp (src/activation_kernels.h); out may be x
    itself (in place)."""
    cdef Py_ssize_t n = x.shape[0], k, lo, nk = (n + _TANH_CHUNK - 1) // _TANH_CHUNK
    cdef int nt = 1 if n < _SERIAL_ELEMENTS else fc_get_max_threads()
    if out.shape[0] != n:
        raise ValueError("tanh_f32: x and out must have the same length")
    if n == 0:
        return
    cdef const float *px = &x[0]
    cdef float *po = &out[0]
    # No parallel region for small arrays: waking a thread costs more than it saves
    # (docs/design/algorithms.md).
    if nt == 1:
        with nogil:
            fc_tanh_f(px, po, n)
        return
    for k in prange(nk, nogil=True, schedule="static", num_threads=nt):
        lo = k * _TANH_CHUNK
        fc_tanh_f(px + lo, po + lo, min(n - lo, <Py_ssize_t>_TANH_CHUNK))
