/* The micro-kernel builds, one table per ISA with named fields, filled at compile time;
 * fc_default_isa() picks one at start-up (fastconv._conv2d.set_isa() another).  Adding
 * an ISA: its ukernels/<isa>/ files, a table here, a case in fc_best_isa and
 * fc_isa_by_name (docs/design/adding.md explains the steps). */
#ifndef FASTCONV_ISA_CONFIG_H
#define FASTCONV_ISA_CONFIG_H

#include "ukernels/common.h"
#include "ukernels/depthwise.h"

typedef struct {
    int id;            /* 0 portable, 1 avx2, 2 avx512 */
    const char *name;
    int mr_f, nr_f, mr_d, nr_d;
    fc_kernel_f kern_f;
    fc_kernel_d kern_d;
    fc_kib_f kib_f;
    fc_kib_d kib_d;
    fc_kia_f kia_f;
    fc_kia_d kia_d;
    int mr_px_f, nr_px_f, mr_px_d, nr_px_d;  /* tile of the pixel-row kernels */
    fc_kpx_f kpx_f;
    fc_kpx_d kpx_d;
    /* The half-width pixel-row tile (same rows, one vector of columns) for layers
     * with at most one vector of output channels; the portable build repeats its
     * full tile here. */
    int mr_px1_f, nr_px1_f, mr_px1_d, nr_px1_d;
    fc_kpx_f kpx1_f;
    fc_kpx_d kpx1_d;
    fc_kpxo_f kpxo_f, kpxo1_f;   /* kpx and kpx1's forward tiles straight into y */
    fc_kpxo_d kpxo_d, kpxo1_d;
    int mr_nr, vl_f, vl_d;  /* rows of the narrow kernels; their vector lengths */
    fc_knr_f knr_f;
    fc_knr_d knr_d;
    int wr[FC_WCO];  /* rows of the wide forward kernels for 1, 2, 4, 6, 8 channels */
    int wg_co;       /* output channels of the wide weight-gradient kernels */
    int wpool_f;     /* whether the float wide forward kernels take act and yq */
    fc_kwf_f kwf_f[FC_WCO];
    fc_kwf_d kwf_d[FC_WCO];
    fc_kwg_f kwg_f[FC_WKJ];
    fc_kwg_d kwg_d[FC_WKJ];
    fc_kwo_f wgo_f;  /* the Winograd F(4x4) / F(5x5) output transform of a tile, or NULL */
    const fc_dwk_f *dw_f;  /* the depthwise kernels (ukernels/depthwise.h) */
    const fc_dwk_d *dw_d;
} fc_isa;

#include "ukernels/portable/f32-gemm-4x8-portable.h"
#include "ukernels/portable/f64-gemm-4x8-portable.h"
#include "ukernels/portable/f32-gemm-indirect-4x8-portable.h"
#include "ukernels/portable/f64-gemm-indirect-4x8-portable.h"
#include "ukernels/portable/f32-narrow-4x4-portable.h"
#include "ukernels/portable/f64-narrow-4x4-portable.h"
#include "ukernels/portable/f32-pixelrow-4x8-portable.h"
#include "ukernels/portable/f64-pixelrow-4x8-portable.h"
#include "ukernels/portable/f32-wide-portable.h"
#include "ukernels/portable/f64-wide-portable.h"
#if FC_X86_DISPATCH
#include "ukernels/avx512/f32-gemm-8x32-avx512.h"
#include "ukernels/avx512/f64-gemm-8x16-avx512.h"
#include "ukernels/avx512/f32-gemm-indirect-8x32-avx512.h"
#include "ukernels/avx512/f64-gemm-indirect-8x16-avx512.h"
#include "ukernels/avx512/f32-narrow-6x4-avx512.h"
#include "ukernels/avx512/f64-narrow-6x4-avx512.h"
#include "ukernels/avx512/f32-pixelrow-12x32-avx512.h"
#include "ukernels/avx512/f64-pixelrow-12x16-avx512.h"
#include "ukernels/avx512/f32-pixelrow-12x16-avx512.h"
#include "ukernels/avx512/f64-pixelrow-12x8-avx512.h"
#include "ukernels/avx512/f32-winograd-output-avx512.h"
#include "ukernels/avx512/f32-wide-avx512.h"
#include "ukernels/avx512/f64-wide-avx512.h"
#include "ukernels/avx2/f32-gemm-6x16-avx2.h"
#include "ukernels/avx2/f64-gemm-6x8-avx2.h"
#include "ukernels/avx2/f32-gemm-indirect-6x16-avx2.h"
#include "ukernels/avx2/f64-gemm-indirect-6x8-avx2.h"
#include "ukernels/avx2/f32-narrow-4x4-avx2.h"
#include "ukernels/avx2/f64-narrow-4x4-avx2.h"
#include "ukernels/avx2/f32-pixelrow-6x16-avx2.h"
#include "ukernels/avx2/f64-pixelrow-6x8-avx2.h"
#include "ukernels/avx2/f32-pixelrow-12x8-avx2.h"
#include "ukernels/avx2/f64-pixelrow-12x4-avx2.h"
#include "ukernels/avx2/f32-wide-avx2.h"
#include "ukernels/avx2/f64-wide-avx2.h"
#endif

