# Declarations of the OpenMP shim (omp_shim.h); every kernel cimports from here.
cdef extern from "omp_shim.h" nogil:
    int fc_openmp_enabled()
    int fc_in_forked_child()
    int fc_get_max_threads()
    void fc_set_num_threads(int n)
    int fc_get_thread_num()
