/* The gradient through tanh and then a 2x2/2 average pool without padding, one
 * channels_last image: shared by src/_pool2d.pyx (avg_pool_backward_tanh_nhwc) and the
 * wide weight gradient (src/conv/drivers/wide.h, which makes it per work item in cache), so
 * that both give the same bits with any compiler.
 *
 * gy = (1 - a * a) * (gp / 4) in each window, (1 - a * a) * 0 in an odd last row or
 * column: a is tanh's output (oh x ow pixels of cout channels), gp the pool's output
 * gradient ((oh / 2) x (ow / 2) x cout).  Every product and difference rounds on its
 * own, as avg_pool2d_backward and then tanh_backward (NumPy) round them: no fused
 * multiply-add, which GCC would otherwise form from 1 - a * a in the clones for CPUs
 * that have one (Clang contracts only within one expression, which this does not
 * write).  Built for AVX-512, AVX2 and the baseline where GCC can pick at load time.
 */
#ifndef FASTCONV_POOL_GRAD_H
#define FASTCONV_POOL_GRAD_H

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__)
#define FC_PG_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#if __GNUC__ >= 6 && defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#define FC_PG_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef FC_PG_NO_CONTRACT
#define FC_PG_NO_CONTRACT
#endif
#ifndef FC_PG_CLONES
#define FC_PG_CLONES
#endif

#define FC_PG_DEFINE(NAME, T)                                                            \
    FC_PG_NO_CONTRACT FC_PG_CLONES static void NAME(const T *gp, const T *a, T *gy,     \
                                                    ptrdiff_t oh, ptrdiff_t ow,         \
                                                    ptrdiff_t cout)                     \
    {                                                                                   \
        const ptrdiff_t pw = ow / 2, row = ow * cout;                                   \
        const T one = 1, zero = 0;                                                      \
        ptrdiff_t iy, px, c, t;                                                         \
        for (iy = 0; iy < oh; iy += 2) {                                                \
            /* rows iy, iy + 1 (iy alone: an odd last row, in no window) */             \
            const int pair = iy + 1 < oh;                                               \
            T *d0 = gy + iy * row, *d1 = pair ? d0 + row : d0;                          \
            const T *a0 = a + iy * row, *a1 = pair ? a0 + row : a0;                     \
            if (pair) { /* gp / 4 spread over the windows, into row iy + 1 */           \
                const T *gr = gp + (iy / 2) * pw * cout;                                \
                for (px = 0; px < pw; px++)                                             \
                    for (c = 0; c < cout; c++) {                                        \
                        const T g = gr[px * cout + c] / (T)4;                           \
                        d1[2 * px * cout + c] = g;                                      \
                        d1[(2 * px + 1) * cout + c] = g;                                \
                    }                                                                   \
                for (t = 2 * pw * cout; t < row; t++)                                   \
                    d1[t] = zero;                                                       \
            } else {                                                                    \
                for (t = 0; t < row; t++)                                               \
                    d1[t] = zero;                                                       \
            }                                                                           \
            for (t = 0; t < row; t++) {                                                 \
                T v = a0[t] * a0[t];                                                    \
                v = one - v;                                                            \
                d0[t] = v * d1[t];                                                      \
            }                                                                           \
            if (pair)                                                                   \
                for (t = 0; t < row; t++) {                                             \
                    T v = a1[t] * a1[t];                                                \
                    v = one - v;                                                        \
                    d1[t] = v * d1[t];                                                  \
                }                                                                       \
        }                                                                               \
    }

FC_PG_DEFINE(fc_avg_tanh_grad_image_f, float)
FC_PG_DEFINE(fc_avg_tanh_grad_image_d, double)

#endif
