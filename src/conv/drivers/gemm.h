/* The packed implicit GEMM (any stride, dilation, groups, layout): im2col straight
 * into the micro-kernel's packed panels; forward strips, weight-gradient items, the
 * scattered input gradient, the bias gradient.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/gemm.h is a template: include conv/conv.h"
#endif

/* d[t * ds] = row[(ix0 + t * step) * xs] where 0 <= ix0 + t * step < W, else 0. */
static inline void FC_FN(fc_gather)(FC_T *d, ptrdiff_t ds, const FC_T *row, ptrdiff_t ix0,
                                    ptrdiff_t step, ptrdiff_t xs, ptrdiff_t len,
                                    ptrdiff_t W)
{
    ptrdiff_t lo = 0, hi, t;
    if (ix0 < 0)
        lo = (-ix0 + step - 1) / step;
    if (ix0 >= W)
        hi = 0;
    else
        hi = (W - 1 - ix0) / step + 1;
    if (hi > len)
        hi = len;
    if (lo > len)
        lo = len;
    if (hi < lo)
        hi = lo;
    for (t = 0; t < lo; t++)
        d[t * ds] = 0;
    if (ds == 1 && step * xs == 1) {
        memcpy(d + lo, row + ix0 + lo, (size_t)(hi - lo) * sizeof(FC_T));
    } else {
        const FC_T *src = row + (ix0 + lo * step) * xs;
        const ptrdiff_t ss = step * xs;
        for (t = lo; t < hi; t++)
            d[t * ds] = src[(t - lo) * ss];
    }
    for (t = hi; t < len; t++)
        d[t * ds] = 0;
}

/* Pointer to x[n, c, iy, 0] (its ix stride is fc_xs(g)). */
static inline const FC_T *FC_FN(fc_xrow)(const fc_conv *g, const FC_T *x, ptrdiff_t n,
                                         ptrdiff_t c, ptrdiff_t iy)
{
    if (g->last)
        return x + ((n * g->h + iy) * g->w) * g->c + c;
    return x + ((n * g->c + c) * g->h + iy) * g->w;
}

/* Pointer to y[n, co, oy, ox] (its ox stride is 1, or C_out for channels_last). */
static inline FC_T *FC_FN(fc_yptr)(const fc_conv *g, FC_T *y, ptrdiff_t n, ptrdiff_t co,
                                   ptrdiff_t oy, ptrdiff_t ox)
{
    if (g->last)
        return y + ((n * g->oh + oy) * g->ow + ox) * g->cout + co;
    return y + ((n * g->cout + co) * g->oh + oy) * g->ow + ox;
}

/* Gather im2col rows kr[0..nk) for columns col[0..cnt) of the group at offset goff:
 * bp[k * rs + jj * cs] (zero where a window reads padding). */
