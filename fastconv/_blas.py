"""The layers' matrix products (the Dense layer, dense convolutions): fastconv's own
kernel where it beats the BLAS (_product), else NumPy's BLAS with its threading chosen
here: one BLAS thread for small products, two one-thread halves on the kernels' OpenMP
threads for medium ones, the BLAS's own threads for very large ones."""
import threading

import numpy as np

from . import _ext
from . import tuning as _tuning

# Matrix products below Tuning.blas_serial_macs multiply-adds (all of LeNet-5's and the
# CIFAR-10 network's) run on one BLAS thread (medium ones in two halves): the BLAS's
# thread pool and the kernels' OpenMP threads fight for the cores, and one thread gives
# the same bits for any thread count, which OpenBLAS on 2 threads does not for some
# shapes (docs/design/algorithms.md, "Dense products").  The thresholds are fields of
# the one tuning object (fastconv/tuning.py), read at call time.
_blas_controllers = None


def _blas():
    """threadpoolctl's controllers of the loaded BLAS libraries ([] without it)."""
    global _blas_controllers
    if _blas_controllers is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_controllers = list(
                ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl missing or unable to inspect this BLAS
            _blas_controllers = []
    return _blas_controllers


# The open _SerialBlas regions: the BLAS is on one thread while any is open, and the
# outermost one saved the counts it restores.  A model opens one region for a whole pass
# (models.Sequential), so its layers' own regions cost a counter instead of four calls
# into the BLAS (docs/design/algorithms.md).  The thread count is the process's, as the
# regions are: a lock keeps the count right when several Python threads run passes.
_lock = threading.Lock()
_depth = 0
_saved = []


class _SerialBlas:
    """Context manager: BLAS on one thread inside, the previous counts restored when the
    outermost region closes."""

    def __enter__(self):
        global _depth, _saved
        with _lock:
            if _depth == 0:
                _saved = []
                for lib in _blas():
                    n = lib.get_num_threads()
                    if n != 1:
                        lib.set_num_threads(1)
                        _saved.append((lib, n))
            _depth += 1
        return self

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0:
                for lib, n in _saved:
                    lib.set_num_threads(n)
        return False


class _AllBlasThreads:
    """Context manager: the BLAS's own thread counts for one large product inside a
    _SerialBlas region (one thread again after)."""

    def __enter__(self):
        with _lock:
            for lib, n in _saved if _depth else ():
                lib.set_num_threads(n)
        return self

    def __exit__(self, *exc):
        with _lock:
            for lib, _ in _saved if _depth else ():
                lib.set_num_threads(1)
        return False


class _NoOp:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NO_OP = _NoOp()


# Products of at least Tuning.blas_split_macs multiply-adds (below blas_serial_macs) are
# cut in two halves of the output, each a one-thread BLAS product on one of the kernels'
# OpenMP threads (run_products), which uses both cores without the BLAS's pool
# (docs/design/algorithms.md).  The halves are the same products whatever the thread
# count (with one thread they run one after the other), so the result does not
# depend on it.


def _half(size):
    """Where a product of size rows (or columns) is cut: a multiple of 64 near size / 2,
    or 0 (not cut) when the second half would be empty."""
    h = (size // 2 + 63) // 64 * 64
    return h if 0 < h < size else 0


def _matmul(a, b):
    """a @ b (2-D ndarrays of one float dtype) with the BLAS threading of
    _blas_threads, products of Tuning.blas_split_macs or more cut in two halves."""
    m, k = a.shape
    n = b.shape[1]
    macs = m * k * n
    t = _tuning.current()
    h = (_half(m if m >= n else n) if t.blas_split_macs <= macs < t.blas_serial_macs
         else 0)
    if h == 0:
        with _blas_threads(m, k, n):
            return a @ b
    out = np.empty((m, n), np.result_type(a, b))
    return banded_matmul(a, b, out, (0, h, m if m >= n else n), m >= n)


def bands(size, parts, align=64):
    """Edges (0, ..., size) cutting size into at most parts bands of a multiple of
    align (the last one shorter)."""
    step = -(-max(-(-size // parts), 1) // align) * align
    return tuple(range(0, size, step)) + (size,)


def banded_matmul(a, b, out, edges, rows=True):
    """out = a @ b as one-thread BLAS products over bands of out's rows (rows) or
    columns between edges (run_products).  The bands are the caller's, not the thread
    count's: the same products, so the same bits, on any number of threads."""
    run_products([(a[lo:hi], b, out[lo:hi]) if rows else (a, b[:, lo:hi], out[:, lo:hi])
                  for lo, hi in zip(edges, edges[1:]) if hi > lo])
    return out


def run_products(jobs):
    """np.matmul(a, b, out=out) for each (a, b, out[, then]) of jobs (then(out) after
    it, on the same thread: work on the band while in cache), each on one BLAS thread,
    on the kernels' OpenMP threads (NumPy releases the GIL in the BLAS).  Neither the
    BLAS's own pool nor Python threads: their threads and the kernels' idle OpenMP
    threads, which spin a while after each kernel, would take the cores from each
    other (fastconv/__init__.py, GOMP_SPINCOUNT)."""
    with _SerialBlas():
        threads = _ext.openmp.get_max_threads()
        if threads < 2 or len(jobs) < 2:
            for job in jobs:
                _run_one(job)
        else:
            _ext.openmp.run_jobs(jobs, _run_one, threads)


def _run_one(job):
    x, y, z, *then = job
    np.matmul(x, y, out=z)
    if then:
        then[0](z)


def _blas_threads(m, k, n):
    """The context for an (m, k) @ (k, n) product (see Tuning.blas_serial_macs)."""
    if m * k * n < _tuning.current().blas_serial_macs:
        return _SerialBlas()
    return _AllBlasThreads() if _depth else _NO_OP


# _product's own kernel (_ext.conv2d.dense_forward: the convolutions' pixel-row kernel
# on blocks of NR columns of b, each copied once into a per-thread buffer, a's rows read
# in place, parallel over the blocks) for products from Tuning.kernel_min_macs up to
# blas_serial_macs multiply-adds with a reduction of at least kernel_min_k, at least one
# tile of columns and a first operand of at most kernel_max_input_bytes (it reads all of
# it again for every block of columns, so it should stay in cache): BLAS packs both
# operands on every call and, below blas_split_macs, runs on one thread.  An operand that
# is not C-contiguous takes the kernel up to kernel_max_copy_bytes (the transpose of a
# C-contiguous array read in place, another copied first); beyond, the copy costs more
# than the kernel saves (docs/design/algorithms.md, "Dense products").


def _f_order(a):
    """Whether 2-D a is the transpose of a C-contiguous array (and not C-contiguous
    itself): the kernel reads it as that transpose, without a copy."""
    return not a.flags.c_contiguous and a.T.flags.c_contiguous


def _kernel_suits(a, b, bias):
    """Whether _product runs a @ b (+ bias) on its kernel (see the comment above)."""
    m, k = a.shape
    n = b.shape[1]
    t = _tuning.current()
    if not (t.kernel_min_macs <= m * k * n < t.blas_serial_macs and k >= t.kernel_min_k):
        return False  # (first: the cheap tests that small products fail)
    dtype = b.dtype
    copy = t.kernel_max_copy_bytes
    return (dtype in (np.float32, np.float64) and a.dtype == dtype and
            a.nbytes <= t.kernel_max_input_bytes and
            (a.flags.c_contiguous or a.nbytes <= copy) and
            (b.flags.c_contiguous or b.nbytes <= copy) and
            (bias is None or (bias.dtype == dtype and bias.flags.c_contiguous)) and
            n >= _ext.conv2d.pixel_tile(dtype == np.float64)[1])


def _product(a, b, bias=None):
    """a @ b (+ bias): 2-D arrays of one float dtype (any strides), bias (b's columns)
    or None; on the kernel where _kernel_suits, else _matmul.  The same bits for any
    thread count either way."""
    if _kernel_suits(a, b, bias):
        z = np.empty((a.shape[0], b.shape[1]), b.dtype)
        a_t, b_t = _f_order(a), _f_order(b)
        _ext.conv2d.dense_forward(a.T if a_t else np.ascontiguousarray(a),
                                  b.T if b_t else np.ascontiguousarray(b), bias, z,
                                  False, a_t, b_t)
        return z
    z = _matmul(a, b)
    if bias is not None:
        z += bias
    return z
