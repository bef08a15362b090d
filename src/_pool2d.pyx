# cython: language_level=3
"""Compiled 2-D pooling kernels (max and average, forward and backward, both layouts).

The public ops in fastconv/pooling.py check every argument, resolve the padding and
allocate the outputs; these kernels trust what they get: C-contiguous arrays of one
floating dtype, shapes and pads already consistent, every window holding at least one
real (unpadded) cell.  They release the GIL and split the work over OpenMP threads.

Pooling is memory-bound, so every kernel makes a single pass over its input and writes
each output element once (backward passes zero a plane or an image in cache right
before scattering into it):

- channels_first: threads take whole (n, c) planes, which are small and contiguous;
- channels_last: forward threads take output rows (n, oy) and the innermost loop runs
  over the C contiguous channels with branch-free selects, so the compiler vectorises
  it; backward threads take images (or output rows when windows cannot overlap).

A 2x2 window with stride 2 and no padding (LeNet's and the CIFAR net's pools) has its
own straight-line path in every kernel.

Semantics (shared by all paths, tested against fastconv/reference.py):

- max: padded cells never take part; a later cell replaces the running maximum only
  when it is strictly greater, so ties go to the first cell in row-major window order;
  the first NaN of a window wins and stays (NaN propagates).  The argmax is stored as
  the row-major position ``ki * kw + kj`` inside the window (origin at the window's
  top-left corner, padding included), in uint8 when kh * kw <= 256, else int64 (a
  window may hold more than 2**31 cells).
- average: the window sum is accumulated in row-major order in the input's dtype and
  divided by ``kh * kw`` (pads counted) or by the number of real cells (pads excluded).
- Each output element is produced by exactly one thread in a fixed order, so results
  do not depend on the number of threads.
- Max backward reads stored window positions; a position that falls on padding or
  outside the window is ignored (never an out-of-bounds write).
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset

from omp_shim cimport fc_get_max_threads

cimport cython

cdef extern from "pool_grad.h" nogil:
    void fc_avg_tanh_grad_image_f(const float *gp, const float *a, float *gy,
                                  Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout)
    void fc_avg_tanh_grad_image_d(const double *gp, const double *a, double *gy,
                                  Py_ssize_t oh, Py_ssize_t ow, Py_ssize_t cout)

# The hottest 2x2/2 pooling rows in explicit SSE2 (src/pool/pool_simd.h); other CPUs,
# and builds with CFLAGS=-DFASTCONV_NO_SIMD, use the portable Cython loops (below and in
# src/pool/nchw.pxi).
cdef extern from "pool/pool_simd.h":
    bint FC_POOL_SSE2
    void fc_max_row_2x2_f32(const float *r0, const float *r1, float *y, uint8_t *idx,
                            Py_ssize_t ow) noexcept nogil
    int fc_max_back_row_2x2_f32(const float *g, const uint8_t *idx, float *r0, float *r1,
                                Py_ssize_t ow) noexcept nogil
    void fc_avg_row_nhwc_2x2_f32(const float *r0, const float *r1, float *y,
                                 Py_ssize_t ow, Py_ssize_t C) noexcept nogil


ctypedef fused floating:
    float
    double

ctypedef fused index_t:
    uint8_t
    int64_t


cdef enum:
    # Channels per block of the channels_last max pool's winners kept as int, and per
    # work item of its backward (a batch of one still splits over the threads).
    _CBLOCK = 32

# Windows of more cells keep their winners' positions whole (int64 indices), unblocked.
cdef Py_ssize_t _INT_MAX = 2147483647


cdef inline Py_ssize_t _imax(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a > b else b


cdef inline Py_ssize_t _imin(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return a if a < b else b


# The max update is written out branch-free in every loop below (no helper call), in
# the form GCC if-converts and vectorises:
#     w = (not (v <= best)) & (not nan)     # v > best, or v is the first NaN
#     best = v if w else best ; k = pos if w else k ; nan = nan | (v != v)
# Once a NaN has won (``nan`` set) nothing replaces it; ties keep the earlier cell.


# channels_first: one (n, c) plane at a time (src/pool/nchw.pxi)
include "pool/nchw.pxi"


# --------------------------------------------------------------------------------------
# channels_last: the innermost loop runs over the C contiguous channels
# --------------------------------------------------------------------------------------

cdef void _max_row_nhwc_2x2(const floating *xn, floating *yr, index_t *ir, bint store,
                            Py_ssize_t W, Py_ssize_t C, Py_ssize_t oy,
                            Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t ox, c
    cdef const floating *a
    cdef const floating *b
    cdef const floating *d
    cdef const floating *e
    cdef floating best, v
    cdef int k, w, nan
    for ox in range(OW):
        a = xn + (2 * oy * W + 2 * ox) * C
        b = a + C
        d = a + W * C
        e = d + C
        if store:
            for c in range(C):
                best = a[c]
                nan = best != best
                v = b[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 1 if w else 0
                nan = nan | (v != v)
                v = d[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 2 if w else k
                nan = nan | (v != v)
                v = e[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                k = 3 if w else k
                yr[ox * C + c] = best
                ir[ox * C + c] = <index_t>k
        else:
            for c in range(C):
                best = a[c]
                nan = best != best
                v = b[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                nan = nan | (v != v)
                v = d[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                nan = nan | (v != v)
                v = e[c]
                w = (not (v <= best)) & (not nan)
                best = v if w else best
                yr[ox * C + c] = best


cdef void _max_row_nhwc(const floating *xn, floating *yr, index_t *ir, bint store,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t OW,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sx, Py_ssize_t y0,
                        Py_ssize_t pl) noexcept nogil:
    cdef Py_ssize_t ox, c, c0, cn, iy, ix, x0, ylo, yhi, xlo, xhi, k, k0
    cdef const floating *src
    cdef floating *yo
    cdef index_t *io
    cdef floating v, b
    cdef bint w
    # the winners' positions as int (the width the compiler vectorises next to the
    # values), stored as index_t once per block of channels
    cdef int kb[_CBLOCK]
    ylo = _imax(y0, 0)
    yhi = _imin(y0 + kh, H)
    for ox in range(OW):
        x0 = ox * sx - pl
        xlo = _imax(x0, 0)
        xhi = _imin(x0 + kw, W)
        yo = yr + ox * C
        io = ir + ox * C if store else ir
        src = xn + (ylo * W + xlo) * C
        k0 = (ylo - y0) * kw + (xlo - x0)   # the first cell's position
        for c in range(C):
            yo[c] = src[c]
        if store and kh * kw > _INT_MAX:   # (positions past an int: whole, scalar)
            for c in range(C):
                io[c] = <index_t>k0
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    if iy == ylo and ix == xlo:
                        continue
                    src = xn + (iy * W + ix) * C
                    k = (iy - y0) * kw + (ix - x0)
                    for c in range(C):
                        v = src[c]
                        b = yo[c]
                        w = (not (v <= b)) & (b == b)
                        yo[c] = v if w else b
                        io[c] = <index_t>k if w else io[c]
            continue
        if store:
            c0 = 0
            while c0 < C:
                cn = _imin(<Py_ssize_t>_CBLOCK, C - c0)
                for c in range(cn):
                    kb[c] = <int>k0
                for iy in range(ylo, yhi):
                    for ix in range(xlo, xhi):
                        if iy == ylo and ix == xlo:
                            continue
                        src = xn + (iy * W + ix) * C + c0
                        k = (iy - y0) * kw + (ix - x0)
                        for c in range(cn):
                            v = src[c]
                            b = yo[c0 + c]
                            w = (not (v <= b)) & (b == b)
                            yo[c0 + c] = v if w else b
                            kb[c] = <int>k if w else kb[c]
                for c in range(cn):
                    io[c0 + c] = <index_t>kb[c]
                c0 += _CBLOCK
            continue
        for iy in range(ylo, yhi):
            for ix in range(xlo, xhi):
                if iy == ylo and ix == xlo:
                    continue
                src = xn + (iy * W + ix) * C
                for c in range(C):
                    v = src[c]
                    b = yo[c]
                    yo[c] = v if (not (v <= b)) & (b == b) else b


cdef void _avg_row_nhwc(const floating *xn, floating *yr,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t OW,
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sx, Py_ssize_t y0,
                        Py_ssize_t pl, bint include_pad) noexcept nogil:
    cdef Py_ssize_t ox, c, iy, ix, x0, ylo, yhi, xlo, xhi, count
    cdef const floating *src
    cdef floating *yo
    cdef floating div
    ylo = _imax(y0, 0)
    yhi = _imin(y0 + kh, H)
    for ox in range(OW):
        x0 = ox * sx - pl
        xlo = _imax(x0, 0)
        xhi = _imin(x0 + kw, W)
        yo = yr + ox * C
        memset(yo, 0, C * sizeof(floating))
        for iy in range(ylo, yhi):
            for ix in range(xlo, xhi):
                src = xn + (iy * W + ix) * C
                for c in range(C):
                    yo[c] = yo[c] + src[c]
        count = kh * kw if include_pad else (yhi - ylo) * (xhi - xlo)
        div = <floating>count
        for c in range(C):
            yo[c] = yo[c] / div


cdef void _avg_row_nhwc_2x2(const floating *xn, floating *yr, Py_ssize_t W,
                            Py_ssize_t C, Py_ssize_t oy, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t ox, c
    cdef const floating *a
    cdef const floating *b
    cdef const floating *d
    cdef const floating *e
    if floating is float:
        if FC_POOL_SSE2:
            fc_avg_row_nhwc_2x2_f32(xn + 2 * oy * W * C, xn + (2 * oy + 1) * W * C, yr,
                                    OW, C)
            return
    for ox in range(OW):
        a = xn + (2 * oy * W + 2 * ox) * C
        b = a + C
        d = a + W * C
        e = d + C
        for c in range(C):
            yr[ox * C + c] = (a[c] + b[c] + d[c] + e[c]) / <floating>4


cdef void _back_row_nhwc_2x2(const floating *gyr, const index_t *ir, bint is_max,
                             floating *gn, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                             Py_ssize_t oy, Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """Input rows 2*oy and 2*oy+1 (and the odd tail rows/column) of one image."""
    cdef Py_ssize_t ox, c
    cdef floating *a
    cdef floating *b
    cdef floating *d
    cdef floating *e
    cdef floating g, z = 0
    for ox in range(OW):
        a = gn + (2 * oy * W + 2 * ox) * C
        b = a + C
        d = a + W * C
        e = d + C
        if is_max:
            # One loop per cell of the window, loads before the select: each loop is
            # one select that GCC vectorises.
            for c in range(C):
                g = gyr[ox * C + c]
                a[c] = g if <int>ir[ox * C + c] == 0 else z
            for c in range(C):
                g = gyr[ox * C + c]
                b[c] = g if <int>ir[ox * C + c] == 1 else z
            for c in range(C):
                g = gyr[ox * C + c]
                d[c] = g if <int>ir[ox * C + c] == 2 else z
            for c in range(C):
                g = gyr[ox * C + c]
                e[c] = g if <int>ir[ox * C + c] == 3 else z
        else:
            for c in range(C):
                g = gyr[ox * C + c] / <floating>4
                a[c] = g
                b[c] = g
                d[c] = g
                e[c] = g
    if 2 * OW < W:
        memset(gn + (2 * oy * W + 2 * OW) * C, 0, (W - 2 * OW) * C * sizeof(floating))
        memset(gn + ((2 * oy + 1) * W + 2 * OW) * C, 0,
               (W - 2 * OW) * C * sizeof(floating))
    if oy == OH - 1 and 2 * OH < H:
        memset(gn + 2 * OH * W * C, 0, (H - 2 * OH) * W * C * sizeof(floating))


cdef void _max_back_block_nhwc(const floating *gyn, const index_t *idn, floating *gn,
                               Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t c0,
                               Py_ssize_t cn, Py_ssize_t OH, Py_ssize_t OW,
                               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy,
                               Py_ssize_t sx, Py_ssize_t pt,
                               Py_ssize_t pl) noexcept nogil:
    """Channels [c0, c0 + cn) (cn <= _CBLOCK) of one image's input gradient: each
    window's gradient added to its winner, windows in row-major order."""
    cdef Py_ssize_t oy, ox, c, iy, ix, y0, x0, ylo, yhi, xlo, xhi, p
    cdef const floating *g
    cdef const index_t *ik
    cdef floating *dst
    cdef floating z = 0, gv
    cdef int ki, kb[_CBLOCK]   # the window's winners as int (see _max_row_nhwc)
    for p in range(H * W):
        memset(gn + p * C + c0, 0, cn * sizeof(floating))
    for oy in range(OH):
        y0 = oy * sy - pt
        ylo = _imax(y0, 0)
        yhi = _imin(y0 + kh, H)
        for ox in range(OW):
            x0 = ox * sx - pl
            xlo = _imax(x0, 0)
            xhi = _imin(x0 + kw, W)
            g = gyn + (oy * OW + ox) * C + c0
            ik = idn + (oy * OW + ox) * C + c0
            if kh * kw > _INT_MAX:   # (positions past an int: compared whole, scalar)
                for iy in range(ylo, yhi):
                    for ix in range(xlo, xhi):
                        dst = gn + (iy * W + ix) * C + c0
                        for c in range(cn):
                            gv = g[c]
                            dst[c] = dst[c] + (gv if <Py_ssize_t>ik[c] == (
                                (iy - y0) * kw + (ix - x0)) else z)
                continue
            for c in range(cn):
                kb[c] = <int>ik[c]
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    ki = <int>((iy - y0) * kw + (ix - x0))
                    dst = gn + (iy * W + ix) * C + c0
                    for c in range(cn):   # (g read unconditionally: if-converted)
                        gv = g[c]
                        dst[c] = dst[c] + (gv if kb[c] == ki else z)


