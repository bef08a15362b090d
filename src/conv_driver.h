/* Convolution drivers around the micro-kernels of conv_kernels.h: implicit GEMM.
 *
 * Nothing here allocates or spawns threads: src/_conv2d.pyx splits the work into items
 * (a strip of output pixels, an image, a group of images), runs them in an OpenMP loop,
 * and hands each thread its own scratch buffers.  An item is computed entirely by one
 * thread in an order fixed by the shapes, so results never depend on the thread count.
 *
 * Every product has the same orientation: rows (MR) are channels, columns (NR) are output
 * pixels, flattened over the batch as j = (n * oh + oy) * ow + ox.  The im2col step writes
 * straight into the packed B panel the micro-kernel reads (no column matrix for the
 * batch), and the tile is written out with the bias (and optionally ReLU) fused in.
 *
 *   forward      y[co, j]   = sum_k W[co, k] col[k, j]          k = (c, ki, kj)
 *   grad weight  gW[co, k] += sum_j gy[co, j] col[k, j]          (per group of images)
 *   grad input   gcol[k, j] = sum_co W[co, k] gy[co, j], scattered into gx (any stride;
 *                stride 1 instead runs the forward driver on gy with flipped weights)
 *
 * Layouts differ only in addressing: channels_first x[n, c, iy, ix] lives at
 * ((n C + c) H + iy) W + ix, channels_last x[n, iy, ix, c] at ((n H + iy) W + ix) C + c.
 *
 * This file is a template: conv_kernels_all.h includes it once per dtype.
 */

#ifndef FC_T
#error "conv_driver.h is a template: include conv_kernels_all.h"
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

/* ---- stride-1 convolutions on a padded image ("shifted" implicit GEMM) ----------
 *
 * For stride 1 each image is first copied, zero-padded, into a thread-local buffer xp of
 * rows of Wp = ow + (kw - 1) dx elements (Hp = oh + (kh - 1) dy rows per channel).  An
 * output pixel (oy, ox) becomes the column p = oy * Wp + ox, and im2col row k = (c, ki,
 * kj) is then the same buffer shifted by off[k] = c Hp Wp + ki dy Wp + kj dx: the
 * micro-kernels read B (forward) or A (weight gradient) straight from xp through the
 * offset table, with no column matrix and no packing.  Columns with ox >= ow are computed
 * and dropped (forward) or meet zeros in grad_y (weight gradient).
 */

/* Copy channels [c0, c0 + cnum) of image n into xp, zero-padded (pt/pl may be negative:
 * cropping), followed by `slack` zeros. */
static void FC_FN(fc_pad_image)(const fc_conv *g, const FC_T *x, ptrdiff_t n,
                                ptrdiff_t c0, ptrdiff_t cnum, ptrdiff_t Hp, ptrdiff_t Wp,
                                ptrdiff_t slack, FC_T *xp)
{
    const ptrdiff_t xs = g->last ? g->c : 1;
    ptrdiff_t c, r, t;
    for (c = 0; c < cnum; c++)
        for (r = 0; r < Hp; r++) {
            FC_T *d = xp + (c * Hp + r) * Wp;
            const ptrdiff_t iy = r - g->pt;
            if (iy < 0 || iy >= g->h) {
                for (t = 0; t < Wp; t++)
                    d[t] = 0;
                continue;
            }
            FC_FN(fc_gather)(d, 1, FC_FN(fc_xrow)(g, x, n, c0 + c, iy), -g->pl, 1, xs, Wp,
                             g->w);
        }
    for (t = 0; t < slack; t++)
        xp[cnum * Hp * Wp + t] = 0;
}

/* Forward (stride 1) of image n, every group.  ap as for fc_forward_strip; off[k] the
 * offsets of im2col row k in xp.  Scratch: xp cg*Hp*Wp + (kw-1)*dx + nr, tile mr*nr,
 * seg nr entries. */
static void FC_FN(fc_forward_shift_image)(const fc_conv *g, FC_FN(fc_kib_t) kib,
                                          const FC_T *x, const FC_T *ap,
                                          const ptrdiff_t *off, const FC_T *bias, FC_T *y,
                                          ptrdiff_t n, int relu, FC_T *xp, FC_T *tile,
                                          fc_seg *seg)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, nms = (g->cog + mr - 1) / mr;
    const ptrdiff_t Wp = g->ow + (g->kw - 1) * g->dx, Hp = g->oh + (g->kh - 1) * g->dy;
    const ptrdiff_t Pp = g->oh * Wp, slack = (g->kw - 1) * g->dx + nr;
    ptrdiff_t grp, p0, ms;
    for (grp = 0; grp < g->groups; grp++) {
        FC_FN(fc_pad_image)(g, x, n, grp * g->cg, g->cg, Hp, Wp, slack, xp);
        for (p0 = 0; p0 < Pp; p0 += nr) {
            const ptrdiff_t pend = (p0 + nr < Pp) ? p0 + nr : Pp;
            ptrdiff_t ns = 0, p = p0;
            while (p < pend) {  /* runs of kept columns (ox < ow) */
                const ptrdiff_t oy = p / Wp, ox = p % Wp;
                ptrdiff_t len = g->ow - ox;
                if (len <= 0) {
                    p = (oy + 1) * Wp;
                    continue;
                }
                if (len > pend - p)
                    len = pend - p;
                seg[ns].n = n;
                seg[ns].oy = oy;
                seg[ns].ox0 = ox;
                seg[ns].len = len;
                seg[ns].jj0 = p - p0;
                ns++;
                p += len;
            }
            if (ns == 0)
                continue;
            for (ms = 0; ms < nms; ms++) {
                const ptrdiff_t rows = (g->cog - ms * mr < mr) ? g->cog - ms * mr : mr;
                kib(g->kg, ap + (grp * nms + ms) * g->kg * mr, xp + p0, off, tile, nr);
                FC_FN(fc_store_tile_segs)(g, tile, y, bias, grp * g->cog + ms * mr, rows,
                                          seg, ns, relu);
            }
        }
    }
}

