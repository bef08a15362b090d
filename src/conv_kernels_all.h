/* Everything src/_conv2d.pyx needs from C: micro-kernels with runtime ISA dispatch
 * (conv_kernels.h), the geometry of one convolution, and the drivers of conv_driver.h
 * instantiated for float (suffix _f) and double (suffix _d).
 */
#ifndef FASTCONV_CONV_KERNELS_ALL_H
#define FASTCONV_CONV_KERNELS_ALL_H

#include <stdint.h>
#include <math.h>
#include "conv_kernels.h"
#include "activation_kernels.h"
#include "pool_grad.h"

/* One convolution, as the drivers see it.  pt and pl may be negative (cropping): the
 * input gradient of a stride-1 convolution runs the forward driver that way. */
typedef struct {
    ptrdiff_t n, c, h, w;          /* input batch, channels, height, width */
    ptrdiff_t cout, oh, ow;        /* output channels, height, width */
    ptrdiff_t groups, cg, cog, kg; /* groups; C/groups, C_out/groups, cg*kh*kw */
    ptrdiff_t kh, kw, sy, sx, dy, dx, pt, pl;
    int last;                      /* 1: channels_last */
    int mr, nr;                    /* micro-tile of the selected ISA and dtype */
} fc_conv;

/* A run of output pixels in one output row: columns jj0..jj0+len-1 of a panel. */
typedef struct {
    ptrdiff_t n, oy, ox0, len, jj0;
} fc_seg;

/* Split columns [j0, j0 + cnt) of the flattened (n, oy, ox) output into row runs. */
static ptrdiff_t fc_segments(ptrdiff_t j0, ptrdiff_t cnt, ptrdiff_t oh, ptrdiff_t ow,
                             fc_seg *seg)
{
    const ptrdiff_t P = oh * ow, end = j0 + cnt;
    ptrdiff_t j = j0, ns = 0;
    while (j < end) {
        const ptrdiff_t p = j % P, ox = p % ow;
        ptrdiff_t len = ow - ox;
        if (len > end - j)
            len = end - j;
        seg[ns].n = j / P;
        seg[ns].oy = p / ow;
        seg[ns].ox0 = ox;
        seg[ns].len = len;
        seg[ns].jj0 = j - j0;
        ns++;
        j += len;
    }
    return ns;
}

/* Row k = (c, ki, kj) of a group's im2col: offset of its element from a window's origin
 * (channel 0 of the group), and the window-relative row and column it reads. */
typedef struct {
    ptrdiff_t off, dy, dx;
} fc_krow;

/* Column j of im2col: offset of its window's origin (channel 0 of group 0; may point
 * outside the image when the window starts in the padding) and the origin's row/col. */
typedef struct {
    ptrdiff_t base, iy, ix;
} fc_col;

static void fc_fill_krows(const fc_conv *g, fc_krow *kr)
{
    ptrdiff_t c, ki, kj, k = 0;
    for (c = 0; c < g->cg; c++)
        for (ki = 0; ki < g->kh; ki++)
            for (kj = 0; kj < g->kw; kj++, k++) {
                kr[k].dy = ki * g->dy;
                kr[k].dx = kj * g->dx;
                kr[k].off = g->last ? (kr[k].dy * g->w + kr[k].dx) * g->c + c
                                    : (c * g->h + kr[k].dy) * g->w + kr[k].dx;
            }
}

/* Offset of channel grp * cg from channel 0. */
static ptrdiff_t fc_group_offset(const fc_conv *g, ptrdiff_t grp)
{
    return g->last ? grp * g->cg : grp * g->cg * g->h * g->w;
}

/* Columns [j0, j0 + cnt) of the flattened output; returns 1 when every window of them
 * lies inside the image (no padding read). */
static int fc_fill_cols(const fc_conv *g, ptrdiff_t j0, ptrdiff_t cnt, fc_col *col)
{
    const ptrdiff_t P = g->oh * g->ow;
    const ptrdiff_t ey = (g->kh - 1) * g->dy, ex = (g->kw - 1) * g->dx;
    ptrdiff_t jj;
    int inside = 1;
    for (jj = 0; jj < cnt; jj++) {
        const ptrdiff_t j = j0 + jj, n = j / P, p = j % P;
        const ptrdiff_t iy = (p / g->ow) * g->sy - g->pt, ix = (p % g->ow) * g->sx - g->pl;
        col[jj].iy = iy;
        col[jj].ix = ix;
        col[jj].base = g->last ? ((n * g->h + iy) * g->w + ix) * g->c
                               : (n * g->c * g->h + iy) * g->w + ix;
        if (iy < 0 || ix < 0 || iy + ey >= g->h || ix + ex >= g->w)
            inside = 0;
    }
    return inside;
}

/* Integer division rounding up / down, for any sign of a (b > 0). */
static ptrdiff_t fc_ceil_div(ptrdiff_t a, ptrdiff_t b)
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static ptrdiff_t fc_floor_div(ptrdiff_t a, ptrdiff_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The kernel rows ki in [*lo, *hi] (empty when *hi < *lo) whose taps read an image row
 * for some output row of [oy0, oy0 + nr): the wide forward skips the others, which read
 * only the planar copy's zero padding (an input gradient's wide padding: LeNet-5's C3
 * pads grad_y by 4 rows above and below 10). */
