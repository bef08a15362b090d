/* Pooling's hottest rows in explicit SSE2, the x86-64 baseline (no CPU dispatch needed):
 * 2x2/2 max pooling of float32 rows (channels_first, forward and backward) and the 2x2/2
 * average of channels_last rows.  Written out because GCC vectorises the Cython loops
 * only for long rows and falls back to unpredictable branches on short ones
 * (docs/design/algorithms.md); a row's tail goes through the same SIMD code on a
 * zero-padded copy, so every output takes the same branch-free path.  Other CPUs, and
 * builds with CFLAGS=-DFASTCONV_NO_SIMD, use the portable Cython loops of src/_pool2d.pyx
 * and src/pool/nchw.pxi.
 * Included by src/_pool2d.pyx after Python.h (Py_ssize_t).
 */
#ifndef FASTCONV_POOL_SIMD_H
#define FASTCONV_POOL_SIMD_H

#if (defined(__SSE2__) || defined(_M_X64) \
     || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)) && !defined(FASTCONV_NO_SIMD)
#include <emmintrin.h>
#define FC_POOL_SSE2 1

/* Winner update of 4 lanes: v replaces best when v > best or v is the first NaN. */
#define FC_MAX_STEP(v, kval)                                                    \
    do {                                                                        \
        __m128 w_ = _mm_andnot_ps(nan, _mm_cmpnle_ps((v), best));               \
        best = _mm_or_ps(_mm_and_ps(w_, (v)), _mm_andnot_ps(w_, best));         \
        k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(w_), _mm_set1_epi32(kval)), \
                         _mm_andnot_si128(_mm_castps_si128(w_), k));            \
        nan = _mm_or_ps(nan, _mm_cmpunord_ps((v), (v)));                        \
    } while (0)

/* 4 outputs of a 2x2/2 max pool from 8 floats of each of the rows r0 and r1. */
static inline void fc_max_group_2x2_f32(const float *r0, const float *r1, float *y,
                                        unsigned char *idx)
{
    __m128 p0 = _mm_loadu_ps(r0), p1 = _mm_loadu_ps(r0 + 4);
    __m128 q0 = _mm_loadu_ps(r1), q1 = _mm_loadu_ps(r1 + 4);
    __m128 a = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
    __m128 b = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
    __m128 c = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
    __m128 d = _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
    __m128 best = a, nan = _mm_cmpunord_ps(a, a);
    __m128i k = _mm_setzero_si128();
    FC_MAX_STEP(b, 1);
    FC_MAX_STEP(c, 2);
    FC_MAX_STEP(d, 3);
    _mm_storeu_ps(y, best);
    if (idx) {
        __m128i packed = _mm_packs_epi32(k, k);
        int bytes;
        packed = _mm_packus_epi16(packed, packed);
        bytes = _mm_cvtsi128_si32(packed);
        memcpy(idx, &bytes, 4);
    }
}

/* One output row (ow outputs) from input rows r0, r1; idx may be NULL.  A row of 4+
   outputs ends with a group aligned to its end, which recomputes (and rewrites with
   the same values) up to 3 outputs; shorter rows go through zero-padded copies. */
static void fc_max_row_2x2_f32(const float *r0, const float *r1, float *y,
                               unsigned char *idx, Py_ssize_t ow)
{
    Py_ssize_t ox, j;
    if (ow >= 4) {
        for (ox = 0; ox + 4 <= ow; ox += 4)
            fc_max_group_2x2_f32(r0 + 2 * ox, r1 + 2 * ox, y + ox,
                                 idx ? idx + ox : NULL);
        if (ox < ow) {
            ox = ow - 4;
            fc_max_group_2x2_f32(r0 + 2 * ox, r1 + 2 * ox, y + ox,
                                 idx ? idx + ox : NULL);
        }
    } else {
        float t0[8] = {0}, t1[8] = {0}, ty[4];
        unsigned char ti[4];
        for (j = 0; j < 2 * ow; j++) {
            t0[j] = r0[j];
            t1[j] = r1[j];
        }
        fc_max_group_2x2_f32(t0, t1, ty, idx ? ti : NULL);
        for (j = 0; j < ow; j++) {
            y[j] = ty[j];
            if (idx)
                idx[j] = ti[j];
        }
    }
}
/* Backward of 4 outputs: each window's 4 cells get the gradient where the stored
   position matches and +0 elsewhere (an AND with the comparison mask), written
   back interleaved as two rows of 8 floats. */
