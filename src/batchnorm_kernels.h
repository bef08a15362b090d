/* The per-channel sums of BatchNormalization over channels_last rows (src/_batchnorm.pyx
 * runs them on each work item's rows).
 *
 * rows x C values, channel c at column c.  For each channel, in row order:
 *   grad 0:  s1 += d, s2 += d * d,  d = x - shift[c] (in float64)
 *   grad 1:  s1 += v, s2 += v * d,  v = g through the activation act of output y
 *            (0 none, 1 relu: g where y > 0, 2 relu6: g where 0 < y < 6; else +0);
 *            with the activation's affine map (as, at): y's mask taken from
 *            x * as[c] + at[c], the value the forward activated (so y is not read)
 * Channels go in blocks of FC_BN_CB whose sums stay in registers over all the rows
 * (a row's block is one or two cache lines; the rows are C apart, which the hardware
 * prefetchers follow), instead of loading and storing each channel's sums on every
 * row.  Each channel's sum takes its rows in order (whole blocks of 16: the even rows
 * and the odd rows apart, then added), so the result depends on the shapes only.  Built for AVX-512, AVX2 and the baseline (target_clones, picked at load
 * time).
 */
#ifndef FASTCONV_BATCHNORM_KERNELS_H
#define FASTCONV_BATCHNORM_KERNELS_H

#include <stddef.h>
#include <string.h>

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
            T yt[FC_BN_CB];                                                             \
            if (grad && act && as) {                                                    \
                for (j = 0; j < (n); j++)                                               \
                    yt[j] = xr[j] * as[c0 + j] + at[c0 + j];                            \
                yr = yt;                                                                \
            }                                                                           \
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

/* Blocks of 16 channels as GCC vector types (each clone lowers them to its registers:
 * one, two or four per 8 values): the sums of 16 channels are 8 vectors held over the
 * rows, the even rows' and the odd rows' apart (two chains of additions instead of one:
 * a row costs no more than an addition's latency), added at the end.  (As arrays the
 * compiler kept half of the sums on the stack: a store and a load per row.) */
#if defined(__GNUC__)
#define FC_BN_VECTORS 1
typedef double fc_bn_v8d __attribute__((vector_size(64)));
typedef float fc_bn_v8f __attribute__((vector_size(32)));
typedef int fc_bn_v8i __attribute__((vector_size(32)));
typedef long long fc_bn_v8l __attribute__((vector_size(64)));

/* *out = 8 values from p in float64; with act (grad with an activation): where y's 8
 * values pass the activation's gradient (act 1: y > 0; act 2: 0 < y < 6), else +0
 * (bits masked).  (Through a pointer: a vector returned by value changes the ABI
 * between the clones, which GCC warns of.) */
#define FC_BN_V8(T, VT, MT)                                                             \
    static inline void fc_bn_v8_##T(fc_bn_v8d *out, const T *p, const T *y, int act)    \
    {                                                                                   \
        VT v, yv;                                                                       \
        memcpy(&v, p, sizeof v);                                                        \
        if (act) {                                                                      \
            MT keep;                                                                    \
            memcpy(&yv, y, sizeof yv);                                                  \
            keep = yv > 0;                                                              \
            if (act == 2)                                                               \
                keep &= yv < 6;                                                         \
            v = (VT)((MT)v & keep);                                                     \
        }                                                                               \
        *out = __builtin_convertvector(v, fc_bn_v8d);                                   \
    }
FC_BN_V8(float, fc_bn_v8f, fc_bn_v8i)
FC_BN_V8(double, fc_bn_v8d, fc_bn_v8l)

