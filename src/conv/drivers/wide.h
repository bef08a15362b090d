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

/* ---- entry points (src/_conv2d.pyx): one parallel loop each (parallel.h) ---------- */

typedef struct {
    const fc_conv *g;
    const FC_FN(fc_kwf_t) *kwf;
    const FC_FN(fc_kwg_t) *kwg;
    const int *wr, *blk;
    int nblk, inkernel, act, pool;
    ptrdiff_t vl, gco, Hs, Ws, n_per, bias_per, part_stride;
    const FC_T *x, *w, *gy, *gp, *a, *bias;
    const ptrdiff_t *off;
    FC_T *y, *yq;
    double *bsum;
} FC_FN(fc_wide_args);

static void FC_FN(fc_wide_forward_item)(const void *args, ptrdiff_t n, void *const *sc)
{
    const FC_FN(fc_wide_args) *a = (const FC_FN(fc_wide_args) *)args;
    FC_FN(fc_wd_forward_image)(a->g, a->kwf, a->wr, a->blk, a->nblk, a->inkernel, a->vl,
                               a->x, a->w, a->off, a->bias, a->y, n, a->act, a->pool, a->yq,
                               (FC_T *)sc[0], (FC_T *)sc[1], a->Hs, a->Ws);
}

/* channels_last, one group, stride 1: y = conv(x) (+ bias) (then act, FC_ACT_*) by the
 * wide kernels; w = the weights (C_out, kg) row-major, k = (c, ki, kj).  pool: y is
 * the 2x2/2 average pool of that instead; yq (without pool, may be NULL): that pool as
 * well as y.  The weights are packed here once (blocks of fc_wide_block's channel
 * counts, k = (ki, c, kj)).  Parallel over images. */
static int FC_FN(fc_wide_forward)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                  const FC_T *w, const FC_T *bias, FC_T *y, int act,
                                  int pool, FC_T *yq)
{
    fc_conv g = *g0;
    const ptrdiff_t vl = isa->FC_FN(vl), K = g0->kg;
    ptrdiff_t Hs, Ws, co0 = 0, CO, k, o, c, ki, kj;
    FC_T *wpk, *pb;
    ptrdiff_t *off;
    int *blk, nblk = 0, b, rc;
    int inkernel = isa->wpool_f && sizeof(FC_T) == sizeof(float);
    fc_loop lp;
    FC_FN(fc_wide_args) a;
    g.mr = g.nr = 0;
    Hs = fc_wide_rows(isa->wr, g.oh, g.kh, g.dy);
    Ws = (g.ow + vl - 1) / vl * vl + (g.kw - 1) * g.dx;
    wpk = (FC_T *)fc_alloc((g.cout * K + g.cout) * sizeof(FC_T));
    off = (ptrdiff_t *)fc_alloc(K * sizeof(ptrdiff_t));
    blk = (int *)fc_alloc(g.cout * sizeof(int));  /* (at most one block per channel) */
    if (wpk == NULL || off == NULL || blk == NULL) {
        fc_free(wpk);
        fc_free(off);
        fc_free(blk);
        return FC_ENOMEM_TABLE;
    }
    pb = wpk + g.cout * K;
    for (o = 0; o < g.cout; o++)
        pb[o] = bias != NULL ? bias[o] : 0;
    /* k = (ki, c, kj) in the kernels (so that a range of kernel rows is a range of k),
     * (c, ki, kj) in w */
    k = 0;
    for (ki = 0; ki < g.kh; ki++)
        for (c = 0; c < g.c; c++)
            for (kj = 0; kj < g.kw; kj++)
                off[k++] = (c * Hs + ki * g.dy) * Ws + kj * g.dx;
    /* the blocks fc_wd_forward_image walks, (K, CO) each; whether its kernels take the
     * activation and the pool (an ISA that can, float, blocks of even row counts) */
    while (co0 < g.cout) {
        b = fc_wide_block(isa->wr, g.cout - co0, &g);
        CO = fc_wide_co[b];
        blk[nblk++] = b;
        if (isa->wr[b] % 2)
            inkernel = 0;
        k = 0;
        for (ki = 0; ki < g.kh; ki++)
            for (c = 0; c < g.c; c++)
                for (kj = 0; kj < g.kw; kj++) {
                    for (o = 0; o < CO; o++)
                        wpk[co0 * K + k * CO + o] = w[(co0 + o) * K + (c * g.kh + ki) * g.kw + kj];
                    k++;
                }
        co0 += CO;
    }
    lp = fc_loop_of((double)g.n * g.oh * g.ow * g.cout * g.kg, g.n, 1);
    memset(&a, 0, sizeof a);
    a.g = &g;
    a.kwf = isa->FC_FN(kwf);
    a.wr = isa->wr;
    a.blk = blk;
    a.nblk = nblk;
    a.inkernel = inkernel;
    a.vl = vl;
    a.x = x;
    a.w = wpk;
    a.off = off;
    a.bias = pb;
    a.y = y;
    a.act = act;
    a.pool = pool;
    a.yq = yq;
    a.Hs = Hs;
    a.Ws = Ws;
    fc_scratch(&lp, g.c * Hs * Ws * sizeof(FC_T));                         /* xs */
    fc_scratch(&lp, (pool ? g.oh * g.ow * g.cout : 1) * sizeof(FC_T));     /* yimg */
    rc = fc_parallel_for(&lp, FC_FN(fc_wide_forward_item), &a);
    fc_free(wpk);
    fc_free(off);
    fc_free(blk);
    return rc;
}

