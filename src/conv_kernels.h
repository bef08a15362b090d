/* Register-blocked matrix-product micro-kernels for fastconv's convolutions, with the
 * instruction set chosen at RUN TIME.
 *
 * A micro-kernel computes one MR x NR tile of C = A B over a reduction of length kc from
 * packed panels:
 *
 *     C[i * ldc + j] (=, or += when accumulate) sum_k A[k * MR + i] * B[k * NR + j]
 *
 * for every 0 <= i < MR and 0 <= j < NR (callers pad the panels with zeros and give a
 * full-size tile).  Three builds of each kernel exist:
 *
 *   avx512  AVX-512F  float 8 x 32, double 8 x 16 (16 accumulator registers of 32)
 *   avx2    AVX2+FMA  float 6 x 16, double 6 x 8  (12 accumulator registers of 16)
 *   portable plain C  4 x 8, for any compiler and CPU (the compiler vectorises what it can
 *            at the baseline instruction set of the target)
 *
 * The SIMD builds are compiled per function with GCC/Clang's target attribute, so the
 * extension itself is built for the baseline CPU (no -mavx / -march flags) and runs
 * anywhere; fc_select_isa() picks the best build the CPU and OS support (GCC/Clang's
 * __builtin_cpu_supports checks both).  Other compilers (MSVC) get the portable build.
 * FASTCONV_DISABLE_SIMD=1 in the environment forces the portable build.
 *
 * Within one ISA the order of every floating-point operation depends only on the
 * shapes, never on the thread count, so results are bit-identical for any thread count.
 */
#ifndef FASTCONV_CONV_KERNELS_H
#define FASTCONV_CONV_KERNELS_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define FC_X86_DISPATCH 1
#include <immintrin.h>
#define FC_TARGET_AVX512 __attribute__((target("avx512f")))
#define FC_TARGET_AVX2 __attribute__((target("avx2,fma")))
/* The glue loops (im2col, transforms, tile stores) are plain C that the compiler
 * vectorises: target_clones builds them for AVX-512, AVX2 and the baseline and picks one
 * at load time (they hold no FMA-contractible products that could change results). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__linux__)
#define FC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#elif defined(__clang__) && __clang_major__ >= 14 && defined(__linux__)
#define FC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
/* Rows ahead that the indirect kernels prefetch (their rows are not sequential). */
#define FC_PF_DIST 8
#else
#define FC_X86_DISPATCH 0
#endif
#ifndef FC_CLONES
#define FC_CLONES
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FC_ALWAYS_INLINE __attribute__((always_inline))
#else
#define FC_ALWAYS_INLINE
#endif

typedef void (*fc_kernel_f)(ptrdiff_t kc, const float *A, const float *B, float *C,
                            ptrdiff_t ldc, int accumulate);
typedef void (*fc_kernel_d)(ptrdiff_t kc, const double *A, const double *B, double *C,
                            ptrdiff_t ldc, int accumulate);

/* Indirect-B kernel: B row k is read in place at xb + off[k] (no packed panel):
 *     C[i * ldc + j] = sum_k A[k * MR + i] * xb[off[k] + j]
 * Indirect-A kernel: A column i is read in place at xa + off[i], one element per step:
 *     C[i * ldc + j] (=, or +=) sum_p xa[off[i] + p] * B[p * NR + j]            */
typedef void (*fc_kib_f)(ptrdiff_t kc, const float *A, const float *xb,
                         const ptrdiff_t *off, float *C, ptrdiff_t ldc);
typedef void (*fc_kib_d)(ptrdiff_t kc, const double *A, const double *xb,
                         const ptrdiff_t *off, double *C, ptrdiff_t ldc);
typedef void (*fc_kia_f)(ptrdiff_t kc, const float *xa, const ptrdiff_t *off,
                         const float *B, float *C, ptrdiff_t ldc, int accumulate);
typedef void (*fc_kia_d)(ptrdiff_t kc, const double *xa, const ptrdiff_t *off,
                         const double *B, double *C, ptrdiff_t ldc, int accumulate);

