/* Everything src/_conv2d.pyx needs from C: micro-kernels with runtime ISA dispatch
 * (conv_kernels.h), the geometry of one convolution, and the drivers of conv_driver.h
 * instantiated for float (suffix _f) and double (suffix _d).
 */
#ifndef FASTCONV_CONV_KERNELS_ALL_H
#define FASTCONV_CONV_KERNELS_ALL_H

#include <stdint.h>
#include "conv_kernels.h"

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

#define FC_T float
#define FC_FN(name) name##_f
#include "conv_driver.h"
#undef FC_T
#undef FC_FN

#define FC_T double
#define FC_FN(name) name##_d
#include "conv_driver.h"
#undef FC_T
#undef FC_FN

#endif