static void FC_FN(fc_pack_im2col)(const fc_conv *g, const FC_T *x, ptrdiff_t goff,
                                  const fc_krow *kr, ptrdiff_t nk, const fc_col *col,
                                  ptrdiff_t cnt, int inside, FC_T *bp, ptrdiff_t rs,
                                  ptrdiff_t cs)
{
    ptrdiff_t k, jj;
    int contiguous = inside && nk > 0 && rs == 1;
    for (k = 1; k < nk && contiguous; k++)
        contiguous = kr[k].off == kr[0].off + k;
    if (contiguous) {  /* rows are consecutive elements, panel rows too: copy runs */
        const FC_T *x0 = x + goff + kr[0].off;
        for (jj = 0; jj < cnt; jj++)
            memcpy(bp + jj * cs, x0 + col[jj].base, (size_t)nk * sizeof(FC_T));
        return;
    }
    for (k = 0; k < nk; k++) {
        FC_T *d = bp + k * rs;
        const FC_T *xk = x + goff + kr[k].off;
        if (inside) {
            for (jj = 0; jj < cnt; jj++)
                d[jj * cs] = xk[col[jj].base];
        } else {
            const ptrdiff_t ky = kr[k].dy, kx = kr[k].dx;
            for (jj = 0; jj < cnt; jj++) {
                const ptrdiff_t iy = col[jj].iy + ky, ix = col[jj].ix + kx;
                d[jj * cs] = (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
                                 ? xk[col[jj].base] : (FC_T)0;
            }
        }
    }
}

/* Write rows [0, rows) of a tile to y (channels co0..), adding bias, optional ReLU. */
static void FC_FN(fc_store_tile)(const fc_conv *g, const FC_T *tile, FC_T *y,
                                 const FC_T *bias, ptrdiff_t co0, ptrdiff_t rows,
                                 const fc_seg *seg, ptrdiff_t ns, ptrdiff_t j0,
                                 ptrdiff_t cnt, int relu)
{
    const ptrdiff_t nr = g->nr;
    ptrdiff_t i, s, t, jj;
    if (g->last) {
        for (jj = 0; jj < cnt; jj++) {
            FC_T *dst = y + (j0 + jj) * g->cout + co0;
            for (i = 0; i < rows; i++) {
                FC_T v = tile[i * nr + jj] + (bias ? bias[co0 + i] : (FC_T)0);
                dst[i] = (relu && v < 0) ? (FC_T)0 : v;
            }
        }
        return;
    }
    for (i = 0; i < rows; i++) {
        const FC_T b = bias ? bias[co0 + i] : (FC_T)0;
        const FC_T *src = tile + i * nr;
        for (s = 0; s < ns; s++) {
            const fc_seg *sg = &seg[s];
            FC_T *dst = FC_FN(fc_yptr)(g, y, sg->n, co0 + i, sg->oy, sg->ox0);
            const FC_T *sv = src + sg->jj0;
            if (relu) {
                for (t = 0; t < sg->len; t++) {
                    FC_T v = sv[t] + b;
                    dst[t] = v < 0 ? (FC_T)0 : v;
                }
            } else {
                for (t = 0; t < sg->len; t++)
                    dst[t] = sv[t] + b;
            }
        }
    }
}

/* Write rows [0, rows) of a tile to y through explicit runs (seg[s].jj0 = tile column). */
static void FC_FN(fc_store_tile_segs)(const fc_conv *g, const FC_T *tile, FC_T *y,
                                      const FC_T *bias, ptrdiff_t co0, ptrdiff_t rows,
                                      const fc_seg *seg, ptrdiff_t ns, int relu)
{
    const ptrdiff_t nr = g->nr, ys = g->last ? g->cout : 1;
    ptrdiff_t i, s, t;
    for (i = 0; i < rows; i++) {
        const FC_T b = bias ? bias[co0 + i] : (FC_T)0;
        const FC_T *src = tile + i * nr;
        for (s = 0; s < ns; s++) {
            const fc_seg *sg = &seg[s];
            FC_T *dst = FC_FN(fc_yptr)(g, y, sg->n, co0 + i, sg->oy, sg->ox0);
            const FC_T *sv = src + sg->jj0;
            if (ys == 1) {
                if (relu) {
                    for (t = 0; t < sg->len; t++) {
                        FC_T v = sv[t] + b;
                        dst[t] = v < 0 ? (FC_T)0 : v;
                    }
                } else {
                    for (t = 0; t < sg->len; t++)
                        dst[t] = sv[t] + b;
                }
            } else {
                for (t = 0; t < sg->len; t++) {
                    FC_T v = sv[t] + b;
                    dst[t * ys] = (relu && v < 0) ? (FC_T)0 : v;
                }
            }
        }
    }
}

/* Forward, one strip s of nr output pixels, every group.
 * ap: packed weights (groups, ceil(cog/mr), kg, mr); kr: the kg im2col rows.  Scratch:
 * bp kg*nr, tile mr*nr, seg and col nr entries each. */
static void FC_FN(fc_forward_strip)(const fc_conv *g, FC_FN(fc_kernel_t) kern,
                                    const FC_T *x, const FC_T *ap, const fc_krow *kr,
                                    const FC_T *bias, FC_T *y, ptrdiff_t s, int relu,
                                    FC_T *bp, FC_T *tile, fc_seg *seg, fc_col *col)
{
    const ptrdiff_t mr = g->mr, nr = g->nr;
    const ptrdiff_t total = g->n * g->oh * g->ow, j0 = s * nr;
    const ptrdiff_t cnt = (total - j0 < nr) ? total - j0 : nr;
    const ptrdiff_t nms = (g->cog + mr - 1) / mr;
    const ptrdiff_t ns = fc_segments(j0, cnt, g->oh, g->ow, seg);
    const int inside = fc_fill_cols(g, j0, cnt, col);
    ptrdiff_t grp, ms, k, jj;
    if (cnt < nr)
        for (k = 0; k < g->kg; k++)
            for (jj = cnt; jj < nr; jj++)
                bp[k * nr + jj] = 0;
    for (grp = 0; grp < g->groups; grp++) {
        FC_FN(fc_pack_im2col)(g, x, fc_group_offset(g, grp), kr, g->kg, col, cnt, inside,
                              bp, nr, 1);
        for (ms = 0; ms < nms; ms++) {
            const ptrdiff_t rows = (g->cog - ms * mr < mr) ? g->cog - ms * mr : mr;
            kern(g->kg, ap + (grp * nms + ms) * g->kg * mr, bp, tile, nr, 0);
            FC_FN(fc_store_tile)(g, tile, y, bias, grp * g->cog + ms * mr, rows, seg, ns,
                                 j0, cnt, relu);
        }
    }
}

/* Weight gradient of images [n_lo, n_hi), group grp, accumulated into part
 * (groups, ceil(cog/mr)*mr, ceil(kg/nr)*nr); kr: the kg im2col rows.
 * Scratch: ap ceil(cog/mr)*mr*pcmax, bp pcmax*nr, seg and col pcmax entries each. */
static void FC_FN(fc_grad_weight_item)(const fc_conv *g, FC_FN(fc_kernel_t) kern,
                                       const FC_T *x, const FC_T *gy, const fc_krow *kr,
                                       FC_T *part, ptrdiff_t n_lo, ptrdiff_t n_hi,
                                       ptrdiff_t grp, ptrdiff_t pcmax, FC_T *ap, FC_T *bp,
                                       fc_seg *seg, fc_col *col)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, P = g->oh * g->ow;
    const ptrdiff_t nms = (g->cog + mr - 1) / mr, nks = (g->kg + nr - 1) / nr;
    const ptrdiff_t kg_pad = nks * nr, cog_pad = nms * mr;
    const ptrdiff_t total = (n_hi - n_lo) * P;
    const ptrdiff_t ys = g->last ? g->cout : 1, goff = fc_group_offset(g, grp);
    FC_T *pg = part + grp * cog_pad * kg_pad;
    ptrdiff_t j0, cl, s, t, ks, kk, ms;
    for (j0 = 0; j0 < total; j0 += pcmax) {
        const ptrdiff_t pc = (total - j0 < pcmax) ? total - j0 : pcmax;
        const ptrdiff_t ns = fc_segments(n_lo * P + j0, pc, g->oh, g->ow, seg);
        const int inside = fc_fill_cols(g, n_lo * P + j0, pc, col);
        /* A panel: grad_y block, ap[(ms * pc + t) * mr + i]. */
        if (g->last) {  /* pixel j's channels are contiguous at j * C_out */
            for (t = 0; t < pc; t++) {
                const FC_T *src = gy + (n_lo * P + j0 + t) * g->cout + grp * g->cog;
                for (cl = 0; cl < cog_pad; cl++)
                    ap[((cl / mr) * pc + t) * mr + (cl % mr)] =
                        cl < g->cog ? src[cl] : (FC_T)0;
            }
        } else
        for (cl = 0; cl < cog_pad; cl++) {
            FC_T *d = ap + (cl / mr) * pc * mr + (cl % mr);
            if (cl >= g->cog) {
                for (t = 0; t < pc; t++)
                    d[t * mr] = 0;
                continue;
            }
            for (s = 0; s < ns; s++) {
                const fc_seg *sg = &seg[s];
                const FC_T *src = FC_FN(fc_yptr)(g, (FC_T *)gy, sg->n, grp * g->cog + cl,
                                                 sg->oy, sg->ox0);
                FC_T *dd = d + sg->jj0 * mr;
                for (t = 0; t < sg->len; t++)
                    dd[t * mr] = src[t * ys];
            }
        }
        for (ks = 0; ks < nks; ks++) {
            /* B panel: im2col transposed, bp[t * nr + kk]. */
            const ptrdiff_t nk = (g->kg - ks * nr < nr) ? g->kg - ks * nr : nr;
            FC_FN(fc_pack_im2col)(g, x, goff, kr + ks * nr, nk, col, pc, inside, bp, 1, nr);
            for (kk = nk; kk < nr; kk++)
                for (t = 0; t < pc; t++)
                    bp[t * nr + kk] = 0;
            for (ms = 0; ms < nms; ms++)
                kern(pc, ap + ms * pc * mr, bp, pg + ms * mr * kg_pad + ks * nr, kg_pad, 1);
        }
    }
}