/* Pixel-row kernel (channels_last convolutions): rows are read in place at xa + off[i],
 * the reduction runs over nseg segments of len steps, and B rows are strided:
 *     C[i * ldc + j] (=, or +=) sum_s sum_p xa[off[i] + sega[s] + p * as]
 *                                            * B[segb[s] + p * bs + j]
 * The forward pass uses it with rows = output pixels, columns = output channels, the
 * reduction over (ki, kj, c) of one window (contiguous in channels_last); the weight
 * gradient with rows = (ki, kj, c), columns = output channels, the reduction over
 * output pixels. */
typedef void (*fc_kpx_f)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                         const ptrdiff_t *segb, const float *xa, const ptrdiff_t *off,
                         ptrdiff_t as, const float *B, ptrdiff_t bs, float *C,
                         ptrdiff_t ldc, int accumulate);
typedef void (*fc_kpx_d)(ptrdiff_t nseg, ptrdiff_t len, const ptrdiff_t *sega,
                         const ptrdiff_t *segb, const double *xa, const ptrdiff_t *off,
                         ptrdiff_t as, const double *B, ptrdiff_t bs, double *C,
                         ptrdiff_t ldc, int accumulate);

/* Narrow kernel (channels_last convolutions with few output channels): MR rows (output
 * pixels, read in place at xa + off[i]) x FC_NO output channels, vectorised along the
 * input channels instead -- the reduction:
 *     y[i * ldy + o] = sum_s sum_{c < C} xa[off[i] + sega[s] + c] * W[(s * FC_NO + o) * C + c]
 * C must be a multiple of the vector length (vl of the ISA). */
#define FC_NO 4
typedef void (*fc_knr_f)(ptrdiff_t nseg, ptrdiff_t C, const ptrdiff_t *sega,
                         const float *xa, const ptrdiff_t *off, const float *W, float *y,
                         ptrdiff_t ldy);
typedef void (*fc_knr_d)(ptrdiff_t nseg, ptrdiff_t C, const ptrdiff_t *sega,
                         const double *xa, const ptrdiff_t *off, const double *W,
                         double *y, ptrdiff_t ldy);
/* Wide kernels (channels_last, stride 1, few channels): vectorised along the output
 * row, on a channel-major zero-padded copy of the image ("planar": plane c, row r,
 * column t at xs[c * ldp + r * ldr + t]).
 * Forward: R output rows x CO output channels x one vector of VL columns, stored
 * channels_last (transposed in registers) with the bias added,
 *     y[r * ldy + l * ldc + o] = sum_k xs[off[k] + r * ldr + l] * W[k * CO + o] + bias[o]
 * for r < nr and l < nl (the rows and lanes past them are computed and dropped), with
 * off[k] the offset of k = (ki, c, kj); CO is 1, 2, 4, 6 or 8 (fc_wide_co, kwf[0..4])
 * and R depends on CO and the ISA (wr[0..4]).
 * Weight gradient: CO = wg_co output channels x KJ kernel columns (kwg[KJ - 1], KJ up
 * to FC_WKJ) of one (c, ki), reduced over nq row vectors q,
 *     out[j * ldo + o] += sum_q sum_{l < nl[q]} xa[xo[q] + j * dx + l] * ga[go[q] + o * ldg + l]
 * (lanes past nl[q] of xa are zeroed after the load: a value there may be inf, and
 * inf * 0 would turn a sum into NaN). */
#define FC_WCO 5
#define FC_WKJ 5
typedef void (*fc_kwf_f)(ptrdiff_t K, const ptrdiff_t *off, const float *xs,
                         ptrdiff_t ldr, const float *W, const float *bias, float *y,
                         ptrdiff_t ldy, ptrdiff_t ldc, int nr, int nl, int act, float *yq,
                         ptrdiff_t ldq);
