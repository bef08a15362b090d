# cython: language_level=3
"""Compiled conv2d kernels: implicit-GEMM forward, weight and input gradients.

The arithmetic lives in C under src/conv/: ukernels/ holds the register-blocked
micro-kernels for AVX-512, AVX2+FMA and portable C, chosen at run time through the
per-ISA tables of isa_config.h; drivers/ holds one file per algorithm, each ending with
its entry points; parallel.h the one parallel loop they all run (thread count, per-thread
scratch, work split, error flag).  Each function here checks what it must, then calls
one entry point for its dtype.  One thread pool (OpenMP): no BLAS is called, so nothing
competes for the cores.

Work items never depend on the thread count (strips of output pixels, whole images,
fixed groups of images), and each item is computed by one thread in a fixed order, so
the results are bit-identical for any number of threads.  Items are handed out
dynamically, which keeps both cores busy when another process takes one of them.

The callers (fastconv/ops/conv/) validate everything; these functions trust their
inputs: flat C-contiguous arrays of one floating dtype and a consistent Geometry, the C
struct of one convolution built once from named fields (fastconv/ops/conv/geometry.py
keeps one per checked geometry).
"""
import os

import numpy as np

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, strcmp
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release,
                             PyObject_GetBuffer)

cimport cython
from omp_shim cimport fc_get_max_threads

cdef extern from "conv/conv.h" nogil:
    enum: FC_WCO
    enum: FC_WKJ
    enum: FC_NO
    enum: FC_ACT_NONE, FC_ACT_RELU, FC_ACT_TANH, FC_RELU6
    enum: FC_ENOMEM, FC_ENOMEM_TABLE
    enum: FC_WG_NRMAX
    ctypedef struct fc_isa:
        int id
        const char *name
        int mr_f, nr_f, mr_d, nr_d
        int mr_px_f, nr_px_f, mr_px_d, nr_px_d
        int mr_px1_f, nr_px1_f, mr_px1_d, nr_px1_d
        int mr_nr, vl_f, vl_d
        int wg_co
    ctypedef struct fc_conv:
        Py_ssize_t n, c, h, w, cout, oh, ow, groups, cg, cog, kg
        Py_ssize_t kh, kw, sy, sx, dy, dx, pt, pl
        int last, mr, nr
    const fc_isa *fc_default_isa()
    const fc_isa *fc_best_isa()
    const fc_isa *fc_isa_by_name(const char *name)
    const double fc_wg_G[4][3]
    const double fc_wg4_G[6][3]
    const double fc_wg5_G[7][3]
    # The entry points (src/conv/drivers/*.h), by dtype (dbl: float64); 0 or FC_ENOMEM*.
    int fc_gemm_forward(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                        const void *ap, const void *bias, void *y, int relu)
    int fc_gemm_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                            const void *gy, void *part, Py_ssize_t n_per,
                            Py_ssize_t pcmax)
    int fc_gemm_grad_input(bint dbl, const fc_isa *isa, const fc_conv *g, const void *gy,
                           const void *at, void *gx, Py_ssize_t n_per)
    int fc_bias_grad(bint dbl, const fc_conv *g, const void *gy, double *bsum,
                     Py_ssize_t n_per)
    int fc_shift_forward(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                         const void *ap, const void *bias, void *y, int relu)
    int fc_shift_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                             const void *gy, void *part, Py_ssize_t n_per,
                             Py_ssize_t pcmax)
    int fc_px_forward(bint dbl, const fc_isa *isa, const fc_conv *g, int half,
                      const void *x, const void *bpk, const void *bias, void *y, int relu,
                      int act, int max_pool, int avg_pool, void *yq)
    int fc_dense_forward(bint dbl, const fc_isa *isa, const void *x, Py_ssize_t m,
                         Py_ssize_t k, const void *w, const void *bias, void *y,
                         Py_ssize_t n, int relu, int x_t, int w_t)
    int fc_px_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, int half,
                          const void *x, const void *gy, void *part, Py_ssize_t n_per,
                          double *bsum)
    int fc_narrow_forward(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                          const void *wn, const void *bias, void *y, int relu)
    int fc_wide_forward(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                        const void *w, const void *bias, void *y, int act, int pool,
                        void *yq)
    int fc_wide_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                            const void *gy, void *part, Py_ssize_t n_per, double *bsum,
                            Py_ssize_t bias_per, int pooled, const void *gp,
                            const void *a)
    int fc_wg_weights_run(bint dbl, const fc_isa *isa, const void *w, Py_ssize_t so,
                          Py_ssize_t sc, Py_ssize_t si, Py_ssize_t sj, Py_ssize_t co_n,
                          Py_ssize_t c_n, const double *G, int L, void *u, int half)
    int fc_wg_grad_weights_run(bint dbl, const void *du, void *gw, Py_ssize_t c_n,
                               Py_ssize_t co_n, Py_ssize_t cpad, Py_ssize_t ldg,
                               const double *G, int L)
    int fc_wg_forward(bint dbl, const fc_isa *isa, const fc_conv *g, int tile,
                      const void *x, const void *u, const void *bias, void *y,
                      Py_ssize_t block, int relu, int pool, int half)
    int fc_wg_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, int tile,
                          const void *x, const void *gy, void *part, Py_ssize_t n_per,
                          Py_ssize_t block, int half)
    int fc_dw_forward(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                      const void *wk, const void *bias, void *y, int relu)
    int fc_dw_grad_input(bint dbl, const fc_isa *isa, const fc_conv *g, const void *gy,
                         const void *wk, void *gx)
    int fc_dw_grad_weight(bint dbl, const fc_isa *isa, const fc_conv *g, const void *x,
                          const void *gy, void *part, Py_ssize_t n_per)
    int fc_edw_forward(bint dbl, const fc_isa *isa, const fc_conv *ge, const fc_conv *gd,
                       const void *x, const void *we, const void *be, const void *wd,
                       const void *bd, void *y, int acte, int actd)