/* Input gradient of images [n_lo, n_hi) by scatter (any stride), every group; gx
 * pre-zeroed.  Columns run over the pixels of all these images (several images per
 * strip when images have fewer than nr output pixels); no other item touches them.
 * at: packed transposed weights (groups, ceil(kg/mr), cog, mr).  Scratch: bp cog*nr,
 * tile mr*nr, seg nr entries. */
static void FC_FN(fc_grad_input_images)(const fc_conv *g, FC_FN(fc_kernel_t) kern,
                                        const FC_T *gy, const FC_T *at, FC_T *gx,
                                        ptrdiff_t n_lo, ptrdiff_t n_hi, FC_T *bp,
                                        FC_T *tile, fc_seg *seg)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, khw = g->kh * g->kw;
    const ptrdiff_t P = (n_hi - n_lo) * g->oh * g->ow, j_base = n_lo * g->oh * g->ow;
    const ptrdiff_t nmk = (g->kg + mr - 1) / mr;
    const ptrdiff_t xs = g->last ? g->c : 1, ys = g->last ? g->cout : 1;
    ptrdiff_t grp, j0, cl, s, t, mk, i;
    for (grp = 0; grp < g->groups; grp++) {
        for (j0 = 0; j0 < P; j0 += nr) {
            const ptrdiff_t cnt = (P - j0 < nr) ? P - j0 : nr;
            const ptrdiff_t ns = fc_segments(j_base + j0, cnt, g->oh, g->ow, seg);
            for (cl = 0; cl < g->cog; cl++) {
                FC_T *d = bp + cl * nr;
                for (s = 0; s < ns; s++) {
                    const fc_seg *sg = &seg[s];
                    const FC_T *src = FC_FN(fc_yptr)(g, (FC_T *)gy, sg->n,
                                                     grp * g->cog + cl, sg->oy, sg->ox0);
                    for (t = 0; t < sg->len; t++)
                        d[sg->jj0 + t] = src[t * ys];
                }
                for (t = cnt; t < nr; t++)
                    d[t] = 0;
            }
            for (mk = 0; mk < nmk; mk++) {
                const ptrdiff_t rows = (g->kg - mk * mr < mr) ? g->kg - mk * mr : mr;
                kern(g->cog, at + (grp * nmk + mk) * g->cog * mr, bp, tile, nr, 0);
                for (i = 0; i < rows; i++) {
                    const ptrdiff_t k = mk * mr + i, c = k / khw;
                    const ptrdiff_t ki = (k % khw) / g->kw, kj = k % g->kw;
                    const FC_T *src = tile + i * nr;
                    for (s = 0; s < ns; s++) {
                        const fc_seg *sg = &seg[s];
                        const ptrdiff_t iy = sg->oy * g->sy + ki * g->dy - g->pt;
                        const ptrdiff_t ix0 = sg->ox0 * g->sx + kj * g->dx - g->pl;
                        FC_T *row;
                        if (iy < 0 || iy >= g->h)
                            continue;
                        row = (FC_T *)FC_FN(fc_xrow)(g, gx, sg->n, grp * g->cg + c, iy);
                        for (t = 0; t < sg->len; t++) {
                            const ptrdiff_t ix = ix0 + t * g->sx;
                            if (ix >= 0 && ix < g->w)
                                row[ix * xs] += src[sg->jj0 + t];
                        }
                    }
                }
            }
        }
    }
}

