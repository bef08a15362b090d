/* The pixel-row algorithm (channels_last, one group): windows read in place by the
 * pixel-row micro-kernel; its dense (fully-connected) and fused-pool uses.
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/pixelrow.h is a template: include conv/conv.h"
#endif

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

/* ReLU6 as activations.relu6 takes it: NaN and -0.0 kept. */
static inline FC_T FC_FN(fc_relu6_1)(FC_T v)
{
    v = v < 0 ? (FC_T)0 : v;
    return v > (FC_T)6 ? (FC_T)6 : v;
}

/* One row of an output tile written out: dst[j] = src[j] (+ bc[j]) (then ReLU, or
 * ReLU6 where relu is FC_RELU6) for j < cols, in one vectorised pass (bc NULL: no
 * bias). */
static inline void FC_FN(fc_tile_store)(FC_T *dst, const FC_T *src, const FC_T *bc,
                                        ptrdiff_t cols, int relu)
{
    ptrdiff_t j;
    if (relu == FC_RELU6) {
        if (bc) {
#pragma omp simd
            for (j = 0; j < cols; j++)
                dst[j] = FC_FN(fc_relu6_1)(src[j] + bc[j]);
        } else {
#pragma omp simd
            for (j = 0; j < cols; j++)
                dst[j] = FC_FN(fc_relu6_1)(src[j]);
        }
    } else if (bc && relu) {
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

#ifndef FC_PX_CHUNK_BYTES
/* The forward's pixels in chunks whose input (and the weight blocks they run on) stay
 * in the L2 cache while every block of output channels takes them: without, each
 * block streamed the whole image from memory again (docs/design/algorithms.md). */
#define FC_PX_CHUNK_BYTES (192 * 1024)
/* Pixels per chunk of fc_px_forward_image over ncb channel blocks: the chunk's rows
 * of x (at most kh input rows of C values per output pixel) within FC_PX_CHUNK_BYTES,
 * a multiple of mr; the whole range (no chunks) for one block, or where the blocks'
 * weights alone outgrow that budget (re-read for every chunk, they would cost more
 * than the chunks save). */
static ptrdiff_t fc_px_chunk(const fc_conv *g, ptrdiff_t ncb, size_t item)
{
    const double per_px = (double)g->kh * g->c * item;
    const double weights = (double)ncb * g->kg * g->nr * item;
    ptrdiff_t px;
    if (ncb < 2 || weights > FC_PX_CHUNK_BYTES)
        return PTRDIFF_MAX;
    px = (ptrdiff_t)(FC_PX_CHUNK_BYTES / per_px) / g->mr * g->mr;
    return px < g->mr ? g->mr : px;
}
#endif

/* Forward of image n (channels_last, one group): its channel blocks [cb0, cb1) and
 * output pixels [p_lo, p_hi) (p_lo a multiple of mr).  bpk: the weights packed
 * (ceil(cout/nr), kg, nr) with k = (ki, kj, c), zero beyond cout.  Scratch: xp (see
 * fc_px_image), tile mr*nr, idx ceil(P/mr)*mr + 2*kh*kw entries (P = oh*ow). */
FC_CLONES static void FC_FN(fc_px_forward_image)(const fc_conv *g, FC_FN(fc_kpx_t) kpx,
                                       FC_FN(fc_kpxo_t) kpxo,
                                       const FC_T *x, const FC_T *bpk, const FC_T *bias,
                                       FC_T *y, ptrdiff_t n, int relu, FC_T *xp,
                                       FC_T *tile, ptrdiff_t *idx, ptrdiff_t cb0,
                                       ptrdiff_t cb1, ptrdiff_t p_lo, ptrdiff_t p_hi)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, P = g->oh * g->ow;
    const ptrdiff_t P_pad = (P + mr - 1) / mr * mr;
    ptrdiff_t *off = idx, *sega = idx + P_pad, *segb = sega + g->kh * g->kw;
    const ptrdiff_t chunk = fc_px_chunk(g, cb1 - cb0, sizeof(FC_T));
    ptrdiff_t ws, nseg, len, s, cb, p0, i, p, oy, ox, c0, c1;
    const FC_T *xa = FC_FN(fc_px_image)(g, x, n, xp, &ws);
    /* (oy, ox) walks the pixels in order: a division per pixel was a visible share of
     * a layer's time (docs/design/algorithms.md).  Rows past the image repeat pixel 0
     * (dropped). */
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
    for (c0 = p_lo; c0 < p_hi; c0 = c1) {  /* chunks of pixels, every block on each */
        c1 = p_hi - c0 > chunk ? c0 + chunk : p_hi;
        for (cb = cb0; cb < cb1; cb++) {
            const ptrdiff_t co0 = cb * nr, cols = (g->cout - co0 < nr) ? g->cout - co0 : nr;
            for (p0 = c0; p0 < c1; p0 += mr) {
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
                if (cnt == mr && cols == nr) {  /* a whole tile: straight into y */
                    FC_T *y0 = y + (n * P + p0) * g->cout + co0;
                    kpxo((hi - lo) * per_ki, len, sega + lo * per_ki,
                         segb + lo * per_ki, xa, off + p0, bpk + cb * g->kg * nr, y0,
                         g->cout, bias ? bias + co0 : NULL);
                    if (relu)  /* (in place, in L1: the activation as fc_tile_store's) */
                        for (i = 0; i < mr; i++)
                            FC_FN(fc_tile_store)(y0 + i * g->cout, y0 + i * g->cout, NULL,
                                                 nr, relu);
                    continue;
                }
                kpx((hi - lo) * per_ki, len, sega + lo * per_ki, segb + lo * per_ki, xa,
                    off + p0, 1, bpk + cb * g->kg * nr, nr, tile, nr, 0);
                for (i = 0; i < cnt; i++)
                    FC_FN(fc_tile_store)(y + (n * P + p0 + i) * g->cout + co0,
                                         tile + i * nr, bias ? bias + co0 : NULL, cols,
                                         relu);
            }
        }
    }
}

/* Columns [co0, co0 + cols) (cols <= nr) of a dense layer's y = x w (+ bias) (then
 * ReLU): x (m, k), w (k, n) and y (m, n) row-major -- or, with x_t, x given as its
 * transpose (k, m) row-major, with w_t, w as its transpose (n, k) row-major (the
 * gradients' x^T and w^T, read where they are).  The block's columns of w are first
 * copied into wb (k * nr, zero past cols: contiguous, in cache for every tile of rows);
 * the pixel-row kernel then reads x's rows in place (with x_t, each row's elements m
 * apart).  (Reading w in place, its rows n apart, was slower; BLAS packs all of w on
 * every call: docs/design/algorithms.md.)  Scratch: wb, tile mr * nr, off mr entries.
 * Rows past m repeat row p0 (dropped). */
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

/* Weight gradient of images [n_lo, n_hi) (channels_last, one group), accumulated into
 * the tiles [q0, q1) of part (ceil(kg/mr)*mr, ceil(cout/nr)*nr), tile q = (column block
 * q / nkt, row block q % nkt): rows k = (ki, kj, c), columns co -- the channels_last
 * weight layout.  Scratch: xp (see fc_px_image); gyp P * ceil(cout/nr)*nr (grad_y of
 * one image in panels); idx ceil(kg/mr)*mr + 2*oh entries. */
static void FC_FN(fc_px_grad_weight_item)(const fc_conv *g, FC_FN(fc_kpx_t) kpx,
                                          const FC_T *x, const FC_T *gy, FC_T *part,
                                          ptrdiff_t n_lo, ptrdiff_t n_hi, ptrdiff_t q0,
                                          ptrdiff_t q1, FC_T *xp, FC_T *gyp,
                                          ptrdiff_t *idx)
{
    const ptrdiff_t mr = g->mr, nr = g->nr, C = g->c, P = g->oh * g->ow;
    const ptrdiff_t nkt = (g->kg + mr - 1) / mr, ncb = (g->cout + nr - 1) / nr;
    const ptrdiff_t ldc = ncb * nr, kwc = g->kw * C;
    ptrdiff_t *offk = idx, *sega = idx + nkt * mr, *segb = sega + g->oh;
    ptrdiff_t cb0, cb1;   /* (the column blocks its tiles read) */
    ptrdiff_t n, ws, oy, kt, cb, k, p, q;
    if (q1 <= q0)  /* (no tiles: an empty weight) */
        return;
    cb0 = q0 / nkt;
    cb1 = (q1 - 1) / nkt + 1;
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
        else for (cb = cb0; cb < cb1; cb++) {
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
        for (q = q0; q < q1; q++) {
            cb = q / nkt;
            kt = q % nkt;
            /* (Not blocked over output rows to keep x and grad_y in L1: every kpx
             * call ends by adding its tile to part (docs/design/algorithms.md).) */
            kpx(g->oh, g->ow, sega, segb, xa, offk + kt * mr, g->sx * C,
                panels + cb * P * nr, nr, part + kt * mr * ldc + cb * nr, ldc, 1);
        }
    }
}

/* The activation and average pool after a forward (pixel-row and wide algorithms). */

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

/* ---- entry points (src/_conv2d.pyx): one parallel loop each (parallel.h) ---------- */

/* g with the ISA's pixel-row tile for this dtype (half: the half-width tile). */
static fc_conv FC_FN(fc_px_geometry)(const fc_isa *isa, const fc_conv *g0, int half)
{
    fc_conv g = *g0;
    g.mr = half ? isa->FC_FN(mr_px1) : isa->FC_FN(mr_px);
    g.nr = half ? isa->FC_FN(nr_px1) : isa->FC_FN(nr_px);
    return g;
}

/* Elements of the zero-padded image copy of the pixel-row paths (fc_px_image). */
static ptrdiff_t FC_FN(fc_px_xp_len)(const fc_conv *g)
{
    return ((g->oh - 1) * g->sy + (g->kh - 1) * g->dy + 1) *
           ((g->ow - 1) * g->sx + (g->kw - 1) * g->dx + 1) * g->c;
}

typedef struct {
    const fc_conv *g;
    FC_FN(fc_kpx_t) kpx;
    const FC_T *x, *w, *gy, *bias;
    FC_T *y, *yq;
    double *bsum;
    int relu, act, max_pool, avg_pool;
    ptrdiff_t n_per, part_stride;
    ptrdiff_t parts;            /* fc_px_forward: work items per image */
    ptrdiff_t m, k, n, mr, nr;  /* fc_dense_forward */
    int x_t, w_t;
    ptrdiff_t pparts;           /* fc_px_forward: parts of an image's pixel tiles */
    FC_FN(fc_kpxo_t) kpxo;      /* fc_px_forward: kpx's whole tiles into y */
} FC_FN(fc_px_args);

static void FC_FN(fc_px_forward_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_px_args) *a = (const FC_FN(fc_px_args) *)args;
    const fc_conv *g = a->g;
    /* item it: image n, a share of its channel blocks and of its pixel tiles */
    const ptrdiff_t n = it / a->parts, part = it % a->parts;
    const ptrdiff_t cparts = a->parts / a->pparts, cpart = part / a->pparts;
    const ptrdiff_t ppart = part % a->pparts, P = g->oh * g->ow;
    const ptrdiff_t ncb = (g->cout + g->nr - 1) / g->nr, tiles = (P + g->mr - 1) / g->mr;
    const ptrdiff_t cb0 = ncb * cpart / cparts, cb1 = ncb * (cpart + 1) / cparts;
    const ptrdiff_t p_lo = tiles * ppart / a->pparts * g->mr;
    const ptrdiff_t p_hi = tiles * (ppart + 1) / a->pparts * g->mr;
    const int pooled = a->max_pool || a->avg_pool;
    const int post = a->act != FC_ACT_NONE || a->avg_pool || a->yq != NULL;
    const ptrdiff_t img = g->oh * g->ow * g->cout, x_img = g->h * g->w * g->c;
    const ptrdiff_t q_img = (g->oh / 2) * (g->ow / 2) * g->cout;
    FC_T *yimg = (FC_T *)sc[3];
    /* pooled: image n as image 0 of x + n * x_img, written to yimg */
    FC_T *out = pooled ? yimg : a->y + n * img;
    FC_T *qout = a->avg_pool ? a->y + n * q_img : (a->yq != NULL ? a->yq + n * q_img : NULL);
    FC_FN(fc_px_forward_image)(g, a->kpx, a->kpxo, pooled ? a->x + n * x_img : a->x, a->w,
                               a->bias,
                               pooled ? yimg : a->y, pooled ? 0 : n, a->relu,
                               (FC_T *)sc[0], (FC_T *)sc[1], (ptrdiff_t *)sc[2], cb0, cb1,
                               p_lo, p_hi < P ? p_hi : P);
    if (post)
        FC_FN(fc_act_pool_image)(out, g->oh, g->ow, g->cout, a->act, qout);
    if (a->max_pool)
        FC_FN(fc_max_pool_2x2_image)(yimg, g->oh, g->ow, g->cout, a->y + n * q_img);
}