/* Weight gradient (stride 1) of images [n_lo, n_hi), group grp, accumulated into part
 * (groups, ceil(kg/mr)*mr, ceil(cog/nr)*nr) -- rows k, columns co.  off: kg rounded up to
 * mr entries.  Scratch: xp as for the forward, gyt ceil(cog/nr)*nr*oh*Wp. */
static void FC_FN(fc_grad_weight_shift_item)(const fc_conv *g, FC_FN(fc_kia_t) kia,
                                             const FC_T *x, const FC_T *gy,
                                             const ptrdiff_t *off, FC_T *part,
                                             ptrdiff_t n_lo, ptrdiff_t n_hi,
                                             ptrdiff_t grp, ptrdiff_t pcmax, FC_T *xp,
                                             FC_T *gyt)
{
    const ptrdiff_t mr = g->mr, nr = g->nr;
    const ptrdiff_t Wp = g->ow + (g->kw - 1) * g->dx, Hp = g->oh + (g->kh - 1) * g->dy;
    const ptrdiff_t Pp = g->oh * Wp, slack = (g->kw - 1) * g->dx + nr;
    const ptrdiff_t nmk = (g->kg + mr - 1) / mr, ncs = (g->cog + nr - 1) / nr;
    const ptrdiff_t kg_pad = nmk * mr, cog_pad = ncs * nr;
    const ptrdiff_t ys = g->last ? g->cout : 1;
    FC_T *pg = part + grp * kg_pad * cog_pad;
    ptrdiff_t n, cl, oy, ox, p0, cs, mk;
    /* gyt[cs][p][jj] = grad_y[n, grp * cog + cs * nr + jj, oy, ox]; the entries off the
     * image (ox >= ow) and of padding channels stay zero for every image. */
    memset(gyt, 0, (size_t)(cog_pad * Pp) * sizeof(FC_T));
    for (n = n_lo; n < n_hi; n++) {
        FC_FN(fc_pad_image)(g, x, n, grp * g->cg, g->cg, Hp, Wp, slack, xp);
        for (cl = 0; cl < g->cog; cl++) {
            FC_T *d = gyt + (cl / nr) * Pp * nr + (cl % nr);
            for (oy = 0; oy < g->oh; oy++) {
                const FC_T *src =
                    FC_FN(fc_yptr)(g, (FC_T *)gy, n, grp * g->cog + cl, oy, 0);
                FC_T *dr = d + oy * Wp * nr;
                for (ox = 0; ox < g->ow; ox++)
                    dr[ox * nr] = src[ox * ys];
            }
        }
        for (p0 = 0; p0 < Pp; p0 += pcmax) {
            const ptrdiff_t kc = (Pp - p0 < pcmax) ? Pp - p0 : pcmax;
            for (cs = 0; cs < ncs; cs++)
                for (mk = 0; mk < nmk; mk++)
                    kia(kc, xp + p0, off + mk * mr, gyt + (cs * Pp + p0) * nr,
                        pg + mk * mr * cog_pad + cs * nr, cog_pad, 1);
        }
    }
}

/* ---- channels_last, one group: pixel-row kernels ---------------------------------
 *
 * In channels_last the (kj, c) part of a window row is kw * C consecutive elements (for
 * dilation 1), so the kpx kernel reads the rows of its tile -- output pixels (forward)
 * or im2col rows k = (ki, kj, c) (weight gradient) -- in place, with no packing and no
 * columns computed and dropped; only the weights (forward) are packed, once per call.
 * An image is read where it lies when no window reaches outside it, else from a
 * zero-padded copy xp of Hp x Wp pixels (the rows and columns the windows cover).
 */

/* The pixels the windows of image n read: x itself (when every window lies inside the
 * image) or xp filled with the zero-padded image (pt/pl may be negative: cropping).
 * *ws receives the row length in pixels.  xp holds Hp * Wp * C elements. */
