/* The depthwise micro-kernels (groups == C_in; drivers/depthwise.h), one template
 * instantiated per ISA and dtype: FC_DW(SUF, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1,
 * FMA) defines fc_dwf_SUF, fc_dwr_SUF, fc_dwa_SUF, fc_dwd_SUF and fc_dwg_SUF, and the
 * table fc_dwk_SUF of the five.  VEC is the ISA's vector of VL elements of T (the
 * portable build: T itself, VL 1); FMA(a, b, c) = a * b + c.  Channel and row tails
 * past the last whole vector run as scalars, in an order fixed by the shapes.
 *
 *   fwd (channels_last, vectorised over channels), for p < np, c < C:
 *       y[p * ys + c] = act(bias[c] (or 0) + sum_t x[p * xs + xo[t] + c] * w[wo[t] + c])
 *       with act (0 none, 1 ReLU, 2 ReLU6: FC_RELU6) on the registers before the store,
 *       NaN and -0.0 kept as the pixel-row kernels' output pass keeps them
 *   rows (channels_first, vectorised over the output row), o < len:
 *       y[o] = b + sum_t wt[t] * x[xo[t] + o]
 *   axpy: y[o] += a * x[o], o < len
 *   dot: sum_r sum_o a[r * lda + o] * b[r * ldb + o], r < nr, o < len
 *   fwd3[sx - 1]: fwd where the taps are whole rows of three columns (kw 3, dilation
 *       1: xo[3 r + j] = xo[3 r] + j C) and xs = sx C: each row's three weight vectors
 *       stay in registers and each loaded input vector serves every pixel of a block
 *       whose window holds it (8 pixels: 10 loads for 24 multiply-adds at stride 1,
 *       17 at stride 2, where fwd loads two per multiply-add's pair and a weight);
 *       the same sums in the same order as fwd
 *   gw (channels_last weight gradient), c < C:
 *       part[wo[t] + c] += sum_p gy[p * gs + c] * x[p * xs + xo[t] + c]
 *   gw3: gw where the taps are at most three whole rows of three columns and xs = C
 *       (stride 1): each input column is loaded once for the three taps of its row
 *       that read it (with the last three pixels' gradients held: 4 loads per 9
 *       multiply-adds, where gw loads two per multiply-add); the same sums in the
 *       same order as gw                                                          */
#ifndef FASTCONV_UK_DEPTHWISE
#define FASTCONV_UK_DEPTHWISE

#include "common.h"

#define FC_DWK_TYPES(T, S)                                                               \
    typedef struct {                                                                     \
        void (*fwd)(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo, const T *x, \
                    ptrdiff_t xs, const T *w, const T *bias, T *y, ptrdiff_t ys,        \
                    ptrdiff_t np, ptrdiff_t C, int act);                                 \
        void (*rows)(ptrdiff_t nt, const ptrdiff_t *xo, const T *wt, const T *x, T *y,  \
                     ptrdiff_t len, T b);                                                \
        void (*axpy)(ptrdiff_t len, T a, const T *x, T *y);                              \
        T (*dot)(ptrdiff_t nr, ptrdiff_t len, const T *a, ptrdiff_t lda, const T *b,     \
                 ptrdiff_t ldb);                                                         \
        void (*gw)(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo, const T *x,  \
                   ptrdiff_t xs, const T *gy, ptrdiff_t gs, ptrdiff_t np, ptrdiff_t C,  \
                   T *part);                                                             \
        /* gw of three-column windows (kw 3, dilation 1) at stride 1, kh <= 3 */        \
        void (*gw3)(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo, const T *x, \
                    ptrdiff_t xs, const T *gy, ptrdiff_t gs, ptrdiff_t np, ptrdiff_t C, \
                    T *part);                                                            \
        /* fwd of three-column windows (kw 3, dilation 1) at stride 1 and 2 */          \
        void (*fwd3[2])(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo,         \
                        const T *x, ptrdiff_t xs, const T *w, const T *bias, T *y,      \
                        ptrdiff_t ys, ptrdiff_t np, ptrdiff_t C, int act);              \
    } fc_dwk_##S;

FC_DWK_TYPES(float, f)
FC_DWK_TYPES(double, d)