/* channels_last, one group: y = conv(x) (+ bias) (then ReLU, or act) by the pixel-row
 * kernel (half: its half-width tile); bpk = weights packed (ceil(cout/NR), kg, NR).
 * max_pool / avg_pool: y is the 2x2/2 pool of that instead, each image pooled from a
 * per-thread copy; yq (without a pool, may be NULL): the average pool as well as y.
 * Parallel over images; a batch of fewer than FC_PX_SPLIT_IMAGES images, with no
 * pool or output pass, over each image's blocks of NR output channels too (batch 1:
 * the cores share the image; each item copies the padded image it reads), and where
 * those items are still fewer than the threads (few channel blocks), over parts of
 * the image's pixel tiles (pixels share no sums: the same bits however cut). */
#define FC_PX_SPLIT_IMAGES 4
static int FC_FN(fc_px_forward)(const fc_isa *isa, const fc_conv *g0, int half,
                                const FC_T *x, const FC_T *bpk, const FC_T *bias, FC_T *y,
                                int relu, int act, int max_pool, int avg_pool, FC_T *yq)
{
    const fc_conv g = FC_FN(fc_px_geometry)(isa, g0, half);
    const ptrdiff_t mr = g.mr, nr = g.nr, img = g.oh * g.ow * g.cout;
    const ptrdiff_t idx_len = (g.oh * g.ow + mr - 1) / mr * mr + 2 * g.kh * g.kw;
    const int whole = max_pool || avg_pool || act != FC_ACT_NONE || yq != NULL;
    const double macs = (double)g.n * g.oh * g.ow * g.cout * g.kg;
    const ptrdiff_t cparts = (!whole && g.n < FC_PX_SPLIT_IMAGES) ? (g.cout + nr - 1) / nr
                                                                   : 1;
    const ptrdiff_t pparts = whole ? 1 : fc_parts_per_group(macs, g.n * cparts,
                                                            (g.oh * g.ow + mr - 1) / mr);
    fc_loop lp = fc_loop_of(macs, g.n * cparts * pparts, 1);
    FC_FN(fc_px_args) a = {&g, half ? isa->FC_FN(kpx1) : isa->FC_FN(kpx), x, bpk, NULL,
                           bias, y, yq, NULL, relu, act, max_pool, avg_pool, 0, 0,
                           cparts * pparts, 0, 0, 0, 0, 0, 0, 0, pparts,
                           half ? isa->FC_FN(kpxo1) : isa->FC_FN(kpxo)};
    fc_scratch(&lp, FC_FN(fc_px_xp_len)(&g) * sizeof(FC_T));                              /* xp */
    fc_scratch(&lp, mr * nr * sizeof(FC_T));                                     /* tile */
    fc_scratch(&lp, idx_len * sizeof(ptrdiff_t));                                 /* idx */
    fc_scratch(&lp, (max_pool || avg_pool ? img : 1) * sizeof(FC_T));            /* yimg */
    return fc_parallel_for(&lp, FC_FN(fc_px_forward_item), &a);
}

