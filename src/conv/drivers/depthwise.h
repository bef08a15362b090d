/* The depthwise algorithm (groups == C_in, M = C_out / C_in output channels per input
 * channel): every pass, both layouts, any stride, dilation and padding.
 *
 *   channels_last: vectorised over the channels.  Forward work items are output rows
 *       (n, oy): the pixels whose window lies inside the image in x run as one call of
 *       the fwd kernel (4 pixels x 2 vectors of channels per step), the edge pixels one
 *       by one with only their taps inside the image.  The input gradient gathers, for
 *       each input pixel, the taps whose output pixel exists (any stride); the weight
 *       gradient's items are (group of images, block of FC_DW_CB channels, narrower
 *       where they would be fewer than the threads).
 *   channels_first: vectorised over the output row.  Items are planes (n, c): the plane
 *       is copied zero-padded and split by column phase (column q * sx + ph of the
 *       padded plane at xs[ph][r][q]), so a tap of a strided convolution reads a
 *       contiguous run; rows kernel for the forward, axpy into such a copy for the input
 *       gradient (then cropped), dot for the weight gradient.
 * M > 1 in channels_last runs plain loops (the channel of x is co / M).
 *
 * Weights come as wk: channels_last (kh * kw, C_out), channels_first (C_out, kh * kw).
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/depthwise.h is a template: include conv/conv.h"
#endif

#ifndef FC_DW_CB
#define FC_DW_CB 64  /* channels per weight-gradient work item (channels_last) */
/* The strided channels_last input gradient's runs (fc_dw_gin_row): up to this many
 * column phases, and runs of at least FC_DW_GIN_RUN pixels. */
#define FC_DW_GIN_PHASES 8
#define FC_DW_GIN_RUN 8
#ifndef FC_DW_CHUNK
#define FC_DW_CHUNK 0
#endif
/* The padded, phase-split plane of channels_first: rows Hp, columns per phase Wq. */
static void fc_dw_dims(const fc_conv *g, ptrdiff_t *Hp, ptrdiff_t *Wq)
{
    const ptrdiff_t wp = (g->ow - 1) * g->sx + (g->kw - 1) * g->dx + 1;
    *Hp = (g->oh - 1) * g->sy + (g->kh - 1) * g->dy + 1;
    *Wq = (wp + g->sx - 1) / g->sx;
}

/* Tap t = (ki, kj)'s offset in the phase-split plane. */
static void fc_dw_plane_taps(const fc_conv *g, ptrdiff_t Hp, ptrdiff_t Wq, ptrdiff_t *xo)
{
    ptrdiff_t ki, kj;
    for (ki = 0; ki < g->kh; ki++)
        for (kj = 0; kj < g->kw; kj++)
            xo[ki * g->kw + kj] = (((kj * g->dx) % g->sx) * Hp + ki * g->dy) * Wq +
                                  (kj * g->dx) / g->sx;
}

/* The taps of input pixel (n, iy, ix) in the input gradient's gather, in (ki, kj)
 * order: go[t] the grad_y offset of the output pixel that read it through tap t,
 * wo[t] the tap's weight offset (channels_last); returns their count. */
static ptrdiff_t fc_dw_gin_taps(const fc_conv *g, ptrdiff_t n, ptrdiff_t iy,
                                ptrdiff_t ix, ptrdiff_t *go, ptrdiff_t *wo)
{
    ptrdiff_t ki, kj, nt = 0;
    for (ki = 0; ki < g->kh; ki++) {
        const ptrdiff_t ny = iy + g->pt - ki * g->dy;
        if (ny < 0 || ny % g->sy || ny / g->sy >= g->oh)
            continue;
        for (kj = 0; kj < g->kw; kj++) {
            const ptrdiff_t nx = ix + g->pl - kj * g->dx;
            if (nx < 0 || nx % g->sx || nx / g->sx >= g->ow)
                continue;
            go[nt] = ((n * g->oh + ny / g->sy) * g->ow + nx / g->sx) * g->cout;
            wo[nt++] = (ki * g->kw + kj) * g->cout;
        }
    }
    return nt;
}