static const FC_T *FC_FN(fc_px_image)(const fc_conv *g, const FC_T *x, ptrdiff_t n,
                                      FC_T *xp, ptrdiff_t *ws)
{
    const ptrdiff_t C = g->c;
    const ptrdiff_t Hp = (g->oh - 1) * g->sy + (g->kh - 1) * g->dy + 1;
    const ptrdiff_t Wp = (g->ow - 1) * g->sx + (g->kw - 1) * g->dx + 1;
    ptrdiff_t r, lo, hi;
    if (g->pt == 0 && g->pl == 0 && Hp <= g->h && Wp <= g->w) {
        *ws = g->w;
        return x + n * g->h * g->w * C;
    }
    *ws = Wp;
    lo = g->pl > 0 ? g->pl : 0;    /* columns t of xp with 0 <= t - pl < W */
    hi = g->w + g->pl < Wp ? g->w + g->pl : Wp;
    if (hi < lo)
        hi = lo;
    for (r = 0; r < Hp; r++) {
        FC_T *d = xp + r * Wp * C;
        const ptrdiff_t iy = r - g->pt;
        if (iy < 0 || iy >= g->h || hi == lo) {
            memset(d, 0, (size_t)(Wp * C) * sizeof(FC_T));
            continue;
        }
        memset(d, 0, (size_t)(lo * C) * sizeof(FC_T));
        memcpy(d + lo * C, x + ((n * g->h + iy) * g->w + (lo - g->pl)) * C,
               (size_t)((hi - lo) * C) * sizeof(FC_T));
        memset(d + hi * C, 0, (size_t)((Wp - hi) * C) * sizeof(FC_T));
    }
    return xp;
}

static inline FC_T FC_FN(fc_relu1)(FC_T v)
{
    return v < 0 ? (FC_T)0 : v;
}

/* One row of an output tile written out: dst[j] = src[j] (+ bc[j]) (then ReLU) for
 * j < cols, in one vectorised pass (bc NULL: no bias). */
static inline void FC_FN(fc_tile_store)(FC_T *dst, const FC_T *src, const FC_T *bc,
                                        ptrdiff_t cols, int relu)
{
    ptrdiff_t j;
    if (bc && relu) {
#pragma omp simd
        for (j = 0; j < cols; j++)
            dst[j] = FC_FN(fc_relu1)(src[j] + bc[j]);
    } else if (bc) {
#pragma omp simd
        for (j = 0; j < cols; j++)
            dst[j] = src[j] + bc[j];
    } else if (relu) {
#pragma omp simd
        for (j = 0; j < cols; j++)
            dst[j] = FC_FN(fc_relu1)(src[j]);
    } else {
        memcpy(dst, src, (size_t)cols * sizeof(FC_T));
    }
}

/* Forward of image n (channels_last, one group).  bpk: the weights packed
 * (ceil(cout/nr), kg, nr) with k = (ki, kj, c), zero beyond cout.  Scratch: xp (see
 * fc_px_image), tile mr*nr, idx ceil(P/mr)*mr + 2*kh*kw entries (P = oh*ow). */
FC_CLONES static void FC_FN(fc_px_forward_image)(const fc_conv *g, FC_FN(fc_kpx_t) kpx,
                                       const FC_T *x, const FC_T *bpk, const FC_T *bias,
                                       FC_T *y, ptrdiff_t n, int relu, FC_T *xp,
                                       FC_T *tile, ptrdiff_t *idx)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, P = g->oh * g->ow;
    const ptrdiff_t ncb = (g->cout + nr - 1) / nr;
    const ptrdiff_t P_pad = (P + mr - 1) / mr * mr;
    ptrdiff_t *off = idx, *sega = idx + P_pad, *segb = sega + g->kh * g->kw;
    ptrdiff_t ws, nseg, len, s, cb, p0, i, p, oy, ox;
    const FC_T *xa = FC_FN(fc_px_image)(g, x, n, xp, &ws);
    /* (oy, ox) walks the pixels in order: no division per pixel (measured: CIFAR-10's
     * first layer at batch 128, the divisions took 14% of its time).  Rows past the
     * image repeat pixel 0 (dropped). */
    for (p = 0, oy = 0, ox = 0; p < P_pad; p++) {
        off[p] = p < P ? (oy * g->sy * ws + ox * g->sx) * C : 0;
        if (++ox == g->ow) {
            ox = 0;
            oy++;
        }
    }
    if (g->dx == 1) {  /* one segment per kernel row: (kj, c) is contiguous */
        nseg = g->kh;
        len = g->kw * C;
        for (s = 0; s < nseg; s++)
            sega[s] = s * g->dy * ws * C;
    } else {
        nseg = g->kh * g->kw;
        len = C;
        for (s = 0; s < nseg; s++)
            sega[s] = ((s / g->kw) * g->dy * ws + (s % g->kw) * g->dx) * C;
    }
    for (s = 0; s < nseg; s++)
        segb[s] = s * len * nr;
    for (cb = 0; cb < ncb; cb++) {
        const ptrdiff_t co0 = cb * nr, cols = (g->cout - co0 < nr) ? g->cout - co0 : nr;
        for (p0 = 0; p0 < P; p0 += mr) {
            const ptrdiff_t cnt = (P - p0 < mr) ? P - p0 : mr;
            /* Kernel rows ki that read inside the image for some pixel of the tile
             * (output rows oy0..oy1): the others multiply zero padding, skipped (the
             * stride-1 input gradient's gather pads grad_y by kh - 1 rows). */
            const ptrdiff_t oy0 = p0 / g->ow, oy1 = (p0 + cnt - 1) / g->ow;
            ptrdiff_t lo = fc_ceil_div(g->pt - oy1 * g->sy, g->dy);
            ptrdiff_t hi = fc_floor_div(g->h - 1 + g->pt - oy0 * g->sy, g->dy) + 1;
            const ptrdiff_t per_ki = nseg / g->kh;  /* segments per kernel row */
            lo = lo < 0 ? 0 : lo;
            hi = hi > g->kh ? g->kh : hi;
            if (hi < lo)
                hi = lo;
            kpx((hi - lo) * per_ki, len, sega + lo * per_ki, segb + lo * per_ki, xa,
                off + p0, 1, bpk + cb * g->kg * nr, nr, tile, nr, 0);
            for (i = 0; i < cnt; i++)
                FC_FN(fc_tile_store)(y + (n * P + p0 + i) * g->cout + co0, tile + i * nr,
                                     bias ? bias + co0 : NULL, cols, relu);
        }
    }
}