cdef void _avg_back_image_nhwc(const floating *gyn, floating *gn,
                               Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t OH,
                               Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw,
                               Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt,
                               Py_ssize_t pl, bint include_pad) noexcept nogil:
    cdef Py_ssize_t oy, ox, c, iy, ix, y0, x0, ylo, yhi, xlo, xhi, count
    cdef const floating *g
    cdef floating *dst
    cdef floating div
    memset(gn, 0, H * W * C * sizeof(floating))
    for oy in range(OH):
        y0 = oy * sy - pt
        ylo = _imax(y0, 0)
        yhi = _imin(y0 + kh, H)
        for ox in range(OW):
            x0 = ox * sx - pl
            xlo = _imax(x0, 0)
            xhi = _imin(x0 + kw, W)
            g = gyn + (oy * OW + ox) * C
            count = kh * kw if include_pad else (yhi - ylo) * (xhi - xlo)
            div = <floating>count
            for iy in range(ylo, yhi):
                for ix in range(xlo, xhi):
                    dst = gn + (iy * W + ix) * C
                    for c in range(C):
                        dst[c] = dst[c] + g[c] / div


# --------------------------------------------------------------------------------------
# Python entry points (arguments already checked by fastconv/pooling.py)
# --------------------------------------------------------------------------------------

# Below this many input elements one thread does the whole call: waking a second
# thread costs more than the work it would take over.
cdef enum:
    _SERIAL_ELEMENTS = 32768