/* Output columns [lo, hi) whose whole window row lies inside the image. */
static void fc_dw_interior(const fc_conv *g, ptrdiff_t *lo, ptrdiff_t *hi)
{
    const ptrdiff_t num = g->w - 1 + g->pl - (g->kw - 1) * g->dx;
    ptrdiff_t a = g->pl > 0 ? (g->pl + g->sx - 1) / g->sx : 0;
    ptrdiff_t b = num >= 0 ? num / g->sx + 1 : 0;
    if (a > g->ow)
        a = g->ow;
    if (b > g->ow)
        b = g->ow;
    *lo = a;
    *hi = b > a ? b : a;
}
#endif

/* xs <- plane src (h x w) zero-padded and split by column phase. */
FC_CLONES static void FC_FN(fc_dw_fill)(const fc_conv *g, const FC_T *src, FC_T *xs,
                                        ptrdiff_t Hp, ptrdiff_t Wq)
{
    ptrdiff_t ph, r, q;
    if (g->sx == 2) {
        /* Both phases in one pass over each row (the compiler turns the pair of loads
         * into whole-vector loads and shuffles). */
        for (r = 0; r < Hp; r++) {
            FC_T *r0 = xs + r * Wq, *r1 = xs + (Hp + r) * Wq;
            const ptrdiff_t iy = r - g->pt;
            const FC_T *sr;
            ptrdiff_t lo = (g->pl + 1) / 2, hi = (g->w + g->pl) / 2;  /* both inside */
            if (iy < 0 || iy >= g->h) {
                memset(r0, 0, Wq * sizeof(FC_T));
                memset(r1, 0, Wq * sizeof(FC_T));
                continue;
            }
            sr = src + iy * g->w;
            if (lo < 0)
                lo = 0;
            if (hi > Wq)
                hi = Wq;
            if (lo > hi)
                lo = hi;
            for (q = 0; q < lo; q++) {
                const ptrdiff_t i0 = 2 * q - g->pl;
                r0[q] = (i0 >= 0 && i0 < g->w) ? sr[i0] : (FC_T)0;
                r1[q] = (i0 + 1 >= 0 && i0 + 1 < g->w) ? sr[i0 + 1] : (FC_T)0;
            }
            {
                const FC_T *sp = sr + 2 * lo - g->pl;
                for (q = 0; q < hi - lo; q++) {
                    r0[lo + q] = sp[2 * q];
                    r1[lo + q] = sp[2 * q + 1];
                }
            }
            for (q = hi; q < Wq; q++) {
                const ptrdiff_t i0 = 2 * q - g->pl;
                r0[q] = (i0 >= 0 && i0 < g->w) ? sr[i0] : (FC_T)0;
                r1[q] = (i0 + 1 >= 0 && i0 + 1 < g->w) ? sr[i0 + 1] : (FC_T)0;
            }
        }
        return;
    }
    for (ph = 0; ph < g->sx; ph++)
        for (r = 0; r < Hp; r++) {
            FC_T *row = xs + (ph * Hp + r) * Wq;
            const ptrdiff_t iy = r - g->pt;
            if (iy < 0 || iy >= g->h) {
                memset(row, 0, Wq * sizeof(FC_T));
                continue;
            }
            {  /* zeros, columns q_lo .. q_hi - 1 of x (every sx-th from ph - pl), zeros */
                const ptrdiff_t off = ph - g->pl;  /* ix = q * sx + off */
                ptrdiff_t lo = off < 0 ? (-off + g->sx - 1) / g->sx : 0;
                ptrdiff_t hi = g->w - 1 - off >= 0 ? (g->w - 1 - off) / g->sx + 1 : 0;
                const FC_T *sr = src + iy * g->w;
                if (hi > Wq)
                    hi = Wq;
                if (lo > hi)
                    lo = hi;
                memset(row, 0, lo * sizeof(FC_T));
                if (g->sx == 1)
                    memcpy(row + lo, sr + lo + off, (hi - lo) * sizeof(FC_T));
                else
                    for (q = lo; q < hi; q++)
                        row[q] = sr[q * g->sx + off];
                memset(row + hi, 0, (Wq - hi) * sizeof(FC_T));
            }
        }
}

