/* AVX2 + FMA: the kernel templates and inline helpers of this ISA's micro-kernels. */
#ifndef FASTCONV_UK_AVX2
#define FASTCONV_UK_AVX2

#include "../templates.h"

#define FC_ROW2_256(PS, i)                                                               \
    {                                                                                    \
        a = _mm256_set1_##PS(A[i]);                                                      \
        c##i##0 = _mm256_fmadd_##PS(a, b0, c##i##0);                                     \
        c##i##1 = _mm256_fmadd_##PS(a, b1, c##i##1);                                     \
    }
#define FC_STORE2_256(PS, T, i, VL)                                                      \
    {                                                                                    \
        T *row = C + (i) * ldc;                                                          \
        if (accumulate) {                                                                \
            c##i##0 = _mm256_add_##PS(c##i##0, _mm256_loadu_##PS(row));                  \
            c##i##1 = _mm256_add_##PS(c##i##1, _mm256_loadu_##PS(row + VL));             \
        }                                                                                \
        _mm256_storeu_##PS(row, c##i##0);                                                \
        _mm256_storeu_##PS(row + VL, c##i##1);                                           \
    }

#define FC_AVX2_KERNEL(NAME, T, PS, VEC, VL)                                            \
    FC_TARGET_AVX2 static void NAME(ptrdiff_t kc, const T *A, const T *B, T *C,        \
                                    ptrdiff_t ldc, int accumulate)                      \
    {                                                                                    \
        VEC c00 = _mm256_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00;                                                                   \
        VEC a, b0, b1;                                                                   \
        ptrdiff_t k;                                                                     \
        for (k = 0; k < kc; k++) {                                                       \
            b0 = _mm256_loadu_##PS(B);                                                   \
            b1 = _mm256_loadu_##PS(B + VL);                                              \
            FC_ROW2_256(PS, 0) FC_ROW2_256(PS, 1) FC_ROW2_256(PS, 2)                     \
            FC_ROW2_256(PS, 3) FC_ROW2_256(PS, 4) FC_ROW2_256(PS, 5)                     \
            A += 6;                                                                      \
            B += 2 * VL;                                                                 \
        }                                                                                \
        FC_STORE2_256(PS, T, 0, VL) FC_STORE2_256(PS, T, 1, VL)                          \
        FC_STORE2_256(PS, T, 2, VL) FC_STORE2_256(PS, T, 3, VL)                          \
        FC_STORE2_256(PS, T, 4, VL) FC_STORE2_256(PS, T, 5, VL)                          \
    }


#define FC_ROWA_256(PS, i)                                                               \
    {                                                                                    \
        a = _mm256_set1_##PS(a##i[p]);                                                   \
        c##i##0 = _mm256_fmadd_##PS(a, b0, c##i##0);                                     \
        c##i##1 = _mm256_fmadd_##PS(a, b1, c##i##1);                                     \
    }

#define FC_AVX2_KIB(NAME, T, PS, VEC, VL)                                               \
    FC_TARGET_AVX2 static void NAME(ptrdiff_t kc, const T *A, const T *xb,             \
                                    const ptrdiff_t *off, T *C, ptrdiff_t ldc)          \
    {                                                                                    \
        VEC c00 = _mm256_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00;                                                                   \
        VEC a, b0, b1;                                                                   \
        const int accumulate = 0;                                                        \
        ptrdiff_t k;                                                                     \
        for (k = 0; k < kc; k++) {                                                       \
            const T *B = xb + off[k];                                                    \
            b0 = _mm256_loadu_##PS(B);                                                   \
            b1 = _mm256_loadu_##PS(B + VL);                                              \
            FC_ROW2_256(PS, 0) FC_ROW2_256(PS, 1) FC_ROW2_256(PS, 2)                     \
            FC_ROW2_256(PS, 3) FC_ROW2_256(PS, 4) FC_ROW2_256(PS, 5)                     \
            A += 6;                                                                      \
        }                                                                                \
        FC_STORE2_256(PS, T, 0, VL) FC_STORE2_256(PS, T, 1, VL)                          \
        FC_STORE2_256(PS, T, 2, VL) FC_STORE2_256(PS, T, 3, VL)                          \
        FC_STORE2_256(PS, T, 4, VL) FC_STORE2_256(PS, T, 5, VL)                          \
    }