cdef inline int _threads(Py_ssize_t elements) noexcept nogil:
    return 1 if elements < _SERIAL_ELEMENTS else fc_get_max_threads()


cdef inline bint _is_2x2(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                         Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t OH, Py_ssize_t OW) noexcept nogil:
    """2x2 windows, stride 2, every window inside the input (no padding used)."""
    return (kh == 2 and kw == 2 and sy == 2 and sx == 2 and pt == 0 and pl == 0
            and 2 * OH <= H and 2 * OW <= W)


def is_2x2(Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt,
           Py_ssize_t pl, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW):
    """Whether the kernels take a pooling's fast 2x2/2 rows (fastconv/pooling.py)."""
    return _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)


@cython.boundscheck(False)
@cython.wraparound(False)
def max_pool_nchw(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                  index_t[:, :, :, ::1] idx, bint store, Py_ssize_t kh, Py_ssize_t kw,
                  Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt, Py_ssize_t pl):
    """y (and idx when store) = max pooling of x (N, C, H, W); idx is ignored otherwise."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], p, planes = N * C
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if planes == 0 or OH * OW == 0:
        return
    cdef const floating *xb = &x[0, 0, 0, 0]
    cdef floating *yb = &y[0, 0, 0, 0]
    cdef index_t *ib = &idx[0, 0, 0, 0]
    for p in prange(planes, nogil=True, schedule="static", num_threads=nt):
        if fast:
            _max_plane_2x2(xb + p * H * W, yb + p * OH * OW,
                           ib + p * OH * OW if store else ib, store, W, OH, OW)
        else:
            _max_plane(xb + p * H * W, yb + p * OH * OW,
                       ib + p * OH * OW if store else ib, store, H, W, OH, OW,
                       kh, kw, sy, sx, pt, pl)


@cython.boundscheck(False)
@cython.wraparound(False)
def max_pool_nhwc(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                  index_t[:, :, :, ::1] idx, bint store, Py_ssize_t kh, Py_ssize_t kw,
                  Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt, Py_ssize_t pl):
    """y (and idx when store) = max pooling of x (N, H, W, C); idx is ignored otherwise."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], r, n, oy, rows = N * OH
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if rows == 0 or OW * C == 0:
        return
    cdef const floating *xb = &x[0, 0, 0, 0]
    cdef floating *yb = &y[0, 0, 0, 0]
    cdef index_t *ib = &idx[0, 0, 0, 0]
    for r in prange(rows, nogil=True, schedule="static", num_threads=nt):
        n = r // OH
        oy = r % OH
        if fast:
            _max_row_nhwc_2x2(xb + n * H * W * C, yb + r * OW * C,
                              ib + r * OW * C if store else ib, store, W, C, oy, OW)
        else:
            _max_row_nhwc(xb + n * H * W * C, yb + r * OW * C,
                          ib + r * OW * C if store else ib, store, H, W, C, OW,
                          kh, kw, sx, oy * sy - pt, pl)