typedef struct {
    const fc_conv *g;
    const FC_FN(fc_dwk) *k;
    const FC_T *x, *w, *bias, *gy;
    FC_T *y;
    ptrdiff_t n_per;
    ptrdiff_t cb;   /* the weight gradient's channels per work item (channels_last) */
    int relu;   /* the forward's output pass: 0, 1 (ReLU) or FC_RELU6 */
} FC_FN(fc_dw_args);

/* ReLU (relu 1) or ReLU6 (FC_RELU6) over y[0, len) in place, as fc_tile_store applies
 * them: the forward's output pass, run on each row or plane while it is in cache. */
static void FC_FN(fc_dw_act)(FC_T *y, ptrdiff_t len, int relu)
{
    ptrdiff_t i;
    if (relu == FC_RELU6) {
#pragma omp simd
        for (i = 0; i < len; i++)
            y[i] = FC_FN(fc_relu6_1)(y[i]);
    } else if (relu) {
#pragma omp simd
        for (i = 0; i < len; i++)
            y[i] = FC_FN(fc_relu1)(y[i]);
    }
}

/* ---- channels_last ------------------------------------------------------------------ */
static void FC_FN(fc_dw_fwd_row)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, n = it / g->oh, oy = it % g->oh;
    const ptrdiff_t iy0 = oy * g->sy - g->pt;
    const FC_T *ximg = a->x + n * g->h * g->w * C;
    FC_T *yrow = a->y + (n * g->oh + oy) * g->ow * CO;
    ptrdiff_t *xo = (ptrdiff_t *)sc[0], *wo = xo + g->kh * g->kw;
    ptrdiff_t ki, kj, ox, lo, hi, nt = 0, co, t;
    fc_dw_interior(g, &lo, &hi);
    if (M > 1)
        lo = hi = 0;   /* (plain loops below for every pixel) */
    for (ki = 0; ki < g->kh; ki++) {
        const ptrdiff_t iy = iy0 + ki * g->dy;
        if (iy < 0 || iy >= g->h)
            continue;
        for (kj = 0; kj < g->kw; kj++, nt++) {
            xo[nt] = (iy * g->w + kj * g->dx) * C;
            wo[nt] = (ki * g->kw + kj) * CO;
        }
    }
    if (hi > lo) {
        /* whole rows of three columns (every row's taps in x) go to fwd3 */
        const int three = g->kw == 3 && g->dx == 1 && (g->sx == 1 || g->sx == 2);
        (three ? a->k->fwd3[g->sx - 1] : a->k->fwd)(
            nt, xo, wo, ximg + (lo * g->sx - g->pl) * C, g->sx * C, a->w, a->bias,
            yrow + lo * CO, CO, hi - lo, C, a->relu);
    }
    for (ox = 0; ox < g->ow; ox++) {
        const ptrdiff_t ix0 = ox * g->sx - g->pl;
        ptrdiff_t ne = 0;
        if (ox == lo && hi > lo) {
            ox = hi - 1;
            continue;
        }
        for (ki = 0; ki < g->kh; ki++) {
            const ptrdiff_t iy = iy0 + ki * g->dy;
            if (iy < 0 || iy >= g->h)
                continue;
            for (kj = 0; kj < g->kw; kj++) {
                const ptrdiff_t ix = ix0 + kj * g->dx;
                if (ix < 0 || ix >= g->w)
                    continue;
                xo[ne] = (iy * g->w + ix) * C;
                wo[ne++] = (ki * g->kw + kj) * CO;
            }
        }
        if (M == 1) {
            a->k->fwd(ne, xo, wo, ximg, 0, a->w, a->bias, yrow + ox * CO, 0, 1, C,
                      a->relu);
            continue;
        }
        for (co = 0; co < CO; co++) {
            FC_T s = a->bias ? a->bias[co] : (FC_T)0;
            for (t = 0; t < ne; t++)
                s += ximg[xo[t] + co / M] * a->w[wo[t] + co];
            yrow[ox * CO + co] = s;
        }
        FC_FN(fc_dw_act)(yrow + ox * CO, CO, a->relu);
    }
}