/* Columns [co0, co0 + cols) (cols <= nr) of a dense layer's y = x w (+ bias) (then
 * ReLU): x (m, k), w (k, n) and y (m, n) row-major -- or, with x_t, x given as its
 * transpose (k, m) row-major, with w_t, w as its transpose (n, k) row-major (the
 * gradients' x^T and w^T, read where they are).  The block's columns of w are first
 * copied into wb (k * nr, zero past cols: contiguous, in cache for every tile of rows);
 * the pixel-row kernel then reads x's rows in place (with x_t, each row's elements m
 * apart).  (Reading w in place, its rows n apart, was 2-3x slower; BLAS packs all of w
 * on every call: measured, see fastconv/_blas.py.)  Scratch: wb, tile mr * nr, off mr
 * entries.  Rows past m repeat row p0 (dropped). */
#ifndef FC_DENSE_PF
#define FC_DENSE_PF 16  /* rows of w fetched ahead by fc_dense_block's copy */
#endif
static void FC_FN(fc_dense_block)(FC_FN(fc_kpx_t) kpx, ptrdiff_t mr, ptrdiff_t nr,
                                  const FC_T *x, ptrdiff_t m, ptrdiff_t k, const FC_T *w,
                                  const FC_T *bias, FC_T *y, ptrdiff_t n, ptrdiff_t co0,
                                  ptrdiff_t cols, int relu, int x_t, int w_t, FC_T *wb,
                                  FC_T *tile, ptrdiff_t *off)
{
    const ptrdiff_t zero = 0, xrow = x_t ? 1 : k, xstep = x_t ? m : 1;
    const FC_T *bc = bias ? bias + co0 : NULL;
    ptrdiff_t p0, i, j;
    if (w_t) {  /* w^T's rows co0.. are wb's columns */
        for (j = 0; j < cols; j++) {
            const FC_T *src = w + (co0 + j) * k;
            for (i = 0; i < k; i++)
                wb[i * nr + j] = src[i];
        }
        for (i = 0; i < k; i++)
            for (j = cols; j < nr; j++)
                wb[i * nr + j] = 0;
    } else {
        for (i = 0; i < k; i++) {
#if defined(__GNUC__) || defined(__clang__)
            if (i + FC_DENSE_PF < k) {  /* rows n apart: each a new page, so fetch ahead */
                const char *ahead = (const char *)(w + (i + FC_DENSE_PF) * n + co0);
                ptrdiff_t b;
                for (b = 0; b < (ptrdiff_t)(cols * sizeof(FC_T)); b += 64)
                    __builtin_prefetch(ahead + b);
            }
#endif
            memcpy(wb + i * nr, w + i * n + co0, (size_t)cols * sizeof(FC_T));
            for (j = cols; j < nr; j++)
                wb[i * nr + j] = 0;
        }
    }
    for (p0 = 0; p0 < m; p0 += mr) {
        const ptrdiff_t cnt = (m - p0 < mr) ? m - p0 : mr;
        for (i = 0; i < mr; i++)
            off[i] = (i < cnt ? p0 + i : p0) * xrow;
        kpx(1, k, &zero, &zero, x, off, xstep, wb, nr, tile, nr, 0);
        for (i = 0; i < cnt; i++)
            FC_FN(fc_tile_store)(y + (p0 + i) * n + co0, tile + i * nr, bc, cols, relu);
    }
}

/* fc_max4: the max of a 2x2 window's values in row-major order, as the pooling kernels
 * take it: the first maximum, or the first NaN (once best is NaN nothing replaces it; a
 * NaN v replaces a number, as !(v <= best)).  Every fused max pool uses it.
 * fc_max_pool_2x2_image: the 2x2, stride-2 max pool of one channels_last image y (oh x
 * ow pixels of C channels; an odd last row or column dropped) into yq ((oh / 2) x
 * (ow / 2) x C), the same bits as the pooling kernels. */
static inline FC_T FC_FN(fc_max4)(FC_T w0, FC_T w1, FC_T w2, FC_T w3)
{
    FC_T best = w0;
    best = (best == best && !(w1 <= best)) ? w1 : best;
    best = (best == best && !(w2 <= best)) ? w2 : best;
    best = (best == best && !(w3 <= best)) ? w3 : best;
    return best;
}