static const fc_isa fc_isa_portable = {
    .id = 0,
    .name = "portable",
    .mr_f = FC_PORT_MR,
    .nr_f = FC_PORT_NR,
    .mr_d = FC_PORT_MR,
    .nr_d = FC_PORT_NR,
    .kern_f = fc_kernel_portable_f,
    .kern_d = fc_kernel_portable_d,
    .kib_f = fc_kib_portable_f,
    .kib_d = fc_kib_portable_d,
    .kia_f = fc_kia_portable_f,
    .kia_d = fc_kia_portable_d,
    .mr_px_f = 4,
    .nr_px_f = 8,
    .mr_px_d = 4,
    .nr_px_d = 8,
    .kpx_f = fc_kpx_portable_f,
    .kpx_d = fc_kpx_portable_d,
    .mr_px1_f = 4,
    .nr_px1_f = 8,
    .mr_px1_d = 4,
    .nr_px1_d = 8,
    .kpx1_f = fc_kpx_portable_f,
    .kpx1_d = fc_kpx_portable_d,
    .kpxo_f = fc_kpx_portable_f_out,
    .kpxo_d = fc_kpx_portable_d_out,
    .kpxo1_f = fc_kpx_portable_f_out,
    .kpxo1_d = fc_kpx_portable_d_out,
    .mr_nr = 4,
    .vl_f = 1,
    .vl_d = 1,
    .knr_f = fc_knr_portable_f,
    .knr_d = fc_knr_portable_d,
    .wr = {4, 4, 4, 2, 2},
    .wg_co = 2,
    .wpool_f = 0,
    .kwf_f = FC_WIDE_KWF(fc_wide_portable_f),
    .kwf_d = FC_WIDE_KWF(fc_wide_portable_d),
    .kwg_f = FC_WIDE_KWG(fc_wide_portable_f),
    .kwg_d = FC_WIDE_KWG(fc_wide_portable_d),
    .wgo_f = NULL,
    .dw_f = &fc_dwk_portable_f,
    .dw_d = &fc_dwk_portable_d,
};
#if FC_X86_DISPATCH
static const fc_isa fc_isa_avx2 = {
    .id = 1,
    .name = "avx2",
    .mr_f = 6,
    .nr_f = 16,
    .mr_d = 6,
    .nr_d = 8,
    .kern_f = fc_kernel_avx2_f,
    .kern_d = fc_kernel_avx2_d,
    .kib_f = fc_kib_avx2_f,
    .kib_d = fc_kib_avx2_d,
    .kia_f = fc_kia_avx2_f,
    .kia_d = fc_kia_avx2_d,
    .mr_px_f = 6,
    .nr_px_f = 16,
    .mr_px_d = 6,
    .nr_px_d = 8,
    .kpx_f = fc_kpx_avx2_f,
    .kpx_d = fc_kpx_avx2_d,
    .mr_px1_f = 12,
    .nr_px1_f = 8,
    .mr_px1_d = 12,
    .nr_px1_d = 4,
    .kpx1_f = fc_kpx1_avx2_f,
    .kpx1_d = fc_kpx1_avx2_d,
    .kpxo_f = fc_kpx_avx2_f_out,
    .kpxo_d = fc_kpx_avx2_d_out,
    .kpxo1_f = fc_kpx1_avx2_f_out,
    .kpxo1_d = fc_kpx1_avx2_d_out,
    .mr_nr = 4,
    .vl_f = 8,
    .vl_d = 4,
    .knr_f = fc_knr_avx2_f,
    .knr_d = fc_knr_avx2_d,
    .wr = {6, 4, 2, 2, 1},
    .wg_co = 2,
    .wpool_f = 0,
    .kwf_f = FC_WIDE_KWF(fc_wide_avx2_f),
    .kwf_d = FC_WIDE_KWF(fc_wide_avx2_d),
    .kwg_f = FC_WIDE_KWG(fc_wide_avx2_f),
    .kwg_d = FC_WIDE_KWG(fc_wide_avx2_d),
    .wgo_f = NULL,
    .dw_f = &fc_dwk_avx2_f,
    .dw_d = &fc_dwk_avx2_d,
};
static const fc_isa fc_isa_avx512 = {
    .id = 2,
    .name = "avx512",
    .mr_f = 8,
    .nr_f = 32,
    .mr_d = 8,
    .nr_d = 16,
    .kern_f = fc_kernel_avx512_f,
    .kern_d = fc_kernel_avx512_d,
    .kib_f = fc_kib_avx512_f,
    .kib_d = fc_kib_avx512_d,
    .kia_f = fc_kia_avx512_f,
    .kia_d = fc_kia_avx512_d,
    .mr_px_f = 12,
    .nr_px_f = 32,
    .mr_px_d = 12,
    .nr_px_d = 16,
    .kpx_f = fc_kpx_avx512_f,
    .kpx_d = fc_kpx_avx512_d,
    .mr_px1_f = 12,
    .nr_px1_f = 16,
    .mr_px1_d = 12,
    .nr_px1_d = 8,
    .kpx1_f = fc_kpx1_avx512_f,
    .kpx1_d = fc_kpx1_avx512_d,
    .kpxo_f = fc_kpx_avx512_f_out,
    .kpxo_d = fc_kpx_avx512_d_out,
    .kpxo1_f = fc_kpx1_avx512_f_out,
    .kpxo1_d = fc_kpx1_avx512_d_out,
    .mr_nr = 6,
    .vl_f = 16,
    .vl_d = 8,
    .knr_f = fc_knr_avx512_f,
    .knr_d = fc_knr_avx512_d,
    .wr = {8, 8, 5, 4, 3},
    .wg_co = 4,
    .wpool_f = 1,
    .kwf_f = FC_WIDE_KWF(fc_wide_avx512_f),
    .kwf_d = FC_WIDE_KWF(fc_wide_avx512_d),
    .kwg_f = FC_WIDE_KWG(fc_wide_avx512_f),
    .kwg_d = FC_WIDE_KWG(fc_wide_avx512_d),
    .wgo_f = fc_wgo_avx512_f,
    .dw_f = &fc_dwk_avx512_f,
    .dw_d = &fc_dwk_avx512_d,
};
#endif