/* Row r's 16 values added into the sums (s1 lo/hi, s2 lo/hi) of one parity. */
#define FC_BN_ROW16(T, r, A, B, C2, D)                                                  \
    do {                                                                                \
        const T *xr = x + (r) * C + c0, *gr = g + (r) * C + c0, *yr = y + (r) * C + c0; \
        fc_bn_v8d d0, d1, v0, v1;                                                       \
        T yt[16];                                                                       \
        if (grad && act && as) {                                                        \
            ptrdiff_t jj;                                                               \
            for (jj = 0; jj < 16; jj++)                                                 \
                yt[jj] = xr[jj] * as[c0 + jj] + at[c0 + jj];                            \
            yr = yt;                                                                    \
        }                                                                               \
        fc_bn_v8_##T(&d0, xr, xr, 0);                                                   \
        fc_bn_v8_##T(&d1, xr + 8, xr, 0);                                               \
        d0 -= sh0;                                                                      \
        d1 -= sh1;                                                                      \
        if (!grad) {                                                                    \
            A += d0;                                                                    \
            B += d1;                                                                    \
            C2 += d0 * d0;                                                              \
            D += d1 * d1;                                                               \
        } else {                                                                        \
            fc_bn_v8_##T(&v0, gr, yr, act);                                             \
            fc_bn_v8_##T(&v1, gr + 8, yr + 8, act);                                     \
            A += v0;                                                                    \
            B += v1;                                                                    \
            C2 += v0 * d0;                                                              \
            D += v1 * d1;                                                               \
        }                                                                               \
    } while (0)

#define FC_BN_BLOCK16(T)                                                                \
    do {                                                                                \
        fc_bn_v8d sh0, sh1, e1a = {0}, e1b = {0}, e2a = {0}, e2b = {0};                 \
        fc_bn_v8d o1a = {0}, o1b = {0}, o2a = {0}, o2b = {0};                           \
        double lanes[4][8];                                                             \
        ptrdiff_t r, j;                                                                 \
        memcpy(&sh0, shift + c0, sizeof sh0);                                           \
        memcpy(&sh1, shift + c0 + 8, sizeof sh1);                                       \
        for (r = 0; r + 2 <= rows; r += 2) {                                            \
            FC_BN_ROW16(T, r, e1a, e1b, e2a, e2b);                                      \
            FC_BN_ROW16(T, r + 1, o1a, o1b, o2a, o2b);                                  \
        }                                                                               \
        if (r < rows)                                                                   \
            FC_BN_ROW16(T, r, e1a, e1b, e2a, e2b);                                      \
        e1a += o1a;                                                                     \
        e1b += o1b;                                                                     \
        e2a += o2a;                                                                     \
        e2b += o2b;                                                                     \
        memcpy(lanes[0], &e1a, sizeof e1a);                                             \
        memcpy(lanes[1], &e1b, sizeof e1b);                                             \
        memcpy(lanes[2], &e2a, sizeof e2a);                                             \
        memcpy(lanes[3], &e2b, sizeof e2b);                                             \
        for (j = 0; j < 8; j++) {                                                       \
            p1[c0 + j] += lanes[0][j];                                                  \
            p1[c0 + 8 + j] += lanes[1][j];                                              \
            p2[c0 + j] += lanes[2][j];                                                  \
            p2[c0 + 8 + j] += lanes[3][j];                                              \
        }                                                                               \
    } while (0)
#endif

#if defined(FC_BN_VECTORS)
#define FC_BN_FULL_BLOCK(T) FC_BN_BLOCK16(T)
#else
#define FC_BN_FULL_BLOCK(T) FC_BN_BLOCK(T, FC_BN_CB)
#endif

#define FC_BN_SUMS_LAST(T, NAME)                                                        \
    FC_BN_CLONES static void NAME(const T *x, const T *g, const T *y,                   \
                                  const T *as, const T *at,                             \
                                  const double *shift, ptrdiff_t rows, ptrdiff_t C,     \
                                  int grad, int act, double *p1, double *p2)            \
    {                                                                                   \
        ptrdiff_t c0 = 0;                                                               \
        for (; c0 + FC_BN_CB <= C; c0 += FC_BN_CB)                                      \
            FC_BN_FULL_BLOCK(T);                                                        \
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