FC_CLONES static void FC_FN(fc_max_pool_2x2_image)(const FC_T *y, ptrdiff_t oh,
                                                   ptrdiff_t ow, ptrdiff_t C, FC_T *yq)
{
    const ptrdiff_t qh = oh / 2, qw = ow / 2;
    ptrdiff_t i, j, c;
    for (i = 0; i < qh; i++)
        for (j = 0; j < qw; j++) {
            const FC_T *a = y + ((2 * i) * ow + 2 * j) * C, *b = a + ow * C;
            FC_T *d = yq + (i * qw + j) * C;
#pragma omp simd
            for (c = 0; c < C; c++)
                d[c] = FC_FN(fc_max4)(a[c], a[C + c], b[c], b[C + c]);
        }
}

/* Forward of image n with few output channels (channels_last, one group, C a multiple
 * of the ISA's vector length): the narrow kernel, tiles of mr pixels x FC_NO channels,
 * vectorised along the input channels.  wn: the weights packed (ceil(cout/FC_NO),
 * kh*kw, FC_NO, C), zero past cout.  Scratch: xp (see fc_px_image), tile mr*FC_NO,
 * idx mr + kh*kw entries.  (g->mr is the narrow kernel's row count.) */
static void FC_FN(fc_px_forward_narrow_image)(const fc_conv *g, FC_FN(fc_knr_t) knr,
                                              const FC_T *x, const FC_T *wn,
                                              const FC_T *bias, FC_T *y, ptrdiff_t n,
                                              int relu, FC_T *xp, FC_T *tile,
                                              ptrdiff_t *idx)
{
    const ptrdiff_t mr = g->mr, C = g->c, P = g->oh * g->ow, khw = g->kh * g->kw;
    const ptrdiff_t nob = (g->cout + FC_NO - 1) / FC_NO;
    ptrdiff_t *off = idx, *sega = idx + mr;
    ptrdiff_t ws, s, ob, p0, i, j, oy, ox;
    const FC_T *xa = FC_FN(fc_px_image)(g, x, n, xp, &ws);
    for (s = 0; s < khw; s++)
        sega[s] = ((s / g->kw) * g->dy * ws + (s % g->kw) * g->dx) * C;
    for (p0 = 0, oy = 0, ox = 0; p0 < P; p0 += mr) {
        const ptrdiff_t cnt = (P - p0 < mr) ? P - p0 : mr;
        for (i = 0; i < cnt; i++) {  /* (oy, ox) walks the pixels in order */
            off[i] = (oy * g->sy * ws + ox * g->sx) * C;
            if (++ox == g->ow) {
                ox = 0;
                oy++;
            }
        }
        for (; i < mr; i++)  /* rows past the image repeat pixel p0 */
            off[i] = off[0];
        for (ob = 0; ob < nob; ob++) {
            const ptrdiff_t o0 = ob * FC_NO;
            const ptrdiff_t cols = (g->cout - o0 < FC_NO) ? g->cout - o0 : FC_NO;
            knr(khw, C, sega, xa, off, wn + ob * khw * FC_NO * C, tile, FC_NO);
            for (i = 0; i < cnt; i++) {
                FC_T *dst = y + (n * P + p0 + i) * g->cout + o0;
                for (j = 0; j < cols; j++) {
                    FC_T v = tile[i * FC_NO + j] + (bias ? bias[o0 + j] : (FC_T)0);
                    dst[j] = (relu && v < 0) ? (FC_T)0 : v;
                }
            }
        }
    }
}

/* Weight gradient of images [n_lo, n_hi) (channels_last, one group), accumulated into
 * part (ceil(kg/mr)*mr, ceil(cout/nr)*nr): rows k = (ki, kj, c), columns co -- the
 * channels_last weight layout.  Scratch: xp (see fc_px_image); gyp P * ceil(cout/nr)*nr
 * (grad_y of one image in panels); idx ceil(kg/mr)*mr + 2*oh entries. */