@cython.boundscheck(False)
@cython.wraparound(False)
def avg_pool_nchw(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                  Py_ssize_t pt, Py_ssize_t pl, bint include_pad):
    """y = average pooling of x (N, C, H, W)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], p, planes = N * C
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if planes == 0 or OH * OW == 0:
        return
    cdef const floating *xb = &x[0, 0, 0, 0]
    cdef floating *yb = &y[0, 0, 0, 0]
    for p in prange(planes, nogil=True, schedule="static", num_threads=nt):
        if fast:
            _avg_plane_2x2(xb + p * H * W, yb + p * OH * OW, W, OH, OW)
        else:
            _avg_plane(xb + p * H * W, yb + p * OH * OW, H, W, OH, OW, kh, kw, sy, sx,
                       pt, pl, include_pad)


@cython.boundscheck(False)
@cython.wraparound(False)
def avg_pool_nhwc(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                  Py_ssize_t pt, Py_ssize_t pl, bint include_pad):
    """y = average pooling of x (N, H, W, C)."""
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t OH = y.shape[1], OW = y.shape[2], r, n, oy, rows = N * OH
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if rows == 0 or OW * C == 0:
        return
    cdef const floating *xb = &x[0, 0, 0, 0]
    cdef floating *yb = &y[0, 0, 0, 0]
    for r in prange(rows, nogil=True, schedule="static", num_threads=nt):
        n = r // OH
        oy = r % OH
        if fast:
            _avg_row_nhwc_2x2(xb + n * H * W * C, yb + r * OW * C, W, C, oy, OW)
        else:
            _avg_row_nhwc(xb + n * H * W * C, yb + r * OW * C, H, W, C, OW, kh, kw, sx,
                          oy * sy - pt, pl, include_pad)


@cython.boundscheck(False)
@cython.wraparound(False)
def max_pool_backward_nchw(const floating[:, :, :, ::1] grad_y,
                           const index_t[:, :, :, ::1] idx, floating[:, :, :, ::1] grad_x,
                           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                           Py_ssize_t pt, Py_ssize_t pl):
    """grad_x (written in full) = grad_y routed to the stored window positions idx."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], p, planes = N * C
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if planes == 0 or H * W == 0:
        return
    cdef floating *gb = &grad_x[0, 0, 0, 0]
    if OH * OW == 0:
        memset(gb, 0, planes * H * W * sizeof(floating))
        return
    cdef const floating *gyb = &grad_y[0, 0, 0, 0]
    cdef const index_t *ib = &idx[0, 0, 0, 0]
    for p in prange(planes, nogil=True, schedule="static", num_threads=nt):
        if fast:
            _max_back_plane_2x2(gyb + p * OH * OW, ib + p * OH * OW, gb + p * H * W,
                                H, W, OH, OW)
        else:
            _max_back_plane(gyb + p * OH * OW, ib + p * OH * OW, gb + p * H * W,
                            H, W, OH, OW, kh, kw, sy, sx, pt, pl)


