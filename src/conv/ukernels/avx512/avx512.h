/* AVX-512F: the kernel templates and inline helpers (horizontal sums, transposed
 * stores, activation, pool) of this ISA's micro-kernels. */
#ifndef FASTCONV_UK_AVX512
#define FASTCONV_UK_AVX512

#include "../templates.h"

/* One row i of the tile: two vectors of B times the broadcast A[i]. */
#define FC_ROW2(PS, i)                                                                   \
    {                                                                                    \
        a = _mm512_set1_##PS(A[i]);                                                      \
        c##i##0 = _mm512_fmadd_##PS(a, b0, c##i##0);                                     \
        c##i##1 = _mm512_fmadd_##PS(a, b1, c##i##1);                                     \
    }
#define FC_STORE2_512(PS, T, i, VL)                                                      \
    {                                                                                    \
        T *row = C + (i) * ldc;                                                          \
        if (accumulate) {                                                                \
            c##i##0 = _mm512_add_##PS(c##i##0, _mm512_loadu_##PS(row));                  \
            c##i##1 = _mm512_add_##PS(c##i##1, _mm512_loadu_##PS(row + VL));             \
        }                                                                                \
        _mm512_storeu_##PS(row, c##i##0);                                                \
        _mm512_storeu_##PS(row + VL, c##i##1);                                           \
    }

#define FC_AVX512_KERNEL(NAME, T, PS, VEC, VL)                                          \
    FC_TARGET_AVX512 static void NAME(ptrdiff_t kc, const T *A, const T *B, T *C,      \
                                      ptrdiff_t ldc, int accumulate)                    \
    {                                                                                    \
        VEC c00 = _mm512_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;                       \
        VEC a, b0, b1;                                                                   \
        ptrdiff_t k;                                                                     \
        for (k = 0; k < kc; k++) {                                                       \
            b0 = _mm512_loadu_##PS(B);                                                   \
            b1 = _mm512_loadu_##PS(B + VL);                                              \
            FC_ROW2(PS, 0) FC_ROW2(PS, 1) FC_ROW2(PS, 2) FC_ROW2(PS, 3)                  \
            FC_ROW2(PS, 4) FC_ROW2(PS, 5) FC_ROW2(PS, 6) FC_ROW2(PS, 7)                  \
            A += 8;                                                                      \
            B += 2 * VL;                                                                 \
        }                                                                                \
        FC_STORE2_512(PS, T, 0, VL) FC_STORE2_512(PS, T, 1, VL)                          \
        FC_STORE2_512(PS, T, 2, VL) FC_STORE2_512(PS, T, 3, VL)                          \
        FC_STORE2_512(PS, T, 4, VL) FC_STORE2_512(PS, T, 5, VL)                          \
        FC_STORE2_512(PS, T, 6, VL) FC_STORE2_512(PS, T, 7, VL)                          \
    }


#define FC_ROWA(PS, i)                                                                   \
    {                                                                                    \
        a = _mm512_set1_##PS(a##i[p]);                                                   \
        c##i##0 = _mm512_fmadd_##PS(a, b0, c##i##0);                                     \
        c##i##1 = _mm512_fmadd_##PS(a, b1, c##i##1);                                     \
    }

#define FC_AVX512_KIB(NAME, T, PS, VEC, VL)                                             \
    FC_TARGET_AVX512 static void NAME(ptrdiff_t kc, const T *A, const T *xb,           \
                                      const ptrdiff_t *off, T *C, ptrdiff_t ldc)        \
    {                                                                                    \
        VEC c00 = _mm512_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;                       \
        VEC a, b0, b1;                                                                   \
        const int accumulate = 0;                                                        \
        ptrdiff_t k;                                                                     \
        for (k = 0; k < kc; k++) {                                                       \
            const T *B = xb + off[k];                                                    \
            if (k + FC_PF_DIST < kc) {                                                   \
                const char *pf = (const char *)(xb + off[k + FC_PF_DIST]);               \
                _mm_prefetch(pf, _MM_HINT_T0);                                           \
                _mm_prefetch(pf + 64, _MM_HINT_T0);                                      \
                _mm_prefetch(pf + 127, _MM_HINT_T0);                                     \
            }                                                                            \
            b0 = _mm512_loadu_##PS(B);                                                   \
            b1 = _mm512_loadu_##PS(B + VL);                                              \
            FC_ROW2(PS, 0) FC_ROW2(PS, 1) FC_ROW2(PS, 2) FC_ROW2(PS, 3)                  \
            FC_ROW2(PS, 4) FC_ROW2(PS, 5) FC_ROW2(PS, 6) FC_ROW2(PS, 7)                  \
            A += 8;                                                                      \
        }                                                                                \
        FC_STORE2_512(PS, T, 0, VL) FC_STORE2_512(PS, T, 1, VL)                          \
        FC_STORE2_512(PS, T, 2, VL) FC_STORE2_512(PS, T, 3, VL)                          \
        FC_STORE2_512(PS, T, 4, VL) FC_STORE2_512(PS, T, 5, VL)                          \
        FC_STORE2_512(PS, T, 6, VL) FC_STORE2_512(PS, T, 7, VL)                          \
    }

