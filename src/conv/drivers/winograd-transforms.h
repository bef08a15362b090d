/* Winograd F(2x2, 3x3), F(4x4, 3x3) and F(5x5, 3x3): the input, output and
 * output-gradient transforms of one tile.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/winograd-transforms.h is a template: include conv/conv.h"
#endif

/* ---- Winograd F(2x2, 3x3): channels_last, 3x3 kernels, stride 1, dilation 1 ------
 *
 * The output is cut into tiles of 2x2 pixels, th x tw of them per image, numbered
 * t = (n * th + ty) * tw + tx over the whole batch.  Tile t reads the 4x4 input patch d
 * whose top-left pixel is (2 ty - pt, 2 tx - pl) (zero outside the image) and, with
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 *
 * V = B^T d B and U = G g G^T (per (c, co), computed once per call by the caller), the
 * tile is Y = A^T M A where M[e][t][co] = sum_c V[e][t][c] U[e][c][co] for each of the
 * 16 entries e: 16 matrix products (tiles x C) by (C x C_out), 16 multiply-adds per
 * (tile, c, co) instead of the direct product's 36.  In channels_last every step works
 * on whole channel vectors: the transforms are adds along c (vectorised by the
 * compiler), the products run on the pixel-row kernel (rows = tiles, read in place from
 * V; columns = output channels, U packed (16, ceil(C_out/nr), C, nr)).
 *
 * The weight gradient is the same construction transposed: with Mg = A dY A^T (the 2x2
 * tile of grad_y to 4x4), dU[e][c][co] = sum_t V[e][t][c] Mg[e][t][co], then
 * grad_w = G^T dU G (by the caller).  Both take V from fc_wg_input.
 *
 * Tiles past the image's last row or column compute outputs that are not stored (an odd
 * oh or ow); with pool set (the 2x2/2 max pool fused, th = oh / 2, tw = ow / 2), a tile
 * is one pooled pixel and those tiles are not computed at all.  No multiplication is
 * fused with an addition in the transforms, so the roundings are fixed by the shapes. */

/* One row a of V = (B^T d) B from the row a of B^T d, (q0, q1, q2, q3), stored to
 * v[a * 4 * es + ...]: (q0 - q2, q1 + q2, q2 - q1, q1 - q3). */
#define FC_WG_VROW(a, q0, q1, q2, q3)                                                    \
    {                                                                                    \
        const FC_T q0_ = (q0), q1_ = (q1), q2_ = (q2), q3_ = (q3);                       \
        vi[(4 * (a)) * es + c] = q0_ - q2_;                                              \
        vi[(4 * (a) + 1) * es + c] = q1_ + q2_;                                          \
        vi[(4 * (a) + 2) * es + c] = q2_ - q1_;                                          \
        vi[(4 * (a) + 3) * es + c] = q1_ - q3_;                                          \
    }

/* name0 ... name15: restrict copies of the pointers src[0 .. 15] (the rows a transform
 * reads: with them GCC vectorises its loop over channels; through the array it did not,
 * and the input transform ran scalar (docs/design/algorithms.md)). */
#define FC_RESTRICT16(name, src)                                                         \
    const FC_T *FC_RESTRICT name##0 = src[0], *FC_RESTRICT name##1 = src[1];             \
    const FC_T *FC_RESTRICT name##2 = src[2], *FC_RESTRICT name##3 = src[3];             \
    const FC_T *FC_RESTRICT name##4 = src[4], *FC_RESTRICT name##5 = src[5];             \
    const FC_T *FC_RESTRICT name##6 = src[6], *FC_RESTRICT name##7 = src[7];             \
    const FC_T *FC_RESTRICT name##8 = src[8], *FC_RESTRICT name##9 = src[9];             \
    const FC_T *FC_RESTRICT name##10 = src[10], *FC_RESTRICT name##11 = src[11];         \
    const FC_T *FC_RESTRICT name##12 = src[12], *FC_RESTRICT name##13 = src[13];         \
    const FC_T *FC_RESTRICT name##14 = src[14], *FC_RESTRICT name##15 = src[15];

/* q[b] = image n's pixel (iy, ix0 + b) of x (C channels) for b < L, or zero (C zeros)
 * where that lies in the padding: one row of a Winograd tile's input patch. */