typedef void (*fc_kwf_d)(ptrdiff_t K, const ptrdiff_t *off, const double *xs,
                         ptrdiff_t ldr, const double *W, const double *bias, double *y,
                         ptrdiff_t ldy, ptrdiff_t ldc, int nr, int nl, int act,
                         double *yq, ptrdiff_t ldq);
/* The activation a forward pass may apply to its output (the wide and pixel-row kernels
 * take all three; the others a flag for ReLU).  tanh: fc_tanh1_f in float32 (the
 * compiled tanh of fastconv.activations); the double instance exists but Python never
 * asks for it. */
#define FC_ACT_NONE 0
#define FC_ACT_RELU 1
#define FC_ACT_TANH 2
/* Output channels of the wide forward kernels kwf[0..FC_WCO-1]. */
static const int fc_wide_co[FC_WCO] = {1, 2, 4, 6, 8};
typedef void (*fc_kwg_f)(ptrdiff_t nq, const ptrdiff_t *xo, const ptrdiff_t *go,
                         const ptrdiff_t *nl, const float *xa, ptrdiff_t dx,
                         const float *ga, ptrdiff_t ldg, float *out, ptrdiff_t ldo);
typedef void (*fc_kwg_d)(ptrdiff_t nq, const ptrdiff_t *xo, const ptrdiff_t *go,
                         const ptrdiff_t *nl, const double *xa, ptrdiff_t dx,
                         const double *ga, ptrdiff_t ldg, double *out, ptrdiff_t ldo);
/* Winograd F(tile x tile, 3x3) output transform of one tile, tile 4 or 5
 * (conv_driver.h's fc_wg4_output and fc_wg5_output call it where the ISA has one): the
 * tile's (tile + 2)^2 entries at m + e * ms, its channels j < cols contiguous; Y = A^T M
 * A + bias (NULL: none), then ReLU (relu), Y[a][b] stored to y + a * rs + b * cs + j for
 * a < nrow, b < ncol (the tile's part inside the output), or with pool (tile 4) the 2x2
 * max pools of Y's four 2x2 windows, pool (a, b) likewise (a, b < 2).  The operations
 * and their order are those loops', so the same bits. */
typedef void (*fc_kwo_f)(int tile, const float *m, ptrdiff_t ms, const float *bias,
                         float *y, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t cols, int nrow,
                         int ncol, int relu, int pool);
typedef void (*fc_kwo_d)(int tile, const double *m, ptrdiff_t ms, const double *bias,
                         double *y, ptrdiff_t rs, ptrdiff_t cs, ptrdiff_t cols, int nrow,
                         int ncol, int relu, int pool);

typedef struct {
    int id;            /* 0 portable, 1 avx2, 2 avx512 */
    const char *name;
    int mr_f, nr_f, mr_d, nr_d;
    fc_kernel_f kern_f;
    fc_kernel_d kern_d;
    fc_kib_f kib_f;
    fc_kib_d kib_d;
    fc_kia_f kia_f;
    fc_kia_d kia_d;
    int mr_px_f, nr_px_f, mr_px_d, nr_px_d;  /* tile of the pixel-row kernels */
    fc_kpx_f kpx_f;
    fc_kpx_d kpx_d;
    /* The half-width pixel-row tile (same rows, one vector of columns) for layers
     * with at most one vector of output channels; the portable build repeats its
     * full tile here. */
    int mr_px1_f, nr_px1_f, mr_px1_d, nr_px1_d;
    fc_kpx_f kpx1_f;
    fc_kpx_d kpx1_d;
    int mr_nr, vl_f, vl_d;  /* rows of the narrow kernels; their vector lengths */
    fc_knr_f knr_f;
    fc_knr_d knr_d;
    int wr[FC_WCO];  /* rows of the wide forward kernels for 1, 2, 4, 6, 8 channels */
    int wg_co;       /* output channels of the wide weight-gradient kernels */
    int wpool_f;     /* whether the float wide forward kernels take act and yq */
    fc_kwf_f kwf_f[FC_WCO];
    fc_kwf_d kwf_d[FC_WCO];
    fc_kwg_f kwg_f[FC_WKJ];
    fc_kwg_d kwg_d[FC_WKJ];
    fc_kwo_f wgo_f;  /* the Winograd F(4x4) / F(5x5) output transform of a tile, or NULL */
} fc_isa;