static void FC_FN(fc_px_grad_weight_item)(const fc_conv *g, FC_FN(fc_kpx_t) kpx,
                                          const FC_T *x, const FC_T *gy, FC_T *part,
                                          ptrdiff_t n_lo, ptrdiff_t n_hi, FC_T *xp,
                                          FC_T *gyp, ptrdiff_t *idx)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, P = g->oh * g->ow;
    const ptrdiff_t nkt = (g->kg + mr - 1) / mr, ncb = (g->cout + nr - 1) / nr;
    const ptrdiff_t ldc = ncb * nr, kwc = g->kw * C;
    ptrdiff_t *offk = idx, *sega = idx + nkt * mr, *segb = sega + g->oh;
    ptrdiff_t n, ws, oy, kt, cb, k, p;
    for (oy = 0; oy < g->oh; oy++)
        segb[oy] = oy * g->ow * nr;
    for (n = n_lo; n < n_hi; n++) {
        const FC_T *xa = FC_FN(fc_px_image)(g, x, n, xp, &ws);
        if (n == n_lo)  /* offset of every im2col row k (ws is the same for all images) */
            for (k = 0; k < nkt * mr; k++) {  /* rows past kg read k = 0 (dropped) */
                const ptrdiff_t kk = k < g->kg ? k : 0;
                const ptrdiff_t ki = kk / kwc, kj = (kk % kwc) / C, c = kk % C;
                offk[k] = (ki * g->dy * ws + kj * g->dx) * C + c;
            }
        const FC_T *gyn = gy + n * P * g->cout;
        const FC_T *panels = gyp;
        /* grad_y of the image as ncb panels of (P, nr), zero past cout: the kernel's B
         * rows are then nr apart (a constant) and a panel stays in L1 across k.  With
         * cout == nr, grad_y is that panel already. */
        if (g->cout == nr)
            panels = gyn;
        else for (cb = 0; cb < ncb; cb++) {
            const ptrdiff_t co0 = cb * nr, cols = (g->cout - co0 < nr) ? g->cout - co0 : nr;
            FC_T *d = gyp + cb * P * nr;
            for (p = 0; p < P; p++) {
                memcpy(d + p * nr, gyn + p * g->cout + co0, (size_t)cols * sizeof(FC_T));
                if (cols < nr)
                    memset(d + p * nr + cols, 0, (size_t)(nr - cols) * sizeof(FC_T));
            }
        }
        for (oy = 0; oy < g->oh; oy++)  /* one segment per output row */
            sega[oy] = oy * g->sy * ws * C;
        for (cb = 0; cb < ncb; cb++)
            for (kt = 0; kt < nkt; kt++)
                /* (Blocking the output rows to keep x and grad_y in L1 was measured
                 * slower: every kpx call ends by adding its tile to part.) */
                kpx(g->oh, g->ow, sega, segb, xa, offk + kt * mr, g->sx * C,
                    panels + cb * P * nr, nr, part + kt * mr * ldc + cb * nr, ldc, 1);
    }
}

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
 * and F(2x2)'s input transform ran scalar, 68% of a forward). */
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
 * vectorises: with arrays GCC kept them in memory, 27% of a forward.)  wo: the ISA's
 * kernel for one tile (fc_kwo_f, the same bits), which then does every tile, or NULL. */
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
 * Points 0, 1, -1, 2, -2, 1/2 and infinity (measured in float32 against the float64
 * direct product, 32 channels: largest error 1.8e-5 of the output's scale, F(4x4)'s
 * 1.1e-5; the other sets of six finite points tried were worse), with
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
 * 49 products per (tile, c, co), 1.96 per output pixel; conv.py takes it over F(4x4)
 * where its tiles waste less of the output (_winograd_tile_for: CIFAR-10's 15x15 and
 * 13x13 layers, 1.96 and 2.61 products per pixel against F(4x4)'s 2.56 and 3.41).  A^T's
 * entries are powers of two, as F(4x4)'s.  No fused pool (a tile is not whole 2x2
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

/* ---- Winograd's weight transforms (every tile size) --------------------------------
 * G: the L x 3 matrix of the tile (fc_wg_G, fc_wg4_G, fc_wg5_G), L = tile + 2.  Both run in
 * float64 and round once, over blocks of output channels so that the inner loops run
 * along C_out, contiguous in channels_last's weights and in the packed U. */
#define FC_WG_NRMAX 64
#define FC_WG_LMAX 7  /* L of the largest tile, F(5x5) */

/* U = G g G^T for input channels [c_lo, c_hi) of the 3x3 kernel w (element (co, c, i,
 * j) at w[co * so + c * sc + i * si + j * sj]) into u packed (L * L, ceil(C_out / nr),
 * C, nr), zero past C_out (nr <= FC_WG_NRMAX). */
FC_CLONES static void FC_FN(fc_wg_weights)(const FC_T *w, ptrdiff_t so, ptrdiff_t sc,
                                           ptrdiff_t si, ptrdiff_t sj, ptrdiff_t co_n,
                                           ptrdiff_t c_n, const double *G, int L,
                                           ptrdiff_t nr, FC_T *u, ptrdiff_t c_lo,
                                           ptrdiff_t c_hi)
{
    const ptrdiff_t ncb = (co_n + nr - 1) / nr;
    double gk[9][FC_WG_NRMAX], t[FC_WG_LMAX][3][FC_WG_NRMAX];
    ptrdiff_t c, cb, k;
    int a, b, i, j;
    for (c = c_lo; c < c_hi; c++)
        for (cb = 0; cb < ncb; cb++) {
            const ptrdiff_t co0 = cb * nr, n = co_n - co0 < nr ? co_n - co0 : nr;
            for (i = 0; i < 3; i++)
                for (j = 0; j < 3; j++)
                    for (k = 0; k < n; k++)
                        gk[3 * i + j][k] = (double)w[(co0 + k) * so + c * sc + i * si +
                                                     j * sj];
            for (a = 0; a < L; a++)  /* t = G g */
                for (j = 0; j < 3; j++)
                    FC_OMP_SIMD
                    for (k = 0; k < n; k++)
                        t[a][j][k] = G[3 * a] * gk[j][k] + G[3 * a + 1] * gk[3 + j][k] +
                                     G[3 * a + 2] * gk[6 + j][k];
            for (a = 0; a < L; a++)  /* (G g) G^T */
                for (b = 0; b < L; b++) {
                    FC_T *ub = u + (((a * L + b) * ncb + cb) * c_n + c) * nr;
                    FC_OMP_SIMD
                    for (k = 0; k < n; k++)
                        ub[k] = (FC_T)(t[a][0][k] * G[3 * b] + t[a][1][k] * G[3 * b + 1] +
                                       t[a][2][k] * G[3 * b + 2]);
                    for (k = n; k < nr; k++)
                        ub[k] = 0;
                }
        }
}

/* grad_w = G^T dU G for input channels [c_lo, c_hi): du (L * L, cpad, ldg), gw (3, 3,
 * C, C_out), in blocks of FC_WG_NRMAX output channels. */
FC_CLONES static void FC_FN(fc_wg_grad_weights)(const FC_T *du, ptrdiff_t cpad,
                                                ptrdiff_t ldg, ptrdiff_t co_n,
                                                ptrdiff_t c_n, const double *G, int L,
                                                FC_T *gw, ptrdiff_t c_lo, ptrdiff_t c_hi)
{
    double t[3][FC_WG_LMAX][FC_WG_NRMAX];
    ptrdiff_t c, co0, k;
    int a, b, i, j;
    for (c = c_lo; c < c_hi; c++)
        for (co0 = 0; co0 < co_n; co0 += FC_WG_NRMAX) {
            const ptrdiff_t n = co_n - co0 < FC_WG_NRMAX ? co_n - co0 : FC_WG_NRMAX;
            for (i = 0; i < 3; i++)  /* t = G^T dU */
                for (b = 0; b < L; b++) {
                    FC_OMP_SIMD
                    for (k = 0; k < n; k++)
                        t[i][b][k] = 0;
                    for (a = 0; a < L; a++) {
                        const double ga = G[3 * a + i];
                        const FC_T *d = du + ((a * L + b) * cpad + c) * ldg + co0;
                        FC_OMP_SIMD
                        for (k = 0; k < n; k++)
                            t[i][b][k] += ga * (double)d[k];
                    }
                }
            for (i = 0; i < 3; i++)  /* (G^T dU) G */
                for (j = 0; j < 3; j++) {
                    FC_T *o = gw + ((i * 3 + j) * c_n + c) * co_n + co0;
                    double acc[FC_WG_NRMAX];
                    FC_OMP_SIMD
                    for (k = 0; k < n; k++)
                        acc[k] = 0;
                    for (b = 0; b < L; b++) {
                        const double gb = G[3 * b + j];
                        FC_OMP_SIMD
                        for (k = 0; k < n; k++)
                            acc[k] += t[i][b][k] * gb;
                    }
                    FC_OMP_SIMD
                    for (k = 0; k < n; k++)
                        o[k] = (FC_T)acc[k];
                }
        }
}

/* Forward of tiles [t0, t0 + cnt) (cnt <= the block the scratch was sized for) of
 * F(tile x tile, 3x3), tile 2, 4 or 5 (no pool), E = (tile + 2)^2 entries.  u: U packed (E,
 * ceil(C_out/nr), C, nr), zero past C_out.  Scratch: v E * cnt * C, m E * mr * nr, off
 * mr entries.  wo: as fc_wg4_output's (tiles 4 and 5). */
static void FC_FN(fc_wg_forward_block)(const fc_conv *g, FC_FN(fc_kpx_t) kpx, int tile,
                                       const FC_T *x, const FC_T *zero, const FC_T *u,
                                       const FC_T *bias, FC_T *y, ptrdiff_t t0,
                                       ptrdiff_t cnt, ptrdiff_t th, ptrdiff_t tw,
                                       int relu, int pool, FC_FN(fc_kwo_t) wo, FC_T *v,
                                       FC_T *m, ptrdiff_t *off)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, es = cnt * C;
    const ptrdiff_t ncb = (g->cout + nr - 1) / nr, zero_seg = 0;
    const int E = (tile + 2) * (tile + 2);
    ptrdiff_t q0, i, cb;
    int e;
    if (tile == 5)
        FC_FN(fc_wg5_input)(g, x, zero, t0, cnt, th, tw, v, es);
    else if (tile == 4)
        FC_FN(fc_wg4_input)(g, x, zero, t0, cnt, th, tw, v, es);
    else
        FC_FN(fc_wg_input)(g, x, zero, t0, cnt, th, tw, v, es);
    for (q0 = 0; q0 < cnt; q0 += mr) {
        const ptrdiff_t qn = (cnt - q0 < mr) ? cnt - q0 : mr;
        for (i = 0; i < mr; i++)  /* rows past cnt repeat row q0 (dropped) */
            off[i] = (i < qn ? q0 + i : q0) * C;
        for (cb = 0; cb < ncb; cb++) {
            const ptrdiff_t co0 = cb * nr;
            const ptrdiff_t cols = (g->cout - co0 < nr) ? g->cout - co0 : nr;
            for (e = 0; e < E; e++)
                kpx(1, C, &zero_seg, &zero_seg, v + e * es, off, 1,
                    u + (e * ncb + cb) * C * nr, nr, m + e * mr * nr, nr, 0);
            if (tile == 5)
                FC_FN(fc_wg5_output)(g, m, mr * nr, nr, bias, y, t0 + q0, qn, th, tw, co0,
                                     cols, relu, wo);
            else if (tile == 4)
                FC_FN(fc_wg4_output)(g, m, mr * nr, nr, bias, y, t0 + q0, qn, th, tw, co0,
                                     cols, relu, pool, wo);
            else
                FC_FN(fc_wg_output)(g, m, mr * nr, nr, bias, y, t0 + q0, qn, th, tw, co0,
                                    cols, relu, pool);
        }
    }
}

