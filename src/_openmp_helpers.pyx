"""Python view of the OpenMP runtime the kernels were built with."""
from cython.parallel cimport prange

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


def run_jobs(list jobs, object run, int threads):
    """run(job) for each job of jobs, on the kernels' OpenMP threads (at most
    threads), each taking the GIL to start its job: for jobs that release it (NumPy's
    BLAS products), the cores run them side by side on the threads the kernels use, so
    no second pool of threads spins against the kernels' (fastconv/_blas.py).  The
    first exception raised by a job is raised here after all jobs have ended."""
    cdef Py_ssize_t i, n = len(jobs)
    cdef list errors = []
    cdef int nt = threads if threads < n else <int>n
    if nt < 1:
        nt = 1
    for i in prange(n, nogil=True, schedule="dynamic", num_threads=nt):
        with gil:
            try:
                run(jobs[i])
            except BaseException as e:  # (raised below, in the calling thread)
                errors.append(e)
    if errors:
        raise errors[0]