ctypedef fused floating:
    float
    double

cdef const fc_isa *_isa = fc_default_isa()

#: px_forward's relu code for ReLU6 (the ReLU, then the bound 6, in the output pass).
RELU6 = FC_RELU6


def isa():
    """Name of the micro-kernel build in use: 'avx512', 'avx2' or 'portable'."""
    return _isa.name.decode()


def best_isa():
    """The best build this CPU supports (what runs unless FASTCONV_DISABLE_SIMD=1)."""
    return fc_best_isa().name.decode()


def set_isa(str name):
    """Select the micro-kernel build by name; ValueError if this CPU cannot run it."""
    global _isa
    cdef const fc_isa *p = fc_isa_by_name(name.encode())
    if p == NULL:
        raise ValueError(f"isa must be one of the builds this CPU supports (best: "
                         f"{best_isa()!r}; 'portable' always works), got {name!r}")
    _isa = p


cdef extern from "digest.h" nogil:
    enum: FC_DIGEST_KEYS
    ctypedef void (*fc_digest_blocks_fn)(uint64_t *, const unsigned char *, size_t,
                                         const uint64_t *)
    void fc_digest_set_key(const unsigned char *key, int portable)
    uint64_t fc_digest(const void *buf, size_t n, int threads)
    fc_digest_blocks_fn fc_digest_pick(int portable)
    uint64_t fc_digest_chunked(const uint64_t *key, fc_digest_blocks_fn blocks_fn,
                               const void *buf, size_t n, int threads)

fc_digest_set_key(os.urandom(FC_DIGEST_KEYS * 8), _isa.id == 0)


def signature(a):
    """(format, shape, digest) of a C-contiguous buffer (an array of any dtype, a NumPy
    scalar): what the per-call check of the prepared weights keeps of an array instead
    of a copy of it (fastconv/ops/conv/prepared.py).  The digest is keyed at random per
    process (src/digest.h): equal signatures within a process mean the same bytes but
    for a chance near 2^-64.  BufferError for a non-contiguous buffer."""
    cdef Py_buffer v
    cdef uint64_t h
    cdef int d
    PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    try:
        with nogil:
            h = fc_digest(v.buf, <size_t>v.len, fc_get_max_threads())
        shape = tuple([v.shape[d] for d in range(v.ndim)]) if v.shape != NULL else ()
        return (<bytes>v.format if v.format != NULL else b"B", shape, h)
    finally:
        PyBuffer_Release(&v)


def digest(a, bytes key, bint portable=False, int threads=1):
    """The digest of a's bytes (a C-contiguous buffer) under key (FC_DIGEST_KEYS * 8
    bytes) rather than the process's, by the portable blocks or this CPU's best, on up
    to threads threads: for testing src/digest.h against a reference."""
    cdef Py_buffer v
    cdef uint64_t h
    cdef uint64_t words[FC_DIGEST_KEYS]
    if len(key) != FC_DIGEST_KEYS * 8:
        raise ValueError(f"key must have {FC_DIGEST_KEYS * 8} bytes, got {len(key)}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    memcpy(words, <const char *>key, sizeof(words))
    PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS)
    try:
        with nogil:
            h = fc_digest_chunked(words, fc_digest_pick(portable), v.buf, <size_t>v.len,
                                  threads)
    finally:
        PyBuffer_Release(&v)
    return h


