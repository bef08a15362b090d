"""Python view of the OpenMP runtime the kernels were built with."""
from omp_shim cimport (fc_get_max_threads, fc_in_forked_child, fc_openmp_enabled,
                       fc_set_num_threads)



def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fc_openmp_enabled())


def in_forked_child():
    """True in a child created by fork: the kernels run on one thread there."""
    return bool(fc_in_forked_child())


def get_max_threads():
    """Threads the next parallel kernel call will use (read at call time)."""
    return fc_get_max_threads()


def set_num_threads(int n):
    """Set the OpenMP thread count of the calling thread (no-op in a serial build).

    In a forked child the runtime's count changes but the kernels stay on one thread.
    """
    fc_set_num_threads(n)