/* TSTORE(y, ldc, v, CO, nl): the CO vectors v (channel o's VL pixels in v[o]) to
 * y[l * ldc + o] for l < nl: a transpose, per ISA (fc_wts_*).  With act (FC_ACT_*, see
 * conv_kernels_all.h) and yq, where the ISA has ACTV and POOLQ (AVX-512, float; the
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
 * transpose-and-add tree (measured, cifar.c1's input gradient at batch 128 on the
 * narrow kernel: 2.48 -> 2.30 ms). */
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
        T *C, ptrdiff_t ldc, int accumulate)                                           \
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
         * MR row pointers spilled to the stack (measured, batch 128: LeNet-5's C3     \
         * weight gradient on the half-width tile 0.38 -> 0.33 ms, cifar.c1's 1.36 ->  \
         * 1.26; the forward's contiguous case unchanged) */                           \
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
                STORE(d, accumulate ? ADD(acc[i][v], LOAD(d)) : acc[i][v]);            \
            }                                                                          \
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
                        accumulate);                                                   \
        else if (bs == NV * VL)                                                        \
            NAME##_body(nseg, len, sega, segb, xa, off, as, B, NV * VL, C, ldc,        \
                        accumulate);                                                   \
        else                                                                           \
            NAME##_body(nseg, len, sega, segb, xa, off, as, B, bs, C, ldc,             \
                        accumulate);                                                   \
    }

/* ---------------------------------------------------------------- portable ----- */

#define FC_PORT_MR 4
#define FC_PORT_NR 8

#define FC_PORTABLE_KERNEL(NAME, T)                                                     \
    static void NAME(ptrdiff_t kc, const T *A, const T *B, T *C, ptrdiff_t ldc,        \
                     int accumulate)                                                     \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        ptrdiff_t k;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        for (k = 0; k < kc; k++) {                                                       \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T a = A[i];                                                              \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += a * B[j];                                               \
            }                                                                            \
            A += FC_PORT_MR;                                                             \
            B += FC_PORT_NR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc[i][j] : acc[i][j];    \
    }

FC_PORTABLE_KERNEL(fc_kernel_portable_f, float)
FC_PORTABLE_KERNEL(fc_kernel_portable_d, double)

#define FC_PORTABLE_KIB(NAME, T)                                                        \
    static void NAME(ptrdiff_t kc, const T *A, const T *xb, const ptrdiff_t *off, T *C, \
                     ptrdiff_t ldc)                                                      \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        ptrdiff_t k;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        for (k = 0; k < kc; k++) {                                                       \
            const T *B = xb + off[k];                                                    \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T a = A[i];                                                              \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += a * B[j];                                               \
            }                                                                            \
            A += FC_PORT_MR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = acc[i][j];                                              \
    }

#define FC_PORTABLE_KIA(NAME, T)                                                        \
    static void NAME(ptrdiff_t kc, const T *xa, const ptrdiff_t *off, const T *B, T *C, \
                     ptrdiff_t ldc, int accumulate)                                      \
    {                                                                                    \
        T acc[FC_PORT_MR][FC_PORT_NR];                                                   \
        const T *a[FC_PORT_MR];                                                          \
        ptrdiff_t p;                                                                     \
        int i, j;                                                                        \
        for (i = 0; i < FC_PORT_MR; i++) {                                               \
            a[i] = xa + off[i];                                                          \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                acc[i][j] = 0;                                                           \
        }                                                                                \
        for (p = 0; p < kc; p++) {                                                       \
            for (i = 0; i < FC_PORT_MR; i++) {                                           \
                T av = a[i][p];                                                          \
                for (j = 0; j < FC_PORT_NR; j++)                                         \
                    acc[i][j] += av * B[j];                                              \
            }                                                                            \
            B += FC_PORT_NR;                                                             \
        }                                                                                \
        for (i = 0; i < FC_PORT_MR; i++)                                                 \
            for (j = 0; j < FC_PORT_NR; j++)                                             \
                C[i * ldc + j] = accumulate ? C[i * ldc + j] + acc[i][j] : acc[i][j];    \
    }