@cython.boundscheck(False)
@cython.wraparound(False)
def max_pool_backward_nhwc(const floating[:, :, :, ::1] grad_y,
                           const index_t[:, :, :, ::1] idx, floating[:, :, :, ::1] grad_x,
                           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sy, Py_ssize_t sx,
                           Py_ssize_t pt, Py_ssize_t pl):
    """grad_x (written in full) = grad_y routed to the stored window positions idx."""
    cdef Py_ssize_t N = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t C = grad_x.shape[3], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t n, r, oy, c0, blocks
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if N == 0 or H * W * C == 0:
        return
    cdef floating *gb = &grad_x[0, 0, 0, 0]
    if OH * OW == 0:
        memset(gb, 0, N * H * W * C * sizeof(floating))
        return
    cdef const floating *gyb = &grad_y[0, 0, 0, 0]
    cdef const index_t *ib = &idx[0, 0, 0, 0]
    if fast:
        for r in prange(N * OH, nogil=True, schedule="static", num_threads=nt):
            n = r // OH
            oy = r % OH
            _back_row_nhwc_2x2(gyb + r * OW * C, ib + r * OW * C, True,
                               gb + n * H * W * C, H, W, C, oy, OH, OW)
    else:
        # work items: (image, block of channels), so that batch 1 splits too; each
        # item owns its channels of every pixel (no two write the same value)
        blocks = (C + _CBLOCK - 1) // _CBLOCK
        for r in prange(N * blocks, nogil=True, schedule="static", num_threads=nt):
            n = r // blocks
            c0 = (r % blocks) * _CBLOCK
            _max_back_block_nhwc(gyb + n * OH * OW * C, ib + n * OH * OW * C,
                                 gb + n * H * W * C, H, W, C, c0,
                                 _imin(<Py_ssize_t>_CBLOCK, C - c0), OH, OW, kh, kw,
                                 sy, sx, pt, pl)