static inline void FC_FN(fc_wg_patch_row)(const fc_conv *g, const FC_T *x,
                                          const FC_T *zero, ptrdiff_t n, ptrdiff_t iy,
                                          ptrdiff_t ix0, int L, const FC_T **q)
{
    int b;
    for (b = 0; b < L; b++) {
        const ptrdiff_t ix = ix0 + b;
        q[b] = (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                   ? x + ((n * g->h + iy) * g->w + ix) * g->c : zero;
    }
}

/* V for tiles [t0, t0 + cnt): v[e * es + i * C + c].  zero: C zeros (the padding). */
FC_CLONES static void FC_FN(fc_wg_input)(const fc_conv *g, const FC_T *x, const FC_T *zero,
                                         ptrdiff_t t0, ptrdiff_t cnt, ptrdiff_t th,
                                         ptrdiff_t tw, FC_T *v, ptrdiff_t es)
{
    const ptrdiff_t C = g->c, tpi = th * tw;
    ptrdiff_t i, c;
    int a;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi;
        const ptrdiff_t iy0 = 2 * (r / tw) - g->pt, ix0 = 2 * (r % tw) - g->pl;
        const FC_T *p[16];
        FC_T *FC_RESTRICT vi = v + i * C;
        for (a = 0; a < 4; a++)
            FC_FN(fc_wg_patch_row)(g, x, zero, n, iy0 + a, ix0, 4, p + 4 * a);
        {
            FC_RESTRICT16(p, p)
            FC_OMP_SIMD
            for (c = 0; c < C; c++) {
                /* B^T d by columns: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3) */
                const FC_T u00 = p0[c] - p8[c], u01 = p1[c] - p9[c];
                const FC_T u02 = p2[c] - p10[c], u03 = p3[c] - p11[c];
                const FC_T u10 = p4[c] + p8[c], u11 = p5[c] + p9[c];
                const FC_T u12 = p6[c] + p10[c], u13 = p7[c] + p11[c];
                const FC_T u20 = p8[c] - p4[c], u21 = p9[c] - p5[c];
                const FC_T u22 = p10[c] - p6[c], u23 = p11[c] - p7[c];
                const FC_T u30 = p4[c] - p12[c], u31 = p5[c] - p13[c];
                const FC_T u32 = p6[c] - p14[c], u33 = p7[c] - p15[c];
                FC_WG_VROW(0, u00, u01, u02, u03)
                FC_WG_VROW(1, u10, u11, u12, u13)
                FC_WG_VROW(2, u20, u21, u22, u23)
                FC_WG_VROW(3, u30, u31, u32, u33)
            }
        }
    }
}
#undef FC_WG_VROW

/* Y = A^T M A (+ bias) (then ReLU) for tiles [t0, t0 + cnt) and output channels
 * [co0, co0 + cols): m[e * ms + i * ldm + j] holds M of tile t0 + i, channel co0 + j.
 * y: the output (N, oh, ow, C_out), or with pool the pooled output (N, th, tw, C_out),
 * each tile's four values reduced as the pooling kernels do (the first maximum in
 * row-major order, or the first NaN). */
FC_CLONES static void FC_FN(fc_wg_output)(const fc_conv *g, const FC_T *m, ptrdiff_t ms,
                                          ptrdiff_t ldm, const FC_T *bias, FC_T *y,
                                          ptrdiff_t t0, ptrdiff_t cnt, ptrdiff_t th,
                                          ptrdiff_t tw, ptrdiff_t co0, ptrdiff_t cols,
                                          int relu, int pool)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    ptrdiff_t i, j;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        const FC_T *mi = m + i * ldm;
        const int right = 2 * tx + 1 < g->ow, below = 2 * ty + 1 < g->oh;
        FC_T *y00 = pool ? y + (t * CO + co0)
                         : y + ((n * g->oh + 2 * ty) * g->ow + 2 * tx) * CO + co0;
        FC_T *y01 = y00 + CO, *y10 = y00 + g->ow * CO, *y11 = y10 + CO;
        FC_OMP_SIMD
        for (j = 0; j < cols; j++) {
            FC_T s0[4], s1[4], o0, o1, o2, o3;
            const FC_T b = bias ? bias[co0 + j] : (FC_T)0;
            int k;
            for (k = 0; k < 4; k++) {  /* A^T M, column k */
                const FC_T m0 = mi[k * ms + j], m1 = mi[(4 + k) * ms + j],
                           m2 = mi[(8 + k) * ms + j], m3 = mi[(12 + k) * ms + j];
                s0[k] = m0 + m1 + m2;
                s1[k] = m1 - m2 - m3;
            }
            o0 = s0[0] + s0[1] + s0[2] + b;
            o1 = s0[1] - s0[2] - s0[3] + b;
            o2 = s1[0] + s1[1] + s1[2] + b;
            o3 = s1[1] - s1[2] - s1[3] + b;
            if (relu) {
                o0 = FC_FN(fc_relu1)(o0);
                o1 = FC_FN(fc_relu1)(o1);
                o2 = FC_FN(fc_relu1)(o2);
                o3 = FC_FN(fc_relu1)(o3);
            }
            if (pool) {
                y00[j] = FC_FN(fc_max4)(o0, o1, o2, o3);
            } else {
                y00[j] = o0;
                if (right)
                    y01[j] = o1;
                if (below)
                    y10[j] = o2;
                if (right && below)
                    y11[j] = o3;
            }
        }
    }
}

