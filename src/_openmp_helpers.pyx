"""Python view of the OpenMP runtime the kernels were built with."""
from omp_shim cimport fc_get_max_threads, fc_openmp_enabled, fc_set_num_threads



def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fc_openmp_enabled())


def get_max_threads():
    """Threads the next parallel kernel call will use (read at call time)."""
    return fc_get_max_threads()


def set_num_threads(int n):
    """Set the OpenMP thread count of the calling thread (no-op in a serial build)."""
    fc_set_num_threads(n)