static void FC_FN(fc_wide_grad_weight_item)(const void *args, ptrdiff_t ig,
                                            void *const *sc)
{
    const FC_FN(fc_wide_args) *a = (const FC_FN(fc_wide_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t y_img = g->oh * g->ow * g->cout, x_img = g->h * g->w * g->c;
    const ptrdiff_t q_img = (g->oh / 2) * (g->ow / 2) * g->cout;
    const ptrdiff_t n_lo = ig * a->n_per;
    const ptrdiff_t n_hi = n_lo + a->n_per > g->n ? g->n : n_lo + a->n_per;
    FC_T *gys = (FC_T *)sc[3];
    const FC_T *gyi = a->gy;
    ptrdiff_t s = 0, i, b_lo, b_hi;
    /* the item reads images [n_lo - s, n_hi - s) of gyi and xi: gy and x (s = 0), or
     * (pooled) gys, its images made here, and x from image n_lo on (s = n_lo) */
    if (a->pool) {
        s = n_lo;
        gyi = gys;
        for (i = 0; i < n_hi - n_lo; i++)
            FC_FN(fc_avg_tanh_grad_image)(a->gp + (n_lo + i) * q_img, a->a + (n_lo + i) * y_img,
                                          gys + i * y_img, g->oh, g->ow, g->cout);
    }
    for (b_lo = n_lo; a->bsum != NULL && b_lo < n_hi; b_lo = b_hi) {
        b_hi = b_lo + a->bias_per > n_hi ? n_hi : b_lo + a->bias_per;
        FC_FN(fc_bias_grad_item)(g, gyi, a->bsum + b_lo / a->bias_per * g->cout, b_lo - s,
                                 b_hi - s);
    }
    FC_FN(fc_wd_grad_weight_item)(g, a->kwg, a->gco, a->vl, a->x + s * x_img, gyi,
                                  a->y + ig * a->part_stride, n_lo - s, n_hi - s,
                                  (FC_T *)sc[0], (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
}

/* channels_last, one group, stride 1: partial weight gradients by the wide kernels, one
 * per group of n_per images; part zeroed, (n_igroups, kg, coutp) -- rows
 * k = (ki, kj, c), coutp = C_out rounded up to the ISA's wg_co.  bsum (or NULL),
 * zeroed, n_per a multiple of bias_per: the bias gradient's partial sums of groups of
 * bias_per images too.  pooled (gp and a given, gy unused): grad_y is the gradient
 * through tanh (a: its output) of a 2x2/2 average pool whose output gradient is gp,
 * made per item in a per-thread buffer.  Parallel over image groups. */
static int FC_FN(fc_wide_grad_weight)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                      const FC_T *gy, FC_T *part, ptrdiff_t n_per,
                                      double *bsum, ptrdiff_t bias_per, int pooled,
                                      const FC_T *gp, const FC_T *pa)
{
    fc_conv g = *g0;
    const ptrdiff_t vl = isa->FC_FN(vl), gco = isa->wg_co;
    const ptrdiff_t owv = (g.ow + vl - 1) / vl;
    const ptrdiff_t Hs = g.oh + (g.kh - 1) * g.dy, Ws = owv * vl + (g.kw - 1) * g.dx;
    const ptrdiff_t coutp = (g.cout + gco - 1) / gco * gco;
    fc_loop lp;
    FC_FN(fc_wide_args) a;
    g.mr = g.nr = 0;
    lp = fc_loop_of((double)g.n * g.oh * g.ow * g.cout * g.kg, (g.n + n_per - 1) / n_per,
                    1);
    memset(&a, 0, sizeof a);
    a.g = &g;
    a.kwg = isa->FC_FN(kwg);
    a.gco = gco;
    a.vl = vl;
    a.x = x;
    a.gy = gy;
    a.pool = pooled;
    a.gp = gp;
    a.a = pa;
    a.y = part;
    a.n_per = n_per;
    a.bias_per = bias_per;
    a.bsum = bsum;
    a.part_stride = g.kg * coutp;
    fc_scratch(&lp, n_per * g.c * Hs * Ws * sizeof(FC_T));                      /* xs */
    fc_scratch(&lp, n_per * coutp * g.oh * owv * vl * sizeof(FC_T));            /* gs */
    fc_scratch(&lp, 3 * n_per * g.oh * owv * sizeof(ptrdiff_t));                /* tab */
    fc_scratch(&lp, (pooled ? n_per * g.oh * g.ow * g.cout : 1) * sizeof(FC_T)); /* gys */
    return fc_parallel_for(&lp, FC_FN(fc_wide_grad_weight_item), &a);
}