/* Bias gradient of images [n_lo, n_hi): bsum[co] += sum of grad_y[n, co] for each image
 * in order; an image's sum runs row by row in float64 over 8 lanes (lane = ox % 8) added
 * pairwise at the end.  The one definition of the bias gradient: every path calls this. */
#ifndef FC_BIAS_BLOCK
#define FC_BIAS_BLOCK 64
#endif
FC_CLONES static void FC_FN(fc_bias_grad_item)(const fc_conv *g, const FC_T *gy, double *bsum,
                                     ptrdiff_t n_lo, ptrdiff_t n_hi)
{
    const ptrdiff_t ys = g->last ? g->cout : 1;
    ptrdiff_t n, co, oy, ox, l;
    if (g->oh * g->ow == 1) {  /* the same sums: one value per lane-0 accumulator */
        for (n = n_lo; n < n_hi; n++)
            for (co = 0; co < g->cout; co++)
                bsum[co] += (double)gy[n * g->cout + co];
        return;
    }
    if (ys != 1 && g->cout <= FC_BIAS_BLOCK) {
        /* channels_last, few channels: an image's grad_y read as one flat run, lane j
         * of L = a multiple of cout summing the elements e = j (mod L), so every lane
         * holds one channel; lanes of a channel are added in order at the end. */
        const ptrdiff_t C = g->cout, L = FC_BIAS_BLOCK / C * C, len = g->oh * g->ow * C;
        double acc[FC_BIAS_BLOCK];
        ptrdiff_t e, j, c, m;
        memset(acc, 0, sizeof(acc));
        for (n = n_lo; n < n_hi; n++) {
            const FC_T *src = gy + n * len;
            for (e = 0; e + L <= len; e += L)
                for (j = 0; j < L; j++)
                    acc[j] += (double)src[e + j];
            for (j = 0; e + j < len; j++)
                acc[j] += (double)src[e + j];
        }
        for (c = 0; c < C; c++) {
            double sum = 0;
            for (m = 0; m < L; m += C)
                sum += acc[m + c];
            bsum[c] += sum;
        }
        return;
    }
    if (ys != 1) {  /* channels_last: the same sums, reading each pixel's channels
                       * together (a block of FC_BIAS_BLOCK channels at a time) */
        double acc[FC_BIAS_BLOCK][8];
        ptrdiff_t c0, nc, c;
        for (n = n_lo; n < n_hi; n++)
            for (c0 = 0; c0 < g->cout; c0 += FC_BIAS_BLOCK) {
                nc = (g->cout - c0 < FC_BIAS_BLOCK) ? g->cout - c0 : FC_BIAS_BLOCK;
                memset(acc, 0, sizeof(acc));
                for (oy = 0; oy < g->oh; oy++) {
                    const FC_T *src = FC_FN(fc_yptr)(g, (FC_T *)gy, n, c0, oy, 0);
                    for (ox = 0; ox < g->ow; ox++)
                        for (c = 0; c < nc; c++)
                            acc[c][ox & 7] += (double)src[ox * ys + c];
                }
                for (c = 0; c < nc; c++)
                    bsum[c0 + c] += ((acc[c][0] + acc[c][1]) + (acc[c][2] + acc[c][3])) +
                                    ((acc[c][4] + acc[c][5]) + (acc[c][6] + acc[c][7]));
            }
        return;
    }
    for (n = n_lo; n < n_hi; n++)
        for (co = 0; co < g->cout; co++) {
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (oy = 0; oy < g->oh; oy++) {
                const FC_T *src = FC_FN(fc_yptr)(g, (FC_T *)gy, n, co, oy, 0);
                for (ox = 0; ox + 8 <= g->ow; ox += 8)
                    for (l = 0; l < 8; l++)
                        acc[l] += (double)src[ox + l];
                for (; ox < g->ow; ox++)
                    acc[ox & 7] += (double)src[ox];
            }
            bsum[co] += ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                        ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
}

/* ---- entry points (src/_conv2d.pyx): one parallel loop each (parallel.h) ---------- */

/* The im2col row table of g (kg rows, then mr + nr spare entries), or NULL. */
static fc_krow *FC_FN(fc_krows)(const fc_conv *g)
{
    fc_krow *kr = (fc_krow *)fc_alloc((g->kg + g->mr + g->nr) * sizeof(fc_krow));
    if (kr != NULL)
        fc_fill_krows(g, kr);
    return kr;
}

/* g with the packed GEMM tile of the ISA for this dtype. */
static fc_conv FC_FN(fc_gemm_geometry)(const fc_isa *isa, const fc_conv *g0)
{
    fc_conv g = *g0;
    g.mr = isa->FC_FN(mr);
    g.nr = isa->FC_FN(nr);
    return g;
}

typedef struct {
    const fc_conv *g;
    FC_FN(fc_kernel_t) kern;
    const FC_T *x, *a, *gy, *bias;
    const fc_krow *kr;
    FC_T *y;
    int relu;
    ptrdiff_t n_per, pcmax, part_stride;
    double *bsum;
} FC_FN(fc_gemm_args);

static void FC_FN(fc_gemm_forward_item)(const void *args, ptrdiff_t s, void *const *sc)
{
    const FC_FN(fc_gemm_args) *a = (const FC_FN(fc_gemm_args) *)args;
    FC_FN(fc_forward_strip)(a->g, a->kern, a->x, a->a, a->kr, a->bias, a->y, s, a->relu,
                            (FC_T *)sc[0], (FC_T *)sc[1], (fc_seg *)sc[2], (fc_col *)sc[3]);
}

/* y = conv(x) (+ bias) (then ReLU); ap: packed weights (groups, ceil(cog / MR), kg, MR).
 * Parallel over strips of NR output pixels. */
static int FC_FN(fc_gemm_forward)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                  const FC_T *ap, const FC_T *bias, FC_T *y, int relu)
{
    const fc_conv g = FC_FN(fc_gemm_geometry)(isa, g0);
    const ptrdiff_t mr = g.mr, nr = g.nr, total = g.n * g.oh * g.ow;
    const ptrdiff_t nstrips = (total + nr - 1) / nr;
    fc_loop lp = fc_loop_of((double)total * g.cout * g.kg, nstrips, 2);
    FC_FN(fc_gemm_args) a = {&g, isa->FC_FN(kern), x, ap, NULL, bias, NULL, y, relu, 0, 0,
                             0, NULL};
    int rc;
    fc_krow *kr = FC_FN(fc_krows)(&g);
    if (kr == NULL)
        return FC_ENOMEM_TABLE;
    a.kr = kr;
    fc_scratch(&lp, g.kg * nr * sizeof(FC_T));  /* bp */
    fc_scratch(&lp, mr * nr * sizeof(FC_T));    /* tile */
    fc_scratch(&lp, nr * sizeof(fc_seg));
    fc_scratch(&lp, nr * sizeof(fc_col));
    rc = fc_parallel_for(&lp, FC_FN(fc_gemm_forward_item), &a);
    fc_free(kr);
    return rc;
}

