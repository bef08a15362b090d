/* double pixel-row micro-kernel, 12 pixels x 16 channels, AVX-512F. */
#ifndef FASTCONV_UK_F64_PX_AVX512
#define FASTCONV_UK_F64_PX_AVX512

#include "avx512.h"

FC_KPX(fc_kpx_avx512_d, FC_TARGET_AVX512, double, __m512d, _mm512_setzero_pd(),
       _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_add_pd,
       12, 2, 8)

#endif