FC_PORTABLE_KIB(fc_kib_portable_f, float)
FC_PORTABLE_KIB(fc_kib_portable_d, double)
FC_PORTABLE_KIA(fc_kia_portable_f, float)
FC_PORTABLE_KIA(fc_kia_portable_d, double)

#define FC_S_ZERO 0
#define FC_S_LOAD(p) (*(p))
#define FC_S_STORE(p, v) (*(p) = (v))
#define FC_S_SET1(x) (x)
#define FC_S_FMA(a, b, c) ((c) + (a) * (b))
#define FC_S_ADD(a, b) ((a) + (b))
#define FC_S_HSUM(v) (v)
FC_HSUM4_EACH(fc_hsum4_portable_f, , float, float, FC_S_HSUM)
FC_HSUM4_EACH(fc_hsum4_portable_d, , double, double, FC_S_HSUM)
FC_KNR(fc_knr_portable_f, , float, float, FC_S_ZERO, FC_S_LOAD, FC_S_FMA,
       fc_hsum4_portable_f, 4, 1)
FC_KNR(fc_knr_portable_d, , double, double, FC_S_ZERO, FC_S_LOAD, FC_S_FMA,
       fc_hsum4_portable_d, 4, 1)
FC_KPX(fc_kpx_portable_f, , float, float, FC_S_ZERO, FC_S_LOAD, FC_S_STORE, FC_S_SET1,
       FC_S_FMA, FC_S_ADD, 4, 8, 1)
FC_KPX(fc_kpx_portable_d, , double, double, FC_S_ZERO, FC_S_LOAD, FC_S_STORE, FC_S_SET1,
       FC_S_FMA, FC_S_ADD, 4, 8, 1)
#define FC_S_XLOAD(p, n) ((void)(n), *(p))
#define FC_S_QFMA(a, b, c, n) FC_S_FMA(a, b, c)
FC_WTS_BUFFER(fc_wts_portable_f, , float, float, FC_S_STORE, 1)
FC_WTS_BUFFER(fc_wts_portable_d, , double, double, FC_S_STORE, 1)
FC_WIDE_SET(fc_wide_portable_f, , float, float, FC_S_ZERO, FC_S_LOAD, FC_S_XLOAD,
            FC_S_SET1, FC_S_FMA, FC_S_QFMA, FC_S_ADD, FC_S_HSUM, fc_wts_portable_f,
            FC_NO_ACTV, FC_NO_POOLQ, 4, 4, 4, 2, 2, 2)
FC_WIDE_SET(fc_wide_portable_d, , double, double, FC_S_ZERO, FC_S_LOAD, FC_S_XLOAD,
            FC_S_SET1, FC_S_FMA, FC_S_QFMA, FC_S_ADD, FC_S_HSUM, fc_wts_portable_d,
            FC_NO_ACTV, FC_NO_POOLQ, 4, 4, 4, 2, 2, 2)

#if FC_X86_DISPATCH

/* ------------------------------------------------------------------ AVX-512 ----- */

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

FC_AVX512_KERNEL(fc_kernel_avx512_f, float, ps, __m512, 16)
FC_AVX512_KERNEL(fc_kernel_avx512_d, double, pd, __m512d, 8)

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

FC_AVX512_KIB(fc_kib_avx512_f, float, ps, __m512, 16)
FC_AVX512_KIB(fc_kib_avx512_d, double, pd, __m512d, 8)
FC_AVX512_KIA(fc_kia_avx512_f, float, ps, __m512, 16)
FC_AVX512_KIA(fc_kia_avx512_d, double, pd, __m512d, 8)

