/* The wide algorithm (channels_last, one group, stride 1, few channels): vectorised
 * along the output row on a planar copy of each image.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/wide.h is a template: include conv/conv.h"
#endif

/* ---- channels_last, one group, stride 1, few channels: wide kernels ---------------
 *
 * With few channels the pixel-row tiles are mostly empty columns (LeNet-5's C1: 1 -> 6
 * channels), so these kernels vectorise along the output row instead.  Each image is
 * first copied channel-major and zero-padded ("planar", see fc_wd_planar); an output
 * row's last vector holds the columns past ow that the forward computes and drops.
 */

/* Image src (H x W pixels of C channels, channels_last) into dst: C planes of Hs x Ws,
 * pixel (iy, ix) at row iy + pt, column ix + pl (pt/pl may be negative: cropping),
 * zero elsewhere. */
FC_CLONES static void FC_FN(fc_wd_planar)(const FC_T *src, ptrdiff_t H, ptrdiff_t W,
                                          ptrdiff_t C, ptrdiff_t pt, ptrdiff_t pl,
                                          FC_T *dst, ptrdiff_t Hs, ptrdiff_t Ws)
{
    const ptrdiff_t y0 = pt < 0 ? -pt : 0, y1 = H < Hs - pt ? H : Hs - pt;
    const ptrdiff_t x0 = pl < 0 ? -pl : 0, x1 = W < Ws - pl ? W : Ws - pl;
    const ptrdiff_t plane = Hs * Ws;
    ptrdiff_t iy, ix, c;
    memset(dst, 0, (size_t)(C * plane) * sizeof(FC_T));
    if (x1 <= x0)
        return;
    for (iy = y0; iy < y1; iy++) {
        FC_T *d = dst + (iy + pt) * Ws + pl;
        const FC_T *s = src + iy * W * C;
        if (C == 1) {
            memcpy(d + x0, s + x0, (size_t)(x1 - x0) * sizeof(FC_T));
            continue;
        }
        for (c = 0; c < C; c++) {  /* contiguous stores, loads C apart */
            FC_T *dc = d + c * plane;
            const FC_T *sc = s + c;
            FC_OMP_SIMD
            for (ix = x0; ix < x1; ix++)
                dc[ix] = sc[ix * C];
        }
    }
}

/* One output row of the 2x2/2 average pool, channels_last, from input rows r0 and r1
 * (pw pixels of C channels out): the window's cells summed in row-major order, then
 * scaled by 1/4, as src/_pool2d.pyx's average pool rounds. */
static void FC_FN(fc_pool_rows)(const FC_T *r0, const FC_T *r1, FC_T *out, ptrdiff_t pw,
                                ptrdiff_t C)
{
    ptrdiff_t px, c;
    for (px = 0; px < pw; px++) {
        const FC_T *a = r0 + 2 * px * C, *b = a + C, *d = r1 + 2 * px * C, *e = d + C;
        FC_T *o = out + px * C;
        FC_OMP_SIMD
        for (c = 0; c < C; c++)
            o[c] = (((a[c] + b[c]) + d[c]) + e[c]) * (FC_T)0.25;
    }
}

/* The output pass after a forward kernel has stored image y (oh x ow pixels of cout
 * channels, channels_last): act (FC_ACT_*) in place a row at a time, and with yq (not
 * NULL) the 2x2/2 average pool of each pair of rows (fc_pool_rows) into yq, right after
 * the pair is activated, while it is in cache. */
FC_CLONES static void FC_FN(fc_act_pool_image)(FC_T *y, ptrdiff_t oh, ptrdiff_t ow,
                                               ptrdiff_t cout, int act, FC_T *yq)
{
    const ptrdiff_t row = ow * cout, prow = (ow / 2) * cout;
    ptrdiff_t oy, e;
    for (oy = 0; oy < oh; oy++) {
        FC_T *dst = y + oy * row;
        if (act == FC_ACT_RELU)
            FC_OMP_SIMD
            for (e = 0; e < row; e++)
                dst[e] = FC_FN(fc_relu1)(dst[e]);
        else if (act == FC_ACT_TANH)
            FC_OMP_SIMD
            for (e = 0; e < row; e++)
                dst[e] = FC_TANH1(dst[e]);
        if (yq != NULL && (oy & 1))  /* the 2x2/2 average pool of rows oy - 1 and oy */
            FC_FN(fc_pool_rows)(dst - row, dst, yq + (oy / 2) * prow, ow / 2, cout);
    }
}

