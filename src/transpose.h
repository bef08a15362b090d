/* Batched 2-D transposes: dst[m][j][i] = src[m][i][j] for n matrices of rows x cols
 * elements of 4 or 8 bytes.  An (N, C, H, W) array to (N, H, W, C) is n = N, rows = C,
 * cols = H * W; the way back swaps rows and cols.  (NumPy copies a transposed view one
 * element at a time along the output, striding through the input: 3 GB/s.)
 *
 * Tiles of FC_TR_TILE x FC_TR_TILE elements, so that the rows read and the rows written
 * are each a few cache lines that stay in L1 while the tile is copied; the tiles of all
 * matrices are split over the threads (each element is copied once: any split gives the
 * same result). */
#ifndef FASTCONV_TRANSPOSE_H
#define FASTCONV_TRANSPOSE_H

#include <stddef.h>
#include <stdint.h>
#include "omp_shim.h"
#include "conv/ukernels/common.h"   /* FC_X86_DISPATCH, FC_TARGET_AVX2 */

#define FC_TR_TILE 32
/* Below this many bytes one thread copies all (waking the other costs more). */
#define FC_TR_PARALLEL_BYTES ((size_t)256 * 1024)

/* One tile (rows i0..i1, columns j0..j1 of src, rows x cols) into dst (cols x rows). */
#define FC_TR_TILE_C(T)                                                                 \
    static inline void fc_tr_tile_##T(const T *s, T *d, ptrdiff_t rows, ptrdiff_t cols, \
                                      ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0,          \
                                      ptrdiff_t j1)                                      \
    {                                                                                   \
        ptrdiff_t i, j;                                                                 \
        for (j = j0; j < j1; j++)                                                       \
            for (i = i0; i < i1; i++)                                                   \
                d[j * rows + i] = s[i * cols + j];                                      \
    }
FC_TR_TILE_C(uint8_t)
FC_TR_TILE_C(uint32_t)
FC_TR_TILE_C(uint64_t)

#if FC_X86_DISPATCH
/* 4-byte tiles on AVX2: each whole 8 x 8 block as eight row loads, the unpack /
 * shuffle / lane-permute transpose, eight row stores; the tile's edges in C. */
FC_TARGET_AVX2
static void fc_tr_tile_avx2(const uint32_t *s, uint32_t *d, ptrdiff_t rows,
                            ptrdiff_t cols, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0,
                            ptrdiff_t j1)
{
    ptrdiff_t i, j;
    for (i = i0; i + 8 <= i1; i += 8) {
        for (j = j0; j + 8 <= j1; j += 8) {
            const float *p = (const float *)s + i * cols + j;
            __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + cols);
            __m256 r2 = _mm256_loadu_ps(p + 2 * cols), r3 = _mm256_loadu_ps(p + 3 * cols);
            __m256 r4 = _mm256_loadu_ps(p + 4 * cols), r5 = _mm256_loadu_ps(p + 5 * cols);
            __m256 r6 = _mm256_loadu_ps(p + 6 * cols), r7 = _mm256_loadu_ps(p + 7 * cols);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
            __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
            __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
            __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
            __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
            __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
            __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
            __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
            float *q = (float *)d + j * rows + i;
            _mm256_storeu_ps(q, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(q + rows, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(q + 2 * rows, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(q + 3 * rows, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(q + 4 * rows, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(q + 5 * rows, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(q + 6 * rows, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(q + 7 * rows, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        if (j < j1)
            fc_tr_tile_uint32_t(s, d, rows, cols, i, i + 8, j, j1);
    }
    if (i < i1)
        fc_tr_tile_uint32_t(s, d, rows, cols, i, i1, j0, j1);
}
#endif

#define FC_TR_TILES(T, TILE_FN)                                                         \
    static void fc_transpose_##T(const T *src, T *dst, ptrdiff_t n, ptrdiff_t rows,      \
                                 ptrdiff_t cols, int threads, int simd)                  \
    {                                                                                   \
        const ptrdiff_t tr = (rows + FC_TR_TILE - 1) / FC_TR_TILE;                      \
        const ptrdiff_t tc = (cols + FC_TR_TILE - 1) / FC_TR_TILE;                      \
        const ptrdiff_t tiles = n * tr * tc;                                            \
        ptrdiff_t t;                                                                    \
        if ((size_t)(n * rows * cols) * sizeof(T) < FC_TR_PARALLEL_BYTES)               \
            threads = 1;                                                                \
        _Pragma("omp parallel for schedule(static) num_threads(threads) if(threads > 1)") \
        for (t = 0; t < tiles; t++) {                                                   \
            const ptrdiff_t m = t / (tr * tc), r = t % (tr * tc);                       \
            const ptrdiff_t i0 = r / tc * FC_TR_TILE, j0 = r % tc * FC_TR_TILE;         \
            const ptrdiff_t i1 = i0 + FC_TR_TILE < rows ? i0 + FC_TR_TILE : rows;       \
            const ptrdiff_t j1 = j0 + FC_TR_TILE < cols ? j0 + FC_TR_TILE : cols;       \
            if (simd)                                                                   \
                TILE_FN(src + m * rows * cols, dst + m * rows * cols, rows, cols, i0, i1, \
                        j0, j1);                                                        \
            else                                                                        \
                fc_tr_tile_##T(src + m * rows * cols, dst + m * rows * cols, rows, cols, \
                               i0, i1, j0, j1);                                         \
        }                                                                               \
    }

#if FC_X86_DISPATCH
FC_TR_TILES(uint32_t, fc_tr_tile_avx2)
#else
FC_TR_TILES(uint32_t, fc_tr_tile_uint32_t)
#endif
FC_TR_TILES(uint64_t, fc_tr_tile_uint64_t)
FC_TR_TILES(uint8_t, fc_tr_tile_uint8_t)   /* (max-pool indices) */

/* Whether the 4-byte transposes may run the AVX2 tiles on this CPU. */
static int fc_tr_simd(int portable)
{
#if FC_X86_DISPATCH
    return !portable && __builtin_cpu_supports("avx2");
#else
    (void)portable;
    return 0;
#endif
}

#endif