#define FC_AVX2_KIA(NAME, T, PS, VEC, VL)                                               \
    FC_TARGET_AVX2 static void NAME(ptrdiff_t kc, const T *xa, const ptrdiff_t *off,   \
                                    const T *B, T *C, ptrdiff_t ldc, int accumulate)    \
    {                                                                                    \
        VEC c00 = _mm256_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00;                                                                   \
        VEC a, b0, b1;                                                                   \
        const T *a0 = xa + off[0], *a1 = xa + off[1], *a2 = xa + off[2];                 \
        const T *a3 = xa + off[3], *a4 = xa + off[4], *a5 = xa + off[5];                 \
        ptrdiff_t p;                                                                     \
        for (p = 0; p < kc; p++) {                                                       \
            b0 = _mm256_loadu_##PS(B);                                                   \
            b1 = _mm256_loadu_##PS(B + VL);                                              \
            FC_ROWA_256(PS, 0) FC_ROWA_256(PS, 1) FC_ROWA_256(PS, 2)                     \
            FC_ROWA_256(PS, 3) FC_ROWA_256(PS, 4) FC_ROWA_256(PS, 5)                     \
            B += 2 * VL;                                                                 \
        }                                                                                \
        FC_STORE2_256(PS, T, 0, VL) FC_STORE2_256(PS, T, 1, VL)                          \
        FC_STORE2_256(PS, T, 2, VL) FC_STORE2_256(PS, T, 3, VL)                          \
        FC_STORE2_256(PS, T, 4, VL) FC_STORE2_256(PS, T, 5, VL)                          \
    }


FC_TARGET_AVX2 static inline float fc_hsum256_f(__m256 v)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
FC_TARGET_AVX2 static inline double fc_hsum256_d(__m256d v)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    h = _mm_add_sd(h, _mm_unpackhi_pd(h, h));
    return _mm_cvtsd_f64(h);
}
FC_HSUM4_LANES(fc_hsum4_lanes256, FC_TARGET_AVX2, __m256, _mm256_add_ps,
               _mm256_unpacklo_ps, _mm256_unpackhi_ps, _mm256_unpacklo_pd,
               _mm256_unpackhi_pd, _mm256_castps_pd, _mm256_castpd_ps)
FC_TARGET_AVX2 static inline FC_ALWAYS_INLINE void fc_hsum4_avx2_f(float *dst,
                                                                   const __m256 *v)
{
    const __m256 u = fc_hsum4_lanes256(v);
    _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
}
FC_HSUM4_EACH(fc_hsum4_avx2_d, FC_TARGET_AVX2, double, __m256d, fc_hsum256_d)

FC_WTS_F(fc_wts_avx2_f, FC_TARGET_AVX2, __m256, _mm256_unpacklo_ps, _mm256_unpackhi_ps,
         _mm256_unpacklo_pd, _mm256_unpackhi_pd, _mm256_castps_pd, _mm256_castpd_ps,
         _mm256_storeu_ps, FC_EXT256, 2, 8)
FC_WTS_BUFFER(fc_wts_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_storeu_pd, 4)
FC_TARGET_AVX2 static inline __m256 fc_xload256_f(const float *p, int n)
{
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_and_ps(_mm256_loadu_ps(p), _mm256_castsi256_ps(m));
}
FC_TARGET_AVX2 static inline __m256d fc_xload256_d(const double *p, int n)
{
    const __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                                         _mm256_setr_epi64x(0, 1, 2, 3));
    return _mm256_and_pd(_mm256_loadu_pd(p), _mm256_castsi256_pd(m));
}
#define FC_QFMA256_F(a, b, c, n) _mm256_fmadd_ps(a, b, c)
#define FC_QFMA256_D(a, b, c, n) _mm256_fmadd_pd(a, b, c)

#endif