#: Bytes of the key digest() takes.
DIGEST_KEY_BYTES = FC_DIGEST_KEYS * 8


def same_all(tuple kept, tuple arrays):
    """Whether each of arrays has the signature kept at its place (None where None):
    the per-call check of the prepared weights in one call.  False also where an array
    is not C-contiguous or exposes no buffer (the caller then compares in Python,
    fastconv/ops/conv/prepared.py)."""
    cdef Py_ssize_t i, n = len(kept)
    if len(arrays) != n:
        return False
    for i in range(n):
        k, a = kept[i], arrays[i]
        if k is None or a is None:
            if not (k is None and a is None):
                return False
        elif not _has_signature(k, a):
            return False
    return True


cdef bint _has_signature(object k, object a):
    cdef Py_buffer v
    cdef bint same
    cdef Py_ssize_t d
    if not (type(k) is tuple and len(k) == 3 and type(k[0]) is bytes and
            type(k[1]) is tuple and type(k[2]) is int and 0 <= k[2] < 2 ** 64):
        return False   # (not a signature)
    cdef bytes fmt = k[0]
    cdef tuple shape = k[1]
    cdef uint64_t h = k[2]
    try:
        PyObject_GetBuffer(a, &v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (BufferError, TypeError, ValueError):
        return False
    try:
        same = (v.ndim == len(shape) and v.format != NULL and
                strcmp(v.format, fmt) == 0)
        if same:
            for d in range(v.ndim):
                if v.shape[d] != <Py_ssize_t>shape[d]:
                    same = False
                    break
        if same:
            with nogil:
                same = fc_digest(v.buf, <size_t>v.len, fc_get_max_threads()) == h
    finally:
        PyBuffer_Release(&v)
    return same


cdef extern from "transpose.h" nogil:
    void fc_transpose_uint32_t(const uint32_t *src, uint32_t *dst, Py_ssize_t n,
                               Py_ssize_t rows, Py_ssize_t cols, int threads, int simd)
    void fc_transpose_uint64_t(const uint64_t *src, uint64_t *dst, Py_ssize_t n,
                               Py_ssize_t rows, Py_ssize_t cols, int threads, int simd)
    void fc_transpose_uint8_t(const uint8_t *src, uint8_t *dst, Py_ssize_t n,
                              Py_ssize_t rows, Py_ssize_t cols, int threads, int simd)
    int fc_tr_simd(int portable)

cdef int _tr_simd = fc_tr_simd(_isa.id == 0)


def batched_transpose(a, out, Py_ssize_t n, Py_ssize_t rows, Py_ssize_t cols):
    """out[m, j, i] = a[m, i, j] for n matrices of rows x cols (src/transpose.h): a and
    out C-contiguous arrays of one dtype of 1, 4 or 8 bytes and n * rows * cols
    elements, not overlapping.  (N, C, H, W) -> (N, H, W, C) is rows = C, cols = H * W."""
    if not (isinstance(a, np.ndarray) and isinstance(out, np.ndarray)):
        raise TypeError(f"a and out must be ndarrays, got {type(a).__name__} and "
                        f"{type(out).__name__}")
    if a.dtype != out.dtype or a.dtype.itemsize not in (1, 4, 8):
        raise TypeError(f"a and out must have one dtype of 1, 4 or 8 bytes, got "
                        f"{a.dtype} and {out.dtype}")
    if not (a.flags.c_contiguous and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("a and out must be C-contiguous (out writeable)")
    if n < 0 or rows < 0 or cols < 0 or a.size != n * rows * cols or out.size != a.size:
        raise ValueError(f"a and out must have n * rows * cols = {n * rows * cols} "
                         f"elements (n, rows, cols >= 0), got {a.size} and {out.size}")
    # (the bounds only: np.shares_memory's exact test can take long)
    if np.may_share_memory(a, out):
        raise ValueError("a and out must not overlap")
    if a.size == 0:
        return out
    cdef int threads = fc_get_max_threads()
    cdef const uint32_t[::1] a4
    cdef uint32_t[::1] o4
    cdef const uint64_t[::1] a8
    cdef uint64_t[::1] o8
    cdef const uint8_t[::1] a1
    cdef uint8_t[::1] o1
    if a.dtype.itemsize == 1:
        a1, o1 = a.reshape(-1).view(np.uint8), out.reshape(-1).view(np.uint8)
        with nogil:
            fc_transpose_uint8_t(&a1[0], &o1[0], n, rows, cols, threads, 0)
    elif a.dtype.itemsize == 4:
        a4, o4 = a.reshape(-1).view(np.uint32), out.reshape(-1).view(np.uint32)
        with nogil:
            fc_transpose_uint32_t(&a4[0], &o4[0], n, rows, cols, threads, _tr_simd)
    else:
        a8, o8 = a.reshape(-1).view(np.uint64), out.reshape(-1).view(np.uint64)
        with nogil:
            fc_transpose_uint64_t(&a8[0], &o8[0], n, rows, cols, threads, 0)
    return out


def same_bytes(a, b):
    """Whether two C-contiguous buffers (arrays of any dtype) hold the same bytes (a
    memcmp, no copies; the tests' bit-for-bit comparison).  BufferError for a
    non-contiguous one."""
    cdef Py_buffer va, vb
    cdef bint same
    PyObject_GetBuffer(a, &va, PyBUF_C_CONTIGUOUS)
    try:
        PyObject_GetBuffer(b, &vb, PyBUF_C_CONTIGUOUS)
        try:
            same = va.len == vb.len and (va.len == 0 or
                                         memcmp(va.buf, vb.buf, va.len) == 0)
        finally:
            PyBuffer_Release(&vb)
    finally:
        PyBuffer_Release(&va)
    return same


def micro_tile(bint double):
    """(MR, NR) of the selected build for float64 (double=True) or float32."""
    if double:
        return _isa.mr_d, _isa.nr_d
    return _isa.mr_f, _isa.nr_f


def narrow_tile(bint double):
    """(rows, output channels per tile, vector length) of the selected build's narrow
    kernel (channels_last forward with few output channels)."""
    return _isa.mr_nr, FC_NO, (_isa.vl_d if double else _isa.vl_f)


def pixel_tile(bint double, bint half=False):
    """(MR, NR) of the selected build's pixel-row kernel (channels_last paths); half:
    of its half-width tile (one vector of columns)."""
    if half:
        return (_isa.mr_px1_d, _isa.nr_px1_d) if double else (_isa.mr_px1_f, _isa.nr_px1_f)
    if double:
        return _isa.mr_px_d, _isa.nr_px_d
    return _isa.mr_px_f, _isa.nr_px_f


def wide_tile(bint double):
    """(vector length, output channels per weight-gradient call) of the wide kernels
    for the selected ISA."""
    return (_isa.vl_d if double else _isa.vl_f), _isa.wg_co



cdef class Geometry:
    """One convolution as the kernels see it: the C struct (fc_conv, src/conv/geometry.h)
    filled once from named fields.  Entry points copy it and set their kernel's tile.
    pad_top and pad_left may be negative (the stride-1 input gradient crops)."""
    cdef fc_conv g

    def __cinit__(self, *, Py_ssize_t n, Py_ssize_t c_in, Py_ssize_t h, Py_ssize_t w,
                  Py_ssize_t c_out, Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t groups,
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                  Py_ssize_t dy, Py_ssize_t dx, Py_ssize_t pad_top, Py_ssize_t pad_left,
                  bint channels_last):
        if groups < 1 or c_in % groups or c_out % groups:
            raise ValueError(f"Geometry: groups={groups} must divide c_in={c_in} and "
                             f"c_out={c_out}")
        self.g.n, self.g.c, self.g.h, self.g.w = n, c_in, h, w
        self.g.cout, self.g.oh, self.g.ow, self.g.groups = c_out, oh, ow, groups
        self.g.kh, self.g.kw, self.g.sy, self.g.sx = kh, kw, sy, sx
        self.g.dy, self.g.dx, self.g.pt, self.g.pl = dy, dx, pad_top, pad_left
        self.g.last = channels_last
        self.g.cg = c_in // groups
        self.g.cog = c_out // groups
        self.g.kg = self.g.cg * kh * kw
        self.g.mr = 0  # (each entry point sets the tile of its kernel)
        self.g.nr = 0

    def __repr__(self):
        g = self.g
        return (f"Geometry(n={g.n}, c_in={g.c}, h={g.h}, w={g.w}, c_out={g.cout}, "
                f"oh={g.oh}, ow={g.ow}, groups={g.groups}, kh={g.kh}, kw={g.kw}, "
                f"sy={g.sy}, sx={g.sx}, dy={g.dy}, dx={g.dx}, pad_top={g.pt}, "
                f"pad_left={g.pl}, channels_last={bool(g.last)})")


cdef int _check(int rc, str who) except -1:
    """MemoryError for an entry point's failure code."""
    if rc == FC_ENOMEM:
        raise MemoryError(f"{who}: could not allocate per-thread scratch buffers")
    if rc == FC_ENOMEM_TABLE:
        raise MemoryError(f"{who}: could not allocate its tables")
    return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline const void *_in(const floating[::1] a) noexcept nogil:
    """a's data for an entry point (its dtype is the entry point's dbl argument)."""
    return <const void *>&a[0]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void *_out(floating[::1] a) noexcept nogil:
    """a's data for an entry point, to write."""
    return <void *>&a[0]


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline const void *_opt(const floating[::1] a) noexcept nogil:
    """a's data, or NULL when a is None (an optional argument such as bias)."""
    if a is None:
        return NULL
    return <const void *>&a[0]


cdef double *_bias_partials(double[::1] bsum, Py_ssize_t groups,
                            Py_ssize_t cout) except? NULL:
    """bsum's data (groups x cout partial bias sums, checked), or NULL without bsum."""
    if bsum is None:
        return NULL
    if bsum.shape[0] != groups * cout:
        raise ValueError(f"bsum must hold {groups * cout} partial sums, "
                         f"got {bsum.shape[0]}")
    return &bsum[0]


@cython.boundscheck(False)
@cython.wraparound(False)
def forward(const floating[::1] x, const floating[::1] ap, const floating[::1] bias,
            floating[::1] y, Geometry geom, bint relu=False):
    """y = conv(x) (+ bias) (then ReLU), flat arrays; ap = packed weights
    (groups, ceil(cog / MR), kg, MR).  Parallel over strips of NR output pixels."""

    cdef fc_conv g = geom.g
    cdef int rc
    with nogil:
        rc = fc_gemm_forward(floating is double, _isa, &g, _in(x), _in(ap), _opt(bias),
                             _out(y), relu)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                Geometry geom, Py_ssize_t n_per, Py_ssize_t pcmax):
    """Partial weight gradients, one per group of n_per images: part is zeroed,
    (n_igroups, groups, ceil(cog/MR)*MR, ceil(kg/NR)*NR).  Parallel over (image group,
    conv group) items."""

    cdef fc_conv g = geom.g
    cdef int rc
    with nogil:
        rc = fc_gemm_grad_weight(floating is double, _isa, &g, _in(x), _in(gy), _out(part),
                                 n_per, pcmax)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_input_scatter(const floating[::1] gy, const floating[::1] at, floating[::1] gx,
                       Geometry geom, Py_ssize_t n_per):
    """gx (zeroed) += scatter of W^T gy, any stride; at = packed transposed weights
    (groups, ceil(kg/MR), cog, MR).  Parallel over groups of n_per whole images (no two
    threads add into the same element)."""

    cdef fc_conv g = geom.g
    cdef int rc
    with nogil:
        rc = fc_gemm_grad_input(floating is double, _isa, &g, _in(gy), _in(at), _out(gx),
                                n_per)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_bias(const floating[::1] gy, double[::1] bsum, Geometry geom, Py_ssize_t n_per):
    """Partial bias gradients (n_igroups, C_out), zeroed, one per group of n_per images
    (float64 sums in a fixed order, see fc_bias_grad_item)."""

    cdef fc_conv g = geom.g
    with nogil:
        fc_bias_grad(floating is double, &g, _in(gy), &bsum[0], n_per)


@cython.boundscheck(False)
@cython.wraparound(False)
def forward_shift(const floating[::1] x, const floating[::1] ap,
                  const floating[::1] bias, floating[::1] y, Geometry geom,
                  bint relu=False):
    """Stride-1 forward through a padded copy of each image (src/conv/drivers/shifted.h).
    Parallel over images."""

    cdef fc_conv g = geom.g
    cdef int rc
    with nogil:
        rc = fc_shift_forward(floating is double, _isa, &g, _in(x), _in(ap), _opt(bias),
                              _out(y), relu)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def grad_weight_shift(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                      Geometry geom, Py_ssize_t n_per, Py_ssize_t pcmax):
    """Stride-1 partial weight gradients, one per group of n_per images: part zeroed,
    (n_igroups, groups, ceil(kg/MR)*MR, ceil(cog/NR)*NR) -- rows k, columns co.
    Parallel over (image group, conv group)."""

    cdef fc_conv g = geom.g
    cdef int rc
    with nogil:
        rc = fc_shift_grad_weight(floating is double, _isa, &g, _in(x), _in(gy), _out(part),
                                  n_per, pcmax)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def px_forward(const floating[::1] x, const floating[::1] bpk, const floating[::1] bias,
               floating[::1] y, Geometry geom, int relu=0, bint half=False,
               bint max_pool=False, bint tanh=False, bint avg_pool=False,
               floating[::1] yq=None):
    """channels_last, one group: y = conv(x) (+ bias) (then ReLU -- relu 1 -- or ReLU6
    -- relu 2, FC_RELU6 -- or tanh in float32) by
    the pixel-row kernel (half: its half-width tile); bpk = weights packed
    (ceil(cout/NR), kg, NR), k = (ki, kj, c), NR of that tile.  max_pool / avg_pool: y
    is instead the 2x2/2 max / average pool of that, (N, oh // 2, ow // 2, C_out), each
    image pooled from a per-thread copy while it is in cache (the full-size output is
    never written); yq (without a pool): the average pool as well as y.  Parallel over
    images."""

    cdef fc_conv g = geom.g
    cdef int act = FC_ACT_TANH if tanh else FC_ACT_NONE  # (ReLU: in the kernel)
    if relu < 0 or relu > FC_RELU6:
        raise ValueError(f"px_forward: relu must be 0, 1 or {FC_RELU6}, got {relu}")
    if tanh and (relu or floating is double):
        raise ValueError("px_forward: tanh is for float32 alone, without relu")
    if max_pool and avg_pool:
        raise ValueError("px_forward: max_pool or avg_pool, not both")
    cdef bint pooled = max_pool or avg_pool
    cdef Py_ssize_t img = g.oh * g.ow * g.cout
    cdef Py_ssize_t q_img = (g.oh // 2) * (g.ow // 2) * g.cout
    if y.shape[0] != g.n * (q_img if pooled else img):
        raise ValueError(f"px_forward: y must hold {g.n * (q_img if pooled else img)} "
                         f"elements, got {y.shape[0]}")
    if yq is not None and (pooled or yq.shape[0] != g.n * q_img):
        raise ValueError(f"px_forward: yq must hold {g.n * q_img} elements, without a "
                         f"pool")
    cdef floating *pq = &yq[0] if yq is not None and q_img > 0 else NULL
    cdef int rc
    with nogil:
        rc = fc_px_forward(floating is double, _isa, &g, half, _in(x), _in(bpk), _opt(bias),
                           _out(y), relu, act, max_pool, avg_pool, <void *>pq)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def dense_forward(const floating[:, ::1] x, const floating[:, ::1] w,
                  const floating[::1] bias, floating[:, ::1] y, bint relu=False,
                  bint x_t=False, bint w_t=False):
    """y = x @ w (+ bias) (then ReLU), x (m, k), w (k, n), y (m, n), all non-empty: the
    pixel-row kernel on blocks of NR columns of w (each copied once into a per-thread
    buffer) and x's rows read in place, each output the kernel's sum over k in order
    whatever the thread count.  x_t: x is given as x.T, (k, m) row-major; w_t: w as
    w.T, (n, k) row-major (read where they are, no copy).  Parallel over the column
    blocks."""

    cdef Py_ssize_t m = x.shape[1] if x_t else x.shape[0]
    cdef Py_ssize_t k = x.shape[0] if x_t else x.shape[1]
    cdef Py_ssize_t kw = w.shape[1] if w_t else w.shape[0]
    cdef Py_ssize_t n = w.shape[0] if w_t else w.shape[1]
    if kw != k or y.shape[0] != m or y.shape[1] != n or m * k * n == 0 or \
            (bias is not None and bias.shape[0] != n):
        raise ValueError(f"dense_forward: shapes x {(m, k)}, w {(kw, n)}, "
                         f"y {(y.shape[0], y.shape[1])} do not match or are empty")
    cdef int rc
    with nogil:
        rc = fc_dense_forward(floating is double, _isa, <const void *>&x[0, 0], m, k,
                              <const void *>&w[0, 0], _opt(bias), <void *>&y[0, 0], n,
                              relu, x_t, w_t)
    _check(rc, "dense_forward")


@cython.boundscheck(False)
@cython.wraparound(False)
def px_forward_narrow(const floating[::1] x, const floating[::1] wn,
                      const floating[::1] bias, floating[::1] y, Geometry geom,
                      bint relu=False):
    """channels_last, one group, few output channels, C a multiple of the vector length:
    y = conv(x) (+ bias) (then ReLU) by the narrow kernel; wn = weights packed
    (ceil(cout/FC_NO), kh*kw, FC_NO, C).  Parallel over images."""

    cdef fc_conv g = geom.g
    cdef int vl = _isa.vl_d if floating is double else _isa.vl_f
    if g.groups != 1 or g.c % vl:
        raise ValueError(f"the narrow kernel needs one group and C a multiple of {vl}")
    cdef int rc
    with nogil:
        rc = fc_narrow_forward(floating is double, _isa, &g, _in(x), _in(wn), _opt(bias),
                               _out(y), relu)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def px_grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                   Geometry geom, Py_ssize_t n_per, bint half=False, double[::1] bsum=None):
    """channels_last, one group: partial weight gradients by the pixel-row kernel (half:
    its half-width tile), one per group of n_per images; part zeroed, (n_igroups,
    ceil(kg/MR)*MR, ceil(cout/NR)*NR) -- rows k = (ki, kj, c), columns co, (MR, NR) of
    that tile.  With bsum (n_igroups, C_out), zeroed: grad_bias's partial sums of the
    same groups too (as grad_bias with n_per computes them), each while its group's
    grad_y is about to be read.  Parallel over image groups."""

    cdef fc_conv g = geom.g
    cdef double *pb = _bias_partials(bsum, (g.n + n_per - 1) // n_per, g.cout)
    cdef int rc
    with nogil:
        rc = fc_px_grad_weight(floating is double, _isa, &g, half, _in(x), _in(gy),
                               _out(part), n_per, pb)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def all_finite(const floating[::1] a):
    """True when no element of a is NaN or +-inf (the kernels' shortcuts over zero
    padding assume 0 * w == 0, which holds for finite w only:
    fastconv/ops/conv/algorithms/common.py).  An integer min over the exponent fields,
    which the compiler vectorises: all finite iff no element has its exponent bits all
    set."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef const uint32_t *u
    cdef const uint64_t *v
    cdef uint32_t m32 = 0x7F800000U, lo32 = 0x7F800000U
    cdef uint64_t m64 = 0x7FF0000000000000ULL, lo64 = 0x7FF0000000000000ULL
    cdef bint finite
    if n == 0:
        return True
    with nogil:
        if floating is float:
            u = <const uint32_t *>&a[0]
            for i in range(n):
                lo32 = min(lo32, (~u[i]) & m32)
            finite = lo32 != 0
        else:
            v = <const uint64_t *>&a[0]
            for i in range(n):
                lo64 = min(lo64, (~v[i]) & m64)
            finite = lo64 != 0
    return finite


@cython.boundscheck(False)
@cython.wraparound(False)
def pack_rows(const floating[:, :, :] mat, floating[::1] out, Py_ssize_t mr):
    """out[g, m, k, i] = mat[g, m * mr + i, k] (zero past the last row): the micro-kernel
    A panels (groups, ceil(rows/mr), kc, mr) of any strided (groups, rows, kc) view."""
    cdef Py_ssize_t G = mat.shape[0], rows = mat.shape[1], kc = mat.shape[2]
    cdef Py_ssize_t nm = (rows + mr - 1) // mr, g, m, k, i, r, o
    with nogil:
        for g in range(G):
            for m in range(nm):
                for k in range(kc):
                    o = ((g * nm + m) * kc + k) * mr
                    for i in range(mr):
                        r = m * mr + i
                        out[o + i] = mat[g, r, k] if r < rows else 0


include "conv2d_winograd.pxi"


@cython.boundscheck(False)
@cython.wraparound(False)
def wide_forward(const floating[::1] x, const floating[:, ::1] w, const floating[::1] bias,
                 floating[::1] y, Geometry geom, bint relu=False, bint tanh=False,
                 bint pool=False, floating[::1] yq=None):
    """channels_last, one group, stride 1: y = conv(x) (+ bias) (then ReLU, or tanh in
    float32) by the wide kernels (vectorised along output rows); w = the weights
    (C_out, kg), k = (c, ki, kj).  pool: y is instead the 2x2/2 average pool of that
    (N, oh // 2, ow // 2, C_out); yq (without pool): that pool as well as y.  Parallel
    over images."""

    cdef fc_conv g = geom.g
    cdef int act = FC_ACT_TANH if tanh else (FC_ACT_RELU if relu else FC_ACT_NONE)
    if tanh and (relu or floating is double):
        raise ValueError("wide_forward: tanh is for float32 alone, without relu")
    if w.shape[0] != g.cout or w.shape[1] != g.kg:
        raise ValueError(f"wide_forward: w must be ({g.cout}, {g.kg}), "
                         f"got ({w.shape[0]}, {w.shape[1]})")
    cdef Py_ssize_t pw = g.ow // 2 if pool else g.ow
    cdef Py_ssize_t size = g.n * (g.oh // 2 if pool else g.oh) * pw * g.cout
    if y.shape[0] != size:
        raise ValueError(f"wide_forward: y must hold {size} elements, got {y.shape[0]}")
    cdef Py_ssize_t qsize = g.n * (g.oh // 2) * (g.ow // 2) * g.cout
    if yq is not None and (pool or yq.shape[0] != qsize):
        raise ValueError(f"wide_forward: yq must hold {qsize} elements, without pool")
    cdef floating *pq = &yq[0] if yq is not None and qsize > 0 else NULL
    cdef int rc
    with nogil:
        rc = fc_wide_forward(floating is double, _isa, &g, _in(x), <const void *>&w[0, 0],
                             _opt(bias), _out(y), act, pool, <void *>pq)
    _check(rc, "conv2d")


@cython.boundscheck(False)
@cython.wraparound(False)
def wide_grad_weight(const floating[::1] x, const floating[::1] gy, floating[::1] part,
                     Geometry geom, Py_ssize_t n_per, double[::1] bsum=None,
                     Py_ssize_t bias_per=1, const floating[::1] gp=None,
                     const floating[::1] a=None):
    """channels_last, one group, stride 1: partial weight gradients by the wide kernels,
    one per group of n_per images; part zeroed, (n_igroups, kg, coutp) -- rows
    k = (ki, kj, c), coutp = C_out rounded up to wide_tile()[1].  With bsum
    ((n + bias_per - 1) // bias_per, C_out), zeroed, and n_per a multiple of bias_per:
    grad_bias's partial sums of groups of bias_per images too (as grad_bias with
    bias_per computes them), in the item of their images, before it reads their
    grad_y.  With gp and a (gy then unused, may be None): grad_y is the gradient through
    tanh (a, the output's shape: tanh's output) of a 2x2/2 average pool whose output
    gradient is gp (N, oh // 2, ow // 2, C_out), made for each item's images in a
    per-thread buffer while in cache -- the same values as avg_pool_backward_tanh_nhwc
    writes, so the same gradients.  Parallel over image groups."""

    cdef fc_conv g = geom.g
    cdef Py_ssize_t y_img = g.oh * g.ow * g.cout
    cdef Py_ssize_t q_img = (g.oh // 2) * (g.ow // 2) * g.cout
    cdef bint pooled = gp is not None
    if pooled and (a is None or a.shape[0] != g.n * y_img or gp.shape[0] != g.n * q_img):
        raise ValueError(f"wide_grad_weight: a must hold {g.n * y_img} and gp "
                         f"{g.n * q_img} elements")
    if not pooled and (gy is None or gy.shape[0] != g.n * y_img):
        raise ValueError(f"wide_grad_weight: gy must hold {g.n * y_img} elements")
    cdef const void *pgy = NULL
    cdef const void *pgp = NULL
    cdef const void *pa = NULL
    if pooled:
        pa = &a[0]
        if q_img > 0:
            pgp = &gp[0]
    else:
        pgy = &gy[0]
    if bsum is not None and (bias_per < 1 or n_per % bias_per):
        raise ValueError(f"n_per ({n_per}) must be a multiple of bias_per ({bias_per})")
    cdef double *pb = _bias_partials(bsum, (g.n + bias_per - 1) // bias_per, g.cout)
    cdef int rc
    with nogil:
        rc = fc_wide_grad_weight(floating is double, _isa, &g, _in(x), pgy, _out(part),
                                 n_per, pb, bias_per, pooled, pgp, pa)
    _check(rc, "conv2d")


include "conv2d_depthwise.pxi"