/* ---- Winograd F(4x4, 3x3): the same construction on 4x4 output tiles -------------
 * Tile t (th x tw tiles of 4x4 output pixels per image) reads the 6x6 input patch whose
 * top-left pixel is (4 ty - pt, 4 tx - pl), and with
 *
 *   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0  4 -4 -1 1 0;
 *          0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0  4  0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 *
 * the 36 products cost 36 multiply-adds per (tile, c, co), 2.25 per output pixel
 * against F(2x2)'s 4 and the direct product's 9.  A^T's and A's entries are powers of
 * two, so the output transforms round the same with or without fused multiply-adds;
 * the input transform's (4, 5) do not, but every pass that compares values (the pooled
 * forward against the unpooled one) shares it. */

/* The 1-D B^T of (d0, ..., d5) stored to o[0], o[st], ..., o[5 st] (at index c). */
#define FC_WG4_BT(o, st, d0, d1, d2, d3, d4, d5)                                         \
    {                                                                                    \
        const FC_T d0_ = (d0), d1_ = (d1), d2_ = (d2);                                   \
        const FC_T d3_ = (d3), d4_ = (d4), d5_ = (d5);                                   \
        const FC_T a_ = d4_ - 4 * d2_, b_ = d3_ - 4 * d1_;                               \
        const FC_T e_ = d4_ - d2_, f_ = 2 * (d3_ - d1_);                                 \
        (o)[0] = 4 * d0_ - 5 * d2_ + d4_;                                                \
        (o)[(st)] = a_ + b_;                                                             \
        (o)[2 * (st)] = a_ - b_;                                                         \
        (o)[3 * (st)] = e_ + f_;                                                         \
        (o)[4 * (st)] = e_ - f_;                                                         \
        (o)[5 * (st)] = 4 * d1_ - 5 * d3_ + d5_;                                         \
    }

/* V for tiles [t0, t0 + cnt): v[e * es + i * C + c], e = 6 i + j of B^T d B.  zero: C
 * zeros (the padding).  First each patch row times B, then each column of that by B^T,
 * in place: a tile's 36 C values stay in the L1 cache between the two passes. */
FC_CLONES static void FC_FN(fc_wg4_input)(const fc_conv *g, const FC_T *x,
                                          const FC_T *zero, ptrdiff_t t0, ptrdiff_t cnt,
                                          ptrdiff_t th, ptrdiff_t tw, FC_T *v,
                                          ptrdiff_t es)
{
    const ptrdiff_t C = g->c, tpi = th * tw;
    ptrdiff_t i, c;
    int a, b;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi;
        const ptrdiff_t iy0 = 4 * (r / tw) - g->pt, ix0 = 4 * (r % tw) - g->pl;
        FC_T *vi = v + i * C;
        for (a = 0; a < 6; a++) {  /* row a of d B: (d B)[a][j] at entry 6 a + j */
            const FC_T *q[6];
            FC_FN(fc_wg_patch_row)(g, x, zero, n, iy0 + a, ix0, 6, q);
            {
                const FC_T *FC_RESTRICT q0 = q[0], *FC_RESTRICT q1 = q[1];
                const FC_T *FC_RESTRICT q2 = q[2], *FC_RESTRICT q3 = q[3];
                const FC_T *FC_RESTRICT q4 = q[4], *FC_RESTRICT q5 = q[5];
                FC_T *FC_RESTRICT o = vi + 6 * a * es;
                FC_OMP_SIMD
                for (c = 0; c < C; c++)
                    FC_WG4_BT(o + c, es, q0[c], q1[c], q2[c], q3[c], q4[c], q5[c])
            }
        }
        for (b = 0; b < 6; b++) {  /* column b: V[i][b] = sum_a B^T[i][a] (d B)[a][b] */
            FC_T *FC_RESTRICT o = vi + b * es;
            FC_OMP_SIMD
            for (c = 0; c < C; c++)
                FC_WG4_BT(o + c, 6 * es, o[c], o[6 * es + c], o[12 * es + c],
                          o[18 * es + c], o[24 * es + c], o[30 * es + c])
        }
    }
}
#undef FC_WG4_BT

