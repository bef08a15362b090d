"""Runtime configuration: version, OpenMP, threads, BLAS, and fork safety."""
import contextlib
import os
import warnings

import numpy as np

from . import _ext
from ._validation import check_int

__all__ = ["show_config", "config", "get_num_threads", "set_num_threads", "num_threads"]

# GNU libgomp's thread pool does not survive fork: a child whose parent had run a
# parallel region hangs forever in its first one.  The guard is in the kernels' OpenMP
# shim (src/omp_shim.h): in a child created by fork, every parallel region runs on one
# thread whatever set the runtime's count (this module, threadpoolctl, a direct
# omp_set_num_threads call).  The hook below only makes the runtime's own count agree,
# for threadpoolctl's reports.


def _after_fork_in_child():
    _ext.openmp.set_num_threads(1)


if hasattr(os, "register_at_fork") and _ext.openmp.openmp_enabled():
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads():
    """Threads the next kernel call from this thread will use.

    Read at call time: OMP_NUM_THREADS, :func:`set_num_threads`, :func:`num_threads` and
    threadpoolctl's ``threadpool_limits`` all apply.
    """
    return _ext.openmp.get_max_threads()


def set_num_threads(n):
    """Set the number of OpenMP threads the kernels use when called from this thread.

    In a child process created by fork, the kernels stay on one thread (the OpenMP
    runtime cannot restart its thread pool there) and a larger ``n`` only warns.
    """
    n = check_int(n, "n")
    if n > 1 and _ext.openmp.in_forked_child():
        warnings.warn("fastconv runs on one thread in a forked child process (the OpenMP "
                      "runtime cannot be used across fork); use the 'spawn' or "
                      "'forkserver' start method for parallel kernels in workers",
                      RuntimeWarning, stacklevel=2)
        n = 1
    _ext.openmp.set_num_threads(n)


@contextlib.contextmanager
def num_threads(n):
    """Context manager: run the kernels on ``n`` threads inside the ``with`` block."""
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        _ext.openmp.set_num_threads(previous)


def _blas_info():
    """BLAS libraries loaded in this process, via threadpoolctl when installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        cfg = getattr(np, "__config__", None)
        try:
            blas = cfg.CONFIG["Build Dependencies"]["blas"]
            return [{"internal_api": blas.get("name"), "version": blas.get("version"),
                     "num_threads": None, "architecture": None,
                     "note": "install threadpoolctl for the kernel in use"}]
        except Exception:
            return []
    return [i for i in threadpool_info() if i.get("user_api") == "blas"]


def config():
    """A dict describing this installation (what show_config prints)."""
    from . import __version__, _OMP_SPIN
    return {
        "fastconv": __version__,
        "numpy": np.__version__,
        "openmp": _ext.openmp.openmp_enabled(),
        "threads": get_num_threads(),
        "conv_isa": _ext.conv2d.isa(),
        "blas": _blas_info(),
        "omp_spin": _OMP_SPIN,
    }


def show_config(file=None):
    """Print the version, whether OpenMP is on, the thread count and the BLAS in use."""
    c = config()
    lines = [f"fastconv {c['fastconv']} (numpy {c['numpy']})",
             f"OpenMP: {'on' if c['openmp'] else 'off (serial build)'}, "
             f"threads: {c['threads']}, idle threads: {c['omp_spin']}",
             f"conv kernels: {c['conv_isa']} (best for this CPU: "
             f"{_ext.conv2d.best_isa()}; FASTCONV_DISABLE_SIMD=1 forces portable)"]
    if not c["blas"]:
        lines.append("BLAS: none found")
    for b in c["blas"]:
        lines.append(f"BLAS: {b.get('internal_api')} {b.get('version')}, kernel "
                     f"{b.get('architecture')}, threads {b.get('num_threads')}")
    print("\n".join(lines), file=file)
