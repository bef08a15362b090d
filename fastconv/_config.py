"""Runtime configuration: version, OpenMP, threads, BLAS."""
import numpy as np

from . import _ext

__all__ = ["show_config", "config", "get_num_threads", "set_num_threads"]


def get_num_threads():
    """Threads the next kernel call will use (OMP_NUM_THREADS and threadpoolctl apply)."""
    return _ext.openmp.get_max_threads()


def set_num_threads(n):
    """Set the number of OpenMP threads for the kernels called from this thread."""
    from ._validation import check_int
    _ext.openmp.set_num_threads(check_int(n, "n"))


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
    from . import __version__
    return {
        "fastconv": __version__,
        "numpy": np.__version__,
        "openmp": _ext.openmp.openmp_enabled(),
        "threads": get_num_threads(),
        "blas": _blas_info(),
    }


def show_config(file=None):
    """Print the version, whether OpenMP is on, the thread count and the BLAS in use."""
    c = config()
    lines = [f"fastconv {c['fastconv']} (numpy {c['numpy']})",
             f"OpenMP: {'on' if c['openmp'] else 'off (serial build)'}, "
             f"threads: {c['threads']}"]
    if not c["blas"]:
        lines.append("BLAS: none found")
    for b in c["blas"]:
        lines.append(f"BLAS: {b.get('internal_api')} {b.get('version')}, kernel "
                     f"{b.get('architecture')}, threads {b.get('num_threads')}")
    print("\n".join(lines), file=file)
