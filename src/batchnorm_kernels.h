/* The per-channel sums of BatchNormalization over channels_last rows (src/_batchnorm.pyx
 * runs them on each work item's rows).
 *
 * rows x C values, channel c at column c.  For each channel, in row order:
 *   grad 0:  s1 += d, s2 += d * d,  d = x - shift[c] (in float64)
 *   grad 1:  s1 += v, s2 += v * d,  v = g through the activation act of output y
 *            (0 none, 1 relu: g where y > 0, 2 relu6: g where 0 < y < 6; else +0)
 * Channels go in blocks of FC_BN_CB whose sums stay in registers over all the rows
 * (a row's block is one or two cache lines; the rows are C apart, which the hardware
 * prefetchers follow), instead of loading and storing each channel's sums on every
 * row.  Each channel's sum takes its rows in order, so the result depends on the
 * shapes only.  Built for AVX-512, AVX2 and the baseline (target_clones, picked at load
 * time).
 */
#ifndef FASTCONV_BATCHNORM_KERNELS_H
#define FASTCONV_BATCHNORM_KERNELS_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__linux__) &&  \
    (defined(__x86_64__) || defined(__i386__))
#define FC_BN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FC_BN_CLONES
#endif

#if defined(_OPENMP)
#define FC_BN_SIMD _Pragma("omp simd")
#else
#define FC_BN_SIMD
#endif

#define FC_BN_CB 16 /* channels per register block */

/* v where keep, else +0: a select on the bits (v's bits AND a mask of all ones or
 * zeros), which the compiler vectorises; as a conditional it compiled to a branch per
 * value, mispredicted on the random signs of real activations (9x slower). */
#define FC_BN_KEEP(T, v, keep) fc_bn_keep_##T((v), (keep))
static inline float fc_bn_keep_float(float v, int keep)
{
    union { float f; unsigned int u; } b;
    b.f = v;
    b.u &= 0u - (unsigned int)keep;
    return b.f;
}
static inline double fc_bn_keep_double(double v, int keep)
{
    union { double f; unsigned long long u; } b;
    b.f = v;
    b.u &= 0ull - (unsigned long long)keep;
    return b.f;
}

/* One block of n <= FC_BN_CB channels from c0, the sums added into p1, p2. */
#define FC_BN_BLOCK(T, n)                                                               \
    do {                                                                                \
        double s1[FC_BN_CB], s2[FC_BN_CB], sh[FC_BN_CB];                                \
        ptrdiff_t r, j;                                                                 \
        for (j = 0; j < (n); j++) {                                                     \
            s1[j] = 0;                                                                  \
            s2[j] = 0;                                                                  \
            sh[j] = shift[c0 + j];                                                      \
        }                                                                               \
        for (r = 0; r < rows; r++) {                                                    \
            const T *xr = x + r * C + c0, *gr = g + r * C + c0, *yr = y + r * C + c0;   \
            if (!grad) {                                                                \
                FC_BN_SIMD                                                              \
                for (j = 0; j < (n); j++) {                                             \
                    const double d = (double)xr[j] - sh[j];                             \
                    s1[j] += d;                                                         \
                    s2[j] += d * d;                                                     \
                }                                                                       \
            } else if (act == 0) {                                                      \
                FC_BN_SIMD                                                              \
                for (j = 0; j < (n); j++) {                                             \
                    const double d = (double)xr[j] - sh[j], v = (double)gr[j];          \
                    s1[j] += v;                                                         \
                    s2[j] += v * d;                                                     \
                }                                                                       \
            } else if (act == 1) {                                                      \
                FC_BN_SIMD                                                              \
                for (j = 0; j < (n); j++) {                                             \
                    const T gv = FC_BN_KEEP(T, gr[j], yr[j] > 0);                       \
                    const double d = (double)xr[j] - sh[j], v = (double)gv;             \
                    s1[j] += v;                                                         \
                    s2[j] += v * d;                                                     \
                }                                                                       \
            } else {                                                                    \
                FC_BN_SIMD                                                              \
                for (j = 0; j < (n); j++) {                                             \
                    const T gv = FC_BN_KEEP(T, gr[j], (yr[j] > 0) & (yr[j] < 6));       \
                    const double d = (double)xr[j] - sh[j], v = (double)gv;             \
                    s1[j] += v;                                                         \
                    s2[j] += v * d;                                                     \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (j = 0; j < (n); j++) {                                                     \
            p1[c0 + j] += s1[j];                                                        \
            p2[c0 + j] += s2[j];                                                        \
        }                                                                               \
    } while (0)

#define FC_BN_SUMS_LAST(T, NAME)                                                        \
    FC_BN_CLONES static void NAME(const T *x, const T *g, const T *y,                   \
                                  const double *shift, ptrdiff_t rows, ptrdiff_t C,     \
                                  int grad, int act, double *p1, double *p2)            \
    {                                                                                   \
        ptrdiff_t c0 = 0;                                                               \
        for (; c0 + FC_BN_CB <= C; c0 += FC_BN_CB)                                      \
            FC_BN_BLOCK(T, FC_BN_CB);                                                   \
        if (c0 < C) {                                                                   \
            const ptrdiff_t rest = C - c0;                                              \
            FC_BN_BLOCK(T, rest);                                                       \
        }                                                                               \
    }

/* No fused multiply-adds: every ISA clone, and every case (with or without an
 * activation), rounds each product and sum alike. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
FC_BN_SUMS_LAST(float, fc_bn_sums_last_f)
FC_BN_SUMS_LAST(double, fc_bn_sums_last_d)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#endif