@cython.boundscheck(False)
@cython.wraparound(False)
def avg_pool_backward_nchw(const floating[:, :, :, ::1] grad_y,
                           floating[:, :, :, ::1] grad_x, Py_ssize_t kh, Py_ssize_t kw,
                           Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt, Py_ssize_t pl,
                           bint include_pad):
    """grad_x (written in full) = grad_y spread evenly over each window's cells."""
    cdef Py_ssize_t N = grad_x.shape[0], C = grad_x.shape[1]
    cdef Py_ssize_t H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t OH = grad_y.shape[2], OW = grad_y.shape[3], p, planes = N * C
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    if planes == 0 or H * W == 0:
        return
    cdef floating *gb = &grad_x[0, 0, 0, 0]
    if OH * OW == 0:
        memset(gb, 0, planes * H * W * sizeof(floating))
        return
    cdef const floating *gyb = &grad_y[0, 0, 0, 0]
    for p in prange(planes, nogil=True, schedule="static", num_threads=nt):
        if fast:
            _avg_back_plane_2x2(gyb + p * OH * OW, gb + p * H * W, H, W, OH, OW)
        else:
            _avg_back_plane(gyb + p * OH * OW, gb + p * H * W, H, W, OH, OW, kh, kw,
                            sy, sx, pt, pl, include_pad)