/* The 1-D A^T of (m0, ..., m5): (o0, o1, o2, o3). */
#define FC_WG4_AT(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3)                                \
    {                                                                                    \
        const FC_T a_ = (m1) + (m2), b_ = (m1) - (m2);                                   \
        const FC_T c_ = (m3) + (m4), d_ = (m3) - (m4);                                   \
        o0 = (m0) + a_ + c_;                                                             \
        o1 = b_ + 2 * d_;                                                                \
        o2 = a_ + 4 * c_;                                                                \
        o3 = b_ + 8 * d_ + (m5);                                                         \
    }

/* Y = A^T M A (+ bias) (then ReLU) for tiles [t0, t0 + cnt) and output channels
 * [co0, co0 + cols), as fc_wg_output for 4x4 tiles; with pool, each tile holds 2x2
 * pooling windows, y the pooled output (N, oh / 2, ow / 2, C_out), th x tw tiles
 * covering it.  (Named temporaries, no arrays, so that the loop over channels
 * vectorises: with arrays GCC kept them in memory (docs/design/algorithms.md).)
 * wo: the ISA's kernel for one tile (fc_kwo_f, the same bits), which then does every
 * tile, or NULL. */
#define FC_WG4_MCOL(k)                                                                   \
    FC_T s0##k, s1##k, s2##k, s3##k;                                                     \
    FC_WG4_AT(mi[(k) * ms + j], mi[(6 + (k)) * ms + j], mi[(12 + (k)) * ms + j],         \
              mi[(18 + (k)) * ms + j], mi[(24 + (k)) * ms + j], mi[(30 + (k)) * ms + j], \
              s0##k, s1##k, s2##k, s3##k)
#define FC_WG4_OROW(a)                                                                   \
    FC_T o##a##0, o##a##1, o##a##2, o##a##3;                                             \
    FC_WG4_AT(s##a##0, s##a##1, s##a##2, s##a##3, s##a##4, s##a##5, o##a##0, o##a##1,    \
              o##a##2, o##a##3)                                                          \
    o##a##0 += b; o##a##1 += b; o##a##2 += b; o##a##3 += b;                              \
    if (relu) {                                                                          \
        o##a##0 = FC_FN(fc_relu1)(o##a##0); o##a##1 = FC_FN(fc_relu1)(o##a##1);          \
        o##a##2 = FC_FN(fc_relu1)(o##a##2); o##a##3 = FC_FN(fc_relu1)(o##a##3);          \
    }
#define FC_WG4_PUT(a, k, val)                                                            \
    if ((a) < rows && (k) < colsx)                                                       \
        yt[((a) * ow + (k)) * CO + j] = (val);
FC_CLONES static void FC_FN(fc_wg4_output)(const fc_conv *g, const FC_T *m, ptrdiff_t ms,
                                           ptrdiff_t ldm, const FC_T *bias, FC_T *y,
                                           ptrdiff_t t0, ptrdiff_t cnt, ptrdiff_t th,
                                           ptrdiff_t tw, ptrdiff_t co0, ptrdiff_t cols,
                                           int relu, int pool, FC_FN(fc_kwo_t) wo)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    const ptrdiff_t oh = pool ? g->oh / 2 : g->oh, ow = pool ? g->ow / 2 : g->ow;
    const ptrdiff_t step = pool ? 2 : 4;  /* output (or pooled) pixels per tile side */
    ptrdiff_t i, j;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        const ptrdiff_t rows = oh - step * ty < step ? oh - step * ty : step;
        const ptrdiff_t colsx = ow - step * tx < step ? ow - step * tx : step;
        const FC_T *FC_RESTRICT mi = m + i * ldm;
        FC_T *FC_RESTRICT yt = y + ((n * oh + step * ty) * ow + step * tx) * CO + co0;
        if (wo) {
            wo(4, mi, ms, bias ? bias + co0 : NULL, yt, ow * CO, CO, cols, (int)rows,
               (int)colsx, relu, pool);
            continue;
        }
        FC_OMP_SIMD
        for (j = 0; j < cols; j++) {
            const FC_T b = bias ? bias[co0 + j] : (FC_T)0;
            FC_WG4_MCOL(0) FC_WG4_MCOL(1) FC_WG4_MCOL(2)
            FC_WG4_MCOL(3) FC_WG4_MCOL(4) FC_WG4_MCOL(5)
            FC_WG4_OROW(0) FC_WG4_OROW(1) FC_WG4_OROW(2) FC_WG4_OROW(3)
            if (pool) {
                FC_WG4_PUT(0, 0, FC_FN(fc_max4)(o00, o01, o10, o11))
                FC_WG4_PUT(0, 1, FC_FN(fc_max4)(o02, o03, o12, o13))
                FC_WG4_PUT(1, 0, FC_FN(fc_max4)(o20, o21, o30, o31))
                FC_WG4_PUT(1, 1, FC_FN(fc_max4)(o22, o23, o32, o33))
            } else {
                FC_WG4_PUT(0, 0, o00) FC_WG4_PUT(0, 1, o01)
                FC_WG4_PUT(0, 2, o02) FC_WG4_PUT(0, 3, o03)
                FC_WG4_PUT(1, 0, o10) FC_WG4_PUT(1, 1, o11)
                FC_WG4_PUT(1, 2, o12) FC_WG4_PUT(1, 3, o13)
                FC_WG4_PUT(2, 0, o20) FC_WG4_PUT(2, 1, o21)
                FC_WG4_PUT(2, 2, o22) FC_WG4_PUT(2, 3, o23)
                FC_WG4_PUT(3, 0, o30) FC_WG4_PUT(3, 1, o31)
                FC_WG4_PUT(3, 2, o32) FC_WG4_PUT(3, 3, o33)
            }
        }
    }
}
#undef FC_WG4_MCOL
#undef FC_WG4_OROW
#undef FC_WG4_PUT