/* Mg = A dY A^T for tiles [t0, t0 + cnt): mg[e * es + i * ldg + co] for co < C_out, zero
 * up to ldg; dY outside grad_y (an odd oh or ow) is zero.  A = [1 0; 1 1; 1 -1; 0 -1]. */
FC_CLONES static void FC_FN(fc_wg_grad_out)(const fc_conv *g, const FC_T *gy,
                                            const FC_T *zero, ptrdiff_t t0, ptrdiff_t cnt,
                                            ptrdiff_t th, ptrdiff_t tw, FC_T *mg,
                                            ptrdiff_t es, ptrdiff_t ldg)
{
    const ptrdiff_t CO = g->cout, tpi = th * tw;
    ptrdiff_t i, co;
    int e;
    for (i = 0; i < cnt; i++) {
        const ptrdiff_t t = t0 + i, n = t / tpi, r = t % tpi, ty = r / tw, tx = r % tw;
        const int right = 2 * tx + 1 < g->ow, below = 2 * ty + 1 < g->oh;
        const FC_T *g00 = gy + ((n * g->oh + 2 * ty) * g->ow + 2 * tx) * CO;
        const FC_T *g01 = right ? g00 + CO : zero, *g10 = below ? g00 + g->ow * CO : zero;
        const FC_T *g11 = right && below ? g00 + (g->ow + 1) * CO : zero;
        FC_T *mi = mg + i * ldg;
        FC_OMP_SIMD
        for (co = 0; co < CO; co++) {
            const FC_T a = g00[co], b = g01[co], c = g10[co], d = g11[co];
            /* row k of A dY is (p, q): (a, b), (a + c, b + d), (a - c, b - d), (-c, -d);
             * row k of (A dY) A^T is (p, p + q, p - q, -q) */
#define FC_WG_GROW(k, p, q)                                                              \
            {                                                                            \
                const FC_T p_ = (p), q_ = (q);                                           \
                mi[(4 * (k)) * es + co] = p_;                                            \
                mi[(4 * (k) + 1) * es + co] = p_ + q_;                                   \
                mi[(4 * (k) + 2) * es + co] = p_ - q_;                                   \
                mi[(4 * (k) + 3) * es + co] = -q_;                                       \
            }
            FC_WG_GROW(0, a, b)
            FC_WG_GROW(1, a + c, b + d)
            FC_WG_GROW(2, a - c, b - d)
            FC_WG_GROW(3, -c, -d)
#undef FC_WG_GROW
        }
        for (e = 0; e < 16; e++)
            for (co = CO; co < ldg; co++)
                mi[e * es + co] = 0;
    }
}

