"""NumPy's BLAS on one thread for small products (the Dense layer, dense convolutions)."""
import threading

# Matrix products below this many multiply-adds (all of LeNet-5's and the CIFAR-10
# network's) run on one BLAS thread.  The convolution and pooling kernels run on OpenMP
# threads; the BLAS keeps a second thread pool, and the two fight for the cores: waking
# BLAS threads costs more than it saves on small products, on a busy machine a 2-thread
# product waits a scheduler time slice for its second thread, and spinning BLAS threads
# slow the next OpenMP kernel.  Measured on 2 shared cores: LeNet-5's 128x120 @ 120x84
# product 16 ms on 2 BLAS threads against 0.07 ms on 1; the whole CIFAR-10 training step
# (Dense 2304 -> 512) 944 ms against 766 ms at batch 128, 424 against 219 ms at batch 32.
# Only products of several GFLOP, where BLAS threading clearly pays, keep the BLAS's
# own thread count.  One thread also keeps a product the same for any thread count:
# OpenBLAS (SkylakeX kernels) rounds some shapes differently on 2 threads (measured:
# float64 128x400 @ 400x120, float32 1000x3000 @ 3000x500).
_SERIAL_BLAS_MACS = 1 << 28
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
# into the BLAS (measured: 7-11 us a product, 3 products in a LeNet-5 inference).  The
# thread count is the process's, as the regions are: a lock keeps the count right when
# several Python threads run passes.
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


def _blas_threads(m, k, n):
    """The context for an (m, k) @ (k, n) product (see _SERIAL_BLAS_MACS)."""
    if m * k * n < _SERIAL_BLAS_MACS:
        return _SerialBlas()
    return _AllBlasThreads() if _depth else _NO_OP
