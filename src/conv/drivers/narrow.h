/* The narrow algorithm (channels_last, one group, few output channels): vectorised
 * along the input channels.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/narrow.h is a template: include conv/conv.h"
#endif


/* Forward of image n's output pixels [p_lo, p_hi) (p_lo a multiple of mr) with few
 * output channels (channels_last, one group, C a multiple of the ISA's vector length):
 * the narrow kernel, tiles of mr pixels x FC_NO channels, vectorised along the input
 * channels.  wn: the weights packed (ceil(cout/FC_NO), kh*kw, FC_NO, C), zero past
 * cout.  Scratch: xp (see fc_px_image), tile mr*FC_NO, idx mr + kh*kw entries.
 * (g->mr is the narrow kernel's row count.) */
static void FC_FN(fc_px_forward_narrow_image)(const fc_conv *g, FC_FN(fc_knr_t) knr,
                                              const FC_T *x, const FC_T *wn,
                                              const FC_T *bias, FC_T *y, ptrdiff_t n,
                                              ptrdiff_t p_lo, ptrdiff_t p_hi, int relu,
                                              FC_T *xp, FC_T *tile, ptrdiff_t *idx)
{
    const ptrdiff_t mr = g->mr, C = g->c, P = g->oh * g->ow, khw = g->kh * g->kw;
    const ptrdiff_t nob = (g->cout + FC_NO - 1) / FC_NO;
    ptrdiff_t *off = idx, *sega = idx + mr;
    ptrdiff_t ws, s, ob, p0, i, j, oy = p_lo / g->ow, ox = p_lo % g->ow;
    const FC_T *xa = FC_FN(fc_px_image)(g, x, n, xp, &ws);
    for (s = 0; s < khw; s++)
        sega[s] = ((s / g->kw) * g->dy * ws + (s % g->kw) * g->dx) * C;
    for (p0 = p_lo; p0 < p_hi; p0 += mr) {
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

/* ---- entry point (src/_conv2d.pyx): one parallel loop (parallel.h) ---------------- */

typedef struct {
    const fc_conv *g;
    FC_FN(fc_knr_t) knr;
    const FC_T *x, *wn, *bias;
    FC_T *y;
    int relu;
    ptrdiff_t parts;   /* work items per image */
} FC_FN(fc_narrow_args);

static void FC_FN(fc_narrow_forward_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_narrow_args) *a = (const FC_FN(fc_narrow_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t n = it / a->parts, part = it % a->parts, mr = g->mr;
    const ptrdiff_t tiles = (g->oh * g->ow + mr - 1) / mr, P = g->oh * g->ow;
    const ptrdiff_t p_lo = tiles * part / a->parts * mr;
    const ptrdiff_t p_hi = tiles * (part + 1) / a->parts * mr;
    FC_FN(fc_px_forward_narrow_image)(g, a->knr, a->x, a->wn, a->bias, a->y, n, p_lo,
                                      p_hi < P ? p_hi : P, a->relu, (FC_T *)sc[0],
                                      (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
}

/* channels_last, one group, few output channels, C a multiple of the vector length:
 * y = conv(x) (+ bias) (then ReLU); wn = weights packed (ceil(cout/FC_NO), kh*kw,
 * FC_NO, C).  Parallel over images and, for fewer images than threads, parts of their
 * pixel tiles (each part fills its own padded copy of the image). */
static int FC_FN(fc_narrow_forward)(const fc_isa *isa, const fc_conv *g0, const FC_T *x,
                                    const FC_T *wn, const FC_T *bias, FC_T *y, int relu)
{
    fc_conv g = *g0;
    fc_loop lp;
    FC_FN(fc_narrow_args) a;
    double macs;
    g.mr = isa->mr_nr;
    g.nr = FC_NO;
    macs = (double)g.n * g.oh * g.ow * g.cout * g.kg;
    a.parts = fc_parts_per_group(macs, g.n, (g.oh * g.ow + g.mr - 1) / g.mr);
    lp = fc_loop_of(macs, g.n * a.parts, 1);
    a.g = &g;
    a.knr = isa->FC_FN(knr);
    a.x = x;
    a.wn = wn;
    a.bias = bias;
    a.y = y;
    a.relu = relu;
    fc_scratch(&lp, FC_FN(fc_px_xp_len)(&g) * sizeof(FC_T));  /* xp */
    fc_scratch(&lp, g.mr * FC_NO * sizeof(FC_T));            /* tile */
    fc_scratch(&lp, (g.mr + g.kh * g.kw) * sizeof(ptrdiff_t)); /* idx */
    return fc_parallel_for(&lp, FC_FN(fc_narrow_forward_item), &a);
}