/* dU += the weight gradient of tiles [t0, t0 + cnt) in U's space: part[(e * cpad + c) *
 * ldg + co] (cpad = C rounded up to mr, ldg = C_out rounded up to nr; rows past C are
 * computed and dropped), tile and E as in fc_wg_forward_block.  Scratch: v E * cnt * C,
 * mg E * cnt * ldg, off mr entries. */
static void FC_FN(fc_wg_grad_weight_block)(const fc_conv *g, FC_FN(fc_kpx_t) kpx, int tile,
                                           const FC_T *x, const FC_T *gy, const FC_T *zero,
                                           FC_T *part, ptrdiff_t t0, ptrdiff_t cnt,
                                           ptrdiff_t th, ptrdiff_t tw, FC_T *v, FC_T *mg,
                                           ptrdiff_t *off)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, es = cnt * C;
    const ptrdiff_t ncb = (g->cout + nr - 1) / nr, ldg = ncb * nr, gs = cnt * ldg;
    const ptrdiff_t cpad = (C + mr - 1) / mr * mr, zero_seg = 0;
    const int E = (tile + 2) * (tile + 2);
    ptrdiff_t c0, i, cb;
    int e;
    if (tile == 5) {
        FC_FN(fc_wg5_input)(g, x, zero, t0, cnt, th, tw, v, es);
        FC_FN(fc_wg5_grad_out)(g, gy, zero, t0, cnt, th, tw, mg, gs, ldg);
    } else if (tile == 4) {
        FC_FN(fc_wg4_input)(g, x, zero, t0, cnt, th, tw, v, es);
        FC_FN(fc_wg4_grad_out)(g, gy, zero, t0, cnt, th, tw, mg, gs, ldg);
    } else {
        FC_FN(fc_wg_input)(g, x, zero, t0, cnt, th, tw, v, es);
        FC_FN(fc_wg_grad_out)(g, gy, zero, t0, cnt, th, tw, mg, gs, ldg);
    }
    for (e = 0; e < E; e++)
        for (c0 = 0; c0 < C; c0 += mr) {
            for (i = 0; i < mr; i++)  /* rows c past C read channel c0 (dropped) */
                off[i] = c0 + i < C ? c0 + i : c0;
            for (cb = 0; cb < ncb; cb++)
                kpx(1, cnt, &zero_seg, &zero_seg, v + e * es, off, C,
                    mg + e * gs + cb * nr, ldg, part + (e * cpad + c0) * ldg + cb * nr,
                    ldg, 1);
        }
}
