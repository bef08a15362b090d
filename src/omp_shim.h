/* The single place where fastconv touches the OpenMP runtime API.
 *
 * Built with OpenMP (setup.py found a working flag), these forward to omp.h.  Built
 * without it, they degrade to one thread, and Cython's prange loops (whose pragmas the
 * compiler then ignores) run serially, so the same kernels stay correct.
 *
 * Every parallel region takes its thread count from fc_get_max_threads(), so the fork
 * guard lives here.  GNU libgomp's thread pool does not survive fork(): a child whose
 * parent had run a parallel region hangs in its first region of more than one thread.
 * A pthread_atfork child handler marks the child, and from then on fc_get_max_threads()
 * is 1 whatever set the runtime's count (fastconv.set_num_threads, threadpoolctl's
 * threadpool_limits or a direct omp_set_num_threads call, OMP_NUM_THREADS inherited
 * from the parent).  The header is compiled into each extension module, so each has
 * its own flag and registers its own handler when it loads (a constructor); fastconv
 * loads them all together, before any fork.
 */
#ifndef FASTCONV_OMP_SHIM_H
#define FASTCONV_OMP_SHIM_H

#if defined(_OPENMP)
#include <omp.h>

#if (defined(__unix__) || defined(__APPLE__)) && defined(__GNUC__)
#include <pthread.h>
#define FC_FORK_GUARD 1
#endif

#if defined(FC_FORK_GUARD)
static volatile int fc_forked_child = 0;
static void fc_mark_forked_child(void) { fc_forked_child = 1; }
__attribute__((constructor)) static void fc_install_fork_guard(void) {
    pthread_atfork(NULL, NULL, fc_mark_forked_child);
}
static inline int fc_in_forked_child(void) { return fc_forked_child; }
#else
static inline int fc_in_forked_child(void) { return 0; }
#endif

static inline int fc_openmp_enabled(void) { return 1; }
static inline int fc_get_max_threads(void) {
    return fc_in_forked_child() ? 1 : omp_get_max_threads();
}
static inline void fc_set_num_threads(int n) { omp_set_num_threads(n); }
static inline int fc_get_thread_num(void) { return omp_get_thread_num(); }
#else
static inline int fc_openmp_enabled(void) { return 0; }
static inline int fc_in_forked_child(void) { return 0; }
static inline int fc_get_max_threads(void) { return 1; }
static inline void fc_set_num_threads(int n) { (void)n; }
static inline int fc_get_thread_num(void) { return 0; }
#endif

#endif