/* 12 pixels x 32 channels (float) / 12 x 16 (double): 24 accumulators, 12 broadcasts
 * and 2 loads per 24 FMAs. */
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
FC_KNR(fc_knr_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_fmadd_ps, fc_hsum4_avx512_f, 6, 16)
FC_KNR(fc_knr_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
       _mm512_loadu_pd, _mm512_fmadd_pd, fc_hsum4_avx512_d, 6, 8)
FC_KPX(fc_kpx_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
       12, 2, 16)
FC_KPX(fc_kpx_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
       _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
       12, 2, 8)
/* Half width: 12 pixels x 16 channels (float) / 12 x 8 (double), 12 broadcasts and one
 * load per 12 FMAs (LeNet-5's C3 has 16 output channels). */
FC_KPX(fc_kpx1_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
       12, 1, 16)
FC_KPX(fc_kpx1_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
       _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
       12, 1, 8)

/* The wide forward's float store, 4 channels at a time: a 4 x 4 transpose within each
 * 128-bit lane (u_i's lane L holds pixel 4 L + i's 4 channels), one 128-bit store per
 * pixel; 2 channels: pixel pairs, 64 bits a pixel.  EXT(v, L): 128-bit lane L of v.
 * (Measured, LeNet-5 at batch 128: the output pass's gather from a planar tile cost
 * C1's forward 0.3 ms of 0.58.) */
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

/* Wide kernels: 8/8/5/4/3 rows for 1/2/4/6/8 channels (at most 24 accumulators); the
 * weight gradient 4 channels x up to 5 columns.  The multiply-adds of a row's last
 * vector are masked to its nl lanes (the accumulator's other lanes are kept: masking
 * the loads instead costs an instruction on the multiply-add ports per load; measured,
 * LeNet-5's C1 weight gradient at batch 128 0.39 -> 0.375 ms). */
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
 * (Measured, LeNet-5's C1 + S2 at batch 128, forward with tanh and the pool, ms: in
 * training (the activations kept) 0.47 -> 0.29, in inference 0.43 -> 0.22, against the
 * pass after the kernels, fc_act_pool_image.) */
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
/* fc_kwo_f for AVX-512: one vector of 16 channels at a time (a masked last one), the
 * column transforms first (held in registers), then the rows.  fc_max4 as vectors: w
 * replaces best where best is a number and !(w <= best).  (Against the vectorised
 * loops, whose entry addresses and edge tests spilled to the stack.  F(4x4), in-process
 * interleaved medians at batch 128, ms, forward / forward + ReLU + max pool / input
 * gradient: CIFAR-10's c2 3.85 -> 3.74 / 3.58 -> 3.49 / 3.82 -> 3.64, c3 1.76 -> 1.75 /
 * 1.61 -> 1.57 / 1.71 -> 1.67, c4 2.95 -> 2.92 / 1.57 -> 1.54 / 3.02 -> 2.97: the
 * products and the stores of y bound the rest.  F(5x5)'s loop was slower still.) */
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
 * pixel-row tile, fc_wg_forward_block's scratch), so that the entry addresses are
 * displacements of one register (as variables GCC kept them all on the stack). */
FC_TARGET_AVX512 static void fc_wgo_avx512_f(int tile, const float *m, ptrdiff_t ms,
                                             const float *bias, float *y, ptrdiff_t rs,
                                             ptrdiff_t cs, ptrdiff_t cols, int nrow,
                                             int ncol, int relu, int pool)
{
    if (tile == 5) {
        if (ms == 12 * 32 && nrow == 5 && ncol == 5)
            fc_wgo512_body_f(5, m, 12 * 32, bias, y, rs, cs, cols, 5, 5, relu, 0);
        else
            fc_wgo512_body_f(5, m, ms, bias, y, rs, cs, cols, nrow, ncol, relu, 0);
    } else {
        const int whole = pool ? nrow == 2 && ncol == 2 : nrow == 4 && ncol == 4;
        if (ms == 12 * 32 && whole)
            fc_wgo512_body_f(4, m, 12 * 32, bias, y, rs, cs, cols, 4, 4, relu, pool);
        else
            fc_wgo512_body_f(4, m, ms, bias, y, rs, cs, cols, nrow, ncol, relu, pool);
    }
}
FC_WIDE_SET(fc_wide_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
            _mm512_loadu_ps, FC_XLOAD512_F, _mm512_set1_ps, _mm512_fmadd_ps, FC_QFMA512_F,
            _mm512_add_ps, _mm512_reduce_add_ps, fc_wts_avx512_f, fc_act512_f,
            fc_poolq512_f, 8, 8, 5, 4, 3, 4)
