/* float pixel-row micro-kernel, 12 pixels x 32 channels, AVX-512F. */
#ifndef FASTCONV_UK_F32_PX_AVX512
#define FASTCONV_UK_F32_PX_AVX512

#include "avx512.h"

/* 12 pixels x 32 channels (float) / 12 x 16 (double): 24 accumulators, 12 broadcasts
 * and 2 loads per 24 FMAs. */
FC_KPX(fc_kpx_avx512_f, FC_TARGET_AVX512, float, __m512, _mm512_setzero_ps(),
       _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
       12, 2, 16)

#endif