static void FC_FN(fc_dw_gin_row)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, n = it / g->h, iy = it % g->h;
    ptrdiff_t *go = (ptrdiff_t *)sc[0], *wo = go + g->kh * g->kw;
    FC_T *gxrow = a->y + (n * g->h + iy) * g->w * C;
    ptrdiff_t ix, kj, c, j, t, ph;
    /* Strided, M = 1, rows of FC_DW_GIN_RUN pixels per phase or more: the pixels of one
     * column phase (ix mod sx) read the same taps, at grad_y pixels one apart for
     * pixels sx apart, so the phase's run of pixels whose taps all exist is one fwd
     * call (the same sums in the same order); run[ph] holds its first and last pixel,
     * the others go one by one below.  (Shorter rows and runs: the calls cost more
     * than they save, docs/design/algorithms.md.) */
    ptrdiff_t run[2 * FC_DW_GIN_PHASES];
    const int runs = M == 1 && g->sx > 1 && g->sx <= FC_DW_GIN_PHASES &&
                     g->w >= 2 * FC_DW_GIN_RUN * g->sx;
    for (ph = 0; runs && ph < g->sx; ph++) {
        ptrdiff_t lo = 0, hi = g->w - 1, first, nt, cnt;
        run[2 * ph] = 0;
        run[2 * ph + 1] = -1;
        for (kj = 0; kj < g->kw; kj++) {  /* the phase's taps: bounds of its run */
            const ptrdiff_t k = kj * g->dx - g->pl;   /* nx = ix - k */
            if (((ph - k) % g->sx + g->sx) % g->sx)
                continue;
            lo = k > lo ? k : lo;
            hi = (g->ow - 1) * g->sx + k < hi ? (g->ow - 1) * g->sx + k : hi;
        }
        first = lo + ((ph - lo) % g->sx + g->sx) % g->sx;
        cnt = first <= hi ? (hi - first) / g->sx + 1 : 0;
        if (cnt < FC_DW_GIN_RUN)
            continue;
        nt = fc_dw_gin_taps(g, n, iy, first, go, wo);  /* (pixel first + j sx: go + j) */
        a->k->fwd(nt, go, wo, a->gy, CO, a->w, NULL, gxrow + first * C, g->sx * C, cnt,
                  C, 0);
        run[2 * ph] = first;
        run[2 * ph + 1] = first + (cnt - 1) * g->sx;
    }
    for (ix = 0; ix < g->w; ix++) {
        ptrdiff_t nt;
        if (runs && ix >= run[2 * (ix % g->sx)] && ix <= run[2 * (ix % g->sx) + 1])
            continue;
        nt = fc_dw_gin_taps(g, n, iy, ix, go, wo);
        if (M == 1) {
            a->k->fwd(nt, go, wo, a->gy, 0, a->w, NULL, gxrow + ix * C, 0, 1, C, 0);
            continue;
        }
        for (c = 0; c < C; c++) {
            FC_T s = 0;
            for (t = 0; t < nt; t++)
                for (j = 0; j < M; j++)
                    s += a->gy[go[t] + c * M + j] * a->w[wo[t] + c * M + j];
            gxrow[ix * C + c] = s;
        }
    }
}

/* Item (group of images, block of a->cb output channels): y is the partial sums
 * (groups, kh * kw, C_out). */
