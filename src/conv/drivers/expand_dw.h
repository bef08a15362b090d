/* A 1x1 convolution and the depthwise convolution of its output in one pass
 * (channels_last, inference): MobileNet's expansion (or pointwise) layer and the
 * depthwise layer after it, each with its batch normalization folded in and its ReLU
 * or ReLU6 in its output pass (fastconv/fusion.py, "expand_depthwise").
 *
 * The expanded tensor is the widest of an inverted residual block (6x its input's
 * channels); written out, it goes to memory and comes back for the depthwise layer.
 * Here a work item is a band of the depthwise layer's output rows of one image: the
 * expanded rows those outputs read (the band's rows times the stride, plus the
 * kernel's halo) are computed by the pixel-row kernels into a per-thread buffer
 * (FC_EDW_BYTES at most), and the depthwise row kernels read them there, in cache.
 * Neighbouring bands compute their shared halo rows twice.  Where a whole image fits
 * the buffer, an item is whole images, enough to fill FC_EDW_TILES pixel-row tiles in
 * one run of pixels (a small image alone leaves its last tile partly empty).  Each
 * expanded pixel is the same sum in the same order whichever item computes it (the
 * pixel-row kernels' sums run over k alone), and each depthwise output the same taps
 * in the same order as the depthwise forward's, so the bits are those of the two
 * layers' forwards on the pixel-row and depthwise kernels, whatever the items.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN), after pixelrow.h
 * and depthwise.h. */
#ifndef FC_T
#error "conv/drivers/expand_dw.h is a template: include conv/conv.h"
#endif

#ifndef FC_EDW_BYTES
/* The expanded rows of a band: within a quarter of a core's L2 cache, beside the
 * band's input rows and the depthwise weights; larger bands compute fewer halo rows
 * twice (the measurements: docs/design/algorithms.md). */
#define FC_EDW_BYTES (512 * 1024)
/* Fewer images than this: bands of a few rows, so that an image's bands are work
 * items enough for the cores (the band depends on the shapes alone). */
#define FC_EDW_SPLIT_IMAGES 4
#define FC_EDW_MIN_BANDS 4
/* Whole images per item: enough for this many pixel-row tiles, no more than leave
 * FC_EDW_MIN_ITEMS items (the cores' share). */
#define FC_EDW_TILES 16
#define FC_EDW_MIN_ITEMS 8

/* The expanded rows [*e0, *e1) that depthwise output rows [r0, r1) read. */
static void fc_edw_rows(const fc_conv *gd, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t *e0,
                        ptrdiff_t *e1)
{
    ptrdiff_t a = r0 * gd->sy - gd->pt;
    ptrdiff_t b = (r1 - 1) * gd->sy - gd->pt + (gd->kh - 1) * gd->dy + 1;
    *e0 = a < 0 ? 0 : a;
    *e1 = b > gd->h ? gd->h : b;
    if (*e1 < *e0)
        *e1 = *e0;
}
#endif

typedef struct {
    const fc_conv *ge, *gd;   /* the expansion (pixel-row tile set) and the depthwise */
    FC_FN(fc_kpx_t) kpx;
    FC_FN(fc_kpxo_t) kpxo;
    const FC_FN(fc_dwk) *k;
    const FC_T *x, *we, *be, *wd, *bd;
    FC_T *y;
    int acte, actd;
    ptrdiff_t band, bands;    /* depthwise output rows per item, items per image */
    ptrdiff_t ipb;            /* images per item (bands == 1) */
} FC_FN(fc_edw_args);

static void FC_FN(fc_edw_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_edw_args) *a = (const FC_FN(fc_edw_args) *)args;
    const fc_conv *ge = a->ge, *gd = a->gd;
    const ptrdiff_t n0 = it / a->bands * a->ipb, b = it % a->bands;
    const ptrdiff_t n1 = n0 + a->ipb < ge->n ? n0 + a->ipb : ge->n;
    const ptrdiff_t r0 = b * a->band;
    const ptrdiff_t r1 = r0 + a->band < gd->oh ? r0 + a->band : gd->oh;
    FC_T *buf = (FC_T *)sc[0];
    ptrdiff_t e0 = 0, e1 = ge->h, n, oy;
    fc_conv ge1, gd1;
    FC_FN(fc_dw_args) d;
    if (a->bands > 1)  /* (whole images: every row, one run of pixels over the images) */
        fc_edw_rows(gd, r0, r1, &e0, &e1);
    /* the expansion of rows [e0, e1) of images [n0, n1) into buf: an image of those
     * rows (a 1x1 convolution reads pixels, whatever image they are of) */
    ge1 = *ge;
    ge1.n = 1;
    ge1.h = ge1.oh = (n1 - n0 - 1) * ge->h + e1 - e0;
    if (e1 > e0)
        FC_FN(fc_px_forward_image)(&ge1, a->kpx, a->kpxo,
                                   a->x + (n0 * ge->h + e0) * ge->w * ge->c, a->we, a->be,
                                   buf, 0, a->acte, (FC_T *)sc[1], (FC_T *)sc[2],
                                   (ptrdiff_t *)sc[3], 0,
                                   (ge->cout + ge->nr - 1) / ge->nr, 0,
                                   ge1.oh * ge1.ow);
    /* the depthwise rows [r0, r1) of each image on its rows in buf: an image of those
     * rows, its padding moved by e0 (rows outside [e0, e1) are outside the image) */
    gd1 = *gd;
    gd1.n = 1;
    gd1.h = e1 - e0;
    gd1.pt = gd->pt + e0;
    memset(&d, 0, sizeof d);
    d.g = &gd1;
    d.k = a->k;
    d.w = a->wd;
    d.bias = a->bd;
    d.relu = a->actd;
    for (n = n0; n < n1; n++) {
        d.x = buf + (n - n0) * (e1 - e0) * gd->w * gd->c;
        d.y = a->y + n * gd->oh * gd->ow * gd->cout;
        for (oy = r0; oy < r1; oy++)
            FC_FN(fc_dw_fwd_row)(&d, oy, &sc[3]);  /* (taps: in idx, free again) */
    }
}

