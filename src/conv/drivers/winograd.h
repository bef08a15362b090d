/* Winograd: the weight transforms and the forward / weight-gradient blocks of tiles
 * (the transforms of each tile size in winograd-transforms.h).
 *
 * A template: conv/conv.h includes it once per dtype (FC_T, FC_FN). */
#ifndef FC_T
#error "conv/drivers/winograd.h is a template: include conv/conv.h"
#endif

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

/* dU += the weight gradient of tiles [t0, t0 + cnt) in U's space, its entries [e0, e1):
 * part[(e * cpad + c) * ldg + co] (cpad = C rounded up to mr, ldg = C_out rounded up to
 * nr; rows past C are computed and dropped), tile and E as in fc_wg_forward_block.
 * Scratch: v E * cnt * C, mg E * cnt * ldg, off mr entries. */
static void FC_FN(fc_wg_grad_weight_block)(const fc_conv *g, FC_FN(fc_kpx_t) kpx, int tile,
                                           const FC_T *x, const FC_T *gy, const FC_T *zero,
                                           FC_T *part, ptrdiff_t t0, ptrdiff_t cnt,
                                           ptrdiff_t th, ptrdiff_t tw, int e0, int e1,
                                           FC_T *v, FC_T *mg, ptrdiff_t *off)
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
    (void)E;
    for (e = e0; e < e1; e++)
        for (c0 = 0; c0 < C; c0 += mr) {
            for (i = 0; i < mr; i++)  /* rows c past C read channel c0 (dropped) */
                off[i] = c0 + i < C ? c0 + i : c0;
            for (cb = 0; cb < ncb; cb++)
                kpx(1, cnt, &zero_seg, &zero_seg, v + e * es, off, C,
                    mg + e * gs + cb * nr, ldg, part + (e * cpad + c0) * ldg + cb * nr,
                    ldg, 1);
        }
}

/* ---- entry points (src/_conv2d.pyx): one parallel loop each (parallel.h) ---------- */

typedef struct {
    const fc_conv *g;
    FC_FN(fc_kpx_t) kpx;
    FC_FN(fc_kwo_t) wo;
    int tile, L, relu, pool;
    const double *G;
    const FC_T *x, *w, *gy, *bias, *zero;
    FC_T *y;
    ptrdiff_t so, sc, si, sj, co_n, c_n, nr, cpad, ldg;
    ptrdiff_t block, total, th, tw, tpi, n_per, psize;
    ptrdiff_t parts;   /* fc_wg_grad_weight: work items per group of images */
} FC_FN(fc_wg_args);

static void FC_FN(fc_wg_weights_item)(const void *args, ptrdiff_t c, void *const *sc)
{
    const FC_FN(fc_wg_args) *a = (const FC_FN(fc_wg_args) *)args;
    (void)sc;
    FC_FN(fc_wg_weights)(a->w, a->so, a->sc, a->si, a->sj, a->co_n, a->c_n, a->G, a->L,
                         a->nr, a->y, c, c + 1);
}

/* U = G g G^T of a 3x3 kernel w (C_out, C_in, 3, 3) (element (co, c, i, j) at
 * w[co * so + c * sc + i * si + j * sj]) into u, packed for the ISA's pixel-row tile
 * (fc_wg_weights).  Parallel over C_in. */
static int FC_FN(fc_wg_weights_run)(const fc_isa *isa, const FC_T *w, ptrdiff_t so,
                                    ptrdiff_t sc, ptrdiff_t si, ptrdiff_t sj,
                                    ptrdiff_t co_n, ptrdiff_t c_n, const double *G, int L,
                                    FC_T *u, int half)
{
    fc_loop lp = fc_loop_of((double)co_n * c_n * 400, c_n, 0);
    FC_FN(fc_wg_args) a;
    memset(&a, 0, sizeof a);
    a.w = w;
    a.so = so;
    a.sc = sc;
    a.si = si;
    a.sj = sj;
    a.co_n = co_n;
    a.c_n = c_n;
    a.G = G;
    a.L = L;
    a.nr = half ? isa->FC_FN(nr_px1) : isa->FC_FN(nr_px);
    a.y = u;
    return fc_parallel_for(&lp, FC_FN(fc_wg_weights_item), &a);
}