static void FC_FN(fc_dw_gw_block)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, khw = g->kh * g->kw;
    const ptrdiff_t nb = (CO + a->cb - 1) / a->cb, gi = it / nb;
    const ptrdiff_t c0 = (it % nb) * a->cb;
    const ptrdiff_t cw = (CO - c0 < a->cb) ? CO - c0 : a->cb;
    const ptrdiff_t n1 = (gi + 1) * a->n_per < g->n ? (gi + 1) * a->n_per : g->n;
    ptrdiff_t *xo = (ptrdiff_t *)sc[0], *wo = xo + khw;
    FC_T *dst = a->y + gi * khw * CO + c0;
    ptrdiff_t n, oy, ox, ki, kj, lo, hi, co, t;
    fc_dw_interior(g, &lo, &hi);
    if (M > 1)
        lo = hi = 0;
    for (n = gi * a->n_per; n < n1; n++) {
        const FC_T *ximg = a->x + n * g->h * g->w * C;
        for (oy = 0; oy < g->oh; oy++) {
            const ptrdiff_t iy0 = oy * g->sy - g->pt;
            const FC_T *gyrow = a->gy + (n * g->oh + oy) * g->ow * CO + c0;
            ptrdiff_t nt = 0;
            for (ki = 0; ki < g->kh; ki++) {
                const ptrdiff_t iy = iy0 + ki * g->dy;
                if (iy < 0 || iy >= g->h)
                    continue;
                for (kj = 0; kj < g->kw; kj++, nt++) {
                    xo[nt] = (iy * g->w + kj * g->dx) * C;
                    wo[nt] = (ki * g->kw + kj) * CO;
                }
            }
            if (hi > lo)  /* (gw3: rows of three columns at stride 1) */
                (g->kw == 3 && g->dx == 1 && g->sx == 1 ? a->k->gw3 : a->k->gw)(
                    nt, xo, wo, ximg + (lo * g->sx - g->pl) * C + c0, g->sx * C,
                    gyrow + lo * CO, CO, hi - lo, cw, dst);
            for (ox = 0; ox < g->ow; ox++) {
                const ptrdiff_t ix0 = ox * g->sx - g->pl;
                ptrdiff_t ne = 0;
                if (ox == lo && hi > lo) {
                    ox = hi - 1;
                    continue;
                }
                for (ki = 0; ki < g->kh; ki++) {
                    const ptrdiff_t iy = iy0 + ki * g->dy;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    for (kj = 0; kj < g->kw; kj++) {
                        const ptrdiff_t ix = ix0 + kj * g->dx;
                        if (ix < 0 || ix >= g->w)
                            continue;
                        xo[ne] = (iy * g->w + ix) * C;
                        wo[ne++] = (ki * g->kw + kj) * CO;
                    }
                }
                if (M == 1) {
                    a->k->gw(ne, xo, wo, ximg + c0, 0, gyrow + ox * CO, 0, 1, cw, dst);
                    continue;
                }
                for (t = 0; t < ne; t++)
                    for (co = 0; co < cw; co++)
                        dst[wo[t] + co] += gyrow[ox * CO + co] *
                                           ximg[xo[t] + (c0 + co) / M];
            }
        }
    }
}

/* ---- channels_first ----------------------------------------------------------------- */
static void FC_FN(fc_dw_fwd_plane)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, n = it / C, c = it % C;
    const ptrdiff_t khw = g->kh * g->kw;
    ptrdiff_t Hp, Wq, j, oy;
    FC_T *xs = (FC_T *)sc[0];
    ptrdiff_t *xo = (ptrdiff_t *)sc[1];
    fc_dw_dims(g, &Hp, &Wq);
    fc_dw_plane_taps(g, Hp, Wq, xo);
    FC_FN(fc_dw_fill)(g, a->x + (n * C + c) * g->h * g->w, xs, Hp, Wq);
    for (j = 0; j < M; j++) {
        const ptrdiff_t co = c * M + j;
        const FC_T b = a->bias ? a->bias[co] : (FC_T)0;
        FC_T *yp = a->y + (n * CO + co) * g->oh * g->ow;
        if (a->n_per) {  /* one run over the rows at pitch sy * Wq, then the crop */
            const ptrdiff_t pitch = g->sy * Wq, ox = g->ow;
            FC_T *run = (FC_T *)sc[2];
            a->k->rows(khw, xo, a->w + co * khw, xs, run, (g->oh - 1) * pitch + ox, b);
            for (oy = 0; oy < g->oh; oy++)
                memcpy(yp + oy * ox, run + oy * pitch, ox * sizeof(FC_T));
        } else {
            for (oy = 0; oy < g->oh; oy++)
                a->k->rows(khw, xo, a->w + co * khw, xs + oy * g->sy * Wq,
                           yp + oy * g->ow, g->ow, b);
        }
        FC_FN(fc_dw_act)(yp, g->oh * g->ow, a->relu);
    }
}

