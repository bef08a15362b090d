/* The shifted implicit GEMM: stride-1 convolutions read through offsets into a
 * zero-padded copy of each image (indirect micro-kernels, no packing).
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/shifted.h is a template: include conv/conv.h"
#endif

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

/* ---- entry points (src/_conv2d.pyx): one parallel loop each (parallel.h) ---------- */

/* off[k] = c*Hp*Wp + ki*dy*Wp + kj*dx for k < kg, then zeros up to length; or NULL. */
static ptrdiff_t *FC_FN(fc_shift_offsets)(const fc_conv *g, ptrdiff_t length)
{
    const ptrdiff_t wp = g->ow + (g->kw - 1) * g->dx, hp = g->oh + (g->kh - 1) * g->dy;
    ptrdiff_t c, ki, kj, k = 0;
    ptrdiff_t *off = (ptrdiff_t *)fc_alloc(length * sizeof(ptrdiff_t));
    if (off == NULL)
        return NULL;
    for (c = 0; c < g->cg; c++)
        for (ki = 0; ki < g->kh; ki++)
            for (kj = 0; kj < g->kw; kj++)
                off[k++] = c * hp * wp + ki * g->dy * wp + kj * g->dx;
    while (k < length)
        off[k++] = 0;
    return off;
}

typedef struct {
    const fc_conv *g;
    FC_FN(fc_kib_t) kib;
    FC_FN(fc_kia_t) kia;
    const FC_T *x, *a, *gy, *bias;
    const ptrdiff_t *off;
    FC_T *y;
    int relu;
    ptrdiff_t n_per, pcmax, part_stride;
} FC_FN(fc_shift_args);

static void FC_FN(fc_shift_forward_item)(const void *args, ptrdiff_t n, void *const *sc)
{
    const FC_FN(fc_shift_args) *a = (const FC_FN(fc_shift_args) *)args;
    FC_FN(fc_forward_shift_image)(a->g, a->kib, a->x, a->a, a->off, a->bias, a->y, n,
                                  a->relu, (FC_T *)sc[0], (FC_T *)sc[1], (fc_seg *)sc[2]);
}

/* Stride-1 forward through a padded copy of each image; ap as fc_gemm_forward's.
 * Parallel over images. */
static int FC_FN(fc_shift_forward)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                   const FC_T *ap, const FC_T *bias, FC_T *y, int relu)
{
    const fc_conv g = FC_FN(fc_gemm_geometry)(isa, g0);
    const ptrdiff_t mr = g.mr, nr = g.nr;
    const ptrdiff_t wp = g.ow + (g.kw - 1) * g.dx, hp = g.oh + (g.kh - 1) * g.dy;
    fc_loop lp = fc_loop_of((double)g.n * g.oh * wp * g.cout * g.kg, g.n, 1);
    FC_FN(fc_shift_args) a = {&g, isa->FC_FN(kib), NULL, x, ap, NULL, bias, NULL, y, relu,
                              0, 0, 0};
    int rc;
    ptrdiff_t *off = FC_FN(fc_shift_offsets)(&g, g.kg);
    if (off == NULL)
        return FC_ENOMEM_TABLE;
    a.off = off;
    fc_scratch(&lp, (g.cg * hp * wp + (g.kw - 1) * g.dx + nr) * sizeof(FC_T));  /* xp */
    fc_scratch(&lp, mr * nr * sizeof(FC_T));                                   /* tile */
    fc_scratch(&lp, nr * sizeof(fc_seg));
    rc = fc_parallel_for(&lp, FC_FN(fc_shift_forward_item), &a);
    fc_free(off);
    return rc;
}

static void FC_FN(fc_shift_grad_weight_item)(const void *args, ptrdiff_t it,
                                             void *const *sc)
{
    const FC_FN(fc_shift_args) *a = (const FC_FN(fc_shift_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t ig = it / g->groups, grp = it % g->groups, n_lo = ig * a->n_per;
    const ptrdiff_t n_hi = n_lo + a->n_per > g->n ? g->n : n_lo + a->n_per;
    FC_FN(fc_grad_weight_shift_item)(g, a->kia, a->x, a->gy, a->off,
                                     a->y + ig * a->part_stride, n_lo, n_hi, grp, a->pcmax,
                                     (FC_T *)sc[0], (FC_T *)sc[1]);
}

/* Stride-1 partial weight gradients, one per group of n_per images: part zeroed,
 * (n_igroups, groups, ceil(kg/MR)*MR, ceil(cog/NR)*NR) -- rows k, columns co.
 * Parallel over (image group, conv group). */
static int FC_FN(fc_shift_grad_weight)(const fc_isa *isa, const fc_conv *g0,
                                       const FC_T *x, const FC_T *gy, FC_T *part,
                                       ptrdiff_t n_per, ptrdiff_t pcmax)
{
    const fc_conv g = FC_FN(fc_gemm_geometry)(isa, g0);
    const ptrdiff_t mr = g.mr, nr = g.nr;
    const ptrdiff_t wp = g.ow + (g.kw - 1) * g.dx, hp = g.oh + (g.kh - 1) * g.dy;
    const ptrdiff_t cog_pad = (g.cog + nr - 1) / nr * nr;
    const ptrdiff_t kg_pad = (g.kg + mr - 1) / mr * mr;
    const ptrdiff_t nig = (g.n + n_per - 1) / n_per;
    fc_loop lp = fc_loop_of((double)g.n * g.oh * wp * g.cout * g.kg, nig * g.groups, 1);
    FC_FN(fc_shift_args) a = {&g, NULL, isa->FC_FN(kia), x, NULL, gy, NULL, NULL, part, 0,
                              n_per, pcmax, g.groups * kg_pad * cog_pad};
    int rc;
    ptrdiff_t *off = FC_FN(fc_shift_offsets)(&g, kg_pad);
    if (off == NULL)
        return FC_ENOMEM_TABLE;
    a.off = off;
    fc_scratch(&lp, (g.cg * hp * wp + (g.kw - 1) * g.dx + nr) * sizeof(FC_T));  /* xp */
    fc_scratch(&lp, cog_pad * g.oh * wp * sizeof(FC_T));                       /* gyt */
    rc = fc_parallel_for(&lp, FC_FN(fc_shift_grad_weight_item), &a);
    fc_free(off);
    return rc;
}