static void FC_FN(fc_gemm_grad_weight_item)(const void *args, ptrdiff_t it,
                                            void *const *sc)
{
    const FC_FN(fc_gemm_args) *a = (const FC_FN(fc_gemm_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t ig = it / g->groups, grp = it % g->groups, n_lo = ig * a->n_per;
    const ptrdiff_t n_hi = n_lo + a->n_per > g->n ? g->n : n_lo + a->n_per;
    FC_FN(fc_grad_weight_item)(g, a->kern, a->x, a->gy, a->kr, a->y + ig * a->part_stride,
                               n_lo, n_hi, grp, a->pcmax, (FC_T *)sc[0], (FC_T *)sc[1],
                               (fc_seg *)sc[2], (fc_col *)sc[3]);
}

/* Partial weight gradients, one per group of n_per images: part is zeroed, (n_igroups,
 * groups, ceil(cog/MR)*MR, ceil(kg/NR)*NR).  Parallel over (image group, conv group). */
static int FC_FN(fc_gemm_grad_weight)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                      const FC_T *gy, FC_T *part, ptrdiff_t n_per,
                                      ptrdiff_t pcmax)
{
    const fc_conv g = FC_FN(fc_gemm_geometry)(isa, g0);
    const ptrdiff_t mr = g.mr, nr = g.nr, nig = (g.n + n_per - 1) / n_per;
    const ptrdiff_t cog_pad = (g.cog + mr - 1) / mr * mr;
    const ptrdiff_t kg_pad = (g.kg + nr - 1) / nr * nr;
    fc_loop lp = fc_loop_of((double)g.n * g.oh * g.ow * g.cout * g.kg, nig * g.groups, 1);
    FC_FN(fc_gemm_args) a = {&g, isa->FC_FN(kern), x, NULL, gy, NULL, NULL, part, 0, n_per,
                             pcmax, g.groups * cog_pad * kg_pad, NULL};
    int rc;
    fc_krow *kr = FC_FN(fc_krows)(&g);
    if (kr == NULL)
        return FC_ENOMEM_TABLE;
    a.kr = kr;
    fc_scratch(&lp, cog_pad * pcmax * sizeof(FC_T));  /* ap */
    fc_scratch(&lp, pcmax * nr * sizeof(FC_T));       /* bp */
    fc_scratch(&lp, pcmax * sizeof(fc_seg));
    fc_scratch(&lp, pcmax * sizeof(fc_col));
    rc = fc_parallel_for(&lp, FC_FN(fc_gemm_grad_weight_item), &a);
    fc_free(kr);
    return rc;
}

static void FC_FN(fc_gemm_grad_input_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_gemm_args) *a = (const FC_FN(fc_gemm_args) *)args;
    const ptrdiff_t n_lo = it * a->n_per;
    const ptrdiff_t n_hi = n_lo + a->n_per > a->g->n ? a->g->n : n_lo + a->n_per;
    FC_FN(fc_grad_input_images)(a->g, a->kern, a->gy, a->a, a->y, n_lo, n_hi,
                                (FC_T *)sc[0], (FC_T *)sc[1], (fc_seg *)sc[2]);
}