/* Forward of image n, then act (FC_ACT_*: none, ReLU, tanh).  The output channels go
 * in nblk blocks, block i of fc_wide_co[blk[i]] channels (fc_wide_block's choices, the
 * caller's), its weights (kg, CO) from wpk + co0 * kg, k = (ki, c, kj), so that the taps
 * of kernel rows [lo, hi] (fc_wide_taps) are the range k in [lo, hi + 1) * c * kw.
 * off[k] = c * Hs * Ws + ki * dy * Ws + kj * dx.  The kernels store channels_last output
 * rows (ow * cout contiguous elements) with the bias added (bias: cout values, zeros
 * when the convolution has none).  With pool, y is instead the 2x2/2 average pool of
 * that output (rows and columns past an even count dropped); with yq (not NULL), y is
 * written and its pool goes to yq as well.  Where the kernels take the activation and
 * the pool themselves (inkernel: the ISA's wpool for float, every block of an even
 * number of rows, so that row pairs stay in one call), they do; otherwise the
 * activation follows in place a row at a time and the pool from each pair of rows
 * (fc_act_pool_image), the output going to the scratch yimg under pool.
 * Scratch: xs (C * Hs * Ws, Hs from fc_wide_rows, Ws = ceil(ow / vl) * vl +
 * (kw - 1) * dx) and, with pool, yimg (oh * ow * cout). */
FC_CLONES static void FC_FN(fc_wd_forward_image)(const fc_conv *g,
                                                 const FC_FN(fc_kwf_t) *kwf, const int *wr,
                                                 const int *blk, int nblk, int inkernel,
                                                 ptrdiff_t vl, const FC_T *x,
                                                 const FC_T *wpk, const ptrdiff_t *off,
                                                 const FC_T *bias, FC_T *y, ptrdiff_t n,
                                                 int act, int pool, FC_T *yq, FC_T *xs,
                                                 FC_T *yimg, ptrdiff_t Hs, ptrdiff_t Ws)
{
    const ptrdiff_t oh = g->oh, ow = g->ow, cout = g->cout, kg = g->kg;
    const ptrdiff_t owv = (ow + vl - 1) / vl, row = ow * cout, ktap = g->c * g->kw;
    const ptrdiff_t prow = (ow / 2) * cout;
    FC_T *yp = pool ? y : yq;  /* the pooled output, or NULL */
    FC_T *yo = pool ? (inkernel ? NULL : yimg) : y + n * oh * row;
    ptrdiff_t co0 = 0, oy0, v, lo, hi;
    int i;
    if (yp != NULL)
        yp += n * (oh / 2) * prow;
    FC_FN(fc_wd_planar)(x + n * g->h * g->w * g->c, g->h, g->w, g->c, g->pt, g->pl, xs,
                        Hs, Ws);
    for (i = 0; i < nblk; i++) {
        const int b = blk[i];
        const ptrdiff_t CO = fc_wide_co[b], R = wr[b];
        const FC_FN(fc_kwf_t) kern = kwf[b];
        const FC_T *wb = wpk + co0 * kg;
        for (oy0 = 0; oy0 < oh; oy0 += R) {
            const ptrdiff_t nr = oh - oy0 < R ? oh - oy0 : R;
            ptrdiff_t k0 = 0, nk = 0;
            fc_wide_taps(g, oy0, nr, &lo, &hi);
            if (hi >= lo) {
                k0 = lo * ktap;
                nk = (hi - lo + 1) * ktap;
            }
            for (v = 0; v < owv; v++)
                kern(nk, off + k0, xs + oy0 * Ws + v * vl, Ws, wb + k0 * CO, bias + co0,
                     yo ? yo + oy0 * row + v * vl * cout + co0 : NULL, row, cout, (int)nr,
                     (int)(ow - v * vl < vl ? ow - v * vl : vl), inkernel ? act : 0,
                     inkernel && yp ? yp + (oy0 / 2) * prow + (v * vl / 2) * cout + co0
                                    : NULL,
                     prow);
        }
        co0 += CO;
    }
    if (!inkernel)
        FC_FN(fc_act_pool_image)(yo, oh, ow, cout, act, yp);
}