static void FC_FN(fc_dense_forward_item)(const void *args, ptrdiff_t cb, void *const *sc)
{
    const FC_FN(fc_px_args) *a = (const FC_FN(fc_px_args) *)args;
    const ptrdiff_t co0 = cb * a->nr, cols = a->n - co0 < a->nr ? a->n - co0 : a->nr;
    FC_FN(fc_dense_block)(a->kpx, a->mr, a->nr, a->x, a->m, a->k, a->w, a->bias, a->y,
                          a->n, co0, cols, a->relu, a->x_t, a->w_t, (FC_T *)sc[0],
                          (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
}

/* y = x @ w (+ bias) (then ReLU), x (m, k), w (k, n), y (m, n), all non-empty, by the
 * pixel-row kernel on blocks of NR columns of w (x_t: x given as x.T, w_t: w as w.T).
 * Parallel over the column blocks. */
static int FC_FN(fc_dense_forward)(const fc_isa *isa, const FC_T *x, ptrdiff_t m,
                                   ptrdiff_t k, const FC_T *w, const FC_T *bias, FC_T *y,
                                   ptrdiff_t n, int relu, int x_t, int w_t)
{
    const ptrdiff_t mr = isa->FC_FN(mr_px), nr = isa->FC_FN(nr_px);
    fc_loop lp = fc_loop_of((double)m * k * n, (n + nr - 1) / nr, 1);
    FC_FN(fc_px_args) a = {NULL, isa->FC_FN(kpx), x, w, NULL, bias, y, NULL, NULL, relu,
                           0, 0, 0, 0, 0, 1, m, k, n, mr, nr, x_t, w_t};
    fc_scratch(&lp, k * nr * sizeof(FC_T));      /* wb */
    fc_scratch(&lp, mr * nr * sizeof(FC_T));     /* tile */
    fc_scratch(&lp, mr * sizeof(ptrdiff_t));     /* off */
    return fc_parallel_for(&lp, FC_FN(fc_dense_forward_item), &a);
}

static void FC_FN(fc_px_grad_weight_run_item)(const void *args, ptrdiff_t item,
                                              void *const *sc)
{
    const FC_FN(fc_px_args) *a = (const FC_FN(fc_px_args) *)args;
    const fc_conv *g = a->g;
    const ptrdiff_t ncb = (g->cout + g->nr - 1) / g->nr, cg = item % a->parts;
    const ptrdiff_t nq = ncb * ((g->kg + g->mr - 1) / g->mr);   /* tiles of part */
    const ptrdiff_t ig = item / a->parts, n_lo = ig * a->n_per;
    const ptrdiff_t n_hi = n_lo + a->n_per > g->n ? g->n : n_lo + a->n_per;
    if (a->bsum != NULL && cg == 0)
        FC_FN(fc_bias_grad_item)(g, a->gy, a->bsum + ig * g->cout, n_lo, n_hi);
    FC_FN(fc_px_grad_weight_item)(g, a->kpx, a->x, a->gy, a->y + ig * a->part_stride, n_lo,
                                  n_hi, cg * nq / a->parts, (cg + 1) * nq / a->parts,
                                  (FC_T *)sc[0], (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
}

/* channels_last, one group: partial weight gradients by the pixel-row kernel (half: its
 * half-width tile), one per group of n_per images; part zeroed, (n_igroups,
 * ceil(kg/MR)*MR, ceil(cout/NR)*NR).  bsum (n_igroups, C_out), zeroed, or NULL: the
 * bias gradient's partial sums of the same groups too.  Parallel over image groups and,
 * for fewer groups than threads, parts of their tiles of part. */
static int FC_FN(fc_px_grad_weight)(const fc_isa *isa, const fc_conv *g0, int half,
                                    const FC_T *x, const FC_T *gy, FC_T *part,
                                    ptrdiff_t n_per, double *bsum)
{
    const fc_conv g = FC_FN(fc_px_geometry)(isa, g0, half);
    const ptrdiff_t mr = g.mr, nr = g.nr;
    const ptrdiff_t cout_pad = (g.cout + nr - 1) / nr * nr;
    const ptrdiff_t kg_pad = (g.kg + mr - 1) / mr * mr;
    const double macs = (double)g.n * g.oh * g.ow * g.cout * g.kg;
    const ptrdiff_t groups = (g.n + n_per - 1) / n_per;
    /* fewer groups than threads (batch 1: one): each group's tiles of part (column
     * block x row block) cut into parts too (they share no sums: the same bits however
     * cut) */
    const ptrdiff_t cgroups = fc_parts_per_group(macs, groups,
                                                 (cout_pad / nr) * (kg_pad / mr));
    fc_loop lp = fc_loop_of(macs, groups * cgroups, 1);
    FC_FN(fc_px_args) a = {&g, half ? isa->FC_FN(kpx1) : isa->FC_FN(kpx), x, NULL, gy,
                           NULL, part, NULL, bsum, 0, 0, 0, 0, n_per, kg_pad * cout_pad,
                           cgroups, 0, 0, 0, 0, 0, 0, 0};
    fc_scratch(&lp, FC_FN(fc_px_xp_len)(&g) * sizeof(FC_T));           /* xp */
    fc_scratch(&lp, g.oh * g.ow * cout_pad * sizeof(FC_T));     /* gyp */
    fc_scratch(&lp, (kg_pad + 2 * g.oh) * sizeof(ptrdiff_t));   /* idx */
    return fc_parallel_for(&lp, FC_FN(fc_px_grad_weight_run_item), &a);
}
