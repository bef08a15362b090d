/* The single place where fastconv touches the OpenMP runtime API.
 *
 * Built with OpenMP (setup.py found a working flag), these forward to omp.h.  Built
 * without it, they degrade to one thread, and Cython's prange loops (whose pragmas the
 * compiler then ignores) run serially, so the same kernels stay correct.
 */
#ifndef FASTCONV_OMP_SHIM_H
#define FASTCONV_OMP_SHIM_H

#if defined(_OPENMP)
#include <omp.h>
static inline int fc_openmp_enabled(void) { return 1; }
static inline int fc_get_max_threads(void) { return omp_get_max_threads(); }
static inline void fc_set_num_threads(int n) { omp_set_num_threads(n); }
static inline int fc_get_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int fc_openmp_enabled(void) { return 0; }
static inline int fc_get_max_threads(void) { return 1; }
static inline void fc_set_num_threads(int n) { (void)n; }
static inline int fc_get_thread_num(void) { return 0; }
#endif

#endif