/* Mg = A dY A^T for tiles [t0, t0 + cnt), 4x4 tiles of grad_y to 6x6: as fc_wg_grad_out.
 * A's rows: (1 0 0 0), (1 1 1 1), (1 -1 1 -1), (1 2 4 8), (1 -2 4 -8), (0 0 0 1). */
#define FC_WG4_A(g0, g1, g2, g3, r0, r1, r2, r3, r4, r5)                                 \
    {                                                                                    \
        const FC_T g0_ = (g0), g1_ = (g1), g2_ = (g2), g3_ = (g3);                       \
        const FC_T p_ = g0_ + g2_, q_ = g1_ + g3_;                                       \
        const FC_T r_ = g0_ + 4 * g2_, s_ = 2 * g1_ + 8 * g3_;                           \
        r0 = g0_;                                                                        \
        r1 = p_ + q_;                                                                    \
        r2 = p_ - q_;                                                                    \
        r3 = r_ + s_;                                                                    \
        r4 = r_ - s_;                                                                    \
        r5 = g3_;                                                                        \
    }
/* Column b of A dY, from grad_y's rows 0-3 at that column (q<r0> ... q<r3>). */
#define FC_WG4_ACOL(b, r0, r1, r2, r3)                                                   \
    FC_T c0##b, c1##b, c2##b, c3##b, c4##b, c5##b;                                       \
    FC_WG4_A(q##r0[co], q##r1[co], q##r2[co], q##r3[co], c0##b, c1##b, c2##b, c3##b,     \
             c4##b, c5##b)
#define FC_WG4_AROW(a)                                                                   \
    FC_WG4_A(c##a##0, c##a##1, c##a##2, c##a##3, mi[(6 * (a)) * es + co],                \
             mi[(6 * (a) + 1) * es + co], mi[(6 * (a) + 2) * es + co],                   \
             mi[(6 * (a) + 3) * es + co], mi[(6 * (a) + 4) * es + co],                   \
             mi[(6 * (a) + 5) * es + co])
FC_CLONES static void FC_FN(fc_wg4_grad_out)(const fc_conv *g, const FC_T *gy,
                                             const FC_T *zero, ptrdiff_t t0, ptrdiff_t cnt,
                                             ptrdiff_t th, ptrdiff_t tw, FC_T *mg,
                                             ptrdiff_t es, ptrdiff_t ldg)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    ptrdiff_t i, co;
    int a, b, e;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        const FC_T *q[16];
        FC_T *FC_RESTRICT mi = mg + i * ldg;
        for (a = 0; a < 4; a++)
            for (b = 0; b < 4; b++) {
                const ptrdiff_t oy = 4 * ty + a, ox = 4 * tx + b;
                q[4 * a + b] = (oy < g->oh && ox < g->ow)
                                   ? gy + ((n * g->oh + oy) * g->ow + ox) * CO : zero;
            }
        {   /* q<4 a + b>: row a, column b of dY */
            FC_RESTRICT16(q, q)
            FC_OMP_SIMD
            for (co = 0; co < CO; co++) {
                FC_WG4_ACOL(0, 0, 4, 8, 12) FC_WG4_ACOL(1, 1, 5, 9, 13)
                FC_WG4_ACOL(2, 2, 6, 10, 14) FC_WG4_ACOL(3, 3, 7, 11, 15)
                FC_WG4_AROW(0) FC_WG4_AROW(1) FC_WG4_AROW(2)
                FC_WG4_AROW(3) FC_WG4_AROW(4) FC_WG4_AROW(5)
            }
        }
        for (e = 0; e < 36; e++)
            for (co = CO; co < ldg; co++)
                mi[e * es + co] = 0;
    }
}
#undef FC_RESTRICT16
#undef FC_WG4_A
#undef FC_WG4_ACOL
#undef FC_WG4_AROW
#undef FC_WG4_AT