#define FC_DW(SUF, S, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)       \
    ATTR static void fc_dwf_##SUF(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo,\
                                  const T *x, ptrdiff_t xs, const T *w, const T *bias,  \
                                  T *y, ptrdiff_t ys, ptrdiff_t np, ptrdiff_t C,        \
                                  int act)                                               \
    {                                                                                    \
        ptrdiff_t p = 0, c, t;                                                           \
        for (; p + 4 <= np; p += 4) {                                                    \
            const T *xp = x + p * xs;                                                    \
            T *yp = y + p * ys;                                                          \
            for (c = 0; c + 2 * VL <= C; c += 2 * VL) {                                  \
                VEC a00, a01, a10, a11, a20, a21, a30, a31, w0, w1;                      \
                a00 = bias ? LOAD(bias + c) : ZERO;                                      \
                a01 = bias ? LOAD(bias + c + VL) : ZERO;                                 \
                a10 = a00; a11 = a01; a20 = a00; a21 = a01; a30 = a00; a31 = a01;        \
                for (t = 0; t < nt; t++) {                                               \
                    const T *s = xp + xo[t] + c;                                         \
                    w0 = LOAD(w + wo[t] + c);                                            \
                    w1 = LOAD(w + wo[t] + c + VL);                                       \
                    a00 = FMA(LOAD(s), w0, a00);                                         \
                    a01 = FMA(LOAD(s + VL), w1, a01);                                    \
                    a10 = FMA(LOAD(s + xs), w0, a10);                                    \
                    a11 = FMA(LOAD(s + xs + VL), w1, a11);                               \
                    a20 = FMA(LOAD(s + 2 * xs), w0, a20);                                \
                    a21 = FMA(LOAD(s + 2 * xs + VL), w1, a21);                           \
                    a30 = FMA(LOAD(s + 3 * xs), w0, a30);                                \
                    a31 = FMA(LOAD(s + 3 * xs + VL), w1, a31);                           \
                }                                                                        \
                if (act) {                                                               \
                    const VEC z = ZERO, six = SET1((T)6);                                \
                    a00 = FC_DW_ACTV(a00, act, z, six, MAXV, MINV);                      \
                    a01 = FC_DW_ACTV(a01, act, z, six, MAXV, MINV);                      \
                    a10 = FC_DW_ACTV(a10, act, z, six, MAXV, MINV);                      \
                    a11 = FC_DW_ACTV(a11, act, z, six, MAXV, MINV);                      \
                    a20 = FC_DW_ACTV(a20, act, z, six, MAXV, MINV);                      \
                    a21 = FC_DW_ACTV(a21, act, z, six, MAXV, MINV);                      \
                    a30 = FC_DW_ACTV(a30, act, z, six, MAXV, MINV);                      \
                    a31 = FC_DW_ACTV(a31, act, z, six, MAXV, MINV);                      \
                }                                                                        \
                STORE(yp + c, a00); STORE(yp + c + VL, a01);                             \
                STORE(yp + ys + c, a10); STORE(yp + ys + c + VL, a11);                   \
                STORE(yp + 2 * ys + c, a20); STORE(yp + 2 * ys + c + VL, a21);           \
                STORE(yp + 3 * ys + c, a30); STORE(yp + 3 * ys + c + VL, a31);           \
            }                                                                            \
            if (c + VL <= C) { /* a last single vector: the four pixels' sums */         \
                VEC a0 = bias ? LOAD(bias + c) : ZERO, a1 = a0, a2 = a0, a3 = a0;        \
                for (t = 0; t < nt; t++) {                                               \
                    const T *s = xp + xo[t] + c;                                         \
                    const VEC wv = LOAD(w + wo[t] + c);                                  \
                    a0 = FMA(LOAD(s), wv, a0);                                           \
                    a1 = FMA(LOAD(s + xs), wv, a1);                                      \
                    a2 = FMA(LOAD(s + 2 * xs), wv, a2);                                  \
                    a3 = FMA(LOAD(s + 3 * xs), wv, a3);                                  \
                }                                                                        \
                if (act) {                                                               \
                    const VEC z = ZERO, six = SET1((T)6);                                \
                    a0 = FC_DW_ACTV(a0, act, z, six, MAXV, MINV);                        \
                    a1 = FC_DW_ACTV(a1, act, z, six, MAXV, MINV);                        \
                    a2 = FC_DW_ACTV(a2, act, z, six, MAXV, MINV);                        \
                    a3 = FC_DW_ACTV(a3, act, z, six, MAXV, MINV);                        \
                }                                                                        \
                STORE(yp + c, a0); STORE(yp + ys + c, a1);                               \
                STORE(yp + 2 * ys + c, a2); STORE(yp + 3 * ys + c, a3);                  \
                c += VL;                                                                 \
            }                                                                            \
            if (c < C) /* the scalar channels, pixel by pixel */                         \
                fc_dwf1_##SUF(nt, xo, wo, xp, xs, w, bias, yp, ys, 4, C, c, act);        \
        }                                                                                \
        if (p < np)                                                                      \
            fc_dwf1_##SUF(nt, xo, wo, x + p * xs, xs, w, bias, y + p * ys, ys, np - p, C,\
                          0, act);                                                       \
    }                                                                                    \
                                                                                         \
    ATTR static void fc_dwr_##SUF(ptrdiff_t nt, const ptrdiff_t *xo, const T *wt,       \
                                  const T *x, T *y, ptrdiff_t len, T b)                 \
    {                                                                                    \
        ptrdiff_t o = 0, t;                                                              \
        for (; o + 4 * VL <= len; o += 4 * VL) {                                         \
            VEC a0 = SET1(b), a1 = a0, a2 = a0, a3 = a0, wv;                             \
            for (t = 0; t < nt; t++) {                                                   \
                const T *s = x + xo[t] + o;                                              \
                wv = SET1(wt[t]);                                                        \
                a0 = FMA(LOAD(s), wv, a0);                                               \
                a1 = FMA(LOAD(s + VL), wv, a1);                                          \
                a2 = FMA(LOAD(s + 2 * VL), wv, a2);                                      \
                a3 = FMA(LOAD(s + 3 * VL), wv, a3);                                      \
            }                                                                            \
            STORE(y + o, a0); STORE(y + o + VL, a1);                                     \
            STORE(y + o + 2 * VL, a2); STORE(y + o + 3 * VL, a3);                        \
        }                                                                                \
        for (; o + VL <= len; o += VL) {                                                 \
            VEC a0 = SET1(b);                                                            \
            for (t = 0; t < nt; t++)                                                     \
                a0 = FMA(LOAD(x + xo[t] + o), SET1(wt[t]), a0);                          \
            STORE(y + o, a0);                                                            \
        }                                                                                \
        for (; o < len; o++) {                                                           \
            T a = b;                                                                     \
            for (t = 0; t < nt; t++)                                                     \
                a += x[xo[t] + o] * wt[t];                                               \
            y[o] = a;                                                                    \
        }                                                                                \
    }                                                                                    \
                                                                                         \
    ATTR static void fc_dwa_##SUF(ptrdiff_t len, T a, const T *x, T *y)                 \
    {                                                                                    \
        ptrdiff_t o = 0;                                                                 \
        const VEC av = SET1(a);                                                          \
        for (; o + 2 * VL <= len; o += 2 * VL) {                                         \
            STORE(y + o, FMA(LOAD(x + o), av, LOAD(y + o)));                             \
            STORE(y + o + VL, FMA(LOAD(x + o + VL), av, LOAD(y + o + VL)));              \
        }                                                                                \
        for (; o + VL <= len; o += VL)                                                   \
            STORE(y + o, FMA(LOAD(x + o), av, LOAD(y + o)));                             \
        for (; o < len; o++)                                                             \
            y[o] += x[o] * a;                                                            \
    }                                                                                    \
                                                                                         \
    ATTR static T fc_dwd_##SUF(ptrdiff_t nr, ptrdiff_t len, const T *a, ptrdiff_t lda,  \
                               const T *b, ptrdiff_t ldb)                               \
    {                                                                                    \
        VEC s0 = ZERO, s1 = ZERO;                                                        \
        T lanes[2 * VL], tail = 0, total = 0;                                            \
        ptrdiff_t r, o, i;                                                               \
        for (r = 0; r < nr; r++) {                                                       \
            const T *ar = a + r * lda, *br = b + r * ldb;                                \
            for (o = 0; o + 2 * VL <= len; o += 2 * VL) {                                \
                s0 = FMA(LOAD(ar + o), LOAD(br + o), s0);                                \
                s1 = FMA(LOAD(ar + o + VL), LOAD(br + o + VL), s1);                      \
            }                                                                            \
            for (; o < len; o++)                                                         \
                tail += ar[o] * br[o];                                                   \
        }                                                                                \
        STORE(lanes, s0);                                                                \
        STORE(lanes + VL, s1);                                                           \
        for (i = 0; i < 2 * VL; i++)                                                     \
            total += lanes[i];                                                           \
        return total + tail;                                                             \
    }                                                                                    \
                                                                                         \
    ATTR static void fc_dwg_##SUF(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo,\
                                  const T *x, ptrdiff_t xs, const T *gy, ptrdiff_t gs,  \
                                  ptrdiff_t np, ptrdiff_t C, T *part)                   \
    {                                                                                    \
        ptrdiff_t c = 0, t, p;                                                           \
        for (; c + 4 * VL <= C; c += 4 * VL)                                             \
            for (t = 0; t < nt; t++) {                                                   \
                VEC a0 = ZERO, a1 = ZERO, a2 = ZERO, a3 = ZERO;                          \
                const T *s = x + xo[t] + c, *g = gy + c;                                 \
                T *dst = part + wo[t] + c;                                               \
                for (p = 0; p < np; p++, s += xs, g += gs) {                             \
                    a0 = FMA(LOAD(g), LOAD(s), a0);                                      \
                    a1 = FMA(LOAD(g + VL), LOAD(s + VL), a1);                            \
                    a2 = FMA(LOAD(g + 2 * VL), LOAD(s + 2 * VL), a2);                    \
                    a3 = FMA(LOAD(g + 3 * VL), LOAD(s + 3 * VL), a3);                    \
                }                                                                        \
                STORE(dst, FMA(a0, SET1((T)1), LOAD(dst)));                              \
                STORE(dst + VL, FMA(a1, SET1((T)1), LOAD(dst + VL)));                    \
                STORE(dst + 2 * VL, FMA(a2, SET1((T)1), LOAD(dst + 2 * VL)));            \
                STORE(dst + 3 * VL, FMA(a3, SET1((T)1), LOAD(dst + 3 * VL)));            \
            }                                                                            \
        for (; c + VL <= C; c += VL)                                                     \
            for (t = 0; t < nt; t++) {                                                   \
                VEC a0 = ZERO;                                                           \
                const T *s = x + xo[t] + c, *g = gy + c;                                 \
                for (p = 0; p < np; p++, s += xs, g += gs)                               \
                    a0 = FMA(LOAD(g), LOAD(s), a0);                                      \
                STORE(part + wo[t] + c, FMA(a0, SET1((T)1), LOAD(part + wo[t] + c)));    \
            }                                                                            \
        for (; c < C; c++)                                                               \
            for (t = 0; t < nt; t++) {                                                   \
                T a0 = 0;                                                                \
                for (p = 0; p < np; p++)                                                 \
                    a0 += gy[p * gs + c] * x[p * xs + xo[t] + c];                        \
                part[wo[t] + c] += a0;                                                   \
            }                                                                            \
    }


