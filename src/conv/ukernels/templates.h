/* ISA-independent micro-kernel templates: each ISA's files instantiate them with its
 * vector type and intrinsics (as XNNPACK's .c.in templates). */
#ifndef FASTCONV_UK_TEMPLATES
#define FASTCONV_UK_TEMPLATES

#include "common.h"

/* TSTORE(y, ldc, v, CO, nl): the CO vectors v (channel o's VL pixels in v[o]) to
 * y[l * ldc + o] for l < nl: a transpose, per ISA (fc_wts_*).  With act (FC_ACT_*, see
 * ukernels/common.h) and yq, where the ISA has ACTV and POOLQ (AVX-512, float; the
 * others get act = 0 and yq = NULL): the activation applied before the store (y may
 * then be NULL: not stored), and the 2x2/2 average pool of each pair of rows (r, r + 1),
 * r even, to yq + (r / 2) * ldq, nl / 2 pooled pixels ldc apart. */
#define FC_KWF(NAME, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R,    \
               CO)                                                                      \
    ATTR static void NAME(ptrdiff_t K, const ptrdiff_t *off, const T *xs, ptrdiff_t ldr, \
                          const T *W, const T *bias, T *y, ptrdiff_t ldy, ptrdiff_t ldc, \
                          int nr, int nl, int act, T *yq, ptrdiff_t ldq)                \
    {                                                                                   \
        VEC acc[R][CO];                                                                 \
        ptrdiff_t k;                                                                    \
        int r, o;                                                                       \
        for (r = 0; r < R; r++)                                                         \
            for (o = 0; o < CO; o++)                                                    \
                acc[r][o] = ZERO;                                                       \
        for (k = 0; k < K; k++) {                                                       \
            const T *a = xs + off[k];                                                   \
            const T *w = W + k * CO;                                                    \
            VEC xv[R];                                                                  \
            for (r = 0; r < R; r++)                                                     \
                xv[r] = LOAD(a + r * ldr);                                              \
            for (o = 0; o < CO; o++) {                                                  \
                const VEC wv = SET1(w[o]);                                              \
                for (r = 0; r < R; r++)                                                 \
                    acc[r][o] = FMA(xv[r], wv, acc[r][o]);                              \
            }                                                                           \
        }                                                                               \
        for (r = 0; r < R && r < nr; r++)                                               \
            for (o = 0; o < CO; o++)                                                    \
                acc[r][o] = ACTV(ADD(acc[r][o], SET1(bias[o])), act);                   \
        if (y != NULL)                                                                  \
            for (r = 0; r < R && r < nr; r++)                                           \
                TSTORE(y + r * ldy, ldc, acc[r], CO, nl);                               \
        if (yq != NULL)                                                                 \
            for (r = 0; r + 1 < R && r + 1 < nr; r += 2)                                \
                POOLQ(yq + (r / 2) * ldq, ldc, acc[r], acc[r + 1], CO, nl / 2);         \
    }
/* (the ISAs without an in-kernel activation and pool) */
#define FC_NO_ACTV(v, act) ((void)(act), (v))
#define FC_NO_POOLQ(yq, ldc, top, bot, co, np) ((void)0)

#define FC_KWG(NAME, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, CO, KJ)                \
    ATTR static void NAME(ptrdiff_t nq, const ptrdiff_t *xo, const ptrdiff_t *go,       \
                          const ptrdiff_t *nl, const T *xa, ptrdiff_t dx, const T *ga,  \
                          ptrdiff_t ldg, T *out, ptrdiff_t ldo)                         \
    {                                                                                   \
        VEC acc[CO][KJ];                                                                \
        ptrdiff_t q;                                                                    \
        int o, j;                                                                       \
        for (o = 0; o < CO; o++)                                                        \
            for (j = 0; j < KJ; j++)                                                    \
                acc[o][j] = ZERO;                                                       \
        for (q = 0; q < nq; q++) {                                                      \
            const T *a = xa + xo[q];                                                    \
            const T *b = ga + go[q];                                                    \
            const int n = (int)nl[q];                                                   \
            VEC gv[CO], xv[KJ];                                                         \
            for (o = 0; o < CO; o++)                                                    \
                gv[o] = LOAD(b + o * ldg);                                              \
            for (j = 0; j < KJ; j++)                                                    \
                xv[j] = XLOAD(a + j * dx, n);                                           \
            for (o = 0; o < CO; o++)                                                    \
                for (j = 0; j < KJ; j++)                                                \
                    acc[o][j] = QFMA(xv[j], gv[o], acc[o][j], n);                       \
        }                                                                               \
        for (o = 0; o < CO; o++)                                                        \
            for (j = 0; j < KJ; j++)                                                    \
                out[j * ldo + o] += HSUM(acc[o][j]);                                    \
    }