/* ---- Winograd F(5x5, 3x3): 5x5 output tiles, 7x7 input patches ---------------------
 * Points 0, 1, -1, 2, -2, 1/2 and infinity (the most accurate in float32 of the sets of
 * six finite points tried: docs/design/algorithms.md), with
 *
 *   B^T = [-2  4  5/2  -5  -1/2  1  0;   0  2  -2  -9/2  1/2  1  0;
 *           0 -2  6   -7/2 -3/2  1  0;   0  1  -3/2 -2   3/2  1  0;
 *           0 -1  5/2  0   -5/2  1  0;   0  4   0   -5   0    1  0;
 *           0 -2  4    5/2 -5  -1/2  1]
 *   G   = [-1/2 0 0; -1/3 -1/3 -1/3; 1/9 -1/9 1/9; 1/36 1/18 1/9;
 *          -1/60 1/30 -1/15; 32/45 16/45 8/45; 0 0 1]
 *   A^T = [1 1 1 1 1 1 0; 0 1 -1 2 -2 1/2 0; 0 1 1 4 4 1/4 0;
 *          0 1 -1 8 -8 1/8 0; 0 1 1 16 16 1/16 1]
 *
 * 49 products per (tile, c, co), 1.96 per output pixel; tile_for in
 * fastconv/ops/conv/algorithms/winograd.py takes it over F(4x4) where its tiles waste
 * less of the output (docs/design/algorithms.md).  A^T's entries are powers of two, as
 * F(4x4)'s.  No fused pool (a tile is not whole 2x2
 * windows). */

/* The 1-D B^T of (d0, ..., d6) stored to o[0], o[st], ..., o[6 st]. */
#define FC_WG5_BT(o, st, d0, d1, d2, d3, d4, d5, d6)                                     \
    {                                                                                    \
        const FC_T d0_ = (d0), d1_ = (d1), d2_ = (d2), d3_ = (d3);                       \
        const FC_T d4_ = (d4), d5_ = (d5), d6_ = (d6);                                   \
        (o)[0] = -2 * d0_ + 4 * d1_ + (FC_T)2.5 * d2_ - 5 * d3_ - (FC_T)0.5 * d4_ + d5_; \
        (o)[(st)] = 2 * d1_ - 2 * d2_ - (FC_T)4.5 * d3_ + (FC_T)0.5 * d4_ + d5_;         \
        (o)[2 * (st)] = -2 * d1_ + 6 * d2_ - (FC_T)3.5 * d3_ - (FC_T)1.5 * d4_ + d5_;    \
        (o)[3 * (st)] = d1_ - (FC_T)1.5 * d2_ - 2 * d3_ + (FC_T)1.5 * d4_ + d5_;         \
        (o)[4 * (st)] = -d1_ + (FC_T)2.5 * d2_ - (FC_T)2.5 * d4_ + d5_;                  \
        (o)[5 * (st)] = 4 * d1_ - 5 * d3_ + d5_;                                         \
        (o)[6 * (st)] = -2 * d1_ + 4 * d2_ + (FC_T)2.5 * d3_ - 5 * d4_ -                 \
                        (FC_T)0.5 * d5_ + d6_;                                           \
    }

/* V for tiles [t0, t0 + cnt), as fc_wg4_input: v[e * es + i * C + c], e = 7 i + j. */
FC_CLONES static void FC_FN(fc_wg5_input)(const fc_conv *g, const FC_T *x,
                                          const FC_T *zero, ptrdiff_t t0, ptrdiff_t cnt,
                                          ptrdiff_t th, ptrdiff_t tw, FC_T *v,
                                          ptrdiff_t es)
{
    const ptrdiff_t C = g->c, tpi = th * tw;
    ptrdiff_t i, c;
    int a, b;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi;
        const ptrdiff_t iy0 = 5 * (r / tw) - g->pt, ix0 = 5 * (r % tw) - g->pl;
        FC_T *vi = v + i * C;
        for (a = 0; a < 7; a++) {  /* row a of d B: (d B)[a][j] at entry 7 a + j */
            const FC_T *q[7];
            FC_FN(fc_wg_patch_row)(g, x, zero, n, iy0 + a, ix0, 7, q);
            {
                const FC_T *FC_RESTRICT q0 = q[0], *FC_RESTRICT q1 = q[1];
                const FC_T *FC_RESTRICT q2 = q[2], *FC_RESTRICT q3 = q[3];
                const FC_T *FC_RESTRICT q4 = q[4], *FC_RESTRICT q5 = q[5];
                const FC_T *FC_RESTRICT q6 = q[6];
                FC_T *FC_RESTRICT o = vi + 7 * a * es;
                FC_OMP_SIMD
                for (c = 0; c < C; c++)
                    FC_WG5_BT(o + c, es, q0[c], q1[c], q2[c], q3[c], q4[c], q5[c], q6[c])
            }
        }
        for (b = 0; b < 7; b++) {  /* column b: V[i][b] = sum_a B^T[i][a] (d B)[a][b] */
            FC_T *FC_RESTRICT o = vi + b * es;
            FC_OMP_SIMD
            for (c = 0; c < C; c++)
                FC_WG5_BT(o + c, 7 * es, o[c], o[7 * es + c], o[14 * es + c],
                          o[21 * es + c], o[28 * es + c], o[35 * es + c], o[42 * es + c])
        }
    }
}
#undef FC_WG5_BT