/* y = depthwise(act_e(x we + be)) (+ bd), then act_d, channels_last: ge the 1x1
 * expansion (stride 1, one group, no padding), gd the depthwise convolution of its
 * output (C_out == C_in); we packed for the pixel-row tile (ceil(C/NR), C_in, NR), wd
 * (kh * kw, C) as the depthwise forward takes it; acte / actd: 0, 1 (ReLU) or
 * FC_RELU6.  Parallel over bands of output rows, or groups of whole images. */
static int FC_FN(fc_edw_forward)(const fc_isa *isa, const fc_conv *ge0, const fc_conv *gd,
                                 const FC_T *x, const FC_T *we, const FC_T *be,
                                 const FC_T *wd, const FC_T *bd, FC_T *y, int acte,
                                 int actd)
{
    const fc_conv ge = FC_FN(fc_px_geometry)(isa, ge0, 0);
    const ptrdiff_t row = ge.w * ge.cout, mr = ge.mr;
    ptrdiff_t band, rows, e0, e1, b, idx, most = 0;
    double macs;
    fc_loop lp;
    FC_FN(fc_edw_args) a;
    /* the most output rows whose expanded rows fit FC_EDW_BYTES (one at least) */
    for (band = gd->oh; band > 1; band--) {
        rows = (band - 1) * gd->sy + (gd->kh - 1) * gd->dy + 1;
        if ((size_t)(rows * row) * sizeof(FC_T) <= FC_EDW_BYTES)
            break;
    }
    if (ge.n < FC_EDW_SPLIT_IMAGES) {
        const ptrdiff_t few = (gd->oh + FC_EDW_MIN_BANDS - 1) / FC_EDW_MIN_BANDS;
        band = band < few ? band : few;
    }
    if (band < 1)
        band = 1;
    memset(&a, 0, sizeof a);
    a.ge = &ge;
    a.gd = gd;
    a.kpx = isa->FC_FN(kpx);
    a.kpxo = isa->FC_FN(kpxo);
    a.k = isa->FC_FN(dw);
    a.x = x;
    a.we = we;
    a.be = be;
    a.wd = wd;
    a.bd = bd;
    a.y = y;
    a.acte = acte;
    a.actd = actd;
    a.band = band;
    a.bands = (gd->oh + band - 1) / band;
    a.ipb = 1;
    if (a.bands == 1) {  /* whole images: enough per item to fill FC_EDW_TILES tiles */
        const ptrdiff_t per = ge.h * row, px = ge.h * ge.w;
        const ptrdiff_t fit = (ptrdiff_t)(FC_EDW_BYTES / ((size_t)per * sizeof(FC_T)));
        const ptrdiff_t spread = (ge.n + FC_EDW_MIN_ITEMS - 1) / FC_EDW_MIN_ITEMS;
        a.ipb = (FC_EDW_TILES * mr + px - 1) / px;
        a.ipb = a.ipb < fit ? a.ipb : fit;
        a.ipb = a.ipb < spread ? a.ipb : spread;
        if (a.ipb < 1)
            a.ipb = 1;
        most = a.ipb * ge.h;
    } else {
        for (b = 0; b < a.bands; b++) {  /* the largest band's expanded rows */
            const ptrdiff_t r1 = (b + 1) * band < gd->oh ? (b + 1) * band : gd->oh;
            fc_edw_rows(gd, b * band, r1, &e0, &e1);
            most = e1 - e0 > most ? e1 - e0 : most;
        }
    }
    macs = (double)ge.n * (ge.h * ge.w * ge.cout * ge.c +
                           gd->oh * gd->ow * gd->cout * gd->kh * gd->kw);
    lp = fc_loop_of(macs, (ge.n + a.ipb - 1) / a.ipb * a.bands, 1);
    fc_scratch(&lp, (size_t)((most > 0 ? most : 1) * row) * sizeof(FC_T));      /* buf */
    fc_scratch(&lp, sizeof(FC_T));                             /* xp (1x1: not read) */
    fc_scratch(&lp, (size_t)(mr * ge.nr) * sizeof(FC_T));                       /* tile */
    idx = ((most > 0 ? most : 1) * ge.w + mr - 1) / mr * mr + 2;
    if (idx < 2 * gd->kh * gd->kw)
        idx = 2 * gd->kh * gd->kw;
    fc_scratch(&lp, (size_t)idx * sizeof(ptrdiff_t));      /* idx, then the taps xo, wo */
    return fc_parallel_for(&lp, FC_FN(fc_edw_item), &a);
}