static void FC_FN(fc_dw_gin_plane)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, n = it / C, c = it % C;
    const ptrdiff_t khw = g->kh * g->kw;
    ptrdiff_t Hp, Wq, j, oy, t, iy, ix;
    FC_T *xs = (FC_T *)sc[0], *gx = a->y + (n * C + c) * g->h * g->w;
    ptrdiff_t *xo = (ptrdiff_t *)sc[1];
    fc_dw_dims(g, &Hp, &Wq);
    fc_dw_plane_taps(g, Hp, Wq, xo);
    memset(xs, 0, g->sx * Hp * Wq * sizeof(FC_T));
    for (j = 0; j < M; j++) {
        const ptrdiff_t co = c * M + j;
        const FC_T *wt = a->w + co * khw;
        const FC_T *gp = a->gy + (n * CO + co) * g->oh * g->ow;
        for (oy = 0; oy < g->oh; oy++)
            for (t = 0; t < khw; t++)
                a->k->axpy(g->ow, wt[t], gp + oy * g->ow, xs + xo[t] + oy * g->sy * Wq);
    }
    for (iy = 0; iy < g->h; iy++) {
        const ptrdiff_t r = iy + g->pt;
        for (ix = 0; ix < g->w; ix++) {
            const ptrdiff_t col = ix + g->pl, q = col / g->sx;
            gx[iy * g->w + ix] = (r < Hp && q < Wq)
                                     ? xs[((col % g->sx) * Hp + r) * Wq + q] : (FC_T)0;
        }
    }
}

/* Item (group of images, input channel c): y is the partial sums (groups, C_out,
 * kh * kw). */
static void FC_FN(fc_dw_gw_plane)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_dw_args) *a = (const FC_FN(fc_dw_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t C = g->c, CO = g->cout, M = CO / C, gi = it / C, c = it % C;
    const ptrdiff_t khw = g->kh * g->kw;
    const ptrdiff_t n1 = (gi + 1) * a->n_per < g->n ? (gi + 1) * a->n_per : g->n;
    ptrdiff_t Hp, Wq, n, j, t;
    FC_T *xs = (FC_T *)sc[0];
    ptrdiff_t *xo = (ptrdiff_t *)sc[1];
    fc_dw_dims(g, &Hp, &Wq);
    fc_dw_plane_taps(g, Hp, Wq, xo);
    for (n = gi * a->n_per; n < n1; n++) {
        FC_FN(fc_dw_fill)(g, a->x + (n * C + c) * g->h * g->w, xs, Hp, Wq);
        for (j = 0; j < M; j++) {
            const ptrdiff_t co = c * M + j;
            const FC_T *gp = a->gy + (n * CO + co) * g->oh * g->ow;
            FC_T *dst = a->y + (gi * CO + co) * khw;
            for (t = 0; t < khw; t++)
                dst[t] += a->k->dot(g->oh, g->ow, gp, g->ow, xs + xo[t], g->sy * Wq);
        }
    }
}

/* ---- entry points (src/_conv2d.pyx) --------------------------------------------------- */
static int FC_FN(fc_dw_run)(const fc_isa *isa, const fc_conv *g, fc_item_fn item,
                            ptrdiff_t items, int plane, const FC_T *x, const FC_T *w,
                            const FC_T *bias, const FC_T *gy, FC_T *y, ptrdiff_t n_per,
                            ptrdiff_t cb, int relu)
{
    const ptrdiff_t khw = g->kh * g->kw;
    const double macs = (double)g->n * g->oh * g->ow * g->cout * khw;
    fc_loop lp = fc_loop_of(macs, items, FC_DW_CHUNK);
    FC_FN(fc_dw_args) a;
    a.g = g;
    a.k = isa->FC_FN(dw);
    a.x = x;
    a.w = w;
    a.bias = bias;
    a.gy = gy;
    a.y = y;
    a.n_per = n_per;
    a.cb = cb;
    a.relu = relu;
    if (plane) {
        ptrdiff_t Hp, Wq;
        fc_dw_dims(g, &Hp, &Wq);
        fc_scratch(&lp, (size_t)(g->sx * Hp * Wq) * sizeof(FC_T));
        fc_scratch(&lp, (size_t)khw * sizeof(ptrdiff_t));
        if (item == FC_FN(fc_dw_fwd_plane) && n_per)  /* the forward's run of rows */
            fc_scratch(&lp, (size_t)(Hp * Wq) * sizeof(FC_T));
    } else {
        fc_scratch(&lp, (size_t)(2 * khw) * sizeof(ptrdiff_t));
    }
    return fc_parallel_for(&lp, item, &a);
}

/* y = depthwise conv(x) (+ bias), then ReLU (relu 1) or ReLU6 (FC_RELU6). */
static int FC_FN(fc_dw_forward)(const fc_isa *isa, const fc_conv *g, const FC_T *x,
                                const FC_T *wk, const FC_T *bias, FC_T *y, int relu)
{
    ptrdiff_t Hp, Wq, vl = isa->FC_FN(vl), flat;
    double rows_cost, flat_cost;
    if (g->last)
        return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_fwd_row), g->n * g->oh, 0, x, wk, bias,
                                NULL, y, 0, FC_DW_CB, relu);
    /* Rows shorter than a few vectors leave scalar tails: one run over all rows at the
     * padded pitch (computing the columns between them too) where that costs fewer
     * vector steps, a scalar counted as one.  (n_per carries the choice.) */
    fc_dw_dims(g, &Hp, &Wq);
    rows_cost = (double)g->oh * (g->ow / vl + g->ow % vl);
    flat_cost = (double)(((g->oh - 1) * g->sy * Wq + g->ow + vl - 1) / vl);
    flat = flat_cost < rows_cost;
    return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_fwd_plane), g->n * g->c, 1, x, wk, bias,
                            NULL, y, flat, FC_DW_CB, relu);
}