/* The 1-D A^T of (m0, ..., m6): (o0, ..., o4). */
#define FC_WG5_AT(m0, m1, m2, m3, m4, m5, m6, o0, o1, o2, o3, o4)                        \
    {                                                                                    \
        const FC_T a_ = (m1) + (m2), b_ = (m1) - (m2);                                   \
        const FC_T c_ = (m3) + (m4), d_ = (m3) - (m4), e_ = (m5);                        \
        o0 = (m0) + a_ + c_ + e_;                                                        \
        o1 = b_ + 2 * d_ + (FC_T)0.5 * e_;                                               \
        o2 = a_ + 4 * c_ + (FC_T)0.25 * e_;                                              \
        o3 = b_ + 8 * d_ + (FC_T)0.125 * e_;                                             \
        o4 = a_ + 16 * c_ + (FC_T)0.0625 * e_ + (m6);                                    \
    }

/* Y = A^T M A (+ bias) (then ReLU) for tiles [t0, t0 + cnt) and output channels
 * [co0, co0 + cols), as fc_wg4_output (no pool; wo likewise). */
#define FC_WG5_MCOL(k)                                                                   \
    FC_T s0##k, s1##k, s2##k, s3##k, s4##k;                                              \
    FC_WG5_AT(mi[(k) * ms + j], mi[(7 + (k)) * ms + j], mi[(14 + (k)) * ms + j],         \
              mi[(21 + (k)) * ms + j], mi[(28 + (k)) * ms + j], mi[(35 + (k)) * ms + j], \
              mi[(42 + (k)) * ms + j], s0##k, s1##k, s2##k, s3##k, s4##k)
#define FC_WG5_OROW(a)                                                                   \
    {                                                                                    \
        FC_T o0, o1, o2, o3, o4;                                                         \
        FC_WG5_AT(s##a##0, s##a##1, s##a##2, s##a##3, s##a##4, s##a##5, s##a##6, o0, o1, \
                  o2, o3, o4)                                                            \
        if ((a) < rows) {                                                                \
            FC_T *yr = yt + (a) * g->ow * CO + j;                                        \
            o0 += b; o1 += b; o2 += b; o3 += b; o4 += b;                                 \
            if (relu) {                                                                  \
                o0 = FC_FN(fc_relu1)(o0); o1 = FC_FN(fc_relu1)(o1);                      \
                o2 = FC_FN(fc_relu1)(o2); o3 = FC_FN(fc_relu1)(o3);                      \
                o4 = FC_FN(fc_relu1)(o4);                                                \
            }                                                                            \
            yr[0] = o0;                                                                  \
            if (colsx > 1) yr[CO] = o1;                                                  \
            if (colsx > 2) yr[2 * CO] = o2;                                              \
            if (colsx > 3) yr[3 * CO] = o3;                                              \
            if (colsx > 4) yr[4 * CO] = o4;                                              \
        }                                                                                \
    }
FC_CLONES static void FC_FN(fc_wg5_output)(const fc_conv *g, const FC_T *m, ptrdiff_t ms,
                                           ptrdiff_t ldm, const FC_T *bias, FC_T *y,
                                           ptrdiff_t t0, ptrdiff_t cnt, ptrdiff_t th,
                                           ptrdiff_t tw, ptrdiff_t co0, ptrdiff_t cols,
                                           int relu, FC_FN(fc_kwo_t) wo)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    ptrdiff_t i, j;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        const ptrdiff_t rows = g->oh - 5 * ty < 5 ? g->oh - 5 * ty : 5;
        const ptrdiff_t colsx = g->ow - 5 * tx < 5 ? g->ow - 5 * tx : 5;
        const FC_T *FC_RESTRICT mi = m + i * ldm;
        FC_T *FC_RESTRICT yt = y + ((n * g->oh + 5 * ty) * g->ow + 5 * tx) * CO + co0;
        if (wo) {
            wo(5, mi, ms, bias ? bias + co0 : NULL, yt, g->ow * CO, CO, cols, (int)rows,
               (int)colsx, relu, 0);
            continue;
        }
        FC_OMP_SIMD
        for (j = 0; j < cols; j++) {
            const FC_T b = bias ? bias[co0 + j] : (FC_T)0;
            FC_WG5_MCOL(0) FC_WG5_MCOL(1) FC_WG5_MCOL(2) FC_WG5_MCOL(3)
            FC_WG5_MCOL(4) FC_WG5_MCOL(5) FC_WG5_MCOL(6)
            FC_WG5_OROW(0) FC_WG5_OROW(1) FC_WG5_OROW(2) FC_WG5_OROW(3) FC_WG5_OROW(4)
        }
    }
}
#undef FC_WG5_MCOL
#undef FC_WG5_OROW
#undef FC_WG5_AT

