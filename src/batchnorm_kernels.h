/* The per-channel sums of BatchNormalization over channels_last rows (src/_batchnorm.pyx
 * runs them on each work item's rows).
 *
 * rows x C values, channel c at column c.  For each channel, in row order:
 *   grad 0:  s1 += d, s2 += d * d,  d = x - shift[c] (in float64)
 *   grad 1:  s1 += v, s2 += v * d,  v = g through the activation act of output y
 *            (0 none, 1 relu: g where y > 0, 2 relu6: g where 0 < y < 6; else +0);
 *            with the activation's affine map (as, at): y's mask taken from
 *            x * as[c] + at[c], the value the forward activated (so y is not read)
 * Each channel's sums take the even rows and the odd rows apart (two chains of
 * additions instead of one: a row costs no more than an addition's latency), then add
 * the two: the same order for every channel, on every ISA, so the result depends on
 * the shapes only.  Channels go in blocks of W whose sums stay in registers over all
 * the rows (the rows are C apart, which the hardware prefetchers follow), instead of
 * loading and storing each channel's sums on every row: W = 16 on AVX-512, 8 on AVX2,
 * 4 on the SSE2 baseline, so that the block's 4 W sums fill half the register file
 * (more spill to the stack: a store and a load per row, 4x slower on AVX2 with 16
 * channels); the channels past the last whole block in scalar code.  The build is picked
 * at import (src/_batchnorm.pyx, fc_bn_use; FASTCONV_DISABLE_SIMD=1: the scalar code).
 */
#ifndef FASTCONV_BATCHNORM_KERNELS_H
#define FASTCONV_BATCHNORM_KERNELS_H

#include <stddef.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 &&                          \
    (defined(__x86_64__) || defined(__i386__))
#define FC_BN_X86 1
#endif

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

/* The scalar block: n channels from c0 (the channels past the whole vector blocks, and
 * every channel where GCC's vector types are missing), the sums added into p1, p2. */