@cython.boundscheck(False)
@cython.wraparound(False)
def avg_pool_backward_nhwc(const floating[:, :, :, ::1] grad_y,
                           floating[:, :, :, ::1] grad_x, Py_ssize_t kh, Py_ssize_t kw,
                           Py_ssize_t sy, Py_ssize_t sx, Py_ssize_t pt, Py_ssize_t pl,
                           bint include_pad):
    """grad_x (written in full) = grad_y spread evenly over each window's cells."""
    cdef Py_ssize_t N = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t C = grad_x.shape[3], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t n, r, oy
    cdef bint fast = _is_2x2(kh, kw, sy, sx, pt, pl, H, W, OH, OW)
    cdef int nt = _threads(N * C * H * W)
    cdef const uint8_t *no_idx = NULL
    if N == 0 or H * W * C == 0:
        return
    cdef floating *gb = &grad_x[0, 0, 0, 0]
    if OH * OW == 0:
        memset(gb, 0, N * H * W * C * sizeof(floating))
        return
    cdef const floating *gyb = &grad_y[0, 0, 0, 0]
    if fast:
        for r in prange(N * OH, nogil=True, schedule="static", num_threads=nt):
            n = r // OH
            oy = r % OH
            _back_row_nhwc_2x2(gyb + r * OW * C, no_idx, False, gb + n * H * W * C,
                               H, W, C, oy, OH, OW)
    else:
        for n in prange(N, nogil=True, schedule="static", num_threads=nt):
            _avg_back_image_nhwc(gyb + n * OH * OW * C, gb + n * H * W * C, H, W, C, OH,
                                 OW, kh, kw, sy, sx, pt, pl, include_pad)


@cython.boundscheck(False)
@cython.wraparound(False)
def avg_pool_backward_tanh_nhwc(const floating[:, :, :, ::1] grad_y,
                                const floating[:, :, :, ::1] a,
                                floating[:, :, :, ::1] grad_x):
    """grad_x = (grad_y / 4 spread over each 2x2 window) * (1 - a * a), a = tanh's output
    (the shape of grad_x): the gradient through tanh and a 2x2/2 average pool without
    padding in one pass, rounded as avg_pool_backward_nhwc then tanh_backward round it
    (cells in no window get (1 - a * a) * 0).  Image by image (src/pool_grad.h, the
    function the wide weight gradient takes it with too), in parallel."""
    cdef Py_ssize_t N = grad_x.shape[0], H = grad_x.shape[1], W = grad_x.shape[2]
    cdef Py_ssize_t C = grad_x.shape[3], OH = grad_y.shape[1], OW = grad_y.shape[2]
    cdef Py_ssize_t img = H * W * C, q_img = OH * OW * C, n
    if (a.shape[0] != N or a.shape[1] != H or a.shape[2] != W or a.shape[3] != C
            or grad_y.shape[0] != N or grad_y.shape[3] != C
            or OH != H // 2 or OW != W // 2):
        raise ValueError("avg_pool_backward_tanh_nhwc: shapes do not match a 2x2/2 pool")
    if N == 0 or img == 0:
        return
    cdef const floating *pg = &grad_y[0, 0, 0, 0] if q_img > 0 else NULL
    cdef const floating *pa = &a[0, 0, 0, 0]
    cdef floating *px = &grad_x[0, 0, 0, 0]
    cdef int nt = _threads(N * img)
    for n in prange(N, nogil=True, schedule="static", num_threads=nt):
        if floating is float:
            fc_avg_tanh_grad_image_f(pg + n * q_img if pg != NULL else NULL, pa + n * img,
                                     px + n * img, H, W, C)
        else:
            fc_avg_tanh_grad_image_d(pg + n * q_img if pg != NULL else NULL, pa + n * img,
                                     px + n * img, H, W, C)