/* The output pass's activation on a vector (or scalar) v: act 1 ReLU, 2 ReLU6
 * (FC_RELU6), with MAXV(z, v) = z > v ? z : v and MINV(six, v) = six < v ? six : v (the
 * x86 max/min with that operand order): NaN and -0.0 pass through as in the pixel-row
 * kernels' fc_relu1 / fc_relu6_1. */
#define FC_DW_ACTV(v, act, z, six, MAXV, MINV)                                           \
    ((act) == 2 ? MINV(six, MAXV(z, v)) : MAXV(z, v))
#define FC_DW_SCALAR_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FC_DW_SCALAR_MIN(a, b) ((a) < (b) ? (a) : (b))

/* fwd's pixels one at a time from channel c0 on: blocks of four vectors (four sums in
 * flight: one vector's nine-tap chain alone waits on the multiply-add's latency), then
 * pairs, single vectors and scalars.  Each value's sum runs over the taps in order
 * whatever the block, so the bits do not depend on it. */
#define FC_DW1_BLOCK(NV, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)         \
    for (; c + (NV) * VL <= C; c += (NV) * VL) {                                         \
        VEC a[NV];                                                                       \
        int v;                                                                           \
        for (v = 0; v < (NV); v++)                                                       \
            a[v] = bias ? LOAD(bias + c + v * VL) : ZERO;                                \
        for (t = 0; t < nt; t++) {                                                       \
            const T *s = xp + xo[t] + c, *ws = w + wo[t] + c;                            \
            for (v = 0; v < (NV); v++)                                                   \
                a[v] = FMA(LOAD(s + v * VL), LOAD(ws + v * VL), a[v]);                   \
        }                                                                                \
        for (v = 0; v < (NV); v++) {                                                     \
            if (act)                                                                     \
                a[v] = FC_DW_ACTV(a[v], act, ZERO, SET1((T)6), MAXV, MINV);              \
            STORE(yp + c + v * VL, a[v]);                                                \
        }                                                                                \
    }