/* gx (zeroed) += scatter of W^T gy, any stride; at: packed transposed weights (groups,
 * ceil(kg/MR), cog, MR).  Parallel over groups of n_per whole images (no two threads
 * add into the same element). */
static int FC_FN(fc_gemm_grad_input)(const fc_isa *isa, const fc_conv *g0, const FC_T *gy,
                                     const FC_T *at, FC_T *gx, ptrdiff_t n_per)
{
    const fc_conv g = FC_FN(fc_gemm_geometry)(isa, g0);
    const ptrdiff_t mr = g.mr, nr = g.nr;
    fc_loop lp = fc_loop_of((double)g.n * g.oh * g.ow * g.cout * g.kg,
                            (g.n + n_per - 1) / n_per, 1);
    FC_FN(fc_gemm_args) a = {&g, isa->FC_FN(kern), NULL, at, gy, NULL, NULL, gx, 0, n_per,
                             0, 0, NULL};
    fc_scratch(&lp, g.cog * nr * sizeof(FC_T));  /* bp */
    fc_scratch(&lp, mr * nr * sizeof(FC_T));     /* tile */
    fc_scratch(&lp, nr * sizeof(fc_seg));
    return fc_parallel_for(&lp, FC_FN(fc_gemm_grad_input_item), &a);
}