static void fc_wide_taps(const fc_conv *g, ptrdiff_t oy0, ptrdiff_t nr, ptrdiff_t *lo,
                         ptrdiff_t *hi)
{
    /* output row oy's tap ki reads planar row oy + ki * dy; image rows are [pt, pt + h) */
    const ptrdiff_t l = fc_ceil_div(g->pt - (oy0 + nr - 1), g->dy);
    const ptrdiff_t h = fc_floor_div(g->pt + g->h - 1 - oy0, g->dy);
    *lo = l > 0 ? l : 0;
    *hi = h < g->kh - 1 ? h : g->kh - 1;
}

/* The wide kernels' block of output channels for the `left` channels still to do: the
 * CO of fc_wide_co (index returned) with the least work per output channel, counted
 * as the rows its R-row blocks compute times the kernel rows each block runs
 * (fc_wide_taps), times (R + CO) / (R CO) where loads outnumber multiply-adds (one
 * channel); ties go to the larger CO. */
static int fc_wide_block(const int *wr, ptrdiff_t left, const fc_conv *g)
{
    int b, best = 0;
    double best_cost = -1.0;
    for (b = 0; b < FC_WCO && fc_wide_co[b] <= left; b++) {
        const ptrdiff_t R = wr[b], CO = fc_wide_co[b];
        const double load = (double)(R + CO) / (double)(R * CO);
        double cost = 0.0;
        ptrdiff_t oy0, lo, hi;
        for (oy0 = 0; oy0 < g->oh; oy0 += R) {
            fc_wide_taps(g, oy0, g->oh - oy0 < R ? g->oh - oy0 : R, &lo, &hi);
            if (hi >= lo)
                cost += (double)((hi - lo + 1) * R);
        }
        if (load > 1.0)
            cost *= load;
        if (best_cost < 0.0 || cost <= best_cost * (1.0 + 1e-12)) {
            best = b;
            best_cost = cost;
        }
    }
    return best;
}

/* Rows of the wide forward's planar copy: enough for every R-row block of oh output
 * rows (rows past oh are computed and dropped) and the kernel's reach below them. */
static ptrdiff_t fc_wide_rows(const int *wr, ptrdiff_t oh, ptrdiff_t kh, ptrdiff_t dy)
{
    ptrdiff_t b, rows = oh;
    for (b = 0; b < FC_WCO; b++) {
        const ptrdiff_t r = (oh + wr[b] - 1) / wr[b] * wr[b];
        if (r > rows)
            rows = r;
    }
    return rows + (kh - 1) * dy;
}

/* 64-byte aligned scratch (portable: the original pointer is kept just before). */
static void *fc_alloc(size_t bytes)
{
    char *raw = (char *)malloc(bytes + 64 + sizeof(void *));
    uintptr_t a;
    if (raw == NULL)
        return NULL;
    a = ((uintptr_t)(raw + sizeof(void *)) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

static void fc_free(void *p)
{
    if (p != NULL)
        free(((void **)p)[-1]);
}

typedef fc_kernel_f fc_kernel_t_f;
typedef fc_kernel_d fc_kernel_t_d;
typedef fc_kib_f fc_kib_t_f;
typedef fc_kib_d fc_kib_t_d;
typedef fc_kia_f fc_kia_t_f;
typedef fc_kia_d fc_kia_t_d;
typedef fc_kpx_f fc_kpx_t_f;
typedef fc_kpx_d fc_kpx_t_d;
typedef fc_knr_f fc_knr_t_f;
typedef fc_knr_d fc_knr_t_d;
typedef fc_kwf_f fc_kwf_t_f;
typedef fc_kwf_d fc_kwf_t_d;
typedef fc_kwg_f fc_kwg_t_f;
typedef fc_kwg_d fc_kwg_t_d;
typedef fc_kwo_f fc_kwo_t_f;
typedef fc_kwo_d fc_kwo_t_d;

#if defined(__GNUC__) || defined(__clang__)
#define FC_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FC_RESTRICT __restrict
#else
#define FC_RESTRICT
#endif
#if defined(_OPENMP)
#define FC_OMP_SIMD _Pragma("omp simd")
#else
#define FC_OMP_SIMD
#endif

/* G of Winograd F(2x2, 3x3)'s kernel transform U = G g G^T (conv_driver.h). */
static const double fc_wg_G[4][3] = {
    {1.0, 0.0, 0.0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0.0, 0.0, 1.0}};
/* G of F(4x4, 3x3). */
static const double fc_wg4_G[6][3] = {
    {1.0 / 4, 0.0, 0.0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0.0, 0.0, 1.0}};
/* G of F(5x5, 3x3). */
static const double fc_wg5_G[7][3] = {
    {-1.0 / 2, 0.0, 0.0}, {-1.0 / 3, -1.0 / 3, -1.0 / 3}, {1.0 / 9, -1.0 / 9, 1.0 / 9},
    {1.0 / 36, 1.0 / 18, 1.0 / 9}, {-1.0 / 60, 1.0 / 30, -1.0 / 15},
    {32.0 / 45, 16.0 / 45, 8.0 / 45}, {0.0, 0.0, 1.0}};

#define FC_T float
#define FC_FN(name) name##_f
#define FC_TANH1(v) fc_tanh1_f(v)
#include "conv_driver.h"
#undef FC_T
#undef FC_FN
#undef FC_TANH1

#define FC_T double
#define FC_FN(name) name##_d
#define FC_TANH1(v) tanh(v)
#include "conv_driver.h"
#undef FC_T
#undef FC_FN
#undef FC_TANH1

#endif