/* The best ISA this CPU supports (ignoring FASTCONV_DISABLE_SIMD). */
static const fc_isa *fc_best_isa(void)
{
#if FC_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return &fc_isa_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &fc_isa_avx2;
#endif
    return &fc_isa_portable;
}

/* ISA by name ("portable", "avx2", "avx512"); NULL when unknown or unsupported here. */
static const fc_isa *fc_isa_by_name(const char *name)
{
    const fc_isa *best = fc_best_isa();
    if (strcmp(name, "portable") == 0)
        return &fc_isa_portable;
#if FC_X86_DISPATCH
    if (strcmp(name, "avx2") == 0 && best->id >= 1)
        return &fc_isa_avx2;
    if (strcmp(name, "avx512") == 0 && best->id >= 2)
        return &fc_isa_avx512;
#endif
    (void)best;
    return NULL;
}

/* The default: the best supported ISA unless FASTCONV_DISABLE_SIMD is set to 1/true. */
static const fc_isa *fc_default_isa(void)
{
    const char *v = getenv("FASTCONV_DISABLE_SIMD");
    if (v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 ||
                      strcmp(v, "yes") == 0 || strcmp(v, "on") == 0 ||
                      strcmp(v, "TRUE") == 0 || strcmp(v, "True") == 0))
        return &fc_isa_portable;
    return fc_best_isa();
}


#endif
