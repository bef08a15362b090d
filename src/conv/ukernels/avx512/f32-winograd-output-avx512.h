/* float Winograd F(4x4) / F(5x5) output transform of a tile (fc_kwo_f), AVX-512F. */
#ifndef FASTCONV_UK_F32_WGO_AVX512
#define FASTCONV_UK_F32_WGO_AVX512

#include "avx512.h"

/* fc_kwo_f for AVX-512: one vector of 16 channels at a time (a masked last one), the
 * column transforms first (held in registers), then the rows.  fc_max4 as vectors: w
 * replaces best where best is a number and !(w <= best).  (A little faster than the
 * vectorised loops, whose entry addresses and edge tests spilled to the stack:
 * docs/design/algorithms.md.) */
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE void fc_wo512_at_f(int tile,
                                                                   const __m512 *m,
                                                                   __m512 *o)
{
    const __m512 a_ = _mm512_add_ps(m[1], m[2]), b_ = _mm512_sub_ps(m[1], m[2]);
    const __m512 c_ = _mm512_add_ps(m[3], m[4]), d_ = _mm512_sub_ps(m[3], m[4]);
    if (tile == 4) {  /* fc_wg4_output's FC_WG4_AT */
        o[0] = _mm512_add_ps(_mm512_add_ps(m[0], a_), c_);
        o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d_, b_);
        o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), c_, a_);
        o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), d_, b_), m[5]);
    } else {  /* fc_wg5_output's FC_WG5_AT */
        const __m512 e_ = m[5];
        o[0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(m[0], a_), c_), e_);
        o[1] = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), e_,
                               _mm512_fmadd_ps(_mm512_set1_ps(2.0f), d_, b_));
        o[2] = _mm512_fmadd_ps(_mm512_set1_ps(0.25f), e_,
                               _mm512_fmadd_ps(_mm512_set1_ps(4.0f), c_, a_));
        o[3] = _mm512_fmadd_ps(_mm512_set1_ps(0.125f), e_,
                               _mm512_fmadd_ps(_mm512_set1_ps(8.0f), d_, b_));
        o[4] = _mm512_add_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(0.0625f), e_,
                            _mm512_fmadd_ps(_mm512_set1_ps(16.0f), c_, a_)),
            m[6]);
    }
}
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE __m512 fc_max512_f(__m512 best, __m512 w)
{
    const __mmask16 num = _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
    return _mm512_mask_mov_ps(best, _mm512_mask_cmp_ps_mask(num, w, best, _CMP_NLE_UQ),
                              w);
}
/* tile 4 or 5 (a constant where inlined); pool with tile 4 only. */
FC_TARGET_AVX512 static inline FC_ALWAYS_INLINE void fc_wgo512_body_f(
    int tile, const float *m, ptrdiff_t ms, const float *bias, float *y, ptrdiff_t rs,
    ptrdiff_t cs, ptrdiff_t cols, int nrow, int ncol, int relu, int pool)
{
    const int L = tile + 2;
    ptrdiff_t j;
    int a, k, i;
    for (j = 0; j < cols; j += 16) {
        const __mmask16 lanes = cols - j >= 16 ? (__mmask16)0xFFFF
                                               : (__mmask16)((1u << (cols - j)) - 1);
        const float *p = m + j;
        const __m512 b = bias ? _mm512_maskz_loadu_ps(lanes, bias + j) : _mm512_setzero_ps();
        __m512 s[5][7], o[5][5];
        for (k = 0; k < L; k++) {  /* column k of A^T M, from entries L i + k */
            __m512 col[7], sc[5];
            for (i = 0; i < L; i++)
                col[i] = _mm512_maskz_loadu_ps(lanes, p + (L * i + k) * ms);
            fc_wo512_at_f(tile, col, sc);
            for (a = 0; a < tile; a++)
                s[a][k] = sc[a];
        }
        for (a = 0; a < tile; a++) {
            fc_wo512_at_f(tile, s[a], o[a]);
            for (k = 0; k < tile; k++) {
                o[a][k] = _mm512_add_ps(o[a][k], b);
                if (relu)
                    o[a][k] = fc_act512_f(o[a][k], FC_ACT_RELU);
            }
        }
        if (pool) {
            for (a = 0; a < 2; a++)
                for (k = 0; k < 2; k++) {
                    __m512 best = o[2 * a][2 * k];
                    best = fc_max512_f(best, o[2 * a][2 * k + 1]);
                    best = fc_max512_f(best, o[2 * a + 1][2 * k]);
                    best = fc_max512_f(best, o[2 * a + 1][2 * k + 1]);
                    if (a < nrow && k < ncol)
                        _mm512_mask_storeu_ps(y + a * rs + k * cs + j, lanes, best);
                }
        } else {
            for (a = 0; a < tile; a++)
                for (k = 0; k < tile; k++)
                    if (a < nrow && k < ncol)
                        _mm512_mask_storeu_ps(y + a * rs + k * cs + j, lanes, o[a][k]);
        }
    }
}
/* The common cases with constants: a whole tile, entries MR x NR = 12 x 32 apart (the
 * pixel-row tile, fc_wg_forward_block's scratch) or 12 x 16 (its half-width tile), so
 * that the entry addresses are displacements of one register (as variables GCC kept
 * them all on the stack). */
FC_TARGET_AVX512 static void fc_wgo_avx512_f(int tile, const float *m, ptrdiff_t ms,
                                             const float *bias, float *y, ptrdiff_t rs,
                                             ptrdiff_t cs, ptrdiff_t cols, int nrow,
                                             int ncol, int relu, int pool)
{
    if (tile == 5) {
        const int whole = nrow == 5 && ncol == 5;
        if (ms == 12 * 32 && whole)
            fc_wgo512_body_f(5, m, 12 * 32, bias, y, rs, cs, cols, 5, 5, relu, 0);
        else if (ms == 12 * 16 && whole)
            fc_wgo512_body_f(5, m, 12 * 16, bias, y, rs, cs, cols, 5, 5, relu, 0);
        else
            fc_wgo512_body_f(5, m, ms, bias, y, rs, cs, cols, nrow, ncol, relu, 0);
    } else {
        const int whole = pool ? nrow == 2 && ncol == 2 : nrow == 4 && ncol == 4;
        if (ms == 12 * 32 && whole)
            fc_wgo512_body_f(4, m, 12 * 32, bias, y, rs, cs, cols, 4, 4, relu, pool);
        else if (ms == 12 * 16 && whole)
            fc_wgo512_body_f(4, m, 12 * 16, bias, y, rs, cs, cols, 4, 4, relu, pool);
        else
            fc_wgo512_body_f(4, m, ms, bias, y, rs, cs, cols, nrow, ncol, relu, pool);
    }
}

#endif