#define FC_AVX512_KIA(NAME, T, PS, VEC, VL)                                             \
    FC_TARGET_AVX512 static void NAME(ptrdiff_t kc, const T *xa, const ptrdiff_t *off, \
                                      const T *B, T *C, ptrdiff_t ldc, int accumulate)  \
    {                                                                                    \
        VEC c00 = _mm512_setzero_##PS(), c01 = c00, c10 = c00, c11 = c00, c20 = c00,    \
            c21 = c00, c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00,            \
            c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;                       \
        VEC a, b0, b1;                                                                   \
        const T *a0 = xa + off[0], *a1 = xa + off[1], *a2 = xa + off[2];                 \
        const T *a3 = xa + off[3], *a4 = xa + off[4], *a5 = xa + off[5];                 \
        const T *a6 = xa + off[6], *a7 = xa + off[7];                                    \
        ptrdiff_t p;                                                                     \
        for (p = 0; p < kc; p++) {                                                       \
            b0 = _mm512_loadu_##PS(B);                                                   \
            b1 = _mm512_loadu_##PS(B + VL);                                              \
            FC_ROWA(PS, 0) FC_ROWA(PS, 1) FC_ROWA(PS, 2) FC_ROWA(PS, 3)                  \
            FC_ROWA(PS, 4) FC_ROWA(PS, 5) FC_ROWA(PS, 6) FC_ROWA(PS, 7)                  \
            B += 2 * VL;                                                                 \
        }                                                                                \
        FC_STORE2_512(PS, T, 0, VL) FC_STORE2_512(PS, T, 1, VL)                          \
        FC_STORE2_512(PS, T, 2, VL) FC_STORE2_512(PS, T, 3, VL)                          \
        FC_STORE2_512(PS, T, 4, VL) FC_STORE2_512(PS, T, 5, VL)                          \
        FC_STORE2_512(PS, T, 6, VL) FC_STORE2_512(PS, T, 7, VL)                          \
    }


/* FC_HSUM4_LANES(NAME, ...): u = NAME(v) holds, in each 128-bit lane, the sums of
 * that lane of v[0], v[1], v[2], v[3] side by side (pairs added, then quads); the
 * hsum4 functions then add the lanes.  One instance per vector width. */
#define FC_HSUM4_LANES(NAME, ATTR, VEC, ADD, UNPACKLO, UNPACKHI, UNPACKLO_PD, UNPACKHI_PD, \
                       CASTPD, CASTPS)                                                   \
    ATTR static inline FC_ALWAYS_INLINE VEC NAME(const VEC *v)                           \
    {                                                                                    \
        const VEC t01 = ADD(UNPACKLO(v[0], v[1]), UNPACKHI(v[0], v[1]));                 \
        const VEC t23 = ADD(UNPACKLO(v[2], v[3]), UNPACKHI(v[2], v[3]));                 \
        return ADD(CASTPS(UNPACKLO_PD(CASTPD(t01), CASTPD(t23))),                        \
                   CASTPS(UNPACKHI_PD(CASTPD(t01), CASTPD(t23))));                       \
    }