static void FC_FN(fc_bias_grad_run_item)(const void *args, ptrdiff_t ig, void *const *sc)
{
    const FC_FN(fc_gemm_args) *a = (const FC_FN(fc_gemm_args) *)args;
    const ptrdiff_t n_hi = (ig + 1) * a->n_per > a->g->n ? a->g->n : (ig + 1) * a->n_per;
    (void)sc;
    FC_FN(fc_bias_grad_item)(a->g, a->gy, a->bsum + ig * a->g->cout, ig * a->n_per, n_hi);
}

/* Partial bias gradients (n_igroups, C_out), zeroed, one per group of n_per images
 * (float64 sums in a fixed order, see fc_bias_grad_item).  Parallel over image groups. */
static int FC_FN(fc_bias_grad)(const fc_conv *g, const FC_T *gy, double *bsum,
                               ptrdiff_t n_per)
{
    const ptrdiff_t nig = (g->n + n_per - 1) / n_per;
    fc_loop lp = fc_loop_of((double)g->n * g->oh * g->ow * g->cout / 4, nig, 1);
    FC_FN(fc_gemm_args) a = {g, NULL, NULL, NULL, gy, NULL, NULL, NULL, 0, n_per, 0, 0,
                             bsum};
    return fc_parallel_for(&lp, FC_FN(fc_bias_grad_run_item), &a);
}