#define FC_DW1(SUF, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)       \
    ATTR static void fc_dwf1_##SUF(ptrdiff_t nt, const ptrdiff_t *xo,                    \
                                   const ptrdiff_t *wo, const T *x, ptrdiff_t xs,       \
                                   const T *w, const T *bias, T *y, ptrdiff_t ys,       \
                                   ptrdiff_t np, ptrdiff_t C, ptrdiff_t c0, int act)    \
    {                                                                                    \
        ptrdiff_t p, c, t;                                                               \
        for (p = 0; p < np; p++) {                                                       \
            const T *xp = x + p * xs;                                                    \
            T *yp = y + p * ys;                                                          \
            c = c0;                                                                      \
            FC_DW1_BLOCK(4, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
            FC_DW1_BLOCK(2, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
            FC_DW1_BLOCK(1, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
            for (; c < C; c++) {                                                         \
                T a0 = bias ? bias[c] : (T)0;                                            \
                for (t = 0; t < nt; t++)                                                 \
                    a0 += xp[xo[t] + c] * w[wo[t] + c];                                  \
                if (act)                                                                 \
                    a0 = FC_DW_ACTV(a0, act, (T)0, (T)6, FC_DW_SCALAR_MAX,               \
                                    FC_DW_SCALAR_MIN);                                   \
                yp[c] = a0;                                                              \
            }                                                                            \
        }                                                                                \
    }

/* fwd3's block of U pixels from pixel p, channels [0, C - C % VL): per row of taps,
 * input column q of the block (q < (U - 1) SX + 3) is loaded once and added to each
 * pixel u whose window holds it (q = u SX + j, weight j), so every pixel's sum still
 * runs over the taps in order (the conditions fold at compile time: U, SX constant). */
#define FC_DW3_BLOCK(U, SX, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)      \
    for (; p + (U) <= np; p += (U))                                                      \
        for (c = 0; c + VL <= C; c += VL) {                                              \
            VEC a[U];                                                                    \
            int u, q;                                                                    \
            for (u = 0; u < (U); u++)                                                    \
                a[u] = bias ? LOAD(bias + c) : ZERO;                                     \
            for (r = 0; r < nt; r += 3) {                                                \
                const T *xr = x + p * xs + xo[r] + c, *wr = w + wo[r] + c;              \
                const VEC w0 = LOAD(wr), w1 = LOAD(wr + C), w2 = LOAD(wr + 2 * C);      \
                _Pragma("GCC unroll 32")                                                 \
                for (q = 0; q < ((U) - 1) * (SX) + 3; q++) {                             \
                    VEC xv = LOAD(xr + q * C);                                           \
                    FC_DW_IN_REGISTER(xv);                                               \
                    if (q % (SX) == 0 && q / (SX) < (U))                                 \
                        a[q / (SX)] = FMA(xv, w0, a[q / (SX)]);                          \
                    if (q >= 1 && (q - 1) % (SX) == 0 && (q - 1) / (SX) < (U))           \
                        a[(q - 1) / (SX)] = FMA(xv, w1, a[(q - 1) / (SX)]);              \
                    if (q >= 2 && (q - 2) % (SX) == 0 && (q - 2) / (SX) < (U))           \
                        a[(q - 2) / (SX)] = FMA(xv, w2, a[(q - 2) / (SX)]);              \
                }                                                                        \
            }                                                                            \
            for (u = 0; u < (U); u++) {                                                  \
                if (act)                                                                 \
                    a[u] = FC_DW_ACTV(a[u], act, ZERO, SET1((T)6), MAXV, MINV);          \
                STORE(y + (p + u) * ys + c, a[u]);                                       \
            }                                                                            \
        }

/* Keeps a loaded vector in its register: without it GCC folds the load into each of
 * the (up to three) multiply-adds that use it, loading it again for each. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FC_DW_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FC_DW_IN_REGISTER(v) ((void)0)
#endif

#define FC_DW3(SUF, SX, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)    \
    ATTR static void fc_dw3f##SX##_##SUF(ptrdiff_t nt, const ptrdiff_t *xo,              \
                                         const ptrdiff_t *wo, const T *x, ptrdiff_t xs, \
                                         const T *w, const T *bias, T *y, ptrdiff_t ys, \
                                         ptrdiff_t np, ptrdiff_t C, int act)            \
    {                                                                                    \
        ptrdiff_t p = 0, c, r;                                                           \
        FC_DW3_BLOCK(8, SX, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
        FC_DW3_BLOCK(4, SX, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
        FC_DW3_BLOCK(2, SX, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
        FC_DW3_BLOCK(1, SX, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)        \
        if (C % VL) /* the scalar channels */                                            \
            fc_dwf1_##SUF(nt, xo, wo, x, xs, w, bias, y, ys, np, C, C - C % VL, act);   \
    }

/* gw3's input column q of tap row R (pointer XR, sums A0..A2 of its taps kj 0..2):
 * column q serves pixel q with kj 0 (gradient G0), q - 1 with kj 1 (G1), q - 2 with kj
 * 2 (G2); K0, K1, K2 say which of those pixels exist (constants at each use). */
#define FC_DW3G_COL(VEC, LOAD, FMA, XR, q, A0, A1, A2, K0, K1, K2)                      \
    do {                                                                                 \
        VEC xv_ = LOAD((XR) + (q) * C);                                                  \
        FC_DW_IN_REGISTER(xv_);                                                          \
        if (K0)                                                                          \
            A0 = FMA(g0, xv_, A0);                                                       \
        if (K1)                                                                          \
            A1 = FMA(g1, xv_, A1);                                                       \
        if (K2)                                                                          \
            A2 = FMA(g2, xv_, A2);                                                       \
    } while (0)
#define FC_DW3G_COLS(VEC, LOAD, FMA, q, K0, K1, K2)                                     \
    do {                                                                                 \
        FC_DW3G_COL(VEC, LOAD, FMA, x0, q, a00, a01, a02, K0, K1, K2);                   \
        if (nr > 1)                                                                      \
            FC_DW3G_COL(VEC, LOAD, FMA, x1, q, a10, a11, a12, K0, K1, K2);               \
        if (nr > 2)                                                                      \
            FC_DW3G_COL(VEC, LOAD, FMA, x2, q, a20, a21, a22, K0, K1, K2);               \
    } while (0)

#define FC_DW3G(SUF, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA)                    \
    ATTR static void fc_dw3g_##SUF(ptrdiff_t nt, const ptrdiff_t *xo, const ptrdiff_t *wo,\
                                   const T *x, ptrdiff_t xs, const T *gy, ptrdiff_t gs, \
                                   ptrdiff_t np, ptrdiff_t C, T *part)                  \
    {                                                                                    \
        const ptrdiff_t nr = nt / 3;                                                     \
        ptrdiff_t c = 0, q, r, j;                                                        \
        if (nt % 3 || nr < 1 || nr > 3 || np < 2 || xs != C) {                           \
            fc_dwg_##SUF(nt, xo, wo, x, xs, gy, gs, np, C, part);                        \
            return;                                                                      \
        }                                                                                \
        for (; c + VL <= C; c += VL) {                                                   \
            VEC a00 = ZERO, a01 = ZERO, a02 = ZERO, a10 = ZERO, a11 = ZERO, a12 = ZERO;  \
            VEC a20 = ZERO, a21 = ZERO, a22 = ZERO, g0, g1 = ZERO, g2 = ZERO;            \
            const T *x0 = x + xo[0] + c, *x1 = x + xo[nr > 1 ? 3 : 0] + c;             \
            const T *x2 = x + xo[nr > 2 ? 6 : 0] + c, *gp = gy + c;                     \
            g0 = LOAD(gp);                                   /* column 0: pixel 0 */     \
            FC_DW3G_COLS(VEC, LOAD, FMA, 0, 1, 0, 0);                                    \
            g1 = g0;                                         /* column 1 */              \
            g0 = LOAD(gp + gs);                                                          \
            FC_DW3G_COLS(VEC, LOAD, FMA, 1, 1, 1, 0);                                    \
            for (q = 2; q < np; q++) {                                                   \
                g2 = g1;                                                                 \
                g1 = g0;                                                                 \
                g0 = LOAD(gp + q * gs);                                                  \
                FC_DW3G_COLS(VEC, LOAD, FMA, q, 1, 1, 1);                                \
            }                                                                            \
            g2 = g1;                                         /* column np */             \
            g1 = g0;                                                                     \
            FC_DW3G_COLS(VEC, LOAD, FMA, np, 0, 1, 1);                                   \
            g2 = g1;                                         /* column np + 1 */         \
            FC_DW3G_COLS(VEC, LOAD, FMA, np + 1, 0, 0, 1);                               \
            {                                                                            \
                const VEC sums[3][3] = {{a00, a01, a02}, {a10, a11, a12},                \
                                        {a20, a21, a22}};                                \
                for (r = 0; r < nr; r++)                                                 \
                    for (j = 0; j < 3; j++) {                                            \
                        T *dst = part + wo[3 * r + j] + c;                               \
                        STORE(dst, FMA(sums[r][j], SET1((T)1), LOAD(dst)));              \
                    }                                                                    \
            }                                                                            \
        }                                                                                \
        if (c < C) /* the scalar channels */                                             \
            fc_dwg_##SUF(nt, xo, wo, x + c, xs, gy + c, gs, np, C - c, part + c);        \
    }

#define FC_DW_ALL(SUF, S, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)   \
    FC_DW1(SUF, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)              \
    FC_DW3(SUF, 1, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)           \
    FC_DW3(SUF, 2, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)           \
    FC_DW(SUF, S, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA, MAXV, MINV)            \
    FC_DW3G(SUF, ATTR, T, VEC, VL, ZERO, LOAD, STORE, SET1, FMA)                         \
    static const fc_dwk_##S fc_dwk_##SUF = {fc_dwf_##SUF, fc_dwr_##SUF, fc_dwa_##SUF,   \
                                            fc_dwd_##SUF, fc_dwg_##SUF, fc_dw3g_##SUF,  \
                                            {fc_dw3f1_##SUF, fc_dw3f2_##SUF}};

#define FC_DW_SCALAR_STORE(p, v) (*(p) = (v))
#define FC_DW_SCALAR_LOAD(p) (*(p))
#define FC_DW_SCALAR_SET1(x) (x)
#define FC_DW_SCALAR_FMA(a, b, c) ((c) + (a) * (b))

FC_DW_ALL(portable_f, f, , float, float, 1, 0, FC_DW_SCALAR_LOAD, FC_DW_SCALAR_STORE,
          FC_DW_SCALAR_SET1, FC_DW_SCALAR_FMA, FC_DW_SCALAR_MAX, FC_DW_SCALAR_MIN)
FC_DW_ALL(portable_d, d, , double, double, 1, 0, FC_DW_SCALAR_LOAD, FC_DW_SCALAR_STORE,
          FC_DW_SCALAR_SET1, FC_DW_SCALAR_FMA, FC_DW_SCALAR_MAX, FC_DW_SCALAR_MIN)
#if FC_X86_DISPATCH
FC_DW_ALL(avx2_f, f, FC_TARGET_AVX2, float, __m256, 8, _mm256_setzero_ps(),
          _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps,
          _mm256_max_ps, _mm256_min_ps)
FC_DW_ALL(avx2_d, d, FC_TARGET_AVX2, double, __m256d, 4, _mm256_setzero_pd(),
          _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_fmadd_pd,
          _mm256_max_pd, _mm256_min_pd)
FC_DW_ALL(avx512_f, f, FC_TARGET_AVX512, float, __m512, 16, _mm512_setzero_ps(),
          _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps,
          _mm512_max_ps, _mm512_min_ps)
FC_DW_ALL(avx512_d, d, FC_TARGET_AVX512, double, __m512d, 8, _mm512_setzero_pd(),
          _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd,
          _mm512_max_pd, _mm512_min_pd)
#endif

#endif