FC_HSUM4_LANES(fc_hsum4_lanes512, FC_TARGET_AVX512, __m512, _mm512_add_ps,
               _mm512_unpacklo_ps, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
               _mm512_unpackhi_pd, _mm512_castps_pd, _mm512_castpd_ps)
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE void fc_hsum4_avx512_f(float *dst,
                                                                       const __m512 *v)
{
    const __m512 u = fc_hsum4_lanes512(v);
    const __m256 h = _mm256_add_ps(
        _mm512_castps512_ps256(u),
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(u), 1)));
    _mm_storeu_ps(dst, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
FC_HSUM4_EACH(fc_hsum4_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_reduce_add_pd)

/* The wide forward's float store, 4 channels at a time: a 4 x 4 transpose within each
 * 128-bit lane (u_i's lane L holds pixel 4 L + i's 4 channels), one 128-bit store per
 * pixel; 2 channels: pixel pairs, 64 bits a pixel.  EXT(v, L): 128-bit lane L of v.
 * (The output pass's gather from a planar tile it replaces was half of a small
 * layer's forward: docs/design/algorithms.md.) */
#define FC_WTS4_LANE(d, ldc, nl, L, EXT, u0, u1, u2, u3)                                \
    if (4 * (L) < (nl)) {                                                               \
        _mm_storeu_ps((d) + (4 * (L)) * (ldc), EXT(u0, L));                             \
        if (4 * (L) + 1 < (nl))                                                         \
            _mm_storeu_ps((d) + (4 * (L) + 1) * (ldc), EXT(u1, L));                     \
        if (4 * (L) + 2 < (nl))                                                         \
            _mm_storeu_ps((d) + (4 * (L) + 2) * (ldc), EXT(u2, L));                     \
        if (4 * (L) + 3 < (nl))                                                         \
            _mm_storeu_ps((d) + (4 * (L) + 3) * (ldc), EXT(u3, L));                     \
    }
#define FC_WTS2_LANE(d, ldc, nl, L, EXT, t0, t1)                                        \
    if (4 * (L) < (nl)) {                                                               \
        const __m128 q0 = EXT(t0, L);                                                   \
        _mm_storel_pi((__m64 *)((d) + (4 * (L)) * (ldc)), q0);                          \
        if (4 * (L) + 1 < (nl))                                                         \
            _mm_storeh_pi((__m64 *)((d) + (4 * (L) + 1) * (ldc)), q0);                  \
        if (4 * (L) + 2 < (nl)) {                                                       \
            const __m128 q1 = EXT(t1, L);                                               \
            _mm_storel_pi((__m64 *)((d) + (4 * (L) + 2) * (ldc)), q1);                  \
            if (4 * (L) + 3 < (nl))                                                     \
                _mm_storeh_pi((__m64 *)((d) + (4 * (L) + 3) * (ldc)), q1);              \
        }                                                                               \
    }
#define FC_WTS_F(NAME, ATTR, VEC, UNPACKLO, UNPACKHI, UNPACKLO_PD, UNPACKHI_PD, CASTPD,  \
                 CASTPS, STORE, EXT, LANES, VL)                                         \
    ATTR static inline FC_ALWAYS_INLINE void NAME(float *y, ptrdiff_t ldc, const VEC *v, \
                                                  int co, int nl)                       \
    {                                                                                   \
        int o = 0, l;                                                                   \
        for (; o + 4 <= co; o += 4) {                                                   \
            const VEC t0 = UNPACKLO(v[o], v[o + 1]), t1 = UNPACKHI(v[o], v[o + 1]);     \
            const VEC t2 = UNPACKLO(v[o + 2], v[o + 3]);                                \
            const VEC t3 = UNPACKHI(v[o + 2], v[o + 3]);                                \
            const VEC u0 = CASTPS(UNPACKLO_PD(CASTPD(t0), CASTPD(t2)));                 \
            const VEC u1 = CASTPS(UNPACKHI_PD(CASTPD(t0), CASTPD(t2)));                 \
            const VEC u2 = CASTPS(UNPACKLO_PD(CASTPD(t1), CASTPD(t3)));                 \
            const VEC u3 = CASTPS(UNPACKHI_PD(CASTPD(t1), CASTPD(t3)));                 \
            FC_WTS4_LANE(y + o, ldc, nl, 0, EXT, u0, u1, u2, u3)                        \
            FC_WTS4_LANE(y + o, ldc, nl, 1, EXT, u0, u1, u2, u3)                        \
            if (LANES > 2) {                                                            \
                FC_WTS4_LANE(y + o, ldc, nl, 2, EXT, u0, u1, u2, u3)                    \
                FC_WTS4_LANE(y + o, ldc, nl, 3, EXT, u0, u1, u2, u3)                    \
            }                                                                           \
        }                                                                               \
        if (o + 2 <= co) {                                                              \
            const VEC t0 = UNPACKLO(v[o], v[o + 1]), t1 = UNPACKHI(v[o], v[o + 1]);     \
            FC_WTS2_LANE(y + o, ldc, nl, 0, EXT, t0, t1)                                \
            FC_WTS2_LANE(y + o, ldc, nl, 1, EXT, t0, t1)                                \
            if (LANES > 2) {                                                            \
                FC_WTS2_LANE(y + o, ldc, nl, 2, EXT, t0, t1)                            \
                FC_WTS2_LANE(y + o, ldc, nl, 3, EXT, t0, t1)                            \
            }                                                                           \
            o += 2;                                                                     \
        }                                                                               \
        if (o < co) {                                                                   \
            float buf[VL];                                                              \
            STORE(buf, v[o]);                                                           \
            for (l = 0; l < nl; l++)                                                    \
                y[l * ldc + o] = buf[l];                                                \
        }                                                                               \
    }