/* Weight gradient of images [n_lo, n_hi), accumulated into part (kg, coutp): rows
 * k = (ki, kj, c) -- the channels_last weight layout -- and coutp = cout rounded up to
 * wg_co columns.  Scratch: xs (n_per * C * Hs * Ws with Hs = oh + (kh - 1) * dy,
 * Ws as the forward's), gs (n_per * coutp * oh * owv * vl), tab (3 * n_per * oh * owv). */
static void FC_FN(fc_wd_grad_weight_item)(const fc_conv *g, const FC_FN(fc_kwg_t) *kwg,
                                          ptrdiff_t gco, ptrdiff_t vl, const FC_T *x,
                                          const FC_T *gy, FC_T *part, ptrdiff_t n_lo,
                                          ptrdiff_t n_hi, FC_T *xs, FC_T *gs,
                                          ptrdiff_t *tab)
{
    const ptrdiff_t C = g->c, owv = (g->ow + vl - 1) / vl, wg = owv * vl;
    const ptrdiff_t Hs = g->oh + (g->kh - 1) * g->dy, Ws = wg + (g->kw - 1) * g->dx;
    const ptrdiff_t ldp = Hs * Ws, ldg = g->oh * wg;
    const ptrdiff_t coutp = (g->cout + gco - 1) / gco * gco;
    const ptrdiff_t nimg = n_hi - n_lo, nq = nimg * g->oh * owv;
    ptrdiff_t *xo = tab, *go = tab + nq, *nl = tab + 2 * nq;
    ptrdiff_t i, oy, v, c, ki, kj0, co0;
    for (i = 0; i < nimg; i++) {
        const ptrdiff_t n = n_lo + i;
        FC_T *gsi = gs + i * coutp * ldg;
        FC_FN(fc_wd_planar)(x + n * g->h * g->w * C, g->h, g->w, C, g->pt, g->pl,
                            xs + i * C * ldp, Hs, Ws);
        FC_FN(fc_wd_planar)(gy + n * g->oh * g->ow * g->cout, g->oh, g->ow, g->cout, 0, 0,
                            gsi, g->oh, wg);
        if (coutp > g->cout)
            memset(gsi + g->cout * ldg, 0, (size_t)((coutp - g->cout) * ldg) * sizeof(FC_T));
        for (oy = 0; oy < g->oh; oy++)
            for (v = 0; v < owv; v++) {
                const ptrdiff_t q = (i * g->oh + oy) * owv + v;
                xo[q] = i * C * ldp + oy * Ws + v * vl;
                go[q] = i * coutp * ldg + oy * wg + v * vl;
                nl[q] = g->ow - v * vl < vl ? g->ow - v * vl : vl;
            }
    }
    for (c = 0; c < C; c++)
        for (ki = 0; ki < g->kh; ki++)
            for (kj0 = 0; kj0 < g->kw; kj0 += FC_WKJ) {
                const ptrdiff_t nkj = g->kw - kj0 < FC_WKJ ? g->kw - kj0 : FC_WKJ;
                const FC_T *xa = xs + c * ldp + ki * g->dy * Ws + kj0 * g->dx;
                FC_T *out = part + ((ki * g->kw + kj0) * C + c) * coutp;
                for (co0 = 0; co0 < coutp; co0 += gco)
                    kwg[nkj - 1](nq, xo, go, nl, xa, g->dx, gs + co0 * ldg, ldg,
                                 out + co0, C * coutp);
            }
}