FC_WIDE_SET(fc_wide_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
            _mm512_loadu_pd, FC_XLOAD512_D, _mm512_set1_pd, _mm512_fmadd_pd, FC_QFMA512_D,
            _mm512_add_pd, _mm512_reduce_add_pd, fc_wts_avx512_d, FC_NO_ACTV, FC_NO_POOLQ,
            8, 8, 5, 4, 3, 4)

/* --------------------------------------------------------------- AVX2 + FMA ----- */

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

FC_AVX2_KERNEL(fc_kernel_avx2_f, float, ps, __m256, 8)
FC_AVX2_KERNEL(fc_kernel_avx2_d, double, pd, __m256d, 4)

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

FC_AVX2_KIB(fc_kib_avx2_f, float, ps, __m256, 8)
FC_AVX2_KIB(fc_kib_avx2_d, double, pd, __m256d, 4)
FC_AVX2_KIA(fc_kia_avx2_f, float, ps, __m256, 8)
FC_AVX2_KIA(fc_kia_avx2_d, double, pd, __m256d, 4)

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
FC_KNR(fc_knr_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(), _mm256_loadu_ps,
       _mm256_fmadd_ps, fc_hsum4_avx2_f, 4, 8)
FC_KNR(fc_knr_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
       _mm256_loadu_pd, _mm256_fmadd_pd, fc_hsum4_avx2_d, 4, 4)
FC_KPX(fc_kpx_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
       _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
       6, 2, 8)
FC_KPX(fc_kpx_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
       _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
       6, 2, 4)
/* Half width: 12 pixels x one vector (12 accumulators of the 16 registers). */
FC_KPX(fc_kpx1_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
       _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
       12, 1, 8)
FC_KPX(fc_kpx1_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
       _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_add_pd,
       12, 1, 4)

/* Wide kernels: 6/4/2/2/1 rows for 1/2/4/6/8 channels; the weight gradient 2 x 5. */
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
FC_WIDE_SET(fc_wide_avx2_f, FC_TARGET_AVX2, float, __m256, _mm256_setzero_ps(),
            _mm256_loadu_ps, fc_xload256_f, _mm256_set1_ps, _mm256_fmadd_ps, FC_QFMA256_F,
            _mm256_add_ps, fc_hsum256_f, fc_wts_avx2_f, FC_NO_ACTV, FC_NO_POOLQ, 6, 4, 2,
            2, 1, 2)
FC_WIDE_SET(fc_wide_avx2_d, FC_TARGET_AVX2, double, __m256d, _mm256_setzero_pd(),
            _mm256_loadu_pd, fc_xload256_d, _mm256_set1_pd, _mm256_fmadd_pd, FC_QFMA256_D,
            _mm256_add_pd, fc_hsum256_d, fc_wts_avx2_d, FC_NO_ACTV, FC_NO_POOLQ, 6, 4, 2,
            2, 1, 2)

#endif /* FC_X86_DISPATCH */

/* ---------------------------------------------------------------- dispatch ----- */