static void FC_FN(fc_wg_grad_weights_item)(const void *args, ptrdiff_t c, void *const *sc)
{
    const FC_FN(fc_wg_args) *a = (const FC_FN(fc_wg_args) *)args;
    (void)sc;
    FC_FN(fc_wg_grad_weights)(a->w, a->cpad, a->ldg, a->co_n, a->c_n, a->G, a->L, a->y, c,
                              c + 1);
}

/* grad_w = G^T dU G: du (E, cpad, ldg) into gw (3, 3, C_in, C_out).  Parallel over
 * C_in. */
static int FC_FN(fc_wg_grad_weights_run)(const FC_T *du, FC_T *gw, ptrdiff_t c_n,
                                         ptrdiff_t co_n, ptrdiff_t cpad, ptrdiff_t ldg,
                                         const double *G, int L)
{
    fc_loop lp = fc_loop_of((double)co_n * c_n * 400, c_n, 0);
    FC_FN(fc_wg_args) a;
    memset(&a, 0, sizeof a);
    a.w = du;
    a.cpad = cpad;
    a.ldg = ldg;
    a.co_n = co_n;
    a.c_n = c_n;
    a.G = G;
    a.L = L;
    a.y = gw;
    return fc_parallel_for(&lp, FC_FN(fc_wg_grad_weights_item), &a);
}

/* n zeros from fc_alloc (freed with fc_free): Winograd's padding row, or NULL. */
static FC_T *FC_FN(fc_wg_zero_row)(ptrdiff_t n)
{
    FC_T *row = (FC_T *)fc_alloc(n > 0 ? n * sizeof(FC_T) : 1);
    if (row != NULL)
        memset(row, 0, n * sizeof(FC_T));
    return row;
}