static inline void fc_max_back_group_2x2_f32(const float *g, const unsigned char *idx,
                                             float *r0, float *r1)
{
    __m128 gv = _mm_loadu_ps(g);
    __m128i zero = _mm_setzero_si128(), k;
    __m128 a, b, c, d;
    int bytes;
    memcpy(&bytes, idx, 4);
    k = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(bytes), zero), zero);
    a = _mm_and_ps(gv, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(0))));
    b = _mm_and_ps(gv, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(1))));
    c = _mm_and_ps(gv, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(2))));
    d = _mm_and_ps(gv, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(3))));
    _mm_storeu_ps(r0, _mm_unpacklo_ps(a, b));
    _mm_storeu_ps(r0 + 4, _mm_unpackhi_ps(a, b));
    _mm_storeu_ps(r1, _mm_unpacklo_ps(c, d));
    _mm_storeu_ps(r1 + 4, _mm_unpackhi_ps(c, d));
}

/* One output row of the backward; returns 0 (nothing done) for rows under 4. */
static int fc_max_back_row_2x2_f32(const float *g, const unsigned char *idx, float *r0,
                                   float *r1, Py_ssize_t ow)
{
    Py_ssize_t ox;
    if (ow < 4)
        return 0;
    for (ox = 0; ox + 4 <= ow; ox += 4)
        fc_max_back_group_2x2_f32(g + ox, idx + ox, r0 + 2 * ox, r1 + 2 * ox);
    if (ox < ow) {
        ox = ow - 4;
        fc_max_back_group_2x2_f32(g + ox, idx + ox, r0 + 2 * ox, r1 + 2 * ox);
    }
    return 1;
}

/* One output row of the 2x2/2 average, channels_last: output pixel ox averages the
   C channels of pixels 2ox, 2ox+1 of input rows r0 and r1, four channels per
   vector (faster than the portable loop from 16 channels: docs/design/algorithms.md),
   summed in the window's row-major order like the portable loop.  (* 0.25 and / 4
   round the same: both scale by a power of two.) */
static void fc_avg_row_nhwc_2x2_f32(const float *r0, const float *r1, float *y,
                                    Py_ssize_t ow, Py_ssize_t C)
{
    const __m128 q = _mm_set1_ps(0.25f);
    Py_ssize_t ox, c;
    for (ox = 0; ox < ow; ox++) {
        const float *a = r0 + 2 * ox * C, *b = a + C, *d = r1 + 2 * ox * C, *e = d + C;
        float *o = y + ox * C;
        for (c = 0; c + 4 <= C; c += 4) {
            __m128 s = _mm_add_ps(_mm_loadu_ps(a + c), _mm_loadu_ps(b + c));
            s = _mm_add_ps(s, _mm_loadu_ps(d + c));
            s = _mm_add_ps(s, _mm_loadu_ps(e + c));
            _mm_storeu_ps(o + c, _mm_mul_ps(s, q));
        }
        for (; c < C; c++)
            o[c] = (((a[c] + b[c]) + d[c]) + e[c]) * 0.25f;
    }
}
#else
#define FC_POOL_SSE2 0
static void fc_avg_row_nhwc_2x2_f32(const float *r0, const float *r1, float *y,
                                    Py_ssize_t ow, Py_ssize_t C)
{
    (void)r0; (void)r1; (void)y; (void)ow; (void)C;  /* never called */
}
static void fc_max_row_2x2_f32(const float *r0, const float *r1, float *y,
                               unsigned char *idx, Py_ssize_t ow)
{
    (void)r0; (void)r1; (void)y; (void)idx; (void)ow;  /* never called */
}
static int fc_max_back_row_2x2_f32(const float *g, const unsigned char *idx, float *r0,
                                   float *r1, Py_ssize_t ow)
{
    (void)g; (void)idx; (void)r0; (void)r1; (void)ow;
    return 0;
}
#endif

#endif