/* The five wide forward kernels (1, 2, 4, 6, 8 channels) and the FC_WKJ weight-gradient
 * kernels of one ISA and dtype: NAME##_co1.. and NAME##_kj1.. */
#define FC_WIDE_SET(NAME, ATTR, T, VEC, ZERO, LOAD, XLOAD, SET1, FMA, QFMA, ADD, HSUM,  \
                    TSTORE, ACTV, POOLQ, R1, R2, R4, R6, R8, GCO)                       \
    FC_KWF(NAME##_co1, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R1, \
           1)                                                                           \
    FC_KWF(NAME##_co2, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R2, \
           2)                                                                           \
    FC_KWF(NAME##_co4, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R4, \
           4)                                                                           \
    FC_KWF(NAME##_co6, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R6, \
           6)                                                                           \
    FC_KWF(NAME##_co8, ATTR, T, VEC, ZERO, LOAD, SET1, FMA, ADD, TSTORE, ACTV, POOLQ, R8, \
           8)                                                                           \
    FC_KWG(NAME##_kj1, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, GCO, 1)              \
    FC_KWG(NAME##_kj2, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, GCO, 2)              \
    FC_KWG(NAME##_kj3, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, GCO, 3)              \
    FC_KWG(NAME##_kj4, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, GCO, 4)              \
    FC_KWG(NAME##_kj5, ATTR, T, VEC, ZERO, LOAD, XLOAD, QFMA, HSUM, GCO, 5)
#define FC_WIDE_KWF(NAME) {NAME##_co1, NAME##_co2, NAME##_co4, NAME##_co6, NAME##_co8}
#define FC_WIDE_KWG(NAME) {NAME##_kj1, NAME##_kj2, NAME##_kj3, NAME##_kj4, NAME##_kj5}

/* The wide forward's transposed store through a buffer: each vector to buf, then its
 * nl lanes to their pixels (the portable build's, and double's on the SIMD builds). */
#define FC_WTS_BUFFER(NAME, ATTR, T, VEC, STORE, VL)                                    \
    ATTR static inline FC_ALWAYS_INLINE void NAME(T *y, ptrdiff_t ldc, const VEC *v,    \
                                                  int co, int nl)                       \
    {                                                                                   \
        T buf[VL];                                                                      \
        int o, l;                                                                       \
        for (o = 0; o < co; o++) {                                                      \
            STORE(buf, v[o]);                                                           \
            for (l = 0; l < nl; l++)                                                    \
                y[l * ldc + o] = buf[l];                                                \
        }                                                                               \
    }

#define FC_KNR(NAME, ATTR, T, VEC, ZERO, LOAD, FMA, HSUM4, MR, VL)                       \
    ATTR static void NAME(ptrdiff_t nseg, ptrdiff_t C, const ptrdiff_t *sega,          \
                          const T *xa, const ptrdiff_t *off, const T *W, T *y,          \
                          ptrdiff_t ldy)                                                \
    {                                                                                   \
        VEC acc[MR][FC_NO];                                                             \
        ptrdiff_t s, c;                                                                 \
        int i, o;                                                                       \
        for (i = 0; i < MR; i++)                                                        \
            for (o = 0; o < FC_NO; o++)                                                 \
                acc[i][o] = ZERO;                                                       \
        for (s = 0; s < nseg; s++) {                                                    \
            const T *w = W + s * FC_NO * C;                                             \
            const T *a[MR];                                                             \
            for (i = 0; i < MR; i++)                                                    \
                a[i] = xa + off[i] + sega[s];                                           \
            for (c = 0; c < C; c += VL) {                                               \
                VEC xv[MR], wv[FC_NO];                                                  \
                for (o = 0; o < FC_NO; o++)                                             \
                    wv[o] = LOAD(w + o * C + c);                                        \
                for (i = 0; i < MR; i++)                                                \
                    xv[i] = LOAD(a[i] + c);                                             \
                for (i = 0; i < MR; i++)                                                \
                    for (o = 0; o < FC_NO; o++)                                         \
                        acc[i][o] = FMA(xv[i], wv[o], acc[i][o]);                       \
            }                                                                           \
        }                                                                               \
        for (i = 0; i < MR; i++)                                                        \
            HSUM4(y + i * ldy, acc[i]);                                                 \
    }
/* HSUM4(dst, v): dst[o] = the sum of v[o]'s lanes, o < FC_NO = 4.  The generic one adds
 * each vector on its own (HSUM); fc_hsum4_avx512_f / _avx2_f add the four together, a
 * transpose-and-add tree, which is faster (docs/design/algorithms.md). */
#define FC_HSUM4_EACH(NAME, ATTR, T, VEC, HSUM)                                          \
    ATTR static inline FC_ALWAYS_INLINE void NAME(T *dst, const VEC *v)                  \
    {                                                                                   \
        int o;                                                                          \
        for (o = 0; o < FC_NO; o++)                                                     \
            dst[o] = HSUM(v[o]);                                                        \
    }

/* The pixel-row kernel for any ISA: MR rows x NV vectors of VL lanes, accumulators in
 * registers (the compiler unrolls the constant-trip loops).  VEC/LOAD/... name the
 * vector type and intrinsics; the portable build passes scalar stand-ins (VL 1). */
#define FC_KPX(NAME, ATTR, T, VEC, ZERO, LOAD, STORE, SET1, FMA, ADD, MR, NV, VL)      \
    ATTR static inline FC_ALWAYS_INLINE void NAME##_body(                              \
        ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega, const ptrdiff_t *segb,   \
        const T *xa, const ptrdiff_t *off, ptrdiff_t as, const T *B, ptrdiff_t bs,     \
        T *C, ptrdiff_t ldc, int accumulate, const T *bias)                            \
    {                                                                                  \
        VEC acc[MR][NV];                                                               \
        ptrdiff_t d[MR];                                                               \
        ptrdiff_t s, p;                                                                \
        int i, v;                                                                      \
        for (i = 0; i < MR; i++)                                                       \
            for (v = 0; v < NV; v++)                                                   \
                acc[i][v] = ZERO;                                                      \
        /* row i read at a0 + d[i] (d[0] = 0): one moving pointer and MR - 1 constant \
         * offsets, which (with a count-down loop) fit in the general registers, where \
         * MR row pointers spilled to the stack (docs/design/algorithms.md) */         \
        for (i = 0; i < MR; i++)                                                       \
            d[i] = off[i] - off[0];                                                    \
        for (s = 0; s < nseg; s++) {                                                   \
            const T *b = B + segb[s];                                                  \
            const T *a0 = xa + off[0] + sega[s];                                       \
            for (p = len; p > 0; p--) {                                                \
                VEC bv[NV];                                                            \
                for (v = 0; v < NV; v++)                                               \
                    bv[v] = LOAD(b + v * VL);                                          \
                for (i = 0; i < MR; i++) {                                             \
                    const VEC av = SET1(i == 0 ? a0[0] : a0[d[i]]);                    \
                    for (v = 0; v < NV; v++)                                           \
                        acc[i][v] = FMA(av, bv[v], acc[i][v]);                         \
                }                                                                      \
                a0 += as;                                                              \
                b += bs;                                                               \
            }                                                                          \
        }                                                                              \
        for (i = 0; i < MR; i++)                                                       \
            for (v = 0; v < NV; v++) {                                                 \
                T *d = C + i * ldc + v * VL;                                           \
                STORE(d, accumulate ? ADD(acc[i][v], LOAD(d))                          \
                         : bias ? ADD(acc[i][v], LOAD(bias + v * VL)) : acc[i][v]);    \
            }                                                                          \
    }                                                                                  \
    /* NAME_out: the forward's whole tile (contiguous rows, packed B) written straight \
     * into y (rows ldc apart) with the bias added on the registers, no tile buffer:  \
     * acc + bias, rounded as fc_tile_store's src[j] + bc[j]. */                       \
    ATTR static void NAME##_out(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega, \
                                const ptrdiff_t *segb, const T *xa, const ptrdiff_t *off,\
                                const T *B, T *C, ptrdiff_t ldc, const T *bias)       \
    {                                                                                  \
        NAME##_body(nseg, len, sega, segb, xa, off, 1, B, NV * VL, C, ldc, 0, bias);   \
    }                                                                                  \
    /* The forward's case (contiguous rows, packed B) gets its own copy compiled with \
     * those strides as constants: fewer live registers in the inner loop. */          \
    ATTR static void NAME(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,       \
                          const ptrdiff_t *segb, const T *xa, const ptrdiff_t *off,    \
                          ptrdiff_t as, const T *B, ptrdiff_t bs, T *C, ptrdiff_t ldc, \
                          int accumulate)                                              \
    {                                                                                  \
        if (as == 1 && bs == NV * VL)                                                  \
            NAME##_body(nseg, len, sega, segb, xa, off, 1, B, NV * VL, C, ldc,         \
                        accumulate, NULL);                                                   \
        else if (bs == NV * VL)                                                        \
            NAME##_body(nseg, len, sega, segb, xa, off, as, B, NV * VL, C, ldc,        \
                        accumulate, NULL);                                                   \
        else                                                                           \
            NAME##_body(nseg, len, sega, segb, xa, off, as, B, bs, C, ldc,             \
                        accumulate, NULL);                                                   \
    }

#endif