/* (The lane index of EXT must be a constant: LANES > 2 guards lanes 2 and 3 at compile
 * time, and AVX2's extract is only ever asked for lanes 0 and 1.) */
#define FC_EXT512(v, L) _mm512_extractf32x4_ps(v, (L) & 3)
#define FC_EXT256(v, L) _mm256_extractf128_ps(v, (L) & 1)
FC_WTS_F(fc_wts_avx512_f, FC_TARGET_AVX512, __m512, _mm512_unpacklo_ps, _mm512_unpackhi_ps,
         _mm512_unpacklo_pd, _mm512_unpackhi_pd, _mm512_castps_pd, _mm512_castpd_ps,
         _mm512_storeu_ps, FC_EXT512, 4, 16)
FC_WTS_BUFFER(fc_wts_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_storeu_pd, 8)

#define FC_XLOAD512_F(p, n) _mm512_loadu_ps(p)
#define FC_XLOAD512_D(p, n) _mm512_loadu_pd(p)
#define FC_QFMA512_F(a, b, c, n)                                                         \
    _mm512_mask3_fmadd_ps(a, b, c, (__mmask16)((1u << (n)) - 1u))
#define FC_QFMA512_D(a, b, c, n)                                                         \
    _mm512_mask3_fmadd_pd(a, b, c, (__mmask8)((1u << (n)) - 1u))
/* The float kernels' activation and pool (FC_KWF's ACTV and POOLQ): ReLU as fc_relu1
 * (v < 0 ? 0 : v: NaN and -0 kept), tanh as fc_tanh1_f evaluated on vectors (the clamp
 * as min / max in the order that lets NaN through, each Horner step one fused
 * multiply-add, as the compiler contracts the scalar form), the pool of a pair of rows
 * in the pooling kernels' order ((top-left + top-right) + bottom-left) + bottom-right,
 * then * 1/4, on the even lanes, which a permute gathers into 8 for the store.
 * (In registers, it saves the pass after the kernels, fc_act_pool_image:
 * docs/design/algorithms.md.) */
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE __m512 fc_act512_f(__m512 v, int act)
{
    if (act == FC_ACT_RELU) {
        const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
        return _mm512_mask_mov_ps(v, neg, _mm512_setzero_ps());
    }
    if (act == FC_ACT_TANH) {
        const __m512 c = _mm512_max_ps(_mm512_set1_ps(-9.1f),
                                       _mm512_min_ps(_mm512_set1_ps(9.1f), v));
        const __m512 z = _mm512_mul_ps(c, c);
        __m512 p = _mm512_set1_ps(-8.228282015161972e-14f), q;
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(5.1776263831904146e-11f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-2.0019033541984754e-08f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.1103905308118556e-05f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0.0030991602689027786f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(0.13079722225666046f));
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f));
        q = _mm512_set1_ps(0.00025391479721292853f);
        q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(0.024476099759340286f));
        q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(0.4641304910182953f));
        q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(1.0f));
        return _mm512_div_ps(_mm512_mul_ps(c, p), q);
    }
    return v;
}
FC_WTS_F(fc_wts_avx512_f8, FC_TARGET_AVX512, __m256, _mm256_unpacklo_ps,
         _mm256_unpackhi_ps, _mm256_unpacklo_pd, _mm256_unpackhi_pd, _mm256_castps_pd,
         _mm256_castpd_ps, _mm256_storeu_ps, FC_EXT256, 2, 8)
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE void fc_poolq512_f(float *yq,
                                                                   ptrdiff_t ldc,
                                                                   const __m512 *top,
                                                                   const __m512 *bot,
                                                                   int co, int np)
{
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 2, 4, 6, 8, 10,
                                           12, 14);
    __m256 p[8];
    int o;
    for (o = 0; o < co; o++) {
        __m512 t = _mm512_add_ps(top[o], _mm512_permute_ps(top[o], 0xB1));
        t = _mm512_add_ps(t, bot[o]);
        t = _mm512_add_ps(t, _mm512_permute_ps(bot[o], 0xB1));
        t = _mm512_mul_ps(t, _mm512_set1_ps(0.25f));
        p[o] = _mm512_castps512_ps256(_mm512_permutexvar_ps(even, t));
    }
    fc_wts_avx512_f8(yq, ldc, p, co, np);
}

#endif