/* The 1-D A of (g0, ..., g4) stored to o[0], o[st], ..., o[6 st]; A's rows (1 0 0 0 0),
 * (1 1 1 1 1), (1 -1 1 -1 1), (1 2 4 8 16), (1 -2 4 -8 16), (1 1/2 1/4 1/8 1/16),
 * (0 0 0 0 1). */
#define FC_WG5_A(o, st, g0, g1, g2, g3, g4)                                              \
    {                                                                                    \
        const FC_T g0_ = (g0), g1_ = (g1), g2_ = (g2), g3_ = (g3), g4_ = (g4);           \
        const FC_T p_ = g0_ + g2_ + g4_, q_ = g1_ + g3_;                                 \
        const FC_T r_ = g0_ + 4 * g2_ + 16 * g4_, s_ = 2 * g1_ + 8 * g3_;                \
        (o)[0] = g0_;                                                                    \
        (o)[(st)] = p_ + q_;                                                             \
        (o)[2 * (st)] = p_ - q_;                                                         \
        (o)[3 * (st)] = r_ + s_;                                                         \
        (o)[4 * (st)] = r_ - s_;                                                         \
        (o)[5 * (st)] = g0_ + (FC_T)0.5 * g1_ + (FC_T)0.25 * g2_ + (FC_T)0.125 * g3_ +   \
                        (FC_T)0.0625 * g4_;                                              \
        (o)[6 * (st)] = g4_;                                                             \
    }

/* Mg = A dY A^T for tiles [t0, t0 + cnt), 5x5 tiles of grad_y to 7x7, as
 * fc_wg4_grad_out: first each row of dY times A^T (to entries 7 a + j, a < 5), then
 * each column of that by A, in place. */
FC_CLONES static void FC_FN(fc_wg5_grad_out)(const fc_conv *g, const FC_T *gy,
                                             const FC_T *zero, ptrdiff_t t0, ptrdiff_t cnt,
                                             ptrdiff_t th, ptrdiff_t tw, FC_T *mg,
                                             ptrdiff_t es, ptrdiff_t ldg)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    ptrdiff_t i, co;
    int a, b, e;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        FC_T *FC_RESTRICT mi = mg + i * ldg;
        for (a = 0; a < 5; a++) {
            const FC_T *q[5];
            const ptrdiff_t oy = 5 * ty + a;
            for (b = 0; b < 5; b++) {
                const ptrdiff_t ox = 5 * tx + b;
                q[b] = (oy < g->oh && ox < g->ow)
                           ? gy + ((n * g->oh + oy) * g->ow + ox) * CO : zero;
            }
            {
                const FC_T *FC_RESTRICT q0 = q[0], *FC_RESTRICT q1 = q[1];
                const FC_T *FC_RESTRICT q2 = q[2], *FC_RESTRICT q3 = q[3];
                const FC_T *FC_RESTRICT q4 = q[4];
                FC_T *FC_RESTRICT o = mi + 7 * a * es;
                FC_OMP_SIMD
                for (co = 0; co < CO; co++)
                    FC_WG5_A(o + co, es, q0[co], q1[co], q2[co], q3[co], q4[co])
            }
        }
        for (b = 0; b < 7; b++) {  /* column b: Mg[i][b] = sum_a A[i][a] (dY A^T)[a][b] */
            FC_T *FC_RESTRICT o = mi + b * es;
            FC_OMP_SIMD
            for (co = 0; co < CO; co++)
                FC_WG5_A(o + co, 7 * es, o[co], o[7 * es + co], o[14 * es + co],
                         o[21 * es + co], o[28 * es + co])
        }
        for (e = 0; e < 49; e++)
            for (co = CO; co < ldg; co++)
                mi[e * es + co] = 0;
    }
}
#undef FC_WG5_A