static void FC_FN(fc_wg_forward_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_wg_args) *a = (const FC_FN(fc_wg_args) *)args;
    const ptrdiff_t t0 = it * a->block;
    const ptrdiff_t cnt = a->total - t0 < a->block ? a->total - t0 : a->block;
    FC_FN(fc_wg_forward_block)(a->g, a->kpx, a->tile, a->x, a->zero, a->w, a->bias, a->y,
                               t0, cnt, a->th, a->tw, a->relu, a->pool, a->wo,
                               (FC_T *)sc[0], (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
}

/* Winograd F(tile x tile, 3x3) forward (tile 2, 4 or 5), channels_last (3x3, stride 1,
 * dilation 1, one group): y = conv(x) (+ bias) (then ReLU); u from fc_wg_weights_run.
 * pool (an even tile): y is the 2x2/2 max pool of that instead.  Parallel over blocks
 * of `block` tiles (a multiple of MR). */
static int FC_FN(fc_wg_forward)(const fc_isa *isa, const fc_conv *g0, int tile,
                                const FC_T *x, const FC_T *u, const FC_T *bias, FC_T *y,
                                ptrdiff_t block, int relu, int pool, int half)
{
    const fc_conv g = FC_FN(fc_px_geometry)(isa, g0, half);
    const ptrdiff_t E = (tile + 2) * (tile + 2), side = pool ? tile / 2 : tile;
    const ptrdiff_t th = ((pool ? g.oh / 2 : g.oh) + side - 1) / side;
    const ptrdiff_t tw = ((pool ? g.ow / 2 : g.ow) + side - 1) / side;
    const ptrdiff_t total = g.n * th * tw, items = (total + block - 1) / block;
    fc_loop lp = fc_loop_of((double)total * E * g.c * g.cout, items, 1);
    FC_FN(fc_wg_args) a;
    int rc;
    memset(&a, 0, sizeof a);
    a.g = &g;
    a.kpx = half ? isa->FC_FN(kpx1) : isa->FC_FN(kpx);
    a.wo = FC_WGO(isa);
    a.tile = tile;
    a.x = x;
    a.w = u;
    a.bias = bias;
    a.y = y;
    a.total = total;
    a.block = block;
    a.th = th;
    a.tw = tw;
    a.relu = relu;
    a.pool = pool;
    a.zero = FC_FN(fc_wg_zero_row)(g.c);
    if (a.zero == NULL)
        return FC_ENOMEM_TABLE;
    fc_scratch(&lp, E * block * g.c * sizeof(FC_T));   /* v */
    fc_scratch(&lp, E * g.mr * g.nr * sizeof(FC_T));   /* m */
    fc_scratch(&lp, g.mr * sizeof(ptrdiff_t));         /* off */
    rc = fc_parallel_for(&lp, FC_FN(fc_wg_forward_item), &a);
    fc_free((void *)a.zero);
    return rc;
}

static void FC_FN(fc_wg_grad_weight_item)(const void *args, ptrdiff_t it, void *const *sc)
{
    const FC_FN(fc_wg_args) *a = (const FC_FN(fc_wg_args) *)args;
    const ptrdiff_t ig = it / a->parts, eg = it % a->parts, end = a->g->n * a->tpi;
    const ptrdiff_t t1 = (ig + 1) * a->n_per * a->tpi > end ? end
                                                             : (ig + 1) * a->n_per * a->tpi;
    const int E = (a->tile + 2) * (a->tile + 2);
    const int e0 = (int)(eg * E / a->parts), e1 = (int)((eg + 1) * E / a->parts);
    ptrdiff_t t0, cnt;
    for (t0 = ig * a->n_per * a->tpi; t0 < t1; t0 += cnt) {
        cnt = t1 - t0 < a->block ? t1 - t0 : a->block;
        FC_FN(fc_wg_grad_weight_block)(a->g, a->kpx, a->tile, a->x, a->gy, a->zero,
                                       a->y + ig * a->psize, t0, cnt, a->th, a->tw, e0, e1,
                                       (FC_T *)sc[0], (FC_T *)sc[1], (ptrdiff_t *)sc[2]);
    }
}


/* Partial weight gradients in Winograd's space, one per group of n_per images: part
 * (groups, E, cpad, ldg), cpad = C_in rounded up to MR, ldg = C_out rounded up to NR,
 * zeroed.  Each group's tiles are taken `block` at a time.  Parallel over the groups
 * and, for fewer groups than threads, parts of the entries E (which share no sums: the
 * same bits however cut). */
static int FC_FN(fc_wg_grad_weight)(const fc_isa *isa, const fc_conv *g0, int tile,
                                    const FC_T *x, const FC_T *gy, FC_T *part,
                                    ptrdiff_t n_per, ptrdiff_t block, int half)
{
    const fc_conv g = FC_FN(fc_px_geometry)(isa, g0, half);
    const ptrdiff_t E = (tile + 2) * (tile + 2);
    const ptrdiff_t th = (g.oh + tile - 1) / tile, tw = (g.ow + tile - 1) / tile;
    const ptrdiff_t ldg = (g.cout + g.nr - 1) / g.nr * g.nr;
    const ptrdiff_t cpad = (g.c + g.mr - 1) / g.mr * g.mr;
    const double macs = (double)g.n * th * tw * E * g.c * g.cout;
    const ptrdiff_t groups = (g.n + n_per - 1) / n_per;
    /* fewer groups than threads (up to winograd_partial_images images make one): each
     * group's entries cut into parts too, each transforming the group's tiles again */
    const ptrdiff_t parts = fc_parts_per_group(macs, groups, E);
    fc_loop lp = fc_loop_of(macs, groups * parts, 1);
    FC_FN(fc_wg_args) a;
    int rc;
    memset(&a, 0, sizeof a);
    a.parts = parts;
    a.g = &g;
    a.kpx = half ? isa->FC_FN(kpx1) : isa->FC_FN(kpx);
    a.tile = tile;
    a.x = x;
    a.gy = gy;
    a.y = part;
    a.th = th;
    a.tw = tw;
    a.tpi = th * tw;
    a.n_per = n_per;
    a.block = block;
    a.psize = E * cpad * ldg;
    a.zero = FC_FN(fc_wg_zero_row)(g.c > g.cout ? g.c : g.cout);
    if (a.zero == NULL)
        return FC_ENOMEM_TABLE;
    fc_scratch(&lp, E * block * g.c * sizeof(FC_T));   /* v */
    fc_scratch(&lp, E * block * ldg * sizeof(FC_T));   /* mg */
    fc_scratch(&lp, g.mr * sizeof(ptrdiff_t));         /* off */
    rc = fc_parallel_for(&lp, FC_FN(fc_wg_grad_weight_item), &a);
    fc_free((void *)a.zero);
    return rc;
}