#define FC_BN_BLOCK(T, n)                                                               \
    do {                                                                                \
        double e1[16], e2[16], o1[16], o2[16];                                          \
        ptrdiff_t r, j, c1;                                                             \
        for (c1 = c0; c1 < c0 + (n); c1 += 16) {                                        \
            const ptrdiff_t m = c0 + (n) - c1 < 16 ? c0 + (n) - c1 : 16;               \
            for (j = 0; j < m; j++)                                                     \
                e1[j] = e2[j] = o1[j] = o2[j] = 0;                                      \
            for (r = 0; r < rows; r++) {                                                \
                const T *xr = x + r * C + c1, *gr = g + r * C + c1, *yr = y + r * C + c1; \
                double *s1 = (r & 1) ? o1 : e1, *s2 = (r & 1) ? o2 : e2;                \
                for (j = 0; j < m; j++) {                                               \
                    const double d = (double)xr[j] - shift[c1 + j];                     \
                    if (!grad) {                                                        \
                        s1[j] += d;                                                     \
                        s2[j] += d * d;                                                 \
                    } else {                                                            \
                        const T yv = (act && as) ? xr[j] * as[c1 + j] + at[c1 + j]      \
                                                 : yr[j];                               \
                        const int keep = act == 0 || (yv > 0 && (act == 1 || yv < 6));  \
                        const double v = (double)FC_BN_KEEP(T, gr[j], keep);            \
                        s1[j] += v;                                                     \
                        s2[j] += v * d;                                                 \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (j = 0; j < m; j++) {                                                   \
                p1[c1 + j] += e1[j] + o1[j];                                            \
                p2[c1 + j] += e2[j] + o2[j];                                            \
            }                                                                           \
        }                                                                               \
    } while (0)

/* The vector blocks, in GCC's vector types of NV lanes, NV doubles filling one
 * register of the build (a wider type would be lowered through the stack): a block of
 * W = 2 NV channels keeps its sums in 8 registers, the low and high halves of s1 and s2
 * for the even rows and for the odd rows. */
#if defined(FC_BN_X86)
#define FC_BN_VTYPES(NV)                                                                \
    typedef double fc_bn_d##NV __attribute__((vector_size(8 * NV)));                    \
    typedef float fc_bn_f##NV __attribute__((vector_size(4 * NV)));                     \
    typedef int fc_bn_i##NV __attribute__((vector_size(4 * NV)));                       \
    typedef long long fc_bn_l##NV __attribute__((vector_size(8 * NV)));
FC_BN_VTYPES(2)
FC_BN_VTYPES(4)
FC_BN_VTYPES(8)
FC_BN_VTYPES(16)

/* Vector v (type VT, mask type MT) kept where the activation's output yv passes its
 * gradient (act 1: yv > 0; act 2: 0 < yv < 6), else +0 (bits masked). */
#define FC_BN_MASKV(VT, MT, v, yv)                                                      \
    do {                                                                                \
        MT keep_ = (yv) > 0;                                                            \
        if (act == 2)                                                                   \
            keep_ &= (yv) < 6;                                                          \
        (v) = (VT)((MT)(v) & keep_);                                                    \
    } while (0)

/* NV values of row pointer p (channel j0 of the block) through the activation mask of
 * the matching y values (the forward's output yr, or x * as + at), in float64. */
#define FC_BN_LOADV(T, NV, VT, MT, OUT, p, j0)                                          \
    do {                                                                                \
        VT v_, y_;                                                                      \
        memcpy(&v_, (p) + (j0), sizeof v_);                                             \
        if (grad && act && (p) == gr) {                                                 \
            if (as) {                                                                   \
                VT x_;                                                                  \
                memcpy(&x_, xr + (j0), sizeof x_);                                      \
                y_ = x_ * asv[(j0) / NV] + atv[(j0) / NV];                              \
            } else {                                                                    \
                memcpy(&y_, yr + (j0), sizeof y_);                                      \
            }                                                                           \
            FC_BN_MASKV(VT, MT, v_, y_);                                                \
        }                                                                               \
        OUT = __builtin_convertvector(v_, fc_bn_d##NV);                                 \
    } while (0)

/* Row r's W values (channels c0 ..) added into the sums of one parity: S1 and S2 are
 * arrays of two vectors (the low and high halves). */
#define FC_BN_ROWV(T, NV, VT, MT, r, S1, S2)                                            \
    do {                                                                                \
        const T *xr = x + (r) * C + c0, *gr = g + (r) * C + c0, *yr = y + (r) * C + c0; \
        fc_bn_d##NV d0, d1, v0, v1;                                                     \
        (void)yr;                                                                       \
        FC_BN_LOADV(T, NV, VT, MT, d0, xr, 0);                                          \
        FC_BN_LOADV(T, NV, VT, MT, d1, xr, NV);                                         \
        d0 -= sh[0];                                                                    \
        d1 -= sh[1];                                                                    \
        if (!grad) {                                                                    \
            S1##0 += d0;                                                                \
            S1##1 += d1;                                                                \
            S2##0 += d0 * d0;                                                           \
            S2##1 += d1 * d1;                                                           \
        } else {                                                                        \
            FC_BN_LOADV(T, NV, VT, MT, v0, gr, 0);                                      \
            FC_BN_LOADV(T, NV, VT, MT, v1, gr, NV);                                     \
            S1##0 += v0;                                                                \
            S1##1 += v1;                                                                \
            S2##0 += v0 * d0;                                                           \
            S2##1 += v1 * d1;                                                           \
        }                                                                               \
    } while (0)

/* Sums of rows x C values of type T in blocks of 2 NV channels (VT, MT: T's vector
 * and mask types of NV lanes), the rest in FC_BN_BLOCK. */
#define FC_BN_SUMS_V(T, NV, VT, MT, NAME, TARGET)                                       \
    TARGET static void NAME(const T *x, const T *g, const T *y, const T *as,           \
                            const T *at, const double *shift, ptrdiff_t rows,            \
                            ptrdiff_t C, int grad, int act, double *p1, double *p2)     \
    {                                                                                   \
        ptrdiff_t c0 = 0;                                                               \
        for (; c0 + 2 * NV <= C; c0 += 2 * NV) {                                        \
            fc_bn_d##NV sh[2], e10 = {0}, e11 = {0}, e20 = {0}, e21 = {0};              \
            fc_bn_d##NV o10 = {0}, o11 = {0}, o20 = {0}, o21 = {0};                     \
            VT asv[2] = {{0}}, atv[2] = {{0}};                                          \
            double out[4][NV];                                                          \
            ptrdiff_t r, j;                                                             \
            memcpy(sh, shift + c0, sizeof sh);                                          \
            if (as) {                                                                   \
                memcpy(asv, as + c0, sizeof asv);                                       \
                memcpy(atv, at + c0, sizeof atv);                                       \
            }                                                                           \
            for (r = 0; r + 2 <= rows; r += 2) {                                        \
                FC_BN_ROWV(T, NV, VT, MT, r, e1, e2);                                   \
                FC_BN_ROWV(T, NV, VT, MT, r + 1, o1, o2);                               \
            }                                                                           \
            if (r < rows)                                                               \
                FC_BN_ROWV(T, NV, VT, MT, r, e1, e2);                                   \
            e10 += o10;                                                                 \
            e11 += o11;                                                                 \
            e20 += o20;                                                                 \
            e21 += o21;                                                                 \
            memcpy(out[0], &e10, sizeof e10);                                           \
            memcpy(out[1], &e11, sizeof e11);                                           \
            memcpy(out[2], &e20, sizeof e20);                                           \
            memcpy(out[3], &e21, sizeof e21);                                           \
            for (j = 0; j < NV; j++) {                                                  \
                p1[c0 + j] += out[0][j];                                                \
                p1[c0 + NV + j] += out[1][j];                                           \
                p2[c0 + j] += out[2][j];                                                \
                p2[c0 + NV + j] += out[3][j];                                           \
            }                                                                           \
        }                                                                               \
        if (c0 < C)                                                                     \
            FC_BN_BLOCK(T, C - c0);                                                     \
    }
#endif

#define FC_BN_SUMS_SCALAR(T, NAME)                                                      \
    static void NAME(const T *x, const T *g, const T *y, const T *as, const T *at,      \
                     const double *shift, ptrdiff_t rows, ptrdiff_t C, int grad,        \
                     int act, double *p1, double *p2)                                   \
    {                                                                                   \
        const ptrdiff_t c0 = 0;                                                         \
        FC_BN_BLOCK(T, C);                                                              \
    }

/* channels_first: the sums of one channel's run of n contiguous values (a row of the
 * (A, C, B) view), s += sum of v, t += sum of v * d, d = x - m, v = d (grad 0) or g
 * through act (y's mask, or that of x * as + at with affine).  Value k goes into partial
 * sum k mod 16; the 16 partials are added as a tree at the end (fc_bn_tree16): the same
 * bits on every build (the vector builds hold the partials in 16 / NV registers of NV
 * doubles). */
static inline double fc_bn_tree16(const double *p)
{
    /* p[j] + p[j + 8], then + the sums 4 apart, 2 apart, 1 apart: a chain of 4 additions,
     * not 15 (a run of 64 values is over before 15 would be). */
    double r[8];
    int j;
    for (j = 0; j < 8; j++)
        r[j] = p[j] + p[j + 8];
    for (j = 0; j < 4; j++)
        r[j] += r[j + 4];
    r[0] += r[2];
    r[1] += r[3];
    return r[0] + r[1];
}

/* Values k .. n - 1 of the run into the partial sums ps, pt, in scalar code. */
#define FC_BN_RUN_REST(T)                                                               \
    for (; k < n; k++) {                                                                \
        const double d = (double)x[k] - m;                                              \
        if (!grad) {                                                                    \
            ps[k & 15] += d;                                                            \
            pt[k & 15] += d * d;                                                        \
        } else {                                                                        \
            const T yv = affine ? x[k] * as + at : y[k];                                \
            const int keep = act == 0 || (yv > 0 && (act == 1 || yv < 6));              \
            const double v = (double)FC_BN_KEEP(T, g[k], keep);                         \
            ps[k & 15] += v;                                                            \
            pt[k & 15] += v * d;                                                        \
        }                                                                               \
    }

#define FC_BN_RUN_SCALAR(T, NAME)                                                       \
    static void NAME(const T *x, const T *g, const T *y, int affine, T as, T at,        \
                     double m, ptrdiff_t n, int grad, int act, double *s, double *t)    \
    {                                                                                   \
        double ps[16] = {0}, pt[16] = {0};                                              \
        ptrdiff_t k = 0;                                                                \
        FC_BN_RUN_REST(T);                                                              \
        *s += fc_bn_tree16(ps);                                                         \
        *t += fc_bn_tree16(pt);                                                         \
    }

#if defined(FC_BN_X86)
#define FC_BN_RUN_V(T, NV, VT, MT, NAME, TARGET)                                        \
    TARGET static void NAME(const T *x, const T *g, const T *y, int affine, T as, T at, \
                            double m, ptrdiff_t n, int grad, int act, double *s,        \
                            double *t)                                                  \
    {                                                                                   \
        enum { Q = 16 / NV };                                                           \
        fc_bn_d##NV vs[Q], vt[Q];                                                       \
        double ps[16], pt[16];                                                          \
        ptrdiff_t k, q;                                                                 \
        for (q = 0; q < Q; q++) {                                                       \
            vs[q] = (fc_bn_d##NV){0};                                                   \
            vt[q] = (fc_bn_d##NV){0};                                                   \
        }                                                                               \
        for (k = 0; k + 16 <= n; k += 16) {                                             \
            for (q = 0; q < Q; q++) {                                                   \
                VT xv, gv, yv;                                                          \
                fc_bn_d##NV d, v;                                                       \
                memcpy(&xv, x + k + q * NV, sizeof xv);                                 \
                d = __builtin_convertvector(xv, fc_bn_d##NV) - m;                       \
                if (!grad) {                                                            \
                    vs[q] += d;                                                         \
                    vt[q] += d * d;                                                     \
                    continue;                                                           \
                }                                                                       \
                memcpy(&gv, g + k + q * NV, sizeof gv);                                 \
                if (act) {                                                              \
                    if (affine)                                                         \
                        yv = xv * as + at;                                              \
                    else                                                                \
                        memcpy(&yv, y + k + q * NV, sizeof yv);                         \
                    FC_BN_MASKV(VT, MT, gv, yv);                                        \
                }                                                                       \
                v = __builtin_convertvector(gv, fc_bn_d##NV);                           \
                vs[q] += v;                                                             \
                vt[q] += v * d;                                                         \
            }                                                                           \
        }                                                                               \
        memcpy(ps, vs, sizeof ps);                                                      \
        memcpy(pt, vt, sizeof pt);                                                      \
        FC_BN_RUN_REST(T);                                                              \
        *s += fc_bn_tree16(ps);                                                         \
        *t += fc_bn_tree16(pt);                                                         \
    }
#endif

/* The elementwise passes over an (A, C, B) view (channels_last: B = 1), A rows of C B
 * values, the parameters per channel c:
 *   affine:   y = act(x * s[c] + t[c])                       (act 0 none, 1 relu, 2 relu6)
 *   backward: dx = (v * p[c] + (x - m[c]) * q[c]) + r[c],    v = g through the mask of
 *             the activation act of output y (or of x * as[c] + at[c] when as is set)
 * relu maps z <= 0 to +0 and keeps NaN; relu6 then maps z >= 6 to 6; the gradient
 * masks keep g where y > 0 (and y < 6), else +0.  Each value is rounded as the scalar
 * expression rounds it (no fused multiply-adds), so every build gives the same bits.
 * dx may be g itself: each vector is loaded before the one at the same place is
 * stored. */
static inline float fc_bn_act_float(float z, int act)
{
    z = z <= 0 ? 0.0f : z;
    return act == 2 && z >= 6 ? 6.0f : z;
}
static inline double fc_bn_act_double(double z, int act)
{
    z = z <= 0 ? 0.0 : z;
    return act == 2 && z >= 6 ? 6.0 : z;
}
#define FC_BN_ACT(T, z) (act ? fc_bn_act_##T((z), act) : (z))

/* Value k of the pass with (per-channel) parameters taken from index j: the scalar
 * form every build uses for what its vectors do not cover. */
#define FC_BN_AFF1(T, k, j) y[k] = FC_BN_ACT(T, x[k] * s[j] + t[j])
#define FC_BN_BWD1(T, k, j)                                                             \
    do {                                                                                \
        const T yv = as ? x[k] * as[j] + at[j] : y[k];                                  \
        const int keep = act == 0 || (yv > 0 && (act == 1 || yv < 6));                  \
        const T v = FC_BN_KEEP(T, g[k], keep);                                          \
        dx[k] = (v * p[j] + (x[k] - m[j]) * q[j]) + r[j];                               \
    } while (0)

/* The loops of one pass over the A rows of C B values: per value the scalar step
 * ONE(T, k, j) (k the value's index, j its channel's), and where the build has vectors
 * the step VEC(k, j, along) of L values from k, then VEC2 of L2 < L values for what is
 * left (along 1: channels_last, channels j ..; along 0: a channels_first run of channel
 * j).  L 1 and FC_BN_NOVEC: the scalar build. */
#define FC_BN_LOOP(T, L, VEC, L2, VEC2, ONE)                                            \
    do {                                                                                \
        ptrdiff_t a_, c_, k_;                                                           \
        for (a_ = 0; a_ < A; a_++) {                                                    \
            if (B == 1) {                                                               \
                const ptrdiff_t o_ = a_ * C;                                            \
                for (c_ = 0; L > 1 && c_ + L <= C; c_ += L)                             \
                    VEC(o_ + c_, c_, 1);                                                \
                for (; L2 > 1 && c_ + L2 <= C; c_ += L2)                                \
                    VEC2(o_ + c_, c_, 1);                                               \
                for (; c_ < C; c_++)                                                    \
                    ONE(T, o_ + c_, c_);                                                \
                continue;                                                               \
            }                                                                           \
            for (c_ = 0; c_ < C; c_++) {                                                \
                const ptrdiff_t o_ = (a_ * C + c_) * B;                                 \
                for (k_ = 0; L > 1 && k_ + L <= B; k_ += L)                             \
                    VEC(o_ + k_, c_, 0);                                                \
                for (; L2 > 1 && k_ + L2 <= B; k_ += L2)                                \
                    VEC2(o_ + k_, c_, 0);                                               \
                for (; k_ < B; k_++)                                                    \
                    ONE(T, o_ + k_, c_);                                                \
            }                                                                           \
        }                                                                               \
    } while (0)
#define FC_BN_NOVEC(k, j, along) ((void)0)

/* The two passes of one build, AFF and BWD over T, with the vector steps (AFFV, BWDV)
 * of L lanes and (AFFV2, BWDV2) of L2. */
#define FC_BN_ELEM(T, L, AFFV, BWDV, L2, AFFV2, BWDV2, AFF, BWD, TARGET)                \
    TARGET static void AFF(const T *x, const T *s, const T *t, T *y, ptrdiff_t A,      \
                           ptrdiff_t C, ptrdiff_t B, int act)                           \
    {                                                                                   \
        FC_BN_LOOP(T, L, AFFV, L2, AFFV2, FC_BN_AFF1);                                  \
    }                                                                                   \
    TARGET static void BWD(const T *g, const T *y, const T *x, const T *m, const T *p, \
                           const T *q, const T *r, T *dx, ptrdiff_t A, ptrdiff_t C,     \
                           ptrdiff_t B, int act, const T *as, const T *at)              \
    {                                                                                   \
        FC_BN_LOOP(T, L, BWDV, L2, BWDV2, FC_BN_BWD1);                                  \
    }

#if defined(FC_BN_X86)
/* dst (a vector VT) = the parameter arr's values from channel j (along), or arr[j] in
 * every lane (arr[j] - 0 in each lane is arr[j] exactly, -0.0 and NaN included). */
#define FC_BN_PARAM(VT, dst, arr, j, along)                                             \
    VT dst;                                                                             \
    if (along)                                                                          \
        memcpy(&dst, (arr) + (j), sizeof dst);                                          \
    else                                                                                \
        dst = (arr)[j] - (VT){0};

/* The vector steps of the two passes: the scalar steps' expressions on VT's lanes. */
#define FC_BN_AFFV(VT, MT, k, j, along)                                                 \
    do {                                                                                \
        FC_BN_PARAM(VT, sv_, s, j, along)                                               \
        FC_BN_PARAM(VT, tv_, t, j, along)                                               \
        VT v_;                                                                          \
        memcpy(&v_, x + (k), sizeof v_);                                                \
        v_ = v_ * sv_ + tv_;                                                            \
        if (act) {                                                                      \
            v_ = (VT)((MT)v_ & ~(v_ <= 0));                                             \
            if (act == 2) {                                                             \
                const MT hi_ = v_ >= 6;                                                 \
                const VT six_ = (VT){0} + 6;                                            \
                v_ = (VT)(((MT)v_ & ~hi_) | ((MT)six_ & hi_));                          \
            }                                                                           \
        }                                                                               \
        memcpy(y + (k), &v_, sizeof v_);                                                \
    } while (0)
#define FC_BN_BWDV(VT, MT, k, j, along)                                                 \
    do {                                                                                \
        FC_BN_PARAM(VT, mv_, m, j, along)                                               \
        FC_BN_PARAM(VT, pv_, p, j, along)                                               \
        FC_BN_PARAM(VT, qv_, q, j, along)                                               \
        FC_BN_PARAM(VT, rv_, r, j, along)                                               \
        VT g_, x_, y_;                                                                  \
        memcpy(&g_, g + (k), sizeof g_);                                                \
        memcpy(&x_, x + (k), sizeof x_);                                                \
        if (act) {                                                                      \
            if (as) {                                                                   \
                FC_BN_PARAM(VT, av_, as, j, along)                                          \
                FC_BN_PARAM(VT, bv_, at, j, along)                                          \
                y_ = x_ * av_ + bv_;                                                    \
            } else {                                                                    \
                memcpy(&y_, y + (k), sizeof y_);                                        \
            }                                                                           \
            FC_BN_MASKV(VT, MT, g_, y_);                                                \
        }                                                                               \
        g_ = (g_ * pv_ + (x_ - mv_) * qv_) + rv_;                                       \
        memcpy(dx + (k), &g_, sizeof g_);                                               \
    } while (0)
#endif

typedef void (*fc_bn_run_f)(const float *, const float *, const float *, int, float,
                            float, double, ptrdiff_t, int, int, double *, double *);
typedef void (*fc_bn_run_d)(const double *, const double *, const double *, int, double,
                            double, double, ptrdiff_t, int, int, double *, double *);

typedef void (*fc_bn_sums_f)(const float *, const float *, const float *, const float *,
                             const float *, const double *, ptrdiff_t, ptrdiff_t, int,
                             int, double *, double *);
typedef void (*fc_bn_sums_d)(const double *, const double *, const double *,
                             const double *, const double *, const double *, ptrdiff_t,
                             ptrdiff_t, int, int, double *, double *);

/* No fused multiply-adds: every build, and every case (with or without an activation),
 * rounds each product and sum alike. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
FC_BN_SUMS_SCALAR(float, fc_bn_sums_scalar_f)
FC_BN_SUMS_SCALAR(double, fc_bn_sums_scalar_d)
FC_BN_RUN_SCALAR(float, fc_bn_run_scalar_f)
FC_BN_RUN_SCALAR(double, fc_bn_run_scalar_d)
FC_BN_ELEM(float, 1, FC_BN_NOVEC, FC_BN_NOVEC, 1, FC_BN_NOVEC, FC_BN_NOVEC,
           fc_bn_affine_scalar_f, fc_bn_backward_scalar_f, )
FC_BN_ELEM(double, 1, FC_BN_NOVEC, FC_BN_NOVEC, 1, FC_BN_NOVEC, FC_BN_NOVEC,
           fc_bn_affine_scalar_d, fc_bn_backward_scalar_d, )
#if defined(FC_BN_X86)
/* One vector build: both kinds of sums in both dtypes, NV doubles a register. */
#define FC_BN_BUILD(NV, ISA, TARGET)                                                    \
    FC_BN_SUMS_V(float, NV, fc_bn_f##NV, fc_bn_i##NV, fc_bn_sums_##ISA##_f, TARGET)      \
    FC_BN_SUMS_V(double, NV, fc_bn_d##NV, fc_bn_l##NV, fc_bn_sums_##ISA##_d, TARGET)     \
    FC_BN_RUN_V(float, NV, fc_bn_f##NV, fc_bn_i##NV, fc_bn_run_##ISA##_f, TARGET)        \
    FC_BN_RUN_V(double, NV, fc_bn_d##NV, fc_bn_l##NV, fc_bn_run_##ISA##_d, TARGET)      \
    FC_BN_ELEM(float, 2 * NV, FC_BN_AFFV_F##NV, FC_BN_BWDV_F##NV, 4, FC_BN_AFFV_F2,      \
               FC_BN_BWDV_F2, fc_bn_affine_##ISA##_f, fc_bn_backward_##ISA##_f, TARGET)   \
    FC_BN_ELEM(double, NV, FC_BN_AFFV_D##NV, FC_BN_BWDV_D##NV, 2, FC_BN_AFFV_D1,          \
               FC_BN_BWDV_D1, fc_bn_affine_##ISA##_d, fc_bn_backward_##ISA##_d, TARGET)
/* The elementwise steps of each width (named by NV, the doubles a register holds): a
 * register of floats (2 NV) or of doubles (NV); F2 and D1 the 16-byte steps of the
 * tails. */
#define FC_BN_AFFV_F8(k, j, al) FC_BN_AFFV(fc_bn_f16, fc_bn_i16, k, j, al)
#define FC_BN_BWDV_F8(k, j, al) FC_BN_BWDV(fc_bn_f16, fc_bn_i16, k, j, al)
#define FC_BN_AFFV_D8(k, j, al) FC_BN_AFFV(fc_bn_d8, fc_bn_l8, k, j, al)
#define FC_BN_BWDV_D8(k, j, al) FC_BN_BWDV(fc_bn_d8, fc_bn_l8, k, j, al)
#define FC_BN_AFFV_F4(k, j, al) FC_BN_AFFV(fc_bn_f8, fc_bn_i8, k, j, al)
#define FC_BN_BWDV_F4(k, j, al) FC_BN_BWDV(fc_bn_f8, fc_bn_i8, k, j, al)
#define FC_BN_AFFV_D4(k, j, al) FC_BN_AFFV(fc_bn_d4, fc_bn_l4, k, j, al)
#define FC_BN_BWDV_D4(k, j, al) FC_BN_BWDV(fc_bn_d4, fc_bn_l4, k, j, al)
#define FC_BN_AFFV_F2(k, j, al) FC_BN_AFFV(fc_bn_f4, fc_bn_i4, k, j, al)
#define FC_BN_BWDV_F2(k, j, al) FC_BN_BWDV(fc_bn_f4, fc_bn_i4, k, j, al)
#define FC_BN_AFFV_D1(k, j, al) FC_BN_AFFV(fc_bn_d2, fc_bn_l2, k, j, al)
#define FC_BN_BWDV_D1(k, j, al) FC_BN_BWDV(fc_bn_d2, fc_bn_l2, k, j, al)
FC_BN_BUILD(8, avx512, __attribute__((target("avx512f"))))
FC_BN_BUILD(4, avx2, __attribute__((target("avx2"))))
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* The build in use (fc_bn_use): the scalar code until one is picked. */
static fc_bn_sums_f fc_bn_sums_last_f = fc_bn_sums_scalar_f;
static fc_bn_sums_d fc_bn_sums_last_d = fc_bn_sums_scalar_d;
static fc_bn_run_f fc_bn_run_sums_f = fc_bn_run_scalar_f;
static fc_bn_run_d fc_bn_run_sums_d = fc_bn_run_scalar_d;
typedef void (*fc_bn_affine_f)(const float *, const float *, const float *, float *,
                               ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
typedef void (*fc_bn_affine_d)(const double *, const double *, const double *, double *,
                               ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
typedef void (*fc_bn_backward_f)(const float *, const float *, const float *,
                                 const float *, const float *, const float *,
                                 const float *, float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                                 int, const float *, const float *);
typedef void (*fc_bn_backward_d)(const double *, const double *, const double *,
                                 const double *, const double *, const double *,
                                 const double *, double *, ptrdiff_t, ptrdiff_t,
                                 ptrdiff_t, int, const double *, const double *);
static fc_bn_affine_f fc_bn_affine_act_f = fc_bn_affine_scalar_f;
static fc_bn_affine_d fc_bn_affine_act_d = fc_bn_affine_scalar_d;
static fc_bn_backward_f fc_bn_backward_act_f = fc_bn_backward_scalar_f;
static fc_bn_backward_d fc_bn_backward_act_d = fc_bn_backward_scalar_d;

/* Selects the kernels' build: 2 AVX-512, 1 AVX2, 0 the scalar code (every build gives
 * the same bits).  Returns 0, or -1 (nothing changed) where this CPU or compiler lacks
 * the build. */
static int fc_bn_use(int build)
{
#define FC_BN_SET(ISA)                                                                  \
    do {                                                                                \
        fc_bn_sums_last_f = fc_bn_sums_##ISA##_f;                                       \
        fc_bn_sums_last_d = fc_bn_sums_##ISA##_d;                                       \
        fc_bn_run_sums_f = fc_bn_run_##ISA##_f;                                         \
        fc_bn_run_sums_d = fc_bn_run_##ISA##_d;                                         \
        fc_bn_affine_act_f = fc_bn_affine_##ISA##_f;                                    \
        fc_bn_affine_act_d = fc_bn_affine_##ISA##_d;                                    \
        fc_bn_backward_act_f = fc_bn_backward_##ISA##_f;                                \
        fc_bn_backward_act_d = fc_bn_backward_##ISA##_d;                                \
    } while (0)
    if (build == 0) {
        FC_BN_SET(scalar);
        return 0;
    }
#if defined(FC_BN_X86)
    __builtin_cpu_init();
    if (build == 2 && __builtin_cpu_supports("avx512f")) {
        FC_BN_SET(avx512);
        return 0;
    }
    if (build == 1 && __builtin_cpu_supports("avx2")) {
        FC_BN_SET(avx2);
        return 0;
    }
#endif
#undef FC_BN_SET
    return -1;
}

#endif