/* gx = the input gradient of grad_y gy (every element written). */
static int FC_FN(fc_dw_grad_input)(const fc_isa *isa, const fc_conv *g, const FC_T *gy,
                                   const FC_T *wk, FC_T *gx)
{
    if (g->last)
        return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_gin_row), g->n * g->h, 0, NULL, wk,
                                NULL, gy, gx, 0, FC_DW_CB, 0);
    return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_gin_plane), g->n * g->c, 1, NULL, wk,
                            NULL, gy, gx, 0, FC_DW_CB, 0);
}

/* part (zeroed) += the weight gradient's partial sums, one per group of n_per images:
 * channels_last (groups, kh * kw, C_out), channels_first (groups, C_out, kh * kw). */
static int FC_FN(fc_dw_grad_weight)(const fc_isa *isa, const fc_conv *g, const FC_T *x,
                                    const FC_T *gy, FC_T *part, ptrdiff_t n_per)
{
    const ptrdiff_t groups = (g->n + n_per - 1) / n_per;
    if (g->last) {
        /* fewer items than threads (batch 1 with few channels): narrower blocks, whole
         * vectors of channels (each channel's sums are its own: the same bits however
         * cut) */
        const double macs = (double)g->n * g->oh * g->ow * g->cout * g->kh * g->kw;
        const ptrdiff_t vl = isa->FC_FN(vl), nv = (g->cout + vl - 1) / vl;
        const ptrdiff_t parts = fc_parts_per_group(macs, groups, nv);
        ptrdiff_t cb = FC_DW_CB;
        if (parts > (g->cout + FC_DW_CB - 1) / FC_DW_CB)
            cb = (nv + parts - 1) / parts * vl;
        return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_gw_block),
                                groups * ((g->cout + cb - 1) / cb), 0, x, NULL, NULL, gy,
                                part, n_per, cb, 0);
    }
    return FC_FN(fc_dw_run)(isa, g, FC_FN(fc_dw_gw_plane), groups * g->c, 1, x, NULL,
                            NULL, gy, part, n_per, FC_DW_CB, 0);
}