static const fc_isa fc_isa_portable = {0, "portable", FC_PORT_MR, FC_PORT_NR, FC_PORT_MR,
                                       FC_PORT_NR, fc_kernel_portable_f,
                                       fc_kernel_portable_d, fc_kib_portable_f,
                                       fc_kib_portable_d, fc_kia_portable_f,
                                       fc_kia_portable_d, 4, 8, 4, 8, fc_kpx_portable_f,
                                       fc_kpx_portable_d, 4, 8, 4, 8, fc_kpx_portable_f,
                                       fc_kpx_portable_d, 4, 1, 1, fc_knr_portable_f,
                                       fc_knr_portable_d, {4, 4, 4, 2, 2}, 2, 0,
                                       FC_WIDE_KWF(fc_wide_portable_f),
                                       FC_WIDE_KWF(fc_wide_portable_d),
                                       FC_WIDE_KWG(fc_wide_portable_f),
                                       FC_WIDE_KWG(fc_wide_portable_d), NULL};
#if FC_X86_DISPATCH
static const fc_isa fc_isa_avx2 = {1, "avx2", 6, 16, 6, 8, fc_kernel_avx2_f,
                                   fc_kernel_avx2_d, fc_kib_avx2_f, fc_kib_avx2_d,
                                   fc_kia_avx2_f, fc_kia_avx2_d, 6, 16, 6, 8,
                                   fc_kpx_avx2_f, fc_kpx_avx2_d, 12, 8, 12, 4,
                                   fc_kpx1_avx2_f, fc_kpx1_avx2_d, 4, 8, 4, fc_knr_avx2_f,
                                   fc_knr_avx2_d, {6, 4, 2, 2, 1}, 2, 0,
                                   FC_WIDE_KWF(fc_wide_avx2_f), FC_WIDE_KWF(fc_wide_avx2_d),
                                   FC_WIDE_KWG(fc_wide_avx2_f), FC_WIDE_KWG(fc_wide_avx2_d),
                                   NULL};
static const fc_isa fc_isa_avx512 = {2, "avx512", 8, 32, 8, 16, fc_kernel_avx512_f,
                                     fc_kernel_avx512_d, fc_kib_avx512_f, fc_kib_avx512_d,
                                     fc_kia_avx512_f, fc_kia_avx512_d, 12, 32, 12, 16,
                                     fc_kpx_avx512_f, fc_kpx_avx512_d, 12, 16, 12, 8,
                                     fc_kpx1_avx512_f, fc_kpx1_avx512_d, 6, 16, 8,
                                     fc_knr_avx512_f, fc_knr_avx512_d, {8, 8, 5, 4, 3}, 4, 1,
                                     FC_WIDE_KWF(fc_wide_avx512_f),
                                     FC_WIDE_KWF(fc_wide_avx512_d),
                                     FC_WIDE_KWG(fc_wide_avx512_f),
                                     FC_WIDE_KWG(fc_wide_avx512_d), fc_wgo_avx512_f};
#endif

/* The best ISA this CPU supports (ignoring FASTCONV_DISABLE_SIMD). */
static const fc_isa *fc_best_isa(void)
{
#if FC_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return &fc_isa_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &fc_isa_avx2;
#endif
    return &fc_isa_portable;
}

/* ISA by name ("portable", "avx2", "avx512"); NULL when unknown or unsupported here. */
static const fc_isa *fc_isa_by_name(const char *name)
{
    const fc_isa *best = fc_best_isa();
    if (strcmp(name, "portable") == 0)
        return &fc_isa_portable;
#if FC_X86_DISPATCH
    if (strcmp(name, "avx2") == 0 && best->id >= 1)
        return &fc_isa_avx2;
    if (strcmp(name, "avx512") == 0 && best->id >= 2)
        return &fc_isa_avx512;
#endif
    (void)best;
    return NULL;
}

/* The default: the best supported ISA unless FASTCONV_DISABLE_SIMD is set to 1/true. */
static const fc_isa *fc_default_isa(void)
{
    const char *v = getenv("FASTCONV_DISABLE_SIMD");
    if (v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 ||
                      strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
                      strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0))
        return &fc_isa_portable;
    return fc_best_isa();
}

#endif
