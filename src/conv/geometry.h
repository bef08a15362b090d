/* One convolution as the drivers see it (fc_conv), and the shape arithmetic they share:
 * output runs, im2col row and column tables, the wide algorithm's blocking. */
#ifndef FASTCONV_CONV_GEOMETRY_H
#define FASTCONV_CONV_GEOMETRY_H

#include <stddef.h>
#include "ukernels/common.h"

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

#endif
